"""``scr list-down-nodes`` / ``scr_list_down_nodes``: unusable nodes of the allocation."""

from __future__ import annotations

import argparse

from ..engine.down_nodes import list_down_nodes
from ..engine.jobenv import JobEnv
from ..hostlist import expand, fold


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-j", "--joblauncher",
                        help="the job's launcher (srun, jsrun, ...): unless SCR_REMOTE_EXEC "
                             "or settings say otherwise, node tests reach the nodes through "
                             "its one-node launch, as SCR did")
    parser.add_argument("-r", "--reason", action="store_true",
                        help="print 'node: reason' lines instead of a hostlist")
    parser.add_argument("-f", "--free", action="store_true",
                        help="check free space instead of capacity in the dir tests")
    parser.add_argument("-d", "--down", default="", help="nodes already known down")
    parser.add_argument("-l", "--log", action="store_true",
                        help="append a NODE_FAIL event per down node to the SCR log")
    parser.add_argument("-s", "--secs", type=float, default=0.0, help="secs for the log events")
    parser.add_argument("-p", "--prefix", help="SCR prefix directory (default $SCR_PREFIX or .)")
    parser.add_argument("--json", action="store_true",
                        help="print the down nodes and their reasons as JSON, schema "
                             "scr.down-nodes/1 (docs/json-schemas.md)")
    parser.add_argument("nodeset", nargs="*", help="nodes to check (default: the allocation)")
    parser.epilog = (
        "Runs: known down, SCR_EXCLUDE_NODES, the resource manager's down nodes, then the "
        "node tests of SCR_NODE_TESTS (each on the nodes that passed the earlier ones).\n"
        "Prints the down nodes as a compressed hostlist (an empty line if none), or with "
        "--reason one 'node: reason' line each.\n"
        "Exit codes: 0 ok (whether or not nodes are down), 2 usage/bad hostlist, "
        "3 configuration (unknown node test), 4 plugins, 5 not in an allocation or RM failure.")


def run(args: argparse.Namespace) -> int:
    job = JobEnv(prefix=args.prefix, launcher_hint=args.joblauncher)
    if args.free:
        job.environ["SCR_CHECK_FREE"] = "1"
    nodes = None
    if args.nodeset:
        nodes = []
        for text in args.nodeset:
            nodes += expand(text)
    down = expand(args.down) if args.down else []
    result = list_down_nodes(job, nodes, down=down)
    if args.log and result:
        from ..scrlog import ScrLog

        log = ScrLog(job.prefix, job.require_job_id(), user=job.user())
        for n, reason in result.items():
            log.event("NODE_FAIL", note=f"{n}: {reason}", secs=args.secs)
    if args.json:
        from ..jsonout import dump

        dump("down-nodes", {"hostlist": fold(list(result)),
                            "down": [{"node": n, "reason": r} for n, r in result.items()]})
    elif args.reason:
        for n, reason in result.items():
            print(f"{n}: {reason}")
    else:
        print(fold(list(result)))
    return 0
