"""The mpirun and mpiexec launchers (scr_core.mpi) with Debian's Open MPI and MPICH hydra,
on this machine: argument handling, flavor detection, the local backend, conformance and a
kill that leaves no rank behind. The Slurm lab story is in test_slurm_mpi.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from scr_core.errors import LaunchError
from scr_core.interfaces import BackendContext
from scr_core.local.allocation import LocalAllocation
from scr_core.mpi import launcher as mpi
from scr_core.mpi.launcher import MpiexecLauncher, MpirunLauncher
from scr_core.mpi.settings import MpiSettings

from scr_core import conformance

ROOT_OK = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def need(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{command} is not installed (dev/setup installs openmpi-bin and "
                        "mpich)", pytrace=False)
        pytest.skip(f"{command} is not installed")
    return path


def ctx(env: dict, **settings) -> BackendContext:
    return BackendContext(environ=env, settings=MpiSettings(**settings))


# -- arguments ----------------------------------------------------------------------------------

def test_split_finds_the_program_after_valued_options():
    args = ["-np", "4", "--mca", "btl", "self,tcp", "-x", "FOO", "--oversubscribe", "./app",
            "-n", "3"]
    assert mpi.split_mpi_args(args, mpi.OPENMPI) == (args[:8], ["./app", "-n", "3"])
    args = ["-n", "4", "-genv", "A", "1", "-ppn", "2", "--", "./app", "-x"]
    assert mpi.split_mpi_args(args, mpi.HYDRA) == (args[:7], ["--", "./app", "-x"])


@pytest.mark.parametrize("flavor,args,per_node", [
    (mpi.OPENMPI, ["--map-by", "ppr:2:node:pe=1", "app"], 2),
    (mpi.OPENMPI, ["-N", "3", "app"], 3),
    (mpi.OPENMPI, ["-np", "3", "app"], None),
    (mpi.HYDRA, ["-ppn", "4", "app"], 4),
])
def test_ranks_per_node(flavor, args, per_node):
    assert mpi.ranks_per_node(mpi.split_mpi_args(args, flavor)[0], flavor) == per_node


@pytest.mark.parametrize("flavor,args,available,fitted", [
    # 8 ranks in 4 nodes are 2 a node: 6 on the 3 left
    (mpi.OPENMPI, ["-np", "8", "app", "-np", "9"], 3, ["-np", "6", "app", "-np", "9"]),
    # 3 ranks in 4 nodes: one a node, 3 nodes still hold them
    (mpi.OPENMPI, ["-np", "3", "app"], 3, ["-np", "3", "app"]),
    (mpi.OPENMPI, ["--map-by", "ppr:2:node", "-n", "8", "app"], 2,
     ["--map-by", "ppr:2:node", "-n", "4", "app"]),
    (mpi.HYDRA, ["-ppn", "1", "-n", "4", "--", "app"], 3, ["-ppn", "1", "-n", "3", "--", "app"]),
    (mpi.HYDRA, ["-n", "4", "app"], 2, ["-n", "2", "app"]),
    (mpi.HYDRA, ["app"], 2, ["app"]),
])
def test_fit_to_nodes_keeps_the_ranks_per_node(flavor, args, available, fitted):
    launcher = MpirunLauncher(ctx({"SCR_NODELIST": "n[1-4]"}, flavor=flavor))
    assert launcher.fit_to_nodes(args, available) == fitted


def test_exclusion_becomes_a_host_list_with_slots():
    env = {"SCR_NODELIST": "n[1-4]", "PATH": os.defpath, "SCR_RUN_ID": "7.2"}
    ompi = MpirunLauncher(ctx(env, flavor="openmpi"))
    assert ompi.build_argv(["-np", "6", "app"], None, ["n2"]) == [
        "mpirun", "--host", "n1:2,n3:2,n4:2", "-x", "SCR_NODELIST", "-x", "SCR_RUN_ID",
        "-np", "6", "app"]
    # no exclusion: the MPI reads the allocation itself, as without scr
    assert ompi.build_argv(["-np", "6", "app"], None, []) == [
        "mpirun", "-x", "SCR_NODELIST", "-x", "SCR_RUN_ID", "-np", "6", "app"]
    hydra = MpiexecLauncher(ctx(env, flavor="hydra", mpiexec="mpiexec.hydra"))
    assert hydra.build_argv(["-ppn", "2", "app"], None, ["n1", "n4"]) == [
        "mpiexec.hydra", "-hosts", "n2:2,n3:2", "-ppn", "2", "app"]
    with pytest.raises(LaunchError, match="host list or host file given on the command"):
        hydra.build_argv(["-f", "hosts", "app"], None, ["n1"])
    with pytest.raises(LaunchError, match="no usable nodes"):
        hydra.build_argv(["app"], None, ["n1", "n2", "n3", "n4"])
    with pytest.raises(LaunchError, match="no program"):
        hydra.build_argv(["-n", "2"], None, [])


def test_conformance_of_the_argv_in_an_allocation():
    """The kit's exclusion check for launchers that run on the other nodes' list."""
    env = {"SCR_NODELIST": "n1,n2,nodeX", "PATH": os.defpath}
    for cls, flavor in ((MpirunLauncher, "openmpi"), (MpiexecLauncher, "hydra")):
        seen = conformance.check_launcher(cls, ctx(env, flavor=flavor))
        assert "nodeX" not in " ".join(seen["argv"]) and "n1:1,n2:1" in seen["argv"]


# -- the real MPIs ------------------------------------------------------------------------------

def test_flavor_detection_asks_the_command_once():
    need("mpirun.openmpi")
    need("mpiexec.hydra")
    env = dict(os.environ)
    assert mpi.detect_flavor("mpirun.openmpi", env, 20) == mpi.OPENMPI
    assert mpi.detect_flavor("mpiexec.hydra", env, 20) == mpi.HYDRA
    with pytest.raises(LaunchError, match="command not found"):
        mpi.detect_flavor("no-such-mpirun", env, 20)
    # cached: a second question starts no process
    real = subprocess.Popen
    subprocess.Popen = None  # type: ignore[assignment,misc]
    try:
        assert mpi.detect_flavor("mpiexec.hydra", env, 20) == mpi.HYDRA
    finally:
        subprocess.Popen = real  # type: ignore[misc]


@pytest.fixture
def alloc(tmp_path):
    return LocalAllocation.create(["vn1", "vn2", "vn3"], time_limit=3600, base=str(tmp_path))


def _running(marker: str) -> list:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return out.stdout.split()


@pytest.mark.parametrize("cls,command", [(MpirunLauncher, "mpirun.openmpi"),
                                         (MpiexecLauncher, "mpiexec.hydra")])
def test_conformance_in_a_local_allocation_and_kill_leaves_nothing(alloc, cls, command):
    need(command)
    env = dict(os.environ, SCR_LOCAL_DIR=alloc.path, **ROOT_OK)
    context = ctx(env, mpirun=command, mpiexec=command, kill_grace=5)
    marker = f"sleep 61.{os.getpid()}"
    seen = conformance.check_launcher(
        cls, context, run_args=["-n", "2", "true"], sleep_args=["-n", "3", *marker.split()],
        exclude=["vn2"], env=env)
    assert seen["argv"][1:3] in (["--host", "localhost:2"], ["-hosts", "localhost:2"])
    assert seen["kill_seconds"] < 10
    time.sleep(0.2)
    assert _running(marker) == [], "a rank survived kill()"
    assert _running(f"hydra_pmi_proxy.*{marker}|orted.*{marker}") == []


def test_scr_mpirun_in_a_local_allocation(scr_env, tmp_path):
    """The issue's command: it was exit 4 ("no launcher plugin handles 'mpirun'")."""
    need("mpirun")
    env = dict(scr_env, **ROOT_OK)
    r = subprocess.run(["scr", "local", "alloc", "-N", "2", "--", "scr_mpirun", "-np", "2",
                        "hostname"], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [os.uname().nodename] * 2
    # hydra's mpiexec: 4 ranks on 3 virtual nodes (2 slots each, all here); the environment
    # reaches the ranks
    need("mpiexec.hydra")
    env["SCR_MPIEXEC"] = "mpiexec.hydra"
    r = subprocess.run(["scr", "local", "alloc", "-N", "3", "--", "scr", "run", "mpiexec",
                        "-n", "4", "sh", "-c", "echo run=$SCR_RUN_ID"], env=env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and len(set(lines)) == 1 and lines[0].startswith("run=local."), lines


def test_exit_code_of_the_job(alloc):
    need("mpirun.openmpi")
    env = dict(os.environ, SCR_LOCAL_DIR=alloc.path, **ROOT_OK)
    launcher = MpirunLauncher(ctx(env, mpirun="mpirun.openmpi"))
    step = launcher.launch(["-np", "2", "sh", "-c", "exit 7"], env=env)
    assert launcher.wait(step, timeout=60) == 7


def test_help_and_plugins_list_them(scr_env):
    r = subprocess.run(["scr", "run", "--help"], env=scr_env, capture_output=True, text=True)
    assert "mpirun" in r.stdout and "mpiexec" in r.stdout
    r = subprocess.run(["scr", "plugins"], env=scr_env, capture_output=True, text=True)
    assert r.returncode == 0
    assert "launcher          mpirun" in r.stdout and "launcher          mpiexec" in r.stdout


def test_node_names_are_validated_before_they_reach_the_host_list(monkeypatch):
    from scr_core.errors import UsageError

    launcher = MpirunLauncher(ctx({"PATH": os.defpath}, flavor="openmpi"))
    # what a resource manager reported: a name that would add a host to the list
    monkeypatch.setattr(launcher, "_allocation", lambda environ: ["n1", "n2,n9", "n3"])
    with pytest.raises(UsageError, match="invalid node name"):
        launcher.build_argv(["app"], None, ["n3"])


@pytest.mark.parametrize("cls,command,option,line", [
    (MpirunLauncher, "mpirun.openmpi", "--hostfile", "localhost slots=1\n"),
    (MpiexecLauncher, "mpiexec.hydra", "-f", "localhost:1\n")])
def test_a_long_host_list_goes_to_a_private_hostfile(monkeypatch, cls, command, option, line):
    """Longer than one argv word may safely be: a hostfile the real MPI reads, in a
    directory only we can read, gone when the step is over."""
    need(command)
    monkeypatch.setattr(mpi, "HOST_LIST_MAX", 5)
    env = dict(os.environ, SCR_NODELIST="localhost,nodeX", **ROOT_OK)
    launcher = cls(ctx(env, mpirun=command, mpiexec=command))
    step = launcher.launch(["-n", "1", "true"], exclude=["nodeX"], env=env)
    i = step.argv.index(option)
    hostfile = step.argv[i + 1]
    directory = os.path.dirname(hostfile)
    assert open(hostfile).read() == line
    assert os.stat(directory).st_mode & 0o077 == 0
    assert launcher.wait(step, timeout=60) == 0
    assert not os.path.exists(directory)


def test_node_checks_of_an_mpirun_job_use_the_detected_launchers_one_node_launch():
    """mpirun has no one-node launch: inside Slurm the node checks go through srun's, with no
    launcher to lend one through ClusterShell (ssh), instead of failing on every node."""
    from scr_core.engine.jobenv import JobEnv

    slurm = {"SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "n[1-2]", "PATH": os.defpath}
    assert JobEnv(environ=slurm, launcher_hint="mpirun")._hinted_launcher() == "srun"
    assert JobEnv(environ=slurm, launcher_hint="srun")._hinted_launcher() == "srun"
    assert JobEnv(environ={"PATH": os.defpath},
                  launcher_hint="mpiexec")._hinted_launcher() is None


def test_a_launcher_left_without_children_is_stopped(tmp_path):
    """Open MPI's mpirun hangs in its abort after a node crash, its ranks and daemons gone:
    once it had children and has had none for mpi.orphan_timeout seconds, it is stopped."""
    fake = tmp_path / "mpirun"
    fake.write_text("#!/bin/sh\nsleep 0.7\nexec sleep 300\n")  # a child, then none, forever
    fake.chmod(0o755)
    env = {"SCR_NODELIST": "n1", "PATH": os.defpath}
    launcher = MpirunLauncher(ctx(env, mpirun=str(fake), flavor="openmpi", orphan_timeout=1,
                                  kill_grace=2))
    step = launcher.launch(["-np", "1", "app"], env=env)
    t0 = time.monotonic()
    rc = launcher.wait(step, timeout=30)
    assert rc == -15 and time.monotonic() - t0 < 10
    # a launcher whose children come and go is left alone
    fake.write_text("#!/bin/sh\nfor i in 1 2 3 4 5 6; do sleep 0.4; done\n")
    step = launcher.launch(["-np", "1", "app"], env=env)
    assert launcher.wait(step, timeout=30) == 0
