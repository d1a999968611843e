"""Running a resource manager's client commands and launcher processes, for plugin authors.

Argv lists only (never a shell string), a timeout on every query, and failures raised as the
plugin's own :class:`~scr_core.errors.ScrError` subclass with the cause chained, so the CLI
prints one line and exits with that error's documented code. The LSF and Flux plugins use
these as they are; Slurm's plugin wraps the same ideas with its own environment rules.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator, Mapping, Optional, Sequence

from .errors import ScrError


def run_client(
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
    error: type[ScrError],
    *,
    stdin_text: Optional[str] = None,
    not_found_hint: str = "",
) -> subprocess.CompletedProcess:
    """Run ``argv`` to completion and capture its output as text.

    A missing command, a timeout or an OS error raises ``error`` (``not_found_hint`` is
    added to the "command not found" message, e.g. ``"is LSF in PATH?"``); a timeout is
    marked transient and a missing command not (the core retries queries that raise a
    transient error: :mod:`scr_core.rm_retry`). A non-zero exit
    is returned, not raised: the clients of LSF and Flux print partial results for the ids
    they know and an error for the others, and only the caller can tell which matters."""
    try:
        return subprocess.run(
            list(argv), env=dict(env), input=stdin_text,
            stdin=None if stdin_text is not None else subprocess.DEVNULL,
            capture_output=True, text=True, encoding="utf-8", errors="replace",
            timeout=timeout, check=False)
    except FileNotFoundError as exc:
        hint = f" ({not_found_hint})" if not_found_hint else ""
        missing = error(f"{argv[0]}: command not found{hint}")
        missing.transient = False  # trying again cannot help (scr_core.rm_retry)
        raise missing from exc
    except subprocess.TimeoutExpired as exc:
        slow = error(f"{' '.join(argv[:3])}: no answer within {timeout:g} s")
        slow.transient = True  # a busy controller may answer the next time
        raise slow from exc
    except OSError as exc:
        raise error(f"{argv[0]}: cannot run: {exc}") from exc


def describe_failure(cp: subprocess.CompletedProcess) -> str:
    """One-line description of a failed command for error messages: its exit code and the
    last line it printed on stderr (else stdout)."""
    text = (cp.stderr or cp.stdout or "").strip().splitlines()
    return f"exit {cp.returncode}" + (f": {text[-1]}" if text else "")


def signal_process(proc: subprocess.Popen, sig: int) -> None:
    """Signal a launcher process itself, ignoring one that has already gone. Launchers stay
    in our process group (so a terminal's Ctrl-C and stdin reach them as without scr) and
    forward signals to their tasks, as srun, jsrun, lrun and flux job attach do."""
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def stop_process(proc: subprocess.Popen, grace: float, tree: bool = False) -> None:
    """SIGTERM a launcher, SIGKILL it after ``grace`` seconds; returns once it is reaped.
    With ``tree``, the SIGKILL goes to what it started too (:func:`kill_process_tree`)."""
    if proc.poll() is not None:
        return
    signal_process(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        if tree:
            kill_process_tree(proc)
        else:
            signal_process(proc, signal.SIGKILL)
        proc.wait()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc``; elsewhere none are found)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def kill_process_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a launcher and what it started, for when it ignored a polite kill: its
    process group when it leads one of its own, else (a launcher in *our* group, see
    :func:`signal_process`: killing the group would kill us) the process and every
    descendant. Returns at once; reap ``proc`` with :func:`wait_code`."""
    if proc.poll() is not None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    if pgid == proc.pid and pgid != os.getpgrp():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return
    for pid in [*_descendants(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wait_code(proc: subprocess.Popen, timeout: Optional[float]) -> Optional[int]:
    """Exit code of ``proc`` within ``timeout`` seconds (None: wait forever), else None."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


# --------------------------------------------------------------------------- dying together

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(sig: int = signal.SIGTERM) -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies, even by
    SIGKILL (Linux ``PR_SET_PDEATHSIG``), or None where that cannot be promised.

    The kernel sends the signal when the *thread* that started the child ends, so this is
    only given from the main thread (whose end is the process's); elsewhere, and off Linux,
    it is None (``preexec_fn=None`` is subprocess's default). Launchers that forward
    SIGTERM to their tasks (srun, jsrun, flux) then end the step with scr run."""
    if not sys.platform.startswith("linux") or \
            threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal would come
            os.kill(os.getpid(), sig)

    return preexec


# ------------------------------------------------------- stopping helpers on an interruption

_tracked: set = set()
_tracked_lock = threading.Lock()
STOP_GRACE_SECONDS = 3.0


class Interrupted(KeyboardInterrupt):
    """A command was stopped by signal ``signum`` (the CLI exits 128+signum). A subclass of
    KeyboardInterrupt so that, like Ctrl-C, no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


@contextlib.contextmanager
def tracked_group(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Mark ``proc`` (started with ``start_new_session=True``: its pid is its process group)
    as a helper to stop, with its whole group, when the command is interrupted
    (:func:`interrupt`); remote executors wrap their per-node processes in this."""
    with _tracked_lock:
        _tracked.add(proc)
    try:
        yield proc
    finally:
        with _tracked_lock:
            _tracked.discard(proc)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_tracked_groups(grace: float = STOP_GRACE_SECONDS) -> int:
    """SIGTERM every tracked process group, SIGKILL what is left after ``grace`` seconds.
    Returns how many were running."""
    with _tracked_lock:
        procs = [p for p in _tracked if p.poll() is None]
    for p in procs:
        _signal_group(p, signal.SIGTERM)
        _signal_group(p, signal.SIGCONT)  # a stopped helper acts on SIGTERM only when resumed
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in procs:
        if p.poll() is None:
            _signal_group(p, signal.SIGKILL)
    return len(procs)


def interrupt(signum: int) -> None:
    """Stop the tracked helpers (:func:`tracked_group`), then raise :class:`Interrupted`."""
    stop_tracked_groups()
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupt_on_signals(signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT,
                                                   signal.SIGHUP)) -> Iterator[None]:
    """While inside, the signals :func:`interrupt` the command (main thread only; elsewhere
    nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        interrupt(signum)

    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
