"""``scr halt`` / ``scr_halt``: set, list or clear the halt conditions of a job."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import ConfigError, ControlFileError, ScrError, UsageError
from ..timeparse import parse_seconds, parse_time

EPILOG = """\
With no condition, asks the job to halt at its next opportunity (ExitReason=JOB_HALTED).
Conditions are written to <prefix>/.scr/halt.scr under an exclusive flock, in place, the
way SCR's scr_halt_cntl does, so updates interleave safely with a running SCR library;
--remove deletes it under the same lock.
TIME for --before/--after: 2026-11-22T15:00[:SS], '2026-11-22 15:00', 3pm, 15:00,
'tomorrow 15:00', 'tues 3:00pm', 'December 11th 03:00am', +2h, +90m, @EPOCH, ...
(up to the year 9999). SECONDS for --seconds: 600, 10m, 1h30m, HH:MM:SS. --checkpoints and
--seconds are at most 2147483647 (the C library reads them as int).
Several prefix directories may be given; each gets the same change.
A prefix must exist (scr run makes it; a mistyped one is an error, not a new prefix);
<prefix>/.scr is made in it when a condition is set. A halt file that cannot be parsed is
never read as "no halt": --list and conditions report it (exit 6); setting a halt (no
condition, or --immediate) replaces it, saying so; --remove deletes it.

Exit codes (the largest over the prefixes): 0 ok, 1 a halt file could not be updated or
removed (named on stderr), 2 usage, unparseable or out-of-range value, 3 unusable prefix
(missing, not a directory, .scr not a directory or cannot be made or written),
6 corrupt halt file."""

INT_MAX = 2**31 - 1
LAST_TIME = 253402300799  # 9999-12-31T23:59:59Z: what asctime and every time_t can show


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--checkpoints", type=int, metavar="N",
                        help="halt after N more checkpoints (0 halts at the next check)")
    parser.add_argument("-b", "--before", metavar="TIME",
                        help="halt before TIME (minus HaltSeconds)")
    parser.add_argument("-a", "--after", metavar="TIME", help="halt after TIME")
    parser.add_argument("-s", "--seconds", metavar="SECONDS",
                        help="HaltSeconds: halt when this little time is left in the "
                             "allocation (and before --before)")
    parser.add_argument("-i", "--immediate", action="store_true",
                        help="halt now and also stop the running job step")
    parser.add_argument("-l", "--list", action="store_true",
                        help="list the current settings (changes nothing)")
    for what in ("checkpoints", "before", "after", "seconds", "reason"):
        parser.add_argument(f"--unset-{what}", action="store_true",
                            help=f"remove the {what} condition")
    parser.add_argument("-r", "--remove", action="store_true", help="delete the halt file")
    parser.add_argument("-v", "--verbose", action="store_true", help="list after changing")
    parser.add_argument("--json", action="store_true",
                        help="with --list: print the settings as JSON, schema scr.halt/1 "
                             "(docs/json-schemas.md)")
    parser.add_argument("dirs", nargs="*", metavar="PREFIX",
                        help="prefix directories (default $SCR_PREFIX or .)")
    parser.epilog = EPILOG


def _bounded(value: int | float, what: str, high: int, low: int = 0) -> int:
    if not low <= value <= high:
        raise UsageError(f"{what} must be between {low} and {high}, not {value}")
    return int(value)


def run(args: argparse.Namespace) -> int:
    from ..engine.jobenv import scr_prefix

    if args.json:
        return _list_json(args)
    if args.checkpoints is not None:
        _bounded(args.checkpoints, "--checkpoints", INT_MAX)
    now = time.time()
    before = _bounded(parse_time(args.before, now), "--before", LAST_TIME) \
        if args.before else None
    after = _bounded(parse_time(args.after, now), "--after", LAST_TIME) if args.after else None
    seconds = _bounded(parse_seconds(args.seconds), "--seconds", INT_MAX) \
        if args.seconds else None
    if args.dirs:
        prefixes = [(os.path.abspath(d), "the command line") for d in args.dirs]
    else:
        prefixes = [(scr_prefix(os.environ),
                     "env SCR_PREFIX" if os.environ.get("SCR_PREFIX") else "the current "
                     "directory")]
    worst = 0
    for prefix, source in prefixes:
        try:
            _one_prefix(args, prefix, source, now, before, after, seconds)
        except ScrError as exc:
            print(f"scr halt: error: {exc}", file=sys.stderr)
            worst = max(worst, exc.exit_code)
    return worst


def _one_prefix(args: argparse.Namespace, prefix: str, source: str, now: float,
                before: int | None, after: int | None, seconds: int | None) -> None:
    from ..control.halt import CorruptHaltFile, HaltFile, format_listing
    from ..control.paths import ensure_scr_dir, halt_file
    from ..engine.run import IMMEDIATE_MARKER

    path = halt_file(prefix)
    marker = os.path.join(os.path.dirname(path), IMMEDIATE_MARKER)
    unsets = [w for w in ("reason", "checkpoints", "before", "after", "seconds")
              if getattr(args, f"unset_{w}")]
    sets_condition = any(v is not None for v in (args.checkpoints, before, after, seconds))
    if args.list or args.remove:  # they change nothing: no .scr is made either
        _existing_prefix(prefix, source)
    if args.list:
        print(format_listing(HaltFile(path).read(), path), end="")
        return
    if args.remove:
        _unlink(marker)
        try:
            removed = HaltFile(path).remove()
        except CorruptHaltFile:
            raise
        except ControlFileError as exc:
            raise ScrError(f"cannot remove {path}: {exc}") from exc
        if removed:
            print(f"Removed halt file {path}")
        else:
            raise ScrError(f"no halt file to remove at {path}")
        return
    ensure_scr_dir(prefix, source, create_prefix=False)
    halting = args.immediate or not (sets_condition or unsets)
    try:
        with HaltFile(path).update(replace_corrupt=halting) as state:
            if state.corrupt:
                print(f"scr halt: warning: replacing a corrupt halt file: {state.corrupt}",
                      file=sys.stderr)
            for what in unsets:
                print(f"Unsetting {_label(what)}")
                setattr(state, _field(what), None)
            if args.checkpoints is not None:
                state.checkpoints_left = args.checkpoints
                print(f"Setting CheckpointsLeft to {args.checkpoints}")
            if before is not None:
                state.exit_before = before
                print(f"Setting ExitBefore to {time.ctime(before)}")
            if after is not None:
                state.exit_after = after
                print(f"Setting ExitAfter to {time.ctime(after)}")
            if seconds is not None:
                state.halt_seconds = seconds
                print(f"Setting HaltSeconds to {seconds}")
            if halting:
                state.exit_reason = "JOB_HALTED"
                print("Setting ExitReason to JOB_HALTED")
    except CorruptHaltFile:
        raise
    except ControlFileError as exc:
        raise ScrError(f"cannot update {path}: {exc}") from exc
    try:
        if args.immediate:
            # scr run polls this marker and kills its running step
            with open(marker, "w") as fh:
                fh.write(f"{now}\n")
        elif "reason" in unsets:
            _unlink(marker)
    except OSError as exc:
        raise ScrError(f"cannot update {marker}: {exc.strerror or exc}") from exc
    if args.verbose:
        print(format_listing(HaltFile(path).read(), path), end="")


def _existing_prefix(prefix: str, source: str) -> None:
    """--list and --remove change no directory: the prefix must be there already."""
    why = None
    if not os.path.isdir(prefix):
        why = "it is not a directory" if os.path.exists(prefix) else "it does not exist"
    elif os.path.exists(os.path.join(prefix, ".scr")) and \
            not os.path.isdir(os.path.join(prefix, ".scr")):
        why = f"{os.path.join(prefix, '.scr')} exists and is not a directory"
    if why:
        raise ConfigError(f"SCR prefix {prefix} (from {source}) cannot be used: {why}")


def _list_json(args: argparse.Namespace) -> int:
    from ..control.halt import HaltFile
    from ..control.paths import halt_path
    from ..engine.jobenv import scr_prefix
    from ..jsonout import dump, halt_state

    if not args.list:
        raise UsageError("--json goes with --list")
    prefixes = [os.path.abspath(d) for d in args.dirs] or [scr_prefix(os.environ)]
    entries = []
    for prefix in prefixes:
        path = halt_path(prefix)
        halt = HaltFile(path)
        entries.append(halt_state(prefix, str(path), halt.read(), halt.exists()))
    dump("halt", {"halt_files": entries})
    return 0


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _label(what: str) -> str:
    return {"reason": "ExitReason", "checkpoints": "CheckpointsLeft", "before": "ExitBefore",
            "after": "ExitAfter", "seconds": "HaltSeconds"}[what]


def _field(what: str) -> str:
    return {"reason": "exit_reason", "checkpoints": "checkpoints_left", "before": "exit_before",
            "after": "exit_after", "seconds": "halt_seconds"}[what]
