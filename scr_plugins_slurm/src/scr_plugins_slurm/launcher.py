"""The ``srun`` launcher (SCR's ``launchers/srun.py``, without its bugs).

``srun [--exclude=<folded>] [--nodelist=<folded>] <user args>``: exclusions given by the
engine are merged with the user's own ``-x/--exclude`` (srun honours only the last one).
The step's output is live: srun inherits our stdin, stdout and stderr.

Finding the id of *our* step (to ``scancel`` exactly it)
    SCR slept 10 s and took the first number of ``squeue -s``, which was the job id. Here a
    thread polls ``scontrol show step -o $SLURM_JOB_ID`` (backing off from 50 ms to 1 s)
    until a step shows ``SrunHost:Pid=<our host>:<pid of the srun we started>``: slurmctld
    records which srun created each step, so this identifies our step even when other
    steps of the job start at the same moment or have the same name, with no fixed sleep.
    A step still waiting for resources is listed as ``J.TDB``; polling continues until it
    has a real id (at most ``slurm.step_id_timeout``). This needs ``slurm.srun`` to *exec*
    srun (a wrapper that forks hides its pid) and srun to run in our PID and UTS namespace.
    The job is ``--jobid`` when the user gave it, else ``$SLURM_JOB_ID``. Outside an
    allocation srun creates its own job; there is no job id to ask about and kill()
    signals srun instead.

Killing
    With the step id: ``scancel J.S`` (Slurm kills every task, srun exits at once, 137).
    Without it, or if srun is still alive ``slurm.kill_grace`` seconds later: SIGINT twice
    0.2 s apart (srun aborts the step on a second Ctrl-C within one second; it ignores
    SIGTERM in some states), then SIGKILL after another grace period, and a last attempt
    to scancel the step that srun may have left behind.

Relaunching after a node died mid-step
    A cancelled step with a task on a dead node stays in slurmctld (holding the surviving
    nodes' CPUs too) until Slurm declares the node down, ``SlurmdTimeout`` later (300 s by
    default); a new step needing those CPUs would wait for it. When a step this launcher
    cancelled is still listed, the next launch adds ``--overlap`` (measured on the lab: the
    relaunch then starts at once; without it, it pends until the timeout).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Mapping, Sequence

from scr_core.client_commands import die_with_parent
from scr_core.errors import LaunchError, ScrError, UsageError
from scr_core.hostlist import expand, fold, unique
from scr_core.interfaces import BackendContext, JobStep, Launcher
from scr_core.launchargs import fit_node_count

from . import parse
from .commands import SlurmCommands
from .rm import job_id_from_env

# srun 22.05 options that take a value in the next word when not written --opt=value /
# -oVALUE (from `srun --help` and srun(1)); needed to find where the program starts.
_SHORT_WITH_VALUE = frozenset("AbBcCdDeGiJLmMnNopqrStTwWx")
_LONG_WITH_VALUE = frozenset("""
accel-bind account acctg-freq bb bbf bcast-exclude begin chdir cluster-constraint clusters
comment constraint container core-spec cores-per-socket cpu-bind cpu_bind cpu-freq
cpus-per-gpu cpus-per-task deadline delay-boot dependency distribution epilog error exclude
export extra-node-info gid gpu-bind gpu-freq gpus gpus-per-node gpus-per-socket gpus-per-task
gres gres-flags het-group hint input job-name jobid licenses mail-type mail-user mcs-label
mem mem-bind mem_bind mem-per-cpu mem-per-gpu mincpus mpi msg-timeout network nodelist nodes
ntasks ntasks-per-core ntasks-per-gpu ntasks-per-node ntasks-per-socket open-mode output
partition power prefer priority profile prolog qos relative reservation signal slurmd-debug
sockets-per-node switches task-epilog task-prolog thread-spec threads threads-per-core time
time-min tmp uid wait wckey
""".split())
_VALUE_OPTIONS = frozenset(
    [f"-{c}" for c in _SHORT_WITH_VALUE] + [f"--{name}" for name in _LONG_WITH_VALUE])
_STEP_ID_RE = re.compile(r"^\d+(?:[_+]\d+)?\.\d+$")
_INT_SPACING = 0.2  # between the two SIGINTs; srun wants them within one second


def split_srun_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(srun options, program and its arguments)``."""
    args = list(args)
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return args[:i], args[i + 1:]
        if a.startswith("--") and len(a) > 2:
            name = a[2:].split("=", 1)[0]
            i += 2 if ("=" not in a and name in _LONG_WITH_VALUE) else 1
        elif a.startswith("-") and len(a) > 1:
            i += 2 if (len(a) == 2 and a[1] in _SHORT_WITH_VALUE) else 1
        else:
            return args[:i], args[i:]
    return args, []


def _take_excludes(options: list[str]) -> tuple[list[str], list[str]]:
    """Remove ``-x``/``--exclude`` from srun options: ``(other options, excluded nodes)``."""
    kept: list[str] = []
    nodes: list[str] = []
    i = 0
    while i < len(options):
        a = options[i]
        value = None
        if a in ("-x", "--exclude") and i + 1 < len(options):
            value = options[i + 1]
            i += 1
        elif a.startswith("--exclude="):
            value = a.split("=", 1)[1]
        elif a.startswith("-x") and not a.startswith("--") and len(a) > 2:
            value = a[2:]
        else:
            kept.append(a)
        if value is not None:
            try:
                nodes += expand(value)
            except UsageError as exc:
                raise UsageError(f"srun --exclude: {exc}") from exc
        i += 1
    return kept, nodes


def _step_name(options: Sequence[str], program: Sequence[str]) -> str:
    """The name Slurm gives the step: ``-J``/``--job-name`` or the program's basename."""
    for i, a in enumerate(options):
        if a in ("-J", "--job-name") and i + 1 < len(options):
            return options[i + 1]
        if a.startswith("--job-name="):
            return a.split("=", 1)[1]
        if a.startswith("-J") and len(a) > 2:
            return a[2:]
    return os.path.basename(program[0]) if program else ""


def _option_value(options: Sequence[str], long: str) -> str | None:
    """The value of ``--long=V`` / ``--long V`` among srun options (the last one wins)."""
    value = None
    for i, a in enumerate(options):
        if a == f"--{long}" and i + 1 < len(options):
            value = options[i + 1]
        elif a.startswith(f"--{long}="):
            value = a.split("=", 1)[1]
    return value


def _same_host(a: str, b: str) -> bool:
    return a == b or a.split(".")[0] == b.split(".")[0]


class _StepFinder(threading.Thread):
    """Polls scontrol until the step created by our srun (by its pid) has an id."""

    def __init__(self, commands: SlurmCommands, job_id: str, step: JobStep, name: str,
                 timeout: float) -> None:
        super().__init__(name=f"scr-srun-step-{job_id}", daemon=True)
        self.commands = commands
        self.job_id = job_id
        self.step = step
        self.expected_name = name
        self.deadline = time.monotonic() + timeout
        self.stop = threading.Event()
        self.host = socket.gethostname()
        self.polls = 0
        self.last_error = ""

    def lookup(self) -> bool:
        proc = self.step.process
        if proc is None:
            return False
        self.polls += 1
        try:
            # "Job step J. not found" (no steps yet) is not an error here
            out = self.commands.run("scontrol", ["show", "step", "-o", self.job_id],
                                    check=False)
        except ScrError as exc:
            self.last_error = str(exc)
            return False
        steps = parse.parse_scontrol_steps(out.stdout)
        mine = [s for s in steps if s.srun_pid == proc.pid and not s.pending]
        exact = [s for s in mine if _same_host(s.srun_host, self.host)]
        # another host's srun may have our pid by chance: only trust a host mismatch when
        # the name matches too (srun run through a wrapper that changes the hostname)
        chosen = exact or [s for s in mine if s.name == self.expected_name]
        if len(chosen) == 1:
            if chosen[0].nodes:
                self.step.nodes = list(chosen[0].nodes)  # what scr run's step watch watches
            self.step.step_id = chosen[0].step_id
            return True
        return False

    def run(self) -> None:
        delay = 0.05
        proc = self.step.process
        while not self.stop.is_set():
            if self.lookup():
                return
            if proc is None or proc.poll() is not None or time.monotonic() > self.deadline:
                return
            self.stop.wait(delay)
            delay = min(delay * 2, 1.0)


class SrunLauncher(Launcher):
    name = "srun"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.commands = SlurmCommands(context.settings, context.environ)
        self.settings = self.commands.settings
        self._killed: list[str] = []  # ids of steps kill() cancelled

    def _lingering(self, environ: Mapping[str, str]) -> list[str]:
        """Steps we cancelled that slurmctld still holds: a step with a task on a dead node
        completes only when Slurm declares that node down (SlurmdTimeout later), and until
        then it keeps the CPUs of the surviving nodes too."""
        if not self._killed:
            return []
        commands = SlurmCommands(self.settings, environ)
        still = []
        for step_id in self._killed:
            try:
                out = commands.run("scontrol", ["show", "step", "-o", step_id], check=False)
            except ScrError:
                continue
            if any(s.step_id == step_id for s in parse.parse_scontrol_steps(out.stdout)):
                still.append(step_id)
        self._killed = still
        return still

    def build_argv(
        self, args: Sequence[str], nodes: Sequence[str] | None, exclude: Sequence[str]
    ) -> list[str]:
        options, program = split_srun_args(args)
        options, user_exclude = _take_excludes(options)
        excluded = unique([*user_exclude, *exclude])
        argv = [self.commands.path("srun")]
        if excluded:
            argv.append(f"--exclude={fold(excluded)}")
        if nodes:
            argv.append(f"--nodelist={fold(list(nodes))}")
        return argv + options + program

    def launch(
        self,
        args: Sequence[str],
        nodes: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> JobStep:
        environ = dict(env if env is not None else self.environ)
        argv = self.build_argv(args, nodes, exclude)
        options, program = split_srun_args(argv[1:])
        lingering = self._lingering(environ)
        if lingering and "--overlap" not in options:
            # the cancelled step's tasks are gone; only its bookkeeping holds the CPUs
            argv.insert(1, "--overlap")
            options = ["--overlap", *options]
            print(f"scr: srun: step {','.join(lingering)} (cancelled) is still held by Slurm "
                  "until it declares the dead node down; launching with --overlap",
                  file=sys.stderr, flush=True)
        try:
            # stdin/stdout/stderr inherited: the user sees the step's output live
            # SIGTERM from the kernel if scr run dies (even by SIGKILL): srun then ends the step
            proc = subprocess.Popen(argv, env=environ, preexec_fn=die_with_parent())
        except OSError as exc:
            raise LaunchError(f"srun launcher: cannot start {argv[0]}: {exc}") from exc
        _, all_excluded = _take_excludes(options)
        step = JobStep(argv=argv, process=proc, nodes=list(nodes) if nodes else None,
                       exclude=all_excluded)
        # srun --jobid=J runs in J whatever the environment says
        job_id = _option_value(options, "jobid") or job_id_from_env(environ)
        step.data["job_id"] = job_id
        if job_id:
            finder = _StepFinder(SlurmCommands(self.settings, environ), job_id, step,
                                 _step_name(options, program), self.settings.step_id_timeout)
            step.data["finder"] = finder
            finder.start()
        return step

    @staticmethod
    def _stop_finder(step: JobStep, wait: float = 0.0) -> None:
        finder = step.data.get("finder")
        if finder is not None:
            finder.stop.set()
            if wait:
                finder.join(timeout=wait)

    def wait(self, step: JobStep, timeout: float | None = None) -> int | None:
        if step.returncode is not None:
            return step.returncode
        proc = step.process
        if proc is None:
            raise LaunchError("srun launcher: this step has no srun process")
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        step.returncode = rc
        self._stop_finder(step)
        return rc

    def _wait_exit(self, step: JobStep, seconds: float) -> bool:
        return self.wait(step, timeout=seconds) is not None

    def _signal(self, step: JobStep, sig: int) -> None:
        try:
            step.process.send_signal(sig)  # type: ignore[union-attr]
        except (ProcessLookupError, OSError):
            pass

    def kill(self, step: JobStep) -> None:
        if step.process is None or self.wait(step, timeout=0) is not None:
            return
        grace = self.settings.kill_grace
        finder = step.data.get("finder")
        if finder is not None:
            self._stop_finder(step, wait=self.settings.command_timeout)
            if not step.step_id:
                finder.lookup()  # one last look: the step may have been created just now
        if step.step_id:
            self._killed.append(step.step_id)
            try:
                self.kill_step_id(step.step_id)
            except ScrError:
                pass  # fall back to signals
            else:
                if self._wait_exit(step, grace):
                    return
        # srun aborts the step on a second SIGINT within one second
        self._signal(step, signal.SIGINT)
        if self._wait_exit(step, _INT_SPACING):
            return
        self._signal(step, signal.SIGINT)
        if self._wait_exit(step, grace):
            return
        self._signal(step, signal.SIGKILL)
        self.wait(step)
        # srun is gone; make sure its tasks are too
        if finder is not None and (step.step_id or finder.lookup()):
            try:
                self.kill_step_id(step.step_id or "")
            except ScrError:
                pass

    def fit_to_nodes(self, args: Sequence[str], available: int) -> list[str]:
        """``srun -N4`` with 3 healthy nodes left becomes ``srun -N3``."""
        options, program = split_srun_args(args)
        fitted, _old = fit_node_count(options, available, takes_value=_VALUE_OPTIONS)
        return [*fitted, *program] if fitted != options else list(args)

    def one_node_argv(self, node: str, argv: Sequence[str]) -> list[str]:
        # --overlap: run even while the application's step holds every CPU (22.05 steps
        # do not share CPUs by default); --mpi=none: a helper needs no PMI set-up.
        return [self.commands.path("srun"), "--nodes=1", "--ntasks=1", f"--nodelist={node}",
                "--overlap", "--mpi=none", "--", *argv]

    def kill_step_id(self, step_id: str) -> None:
        step_id = str(step_id).strip()
        if not _STEP_ID_RE.match(step_id):
            raise LaunchError(f"srun launcher: {step_id!r} is not a Slurm step id (JOB.STEP)")
        try:
            self.commands.run("scancel", [step_id])
        except ScrError as exc:
            raise LaunchError(f"srun launcher: cannot cancel step {step_id}: {exc}") from exc
