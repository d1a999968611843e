"""Batch jobs over any resource manager: the Pavilion-style scheduler API.

See :mod:`scr_core.batch.scheduler`. The pure parts (chunking, auto-size, state helpers) take
plain lists and :class:`~scr_core.interfaces.NodeInfo` records so they are testable without a
cluster; the rest calls the optional methods of a
:class:`~scr_core.interfaces.ResourceManager` (``submit``, ``status``, ``cancel``,
``node_inventory``).
"""

from __future__ import annotations

from .scheduler import (
    NODE_SELECTIONS,
    WaitTimeout,
    allocation_nodes,
    auto_size,
    available,
    begin_header_lines,
    cancel,
    chunk_nodes,
    features,
    inventory,
    is_final,
    kickoff,
    make_request,
    partition_chunks,
    partition_summary,
    record_from_dict,
    record_to_dict,
    scr_command,
    status,
    status_to_dict,
    submit,
    usable_nodes,
    wait,
)

__all__ = [
    "NODE_SELECTIONS",
    "WaitTimeout",
    "allocation_nodes",
    "auto_size",
    "available",
    "begin_header_lines",
    "cancel",
    "chunk_nodes",
    "features",
    "inventory",
    "is_final",
    "kickoff",
    "make_request",
    "partition_chunks",
    "partition_summary",
    "record_from_dict",
    "record_to_dict",
    "scr_command",
    "status",
    "status_to_dict",
    "submit",
    "usable_nodes",
    "wait",
]
