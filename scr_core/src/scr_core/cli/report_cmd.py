"""``scr report``: what happened to a job, from the SCR log and the control files."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..files import write_text_atomic

EXIT_NO_EXTRA = 7  # --html without the optional extra scr-core[report] (jinja2)

EPILOG = """\
Reads <prefix>/.scr: the SCR log (lines written by libscr with SCR_LOG_ENABLE=1 and by
scr run), index.scr, flush.scr, halt.scr and each dataset's summary.scr. Whatever cannot be
read is named on a 'Missing:' line (in --json: the "missing" list) and the rest is reported.
Failures are runs that did not end cleanly and were relaunched, lost a node, or ended the
job with a non-zero exit code; time lost runs from the checkpoint the next run restarted from
(else the last one before the failure) to the relaunch. --json prints the report as one JSON
object of schema "scr.report/1" (docs/json-schemas.md). --html FILE writes a self-contained
page (inline SVG timeline, no network access); it needs the optional extra scr-core[report]
(jinja2): pip install 'scr-core[report]'.

Exit codes: 0 report printed or written (possibly partial: see Missing), 1 the prefix has no
.scr directory or FILE cannot be written, 2 usage, 7 --html without the optional extra
scr-core[report] installed."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--prefix", help="SCR prefix directory (default $SCR_PREFIX or .)")
    parser.add_argument("--logfile", metavar="FILE",
                        help="the SCR log to read (default <prefix>/.scr/log)")
    parser.add_argument("--json", action="store_true",
                        help="print the report as JSON (schema scr.report/1)")
    parser.add_argument("--html", metavar="FILE",
                        help="also write the report as one self-contained HTML page")
    parser.epilog = EPILOG


def run(args: argparse.Namespace) -> int:
    from ..engine.jobenv import scr_prefix
    from ..report import build_report, format_text

    prefix = os.path.abspath(args.prefix) if args.prefix else scr_prefix(os.environ)
    if not os.path.isdir(os.path.join(prefix, ".scr")) and not args.logfile:
        print(f"scr report: error: {prefix} has no .scr directory: not an SCR prefix "
              "(see --prefix)", file=sys.stderr)
        return 1
    render = None
    if args.html:
        try:
            from ..report_html import render_html as render
        except ImportError as exc:
            print(f"scr report: error: --html needs the optional extra scr-core[report] "
                  f"({exc.name or exc} is missing): pip install 'scr-core[report]'",
                  file=sys.stderr)
            return EXIT_NO_EXTRA
    report = build_report(prefix, args.logfile)
    if render is not None:
        try:
            write_text_atomic(args.html, render(report))
        except OSError as exc:
            print(f"scr report: error: cannot write {args.html}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
    if args.json:
        json.dump(report, sys.stdout, indent=1, sort_keys=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_text(report))
        if args.html:
            print(f"\nHTML report: {os.path.abspath(args.html)}")
    return 0
