"""A job step of the local backend dies with the process that launched it, even by SIGKILL.

The tasks of a step run in process groups of their own (one per virtual node: the unit
``scr local crash`` kills), so nothing the kernel does on the launcher's death reaches
them, and ``PR_SET_PDEATHSIG`` would reach only a task's first process (not what it
forks), and fires when the launching *thread* ends. Instead, the first launch in a process
starts a *lifeline* for the allocation: a small process in its own session that holds the
read end of a pipe whose write end only the launching process holds (not inherited: pipes
are close-on-exec). When that process ends, however it ends, the read returns EOF and the
lifeline stops the task groups it registered (SIGTERM, SIGKILL after a grace period,
:meth:`LocalAllocation.stop_tasks`) and, for an allocation the process made for itself
(``scr run local`` without one), removes the allocation. After a normal end there is
nothing left to do.

    python -m scr_core.local.lifeline FD ALLOCATION_DIR OWNER_PID [--remove]
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from typing import Sequence

_started: dict = {}  # allocation path -> (write end, lifeline process), for this process


def ensure(alloc_path: str, remove: bool = False) -> None:
    """Start this process's lifeline for the allocation at ``alloc_path`` (once);
    ``remove``: remove the allocation too when this process is gone."""
    path = os.path.abspath(alloc_path)
    if path in _started:
        return
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-m", "scr_core.local.lifeline", str(read_end), path,
            str(os.getpid())] + (["--remove"] if remove else [])
    try:
        proc = subprocess.Popen(argv, pass_fds=(read_end,), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError:
        os.close(write_end)
        return  # the stale-allocation sweep remains
    finally:
        os.close(read_end)
    _started[path] = (write_end, proc)


def main(argv: Sequence[str]) -> int:
    fd, path, owner = int(argv[0]), argv[1], int(argv[2])
    remove = "--remove" in argv[3:]
    for sig in (signal.SIGHUP, signal.SIGINT):  # the owner's terminal is not ours
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    from ..errors import ScrError
    from .allocation import LocalAllocation

    try:
        alloc = LocalAllocation(path)
    except (ScrError, KeyError, TypeError, ValueError):
        return 0  # already cleaned up by its owner
    alloc.stop_tasks(owner=None if remove else owner)
    if remove:
        shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
