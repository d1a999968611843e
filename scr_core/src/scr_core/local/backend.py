"""The ``local`` resource manager, launcher and remote executor (virtual nodes, real processes).

Launcher grammar (a subset of srun's, so batch scripts read the same)::

    local [-N NODES] [-n TASKS] [--ntasks-per-node K] [-w NODELIST] [-x NODELIST]
          [-D DIR] [--] PROGRAM [ARGS...]

Each task is a real local process. All tasks of one virtual node share one process group,
so ``scr local crash NODE`` kills exactly that node's tasks. Every task gets::

    SCR_LOCAL_NODE      the virtual node it runs on
    SCR_LOCAL_RANK      its rank in the step (0..TASKS-1); SCR_LOCAL_NRANKS the task count
    SCR_LOCAL_NODEID    index of its node in the step; SCR_LOCAL_NNODES the node count
    SCR_LOCAL_LOCALID   its index among the tasks of its node
    SCR_LOCAL_NODE_DIR  the node's local storage directory; SCR_CNTL_BASE and SCR_CACHE_BASE
                        point there too, as /dev/shm is node-local on a real cluster

Like srun, the step ends when a node of the step dies (the other tasks are killed and the
exit code is 137), once ``local.node_timeout`` seconds (default 30; a real RM's node timeout)
have passed since the crash; with ``kill_on_bad_exit`` (default on) a task that fails ends the
step too, the way an MPI job aborts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Mapping, Sequence

from ..client_commands import tracked_group
from ..errors import LaunchError, UsageError
from ..hostlist import difference, expand
from ..interfaces import (
    JobStep,
    Launcher,
    NodeResult,
    RemoteExecutor,
    RemoteResult,
)
from .allocation import ENV_DIR, LocalAllocation

# the resource manager has its own module (no subprocess/threading to import for it); kept
# importable from here
from .rm import LocalResourceManager, _require_allocation  # noqa: F401

POLL_SECONDS = 0.05
KILL_GRACE_SECONDS = 3.0


def _stdin_is_tty() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False


def _forward_stdin(proc: subprocess.Popen) -> None:
    def pump() -> None:
        try:
            while True:
                chunk = os.read(0, 65536)
                if not chunk:
                    break
                proc.stdin.write(chunk)
                proc.stdin.flush()
        except (OSError, ValueError):
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    threading.Thread(target=pump, name="scr-stdin", daemon=True).start()


# --------------------------------------------------------------------------- launcher


def parse_launcher_args(args: Sequence[str]) -> dict:
    """Split ``local`` launcher options from the program. Raises UsageError."""
    opts: dict = {"nodes": None, "ntasks": None, "per_node": None, "nodelist": None,
                  "exclude": None, "chdir": None, "program": []}
    takes_value = {"-N": "nodes", "--nodes": "nodes", "-n": "ntasks", "--ntasks": "ntasks",
                   "--ntasks-per-node": "per_node", "-w": "nodelist", "--nodelist": "nodelist",
                   "-x": "exclude", "--exclude": "exclude", "-D": "chdir", "--chdir": "chdir"}
    i = 0
    args = list(args)
    while i < len(args):
        a = args[i]
        if a == "--":
            opts["program"] = args[i + 1:]
            break
        key, value = a, None
        if a.startswith("--") and "=" in a:
            key, value = a.split("=", 1)
        elif len(a) > 2 and a[:2] in ("-N", "-n", "-w", "-x", "-D") and not a.startswith("--"):
            key, value = a[:2], a[2:]
        if key in takes_value:
            if value is None:
                if i + 1 >= len(args):
                    raise UsageError(f"local launcher: option {key} needs a value")
                value = args[i + 1]
                i += 1
            opts[takes_value[key]] = value
            i += 1
            continue
        if a.startswith("-"):
            raise UsageError(f"local launcher: unknown option '{a}'")
        opts["program"] = args[i:]
        break
    for key in ("nodes", "ntasks", "per_node"):
        if opts[key] is not None:
            try:
                opts[key] = int(opts[key])
            except ValueError as exc:
                raise UsageError(f"local launcher: {key} must be a number, not "
                                 f"'{opts[key]}'") from exc
            if opts[key] < 1:
                raise UsageError(f"local launcher: {key} must be at least 1")
    if not opts["program"]:
        raise UsageError("local launcher: no program to run")
    return opts


class LocalLauncher(Launcher):
    name = "local"

    def build_argv(
        self, args: Sequence[str], nodes: Sequence[str] | None, exclude: Sequence[str]
    ) -> list[str]:
        argv = ["local"]
        if exclude:
            argv += ["--exclude", ",".join(exclude)]
        if nodes:
            argv += ["--nodelist", ",".join(nodes)]
        return argv + list(args)

    def _settings_flag(self, name: str, default: bool) -> bool:
        settings = self.context.settings
        return bool(getattr(settings, name, default)) if settings is not None else default

    def _node_timeout(self) -> float:
        settings = self.context.settings
        return float(getattr(settings, "node_timeout", 0.0)) if settings is not None else 0.0

    def launch(
        self,
        args: Sequence[str],
        nodes: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> JobStep:
        alloc = _require_allocation(env if env is not None else self.environ)
        opts = parse_launcher_args(args)
        excluded = list(exclude)
        if opts["exclude"]:
            excluded += expand(opts["exclude"])
        if nodes is None and opts["nodelist"]:
            nodes = expand(opts["nodelist"])
        dead = [n for n in alloc.nodes if alloc.is_crashed(n)]
        if nodes is not None:
            chosen = list(nodes)
            unknown = [n for n in chosen if n not in alloc.node_set]
            if unknown:
                raise LaunchError(f"local launcher: nodes not in the allocation: "
                                  f"{','.join(unknown)}")
            bad = [n for n in chosen if n in excluded or n in dead]
            if bad:
                raise LaunchError(f"local launcher: requested nodes are excluded or dead: "
                                  f"{','.join(bad)}")
        else:
            chosen = difference(difference(alloc.nodes, excluded), dead)
        want = opts["nodes"]
        if want is not None:
            if want > len(chosen):
                if not (exclude or dead) or not self._settings_flag("shrink", True):
                    raise LaunchError(
                        f"local launcher: {want} nodes requested but only {len(chosen)} "
                        f"usable ({','.join(chosen) or 'none'})"
                    )
                # a relaunch around failed nodes: run on the survivors, as scr run promises
                print(f"scr: local: {want} nodes requested, {len(chosen)} usable after "
                      f"excluding failed nodes; running on {len(chosen)}", flush=True)
            chosen = chosen[:want]
        if not chosen:
            raise LaunchError("local launcher: no usable nodes left in the allocation")
        nnodes = len(chosen)
        if opts["ntasks"] is not None:
            ntasks = opts["ntasks"]
        elif opts["per_node"] is not None:
            ntasks = opts["per_node"] * nnodes
        else:
            ntasks = nnodes
        if ntasks < nnodes:
            chosen, nnodes = chosen[:ntasks], ntasks
        # block distribution, as srun's default
        base, extra = divmod(ntasks, nnodes)
        counts = [base + (1 if i < extra else 0) for i in range(nnodes)]

        program = opts["program"]
        parent_env = dict(env if env is not None else self.environ)
        from . import lifeline

        lifeline.ensure(alloc.path)  # the tasks die with this process, even by SIGKILL
        cwd = opts["chdir"]
        tasks: list[tuple[str, subprocess.Popen]] = []
        groups: dict[str, int] = {}
        rank = 0
        try:
            for nodeid, (node, count) in enumerate(zip(chosen, counts)):
                storage = alloc.node_storage(node)
                for localid in range(count):
                    task_env = dict(parent_env)
                    task_env.update({
                        ENV_DIR: alloc.path,
                        "SCR_LOCAL_NODE": node,
                        "SCR_LOCAL_RANK": str(rank),
                        "SCR_LOCAL_NRANKS": str(ntasks),
                        "SCR_LOCAL_NODEID": str(nodeid),
                        "SCR_LOCAL_NNODES": str(nnodes),
                        "SCR_LOCAL_LOCALID": str(localid),
                        "SCR_LOCAL_NODE_DIR": storage,
                        "SCR_CNTL_BASE": storage,
                        "SCR_CACHE_BASE": storage,
                    })
                    pgid = groups.get(node)
                    if rank == 0:
                        # A task outside the terminal's foreground group would be stopped
                        # (SIGTTIN) reading the terminal, so a terminal is forwarded by a
                        # thread, as srun does; a file or pipe is simply inherited.
                        stdin = subprocess.PIPE if _stdin_is_tty() else None
                    else:
                        stdin = subprocess.DEVNULL
                    proc = subprocess.Popen(
                        program,
                        env=task_env,
                        cwd=cwd,
                        stdin=stdin,
                        # one process group per virtual node: the unit a crash kills
                        preexec_fn=(lambda g=pgid: os.setpgid(0, g or 0)),
                    )
                    if proc.stdin is not None:
                        _forward_stdin(proc)
                    if pgid is None:
                        groups[node] = proc.pid
                        alloc.register_group(node, proc.pid)
                    tasks.append((node, proc))
                    rank += 1
        except OSError as exc:
            for _, proc in tasks:
                proc.kill()
            for node, pgid in groups.items():
                alloc.unregister_group(node, pgid)
            raise LaunchError(f"local launcher: cannot start {program[0]}: {exc}") from exc
        argv = self.build_argv(args, nodes, exclude)
        return JobStep(argv=argv, process=None, nodes=chosen, exclude=excluded,
                       step_id=f"{alloc.job_id}.{os.getpid()}.{int(time.time() * 1000)}",
                       data={"tasks": tasks, "groups": groups, "alloc": alloc.path})

    def _finish(self, step: JobStep, rc: int) -> int:
        alloc = LocalAllocation(step.data["alloc"])
        for node, pgid in step.data["groups"].items():
            alloc.unregister_group(node, pgid)
        step.returncode = rc
        return rc

    @staticmethod
    def _code(rc: int) -> int:
        return 128 - rc if rc < 0 else rc  # like a shell and srun: killed by N -> 128+N

    def wait(self, step: JobStep, timeout: float | None = None) -> int | None:
        if step.returncode is not None:
            return step.returncode
        alloc = LocalAllocation(step.data["alloc"])
        tasks: list[tuple[str, subprocess.Popen]] = step.data["tasks"]
        kill_on_bad_exit = self._settings_flag("kill_on_bad_exit", True)
        deadline = None if timeout is None else time.monotonic() + timeout
        node_timeout = self._node_timeout()
        while True:
            now = time.time()
            crashed = {n: alloc.crashed_at(n) for n in step.nodes or ()}
            dead_nodes = [n for n, at in crashed.items()
                          if at is not None and at + node_timeout <= now]
            # a crashed node's tasks did not "exit": like srun, the step learns of the
            # crash only when the node times out (the tasks count as running until then)
            codes = [None if crashed.get(node) is not None else p.poll() for node, p in tasks]
            failed = [c for c in codes if c not in (None, 0)]
            if dead_nodes:
                print(f"scr: local: node failure on {','.join(dead_nodes)}; "
                      "terminating the step", flush=True)
                self._terminate(tasks)
                return self._finish(step, 137)
            if failed and kill_on_bad_exit and None in codes:
                self._terminate(tasks)
                return self._finish(step, self._code(failed[0]))
            if None not in codes:
                rc = next((self._code(c) for c in codes if c != 0), 0)
                return self._finish(step, rc)
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(POLL_SECONDS)

    @staticmethod
    def _terminate(tasks: Sequence[tuple[str, subprocess.Popen]]) -> None:
        for _, p in tasks:
            if p.poll() is None:
                try:
                    os.killpg(os.getpgid(p.pid), signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        for _, p in tasks:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for _, p in tasks:
            if p.poll() is None:
                try:
                    os.killpg(os.getpgid(p.pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    p.kill()
                p.wait()

    def kill(self, step: JobStep) -> None:
        if step.returncode is not None:
            return
        self._terminate(step.data["tasks"])
        codes = [p.returncode for _, p in step.data["tasks"]]
        self._finish(step, next((self._code(c) for c in codes if c), 0) or 143)

    def one_node_argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return ["scr", "local", "exec", node, "--", *argv]


# --------------------------------------------------------------------------- remote exec


class LocalRemoteExecutor(RemoteExecutor):
    """Runs the command as a local process per virtual node, with the node's identity and
    storage in its environment. A crashed node is unreachable; injected faults (``scr local
    fault``) make a node hang, fail or print garbage, to exercise the callers."""

    name = "local"

    def _run_one(self, alloc: LocalAllocation, node: str, argv: Sequence[str],
                 timeout: float | None) -> NodeResult:
        if alloc.is_crashed(node):
            return NodeResult(rc=None, stderr=f"{node}: node is not responding",
                              unreachable=True)
        fault = alloc.fault(node)
        if fault == "fail":
            return NodeResult(rc=255, stderr=f"{node}: injected failure")
        cmd = list(argv)
        if fault == "hang":
            cmd = ["sleep", str(int((timeout or 3600) + 60))]
        env = dict(self.environ)
        storage = alloc.node_storage(node)
        env.update({ENV_DIR: alloc.path, "SCR_LOCAL_NODE": node, "SCR_LOCAL_NODE_DIR": storage,
                    "SCR_CNTL_BASE": storage, "SCR_CACHE_BASE": storage})
        try:
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except OSError as exc:
            return NodeResult(rc=127, stderr=f"{node}: {exc}")
        try:
            with tracked_group(proc):  # stopped with its group if we are interrupted
                out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return NodeResult(rc=None, stdout=out.decode(errors="replace"),
                              stderr=err.decode(errors="replace"), timed_out=True)
        text = out.decode(errors="replace")
        if fault == "garbage":
            text = "\x00\x1b[31m#!garbage ~~~\n" + text[::-1]
        return NodeResult(rc=proc.returncode, stdout=text, stderr=err.decode(errors="replace"))

    def run(
        self,
        argv: Sequence[str],
        nodes: Sequence[str],
        fanout: int = 64,
        timeout: float | None = 60.0,
    ) -> RemoteResult:
        alloc = _require_allocation(self.environ)
        result = RemoteResult()
        for n in nodes:
            result[n] = NodeResult(rc=None)
        unknown = [n for n in nodes if n not in alloc.node_set]
        for n in unknown:
            result[n] = NodeResult(rc=None, stderr=f"{n}: not a node of this allocation",
                                   unreachable=True)
        todo = [n for n in nodes if n not in unknown]
        if not todo:
            return result
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, min(fanout, len(todo)))) as pool:
            for node, res in zip(todo, pool.map(
                    lambda n: self._run_one(alloc, n, argv, timeout), todo)):
                result[node] = res
        return result
