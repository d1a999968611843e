"""The copy agent's worker processes (``--procs``): same results as the serial path.

A dataset of one node mixes many small files, empty ones, files just above the one-read
limit and a few large ones (streamed in chunks); its ranks are dealt out to workers whole
(``--procs 2``, 4 filemaps) or each filemap is split between them (``--procs 5``).
"""

from __future__ import annotations

import getpass
import io
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from ckpt_writer import (
    Dataset,
    descriptor,
    local_storage,
    record_in_flush,
    write_cindex_entry,
    write_rank,
)
from scr_core.control.paths import dataset_dir
from scr_core.copy_agent import CopyAgent, FileTask, share_of
from scr_core.engine.scavenge import scavenge_dataset
from scr_core.local.allocation import LocalAllocation
from test_scavenge import assert_dataset_in_prefix, make_job, records, run_agent

# rank -> (files, bytes per file)
LAYOUT = {0: (60, 2000), 1: (2, 3 * 1024 * 1024 + 5), 2: (30, 0), 3: (25, 70_000)}
DSET = 3


@pytest.fixture
def alloc(tmp_path: Path) -> LocalAllocation:
    return LocalAllocation.create(["vnode1"], base=str(tmp_path / "alloc"))


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    p = tmp_path / "prefix"
    (p / ".scr").mkdir(parents=True)
    return p


def mixed_dataset(alloc: LocalAllocation, prefix: Path) -> Dataset:
    base = local_storage(alloc.path, ["vnode1"])["vnode1"]
    user = os.environ.get("USER") or getpass.getuser()
    nfiles = sum(n for n, _ in LAYOUT.values())
    nbytes = sum(n * size for n, size in LAYOUT.values())
    desc = descriptor(DSET, f"ckpt.{DSET}", user, alloc.job_id, "ckpt", nfiles, nbytes)
    ds = Dataset(id=DSET, name=f"ckpt.{DSET}", ranks=len(LAYOUT), desc=desc)
    for rank, (n, size) in LAYOUT.items():
        written = write_rank(str(prefix), DSET, rank, len(LAYOUT), base, user, alloc.job_id,
                             desc, n, size)
        ds.files[rank] = sorted(written)
        ds.cache_files.update(written)
        ds.sizes.update(dict.fromkeys(written, size))
        ds.holders[rank] = "vnode1"
    write_cindex_entry(base, user, alloc.job_id, base, desc)
    record_in_flush(str(prefix), desc)
    return ds


def clear_copies(prefix: Path, ds: Dataset) -> None:
    shutil.rmtree(prefix / ds.name, ignore_errors=True)
    shutil.rmtree(dataset_dir(prefix, ds.id), ignore_errors=True)


def outcome(stdout: str) -> tuple:
    """What must not depend on how the work was divided: file and metadata records (in
    any order, without timings) and the summary's counts."""
    recs = records(stdout)
    files = sorted((r["rank"], r["path"], r["size"], r["status"], r.get("crc"),
                    r.get("crc_expected")) for r in recs if r["event"] == "file")
    metas = sorted((r["name"], r["status"]) for r in recs if r["event"] == "meta")
    s = recs[-1]
    assert s["event"] == "summary"
    summary = {k: s[k] for k in ("rc", "status", "ranks", "files", "copied", "present",
                                 "failed", "bytes", "bytes_copied", "failures")}
    return files, metas, summary


def test_workers_give_the_serial_paths_results(alloc, prefix):
    ds = mixed_dataset(alloc, prefix)
    nfiles = sum(n for n, _ in LAYOUT.values())
    results = {}
    for procs in ("1", "2", "5"):
        clear_copies(prefix, ds)
        extra = ["--threads", "1"] if procs == "1" else []
        r = run_agent(alloc, "vnode1", prefix, DSET, "--procs", procs, *extra)
        assert r.returncode == 0, r.stderr
        results[procs] = outcome(r.stdout)
        files, _, summary = results[procs]
        assert len(files) == nfiles and {f[3] for f in files} == {"copied"}
        assert summary["ranks"] == [0, 1, 2, 3]
        assert_dataset_in_prefix(prefix, ds)
        assert not list(prefix.rglob("*.part"))
    assert results["1"] == results["2"] == results["5"]
    # a re-run finds everything in place, whichever way it divides the work
    r = run_agent(alloc, "vnode1", prefix, DSET, "--procs", "2")
    assert r.returncode == 0
    assert {x["status"] for x in records(r.stdout) if x["event"] == "file"} == {"present"}


@pytest.mark.parametrize("procs", ["2", "5"])
def test_unreadable_file_is_reported_and_dataset_not_complete(alloc, prefix, procs):
    ds = mixed_dataset(alloc, prefix)
    bad = ds.files[0][7]
    os.unlink(ds.cache_files[bad])  # the cache lost it: unreadable, whoever reads it
    r = run_agent(alloc, "vnode1", prefix, DSET, "--procs", procs)
    assert r.returncode == 1
    assert f"FAILED rank 0 {bad}: cache file unreadable" in r.stderr
    recs = records(r.stdout)
    failed = [x for x in recs if x["event"] == "file" and x["status"] == "failed"]
    assert [f["path"] for f in failed] == [bad]
    summary = recs[-1]
    assert (summary["failed"], summary["rc"]) == (1, 1)
    assert summary["copied"] == sum(n for n, _ in LAYOUT.values()) - 1
    assert [f["path"] for f in summary["failures"]] == [bad]
    assert not (prefix / bad).exists()

    clear_copies(prefix, ds)
    res = scavenge_dataset(make_job(alloc, prefix), DSET, ["vnode1"])
    assert not res.complete
    assert bad in "\n".join(res.describe())


def vnode1_control_dir(alloc: LocalAllocation) -> str:
    """Where the agent on vnode1 finds the cache index: <node storage>/<user>/scr.<jobid>."""
    return os.path.join(local_storage(alloc.path, ["vnode1"])["vnode1"],
                        os.environ.get("USER") or getpass.getuser(), f"scr.{alloc.job_id}")


def test_in_process_agent_forwards_worker_output(alloc, prefix):
    """Workers' JSON lines and stderr lines reach the agent's own streams."""
    ds = mixed_dataset(alloc, prefix)
    bad = ds.files[3][0]
    os.unlink(ds.cache_files[bad])
    out, err = io.StringIO(), io.StringIO()
    cntl = vnode1_control_dir(alloc)
    agent = CopyAgent(DSET, cntl, str(prefix), sync="none", out=out, err=err, procs=2,
                      node="vnode1")
    assert agent.run() == 1
    files, _, summary = outcome(out.getvalue())
    assert len(files) == sum(n for n, _ in LAYOUT.values())
    assert summary["failed"] == 1
    assert f"scr_copy: vnode1: FAILED rank 3 {bad}: cache file unreadable" in err.getvalue()


class _DyingAgent(CopyAgent):
    def copy_one(self, task: FileTask) -> None:
        if task.rank == 1:  # in the worker that holds rank 1
            os.kill(os.getpid(), signal.SIGKILL)
        super().copy_one(task)


def test_a_killed_worker_fails_the_agent(alloc, prefix):
    mixed_dataset(alloc, prefix)
    out, err = io.StringIO(), io.StringIO()
    cntl = vnode1_control_dir(alloc)
    agent = _DyingAgent(DSET, cntl, str(prefix), sync="none", out=out, err=err, procs=2,
                        node="vnode1")
    assert agent.run() == 1
    summary = json.loads(out.getvalue().splitlines()[-1])
    assert summary["status"] == "error" and "copy worker" in summary["error"]
    assert "ended without reporting its counts" in err.getvalue()
    assert f"ended with signal {int(signal.SIGKILL)}" in err.getvalue()


def _tasks(sizes: list[int]) -> list[FileTask]:
    return [FileTask(0, f"/c/{i}", f"/p/{i}", str(i), size, None)
            for i, size in enumerate(sizes)]


@pytest.mark.parametrize("sizes", [[8192] * 101, [0] * 7, [1 << 30, 10, 10, 10, 1 << 30],
                                   [5], []])
@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_share_of_splits_a_filemap_into_consecutive_disjoint_parts(sizes, parts):
    tasks = _tasks(sizes)
    shares = [share_of(tasks, i, parts) for i in range(parts)]
    assert [t for share in shares for t in share] == tasks  # all, once, in order
    if sizes and len(set(sizes)) == 1 and len(sizes) >= parts:  # equal files: even split
        counts = [len(s) for s in shares]
        assert max(counts) - min(counts) <= 1


def test_plan_deals_whole_filemaps_or_splits_them(tmp_path):
    cache = tmp_path / "cache"
    (cache / ".scr").mkdir(parents=True)
    maps = []
    for rank, size in enumerate([100, 5000, 300, 4000, 50]):
        (cache / ".scr" / f"filemap_{rank}").write_bytes(b"x" * size)
        maps.append((rank, f"filemap_{rank}"))
    agent = CopyAgent(1, str(tmp_path), str(tmp_path / "prefix"), procs=2)
    dealt = agent.plan(str(cache), maps, 2)
    assert sorted(u[:2] for share in dealt for u in share) == maps
    assert all(u[2:] == (0, 1) for share in dealt for u in share)
    assert all(share == sorted(share) for share in dealt)  # ranks in order within a worker
    # biggest first, each to the least loaded: 5000 | 4000 + 300 + 100 + 50
    assert {u[0] for u in dealt[0]} == {1} and {u[0] for u in dealt[1]} == {0, 2, 3, 4}
    split = agent.plan(str(cache), maps[:2], 3)
    assert split == [[(0, "filemap_0", i, 3), (1, "filemap_1", i, 3)] for i in range(3)]


@pytest.mark.parametrize("procs", ["1", "2"])
def test_small_file_crc_mismatch_leaves_nothing(alloc, prefix, procs):
    """The one-read path checks the CRC before it creates the .part file."""
    ds = mixed_dataset(alloc, prefix)
    bad = ds.files[0][3]
    with open(ds.cache_files[bad], "r+b") as fh:  # same size, one flipped byte
        byte = fh.read(1)
        fh.seek(0)
        fh.write(bytes([byte[0] ^ 0xFF]))
    r = run_agent(alloc, "vnode1", prefix, DSET, "--procs", procs)
    assert r.returncode == 1
    assert f"FAILED rank 0 {bad}: CRC mismatch" in r.stderr
    failed = [x for x in records(r.stdout) if x.get("status") == "failed"]
    assert [f["path"] for f in failed] == [bad]
    assert not (prefix / bad).exists()
    assert not list(prefix.rglob("*.part"))


def test_scan_filemap_values_matches_scan_filemap(tmp_path):
    """The per-entry template (one regex match) and the dict fallback agree, also when
    entries differ in their META keys (a missing CRC)."""
    from scr_core.control.dataset import DatasetDescriptor
    from scr_core.control.filemap import Filemap, FileMeta, write_filemap
    from scr_core.copy_agent import TASK_ORDER, scan_filemap, scan_filemap_values

    fmap = Filemap(dataset=DatasetDescriptor(id=1, name="ckpt.1"))
    for i in range(40):
        fmap.files[f"/cache/f{i}"] = FileMeta(
            complete=i != 7, ranks=2, rank=i % 2, ckpt=1, orig=f"/p/f{i}", path="/p",
            name=f"f{i}", size=i * 100, mode=0o100640, uid=0, gid=0, atime_secs=5,
            atime_nsecs=i, mtime_secs=6, mtime_nsecs=i + 1,
            crc=None if i in (3, 4, 20) else i * 7919)
    path = str(tmp_path / "filemap_0")
    write_filemap(path, fmap)
    full = scan_filemap(path)
    values = scan_filemap_values(path, TASK_ORDER)
    assert [src for src, _ in values] == [src for src, _ in full]
    assert [v for _, v in values] == [tuple(map(m.get, TASK_ORDER)) for _, m in full]
    by_src = dict(values)
    assert by_src["/cache/f3"][TASK_ORDER.index(b"CRC")] is None
    assert by_src["/cache/f8"][TASK_ORDER.index(b"CRC")] == b"%#x" % (8 * 7919)
    assert by_src["/cache/f7"][TASK_ORDER.index(b"COMPLETE")] != b"1"
