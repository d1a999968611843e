"""jsrun and lrun launchers (IBM JSM on LSF; LLNL's lrun wrapper of jsrun).

``scr run jsrun ARGS`` runs ``jsrun --exclude_hosts=n1,n2 ARGS`` and ``scr run lrun ARGS``
runs ``lrun --exclude_hosts=n1,n2 ARGS``: the option and its comma-separated host names as a
single argv word (SCR's lrun/jsrun launchers and its jsrun job script use this option; SCR
3.x's ``'--exclude_hosts ' + nodes`` put option and value in *one* word with a space, which
getopt cannot parse). Output is live: the launcher inherits our stdin, stdout and stderr.

Killing a step: jsrun steps have ids in ``jslist``. Right after starting jsrun we look for
the one ``Running`` step that was not there before (a snapshot is taken just before the
launch; a background thread polls for up to ``step_id_wait`` seconds), and ``kill`` uses
``jskill ID`` when it was found; then, or otherwise, jsrun itself gets SIGTERM and, after
``kill_grace`` seconds, SIGKILL. (SCR 3.x took "the highest Running id after sleep(10)",
which picks someone else's step when two run at once.) lrun has no step id: it is stopped
by signals, which it forwards to its jsrun.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any, Mapping, Sequence

from scr_core.client_commands import describe_failure as failed
from scr_core.client_commands import die_with_parent, stop_process, wait_code
from scr_core.errors import LaunchError, ScrError
from scr_core.interfaces import JobStep, Launcher

from . import parse
from .rm import allocation_from_env, run, settings_of

POLL = 0.5


class _JsmLauncher(Launcher):
    """Shared by jsrun and lrun: argv building, launch, wait and signal-based kill."""

    command_setting = "jsrun"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.settings = settings_of(context)

    @property
    def command(self) -> str:
        return getattr(self.settings, self.command_setting)

    def _exclusions(self, nodes: Sequence[str] | None, exclude: Sequence[str]) -> list[str]:
        excluded = list(dict.fromkeys(exclude))
        if nodes:
            # jsrun has no "run on these hosts" option: exclude the rest of the allocation
            allocation = allocation_from_env(self.environ, self.settings.launch_node)
            if not allocation:
                raise LaunchError(f"{self.name}: cannot restrict a step to {','.join(nodes)} "
                                  "outside an LSF allocation")
            unknown = [n for n in nodes if n not in allocation]
            if unknown:
                raise LaunchError(f"{self.name}: not nodes of this allocation: "
                                  f"{','.join(unknown)}")
            wanted = set(nodes)
            excluded += [n for n in allocation if n not in wanted and n not in excluded]
        return excluded

    def build_argv(
        self, args: Sequence[str], nodes: Sequence[str] | None, exclude: Sequence[str]
    ) -> list[str]:
        argv = [self.command]
        excluded = self._exclusions(nodes, exclude)
        if excluded:
            argv.append("--exclude_hosts=" + ",".join(excluded))
        return argv + list(args)

    def _before_launch(self, step_data: dict) -> None:
        """Hook run just before the launcher starts (jsrun snapshots jslist)."""

    def _after_launch(self, step: JobStep) -> None:
        """Hook run once the launcher started (jsrun looks for its step id)."""

    def launch(
        self,
        args: Sequence[str],
        nodes: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> JobStep:
        if not args:
            raise LaunchError(f"{self.name}: nothing to run (no arguments after {self.name})")
        argv = self.build_argv(args, nodes, exclude)
        data: dict = {}
        self._before_launch(data)
        try:
            proc = subprocess.Popen(argv, env=dict(env if env is not None else self.environ),
                                    preexec_fn=die_with_parent())  # ends with scr run
        except OSError as exc:
            raise LaunchError(f"cannot start {argv[0]}: {exc}") from exc
        step = JobStep(argv=argv, process=proc, nodes=list(nodes) if nodes else None,
                       exclude=list(exclude), data=data)
        self._after_launch(step)
        return step

    def wait(self, step: JobStep, timeout: float | None = None) -> int | None:
        if step.returncode is not None:
            return step.returncode
        if step.process is None:
            raise LaunchError(f"{self.name}: step has no process to wait for")
        rc = wait_code(step.process, timeout)
        if rc is not None:
            step.returncode = rc
            stop = step.data.get("stop")
            if stop is not None:
                stop.set()
        return rc

    def kill(self, step: JobStep) -> None:
        if step.process is None or step.process.poll() is not None:
            self.wait(step, 0)
            return
        stop_process(step.process, self.settings.kill_grace)
        self.wait(step, None)


class JsrunLauncher(_JsmLauncher):
    """``jsrun`` of IBM Job Step Manager."""

    name = "jsrun"
    command_setting = "jsrun"

    def _jslist(self) -> list[parse.JsStep] | None:
        try:
            # capped: the snapshot delays the launch, and the step id is only a nicety
            cp = run([self.settings.jslist], self.environ,
                     min(self.settings.query_timeout, 10.0), LaunchError)
        except ScrError:
            return None
        if cp.returncode != 0:
            return None
        return parse.parse_jslist(cp.stdout)

    def _before_launch(self, step_data: dict) -> None:
        if self.settings.step_id_wait <= 0:
            return
        before = self._jslist()
        step_data["known_steps"] = None if before is None else {s.step_id for s in before}

    def _after_launch(self, step: JobStep) -> None:
        known = step.data.get("known_steps")
        if known is None:
            return  # jslist unusable: the step is killed by signals only
        stop = threading.Event()
        step.data["stop"] = stop

        def find() -> None:
            deadline = time.monotonic() + self.settings.step_id_wait
            while not stop.is_set() and time.monotonic() < deadline:
                steps = self._jslist() or []
                new = [i for i in parse.running_step_ids(steps) if i not in known]
                if len(new) == 1:
                    step.step_id = new[0]
                    return
                if len(new) > 1:
                    return  # another step started at the same moment: ambiguous, give up
                if step.process is not None and step.process.poll() is not None:
                    return
                stop.wait(POLL)

        thread = threading.Thread(target=find, name="scr-jslist", daemon=True)
        step.data["finder"] = thread
        thread.start()

    def kill_step_id(self, step_id: str) -> None:
        cp = run([self.settings.jskill, str(step_id)], self.environ,
                 self.settings.query_timeout, LaunchError)
        if cp.returncode != 0:
            raise LaunchError(f"jskill {step_id} failed: {failed(cp)}")

    def kill(self, step: JobStep) -> None:
        if step.process is not None and step.process.poll() is None:
            stop = step.data.get("stop")
            if stop is not None:
                stop.set()
            if step.step_id:
                try:
                    self.kill_step_id(step.step_id)
                except ScrError:
                    pass  # fall through to signals
                else:
                    rc = wait_code(step.process, self.settings.kill_grace)
                    if rc is not None:
                        self.wait(step, 0)
                        return
        super().kill(step)


class LrunLauncher(_JsmLauncher):
    """``lrun``, LLNL's wrapper of jsrun (CORAL systems at LLNL)."""

    name = "lrun"
    command_setting = "lrun"
