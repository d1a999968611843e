"""Settings of the LSF plugin (section ``lsf`` of the settings file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class LsfSettings(BaseModel):
    bjobs: str = Field("bjobs", description="bjobs command (name on PATH or full path)")
    bhosts: str = Field("bhosts", description="bhosts command")
    lshosts: str = Field("lshosts", description="lshosts command")
    bsub: str = Field("bsub", description="bsub command")
    bkill: str = Field("bkill", description="bkill command")
    jsrun: str = Field("jsrun", description="jsrun command (IBM JSM)")
    jslist: str = Field("jslist", description="jslist command (IBM JSM)")
    jskill: str = Field("jskill", description="jskill command (IBM JSM)")
    lrun: str = Field("lrun", description="lrun command (LLNL wrapper of jsrun)")
    query_timeout: float = Field(
        30.0, description="seconds before an LSF query (bjobs, bhosts, ...) is abandoned")
    launch_node: Literal["auto", "first", "none"] = Field(
        "auto",
        description="is the first host of LSB_DJOB_HOSTFILE a launch node to leave out? "
                    "first = always (CORAL), none = never, auto = when it has one slot and "
                    "every other host has more",
        json_schema_extra={"env": "SCR_LSF_LAUNCH_NODE"},
    )
    commfail_kill_tasks: bool = Field(
        True, description="submit with -env \"all, LSB_DJOB_COMMFAIL_ACTION=KILL_TASKS\" so "
                          "a node failure kills the tasks, not the allocation")
    nodes_option: Literal["nnodes", "span"] = Field(
        "nnodes", description="how submit asks for N nodes: -nnodes N (CORAL/CSM) or "
                              "-n TASKS -R span[ptile=...] (other LSF clusters)")
    step_id_wait: float = Field(
        30.0, description="seconds to look in jslist for the id of a step jsrun started")
    kill_grace: float = Field(
        10.0, description="seconds between jskill/SIGTERM and SIGKILL of a job step")
