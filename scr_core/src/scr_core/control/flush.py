"""The flush file ``<prefix>/.scr/flush.scr``: which datasets are in cache and which are on the PFS.

Layout (kvtree.md §5.2)::

    DATASET
      <id>
        NAME     -> <name>
        LOCATION -> CACHE | PFS | FLUSHING | SYNC_FLUSHING     (one or more)
        CKPT     -> 1                                          (checkpoints only)
        OUTPUT   -> 1                                          (output datasets only)
        DSETDESC -> <dataset descriptor>

The queries answer what ``scr_flush_file --dir <prefix>`` answers. Every call reads the file
again, so polling (the watchdog) sees new entries. A missing file counts as empty. A
corrupt file raises ``ControlFileError``, where the CLI says "Failed to read flush file".

Public API of ``FlushFile(prefix)``
-----------------------------------
Queries:

- ``ids() -> list[int]``: every dataset id, ascending.
- ``list_output(before=None) -> list[int]``: ids with OUTPUT == 1, ascending.
- ``list_ckpt(before=None) -> list[int]``: ids with CKPT == 1, descending.
  For both lists, *before* keeps ids < before. None or 0 means no filter, as in the CLI.
- ``has(id) -> bool``.
- ``need_flush(id) -> bool``: the entry exists and has no PFS location.
- ``location(id) -> str | None``: the first LOCATION value in file order. That is the
  last one added, e.g. ``PFS`` after a flush. ``"NONE"`` if LOCATION is there but empty;
  None if the dataset or its LOCATION key is missing (the CLI exits 1).
- ``locations(id) -> list[str]``.
- ``name(id) -> str | None``.
- ``latest() -> int | None``: the largest id.
- ``dataset(id) -> DatasetDescriptor | None``: decoded DSETDESC.

Writers, as libscr rank 0 does them (read-modify-write; the write itself is atomic):

- ``new_entry(id, name, ckpt, output, desc, location="CACHE")``: ``scr_flush_file_new_entry``.
- ``location_add(id, location)`` / ``location_remove(id, location)``:
  ``scr_flush_file_location_set`` / ``_unset``.
- ``remove(id) -> bool``: ``scr_flush_file_dataset_remove``.

Location constants: ``LOCATION_CACHE``, ``LOCATION_PFS``, ``LOCATION_FLUSHING``,
``LOCATION_SYNC_FLUSHING``.
"""

from __future__ import annotations

from pathlib import Path

from scr_core.control._common import int_keys, read_or_empty, write_tree
from scr_core.control.dataset import DatasetDescriptor
from scr_core.control.paths import PathLike, flush_path
from scr_core.kvtree import KVTree

__all__ = [
    "LOCATION_CACHE",
    "LOCATION_FLUSHING",
    "LOCATION_PFS",
    "LOCATION_SYNC_FLUSHING",
    "FlushFile",
]

KEY_DATASET = "DATASET"
KEY_NAME = "NAME"
KEY_LOCATION = "LOCATION"
KEY_CKPT = "CKPT"
KEY_OUTPUT = "OUTPUT"
KEY_DSETDESC = "DSETDESC"

LOCATION_CACHE = "CACHE"
LOCATION_PFS = "PFS"
LOCATION_FLUSHING = "FLUSHING"
LOCATION_SYNC_FLUSHING = "SYNC_FLUSHING"


class FlushFile:
    """Queries and libscr-style updates of one prefix's flush file."""

    def __init__(self, prefix: PathLike) -> None:
        self.prefix = Path(prefix)
        self.path = flush_path(prefix)

    def read_tree(self) -> KVTree:
        """The whole file as a tree (empty if missing)."""
        return read_or_empty(self.path)[0]

    def exists(self) -> bool:
        return self.path.exists()

    def _entry(self, dataset_id: int, tree: KVTree | None = None) -> KVTree | None:
        datasets = (self.read_tree() if tree is None else tree).get(KEY_DATASET)
        return None if datasets is None else datasets.get(str(int(dataset_id)))

    # --- queries ----------------------------------------------------------------------------

    def ids(self) -> list[int]:
        return int_keys(self.read_tree().get(KEY_DATASET))

    def _flagged(self, flag_key: str, before: int | None) -> list[int]:
        datasets = self.read_tree().get(KEY_DATASET) or KVTree()
        result = []
        for dataset_id in int_keys(datasets):
            if before and dataset_id >= before:
                continue
            entry = datasets[str(dataset_id)]
            if entry.get_int(flag_key) == 1:
                result.append(dataset_id)
        return result

    def list_output(self, before: int | None = None) -> list[int]:
        return self._flagged(KEY_OUTPUT, before)

    def list_ckpt(self, before: int | None = None) -> list[int]:
        return self._flagged(KEY_CKPT, before)[::-1]

    def has(self, dataset_id: int) -> bool:
        return self._entry(dataset_id) is not None

    def need_flush(self, dataset_id: int) -> bool:
        entry = self._entry(dataset_id)
        return entry is not None and not entry.has_value(KEY_LOCATION, LOCATION_PFS)

    def location(self, dataset_id: int) -> str | None:
        entry = self._entry(dataset_id)
        if entry is None or KEY_LOCATION not in entry:
            return None
        first = entry.first_value(KEY_LOCATION)
        return "NONE" if first is None else first

    def locations(self, dataset_id: int) -> list[str]:
        entry = self._entry(dataset_id)
        return [] if entry is None else entry.values(KEY_LOCATION)

    def name(self, dataset_id: int) -> str | None:
        entry = self._entry(dataset_id)
        return None if entry is None else entry.value(KEY_NAME)

    def latest(self) -> int | None:
        ids = self.ids()
        return ids[-1] if ids else None

    def dataset(self, dataset_id: int) -> DatasetDescriptor | None:
        entry = self._entry(dataset_id)
        desc = None if entry is None else entry.get(KEY_DSETDESC)
        if desc is None:
            return None
        return DatasetDescriptor.from_tree(desc, f"{self.path}: DATASET/{dataset_id}/DSETDESC")

    # --- writers ----------------------------------------------------------------------------

    def new_entry(
        self,
        dataset_id: int,
        name: str,
        ckpt: bool,
        output: bool,
        desc: DatasetDescriptor,
        location: str = LOCATION_CACHE,
    ) -> None:
        tree = self.read_tree()
        entry = tree.add_value(KEY_DATASET, int(dataset_id))
        entry.set_value(KEY_NAME, name)
        entry.set_value(KEY_LOCATION, location)
        if ckpt:
            entry.set_int(KEY_CKPT, 1)
        if output:
            entry.set_int(KEY_OUTPUT, 1)
        # libscr copies the descriptor with kvtree_merge, which reverses its order
        copy = KVTree()
        copy.merge(desc.to_tree())
        entry.set(KEY_DSETDESC, copy)
        write_tree(self.path, tree)

    def location_add(self, dataset_id: int, location: str) -> None:
        tree = self.read_tree()
        tree.add_value(KEY_DATASET, int(dataset_id)).add_value(KEY_LOCATION, location)
        write_tree(self.path, tree)

    def location_remove(self, dataset_id: int, location: str) -> None:
        tree = self.read_tree()
        entry = self._entry(dataset_id, tree)
        if entry is None:
            return
        entry.remove_value(KEY_LOCATION, location)
        write_tree(self.path, tree)

    def remove(self, dataset_id: int) -> bool:
        tree = self.read_tree()
        if self._entry(dataset_id, tree) is None:
            return False
        tree.remove_value(KEY_DATASET, int(dataset_id))
        write_tree(self.path, tree)
        return True
