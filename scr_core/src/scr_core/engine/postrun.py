"""After the last run (SCR's ``scr_postrun``): find datasets that live only in cache.

Scavenging them to the prefix comes with the scavenge engine; until then postrun reports
honestly which datasets would be lost and returns False for them.
"""

from __future__ import annotations

from typing import Any, Callable


def postrun(job: Any, out: Callable[[str], None], log: Any = None) -> bool:
    """True when nothing needed saving (or everything needed was saved)."""
    if (job.params.get("SCR_ENABLE") or "1").strip() == "0":
        return True
    from ..control.flush import FlushFile
    from ..errors import ScrError

    try:
        flush = FlushFile(job.prefix)
        needed = [d for d in flush.list_output() if flush.need_flush(d)]
        needed += [d for d in flush.list_ckpt() if flush.need_flush(d)]
    except ScrError as exc:
        out(f"postrun: cannot read the flush file: {exc}")
        return False
    if not needed:
        out("postrun: every dataset is on the prefix; nothing to scavenge")
        return True
    scavenge = _scavenger()
    if scavenge is None:
        out("postrun: dataset(s) " + ", ".join(str(d) for d in needed) +
            " exist only in node-local cache and were NOT copied: scavenge is not available")
        return False
    return bool(scavenge(job, needed, out=out, log=log))


def _scavenger() -> Any:
    try:
        from .scavenge import scavenge_datasets
    except ImportError:
        return None
    return scavenge_datasets
