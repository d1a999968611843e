"""What an ssh system runs on the remote host: the scheduler API of the host's resource
manager, as JSON over stdin/stdout (``python -m scr_core.funcjobs.remote ACTION ...``).

Actions (each prints one JSON document; errors go to stderr with scr's exit codes)::

    mkdir DIR                       make DIR (and parents); print its absolute path
    submit --rm NAME                SubmitRequest fields as JSON on stdin; print the JobRecord
    status --rm NAME ID...          print {id: JobStatus}
    cancel --rm NAME ID
    partitions --rm NAME            print {partition: summary} from the node inventory
    clean DIR                       remove a run directory (only one holding _scr_task.pkl)

A separate protocol rather than the ``scr`` CLI: it is versioned with the client (the
same scr_core on both ends) and its output is meant for programs, not people.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from typing import Any, Sequence

from ..errors import EXIT_USAGE, ScrError, UsageError


def _rm(name: str) -> Any:
    from ..engine.jobenv import JobEnv

    return JobEnv(resource_manager=name).resource_manager


def _print(data: Any) -> None:
    json.dump(data, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _run(args: argparse.Namespace) -> int:
    from ..batch import scheduler
    from ..interfaces import SubmitRequest

    if args.action == "mkdir":
        path = os.path.abspath(os.path.expanduser(args.dir))
        os.makedirs(path, exist_ok=True)
        _print({"path": path})
    elif args.action == "clean":
        path = os.path.abspath(os.path.expanduser(args.dir))
        if not os.path.exists(os.path.join(path, "_scr_task.pkl")):
            raise UsageError(f"{path} is not a function job run directory; not removed")
        shutil.rmtree(path)
        _print({"removed": path})
    elif args.action == "submit":
        try:
            fields = json.load(sys.stdin)
        except ValueError as exc:
            raise UsageError(f"submit: the request on stdin is not JSON: {exc}") from exc
        names = {f.name for f in dataclasses.fields(SubmitRequest)}
        unknown = sorted(set(fields) - names)
        if unknown:
            raise UsageError(f"submit: unknown request field(s) {', '.join(unknown)}")
        record = scheduler.submit(_rm(args.rm), SubmitRequest(**fields))
        _print(scheduler.record_to_dict(record))
    elif args.action == "status":
        st = scheduler.status(_rm(args.rm), args.ids)
        _print({k: scheduler.status_to_dict(v) for k, v in st.items()})
    elif args.action == "cancel":
        scheduler.cancel(_rm(args.rm), args.ids[0])
        _print({"cancelled": args.ids[0]})
    elif args.action == "partitions":
        summary = scheduler.partition_summary(scheduler.inventory(_rm(args.rm)))
        _print(summary)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scr_core.funcjobs.remote")
    parser.add_argument("action", choices=("mkdir", "clean", "submit", "status", "cancel",
                                           "partitions"))
    parser.add_argument("--rm", default=None, help="resource manager plugin")
    parser.add_argument("--dir", default=None)
    parser.add_argument("ids", nargs="*")
    # intermixed: ids may follow --rm NAME (plain parsing would give them to nobody)
    args = parser.parse_intermixed_args(argv)
    if args.action in ("mkdir", "clean") and not args.dir:
        print(f"{args.action}: --dir is required", file=sys.stderr)
        return EXIT_USAGE
    if args.action == "cancel" and len(args.ids) != 1:
        print("cancel: exactly one job id", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _run(args)
    except ScrError as exc:
        print(f"scr remote {args.action}: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
