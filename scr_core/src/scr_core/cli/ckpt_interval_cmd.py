"""``scr_ckpt_interval``: print the optimum checkpoint interval computed from the SCR log.

Meant for job scripts::

    export SCR_CHECKPOINT_SECONDS=$(scr_ckpt_interval --default 1800)

What is counted is documented in :mod:`scr_core.ckpt_interval`.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import Optional, Sequence

from scr_core.ckpt_interval import (
    MODELS,
    LogStats,
    NotEnoughDataError,
    analyze,
    optimum_interval,
    overhead_percent,
)
from scr_core.errors import UsageError
from scr_core.scrlog import LogFileError, log_path, parse_file

PROG = "scr_ckpt_interval"

EPILOG = """\
Failures are runs relaunched inside the same allocation after an unclean end, or runs that
logged NODE_FAIL; runs that halted (HALT event: SCR_Finalize, time limit, scr_halt) or ended
with their allocation are not failures. C = checkpoint write time plus synchronous flushes of
checkpoints, per checkpoint; M = total run time / failures.

exit codes:
  0  printed an interval (or a percentage, or the --stats table with an interval)
  1  not enough data in the log to compute one (no checkpoints, zero checkpoint cost,
     or no failures yet); the reason goes to stderr
  2  usage: bad arguments
  6  the log is missing, unreadable, or holds no SCR records
"""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add scr_ckpt_interval's options (SCR's, plus ``--default``) to ``parser``."""
    parser.description = (
        "Estimate the optimum checkpoint interval from the SCR log, from the measured "
        "checkpoint cost and mean time to interrupt (Young or Daly model)."
    )
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--stats", action="store_true",
        help="print checkpoint-cost and failure statistics as a table",
    )
    parser.add_argument(
        "--model", choices=MODELS, default="daly",
        help="model for the optimum interval (default: %(default)s)",
    )
    parser.add_argument(
        "--percent", action="store_true",
        help="print the checkpoint overhead in percent (100*C/t) instead of seconds",
    )
    parser.add_argument(
        "--prefix", metavar="DIR",
        help="SCR prefix directory holding .scr/log (default: $SCR_PREFIX, else the cwd)",
    )
    parser.add_argument(
        "--logfile", metavar="FILE", help="path of the log file (default: <prefix>/.scr/log)"
    )
    parser.add_argument(
        "--default", metavar="SECS", type=_positive_int, dest="default",
        help="print SECS and exit 0 when the log is missing or has too little data "
        "(SCR's TODO: a first run has no history); not with --percent",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _logfile(args: argparse.Namespace) -> str:
    if args.logfile:
        return str(args.logfile)
    prefix = args.prefix or os.environ.get("SCR_PREFIX") or os.getcwd()
    return log_path(prefix)


def _seconds(interval: float) -> int:
    # Never print 0: SCR_CHECKPOINT_SECONDS=0 disables time-based checkpointing altogether.
    return max(1, int(interval))


def _stats_table(path: str, nrecords: int, stats: LogStats, model: str) -> list[tuple[str, str]]:
    def tot(secs: float, count: int) -> str:
        avg = f"{secs / count:.3f}" if count else "-"
        return f"{secs:.3f} s in {count} (avg {avg})"

    cost, mtti = stats.checkpoint_cost, stats.mtti
    return [
        ("log file", path),
        ("records", f"{nrecords} ({stats.skipped_lines} unparseable lines skipped)"),
        ("runs", str(len(stats.runs))),
        ("  failed (interrupts)", str(stats.failures)),
        ("  halted", str(stats.count("halted"))),
        ("  ended with allocation", str(stats.count("allocation_end"))),
        ("  last in log", str(stats.count("last"))),
        ("total run time (s)", f"{stats.run_secs:.0f}"),
        ("mean time to interrupt (s)", "unbounded (no failures)" if mtti is None
         else f"{mtti:.1f}"),
        ("checkpoints", tot(stats.checkpoint_secs, stats.checkpoints)),
        ("checkpoint flushes", tot(stats.flush_ckpt_secs, stats.flush_ckpt_count)),
        ("output flushes", tot(stats.flush_output_secs, stats.flush_output_count)),
        ("compute phases", tot(stats.compute_secs, stats.compute_count)),
        ("fetches", tot(stats.fetch_secs, stats.fetch_count)),
        ("rebuilds", f"{tot(stats.rebuild_secs, stats.rebuild_count)}, "
                     f"{stats.restart_failures} failed"),
        ("checkpoint cost C (s)", "-" if cost is None else f"{cost:.3f}"),
        ("model", model),
    ]


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def run(args: argparse.Namespace) -> int:
    """Compute and print; returns 0, or raises ScrError (exit code 1 or 6) with the reason."""
    if args.default is not None and args.percent:
        raise UsageError("--default gives seconds and cannot be combined with --percent")
    path = _logfile(args)
    try:
        records = parse_file(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT and args.default is not None:
            print(args.default)
            print(f"{PROG}: no log at {path}; using --default {args.default}", file=sys.stderr)
            return 0
        raise LogFileError(f"cannot read SCR log {path!r}: {exc.strerror or exc}") from exc
    if not records and records.skipped:
        raise LogFileError(
            f"no SCR log records in {path!r} ({records.skipped} unparseable lines)"
        )

    stats = analyze(records, skipped_lines=records.skipped)
    interval: Optional[float] = None
    reason: Optional[NotEnoughDataError] = None
    try:
        interval = optimum_interval(stats, args.model)
    except NotEnoughDataError as exc:
        reason = exc
    cost = stats.checkpoint_cost

    if args.stats:
        rows = _stats_table(path, len(records), stats, args.model)
        if interval is not None and cost is not None:
            rows.append(("interval (s)", f"{interval:.1f}"))
            rows.append(("overhead (%)", f"{overhead_percent(cost, interval):.2f}"))
        elif args.default is not None:
            rows.append(("interval (s)", f"{args.default} (--default; {reason})"))
        else:
            rows.append(("interval (s)", f"- ({reason})"))
        _print_table(rows)
    elif interval is not None and cost is not None:
        if args.percent:
            print(f"{overhead_percent(cost, interval):.2f}")
        else:
            print(_seconds(interval))
    elif args.default is not None:
        print(args.default)
        print(f"{PROG}: {reason}; using --default {args.default}", file=sys.stderr)

    if reason is not None and args.default is None:
        raise reason
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``scr_ckpt_interval [options]`` through the ``scr`` CLI framework; returns the exit code."""
    from scr_core.cli.main import run_script

    try:
        return run_script("ckpt-interval", list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)


if __name__ == "__main__":
    sys.exit(main())
