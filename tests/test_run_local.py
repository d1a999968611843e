"""End to end: ``scr run local ...`` with the demo app, real processes and real failures."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

DEMO = [sys.executable, "-m", "scr_core.demo", "--step-seconds", "0.05", "--ckpt-every", "5",
        "--size-kb", "4"]


def scr(*args):
    return [sys.executable, "-m", "scr_core", *args]


def run_scr(env, *args, timeout=120):
    return subprocess.run(scr(*args), env=env, capture_output=True, text=True, timeout=timeout)


def alloc_run(env, prefix, nodes, run_args, time_limit=None, timeout=120):
    """`scr local alloc -N nodes -- scr run local ...` with the prefix as cwd."""
    extra = ["-t", time_limit] if time_limit else []
    return subprocess.run(
        scr("local", "alloc", "-N", str(nodes), *extra, "--", *scr("run", "local", *run_args)),
        env=env, cwd=prefix, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def prefix(tmp_path):
    p = tmp_path / "prefix"
    p.mkdir()
    return p


def test_node_dies_then_relaunch_on_survivors_and_resume(scr_env, prefix):
    env = dict(scr_env, SCR_RUNS="3", SCR_MIN_NODES="3")
    r = alloc_run(env, prefix, 4, ["-N", "4", *DEMO, "--steps", "30",
                                   "--crash-node-at-step", "12"])
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    # found by the step watch while the step ran (issue 17)
    assert "node vnode4 is dead: step watch, resource manager: Not responding (node crashed)" in out
    assert "excluding vnode4" in out
    assert "restarting from checkpoint ckpt.10" in out
    assert "running on 3" in out
    assert "finished all 30 steps" in out
    assert (prefix / "ckpt.30").is_dir()


def test_too_few_nodes_left_stops_with_code_11(scr_env, prefix):
    env = dict(scr_env, SCR_RUNS="3", SCR_MIN_NODES="4")
    r = alloc_run(env, prefix, 4, ["-N", "4", *DEMO, "--steps", "30",
                                   "--crash-node-at-step", "8"])
    assert r.returncode == 11, r.stdout + r.stderr
    assert "only 3 healthy node(s) left, 4 needed" in r.stderr


def test_app_failure_without_runs_left_is_code_1(scr_env, prefix):
    r = alloc_run(dict(scr_env, SCR_RUNS="2"), prefix, 2, ["sh", "-c", "exit 3"])
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("ended with exit code 3") == 2
    assert "stopping: no runs left" in r.stderr


def test_scr_enable_0_runs_plainly(scr_env, prefix, tmp_path):
    # Both tasks wait for each other before failing: a failing task ends the step, and the
    # other must have printed by then for the count to mean "one run, two tasks".
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    task = ('echo plain; touch "$0/$$"; n=0; '
            'while [ "$(ls "$0" | wc -l)" -lt 2 ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); '
            'done; exit 4')
    r = alloc_run(dict(scr_env, SCR_ENABLE="0", SCR_RUNS="5"), prefix, 2,
                  ["-N", "2", "sh", "-c", task, str(barrier)])
    assert r.returncode == 4
    assert r.stdout.count("plain") == 2  # one run, two tasks
    assert not (prefix / ".scr").exists()


def _start(env, prefix, nodes, run_args, time_limit=None):
    extra = ["-t", time_limit] if time_limit else []
    return subprocess.Popen(
        scr("local", "alloc", "-N", str(nodes), *extra, "--", *scr("run", "local", *run_args)),
        env=env, cwd=prefix, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_checkpoint(prefix, timeout=60):
    deadline = time.time() + timeout
    while not (prefix / ".scr" / "index.scr").exists():
        assert time.time() < deadline, "the demo wrote no checkpoint"
        time.sleep(0.05)


@pytest.mark.parametrize("halt_args, extra_env, time_limit, expect", [
    (["--checkpoints", "1"], {}, None, "CheckpointsLeft"),
    (["--after", "now"], {}, None, "ExitAfter"),
    (["--before", "+5s", "--seconds", "10"], {}, None, "ExitBefore"),
    # 60 s allocation: time left drops to HaltSeconds about 4 s into the run
    (["--seconds", "56"], {}, "60", "left in the allocation"),
    (None, {"SCR_HALT_SECONDS": "56"}, "60", "left in the allocation"),
])
def test_halt_while_running(scr_env, prefix, halt_args, extra_env, time_limit, expect):
    env = dict(scr_env, **extra_env)
    proc = _start(env, prefix, 2, ["-N", "2", *DEMO, "--steps", "400"], time_limit)
    try:
        if halt_args is not None:
            _wait_for_checkpoint(prefix)
            r = run_scr(env, "halt", *halt_args, str(prefix))
            assert r.returncode == 0, r.stdout + r.stderr
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 10, out
    assert "halting at step" in out
    assert expect.lower() in out.lower()
    assert "finished all" not in out


def test_halt_immediate_stops_the_running_step(scr_env, prefix):
    proc = _start(scr_env, prefix, 2, ["-N", "2", *DEMO, "--steps", "4000",
                                       "--ckpt-every", "1000"])
    try:
        time.sleep(1.5)
        t0 = time.time()
        r = run_scr(scr_env, "halt", "--immediate", str(prefix))
        assert r.returncode == 0, r.stdout + r.stderr
        out, _ = proc.communicate(timeout=60)
        assert time.time() - t0 < 15
    finally:
        proc.kill()
    assert proc.returncode == 10, out
    assert "killing the job step (scr_halt --immediate)" in out
    assert "halt condition: ExitReason" in out or "JOB_HALTED" in out


def test_watchdog_kills_a_hung_step(scr_env, prefix):
    env = dict(scr_env, SCR_WATCHDOG="1", SCR_WATCHDOG_TIMEOUT="3", SCR_RUNS="2")
    r = alloc_run(env, prefix, 2, ["-N", "2", *DEMO, "--steps", "20", "--hang-at-step", "12"])
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "watchdog: no progress" in out
    assert "restarting from checkpoint ckpt.10" in out


def test_watchdog_does_not_kill_a_job_before_its_first_checkpoint(scr_env, prefix):
    # first checkpoint after ~1.5 s, timeout 3 s: measured from the start, never killed
    env = dict(scr_env, SCR_WATCHDOG="1", SCR_WATCHDOG_TIMEOUT="3")
    r = alloc_run(env, prefix, 1, [*DEMO, "--steps", "30", "--step-seconds", "0.1",
                                   "--ckpt-every", "15"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "watchdog" not in r.stderr


def test_unlimited_runs_are_bounded_by_halt(scr_env, prefix):
    env = dict(scr_env, SCR_RUNS="-1", SCR_RUN_SETTLE_SECONDS="0.2")
    proc = _start(env, prefix, 1, ["sh", "-c", "sleep 0.1; exit 5"])
    try:
        time.sleep(3)
        assert proc.poll() is None  # still relaunching: -1 is unlimited, unlike SCR
        r = run_scr(env, "halt", str(prefix))
        assert r.returncode == 0
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 10, out
    assert out.count("ended with exit code 5") >= 3


def test_restart_command_gets_the_checkpoint_name(scr_env, prefix):
    # first run writes a checkpoint and fails; the second must get -rs with the name
    run_cmd = " ".join([*DEMO, "--steps", "12", "--fail-at-step", "7"])
    restart = "sh -c 'echo RESTART-WITH SCR_CKPT_NAME'"
    r = alloc_run(dict(scr_env, SCR_RUNS="2"), prefix, 1, ["-rc", run_cmd, "-rs", restart])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RESTART-WITH ckpt.5" in r.stdout


def test_log_records_runs_and_failures(scr_env, prefix):
    env = dict(scr_env, SCR_RUNS="3", SCR_LOG_ENABLE="1", SCR_MIN_NODES="2")
    r = alloc_run(env, prefix, 3, ["-N", "3", *DEMO, "--steps", "15",
                                   "--crash-node-at-step", "7"])
    assert r.returncode == 0, r.stderr
    from scr_core.scrlog import parse_file

    events = [rec.label for rec in parse_file(str(prefix / ".scr" / "log"))]
    assert events.count("RUN_START") == 2 and events.count("RUN_END") == 2
    assert "NODE_FAIL" in events


def test_not_in_an_allocation_is_one_line_and_code_5(scr_env, prefix):
    r = run_scr(scr_env, "should-exit")
    assert r.returncode == 5, r.stderr  # an error never reads as "keep running" (1)
    r = run_scr(dict(scr_env, SCR_RESOURCE_MANAGER="local"), "list-dir", "control")
    assert r.returncode == 5
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
