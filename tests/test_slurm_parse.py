"""Unit tests of the Slurm plugin on output recorded from the real lab cluster
(tests/fixtures/slurm, Slurm 22.05.8), plus offline checks of the backends with fake clients."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from scr_core.errors import ResourceManagerError, UsageError
from scr_core.interfaces import BackendContext, JobState, SubmitRequest
from scr_plugins_slurm.launcher import SrunLauncher, split_srun_args
from scr_plugins_slurm.rm import SlurmResourceManager, format_time_limit, render_batch_script
from scr_plugins_slurm.settings import SlurmSettings

from scr_core import conformance
from scr_plugins_slurm import parse, plugin

FIX = Path(__file__).resolve().parent / "fixtures" / "slurm"


def fixture(name: str) -> str:
    return (FIX / name).read_text()


def local_epoch(text: str) -> int:
    return int(time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S")))


# --------------------------------------------------------------------------- scontrol show job


def test_scontrol_job_running_oneliner():
    f = parse.parse_scontrol_job(fixture("scontrol_show_job_running.txt"))
    assert f["JobId"] == "10"
    assert f["JobName"] == "scr fixture alloc"  # a value with spaces
    assert f["JobState"] == "RUNNING"
    assert f["NodeList"] == "n[1-3]"
    assert f["TimeLimit"] == "00:30:00"
    assert f["AllocNode:Sid"] == "localhost:5451"
    assert f["TRES"] == "cpu=6,node=3,billing=6"  # '=' inside a value
    assert f["Power"] == ""


def test_scontrol_job_multiline_equals_oneliner():
    multi = parse.parse_scontrol_job(fixture("scontrol_show_job_multiline.txt"))
    one = parse.parse_scontrol_job(fixture("scontrol_show_job_running.txt"))
    assert multi == one


def test_scontrol_job_command_and_workdir_with_spaces():
    f = parse.parse_scontrol_job(fixture("scontrol_show_job_unlimited.txt"))
    assert f["JobName"] == "name with spaces"
    assert f["Command"].endswith("/dir with space/job script.sh arg1 arg 2")
    assert f["WorkDir"].endswith("/dir with space")
    assert f["StdOut"] == "/dev/null"


def test_scontrol_free_text_keeps_key_like_words():
    text = ("JobId=5 JobName=a b=c JobState=RUNNING Reason=None Command=/bin/run x=1 "
            "Y=2 --opt=3 WorkDir=/tmp/w d=e StdOut=/tmp/o")
    f = parse.parse_scontrol_job(text)
    assert f["JobName"] == "a b=c"
    assert f["Command"] == "/bin/run x=1 Y=2 --opt=3"
    assert f["WorkDir"] == "/tmp/w d=e"
    assert f["StdOut"] == "/tmp/o"


def test_scontrol_shrunk_job_lists_remaining_nodes():
    f = parse.parse_scontrol_job(fixture("scontrol_show_job_shrunk.txt"))
    assert f["NodeList"] == "n[1,3]"
    assert f["NumNodes"] == "2"


def test_scontrol_job_without_record_raises():
    with pytest.raises(ResourceManagerError):
        parse.parse_scontrol_job(fixture("scontrol_show_job_invalid.txt"))


# --------------------------------------------------------------------------- end time


def test_end_time_from_running_job_is_local_iso():
    f = parse.parse_scontrol_job(fixture("scontrol_show_job_running.txt"))
    assert parse.end_time_from_job(f, time.time()) == local_epoch("2026-11-22T05:29:09")
    start = parse.parse_slurm_time(f["StartTime"])
    assert parse.end_time_from_job(f, 0) - start == 30 * 60


def test_end_time_follows_the_local_zone(monkeypatch):
    f = parse.parse_scontrol_job(fixture("scontrol_show_job_running.txt"))
    try:
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
        utc = parse.end_time_from_job(f, 0)
        monkeypatch.setenv("TZ", "America/New_York")
        time.tzset()
        ny = parse.end_time_from_job(f, 0)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert utc == 1795325349  # 2026-11-22T05:29:09Z
    assert ny - utc == 5 * 3600  # EST, no DST in November


def test_end_time_unlimited_is_minus_one():
    f = parse.parse_scontrol_job(fixture("scontrol_show_job_unlimited.txt"))
    assert f["TimeLimit"] == "UNLIMITED" and f["EndTime"] == "Unknown"
    assert parse.end_time_from_job(f, time.time()) == -1
    assert parse.end_time_from_job({"TimeLimit": "INFINITE",
                                    "EndTime": "2027-11-22T05:29:09"}, 0) == -1


def test_end_time_unknown_is_zero():
    f = parse.parse_scontrol_job(fixture("scontrol_show_job_pending_held.txt"))
    f = dict(f, TimeLimit="00:10:00")
    assert parse.end_time_from_job(f, time.time()) == 0
    assert parse.end_time_from_job({}, time.time()) == 0


def test_end_time_partition_limit():
    fields = {"TimeLimit": "Partition_Limit", "EndTime": "2026-11-22T05:29:09",
              "JobState": "RUNNING"}
    assert parse.end_time_from_job(fields, 0) == local_epoch("2026-11-22T05:29:09")
    fields["EndTime"] = "Unknown"
    assert parse.end_time_from_job(fields, 1000) == 0


def test_end_time_from_limit_and_runtime_when_endtime_missing():
    fields = {"TimeLimit": "1-00:00:00", "RunTime": "01:00:00", "EndTime": "Unknown",
              "JobState": "RUNNING"}
    assert parse.end_time_from_job(fields, 1000) == 1000 + 23 * 3600


@pytest.mark.parametrize("text, seconds", [
    ("00:30:00", 1800), ("1-00:00:00", 86400), ("2-03", 2 * 86400 + 3 * 3600),
    ("1-02:03", 86400 + 2 * 3600 + 180), ("5:30", 330), ("30", 1800),
    ("UNLIMITED", -1), ("INFINITE", -1), ("Partition_Limit", None), ("NOT_SET", None),
    ("N/A", None), ("", None),
])
def test_parse_duration(text, seconds):
    assert parse.parse_duration(text) == seconds


def test_parse_slurm_time_unknown_values():
    for v in ("Unknown", "None", "N/A", "", "garbage"):
        assert parse.parse_slurm_time(v) == 0


# --------------------------------------------------------------------------- steps


def test_scontrol_steps_with_srun_pid_and_pending_step():
    steps = parse.parse_scontrol_steps(fixture("scontrol_show_step.txt"))
    assert [s.step_id for s in steps] == ["10.0", "10.1", "10.TDB"]
    custom, sleep, pending = steps
    assert (custom.name, custom.nodes, custom.srun_host, custom.srun_pid) == \
        ("custom", ["n2", "n3"], "vm", 14953)
    assert sleep.name == "sleep" and sleep.nodes == ["n1"] and not sleep.pending
    assert pending.pending and pending.state == "PENDING" and pending.name == ""
    assert pending.srun_pid == 14991


def test_scontrol_steps_none():
    assert parse.parse_scontrol_steps("Job step 12. not found\n") == []
    assert parse.parse_scontrol_steps("") == []


def test_squeue_steps():
    steps = parse.parse_squeue_steps(fixture("squeue_steps.txt"))
    assert [(s.step_id, s.name, s.nodes) for s in steps] == [
        ("10.0", "custom", ["n2", "n3"]), ("10.1", "sleep", ["n1"])]
    assert steps[0].start_time == local_epoch("2026-11-22T04:59:10")


# --------------------------------------------------------------------------- node states


def test_sinfo_down_recorded_states():
    down = parse.parse_sinfo_down(fixture("sinfo_nodes.txt"))
    assert list(down) == ["n2", "n3", "n4", "n5", "n6", "n7"]
    assert "fixture admin down" in down["n2"]
    assert "draining" in down["n3"] and "fixture drain, busy node" in down["n3"]
    assert down["n4"].endswith("fixture drain | with a bar")  # '|' in the reason survives
    assert down["n6"] == "Slurm reports down*: Not responding"
    assert "maint" in down["n5"]
    # allocated (n1), idle (n8, n10), reserved (n9) are usable
    assert not {"n1", "n8", "n9", "n10"} & set(down)


def test_sinfo_lost_for_the_step_watch_is_dead_nodes_only():
    """What scr run's step watch acts on mid-step (issue 17): DOWN, FAIL; never a node
    that is only not responding (one missed ping), drained, in maintenance or busy."""
    lost = parse.parse_sinfo_lost(fixture("sinfo_nodes.txt"))
    down = parse.parse_sinfo_down(fixture("sinfo_nodes.txt"))
    assert set(lost) < set(down)
    assert lost["n6"] == down["n6"] == "Slurm reports down*: Not responding"
    assert "n3" not in lost and "n4" not in lost and "n5" not in lost  # drain, maint
    text = ("n1|mixed*|Not responding\n" "n2|drained|bad dimm\n" "n3|fail|psu\n"
            "n4|allocated|none\n" "n5|draining*|none\n" "n6|mixed+drain|x\n")
    assert list(parse.parse_sinfo_lost(text)) == ["n3"]


def test_sinfo_down_restricted_to_job():
    down = parse.parse_sinfo_down(fixture("sinfo_nodes_job.txt"))
    assert set(down) == {"n2", "n3"}


def test_sinfo_down_expands_compressed_lists():
    text = ("n[1-3,7]|down*|Not responding\n"
            "rack[1-2]n[01-02]|drained|bad dimm\n"
            "gpu[001-003]|idle|none\n"
            "a1,b[2-3]|fail|psu\n"
            "c[08-10]|mixed~|none\n")
    down = parse.parse_sinfo_down(text)
    assert list(down) == ["n1", "n2", "n3", "n7", "rack1n01", "rack1n02", "rack2n01",
                          "rack2n02", "a1", "b2", "b3", "c08", "c09", "c10"]
    assert "bad dimm" in down["rack2n02"]
    assert "powered off" in down["c09"]


@pytest.mark.parametrize("state, is_down", [
    ("idle", False), ("allocated", False), ("mixed", False), ("completing", False),
    ("reserved", False), ("planned", False), ("idle#", False), ("allocated!", False),
    ("mixed$", False), ("idle@", False), ("idle-", False),
    ("down", True), ("down*", True), ("idle*", True), ("allocated*", True),
    ("drained", True), ("draining", True), ("drained*", True), ("fail", True),
    ("failing", True), ("idle~", True), ("powered_down", True), ("idle%", True),
    ("maint", True), ("idle^", True), ("IDLE+DRAIN", True), ("MIXED+DRAIN", True),
    ("IDLE+NOT_RESPONDING", True), ("ALLOCATED", False), ("drng", True), ("mix", False),
    ("no_respond", True), ("brand_new_state", False), ("", False),
])
def test_node_is_down(state, is_down):
    assert parse.node_is_down(state) is is_down


def test_sinfo_down_garbage_lines_are_ignored():
    text = "garbage\n|||\nn[1-|down|x\nn2|weird_state|none\nn3|down|\n"
    assert parse.parse_sinfo_down(text) == {"n3": "Slurm reports down"}


def test_sinfo_inventory():
    nodes = {n.name: n for n in parse.parse_sinfo_inventory(fixture("sinfo_inventory.txt"))}
    assert list(nodes) == [f"n{i}" for i in range(1, 11)]
    n1, n2, n8 = nodes["n1"], nodes["n2"], nodes["n8"]
    assert (n1.up, n1.allocated, n1.available, n1.cpus, n1.memory_mb, n1.partitions) == \
        (True, True, False, 2, 1000, ["debug"])
    assert (n2.up, n2.reason, n2.state) == (False, "fixture admin down", "down")
    assert (n8.up, n8.available, n8.features, n8.reason) == (True, True, [], "")
    assert nodes["n4"].reason == "fixture drain | with a bar"
    assert nodes["n6"].state == "down*" and not nodes["n6"].up


def test_sinfo_inventory_merges_partitions():
    text = ("n1|idle|4|8000|debug|gpu,ib|none\n"
            "n1|idle|4|8000|long|gpu,ib|none\n"
            "n[2-3]|drained|4|8000+|debug|(null)|maintenance\n")
    nodes = parse.parse_sinfo_inventory(text)
    assert [n.name for n in nodes] == ["n1", "n2", "n3"]
    assert nodes[0].partitions == ["debug", "long"] and nodes[0].features == ["gpu", "ib"]
    assert nodes[2].memory_mb == 8000 and nodes[2].reason == "maintenance"


def test_reservations():
    res = parse.parse_scontrol_reservations(fixture("scontrol_show_res.txt"))
    assert res == {"n9": ["fixres"], "n5": ["fixmaint"]}
    assert parse.parse_scontrol_reservations("No reservations in the system\n") == {}


# --------------------------------------------------------------------------- job states


def test_squeue_jobs_all_states():
    jobs = parse.parse_squeue_jobs(fixture("squeue_jobs.txt"))
    expect = {"2": JobState.COMPLETED, "3": JobState.FAILED, "4": JobState.CANCELLED,
              "5": JobState.PENDING, "6": JobState.TIMEOUT, "7": JobState.NODE_FAIL,
              "9": JobState.PENDING, "10": JobState.RUNNING, "8_1": JobState.COMPLETED,
              "8_2": JobState.COMPLETED}
    for jid, state in expect.items():
        assert jobs[jid].state == state, jid
    assert jobs["3"].exit_code == 3 and jobs["3"].raw_state == "FAILED"
    assert "NonZeroExitCode" in jobs["3"].message
    assert jobs["2"].exit_code == 0
    assert jobs["6"].exit_code == -15 and jobs["7"].exit_code == -15
    assert jobs["10"].exit_code is None and jobs["5"].exit_code is None
    assert jobs["11"] is jobs["8_1"]  # an array element's own job id is an alias


def test_squeue_jobs_percent_format():
    jobs = parse.parse_squeue_jobs(fixture("squeue_jobs_o.txt"))
    assert jobs["4"].state == JobState.CANCELLED and jobs["8_2"].state == JobState.COMPLETED
    assert jobs["3"].exit_code is None  # %T format carries no exit code


def test_array_aggregate():
    jobs = parse.parse_squeue_jobs(fixture("squeue_jobs.txt"))
    agg = parse.aggregate_array("8", jobs)
    assert agg.job_id == "8" and agg.state == JobState.COMPLETED
    text = "21|20_1|RUNNING|0|None\n20|20_2|FAILED|256|NonZeroExitCode\n"
    agg = parse.aggregate_array("20", parse.parse_squeue_jobs(text))
    assert agg.state == JobState.RUNNING
    text = "21|20_1|COMPLETED|0|None\n20|20_2|FAILED|256|NonZeroExitCode\n"
    agg = parse.aggregate_array("20", parse.parse_squeue_jobs(text))
    assert agg.state == JobState.FAILED and agg.exit_code == 1
    assert parse.aggregate_array("99", jobs) is None


@pytest.mark.parametrize("raw, state", [
    ("PENDING", JobState.PENDING), ("CONFIGURING", JobState.PENDING),
    ("RUNNING", JobState.RUNNING), ("COMPLETING", JobState.RUNNING),
    ("COMPLETED", JobState.COMPLETED), ("FAILED", JobState.FAILED),
    ("OUT_OF_MEMORY", JobState.FAILED), ("BOOT_FAIL", JobState.FAILED),
    ("DEADLINE", JobState.FAILED), ("CANCELLED", JobState.CANCELLED),
    ("CANCELLED by 0", JobState.CANCELLED), ("CANCELLED by 12345", JobState.CANCELLED),
    ("TIMEOUT", JobState.TIMEOUT), ("NODE_FAIL", JobState.NODE_FAIL),
    ("PREEMPTED", JobState.PREEMPTED), ("CD", JobState.COMPLETED), ("PD", JobState.PENDING),
    ("CA", JobState.CANCELLED), ("NF", JobState.NODE_FAIL), ("REQUEUED", JobState.PENDING),
    ("SPECIAL_EXIT", JobState.UNKNOWN), ("REVOKED", JobState.UNKNOWN),
    ("NEW_STATE_2030", JobState.UNKNOWN), ("", JobState.UNKNOWN), ("???", JobState.UNKNOWN),
])
def test_normalize_job_state(raw, state):
    assert parse.normalize_job_state(raw) == state


def test_unknown_state_is_kept_not_crashed():
    jobs = parse.parse_squeue_jobs("5|5|FROBNICATED|0|None\n")
    assert jobs["5"].state == JobState.UNKNOWN and jobs["5"].raw_state == "FROBNICATED"
    assert "not understood" in jobs["5"].message


@pytest.mark.parametrize("value, code", [
    ("0", 0), ("768", 3), ("15", -15), ("9", -9), ("3:0", 3), ("0:15", -15), ("0:0", 0),
    ("", None), ("x", None), ("1:y", None),
])
def test_decode_exit_code(value, code):
    assert parse.decode_exit_code(value) == code


def test_sacct_format():
    # sacct -n -P -X -o JobIDRaw,JobID,State,ExitCode as 22.05 prints it (the lab has no
    # accounting, so this text is written by hand in that format)
    text = ("41|41|COMPLETED|0:0\n42|42|FAILED|2:0\n43|43|CANCELLED by 0|0:15\n"
            "45|44_1|TIMEOUT|0:1\n44|44_2|NODE_FAIL|0:0\n46|46|OUT_OF_MEMORY|0:125\n"
            "47|47|PENDING|0:0\n")
    jobs = parse.parse_sacct(text)
    assert jobs["41"].state == JobState.COMPLETED and jobs["41"].exit_code == 0
    assert jobs["42"].state == JobState.FAILED and jobs["42"].exit_code == 2
    assert jobs["43"].state == JobState.CANCELLED and jobs["43"].raw_state == "CANCELLED by 0"
    assert jobs["44_1"].state == JobState.TIMEOUT and jobs["45"] is jobs["44_1"]
    assert jobs["46"].state == JobState.FAILED and jobs["47"].exit_code is None
    assert "sacct" in jobs["41"].message


def test_sbatch_parsable():
    assert parse.parse_sbatch_parsable(fixture("sbatch_parsable.txt")) == "2"
    assert parse.parse_sbatch_parsable("123;cluster1\n") == "123"
    assert parse.parse_sbatch_parsable("sbatch: warning: x\n77\n") == "77"
    with pytest.raises(ResourceManagerError):
        parse.parse_sbatch_parsable("Submitted batch job\n")


# --------------------------------------------------------------------------- backends offline


def fake_client(tmp_path: Path, name: str, stdout: str = "", stderr: str = "",
                rc: int = 0) -> str:
    """An executable that prints recorded output, and logs its argv."""
    out = tmp_path / f"{name}.out"
    err = tmp_path / f"{name}.err"
    out.write_text(stdout)
    err.write_text(stderr)
    path = tmp_path / name
    log = tmp_path / f"{name}.argv"
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n'
                    f'cat {out}\ncat {err} >&2\nexit {rc}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def calls(tmp_path: Path, name: str) -> list[str]:
    log = tmp_path / f"{name}.argv"
    return log.read_text().splitlines() if log.exists() else []


def test_plugin_specs_conform():
    for spec in (*plugin.scr_resource_managers(), *plugin.scr_launchers()):
        conformance.check_spec(spec)
        assert spec.priority == 10 and spec.settings == "slurm"
    assert plugin.scr_launchers()[0].commands == ("srun",)
    assert plugin.scr_settings_sections()[0].load() is SlurmSettings
    assert plugin.detect({"SLURM_JOB_ID": "5"}) and plugin.detect({"SLURM_JOBID": "5"})
    assert not plugin.detect({"SLURM_NODELIST": "n1"})


def test_job_id_and_nodes_from_env():
    rm = SlurmResourceManager(BackendContext(environ={
        "SLURM_JOBID": "77", "SLURM_NODELIST": "rack[1-2]n[01-02],x7"}))
    assert rm.job_id() == "77"
    assert rm.job_nodes() == ["rack1n01", "rack1n02", "rack2n01", "rack2n02", "x7"]
    rm = SlurmResourceManager(BackendContext(environ={
        "SLURM_JOB_ID": "78", "SLURM_JOB_NODELIST": "n[3,1-2]", "SLURM_NODELIST": "zz"}))
    assert rm.job_id() == "78" and rm.job_nodes() == ["n3", "n1", "n2"]
    rm = SlurmResourceManager(BackendContext(environ={}))
    assert (rm.job_id(), rm.job_nodes(), rm.down_nodes(), rm.end_time()) == (None, [], {}, 0)
    with pytest.raises(ResourceManagerError):
        SlurmResourceManager(BackendContext(environ={"SLURM_JOB_NODELIST": "n[1-"})).job_nodes()


def test_down_nodes_offline(tmp_path):
    settings = SlurmSettings(
        sinfo=fake_client(tmp_path, "sinfo", fixture("sinfo_nodes_job.txt")),
        scontrol=fake_client(tmp_path, "scontrol", fixture("scontrol_show_job_shrunk.txt")))
    rm = SlurmResourceManager(BackendContext(
        environ={"SLURM_JOB_ID": "10", "SLURM_JOB_NODELIST": "n[1-3]", "PATH": "/usr/bin:/bin"},
        settings=settings))
    down = rm.down_nodes()
    assert list(down) == ["n2", "n3"]
    assert calls(tmp_path, "sinfo") == ["-h -N -n n[1-3] -o %N|%T|%E"]
    assert rm.end_time() == local_epoch("2026-11-22T05:29:09")


def test_down_nodes_reports_nodes_removed_from_the_job(tmp_path):
    # n2 was removed from the --no-kill job and has been resumed since: idle, yet unusable
    settings = SlurmSettings(
        sinfo=fake_client(tmp_path, "sinfo", "n1|allocated|none\nn2|idle|none\nn3|allocated|"
                                             "none\n"),
        scontrol=fake_client(tmp_path, "scontrol", fixture("scontrol_show_job_shrunk.txt")))
    rm = SlurmResourceManager(BackendContext(
        environ={"SLURM_JOB_ID": "10", "SLURM_JOB_NODELIST": "n[1-3]"}, settings=settings))
    down = rm.down_nodes()
    assert list(down) == ["n2"] and "removed from job 10" in down["n2"]


def test_query_env_is_sanitized(tmp_path):
    script = tmp_path / "scontrol"
    script.write_text(f"#!/bin/sh\nenv > {tmp_path}/env.txt\ncat {FIX}/"
                      "scontrol_show_job_running.txt\n")
    script.chmod(0o755)
    rm = SlurmResourceManager(BackendContext(
        environ={"SLURM_JOB_ID": "10", "SLURM_TIME_FORMAT": "relative", "SQUEUE_STATES": "R",
                 "SINFO_FORMAT": "%N", "PATH": os.environ["PATH"]},
        settings=SlurmSettings(scontrol=str(script))))
    rm.end_time()
    env = (tmp_path / "env.txt").read_text().splitlines()
    assert "SLURM_TIME_FORMAT=standard" in env
    assert not [e for e in env if e.startswith(("SQUEUE_", "SINFO_"))]


def test_status_offline_squeue_then_sacct_disabled(tmp_path):
    settings = SlurmSettings(
        squeue=fake_client(tmp_path, "squeue", fixture("squeue_jobs.txt")),
        sacct=fake_client(tmp_path, "sacct", stderr="Slurm accounting storage is disabled\n",
                          rc=1))
    rm = SlurmResourceManager(BackendContext(environ={}, settings=settings))
    st = rm.status(["3", "8", "999", "not-a-job", "3"])
    assert list(st) == ["3", "8", "999", "not-a-job"]
    assert st["3"].state == JobState.FAILED and st["3"].exit_code == 3
    assert st["8"].state == JobState.COMPLETED and "array" in st["8"].message
    assert st["999"].state == JobState.UNKNOWN
    assert "accounting storage is disabled" in st["999"].message
    assert st["not-a-job"].state == JobState.UNKNOWN
    # one squeue and one sacct query, for valid ids only
    assert calls(tmp_path, "squeue") == [f"-h -t all -j 3,8,999 -O {parse.SQUEUE_JOBS_FORMAT}"]
    assert calls(tmp_path, "sacct") == [f"-n -P -X -j 999 -o {parse.SACCT_FIELDS}"]
    assert rm.status([]) == {}


def test_status_offline_all_unknown_to_squeue(tmp_path):
    settings = SlurmSettings(
        squeue=fake_client(tmp_path, "squeue", stderr=fixture("squeue_invalid.txt"), rc=1),
        sacct=fake_client(tmp_path, "sacct", "41|41|COMPLETED|0:0\n"))
    rm = SlurmResourceManager(BackendContext(environ={}, settings=settings))
    st = rm.status(["41", "42"])
    assert st["41"].state == JobState.COMPLETED and "sacct" in st["41"].message
    assert st["42"].state == JobState.UNKNOWN and "no record" in st["42"].message


def test_status_squeue_failure_raises(tmp_path):
    settings = SlurmSettings(squeue=fake_client(tmp_path, "squeue", stderr="slurm_load_jobs "
                                                "error: Unable to contact slurm controller",
                                                rc=1))
    rm = SlurmResourceManager(BackendContext(environ={}, settings=settings))
    with pytest.raises(ResourceManagerError, match="Unable to contact"):
        rm.status(["1"])


def test_missing_client_and_timeout(tmp_path):
    rm = SlurmResourceManager(BackendContext(
        environ={"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n1"},
        settings=SlurmSettings(sinfo=str(tmp_path / "nope"))))
    with pytest.raises(ResourceManagerError, match="not found"):
        rm.down_nodes()
    slow = tmp_path / "sinfo"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    rm = SlurmResourceManager(BackendContext(
        environ={"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n1"},
        settings=SlurmSettings(sinfo=str(slow), command_timeout=0.3)))
    with pytest.raises(ResourceManagerError, match="did not answer"):
        rm.down_nodes()


def test_batch_script():
    req = SubmitRequest(command=["/bin/echo", "a b", "$HOME", "it's"], job_name="my job",
                        nodes=2, tasks=4, time_limit=90 * 60 + 1, partition="debug",
                        output="/tmp/o %j.txt", header_lines=["--begin=now+1hour",
                                                              "#SBATCH --hold"],
                        environ={"SCR_X": "v w"})
    text = render_batch_script(req)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert '#SBATCH --job-name="my job"' in lines and "#SBATCH --nodes=2" in lines
    assert "#SBATCH --ntasks=4" in lines and "#SBATCH --time=01:31:00" in lines
    assert "#SBATCH --no-kill" in lines and '#SBATCH --output="/tmp/o %j.txt"' in lines
    assert "#SBATCH --partition=debug" in lines
    assert "#SBATCH --begin=now+1hour" in lines and "#SBATCH --hold" in lines
    assert "export SCR_X='v w'" in lines
    assert lines[-1] == "exec /bin/echo 'a b' '$HOME' 'it'\"'\"'s'"
    req.fault_tolerant = False
    assert "--no-kill" not in render_batch_script(req)
    text = render_batch_script(SubmitRequest(command=["x"], job_name="it's", workdir='a "b"'))
    assert '#SBATCH --job-name="it\'s"' in text and "#SBATCH --chdir='a \"b\"'" in text
    with pytest.raises(UsageError):
        render_batch_script(SubmitRequest(command=["x"], job_name="it's \"x\""))
    with pytest.raises(UsageError):
        render_batch_script(SubmitRequest(command=["x"], environ={"A B": "1"}))
    with pytest.raises(UsageError):
        render_batch_script(SubmitRequest(command=["x"], header_lines=["--a\n--b"]))


@pytest.mark.parametrize("seconds, text", [
    (60, "00:01:00"), (61, "00:02:00"), (3600, "01:00:00"), (86400, "1-00:00:00"),
    (90000, "1-01:00:00"), (1, "00:01:00"),
])
def test_format_time_limit(seconds, text):
    assert format_time_limit(seconds) == text


# --------------------------------------------------------------------------- srun argv


@pytest.mark.parametrize("args, opts, prog", [
    (["-N2", "./app", "-x", "1"], ["-N2"], ["./app", "-x", "1"]),
    (["-N", "2", "-n", "4", "--mpi=pmix", "app"], ["-N", "2", "-n", "4", "--mpi=pmix"],
     ["app"]),
    (["--nodes", "2", "--overlap", "-l", "app", "--nodes"], ["--nodes", "2", "--overlap", "-l"],
     ["app", "--nodes"]),
    (["-K", "-u", "--", "-weird-prog"], ["-K", "-u"], ["-weird-prog"]),
    (["--exclusive", "app"], ["--exclusive"], ["app"]),
    (["-J", "name", "app"], ["-J", "name"], ["app"]),
    ([], [], []),
])
def test_split_srun_args(args, opts, prog):
    assert split_srun_args(args) == (opts, prog)


def test_build_argv_merges_exclusions():
    ctx = BackendContext(environ={}, settings=SlurmSettings(srun="/opt/srun"))
    launcher = SrunLauncher(ctx)
    assert launcher.build_argv(["-N2", "app"], None, []) == ["/opt/srun", "-N2", "app"]
    argv = launcher.build_argv(["-N2", "-x", "n[5-6]", "--exclude=n9", "app", "-x", "arg"],
                               None, ["n2", "n5"])
    assert argv == ["/opt/srun", "--exclude=n[2,5-6,9]", "-N2", "app", "-x", "arg"]
    argv = launcher.build_argv(["-xn4", "app"], ["n1", "n2", "n3"], ["n7"])
    assert argv == ["/opt/srun", "--exclude=n[4,7]", "--nodelist=n[1-3]", "app"]
    assert launcher.one_node_argv("n3", ["cat", "/x"]) == [
        "/opt/srun", "--nodes=1", "--ntasks=1", "--nodelist=n3", "--overlap", "--mpi=none",
        "--", "cat", "/x"]
    # the conformance kit's argv checks (no launch without a cluster)
    conformance.check_launcher(SrunLauncher, ctx)


def test_kill_step_id_validates():
    launcher = SrunLauncher(BackendContext(environ={}))
    with pytest.raises(Exception, match="not a Slurm step id"):
        launcher.kill_step_id("12; rm -rf /")


def test_launch_error_when_srun_missing(tmp_path):
    from scr_core.errors import LaunchError

    launcher = SrunLauncher(BackendContext(environ={}, settings=SlurmSettings(
        srun=str(tmp_path / "no-srun"))))
    with pytest.raises(LaunchError):
        launcher.launch(["true"])
