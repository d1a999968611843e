"""The cache index ``<control dir>/cindex.scrinfo``: which datasets a node holds in cache.

The control directory is ``<SCR_CNTL_BASE>/<user>/scr.<jobid>``. Layout (kvtree.md §5.6,
``scr_cache_index.c``)::

    CURRENT -> <dataset name>
    DSET
      <id>
        DSETDESC -> <dataset descriptor>
        PATH     -> <cache directory of the dataset>
        BYPASS   -> 0 | 1                (1: written straight to the prefix, not cached)

Public API
----------
``CacheDataset(dataset=None, path=None, bypass=None)``
    One ``DSET/<id>`` record.
``CacheIndex(current=None, datasets={id: CacheDataset})``
    *datasets* is in ascending id order when read.
``read_cindex(path) -> CacheIndex``
    A missing file is an empty index, as for libscr. A corrupt one raises
    ``ControlFileError``. Pass ``paths.cindex_path(cntl_dir)``.
``write_cindex(path, cindex) -> None``
    Atomic. For each dataset, in order, it sets DSETDESC (copied with ``kvtree_merge``),
    PATH and BYPASS, the way the ``scr_cache_index_set_*`` calls do; then CURRENT.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from scr_core.control._common import int_keys, read_or_empty, write_tree
from scr_core.control.dataset import DatasetDescriptor
from scr_core.control.paths import PathLike
from scr_core.kvtree import KVTree

__all__ = ["CacheDataset", "CacheIndex", "read_cindex", "write_cindex"]

KEY_CURRENT = "CURRENT"
KEY_DSET = "DSET"
KEY_DSETDESC = "DSETDESC"
KEY_PATH = "PATH"
KEY_BYPASS = "BYPASS"


@dataclass
class CacheDataset:
    dataset: DatasetDescriptor | None = None
    path: str | None = None
    bypass: bool | None = None


@dataclass
class CacheIndex:
    current: str | None = None
    datasets: dict[int, CacheDataset] = field(default_factory=dict)


def read_cindex(path: PathLike) -> CacheIndex:
    tree, _ = read_or_empty(path)
    result = CacheIndex(current=tree.value(KEY_CURRENT))
    datasets = tree.get(KEY_DSET) or KVTree()
    for dataset_id in int_keys(datasets):
        entry = datasets[str(dataset_id)]
        desc_tree = entry.get(KEY_DSETDESC)
        bypass = entry.get_int(KEY_BYPASS)
        result.datasets[dataset_id] = CacheDataset(
            dataset=None
            if desc_tree is None
            else DatasetDescriptor.from_tree(
                desc_tree, f"{os.fspath(path)}: DSET/{dataset_id}/DSETDESC"
            ),
            path=entry.value(KEY_PATH),
            bypass=None if bypass is None else bypass != 0,
        )
    return result


def write_cindex(path: PathLike, cindex: CacheIndex) -> None:
    tree = KVTree()
    for dataset_id, record in cindex.datasets.items():
        entry = tree.add_value(KEY_DSET, int(dataset_id))
        if record.dataset is not None:
            copy = KVTree()
            copy.merge(record.dataset.to_tree())
            entry.set(KEY_DSETDESC, copy)
        if record.path is not None:
            entry.set_value(KEY_PATH, record.path)
        if record.bypass is not None:
            entry.set_int(KEY_BYPASS, int(record.bypass))
    if cindex.current is not None:
        tree.set_value(KEY_CURRENT, cindex.current)
    write_tree(path, tree)
