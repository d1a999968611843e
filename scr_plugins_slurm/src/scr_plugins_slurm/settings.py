"""Settings of the Slurm plugin (section ``slurm`` of the settings file)."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field


class SlurmSettings(BaseModel):
    # Client commands: a name looked up on the job's PATH, or a path. Each must *exec* the
    # real client (a wrapper that forks would hide srun's pid from the launcher, which
    # identifies its step by that pid).
    sinfo: str = Field("sinfo", description="sinfo command (name on PATH or path)")
    squeue: str = Field("squeue", description="squeue command")
    scontrol: str = Field("scontrol", description="scontrol command")
    sbatch: str = Field("sbatch", description="sbatch command")
    scancel: str = Field("scancel", description="scancel command")
    sacct: str = Field("sacct", description="sacct command")
    srun: str = Field("srun", description="srun command (launcher and prerun)")

    command_timeout: float = Field(
        60.0, gt=0, description="seconds any query (sinfo, squeue, scontrol, sacct, sbatch, "
                                "scancel) may take before it is reported as failed")
    use_sacct: bool = Field(
        True, description="resolve jobs that squeue no longer knows through sacct; without "
                          "accounting they are reported 'unknown' with the reason")
    prerun_hostname: bool = Field(
        False, description="scr prerun runs 'srun /bin/hostname' once per node, as SCR did to "
                           "make Slurm run node prologs before the first real step. Only "
                           "needed on sites whose prologs run at first step "
                           "(no PrologFlags=Alloc)")
    prerun_timeout: float = Field(300.0, gt=0, description="seconds the prerun srun may take")
    script_dir: Optional[str] = Field(
        None, description="where submit() writes batch scripts (default PREFIX/.scr/batch)")
    step_id_timeout: float = Field(
        300.0, gt=0, description="seconds the launcher keeps looking for the id of the step "
                                 "it started (a step may wait for resources first)")
    kill_grace: float = Field(
        10.0, gt=0, description="seconds to wait for srun to exit after scancel of its step, "
                                "and again after SIGINT, before SIGKILL")
