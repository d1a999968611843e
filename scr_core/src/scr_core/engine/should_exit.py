"""Whether the run loop must stop (SCR's ``should_exit``), with the reason why.

Stop when any halt condition holds (halt file: ExitReason set, CheckpointsLeft 0, past
ExitAfter, past ExitBefore - HaltSeconds, and, what SCR left as a TODO, time left in the
allocation <= HaltSeconds), when no runs are left, or when fewer nodes remain than needed:
``SCR_MIN_NODES``, else the node count of the last run (``nodes.scr``), else the whole
allocation. A halt file that cannot be read is an error (ControlFileError, exit 6), never
"continue".

ExitReason ``SCR_FINALIZE_CALLED`` (the application called SCR_Finalize: it finished) stops,
as SCR's ``scr_retries_halt`` answers, within the allocation that wrote it: ``scr prerun``
(the start of ``scr run``) clears it, and a halt file last written before the allocation
started (when the resource manager knows the start: ``ResourceManager.start_time``) is an
earlier allocation's, so a new allocation is never blocked. Its Decision kind is
``finalize``, so that a real halt condition is still reported as ``halt``.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from ..errors import ConfigError, JobEnvironmentError, UsageError
from ..records import Record


class Decision(Record):
    """The answer: stop or not, why, and which rule decided."""

    _fields = ("stop", "reason", "kind")
    __slots__ = _fields

    def __init__(self, stop: bool, reason: str = "", kind: str = "") -> None:
        self.stop = stop
        self.reason = reason
        self.kind = kind  # "halt" | "nodes" | "runs" | ""


def seconds_left(end_time: int, now: float) -> float | None:
    """Seconds until the allocation ends; None when unknown (0) or unlimited (-1)."""
    if end_time <= 0:
        return None
    return end_time - now


def end_time_of(job: Any) -> int:
    """SCR_END_TIME when scr run exported it (no RM query), else the RM's answer."""
    value = job.environ.get("SCR_END_TIME")
    if value not in (None, ""):
        try:
            return int(value)
        except ValueError:
            pass
    return job.resource_manager.end_time()


def halt_status(job: Any, now: float | None = None,
                end_time: int | None = None) -> tuple[str | None, bool]:
    """(why a halt condition other than SCR_FINALIZE_CALLED holds, or None; whether the
    ExitReason is SCR_FINALIZE_CALLED). A corrupt halt file raises ControlFileError."""
    from ..control.halt import FINALIZE_REASON, HaltFile, halt_reason

    now = time.time() if now is None else now
    state = HaltFile.for_prefix(job.prefix).read()
    end = end_time_of(job) if end_time is None else end_time
    default_secs = halt_seconds_param(job)
    reason = halt_reason(state, now, seconds_left(end, now), default_secs)
    return reason, state.exit_reason == FINALIZE_REASON and _written_in_this_allocation(job)


def _written_in_this_allocation(job: Any) -> bool:
    """Whether the halt file was last written after the allocation started; True when the
    start is unknown (then only scr prerun, which clears the reason, tells allocations
    apart)."""
    import os

    from ..control.paths import halt_file

    start = getattr(job.resource_manager, "start_time", lambda: 0)()
    if not start or start <= 0:
        return True
    try:
        return os.stat(halt_file(job.prefix)).st_mtime >= start
    except OSError:
        return True


def halt_check(job: Any, now: float | None = None, end_time: int | None = None) -> str | None:
    """Why a halt condition other than SCR_FINALIZE_CALLED holds, or None."""
    return halt_status(job, now, end_time)[0]


def halt_seconds_param(job: Any) -> int:
    """SCR_HALT_SECONDS (0 when unset); a negative value has no meaning and is refused."""
    value = job.params.get_int("SCR_HALT_SECONDS", 0)
    if value < 0:
        raise ConfigError(f"SCR_HALT_SECONDS must be 0 or more, not {value} "
                          f"({job.params.source('SCR_HALT_SECONDS')})")
    return value


def nodes_needed(job: Any, nodes: Sequence[str], min_nodes: int | None = None) -> int:
    """SCR_MIN_NODES (or *min_nodes*), else nodes.scr, else the allocation. A count below 1
    has no meaning (SCR's scr_should_exit raises on it) and is refused, not ignored."""
    if min_nodes is not None:
        if min_nodes < 1:
            raise UsageError(f"--min-nodes must be 1 or more, not {min_nodes}")
        return min_nodes
    value = job.params.get("SCR_MIN_NODES")
    if value not in (None, ""):
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"SCR_MIN_NODES must be a number of nodes, 1 or more, not "
                              f"'{value}' ({job.params.source('SCR_MIN_NODES')})")
        return n
    from ..control.nodes import read_nodes

    try:
        last = read_nodes(job.prefix)
    except Exception:
        last = None
    if last and last > 0:
        return last
    return len(nodes)


def should_exit(
    job: Any,
    nodes: Sequence[str] | None = None,
    down: Sequence[str] = (),
    min_nodes: int | None = None,
    runs_left: int | None = None,
    now: float | None = None,
) -> Decision:
    nodes = list(nodes) if nodes is not None else job.node_list()
    if not nodes:
        raise JobEnvironmentError("failed to identify the nodes of the job allocation")
    reason, finalized = halt_status(job, now)
    if reason:
        return Decision(True, f"halt condition: {reason}", "halt")
    if finalized:
        return Decision(True, "the application finished (SCR_Finalize was called in this "
                              "allocation: ExitReason SCR_FINALIZE_CALLED)", "finalize")
    if runs_left is not None and runs_left == 0:
        return Decision(True, "no runs left", "runs")
    down_set = set(down)
    remaining = sum(1 for n in nodes if n not in down_set)
    needed = nodes_needed(job, nodes, min_nodes)
    if remaining < needed:
        return Decision(True, f"only {remaining} healthy node(s) left, {needed} needed", "nodes")
    return Decision(False, f"{remaining} healthy node(s), {needed} needed")
