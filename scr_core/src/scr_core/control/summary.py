"""Per-dataset files in ``<prefix>/.scr/scr.dataset.<id>/``: ``summary.scr`` and ``rank2file``.

Layouts (kvtree.md §5.6)::

    summary.scr:            VERSION -> 6
                            COMPLETE -> 0 | 1
                            DSET -> <dataset descriptor>

    rank2file (root):       LEVEL -> 1
                            RANKS -> <nranks>
                            RANK -> <writer> -> FILE -> .0.<writer>
                                                OFFSET -> 0
    rank2file.0.<writer>:   LEVEL -> 0
                            RANKS -> <nranks>
                            RANK -> <rank> -> FILE -> <path relative to prefix>   (multi-valued)

``<writer>`` is the first rank stored in that part. The rank2file writer does what
KVTree's serial ``kvtree_write_to_gather`` does, call for call. It stores up to
*per_part* ranks per part file (8192 in C) and gives every rank ``0 .. ranks-1`` an
entry, even one with no files.

Public API
----------
``Summary(complete, dataset, version=6)``
    A decoded summary file.
``write_summary(dataset_dir, desc, complete) -> None``
    As ``scr_flush_summary_file`` (written atomically here).
``read_summary(dataset_dir) -> Summary | None``
    None if there is no summary file. A VERSION other than 6 raises
    ``ControlFileError``: the old version-5 layout is not supported.
``Rank2File(ranks, files)``
    *files* maps rank to a list of paths.
``write_rank2file(dataset_dir, files, ranks, per_part=8192) -> None``
    *files* is ``{rank: [paths relative to the prefix]}``.
``read_rank2file(dataset_dir) -> Rank2File | None``
    None if there is no root file. Reads the parts that the root names. Raises
    ``ControlFileError`` if a part is missing, a LEVEL is wrong, or the ranks found
    do not add up to RANKS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scr_core import kvtree
from scr_core.control._common import int_keys, read_or_empty, write_tree
from scr_core.control.dataset import DatasetDescriptor
from scr_core.control.limits import MAX_RANKS
from scr_core.control.paths import PathLike
from scr_core.errors import ControlFileError
from scr_core.kvtree import KVTree

__all__ = [
    "SUMMARY_VERSION",
    "Rank2File",
    "Summary",
    "read_rank2file",
    "read_summary",
    "write_rank2file",
    "write_summary",
]

SUMMARY_VERSION = 6
SUMMARY_NAME = "summary.scr"
RANK2FILE_NAME = "rank2file"
ENTRIES_PER_PART = 8192

KEY_VERSION = "VERSION"
KEY_COMPLETE = "COMPLETE"
KEY_DSET = "DSET"
KEY_LEVEL = "LEVEL"
KEY_RANKS = "RANKS"
KEY_RANK = "RANK"
KEY_FILE = "FILE"
KEY_OFFSET = "OFFSET"


@dataclass
class Summary:
    complete: bool
    dataset: DatasetDescriptor | None
    version: int = SUMMARY_VERSION


@dataclass
class Rank2File:
    ranks: int
    files: dict[int, list[str]] = field(default_factory=dict)


def write_summary(dataset_dir: PathLike, desc: DatasetDescriptor, complete: bool) -> None:
    tree = KVTree()
    tree.set_int(KEY_VERSION, SUMMARY_VERSION)
    tree.set_int(KEY_COMPLETE, int(bool(complete)))
    copy = KVTree()
    copy.merge(desc.to_tree())  # libscr copies with kvtree_merge (reversed order)
    tree.set(KEY_DSET, copy)
    write_tree(Path(dataset_dir) / SUMMARY_NAME, tree)


def read_summary(dataset_dir: PathLike) -> Summary | None:
    path = Path(dataset_dir) / SUMMARY_NAME
    tree, existed = read_or_empty(path)
    if not existed:
        return None
    version = tree.get_int(KEY_VERSION)
    if version != SUMMARY_VERSION:
        raise ControlFileError(
            f"{path}: summary file version {version}, expected {SUMMARY_VERSION}"
        )
    complete = tree.get_int(KEY_COMPLETE)
    if complete is None:
        raise ControlFileError(f"{path}: summary file has no {KEY_COMPLETE}")
    desc_tree = tree.get(KEY_DSET)
    desc = None if desc_tree is None else DatasetDescriptor.from_tree(desc_tree, f"{path}: DSET")
    return Summary(complete=complete == 1, dataset=desc, version=version)


def write_rank2file(
    dataset_dir: PathLike,
    files: Mapping[int, Sequence[str]],
    ranks: int,
    per_part: int = ENTRIES_PER_PART,
) -> None:
    if per_part < 1:
        raise ValueError(f"per_part must be at least 1, not {per_part}")
    bad = sorted(r for r in files if not 0 <= r < ranks)
    if bad:
        raise ValueError(f"ranks {bad} are outside 0..{ranks - 1}")
    root_path = Path(dataset_dir) / RANK2FILE_NAME
    root = KVTree()
    root.add_value(KEY_LEVEL, 1)
    for writer in range(0, ranks, per_part):
        part = KVTree()
        part.add_value(KEY_LEVEL, 0)
        part.add_value(KEY_RANKS, ranks)
        for rank in range(writer, min(writer + per_part, ranks)):
            data = KVTree()  # what the rank contributed: FILE -> each path
            for path in files.get(rank, ()):
                data.add_value(KEY_FILE, path)
            part.add_value(KEY_RANK, rank).merge(data)
        write_tree(f"{root_path}.0.{writer}", part)
        entry = root.add_value(KEY_RANK, writer)
        entry.set_value(KEY_FILE, f".0.{writer}")
        entry.set_bytecount(KEY_OFFSET, 0)
    root.add_value(KEY_RANKS, ranks)
    write_tree(root_path, root)


def read_rank2file(dataset_dir: PathLike) -> Rank2File | None:
    root_path = Path(dataset_dir) / RANK2FILE_NAME
    root, existed = read_or_empty(root_path)
    if not existed:
        return None
    if root.get_unsigned(KEY_LEVEL) != 1:
        raise ControlFileError(f"{root_path}: rank2file root must have {KEY_LEVEL} 1")
    ranks = root.get_unsigned(KEY_RANKS)
    if ranks is None:
        raise ControlFileError(f"{root_path}: rank2file root has no {KEY_RANKS}")
    if ranks > MAX_RANKS:
        raise ControlFileError(f"{root_path}: RANKS {ranks} is beyond {MAX_RANKS}")
    result = Rank2File(ranks=ranks)
    writers = root.get(KEY_RANK) or KVTree()
    for writer in int_keys(writers):
        suffix = writers[str(writer)].value(KEY_FILE)
        # the part's name is the root's name plus this suffix; refuse anything that could
        # point elsewhere
        if not suffix or os.sep in suffix or not suffix.startswith("."):
            raise ControlFileError(
                f"{root_path}: RANK/{writer}/FILE is {suffix!r}, expected '.0.<writer>'"
            )
        part_path = f"{root_path}{suffix}"
        try:
            part = kvtree.read(part_path)
        except FileNotFoundError as exc:
            raise ControlFileError(
                f"{part_path}: rank2file part named by {root_path} is missing"
            ) from exc
        if part.get_unsigned(KEY_LEVEL) != 0:
            raise ControlFileError(f"{part_path}: rank2file part must have {KEY_LEVEL} 0")
        rank_tree = part.get(KEY_RANK) or KVTree()
        for rank in int_keys(rank_tree):
            if rank >= ranks or rank in result.files:
                raise ControlFileError(f"{part_path}: unexpected or repeated rank {rank}")
            result.files[rank] = rank_tree[str(rank)].values(KEY_FILE)
    if len(result.files) != ranks:
        raise ControlFileError(
            f"{root_path}: found entries for {len(result.files)} ranks, RANKS says {ranks}"
        )
    return result
