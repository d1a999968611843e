"""Settings of the ``mpirun`` and ``mpiexec`` launchers (section ``mpi`` of the settings file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class MpiSettings(BaseModel):
    mpirun: str = Field(
        "mpirun", description="the command 'scr run mpirun' starts (a name on PATH or a path)",
        json_schema_extra={"env": "SCR_MPIRUN"},
    )
    mpiexec: str = Field(
        "mpiexec", description="the command 'scr run mpiexec' starts, e.g. mpiexec.hydra or "
                               "mpiexec.mpich on Debian, where mpiexec is Open MPI's",
        json_schema_extra={"env": "SCR_MPIEXEC"},
    )
    flavor: Literal["auto", "openmpi", "hydra"] = Field(
        "auto", description="the MPI whose option syntax to use; auto: ask '<command> "
                            "--version' (Open MPI, or MPICH/Intel MPI hydra)",
        json_schema_extra={"env": "SCR_MPI_FLAVOR"},
    )
    kill_grace: float = Field(
        10.0, ge=0, description="seconds between SIGTERM (mpirun/mpiexec stop every rank and "
                                "daemon) and SIGKILL of the launcher and its local children",
    )
    orphan_timeout: float = Field(
        10.0, ge=0, description="seconds mpirun/mpiexec may run on without any child process "
                                "(no local rank, no srun/ssh of its daemons) after it had "
                                "some, before it is stopped as hung (0: never)",
    )
    version_timeout: float = Field(
        20.0, gt=0, description="seconds '<command> --version' may take",
    )
