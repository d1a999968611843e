"""``scr check-node`` / ``scr_check_node``: are this node's control and cache dirs usable?

Runs on a compute node (through remote execution). Prints ``scr_check_node: PASS`` (exit 0)
or ``scr_check_node: FAIL: <why>`` (exit 1), as SCR's tool, so SCR-era callers keep working.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from ..errors import UsageError
from ..units import format_bytes, parse_bytes


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cntl", default="", metavar="DIR[:SIZE],...",
                        help="control directories, each with an optional size needed")
    parser.add_argument("--cache", default="", metavar="DIR[:SIZE],...",
                        help="cache directories, each with an optional size needed")
    parser.add_argument("--free", action="store_true",
                        help="compare SIZE with free space instead of total capacity")
    parser.epilog = ("SIZE takes units (1GB, 512MiB). Each directory is created if needed, "
                     "then a file is written and removed in it.\n"
                     "Exit codes: 0 PASS, 1 FAIL (the reason follows FAIL:), 2 usage.")


def _entries(text: str) -> list:
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        path, sep, size = item.rpartition(":") if ":" in item else (item, "", "")
        if not sep:
            path, size = item, ""
        out.append((path, parse_bytes(size) if size else None))
    return out


def check_dir(path: str, size: int | None, free: bool) -> str:
    """'' if ``path`` is usable, else why not."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        return f"cannot create {path}: {exc.strerror}"
    if size is not None:
        st = os.statvfs(path)
        have = st.f_frsize * (st.f_bavail if free else st.f_blocks)
        if have < size:
            what = "free space" if free else "capacity"
            return f"{path}: {what} {format_bytes(have)} is less than {format_bytes(size)}"
    try:
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".scr_check_node.")
        try:
            os.write(fd, b"scr_check_node\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        return f"cannot write in {path}: {exc.strerror}"
    return ""


def run(args: argparse.Namespace) -> int:
    entries = _entries(args.cntl) + _entries(args.cache)
    if not entries:
        raise UsageError("give --cntl and/or --cache directories to check")
    for path, size in entries:
        why = check_dir(path, size, args.free)
        if why:
            print(f"scr_check_node: FAIL: {why}")
            return 1
    print("scr_check_node: PASS")
    return 0
