"""``scr_run srun ...`` end to end on the real Slurm lab (issue 4's proof).

Jobs are real ``sbatch --no-kill`` jobs on the lab's 4 nodes; their batch scripts run
``scr run srun ...`` on n1 with the project's venv (``/work`` and ``/tmp`` are shared with the
lab nodes; ``/dev/shm`` is private per node, as node-local cache is). Failures are real: a
node crash (``lab crash``: slurmd and tasks die, Slurm marks it down), an admin drain, a
short time limit, ``scr halt --immediate`` from outside the job.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scr_plugins_slurm import parse

pytestmark = pytest.mark.slurm

PY = sys.executable
DEMO = f"{PY} -m scr_core.demo --step-seconds 0.1 --ckpt-every 10 --size-kb 4"


def submit(slurm, tmp_path: Path, body: str, *sbatch_args: str, name: str = "job") -> tuple:
    """Submit a batch script (fixed text + this test's paths) -> (job id, output path)."""
    out = tmp_path / f"{name}.out"
    script = tmp_path / f"{name}.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    proc = slurm.run(["sbatch", "--parsable", "--no-kill", *sbatch_args, f"--output={out}",
                      str(script)], timeout=30)
    return parse.parse_sbatch_parsable(proc.stdout), out


def finish(slurm, jid: str, out: Path, timeout: float = 240) -> str:
    state = slurm.wait_job(jid, "COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|", timeout)
    return f"[job {state or 'gone'}]\n" + (out.read_text() if out.exists() else "")


def wait_file(path: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def exit_code(text: str) -> int:
    m = re.search(r"^SCR_RUN_EXIT=(\d+)$", text, re.M)
    assert m, text
    return int(m.group(1))


def env_lines(prefix: Path, node_tests: bool = False, **extra: str) -> str:
    """Exports for the batch script; the node tests are off unless the test is about them
    (they add seconds per check and the RM already knows about crashed/drained nodes)."""
    values = {"SCR_PREFIX": str(prefix), "SCR_RUN_SETTLE_SECONDS": "2",
              **({} if node_tests else {"SCR_NODE_TESTS": "none"}), **extra}
    return "".join(f"export {k}='{v}'\n" for k, v in values.items())


def test_node_crash_relaunch_with_exclude_and_resume(slurm, tmp_path):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    body = (env_lines(prefix, SCR_RUNS="3", SCR_MIN_NODES="3") +
            f"{PY} -m scr_core run srun -N4 {DEMO} --steps 300\n"
            "echo SCR_RUN_EXIT=$?\n"
            f"{PY} -m scr_core list-down-nodes --reason\n")
    jid, out = submit(slurm, tmp_path, body, "-N4", "-t", "10")
    wait_file(prefix / ".scr" / "index.scr", 90, "the first checkpoint")
    slurm.lab("crash", "n4")
    text = finish(slurm, jid, out)
    assert exit_code(text) == 0, text
    assert "node n4 is dead: step watch, ping: Failed to ping" in text  # found mid-step
    assert "excluding n4" in text and "fitted the launcher arguments to the 3 node(s)" in text
    assert re.search(r"restarting from checkpoint ckpt\.\d+", text), text
    assert "finished all 300 steps" in text
    assert re.search(r"^n4: .*not responding", text, re.M | re.I), text


def test_default_node_tests_exclude_a_node_slurm_thinks_is_fine(slurm, tmp_path):
    """Nothing configured: the default node tests (ping, echo, dir_capacity) run through the
    job's launcher (srun -N1 -w NODE, no ssh) and catch a node whose cache file system is
    full, which Slurm does not know about; scr_run excludes it and runs on the other 3."""
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    fill = "/dev/shm/scr-test-fill"
    # n2's private /dev/shm (the default cache base) is filled up: writes fail with ENOSPC
    slurm.lab("on", "n2", "sh", "-c", f"cat /dev/zero > {fill} 2>/dev/null; true")
    try:
        body = (env_lines(prefix, node_tests=True, SCR_MIN_NODES="3") +
                f"{PY} -m scr_core list-down-nodes --reason -j srun; echo LIST_EXIT=$?\n"
                f"{PY} -m scr_core run srun -N4 {DEMO} --steps 20\n"
                "echo SCR_RUN_EXIT=$?\n")
        jid, out = submit(slurm, tmp_path, body, "-N4", "-t", "10")
        text = finish(slurm, jid, out, timeout=300)
    finally:
        slurm.lab("on", "n2", "rm", "-f", fill)
    print(text)  # shown with pytest -s
    assert "LIST_EXIT=0" in text, text
    assert re.search(r"^n2: Failed dir check: .*(No space|space)", text, re.M | re.I), text
    assert not re.search(r"^n[134]: ", text, re.M), text  # the healthy nodes passed all tests
    assert exit_code(text) == 0, text
    assert "run 1 of 1 on 3 node(s), excluding n2" in text
    assert "finished all 20 steps" in text


def test_drained_node_excluded_before_first_launch_and_min_nodes(slurm, tmp_path):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    go = tmp_path / "go"
    body = (env_lines(prefix) +
            f"while [ ! -e {go} ]; do sleep 0.2; done\n"
            f"{PY} -m scr_core should-exit --min-nodes 4; echo SHOULD_EXIT_4=$?\n"
            f"{PY} -m scr_core should-exit --min-nodes 3; echo SHOULD_EXIT_3=$?\n"
            f"SCR_MIN_NODES=3 {PY} -m scr_core run srun -N4 {DEMO} --steps 20\n"
            "echo SCR_RUN_EXIT=$?\n")
    jid, out = submit(slurm, tmp_path, body, "-N4", "-t", "10")
    slurm.wait_job(jid, "RUNNING", 60)
    slurm.run(["scontrol", "update", "nodename=n2", "state=drain", "reason=scr drain test"])
    go.touch()
    text = finish(slurm, jid, out)
    assert "SHOULD_EXIT_4=0" in text and "SHOULD_EXIT_3=1" in text, text
    assert exit_code(text) == 0, text
    assert re.search(r"node n2 is down: .*scr drain test", text), text
    assert "run 1 of 1 on 3 node(s), excluding n2" in text
    assert "finished all 20 steps" in text


def test_time_left_halt_on_a_short_allocation(slurm, tmp_path):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    # a 1-minute allocation: time left falls to HaltSeconds (50 s) about 10 s in
    body = (env_lines(prefix, SCR_HALT_SECONDS="50") +
            f"{PY} -m scr_core run srun -N2 {DEMO} --steps 3000\n"
            "echo SCR_RUN_EXIT=$?\n")
    jid, out = submit(slurm, tmp_path, body, "-N2", "-t", "1")
    text = finish(slurm, jid, out, timeout=120)
    assert exit_code(text) == 10, text
    assert "seconds left in the allocation" in text
    assert "halting at step" in text


def test_halt_immediate_stops_the_running_step(slurm, tmp_path):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    body = (env_lines(prefix, SCR_RUNS="3") +
            f"{PY} -m scr_core run srun -N2 {DEMO} --steps 100000 --ckpt-every 20\n"
            "echo SCR_RUN_EXIT=$?\n")
    jid, out = submit(slurm, tmp_path, body, "-N2", "-t", "10")
    wait_file(prefix / ".scr" / "index.scr", 90, "the first checkpoint")
    r = subprocess.run([PY, "-m", "scr_core", "halt", "--immediate", str(prefix)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text = finish(slurm, jid, out, timeout=120)
    assert exit_code(text) == 10, text
    assert "killing the job step (scr_halt --immediate)" in text
    assert "run 2" not in text


def test_list_down_nodes_agrees_with_sinfo(slurm, tmp_path):
    jid = slurm.salloc("--no-kill", "-N4", "-t", "10")
    slurm.run(["scontrol", "update", "nodename=n2", "state=drain", "reason=agree test"])
    slurm.lab("crash", "n3")
    slurm.wait_node("n3", r"down\*|idle\*|drain\*|mixed\*|allocated\*", 90)
    settings = tmp_path / "settings.yaml"
    settings.write_text("slurm:\n" + "".join(
        f"  {c}: {slurm.client(c)}\n" for c in ("sinfo", "squeue", "scontrol", "srun")))
    env = slurm.job_env(jid, SCR_SETTINGS_FILE=str(settings), SCR_NODE_TESTS="none",
                        PATH=f"{Path(PY).parent}:/usr/bin:/bin")
    r = subprocess.run([PY, "-m", "scr_core", "list-down-nodes", "--reason"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ours = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    sinfo = slurm.run(["sinfo", "-h", "-N", "-n", "n[1-4]", "-o", "%N|%T|%E"]).stdout
    theirs = {n: (s, reason) for n, s, reason in
              (line.split("|", 2) for line in sinfo.splitlines())}
    assert set(ours) == {"n2", "n3"}, (ours, theirs)
    assert "agree test" in ours["n2"] and theirs["n2"][1] == "agree test"
    assert theirs["n3"][0].endswith("*") and "not responding" in ours["n3"].lower()
    assert theirs["n1"][0] in ("allocated", "mixed") and "n1" not in ours


def test_mpi_job_crash_relaunch_and_resume(slurm, tmp_path):
    """The same story with a real MPI job: Open MPI through srun --mpi=pmix."""
    pytest.importorskip("mpi4py")
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    app = Path(__file__).parent / "apps" / "mpi_ckpt.py"
    body = (env_lines(prefix, SCR_RUNS="3", SCR_MIN_NODES="3") +
            f"{PY} -m scr_core run srun -N4 --ntasks-per-node=1 --mpi=pmix "
            f"{PY} {app} 400 10 0.1\n"
            "echo SCR_RUN_EXIT=$?\n")
    jid, out = submit(slurm, tmp_path, body, "-N4", "-t", "10")
    wait_file(prefix / "mpi_ckpt.json", 120, "the first MPI checkpoint")
    slurm.lab("crash", "n3")
    text = finish(slurm, jid, out)
    assert exit_code(text) == 0, text
    assert "Open MPI" in text
    # found mid-step by the step watch (issue 17): the survivors block in MPI until then
    assert "node n3 is dead: step watch, ping: Failed to ping" in text, text
    assert "excluding n3" in text
    assert re.search(r"mpi: starting at step [1-9]\d* with 3 ranks", text), text
    assert "mpi: finished 400 steps on 3 ranks" in text


def test_kill_jobstep_kills_the_right_step(slurm, tmp_path):
    jid = slurm.salloc("--no-kill", "-N2", "-t", "10")
    env = slurm.env()
    steps = [subprocess.Popen([slurm.client("srun"), f"--jobid={jid}", "--overlap", "-N1",
                               "-n1", "-J", f"step{i}", "sleep", "300"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(2)]
    try:
        deadline = time.monotonic() + 30
        ids: dict = {}
        while len(ids) < 2:
            assert time.monotonic() < deadline, "steps did not start"
            out = slurm.run(["squeue", "-h", "--steps", "-j", jid, "-o", "%i|%j"]).stdout
            ids = {name: sid for sid, name in (line.split("|") for line in out.split())
                   if name in ("step0", "step1")}
            time.sleep(0.2)
        settings = tmp_path / "settings.yaml"
        settings.write_text(f"slurm:\n  scancel: {slurm.client('scancel')}\n")
        r = subprocess.run([PY, "-m", "scr_core", "kill-jobstep", "-l", "srun", "-j",
                            ids["step1"]], env=dict(env, SCR_SETTINGS_FILE=str(settings)),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        steps[1].wait(timeout=30)
        time.sleep(1)
        assert steps[0].poll() is None, "the other step must keep running"
        out = slurm.run(["squeue", "-h", "--steps", "-j", jid, "-o", "%i"]).stdout.split()
        assert ids["step0"] in out and ids["step1"] not in out
    finally:
        for p in steps:
            p.kill()


def test_scr_submit_resilient_job_survives_a_node_crash(slurm, tmp_path):
    """The batch path in one command: `scr submit` writes and submits the job (--no-kill on
    by default, body `scr run srun ...`); a node crash mid-run is survived; `scr jobs status`
    reports the job completed."""
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    out = tmp_path / "submitted.out"
    # Our side reaches slurmctld through the lab's client wrappers (settings file); the job
    # itself runs on n1 where the plain clients work, so it gets a settings file without them.
    lab_conf = tmp_path / "lab.yaml"
    lab_conf.write_text("slurm:\n" + "".join(
        f"  {c}: {slurm.client(c)}\n" for c in ("sbatch", "squeue", "scontrol", "scancel",
                                               "sacct", "sinfo")))
    job_conf = tmp_path / "job.yaml"
    job_conf.write_text("{}\n")
    env = slurm.env(PATH=os.path.dirname(PY) + os.pathsep + os.environ.get("PATH", ""),
                    HOME=str(tmp_path), SCR_PREFIX=str(prefix), SCR_RUN_SETTLE_SECONDS="2",
                    SCR_NODE_TESTS="none", SCR_SETTINGS_FILE=str(lab_conf))
    r = subprocess.run(
        [PY, "-m", "scr_core", "submit", "--rm", "slurm", "-N", "4", "-t", "10m",
         "-J", "scr-resilient", "-o", str(out), "--env", "SCR_MIN_NODES=3",
         "--env", "SCR_RUNS=3", "--env", f"SCR_SETTINGS_FILE={job_conf}", "--json",
         "--", "srun", "-N4", *DEMO.split(), "--steps", "300"],
        env=env, cwd=prefix, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    jid = record["job_id"]
    script = Path(record["script"]).read_text()
    assert "#SBATCH --no-kill" in script and " run srun -N4 " in script, script
    wait_file(prefix / ".scr" / "index.scr", 90, "the first checkpoint")
    slurm.lab("crash", "n4")
    deadline = time.monotonic() + 240
    while True:
        st = subprocess.run([PY, "-m", "scr_core", "jobs", "status", "--rm", "slurm", jid,
                             "--json"], env=env, capture_output=True, text=True, timeout=60)
        assert st.returncode == 0, st.stderr
        state = json.loads(st.stdout)[jid]["state"]
        if state not in ("pending", "running") or time.monotonic() > deadline:
            break
        time.sleep(1)
    text = out.read_text() if out.exists() else ""
    assert state == "completed", f"{state}\n{text}"
    # found mid-step by the step watch (issue 17)
    assert "node n4 is dead: step watch, ping: Failed to ping" in text, text
    assert "excluding n4" in text, text
    assert "finished all 300 steps" in text, text
