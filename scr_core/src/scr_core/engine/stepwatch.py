"""In-step health watch (``SCR_WATCH``): find a node that dies *while* the job step runs.

Without it ``scr run`` learns of a dead node only when the launcher returns, and srun returns
only when Slurm gives up on the node (``SlurmdTimeout``, 300 s by default; an MPI job's
surviving ranks block on the dead peer until then). The watch runs in a thread beside the
wait loop and asks, every ``SCR_WATCH_INTERVAL`` seconds, in parallel:

* the resource manager, through :meth:`ResourceManager.lost_nodes` when the backend
  implements it (Flux marks a lost broker offline within ~2 s; the local backend knows at
  once; Slurm and LSF only after their own timeouts). A node it reports is dead at once;
* the node tests registered as fit for in-step use (``NodeTestSpec(in_step=True)``: ping),
  named by ``SCR_WATCH_TESTS`` (default: every such test that is also a default test). A
  node is dead only after ``SCR_WATCH_FAILURES`` consecutive failed probes spanning at least
  ``SCR_WATCH_WINDOW`` seconds (first failed probe's start to the last one's answer); one
  good answer resets the count. A probe that raises or does not answer within its round
  gives no verdict (our side may be the problem), never a failure.

The wait loop only reads :meth:`StepWatch.dead` (no I/O), so a slow probe never delays it.
What happens next (log NODE_FAIL, kill the step with a bounded grace, relaunch without the
node) is the run loop's: :func:`kill_step` is the bounded kill it uses for every reason.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Sequence

from ..errors import ConfigError, NotSupportedError

# the defaults, from measurements on the Slurm lab (docs/notes.md, "Issue 17")
DEFAULT_INTERVAL = 1.0
DEFAULT_FAILURES = 3
DEFAULT_WINDOW = 5.0
DEFAULT_KILL_GRACE = 5.0
# after the watch found a dead node: srun waits for that node's tasks (the lab's srun "waiting
# up to 7 seconds"), which never answer, while the survivors' tasks go within ~1 s of scancel
WATCH_KILL_GRACE = 2.0
RM = "resource manager"
WATCH = "step watch"  # how every reason of the watch begins (scr report's "found by")


@dataclasses.dataclass
class WatchConfig:
    enabled: bool = True
    interval: float = DEFAULT_INTERVAL
    failures: int = DEFAULT_FAILURES
    window: float = DEFAULT_WINDOW
    tests: list[str] | None = None  # None: every in-step test that is a default test


def _seconds(params: Any, name: str, default: float, minimum: float) -> float:
    value = params.get_seconds(name, default)
    if value is None or value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g} seconds, not "
                          f"'{params.get(name)}' ({params.source(name)})")
    return float(value)


def watch_config(params: Any) -> WatchConfig:
    """The watch's parameters (SCR_WATCH, _INTERVAL, _FAILURES, _WINDOW, _TESTS)."""
    enabled = params.get_bool("SCR_WATCH", True)
    interval = _seconds(params, "SCR_WATCH_INTERVAL", DEFAULT_INTERVAL, 0.05)
    failures = params.get_int("SCR_WATCH_FAILURES", DEFAULT_FAILURES)
    if failures is None or failures < 1:
        raise ConfigError(f"SCR_WATCH_FAILURES must be at least 1, not "
                          f"'{params.get('SCR_WATCH_FAILURES')}' "
                          f"({params.source('SCR_WATCH_FAILURES')})")
    window = _seconds(params, "SCR_WATCH_WINDOW", DEFAULT_WINDOW, 0.0)
    text = params.get("SCR_WATCH_TESTS")
    tests = None
    if text is not None:
        tests = [n.strip() for n in text.replace("\n", ",").split(",")
                 if n.strip() and n.strip().lower() != "none"]
    return WatchConfig(bool(enabled), interval, failures, window, tests)


def kill_grace(params: Any) -> float:
    """SCR_RUN_KILL_GRACE_SECONDS: how long a killed launcher gets before its processes are
    killed outright."""
    return _seconds(params, "SCR_RUN_KILL_GRACE_SECONDS", DEFAULT_KILL_GRACE, 0.0)


def check_watch_params(job: Any) -> None:
    """Raise ConfigError for a bad SCR_WATCH_* or SCR_RUN_KILL_GRACE_SECONDS."""
    config = watch_config(job.params)
    kill_grace(job.params)
    if config.enabled:
        in_step_tests(job, config.tests)


def in_step_tests(job: Any, names: Sequence[str] | None) -> list[Any]:
    """Node-test specs the watch runs: ``names`` (each must be registered and declared
    ``in_step``), else every registered test declared both ``in_step`` and ``default``."""
    specs = job.registry.specs("node_test")
    if names is None:
        chosen = [r.spec for r in specs.values()
                  if getattr(r.spec, "in_step", False) and r.spec.default]
        return sorted(chosen, key=lambda s: (s.order, s.name))
    out = []
    for name in names:
        record = specs.get(name)
        if record is None:
            raise ConfigError(f"unknown node test '{name}' in SCR_WATCH_TESTS; available: "
                              f"{', '.join(sorted(specs)) or 'none'}")
        if not getattr(record.spec, "in_step", False):
            fit = sorted(n for n, r in specs.items() if getattr(r.spec, "in_step", False))
            raise ConfigError(f"node test '{name}' in SCR_WATCH_TESTS is not declared fit for "
                              f"use while a step runs (in_step); such tests: "
                              f"{', '.join(fit) or 'none'}")
        out.append(record.spec)
    return out


@dataclasses.dataclass
class _Streak:
    count: int = 0
    first: float = 0.0  # start of the first failed probe of the streak
    reason: str = ""


class StepWatch:
    """Watches the nodes ``nodes()`` returns (called every round: the step's nodes may
    become known after the launch) until :meth:`stop`. :meth:`dead` is ``{node: reason}``."""

    def __init__(self, job: Any, nodes: Callable[[], Sequence[str]], config: WatchConfig,
                 warn: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.job = job
        self.nodes = nodes
        self.config = config
        self.clock = clock
        self.warn = warn or (lambda m: print(f"scr run: warning: {m}", file=sys.stderr,
                                             flush=True))
        self.probes: dict[str, Callable[[list[str]], dict[str, str]]] = {}
        rm = job.resource_manager
        impl = getattr(type(rm), "lost_nodes", None)
        if impl is not None and impl is not _base_lost_nodes():
            self.probes[RM] = rm.lost_nodes
        for spec in in_step_tests(job, config.tests):
            test = spec.load()(job.context(spec.settings))
            # NodeTest.probe: one quick attempt (default: run); the watch counts failures
            probe = getattr(test, "probe", None) or test.run
            self.probes[spec.name] = (lambda nodes, p=probe: p(nodes, job))
        self._streaks: dict[str, _Streak] = {}
        self._dead: dict[str, str] = {}
        self._busy: dict[str, Future] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.rounds = 0
        #: seconds a round waits for its probes; a probe slower than that gives no verdict
        self.probe_limit = max(2.0 * config.interval, 5.0)

    # -- public -------------------------------------------------------------------------------
    def start(self) -> StepWatch:
        if self.probes:
            self._thread = threading.Thread(target=self._loop, name="scr-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._pool is not None:
            # probes still running finish in their daemon threads; nobody waits for them
            self._pool.shutdown(wait=False)

    def dead(self) -> dict[str, str]:
        with self._lock:
            return dict(self._dead)

    def describe(self) -> str:
        c = self.config
        return (f"{', '.join(self.probes) or 'nothing'} every {c.interval:g} s; dead after "
                f"{c.failures} failed probes over {c.window:g} s")

    # -- the rounds ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            started = self.clock()
            try:
                self.round()
            except Exception as exc:  # the watch must never take scr run down
                self._warn_once("round", f"step watch: {type(exc).__name__}: {exc}")
            if self._dead:
                return  # the run loop acts on it; this step is over
            self._stop.wait(max(0.0, self.config.interval - (self.clock() - started)))

    def round(self) -> None:
        """One probe round: every probe not still busy from an earlier round, in parallel;
        verdicts of the probes that answer within the round's limit."""
        nodes = [n for n in self.nodes() if n not in self._dead]
        if not nodes or not self.probes or self._stop.is_set():
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=len(self.probes),
                                            thread_name_prefix="scr-watch-probe")
        self.rounds += 1
        started = self.clock()
        submitted = {}
        for name, probe in self.probes.items():
            previous = self._busy.get(name)
            if previous is not None and not previous.done():
                continue  # still running from an earlier round: no verdict this round
            future = self._pool.submit(probe, list(nodes))
            self._busy[name] = future
            submitted[name] = future
        limit = started + self.probe_limit
        failed: dict[str, str] = {}
        answered_tests = False
        rm_lost: dict[str, str] = {}
        for name, future in submitted.items():
            try:
                result = future.result(timeout=max(0.0, limit - self.clock()))
            except NotSupportedError:
                self.probes.pop(name, None)  # the RM cannot tell cheaply: tests only
                continue
            except Exception as exc:  # includes the round's timeout: no verdict
                self._warn_once(name, f"step watch: probe '{name}' gave no verdict "
                                      f"({type(exc).__name__}: {exc}); it is not counted")
                continue
            if name == RM:
                rm_lost.update({n: r for n, r in dict(result).items() if n in nodes})
                continue
            answered_tests = True
            for n, reason in dict(result).items():
                if n in nodes and n not in failed:
                    failed[n] = f"{WATCH}, {name}: {reason}"
        now = self.clock()
        with self._lock:
            for n, reason in rm_lost.items():
                self._dead[n] = f"{WATCH}, {RM}: {reason}"
            if not answered_tests:
                return
            for n in nodes:
                if n in self._dead:
                    continue
                if n not in failed:
                    self._streaks.pop(n, None)
                    continue
                streak = self._streaks.setdefault(n, _Streak(first=started))
                streak.count += 1
                streak.reason = failed[n]
                span = now - streak.first
                if streak.count >= self.config.failures and span >= self.config.window:
                    self._dead[n] = (f"{streak.reason} ({streak.count} failed probes over "
                                     f"{span:.1f} s)")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.warn(message)


def _base_lost_nodes() -> Any:
    from ..interfaces import ResourceManager

    return ResourceManager.lost_nodes


def kill_step(launcher: Any, step: Any, grace: float,
              out: Callable[[str], None]) -> int | None:
    """Kill ``step`` through its launcher and get control back within about ``grace``
    seconds whatever the launcher does: ``launcher.kill`` runs in a thread; if the launcher
    has not exited by then, its processes are killed outright
    (:func:`scr_core.client_commands.kill_process_tree`). Returns the exit code, or None
    when even that did not reap it (the caller reports 137)."""
    from ..client_commands import kill_process_tree, wait_code

    def target() -> None:
        try:
            launcher.kill(step)
        except Exception as exc:  # the forced kill below still bounds the wait
            out(f"the launcher's kill failed: {type(exc).__name__}: {exc}")

    killer = threading.Thread(target=target, name="scr-kill-step", daemon=True)
    killer.start()
    killer.join(grace)
    rc = launcher.wait(step, timeout=0)
    if rc is not None:
        return rc
    proc = getattr(step, "process", None)
    tasks = [p for _, p in (step.data.get("tasks") or ())] if hasattr(step, "data") else []
    out(f"the launcher did not exit within {grace:g} s of the kill; killing its processes")
    for p in ([proc] if proc is not None else []) + tasks:
        kill_process_tree(p)
    if proc is not None:
        code = wait_code(proc, 5.0)
        if code is not None:
            step.returncode = code
        return code
    killer.join(5.0)
    return launcher.wait(step, timeout=0)
