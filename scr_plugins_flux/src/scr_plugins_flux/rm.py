"""The Flux resource manager, through the ``flux`` command line.

Two contexts, told apart by the environment Flux sets (flux-environment(7), flux-broker):

* inside a batch/alloc instance (the job script is the instance's initial program):
  ``FLUX_URI`` points at our own instance and the broker *unsets* ``FLUX_JOB_ID``; the job
  id is the instance attribute ``jobid`` (its id in the parent), and the allocation is
  every broker of the instance (``flux getattr hostlist``, RFC 29 in rank order);
* inside a job's task (``FLUX_JOB_ID`` set): that job, its nodes from ``flux jobs``.

=============  ==========================================================================
job_id         ``$FLUX_JOB_ID`` else ``flux getattr jobid``; reported in F58 (setting)
job_nodes      ``flux getattr hostlist`` (instance) / ``flux jobs -n -o {nodelist} ID``
down_nodes     ``flux resource status -o "{state} {nnodes} {ranks} {nodelist} {reason}"``:
               offline (``*``), exclude, drain/draining/drained, torpid, with the drain
               reason an administrator gave
lost_nodes     the same query, offline brokers only (scr run's step watch)
end_time       ``flux job timeleft`` (UINT_MAX = no limit = -1); if that subcommand is
               missing (flux-core < 0.49), the job's ``{expiration}`` via ``flux jobs``
node_inventory ``flux resource list`` (free/allocated/down) + status reasons
submit         ``flux batch [options] SCRIPT`` (prints the job id)
status         one ``flux jobs -a -n -o "{id:d}|{state}|{result}|{returncode}|
               {exception.type}|{exception.note}" ID...``
cancel         ``flux cancel ID`` (``flux job cancel ID`` on releases without it)
=============  ==========================================================================

The Python bindings are not used: everything above has a CLI form whose output is parsed by
the tested functions in :mod:`.parse`, and the bindings' API has changed between releases.
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
from .settings import FluxSettings

#: scr_core's runner of client commands, with this plugin's hint for a missing one
run = partial(run_client, not_found_hint="is Flux in PATH?")

STATUS_FORMAT = "{state} {nnodes} {ranks} {nodelist} {reason}"
LIST_FORMAT = "{state:>10} {nnodes:>6} {ncores:>8} {ngpus:>8} {nodelist}"
JOBS_FORMAT = "{id:d}|{state}|{result}|{returncode}|{exception.type}|{exception.note}"


def settings_of(context: Any) -> FluxSettings:
    s = getattr(context, "settings", None)
    return s if isinstance(s, FluxSettings) else FluxSettings()


def _unknown_command(cp: Any) -> bool:
    text = (cp.stderr or "") + (cp.stdout or "")
    return cp.returncode != 0 and ("nknown" in text or "not found" in text
                                   or "invalid choice" in text)


class FluxCli:
    """The ``flux`` commands shared by the resource manager, launcher and remote exec."""

    def __init__(self, settings: FluxSettings, environ: Any, error: type) -> None:
        self.settings = settings
        self.environ = environ
        self.error = error

    def run(self, *args: str, timeout: float | None = None):
        return run([self.settings.flux, *args], self.environ,
                   timeout or self.settings.query_timeout, self.error)

    def getattr(self, name: str) -> str | None:
        cp = self.run("getattr", name)
        return cp.stdout.strip() if cp.returncode == 0 and cp.stdout.strip() else None

    def hostlist(self) -> list[str]:
        """Hosts of the instance in broker rank order (one entry per rank)."""
        text = self.getattr("hostlist")
        if text is None:
            raise self.error("flux getattr hostlist failed: is this a Flux instance "
                             "(FLUX_URI)?")
        try:
            return parse.parse_hostlist(text)
        except parse.FluxParseError as exc:
            raise self.error(str(exc)) from exc

    def resource_status(self) -> list[parse.ResourceRow]:
        cp = self.run("resource", "status", "-o", STATUS_FORMAT)
        if cp.returncode != 0:
            raise self.error(f"flux resource status failed: {failed(cp)}")
        try:
            return parse.parse_resource_status(cp.stdout)
        except parse.FluxParseError as exc:
            raise self.error(str(exc)) from exc

    def cancel(self, dec_id: str) -> None:
        cp = self.run("cancel", dec_id)
        if _unknown_command(cp):
            cp = self.run("job", "cancel", dec_id)  # flux-core < 0.48 had only this form
        if cp.returncode != 0:
            text = (cp.stderr + cp.stdout).lower()
            if "inactive" in text or "not active" in text:
                return  # already over: the goal is met
            raise self.error(f"flux cancel {dec_id} failed: {failed(cp)}")


class FluxResourceManager(ResourceManager):
    name = "flux"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.settings = settings_of(context)
        self.cli = FluxCli(self.settings, self.environ, ResourceManagerError)
        self._job_id: str | None = None
        self._job_id_known = False

    def _fmt(self, value: int) -> str:
        return parse.format_jobid(value, self.settings.jobid_format)

    def _to_int(self, text: str) -> int:
        """Any job id form (words through ``flux job id``) -> int."""
        try:
            return parse.parse_jobid(text)
        except parse.FluxParseError as exc:
            if not parse.is_words(text):
                raise ResourceManagerError(str(exc)) from exc
            cp = self.cli.run("job", "id", "--to=dec", text.strip())
            if cp.returncode != 0:
                raise ResourceManagerError(f"flux job id {text!r}: {failed(cp)}") from exc
            return parse.parse_jobid(cp.stdout)

    # -- required -----------------------------------------------------------------------
    def job_id(self) -> str | None:
        if self._job_id_known:
            return self._job_id
        raw = self.environ.get("FLUX_JOB_ID")
        if not raw and self.environ.get("FLUX_URI"):
            raw = self.cli.getattr("jobid")
        jid = None
        if raw:
            try:
                jid = self._fmt(self._to_int(raw))
            except ResourceManagerError:
                # an instance started by another RM reports its PMI name ("jobid" attr,
                # flux-broker-attributes(7)); keep it verbatim rather than fail
                jid = raw.strip()
        self._job_id, self._job_id_known = jid, True
        return jid

    def _in_job(self) -> bool:
        return bool(self.environ.get("FLUX_JOB_ID"))

    def job_nodes(self) -> list[str]:
        if self._in_job():
            dec = str(self._to_int(self.environ["FLUX_JOB_ID"]))
            cp = self.cli.run("jobs", "-n", "-o", "{nodelist}", dec)
            if cp.returncode != 0:
                raise ResourceManagerError(f"flux jobs {dec} failed: {failed(cp)}")
            text = cp.stdout.strip()
            try:
                return list(dict.fromkeys(parse.parse_hostlist(text))) if text else []
            except parse.FluxParseError as exc:
                raise ResourceManagerError(str(exc)) from exc
        if not self.environ.get("FLUX_URI"):
            return []
        return list(dict.fromkeys(self.cli.hostlist()))

    def down_nodes(self) -> dict[str, str]:
        nodes = self.job_nodes()
        if not nodes:
            return {}
        return parse.down_from_status(self.cli.resource_status(), nodes)

    def lost_nodes(self, nodes: Sequence[str]) -> dict[str, str]:
        """Offline brokers among ``nodes``: one ``flux resource status`` for the step watch."""
        if not nodes:
            return {}
        return parse.lost_from_status(self.cli.resource_status(), nodes)

    def end_time(self) -> int:
        if not (self._in_job() or self.environ.get("FLUX_URI")):
            return 0
        cp = self.cli.run("job", "timeleft")
        if cp.returncode == 0:
            try:
                return parse.parse_timeleft(cp.stdout, time.time())
            except parse.FluxParseError as exc:
                raise ResourceManagerError(str(exc)) from exc
        if not _unknown_command(cp):
            return 0  # e.g. "not associated with a job": the end time is unknown
        # older flux-core: the job's expiration, asked of the instance that runs the job
        jid = self.job_id()
        try:
            dec = str(self._to_int(jid)) if jid else None
        except ResourceManagerError:
            dec = None
        if dec is None:
            return 0
        where = [] if self._in_job() else ["--parent"]
        cp = self.cli.run(*where, "jobs", "-n", "-o", "{expiration}", dec)
        if cp.returncode != 0 or not cp.stdout.strip():
            return 0
        try:
            return parse.parse_expiration(cp.stdout)
        except parse.FluxParseError as exc:
            raise ResourceManagerError(str(exc)) from exc

    # -- optional -----------------------------------------------------------------------
    def node_inventory(self, partition: str | None = None) -> list[NodeInfo]:
        args = ["resource", "list", "-o", LIST_FORMAT]
        if partition:
            args += ["-q", partition]  # flux queues are the partitions
        cp = self.cli.run(*args)
        if cp.returncode != 0:
            raise ResourceManagerError(f"flux resource list failed: {failed(cp)}")
        try:
            listing = parse.parse_resource_list(cp.stdout)
        except parse.FluxParseError as exc:
            raise ResourceManagerError(str(exc)) from exc
        try:
            status = self.cli.resource_status()
        except ResourceManagerError:
            status = []  # reasons are extras; the scheduler view above still stands
        return parse.inventory(listing, status)

    def submit_argv(self, request: SubmitRequest, script_path: str) -> list[str]:
        argv = [self.settings.flux, "batch", "--job-name", request.job_name]
        if request.nodes:
            argv += ["-N", str(request.nodes)]
        if request.tasks:
            argv += ["-n", str(request.tasks)]  # -n is --nslots for flux batch
        # -N alone gets exclusive nodes with one slot each (flux-batch(1))
        if request.time_limit:
            argv += ["-t", f"{int(request.time_limit)}s"]  # RFC 23 duration
        if request.partition:
            argv += ["-q", request.partition]
        if request.account:
            argv += ["--setattr=system.bank=" + request.account]
        if request.output:
            argv += ["--output", request.output]
        if request.error:
            argv += ["--error", request.error]
        if request.workdir:
            argv += ["--cwd", request.workdir]
        # No fault-tolerance flag: a batch instance survives the loss of non-critical
        # brokers (broker.critical-ranks, flux-broker-attributes(7)) by default.
        return [*argv, script_path]

    def submit(self, request: SubmitRequest) -> JobRecord:
        if not request.command:
            raise ResourceManagerError("flux batch: the job has no command")
        lines = ["#!/bin/bash", *request.header_lines]
        for key, value in request.environ.items():
            lines.append(f"export {key}={shlex.quote(value)}")
        lines.append(shlex.join(request.command))
        try:
            fd, path = tempfile.mkstemp(prefix="scr-flux-batch.", suffix=".sh")
            with os.fdopen(fd, "w") as fh:
                fh.write("\n".join(lines) + "\n")
        except OSError as exc:
            raise ResourceManagerError(f"cannot write the batch script: {exc}") from exc
        cp = run(self.submit_argv(request, path), self.environ, self.settings.query_timeout,
                 ResourceManagerError)
        if cp.returncode != 0:
            raise ResourceManagerError(f"flux batch failed: {failed(cp)}")
        try:
            jid = parse.parse_submit(cp.stdout)
        except parse.FluxParseError as exc:
            raise ResourceManagerError(str(exc)) from exc
        return JobRecord(job_id=self._fmt(jid), system="flux", submit_time=time.time(),
                         script=path, name=request.job_name)

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        ids = [str(j) for j in job_ids]
        if not ids:
            return {}
        wanted = {jid: self._to_int(jid) for jid in ids}
        cp = self.cli.run("jobs", "-a", "-n", "-o", JOBS_FORMAT,
                          *[str(v) for v in dict.fromkeys(wanted.values())])
        try:
            records = parse.parse_jobs(cp.stdout)
        except parse.FluxParseError as exc:
            raise ResourceManagerError(str(exc)) from exc
        if cp.returncode != 0 and not records:
            # unknown ids make flux jobs fail; any other failure (no broker...) is an error
            named = any(str(v) in cp.stderr or parse.encode_f58(v)[1:] in cp.stderr
                        or jid in cp.stderr for jid, v in wanted.items())
            if not named:
                raise ResourceManagerError(f"flux jobs failed: {failed(cp)}")
        out = {}
        for jid, value in wanted.items():
            rec = records.get(value)
            if rec is None:
                out[jid] = JobStatus(jid, JobState.UNKNOWN,
                                     message="not known to flux jobs (purged or never existed)")
                continue
            state = parse.normalize_state(rec.state, rec.result, rec.exception_type,
                                         rec.exception_note)
            msg = ": ".join(x for x in (rec.exception_type, rec.exception_note) if x)
            raw = rec.state + (f"/{rec.result}" if rec.result else "")
            out[jid] = JobStatus(jid, state, message=msg, exit_code=rec.returncode,
                                 raw_state=raw)
        return out

    def cancel(self, job_id: str) -> None:
        self.cli.cancel(str(self._to_int(job_id)))
