"""Run every benchmark of ``bench/`` and print one table of ratios against references.

Usage (from the repository root)::

    .venv/bin/python bench/run.py                 # every bench/bench_*.py, < 1 min each
    .venv/bin/python bench/run.py --quick         # small sizes, few repeats (what the test runs)
    .venv/bin/python bench/run.py --only hostlist relaunch
    .venv/bin/python bench/run.py --full --json results.json   # larger caps, more repeats

Every module ``bench/bench_NAME.py`` defines ``run(quick: bool) -> list[dict]`` (optionally
with a ``full`` keyword) returning rows as described in ``bench/common.py``; this script
discovers them, runs them one after another (never in parallel: they time things), and
prints the machine, the date, one table of all rows (medians over repeats, ratio =
our time / the reference's time) with a pass/MISS mark for every machine-checkable target,
and how long each module took. A module that fails is reported as an ERROR row and makes
the exit status 1; missed targets do not (this is a measurement, not a test).
"""

from __future__ import annotations

import argparse
import glob
import importlib
import inspect
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402


def discover() -> list[str]:
    """Short names (``hostlist`` for ``bench_hostlist.py``) of every benchmark module."""
    names = []
    for path in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        names.append(os.path.basename(path)[len("bench_"):-len(".py")])
    return names


def _select(available: list[str], only: list[str] | None) -> list[str]:
    if not only:
        return available
    wanted = []
    for name in only:
        short = name[len("bench_"):] if name.startswith("bench_") else name
        short = short[:-3] if short.endswith(".py") else short
        if short not in available:
            raise SystemExit(f"bench/run.py: no benchmark '{name}'; available: "
                             f"{', '.join(available)}")
        wanted.append(short)
    return wanted


def _check_rows(name: str, rows: object) -> list[dict]:
    if not isinstance(rows, list):
        raise TypeError(f"run() returned {type(rows).__name__}, expected a list of rows")
    out = []
    for r in rows:
        if not isinstance(r, dict):
            raise TypeError(f"a row is {type(r).__name__}, expected dict")
        missing = [k for k in common.ROW_KEYS if k not in r]
        if missing:
            raise TypeError(f"row {r.get('case', '?')!r} lacks {', '.join(missing)}")
        if r.get("ratio") is None and r.get("ours_s") is not None and r.get("reference_s"):
            r = dict(r, ratio=r["ours_s"] / r["reference_s"])
        out.append(r)
    return out


def run_module(name: str, quick: bool, full: bool) -> tuple[list[dict], float, bool]:
    """(rows, seconds, ok) of one module; a failure becomes one ERROR row."""
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(f"bench_{name}")
        kwargs = {}
        if "full" in inspect.signature(module.run).parameters:
            kwargs["full"] = full
        rows = _check_rows(name, module.run(quick, **kwargs))
        ok = True
    except Exception as exc:
        tb = traceback.format_exc(limit=-3).strip().splitlines()
        rows = [common.make_row(name, "ERROR", None, note=f"{type(exc).__name__}: {exc} "
                                f"[{' | '.join(line.strip() for line in tb[-4:-1])}]")]
        ok = False
    return rows, time.perf_counter() - t0, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Run the benchmarks of bench/ and print one table of ratios.")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats (seconds, not minutes)")
    parser.add_argument("--full", action="store_true",
                        help="larger time caps and more repeats for modules that support it "
                             "(longer than a minute each); what bench/RESULTS.md records")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these benchmarks (hostlist or bench_hostlist)")
    parser.add_argument("--json", metavar="FILE", help="also save machine and rows as JSON")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--no-notes", action="store_true", help="leave the notes out")
    args = parser.parse_args(argv)
    if args.quick and args.full:
        parser.error("--quick and --full exclude each other")

    available = discover()
    if args.list:
        print("\n".join(available))
        return 0
    chosen = _select(available, args.only)
    info = common.machine_info()
    mode = "quick" if args.quick else "full" if args.full else "default"
    print(f"scr benchmarks ({mode}): {', '.join(chosen)}", flush=True)
    print(common.describe_machine(info), flush=True)

    all_rows: list[dict] = []
    durations: dict[str, float] = {}
    failed = []
    for name in chosen:
        print(f"... {name}", file=sys.stderr, flush=True)
        rows, secs, ok = run_module(name, args.quick, args.full)
        durations[name] = secs
        all_rows.extend(rows)
        if not ok:
            failed.append(name)
    info["loadavg_end"] = common.machine_info()["loadavg"]

    print()
    common.print_table(all_rows, notes=not args.no_notes)
    print()
    print(common.summary_line(all_rows))
    print("module times: " + ", ".join(f"{n} {s:.1f} s" for n, s in durations.items()))
    print(f"load average at the end: {info['loadavg_end']}")
    if failed:
        print(f"FAILED modules: {', '.join(failed)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "mode": mode, "durations": durations,
                       "rows": all_rows}, fh, indent=1, default=str)
        print(f"saved {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
