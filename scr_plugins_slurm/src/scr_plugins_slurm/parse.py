"""Pure parsers of Slurm client output (no subprocess here; tested on recorded real output).

Formats the resource manager and launcher ask for (see ``rm.py`` and ``launcher.py``)::

    scontrol show job -o ID              parse_scontrol_job / end_time_from_job
    scontrol show step -o JOBID          parse_scontrol_steps
    scontrol show res -o                 parse_scontrol_reservations
    sinfo -h -N -o '%N|%T|%E'            parse_sinfo_down   (SINFO_DOWN_FORMAT)
    sinfo -h -N -o '%N|%T|%c|%m|%R|%f|%E'   parse_sinfo_inventory (SINFO_INVENTORY_FORMAT)
    squeue -h -t all -j IDS -O ...       parse_squeue_jobs  (SQUEUE_JOBS_FORMAT)
    squeue --steps -h -o '%i|%j|%S|%N'   parse_squeue_steps (SQUEUE_STEPS_FORMAT)
    sacct -n -P -X -j IDS -o ...         parse_sacct        (SACCT_FIELDS)
    sbatch --parsable                    parse_sbatch_parsable

Free text (node reasons) is always the last ``|``-separated field, split with a maximum,
so a reason containing ``|`` survives. Timestamps are Slurm's local ISO time and are turned
into epoch seconds with :func:`time.mktime`, never with glibc's ``strftime('%s')``.
Callers must run the commands with ``SLURM_TIME_FORMAT=standard`` (``rm.py`` does).
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Callable, Iterable, Mapping, Optional

from scr_core.errors import ResourceManagerError, UsageError
from scr_core.hostlist import expand
from scr_core.interfaces import JobState, JobStatus, NodeInfo

__all__ = [
    "SACCT_FIELDS",
    "SINFO_DOWN_FORMAT",
    "SINFO_INVENTORY_FORMAT",
    "SQUEUE_JOBS_FORMAT",
    "SQUEUE_STEPS_FORMAT",
    "StepInfo",
    "aggregate_array",
    "decode_exit_code",
    "end_time_from_job",
    "node_is_down",
    "node_is_lost",
    "normalize_job_state",
    "parse_duration",
    "parse_sacct",
    "parse_sbatch_parsable",
    "parse_scontrol_job",
    "parse_scontrol_records",
    "parse_scontrol_reservations",
    "parse_scontrol_steps",
    "parse_sinfo_down",
    "parse_sinfo_inventory",
    "parse_sinfo_lost",
    "parse_slurm_time",
    "parse_squeue_jobs",
    "parse_squeue_steps",
    "split_node_state",
]

SINFO_DOWN_FORMAT = "%N|%T|%E"
SINFO_INVENTORY_FORMAT = "%N|%T|%c|%m|%R|%f|%E"
# -O with a ":|" suffix and no width: no padding, "|" after every field
SQUEUE_JOBS_FORMAT = "JobID:|,JobArrayID:|,State:|,exit_code:|,Reason:"
SQUEUE_STEPS_FORMAT = "%i|%j|%S|%N"
SACCT_FIELDS = "JobIDRaw,JobID,State,ExitCode"

# --------------------------------------------------------------------------- scontrol

# Keys Slurm 22.05 prints in `scontrol show job/step/node/res`. Inside a free-text value
# (below) only one of these starts a new field, so "Command=/x/run.sh a=b" stays whole.
_KNOWN_KEYS = frozenset("""
Account Accounts AccrueTime ActiveFeatures AdminComment AllocMem AllocNode:Sid AllocTRES Arch
ArrayJobId ArrayTaskId ArrayTaskThrottle AvailableFeatures AveWatts BatchFlag BatchHost
BootTime Boards BurstBuffer BurstBufferState CPUAlloc CPUEfctv CPULoad CPUFreqReq CPUTot CPUs
CPUs/Task CapWatts CfgTRES ClusterFeatures Comment Command Container ContainerID Contiguous
CoreCnt CoreSpec CoresPerSocket CpusPerTres CurrentWatts Deadline DelayBoot Dependency
DerivedExitCode Dist Duration EligibleTime EndTime ExcNodeList ExitCode ExtSensorsJoules
ExtSensorsTemp ExtSensorsWatts Features FedActiveSiblings FedOrigin FedViableSiblings Flags
FreeMem Gres GroupId Groups HetJobId HetJobIdSet HetJobOffset JobId JobName JobState
LastBusyTime LastSchedEval Licenses MCS_label MailType MailUser MaxStartDelay MemPerTres
MinCPUsNode MinMemoryCPU MinMemoryNode MinTmpDiskNode Name Network Nice NodeAddr NodeCnt
NodeHostName NodeList NodeName Nodes NtasksPerN:B:S:C NtasksPerTRES NumCPUs NumNodes NumTasks
OS OverSubscribe Owner Partition PartitionName Partitions Power PreemptEligibleTime
PreemptTime Prefer Priority QOS RealMemory Reason Reboot ReqB:S:C:T ReqNodeList ReqSwitch
Requeue Reservation ReservationName ResizeTime Restarts ResumeAfter ResvPorts RunTime
SchedNodeList Scheduler SecsPreSuspend SlurmdStartTime Socks/Node Sockets SrunHost:Pid
StartTime State StdErr StdIn StdOut StepId SubmitTime SuspendTime SystemComment TRES Tasks
ThreadSpec ThreadsPerCore TimeLimit TimeMin TmpDisk TresBind TresFreq TresPerJob TresPerNode
TresPerSocket TresPerTask UserId Users Version Wait4Switch Watts Weight WorkDir
""".split())

# Values that are free text: they may hold spaces and "x=y" words.
_FREE_TEXT_KEYS = frozenset("""
AdminComment Command Comment Container JobName MailUser Name OS Reason StdErr StdIn StdOut
SystemComment WorkDir
""".split())

_KEY_RE = re.compile(r"(?:^|(?<=\s))([A-Za-z][A-Za-z0-9_:/]*)=")


def _parse_record(text: str) -> dict[str, str]:
    """``Key=Value Key=Value ...`` (one record, possibly spread over lines) -> dict."""
    flat = " ".join(line.strip() for line in text.splitlines())
    fields: dict[str, str] = {}
    key: Optional[str] = None
    start = 0
    for m in _KEY_RE.finditer(flat):
        name = m.group(1)
        if key is not None:
            if key in _FREE_TEXT_KEYS and name not in _KNOWN_KEYS:
                continue  # "Command=/bin/run a=b": a=b is part of the command
            if key not in _FREE_TEXT_KEYS and name not in _KNOWN_KEYS and not name[0].isupper():
                continue  # lower-case words are never Slurm keys
            fields[key] = flat[start:m.start()].strip()
        key, start = name, m.end()
    if key is not None:
        fields[key] = flat[start:].strip()
    return fields


def parse_scontrol_records(text: str) -> list[dict[str, str]]:
    """Every record of ``scontrol show ...``: one per line with ``-o``; blank-line separated
    blocks otherwise. Lines without ``Key=`` (e.g. "No reservations in the system") are
    ignored."""
    blocks: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        # a new record starts at a line that is not indented (one-liner or first line)
        if current and not line[:1].isspace():
            blocks.append("\n".join(current))
            current = []
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return [rec for rec in (_parse_record(b) for b in blocks) if rec]


def parse_scontrol_job(text: str) -> dict[str, str]:
    """Fields of ``scontrol show job -o ID`` (the first job record). Raises
    ResourceManagerError when there is none."""
    for rec in parse_scontrol_records(text):
        if "JobId" in rec:
            return rec
    raise ResourceManagerError(f"no job record in scontrol output: {text.strip()[:200]!r}")


def parse_slurm_time(value: str) -> int:
    """Slurm's local ``YYYY-MM-DDTHH:MM:SS`` -> epoch seconds; 0 for ``Unknown``/``None``."""
    value = value.strip()
    if not value or value in ("Unknown", "None", "N/A", "(null)", "0"):
        return 0
    try:
        tm = time.strptime(value, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return 0
    # tm_isdst=-1 from strptime: mktime decides DST as the local zone says
    return int(time.mktime(tm))


_DURATION_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_UNLIMITED = ("UNLIMITED", "INFINITE", "Infinite", "infinite")


def parse_duration(value: str) -> Optional[int]:
    """Slurm durations -> seconds: ``D-HH:MM:SS``, ``D-HH[:MM]``, ``HH:MM:SS``, ``MM:SS``,
    ``MM``; -1 for ``UNLIMITED``/``INFINITE``; ``None`` for anything else
    (``Partition_Limit``, ``NOT_SET``, ``N/A``)."""
    value = value.strip()
    if value in _UNLIMITED:
        return -1
    m = _DURATION_RE.match(value)
    if not m:
        return None
    days, a, b, c = m.groups()
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        h, mi, s = int(a), int(b or 0), int(c or 0)
        return int(days) * 86400 + h * 3600 + mi * 60 + s
    if c is not None:  # HH:MM:SS
        return int(a) * 3600 + int(b) * 60 + int(c)
    if b is not None:  # MM:SS
        return int(a) * 60 + int(b)
    return int(a) * 60  # MM


def end_time_from_job(fields: Mapping[str, str], now: float) -> int:
    """The allocation's end as epoch seconds: -1 when it has no limit, 0 when unknown.

    * ``TimeLimit=UNLIMITED`` -> -1 (Slurm then prints ``EndTime=Unknown`` for a running
      job, or start + 1 year in some versions: either way there is no limit).
    * ``EndTime`` parsed as local time when Slurm knows it.
    * otherwise, for a running job with a known ``TimeLimit`` and ``RunTime``:
      ``now + TimeLimit - RunTime``; else 0. ``TimeLimit=Partition_Limit`` (the limit is
      the partition's, not yet resolved) thus gives the EndTime Slurm computed, or 0.
    """
    limit = parse_duration(fields.get("TimeLimit", ""))
    if limit == -1:
        return -1
    end = parse_slurm_time(fields.get("EndTime", ""))
    if end > 0:
        return end
    if limit is not None and fields.get("JobState", "").startswith("RUNNING"):
        used = parse_duration(fields.get("RunTime", ""))
        if used is not None and used >= 0:
            return int(now) + max(0, limit - used)
    return 0


# --------------------------------------------------------------------------- steps


@dataclasses.dataclass
class StepInfo:
    """One job step as ``scontrol show step`` / ``squeue --steps`` report it."""

    step_id: str  # "12.3"; "12.TDB" while the step waits to be created
    name: str = ""
    state: str = ""
    nodes: list[str] = dataclasses.field(default_factory=list)
    start_time: int = 0
    srun_host: str = ""
    srun_pid: Optional[int] = None

    @property
    def pending(self) -> bool:
        """Not created yet: no numeric step id to cancel."""
        return not re.fullmatch(r"\d+(?:[_+]\d+)?\.\d+", self.step_id)


def _expand_or_empty(text: str) -> list[str]:
    text = text.strip()
    if not text or text in ("(null)", "None", "N/A"):
        return []
    try:
        return expand(text)
    except UsageError:
        return []


def parse_scontrol_steps(text: str) -> list[StepInfo]:
    """``scontrol show step -o JOBID``; "No job steps exist" and similar give []."""
    steps = []
    for rec in parse_scontrol_records(text):
        if "StepId" not in rec:
            continue
        host, pid = "", None
        hp = rec.get("SrunHost:Pid", "")
        if ":" in hp:
            host, _, p = hp.rpartition(":")
            pid = int(p) if p.isdigit() else None
        name = rec.get("Name", "")
        steps.append(StepInfo(
            step_id=rec["StepId"], name="" if name == "(null)" else name,
            state=rec.get("State", ""), nodes=_expand_or_empty(rec.get("NodeList", "")),
            start_time=parse_slurm_time(rec.get("StartTime", "")), srun_host=host, srun_pid=pid))
    return steps


def parse_squeue_steps(text: str) -> list[StepInfo]:
    """``squeue --steps -h -o '%i|%j|%S|%N'`` (SQUEUE_STEPS_FORMAT)."""
    steps = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", 3)
        if len(parts) < 4:
            continue
        sid, name, start, nodes = (p.strip() for p in parts)
        steps.append(StepInfo(step_id=sid, name=name, state="RUNNING",
                              nodes=_expand_or_empty(nodes), start_time=parse_slurm_time(start)))
    return steps


# --------------------------------------------------------------------------- node states

# sinfo %T / %t names (and scontrol's upper-case "+"-joined flags), lower-cased
_ABBREV = {
    "alloc": "allocated", "mix": "mixed", "drng": "draining", "drain": "drained",
    "comp": "completing", "resv": "reserved", "failg": "failing", "unk": "unknown",
    "npc": "perfctrs", "plnd": "planned", "pow_dn": "powered_down", "pow_up": "powering_up",
    "powering_down": "powering_down", "boot": "rebooting", "inval": "invalid",
    "maintenance": "maint", "not_responding": "no_respond",
}
# suffixes sinfo appends to a state (22.05 man page, NODE STATE CODES)
_SUFFIX_CHARS = "*~#!%$@^-"

# Base states in which a node of our allocation cannot run our next step.
_DOWN_STATES = frozenset({
    "down", "drained", "draining", "fail", "failing", "powered_down", "powering_down",
    "power_down", "maint", "reboot_issued", "rebooting", "no_respond", "invalid", "future",
})
# Suffixes that make any state unusable: not responding, powered off, powering down,
# reboot issued.
_DOWN_SUFFIXES = frozenset("*~%^")
_SUFFIX_MEANING = {
    "*": "not responding", "~": "powered off", "%": "powering down", "^": "reboot issued",
    "#": "powering up or being configured", "!": "pending power down",
    "$": "in a maintenance reservation", "@": "pending reboot", "-": "planned by backfill",
}


def split_node_state(state: str) -> tuple[str, set[str]]:
    """``"down*"`` -> ``("down", {"*"})``; ``"IDLE+DRAIN"`` -> ``("idle", {"drain"})``.
    The base name is lower-case with abbreviations spelled out."""
    s = state.strip().lower()
    flags: set[str] = set()
    while s and s[-1] in _SUFFIX_CHARS:
        flags.add(s[-1])
        s = s[:-1]
    base, *extra = s.split("+") if s else ("",)
    flags.update(_ABBREV.get(e, e) for e in extra if e)
    return _ABBREV.get(base, base), flags


def node_is_down(state: str) -> bool:
    """Whether a node in ``state`` (sinfo %T or scontrol State=) is unusable for a step.

    Down: DOWN, DRAINED, DRAINING (drained nodes are sick by the admin's word, even while
    our job still holds them), FAIL, FAILING, POWERED_DOWN, POWERING_DOWN, MAINT, REBOOT,
    NO_RESPOND, and any state with the suffix ``*`` (not responding), ``~`` (powered off),
    ``%`` (powering down) or ``^`` (reboot issued). Not down: ``#`` ``!`` ``$`` ``@`` ``-``
    (transitions that do not stop a running allocation) and unknown names (never exclude a
    healthy node because Slurm grew a new state name).
    """
    base, flags = split_node_state(state)
    if base in _DOWN_STATES or flags & _DOWN_SUFFIXES:
        return True
    return bool(flags & {"drain", "drained", "draining", "fail", "down", "no_respond",
                         "powered_down", "maint"})


def _reason(state: str, reason: str) -> str:
    _, flags = split_node_state(state)
    words = [_SUFFIX_MEANING[f] for f in sorted(flags) if f in _SUFFIX_MEANING]
    reason = reason.strip()
    if reason.lower() in ("none", "(null)"):
        reason = ""
    why = f"Slurm reports {state}"
    if words and reason.lower() not in words:  # not "down* (not responding): Not responding"
        why += f" ({', '.join(words)})"
    return f"{why}: {reason}" if reason else why


def _node_lines(text: str, fields: int) -> Iterable[tuple[list[str], list[str]]]:
    """(expanded node names, fields) per line; the last field keeps any '|'."""
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", fields - 1)
        if len(parts) < fields:
            continue
        names = _expand_or_empty(parts[0])
        if names:
            yield names, parts


def parse_sinfo_down(text: str) -> dict[str, str]:
    """``sinfo -h -N -o '%N|%T|%E'`` -> ``{node: reason}`` of the nodes that are down
    (see :func:`node_is_down`), in sinfo's order. Compressed node lists are expanded;
    the reason names Slurm's state, its suffix meaning and Slurm's reason text."""
    return _sinfo_nodes_where(text, node_is_down)


def _sinfo_nodes_where(text: str, predicate: Callable[[str], bool]) -> dict[str, str]:
    """``{node: reason}`` of the sinfo rows whose state satisfies ``predicate``."""
    found: dict[str, str] = {}
    for names, (_, state, reason) in _node_lines(text, 3):
        state = state.strip()
        if predicate(state):
            for n in names:
                found.setdefault(n, _reason(state, reason))
    return found


def node_is_lost(state: str) -> bool:
    """Whether Slurm has given up on a node for a *running* step: DOWN, FAIL or FAILING.
    Not responding alone (``mixed*``) is not: slurmctld sets that flag on one missed ping,
    so a short network outage shows it, and declares the node DOWN only ``SlurmdTimeout``
    later. Drained, powering and maintenance states are not either: a step keeps running
    on such a node."""
    base, flags = split_node_state(state)
    lost = {"down", "fail", "failing"}
    return base in lost or bool(flags & lost)


def parse_sinfo_lost(text: str) -> dict[str, str]:
    """``sinfo -h -N -o '%N|%T|%E'`` -> ``{node: reason}`` of the lost nodes
    (:func:`node_is_lost`), with the reason worded as :func:`parse_sinfo_down` does."""
    return _sinfo_nodes_where(text, node_is_lost)


def _int_or_none(text: str) -> Optional[int]:
    text = text.strip().rstrip("+")
    return int(text) if text.isdigit() else None


def _word_list(text: str) -> list[str]:
    text = text.strip()
    if not text or text in ("(null)", "none", "N/A"):
        return []
    return [w for w in text.split(",") if w]


def parse_sinfo_inventory(text: str) -> list[NodeInfo]:
    """``sinfo -h -N -o '%N|%T|%c|%m|%R|%f|%E'`` -> one NodeInfo per node (a node listed
    once per partition is merged). ``available`` = up, not draining and idle or mixed."""
    nodes: dict[str, NodeInfo] = {}
    for names, (_, state, cpus, mem, part, feats, reason) in _node_lines(text, 7):
        state = state.strip()
        base, _ = split_node_state(state)
        down = node_is_down(state)
        reason = reason.strip()
        for n in names:
            info = nodes.get(n)
            if info is None:
                info = nodes[n] = NodeInfo(
                    name=n, up=not down, state=state,
                    allocated=base in ("allocated", "mixed", "completing", "draining"),
                    available=(not down) and base in ("idle", "mixed"),
                    cpus=_int_or_none(cpus), memory_mb=_int_or_none(mem),
                    features=_word_list(feats),
                    reason="" if reason.lower() in ("none", "(null)") else reason)
            for p in _word_list(part):
                if p not in info.partitions:
                    info.partitions.append(p)
    return list(nodes.values())


def parse_scontrol_reservations(text: str) -> dict[str, list[str]]:
    """``scontrol show res -o`` -> ``{node: [reservation, ...]}`` (active ones only)."""
    out: dict[str, list[str]] = {}
    for rec in parse_scontrol_records(text):
        name = rec.get("ReservationName")
        if not name or rec.get("State", "ACTIVE") != "ACTIVE":
            continue
        for n in _expand_or_empty(rec.get("Nodes", "")):
            out.setdefault(n, []).append(name)
    return out


# --------------------------------------------------------------------------- job states

_STATE_MAP = {
    "PENDING": JobState.PENDING, "CONFIGURING": JobState.PENDING,
    # waiting to run again after a requeue / a deleted reservation
    "REQUEUED": JobState.PENDING, "REQUEUE_HOLD": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING, "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING, "COMPLETING": JobState.RUNNING,
    # sub-states of a live job
    "STAGE_OUT": JobState.RUNNING, "SIGNALING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING, "SUSPENDED": JobState.RUNNING, "STOPPED": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED, "OUT_OF_MEMORY": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED, "DEADLINE": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
    "NODE_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED,
}
_COMPACT = {
    "PD": "PENDING", "CF": "CONFIGURING", "R": "RUNNING", "CG": "COMPLETING",
    "CD": "COMPLETED", "F": "FAILED", "OOM": "OUT_OF_MEMORY", "BF": "BOOT_FAIL",
    "DL": "DEADLINE", "CA": "CANCELLED", "TO": "TIMEOUT", "NF": "NODE_FAIL",
    "PR": "PREEMPTED", "S": "SUSPENDED", "ST": "STOPPED", "RQ": "REQUEUED",
    "RH": "REQUEUE_HOLD", "RF": "REQUEUE_FED", "RD": "RESV_DEL_HOLD", "SO": "STAGE_OUT",
    "SI": "SIGNALING", "RS": "RESIZING", "SE": "SPECIAL_EXIT", "RV": "REVOKED",
}


def normalize_job_state(raw: str) -> str:
    """Slurm's job state (squeue/sacct/scontrol, full or compact) -> a JobState value.
    ``CANCELLED by 0`` is cancelled; anything not known is ``unknown``."""
    word = raw.strip().split(" ", 1)[0].rstrip("+").upper()
    word = _COMPACT.get(word, word)
    return _STATE_MAP.get(word, JobState.UNKNOWN)


def decode_exit_code(value: str) -> Optional[int]:
    """An exit code as subprocess reports it (negative = killed by that signal) from
    squeue's raw wait status (``768``) or sacct/scontrol's ``code:signal`` (``3:0``)."""
    value = value.strip()
    if ":" in value:
        code, _, sig = value.partition(":")
        if not (code.isdigit() and sig.isdigit()):
            return None
        return -int(sig) if int(sig) else int(code)
    if value.isdigit():
        status = int(value)
        return -(status & 0x7F) if status & 0x7F else (status >> 8) & 0xFF
    return None


def _status(job_id: str, raw_state: str, exit_code: str, reason: str, source: str) -> JobStatus:
    state = normalize_job_state(raw_state)
    final = state in JobState.FINAL
    msg = f"{source}: {raw_state}"
    reason = reason.strip()
    if reason and reason not in ("None", "(null)"):
        msg += f" ({reason})"
    if state == JobState.UNKNOWN:
        msg += "; state not understood by scr"
    return JobStatus(job_id=job_id, state=state, message=msg,
                     exit_code=decode_exit_code(exit_code) if final else None,
                     raw_state=raw_state.strip())


def parse_squeue_jobs(text: str) -> dict[str, JobStatus]:
    """``squeue -h -t all -j IDS -O 'JobID:|,JobArrayID:|,State:|,exit_code:|,Reason:'``
    (also the 3-field ``-o '%i|%T|%r'``) -> ``{job id: JobStatus}``.

    Array elements are keyed by their ``BASE_INDEX`` id; when an element's own job id
    differs (``11`` for ``8_1``) it is an alias key to the same status."""
    out: dict[str, JobStatus] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 5:
            raw_id, shown, state, code, reason = parts[:5]
        elif len(parts) >= 3:
            raw_id, shown, state, code, reason = parts[0], parts[0], parts[1], "", parts[2]
        else:
            continue
        shown = shown or raw_id
        if not shown:
            continue
        st = _status(shown, state, code, reason, "squeue")
        out[shown] = st
        if raw_id and raw_id != shown:
            out.setdefault(raw_id, st)
    return out


def parse_sacct(text: str) -> dict[str, JobStatus]:
    """``sacct -n -P -X -j IDS -o JobIDRaw,JobID,State,ExitCode`` -> ``{job id: JobStatus}``
    (keys as :func:`parse_squeue_jobs`)."""
    out: dict[str, JobStatus] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 4 or not parts[0]:
            continue
        raw_id, shown, state, code = parts[:4]
        shown = shown or raw_id
        st = _status(shown, state, code, "", "sacct")
        out[shown] = st
        if raw_id != shown:
            out.setdefault(raw_id, st)
    return out


def aggregate_array(job_id: str, statuses: Mapping[str, JobStatus]) -> Optional[JobStatus]:
    """The status of a whole job array ``job_id`` from its elements ``job_id_N``: still
    pending/running while any element is; else the first non-completed final state."""
    elems = [st for key, st in statuses.items() if key.startswith(f"{job_id}_")]
    if not elems:
        return None
    order = (JobState.RUNNING, JobState.PENDING, JobState.UNKNOWN, JobState.NODE_FAIL,
             JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED, JobState.PREEMPTED,
             JobState.COMPLETED)
    for state in order:
        hit = [st for st in elems if st.state == state]
        if hit:
            codes = [st.exit_code for st in hit if st.exit_code]
            return JobStatus(job_id=job_id, state=state,
                             message=f"job array of {len(elems)} elements; "
                                     f"{len(hit)} {state}: {hit[0].message}",
                             exit_code=codes[0] if codes else hit[0].exit_code,
                             raw_state=hit[0].raw_state)
    return None  # pragma: no cover - every state is in `order`


# --------------------------------------------------------------------------- sbatch

_SBATCH_RE = re.compile(r"^(\d+)(?:;(\S+))?$")


def parse_sbatch_parsable(text: str) -> str:
    """``sbatch --parsable`` stdout (``123`` or ``123;cluster``) -> ``"123"``."""
    for line in text.splitlines():
        m = _SBATCH_RE.match(line.strip())
        if m:
            return m.group(1)
    raise ResourceManagerError(f"sbatch --parsable printed no job id: {text.strip()[:200]!r}")
