"""Scavenge: copy datasets that live only in node-local cache to the prefix, and verify them.

This is SCR's ``scavenge.py`` + ``scr_copy`` + ``scr_index --build`` (scr-reference.md §10),
done natively and with failures reported instead of swallowed:

1. pick the nodes (``list_down_nodes``; only up nodes are asked); take the dataset's lock
   ``<prefix>/.scr/scr.dataset.<id>/scavenge.lock`` (``flock``, held to the end; busy:
   the dataset is not saved by this run and not marked, see :func:`dataset_lock`);
2. run the copy agent (:mod:`scr_core.copy_agent`) on every up node through the job's
   remote executor; keep each node's output in
   ``<prefix>/.scr/scr.dataset.<id>/scavenge.o<jobid>`` / ``.e<jobid>`` (node line, text,
   blank line, as SCR);
3. verify on the batch node, from the filemaps the agents copied into the dataset
   directory: the filemaps say how many ranks there are (``RANKS``, which libscr writes
   with every file; never guessed from the filemaps present) and claim nothing
   impossible (bounds in :func:`scr_core.control.limits.meta_bounds_problem`: else the
   dataset is not saved and the filemap named as corrupt), every rank ``0..RANKS-1`` has
   a filemap, every file is a regular file at its place in the prefix (not through a
   symlink leading out of it) with the filemap's size, and, when the filemap has a CRC,
   the agent that copied it computed that CRC over the bytes it wrote and saw that very
   file (its inode) in place after its rename (a file no agent vouched for in this run is
   read and summed here); part files left by killed agents are removed;
4. complete: write ``rank2file`` (+ parts), ``summary.scr`` (COMPLETE 1), the index entry
   (COMPLETE 1, FLUSHED now) and add ``PFS`` to the flush file's LOCATION, in that order,
   so nothing claims completeness before the data and the summary are in place;
5. incomplete: if SCR's C ``scr_index`` is available (``$SCR_INDEX_EXE`` or an ELF
   ``scr_index`` on PATH; never our own console script) it gets
   ``scr_index --prefix P --build ID``, which can rebuild lost ranks from redundancy data;
   otherwise the index records the dataset with COMPLETE 0 and the result names the
   missing ranks, the files at fault and the nodes that held them or were down.

Parameters: ``SCR_FILE_BUF_SIZE`` (copy buffer), ``SCR_CRC_ON_FLUSH`` (0 turns CRC off),
``SCR_AGENT_PYTHON`` (the interpreter on the nodes; default this one),
``SCR_SCAVENGE_TIMEOUT`` (per node; default the allocation's remaining time, else 24 h;
0 for none),
``SCR_SCAVENGE_SYNC`` (``fs`` default, ``file``, ``none``: how the agent makes the copies
durable before it reports).

Public API
----------
``scavenge_datasets(job, ids, out, log=None) -> bool``
    Scavenge each id in order on the job's up nodes; True if every one ended complete.
``scavenge_dataset(job, dataset_id, nodes, down=None, out=None, log=None, cntldir=None)
-> ScavengeResult``
    One dataset on the given up nodes (``down``: ``{node: reason}`` for the report).
``pick_nodes(job, nodes=None, down=(), out=None) -> (up, {down node: reason})``
``verify_dataset(prefix, dataset_id, reports=None, crc=True) -> Verification``
    Step 3 alone (used by ``scr index --build``).
``record_complete(prefix, desc, verification)``
    Step 4 alone.
``find_scr_index(job) -> str | None``
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from ..control.dataset import DatasetDescriptor
from ..control.flush import LOCATION_PFS, FlushFile
from ..control.index import IndexFile
from ..control.paths import dataset_dir
from ..errors import ScrError

Out = Callable[[str], None]


# --------------------------------------------------------------------------- results


@dataclass
class FileProblem:
    """One file (or metadata file) that is not where and what it should be."""

    path: str
    reason: str
    rank: int | None = None
    node: str | None = None
    corrupt: bool = False  # a control file (filemap) is corrupt: scr scavenge exits 6

    def __str__(self) -> str:
        where = f"rank {self.rank} " if self.rank is not None else ""
        on = f" (on {self.node})" if self.node else ""
        return f"{where}{self.path}{on}: {self.reason}"


@dataclass
class _MetaView:
    """The META fields verification needs, decoded as libscr's getters do."""

    destination: str | None
    complete: bool
    size: int | None
    crc: int | None
    ranks: int | None
    problem: str | None = None  # a value no real filemap holds (copy_agent's bounds)

    @classmethod
    def of(cls, raw: Any) -> _MetaView:
        from ..control.limits import meta_bounds_problem
        from ..copy_agent import raw_complete, raw_int, raw_str

        path, name = raw_str(raw, b"PATH"), raw_str(raw, b"NAME")
        crc = raw_int(raw, b"CRC")
        size, ranks = raw_int(raw, b"SIZE"), raw_int(raw, b"RANKS")
        return cls(destination=None if path is None or name is None
                   else os.path.join(path, name),
                   complete=raw_complete(raw), size=size,
                   crc=None if crc is None else crc & 0xFFFFFFFF, ranks=ranks,
                   problem=meta_bounds_problem(size, ranks, raw_int(raw, b"RANK")))


@dataclass
class Verification:
    """What the batch node found in the prefix for one dataset."""

    ranks: int | None = None
    files: dict[int, list[str]] = field(default_factory=dict)  # good ranks -> rel paths
    missing_ranks: list[int] = field(default_factory=list)  # the first MAX_LISTED_RANKS
    missing_count: int = 0
    problems: list[FileProblem] = field(default_factory=list)
    nfiles: int = 0
    nbytes: int = 0
    first_filemap: str | None = None  # its DSETDESC describes the dataset
    places: dict[str, set[str]] = field(default_factory=dict)  # prefix dir -> file names

    @property
    def dataset(self) -> DatasetDescriptor | None:
        """The first filemap's DSETDESC (read only when the flush file has none)."""
        if self.first_filemap is None:
            return None
        from ..control.filemap import read_filemap

        try:
            return read_filemap(self.first_filemap).dataset
        except (ScrError, OSError):
            return None

    @property
    def complete(self) -> bool:
        return self.ranks is not None and not self.missing_count and not self.problems


@dataclass
class ScavengeResult:
    dataset_id: int
    name: str | None = None
    complete: bool = False
    error: str | None = None  # dataset-level failure (prefix not writable, no such dataset)
    ranks: int | None = None
    missing_ranks: list[int] = field(default_factory=list)
    missing_count: int = 0
    problems: list[FileProblem] = field(default_factory=list)
    node_problems: dict[str, str] = field(default_factory=dict)
    down_nodes: dict[str, str] = field(default_factory=dict)
    holders: dict[int, str] = field(default_factory=dict)  # rank -> node that had its filemap
    files: int = 0
    bytes: int = 0
    bytes_copied: int = 0
    secs: float = 0.0
    delegated: bool = False  # SCR's scr_index --build made it complete

    @property
    def corrupt(self) -> bool:
        """Not saved, and a filemap of it is corrupt (the CLI's exit code 6)."""
        return not self.complete and any(p.corrupt for p in self.problems)

    @property
    def label(self) -> str:
        return f"dataset {self.dataset_id}" + (f" ({self.name})" if self.name else "")

    def describe(self) -> list[str]:
        """Human lines: one summary line, then the faults."""
        if self.complete:
            rate = self.bytes_copied / self.secs if self.secs > 0 else 0.0
            how = " (rebuilt by scr_index)" if self.delegated else ""
            return [f"{self.label} saved{how}: {self.ranks} rank(s), {self.files} file(s), "
                    f"{self.bytes} bytes ({self.bytes_copied} copied in {self.secs:.2f} s, "
                    f"{rate / 1e6:.1f} MB/s)"]
        lines = [f"{self.label} was NOT saved" + (f": {self.error}" if self.error else "")]
        if self.missing_ranks:
            more = self.missing_count - len(self.missing_ranks)
            lines.append(f"  missing or bad ranks: {_ranges(self.missing_ranks)}"
                         + (f" and {more} more" if more > 0 else "")
                         + (f" of {self.ranks}" if self.ranks is not None else ""))
            unheld = [r for r in self.missing_ranks if r not in self.holders]
            if unheld:
                lines.append(f"  no up node reported ranks {_ranges(unheld)}")
        for node, reason in self.down_nodes.items():
            lines.append(f"  node {node} was down: {reason}")
        for node, reason in self.node_problems.items():
            lines.append(f"  node {node}: {reason}")
        shown = self.problems[:20]
        for p in shown:
            lines.append(f"  file {p}")
        if len(self.problems) > len(shown):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more file problem(s)")
        return lines


def _ranges(ranks: Iterable[int]) -> str:
    """``0-3,7`` for [0, 1, 2, 3, 7]."""
    out: list[str] = []
    items = sorted(set(ranks))
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(out)


# --------------------------------------------------------------------------- parameters


def buf_size(job: Any) -> int:
    return int(job.params.get_bytes("SCR_FILE_BUF_SIZE", 1024 * 1024) or 1024 * 1024)


def crc_on(job: Any) -> bool:
    return (job.params.get("SCR_CRC_ON_FLUSH") or "1").strip() != "0"


def _sync_mode(job: Any) -> str:
    mode = (job.params.get("SCR_SCAVENGE_SYNC") or "fs").strip().lower()
    if mode not in ("fs", "file", "none"):
        from ..errors import ConfigError

        raise ConfigError(f"SCR_SCAVENGE_SYNC must be fs, file or none, not '{mode}' "
                          f"({job.params.source('SCR_SCAVENGE_SYNC')})")
    return mode


DEFAULT_TIMEOUT = 24 * 3600.0  # per node, when the allocation has no end time


def _timeout(job: Any) -> float | None:
    value = job.params.get_seconds("SCR_SCAVENGE_TIMEOUT")
    if value is not None:
        return value if value > 0 else None  # 0: no limit, as asked
    try:
        end = int(job.resource_manager.end_time())
    except Exception:  # an RM that cannot tell must not stop the scavenge
        end = 0
    if end > 0:
        # the allocation ends then anyway; a hung node must not outlive it silently
        return max(60.0, end - time.time())
    # no end time: still bounded, so that a node that hangs (a dead file system) cannot
    # keep the scavenge, and the job's end, waiting forever
    return DEFAULT_TIMEOUT


def _fanout(job: Any) -> int:
    try:
        return int(job.settings.section("core").remote_fanout)
    except Exception:
        return 64


def agent_argv(job: Any, dataset_id: int, down: Sequence[str] = (),
               cntldir: str | None = None) -> list[str]:
    """The copy agent's command line as it runs on each node."""
    python = job.params.get("SCR_AGENT_PYTHON") or sys.executable
    argv = [python, "-m", "scr_core.copy_agent", "--id", str(int(dataset_id))]
    if cntldir:
        argv += ["--cntldir", cntldir]
    else:
        argv += ["--jobid", job.require_job_id(), "--user", job.user()]
    argv += ["--prefix", job.prefix, "--buf", str(buf_size(job)),
             "--crc" if crc_on(job) else "--no-crc", "--sync", _sync_mode(job), "--quiet"]
    timeout = _timeout(job)
    if timeout is not None:  # the agent ends itself too, where killing it remotely fails
        argv += ["--timeout", str(max(1, int(timeout)))]
    return argv + list(down)


def find_scr_index(job: Any = None) -> str | None:
    """SCR's C ``scr_index``: ``$SCR_INDEX_EXE``, else an ELF ``scr_index`` on PATH.

    A console script of ours named ``scr_index`` is never taken: delegating ``--build`` to
    it would only repeat this verification.
    """
    explicit = job.params.get("SCR_INDEX_EXE") if job is not None else None
    path_env = (job.environ if job is not None else os.environ).get("PATH")
    candidate = explicit or shutil.which("scr_index", path=path_env)
    if not candidate or not os.access(candidate, os.X_OK):
        return None
    try:
        with open(candidate, "rb") as fh:
            if fh.read(4) != b"\x7fELF":
                return None
    except OSError:
        return None
    return candidate


# --------------------------------------------------------------------------- nodes


def pick_nodes(job: Any, nodes: Sequence[str] | None = None, down: Sequence[str] = (),
               out: Out | None = None) -> tuple[list[str], dict[str, str]]:
    """(up nodes, {down node: reason}) among ``nodes`` (default: the job's)."""
    from .down_nodes import list_down_nodes

    all_nodes = list(nodes) if nodes is not None else job.node_list()
    bad = list_down_nodes(job, all_nodes, down=list(down))
    up = [n for n in all_nodes if n not in bad]
    if out is not None:
        for n, reason in bad.items():
            out(f"node {n} is down: {reason}")
    return up, bad


# --------------------------------------------------------------------------- agent output


@dataclass
class _NodeReport:
    summary: dict[str, Any] | None = None
    files: list[dict[str, Any]] = field(default_factory=list)


def _parse_output(text: str) -> _NodeReport:
    report = _NodeReport()
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn or foreign line: the summary check catches a dead agent
        if not isinstance(record, dict):
            continue
        kind = record.get("event")
        if kind == "summary":
            report.summary = record
        elif kind == "file":
            report.files.append(record)
    return report


def _write_node_outputs(ddir: str, jobid: str, result: Mapping[str, Any]) -> str | None:
    """``scavenge.o<jobid>`` / ``scavenge.e<jobid>``: per node its name, text, a blank line."""
    try:
        for suffix, attr in (("o", "stdout"), ("e", "stderr")):
            parts = []
            for node, res in result.items():
                text = getattr(res, attr) or ""
                if attr == "stderr" and not res.ok:
                    state = ("unreachable" if res.unreachable else "timed out" if res.timed_out
                             else f"exit code {res.rc}")
                    text += ("" if not text or text.endswith("\n") else "\n") + \
                        f"scavenge: {node}: {state}\n"
                if text and not text.endswith("\n"):
                    text += "\n"
                parts.append(f"{node}\n{text}\n")
            path = os.path.join(ddir, f"scavenge.{suffix}{jobid}")
            tmp = f"{path}.tmp.{os.getpid()}"
            with open(tmp, "w", encoding="utf-8", errors="replace") as fh:
                fh.write("".join(parts))
            os.replace(tmp, path)
    except OSError as exc:
        return f"cannot write the per-node outputs in {ddir}: {exc.strerror}"
    return None


# --------------------------------------------------------------------------- verification


def verify_dataset(prefix: str, dataset_id: int,
                   reports: Mapping[str, Mapping[str, Any]] | None = None,
                   crc: bool = True, bufsize: int = 1024 * 1024) -> Verification:
    """Check the dataset in the prefix against the filemaps in its dataset directory.

    ``reports`` maps a path relative to the prefix to the agent's record for it; a file
    with a filemap CRC is accepted without reading it only when such a record says it was
    copied or found with exactly that CRC and size.
    """
    from ..copy_agent import FilemapError, crc_text, file_crc, scan_filemap

    reports = reports or {}
    ver = Verification()
    ddir = str(dataset_dir(prefix, dataset_id))
    abs_prefix = os.path.abspath(prefix)
    real_prefix = os.path.realpath(prefix)
    real_dirs: dict[str, str] = {}
    try:
        names = os.listdir(ddir)
    except OSError as exc:
        ver.problems.append(FileProblem(ddir, f"cannot list: {exc.strerror}"))
        return ver
    maps = sorted((int(n[8:]), n) for n in names
                  if n.startswith("filemap_") and n[8:].isascii() and n[8:].isdigit()
                  and str(int(n[8:])) == n[8:])
    if not maps:
        ver.problems.append(FileProblem(f".scr/scr.dataset.{dataset_id}",
                                        "no filemap reached the prefix"))
        return ver
    rank_counts: set[int] = set()
    bad_ranks: set[int] = set()
    seen_ranks: set[int] = set()
    for rank, name in maps:
        seen_ranks.add(rank)
        path = os.path.join(ddir, name)
        try:
            entries = scan_filemap(path)
        except (FilemapError, ScrError, OSError) as exc:
            ver.problems.append(FileProblem(f".scr/scr.dataset.{dataset_id}/{name}",
                                            f"unreadable filemap: {exc}", rank,
                                            corrupt=not isinstance(exc, OSError)))
            bad_ranks.add(rank)
            continue
        if ver.first_filemap is None:
            ver.first_filemap = path
        rels: list[str] = []
        for src, raw in entries:
            meta = None if raw is None else _MetaView.of(raw)
            if meta is None:
                ver.problems.append(FileProblem(src, "filemap entry without META", rank))
                bad_ranks.add(rank)
                continue
            if meta.problem:
                ver.problems.append(FileProblem(f".scr/scr.dataset.{dataset_id}/{name}",
                                                f"{meta.problem} (file {src})", rank,
                                                corrupt=True))
                bad_ranks.add(rank)
                continue
            if meta.ranks is None:
                # libscr writes RANKS with every file; scr_index skips a file without it
                ver.problems.append(FileProblem(meta.destination or src,
                                                "filemap entry has no RANKS", rank))
                bad_ranks.add(rank)
                continue
            rank_counts.add(meta.ranks)
            problem, rel = _check_file(meta, abs_prefix, real_prefix, real_dirs, reports,
                                       crc, bufsize, crc_text, file_crc, ver.places)
            if problem:
                ver.problems.append(FileProblem(rel or meta.destination or src, problem, rank))
                bad_ranks.add(rank)
                continue
            rels.append(rel)
            ver.nfiles += 1
            ver.nbytes += meta.size or 0
        if rank not in bad_ranks:
            ver.files[rank] = rels
    if len(rank_counts) > 1:
        ver.problems.append(FileProblem(f".scr/scr.dataset.{dataset_id}",
                                        f"filemaps disagree on RANKS: {sorted(rank_counts)}"))
        return ver
    if not rank_counts:
        # never guessed from the filemaps that happen to be here (a down node's ranks
        # would not count): without RANKS the dataset cannot be complete
        ver.problems.append(FileProblem(f".scr/scr.dataset.{dataset_id}",
                                        "no filemap says how many ranks the dataset has "
                                        "(RANKS): it cannot be verified complete"))
        return ver
    ver.ranks = rank_counts.pop()
    extra = [r for r in seen_ranks if r >= ver.ranks]
    for r in extra:
        ver.problems.append(FileProblem(f".scr/scr.dataset.{dataset_id}/filemap_{r}",
                                        f"rank {r} is outside RANKS {ver.ranks}", r))
    ver.missing_ranks, ver.missing_count = _missing(ver.ranks, ver.files)
    return ver


MAX_LISTED_RANKS = 4096  # missing ranks listed by rank; beyond, only counted


def _missing(ranks: int, good: Mapping[int, Any]) -> tuple[list[int], int]:
    """(the first MAX_LISTED_RANKS ranks in 0..ranks-1 not in ``good``, how many there
    are in all), without building a set of every rank (RANKS may be 2^24)."""
    count = ranks - sum(1 for r in good if 0 <= r < ranks)
    listed: list[int] = []
    rank = 0
    while rank < ranks and len(listed) < min(count, MAX_LISTED_RANKS):
        if rank not in good:
            listed.append(rank)
        rank += 1
    return listed, count


def _check_file(meta: Any, prefix: str, real_prefix: str, real_dirs: dict[str, str],
                reports: Mapping[str, Mapping[str, Any]],
                crc: bool, bufsize: int, crc_text: Callable[[int | None], str | None],
                file_crc: Callable[[str, int], tuple[int, int]],
                places: dict[str, set[str]]) -> tuple[str | None, str]:
    """(problem or None, path relative to the prefix) for one filemap entry; adds its
    place in the prefix to ``places``."""
    from ..copy_agent import place_in_prefix

    dst = meta.destination
    if not dst or not os.path.isabs(dst):
        return f"META PATH/NAME {dst!r} is not an absolute path", ""
    placed = place_in_prefix(dst, prefix, real_prefix, real_dirs)
    if placed is None:
        return f"destination {dst} is outside the prefix, in its .scr directory, or " \
            "reached through a symlink that leads out of it", ""
    real, rel = placed
    head, base = os.path.split(real)
    places.setdefault(head, set()).add(base)
    if not meta.complete:
        return "filemap says the file is incomplete (COMPLETE is not 1)", rel
    if meta.size is None:
        return "filemap has no SIZE", rel
    report = reports.get(rel)
    if report is not None and report.get("status") == "failed":
        return f"copy failed: {report.get('error')}", rel
    try:
        st = os.lstat(real)  # a symlink in place of the file is not the file
    except OSError as exc:
        return f"missing in the prefix ({exc.strerror})", rel
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file in the prefix", rel
    if st.st_size != meta.size:
        return f"has {st.st_size} bytes in the prefix, filemap SIZE says {meta.size}", rel
    if crc and meta.crc is not None:
        want = crc_text(meta.crc)
        # the agent's CRC holds for the file it summed or wrote (its inode), and only as
        # long as that very file is in place: anything else is read and summed here
        vouched = (report is not None and report.get("status") in ("copied", "present")
                   and report.get("crc") == want and report.get("size") == meta.size
                   and report.get("ino") == st.st_ino)
        if not vouched:
            try:
                size, got = file_crc(real, bufsize)
            except OSError as exc:
                return f"cannot read back: {exc.strerror}", rel
            if size != meta.size or got != meta.crc:
                return f"CRC mismatch in the prefix: {crc_text(got)}, filemap {want}", rel
    return None, rel


# --------------------------------------------------------------------------- recording


def record_complete(prefix: str, desc: DatasetDescriptor, ver: Verification) -> None:
    """rank2file, summary.scr, index entry, flush LOCATION PFS (that order). Raises OSError."""
    from ..control.summary import write_rank2file, write_summary

    ddir = dataset_dir(prefix, desc.id)
    assert ver.ranks is not None
    write_rank2file(ddir, ver.files, ver.ranks)
    write_summary(ddir, desc, complete=True)
    index = IndexFile(prefix)
    current = index.current()
    index.add(desc, complete=True, flushed_time=time.time())
    if current is not None and current == desc.name and index.current() != current:
        # re-adding replaces the entry, which drops CURRENT when it named this dataset
        index.set_current(current)
    flush = FlushFile(prefix)
    if flush.has(desc.id):
        flush.location_add(desc.id, LOCATION_PFS)


def _descriptor(prefix: str, dataset_id: int, ver: Verification | None,
                name: str | None) -> DatasetDescriptor:
    """The dataset's descriptor: the flush file's, else a filemap's, else a bare one."""
    desc = None
    try:
        desc = FlushFile(prefix).dataset(dataset_id)
    except ScrError:
        desc = None
    if desc is None and ver is not None:
        desc = ver.dataset
    if desc is None:
        desc = DatasetDescriptor(id=dataset_id, name=name or f"scr.dataset.{dataset_id}")
    if desc.name is None:
        desc.name = name or f"scr.dataset.{dataset_id}"
    return desc


def finish_dataset(prefix: str, dataset_id: int, ver: Verification, result: ScavengeResult,
                   scr_index: str | None = None, out: Out | None = None) -> None:
    """Record a verified dataset, or delegate/mark incomplete; fills ``result``."""
    desc = _descriptor(prefix, dataset_id, ver, result.name)
    result.name = desc.name
    result.ranks = ver.ranks
    result.missing_ranks = list(ver.missing_ranks)
    result.missing_count = ver.missing_count
    result.problems = list(ver.problems) + result.problems
    result.files, result.bytes = ver.nfiles, ver.nbytes
    if ver.complete and desc.complete is False:
        result.problems.append(FileProblem(
            f".scr/scr.dataset.{dataset_id}",
            "the application did not complete this dataset (descriptor COMPLETE 0)"))
    elif ver.complete and desc.files is not None and desc.files != ver.nfiles:
        result.problems.append(FileProblem(
            f".scr/scr.dataset.{dataset_id}",
            f"the dataset descriptor says {desc.files} files, the filemaps list {ver.nfiles}"))
    elif ver.complete and not result.problems:
        try:
            record_complete(prefix, desc, ver)
        except (OSError, ScrError) as exc:
            result.error = f"cannot record the dataset in {prefix}/.scr: {exc}"
            return
        result.complete = True
        return
    if scr_index:
        if out:
            out(f"dataset {dataset_id}: incomplete here; asking {scr_index} --build to rebuild")
        try:
            proc = subprocess.run([scr_index, "--prefix", prefix, "--build", str(dataset_id)],
                                  capture_output=True, text=True, timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            result.node_problems["scr_index"] = f"could not run: {exc}"
        else:
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
                result.node_problems["scr_index"] = (f"--build exited {proc.returncode}: "
                                                     + " | ".join(tail))
            else:
                # its exit code alone is no proof: what it rebuilt is verified like what the
                # agents copied (every rank's filemap, every file's size, CRC when given)
                rebuilt = verify_dataset(prefix, dataset_id)
                if rebuilt.complete:
                    result.ranks, result.missing_ranks, result.missing_count = \
                        rebuilt.ranks, [], 0
                    result.problems = []
                    result.files, result.bytes = rebuilt.nfiles, rebuilt.nbytes
                    result.complete = result.delegated = True
                    try:
                        flush = FlushFile(prefix)
                        if flush.has(dataset_id):
                            flush.location_add(dataset_id, LOCATION_PFS)
                    except (OSError, ScrError) as exc:
                        result.error = f"rebuilt, but the flush file was not updated: {exc}"
                    return
                result.problems += rebuilt.problems
                result.node_problems["scr_index"] = (
                    "--build exited 0, but the dataset does not verify: missing or bad "
                    f"ranks {_ranges(rebuilt.missing_ranks) or 'none'}")
    try:
        IndexFile(prefix).mark_incomplete(desc)
    except (OSError, ScrError) as exc:
        if out:
            out(f"dataset {dataset_id}: cannot mark it incomplete in the index: {exc}")


# --------------------------------------------------------------------------- lock


LOCK_NAME = "scavenge.lock"


class DatasetBusy(ScrError):
    """Another scavenge (or ``scr index --build``) of the dataset holds its lock."""


@contextmanager
def dataset_lock(prefix: str, dataset_id: int, out: Out | None = None) -> Iterator[None]:
    """Hold ``<prefix>/.scr/scr.dataset.<id>/scavenge.lock`` (``flock``, exclusive, as SCR
    locks its halt file) while a dataset is copied, verified and recorded: two scavenges
    of one dataset at once would each verify files the other is replacing. Busy: raises
    DatasetBusy at once, naming the holder. A file system without flock (Lustre mounted
    without it): said on ``out``, and the copy goes on unlocked; the agents' own part
    files and their check after each rename still keep every copy whole."""
    import fcntl

    path = os.path.join(str(dataset_dir(prefix, dataset_id)), LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:  # no dataset directory: nothing in it to protect
        yield
        return
    except OSError as exc:
        raise DatasetBusy(f"cannot open the lock {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
            raise DatasetBusy(f"another scavenge of dataset {dataset_id} is running "
                              f"({holder or 'holder unknown'}; lock {path})") from None
        except OSError as exc:
            if out:
                out(f"dataset {dataset_id}: cannot lock {path} ({exc.strerror}); going on "
                    "without the lock")
        else:
            try:  # who holds it: only for the message of a second scavenge
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.uname().nodename} pid {os.getpid()}\n".encode(), 0)
            except OSError:  # a full prefix (ENOSPC): the lock holds all the same
                pass
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_parts(ddir: str, places: Mapping[str, Iterable[str]]) -> None:
    """Remove the part files (copies in progress) of the dataset's files and metadata:
    called with the dataset locked once its agents have ended, they are leftovers of
    killed agents."""
    from ..copy_agent import PART_MARK, PART_SUFFIX

    for head, bases in [(ddir, None), *places.items()]:
        wanted = None if bases is None else set(bases)
        try:
            names = os.listdir(head)
        except OSError:
            continue
        for name in names:
            if name[:1] != "." or not name.endswith(PART_SUFFIX) or PART_MARK not in name:
                continue
            base = name[1:name.find(PART_MARK)]
            if wanted is None or base in wanted:
                try:
                    os.unlink(os.path.join(head, name))
                except OSError:
                    pass


# --------------------------------------------------------------------------- progress


class _Progress:
    """Batch-side progress of one dataset: what has arrived in the prefix, once a second.

    The agents' own progress goes to their stderr, which remote execution captures; this
    watches the prefix instead: the filemaps the agents copy first say what to expect, and
    the destinations (and their ``.part`` files) how far the copies are.
    """

    def __init__(self, prefix: str, dataset_id: int, write: Callable[[str], Any]) -> None:
        self.prefix = prefix
        self.dataset_id = dataset_id
        self.write = write
        self.ddir = str(dataset_dir(prefix, dataset_id))
        self.files: dict[str, list[tuple[str, int]]] = {}  # filemap -> [(dst, size)]
        self.stop = threading.Event()
        self.start = time.monotonic()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Progress:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()
        self.write("\n")

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            self.tick()
        self.tick()

    def _learn(self) -> None:
        from ..copy_agent import place_in_prefix, raw_int, raw_str, scan_filemap

        try:
            names = [n for n in os.listdir(self.ddir) if n.startswith("filemap_")]
        except OSError:
            return
        real = os.path.realpath(self.prefix)
        real_dirs: dict[str, str] = {}
        for name in names:
            if name in self.files:
                continue
            try:
                entries = scan_filemap(os.path.join(self.ddir, name))
            except Exception:  # half-copied or bad: verification will say so
                continue
            got = []
            for _src, raw in entries:
                if raw is None:
                    continue
                path, base, size = raw_str(raw, b"PATH"), raw_str(raw, b"NAME"), \
                    raw_int(raw, b"SIZE")
                if path and base and size is not None:
                    placed = place_in_prefix(os.path.join(path, base), self.prefix, real,
                                             real_dirs)
                    if placed:
                        got.append((placed[0], size))
            self.files[name] = got

    @staticmethod
    def _part_bytes(head: str) -> dict[str, int]:
        """{file name: bytes in its part files} in one directory."""
        from ..copy_agent import PART_MARK, PART_SUFFIX

        found: dict[str, int] = {}
        try:
            names = os.listdir(head)
        except OSError:
            return found
        for name in names:
            if name[:1] == "." and name.endswith(PART_SUFFIX) and PART_MARK in name:
                base = name[1:name.find(PART_MARK)]
                try:
                    found[base] = found.get(base, 0) + os.stat(os.path.join(head, name)).st_size
                except OSError:
                    pass
        return found

    def tick(self) -> None:
        from ..units import format_bytes

        self._learn()
        total = done = nfiles = ndone = 0
        parts: dict[str, dict[str, int]] = {}  # directory -> its part files, this tick
        for entries in self.files.values():
            for dst, size in entries:
                total += size
                nfiles += 1
                try:
                    if os.stat(dst).st_size == size:
                        done += size
                        ndone += 1
                        continue
                except OSError:
                    pass
                head, base = os.path.split(dst)
                if head not in parts:
                    parts[head] = self._part_bytes(head)
                done += min(size, parts[head].get(base, 0))
        secs = max(time.monotonic() - self.start, 1e-6)
        self.write(f"\rscavenge: dataset {self.dataset_id}: {format_bytes(done)} of "
                   f"{format_bytes(total)}, {ndone}/{nfiles} files, "
                   f"{format_bytes(int(done / secs))}/s   ")


# --------------------------------------------------------------------------- scavenge


def _event(log: Any, kind: str, out: Out | None, **kw: Any) -> None:
    if log is None:
        return
    try:
        log.event(kind, **kw)
    except OSError as exc:
        if out:
            out(f"cannot write the SCR log: {exc}")


def scavenge_dataset(
    job: Any,
    dataset_id: int,
    nodes: Sequence[str],
    down: Mapping[str, str] | None = None,
    out: Out | None = None,
    log: Any = None,
    cntldir: str | None = None,
    progress: Callable[[str], Any] | None = None,
) -> ScavengeResult:
    """Copy dataset ``dataset_id`` from ``nodes`` to the prefix and verify it.

    ``progress``: where to write a progress line (bytes, files, rate) while the agents
    copy, e.g. ``sys.stderr.write`` when it is a terminal; None for none.
    """
    prefix = job.prefix
    result = ScavengeResult(dataset_id=dataset_id, down_nodes=dict(down or {}))
    try:
        result.name = FlushFile(prefix).name(dataset_id)
    except ScrError as exc:
        result.error = f"cannot read the flush file: {exc}"
        return result
    ddir = str(dataset_dir(prefix, dataset_id))
    try:
        os.makedirs(ddir, exist_ok=True)
    except OSError as exc:
        result.error = f"cannot create {ddir}: {exc.strerror}"
        return result
    if not os.access(ddir, os.W_OK):  # a read-only mount stops even root
        result.error = f"cannot write in {ddir}: the prefix is read-only or not writable"
        return result
    if not nodes:
        result.error = "no node is up to copy from"
        return result
    try:
        with dataset_lock(prefix, dataset_id, out):
            _scavenge_locked(job, result, ddir, nodes, out, log, cntldir, progress)
    except DatasetBusy as exc:  # the other scavenge records the dataset, not this one
        result.error = str(exc)
    return result


def _scavenge_locked(job: Any, result: ScavengeResult, ddir: str, nodes: Sequence[str],
                     out: Out | None, log: Any, cntldir: str | None,
                     progress: Callable[[str], Any] | None) -> None:
    """:func:`scavenge_dataset` once it holds the dataset's lock."""
    prefix, dataset_id = job.prefix, result.dataset_id
    jobid = job.require_job_id()
    argv = agent_argv(job, dataset_id, list(result.down_nodes), cntldir)
    start = time.time()
    _event(log, "SCAVENGE_START", out, dset=dataset_id, name=result.name)
    executor = job.remote_executor
    if progress is None:
        remote = executor.run(argv, list(nodes), fanout=_fanout(job), timeout=_timeout(job))
    else:
        with _Progress(prefix, dataset_id, progress):
            remote = executor.run(argv, list(nodes), fanout=_fanout(job),
                                  timeout=_timeout(job))
    result.secs = time.time() - start
    _event(log, "SCAVENGE_END", out, dset=dataset_id, name=result.name, secs=result.secs)
    problem = _write_node_outputs(ddir, jobid, remote)
    if problem:
        result.node_problems["batch"] = problem

    reports: dict[str, dict[str, Any]] = {}  # path relative to the prefix -> agent record
    for node, res in remote.items():
        report = _parse_output(res.stdout or "")
        summary = report.summary
        if res.unreachable:
            result.node_problems[node] = "unreachable: " + (res.stderr.strip() or "no answer")
        elif res.timed_out:
            result.node_problems[node] = "timed out while copying"
        elif summary is None:
            err = (res.stderr or "").strip().splitlines()
            result.node_problems[node] = (f"copy agent ended without a summary (exit code "
                                          f"{res.rc})" + (f": {err[-1]}" if err else ""))
        elif summary.get("status") == "error":
            result.node_problems[node] = f"copy agent: {summary.get('error')}"
        if summary is not None:
            result.bytes_copied += int(summary.get("bytes_copied") or 0)
            for rank in summary.get("ranks") or ():
                result.holders[int(rank)] = node
        for rec in report.files:
            path = rec.get("path")
            if path:
                reports[path] = dict(rec, node=node)
    ver = verify_dataset(prefix, dataset_id, reports, crc=crc_on(job),
                         bufsize=buf_size(job))
    # every agent has ended and the lock keeps others out: part files left now are of
    # killed agents (their names are unique, so nothing reuses them)
    remove_parts(ddir, ver.places)
    # every bad file is in the batch node's list (an agent's failure included, with its
    # reason); name the node that copied it, or else the one that held its rank
    for p in ver.problems:
        rec = reports.get(p.path)
        p.node = rec["node"] if rec is not None else result.holders.get(p.rank) \
            if p.rank is not None else None
    finish_dataset(prefix, dataset_id, ver, result, scr_index=find_scr_index(job), out=out)


def scavenge_datasets(job: Any, ids: Sequence[int], out: Out,
                      log: Any = None, progress: Callable[[str], Any] | None = None) -> bool:
    """Scavenge ``ids`` in order from the job's up nodes; True if all ended complete."""
    ids = list(ids)
    if not ids:
        return True
    try:
        up, down = pick_nodes(job, out=out)
    except ScrError as exc:
        out(f"cannot tell which nodes are up: {exc}")
        return False
    ok = True
    for dataset_id in ids:
        res = scavenge_dataset(job, dataset_id, up, down=down, out=out, log=log,
                               progress=progress)
        for line in res.describe():
            out(line)
        ok = ok and res.complete
    return ok


__all__ = [
    "FileProblem",
    "ScavengeResult",
    "Verification",
    "agent_argv",
    "buf_size",
    "crc_on",
    "find_scr_index",
    "finish_dataset",
    "pick_nodes",
    "record_complete",
    "scavenge_dataset",
    "scavenge_datasets",
    "verify_dataset",
]
