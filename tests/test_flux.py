"""Flux plugin: parsers on recorded output, job-id encodings, argv building, and the backends
against the test double tests/doubles/flux/flux. The live tests against a real Flux instance
are in test_flux_live.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scr_core.errors import LaunchError, RemoteExecError, ResourceManagerError
from scr_core.interfaces import BackendContext, JobState, SubmitRequest
from scr_plugins_flux.launcher import FluxRunLauncher, split_flux_args
from scr_plugins_flux.plugin import (
    detect,
    scr_launchers,
    scr_remote_executors,
    scr_resource_managers,
)
from scr_plugins_flux.rexec import FluxExecRemoteExecutor
from scr_plugins_flux.rm import STATUS_FORMAT, FluxResourceManager
from scr_plugins_flux.settings import FluxSettings

from scr_core import conformance
from scr_plugins_flux import parse

HERE = Path(__file__).parent
FIX = HERE / "fixtures" / "flux"
DOUBLES = HERE / "doubles" / "flux"
NODES = ["node1", "node2", "node3", "node4"]
INSTANCE_ID = 1234567890123  # what 'flux getattr jobid' says in the double


def fixture(name: str) -> str:
    return (FIX / name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- job ids


def test_f58_vectors_of_flux_core():
    pairs = [line.split() for line in fixture("jobid_vectors.fluid_test.txt").splitlines()]
    assert len(pairs) == 14
    for dec, f58 in pairs:
        assert parse.encode_f58(int(dec)) == f58
        assert parse.parse_jobid(f58) == int(dec)
        assert parse.parse_jobid("f" + f58[1:]) == int(dec)      # ASCII prefix
        assert parse.parse_jobid(dec) == int(dec)
    assert parse.parse_jobid("f111") == 0


def test_jobid_forms_round_trip():
    jid = parse.parse_submit(fixture("submit.lsf_utils.txt"))
    assert parse.format_jobid(jid) == "ƒ27fJYEVm"
    for style in ("f58", "f58plain", "dec", "hex", "dothex"):
        text = parse.format_jobid(jid, style)
        assert parse.parse_jobid(text) == jid, style
    assert parse.parse_jobid("job." + parse.format_jobid(jid, "dothex")) == jid
    assert parse.parse_jobid(f"  {jid}\n") == jid
    # every id flux jobs printed (default format) decodes and re-encodes identically
    for line in fixture("jobs_default.lsf_utils.txt").splitlines()[1:]:
        word = line.split()[0]
        assert parse.format_jobid(parse.parse_jobid(word)) == word


@pytest.mark.parametrize("bad,match", [
    ("", "empty"), ("academy-ozone-bogus--prague-trumpet-enigma", "mnemonic"),
    ("ƒ0OIl", "F58"), ("ƒ" + "z" * 13, "F58"), ("12.34", "dotted"),
    ("nonsense", "not a Flux job id"), ("-5", "mnemonic"), (str(1 << 64), "out of range"),
])
def test_bad_jobids(bad, match):
    with pytest.raises(parse.FluxParseError, match=match):
        parse.parse_jobid(bad)
    with pytest.raises(parse.FluxParseError):
        parse.parse_submit("")


# --------------------------------------------------------------------------- resources


def down_of(name, nodes=None):
    return parse.down_from_status(parse.parse_resource_status(fixture(name)), nodes)


def test_resource_status_recordings():
    assert down_of("resource_status.drain.txt") == {"foo1": "drained", "foo2": "drained"}
    assert down_of("resource_status.offline.txt") == {
        "foo2": "offline (broker not running or lost)"}
    assert down_of("resource_status.torpid.txt") == {
        "foo4": "torpid (broker unresponsive)", "foo1": "drained", "foo2": "drained"}
    fluke = down_of("resource_status.fluke.txt")
    assert len(fluke) == 11 + 3 + 2
    assert fluke["fluke1"] == "excluded by configuration"
    assert fluke["fluke43"] == "drained"
    assert fluke["fluke103"].startswith("offline")
    assert "fluke6" not in fluke
    # restricted to the job's nodes
    assert down_of("resource_status.fluke.txt", ["fluke6", "fluke17"]) == {
        "fluke17": fluke["fluke17"]}


def test_resource_status_older_releases():
    assert down_of("resource_status.exclude_old.txt") == {
        "foo2": "offline (broker not running or lost)", "foo1": "excluded by configuration"}
    old = down_of("resource_status.example_old.txt")
    assert old["foo1"] == "excluded by configuration; drained"
    assert "offline" in old["foo2"] and "drained" in old["foo2"]
    assert down_of("resource_status.adminguide.txt") == {"fluke25": "drained"}
    assert parse.parse_resource_status(fixture("resource_status.adminguide_empty.txt")) == []


def test_resource_status_reasons_and_errors():
    rows = parse.parse_resource_status(fixture("resource_status.reason.constructed.txt"))
    assert [(r.state, r.offline, r.nodes) for r in rows] == [
        ("avail", False, ["foo3", "foo4"]), ("drained", False, ["foo1"]),
        ("drained", True, ["foo2"])]
    down = parse.down_from_status(rows)
    assert down == {"foo1": "drained: node is fubar",
                    "foo2": "drained; offline (broker not running or lost): bad DIMM | "
                            "replaced"}
    with pytest.raises(parse.FluxParseError, match="header"):
        parse.parse_resource_status("avail 2 0-1 foo[1-2]\n")
    with pytest.raises(parse.FluxParseError, match="NODELIST"):
        parse.parse_resource_status("STATE NNODES\navail 2\n")
    with pytest.raises(parse.FluxParseError, match="hostlist"):
        parse.parse_resource_status("STATE NNODES NODELIST\navail 2 foo[1-\n")
    assert parse.parse_resource_status("") == []


def test_resource_list_and_inventory():
    listing = parse.parse_resource_list(fixture("resource_list.adminguide.txt"))
    assert [(r.state, r.nnodes, r.ncores, len(r.nodes)) for r in listing] == [
        ("free", 15, 60, 15), ("down", 1, 4, 1)]
    lsfu = parse.parse_resource_list(fixture("resource_list.lsf_utils.txt"))
    assert [(r.state, r.nodes, r.ncores) for r in lsfu] == [
        ("free", ["linux01", "linux02"], 3)]
    status = parse.parse_resource_status(fixture("resource_status.adminguide.txt"))
    inv = {i.name: i for i in parse.inventory(listing, status)}
    assert len(inv) == 16
    assert inv["fluke25"].up is False and inv["fluke25"].reason == "drained"
    assert inv["fluke25"].state == "drain"
    assert inv["fluke26"].up and inv["fluke26"].available and inv["fluke26"].cpus == 4


def test_hostlists_and_ranks():
    assert parse.parse_hostlist("pi[3,0]") == ["pi3", "pi0"]     # RFC 29 keeps order
    assert parse.rank_map(["h", "h", "g", "h"]) == {"h": 0, "g": 2}
    with pytest.raises(parse.FluxParseError):
        parse.parse_hostlist("n[1-")


# --------------------------------------------------------------------------- jobs / time


def test_jobs_states():
    recs = parse.parse_jobs(fixture("jobs_status.constructed.txt"))
    got = {jid - 14112474005504: parse.normalize_state(r.state, r.result, r.exception_type,
                                                       r.exception_note)
           for jid, r in recs.items()}
    assert got == {0: JobState.COMPLETED, 1: JobState.RUNNING, 2: JobState.PENDING,
                   3: JobState.NODE_FAIL, 4: JobState.CANCELLED, 5: JobState.TIMEOUT,
                   6: JobState.PENDING, 7: JobState.RUNNING, 8: JobState.FAILED,
                   9: JobState.UNKNOWN}
    assert recs[14112474005508].returncode == -128
    assert recs[14112474005505].returncode is None
    assert recs[14112474005512].exception_note.startswith("task 0: start failed")
    # the status word of `flux jobs {status}` maps too
    assert parse.normalize_state("CANCELED") == JobState.CANCELLED
    assert parse.normalize_state("INACTIVE", "") == JobState.UNKNOWN
    assert parse.parse_jobs("JOBID|STATE\n\n") == {}
    assert parse.parse_jobs("ƒ27fJYEVm|RUN\n")[parse.parse_jobid("ƒ27fJYEVm")].state == "RUN"
    with pytest.raises(parse.FluxParseError):
        parse.parse_jobs("notanid|RUN\n")


def test_live_recordings():
    """What the lab's real Flux printed (``*.live.txt``, kept true by test_flux_live.py)."""
    recs = list(parse.parse_jobs(fixture("jobs_status.live.txt")).values())
    got = [parse.normalize_state(r.state, r.result, r.exception_type, r.exception_note)
           for r in recs]
    assert got == [JobState.COMPLETED, JobState.FAILED, JobState.FAILED, JobState.TIMEOUT,
                   JobState.CANCELLED, JobState.CANCELLED, JobState.NODE_FAIL,
                   JobState.RUNNING, JobState.PENDING, JobState.PENDING, JobState.PENDING]
    assert [r.returncode for r in recs[:7]] == [0, 4, 127, 142, 143, -128, 1]
    assert recs[6].exception_type == "exec"  # a lost critical rank: not "node-failure"
    assert recs[6].exception_note == "node failure on n4 (rank 3)"
    status = parse.parse_resource_status(fixture("resource_status.live.txt"))
    assert parse.down_from_status(status) == {
        "n2": "draining: draining: job | still running", "n3": "drained: bad DIMM",
        "n4": "offline (broker not running or lost)"}
    assert parse.down_from_status(parse.parse_resource_status(
        fixture("resource_status.exclude.live.txt"))) == {"n3": "excluded by configuration"}
    inv = {n.name: n for n in parse.inventory(
        parse.parse_resource_list(fixture("resource_list.live.txt")), status)}
    assert sorted(inv) == ["n1", "n2", "n3", "n4"]
    assert inv["n1"].up and inv["n1"].available and inv["n1"].cpus == 1
    # a draining node is listed both allocated and down: allocated, not available
    assert inv["n2"].up and inv["n2"].allocated and not inv["n2"].available
    assert inv["n2"].state == "draining"
    assert not inv["n3"].up and inv["n3"].reason == "drained: bad DIMM"
    assert not inv["n4"].up and inv["n4"].state == "avail*"
    assert parse.parse_exec_unreachable(68, fixture("exec_unreachable.live.txt"))
    now = 1_700_000_000.0
    assert parse.parse_timeleft(fixture("timeleft.unlimited.live.txt"), now) == -1
    assert parse.parse_timeleft(fixture("timeleft.limited.live.txt"), now) == now + 1799
    assert parse.format_jobid(parse.parse_submit(fixture("submit.live.txt"))) == \
        fixture("submit.live.txt").strip()


def test_time_left_and_expiration():
    now = 1_700_000_000.0
    assert parse.parse_timeleft(fixture("timeleft.unlimited.constructed.txt"), now) == -1
    assert parse.parse_timeleft(fixture("timeleft.limited.constructed.txt"), now) == now + 1727
    assert parse.parse_timeleft("0\n", now) == now
    with pytest.raises(parse.FluxParseError):
        parse.parse_timeleft("1.5h", now)
    assert parse.parse_expiration("0.0") == -1
    assert parse.parse_expiration("1700000123.75\n") == 1700000123
    with pytest.raises(parse.FluxParseError):
        parse.parse_expiration("")


def test_exec_unreachable():
    err = fixture("exec_unreachable.constructed.txt")
    assert parse.parse_exec_unreachable(68, err)
    assert not parse.parse_exec_unreachable(68, "")     # the command itself exited 68
    assert not parse.parse_exec_unreachable(1, err)


# --------------------------------------------------------------------------- registration


def test_detect_and_specs():
    assert detect({}) is False and detect({"LSB_JOBID": "1"}) is False
    assert detect({"FLUX_URI": "local:///run/flux/local"}) is True
    assert detect({"FLUX_JOB_ID": "ƒ27fJYEVm"}) is True
    for spec in scr_resource_managers() + scr_launchers() + scr_remote_executors():
        conformance.check_spec(spec)
    assert scr_launchers()[0].commands == ("flux",)
    # inside LSF or Slurm, a Flux instance is the innermost manager and must win
    from scr_plugins_lsf.plugin import scr_resource_managers as lsf_rms
    assert scr_resource_managers()[0].priority > lsf_rms()[0].priority


# --------------------------------------------------------------------------- doubles


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "state"
    (d / "attr").mkdir(parents=True)
    (d / "nodes").write_text("\n".join(NODES) + "\n")
    (d / "attr" / "jobid").write_text(f"{INSTANCE_ID}\n")
    return d


@pytest.fixture
def env(state):
    e = dict(os.environ)
    for name in list(e):
        if name.startswith(("LSB_", "SCR_", "FLUX_", "SLURM_")):
            del e[name]
    e.update(PATH=f"{DOUBLES}{os.pathsep}{e.get('PATH', '')}", SCR_DOUBLE_STATE=str(state),
             FLUX_URI="local:///tmp/scr-test-flux/local")
    return e


def ctx(env, **settings):
    defaults = {"kill_grace": 3.0}
    defaults.update(settings)
    return BackendContext(environ=env, settings=FluxSettings(**defaults))


def calls(state):
    path = state / "log"
    if not path.exists():
        return []
    return [json.loads(line)["argv"] for line in path.read_text().splitlines()]


def mark_down(state, node, how="offline"):
    (state / "down").mkdir(exist_ok=True)
    (state / "down" / node).write_text(how + "\n")


def replay(state, key, out, rc=0, err=""):
    (state / "replay").mkdir(exist_ok=True)
    (state / "replay" / f"{key}.out").write_text(out)
    (state / "replay" / f"{key}.rc").write_text(str(rc))
    (state / "replay" / f"{key}.err").write_text(err)


def flux(env, *args):
    return subprocess.run(["flux", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_rm_conformance_and_down_nodes(env, state):
    seen = conformance.check_resource_manager(FluxResourceManager, ctx(env))
    assert seen["job_id"] == parse.encode_f58(INSTANCE_ID)
    assert seen["nodes"] == NODES and seen["down"] == {} and seen["end_time"] == -1
    assert ["getattr", "jobid"] in calls(state)
    assert ["resource", "status", "-o", STATUS_FORMAT] in calls(state)
    assert ["job", "timeleft"] in calls(state)

    mark_down(state, "node2", "drained bad DIMM on slot 3")
    mark_down(state, "node4", "offline")
    mark_down(state, "node3", "torpid")
    assert FluxResourceManager(ctx(env)).down_nodes() == {
        "node2": "drained: bad DIMM on slot 3",
        "node3": "torpid (broker unresponsive)",
        "node4": "offline (broker not running or lost)"}
    assert FluxResourceManager(ctx(env, jobid_format="dec")).job_id() == str(INSTANCE_ID)


def test_rm_job_ids(env, state):
    (state / "attr" / "jobid").unlink()
    rm = FluxResourceManager(ctx(env))
    assert rm.job_id() is None         # an instance not launched as a job
    conformance.check_resource_manager(FluxResourceManager, ctx(env), expect_job=False)
    (state / "attr" / "jobid").write_text("12345.0\n")   # PMI name from another RM
    assert FluxResourceManager(ctx(env)).job_id() == "12345.0"
    replay(state, "flux-job-id", "123\n")
    words = dict(env, FLUX_JOB_ID="academy-ozone-bogus--prague-trumpet-enigma")
    assert FluxResourceManager(ctx(words)).job_id() == parse.encode_f58(123)
    bare = {k: v for k, v in env.items() if not k.startswith("FLUX_")}
    rm = FluxResourceManager(ctx(bare))
    assert rm.job_id() is None and rm.job_nodes() == [] and rm.end_time() == 0


def test_rm_inside_a_job(env, state):
    job_env = dict(env, FLUX_JOB_ID="ƒ27fJYEVm")
    replay(state, "flux-jobs", "node[2-3]\n")
    rm = FluxResourceManager(ctx(job_env))
    assert rm.job_id() == "ƒ27fJYEVm"
    assert rm.job_nodes() == ["node2", "node3"]
    mark_down(state, "node3")
    mark_down(state, "node4")
    assert rm.down_nodes() == {"node3": "offline (broker not running or lost)"}
    dec = str(parse.parse_jobid("ƒ27fJYEVm"))
    assert ["jobs", "-n", "-o", "{nodelist}", dec] in calls(state)


def test_rm_end_time(env, state):
    (state / "timeleft").write_text("1727\n")
    assert abs(FluxResourceManager(ctx(env)).end_time() - (time.time() + 1727)) < 5
    # flux-core without 'flux job timeleft': the job's expiration in the parent instance
    replay(state, "flux-job-timeleft", "", rc=1,
           err="flux-job: Unknown subcommand 'timeleft'\n")
    replay(state, "flux-jobs", "1700000123.5\n")
    assert FluxResourceManager(ctx(env)).end_time() == 1700000123
    assert calls(state)[-1] == ["--parent", "jobs", "-n", "-o", "{expiration}",
                                str(INSTANCE_ID)]
    replay(state, "flux-job-timeleft", "", rc=1,
           err="flux-job: unable to associate this process with a Flux job\n")
    assert FluxResourceManager(ctx(env)).end_time() == 0
    replay(state, "flux-job-timeleft", "soon\n")
    with pytest.raises(ResourceManagerError, match="timeleft"):
        FluxResourceManager(ctx(env)).end_time()


def test_rm_failures(env, state):
    replay(state, "flux-resource-status", "", rc=1, err="flux-resource: ERROR: EPROTO\n")
    with pytest.raises(ResourceManagerError, match="flux resource status failed"):
        FluxResourceManager(ctx(env)).down_nodes()
    with pytest.raises(ResourceManagerError, match="command not found") as info:
        FluxResourceManager(ctx(dict(env, PATH="/nonexistent"))).job_nodes()
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_node_inventory(env, state):
    mark_down(state, "node2", "drained fan")
    inv = {i.name: i for i in FluxResourceManager(ctx(env)).node_inventory()}
    assert sorted(inv) == NODES
    assert inv["node2"].up is False and inv["node2"].reason == "drained: fan"
    assert inv["node1"].up and inv["node1"].cpus == 4 and inv["node1"].available
    FluxResourceManager(ctx(env)).node_inventory("pdebug")
    assert calls(state)[-2][-2:] == ["-q", "pdebug"]


def test_status_and_cancel(env, state):
    rm = FluxResourceManager(ctx(env))
    assert rm.status([]) == {}
    done = flux(env, "run", "-N1", "true")
    assert done.returncode == 0
    pending = flux(env, "submit", "-N1", "sleep", "60").stdout.strip()
    completed = parse.encode_f58(14112474005504)
    st = rm.status([completed, pending, "ƒ2", str(parse.parse_jobid(pending))])
    assert st[completed].state == JobState.COMPLETED and st[completed].exit_code == 0
    assert st[pending].state == JobState.PENDING and st[pending].raw_state == "SCHED"
    assert st["ƒ2"].state == JobState.UNKNOWN
    assert st[str(parse.parse_jobid(pending))].state == JobState.PENDING
    rm.cancel(pending)
    after = rm.status([pending])[pending]
    assert after.state == JobState.CANCELLED and after.exit_code == -128
    assert ["cancel", str(parse.parse_jobid(pending))] in calls(state)
    rm.cancel(pending)                     # inactive already: not an error
    with pytest.raises(ResourceManagerError, match="flux cancel"):
        rm.cancel("ƒ2")


def test_status_replayed(env, state):
    replay(state, "flux-jobs", fixture("jobs_status.constructed.txt"))
    ids = [parse.encode_f58(14112474005504 + i) for i in (0, 3, 5)]
    st = FluxResourceManager(ctx(env)).status(ids)
    assert [st[i].state for i in ids] == [JobState.COMPLETED, JobState.NODE_FAIL,
                                         JobState.TIMEOUT]
    assert st[ids[1]].message.startswith("node-failure: node failure on node3")
    assert st[ids[1]].raw_state == "INACTIVE/FAILED" and st[ids[1]].exit_code == 143


def test_status_failures(env, state):
    rm = FluxResourceManager(ctx(env))
    replay(state, "flux-jobs", "", rc=1, err="flux-jobs: ERROR: Unable to connect to Flux\n")
    with pytest.raises(ResourceManagerError, match="flux jobs failed"):
        rm.status(["ƒ27fJYEVm"])
    replay(state, "flux-jobs", "", rc=1, err="flux-jobs: ERROR: 27fJYEVm: unknown job id\n")
    assert rm.status(["ƒ27fJYEVm"])["ƒ27fJYEVm"].state == JobState.UNKNOWN


def test_submit(env, state):
    rm = FluxResourceManager(ctx(env))
    req = SubmitRequest(command=["scr", "run", "flux", "run", "-N3", "./app"], nodes=4,
                        time_limit=3600, partition="pbatch", account="guests",
                        output="o.txt", error="e.txt", workdir="/w", job_name="ck")
    assert rm.submit_argv(req, "/tmp/s.sh") == [
        "flux", "batch", "--job-name", "ck", "-N", "4", "-t", "3600s", "-q", "pbatch",
        "--setattr=system.bank=guests", "--output", "o.txt", "--error", "e.txt",
        "--cwd", "/w", "/tmp/s.sh"]
    rec = rm.submit(SubmitRequest(command=["true"], nodes=1, tasks=2))
    assert rec.system == "flux" and parse.parse_jobid(rec.job_id) == 14112474005504
    assert Path(rec.script).read_text().endswith("true\n")
    assert calls(state)[-1][:6] == ["batch", "--job-name", "scr-job", "-N", "1", "-n"]


# --------------------------------------------------------------------------- launcher


def test_split_and_build_argv():
    assert split_flux_args(["run", "-N2", "app"]) == ([], ["run"], ["-N2", "app"])
    assert split_flux_args(["--parent", "mini", "run", "app"]) == (
        ["--parent"], ["mini", "run"], ["app"])
    assert split_flux_args(["-N2", "app"]) == ([], ["run"], ["-N2", "app"])
    for bad in (["alloc", "-N2"], ["batch", "x.sh"], []):
        with pytest.raises(LaunchError):
            split_flux_args(bad)
    la = FluxRunLauncher(BackendContext(environ={}, settings=FluxSettings()))
    assert la.build_argv(["run", "-N2", "app"], None, ["n1", "n2", "n4"]) == [
        "flux", "run", "--requires=-host:n[1-2,4]", "-N2", "app"]
    assert la.build_argv(["mini", "run", "app"], ["a1"], []) == [
        "flux", "mini", "run", "--requires=host:a1", "app"]
    assert la.build_argv(["run", "app"], ["a1", "a2"], ["a2"]) == [
        "flux", "run", "--requires=host:a[1-2]", "--requires=-host:a2", "app"]
    assert la.submit_argv(["mini", "run", "-n4", "app"], None, ["x"]) == [
        "flux", "mini", "submit", "--requires=-host:x", "-n4", "app"]
    assert la.attach_argv(["--parent", "run", "app"], "42") == [
        "flux", "--parent", "job", "attach", "42"]
    assert la.one_node_argv("node7", ["hostname"]) == [
        "flux", "run", "-N1", "-n1", "--requires=host:node7", "hostname"]


def test_launcher_conformance(env):
    seen = conformance.check_launcher(FluxRunLauncher, ctx(env), run_args=["run", "true"],
                                      sleep_args=["run", "sleep", "60"], env=env)
    assert seen["rc"] == 0 and seen["kill_seconds"] < 10


def test_launch_captures_the_job_id_and_cancels(env, state):
    la = FluxRunLauncher(ctx(env))
    step = la.launch(["run", "-N2", "sleep", "60"], exclude=["node1"], env=env)
    jid = step.data["jobid"]
    assert step.step_id == parse.encode_f58(jid)
    assert step.argv == ["flux", "run", "--requires=-host:node1", "-N2", "sleep", "60"]
    assert ["submit", "--requires=-host:node1", "-N2", "sleep", "60"] in calls(state)
    assert la.wait(step, 0.3) is None
    deadline = time.monotonic() + 15
    while ["job", "attach", str(jid)] not in calls(state) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ["job", "attach", str(jid)] in calls(state)
    la.kill(step)
    assert step.returncode == 143
    assert ["cancel", str(jid)] in calls(state)
    st = FluxResourceManager(ctx(env)).status([step.step_id])[step.step_id]
    assert st.state == JobState.CANCELLED


def test_exclusion_and_live_output(env, state, capfd):
    la = FluxRunLauncher(ctx(env))
    prog = [sys.executable, "-c",
            "import os; print('on', os.environ['SCR_DOUBLE_NODE'], flush=True)"]
    step = la.launch(["run", "-N2", *prog], exclude=["node1", "node2"], env=env)
    assert la.wait(step, 30) == 0
    out = capfd.readouterr().out
    assert "on node3" in out and "on node4" in out and "node1" not in out


def test_node_failure_and_kill_step_id(env, state):
    la = FluxRunLauncher(ctx(env))
    step = la.launch(["run", "-N4", "sleep", "60"], env=env)
    assert la.wait(step, 0.5) is None
    mark_down(state, "node2")
    assert la.wait(step, 15) == 137
    st = FluxResourceManager(ctx(env)).status([step.step_id])[step.step_id]
    assert st.state == JobState.NODE_FAIL and "node2" in st.message
    other = la.launch(["run", "-N1", "sleep", "60"], exclude=["node2"], env=env)
    assert la.wait(other, 0.3) is None
    la.kill_step_id(other.step_id)
    assert la.wait(other, 15) == 143


def test_launch_errors(env, state):
    la = FluxRunLauncher(ctx(env))
    with pytest.raises(LaunchError, match="unsatisfiable"):
        la.launch(["run", "-N5", "true"], env=env)
    with pytest.raises(LaunchError, match="command not found"):
        la.launch(["run", "true"], env=dict(env, PATH="/nonexistent"))
    replay(state, "flux-submit", "\n")
    with pytest.raises(LaunchError, match="no job id"):
        la.launch(["run", "true"], env=env)


# --------------------------------------------------------------------------- remote exec


def test_remote_exec_conformance(env, state):
    mark_down(state, "node4")
    res = conformance.check_remote_executor(FluxExecRemoteExecutor, ctx(env),
                                            ["node1", "node3"],
                                            unreachable=["node4", "nothere"])
    assert res["node4"].unreachable and "No route to host" in res["node4"].stderr
    assert res["nothere"].unreachable and "not a node" in res["nothere"].stderr
    assert ["exec", "-n", "-r", "2", "echo", "UP"] in calls(state)


def test_remote_exec_per_node_results(env):
    rx = FluxExecRemoteExecutor(ctx(env))
    res = rx.run(["sh", "-c", 'echo "$SCR_DOUBLE_NODE"; test "$SCR_DOUBLE_NODE" != node2'],
                 NODES, fanout=2)
    assert list(res) == NODES
    assert res.failed() == ["node2"] and res["node2"].rc == 1
    assert res["node3"].stdout == "node3\n" and res["node3"].rc == 0
    assert "Exit" not in res["node2"].stderr
    slow = rx.run(["sleep", "30"], ["node1", "node2"], timeout=0.5)
    assert all(r.timed_out and r.rc is None for r in slow.values())
    assert rx.run(["true"], []) == {}
    with pytest.raises(RemoteExecError):
        rx.run([], ["node1"])


def test_lost_nodes_for_the_step_watch_are_offline_brokers_only(env, state):
    """scr run's step watch (issue 17) acts at once on lost_nodes(): an offline broker is
    lost, a drained, excluded or torpid one (busy, or an admin's word) is not."""
    rm = FluxResourceManager(ctx(env))
    assert rm.lost_nodes(NODES) == {}
    mark_down(state, "node2", "drained bad DIMM")
    mark_down(state, "node3", "torpid")
    mark_down(state, "node4", "offline")
    assert rm.lost_nodes(NODES) == {"node4": "offline (broker not running or lost)"}
    assert rm.lost_nodes(["node1", "node2"]) == {}
