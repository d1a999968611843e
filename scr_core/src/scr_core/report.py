"""What happened to a job: its history rebuilt from ``<prefix>/.scr`` (``scr report``).

:func:`build_report` reads the SCR log (the library's lines -- ``START``, ``CHECKPOINT_*``,
``xfer=CHECKPOINT/FLUSH_SYNC/FLUSH_ASYNC``, ``RESTART_*``, ``HALT`` -- and the job scripts'
-- ``RUN_START``/``RUN_END``/``NODE_FAIL``/``SCAVENGE_*``), the index, the flush file, the
halt file and each dataset's ``summary.scr``, and returns one JSON-ready dict whose layout
is the versioned schema ``scr.report/1`` (docs/json-schemas.md). Anything it cannot read
becomes a sentence in ``missing`` and the rest of the report stands: a torn or foreign
line, a corrupt control file or a missing log never stops it.

How the history is reconstructed:

- **Runs** are those of :func:`scr_core.ckpt_interval.analyze` (a ``RUN_START`` or a
  library ``START``, the library's ``START`` inside our launch absorbed), with the records
  each owns; ``RUN_START``'s note gives the run number and the nodes the step could use
  (``run=2 nodes=n[1-3]``), ``RUN_END``'s the exit code; a run without ``RUN_END`` ends at
  its last record (``end_logged`` false).  **Allocations** are runs of one jobid in a row.
- **Failures** are runs that analyze counts as failed, plus the last run of the log when it
  ended with a non-zero exit code (unless killed by ``scr_halt --immediate``).  Their ``NODE_FAIL``
  records (logged when the failed node is found, after the run) name the nodes; how each was
  found is read from the reason SCR writes: ``Specified as down``, ``...SCR_EXCLUDE_NODES``,
  ``Failed ...`` (a node test), anything else (the resource manager's reason).
- **Time lost** to a failure runs from the end of the checkpoint the next run restarted from
  (its ``RESTART_SUCCESS`` dataset) -- else the last checkpoint completed before the failed
  run ended, else the failed run's start -- to the next run's start (the relaunch:
  recomputation plus detection plus restart); with no relaunch, to the failed run's end.
- **Checkpoints** come from ``CHECKPOINT_START``/``_END`` (seconds), ``xfer=CHECKPOINT`` (bytes,
  files), ``xfer=FLUSH_*`` and ``SCAVENGE_*`` of the same dataset id, completed with the index
  (FLUSHED, COMPLETE, CURRENT, size), ``summary.scr`` and the flush file's locations; a
  dataset known only from the control files still appears.
- **The interval** Young and Daly recommend is :func:`scr_core.ckpt_interval.optimum_interval`
  on the same records; the interval used is the mean time between consecutive checkpoints of
  one run.

Timestamps are epoch seconds (the log's local-time stamps, one-second resolution).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Optional

from scr_core.ckpt_interval import (
    LogStats,
    NotEnoughDataError,
    RunSummary,
    analyze,
    optimum_interval,
)
from scr_core.jsonout import SCHEMAS
from scr_core.scrlog import LogRecord, ParsedLog, log_path, parse_file

__all__ = ["SCHEMA", "build_report", "format_secs", "format_size", "format_stamp", "format_text",
           "found_by", "nodes_text"]

SCHEMA = SCHEMAS["report"]

_RE_RUN = re.compile(r"(?:^|\s)run=(\d+)")
_RE_NODES = re.compile(r"(?:^|\s)nodes=(\S+)")
_RE_RC = re.compile(r"(?:^|\s)rc=(-?\d+)")
_RE_KILLED = re.compile(r"killed: (.*)$")
_INDEX_STAMP = "%Y-%m-%dT%H:%M:%S"


def found_by(reason: str) -> str:
    """How a node was found down, from the reason text SCR's list_down_nodes gives it."""
    if reason.startswith("Specified as down"):
        return "known down"
    if reason.startswith("step watch"):  # scr run's in-step watch (engine/stepwatch.py)
        return "step watch"
    if "SCR_EXCLUDE_NODES" in reason:
        return "excluded by the user"
    if reason.startswith("Failed"):
        return "node test"
    return "resource manager"


def _stamp_epoch(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    try:
        return time.mktime(time.strptime(text, _INDEX_STAMP))
    except (ValueError, OverflowError):
        return None


def _expand(text: str) -> Optional[list[str]]:
    from scr_core.errors import ScrError
    from scr_core.hostlist import expand

    try:
        return expand(text)
    except (ScrError, ValueError):
        return None


def _natural(names: list[str]) -> list[str]:
    from scr_core.hostlist import expand, fold

    try:
        return expand(fold(names)) if names else []
    except Exception:  # a name hostlist refuses: keep them as they are
        return sorted(set(names))


def _rate(nbytes: Optional[float], secs: Optional[float]) -> Optional[float]:
    if nbytes is None or not secs or secs <= 0:
        return None
    return nbytes / secs


# ------------------------------------------------------------------------------- sources


class _Sources:
    """Reads each source once and records its state and what it could not give."""

    def __init__(self, prefix: str, logfile: Optional[str]) -> None:
        self.prefix = prefix
        self.scr = os.path.join(prefix, ".scr")
        self.states: dict[str, dict[str, Any]] = {}
        self.missing: list[str] = []
        self.log_path = logfile or log_path(prefix)

    def _state(self, name: str, path: str, state: str, error: Optional[str] = None,
               **more: Any) -> None:
        self.states[name] = {"path": path, "state": state, "error": error, **more}

    def log(self) -> ParsedLog:
        path = self.log_path
        try:
            records = parse_file(path)
        except FileNotFoundError:
            self._state("log", path, "missing")
            self.missing.append(
                f"no SCR log at {path}: runs, failures and timings are unknown "
                "(SCR_LOG_ENABLE=1 writes it)")
            return ParsedLog()
        except OSError as exc:
            self._state("log", path, "unreadable", exc.strerror or str(exc))
            self.missing.append(f"the SCR log {path} cannot be read ({exc.strerror or exc}): "
                                "runs, failures and timings are unknown")
            return ParsedLog()
        state = "ok" if records else "no records"
        self._state("log", path, state, records=len(records),
                    skipped_lines=records.skipped_lines[:100], skipped=records.skipped)
        if not records:
            self.missing.append(f"the SCR log {path} holds no SCR records"
                                + (f" ({records.skipped} unreadable lines)"
                                   if records.skipped else ""))
        elif records.skipped:
            shown = ", ".join(str(n) for n in records.skipped_lines[:5])
            more = ", ..." if records.skipped > 5 else ""
            self.missing.append(
                f"{records.skipped} line(s) of the SCR log are not SCR records and were "
                f"skipped (line {shown}{more}): what they said is not in this report")
        return records

    def control(self, name: str, path: str, read: Any) -> Any:
        """``read()``'s result, or None with the file's state and the loss recorded."""
        from scr_core.errors import ScrError

        if not os.path.exists(path):
            self._state(name, path, "missing")
            return None
        try:
            value = read()
        except (ScrError, OSError, ValueError) as exc:
            self._state(name, path, "unreadable", str(exc))
            self.missing.append(f"the {name} file {path} cannot be read ({exc})")
            return None
        self._state(name, path, "ok")
        return value


# -------------------------------------------------------------------------------- report


def _run_entry(number: int, run: RunSummary) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": number, "jobid": run.jobid, "number": None, "start": run.start,
        "end": run.end, "secs": run.secs, "end_logged": run.closed, "exit_code": None,
        "killed": None, "nodes": None, "node_count": None, "procs": None, "host": None,
        "outcome": run.outcome, "halt_reason": run.halt_reason, "restart": None,
    }
    for rec in run.records:
        note = rec.note or ""
        if rec.kind != "event":
            continue
        if rec.label == "RUN_START":
            m = _RE_RUN.search(note)
            entry["number"] = int(m.group(1)) if m else None
            m = _RE_NODES.search(note)
            nodes = _expand(m.group(1)) if m else None
            if nodes:
                entry["nodes"], entry["node_count"] = nodes, len(nodes)
            entry["host"] = entry["host"] or rec.host
        elif rec.label == "START":
            entry["procs"] = rec.procs
            if entry["node_count"] is None:
                entry["node_count"] = rec.nodes
            entry["host"] = rec.host
        elif rec.label == "RUN_END" and rec.jobid == run.jobid:
            # the script's record is the authority on the end; its secs on the duration
            entry["end"] = rec.time
            entry["secs"] = rec.secs if rec.secs is not None else max(0.0, rec.time - run.start)
            m = _RE_RC.search(note)
            entry["exit_code"] = int(m.group(1)) if m else None
            m = _RE_KILLED.search(note)
            entry["killed"] = m.group(1) if m else None
        elif rec.label in ("RESTART_SUCCESS", "RESTART_FAIL", "RESTART_FAILURE"):
            entry["restart"] = {"dset": rec.dset, "secs": rec.secs,
                                "ok": rec.label == "RESTART_SUCCESS", "time": rec.time}
    if entry["nodes"] is None and entry["node_count"] == 1 and entry["host"]:
        entry["nodes"] = [entry["host"]]  # the library's START names rank 0's host only
    return entry


def _new_ckpt(dset: Optional[int], name: Optional[str], jobid: Optional[str],
              run: Optional[int]) -> dict[str, Any]:
    return {"dset": dset, "name": name, "kind": "checkpoint", "jobid": jobid, "run": run,
            "start": None, "end": None, "secs": None, "bytes": None, "files": None,
            "bandwidth": None, "flush": None, "scavenge": None, "restarted_from": False,
            "index": None, "location": None, "summary_complete": None}


def _checkpoints(stats: LogStats, run_of: list[tuple[int, RunSummary]]) -> list[dict[str, Any]]:
    ckpts: list[dict[str, Any]] = []

    def latest(dset: Optional[int]) -> Optional[dict[str, Any]]:
        for c in reversed(ckpts):
            if c["dset"] == dset:
                return c
        return None

    owned = [(None, rec) for rec in stats.before_runs]
    for rid, run in run_of:
        owned += [(rid, rec) for rec in run.records]
    for rid, rec in owned:
        label = rec.label
        if rec.kind == "event" and label in ("CHECKPOINT_START", "OUTPUT_START"):
            c = _new_ckpt(rec.dset, rec.name, rec.jobid, rid)
            c["kind"] = "checkpoint" if label == "CHECKPOINT_START" else "output"
            c["start"] = rec.time
            ckpts.append(c)
        elif rec.kind == "event" and label in ("CHECKPOINT_END", "OUTPUT_END"):
            c = latest(rec.dset)
            if c is None or c["end"] is not None:
                c = _new_ckpt(rec.dset, rec.name, rec.jobid, rid)
                ckpts.append(c)
            c["end"], c["secs"] = rec.time, rec.secs
            if c["start"] is None and rec.secs is not None:
                c["start"] = rec.time - rec.secs
        elif rec.kind == "xfer" and label in ("CHECKPOINT", "OUTPUT"):
            c = latest(rec.dset)
            if c is not None:
                c["bytes"], c["files"] = rec.bytes, rec.files
        elif rec.kind == "xfer" and label in ("FLUSH_SYNC", "FLUSH_ASYNC"):
            c = latest(rec.dset)
            if c is None:
                c = _new_ckpt(rec.dset, rec.name, rec.jobid, rid)
                ckpts.append(c)
            c["flush"] = {"kind": "sync" if label == "FLUSH_SYNC" else "async",
                          "start": rec.time, "secs": rec.secs, "bytes": rec.bytes,
                          "files": rec.files, "bandwidth": _rate(rec.bytes, rec.secs),
                          "to": rec.to}
            if c["bytes"] is None:
                c["bytes"], c["files"] = rec.bytes, rec.files
        elif rec.kind == "event" and label in ("FLUSH_FAIL", "ASYNC_FLUSH_FAIL"):
            c = latest(rec.dset)
            if c is not None:
                c["flush"] = {"kind": "failed", "start": rec.time, "secs": rec.secs,
                              "bytes": None, "files": None, "bandwidth": None, "to": None}
        elif rec.kind == "event" and label == "SCAVENGE_START":
            c = latest(rec.dset)
            if c is None:
                c = _new_ckpt(rec.dset, rec.name, rec.jobid, rid)
                ckpts.append(c)
            c["scavenge"] = {"start": rec.time, "secs": None}
        elif rec.kind == "event" and label == "SCAVENGE_END":
            c = latest(rec.dset)
            if c is not None and c["scavenge"] is not None:
                c["scavenge"]["secs"] = rec.secs
        elif rec.kind == "event" and label == "RESTART_SUCCESS":
            c = latest(rec.dset)
            if c is not None:
                c["restarted_from"] = True
    for c in ckpts:
        c["bandwidth"] = _rate(c["bytes"], c["secs"])
    return ckpts


def _merge_control(ckpts: list[dict[str, Any]], src: _Sources) -> None:
    from scr_core.control.flush import FlushFile
    from scr_core.control.index import IndexFile
    from scr_core.control.summary import read_summary

    def find(dset: int) -> dict[str, Any]:
        for c in reversed(ckpts):
            if c["dset"] == dset:
                return c
        c = _new_ckpt(dset, None, None, None)
        ckpts.append(c)
        return c

    index = IndexFile(src.prefix)
    entries = src.control("index", str(index.path), index.entries)
    for e in entries or []:
        c = find(e.id)
        desc = e.dataset
        c["name"] = c["name"] or e.name
        if desc is not None:
            c["kind"] = "checkpoint" if desc.is_ckpt or not desc.is_output else "output"
            c["jobid"] = c["jobid"] or desc.jobid
            if c["bytes"] is None and desc.size is not None:
                c["bytes"], c["files"] = float(desc.size), desc.files
            if c["start"] is None and desc.created:
                c["start"] = desc.created / 1e6
        c["index"] = {"complete": e.complete, "valid": e.valid, "current": e.current,
                      "flushed": _stamp_epoch(e.flushed), "failed": _stamp_epoch(e.failed)}
    flush = FlushFile(src.prefix)
    tree = src.control("flush", str(flush.path), flush.read_tree)
    if tree is not None:
        from scr_core.control._common import int_keys

        datasets = tree.get("DATASET")
        for dset in int_keys(datasets):
            entry = datasets[str(dset)]
            c = find(dset)
            c["location"] = entry.values("LOCATION")
            c["name"] = c["name"] or entry.value("NAME")
            if entry.get_int("OUTPUT") == 1 and entry.get_int("CKPT") != 1:
                c["kind"] = "output"
    for c in ckpts:
        ddir = os.path.join(src.scr, f"scr.dataset.{c['dset']}")
        if c["dset"] is None or not os.path.isdir(ddir):
            continue
        summary = src.control(f"summary.scr of dataset {c['dset']}",
                              os.path.join(ddir, "summary.scr"),
                              lambda ddir=ddir: read_summary(ddir))
        if summary is not None:
            c["summary_complete"] = summary.complete
            if c["bytes"] is None and summary.dataset is not None and summary.dataset.size:
                c["bytes"] = float(summary.dataset.size)
    ckpts.sort(key=lambda c: (c["start"] if c["start"] is not None
                              else c["end"] if c["end"] is not None else float("inf"),
                              c["dset"] if c["dset"] is not None else -1))


def _node_failures(stats: LogStats, run_of: list[tuple[int, RunSummary]],
                   runs: list[dict[str, Any]]) -> tuple[dict[int, list], list]:
    """NODE_FAIL records: {run id: [node entries]} for those found after a run of the same
    job, and the list of nodes found down before a run (at an allocation's start)."""
    after: dict[int, list[dict[str, Any]]] = {}
    at_start: list[dict[str, Any]] = []
    owned = [(None, None, rec) for rec in stats.before_runs]
    for rid, run in run_of:
        owned += [(rid, run.jobid, rec) for rec in run.records]
    for rid, jobid, rec in owned:
        if rec.kind != "event" or rec.label != "NODE_FAIL":
            continue
        node, _, reason = (rec.note or "").partition(": ")
        entry = {"node": node or "?", "reason": reason or None,
                 "found_by": found_by(reason) if reason else "unknown",
                 "detected": rec.time, "jobid": rec.jobid}
        if rid is not None and (rec.jobid is None or rec.jobid == jobid):
            seen = after.setdefault(rid, [])
            if all(e["node"] != entry["node"] for e in seen):
                seen.append(entry)
        else:
            nxt = next((r for r in runs if r["start"] >= rec.time and
                        (rec.jobid is None or r["jobid"] == rec.jobid)), None)
            entry["before_run"] = nxt["id"] if nxt else None
            at_start.append(entry)
    return after, at_start


def _failures(runs: list[dict[str, Any]], ckpts: list[dict[str, Any]],
              node_fails: dict[int, list]) -> list[dict[str, Any]]:
    out = []
    done = [c for c in ckpts if c["kind"] == "checkpoint" and c["end"] is not None]
    for i, run in enumerate(runs):
        last = i == len(runs) - 1
        killed_by_halt = bool(run["killed"] and "scr_halt" in run["killed"])
        # as ckpt-interval counts them, plus a last run that failed and was not relaunched
        # (a run that ended with its allocation is not a failure, whatever its exit code)
        failed = run["outcome"] == "failed" or (
            last and run["exit_code"] not in (None, 0) and not killed_by_halt
            and run["outcome"] != "halted")
        if not failed:
            continue
        nxt = runs[i + 1] if not last else None
        at = run["end"]
        point = None
        if nxt is not None and nxt["restart"] and nxt["restart"]["ok"]:
            point = next((c for c in reversed(done) if c["dset"] == nxt["restart"]["dset"]
                          and c["end"] <= at + 1), None)
        if point is None:
            point = next((c for c in reversed(done) if c["end"] <= at + 1), None)
        since = point["end"] if point is not None else run["start"]
        until = nxt["start"] if nxt is not None else at
        nodes = node_fails.get(run["id"], [])
        if nodes:
            cause = "node failure: " + ", ".join(n["node"] for n in nodes)
        elif run["exit_code"] is not None:
            cause = f"exit code {run['exit_code']}" + (
                f" (killed: {run['killed']})" if run["killed"] else "")
        else:
            cause = "the run ended without an end record (killed, or its node died)"
        out.append({
            "run": run["id"], "jobid": run["jobid"], "time": at, "cause": cause,
            "exit_code": run["exit_code"], "nodes": nodes,
            "last_checkpoint": None if point is None else {
                "dset": point["dset"], "name": point["name"], "time": point["end"]},
            "relaunch": None if nxt is None else nxt["start"],
            "relaunch_run": None if nxt is None else nxt["id"],
            "same_allocation": nxt is not None and nxt["jobid"] == run["jobid"],
            "lost_secs": max(0.0, until - since),
        })
    return out


def _allocations(runs: list[dict[str, Any]], node_fails: dict[int, list],
                 at_start: list) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    allocs: list[dict[str, Any]] = []
    idle: list[dict[str, Any]] = []
    for run in runs:
        if not allocs or allocs[-1]["jobid"] != run["jobid"]:
            allocs.append({"jobid": run["jobid"], "start": run["start"], "end": run["end"],
                           "runs": [], "nodes": []})
        a = allocs[-1]
        if a["runs"]:
            prev = next(r for r in runs if r["id"] == a["runs"][-1])
            if run["start"] > prev["end"]:
                idle.append({"jobid": a["jobid"], "start": prev["end"], "end": run["start"],
                             "secs": run["start"] - prev["end"],
                             "between": [prev["id"], run["id"]]})
        a["runs"].append(run["id"])
        a["end"] = max(a["end"], run["end"])
        names = list(run["nodes"] or []) + [n["node"] for n in node_fails.get(run["id"], [])]
        names += [n["node"] for n in at_start if n.get("before_run") == run["id"]]
        a["nodes"] = _natural(a["nodes"] + names)
    return allocs, idle


def _interval(stats: LogStats, ckpts: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "checkpoint_cost": stats.checkpoint_cost, "mtti": stats.mtti,
        "failures": stats.failures, "run_secs": stats.run_secs,
        "young": None, "daly": None, "why_not": None, "used": None, "used_samples": 0,
    }
    for model in ("young", "daly"):
        try:
            result[model] = optimum_interval(stats, model)
        except NotEnoughDataError as exc:
            result["why_not"] = str(exc)
    gaps = []
    by_run: dict[Any, list[float]] = {}
    for c in ckpts:
        if c["kind"] == "checkpoint" and c["end"] is not None and c["run"] is not None:
            by_run.setdefault(c["run"], []).append(c["end"])
    for ends in by_run.values():
        ends.sort()
        gaps += [b - a for a, b in zip(ends, ends[1:])]
    if gaps:
        result["used"] = sum(gaps) / len(gaps)
        result["used_samples"] = len(gaps)
    return result


def _ending(runs: list[dict[str, Any]], halts: list[dict[str, Any]],
            halt_file: Optional[dict[str, Any]]) -> dict[str, Any]:
    if not runs:
        return {"time": None, "reason": "no run is recorded in the log"}
    last = runs[-1]
    late_halt = next((h for h in reversed(halts) if h["time"] >= last["end"]
                      and h["run"] == last["id"]), None)
    if not last["end_logged"] and last["exit_code"] is None and last["outcome"] != "halted":
        reason = (f"the log ends during run {last['id']}: it may still be running, or its "
                  "end was not logged (killed with its allocation?)")
    elif last["outcome"] == "halted":
        why = last["halt_reason"] or "halted"
        if why == "SCR_FINALIZE_CALLED" or (last["exit_code"] == 0 and "rc=0" in why):
            reason = f"the application finished (run {last['id']}"
            reason += ", SCR_Finalize)" if why == "SCR_FINALIZE_CALLED" else ", exit code 0)"
        else:
            reason = f"halted: {why}"
    elif last["exit_code"] == 0:
        reason = f"the application finished (run {last['id']}, exit code 0)"
    elif late_halt is not None:
        reason = f"stopped by a halt condition after run {last['id']}: {late_halt['reason']}"
    elif last["exit_code"] is not None:
        reason = (f"run {last['id']} failed with exit code {last['exit_code']} and was not "
                  "relaunched (no runs left, too few healthy nodes, or the allocation ended)")
    else:
        reason = f"run {last['id']} ended without an exit code in the log"
    said = halt_file.get("exit_reason") if halt_file else None
    if said and said not in reason and not (said == "SCR_FINALIZE_CALLED" and "SCR_Finalize"
                                            in reason):
        reason += f"; the halt file says ExitReason={said}"
    return {"time": last["end"], "reason": reason}


def build_report(prefix: str, logfile: Optional[str] = None) -> dict[str, Any]:
    """The report of the job(s) whose control files are under ``prefix`` (schema
    ``scr.report/1``); never raises for bad or missing inputs: see ``missing``."""
    from scr_core.control.halt import HaltFile

    prefix = os.path.abspath(prefix)
    src = _Sources(prefix, logfile)
    records: list[LogRecord] = src.log()
    stats = analyze(records, skipped_lines=getattr(records, "skipped", 0))
    run_of = list(enumerate(stats.runs, start=1))
    runs = [_run_entry(i, run) for i, run in run_of]
    ckpts = _checkpoints(stats, run_of)
    _merge_control(ckpts, src)
    node_fails, at_start = _node_failures(stats, run_of, runs)
    failures = _failures(runs, ckpts, node_fails)
    allocs, idle = _allocations(runs, node_fails, at_start)

    halts = []
    for rid, owned in [(None, stats.before_runs)] + [(i, r.records) for i, r in run_of]:
        for rec in owned:
            if rec.kind == "event" and rec.label == "HALT":
                halts.append({"time": rec.time, "reason": rec.note, "jobid": rec.jobid,
                              "run": rid})
    halt = HaltFile.for_prefix(prefix)
    state = src.control("halt", str(halt.path), halt.read)
    halt_file = None
    if state is not None:
        halt_file = {k: getattr(state, k) for k in (
            "exit_reason", "checkpoints_left", "exit_before", "exit_after", "halt_seconds")}

    if runs and all(r["nodes"] is None for r in runs):
        src.missing.append("the log does not name the nodes of the runs (only SCR's "
                           "scripts write them): the timeline shows one row per run's host")
    return {
        "schema": SCHEMA,
        "prefix": prefix,
        "generated": time.time(),
        "sources": src.states,
        "missing": src.missing,
        "allocations": allocs,
        "runs": runs,
        "failures": failures,
        "nodes_down_at_start": at_start,
        "checkpoints": ckpts,
        "halts": halts,
        "halt_file": halt_file,
        "idle": idle,
        "end": _ending(runs, halts, halt_file),
        "interval": _interval(stats, ckpts),
    }


# ---------------------------------------------------------------------------------- text


def format_secs(secs: Optional[float]) -> str:
    """``0.042 s``, ``12.5 s``, ``3m07s``, ``2h05m``: short, for tables."""
    if secs is None:
        return "-"
    if secs < 10:
        return f"{secs:.3g} s" if secs < 1 else f"{secs:.1f} s"
    if secs < 60:
        return f"{secs:.0f} s"
    minutes, s = divmod(round(secs), 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_stamp(epoch: Optional[float], ref: Optional[float] = None) -> str:
    """Local time; the date only when it differs from ``ref``'s (or without ``ref``)."""
    if epoch is None:
        return "-"
    t = time.localtime(epoch)
    if ref is not None and time.localtime(ref)[:3] == t[:3]:
        return time.strftime("%H:%M:%S", t)
    return time.strftime("%Y-%m-%d %H:%M:%S", t)


def format_size(nbytes: Optional[float]) -> str:
    from scr_core.units import format_bytes

    return "-" if nbytes is None else format_bytes(int(nbytes))


def _bw(rate: Optional[float]) -> str:
    return "-" if rate is None else format_size(rate) + "/s"


def nodes_text(nodes: Optional[list[str]], count: Optional[int] = None) -> str:
    from scr_core.hostlist import fold

    if nodes:
        try:
            return fold(nodes)
        except Exception:
            return ",".join(nodes)
    return f"{count} node(s)" if count else "?"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _outcome_text(run: dict[str, Any]) -> str:
    if run["outcome"] == "halted":
        return f"halted ({run['halt_reason']})" if run["halt_reason"] else "halted"
    return {"failed": "failed", "allocation_end": "ended with its allocation",
            "last": "last in the log"}.get(run["outcome"], run["outcome"])


def format_text(report: dict[str, Any]) -> str:
    """The terminal summary of a report (what ``scr report`` prints)."""
    out = [f"SCR report for {report['prefix']}"]
    src = report["sources"]
    log = src.get("log", {})
    parts = [f"log {log.get('state', '?')}" + (
        f" ({log['records']} records)" if log.get("records") else "")]
    parts += [f"{name} {src[name]['state']}" for name in ("index", "flush", "halt")
              if name in src]
    out.append("Read: " + "; ".join(parts))
    for line in report["missing"]:
        out.append(f"Missing: {line}")
    runs = {r["id"]: r for r in report["runs"]}

    for alloc in report["allocations"]:
        ref = alloc["start"]
        out += ["", f"Allocation {alloc['jobid']}: {format_stamp(alloc['start'])} to "
                f"{format_stamp(alloc['end'], ref)} ({format_secs(alloc['end'] - ref)}), "
                f"nodes {nodes_text(alloc['nodes'])}"]
        rows = [["run", "start", "end", "time", "exit", "nodes", "outcome"]]
        for rid in alloc["runs"]:
            r = runs[rid]
            rows.append([str(rid), format_stamp(r["start"], ref),
                         format_stamp(r["end"], ref) + ("" if r["end_logged"] else "?"),
                         format_secs(r["secs"]),
                         "-" if r["exit_code"] is None else str(r["exit_code"]),
                         nodes_text(r["nodes"], r["node_count"]), _outcome_text(r)])
        out += _table(rows)
        for gap in report["idle"]:
            if gap["jobid"] == alloc["jobid"] and gap["between"][0] in alloc["runs"]:
                out.append(f"  idle {format_secs(gap['secs'])} between runs "
                           f"{gap['between'][0]} and {gap['between'][1]}")

    out += ["", "Failures" + ("" if report["failures"] else ": none")]
    for f in report["failures"]:
        ref = runs[f["run"]]["start"]
        out.append(f"  run {f['run']} ({f['jobid']}) ended {format_stamp(f['time'], ref)}: "
                   f"{f['cause']}")
        for n in f["nodes"]:
            out.append(f"    {n['node']}: {n['reason'] or '?'} (found by {n['found_by']} at "
                       f"{format_stamp(n['detected'], ref)})")
        lc = f["last_checkpoint"]
        since = (f"{lc['name'] or 'dataset ' + str(lc['dset'])} "
                 f"({format_stamp(lc['time'], ref)})" if lc else "the run's start")
        until = (f"the relaunch (run {f['relaunch_run']}, {format_stamp(f['relaunch'], ref)})"
                 if f["relaunch"] is not None else "the failure (no relaunch)")
        out.append(f"    time lost {format_secs(f['lost_secs'])}: from {since} to {until}")
    for n in report["nodes_down_at_start"]:
        out.append(f"  {n['node']} down before run {n.get('before_run') or '?'}: "
                   f"{n['reason'] or '?'} (found by {n['found_by']})")

    ckpts = report["checkpoints"]
    written = [c for c in ckpts if c["end"] is not None]
    flushed = [c for c in ckpts if (c["flush"] and c["flush"]["kind"] != "failed")
               or (c["index"] and c["index"]["flushed"] and not c["scavenge"])]
    scavenged = [c for c in ckpts if c["scavenge"]]
    total = sum(c["bytes"] or 0 for c in written)
    out += ["", f"Checkpoints and outputs: {len(written)} written ({format_size(total)}), "
            f"{len(flushed)} flushed, {len(scavenged)} scavenged"]
    if ckpts:
        rows = [["dset", "name", "run", "written", "size", "write", "bandwidth", "flush",
                 "bandwidth", "scavenge", "index"]]
        for c in ckpts:
            fl = c["flush"]
            idx = c["index"]
            state = "-" if idx is None else ("valid" if idx["valid"] else "INVALID") + (
                " current" if idx["current"] else "")
            if c["restarted_from"]:
                state += " restarted-from"
            rows.append([
                "-" if c["dset"] is None else str(c["dset"]), c["name"] or "-",
                "-" if c["run"] is None else str(c["run"]),
                format_stamp(c["end"] if c["end"] is not None else c["start"],
                             report["generated"]),
                format_size(c["bytes"]), format_secs(c["secs"]), _bw(c["bandwidth"]),
                "-" if fl is None else ("FAILED" if fl["kind"] == "failed"
                                        else f"{format_secs(fl['secs'])} {fl['kind']}"),
                "-" if fl is None else _bw(fl["bandwidth"]),
                "-" if not c["scavenge"] else format_secs(c["scavenge"]["secs"]), state])
        out += _table(rows)

    out += ["", "Halts" + ("" if report["halts"] or report["halt_file"] else ": none")]
    for h in report["halts"]:
        out.append(f"  {format_stamp(h['time'])} run {h['run']}: {h['reason'] or '(no reason)'}")
    hf = report["halt_file"]
    if hf:
        set_ = [f"{k}={v}" for k, v in hf.items() if v is not None]
        out.append("  halt file: " + (", ".join(set_) if set_ else "no condition set"))
    out += ["", f"Why the job ended: {report['end']['reason']}"]

    iv = report["interval"]
    used = (f"{format_secs(iv['used'])} (mean of {iv['used_samples']} interval(s) between "
            "checkpoints)") if iv["used"] is not None else "unknown (fewer than two "\
        "checkpoints in a run)"
    out += ["", f"Checkpoint interval used: {used}"]
    if iv["daly"] is not None:
        out.append(f"Recommended (from {iv['failures']} observed failure(s)): Daly "
                   f"{format_secs(iv['daly'])}, Young {format_secs(iv['young'])} "
                   f"(checkpoint cost {format_secs(iv['checkpoint_cost'])}, mean time to "
                   f"interrupt {format_secs(iv['mtti'])})")
    else:
        out.append(f"Recommended: none ({iv['why_not']})")
    return "\n".join(out) + "\n"
