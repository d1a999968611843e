"""After the last run (SCR's ``scr_postrun``): save the datasets that live only in cache.

Dataset selection is SCR's (scr-reference.md §1.10, §10 step 1), from the flush file:

1. output datasets in ascending id order, each that still needs a flush (no ``PFS``
   location) is scavenged; the first that fails stops this step and bounds step 2;
2. checkpoints newest first, only ids below that failed output: one that was already
   scavenged in step 1 counts as it ended; one already on the prefix ends the search (it is
   the restart point); otherwise it is scavenged, and the first that ends complete ends the
   search; a failed one is reported and the next older one is tried;
3. the newest good checkpoint found is made ``CURRENT`` in the index.

Unlike SCR, failures are returned: ``postrun`` is False when a dataset that needed saving
was not saved (an output, or a checkpoint newer than the restart point), with the
dataset, ranks, files and nodes at fault given to ``out``.
"""

from __future__ import annotations

from typing import Any, Callable


def postrun(job: Any, out: Callable[[str], None], log: Any = None,
            progress: Callable[[str], Any] | None = None) -> bool:
    """True when nothing needed saving, or everything that needed saving was saved.

    ``progress``: where scavenge writes its progress line (a terminal), or None.
    """
    if not job.params.get_bool("SCR_ENABLE", True):
        return True
    from ..control.flush import FlushFile
    from ..errors import ScrError

    try:
        flush = FlushFile(job.prefix)
        outputs = flush.list_output()
        ckpts = flush.list_ckpt()
        needed = [d for d in outputs + ckpts if flush.need_flush(d)]
    except ScrError as exc:
        out(f"postrun: cannot read the flush file: {exc}")
        return False
    if not needed:
        out("postrun: every dataset is on the prefix; nothing to scavenge")
        return True
    engine = _engine()
    if engine is None:
        out("postrun: dataset(s) " + ", ".join(str(d) for d in dict.fromkeys(needed)) +
            " exist only in node-local cache and were NOT copied: scavenge is not available")
        return False
    try:
        return _select_and_scavenge(job, flush, outputs, engine, out, log, progress)
    except ScrError as exc:
        out(f"postrun: {exc}")
        return False


def _select_and_scavenge(job: Any, flush: Any, outputs: list, engine: Any,
                         out: Callable[[str], None], log: Any,
                         progress: Callable[[str], Any] | None) -> bool:
    from ..control.index import IndexFile

    up, down = engine.pick_nodes(job, out=lambda m: out(f"postrun: {m}"))
    attempted: dict[int, Any] = {}
    ok = True

    def scavenge(dataset_id: int) -> Any:
        res = engine.scavenge_dataset(job, dataset_id, up, down=down,
                                      out=lambda m: out(f"postrun: {m}"), log=log,
                                      progress=progress)
        attempted[dataset_id] = res
        for line in res.describe():
            out(f"postrun: {line}")
        return res

    failed_output = None
    for dataset_id in outputs:
        if not flush.need_flush(dataset_id):
            continue
        if not scavenge(dataset_id).complete:
            failed_output = dataset_id
            ok = False
            break

    good_name = None
    lost_newer = False  # a newer checkpoint was tried and lost
    for dataset_id in flush.list_ckpt(before=failed_output):
        res = attempted.get(dataset_id)
        if res is None and not flush.need_flush(dataset_id):
            # already on the prefix: the newest checkpoint we can restart from. CURRENT is
            # only moved to it when a newer one was lost (otherwise libscr set it already,
            # or the user chose another one with scr index --current)
            if not lost_newer:
                out(f"postrun: checkpoint {dataset_id} is on the prefix; older ones are not "
                    "needed")
                break
            good_name = flush.name(dataset_id)
            if not _index_valid(IndexFile(job.prefix), good_name):
                out(f"postrun: checkpoint {dataset_id} is on the prefix but not valid in the "
                    "index; leaving CURRENT as it is")
                good_name = None
            break
        if res is None:
            res = scavenge(dataset_id)
        if res.complete:
            good_name = res.name
            break
        ok = False  # a checkpoint newer than the restart point is lost
        lost_newer = True
        out(f"postrun: trying the next older checkpoint instead of {dataset_id}")

    if good_name:
        try:
            if IndexFile(job.prefix).set_current(good_name):
                out(f"postrun: restart point (CURRENT) is {good_name}")
            else:
                out(f"postrun: could not make {good_name} CURRENT: not a checkpoint in the "
                    "index")
                ok = False
        except OSError as exc:
            out(f"postrun: cannot update the index: {exc}")
            ok = False
    elif any(not r.complete for r in attempted.values()):
        out("postrun: no complete checkpoint could be saved; there is no restart point")
    return ok


def _index_valid(index: Any, name: str | None) -> bool:
    if not name:
        return False
    try:
        return any(e.name == name and e.valid for e in index.entries())
    except Exception:  # a corrupt index: do not touch CURRENT
        return False


def _engine() -> Any:
    try:
        from . import scavenge
    except ImportError:
        return None
    return scavenge
