"""``scr postrun`` / ``scr_postrun``: save datasets that exist only in node-local cache."""

from __future__ import annotations

import argparse
import sys

from ..engine.jobenv import JobEnv
from ..engine.postrun import postrun


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-j", "--joblauncher",
                        help="the job's launcher (srun, jsrun, ...): unless SCR_REMOTE_EXEC "
                        "or settings say otherwise, the copy agents reach the nodes through "
                        "its one-node launch, as SCR's scr_postrun -j did")
    parser.add_argument("-p", "--prefix", help="SCR prefix directory (default $SCR_PREFIX or .)")
    parser.add_argument("-v", "--verbose", action="store_true", help="say what is done")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", default=None,
                       help="show scavenge progress even when stderr is not a terminal")
    shown.add_argument("-q", "--quiet", dest="progress", action="store_false",
                       help="no progress line")
    parser.epilog = ("Scavenges, as SCR: output datasets that need a flush (ascending), then "
                     "checkpoints newest first until one is saved complete; that one becomes "
                     "CURRENT in the index.\n"
                     "Exit codes: 0 nothing needed saving or everything needed was saved, "
                     "1 a dataset that needed saving was not saved (named on stderr with its "
                     "missing ranks, files and nodes), 3 configuration, 4 plugins, "
                     "5 not in an allocation or RM failure, 6 corrupt control file, 128+N "
                     "stopped by signal N (SIGHUP, SIGINT, SIGTERM: the copy agents are "
                     "stopped, nothing they were copying is marked complete).")


def run(args: argparse.Namespace) -> int:
    job = JobEnv(prefix=args.prefix, launcher_hint=args.joblauncher)
    if job.params.get_bool("SCR_ENABLE", True):
        from ..control.flush import FlushFile

        # a corrupt flush file is exit 6 (as documented), not "a dataset was not saved"
        FlushFile(job.prefix).list_ckpt()

    def out(msg: str) -> None:
        if msg.startswith("postrun: "):
            msg = msg[len("postrun: "):]
        print(f"scr postrun: {msg}", file=sys.stderr, flush=True)

    log = None
    if (job.params.get("SCR_LOG_ENABLE") or "0").strip() == "1" and job.job_id():
        from ..scrlog import ScrLog

        log = ScrLog(job.prefix, job.job_id(), user=job.user())
    show = sys.stderr.isatty() if args.progress is None else args.progress
    from ..client_commands import interrupt_on_signals

    with interrupt_on_signals():  # a signal stops the copy agents too (exit 128+N)
        ok = postrun(job, out=out, log=log, progress=sys.stderr.write if show else None)
    return 0 if ok else 1
