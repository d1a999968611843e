"""The scheduler API (pure helpers) and the local backend's real batch jobs: detached process
groups with their own virtual allocations, in every state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from scr_core.batch import scheduler
from scr_core.errors import NotSupportedError, ResourceManagerError, UsageError
from scr_core.interfaces import BackendContext, JobRecord, JobState, NodeInfo, ResourceManager
from scr_core.local import batch as local_batch
from scr_core.local.allocation import LocalAllocation
from scr_core.local.backend import LocalResourceManager
from scr_core.local.settings import LocalSettings

PARTS = {
    "batch": {"nodes": "bn[1-8]", "cpus": 4, "memory": "8G"},
    "debug": {"nodes": "dn[1-2]", "cpus": 2, "memory": "1G", "max_time": "30s"},
}
DEMO = [sys.executable, "-m", "scr_core.demo", "--step-seconds", "0.05", "--ckpt-every", "5",
        "--size-kb", "4"]


# --------------------------------------------------------------------------- pure helpers


def names(prefix, n):
    return [f"{prefix}{i}" for i in range(1, n + 1)]


def test_chunks_contiguous_and_natural_order():
    nodes = list(reversed(names("n", 10)))  # order given does not matter: natural sort
    assert scheduler.chunk_nodes(nodes, chunks=2) == [names("n", 5),
                                                       [f"n{i}" for i in range(6, 11)]]
    # 10 nodes in 3 equal chunks: 3 each, one left over and dropped
    chunks = scheduler.chunk_nodes(nodes, chunks=3)
    assert [len(c) for c in chunks] == [3, 3, 3]
    assert chunks[2] == ["n7", "n8", "n9"]


def test_chunks_distributed_spreads_each_chunk():
    chunks = scheduler.chunk_nodes(names("n", 8), chunks=2, selection="distributed")
    assert chunks == [["n1", "n3", "n5", "n7"], ["n2", "n4", "n6", "n8"]]
    chunks = scheduler.chunk_nodes(names("n", 9), size=3, selection="distributed")
    assert chunks[0] == ["n1", "n4", "n7"]
    flat = [n for chunk in chunks for n in chunk]
    assert sorted(flat, key=scheduler.natural_key) == names("n", 9)


def test_chunks_random_and_rand_dist_are_disjoint_and_seeded():
    for selection in ("random", "rand_dist"):
        a = scheduler.chunk_nodes(names("n", 12), chunks=3, selection=selection, seed=7)
        b = scheduler.chunk_nodes(names("n", 12), chunks=3, selection=selection, seed=7)
        assert a == b
        flat = [n for chunk in a for n in chunk]
        assert len(flat) == len(set(flat)) == 12
        assert all(len(c) == 4 for c in a)
    # rand_dist: one node from each of the 4 segments of the first chunk's pool
    first = scheduler.chunk_nodes(names("n", 12), chunks=3, selection="rand_dist", seed=1)[0]
    idx = [int(n[1:]) - 1 for n in first]
    assert [i // 3 for i in idx] == [0, 1, 2, 3]


def test_chunks_backfill_and_errors():
    chunks = scheduler.chunk_nodes(names("n", 7), size=3, extra="backfill")
    assert chunks == [["n1", "n2", "n3"], ["n4", "n5", "n6"], ["n4", "n5", "n7"]]
    with pytest.raises(UsageError, match="cannot make 5 chunks"):
        scheduler.chunk_nodes(names("n", 4), chunks=5)
    with pytest.raises(UsageError, match="either"):
        scheduler.chunk_nodes(names("n", 4), chunks=2, size=2)
    with pytest.raises(UsageError, match="unknown node selection"):
        scheduler.chunk_nodes(names("n", 4), chunks=2, selection="best")
    with pytest.raises(UsageError, match="at least 1"):
        scheduler.chunk_nodes(names("n", 4), chunks=0)


def inv():
    out = [NodeInfo(f"a{i}", up=True, available=i != 2, cpus=8, memory_mb=1000,
                    partitions=["pa"]) for i in range(1, 7)]
    out[4].up = False
    out[4].reason = "bad DIMM"
    out.append(NodeInfo("b1", up=True, cpus=4, memory_mb=500, partitions=["pb", "pa"]))
    out.append(NodeInfo("x1", up=True))  # no partitions: the "default" group
    return out


def test_usable_nodes_and_auto_size():
    nodes = inv()
    assert scheduler.usable_nodes(nodes, "pa") == ["a1", "a2", "a3", "a4", "a6", "b1"]
    assert scheduler.usable_nodes(nodes, "pa", state="available") == \
        ["a1", "a3", "a4", "a6", "b1"]
    assert scheduler.usable_nodes(nodes, "default") == ["x1"]
    assert scheduler.auto_size(nodes, "all", partition="pa") == 6
    assert scheduler.auto_size(nodes, "50%", partition="pa") == 3
    assert scheduler.auto_size(nodes, 0.1, partition="pa") == 1
    assert scheduler.auto_size(nodes, "all", partition="pa", state="available") == 5
    assert scheduler.auto_size(nodes, 4, partition="pa") == 4
    with pytest.raises(UsageError, match=r"7 node\(s\) requested but only 6 up.*bad DIMM"):
        scheduler.auto_size(nodes, 7, partition="pa")
    with pytest.raises(UsageError, match="has no nodes"):
        scheduler.auto_size(nodes, "all", partition="nope")
    down = [NodeInfo("z1", up=False, state="down", partitions=["pz"])]
    with pytest.raises(UsageError, match="no up node"):
        scheduler.auto_size(down, "all", partition="pz")
    with pytest.raises(UsageError, match="invalid node count"):
        scheduler.auto_size(nodes, "lots", partition="pa")


def test_partition_summary_takes_the_smallest_node():
    summary = scheduler.partition_summary(inv())
    assert summary["pa"]["nodes"] == 7 and summary["pa"]["up"] == 6
    assert summary["pa"]["cpus"] == 4 and summary["pa"]["memory_mb"] == 500
    assert summary["pb"]["names"] == ["b1"]
    assert summary["default"]["cpus"] is None


def test_state_helpers_and_begin_lines():
    table = {"PD": JobState.PENDING, "CANCELLED": JobState.CANCELLED}
    assert scheduler.normalize_state("CANCELLED by 0", table) == JobState.CANCELLED
    assert scheduler.normalize_state("pd", table) == JobState.PENDING
    assert scheduler.normalize_state("WEIRD", table) == JobState.UNKNOWN
    assert scheduler.is_final(JobState.NODE_FAIL) and not scheduler.is_final(JobState.UNKNOWN)
    begin = time.mktime((2030, 1, 2, 3, 4, 5, 0, 0, -1))
    assert scheduler.begin_header_lines("slurm", begin, True) == \
        ["--begin=2030-01-02T03:04:05", "--hold"]
    assert scheduler.begin_header_lines("lsf", begin) == ["#BSUB -b 2030:01:02:03:04"]
    assert scheduler.begin_header_lines("local", begin) == [f"--begin=@{int(begin)}"]
    assert scheduler.begin_header_lines("flux", begin, now=begin - 60) == \
        ["#flux: --begin-time=+60s"]
    with pytest.raises(NotSupportedError):
        scheduler.begin_header_lines("pbs", begin)


def test_request_and_record_helpers():
    req = scheduler.make_request(["--", "srun", "./app"], nodes=2, job_name="x")
    assert req.command[-3:] == ["run", "srun", "./app"] and req.fault_tolerant
    assert scheduler.make_request(["./app"], wrap=False).command == ["./app"]
    with pytest.raises(UsageError):
        scheduler.make_request([])
    with pytest.raises(UsageError, match="unknown submit field"):
        scheduler.make_request(["a"], colour="red")
    rec = JobRecord(job_id="7", system="local", submit_time=1.5, script="/s", name="n")
    text = json.dumps(scheduler.record_to_dict(rec))
    assert scheduler.record_from_dict(json.loads(text)) == rec


def test_features_of_a_backend_without_batch():
    class Bare(ResourceManager):
        name = "bare"

        def job_id(self):
            return None

        def job_nodes(self):
            return []

        def down_nodes(self):
            return {}

        def end_time(self):
            return 0

    rm = Bare(BackendContext(environ={}))
    assert not scheduler.available(rm)
    assert scheduler.features(rm) == {"node_inventory": False, "submit": False,
                                      "status": False, "cancel": False}
    with pytest.raises(NotSupportedError, match="bare: batch submission"):
        scheduler.submit(rm, scheduler.make_request(["true"], wrap=False))


# --------------------------------------------------------------------------- the local RM


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith(("SCR_", "SLURM_", "LSB_", "FLUX_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SCR_LOCAL_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCR_RUN_SETTLE_SECONDS", "0")
    settings = tmp_path / "settings.yaml"
    settings.write_text("local:\n  partitions:\n" + "".join(
        f"    {p}: {json.dumps(v)}\n" for p, v in PARTS.items()))
    monkeypatch.setenv("SCR_SETTINGS_FILE", str(settings))
    monkeypatch.chdir(tmp_path)
    return dict(os.environ)


@pytest.fixture
def rm(env):
    return LocalResourceManager(BackendContext(environ=env,
                                               settings=LocalSettings(partitions=PARTS)))


def submit(rm, command, **fields):
    fields.setdefault("job_name", "t")
    begin = fields.pop("begin", None)
    hold = fields.pop("hold", False)
    return scheduler.submit(rm, scheduler.make_request(command, wrap=False, **fields),
                            begin=begin, hold=hold)


def wait_for(rm, job_id, states, timeout=30.0):
    return scheduler.wait(rm, [job_id], timeout=timeout, interval=0.05, until=states)[job_id]


def info(rm, job_id):
    return local_batch.job_info(rm.environ, rm.context.settings, job_id)


def test_completed_job_runs_in_its_own_allocation(rm, tmp_path):
    rec = submit(rm, ["sh", "-c", 'echo "dir=$SCR_LOCAL_DIR id=$SCR_BATCH_JOB_ID"; '
                                  'scr_env=$(cat "$SCR_LOCAL_DIR/allocation.json"); '
                                  'echo "$scr_env"'], nodes=3, job_name="hello")
    assert rec.system == "local" and rec.name == "hello"
    json.dumps(scheduler.record_to_dict(rec))  # JSON-serializable
    script = open(rec.script).read()
    assert "#LOCAL --job-name=hello" in script and "#LOCAL --nodes=3" in script
    assert "#LOCAL --no-kill" in script  # fault tolerance on by default
    st = wait_for(rm, rec.job_id, JobState.FINAL)
    assert (st.state, st.exit_code) == (JobState.COMPLETED, 0), st
    job = info(rm, rec.job_id)
    assert job["nodes"] == ["bn1", "bn2", "bn3"] and job["partition"] == "batch"
    out = open(job["output"]).read()
    assert f"id={rec.job_id}" in out and '"nodes": [' in out
    assert not os.path.exists(job["alloc"])  # the allocation ends with the job


def test_failed_job_keeps_its_exit_code(rm):
    rec = submit(rm, ["sh", "-c", "exit 3"])
    st = wait_for(rm, rec.job_id, JobState.FINAL)
    assert (st.state, st.exit_code, st.raw_state) == (JobState.FAILED, 3, "FAILED")


def test_begin_time_keeps_the_job_pending(rm):
    rec = submit(rm, ["true"], begin=time.time() + 2)
    st = scheduler.status(rm, [rec.job_id])[rec.job_id]
    assert st.state == JobState.PENDING
    time.sleep(0.5)
    assert "begin time" in scheduler.status(rm, [rec.job_id])[rec.job_id].message
    st = wait_for(rm, rec.job_id, JobState.FINAL)
    assert st.state == JobState.COMPLETED
    assert info(rm, rec.job_id)["start_time"] >= info(rm, rec.job_id)["begin"]


def test_held_job_waits_for_release_and_can_be_cancelled(rm):
    held = submit(rm, ["true"], hold=True)
    other = submit(rm, ["true"], hold=True)
    time.sleep(0.6)
    both = scheduler.status(rm, [held.job_id, other.job_id])
    assert all(s.state == JobState.PENDING and "held" in s.message for s in both.values())
    local_batch.release(rm.environ, rm.context.settings, held.job_id)
    assert wait_for(rm, held.job_id, JobState.FINAL).state == JobState.COMPLETED
    scheduler.cancel(rm, other.job_id)
    st = wait_for(rm, other.job_id, JobState.FINAL, timeout=5)
    assert st.state == JobState.CANCELLED
    assert "start_time" not in info(rm, other.job_id)  # it never ran


def test_cancel_kills_the_process_group_and_the_allocation_tasks(rm, tmp_path):
    marker = tmp_path / "child.pid"
    rec = submit(rm, ["sh", "-c", f"sleep 300 & echo $! > {marker}; wait"])
    wait_for(rm, rec.job_id, [JobState.RUNNING])
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(marker.read_text())
    t0 = time.monotonic()
    scheduler.cancel(rm, rec.job_id)
    assert time.monotonic() - t0 < 8
    st = scheduler.status(rm, [rec.job_id])[rec.job_id]
    assert st.state == JobState.CANCELLED and st.message == "cancelled by user"
    deadline = time.monotonic() + 5
    while local_batch._alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not local_batch._alive(child)
    scheduler.cancel(rm, rec.job_id)  # cancelling an ended job changes nothing
    assert scheduler.status(rm, [rec.job_id])[rec.job_id].state == JobState.CANCELLED


def test_time_limit_gives_timeout(rm):
    rec = submit(rm, ["sleep", "60"], time_limit=1)
    st = wait_for(rm, rec.job_id, JobState.FINAL, timeout=15)
    assert st.state == JobState.TIMEOUT and "time limit" in st.message


def running_alloc(rm, job_id):
    wait_for(rm, job_id, [JobState.RUNNING])
    return LocalAllocation(info(rm, job_id)["alloc"])


def test_node_crash_ends_a_job_without_fault_tolerance(rm):
    rec = submit(rm, ["sleep", "60"], nodes=2, fault_tolerant=False)
    assert "--no-kill" not in open(rec.script).read()
    running_alloc(rm, rec.job_id).crash("bn2")
    st = wait_for(rm, rec.job_id, JobState.FINAL, timeout=15)
    assert st.state == JobState.NODE_FAIL and "bn2" in st.message


def test_fault_tolerant_job_survives_a_node_crash_and_fails_as_node_fail(rm, tmp_path):
    go = tmp_path / "go"
    ok = submit(rm, ["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done"], nodes=2)
    bad = submit(rm, ["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; exit 1"],
                 nodes=2)
    running_alloc(rm, ok.job_id).crash("bn1")
    running_alloc(rm, bad.job_id).crash("bn2")
    time.sleep(0.5)
    assert scheduler.status(rm, [ok.job_id])[ok.job_id].state == JobState.RUNNING
    go.write_text("")
    assert wait_for(rm, ok.job_id, JobState.FINAL).state == JobState.COMPLETED
    st = wait_for(rm, bad.job_id, JobState.FINAL)
    assert st.state == JobState.NODE_FAIL and st.exit_code == 1


def test_a_vanished_job_is_failed_not_completed(rm):
    rec = submit(rm, ["sleep", "60"])
    wait_for(rm, rec.job_id, [JobState.RUNNING])
    state = info(rm, rec.job_id)
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    time.sleep(0.2)
    st = scheduler.status(rm, [rec.job_id])[rec.job_id]
    assert st.state == JobState.RUNNING and "supervisor gone" in st.message
    os.killpg(state["job_pgid"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        st = scheduler.status(rm, [rec.job_id])[rec.job_id]
        if st.state != JobState.RUNNING:
            break
        time.sleep(0.05)
    assert st.state == JobState.FAILED and st.raw_state == "VANISHED", st
    assert "no exit was recorded" in st.message
    # resolved once, for good
    assert scheduler.status(rm, [rec.job_id])[rec.job_id].raw_state == "VANISHED"


def test_job_outlives_the_process_that_submitted_it(env, tmp_path):
    code = ("import json; from scr_core.interfaces import BackendContext;"
            "from scr_core.local.backend import LocalResourceManager;"
            "from scr_core.batch import scheduler as s; import os;"
            "rm = LocalResourceManager(BackendContext(environ=dict(os.environ)));"
            "r = s.submit(rm, s.make_request(['sh', '-c', 'sleep 1; echo done'], wrap=False));"
            "print(r.job_id)")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - t0 < 10  # the submitter did not wait for the job
    job_id = out.stdout.strip()
    rm = LocalResourceManager(BackendContext(environ=env))
    assert scheduler.status(rm, [job_id])[job_id].state in (JobState.PENDING,
                                                            JobState.RUNNING)
    assert wait_for(rm, job_id, JobState.FINAL).state == JobState.COMPLETED
    assert open(info(rm, job_id)["output"]).read().strip() == "done"


def test_status_of_many_ids_in_one_call(rm):
    a = submit(rm, ["true"])
    b = submit(rm, ["sh", "-c", "exit 2"])
    wait_for(rm, a.job_id, JobState.FINAL)
    wait_for(rm, b.job_id, JobState.FINAL)
    calls = []
    orig = rm.status

    def counting(ids):
        calls.append(list(ids))
        return orig(ids)

    rm.status = counting
    st = scheduler.status(rm, [a.job_id, b.job_id, "424242", "bogus", a.job_id])
    assert len(calls) == 1
    assert list(st) == [a.job_id, b.job_id, "424242", "bogus"]
    assert st[a.job_id].state == JobState.COMPLETED and st[b.job_id].state == JobState.FAILED
    assert st["424242"].state == JobState.UNKNOWN and "no local job" in st["424242"].message
    assert st["bogus"].state == JobState.UNKNOWN


def test_inventory_partitions_down_and_allocated_nodes(rm, env):
    nodes = scheduler.inventory(rm)
    assert [n.name for n in nodes][:3] == ["bn1", "bn2", "bn3"] and len(nodes) == 10
    assert nodes[0].cpus == 4 and nodes[0].memory_mb == 8192
    assert [n.name for n in scheduler.inventory(rm, "debug")] == ["dn1", "dn2"]
    spool = local_batch.Spool(env["SCR_LOCAL_SPOOL"])
    spool.set_node_down("bn2", "fan failure")
    rec = submit(rm, ["sleep", "30"], nodes=2)
    wait_for(rm, rec.job_id, [JobState.RUNNING])
    assert info(rm, rec.job_id)["nodes"] == ["bn1", "bn3"]  # the down node is skipped
    by_name = {n.name: n for n in scheduler.inventory(rm, "batch")}
    assert not by_name["bn2"].up and by_name["bn2"].reason == "fan failure"
    assert by_name["bn1"].allocated and not by_name["bn1"].available
    assert by_name["bn4"].available
    assert scheduler.auto_size(scheduler.inventory(rm, "batch"), "all", "batch") == 7
    assert scheduler.partition_chunks(rm, "batch", chunks=2, selection="distributed") == \
        [["bn1", "bn4", "bn6"], ["bn3", "bn5", "bn7"]]
    scheduler.cancel(rm, rec.job_id)
    spool.set_node_up("bn2")
    with pytest.raises(ResourceManagerError, match="no local partition"):
        scheduler.inventory(rm, "gpu")


def test_job_waits_for_enough_up_nodes(rm, env):
    spool = local_batch.Spool(env["SCR_LOCAL_SPOOL"])
    spool.set_node_down("dn2", "maintenance")
    rec = submit(rm, ["true"], nodes=2, partition="debug")
    time.sleep(0.6)
    st = scheduler.status(rm, [rec.job_id])[rec.job_id]
    assert st.state == JobState.PENDING and "waiting for resources" in st.message
    spool.set_node_up("dn2")
    assert wait_for(rm, rec.job_id, JobState.FINAL).state == JobState.COMPLETED


def test_submit_refuses_what_the_cluster_cannot_give(rm):
    with pytest.raises(ResourceManagerError, match="partition 'batch' has 8"):
        submit(rm, ["true"], nodes=9)
    with pytest.raises(ResourceManagerError, match="exceeds the 30s maximum"):
        submit(rm, ["true"], partition="debug", time_limit=60)
    with pytest.raises(ResourceManagerError, match="no partition 'gpu'"):
        submit(rm, ["true"], partition="gpu")
    with pytest.raises(UsageError, match="unknown header directive"):
        submit(rm, ["true"], header_lines=["--exclusive"])
    # tasks without nodes: as many nodes as the tasks need (4 cpus each)
    rec = submit(rm, ["true"], tasks=9)
    assert info(rm, rec.job_id)["nnodes"] == 3
    # the partition's limit is the default limit
    assert info(rm, submit(rm, ["true"], partition="debug").job_id)["time_limit"] == 30


def test_output_and_error_templates(rm, tmp_path):
    rec = submit(rm, ["sh", "-c", "echo out; echo err >&2"], output="o-%j.txt",
                 error=str(tmp_path / "e-%x.txt"), job_name="tmpl", workdir=str(tmp_path))
    wait_for(rm, rec.job_id, JobState.FINAL)
    assert (tmp_path / f"o-{rec.job_id}.txt").read_text() == "out\n"
    assert (tmp_path / "e-tmpl.txt").read_text() == "err\n"


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli(monkeypatch, env):
    from scr_core.cli import main

    for name, module in (("submit", "submit_cmd"), ("jobs", "jobs_cmd"),
                         ("nodes", "nodes_cmd")):
        monkeypatch.setitem(main.COMMANDS, name, (f"scr_core.cli.{module}", name, None))
    return main.main


def test_cli_submit_a_resilient_job_that_survives_a_node_crash(cli, capsys, tmp_path,
                                                               monkeypatch):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    monkeypatch.setenv("SCR_RUNS", "3")
    monkeypatch.setenv("SCR_MIN_NODES", "3")
    rc = cli(["submit", "--rm", "local", "-N", "4", "-t", "5m", "-J", "demo", "-D",
              str(prefix), "--json", "--", "local", "-N", "4", *DEMO, "--steps", "30",
              "--crash-node-at-step", "12"])
    assert rc == 0
    record = json.loads(capsys.readouterr().out)
    assert record["system"] == "local" and record["name"] == "demo"
    script = open(record["script"]).read()
    assert "run local -N 4" in script and "#LOCAL --no-kill" in script
    rm = LocalResourceManager(BackendContext(environ=dict(os.environ)))
    st = wait_for(rm, record["job_id"], JobState.FINAL, timeout=120)
    out = open(info(rm, record["job_id"])["output"]).read()
    assert st.state == JobState.COMPLETED, out
    assert "restarting from checkpoint" in out and "finished all 30 steps" in out


def test_cli_status_cancel_and_nodes(cli, capsys):
    assert cli(["submit", "--rm", "local", "--no-scr-run", "-N", "all", "-p", "debug",
                "--", "sleep", "60"]) == 0
    job_id = capsys.readouterr().out.strip()
    rm = LocalResourceManager(BackendContext(environ=dict(os.environ)))
    wait_for(rm, job_id, [JobState.RUNNING])
    assert info(rm, job_id)["nnodes"] == 2  # "all" up nodes of the debug partition
    assert cli(["jobs", "status", "--rm", "local", job_id]) == 0
    assert "\trunning\t" in capsys.readouterr().out
    assert cli(["jobs", "cancel", "--rm", "local", job_id]) == 0
    assert cli(["jobs", "status", "--rm", "local", "--json", job_id, "999"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data[job_id]["state"] == "cancelled" and data["999"]["state"] == "unknown"
    assert cli(["nodes", "--rm", "local", "-p", "batch", "--chunks", "2", "--selection",
                "distributed"]) == 0
    assert capsys.readouterr().out.splitlines() == ["0\t4\tbn[1,3,5,7]", "1\t4\tbn[2,4,6,8]"]
    assert cli(["nodes", "--rm", "local", "--summary"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("batch\t8\t8\t") and lines[2].startswith("debug\t2\t2\t")
    assert cli(["nodes", "--rm", "local", "-p", "debug", "--chunks", "3"]) == 2
    assert "cannot make 3 chunks" in capsys.readouterr().err


def test_cli_submit_usage_errors(cli, capsys):
    assert cli(["submit", "--rm", "local"]) == 2
    assert "no command" in capsys.readouterr().err
    assert cli(["submit", "--rm", "local", "-N", "20", "--", "true"]) == 5
    assert cli(["submit", "--rm", "local", "-N", "all", "--", "true"]) == 2
    assert "needs --partition (partitions: batch, debug)" in capsys.readouterr().err
    assert cli(["submit", "--rm", "local", "-N", "all", "-p", "batch", "--wait",
                "--no-scr-run", "--env", "X=1", "--", "sh", "-c", 'test "$X" = 1']) == 0
    assert cli(["submit", "--rm", "local", "--wait", "--no-scr-run", "--", "false"]) == 1
