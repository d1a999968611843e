"""Tests of the typed SCR control files in scr_core.control (layouts of kvtree.md §5)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import scr_core.kvtree as kvtree
from scr_core.control import paths
from scr_core.control.cindex import CacheDataset, CacheIndex, read_cindex, write_cindex
from scr_core.control.dataset import DatasetDescriptor
from scr_core.control.filemap import Filemap, FileMeta, read_filemap, write_filemap
from scr_core.control.flush import FlushFile
from scr_core.control.halt import (
    FINALIZE_REASON,
    HaltFile,
    HaltState,
    format_listing,
    halt_reason,
)
from scr_core.control.index import IndexFile
from scr_core.control.nodes import read_nodes, write_nodes
from scr_core.control.summary import (
    read_rank2file,
    read_summary,
    write_rank2file,
    write_summary,
)
from scr_core.errors import ControlFileError
from scr_core.kvtree import KVTree

GOLDEN = Path(__file__).parent / "fixtures" / "kvtree-golden"


def ordered(tree: KVTree | dict[str, Any]) -> list[Any]:
    return [[key, ordered(sub)] for key, sub in tree.items()]


def desc(i: int, ckpt: bool = True, **kw: Any) -> DatasetDescriptor:
    fields: dict[str, Any] = dict(
        id=i,
        name=f"ckpt.{i}" if ckpt else f"out.{i}",
        user="alice",
        jobname="testing_job",
        jobid="5116040",
        cluster="quartz",
        ckpt=i if ckpt else None,
        size=2097186,
        files=4,
        created=1589050790160919,
        complete=True,
        flag_ckpt=ckpt,
        flag_output=not ckpt,
    )
    fields.update(kw)
    return DatasetDescriptor(**fields)


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    (tmp_path / ".scr").mkdir()
    return tmp_path


# --- paths ---------------------------------------------------------------------------------


def test_paths(tmp_path: Path) -> None:
    p = tmp_path
    assert paths.scr_dir(p) == p / ".scr"
    assert paths.halt_path(p) == p / ".scr" / "halt.scr"
    assert paths.flush_path(p) == p / ".scr" / "flush.scr"
    assert paths.nodes_path(p) == p / ".scr" / "nodes.scr"
    assert paths.index_path(p) == p / ".scr" / "index.scr"
    assert paths.log_path(p) == p / ".scr" / "log"
    assert paths.dataset_dir(p, 6) == p / ".scr" / "scr.dataset.6"
    assert paths.summary_path(p, 6) == p / ".scr" / "scr.dataset.6" / "summary.scr"
    assert paths.rank2file_path(p, 6) == p / ".scr" / "scr.dataset.6" / "rank2file"
    assert paths.filemap_path("/cache/d", 3) == Path("/cache/d/.scr/filemap_3")
    assert paths.cindex_path("/dev/shm/u/scr.1") == Path("/dev/shm/u/scr.1/cindex.scrinfo")


# --- dataset descriptor --------------------------------------------------------------------


def test_descriptor_tree_layout_and_round_trip() -> None:
    d = desc(6)
    tree = d.to_tree()
    # libscr's order of calls, each inserted at the head, so the last set comes first
    assert list(tree) == [
        "COMPLETE",
        "SIZE",
        "FILES",
        "CKPT",
        "CLUSTER",
        "JOBID",
        "JOBNAME",
        "USER",
        "CREATED",
        "FLAG_OUTPUT",
        "FLAG_CKPT",
        "NAME",
        "ID",
    ]
    assert tree.to_dict() == {
        "ID": {"6": {}},
        "NAME": {"ckpt.6": {}},
        "FLAG_CKPT": {"1": {}},
        "FLAG_OUTPUT": {"0": {}},
        "CREATED": {"1589050790160919": {}},
        "USER": {"alice": {}},
        "JOBNAME": {"testing_job": {}},
        "JOBID": {"5116040": {}},
        "CLUSTER": {"quartz": {}},
        "CKPT": {"6": {}},
        "FILES": {"4": {}},
        "SIZE": {"2097186": {}},
        "COMPLETE": {"1": {}},
    }
    assert DatasetDescriptor.from_tree(tree) == d
    assert d.is_ckpt and not d.is_output


def test_descriptor_omits_none_and_requires_id() -> None:
    tree = DatasetDescriptor(id=3, name="x").to_tree()
    assert tree.to_dict() == {"NAME": {"x": {}}, "ID": {"3": {}}}
    assert DatasetDescriptor.from_tree(tree) == DatasetDescriptor(id=3, name="x")
    with pytest.raises(ControlFileError, match=r"somewhere: .*ID"):
        DatasetDescriptor.from_tree(KVTree.from_dict({"NAME": {"x": {}}}), "somewhere")


# --- halt file -----------------------------------------------------------------------------


def test_halt_update_writes_scr_halt_cntl_bytes(prefix: Path) -> None:
    halt = HaltFile.for_prefix(prefix)
    with halt.update() as state:
        assert state.is_empty()
        state.exit_reason = "JOB_HALTED"
        state.checkpoints_left = 5
        state.exit_before = 1767225600
        state.exit_after = 1767222000
        state.halt_seconds = 1800
    # scr_halt_cntl -r JOB_HALTED -c 5 -b 1767225600 -a 1767222000 -s 1800
    assert halt.path.read_bytes() == (GOLDEN / "d_halt_all_fields.kvtree").read_bytes()
    assert halt.read() == HaltState("JOB_HALTED", 5, 1767225600, 1767222000, 1800)


def test_halt_read_library_files(prefix: Path) -> None:
    halt = HaltFile.for_prefix(prefix)
    assert halt.read() == HaltState() and not halt.exists()  # missing: empty, not created
    assert not halt.exists()
    shutil.copy(GOLDEN / "d_halt_scr_finalize.kvtree", halt.path)
    state = halt.read()
    assert state == HaltState(exit_reason=FINALIZE_REASON, checkpoints_left=2, halt_seconds=600)
    assert state.corrupt is None


def test_halt_update_changes_only_what_changed(prefix: Path) -> None:
    halt = HaltFile.for_prefix(prefix)
    shutil.copy(GOLDEN / "d_halt_scr_finalize.kvtree", halt.path)
    tree = kvtree.read(halt.path)
    tree.set_value("SomethingElse", "kept")
    kvtree.write(halt.path, tree)
    with halt.update() as state:
        state.exit_reason = None  # scr_halt --unset-reason
        state.checkpoints_left = 7
    tree = kvtree.read(halt.path)
    assert ordered(tree) == [
        ["CheckpointsLeft", [["7", []]]],
        ["SomethingElse", [["kept", []]]],
        ["HaltSeconds", [["600", []]]],
    ]


def test_halt_update_aborted_block_writes_nothing(prefix: Path) -> None:
    halt = HaltFile.for_prefix(prefix)
    shutil.copy(GOLDEN / "d_halt_job_halted.kvtree", halt.path)
    before = halt.path.read_bytes()
    with pytest.raises(RuntimeError):
        with halt.update() as state:
            state.exit_reason = "OTHER"
            raise RuntimeError("boom")
    assert halt.path.read_bytes() == before
    with pytest.raises(ValueError):
        with halt.update() as state:
            state.checkpoints_left = -1
    assert halt.path.read_bytes() == before


def test_halt_corrupt_file_is_an_error_and_update_replaces_it_only_when_asked(
        prefix: Path) -> None:
    """SCR reads a corrupt halt file as empty (a damaged JOB_HALTED becomes "continue"):
    here reading it is an error, and an update replaces it only with replace_corrupt."""
    halt = HaltFile.for_prefix(prefix)
    shutil.copy(GOLDEN / "x_bad_crc.kvtree", halt.path)
    with pytest.raises(ControlFileError, match="CRC32 mismatch"):
        halt.read()
    with pytest.raises(ControlFileError, match="corrupt halt file"):
        with halt.update() as state:
            state.checkpoints_left = 3
    assert halt.path.read_bytes() == (GOLDEN / "x_bad_crc.kvtree").read_bytes()
    with halt.update(replace_corrupt=True) as state:
        assert state.corrupt
        state.exit_reason = "JOB_HALTED"
    assert halt.path.read_bytes() == (GOLDEN / "d_halt_job_halted.kvtree").read_bytes()
    assert halt.read().corrupt is None


def test_halt_update_truncates_a_longer_file(prefix: Path) -> None:
    halt = HaltFile.for_prefix(prefix)
    shutil.copy(GOLDEN / "d_halt_all_fields.kvtree", halt.path)
    with halt.update() as state:
        state.checkpoints_left = state.exit_before = state.exit_after = None
        state.halt_seconds = None
    assert halt.path.read_bytes() == (GOLDEN / "d_halt_job_halted.kvtree").read_bytes()


def test_halt_remove(prefix: Path) -> None:
    halt = HaltFile.for_prefix(prefix)
    assert not halt.remove()
    with halt.update() as state:
        state.exit_reason = "JOB_HALTED"
    assert halt.remove() and not halt.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_halt_unreadable_file_raises(prefix: Path) -> None:
    halt = HaltFile.for_prefix(prefix)
    shutil.copy(GOLDEN / "d_halt_job_halted.kvtree", halt.path)
    halt.path.chmod(0)
    with pytest.raises(ControlFileError):
        halt.read()


LOCKER = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX if sys.argv[2] == "EX" else fcntl.LOCK_SH)
    print("locked", flush=True)
    sys.stdin.readline()
    fcntl.flock(fd, fcntl.LOCK_UN)
    print("released", flush=True)
    """
)


class Locker:
    """A separate process holding flock on a file until told to release it."""

    def __init__(self, path: Path, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(path), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "released"
        self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # pragma: no cover - reported by the test
            result["error"] = exc
        result["when"] = time.monotonic()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def test_exclusive_lock_in_another_process_blocks_read(prefix: Path) -> None:
    halt = HaltFile.for_prefix(prefix)
    shutil.copy(GOLDEN / "d_halt_job_halted.kvtree", halt.path)
    locker = Locker(halt.path, "EX")
    try:
        with pytest.raises(ControlFileError, match="timed out"):
            halt.read(timeout=0.2)
        thread, result = run_in_thread(halt.read)
        time.sleep(0.5)
        assert thread.is_alive(), "read must wait for the exclusive lock"
        released = time.monotonic()
        locker.release()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert "error" not in result
        assert result["when"] >= released
        assert result["value"].exit_reason == "JOB_HALTED"
    finally:
        locker.kill()


def test_shared_lock_allows_read_but_blocks_update(prefix: Path) -> None:
    halt = HaltFile.for_prefix(prefix)
    shutil.copy(GOLDEN / "d_halt_job_halted.kvtree", halt.path)
    locker = Locker(halt.path, "SH")
    try:
        assert halt.read(timeout=2).exit_reason == "JOB_HALTED"  # shared + shared is fine
        with pytest.raises(ControlFileError, match="timed out"):
            with halt.update(timeout=0.2):
                pass
    finally:
        locker.release()
        locker.kill()
    with halt.update(timeout=2) as state:
        state.checkpoints_left = 1
    assert halt.read().checkpoints_left == 1


def test_update_holds_exclusive_lock_against_other_processes(prefix: Path) -> None:
    halt = HaltFile.for_prefix(prefix)
    probe = textwrap.dedent(
        """
        import fcntl, os, sys
        fd = os.open(sys.argv[1], os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            print("free")
        except OSError:
            print("busy")
        """
    )

    def probe_lock() -> str:
        cmd = [sys.executable, "-c", probe, str(halt.path)]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()

    with halt.update() as state:
        state.exit_reason = "JOB_HALTED"
        assert probe_lock() == "busy"
    assert probe_lock() == "free"


NOW = 1_700_000_000


@pytest.mark.parametrize(
    ("state", "kwargs", "expect"),
    [
        (HaltState(), {}, None),
        (HaltState(exit_reason="JOB_HALTED"), {}, "JOB_HALTED"),
        (HaltState(exit_reason=""), {}, None),
        (HaltState(exit_reason=FINALIZE_REASON), {}, None),
        (HaltState(exit_reason=FINALIZE_REASON), {"finalize_blocks": True}, FINALIZE_REASON),
        (HaltState(checkpoints_left=0), {}, "CheckpointsLeft"),
        (HaltState(checkpoints_left=1), {}, None),
        (HaltState(exit_after=NOW), {}, "ExitAfter"),
        (HaltState(exit_after=NOW + 1), {}, None),
        (HaltState(exit_before=NOW + 100, halt_seconds=100), {}, "ExitBefore"),
        (HaltState(exit_before=NOW + 101, halt_seconds=100), {}, None),
        (HaltState(exit_before=NOW + 100), {"default_halt_seconds": 100}, "ExitBefore"),
        (HaltState(exit_before=NOW + 100, halt_seconds=0), {"default_halt_seconds": 500}, None),
        (HaltState(halt_seconds=300), {"seconds_left": 300}, "TIME_LIMIT"),
        (HaltState(halt_seconds=300), {"seconds_left": 301}, None),
        (HaltState(halt_seconds=300), {"seconds_left": None}, None),
        (HaltState(halt_seconds=300), {"seconds_left": -1}, None),
        (HaltState(halt_seconds=0), {"seconds_left": 0}, None),
        (HaltState(), {"seconds_left": 10, "default_halt_seconds": 60}, "TIME_LIMIT"),
        (HaltState(), {"seconds_left": 10}, None),
    ],
)
def test_halt_reason(state: HaltState, kwargs: dict[str, Any], expect: str | None) -> None:
    reason = halt_reason(state, NOW, **kwargs)
    if expect is None:
        assert reason is None
    else:
        assert reason is not None and expect in reason


def test_format_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        text = format_listing(HaltState("JOB_HALTED", 5, 1767225600, 1767222000, 1800), "/p/h")
        assert text == (
            "Halt file settings for /p/h:\n"
            "  ExitReason:      JOB_HALTED\n"
            "  CheckpointsLeft: 5\n"
            "  ExitAfter:       Wed Dec 31 23:00:00 2025\n"
            "  ExitBefore:      Thu Jan  1 00:00:00 2026\n"
            "  HaltSeconds:     1800\n"
            "  ExitBefore - HaltSeconds: Wed Dec 31 23:30:00 2025\n"
        )
        assert format_listing(HaltState(), "/p/h") == "Halt file settings for /p/h:\n  None\n"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# --- flush file ----------------------------------------------------------------------------


def libscr_flush_file(prefix: Path) -> FlushFile:
    """A flush file laid out as libscr writes it: outputs, checkpoints, flushed and not."""
    flush = FlushFile(prefix)
    for i in range(1, 8):
        d = desc(i, ckpt=i != 4)
        flush.new_entry(i, d.name, d.is_ckpt, d.is_output, d)  # type: ignore[arg-type]
    flush.location_add(1, "PFS")
    flush.location_add(2, "SYNC_FLUSHING")
    flush.location_remove(2, "SYNC_FLUSHING")
    flush.location_add(2, "PFS")
    flush.location_add(6, "FLUSHING")
    return flush


def test_flush_new_entry_layout(prefix: Path) -> None:
    flush = FlushFile(prefix)
    d = desc(6)
    flush.new_entry(6, "ckpt.6", True, False, d)
    tree = kvtree.read(flush.path)
    entry = tree["DATASET"]["6"]
    # set order NAME, LOCATION, CKPT, DSETDESC; each at the head
    assert list(entry) == ["DSETDESC", "CKPT", "LOCATION", "NAME"]
    assert entry.value("NAME") == "ckpt.6"
    assert entry.values("LOCATION") == ["CACHE"]
    assert entry.value("CKPT") == "1" and "OUTPUT" not in entry
    # DSETDESC is a kvtree_merge copy: the descriptor's own order reversed
    assert ordered(entry["DSETDESC"]) == ordered(d.to_tree())[::-1]
    assert list(tree) == ["DATASET"]


def test_flush_queries(prefix: Path) -> None:
    flush = libscr_flush_file(prefix)
    assert flush.ids() == [1, 2, 3, 4, 5, 6, 7]
    assert flush.list_output() == [4]
    assert flush.list_ckpt() == [7, 6, 5, 3, 2, 1]
    assert flush.list_ckpt(before=5) == [3, 2, 1]
    assert flush.list_ckpt(before=0) == [7, 6, 5, 3, 2, 1]  # 0 means no filter, as in the CLI
    assert flush.list_output(before=4) == []
    assert [i for i in flush.ids() if flush.need_flush(i)] == [3, 4, 5, 6, 7]
    assert not flush.need_flush(99)
    assert flush.location(2) == "PFS"  # most recently added value comes first
    assert flush.locations(2) == ["PFS", "CACHE"]
    assert flush.location(6) == "FLUSHING"
    assert flush.location(99) is None
    assert flush.name(4) == "out.4" and flush.name(99) is None
    assert flush.latest() == 7
    assert flush.dataset(3) == desc(3)
    assert flush.dataset(99) is None
    assert flush.remove(7) and not flush.remove(7)
    assert flush.latest() == 6 and not flush.has(7)


def test_flush_file_like_rebuild_and_hand_made(prefix: Path) -> None:
    # scr_flush_file_rebuild adds cached ids with only LOCATION=CACHE; also odd keys
    tree = KVTree.from_dict(
        {
            "DATASET": {
                "12": {"LOCATION": {"CACHE": {}}},
                "3": {"LOCATION": {}, "CKPT": {"1": {}}, "OUTPUT": {"1": {}}},
                "05": {"CKPT": {"1": {}}},  # not "%d": C cannot look it up by id
                "x": {},
            }
        }
    )
    kvtree.write(paths.flush_path(prefix), tree)
    flush = FlushFile(prefix)
    assert flush.ids() == [3, 12]
    assert flush.list_ckpt() == [3] and flush.list_output() == [3]
    assert flush.location(3) == "NONE"
    assert flush.location(12) == "CACHE" and flush.need_flush(12)
    assert flush.name(12) is None and flush.dataset(12) is None
    assert flush.latest() == 12


def test_flush_missing_and_corrupt(prefix: Path) -> None:
    flush = FlushFile(prefix)
    assert flush.ids() == [] and flush.latest() is None and flush.list_ckpt() == []
    shutil.copy(GOLDEN / "x_truncated.kvtree", flush.path)
    with pytest.raises(ControlFileError, match=r"flush\.scr"):
        flush.list_ckpt()


# --- nodes file ----------------------------------------------------------------------------


def test_nodes_file(tmp_path: Path) -> None:
    assert read_nodes(tmp_path) is None
    write_nodes(tmp_path, 4)  # creates .scr
    assert paths.nodes_path(tmp_path).read_bytes() == (GOLDEN / "g_nodes.kvtree").read_bytes()
    assert read_nodes(tmp_path) == 4
    kvtree.write(paths.nodes_path(tmp_path), KVTree.from_dict({"OTHER": {"1": {}}}))
    assert read_nodes(tmp_path) is None


# --- index file ----------------------------------------------------------------------------


def golden_story_index(prefix: Path) -> IndexFile:
    """kvtree.md §5.4: ckpt.3 complete, flushed, fetched, current; ckpt.6 complete+flushed but
    a fetch FAILED; ckpt.7 incomplete; plus an output dataset, which --list hides."""
    index = IndexFile(prefix)
    index.add(desc(3), complete=True, flushed_time="2020-05-09T11:59:50", from_flush=True)
    index.add(desc(4, ckpt=False), complete=True, flushed_time="2020-05-09T12:00:10")
    index.add(desc(6), complete=True, flushed_time="2020-05-09T12:01:00", from_flush=True)
    index.mark_incomplete(desc(7, complete=False))
    assert index.mark_fetched("ckpt.3", "2020-05-09T12:05:00")
    assert index.mark_failed("ckpt.6", "2020-05-09T12:04:00")
    assert index.set_current("ckpt.3")
    return index


def test_index_layout_key_for_key(prefix: Path) -> None:
    index = golden_story_index(prefix)
    tree = kvtree.read(index.path)
    assert set(tree) == {"VERSION", "CURRENT", "NAME", "DSET"}
    assert tree.value("VERSION") == "2" and tree.value("CURRENT") == "ckpt.3"
    assert {k: tree["NAME"][k].to_dict() for k in tree["NAME"]} == {
        "ckpt.3": {"DSET": {"3": {}}},
        "out.4": {"DSET": {"4": {}}},
        "ckpt.6": {"DSET": {"6": {}}},
        "ckpt.7": {"DSET": {"7": {}}},
    }
    d3 = tree["DSET"]["3"]
    assert set(d3) == {"COMPLETE", "DSET", "FLUSHED", "FETCHED"}
    assert d3.value("COMPLETE") == "1" and d3.value("FLUSHED") == "2020-05-09T11:59:50"
    assert d3.values("FETCHED") == ["2020-05-09T12:05:00"]
    # descriptor copied with kvtree_merge: ID first, as in the scr_index_api.c example
    assert list(d3["DSET"])[:3] == ["ID", "NAME", "FLAG_CKPT"]
    assert DatasetDescriptor.from_tree(d3["DSET"]) == desc(3)
    assert tree["DSET"]["6"].value("FAILED") == "2020-05-09T12:04:00"
    d7 = tree["DSET"]["7"]
    assert set(d7) == {"COMPLETE", "DSET"} and d7.value("COMPLETE") == "0"


def test_index_format_list(prefix: Path) -> None:
    index = golden_story_index(prefix)
    assert (
        index.format_list()
        == (
            "DSET VALID FLUSHED             CUR NAME\n"
            "   7 NO" + " " * 28 + "ckpt.7\n"  # no FLUSHED stamp: 19 blanks in its column
            "   6 NO    2020-05-09T12:01:00     ckpt.6\n"
            "   3 YES   2020-05-09T11:59:50   * ckpt.3\n"
        )
    )
    entries = {e.id: e for e in index.entries()}
    assert sorted(entries) == [3, 4, 6, 7]
    assert entries[3].valid and entries[3].current and entries[3].fetched
    assert not entries[6].valid and entries[6].failed
    assert entries[7].complete is False and entries[4].dataset == desc(4, ckpt=False)


def test_index_current_and_drops(prefix: Path) -> None:
    index = golden_story_index(prefix)
    assert not index.set_current("out.4")  # only checkpoints
    assert not index.set_current("nope")
    assert index.current() == "ckpt.3"
    # re-adding after a flush makes the new checkpoint current and clears FAILED
    index.add(desc(6), complete=True, flushed_time="2020-05-09T13:00:00", from_flush=True)
    assert index.current() == "ckpt.6"
    assert {e.id: e.valid for e in index.entries()}[6]
    # dropping CURRENT moves it to the newest complete checkpoint before it
    assert index.drop("ckpt.6")
    assert index.current() == "ckpt.3"
    assert not index.drop("ckpt.6")
    index.add(desc(9), complete=True, flushed_time="2020-05-09T14:00:00", from_flush=True)
    assert index.current() == "ckpt.9"
    assert index.drop_after("ckpt.3")
    assert [e.id for e in index.entries()] == [3]
    assert index.current() == "ckpt.3"
    assert not index.drop_after("ckpt.99")


def test_index_version_check(prefix: Path) -> None:
    index = IndexFile(prefix)
    assert index.entries() == [] and index.current() is None  # missing file
    path = paths.index_path(prefix)
    kvtree.write(path, KVTree.from_dict({"CURRENT": {"ckpt.1": {}}}))
    with pytest.raises(ControlFileError, match="no VERSION"):
        index.current()
    kvtree.write(path, KVTree.from_dict({"VERSION": {"1": {}}}))
    with pytest.raises(ControlFileError, match="version 1, expected 2"):
        index.format_list()
    with pytest.raises(ControlFileError):  # never overwrites a file it cannot read
        index.add(desc(1), complete=True)
    assert kvtree.read(path).to_dict() == {"VERSION": {"1": {}}}
    shutil.copy(GOLDEN / "x_bad_crc.kvtree", path)
    with pytest.raises(ControlFileError, match="CRC32"):
        index.entries()


def test_index_flushed_time_is_local_iso(prefix: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        index = IndexFile(prefix)
        index.add(desc(2), complete=True, flushed_time=1589025590)
        assert index.entries()[0].flushed == "2020-05-09T11:59:50"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# --- summary and rank2file -----------------------------------------------------------------


def test_summary_round_trip_and_layout(prefix: Path) -> None:
    ddir = paths.dataset_dir(prefix, 6)
    assert read_summary(ddir) is None
    write_summary(ddir, desc(6), complete=True)
    tree = kvtree.read(paths.summary_path(prefix, 6))
    assert list(tree) == ["DSET", "COMPLETE", "VERSION"]
    assert tree.value("VERSION") == "6" and tree.value("COMPLETE") == "1"
    summary = read_summary(ddir)
    assert summary is not None and summary.complete and summary.dataset == desc(6)
    tree.set_int("VERSION", 5)
    kvtree.write(paths.summary_path(prefix, 6), tree)
    with pytest.raises(ControlFileError, match="version 5"):
        read_summary(ddir)


def test_rank2file_layout(prefix: Path) -> None:
    ddir = paths.dataset_dir(prefix, 3)
    ddir.mkdir()
    files = {0: ["ckpt.3/rank_0.ckpt", "ckpt.3/extra"], 1: ["ckpt.3/rank_1.ckpt"], 4: []}
    write_rank2file(ddir, files, ranks=5, per_part=2)
    assert sorted(os.listdir(ddir)) == [
        "rank2file",
        "rank2file.0.0",
        "rank2file.0.2",
        "rank2file.0.4",
    ]
    root = kvtree.read(ddir / "rank2file")
    assert root.value("LEVEL") == "1" and root.value("RANKS") == "5"
    assert sorted(root["RANK"], key=int) == ["0", "2", "4"]
    assert root["RANK"]["2"].to_dict() == {"OFFSET": {"0": {}}, "FILE": {".0.2": {}}}
    part = kvtree.read(ddir / "rank2file.0.0")
    assert part.value("LEVEL") == "0" and part.value("RANKS") == "5"
    assert set(part["RANK"]) == {"0", "1"}
    assert part["RANK"]["0"].values("FILE") == ["ckpt.3/rank_0.ckpt", "ckpt.3/extra"]
    assert kvtree.read(ddir / "rank2file.0.4")["RANK"]["4"].to_dict() == {}
    back = read_rank2file(ddir)
    assert back is not None and back.ranks == 5
    assert back.files == {0: files[0], 1: files[1], 2: [], 3: [], 4: []}


def test_rank2file_default_single_part_and_errors(prefix: Path) -> None:
    ddir = paths.dataset_dir(prefix, 1)
    assert read_rank2file(ddir) is None
    write_rank2file(ddir, {r: [f"ckpt.1/rank_{r}"] for r in range(3)}, ranks=3)
    assert sorted(os.listdir(ddir)) == ["rank2file", "rank2file.0.0"]
    assert read_rank2file(ddir).files[2] == ["ckpt.1/rank_2"]
    with pytest.raises(ValueError):
        write_rank2file(ddir, {3: []}, ranks=3)
    root = kvtree.read(ddir / "rank2file")
    root.set_int("RANKS", 4)
    kvtree.write(ddir / "rank2file", root)
    with pytest.raises(ControlFileError, match="RANKS says 4"):
        read_rank2file(ddir)
    (ddir / "rank2file.0.0").unlink()
    with pytest.raises(ControlFileError, match="missing"):
        read_rank2file(ddir)


# --- filemap and cache index ---------------------------------------------------------------


def test_filemap_round_trip_and_layout(tmp_path: Path) -> None:
    meta = FileMeta(
        complete=True,
        ranks=4,
        orig="ckpt.6/rank_0.ckpt",
        path="/p/ckpt.6",
        name="rank_0.ckpt",
        size=1048576,
        mode=0o100644,
        uid=1000,
        gid=1000,
        atime_secs=1,
        atime_nsecs=2,
        ctime_secs=3,
        ctime_nsecs=4,
        mtime_secs=5,
        mtime_nsecs=6,
        crc=0,
    )
    fmap = Filemap(
        files={"/cache/scr.dataset.6/rank_0.ckpt": meta, "/cache/x": None}, dataset=desc(6)
    )
    path = paths.filemap_path(tmp_path / "cache" / "scr.dataset.6", 0)
    path.parent.mkdir(parents=True)
    write_filemap(path, fmap)
    tree = kvtree.read(path)
    assert set(tree) == {"FILE", "DSETDESC"}
    m = tree["FILE"]["/cache/scr.dataset.6/rank_0.ckpt"]["META"]
    assert m.value("COMPLETE") == "1" and m.value("SIZE") == "1048576"
    assert m.value("MODE") == str(0o100644) and m.value("CRC") == "0"
    assert m.value("PATH") == "/p/ckpt.6" and m.value("NAME") == "rank_0.ckpt"
    assert tree["FILE"]["/cache/x"].to_dict() == {}
    back = read_filemap(path)
    assert back == fmap
    assert back.files["/cache/scr.dataset.6/rank_0.ckpt"].destination == "/p/ckpt.6/rank_0.ckpt"
    meta.crc = 0x3610A686
    write_filemap(path, fmap)
    assert (
        kvtree.read(path)["FILE"]["/cache/scr.dataset.6/rank_0.ckpt"]["META"].value("CRC")
        == "0x3610a686"
    )
    with pytest.raises(FileNotFoundError):
        read_filemap(tmp_path / "none")


def test_cindex_round_trip_and_layout(tmp_path: Path) -> None:
    path = paths.cindex_path(tmp_path)
    assert read_cindex(path) == CacheIndex()
    cindex = CacheIndex(
        current="ckpt.6",
        datasets={
            5: CacheDataset(desc(5), "/dev/shm/u/scr.1/scr.dataset.5", False),
            6: CacheDataset(desc(6), "/p/ckpt.6", True),
        },
    )
    write_cindex(path, cindex)
    tree = kvtree.read(path)
    assert list(tree) == ["CURRENT", "DSET"]
    assert set(tree["DSET"]["6"]) == {"DSETDESC", "PATH", "BYPASS"}
    assert tree["DSET"]["6"].value("BYPASS") == "1" and tree["DSET"]["5"].value("BYPASS") == "0"
    assert read_cindex(path) == cindex


@pytest.mark.parametrize("prefix", ["/a/b", "/a//b/", "rel/x", ".", "./x/./y", "/", "//a", "///a",
                                    "a/../b", "", "a/b/."])
def test_halt_file_is_halt_path_without_pathlib(prefix):
    from pathlib import Path

    from scr_core.control.halt import HaltFile
    from scr_core.control.paths import halt_file, halt_path, path_str

    assert halt_file(prefix) == str(halt_path(prefix))
    assert path_str(prefix) == str(Path(prefix))
    assert HaltFile(prefix).path == Path(prefix)
    assert HaltFile(Path(prefix))._name == str(Path(prefix))
