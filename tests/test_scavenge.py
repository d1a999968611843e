"""Scavenge: copy agent, batch-node verification, postrun selection, scr scavenge/index.

Caches are made by ``tests/ckpt_writer.py`` in the storage of the local backend's virtual
nodes, exactly where libscr leaves them before a flush; nothing is on the prefix but the
flush file. The Slurm lab variant writes into the lab nodes' private /dev/shm via srun.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import ckpt_writer
import pytest
from ckpt_writer import content, local_storage, write_dataset
from scr_core.cli import main as cli_main
from scr_core.control.flush import FlushFile
from scr_core.control.index import IndexFile
from scr_core.control.paths import dataset_dir
from scr_core.control.summary import read_rank2file, read_summary
from scr_core.engine.jobenv import JobEnv
from scr_core.engine.postrun import postrun
from scr_core.engine.scavenge import scavenge_dataset, scavenge_datasets
from scr_core.local.allocation import LocalAllocation

from scr_core import kvtree

NODES = ["vnode1", "vnode2", "vnode3"]

# The real CLI. Until scavenge/index are registered in cli/main.py COMMANDS, a shim adds
# them to the same main() (and nothing else).
_SHIM = ("import sys; from scr_core.cli import main as m; "
         "m.COMMANDS.setdefault('scavenge', ('scr_core.cli.scavenge_cmd', 'scavenge', "
         "'scr_scavenge')); "
         "m.COMMANDS.setdefault('index', ('scr_core.cli.index_cmd', 'index', None)); "
         "sys.exit(m.main(sys.argv[1:]))")
if "scavenge" in cli_main.COMMANDS and "index" in cli_main.COMMANDS:
    SCR = [sys.executable, "-m", "scr_core"]
else:
    SCR = [sys.executable, "-c", _SHIM]


def _register_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli_main.COMMANDS, "scavenge", cli_main.COMMANDS.get(
        "scavenge", ("scr_core.cli.scavenge_cmd", "scavenge", "scr_scavenge")))
    monkeypatch.setitem(cli_main.COMMANDS, "index", cli_main.COMMANDS.get(
        "index", ("scr_core.cli.index_cmd", "index", None)))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def alloc(tmp_path: Path) -> LocalAllocation:
    return LocalAllocation.create(NODES, base=str(tmp_path / "alloc"))


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    p = tmp_path / "prefix"
    (p / ".scr").mkdir(parents=True)
    return p


def make_job(alloc: LocalAllocation, prefix: Path, **extra: str) -> JobEnv:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCR_", "SLURM_", "LSB_", "FLUX_"))}
    env.update(SCR_LOCAL_DIR=alloc.path, SCR_PREFIX=str(prefix),
               HOME=str(Path(alloc.path) / "home"), **extra)
    return JobEnv(environ=env)


def lines_of(out: list) -> str:
    return "\n".join(out)


def assert_dataset_in_prefix(prefix: Path, ds: ckpt_writer.Dataset) -> None:
    """Every byte, mode and mtime of the dataset is in the prefix, and nothing else."""
    for rank, rels in ds.files.items():
        for rel in rels:
            path = prefix / rel
            index = int(path.stem.split("_")[1])
            assert path.read_bytes() == content(ds.id, rank, index, ds.sizes[rel]), rel
            st = path.stat()
            assert oct(st.st_mode & 0o777) == oct(0o640)
            assert st.st_mtime_ns % 10**9 == 222  # the filemap's MTIME_NSECS
    on_disk = sorted(str(p.relative_to(prefix)) for p in (prefix / ds.name).rglob("*")
                     if p.is_file())
    assert on_disk == sorted(r for rels in ds.files.values() for r in rels)


# --------------------------------------------------------------------------- agent


def run_agent(alloc: LocalAllocation, node: str, prefix: Path, dataset_id: int,
              *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SCR_CNTL_BASE=alloc.node_storage(node), SCR_LOCAL_NODE=node)
    return subprocess.run(
        [sys.executable, "-m", "scr_core.copy_agent", "--id", str(dataset_id), "--jobid",
         alloc.job_id, "--prefix", str(prefix), *extra],
        env=env, capture_output=True, text=True, timeout=120)


def records(stdout: str) -> list:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_agent_copies_verifies_and_reports_json(alloc, prefix):
    ds = write_dataset(str(prefix), 4, local_storage(alloc.path, ["vnode1"]), alloc.job_id,
                       ranks_per_node=2, files_per_rank=3, size=10_000)
    r = run_agent(alloc, "vnode1", prefix, 4)
    assert r.returncode == 0, r.stderr
    recs = records(r.stdout)
    files = [x for x in recs if x["event"] == "file"]
    assert len(files) == 6 and all(f["status"] == "copied" for f in files)
    assert all(f["crc"] == f["crc_expected"] for f in files)
    summary = recs[-1]
    assert summary["event"] == "summary" and summary["rc"] == 0
    assert summary["ranks"] == [0, 1] and summary["bytes"] == 60_000
    assert summary["node"] == "vnode1" and r.stderr == ""  # quiet when not a terminal
    metas = sorted(x["name"] for x in recs if x["event"] == "meta")
    assert metas == ["filemap_0", "filemap_1", "reddesc.er.0.redset", "reddesc.er.1.redset"]
    assert_dataset_in_prefix(prefix, ds)
    cache = Path(ckpt_writer.cache_dir(alloc.node_storage("vnode1"), os.environ.get("USER") or
                                       "root", alloc.job_id, 4)) / ".scr"
    ddir = dataset_dir(prefix, 4)
    for name in ("filemap_0", "filemap_1", "reddesc.er.1.redset"):
        assert (ddir / name).read_bytes() == (cache / name).read_bytes()
    # again: nothing is copied twice
    r2 = run_agent(alloc, "vnode1", prefix, 4)
    assert r2.returncode == 0
    assert {x["status"] for x in records(r2.stdout) if x["event"] == "file"} == {"present"}


def test_agent_usage_and_nothing_cached(alloc, prefix):
    r = subprocess.run([sys.executable, "-m", "scr_core.copy_agent", "--prefix", str(prefix)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--id" in r.stderr
    base = [sys.executable, "-m", "scr_core.copy_agent", "--id", "9", "--jobid", alloc.job_id]
    for bad in (["--prefix", str(prefix), "--buf", "\u00b2"], ["--prefix", "-x"]):
        r = subprocess.run(base + bad, capture_output=True, text=True)
        assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
    r = run_agent(alloc, "vnode2", prefix, 0)
    assert r.returncode == 2 and "positive" in r.stderr
    r = run_agent(alloc, "vnode2", prefix, 9)  # the node holds nothing: not an error
    assert r.returncode == 0
    assert records(r.stdout)[-1]["status"] == "no-cache-index"
    r = run_agent(alloc, "vnode2", prefix, 9, "vnode[1-2]")  # listed as down: does nothing
    assert r.returncode == 0 and records(r.stdout)[-1]["status"] == "node-down"


def test_agent_crc_mismatch_names_file_and_leaves_nothing(alloc, prefix):
    ds = write_dataset(str(prefix), 2, local_storage(alloc.path, ["vnode1"]), alloc.job_id,
                       ranks_per_node=1, files_per_rank=2, size=3 * 1024 * 1024)
    bad_rel = ds.files[0][1]
    with open(ds.cache_files[bad_rel], "r+b") as fh:  # same size, one flipped byte
        fh.seek(1_500_000)
        byte = fh.read(1)
        fh.seek(1_500_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    # the sequential loop and the read/CRC/write pipeline
    for extra in (["--buf", "1MiB"], ["--buf", "64KiB", "--pipeline", "on"]):
        r = run_agent(alloc, "vnode1", prefix, 2, *extra)
        assert r.returncode == 1
        assert f"FAILED rank 0 {bad_rel}: CRC mismatch" in r.stderr
        failed = [x for x in records(r.stdout) if x.get("status") == "failed"]
        assert [f["path"] for f in failed] == [bad_rel]
        assert not (prefix / bad_rel).exists()
        assert not list((prefix / bad_rel).parent.glob(".*.part"))


def test_pipelined_copy_matches_zlib(tmp_path):
    from scr_core.copy_agent import _copy_pipelined, _copy_simple

    data = os.urandom(5 * 1024 * 1024 + 17)
    src = tmp_path / "src"
    src.write_bytes(data)
    for fn in ("pipe", "simple"):
        dst = tmp_path / fn
        s = os.open(src, os.O_RDONLY)
        d = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if fn == "pipe":
                n, crc = _copy_pipelined(s, d, 65536, True)
            else:
                n, crc = _copy_simple(s, d, bytearray(65536), True)
        finally:
            os.close(s)
            os.close(d)
        assert (n, crc) == (len(data), zlib.crc32(data))
        assert dst.read_bytes() == data


def test_pipelined_copy_write_error_does_not_hang(tmp_path):
    from scr_core.copy_agent import _copy_pipelined

    src = tmp_path / "src"
    src.write_bytes(os.urandom(2 * 1024 * 1024))
    s = os.open(src, os.O_RDONLY)
    d = os.open(src, os.O_RDONLY)  # writing to a read-only descriptor fails
    try:
        with pytest.raises(OSError):
            _copy_pipelined(s, d, 65536, True)
    finally:
        os.close(s)
        os.close(d)


def test_agent_progress_when_asked(alloc, prefix):
    write_dataset(str(prefix), 1, local_storage(alloc.path, ["vnode1"]), alloc.job_id,
                  ranks_per_node=1, files_per_rank=1, size=1000)
    r = run_agent(alloc, "vnode1", prefix, 1, "--progress")
    assert r.returncode == 0
    assert "scr_copy: 1000 B of 1000 B, 1/1 files" in r.stderr


# --------------------------------------------------------------------------- engine


def test_all_nodes_up_complete_and_files_match_format(alloc, prefix):
    ds = write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id,
                       size=50_000)
    job = make_job(alloc, prefix, SCR_LOG_ENABLE="1")
    from scr_core.scrlog import ScrLog, parse_file

    log = ScrLog(str(prefix), alloc.job_id)
    out: list = []
    assert scavenge_datasets(job, [1], out=out.append, log=log), lines_of(out)
    assert "dataset 1 (ckpt.1) saved: 6 rank(s), 12 file(s)" in lines_of(out)
    assert_dataset_in_prefix(prefix, ds)
    events = [(r.label, r.dset) for r in parse_file(str(prefix / ".scr" / "log"))]
    assert events == [("SCAVENGE_START", 1), ("SCAVENGE_END", 1)]

    ddir = dataset_dir(prefix, 1)
    desc = ds.desc.to_tree()
    # summary.scr: VERSION 6, COMPLETE 1, DSET (kvtree.md §5.6) and nothing else
    summary = kvtree.read(ddir / "summary.scr")
    assert sorted(summary) == ["COMPLETE", "DSET", "VERSION"]
    assert summary.value("VERSION") == "6" and summary.value("COMPLETE") == "1"
    assert summary["DSET"] == desc
    assert read_summary(ddir).complete is True
    # rank2file root and its one part
    root = kvtree.read(ddir / "rank2file")
    assert root.to_dict() == {"RANKS": {"6": {}}, "RANK": {"0": {"FILE": {".0.0": {}},
                                                                 "OFFSET": {"0": {}}}},
                              "LEVEL": {"1": {}}}
    part = kvtree.read(ddir / "rank2file.0.0")
    assert sorted(part) == ["LEVEL", "RANK", "RANKS"]
    assert part.value("LEVEL") == "0" and part.value("RANKS") == "6"
    for rank in range(6):
        assert sorted(part["RANK"][str(rank)]["FILE"]) == ds.files[rank]
    assert {r: sorted(f) for r, f in read_rank2file(ddir).files.items()} == ds.files
    # index.scr: VERSION 2, NAME/<name>/DSET, DSET/<id>/{COMPLETE, DSET, FLUSHED}
    index = kvtree.read(prefix / ".scr" / "index.scr")
    assert sorted(index) == ["DSET", "NAME", "VERSION"]
    assert index.value("VERSION") == "2"
    assert index["NAME"].to_dict() == {"ckpt.1": {"DSET": {"1": {}}}}
    entry = index["DSET"]["1"]
    assert sorted(entry) == ["COMPLETE", "DSET", "FLUSHED"]
    assert entry.value("COMPLETE") == "1" and entry["DSET"] == desc
    assert time.strptime(entry.value("FLUSHED"), "%Y-%m-%dT%H:%M:%S")
    # flush.scr: PFS added (first in order, what scr_flush_file --location prints)
    flush = FlushFile(prefix)
    assert flush.location(1) == "PFS" and set(flush.locations(1)) == {"PFS", "CACHE"}
    assert not flush.need_flush(1)
    # per-node outputs as SCR keeps them: node line, text, blank line
    text = (ddir / f"scavenge.o{alloc.job_id}").read_text()
    for node in NODES:
        assert f"{node}\n{{" in text
    assert text.endswith("}\n\n")
    assert (ddir / f"scavenge.e{alloc.job_id}").read_text() == "vnode1\n\nvnode2\n\nvnode3\n\n"
    # every file we wrote round-trips byte for byte through our KVTree reader/writer
    for path in [ddir / "summary.scr", ddir / "rank2file", ddir / "rank2file.0.0",
                 prefix / ".scr" / "index.scr", prefix / ".scr" / "flush.scr"]:
        assert kvtree.dumps(kvtree.read(path)) == path.read_bytes()


def test_batch_side_progress_and_build_without_flush_file(alloc, prefix, monkeypatch,
                                                         capsys):
    write_dataset(str(prefix), 3, local_storage(alloc.path), alloc.job_id, size=3000)
    job = make_job(alloc, prefix)
    shown: list = []
    res = scavenge_dataset(job, 3, NODES, progress=shown.append)
    assert res.complete
    assert shown[-1] == "\n"
    assert "scavenge: dataset 3: 35.2 KiB of 35.2 KiB, 12/12 files" in shown[-2]
    # a later allocation: prerun removed flush.scr; --build takes the descriptor from the
    # filemaps the agents copied
    (prefix / ".scr" / "flush.scr").unlink()
    (prefix / ".scr" / "index.scr").unlink()
    _register_commands(monkeypatch)
    monkeypatch.chdir(prefix)
    assert cli_main.main(["index", "--build", "3"]) == 0
    entry = IndexFile(prefix).entries()[0]
    assert (entry.id, entry.name, entry.complete) == (3, "ckpt.3", True)
    assert entry.dataset.jobid == alloc.job_id


def test_one_node_crashed_older_checkpoint_made_current(alloc, prefix):
    # ckpt 1 ran on two nodes; ckpt 2 on all three; then vnode3 dies with its cache
    ds1 = write_dataset(str(prefix), 1, local_storage(alloc.path, ["vnode1", "vnode2"]),
                        alloc.job_id, size=2000)
    write_dataset(str(prefix), 2, local_storage(alloc.path), alloc.job_id, size=2000)
    alloc.crash("vnode3")
    import shutil

    shutil.rmtree(alloc.node_storage("vnode3"))
    job = make_job(alloc, prefix)
    out: list = []
    assert postrun(job, out=out.append) is False  # ckpt 2 was lost
    text = lines_of(out)
    assert "dataset 2 (ckpt.2) was NOT saved" in text
    assert "missing or bad ranks: 4-5 of 6" in text
    assert "node vnode3 was down: Not responding (node crashed)" in text
    assert "dataset 1 (ckpt.1) saved" in text
    assert "restart point (CURRENT) is ckpt.1" in text
    index = IndexFile(prefix)
    assert index.current() == "ckpt.1"
    entries = {e.id: e for e in index.entries()}
    assert entries[1].complete is True and entries[2].complete is False
    assert not (dataset_dir(prefix, 2) / "summary.scr").exists()
    assert FlushFile(prefix).need_flush(2)
    assert_dataset_in_prefix(prefix, ds1)
    listing = index.format_list()
    assert "   2 NO " in listing and "   1 YES " in listing and "  * ckpt.1" in listing


def test_missing_ranks_are_handed_to_scrs_scr_index(alloc, prefix, tmp_path):
    # SCR's C scr_index is an ELF program; stand-ins that exit 0 (rebuilt) and 1 (not)
    write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=500)
    write_dataset(str(prefix), 2, local_storage(alloc.path), alloc.job_id, size=500)
    alloc.crash("vnode2")
    res = scavenge_dataset(make_job(alloc, prefix, SCR_INDEX_EXE="/bin/false"), 1, NODES)
    assert not res.complete and res.missing_ranks == [2, 3]
    assert res.node_problems["scr_index"].startswith("--build exited 1")
    # a stand-in that exits 0 without rebuilding anything: the exit code is not believed
    # (a real rebuild through SCR's scr_index is tests/test_real_scr_slurm.py's)
    res = scavenge_dataset(make_job(alloc, prefix, SCR_INDEX_EXE="/bin/true"), 2, NODES)
    assert not res.complete and not res.delegated and res.missing_ranks == [2, 3]
    assert "exited 0, but the dataset does not verify: missing or bad ranks 2-3" in \
        res.node_problems["scr_index"]
    assert FlushFile(prefix).location(2) == "CACHE"
    assert [e.complete for e in IndexFile(prefix).entries() if e.id == 2] == [False]
    # a script called scr_index (our own console script would be one) is never delegated to
    fake = tmp_path / "bin" / "scr_index"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    from scr_core.engine.scavenge import find_scr_index

    job = make_job(alloc, prefix, PATH=f"{fake.parent}:/usr/bin:/bin")
    assert find_scr_index(job) is None


def test_crashed_node_falls_back_to_checkpoint_already_on_prefix(alloc, prefix):
    write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=1000)
    job = make_job(alloc, prefix)
    res = scavenge_dataset(job, 1, NODES)  # as if libscr had flushed it
    assert res.complete and IndexFile(prefix).current() is None
    write_dataset(str(prefix), 2, local_storage(alloc.path), alloc.job_id, size=1000)
    alloc.crash("vnode2")
    out: list = []
    assert postrun(job, out=out.append) is False
    assert IndexFile(prefix).current() == "ckpt.1", lines_of(out)
    assert "ranks: 2-3 of 6" in lines_of(out)


def test_postrun_scavenges_only_the_newest_checkpoint(alloc, prefix):
    write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=1000)
    ds2 = write_dataset(str(prefix), 2, local_storage(alloc.path), alloc.job_id, size=1000)
    job = make_job(alloc, prefix)
    out: list = []
    assert postrun(job, out=out.append) is True, lines_of(out)
    assert IndexFile(prefix).current() == "ckpt.2"
    assert [e.id for e in IndexFile(prefix).entries()] == [2]
    assert not (prefix / "ckpt.1").exists()
    assert_dataset_in_prefix(prefix, ds2)
    # nothing left to do the second time
    out.clear()
    assert postrun(job, out=out.append) is True
    assert "checkpoint 2 is on the prefix; older ones are not needed" in lines_of(out)


def test_failed_output_bounds_the_checkpoint_search(alloc, prefix):
    write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=1000)
    out2 = write_dataset(str(prefix), 2, local_storage(alloc.path), alloc.job_id, size=1000,
                         kind="output")
    write_dataset(str(prefix), 3, local_storage(alloc.path), alloc.job_id, size=1000)
    os.truncate(out2.cache_files[out2.files[3][0]], 10)  # output 2 is damaged on vnode2
    job = make_job(alloc, prefix)
    out: list = []
    assert postrun(job, out=out.append) is False
    text = lines_of(out)
    assert "dataset 2 (output.2) was NOT saved" in text
    assert "cache file has 10 bytes, filemap SIZE says 1000" in text
    assert "(on vnode2)" in text
    # ckpt 3 is newer than the failed output: SCR does not consider it; ckpt 1 is saved
    assert not (prefix / "ckpt.3").exists()
    assert IndexFile(prefix).current() == "ckpt.1"


def test_corrupted_cache_file_is_not_complete(alloc, prefix):
    ds = write_dataset(str(prefix), 5, local_storage(alloc.path), alloc.job_id, size=8192)
    bad = ds.files[3][0]
    with open(ds.cache_files[bad], "r+b") as fh:
        fh.seek(100)
        fh.write(b"X")
    job = make_job(alloc, prefix)
    res = scavenge_dataset(job, 5, NODES)
    assert not res.complete
    assert res.missing_ranks == [3]
    problem = next(p for p in res.problems if p.path == bad)
    assert problem.node == "vnode2" and "CRC mismatch" in problem.reason
    assert not (prefix / bad).exists()
    assert not (dataset_dir(prefix, 5) / "summary.scr").exists()
    assert [e.complete for e in IndexFile(prefix).entries()] == [False]
    assert FlushFile(prefix).locations(5) == ["CACHE"]
    text = "\n".join(res.describe())
    assert f"file rank 3 {bad} (on vnode2): copy failed: CRC mismatch" in text


def test_no_crc_in_filemap_verifies_size(alloc, prefix):
    ds = write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=777,
                       crc=False)
    job = make_job(alloc, prefix, SCR_CRC_ON_FLUSH="0", SCR_FILE_BUF_SIZE="64KB")
    res = scavenge_dataset(job, 1, NODES)
    assert res.complete, res.describe()
    assert_dataset_in_prefix(prefix, ds)


def test_interrupted_scavenge_rerun_completes_without_duplicates(alloc, prefix):
    size = 48 * 1024 * 1024
    ds = write_dataset(str(prefix), 7, local_storage(alloc.path, ["vnode1"]), alloc.job_id,
                       ranks_per_node=2, files_per_rank=2, size=size)
    env = dict(os.environ, SCR_CNTL_BASE=alloc.node_storage("vnode1"), SCR_LOCAL_NODE="vnode1")
    # a 4 KiB buffer makes the copy slow enough to be killed half way
    proc = subprocess.Popen(
        [sys.executable, "-m", "scr_core.copy_agent", "--id", "7", "--jobid", alloc.job_id,
         "--prefix", str(prefix), "--buf", "4096", "--sync", "none"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts: list = []
    deadline = time.monotonic() + 60
    data_dir = prefix / ds.name
    while time.monotonic() < deadline and proc.poll() is None:
        parts = []
        for p in data_dir.rglob(".file_*.dat.scr_copy.*.part"):
            try:
                if p.stat().st_size > 0:
                    parts.append(p)
            except FileNotFoundError:  # renamed in the meantime
                pass
        if parts and list(data_dir.rglob("file_*.dat")):
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the agent finished before it was killed"
    assert parts, "no partial copy was seen"
    first_done = sorted(str(p.relative_to(prefix)) for p in prefix.rglob("file_*.dat"))
    assert 0 < len(first_done) < 4
    for p in prefix.rglob(".*.scr_copy.*.part"):  # what a kill leaves: a partial temp file
        assert p.stat().st_size < size

    job = make_job(alloc, prefix)
    res = scavenge_dataset(job, 7, ["vnode1", "vnode2", "vnode3"])
    assert res.complete, res.describe()
    assert res.bytes_copied == 4 * size - len(first_done) * size  # done files not recopied
    assert not list(prefix.rglob("*.part"))
    assert_dataset_in_prefix(prefix, ds)
    text = (dataset_dir(prefix, 7) / f"scavenge.o{alloc.job_id}").read_text()
    present = [rec["path"] for rec in map(json.loads, (ln for ln in text.splitlines()
                                                       if ln.startswith("{")))
               if rec["event"] == "file" and rec["status"] == "present"]
    assert sorted(present) == first_done


@pytest.fixture
def ro_mount(tmp_path: Path):
    """A directory and a bind mount of it that can be made read-only (root ignores modes)."""
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root")
    src = tmp_path / "rw"
    mnt = tmp_path / "ro"
    src.mkdir()
    mnt.mkdir()
    r = subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind mount: {r.stderr.strip()}")

    def make_ro() -> None:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True)

    yield mnt, make_ro
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_read_only_prefix_is_a_clear_failure(alloc, ro_mount):
    prefix, make_ro = ro_mount
    (prefix / ".scr").mkdir()
    write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id, size=1000)
    make_ro()
    job = make_job(alloc, prefix)
    res = scavenge_dataset(job, 1, NODES)
    assert not res.complete
    assert "Read-only file system" in res.error
    out: list = []
    assert postrun(job, out=out.append) is False
    assert "dataset 1 (ckpt.1) was NOT saved: cannot create" in lines_of(out)
    assert not (prefix / ".scr" / "index.scr").exists()
    assert FlushFile(prefix).need_flush(1)


def test_read_only_data_directory_names_the_files(alloc, prefix, ro_mount):
    # the dataset's directory in the prefix is a read-only mount; .scr stays writable (a
    # mount inside the prefix: a symlink leading out of it is never written through)
    mnt, _make_ro = ro_mount
    inner = prefix / "ckpt.1"
    inner.mkdir()
    subprocess.run(["mount", "--bind", str(mnt), str(inner)], check=True)
    try:
        ds = write_dataset(str(prefix), 1, local_storage(alloc.path), alloc.job_id,
                           size=1000)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(inner)], check=True)
        job = make_job(alloc, prefix)
        res = scavenge_dataset(job, 1, NODES)
    finally:
        subprocess.run(["umount", "-l", str(inner)], capture_output=True)
    assert not res.complete
    assert res.missing_ranks == list(range(6))
    text = "\n".join(res.describe())
    assert "Read-only file system" in text and "(on vnode1)" in text
    assert ds.files[0][0] in text
    assert [e.complete for e in IndexFile(prefix).entries()] == [False]
    assert not (dataset_dir(prefix, 1) / "summary.scr").exists()


# --------------------------------------------------------------------------- index command


def test_index_command(alloc, prefix, monkeypatch, capsys):
    _register_commands(monkeypatch)
    monkeypatch.chdir(prefix)
    for k in [k for k in os.environ if k.startswith("SCR_")]:
        monkeypatch.delenv(k)
    assert cli_main.main(["index", "-l"]) == 1
    assert "no index file" in capsys.readouterr().err
    job = make_job(alloc, prefix)
    for i in (1, 2, 3):
        write_dataset(str(prefix), i, local_storage(alloc.path), alloc.job_id, size=100)
        assert scavenge_dataset(job, i, NODES).complete
    capsys.readouterr()
    assert cli_main.main(["index"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == "DSET VALID FLUSHED             CUR NAME"
    assert [row.split()[0] for row in listing[1:]] == ["3", "2", "1"]
    assert cli_main.main(["index", "--current", "ckpt.2"]) == 0
    assert IndexFile(prefix).current() == "ckpt.2"
    assert cli_main.main(["index", "-c", "nope"]) == 1
    assert cli_main.main(["index", "--drop-after", "ckpt.1"]) == 0
    assert [e.id for e in IndexFile(prefix).entries()] == [1]
    assert cli_main.main(["index", "--drop", "ckpt.1"]) == 0
    assert IndexFile(prefix).entries() == []
    assert cli_main.main(["index", "--add", "ckpt.2"]) == 0  # from its summary.scr
    assert [(e.id, e.complete) for e in IndexFile(prefix).entries()] == [(2, True)]
    capsys.readouterr()
    # --build verifies; it fails once a file is gone, naming the rank and the file
    assert cli_main.main(["index", "--build", "3"]) == 0
    assert "dataset 3 (ckpt.3) saved" in capsys.readouterr().out
    gone = next((prefix / "ckpt.3").rglob("file_0.dat"))
    gone.unlink()
    assert cli_main.main(["index", "-b", "3"]) == 1
    err = capsys.readouterr().err
    assert "dataset 3 (ckpt.3) was NOT saved" in err and "missing in the prefix" in err
    assert {e.id: e.complete for e in IndexFile(prefix).entries()}[3] is False
    with pytest.raises(SystemExit) as exc:  # one action at a time
        cli_main.main(["index", "-l", "-c", "x"])
    assert exc.value.code == 2


# --------------------------------------------------------------------------- real CLI


def test_cli_postrun_and_scavenge_exit_codes(scr_env, tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / ".scr").mkdir(parents=True)
    writer = [sys.executable, os.path.join(os.path.dirname(__file__), "ckpt_writer.py"),
              "--prefix", str(prefix), "--size", "3000"]
    q = subprocess.list2cmdline
    script = "\n".join([
        f"{q(writer)} --id 1 || exit 90",
        f"{q(writer)} --id 2 || exit 91",
        f"{q([*SCR, 'postrun', '-p', str(prefix)])}; echo RC_POSTRUN1=$?",
        f"{q([*SCR, 'index', '-p', str(prefix), '--list'])}; echo RC_INDEX=$?",
        f"{q(writer)} --id 3 || exit 92",
        f"{q([sys.executable, '-m', 'scr_core', 'local', 'crash', 'vnode3'])}",
        f"{q([*SCR, 'scavenge', '-p', str(prefix), '-i', '3'])}; echo RC_SCAVENGE=$?",
        f"{q([*SCR, 'postrun', '-p', str(prefix)])}; echo RC_POSTRUN2=$?",
        f"{q([*SCR, 'scavenge', '-p', str(prefix), '-i', '2', '-j', 'vnode[1-2]'])};"
        " echo RC_SCAVENGE2=$?",
        f"{q([*SCR, 'scavenge', '-p', str(prefix)])}; echo RC_USAGE=$?",
    ])
    env = dict(scr_env, SCR_LOG_ENABLE="1")
    r = subprocess.run([sys.executable, "-m", "scr_core", "local", "alloc", "-N", "3", "--",
                        "sh", "-c", script], env=env, cwd=prefix, capture_output=True,
                       text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "RC_POSTRUN1=0" in out
    assert "RC_INDEX=0" in out and "   2 YES " in out and "  * ckpt.2" in out
    assert "RC_SCAVENGE=1" in out
    assert "scr scavenge: dataset 3 (ckpt.3) was NOT saved" in out
    assert "node vnode3 was down" in out
    assert "RC_POSTRUN2=1" in out
    assert "RC_SCAVENGE2=0" in out  # already complete on the prefix: verified again
    assert "RC_USAGE=2" in out
    assert IndexFile(prefix).current() == "ckpt.2"
    log = (prefix / ".scr" / "log").read_text()
    assert log.count("event=SCAVENGE_START") == log.count("event=SCAVENGE_END") >= 3


# --------------------------------------------------------------------------- Slurm lab

# the real CLI inside the lab's head namespace (where a batch node would be); registers the
# core remote executors and the scavenge/index commands if their registrations are missing
_LAB_SHIM = (
    "import sys\n"
    "from scr_core.plugins import get_registry\n"
    "from scr_core.cli import main as m\n"
    "reg = get_registry()\n"
    "if 'core-remote' not in reg.plugins:\n"
    "    import scr_core.remote.plugin as p\n"
    "    reg.register_module(p, 'core-remote')\n"
    "m.COMMANDS.setdefault('scavenge', ('scr_core.cli.scavenge_cmd', 'scavenge', None))\n"
    "m.COMMANDS.setdefault('index', ('scr_core.cli.index_cmd', 'index', None))\n"
    "sys.exit(m.main(sys.argv[1:]))\n"
)


@pytest.mark.slurm
def test_slurm_lab_scavenge_from_node_local_shm(slurm, tmp_path):
    """Caches in the lab nodes' private /dev/shm, written by srun tasks (2 per node); the
    copy agent runs on each node through srun (remote exec 'launcher'), as on a cluster
    without ssh; postrun and scavenge run where the batch node would be."""
    pytest.importorskip("scr_plugins_slurm")
    from scr_core.hostlist import expand

    # two CPUs per node: the writer's two tasks, then each agent step beside them (--overlap)
    job_id = slurm.salloc("--no-kill", "-N3", "--ntasks-per-node=2", "-t", "10")
    nodes = expand(slurm.job_fields(job_id)["NodeList"])
    prefix = tmp_path / "prefix"
    (prefix / ".scr").mkdir(parents=True)
    writer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ckpt_writer.py")
    try:
        for dataset_id in (1, 2):
            r = slurm.run(["srun", f"--jobid={job_id}", "-N3", "--ntasks-per-node=2",
                           "--overlap", "--mpi=none", sys.executable, writer, "--per-rank",
                           "--prefix", str(prefix), "--id", str(dataset_id), "--size",
                           "20000"], env=slurm.job_env(job_id), timeout=120, check=False)
            assert r.returncode == 0, r.stderr + r.stdout
        # only the flush file is on the prefix; the data is in the nodes' own /dev/shm
        assert not (prefix / "ckpt.1").exists()
        assert not list(Path("/dev/shm").glob(f"*/scr.{job_id}"))
        conf = tmp_path / "settings.yaml"
        conf.write_text("core:\n  remote_exec: launcher\nremote:\n  launcher: srun\n")
        env = slurm.job_env(job_id, PATH=os.path.dirname(sys.executable) + os.pathsep +
                            os.environ.get("PATH", ""), HOME=str(tmp_path),
                            SCR_SETTINGS_FILE=str(conf), SCR_PREFIX=str(prefix),
                            SCR_NODE_TESTS="none", SCR_LOG_ENABLE="1")

        def scr_in_lab(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([str(slurm.lab_dir / "bin" / "lab"), "exec",
                                   sys.executable, "-c", _LAB_SHIM, *args], env=env,
                                  capture_output=True, text=True, timeout=300)

        r = scr_in_lab("postrun", "-p", str(prefix))
        assert r.returncode == 0, r.stdout + r.stderr
        assert IndexFile(prefix).current() == "ckpt.2"
        assert not (prefix / "ckpt.1").exists()  # the newest saved: the older not needed
        for rank in range(6):
            for index in range(2):
                path = prefix / "ckpt.2" / f"rank_{rank}" / f"file_{index}.dat"
                assert path.read_bytes() == content(2, rank, index, 20000)
        outputs = (dataset_dir(prefix, 2) / f"scavenge.o{job_id}").read_text()
        summaries = [json.loads(line) for line in outputs.splitlines()
                     if line.startswith('{"event":"summary"')]
        # each agent ran on its own node and found that node's two ranks there
        assert sorted(x["node"] for x in summaries) == sorted(nodes)
        assert sorted(r for x in summaries for r in x["ranks"]) == list(range(6))
        r = scr_in_lab("scavenge", "-p", str(prefix), "-i", "1")
        assert r.returncode == 0, r.stdout + r.stderr
        assert (prefix / "ckpt.1" / "rank_5" / "file_1.dat").read_bytes() == \
            content(1, 5, 1, 20000)
    finally:
        slurm.run(["scancel", job_id], check=False)
