"""The halt file ``<prefix>/.scr/halt.scr``: conditions that stop a job (kvtree.md §5.1).

Locking follows the C tools exactly, so this module can share the file with libscr and
``scr_halt_cntl``. Readers hold ``flock(LOCK_SH)``. Updates open ``O_RDWR|O_CREAT``, take
``flock(LOCK_EX)``, read, change fields, then ``lseek(0)`` + write + ``ftruncate``, then
unlock.

Public API
----------
``HaltState(exit_reason=None, checkpoints_left=None, exit_before=None, exit_after=None,
halt_seconds=None, corrupt=None)``
    The five fields, None when unset. ``corrupt`` holds the error message when an update
    replaced a file that could not be parsed (``update(replace_corrupt=True)``). It is
    ignored by ``==``.
``HaltState.from_tree(tree)`` / ``HaltState.is_empty()``
    Decode with C's getters, or tell whether no field is set.
``HaltFile(path)``, ``HaltFile.for_prefix(prefix)``
    ``.read(timeout=None) -> HaltState``: shared lock. A missing file gives an empty
    state. A file that exists but cannot be opened or parsed, or is larger than
    ``MAX_SIZE``, raises ``ControlFileError``. SCR reads a corrupt file as empty (§5.7),
    which turned a damaged ``JOB_HALTED`` into "keep running"; here it is an error.
    ``.update(timeout=None, replace_corrupt=False, create=True)``: context manager yielding
    a mutable ``HaltState``. Fields changed in the block are written back. Nothing is
    written if the block raises. A corrupt file raises ``ControlFileError`` before the
    block unless *replace_corrupt* (then the block starts from an empty state, as libscr
    does). With ``create=False`` a missing file is not created (the block sees an empty
    state and nothing is written). After taking the lock, the update checks that the file
    it locked is still the one at the path (``remove`` may have unlinked it meanwhile) and
    starts again if not, so an update is never written into a deleted file.
    ``.remove() -> bool``: unlinks under the exclusive lock. ``.exists() -> bool``.
    *timeout* (seconds) bounds the wait for the lock: ``ControlFileError`` when it runs
    out. None waits forever, as the C tools do.
``halt_reason(state, now, seconds_left=None, default_halt_seconds=0,
finalize_blocks=False) -> str | None``
    Why the job must halt, or None.
``format_listing(state, path) -> str``
    The text ``scr_halt_cntl`` prints after an update or with ``-l``.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from scr_core.control.paths import SMALL_FILE_MAX, PathLike, halt_file, path_str
from scr_core.errors import ControlFileError
from scr_core.records import Record

if TYPE_CHECKING:
    from pathlib import Path

    from scr_core.kvtree import KVTree

__all__ = ["FINALIZE_REASON", "CorruptHaltFile", "HaltFile", "HaltState", "format_listing",
           "halt_reason"]

KEY_EXIT_REASON = "ExitReason"
KEY_CHECKPOINTS = "CheckpointsLeft"
KEY_EXIT_BEFORE = "ExitBefore"
KEY_EXIT_AFTER = "ExitAfter"
KEY_SECONDS = "HaltSeconds"

# Written by SCR_Finalize. libscr ignores it on restart; scr_retries_halt does not.
FINALIZE_REASON = "SCR_FINALIZE_CALLED"


class CorruptHaltFile(ControlFileError):
    """The halt file exists but cannot be parsed (or is larger than a halt file can be)."""


class HaltState(Record):
    """The conditions of a halt file (None = not set); ``corrupt`` is the read error of a
    corrupt file (ignored by ``==``)."""

    _fields = ("exit_reason", "checkpoints_left", "exit_before", "exit_after", "halt_seconds",
               "corrupt")
    _uncompared = ("corrupt",)

    def __init__(
        self,
        exit_reason: str | None = None,
        checkpoints_left: int | None = None,
        exit_before: int | None = None,  # epoch seconds
        exit_after: int | None = None,  # epoch seconds
        halt_seconds: int | None = None,
        corrupt: str | None = None,
    ) -> None:
        self.exit_reason = exit_reason
        self.checkpoints_left = checkpoints_left
        self.exit_before = exit_before
        self.exit_after = exit_after
        self.halt_seconds = halt_seconds
        self.corrupt = corrupt

    @classmethod
    def from_tree(cls, tree: KVTree) -> HaltState:
        # ExitReason via util_get_str (exactly one value); numbers via util_get_int (atoi).
        return cls(
            exit_reason=tree.value(KEY_EXIT_REASON),
            checkpoints_left=tree.get_int(KEY_CHECKPOINTS),
            exit_before=tree.get_int(KEY_EXIT_BEFORE),
            exit_after=tree.get_int(KEY_EXIT_AFTER),
            halt_seconds=tree.get_int(KEY_SECONDS),
        )

    def is_empty(self) -> bool:
        return (
            self.exit_reason is None
            and self.checkpoints_left is None
            and self.exit_before is None
            and self.exit_after is None
            and self.halt_seconds is None
        )


def _apply(tree: KVTree, old: HaltState, new: HaltState) -> None:
    """Write the fields that changed, unset then set, in scr_halt_cntl's order.

    The order is reason, checkpoints, before, after, seconds. Each field is inserted at the
    front, so setting all five from scratch gives exactly the bytes of scr_halt_cntl
    (golden ``d_halt_all_fields``).
    """
    if new.exit_reason != old.exit_reason:
        tree.unset(KEY_EXIT_REASON)
        if new.exit_reason is not None:
            tree.add_value(KEY_EXIT_REASON, new.exit_reason)
    for key, attr in (
        (KEY_CHECKPOINTS, "checkpoints_left"),
        (KEY_EXIT_BEFORE, "exit_before"),
        (KEY_EXIT_AFTER, "exit_after"),
        (KEY_SECONDS, "halt_seconds"),
    ):
        value = getattr(new, attr)
        if value != getattr(old, attr):
            tree.unset(key)
            if value is not None:
                # scr_halt_cntl writes "%lu"; a negative number has no meaning here
                if value < 0:
                    raise ValueError(f"{key} cannot be negative: {value}")
                tree.set_unsigned(key, value)


def _lock(fd: int, operation: int, path: str, timeout: float | None) -> None:
    if timeout is None:
        fcntl.flock(fd, operation)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            raise ControlFileError(f"{path}: timed out after {timeout:g}s waiting for its lock")
        time.sleep(0.02)


class HaltFile:
    """Locked access to one halt file; see the module docstring."""

    def __init__(self, path: PathLike) -> None:
        # kept as str(Path(path)) (what messages show); .path makes the Path on demand, so
        # that scr_should_exit reads the halt file without importing pathlib
        self._name = path_str(path)
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            from pathlib import Path

            self._path = Path(self._name)
        return self._path

    @classmethod
    def for_prefix(cls, prefix: PathLike) -> HaltFile:
        return cls(halt_file(prefix))

    def exists(self) -> bool:
        return os.path.exists(self._name)

    def _read_locked(self, fd: int) -> tuple[KVTree, str | None]:
        # kvtree (struct, zlib, its regexes) is imported here, not with this module: with no
        # halt file, scr_should_exit never needs it
        from scr_core import kvtree
        from scr_core.kvtree import KVTree

        try:
            return kvtree.read_fd(fd, self._name, SMALL_FILE_MAX), None
        except ControlFileError as exc:
            return KVTree(), str(exc)

    def _require_regular(self, fd: int) -> None:
        """A FIFO or device in the halt file's place is a corrupt halt file (never blocks)."""
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise self._corrupt_error(f"{self._name}: not a regular file")

    def _corrupt_error(self, why: str) -> ControlFileError:
        return CorruptHaltFile(
            f"corrupt halt file ({why}); it may have asked the job to halt: look at it, then "
            f"remove it with 'scr halt --remove' or set a halt with 'scr halt'")

    def read(self, timeout: float | None = None) -> HaltState:
        try:
            # O_NONBLOCK: a FIFO in the halt file's place must not hang scr_should_exit
            fd = os.open(self._name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return HaltState()
        except OSError as exc:
            raise ControlFileError(
                f"{self._name}: cannot open halt file: {exc.strerror or exc}"
            ) from exc
        try:
            self._require_regular(fd)
            _lock(fd, fcntl.LOCK_SH, self._name, timeout)
            try:
                tree, corrupt = self._read_locked(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        if corrupt:
            raise self._corrupt_error(corrupt)
        return HaltState.from_tree(tree)

    def _open_locked(self, timeout: float | None, create: bool) -> int | None:
        """An fd of the file at the path, exclusively locked; None if missing and not
        *create*. Loops while the locked file is no longer the one at the path."""
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_CREAT if create else 0)
        while True:
            try:
                fd = os.open(self._name, flags, 0o666)
            except FileNotFoundError:
                if not create:
                    return None
                raise ControlFileError(
                    f"{self._name}: cannot open halt file for update: its directory is "
                    "missing") from None
            except OSError as exc:
                raise ControlFileError(
                    f"{self._name}: cannot open halt file for update: {exc.strerror or exc}"
                ) from exc
            try:
                self._require_regular(fd)
                _lock(fd, fcntl.LOCK_EX, self._name, timeout)
                held = os.fstat(fd)
                try:
                    now = os.stat(self._name)
                except FileNotFoundError:
                    now = None
            except BaseException:
                os.close(fd)
                raise
            if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
                return fd
            os.close(fd)  # removed (or replaced) while we waited for the lock: start again

    @contextmanager
    def update(self, timeout: float | None = None, replace_corrupt: bool = False,
               create: bool = True) -> Iterator[HaltState]:
        fd = self._open_locked(timeout, create)
        if fd is None:
            yield HaltState()
            return
        try:
            try:
                tree, corrupt = self._read_locked(fd)
                if corrupt and not replace_corrupt:
                    raise self._corrupt_error(corrupt)
                old = HaltState.from_tree(tree)
                old.corrupt = corrupt
                state = copy.copy(old)
                yield state
                _apply(tree, old, state)
                try:
                    from scr_core import kvtree

                    kvtree.write_fd_in_place(fd, tree)
                except OSError as exc:
                    raise ControlFileError(
                        f"{self._name}: cannot write halt file: {exc.strerror or exc}"
                    ) from exc
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def remove(self, timeout: float | None = None) -> bool:
        """Delete the file under its exclusive lock (SCR unlinks without it, and an update
        waiting for the lock then wrote into the deleted file). True if it existed."""
        try:
            fd = self._open_locked(timeout, create=False)
        except CorruptHaltFile:  # not a regular file: no lock to take, nothing to lose
            os.unlink(self._name)
            return True
        if fd is None:
            return False
        try:
            os.unlink(self._name)
            return True
        finally:
            os.close(fd)  # releases the lock: a waiting update finds the file gone


def halt_reason(
    state: HaltState,
    now: float,
    seconds_left: float | None = None,
    default_halt_seconds: int = 0,
    finalize_blocks: bool = False,
) -> str | None:
    """Why the job must halt now, or None to continue.

    The conditions are those of libscr and ``scr_retries_halt`` (§5.1):

    - ExitReason is set and not empty. ``SCR_FINALIZE_CALLED`` counts only with
      ``finalize_blocks=True`` (``scr_retries_halt`` behaviour). By default it does not,
      so a finished run does not block a new allocation.
    - CheckpointsLeft == 0.
    - now >= ExitBefore - HaltSeconds.
    - now >= ExitAfter.
    - HaltSeconds > 0 and *seconds_left* (time left in the allocation; None or negative
      means unknown or unlimited) <= HaltSeconds.

    HaltSeconds comes from the file, else from *default_halt_seconds* (``SCR_HALT_SECONDS``).
    """
    reason = state.exit_reason
    if reason and (finalize_blocks or reason != FINALIZE_REASON):
        return f"ExitReason: {reason}"
    if state.checkpoints_left is not None and state.checkpoints_left == 0:
        return "no checkpoints left (CheckpointsLeft is 0)"
    halt_seconds = state.halt_seconds if state.halt_seconds is not None else default_halt_seconds
    if state.exit_before is not None and now >= state.exit_before - halt_seconds:
        return (
            f"current time {int(now)} is past ExitBefore {state.exit_before} "
            f"minus HaltSeconds {halt_seconds}"
        )
    if state.exit_after is not None and now >= state.exit_after:
        return f"current time {int(now)} is past ExitAfter {state.exit_after}"
    if halt_seconds > 0 and seconds_left is not None and 0 <= seconds_left <= halt_seconds:
        return (
            f"{int(seconds_left)} seconds left in the allocation, "
            f"HaltSeconds is {halt_seconds} (TIME_LIMIT)"
        )
    return None


def _asctime(secs: int) -> str:
    try:
        return time.asctime(time.localtime(secs))
    except (OverflowError, ValueError, OSError):  # beyond time_t or year 9999
        return f"{secs} (seconds since the epoch: beyond what this system can show as a date)"


def format_listing(state: HaltState, path: PathLike) -> str:
    """``scr_halt_cntl``'s listing: ``Halt file settings for F:`` and one line per field.

    Times are printed with ``asctime(localtime())``. When both ExitBefore and HaltSeconds
    are set, an extra ``ExitBefore - HaltSeconds`` line follows. ``  None`` means no
    field is set.
    """
    lines = [f"Halt file settings for {os.fspath(path)}:"]
    if state.exit_reason is not None:
        lines.append(f"  ExitReason:      {state.exit_reason}")
    if state.checkpoints_left is not None:
        lines.append(f"  CheckpointsLeft: {state.checkpoints_left}")
    if state.exit_after is not None:
        lines.append(f"  ExitAfter:       {_asctime(state.exit_after)}")
    if state.exit_before is not None:
        lines.append(f"  ExitBefore:      {_asctime(state.exit_before)}")
    if state.halt_seconds is not None:
        lines.append(f"  HaltSeconds:     {state.halt_seconds}")
    if state.halt_seconds is not None and state.exit_before is not None:
        lines.append(
            f"  ExitBefore - HaltSeconds: {_asctime(state.exit_before - state.halt_seconds)}"
        )
    if len(lines) == 1:
        lines.append("  None")
    return "\n".join(lines) + "\n"
