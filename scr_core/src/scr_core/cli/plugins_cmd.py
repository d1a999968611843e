"""``scr plugins``: every plugin, what it provides, whether it detects this environment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import PluginError
from ..plugins import KINDS, get_registry, load_backend

if TYPE_CHECKING:
    import argparse

#: for main's argparse-free fast path (see scr_core.cli.main)
FAST_OPTIONS = {"--json": ("json", None)}
FAST_DEFAULTS = {"json": False}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.epilog = ("Lists each plugin (entry point of group scr.plugins) with its distribution "
                     "and version, load errors, and every backend it registers, marking with * "
                     "those whose detect() claims the current environment.\n"
                     "Entry points are cached in $XDG_CACHE_HOME/scr (~/.cache/scr), "
                     "invalidated when a distribution on sys.path is installed, removed or "
                     "changed; SCR_PLUGINS_CACHE=0 scans every time.\n"
                     "Every backend class listed is imported, so a 'module:Class' path that "
                     "does not load shows as 'cannot load: ...' next to it.\n"
                     "Exit codes: 0 listed (load errors are shown, not fatal), 4 a plugin "
                     "or one of its backends failed to load under SCR_PLUGINS_STRICT=1, or "
                     "duplicate names.")


def run(args: argparse.Namespace) -> int:
    reg = get_registry()
    rows = []
    detected = {kind: {r.spec.name for r in reg.detected(kind)}
                for kind in ("resource_manager", "launcher", "remote_executor")}
    for info in reg.plugins.values():
        provides = []
        for kind in KINDS:
            if info.error or info.blocked:
                break
            for name, r in reg.specs(kind).items():
                if r.plugin == info.name:
                    provides.append({"kind": kind, "name": name,
                                     "description": r.spec.description,
                                     "detected": name in detected.get(kind, ()),
                                     "error": _load_error(r, kind)})
        rows.append({"plugin": info.name, "distribution": info.distribution,
                     "version": info.version, "module": info.module,
                     "blocked": info.blocked, "error": info.error, "provides": provides})
    broken = [p["error"] for row in rows for p in row["provides"] if p["error"]]
    if broken and reg.strict:
        raise PluginError(broken[0] + " (SCR_PLUGINS_STRICT is set)")
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        status = "blocked (SCR_PLUGINS_BLOCK)" if row["blocked"] else (
            f"LOAD ERROR: {row['error']}" if row["error"] else
            "BACKEND LOAD ERROR" if any(p["error"] for p in row["provides"]) else "loaded")
        print(f"{row['plugin']}  [{row['distribution']} {row['version']}]  {status}")
        for p in row["provides"]:
            mark = "*" if p["detected"] else " "
            print(f"  {mark} {p['kind']:<17} {p['name']:<14} {p['description']}")
            if p["error"]:
                print(f"      cannot load: {p['error']}")
    print("(* = detects the current environment)")
    return 0


def _load_error(reg: object, kind: str) -> str | None:
    """Why the class (or settings model) of a registration cannot be imported, or None."""
    try:
        load_backend(reg, KINDS[kind][2] if kind in KINDS else kind)
    except PluginError as exc:
        return str(exc)
    return None
