"""Registration of the Flux resource manager, ``flux run`` launcher and ``flux exec``.

Cheap to import: backends are named as strings and loaded only when selected.
"""

from __future__ import annotations

from typing import Mapping

from scr_core.hookspecs import (
    LauncherSpec,
    RemoteExecutorSpec,
    ResourceManagerSpec,
    SettingsSectionSpec,
    hookimpl,
)

# Flux is often started inside another manager's job (LSF on CORAL, Slurm elsewhere): the
# innermost manager owns the nodes we launch on, so Flux outranks LSF (40) and Slurm.
PRIORITY = 60


def detect(environ: Mapping[str, str]) -> bool:
    """Inside a Flux instance: FLUX_URI (set for an instance's initial program, e.g. a
    batch script) or FLUX_JOB_ID (set in every task of a Flux job)."""
    return bool(environ.get("FLUX_URI") or environ.get("FLUX_JOB_ID"))


@hookimpl
def scr_resource_managers() -> list:
    return [ResourceManagerSpec(
        name="flux",
        description="Flux (flux resource, flux jobs, flux batch, flux cancel)",
        backend="scr_plugins_flux.rm:FluxResourceManager",
        detect=detect,
        priority=PRIORITY,
        settings="flux",
    )]


@hookimpl
def scr_launchers() -> list:
    return [LauncherSpec(
        name="flux",
        description="flux run (as flux submit + flux job attach); excludes down nodes with "
                    "--requires=-host:LIST, kills by flux cancel",
        backend="scr_plugins_flux.launcher:FluxRunLauncher",
        detect=detect,
        priority=PRIORITY,
        settings="flux",
        commands=("flux",),
    )]


@hookimpl
def scr_remote_executors() -> list:
    return [RemoteExecutorSpec(
        name="flux",
        description="flux exec -r RANK per node (broker rexec service, no ssh)",
        backend="scr_plugins_flux.rexec:FluxExecRemoteExecutor",
        detect=detect,
        priority=PRIORITY,
        settings="flux",
    )]


@hookimpl
def scr_settings_sections() -> list:
    return [SettingsSectionSpec(
        name="flux",
        description="Flux resource manager, flux run launcher and flux exec",
        model="scr_plugins_flux.settings:FluxSettings",
    )]
