"""Node health tests (scr-plugins-nodetests) on the local backend, in-process and through the
real ``scr list-down-nodes`` CLI, with the local, ClusterShell and pdsh executors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from scr_core.engine.down_nodes import configured_tests, list_down_nodes
from scr_core.engine.jobenv import JobEnv
from scr_core.errors import ConfigError, ScrError
from scr_core.interfaces import BackendContext, NodeResult
from scr_core.local.allocation import LocalAllocation
from scr_core.params import Params
from scr_core.plugins import Registry
from scr_plugins_nodetests.ping import PingTest
from scr_plugins_nodetests.plugin import scr_node_tests
from scr_plugins_nodetests.settings import NodeTestsSettings

from scr_core import conformance
from scr_plugins_nodetests import dir_capacity, echo, script

BIN = os.path.dirname(sys.executable)
NODES = ["vnode1", "vnode2", "vnode3", "vnode4", "vnode5"]
GARBAGE = "Failed to echo UP (printed: '\\x00\\x1b[31m#!garbage ~~~\\n\\nPU')"
# runs the real CLI, registering the core remote executors first if their entry point
# (core-remote) is not installed yet
SHIM = (
    "import sys\n"
    "from scr_core.plugins import get_registry\n"
    "from scr_core.cli.main import main\n"
    "reg = get_registry()\n"
    "if 'core-remote' not in reg.plugins:\n"
    "    import scr_core.remote.plugin as p\n"
    "    reg.register_module(p, 'core-remote')\n"
    "sys.exit(main(sys.argv[1:]))\n"
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
needs_pdsh = pytest.mark.skipif(shutil.which("pdsh") is None, reason="pdsh is not installed")


@pytest.fixture
def prefix(tmp_path):
    p = tmp_path / "prefix"
    p.mkdir()
    return p


@pytest.fixture
def alloc(tmp_path):
    return LocalAllocation.create(NODES, base=str(tmp_path / "alloc"))


def base_env(tmp_path, **extra):
    env = {"PATH": BIN + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": str(tmp_path / "home"), "USER": "tester", "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def write_settings(tmp_path, text):
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return str(path)


def registry(env):
    return Registry(environ=env, entry_points=[
        ("local", "scr_core.local.plugin", "scr-core", "0.1.0"),
        ("core-remote", "scr_core.remote.plugin", "scr-core", "0.1.0"),
        ("nodetests", "scr_plugins_nodetests.plugin", "scr-plugins-nodetests", "0.1.0"),
    ])


def job_for(alloc, prefix, tmp_path, settings="nodetests:\n  echo_timeout: 2\n", **extra):
    env = base_env(tmp_path, SCR_LOCAL_DIR=alloc.path, SCR_PREFIX=str(prefix),
                   SCR_SETTINGS_FILE=write_settings(tmp_path, settings), **extra)
    return JobEnv(prefix=str(prefix), environ=env, registry=registry(env))


# --------------------------------------------------------------------------- registration


def test_registration_defaults_and_order(alloc, prefix, tmp_path):
    specs = {s.name: s for s in scr_node_tests()}
    for spec in specs.values():
        conformance.check_spec(spec)
    job = job_for(alloc, prefix, tmp_path)
    assert [s.name for s in configured_tests(job)] == ["ping", "echo", "dir_capacity"]
    assert (specs["ping"].order, specs["echo"].order, specs["dir_capacity"].order) == (10, 20, 30)
    assert not specs["script"].default


def test_unknown_test_name_is_an_error_naming_the_available_ones(alloc, prefix, tmp_path):
    job = job_for(alloc, prefix, tmp_path, SCR_NODE_TESTS="echo,pign")
    with pytest.raises(ConfigError, match=r"unknown node test 'pign' in SCR_NODE_TESTS "
                                          r"\(env SCR_NODE_TESTS\); available: dir_capacity, "
                                          r"echo, ping, script"):
        list_down_nodes(job)


def test_named_tests_only(alloc, prefix, tmp_path):
    job = job_for(alloc, prefix, tmp_path, SCR_NODE_TESTS="echo")
    assert [s.name for s in configured_tests(job)] == ["echo"]
    job = job_for(alloc, prefix, tmp_path, SCR_NODE_TESTS="none")
    alloc.set_fault("vnode3", "garbage")
    assert list_down_nodes(job) == {}  # no tests: only the core checks


# --------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize("res, reason", [
    (NodeResult(rc=0, stdout="UP\n"), None),
    (NodeResult(rc=0, stdout="motd banner\nUP\n"), None),
    (NodeResult(rc=None, stdout="", timed_out=True), "Failed to echo UP (timed out after 5 s)"),
    (NodeResult(rc=255, stderr="ssh: connect to host n4 port 22: No route to host\n",
                unreachable=True),
     "Failed to echo UP (unreachable: ssh: connect to host n4 port 22: No route to host)"),
    (NodeResult(rc=None, unreachable=True), "Failed to echo UP (unreachable: no response)"),
    (NodeResult(rc=0, stdout="UPS\n"), "Failed to echo UP (printed: 'UPS\\n')"),
    (NodeResult(rc=0, stdout=""), "Failed to echo UP (printed nothing)"),
    (NodeResult(rc=1, stdout="", stderr="lab: n3 is not running\n"),
     "Failed to echo UP (exit code 1: lab: n3 is not running)"),
    (NodeResult(rc=2, stdout="UP\n"), "Failed to echo UP (exit code 2: UP)"),
    (NodeResult(rc=0, stdout="x" * 100), "Failed to echo UP (printed: '" + "x" * 60 + "...')"),
])
def test_echo_verdict(res, reason):
    assert echo.echo_verdict(res, 5) == reason


@pytest.mark.parametrize("res, reason", [
    (NodeResult(rc=0, stdout="scr_check_node: PASS\n"), None),
    (NodeResult(rc=1, stdout="scr_check_node: FAIL: /dev/shm: capacity 1 MiB is less than "
                             "2 MiB\n"),
     "Failed dir check: /dev/shm: capacity 1 MiB is less than 2 MiB"),
    (NodeResult(rc=127, stderr="sh: 1: /opt/py: not found\n"),
     "Failed dir check (exit code 127: sh: 1: /opt/py: not found)"),
    (NodeResult(rc=0, stdout=""), "Failed dir check (exit code 0)"),
    (NodeResult(rc=None, timed_out=True), "Failed dir check (timed out after 60 s)"),
])
def test_dir_verdict(res, reason):
    assert dir_capacity.dir_verdict(res, 60) == reason


def test_dir_plan_sizes_from_params(tmp_path):
    (tmp_path / ".scrconf").write_text(
        "CNTLDIR=/dev/shm BYTES=1GB\n"
        "CACHEDIR=/ssd BYTES=2GiB\n"
        "CACHE=/ssd SIZE=2\n"            # SIZE counts datasets: not a capacity
        "STORE=/tmp/store BYTES=512MB\n"
        "STORE=/p/gpfs\n")
    params = Params(prefix=str(tmp_path), environ={"HOME": str(tmp_path)})
    cntl, cache = dir_capacity.dir_plan(params)
    # units as SCR's abtoull: GB = GiB
    assert cntl == [("/dev/shm", 2**30)]
    assert cache == [("/ssd", 2 * 2**30), ("/tmp/store", 512 * 2**20), ("/p/gpfs", None)]
    argv = dir_capacity.check_argv("/py", cntl, cache, free=True)
    assert argv == ["/py", "-m", "scr_core", "check-node", "--cntl", f"/dev/shm:{2**30}",
                    "--cache", f"/ssd:{2 * 2**30},/tmp/store:{512 * 2**20},/p/gpfs", "--free"]
    with pytest.raises(ConfigError, match="','"):
        dir_capacity.check_argv("/py", [("/a,b", None)], [], free=False)


def test_script_verdict():
    assert script.script_verdict("chk", NodeResult(rc=0, stdout="ok\n"), 9) is None
    assert script.script_verdict(
        "chk", NodeResult(rc=0, stdout="FAIL: fan 3 stopped\n"), 9) == "fan 3 stopped"
    assert script.script_verdict("chk", NodeResult(rc=4, stderr="no GPU\n"), 9) == \
        "Failed site script chk (exit code 4: no GPU)"
    assert script.script_verdict("chk", NodeResult(rc=None, timed_out=True), 9) == \
        "Failed site script chk (timed out after 9 s)"


# --------------------------------------------------------------------------- ping


class _FakeRM:
    def __init__(self, name):
        self.name = name


class _FakeJob:
    def __init__(self, rm_name):
        self.resource_manager = _FakeRM(rm_name)


def test_ping_real_and_bounded():
    test = PingTest(BackendContext(environ={}, settings=NodeTestsSettings(ping_wait=1)))
    t0 = time.monotonic()
    out = test.run(["localhost", "no-such-host.invalid"], _FakeJob("slurm"))
    elapsed = time.monotonic() - t0
    assert "localhost" not in out
    assert out["no-such-host.invalid"].startswith("Failed to ping (")
    assert out["no-such-host.invalid"].endswith("; 2 tries)")
    assert elapsed < 10


def test_ping_skipped_on_virtual_nodes():
    # virtual nodes have no address; the program is not even started
    test = PingTest(BackendContext(environ={},
                                   settings=NodeTestsSettings(ping_program="/nonexistent")))
    assert test.run(["vnode1"], _FakeJob("local")) == {}
    with pytest.raises(ConfigError, match="cannot run /nonexistent"):
        test.run(["vnode1"], _FakeJob("slurm"))


# --------------------------------------------------------------------------- local faults


def test_faults_on_local_backend(alloc, prefix, tmp_path):
    alloc.crash("vnode2")
    alloc.set_fault("vnode3", "hang")
    alloc.set_fault("vnode4", "garbage")
    alloc.set_fault("vnode5", "fail")
    job = job_for(alloc, prefix, tmp_path)
    t0 = time.monotonic()
    down = list_down_nodes(job)
    assert time.monotonic() - t0 < 20
    assert down == {
        "vnode2": "Not responding (node crashed)",
        "vnode3": "Failed to echo UP (timed out after 2 s)",
        "vnode4": GARBAGE,
        "vnode5": "Failed to echo UP (exit code 255: vnode5: injected failure)",
    }


def test_known_down_and_excluded_come_first(alloc, prefix, tmp_path):
    alloc.set_down("vnode4", "bad DIMM")
    job = job_for(alloc, prefix, tmp_path, SCR_EXCLUDE_NODES="vnode[1-2]")
    down = list_down_nodes(job, down=["vnode5"])
    assert down == {"vnode1": "User excluded via SCR_EXCLUDE_NODES",
                    "vnode2": "User excluded via SCR_EXCLUDE_NODES",
                    "vnode4": "bad DIMM", "vnode5": "Specified as down"}


def test_site_script(alloc, prefix, tmp_path):
    settings = (
        "nodetests:\n  script: [sh, -c, 'case \"$SCR_LOCAL_NODE\" in "
        "vnode1) echo \"FAIL: fan speed low\";; vnode3) echo oops >&2; exit 2;; esac; "
        "echo fine']\n")
    job = job_for(alloc, prefix, tmp_path, settings=settings, SCR_NODE_TESTS="echo,script")
    assert list_down_nodes(job) == {"vnode1": "fan speed low",
                                    "vnode3": "Failed site script sh (exit code 2: oops)"}


def test_crashing_test_is_reported_then_skipped_or_stops(alloc, prefix, tmp_path):
    job = job_for(alloc, prefix, tmp_path, SCR_NODE_TESTS="script,echo")
    alloc.set_fault("vnode2", "garbage")
    warnings = []
    down = list_down_nodes(job, warn=warnings.append)
    assert down == {"vnode2": GARBAGE}  # echo still ran
    assert len(warnings) == 1 and "node test 'script' failed to run: ConfigError" in warnings[0]
    job = job_for(alloc, prefix, tmp_path, SCR_NODE_TESTS="script,echo",
                  SCR_NODE_TEST_ERRORS="stop")
    with pytest.raises(ScrError, match="SCR_NODE_TEST_ERRORS=stop"):
        list_down_nodes(job)


# --------------------------------------------------------------------------- dir capacity


@pytest.fixture
def mounts():
    done = []

    def mount(*args):
        subprocess.run(["mount", *args], check=True, capture_output=True)
        done.append(args[-1])

    yield mount
    for target in reversed(done):
        subprocess.run(["umount", "-l", target], capture_output=True)


@needs_root
def test_full_and_read_only_cache_dirs(alloc, prefix, tmp_path, mounts):
    small, ro, half = (alloc.node_storage(n) for n in ("vnode2", "vnode3", "vnode4"))
    mounts("-t", "tmpfs", "-o", "size=1m", "scrtest", small)       # 1 MiB: too small
    mounts("--bind", ro, ro)
    mounts("-o", "remount,ro,bind", ro)                            # root cannot write either
    mounts("-t", "tmpfs", "-o", "size=4m", "scrtest", half)        # 4 MiB, 3 MiB used
    with open(os.path.join(half, "filler"), "wb") as fh:
        fh.write(b"\0" * (3 * 2**20))
    (prefix / ".scrconf").write_text("CACHEDIR=/dev/shm BYTES=2MiB\n")
    job = job_for(alloc, prefix, tmp_path, SCR_NODE_TESTS="dir_capacity")
    assert list_down_nodes(job) == {
        "vnode2": f"Failed dir check: {small}: capacity 1 MiB is less than 2 MiB",
        "vnode3": f"Failed dir check: cannot write in {ro}: Read-only file system",
    }
    # free space instead of capacity: the 3/4 full node fails too
    job = job_for(alloc, prefix, tmp_path, SCR_NODE_TESTS="dir_capacity", SCR_CHECK_FREE="1")
    down = list_down_nodes(job)
    assert down["vnode4"].startswith(f"Failed dir check: {half}: free space ")
    assert down["vnode4"].endswith("is less than 2 MiB")
    assert set(down) == {"vnode2", "vnode3", "vnode4"}


def test_dir_capacity_bigger_than_any_disk(alloc, prefix, tmp_path):
    (prefix / ".scrconf").write_text("CNTLDIR=/dev/shm BYTES=1PB\n")
    job = job_for(alloc, prefix, tmp_path, SCR_NODE_TESTS="dir_capacity")
    down = list_down_nodes(job, nodes=["vnode1"])
    assert down["vnode1"].startswith(f"Failed dir check: {alloc.node_storage('vnode1')}: "
                                     "capacity ")
    assert down["vnode1"].endswith("is less than 1 PiB")


def test_dir_capacity_python_not_on_nodes(alloc, prefix, tmp_path):
    job = job_for(alloc, prefix, tmp_path, SCR_NODE_TESTS="dir_capacity",
                  SCR_NODE_TEST_PYTHON="/nonexistent/python3")
    down = list_down_nodes(job, nodes=["vnode1"])
    assert down["vnode1"].startswith("Failed dir check (exit code 127")


# --------------------------------------------------------------------------- real CLI


def scr_cli(env, *args, timeout=120):
    return subprocess.run([sys.executable, "-c", SHIM, *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_list_down_nodes_crashed_hung_garbage(tmp_path, prefix):
    env = base_env(tmp_path, SCR_SETTINGS_FILE=write_settings(
        tmp_path, "nodetests:\n  echo_timeout: 2\n"))
    body = ("scr local crash vnode2 >/dev/null && scr local fault vnode3 hang && "
            "scr local fault vnode4 garbage && scr list-down-nodes --reason && "
            "scr list-down-nodes")
    proc = subprocess.run(["scr", "local", "alloc", "-N", "5", "--", "sh", "-c", body],
                          env=env, cwd=prefix, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "vnode2: Not responding (node crashed)",
        "vnode3: Failed to echo UP (timed out after 2 s)",
        f"vnode4: {GARBAGE}",
        "vnode[2-4]",
    ]


def test_cli_unknown_test_exit_code(tmp_path, prefix, alloc):
    env = base_env(tmp_path, SCR_LOCAL_DIR=alloc.path, SCR_NODE_TESTS="echo,bogus")
    proc = scr_cli(env, "list-down-nodes")
    assert proc.returncode == 3
    assert "unknown node test 'bogus'" in proc.stderr and "available: " in proc.stderr


@pytest.fixture
def site_wrapper(tmp_path):
    """A site's per-node wrapper: runs the command "on" the virtual node with
    ``scr local exec`` (so a crash is real) and emulates three bad nodes."""
    path = tmp_path / "site-wrap"
    path.write_text(
        "#!/bin/sh\n"
        'node=$1; shift\n'
        'case "$node" in\n'
        '  vnode3) exec sleep 60;;\n'                                   # hangs
        '  vnode4) scr local exec "$node" -- "$@" | rev; exit 0;;\n'   # garbles output
        '  vnode5) echo "wrap: cannot reach $node" >&2; exit 255;;\n'   # unreachable
        'esac\n'
        'exec scr local exec "$node" -- "$@"\n')
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("rexec", ["clustershell", pytest.param("pdsh", marks=needs_pdsh)])
def test_cli_through_real_clustershell_and_pdsh(tmp_path, prefix, alloc, site_wrapper, rexec):
    alloc.crash("vnode2")
    settings = (f"core:\n  remote_exec: {rexec}\n"
                f"remote:\n  worker: exec\n  wrapper: ['{site_wrapper}', '%h']\n"
                "nodetests:\n  echo_timeout: 2\n")
    env = base_env(tmp_path, SCR_LOCAL_DIR=alloc.path,
                   SCR_SETTINGS_FILE=write_settings(tmp_path, settings))
    t0 = time.monotonic()
    proc = scr_cli(env, "list-down-nodes", "--reason", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 30
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["vnode2: Not responding (node crashed)",
                         "vnode3: Failed to echo UP (timed out after 2 s)"]
    assert lines[2].startswith("vnode4: Failed to echo UP (printed: 'PU\\n")
    assert lines[3] == "vnode5: Failed to echo UP (unreachable: wrap: cannot reach vnode5)"
    assert len(lines) == 4  # vnode1 passed echo and dir_capacity through the wrapper


def test_node_test_conformance(alloc, prefix, tmp_path):
    from scr_plugins_nodetests.dir_capacity import DirCapacityTest
    from scr_plugins_nodetests.echo import EchoTest

    alloc.set_fault("vnode3", "garbage")
    job = job_for(alloc, prefix, tmp_path)
    ctx = job.context("nodetests")
    assert conformance.check_node_test(EchoTest, ctx, NODES, job) == {"vnode3": GARBAGE}
    assert conformance.check_node_test(DirCapacityTest, ctx, ["vnode1", "vnode2"], job) == {}
    assert conformance.check_node_test(PingTest, ctx, NODES, job) == {}


def test_ping_probe_tries_once_for_the_step_watch(tmp_path):
    """run() retries a silent node (ping_tries); probe(), what scr run's step watch calls
    every interval, tries once: the watch counts consecutive failures itself (issue 17)."""
    calls = tmp_path / "calls"
    fake = tmp_path / "ping"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\nexit 1\n")
    fake.chmod(0o755)
    test = PingTest(BackendContext(environ={}, settings=NodeTestsSettings(
        ping_program=str(fake), ping_tries=2)))

    class Job:
        resource_manager = None

    assert set(test.run(["n1", "n2"], Job())) == {"n1", "n2"}
    assert len(calls.read_text().splitlines()) == 4
    calls.unlink()
    failed = test.probe(["n1", "n2"], Job())
    assert set(failed) == {"n1", "n2"} and "1 try" in failed["n1"]
    assert len(calls.read_text().splitlines()) == 2
    assert [s.name for s in scr_node_tests() if s.in_step] == ["ping"]
