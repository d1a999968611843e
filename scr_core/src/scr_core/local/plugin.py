"""Registration of the built-in ``local`` backend (virtual nodes on this machine)."""

from __future__ import annotations

from typing import Mapping

from ..hookspecs import (
    LauncherSpec,
    RemoteExecutorSpec,
    ResourceManagerSpec,
    SettingsSectionSpec,
    hookimpl,
)


def detect(environ: Mapping[str, str]) -> bool:
    """Only a local allocation made by us (SCR_LOCAL_DIR); never claims a real cluster."""
    return bool(environ.get("SCR_LOCAL_DIR"))


@hookimpl
def scr_resource_managers() -> list:
    return [ResourceManagerSpec(
        name="local",
        description="virtual nodes on this machine (scr local alloc); the default",
        backend="scr_core.local.rm:LocalResourceManager",
        detect=detect,
        # SCR_LOCAL_DIR is set only by us, so it is more specific than any RM's variables
        priority=100,
        settings="local",
    )]


@hookimpl
def scr_launchers() -> list:
    return [LauncherSpec(
        name="local",
        description="runs the step as local processes, one process group per virtual node",
        backend="scr_core.local.backend:LocalLauncher",
        detect=detect,
        priority=100,
        settings="local",
        commands=("local",),
    )]


@hookimpl
def scr_remote_executors() -> list:
    return [RemoteExecutorSpec(
        name="local",
        description="runs the command as a local process per virtual node",
        backend="scr_core.local.backend:LocalRemoteExecutor",
        detect=detect,
        priority=100,
        settings="local",
    )]


@hookimpl
def scr_settings_sections() -> list:
    return [SettingsSectionSpec(
        name="local",
        description="the built-in local backend (virtual nodes)",
        model="scr_core.local.settings:LocalSettings",
    )]
