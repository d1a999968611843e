"""``scr run mpirun`` / ``scr run mpiexec`` / ``scr_mpirun`` on the real Slurm lab (issue 20).

Real ``sbatch --no-kill -N4`` jobs run the launchers on n1 with Debian's Open MPI (its
mpirun starts orted through srun, plm_slurm) and MPICH (mpiexec.hydra starts
hydra_pmi_proxy through srun, ``-launcher slurm``) and a small C program (tests/apps/
mpi_loop.c, compiled once and cached under /var/tmp). A node crashed mid-step (``lab crash``)
must be excluded from the relaunch, which must end with exit 0, and no rank or MPI daemon
may be left on any node afterwards.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from scr_plugins_slurm import parse

pytestmark = pytest.mark.slurm

PY = sys.executable
BIN = os.path.dirname(PY)
SOURCE = Path(__file__).parent / "apps" / "mpi_loop.c"
CACHE = Path("/var/tmp/scr-mpi-apps")
STRAYS = "mpi_loop|orted|prted|hydra_pmi_proxy|mpirun|mpiexec|srun"
COMPILERS = {"openmpi": "mpicc.openmpi", "mpich": "mpicc.mpich"}


@pytest.fixture(scope="session")
def mpi_programs(slurm_lab) -> dict:
    """``{"openmpi": path, "mpich": path}`` of mpi_loop.c built with each MPI (cached by the
    source's hash; the lab's start installed both MPIs)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    out = {}
    for mpi, compiler in COMPILERS.items():
        target = CACHE / f"mpi_loop-{mpi}-{digest}"
        if not target.exists():
            if shutil.which(compiler) is None:
                pytest.fail(f"{compiler} is missing although the lab installs it", pytrace=False)
            CACHE.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=CACHE, prefix=".build-")
            os.close(fd)
            try:
                subprocess.run([compiler, "-O1", "-o", tmp, str(SOURCE)], check=True,
                               timeout=120, capture_output=True)
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        out[mpi] = str(target)
    return out


def submit(slurm, tmp_path: Path, body: str) -> tuple:
    out = tmp_path / "job.out"
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    proc = slurm.run(["sbatch", "--parsable", "--no-kill", "-N4", "-t", "10",
                      f"--output={out}", str(script)], timeout=30)
    return parse.parse_sbatch_parsable(proc.stdout), out


def wait_text(path: Path, pattern: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if re.search(pattern, text, re.M):
            return text
        assert time.monotonic() < deadline, f"no {pattern!r} in time:\n{text}"
        time.sleep(0.2)


def strays(slurm, nodes, settle: float = 0.0) -> dict:
    """``{node: [process lines]}`` of MPI ranks, daemons and launchers left on the nodes
    (looked at again for up to ``settle`` seconds while some are found)."""
    deadline = time.monotonic() + settle
    while True:
        found = _strays(slurm, nodes)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)


def _strays(slurm, nodes) -> dict:
    found = {}
    for node in nodes:
        r = subprocess.run([str(slurm.lab_dir / "bin" / "lab"), "on", node, "pgrep", "-a",
                            "-f", STRAYS], env=slurm.env(), capture_output=True, text=True,
                           timeout=60)
        lines = [line for line in r.stdout.splitlines() if "pgrep" not in line]
        if lines:
            found[node] = lines
    return found


def env_lines(prefix: Path, **extra: str) -> str:
    # ping catches the crashed node at once (Slurm takes ~25 s to call it down)
    values = {"SCR_PREFIX": str(prefix), "SCR_RUN_SETTLE_SECONDS": "2",
              "SCR_RUNS": "3", "SCR_MIN_NODES": "3", "SCR_MPI_PROBE": "seen",
              "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", **extra}
    return "".join(f"export {k}='{v}'\n" for k, v in values.items())


@pytest.mark.parametrize("mpi,command,node_tests", [
    ("openmpi", f"{PY} -m scr_core run mpirun -np 3", "ping"),
    ("mpich", f"{PY} -m scr_core run mpiexec -n 3", "ping"),
    # the default node tests: echo and dir_capacity run through srun's one-node launch
    # (mpirun has none), on the nodes that answered ping
    ("openmpi", f"{BIN}/scr_mpirun -np 3", "default"),
])
def test_node_crash_relaunch_excluding_it_leaves_no_process(slurm, tmp_path, mpi_programs,
                                                           mpi, command, node_tests):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    tests = {"SCR_NODE_TESTS": node_tests} if node_tests != "default" else {}
    body = (env_lines(prefix, SCR_MPIEXEC="mpiexec.hydra", **tests) +
            f"{command} {mpi_programs[mpi]} 200 50\n"
            "echo SCR_RUN_EXIT=$?\n")
    _jid, out = submit(slurm, tmp_path, body)
    wait_text(out, r"^mpi_loop: 3 ranks", 90)
    slurm.lab("crash", "n2")
    text = wait_text(out, r"^SCR_RUN_EXIT=\d+", 180)
    print(text)  # shown with pytest -s
    assert "SCR_RUN_EXIT=0" in text, text
    assert ("Open MPI" if mpi == "openmpi" else "MPICH") in text
    assert "run 2 of 3 on 3 node(s), excluding n2" in text
    # found by ping (between runs, or by the step watch during run 1), or by Slurm when Open
    # MPI's mpirun hung in its abort and was stopped ("no rank or daemon left under it")
    assert re.search(r"node n2 is (down|dead): .*(Failed to ping|Slurm reports down)",
                     text), text
    assert not re.search(r"node n[134] is (down|dead)", text), text
    second = text.split("excluding n2", 1)[1]
    ranks = re.findall(r"^mpi_loop: rank \d of 3 on (n\d) probe=(\w+)$", second, re.M)
    assert sorted(ranks) == [("n1", "seen"), ("n3", "seen"), ("n4", "seen")], second
    assert "mpi_loop: finished 200 steps on 3 ranks" in second
    # the batch script is over; the job itself may stay RUNNING while slurmctld waits for
    # dead n2 to confirm the end of the first run's daemon step
    assert strays(slurm, ["n1", "n3", "n4"], settle=10) == {}
    assert "not running" in subprocess.run(
        [str(slurm.lab_dir / "bin" / "lab"), "on", "n2", "true"], env=slurm.env(),
        capture_output=True, text=True, timeout=60).stderr


def test_scr_mpirun_killed_step_leaves_no_process(slurm, tmp_path, mpi_programs):
    """scr_mpirun (Open MPI) on 4 nodes; scr halt --immediate makes scr_run kill the step:
    no rank, orted or srun is left on any node."""
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    body = (env_lines(prefix, SCR_NODE_TESTS="none") +
            f"{BIN}/scr_mpirun -np 4 {mpi_programs['openmpi']} 100000 50\n"
            "echo SCR_RUN_EXIT=$?\n")
    _jid, out = submit(slurm, tmp_path, body)
    wait_text(out, r"^mpi_loop: 4 ranks", 90)
    assert len(strays(slurm, ["n2", "n3", "n4"])) == 3  # the check sees the ranks
    r = subprocess.run([PY, "-m", "scr_core", "halt", "--immediate", str(prefix)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text = wait_text(out, r"^SCR_RUN_EXIT=\d+", 120)
    assert "SCR_RUN_EXIT=10" in text and "killing the job step (scr_halt --immediate)" in text
    assert strays(slurm, slurm.nodes, settle=10) == {}
