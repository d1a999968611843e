"""Settings of the Flux plugin (section ``flux`` of the settings file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class FluxSettings(BaseModel):
    flux: str = Field("flux", description="flux command (name on PATH or full path)")
    query_timeout: float = Field(
        30.0, description="seconds before a flux query (resource, jobs, getattr) is abandoned")
    jobid_format: Literal["f58", "f58plain", "dec"] = Field(
        "f58", description="how job ids are reported: f58 (as Flux prints them, e.g. "
                           "ƒ2G5tHBqo), f58plain (ASCII f prefix) or dec",
        json_schema_extra={"env": "SCR_FLUX_JOBID_FORMAT"},
    )
    kill_grace: float = Field(
        10.0, description="seconds between flux cancel and signalling flux job attach")
