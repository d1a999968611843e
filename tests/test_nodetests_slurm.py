"""Down-node detection on the real Slurm lab (tests/conftest_slurm.py): a crashed node and a
node cut off the network, found by the node tests through ClusterShell, pdsh and srun.

``scr list-down-nodes`` runs inside the lab's head network namespace (``lab exec``), where a
batch node of the allocation would be: Slurm's clients, the lab's host names and the nodes'
addresses work there, so ping and srun see exactly what a real batch node sees.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slurm

BIN = os.path.dirname(sys.executable)
# the real CLI, run by this interpreter inside the lab's head namespace
SHIM = "import sys\nfrom scr_core.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.fixture
def allocation(slurm, tmp_path):
    """A --no-kill allocation of 4 lab nodes; the test may crash or cut off nodes in it."""
    job_id = slurm.salloc("--no-kill", "-N4", "-t", "10")
    nodes = slurm.job_fields(job_id)["NodeList"]
    from scr_core.hostlist import expand

    cut: list[str] = []
    try:
        yield job_id, expand(nodes), cut
    finally:
        for node in cut:
            subprocess.run([str(slurm.lab_dir / "bin" / "lab"), "netup", node],
                           capture_output=True, timeout=60)
        slurm.run(["scancel", job_id], check=False)


def list_down(slurm, job_id, tmp_path, settings, *args, env_extra=None, timeout=180):
    conf = tmp_path / "settings.yaml"
    conf.write_text(settings)
    prefix = tmp_path / "prefix"
    prefix.mkdir(exist_ok=True)
    env = slurm.job_env(job_id, PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
                        HOME=str(tmp_path), SCR_SETTINGS_FILE=str(conf),
                        SCR_PREFIX=str(prefix), **(env_extra or {}))
    argv = [str(slurm.lab_dir / "bin" / "lab"), "exec", sys.executable, "-c", SHIM,
            "list-down-nodes", "--reason", *args]
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    reasons = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    print(f"list-down-nodes ({elapsed:.1f} s): {reasons}")  # shown with pytest -s
    return reasons, elapsed, proc.stderr


def lab_on_settings(slurm, rexec, extra=""):
    return (f"core:\n  remote_exec: {rexec}\n"
            f"remote:\n  worker: exec\n  wrapper: ['{slurm.lab_dir}/bin/lab', 'on', '%h']\n"
            "nodetests:\n  echo_timeout: 8\n  ping_wait: 1\n" + extra)


def test_default_tests_find_crashed_and_cut_off_nodes(slurm, allocation, tmp_path):
    job_id, nodes, cut = allocation
    crashed, isolated = nodes[1], nodes[2]
    slurm.lab("crash", crashed)
    slurm.lab("netdown", isolated)
    cut.append(isolated)
    reasons, elapsed, _ = list_down(slurm, job_id, tmp_path,
                                    lab_on_settings(slurm, "clustershell"))
    assert set(reasons) == {crashed, isolated}, reasons
    # Slurm needs ~20 s to notice; until then ping (the first default test) does
    assert reasons[isolated].startswith(("Failed to ping (", "Not responding")), reasons
    assert reasons[crashed].startswith(("Failed to ping (", "Not responding")), reasons
    assert elapsed < 60
    # the survivors passed ping, echo and dir_capacity (scr check-node in each node's /dev/shm)


@pytest.mark.parametrize("rexec", ["clustershell", "pdsh"])
def test_echo_and_dirs_through_lab_on_wrapper(slurm, allocation, tmp_path, rexec):
    if rexec == "pdsh" and shutil.which("pdsh") is None:
        pytest.skip("pdsh is not installed")
    job_id, nodes, _ = allocation
    crashed = nodes[3]
    slurm.lab("crash", crashed)
    reasons, _, _ = list_down(slurm, job_id, tmp_path, lab_on_settings(slurm, rexec),
                              env_extra={"SCR_NODE_TESTS": "echo,dir_capacity"})
    assert set(reasons) == {crashed}, reasons
    # before Slurm notices, echo through 'lab on' says why; afterwards the RM does
    assert (f"lab: {crashed} is not running" in reasons[crashed]
            or reasons[crashed].startswith("Not responding")), reasons


@pytest.mark.parametrize("rexec", ["launcher", "pdsh"])
def test_srun_per_node_finds_cut_off_node(slurm, allocation, tmp_path, rexec):
    """SCR's own way without ssh: srun -N1 -w NODE per node, from the batch node."""
    if rexec == "pdsh" and shutil.which("pdsh") is None:
        pytest.skip("pdsh is not installed")
    job_id, nodes, cut = allocation
    isolated = nodes[0]
    slurm.lab("netdown", isolated)
    cut.append(isolated)
    if rexec == "launcher":
        remote = "remote:\n  launcher: srun\n"
    else:
        remote = ("remote:\n  rcmd: exec\n  wrapper: [srun, --overlap, --mpi=none, -N1, -n1, "
                  "-w, '%h']\n")
    settings = (f"core:\n  remote_exec: {rexec}\n{remote}"
                "nodetests:\n  echo_timeout: 8\n")
    reasons, elapsed, _ = list_down(slurm, job_id, tmp_path, settings,
                                    env_extra={"SCR_NODE_TESTS": "echo"})
    assert set(reasons) == {isolated}, reasons
    assert reasons[isolated].startswith(("Failed to echo UP (", "Not responding")), reasons
    assert elapsed < 90


@pytest.mark.parametrize("kind", ["clustershell", "pdsh"])
def test_executors_run_on_the_lab_nodes(slurm, kind):
    """hostname inside each node's namespaces is its name: the command really ran there."""
    if kind == "pdsh" and shutil.which("pdsh") is None:
        pytest.skip("pdsh is not installed")
    from scr_core.interfaces import BackendContext
    from scr_core.remote.clustershell import ClusterShellRemoteExecutor
    from scr_core.remote.pdsh import PdshRemoteExecutor
    from scr_core.remote.settings import RemoteSettings

    cls = ClusterShellRemoteExecutor if kind == "clustershell" else PdshRemoteExecutor
    settings = RemoteSettings(worker="exec", wrapper=[str(slurm.lab_dir / "bin" / "lab"),
                                                      "on", "%h"])
    nodes = list(slurm.nodes[:4])
    slurm.lab("crash", nodes[1])
    rexec = cls(BackendContext(environ=dict(os.environ), settings=settings))
    result = rexec.run(["cat", "/proc/sys/kernel/hostname"], nodes, timeout=20)
    assert list(result) == nodes
    for n in nodes:
        if n == nodes[1]:
            assert not result[n].ok and f"{n} is not running" in result[n].stderr
        else:
            assert result[n].ok and result[n].stdout.strip() == n, result[n]
