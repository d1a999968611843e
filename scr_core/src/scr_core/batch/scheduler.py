"""The scheduler API (Pavilion's scheduler-plugin lifecycle) over any resource manager.

A resource manager plugin provides the optional methods of
:class:`~scr_core.interfaces.ResourceManager`; this module is what callers use on top of
them, whichever RM it is:

``available(rm)``
    can this backend submit, watch and cancel batch jobs (``features(rm)`` says which)
``submit(rm, request)`` / ``kickoff``
    the RM writes a job script (its header: fault-tolerance flag on by default, job name,
    nodes/tasks, time, partition/queue, account, output files, user header lines; its body:
    ``scr run ...`` from :func:`make_request`, or a given command) and submits it; the
    result is a JSON-serializable :class:`~scr_core.interfaces.JobRecord`
``status(rm, ids)``
    normalized states for many jobs with *one* RM query per poll; an id the RM said nothing
    about is ``unknown`` with a message, never "completed"
``cancel(rm, id)``, ``allocation_nodes(rm)``, ``inventory(rm, partition)``
``auto_size(inventory, "all")`` and ``chunk_nodes(nodes, chunks=N)``
    Pavilion's "advanced scheduler" features, as pure functions over an inventory

Node selection for chunks (the names are Pavilion's):

``contiguous``
    each chunk takes the next nodes in (natural) name order: n1-n4, n5-n8
``distributed``
    evenly spaced nodes: with 8 nodes and 2 chunks, n1,n3,n5,n7 and n2,n4,n6,n8; spreads a
    chunk over racks/switches when names follow the topology
``random``
    a random sample for each chunk (``seed`` makes it reproducible)
``rand_dist``
    the remaining nodes are cut into ``size`` segments and one random node is taken from each

Leftover nodes (when the count does not divide evenly) are dropped (``extra="discard"``,
the default, so every chunk has the same size) or, with ``extra="backfill"``, form one more
chunk topped up with nodes of the previous chunk (chunks then share nodes), as in Pavilion.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import sys
import time
from typing import Any, Iterable, Mapping, Sequence

from ..errors import NotSupportedError, ResourceManagerError, ScrError, UsageError
from ..interfaces import JobRecord, JobState, JobStatus, NodeInfo, ResourceManager, SubmitRequest

NODE_SELECTIONS = ("contiguous", "distributed", "random", "rand_dist")
EXTRA_MODES = ("discard", "backfill")
NODE_STATES = ("up", "available")
DEFAULT_PARTITION = "default"  # the group of nodes an RM reports without any partition

_BATCH_METHODS = ("submit", "status", "cancel")


class WaitTimeout(ScrError):
    """:func:`wait` gave up; ``statuses`` holds the last answer of the RM."""

    def __init__(self, message: str, statuses: Mapping[str, JobStatus]) -> None:
        super().__init__(message)
        self.statuses = dict(statuses)


# --------------------------------------------------------------------------- pure helpers

_NATURAL_SPLIT = re.compile(r"(\d+)")


def natural_key(name: str) -> list:
    """Sort key ordering n2 before n10 (what people and Slurm expect)."""
    parts: list = _NATURAL_SPLIT.split(name)
    parts[1::2] = [int(p) for p in parts[1::2]]
    return parts


def is_final(state: str) -> bool:
    """Is ``state`` (a :class:`JobState` value) one a job never leaves?"""
    return state in JobState.FINAL


def normalize_state(raw: str, table: Mapping[str, str], default: str = JobState.UNKNOWN) -> str:
    """Map an RM's raw state word to a :class:`JobState` value.

    ``raw`` is matched case-insensitively on its first word, without the decorations RMs
    add (``CANCELLED by 0``, ``COMPLETING+``); an unmapped word gives ``default``.
    """
    word = (raw or "").strip().split(" ", 1)[0].rstrip("+*").upper()
    state = {k.upper(): v for k, v in table.items()}.get(word, default)
    return state if state in JobState.ALL else JobState.UNKNOWN


def _pick(nodes: list[str], size: int, selection: str, rng: random.Random) -> list[str]:
    if selection == "contiguous":
        return nodes[:size]
    if selection == "random":
        return rng.sample(nodes, size)
    step = len(nodes) // size
    if selection == "distributed":
        return [nodes[i * step] for i in range(size)]
    if selection == "rand_dist":
        return [nodes[i * step + rng.randrange(step)] for i in range(size)]
    raise UsageError(f"unknown node selection '{selection}'; choose one of "
                     f"{', '.join(NODE_SELECTIONS)}")


def chunk_nodes(
    nodes: Iterable[str],
    chunks: int | None = None,
    size: int | None = None,
    selection: str = "contiguous",
    extra: str = "discard",
    seed: int | None = None,
) -> list[list[str]]:
    """Split ``nodes`` into ``chunks`` equal chunks (or into chunks of ``size`` nodes).

    Exactly one of ``chunks`` and ``size`` is given. Nodes are taken in natural name order,
    each chunk by ``selection`` (see the module docstring) from the nodes not yet used;
    a chunk lists its nodes in name order. Raises :class:`UsageError` when the request
    cannot be met (more chunks than nodes, a size larger than the node count).
    """
    if selection not in NODE_SELECTIONS:
        raise UsageError(f"unknown node selection '{selection}'; choose one of "
                         f"{', '.join(NODE_SELECTIONS)}")
    if extra not in EXTRA_MODES:
        raise UsageError(f"unknown chunk extra mode '{extra}'; choose one of "
                         f"{', '.join(EXTRA_MODES)}")
    names = sorted(dict.fromkeys(nodes), key=natural_key)
    if (chunks is None) == (size is None):
        raise UsageError("give either a number of chunks or a chunk size")
    if chunks is not None:
        if chunks < 1:
            raise UsageError(f"the number of chunks must be at least 1, not {chunks}")
        if chunks > len(names):
            raise UsageError(f"cannot make {chunks} chunks of at least one node from "
                             f"{len(names)} node(s)")
        size, count = len(names) // chunks, chunks
    else:
        assert size is not None
        if size < 1:
            raise UsageError(f"the chunk size must be at least 1, not {size}")
        if size > len(names):
            raise UsageError(f"cannot make a chunk of {size} nodes from {len(names)} node(s)")
        count = len(names) // size
    rng = random.Random(seed)
    order = {n: i for i, n in enumerate(names)}
    remaining = names
    out: list[list[str]] = []
    for _ in range(count):
        chosen = set(_pick(remaining, size, selection, rng))
        out.append(sorted(chosen, key=order.__getitem__))
        remaining = [n for n in remaining if n not in chosen]
    if remaining and extra == "backfill":
        fill = out[-1][: size - len(remaining)]
        out.append(sorted(fill + remaining, key=order.__getitem__))
    return out


def _node_partitions(info: NodeInfo) -> list[str]:
    return list(info.partitions) or [DEFAULT_PARTITION]


def usable_nodes(
    nodes: Iterable[NodeInfo],
    partition: str | None = None,
    state: str = "up",
    exclude: Iterable[str] = (),
) -> list[str]:
    """Names of the nodes of ``partition`` (all when ``None``) that are up (``state="up"``)
    or up and not allocated (``state="available"``), natural-sorted.

    An RM that cannot tell availability (``available is None``) is taken at its "up".
    """
    if state not in NODE_STATES:
        raise UsageError(f"unknown node state filter '{state}'; choose up or available")
    skip = set(exclude)
    out = []
    for info in nodes:
        if not info.up or info.name in skip:
            continue
        if partition is not None and partition not in _node_partitions(info):
            continue
        if state == "available" and info.available is False:
            continue
        out.append(info.name)
    return sorted(dict.fromkeys(out), key=natural_key)


def _filter_reasons(nodes: Sequence[NodeInfo], partition: str | None, state: str) -> str:
    """One line saying why nodes of the partition were not counted (for error messages)."""
    reasons: dict[str, list[str]] = {}
    for info in nodes:
        if partition is not None and partition not in _node_partitions(info):
            continue
        if not info.up:
            why = info.reason or info.state or "down"
        elif state == "available" and info.available is False:
            why = "allocated"
        else:
            continue
        reasons.setdefault(why, []).append(info.name)
    return "; ".join(f"{why}: {','.join(names[:8])}{',...' if len(names) > 8 else ''}"
                     for why, names in reasons.items())


def auto_size(
    nodes: Sequence[NodeInfo],
    want: int | float | str = "all",
    partition: str | None = None,
    state: str = "up",
) -> int:
    """How many nodes a job gets: ``"all"`` (every usable node of the partition), ``"N%"``
    or a fraction in (0, 1] of them (at least one), or a plain count checked against them.

    Raises :class:`UsageError` when the partition has no usable node or fewer than asked,
    saying why nodes were not counted.
    """
    usable = usable_nodes(nodes, partition, state)
    where = f"partition '{partition}'" if partition else "the cluster"
    if not usable:
        known = [n for n in nodes if partition is None or partition in _node_partitions(n)]
        if not known:
            raise UsageError(f"{where} has no nodes")
        raise UsageError(f"no {state} node in {where} ({_filter_reasons(nodes, partition, state)})")
    if isinstance(want, str):
        text = want.strip().lower()
        if text == "all":
            return len(usable)
        if text.endswith("%"):
            try:
                frac = float(text[:-1]) / 100.0
            except ValueError:
                raise UsageError(f"invalid node count '{want}'") from None
            want = frac
        elif text.isdigit():
            want = int(text)
        else:
            try:
                want = float(text)
            except ValueError:
                raise UsageError(f"invalid node count '{want}': a number, N%, or 'all'") \
                    from None
    if isinstance(want, float):  # a fraction of the usable nodes, as Pavilion's chunk sizes
        if not 0 < want <= 1:
            raise UsageError(f"a node fraction must be in (0, 1], not {want}")
        return max(1, int(len(usable) * want))
    count = int(want)
    if count < 1:
        raise UsageError(f"a job needs at least one node, not {count}")
    if count > len(usable):
        why = _filter_reasons(nodes, partition, state)
        raise UsageError(f"{count} node(s) requested but only {len(usable)} {state} in {where}"
                         + (f" ({why})" if why else ""))
    return count


def partition_summary(nodes: Iterable[NodeInfo]) -> dict[str, dict[str, Any]]:
    """Per partition: node counts and the smallest CPU count and memory of its up nodes.

    The smallest is what a job can rely on whichever nodes it gets (ExPyRe's per-partition
    ``ncores`` and ``max_mem``); ``None`` when the RM does not tell.
    """
    out: dict[str, dict[str, Any]] = {}
    for info in nodes:
        for part in _node_partitions(info):
            row = out.setdefault(part, {"nodes": 0, "up": 0, "available": 0, "cpus": None,
                                        "memory_mb": None, "names": []})
            row["nodes"] += 1
            row["names"].append(info.name)
            if not info.up:
                continue
            row["up"] += 1
            if info.available is not False:
                row["available"] += 1
            for key, value in (("cpus", info.cpus), ("memory_mb", info.memory_mb)):
                if value is not None:
                    row[key] = value if row[key] is None else min(row[key], value)
    for row in out.values():
        row["names"].sort(key=natural_key)
    return out


def begin_header_lines(rm_name: str, begin: float | None = None, hold: bool = False,
                       now: float | None = None) -> list[str]:
    """Header lines that delay a job (start no earlier than epoch ``begin``) or hold it,
    in the syntax of the RM named ``rm_name`` (SubmitRequest has no such fields)."""
    lines: list[str] = []
    now = time.time() if now is None else now
    if begin is not None:
        if rm_name == "local":
            lines.append(f"--begin=@{int(begin)}")
        elif rm_name == "slurm":
            lines.append("--begin=" + time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(begin)))
        elif rm_name == "lsf":
            lines.append("#BSUB -b " + time.strftime("%Y:%m:%d:%H:%M", time.localtime(begin)))
        elif rm_name == "flux":
            lines.append(f"#flux: --begin-time=+{max(0, int(begin - now))}s")
        else:
            raise NotSupportedError(f"{rm_name}: a begin time is not supported")
    if hold:
        held = {"local": "--hold", "slurm": "--hold", "lsf": "#BSUB -H",
                "flux": "#flux: --urgency=0"}
        if rm_name not in held:
            raise NotSupportedError(f"{rm_name}: submitting held jobs is not supported")
        lines.append(held[rm_name])
    return lines


# --------------------------------------------------------------------------- records


def record_to_dict(record: JobRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)


def record_from_dict(data: Mapping[str, Any]) -> JobRecord:
    names = {f.name for f in dataclasses.fields(JobRecord)}
    try:
        return JobRecord(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise UsageError(f"not a job record: {exc}") from exc


def status_to_dict(st: JobStatus) -> dict[str, Any]:
    return dataclasses.asdict(st)


# --------------------------------------------------------------------------- the RM side


def _overrides(rm: ResourceManager, method: str) -> bool:
    impl = getattr(type(rm), method, None)
    return impl is not None and impl is not getattr(ResourceManager, method)


def features(rm: ResourceManager) -> dict[str, bool]:
    """Which optional parts of the scheduler API this backend implements."""
    return {m: _overrides(rm, m) for m in ("node_inventory", *_BATCH_METHODS)}


def available(rm: ResourceManager) -> bool:
    """Can jobs be submitted, watched and cancelled through this backend?"""
    return all(_overrides(rm, m) for m in _BATCH_METHODS)


def _require(rm: ResourceManager, method: str, what: str) -> None:
    if not _overrides(rm, method):
        raise NotSupportedError(f"{rm.name}: {what} is not supported by this backend")


def scr_command() -> list[str]:
    """How a job script calls scr: the ``scr`` beside this Python (the same environment on
    a shared file system), else ``python -m scr_core``."""
    exe = os.path.join(os.path.dirname(sys.executable), "scr")
    if os.access(exe, os.X_OK):
        return [exe]
    return [sys.executable, "-m", "scr_core"]


def make_request(command: Sequence[str], *, wrap: bool = True, **fields: Any) -> SubmitRequest:
    """A :class:`SubmitRequest` whose body is ``scr run COMMAND...`` (``wrap``, the resilient
    job) or ``COMMAND...`` itself. ``fields`` are SubmitRequest fields."""
    cmd = [str(w) for w in command]
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("a batch job needs a command")
    if wrap:
        cmd = [*scr_command(), "run", *cmd]
    names = {f.name for f in dataclasses.fields(SubmitRequest)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise UsageError(f"unknown submit field(s): {', '.join(unknown)}")
    return SubmitRequest(command=cmd, **fields)


def _check_request(request: SubmitRequest) -> None:
    if not request.command:
        raise UsageError("a batch job needs a command")
    for field, value in (("nodes", request.nodes), ("tasks", request.tasks),
                         ("time_limit", request.time_limit)):
        if value is not None and value <= 0:
            raise UsageError(f"{field} must be positive, not {value}")


def submit(rm: ResourceManager, request: SubmitRequest, begin: float | None = None,
           hold: bool = False) -> JobRecord:
    """Kick off a batch job; returns the RM's record (``system`` is filled in if the RM
    left it empty). ``begin`` (epoch) and ``hold`` become header lines for the RM."""
    _require(rm, "submit", "batch submission")
    _check_request(request)
    if begin is not None or hold:
        request = dataclasses.replace(
            request, header_lines=[*request.header_lines,
                                   *begin_header_lines(rm.name, begin, hold)])
    record = rm.submit(request)
    if not isinstance(record, JobRecord) or not str(record.job_id or "").strip():
        raise ResourceManagerError(f"{rm.name}: submit returned no job id ({record!r})")
    if not record.system:
        record.system = rm.name
    if not record.name:
        record.name = request.job_name
    return record


kickoff = submit  # Pavilion's name for it


def status(rm: ResourceManager, job_ids: Iterable[str]) -> dict[str, JobStatus]:
    """Status of every id (in the order given, duplicates once) from ONE RM query."""
    _require(rm, "status", "batch job status")
    ids = list(dict.fromkeys(str(j).strip() for j in job_ids))
    if not ids:
        return {}
    answer = rm.status(ids)
    out: dict[str, JobStatus] = {}
    for jid in ids:
        st = answer.get(jid)
        if st is None:
            out[jid] = JobStatus(jid, JobState.UNKNOWN,
                                 message=f"{rm.name} returned no status for job {jid}")
        elif st.state not in JobState.ALL:
            out[jid] = JobStatus(jid, JobState.UNKNOWN, message=st.message,
                                 exit_code=st.exit_code, raw_state=st.raw_state or st.state)
        else:
            out[jid] = st
    return out


def wait(
    rm: ResourceManager,
    job_ids: Iterable[str],
    timeout: float | None = None,
    interval: float = 1.0,
    until: Iterable[str] = JobState.FINAL,
) -> dict[str, JobStatus]:
    """Poll (one RM query per poll) until every job is in one of ``until``; raises
    :class:`WaitTimeout` after ``timeout`` seconds (``None`` = forever)."""
    wanted = set(until)
    deadline = None if timeout is None else time.monotonic() + timeout
    ids = list(job_ids)
    while True:
        st = status(rm, ids)
        if all(s.state in wanted for s in st.values()):
            return st
        if deadline is not None and time.monotonic() >= deadline:
            left = ", ".join(f"{j}={s.state}" for j, s in st.items() if s.state not in wanted)
            raise WaitTimeout(f"jobs not done after {timeout:g}s: {left}", st)
        time.sleep(interval)


def cancel(rm: ResourceManager, job_id: str) -> None:
    _require(rm, "cancel", "batch job cancel")
    rm.cancel(str(job_id).strip())


def allocation_nodes(rm: ResourceManager, usable: bool = False) -> list[str]:
    """Nodes of the current allocation (without the down ones when ``usable``)."""
    nodes = rm.job_nodes()
    if not usable:
        return nodes
    down = rm.down_nodes()
    return [n for n in nodes if n not in down]


def inventory(rm: ResourceManager, partition: str | None = None) -> list[NodeInfo]:
    _require(rm, "node_inventory", "node inventory")
    return list(rm.node_inventory(partition))


def partition_chunks(
    rm: ResourceManager,
    partition: str | None,
    chunks: int | None = None,
    size: int | None = None,
    selection: str = "contiguous",
    extra: str = "discard",
    state: str = "up",
    seed: int | None = None,
) -> list[list[str]]:
    """The usable nodes of ``partition`` cut into chunks (one inventory query)."""
    nodes = inventory(rm, partition)
    names = usable_nodes(nodes, partition, state)
    if not names:
        where = f"partition '{partition}'" if partition else "the cluster"
        raise UsageError(f"no {state} node in {where} to chunk")
    return chunk_nodes(names, chunks=chunks, size=size, selection=selection, extra=extra,
                       seed=seed)
