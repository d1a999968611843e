"""Registration of the LSF resource manager and the jsrun/lrun launchers.

Cheap to import: backends are named as strings and loaded only when selected.
"""

from __future__ import annotations

from typing import Mapping

from scr_core.hookspecs import (
    LauncherSpec,
    ResourceManagerSpec,
    SettingsSectionSpec,
    hookimpl,
)

# An LSF job that starts a Flux instance (LLNL does this on CORAL systems) carries both
# LSB_JOBID and FLUX_URI; the inner manager must win, so LSF ranks below Flux (60).
PRIORITY = 40


def detect(environ: Mapping[str, str]) -> bool:
    """Inside an LSF job: LSB_JOBID is set by LSF in every job's environment."""
    return bool(environ.get("LSB_JOBID"))


@hookimpl
def scr_resource_managers() -> list:
    return [ResourceManagerSpec(
        name="lsf",
        description="IBM Spectrum LSF (bjobs, bhosts, bsub, bkill)",
        backend="scr_plugins_lsf.rm:LsfResourceManager",
        detect=detect,
        priority=PRIORITY,
        settings="lsf",
    )]


@hookimpl
def scr_launchers() -> list:
    return [
        LauncherSpec(
            name="jsrun",
            description="IBM JSM jsrun; excludes down nodes with --exclude_hosts, "
                        "kills by jskill",
            backend="scr_plugins_lsf.launcher:JsrunLauncher",
            detect=detect,
            priority=PRIORITY,
            settings="lsf",
            commands=("jsrun",),
        ),
        LauncherSpec(
            name="lrun",
            description="LLNL lrun (jsrun wrapper); excludes down nodes with --exclude_hosts",
            backend="scr_plugins_lsf.launcher:LrunLauncher",
            detect=detect,
            # jsrun is the default on LSF; lrun is chosen by name (scr run lrun ...)
            priority=PRIORITY - 10,
            settings="lsf",
            commands=("lrun",),
        ),
    ]


@hookimpl
def scr_settings_sections() -> list:
    return [SettingsSectionSpec(
        name="lsf",
        description="IBM Spectrum LSF resource manager and the jsrun/lrun launchers",
        model="scr_plugins_lsf.settings:LsfSettings",
    )]
