"""The Slurm resource manager (SCR's ``resmgrs/slurm.py``, without its bugs).

* ``job_nodes`` expands ``SLURM_JOB_NODELIST`` (compressed ranges included) in Slurm's order.
  After a node failure in a ``--no-kill`` job that variable still lists the lost node;
  ``down_nodes`` is what reports it.
* ``down_nodes`` asks Slurm about exactly the job's nodes (``sinfo -N -n``, every state, one
  query), classifies the states itself (``parse.node_is_down``) and carries Slurm's reason.
  A node Slurm removed from the allocation (``scontrol show job`` no longer lists it) is
  down too, even once it is idle again: the job cannot use it.
* ``end_time`` parses ``scontrol show job -o`` with ``mktime`` (local time), ``UNLIMITED``
  -> -1, unknown -> 0; the query runs with ``SLURM_TIME_FORMAT=standard``.
* ``status`` asks squeue once for all ids; ids squeue no longer knows go to one sacct
  query. Without accounting the answer is ``unknown`` with the reason: never a silent
  "completed".
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import tempfile
import time
from typing import Mapping, Sequence

from scr_core.errors import ResourceManagerError, UsageError
from scr_core.hostlist import expand, fold
from scr_core.interfaces import (
    BackendContext,
    JobRecord,
    JobState,
    JobStatus,
    NodeInfo,
    ResourceManager,
    SubmitRequest,
)

from . import parse
from .commands import SlurmCommands

JOB_ID_VARS = ("SLURM_JOB_ID", "SLURM_JOBID")
NODELIST_VARS = ("SLURM_JOB_NODELIST", "SLURM_NODELIST")
# one job id as squeue/sacct take it: 12, 12_3 (array element), 12+1 (het component)
_JOB_ID_RE = re.compile(r"^\d+(?:_\d+|\+\d+)?$")
# what scancel takes: a job id or a step of it (12.4, 12.batch)
_CANCEL_ID_RE = re.compile(r"^\d+(?:_\d+|\+\d+)?(?:\.\w+)?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INVALID_JOB = "Invalid job id specified"


def job_id_from_env(environ: Mapping[str, str]) -> str | None:
    for var in JOB_ID_VARS:
        value = environ.get(var, "").strip()
        if value:
            return value
    return None


def format_time_limit(seconds: int) -> str:
    """Seconds -> Slurm's ``D-HH:MM:SS`` (rounded up to whole minutes, Slurm's unit)."""
    minutes = max(1, -(-int(seconds) // 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"


def _sbatch_word(value: str) -> str:
    """``value`` as sbatch reads it from a ``#SBATCH`` line, which it splits at whitespace
    honouring '...' and "..." (checked on 22.05: "my job", "it's", 'say "hi"')."""
    if not re.search(r"[\s\"']", value):
        return value
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    raise UsageError(f"slurm submit: a batch option value with both quote characters: "
                     f"{value!r}")


def render_batch_script(request: SubmitRequest) -> str:
    """The job script for ``request``: ``#SBATCH`` lines, exported variables, then ``exec``
    of the command. Words are quoted with :func:`shlex.quote`: a batch script is the one
    place a shell reads our data, and it reads it as literal words."""
    opts: list[str] = [f"--job-name={_sbatch_word(request.job_name)}"]
    if request.nodes is not None:
        opts.append(f"--nodes={int(request.nodes)}")
    if request.tasks is not None:
        opts.append(f"--ntasks={int(request.tasks)}")
    if request.time_limit is not None:
        opts.append(f"--time={format_time_limit(request.time_limit)}")
    for flag, value in (("--partition", request.partition), ("--account", request.account),
                        ("--output", request.output), ("--error", request.error),
                        ("--chdir", request.workdir)):
        if value:
            opts.append(f"{flag}={_sbatch_word(value)}")
    if request.fault_tolerant:
        # a node failure must not end the allocation: scr relaunches on the survivors
        opts.append("--no-kill")
    for opt in opts:
        if "\n" in opt:
            raise UsageError(f"slurm submit: a newline in a batch option: {opt!r}")
    lines = ["#!/bin/bash", "# written by scr (scr_plugins_slurm)"]
    # sbatch reads #SBATCH lines literally (no shell), up to the first command
    lines += [f"#SBATCH {opt}" for opt in opts]
    for extra in request.header_lines:
        if "\n" in extra:
            raise UsageError(f"slurm submit: a newline in a header line: {extra!r}")
        lines.append(extra if extra.lstrip().startswith("#") else f"#SBATCH {extra}")
    for key, value in request.environ.items():
        if not _ENV_NAME_RE.match(key):
            raise UsageError(f"slurm submit: not a variable name: {key!r}")
        lines.append(f"export {key}={shlex.quote(str(value))}")
    if not request.command:
        raise UsageError("slurm submit: the job has no command")
    lines.append("exec " + " ".join(shlex.quote(str(w)) for w in request.command))
    return "\n".join(lines) + "\n"


class SlurmResourceManager(ResourceManager):
    name = "slurm"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.commands = SlurmCommands(context.settings, context.environ)
        self.settings = self.commands.settings

    # -- the allocation ----------------------------------------------------------------------
    def job_id(self) -> str | None:
        return job_id_from_env(self.environ)

    def job_nodes(self) -> list[str]:
        for var in NODELIST_VARS:
            text = self.environ.get(var, "").strip()
            if text:
                try:
                    return expand(text)
                except UsageError as exc:
                    raise ResourceManagerError(f"{var} is not a node list: {exc}") from exc
        return []

    def _job_fields(self, job_id: str) -> dict[str, str]:
        proc = self.commands.run("scontrol", ["show", "job", "-o", job_id])
        return parse.parse_scontrol_job(proc.stdout)

    def down_nodes(self) -> dict[str, str]:
        nodes = self.job_nodes()
        if not nodes:
            return {}
        reported = parse.parse_sinfo_down(self._sinfo_states(nodes))
        down = {n: reported[n] for n in nodes if n in reported}
        jid = self.job_id()
        if jid:
            # Slurm shrinks a --no-kill job that lost a node; the node may be idle again
            # (resumed) and still be unusable by this job.
            fields = self._job_fields(jid)
            current = fields.get("NodeList", "")
            if fields.get("JobState", "").startswith(("RUNNING", "COMPLETING")) and current:
                try:
                    still = set(expand(current))
                except UsageError as exc:
                    raise ResourceManagerError(
                        f"scontrol show job {jid}: bad NodeList {current!r}") from exc
                for n in nodes:
                    if n not in still and n not in down:
                        down[n] = (f"removed from job {jid} by Slurm "
                                   f"(the job now has {current})")
        return {n: down[n] for n in nodes if n in down}

    def lost_nodes(self, nodes: Sequence[str]) -> dict[str, str]:
        """Nodes Slurm has declared DOWN or FAIL: one ``sinfo`` for the step watch. Not
        responding alone (one missed ping) and drained are not lost. Slurm declares a dead
        node DOWN only after ``SlurmdTimeout`` (300 s by default), so on Slurm the watch's
        ping probe is what finds a crash within seconds; this catches an admin's DOWN."""
        if not nodes:
            return {}
        lost = parse.parse_sinfo_lost(self._sinfo_states(nodes))
        return {n: lost[n] for n in nodes if n in lost}

    def _sinfo_states(self, nodes: Sequence[str]) -> str:
        """``sinfo``'s node/state/reason rows of ``nodes`` (:data:`parse.SINFO_DOWN_FORMAT`)."""
        return self.commands.run("sinfo", ["-h", "-N", "-n", fold(list(nodes)),
                                           "-o", parse.SINFO_DOWN_FORMAT]).stdout

    def end_time(self) -> int:
        jid = self.job_id()
        if not jid:
            return 0
        return parse.end_time_from_job(self._job_fields(jid), time.time())

    def prerun(self) -> None:
        """With ``slurm.prerun_hostname``: one ``srun /bin/hostname`` task per usable node,
        which makes Slurm run node prologs that wait for the first step (SCR's behaviour).
        Off by default: sites with ``PrologFlags=Alloc`` run them at allocation time."""
        if not self.settings.prerun_hostname or not self.job_id():
            return
        nodes = self.job_nodes()
        down = self.down_nodes()
        usable = [n for n in nodes if n not in down]
        if not usable:
            raise ResourceManagerError("slurm prerun: no usable node in the allocation")
        argv = [self.commands.path("srun"), f"--nodes={len(usable)}",
                f"--ntasks={len(usable)}", "--ntasks-per-node=1", f"--nodelist={fold(usable)}",
                "--overlap", "--mpi=none", "/bin/hostname"]
        try:
            proc = subprocess.run(argv, env=dict(self.environ), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  timeout=self.settings.prerun_timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ResourceManagerError(f"slurm prerun: {' '.join(argv)}: {exc}") from exc
        if proc.returncode != 0:
            raise ResourceManagerError(f"slurm prerun: {' '.join(argv)} failed "
                                       f"(exit {proc.returncode}): {proc.stderr.strip()}")

    # -- inventory and batch lifecycle --------------------------------------------------------
    def node_inventory(self, partition: str | None = None) -> list[NodeInfo]:
        args = ["-h", "-N", "-o", parse.SINFO_INVENTORY_FORMAT]
        if partition:
            args += ["-p", partition]
        nodes = parse.parse_sinfo_inventory(self.commands.run("sinfo", args).stdout)
        res = parse.parse_scontrol_reservations(
            self.commands.run("scontrol", ["show", "res", "-o"]).stdout)
        for info in nodes:
            info.reservations = list(res.get(info.name, []))
        return nodes

    def _script_dir(self) -> str:
        return self.settings.script_dir or os.path.join(self.context.prefix, ".scr", "batch")

    def submit(self, request: SubmitRequest) -> JobRecord:
        text = render_batch_script(request)
        directory = self._script_dir()
        try:
            os.makedirs(directory, exist_ok=True)
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", request.job_name)[:40] or "job"
            fd, path = tempfile.mkstemp(prefix=f"{safe}-", suffix=".sbatch", dir=directory)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.chmod(path, 0o755)
        except OSError as exc:
            raise ResourceManagerError(f"slurm submit: cannot write the batch script in "
                                       f"{directory}: {exc}") from exc
        proc = self.commands.run("sbatch", ["--parsable", path], query=False)
        job_id = parse.parse_sbatch_parsable(proc.stdout)
        return JobRecord(job_id=job_id, system="slurm", submit_time=time.time(), script=path,
                         name=request.job_name)

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        ids = list(dict.fromkeys(str(j).strip() for j in job_ids))
        result: dict[str, JobStatus] = {}
        valid = []
        for jid in ids:
            if _JOB_ID_RE.match(jid):
                valid.append(jid)
            else:
                result[jid] = JobStatus(job_id=jid, state=JobState.UNKNOWN,
                                        message=f"{jid!r} is not a Slurm job id")
        if valid:
            proc = self.commands.run(
                "squeue", ["-h", "-t", "all", "-j", ",".join(valid),
                           "-O", parse.SQUEUE_JOBS_FORMAT], ok_errors=(_INVALID_JOB,))
            found = parse.parse_squeue_jobs(proc.stdout) if proc.returncode == 0 else {}
            missing = self._resolve(valid, found, result)
            if missing:
                self._sacct(missing, result)
        return {jid: result[jid] for jid in ids}

    @staticmethod
    def _resolve(ids: Sequence[str], found: dict, result: dict) -> list[str]:
        missing = []
        for jid in ids:
            st = parse.aggregate_array(jid, found) or found.get(jid)
            if st is None:
                missing.append(jid)
            else:
                result[jid] = dataclasses.replace(st, job_id=jid)
        return missing

    def _sacct(self, ids: Sequence[str], result: dict) -> None:
        def unknown(why: str) -> None:
            for jid in ids:
                if jid not in result:
                    result[jid] = JobStatus(job_id=jid, state=JobState.UNKNOWN,
                                            message=f"job {jid} is not known to slurmctld "
                                                    f"(squeue) any more, and {why}")

        if not self.settings.use_sacct:
            unknown("sacct is disabled (slurm.use_sacct)")
            return
        try:
            proc = self.commands.run("sacct", ["-n", "-P", "-X", "-j", ",".join(ids),
                                               "-o", parse.SACCT_FIELDS])
        except ResourceManagerError as exc:
            unknown(f"accounting could not tell: {exc}")
            return
        missing = self._resolve(ids, parse.parse_sacct(proc.stdout), result)
        if missing:
            unknown("sacct has no record of it")

    def cancel(self, job_id: str) -> None:
        jid = str(job_id).strip()
        if not _CANCEL_ID_RE.match(jid):
            raise ResourceManagerError(f"slurm cancel: {jid!r} is not a Slurm job id")
        self.commands.run("scancel", [jid])
