"""Conformance kit: check a backend class against the interfaces of :mod:`scr_core.interfaces`.

Plugin authors call these from their own tests (the module is also a pytest plugin, loaded
automatically where scr-core is installed, providing the ``scr_conformance`` fixture)::

    from scr_core import conformance

    def test_my_rm(): conformance.check_resource_manager(MyRM, context)

    def test_my_launcher(): conformance.check_launcher(
        MyLauncher, context, run_args=["-N1", "true"], sleep_args=["-N1", "sleep", "60"])

Each ``check_*`` raises :class:`ConformanceError` describing the first violation, and returns
what it observed (useful in assertions of the caller).
"""

from __future__ import annotations

import inspect
import subprocess
import time
from typing import Any, Mapping, Sequence

from .errors import NotSupportedError, ScrError
from .hookspecs import BackendSpec
from .interfaces import (
    BackendContext,
    JobRecord,
    JobStatus,
    JobStep,
    Launcher,
    NodeInfo,
    NodeResult,
    NodeTest,
    RemoteExecutor,
    RemoteResult,
    ResourceManager,
)


class ConformanceError(AssertionError):
    """A backend violates the contract."""


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConformanceError(message)


def _check_class(cls: type, base: type) -> None:
    _require(inspect.isclass(cls) and issubclass(cls, base),
             f"{cls!r} must subclass {base.__name__}")
    abstract = getattr(cls, "__abstractmethods__", ())
    _require(not abstract, f"{cls.__name__} leaves abstract methods: {', '.join(abstract)}")
    name = getattr(cls, "name", "")
    _require(isinstance(name, str) and name and name != "unknown",
             f"{cls.__name__}.name must be set to the backend's name")


def _optional(call: Any, label: str) -> Any:
    try:
        return call()
    except NotSupportedError:
        return NotSupportedError
    except ScrError:
        return ScrError
    except Exception as exc:  # only ScrError subclasses may escape a backend
        raise ConformanceError(f"{label} raised {type(exc).__name__}: {exc}; backends must "
                               "raise ScrError subclasses (NotSupportedError if optional)") \
            from exc


def check_spec(spec: BackendSpec) -> None:
    """A registration record: names, importable backend, a detect that only reads env."""
    _require(bool(spec.name) and spec.name.strip() == spec.name and " " not in spec.name,
             f"bad backend name {spec.name!r}")
    _require(bool(spec.description), f"{spec.name}: description is empty")
    spec.load()
    if spec.detect is not None:
        real_popen = subprocess.Popen

        def forbidden(*a: Any, **k: Any) -> Any:
            raise ConformanceError(f"{spec.name}: detect() must not start processes")

        subprocess.Popen = forbidden  # type: ignore[misc]
        try:
            for env in ({}, {"PATH": "/usr/bin:/bin"}):
                result = spec.detect(env)
                _require(isinstance(result, bool),
                         f"{spec.name}: detect() must return a bool, got {result!r}")
                _require(result is False,
                         f"{spec.name}: detect() claims an empty environment")
        finally:
            subprocess.Popen = real_popen  # type: ignore[misc]


def check_resource_manager(cls: type, context: BackendContext,
                           expect_job: bool = True) -> dict:
    """Construct ``cls`` with ``context`` and check every method's types and invariants."""
    _check_class(cls, ResourceManager)
    rm = cls(context)
    jid = rm.job_id()
    _require(jid is None or (isinstance(jid, str) and jid != ""),
             f"job_id() must be a non-empty str or None, got {jid!r}")
    if expect_job:
        _require(jid is not None, "job_id() is None although the context is an allocation")
    nodes = rm.job_nodes()
    _require(isinstance(nodes, list) and all(isinstance(n, str) and n for n in nodes),
             f"job_nodes() must be a list of names, got {nodes!r}")
    _require(len(set(nodes)) == len(nodes), f"job_nodes() has duplicates: {nodes}")
    down = rm.down_nodes()
    _require(isinstance(down, dict), f"down_nodes() must be a dict, got {type(down).__name__}")
    for n, reason in down.items():
        _require(isinstance(reason, str) and reason, f"down_nodes()[{n!r}] needs a reason")
        _require(n in nodes, f"down_nodes() names {n!r}, which is not in job_nodes()")
    end = rm.end_time()
    _require(isinstance(end, int) and (end in (0, -1) or end > 0),
             f"end_time() must be an int epoch, 0 or -1, got {end!r}")
    _require(rm.prerun() is None or True, "prerun() failed")
    inventory = _optional(lambda: rm.node_inventory(), "node_inventory()")
    if isinstance(inventory, list):
        _require(all(isinstance(i, NodeInfo) for i in inventory),
                 "node_inventory() must return NodeInfo records")
    status = _optional(lambda: rm.status([]), "status([])")
    if isinstance(status, dict):
        _require(status == {}, "status([]) must be empty")
    return {"job_id": jid, "nodes": nodes, "down": down, "end_time": end}


def check_launcher(
    cls: type,
    context: BackendContext,
    run_args: Sequence[str] | None = None,
    sleep_args: Sequence[str] | None = None,
    exclude: Sequence[str] = ("nodeX",),
    env: Mapping[str, str] | None = None,
    kill_within: float = 15.0,
) -> dict:
    """Check argv building; with ``run_args`` (a step that succeeds at once) and
    ``sleep_args`` (one that runs for a minute) also launch, wait, timeout and kill."""
    _check_class(cls, Launcher)
    launcher = cls(context)
    argv = launcher.build_argv(["prog", "arg"], None, list(exclude))
    _require(isinstance(argv, list) and all(isinstance(a, str) for a in argv),
             f"build_argv() must return a list of str, got {argv!r}")
    if exclude and not any(all(x in a for x in exclude) for a in argv):
        # or the launcher runs on a list of the other nodes (mpirun --host n1:2,n3:2): then
        # the exclusion changed the command and no host in it is an excluded one
        hosts = {h.split(":")[0] for a in argv for h in a.split(",")}
        _require(argv != launcher.build_argv(["prog", "arg"], None, [])
                 and not hosts & set(exclude),
                 f"build_argv() does not mention the excluded nodes: {argv}")
    _require(argv[-2:] == ["prog", "arg"], f"build_argv() must end with the program: {argv}")
    seen: dict = {"argv": argv}
    if run_args is not None:
        step = launcher.launch(run_args, env=env)
        _require(isinstance(step, JobStep), "launch() must return a JobStep")
        rc = launcher.wait(step, timeout=60)
        _require(rc == 0, f"a step of {list(run_args)} should succeed, wait() gave {rc!r}")
        seen["rc"] = rc
    if sleep_args is not None:
        step = launcher.launch(sleep_args, env=env)
        rc = launcher.wait(step, timeout=0.2)
        _require(rc is None, f"wait(timeout=0.2) on a running step must return None, got {rc}")
        t0 = time.monotonic()
        launcher.kill(step)
        rc = launcher.wait(step, timeout=kill_within)
        _require(rc is not None and rc != 0,
                 f"after kill() the step must be over with a non-zero code, got {rc!r}")
        seen["kill_seconds"] = time.monotonic() - t0
    return seen


def check_remote_executor(
    cls: type, context: BackendContext, nodes: Sequence[str],
    unreachable: Sequence[str] = (),
) -> RemoteResult:
    """Run ``echo UP`` on ``nodes`` (+ ``unreachable`` ones): every node must be reported."""
    _check_class(cls, RemoteExecutor)
    rexec = cls(context)
    asked = list(nodes) + list(unreachable)
    result = rexec.run(["echo", "UP"], asked, fanout=4, timeout=30)
    _require(isinstance(result, RemoteResult), "run() must return a RemoteResult")
    _require(list(result) == asked, f"run() must report every node in request order: "
                                     f"asked {asked}, got {list(result)}")
    for n in asked:
        _require(isinstance(result[n], NodeResult), f"result[{n!r}] is not a NodeResult")
    for n in nodes:
        _require(result[n].ok and result[n].stdout.strip() == "UP",
                 f"{n}: expected 'UP' and rc 0, got {result[n]}")
    for n in unreachable:
        _require(not result[n].ok, f"{n}: an unreachable node must not be reported ok")
    return result


def check_node_test(cls: type, context: BackendContext, nodes: Sequence[str],
                    job: Any) -> dict:
    _check_class(cls, NodeTest)
    out = cls(context).run(list(nodes), job)
    _require(isinstance(out, dict), "run() must return {node: reason}")
    for n, reason in out.items():
        _require(n in nodes, f"run() reported {n!r}, which it was not asked about")
        _require(isinstance(reason, str) and reason, f"{n}: a failure needs a reason")
    return out


def check_job_records(record: Any, statuses: Mapping[str, Any]) -> None:
    _require(isinstance(record, JobRecord), "submit() must return a JobRecord")
    for jid, st in statuses.items():
        _require(isinstance(st, JobStatus) and st.job_id == jid, f"bad status for {jid}")


# -- pytest plugin --------------------------------------------------------------------------
try:
    import pytest

    @pytest.fixture
    def scr_conformance() -> Any:
        """The conformance module, for plugin authors' tests."""
        import sys

        return sys.modules[__name__]
except ImportError:  # pytest is not a dependency of scr-core
    pass
