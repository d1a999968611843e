"""Pure parsers of what LSF and JSM print, and of LSF's job environment.

Every function takes captured text and returns plain data; nothing here runs a command or
reads a file, so each one is tested against recorded output (``tests/fixtures/lsf``).

Formats (sources in ``tests/fixtures/lsf/README.md``):

* ``LSB_DJOB_HOSTFILE``: one host name per line, one line per job slot. ``LSB_MCPU_HOSTS``:
  ``host slots host slots ...`` (may end with a space). ``LSB_HOSTS``: one word per slot.
  On CORAL systems (jsrun/lrun) the first host is the *launch node* with one slot, where the
  batch script runs; it is not a compute node of the job (LLNL/scr#143).
* ``bjobs -noheader -o "time_left" JOBID``: ``-`` when the job has no run limit, else
  ``H:MM`` (``H:MM:SS`` with ``-hms``) followed by a status letter: ``L`` run limit,
  ``E`` estimated run time not yet exceeded, ``X`` estimate exceeded (IBM ``bjobs -WL``).
* ``bjobs -a -noheader -o "jobid stat exit_code exit_reason delimiter='|'" IDS``.
* ``bhosts -w``: ``HOST_NAME STATUS JL/U MAX NJOBS RUN SSUSP USUSP RSV``.
* ``lshosts -w``: ``HOST_NAME type model cpuf ncpus maxmem maxswp server RESOURCES``.
* ``bsub``: ``Job <123> is submitted to [default ]queue <name>.``
* ``jslist``: ``ID ParentID nrs CPUs/rs GPUs/rs ExitStatus Status`` table.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Sequence

from scr_core.interfaces import JobState, NodeInfo

__all__ = [
    "DOWN_STATUSES",
    "LOST_STATUSES",
    "BHost",
    "BjobsRecord",
    "JsStep",
    "LSHost",
    "LsfParseError",
    "allocation_nodes",
    "down_from_bhosts",
    "hostfile_slots",
    "inventory",
    "lost_from_bhosts",
    "lsb_hosts_slots",
    "mcpu_hosts_slots",
    "normalize_state",
    "not_found_ids",
    "parse_bhosts",
    "parse_bjobs_status",
    "parse_bsub",
    "parse_jslist",
    "parse_lshosts",
    "parse_time_left",
    "running_step_ids",
]


class LsfParseError(ValueError):
    """Text that does not have the documented layout (the message quotes it)."""


def _show(text: str, limit: int = 200) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --------------------------------------------------------------------------- allocation


def _runs(hosts: Iterable[str]) -> list[tuple[str, int]]:
    """Consecutive repeats -> [(host, slots)], keeping order (a host may reappear later)."""
    out: list[tuple[str, int]] = []
    for h in hosts:
        if out and out[-1][0] == h:
            out[-1] = (h, out[-1][1] + 1)
        else:
            out.append((h, 1))
    return out


def hostfile_slots(text: str) -> list[tuple[str, int]]:
    """``LSB_DJOB_HOSTFILE`` content -> [(host, slots)] in file order."""
    hosts = []
    for line in text.splitlines():
        word = line.strip()
        if word and not word.startswith("#"):
            hosts.append(word.split()[0])
    return _runs(hosts)


def lsb_hosts_slots(text: str) -> list[tuple[str, int]]:
    """``LSB_HOSTS`` (one word per slot) -> [(host, slots)]."""
    return _runs(text.split())


def mcpu_hosts_slots(text: str) -> list[tuple[str, int]]:
    """``LSB_MCPU_HOSTS`` (``host slots ...``, trailing space allowed) -> [(host, slots)]."""
    words = text.split()
    if len(words) % 2:
        raise LsfParseError(f"LSB_MCPU_HOSTS must hold 'host slots' pairs: {_show(text)}")
    out = []
    for host, slots in zip(words[::2], words[1::2]):
        if not slots.isdigit():
            raise LsfParseError(f"LSB_MCPU_HOSTS: slot count {slots!r} of {host} "
                                f"is not a number: {_show(text)}")
        out.append((host, int(slots)))
    return out


def _is_launch_node(slots: Sequence[tuple[str, int]]) -> bool:
    # The CORAL layout: a one-slot launch node first, then compute nodes that each carry a
    # full ptile. A generic job whose first host got one slot (e.g. "hostA 1 hostB 3") looks
    # the same, which is why sites can force the choice with the launch_node setting.
    if len(slots) < 2:
        return False
    first, count = slots[0]
    rest = slots[1:]
    return count == 1 and all(h != first for h, _ in rest) and all(n > 1 for _, n in rest)


def allocation_nodes(slots: Sequence[tuple[str, int]], launch_node: str = "auto") -> list[str]:
    """Distinct compute nodes of the job in LSF's order.

    ``launch_node``: ``"first"`` drops the first host (CORAL launch node), ``"none"`` keeps
    every host, ``"auto"`` drops it only when it matches the CORAL layout (one slot, listed
    once, every other host with more than one slot).
    """
    if launch_node not in ("auto", "first", "none"):
        raise ValueError(f"launch_node must be auto, first or none, not {launch_node!r}")
    if not slots:
        return []
    drop = launch_node == "first" or (launch_node == "auto" and _is_launch_node(slots))
    hosts = [h for h, _ in (slots[1:] if drop else slots)]
    seen: set[str] = set()
    out = []
    for h in hosts:
        if h not in seen:
            seen.add(h)
            out.append(h)
    return out


# --------------------------------------------------------------------------- bjobs

_TIME_LEFT = re.compile(r"^(\d+):(\d{1,2})(?::(\d{1,2}))?(?:\s+([A-Za-z]))?$")


def parse_time_left(text: str, now: float) -> int:
    """``bjobs -noheader -o time_left JOBID`` (a header line is tolerated) -> epoch end time.

    ``-`` (no run limit) -> -1; no data line (job not found) -> 0; ``H:MM [L|E|X]`` ->
    ``now`` + the time left. With ``E``/``X`` LSF reports the time left against the job's
    *estimated* run time; that is still the best end time LSF offers, and an early estimate
    only makes SCR stop early, never too late.
    """
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.upper() == "TIME_LEFT":
            continue
        if line == "-" or line.startswith("- "):
            return -1
        m = _TIME_LEFT.match(line)
        if not m:
            raise LsfParseError(f"bjobs time_left: unexpected value {_show(line)}")
        hours, minutes, seconds = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        return int(now) + (hours * 60 + minutes) * 60 + seconds
    return 0


@dataclasses.dataclass
class BjobsRecord:
    job_id: str
    stat: str
    exit_code: str = ""
    exit_reason: str = ""


def parse_bjobs_status(text: str, delimiter: str = "|") -> dict[str, BjobsRecord]:
    """``bjobs -a -noheader -o "jobid stat exit_code exit_reason delimiter='|'"`` output.

    ``exit_reason`` is last because it is free text. A header line (``JOBID|STAT|...``) is
    skipped. Array elements print as ``123[4]`` and are kept as such.
    """
    out: dict[str, BjobsRecord] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(delimiter, 3)]
        if parts[0].upper() == "JOBID":
            continue
        if len(parts) < 2 or not re.fullmatch(r"\d+(\[\d+\])?", parts[0]):
            raise LsfParseError(f"bjobs: unexpected line {_show(line)}")
        parts += [""] * (4 - len(parts))
        code, reason = parts[2], parts[3]
        out[parts[0]] = BjobsRecord(parts[0], parts[1].upper(),
                                    "" if code == "-" else code,
                                    "" if reason == "-" else reason)
    return out


def not_found_ids(stderr: str) -> set[str]:
    """Job ids bjobs/bkill reported as unknown (``Job <123> is not found``)."""
    return set(re.findall(r"Job <([^>]+)> is not found", stderr))


# LSF job states -> normalized states (IBM "bjobs" job state descriptions).
_STATES = {
    "PEND": JobState.PENDING,
    "PSUSP": JobState.PENDING,    # suspended while pending: held, never started
    "WAIT": JobState.PENDING,     # chunk/array member waiting to be scheduled
    "PROV": JobState.PENDING,     # hosts being provisioned
    "RUN": JobState.RUNNING,
    "USUSP": JobState.RUNNING,    # suspended while running: still holds its hosts
    "SSUSP": JobState.RUNNING,
    "DONE": JobState.COMPLETED,
    "EXIT": JobState.FAILED,      # refined by exit_reason below
    "ZOMBI": JobState.CANCELLED,  # killed while its host was unreachable
    "UNKWN": JobState.UNKNOWN,    # mbatchd lost contact with the execution host
}

_EXIT_REASONS = (
    ("TERM_RUNLIMIT", JobState.TIMEOUT),
    ("TERM_DEADLINE", JobState.TIMEOUT),
    ("TERM_OWNER", JobState.CANCELLED),
    ("TERM_ADMIN", JobState.CANCELLED),
    ("TERM_FORCE_OWNER", JobState.CANCELLED),
    ("TERM_FORCE_ADMIN", JobState.CANCELLED),
    ("TERM_PREEMPT", JobState.PREEMPTED),
)


def normalize_state(stat: str, exit_code: str = "", exit_reason: str = "") -> str:
    """An LSF ``STAT`` (with the exit reason of an ``EXIT`` job) -> a :class:`JobState`.

    Unknown words map to ``unknown`` rather than raising: a new LSF state must not crash a
    status poll.
    """
    state = _STATES.get(stat.strip().upper(), JobState.UNKNOWN)
    if state == JobState.FAILED:
        reason = exit_reason.strip().upper()
        for prefix, mapped in _EXIT_REASONS:
            if reason.startswith(prefix):
                return mapped
    return state


def parse_bsub(text: str) -> str:
    """``Job <123> is submitted to [default ]queue <q>.`` -> ``"123"``."""
    m = re.search(r"Job <([^>]+)> is submitted", text)
    if not m:
        raise LsfParseError(f"bsub: no job id in output {_show(text)}")
    return m.group(1)


# --------------------------------------------------------------------------- bhosts / lshosts


@dataclasses.dataclass
class BHost:
    name: str
    status: str
    max_slots: int | None = None
    njobs: int | None = None


def _int(word: str) -> int | None:
    return int(word) if word.isdigit() else None


def parse_bhosts(text: str) -> list[BHost]:
    """``bhosts -w`` -> hosts in LSF's order. Rows of unavailable hosts show ``-`` columns."""
    out = []
    header_seen = False
    for raw in text.splitlines():
        words = raw.split()
        if not words:
            continue
        if words[0] == "HOST_NAME":
            header_seen = True
            continue
        if len(words) < 2:
            raise LsfParseError(f"bhosts: unexpected line {_show(raw)}")
        out.append(BHost(words[0], words[1],
                         _int(words[3]) if len(words) > 3 else None,
                         _int(words[4]) if len(words) > 4 else None))
    if out and not header_seen:
        raise LsfParseError(f"bhosts: no HOST_NAME header in {_show(text)}")
    return out


# Which bhosts statuses mean "do not launch here", and why (IBM "Host status" and
# "bhosts" docs). Statuses that only mean "full" or "busy" are deliberately absent:
# closed_Full / closed_Excl / closed_Busy are what every host of OUR running job shows
# (exclusive CORAL nodes are "full" while we hold them), closed_Wind is a dispatch window,
# closed_RC/closed_EGO are provisioning states, and plain "closed" (the short form, without
# -w) does not say why, so none of them mark a node down.
DOWN_STATUSES = {
    "unavail": "host is down, or its LIM and sbatchd are unreachable",
    "unreach": "LIM is running but sbatchd is unreachable",
    "closed_Adm": "closed by an LSF administrator",
    "closed_LIM": "LIM is unreachable but sbatchd is running",
    "closed_Lock": "locked by an LSF administrator (lsadmin limlock)",
}


def down_from_bhosts(hosts: Sequence[BHost], nodes: Iterable[str]) -> dict[str, str]:
    """Nodes (of ``nodes``) whose bhosts status means unusable -> ``"status: why"``."""
    wanted = set(nodes)
    out = {}
    for h in hosts:
        if h.name in wanted and h.status in DOWN_STATUSES:
            out[h.name] = f"LSF status {h.status}: {DOWN_STATUSES[h.status]}"
    return out


#: bhosts statuses of a host a running job has lost (not an administrator's closing)
LOST_STATUSES = ("unavail", "unreach")


def lost_from_bhosts(hosts: Sequence[BHost], nodes: Iterable[str]) -> dict[str, str]:
    """Nodes (of ``nodes``) LSF cannot reach -> ``"status: why"`` (the step watch's query)."""
    wanted = set(nodes)
    return {h.name: f"LSF status {h.status}: {DOWN_STATUSES[h.status]}"
            for h in hosts if h.name in wanted and h.status in LOST_STATUSES}


@dataclasses.dataclass
class LSHost:
    name: str
    ncpus: int | None = None
    maxmem_mb: int | None = None
    resources: list[str] = dataclasses.field(default_factory=list)


_UNITS_MB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def _mem_mb(word: str) -> int | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", word.strip(), re.IGNORECASE)
    if not m:
        return None
    return int(float(m.group(1)) * _UNITS_MB[(m.group(2) or "M").upper()])


def parse_lshosts(text: str) -> list[LSHost]:
    """``lshosts -w``; RESOURCES (last, may hold spaces) is ``(cs mg)`` style."""
    out = []
    for raw in text.splitlines():
        words = raw.split(None, 8)
        if not words or words[0] == "HOST_NAME":
            continue
        if len(words) < 8:
            raise LsfParseError(f"lshosts: unexpected line {_show(raw)}")
        res = words[8].strip("() \t").split() if len(words) > 8 else []
        out.append(LSHost(words[0], _int(words[4]), _mem_mb(words[5]), res))
    return out


def inventory(bhosts: Sequence[BHost], lshosts: Sequence[LSHost] = ()) -> list[NodeInfo]:
    """bhosts (state) joined with lshosts (CPUs, memory, resources) -> NodeInfo records."""
    static = {h.name: h for h in lshosts}
    out = []
    for h in bhosts:
        down = h.status in DOWN_STATUSES
        busy = bool(h.njobs) or h.status in ("closed_Full", "closed_Excl")
        ls = static.get(h.name)
        out.append(NodeInfo(
            name=h.name,
            up=not down,
            allocated=busy if not down else None,
            available=(h.status == "ok"),
            state=h.status,
            cpus=ls.ncpus if ls else None,
            memory_mb=ls.maxmem_mb if ls else None,
            features=list(ls.resources) if ls else [],
            reason=DOWN_STATUSES.get(h.status, ""),
        ))
    return out


# --------------------------------------------------------------------------- jslist


@dataclasses.dataclass
class JsStep:
    step_id: str
    parent: str
    status: str
    exit_status: str = ""


def parse_jslist(text: str) -> list[JsStep]:
    """``jslist`` table -> job steps. Lines that do not start with a numeric ID (headers,
    separators, messages) are skipped."""
    out = []
    for raw in text.splitlines():
        words = raw.split()
        if len(words) < 3 or not words[0].isdigit():
            continue
        out.append(JsStep(words[0], words[1], words[-1],
                          words[-2] if len(words) >= 7 else ""))
    return out


def running_step_ids(steps: Sequence[JsStep]) -> list[str]:
    return [s.step_id for s in steps if s.status.lower() == "running"]
