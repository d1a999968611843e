"""The index file ``<prefix>/.scr/index.scr``: datasets on the PFS and the restart point.

Layout (kvtree.md §5.4)::

    VERSION -> 2
    CURRENT -> <name>                      (optional; always a checkpoint)
    NAME
      <name>
        DSET -> <id>
    DSET
      <id>
        COMPLETE -> 0 | 1
        DSET     -> <dataset descriptor>
        FLUSHED  -> YYYY-MM-DDTHH:MM:SS     (local time)
        FAILED   -> YYYY-MM-DDTHH:MM:SS     (a fetch failed)
        FETCHED  -> YYYY-MM-DDTHH:MM:SS     (one value per fetch)

The update methods follow ``scr_index_api.c`` step by step (remove by name, then set the
dataset, then mark it), so the result is key for key what libscr and ``scr_index``
produce. Each call reads the file, changes it and writes it back atomically.

One deliberate difference: a file with a bad or missing VERSION, or one that is
corrupt, always raises ``ControlFileError``. ``scr_flush_complete`` and
``scr_index --build`` ignore that error and overwrite the index with a new file holding
only one dataset; this module never does.

Public API of ``IndexFile(prefix)``
-----------------------------------
- ``read_tree() -> KVTree``: the file, VERSION checked. A missing file is an empty tree.
- ``exists() -> bool``.
- ``current() -> str | None``.
- ``set_current(name) -> bool``: False (file unchanged) if *name* is not indexed or is not
  a checkpoint.
- ``add(desc, complete, flushed_time=None, from_flush=False)``: as ``scr_index --add`` and
  ``--build``. Removes any entry of that name, records ``DSET/<id>/{DSET, COMPLETE}`` and
  ``NAME/<name>/DSET``, and stamps FLUSHED. With ``from_flush=True`` it acts as
  ``scr_flush_complete`` instead: it also clears FAILED and makes a checkpoint CURRENT.
- ``mark_incomplete(desc)``: as ``scr_flush_init_index`` (the entry gets COMPLETE 0 while a
  flush runs).
- ``mark_failed(name, when=None) -> bool`` / ``mark_fetched(name, when=None) -> bool``.
- ``drop(name) -> bool`` / ``drop_after(name) -> bool``: as ``scr_index --drop`` /
  ``--drop-after``. Dropping CURRENT moves it to the newest complete checkpoint before it.
- ``entries() -> list[IndexEntry]``: one per ``DSET/<id>``, ascending id.
- ``format_list() -> str``: ``scr_index --list`` output.

Timestamps (*flushed_time*, *when*) are epoch seconds, an already formatted string, or
None for now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scr_core import kvtree
from scr_core.control._common import int_keys, timestamp, write_tree
from scr_core.control.dataset import DatasetDescriptor
from scr_core.control.paths import PathLike, index_path
from scr_core.errors import ControlFileError
from scr_core.kvtree import KVTree, c_atoi, gc_paused

__all__ = ["INDEX_VERSION", "IndexEntry", "IndexFile"]

INDEX_VERSION = 2

KEY_VERSION = "VERSION"
KEY_CURRENT = "CURRENT"
KEY_NAME = "NAME"
KEY_DSET = "DSET"
KEY_COMPLETE = "COMPLETE"
KEY_FLUSHED = "FLUSHED"
KEY_FAILED = "FAILED"
KEY_FETCHED = "FETCHED"
KEY_FLAG_CKPT = "FLAG_CKPT"
KEY_DESC_NAME = "NAME"


@dataclass
class IndexEntry:
    """One ``DSET/<id>`` record."""

    id: int
    name: str | None
    complete: bool | None
    flushed: str | None = None
    failed: str | None = None
    fetched: list[str] = field(default_factory=list)
    dataset: DatasetDescriptor | None = None
    current: bool = False

    @property
    def valid(self) -> bool:
        """What ``scr_index --list`` shows as VALID: COMPLETE == 1 and no FAILED stamp."""
        return bool(self.complete) and self.failed is None


def _is_ckpt(entry: KVTree | None) -> bool:
    # scr_dataset_is_ckpt: FLAG_CKPT of the descriptor, read with atoi, non-zero
    desc = None if entry is None else entry.get(KEY_DSET)
    return desc is not None and bool(desc.get_int(KEY_FLAG_CKPT))


def _desc_name(entry: KVTree) -> str | None:
    desc = entry.get(KEY_DSET)
    return None if desc is None else desc.value(KEY_DESC_NAME)


def _id_by_name(tree: KVTree, name: str) -> int | None:
    names = tree.get(KEY_NAME)
    sub = None if names is None else names.get(name)
    return None if sub is None else sub.get_int(KEY_DSET)


def _set_directory(tree: KVTree, name: str, dataset_id: int) -> None:
    tree.add_value(KEY_NAME, name).set_int(KEY_DSET, dataset_id)


def _dset(tree: KVTree, dataset_id: int) -> KVTree:
    return tree.add_value(KEY_DSET, dataset_id)  # kvtree_set_kv_int: get or create


def _most_recent_complete(tree: KVTree, earlier_than: int) -> str | None:
    """scr_index_get_most_recent_complete: newest complete checkpoint with id < earlier_than."""
    datasets = tree.get(KEY_DSET)
    best_id, best_name = -1, None
    for key, entry in [] if datasets is None else datasets.items():
        dataset_id = c_atoi(key)
        if earlier_than != -1 and dataset_id >= earlier_than:
            continue
        if dataset_id < best_id:
            continue
        if entry.get_int(KEY_COMPLETE) != 1 or KEY_FAILED in entry or not _is_ckpt(entry):
            continue
        best_id, best_name = dataset_id, _desc_name(entry)
    return best_name


def _set_current(tree: KVTree, name: str) -> bool:
    dataset_id = _id_by_name(tree, name)
    if dataset_id is None:
        return False
    datasets = tree.get(KEY_DSET)
    if not _is_ckpt(None if datasets is None else datasets.get(str(dataset_id))):
        return False
    tree.set_value(KEY_CURRENT, name)
    return True


def _remove(tree: KVTree, name: str) -> bool:
    """scr_index_remove, including its handling of CURRENT."""
    dataset_id = _id_by_name(tree, name)
    if dataset_id is None:
        tree.remove_value(KEY_CURRENT, name)
        return False
    tree.remove_value(KEY_NAME, name)
    tree.remove_value(KEY_DSET, dataset_id)
    if tree.value(KEY_CURRENT) == name:
        tree.unset(KEY_CURRENT)
        replacement = _most_recent_complete(tree, dataset_id)
        if replacement is not None:
            _set_current(tree, replacement)
    return True


class IndexFile:
    """Typed access to one prefix's ``index.scr``; see the module docstring."""

    def __init__(self, prefix: PathLike) -> None:
        self.prefix = Path(prefix)
        self.path = index_path(prefix)

    def exists(self) -> bool:
        return self.path.exists()

    def read_tree(self) -> KVTree:
        try:
            tree = kvtree.read(self.path)
        except FileNotFoundError:
            return KVTree()
        version = tree.get_int(KEY_VERSION)
        if version is None:
            raise ControlFileError(f"{self.path}: index file has no {KEY_VERSION}")
        if version != INDEX_VERSION:
            raise ControlFileError(
                f"{self.path}: index file format version {version}, expected {INDEX_VERSION}"
            )
        return tree

    def _write(self, tree: KVTree) -> None:
        # scr_index_write adds VERSION only when it is missing
        if KEY_VERSION not in tree:
            tree.set_int(KEY_VERSION, INDEX_VERSION)
        write_tree(self.path, tree)

    # --- queries ----------------------------------------------------------------------------

    def current(self) -> str | None:
        return self.read_tree().value(KEY_CURRENT)

    def entries(self) -> list[IndexEntry]:
        # the tree is read, decoded and freed with the collector paused (see gc_paused)
        with gc_paused():
            return self._entries()

    def _entries(self) -> list[IndexEntry]:
        tree = self.read_tree()
        current = tree.value(KEY_CURRENT)
        datasets = tree.get(KEY_DSET) or KVTree()
        result = []
        for dataset_id in int_keys(datasets):
            entry = datasets[str(dataset_id)]
            desc_tree = entry.get(KEY_DSET)
            desc = None
            if desc_tree is not None:
                desc = DatasetDescriptor.from_tree(
                    desc_tree, f"{self.path}: DSET/{dataset_id}/DSET"
                )
            complete = entry.get_int(KEY_COMPLETE)
            name = _desc_name(entry)
            result.append(
                IndexEntry(
                    id=dataset_id,
                    name=name,
                    complete=None if complete is None else complete == 1,
                    flushed=entry.value(KEY_FLUSHED),
                    failed=entry.value(KEY_FAILED),
                    fetched=entry.values(KEY_FETCHED),
                    dataset=desc,
                    current=name is not None and name == current,
                )
            )
        return result

    def format_list(self) -> str:
        """``scr_index --list``, printed as ``index_list`` in ``scr_index.c`` does.

        Our reading of that code: a header, then one row per checkpoint, newest id first.
        Each row is ``%4d``, a space, ``YES  `` or ``NO   ``, a space, FLUSHED or 19
        blanks, a space, ``  *`` or three blanks, a space, and the name (or
        ``UNKNOWN_NAME``).
        """
        with gc_paused():
            return self._format_list()

    def _format_list(self) -> str:
        tree = self.read_tree()
        current = tree.value(KEY_CURRENT)
        datasets = tree.get(KEY_DSET)
        rows = []
        items = [] if datasets is None else datasets.items()
        for key, entry in sorted(items, key=lambda kv: c_atoi(kv[0]), reverse=True):
            if not _is_ckpt(entry):
                continue
            name = _desc_name(entry)
            valid = entry.get_int(KEY_COMPLETE) == 1 and entry.value(KEY_FAILED) is None
            flushed = entry.value(KEY_FLUSHED)
            star = "  *" if current is not None and name == current else "   "
            rows.append(
                f"{c_atoi(key):4d} {'YES  ' if valid else 'NO   '} "
                f"{flushed if flushed is not None else ' ' * 19} {star} "
                f"{name if name is not None else 'UNKNOWN_NAME'}\n"
            )
        return "DSET VALID FLUSHED             CUR NAME\n" + "".join(rows)

    # --- updates ----------------------------------------------------------------------------

    def set_current(self, name: str) -> bool:
        tree = self.read_tree()
        if not _set_current(tree, name):
            return False
        self._write(tree)
        return True

    def add(
        self,
        desc: DatasetDescriptor,
        complete: bool,
        flushed_time: float | str | None = None,
        from_flush: bool = False,
    ) -> None:
        if desc.name is None:
            raise ValueError(f"dataset {desc.id} has no name; the index is keyed by name")
        tree = self.read_tree()
        name = desc.name
        _remove(tree, name)
        # scr_index_set_dataset: the descriptor is copied with kvtree_merge (order reversed)
        entry = _dset(tree, desc.id)
        copy = KVTree()
        copy.merge(desc.to_tree())
        entry.set(KEY_DSET, copy)
        entry.set_int(KEY_COMPLETE, int(bool(complete)))
        _set_directory(tree, name, desc.id)
        # scr_index_mark_flushed
        _dset(tree, desc.id).set_value(KEY_FLUSHED, timestamp(flushed_time))
        _set_directory(tree, name, desc.id)
        if from_flush:
            _dset(tree, desc.id).unset(KEY_FAILED)  # scr_index_clear_failed
            _set_directory(tree, name, desc.id)
            if desc.is_ckpt:
                _set_current(tree, name)
        self._write(tree)

    def mark_incomplete(self, desc: DatasetDescriptor) -> None:
        if desc.name is None:
            raise ValueError(f"dataset {desc.id} has no name; the index is keyed by name")
        tree = self.read_tree()
        _remove(tree, desc.name)
        entry = _dset(tree, desc.id)
        copy = KVTree()
        copy.merge(desc.to_tree())
        entry.set(KEY_DSET, copy)
        entry.set_int(KEY_COMPLETE, 0)
        _set_directory(tree, desc.name, desc.id)
        self._write(tree)

    def _stamp(self, name: str, key: str, when: float | str | None, multi: bool) -> bool:
        tree = self.read_tree()
        dataset_id = _id_by_name(tree, name)
        if dataset_id is None:
            return False
        entry = _dset(tree, dataset_id)
        if multi:
            entry.add_value(key, timestamp(when))  # FETCHED keeps one value per fetch
        else:
            entry.set_value(key, timestamp(when))
        _set_directory(tree, name, dataset_id)
        self._write(tree)
        return True

    def mark_failed(self, name: str, when: float | str | None = None) -> bool:
        return self._stamp(name, KEY_FAILED, when, multi=False)

    def mark_fetched(self, name: str, when: float | str | None = None) -> bool:
        return self._stamp(name, KEY_FETCHED, when, multi=True)

    def drop(self, name: str) -> bool:
        tree = self.read_tree()
        if not _remove(tree, name):
            return False
        self._write(tree)
        return True

    def drop_after(self, name: str) -> bool:
        """Drop every dataset whose id is greater than *name*'s (checkpoints and outputs alike)."""
        tree = self.read_tree()
        target = _id_by_name(tree, name)
        if target is None:
            return False
        # ascending, like scr_index_remove_later, so that a dropped CURRENT never moves to
        # a dataset that is about to be dropped as well
        for dataset_id in int_keys(tree.get(KEY_DSET)):
            if dataset_id <= target:
                continue
            datasets = tree.get(KEY_DSET)
            entry = None if datasets is None else datasets.get(str(dataset_id))
            later = None if entry is None else _desc_name(entry)
            if later is not None:
                _remove(tree, later)
        self._write(tree)
        return True
