"""The nodes file ``<prefix>/.scr/nodes.scr``: node count of the last run (kvtree.md §5.3).

Layout: ``NODES -> <n>`` (``%d``). libscr rank 0 writes it at ``SCR_Init`` and
``scr_prerun`` deletes it.

Public API
----------
``read_nodes(prefix) -> int | None``
    The NODES value, or None if the file or the key is missing. This is the same result
    as ``scr_nodes_file``, which prints 0 and exits 1 in that case. The value is read like
    the C tool: exactly one value, converted with ``atoi``. A corrupt file raises
    ``ControlFileError``.
``write_nodes(prefix, n) -> None``
    Writes ``NODES = n`` atomically, as libscr's ``kvtree_util_set_int`` does.
"""

from __future__ import annotations

from scr_core.control._common import SMALL_FILE_MAX, read_or_empty, write_tree
from scr_core.control.paths import PathLike, nodes_path
from scr_core.kvtree import KVTree, c_atoi

__all__ = ["read_nodes", "write_nodes"]

KEY_NODES = "NODES"


def read_nodes(prefix: PathLike) -> int | None:
    tree, _ = read_or_empty(nodes_path(prefix), SMALL_FILE_MAX)
    text = tree.value(KEY_NODES)  # scr_nodes_file uses kvtree_util_get_str
    return None if text is None else c_atoi(text)


def write_nodes(prefix: PathLike, n: int) -> None:
    tree = KVTree()
    tree.set_int(KEY_NODES, n)
    write_tree(nodes_path(prefix), tree)
