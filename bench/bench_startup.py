"""CLI start-up: what every batch-script call of ``scr_should_exit`` (and ``scr plugins``) costs.

Measures the wall time, from fork to reaped exit, of

* ``scr_should_exit --runs 0`` (the console script in .venv/bin, exactly what a batch script
  runs) inside a 16-node local allocation prepared once (``SCR_LOCAL_DIR``, a scratch
  ``SCR_PREFIX``, a scratch ``HOME`` so no user settings are read). ``--runs 0`` still does
  the whole decision up to the runs check: the resource manager is selected through the
  plugins, the halt file is read, the end time is asked;
* ``scr plugins`` with whatever distributions are installed in the venv (all five in the
  dev setup): entry-point discovery, importing every plugin, calling every hook;

Both run with the entry-point cache (``$HOME/.cache/scr`` of the scratch ``HOME``) warm: the
discarded warm-up round writes it, as the first call of a job would. Without it
(``SCR_PLUGINS_CACHE=0``) every call scans the installed distributions through
importlib.metadata, ~25 ms more.

against the reference ``python -c 'import ClusterShell.NodeSet'`` (same interpreter, same
run), interleaved round-robin, medians. Target: <= 1.5x the reference. ``python -c pass`` is
measured too (the interpreter's own floor, in the notes). The notes also give the largest
top-level imports of each command from one ``-X importtime`` run (the profile to act on).

Limits: a shared 2-core VM with colleagues' tests running, so single samples jump by tens of
milliseconds; the medians of interleaved rounds are what to read. Byte-code caches are warm
(one discarded warm-up round); a cold first call after an upgrade costs more. The page cache
holds the venv. ``-X importtime`` inflates what it measures; use its split, not its sums.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402

NAME = "startup"
REFERENCE = "python -c 'import ClusterShell.NodeSet'"


def _script(name: str) -> str:
    path = os.path.join(os.path.dirname(common.PYTHON), name)
    if not os.path.exists(path):
        path = os.path.join(common.VENV_BIN, name)
    return path


def importtime_top(argv: list[str], env: dict, top: int = 5) -> tuple[str, float]:
    """One run with ``-X importtime``: ("pydantic 31 ms, ...", total ms of top-level imports)."""
    env = dict(env, PYTHONPROFILEIMPORTTIME="1")
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, check=False)
    totals: list[tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", line)
        if m and len(m.group(3)) <= 1:  # a top-level import (not nested in another)
            totals.append((int(m.group(2)), m.group(4)))
    totals.sort(reverse=True)
    total_ms = sum(us for us, _ in totals) / 1000
    text = ", ".join(f"{name} {us / 1000:.0f}" for us, name in totals[:top])
    return text + " ms", total_ms


def run(quick: bool, full: bool = False) -> list[dict]:
    from scr_core.local.allocation import LocalAllocation

    rounds = 3 if quick else 41 if full else 21
    work = tempfile.mkdtemp(prefix="scr-bench-startup.")
    try:
        alloc = LocalAllocation.create(LocalAllocation.node_names(16),
                                       base=os.path.join(work, "allocs"))
        prefix = os.path.join(work, "prefix")
        os.makedirs(prefix)
        env = common.clean_env({"SCR_LOCAL_DIR": alloc.path, "SCR_PREFIX": prefix},
                               home=os.path.join(work, "home"))
        should_exit = [_script("scr_should_exit"), "--runs", "0"]
        plugins = [_script("scr"), "plugins"]
        ref = [common.PYTHON, "-c", "import ClusterShell.NodeSet"]
        floor = [common.PYTHON, "-c", "pass"]

        def timer(argv: list[str], ok: tuple = (0,)):
            return lambda: common.time_subprocess(argv, env=env, cwd=prefix, ok_codes=ok)[0]

        samples = common.interleave({
            "should_exit": timer(should_exit),  # exit 0 = stop (no runs left)
            "plugins": timer(plugins),
            "ref": timer(ref),
            "floor": timer(floor),
        }, repeats=rounds, warmup=1)
        for name, s in samples.items():
            if s.error:
                raise RuntimeError(f"{name}: {s.error}")
        ref_s = samples["ref"].median
        floor_s = samples["floor"].median
        rows = []
        for key, argv, case in (
            ("should_exit", should_exit, "scr_should_exit --runs 0 (16-node local alloc)"),
            ("plugins", plugins, "scr plugins (all installed distributions)"),
        ):
            ours = samples[key].median
            note = (f"floor python -c pass {common.fmt_s(floor_s)}; above it: ours "
                    f"{common.fmt_s(ours - floor_s)} vs reference {common.fmt_s(ref_s - floor_s)}")
            if not quick:
                top, total = importtime_top(argv, env)
                note += f"; -X importtime top-level: {top} (imports {total:.0f} ms in all)"
            rows.append(common.make_row(
                NAME, case, ours, REFERENCE, ref_s, "<= 1.5x", note,
                repeats=f"{samples[key].count}/{samples['ref'].count}"))
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(common.standalone(run))
