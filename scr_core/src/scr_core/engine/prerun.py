"""Prepare the allocation before the first run (SCR's ``scr_prerun``)."""

from __future__ import annotations

import os
from typing import Any, Callable


def prerun(job: Any, out: Callable[[str], None] | None = None) -> None:
    """Make ``<prefix>/.scr``, let the RM prepare nodes, and drop the flush and nodes files
    of an earlier allocation (their datasets' caches are gone). The halt file is kept, but
    an ExitReason SCR_FINALIZE_CALLED in it (an earlier allocation's application finished)
    is removed: it stops the allocation that wrote it, never a new one."""
    if not job.params.get_bool("SCR_ENABLE", True):
        return
    from ..control.paths import ensure_scr_dir, flush_path, nodes_path

    ensure_scr_dir(job.prefix, getattr(job, "prefix_source", "SCR_PREFIX"))
    job.resource_manager.prerun()
    _clear_finalize(job.prefix, out)

    for path in (flush_path(job.prefix), nodes_path(job.prefix)):
        try:
            os.unlink(path)
            if out:
                out(f"removed {path} of an earlier allocation")
        except FileNotFoundError:
            pass


def _clear_finalize(prefix: str, out: Callable[[str], None] | None) -> None:
    from ..control.halt import FINALIZE_REASON, HaltFile

    with HaltFile.for_prefix(prefix).update(create=False) as state:
        if state.exit_reason == FINALIZE_REASON:
            state.exit_reason = None
            if out:
                out("cleared ExitReason SCR_FINALIZE_CALLED of an earlier allocation")
