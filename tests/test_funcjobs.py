"""Function jobs end to end: results, remote exceptions, timeouts, deaths, re-attaching
after the submitting process is killed, hash_ignore, concurrent submitters, partition
matching, the systems file, and an ssh system against an sshd this test starts."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from scr_core.errors import ConfigError
from scr_core.funcjobs import (
    FunctionJob,
    FunctionJobError,
    JobDiedError,
    JobsDB,
    JobTimeoutError,
    NoMatchingPartitionError,
    PartitionSpec,
    RemoteFunctionError,
    RemoteTraceback,
    Resources,
    job_hash,
    load_config,
    place,
)
from scr_core.interfaces import BackendContext
from scr_core.local import batch as local_batch
from scr_core.local.backend import LocalResourceManager

QUICK = {"max_time": "2m", "nodes": 1}


# functions run as jobs (importable by the runner: this file's directory is on its path)
def add(a, b, verbose=False):
    print(f"adding {a} and {b}")
    if verbose:
        print("verbosely")
    return a + b


def boom(x):
    raise ValueError(f"bad value {x}")


class Unpicklable(Exception):
    def __init__(self, a, b):  # pickling re-creates it with one argument: fails
        super().__init__(f"{a}/{b}")


def raise_unpicklable():
    raise Unpicklable(1, 2)


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def scale(self, x):
        return self.factor * x


def sleepy(seconds):
    time.sleep(seconds)
    return seconds


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def read_inputs(*paths):
    return [open(p).read() for p in paths]


def where():
    return {"cwd": os.getcwd(), "python": sys.executable, "x": os.environ.get("FUNCJOB_X")}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def jobs_env(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith(("SCR_", "SLURM_", "LSB_", "FLUX_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SCR_JOBS_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("SCR_LOCAL_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    yield dict(os.environ)
    # no job of a test outlives it
    spool = local_batch.Spool(str(tmp_path / "spool"))
    for jid in spool.job_ids():
        try:
            local_batch.cancel(dict(os.environ, SCR_LOCAL_SPOOL=spool.path), None, jid)
        except Exception:
            pass


def spool_jobs(env):
    return local_batch.Spool(env["SCR_LOCAL_SPOOL"]).job_ids()


# --------------------------------------------------------------------------- pure parts


PARTS = {
    "small": PartitionSpec("small", cpus=4, memory_mb=4000, max_time=3600, nodes=10),
    "big": PartitionSpec("big", cpus=32, memory_mb=256000, max_time=86400, nodes=4),
    "gpu": PartitionSpec("gpu", cpus=8, memory_mb=64000, max_time=None, nodes=2),
}


def test_place_picks_the_partition_with_fewest_idle_cores():
    p = place({"max_time": "30m", "tasks": 8}, PARTS)
    assert (p.partition, p.nodes, p.tasks, p.tasks_per_node) == ("small", 2, 8, 4)
    assert place({"max_time": "30m", "tasks": 8, "partitions": "g.*"}, PARTS).partition == "gpu"
    p = place(Resources(max_time="2h", tasks=8), PARTS)
    assert (p.partition, p.nodes, p.idle_cores) == ("gpu", 1, 0)
    p = place({"max_time": 60, "tasks": 8, "memory_per_task": "2G"}, PARTS)
    assert p.partition == "gpu" and p.memory_per_task_mb == 2048
    p = place({"max_time": 60, "tasks": 2, "cores_per_task": 0}, PARTS)
    assert (p.nodes, p.tasks_per_node) == (2, 1)
    p = place({"max_time": 60, "nodes": 2, "partitions": ["big"]}, PARTS)
    assert (p.nodes, p.tasks) == (2, 64)  # a node count fills the nodes with tasks
    keys = p.template_keys("job")
    assert keys["max_time_hms"] == "0:01:00" and keys["ntasks_per_node"] == 32


def test_place_says_why_nothing_fits():
    with pytest.raises(NoMatchingPartitionError) as err:
        place({"max_time": "1h", "nodes": 3, "partitions": "gpu|small",
               "cores_per_task": 6}, PARTS)
    text = str(err.value)
    assert "gpu: 3 node(s) needed, 2 up" in text
    assert "small: 6 cores per task asked, nodes have 4" in text
    assert "big: name does not match" in text
    with pytest.raises(NoMatchingPartitionError, match="time limit 3600s < 7200s"):
        place({"max_time": "2h", "tasks": 1, "partitions": "small"}, PARTS)
    with pytest.raises(NoMatchingPartitionError, match="MiB per node"):
        place({"max_time": 1, "tasks": 4, "memory_per_task": 2000, "partitions": "small"},
              PARTS)
    with pytest.raises(Exception, match="invalid resources"):
        place({"max_time": 1, "colour": "red"}, PARTS)


def test_hash_covers_function_arguments_and_inputs(tmp_path):
    (tmp_path / "in.txt").write_text("one")
    base = job_hash("j", add, (1, 2), {"verbose": True}, ["in.txt"], cwd=str(tmp_path))
    assert base == job_hash("j", add, (1, 2), {"verbose": True}, ["in.txt"], cwd=str(tmp_path))
    assert base != job_hash("j", add, (1, 3), {"verbose": True}, ["in.txt"], cwd=str(tmp_path))
    assert base != job_hash("k", add, (1, 2), {"verbose": True}, ["in.txt"], cwd=str(tmp_path))
    assert base != job_hash("j", boom, (1, 2), {"verbose": True}, ["in.txt"],
                            cwd=str(tmp_path))
    ignored = job_hash("j", add, (1, 2), {"verbose": True}, ["in.txt"], hash_ignore=["verbose"],
                       cwd=str(tmp_path))
    assert ignored == job_hash("j", add, (1, 2), {"verbose": False}, ["in.txt"],
                               hash_ignore=["verbose"], cwd=str(tmp_path))
    assert job_hash("j", add, (1, 2), hash_ignore=[1]) == job_hash("j", add, (1, 99),
                                                                     hash_ignore=[1])
    (tmp_path / "in.txt").write_text("two")
    assert ignored != job_hash("j", add, (1, 2), {"verbose": True}, ["in.txt"],
                               hash_ignore=["verbose"], cwd=str(tmp_path))
    with pytest.raises(Exception, match="does not exist"):
        job_hash("j", add, input_files=["nope.txt"], cwd=str(tmp_path))
    # a bound method's object is part of the call
    assert job_hash("m", Scaler(2).scale, (3,)) != job_hash("m", Scaler(5).scale, (3,))
    assert job_hash("m", Scaler(2).scale, (3,)) == job_hash("m", Scaler(2).scale, (3,))
    with pytest.raises(Exception, match="hash_ignore"):
        job_hash("j", add, hash_ignore=[1.5])


def test_systems_file_locations_and_merging(tmp_path):
    home = tmp_path / "home"
    (home / ".scr").mkdir(parents=True)
    (home / ".scr" / "systems.yaml").write_text(textwrap.dedent("""\
        systems:
          cluster: {host: login1, scheduler: slurm, rundir: /scratch/me}
          old: {host: login2}
        """))
    project = tmp_path / "proj"
    (project / "_scr").mkdir(parents=True)
    (project / "sub" / "deep").mkdir(parents=True)
    (project / "_scr" / "systems.yaml").write_text(textwrap.dedent("""\
        systems:
          cluster: {rundir: /scratch/proj, partitions: {batch: {cpus: 36, max_time: 1h}}}
          old: null
        """))
    env = {"HOME": str(home)}
    cfg = load_config(env, cwd=str(project / "sub" / "deep"))
    assert cfg.root == str(project / "_scr")
    assert cfg.db_path == str(project / "_scr" / "jobs.db")
    assert set(cfg.systems) == {"local", "cluster"}
    cluster = cfg.system("cluster")
    assert (cluster.host, cluster.scheduler, cluster.rundir) == ("login1", "slurm",
                                                                 "/scratch/proj")
    assert cluster.partitions["batch"].cpus == 36
    outside = load_config(env, cwd=str(tmp_path))
    assert outside.root == str(home / ".scr") and "old" in outside.systems
    root = tmp_path / "envroot"
    root.mkdir()
    (root / "systems.yaml").write_text("systems:\n  x: {host: h, transfer: ftp}\n")
    with pytest.raises(ConfigError, match=r"system 'x'.*transfer"):
        load_config({"HOME": str(home), "SCR_JOBS_ROOT": str(root)})
    (root / "systems.yaml").write_text("systems:\n  x: {host: h, colour: red}\n")
    with pytest.raises(ConfigError, match="colour"):
        load_config({"HOME": str(home), "SCR_JOBS_ROOT": str(root)})
    with pytest.raises(ConfigError, match="unknown system 'nope'"):
        cfg.system("nope")


# --------------------------------------------------------------------------- local system


def test_result_comes_back(jobs_env):
    job = FunctionJob("add", add, args=(2, 3))
    assert job.status == "created" and not job.recreated
    job.start(QUICK)
    assert job.status == "submitted" and job.system_name == "local" and job.remote_id
    assert job.get_results(timeout=60, check_interval=0.1) == 5
    assert job.status == "succeeded"
    assert job.stdout == "adding 2 and 3\n"
    row = job.db.get(job.id)
    assert row["status"] == "succeeded" and row["stage_dir"] == job.stage_dir
    assert row["remote_dir"] == job.stage_dir  # a local system runs in the staging dir
    assert job.get_results(timeout=5) == 5  # again: from the files


def test_runs_with_the_same_python_in_the_staging_dir(jobs_env, monkeypatch):
    monkeypatch.setenv("FUNCJOB_X", "inherited")
    job = FunctionJob("where", where)
    job.start(QUICK)
    got = job.get_results(timeout=60, check_interval=0.1)
    assert got == {"cwd": job.stage_dir, "python": sys.executable, "x": "inherited"}


def test_remote_exception_is_raised_here_with_its_traceback(jobs_env):
    job = FunctionJob("boom", boom, args=(3,))
    job.start(QUICK)
    with pytest.raises(ValueError, match="bad value 3") as err:
        job.get_results(timeout=60, check_interval=0.1)
    cause = err.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert 'in boom' in cause.text and "ValueError: bad value 3" in cause.text
    assert err.value.remote_traceback == cause.text
    assert job.db.get(job.id)["status"] == "failed"
    assert "bad value 3" in job.db.get(job.id)["message"]
    # an exception that cannot travel still reports its traceback text
    job = FunctionJob("unpick", raise_unpicklable)
    job.start(QUICK)
    with pytest.raises(RemoteFunctionError, match=r"(?s)raise_unpicklable.*Unpicklable: 1/2"):
        job.get_results(timeout=60, check_interval=0.1)


def test_timeout_then_cancel(jobs_env):
    job = FunctionJob("sleepy", sleepy, args=(60,))
    job.start(QUICK)
    t0 = time.monotonic()
    with pytest.raises(JobTimeoutError, match="not done after 1s") as err:
        job.get_results(timeout=1, check_interval=0.1)
    assert isinstance(err.value, TimeoutError)
    assert time.monotonic() - t0 < 10
    job.cancel()
    assert job.status == "cancelled"
    rm = LocalResourceManager(BackendContext(environ=jobs_env))
    assert rm.status([job.remote_id])[job.remote_id].state == "cancelled"
    with pytest.raises(JobDiedError):
        job.get_results(timeout=1)


def test_a_job_killed_or_out_of_time_died(jobs_env, monkeypatch):
    # an ended job counts as dead only after a grace time (requeues, file system lag)
    monkeypatch.setattr(FunctionJob, "death_grace", 1.0)
    job = FunctionJob("die", die)
    job.start(QUICK)
    with pytest.raises(JobDiedError, match=r"ended failed.*without results"):
        job.get_results(timeout=60, check_interval=0.1)
    assert job.db.get(job.id)["status"] == "died"
    job = FunctionJob("late", sleepy, args=(60,))
    job.start({"max_time": 1})  # the batch system enforces the time limit
    with pytest.raises(JobDiedError, match="ended timeout"):
        job.get_results(timeout=60, check_interval=0.1)


def test_hash_ignore_reattaches_and_mark_processed_starts_afresh(jobs_env):
    first = FunctionJob("h", add, args=(1, 2), kwargs={"verbose": True},
                        hash_ignore=["verbose"])
    first.start(QUICK)
    assert first.get_results(timeout=60, check_interval=0.1) == 3
    again = FunctionJob("h", add, args=(1, 2), kwargs={"verbose": False},
                        hash_ignore=["verbose"])
    assert again.recreated and again.id == first.id and again.status == "succeeded"
    again.start(QUICK)  # not resubmitted
    assert again.get_results(timeout=5) == 3
    assert "verbosely" in again.stdout  # the results of the first run
    other = FunctionJob("h", add, args=(1, 2), kwargs={"verbose": False})
    assert other.id != first.id and not other.recreated
    again.mark_processed()
    fresh = FunctionJob("h", add, args=(1, 2), kwargs={"verbose": True},
                        hash_ignore=["verbose"])
    assert fresh.id != first.id and not fresh.recreated and fresh.status == "created"
    with pytest.raises(FunctionJobError, match="processed"):
        again.get_results(timeout=1)
    assert len(spool_jobs(jobs_env)) == 1  # only the first was ever submitted


def test_input_files_are_staged(jobs_env, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("beta")
    job = FunctionJob("inputs", read_inputs, args=("data/a.txt", "elsewhere.txt"),
                      input_files=["data", str(outside)])
    job.start(QUICK)
    assert job.get_results(timeout=60, check_interval=0.1) == ["alpha", "beta"]
    with pytest.raises(Exception, match=r"'\.\.' is not allowed"):
        os.chdir(tmp_path / "data")
        FunctionJob("bad", read_inputs, input_files=["../elsewhere.txt"])


def test_nothing_fits_leaves_the_job_to_start_later(jobs_env):
    job = FunctionJob("big", add, args=(1, 1))
    with pytest.raises(NoMatchingPartitionError, match="local: 99 node"):
        job.start({"max_time": 60, "nodes": 99})
    assert job.db.get(job.id)["status"] == "created"
    job.start({"max_time": 60, "nodes": 2})
    assert job.get_results(timeout=60, check_interval=0.1) == 2


def test_start_on_a_resource_manager_object_with_header_template(jobs_env, tmp_path):
    from scr_core.funcjobs import RMSystem

    rm = LocalResourceManager(BackendContext(environ=jobs_env))
    cfg = type("Cfg", (), {"header": ["# nodes={nnodes} tasks={ntasks} on {partition}"],
                           "setup": ["export FUNCJOB_X=from-setup"], "env": {},
                           "python": None, "partitions": {}, "fault_tolerant": False})()
    job = FunctionJob("rmobj", where)
    job.start({"max_time": 60, "nodes": 2}, system=RMSystem("mine", rm, cfg))
    assert job.get_results(timeout=60, check_interval=0.1)["x"] == "from-setup"
    script = open(local_batch.job_info(jobs_env, None, job.remote_id)["script"]).read()
    # a node count fills the nodes: as many tasks as the local nodes have cpus
    assert f"# nodes=2 tasks={2 * (os.cpu_count() or 1)} on local" in script
    bad = type("Cfg", (), dict(cfg.__dict__, header=["#X {nope}"]))()
    with pytest.raises(ConfigError, match="nope"):
        FunctionJob("rmobj2", where).start(QUICK, system=RMSystem("bad", rm, bad))


# --------------------------------------------------------------------------- real processes


SCRIPT = textwrap.dedent("""\
    import json, sys, time
    from scr_core.funcjobs import FunctionJob

    def slow_square(x, delay):
        time.sleep(delay)
        return x * x

    if __name__ == "__main__":
        job = FunctionJob("square", slow_square, args=(7,), kwargs={"delay": float(sys.argv[1])},
                          hash_ignore=["delay"])
        print(json.dumps({"id": job.id, "recreated": job.recreated}), flush=True)
        job.start({"max_time": "5m"})
        print(json.dumps({"remote_id": job.remote_id}), flush=True)
        print(json.dumps({"result": job.get_results(timeout=120, check_interval=0.1)}),
              flush=True)
    """)


def test_reattach_after_the_submitting_process_is_killed(jobs_env, tmp_path):
    script = tmp_path / "square.py"
    script.write_text(SCRIPT)
    first = subprocess.Popen([sys.executable, str(script), "3"], env=jobs_env,
                             stdout=subprocess.PIPE, text=True)
    created = json.loads(first.stdout.readline())
    started = json.loads(first.stdout.readline())
    assert not created["recreated"] and started["remote_id"]
    first.send_signal(signal.SIGKILL)  # the script dies while its job runs
    first.wait(timeout=30)
    first.stdout.close()
    t0 = time.monotonic()
    second = subprocess.run([sys.executable, str(script), "0"], env=jobs_env,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    lines = [json.loads(x) for x in second.stdout.splitlines()]
    assert lines[0] == {"id": created["id"], "recreated": True}
    assert lines[1] == started  # the same batch job, not a new one
    assert lines[2] == {"result": 49}
    assert time.monotonic() - t0 < 60
    assert spool_jobs(jobs_env) == [started["remote_id"]]


CONCURRENT = textwrap.dedent("""\
    import json, sys
    from scr_core.funcjobs import FunctionJob

    def work(x):
        return x + 1

    if __name__ == "__main__":
        job = FunctionJob("conc", work, args=(41,))
        job.start({"max_time": "5m"})
        print(json.dumps({"id": job.id, "remote_id": job.remote_id,
                          "result": job.get_results(timeout=120, check_interval=0.1)}))
    """)


def test_concurrent_submitters_share_one_job(jobs_env, tmp_path):
    script = tmp_path / "conc.py"
    script.write_text(CONCURRENT)
    procs = [subprocess.Popen([sys.executable, str(script)], env=jobs_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    assert len({o["id"] for o in outs}) == 1
    assert len({o["remote_id"] for o in outs}) == 1
    assert all(o["result"] == 42 for o in outs)
    assert len(spool_jobs(jobs_env)) == 1
    assert len(JobsDB(os.path.join(jobs_env["SCR_JOBS_ROOT"], "jobs.db")).jobs()) == 1


def test_jobs_cli_ls_rm_unlock(jobs_env, capsys, monkeypatch):
    from scr_core.cli import main

    monkeypatch.setitem(main.COMMANDS, "jobs", ("scr_core.cli.jobs_cmd", "jobs", None))
    done = FunctionJob("lsdone", add, args=(1, 1))
    done.start(QUICK)
    done.get_results(timeout=60, check_interval=0.1)
    running = FunctionJob("lsrun", sleepy, args=(60,))
    running.start(QUICK)
    FunctionJob("lsnew", add, args=(5, 5))
    assert main.main(["jobs", "ls", "--sync"]) == 0
    out = capsys.readouterr().out
    assert "lsdone" in out and "\tsucceeded\t" in out and "\tcreated\t" in out
    assert main.main(["jobs", "ls", "--json", "-s", "ongoing", "-n", "^ls(run|new)$"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["name"] for r in rows) == ["lsnew", "lsrun"]
    assert main.main(["jobs", "ls", "--json", "-S", "^local$", "-s", "succ.*"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [done.id]
    assert main.main(["jobs", "ls", "-n", "("]) == 2
    assert main.main(["jobs", "rm"]) == 2  # no filter, no --all
    assert main.main(["jobs", "rm", "-n", "lsrun"]) == 2  # still running
    assert "cancel them" in capsys.readouterr().err
    assert main.main(["jobs", "rm", "-n", "lsdone", "--clean"]) == 0
    assert not os.path.exists(done.stage_dir)
    assert main.main(["jobs", "rm", "-n", "nothing-like-this"]) == 1
    # a claim left by a dead process is cleared by unlock
    db = running.db
    db.update(running.id, lock_owner=f"{socket.gethostname()}:999999:1", lock_time=time.time())
    assert main.main(["jobs", "unlock"]) == 0
    assert f"unlocked {running.id}" in capsys.readouterr().out
    assert main.main(["jobs", "unlock", "--rebuild"]) == 0
    assert "rebuilt" in capsys.readouterr().out
    assert {r["name"] for r in db.jobs()} == {"lsrun", "lsnew"}
    running.cancel()


# --------------------------------------------------------------------------- ssh system


def _skip_or_fail(reason):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An sshd of our own on 127.0.0.1 with a host key and a client key made here (nothing
    in /etc/ssh or ~/.ssh is read or changed)."""
    sshd_bin = "/usr/sbin/sshd"
    if not (os.path.exists(sshd_bin) and shutil.which("ssh") and shutil.which("ssh-keygen")):
        _skip_or_fail("openssh-server/openssh-client are not installed")
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)],
                       check=True)
    shutil.copy(d / "user.pub", d / "authorized_keys")
    port = _free_port()
    (d / "sshd_config").write_text(textwrap.dedent(f"""\
        Port {port}
        ListenAddress 127.0.0.1
        HostKey {d}/host
        PidFile {d}/sshd.pid
        AuthorizedKeysFile {d}/authorized_keys
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PubkeyAuthentication yes
        PermitRootLogin prohibit-password
        StrictModes no
        UsePAM no
        Subsystem sftp internal-sftp
        LogLevel ERROR
        """))
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755)  # sshd's privilege-separation directory
    log = open(d / "sshd.log", "w")
    proc = subprocess.Popen([sshd_bin, "-f", str(d / "sshd_config"), "-D", "-e"],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    shell = ["ssh", "-F", "/dev/null", "-p", str(port), "-i", str(d / "user"),
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"]
    user = getpass.getuser()
    deadline = time.monotonic() + 20
    try:
        while True:
            probe = subprocess.run([*shell, "-o", "BatchMode=yes", f"{user}@127.0.0.1",
                                    "true"], capture_output=True, text=True, timeout=20)
            if probe.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"test sshd did not come up: {probe.stderr} "
                            f"{(d / 'sshd.log').read_text()}", pytrace=False)
            time.sleep(0.2)
        yield {"shell": shell, "user": user, "port": port, "dir": d}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
@pytest.mark.parametrize("transfer", ["rsync", "scp"])
def test_ssh_system(jobs_env, sshd, tmp_path, transfer):
    if transfer == "rsync" and not shutil.which("rsync"):
        _skip_or_fail("rsync is not installed")
    remote = tmp_path / "remote"
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    (root / "systems.yaml").write_text(json.dumps({"systems": {"far": {
        "host": "127.0.0.1", "user": sshd["user"], "scheduler": "local",
        "remote_shell": sshd["shell"], "transfer": transfer,
        "rundir": str(remote / "runs"), "python": sys.executable,
        "env": {"SCR_LOCAL_SPOOL": str(remote / "spool"), "HOME": str(remote / "home"),
                "FUNCJOB_X": "remote-env"},
        "setup": ["test -d /tmp || exit 9"],
        "partitions": {"local": {"max_time": "1h"}},
    }}}))  # JSON is YAML
    (tmp_path / "in.txt").write_text("staged over " + transfer)
    job = FunctionJob("far", read_inputs, args=("in.txt",), input_files=["in.txt"])
    job.start(QUICK, system="far")
    assert job.system_name == "far"
    assert job.remote_dir.startswith(str(remote / "runs")) and job.remote_dir != job.stage_dir
    assert os.path.exists(os.path.join(job.remote_dir, "in.txt"))
    assert job.get_results(timeout=60, check_interval=0.2) == ["staged over " + transfer]
    assert local_batch.Spool(str(remote / "spool")).job_ids() == [job.remote_id]
    info = FunctionJob("where", where)
    info.start(QUICK, system="far")
    got = info.get_results(timeout=60, check_interval=0.2)
    assert got["x"] == "remote-env" and got["cwd"] == info.remote_dir
    failing = FunctionJob("farboom", boom, args=(5,))
    failing.start(QUICK, system="far")
    with pytest.raises(ValueError, match="bad value 5") as err:
        failing.get_results(timeout=60, check_interval=0.2)
    assert "in boom" in err.value.__cause__.text
    # a re-attached handle finds the system by name in the systems file
    again = FunctionJob("far", read_inputs, args=("in.txt",), input_files=["in.txt"])
    assert again.recreated and again.get_results(timeout=5) == ["staged over " + transfer]
    job.clean()
    assert not os.path.exists(job.remote_dir)
    slow = FunctionJob("farslow", sleepy, args=(60,))
    slow.start(QUICK, system="far")
    slow.cancel()
    rm = LocalResourceManager(BackendContext(environ=dict(
        jobs_env, SCR_LOCAL_SPOOL=str(remote / "spool"))))
    assert rm.status([slow.remote_id])[slow.remote_id].state == "cancelled"


def test_ssh_system_reports_connection_failures(jobs_env, tmp_path):
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    (root / "systems.yaml").write_text(json.dumps({"systems": {"nowhere": {
        "host": "127.0.0.1", "remote_shell": ["ssh", "-F", "/dev/null", "-p",
                                              str(_free_port()), "-o", "ConnectTimeout=5"],
        "partitions": {"p": {"cpus": 1}}}}}))
    job = FunctionJob("unreachable", add, args=(1, 2))
    with pytest.raises(Exception, match=r"nowhere: remote .* failed"):
        job.start(QUICK, system="nowhere")
    assert job.db.get(job.id)["status"] == "created"
