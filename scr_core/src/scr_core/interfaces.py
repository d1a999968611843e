"""Backend interfaces: what a resource manager, launcher, remote executor and node test do.

A plugin registers these through the hooks in :mod:`scr_core.hookspecs` (read that first).
Only one resource manager, one launcher and one remote executor are in use at a time; they
are plain classes with the methods below. Optional methods raise
:class:`~scr_core.errors.NotSupportedError` unless a backend overrides them.

Conventions shared by every backend:

* Node lists are ``list[str]`` in the resource manager's order; never comma strings.
* Times are epoch seconds. ``end_time()`` returns 0 when unknown and -1 when unlimited.
* Subprocesses are started from argv lists, never through a shell.
* Failures raise :class:`~scr_core.errors.ScrError` subclasses with the cause chained. A
  resource-manager query that may work when asked again raises a *transient* error (every
  ``ResourceManagerError`` unless raised with ``transient=False``); the core retries it
  (:mod:`scr_core.rm_retry`), the backend does not. Any other exception is taken for a
  bug: the command exits 8 (internal error) with one line naming the plugin
  (``SCR_DEBUG=2`` prints the traceback).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .errors import NotSupportedError

if TYPE_CHECKING:
    from .jobdata import (
        JobRecord,
        JobState,
        JobStatus,
        JobStep,
        NodeInfo,
        NodeResult,
        RemoteResult,
        SubmitRequest,
    )

#: the data records, defined in :mod:`scr_core.jobdata` and imported from there on first use
_JOBDATA = frozenset(("JobRecord", "JobState", "JobStatus", "JobStep", "NodeInfo", "NodeResult",
                      "RemoteResult", "SubmitRequest"))


def __getattr__(name: str) -> Any:
    if name in _JOBDATA:
        from . import jobdata

        value = getattr(jobdata, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BackendContext",
    "JobRecord",
    "JobState",
    "JobStatus",
    "JobStep",
    "Launcher",
    "NodeInfo",
    "NodeResult",
    "NodeTest",
    "RemoteExecutor",
    "RemoteResult",
    "ResourceManager",
    "SubmitRequest",
]


class BackendContext:
    """What every backend is constructed with.

    ``environ`` is the environment to read (a copy of ``os.environ`` in production, a dict in
    tests); ``settings`` is this plugin's validated config section (a pydantic model, or
    ``None`` when the plugin declares none); ``prefix`` is SCR_PREFIX; ``params`` is the
    :class:`scr_core.params.Params` view of SCR parameters.

    ``settings`` may be given as a ``settings_loader`` instead (what :class:`JobEnv` does): a
    callable validating the section, called on the first read of ``settings``. A backend
    that never reads its settings then never pays for validation (nor for importing
    pydantic); one that does gets the section's :class:`~scr_core.errors.ConfigError` at
    that read.
    """

    __slots__ = ("_loader", "_settings", "environ", "params", "prefix")

    def __init__(
        self,
        environ: Mapping[str, str],
        settings: Any = None,
        prefix: str = ".",
        params: Any = None,
        settings_loader: Callable[[], Any] | None = None,
    ) -> None:
        self.environ = environ
        self._settings = settings
        self._loader = settings_loader
        self.prefix = prefix
        self.params = params

    @property
    def settings(self) -> Any:
        if self._loader is not None:
            self._settings = self._loader()  # raises ConfigError on a bad section, every time
            self._loader = None
        return self._settings

    @settings.setter
    def settings(self, value: Any) -> None:
        self._settings, self._loader = value, None

    def __repr__(self) -> str:
        shown = "<not loaded>" if self._loader is not None else repr(self._settings)
        return (f"BackendContext(environ=<{len(self.environ)} variables>, settings={shown}, "
                f"prefix={self.prefix!r}, params={self.params!r})")


def _unsupported(backend: object, what: str) -> NotSupportedError:
    name = getattr(backend, "name", type(backend).__name__)
    return NotSupportedError(f"{name}: {what} is not supported by this backend")


# --------------------------------------------------------------------------- resource manager


class ResourceManager(abc.ABC):
    """The resource manager of the current allocation (SCR's ``ResourceManager``).

    Required: :meth:`job_id`, :meth:`job_nodes`, :meth:`down_nodes`, :meth:`end_time`.
    Optional (Pavilion's batch lifecycle): :meth:`node_inventory`, :meth:`submit`,
    :meth:`status`, :meth:`cancel`.

    The queries (:data:`scr_core.rm_retry.QUERIES`: the four required ones,
    :meth:`node_inventory`, :meth:`status`) are tried again by the core when they raise a
    transient error; :meth:`submit` and :meth:`cancel` never are.
    """

    name: str = "unknown"

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.environ = context.environ

    @abc.abstractmethod
    def job_id(self) -> str | None:
        """The allocation's job id, or ``None`` when not inside an allocation."""

    @abc.abstractmethod
    def job_nodes(self) -> list[str]:
        """Every node of the allocation, in the resource manager's order."""

    @abc.abstractmethod
    def down_nodes(self) -> dict[str, str]:
        """Nodes of the allocation the RM considers unusable, mapped to the RM's reason."""

    @abc.abstractmethod
    def end_time(self) -> int:
        """Epoch seconds when the allocation ends; 0 if unknown, -1 if it has no limit."""

    def start_time(self) -> float:
        """Epoch seconds (fractions allowed) when the allocation started; 0 if unknown (the
        default). Used to
        tell a halt reason written in this allocation from one left by an earlier one."""
        return 0

    def prerun(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Prepare the allocation before the first run (e.g. force prologs). Default: nothing."""

    def lost_nodes(self, nodes: Sequence[str]) -> dict[str, str]:
        """Nodes among ``nodes`` that the RM already knows are dead or unreachable.

        Called by ``scr run``'s step watch (:mod:`scr_core.engine.stepwatch`, ``SCR_WATCH``)
        every ``SCR_WATCH_INTERVAL`` seconds *while a step runs*, from a thread, so it must
        be cheap (one query, bounded by the backend's own timeout) and thread-safe. Report
        only nodes that are lost (not responding, offline, crashed): never nodes that are
        merely drained or closed by an administrator, since a running step keeps those. A
        node reported here is declared dead at once (the RM has applied its own timeout),
        the step is killed and relaunched without it.

        :param nodes: the nodes the step runs on
        :return: ``{node: the RM's reason}``
        :raises NotSupportedError: (the default) the RM cannot tell cheaply; the watch then
            relies on the in-step node tests (:attr:`NodeTestSpec.in_step`) alone
        """
        raise _unsupported(self, "in-step lost-node query")

    # -- optional ---------------------------------------------------------------------------
    def node_inventory(self, partition: str | None = None) -> list[NodeInfo]:
        raise _unsupported(self, "node inventory")

    def submit(self, request: SubmitRequest) -> JobRecord:
        raise _unsupported(self, "batch submission")

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Status of many jobs with one query; every requested id is in the result."""
        raise _unsupported(self, "batch job status")

    def cancel(self, job_id: str) -> None:
        raise _unsupported(self, "batch job cancel")


# --------------------------------------------------------------------------- launcher


class Launcher(abc.ABC):
    """Launches a job step of the application (SCR's ``JobLauncher``).

    The step's stdout/stderr go straight to ours (live, not captured) and stdin is forwarded.
    """

    name: str = "unknown"

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.environ = context.environ

    @abc.abstractmethod
    def build_argv(
        self, args: Sequence[str], nodes: Sequence[str] | None, exclude: Sequence[str]
    ) -> list[str]:
        """The command line that runs ``args`` (the user's launcher arguments and program),
        on ``nodes`` when given, never on ``exclude``."""

    @abc.abstractmethod
    def launch(
        self,
        args: Sequence[str],
        nodes: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> JobStep:
        """Start the step and return at once."""

    @abc.abstractmethod
    def wait(self, step: JobStep, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds (``None`` = forever). Return the exit code
        (negative = killed by that signal, as :mod:`subprocess`), or ``None`` if still running."""

    @abc.abstractmethod
    def kill(self, step: JobStep) -> None:
        """Stop every task of the step; returns once the launcher process has exited."""

    # -- optional ---------------------------------------------------------------------------
    def fit_to_nodes(self, args: Sequence[str], available: int) -> list[str]:
        """Adapt the user's launcher arguments when only ``available`` nodes are left after
        failures (e.g. lower ``-N``; see :mod:`scr_core.launchargs`). Default: unchanged."""
        return list(args)

    def one_node_argv(self, node: str, argv: Sequence[str]) -> list[str]:
        """argv that runs ``argv`` once on ``node`` (for remote exec without ssh)."""
        raise _unsupported(self, "one-node launch")

    def kill_step_id(self, step_id: str) -> None:
        """Kill a step by the RM's id (``scr_kill_jobstep``)."""
        raise _unsupported(self, "killing a step by id")


# --------------------------------------------------------------------------- remote exec


class RemoteExecutor(abc.ABC):
    """Runs one argv on many nodes in parallel (SCR's ``RemoteExec``)."""

    name: str = "unknown"

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.environ = context.environ

    @abc.abstractmethod
    def run(
        self,
        argv: Sequence[str],
        nodes: Sequence[str],
        fanout: int = 64,
        timeout: float | None = 60.0,
    ) -> RemoteResult:
        """Run ``argv`` on each node; the result has an entry for every node, including
        the ones that timed out or could not be reached."""


# --------------------------------------------------------------------------- node tests


class NodeTest(abc.ABC):
    """A health test: given candidate nodes, report the ones that fail, with a reason.

    Tests run in order, each only on the nodes that passed the previous ones. A test that
    cannot run at all raises; the engine reports it and stops or skips it as configured.
    """

    name: str = "unknown"

    def __init__(self, context: BackendContext) -> None:
        self.context = context

    @abc.abstractmethod
    def run(self, nodes: Sequence[str], job: Any) -> dict[str, str]:
        """Return ``{node: reason}`` for the nodes that fail. ``job`` is the
        :class:`scr_core.engine.jobenv.JobEnv` (resource manager, remote executor, params)."""

    def probe(self, nodes: Sequence[str], job: Any) -> dict[str, str]:
        """One quick attempt of the test, for ``scr run``'s step watch.

        Called only for tests registered with ``NodeTestSpec(in_step=True)``, every
        ``SCR_WATCH_INTERVAL`` seconds on the step's nodes, from a thread, while the step
        runs. The watch counts consecutive failures itself (``SCR_WATCH_FAILURES`` over
        ``SCR_WATCH_WINDOW``), so a test that retries in :meth:`run` should try once here.

        :param nodes: the nodes the step runs on
        :param job: as for :meth:`run`
        :return: ``{node: reason}`` for the nodes that did not answer
        """
        return self.run(nodes, job)
