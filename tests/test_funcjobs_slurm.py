"""Function jobs and the scheduler API on the real Slurm lab (tests/slurm_lab, started by
conftest_slurm): results and exceptions from lab nodes, a node crash, held/pending/running/
cancelled jobs, chunking of the lab's partition, and re-attaching from a new process
through a systems file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from scr_core.batch import scheduler
from scr_core.funcjobs import FunctionJob, JobDiedError, RMSystem
from scr_core.interfaces import BackendContext, JobState
from scr_plugins_slurm.rm import SlurmResourceManager

pytestmark = pytest.mark.slurm

LAB_NODES = ["n1", "n2", "n3", "n4"]


def where_am_i():
    return {"host": socket.gethostname(), "nnodes": os.environ.get("SLURM_JOB_NUM_NODES"),
            "job": os.environ.get("SLURM_JOB_ID")}


def boom(x):
    raise KeyError(f"missing {x}")


def where_after(seconds):
    time.sleep(seconds)
    return where_am_i()


def sleepy(seconds):
    time.sleep(seconds)
    return seconds


@pytest.fixture
def lab_env(slurm, tmp_path):
    env = slurm.env(SCR_JOBS_ROOT=str(tmp_path / "root"), HOME=str(tmp_path / "home"))
    return env


@pytest.fixture
def rm(slurm, lab_env, tmp_path):
    settings = slurm.settings(script_dir=str(tmp_path / "batch"))
    return SlurmResourceManager(BackendContext(environ=lab_env, settings=settings,
                                               prefix=str(tmp_path)))


def test_function_jobs_on_lab_nodes(rm, lab_env):
    system = RMSystem("lab", rm)
    assert "debug" in system.partitions()
    one = FunctionJob("slurm-where", where_am_i, environ=lab_env)
    one.start({"max_time": "2m", "nodes": 1, "partitions": "deb.*"}, system=system)
    two = FunctionJob("slurm-where2", where_am_i, environ=lab_env)
    two.start({"max_time": "2m", "nodes": 2}, system=system)
    got = one.get_results(timeout=120, check_interval=0.5)
    assert got["host"] in LAB_NODES and got["job"] == one.remote_id and got["nnodes"] == "1"
    got2 = two.get_results(timeout=120, check_interval=0.5)
    assert got2["nnodes"] == "2" and got2["job"] == two.remote_id
    script = open(os.path.join(rm.settings.script_dir, os.listdir(rm.settings.script_dir)[0]))
    assert "#SBATCH --partition=debug" in script.read()
    failing = FunctionJob("slurm-boom", boom, args=("key",), environ=lab_env)
    failing.start({"max_time": "2m"}, system=system)
    with pytest.raises(KeyError, match="missing key") as err:
        failing.get_results(timeout=120, check_interval=0.5)
    assert "in boom" in err.value.__cause__.text


def test_function_job_on_a_crashed_node_dies(slurm, rm, lab_env):
    system = RMSystem("lab", rm)
    job = FunctionJob("slurm-crash", sleepy, args=(300,), environ=lab_env)
    # Slurm requeues a batch job whose node failed (the function then simply runs again);
    # without requeue the end is NODE_FAIL, and the job died
    job.start({"max_time": "10m", "nodes": 1}, system=system, header_extra=["--no-requeue"])
    slurm.wait_job(job.remote_id, "RUNNING", 60)
    node = slurm.job_fields(job.remote_id)["NodeList"]
    assert node in LAB_NODES
    slurm.lab("crash", node)
    with pytest.raises(JobDiedError, match="node_fail"):
        job.get_results(timeout=180, check_interval=1.0)
    assert job.db.get(job.id)["status"] == "died"


def test_scheduler_api_states_and_chunks(slurm, rm, tmp_path):
    out = str(tmp_path / "slurm-%j.out")  # not Slurm's default: the cwd (the checkout)
    assert scheduler.available(rm)
    nodes = scheduler.inventory(rm, "debug")
    assert scheduler.auto_size(nodes, "all", partition="debug") == 4
    assert scheduler.partition_chunks(rm, "debug", chunks=2) == [["n1", "n2"], ["n3", "n4"]]
    assert scheduler.partition_chunks(rm, "debug", chunks=2, selection="distributed") == \
        [["n1", "n3"], ["n2", "n4"]]
    held = scheduler.submit(rm, scheduler.make_request(
        ["sleep", "300"], wrap=False, job_name="scr-held", nodes=1, time_limit=600,
        output=out),
        hold=True)
    run = scheduler.submit(rm, scheduler.make_request(
        ["sleep", "300"], wrap=False, job_name="scr-run", nodes=1, time_limit=600,
        output=out))
    fails = scheduler.submit(rm, scheduler.make_request(
        ["sh", "-c", "exit 4"], wrap=False, job_name="scr-fail", nodes=1, time_limit=600,
        output=out))
    slurm.wait_job(run.job_id, "RUNNING", 60)
    st = scheduler.wait(rm, [fails.job_id], timeout=90, interval=0.5)
    assert st[fails.job_id].state == JobState.FAILED
    st = scheduler.status(rm, [held.job_id, run.job_id, fails.job_id])
    assert st[held.job_id].state == JobState.PENDING
    assert st[run.job_id].state == JobState.RUNNING
    for jid in (held.job_id, run.job_id):
        scheduler.cancel(rm, jid)
    st = scheduler.wait(rm, [held.job_id, run.job_id], timeout=60, interval=0.5)
    assert {s.state for s in st.values()} == {JobState.CANCELLED}


SCRIPT = textwrap.dedent("""\
    import json, socket, sys, time
    from scr_core.funcjobs import FunctionJob

    def slow_host(delay):
        time.sleep(delay)
        return socket.gethostname()

    if __name__ == "__main__":
        job = FunctionJob("slurm-reattach", slow_host, args=(float(sys.argv[1]),),
                          hash_ignore=[0])
        print(json.dumps({"id": job.id, "recreated": job.recreated}), flush=True)
        job.start({"max_time": "5m", "nodes": 1}, system="lab")
        print(json.dumps({"remote_id": job.remote_id}), flush=True)
        print(json.dumps({"result": job.get_results(timeout=180, check_interval=0.5)}),
              flush=True)
    """)


def test_reattach_to_a_slurm_function_job_from_a_new_process(slurm, lab_env, tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("slurm:\n" + "".join(
        f"  {cmd}: {slurm.client(cmd)}\n"
        for cmd in ("sinfo", "squeue", "scontrol", "sbatch", "scancel", "sacct", "srun"))
        + f"  script_dir: {tmp_path / 'batch'}\n")
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    (root / "systems.yaml").write_text(
        "systems:\n  lab: {host: local, scheduler: slurm}\n")
    env = dict(lab_env, SCR_SETTINGS_FILE=str(settings))
    script = tmp_path / "reattach.py"
    script.write_text(SCRIPT)
    first = subprocess.Popen([sys.executable, str(script), "20"], env=env,
                             stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    created = json.loads(first.stdout.readline())
    started = json.loads(first.stdout.readline())
    first.kill()
    first.wait(timeout=30)
    first.stdout.close()
    second = subprocess.run([sys.executable, str(script), "0"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr
    lines = [json.loads(x) for x in second.stdout.splitlines()]
    assert lines[0] == {"id": created["id"], "recreated": True}
    assert lines[1] == started
    assert lines[2]["result"] in LAB_NODES


@pytest.mark.slow
def test_function_job_is_rerun_after_slurm_requeues_it(slurm, rm, lab_env):
    """Slurm's default: a batch job whose node failed is requeued, and runs again on a
    healthy node; the function job just gets its result from the rerun."""
    system = RMSystem("lab", rm)
    job = FunctionJob("slurm-requeue", where_after, args=(8,), environ=lab_env)
    job.start({"max_time": "10m", "nodes": 1}, system=system)
    slurm.wait_job(job.remote_id, "RUNNING", 60)
    node = slurm.job_fields(job.remote_id)["NodeList"]
    time.sleep(1)
    slurm.lab("crash", node)
    got = job.get_results(timeout=400, check_interval=1.0)
    assert got["host"] in LAB_NODES and got["host"] != node
    assert job.db.get(job.id)["status"] == "succeeded"
