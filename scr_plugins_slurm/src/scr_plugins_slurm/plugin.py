"""Registration of the Slurm resource manager and the srun launcher.

Cheap to import: backends and the settings model are named as strings and imported only
when selected (no subprocess, pydantic or parser import here).
"""

from __future__ import annotations

from typing import Mapping

from scr_core.hookspecs import (
    LauncherSpec,
    ResourceManagerSpec,
    SettingsSectionSpec,
    hookimpl,
)


def detect(environ: Mapping[str, str]) -> bool:
    """Inside a Slurm allocation (batch script, salloc shell or srun task)."""
    return bool(environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID"))


@hookimpl
def scr_resource_managers() -> list:
    return [ResourceManagerSpec(
        name="slurm",
        description="Slurm allocation: nodes from SLURM_JOB_NODELIST, down nodes from sinfo, "
                    "end time from scontrol; sbatch/squeue/sacct/scancel batch lifecycle",
        backend="scr_plugins_slurm.rm:SlurmResourceManager",
        detect=detect,
        priority=10,
        settings="slurm",
    )]


@hookimpl
def scr_launchers() -> list:
    return [LauncherSpec(
        name="srun",
        description="srun job steps; --exclude of down nodes; kill by scancel of the "
                    "exact step",
        backend="scr_plugins_slurm.launcher:SrunLauncher",
        detect=detect,
        priority=10,
        settings="slurm",
        commands=("srun",),
    )]


@hookimpl
def scr_settings_sections() -> list:
    return [SettingsSectionSpec(
        name="slurm",
        description="the Slurm resource manager and srun launcher",
        model="scr_plugins_slurm.settings:SlurmSettings",
    )]
