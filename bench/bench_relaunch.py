"""Relaunch decision time: from a failed step's exit to the next launch, minus the settle delay.

Drives the real ``Runner`` (``scr run``'s loop, in this process) on the local backend with
``SCR_RUN_SETTLE_SECONDS=0``, for allocations of 16, 1,024 and 10,000 virtual nodes of which
3 are marked down (the resource manager reports them), ``SCR_MIN_NODES`` = half the nodes,
``SCR_NODE_TESTS=none``. The step is one task (``local -n 1 bash -c ...``) that writes
``$EPOCHREALTIME`` and exits 3, so every run fails and is relaunched; a probe around the
launcher records when ``wait`` returned the exit code and when ``launch`` was called and
returned. Per relaunch (medians over the relaunches):

``total``   step exit (the task's own time stamp) -> next step launched (``launch`` returned)
``detect``  step exit -> the launcher's ``wait`` returns it (the local launcher polls every
            50 ms and re-reads allocation.json on every ``wait`` call)
``decide``  ``wait`` returned -> next ``launch`` called: log lines, settle (0), down nodes
            (RM query + known down), ``should_exit`` (halt file, runs, node count), argv
``launch``  inside ``launch``: excluded/dead node bookkeeping and starting the one task

Also, with no process in the way, the between-runs path called directly
(``list_down_nodes`` + ``should_exit`` + ``build_argv``), and, separately, the time to set the
allocation up (``LocalAllocation.create``: two directories per node, so 10,000 virtual nodes
are 20,000 directories; not part of the relaunch). Target: total <= 0.2 s at 1,024 nodes.

Limits: node tests are off (their cost is the down-node benchmark's); the local backend's
costs (per-node files for the down state, the 50 ms poll) stand for the RM's, which on a
real cluster is a subprocess (sinfo, bhosts) instead; time stamps are wall clock across two
processes (microsecond resolution, the bash exit after the stamp is counted); a shared
2-core VM with colleagues' tests running: medians, few relaunches per size.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402

NAME = "relaunch"
DOWN = 3
TARGET_NODES = 1024


class Probe:
    """Wraps the real launcher: records when the step's exit code came back and when the
    next launch was called and returned (wall clock, comparable with the task's stamp)."""

    def __init__(self, real: Any, stamp: str) -> None:
        self.real = real
        self.stamp = stamp
        self.launches: list[tuple[float, float]] = []
        self.exits: list[tuple[float, float]] = []  # (stamp of the task, wait returned)

    def launch(self, args: Any, nodes: Any = None, exclude: Any = (), env: Any = None) -> Any:
        t0 = time.time()
        step = self.real.launch(args, nodes=nodes, exclude=exclude, env=env)
        self.launches.append((t0, time.time()))
        return step

    def wait(self, step: Any, timeout: float | None = None) -> int | None:
        rc = self.real.wait(step, timeout=timeout)
        if rc is not None and not getattr(step, "_bench_seen", False):
            now = time.time()
            step._bench_seen = True
            try:
                with open(self.stamp) as fh:
                    stamped = float(fh.read().strip().replace(",", "."))
            except (OSError, ValueError):
                stamped = float("nan")
            self.exits.append((stamped, now))
        return rc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _env(work: str, alloc_path: str, n: int, runs: int, extra: dict | None = None) -> dict:
    prefix = os.path.join(work, f"prefix.{n}")
    os.makedirs(prefix, exist_ok=True)
    env = common.clean_env({
        "SCR_LOCAL_DIR": alloc_path,
        "SCR_PREFIX": prefix,
        "SCR_RUNS": str(runs),
        "SCR_RUN_SETTLE_SECONDS": "0",
        "SCR_MIN_NODES": str(max(1, n // 2)),
        "SCR_NODE_TESTS": "none",
    }, home=os.path.join(work, "home"))
    env.update(extra or {})
    return env


def drive_runner(work: str, alloc_path: str, n: int, relaunches: int,
                 extra_env: dict | None = None) -> dict[str, list[float]]:
    """Run the real Runner with ``relaunches + 1`` failing runs; the per-relaunch phases."""
    from scr_core.engine.jobenv import JobEnv
    from scr_core.engine.run import Runner, RunRequest

    stamp = os.path.join(work, f"stamp.{n}")
    env = _env(work, alloc_path, n, relaunches + 1, extra_env)
    job = JobEnv(environ=env)
    probe_box: list[Probe] = []

    def launcher(command: str | None = None) -> Any:
        probe = Probe(JobEnv.launcher(job, command), stamp)
        probe_box.append(probe)
        return probe

    job.launcher = launcher  # type: ignore[method-assign]
    script = ('t=$EPOCHREALTIME; [ -n "$t" ] || t=$(date +%s.%N); '
              f'echo "$t" > {stamp}; exit 3')
    request = RunRequest("local", ["-n", "1", "bash", "-c", script])
    rc = Runner(job, request, out=lambda _m: None).run()
    if rc != 1:  # FAILED: the application failed and no runs are left
        raise RuntimeError(f"scr run ended with {rc}, expected 1 (every run fails)")
    probe = probe_box[0]
    phases: dict[str, list[float]] = {"total": [], "detect": [], "decide": [], "launch": []}
    for i in range(relaunches):
        stamped, detected = probe.exits[i]
        called, launched = probe.launches[i + 1]
        phases["total"].append(launched - stamped)
        phases["detect"].append(detected - stamped)
        phases["decide"].append(called - detected)
        phases["launch"].append(launched - called)
    return phases


def direct_path(work: str, alloc_path: str, n: int, repeats: int) -> list[float]:
    """list_down_nodes + should_exit + build_argv, called directly (after one warm-up)."""
    from scr_core.engine.down_nodes import list_down_nodes
    from scr_core.engine.jobenv import JobEnv
    from scr_core.engine.should_exit import should_exit

    job = JobEnv(environ=_env(work, alloc_path, n, 100))
    launcher = JobEnv.launcher(job, "local")
    nodes = job.node_list()
    args = ["-n", "1", "true"]
    known: list[str] = []

    def between() -> None:
        down = list_down_nodes(job, nodes, down=known)
        keep = list(down)
        decision = should_exit(job, nodes, keep, runs_left=10)
        if decision.stop:
            raise RuntimeError(f"should_exit said stop: {decision.reason}")
        launcher.build_argv(args, None, keep)
        known[:] = keep

    between()
    return [common.time_call(between) for _ in range(repeats)]


def run(quick: bool, full: bool = False) -> list[dict]:
    from scr_core.local.allocation import LocalAllocation

    sizes = (16, TARGET_NODES) if quick else (16, TARGET_NODES, 10_000)
    relaunches = 2 if quick else 8 if full else 4
    direct_repeats = 3 if quick else 15 if full else 7
    work = tempfile.mkdtemp(prefix="scr-bench-relaunch.")
    rows = []
    try:
        for n in sizes:
            names = LocalAllocation.node_names(n)
            t0 = time.perf_counter()
            alloc = LocalAllocation.create(names, base=os.path.join(work, "allocs"))
            setup_s = time.perf_counter() - t0
            step = max(1, n // (DOWN + 1))
            for i in range(DOWN):
                alloc.set_down(names[step * (i + 1) - 1], "bench: marked down")
            label = f"{n:,} nodes ({DOWN} down)"
            rows.append(common.make_row(
                NAME, f"allocation setup, {n:,} nodes", setup_s, note=(
                    f"LocalAllocation.create: {2 * n:,} directories + allocation.json; "
                    "once per allocation, not in the relaunch path")))

            phases = drive_runner(work, alloc.path, n, relaunches)
            med = {k: common.median(v) for k, v in phases.items()}
            target = "<= 0.2 s" if n == TARGET_NODES else ""
            rows.append(common.make_row(
                NAME, f"Runner: exit -> next launch, {label}", med["total"], "-", None,
                target,
                f"detect {common.fmt_s(med['detect'])} (local launcher poll), decide "
                f"{common.fmt_s(med['decide'])}, launch {common.fmt_s(med['launch'])}; "
                f"median of {relaunches} relaunches, settle 0, node tests off",
                repeats=str(relaunches)))

            times = direct_path(work, alloc.path, n, direct_repeats)
            rows.append(common.make_row(
                NAME, f"between-runs path direct, {label}", common.median(times), "-", None,
                "", "list_down_nodes + should_exit + build_argv in-process, no step; "
                f"median of {len(times)}", repeats=str(len(times))))
            shutil.rmtree(alloc.path, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


if __name__ == "__main__":
    sys.exit(common.standalone(run))
