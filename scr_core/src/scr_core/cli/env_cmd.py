"""``scr env`` / ``scr_env``: facts about the current job, as SCR's scr_env prints them."""

from __future__ import annotations

import argparse

from ..engine.jobenv import JobEnv
from ..hostlist import fold


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-u", "--user", action="store_true", help="user name")
    parser.add_argument("-j", "--jobid", action="store_true", help="job id of the allocation")
    parser.add_argument("-e", "--endtime", action="store_true",
                        help="end time in epoch seconds (0 unknown, -1 no limit)")
    parser.add_argument("-n", "--nodes", action="store_true", help="nodes of the allocation")
    parser.add_argument("-d", "--down", action="store_true",
                        help="nodes the resource manager reports down")
    parser.add_argument("-p", "--prefix", action="store_true", help="SCR prefix directory")
    parser.add_argument("-r", "--runnodes", action="store_true",
                        help="node count of the last run (nodes.scr), 0 if unknown")
    parser.epilog = ("With one option, prints that value alone (for scripts); with none, "
                     "prints every value as 'name: value'.\n"
                     "Exit codes: 0 ok, 4 plugin error, 5 the resource manager failed.")


def run(args: argparse.Namespace) -> int:
    job = JobEnv()
    getters = {
        "user": job.user,
        "jobid": lambda: job.job_id() or "",
        "endtime": lambda: str(job.resource_manager.end_time()),
        "nodes": lambda: fold(job.node_list()),
        "down": lambda: fold(list(job.resource_manager.down_nodes())),
        "prefix": lambda: job.prefix,
        "runnodes": lambda: str(_runnodes(job)),
    }
    chosen = [k for k in getters if getattr(args, k)]
    if len(chosen) == 1:
        print(getters[chosen[0]]())
        return 0
    for key in chosen or getters:
        print(f"{key}: {getters[key]()}")
    return 0


def _runnodes(job: JobEnv) -> int:
    from ..control.nodes import read_nodes

    try:
        return read_nodes(job.prefix) or 0
    except Exception:
        return 0
