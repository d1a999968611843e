"""``scr index``: list and edit ``<prefix>/.scr/index.scr`` (SCR's ``scr_index``).

Same options and listing as SCR's C tool. ``--build`` verifies a dataset directory that
scavenge (or anything else) filled: every rank's files present in the prefix with the
filemap's size and CRC; then it writes ``summary.scr``, ``rank2file`` and the index entry.
It cannot rebuild lost ranks from redundancy data: when ranks are missing and SCR's own
``scr_index`` is available (``$SCR_INDEX_EXE`` or on PATH) the build is handed to it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from ..engine.jobenv import JobEnv

if TYPE_CHECKING:
    from ..control.index import IndexFile


def configure_parser(parser: argparse.ArgumentParser) -> None:
    action = parser.add_mutually_exclusive_group()
    action.add_argument("-l", "--list", action="store_true",
                        help="list the checkpoints in the index (the default)")
    action.add_argument("-c", "--current", metavar="NAME",
                        help="make checkpoint NAME the restart point (CURRENT)")
    action.add_argument("-a", "--add", metavar="NAME",
                        help="add the dataset NAME (or id) whose summary.scr exists")
    action.add_argument("-d", "--drop", metavar="NAME", help="remove dataset NAME")
    action.add_argument("--drop-after", metavar="NAME",
                        help="remove every dataset newer than NAME")
    action.add_argument("-b", "--build", metavar="ID", type=int,
                        help="verify dataset ID in the prefix and record it")
    parser.add_argument("-p", "--prefix", help="SCR prefix directory (default $SCR_PREFIX or .)")
    parser.add_argument("--json", action="store_true",
                        help="with --list (or no action): print every dataset of the index as "
                             "JSON, schema scr.index/1 (docs/json-schemas.md)")
    parser.epilog = (
        "--list prints 'DSET VALID FLUSHED CUR NAME' rows, newest first; VALID is YES when "
        "the dataset is complete and no fetch of it failed; * marks CURRENT. --json lists "
        "every dataset (outputs too) with its flags, times and size.\n"
        "Exit codes: 0 ok, 1 failed (no index, unknown NAME, not a checkpoint, name taken, "
        "or --build found the dataset incomplete: the missing ranks and files are named, "
        "or a scavenge of it is running), "
        "2 usage, 6 corrupt index, summary or filemap (a filemap claiming impossible "
        "values, e.g. RANKS beyond 2^24, is corrupt).")


def _err(msg: str) -> None:
    print(f"scr index: {msg}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..control.index import IndexFile

    job = JobEnv(prefix=args.prefix)
    index = IndexFile(job.prefix)
    if args.build is not None:
        return _build(job, args.build)
    if args.add is not None:
        return _add(job, index, args.add)
    if not index.exists():
        _err(f"no index file {index.path}")
        return 1
    if args.current is not None:
        if not index.set_current(args.current):
            _err(f"'{args.current}' is not a checkpoint in the index")
            return 1
        return 0
    if args.drop is not None:
        if not index.drop(args.drop):
            _err(f"'{args.drop}' is not in the index")
            return 1
        return 0
    if args.drop_after is not None:
        if not index.drop_after(args.drop_after):
            _err(f"'{args.drop_after}' is not in the index")
            return 1
        return 0
    if args.json:
        from ..jsonout import dump, index_entries

        dump("index", {"prefix": job.prefix, **index_entries(index)})
        return 0
    sys.stdout.write(index.format_list())
    return 0


def _build(job: JobEnv, dataset_id: int) -> int:
    from ..engine.scavenge import (
        DatasetBusy,
        ScavengeResult,
        buf_size,
        crc_on,
        dataset_lock,
        find_scr_index,
        finish_dataset,
        verify_dataset,
    )
    from ..errors import EXIT_DATA

    if dataset_id <= 0:
        _err(f"dataset ids are positive, not {dataset_id}")
        return 2
    result = ScavengeResult(dataset_id=dataset_id)
    try:
        with dataset_lock(job.prefix, dataset_id, _err):  # not while a scavenge runs
            ver = verify_dataset(job.prefix, dataset_id, None, crc=crc_on(job),
                                 bufsize=buf_size(job))
            finish_dataset(job.prefix, dataset_id, ver, result,
                           scr_index=find_scr_index(job), out=_err)
    except DatasetBusy as exc:
        _err(f"dataset {dataset_id}: {exc}")
        return 1
    lines = result.describe()
    if result.complete:
        print(f"scr index: {lines[0]}")
        return 0
    for line in lines:
        _err(line)
    return EXIT_DATA if result.corrupt else 1


def _add(job: JobEnv, index: IndexFile, name: str) -> int:
    from ..control.summary import read_summary

    scr = os.path.join(job.prefix, ".scr")
    found = None
    try:
        entries = sorted(os.listdir(scr))
    except OSError as exc:
        _err(f"cannot list {scr}: {exc.strerror}")
        return 1
    for entry in entries:
        if not entry.startswith("scr.dataset."):
            continue
        summary = read_summary(os.path.join(scr, entry))
        if summary is None or summary.dataset is None:
            continue
        desc = summary.dataset
        if desc.name == name or (name.isdigit() and desc.id == int(name)):
            found = (summary, desc)
            break
    if found is None:
        _err(f"no dataset named '{name}' with a summary.scr under {scr}")
        return 1
    summary, desc = found
    known = {e.name: e.id for e in index.entries()}
    if desc.name in known and known[desc.name] != desc.id:
        _err(f"the name '{desc.name}' already belongs to dataset {known[desc.name]}")
        return 1
    index.add(desc, complete=summary.complete)
    return 0
