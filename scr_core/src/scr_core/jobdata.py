"""Data records exchanged with backends: batch jobs, job steps, node and remote results.

Re-exported by :mod:`scr_core.interfaces` (and :mod:`scr_core.hookspecs`), which import this
module only when one of these names is used: selecting a resource manager and reading its
nodes (``scr_should_exit``) does not pay for building these dataclasses.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

__all__ = [
    "JobRecord",
    "JobState",
    "JobStatus",
    "JobStep",
    "NodeInfo",
    "NodeResult",
    "RemoteResult",
    "SubmitRequest",
]


@dataclasses.dataclass
class NodeInfo:
    """One node of a node inventory (Pavilion-style); fields a RM cannot tell stay ``None``."""

    name: str
    up: bool
    allocated: bool | None = None
    available: bool | None = None
    state: str = ""
    cpus: int | None = None
    memory_mb: int | None = None
    partitions: list[str] = dataclasses.field(default_factory=list)
    features: list[str] = dataclasses.field(default_factory=list)
    reservations: list[str] = dataclasses.field(default_factory=list)
    reason: str = ""


class JobState:
    """Normalized batch-job states (strings, so records stay JSON-serializable)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    NODE_FAIL = "node_fail"
    PREEMPTED = "preempted"
    UNKNOWN = "unknown"

    ALL = (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, PREEMPTED, UNKNOWN)
    FINAL = (COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, PREEMPTED)


@dataclasses.dataclass
class SubmitRequest:
    """A batch job to submit. ``command`` is the job body (argv run by the script)."""

    command: list[str]
    job_name: str = "scr-job"
    nodes: int | None = None
    tasks: int | None = None
    time_limit: int | None = None  # seconds
    partition: str | None = None
    account: str | None = None
    output: str | None = None
    error: str | None = None
    workdir: str | None = None
    fault_tolerant: bool = True  # --no-kill and its equivalents
    header_lines: list[str] = dataclasses.field(default_factory=list)
    environ: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class JobRecord:
    """A submitted job; JSON-serializable via :func:`dataclasses.asdict`."""

    job_id: str
    system: str
    submit_time: float
    script: str = ""
    name: str = ""


@dataclasses.dataclass
class JobStatus:
    job_id: str
    state: str  # one of JobState.ALL
    message: str = ""
    exit_code: int | None = None
    raw_state: str = ""


@dataclasses.dataclass
class JobStep:
    """A launched job step. ``process`` is the launcher process we started (srun, jsrun...).

    ``step_id`` is the RM's id for the step when the launcher could capture it (used to kill
    exactly this step); backends may keep private state in ``data``.
    """

    argv: list[str]
    process: subprocess.Popen | None
    nodes: list[str] | None = None
    exclude: list[str] = dataclasses.field(default_factory=list)
    step_id: str | None = None
    started: float = dataclasses.field(default_factory=time.time)
    returncode: int | None = None
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class NodeResult:
    """What happened on one node. ``rc`` is ``None`` when no exit code came back."""

    rc: int | None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    unreachable: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out and not self.unreachable


class RemoteResult(dict):
    """``{node: NodeResult}`` naming *every* requested node, in request order."""

    def failed(self) -> list[str]:
        return [n for n, r in self.items() if not r.ok]

    def succeeded(self) -> list[str]:
        return [n for n, r in self.items() if r.ok]
