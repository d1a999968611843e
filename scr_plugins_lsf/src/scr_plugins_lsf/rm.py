"""The LSF resource manager (IBM Spectrum LSF, including CORAL systems with jsrun/lrun).

=============  ==========================================================================
job_id         ``$LSB_JOBID``
job_nodes      ``$LSB_DJOB_HOSTFILE`` (one line per slot), else ``$LSB_MCPU_HOSTS``, else
               ``$LSB_HOSTS``; distinct hosts in LSF's order, without the CORAL launch node
               (setting ``launch_node``; LLNL/scr#143)
down_nodes     ``bhosts -w NODE...``: statuses unavail, unreach, closed_Adm, closed_LIM,
               closed_Lock (see :data:`parse.DOWN_STATUSES` for why busy states are not down)
lost_nodes     the same query, unavail and unreach only (scr run's step watch)
end_time       ``bjobs -noheader -o time_left $LSB_JOBID`` (``-`` = no limit = -1)
node_inventory ``bhosts -w [GROUP]`` joined with ``lshosts -w``
submit         ``bsub [options] < script`` with ``-env "all, LSB_DJOB_COMMFAIL_ACTION=
               KILL_TASKS"`` so a node failure kills tasks, not the allocation
status         one ``bjobs -a -noheader -o "jobid stat exit_code exit_reason
               delimiter='|'" ID...`` for all ids
cancel         ``bkill ID``
=============  ==========================================================================
"""

from __future__ import annotations

import os
import shlex
import tempfile
import time
from functools import partial
from typing import Any, Sequence

from scr_core.client_commands import describe_failure as failed
from scr_core.client_commands import run_client
from scr_core.errors import ResourceManagerError
from scr_core.interfaces import (
    JobRecord,
    JobState,
    JobStatus,
    NodeInfo,
    ResourceManager,
    SubmitRequest,
)

from . import parse
from .settings import LsfSettings

#: scr_core's runner of client commands, with this plugin's hint for a missing one
run = partial(run_client, not_found_hint="is LSF in PATH?")

COMMFAIL_ENV = "all, LSB_DJOB_COMMFAIL_ACTION=KILL_TASKS"


def settings_of(context: Any) -> LsfSettings:
    s = getattr(context, "settings", None)
    return s if isinstance(s, LsfSettings) else LsfSettings()


def allocation_from_env(environ: Any, launch_node: str) -> list[str]:
    """Compute nodes of the current LSF job from its environment (reads the hostfile)."""
    path = environ.get("LSB_DJOB_HOSTFILE")
    try:
        if path:
            try:
                with open(path) as fh:
                    return parse.allocation_nodes(parse.hostfile_slots(fh.read()), launch_node)
            except FileNotFoundError:
                pass  # fall back to the variables, which carry the same list
            except OSError as exc:
                raise ResourceManagerError(f"cannot read LSB_DJOB_HOSTFILE {path}: "
                                           f"{exc.strerror}") from exc
        if environ.get("LSB_MCPU_HOSTS"):
            slots = parse.mcpu_hosts_slots(environ["LSB_MCPU_HOSTS"])
        elif environ.get("LSB_HOSTS"):
            slots = parse.lsb_hosts_slots(environ["LSB_HOSTS"])
        else:
            return []
    except parse.LsfParseError as exc:
        raise ResourceManagerError(f"LSF job environment: {exc}") from exc
    return parse.allocation_nodes(slots, launch_node)


class LsfResourceManager(ResourceManager):
    name = "lsf"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.settings = settings_of(context)

    def _run(self, argv: list[str], stdin_text: str | None = None):
        return run(argv, self.environ, self.settings.query_timeout, ResourceManagerError,
                   stdin_text=stdin_text)

    # -- required -----------------------------------------------------------------------
    def job_id(self) -> str | None:
        return self.environ.get("LSB_JOBID") or None

    def job_nodes(self) -> list[str]:
        return allocation_from_env(self.environ, self.settings.launch_node)

    def down_nodes(self) -> dict[str, str]:
        nodes = self.job_nodes()
        if not nodes:
            return {}
        cp = self._run([self.settings.bhosts, "-w", *nodes])
        try:
            hosts = parse.parse_bhosts(cp.stdout)
        except parse.LsfParseError as exc:
            raise ResourceManagerError(f"bhosts: {exc}") from exc
        if cp.returncode != 0 and not hosts:
            raise ResourceManagerError(f"bhosts -w failed: {failed(cp)}")
        return parse.down_from_bhosts(hosts, nodes)

    def lost_nodes(self, nodes: Sequence[str]) -> dict[str, str]:
        """Hosts bhosts calls unavail/unreach: one ``bhosts -w`` for the step watch."""
        if not nodes:
            return {}
        cp = self._run([self.settings.bhosts, "-w", *nodes])
        try:
            hosts = parse.parse_bhosts(cp.stdout)
        except parse.LsfParseError as exc:
            raise ResourceManagerError(f"bhosts: {exc}") from exc
        if cp.returncode != 0 and not hosts:
            raise ResourceManagerError(f"bhosts -w failed: {failed(cp)}")
        return parse.lost_from_bhosts(hosts, nodes)

    def end_time(self) -> int:
        jid = self.job_id()
        if not jid:
            return 0
        cp = self._run([self.settings.bjobs, "-noheader", "-o", "time_left", jid])
        if cp.returncode != 0 and not cp.stdout.strip():
            return 0  # job unknown to bjobs: the end time is unknown, not an error
        try:
            return parse.parse_time_left(cp.stdout, time.time())
        except parse.LsfParseError as exc:
            raise ResourceManagerError(f"bjobs time_left for job {jid}: {exc}") from exc

    # -- optional -----------------------------------------------------------------------
    def node_inventory(self, partition: str | None = None) -> list[NodeInfo]:
        # bhosts takes a host group name where a Slurm user would give a partition
        argv = [self.settings.bhosts, "-w"] + ([partition] if partition else [])
        cp = self._run(argv)
        try:
            hosts = parse.parse_bhosts(cp.stdout)
        except parse.LsfParseError as exc:
            raise ResourceManagerError(f"bhosts: {exc}") from exc
        if cp.returncode != 0 and not hosts:
            raise ResourceManagerError(f"{' '.join(argv)} failed: {failed(cp)}")
        static: list[parse.LSHost] = []
        ls = self._run([self.settings.lshosts, "-w", *[h.name for h in hosts]])
        if ls.returncode == 0:
            try:
                static = parse.parse_lshosts(ls.stdout)
            except parse.LsfParseError:
                static = []  # CPU/memory columns are extras; the states above still stand
        return parse.inventory(hosts, static)

    def submit_argv(self, request: SubmitRequest) -> list[str]:
        """bsub options for ``request`` (the script itself goes to stdin)."""
        s = self.settings
        argv = [s.bsub, "-J", request.job_name]
        if request.nodes:
            if s.nodes_option == "nnodes":
                argv += ["-nnodes", str(request.nodes)]
            else:
                tasks = request.tasks or request.nodes
                ptile = -(-tasks // request.nodes)
                argv += ["-n", str(tasks), "-R", f"span[ptile={ptile}]"]
        elif request.tasks:
            argv += ["-n", str(request.tasks)]
        if request.time_limit:
            minutes = max(1, -(-int(request.time_limit) // 60))
            argv += ["-W", f"{minutes // 60}:{minutes % 60:02d}"]
        if request.partition:
            argv += ["-q", request.partition]
        if request.account:
            argv += ["-P", request.account]
        if request.output:
            argv += ["-o", request.output]
        if request.error:
            argv += ["-e", request.error]
        if request.workdir:
            argv += ["-cwd", request.workdir]
        if request.fault_tolerant and s.commfail_kill_tasks:
            argv += ["-env", COMMFAIL_ENV]
        return argv

    @staticmethod
    def script_text(request: SubmitRequest) -> str:
        lines = ["#!/bin/bash", *request.header_lines]
        # values go through the script (quoted), not -env, whose list syntax uses commas
        for key, value in request.environ.items():
            lines.append(f"export {key}={shlex.quote(value)}")
        lines.append(shlex.join(request.command))
        return "\n".join(lines) + "\n"

    def submit(self, request: SubmitRequest) -> JobRecord:
        if not request.command:
            raise ResourceManagerError("bsub: the job has no command")
        script = self.script_text(request)
        cp = self._run(self.submit_argv(request), stdin_text=script)
        if cp.returncode != 0:
            raise ResourceManagerError(f"bsub failed: {failed(cp)}")
        try:
            jid = parse.parse_bsub(cp.stdout + cp.stderr)
        except parse.LsfParseError as exc:
            raise ResourceManagerError(str(exc)) from exc
        path = ""
        try:
            fd, path = tempfile.mkstemp(prefix=f"scr-bsub-{jid}.", suffix=".sh")
            with os.fdopen(fd, "w") as fh:
                fh.write(script)
        except OSError:
            path = ""  # the job is submitted; keeping a copy of its script is a courtesy
        return JobRecord(job_id=jid, system="lsf", submit_time=time.time(), script=path,
                         name=request.job_name)

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        ids = [str(j) for j in job_ids]
        if not ids:
            return {}
        fmt = "jobid stat exit_code exit_reason delimiter='|'"
        cp = self._run([self.settings.bjobs, "-a", "-noheader", "-o", fmt, *ids])
        try:
            records = parse.parse_bjobs_status(cp.stdout)
        except parse.LsfParseError as exc:
            raise ResourceManagerError(str(exc)) from exc
        missing = parse.not_found_ids(cp.stderr)
        if cp.returncode != 0 and not records and not missing:
            raise ResourceManagerError(f"bjobs failed: {failed(cp)}")
        out = {}
        for jid in ids:
            rec = records.get(jid)
            if rec is None:
                msg = "not known to bjobs (finished too long ago, or never existed)"
                out[jid] = JobStatus(jid, JobState.UNKNOWN, message=msg)
                continue
            code = int(rec.exit_code) if rec.exit_code.lstrip("-").isdigit() else None
            if rec.stat == "DONE" and code is None:
                code = 0
            out[jid] = JobStatus(jid, parse.normalize_state(rec.stat, rec.exit_code,
                                                            rec.exit_reason),
                                 message=rec.exit_reason, exit_code=code, raw_state=rec.stat)
        return out

    def cancel(self, job_id: str) -> None:
        cp = self._run([self.settings.bkill, str(job_id)])
        if cp.returncode == 0:
            return
        text = (cp.stdout + cp.stderr).lower()
        if "already finished" in text:
            return  # the goal (job not running) is met
        raise ResourceManagerError(f"bkill {job_id} failed: {failed(cp)}")
