"""``scr should-exit`` / ``scr_should_exit``: should the job script stop relaunching?"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.jobenv import JobEnv
from ..engine.should_exit import should_exit

if TYPE_CHECKING:
    import argparse

EXIT_STOP = 0
EXIT_CONTINUE = 1
EXIT_ERROR = 2  # argparse usage errors use 2 as well; every other error keeps its own code

#: the options of configure_parser for main's argparse-free fast path (batch scripts call
#: scr_should_exit between runs); tests/test_cli_fast_path.py checks they parse alike
FAST_OPTIONS = {
    "-p": ("prefix", str), "--prefix": ("prefix", str), "--down": ("down", str),
    "--min-nodes": ("min_nodes", int), "--runs": ("runs", int),
    "-v": ("verbose", None), "--verbose": ("verbose", None), "--json": ("json", None),
}
FAST_DEFAULTS = {"prefix": None, "down": None, "min_nodes": None, "runs": None,
                 "verbose": False, "json": False}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--prefix", help="SCR prefix directory (default $SCR_PREFIX or .)")
    parser.add_argument("--down", default=None,
                        help="nodes known to be down (hostlist), e.g. from "
                             "scr_list_down_nodes; without it, the resource manager's down "
                             "nodes and SCR_EXCLUDE_NODES are used (no node tests)")
    parser.add_argument("--min-nodes", type=int, help="nodes needed (overrides SCR_MIN_NODES)")
    parser.add_argument("--runs", type=int, help="runs left; 0 means stop")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the reason")
    parser.add_argument("--json", action="store_true",
                        help="print the decision and its reason as JSON, schema "
                             "scr.should-exit/1 (docs/json-schemas.md); exit codes unchanged")
    parser.epilog = (
        "Exit codes, as SCR's: 0 = stop (a halt condition holds, the application called "
        "SCR_Finalize in this allocation, no runs left, or too few healthy nodes), "
        "1 = keep running. Errors never read as 'keep running': 2 usage, 3 configuration "
        "(a bad SCR_MIN_NODES, SCR_HALT_SECONDS, ...), 4 plugins, 5 environment (not in an "
        "allocation), 6 corrupt control file (a halt.scr that cannot be read is never 'no "
        "halt'), 8 internal error. Time left comes from SCR_END_TIME when scr run exported "
        "it, else the RM. ExitReason SCR_FINALIZE_CALLED stops until scr prerun (the start "
        "of scr run) clears it.")


def run(args: argparse.Namespace) -> int:
    job = JobEnv(prefix=args.prefix)
    if args.down == "":
        down: list[str] = []
    elif args.down is not None:
        from ..hostlist import expand

        down = expand(args.down)
    else:
        from ..engine.down_nodes import list_down_nodes

        down = list(list_down_nodes(job, tests=[]))
    runs_left = args.runs
    decision = should_exit(job, down=down, min_nodes=args.min_nodes, runs_left=runs_left)
    if args.json:
        from ..jsonout import dump

        dump("should-exit", {"stop": decision.stop, "kind": decision.kind or None,
                             "reason": decision.reason,
                             "exit_code": EXIT_STOP if decision.stop else EXIT_CONTINUE})
    elif args.verbose:
        print(("stop: " if decision.stop else "continue: ") + decision.reason)
    return EXIT_STOP if decision.stop else EXIT_CONTINUE
