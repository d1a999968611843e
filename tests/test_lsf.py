"""LSF plugin: parsers on recorded output, argv building, the backends against the test
doubles in tests/doubles/lsf, and live checks when a real LSF is on PATH."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from scr_core.errors import LaunchError, ResourceManagerError
from scr_core.interfaces import BackendContext, JobState, SubmitRequest
from scr_plugins_lsf.launcher import JsrunLauncher, LrunLauncher
from scr_plugins_lsf.plugin import detect, scr_launchers, scr_resource_managers
from scr_plugins_lsf.rm import LsfResourceManager
from scr_plugins_lsf.settings import LsfSettings

from scr_core import conformance
from scr_plugins_lsf import parse

HERE = Path(__file__).parent
FIX = HERE / "fixtures" / "lsf"
DOUBLES = HERE / "doubles" / "lsf"
NODES = ["n1", "n2", "n3", "n4"]


def fixture(name: str) -> str:
    return (FIX / name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- allocation


@pytest.mark.parametrize("text,slots", [
    (fixture("LSB_DJOB_HOSTFILE.summit.constructed.txt"), parse.hostfile_slots),
    (fixture("LSB_HOSTS.summit_unifyfs505.txt"), parse.lsb_hosts_slots),
    (fixture("LSB_MCPU_HOSTS.summit.constructed.txt"), parse.mcpu_hosts_slots),
])
def test_summit_allocation_drops_the_launch_node(text, slots):
    pairs = slots(text)
    assert pairs == [("batch3", 1), ("c05n14", 42), ("c05n15", 42)]
    assert parse.allocation_nodes(pairs) == ["c05n14", "c05n15"]
    assert parse.allocation_nodes(pairs, "first") == ["c05n14", "c05n15"]
    assert parse.allocation_nodes(pairs, "none") == ["batch3", "c05n14", "c05n15"]


def test_generic_lsf_job_and_the_launch_node_setting():
    pairs = parse.mcpu_hosts_slots(fixture("LSB_MCPU_HOSTS.ray_integration12.txt"))
    assert pairs == [("host1", 1), ("host2", 3)]
    # the CORAL heuristic cannot tell this generic job from a launch node + compute node:
    # that is what the launch_node setting is for
    assert parse.allocation_nodes(pairs, "auto") == ["host2"]
    assert parse.allocation_nodes(pairs, "none") == ["host1", "host2"]
    # one slot everywhere (span[ptile=1]) is never mistaken for a launch node
    assert parse.allocation_nodes(parse.mcpu_hosts_slots("a 1 b 1 c 1")) == ["a", "b", "c"]
    assert parse.allocation_nodes(parse.mcpu_hosts_slots("hostA 4")) == ["hostA"]


def test_allocation_edge_cases():
    assert parse.hostfile_slots("") == [] and parse.allocation_nodes([]) == []
    assert parse.mcpu_hosts_slots("   ") == []
    # repeats that are not consecutive are de-duplicated, keeping first occurrences
    assert parse.allocation_nodes(parse.hostfile_slots("a\na\nb\n\na\nc\n"), "none") == [
        "a", "b", "c"]
    with pytest.raises(parse.LsfParseError, match="pairs"):
        parse.mcpu_hosts_slots("h1 4 h2")
    with pytest.raises(parse.LsfParseError, match="not a number"):
        parse.mcpu_hosts_slots("h1 four")
    with pytest.raises(ValueError):
        parse.allocation_nodes([("a", 1)], "sometimes")


# --------------------------------------------------------------------------- bjobs


def test_time_left():
    now = 1_700_000_000.0
    assert parse.parse_time_left(fixture("bjobs_time_left.nolimit.scr.txt"), now) == -1
    assert parse.parse_time_left(fixture("bjobs_time_left.limit.scr.txt"), now) == now + 720
    assert parse.parse_time_left(fixture("bjobs_time_left.hms_estimate.constructed.txt"),
                                 now) == now + 3930
    assert parse.parse_time_left("", now) == 0
    assert parse.parse_time_left("TIME_LEFT\n", now) == 0
    assert parse.parse_time_left("12:00", now) == now + 43200
    with pytest.raises(parse.LsfParseError, match="time_left"):
        parse.parse_time_left("soon", now)


def test_bjobs_status_and_state_mapping():
    recs = parse.parse_bjobs_status(fixture("bjobs_status.constructed.txt"))
    assert recs["22007"].exit_reason == "TERM_OWNER: job killed by owner"
    assert recs["22005"].exit_code == ""
    states = {jid: parse.normalize_state(r.stat, r.exit_code, r.exit_reason)
              for jid, r in recs.items()}
    assert states == {
        "22005": JobState.COMPLETED, "22006": JobState.FAILED,
        "22007": JobState.CANCELLED, "22008": JobState.TIMEOUT,
        "22009": JobState.RUNNING, "22010": JobState.PENDING,
        "22011": JobState.PENDING, "22012": JobState.RUNNING,
        "22013": JobState.RUNNING, "22014": JobState.UNKNOWN,
        "22015": JobState.CANCELLED, "22016": JobState.PENDING,
        "22017": JobState.PREEMPTED, "22018": JobState.UNKNOWN,
    }
    assert parse.parse_bjobs_status("JOBID|STAT|EXIT_CODE|EXIT_REASON\n") == {}
    assert parse.parse_bjobs_status("7[3]|RUN|-|-\n")["7[3]"].exit_code == ""
    with pytest.raises(parse.LsfParseError):
        parse.parse_bjobs_status("garbage without delimiters\n")
    assert parse.not_found_ids(fixture("bjobs_status.notfound.constructed.txt")) == {"22019"}


def test_bsub_output():
    assert parse.parse_bsub(fixture("bsub.volclava.txt")) == "1"
    assert parse.parse_bsub(fixture("bsub.lsf_utils.txt")) == "320"
    assert parse.parse_bsub("Job <12> is submitted to queue <pbatch>.\n") == "12"
    with pytest.raises(parse.LsfParseError, match="no job id"):
        parse.parse_bsub("Request aborted by esub. Job not submitted.\n")


# --------------------------------------------------------------------------- hosts


def test_bhosts_recorded():
    doc = parse.parse_bhosts(fixture("bhosts.ibm_host_status_doc.txt"))
    assert [(h.name, h.status, h.max_slots, h.njobs) for h in doc] == [
        ("hostA", "ok", 55, 2), ("hostB", "closed", 20, 16)]
    vol = parse.parse_bhosts(fixture("bhosts.volclava.txt"))
    assert [h.name for h in vol] == ["cmp1-test", "cmp2-test", "master-test"]
    # plain "closed" (no reason) and ok are not down
    assert parse.down_from_bhosts(doc, ["hostA", "hostB"]) == {}
    assert parse.parse_bhosts("") == []
    with pytest.raises(parse.LsfParseError, match="header"):
        parse.parse_bhosts("hostA ok - 1 0 0 0 0 0\n")


def test_bhosts_down_statuses():
    hosts = parse.parse_bhosts(fixture("bhosts_w.coral.constructed.txt"))
    nodes = [f"lassen{i}" for i in range(11, 21)]
    down = parse.down_from_bhosts(hosts, nodes)
    assert sorted(down) == ["lassen13", "lassen14", "lassen15", "lassen16", "lassen17"]
    assert down["lassen13"].startswith("LSF status unavail: host is down")
    assert "closed_Adm" in down["lassen15"]
    # full/exclusive/busy/window are what our own job's hosts show: not down
    assert not {"lassen11", "lassen12", "lassen18", "lassen20"} & set(down)
    # only the nodes asked about are reported
    assert parse.down_from_bhosts(hosts, ["lassen13"]) == {"lassen13": down["lassen13"]}


def test_lshosts_and_inventory():
    ls = parse.parse_lshosts(fixture("lshosts.volclava.txt"))
    first = ls[0]
    assert (first.name, first.ncpus, first.maxmem_mb, first.resources) == (
        "master-test", 4, 32012, ["cs"])
    inv = parse.inventory(parse.parse_bhosts(fixture("bhosts.volclava.txt")), ls)
    assert [(i.name, i.up, i.cpus, i.memory_mb) for i in inv] == [
        ("cmp1-test", True, 4, 31993), ("cmp2-test", True, 4, 31993),
        ("master-test", True, 4, 32012)]
    coral = parse.inventory(parse.parse_bhosts(fixture("bhosts_w.coral.constructed.txt")))
    by = {i.name: i for i in coral}
    assert by["lassen13"].up is False and by["lassen13"].reason
    assert by["lassen11"].up and by["lassen11"].allocated and not by["lassen11"].available
    assert by["lassen19"].available


def test_jslist():
    steps = parse.parse_jslist(fixture("jslist.scr.txt"))
    assert [(s.step_id, s.status) for s in steps] == [("2", "Running")]
    more = parse.parse_jslist(fixture("jslist.constructed.txt"))
    assert parse.running_step_ids(more) == ["2", "4"]
    assert more[2].exit_status == "137"
    assert parse.parse_jslist("") == [] and parse.parse_jslist("no steps\n") == []


# --------------------------------------------------------------------------- registration


def test_detect_and_specs():
    assert detect({}) is False and detect({"LSB_JOBID": "12"}) is True
    assert detect({"SLURM_JOB_ID": "3", "FLUX_URI": "x"}) is False
    for spec in scr_resource_managers() + scr_launchers():
        conformance.check_spec(spec)
    assert {s.name: s.commands for s in scr_launchers()} == {
        "jsrun": ("jsrun",), "lrun": ("lrun",)}


# --------------------------------------------------------------------------- doubles


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    (d / "nodes").write_text("\n".join(NODES) + "\n")
    return d


@pytest.fixture
def env(tmp_path, state):
    hostfile = tmp_path / "hostfile"
    # a CORAL hostfile: the launch node first (one slot), then 4 slots per compute node
    hostfile.write_text("launch1\n" + "".join(f"{n}\n" * 4 for n in NODES))
    e = dict(os.environ)
    for name in list(e):
        if name.startswith(("LSB_", "SCR_", "FLUX_", "SLURM_")):
            del e[name]
    e.update(PATH=f"{DOUBLES}{os.pathsep}{e.get('PATH', '')}", SCR_DOUBLE_STATE=str(state),
             LSB_JOBID="4242", LSB_DJOB_HOSTFILE=str(hostfile),
             LSB_MCPU_HOSTS="launch1 1 " + " ".join(f"{n} 4" for n in NODES))
    return e


def ctx(env, **settings):
    defaults = {"step_id_wait": 10.0, "kill_grace": 3.0}
    defaults.update(settings)
    return BackendContext(environ=env, settings=LsfSettings(**defaults))


def calls(state, cmd=None):
    path = state / "log"
    if not path.exists():
        return []
    out = [json.loads(line) for line in path.read_text().splitlines()]
    return [c["argv"] for c in out if cmd is None or c["cmd"] == cmd]


def mark_down(state, node, status="unavail"):
    (state / "down").mkdir(exist_ok=True)
    (state / "down" / node).write_text(status + "\n")


def replay(state, cmd, text, rc=0):
    (state / "replay").mkdir(exist_ok=True)
    (state / "replay" / f"{cmd}.out").write_text(text)
    (state / "replay" / f"{cmd}.rc").write_text(str(rc))


def test_rm_conformance_and_queries(env, state):
    seen = conformance.check_resource_manager(LsfResourceManager, ctx(env))
    assert seen["job_id"] == "4242"
    assert seen["nodes"] == NODES          # launch node left out, order kept
    assert seen["down"] == {} and seen["end_time"] == -1
    assert calls(state, "bhosts")[0] == ["-w", *NODES]
    assert calls(state, "bjobs")[0] == ["-noheader", "-o", "time_left", "4242"]

    mark_down(state, "n2")
    mark_down(state, "n4", "closed_Adm")
    down = LsfResourceManager(ctx(env)).down_nodes()
    assert down == {"n2": "LSF status unavail: host is down, or its LIM and sbatchd are "
                          "unreachable",
                    "n4": "LSF status closed_Adm: closed by an LSF administrator"}

    (state / "time_left").write_text("0:12 L\n")
    end = LsfResourceManager(ctx(env)).end_time()
    assert abs(end - (time.time() + 720)) < 5


def test_rm_environment_fallbacks(env, state):
    env = dict(env)
    env["LSB_DJOB_HOSTFILE"] = "/nonexistent/hostfile"
    assert LsfResourceManager(ctx(env)).job_nodes() == NODES   # from LSB_MCPU_HOSTS
    del env["LSB_MCPU_HOSTS"]
    env["LSB_HOSTS"] = "launch1 " + " ".join(f"{n} {n}" for n in NODES)
    assert LsfResourceManager(ctx(env)).job_nodes() == NODES
    assert LsfResourceManager(ctx(env, launch_node="none")).job_nodes() == ["launch1", *NODES]
    env["LSB_MCPU_HOSTS"] = "h1 4 h2"
    with pytest.raises(ResourceManagerError, match="pairs"):
        LsfResourceManager(ctx(env)).job_nodes()


def test_rm_outside_a_job(env):
    bare = {k: v for k, v in env.items() if not k.startswith("LSB_")}
    rm = LsfResourceManager(ctx(bare))
    assert rm.job_id() is None and rm.job_nodes() == [] and rm.down_nodes() == {}
    assert rm.end_time() == 0
    conformance.check_resource_manager(LsfResourceManager, ctx(bare), expect_job=False)


def test_rm_replayed_recordings(env, state, tmp_path):
    hostfile = tmp_path / "coral"
    hostfile.write_text("launch1\n" + "".join(f"lassen{i}\n" * 40 for i in range(11, 21)))
    env = dict(env, LSB_DJOB_HOSTFILE=str(hostfile))
    replay(state, "bhosts", fixture("bhosts_w.coral.constructed.txt"))
    down = LsfResourceManager(ctx(env)).down_nodes()
    assert sorted(down) == ["lassen13", "lassen14", "lassen15", "lassen16", "lassen17"]
    replay(state, "bjobs", fixture("bjobs_time_left.nolimit.scr.txt"))
    assert LsfResourceManager(ctx(env)).end_time() == -1
    replay(state, "bjobs", "", rc=255)        # job unknown: end time unknown
    assert LsfResourceManager(ctx(env)).end_time() == 0
    replay(state, "bjobs", "whatever 12\n")
    with pytest.raises(ResourceManagerError, match="time_left"):
        LsfResourceManager(ctx(env)).end_time()


def test_rm_missing_command(env):
    env = dict(env, PATH="/nonexistent")
    with pytest.raises(ResourceManagerError, match="command not found") as info:
        LsfResourceManager(ctx(env)).down_nodes()
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_submit_argv_and_script():
    rm = LsfResourceManager(BackendContext(environ={}, settings=LsfSettings()))
    req = SubmitRequest(command=["scr", "run", "jsrun", "-n", "4", "./app", "a b"],
                        job_name="ckpt", nodes=4, time_limit=5400, partition="pbatch",
                        account="proj1", output="out.%J", error="err.%J", workdir="/w",
                        environ={"SCR_PREFIX": "/p/x y"}, header_lines=["# site"])
    assert rm.submit_argv(req) == [
        "bsub", "-J", "ckpt", "-nnodes", "4", "-W", "1:30", "-q", "pbatch", "-P", "proj1",
        "-o", "out.%J", "-e", "err.%J", "-cwd", "/w",
        "-env", "all, LSB_DJOB_COMMFAIL_ACTION=KILL_TASKS"]
    assert rm.script_text(req) == ("#!/bin/bash\n# site\nexport SCR_PREFIX='/p/x y'\n"
                                   "scr run jsrun -n 4 ./app 'a b'\n")
    span = LsfResourceManager(BackendContext(environ={}, settings=LsfSettings(
        nodes_option="span", commfail_kill_tasks=False)))
    assert span.submit_argv(SubmitRequest(command=["a"], nodes=2, tasks=5,
                                          fault_tolerant=True)) == [
        "bsub", "-J", "scr-job", "-n", "5", "-R", "span[ptile=3]"]
    assert rm.submit_argv(SubmitRequest(command=["a"], tasks=3, time_limit=1,
                                        fault_tolerant=False)) == [
        "bsub", "-J", "scr-job", "-n", "3", "-W", "0:01"]


def test_submit_status_cancel_with_doubles(env, state):
    rm = LsfResourceManager(ctx(env))
    rec = rm.submit(SubmitRequest(command=["sleep", "1"], nodes=2, job_name="t"))
    assert rec.job_id == "1000" and rec.system == "lsf"
    job = json.loads((state / "jobs" / "1000.json").read_text())
    assert job["script"].endswith("sleep 1\n")
    assert job["argv"][-2:] == ["-env", "all, LSB_DJOB_COMMFAIL_ACTION=KILL_TASKS"]
    assert rm.status([]) == {}
    st = rm.status(["1000", "777"])
    assert st["1000"].state == JobState.PENDING and st["1000"].raw_state == "PEND"
    assert st["777"].state == JobState.UNKNOWN
    assert calls(state, "bjobs")[-1] == [
        "-a", "-noheader", "-o", "jobid stat exit_code exit_reason delimiter='|'",
        "1000", "777"]
    rm.cancel("1000")
    st = rm.status(["1000"])["1000"]
    assert st.state == JobState.CANCELLED and st.exit_code == 130
    assert "TERM_OWNER" in st.message
    rm.cancel("1000")                      # already finished: fine
    with pytest.raises(ResourceManagerError, match="bkill 999"):
        rm.cancel("999")
    conformance.check_job_records(rec, rm.status(["1000"]))


def test_node_inventory_with_doubles(env, state):
    mark_down(state, "n3")
    inv = {i.name: i for i in LsfResourceManager(ctx(env)).node_inventory()}
    assert list(inv) == NODES
    assert inv["n3"].up is False and "unavail" in inv["n3"].state
    assert inv["n1"].up and inv["n1"].cpus == 40 and inv["n1"].memory_mb == 256 * 1024
    with pytest.raises(ResourceManagerError, match="Bad host name"):
        LsfResourceManager(ctx(env)).node_inventory("pbatch")   # not a host group here
    assert calls(state, "bhosts")[-1] == ["-w", "pbatch"]


# --------------------------------------------------------------------------- launchers


def test_launcher_argv():
    env = {"LSB_MCPU_HOSTS": "launch1 1 n1 4 n2 4 n3 4", "LSB_JOBID": "1"}
    c = BackendContext(environ=env, settings=LsfSettings())
    js, lr = JsrunLauncher(c), LrunLauncher(c)
    assert js.build_argv(["-n", "2", "./app"], None, ["n2", "n3"]) == [
        "jsrun", "--exclude_hosts=n2,n3", "-n", "2", "./app"]
    assert js.build_argv(["./app"], None, []) == ["jsrun", "./app"]
    assert lr.build_argv(["-N", "2", "./app"], None, ["n3"]) == [
        "lrun", "--exclude_hosts=n3", "-N", "2", "./app"]
    # "run on these nodes" = exclude the rest of the allocation
    assert js.build_argv(["./app"], ["n1"], []) == ["jsrun", "--exclude_hosts=n2,n3", "./app"]
    assert js.build_argv(["./app"], ["n1", "n2"], ["n2"]) == [
        "jsrun", "--exclude_hosts=n2,n3", "./app"]
    with pytest.raises(LaunchError, match="not nodes of this allocation"):
        js.build_argv(["./app"], ["zz"], [])
    with pytest.raises(LaunchError, match="outside an LSF allocation"):
        JsrunLauncher(BackendContext(environ={})).build_argv(["a"], ["n1"], [])
    with pytest.raises(LaunchError, match="nothing to run"):
        js.launch([])


@pytest.mark.parametrize("cls", [JsrunLauncher, LrunLauncher])
def test_launcher_conformance(cls, env):
    seen = conformance.check_launcher(cls, ctx(env), run_args=["true"],
                                      sleep_args=["sleep", "60"], env=env)
    assert seen["rc"] == 0 and seen["kill_seconds"] < 10


def _wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_jsrun_step_id_and_jskill(env, state):
    launcher = JsrunLauncher(ctx(env))
    first = launcher.launch(["true"], env=env)
    assert launcher.wait(first, 30) == 0
    step = launcher.launch(["sleep", "60"], exclude=["n4"], env=env)
    assert _wait_for(lambda: step.step_id is not None)
    assert step.step_id == "2"             # the new Running step, not step 1
    assert launcher.wait(step, 0.2) is None
    launcher.kill(step)
    assert step.returncode == 143
    assert calls(state, "jskill") == [["2"]]
    assert calls(state, "jsrun")[-1] == ["--exclude_hosts=n4", "sleep", "60"]
    launcher.kill(step)                    # idempotent


def test_jsrun_without_jslist_kills_by_signal(env, state):
    replay(state, "jslist", "", rc=1)
    launcher = JsrunLauncher(ctx(env))
    step = launcher.launch(["sleep", "60"], env=env)
    time.sleep(0.5)
    assert step.step_id is None
    launcher.kill(step)
    assert step.returncode not in (None, 0)
    assert calls(state, "jskill") == []


def test_node_failure_ends_the_step(env, state):
    launcher = JsrunLauncher(ctx(env))
    step = launcher.launch(["sleep", "60"], env=env)
    assert launcher.wait(step, 0.5) is None
    mark_down(state, "n3")
    assert launcher.wait(step, 15) == 137
    # a new step that does not exclude the dead node fails at once; excluding it works
    assert launcher.wait(launcher.launch(["true"], env=env), 15) == 1
    assert launcher.wait(launcher.launch(["true"], exclude=["n3"], env=env), 15) == 0


def test_live_output_and_task_environment(env, capfd):
    launcher = LrunLauncher(ctx(env))
    prog = [sys.executable, "-c",
            "import os; print('task', os.environ['SCR_DOUBLE_RANK'], "
            "os.environ['SCR_DOUBLE_NODE'], flush=True)"]
    step = launcher.launch(prog, exclude=["n1", "n2"], env=env)
    assert launcher.wait(step, 30) == 0
    out = capfd.readouterr().out
    assert "task 0 n3" in out and "task 1 n4" in out
    assert step.argv == ["lrun", "--exclude_hosts=n1,n2", *prog]


def test_launch_of_a_missing_command(env):
    env = dict(env, PATH="/nonexistent")
    with pytest.raises(LaunchError, match="cannot start jsrun") as info:
        JsrunLauncher(ctx(env, step_id_wait=0)).launch(["true"], env=env)
    assert isinstance(info.value.__cause__, OSError)


# --------------------------------------------------------------------------- live


needs_lsf = pytest.mark.skipif(shutil.which("bjobs") is None,
                               reason="LSF is not installed here (no bjobs on PATH)")


@pytest.mark.lsf
@needs_lsf
def test_live_lsf_resource_manager():
    if not os.environ.get("LSB_JOBID"):
        pytest.skip("not inside an LSF job (LSB_JOBID unset)")
    c = BackendContext(environ=dict(os.environ), settings=LsfSettings())
    seen = conformance.check_resource_manager(LsfResourceManager, c)
    assert seen["nodes"]


@pytest.mark.lsf
@needs_lsf
def test_live_jsrun():
    if not (os.environ.get("LSB_JOBID") and shutil.which("jsrun")):
        pytest.skip("not inside an LSF job with jsrun")
    c = BackendContext(environ=dict(os.environ), settings=LsfSettings())
    conformance.check_launcher(JsrunLauncher, c, run_args=["-n", "1", "true"],
                               sleep_args=["-n", "1", "sleep", "60"])


def test_lost_nodes_for_the_step_watch_are_unreachable_hosts_only(env, state):
    """scr run's step watch (issue 17) acts at once on lost_nodes(): unavail and unreach
    hosts are lost; a host an administrator closed keeps its running tasks."""
    rm = LsfResourceManager(ctx(env))
    assert rm.lost_nodes(NODES) == {}
    (state / "down").mkdir(exist_ok=True)
    (state / "down" / NODES[0]).write_text("unavail\n")
    (state / "down" / NODES[1]).write_text("unreach\n")
    (state / "down" / NODES[2]).write_text("closed_Adm\n")
    lost = rm.lost_nodes(NODES)
    assert set(lost) == {NODES[0], NODES[1]}, lost
    assert lost[NODES[0]].startswith("LSF status unavail")
    assert set(rm.down_nodes()) == {NODES[0], NODES[1], NODES[2]}
