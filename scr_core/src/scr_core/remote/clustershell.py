"""Remote execution through ClusterShell's Task API (the default remote executor).

Two workers (settings section ``remote``):

``ssh`` (default)
    ClusterShell's ssh worker. The remote side of ssh always parses a command *string*, so the
    argv is quoted element by element (:func:`shlex.join`) and the remote shell splits it back
    into exactly the same argv: no element is ever interpreted.
``exec``
    One local process per node from a per-node wrapper argv with ``%h`` (``srun -N1 -n1 -w
    %h``, ``lab on %h``, ``scr local exec %h --``) followed by the command's argv. It is
    started as an argv list (no shell at all), by :class:`subprocess.Popen` (vfork where
    possible) instead of ClusterShell's fork()-based Popen: at 10,000 nodes, forking this
    whole Python process per node is what costs most. Without a wrapper containing ``%h``
    the exec worker would run the command on this machine once per node: that is refused.

Every requested node is in the result: rc, stdout and stderr (separate streams), ``timed_out``
for nodes the per-command timeout killed (the worker's ``iter_keys_timeout``), ``unreachable``
when the transport says so (exit code ``remote.unreachable_rc``, 255 for ssh) or when no
result came back at all. Output is line-based (ClusterShell reads lines): a last line without
a newline gets one. Nodes are handed to ClusterShell as the plain list we got: no NodeSet
folding (slow for 2-D names at scale) and no renaming of names such as ``n01``/``n1``.

The per-thread ``task_self()`` is used; the task settings changed for a run (fanout, ssh
options, message trees) are restored afterwards.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from typing import Any, Sequence

from ..errors import RemoteExecError
from ..interfaces import NodeResult, RemoteExecutor, RemoteResult
from ._common import (
    checked_request,
    decode,
    expand_wrapper,
    require_per_node_wrapper,
    settings_or_default,
)

#: task info keys we set for one run and restore afterwards (task_self() is shared per thread)
_INFO_KEYS = ("fanout", "connect_timeout", "ssh_path", "ssh_user", "ssh_options")
_DEFAULT_KEYS = ("stdout_msgtree", "stderr_msgtree")


def _classes() -> tuple[Any, Any]:
    """Worker classes, built on first use (ClusterShell costs ~40 ms to import)."""
    global _CACHE
    if _CACHE is not None:
        return _CACHE
    from ClusterShell.Engine.Engine import E_READ, E_WRITE
    from ClusterShell.Worker.EngineClient import set_nonblock_flag
    from ClusterShell.Worker.Exec import ExecClient, ExecWorker
    from ClusterShell.Worker.Ssh import SshClient, WorkerSsh
    from ClusterShell.Worker.Worker import DistantWorker

    class CollectingMixin:
        """ExecWorker without ``NodeSet(nodes)`` (keeps our list as given) that keeps each
        node's stdout lines, stderr lines, exit code and timeout itself.

        Collecting in the worker instead of an event handler matters at scale: for every
        event on a handler, ClusterShell 1.x inspects the handler method's signature
        (legacy-signature check), about 0.7 ms per node; without a handler it does not.
        """

        def __init__(self, nodes: Sequence[str], timeout: float | None, command: str) -> None:
            DistantWorker.__init__(self, None)
            self._close_count = 0
            self._has_timeout = False
            self._clients = []
            self.nodes = list(nodes)
            self.command = command
            self.source = None
            self.dest = None
            self.scr_out: dict[str, list[bytes]] = {}
            self.scr_err: dict[str, list[bytes]] = {}
            self.scr_rc: dict[str, int] = {}
            self.scr_timed_out: set[str] = set()
            self._create_clients(timeout=timeout, stderr=True)

        def _on_node_msgline(self, node: str, msg: bytes, sname: str) -> None:
            target = self.scr_err if sname == self.SNAME_STDERR else self.scr_out
            target.setdefault(node, []).append(msg)

        def _on_node_close(self, node: str, rc: int) -> None:
            self.scr_rc[node] = rc
            super()._on_node_close(node, rc)

        def _on_node_timeout(self, node: str) -> None:
            self.scr_timed_out.add(node)
            super()._on_node_timeout(node)

    class SpawnMixin:
        """ExecClient's process start, by :class:`subprocess.Popen` (vfork where it can):
        ClusterShell's own Popen fork()s this whole Python process for every node, the
        largest cost at 10,000 nodes."""

        def _exec_nonblock(self, commandlist: Any, shell: bool = False,
                           env: dict[str, str] | None = None) -> Any:
            if shell or not isinstance(commandlist, list) or not self._stderr:
                return super()._exec_nonblock(commandlist, shell=shell, env=env)
            full_env = None
            if env:
                full_env = os.environ.copy()
                full_env.update(env)
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            try:
                proc = subprocess.Popen(commandlist, stdin=in_r, stdout=out_w, stderr=err_w,
                                        env=full_env, close_fds=True)
            except OSError:
                for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                    os.close(fd)
                # ClusterShell's way: the child reports the failure as exit code 255
                return super()._exec_nonblock(commandlist, shell=shell, env=env)
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            for fd in (in_w, out_r, err_r):
                set_nonblock_flag(fd)
            # raw descriptors: the engine closes them (closefd), no file object owns them
            self.streams.set_stream(self.worker.SNAME_STDERR, err_r, E_READ)
            self.streams.set_stream(self.worker.SNAME_STDOUT, out_r, E_READ)
            self.streams.set_stream(self.worker.SNAME_STDIN, in_w, E_WRITE, retain=False)
            return proc

    class ArgvExecClient(SpawnMixin, ExecClient):
        """Exec client that starts ``wrapper(%h=node) + argv`` as an argv list, no shell."""

        def _build_cmd(self) -> tuple[list[str], dict[str, str] | None]:
            worker = self.worker
            return (expand_wrapper(worker.scr_wrapper, self.key) + worker.scr_argv,
                    worker.scr_env)

    class SpawnSshClient(SpawnMixin, SshClient):
        """ClusterShell's ssh client (its argv: ssh options, host, quoted command)."""

    class ArgvExecWorker(CollectingMixin, ExecWorker):
        SHELL_CLASS = ArgvExecClient

        def __init__(self, nodes: Sequence[str], timeout: float | None,
                     wrapper: Sequence[str], argv: Sequence[str],
                     env: dict[str, str] | None) -> None:
            self.scr_wrapper = list(wrapper)
            self.scr_argv = list(argv)
            self.scr_env = env
            # the command string is only a label: ArgvExecClient builds the real argv
            super().__init__(nodes, timeout, command="scr-argv")

    class SshWorker(CollectingMixin, WorkerSsh):
        SHELL_CLASS = SpawnSshClient

    _CACHE = (ArgvExecWorker, SshWorker)
    return _CACHE


_CACHE: tuple[Any, Any] | None = None


def _join(lines: list[bytes] | None) -> str:
    return decode(b"\n".join(lines) + b"\n") if lines else ""


class ClusterShellRemoteExecutor(RemoteExecutor):
    """``argv`` on every node through ClusterShell; see the module docstring."""

    name = "clustershell"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.settings = settings_or_default(context)
        if self.settings.worker == "exec":
            # fail at selection time, not halfway through a node test
            self.wrapper = require_per_node_wrapper(self.settings.wrapper,
                                                    "clustershell exec worker")
        else:
            self.wrapper = []

    def run(
        self,
        argv: Sequence[str],
        nodes: Sequence[str],
        fanout: int = 64,
        timeout: float | None = 60.0,
    ) -> RemoteResult:
        argv, nodes, fanout, timeout = checked_request(self.settings, argv, nodes, fanout,
                                                       timeout)
        result = RemoteResult()
        if not nodes:
            return result
        try:
            from ClusterShell.Task import task_self
        except ImportError as exc:
            raise RemoteExecError("the clustershell remote executor needs the ClusterShell "
                                  "package (pip install ClusterShell)") from exc
        exec_worker, ssh_worker = _classes()
        program = (expand_wrapper(self.wrapper, nodes[0])[0] if self.wrapper
                   else (shlex.split(self.settings.ssh_path or "") or ["ssh"])[0])
        if shutil.which(program, path=self.environ.get("PATH")) is None:
            # a missing transport is a configuration error, not N dead nodes
            raise RemoteExecError(f"clustershell remote exec: '{program}' not found")
        if self.settings.worker == "exec":
            worker = exec_worker(nodes, timeout, self.wrapper, argv, self._env_delta())
        else:
            worker = ssh_worker(nodes, timeout, command=shlex.join(argv))
        task = task_self()
        saved_info = {k: task.info(k) for k in _INFO_KEYS}
        saved_default = {k: task.default(k) for k in _DEFAULT_KEYS}
        try:
            task.set_info("fanout", fanout)
            task.set_info("connect_timeout", self.settings.connect_timeout)
            if self.settings.ssh_path:
                task.set_info("ssh_path", self.settings.ssh_path)
            if self.settings.ssh_user:
                task.set_info("ssh_user", self.settings.ssh_user)
            if self.settings.ssh_options:
                task.set_info("ssh_options", shlex.join(self.settings.ssh_options))
            # our worker keeps the output; ClusterShell's own message trees would only
            # cost time and memory at 10,000 nodes
            task.set_default("stdout_msgtree", False)
            task.set_default("stderr_msgtree", False)
            # commands get EOF on stdin at once instead of waiting for input
            worker.set_write_eof()
            task.schedule(worker)
            try:
                task.resume()
                # ClusterShell's own record of timed-out keys, plus what our worker saw
                timed_out = set(worker.iter_keys_timeout()) | worker.scr_timed_out
            except BaseException as exc:
                # an exception (or Ctrl-C) inside the engine: kill the commands still
                # running and drop the task, so the next task_self() here starts clean
                task.abort(kill=True)
                if not isinstance(exc, Exception):
                    raise
                raise RemoteExecError(f"ClusterShell failed: {type(exc).__name__}: {exc}") \
                    from exc
        finally:
            # absent keys read as None, which every ClusterShell worker treats as "default"
            for k, v in saved_info.items():
                task.set_info(k, v)
            for k, v in saved_default.items():
                task.set_default(k, v)
        unreachable_rc = self.settings.unreachable_rc
        for n in nodes:
            out = _join(worker.scr_out.get(n))
            err = _join(worker.scr_err.get(n))
            if n in timed_out:
                result[n] = NodeResult(rc=None, stdout=out, stderr=err, timed_out=True)
            elif n in worker.scr_rc:
                rc = worker.scr_rc[n]
                result[n] = NodeResult(rc=rc, stdout=out, stderr=err,
                                       unreachable=unreachable_rc is not None
                                       and rc == unreachable_rc)
            else:  # never started or lost: not reached, and said so
                result[n] = NodeResult(rc=None, stdout=out,
                                       stderr=err or f"{n}: no result from ClusterShell",
                                       unreachable=True)
        return result

    def _env_delta(self) -> dict[str, str] | None:
        """What our environment adds to os.environ (ClusterShell merges it into a copy)."""
        delta = {k: v for k, v in self.environ.items() if os.environ.get(k) != v}
        return delta or None
