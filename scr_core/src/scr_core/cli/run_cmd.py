"""``scr run`` / ``scr_run``: launch the job step, relaunch around failures, then postrun."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys

from ..engine.jobenv import JobEnv
from ..engine.run import Outcome, Runner, parse_run_args
from ..errors import UsageError

EPILOG = """\
Usage as SCR's scr_run: put the launcher word first, then its arguments and the program:
  scr run srun -N4 ./app arg            scr_srun -N4 ./app arg
  scr run local -N 4 python -m scr_core.demo
  scr run jsrun -n8 -rc './app' -rs './app --restart SCR_CKPT_NAME'
  scr run mpirun -np 8 ./app            scr_mpirun -np 8 ./app   (also: scr run mpiexec)
-rc/--run-cmd CMD   the program (tokenised like a shell, without a shell)
-rs/--restart-cmd   used instead of -rc when a checkpoint exists; SCR_CKPT_NAME is replaced
                    by the current checkpoint's name (scr_have_restart, else index.scr)

Parameters (environment or SCR config files): SCR_ENABLE (0: run the launcher once, plainly,
and return its exit code), SCR_RUNS (runs at most; -1 unlimited; default SCR_RETRIES+1, which
defaults to 1), SCR_MIN_NODES, SCR_RUN_SETTLE_SECONDS (pause between runs, default 5; SCR
used 60), SCR_HALT_SECONDS, SCR_EXCLUDE_NODES, SCR_NODE_TESTS, SCR_WATCHDOG,
SCR_WATCHDOG_TIMEOUT[_PFS], SCR_LOG_ENABLE, SCR_PREFIX, SCR_RM_RETRIES (default 3) and
SCR_RM_RETRY_SECONDS (default 2, doubling): a resource-manager query that fails transiently
is tried again. Step watch (a node dying mid-step is
found while the step runs, the step killed and relaunched without it): SCR_WATCH (default
1; 0 off), SCR_WATCH_INTERVAL (1 s), SCR_WATCH_FAILURES (3) and SCR_WATCH_WINDOW (5 s):
dead after that many failed probes spanning that long (the resource manager's own "lost"
verdict counts at once), SCR_WATCH_TESTS (default ping), SCR_RUN_KILL_GRACE_SECONDS (5: a
killed launcher that has not exited by then is killed with its processes). Exports
SCR_END_TIME (epoch; 0 unknown, -1 none) and SCR_RUN_ID to the step. With the local
launcher and no allocation, a virtual one is made for the duration (nodes from settings
'local.nodes' or -N).

Exit codes:
  0   the last run exited 0 and no halt condition was active
  1   the application failed and no runs are left
  10  stopped by a halt condition (scr_halt, checkpoints left, before/after, time left)
  11  too few healthy nodes to relaunch (SCR_MIN_NODES)
  12  the runs succeeded but postrun could not save a needed dataset
  6   the halt file cannot be read (corrupt): stopped, not relaunched, after postrun
  2-8 usage, configuration (also an unusable SCR_PREFIX), plugin, environment, data,
      not-supported, internal errors (see scr --help); never 1 for an error. Once the runs
      started, an error (e.g. 5: the resource manager still failed after SCR_RM_RETRIES
      retries, waiting SCR_RM_RETRY_SECONDS, doubled each time) ends them after postrun.
  129/130/143  stopped by SIGHUP/SIGINT/SIGTERM (the step is killed, postrun still runs;
      a second signal interrupts postrun and stops its copy agents)
SIGKILL cannot be handled: the step still dies with scr run (srun, jsrun, flux get SIGTERM
from the kernel; the local launcher's tasks are stopped by a watcher process), and a
virtual allocation made for the run is removed.
The application's SCR_Finalize (ExitReason SCR_FINALIZE_CALLED in halt.scr) stops the runs
of this allocation, as in SCR; scr run clears it when it starts (a new allocation runs).
With SCR_ENABLE=0: the launcher's own exit code."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="say more")
    parser.add_argument("--runs", type=int, help="same as SCR_RUNS")
    parser.add_argument("--min-nodes", type=int, help="same as SCR_MIN_NODES")
    parser.add_argument("--settle", type=float, help="same as SCR_RUN_SETTLE_SECONDS")
    parser.add_argument("-p", "--prefix", help="SCR prefix directory (default $SCR_PREFIX or .)")
    parser.add_argument("launcher", help="launcher word: srun, jsrun, lrun, flux, mpirun, "
                                         "mpiexec, local, ...")
    parser.add_argument("args", nargs=argparse.REMAINDER,
                        help="launcher arguments and program, -rc/-rs")
    parser.epilog = EPILOG


def _local_nodes_wanted(args: list) -> int | None:
    from ..local.backend import parse_launcher_args

    try:
        return parse_launcher_args(args).get("nodes")
    except UsageError:
        return None


def run(args: argparse.Namespace) -> int:
    request = parse_run_args(args.launcher, list(args.args))
    request.verbose = args.verbose
    environ = dict(os.environ)
    for opt, name in ((args.runs, "SCR_RUNS"), (args.min_nodes, "SCR_MIN_NODES"),
                      (args.settle, "SCR_RUN_SETTLE_SECONDS")):
        if opt is not None:
            environ[name] = str(opt)
    if args.prefix:
        environ["SCR_PREFIX"] = os.path.abspath(args.prefix)
    implicit = None
    if request.launcher == "local" and not environ.get("SCR_LOCAL_DIR"):
        implicit = _implicit_allocation(environ, request.launcher_args)
        environ["SCR_LOCAL_DIR"] = implicit.path
    try:
        job = JobEnv(environ=environ, launcher_hint=request.launcher)
        job.registry.launcher_for_command(request.launcher)  # an unknown launcher fails first
        if not job.params.get_bool("SCR_ENABLE", True):
            return _plain(job, request)
        from ..control.paths import ensure_scr_dir
        from ..scrlog import ScrLog

        log = None
        if (job.params.get("SCR_LOG_ENABLE") or "0").strip() == "1":
            ensure_scr_dir(job.prefix, job.prefix_source)
            log = ScrLog(job.prefix, job.require_job_id(), user=job.user())
        else:
            job.require_job_id()
        return Runner(job, request, log=log).run()
    finally:
        if implicit is not None:
            for node in implicit.nodes:
                implicit.kill_node_tasks(node, signal.SIGKILL)
            shutil.rmtree(implicit.path, ignore_errors=True)


def _implicit_allocation(environ: dict, launcher_args: list):  # -> LocalAllocation
    from ..local.allocation import LocalAllocation
    from ..settings import Settings

    settings = Settings(environ=environ, sections={})
    raw_nodes = environ.get("SCR_LOCAL_NODES") or settings.get_raw("local", "nodes") or "4"
    names = LocalAllocation.node_names(str(raw_nodes))
    wanted = _local_nodes_wanted(launcher_args)
    if wanted and wanted > len(names) and str(raw_nodes).isdigit():
        names = LocalAllocation.node_names(wanted)
    limit = environ.get("SCR_LOCAL_TIME_LIMIT") or settings.get_raw("local", "time_limit")
    from ..units import parse_duration

    alloc = LocalAllocation.create(names, time_limit=parse_duration(str(limit)) if limit
                                   else None, owned=True)
    from ..local import lifeline

    lifeline.ensure(alloc.path, remove=True)  # removed with its tasks even if we are killed
    print(f"scr run: made local allocation {alloc.job_id} of {len(names)} virtual nodes "
          f"({','.join(names)}) at {alloc.path}", file=sys.stderr, flush=True)
    return alloc


def _plain(job: JobEnv, request) -> int:
    """SCR_ENABLE=0: run the launcher once, as if scr were not there."""
    launcher = job.launcher(request.launcher)
    args = list(request.launcher_args)
    if request.run_cmd:
        import shlex

        args += shlex.split(request.run_cmd)
    step = launcher.launch(args, env=job.environ)
    rc = launcher.wait(step)
    return int(rc if rc is not None else Outcome.FAILED)
