"""Crash -> relaunch latency: a node dies mid-step; time from the crash to the first rank of
the relaunch (issue 17's step watch), ours against SCR's own loop, in the same run.

Slurm lab rows (``tests/slurm_lab``, 4 nodes, its lock shared with the test sessions): an
``sbatch --no-kill -N4`` job runs ``srun -N3`` with ``SlurmdTimeout=300`` (Slurm's default;
the lab's own 5 s is restored afterwards); once run 1's ranks have started, ``lab crash``
kills one of them (not the batch host). Every rank stamps its start (``date +%s.%N`` in a
shared file), so the latency is the relaunch's first stamp minus the crash's time.

* ours: ``scr run srun -N3 ...`` with the defaults (step watch on, node tests on);
* reference: SCR 3.1.0's ``scr_srun_loop.sh`` loop (tests/slurm_watch.py ``SCR_LOOP_SH``:
  wait for srun, ``scr_should_exit``, ``sleep 60``, ``scr_list_down_nodes -j srun``,
  ``scr_should_exit``, relaunch excluding them), with our commands of those names. srun
  returns only once slurmctld declares the node down (~SlurmdTimeout) and force-terminates
  the step, so the reference is stopped at a cap and shown as a lower bound ``> cap``.

Two jobs: a non-MPI one (ranks sleep) and a real Open MPI one (``srun --mpi=pmix``, ranks in
an ``MPI_Allreduce`` loop). Target: ours <= 10 s (median over the crashes).

Local backend row: ``scr local alloc -N 4 -- scr run local -N 4``, one virtual node crashed
(``scr local crash``) while the others sleep; ours with the watch, reference with
``SCR_WATCH=0`` and settle 0 (the loop waits for the launcher, which ends the step
``local.node_timeout`` seconds after the crash, emulating an RM's node timeout; set to 10 s
here, 30 s by default).

Quick mode (what tests/test_bench.py runs) measures the local row once and leaves the lab
rows out (they say so); so does a machine where the lab cannot start or stays busy.
Limits: a shared 2-core VM; the lab's nodes are namespaces of that VM, so a probe's round
trip is ~0.1 ms where a real network has more; few crashes per run (each costs ~20 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402

NAME = "stepwatch"
TARGET = "<= 10 s"
TESTS = os.path.join(common.ROOT, "tests")
LOCK_WAIT = float(os.environ.get("SCR_BENCH_LAB_WAIT", "300"))  # seconds

# run 1: the last rank crashes its virtual node after CRASH_AFTER s, the others sleep; later
# runs: every rank stamps its start and exits
LOCAL_BODY = ('case "$SCR_RUN_ID" in *.1) '
              'if [ "$SCR_LOCAL_RANK" = 3 ]; then sleep 1; date +%s.%N > {crash}; '
              'exec scr local crash "$SCR_LOCAL_NODE"; fi; exec sleep 300;; '
              '*) date +%s.%N >> {starts};; esac')


def local_latency(work: str, watch: bool, node_timeout: float) -> float:
    d = tempfile.mkdtemp(dir=work)
    crash, starts = os.path.join(d, "crash"), os.path.join(d, "starts")
    env = common.clean_env({"SCR_PREFIX": d, "SCR_RUNS": "2", "SCR_MIN_NODES": "3",
                            "SCR_LOCAL_NODE_TIMEOUT": str(node_timeout),
                            **({} if watch else {"SCR_WATCH": "0",
                                                 "SCR_RUN_SETTLE_SECONDS": "0"})},
                           home=os.path.join(work, "home"))
    scr = [common.PYTHON, "-m", "scr_core"]
    cmd = [*scr, "local", "alloc", "-N", "4", "--", *scr, "run", "local", "-N", "4",
           "sh", "-c", LOCAL_BODY.format(crash=crash, starts=starts)]
    proc = subprocess.run(cmd, env=env, cwd=d, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"scr run local exited {proc.returncode}: {proc.stderr[-500:]}")
    with open(crash) as fh:
        crashed = float(fh.read())
    with open(starts) as fh:
        first = min(float(line) for line in fh if line.strip())
    return first - crashed


def local_rows(quick: bool, full: bool) -> list[dict]:
    work = tempfile.mkdtemp(prefix="scr-bench-stepwatch.")
    repeats = 1 if quick else 5 if full else 3
    node_timeout = 3.0 if quick else 10.0
    try:
        ours, ref = [], []
        for _ in range(repeats):
            ours.append(local_latency(work, True, node_timeout))
            ref.append(local_latency(work, False, node_timeout))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [common.make_row(
        NAME, "local: vnode crash -> first rank of relaunch", common.median(ours),
        f"watch off, launcher waits node_timeout {node_timeout:g} s", common.median(ref),
        TARGET, f"median of {repeats}; ours: the local RM's lost_nodes (crashed marker) "
        "found by the watch within one interval (1 s)", repeats=f"{repeats}/{repeats}")]


# --------------------------------------------------------------------------- the lab

def _lab() -> tuple[Any, Any, str]:
    """(lab, lock file, '') with the lab started and its lock held; (None, None, why) when
    it is not available here."""
    if os.geteuid() != 0:
        return None, None, "the Slurm lab needs root"
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    import fcntl

    import conftest_slurm as cs

    lock = open(f"{cs.LAB_DIR}.lock", "w")
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                return None, None, f"the lab stayed busy (another session) for {LOCK_WAIT:g} s"
            time.sleep(1)
    try:
        lab = cs._start_lab()
    except BaseException as exc:  # pytest's skip/fail outcomes, or a start failure
        lock.close()
        return None, None, f"the Slurm lab did not start: {str(exc)[:200]}"
    return lab, lock, ""


def lab_rows(quick: bool, full: bool) -> list[dict]:
    cases = ("non-MPI (sleep)", "Open MPI allreduce loop")
    if quick:
        return [common.make_row(NAME, f"Slurm lab: crash -> relaunch, {c}", None, target=TARGET,
                                note="not run in --quick (each crash costs ~20 s)")
                for c in cases]
    lab, lock, why = _lab()
    if lab is None:
        return [common.make_row(NAME, f"Slurm lab: crash -> relaunch, {c}", None,
                                target=TARGET, note=f"not measured: {why}") for c in cases]
    import conftest_slurm as cs
    from slurm_watch import crash_one, run_job, slurmd_timeout

    crashes = 5 if full else 3
    cap = 120.0 if full else 60.0
    rows = []
    work = Path(tempfile.mkdtemp(prefix="scr-bench-stepwatch-lab.", dir="/tmp"))
    try:
        with slurmd_timeout(lab, 300):
            for mpi, case in zip((False, True), cases):
                ours, notes = [], []
                for i in range(crashes):
                    seen: dict = {}

                    def crash(_w: Path, ranks: Any, seen: dict = seen) -> None:
                        seen["node"], seen["at"] = crash_one(lab, ranks())

                    common.progress(f"{NAME}: {case}, crash {i + 1} of {crashes} (ours)")
                    res = run_job(lab, work / f"ours-{mpi}-{i}", mpi=mpi, first=600, later=1,
                                  during=crash)
                    lab.reset()
                    first = res.first_start(2)
                    if res.exit_code() != 0 or first is None or seen["node"] in res.hosts(2):
                        notes.append(f"crash {i + 1}: no clean relaunch")
                        continue
                    ours.append(first - seen["at"])
                seen = {}

                def crash_ref(_w: Path, ranks: Any, seen: dict = seen) -> None:
                    seen["node"], seen["at"] = crash_one(lab, ranks())

                common.progress(f"{NAME}: {case}, SCR's loop (capped at {cap:g} s)")
                t0 = time.time()
                res = run_job(lab, work / f"ref-{mpi}", mpi=mpi, first=600, later=1,
                              during=crash_ref, scr_loop_settle=60, timeout=cap, capped=True)
                lab.reset()
                first = res.first_start(2)
                ref = first - seen["at"] if first is not None else time.time() - seen["at"]
                over = first is None
                note = (f"median of {len(ours)} crashes: " +
                        ", ".join(f"{v:.1f}" for v in ours) + " s" +
                        (f"; {'; '.join(notes)}" if notes else "") +
                        f"; reference {'stopped at the cap' if over else 'relaunched'} "
                        f"({time.time() - t0:.0f} s wall)")
                rows.append(common.make_row(
                    NAME, f"Slurm lab: crash -> relaunch, {case}",
                    common.median(ours) if ours else None,
                    "SCR scr_srun_loop.sh logic, SlurmdTimeout=300", ref, TARGET, note,
                    reference_over=over, repeats=f"{len(ours)}/1"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        try:
            cs._stop_lab()
        finally:
            lock.close()
    return rows


def run(quick: bool, full: bool = False) -> list[dict]:
    return local_rows(quick, full) + lab_rows(quick, full)


if __name__ == "__main__":
    sys.exit(common.standalone(run))
