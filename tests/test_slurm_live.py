"""The Slurm plugin against the real lab cluster (tests/slurm_lab, started by conftest_slurm).

Allocations are made with ``salloc --no-shell`` from the test process; "inside the
allocation" checks run a Python probe as a task of it (``srun --overlap``) or in a batch
script (``sbatch --wait``), where the plain Slurm commands of the lab node are used.
Every client call has a timeout; the ``slurm`` fixture cancels all jobs and brings every
node back to idle after each test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scr_core.hostlist import expand
from scr_core.interfaces import BackendContext, JobState, SubmitRequest
from scr_plugins_slurm.launcher import SrunLauncher
from scr_plugins_slurm.rm import SlurmResourceManager

from scr_core import conformance
from scr_plugins_slurm import parse

pytestmark = pytest.mark.slurm

PY = sys.executable  # the project's venv python; /work is shared with the lab nodes
PROBE = r"""
import json, os, sys
from scr_core.hostlist import expand
from scr_core.interfaces import BackendContext
from scr_plugins_slurm import plugin
from scr_plugins_slurm.rm import SlurmResourceManager
rm = SlurmResourceManager(BackendContext(environ=dict(os.environ)))
print(json.dumps({"host": os.uname().nodename, "detect": plugin.detect(os.environ),
                  "job_id": rm.job_id(), "nodes": rm.job_nodes(),
                  "down": rm.down_nodes(), "end_time": rm.end_time()}))
"""


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    path = tmp_path / "probe.py"
    path.write_text(PROBE)
    return path


def run_probe(slurm, env: dict, probe: Path, node: str) -> dict:
    """The probe as one task of the allocation (``env`` names it), on ``node``."""
    proc = slurm.run(["srun", "-N1", "-n1", f"--nodelist={node}", "--overlap", PY,
                      str(probe)], env=env, timeout=60)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def context(slurm, job_id: str | None = None, **settings) -> BackendContext:
    env = slurm.job_env(job_id) if job_id else slurm.env()
    return BackendContext(environ=env, settings=slurm.settings(**settings))


def job_start(slurm, job_id: str) -> int:
    return parse.parse_slurm_time(slurm.job_fields(job_id)["StartTime"])


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def step_ids(slurm, job_id: str) -> list[str]:
    out = slurm.run(["squeue", "--steps", "-h", "-j", job_id, "-o",
                     parse.SQUEUE_STEPS_FORMAT], check=False).stdout
    return [s.step_id for s in parse.parse_squeue_steps(out)]


# --------------------------------------------------------------------------- the allocation


def test_inside_allocation_probe_and_end_time(slurm, probe):
    jid = slurm.salloc("--no-kill", "-N4", "-t", "7", "-J", "scr live probe")
    seen = run_probe(slurm, slurm.job_env(jid), probe, "n2")
    assert seen["host"] == "n2" and seen["detect"] is True
    assert seen["job_id"] == jid
    assert seen["nodes"] == ["n1", "n2", "n3", "n4"]
    assert seen["down"] == {}
    assert seen["end_time"] == job_start(slurm, jid) + 7 * 60
    # the same from outside, through the lab's client wrappers
    rm = SlurmResourceManager(context(slurm, jid))
    assert rm.end_time() == seen["end_time"]
    # no time limit at all (the partition is unlimited)
    jid2 = slurm.salloc("-N1", "-J", "scr live unlimited")
    assert SlurmResourceManager(context(slurm, jid2)).end_time() == -1


def test_batch_script_runs_scr_core_on_a_lab_node(slurm, probe, tmp_path):
    out = tmp_path / "batch.out"
    script = tmp_path / "job.sh"
    # fixed text, no data interpolated but paths of this test
    script.write_text(f"#!/bin/sh\n{PY} -m scr_core env\n{PY} {probe}\n")
    script.chmod(0o755)
    # polling squeue rather than `sbatch --wait`, which checks only every few seconds
    proc = slurm.run(["sbatch", "--parsable", "--no-kill", "-N2", "-t", "5",
                      f"--output={out}", str(script)], timeout=30)
    jid = parse.parse_sbatch_parsable(proc.stdout)
    state = slurm.wait_job(jid, "COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL", 90)
    text = out.read_text() if out.exists() else ""
    assert state == "COMPLETED", f"batch job {state}:\n{text}"
    lines = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line
                 and not line.startswith("{"))
    assert lines["jobid"] == jid
    assert lines["nodes"] == "n[1-2]"
    assert lines["down"] == ""
    assert int(lines["endtime"]) > time.time()
    seen = json.loads([line for line in text.splitlines() if line.startswith("{")][-1])
    assert seen["host"] == "n1" and seen["job_id"] == jid and seen["nodes"] == ["n1", "n2"]


def test_conformance_resource_manager(slurm):
    jid = slurm.salloc("--no-kill", "-N2", "-t", "10")
    seen = conformance.check_resource_manager(SlurmResourceManager, context(slurm, jid))
    assert seen["job_id"] == jid and len(seen["nodes"]) == 2 and seen["down"] == {}
    assert seen["end_time"] == job_start(slurm, jid) + 600
    conformance.check_resource_manager(SlurmResourceManager, context(slurm), expect_job=False)


def test_down_nodes_drained_and_admin_down(slurm, probe):
    jid = slurm.salloc("--no-kill", "-N4", "-t", "10")
    ctx = context(slurm, jid, prerun_hostname=True)  # the job's environment, taken now
    slurm.run(["scontrol", "update", "nodename=n3", "state=drain", "reason=live drain test"])
    slurm.run(["scontrol", "update", "nodename=n2", "state=down", "reason=live admin down"])
    rm = SlurmResourceManager(ctx)
    assert rm.job_nodes() == ["n1", "n2", "n3", "n4"]  # the environment is stale (§1.4)
    down = rm.down_nodes()
    assert list(down) == ["n2", "n3"]
    assert "live admin down" in down["n2"] and "live drain test" in down["n3"]
    states = slurm.node_states()
    assert {n for n in rm.job_nodes() if parse.node_is_down(states[n])} == set(down)
    # the job's own view, from a task on n1
    inside = run_probe(slurm, dict(ctx.environ), probe, "n1")
    print("inside:", inside)
    assert inside["nodes"] == ["n1", "n2", "n3", "n4"] and inside["down"] == down
    rm.prerun()  # srun /bin/hostname on the usable nodes
    # n2 back in service, but Slurm removed it from this --no-kill job: still unusable here
    slurm.run(["scontrol", "update", "nodename=n2", "state=resume"])
    slurm.wait_node("n2", "idle", 30)
    down = rm.down_nodes()
    assert "removed from job" in down["n2"] and list(down) == ["n2", "n3"]


def test_node_inventory(slurm):
    nodes = SlurmResourceManager(context(slurm)).node_inventory()
    assert [n.name for n in nodes] == slurm.nodes
    for n in nodes:
        assert n.up and n.cpus == 2 and n.memory_mb == 1000 and n.partitions == ["debug"]
    assert SlurmResourceManager(context(slurm)).node_inventory(partition="debug")


# --------------------------------------------------------------------------- launcher


def test_conformance_launcher(slurm):
    jid = slurm.salloc("--no-kill", "-N2", "-t", "10")
    ctx = context(slurm, jid)
    seen = conformance.check_launcher(
        SrunLauncher, ctx, run_args=["-N1", "-n1", "true"],
        sleep_args=["-N1", "-n1", "sleep", "60"], env=ctx.environ, kill_within=15)
    assert seen["kill_seconds"] < 5


def test_kill_stops_exactly_our_step(slurm):
    jid = slurm.salloc("--no-kill", "-N2", "-t", "10")
    env = slurm.job_env(jid)
    # another step of the same job, same program, started just before ours
    other = subprocess.Popen([slurm.client("srun"), "-N1", "-n1", "--overlap", "sleep", "300"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        launcher = SrunLauncher(context(slurm, jid))
        t0 = time.monotonic()
        step = launcher.launch(["-N1", "-n1", "--overlap", "sleep", "300"], env=env)
        wait_for(lambda: step.step_id, 15, "the step id")
        capture = time.monotonic() - t0
        assert step.step_id.startswith(f"{jid}.")
        running = wait_for(lambda: len(step_ids(slurm, jid)) == 2 and step_ids(slurm, jid),
                           15, "two steps")
        assert step.step_id in running
        (theirs,) = [s for s in running if s != step.step_id]
        t0 = time.monotonic()
        launcher.kill(step)
        killed_in = time.monotonic() - t0
        assert step.returncode is not None and step.returncode != 0
        assert killed_in < 5, f"kill took {killed_in:.1f}s"
        wait_for(lambda: step_ids(slurm, jid) == [theirs], 15, "only the other step left")
        assert other.poll() is None, "the other step's srun must still run"
        print(f"step id captured in {capture:.2f}s, killed in {killed_in:.2f}s")
    finally:
        other.kill()
        other.wait(10)


def test_step_of_jobid_option_is_found_and_killed(slurm):
    """srun --jobid=J from a process outside the allocation (no SLURM_JOB_ID)."""
    jid = slurm.salloc("--no-kill", "-N1", "-t", "10")
    launcher = SrunLauncher(context(slurm))
    step = launcher.launch([f"--jobid={jid}", "-n1", "--overlap", "sleep", "300"],
                           env=slurm.env())
    wait_for(lambda: step.step_id, 15, "the step id")
    assert step.step_id.startswith(f"{jid}.")
    launcher.kill(step)
    assert step.returncode not in (None, 0)
    wait_for(lambda: not step_ids(slurm, jid), 15, "the step to end")


def test_kill_pending_step_falls_back_to_signals(slurm):
    jid = slurm.salloc("--no-kill", "--exclusive", "-N1", "-t", "10")  # 2 CPUs
    env = slurm.job_env(jid)
    busy = subprocess.Popen([slurm.client("srun"), "-n2", "sleep", "300"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: step_ids(slurm, jid), 15, "the busy step")
        launcher = SrunLauncher(context(slurm, jid, kill_grace=5))
        step = launcher.launch(["-n1", "hostname"], env=env)  # waits for CPUs: J.TDB
        assert launcher.wait(step, timeout=1.0) is None
        assert step.step_id is None
        t0 = time.monotonic()
        launcher.kill(step)
        assert step.returncode not in (None, 0)
        assert time.monotonic() - t0 < 5
    finally:
        busy.kill()
        busy.wait(10)


def test_exclude_and_nodelist(slurm, tmp_path):
    jid = slurm.salloc("--no-kill", "-N4", "-t", "10")
    launcher = SrunLauncher(context(slurm, jid))
    step = launcher.launch(["-N3", f"--output={tmp_path}/host-%t.txt", "hostname"],
                           exclude=["n2"])
    assert step.argv[1] == "--exclude=n2"
    assert launcher.wait(step, timeout=60) == 0
    hosts = sorted(p.read_text().strip() for p in tmp_path.glob("host-*.txt"))
    assert hosts == ["n1", "n3", "n4"]
    for p in tmp_path.glob("host-*.txt"):
        p.unlink()
    step = launcher.launch(["-N2", f"--output={tmp_path}/host-%t.txt", "hostname"],
                           nodes=["n3", "n4"])
    assert launcher.wait(step, timeout=60) == 0
    assert sorted(p.read_text().strip() for p in tmp_path.glob("host-*.txt")) == ["n3", "n4"]


def test_output_is_live(slurm, tmp_path):
    """The step's stdout reaches ours while it runs (SCR printed it only at the end)."""
    jid = slurm.salloc("--no-kill", "-N1", "-t", "10")
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import sys\n"
        "from scr_core.interfaces import BackendContext\n"
        "from scr_plugins_slurm.launcher import SrunLauncher\n"
        "from scr_plugins_slurm.settings import SlurmSettings\n"
        "import os\n"
        "l = SrunLauncher(BackendContext(environ=dict(os.environ),\n"
        "                 settings=SlurmSettings(srun=sys.argv[1])))\n"
        "s = l.launch(['-N1', '-u', sys.executable, '-c',\n"
        "              'import time; print(\"first\", flush=True); time.sleep(3); "
        "print(\"second\", flush=True)'])\n"
        "rc = l.wait(s, timeout=60)\n"
        "if rc is None:\n"
        "    l.kill(s)\n"
        "sys.exit(rc if rc is not None else 99)\n")
    proc = subprocess.Popen([PY, str(driver), slurm.client("srun")], env=slurm.job_env(jid),
                            stdout=subprocess.PIPE, text=True)
    arrivals = {}
    t0 = time.monotonic()
    for line in proc.stdout:
        arrivals[line.strip()] = time.monotonic() - t0
    assert proc.wait(timeout=60) == 0
    assert arrivals["second"] - arrivals["first"] > 2, arrivals


def test_one_node_argv_while_step_holds_all_cpus(slurm):
    jid = slurm.salloc("--no-kill", "--exclusive", "-N2", "-t", "10")  # 4 CPUs
    env = slurm.job_env(jid)
    busy = subprocess.Popen([slurm.client("srun"), "-N2", "-n4", "sleep", "300"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: step_ids(slurm, jid), 15, "the busy step")
        launcher = SrunLauncher(context(slurm, jid))
        node = expand(slurm.job_fields(jid)["NodeList"])[1]
        t0 = time.monotonic()
        out = subprocess.run(launcher.one_node_argv(node, ["hostname"]), env=env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout.strip() == node, out.stderr
        assert time.monotonic() - t0 < 10
    finally:
        busy.kill()
        busy.wait(10)


def test_kill_step_id(slurm):
    jid = slurm.salloc("--no-kill", "-N1", "-t", "10")
    env = slurm.job_env(jid)
    proc = subprocess.Popen([slurm.client("srun"), "-n1", "sleep", "300"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (sid,) = wait_for(lambda: step_ids(slurm, jid), 15, "the step")
        SrunLauncher(context(slurm, jid)).kill_step_id(sid)
        assert proc.wait(timeout=15) != 0
    finally:
        proc.kill()
        proc.wait(10)


def test_real_crash_down_and_relaunch_excluding_it(slurm):
    """One real node crash: the step dies, the --no-kill job survives, down_nodes reports
    the node (Not responding), and a relaunch without it succeeds."""
    jid = slurm.salloc("--no-kill", "-N4", "-t", "10")
    ctx = context(slurm, jid)
    launcher = SrunLauncher(ctx)
    rm = SlurmResourceManager(ctx)
    step = launcher.launch(["-N4", "sleep", "300"])
    wait_for(lambda: step.step_id, 15, "the step id")
    t0 = time.monotonic()
    slurm.lab("crash", "n4")
    rc = launcher.wait(step, timeout=90)
    assert rc not in (None, 0), "the step must end when a node dies"
    down = wait_for(lambda: rm.down_nodes(), 90, "n4 reported down", interval=1)
    detected = time.monotonic() - t0
    assert list(down) == ["n4"] and "Not responding" in down["n4"]
    assert slurm.job_state(jid) == "RUNNING"  # --no-kill: the allocation survives
    step = launcher.launch(["-N3", "true"], exclude=list(down))
    assert launcher.wait(step, timeout=60) == 0
    print(f"crash detected in {detected:.1f}s")


# --------------------------------------------------------------------------- batch lifecycle


def test_submit_status_cancel(slurm, tmp_path):
    rm = SlurmResourceManager(BackendContext(
        environ=slurm.env(), settings=slurm.settings(), prefix=str(tmp_path)))
    outdir = tmp_path / "out dir"
    outdir.mkdir()
    ok = rm.submit(SubmitRequest(command=["/bin/echo", "hello world"], job_name="scr ok's job",
                                 nodes=1, time_limit=120, output=str(outdir / "ok %j.out")))
    bad = rm.submit(SubmitRequest(command=["/bin/sh", "-c", "exit 3"], job_name="scr-bad",
                                  output="/dev/null"))
    later = rm.submit(SubmitRequest(command=["true"], job_name="scr-later",
                                    header_lines=["--begin=now+1hour"], output="/dev/null"))
    script = Path(ok.script)
    assert script.parent == tmp_path / ".scr" / "batch"
    assert "#SBATCH --no-kill" in script.read_text()
    ids = [ok.job_id, bad.job_id, later.job_id]

    def finished():
        st = rm.status(ids)
        done = st[ok.job_id].state in JobState.FINAL and st[bad.job_id].state in JobState.FINAL
        return st if done else None

    st = wait_for(finished, 60, "both jobs to finish", interval=0.5)
    assert list(st) == ids
    assert st[ok.job_id].state == JobState.COMPLETED and st[ok.job_id].exit_code == 0
    assert (outdir / f"ok {ok.job_id}.out").read_text() == "hello world\n"
    fields = slurm.job_fields(ok.job_id)
    assert fields["JobName"] == "scr ok's job" and fields["TimeLimit"] == "00:02:00"
    assert st[bad.job_id].state == JobState.FAILED and st[bad.job_id].exit_code == 3
    assert st[later.job_id].state == JobState.PENDING
    assert "BeginTime" in st[later.job_id].message
    rm.cancel(later.job_id)
    st = wait_for(lambda: (s := rm.status([later.job_id]))[later.job_id].state
                  == JobState.CANCELLED and s, 15, "the cancel")
    assert st[later.job_id].raw_state == "CANCELLED"
    # a job slurmctld does not know (never existed, or purged after MinJobAge): the lab has
    # no accounting, so the answer is unknown *with the reason*, never "completed"
    gone = str(int(later.job_id) + 100000)
    st = rm.status([gone, ok.job_id])
    assert st[gone].state == JobState.UNKNOWN
    assert "accounting storage is disabled" in st[gone].message
    assert st[ok.job_id].state == JobState.COMPLETED
