"""Small helpers shared by the control-file modules (private)."""

from __future__ import annotations

import os
import re
import time

from scr_core import kvtree
from scr_core.control.paths import SMALL_FILE_MAX  # noqa: F401  (re-exported)
from scr_core.kvtree import KVTree

# what C's %d writes: no "-0", no leading zeros (a "-0" key was read as 0 and then looked
# up as "0": KeyError in every reader)
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*", re.ASCII)


def read_or_empty(path: str | os.PathLike[str],
                  max_size: int = kvtree.MAX_FILE_SIZE) -> tuple[KVTree, bool]:
    """Read *path*; a missing file is an empty tree. Returns (tree, existed)."""
    try:
        return kvtree.read(path, max_size), True
    except FileNotFoundError:
        return KVTree(), False


def parse_id(key: str) -> int | None:
    """A dataset/rank key as written by C ``%d``; None for anything else.

    C looks such keys up again by formatting the id with ``%d`` (``kvtree_get_kv_int``), so a
    key like ``05`` or ``x`` can never be found by id: skipping it matches C.
    """
    return int(key) if _CANONICAL_INT.fullmatch(key) else None


def int_keys(tree: KVTree | None) -> list[int]:
    """The canonical integer keys of *tree*, ascending."""
    if tree is None:
        return []
    ids = (parse_id(key) for key in tree)
    return sorted(i for i in ids if i is not None)


def timestamp(when: float | str | None = None) -> str:
    """SCR's ``strftime("%Y-%m-%dT%H:%M:%S", localtime(t))``; *when* defaults to now.

    A str is taken as already formatted.
    """
    if isinstance(when, str):
        return when
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() if when is None else when))


def write_tree(path: str | os.PathLike[str], tree: KVTree) -> None:
    """Atomic write; creates the file's directory (e.g. ``<prefix>/.scr``) but not its parents."""
    parent = os.path.dirname(os.fspath(path))
    if parent:
        try:
            os.mkdir(parent)
        except FileExistsError:
            pass
        except OSError:
            pass  # kvtree.write reports the problem with the file name
    kvtree.write(path, tree)
