"""What a function job needs (time, nodes or tasks, cores and memory per task, partitions by
regular expression) and the choice of a partition that provides it (ExPyRe's
``Resources.find_nodes``), as pure functions.

A partition is described by :class:`PartitionSpec`: cores and memory of its nodes (the
smallest of its up nodes, :func:`scr_core.batch.scheduler.partition_summary`), how many nodes
are up, and its time limit. :func:`place` returns the :class:`Placement` on the partition
that fits with the fewest idle cores (the first of equals), or raises
:class:`NoMatchingPartitionError` saying, for every partition, why it does not fit.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping, Sequence

from ..errors import UsageError
from ..units import parse_bytes, parse_duration


class NoMatchingPartitionError(UsageError):
    """No partition of the system can give what the job asks for."""


@dataclasses.dataclass
class PartitionSpec:
    name: str
    cpus: int | None = None  # cores per node
    memory_mb: int | None = None  # memory per node
    max_time: float | None = None  # seconds; None = no limit
    nodes: int | None = None  # nodes up; None = unknown (not checked)


@dataclasses.dataclass
class Resources:
    """``max_time``: seconds or a duration (``"1h"``); ``nodes`` *or* ``tasks`` (both: the
    tasks must fit on the nodes); ``cores_per_task`` (0 = a whole node per task);
    ``memory_per_task``: MiB or a size (``"2G"``); ``partitions``: regular expressions a
    partition name must match in full (any of them)."""

    max_time: float | str
    nodes: int | None = None
    tasks: int | None = None
    cores_per_task: int = 1
    memory_per_task: int | str | None = None
    partitions: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        self.max_time = parse_duration(self.max_time)
        if self.max_time <= 0:
            raise UsageError("max_time must be positive")
        if self.nodes is None and self.tasks is None:
            self.nodes = 1
        for field in ("nodes", "tasks"):
            value = getattr(self, field)
            if value is not None and int(value) < 1:
                raise UsageError(f"{field} must be at least 1, not {value}")
        if self.cores_per_task < 0:
            raise UsageError("cores_per_task cannot be negative")
        if isinstance(self.memory_per_task, str):
            text = self.memory_per_task.strip()
            # a bare number is MiB (ExPyRe's kB were too easy to get wrong)
            self.memory_per_task = int(text) if text.isdigit() else \
                parse_bytes(text) // (1024 * 1024)
        if isinstance(self.partitions, str):
            self.partitions = [self.partitions]
        for pattern in self.partitions or ():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise UsageError(f"invalid partition regular expression {pattern!r}: "
                                 f"{exc}") from exc

    @classmethod
    def coerce(cls, value: Resources | Mapping[str, Any]) -> Resources:
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            try:
                return cls(**value)
            except TypeError as exc:
                raise UsageError(f"invalid resources {dict(value)!r}: {exc}") from exc
        raise UsageError(f"resources must be Resources or a mapping, not {type(value)}")


@dataclasses.dataclass
class Placement:
    """Where and how a job runs; ``tasks_per_node`` is the most tasks any node gets."""

    partition: str
    nodes: int
    tasks: int
    cores_per_task: int
    tasks_per_node: int
    time_limit: float
    memory_per_task_mb: int | None = None
    idle_cores: int = 0

    def template_keys(self, job_name: str = "") -> dict[str, Any]:
        """Keys for a system's header template (``{nnodes}`` ...)."""
        secs = math.ceil(self.time_limit)
        return {"partition": self.partition, "nnodes": self.nodes, "ntasks": self.tasks,
                "ncores_per_task": self.cores_per_task, "ntasks_per_node": self.tasks_per_node,
                "max_time": secs,
                "max_time_hms": f"{secs // 3600}:{secs % 3600 // 60:02d}:{secs % 60:02d}",
                "max_time_min": max(1, -(-secs // 60)),
                "memory_per_task_mb": self.memory_per_task_mb or "",
                "job_name": job_name}


def _fit(res: Resources, spec: PartitionSpec) -> Placement | str:
    """The placement on one partition, or why it does not fit."""
    assert isinstance(res.max_time, float)
    if res.partitions is not None and not any(re.fullmatch(p, spec.name)
                                              for p in res.partitions):
        return f"name does not match {' or '.join(res.partitions)}"
    if spec.max_time is not None and res.max_time > spec.max_time:
        return f"time limit {int(spec.max_time)}s < {int(res.max_time)}s asked"
    cpus = spec.cpus
    cpt = res.cores_per_task
    if cpus is not None and cpt > cpus:
        return f"{cpt} cores per task asked, nodes have {cpus}"
    per_node = 1 if (cpt == 0 or cpus is None) else max(1, cpus // cpt)
    if res.nodes is not None:
        nodes = int(res.nodes)
        if res.tasks is not None:
            tasks = int(res.tasks)
            if cpus is not None and tasks > nodes * per_node:
                return f"{tasks} tasks of {cpt or cpus} cores do not fit on {nodes} node(s) " \
                       f"of {cpus} cores"
        else:
            tasks = nodes * per_node
    else:
        tasks = int(res.tasks or 1)
        nodes = max(1, -(-tasks // per_node)) if cpus is not None or cpt == 0 else 1
    if spec.nodes is not None and nodes > spec.nodes:
        return f"{nodes} node(s) needed, {spec.nodes} up"
    tpn = -(-tasks // nodes)
    mem = res.memory_per_task
    if mem is not None and spec.memory_mb is not None and tpn * int(mem) > spec.memory_mb:
        return f"{tpn} task(s) x {mem} MiB per node > {spec.memory_mb} MiB"
    used = tasks * (cpt or (cpus or 1))
    idle = max(0, nodes * (cpus or 0) - used) if cpus is not None else 0
    return Placement(partition=spec.name, nodes=nodes, tasks=tasks,
                     cores_per_task=cpt or (cpus or 1), tasks_per_node=tpn,
                     time_limit=res.max_time, memory_per_task_mb=mem if mem is None
                     else int(mem), idle_cores=idle)


def place(resources: Resources | Mapping[str, Any],
          partitions: Mapping[str, PartitionSpec] | Sequence[PartitionSpec]) -> Placement:
    """The best partition for ``resources`` (fewest idle cores, then order)."""
    res = Resources.coerce(resources)
    specs = list(partitions.values()) if isinstance(partitions, Mapping) else list(partitions)
    if not specs:
        raise NoMatchingPartitionError("the system has no partitions to run on")
    fits: list[Placement] = []
    why: list[str] = []
    for spec in specs:
        got = _fit(res, spec)
        if isinstance(got, Placement):
            fits.append(got)
        else:
            why.append(f"{spec.name}: {got}")
    if not fits:
        asked = (f"{res.nodes} node(s)" if res.nodes is not None else f"{res.tasks} task(s)")
        raise NoMatchingPartitionError(
            f"no partition fits {asked}, {res.cores_per_task} core(s)/task, "
            + (f"{res.memory_per_task} MiB/task, " if res.memory_per_task else "")
            + f"{int(res.max_time)}s: " + "; ".join(why))
    return min(fits, key=lambda p: p.idle_cores)  # min() keeps the first of equals
