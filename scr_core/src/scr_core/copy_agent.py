"""The per-node copy agent: what SCR's ``scr_copy`` does, run ON each node by scavenge.

::

    python -m scr_core.copy_agent --id ID (--cntldir DIR | --jobid JOBID [--user USER])
        --prefix PREFIX [--buf BYTES] [--crc | --no-crc] [--sync fs|file|none]
        [--pipeline auto|on|off] [--procs N] [--threads N] [--timeout SECS]
        [--progress | --quiet] [DOWN_NODE ...]

For dataset ID it reads ``<cntldir>/cindex.scrinfo`` (the node's cache index) to find the
dataset's cache directory, then for each ``<cachedir>/.scr/filemap_<rank>``:

* copies the redundancy files (``reddesc*.er.*``) and each filemap, before that filemap's
  files, into ``<prefix>/.scr/scr.dataset.<id>/``, so the batch node learns which files
  to expect even if this agent dies half way;
* checks every file: META ``COMPLETE`` is 1, the cache file's size equals META ``SIZE``,
  the values META claims are possible (``control/limits.py``), the cache path lies in the
  dataset's cache directory (resolved; absolute paths elsewhere and ``..`` that leave it
  are refused) and is a regular file, opened without following a symlink and without
  blocking (a FIFO or device in its place fails the file, never hangs);
* copies it to its original place ``META PATH/NAME``, which must lie under the prefix
  once resolved (a symlink in the prefix leading out of it is not written through),
  with ``--buf``-sized reads, computing CRC32 of exactly the bytes written and comparing
  it with META ``CRC`` when the filemap has one (``--crc``, the default);
* writes to ``.<name>.scr_copy.<node>.<pid>.part`` next to the destination (``O_EXCL``:
  a name no other copy shares, so a second scavenge cannot truncate it), applies the cache
  file's owner (when root), META's permission bits (never set-user/group-ID) and times,
  renames, then checks that the file in place is the one it wrote (device, inode, size,
  mtime) and reports its inode: a destination is either absent, the old file, or a
  complete new one, and the batch node trusts the agent's CRC only for that inode;
* skips work already done, so an interrupted scavenge re-run completes without copying
  twice: a destination of the right size whose CRC equals the filemap's (or, without a
  CRC, whose mtime equals the recorded one) is kept. Part files left by killed agents are
  removed by the batch node (:func:`scr_core.engine.scavenge.remove_parts`);
* with ``--timeout`` ends itself (exit 1) after that many seconds.

With ``--jobid`` the control directory is ``<SCR_CNTL_BASE>/<user>/scr.<jobid>`` as seen
*on this node* (its environment and the prefix's config files), which is what libscr used
there; the batch node's view can differ (virtual nodes, site configs).

Down nodes may be listed as positional arguments (as SCR passes them to ``scr_copy``); an
agent running on one of them does nothing.

Output: stdout carries one JSON object per line: ``{"event": "meta", ...}`` per copied
metadata file, ``{"event": "file", ...}`` per data file (status ``copied``, ``present`` or
``failed``), then one ``{"event": "summary", ...}`` line. Errors are also described on
stderr, one line each. Progress (bytes, files, rate) goes to stderr when it is a terminal,
unless ``--quiet``; ``--progress`` forces it.

Exit codes: 0 every file of the dataset held by this node is at its destination (or the
node holds none of it), 1 some file or metadata failed (named on stdout and stderr),
2 usage.

Speed (issue 9: the agent against ``cp -a`` of the cache, CRC on; see bench_scavenge.py):

* worker processes, not threads (``--procs``, default one per usable CPU, at most
  :data:`MAX_AUTO_PROCS`): per small file the interpreter's own work (reading the filemap
  entry, building the task, the JSON line) costs as much as the system calls, and threads
  serialise it on the GIL. The agent forks the workers, and each one copies and reads the
  filemaps of its share and copies their files in one thread; with at least as many
  filemaps as workers whole filemaps are dealt out (biggest first), else every filemap is
  split into consecutive runs of about equal bytes (:func:`share_of`) and the agent copies
  the filemaps before forking (a filemap always lands before its files). Workers send JSON
  lines, stderr lines, progress and final counts over a pipe in frames; the agent writes
  them out and merges the counts. A worker dies with the agent (``PR_SET_PDEATHSIG``), and
  one that ends without reporting fails the agent. ``--procs 1`` copies in this process:
  small files by ``--threads`` threads, large ones by one thread (or, with ``--pipeline
  on``, ``auto``: 4+ CPUs and one process, through a read -> CRC -> write thread pipeline,
  which lost on the busy 2-core VM: 0.9 s against 0.25 s for 512 MiB).
* small files (at most ``--buf``) take one ``read`` of size + 1 bytes (that also proves the
  size), CRC32, one ``write``; the mode is given to ``open`` (no ``fchmod`` unless the umask
  or set-id bits need one), times by one ``futimens``; a directory this run created needs no
  ``lstat`` of the destination; in a worker, opens and the rename are relative to ``O_PATH``
  handles of the source and destination directories.
* larger files stream in :data:`STREAM_CHUNK` (128 KiB, as cp) reads and writes, so the
  buffer stays in the CPU cache from read to CRC to write (1 MiB chunks were up to 1.8x
  slower for 512 MiB).
* filemaps are read by :func:`scan_filemap` (4-5x faster than building KVTree objects; an
  entry whose META keys come in the same order as the previous one's is one regex match),
  and the agent imports little and parses a plain command line without argparse
  (start-up ~30 ms, ~11 of it the interpreter's; it was ~70).
* CRC32 comes from ``zlib_ng`` (a dependency of scr-core where binary wheels exist: x86_64,
  aarch64; 17 GB/s against zlib's 2.8 GB/s here, the same values), else from ``zlib``: for
  512 MiB that is ~0.2 s more CPU, which alone puts large files past 1.25x ``cp -a``.

Measured on the shared 2-core VM (time ratio = ours / cp's, medians of interleaved runs,
bench_scavenge.py): large files (8 x 64 MiB tmpfs -> disk) 0.80-1.0x with the second core
free, 1.0-1.5x with it busy (1.62x before); 20k x 8 KiB tmpfs -> tmpfs 0.82-0.98x with the
second core free, 1.5-1.7x with it busy (4.68x before); 20k x 8 KiB to disk 0.64x
(0.975x before). Per small file a worker spends
~7 us reading its filemap entry and ~28 us copying it (6 us user, ~22 us in the kernel:
open, read, close, open, write, futimens, close, rename, relative to directory handles);
cp -a spends ~25 us in all, so the agent needs ~0.8 s of CPU for the 20k files against
cp's ~0.5 s and wins only with both cores.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import stat
import struct
import sys
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Optional, TextIO

from .control.limits import MAX_NSECS, MAX_RANKS, MAX_SECS, MAX_SIZE, meta_bounds_problem
from .kvtree import c_atoi
from .records import Record

if TYPE_CHECKING:
    import argparse

try:  # zlib-ng's CRC32 (SIMD) is ~6x zlib's and gives the same value
    from zlib_ng.zlib_ng import crc32 as _crc32
    CRC_IMPL = "zlib-ng"
except ImportError:  # optional: zlib's is correct, just slower
    _crc32 = zlib.crc32
    CRC_IMPL = "zlib"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# a copy in progress: ".<name>.scr_copy.<node>.<pid>.part" next to its destination; the
# name is this process's own, so no other copy of the same file (a second scavenge, a re-run
# while a stopped agent lives) can truncate it or write into it
PART_MARK = ".scr_copy."
PART_SUFFIX = ".part"
DEFAULT_BUF = 1024 * 1024
# files of up to this many buffers go to the small-file threads; bigger ones to the
# large-file thread (and its read/CRC/write pipeline when that is on)
PIPELINE_MIN_BUFFERS = 4
PIPELINE_DEPTH = 4  # buffers in flight per pipelined file
# a file bigger than the buffer is streamed in reads and writes of at most this much (as
# cp's 128 KiB): the buffer then stays in the CPU cache between read, CRC32 and write;
# 1 MiB chunks measured up to 1.8x slower for 512 MiB on the 2-core VM
STREAM_CHUNK = 128 * 1024
MAX_AUTO_PROCS = 8  # worker processes by default: one per usable CPU, at most this many
# splitting one filemap between workers: a file counts as its size plus this (the cost of
# creating, renaming and reporting a file, in bytes of copying)
FILE_COST = 64 * 1024
_HDR = struct.Struct("<IB")  # worker -> agent frame: payload length, kind
_PROGRESS = struct.Struct("<5Q")  # files_total, bytes_total, files_done, bytes_done, copied
_REDSET_RE = re.compile(r"^reddesc.*\.er\.")
_FILEMAP_RE = re.compile(r"^filemap_(0|[1-9][0-9]*)$")


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_procs() -> int:
    """Worker processes when none are asked for: one per usable CPU, at most MAX_AUTO_PROCS."""
    return min(usable_cpus(), MAX_AUTO_PROCS)


_RETRY = object()  # _copy_whole: take the general path
# A .part file: O_EXCL, a name of this process's own is never shared; O_NOFOLLOW, a planted
# symlink is not followed.
_PART_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# A source (cache file, filemap): never through a symlink, and O_NONBLOCK so a FIFO or
# device in its place cannot block the open (it is refused by its fstat)
_SRC_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | \
    getattr(os, "O_NOCTTY", 0)
# the permission bits a copy may get: never set-user/group-ID or sticky from a filemap
_COPY_MODE_BITS = 0o777
_FADV_SEQUENTIAL = getattr(os, "POSIX_FADV_SEQUENTIAL", None)
_O_PATH = getattr(os, "O_PATH", 0)  # Linux: a directory handle that needs no read right


class CopyError(Exception):
    """One file could not be copied or verified; the message says why."""


# --------------------------------------------------------------------------- data copy


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _copy_simple(src_fd: int, dst_fd: int, buf: bytearray, want_crc: bool,
                 expected: int = -1) -> tuple[int, int]:
    """Sequential read -> crc -> write; returns (bytes, crc).

    A short read that completes the ``expected`` size is taken as the end of a regular
    file, which saves the extra read that would return 0 (one system call per small file).
    """
    view = memoryview(buf)
    total = crc = 0
    while True:
        n = os.readv(src_fd, [view])
        if not n:
            return total, crc
        chunk = view[:n]
        if want_crc:
            crc = _crc32(chunk, crc)
        _write_all(dst_fd, chunk)
        total += n
        if n < len(view) and total == expected:
            return total, crc


def _write_bytes(dst_fd: int, data: bytes) -> None:
    """All of ``data`` (one ``write`` in the usual case)."""
    if data:
        written = os.write(dst_fd, data)
        if written != len(data):
            _write_all(dst_fd, memoryview(data)[written:])


def _copy_small(src_fd: int, dst_fd: int, size: int, want_crc: bool) -> tuple[int, int]:
    """A file of at most one buffer: one read of ``size + 1`` bytes, CRC, one write.

    Reading one byte more than expected tells a file that grew from one of the right size
    without a second read; the caller compares the count returned with ``size``.
    """
    data = os.read(src_fd, size + 1)
    n = len(data)
    if n > size:  # longer than the filemap says: the caller reports the size
        return n, 0
    if n < size:  # the file shrank, or the read was split (rare): the general loop
        os.lseek(src_fd, 0, os.SEEK_SET)
        return _copy_simple(src_fd, dst_fd, bytearray(max(size + 1, 4096)), want_crc, size)
    crc = _crc32(data) if want_crc else 0
    _write_bytes(dst_fd, data)
    return n, crc


def _copy_pipelined(src_fd: int, dst_fd: int, bufsize: int, want_crc: bool) -> tuple[int, int]:
    """Read, CRC and write overlap: chunk i+2 is read while i+1 is summed and i written.

    The CRC is computed over the very buffer that is then written, so it covers the bytes
    that reach the destination, not a second read of the source.
    """
    import queue
    free: queue.Queue = queue.Queue()
    for _ in range(PIPELINE_DEPTH):
        free.put(bytearray(bufsize))
    to_crc: queue.Queue = queue.Queue()
    to_write: queue.Queue = queue.Queue()
    stop = threading.Event()
    crc_box = [0]

    def reader() -> None:
        try:
            while not stop.is_set():
                b = free.get()
                if b is None:
                    break
                n = os.readv(src_fd, [b])
                to_crc.put((b, n, None))
                if not n:
                    return
        except OSError as exc:
            to_crc.put((None, 0, exc))
            return
        to_crc.put((None, 0, None))

    def summer() -> None:
        crc = 0
        while True:
            item = to_crc.get()
            b, n, _exc = item
            if b is not None and n and want_crc:
                crc = _crc32(memoryview(b)[:n], crc)
            to_write.put(item)
            if not n:
                crc_box[0] = crc
                return

    threads = [threading.Thread(target=reader, daemon=True),
               threading.Thread(target=summer, daemon=True)]
    for t in threads:
        t.start()
    total = 0
    ended = False  # the end marker (EOF or a read error) has been taken off the queue
    try:
        while True:
            b, n, exc = to_write.get()
            if not n:
                ended = True
                if exc is not None:
                    raise exc
                break
            _write_all(dst_fd, memoryview(b)[:n])
            total += n
            free.put(b)
    except BaseException:
        stop.set()
        free.put(None)  # unblock the reader if it waits for a buffer
        while not ended:  # drain to the end marker so both threads finish
            ended = not to_write.get()[1]
        for t in threads:
            t.join()
        raise
    for t in threads:
        t.join()
    return total, crc_box[0]


def part_name(base: str, tag: str) -> str:
    """The name of a copy of ``base`` in progress, for the process with ``tag``."""
    return f".{base}{PART_MARK}{tag}{PART_SUFFIX}"


def is_part_of(name: str, base: str) -> bool:
    """Whether ``name`` is a copy of ``base`` in progress (of any process)."""
    return name.startswith(f".{base}{PART_MARK}") and name.endswith(PART_SUFFIX)


def open_regular(path: str, dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """(descriptor, fstat) of a regular file opened for reading, never through a symlink
    and never blocking: a FIFO, device or directory in its place raises OSError (EINVAL,
    "not a regular file"), so no read can hang on one."""
    fd = os.open(path, _SRC_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or directory)",
                          path)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: str) -> bytes:
    """The content of a regular file (see :func:`open_regular`)."""
    fd, st = open_regular(path)
    try:
        parts = []
        while True:
            data = os.read(fd, max(st.st_size + 1, 65536))
            if not data:
                return b"".join(parts)
            parts.append(data)
    finally:
        os.close(fd)


def file_crc(path: str, bufsize: int = DEFAULT_BUF) -> tuple[int, int]:
    """(size, crc32) of a regular file's content, read with a ``bufsize`` buffer."""
    size, crc, _st = file_crc_stat(path, bufsize)
    return size, crc


def file_crc_stat(path: str, bufsize: int = DEFAULT_BUF) -> tuple[int, int, os.stat_result]:
    """(size, crc32, fstat) of a regular file: the stat is of the very file summed."""
    buf = bytearray(max(bufsize, 4096))
    view = memoryview(buf)
    crc = total = 0
    fd, st = open_regular(path)
    try:
        while True:
            n = os.readv(fd, [view])
            if not n:
                return total, crc, st
            crc = _crc32(view[:n], crc)
            total += n
    finally:
        os.close(fd)


def crc_text(crc: int | None) -> str | None:
    """SCR's ``%#x`` form (``0`` for zero, as C writes it)."""
    if crc is None:
        return None
    crc &= 0xFFFFFFFF
    return f"0x{crc:x}" if crc else "0"


def _syncfs(path: str) -> None:
    """Flush the file system holding *path* (one ``syncfs`` instead of an fsync per file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syncfs(fd) == 0:
                return
        except (OSError, AttributeError):
            pass
        os.sync()  # no syncfs (not glibc): flush everything, slower but safe
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the agent


class FileTask(Record):
    """One data file of a filemap, and where it goes.

    A plain class with slots, not a dataclass: ``dataclasses`` (and ``inspect``) would add
    ~10 ms to every agent's start-up, a fifth of the cost of 20,000 small files."""

    _fields = ("rank", "src", "dst", "rel", "size", "expected_crc", "mode", "uid", "gid",
               "atime_ns", "mtime_ns", "problem")
    __slots__ = _fields

    def __init__(self, rank: int, src: str, dst: str, rel: str, size: int,
                 expected_crc: int | None, mode: int | None = None, uid: int | None = None,
                 gid: int | None = None, atime_ns: int | None = None,
                 mtime_ns: int | None = None, problem: str | None = None) -> None:
        self.rank, self.src, self.dst, self.rel, self.size = rank, src, dst, rel, size
        self.expected_crc, self.mode, self.uid, self.gid = expected_crc, mode, uid, gid
        self.atime_ns, self.mtime_ns = atime_ns, mtime_ns
        self.problem = problem  # known bad before copying (incomplete, outside prefix...)


def _check_crc(task: FileTask, crc: int, what: str) -> None:
    """Raise CopyError if the filemap has a CRC and ``crc`` (of ``what``) is not it."""
    if task.expected_crc is not None and crc != task.expected_crc:
        raise CopyError(f"CRC mismatch: {what} {crc_text(crc)}, filemap "
                        f"{crc_text(task.expected_crc)}")


class Stats:
    """Counters of one agent (or one worker process)."""

    def __init__(self) -> None:
        self.files_total = self.bytes_total = self.files_done = self.bytes_done = 0
        self.bytes_copied = self.copied = self.present = self.failed = 0
        self.failures: list[dict[str, Any]] = []
        self.lock = threading.Lock()


def _node_name() -> str:
    return os.environ.get("SCR_LOCAL_NODE") or os.uname().nodename  # = gethostname()


def _check_placed(path: str, written: os.stat_result, dir_fd: int | None) -> int:
    """The inode at ``path`` after the rename of a part file, if it is the file written
    (device, inode, size, mtime as fstat saw them before the rename); else CopyError:
    something else replaced it in between, and this agent does not vouch for that."""
    st = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != \
            (written.st_dev, written.st_ino, written.st_size, written.st_mtime_ns):
        raise CopyError("the file in place after the rename is not the one copied (another "
                        "copy replaced it); not vouched for")
    return st.st_ino


def _part_tag(node: str) -> str:
    """This process's part-file tag: node and pid (a node name never holds '/')."""
    return f"{node.replace('/', '_')}.{os.getpid()}"


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def place_in_prefix(dst: str, prefix: str, real_prefix: str,
                    real_dirs: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(path to write, path relative to the prefix) for a filemap destination, or None
    when it lies outside the prefix (a corrupt or hostile filemap must not write anywhere).

    Inside means that its directory, resolved, is inside the resolved prefix: a symlink in
    the prefix that leads out of it is never written through (one ``realpath`` per
    directory, remembered in ``real_dirs``). A path inside as written keeps its form (and
    its path relative to the prefix); one that reaches the prefix through another symlinked
    path is given by its resolved form.
    """
    # normpath changes only paths with "//", "/." (".", "..") or a trailing "/"
    norm = dst if "/." not in dst and "//" not in dst and dst[-1:] != "/" and \
        dst[:1] == "/" else os.path.normpath(dst)
    parent = os.path.dirname(norm)
    real_dir = None if real_dirs is None else real_dirs.get(parent)
    if real_dir is None:  # one realpath and check per directory, not per file
        real_dir = os.path.realpath(parent)
        if not _within(real_dir, real_prefix):
            real_dir = ""  # outside
        if real_dirs is not None:
            real_dirs[parent] = real_dir
    if not real_dir:
        return None
    head = prefix if prefix.endswith("/") else prefix + "/"
    if norm.startswith(head) and len(norm) > len(head):  # the common case
        rel = norm[len(head):]
    else:
        norm = os.path.join(real_dir, os.path.basename(norm))
        rel = os.path.relpath(norm, real_prefix)
    if rel == ".scr" or rel.startswith(".scr/"):  # SCR's own files: never a data file
        return None
    return norm, rel


# --------------------------------------------------------------------------- filemaps

# One META entry "KEY -> VALUE" packed as KVTree writes it: key NUL, count 1, value NUL,
# count 0 (kvtree.md §2.2). Matching it with one regex call instead of building KVTree
# objects makes reading a 20,000-file filemap several times faster.
_PAIR = re.compile(rb"([^\0]*)\0\0\0\0\x01([^\0]*)\0\0\0\0\0")
_U32 = struct.Struct(">I").unpack_from
_KVTREE_MAGIC = 0x951FC3F5
# C-accelerated; ASCII-only so that undecodable names (surrogate escapes) stay printable
_json_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
# the META keys a copy needs (FileTask's fields), in the order CopyAgent._task reads them
TASK_ORDER = (b"PATH", b"NAME", b"SIZE", b"RANK", b"CRC", b"ATIME_SECS", b"ATIME_NSECS",
              b"MTIME_SECS", b"MTIME_NSECS", b"MODE", b"UID", b"GID", b"COMPLETE")
_HEX = re.compile(rb"[0-9a-fA-F]+")
_HEX8 = re.compile(rb"[0-9a-fA-F]{1,8}")
_MULTI = object()  # a META key with several values, or a nested one: no single value

RawMeta = dict  # bytes key -> bytes value, or _MULTI


class FilemapError(CopyError):
    """A filemap is corrupt or truncated."""


def _fits(count: int, pos: int, end: int) -> int:
    """``count`` if that many elements can fit before ``end`` (each takes at least 5 bytes:
    a NUL and a count), else FilemapError: a count read from a file is never trusted."""
    if count * 5 > end - pos:
        raise FilemapError(f"element count {count} exceeds the data left")
    return count


def _skip(buf: bytes, pos: int, end: int, count: int, depth: int = 0) -> int:
    if depth > 64:
        raise FilemapError("nested too deeply")
    for _ in range(_fits(count, pos, end)):
        nul = buf.index(b"\0", pos, end)
        (n,) = _U32(buf, nul + 1)
        pos = nul + 5
        if pos > end:
            raise FilemapError("truncated element")
        if n:
            pos = _skip(buf, pos, end, n, depth + 1)
    return pos


def scan_filemap(path: str) -> list[tuple[str, RawMeta | None]]:
    """``[(cache path, META as {key bytes: value bytes})]`` of a filemap, in file order.

    Header and CRC are checked as KVTree does (kvtree.md §2-3). A key with several values
    (or a nested one) maps to an opaque marker, so reading it as one value gives None, as
    ``kvtree_util_get_*`` fails then. A filemap whose FILE list repeats a path (C merges
    those) is read with the general KVTree reader instead. Raises ``FilemapError``.
    """
    return _scan_path(path, None)


def _check_header(path: str, buf: bytes) -> int | None:
    """Where a filemap's tree ends, after the header and CRC checks; None if empty."""
    if not buf:
        return None  # a zero-length file is an empty tree, as in C
    try:
        magic, ftype, version, filesize, flags = struct.unpack_from(">IHHQI", buf)
    except struct.error as exc:
        raise FilemapError(f"{path}: short header") from exc
    if (magic, ftype, version) != (_KVTREE_MAGIC, 1, 1) or filesize < 20 or \
            filesize > len(buf):
        raise FilemapError(f"{path}: not a KVTree file or truncated")
    end = filesize
    if flags & 1:
        end = filesize - 4
        if end < 20 or zlib.crc32(memoryview(buf)[:end]) != _U32(buf, end)[0]:
            raise FilemapError(f"{path}: CRC32 mismatch")
    return end


_PAIRS_RE: dict[int, re.Pattern] = {}


def _pairs_re(count: int) -> re.Pattern:
    """A regex matching exactly ``count`` consecutive plain META pairs."""
    pat = _PAIRS_RE.get(count)
    if pat is None:
        pat = _PAIRS_RE[count] = re.compile(
            rb"(?:[^\0]*\0\0\0\0\x01[^\0]*\0\0\0\0\0){%d}" % count)
    return pat


class _Repeated(Exception):
    pass


_TEMPLATES: dict[tuple[tuple[bytes, ...], tuple[bytes, ...]],
                 tuple[re.Pattern, tuple[bytes, ...], tuple[str, ...] | None]] = {}


def _template(order: tuple[bytes, ...], wanted: tuple[bytes, ...],
              ) -> tuple[re.Pattern, tuple[bytes, ...], tuple[str, ...] | None]:
    """(regex matching a META of exactly these plain pairs in this order, capturing the
    values of the keys of ``wanted``; the captured keys in group order; when every key of
    ``wanted`` is captured, the group names that give their values in ``wanted``'s order,
    else None)."""
    found = _TEMPLATES.get((order, wanted))
    if found is None:
        index = {k: j for j, k in enumerate(wanted)}
        parts = []
        for key in order:
            value = b"(?P<g%d>[^\0]*)" % index[key] if key in index else rb"[^\0]*"
            parts.append(re.escape(key) + rb"\0\0\0\0\x01" + value + rb"\0\0\0\0\0")
        groups = None
        if all(k in order for k in wanted):
            groups = tuple(f"g{j}" for j in range(len(wanted)))
        found = (re.compile(b"".join(parts)), tuple(k for k in order if k in index), groups)
        if len(_TEMPLATES) < 64:
            _TEMPLATES[(order, wanted)] = found
    return found


def _scan(buf: bytes, end: int, wanted: tuple[bytes, ...] | None = None,
          ) -> list[tuple[str, Any]]:
    # With ``wanted``, an entry whose META lists the same keys in the same order as the
    # entry before it is read by one regex match (``_template``), ~5x faster than
    # collecting every pair.
    tmpl_count = -1  # the META pair count the current template matches
    tmpl: re.Pattern | None = None
    tmpl_names: tuple[bytes, ...] = ()
    tmpl_groups: tuple[str, ...] | None = None
    pos = 20
    (count,) = _U32(buf, pos)
    pos += 4
    _fits(count, pos, end)
    out: list[tuple[str, RawMeta | None]] = []
    seen: set[bytes] = set()
    match = _PAIR.match
    findall = _PAIR.findall
    find = buf.index
    for _ in range(count):
        nul = find(b"\0", pos, end)
        key = buf[pos:nul]
        (n,) = _U32(buf, nul + 1)
        pos = nul + 5
        if key != b"FILE":
            pos = _skip(buf, pos, end, n)
            continue
        for _ in range(_fits(n, pos, end)):
            nul = find(b"\0", pos, end)
            fkey = buf[pos:nul]
            if fkey in seen:
                raise _Repeated
            seen.add(fkey)
            (k,) = _U32(buf, nul + 1)
            pos = nul + 5
            meta: RawMeta | None = None
            for _ in range(_fits(k, pos, end)):
                nul = find(b"\0", pos, end)
                mkey = buf[pos:nul]
                mc = _fits(_U32(buf, nul + 1)[0], nul + 5, end)
                pos = nul + 5
                if mkey != b"META" or meta is not None:
                    if mkey == b"META":
                        raise _Repeated
                    pos = _skip(buf, pos, end, mc)
                    continue
                if mc == tmpl_count:  # the same keys as the entry before, most likely
                    m = tmpl.match(buf, pos, end)  # type: ignore[union-attr]
                    if m is not None:
                        # the values of ``wanted`` in one call, else the keys' dict
                        meta = m.group(*tmpl_groups) if tmpl_groups else \
                            dict(zip(tmpl_names, m.groups()))
                        pos = m.end()
                        continue
                # the usual META: mc plain pairs, matched and collected by two C calls
                block = _pairs_re(mc).match(buf, pos, end)
                if block is not None:
                    meta = dict(findall(buf, pos, block.end()))
                    if len(meta) == mc:  # no repeated key
                        pos = block.end()
                        if wanted is not None:
                            tmpl, tmpl_names, tmpl_groups = _template(tuple(meta), wanted)
                            tmpl_count = mc
                        continue
                meta = {}
                for _ in range(mc):
                    m = match(buf, pos, end)
                    if m is not None:
                        name = m.group(1)
                        meta[name] = _MULTI if name in meta else m.group(2)
                        pos = m.end()
                        continue
                    nul = find(b"\0", pos, end)
                    name = buf[pos:nul]
                    (c,) = _U32(buf, nul + 1)
                    pos = _skip(buf, nul + 5, end, c)
                    meta[name] = _MULTI
            if pos > end:
                raise FilemapError("truncated")
            if wanted is not None and type(meta) is dict:
                meta = tuple(map(meta.get, wanted))
            out.append((fkey.decode("utf-8", "surrogateescape"), meta))
    return out


def scan_filemap_values(path: str, wanted: tuple[bytes, ...],
                        ) -> list[tuple[str, tuple | None]]:
    """``[(cache path, META values of the keys in ``wanted``, None where absent)]``: what
    :func:`scan_filemap` reads, without a dict per file where the template matches."""
    return _scan_path(path, wanted)


def _scan_path(path: str, wanted: tuple[bytes, ...] | None) -> list[tuple[str, Any]]:
    buf = read_regular(path)
    end = _check_header(path, buf)
    if end is None:
        return []
    try:
        return _scan(buf, end, wanted)
    except _Repeated:
        entries = _scan_generic(path)
        if wanted is None:
            return entries
        return [(src, None if meta is None else tuple(map(meta.get, wanted)))
                for src, meta in entries]
    except (FilemapError, ValueError, IndexError, struct.error, RecursionError,
            OverflowError) as exc:
        raise FilemapError(f"{path}: corrupt filemap ({exc})") from exc


def _scan_generic(path: str) -> list[tuple[str, RawMeta | None]]:
    from . import kvtree

    tree = kvtree.read(path)
    files = tree.get("FILE")
    out: list[tuple[str, RawMeta | None]] = []
    for src, sub in [] if files is None else files.items():
        meta_tree = sub.get("META")
        meta = None
        if meta_tree is not None:
            meta = {}
            for key, vals in meta_tree.items():
                only = vals.keys()
                if len(only) == 1 and not vals[only[0]]:
                    meta[key.encode("utf-8", "surrogateescape")] = \
                        only[0].encode("utf-8", "surrogateescape")
                else:
                    meta[key.encode("utf-8", "surrogateescape")] = _MULTI
        out.append((src, meta))
    return out


def raw_int(meta: RawMeta, key: bytes) -> int | None:
    """An unsigned META value (C strtoul base 0; plain decimal on the fast path)."""
    return _raw_number(meta.get(key))


def _raw_number(value: Any) -> int | None:
    """:func:`raw_int` of one raw META value (None when absent or not a single value)."""
    if value is None or value is _MULTI:
        return None
    if value.isdigit() and (len(value) == 1 or value[0] != 0x30):
        return int(value)
    if value[:2] == b"0x" and 2 < len(value) <= 18 and _HEX.fullmatch(value, 2):  # CRC
        return int(value[2:], 16)
    from .kvtree import c_strtoul

    return c_strtoul(value.decode("utf-8", "surrogateescape"))


def raw_str(meta: RawMeta, key: bytes) -> str | None:
    value = meta.get(key)
    if value is None or value is _MULTI:
        return None
    return value.decode("utf-8", "surrogateescape")


def raw_complete(meta: RawMeta) -> bool:
    """``scr_meta_is_complete``: COMPLETE read with atoi is 1."""
    value = meta.get(b"COMPLETE")
    if value is None or value is _MULTI:
        return False
    return c_atoi(value.decode("utf-8", "surrogateescape")) == 1


class CopyAgent:
    """Copy one dataset from this node's cache to the prefix; see the module docstring.

    Filemaps are read one after the other and each one's files are handed to the copy
    threads at once, so copying starts with the first filemap instead of after the last.
    """

    def __init__(
        self,
        dataset_id: int,
        cntldir: str,
        prefix: str,
        bufsize: int = DEFAULT_BUF,
        crc: bool = True,
        sync: str = "fs",
        threads: int = 0,
        out: TextIO | None = None,
        err: TextIO | None = None,
        progress: bool = False,
        node: str | None = None,
        pipeline: str = "auto",
        procs: int = 0,
    ) -> None:
        self.dataset_id = dataset_id
        cpus = usable_cpus()
        # worker processes: each copies its share of the files in one thread
        self.procs = procs if procs > 0 else default_procs()
        if pipeline == "auto":  # a pipeline per file only when spare CPUs are left
            pipeline = "on" if cpus >= 4 and self.procs == 1 else "off"
        self.pipeline = pipeline == "on"
        self.cntldir = cntldir
        self.prefix = os.path.abspath(prefix)
        self.real_prefix = os.path.realpath(self.prefix)
        self.bufsize = max(int(bufsize), 4096)
        self.crc = crc
        self.sync = sync
        self.threads = threads or min(4, (os.cpu_count() or 1) + 1)
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.progress = progress
        self.node = node or _node_name()
        self.stats = Stats()
        self._out_lock = threading.Lock()
        # directory -> True if this run created it (then nothing of ours can be in it yet)
        self._dirs: dict[str, bool] = {}
        self._dirs_lock = threading.Lock()
        self._local = threading.local()
        self._real_dirs: dict[str, str] = {}  # prefix dir -> resolved, "" if outside
        self._nums: dict[Any, int | None] = {}  # META value -> raw_int of it
        self._strs: dict[bytes, str] = {}  # META PATH -> decoded
        self._orphan_check = False  # a worker without PDEATHSIG checks its parent itself
        # directory -> O_PATH descriptor, in a worker process only (one thread, Linux)
        self._dirfds: dict[str, int] | None = None
        self._euid, self._egid = os.geteuid(), os.getegid()
        umask = os.umask(0)  # read it once; a file is then created with its final mode
        os.umask(umask)
        self._umask = umask
        self.dset_dir = os.path.join(self.prefix, ".scr", f"scr.dataset.{dataset_id}")
        self._part_tag = _part_tag(self.node)
        # the dataset's cache directory: every source must lie in it (set by run())
        self._cache_head = self._real_cache = ""
        self._src_dirs_inside: dict[str, bool] = {}
        self.ranks: list[int] = []
        self.status = "ok"
        self.error: str | None = None

    # -- output -----------------------------------------------------------------------------
    def emit(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._out_lock:
            self.out.write(line + "\n")

    def complain(self, text: str) -> None:
        with self._out_lock:
            self.err.write(f"scr_copy: {self.node}: {text}\n")
            self.err.flush()

    # -- discovery --------------------------------------------------------------------------
    def cache_dir(self) -> str | None:
        """The dataset's cache directory from the node's cache index, or None if not held."""
        # the cache index read as a KVTree (DSET/<id>/PATH), as scr_copy reads it: the
        # control-file classes would add their imports to every agent's start-up
        from . import kvtree

        path = os.path.join(self.cntldir, "cindex.scrinfo")
        try:
            tree = kvtree.read(path)
        except FileNotFoundError:
            self.status = "no-cache-index"
            return None
        dsets = tree.get("DSET")
        record = None if dsets is None else dsets.get(str(self.dataset_id))
        if record is None:
            self.status = "not-cached"
            return None
        cachedir = record.value("PATH")
        if not cachedir:
            raise CopyError(f"{path}: dataset {self.dataset_id} has no PATH")
        # libscr's cache directory of a dataset is <cache base>/.../scr.dataset.<id>
        # (scr_cache_dir_get); anything else (say "/") would confine no source
        cachedir = os.path.normpath(cachedir)
        if not os.path.isabs(cachedir) or \
                os.path.basename(cachedir) != f"scr.dataset.{self.dataset_id}":
            raise CopyError(f"{path}: dataset {self.dataset_id} has PATH {cachedir!r}, not "
                            f"an absolute .../scr.dataset.{self.dataset_id} directory")
        self._cache_head = cachedir + "/"
        self._real_cache = os.path.realpath(cachedir)
        return cachedir

    def metadata_names(self, cachedir: str) -> tuple[list[tuple[int, str]], list[str]]:
        """([(rank, filemap name)], [redundancy file names]) in ``<cachedir>/.scr``."""
        meta_dir = os.path.join(cachedir, ".scr")
        try:
            names = sorted(os.listdir(meta_dir))
        except FileNotFoundError as exc:
            raise CopyError(f"cache directory {cachedir} has no .scr directory") from exc
        maps = sorted((int(m.group(1)), n) for n in names if (m := _FILEMAP_RE.match(n)))
        return maps, [n for n in names if _REDSET_RE.match(n)]

    def read_tasks(self, path: str, rank: int) -> list[FileTask]:
        """The files of one filemap."""
        return [self._task(rank, src, meta)
                for src, meta in scan_filemap_values(path, TASK_ORDER)]

    def _num(self, value: Any) -> int | None:
        """A META value as :func:`raw_int` reads it, remembered (values repeat a lot)."""
        number = _raw_number(value)
        if len(self._nums) < 4096:
            self._nums[value] = number
        return number

    def _task(self, rank: int, src: str, meta: tuple | None) -> FileTask:
        """The task of one filemap entry; ``meta``: its values of :data:`TASK_ORDER`."""
        if meta is None:
            return FileTask(rank, src, "", "", 0, None, problem="filemap entry has no META")
        # per file this is most of the agent's own work on small files: values repeated from
        # file to file (MODE, UID, RANK, seconds) are converted once, through self._nums
        (path, name, size_v, rank_v, crc_v, asec_v, ansec_v, msec_v, mnsec_v, mode_v, uid_v,
         gid_v, complete_v) = meta
        nums, num = self._nums, self._num
        if path is None or name is None or path is _MULTI or name is _MULTI:
            dst = ""
        else:
            path_s = self._strs.get(path)
            if path_s is None:
                path_s = self._strs[path] = path.decode("utf-8", "surrogateescape")
            name_s = name.decode("utf-8", "surrogateescape")
            dst = f"{path_s}/{name_s}" if path_s and path_s[-1] != "/" and \
                name_s[:1] != "/" else os.path.join(path_s, name_s)
        size = nums[size_v] if size_v in nums else num(size_v)
        meta_rank = nums[rank_v] if rank_v in nums else num(rank_v)
        if not self.crc or crc_v is None:
            crc = None
        elif crc_v is not _MULTI and crc_v[:2] == b"0x" and _HEX8.fullmatch(crc_v, 2):
            crc = int(crc_v, 16)  # SCR writes %#x: 0x and 8 digits at most
        else:
            crc = num(crc_v)
        atime = nums[asec_v] if asec_v in nums else num(asec_v)
        mtime = nums[msec_v] if msec_v in nums else num(msec_v)
        mode = nums[mode_v] if mode_v in nums else num(mode_v)
        uid = nums[uid_v] if uid_v in nums else num(uid_v)
        gid = nums[gid_v] if gid_v in nums else num(gid_v)
        ansec, mnsec = _raw_number(ansec_v), _raw_number(mnsec_v)
        bounds = None
        if (size or 0) > MAX_SIZE or (meta_rank or 0) >= MAX_RANKS or \
                (atime or 0) > MAX_SECS or (mtime or 0) > MAX_SECS or \
                (ansec or 0) > MAX_NSECS or (mnsec or 0) > MAX_NSECS:
            bounds = meta_bounds_problem(size, rank=meta_rank, secs=(atime, mtime),
                                         nsecs=(ansec, mnsec))
            size, atime, mtime = 0, None, None  # never used: the file fails
        task = FileTask(
            rank if meta_rank is None or bounds else meta_rank, src, dst, "", size or 0,
            None if crc is None else crc & 0xFFFFFFFF, mode, uid, gid,
            None if atime is None else atime * 10**9 + (ansec or 0),
            None if mtime is None else mtime * 10**9 + (mnsec or 0),
        )
        if bounds:
            task.problem = bounds
        elif not self._confined(task) and \
                os.path.normpath(task.src) != os.path.normpath(dst or "."):
            # (a bypass dataset's file is listed at its place in the prefix: verified there)
            task.problem = (f"cache path {src!r} is not inside the dataset's cache directory "
                            f"{self._cache_head[:-1]} (corrupt filemap)")
        elif not dst or dst[0] != "/":
            task.problem = f"META PATH/NAME {dst!r} is not an absolute path"
        elif size is None:
            task.problem = "META has no SIZE"
        elif complete_v != b"1" and not raw_complete({b"COMPLETE": complete_v}):
            task.problem = "META COMPLETE is not 1 (the file was not completely written)"
        else:
            placed = place_in_prefix(dst, self.prefix, self.real_prefix, self._real_dirs)
            if placed is None:
                task.problem = (f"destination {dst} is outside the prefix {self.prefix}, in "
                                "its .scr directory, or reached through a symlink that "
                                "leads out of it")
            else:
                task.dst, task.rel = placed
        return task

    def _confined(self, task: FileTask) -> bool:
        """Whether the task's source lies in the dataset's cache directory, as written and
        once its directory is resolved (a symlinked directory must not lead out of it); a
        path with "." or ".." components is replaced by its normal form first, so what is
        checked is what is opened. The file itself is opened with O_NOFOLLOW."""
        src = task.src
        if "/." in src or "//" in src:
            src = task.src = os.path.normpath(src) if src[:1] == "/" else src
        head = self._cache_head
        if not head or not src.startswith(head) or len(src) == len(head):
            return False
        parent = src[:src.rfind("/")]
        inside = self._src_dirs_inside.get(parent)
        if inside is None:  # one realpath and check per directory, not per file
            inside = self._src_dirs_inside[parent] = \
                _within(os.path.realpath(parent), self._real_cache)
        return inside

    # -- copying ----------------------------------------------------------------------------
    def _buffer(self) -> bytearray:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = bytearray(min(self.bufsize, STREAM_CHUNK))
        return buf

    def _ensure_dir(self, path: str) -> bool:
        """Create ``path`` if needed; True if this run created it (so it held nothing)."""
        fresh = self._dirs.get(path)
        if fresh is not None:
            return fresh
        with self._dirs_lock:
            fresh = self._dirs.get(path)
            if fresh is None:
                try:
                    os.mkdir(path)
                    fresh = True
                except FileExistsError:
                    fresh = False
                except FileNotFoundError:
                    os.makedirs(path, exist_ok=True)
                    fresh = True
                self._dirs[path] = fresh
        return fresh

    def _already_there(self, task: FileTask, st: os.stat_result | None) -> int | None:
        """The destination's inode when it already holds this file (a re-run after a
        kill), else None."""
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_size != task.size:
            return None
        if task.expected_crc is not None:
            # a content check is cheaper than a copy: one read instead of read + write;
            # the inode reported is that of the file summed
            size, crc, summed = file_crc_stat(task.dst, self.bufsize)
            return summed.st_ino if (size, crc) == (task.size, task.expected_crc) else None
        if task.mtime_ns is not None:
            return st.st_ino if st.st_mtime_ns == task.mtime_ns else None
        try:
            return st.st_ino if st.st_mtime_ns == os.stat(task.src).st_mtime_ns else None
        except OSError:
            return None

    def copy_one(self, task: FileTask) -> None:
        start = time.monotonic()
        try:
            if task.problem:
                raise CopyError(task.problem)
            cut = task.dst.rfind("/")  # an absolute, normalised path
            dst_dir = task.dst[:cut] or "/"
            fresh = self._dirs.get(dst_dir)
            if fresh is None:
                fresh = self._ensure_dir(dst_dir)
            if fresh:  # created by this run: nothing of ours can be there yet
                status, (crc, ino) = "copied", self._copy(task)
            else:
                dst_st: os.stat_result | None = None
                try:
                    dst_st = os.lstat(task.dst)
                except FileNotFoundError:
                    pass
                present = None
                if dst_st is not None and self._same_file(task, dst_st):
                    # bypass: the file was written straight to the prefix; verify only
                    status, (crc, ino) = "present", self._verify_in_place(task)
                elif (present := self._already_there(task, dst_st)) is not None:
                    status, crc, ino = "present", task.expected_crc, present
                    self._fix_mode(task)
                else:
                    status, (crc, ino) = "copied", self._copy(task)
        except (CopyError, OSError) as exc:
            text = str(exc) if isinstance(exc, CopyError) else \
                f"{exc.strerror or exc} ({getattr(exc, 'filename', None) or task.dst})"
            self._failed(task, text, time.monotonic() - start)
            return
        # the record of every file is one JSON line; formatted by hand because json.dumps
        # of a dict per file was a tenth of the time of copying a small file. "ino" is the
        # inode of the file the agent summed or wrote and saw in place after its rename: the
        # batch node takes the CRC as vouched only for that very file.
        crc_s = "null" if crc is None else f'"{crc_text(crc)}"'
        expected = "" if task.expected_crc is None else \
            f',"crc_expected":{crc_s}' if crc == task.expected_crc else \
            f',"crc_expected":"{crc_text(task.expected_crc)}"'
        line = (f'{{"event":"file","rank":{task.rank},"path":{_json_str(task.rel)},'
                f'"size":{task.size},"status":"{status}","crc":{crc_s},"ino":{ino},'
                f'"secs":{time.monotonic() - start:.6f}{expected}}}\n')
        s = self.stats
        with s.lock:
            s.files_done += 1
            s.bytes_done += task.size
            if status == "copied":
                s.copied += 1
                s.bytes_copied += task.size
            else:
                s.present += 1
        with self._out_lock:
            self.out.write(line)

    def _failed(self, task: FileTask, text: str, secs: float) -> None:
        record: dict[str, Any] = {"event": "file", "rank": task.rank, "path": task.rel,
                                  "size": task.size, "status": "failed", "error": text,
                                  "src": task.src, "dst": task.dst, "secs": round(secs, 6)}
        if task.expected_crc is not None:
            record["crc_expected"] = crc_text(task.expected_crc)
        where = task.rel or task.dst or task.src
        s = self.stats
        with s.lock:
            s.files_done += 1
            s.bytes_done += task.size
            s.failed += 1
            s.failures.append({"rank": task.rank, "path": where, "error": text})
        self.emit(record)
        self.complain(f"FAILED rank {task.rank} {where}: {text}")

    @staticmethod
    def _same_file(task: FileTask, dst_st: os.stat_result) -> bool:
        try:
            src_st = os.stat(task.src)
        except OSError:
            return False
        return (dst_st.st_dev, dst_st.st_ino) == (src_st.st_dev, src_st.st_ino)

    def _verify_in_place(self, task: FileTask) -> tuple[int | None, int]:
        """(CRC or None, inode) of a file written straight to the prefix."""
        size, crc, st = file_crc_stat(task.dst, self.bufsize)
        if size != task.size:
            raise CopyError(f"file has {size} bytes, filemap SIZE says {task.size}")
        _check_crc(task, crc, "file")
        return (crc if self.crc else None), st.st_ino

    def _fix_mode(self, task: FileTask) -> None:
        if task.mode is not None:
            want = task.mode & _COPY_MODE_BITS
            st = os.lstat(task.dst)
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != want:
                os.chmod(task.dst, want)

    def _part(self, dst: str) -> str:
        cut = dst.rfind("/") + 1
        return dst[:cut] + part_name(dst[cut:], self._part_tag)

    def _copy(self, task: FileTask) -> tuple[int | None, int]:
        """Copy one file through a part file of this process's own; (CRC or None, inode
        of the file in place)."""
        part = self._part(task.dst)
        if task.size <= self.bufsize and task.mode is not None and \
                task.atime_ns is not None and task.mtime_ns is not None:
            done = self._copy_whole(task, part)
            if done is not _RETRY:
                return done  # type: ignore[return-value]
        try:
            src_fd, src_st = open_regular(task.src)
        except OSError as exc:
            raise CopyError(f"cache file unreadable: {exc.strerror}") from exc
        created = False
        try:
            if src_st.st_size != task.size:
                raise CopyError(f"cache file has {src_st.st_size} bytes, filemap SIZE "
                                f"says {task.size}")
            mode = (task.mode if task.mode is not None else src_st.st_mode) & _COPY_MODE_BITS
            dst_fd = self._create_part(part, mode)
            created = True
            try:
                if task.size <= self.bufsize:
                    total, crc = _copy_small(src_fd, dst_fd, task.size, self.crc)
                elif self.pipeline and task.size > self.bufsize * PIPELINE_MIN_BUFFERS:
                    total, crc = _copy_pipelined(src_fd, dst_fd, self.bufsize, self.crc)
                else:
                    if _FADV_SEQUENTIAL is not None:  # as cp: more read-ahead from disk
                        try:
                            os.posix_fadvise(src_fd, 0, 0, _FADV_SEQUENTIAL)
                        except OSError:
                            pass
                    total, crc = _copy_simple(src_fd, dst_fd, self._buffer(), self.crc,
                                              task.size)
                if total != task.size:
                    raise CopyError(f"read {total} bytes from the cache file, filemap SIZE "
                                    f"says {task.size} (changed while copying?)")
                if self.crc:
                    _check_crc(task, crc, "cache file")
                self._apply_meta(dst_fd, task, src_st, mode)
                if self.sync == "file":
                    os.fsync(dst_fd)
                written = os.fstat(dst_fd)
            finally:
                os.close(dst_fd)
            os.rename(part, task.dst)
            created = False
            ino = _check_placed(task.dst, written, None)
        except BaseException:
            if created:
                try:
                    os.unlink(part)
                except OSError:
                    pass
            raise
        finally:
            os.close(src_fd)
        return (crc if self.crc else None), ino

    @staticmethod
    def _create_part(part: str, mode: int, dir_fd: int | None = None) -> int:
        """Open a new part file (O_EXCL). One of this very name can only be left by a dead
        process that had this pid on this node: it is replaced."""
        try:
            return os.open(part, _PART_FLAGS, mode, dir_fd=dir_fd)
        except FileExistsError:
            os.unlink(part, dir_fd=dir_fd)
            return os.open(part, _PART_FLAGS, mode, dir_fd=dir_fd)

    def _copy_whole(self, task: FileTask, part: str) -> Any:
        """A small file whose META gives mode and times, the common case: one read of
        size + 1 bytes (which proves the size); CRC checked before the part file is
        created. Anything unexpected (a size other than the filemap's, a read error)
        returns ``_RETRY``: :meth:`_copy`'s general path then tells what is wrong, with the
        messages it always gave.

        In a worker process the source and destination directories are opened once
        (``O_PATH``) and files are opened and renamed relative to them, which saves the
        kernel three walks of long paths per file (~3 us here)."""
        dirfds = self._dirfds
        src_dir_fd = dst_dir_fd = None
        src_name, dst_name, part_name_ = task.src, task.dst, part
        try:
            if dirfds is not None:
                cut = task.src.rfind("/")
                src_dir_fd = self._dir_fd(task.src[:cut] or "/")
                src_name = task.src[cut + 1:]
            if self._euid == 0:  # the cache file's owner is the copy's
                src_fd, src_st = open_regular(src_name, dir_fd=src_dir_fd)
            else:  # no fstat: a FIFO (O_NONBLOCK) reads short and takes the general path,
                # which refuses it; only root can make a device node
                src_fd, src_st = os.open(src_name, _SRC_FLAGS, dir_fd=src_dir_fd), None
        except OSError as exc:
            raise CopyError(f"cache file unreadable: {exc.strerror}") from exc
        try:
            data = os.read(src_fd, task.size + 1)
        except OSError:
            return _RETRY
        finally:
            os.close(src_fd)
        if len(data) != task.size:
            return _RETRY
        crc = _crc32(data) if self.crc else 0
        if self.crc:
            _check_crc(task, crc, "cache file")
        mode = task.mode & _COPY_MODE_BITS  # type: ignore[operator]
        try:
            if dirfds is not None:
                cut = task.dst.rfind("/")
                dst_dir_fd = self._dir_fd(task.dst[:cut] or "/")
                dst_name = task.dst[cut + 1:]
                part_name_ = part[cut + 1:]
            dst_fd = self._create_part(part_name_, mode, dst_dir_fd)
        except OSError as exc:  # named by its full path, as on the general path
            raise OSError(exc.errno, exc.strerror, part) from exc
        created = True
        try:
            try:
                _write_bytes(dst_fd, data)
                self._apply_meta(dst_fd, task, src_st, mode)
                if self.sync == "file":
                    os.fsync(dst_fd)
                written = os.fstat(dst_fd)
            finally:
                os.close(dst_fd)
            try:
                os.rename(part_name_, dst_name, src_dir_fd=dst_dir_fd, dst_dir_fd=dst_dir_fd)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, part) from exc
            created = False
            ino = _check_placed(dst_name, written, dst_dir_fd)
        except BaseException:
            if created:
                try:
                    os.unlink(part_name_, dir_fd=dst_dir_fd)
                except OSError:
                    pass
            raise
        return (crc if self.crc else None), ino

    def _dir_fd(self, path: str) -> int:
        """An ``O_PATH`` descriptor of a directory, kept (at most 256, then all closed)."""
        dirfds = self._dirfds
        fd = dirfds.get(path)  # type: ignore[union-attr]
        if fd is None:
            if len(dirfds) >= 256:  # type: ignore[arg-type]
                for old in dirfds.values():  # type: ignore[union-attr]
                    os.close(old)
                dirfds.clear()  # type: ignore[union-attr]
            fd = os.open(path, _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            dirfds[path] = fd  # type: ignore[index]
        return fd

    def _apply_meta(self, fd: int, task: FileTask, src_st: os.stat_result | None,
                    mode: int) -> None:
        # as scr_meta_apply_stat: owner (only root may), then mode (chown clears set-id
        # bits), then times last so nothing after them touches mtime. The owner is the
        # cache file's, never META UID/GID: a filemap must not make root give a copy to
        # someone else (say UID 0 with mode 04755); set-id bits are never copied.
        chowned = False
        if self._euid == 0 and src_st is not None and \
                (src_st.st_uid, src_st.st_gid) != (self._euid, self._egid):
            try:
                os.fchown(fd, src_st.st_uid, src_st.st_gid)
                chowned = True
            except OSError:
                pass
        if chowned or mode & self._umask:
            os.fchmod(fd, mode)  # open() already gave mode & ~umask
        atime = task.atime_ns if task.atime_ns is not None else \
            src_st.st_atime_ns  # type: ignore[union-attr]
        mtime = task.mtime_ns if task.mtime_ns is not None else \
            src_st.st_mtime_ns  # type: ignore[union-attr]
        os.utime(fd, ns=(atime, mtime))

    def copy_meta_file(self, cachedir: str, name: str) -> bool:
        """Copy a filemap or redundancy file into the prefix's dataset directory."""
        src = os.path.join(cachedir, ".scr", name)
        dst = os.path.join(self.dset_dir, name)
        part = os.path.join(self.dset_dir, part_name(name, self._part_tag))
        created = False
        try:
            data = read_regular(src)
            try:
                if read_regular(dst) == data:
                    self.emit({"event": "meta", "name": name, "status": "present"})
                    return True
            except FileNotFoundError:
                pass
            except OSError:
                pass  # not a regular file, say: replaced by the rename below
            fd = self._create_part(part, 0o666 & _COPY_MODE_BITS)
            created = True
            try:
                _write_bytes(fd, data)
                if self.sync == "file":
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(part, dst)
            created = False
        except OSError as exc:
            text = f"{exc.strerror or exc} ({getattr(exc, 'filename', None) or dst})"
            self.emit({"event": "meta", "name": name, "status": "failed", "error": text})
            self.complain(f"FAILED {name}: {text}")
            with self.stats.lock:
                self.stats.failed += 1
                self.stats.failures.append({"rank": None, "path": f".scr/scr.dataset."
                                            f"{self.dataset_id}/{name}", "error": text})
            if created:
                try:
                    os.unlink(part)
                except OSError:
                    pass
            return False
        self.emit({"event": "meta", "name": name, "status": "copied", "size": len(data)})
        return True

    # -- progress ---------------------------------------------------------------------------
    def _progress_loop(self, done: threading.Event, t0: float) -> None:
        from .units import format_bytes

        while True:
            finished = done.wait(0.5)
            s = self.stats
            secs = max(time.monotonic() - t0, 1e-6)
            with self._out_lock:
                self.err.write(
                    f"\rscr_copy: {format_bytes(s.bytes_done)} of {format_bytes(s.bytes_total)}"
                    f", {s.files_done}/{s.files_total} files, "
                    f"{format_bytes(int(s.bytes_copied / secs))}/s   ")
                self.err.flush()
            if finished:  # the last line shows the totals
                return

    # -- main -------------------------------------------------------------------------------
    def run(self) -> int:
        t0 = self._t0 = time.monotonic()
        try:
            cachedir = self.cache_dir()
            maps, redsets = self.metadata_names(cachedir) if cachedir else ([], [])
        except Exception as exc:  # corrupt cindex, unreadable cache dir
            self.status = "error"
            self.error = str(exc)
            self.complain(f"cannot read the cache of dataset {self.dataset_id}: {exc}")
            return self._finish(t0)
        if not cachedir or not (maps or redsets):
            return self._finish(t0)
        try:
            os.makedirs(self.dset_dir, exist_ok=True)
        except OSError as exc:
            self.status = "error"
            self.error = f"cannot create {self.dset_dir}: {exc.strerror}"
            self.complain(self.error)
            return self._finish(t0)
        for name in redsets:
            self.copy_meta_file(cachedir, name)
        if self._forks(maps):  # progress is shown while the workers' reports are read
            self._copy_forked(cachedir, maps)
        else:
            with self._progress_shown():
                self._copy_threaded(cachedir, maps)
        if self.sync == "fs" and self.stats.copied:
            try:
                _syncfs(self.prefix)
            except OSError as exc:
                self.status = "error"
                self.error = f"cannot sync {self.prefix}: {exc.strerror}"
                self.complain(self.error)
        return self._finish(t0)

    def _forks(self, maps: Sequence[tuple[int, str]]) -> bool:
        return self.procs > 1 and bool(maps) and hasattr(os, "fork")

    @contextmanager
    def _progress_shown(self) -> Iterator[None]:
        """With ``progress``, a thread redraws the progress line while the body runs."""
        if not self.progress:
            yield
            return
        done = threading.Event()
        ticker = threading.Thread(target=self._progress_loop, args=(done, self._t0),
                                  daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()
            self.err.write("\n")

    # -- worker processes -------------------------------------------------------------------
    def plan(self, cachedir: str, maps: Sequence[tuple[int, str]],
             nprocs: int) -> list[list[tuple[int, str, int, int]]]:
        """Each worker's share: ``[(rank, filemap name, part, parts)]``.

        With at least as many filemaps as workers, whole filemaps are dealt out, biggest
        (most files) first, each to the least loaded worker, so a worker writes its ranks'
        directories alone. With fewer, every worker takes part ``i`` of ``nprocs`` of every
        filemap (see :func:`share_of`).
        """
        if len(maps) < nprocs:
            return [[(rank, name, i, nprocs) for rank, name in maps] for i in range(nprocs)]
        weighted = []
        for order, (rank, name) in enumerate(maps):
            try:
                weight = os.path.getsize(os.path.join(cachedir, ".scr", name))
            except OSError:
                weight = 0
            weighted.append((-weight, order, rank, name))
        weighted.sort()
        loads = [0] * nprocs
        shares: list[list[tuple[int, int, str]]] = [[] for _ in range(nprocs)]
        for neg, order, rank, name in weighted:
            i = loads.index(min(loads))
            loads[i] -= neg
            shares[i].append((order, rank, name))
        return [[(rank, name, 0, 1) for _, rank, name in sorted(sh)] for sh in shares]

    def _copy_forked(self, cachedir: str, maps: Sequence[tuple[int, str]]) -> None:
        """Copy in ``procs`` forked worker processes, each its share in one thread.

        Threads in one process serialise on the GIL, and the interpreter's work per file
        (and CRC32 with zlib's) is most of the time; processes run it on every CPU. A
        filemap is copied before any of its files, so the batch node knows what to expect
        of every rank that has data in the prefix: by the worker that holds the whole
        filemap, or here before forking when filemaps are split; each worker reads the
        filemaps of its share itself. Workers send their JSON lines, stderr lines,
        progress and final counts over a pipe in frames (:data:`_HDR`); this process writes
        them out in arrival order.
        """
        nprocs = self.procs
        shares = self.plan(cachedir, maps, nprocs)
        dealt = len(maps) >= nprocs  # else every worker takes a part of every filemap
        for rank, name in maps:
            self.ranks.append(rank)
            if not dealt:  # before any worker copies a file of it
                self.copy_meta_file(cachedir, name)
        self.out.flush()
        self.err.flush()
        workers: dict[int, tuple[int, int]] = {}  # read fd -> (worker index, pid)
        collected = False
        parent = os.getpid()
        try:
            for i, share in enumerate(shares):
                rfd, wfd = os.pipe()
                _widen_pipe(wfd)
                pid = os.fork()
                if pid == 0:  # the worker: never returns
                    code = 1
                    try:
                        self._orphan_check = not _die_with_parent(parent)
                        os.close(rfd)
                        for other in workers:
                            os.close(other)
                        self._worker_main(cachedir, share, wfd, parent)
                        code = 0
                    finally:
                        os._exit(code)
                os.close(wfd)
                workers[rfd] = (i, pid)
            self._collect(workers)
            collected = True
        finally:
            for rfd, (_i, pid) in workers.items():
                try:
                    os.close(rfd)
                except OSError:
                    pass
                self._reap(pid, kill=not collected)

    def _reap(self, pid: int, kill: bool) -> None:
        """Wait for a worker; ``kill``: stop it first (this process is giving up)."""
        try:
            if kill:
                os.kill(pid, signal.SIGTERM)
            _, status = os.waitpid(pid, 0)
        except (ChildProcessError, ProcessLookupError):
            return
        if kill:
            return
        if status:
            why = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) \
                else f"exit code {os.WEXITSTATUS(status)}"
            self._worker_failed(f"copy worker {pid} ended with {why}")

    def _worker_failed(self, text: str) -> None:
        if self.status != "error":
            self.status = "error"
            self.error = text
        self.complain(text)

    def _collect(self, workers: dict[int, tuple[int, int]]) -> None:
        """Read every worker's frames until all pipes are closed."""
        import selectors

        sel = selectors.DefaultSelector()
        bufs: dict[int, bytearray] = {}
        progress: dict[int, tuple[int, ...]] = {}
        finished: set[int] = set()
        for rfd in workers:
            sel.register(rfd, selectors.EVENT_READ)
            bufs[rfd] = bytearray()
        try:
            with self._progress_shown():
                while sel.get_map():
                    for key, _ in sel.select():
                        rfd = key.fd
                        data = os.read(rfd, 1 << 20)
                        if not data:
                            sel.unregister(rfd)
                            continue
                        buf = bufs[rfd]
                        buf += data
                        pos, end = 0, len(buf)
                        while end - pos >= _HDR.size:
                            size, kind = _HDR.unpack_from(buf, pos)
                            if end - pos - _HDR.size < size:
                                break
                            start = pos + _HDR.size
                            payload = bytes(buf[start:start + size])
                            pos = start + size
                            if kind == 0x4F:  # "O": JSON lines for stdout
                                text = payload.decode("utf-8", "surrogateescape")
                                with self._out_lock:
                                    self.out.write(text)
                            elif kind == 0x45:  # "E": lines for stderr
                                with self._out_lock:
                                    self.err.write(payload.decode("utf-8", "surrogateescape"))
                                    self.err.flush()
                            elif kind == 0x50:  # "P": progress counters
                                progress[rfd] = _PROGRESS.unpack(payload)
                                self._sum_progress(progress)
                            elif kind == 0x53:  # "S": the worker's final counts
                                rec = json.loads(payload)
                                progress[rfd] = tuple(rec["progress"])
                                self._sum_progress(progress)
                                self._merge(rec)
                                finished.add(rfd)
                        del buf[:pos]
        finally:
            sel.close()
        for rfd, (i, pid) in workers.items():
            if rfd not in finished:
                self._worker_failed(f"copy worker {i} (pid {pid}) ended without reporting "
                                    "its counts; its files may be missing")

    def _sum_progress(self, progress: dict[int, tuple[int, ...]]) -> None:
        s = self.stats
        totals = [sum(p[k] for p in progress.values()) for k in range(5)]
        with s.lock:
            s.files_total, s.bytes_total, s.files_done, s.bytes_done, s.bytes_copied = totals

    def _merge(self, rec: dict[str, Any]) -> None:
        s = self.stats
        with s.lock:
            for key in ("copied", "present", "failed"):
                setattr(s, key, getattr(s, key) + rec[key])
            s.failures.extend(rec["failures"])
        if rec["status"] == "error" and self.status != "error":
            self.status, self.error = "error", rec["error"]

    def _worker_main(self, cachedir: str, share: Sequence[tuple[int, str, int, int]],
                     wfd: int, parent: int) -> None:
        """In a forked worker: copy the files of ``share``, reporting through ``wfd``."""
        self.stats = Stats()
        self._part_tag = _part_tag(self.node)  # this process's own part files
        self._out_lock = threading.Lock()
        self._dirs_lock = threading.Lock()
        if _O_PATH and os.open in os.supports_dir_fd and os.rename in os.supports_dir_fd:
            self._dirfds = {}
        self._local = threading.local()
        self.progress = False
        out = _FrameWriter(wfd, 0x4F, 64 * 1024, self)
        self.out = out  # type: ignore[assignment]
        self.err = _FrameWriter(wfd, 0x45, 0, None)  # type: ignore[assignment]
        status, error = "ok", None
        for rank, name, part, parts in share:
            if parts == 1:  # a whole filemap: copied here, before its files
                self.copy_meta_file(cachedir, name)
            try:
                entries = scan_filemap_values(os.path.join(cachedir, ".scr", name),
                                              TASK_ORDER)
            except Exception as exc:
                status, error = "error", f"cannot read {name}: {exc}"
                if part == 0:  # every worker reading this filemap fails alike: tell once
                    self.complain(error)
                continue
            if parts > 1:  # tasks only for this worker's part (sizes as _task reads them)
                sizes = [(_raw_number(meta[2]) or 0) if meta is not None else 0
                         for _, meta in entries]  # meta[2]: SIZE (TASK_ORDER)
                entries = [entries[i] for i in share_indexes(sizes, part, parts)]
            tasks = [self._task(rank, src, meta) for src, meta in entries]
            s = self.stats
            s.files_total += len(tasks)
            s.bytes_total += sum(t.size for t in tasks)
            out.send_progress()
            for task in tasks:
                if self._orphan_check and os.getppid() != parent:  # the agent was killed
                    os._exit(1)
                self.copy_one(task)
        out.flush()
        s = self.stats
        _send(wfd, 0x53, json.dumps({
            "progress": [s.files_total, s.bytes_total, s.files_done, s.bytes_done,
                         s.bytes_copied],
            "copied": s.copied, "present": s.present, "failed": s.failed,
            "failures": s.failures, "status": status, "error": error}).encode())
        os.close(wfd)

    # -- threads in this process ------------------------------------------------------------
    def _copy_threaded(self, cachedir: str, maps: Sequence[tuple[int, str]]) -> None:
        """Read the filemaps in this thread; copy in workers as soon as each one is read.

        Small files go to ``threads`` workers (their system calls overlap); large ones to
        one worker that streams them through the read/CRC/write pipeline.
        """
        import queue

        small: queue.Queue = queue.Queue()
        large: queue.Queue = queue.Queue()

        def worker(q: queue.Queue) -> None:
            while True:
                task = q.get()
                if task is None:
                    return
                self.copy_one(task)

        workers = [threading.Thread(target=worker, args=(small,), daemon=True)
                   for _ in range(max(1, self.threads))]
        workers.append(threading.Thread(target=worker, args=(large,), daemon=True))
        for w in workers:
            w.start()
        limit = self.bufsize * PIPELINE_MIN_BUFFERS
        try:
            for rank, name in maps:
                self.ranks.append(rank)
                # the filemap first: the batch node then knows what to expect of this rank
                self.copy_meta_file(cachedir, name)
                try:
                    tasks = self.read_tasks(os.path.join(cachedir, ".scr", name), rank)
                except Exception as exc:
                    self.status = "error"
                    self.error = f"cannot read {name}: {exc}"
                    self.complain(self.error)
                    continue
                with self.stats.lock:
                    self.stats.files_total += len(tasks)
                    self.stats.bytes_total += sum(t.size for t in tasks)
                for task in tasks:
                    (large if task.size > limit else small).put(task)
        finally:
            for _ in range(len(workers) - 1):
                small.put(None)
            large.put(None)
            for w in workers:
                w.join()

    def _finish(self, t0: float) -> int:
        s = self.stats
        secs = time.monotonic() - t0
        rc = EXIT_OK if s.failed == 0 and self.status != "error" else EXIT_FAILED
        self.emit({
            "event": "summary", "node": self.node, "dataset": self.dataset_id, "rc": rc,
            "status": self.status, "error": self.error, "ranks": self.ranks,
            "files": s.files_total, "copied": s.copied, "present": s.present,
            "failed": s.failed, "bytes": s.bytes_total, "bytes_copied": s.bytes_copied,
            "secs": round(secs, 6),
            "bytes_per_sec": round(s.bytes_copied / secs) if secs > 0 else 0,
            "failures": s.failures, "crc_impl": CRC_IMPL if self.crc else None,
        })
        self.out.flush()
        return rc


# --------------------------------------------------------------------------- workers


def share_of(tasks: Sequence[FileTask], part: int, parts: int) -> list[FileTask]:
    """Part ``part`` of ``parts`` of a filemap's files: consecutive runs of about equal cost
    (size + :data:`FILE_COST` per file), so files of one directory stay mostly together.
    Every worker computes the same split from the same filemap."""
    return [tasks[i] for i in share_indexes([t.size for t in tasks], part, parts)]


def share_indexes(sizes: Sequence[int], part: int, parts: int) -> list[int]:
    """The indexes :func:`share_of` takes, from the files' sizes."""
    total = sum(sizes) + FILE_COST * len(sizes)
    out = []
    acc = 0
    for i, size in enumerate(sizes):
        cost = size + FILE_COST
        # the part holding the middle of this file's cost
        if min(parts - 1, (2 * acc + cost) * parts // (2 * total)) == part:
            out.append(i)
        acc += cost
    return out


def _die_with_parent(parent: int) -> bool:
    """In a worker: be killed when the agent dies (Linux ``PR_SET_PDEATHSIG``), as a
    killed agent (a timeout, ^C) must not leave copies running behind it. False where
    that is not available: the worker then checks its parent before every file."""
    armed = False
    try:
        import ctypes

        armed = ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) == 0
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the agent died before prctl
        os._exit(1)
    return armed


def _widen_pipe(fd: int) -> None:
    """Make a worker's pipe hold 1 MiB (Linux ``F_SETPIPE_SZ``; 64 KiB by default), so a
    worker seldom waits for the agent to be scheduled on a busy machine."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: the default size works


def _send(fd: int, kind: int, payload: bytes) -> None:
    view = memoryview(_HDR.pack(len(payload), kind) + payload)
    while view:
        view = view[os.write(fd, view):]


class _FrameWriter:
    """A worker's stdout or stderr: text sent to the agent process as frames.

    Stdout text is sent when ``limit`` characters have gathered (with the progress
    counters first); stderr (``limit`` 0) at every flush.
    """

    def __init__(self, fd: int, kind: int, limit: int, agent: CopyAgent | None) -> None:
        self.fd, self.kind, self.limit, self.agent = fd, kind, limit, agent
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.size += len(text)
        if self.limit and self.size >= self.limit:
            self.flush()
        return len(text)

    def send_progress(self) -> None:
        if self.agent is not None:
            s = self.agent.stats
            _send(self.fd, 0x50, _PROGRESS.pack(s.files_total, s.bytes_total, s.files_done,
                                                s.bytes_done, s.bytes_copied))

    def flush(self) -> None:
        if not self.parts:
            return
        text = "".join(self.parts)
        self.parts.clear()
        self.size = 0
        self.send_progress()
        _send(self.fd, self.kind, text.encode("utf-8", "surrogateescape"))

    def isatty(self) -> bool:
        return False


# --------------------------------------------------------------------------- command line


def control_dir_for(prefix: str, jobid: str, user: str | None) -> str:
    """``<SCR_CNTL_BASE>/<user>/scr.<jobid>`` as this node sees it."""
    from .params import Params

    return Params(prefix=prefix).control_dir(user=user, jobid=jobid)


def build_parser() -> argparse.ArgumentParser:
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    p = _Parser(prog="python -m scr_core.copy_agent",
                description="Copy one cached SCR dataset from this node to the prefix "
                            "(SCR's scr_copy).",
                epilog="Exit codes: 0 all files of this node copied and verified (or none "
                       "held), 1 some file failed (named), 2 usage.")
    p.add_argument("-i", "--id", type=int, required=True, help="dataset id (> 0)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-c", "--cntldir", help="the node's control directory")
    where.add_argument("--jobid", help="compute the control directory from SCR_CNTL_BASE "
                                       "on this node: <base>/<user>/scr.<jobid>")
    p.add_argument("--user", help="with --jobid: user name (default $USER)")
    p.add_argument("-d", "--prefix", required=True, help="SCR prefix directory")
    p.add_argument("-b", "--buf", default=str(DEFAULT_BUF),
                   help="copy buffer size, units allowed (default 1MiB)")
    crc = p.add_mutually_exclusive_group()
    crc.add_argument("-r", "--crc", dest="crc", action="store_true", default=True,
                     help="compute CRC32 and compare with the filemap (default)")
    crc.add_argument("--no-crc", dest="crc", action="store_false", help="skip CRC32")
    p.add_argument("--sync", choices=("fs", "file", "none"), default="fs",
                   help="durability: one syncfs at the end (default), fsync per file, "
                        "or none")
    p.add_argument("--pipeline", choices=("auto", "on", "off"), default="auto",
                   help="read/CRC/write of a large file in three threads (auto: with 4 or "
                        "more CPUs)")
    p.add_argument("--procs", type=int, default=0,
                   help="worker processes, each copying a share of the files (default: one "
                        f"per usable CPU, at most {MAX_AUTO_PROCS}; 1: copy in this process)")
    p.add_argument("--timeout", type=int, default=0,
                   help="end with exit code 1 after this many seconds (default: no limit)")
    p.add_argument("--threads", type=int, default=0,
                   help="with --procs 1: threads for small files (default: CPUs + 1, at "
                        "most 4)")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", default=None,
                       help="show progress on stderr even when it is not a terminal")
    shown.add_argument("-q", "--quiet", dest="progress", action="store_false",
                       help="no progress")
    p.add_argument("down", nargs="*", metavar="DOWN_NODE",
                   help="nodes known down; an agent on one of them does nothing")
    return p


_VALUE_OPTS = {"-i": "id", "--id": "id", "-c": "cntldir", "--cntldir": "cntldir",
               "--jobid": "jobid", "--user": "user", "-d": "prefix", "--prefix": "prefix",
               "-b": "buf", "--buf": "buf", "--sync": "sync", "--pipeline": "pipeline",
               "--procs": "procs", "--threads": "threads", "--timeout": "timeout"}
_FLAG_OPTS = {"-r": ("crc", True), "--crc": ("crc", True), "--no-crc": ("crc", False),
              "--progress": ("progress", True), "-q": ("progress", False),
              "--quiet": ("progress", False)}
_CHOICES = {"sync": ("fs", "file", "none"), "pipeline": ("auto", "on", "off")}


def fast_args(argv: Sequence[str]) -> Any:
    """The command line as :func:`build_parser` reads it, for the plain forms scavenge
    and scripts use, without importing argparse (~10 ms of the agent's start-up); None
    for anything else (abbreviations, ``--help``, errors), which argparse then handles."""
    from types import SimpleNamespace

    ns: dict[str, Any] = dict(id=None, cntldir=None, jobid=None, user=None, prefix=None,
                              buf=str(DEFAULT_BUF), crc=True, sync="fs", pipeline="auto",
                              procs=0, threads=0, timeout=0, progress=None, down=[])
    seen: set[str] = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-"):
            ns["down"].append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in _FLAG_OPTS and not eq:
            key, flag = _FLAG_OPTS[name]
            if key in seen and ns[key] != flag:  # mutually exclusive pair: argparse says
                return None
            seen.add(key)
            ns[key] = flag
            continue
        key = _VALUE_OPTS.get(name)
        if key is None:
            return None
        if not eq:
            if i >= len(argv) or argv[i].startswith("-"):
                return None  # argparse decides whether "-x" is a value or an option
            value = argv[i]
            i += 1
        if key in ("id", "procs", "threads", "timeout"):
            try:
                ns[key] = int(value)
            except ValueError:
                return None
        elif key in _CHOICES and value not in _CHOICES[key]:
            return None
        else:
            ns[key] = value
    if ns["id"] is None or ns["prefix"] is None or \
            (ns["cntldir"] is None) == (ns["jobid"] is None):
        return None
    return SimpleNamespace(**ns)


def main(argv: Optional[Sequence[str]] = None,
         out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    args = fast_args(sys.argv[1:] if argv is None else list(argv))
    if args is None:
        args = build_parser().parse_args(argv)

    class _Errors:  # argparse's usage errors, its parser built only when needed
        @staticmethod
        def error(message: str) -> None:
            build_parser().error(message)

    p = _Errors
    err = err or sys.stderr
    if args.id <= 0:
        p.error("--id must be a positive dataset id")
    down: list[str] = []
    # scavenge's form needs no parser imports (isascii: int() takes other scripts' digits)
    if args.buf.isascii() and args.buf.isdigit() and not args.down:
        bufsize = int(args.buf)
    else:
        from .errors import UsageError
        from .hostlist import expand
        from .units import parse_bytes

        try:
            bufsize = parse_bytes(args.buf)
            for text in args.down:
                down += expand(text)
        except UsageError as exc:
            p.error(str(exc))
    if bufsize < 1:
        p.error("--buf must be at least 1 byte")
    if args.threads < 0:
        p.error("--threads must not be negative")
    if args.procs < 0:
        p.error("--procs must not be negative")
    if args.timeout < 0:
        p.error("--timeout must not be negative")
    prefix = os.path.abspath(args.prefix)
    node = _node_name()
    if node in down or node.split(".")[0] in down:
        agent = CopyAgent(args.id, args.cntldir or "", prefix, out=out, err=err, node=node)
        agent.status = "node-down"
        return agent._finish(time.monotonic())
    if args.cntldir:
        cntldir = args.cntldir
    else:
        try:
            cntldir = control_dir_for(prefix, args.jobid, args.user)
        except Exception as exc:  # config errors on this node
            err.write(f"scr_copy: {node}: cannot tell the control directory: {exc}\n")
            return EXIT_FAILED
    if args.timeout:
        _end_after(args.timeout, node, err)
    progress = args.progress
    if progress is None:
        progress = err.isatty()
    agent = CopyAgent(args.id, cntldir, prefix, bufsize=bufsize, crc=args.crc,
                      sync=args.sync, threads=args.threads, out=out, err=err,
                      progress=progress, node=node, pipeline=args.pipeline,
                      procs=args.procs)
    return agent.run()


def _end_after(seconds: int, node: str, err: TextIO) -> None:
    """Exit 1 after ``seconds`` whatever the agent is doing (a read that hangs on a dead
    file system): its workers die with it, its part files are removed by the next
    scavenge, and the batch node reports the node."""
    def expired(_signum: int, _frame: Any) -> None:
        try:
            err.write(f"scr_copy: {node}: timed out after {seconds} s\n")
            err.flush()
        finally:
            os._exit(EXIT_FAILED)

    signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)


def run_cli(main_fn: Callable[[], int] = main) -> None:
    try:
        code = main_fn()
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    run_cli()
