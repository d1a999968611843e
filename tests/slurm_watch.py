"""Crash-mid-step jobs on the Slurm lab, shared by tests/test_stepwatch_slurm.py and
bench/bench_stepwatch.py (issue 17).

:func:`slurmd_timeout` runs a block with the lab's ``SlurmdTimeout`` changed (Slurm's default
300 s instead of the lab's 5 s, so that Slurm itself is slow to notice a dead node, as in
production) and restores it afterwards, also on failure. :func:`run_job` submits an
``sbatch --no-kill -N4`` job whose script runs ``scr run srun -N3 rank.sh ...``: every rank
appends ``RUN_ID HOST PID EPOCH`` to a shared file as it starts (so a test knows where each
run's ranks are and when the relaunch's first rank started) and then execs the program with
its run's duration: ``sleep`` (a non-MPI job) or ``allreduce_loop`` (a real Open MPI job,
``srun --mpi=pmix``, ranks in an ``MPI_Allreduce`` loop).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

APPS = Path(__file__).resolve().parent / "apps"
CACHE = Path("/var/tmp/scr-test-apps")
PY = sys.executable

RANK_SH = """#!/bin/sh
# rank.sh DIR SECONDS_RUN1 SECONDS_LATER PROGRAM [ARGS]: note this rank, then run PROGRAM
d=$1; first=$2; later=$3; shift 3
echo "$SCR_RUN_ID $(hostname) $$ $(date +%s.%N)" >> "$d/ranks"
case "$SCR_RUN_ID" in *.1) secs=$first ;; *) secs=$later ;; esac
exec "$@" "$secs"
"""


# SCR 3.1.0's scripts/jobscripts/scr_srun_loop.sh, its loop as it is (wait for srun, then
# scr_should_exit, sleep, scr_list_down_nodes -j srun, scr_should_exit, relaunch excluding
# the down nodes), with this project's commands of the same names and SCR_RUN_ID set for
# rank.sh; SETTLE stands for its "sleep 60"
SCR_LOOP_SH = """
scr="{py} -m scr_core"
down_nodes=""
runs={runs}
run=0
while :; do
    exclude=""
    if [ -n "$down_nodes" ]; then exclude="--exclude=$down_nodes"; fi
    run=$((run + 1))
    SCR_RUN_ID=$SLURM_JOB_ID.$run srun $exclude {srun_args}
    runs=$((runs - 1))
    if $scr should-exit --runs $runs; then echo "Halt condition detected"; break; fi
    sleep {settle}
    keep_down=""
    if [ -n "$down_nodes" ]; then keep_down="--down $down_nodes"; fi
    down_nodes=$($scr list-down-nodes -j srun $keep_down)
    keep_down=""
    if [ -n "$down_nodes" ]; then keep_down="--down $down_nodes"; fi
    if $scr should-exit $keep_down; then echo "Halt condition detected"; break; fi
done
echo SCR_RUN_EXIT=0
"""


def build_allreduce() -> str:
    """``tests/apps/allreduce_loop.c`` compiled with mpicc, cached under /var/tmp by the
    source's hash (the lab installs Debian's openmpi-bin and libopenmpi-dev)."""
    src = APPS / "allreduce_loop.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    exe = CACHE / f"allreduce_loop-{digest}"
    if exe.exists():
        return str(exe)
    CACHE.mkdir(parents=True, exist_ok=True)
    mpicc = shutil.which("mpicc")
    if not mpicc:
        raise RuntimeError("mpicc not found (the Slurm lab installs libopenmpi-dev)")
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not exe.exists():
            tmp = exe.with_suffix(".tmp")
            subprocess.run([mpicc, "-O1", "-o", str(tmp), str(src)], check=True,
                           capture_output=True, timeout=120)
            os.replace(tmp, exe)
    return str(exe)


def _conf(lab: Any) -> Path:
    return Path(lab.lab_dir) / "etc" / "slurm" / "slurm.conf"


def current_slurmd_timeout(lab: Any) -> int:
    out = lab.run(["scontrol", "show", "config"]).stdout
    m = re.search(r"^SlurmdTimeout\s*=\s*(\d+)", out, re.M)
    return int(m.group(1)) if m else -1


@contextmanager
def slurmd_timeout(lab: Any, seconds: int) -> Iterator[None]:
    """The block runs with ``SlurmdTimeout=seconds`` (slurm.conf edited, ``scontrol
    reconfigure``); the file and the daemons' setting are restored afterwards, always."""
    conf = _conf(lab)
    original = conf.read_text()
    if not re.search(r"^SlurmdTimeout=\d+", original, re.M):
        raise RuntimeError(f"{conf} has no SlurmdTimeout line")
    changed = re.sub(r"^SlurmdTimeout=\d+", f"SlurmdTimeout={seconds}", original, flags=re.M)
    try:
        tmp = conf.with_suffix(".scr-tmp")
        tmp.write_text(changed)
        os.replace(tmp, conf)
        lab.run(["scontrol", "reconfigure"])
        deadline = time.monotonic() + 30
        while current_slurmd_timeout(lab) != seconds:
            if time.monotonic() > deadline:
                raise RuntimeError(f"SlurmdTimeout did not become {seconds}")
            time.sleep(0.2)
        yield
    finally:
        tmp = conf.with_suffix(".scr-tmp")
        tmp.write_text(original)
        os.replace(tmp, conf)
        lab.run(["scontrol", "reconfigure"], check=False)


@dataclasses.dataclass
class RankStart:
    run: int
    host: str
    pid: int
    at: float


@dataclasses.dataclass
class JobResult:
    job_id: str
    text: str
    ranks: list[RankStart]
    log: str

    def exit_code(self) -> int | None:
        m = re.search(r"^SCR_RUN_EXIT=(\d+)$", self.text, re.M)
        return int(m.group(1)) if m else None

    def hosts(self, run: int) -> set[str]:
        return {r.host for r in self.ranks if r.run == run}

    def first_start(self, run: int) -> float | None:
        times = [r.at for r in self.ranks if r.run == run]
        return min(times) if times else None


def read_ranks(path: Path) -> list[RankStart]:
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append(RankStart(int(parts[0].rsplit(".", 1)[1]), parts[1], int(parts[2]),
                                 float(parts[3])))
    return out


def run_job(lab: Any, work: Path, *, mpi: bool, first: float, later: float,
            during: Callable[[Path, Callable[[], list[RankStart]]], None],
            env: dict | None = None, timeout: float = 240, ntasks_per_node: int = 1,
            scr_loop_settle: float | None = None, capped: bool = False) -> JobResult:
    """Submit the job, wait until run 1's 3 ranks have started, call ``during(work,
    ranks)`` (the failure injection), wait for the job to end (with ``capped``, cancel it
    after ``timeout`` seconds instead of failing); the job's output, ranks and SCR log.
    ``scr_loop_settle``: run SCR's own loop (:data:`SCR_LOOP_SH`) instead of ``scr run``."""
    work.mkdir(parents=True, exist_ok=True)
    prefix = work / "prefix"
    prefix.mkdir(exist_ok=True)
    rank_sh = work / "rank.sh"
    rank_sh.write_text(RANK_SH)
    rank_sh.chmod(0o755)
    program = [build_allreduce()] if mpi else ["sleep"]
    values = {"SCR_PREFIX": str(prefix), "SCR_MIN_NODES": "3", "SCR_RUNS": "2",
              "SCR_LOG_ENABLE": "1", **(env or {})}
    if mpi:
        # Slurm's PMIx plugin sends a step's first messages between nodes through slurmd to
        # a socket path built from SlurmdSpoolDir unexpanded (".../nodes/%n/spool/..."),
        # which no lab node has (seen once in a relaunch: "pmixp_p2p_send ... exceeded the
        # retry limit", the step hung); direct connections from the start avoid that path
        values["SLURM_PMIX_DIRECT_CONN_EARLY"] = "true"
    exports = "".join(f"export {k}='{v}'\n" for k, v in values.items())
    srun = ["srun", "-N3", f"--ntasks-per-node={ntasks_per_node}"]
    if mpi:
        srun.append("--mpi=pmix")
    step = f"{rank_sh} {work} {first} {later} {' '.join(program)}"
    if scr_loop_settle is None:
        body = (exports + f"{PY} -m scr_core run {' '.join(srun)} {step}\n"
                "echo SCR_RUN_EXIT=$?\n")
    else:  # the reference: SCR's own job script loop
        body = exports + SCR_LOOP_SH.format(py=PY, runs=values["SCR_RUNS"],
                                            srun_args=f"{' '.join(srun[1:])} {step}",
                                            settle=scr_loop_settle)
    script = work / "job.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    out = work / "job.out"
    proc = lab.run(["sbatch", "--parsable", "--no-kill", "-N4", "-t", "10", f"--output={out}",
                    str(script)], timeout=30)
    job_id = proc.stdout.strip().split(";")[0]
    ranks_file = work / "ranks"

    def ranks() -> list[RankStart]:
        return read_ranks(ranks_file)

    deadline = time.monotonic() + 90
    while len([r for r in ranks() if r.run == 1]) < 3 * ntasks_per_node:
        if time.monotonic() > deadline:
            shown = out.read_text() if out.exists() else ""
            raise AssertionError(f"run 1 did not start 3 ranks: {shown}")
        time.sleep(0.1)
    if mpi:
        time.sleep(1.0)  # past MPI_Init: the ranks are in their allreduce loop
    during(work, ranks)
    injected = time.monotonic()
    try:
        # COMPLETING: the script is over, but Slurm waits for the dead node (SlurmdTimeout)
        state = lab.wait_job(job_id, "COMPLETING|COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|",
                             timeout)
    except AssertionError:
        if not capped:
            raise
        lab.run(["scancel", job_id], check=False)
        state = f"cancelled at the {timeout:g} s cap"
    text = (f"[job {state or 'gone'} {time.monotonic() - injected:.1f} s after the "
            f"injection]\n" + (out.read_text() if out.exists() else ""))
    log = prefix / ".scr" / "log"
    return JobResult(job_id, text, ranks(), log.read_text() if log.exists() else "")


def crash_one(lab: Any, ranks: list[RankStart], avoid: str = "n1") -> tuple[str, float]:
    """Crash a node of run 1 other than the batch host; (node, time of the crash)."""
    node = sorted({r.host for r in ranks if r.run == 1 and r.host != avoid})[-1]
    at = time.time()
    lab.lab("crash", node)
    return node, at
