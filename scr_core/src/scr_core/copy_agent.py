"""The per-node copy agent: what SCR's ``scr_copy`` does, run ON each node by scavenge.

::

    python -m scr_core.copy_agent --id ID (--cntldir DIR | --jobid JOBID [--user USER])
        --prefix PREFIX [--buf BYTES] [--crc | --no-crc] [--sync fs|file|none]
        [--threads N] [--progress | --quiet] [DOWN_NODE ...]

For dataset ID it reads ``<cntldir>/cindex.scrinfo`` (the node's cache index) to find the
dataset's cache directory, then for each ``<cachedir>/.scr/filemap_<rank>``:

* copies the filemaps and the redundancy files (``reddesc*.er.*``) into
  ``<prefix>/.scr/scr.dataset.<id>/`` first, so the batch node learns which files to expect
  even if this agent dies half way;
* checks every file: META ``COMPLETE`` is 1, the cache file's size equals META ``SIZE``;
* copies it to its original place ``META PATH/NAME``, which must lie under the prefix,
  with ``--buf``-sized reads, computing CRC32 of exactly the bytes written and comparing
  it with META ``CRC`` when the filemap has one (``--crc``, the default);
* writes to ``.<name>.scr_copy.part`` next to the destination, applies owner (when root),
  mode and times from META, then renames: a destination is either absent, the old file, or
  the complete new one;
* skips work already done, so an interrupted scavenge re-run completes without copying
  twice: a destination of the right size whose CRC equals the filemap's (or, without a
  CRC, whose mtime equals the recorded one) is kept. A ``.part`` file left by a killed
  agent is replaced.

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

Speed: large files go through a three-stage pipeline (read thread -> CRC thread -> write),
since ``os.readv``, ``zlib.crc32`` and ``os.write`` all release the GIL; small files are
copied by a pool of threads, whose system calls overlap.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import socket
import stat
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

PART_SUFFIX = ".scr_copy.part"
DEFAULT_BUF = 1024 * 1024
# files of up to this many buffers are copied inline by a pool thread; bigger ones get the
# read/CRC/write pipeline (its three threads cost ~100 us per file to start)
PIPELINE_MIN_BUFFERS = 4
PIPELINE_DEPTH = 4  # buffers in flight per pipelined file
_REDSET_RE = re.compile(r"^reddesc.*\.er\.")
_FILEMAP_RE = re.compile(r"^filemap_(0|[1-9][0-9]*)$")


class CopyError(Exception):
    """One file could not be copied or verified; the message says why."""


# --------------------------------------------------------------------------- data copy


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _copy_simple(src_fd: int, dst_fd: int, buf: bytearray, want_crc: bool) -> tuple[int, int]:
    """Sequential read -> crc -> write; returns (bytes, crc)."""
    view = memoryview(buf)
    total = crc = 0
    while True:
        n = os.readv(src_fd, [view])
        if not n:
            return total, crc
        chunk = view[:n]
        if want_crc:
            crc = zlib.crc32(chunk, crc)
        _write_all(dst_fd, chunk)
        total += n


def _copy_pipelined(src_fd: int, dst_fd: int, bufsize: int, want_crc: bool) -> tuple[int, int]:
    """Read, CRC and write overlap: chunk i+2 is read while i+1 is summed and i written.

    The CRC is computed over the very buffer that is then written, so it covers the bytes
    that reach the destination, not a second read of the source.
    """
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
                crc = zlib.crc32(memoryview(b)[:n], crc)
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


def file_crc(path: str, bufsize: int = DEFAULT_BUF) -> tuple[int, int]:
    """(size, crc32) of a file's content, read with a ``bufsize`` buffer."""
    buf = bytearray(max(bufsize, 4096))
    view = memoryview(buf)
    crc = total = 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            n = os.readv(fd, [view])
            if not n:
                return total, crc
            crc = zlib.crc32(view[:n], crc)
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


@dataclass
class FileTask:
    """One data file of a filemap, and where it goes."""

    rank: int
    src: str
    dst: str
    rel: str
    size: int
    expected_crc: int | None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    problem: str | None = None  # known bad before copying (incomplete, outside prefix...)


@dataclass
class Stats:
    files_total: int = 0
    bytes_total: int = 0
    files_done: int = 0
    bytes_done: int = 0
    bytes_copied: int = 0
    copied: int = 0
    present: int = 0
    failed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _node_name() -> str:
    return os.environ.get("SCR_LOCAL_NODE") or socket.gethostname()


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def place_in_prefix(dst: str, prefix: str, real_prefix: str,
                    real_dirs: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(path to write, path relative to the prefix) for a filemap destination, or None
    when it lies outside the prefix (a corrupt or hostile filemap must not write anywhere).

    Inside means inside as written (symlinks below the prefix are the user's business), or
    inside once resolved (the prefix was reached through another symlinked path).
    """
    norm = os.path.normpath(dst)
    if _within(norm, prefix):
        return norm, os.path.relpath(norm, prefix)
    parent = os.path.dirname(norm)
    real_dir = None if real_dirs is None else real_dirs.get(parent)
    if real_dir is None:  # one realpath per directory, not per file
        real_dir = os.path.realpath(parent)
        if real_dirs is not None:
            real_dirs[parent] = real_dir
    if _within(real_dir, real_prefix):
        real = os.path.join(real_dir, os.path.basename(norm))
        return real, os.path.relpath(real, real_prefix)
    return None


class CopyAgent:
    """Copy one dataset from this node's cache to the prefix; see the module docstring."""

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
    ) -> None:
        self.dataset_id = dataset_id
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
        self._made_dirs: set[str] = set()
        self._dirs_lock = threading.Lock()
        self._local = threading.local()
        self._real_dirs: dict[str, str] = {}
        self.dset_dir = os.path.join(self.prefix, ".scr", f"scr.dataset.{dataset_id}")
        self.ranks: list[int] = []
        self.status = "ok"
        self.error: str | None = None

    # -- output -----------------------------------------------------------------------------
    def emit(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        with self._out_lock:
            self.out.write(line + "\n")

    def complain(self, text: str) -> None:
        with self._out_lock:
            self.err.write(f"scr_copy: {self.node}: {text}\n")
            self.err.flush()

    # -- discovery --------------------------------------------------------------------------
    def cache_dir(self) -> str | None:
        """The dataset's cache directory from the node's cache index, or None if not held."""
        from .control.cindex import read_cindex
        from .control.paths import cindex_path

        path = cindex_path(self.cntldir)
        if not path.exists():
            self.status = "no-cache-index"
            return None
        record = read_cindex(path).datasets.get(self.dataset_id)
        if record is None:
            self.status = "not-cached"
            return None
        if not record.path:
            raise CopyError(f"{path}: dataset {self.dataset_id} has no PATH")
        return record.path

    def plan(self, cachedir: str) -> tuple[list[str], list[FileTask]]:
        """(metadata file names to copy, data files to copy) of the dataset's cache dir."""
        from .control.filemap import read_filemap

        meta_dir = os.path.join(cachedir, ".scr")
        try:
            names = sorted(os.listdir(meta_dir))
        except FileNotFoundError as exc:
            raise CopyError(f"cache directory {cachedir} has no .scr directory") from exc
        meta_names = [n for n in names if _FILEMAP_RE.match(n) or _REDSET_RE.match(n)]
        tasks: list[FileTask] = []
        maps = sorted((int(m.group(1)), n) for n in names if (m := _FILEMAP_RE.match(n)))
        for rank, name in maps:
            self.ranks.append(rank)
            filemap = read_filemap(os.path.join(meta_dir, name))
            for src, meta in filemap.files.items():
                tasks.append(self._task(rank, src, meta))
        return meta_names, tasks

    def _task(self, rank: int, src: str, meta: Any) -> FileTask:
        if meta is None:
            return FileTask(rank, src, "", "", 0, None, problem="filemap entry has no META")
        dst = meta.destination or ""
        task = FileTask(
            rank=rank if meta.rank is None else meta.rank,
            src=src, dst=dst, rel="", size=meta.size or 0,
            expected_crc=meta.crc if self.crc else None,
            mode=meta.mode, uid=meta.uid, gid=meta.gid,
            atime_ns=None if meta.atime_secs is None
            else meta.atime_secs * 10**9 + (meta.atime_nsecs or 0),
            mtime_ns=None if meta.mtime_secs is None
            else meta.mtime_secs * 10**9 + (meta.mtime_nsecs or 0),
        )
        if not dst or not os.path.isabs(dst):
            task.problem = f"META PATH/NAME {dst!r} is not an absolute path"
        elif meta.size is None:
            task.problem = "META has no SIZE"
        elif meta.complete is not True:
            task.problem = "META COMPLETE is not 1 (the file was not completely written)"
        else:
            placed = place_in_prefix(dst, self.prefix, self.real_prefix, self._real_dirs)
            if placed is None:
                task.problem = f"destination {dst} is outside the prefix {self.prefix}"
            else:
                task.dst, task.rel = placed
        return task

    # -- copying ----------------------------------------------------------------------------
    def _buffer(self) -> bytearray:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = bytearray(self.bufsize)
        return buf

    def _makedirs(self, path: str) -> None:
        if path in self._made_dirs:
            return
        os.makedirs(path, exist_ok=True)
        with self._dirs_lock:
            self._made_dirs.add(path)

    def _already_there(self, task: FileTask, src_st: os.stat_result,
                       st: os.stat_result | None) -> bool:
        """True when the destination already holds this file (a re-run after a kill)."""
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_size != task.size:
            return False
        if task.expected_crc is not None:
            # a content check is cheaper than a copy: one read instead of read + write
            return file_crc(task.dst, self.bufsize) == (task.size, task.expected_crc)
        want = task.mtime_ns if task.mtime_ns is not None else src_st.st_mtime_ns
        return st.st_mtime_ns == want

    def copy_one(self, task: FileTask) -> dict[str, Any]:
        start = time.monotonic()
        record: dict[str, Any] = {"event": "file", "rank": task.rank, "path": task.rel,
                                  "size": task.size}
        try:
            if task.problem:
                raise CopyError(task.problem)
            try:
                src_st = os.stat(task.src)
            except OSError as exc:
                raise CopyError(f"cache file unreadable: {exc.strerror}") from exc
            if not stat.S_ISREG(src_st.st_mode):
                raise CopyError("cache file is not a regular file")
            if src_st.st_size != task.size:
                raise CopyError(f"cache file has {src_st.st_size} bytes, filemap SIZE "
                                f"says {task.size}")
            try:
                dst_st: os.stat_result | None = os.lstat(task.dst)
            except FileNotFoundError:
                dst_st = None
            if dst_st is not None and (dst_st.st_dev, dst_st.st_ino) == \
                    (src_st.st_dev, src_st.st_ino):
                # bypass: the file was written straight to the prefix; verify only
                crc = self._verify_in_place(task)
                record.update(status="present", crc=crc_text(crc))
            elif self._already_there(task, src_st, dst_st):
                record.update(status="present", crc=crc_text(task.expected_crc))
                self._fix_mode(task)
            else:
                crc = self._copy(task, src_st)
                record.update(status="copied", crc=crc_text(crc))
        except (CopyError, OSError) as exc:
            text = str(exc) if isinstance(exc, CopyError) else \
                f"{exc.strerror or exc} ({getattr(exc, 'filename', None) or task.dst})"
            record.update(status="failed", error=text, src=task.src, dst=task.dst)
        record["secs"] = round(time.monotonic() - start, 6)
        if task.expected_crc is not None:
            record["crc_expected"] = crc_text(task.expected_crc)
        self._account(task, record)
        return record

    def _verify_in_place(self, task: FileTask) -> int | None:
        if not self.crc:
            return None
        size, crc = file_crc(task.dst, self.bufsize)
        if size != task.size:
            raise CopyError(f"file has {size} bytes, filemap SIZE says {task.size}")
        if task.expected_crc is not None and crc != task.expected_crc:
            raise CopyError(f"CRC mismatch: file {crc_text(crc)}, filemap "
                            f"{crc_text(task.expected_crc)}")
        return crc

    def _fix_mode(self, task: FileTask) -> None:
        if task.mode is not None:
            want = stat.S_IMODE(task.mode)
            if stat.S_IMODE(os.stat(task.dst).st_mode) != want:
                os.chmod(task.dst, want)

    def _copy(self, task: FileTask, src_st: os.stat_result) -> int | None:
        dst_dir, base = os.path.split(task.dst)
        self._makedirs(dst_dir)
        part = os.path.join(dst_dir, f".{base}{PART_SUFFIX}")
        try:
            os.unlink(part)  # left by a killed agent: never append to it
        except FileNotFoundError:
            pass
        src_fd = os.open(task.src, os.O_RDONLY | os.O_CLOEXEC)
        try:
            dst_fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                want_crc = self.crc
                if task.size > self.bufsize * PIPELINE_MIN_BUFFERS:
                    total, crc = _copy_pipelined(src_fd, dst_fd, self.bufsize, want_crc)
                else:
                    total, crc = _copy_simple(src_fd, dst_fd, self._buffer(), want_crc)
                if total != task.size:
                    raise CopyError(f"read {total} bytes from the cache file, filemap SIZE "
                                    f"says {task.size} (changed while copying?)")
                if want_crc and task.expected_crc is not None and crc != task.expected_crc:
                    raise CopyError(f"CRC mismatch: cache file {crc_text(crc)}, filemap "
                                    f"{crc_text(task.expected_crc)}")
                self._apply_meta(dst_fd, task, src_st)
                if self.sync == "file":
                    os.fsync(dst_fd)
            finally:
                os.close(dst_fd)
            os.rename(part, task.dst)
        except BaseException:
            try:
                os.unlink(part)
            except OSError:
                pass
            raise
        finally:
            os.close(src_fd)
        return crc if self.crc else None

    @staticmethod
    def _apply_meta(fd: int, task: FileTask, src_st: os.stat_result) -> None:
        # as scr_meta_apply_stat: owner (only root may), then mode (chown clears set-id
        # bits), then times last so nothing after them touches mtime
        if os.geteuid() == 0 and task.uid is not None and task.gid is not None:
            try:
                os.fchown(fd, task.uid, task.gid)
            except OSError:
                pass
        mode = task.mode if task.mode is not None else src_st.st_mode
        os.fchmod(fd, stat.S_IMODE(mode))
        atime = task.atime_ns if task.atime_ns is not None else src_st.st_atime_ns
        mtime = task.mtime_ns if task.mtime_ns is not None else src_st.st_mtime_ns
        os.utime(fd, ns=(atime, mtime))

    def _account(self, task: FileTask, record: dict[str, Any]) -> None:
        s = self.stats
        with s.lock:
            s.files_done += 1
            s.bytes_done += task.size
            if record["status"] == "copied":
                s.copied += 1
                s.bytes_copied += task.size
            elif record["status"] == "present":
                s.present += 1
            else:
                s.failed += 1
                s.failures.append({"rank": task.rank, "path": task.rel or task.dst or task.src,
                                   "error": record.get("error")})
        self.emit(record)
        if record["status"] == "failed":
            self.complain(f"FAILED rank {task.rank} {task.rel or task.dst or task.src}: "
                          f"{record.get('error')}")

    def copy_meta_file(self, cachedir: str, name: str) -> bool:
        """Copy a filemap or redundancy file into the prefix's dataset directory."""
        src = os.path.join(cachedir, ".scr", name)
        dst = os.path.join(self.dset_dir, name)
        part = os.path.join(self.dset_dir, f".{name}{PART_SUFFIX}")
        try:
            with open(src, "rb") as fh:
                data = fh.read()
            try:
                with open(dst, "rb") as fh:
                    if fh.read() == data:
                        self.emit({"event": "meta", "name": name, "status": "present"})
                        return True
            except FileNotFoundError:
                pass
            with open(part, "wb") as fh:
                fh.write(data)
                if self.sync == "file":
                    os.fsync(fh.fileno())
            os.rename(part, dst)
        except OSError as exc:
            text = f"{exc.strerror or exc} ({getattr(exc, 'filename', None) or dst})"
            self.emit({"event": "meta", "name": name, "status": "failed", "error": text})
            self.complain(f"FAILED {name}: {text}")
            with self.stats.lock:
                self.stats.failed += 1
                self.stats.failures.append({"rank": None, "path": f".scr/scr.dataset."
                                            f"{self.dataset_id}/{name}", "error": text})
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
        t0 = time.monotonic()
        try:
            cachedir = self.cache_dir()
            meta_names, tasks = self.plan(cachedir) if cachedir else ([], [])
        except Exception as exc:  # corrupt cindex/filemap, unreadable cache dir
            self.status = "error"
            self.error = str(exc)
            self.complain(f"cannot read the cache of dataset {self.dataset_id}: {exc}")
            return self._finish(t0)
        s = self.stats
        s.files_total = len(tasks)
        s.bytes_total = sum(t.size for t in tasks)
        if cachedir and (meta_names or tasks):
            try:
                os.makedirs(self.dset_dir, exist_ok=True)
            except OSError as exc:
                self.status = "error"
                self.error = f"cannot create {self.dset_dir}: {exc.strerror}"
                self.complain(self.error)
                return self._finish(t0)
            for name in meta_names:
                self.copy_meta_file(cachedir, name)
            done = threading.Event()
            ticker = None
            if self.progress:
                ticker = threading.Thread(target=self._progress_loop, args=(done, t0),
                                          daemon=True)
                ticker.start()
            try:
                self._copy_all(tasks)
            finally:
                done.set()
                if ticker is not None:
                    ticker.join()
                    self.err.write("\n")
            if self.sync == "fs" and s.copied:
                try:
                    _syncfs(self.prefix)
                except OSError as exc:
                    self.status = "error"
                    self.error = f"cannot sync {self.prefix}: {exc.strerror}"
                    self.complain(self.error)
        return self._finish(t0)

    def _copy_all(self, tasks: Sequence[FileTask]) -> None:
        limit = self.bufsize * PIPELINE_MIN_BUFFERS
        large = [t for t in tasks if t.size > limit]
        small = [t for t in tasks if t.size <= limit]
        if len(small) <= 1 or self.threads <= 1:
            for task in small:
                self.copy_one(task)
            for task in large:
                self.copy_one(task)
            return
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            # small files overlap in the pool while the large ones stream in this thread
            futures = [pool.submit(self.copy_one, t) for t in small]
            for task in large:
                self.copy_one(task)
            for f in futures:
                f.result()

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
            "failures": s.failures,
        })
        self.out.flush()
        return rc


# --------------------------------------------------------------------------- command line


def control_dir_for(prefix: str, jobid: str, user: str | None) -> str:
    """``<SCR_CNTL_BASE>/<user>/scr.<jobid>`` as this node sees it."""
    from .params import Params

    return Params(prefix=prefix).control_dir(user=user, jobid=jobid)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--threads", type=int, default=0,
                   help="threads for small files (default: CPUs + 1, at most 4)")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", default=None,
                       help="show progress on stderr even when it is not a terminal")
    shown.add_argument("-q", "--quiet", dest="progress", action="store_false",
                       help="no progress")
    p.add_argument("down", nargs="*", metavar="DOWN_NODE",
                   help="nodes known down; an agent on one of them does nothing")
    return p


def main(argv: Optional[Sequence[str]] = None,
         out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    err = err or sys.stderr
    if args.id <= 0:
        p.error("--id must be a positive dataset id")
    from .errors import UsageError
    from .hostlist import expand
    from .units import parse_bytes

    try:
        bufsize = parse_bytes(args.buf)
        down: list[str] = []
        for text in args.down:
            down += expand(text)
    except UsageError as exc:
        p.error(str(exc))
    if bufsize < 1:
        p.error("--buf must be at least 1 byte")
    if args.threads < 0:
        p.error("--threads must not be negative")
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
    progress = args.progress
    if progress is None:
        progress = err.isatty()
    agent = CopyAgent(args.id, cntldir, prefix, bufsize=bufsize, crc=args.crc,
                      sync=args.sync, threads=args.threads, out=out, err=err,
                      progress=progress, node=node)
    return agent.run()


def run_cli(main_fn: Callable[[], int] = main) -> None:
    try:
        code = main_fn()
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    run_cli()
