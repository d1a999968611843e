"""main's argparse-free fast path parses exactly like argparse, or declines.

Commands declaring ``FAST_OPTIONS``/``FAST_DEFAULTS`` (scr should-exit, scr plugins) skip
argparse for plain command lines (start-up time of batch-script calls); anything unusual must
fall back to argparse, so that help, errors and exit codes stay argparse's.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from scr_core.cli import main

FAST_COMMANDS = ["should-exit", "plugins"]


def argparse_values(command, argv):
    ns = main.build_parser(only=command).parse_args([command, *argv])
    return {k: v for k, v in vars(ns).items() if k not in ("command", "_module")}


def module_of(command):
    return importlib.import_module(main.COMMANDS[command][0])


@pytest.mark.parametrize("command", FAST_COMMANDS)
def test_fast_options_match_the_parser(command):
    mod = module_of(command)
    parser = main.build_parser(only=command)._subparsers._group_actions[0].choices[command]
    dests = {a.dest: a for a in parser._actions if a.dest != "help"}
    assert set(mod.FAST_DEFAULTS) == set(dests)
    for dest, action in dests.items():
        assert mod.FAST_DEFAULTS[dest] == action.default, dest
    for option, (dest, convert) in mod.FAST_OPTIONS.items():
        action = parser._option_string_actions[option]
        assert action.dest == dest
        assert (convert is None) == (action.nargs == 0), option
        if convert is not None:
            assert convert is (action.type or str), option


@pytest.mark.parametrize("argv", [
    [], ["--runs", "0"], ["--runs=3"], ["--runs", "0", "-v"], ["-v", "--verbose"],
    ["-p", "/tmp/x", "--down", "n[1-3]", "--min-nodes", "2", "--runs", "5"],
    ["--prefix=/a=b", "--down="], ["--down", ""], ["--runs", "1", "--runs", "2"],
    ["--min-nodes", " 7"],
])
def test_plain_should_exit_lines_take_the_fast_path_and_parse_alike(argv):
    mod = module_of("should-exit")
    fast = main.fast_parse(mod.FAST_OPTIONS, mod.FAST_DEFAULTS, argv)
    assert fast is not None
    assert fast == argparse_values("should-exit", argv)


@pytest.mark.parametrize("argv", [
    ["--runs", "-1"], ["--runs"], ["--runs", "x"], ["--run", "0"], ["-h"], ["--help"],
    ["-vp", "x"], ["-px"], ["--verbose=1"], ["extra"], ["--", "x"], ["--down", "-n1"],
    ["--runs", "0", "--nosuch"],
])
def test_anything_else_goes_to_argparse(argv):
    mod = module_of("should-exit")
    assert main.fast_parse(mod.FAST_OPTIONS, mod.FAST_DEFAULTS, argv) is None


def test_plugins_json_fast_path():
    mod = module_of("plugins")
    assert main.fast_parse(mod.FAST_OPTIONS, mod.FAST_DEFAULTS, ["--json"]) == \
        argparse_values("plugins", ["--json"])
    assert main.fast_parse(mod.FAST_OPTIONS, mod.FAST_DEFAULTS, ["--js"]) is None


@pytest.mark.parametrize("argv, code, needle", [
    (["--runs", "x"], 2, "argument --runs: invalid int value: 'x'"),
    (["--nosuch"], 2, "unrecognized arguments: --nosuch"),
])
def test_fallback_errors_are_argparse_one_liners(scr_env, tmp_path, argv, code, needle):
    r = subprocess.run([sys.executable, "-m", "scr_core", "should-exit", *argv], env=scr_env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == code, r.stderr
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_fast_path_does_not_import_argparse(scr_env, tmp_path):
    code = ("import sys; from scr_core.cli.main import main; rc = main(['should-exit', "
            "'--runs', '0']); print(rc, 'argparse' in sys.modules, 'pydantic' in sys.modules, "
            "'importlib.metadata' in sys.modules)")
    alloc = subprocess.run(
        [sys.executable, "-m", "scr_core", "local", "alloc", "-N", "2", "--",
         sys.executable, "-c", code],
        env=dict(scr_env, XDG_CACHE_HOME=str(tmp_path / "cache")), cwd=tmp_path,
        capture_output=True, text=True, timeout=60)
    assert alloc.returncode == 0, alloc.stderr
    # 0 = stop (no runs left); no argparse, no pydantic (lazy settings); importlib.metadata
    # only on a cold entry-point cache (this is the first call with this cache directory)
    assert alloc.stdout.split()[:3] == ["0", "False", "False"], alloc.stdout
