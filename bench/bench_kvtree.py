"""KVTree control files: parse and write an index of 10,000 datasets and a flush file of 1,000.

The trees are built the way ``IndexFile.add`` and ``FlushFile.new_entry`` build them
(``VERSION``, ``CURRENT``, ``NAME/<name>/DSET``, ``DSET/<id>/{DSET descriptor, COMPLETE,
FLUSHED}``; ``DATASET/<id>/{NAME, LOCATION, CKPT, DSETDESC}``), each descriptor with every
field set, and checked by reading the written file back through ``IndexFile``/``FlushFile``.

Cases (medians of interleaved rounds; MB/s in the notes are over each side's own bytes):

``loads``   bytes in memory -> tree (``kvtree.loads``)
``dumps``   tree -> bytes (``kvtree.dumps``, CRC32 on, as SCR writes them)
``read``    file -> tree (``kvtree.read``: open, read, CRC check, parse)
``write``   tree -> file (``kvtree.write``: serialize, temp file, write, fsync, rename, fsync of
            the directory; the reference does json.dumps and the same file protocol)
``typed``   the control-file API on top: ``IndexFile.entries()`` (every dataset decoded),
            ``IndexFile.current()`` (what a relaunch with a restart command reads),
            ``FlushFile.list_ckpt()`` (what postrun reads)

Reference: the same tree as nested dicts through the standard library's C-accelerated
``json`` (``json.loads``/``json.dumps``; for read/write the same open/fsync/rename protocol).
It is a reference for "what parsing this much structure costs in C from Python", not a
format SCR could use. The C KVTree library (LLNL kvtree) is not installed here (no Debian or
PyPI package), so no ratio against it; kvtree.md says what bytes it writes, which the
project's tests check. No targets were set for these figures.

Limits: single-threaded and CPU-bound except ``write``, which is dominated by fsync of the
VM's disk (noisy, shared); the page cache holds the files for ``read``; a shared 2-core VM
with colleagues' tests running: medians of interleaved rounds.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402

NAME = "kvtree"
REFERENCE = "json (stdlib, C) of the same tree"


def _desc(i: int) -> Any:
    from scr_core.control.dataset import DatasetDescriptor

    return DatasetDescriptor(
        id=i, name=f"ckpt.{i}", user="benchuser", jobname="app.exe", jobid="1234567",
        cluster="bench", ckpt=i, size=(1 << 34) + i, files=1024, complete=True,
        created=1_700_000_000_000_000 + i, flag_ckpt=True, flag_output=(i % 10 == 0))


def index_tree(n: int) -> Any:
    """An index of n datasets, shaped as IndexFile.add(desc, complete=True) leaves it."""
    from scr_core.kvtree import KVTree

    tree = KVTree()
    tree.set_int("VERSION", 2)
    for i in range(1, n + 1):
        desc = _desc(i)
        entry = tree.add_value("DSET", i)
        copy = KVTree()
        copy.merge(desc.to_tree())
        entry.set("DSET", copy)
        entry.set_int("COMPLETE", 1)
        tree.add_value("NAME", desc.name).set_int("DSET", i)
        entry.set_value("FLUSHED", f"2026-01-{1 + i % 28:02d}T12:00:00")
    tree.set_value("CURRENT", f"ckpt.{n}")
    return tree


def flush_tree(n: int) -> Any:
    """A flush file of n datasets, shaped as FlushFile.new_entry leaves it."""
    from scr_core.kvtree import KVTree

    tree = KVTree()
    for i in range(1, n + 1):
        desc = _desc(i)
        entry = tree.add_value("DATASET", i)
        entry.set_value("NAME", desc.name)
        entry.set_value("LOCATION", "PFS" if i < n - 2 else "CACHE")
        entry.set_int("CKPT", 1)
        if desc.flag_output:
            entry.set_int("OUTPUT", 1)
        copy = KVTree()
        copy.merge(desc.to_tree())
        entry.set("DSETDESC", copy)
    return tree


def _json_write(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _json_read(path: str) -> Any:
    with open(path, "rb") as fh:
        return json.loads(fh.read())


def _measure_file(label: str, tree: Any, path: str, work: str, rounds: int, budget: float,
                  typed: dict) -> list[dict]:
    from scr_core import kvtree

    data = kvtree.dumps(tree)
    as_dict = tree.to_dict()
    jdata = json.dumps(as_dict).encode()
    jpath = os.path.join(work, os.path.basename(path) + ".json")
    kvtree.write(path, tree)
    _json_write(jpath, jdata)
    assert kvtree.loads(data) == tree
    mb, jmb = len(data), len(jdata)

    def t(fn: Any) -> Any:
        return lambda: common.time_call(fn)

    measures = {
        "loads": t(lambda: kvtree.loads(data)),
        "json.loads": t(lambda: json.loads(jdata)),
        "dumps": t(lambda: kvtree.dumps(tree)),
        "json.dumps": t(lambda: json.dumps(as_dict).encode()),
        "read": t(lambda: kvtree.read(path)),
        "json read": t(lambda: _json_read(jpath)),
        "write": t(lambda: kvtree.write(path, tree)),
        "json write": t(lambda: _json_write(jpath, json.dumps(as_dict).encode())),
    }
    for name, fn in typed.items():
        measures[name] = t(fn)
    samples = common.interleave(measures, repeats=rounds, budget_s=budget, min_repeats=3)
    for name, s in samples.items():
        if s.error:
            raise RuntimeError(f"{label} {name}: {s.error}")
    med = {k: s.median for k, s in samples.items()}
    size_note = f"kvtree {mb / 1e6:.2f} MB, json {jmb / 1e6:.2f} MB"
    rows = []
    for ours, ref in (("loads", "json.loads"), ("dumps", "json.dumps"), ("read", "json read"),
                      ("write", "json write")):
        note = (f"{common.mb_per_s(mb, med[ours])} vs {common.mb_per_s(jmb, med[ref])}; "
                f"{size_note}")
        if ours == "write":
            note += "; fsync-bound (file and directory)"
        rows.append(common.make_row(NAME, f"{ours} {label}", med[ours], REFERENCE, med[ref],
                                    "", note, repeats=str(samples[ours].count)))
    for name in typed:
        rows.append(common.make_row(
            NAME, f"{name} ({label})", med[name], REFERENCE + " loads", med["json.loads"], "",
            f"{common.mb_per_s(mb, med[name])} of kvtree file", repeats=str(
                samples[name].count)))
    return rows


def run(quick: bool, full: bool = False) -> list[dict]:
    from scr_core.control.flush import FlushFile
    from scr_core.control.index import IndexFile
    from scr_core.control.paths import flush_path, index_path

    n_index, n_flush = (1_000, 100) if quick else (10_000, 1_000)
    rounds = 2 if quick else 15 if full else 7
    budget = 0.5 if quick else 20.0 if full else 2.5
    work = tempfile.mkdtemp(prefix="scr-bench-kvtree.")
    try:
        prefix = os.path.join(work, "prefix")
        os.makedirs(os.path.join(prefix, ".scr"))
        ipath, fpath = str(index_path(prefix)), str(flush_path(prefix))

        itree = index_tree(n_index)
        index = IndexFile(prefix)
        rows = _measure_file(f"index {n_index:,} datasets", itree, ipath, work, rounds, budget, {
            "IndexFile.entries()": index.entries,
            "IndexFile.current()": index.current,
        })
        entries = index.entries()
        if len(entries) != n_index or index.current() != f"ckpt.{n_index}":
            raise RuntimeError("the index written does not read back as built")

        ftree = flush_tree(n_flush)
        flush = FlushFile(prefix)
        rows += _measure_file(f"flush {n_flush:,} entries", ftree, fpath, work, rounds, budget, {
            "FlushFile.list_ckpt()": flush.list_ckpt,
        })
        if len(flush.list_ckpt()) != n_flush:
            raise RuntimeError("the flush file written does not read back as built")
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(common.standalone(run))
