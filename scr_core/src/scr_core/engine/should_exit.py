"""Whether the run loop must stop (SCR's ``should_exit``), with the reason why.

Stop when any halt condition holds (halt file: ExitReason other than SCR_FINALIZE_CALLED,
CheckpointsLeft 0, past ExitAfter, past ExitBefore - HaltSeconds, and, what SCR left as a
TODO, time left in the allocation <= HaltSeconds), when no runs are left, or when fewer
nodes remain than needed: ``SCR_MIN_NODES``, else the node count of the last run
(``nodes.scr``), else the whole allocation.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from ..errors import ConfigError, JobEnvironmentError
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


def halt_check(job: Any, now: float | None = None, end_time: int | None = None) -> str | None:
    from ..control.halt import HaltFile, halt_reason

    now = time.time() if now is None else now
    state = HaltFile.for_prefix(job.prefix).read()
    end = end_time_of(job) if end_time is None else end_time
    default_secs = job.params.get_int("SCR_HALT_SECONDS", 0)
    return halt_reason(state, now, seconds_left(end, now), default_secs)


def nodes_needed(job: Any, nodes: Sequence[str], min_nodes: int | None = None) -> int:
    if min_nodes is not None and min_nodes > 0:
        return min_nodes
    value = job.params.get("SCR_MIN_NODES")
    if value not in (None, ""):
        try:
            n = int(value)
        except ValueError as exc:
            raise ConfigError(f"SCR_MIN_NODES must be a number, not '{value}' "
                              f"({job.params.source('SCR_MIN_NODES')})") from exc
        if n > 0:
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
    reason = halt_check(job, now)
    if reason:
        return Decision(True, f"halt condition: {reason}", "halt")
    if runs_left is not None and runs_left == 0:
        return Decision(True, "no runs left", "runs")
    down_set = set(down)
    remaining = sum(1 for n in nodes if n not in down_set)
    needed = nodes_needed(job, nodes, min_nodes)
    if remaining < needed:
        return Decision(True, f"only {remaining} healthy node(s) left, {needed} needed", "nodes")
    return Decision(False, f"{remaining} healthy node(s), {needed} needed")
