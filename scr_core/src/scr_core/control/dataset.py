"""SCR's dataset descriptor, as stored under ``DSET`` (index, summary) and ``DSETDESC``.

``DSETDESC`` is used in the flush file, the filemap and the cache index. The keys and
encodings are in kvtree.md §5.5 and ``scr_dataset.c``.

Public API
----------
``DatasetDescriptor(id, name=None, user=None, jobname=None, jobid=None, cluster=None,
ckpt=None, size=None, files=None, created=None, complete=None, flag_ckpt=None,
flag_output=None)``
    One field per key. A field left as None is omitted from the tree.
``DatasetDescriptor.to_tree() -> KVTree``
    Builds the tree in libscr's order of calls: ``scr_start_output`` sets ID, NAME,
    FLAG_CKPT, FLAG_OUTPUT, CREATED, USER, JOBNAME, JOBID, CLUSTER, CKPT;
    ``scr_complete_output`` then sets FILES, SIZE, COMPLETE. Each one is inserted at the
    front.
``DatasetDescriptor.from_tree(tree, where="dataset descriptor") -> DatasetDescriptor``
    Decodes with C's getters. It raises ``ControlFileError`` (naming *where*) if ID is
    missing.
``DatasetDescriptor.is_ckpt`` / ``is_output``
    ``scr_dataset_is_ckpt`` / ``_is_output``: the flag is set and not 0.

Encodings: ID, FLAG_*, CKPT, FILES and COMPLETE are ``%d``; CREATED is ``%lld``
microseconds since the epoch; SIZE is ``%lu``; the rest are strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from scr_core.control.limits import MAX_SIZE
from scr_core.errors import ControlFileError
from scr_core.kvtree import KVTree

__all__ = ["DatasetDescriptor"]

KEY_ID = "ID"
KEY_NAME = "NAME"
KEY_FLAG_CKPT = "FLAG_CKPT"
KEY_FLAG_OUTPUT = "FLAG_OUTPUT"
KEY_CREATED = "CREATED"
KEY_USER = "USER"
KEY_JOBNAME = "JOBNAME"
KEY_JOBID = "JOBID"
KEY_CLUSTER = "CLUSTER"
KEY_CKPT = "CKPT"
KEY_FILES = "FILES"
KEY_SIZE = "SIZE"
KEY_COMPLETE = "COMPLETE"


def _flag(value: int | None) -> bool | None:
    return None if value is None else value != 0


@dataclass
class DatasetDescriptor:
    id: int
    name: str | None = None
    user: str | None = None
    jobname: str | None = None
    jobid: str | None = None
    cluster: str | None = None
    ckpt: int | None = None
    size: int | None = None
    files: int | None = None
    created: int | None = None  # microseconds since the epoch
    complete: bool | None = None
    flag_ckpt: bool | None = None
    flag_output: bool | None = None

    @property
    def is_ckpt(self) -> bool:
        return bool(self.flag_ckpt)

    @property
    def is_output(self) -> bool:
        return bool(self.flag_output)

    def to_tree(self) -> KVTree:
        tree = KVTree()
        # Same order of calls as libscr, so the bytes match what it would write.
        tree.set_int(KEY_ID, self.id)
        if self.name is not None:
            tree.set_value(KEY_NAME, self.name)
        if self.flag_ckpt is not None:
            tree.set_int(KEY_FLAG_CKPT, int(self.flag_ckpt))
        if self.flag_output is not None:
            tree.set_int(KEY_FLAG_OUTPUT, int(self.flag_output))
        if self.created is not None:
            tree.set_int64(KEY_CREATED, self.created)
        for key, text in (
            (KEY_USER, self.user),
            (KEY_JOBNAME, self.jobname),
            (KEY_JOBID, self.jobid),
            (KEY_CLUSTER, self.cluster),
        ):
            if text is not None:
                tree.set_value(key, text)
        if self.ckpt is not None:
            tree.set_int(KEY_CKPT, self.ckpt)
        if self.files is not None:
            tree.set_int(KEY_FILES, self.files)
        if self.size is not None:
            tree.set_bytecount(KEY_SIZE, self.size)
        if self.complete is not None:
            tree.set_int(KEY_COMPLETE, int(self.complete))
        return tree

    @classmethod
    def from_tree(cls, tree: KVTree, where: str = "dataset descriptor") -> DatasetDescriptor:
        ident = tree.get_int(KEY_ID)
        if ident is None:
            raise ControlFileError(f"{where}: dataset descriptor has no {KEY_ID}")
        files, size = tree.get_int(KEY_FILES), tree.get_bytecount(KEY_SIZE)
        # what a descriptor may claim: FILES is a C int count, SIZE an off_t
        if files is not None and not 0 <= files < 1 << 31:
            raise ControlFileError(f"{where}: {KEY_FILES} {files} is not a file count")
        if size is not None and size > MAX_SIZE:
            raise ControlFileError(f"{where}: {KEY_SIZE} {size} is beyond any dataset size")
        return cls(
            id=ident,
            name=tree.value(KEY_NAME),
            user=tree.value(KEY_USER),
            jobname=tree.value(KEY_JOBNAME),
            jobid=tree.value(KEY_JOBID),
            cluster=tree.value(KEY_CLUSTER),
            ckpt=tree.get_int(KEY_CKPT),
            size=size,
            files=files,
            created=tree.get_int64(KEY_CREATED),
            complete=_flag(tree.get_int(KEY_COMPLETE)),
            flag_ckpt=_flag(tree.get_int(KEY_FLAG_CKPT)),
            flag_output=_flag(tree.get_int(KEY_FLAG_OUTPUT)),
        )
