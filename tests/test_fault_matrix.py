"""Issue 16's fault matrix, run loop rows: each fault ends ``scr run`` with its documented exit
code, leaves no process behind (found by a marker in the environment of everything the test
started, on every lab node too: the lab nodes' processes are in PID namespaces below ours),
and marks no dataset complete that is not all there.

Rows, and the tests that cover them (``L:`` local backend, ``S:`` Slurm lab; ``run_local`` is
tests/test_run_local.py, ``slurm_scr_run`` tests/test_slurm_scr_run.py, the rest are here):

* node crash mid-step (relaunch excluding it, resume; exit 0, or 11 when too few are left)
    L: run_local::test_node_dies_then_relaunch_on_survivors_and_resume,
       run_local::test_too_few_nodes_left_stops_with_code_11
    S: slurm_scr_run::test_node_crash_relaunch_with_exclude_and_resume,
       slurm_scr_run::test_mpi_job_crash_relaunch_and_resume
* node drained / marked down (excluded at the next launch)
    L: test_node_marked_down_mid_step_is_excluded_at_relaunch
    S: slurm_scr_run::test_drained_node_excluded_before_first_launch_and_min_nodes
* halt set mid-run (exit 10)
    L: run_local::test_halt_while_running, run_local::test_halt_immediate_stops_the_running_step
    S: slurm_scr_run::test_halt_immediate_stops_the_running_step,
       slurm_scr_run::test_time_left_halt_on_a_short_allocation
* SIGTERM / SIGHUP / SIGINT to scr run (143 / 129 / 130, step stopped, postrun runs)
    L: test_signal_stops_step_runs_postrun      S: test_slurm_signals_to_scr_run (TERM, HUP)
* a second signal while postrun scavenges (postrun interrupted, its agents stopped; 143)
    L: test_second_signal_interrupts_postrun_and_stops_its_agents
* SIGKILL to scr run (no rank left; the implicit allocation removed)
    L: test_sigkill_leaves_no_ranks_and_no_allocation,
       test_sigkill_inside_an_allocation_stops_only_that_runs_tasks
    S: test_slurm_signals_to_scr_run (srun gets SIGTERM from the kernel: PR_SET_PDEATHSIG;
       test_die_with_parent_reaches_the_launcher_after_sigkill checks that part here)
* stale local allocation (its owner was killed): L: test_stale_allocation_is_cleaned
* one failed RM query after a node failure (retried, the job goes on)
    L: test_transient_rm_failure_is_retried_and_the_job_goes_on (core code, any RM)
* RM failing for good (exit 5 at once, no relaunch, postrun runs)
    L: test_rm_failing_for_good_ends_with_5_after_postrun
* disk full on the prefix (exit 1, the lost dataset named, nothing half-written complete)
    L: test_disk_full_prefix                    S: test_slurm_disk_full_prefix
* SIGTERM to scr scavenge (its copy agents stop; exit 143; nothing marked complete)
    L: test_sigterm_to_scavenge_stops_its_copy_agents
    S: test_slurm_sigterm_to_scavenge_stops_its_agents (agents as srun steps on the nodes)

Scavenge interrupted and re-run, and two scavenges at once, are the scavenge rows
(tests/test_scavenge.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEMO = [sys.executable, "-m", "scr_core.demo", "--step-seconds", "0.05", "--ckpt-every", "5",
        "--size-kb", "4"]
MARKER = "SCR_FAULT_MATRIX_MARKER"


def scr(*args: str) -> list:
    return [sys.executable, "-m", "scr_core", *args]


# --------------------------------------------------------------------------- helpers


def marked_processes(marker: str) -> list:
    """(pid, argv) of every live process (zombies aside) whose environment or argv holds
    ``marker``; this process excepted."""
    want = marker.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
            if state in (b"Z", b"X"):
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read()
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if want in argv or want in env:
            found.append((int(entry), argv.replace(b"\0", b" ").decode(errors="replace")))
    return found


def wait_no_processes(marker: str, timeout: float = 20.0) -> list:
    deadline = time.monotonic() + timeout
    left = marked_processes(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = marked_processes(marker)
    return left


def kill_marked(marker: str) -> None:
    for pid, _ in marked_processes(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def assert_index_honest(prefix: Path) -> list:
    """Every checkpoint the index calls complete has every rank's file, whole; returns the
    names of the complete ones."""
    from scr_core.control.index import IndexFile

    if not (prefix / ".scr" / "index.scr").exists():
        return []
    complete = []
    for entry in IndexFile(str(prefix)).entries():
        if not entry.complete:
            continue
        ckpt = prefix / entry.name
        files = sorted(ckpt.glob("rank_*.ckpt"))
        assert files, f"{entry.name} is marked complete but has no files"
        import json

        size = None
        for f in files:
            head = json.loads(f.read_bytes().split(b"\n", 1)[0])
            size = head["size"]
            assert head["step"] == int(entry.name.split(".")[1]), f
        assert len(files) == size, f"{entry.name} is marked complete with {len(files)} of " \
                                   f"{size} ranks"
        complete.append(entry.name)
    return complete


@pytest.fixture
def marked_env(scr_env, tmp_path):
    """scr_env + a marker every process of the test inherits; the local allocations go to
    a private TMPDIR (the default base), so what is left there can be checked."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    marker = f"{tmp_path}-marker"
    env = dict(scr_env, TMPDIR=str(tmp), **{MARKER: marker})
    yield env, marker
    kill_marked(marker)


def allocations_left(env: dict) -> list:
    base = Path(env["TMPDIR"]) / f"scr-local-{os.getuid()}"
    return sorted(p.name for p in base.glob("alloc.*")) if base.exists() else []


def start_run(env: dict, prefix: Path, *run_args: str) -> subprocess.Popen:
    """``scr run local ...`` directly (its implicit allocation), to signal it."""
    return subprocess.Popen(scr("run", "local", *run_args), env=env, cwd=prefix,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_checkpoint(prefix: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (prefix / ".scr" / "index.scr").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.communicate()[0] if proc.poll() is not None else ""
            pytest.fail(f"no checkpoint was written: {out}")
        time.sleep(0.05)


@pytest.fixture
def prefix(tmp_path):
    p = tmp_path / "prefix"
    p.mkdir()
    return p


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_signal_stops_step_runs_postrun(marked_env, prefix, sig):
    env, marker = marked_env
    proc = start_run(dict(env, SCR_LOCAL_NODES="2"), prefix, "-N", "2", *DEMO,
                     "--steps", "4000")
    try:
        wait_checkpoint(prefix, proc)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, out
    assert f"received signal {int(sig)}; stopping the job step" in out
    assert "postrun:" in out
    assert wait_no_processes(marker) == []
    assert allocations_left(env) == []
    assert assert_index_honest(prefix)


def test_sigkill_leaves_no_ranks_and_no_allocation(marked_env, prefix):
    env, marker = marked_env
    proc = start_run(dict(env, SCR_LOCAL_NODES="2"), prefix, "-N", "2", *DEMO,
                     "--steps", "4000")
    try:
        wait_checkpoint(prefix, proc)
        ranks = [p for p in marked_processes(marker)
                 if p[1].startswith(f"{DEMO[0]} -m scr_core.demo")]
        assert len(ranks) == 2, ranks
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert wait_no_processes(marker) == [], "ranks outlived scr run"
    deadline = time.monotonic() + 10
    while allocations_left(env) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert allocations_left(env) == [], "the implicit allocation was left behind"
    assert assert_index_honest(prefix)


def test_sigkill_inside_an_allocation_stops_only_that_runs_tasks(marked_env, prefix):
    """scr run inside `scr local alloc` killed with SIGKILL: its ranks are stopped (by its
    lifeline), the allocation stays for the rest of the job script."""
    env, marker = marked_env
    alloc_proc = subprocess.Popen(
        scr("local", "alloc", "-N", "2", "--", "sh", "-c",
            " ".join(scr("run", "local", "-N", "2", *DEMO, "--steps", "4000")) +
            "; touch after; sleep 30"),
        env=env, cwd=prefix, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (prefix / ".scr" / "index.scr").exists():
            assert alloc_proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        run_pid = next(pid for pid, argv in marked_processes(marker)
                       if argv.startswith(f"{sys.executable} -m scr_core run local"))
        os.kill(run_pid, signal.SIGKILL)
        while not (prefix / "after").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        left = wait_no_processes_matching(
            marker, lambda m: [p for p in marked_processes(m)
                               if p[1].startswith(f"{DEMO[0]} -m scr_core.demo")], 10)
        assert left == [], "ranks outlived scr run"
        assert len(allocations_left(env)) == 1  # the job script's allocation is still there
    finally:
        alloc_proc.terminate()
        alloc_proc.wait(timeout=30)
    assert allocations_left(env) == []


# what a process killed with SIGKILL leaves: an owned allocation with a running task group
_ORPHAN = """
import os, subprocess, sys
from scr_core.local.allocation import LocalAllocation
alloc = LocalAllocation.create(["vnode1", "vnode2"], base=sys.argv[1], owned=True)
task = subprocess.Popen(["sleep", "300"], start_new_session=True, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, env=dict(os.environ, SCR_LOCAL_DIR=alloc.path))
alloc.register_group("vnode1", task.pid)
print(alloc.path, task.pid, flush=True)
os._exit(0)
"""


@pytest.mark.parametrize("how", ["scr local status", "a new allocation"])
def test_stale_allocation_is_cleaned(marked_env, how):
    env, marker = marked_env
    base = Path(env["TMPDIR"]) / f"scr-local-{os.getuid()}"
    r = subprocess.run([sys.executable, "-c", _ORPHAN, str(base)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    path, _pid = r.stdout.split()
    assert os.path.isdir(path) and marked_processes(marker)
    if how == "scr local status":
        r = subprocess.run(scr("local", "status"), env=dict(env, SCR_LOCAL_DIR=path),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 5, r.stderr
        assert "is stale: its owner" in r.stderr and "Traceback" not in r.stderr
    else:
        from scr_core.local.allocation import LocalAllocation

        LocalAllocation.create(["vnode1"], base=str(base))
    assert not os.path.exists(path)
    assert wait_no_processes(marker, timeout=10) == []


def test_a_live_owner_keeps_its_allocation(marked_env):
    env, _marker = marked_env
    from scr_core.local.allocation import LocalAllocation, sweep_stale

    base = Path(env["TMPDIR"]) / "live"
    alloc = LocalAllocation.create(["vnode1"], base=str(base), owned=True)
    unowned = LocalAllocation.create(["vnode1"], base=str(base))
    assert sweep_stale(str(base)) == []
    assert os.path.isdir(alloc.path) and os.path.isdir(unowned.path)


# --------------------------------------------------------------------------- node down


def test_node_marked_down_mid_step_is_excluded_at_relaunch(marked_env, prefix):
    """An admin marks a node down while the step runs (like a Slurm drain, the step goes
    on); the application then fails once: the relaunch excludes the node."""
    env, marker = marked_env
    env = dict(env, SCR_RUNS="2", SCR_MIN_NODES="2", SCR_LOCAL_NODES="3")
    proc = start_run(env, prefix, "-N", "3", *DEMO, "--steps", "60", "--fail-at-step", "20")
    try:
        wait_checkpoint(prefix, proc)
        local_dir = next(p for p in (Path(env["TMPDIR"]) / f"scr-local-{os.getuid()}")
                         .glob("alloc.*"))
        r = subprocess.run(scr("local", "down", "vnode2", "-r", "drained by the test"),
                           env=dict(env, SCR_LOCAL_DIR=str(local_dir)), capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "node vnode2 is down: drained by the test" in out
    assert "run 2 of 2 on 2 node(s), excluding vnode2" in out
    assert "finished all 60 steps" in out
    assert wait_no_processes(marker) == []
    assert "ckpt.60" in assert_index_honest(prefix)


# --------------------------------------------------------------------------- RM failures


class _FlakyQueries:
    """Replaces ``LocalResourceManager.down_nodes``: the calls numbered in ``failing``
    (1-based) raise ``error``."""

    def __init__(self, monkeypatch, failing, error):
        from scr_core.local.rm import LocalResourceManager

        real = LocalResourceManager.down_nodes
        self.failing = set(failing)
        self.calls = 0
        flaky = self

        def down_nodes(rm):
            flaky.calls += 1
            if flaky.calls in flaky.failing:
                raise error
            return real(rm)

        monkeypatch.setattr(LocalResourceManager, "down_nodes", down_nodes)


def _runner(tmp_path, env_extra, launcher_args):
    """An in-process scr run on a new local allocation with the demo app."""
    from scr_core.engine.jobenv import JobEnv
    from scr_core.engine.run import Runner, parse_run_args
    from scr_core.local.allocation import LocalAllocation

    alloc = LocalAllocation.create(["vnode1", "vnode2", "vnode3"], base=str(tmp_path / "a"))
    prefix = tmp_path / "prefix"
    prefix.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCR_", "SLURM_", "LSB_", "FLUX_"))}
    env.update(SCR_LOCAL_DIR=alloc.path, SCR_PREFIX=str(prefix), SCR_NODE_TESTS="none",
               SCR_RUN_SETTLE_SECONDS="0", HOME=str(tmp_path / "home"), **env_extra)
    job = JobEnv(environ=env)
    lines: list = []
    runner = Runner(job, parse_run_args("local", launcher_args), out=lines.append)
    return job, runner, lines, alloc, prefix


def test_transient_rm_failure_is_retried_and_the_job_goes_on(tmp_path, monkeypatch, capfd):
    from scr_core.errors import ResourceManagerError

    # the query after the node failure times out once, as sinfo does when slurmctld is busy
    flaky = _FlakyQueries(monkeypatch, [2],
                          ResourceManagerError("sinfo did not answer within 30 s"))
    _job, runner, lines, _alloc, prefix = _runner(
        # no step watch (issue 17): the node failure is found by the query after the step,
        # which the local launcher ends at once (no node timeout)
        tmp_path, {"SCR_RUNS": "2", "SCR_MIN_NODES": "2", "SCR_RM_RETRY_SECONDS": "0",
                   "SCR_WATCH": "0", "SCR_LOCAL_NODE_TIMEOUT": "0"},
        ["-N", "3", *DEMO, "--steps", "30", "--crash-node-at-step", "12"])
    rc = runner.run()
    text = "\n".join(lines)
    warnings = [line for line in capfd.readouterr().err.splitlines()
                if line.startswith("scr: warning: ")]
    assert rc == 0, text
    assert flaky.calls == 3  # before run 1, the failed query after it, its retry
    assert len(warnings) == 1 and "sinfo did not answer" in warnings[0], warnings
    assert "trying again in 0 s (1 of 3, SCR_RM_RETRIES)" in warnings[0]
    assert "node vnode3 is down" in text and "run 2 of 2" in text
    assert "ckpt.30" in assert_index_honest(prefix)


@pytest.mark.parametrize("transient, calls", [(True, 3), (False, 1)])
def test_rm_failing_for_good_ends_with_5_after_postrun(tmp_path, monkeypatch, transient,
                                                       calls):
    from scr_core.errors import ResourceManagerError

    error = ResourceManagerError("sinfo: slurm_load_node: Unable to contact slurm "
                                 "controller", transient=transient)
    flaky = _FlakyQueries(monkeypatch, range(2, 100), error)
    _job, runner, lines, _alloc, _prefix = _runner(
        tmp_path, {"SCR_RUNS": "3", "SCR_RM_RETRIES": "2", "SCR_RM_RETRY_SECONDS": "0"},
        ["-N", "3", "sh", "-c", "exit 3"])
    with pytest.raises(ResourceManagerError) as info:
        runner.run()
    assert info.value.exit_code == 5
    assert flaky.calls == 1 + calls  # the first query, then the failing one and its retries
    text = "\n".join(lines)
    assert "stopping after an error; postrun still saves what the runs left" in text
    assert "postrun:" in text
    assert text.count("ended with exit code 3") == 1  # no relaunch


def test_plugin_bug_after_a_run_still_runs_postrun(tmp_path, monkeypatch):
    """A resource manager raising something that is not a ScrError (a plugin's bug) after
    a run: the error still ends the job only after postrun, and the CLI's barrier makes
    it exit 8, never 1."""
    flaky = _FlakyQueries(monkeypatch, range(2, 100), KeyError("state"))
    _job, runner, lines, _alloc, _prefix = _runner(
        tmp_path, {"SCR_RUNS": "3"}, ["-N", "3", "sh", "-c", "exit 3"])
    with pytest.raises(KeyError):
        runner.run()
    assert flaky.calls == 2  # not retried: only ScrErrors can be transient
    text = "\n".join(lines)
    assert "stopping after an error; postrun still saves what the runs left" in text
    assert "postrun:" in text
    assert text.count("ended with exit code 3") == 1  # no relaunch


@pytest.mark.parametrize("command", ["run", "should-exit"])
@pytest.mark.parametrize("error", ["ScrError", "LaunchError", "RemoteExecError"])
def test_generic_errors_never_exit_1_where_1_is_an_answer(command, error):
    from scr_core.cli.main import error_exit_code

    from scr_core import errors

    exc = getattr(errors, error)("cannot start mpirun")
    assert exc.exit_code == 1  # what other commands still return for it
    assert error_exit_code(command, exc) == errors.EXIT_ENVIRONMENT
    assert error_exit_code("index", exc) == 1
    assert error_exit_code(command, errors.ControlFileError("x")) == errors.EXIT_DATA


def test_should_exit_with_a_plugin_scr_error_is_not_keep_running(tmp_path, monkeypatch):
    """A plain ScrError from the resource manager while scr should-exit asks it: exit 5."""
    from scr_core.cli.main import main
    from scr_core.errors import ScrError
    from scr_core.local.allocation import LocalAllocation
    from scr_core.local.rm import LocalResourceManager

    alloc = LocalAllocation.create(["vnode1", "vnode2"], base=str(tmp_path / "a"))
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    for k in list(os.environ):
        if k.startswith(("SCR_", "SLURM_", "LSB_", "FLUX_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("SCR_LOCAL_DIR", alloc.path)
    monkeypatch.setenv("SCR_PREFIX", str(prefix))

    def broken(rm):
        raise ScrError("the site's node query failed")

    monkeypatch.setattr(LocalResourceManager, "job_nodes", broken)
    monkeypatch.setattr(LocalResourceManager, "down_nodes", broken)
    assert main(["should-exit", "--prefix", str(prefix)]) == 5


def test_a_killed_step_that_exits_0_is_not_a_success(tmp_path):
    """A launcher that reports 0 for a step the watchdog killed (srun does when the tasks
    exit 0 on SIGTERM): the run counts as killed (137), so it is never the job's success."""
    _job, runner, lines, _alloc, _prefix = _runner(
        tmp_path, {"SCR_WATCHDOG": "1", "SCR_WATCHDOG_TIMEOUT": "1", "SCR_WATCH": "0"},
        ["-N", "1", "true"])

    class ExitsZeroOnKill:
        killed = False

        def wait(self, step, timeout=None):
            if self.killed:
                return 0
            time.sleep(min(timeout or 0, 0.1))
            return None

        def kill(self, step):
            self.killed = True

    runner.launcher = ExitsZeroOnKill()
    rc, why = runner.wait_step(object(), time.time())
    assert "watchdog" in why, lines
    assert rc == 137


def test_retry_backoff_is_bounded_and_doubles():
    from scr_core.errors import ConfigError, ResourceManagerError, ScrError

    from scr_core import rm_retry

    class Params(dict):
        def source(self, name):
            return f"env {name}"

    slept: list = []

    def always():
        raise ResourceManagerError("down")

    with pytest.raises(ResourceManagerError):
        rm_retry.call(always, "q", Params(SCR_RM_RETRIES="9", SCR_RM_RETRY_SECONDS="4"),
                      warn=lambda m: None, sleep=slept.append)
    assert slept == [4, 8, 16, 32, 60, 60, 60, 60, 60]
    slept.clear()

    def plain():
        raise ScrError("not transient")

    with pytest.raises(ScrError):
        rm_retry.call(plain, "q", Params(), warn=lambda m: None, sleep=slept.append)
    assert slept == []
    for name, value in (("SCR_RM_RETRIES", "-1"), ("SCR_RM_RETRIES", "x"),
                        ("SCR_RM_RETRY_SECONDS", "inf"), ("SCR_RM_RETRY_SECONDS", "nan"),
                        ("SCR_RM_RETRY_SECONDS", "-2")):
        with pytest.raises(ConfigError, match=name):
            rm_retry.call(always, "q", Params({name: value}), warn=lambda m: None,
                          sleep=slept.append)


def test_scr_config_shows_the_retry_parameters(scr_env):
    r = subprocess.run(scr("config"), env=dict(scr_env, SCR_RM_RETRIES="5"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^SCR_RM_RETRIES = 5 .*env", r.stdout, re.M), r.stdout
    assert re.search(r"^SCR_RM_RETRY_SECONDS = 2 ", r.stdout, re.M), r.stdout


def test_missing_client_is_not_transient(tmp_path):
    from scr_core.client_commands import run_client
    from scr_core.errors import ResourceManagerError

    with pytest.raises(ResourceManagerError) as info:
        run_client([str(tmp_path / "no-such-sinfo")], {}, 5, ResourceManagerError)
    assert info.value.transient is False
    with pytest.raises(ResourceManagerError) as info:
        run_client(["sleep", "5"], {}, 0.2, ResourceManagerError)
    assert info.value.transient is True


# --------------------------------------------------------------------------- disk full


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs as the prefix (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_prefix(marked_env, small_tmpfs):
    """The prefix fills up while the job writes checkpoints (2 ranks x 96 KiB each): the
    application fails, scr run relaunches, then gives up with exit 1; postrun cannot save
    the dataset left in cache and says so; nothing half-written is marked complete."""
    env, marker = marked_env
    prefix = small_tmpfs
    env = dict(env, SCR_RUNS="2", SCR_LOCAL_NODES="2")
    r = subprocess.run(scr("run", "local", "-N", "2", *DEMO[:-1], "96", "--steps", "400"),
                       env=env, cwd=prefix, capture_output=True, text=True, timeout=180)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "No space left on device" in out  # the application's tracebacks say so
    assert out.count("ended with exit code 1") == 2
    # stderr after this line: only scr run writes (the ranks' tracebacks came before)
    after_runs = r.stderr.split("stopping: no runs left", 1)[1]
    assert "Traceback" not in after_runs, out
    assert re.search(r"postrun: dataset \d+ \(ckpt\.\d+\) was NOT saved", after_runs), out
    assert assert_index_honest(prefix)  # the early ones are complete and whole
    assert wait_no_processes(marker) == []
    assert allocations_left(env) == []


# --------------------------------------------------------------------------- scavenge


def stopping_agents(env: dict, tmp: Path, chunks: int = 64) -> dict:
    """``env`` whose copy agents stop themselves (SIGSTOP) after ``chunks`` chunks written
    (tests/agent_stopper.py): "mid-copy" however fast the copy is."""
    wrapper = tmp / "agent-python"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} '
                       f'{Path(__file__).with_name("agent_stopper.py")} "$@"\n')
    wrapper.chmod(0o755)
    return dict(env, SCR_AGENT_PYTHON=str(wrapper), SCR_TEST_STOP_AFTER=str(chunks),
                SCR_FILE_BUF_SIZE="4096", SCR_SCAVENGE_SYNC="none")


def stopped_agents(marker: str) -> list:
    """Marked copy-agent processes that have stopped themselves (state T in a thread)."""
    found = []
    for pid, argv in marked_processes(marker):
        if "agent_stopper" not in argv:
            continue
        try:
            states = [Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1]
                      .split()[0] for t in os.listdir(f"/proc/{pid}/task")]
        except (OSError, IndexError):
            continue
        if "T" in states:
            found.append(pid)
    return found


def test_sigterm_to_scavenge_stops_its_copy_agents(marked_env, tmp_path):
    import ckpt_writer
    from scr_core.control.index import IndexFile
    from scr_core.local.allocation import LocalAllocation

    env, marker = marked_env
    alloc = LocalAllocation.create(["vnode1", "vnode2"], base=str(tmp_path / "alloc"))
    prefix = tmp_path / "sprefix"
    (prefix / ".scr").mkdir(parents=True)
    ckpt_writer.write_dataset(str(prefix), 3, ckpt_writer.local_storage(alloc.path),
                              alloc.job_id, ranks_per_node=1, files_per_rank=2,
                              size=2 * 1024 * 1024)
    env = stopping_agents(dict(env, SCR_LOCAL_DIR=alloc.path, SCR_PREFIX=str(prefix)),
                          tmp_path)
    proc = subprocess.Popen(scr("scavenge", "-i", "3"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not stopped_agents(marker):  # mid-copy
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert wait_no_processes(marker, timeout=5) == [], "copy agents outlived scr scavenge"
    entries = [e for e in IndexFile(str(prefix)).entries()] if \
        (prefix / ".scr" / "index.scr").exists() else []
    assert not any(e.complete for e in entries)


# --------------------------------------------------------------------------- Slurm lab
#
# The batch scripts run ``scr run srun ...`` on n1; every process they start carries the
# marker in its environment (sbatch and srun pass it on). The lab nodes' PID namespaces are
# below ours, so /proc here shows the processes of every lab node.

SLURM_DEMO = f"{sys.executable} -m scr_core.demo --step-seconds 0.1 --ckpt-every 10 --size-kb 4"


def _step_processes(marker: str) -> list:
    """The marked processes of the step: scr run, srun, the application ranks."""
    return [p for p in marked_processes(marker)
            if "scr_core.demo" in p[1] or "scr_core run" in p[1]
            or os.path.basename(p[1].split(" ", 1)[0]) == "srun"]


def _scr_run_pid(marker: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [pid for pid, argv in marked_processes(marker) if "scr_core run srun" in argv]
        if pids:
            return pids[0]
        time.sleep(0.2)
    raise AssertionError("scr run did not start")


@pytest.mark.slurm
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_slurm_signals_to_scr_run(slurm, tmp_path, sig):
    from test_slurm_scr_run import env_lines, exit_code, submit, wait_file

    prefix = tmp_path / "prefix"
    prefix.mkdir()
    marker = f"{tmp_path}-marker"
    after = tmp_path / "after"
    # after scr run, the job stays a while: a rank or srun left behind would still be running
    body = (env_lines(prefix, SCR_RUNS="3", **{MARKER: marker}) +
            f"{sys.executable} -m scr_core run srun -N2 {SLURM_DEMO} --steps 100000\n"
            "echo SCR_RUN_EXIT=$?\n"
            f"touch {after}; sleep 30\n")
    _jid, out = submit(slurm, tmp_path, body, "-N2", "-t", "5")
    try:
        wait_file(prefix / ".scr" / "index.scr", 90, "the first checkpoint")
        pid = _scr_run_pid(marker)
        ranks = [p for p in _step_processes(marker)
                 if p[1].startswith(f"{sys.executable} -m scr_core.demo")]
        assert len(ranks) == 2, ranks  # one per node, seen from here
        os.kill(pid, sig)
        wait_file(after, 90, "scr run to end")
        left = wait_no_processes_matching(marker, _step_processes, timeout=20)
        text = out.read_text()
    finally:
        kill_marked(marker)
    assert left == [], f"left behind: {left}\n{text}"
    assert exit_code(text) == 128 + sig, text
    if sig != signal.SIGKILL:
        assert f"received signal {int(sig)}; stopping the job step" in text, text
        assert "postrun:" in text
    assert assert_index_honest(prefix)


def wait_no_processes_matching(marker: str, which, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    left = which(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = which(marker)
    return left


@pytest.mark.slurm
def test_slurm_disk_full_prefix(slurm, tmp_path):
    """A 1 MiB tmpfs as the prefix, mounted in n1's mount namespace (the lab's mounts are
    private, so a one-node job; the host sees an empty directory): the job fills it."""
    from test_slurm_scr_run import env_lines, exit_code, finish, submit

    prefix = tmp_path / "prefix"
    prefix.mkdir()
    copy = tmp_path / "copy"
    marker = f"{tmp_path}-marker"
    slurm.lab("on", "n1", "mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs",
              str(prefix))
    try:
        body = (env_lines(prefix, SCR_RUNS="2", **{MARKER: marker}) +
                f"cd {prefix}\n"
                f"{sys.executable} -m scr_core run srun -N1 -n1 "
                f"{SLURM_DEMO.replace('--size-kb 4', '--size-kb 96')} --steps 400\n"
                "echo SCR_RUN_EXIT=$?\n"
                f"cp -a {prefix} {copy}\n")
        jid, out = submit(slurm, tmp_path, body, "-N1", "-w", "n1", "-t", "5")
        text = finish(slurm, jid, out, timeout=180)
    finally:
        slurm.lab("on", "n1", "umount", "-l", str(prefix))
        kill_marked(marker)
    assert exit_code(text) == 1, text
    assert "No space left on device" in text
    after_runs = text.split("stopping: no runs left", 1)[1]
    assert "Traceback" not in after_runs, text
    assert re.search(r"postrun: dataset \d+ \(ckpt\.\d+\) was NOT saved", after_runs), text
    assert assert_index_honest(copy)
    assert _step_processes(marker) == []


def test_second_signal_interrupts_postrun_and_stops_its_agents(marked_env, prefix):
    """SIGTERM stops the step and postrun starts scavenging a large dataset from cache; a
    second SIGTERM interrupts postrun: exit 143 at once, no copy agent left, nothing
    marked complete."""
    env, marker = marked_env
    writer = Path(__file__).parent / "ckpt_writer.py"
    written = prefix / "written"
    app = (f"{sys.executable} {writer} --prefix {prefix} --id 5 --size {2 * 1024 * 1024} "
           f"--files-per-rank 2 --ranks-per-node 1 --nodes vnode1 && touch {written} && "
           "sleep 300")
    env = stopping_agents(dict(env, SCR_LOCAL_NODES="1",
                               PYTHONPATH=str(Path(__file__).parent)), prefix.parent)
    proc = start_run(env, prefix, "sh", "-c", app)
    try:
        deadline = time.monotonic() + 60
        while not written.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        while not stopped_agents(marker):  # postrun's agents, mid-copy
            assert proc.poll() is None and time.monotonic() < deadline + 60, \
                proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, out
    assert "postrun goes on" not in out  # the first signal came before postrun
    assert "received signal 15 again; interrupting postrun" in out
    assert "Traceback" not in out
    assert wait_no_processes(marker, timeout=5) == [], "copy agents outlived scr run"
    assert allocations_left(env) == []
    from scr_core.control.index import IndexFile

    if (prefix / ".scr" / "index.scr").exists():
        assert not any(e.complete for e in IndexFile(str(prefix)).entries())


_PARENT = """
import subprocess, sys, time
from scr_core.client_commands import die_with_parent
child = subprocess.Popen(["sleep", "300"], preexec_fn=die_with_parent(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(300)
"""


def test_die_with_parent_reaches_the_launcher_after_sigkill(marked_env):
    """What srun, jsrun and flux get: SIGTERM from the kernel when scr run is killed."""
    env, marker = marked_env
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert any(pid == child for pid, _ in marked_processes(marker))
        parent.kill()
        parent.wait(timeout=10)
    finally:
        parent.kill()
    assert wait_no_processes(marker, timeout=10) == []

    import threading

    from scr_core.client_commands import die_with_parent

    seen: list = []
    t = threading.Thread(target=lambda: seen.append(die_with_parent()))
    t.start()
    t.join()
    assert seen == [None]  # a thread's end would kill the child: not offered there


@pytest.mark.slurm
def test_slurm_sigterm_to_scavenge_stops_its_agents(slurm, tmp_path):
    """On the lab: scr scavenge's agents (srun steps) stop themselves mid-copy; SIGTERM to
    scr scavenge: exit 143, no agent left on any node, the dataset not marked complete."""
    from test_scavenge_integrity import (
        agent_pids,
        lab_dataset,
        scavenge_pids,
        stopped_mid_copy,
        wait_for,
    )

    job_id, prefix, env, lab, wrapper = lab_dataset(slurm, tmp_path)
    proc = subprocess.Popen([*lab, "scavenge", "-p", str(prefix), "-i", "1"],
                            env=dict(env, SCR_AGENT_PYTHON=str(wrapper),
                                     SCR_TEST_STOP_AFTER="64"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stopped_mid_copy(prefix)
        for pid in scavenge_pids(prefix):
            os.kill(pid, signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        wait_for(lambda: not agent_pids(prefix), "no agent left on the nodes", 60)
    finally:
        for pid in agent_pids(prefix):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
        slurm.run(["scancel", job_id], check=False)
    assert proc.returncode == 143, err
    from scr_core.control.index import IndexFile

    if (prefix / ".scr" / "index.scr").exists():
        assert not any(e.complete for e in IndexFile(str(prefix)).entries())


def test_readme_signal_rows_are_the_handled_signals():
    """README's "What scr guarantees" names exactly the signals scr run handles, and
    SIGKILL."""
    from scr_core.engine.run import STOP_SIGNALS
    from test_faults_subcommands import _readme_table

    rows = list(_readme_table("**Signals**"))
    handled = {getattr(signal, name) for name in rows[0].split(", ")}
    assert handled == set(STOP_SIGNALS)
    assert rows[1:] == ["SIGKILL"]
