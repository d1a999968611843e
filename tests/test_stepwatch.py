"""The in-step health watch (issue 17): verdicts from probes, parameters, the bounded kill,
and ``scr run local`` catching a crashed virtual node while the step runs.

The lab proof (SlurmdTimeout=300, MPI and non-MPI jobs, no false positives) is
tests/test_stepwatch_slurm.py; the Flux and LSF ``lost_nodes`` declarations are tested with
their doubles in test_flux.py / test_lsf.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from scr_core.engine.stepwatch import (
    StepWatch,
    WatchConfig,
    check_watch_params,
    kill_step,
    watch_config,
)
from scr_core.errors import ConfigError, NotSupportedError
from scr_core.params import Params


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Spec:
    def __init__(self, name, in_step=True, default=True):
        self.name, self.in_step, self.default, self.order, self.settings = (
            name, in_step, default, 10, None)


class Registry:
    def __init__(self, specs):
        self._specs = specs

    def specs(self, kind):
        assert kind == "node_test"
        return {s.name: type("Rec", (), {"spec": s})() for s in self._specs}


class Job:
    """What StepWatch reads of a JobEnv: the RM, the registry (no in-step tests here: the
    tests inject their probes), params."""

    def __init__(self, rm=None, specs=(), environ=None):
        self.resource_manager = rm or object()
        self.registry = Registry(list(specs))
        self.params = Params(prefix="/nonexistent", environ=environ or {})


def watch(probes, failures=3, window=5.0, nodes=("n1", "n2", "n3")):
    clock = Clock()
    w = StepWatch(Job(), lambda: list(nodes), WatchConfig(True, 1.0, failures, window),
                  warn=lambda m: warnings.append(m), clock=clock)
    w.probes = dict(probes)
    return w, clock


warnings: list = []


def rounds(w, clock, n, step=1.0):
    for _ in range(n):
        w.round()
        clock.now += step


def test_dead_only_after_failures_spanning_the_window():
    w, clock = watch({"ping": lambda nodes: {"n2": "no reply"}})
    rounds(w, clock, 5)  # 5 failures, but they span 4 s < 5 s
    assert w.dead() == {}
    rounds(w, clock, 1)  # the 6th failed probe answers 5 s after the first one started
    assert list(w.dead()) == ["n2"]
    assert w.dead()["n2"].startswith("step watch, ping: no reply (6 failed probes over 5.0 s)")


def test_failure_count_matters_as_well_as_the_window():
    w, clock = watch({"ping": lambda nodes: {"n2": "no reply"}}, failures=4, window=0.0)
    rounds(w, clock, 3, step=10.0)
    assert w.dead() == {}
    rounds(w, clock, 1)
    assert list(w.dead()) == ["n2"]


def test_one_good_answer_resets_the_streak():
    # an outage shorter than the window, or a flaky answer, never adds up
    answers = iter([True, True, True, True, False] * 3 + [True, True, False] * 5)
    w, clock = watch({"ping": lambda nodes: {"n2": "no reply"} if next(answers) else {}})
    rounds(w, clock, 30)
    assert w.dead() == {}


def test_resource_manager_lost_node_is_dead_at_once():
    w, clock = watch({"resource manager": lambda nodes: {"n3": "Not responding"},
                      "ping": lambda nodes: {}})
    rounds(w, clock, 1)
    assert w.dead() == {"n3": "step watch, resource manager: Not responding"}


def test_probe_errors_and_hangs_give_no_verdict_and_do_not_block():
    warnings.clear()
    release = threading.Event()

    def hangs(nodes):
        release.wait(30)
        return {"n1": "late"}

    def raises(nodes):
        raise RuntimeError("probe broke")

    w, clock = watch({"hang": hangs, "broken": raises})
    w.probe_limit = 0.2
    t0 = time.monotonic()
    rounds(w, clock, 8)
    assert time.monotonic() - t0 < 5  # the busy probe is skipped, not waited for each round
    assert w.dead() == {}
    assert any("'broken' gave no verdict" in m for m in warnings)
    assert len([m for m in warnings if "'broken'" in m]) == 1  # said once
    release.set()


def test_rm_without_lost_nodes_is_not_probed_and_not_supported_drops_it():
    class OldRm:  # a third-party RM written before lost_nodes existed
        name = "old"

    assert StepWatch(Job(rm=OldRm()), lambda: ["n1"], WatchConfig()).probes == {}

    from scr_core.interfaces import ResourceManager

    class Base(ResourceManager):
        def job_id(self): return "1"
        def job_nodes(self): return ["n1"]
        def down_nodes(self): return {}
        def end_time(self): return 0

    class Refuses(Base):
        def lost_nodes(self, nodes):
            raise NotSupportedError("cannot tell")

    assert StepWatch(Job(rm=Base(_ctx())), lambda: ["n1"], WatchConfig()).probes == {}
    w = StepWatch(Job(rm=Refuses(_ctx())), lambda: ["n1"], WatchConfig(), clock=Clock())
    assert list(w.probes) == ["resource manager"]
    w.round()
    assert w.probes == {} and w.dead() == {}


def _ctx():
    from scr_core.interfaces import BackendContext

    return BackendContext(environ={})


def test_parameters_defaults_and_errors():
    c = watch_config(Params(prefix="/nonexistent", environ={}))
    assert (c.enabled, c.interval, c.failures, c.window, c.tests) == (True, 1.0, 3, 5.0, None)
    c = watch_config(Params(prefix="/nonexistent", environ={
        "SCR_WATCH": "0", "SCR_WATCH_INTERVAL": "2", "SCR_WATCH_FAILURES": "5",
        "SCR_WATCH_WINDOW": "30", "SCR_WATCH_TESTS": "ping"}))
    assert (c.enabled, c.interval, c.failures, c.window, c.tests) == (False, 2.0, 5, 30.0,
                                                                       ["ping"])
    for name, value, what in (("SCR_WATCH_FAILURES", "0", "at least 1"),
                              ("SCR_WATCH_INTERVAL", "0", "at least 0.05"),
                              ("SCR_WATCH_WINDOW", "soon", "a duration"),
                              ("SCR_WATCH", "maybe", "a boolean")):
        with pytest.raises(ConfigError, match=what):
            watch_config(Params(prefix="/nonexistent", environ={name: value}))
    specs = [Spec("ping"), Spec("echo", in_step=False)]
    check_watch_params(Job(specs=specs))
    with pytest.raises(ConfigError, match=r"'echo' .* not declared fit .*such tests: ping"):
        check_watch_params(Job(specs=specs, environ={"SCR_WATCH_TESTS": "echo"}))
    with pytest.raises(ConfigError, match="unknown node test 'nope'"):
        check_watch_params(Job(specs=specs, environ={"SCR_WATCH_TESTS": "nope"}))
    check_watch_params(Job(specs=specs, environ={"SCR_WATCH": "0", "SCR_WATCH_TESTS": "echo"}))


def test_registered_ping_is_the_default_in_step_test():
    from scr_core.engine.stepwatch import in_step_tests
    from scr_core.plugins import get_registry

    job = Job()
    job.registry = get_registry()
    assert [s.name for s in in_step_tests(job, None)] == ["ping"]


def test_scr_config_shows_the_watch_parameters(scr_env, tmp_path):
    out = subprocess.run([sys.executable, "-m", "scr_core", "config"], env=scr_env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for name in ("SCR_WATCH", "SCR_WATCH_INTERVAL", "SCR_WATCH_FAILURES", "SCR_WATCH_WINDOW",
                 "SCR_WATCH_TESTS", "SCR_RUN_KILL_GRACE_SECONDS"):
        assert name in out.stdout, name


# --------------------------------------------------------------------------- bounded kill

STUBBORN = ("trap '' TERM INT; sh -c \"trap '' TERM INT; sleep 120\" & "
            "echo $! > {child}; wait; sleep 120")


class StubbornLauncher:
    """A launcher whose kill() never returns (a wedged srun/jsrun) over a process that
    ignores SIGTERM and SIGINT and has a child doing the same."""

    def __init__(self):
        self.kill_called = threading.Event()

    def kill(self, step):
        self.kill_called.set()
        time.sleep(3600)

    def wait(self, step, timeout=None):
        try:
            return step.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


class Step:
    def __init__(self, process):
        self.process, self.returncode, self.data = process, None, {}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("own_group", [False, True])
def test_kill_step_gets_control_back_after_the_grace_period(tmp_path, own_group):
    child_file = tmp_path / "child"
    proc = subprocess.Popen(["sh", "-c", STUBBORN.format(child=child_file)],
                            start_new_session=own_group)
    deadline = time.monotonic() + 10
    while not (child_file.exists() and child_file.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(child_file.read_text())
    launcher, messages = StubbornLauncher(), []
    t0 = time.monotonic()
    rc = kill_step(launcher, Step(proc), 0.5, messages.append)
    assert time.monotonic() - t0 < 5
    assert launcher.kill_called.is_set()
    assert rc == -signal.SIGKILL
    assert "did not exit within 0.5 s of the kill" in messages[0]
    deadline = time.monotonic() + 5
    while _alive(child):  # the launcher's child went too (reaped by init eventually)
        assert time.monotonic() < deadline, "the launcher's child survived"
        time.sleep(0.05)


# --------------------------------------------------------------------------- scr run local

def _run_local(scr_env, prefix, extra_env, body, timeout=120):
    env = dict(scr_env, SCR_RUNS="2", SCR_MIN_NODES="3", SCR_LOG_ENABLE="1", **extra_env)
    cmd = [sys.executable, "-m", "scr_core", "local", "alloc", "-N", "4", "--",
           sys.executable, "-m", "scr_core", "run", "local", "-N", "4", "sh", "-c", body]
    return subprocess.run(cmd, env=env, cwd=prefix, capture_output=True, text=True,
                          timeout=timeout)


# run 1: the last rank crashes its virtual node, the others sleep (a job whose survivors go
# on); run 2 finishes at once
CRASH_BODY = ('case "$SCR_RUN_ID" in *.1) '
              'if [ "$SCR_LOCAL_RANK" = 3 ]; then sleep 0.5; '
              'exec scr local crash "$SCR_LOCAL_NODE"; fi; exec sleep 60;; '
              '*) echo "run2 rank $SCR_LOCAL_RANK on $SCR_LOCAL_NODE";; esac')


def test_scr_run_local_watch_catches_a_crash_while_the_step_runs(scr_env, tmp_path):
    prefix = tmp_path / "p"
    prefix.mkdir()
    t0 = time.monotonic()
    r = _run_local(scr_env, prefix, {"SCR_LOCAL_NODE_TIMEOUT": "300"}, CRASH_BODY)
    elapsed = time.monotonic() - t0
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    # found by the watch while the step ran: the launcher would have waited 300 s
    assert "node vnode4 is dead: step watch, resource manager: Not responding (node crashed)" in out
    assert "killing the job step (step watch: node vnode4 dead)" in out
    assert "node failure on" not in out
    assert "before deciding on a relaunch" not in out  # no settle delay after the watch
    assert "run 2 of 2 on 3 node(s), excluding vnode4" in out
    assert sorted(line.split()[-1] for line in out.splitlines()
                  if line.startswith("run2 rank")) == ["vnode1", "vnode2", "vnode3"]
    log = (prefix / ".scr" / "log").read_text()
    assert 'event=NODE_FAIL, note="vnode4: step watch, resource manager: Not responding' in log
    assert elapsed < 60, out  # not the node timeout (a sanity bound, not a benchmark)


def test_scr_run_local_without_the_watch_waits_for_the_node_timeout(scr_env, tmp_path):
    prefix = tmp_path / "p"
    prefix.mkdir()
    r = _run_local(scr_env, prefix, {"SCR_WATCH": "0", "SCR_LOCAL_NODE_TIMEOUT": "2",
                                     "SCR_RUN_SETTLE_SECONDS": "0"}, CRASH_BODY)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "is dead" not in out
    assert "scr: local: node failure on vnode4" in out  # the "RM" ended the step
    assert "node vnode4 is down: Not responding (node crashed)" in out
    assert "run 2 of 2 on 3 node(s), excluding vnode4" in out


def test_scr_run_rejects_a_bad_watch_parameter_before_launching(scr_env, tmp_path):
    prefix = tmp_path / "p"
    prefix.mkdir()
    r = _run_local(scr_env, prefix, {"SCR_WATCH_FAILURES": "none"},
                   f"touch {tmp_path}/launched")
    assert r.returncode == 3, r.stdout + r.stderr  # ConfigError
    assert "SCR_WATCH_FAILURES" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "launched").exists()
