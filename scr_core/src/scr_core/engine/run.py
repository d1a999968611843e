"""The resilient run loop behind ``scr run`` / ``scr_run`` (SCR's ``run.py``, corrected).

prerun -> [down nodes -> should-exit -> launch excluding down nodes -> wait (watchdog,
immediate halt, signals) -> log -> should-exit -> settle] x runs -> postrun.

Differences from SCR, on purpose: ``SCR_RUNS=-1`` really is unlimited; the settle delay is a
parameter (``SCR_RUN_SETTLE_SECONDS``) instead of a hard-coded 60 s; the run command is
tokenised like a shell would (without a shell); the restart command gets ``SCR_CKPT_NAME``
replaced by the current checkpoint; the exit code says what happened (:class:`Outcome`);
output streams live; SIGTERM/SIGINT/SIGHUP stop the step and still run postrun; so does an
error once the runs started (a resource manager that keeps failing, after the retries of
:mod:`scr_core.rm_retry`).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import sys
import time
from typing import Any, Callable

from ..errors import EXIT_DATA, ConfigError, ControlFileError, ScrError, UsageError
from .down_nodes import list_down_nodes
from .should_exit import end_time_of, seconds_left, should_exit
from .stepwatch import check_watch_params, kill_step

IMMEDIATE_MARKER = "halt.immediate"
POLL_SECONDS = 0.5
#: signals that stop the step (postrun still runs; exit 128+N); SIGHUP too: a lost terminal
#: or ssh session must not leave the ranks running in their own process groups
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Outcome:
    """Exit codes of ``scr run`` (besides the common ones of :mod:`scr_core.errors`)."""

    SUCCESS = 0          # the last run exited 0 and no halt condition was active
    FAILED = 1           # the application failed and no runs are left
    HALTED = 10          # a halt condition stopped the job (scr_halt, checkpoints, times)
    NOT_ENOUGH_NODES = 11  # too few healthy nodes to relaunch
    POSTRUN_FAILED = 12  # the runs succeeded but postrun could not save a needed dataset
    HALT_FILE_CORRUPT = EXIT_DATA  # halt.scr cannot be read: stopped (after postrun) rather
    #                                than relaunch without knowing whether a halt was asked
    # 128+N: stopped by signal N (SIGHUP 129, SIGINT 130, SIGTERM 143) after postrun


@dataclasses.dataclass
class RunRequest:
    launcher: str                 # launcher word: srun, jsrun, lrun, flux, mpirun, local
    launcher_args: list           # everything after the launcher word, minus -rc/-rs
    run_cmd: str | None = None
    restart_cmd: str | None = None
    verbose: bool = False


def parse_run_args(launcher: str, args: list) -> RunRequest:
    """Split SCR's ``-rc|--run-cmd[=]CMD`` and ``-rs|--restart-cmd[=]CMD`` from the rest."""
    rest: list = []
    run_cmd = restart_cmd = None
    i = 0
    while i < len(args):
        a = args[i]
        for short, long_, which in (("-rc", "--run-cmd", "run"), ("-rs", "--restart-cmd",
                                                                   "restart")):
            if a in (short, long_) or a.startswith(short + "=") or a.startswith(long_ + "="):
                if "=" in a:
                    value = a.split("=", 1)[1]
                else:
                    if i + 1 >= len(args):
                        raise UsageError(f"{a} needs a command")
                    i += 1
                    value = args[i]
                if which == "run":
                    run_cmd = value
                else:
                    restart_cmd = value
                break
        else:
            rest.append(a)
        i += 1
    if restart_cmd and not run_cmd:
        raise UsageError("--restart-cmd needs --run-cmd too (the command for a fresh start)")
    return RunRequest(launcher, rest, run_cmd, restart_cmd)


def _tokens(text: str, what: str) -> list:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot split the {what} '{text}': {exc}") from exc


def current_checkpoint(job: Any) -> str | None:
    """Name of the checkpoint to restart from: SCR's scr_have_restart when installed, else
    the index's CURRENT."""
    import shutil
    import subprocess

    tool = shutil.which("scr_have_restart", path=job.environ.get("PATH"))
    if tool:
        try:
            out = subprocess.run([tool], capture_output=True, text=True, timeout=60,
                                 env=job.environ, cwd=job.prefix)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip().split()[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    from ..control.index import IndexFile

    try:
        return IndexFile(job.prefix).current()
    except (ScrError, OSError):
        return None


class Runner:
    """One ``scr run``: holds the state between runs."""

    def __init__(self, job: Any, request: RunRequest, log: Any = None,
                 out: Callable[[str], None] | None = None) -> None:
        self.job = job
        self.req = request
        self.log = log
        self.out = out or (lambda m: print(f"scr run: {m}", file=sys.stderr, flush=True))
        self.signal_received: int | None = None
        self.step = None
        self.launcher = None
        self.in_postrun = False
        self.watch_dead: dict = {}

    # -- parameters ---------------------------------------------------------------------------
    def runs_allowed(self) -> int | None:
        """None = unlimited."""
        params = self.job.params
        value = params.get("SCR_RUNS")
        if value not in (None, ""):
            try:
                runs = int(value)
            except ValueError as exc:
                raise ConfigError(f"SCR_RUNS must be a number, not '{value}' "
                                  f"({params.source('SCR_RUNS')})") from exc
            if runs < 0:
                return None
            return max(runs, 1)
        retries = params.get_int("SCR_RETRIES", 0)
        return max(retries + 1, 1)

    def settle_seconds(self) -> float:
        import math

        value = self.job.params.get("SCR_RUN_SETTLE_SECONDS")
        if value in (None, ""):
            return 5.0
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ConfigError(f"SCR_RUN_SETTLE_SECONDS must be a number of seconds, 0 or "
                              f"more, not '{value}' "
                              f"({self.job.params.source('SCR_RUN_SETTLE_SECONDS')})")
        return seconds

    # -- the step -----------------------------------------------------------------------------
    def step_args(self) -> list:
        args = list(self.req.launcher_args)
        if self.req.run_cmd:
            cmd = self.req.run_cmd
            if self.req.restart_cmd:
                name = current_checkpoint(self.job)
                if name:
                    cmd = self.req.restart_cmd.replace("SCR_CKPT_NAME", name)
                    self.out(f"restarting from checkpoint {name}")
            args += _tokens(cmd, "run command")
        return args

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.signal_received is None and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _handle_signal(self, signum: int, _frame: Any) -> None:
        if self.signal_received is None:
            self.signal_received = signum
            self.out(f"received signal {signum}; " +
                     ("postrun goes on (a second signal interrupts it)" if self.in_postrun
                      else "stopping the job step"))
        elif self.in_postrun:
            from ..client_commands import interrupt

            self.out(f"received signal {signum} again; interrupting postrun")
            interrupt(signum)  # stops the copy agents, then raises

    def wait_step(self, step: Any, since: float, watched: list | None = None) -> tuple:
        """Wait for the step; return (exit code, why it was killed or ''). Nodes the step
        watch declared dead are left in ``self.watch_dead``."""
        from .stepwatch import WATCH_KILL_GRACE, StepWatch, kill_grace, watch_config
        from .watchdog import Watchdog

        watchdog = Watchdog.from_params(self.job)
        marker = os.path.join(self.job.dir_scr(), IMMEDIATE_MARKER)
        self.watch_dead = {}
        config = watch_config(self.job.params)
        watch = None
        if config.enabled and watched:
            # the step's own nodes once the launcher knows them (srun: when its step is found)
            watch = StepWatch(self.job, lambda: step.nodes or watched, config).start()
        try:
            while True:
                rc = self.launcher.wait(step, timeout=POLL_SECONDS)
                if rc is not None:
                    return rc, ""
                why = ""
                dead = watch.dead() if watch is not None else {}
                if dead:
                    for n, reason in dead.items():
                        self.out(f"node {n} is dead: {reason}")
                        self.event("NODE_FAIL", note=f"{n}: {reason}", secs=0)
                    self.watch_dead = dead
                    why = f"step watch: node {','.join(dead)} dead"
                elif self.signal_received is not None:
                    why = f"signal {self.signal_received}"
                else:
                    try:
                        if os.stat(marker).st_mtime >= since - 1:
                            why = "scr_halt --immediate"
                    except FileNotFoundError:
                        pass
                    if not why and watchdog is not None:
                        why = watchdog.check()
                if why:
                    self.out(f"killing the job step ({why})")
                    grace = kill_grace(self.job.params)
                    if dead:  # the launcher would only wait for the dead node's tasks
                        grace = min(grace, WATCH_KILL_GRACE)
                    rc = kill_step(self.launcher, step, grace, self.out)
                    if dead:  # a node failure, whatever the launcher made of the kill
                        return 137, why
                    # a step we killed did not finish, even if it exited 0 on SIGTERM
                    return (rc if rc else 137), why
        finally:
            if watch is not None:
                watch.stop()

    def event(self, kind: str, **kw: Any) -> None:
        if self.log is not None:
            try:
                self.log.event(kind, **kw)
            except OSError as exc:
                self.out(f"cannot write the SCR log: {exc}")

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> int:
        job = self.job
        self.launcher = job.launcher(self.req.launcher)
        nodes = job.node_list()
        if not nodes:
            raise ScrError("failed to identify the nodes of the job allocation")
        from .prerun import prerun

        prerun(job, out=self.out if self.req.verbose else None)
        end_time = job.resource_manager.end_time()
        job.environ["SCR_END_TIME"] = str(end_time)
        runs = self.runs_allowed()
        settle = self.settle_seconds()
        check_watch_params(job)  # a bad SCR_WATCH_* stops us before the step, not during it
        keep_down: dict = {}
        attempt = 0
        last_rc: int | None = None
        outcome: int | None = None
        old_handlers = {s: signal.signal(s, self._handle_signal) for s in STOP_SIGNALS}
        from .postrun import postrun

        try:
            while True:
                down = list_down_nodes(job, nodes, down=list(keep_down))
                for n, reason in down.items():
                    if n not in keep_down:
                        self.out(f"node {n} is down: {reason}")
                        self.event("NODE_FAIL", note=f"{n}: {reason}", secs=0)
                # once down, always down: a revived node may have lost its cache
                keep_down.update(down)
                runs_left = None if runs is None else runs - attempt
                try:
                    decision = should_exit(job, nodes, list(keep_down), runs_left=runs_left)
                except ControlFileError as exc:  # the halt file: never relaunch blindly
                    self.out(f"stopping: {exc}")
                    outcome = Outcome.HALT_FILE_CORRUPT
                    break
                if decision.stop:
                    self.out(f"stopping: {decision.reason}")
                    if decision.kind == "halt":
                        self.event("HALT", note=decision.reason)
                    outcome = self._outcome_for(decision, last_rc)
                    break
                if self.signal_received is not None:
                    break
                attempt += 1
                args = self.step_args()
                excluded = [n for n in nodes if n in keep_down]
                if excluded:
                    fitted = self.launcher.fit_to_nodes(args, len(nodes) - len(excluded))
                    if fitted != args:
                        self.out(f"fitted the launcher arguments to the "
                                 f"{len(nodes) - len(excluded)} node(s) left")
                    args = fitted
                env = dict(job.environ, SCR_RUN_ID=f"{job.job_id()}.{attempt}",
                           SCR_END_TIME=str(end_time))
                self.out(f"run {attempt}" + ("" if runs is None else f" of {runs}") +
                         f" on {len(nodes) - len(keep_down)} node(s)" +
                         (f", excluding {','.join(keep_down)}" if keep_down else ""))
                # the nodes the step may use, for `scr report`'s timeline (SCR logs only run=N)
                from ..hostlist import fold

                usable = fold([n for n in nodes if n not in keep_down])
                self.event("RUN_START", note=f"run={attempt} nodes={usable}")
                since = time.time()
                step = self.launcher.launch(args, exclude=list(keep_down), env=env)
                self.step = step
                rc, why = self.wait_step(step, since,
                                         watched=[n for n in nodes if n not in keep_down])
                self.step = None
                # the watch's dead nodes were logged as NODE_FAIL already; once down, always
                keep_down.update(self.watch_dead)
                last_rc = rc
                secs = time.time() - since
                self.event("RUN_END", note=f"run={attempt} rc={rc}" +
                           (f" killed: {why}" if why else ""), secs=secs)
                self.out(f"run {attempt} ended with exit code {rc} after {secs:.1f} s")
                if self.signal_received is not None:
                    break
                if rc == 0:
                    reason = None
                    try:
                        from .should_exit import halt_check

                        reason = halt_check(job, end_time=end_time)
                    except ScrError as exc:
                        self.out(f"cannot check the halt conditions: {exc}")
                    outcome = Outcome.HALTED if reason else Outcome.SUCCESS
                    if reason:
                        self.out(f"the application exited after a halt condition: {reason}")
                    break
                # the next decision (halt before runs before nodes) is made at the loop top
                # the settle delay gives the RM time to notice a failure; after the watch
                # found the dead node (and the step is gone) there is nothing to wait for
                if settle and not self.watch_dead and (runs is None or attempt < runs):
                    self.out(f"waiting {settle:g} s before deciding on a relaunch")
                    self._sleep(settle)
            self.in_postrun = True  # signals stay handled: postrun saves what the runs left
            post_ok = postrun(job, out=self.out, log=self.log)
        except Exception:
            # an error, or a plugin's bug, ends the job (the CLI reports it), but the running
            # step is stopped and the cache is still saved
            if not self.in_postrun:
                self.out("stopping after an error; postrun still saves what the runs left")
                self.in_postrun = True
                try:
                    if self.step is not None:
                        from .stepwatch import kill_grace

                        kill_step(self.launcher, self.step, kill_grace(job.params), self.out)
                    postrun(job, out=self.out, log=self.log)
                except Exception as exc:  # the first error is the one reported
                    self.out(f"postrun after the error failed too: {exc}")
            raise
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
        if self.signal_received is not None:
            return 128 + self.signal_received
        if outcome is None:
            outcome = Outcome.FAILED
        if outcome == Outcome.SUCCESS and not post_ok:
            return Outcome.POSTRUN_FAILED
        return outcome

    @staticmethod
    def _outcome_for(decision: Any, last_rc: int | None) -> int:
        if decision.kind == "halt":
            return Outcome.HALTED
        if decision.kind == "nodes":
            return Outcome.NOT_ENOUGH_NODES
        return Outcome.SUCCESS if last_rc == 0 else Outcome.FAILED


__all__ = ["Outcome", "RunRequest", "Runner", "end_time_of", "parse_run_args", "seconds_left"]
