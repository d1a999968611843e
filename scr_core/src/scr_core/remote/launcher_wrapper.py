"""Remote execution through the job launcher's one-node launch (sites without ssh).

For each node, ``launcher.one_node_argv(node, argv)`` (``srun -N1 -n1 -w node ...``,
``scr local exec node -- ...``, ``flux run -N1 --requires=host:node ...``) is started as an argv
list, at most ``fanout`` at a time, each with the per-node timeout (the whole process group is
killed when it expires). The launcher is ``remote.launcher`` if set, else the one the usual
selection rules pick (``SCR_LAUNCHER``, settings ``core.launcher``, detection).

A launcher process that exits with ``remote.unreachable_rc`` (255 for ``scr local exec`` of a
crashed node) marks the node unreachable; any other exit code is the command's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from ..client_commands import tracked_group
from ..errors import RemoteExecError, ScrError
from ..interfaces import NodeResult, RemoteExecutor, RemoteResult
from ._common import checked_request, decode, settings_or_default


def run_argv_per_node(
    commands: dict[str, list[str]],
    fanout: int,
    timeout: float | None,
    env: dict[str, str] | None = None,
    unreachable_rc: int | None = 255,
) -> RemoteResult:
    """Run ``commands[node]`` for every node, ``fanout`` at a time; a result for each node."""
    stop = threading.Event()

    def one(node: str) -> NodeResult:
        if stop.is_set():
            return NodeResult(rc=None, stderr=f"{node}: not started (interrupted)\n",
                              unreachable=True)
        argv = commands[node]
        try:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except OSError as exc:
            return NodeResult(rc=None, stderr=f"{node}: cannot run {argv[0]}: "
                                              f"{exc.strerror}\n", unreachable=True)
        try:
            with tracked_group(proc):  # stopped with its group if we are interrupted
                out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            return NodeResult(rc=None, stdout=decode(out), stderr=decode(err), timed_out=True)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        rc = proc.returncode
        if rc < 0:
            rc = 128 - rc  # killed by a signal: as a shell reports it
        return NodeResult(rc=rc, stdout=decode(out), stderr=decode(err),
                          unreachable=unreachable_rc is not None and rc == unreachable_rc)

    nodes = list(commands)
    result = RemoteResult()
    with ThreadPoolExecutor(max_workers=max(1, min(fanout, len(nodes)))) as pool:
        try:
            for node, res in zip(nodes, pool.map(one, nodes)):
                result[node] = res
        except BaseException:
            stop.set()  # let queued nodes return at once; running ones finish or time out
            raise
    return result


class LauncherRemoteExecutor(RemoteExecutor):
    """``argv`` on every node via the launcher's one-node launch; see the module docstring."""

    name = "launcher"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.settings = settings_or_default(context)
        self._launcher: Any = None

    def launcher(self) -> Any:
        if self._launcher is None:
            from ..engine.jobenv import JobEnv

            job = JobEnv(prefix=self.context.prefix, environ=self.environ)
            self._launcher = job.launcher(self.settings.launcher)
        return self._launcher

    def run(
        self,
        argv: Sequence[str],
        nodes: Sequence[str],
        fanout: int = 64,
        timeout: float | None = 60.0,
    ) -> RemoteResult:
        argv, nodes, fanout, timeout = checked_request(self.settings, argv, nodes, fanout,
                                                       timeout)
        if not nodes:
            return RemoteResult()
        launcher = self.launcher()
        try:
            commands = {n: list(launcher.one_node_argv(n, argv)) for n in nodes}
        except ScrError as exc:
            raise RemoteExecError(f"launcher remote exec: {launcher.name} cannot launch on "
                                  f"one node: {exc}") from exc
        return run_argv_per_node(commands, fanout, timeout, env=dict(self.environ),
                                 unreachable_rc=self.settings.unreachable_rc)
