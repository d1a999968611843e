"""``scr list-dir`` / ``scr_list_dir``: the control or cache directories of this job."""

from __future__ import annotations

import argparse

from ..engine.jobenv import JobEnv


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-b", "--base", action="store_true",
                        help="print the base directories, not the job's subdirectories")
    parser.add_argument("-p", "--prefix", help="SCR prefix directory (default $SCR_PREFIX or .)")
    parser.add_argument("kind", choices=("control", "cache"), help="which directories")
    parser.epilog = ("Prints the directories separated by spaces: <base>/<user>/scr.<jobid>, "
                     "as the SCR library lays them out.\n"
                     "Exit codes: 0 ok, 2 usage, 3 bad configuration, 5 no job id "
                     "(without --base).")


def run(args: argparse.Namespace) -> int:
    job = JobEnv(prefix=args.prefix)
    if not args.base:
        job.require_job_id()
    dirs = job.dir_control(base=args.base) if args.kind == "control" else \
        job.dir_cache(base=args.base)
    print(" ".join(dirs))
    return 0
