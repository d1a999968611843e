"""``--json`` output of the commands: one JSON object per call, tagged with its schema.

Every object starts with ``"schema": "scr.<what>/<version>"``; the layouts are documented in
docs/json-schemas.md. A version changes only when a field is removed or changes meaning
(adding a field keeps it), so a script checks ``schema`` and ignores what it does not know.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

__all__ = ["SCHEMAS", "dump", "halt_state", "index_entries"]

SCHEMAS = {
    "report": "scr.report/1",
    "index": "scr.index/1",
    "halt": "scr.halt/1",
    "down-nodes": "scr.down-nodes/1",
    "should-exit": "scr.should-exit/1",
}


def dump(kind: str, body: dict[str, Any], out: Any = None) -> None:
    """Print ``{"schema": ..., **body}`` on one line (stdout by default)."""
    obj = {"schema": SCHEMAS[kind], **body}
    (out or sys.stdout).write(json.dumps(obj) + "\n")


def index_entries(index: Any) -> dict[str, Any]:
    """The body of ``scr index --list --json`` for an :class:`~scr_core.control.index.IndexFile`."""
    datasets = []
    for e in index.entries():
        d = e.dataset
        datasets.append({
            "id": e.id, "name": e.name,
            "checkpoint": None if d is None else d.is_ckpt,
            "output": None if d is None else d.is_output,
            "complete": e.complete, "valid": e.valid, "current": e.current,
            "flushed": e.flushed, "failed": e.failed, "fetched": list(e.fetched),
            "size": None if d is None else d.size, "files": None if d is None else d.files,
            "created": None if d is None or d.created is None else d.created / 1e6,
            "jobid": None if d is None else d.jobid,
        })
    datasets.sort(key=lambda x: x["id"], reverse=True)  # newest first, as --list
    return {"index": str(index.path), "current": index.current(), "datasets": datasets}


def halt_state(prefix: str, path: str, state: Optional[Any], exists: bool) -> dict[str, Any]:
    """One prefix's entry in ``scr halt --list --json``."""
    fields = ("exit_reason", "checkpoints_left", "exit_before", "exit_after", "halt_seconds")
    entry: dict[str, Any] = {"prefix": prefix, "path": path, "exists": exists}
    entry.update({f: None if state is None else getattr(state, f) for f in fields})
    entry["corrupt"] = None if state is None else state.corrupt
    return entry
