"""Issue 5's contract: the whole ``scr run`` loop on LSF (jsrun, lrun) and Flux (flux run),
driven through the executable test doubles in tests/doubles (real processes, a node failure
mid-step, a relaunch that must exclude the dead node)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

DOUBLES = Path(__file__).parent / "doubles"

# First run: every task marks its node started and waits (to be killed by the node failure).
# Later runs: record the node and exit 0.
APP = ('if ls "$P"/started.* >/dev/null 2>&1 && [ -e "$P/failed" ]; then '
       'touch "$P/second.$SCR_DOUBLE_NODE"; exit 0; fi; '
       'touch "$P/started.$SCR_DOUBLE_NODE"; sleep 60')


def setup_state(tmp_path, nodes):
    state = tmp_path / "state"
    (state / "down").mkdir(parents=True)
    (state / "nodes").write_text("".join(f"{n}\n" for n in nodes))
    return state


def calls(state, cmd):
    out = []
    for line in (state / "log").read_text().splitlines():
        rec = json.loads(line)
        if rec["cmd"] == cmd:
            out.append(rec["argv"])
    return out


def run_with_failure(env, prefix, state, argv, dead, down_word):
    proc = subprocess.Popen([sys.executable, "-m", "scr_core", "run", *argv], env=env,
                            cwd=prefix, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.time() + 60
        while not (prefix / f"started.{dead}").exists():
            assert time.time() < deadline and proc.poll() is None, proc.communicate()[0]
            time.sleep(0.05)
        (prefix / "failed").touch()
        (state / "down" / dead).write_text(f"{down_word}\n")
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, out


@pytest.fixture
def env(scr_env, tmp_path):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    return dict(scr_env, P=str(prefix), SCR_RUNS="3", SCR_MIN_NODES="2",
                SCR_NODE_TESTS="none"), prefix


@pytest.mark.parametrize("launcher, exclude_arg", [("jsrun", "--exclude_hosts=n2"),
                                                   ("lrun", "--exclude_hosts=n2")])
def test_lsf_node_failure_then_relaunch_excluding_it(env, tmp_path, launcher, exclude_arg):
    env, prefix = env
    state = setup_state(tmp_path, ["n1", "n2", "n3"])
    env = dict(env, PATH=f"{DOUBLES / 'lsf'}{os.pathsep}{env['PATH']}",
               SCR_DOUBLE_STATE=str(state), LSB_JOBID="42", LSB_MCPU_HOSTS="n1 1 n2 1 n3 1")
    rc, out = run_with_failure(env, prefix, state, [launcher, "sh", "-c", APP], "n2", "unavail")
    assert rc == 0, out
    assert "node n2 is down" in out
    steps = calls(state, launcher)
    assert len(steps) == 2, steps
    assert not any("exclude" in a for a in steps[0])
    assert exclude_arg in steps[1]
    assert sorted(p.name for p in prefix.glob("second.*")) == ["second.n1", "second.n3"]


def test_flux_node_failure_then_relaunch_excluding_it(env, tmp_path):
    env, prefix = env
    state = setup_state(tmp_path, ["n1", "n2", "n3"])
    (state / "attr").mkdir()
    (state / "attr" / "jobid").write_text("ƒ2\n")
    env = dict(env, PATH=f"{DOUBLES / 'flux'}{os.pathsep}{env['PATH']}",
               SCR_DOUBLE_STATE=str(state), FLUX_URI=f"local://{tmp_path}/flux-sock")
    argv = ["flux", "run", "-N", "3", "sh", "-c", APP]
    rc, out = run_with_failure(env, prefix, state, argv, "n2", "offline")
    assert rc == 0, out
    assert "node n2 is down" in out
    flux_calls = [a for a in calls(state, "flux") if a[:1] in (["run"], ["submit"])]
    assert len(flux_calls) == 2, flux_calls
    assert any(a.startswith("--requires=-host:n2") for a in flux_calls[1]), flux_calls[1]
    assert sorted(p.name for p in prefix.glob("second.*")) == ["second.n1", "second.n3"]
