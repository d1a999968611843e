"""Bad input and faults: every error is one line and a documented exit code (issue 16).

Most cases run ``scr`` in-process (tests/faults_cli.py); a few that need a real process (a
lock held by another process, ``scr run``) run it as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from faults_cli import base_env, run_cli
from scr_core.control.halt import FINALIZE_REASON, HaltFile
from scr_core.errors import ControlFileError, UsageError
from scr_core.hookspecs import ResourceManagerSpec, hookimpl
from scr_core.interfaces import ResourceManager
from scr_core.plugins import Registry

from scr_core import hostlist, kvtree

BIN = os.path.dirname(sys.executable)
LONG_NUMBER = "9" * 4400  # more digits than int() converts (4,300)


@pytest.fixture
def env(tmp_path):
    return base_env(str(tmp_path))


@pytest.fixture
def alloc(tmp_path):
    """A local allocation directory of 2 nodes (made by the real code)."""
    from scr_core.local.allocation import LocalAllocation

    a = LocalAllocation.create(["vnode1", "vnode2"], base=str(tmp_path))
    return a.path


@pytest.fixture
def job(env, alloc, tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / ".scr").mkdir(parents=True)
    return dict(env, SCR_LOCAL_DIR=alloc, SCR_PREFIX=str(prefix))


def one_line_error(err: str) -> None:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err


# --- the barrier: unexpected exceptions --------------------------------------------------


def test_settings_section_that_is_a_list(env, tmp_path):
    (tmp_path / "s.yaml").write_text("core: [1, 2]\n")
    rc, _, err = run_cli(["config"], dict(env, SCR_SETTINGS_FILE=str(tmp_path / "s.yaml")))
    assert rc == 3 and "s.yaml:1: section 'core' must be a mapping" in err
    one_line_error(err)


def test_settings_file_with_a_non_utf8_byte(env, tmp_path):
    (tmp_path / "s.yaml").write_bytes(b"core:\n  launcher: \"\xff\"\n")
    rc, _, err = run_cli(["config"], dict(env, SCR_SETTINGS_FILE=str(tmp_path / "s.yaml")))
    assert rc == 3 and "s.yaml:2: not UTF-8" in err
    one_line_error(err)


@pytest.mark.parametrize("where", ["scr hostlist", "--down", "SCR_NODELIST"])
def test_hostlist_number_longer_than_int_converts(job, where):
    text = f"n[1-{LONG_NUMBER}]"
    if where == "scr hostlist":
        rc, _, err = run_cli(["hostlist", "-c", text], job)
    elif where == "--down":
        rc, _, err = run_cli(["should-exit", "--down", text], job)
    else:
        rc, _, err = run_cli(["should-exit"], dict(job, SCR_NODELIST=text))
    assert rc == 2 and "too long" in err
    one_line_error(err)


@pytest.mark.parametrize("meta", ["{}", '{"job_id": "j", "nodes": 5}', "[]",
                                  '{"job_id": "j", "nodes": ["a b"]}', "not json"])
def test_malformed_allocation_json(job, alloc, meta):
    Path(alloc, "allocation.json").write_text(meta)
    rc, _, err = run_cli(["should-exit"], job)
    assert rc == 5 and "allocation.json" in err
    one_line_error(err)


class _KeyErrorRM(ResourceManager):
    name = "keyerr"

    def job_id(self):
        return {}["SLURM_JOB_ID"]

    def job_nodes(self):
        return [{}["SLURM_NODELIST"]]

    def down_nodes(self):
        return {}

    def end_time(self):
        return -1


def _registry_with(specs: list, env: dict) -> Registry:
    plugin = types.ModuleType("acme_faulty_plugin")
    plugin.scr_resource_managers = hookimpl(lambda: specs)  # type: ignore[attr-defined]
    reg = Registry(environ=env)
    reg.register_module(plugin, "acme")
    return reg


def test_backend_path_that_does_not_exist(job):
    env = dict(job, SCR_RESOURCE_MANAGER="ghost")
    reg = _registry_with([ResourceManagerSpec(name="ghost", description="missing module",
                                              backend="acme_no_such_module:RM")], env)
    rc, _, err = run_cli(["env", "--jobid"], env, registry=reg)
    assert rc == 4 and "plugin 'acme'" in err and "acme_no_such_module" in err
    one_line_error(err)


def test_scr_plugins_loads_every_backend_it_lists(env):
    spec = ResourceManagerSpec(name="ghost", description="missing module",
                               backend="acme_no_such_module:RM")
    rc, out, err = run_cli(["plugins"], env, registry=_registry_with([spec], env))
    assert rc == 0 and "cannot load" in out and "acme_no_such_module" in out
    assert "acme  [(in-process)" in out and "BACKEND LOAD ERROR" in out
    strict = dict(env, SCR_PLUGINS_STRICT="1")
    rc, out, err = run_cli(["plugins"], strict, registry=_registry_with([spec], strict))
    assert rc == 4 and "acme_no_such_module" in err and "SCR_PLUGINS_STRICT" in err
    one_line_error(err)


def test_backend_method_raising_keyerror_names_the_plugin(job):
    env = dict(job, SCR_RESOURCE_MANAGER="keyerr")
    reg = _registry_with([ResourceManagerSpec(name="keyerr", description="raises",
                                              backend=_KeyErrorRM)], env)
    rc, _, err = run_cli(["env", "--jobid"], env, registry=reg)
    assert rc == 8 and "internal error" in err and "KeyError" in err
    assert "test_faults_input" in err  # the module where it was raised
    one_line_error(err)
    rc, _, err = run_cli(["should-exit", "--down", ""], env, registry=reg)
    assert rc == 8  # never 1 ("keep running")
    rc, _, err = run_cli(["env", "--jobid"], dict(env, SCR_DEBUG="2"), registry=reg)
    assert rc == 8 and "Traceback" in err and "KeyError" in err


def test_internal_error_names_a_plugin_package(job, monkeypatch):
    """An exception raised in a plugin distribution's module names the plugin."""
    from scr_core.cli import main as cli_main

    assert cli_main._plugin_of("scr_plugins_slurm.rm") == "slurm"
    assert cli_main._plugin_of("scr_core.engine.run") is None


# --- corrupt halt file ---------------------------------------------------------------------


@pytest.fixture
def corrupt_halt(job):
    """A halt file that held JOB_HALTED, one byte of it damaged (the CRC catches it)."""
    halt = HaltFile.for_prefix(job["SCR_PREFIX"])
    with halt.update() as state:
        state.exit_reason = "JOB_HALTED"
    data = bytearray(halt.path.read_bytes())
    data[-6] ^= 0x20
    halt.path.write_bytes(bytes(data))
    return halt


def test_corrupt_halt_file_list_and_should_exit_exit_6(job, corrupt_halt):
    rc, out, err = run_cli(["halt", "--list"], job)
    assert rc == 6 and "corrupt halt file" in err and "None" not in out
    one_line_error(err)
    rc, _, err = run_cli(["should-exit", "--down", ""], job)
    assert rc == 6 and "corrupt halt file" in err
    one_line_error(err)


def test_damaged_job_halted_is_not_cancelled_by_an_update(job, corrupt_halt):
    before = corrupt_halt.path.read_bytes()
    rc, _, err = run_cli(["halt", "--checkpoints", "3"], job)
    assert rc == 6 and corrupt_halt.path.read_bytes() == before
    # asking for a halt replaces it (the result halts, so nothing is lost), saying so
    rc, _out, err = run_cli(["halt"], job)
    assert rc == 0 and "replacing a corrupt halt file" in err
    assert corrupt_halt.read().exit_reason == "JOB_HALTED"


def test_scr_run_stops_on_a_corrupt_halt_file(scr_env, tmp_path):
    prefix = tmp_path / "p"
    (prefix / ".scr").mkdir(parents=True)
    (prefix / ".scr" / "halt.scr").write_bytes(b"\x95\x1f\xc3\xf5garbage" * 8)
    marker = tmp_path / "ran"
    env = dict(scr_env, SCR_PREFIX=str(prefix), SCR_LOCAL_NODES="1")
    r = subprocess.run([os.path.join(BIN, "scr"), "run", "local", "-N", "1",
                        "touch", str(marker)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 6, r.stderr
    assert "corrupt halt file" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()  # not launched blindly


def test_fifo_in_place_of_control_files_does_not_hang(job, scr_env):
    """Opening a FIFO for reading blocks until a writer comes: never, here."""
    env = dict(scr_env, **{k: v for k, v in job.items() if k.startswith("SCR_")})
    halt = Path(job["SCR_PREFIX"], ".scr", "halt.scr")
    os.mkfifo(halt)
    for argv in (["should-exit", "--down", ""], ["halt", "--list"], ["halt", "-c", "1"]):
        r = subprocess.run([os.path.join(BIN, "scr"), *argv], env=env, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 6 and "not a regular file" in r.stderr, (argv, r.stderr)
    r = subprocess.run([os.path.join(BIN, "scr"), "halt", "--remove"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not halt.exists()
    os.mkfifo(Path(job["SCR_PREFIX"], ".scr", "flush.scr"))
    r = subprocess.run([os.path.join(BIN, "scr"), "postrun"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 6 and "not a regular file" in r.stderr, r.stderr


def test_halt_file_larger_than_its_cap_is_corrupt(job):
    tree = kvtree.KVTree()
    tree.add_value("ExitReason", "x" * (2 << 20))  # a valid 2 MiB halt file
    path = Path(job["SCR_PREFIX"], ".scr", "halt.scr")
    kvtree.write(path, tree)
    rc, _, err = run_cli(["should-exit", "--down", ""], job)
    assert rc == 6 and "too large" in err
    with pytest.raises(ControlFileError, match="too large"):
        kvtree.read(path, max_size=1 << 20)


# --- SCR_FINALIZE_CALLED ---------------------------------------------------------------------


def test_finalize_stops_within_the_allocation_and_prerun_clears_it(job):
    with HaltFile.for_prefix(job["SCR_PREFIX"]).update() as state:
        state.exit_reason = FINALIZE_REASON
        state.checkpoints_left = 5
    rc, out, _ = run_cli(["should-exit", "-v", "--down", ""], job)
    assert rc == 0 and "SCR_Finalize" in out  # stop, as SCR's scr_retries_halt
    rc, _, err = run_cli(["prerun", "-v"], job)
    assert rc == 0 and "SCR_FINALIZE_CALLED" in err
    state = HaltFile.for_prefix(job["SCR_PREFIX"]).read()
    assert state.exit_reason is None and state.checkpoints_left == 5  # the rest is kept
    rc, _, _ = run_cli(["should-exit", "--down", ""], job)
    assert rc == 1  # a new allocation runs


def test_finalize_of_an_earlier_allocation_does_not_stop_a_new_one(job, tmp_path):
    """Without scr prerun (SCR's own loop scripts, a libscr app run by hand): the halt file
    was written before this allocation started."""
    from scr_core.local.allocation import LocalAllocation

    with HaltFile.for_prefix(job["SCR_PREFIX"]).update() as state:
        state.exit_reason = FINALIZE_REASON
    rc, _, _ = run_cli(["should-exit", "--down", ""], job)
    assert rc == 0  # the allocation that wrote it stops
    time.sleep(0.05)
    new = LocalAllocation.create(["vnode1", "vnode2"], base=str(tmp_path / "new"))
    rc, out, err = run_cli(["should-exit", "-v", "--down", ""],
                           dict(job, SCR_LOCAL_DIR=new.path))
    assert rc == 1, out + err


# --- the prefix ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["halt"], ["prerun"], ["run", "local", "-N", "1", "true"]])
@pytest.mark.parametrize("shape", ["file", "scr-file", "undefined-variable", "unwritable"])
def test_unusable_prefix_one_rule(job, tmp_path, command, shape):
    prefix = tmp_path / "bad"
    if shape == "file":
        prefix.write_text("x")
        value = str(prefix)
    elif shape == "scr-file":
        prefix.mkdir()
        (prefix / ".scr").write_text("x")
        value = str(prefix)
    elif shape == "unwritable":
        value = "/proc"  # even root cannot make /proc/.scr (the chmod test below needs non-root)
    else:
        value = "$SCR_I16A_UNDEFINED/p"
    rc, _, err = run_cli(command, dict(job, SCR_PREFIX=value))
    assert rc == 3, err
    assert "SCR_PREFIX" in err
    one_line_error(err)
    assert not (tmp_path / "$SCR_I16A_UNDEFINED").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_prefix(job, tmp_path):
    prefix = tmp_path / "ro"
    prefix.mkdir()
    prefix.chmod(0o555)
    for command in (["halt"], ["prerun"]):
        rc, _, err = run_cli(command, dict(job, SCR_PREFIX=str(prefix)))
        assert rc == 3 and "cannot create" in err


def test_missing_prefix_made_by_what_starts_a_job_refused_by_halt(job, tmp_path):
    prefix = tmp_path / "new" / "prefix"
    for argv in (["halt", str(prefix)], ["halt", "--list", str(prefix)],
                 ["halt", "--remove", str(prefix)]):
        rc, _, err = run_cli(argv, job)
        assert rc == 3 and "does not exist" in err
        one_line_error(err)
    assert not (tmp_path / "new").exists()
    rc, _, err = run_cli(["prerun"], dict(job, SCR_PREFIX=str(prefix)))
    assert rc == 0 and (prefix / ".scr").is_dir()
    (prefix / ".scr").rmdir()
    rc, _, err = run_cli(["halt", str(prefix)], job)  # an existing prefix gets its .scr
    assert rc == 0, err
    assert HaltFile.for_prefix(prefix).read().exit_reason == "JOB_HALTED"


# --- scr halt: values, --list, --remove ---------------------------------------------------


@pytest.mark.parametrize("args", [["--checkpoints", "99999999999999999999999"],
                                  ["--checkpoints", "-1"],
                                  ["--seconds", "99999999999999999999"],
                                  ["--after", "+999999999999999999999s"],
                                  ["--before", "@99999999999999999"]])
def test_halt_out_of_range_values(job, args):
    rc, _, err = run_cli(["halt", *args], job)
    assert rc == 2, err
    one_line_error(err)
    assert not HaltFile.for_prefix(job["SCR_PREFIX"]).exists()


def test_halt_list_with_exit_after_beyond_time_t(job):
    tree = kvtree.KVTree()
    tree.set_unsigned("ExitAfter", 2**63 + 5)
    path = Path(job["SCR_PREFIX"], ".scr", "halt.scr")
    kvtree.write(path, tree)
    rc, out, err = run_cli(["halt", "--list"], job)
    assert rc == 0 and "ExitAfter" in out and "Traceback" not in err


def _hold(path: Path, unlink: bool) -> subprocess.Popen:
    code = ("import fcntl, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "if sys.argv[2] == 'unlink':\n"
            "    os.unlink(sys.argv[1])\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(path), "unlink" if unlink else "-"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def _scr_halt(args: list, env: dict) -> subprocess.Popen:
    return subprocess.Popen([os.path.join(BIN, "scr"), "halt", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _blocked(proc: subprocess.Popen) -> bool:
    """Still waiting after a while (the lock is held, so it cannot have finished)."""
    try:
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        return True
    return False


def test_update_waiting_on_the_lock_rechecks_the_inode(job, scr_env):
    """Another process removes the file while an update waits for its lock (SCR's
    scr_halt --remove takes no lock): the update must land in the file at the path."""
    env = dict(scr_env, SCR_PREFIX=job["SCR_PREFIX"])
    halt = HaltFile.for_prefix(job["SCR_PREFIX"])
    with halt.update() as state:
        state.exit_reason = "JOB_HALTED"
    holder = _hold(halt.path, unlink=True)
    update = _scr_halt(["--checkpoints", "5"], env)
    assert _blocked(update)
    holder.communicate("go\n", timeout=10)  # unlinks, then releases the lock
    _out, err = update.communicate(timeout=30)
    assert update.returncode == 0, err
    assert halt.exists() and halt.read().checkpoints_left == 5


def test_remove_takes_the_lock(job, scr_env):
    env = dict(scr_env, SCR_PREFIX=job["SCR_PREFIX"])
    halt = HaltFile.for_prefix(job["SCR_PREFIX"])
    with halt.update() as state:
        state.exit_reason = "JOB_HALTED"
    holder = _hold(halt.path, unlink=False)
    remove = _scr_halt(["--remove"], env)
    assert _blocked(remove) and halt.exists()
    holder.communicate("go\n", timeout=10)
    out, err = remove.communicate(timeout=30)
    assert remove.returncode == 0 and "Removed halt file" in out, err
    assert not halt.exists()


# --- SCR parameters -----------------------------------------------------------------------


@pytest.mark.parametrize("name, value, command", [
    ("SCR_HALT_SECONDS", "-5", ["should-exit", "--down", ""]),
    ("SCR_MIN_NODES", "0", ["should-exit", "--down", ""]),
    ("SCR_MIN_NODES", "-1", ["should-exit", "--down", ""]),
    ("SCR_MIN_NODES", "-3", ["should-exit", "--down", ""]),
    ("SCR_ENABLE", "maybe", ["prerun"]),
    ("SCR_ENABLE", "maybe", ["postrun"]),
    ("SCR_RUN_SETTLE_SECONDS", "inf", ["run", "local", "-N", "1", "true"]),
    ("SCR_RUN_SETTLE_SECONDS", "nan", ["run", "local", "-N", "1", "true"]),
])
def test_scr_parameters_validated_where_scr_gives_them_meaning(job, name, value, command):
    rc, _, err = run_cli(command, dict(job, **{name: value}))
    assert rc == 3, err
    assert name in err and value in err and "env" in err  # what, and where it came from
    one_line_error(err)


def test_min_nodes_option_below_one_is_usage(job):
    rc, _, err = run_cli(["should-exit", "--min-nodes", "0", "--down", ""], job)
    assert rc == 2 and "--min-nodes" in err


def test_postrun_with_corrupt_flush_file_exits_6(job):
    path = Path(job["SCR_PREFIX"], ".scr", "flush.scr")
    path.write_bytes(b"\x00" * 40)
    rc, _, err = run_cli(["postrun"], job)
    assert rc == 6 and "flush.scr" in err


# --- scr hostlist: counted on ranges ----------------------------------------------------


def test_count_nth_size_do_not_expand(monkeypatch, env):
    def refuse(*_a, **_k):
        raise AssertionError("expanded every name")

    monkeypatch.setattr(hostlist, "expand", refuse)
    monkeypatch.setattr(hostlist, "expand_joined", refuse)
    big = ["n[1-10000000]", "m[1-10000000]", "r[1-1000]x[1-10000]", "s[0001-9999999]"]
    assert run_cli(["hostlist", "-c", *big], env)[:2] == (0, "39999999\n")
    assert run_cli(["hostlist", "-n", "-1", *big], env)[:2] == (0, "s9999999\n")
    assert run_cli(["hostlist", "-n", "10000001", *big], env)[:2] == (0, "m1\n")
    assert run_cli(["hostlist", "-n", "20000002", *big], env)[:2] == (0, "r1x2\n")
    assert run_cli(["hostlist", "-s", "3", "-c", *big], env)[:2] == (0, "3\n")
    assert run_cli(["hostlist", "-s", "-2", "-e", *big], env)[:2] == \
        (0, "s9999998,s9999999\n")
    assert run_cli(["hostlist", "-s", "2", *big], env)[:2] == (0, "n[1-2]\n")


def test_size_check_stops_multiplying_past_the_limit(monkeypatch):
    calls = []
    size = hostlist._Group.size

    def counted(self):
        calls.append(1)
        return size(self)

    monkeypatch.setattr(hostlist._Group, "size", counted)
    with pytest.raises(UsageError, match="more than"):
        hostlist.count("n" + "[1-2]" * 2000)
    assert len(calls) <= 25  # 2^24 > MAX_NAMES: not 2,000 multiplications of a huge int


def test_allocation_json_written_by_create_reads_back(alloc):
    meta = json.loads(Path(alloc, "allocation.json").read_text())
    assert meta["nodes"] == ["vnode1", "vnode2"]
