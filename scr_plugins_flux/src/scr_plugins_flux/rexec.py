"""Remote execution through ``flux exec`` (the broker's rexec service; no ssh needed).

Each requested node is mapped to the first broker rank on it (``flux getattr hostlist`` is
the instance's hostlist in rank order) and gets its own ``flux exec -n -r RANK CMD...``;
those run in parallel (``fanout`` at a time), so every node reports its own exit code,
stdout and stderr. One ``flux exec -r 0,3,5`` would be a single process, but its exit code
is only the largest of all ranks (flux-exec(1), EXIT STATUS) and interleaved output would
have to be told apart with ``--label-io``; per-node calls keep results exact.

A node that is not a broker of this instance is unreachable without running anything; a
rank flux-exec cannot reach (exit 68 with ``Error: rank N: ...``, flux-exec.c) is
unreachable; one that does not finish within ``timeout`` gets SIGTERM (flux exec forwards
it to the remote process), then SIGKILL, and is reported timed out.
"""

from __future__ import annotations

import re
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from scr_core.errors import RemoteExecError
from scr_core.interfaces import NodeResult, RemoteExecutor, RemoteResult

from . import parse
from .rm import FluxCli, settings_of

KILL_WAIT = 2.0


def _strip_exit_lines(stderr: str, rank: int) -> str:
    # flux exec adds "RANKS: Exit N" / "RANKS: <signal>" summaries on stderr; the exit code
    # already carries that, so keep only what the command itself wrote
    pattern = re.compile(rf"^\[?{rank}\]?: (Exit \d+|[A-Z][a-z]+( [a-z]+)*)$")
    return "".join(line for line in stderr.splitlines(keepends=True)
                   if not pattern.match(line.rstrip("\n")))


class FluxExecRemoteExecutor(RemoteExecutor):
    name = "flux"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.settings = settings_of(context)
        self.cli = FluxCli(self.settings, self.environ, RemoteExecError)

    def exec_argv(self, rank: int, argv: Sequence[str]) -> list[str]:
        return [self.settings.flux, "exec", "-n", "-r", str(rank), *argv]

    def _one(self, rank: int, argv: Sequence[str], timeout: float | None) -> NodeResult:
        cmd = self.exec_argv(rank, argv)
        try:
            proc = subprocess.Popen(cmd, env=dict(self.environ), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, encoding="utf-8", errors="replace")
        except OSError as exc:
            return NodeResult(rc=None, stderr=f"cannot run {cmd[0]}: {exc}", unreachable=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=KILL_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            return NodeResult(rc=None, stdout=out, stderr=err, timed_out=True)
        if parse.parse_exec_unreachable(proc.returncode, err):
            return NodeResult(rc=None, stdout=out, stderr=err, unreachable=True)
        return NodeResult(rc=proc.returncode, stdout=out,
                          stderr=_strip_exit_lines(err, rank))

    def run(
        self,
        argv: Sequence[str],
        nodes: Sequence[str],
        fanout: int = 64,
        timeout: float | None = 60.0,
    ) -> RemoteResult:
        if not argv:
            raise RemoteExecError("flux exec: no command to run")
        result = RemoteResult()
        if not nodes:
            return result
        ranks = parse.rank_map(self.cli.hostlist())
        for n in nodes:
            if n not in ranks:
                result[n] = NodeResult(rc=None, unreachable=True,
                                       stderr=f"{n}: not a node of this Flux instance")
            else:
                result[n] = NodeResult(rc=None)
        todo = [n for n in dict.fromkeys(nodes) if n in ranks]
        if todo:
            with ThreadPoolExecutor(max_workers=max(1, min(fanout, len(todo)))) as pool:
                for node, res in zip(todo, pool.map(
                        lambda n: self._one(ranks[n], argv, timeout), todo)):
                    result[node] = res
        return result
