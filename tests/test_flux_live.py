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
import sys
import textwrap
import time
from pathlib import Path

import pytest
from scr_core.interfaces import BackendContext
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
        assert abs(got["end_time"] - expiration(flux_instance, jid)) <= 1.5
    unlimited = probe_of(flux_instance.run(["run", "-N1", *probe]).stdout)
    assert unlimited["end_time"] == -1 and unlimited["job_id"] == unlimited["FLUX_JOB_ID"]


def test_rm_inside_flux_alloc_and_flux_batch(flux_instance, probe, tmp_path):
    """The initial program of ``flux alloc``/``flux batch`` (a nested instance) has no
    FLUX_JOB_ID: the job id is the instance's ``jobid``, the nodes are its brokers' hosts,
    the end time the alloc/batch job's expiration."""
    alloc = flux_instance.run(["alloc", "-N3", "-t", "4m", "--job-name=scr-alloc-probe",
                               *probe], timeout=90).stdout
    got = probe_of(alloc)
    assert got["FLUX_JOB_ID"] is None and got["job_id"]
    listed = flux_instance.run(["jobs", "-a", "-n", "-o", "{id.f58}|{name}|{nodelist}"]).stdout
    rows = [line.split("|") for line in listed.splitlines()]
    [(jid, nodelist)] = [(r[0], r[2]) for r in rows if r[1] == "scr-alloc-probe"]
    assert got["job_id"] == jid
    assert got["nodes"] == parse.parse_hostlist(nodelist) and len(got["nodes"]) == 3
    assert abs(got["end_time"] - expiration(flux_instance, jid)) <= 1.5

    script = tmp_path / "batch.sh"
    script.write_text("#!/bin/sh\n" + " ".join(probe) + "\n")
    out = tmp_path / "batch.out"
    jid = flux_instance.run(["batch", "-N2", "-t", "3m", f"--output={out}",
                             str(script)]).stdout.strip()
    flux_instance.wait_event(jid, "clean", 90)
    got = probe_of(out.read_text())
    assert got["FLUX_JOB_ID"] is None and got["job_id"] == jid
    assert len(got["nodes"]) == 2 and got["host"] == got["nodes"][0]
    assert abs(got["end_time"] - expiration(flux_instance, jid)) <= 1.5


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
    t0 = time.monotonic()
    launcher.kill(step)
    assert step.returncode == 143 and time.monotonic() - t0 < 5.0 + 5.0
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
