"""Batch jobs of the ``local`` backend, for real: a job is a detached process group with its
own virtual allocation, kept in a spool directory.

The spool (``$SCR_LOCAL_SPOOL``, setting ``local.spool_dir``, default
``<local.base_dir or $TMPDIR/scr-local-UID>/spool``) holds::

    seq                     the last job id handed out (ids are 1, 2, 3...)
    nodes/<node>            a node of the local cluster that is down; its text is the reason
    jobs/<id>/job.json      what was asked: name, partition, node count, time limit, ...
    jobs/<id>/script.sh     the job script (#LOCAL header lines, then the command)
    jobs/<id>/state.json    where it is: pending, running, completed/failed (exit code),
                            cancelled, timeout, node_fail; pids, nodes, times
    jobs/<id>/lock          flock'ed around every state change, so the supervisor and a
                            cancel cannot both decide the final state
    jobs/<id>/release       present once a held job is released
    jobs/<id>/output        the job's stdout+stderr unless --output/--error say otherwise

Every job has a *supervisor*: a process started by double fork into its own session (it
survives the submitting process and is never its zombie). It waits for the begin time, the
release of a hold and enough up nodes (the job is ``pending`` meanwhile), makes the
allocation (``LocalAllocation.create`` inside the job directory, job id = the batch id),
runs the script with ``SCR_LOCAL_DIR`` set, enforces the time limit (SIGTERM, then SIGKILL
after a grace period: ``timeout``), and watches the allocation: a crashed node ends a job
submitted without fault tolerance at once (``node_fail``); a fault-tolerant job (the default,
scr's ``--no-kill``) keeps running, and is ``node_fail`` only if it then fails.

A job whose record says pending/running while its supervisor is gone and no exit was
recorded is resolved as ``failed`` ("vanished"), never silently completed.

The local cluster is oversubscribed: jobs share nodes (``allocated`` in the inventory
says a running job uses a node, but does not stop another from using it too). Partitions
are the ``local.partitions`` setting (default: one partition ``local`` of ``local.nodes``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Iterator, Mapping, Sequence

from ..errors import ConfigError, ResourceManagerError, UsageError
from ..files import write_text_atomic
from ..hostlist import fold
from ..interfaces import JobRecord, JobState, JobStatus, NodeInfo, SubmitRequest
from .allocation import ENV_DIR, LocalAllocation, default_base

ENV_SPOOL = "SCR_LOCAL_SPOOL"
POLL_SECONDS = 0.1
KILL_GRACE_SECONDS = 3.0
DEFAULT_PARTITION = "local"
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RAW = {JobState.PENDING: "PENDING", JobState.RUNNING: "RUNNING",
        JobState.COMPLETED: "COMPLETED", JobState.FAILED: "FAILED",
        JobState.CANCELLED: "CANCELLED", JobState.TIMEOUT: "TIMEOUT",
        JobState.NODE_FAIL: "NODE_FAIL"}


# --------------------------------------------------------------------------- configuration


def spool_dir(environ: Mapping[str, str], settings: Any = None) -> str:
    path = environ.get(ENV_SPOOL) or getattr(settings, "spool_dir", None)
    if not path:
        base = getattr(settings, "base_dir", None) or default_base()
        path = os.path.join(base, "spool")
    return os.path.abspath(os.path.expanduser(path))


def _total_memory_mb() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def partitions(settings: Any = None, environ: Mapping[str, str] | None = None
               ) -> dict[str, dict[str, Any]]:
    """The virtual partitions: name -> {nodes: [names], cpus, memory_mb, max_time, features}.

    From ``local.partitions``; without it one partition ``local`` of ``local.nodes``
    (``SCR_LOCAL_NODES``). CPU count and memory default to this machine's.
    """
    from ..units import parse_bytes, parse_duration

    env = os.environ if environ is None else environ
    raw = getattr(settings, "partitions", None)
    if not raw:
        spec = (env.get("SCR_LOCAL_NODES") or getattr(settings, "nodes", None) or "4")
        raw = {DEFAULT_PARTITION: {"nodes": spec}}
    prefix = getattr(settings, "node_prefix", None) or "vnode"
    out: dict[str, dict[str, Any]] = {}
    for name, spec in raw.items():
        where = f"local.partitions.{name}"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a mapping (nodes, cpus, memory, max_time)")
        unknown = sorted(set(spec) - {"nodes", "cpus", "memory", "memory_mb", "max_time",
                                      "features"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: nodes, "
                              "cpus, memory, max_time, features")
        try:
            nodes_spec = spec.get("nodes", "4")
            if isinstance(nodes_spec, (list, tuple)):
                nodes = [str(n) for n in nodes_spec]
            else:
                nodes = LocalAllocation.node_names(str(nodes_spec), prefix=prefix)
            cpus = int(spec.get("cpus") or os.cpu_count() or 1)
            if "memory_mb" in spec:
                memory = int(spec["memory_mb"])
            elif spec.get("memory") is not None:
                memory = parse_bytes(str(spec["memory"])) // (1024 * 1024)
            else:
                memory = _total_memory_mb()
            max_time = spec.get("max_time")
            max_time = None if max_time in (None, "", "unlimited") else \
                parse_duration(str(max_time))
            features = [str(f) for f in spec.get("features") or []]
        except (UsageError, ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if not nodes or cpus < 1:
            raise ConfigError(f"{where}: needs at least one node and one cpu")
        out[str(name)] = {"nodes": nodes, "cpus": cpus, "memory_mb": memory,
                          "max_time": max_time, "features": features}
    return out


# --------------------------------------------------------------------------- small helpers


def _read_json(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def _write_json(path: str, data: Mapping[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state letter, process group, session, start time in ticks) from /proc, or None."""
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            text = fh.read()
        rest = text.rsplit(")", 1)[1].split()
        return rest[0], int(rest[2]), int(rest[3]), int(rest[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None, start: int | None = None) -> bool:
    """Is ``pid`` a live (not zombie) process, and the same one (start time) we recorded?"""
    if not pid:
        return False
    st = _proc_stat(pid)
    if st is None:
        if os.path.isdir("/proc/self"):
            return False
        try:  # no /proc: the best a portable check can do
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    if st[0] in ("Z", "X"):
        return False
    return start is None or st[3] == start


def _members(pgid: int | None = None, sid: int | None = None) -> list[int]:
    """Live processes of a process group or a session (a scan of /proc)."""
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        st = _proc_stat(int(entry))
        if st is None or st[0] in ("Z", "X"):
            continue
        if (pgid is not None and st[1] == pgid) or (sid is not None and st[2] == sid):
            out.append(int(entry))
    return out


def _signal_group(pgid: int | None, sig: int) -> None:
    if not pgid:
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_alloc_tasks(alloc_path: str | None, sig: int) -> None:
    if not alloc_path:
        return
    try:
        alloc = LocalAllocation(alloc_path)
    except Exception:  # removed already: nothing of it is left to kill
        return
    for node in alloc.nodes:
        alloc.kill_node_tasks(node, sig)


def _shell_code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc


# --------------------------------------------------------------------------- the spool


class Spool:
    """The spool directory of the local cluster."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def ensure(self) -> None:
        for sub in ("jobs", "nodes"):
            os.makedirs(os.path.join(self.path, sub), mode=0o700, exist_ok=True)

    def job_dir(self, job_id: str) -> str:
        jid = str(job_id).strip()
        if not jid.isdigit():
            raise ResourceManagerError(f"'{jid}' is not a local batch job id (a number)")
        return os.path.join(self.path, "jobs", jid)

    def next_id(self) -> str:
        self.ensure()
        seq = os.path.join(self.path, "seq")
        with _locked(seq + ".lock"):
            try:
                with open(seq) as fh:
                    last = int(fh.read().strip() or 0)
            except (FileNotFoundError, ValueError):
                last = 0
            # never reuse the id of a job directory still present (a lost seq file)
            jobs = [int(j) for j in os.listdir(os.path.join(self.path, "jobs")) if j.isdigit()]
            new = max([last, *jobs]) + 1
            write_text_atomic(seq, str(new))
        return str(new)

    def job_ids(self) -> list[str]:
        try:
            return sorted((j for j in os.listdir(os.path.join(self.path, "jobs"))
                           if j.isdigit()), key=int)
        except FileNotFoundError:
            return []

    # -- node state of the cluster (not of an allocation) ----------------------------------
    def down_nodes(self) -> dict[str, str]:
        out = {}
        try:
            names = os.listdir(os.path.join(self.path, "nodes"))
        except FileNotFoundError:
            return out
        for name in names:
            if name.startswith("."):
                continue
            try:
                with open(os.path.join(self.path, "nodes", name)) as fh:
                    out[name] = fh.read().strip() or "down"
            except OSError:
                continue
        return out

    def set_node_down(self, node: str, reason: str = "Marked down") -> None:
        from ..hostlist import validate_node_name

        self.ensure()
        write_text_atomic(os.path.join(self.path, "nodes", validate_node_name(node)),
                      reason.strip() or "down")

    def set_node_up(self, node: str) -> None:
        try:
            os.unlink(os.path.join(self.path, "nodes", node))
        except FileNotFoundError:
            pass

    # -- job state -----------------------------------------------------------------------------
    def read_state(self, job_id: str) -> dict:
        return _read_json(os.path.join(self.job_dir(job_id), "state.json"))

    def read_job(self, job_id: str) -> dict:
        return _read_json(os.path.join(self.job_dir(job_id), "job.json"))


def update_state(jobdir: str, **changes: Any) -> dict:
    """Apply ``changes`` to a job's state under its lock; a final state is never replaced
    (the first of the supervisor and a cancel to decide wins). Returns the new state."""
    with _locked(os.path.join(jobdir, "lock")):
        path = os.path.join(jobdir, "state.json")
        state = _read_json(path)
        if state.get("state") in JobState.FINAL and "state" in changes:
            changes = {k: v for k, v in changes.items()
                       if k not in ("state", "message", "raw_state")}
        state.update(changes)
        if "state" in changes and "raw_state" not in changes:
            state["raw_state"] = _RAW.get(changes["state"], changes["state"].upper())
        state["updated"] = time.time()
        _write_json(path, state)
        return state


# --------------------------------------------------------------------------- job scripts


def parse_directives(header_lines: Sequence[str]) -> dict[str, Any]:
    """``--begin=TIME`` and ``--hold`` from the user's header lines (with or without a
    ``#LOCAL`` prefix); comment lines of other RMs (``#SBATCH ...``) are kept but ignored."""
    from ..timeparse import parse_time

    out: dict[str, Any] = {"begin": None, "hold": False, "comments": []}
    for line in header_lines:
        text = line.strip()
        if "\n" in line:
            raise UsageError(f"local submit: a newline in a header line: {line!r}")
        if text.startswith("#LOCAL"):
            text = text[len("#LOCAL"):].strip()
        elif text.startswith("#") or not text:
            out["comments"].append(text)
            continue
        words = shlex.split(text)
        i = 0
        while i < len(words):
            word = words[i]
            if word == "--hold":
                out["hold"] = True
            elif word.startswith("--begin"):
                value = word.split("=", 1)[1] if "=" in word else \
                    (words[i + 1] if i + 1 < len(words) else "")
                if "=" not in word:
                    i += 1
                out["begin"] = float(parse_time(value))
            else:
                raise UsageError(f"local submit: unknown header directive '{word}' "
                                 "(the local RM knows --begin=TIME and --hold)")
            i += 1
    return out


def render_script(request: SubmitRequest, job_id: str, partition: str, nnodes: int,
                  time_limit: float | None) -> str:
    """The job script: ``#LOCAL`` directives (what the local RM was asked; documentation
    for a reader, the spool's job.json is what it acts on), exports, then the command."""
    opts = [f"--job-name={request.job_name}", f"--partition={partition}",
            f"--nodes={nnodes}"]
    if request.tasks is not None:
        opts.append(f"--ntasks={int(request.tasks)}")
    if time_limit:
        opts.append(f"--time={int(time_limit)}")
    for flag, value in (("--account", request.account), ("--output", request.output),
                        ("--error", request.error), ("--chdir", request.workdir)):
        if value:
            opts.append(f"{flag}={value}")
    if request.fault_tolerant:
        opts.append("--no-kill")  # a crashed node does not end the job (scr relaunches)
    lines = ["#!/bin/bash", f"# written by scr (local backend), job {job_id}"]
    for opt in opts:
        if "\n" in opt:
            raise UsageError(f"local submit: a newline in a job option: {opt!r}")
        lines.append(f"#LOCAL {opt}")
    for extra in request.header_lines:
        if "\n" in extra:
            raise UsageError(f"local submit: a newline in a header line: {extra!r}")
        lines.append(extra if extra.lstrip().startswith("#") else f"#LOCAL {extra}")
    for key, value in request.environ.items():
        if not _ENV_NAME_RE.match(key):
            raise UsageError(f"local submit: not a variable name: {key!r}")
        lines.append(f"export {key}={shlex.quote(str(value))}")
    lines.append("exec " + " ".join(shlex.quote(str(w)) for w in request.command))
    return "\n".join(lines) + "\n"


def _output_path(template: str | None, jobdir: str, workdir: str, job_id: str,
                 name: str) -> str | None:
    if not template:
        return None
    path = template.replace("%j", job_id).replace("%x", name)
    return path if os.path.isabs(path) else os.path.join(workdir, path)


# --------------------------------------------------------------------------- the RM methods


def submit(environ: Mapping[str, str], settings: Any, request: SubmitRequest) -> JobRecord:
    """Queue a job on the local cluster and start its supervisor; returns at once."""
    if not request.command:
        raise UsageError("local submit: the job has no command")
    spool = Spool(spool_dir(environ, settings))
    parts = partitions(settings, environ)
    pname = request.partition or next(iter(parts))
    if pname not in parts:
        raise ResourceManagerError(f"local submit: no partition '{pname}' (partitions: "
                                   f"{', '.join(parts)})")
    part = parts[pname]
    directives = parse_directives(request.header_lines)
    if request.nodes is not None:
        nnodes = int(request.nodes)
    elif request.tasks is not None:
        nnodes = max(1, -(-int(request.tasks) // part["cpus"]))
    else:
        nnodes = 1
    if nnodes < 1:
        raise UsageError(f"local submit: a job needs at least one node, not {nnodes}")
    if nnodes > len(part["nodes"]):
        raise ResourceManagerError(
            f"local submit: {nnodes} node(s) requested but partition '{pname}' has "
            f"{len(part['nodes'])} ({fold(part['nodes'])})")
    time_limit = request.time_limit
    if part["max_time"] is not None:
        if time_limit is not None and time_limit > part["max_time"]:
            raise ResourceManagerError(
                f"local submit: time limit {int(time_limit)}s exceeds the "
                f"{int(part['max_time'])}s maximum of partition '{pname}'")
        if time_limit is None:
            time_limit = part["max_time"]
    workdir = os.path.abspath(request.workdir or os.getcwd())
    job_id = spool.next_id()
    jobdir = spool.job_dir(job_id)
    os.makedirs(jobdir, mode=0o700)
    script = os.path.join(jobdir, "script.sh")
    now = time.time()
    try:
        write_text_atomic(script, render_script(request, job_id, pname, nnodes, time_limit))
        os.chmod(script, 0o755)
        output = _output_path(request.output, jobdir, workdir, job_id, request.job_name) \
            or os.path.join(jobdir, "output")
        error = _output_path(request.error, jobdir, workdir, job_id, request.job_name)
        meta = {"job_id": job_id, "name": request.job_name, "partition": pname,
                "nnodes": nnodes, "partition_nodes": part["nodes"], "tasks": request.tasks,
                "time_limit": time_limit,
                "account": request.account, "fault_tolerant": bool(request.fault_tolerant),
                "begin": directives["begin"], "hold": directives["hold"],
                "workdir": workdir, "output": output, "error": error, "script": script,
                "command": list(request.command), "submit_time": now}
        _write_json(os.path.join(jobdir, "job.json"), meta)
        _write_json(os.path.join(jobdir, "state.json"),
                    {"state": JobState.PENDING, "raw_state": "PENDING",
                     "message": "submitted", "submit_time": now, "updated": now})
    except OSError as exc:
        raise ResourceManagerError(f"local submit: cannot write job {job_id} in {jobdir}: "
                                   f"{exc}") from exc
    env = {k: v for k, v in environ.items() if k != ENV_DIR}
    env[ENV_SPOOL] = spool.path
    with open(os.path.join(jobdir, "supervisor.log"), "ab") as log:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scr_core.local.batch", "supervise", jobdir],
                env=env, cwd=workdir if os.path.isdir(workdir) else jobdir,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, close_fds=True)
            rc = proc.wait(timeout=60)  # the first process only forks and exits
        except (OSError, subprocess.TimeoutExpired) as exc:
            update_state(jobdir, state=JobState.FAILED, message=f"could not start: {exc}")
            raise ResourceManagerError(f"local submit: cannot start job {job_id}: {exc}") \
                from exc
    if rc != 0:
        update_state(jobdir, state=JobState.FAILED, message="the supervisor did not start")
        raise ResourceManagerError(f"local submit: the supervisor of job {job_id} failed to "
                                   f"start (see {jobdir}/supervisor.log)")
    return JobRecord(job_id=job_id, system="local", submit_time=now, script=script,
                     name=request.job_name)


def _resolve(spool: Spool, job_id: str) -> JobStatus:
    try:
        jobdir = spool.job_dir(job_id)
    except ResourceManagerError as exc:
        return JobStatus(job_id, JobState.UNKNOWN, message=str(exc))
    try:
        state = spool.read_state(job_id)
    except FileNotFoundError:
        return JobStatus(job_id, JobState.UNKNOWN,
                         message=f"no local job {job_id} in {spool.path}")
    except (OSError, ValueError) as exc:
        return JobStatus(job_id, JobState.UNKNOWN, message=f"unreadable job record: {exc}")
    st = state.get("state", JobState.UNKNOWN)
    if st not in JobState.FINAL and not _alive(state.get("supervisor_pid"),
                                              state.get("supervisor_start")):
        if "supervisor_pid" not in state and time.time() - state.get("submit_time", 0) < 60:
            pass  # being submitted right now: the supervisor is not recorded yet
        elif state.get("job_pgid") and _members(pgid=state["job_pgid"]):
            return JobStatus(job_id, JobState.RUNNING, raw_state="RUNNING",
                             message="supervisor gone; the job's processes still run")
        else:
            why = (f"job vanished: its supervisor (pid {state.get('supervisor_pid')}) is "
                   "gone and no exit was recorded")
            state = update_state(jobdir, state=JobState.FAILED, raw_state="VANISHED",
                                 message=why, end_time=time.time())
            _kill_alloc_tasks(state.get("alloc"), signal.SIGKILL)
            st = state["state"]
    return JobStatus(job_id, st, message=state.get("message", ""),
                     exit_code=state.get("exit_code"), raw_state=state.get("raw_state", ""))


def status(environ: Mapping[str, str], settings: Any, job_ids: Sequence[str]
           ) -> dict[str, JobStatus]:
    """One pass over the spool for all ids."""
    spool = Spool(spool_dir(environ, settings))
    return {str(j): _resolve(spool, str(j)) for j in job_ids}


def cancel(environ: Mapping[str, str], settings: Any, job_id: str) -> None:
    """Cancel a job: a pending job never starts; a running job's process group (and every
    task of its allocation) gets SIGTERM, then SIGKILL after a grace period. A finished
    job is left as it is (its end is what cancel wants)."""
    spool = Spool(spool_dir(environ, settings))
    jobdir = spool.job_dir(job_id)
    if not os.path.isdir(jobdir):
        raise ResourceManagerError(f"local cancel: no job {job_id} in {spool.path}")
    with _locked(os.path.join(jobdir, "lock")):
        before = _read_json(os.path.join(jobdir, "state.json"))
    if before.get("state") in JobState.FINAL:
        return
    state = update_state(jobdir, state=JobState.CANCELLED, message="cancelled by user",
                         end_time=time.time())
    _signal_group(state.get("job_pgid"), signal.SIGTERM)
    _kill_alloc_tasks(state.get("alloc"), signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_SECONDS + 2.0
    sup, start = state.get("supervisor_pid"), state.get("supervisor_start")
    while time.monotonic() < deadline and _alive(sup, start):
        time.sleep(POLL_SECONDS)
    # the supervisor normally cleans up; if it is stuck or gone, do it here
    if _alive(sup, start):
        try:
            os.kill(sup, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if state.get("job_pgid"):
        _signal_group(state["job_pgid"], signal.SIGKILL)
    if state.get("session"):
        for pid in _members(sid=state["session"]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    _kill_alloc_tasks(state.get("alloc"), signal.SIGKILL)


def release(environ: Mapping[str, str], settings: Any, job_id: str) -> None:
    """Release a held job (``--hold``); it starts once its begin time has come."""
    jobdir = Spool(spool_dir(environ, settings)).job_dir(job_id)
    if not os.path.isdir(jobdir):
        raise ResourceManagerError(f"local release: no job {job_id}")
    write_text_atomic(os.path.join(jobdir, "release"), str(time.time()))


def job_info(environ: Mapping[str, str], settings: Any, job_id: str) -> dict[str, Any]:
    """job.json and state.json of a job merged (allocation path, nodes, output file...)."""
    spool = Spool(spool_dir(environ, settings))
    try:
        info = spool.read_job(job_id)
        info.update(spool.read_state(job_id))
    except FileNotFoundError as exc:
        raise ResourceManagerError(f"no local job {job_id}") from exc
    info["job_dir"] = spool.job_dir(job_id)
    return info


def _running_nodes(spool: Spool) -> set[str]:
    used: set[str] = set()
    for jid in spool.job_ids():
        try:
            state = spool.read_state(jid)
        except (OSError, ValueError):
            continue
        if state.get("state") == JobState.RUNNING:
            used.update(state.get("nodes") or ())
    return used


def node_inventory(environ: Mapping[str, str], settings: Any, partition: str | None = None
                   ) -> list[NodeInfo]:
    """Every node of the local cluster (of ``partition``), in partition order."""
    parts = partitions(settings, environ)
    if partition is not None and partition not in parts:
        raise ResourceManagerError(f"no local partition '{partition}' (partitions: "
                                   f"{', '.join(parts)})")
    spool = Spool(spool_dir(environ, settings))
    down = spool.down_nodes()
    used = _running_nodes(spool)
    seen: dict[str, NodeInfo] = {}
    for pname, part in parts.items():
        for node in part["nodes"]:
            info = seen.get(node)
            if info is None:
                up = node not in down
                info = NodeInfo(
                    name=node, up=up, allocated=node in used,
                    available=up and node not in used,
                    state="down" if not up else ("allocated" if node in used else "idle"),
                    cpus=part["cpus"], memory_mb=part["memory_mb"],
                    features=list(part["features"]), reason=down.get(node, ""))
                seen[node] = info
            info.partitions.append(pname)
    nodes = list(seen.values())
    if partition is not None:
        nodes = [n for n in nodes if partition in n.partitions]
    return nodes


# --------------------------------------------------------------------------- the supervisor


def _pending_reason(meta: dict, jobdir: str, spool: Spool, nodes: list[str]) -> str | None:
    """Why the job cannot start yet, or None when it can."""
    if meta.get("hold") and not os.path.exists(os.path.join(jobdir, "release")):
        return "held (release it with the local RM's release)"
    begin = meta.get("begin")
    if begin and time.time() < begin:
        return "begin time " + time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(begin))
    down = spool.down_nodes()
    up = [n for n in nodes if n not in down]
    if len(up) < meta["nnodes"]:
        return f"waiting for resources: {len(up)} of {meta['nnodes']} node(s) up"
    return None


def _terminate(pgid: int, alloc: LocalAllocation, session: int) -> None:
    """SIGTERM the job and its tasks, SIGKILL what is left after the grace period."""
    _signal_group(pgid, signal.SIGTERM)
    for node in alloc.nodes:
        alloc.kill_node_tasks(node, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    while time.monotonic() < deadline and _members(pgid=pgid):
        time.sleep(POLL_SECONDS)
    _signal_group(pgid, signal.SIGKILL)
    for node in alloc.nodes:
        alloc.kill_node_tasks(node, signal.SIGKILL)
    me = os.getpid()
    for pid in _members(sid=session):
        if pid != me:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def supervise(jobdir: str) -> int:
    """Run one job to its end (the body of the detached supervisor process)."""
    meta = _read_json(os.path.join(jobdir, "job.json"))
    spool = Spool(os.path.dirname(os.path.dirname(jobdir)))
    job_id = meta["job_id"]
    environ = dict(os.environ)
    part_nodes = list(meta["partition_nodes"])  # as the submitter's settings defined them

    # -- pending ------------------------------------------------------------------------------
    last = None
    while True:
        state = spool.read_state(job_id)
        if state.get("state") in JobState.FINAL:
            return 0  # cancelled before it started
        reason = _pending_reason(meta, jobdir, spool, part_nodes)
        if reason is None:
            break
        if reason != last:
            update_state(jobdir, message=reason)
            last = reason
        time.sleep(POLL_SECONDS * 2)

    down = spool.down_nodes()
    nodes = [n for n in part_nodes if n not in down][: meta["nnodes"]]
    alloc = LocalAllocation.create(nodes, time_limit=meta.get("time_limit"), base=jobdir,
                                   job_id=job_id)
    env = dict(environ)
    env.update({ENV_DIR: alloc.path, "SCR_BATCH_JOB_ID": job_id,
                "SCR_BATCH_JOB_NAME": meta["name"]})
    out_path = meta["output"]
    err_path = meta.get("error")
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    out = open(out_path, "ab")
    err = open(err_path, "ab") if err_path else subprocess.STDOUT
    shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
    session = os.getsid(0)
    try:
        proc = subprocess.Popen([shell, meta["script"]], cwd=meta["workdir"], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                preexec_fn=os.setpgrp)
    except OSError as exc:
        update_state(jobdir, state=JobState.FAILED, message=f"cannot run the script: {exc}",
                     end_time=time.time())
        shutil.rmtree(alloc.path, ignore_errors=True)
        return 1
    finally:
        out.close()
        if err_path:
            err.close()  # type: ignore[union-attr]
    start = time.time()
    state = update_state(jobdir, state=JobState.RUNNING, job_pgid=proc.pid,
                         alloc=alloc.path, nodes=nodes, start_time=start, session=session,
                         message=f"running on {fold(nodes)}")
    if state["state"] in JobState.FINAL:  # cancelled while we were starting it
        _terminate(proc.pid, alloc, session)

    # -- running ------------------------------------------------------------------------------
    limit = meta.get("time_limit")
    timed_out = node_killed = False
    crashed: list[str] = []
    while True:
        rc = proc.poll()
        if rc is not None:
            break
        crashed = [n for n in nodes if alloc.is_crashed(n)]
        if limit and time.time() - start >= limit and not timed_out:
            timed_out = True
            _terminate(proc.pid, alloc, session)
        elif crashed and not meta.get("fault_tolerant") and not node_killed:
            node_killed = True
            _terminate(proc.pid, alloc, session)
        elif spool.read_state(job_id).get("state") in JobState.FINAL:
            _terminate(proc.pid, alloc, session)  # cancelled
        time.sleep(POLL_SECONDS)
    # nothing outlives the job: not its tasks, not what it left in the background
    for node in nodes:
        alloc.kill_node_tasks(node, signal.SIGKILL)
    _signal_group(proc.pid, signal.SIGKILL)
    crashed = [n for n in nodes if alloc.is_crashed(n)]
    code = _shell_code(rc)
    end = time.time()
    if timed_out:
        final, msg = JobState.TIMEOUT, f"time limit of {int(limit)}s reached"
    elif crashed and (node_killed or code != 0):
        final, msg = JobState.NODE_FAIL, f"node failure: {fold(crashed)} crashed " \
            f"(exit code {code})"
    elif code == 0:
        final, msg = JobState.COMPLETED, "exit code 0"
    else:
        final, msg = JobState.FAILED, f"exit code {code}"
    # clean up first: whoever sees the final state sees a finished job
    shutil.rmtree(alloc.path, ignore_errors=True)
    update_state(jobdir, state=final, message=msg, exit_code=code, end_time=end)
    return 0


def _daemonize_and_supervise(jobdir: str) -> int:
    """First process (already a session leader): fork the supervisor, record it, exit.

    The submitter waits only for this process; the supervisor is re-parented to init (or
    the nearest subreaper), so it survives the submitter and is never its zombie.
    """
    pid = os.fork()
    if pid > 0:
        start = None
        st = _proc_stat(pid)
        if st is not None:
            start = st[3]
        update_state(jobdir, supervisor_pid=pid, supervisor_start=start,
                     session=os.getsid(0))
        os._exit(0)
    try:
        rc = supervise(jobdir)
    except BaseException as exc:  # record why, never leave the job "running"
        import traceback

        traceback.print_exc()
        with contextlib.suppress(Exception):
            update_state(jobdir, state=JobState.FAILED, end_time=time.time(),
                         message=f"supervisor error: {type(exc).__name__}: {exc}")
        rc = 1
    os._exit(rc)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "supervise":
        print("usage: python -m scr_core.local.batch supervise JOBDIR", file=sys.stderr)
        return 2
    return _daemonize_and_supervise(os.path.abspath(args[1]))


if __name__ == "__main__":
    sys.exit(main())
