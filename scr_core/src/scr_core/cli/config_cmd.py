"""``scr config``: effective SCR parameters and scr settings, each with its source."""

from __future__ import annotations

import argparse

from ..engine.jobenv import JobEnv


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", default="show",
                        choices=("show", "params", "settings", "template"),
                        help="show (both), params (SCR_* parameters), settings (plugin "
                             "settings), template (a commented settings file)")
    parser.add_argument("-p", "--prefix", help="SCR prefix directory (default $SCR_PREFIX or .)")
    parser.epilog = ("SCR parameters come from the environment, $SCR_CONF_FILE or "
                     "<prefix>/.scrconf, <prefix>/.scr/app.conf, the system scr.conf, then "
                     "built-in defaults. Settings come from the YAML settings files.\n"
                     "Exit codes: 0 ok, 3 a configuration file is invalid (file and line are "
                     "named), 4 plugin error.")


def run(args: argparse.Namespace) -> int:
    job = JobEnv(prefix=args.prefix)
    if args.what == "template":
        print(job.settings.template())
        return 0
    if args.what in ("show", "params"):
        print("# SCR parameters (name = value    [source])")
        for name, value, source in job.params.describe():
            shown = "" if value is None else value
            print(f"{name} = {shown}    [{source}]")
    if args.what in ("show", "settings"):
        if args.what == "show":
            print()
        print("# scr settings (section.key = value    [source])")
        for section, key, value, source, _desc in job.settings.describe():
            print(f"{section}.{key} = {value}    [{source}]")
    return 0
