"""Hypothesis fuzzing of every reader of outside input (issue 16).

Every reader either returns or raises the error of its kind (a ``ScrError`` subclass that
the CLI turns into one line and a documented exit code); nothing else may escape. Seeded
(``derandomize``: the same cases every run), bounded (``max_examples`` per test, no
deadline: the machine is shared), a few thousand cases in all.

Inputs: the KVTree control files (random bytes, valid files with damaged bytes, and valid
trees made of the readers' own keys with hostile values), hostlists, times and durations,
byte sizes, SCR config files and the YAML settings file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scr_core.control import cindex, dataset, filemap, flush, halt, index, nodes, summary
from scr_core.control.cindex import read_cindex
from scr_core.control.filemap import read_filemap
from scr_core.control.flush import FlushFile
from scr_core.control.halt import HaltFile
from scr_core.control.index import IndexFile
from scr_core.control.nodes import read_nodes
from scr_core.control.summary import read_rank2file, read_summary
from scr_core.errors import ScrError

from scr_core import hostlist, kvtree

FUZZ = settings(derandomize=True, deadline=None, max_examples=400, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

#: the keys the control-file readers look for, taken from their modules
KEYS = sorted({v for m in (cindex, dataset, filemap, flush, halt, index, nodes, summary)
               for k, v in vars(m).items() if k.startswith("KEY_") and isinstance(v, str)}
              | {"ExitReason", "CheckpointsLeft", "ExitBefore", "ExitAfter", "HaltSeconds"})
HOSTILE_VALUES = ["0", "1", "-1", "-0", "05", "2147483647", "2147483648", "4294967295",
                  "18446744073709551616", "99999999999999999999", "0xFFFFFFFF", "1e9", "nan",
                  "", " 1", "x", "PFS", "CACHE", "SCR_FINALIZE_CALLED", "/etc/passwd",
                  "../../x", ".0.0", "\udcff"]


def _tree(depth: int) -> st.SearchStrategy:
    leaf = st.sampled_from(HOSTILE_VALUES + KEYS)
    if depth == 0:
        return st.dictionaries(leaf, st.just({}), max_size=3)
    return st.dictionaries(st.one_of(st.sampled_from(KEYS), leaf), _tree(depth - 1),
                           max_size=4)


def _golden() -> list[bytes]:
    """Valid files of every kind, written by the real writers."""
    from scr_core.control.dataset import DatasetDescriptor

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp)
        (p / ".scr").mkdir()
        with HaltFile.for_prefix(p).update() as state:
            state.exit_reason, state.checkpoints_left, state.exit_after = "JOB_HALTED", 3, 99
        desc = DatasetDescriptor(id=2, name="ckpt.2", ckpt=2, files=4, size=10,
                                 complete=True, flag_ckpt=True, flag_output=False)
        FlushFile(p).new_entry(2, "ckpt.2", ckpt=True, output=False, desc=desc)
        summary.write_summary(p, desc, complete=True)
        summary.write_rank2file(p, {0: ["a"], 1: ["b"]}, ranks=2)
        nodes.write_nodes(p, 4)
        IndexFile(p).add(desc, complete=True, flushed_time=5)
        filemap.write_filemap(p / "filemap_0", filemap.Filemap(dataset=desc))
        ci = cindex.CacheIndex(current="ckpt.2")
        ci.datasets[2] = cindex.CacheDataset(dataset=desc, path="/cache/x", bypass=False)
        cindex.write_cindex(p / "cindex.scrinfo", ci)
        return {path.name: path.read_bytes() for path in sorted(p.rglob("*"))
                if path.is_file()}


GOLDEN = _golden()  # file name -> bytes


HOSTILE_NUMBERS = ["-0", "05", "-1", "2147483648", "4294967296", "99999999999999999999", "+1"]


def _mutated(draw: st.DrawFn, tree: dict) -> dict:
    """``tree`` with some keys (names, ids, values) replaced by hostile ones: a number by a
    number-like one (ids and ranks are where C's ``%d`` keys meet Python's ``int``)."""
    out = {}
    for key, sub in tree.items():
        if draw(st.integers(0, 3)) == 0:
            hostile = HOSTILE_NUMBERS if key.isdigit() else HOSTILE_VALUES
            key = draw(st.sampled_from(hostile))
        out[key] = _mutated(draw, sub)
    return out


@st.composite
def control_file(draw: st.DrawFn, own: str) -> bytes:
    """Bytes for the file named ``own`` (one of GOLDEN's names)."""
    kind = draw(st.sampled_from(["bytes", "damaged", "tree", "mutated", "mutated"]))
    if kind == "mutated":  # a valid file of this kind with hostile keys and values
        tree = kvtree.KVTree.from_dict(_mutated(draw, kvtree.loads(GOLDEN[own]).to_dict()))
        return kvtree.dumps(tree)
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "damaged":
        data = bytearray(draw(st.sampled_from([GOLDEN[own], *GOLDEN.values()])))
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
        cut = draw(st.integers(0, len(data)))
        return bytes(data[:cut] if draw(st.booleans()) else data)
    tree = kvtree.KVTree.from_dict(draw(_tree(3)))
    return kvtree.dumps(tree, crc=draw(st.booleans()))


def _read_all_flush(prefix: Path) -> None:
    f = FlushFile(prefix)
    for ident in f.ids():
        f.need_flush(ident), f.location(ident), f.locations(ident), f.name(ident)
        f.dataset(ident)
    f.list_output(), f.list_ckpt(), f.latest()


def _read_index(prefix: Path) -> None:
    i = IndexFile(prefix)
    i.entries(), i.current(), i.format_list()


#: reader name -> (file written under the prefix, how to read it). Before issue 16 part b
#: bounded their values, this found a '-0' dataset or rank key (KeyError) in the flush,
#: index, rank2file and cindex readers.
READERS = {
    "halt": (".scr/halt.scr", lambda p: HaltFile.for_prefix(p).read()),
    "flush": (".scr/flush.scr", _read_all_flush),
    "nodes": (".scr/nodes.scr", read_nodes),
    "index": (".scr/index.scr", _read_index),
    "summary": ("summary.scr", read_summary),
    "rank2file": ("rank2file", read_rank2file),
    "rank2file-part": ("rank2file.0.0", lambda p: read_rank2file(p)),
    "cindex": ("cindex.scrinfo", lambda p: read_cindex(p / "cindex.scrinfo")),
    "filemap": ("filemap_0", lambda p: read_filemap(p / "filemap_0")),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_control_file_readers(reader: str, tmp_path: Path) -> None:
    relative, read = READERS[reader]
    (tmp_path / ".scr").mkdir()
    if reader == "rank2file-part":  # a valid root naming the fuzzed part
        summary.write_rank2file(tmp_path, {0: ["a"]}, ranks=1)

    @FUZZ
    @given(data=control_file(os.path.basename(relative)))
    def check(data: bytes) -> None:
        path = tmp_path / relative
        path.write_bytes(data)
        try:
            read(tmp_path)
        except ScrError:
            pass

    check()


@FUZZ
@given(data=st.binary(max_size=300))
def test_kvtree_loads_random_bytes(data: bytes) -> None:
    try:
        kvtree.loads(data)
    except ScrError:
        pass


_HOST_CHARS = "nrack0123456789[]-,. x_@/\t"


@FUZZ
@given(text=st.text(alphabet=_HOST_CHARS, max_size=40),
       index=st.integers(-30, 30), size=st.integers(-5, 5))
def test_hostlists(text: str, index: int, size: int) -> None:
    try:
        names = hostlist.expand(text)
    except ScrError:
        for f in (hostlist.count, hostlist.fold_union):
            with pytest.raises(ScrError):
                f(text)
        return
    assert hostlist.count(text) == len(names)
    if names and index and -len(names) <= index <= len(names):
        assert hostlist.nth(text, index) == names[index - 1 if index > 0 else index]
    start = 0 if size >= 0 else max(len(names) + size, 0)
    stop = min(size, len(names)) if size >= 0 else len(names)
    assert hostlist.names_between([text], start, stop) == names[start:stop]
    hostlist.fold(names)


@FUZZ
@given(text=st.one_of(st.text(max_size=30),
                      st.text(alphabet="0123456789:+-@ .hmsdaypTtomrw", max_size=30)))
def test_times_and_durations(text: str) -> None:
    from scr_core.timeparse import parse_seconds, parse_time
    from scr_core.units import parse_bytes, parse_duration

    for parse in (lambda t: parse_time(t, 1_700_000_000), parse_seconds, parse_duration,
                  parse_bytes):
        try:
            parse(text)
        except ScrError:
            pass


@FUZZ
@given(lines=st.lists(st.text(alphabet="SCR_PREFIXCACHEBASE=/ $#{}\t0123456789abc", max_size=30),
                      max_size=6))
def test_scr_config_files(lines: list, tmp_path: Path) -> None:
    from scr_core.params import Params

    conf = tmp_path / "scr.conf"
    conf.write_text("\n".join(lines))
    env = {"SCR_CONF_FILE": str(conf), "HOME": str(tmp_path)}
    try:
        p = Params(prefix=str(tmp_path), environ=env)
        for name in ("SCR_PREFIX", "SCR_CACHE_BASE", "SCR_HALT_SECONDS", "SCR_RUNS"):
            p.get(name), p.source(name)
        p.cache_bases()
    except ScrError:
        pass


@FUZZ
@given(text=st.one_of(st.text(max_size=60),
                      st.text(alphabet="core:launcher remote_exec slurm local\n -[]{}\"'1:",
                              max_size=60),
                      st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_settings_files(text: str, tmp_path: Path) -> None:
    from scr_core.settings import Settings

    path = tmp_path / "settings.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape") if text.isascii()
                     else text.encode("latin-1", "replace"))
    try:
        s = Settings(environ={"SCR_SETTINGS_FILE": str(path), "HOME": str(tmp_path)},
                     sections={})
        s.get_raw("core", "launcher")
        s.section("core")
        s.describe()
    except ScrError:
        pass


def test_thousands_of_cases_per_run() -> None:
    """The fuzzing is bounded by example counts (one number), not by time."""
    assert FUZZ.max_examples * (len(READERS) + 5) >= 4000 and FUZZ.derandomize
