"""Pure parsers of what the ``flux`` CLI prints, and Flux job-id encodings.

Nothing here runs a command; every parser is tested against recorded output
(``tests/fixtures/flux``, sources in its README).

Formats:

* ``flux resource status -o "{state} {nnodes} {ranks} {nodelist} {reason}"`` (header kept:
  it tells the columns apart; older releases print ``STATUS`` for ``STATE``). States: avail,
  exclude, drain, draining, drained, torpid, housekeeping, allocated, online, offline;
  a trailing ``*`` means the nodes are offline (``avail*``, ``drained*``).
* ``flux resource list -o "{state:>10} {nnodes:>6} {ncores:>8} {ngpus:>8} {nodelist}"``
  (the long-standing default format): states free, allocated, down.
* ``flux jobs -a -n -o "{id:d}|{state}|{result}|{returncode}|{exception.type}|
  {exception.note}" ID...``: RFC 21 states DEPEND PRIORITY SCHED RUN CLEANUP INACTIVE, and
  for inactive jobs a result COMPLETED FAILED CANCELED TIMEOUT. ``{id:d}`` is decimal in
  every release (``{id}`` alone prints F58 in recent ones).
* ``flux job timeleft``: whole seconds, ``4294967295`` (UINT_MAX) when unlimited.
* ``flux submit``: the new job id (F58) on stdout.
* Job ids (RFC 19): decimal, ``0x`` hex, dotted hex ``xxxx.xxxx.xxxx.xxxx`` (``job.`` prefix
  = KVS form), F58 with prefix ``ƒ`` or ASCII ``f``; mnemonic words (``a-b-c--d-e-f``) need
  ``flux job id`` to decode.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Sequence

from scr_core.errors import UsageError
from scr_core.hostlist import expand
from scr_core.interfaces import JobState, NodeInfo

__all__ = [
    "UINT_MAX",
    "FluxParseError",
    "JobRecord",
    "ResourceRow",
    "down_from_status",
    "encode_f58",
    "format_jobid",
    "inventory",
    "is_words",
    "normalize_state",
    "parse_exec_unreachable",
    "parse_hostlist",
    "parse_jobid",
    "parse_jobs",
    "parse_resource_list",
    "parse_resource_status",
    "parse_submit",
    "parse_timeleft",
    "rank_map",
]

UINT_MAX = 4294967295


class FluxParseError(ValueError):
    """Text without the documented layout (the message quotes it)."""


def _show(text: str, limit: int = 200) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --------------------------------------------------------------------------- job ids

F58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_F58_VALUE = {c: i for i, c in enumerate(F58_ALPHABET)}
F58_PREFIXES = ("ƒ", "f")
_MAX_JOBID = (1 << 64) - 1


def is_words(text: str) -> bool:
    """The mnemonic encoding (``flux job id --to=words``) is the only one with ``-``."""
    return "-" in text.strip()


def parse_jobid(text: str) -> int:
    """Any RFC 19 encoding except mnemonic words -> the 64-bit job id.

    Detection order follows flux-core's ``fluid_parse``: dotted hex (has ``.``), words
    (has ``-``), F58 (``ƒ``/``f`` prefix), then hex (``0x``) or decimal.
    """
    s = text.strip()
    if not s:
        raise FluxParseError("empty job id")
    if s.startswith("job."):
        s = s[4:]
    if "." in s:
        parts = s.split(".")
        if len(parts) != 4 or not all(re.fullmatch(r"[0-9a-fA-F]{1,4}", p) for p in parts):
            raise FluxParseError(f"bad dotted-hex job id {text!r}")
        value = 0
        for p in parts:
            value = (value << 16) | int(p, 16)
        return value
    if is_words(s):
        raise FluxParseError(f"job id {text!r} is in mnemonic (words) form; "
                             "convert it with 'flux job id'")
    for prefix in F58_PREFIXES:
        if s.startswith(prefix) and len(s) > len(prefix):
            body = s[len(prefix):]
            if len(body) > 12 or any(c not in _F58_VALUE for c in body):
                raise FluxParseError(f"bad F58 job id {text!r}")
            value = 0
            for c in body:
                value = value * 58 + _F58_VALUE[c]
            if value > _MAX_JOBID:
                raise FluxParseError(f"F58 job id {text!r} exceeds 64 bits")
            return value
    try:
        value = int(s, 16) if s.lower().startswith("0x") else int(s, 10)
    except ValueError as exc:
        raise FluxParseError(f"not a Flux job id: {text!r}") from exc
    if not 0 <= value <= _MAX_JOBID:
        raise FluxParseError(f"job id {text!r} is out of range")
    return value


def encode_f58(value: int, ascii_prefix: bool = False) -> str:
    if value < 0:
        raise ValueError("job ids are unsigned")
    digits = []
    while True:
        value, rem = divmod(value, 58)
        digits.append(F58_ALPHABET[rem])
        if value == 0:
            break
    return ("f" if ascii_prefix else "ƒ") + "".join(reversed(digits))


def format_jobid(value: int, style: str = "f58") -> str:
    """``f58`` (what Flux prints and sets in FLUX_JOB_ID), ``f58plain`` (ASCII ``f``),
    ``dec``, ``hex`` or ``dothex``."""
    if style == "f58":
        return encode_f58(value)
    if style == "f58plain":
        return encode_f58(value, ascii_prefix=True)
    if style == "dec":
        return str(value)
    if style == "hex":
        return hex(value)
    if style == "dothex":
        return ".".join(f"{(value >> s) & 0xFFFF:04x}" for s in (48, 32, 16, 0))
    raise ValueError(f"unknown job id style {style!r}")


def parse_submit(text: str) -> int:
    """``flux submit`` stdout -> the job id (the last non-empty line)."""
    lines = [w.strip() for w in text.splitlines() if w.strip()]
    if not lines:
        raise FluxParseError("flux submit printed no job id")
    return parse_jobid(lines[-1].split()[-1])


# --------------------------------------------------------------------------- hostlists


def parse_hostlist(text: str) -> list[str]:
    """An RFC 29 hostlist (``flux getattr hostlist``, ``{nodelist}``) -> names in order."""
    try:
        return expand(text.strip())
    except UsageError as exc:
        raise FluxParseError(f"bad hostlist {_show(text)}: {exc}") from exc


def rank_map(hostlist: Sequence[str]) -> dict[str, int]:
    """Broker-rank-ordered host names -> {host: first rank on it} (several brokers may share
    a node, e.g. ``flux start --test-size``)."""
    out: dict[str, int] = {}
    for rank, host in enumerate(hostlist):
        out.setdefault(host, rank)
    return out


# --------------------------------------------------------------------------- resources


@dataclasses.dataclass
class ResourceRow:
    state: str          # without the trailing "*"
    offline: bool       # "*" suffix, or state "offline"
    nnodes: int
    ranks: str
    nodes: list[str]
    reason: str = ""
    ncores: int | None = None
    ngpus: int | None = None


_HEADER_ALIASES = {"STATUS": "STATE", "RANK": "RANKS", "NODES": "NNODES"}


def _columns(header: str) -> list[str]:
    return [_HEADER_ALIASES.get(w, w) for w in header.split()]


def _table(text: str, what: str, first: str = "STATE") -> tuple[list[str], list[list[str]]]:
    """Header-driven split: each row gets len(columns) cells, the last cell takes the rest
    of the line (REASON holds spaces), missing trailing cells are empty."""
    cols: list[str] = []
    rows = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        words = raw.split()
        if not cols:
            if _HEADER_ALIASES.get(words[0], words[0]) != first:
                raise FluxParseError(f"{what}: expected a {first} header, got {_show(raw)}")
            cols = _columns(raw)
            continue
        cells = raw.split(None, len(cols) - 1)
        cells += [""] * (len(cols) - len(cells))
        rows.append(cells)
    return cols, rows


def _cell(cols: list[str], cells: list[str], name: str) -> str:
    return cells[cols.index(name)].strip() if name in cols else ""


def _count(word: str) -> int | None:
    return int(word) if word.isdigit() else None


def parse_resource_status(text: str) -> list[ResourceRow]:
    """``flux resource status`` with a header (any subset/order of STATE NNODES RANKS
    NODELIST REASON, REASON last) -> rows; empty sets are skipped."""
    cols, rows = _table(text, "flux resource status")
    if not cols:
        return []  # no output at all (not even a header): nothing to report
    if "NODELIST" not in cols:
        raise FluxParseError("flux resource status: no NODELIST column")
    if "REASON" in cols and cols[-1] != "REASON":
        raise FluxParseError("flux resource status: REASON must be the last column")
    out = []
    for cells in rows:
        raw_state = _cell(cols, cells, "STATE")
        nnodes = _count(_cell(cols, cells, "NNODES"))
        nodelist = _cell(cols, cells, "NODELIST")
        if nnodes == 0 or not nodelist or nodelist == "-":
            continue
        state = raw_state.rstrip("*")
        offline = raw_state.endswith("*") or state == "offline"
        nodes = parse_hostlist(nodelist)
        out.append(ResourceRow(state, offline, nnodes if nnodes is not None else len(nodes),
                               _cell(cols, cells, "RANKS"), nodes,
                               _cell(cols, cells, "REASON")))
    return out


# What makes a node unusable in the system view of `flux resource status`, and the reason
# reported. "allocated"/"housekeeping"/"online"/"avail" (online) are usable; "draining"
# is down because an administrator asked that nothing new start there, which is exactly
# what SCR's next run step would do.
_DOWN_STATES = {
    "offline": "offline (broker not running or lost)",
    "exclude": "excluded by configuration",
    "drain": "drained",
    "drained": "drained",
    "draining": "draining",
    "torpid": "torpid (broker unresponsive)",
}


def down_from_status(rows: Sequence[ResourceRow],
                     nodes: Iterable[str] | None = None) -> dict[str, str]:
    """Unusable nodes -> reason (``drained: <admin reason>``; offline noted), optionally
    restricted to ``nodes``."""
    wanted = set(nodes) if nodes is not None else None
    out: dict[str, str] = {}
    for row in rows:
        why = []
        if row.state in _DOWN_STATES and row.state != "offline":
            why.append(_DOWN_STATES[row.state])
        if row.offline:
            why.append(_DOWN_STATES["offline"])
        if not why:
            continue
        text = "; ".join(why)
        if row.reason:
            text += f": {row.reason}"
        for n in row.nodes:
            if wanted is None or n in wanted:
                out[n] = f"{out[n]}; {text}" if n in out and text not in out[n] else text
    return out


def lost_from_status(rows: Sequence[ResourceRow], nodes: Iterable[str]) -> dict[str, str]:
    """Nodes (of ``nodes``) whose broker is offline -> reason: what the step watch may act
    on at once (Flux marks a lost broker offline within ~2 s). Drained, excluded and torpid
    nodes are not lost: a running job keeps them (torpid is also what a busy node looks like)."""
    wanted = set(nodes)
    out: dict[str, str] = {}
    for row in rows:
        if not row.offline:
            continue
        text = _DOWN_STATES["offline"] + (f": {row.reason}" if row.reason else "")
        for n in row.nodes:
            if n in wanted:
                out.setdefault(n, text)
    return out


def parse_resource_list(text: str) -> list[ResourceRow]:
    """``flux resource list`` (STATE NNODES NCORES NGPUS NODELIST; PROPERTIES/QUEUE ignored)
    -> rows with counts; rows with no nodes are skipped."""
    cols, rows = _table(text, "flux resource list")
    out = []
    for cells in rows:
        nnodes = _count(_cell(cols, cells, "NNODES"))
        nodelist = _cell(cols, cells, "NODELIST")
        if not nnodes or not nodelist:
            continue
        out.append(ResourceRow(_cell(cols, cells, "STATE"), False, nnodes, "",
                               parse_hostlist(nodelist), "",
                               _count(_cell(cols, cells, "NCORES")),
                               _count(_cell(cols, cells, "NGPUS"))))
    return out


def inventory(listing: Sequence[ResourceRow],
              status: Sequence[ResourceRow] = ()) -> list[NodeInfo]:
    """Scheduler view (free/allocated/down) + system view (reasons) -> NodeInfo per node.
    Core counts are per row, so each node gets the row's average."""
    reasons = down_from_status(status)
    system_state = {}
    for row in status:
        for n in row.nodes:
            system_state.setdefault(n, row.state + ("*" if row.offline else ""))
    out = []
    seen = set()
    for row in listing:
        per_node = row.ncores // row.nnodes if row.ncores is not None and row.nnodes else None
        for n in row.nodes:
            if n in seen:
                continue  # several brokers per node: one record per host
            seen.add(n)
            up = row.state != "down"
            out.append(NodeInfo(
                name=n, up=up,
                allocated=(row.state == "allocated") if up else None,
                available=(row.state == "free"),
                state=system_state.get(n, row.state),
                cpus=per_node,
                reason=reasons.get(n, "") if not up else "",
            ))
    return out


# --------------------------------------------------------------------------- jobs


@dataclasses.dataclass
class JobRecord:
    job_id: int
    state: str
    result: str = ""
    returncode: int | None = None
    exception_type: str = ""
    exception_note: str = ""


def parse_jobs(text: str, delimiter: str = "|") -> dict[int, JobRecord]:
    """``flux jobs -n -o "{id:d}|{state}|{result}|{returncode}|{exception.type}|
    {exception.note}"`` -> {decimal id: record}. The note (free text) is last."""
    out: dict[int, JobRecord] = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        cells = [c.strip() for c in raw.split(delimiter, 5)]
        if cells[0].upper() in ("JOBID", "ID"):
            continue
        if len(cells) < 2:
            raise FluxParseError(f"flux jobs: unexpected line {_show(raw)}")
        cells += [""] * (6 - len(cells))
        try:
            jid = parse_jobid(cells[0])
        except FluxParseError as exc:
            raise FluxParseError(f"flux jobs: bad job id in {_show(raw)}") from exc
        rc = cells[3]
        out[jid] = JobRecord(jid, cells[1].upper(), cells[2].upper(),
                             int(rc) if re.fullmatch(r"-?\d+", rc) else None,
                             "" if cells[4] in ("-", "None") else cells[4],
                             "" if cells[5] in ("-", "None") else cells[5])
    return out


_ACTIVE = {
    "NEW": JobState.PENDING,
    "DEPEND": JobState.PENDING,
    "PRIORITY": JobState.PENDING,
    "SCHED": JobState.PENDING,
    "RUN": JobState.RUNNING,
    "CLEANUP": JobState.RUNNING,   # flux's "running" alias covers RUN and CLEANUP
}
_RESULTS = {
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "CANCELED": JobState.CANCELLED,
    "CANCELLED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
}


def normalize_state(state: str, result: str = "", exception_type: str = "",
                    exception_note: str = "") -> str:
    """Flux state (+ result, exception type and note of an inactive job) -> :class:`JobState`.

    A failed job is ``node_fail`` when it lost a node: job-exec raises the fatal exception
    type ``exec`` with the note ``node failure on HOST (rank N)`` when a critical rank's
    shell is lost (every rank of a plain job; rank 0 of an instance), and the non-fatal
    type ``node-failure`` for other ranks (flux-core ``job-exec/bulkexec.c``, seen on the
    lab instance). Unknown words give ``unknown``, never an exception.
    """
    st = state.strip().upper()
    if st in _ACTIVE:
        return _ACTIVE[st]
    if st in ("INACTIVE", "COMPLETED", "FAILED", "CANCELED", "TIMEOUT"):
        res = result.strip().upper() or (st if st != "INACTIVE" else "")
        mapped = _RESULTS.get(res, JobState.UNKNOWN)
        etype = exception_type.strip()
        lost_node = etype == "node-failure" or (
            etype == "exec" and exception_note.strip().startswith("node failure on "))
        if mapped == JobState.FAILED and lost_node:
            return JobState.NODE_FAIL
        return mapped
    return JobState.UNKNOWN


# --------------------------------------------------------------------------- time / exec


def parse_timeleft(text: str, now: float) -> int:
    """``flux job timeleft`` -> epoch end time: UINT_MAX (no limit) -> -1; else now + secs
    (0 = already expired, i.e. now)."""
    word = text.strip().split()[0] if text.strip() else ""
    if not word.isdigit():
        raise FluxParseError(f"flux job timeleft: unexpected output {_show(text)}")
    secs = int(word)
    if secs >= UINT_MAX:
        return -1
    return int(now) + secs


def parse_expiration(text: str) -> int:
    """``flux jobs -n -o "{expiration}" ID`` -> epoch seconds; 0 means no limit -> -1."""
    word = text.strip().split()[0] if text.strip() else ""
    try:
        value = float(word)
    except ValueError as exc:
        raise FluxParseError(f"flux jobs expiration: unexpected output {_show(text)}") from exc
    return -1 if value <= 0 else int(value)


def parse_exec_unreachable(rc: int, stderr: str) -> bool:
    """Did ``flux exec`` fail to reach its rank? flux-exec exits 68 (EX_NOHOST) and logs
    ``flux-exec: Error: rank N: CMD: <error>`` when the rank cannot be reached; a command
    that itself exits 68 prints no such line."""
    return rc == 68 and re.search(r"Error: rank \d+: ", stderr) is not None
