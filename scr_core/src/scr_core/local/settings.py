"""Settings of the ``local`` backend (section ``local`` of the settings file)."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field


class LocalSettings(BaseModel):
    nodes: str = Field(
        "4",
        description="virtual nodes of an implicit allocation: a count (vnode1..N) or a hostlist",
        json_schema_extra={"env": "SCR_LOCAL_NODES"},
    )
    node_prefix: str = Field("vnode", description="name prefix when 'nodes' is a count")
    time_limit: Optional[float] = Field(
        None, description="seconds an implicit allocation lasts (none = no limit)",
        json_schema_extra={"env": "SCR_LOCAL_TIME_LIMIT"},
    )
    base_dir: Optional[str] = Field(
        None, description="where allocation directories are made (default $TMPDIR/scr-local-UID)"
    )
    kill_on_bad_exit: bool = Field(
        True, description="end the whole step when one task exits non-zero (as an MPI abort)"
    )
    node_timeout: float = Field(
        30.0, ge=0,
        description="seconds after a virtual node crashes before the launcher ends the step "
                    "it was in, as a real resource manager's node timeout does (Slurm's "
                    "SlurmdTimeout; 300 s by default there); 0 ends it at once. scr run's "
                    "step watch (SCR_WATCH) does not wait for it",
        json_schema_extra={"env": "SCR_LOCAL_NODE_TIMEOUT"},
    )
    shrink: bool = Field(
        True, description="when nodes were excluded after a failure and fewer than -N remain, "
                          "run on the remaining ones instead of failing the launch"
    )
    spool_dir: Optional[str] = Field(
        None, description="where batch jobs of the local backend are kept (scr submit --rm "
                          "local); default <base_dir>/spool",
        json_schema_extra={"env": "SCR_LOCAL_SPOOL"},
    )
    partitions: Optional[dict[str, dict]] = Field(
        None, description="virtual partitions of the local cluster (batch jobs, scr nodes): "
                          "name -> {nodes: hostlist or count, cpus, memory (e.g. 4G), "
                          "max_time (e.g. 1h), features: [...]}; the first is the default. "
                          "None: one partition 'local' made of 'nodes'",
    )
