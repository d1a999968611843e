"""What a control file may claim (issue 16): bounds beyond which a value is corrupt or
hostile, never obeyed (a 2^31 set, an OverflowError in a system call).

SCR's ranks are MPI ranks of one job, far below 2^24; a file or dataset size is an
``off_t``; file times in nanoseconds fit 64 bits. Used by the copy agent, the batch
node's verification (:mod:`scr_core.engine.scavenge`), ``read_filemap``, the dataset
descriptor and ``read_rank2file``. Imports nothing: the copy agent's start-up stays small.
"""

from __future__ import annotations

from typing import Sequence

MAX_RANKS = 1 << 24
MAX_SIZE = (1 << 63) - 1
MAX_SECS = (1 << 63) // 10**9 - 1
MAX_NSECS = 10**9 - 1


def meta_bounds_problem(size: int | None = None, ranks: int | None = None,
                        rank: int | None = None, secs: Sequence[int | None] = (),
                        nsecs: Sequence[int | None] = ()) -> str | None:
    """Why these META values cannot be true (None when they can): the one check of what a
    filemap claims, used by the agent and the batch node's verification."""
    if size is not None and size > MAX_SIZE:
        return f"corrupt filemap: META SIZE {size} is beyond {MAX_SIZE}"
    if ranks is not None and not 1 <= ranks <= MAX_RANKS:
        return f"corrupt filemap: META RANKS {ranks} is not in 1..{MAX_RANKS}"
    if rank is not None and not 0 <= rank < (ranks or MAX_RANKS):
        return f"corrupt filemap: META RANK {rank} is not in 0..{(ranks or MAX_RANKS) - 1}"
    for value in secs:
        if value is not None and value > MAX_SECS:
            return f"corrupt filemap: a META time of {value} s is beyond {MAX_SECS}"
    for value in nsecs:
        if value is not None and value > MAX_NSECS:
            return f"corrupt filemap: a META time of {value} ns is beyond {MAX_NSECS}"
    return None
