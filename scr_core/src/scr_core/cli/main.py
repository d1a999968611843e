"""The ``scr`` command: subcommands are imported only when chosen (start-up time matters).

Each subcommand module defines ``configure_parser(parser)`` and ``run(args) -> int`` and
documents its exit codes in its epilog. A module may also declare ``FAST_OPTIONS`` (option
string -> (dest, converter, or None for a flag)) and ``FAST_DEFAULTS`` (dest -> default):
then a command line made only of those options, in their plain forms (``--runs 0``,
``--runs=0``, ``-v``), is parsed without building (or importing) argparse, which is a fifth
of ``scr_should_exit``'s start-up; anything else (help, abbreviations, values starting with a
dash, a bad number ...) goes through argparse, so messages and exit codes are argparse's.
tests/test_cli_fast_path.py checks that both parse alike.

Errors of the :class:`~scr_core.errors.ScrError` family become one line on stderr and their
exit code. Any other exception is a bug in scr or in a plugin: it becomes one line naming the
plugin module (or scr's own module) where it was raised and exit code 8 (internal error),
never 0 or 1, which ``scr should-exit`` and ``scr run`` give meanings. The traceback is printed
only when ``SCR_DEBUG`` is 2 or more.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .. import __version__
from ..errors import (
    EXIT_ENVIRONMENT,
    EXIT_FAILURE,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    ScrError,
)

# name -> (module, one-line help, SCR-compatible script name or None)
COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "run": ("scr_core.cli.run_cmd", "run a job step with relaunch on failure (scr_run)",
            "scr_run"),
    "prerun": ("scr_core.cli.prerun_cmd", "prepare the allocation before the first run",
               "scr_prerun"),
    "postrun": ("scr_core.cli.postrun_cmd", "after the last run: scavenge cached datasets",
                "scr_postrun"),
    "list-down-nodes": ("scr_core.cli.list_down_nodes_cmd",
                        "list the nodes of the allocation that are unusable",
                        "scr_list_down_nodes"),
    "should-exit": ("scr_core.cli.should_exit_cmd", "decide whether to stop relaunching",
                    "scr_should_exit"),
    "halt": ("scr_core.cli.halt_cmd", "set, list or clear halt conditions", "scr_halt"),
    "ckpt-interval": ("scr_core.cli.ckpt_interval_cmd",
                      "optimal checkpoint interval from the SCR log", "scr_ckpt_interval"),
    "check-node": ("scr_core.cli.check_node_cmd", "check control/cache dirs on this node",
                   "scr_check_node"),
    "kill-jobstep": ("scr_core.cli.kill_jobstep_cmd", "kill a job step by id",
                     "scr_kill_jobstep"),
    "env": ("scr_core.cli.env_cmd", "print facts about the job (scr_env)", "scr_env"),
    "list-dir": ("scr_core.cli.list_dir_cmd", "print the control or cache directories",
                 "scr_list_dir"),
    "hostlist": ("scr_core.cli.hostlist_cmd", "expand, compress and combine node lists",
                 "scr_hostlist"),
    "scavenge": ("scr_core.cli.scavenge_cmd",
                 "copy cached datasets from the nodes to the prefix", "scr_scavenge"),
    "index": ("scr_core.cli.index_cmd", "list and edit the prefix's dataset index",
              "scr_index"),
    "report": ("scr_core.cli.report_cmd",
               "what happened to a job: runs, failures, checkpoints (text, JSON, HTML)", None),
    "submit": ("scr_core.cli.submit_cmd", "submit a batch script through the RM plugin", None),
    "jobs": ("scr_core.cli.jobs_cmd",
             "batch job status/cancel; list and clean the function-jobs database", None),
    "nodes": ("scr_core.cli.nodes_cmd", "node inventory from the resource manager", None),
    "plugins": ("scr_core.cli.plugins_cmd", "list plugins and what they provide", None),
    "config": ("scr_core.cli.config_cmd", "show SCR parameters and scr settings", None),
    "local": ("scr_core.cli.local_cmd", "virtual allocations of the local backend", None),
}


if TYPE_CHECKING:
    import argparse

#: the common exit codes, shown by ``scr --help`` and (through :func:`common_codes_help`) at
#: the end of every command's help
COMMON_EPILOG = (
    "Exit codes: 0 ok, 1 failed, 2 usage, 3 configuration, 4 plugins, "
    "5 environment (not in an allocation, RM failure), 6 corrupt control file, "
    "7 not supported by the backend, 8 internal error (an unexpected exception in scr or a "
    "plugin: one line names the module at fault; SCR_DEBUG=2 prints the traceback).")


def common_codes_help() -> str:
    """The line every command's help ends with: the codes any command can return."""
    from ..errors import COMMON_EXIT_CODES

    codes = ", ".join(f"{code} {meaning}" for code, meaning in COMMON_EXIT_CODES.items())
    return (f"Any command: {codes} (a bug in scr or a plugin: one line names the module at "
            "fault; SCR_DEBUG=2 prints the traceback).")

_parser_class: Any = None


def _argument_parser_class() -> type[argparse.ArgumentParser]:
    """argparse, but a usage error is one line and the documented exit code 2 (argparse is
    imported on first use: the fast path of :func:`fast_parse` does without it)."""
    global _parser_class
    if _parser_class is None:
        import argparse

        class ArgumentParser(argparse.ArgumentParser):
            def error(self, message: str) -> None:  # type: ignore[override]
                self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")

        _parser_class = ArgumentParser
    return _parser_class


def __getattr__(name: str) -> Any:  # ``main.ArgumentParser`` stays importable
    if name == "ArgumentParser":
        return _argument_parser_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fast_parse(
    options: Mapping[str, tuple[str, Callable[[str], Any] | None]],
    defaults: Mapping[str, Any],
    argv: Sequence[str],
) -> dict[str, Any] | None:
    """The values of ``argv`` if it holds only ``options`` in plain forms, else None (then
    argparse must decide: help, abbreviations, dash values, conversion errors, ...)."""
    values = dict(defaults)
    i = 0
    while i < len(argv):
        word = argv[i]
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if name not in options:
            return None
        dest, convert = options[name]
        i += 1
        if convert is None:  # a flag (store_true)
            if eq:
                return None
            values[dest] = True
            continue
        if not eq:
            if i >= len(argv):
                return None
            value = argv[i]
            i += 1
        if value.startswith("-"):
            return None
        try:
            values[dest] = convert(value)
        except ValueError:
            return None
    return values


def _fast_args(chosen: str, argv: Sequence[str]) -> Any:
    """A namespace for ``chosen`` from ``argv`` (the words after the command), or None."""
    module_name = COMMANDS[chosen][0]
    module = importlib.import_module(module_name)
    options = getattr(module, "FAST_OPTIONS", None)
    if options is None:
        return None
    values = fast_parse(options, module.FAST_DEFAULTS, argv)
    if values is None:
        return None
    import types

    return types.SimpleNamespace(command=chosen, _module=module_name, **values)


def _debug_level() -> int:
    try:
        return int(os.environ.get("SCR_DEBUG", "0") or 0)
    except ValueError:
        return 0


def build_parser(only: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    import argparse

    ArgumentParser = _argument_parser_class()
    parser = ArgumentParser(
        prog=prog or "scr",
        description="scr: keep MPI jobs alive across node failures (SCR's job layer).",
        epilog=COMMON_EPILOG + " Commands document their own codes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"scr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name, (module, summary, _script) in COMMANDS.items():
        if only is not None and name != only:
            # cheap placeholder so --help lists every command without importing it
            sub.add_parser(name, help=summary, add_help=False)
            continue
        cmd = sub.add_parser(name, help=summary, description=summary,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        importlib.import_module(module).configure_parser(cmd)
        cmd.epilog = ((cmd.epilog or "").rstrip() + "\n" + common_codes_help()).lstrip()
        cmd.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen not in COMMANDS:
        chosen = None
    try:
        args = _fast_args(chosen, argv[1:]) if chosen and argv[0] == chosen else None
        if args is None:
            parser = build_parser(only=chosen if chosen else "")
            if prog and chosen:
                parser._subparsers._group_actions[0].choices[chosen].prog = prog
            args = parser.parse_args(argv)
            if not getattr(args, "_module", None):
                parser.print_help()
                return EXIT_USAGE if argv else 0
        return int(importlib.import_module(args._module).run(args) or 0)
    except ScrError as exc:
        _traceback_if_debug()
        print(f"{_name(prog, chosen)}: error: {exc}", file=sys.stderr)
        return error_exit_code(chosen, exc)
    except KeyboardInterrupt as exc:  # Ctrl-C, or client_commands.Interrupted by signal N
        return 128 + getattr(exc, "signum", 2)
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the barrier: a bug must not read as "continue" or "failed"
        _traceback_if_debug()
        print(f"{_name(prog, chosen)}: internal error: {describe_unexpected(exc)}",
              file=sys.stderr)
        return EXIT_INTERNAL


#: commands whose exit code 1 is an answer ("keep running", "the application failed"), so
#: an error must never return it
_ONE_IS_AN_ANSWER = ("run", "should-exit")


def error_exit_code(command: str | None, exc: ScrError) -> int:
    """The exit code for ``exc``: its own, except that a generic error (a plain ScrError,
    LaunchError, RemoteExecError: code 1) of ``scr run`` or ``scr should-exit`` is
    reported as an environment failure (5) there."""
    code = exc.exit_code
    if command in _ONE_IS_AN_ANSWER and code in (EXIT_OK, EXIT_FAILURE):
        return EXIT_ENVIRONMENT
    return code


def _name(prog: str | None, chosen: str | None) -> str:
    return prog or (f"scr {chosen}" if chosen else "scr")


def _traceback_if_debug() -> None:
    if _debug_level() >= 2:
        import traceback

        traceback.print_exc()


def describe_unexpected(exc: BaseException) -> str:
    """One line for an exception that is not a ScrError: what it was and where it was raised,
    naming the plugin when the innermost frame outside the standard library belongs to one."""
    import traceback

    what = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
    if len(what) > 300:
        what = what[:297] + "..."
    frames = traceback.extract_tb(exc.__traceback__)
    stdlib = os.path.dirname(os.__file__)
    own = [f for f in frames
           if not f.filename.startswith((stdlib, "<"))] or frames
    if not own:
        return what
    frame = own[-1]
    module = _module_of(frame.filename)
    plugin = _plugin_of(module)
    where = f"{frame.filename}:{frame.lineno}"
    if plugin:
        return f"plugin '{plugin}' ({module}, {where}) raised {what}"
    owner = "scr" if module.startswith("scr_core") else module
    return f"{what} (in {owner}, {where}; please report it)"


def _module_of(filename: str) -> str:
    for name, mod in list(sys.modules.items()):
        if getattr(mod, "__file__", None) == filename:
            return name
    return os.path.basename(filename)


def _plugin_of(module: str) -> str | None:
    """The plugin whose package holds ``module``, when the registry of this process is built."""
    plugins = sys.modules.get("scr_core.plugins")
    registry = getattr(plugins, "_default_registry", None)
    top = module.partition(".")[0]
    for info in getattr(registry, "plugins", {}).values():
        if info.module.partition(":")[0].partition(".")[0] == top and top != "scr_core":
            return info.name
    if top.startswith("scr_plugins_"):
        return top[len("scr_plugins_"):]
    return None


def run_script(name: str, argv: Sequence[str] | None = None) -> int:
    """Entry of the SCR-named console scripts (``scr_halt`` is ``scr halt``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    script = COMMANDS[name][2] or f"scr {name}"
    return main([name, *argv], prog=script)


if __name__ == "__main__":
    sys.exit(main())
