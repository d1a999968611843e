"""Registration of the ``mpirun`` and ``mpiexec`` launchers (Open MPI, MPICH/Intel MPI hydra).

They are RM-neutral (they run inside a Slurm, LSF or Flux allocation, or a local one), so
they ship with scr_core: a site that installs only core and one RM plugin has them. They
never claim an environment (``detect`` is None): they are chosen by the launcher word,
``scr run mpirun ...`` / ``scr_mpirun ...`` / ``scr run mpiexec ...``.
"""

from __future__ import annotations

from ..hookspecs import LauncherSpec, SettingsSectionSpec, hookimpl


@hookimpl
def scr_launchers() -> list:
    return [
        LauncherSpec(
            name="mpirun",
            description="mpirun of Open MPI or MPICH/Intel MPI hydra (told apart by --version); "
                        "excludes nodes by a host list of the allocation's other nodes",
            backend="scr_core.mpi.launcher:MpirunLauncher",
            settings="mpi",
            commands=("mpirun",),
        ),
        LauncherSpec(
            name="mpiexec",
            description="mpiexec of Open MPI or MPICH/Intel MPI hydra (settings mpi.mpiexec "
                        "picks e.g. mpiexec.hydra); same as mpirun",
            backend="scr_core.mpi.launcher:MpiexecLauncher",
            settings="mpi",
            commands=("mpiexec",),
        ),
    ]


@hookimpl
def scr_settings_sections() -> list:
    return [SettingsSectionSpec(
        name="mpi",
        description="the mpirun and mpiexec launchers (Open MPI, MPICH/Intel MPI hydra)",
        model="scr_core.mpi.settings:MpiSettings",
    )]
