"""A virtual allocation on this machine: the state behind the ``local`` backend.

An allocation is a directory (``$SCR_LOCAL_DIR``, made by ``scr local alloc`` or implicitly
by ``scr run local``) holding::

    allocation.json          job id, node names (in order), end time, creation time, and
                             the owner (pid and start time) when a process owns it
    nodes/<node>/shm/        the node's "node-local storage" (what /dev/shm is on a cluster)
    nodes/<node>/down        present when the node is down; its text is the reason
    nodes/<node>/crashed     present when the node is dead: unreachable, its tasks killed
    nodes/<node>/fault       optional fault injected for remote execution: hang|fail|garbage
    nodes/<node>/pgids/<n>   process groups of job-step tasks running on the node

Everything is plain files so that several processes (scr run, scr local crash, the tasks
themselves) agree without a daemon. Writes are atomic (temp + rename).

An allocation made by ``scr local alloc`` or implicitly by ``scr run local`` is *owned* by
that process: if the owner is gone (killed with SIGKILL, so it could not clean up) the
allocation is *stale*. Its task groups are stopped and its directory removed by the
owner's lifeline at once (:mod:`scr_core.local.lifeline`), else by :func:`sweep_stale`,
which every ``scr local`` command and every new allocation run on their base directory.
"""

from __future__ import annotations

import json
import os
import time
from typing import Iterable, Mapping

from ..errors import JobEnvironmentError, UsageError
from ..files import write_text_atomic

ENV_DIR = "SCR_LOCAL_DIR"
FAULTS = ("hang", "fail", "garbage")


_SIGKILL = 9  # signal.SIGKILL on every POSIX system (signal is not imported for it)
_SIGTERM = 15

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
        # the owning process (scr local alloc, an implicit scr run local), if any; a value
        # that is not a pid makes the allocation unowned, never stale
        owner = meta.get("owner")
        pid = owner.get("pid") if isinstance(owner, dict) else None
        owned = isinstance(pid, int) and not isinstance(pid, bool) and pid > 0
        self.owner_pid: int | None = pid if owned else None
        start = owner.get("start") if owned else None  # type: ignore[union-attr]
        self.owner_start: int | None = start if isinstance(start, int) else None

    # -- creation ----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        nodes: Iterable[str],
        time_limit: float | None = None,
        base: str | None = None,
        job_id: str | None = None,
        owned: bool = False,
    ) -> LocalAllocation:
        """A new allocation in ``base``; ``owned``: this process owns it (it is stale once
        this process is gone). Stale allocations in ``base`` are cleaned first."""
        from ..hostlist import validate_node_name

        names = [validate_node_name(n) for n in nodes]
        if not names:
            raise UsageError("a local allocation needs at least one node")
        if len(set(names)) != len(names):
            raise UsageError("node names of a local allocation must be unique")
        base = base or default_base()
        os.makedirs(base, mode=0o700, exist_ok=True)
        sweep_stale(base)
        import tempfile

        path = tempfile.mkdtemp(prefix="alloc.", dir=base)
        job_id = job_id or f"local.{os.path.basename(path)[6:]}"
        now = time.time()
        end = int(now + time_limit) if time_limit else -1
        for n in names:
            os.makedirs(os.path.join(path, "nodes", n, "shm"))
            os.makedirs(os.path.join(path, "nodes", n, "pgids"))
        meta: dict = {"job_id": job_id, "nodes": names, "end_time": end, "created": now}
        if owned:
            meta["owner"] = {"pid": os.getpid(), "start": _start_ticks(os.getpid())}
        write_text_atomic(os.path.join(path, "allocation.json"), json.dumps(meta, indent=1))
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
        write_text_atomic(os.path.join(self._node_dir(node), "down"), reason.strip() or "down")

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
        write_text_atomic(path, fault)

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
        write_text_atomic(os.path.join(d, "crashed"), time.strftime("%Y-%m-%dT%H:%M:%S"))
        return self.kill_node_tasks(node, _SIGKILL)

    # -- task registry -----------------------------------------------------------------------
    def register_group(self, node: str, pgid: int) -> None:
        write_text_atomic(os.path.join(self._node_dir(node), "pgids", str(pgid)), str(os.getpid()))

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

    def group_owner(self, node: str, pgid: int) -> int | None:
        """Pid of the process that launched task group ``pgid`` on ``node`` (None: unknown)."""
        try:
            with open(os.path.join(self._node_dir(node), "pgids", str(pgid))) as fh:
                return int(fh.read().strip())
        except (OSError, ValueError):
            return None

    def stop_tasks(self, owner: int | None = None, grace: float = 3.0) -> int:
        """Stop the task groups launched by ``owner`` (None: by anyone): SIGTERM, SIGKILL
        after ``grace`` seconds. Only groups that still hold a process of this allocation
        (``SCR_LOCAL_DIR`` in its environment) are signalled: a recorded group id may have
        been reused since. Returns how many groups were stopped."""
        groups = [(n, g) for n in self.nodes for g in self.node_groups(n)
                  if owner is None or self.group_owner(n, g) == owner]
        ours = _groups_with_marker({g for _, g in groups}, f"{ENV_DIR}={self.path}")
        for _node, pgid in groups:
            if pgid in ours:
                _killpg(pgid, _SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_group_alive(g) for g in ours):
            time.sleep(0.05)
        for node, pgid in groups:
            if pgid in ours and _group_alive(pgid):
                _killpg(pgid, _SIGKILL)
            self.unregister_group(node, pgid)
        return len(ours)

    def is_stale(self) -> bool:
        """True when the allocation has an owner and that process is gone."""
        if self.owner_pid is None:
            return False
        start = _start_ticks(self.owner_pid)
        if start is None:
            return not _pid_exists(self.owner_pid)
        return self.owner_start is not None and start != self.owner_start

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


def sweep_stale(base: str) -> list[str]:
    """Clean every stale allocation (owner gone) in ``base``: stop its task groups, remove
    its directory. Returns their job ids."""
    import shutil

    cleaned = []
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return cleaned
    for name in names:
        if not name.startswith("alloc."):
            continue
        try:
            alloc = LocalAllocation(os.path.join(base, name))
        except (JobEnvironmentError, KeyError, TypeError, ValueError):
            continue  # being created, or not ours to judge
        if alloc.is_stale():
            alloc.stop_tasks()
            shutil.rmtree(alloc.path, ignore_errors=True)
            cleaned.append(alloc.job_id)
    return cleaned


# -- processes (Linux /proc; elsewhere the checks are weaker but safe) -----------------------

def _start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (with the pid, unique), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _groups_with_marker(pgids: set, marker: str) -> set:
    """The process groups among ``pgids`` with a member whose environment holds ``marker``
    (``NAME=value``). Without /proc every group is taken as it is recorded."""
    if not pgids:
        return set()
    if not os.path.isdir("/proc/self"):
        return set(pgids)
    want = marker.encode()
    found: set = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                pgrp = int(fh.read().rsplit(b")", 1)[1].split()[2])
            if pgrp not in pgids or pgrp in found:
                continue
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if want in fh.read().split(b"\0"):
                    found.add(pgrp)
        except (OSError, IndexError, ValueError):
            continue
    return found
