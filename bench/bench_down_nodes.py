"""Benchmark: down-node detection over 1,024 and 10,000 virtual nodes vs raw ClusterShell.

ours       ``list_down_nodes`` of the engine, in-process, on a local allocation of N virtual
           nodes (1% of them marked down, so the core checks have work), with
           ``SCR_NODE_TESTS=echo`` through our ClusterShell executor: exec worker, the trivial
           per-node wrapper ``env SCR_BENCH_NODE=%h``. Timed from building the JobEnv to the
           ``{node: reason}`` dict (plugin registry, params, settings, RM down nodes, the echo
           test, verdicts).
reference  the same command on the same surviving nodes through ClusterShell directly, as the
           clush API does it (``task.shell("env SCR_BENCH_NODE=%h echo UP", nodes=NodeSet,
           remote=False)``: exec worker, same fanout and timeout), counting the nodes that
           said UP.

Both run in this process, after a small warm-up run of each (imports and ClusterShell's first
task are not what is compared), interleaved round-robin; rows hold medians; ratio = ours /
reference. Where our figure comes from: our exec worker starts each node's process as an argv
list with :class:`subprocess.Popen` (vfork) while ClusterShell's exec worker fork()s the whole
Python process and then runs ``/bin/sh -c`` on the command string; and our worker collects
output itself, without ClusterShell's per-event handler-signature inspection and message trees.

Sizes: quick 200 nodes once (seconds); default 1,024 nodes (2 rounds) and 10,000 nodes (1
round, the reference measured on a quarter of the nodes and scaled: see ``_case``), about
35 s on an idle 2-core machine and proportionally longer on a busy one; full: 3 and 3 rounds,
everything measured.

Run alone: ``python bench/bench_down_nodes.py [--quick|--full]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402

FANOUT = 256  # both sides; larger fanouts spend less time in ClusterShell's engine loop
TIMEOUT = 30.0
WRAPPER = ["env", "SCR_BENCH_NODE=%h"]
REFERENCE = "ClusterShell task.shell, exec worker (clush API)"


def _registry(env: dict) -> object:
    from scr_core.plugins import Registry

    return Registry(environ=env, entry_points=[
        ("local", "scr_core.local.plugin", "scr-core", "0.1.0"),
        ("core-remote", "scr_core.remote.plugin", "scr-core", "0.1.0"),
        ("nodetests", "scr_plugins_nodetests.plugin", "scr-plugins-nodetests", "0.1.0"),
    ])


def _ours(alloc_path: str, home: str) -> tuple[float, dict]:
    from scr_core.engine.down_nodes import list_down_nodes
    from scr_core.engine.jobenv import JobEnv

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
           "SCR_LOCAL_DIR": alloc_path, "SCR_NODE_TESTS": "echo",
           "SCR_REMOTE_EXEC": "clustershell", "SCR_REMOTE_WORKER": "exec",
           "SCR_REMOTE_WRAPPER": " ".join(WRAPPER), "SCR_REMOTE_FANOUT": str(FANOUT)}
    t0 = time.perf_counter()
    job = JobEnv(prefix=home, environ=env, registry=_registry(env))
    down = list_down_nodes(job, warn=lambda m: None)
    return time.perf_counter() - t0, down


def _reference(nodes: list[str]) -> tuple[float, int]:
    from ClusterShell.NodeSet import NodeSet
    from ClusterShell.Task import task_self

    t0 = time.perf_counter()
    task = task_self()
    task.set_info("fanout", FANOUT)
    task.shell(" ".join(WRAPPER) + " echo UP", nodes=NodeSet.fromlist(nodes), remote=False,
               timeout=TIMEOUT, stderr=True)
    task.resume()
    up = 0
    for buf, keys in task.iter_buffers():
        if bytes(buf).strip() == b"UP":
            up += len(keys)
    return time.perf_counter() - t0, up


def _case(n: int, repeats: int, ref_fraction: int = 1) -> dict:
    """One size. ``ref_fraction`` > 1: the reference runs on every ``ref_fraction``-th
    surviving node and its time is scaled up by the same factor (ClusterShell's exec worker
    is linear in the nodes: 3.96 vs 4.17 ms/node at 1,024 vs 10,000 in --full runs); this
    keeps the default mode under a minute, where the full reference alone takes ~45 s."""
    from scr_core.local.allocation import LocalAllocation

    with tempfile.TemporaryDirectory(prefix="scr-bench-") as tmp:
        names = [f"node{i}" for i in range(1, n + 1)]
        alloc = LocalAllocation.create(names, base=tmp)
        marked = names[::100]  # 1% down, reported by the (local) resource manager
        for node in marked:
            alloc.set_down(node, "bench: marked down")
        gone = set(marked)
        alive = [x for x in names if x not in gone]
        # warm up both on a few nodes: start-up costs are not what is compared
        _reference(alive[:8])
        _ours(LocalAllocation.create(names[:8], base=tmp).path, tmp)
        mismatches: set = set()

        def ours() -> float:
            t, down = _ours(alloc.path, tmp)
            if set(down) != gone:
                mismatches.add(f"ours found {len(down)} down, expected {len(gone)}")
            return t

        sample = alive[::ref_fraction]
        scale = len(alive) / len(sample)

        def reference() -> float:
            t, up = _reference(sample)
            if up != len(sample):
                mismatches.add(f"reference: {up}/{len(sample)} said UP")
            return t * scale

        samples = common.interleave({"ours": ours, "reference": reference}, repeats)
    for name, s in samples.items():
        if s.error:
            raise RuntimeError(f"{name}: {s.error}")
    ours_s, ref_s = samples["ours"].median, samples["reference"].median
    note = (f"{n:,} virtual nodes, {len(marked)} marked down; echo through the exec worker "
            f"'{' '.join(WRAPPER)}', fanout {FANOUT}; "
            f"ours {ours_s / n * 1e3:.2f} ms/node, ClusterShell {ref_s / n * 1e3:.2f} ms/node")
    if ref_fraction > 1:
        note += (f"; reference measured on {len(sample):,} of the {len(alive):,} nodes and "
                 f"scaled x{scale:.2f} (--full measures all)")
    if mismatches:
        note += "; MISMATCH: " + "; ".join(sorted(mismatches))
    return common.make_row("down_nodes", f"echo test, {n:,} nodes", ours_s, REFERENCE, ref_s,
                           "<= 1.0x", note, repeats=str(samples["ours"].count))


def run(quick: bool, full: bool = False) -> list[dict]:
    """Rows for bench/run.py (see the module docstring)."""
    if quick:
        cases = [(200, 1)]
    elif full:
        cases = [(1024, 3), (10000, 3)]
    else:
        cases = [(1024, 2), (10000, 1, 4)]
    return [_case(*case) for case in cases]


if __name__ == "__main__":
    sys.exit(common.standalone(run))
