"""Issue 17's proof on the real Slurm lab, with Slurm's default ``SlurmdTimeout=300`` (the lab
runs with 5; the module switches it for its tests and restores it): a node crashed while
``scr run srun -N3`` runs in an ``sbatch --no-kill -N4`` job is found by the step watch
within seconds, the step is killed and relaunched on the survivors, the job exits 0 and the
dead node is never used again; for a non-MPI job (ranks sleep) and a real Open MPI job
(``srun --mpi=pmix``, ranks in an ``MPI_Allreduce`` loop). And no false positive: a network
outage shorter than the window, a SIGSTOPped rank and saturated CPUs do not relaunch.
Job helpers: tests/slurm_watch.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from slurm_watch import crash_one, run_job, slurmd_timeout

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slow_slurm(slurm_lab):
    with slurmd_timeout(slurm_lab, 300):
        yield slurm_lab


def _check_relaunch(result, crashed: str, crash_at: float) -> float:
    text = result.text
    assert result.exit_code() == 0, text
    assert f"node {crashed} is dead: step watch, ping: Failed to ping" in text, text
    assert f"event=NODE_FAIL, note=\"{crashed}: step watch, ping: Failed to ping" in result.log, \
        result.log
    assert "exit code 137" in text  # a node failure, as srun reports one
    assert "before deciding on a relaunch" not in text  # no settle delay after the watch
    run2 = result.hosts(2)
    assert len(run2) == 3 and crashed not in run2, (run2, text)
    assert f"excluding {crashed}" in text, text
    assert not result.hosts(3), text  # finished on its second run
    latency = result.first_start(2) - crash_at
    print(f"crash of {crashed} -> first rank of run 2: {latency:.1f} s\n{text}")  # pytest -s
    return latency


def test_crashed_node_non_mpi_job_relaunched_on_survivors(slow_slurm, slurm, tmp_path: Path):
    seen = {}

    def crash(_work, ranks):
        seen["node"], seen["at"] = crash_one(slurm, ranks())

    result = run_job(slurm, tmp_path / "sleep", mpi=False, first=600, later=2, during=crash)
    _check_relaunch(result, seen["node"], seen["at"])


def test_crashed_node_open_mpi_job_relaunched_on_survivors(slow_slurm, slurm, tmp_path: Path):
    seen = {}

    def crash(_work, ranks):
        seen["node"], seen["at"] = crash_one(slurm, ranks())

    result = run_job(slurm, tmp_path / "mpi", mpi=True, first=600, later=2, during=crash)
    assert "allreduce_loop: 3 ranks" in result.text, result.text  # run 2 really ran MPI
    _check_relaunch(result, seen["node"], seen["at"])


def test_short_outage_stopped_rank_and_busy_cpus_are_not_node_failures(slow_slurm, slurm,
                                                                       tmp_path: Path):
    """netdown of n2 for 2.5 s (< SCR_WATCH_WINDOW, 5 s), then a rank SIGSTOPped for 8 s
    while its node's CPUs are saturated: the job finishes on its first run."""

    def disturb(_work, ranks):
        ranks1 = [r for r in ranks() if r.run == 1 and r.host != "n1"]
        outage, stopped = ranks1[0].host, ranks1[-1]
        slurm.lab("netdown", outage)
        try:
            time.sleep(2.5)
        finally:
            slurm.lab("netup", outage)
        # two busy loops on a 2-CPU node for ~8 s, while one of its ranks is stopped
        slurm.lab("on", stopped.host, "sh", "-c",
                  "for i in 1 2; do timeout 8 sh -c 'while :; do :; done' "
                  ">/dev/null 2>&1 </dev/null & done; true")
        slurm.lab("on", stopped.host, "kill", "-STOP", str(stopped.pid))
        try:
            time.sleep(8)
        finally:
            slurm.lab("on", stopped.host, "kill", "-CONT", str(stopped.pid))

    result = run_job(slurm, tmp_path / "quiet", mpi=False, first=16, later=1, during=disturb)
    text = result.text
    assert result.exit_code() == 0, text
    assert "is dead" not in text and "NODE_FAIL" not in result.log, text + result.log
    assert not result.hosts(2), text  # never relaunched
    assert "run 1 ended with exit code 0" in text, text
