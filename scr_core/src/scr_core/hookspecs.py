"""The plugin contract of scr. A plugin author reads this module first.

How a plugin is found
    A distribution declares an entry point in the group ``scr.plugins``; the entry name is
    the plugin's name and the target a module holding ``@hookimpl`` functions::

        [project.entry-points."scr.plugins"]
        mysite = "scr_plugins_mysite.plugin"

How a plugin contributes
    Each hook below returns a list of typed records (:class:`ResourceManagerSpec`,
    :class:`LauncherSpec`, ...). pluggy calls every plugin's implementation, so hooks are only
    used for such one-to-many registration. The behaviour lives in ordinary classes that
    implement the interfaces of :mod:`scr_core.interfaces` (re-exported here).

Keep the plugin module cheap to import: name backend classes as ``"package.module:Class"``
strings in the records; scr imports them only when that backend is selected. ``detect``
functions read only the environment mapping they are given: no subprocess, no file I/O.

Hook implementations must not declare default-valued parameters (pluggy never passes them).

Errors: backends raise :class:`scr_core.errors.ScrError` subclasses. A resource-manager query
that may succeed when asked again (the controller timed out or was unreachable) raises a
*transient* error: any ``ResourceManagerError`` is, unless raised with ``transient=False``
(say so when retrying cannot help: a missing client, output that cannot be parsed). The core
tries transient queries again with a bounded backoff (:mod:`scr_core.rm_retry`,
``SCR_RM_RETRIES``, ``SCR_RM_RETRY_SECONDS``): a plugin never retries on its own.

Processes: a launcher whose ``launch`` starts a local process (srun, jsrun, flux) passes
``preexec_fn=scr_core.client_commands.die_with_parent()`` so that the step ends with
``scr run`` even when ``scr run`` is killed with SIGKILL.

Example::

    from scr_core.hookspecs import hookimpl, LauncherSpec

    @hookimpl
    def scr_launchers():
        return [LauncherSpec(name="aprun", description="Cray ALPS aprun",
                             backend="scr_plugins_mysite.launch:Aprun",
                             commands=("aprun",))]
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

import pluggy

# The interfaces (re-exported here for plugin authors) are imported on first access of one of
# these names, not with this module: registering plugins and selecting a backend must not pay
# for abc, subprocess and the interface classes (see the module __getattr__ below).
_INTERFACES = frozenset((
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
))

if TYPE_CHECKING:
    from .interfaces import (
        BackendContext,
        JobRecord,
        JobState,
        JobStatus,
        JobStep,
        Launcher,
        NodeInfo,
        NodeResult,
        NodeTest,
        RemoteExecutor,
        RemoteResult,
        ResourceManager,
        SubmitRequest,
    )


def __getattr__(name: str) -> Any:
    if name in _INTERFACES:
        from . import interfaces

        value = getattr(interfaces, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PROJECT_NAME = "scr"
ENTRY_POINT_GROUP = "scr.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Detect = Callable[[Mapping[str, str]], bool]

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROJECT_NAME",
    "BackendContext",
    "BackendSpec",
    "JobRecord",
    "JobState",
    "JobStatus",
    "JobStep",
    "Launcher",
    "LauncherSpec",
    "NodeInfo",
    "NodeResult",
    "NodeTest",
    "NodeTestSpec",
    "RemoteExecutor",
    "RemoteExecutorSpec",
    "RemoteResult",
    "ResourceManager",
    "ResourceManagerSpec",
    "SettingsSectionSpec",
    "SubmitRequest",
    "hookimpl",
    "hookspec",
]


# --------------------------------------------------------------------------- records


def load_object(ref: Any) -> Any:
    """Resolve ``"package.module:attr"`` (or return ``ref`` if it is already an object)."""
    if not isinstance(ref, str):
        return ref
    import importlib

    module_name, _, attr = ref.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """Common fields of every registration record.

    name         unique within its kind; what users type (``--rm slurm``, ``SCR_NODE_TESTS``)
    description  one line for ``scr plugins``
    backend      the class, or ``"module:Class"`` imported on first use
    detect       ``detect(environ) -> bool``: does the current environment belong to this
                 backend? Environment variables only. ``None`` = never auto-selected.
    priority     higher wins among backends whose ``detect`` says yes
    settings     name of the settings section (see :class:`SettingsSectionSpec`) the backend
                 is constructed with, or ``None``
    """

    name: str
    description: str
    backend: Any
    detect: Optional[Detect] = None
    priority: int = 0
    settings: Optional[str] = None

    def load(self) -> type:
        return load_object(self.backend)


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


# The records adding no field to BackendSpec are not decorated again: they inherit its fields,
# __init__, __repr__ (which shows the subclass's name), __eq__ (same class only) and __hash__,
# and stay frozen through the two methods above; each @dataclass costs ~0.5 ms of start-up.


class ResourceManagerSpec(BackendSpec):
    """A resource manager; ``backend`` implements :class:`ResourceManager`."""

    __setattr__ = _frozen_setattr
    __delattr__ = _frozen_delattr


@dataclasses.dataclass(frozen=True)
class LauncherSpec(BackendSpec):
    """A job launcher; ``backend`` implements :class:`Launcher`.

    commands     the launcher words users type after ``scr run`` (``("srun",)``,
                 ``("flux",)``); ``scr run srun ...`` selects the launcher claiming ``srun``
    """

    commands: tuple = ()


class RemoteExecutorSpec(BackendSpec):
    """A remote-execution method; ``backend`` implements :class:`RemoteExecutor`."""

    __setattr__ = _frozen_setattr
    __delattr__ = _frozen_delattr


@dataclasses.dataclass(frozen=True)
class NodeTestSpec(BackendSpec):
    """A node health test; ``backend`` implements :class:`NodeTest`.

    ``detect`` and ``priority`` are unused: tests run when named in ``SCR_NODE_TESTS`` (or by
    default when ``default`` is true, in ascending ``order``).

    in_step      the test is fit for use *while a step runs*, as a liveness probe of
                 ``scr run``'s step watch (``SCR_WATCH``, :mod:`scr_core.engine.stepwatch`):
                 it is cheap, bounded by its own timeouts (a few seconds for a dead node), does
                 not disturb the running application (no job step, no CPU or I/O load on the
                 node), and a failure means the node cannot be reached, not that it is busy
                 (ping or a TCP connect: yes; a test that starts a step on the node: no). The
                 watch runs the tests named by ``SCR_WATCH_TESTS``, by default every test
                 with both ``in_step`` and ``default``. Default ``False``: a test written
                 before this field existed is never run mid-step.
    """

    default: bool = False
    order: int = 100
    in_step: bool = False


@dataclasses.dataclass(frozen=True)
class SettingsSectionSpec:
    """A section of the YAML settings file (``scr config show`` lists them all).

    model        a pydantic ``BaseModel`` subclass (or ``"module:Model"``): field types,
                 defaults and ``Field(description=...)`` help text
    """

    name: str
    description: str
    model: Any

    def load(self) -> type:
        return load_object(self.model)


# --------------------------------------------------------------------------- hooks


@hookspec
def scr_resource_managers() -> list[ResourceManagerSpec]:
    """Return the resource managers this plugin provides."""


@hookspec
def scr_launchers() -> list[LauncherSpec]:
    """Return the job launchers this plugin provides."""


@hookspec
def scr_remote_executors() -> list[RemoteExecutorSpec]:
    """Return the remote-execution methods this plugin provides."""


@hookspec
def scr_node_tests() -> list[NodeTestSpec]:
    """Return the node health tests this plugin provides."""


@hookspec
def scr_settings_sections() -> list[SettingsSectionSpec]:
    """Return the settings sections this plugin declares."""
