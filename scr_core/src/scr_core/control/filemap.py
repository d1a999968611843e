"""Cache filemaps ``<cache dataset dir>/.scr/filemap_<rank>``: the files one rank wrote.

Layout (kvtree.md §5.6, ``scr_filemap.c``, ``scr_meta.c``)::

    FILE
      <cache file path>
        META
          COMPLETE -> 0|1        RANKS -> n        RANK -> r        CKPT -> id
          ORIG -> <path the application gave>   PATH -> <absolute directory>
          NAME -> <basename>     SIZE -> bytes     CRC -> 0x... (only with CRC on)
          MODE, UID, GID, ATIME_SECS, ATIME_NSECS, CTIME_SECS, CTIME_NSECS,
          MTIME_SECS, MTIME_NSECS                  (unsigned long)
    DSETDESC -> <dataset descriptor>

Scavenge reads these to find the cache files of a dataset and where each one goes on the
PFS (``PATH/NAME``), and to check it (``COMPLETE``, ``SIZE``, ``CRC``).

Public API
----------
``FileMeta(...)``
    One field per META key, None when absent.
    ``FileMeta.to_tree()`` / ``FileMeta.from_tree(tree)`` convert it.
    ``FileMeta.destination`` is ``PATH/NAME``.
``Filemap(files={cache path: FileMeta | None}, dataset=None)``
    *files* keeps file order; a file without META maps to None.
``read_filemap(path) -> Filemap``
    ``FileNotFoundError`` if missing, ``ControlFileError`` if corrupt, including META
    values no real filemap holds (``control.limits.meta_bounds_problem``: RANKS beyond 2^24,
    a SIZE beyond an off_t, ...).
``write_filemap(path, filemap) -> None``
    Atomic. Each file is added with ``kvtree_set_kv``; META and DSETDESC are copied with
    ``kvtree_merge``, as libscr does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from scr_core import kvtree
from scr_core.control._common import write_tree
from scr_core.control.dataset import DatasetDescriptor
from scr_core.control.limits import meta_bounds_problem
from scr_core.control.paths import PathLike
from scr_core.errors import ControlFileError
from scr_core.kvtree import KVTree

__all__ = ["FileMeta", "Filemap", "read_filemap", "write_filemap"]

KEY_FILE = "FILE"
KEY_META = "META"
KEY_DSETDESC = "DSETDESC"

# (attribute, key, encoding) in the order written; "int" is %d, "ulong" is %lu,
# "crc" is %#x, "str" is a plain value
_META_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("complete", "COMPLETE", "int"),
    ("ranks", "RANKS", "int"),
    ("rank", "RANK", "int"),
    ("ckpt", "CKPT", "int"),
    ("orig", "ORIG", "str"),
    ("path", "PATH", "str"),
    ("name", "NAME", "str"),
    ("size", "SIZE", "ulong"),
    ("mode", "MODE", "ulong"),
    ("uid", "UID", "ulong"),
    ("gid", "GID", "ulong"),
    ("atime_secs", "ATIME_SECS", "ulong"),
    ("atime_nsecs", "ATIME_NSECS", "ulong"),
    ("ctime_secs", "CTIME_SECS", "ulong"),
    ("ctime_nsecs", "CTIME_NSECS", "ulong"),
    ("mtime_secs", "MTIME_SECS", "ulong"),
    ("mtime_nsecs", "MTIME_NSECS", "ulong"),
    ("crc", "CRC", "crc"),
)


@dataclass
class FileMeta:
    complete: bool | None = None
    ranks: int | None = None
    rank: int | None = None
    ckpt: int | None = None
    orig: str | None = None
    path: str | None = None
    name: str | None = None
    size: int | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    atime_secs: int | None = None
    atime_nsecs: int | None = None
    ctime_secs: int | None = None
    ctime_nsecs: int | None = None
    mtime_secs: int | None = None
    mtime_nsecs: int | None = None
    crc: int | None = None

    @property
    def destination(self) -> str | None:
        """Where the file belongs on the PFS: ``PATH/NAME``, or None if either is unknown."""
        if self.path is None or self.name is None:
            return None
        return os.path.join(self.path, self.name)

    def to_tree(self) -> KVTree:
        tree = KVTree()
        for attr, key, kind in _META_FIELDS:
            value = getattr(self, attr)
            if value is None:
                continue
            if kind == "int":
                tree.set_int(key, int(value))
            elif kind == "ulong":
                tree.set_unsigned(key, value)
            elif kind == "crc":
                tree.set_crc32(key, value)
            else:
                tree.set_value(key, value)
        return tree

    @classmethod
    def from_tree(cls, tree: KVTree) -> FileMeta:
        values: dict[str, object] = {}
        for attr, key, kind in _META_FIELDS:
            if kind == "int":
                number = tree.get_int(key)
                if attr == "complete" and number is not None:
                    values[attr] = number == 1  # scr_meta_is_complete: exactly 1
                else:
                    values[attr] = number
            elif kind == "str":
                values[attr] = tree.value(key)
            else:
                values[attr] = tree.get_unsigned(key)
        crc = values["crc"]
        if isinstance(crc, int):
            values["crc"] = crc & 0xFFFFFFFF
        return cls(**values)  # type: ignore[arg-type]


assert [f.name for f in fields(FileMeta)] == [a for a, _, _ in _META_FIELDS]


@dataclass
class Filemap:
    files: dict[str, FileMeta | None] = field(default_factory=dict)
    dataset: DatasetDescriptor | None = None


def read_filemap(path: PathLike) -> Filemap:
    tree = kvtree.read(path)
    result = Filemap()
    files = tree.get(KEY_FILE)
    for name, sub in [] if files is None else files.items():
        meta = sub.get(KEY_META)
        info = None if meta is None else FileMeta.from_tree(meta)
        if info is not None:
            problem = meta_bounds_problem(
                info.size, info.ranks, info.rank,
                secs=(info.atime_secs, info.ctime_secs, info.mtime_secs),
                nsecs=(info.atime_nsecs, info.ctime_nsecs, info.mtime_nsecs))
            if problem:
                raise ControlFileError(f"{os.fspath(path)}: FILE {name}: {problem}")
        result.files[name] = info
    desc = tree.get(KEY_DSETDESC)
    if desc is not None:
        result.dataset = DatasetDescriptor.from_tree(desc, f"{os.fspath(path)}: DSETDESC")
    return result


def write_filemap(path: PathLike, filemap: Filemap) -> None:
    tree = KVTree()
    for name, meta in filemap.files.items():
        entry = tree.add_value(KEY_FILE, name)  # scr_filemap_add_file
        if meta is not None:
            copy = KVTree()
            copy.merge(meta.to_tree())  # scr_meta_copy uses kvtree_merge
            entry.set(KEY_META, copy)
    if filemap.dataset is not None:
        copy = KVTree()
        copy.merge(filemap.dataset.to_tree())  # scr_filemap_set_dataset
        tree.set(KEY_DSETDESC, copy)
    write_tree(path, tree)
