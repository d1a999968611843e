"""Settings of the node health tests (section ``nodetests`` of the settings file)."""

from __future__ import annotations

import shlex
from typing import List, Optional

from pydantic import BaseModel, Field, field_validator


class NodeTestsSettings(BaseModel):
    fanout: Optional[int] = Field(
        None, ge=1, description="nodes tested at once through remote exec "
                                "(default: core.remote_fanout)")
    ping_program: str = Field("ping", description="the ping program (iputils argv: -c N -W S)")
    ping_count: int = Field(1, ge=1, description="echo requests per try (ping -c)")
    ping_wait: float = Field(1.0, gt=0, description="seconds to wait for a reply (ping -W)")
    ping_tries: int = Field(2, ge=1, description="tries before a node counts as down (SCR: 2)")
    ping_fanout: int = Field(256, ge=1, description="pings running at once")
    echo_timeout: float = Field(10.0, gt=0, description="seconds for 'echo UP' on a node")
    dir_timeout: float = Field(60.0, gt=0, description="seconds for the dir check on a node")
    python: Optional[str] = Field(
        None, description="python on the nodes that has scr_core installed, for the "
                          "dir_capacity test (default: this python, which must be visible "
                          "on the nodes)",
        json_schema_extra={"env": "SCR_NODE_TEST_PYTHON"})
    free_space: bool = Field(
        False, description="dir_capacity compares BYTES with free space instead of total "
                           "capacity (scr list-down-nodes --free sets it)",
        json_schema_extra={"env": "SCR_CHECK_FREE"})
    script: List[str] = Field(
        [],
        description="argv of the site 'script' test, run on each node; a non-zero exit or a "
                    "line starting with FAIL marks the node down with that message",
        json_schema_extra={"env": "SCR_NODE_TEST_SCRIPT"})
    script_timeout: float = Field(60.0, gt=0, description="seconds for the site script")

    @field_validator("script", mode="before")
    @classmethod
    def _split_text(cls, value: object) -> object:
        # from an environment variable or a YAML string: split like a shell, run without one
        if isinstance(value, str):
            return shlex.split(value)
        return value
