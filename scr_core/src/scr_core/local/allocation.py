"""A virtual allocation on this machine: the state behind the ``local`` backend.

An allocation is a directory (``$SCR_LOCAL_DIR``, made by ``scr local alloc`` or implicitly
by ``scr run local``) holding::

    allocation.json          job id, node names (in order), end time, creation time
    nodes/<node>/shm/        the node's "node-local storage" (what /dev/shm is on a cluster)
    nodes/<node>/down        present when the node is down; its text is the reason
    nodes/<node>/crashed     present when the node is dead: unreachable, its tasks killed
    nodes/<node>/fault       optional fault injected for remote execution: hang|fail|garbage
    nodes/<node>/pgids/<n>   process groups of job-step tasks running on the node

Everything is plain files so that several processes (scr run, scr local crash, the tasks
themselves) agree without a daemon. Writes are atomic (temp + rename).
"""

from __future__ import annotations

import json
import os
import time
from typing import Iterable, Mapping

from ..errors import JobEnvironmentError, UsageError

ENV_DIR = "SCR_LOCAL_DIR"
FAULTS = ("hang", "fail", "garbage")


_SIGKILL = 9  # signal.SIGKILL on every POSIX system (signal is not imported for it)

def _atomic_write(path: str, text: str) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _checked_meta(meta: object, where: str) -> tuple[str, list[str], int, float]:
    """(job id, nodes, end time, creation time) of an allocation.json, each checked: a file
    edited by hand or cut short is refused with one line, not a TypeError later."""

    def bad(why: str) -> JobEnvironmentError:
        return JobEnvironmentError(f"{where}: malformed allocation file: {why}")

    if not isinstance(meta, dict):
        raise bad("expected a JSON object")
    job_id, nodes = meta.get("job_id"), meta.get("nodes")
    if not isinstance(job_id, (str, int)) or isinstance(job_id, bool) or job_id == "":
        raise bad("'job_id' must be a non-empty string")
    if not isinstance(nodes, list) or not nodes or \
            not all(isinstance(n, str) and n for n in nodes):
        raise bad("'nodes' must be a non-empty list of node names")
    import re

    name_re = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")  # hostlist's rule, without its import
    bad_name = next((n for n in nodes if name_re.fullmatch(n) is None), None)
    if bad_name is not None:
        raise bad(f"invalid node name {bad_name[:60]!r}")
    end, created = meta.get("end_time", -1), meta.get("created", 0)
    if not isinstance(end, int) or isinstance(end, bool):
        raise bad("'end_time' must be an integer (epoch seconds, -1 for none)")
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        raise bad("'created' must be a number")
    return str(job_id), list(nodes), end, float(created)


def default_base() -> str:
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"scr-local-{os.getuid()}")


class LocalAllocation:
    """Open an existing virtual allocation directory."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        meta_path = os.path.join(self.path, "allocation.json")
        try:
            with open(meta_path) as fh:
                meta = json.load(fh)
        except FileNotFoundError as exc:
            raise JobEnvironmentError(
                f"{self.path} is not a local allocation (no allocation.json); "
                f"create one with 'scr local alloc'"
            ) from exc
        except (OSError, ValueError) as exc:
            raise JobEnvironmentError(f"cannot read {meta_path}: {exc}") from exc
        self.job_id, self.nodes, self.end_time, self.created = _checked_meta(meta, meta_path)
        #: membership tests (every launch checks every node: a list made it quadratic)
        self.node_set: frozenset[str] = frozenset(self.nodes)

    # -- creation ----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        nodes: Iterable[str],
        time_limit: float | None = None,
        base: str | None = None,
        job_id: str | None = None,
    ) -> LocalAllocation:
        from ..hostlist import validate_node_name

        names = [validate_node_name(n) for n in nodes]
        if not names:
            raise UsageError("a local allocation needs at least one node")
        if len(set(names)) != len(names):
            raise UsageError("node names of a local allocation must be unique")
        base = base or default_base()
        os.makedirs(base, mode=0o700, exist_ok=True)
        import tempfile

        path = tempfile.mkdtemp(prefix="alloc.", dir=base)
        job_id = job_id or f"local.{os.path.basename(path)[6:]}"
        now = time.time()
        end = int(now + time_limit) if time_limit else -1
        for n in names:
            os.makedirs(os.path.join(path, "nodes", n, "shm"))
            os.makedirs(os.path.join(path, "nodes", n, "pgids"))
        meta = {"job_id": job_id, "nodes": names, "end_time": end, "created": now}
        _atomic_write(os.path.join(path, "allocation.json"), json.dumps(meta, indent=1))
        return cls(path)

    @staticmethod
    def node_names(spec: str | int, prefix: str = "vnode") -> list[str]:
        """``4`` -> vnode1..vnode4; a hostlist string -> its names."""
        if isinstance(spec, int) or str(spec).isdigit():
            count = int(spec)
            if count < 1:
                raise UsageError(f"node count must be at least 1, not {count}")
            return [f"{prefix}{i}" for i in range(1, count + 1)]
        from ..hostlist import expand

        return expand(str(spec))

    # -- node state --------------------------------------------------------------------------
    def _node_dir(self, node: str) -> str:
        if node not in self.node_set:
            raise UsageError(
                f"'{node}' is not a node of local allocation {self.job_id} "
                f"({', '.join(self.nodes)})"
            )
        return os.path.join(self.path, "nodes", node)

    def node_storage(self, node: str) -> str:
        return os.path.join(self._node_dir(node), "shm")

    def set_down(self, node: str, reason: str = "Marked down") -> None:
        _atomic_write(os.path.join(self._node_dir(node), "down"), reason.strip() or "down")

    def set_up(self, node: str) -> None:
        for name in ("down", "crashed", "fault"):
            try:
                os.unlink(os.path.join(self._node_dir(node), name))
            except FileNotFoundError:
                pass

    def set_fault(self, node: str, fault: str | None) -> None:
        path = os.path.join(self._node_dir(node), "fault")
        if fault is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        if fault not in FAULTS:
            raise UsageError(f"unknown fault '{fault}'; choose one of {', '.join(FAULTS)}")
        _atomic_write(path, fault)

    def fault(self, node: str) -> str | None:
        try:
            with open(os.path.join(self._node_dir(node), "fault")) as fh:
                return fh.read().strip() or None
        except FileNotFoundError:
            return None

    def is_crashed(self, node: str) -> bool:
        return os.path.exists(os.path.join(self._node_dir(node), "crashed"))

    def crashed_at(self, node: str) -> float | None:
        """Epoch seconds of the node's crash (its marker's mtime), None while it lives."""
        try:
            return os.stat(os.path.join(self._node_dir(node), "crashed")).st_mtime
        except FileNotFoundError:
            return None

    def down_nodes(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for n in self.nodes:
            d = os.path.join(self.path, "nodes", n)
            if os.path.exists(os.path.join(d, "crashed")):
                out[n] = "Not responding (node crashed)"
                continue
            try:
                with open(os.path.join(d, "down")) as fh:
                    out[n] = fh.read().strip() or "down"
            except FileNotFoundError:
                pass
        return out

    def crash(self, node: str) -> int:
        """Kill every task on ``node`` at once (SIGKILL) and mark it dead. Returns #groups."""
        d = self._node_dir(node)
        _atomic_write(os.path.join(d, "crashed"), time.strftime("%Y-%m-%dT%H:%M:%S"))
        return self.kill_node_tasks(node, _SIGKILL)

    # -- task registry -----------------------------------------------------------------------
    def register_group(self, node: str, pgid: int) -> None:
        _atomic_write(os.path.join(self._node_dir(node), "pgids", str(pgid)), str(os.getpid()))

    def unregister_group(self, node: str, pgid: int) -> None:
        try:
            os.unlink(os.path.join(self._node_dir(node), "pgids", str(pgid)))
        except FileNotFoundError:
            pass

    def node_groups(self, node: str) -> list[int]:
        try:
            return [int(p) for p in os.listdir(os.path.join(self._node_dir(node), "pgids"))
                    if p.isdigit()]
        except FileNotFoundError:
            return []

    def kill_node_tasks(self, node: str, sig: int = _SIGKILL) -> int:
        count = 0
        for pgid in self.node_groups(node):
            try:
                os.killpg(pgid, sig)
                count += 1
            except ProcessLookupError:
                self.unregister_group(node, pgid)
            except PermissionError:
                pass
        return count

    def describe(self) -> str:
        down = self.down_nodes()
        lines = [f"local allocation {self.job_id} at {self.path}"]
        end = "none" if self.end_time < 0 else time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.localtime(self.end_time))
        lines.append(f"  end time: {end}")
        for n in self.nodes:
            state = "up" if n not in down else f"down ({down[n]})"
            fault = self.fault(n)
            if fault:
                state += f", fault={fault}"
            tasks = len(self.node_groups(n))
            lines.append(f"  {n}: {state}" + (f", {tasks} task group(s)" if tasks else ""))
        return "\n".join(lines)


def current_allocation(environ: Mapping[str, str] | None = None) -> LocalAllocation | None:
    """The allocation named by ``SCR_LOCAL_DIR`` in ``environ`` (default: ours), if any."""
    env = os.environ if environ is None else environ
    path = env.get(ENV_DIR)
    return LocalAllocation(path) if path else None
