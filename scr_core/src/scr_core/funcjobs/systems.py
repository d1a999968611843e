"""Where a function job runs.

:class:`RMSystem`
    this host (or a cluster whose file system it shares) through any resource manager
    plugin and the scheduler API; the run directory *is* the staging directory. The
    ``local`` system is the local backend's batch jobs.
:class:`SshSystem`
    a remote host reached with ``ssh`` (any argv prefix, ``remote_shell``): inputs are
    staged with rsync (or scp), the host's resource manager is driven through
    ``python -m scr_core.funcjobs.remote`` (scr_core must be installed there), outputs are
    staged back when the job has ended.

Every external command is an argv list; the one string a remote shell parses (ssh's
command) is built with :func:`shlex.join`, so it reads our words literally.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Mapping, Sequence

from ..errors import ConfigError, RemoteExecError, ResourceManagerError
from ..interfaces import JobState, JobStatus, SubmitRequest
from .resources import PartitionSpec
from .runner import JOB_SCRIPT, OUTPUTS, TASK

SSH_TIMEOUT_SECONDS = 300.0


def _partition_specs(summary: Mapping[str, Mapping[str, Any]],
                     configured: Mapping[str, Any]) -> dict[str, PartitionSpec]:
    """Inventory summary (scheduler.partition_summary) completed by configured values."""
    from ..units import parse_bytes, parse_duration

    out: dict[str, PartitionSpec] = {}
    for name, row in summary.items():
        out[name] = PartitionSpec(name=name, cpus=row.get("cpus"),
                                  memory_mb=row.get("memory_mb"), nodes=row.get("up"),
                                  max_time=row.get("max_time"))
    for name, conf in configured.items():
        values = conf if isinstance(conf, Mapping) else conf.model_dump()
        spec = out.setdefault(name, PartitionSpec(name=name))
        if values.get("cpus") is not None:
            spec.cpus = int(values["cpus"])
        if values.get("memory") is not None:
            spec.memory_mb = parse_bytes(str(values["memory"])) // (1024 * 1024)
        if values.get("max_time") is not None:
            spec.max_time = parse_duration(str(values["max_time"]))
        if values.get("nodes") is not None:
            spec.nodes = int(values["nodes"])
    return out


class System(abc.ABC):
    """A place to run function jobs."""

    def __init__(self, name: str, config: Any = None) -> None:
        self.name = name
        self.config = config
        self.setup: list[str] = list(getattr(config, "setup", None) or [])
        self.header: list[str] = list(getattr(config, "header", None) or [])
        self.env: dict[str, str] = dict(getattr(config, "env", None) or {})
        self.fault_tolerant = bool(getattr(config, "fault_tolerant", False))

    #: the Python that runs the function on the system
    python: str = "python3"

    @abc.abstractmethod
    def partitions(self) -> dict[str, PartitionSpec]:
        """Partitions to place jobs on."""

    @abc.abstractmethod
    def stage_in(self, stage_dir: str, job_id: str) -> str:
        """Make the staged files available on the system; return the run directory there."""

    @abc.abstractmethod
    def submit(self, request: SubmitRequest) -> str:
        """Submit the job; return the batch id."""

    @abc.abstractmethod
    def status(self, remote_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Batch status of many jobs, with one query."""

    @abc.abstractmethod
    def cancel(self, remote_id: str) -> None: ...

    @abc.abstractmethod
    def stage_out(self, stage_dir: str, run_dir: str) -> None:
        """Bring the job's output files back into the staging directory."""

    @abc.abstractmethod
    def clean(self, run_dir: str) -> None:
        """Remove the run directory on the system (a no-op when it is the staging dir)."""

    def job_script(self) -> str:
        """The job's shell script: setup lines, environment, then the runner (it changes to
        its own directory, so the same file works wherever it is staged)."""
        lines = ["#!/bin/bash", f"# function job (scr funcjobs) on system '{self.name}'",
                 'cd -- "$(dirname -- "$0")" || exit 1', *self.setup]
        for key, value in self.env.items():
            lines.append(f"export {key}={shlex.quote(str(value))}")
        lines.append(f"exec {shlex.quote(self.python)} -m scr_core.funcjobs.runner .")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- via an RM here


class RMSystem(System):
    """Jobs of a resource manager plugin on this host's file system."""

    def __init__(self, name: str, rm: Any, config: Any = None) -> None:
        super().__init__(name, config)
        self.rm = rm
        self.python = getattr(config, "python", None) or sys.executable

    @classmethod
    def from_scheduler(cls, name: str, scheduler: str, config: Any = None,
                       environ: Mapping[str, str] | None = None) -> RMSystem:
        from ..engine.jobenv import JobEnv

        return cls(name, JobEnv(environ=environ, resource_manager=scheduler)
                   .resource_manager, config)

    def partitions(self) -> dict[str, PartitionSpec]:
        from ..batch import scheduler
        from ..errors import NotSupportedError

        try:
            summary = scheduler.partition_summary(scheduler.inventory(self.rm))
        except NotSupportedError:
            summary = {}
        if self.rm.name == "local":
            # the local cluster knows its partitions' time limits; inventories do not say
            from ..local import batch as local_batch

            for pname, part in local_batch.partitions(self.rm.context.settings,
                                                      self.rm.environ).items():
                if pname in summary:
                    summary[pname]["max_time"] = part["max_time"]
        specs = _partition_specs(summary, getattr(self.config, "partitions", None) or {})
        return specs or {"default": PartitionSpec(name="default")}

    def stage_in(self, stage_dir: str, job_id: str) -> str:
        return stage_dir

    def submit(self, request: SubmitRequest) -> str:
        from ..batch import scheduler

        return scheduler.submit(self.rm, request).job_id

    def status(self, remote_ids: Sequence[str]) -> dict[str, JobStatus]:
        from ..batch import scheduler

        return scheduler.status(self.rm, remote_ids)

    def cancel(self, remote_id: str) -> None:
        from ..batch import scheduler

        scheduler.cancel(self.rm, remote_id)

    def stage_out(self, stage_dir: str, run_dir: str) -> None:
        return None  # the run directory is the staging directory

    def clean(self, run_dir: str) -> None:
        return None


# --------------------------------------------------------------------------- over ssh


def _scp_options(ssh_argv: Sequence[str]) -> list[str]:
    """scp's spelling of the options of an ssh command line (``-p`` is ``-P`` there)."""
    with_value = {"-i", "-o", "-F", "-J", "-c", "-l"}
    flags = {"-4", "-6", "-C", "-q", "-v"}
    out: list[str] = []
    args = list(ssh_argv[1:])
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-p" and i + 1 < len(args):
            out += ["-P", args[i + 1]]
            i += 2
        elif a in with_value and i + 1 < len(args):
            out += [a, args[i + 1]]
            i += 2
        elif a in flags:
            out.append(a)
            i += 1
        elif a.startswith("-o") and len(a) > 2:
            out.append(a)
            i += 1
        else:
            raise ConfigError(f"remote_shell option {a!r} has no scp equivalent; use "
                              "transfer: rsync")
    return out


class SshSystem(System):
    """A host reached with ssh; its own scr_core runs the batch side."""

    def __init__(self, name: str, config: Any) -> None:
        super().__init__(name, config)
        host = getattr(config, "host", None)
        if not host or host == "local":
            raise ConfigError(f"system '{name}': an ssh system needs a host")
        user = getattr(config, "user", None)
        self.target = f"{user}@{host}" if user and "@" not in host else host
        self.shell = list(getattr(config, "remote_shell", None) or ["ssh"])
        self.scheduler = getattr(config, "scheduler", None) or "local"
        self.rundir = getattr(config, "rundir", None) or "scr-jobs"
        self.python = getattr(config, "python", None) or "python3"
        transfer = getattr(config, "transfer", None) or "auto"
        if transfer == "auto":
            transfer = "rsync" if shutil.which("rsync") else "scp"
        self.transfer = transfer

    # -- plumbing -----------------------------------------------------------------------------
    def _ssh_argv(self, words: Sequence[str]) -> list[str]:
        argv = list(self.shell)
        if os.path.basename(argv[0]) == "ssh":
            argv += ["-o", "BatchMode=yes"]  # never wait for a password prompt
        env_words = [f"{k}={v}" for k, v in self.env.items()]
        remote = (["env", *env_words] if env_words else []) + list(words)
        return [*argv, self.target, shlex.join(remote)]

    def _run(self, argv: Sequence[str], what: str, input_text: str | None = None,
             timeout: float = SSH_TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(list(argv), input=input_text, capture_output=True,
                                  text=True, timeout=timeout,
                                  stdin=None if input_text is not None else subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RemoteExecError(f"{self.name}: {what}: {argv[0]}: {exc}") from exc
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            cls = ResourceManagerError if proc.returncode in (5, 7) else RemoteExecError
            raise cls(f"{self.name}: {what} failed (exit {proc.returncode}): "
                      f"{err[-1] if err else 'no message'}")
        return proc

    def _helper(self, action: str, *args: str, input_text: str | None = None) -> Any:
        words = [self.python, "-m", "scr_core.funcjobs.remote", action, *args]
        proc = self._run(self._ssh_argv(words), f"remote {action}", input_text=input_text)
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise RemoteExecError(f"{self.name}: remote {action}: not JSON: "
                                  f"{proc.stdout[-300:]!r}") from exc

    def _remote_path(self, path: str) -> str:
        return f"{self.target}:{path}"

    # -- the System API -----------------------------------------------------------------------
    def partitions(self) -> dict[str, PartitionSpec]:
        configured = getattr(self.config, "partitions", None) or {}
        try:
            summary = self._helper("partitions", "--rm", self.scheduler)
        except ResourceManagerError:
            summary = {}  # no inventory there (NotSupported): the configuration must say
        specs = _partition_specs(summary, configured)
        return specs or {"default": PartitionSpec(name="default")}

    def stage_in(self, stage_dir: str, job_id: str) -> str:
        run_dir = self._helper("mkdir", "--dir", f"{self.rundir.rstrip('/')}/{job_id}")["path"]
        if self.transfer == "rsync":
            self._run(["rsync", "-a", "-e", shlex.join(self.shell), stage_dir.rstrip("/") + "/",
                       self._remote_path(run_dir + "/")], "stage in (rsync)")
        else:
            entries = sorted(os.listdir(stage_dir))
            self._run(["scp", "-q", "-r", "-o", "BatchMode=yes", *_scp_options(self.shell),
                       *[os.path.join(stage_dir, e) for e in entries],
                       self._remote_path(run_dir + "/")], "stage in (scp)")
        return run_dir

    def submit(self, request: SubmitRequest) -> str:
        record = self._helper("submit", "--rm", self.scheduler,
                              input_text=json.dumps(dataclasses.asdict(request)))
        return str(record["job_id"])

    def status(self, remote_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not remote_ids:
            return {}
        data = self._helper("status", "--rm", self.scheduler, *remote_ids)
        out = {}
        for jid in remote_ids:
            row = data.get(jid)
            out[jid] = JobStatus(**row) if row else JobStatus(
                jid, JobState.UNKNOWN, message=f"{self.name} returned no status")
        return out

    def cancel(self, remote_id: str) -> None:
        self._helper("cancel", "--rm", self.scheduler, remote_id)

    def stage_out(self, stage_dir: str, run_dir: str) -> None:
        if self.transfer == "rsync":
            # only what the job wrote: the inputs are here already
            self._run(["rsync", "-a", "-e", shlex.join(self.shell), f"--exclude={TASK}",
                       self._remote_path(run_dir.rstrip("/") + "/"),
                       stage_dir.rstrip("/") + "/"], "stage out (rsync)")
            return
        with tempfile.TemporaryDirectory(prefix="scr-stage-out.") as tmp:
            dest = os.path.join(tmp, "run")
            self._run(["scp", "-q", "-r", "-o", "BatchMode=yes", *_scp_options(self.shell),
                       self._remote_path(run_dir), dest], "stage out (scp)")
            for entry in os.listdir(dest):
                if entry == TASK:
                    continue
                src = os.path.join(dest, entry)
                if os.path.isdir(src):
                    shutil.copytree(src, os.path.join(stage_dir, entry), dirs_exist_ok=True)
                else:
                    shutil.copy2(src, os.path.join(stage_dir, entry))

    def clean(self, run_dir: str) -> None:
        self._helper("clean", "--dir", run_dir)


def make_system(name: str, config: Any = None, environ: Mapping[str, str] | None = None
                ) -> System:
    """The system ``name`` as configured (see :mod:`scr_core.funcjobs.config`)."""
    host = getattr(config, "host", "local") if config is not None else "local"
    scheduler = getattr(config, "scheduler", None) or "local"
    if host == "local":
        return RMSystem.from_scheduler(name, scheduler, config, environ)
    return SshSystem(name, config)


__all__ = ["JOB_SCRIPT", "OUTPUTS", "RMSystem", "SshSystem", "System", "make_system"]
