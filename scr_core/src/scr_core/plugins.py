"""Plugin discovery and backend selection.

Discovery: every entry point of the group ``scr.plugins`` is a plugin module holding
``@hookimpl`` functions (see :mod:`scr_core.hookspecs`). Environment switches:

``SCR_PLUGINS_STRICT=1``
    a plugin that fails to import (or whose hook raises) is an error instead of a warning;
    CI should set it.
``SCR_PLUGINS_BLOCK=name[,name...]``
    never load the named plugins (entry-point names, as ``scr plugins`` shows them).
``SCR_PLUGINS_CACHE=0``
    scan the installed distributions on every call instead of reading the entry-point cache
    (``$XDG_CACHE_HOME/scr``, see :mod:`scr_core.entry_points`; it is invalidated by any
    install, uninstall or change of a distribution on ``sys.path``).

Selection of the one backend of a kind in use (:meth:`Registry.select`): an explicit choice
(command-line option > environment variable > settings file) must name a registered backend;
otherwise the highest-priority backend whose ``detect(environ)`` says yes; two at the same
priority are an error listing them; nothing detected means the built-in ``local`` backend.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, Mapping

import pluggy

from . import hookspecs
from .errors import PluginError
from .hookspecs import (
    BackendSpec,
    LauncherSpec,
    NodeTestSpec,
    RemoteExecutorSpec,
    ResourceManagerSpec,
    SettingsSectionSpec,
)
from .records import FrozenRecord, Record

#: kind -> (hook name, record type, human name, environment variable for an explicit choice)
KINDS: dict[str, tuple[str, type, str, str | None]] = {
    "resource_manager": (
        "scr_resource_managers", ResourceManagerSpec, "resource manager", "SCR_RESOURCE_MANAGER"
    ),
    "launcher": ("scr_launchers", LauncherSpec, "launcher", "SCR_LAUNCHER"),
    "remote_executor": (
        "scr_remote_executors", RemoteExecutorSpec, "remote executor", "SCR_REMOTE_EXEC"
    ),
    "node_test": ("scr_node_tests", NodeTestSpec, "node test", None),
    "settings": ("scr_settings_sections", SettingsSectionSpec, "settings section", None),
}

#: what SCR's configure-time SCR_RESOURCE_MANAGER values mean here
_LEGACY_RM_NAMES = {"NONE": "local"}


class PluginInfo(Record):
    """One discovered plugin (an entry point), loaded or not."""

    _fields = ("name", "module", "distribution", "version", "error", "blocked", "loaded")
    __slots__ = _fields

    def __init__(
        self,
        name: str,
        module: str,
        distribution: str,
        version: str,
        error: str | None = None,
        blocked: bool = False,
        loaded: bool = False,
    ) -> None:
        self.name = name
        self.module = module
        self.distribution = distribution
        self.version = version
        self.error = error
        self.blocked = blocked
        self.loaded = loaded


class Registered(FrozenRecord):
    """A record of a kind and the plugin that registered it (immutable)."""

    _fields = ("spec", "plugin")
    __slots__ = _fields

    def __init__(self, spec: Any, plugin: str) -> None:
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "plugin", plugin)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "yes", "true", "on")


class Registry:
    """The plugins of this process and everything they registered."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        entry_points: Iterable[tuple[str, str, str, str]] | None = None,
        warn: Any = None,
    ) -> None:
        import os

        self.environ = dict(os.environ if environ is None else environ)
        self.strict = _truthy(self.environ.get("SCR_PLUGINS_STRICT"))
        self.blocked = {
            b.strip() for b in self.environ.get("SCR_PLUGINS_BLOCK", "").split(",") if b.strip()
        }
        self._warn = warn or (lambda msg: print(f"scr: warning: {msg}", file=sys.stderr))
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._specs: dict[str, dict[str, Registered]] = {}
        if entry_points is None:
            # (name, module, distribution, version) of every entry point, through the cache
            # of scr_core.entry_points (SCR_PLUGINS_CACHE=0: none)
            from . import entry_points as cached

            entry_points = cached.entry_points(hookspecs.ENTRY_POINT_GROUP, self.environ)
        self._load(entry_points)

    # -- loading ------------------------------------------------------------------------------
    def _fail(self, info: PluginInfo, what: str, exc: BaseException) -> None:
        info.error = f"{what}: {type(exc).__name__}: {exc}"
        message = f"plugin '{info.name}' ({info.distribution} {info.version}) {info.error}"
        if self.strict:
            raise PluginError(message + " (SCR_PLUGINS_STRICT is set)") from exc
        self._warn(message + "; skipped")

    def _load(self, entry_points: Iterable[tuple[str, str, str, str]]) -> None:
        import importlib

        for name, module, dist, version in entry_points:
            if name in self.plugins:
                other = self.plugins[name]
                raise PluginError(
                    f"duplicate plugin name '{name}': {other.distribution} ({other.module}) and "
                    f"{dist} ({module}); uninstall one or block it with SCR_PLUGINS_BLOCK"
                )
            info = PluginInfo(name, module, dist, version)
            self.plugins[name] = info
            if name in self.blocked:
                info.blocked = True
                continue
            try:
                mod = importlib.import_module(module.partition(":")[0])
                self.pm.register(mod, name=name)
            except Exception as exc:  # a broken plugin must not take the others down
                self._fail(info, "failed to load", exc)
                continue
            info.loaded = True

    def register_module(self, module: Any, name: str, distribution: str = "(in-process)") -> None:
        """Register an already-imported plugin module (tests, embedding applications)."""
        if name in self.plugins:
            raise PluginError(f"duplicate plugin name '{name}'")
        self.plugins[name] = PluginInfo(name, getattr(module, "__name__", name), distribution,
                                        "", loaded=True)
        self.pm.register(module, name=name)
        self._specs.clear()

    # -- registered records -------------------------------------------------------------------
    def specs(self, kind: str) -> dict[str, Registered]:
        """Every record of ``kind`` (see :data:`KINDS`), by name, in plugin load order."""
        if kind in self._specs:
            return self._specs[kind]
        hook_name, record_type, human, _ = KINDS[kind]
        found: dict[str, Registered] = {}
        hook = getattr(self.pm.hook, hook_name)
        # Call each implementation on its own, so a plugin whose hook raises is isolated and
        # every record is attributed to the plugin that made it.
        for impl in reversed(hook.get_hookimpls()):
            info = self.plugins.get(impl.plugin_name)
            try:
                records = list(impl.function() or [])
                for rec in records:
                    if not isinstance(rec, record_type):
                        raise TypeError(
                            f"{hook_name} returned {type(rec).__name__}, "
                            f"expected {record_type.__name__}"
                        )
            except Exception as exc:
                if info is None:
                    raise
                self._fail(info, f"hook {hook_name} raised", exc)
                continue
            for rec in records:
                if rec.name in found:
                    raise PluginError(
                        f"duplicate {human} '{rec.name}' from plugins "
                        f"'{found[rec.name].plugin}' and '{impl.plugin_name}'"
                    )
                found[rec.name] = Registered(rec, impl.plugin_name)
        self._specs[kind] = found
        return found

    def get(self, kind: str, name: str) -> Registered:
        specs = self.specs(kind)
        if name not in specs:
            human = KINDS[kind][2]
            available = ", ".join(sorted(specs)) or "none"
            raise PluginError(f"unknown {human} '{name}'; available: {available}")
        return specs[name]

    def detected(self, kind: str, environ: Mapping[str, str] | None = None) -> list[Registered]:
        env = self.environ if environ is None else environ
        out = []
        for reg in self.specs(kind).values():
            if reg.spec.detect is None:
                continue
            try:
                if reg.spec.detect(env):
                    out.append(reg)
            except Exception as exc:  # a broken detect is that plugin's failure only
                info = self.plugins.get(reg.plugin)
                if info is None:
                    raise
                self._fail(info, f"detect of '{reg.spec.name}' raised", exc)
        return out

    def select(
        self,
        kind: str,
        choice: str | None = None,
        choice_source: str = "command line",
        setting: str | None = None,
        environ: Mapping[str, str] | None = None,
        default: str = "local",
    ) -> Registered:
        """Choose the backend of ``kind`` in use; see the module docstring for the rules."""
        env = self.environ if environ is None else environ
        human, env_var = KINDS[kind][2], KINDS[kind][3]
        explicit, source = choice, choice_source
        if not explicit and env_var and env.get(env_var):
            explicit, source = env[env_var], f"environment {env_var}"
        if not explicit and setting:
            explicit, source = setting, "settings file"
        if explicit:
            name = _LEGACY_RM_NAMES.get(explicit.upper(), explicit) if kind == "resource_manager" \
                else explicit
            specs = self.specs(kind)
            if name not in specs and name.lower() in specs:  # SCR used SLURM, LSF, FLUX
                name = name.lower()
            if name not in specs:
                available = ", ".join(sorted(specs)) or "none"
                raise PluginError(
                    f"unknown {human} '{explicit}' (from {source}); available: {available}"
                )
            return specs[name]
        candidates = self.detected(kind, env)
        if candidates:
            top = max(c.spec.priority for c in candidates)
            best = [c for c in candidates if c.spec.priority == top]
            if len(best) > 1:
                names = ", ".join(f"{c.spec.name} (plugin {c.plugin})" for c in best)
                hint = f"; choose one with {env_var}" if env_var else ""
                raise PluginError(
                    f"several {human}s detect this environment at priority {top}: {names}{hint}"
                )
            return best[0]
        return self.get(kind, default)

    def launcher_for_command(self, command: str) -> Registered:
        """The launcher claiming ``command`` (``srun``, ``jsrun``, ``flux``, ``local`` ...)."""
        claims = [r for r in self.specs("launcher").values() if command in r.spec.commands]
        if not claims:
            known = sorted({c for r in self.specs("launcher").values() for c in r.spec.commands})
            raise PluginError(
                f"no launcher plugin handles '{command}'; known launchers: "
                f"{', '.join(known) or 'none'} (is the plugin for it installed?)"
            )
        if len(claims) > 1:
            top = max(c.spec.priority for c in claims)
            best = [c for c in claims if c.spec.priority == top]
            if len(best) > 1:
                names = ", ".join(f"{c.spec.name} (plugin {c.plugin})" for c in best)
                raise PluginError(
                    f"several launchers handle '{command}': {names}; choose with SCR_LAUNCHER"
                )
            return best[0]
        return claims[0]

    def load_errors(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.error]


def load_backend(reg: Registered, kind: str = "backend") -> type:
    """The class a registration names (``"module:Class"``), imported now; a path that does not
    import or name a class is a PluginError naming the plugin, not an ImportError later."""
    spec = reg.spec
    try:
        cls = spec.load()
    except Exception as exc:
        raise PluginError(
            f"plugin '{reg.plugin}': cannot load {kind} '{spec.name}' from "
            f"{getattr(spec, 'backend', None) or getattr(spec, 'model', None)!r}: "
            f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(cls, type):
        raise PluginError(f"plugin '{reg.plugin}': {kind} '{spec.name}' names "
                          f"{type(cls).__name__} object, not a class")
    return cls


_default_registry: Registry | None = None


def get_registry(environ: Mapping[str, str] | None = None) -> Registry:
    """The process-wide registry (entry points are scanned once per process)."""
    global _default_registry
    if _default_registry is None or environ is not None:
        reg = Registry(environ)
        if environ is not None:
            return reg
        _default_registry = reg
    return _default_registry


def spec_of(reg: Registered) -> BackendSpec:
    return reg.spec
