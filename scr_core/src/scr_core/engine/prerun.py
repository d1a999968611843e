"""Prepare the allocation before the first run (SCR's ``scr_prerun``)."""

from __future__ import annotations

import os
from typing import Any, Callable


def prerun(job: Any, out: Callable[[str], None] | None = None) -> None:
    """Make ``<prefix>/.scr``, let the RM prepare nodes, and drop the flush and nodes files
    of an earlier allocation (their datasets' caches are gone). The halt file is kept."""
    if (job.params.get("SCR_ENABLE") or "1").strip() == "0":
        return
    os.makedirs(job.dir_scr(), exist_ok=True)
    job.resource_manager.prerun()
    from ..control.paths import flush_path, nodes_path

    for path in (flush_path(job.prefix), nodes_path(job.prefix)):
        try:
            os.unlink(path)
            if out:
                out(f"removed {path} of an earlier allocation")
        except FileNotFoundError:
            pass
