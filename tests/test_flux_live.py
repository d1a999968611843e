"""The Flux plugin against a real 4-broker Flux instance (tests/flux_lab, conftest_flux).

Every backend runs as in production, only with the lab's ``flux`` and ``FLUX_URI``: the
resource manager inside ``flux run``/``flux alloc``/``flux batch`` jobs and in the instance
itself, the ``flux run`` launcher, ``flux exec`` remote execution, the batch lifecycle and
function jobs. Failures are real: ``lab crash nX`` SIGKILLs a node's PID namespace (broker,
job shells, tasks) and cuts its link; drains are ``flux resource drain``; exclusion is a
nested instance's ``resource.exclude``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from scr_core.batch import scheduler
from scr_core.funcjobs import FunctionJob, JobDiedError, RMSystem
from scr_core.interfaces import BackendContext, JobState
from scr_plugins_flux.launcher import FluxRunLauncher
from scr_plugins_flux.rexec import FluxExecRemoteExecutor
from scr_plugins_flux.rm import FluxResourceManager

from scr_core import conformance
from scr_plugins_flux import parse

pytestmark = pytest.mark.flux

PY = sys.executable
NODES = ["n1", "n2", "n3", "n4"]

# What a process sees of the resource manager where it runs (printed as one JSON line).
PROBE = textwrap.dedent("""\
    import json, os, socket
    from scr_core.interfaces import BackendContext
    from scr_plugins_flux.rm import FluxResourceManager
    rm = FluxResourceManager(BackendContext(environ=dict(os.environ)))
    print("PROBE " + json.dumps({
        "host": socket.gethostname(), "FLUX_JOB_ID": os.environ.get("FLUX_JOB_ID"),
        "job_id": rm.job_id(), "nodes": rm.job_nodes(), "down": rm.down_nodes(),
        "end_time": rm.end_time()}), flush=True)
    """)


def probes_of(text: str) -> list[dict]:
    return [json.loads(ln[6:]) for ln in text.splitlines() if ln.startswith("PROBE ")]


def probe_of(text: str) -> dict:
    found = probes_of(text)
    assert len(found) == 1, text
    return found[0]


@pytest.fixture
def probe(tmp_path: Path) -> list[str]:
    path = tmp_path / "probe.py"
    path.write_text(PROBE)
    return [PY, str(path)]


def ctx(flux, **env: str) -> BackendContext:
    return BackendContext(environ=flux.env(**env), settings=flux.settings(kill_grace=5.0))


# `flux job timeleft` prints whole seconds (rounded down) and parse_timeleft adds them to
# the whole seconds of now: the end time is at most 2 s before the expiration, never after
def assert_end_is_expiration(end_time: int, flux, jid: str) -> None:
    exp = expiration(flux, jid)
    assert exp - 2.5 <= end_time <= exp, (end_time, exp)


def expiration(flux, jid: str) -> float:
    return float(flux.run(["jobs", "-n", "-o", "{expiration}", jid]).stdout)


def job_line(flux, jid: str) -> str:
    return flux.run(["jobs", "-n", "-o", "{result} {returncode} {exception.type} "
                     "{exception.note}", jid]).stdout.strip()


# --------------------------------------------------------------------------- resource manager


def test_rm_in_the_instance_itself(flux_instance):
    """The instance (no job): no job id, every broker's host, no limit; conformance."""
    seen = conformance.check_resource_manager(FluxResourceManager, ctx(flux_instance),
                                              expect_job=False)
    assert seen["nodes"] == NODES and seen["down"] == {} and seen["end_time"] == -1
    assert FluxResourceManager(ctx(flux_instance)).job_id() is None


def test_rm_job_id_nodes_and_end_time_inside_flux_run(flux_instance, probe):
    """A task of a ``flux run`` job: FLUX_JOB_ID (F58) is the job, its nodes from flux jobs,
    the end time is the job's expiration (a limit) or -1 (none)."""
    jid = flux_instance.run(["submit", "-N2", "-t", "5m", *probe]).stdout.strip()
    tasks = probes_of(flux_instance.run(["job", "attach", jid]).stdout)
    nodes = parse.parse_hostlist(flux_instance.run(
        ["jobs", "-n", "-o", "{nodelist}", jid]).stdout)
    assert len(nodes) == 2 and sorted(t["host"] for t in tasks) == nodes
    for got in tasks:
        assert got["FLUX_JOB_ID"] == jid and got["job_id"] == jid
        assert got["nodes"] == nodes and got["down"] == {}
        assert_end_is_expiration(got["end_time"], flux_instance, jid)
    unlimited = probe_of(flux_instance.run(["run", "-N1", *probe]).stdout)
    assert unlimited["end_time"] == -1 and unlimited["job_id"] == unlimited["FLUX_JOB_ID"]


def test_rm_inside_flux_alloc_and_flux_batch(flux_instance, probe, tmp_path):
    """The initial program of ``flux alloc``/``flux batch`` (a nested instance) has no
    FLUX_JOB_ID: the job id is the instance's ``jobid``, the nodes are its brokers' hosts,
    the end time the alloc/batch job's expiration."""
    name = f"scr-alloc-probe-{time.time_ns()}"
    alloc = flux_instance.run(["alloc", "-N3", "-t", "4m", f"--job-name={name}", *probe],
                              timeout=90).stdout
    got = probe_of(alloc)
    assert got["FLUX_JOB_ID"] is None and got["job_id"]
    listed = flux_instance.run(["jobs", "-a", "-n", "-o", "{id.f58}|{name}|{nodelist}"]).stdout
    rows = [line.split("|") for line in listed.splitlines()]
    [(jid, nodelist)] = [(r[0], r[2]) for r in rows if r[1] == name]
    assert got["job_id"] == jid
    assert got["nodes"] == parse.parse_hostlist(nodelist) and len(got["nodes"]) == 3
    assert_end_is_expiration(got["end_time"], flux_instance, jid)

    script = tmp_path / "batch.sh"
    script.write_text("#!/bin/sh\n" + " ".join(probe) + "\n")
    out = tmp_path / "batch.out"
    jid = flux_instance.run(["batch", "-N2", "-t", "3m", f"--output={out}",
                             str(script)]).stdout.strip()
    flux_instance.wait_event(jid, "clean", 90)
    got = probe_of(out.read_text())
    assert got["FLUX_JOB_ID"] is None and got["job_id"] == jid
    assert len(got["nodes"]) == 2 and got["host"] == got["nodes"][0]
    assert_end_is_expiration(got["end_time"], flux_instance, jid)


def test_rm_down_nodes_offline_drained_excluded(flux_instance, probe):
    """Down nodes with their reasons: a crashed broker (offline), an administrator's drain
    (with its reason), and a rank excluded by the configuration of a nested instance."""
    flux_instance.run(["resource", "drain", "n2", "bad DIMM | slot 3"])
    flux_instance.lab("crash", "n4")
    flux_instance.wait_for("n4 offline", lambda: flux_instance.ranks_in("offline") == "3")
    rm = FluxResourceManager(ctx(flux_instance))
    assert rm.job_nodes() == NODES
    assert rm.down_nodes() == {"n2": "drained: bad DIMM | slot 3",
                               "n4": "offline (broker not running or lost)"}
    # the step watch's query (issue 17): only the crashed broker is lost, not the drained one
    assert rm.lost_nodes(NODES) == {"n4": "offline (broker not running or lost)"}
    flux_instance.run(["resource", "undrain", "n2"])
    got = probe_of(flux_instance.run(
        ["alloc", "-N3", "--conf=resource.exclude=\"n3\"", *probe], timeout=90).stdout)
    assert got["nodes"] == ["n1", "n2", "n3"]
    assert got["down"] == {"n3": "excluded by configuration"}


def test_rm_draining_node_in_a_running_job(flux_instance):
    """Drained while a job runs there: ``draining``, also down for SCR's next step."""
    jid = flux_instance.run(["submit", "-N4", "sleep", "120"]).stdout.strip()
    flux_instance.wait_event(jid, "start")
    flux_instance.run(["resource", "drain", "n3", "going away"])
    assert FluxResourceManager(ctx(flux_instance)).down_nodes() == {
        "n3": "draining: going away"}


# --------------------------------------------------------------------------- launcher


def hosts_in(path: Path) -> list[str]:
    return sorted(path.read_text().split()) if path.exists() else []


def test_launcher_conformance_exclusion_restriction_and_exit_codes(flux_instance, tmp_path):
    c = ctx(flux_instance)
    conformance.check_launcher(FluxRunLauncher, c, run_args=["run", "true"],
                               sleep_args=["run", "sleep", "60"])
    launcher = FluxRunLauncher(c)
    out = tmp_path / "excluded"
    step = launcher.launch(["run", "-N3", "sh", "-c", f"hostname >> {out}"], exclude=["n2"])
    assert launcher.wait(step, 60) == 0
    assert hosts_in(out) == ["n1", "n3", "n4"]
    assert "--requires=-host:n2" in step.argv and step.step_id.startswith("ƒ")
    # the step id is the Flux job, which ran on exactly those nodes
    assert flux_instance.run(["jobs", "-n", "-o", "{nodelist}", step.step_id]).stdout.strip() \
        == "n[1,3-4]"
    out = tmp_path / "restricted"
    step = launcher.launch(["run", "-N2", "sh", "-c", f"hostname >> {out}"],
                           nodes=["n2", "n4"])
    assert launcher.wait(step, 60) == 0 and hosts_in(out) == ["n2", "n4"]
    step = launcher.launch(["run", "-N2", "sh", "-c", "exit 3"])
    assert launcher.wait(step, 60) == 3
    step = launcher.launch(["run", "-N1", "sh", "-c", "kill -KILL $$"])
    assert launcher.wait(step, 60) == 128 + 9
    # 4 nodes asked with one excluded cannot be satisfied: flux says so at once
    step = launcher.launch(["run", "-N4", "true"], exclude=["n3"])
    assert launcher.wait(step, 60) != 0


def test_launcher_kills_a_running_step(flux_instance, tmp_path):
    launcher = FluxRunLauncher(ctx(flux_instance))
    started = tmp_path / "started"
    step = launcher.launch(["run", "-N2", "sh", "-c", f"touch {started}; exec sleep 300"])
    flux_instance.wait_for("the step's tasks", started.exists)
    launcher.kill(step)
    assert step.returncode == 143
    assert job_line(flux_instance, step.step_id).startswith("CANCELED 143 cancel")
    # and by id only (scr kill-jobstep from another process)
    step = launcher.launch(["run", "-N1", "sleep", "300"])
    flux_instance.wait_event(step.step_id, "start")
    launcher.kill_step_id(step.step_id)
    assert launcher.wait(step, 30) == 143


def test_launcher_after_a_crash_fits_and_excludes(flux_instance, tmp_path):
    """A node crash kills the running step (rc 143, node failure); ``fit_to_nodes`` turns
    -N4 into -N3 and the relaunch without the crashed node runs."""
    launcher = FluxRunLauncher(ctx(flux_instance))
    started = tmp_path / "started"
    step = launcher.launch(["run", "-N4", "sh", "-c", f"touch {started}.$(hostname); "
                            "exec sleep 300"])
    flux_instance.wait_for("4 tasks", lambda: len(list(tmp_path.glob("started.*"))) == 4)
    flux_instance.lab("crash", "n3")
    assert launcher.wait(step, 30) == 143
    assert job_line(flux_instance, step.step_id) == \
        "FAILED 143 exec node failure on n3 (rank 2)"
    args = launcher.fit_to_nodes(["run", "-N4", "sh", "-c", f"hostname >> {tmp_path}/re"], 3)
    assert args[:2] == ["run", "-N3"]
    step = launcher.launch(args, exclude=["n3"])
    assert launcher.wait(step, 60) == 0
    assert hosts_in(tmp_path / "re") == ["n1", "n2", "n4"]


# --------------------------------------------------------------------------- remote exec


def test_remote_exec_every_rank_and_an_unreachable_one(flux_instance):
    c = ctx(flux_instance)
    conformance.check_remote_executor(FluxExecRemoteExecutor, c, NODES, unreachable=["n9"])
    rx = FluxExecRemoteExecutor(c)
    script = ('echo "out of $(hostname)"; echo "err of $(hostname)" >&2; '
              'case $(hostname) in n2) exit 2;; n4) kill -KILL $$;; esac')
    res = rx.run(["sh", "-c", script], NODES, timeout=30)
    assert list(res) == NODES
    for node in NODES:
        assert res[node].stdout == f"out of {node}\n", res[node]
        assert res[node].stderr == f"err of {node}\n", res[node]
        assert not res[node].unreachable and not res[node].timed_out
    assert [res[n].rc for n in NODES] == [0, 2, 0, 128 + 9]
    flux_instance.lab("crash", "n3")
    flux_instance.wait_for("n3 offline", lambda: flux_instance.ranks_in("offline") == "2")
    res = rx.run(["hostname"], ["n1", "n3"], timeout=30)
    assert res["n1"].rc == 0 and res["n1"].stdout == "n1\n"
    assert res["n3"].unreachable and res["n3"].rc is None
    assert "rank 2" in res["n3"].stderr
    slow = rx.run(["sleep", "30"], ["n2"], timeout=1)
    assert slow["n2"].timed_out and slow["n2"].rc is None


# --------------------------------------------------------------------------- batch lifecycle


@pytest.fixture
def rm(flux_instance, tmp_path):
    env = flux_instance.env(HOME=str(tmp_path / "home"), SCR_JOBS_ROOT=str(tmp_path / "root"))
    return FluxResourceManager(BackendContext(environ=env, settings=flux_instance.settings(),
                                              prefix=str(tmp_path)))


def request(command, tmp_path, name, **fields):
    return scheduler.make_request(command, wrap=False, job_name=name,
                                  output=str(tmp_path / f"{name}.out"), **fields)


def test_batch_submit_status_cancel_timeout_and_inventory(flux_instance, rm, tmp_path):
    assert scheduler.available(rm)
    held = scheduler.submit(rm, request(["sleep", "300"], tmp_path, "held", nodes=1), hold=True)
    running = scheduler.submit(rm, request(["sleep", "300"], tmp_path, "run", nodes=2,
                                           time_limit=600))
    fails = scheduler.submit(rm, request(["sh", "-c", "exit 4"], tmp_path, "fail", nodes=1))
    ok = scheduler.submit(rm, request(["hostname"], tmp_path, "ok", nodes=1))
    short = scheduler.submit(rm, request(["sleep", "60"], tmp_path, "short", nodes=1,
                                         time_limit=2))
    flux_instance.wait_event(running.job_id, "start")
    st = scheduler.wait(rm, [fails.job_id, ok.job_id, short.job_id], timeout=60, interval=0.3)
    assert st[fails.job_id].state == JobState.FAILED and st[fails.job_id].exit_code == 4
    assert st[ok.job_id].state == JobState.COMPLETED and st[ok.job_id].exit_code == 0
    assert st[short.job_id].state == JobState.TIMEOUT, st[short.job_id]
    assert (tmp_path / "ok.out").read_text().strip() in NODES
    st = scheduler.status(rm, [held.job_id, running.job_id, "ƒ2"])
    assert st[held.job_id].state == JobState.PENDING
    assert st[running.job_id].state == JobState.RUNNING
    assert st["ƒ2"].state == JobState.UNKNOWN
    # the inventory: the running job's 2 nodes allocated, a drained node down with its reason
    flux_instance.run(["resource", "drain", "n4", "fan failure"])
    inv = {n.name: n for n in scheduler.inventory(rm)}
    assert sorted(inv) == NODES
    assert sum(1 for n in inv.values() if n.allocated) == 2
    assert not inv["n4"].up and inv["n4"].reason == "drained: fan failure"
    assert all(inv[n].up for n in NODES if n != "n4")
    for jid in (held.job_id, running.job_id):
        scheduler.cancel(rm, jid)
    scheduler.cancel(rm, ok.job_id)  # already over: nothing to do, no error
    st = scheduler.wait(rm, [held.job_id, running.job_id], timeout=60, interval=0.3)
    assert {s.state for s in st.values()} == {JobState.CANCELLED}


def test_batch_job_on_a_crashed_node_is_node_fail(flux_instance, rm, tmp_path):
    job = scheduler.submit(rm, request(["sleep", "300"], tmp_path, "crash", nodes=1,
                                       header_lines=["#flux: --requires=-host:n1"]))
    flux_instance.wait_event(job.job_id, "start")
    node = flux_instance.run(["jobs", "-n", "-o", "{nodelist}", job.job_id]).stdout.strip()
    assert node in ("n2", "n3", "n4")
    flux_instance.lab("crash", node)
    st = scheduler.wait(rm, [job.job_id], timeout=60, interval=0.3)[job.job_id]
    assert st.state == JobState.NODE_FAIL, st
    assert "node failure on " + node in st.message


# --------------------------------------------------------------------------- function jobs


def where_am_i():
    return {"host": socket.gethostname(), "job": os.environ.get("FLUX_JOB_ID"),
            "uri": os.environ.get("FLUX_URI")}


def boom(x):
    raise KeyError(f"missing {x}")


def sleepy(seconds):
    time.sleep(seconds)
    return seconds


def test_function_jobs_on_flux(flux_instance, rm):
    system = RMSystem("lab", rm)
    one = FunctionJob("flux-where", where_am_i, environ=rm.environ)
    one.start({"max_time": "2m", "nodes": 1}, system=system)
    failing = FunctionJob("flux-boom", boom, args=("key",), environ=rm.environ)
    failing.start({"max_time": "2m"}, system=system)
    got = one.get_results(timeout=120, check_interval=0.3)
    assert got["host"] in NODES and got["uri"] != flux_instance.uri  # its own instance
    assert one.remote_id.startswith("ƒ")
    with pytest.raises(KeyError, match="missing key") as err:
        failing.get_results(timeout=120, check_interval=0.3)
    assert "in boom" in err.value.__cause__.text


def test_function_job_on_a_crashed_node_dies(flux_instance, rm):
    system = RMSystem("lab", rm)
    job = FunctionJob("flux-crash", sleepy, args=(300,), environ=rm.environ)
    job.start({"max_time": "10m", "nodes": 1}, system=system,
              header_extra=["#flux: --requires=-host:n1"])  # n1 is rank 0: never crashed
    flux_instance.wait_event(job.remote_id, "start")
    node = flux_instance.run(["jobs", "-n", "-o", "{nodelist}", job.remote_id]).stdout.strip()
    assert node in ("n2", "n3", "n4")
    flux_instance.lab("crash", node)
    with pytest.raises(JobDiedError, match="node_fail"):
        job.get_results(timeout=60, check_interval=0.3)
    assert job.db.get(job.id)["status"] == "died"


# --------------------------------------------------------------------------- fixtures

FIX = Path(__file__).parent / "fixtures" / "flux"
RECORD = os.environ.get("SCR_FLUX_RECORD") == "1"  # rewrite the *.live.txt fixtures


def _normalized(name: str, text: str) -> str:
    """What must not change between runs: job ids and remaining seconds vary."""
    if name.startswith("jobs_status"):
        return "\n".join("<id>|" + line.split("|", 1)[1] for line in text.splitlines())
    if name.startswith("timeleft.limited"):
        assert text.strip().isdigit() and int(text) < parse.UINT_MAX, text
        return "<seconds>\n"
    if name.startswith("submit"):
        assert parse.format_jobid(parse.parse_submit(text)) == text.strip(), text
        return "<f58>\n"
    return text


def check_fixture(name: str, text: str) -> None:
    """Record (SCR_FLUX_RECORD=1) or compare a ``*.live.txt`` fixture with this Flux."""
    path = FIX / name
    if RECORD:
        path.write_text(text, encoding="utf-8")
        return
    assert _normalized(name, path.read_text(encoding="utf-8")) == _normalized(name, text), \
        f"{name}: this Flux printed\n{text}"


def test_live_fixtures_are_what_this_flux_prints(flux_instance, tmp_path):
    """Each ``tests/fixtures/flux/*.live.txt`` is what the plugin's exact command line
    prints on this instance in a fixed situation (offline, drained, draining, excluded
    nodes; jobs in every state and result, including a node failure); the parsers' unit
    tests in test_flux.py read the same files."""
    from scr_plugins_flux.rm import JOBS_FORMAT, LIST_FORMAT, STATUS_FORMAT

    f = flux_instance
    check_fixture("resource_status.exclude.live.txt", f.run(
        ["alloc", "-N4", '--conf=resource.exclude="n3"', "flux", "resource", "status", "-o",
         STATUS_FORMAT], timeout=90).stdout)
    check_fixture("timeleft.unlimited.live.txt", f.run(["run", "flux", "job", "timeleft"]).stdout)
    check_fixture("timeleft.limited.live.txt",
                  f.run(["run", "-t", "30m", "flux", "job", "timeleft"]).stdout)
    submitted = f.run(["submit", "true"]).stdout
    check_fixture("submit.live.txt", submitted)

    def submit(*args: str) -> str:
        return f.run(["submit", *args]).stdout.strip()

    jobs = {"completed": parse.parse_submit(submitted)}
    jobs["failed"] = submit("sh", "-c", "exit 4")
    jobs["nosuch"] = submit("scr-no-such-command")
    jobs["timeout"] = submit("-t", "1s", "sleep", "30")
    jobs["canceled"] = submit("--requires=host:n1", "sleep", "300")
    jobs["canceled_pending"] = submit("--urgency=0", "true")
    jobs["node_failure"] = submit("--requires=host:n4", "sleep", "300")
    jobs["running"] = submit("--requires=host:n2", "sleep", "300")
    for key in ("canceled", "node_failure", "running"):
        f.wait_event(str(jobs[key]), "start")
    jobs["held"] = submit("--urgency=0", "true")
    jobs["depend"] = submit(f"--dependency=afterok:{jobs['running']}", "true")
    f.run(["cancel", str(jobs["canceled"]), str(jobs["canceled_pending"])])
    f.run(["resource", "drain", "n2", "draining: job | still running"])
    f.run(["resource", "drain", "n3", "bad DIMM"])
    f.lab("crash", "n4")
    f.wait_for("n4 offline", lambda: f.ranks_in("offline") == "3")
    jobs["sched"] = submit("-N4", "true")  # n4 is lost: stays pending, no reason given
    for key in ("completed", "failed", "nosuch", "timeout", "canceled", "canceled_pending",
                "node_failure"):
        f.wait_event(str(jobs[key]), "clean")
    f.wait_for("the -N4 job in SCHED", lambda: f.run(
        ["jobs", "-n", "-o", "{state}", str(jobs["sched"])]).stdout.strip() == "SCHED")
    check_fixture("resource_status.live.txt", f.run(
        ["resource", "status", "-o", STATUS_FORMAT]).stdout)
    check_fixture("resource_list.live.txt", f.run(["resource", "list", "-o", LIST_FORMAT]).stdout)
    check_fixture("exec_unreachable.live.txt",
                  f.run(["exec", "-r", "3", "hostname"], check=False).stderr)
    check_fixture("jobs_status.live.txt", "".join(
        f.run(["jobs", "-a", "-n", "-o", JOBS_FORMAT, str(jid)]).stdout
        for jid in jobs.values()))
    assert not RECORD, "fixtures recorded; run again without SCR_FLUX_RECORD=1"


# --------------------------------------------------------------------------- detection


def test_scr_plugins_detects_flux_and_a_local_allocation_still_wins(flux_instance, tmp_path):
    """With FLUX_URI (no explicit choice) every Flux backend detects the environment and is
    the one scr uses: ``scr list-down-nodes`` asks the lab. Inside a ``scr local alloc``
    (SCR_LOCAL_DIR, priority 100 > Flux's 60) the local backend is used instead."""
    env = flux_instance.env(HOME=str(tmp_path / "home"), SCR_NODE_TESTS="none")
    r = subprocess.run([os.path.join(os.path.dirname(PY), "scr"), "plugins", "--json"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    [flux_plugin] = [p for p in json.loads(r.stdout) if p["plugin"] == "flux"]
    detected = {(b["kind"], b["name"]) for b in flux_plugin["provides"] if b["detected"]}
    assert detected == {("resource_manager", "flux"), ("launcher", "flux"),
                        ("remote_executor", "flux")}
    flux_instance.run(["resource", "drain", "n2", "detected"])
    scr = [PY, "-m", "scr_core"]
    r = subprocess.run([*scr, "list-down-nodes", "--reason"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "n2: drained: detected\n", (r.stdout, r.stderr)
    from scr_core.plugins import Registry

    reg = Registry(env)
    assert reg.select("resource_manager", environ=env).spec.name == "flux"
    local = dict(env, SCR_LOCAL_DIR=str(tmp_path / "alloc"))
    assert reg.select("resource_manager", environ=local).spec.name == "local"
    assert reg.select("remote_executor", environ=local).spec.name == "local"
