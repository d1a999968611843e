"""Every subcommand under hostile arguments and environments (issue 16).

The commands come from ``scr_core.cli.main.COMMANDS``, so a new subcommand is covered
without editing this file. For each run: no traceback, an exit code from the documented
set, and ``scr should-exit`` never answers 1 ("keep running") while reporting an error.
Runs are in-process (fast); a sample also runs as real processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from faults_cli import DOCUMENTED, base_env, run_cli
from scr_core.cli.main import COMMANDS
from scr_core.errors import COMMON_EXIT_CODES

BIN = os.path.dirname(sys.executable)
LONG_NUMBER = "9" * 4400
#: commands whose positional words are run as a program (a hostile word would be executed)
RUNS_ITS_ARGUMENTS = {"submit"}

#: hostile command lines, after the command word; "<file>" is replaced by a regular file
HOSTILE_ARGV = [
    [],
    ["--no-such-option"],
    ["--prefix", "<file>"],
    ["-p", "<file>"],
    [f"n[1-{LONG_NUMBER}]"],
    ["99999999999999999999999"],
    ["-1"],
    ["--", "-"],
    ["\udcff\udcfe"],  # not UTF-8 (as a non-UTF-8 argv arrives)
]

#: one ordinary command line each, run under every hostile environment (must stay harmless:
#: nothing here submits, kills or launches more than `true` on a virtual node)
ORDINARY_ARGV = {
    "run": ["local", "-N", "1", "true"],
    "halt": ["--list"],
    "hostlist": ["n[1-3]"],
    "index": ["--list"],
    "jobs": ["ls"],
    "list-dir": ["control"],
    "local": ["status"],
    "scavenge": ["-i", "1"],
    "kill-jobstep": ["-l", "local", "-j", "1.0"],
    "env": ["--jobid"],
}


def hostile_environments(tmp: Path) -> dict[str, dict[str, str]]:
    """name -> environment additions; each breaks one thing a command may read."""
    afile = tmp / "a-file"
    afile.write_text("x")
    bad_alloc = tmp / "bad-alloc"
    bad_alloc.mkdir()
    (bad_alloc / "allocation.json").write_text('{"job_id": "j", "nodes": 5}')
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("core: [1, 2]\n")
    corrupt = tmp / "corrupt-prefix"
    (corrupt / ".scr").mkdir(parents=True)
    for name in ("halt.scr", "flush.scr", "nodes.scr", "index.scr"):
        (corrupt / ".scr" / name).write_bytes(b"\x95\x1f\xc3\xf5" + b"\xff" * 60)
    return {
        "prefix-is-a-file": {"SCR_PREFIX": str(afile)},
        "prefix-undefined-variable": {"SCR_PREFIX": "$SCR_FAULTS_UNDEFINED/p"},
        "nodelist-long-number": {"SCR_NODELIST": f"n[1-{LONG_NUMBER}]"},
        "malformed-allocation": {"SCR_LOCAL_DIR": str(bad_alloc)},
        "settings-not-a-mapping": {"SCR_SETTINGS_FILE": str(bad_yaml)},
        "negative-parameters": {"SCR_MIN_NODES": "-1", "SCR_HALT_SECONDS": "-5",
                                "SCR_RUNS": "x", "SCR_RUN_SETTLE_SECONDS": "inf"},
        "corrupt-control-files": {"SCR_PREFIX": str(corrupt)},
        "unknown-plugins": {"SCR_RESOURCE_MANAGER": "nosuch", "SCR_LAUNCHER": "nosuch",
                            "SCR_REMOTE_EXEC": "nosuch", "SCR_PLUGINS_STRICT": "1"},
    }


@pytest.fixture
def job(tmp_path):
    from scr_core.local.allocation import LocalAllocation

    alloc = LocalAllocation.create(["vnode1", "vnode2"], base=str(tmp_path))
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    env = base_env(str(tmp_path))
    env.update(SCR_LOCAL_DIR=alloc.path, SCR_PREFIX=str(prefix),
               SCR_CNTL_BASE=str(tmp_path / "cntl"), SCR_CACHE_BASE=str(tmp_path / "cache"),
               SCR_RUN_SETTLE_SECONDS="0")
    return env


def check(command: str, argv: list, rc: int, err: str) -> None:
    where = f"scr {command} {argv!r:.80}: rc {rc}, stderr {err[-400:]!r}"
    assert "Traceback" not in err, where
    assert rc in DOCUMENTED, where
    if command == "should-exit" and "error" in err:
        assert rc not in (0, 1), where


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_hostile_arguments(command, job, tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    afile = tmp_path / "a-file"
    afile.write_text("x")
    for argv in HOSTILE_ARGV:
        if command in RUNS_ITS_ARGUMENTS and argv and not argv[0].startswith("-"):
            continue
        argv = [str(afile) if a == "<file>" else a for a in argv]
        rc, _, err = run_cli([command, *argv], job)
        check(command, argv, rc, err)
    # a hostile word is never taken for a directory to make (scr halt -1 once made ./-1)
    assert list(work.iterdir()) == [], (command, list(work.iterdir()))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_hostile_environments(command, job, tmp_path):
    for name, extra in hostile_environments(tmp_path).items():
        for argv in ([], ORDINARY_ARGV.get(command, [])):
            rc, _, err = run_cli([command, *argv], dict(job, **extra))
            check(command, argv, rc, err)
            if name == "corrupt-control-files" and command == "should-exit":
                assert rc == 6, err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_documents_the_exit_codes(command, job):
    rc, out, err = run_cli([command, "--help"], job)
    assert rc == 0, err
    text = " ".join(out.split())
    assert "xit codes" in text, f"scr {command} --help documents no exit codes"
    assert "8 internal error" in text and "SCR_DEBUG=2" in text
    for code, meaning in COMMON_EXIT_CODES.items():
        assert f"{code} {meaning}" in text, (command, code, meaning)


def test_should_exit_never_continues_on_error(job, tmp_path):
    for name, extra in hostile_environments(tmp_path).items():
        rc, out, err = run_cli(["should-exit", "-v"], dict(job, **extra))
        assert rc != 1 or (not err.strip() and out.startswith("continue")), (name, err)


@pytest.mark.parametrize("argv, extra, code", [
    (["should-exit"], {"SCR_NODELIST": f"n[1-{LONG_NUMBER}]"}, 2),
    (["hostlist", "-n", "1", f"n[1-{LONG_NUMBER}]"], {}, 2),
    (["config"], {"SCR_SETTINGS_FILE": "<bad-yaml>"}, 3),
    (["halt", "--checkpoints", "99999999999999999999999"], {}, 2),
])
def test_a_sample_as_real_processes(argv, extra, code, job, scr_env, tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_bytes(b"core:\n  x: \"\xff\"\n")
    env = dict(scr_env, **{k: v for k, v in job.items() if k.startswith("SCR_")})
    env.update({k: (str(bad_yaml) if v == "<bad-yaml>" else v) for k, v in extra.items()})
    r = subprocess.run([os.path.join(BIN, "scr"), *argv], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # the SCR-named script says the same under its own name
    script = COMMANDS[argv[0]][2]
    if script:
        r2 = subprocess.run([os.path.join(BIN, script), *argv[1:]], env=env,
                            capture_output=True, text=True, timeout=60)
        assert r2.returncode == code and r2.stderr.startswith(script)


ROOT = Path(__file__).resolve().parent.parent


def _readme_table(heading: str) -> dict[str, str]:
    """The first table after ``heading`` in README.md: first column -> second."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index(heading):]
    rows = {}
    for line in after.splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("code", "signal", "---"):
            rows[cells[0]] = cells[1]
    return rows


def test_readme_exit_codes_match_the_code():
    from scr_core.cli.main import COMMON_EPILOG
    from scr_core.engine.run import Outcome

    table = _readme_table("**Exit codes.**")
    codes = {int(c) for c in table if c.isdigit()}
    run_codes = {v for k, v in vars(Outcome).items() if k.isupper()}
    assert codes == {0, 1} | set(COMMON_EXIT_CODES) | run_codes
    assert codes | {128} >= DOCUMENTED and "128+N" in table
    for code, meaning in COMMON_EXIT_CODES.items():
        assert table[str(code)].startswith(meaning.split()[0]), (code, table[str(code)])
        assert f"{code} {meaning}" in COMMON_EPILOG
    for code in run_codes - {0, 1} - set(COMMON_EXIT_CODES):
        assert table[str(code)].startswith("`scr run`")


def test_readme_signals_match_scr_run():
    import signal

    table = _readme_table("**Signals**")
    for names, what in table.items():
        for name in names.split(", "):
            number = getattr(signal, name)
            assert f"{128 + number}" in what or "128+N" in what, (name, what)
