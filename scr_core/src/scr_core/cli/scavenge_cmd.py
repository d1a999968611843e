"""``scr scavenge`` / ``scr_scavenge``: copy cached datasets from the nodes to the prefix.

What ``scr postrun`` does for the datasets it selects, for datasets named by id: run the
copy agent on every up node, verify every rank's files in the prefix, and record a
complete dataset in ``summary.scr``, ``rank2file``, ``index.scr`` and ``flush.scr``.
"""

from __future__ import annotations

import argparse
import sys

from ..engine.jobenv import JobEnv


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--id", dest="ids", type=int, action="append", required=True,
                        metavar="ID", help="dataset id to scavenge (repeat for several)")
    parser.add_argument("-p", "--prefix", help="SCR prefix directory (default $SCR_PREFIX or .)")
    parser.add_argument("-j", "--jobset", "--nodes", dest="nodes", metavar="NODES",
                        help="nodes to copy from (hostlist; default: the allocation's)")
    parser.add_argument("-d", "--down", default="", metavar="NODES",
                        help="nodes known to be down (not asked)")
    parser.add_argument("-f", "--from", dest="cntldir", metavar="CNTLDIR",
                        help="control directory on the nodes (default: "
                             "<SCR_CNTL_BASE>/<user>/scr.<jobid> as each node sees it)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="say which nodes are down and what each dataset holds")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", default=None,
                       help="show progress (bytes, files, rate) even when stderr is not a "
                            "terminal")
    shown.add_argument("-q", "--quiet", dest="progress", action="store_false",
                       help="no progress line")
    parser.epilog = (
        "Parameters: SCR_FILE_BUF_SIZE, SCR_CRC_ON_FLUSH (0: no CRC), SCR_AGENT_PYTHON, "
        "SCR_SCAVENGE_TIMEOUT (per node; default the allocation's remaining time, else 24 h; "
        "0 none), SCR_SCAVENGE_SYNC (fs|file|none). Per-node outputs are kept "
        "in <prefix>/.scr/scr.dataset.<id>/scavenge.o<jobid> and .e<jobid>.\n"
        "A dataset is marked complete only when every rank's files are verified in place; "
        "one scavenge of a dataset at a time (lock <prefix>/.scr/scr.dataset.<id>/"
        "scavenge.lock).\n"
        "Exit codes: 0 every dataset saved and verified, 1 a dataset was not saved (stderr "
        "names it, its missing ranks, the files and nodes at fault; it is marked incomplete "
        "in the index; or another scavenge of it is running: then it is left to that one), "
        "2 usage, 3 configuration, 4 plugins, 5 not in an allocation or RM "
        "failure, 6 corrupt control file (also when a dataset was not saved because one of "
        "its filemaps is corrupt or claims impossible values: the file is named), 128+N "
        "stopped by signal N (SIGHUP, SIGINT, SIGTERM: the copy agents are stopped, nothing "
        "they were copying is marked complete).")


def run(args: argparse.Namespace) -> int:
    from ..client_commands import interrupt_on_signals

    with interrupt_on_signals():  # a signal stops the copy agents too (exit 128+N)
        return _scavenge(args)


def _scavenge(args: argparse.Namespace) -> int:
    from ..engine.scavenge import pick_nodes, scavenge_dataset
    from ..errors import EXIT_DATA, UsageError
    from ..hostlist import expand

    job = JobEnv(prefix=args.prefix)
    for dataset_id in args.ids:
        if dataset_id <= 0:
            raise UsageError(f"dataset ids are positive, not {dataset_id}")
    nodes = expand(args.nodes) if args.nodes else None
    down = expand(args.down) if args.down else []

    def err(msg: str) -> None:
        print(f"scr scavenge: {msg}", file=sys.stderr, flush=True)

    log = None
    if (job.params.get("SCR_LOG_ENABLE") or "0").strip() == "1":
        from ..scrlog import ScrLog

        log = ScrLog(job.prefix, job.require_job_id(), user=job.user())
    show = sys.stderr.isatty() if args.progress is None else args.progress
    progress = sys.stderr.write if show else None
    up, bad = pick_nodes(job, nodes, down=down, out=err if args.verbose else None)
    failed = []
    corrupt = False
    for dataset_id in args.ids:
        res = scavenge_dataset(job, dataset_id, up, down=bad, out=err if args.verbose else None,
                               log=log, cntldir=args.cntldir, progress=progress)
        lines = res.describe()
        if res.complete:
            print(f"scr scavenge: {lines[0]}")
        else:
            failed.append(dataset_id)
            corrupt = corrupt or res.corrupt
            for line in lines:
                err(line)
    return EXIT_DATA if corrupt else 1 if failed else 0
