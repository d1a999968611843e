"""Scavenge data integrity (issue 16): hostile filemaps, unknown rank counts, FIFOs in the
cache, confinement of the copy agent, concurrent scavenges, interruptions and a full prefix.

Every case ends with: the documented exit code, no dataset marked complete unless its
bytes are verified in place, nothing half-written left under a final name.
"""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from ckpt_writer import cache_dir, local_storage, write_dataset
from scr_core.cli import main as cli_main
from scr_core.control.cindex import read_cindex
from scr_core.control.flush import FlushFile
from scr_core.control.index import IndexFile
from scr_core.control.paths import dataset_dir
from scr_core.control.summary import read_rank2file, read_summary
from scr_core.engine.postrun import postrun
from scr_core.engine.scavenge import scavenge_dataset
from scr_core.local.allocation import LocalAllocation
from test_scavenge import NODES, make_job, records, run_agent

from scr_core import kvtree

USER = os.environ.get("USER") or "root"


@pytest.fixture
def alloc(tmp_path: Path) -> LocalAllocation:
    return LocalAllocation.create(NODES, base=str(tmp_path / "alloc"))


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    p = tmp_path / "prefix"
    (p / ".scr").mkdir(parents=True)
    return p


@pytest.fixture
def cli(alloc, prefix, monkeypatch):
    """``scr <args>`` in this process, inside the local allocation; returns the exit code."""
    for name in [k for k in os.environ if k.startswith(("SCR_", "SLURM_", "LSB_", "FLUX_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SCR_LOCAL_DIR", alloc.path)
    monkeypatch.setenv("SCR_PREFIX", str(prefix))
    monkeypatch.setenv("HOME", str(Path(alloc.path) / "home"))
    monkeypatch.chdir(prefix)

    def run(*args: str) -> int:
        return cli_main.main(list(args))
    return run


def filemaps(alloc: LocalAllocation, dataset_id: int, nodes=NODES) -> list[Path]:
    out = []
    for node in nodes:
        meta = Path(cache_dir(alloc.node_storage(node), USER, alloc.job_id, dataset_id)) / ".scr"
        out += sorted(meta.glob("filemap_*"))
    return out


def edit_meta(path: Path, **values) -> None:
    """Set (or with None remove) META keys of every file of a filemap; CRC stays valid."""
    tree = kvtree.read(path)
    for _src, entry in tree["FILE"].items():
        meta = entry["META"]
        for key, value in values.items():
            meta.unset(key)
            if value is not None:
                meta.set_value(key, str(value))
    kvtree.write(path, tree)


def fix_crc(buf: bytearray) -> bytes:
    end = len(buf) - 4
    buf[end:] = struct.pack(">I", zlib.crc32(bytes(buf[:end])))
    return bytes(buf)


def assert_not_complete(prefix: Path, dataset_id: int) -> None:
    assert not (dataset_dir(prefix, dataset_id) / "summary.scr").exists()
    assert all(e.complete is not True for e in IndexFile(prefix).entries()
               if e.id == dataset_id)
    assert FlushFile(prefix).need_flush(dataset_id)


# --------------------------------------------------------------------------- hostile values


def test_hostile_ranks_is_corrupt_exit_6(alloc, prefix, cli, capsys):
    write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=100)
    for fm in filemaps(alloc, 1):
        edit_meta(fm, RANKS=2147483647)
    assert cli("scavenge", "-i", "1") == 6
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "scr.dataset.1/filemap_0 (on vnode1): corrupt filemap: META RANKS 2147483647 " \
        "is not in 1..16777216" in err
    assert_not_complete(prefix, 1)
    assert cli("index", "--build", "1") == 6
    assert "RANKS 2147483647" in capsys.readouterr().err


@pytest.mark.parametrize("values", [dict(SIZE=2**64 - 1), dict(MTIME_SECS=2**64 - 1),
                                    dict(ATIME_NSECS=10**12), dict(RANK=2**40)])
def test_hostile_meta_values_fail_the_file_not_the_agent(alloc, prefix, values):
    write_dataset(str(prefix), 1, local_storage(alloc.path, ["vnode1"]), alloc.job_id,
                  size=100)
    for fm in filemaps(alloc, 1, ["vnode1"]):
        edit_meta(fm, **values)
    for procs in ("1", "2"):
        r = run_agent(alloc, "vnode1", prefix, 1, "--procs", procs)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        failed = [x for x in records(r.stdout) if x.get("status") == "failed"]
        assert len(failed) == 4 and all("corrupt filemap" in f["error"] for f in failed)
    assert not list((prefix / "ckpt.1").rglob("*.dat"))


def test_meta_count_overflow_is_corrupt(alloc, prefix, cli, capsys):
    write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=100)
    fm = filemaps(alloc, 1)[0]
    buf = bytearray(fm.read_bytes())
    i = buf.index(b"META\0") + 5
    buf[i:i + 4] = b"\xff\xff\xff\xff"
    fm.write_bytes(fix_crc(buf))
    assert cli("scavenge", "-i", "1") == 6
    err = capsys.readouterr().err
    assert "Traceback" not in err and "filemap_0 (on vnode1): unreadable filemap" in err
    assert "element count 4294967295 exceeds the data left" in err
    assert_not_complete(prefix, 1)
    assert cli("index", "--build", "1") == 6
    assert "element count 4294967295" in capsys.readouterr().err


def test_minus_zero_keys_are_not_ids(alloc, prefix, cli, capsys):
    """C's %d never writes "-0": such a key is skipped as C would never find it, instead
    of being read as 0 and looked up as "0" (KeyError in postrun, index --add, ...)."""
    write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=100)
    assert scavenge_dataset(make_job(alloc, prefix), 1, NODES).complete
    for path, key in ((prefix / ".scr" / "flush.scr", "DATASET"),
                      (prefix / ".scr" / "index.scr", "DSET"),
                      (dataset_dir(prefix, 1) / "rank2file.0.0", "RANK")):
        tree = kvtree.read(path)
        tree[key].set("-0", kvtree.KVTree())
        kvtree.write(path, tree)
    cntl = Path(alloc.node_storage("vnode1")) / USER / f"scr.{alloc.job_id}" / "cindex.scrinfo"
    tree = kvtree.read(cntl)
    tree["DSET"].set("-0", kvtree.KVTree())
    kvtree.write(cntl, tree)
    assert list(read_cindex(cntl).datasets) == [1]
    assert sorted(read_rank2file(dataset_dir(prefix, 1)).files) == list(range(6))
    assert [e.id for e in IndexFile(prefix).entries()] == [1]
    assert postrun(make_job(alloc, prefix), out=lambda line: None) is True
    assert cli("index", "--add", "ckpt.1") == 0
    assert "Traceback" not in capsys.readouterr().err
    assert read_summary(dataset_dir(prefix, 1)).complete


# --------------------------------------------------------------------------- rank count


def test_no_ranks_anywhere_is_never_complete(alloc, prefix, cli, capsys):
    """With RANKS in no filemap (and FILES in no descriptor) and a node down, the ranks
    present used to be taken as all of them: marked complete with ranks 2-3 missing."""
    ds = write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=100)
    for fm in filemaps(alloc, 1):
        edit_meta(fm, RANKS=None)
    for path in [prefix / ".scr" / "flush.scr", *filemaps(alloc, 1)]:
        tree = kvtree.read(path)
        for desc in ([tree["DATASET"]["1"]["DSETDESC"]] if "DATASET" in tree
                     else [tree["DSETDESC"]]):
            desc.unset("FILES")
        kvtree.write(path, tree)
    assert ds.holders[4] == "vnode3"
    alloc.crash("vnode3")  # ranks 4-5 are gone with it
    res = scavenge_dataset(make_job(alloc, prefix), 1, NODES)
    assert not res.complete and res.ranks is None
    assert any("no filemap says how many ranks" in p.reason for p in res.problems)
    assert_not_complete(prefix, 1)
    assert [e.complete for e in IndexFile(prefix).entries()] == [False]
    assert cli("scavenge", "-i", "1") == 1
    assert "(RANKS): it cannot be verified complete" in capsys.readouterr().err


def test_huge_but_valid_ranks_lists_a_bounded_number(alloc, prefix):
    write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=100)
    for fm in filemaps(alloc, 1):
        edit_meta(fm, RANKS=1 << 24)
    res = scavenge_dataset(make_job(alloc, prefix), 1, NODES)
    assert not res.complete and res.missing_count == (1 << 24) - 6
    assert len(res.missing_ranks) == 4096 and res.missing_ranks[0] == 6
    assert f"6-4101 and {(1 << 24) - 6 - 4096} more of 16777216" in "\n".join(res.describe())


# --------------------------------------------------------------------------- confinement


def rename_file_keys(path: Path, new_key) -> None:
    """Replace every FILE key (cache path) of a filemap by ``new_key(old)``."""
    tree = kvtree.read(path)
    files = tree["FILE"]
    for old in list(files):
        sub = files[old]
        files.unset(old)
        files.set(new_key(old), sub)
    kvtree.write(path, tree)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlinked_dir", "symlinked_file"])
def test_sources_outside_the_cache_dir_are_refused(alloc, prefix, tmp_path, how):
    secret = tmp_path / "secret"
    secret.mkdir()
    ds = write_dataset(str(prefix), 1, local_storage(alloc.path, ["vnode1"]), alloc.job_id,
                       ranks_per_node=1, files_per_rank=1, size=100)
    rel = ds.files[0][0]
    cpath = Path(ds.cache_files[rel])
    (secret / cpath.name).write_bytes(cpath.read_bytes())  # same size and CRC: only the
    fm = filemaps(alloc, 1, ["vnode1"])[0]                  # path can give it away
    if how == "absolute":
        rename_file_keys(fm, lambda old: str(secret / cpath.name))
    elif how == "dotdot":
        cdir = Path(cache_dir(alloc.node_storage("vnode1"), USER, alloc.job_id, 1))
        up = os.path.relpath(secret, cdir)
        rename_file_keys(fm, lambda old: f"{cdir}/{up}/{cpath.name}")
    elif how == "symlinked_dir":
        parent = cpath.parent
        for f in parent.iterdir():
            f.unlink()
        parent.rmdir()
        parent.symlink_to(secret)
    else:
        cpath.unlink()
        cpath.symlink_to(secret / cpath.name)
    r = run_agent(alloc, "vnode1", prefix, 1)
    assert r.returncode == 1, r.stdout
    failed = [x for x in records(r.stdout) if x.get("status") == "failed"]
    assert len(failed) == 1 and "Traceback" not in r.stderr
    if how == "symlinked_file":
        assert "cache file unreadable" in failed[0]["error"]
    else:
        assert "is not inside the dataset's cache directory" in failed[0]["error"]
    assert not (prefix / rel).exists()
    res = scavenge_dataset(make_job(alloc, prefix), 1, ["vnode1"])
    assert not res.complete
    assert_not_complete(prefix, 1)


def test_cache_index_path_must_be_the_datasets_cache_dir(alloc, prefix):
    write_dataset(str(prefix), 1, local_storage(alloc.path, ["vnode1"]), alloc.job_id,
                  ranks_per_node=1, files_per_rank=1, size=100)
    cntl = Path(alloc.node_storage("vnode1")) / USER / f"scr.{alloc.job_id}" / "cindex.scrinfo"
    tree = kvtree.read(cntl)
    tree["DSET"]["1"].set_value("PATH", "/")
    kvtree.write(cntl, tree)
    r = run_agent(alloc, "vnode1", prefix, 1)
    assert r.returncode == 1
    assert "has PATH '/', not an absolute .../scr.dataset.1 directory" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_no_setuid_root_file_from_a_filemap(alloc, prefix):
    """MODE=0104755 UID=0 GID=0 in a filemap, the cache file owned by nobody: the copy
    belongs to nobody, without set-id bits."""
    ds = write_dataset(str(prefix), 1, local_storage(alloc.path, ["vnode1"]), alloc.job_id,
                       ranks_per_node=1, files_per_rank=2, size=100)
    for rel in ds.files[0]:
        os.chown(ds.cache_files[rel], 65534, 65534)
    for fm in filemaps(alloc, 1, ["vnode1"]):
        edit_meta(fm, MODE=0o104755, UID=0, GID=0)
    for procs in ("1", "2"):
        for rel in ds.files[0]:
            (prefix / rel).unlink(missing_ok=True)
        r = run_agent(alloc, "vnode1", prefix, 1, "--procs", procs)
        assert r.returncode == 0, r.stderr
        for rel in ds.files[0]:
            st = (prefix / rel).stat()
            assert (st.st_uid, st.st_gid) == (65534, 65534)
            assert stat.S_IMODE(st.st_mode) == 0o755, oct(st.st_mode)
    # a re-run keeps the files (present) and never adds the bits either
    r = run_agent(alloc, "vnode1", prefix, 1)
    assert {x["status"] for x in records(r.stdout) if x["event"] == "file"} == {"present"}
    assert all(stat.S_IMODE((prefix / rel).stat().st_mode) == 0o755 for rel in ds.files[0])


def test_symlink_in_the_prefix_leading_out_is_not_written_through(alloc, prefix, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (prefix / "ckpt.1").symlink_to(outside)
    write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=100)
    res = scavenge_dataset(make_job(alloc, prefix), 1, NODES)
    assert not res.complete
    assert "reached through a symlink that leads out of it" in "\n".join(res.describe())
    assert list(outside.rglob("*")) == []
    assert_not_complete(prefix, 1)


def test_symlink_in_place_of_a_verified_file_is_not_the_file(alloc, prefix, tmp_path, cli,
                                                             capsys):
    ds = write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=100)
    assert scavenge_dataset(make_job(alloc, prefix), 1, NODES).complete
    rel = ds.files[2][0]
    copy = tmp_path / "elsewhere.dat"
    copy.write_bytes((prefix / rel).read_bytes())
    (prefix / rel).unlink()
    (prefix / rel).symlink_to(copy)
    assert cli("index", "--build", "1") == 1
    assert "not a regular file in the prefix" in capsys.readouterr().err


# --------------------------------------------------------------------------- FIFOs


def test_fifo_in_place_of_a_cache_file_fails_it_without_hanging(alloc, prefix, cli, capsys):
    """The local allocation has no end time: before, the agent blocked in open() forever."""
    ds = write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=100)
    fifo = Path(ds.cache_files[ds.files[1][0]])
    fifo.unlink()
    os.mkfifo(fifo)
    assert cli("scavenge", "-i", "1") == 1
    err = capsys.readouterr().err
    assert "not a regular file" in err and ds.files[1][0] in err
    assert_not_complete(prefix, 1)


def test_fifo_control_files_never_block(alloc, prefix, cli, capsys):
    write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=100)
    # a FIFO as a cache filemap (vnode1), as the cache index (vnode2)
    fm = filemaps(alloc, 1, ["vnode1"])[0]
    fm.unlink()
    os.mkfifo(fm)
    cntl = Path(alloc.node_storage("vnode2")) / USER / f"scr.{alloc.job_id}" / "cindex.scrinfo"
    cntl.unlink()
    os.mkfifo(cntl)
    assert cli("scavenge", "-i", "1") == 1
    err = capsys.readouterr().err
    assert "node vnode1" in err and "node vnode2" in err
    assert_not_complete(prefix, 1)
    # a FIFO as a filemap in the prefix's dataset directory
    ddir = dataset_dir(prefix, 1)
    (ddir / "filemap_5").unlink()
    os.mkfifo(ddir / "filemap_5")
    assert cli("index", "--build", "1") == 1
    assert "filemap_5" in capsys.readouterr().err


def test_agent_timeout_ends_it(alloc, prefix, tmp_path):
    """--timeout bounds the agent whatever it waits for (here: a stopped writer)."""
    r = subprocess.run([sys.executable, "-c",
                        "import sys; from scr_core import copy_agent as a; "
                        "a.CopyAgent.run = lambda self: __import__('time').sleep(60); "
                        "sys.argv[0] = 'x'; a.run_cli()", "--id", "1", "--cntldir",
                        str(tmp_path), "--prefix", str(prefix), "--timeout", "1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "timed out after 1 s" in r.stderr
