"""Test helper: the copy agent, stopping itself (SIGSTOP) once it has written
``$SCR_TEST_STOP_AFTER`` chunks into part files: "mid-copy", deterministically.

Run as ``python tests/agent_stopper.py [-m scr_core.copy_agent] ARGS``; a shell wrapper
around it serves as ``SCR_AGENT_PYTHON``. Each process (the agent, each forked worker)
counts its own chunks and stops once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from scr_core import copy_agent

LIMIT = int(os.environ.get("SCR_TEST_STOP_AFTER", "0"))
_count = [0]
_write_all = copy_agent._write_all


def _write_all_then_stop(fd: int, view: memoryview) -> None:
    _write_all(fd, view)
    _count[0] += 1
    if _count[0] == LIMIT:
        # to this very thread: a process-directed SIGSTOP sent from a thread other than
        # the main one let the copy go on for megabytes before the process stopped
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


copy_agent._write_all = _write_all_then_stop

if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:2] == ["-m", "scr_core.copy_agent"]:
        args = args[2:]
    sys.exit(copy_agent.main(args))
