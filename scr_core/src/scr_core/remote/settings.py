"""Settings of the remote executors (section ``remote`` of the settings file).

Example: no ssh to the compute nodes, run through srun instead::

    core:
      remote_exec: clustershell      # or pdsh, launcher
    remote:
      worker: exec
      wrapper: [srun, -N1, -n1, -w, "%h"]

``wrapper`` is an argv; ``%h`` in it becomes the node name. As an environment variable
(``SCR_REMOTE_WRAPPER``) it is split like a shell would split it (``shlex.split``), but nothing
is ever run through a shell.
"""

from __future__ import annotations

import shlex
from typing import List, Literal, Optional

from pydantic import BaseModel, Field, field_validator


class RemoteSettings(BaseModel):
    worker: Literal["ssh", "exec"] = Field(
        "ssh",
        description="ClusterShell worker: ssh to each node, or exec a local per-node wrapper "
                    "command (needs 'wrapper')",
        json_schema_extra={"env": "SCR_REMOTE_WORKER"},
    )
    wrapper: List[str] = Field(
        [],
        description="per-node wrapper argv for the exec worker / pdsh -R exec, with %h for "
                    "the node, e.g. [srun, -N1, -n1, -w, '%h'] or [lab, on, '%h']",
        json_schema_extra={"env": "SCR_REMOTE_WRAPPER"},
    )
    pdsh: str = Field("pdsh", description="the pdsh program (name on PATH or a path)",
                      json_schema_extra={"env": "SCR_PDSH"})
    rcmd: Optional[Literal["ssh", "rsh", "exec"]] = Field(
        None, description="pdsh -R module; default: 'exec' when worker is exec, else 'ssh'")
    ssh_path: Optional[str] = Field(None, description="ssh program for the ClusterShell ssh worker")
    ssh_user: Optional[str] = Field(None, description="remote user name for ssh (default: ours)")
    ssh_options: List[str] = Field(
        [],
        description="extra ssh options, e.g. ['-F', '/path/ssh_config']; the ClusterShell ssh "
                    "worker, and pdsh through PDSH_SSH_ARGS_APPEND (which pdsh splits at "
                    "spaces)",
    )
    connect_timeout: float = Field(10.0, description="seconds to wait for an ssh connection")
    fanout: Optional[int] = Field(
        None, ge=1, description="nodes contacted at once; overrides what callers ask for "
                                "(default: core.remote_fanout)",
        json_schema_extra={"env": "SCR_REMOTE_FANOUT"})
    timeout: Optional[float] = Field(
        None, gt=0, description="per-node command timeout in seconds; overrides what callers "
                                "ask for (default: each caller's own timeout)",
        json_schema_extra={"env": "SCR_REMOTE_TIMEOUT"})
    unreachable_rc: Optional[int] = Field(
        255, description="exit code meaning 'node not reached' (ssh, scr local exec, srun "
                         "wrappers use 255); null disables")
    launcher: Optional[str] = Field(
        None, description="launcher whose one-node launch the 'launcher' executor uses "
                          "(default: the selected launcher)")

    @field_validator("wrapper", "ssh_options", mode="before")
    @classmethod
    def _split_text(cls, value: object) -> object:
        # an environment variable or a YAML string holds the argv as one string
        if isinstance(value, str):
            return shlex.split(value)
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    # YAML reads unquoted on/off/yes/no/1 as booleans and numbers
                    raise ValueError(f"element {i} ({item!r}) is not a string; quote it in "
                                     "YAML (e.g. [lab, 'on', '%h'])")
        return value

    def pdsh_rcmd(self) -> str:
        """The pdsh rcmd module in effect (``rcmd``, else derived from ``worker``)."""
        return self.rcmd or ("exec" if self.worker == "exec" else "ssh")
