"""Shared helpers of the ``bench/`` modules: timing, interleaving, capped runs, the table.

Protocol of a benchmark module ``bench/bench_NAME.py``::

    def run(quick: bool) -> list[dict]          # optionally run(quick, full=False)

Each row is a dict with the keys of :data:`ROW_KEYS`:

``benchmark``   the module's short name (``startup``, ``hostlist``, ...)
``case``        what was measured (``fold 2-D 100k``)
``ours_s``      our median time in seconds (None if not measured)
``reference``   what we compare with (``ClusterShell NodeSet 1.10.1``); "-" for none
``reference_s`` the reference's median time in seconds (None if none)
``ratio``       ours_s / reference_s (None if either is missing); below 1 means we are faster
``target``      text; machine-checked when it is one of
                ``<= 1.5x`` / ``>= 2x``      on ``ratio`` (a time ratio: ours/reference;
                                             a bare number ``<= 1.1`` means the same)
                ``speed >= 0.8x``            on reference_s / ours_s (throughput ratio)
                ``<= 0.2 s``                 on ``ours_s`` (absolute)
                anything else is shown but not checked
``note``        free text: per-MB figures, breakdowns, why a figure is limited

Optional keys: ``reference_over`` / ``ours_over`` (True when that time is a lower bound: the
run was stopped at a time cap, shown as ``> 5.00 s``), ``repeats`` (samples behind the
medians, e.g. ``"5/3"``). Use :func:`make_row` to build rows; it computes the ratio.

Timing: :func:`interleave` runs several measurements round-robin (rotating the order every
round), so that load from other processes on this shared machine spreads over all of them,
and returns every sample; rows carry medians. :func:`time_in_child` runs a callable in a
forked child with a wall-clock cap (for references that are known to go pathological), and
:func:`time_subprocess` times a command.
"""

from __future__ import annotations

import datetime
import gc
import json
import math
import os
import platform
import re
import select
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

ROW_KEYS = ("benchmark", "case", "ours_s", "reference", "reference_s", "ratio", "target",
            "note")

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
# the interpreter that runs the benchmarks is the one whose packages are measured
PYTHON = sys.executable


class Capped(Exception):
    """A measurement was stopped at its time cap; ``seconds`` is that cap (a lower bound)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"stopped after {seconds:.3g} s")
        self.seconds = seconds


# --------------------------------------------------------------------------- formatting


def fmt_s(seconds: float | None, over: bool = False) -> str:
    """``0.000123`` -> ``123 us``; ``0.0456`` -> ``45.6 ms``; ``2.5`` -> ``2.50 s``."""
    if seconds is None:
        return "-"
    prefix = "> " if over else ""
    if seconds < 1e-3:
        return f"{prefix}{seconds * 1e6:.0f} us"
    if seconds < 1.0:
        return f"{prefix}{seconds * 1e3:.3g} ms"
    return f"{prefix}{seconds:.3g} s"


def fmt_ratio(ratio: float | None, bound: str = "") -> str:
    if ratio is None:
        return "-"
    if ratio >= 100:
        text = f"{ratio:.0f}x"
    elif ratio >= 10:
        text = f"{ratio:.1f}x"
    elif ratio >= 0.01:
        text = f"{ratio:.3g}x"
    else:
        text = f"{ratio:.1g}x"
    return f"{bound}{text}"


def fmt_count(n: int) -> str:
    """``1000`` -> ``1k``, ``1000000`` -> ``1M``, ``1024`` -> ``1,024``."""
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return f"{n:,}"


def mb_per_s(nbytes: int, seconds: float | None) -> str:
    if not seconds:
        return "-"
    return f"{nbytes / seconds / 1e6:.0f} MB/s"


# --------------------------------------------------------------------------- rows


def make_row(
    benchmark: str,
    case: str,
    ours_s: float | None,
    reference: str = "-",
    reference_s: float | None = None,
    target: str = "",
    note: str = "",
    *,
    ours_over: bool = False,
    reference_over: bool = False,
    repeats: str = "",
) -> dict:
    """A protocol row; ``ratio`` = ours/reference when both times exist."""
    ratio = None
    if ours_s is not None and reference_s:
        ratio = ours_s / reference_s
    row = {
        "benchmark": benchmark,
        "case": case,
        "ours_s": ours_s,
        "reference": reference,
        "reference_s": reference_s,
        "ratio": ratio,
        "target": target,
        "note": note,
    }
    if ours_over:
        row["ours_over"] = True
    if reference_over:
        row["reference_over"] = True
    if repeats:
        row["repeats"] = repeats
    return row


def ratio_bound(row: Mapping[str, Any]) -> str:
    """``"<"`` if the ratio is an upper bound (reference capped), ``">"`` if a lower bound
    (ours capped), ``"?"`` if both were capped (meaningless), else ``""``."""
    ours_over = bool(row.get("ours_over"))
    ref_over = bool(row.get("reference_over"))
    if ours_over and ref_over:
        return "?"
    if ref_over:
        return "<"
    if ours_over:
        return ">"
    return ""


_TARGET_RE = re.compile(r"^\s*(speed\s+)?(<=|>=|<|>)\s*([0-9]*\.?[0-9]+)\s*(x|s|ms|)\s*$")


def check_target(row: Mapping[str, Any]) -> str:
    """``pass``, ``MISS``, ``?`` (a capped bound decides nothing) or ``""`` (no checkable
    target, or a figure is missing)."""
    target = row.get("target") or ""
    m = _TARGET_RE.match(target)
    if not m:
        return ""
    speed, op, num, unit = m.groups()
    unit = unit or "x"  # a bare number is a ratio
    limit = float(num)
    if unit in ("s", "ms"):
        if speed:
            return ""
        value = row.get("ours_s")
        if value is None:
            return ""
        if unit == "ms":
            limit /= 1e3
        # ours_over: the value is a lower bound
        lower_bound_only = bool(row.get("ours_over"))
        upper_bound_only = False
    else:
        ours, ref = row.get("ours_s"), row.get("reference_s")
        if ours is None or ref is None or ours <= 0 or ref <= 0:
            return ""
        bound = ratio_bound(row)
        if bound == "?":
            return "?"
        if speed:
            value = ref / ours
            # a capped reference makes the speed ratio a lower bound
            lower_bound_only, upper_bound_only = bound == "<", bound == ">"
        else:
            value = ours / ref
            lower_bound_only, upper_bound_only = bound == ">", bound == "<"
    ok = {"<=": value <= limit, "<": value < limit, ">=": value >= limit,
          ">": value > limit}[op]
    if op in ("<=", "<"):
        if lower_bound_only and not ok:
            return "MISS"  # the true value is even larger
        if lower_bound_only:
            return "?"
        if upper_bound_only and not ok:
            return "?"
    else:
        if upper_bound_only and not ok:
            return "MISS"
        if upper_bound_only:
            return "?"
        if lower_bound_only and not ok:
            return "?"
    return "pass" if ok else "MISS"


# --------------------------------------------------------------------------- timing


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Samples:
    """Every sample of one measurement in an :func:`interleave` run."""

    times: list = field(default_factory=list)
    capped: float | None = None  # the cap, if a run was stopped there
    error: str | None = None
    info: list = field(default_factory=list)  # whatever the measurement returned besides

    @property
    def median(self) -> float | None:
        if self.capped is not None:
            return self.capped
        return median(self.times)

    @property
    def over(self) -> bool:
        return self.capped is not None

    @property
    def count(self) -> int:
        return len(self.times) + (1 if self.capped is not None else 0)


def interleave(
    measures: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 0,
    budget_s: float | None = None,
    min_repeats: int = 1,
) -> dict[str, Samples]:
    """Run each measurement ``repeats`` times, round-robin, rotating the order each round.

    A measurement returns its own duration in seconds (or ``(seconds, info)``), so it can
    time exactly the part that matters (a child process, a forked call). One that raises
    :class:`Capped` is not run again and its median becomes the cap (a lower bound); any
    other exception is recorded as its error. With ``budget_s``, a measurement stops
    repeating once its samples add up to that many seconds (after ``min_repeats``), so slow
    references run once or twice and fast ones get many samples. ``warmup`` rounds are run
    first and discarded.
    """
    names = list(measures)
    out = {name: Samples() for name in names}
    for _ in range(warmup):
        for name in names:
            try:
                measures[name]()
            except Exception:  # the timed rounds will record it
                pass
    for rnd in range(repeats):
        order = names[rnd % len(names):] + names[: rnd % len(names)] if names else []
        active = False
        for name in order:
            s = out[name]
            if s.capped is not None or s.error is not None:
                continue
            if (budget_s is not None and len(s.times) >= min_repeats
                    and sum(s.times) >= budget_s):
                continue
            active = True
            try:
                got = measures[name]()
            except Capped as exc:
                s.capped = exc.seconds
                continue
            except Exception as exc:
                s.error = f"{type(exc).__name__}: {exc}"
                continue
            if isinstance(got, tuple):
                got, info = got
                s.info.append(info)
            s.times.append(float(got))
        if not active:
            break
    return out


def time_call(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes, in this process."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_in_child(
    fn: Callable[[], Any],
    cap: float,
    summarize: Callable[[Any], Any] | None = None,
) -> tuple[float, Any]:
    """Run ``fn()`` in a forked child and return (seconds it took, summarize(result)).

    The child inherits everything prepared in this process (no pickling of inputs), times
    only the call, and sends back the time and a small JSON summary of the result (e.g. a
    count, to check that every implementation computed the same thing). If the child has
    not answered after ``cap`` seconds of wall time it is killed and :class:`Capped` is
    raised. Linux/POSIX only (``os.fork``).
    """
    gc.collect()
    # objects that exist now are never collected in the child: no copy-on-write storm
    # from the collector touching every object of a large input
    gc.freeze()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(rfd)
            t0 = time.perf_counter()
            result = fn()
            dt = time.perf_counter() - t0
            info = summarize(result) if summarize else None
            payload = json.dumps({"t": dt, "info": info}).encode()
        except BaseException as exc:  # report, never return into the parent's code
            payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
            code = 1
        try:
            os.write(wfd, payload)
        finally:
            os._exit(code)
    os.close(wfd)
    gc.unfreeze()
    chunks = []
    deadline = time.monotonic() + cap
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Capped(cap)
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                raise Capped(cap)
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except Capped:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(rfd)
        os.waitpid(pid, 0)
    data = json.loads(b"".join(chunks) or b'{"error": "child died without an answer"}')
    if "error" in data:
        raise RuntimeError(data["error"])
    return data["t"], data["info"]


def time_subprocess(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    ok_codes: Iterable[int] = (0,),
    cap: float | None = None,
    stdin_data: bytes | None = None,
    capture: bool = False,
) -> tuple[float, bytes]:
    """Wall time of running ``argv`` to completion (start to reaped), and its stdout if
    ``capture`` (else stdout goes to /dev/null and b"" is returned). An exit code outside
    ``ok_codes`` is an error; passing ``cap`` turns a timeout into :class:`Capped`."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            list(argv), env=None if env is None else dict(env), cwd=cwd,
            input=stdin_data,
            stdin=None if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE, timeout=cap, check=False)
    except subprocess.TimeoutExpired as exc:
        raise Capped(cap or 0.0) from exc
    dt = time.perf_counter() - t0
    if proc.returncode not in tuple(ok_codes):
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: "
                           f"{err[-1] if err else '(no stderr)'}")
    return dt, proc.stdout if capture else b""


def clean_env(extra: Mapping[str, str] | None = None, home: str | None = None) -> dict:
    """This environment minus anything that would make scr detect a real job
    (SCR_*, SLURM_*, LSB_*, FLUX_*, PMI*), with the venv first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCR_", "SLURM_", "LSB_", "FLUX_", "PMI", "PYTHON"))}
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    if home is not None:
        env["HOME"] = home
        env["XDG_CONFIG_HOME"] = os.path.join(home, ".config")
    env.update(extra or {})
    return env


def progress(message: str) -> None:
    """One line on stderr, so that a long run shows where it is (the table is on stdout)."""
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine


def machine_info() -> dict:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg": load,
    }


def describe_machine(info: Mapping[str, Any]) -> str:
    return (f"{info['date']}  {info['nproc']} CPU(s): {info['cpu']}  "
            f"{info['implementation']} {info['python']}  {info['platform']}  "
            f"load average {info['loadavg']}")


# --------------------------------------------------------------------------- the table

COLUMNS = ("benchmark", "case", "ours", "reference", "ref time", "ratio", "target", "mark")


def table_lines(rows: Sequence[Mapping[str, Any]], notes: bool = True) -> list[str]:
    """The rows as an aligned text table; notes go under their row, indented."""
    cells = []
    for r in rows:
        bound = ratio_bound(r)
        cells.append((
            str(r.get("benchmark", "")),
            str(r.get("case", "")),
            fmt_s(r.get("ours_s"), bool(r.get("ours_over"))),
            str(r.get("reference") or "-"),
            fmt_s(r.get("reference_s"), bool(r.get("reference_over"))),
            fmt_ratio(r.get("ratio"), "" if bound == "?" else bound),
            str(r.get("target") or ""),
            check_target(r),
        ))
    widths = [len(c) for c in COLUMNS]
    for c in cells:
        widths = [max(w, len(x)) for w, x in zip(widths, c)]
    right = {2, 4, 5}

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if i in right else v.ljust(w)
                 for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(parts).rstrip()

    out = [line(COLUMNS), line(["-" * w for w in widths])]
    for r, c in zip(rows, cells):
        out.append(line(c))
        if notes and r.get("note"):
            out.append("      " + str(r["note"]))
    return out


def print_table(rows: Sequence[Mapping[str, Any]], file: Any = None, notes: bool = True) -> None:
    print("\n".join(table_lines(rows, notes=notes)), file=file or sys.stdout, flush=True)


def summary_line(rows: Sequence[Mapping[str, Any]]) -> str:
    marks = [check_target(r) for r in rows]
    return (f"{len(rows)} rows: {marks.count('pass')} pass, {marks.count('MISS')} miss, "
            f"{marks.count('?')} undecided (capped), "
            f"{sum(1 for r in rows if r.get('target') and not check_target(r))} "
            "with targets not machine-checked")


def standalone(run: Callable[..., list], argv: Sequence[str] | None = None) -> int:
    """``python bench/bench_X.py [--quick] [--full] [--json FILE]``: one module's table."""
    import argparse
    import inspect

    parser = argparse.ArgumentParser(description=(run.__module__ or "").strip())
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--full", action="store_true",
                        help="larger caps and more repeats (takes longer than a minute)")
    parser.add_argument("--json", metavar="FILE", help="also save the rows as JSON")
    args = parser.parse_args(argv)
    info = machine_info()
    print(describe_machine(info), flush=True)
    kwargs = {}
    if "full" in inspect.signature(run).parameters:
        kwargs["full"] = args.full and not args.quick
    t0 = time.perf_counter()
    rows = run(args.quick, **kwargs)
    print_table(rows)
    print(summary_line(rows))
    print(f"took {time.perf_counter() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "rows": rows}, fh, indent=1, default=str)
    return 0


def nan_to_none(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
