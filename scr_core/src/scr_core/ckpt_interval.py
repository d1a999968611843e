"""Optimum checkpoint interval from the SCR log (Young 1974, Daly 2006), done right.

SCR's ``scr_ckpt_interval.py`` never ran (a NameError swallowed by a bare ``except`` made it
always print ``10.0``), looked for ``RESTART_FAILURE`` where the library logs ``RESTART_FAIL``,
divided by zero without checkpoints, and counted every run start, including those after a
normal end of allocation, as a failure (its own TODO).  What this module counts:

**Runs.**  A run begins at ``event=RUN_START`` (our job scripts, once per launch) or at the
library's ``event=START`` (``SCR_Init``).  A ``START`` that follows a ``RUN_START`` of the same
jobid, before any other ``START``, is the library inside that same launch and does not begin
another run.  A run owns the records that follow it until the next run begins (or the log
ends).  Its duration runs from its start record to its ``RUN_END`` if it has one, else to its
latest record of the same jobid, counting a transfer (and ``RESTART_*``, whose timestamp is their
start) as ending ``secs`` after its timestamp; ``SCAVENGE_*`` (after the application) and
records of other jobids (the next job's prerun) never lengthen it.  Total run time T is the sum
over runs.  Records before the first run only feed the checkpoint statistics.

**Failures (interrupts).**  A run *ended cleanly* if it logged ``event=HALT`` (the library does
on ``SCR_Finalize`` -- reason ``SCR_FINALIZE_CALLED`` -- and on every halt condition: time
limit, ``scr_halt``, exit before/after, no checkpoints left; our scripts for ``JOB_HALTED``),
or a ``RUN_END`` whose note holds ``rc=0``.  A run that did not end cleanly is a *failure* if
it logged ``NODE_FAIL`` with its own jobid or if another run of the same jobid followed it
(the script had to relaunch).  ``HALT`` is taken by position (``scr_halt`` may log it from
outside the allocation) and wins over ``NODE_FAIL`` (a node lost after the application chose
to stop did not interrupt it); a ``HALT`` logged after the run's ``RUN_END`` is the script
declining to relaunch and does not make that run clean.  A run that is the last of its jobid
without ``NODE_FAIL`` ended with its allocation (or is the last run in the log, perhaps still
running): not a failure.  So the number of interrupts is the number of relaunches inside an
allocation after an unclean end, plus runs that lost a node.  Mean time to interrupt
M = T / failures.

**Checkpoint cost.**  C = (sum of ``CHECKPOINT_END`` secs + sum of ``xfer=FLUSH_SYNC`` secs of
checkpoints) / number of ``CHECKPOINT_END``.  A synchronous flush is a checkpoint's if its dset
is one logged by ``CHECKPOINT_START``/``CHECKPOINT_END``/``xfer=CHECKPOINT`` (this catches the
flush at halt or finalize too); a flush without a dset counts if it came between
``CHECKPOINT_START`` and the next ``COMPUTE_START``/``OUTPUT_START``.  The library's
``xfer=CHECKPOINT`` and ``xfer=WRITE`` repeat time already in ``CHECKPOINT_END`` and are not
added; asynchronous flushes overlap computation and are not a cost.

**Models.**  Young: t = sqrt(2CM).  Daly (2006, eq. 37): t = sqrt(2CM)(1 + sqrt(C/2M)/3 +
(C/2M)/9) - C when C < 2M, else t = M.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

from scr_core.errors import EXIT_FAILURE, ScrError
from scr_core.scrlog import LogRecord

__all__ = [
    "MODELS",
    "LogStats",
    "NotEnoughDataError",
    "RunSummary",
    "analyze",
    "daly",
    "optimum_interval",
    "overhead_percent",
    "young",
]

MODELS = ("young", "daly")

RUN_START_LABELS = ("RUN_START",)
LIBRARY_START = "START"
_RESTART_FAIL_LABELS = ("RESTART_FAIL", "RESTART_FAILURE")  # library name, SCR script's name
# Logged by the scripts after the application ended; they never lengthen a run.
_POST_RUN = ("SCAVENGE_START", "SCAVENGE_END")
_RC_ZERO = re.compile(r"(?:^|[\s,;(])rc\s*[=:]\s*0(?![\d.])")


class NotEnoughDataError(ScrError):
    """The log lacks what a model needs (no checkpoints, zero cost, no failures): exit 1."""

    exit_code = EXIT_FAILURE


@dataclass
class RunSummary:
    """One run (launch) of the application, as reconstructed from the log."""

    jobid: Optional[str]
    start: float
    end: float
    halted: bool = False
    halt_reason: Optional[str] = None
    node_fail: bool = False
    outcome: str = "last"  # "failed" | "halted" | "allocation_end" | "last"
    closed: bool = False  # RUN_END seen: the run's end time is final
    # the records this run owns, its start record first (what `scr report` reads per run)
    records: list[LogRecord] = field(default_factory=list, repr=False)

    @property
    def secs(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class LogStats:
    """Totals gathered from a log; ``checkpoint_cost`` and ``mtti`` are None when undefined."""

    runs: list[RunSummary] = field(default_factory=list)
    checkpoints: int = 0
    checkpoint_secs: float = 0.0
    flush_ckpt_count: int = 0
    flush_ckpt_secs: float = 0.0
    flush_output_count: int = 0
    flush_output_secs: float = 0.0
    compute_count: int = 0
    compute_secs: float = 0.0
    fetch_count: int = 0
    fetch_secs: float = 0.0
    rebuild_count: int = 0
    rebuild_secs: float = 0.0
    restart_failures: int = 0
    skipped_lines: int = 0
    before_runs: list[LogRecord] = field(default_factory=list, repr=False)  # owned by no run

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.runs if r.outcome == outcome)

    @property
    def failures(self) -> int:
        return self.count("failed")

    @property
    def run_secs(self) -> float:
        return sum(r.secs for r in self.runs)

    @property
    def checkpoint_cost(self) -> Optional[float]:
        if self.checkpoints == 0:
            return None
        return (self.checkpoint_secs + self.flush_ckpt_secs) / self.checkpoints

    @property
    def mtti(self) -> Optional[float]:
        """Mean time to interrupt; None (infinite) when no failure was seen."""
        if self.failures == 0:
            return None
        return self.run_secs / self.failures


def _end_time(rec: LogRecord) -> float:
    # Transfers and RESTART_* are stamped with their start; other events with their end.
    if rec.secs is not None and (rec.kind == "xfer" or rec.label.startswith("RESTART_")):
        return rec.time + max(0.0, rec.secs)
    return rec.time


def analyze(records: Iterable[LogRecord], skipped_lines: int = 0) -> LogStats:
    """Gather run outcomes and phase costs from parsed records (in log order)."""
    stats = LogStats(skipped_lines=skipped_lines)
    runs = stats.runs
    current: Optional[RunSummary] = None
    current_by_script = False  # begun by RUN_START and no library START absorbed yet
    in_checkpoint = False
    ckpt_dsets: set[int] = set()

    for rec in records:
        label, secs = rec.label, rec.secs or 0.0
        if rec.kind == "event" and (label in RUN_START_LABELS or label == LIBRARY_START):
            if (
                label == LIBRARY_START
                and current is not None
                and current_by_script
                and current.jobid == rec.jobid
            ):
                current_by_script = False  # the library starting inside our launch
                current.end = max(current.end, rec.time)
                current.records.append(rec)
                continue
            current = RunSummary(jobid=rec.jobid, start=rec.time, end=rec.time, records=[rec])
            runs.append(current)
            current_by_script = label in RUN_START_LABELS
            in_checkpoint = False
            continue
        (current.records if current is not None else stats.before_runs).append(rec)

        # Records of another allocation (say the next job's prerun) say nothing about this run.
        mine = current is not None and (
            rec.jobid is None or current.jobid is None or rec.jobid == current.jobid
        )
        if mine and current is not None and not current.closed and label not in _POST_RUN:
            current.end = max(current.end, _end_time(rec))

        if rec.kind == "event":
            if label == "HALT":
                # By position, not jobid: scr_halt may log from outside the allocation.  A
                # HALT after RUN_END is the script deciding not to relaunch; it does not
                # make a run that had already died a clean end.
                if current is not None and not current.closed:
                    current.halted = True
                    current.halt_reason = rec.note
            elif label == "RUN_END":
                if mine and current is not None:
                    current.closed = True  # later script records do not lengthen the run
                    if rec.note and _RC_ZERO.search(rec.note):
                        current.halted = True
                        current.halt_reason = current.halt_reason or rec.note
            elif label == "NODE_FAIL":
                if mine and current is not None:
                    current.node_fail = True
            elif label == "CHECKPOINT_START":
                in_checkpoint = True
                if rec.dset is not None:
                    ckpt_dsets.add(rec.dset)
            elif label == "CHECKPOINT_END":
                stats.checkpoints += 1
                stats.checkpoint_secs += secs
                if rec.dset is not None:
                    ckpt_dsets.add(rec.dset)
            elif label in ("COMPUTE_START", "OUTPUT_START"):
                in_checkpoint = False
            elif label == "COMPUTE_END":
                stats.compute_count += 1
                stats.compute_secs += secs
            elif label == "RESTART_SUCCESS" or label in _RESTART_FAIL_LABELS:
                stats.rebuild_count += 1
                stats.rebuild_secs += secs
                if label in _RESTART_FAIL_LABELS:
                    stats.restart_failures += 1
        else:  # xfer
            if label == "CHECKPOINT" and rec.dset is not None:
                ckpt_dsets.add(rec.dset)
            elif label == "FETCH":
                stats.fetch_count += 1
                stats.fetch_secs += secs
            elif label == "FLUSH_SYNC":
                is_ckpt = rec.dset in ckpt_dsets if rec.dset is not None else in_checkpoint
                if is_ckpt:
                    stats.flush_ckpt_count += 1
                    stats.flush_ckpt_secs += secs
                else:
                    stats.flush_output_count += 1
                    stats.flush_output_secs += secs

    for i, run in enumerate(runs):
        nxt = runs[i + 1] if i + 1 < len(runs) else None
        if run.halted:
            run.outcome = "halted"
        elif run.node_fail or (nxt is not None and nxt.jobid == run.jobid):
            run.outcome = "failed"
        elif nxt is not None:
            run.outcome = "allocation_end"
        else:
            run.outcome = "last"
    return stats


def young(cost: float, mtti: float) -> float:
    """Young's first-order optimum: sqrt(2 C M)."""
    _check_inputs(cost, mtti)
    return math.sqrt(2.0 * cost * mtti)


def daly(cost: float, mtti: float) -> float:
    """Daly's higher-order optimum (eq. 37); M itself once C >= 2M."""
    _check_inputs(cost, mtti)
    two_m = 2.0 * mtti
    if cost >= two_m:
        return mtti
    ratio = cost / two_m
    return math.sqrt(2.0 * cost * mtti) * (1.0 + math.sqrt(ratio) / 3.0 + ratio / 9.0) - cost


def _check_inputs(cost: float, mtti: float) -> None:
    if not (cost > 0 and math.isfinite(cost) and mtti > 0 and math.isfinite(mtti)):
        raise ValueError(f"need finite positive cost and MTTI, got C={cost!r}, M={mtti!r}")


def optimum_interval(stats: LogStats, model: str = "daly") -> float:
    """Optimum seconds between checkpoints, or :class:`NotEnoughDataError` saying why not."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    cost = stats.checkpoint_cost
    if cost is None:
        raise NotEnoughDataError("no completed checkpoints (CHECKPOINT_END) in the log")
    if cost <= 0:
        raise NotEnoughDataError(
            f"measured checkpoint cost is 0 s over {stats.checkpoints} checkpoint(s); "
            "cannot size an interval from it"
        )
    mtti = stats.mtti
    if mtti is None:
        raise NotEnoughDataError(
            f"no failures in {len(stats.runs)} run(s) and {stats.run_secs:.0f} s of run time; "
            "mean time to interrupt is unbounded"
        )
    if mtti <= 0:
        raise NotEnoughDataError(
            f"{stats.failures} failure(s) but no measurable run time; cannot estimate MTTI"
        )
    return young(cost, mtti) if model == "young" else daly(cost, mtti)


def overhead_percent(cost: float, interval: float) -> float:
    """Checkpoint overhead 100·C/t for an interval t (SCR's ``--percent``)."""
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
    return 100.0 * cost / interval
