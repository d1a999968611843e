"""Registration of the remote executors scr_core ships: clustershell, pdsh, launcher.

None of them claims an environment (``detect`` is ``None``): which transport reaches the
compute nodes is a site decision, made with ``SCR_REMOTE_EXEC`` or settings
``core.remote_exec``; without one, JobEnv uses ``clustershell`` (or ``local`` inside a local
allocation). All three read the settings section ``remote``.
"""

from __future__ import annotations

from ..hookspecs import RemoteExecutorSpec, SettingsSectionSpec, hookimpl


@hookimpl
def scr_remote_executors() -> list:
    return [
        RemoteExecutorSpec(
            name="clustershell",
            description="ClusterShell Task API: ssh worker, or exec worker with a per-node "
                        "wrapper (remote.worker/remote.wrapper); the default",
            backend="scr_core.remote.clustershell:ClusterShellRemoteExecutor",
            settings="remote",
        ),
        RemoteExecutorSpec(
            name="pdsh",
            description="pdsh -S -R ssh|exec with a per-node exit code (remote.pdsh, "
                        "remote.rcmd, remote.wrapper)",
            backend="scr_core.remote.pdsh:PdshRemoteExecutor",
            settings="remote",
        ),
        RemoteExecutorSpec(
            name="launcher",
            description="the launcher's one-node launch per node (srun -N1 -w NODE ...), "
                        "for sites without ssh (remote.launcher)",
            backend="scr_core.remote.launcher_wrapper:LauncherRemoteExecutor",
            settings="remote",
        ),
    ]


@hookimpl
def scr_settings_sections() -> list:
    return [SettingsSectionSpec(
        name="remote",
        description="remote execution (clustershell, pdsh, launcher executors)",
        model="scr_core.remote.settings:RemoteSettings",
    )]
