"""``scr halt`` / ``scr_halt``: set, list or clear the halt conditions of a job."""

from __future__ import annotations

import argparse
import os
import time

from ..errors import UsageError
from ..timeparse import parse_seconds, parse_time

EPILOG = """\
With no condition, asks the job to halt at its next opportunity (ExitReason=JOB_HALTED).
Conditions are written to <prefix>/.scr/halt.scr under an exclusive flock, in place, the
way SCR's scr_halt_cntl does, so updates interleave safely with a running SCR library.
TIME for --before/--after: 2026-11-22T15:00[:SS], '2026-11-22 15:00', 3pm, 15:00,
'tomorrow 15:00', 'tues 3:00pm', 'December 11th 03:00am', +2h, +90m, @EPOCH, ...
SECONDS for --seconds: 600, 10m, 1h30m, HH:MM:SS.
Several prefix directories may be given; each gets the same change.

Exit codes: 0 ok, 1 a halt file could not be updated or removed (named on stderr),
2 usage or unparseable time, 6 corrupt halt file with --list."""


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


def run(args: argparse.Namespace) -> int:
    from ..control.halt import HaltFile, format_listing
    from ..control.paths import halt_path
    from ..engine.jobenv import scr_prefix
    from ..engine.run import IMMEDIATE_MARKER

    if args.json:
        return _list_json(args)
    if args.checkpoints is not None and args.checkpoints < 0:
        raise UsageError(f"--checkpoints must be 0 or more, not {args.checkpoints}")
    now = time.time()
    before = parse_time(args.before, now) if args.before else None
    after = parse_time(args.after, now) if args.after else None
    seconds = parse_seconds(args.seconds) if args.seconds else None
    prefixes = [os.path.abspath(d) for d in args.dirs] or [scr_prefix(os.environ)]
    unsets = [w for w in ("reason", "checkpoints", "before", "after", "seconds")
              if getattr(args, f"unset_{w}")]
    sets_condition = any(v is not None for v in (args.checkpoints, before, after, seconds))
    failures = 0
    for prefix in prefixes:
        path = halt_path(prefix)
        marker = os.path.join(os.path.dirname(path), IMMEDIATE_MARKER)
        if args.list:
            print(format_listing(HaltFile(path).read(), path), end="")
            continue
        if args.remove:
            _unlink(marker)
            if HaltFile(path).remove():
                print(f"Removed halt file {path}")
            else:
                print(f"scr halt: no halt file to remove at {path}")
                failures += 1
            continue
        if not os.path.isdir(prefix):
            print(f"scr halt: error: prefix directory {prefix} does not exist")
            failures += 1
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with HaltFile(path).update() as state:
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
                if args.immediate or not (sets_condition or unsets):
                    state.exit_reason = "JOB_HALTED"
                    print("Setting ExitReason to JOB_HALTED")
        except OSError as exc:
            print(f"scr halt: error: cannot update {path}: {exc.strerror}")
            failures += 1
            continue
        if args.immediate:
            # scr run polls this marker and kills its running step
            with open(marker, "w") as fh:
                fh.write(f"{now}\n")
        elif "reason" in unsets:
            _unlink(marker)
        if args.verbose:
            print(format_listing(HaltFile(path).read(), path), end="")
    return 1 if failures else 0


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
