"""``scr postrun`` / ``scr_postrun``: save datasets that exist only in node-local cache."""

from __future__ import annotations

import argparse
import sys

from ..engine.jobenv import JobEnv
from ..engine.postrun import postrun


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-j", "--joblauncher", help="accepted for SCR compatibility")
    parser.add_argument("-p", "--prefix", help="SCR prefix directory (default $SCR_PREFIX or .)")
    parser.add_argument("-v", "--verbose", action="store_true", help="say what is done")
    parser.epilog = ("Exit codes: 0 nothing needed saving or everything needed was saved, "
                     "1 a dataset that needed saving was not saved (named on stderr), "
                     "4 plugins, 5 RM failure, 6 corrupt control file.")


def run(args: argparse.Namespace) -> int:
    job = JobEnv(prefix=args.prefix)
    ok = postrun(job, out=lambda m: print(f"scr postrun: {m}", file=sys.stderr))
    return 0 if ok else 1
