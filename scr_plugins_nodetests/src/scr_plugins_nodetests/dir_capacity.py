"""``dir_capacity``: the control and cache directories work on each node and are big enough.

Runs on every node, through the job's remote executor::

    <python> -m scr_core check-node --cntl <control base>[:BYTES] --cache <base>[:BYTES],...
             [--free]

which creates each directory if needed, writes and removes a file in it (so a read-only or
full file system fails), and with a size compares it with the file system's capacity (or its
free space with ``--free``). It prints ``scr_check_node: PASS`` or ``scr_check_node: FAIL:
why``; a FAIL marks the node down with ``Failed dir check: why``.

Directories are the *base* directories (as SCR's test): ``SCR_CNTL_BASE`` and every cache base
of :meth:`Params.cache_bases` (``CACHE=``/``SCR_CACHE_BASE``, ``STORE=``, ``CKPT STORE=``).

Sizes, decided here: SCR_CACHE_SIZE counts datasets, not bytes, so it cannot be a capacity.
The size a base needs is the ``BYTES`` attribute SCR's ``scr_check_node`` used: of a
``CNTLDIR=<base> BYTES=...`` entry for the control base, of a ``CACHEDIR=<base> BYTES=...``
entry for a cache base, and (our extension, same meaning) of the base's own ``CACHE=`` or
``STORE=`` entry, e.g. ``STORE=/dev/shm BYTES=4GB``. Units are allowed. No BYTES: only
existence and writability are checked. ``--free`` comes from settings ``nodetests.free_space``
(``scr list-down-nodes --free`` sets it).

The python must have scr_core installed and be visible on the nodes (default: this python;
settings ``nodetests.python``).

On the ``local`` backend every virtual node's "/dev/shm" is its own directory (the local
executor points ``SCR_CNTL_BASE``/``SCR_CACHE_BASE`` there), so the control base and a cache
base that comes from SCR_CACHE_BASE are checked in that node's directory.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from scr_core.errors import ConfigError
from scr_core.interfaces import NodeResult, NodeTest, RemoteResult
from scr_core.units import parse_bytes

from ._common import (
    effective_timeout,
    exit_detail,
    fanout_of,
    remote_run,
    settings_of,
    transport_failure,
)

REASON = "Failed dir check"
PASS = "scr_check_node: PASS"
FAIL = "scr_check_node: FAIL:"


def _norm(path: str) -> str:
    return path.rstrip("/") or "/"


def _bytes_of(params: Any, keys: Sequence[str], base: str) -> int | None:
    """The BYTES attribute of the first entry of ``keys`` naming ``base``."""
    for key in keys:
        for value, attrs in params.get_hash(key).items():
            if _norm(value) == _norm(base) and attrs.get("BYTES"):
                try:
                    return parse_bytes(attrs["BYTES"])
                except Exception as exc:
                    raise ConfigError(f"{key}={value} BYTES={attrs['BYTES']!r} "
                                      f"({params.source(key)}) is not a size") from exc
    return None


def dir_plan(params: Any) -> tuple[list[tuple[str, int | None]], list[tuple[str, int | None]]]:
    """([(control base, bytes)], [(cache base, bytes), ...]) from the SCR parameters."""
    cntl = params.control_base()
    cntl_plan = [(cntl, _bytes_of(params, ("CNTLDIR",), cntl))]
    cache_plan = [(b, _bytes_of(params, ("CACHEDIR", "CACHE", "STORE"), b))
                  for b in params.cache_bases()]
    return cntl_plan, cache_plan


def _spec(entries: Sequence[tuple[str, int | None]]) -> str:
    parts = []
    for path, size in entries:
        if "," in path or (":" in path and size is None):
            raise ConfigError(f"dir_capacity: cannot pass directory {path!r} to "
                              "scr check-node (',' or ':' in the path)")
        parts.append(f"{path}:{size}" if size is not None else path)
    return ",".join(parts)


def check_argv(python: str, cntl: Sequence[tuple[str, int | None]],
               cache: Sequence[tuple[str, int | None]], free: bool) -> list[str]:
    argv = [python, "-m", "scr_core", "check-node"]
    if cntl:
        argv += ["--cntl", _spec(cntl)]
    if cache:
        argv += ["--cache", _spec(cache)]
    if free:
        argv.append("--free")
    return argv


def dir_verdict(res: NodeResult, timeout: float) -> str | None:
    """None if the node's check passed, else the reason."""
    failure = transport_failure(res, timeout)
    if failure:
        return f"{REASON} ({failure})"
    lines = [line.strip() for line in res.stdout.splitlines()]
    for line in lines:
        if line.startswith(FAIL):
            return f"{REASON}: {line[len(FAIL):].strip() or 'FAIL'}"
    if res.rc == 0 and PASS in lines:
        return None
    return f"{REASON} ({exit_detail(res)})"


class DirCapacityTest(NodeTest):
    name = "dir_capacity"

    def run(self, nodes: Sequence[str], job: Any) -> dict[str, str]:
        settings = settings_of(self.context)
        python = settings.python or sys.executable
        cntl, cache = dir_plan(job.params)
        timeout = settings.dir_timeout
        if getattr(job.resource_manager, "name", "") == "local":
            result = self._run_local(job, settings, python, cntl, cache, nodes)
        else:
            argv = check_argv(python, cntl, cache, settings.free_space)
            result = remote_run(job, settings, argv, nodes, timeout)
        shown = effective_timeout(job, timeout)
        failed: dict[str, str] = {}
        for n in nodes:
            res = result.get(n)
            if res is None:
                failed[n] = f"{REASON} (no result for this node)"
                continue
            why = dir_verdict(res, shown)
            if why:
                failed[n] = why
        return failed

    def _run_local(self, job: Any, settings: Any, python: str,
                   cntl: Sequence[tuple[str, int | None]],
                   cache: Sequence[tuple[str, int | None]],
                   nodes: Sequence[str]) -> RemoteResult:
        """Each virtual node checks its own directory: one argv per node."""
        from scr_core.local.allocation import ENV_DIR, LocalAllocation

        alloc = LocalAllocation(job.environ[ENV_DIR])
        # the bases the local executor redirects into the node's directory
        redirected = {_norm(job.params.control_base())}
        if not job.params.get_hash("CACHE"):
            redirected.add(_norm(job.params.get("SCR_CACHE_BASE") or "/dev/shm"))

        def argv_for(node: str) -> list[str]:
            storage = alloc.node_storage(node)
            move = [(storage if _norm(p) in redirected else p, s) for p, s in cntl]
            moved_cache = [(storage if _norm(p) in redirected else p, s) for p, s in cache]
            return check_argv(python, move, moved_cache, settings.free_space)

        def one(node: str) -> RemoteResult:
            return remote_run(job, settings, argv_for(node), [node], settings.dir_timeout)

        result = RemoteResult()
        workers = max(1, min(fanout_of(job, settings), len(nodes)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for part in pool.map(one, list(nodes)):
                result.update(part)
        return result
