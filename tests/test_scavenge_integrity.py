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
from ckpt_writer import cache_dir, content, local_storage, write_dataset
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


# --------------------------------------------------------------------------- fault matrix

BIG = 8 * 1024 * 1024
STOPPER = Path(__file__).with_name("agent_stopper.py")


def scr_env_for(scr_env: dict, alloc: LocalAllocation, prefix: Path, tmp: Path,
                stop_after: int = 0, **extra: str) -> dict:
    """Environment of ``scr`` in the allocation; ``stop_after``: its agents stop
    themselves after writing that many 4 KiB chunks (tests/agent_stopper.py)."""
    env = dict(scr_env, SCR_LOCAL_DIR=alloc.path, SCR_PREFIX=str(prefix),
               SCR_FILE_BUF_SIZE="4096", SCR_SCAVENGE_SYNC="none")
    env.update(extra)
    if stop_after:
        wrapper = tmp / "agent-python"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {STOPPER} "$@"\n')
        wrapper.chmod(0o755)
        env.update(SCR_AGENT_PYTHON=str(wrapper), SCR_TEST_STOP_AFTER=str(stop_after))
    return env


def agent_pids(prefix: Path) -> dict[int, str]:
    """{pid: state} of copy agents (and their workers) writing into ``prefix``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            # a thread that stopped the process shows it first (the main thread may not)
            states = [Path(f"/proc/{entry}/task/{task}/stat").read_text()
                      .rsplit(")", 1)[1].split()[0]
                      for task in os.listdir(f"/proc/{entry}/task")]
            state = "T" if "T" in states else states[0]
        except (OSError, IndexError):
            continue
        # the agent's interpreter itself, not a launcher (srun) that names it
        if str(prefix).encode() in argv and state != "Z" and \
                os.path.basename(argv[0]).startswith(b"python") and \
                any(b"copy_agent" in a or b"agent_stopper" in a for a in argv):
            found[int(entry)] = state
    return found


def scavenge_pids(prefix: Path) -> list[int]:
    """``scr scavenge`` processes (python, argv naming ``scavenge`` and ``prefix``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]).startswith(b"python") and b"scavenge" in argv and \
                str(prefix).encode() in argv:
            found.append(int(entry))
    return found


def part_write_pos(pid: int) -> int:
    """How far process ``pid`` has written into the part files it has open (0: none)."""
    best = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            if ".scr_copy" not in os.readlink(f"/proc/{pid}/fd/{fd}"):
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        best = max(best, int(info.split("pos:")[1].split()[0]))
    return best


def wait_for(cond, what: str, timeout: float = 60.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def signal_all(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def assert_bytes_intact(prefix: Path, ds) -> None:
    for rank, rels in ds.files.items():
        for rel in rels:
            index = int(Path(rel).stem.split("_")[1])
            assert (prefix / rel).read_bytes() == content(ds.id, rank, index, ds.sizes[rel]), rel


def stopped_mid_copy(prefix: Path) -> dict[int, str]:
    """Once an agent process has stopped itself mid-copy: every agent process, all of
    them stopped."""
    wait_for(lambda: "T" in agent_pids(prefix).values(), "an agent to stop mid-copy")
    pids = agent_pids(prefix)
    signal_all(pids, __import__("signal").SIGSTOP)
    return pids


def test_two_scavenges_at_once_never_complete_with_bad_bytes(alloc, prefix, scr_env,
                                                             tmp_path):
    """Scavenge A's agents stopped mid-copy; a second scavenge is refused by the dataset
    lock; a stray agent B (a scavenge on a file system without flock, or one left by a
    killed scavenge) starts copying the same files and stops mid-copy, behind A; A goes on
    and records the dataset, then B ends. Before: B truncated A's part file (O_TRUNC, one
    shared name), A renamed it with a hole and the batch node took A's CRC: COMPLETE, with
    zeros in the files."""
    import signal

    ds = write_dataset(str(prefix), 1, local_storage(alloc.path, ["vnode1"]), alloc.job_id,
                       ranks_per_node=2, files_per_rank=1, size=BIG)
    scr = [sys.executable, "-m", "scr_core"]
    first = subprocess.Popen([*scr, "scavenge", "-i", "1"],
                             env=scr_env_for(scr_env, alloc, prefix, tmp_path, 64),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    env = scr_env_for(scr_env, alloc, prefix, tmp_path)
    stray = None
    stopped: list = []
    try:
        a_pids = stopped = list(stopped_mid_copy(prefix))
        a_pos = max(part_write_pos(p) for p in a_pids)
        assert a_pos >= 64 * 4096
        # a second scavenge of the dataset: refused while A holds it, nothing marked
        second = subprocess.run([*scr, "scavenge", "-i", "1"], env=env, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 1, second.stderr
        assert "another scavenge of dataset 1 is running" in second.stderr
        assert IndexFile(prefix).entries() == []
        # the stray agent B: one process, stops after its first chunk
        stray = subprocess.Popen(
            [sys.executable, str(STOPPER), "--id", "1", "--jobid", alloc.job_id,
             "--prefix", str(prefix), "--buf", "4096", "--sync", "none", "--procs", "1"],
            env=dict(os.environ, SCR_CNTL_BASE=alloc.node_storage("vnode1"),
                     SCR_LOCAL_NODE="vnode1", SCR_TEST_STOP_AFTER="1"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: agent_pids(prefix).get(stray.pid) == "T", "the stray agent to stop")
        assert 0 < part_write_pos(stray.pid) < a_pos
        stopped = [stray.pid]
        signal_all(a_pids, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
        index = {e.id: e.complete for e in IndexFile(prefix).entries()}
        if first.returncode == 0:  # complete only with every byte right
            assert index == {1: True}
            assert_bytes_intact(prefix, ds)
        else:
            assert index.get(1) is not True, out + err
        os.kill(stray.pid, signal.SIGCONT)
        stopped = []
        _s_out, s_err = stray.communicate(timeout=300)
        assert first.returncode == 0, out + err  # its copies were its own: it completed
        # A removed the part files it found once done (a stray's too): the stray then fails
        # that file, safely, and copies the rest whole
        assert stray.returncode in (0, 1), s_err
        if stray.returncode:
            assert "No such file or directory" in s_err and ".scr_copy.vnode1." in s_err
        assert_bytes_intact(prefix, ds)
        assert not list(prefix.rglob("*.part"))
        # and the verification from scratch agrees
        r = subprocess.run([*scr, "index", "--build", "1"], env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    finally:
        signal_all(stopped, signal.SIGCONT)
        for proc in (first, stray):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert agent_pids(prefix) == {}


def test_scavenge_killed_and_rerun_completes(alloc, prefix, scr_env, tmp_path):
    """scr scavenge and its agents SIGKILLed mid-copy (the agents by pid: that a killed
    scr scavenge leaves them running is issue 16's signal part), then re-run: complete,
    verified, no part file left, no process left."""
    import signal

    ds = write_dataset(str(prefix), 1, local_storage(alloc.path, ["vnode1", "vnode2"]),
                       alloc.job_id, ranks_per_node=1, files_per_rank=2, size=BIG)
    scr = [sys.executable, "-m", "scr_core"]
    first = subprocess.Popen([*scr, "scavenge", "-i", "1"],
                             env=scr_env_for(scr_env, alloc, prefix, tmp_path, 16),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pids = stopped_mid_copy(prefix)
        first.kill()
        first.wait()
        signal_all(pids, signal.SIGKILL)
        wait_for(lambda: not agent_pids(prefix), "the agents to die")
    finally:
        if first.poll() is None:
            first.kill()
    assert list(prefix.rglob(".*.scr_copy.*.part"))  # what the kill left
    assert all(e.complete is not True for e in IndexFile(prefix).entries())
    r = subprocess.run([*scr, "scavenge", "-i", "1"],
                       env=scr_env_for(scr_env, alloc, prefix, tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert_bytes_intact(prefix, ds)
    assert not list(prefix.rglob("*.part"))
    assert [e.complete for e in IndexFile(prefix).entries()] == [True]
    assert agent_pids(prefix) == {}


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 6 MiB tmpfs mounted for the test (root), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_on_the_prefix(alloc, small_tmpfs, scr_env, tmp_path):
    """The prefix fills up half way: exit 1 (documented: a dataset was not saved), the
    dataset not complete, no part file left, every file under its final name whole; with
    room again a re-run completes."""
    prefix = small_tmpfs
    (prefix / ".scr").mkdir()
    ds = write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id,
                       ranks_per_node=2, files_per_rank=2, size=1024 * 1024)  # 12 MiB
    env = scr_env_for(scr_env, alloc, prefix, tmp_path, SCR_FILE_BUF_SIZE="1MiB")
    scr = [sys.executable, "-m", "scr_core"]
    r = subprocess.run([*scr, "scavenge", "-i", "1"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "No space left on device" in r.stderr and "Traceback" not in r.stderr
    assert not (dataset_dir(prefix, 1) / "summary.scr").exists()
    assert all(e.complete is not True for e in IndexFile(prefix).entries())
    assert not list(prefix.rglob("*.part"))
    for rank, rels in ds.files.items():
        for rel in rels:
            if (prefix / rel).exists():
                index = int(Path(rel).stem.split("_")[1])
                assert (prefix / rel).read_bytes() == content(1, rank, index, 1024 * 1024)
    subprocess.run(["mount", "-o", "remount,size=32m", str(prefix)], check=True)
    r = subprocess.run([*scr, "scavenge", "-i", "1"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert_bytes_intact(prefix, ds)
    assert [e.complete for e in IndexFile(prefix).entries()] == [True]
    assert agent_pids(prefix) == {}


def test_bypass_file_listed_at_its_place_in_the_prefix_is_verified(alloc, prefix):
    """SCR_CACHE_BYPASS: the file was written to the prefix and the filemap lists it
    there; that is not a source outside the cache directory."""
    ds = write_dataset(str(prefix), 1, local_storage(alloc.path, ["vnode1"]), alloc.job_id,
                       ranks_per_node=1, files_per_rank=1, size=100)
    rel = ds.files[0][0]
    (prefix / rel).parent.mkdir(parents=True)
    os.replace(ds.cache_files[rel], prefix / rel)
    rename_file_keys(filemaps(alloc, 1, ["vnode1"])[0], lambda old: str(prefix / rel))
    r = run_agent(alloc, "vnode1", prefix, 1)
    assert r.returncode == 0, r.stderr
    assert [x["status"] for x in records(r.stdout) if x["event"] == "file"] == ["present"]


def test_destination_in_the_prefixs_scr_directory_is_refused(alloc, prefix):
    """A filemap naming <prefix>/.scr/index.scr as a file's place must not replace it."""
    write_dataset(str(prefix), 1, local_storage(alloc.path, ["vnode1"]), alloc.job_id,
                  ranks_per_node=1, files_per_rank=1, size=100)
    edit_meta(filemaps(alloc, 1, ["vnode1"])[0], PATH=str(prefix / ".scr"), NAME="flush.scr")
    before = (prefix / ".scr" / "flush.scr").read_bytes()
    r = run_agent(alloc, "vnode1", prefix, 1)
    assert r.returncode == 1 and "in its .scr directory" in r.stderr
    assert (prefix / ".scr" / "flush.scr").read_bytes() == before


LAB_SIZE = 2 * 1024 * 1024


def lab_dataset(slurm, tmp_path: Path) -> tuple[str, Path, dict, list, Path]:
    """A dataset of 4 ranks written on two lab nodes into their private /dev/shm: (job id,
    prefix, scr's environment, the scr command in the lab, the stopping agent wrapper)."""
    pytest.importorskip("scr_plugins_slurm")
    from test_scavenge import _LAB_SHIM

    job_id = slurm.salloc("--no-kill", "-N2", "--ntasks-per-node=2", "-t", "10")
    prefix = tmp_path / "prefix"
    (prefix / ".scr").mkdir(parents=True)
    writer = str(Path(__file__).with_name("ckpt_writer.py"))
    r = slurm.run(["srun", f"--jobid={job_id}", "-N2", "--ntasks-per-node=2", "--overlap",
                   "--mpi=none", sys.executable, writer, "--per-rank", "--prefix",
                   str(prefix), "--id", "1", "--size", str(LAB_SIZE), "--files-per-rank",
                   "1"], env=slurm.job_env(job_id), timeout=120, check=False)
    assert r.returncode == 0, r.stderr + r.stdout
    conf = tmp_path / "settings.yaml"
    conf.write_text("core:\n  remote_exec: launcher\nremote:\n  launcher: srun\n")
    wrapper = tmp_path / "agent-python"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {STOPPER} "$@"\n')
    wrapper.chmod(0o755)
    env = slurm.job_env(job_id, PATH=os.path.dirname(sys.executable) + os.pathsep +
                        os.environ.get("PATH", ""), HOME=str(tmp_path),
                        SCR_SETTINGS_FILE=str(conf), SCR_PREFIX=str(prefix),
                        SCR_NODE_TESTS="none", SCR_FILE_BUF_SIZE="4096",
                        SCR_SCAVENGE_SYNC="none")
    lab = [str(slurm.lab_dir / "bin" / "lab"), "exec", sys.executable, "-c", _LAB_SHIM]
    return job_id, prefix, env, lab, wrapper


def assert_lab_dataset_saved(prefix: Path) -> None:
    for rank in range(4):
        path = prefix / "ckpt.1" / f"rank_{rank}" / "file_0.dat"
        assert path.read_bytes() == content(1, rank, 0, LAB_SIZE)
    assert [e.complete for e in IndexFile(prefix).entries()] == [True]
    assert not list(prefix.rglob("*.part"))


@pytest.mark.slurm
def test_slurm_lab_two_scavenges_at_once(slurm, tmp_path):
    """On the lab: the copy agents (srun steps on the nodes, caches in the nodes' private
    /dev/shm) stop themselves mid-copy; a second scavenge of the dataset is refused; the
    first then completes with every byte right."""
    import signal

    job_id, prefix, env, lab, wrapper = lab_dataset(slurm, tmp_path)
    first = None
    try:
        first = subprocess.Popen([*lab, "scavenge", "-p", str(prefix), "-i", "1"],
                                 env=dict(env, SCR_AGENT_PYTHON=str(wrapper),
                                          SCR_TEST_STOP_AFTER="64"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stopped = stopped_mid_copy(prefix)
        second = subprocess.run([*lab, "scavenge", "-p", str(prefix), "-i", "1"], env=env,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 1, second.stdout + second.stderr
        assert "another scavenge of dataset 1 is running" in second.stderr
        signal_all(stopped, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, out + err
        assert_lab_dataset_saved(prefix)
    finally:
        signal_all(agent_pids(prefix), signal.SIGCONT)
        if first is not None and first.poll() is None:
            first.kill()
            first.communicate()
        slurm.run(["scancel", job_id], check=False)


@pytest.mark.slurm
def test_slurm_lab_scavenge_killed_and_rerun(slurm, tmp_path):
    """On the lab: scr scavenge SIGKILLed while its agents (srun steps) are stopped
    mid-copy, the agents killed by pid (that they outlive scr scavenge is issue 16's
    signal part), then a re-run: complete, every byte right, no part file, no agent left."""
    import signal

    job_id, prefix, env, lab, wrapper = lab_dataset(slurm, tmp_path)
    first = None
    try:
        first = subprocess.Popen([*lab, "scavenge", "-p", str(prefix), "-i", "1"],
                                 env=dict(env, SCR_AGENT_PYTHON=str(wrapper),
                                          SCR_TEST_STOP_AFTER="64"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stopped = stopped_mid_copy(prefix)
        # scr scavenge itself, inside the lab's head (not only the "lab exec" around it)
        signal_all(scavenge_pids(prefix), signal.SIGKILL)
        first.kill()
        first.wait()
        signal_all(stopped, signal.SIGKILL)
        wait_for(lambda: not agent_pids(prefix) and not scavenge_pids(prefix),
                 "scr scavenge and its agents to die")
        assert list(prefix.rglob(".*.scr_copy.*.part"))  # what the kill left
        r = subprocess.run([*lab, "scavenge", "-p", str(prefix), "-i", "1"], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert_lab_dataset_saved(prefix)
        assert agent_pids(prefix) == {}
    finally:
        signal_all(agent_pids(prefix), signal.SIGKILL)
        if first is not None and first.poll() is None:
            first.kill()
            first.wait()
        slurm.run(["scancel", job_id], check=False)


def test_read_filemap_rejects_impossible_values(tmp_path):
    from scr_core.control.filemap import Filemap, FileMeta, read_filemap, write_filemap
    from scr_core.errors import ControlFileError

    path = tmp_path / "filemap_0"
    write_filemap(path, Filemap(files={"/c/f": FileMeta(ranks=2147483647, rank=0, size=1)}))
    with pytest.raises(ControlFileError, match="filemap_0: FILE /c/f: corrupt filemap: "
                                               "META RANKS 2147483647"):
        read_filemap(path)
    write_filemap(path, Filemap(files={"/c/f": FileMeta(ranks=4, rank=3, size=1)}))
    assert read_filemap(path).files["/c/f"].ranks == 4
