"""JobEnv: the job's view of the world (SCR's ``JobEnv``), assembled lazily.

Everything is computed on first use, so a command that only needs the prefix never loads a
plugin, and one that needs only the resource manager never imports a launcher.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import ConfigError, JobEnvironmentError, ScrError

if TYPE_CHECKING:  # the interfaces module (abc, dataclasses, subprocess) is not needed to run
    from ..interfaces import BackendContext, Launcher, RemoteExecutor, ResourceManager


def scr_prefix(environ: Mapping[str, str]) -> str:
    """``$SCR_PREFIX`` (with ``~`` and variables expanded) or the current directory.

    A variable in it that is not set is a ConfigError (``os.path.expandvars`` would leave
    ``$UNDEF`` in place and scr would make a directory of that name)."""
    value = environ.get("SCR_PREFIX")
    if value:
        expanded = _expand(value, environ)
        return os.path.abspath(os.path.expanduser(expanded))
    return os.getcwd()


def _has_one_node_launch(reg: Any) -> bool:
    from ..interfaces import Launcher

    return reg.spec.load().one_node_argv is not Launcher.one_node_argv


def _expand(value: str, environ: Mapping[str, str]) -> str:
    import re

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in environ:
            raise ConfigError(f"SCR_PREFIX={value!r} (env SCR_PREFIX) names ${name}, "
                              "which is not set")
        return environ[name]

    return re.sub(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})", sub, value)


class JobEnv:
    def __init__(
        self,
        prefix: str | None = None,
        environ: Mapping[str, str] | None = None,
        registry: Any = None,
        resource_manager: str | None = None,
        remote_exec: str | None = None,
        launcher_hint: str | None = None,
    ) -> None:
        self.environ: dict[str, str] = dict(os.environ if environ is None else environ)
        self.prefix = os.path.abspath(prefix) if prefix else scr_prefix(self.environ)
        #: where the prefix came from, for messages
        self.prefix_source = "--prefix" if prefix else (
            "env SCR_PREFIX" if self.environ.get("SCR_PREFIX") else "the current directory")
        self._registry = registry
        self._rm_choice = resource_manager
        self._rexec_choice = remote_exec
        # the launcher word of this job (scr run srun / -j srun): node checks can go through
        # its one-node launch when nothing else is configured, as SCR did with pdsh + srun
        self.launcher_hint = launcher_hint

    # -- configuration ------------------------------------------------------------------------
    @functools.cached_property
    def registry(self) -> Any:
        if self._registry is None:
            from ..plugins import get_registry

            self._registry = get_registry()
        return self._registry

    @functools.cached_property
    def params(self) -> Any:
        from ..params import Params

        return Params(prefix=self.prefix, environ=self.environ)

    @functools.cached_property
    def settings(self) -> Any:
        from ..settings import Settings

        sections = {name: reg.spec for name, reg in self.registry.specs("settings").items()}
        return Settings(sections=sections, environ=self.environ)

    def context(self, section: str | None) -> BackendContext:
        """The context of a backend whose settings section is ``section`` (or None).

        The section is validated when the backend first reads
        ``context.settings``, not here: a command whose backend never reads its settings
        (``scr_should_exit`` and the local resource manager) does not import pydantic, and a
        bad value in a section nobody reads does not fail it. A bad value in a section that
        is read still fails the command with the one-line ConfigError, at that read.
        """
        from ..interfaces import BackendContext

        if not section:
            return BackendContext(environ=self.environ, prefix=self.prefix, params=self.params)
        settings = self.settings

        def loader() -> Any:
            return settings.section(section)

        return BackendContext(environ=self.environ, prefix=self.prefix, params=self.params,
                              settings_loader=loader)

    def _build(self, reg: Any, eager: bool = False) -> Any:
        from ..plugins import load_backend

        cls = load_backend(reg)
        context = self.context(reg.spec.settings)
        if eager:
            _ = context.settings  # validated now: the section's ConfigError is raised here
        return cls(context)

    # -- backends -----------------------------------------------------------------------------
    @functools.cached_property
    def resource_manager(self) -> ResourceManager:
        """The selected resource manager; its queries are tried again on transient errors
        (:mod:`scr_core.rm_retry`)."""
        reg = self.registry.select(
            "resource_manager", self._rm_choice,
            setting=self.settings.get_raw("core", "resource_manager"), environ=self.environ)
        from ..rm_retry import with_retries

        return with_retries(self._build(reg), self.params)

    def launcher(self, command: str | None = None) -> Launcher:
        """The launcher for a launcher word (``srun``), or the selected/detected one."""
        if command:
            reg = self.registry.launcher_for_command(command)
        else:
            reg = self.registry.select("launcher", None,
                                       setting=self.settings.get_raw("core", "launcher"),
                                       environ=self.environ)
        # validated now, not on first read: a launcher may read its settings only after the
        # step started (the local one does in wait()), too late to refuse a bad value
        return self._build(reg, eager=True)

    def _hinted_launcher(self) -> str | None:
        """The launcher plugin named by the hint, or None (no hint, or no plugin claims it:
        then node checks fall back to ssh rather than failing on a compatibility flag). A
        launcher without a one-node launch (mpirun) gives way to the launcher the
        environment detects (srun inside Slurm), else None."""
        if not self.launcher_hint:
            return None
        try:
            reg = self.registry.launcher_for_command(self.launcher_hint)
        except ScrError:
            return None
        if _has_one_node_launch(reg):
            return reg.spec.name
        detected = [r for r in self.registry.detected("launcher", self.environ)
                    if _has_one_node_launch(r)]
        return max(detected, key=lambda r: r.spec.priority).spec.name if detected else None

    @functools.cached_property
    def remote_executor(self) -> RemoteExecutor:
        setting = self.settings.get_raw("core", "remote_exec")
        # Defaults: the local executor for virtual nodes (nothing else reaches them); the
        # job's launcher when one is known (no ssh needed, works wherever the job runs);
        # else ClusterShell over ssh.
        if self.resource_manager.name == "local":
            default = "local"
        else:
            default = "clustershell"
            hinted = self._hinted_launcher()
            if hinted is not None and "launcher" in self.registry.specs("remote_executor"):
                default = "launcher"
                self.environ.setdefault("SCR_LAUNCHER", hinted)
        reg = self.registry.select("remote_executor", self._rexec_choice, setting=setting,
                                   environ=self.environ, default=default)
        return self._build(reg)

    # -- facts about the job ------------------------------------------------------------------
    def user(self) -> str:
        import getpass

        return self.environ.get("USER") or getpass.getuser()

    def job_id(self) -> str | None:
        return self.resource_manager.job_id()

    def require_job_id(self) -> str:
        jid = self.job_id()
        if not jid:
            raise JobEnvironmentError(
                f"no job id: not inside a {self.resource_manager.name} allocation")
        return jid

    def node_list(self) -> list[str]:
        """``$SCR_NODELIST`` if set (SCR's override), else the resource manager's nodes."""
        if self.environ.get("SCR_NODELIST"):
            from ..hostlist import expand

            return expand(self.environ["SCR_NODELIST"])
        return self.resource_manager.job_nodes()

    def dir_scr(self) -> str:
        return os.path.join(self.prefix, ".scr")

    def dir_control(self, base: bool = False) -> list[str]:
        if base:
            return [self.params.control_base()]
        return [self.params.control_dir(user=self.user(), jobid=self.require_job_id())]

    def dir_cache(self, base: bool = False) -> list[str]:
        if base:
            return list(self.params.cache_bases())
        return list(self.params.cache_dirs(user=self.user(), jobid=self.require_job_id()))
