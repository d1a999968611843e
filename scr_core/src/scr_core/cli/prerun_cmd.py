"""``scr prerun`` / ``scr_prerun``: prepare the allocation before the first run."""

from __future__ import annotations

import argparse
import sys

from ..engine.jobenv import JobEnv
from ..engine.prerun import prerun


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--prefix", help="SCR prefix directory (default $SCR_PREFIX or .)")
    parser.add_argument("-v", "--verbose", action="store_true", help="say what is done")
    parser.epilog = ("Creates <prefix>/.scr (and the prefix, if missing), lets the resource "
                     "manager prepare the nodes, and removes flush.scr and nodes.scr of an "
                     "earlier allocation. halt.scr is kept, except an ExitReason "
                     "SCR_FINALIZE_CALLED (an earlier allocation's application finished), "
                     "which is cleared. Does nothing when SCR_ENABLE=0.\n"
                     "Exit codes: 0 ok, 3 configuration (also a prefix that is not a "
                     "directory or cannot be written), 4 plugins, 5 RM failure, 6 corrupt "
                     "halt file.")


def run(args: argparse.Namespace) -> int:
    job = JobEnv(prefix=args.prefix)
    out = (lambda m: print(f"scr prerun: {m}", file=sys.stderr)) if args.verbose else None
    prerun(job, out=out)
    return 0
