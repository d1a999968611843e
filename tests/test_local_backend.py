"""The embedded local backend: virtual allocations, real process groups, conformance."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from scr_core.errors import JobEnvironmentError, LaunchError, UsageError
from scr_core.interfaces import BackendContext
from scr_core.local.allocation import LocalAllocation
from scr_core.local.backend import (
    LocalLauncher,
    LocalRemoteExecutor,
    LocalResourceManager,
    parse_launcher_args,
)
from scr_core.local.plugin import detect
from scr_core.local.plugin import scr_resource_managers as local_rms

from scr_core import conformance


@pytest.fixture
def alloc(tmp_path):
    return LocalAllocation.create(["vn1", "vn2", "vn3"], time_limit=3600, base=str(tmp_path))


def ctx(alloc, **extra):
    env = dict(os.environ, SCR_LOCAL_DIR=alloc.path, **extra)
    return BackendContext(environ=env)


def test_detect_never_claims_a_real_cluster():
    assert detect({}) is False
    assert detect({"SLURM_JOB_ID": "5", "LSB_JOBID": "3", "FLUX_URI": "x"}) is False
    assert detect({"SCR_LOCAL_DIR": "/tmp/x"}) is True
    conformance.check_spec(local_rms()[0])


def test_resource_manager_conformance(alloc):
    seen = conformance.check_resource_manager(LocalResourceManager, ctx(alloc))
    assert seen["nodes"] == ["vn1", "vn2", "vn3"]
    assert seen["end_time"] > time.time()
    alloc.set_down("vn2", "bad DIMM")
    alloc.crash("vn3")
    down = LocalResourceManager(ctx(alloc)).down_nodes()
    assert down == {"vn2": "bad DIMM", "vn3": "Not responding (node crashed)"}


def test_no_allocation_means_no_job():
    rm = LocalResourceManager(BackendContext(environ={}))
    assert rm.job_id() is None and rm.job_nodes() == []
    with pytest.raises(JobEnvironmentError, match="SCR_LOCAL_DIR"):
        LocalLauncher(BackendContext(environ={})).launch(["true"])


def test_launcher_conformance(alloc):
    seen = conformance.check_launcher(
        LocalLauncher, ctx(alloc), run_args=["-N", "2", "true"],
        sleep_args=["-N", "3", "sleep", "60"], env=ctx(alloc).environ)
    assert seen["kill_seconds"] < 10


def test_remote_executor_conformance(alloc):
    alloc.crash("vn3")
    res = conformance.check_remote_executor(LocalRemoteExecutor, ctx(alloc), ["vn1", "vn2"],
                                            unreachable=["vn3", "nothere"])
    assert res["vn3"].unreachable and res["nothere"].unreachable


def test_tasks_get_identity_and_exclusion(alloc, tmp_path):
    out = tmp_path / "ids"
    out.mkdir()
    script = (f"import os; open(os.path.join({str(out)!r}, os.environ['SCR_LOCAL_RANK']), "
              "'w').write(os.environ['SCR_LOCAL_NODE'] + ' ' + os.environ['SCR_CACHE_BASE'])")
    launcher = LocalLauncher(ctx(alloc))
    step = launcher.launch(["-n", "4", sys.executable, "-c", script], exclude=["vn2"])
    assert launcher.wait(step, timeout=30) == 0
    seen = {p.name: p.read_text().split() for p in out.iterdir()}
    assert sorted(seen) == ["0", "1", "2", "3"]
    assert {v[0] for v in seen.values()} == {"vn1", "vn3"}
    assert seen["0"][1] == alloc.node_storage("vn1")  # node-local storage per virtual node


def test_crash_kills_only_that_node_and_ends_the_step(alloc, tmp_path):
    launcher = LocalLauncher(ctx(alloc))
    step = launcher.launch(["-N", "3", "sleep", "60"])
    time.sleep(0.3)
    groups = {n: alloc.node_groups(n) for n in alloc.nodes}
    assert all(len(g) == 1 for g in groups.values())
    alloc.crash("vn2")
    rc = launcher.wait(step, timeout=20)
    assert rc == 137
    for pgid in groups["vn1"] + groups["vn3"]:  # the rest of the step was stopped too
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)
    # after a failure the launch shrinks to the survivors; without one it is an error
    step = launcher.launch(["-N", "3", "true"])
    assert step.nodes == ["vn1", "vn3"] and launcher.wait(step, timeout=20) == 0
    alloc.set_up("vn2")
    with pytest.raises(LaunchError, match="4 nodes requested but only 3 usable"):
        launcher.launch(["-N", "4", "true"])


def test_bad_task_exit_code_propagates(alloc):
    launcher = LocalLauncher(ctx(alloc))
    step = launcher.launch(["-N", "2", "sh", "-c", "exit 7"])
    assert launcher.wait(step, timeout=20) == 7


def test_launcher_arg_errors():
    with pytest.raises(UsageError, match="unknown option '--bogus'"):
        parse_launcher_args(["--bogus", "x"])
    with pytest.raises(UsageError, match="no program"):
        parse_launcher_args(["-N", "2"])
    with pytest.raises(UsageError, match="nodes must be a number"):
        parse_launcher_args(["-N", "two", "x"])
    assert parse_launcher_args(["-N2", "--ntasks=4", "prog", "-N", "9"])["program"] == \
        ["prog", "-N", "9"]


def test_rexec_faults(alloc):
    rexec = LocalRemoteExecutor(ctx(alloc))
    alloc.set_fault("vn1", "hang")
    alloc.set_fault("vn2", "garbage")
    alloc.set_fault("vn3", "fail")
    res = rexec.run(["echo", "UP"], alloc.nodes, timeout=1)
    assert res["vn1"].timed_out and not res["vn1"].ok
    assert "UP" not in res["vn2"].stdout.splitlines()
    assert res["vn3"].rc == 255


def test_scr_local_alloc_cli(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "scr_core", "local", "alloc", "-N", "3", "--base", str(tmp_path),
         "--", sys.executable, "-m", "scr_core", "env", "--nodes"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "vnode[1-3]"
    assert os.listdir(tmp_path) == []  # removed afterwards
