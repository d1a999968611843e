"""The index of a prefix with 10,000 datasets: ``scr index --list`` and ``IndexFile`` against
SCR's own C ``scr_index --list`` (real SCR v3.1.0, ``tests/real_scr/build.sh``).

The index is written the way ``IndexFile.add`` builds it (``bench_kvtree.index_tree``: every
descriptor field set, ``FLUSHED``, ``CURRENT``), so both tools read the same bytes.

Cases (medians of interleaved rounds, same run):

``scr index --list``        our command, fork to exit (Python start-up included)
``IndexFile.entries()``     in this process: read, check, decode every dataset
``IndexFile.format_list()`` in this process: the text ``--list`` prints

Reference: ``<real SCR>/bin/scr_index --prefix P --list``, fork to exit. SCR is looked for
under ``$SCR_REAL_SCR_ROOT`` (default ``/var/tmp/real-scr``, where the test session and
``./dev/bench`` build it); without it the rows say so and count as targets not checked.
Target: <= 2x the C tool.

Limits: SCR's C listing walks its KVTree lists for every dataset and grows faster than
linearly with the number of datasets (measured here: ~1 s at 2,000, ~6-12 s at 10,000), so
the ratio at 10,000 says more about SCR than about us; the 1,000-dataset row (quick mode)
is the fairer comparison. A shared 2-core VM: medians of interleaved rounds.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402

NAME = "scr_index"
TARGET = "<= 2x"


def scr_index_exe() -> str | None:
    root = os.environ.get("SCR_REAL_SCR_ROOT", "/var/tmp/real-scr")
    path = os.path.join(root, "install", "bin", "scr_index")
    return path if os.access(path, os.X_OK) else None


def _write_index(prefix: str, n: int) -> None:
    import bench_kvtree

    from scr_core import kvtree

    os.makedirs(os.path.join(prefix, ".scr"), exist_ok=True)
    kvtree.write(os.path.join(prefix, ".scr", "index.scr"), bench_kvtree.index_tree(n))


def _case(prefix: str, n: int, rounds: int, budget: float) -> list[dict]:
    from scr_core.control.index import IndexFile

    exe = scr_index_exe()
    env = common.clean_env()
    ours_cli = [os.path.join(common.VENV_BIN, "scr"), "index", "--prefix", prefix, "--list"]
    index = IndexFile(prefix)
    listing = index.format_list()
    measures = {
        "cli": lambda: common.time_subprocess(ours_cli, env=env)[0],
        "entries": lambda: common.time_call(index.entries),
        "format_list": lambda: common.time_call(index.format_list),
    }
    if exe is not None:
        c_list = [exe, "--prefix", prefix, "--list"]
        got = common.time_subprocess(c_list, env=env, capture=True)[1].decode()
        same = "same text" if got == listing else "TEXT DIFFERS from ours"
        measures["c"] = lambda: common.time_subprocess(c_list, env=env)[0]
    samples = common.interleave(measures, rounds, budget_s=budget, min_repeats=2)
    ref = samples["c"].median if exe is not None else None
    ref_name = "SCR's C scr_index --list" if exe else "SCR's C scr_index (not installed)"
    size = os.path.getsize(index.path)
    rows = []
    for key, label in (("cli", "scr index --list"), ("entries", "IndexFile.entries()"),
                       ("format_list", "IndexFile.format_list()")):
        note = f"{common.fmt_count(n)} datasets, {size / 1e6:.1f} MB"
        if key == "cli" and exe is not None:
            note += f"; listing: {same}"
        rows.append(common.make_row(NAME, f"{label} {common.fmt_count(n)}",
                                    samples[key].median, ref_name, ref, TARGET, note))
    return rows


def run(quick: bool, full: bool = False) -> list[dict]:
    sizes = [1000] if quick else [1000, 10000]
    rounds = 3 if quick else 5
    work = tempfile.mkdtemp(prefix="bench-scr-index-")
    rows: list[dict] = []
    try:
        for n in sizes:
            prefix = os.path.join(work, f"p{n}")
            common.progress(f"{NAME}: index of {n} datasets")
            _write_index(prefix, n)
            rows += _case(prefix, n, rounds, budget=10.0 if n > 1000 else 3.0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


if __name__ == "__main__":
    sys.exit(common.standalone(run))
