"""SCR's text log, ``<prefix>/.scr/log``: a writer and a tolerant parser.

Line format, as written by the library's ``src/scr_log.c`` (``scr_log_run``,
``scr_log_halt``, ``scr_log_event``, ``scr_log_transfer``) and mirrored here field for field::

    2024-12-11T15:00:00: host=n1, jobid=42, event=START, procs=64, nodes=2
    2024-12-11T15:00:00: host=n1, jobid=42, event=HALT, note="SCR_FINALIZE_CALLED"
    <ts>: host=H, jobid=J, event=TYPE[, note="N"][, dset=D][, name="N"][, secs=F]
    <ts>: host=H, jobid=J, xfer=TYPE[, from=P][, to=P][, dset=D][, name="N"][, secs=F]
                                    [, bytes=F][, files=K]

``<ts>`` is ``strftime("%Y-%m-%dT%H:%M:%S")`` of local time: for events the given start or
now, for transfers the transfer's start.  Floats use C's ``%f`` (six decimals); ``from``/``to``
are not quoted, ``note``/``name`` are, without escaping.  Two deliberate differences: the C
code truncates a line at 1023 bytes, we do not (so nothing is lost); and a CR/LF inside a
note or name is written as a space, so that one record stays one line.

Each record is appended with a single ``write`` on an ``O_APPEND`` descriptor, which the
kernel positions and writes as a unit on local file systems, so concurrent writers (the
library on rank 0, the job scripts) never interleave inside a line.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional

from scr_core.errors import EXIT_DATA, ScrError

__all__ = [
    "LogFileError",
    "LogRecord",
    "ParsedLog",
    "ScrLog",
    "format_event",
    "format_start",
    "format_transfer",
    "log_path",
    "parse_file",
    "parse_line",
    "parse_lines",
]

_log = logging.getLogger(__name__)

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"


class LogFileError(ScrError):
    """The SCR log cannot be read, or holds no records at all (exit code 6, data)."""

    exit_code = EXIT_DATA


def log_path(prefix: str) -> str:
    """Path of the text log under an SCR prefix directory."""
    return os.path.join(prefix, ".scr", "log")


def _one_line(value: object) -> str:
    return str(value).replace("\r", " ").replace("\n", " ")


def _header(host: str, jobid: str, when: Optional[float]) -> str:
    stamp = time.strftime(TIMESTAMP_FORMAT, time.localtime(time.time() if when is None else when))
    return f"{stamp}: host={_one_line(host)}, jobid={_one_line(jobid)}"


def format_event(
    host: str,
    jobid: str,
    type: str,
    note: Optional[str] = None,
    dset: Optional[int] = None,
    name: Optional[str] = None,
    start: Optional[float] = None,
    secs: Optional[float] = None,
) -> str:
    """One event line (no newline), in scr_log_event's field order."""
    parts = [f"{_header(host, jobid, start)}, event={_one_line(type)}"]
    if note is not None:
        parts.append(f'note="{_one_line(note)}"')
    if dset is not None:
        parts.append(f"dset={int(dset)}")
    if name is not None:
        parts.append(f'name="{_one_line(name)}"')
    if secs is not None:
        parts.append(f"secs={float(secs):f}")
    return ", ".join(parts)


def format_transfer(
    host: str,
    jobid: str,
    type: str,
    src: Optional[str] = None,
    dst: Optional[str] = None,
    dset: Optional[int] = None,
    name: Optional[str] = None,
    start: Optional[float] = None,
    secs: Optional[float] = None,
    bytes: Optional[float] = None,
    files: Optional[int] = None,
) -> str:
    """One transfer line (no newline), in scr_log_transfer's field order."""
    parts = [f"{_header(host, jobid, start)}, xfer={_one_line(type)}"]
    if src is not None:
        parts.append(f"from={_one_line(src)}")
    if dst is not None:
        parts.append(f"to={_one_line(dst)}")
    if dset is not None:
        parts.append(f"dset={int(dset)}")
    if name is not None:
        parts.append(f'name="{_one_line(name)}"')
    if secs is not None:
        parts.append(f"secs={float(secs):f}")
    if bytes is not None:
        parts.append(f"bytes={float(bytes):f}")
    if files is not None:
        parts.append(f"files={int(files)}")
    return ", ".join(parts)


def format_start(
    host: str, jobid: str, procs: int, nodes: int, start: Optional[float] = None
) -> str:
    """The run-start line scr_log_run writes at SCR_Init."""
    return f"{_header(host, jobid, start)}, event=START, procs={int(procs)}, nodes={int(nodes)}"


class ScrLog:
    """Appends records to ``<prefix>/.scr/log`` (creating ``.scr`` if needed).

    ``user`` and ``jobname`` are kept for callers (SCR sends them only to syslog/MySQL, not
    to the text file).  With ``enabled=False`` every call is a no-op returning None, so
    callers need not test ``SCR_LOG_ENABLE`` themselves at each call site.

    The log is advisory: a failed write is reported through :mod:`logging` and the method
    returns None instead of raising, so a full or read-only file system never takes a job
    script down.  On success the methods return the line written (without newline).
    """

    def __init__(
        self,
        prefix: str,
        jobid: object,
        user: Optional[str] = None,
        jobname: Optional[str] = None,
        host: Optional[str] = None,
        enabled: bool = True,
    ) -> None:
        self.prefix = str(prefix)
        self.path = log_path(self.prefix)
        self.jobid = str(jobid)
        self.user = user
        self.jobname = jobname
        self.host = host if host is not None else socket.gethostname()
        self.enabled = enabled

    def _append(self, line: str) -> Optional[str]:
        if not self.enabled:
            return None
        data = (line + "\n").encode("utf-8", "surrogateescape")
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            # Opened per record: survives the prefix being recreated, costs ~10 us.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                written = os.write(fd, data)
                # A short write only happens when the disk fills up; finish the line anyway.
                while written < len(data):
                    written += os.write(fd, data[written:])
            finally:
                os.close(fd)
        except OSError as exc:
            _log.warning("cannot append to SCR log %s: %s", self.path, exc)
            return None
        return line

    def event(
        self,
        type: str,
        note: Optional[str] = None,
        dset: Optional[int] = None,
        name: Optional[str] = None,
        start: Optional[float] = None,
        secs: Optional[float] = None,
    ) -> Optional[str]:
        """Log an event (RUN_START, RUN_END, NODE_FAIL, HALT, SCAVENGE_START, ...)."""
        return self._append(
            format_event(self.host, self.jobid, type, note, dset, name, start, secs)
        )

    def transfer(
        self,
        type: str,
        src: Optional[str] = None,
        dst: Optional[str] = None,
        dset: Optional[int] = None,
        name: Optional[str] = None,
        start: Optional[float] = None,
        secs: Optional[float] = None,
        bytes: Optional[float] = None,
        files: Optional[int] = None,
    ) -> Optional[str]:
        """Log a transfer (FLUSH_SYNC, FETCH, ...); ``start`` is when the transfer began."""
        return self._append(
            format_transfer(
                self.host, self.jobid, type, src, dst, dset, name, start, secs, bytes, files
            )
        )

    def start(self, procs: int, nodes: int, start: Optional[float] = None) -> Optional[str]:
        """Log ``event=START`` with the run's size, as the library does at SCR_Init."""
        return self._append(format_start(self.host, self.jobid, procs, nodes, start))

    def halt(self, reason: Optional[str] = None) -> Optional[str]:
        """Log ``event=HALT[, note="reason"]``, as the library's scr_log_halt does."""
        return self.event("HALT", note=reason)


# --------------------------------------------------------------------------- parsing


@dataclass
class LogRecord:
    """One parsed log line; fields absent from the line are None."""

    time: float  # epoch seconds of the line's local timestamp
    host: Optional[str]
    jobid: Optional[str]
    kind: str  # "event" or "xfer"
    label: str  # e.g. "CHECKPOINT_END", "FLUSH_SYNC"
    note: Optional[str] = None
    dset: Optional[int] = None
    name: Optional[str] = None
    secs: Optional[float] = None
    bytes: Optional[float] = None
    files: Optional[int] = None
    from_: Optional[str] = None
    to: Optional[str] = None
    procs: Optional[int] = None
    nodes: Optional[int] = None
    raw: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # keys we do not model


_RE_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?: ")
_RE_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
# Where one field ends and the next begins: ", key=".
_RE_NEXT = re.compile(r", (?=[A-Za-z_][A-Za-z0-9_]*=)")
# A closing quote must be followed by the next field or the end of the line, which lets a
# quoted note contain ", " and even quotes of its own.
_RE_QUOTE_END = re.compile(r'"(?=, [A-Za-z_][A-Za-z0-9_]*=|$)')

_RE_LABEL = re.compile(r"[A-Za-z0-9_.-]+")  # event/xfer types are identifiers
_INT_FIELDS = {"dset", "files", "procs", "nodes"}
_FLOAT_FIELDS = {"secs", "bytes"}
_STR_FIELDS = {"host", "jobid", "note", "name", "to"}


def _split_fields(body: str) -> Optional[list[tuple[str, str]]]:
    fields: list[tuple[str, str]] = []
    pos = 0
    while pos < len(body):
        m = _RE_KEY.match(body, pos)
        if m is None:
            return None
        key, pos = m.group(1), m.end()
        if body.startswith('"', pos):
            q = _RE_QUOTE_END.search(body, pos + 1)
            if q is None:
                return None
            value, pos = body[pos + 1 : q.start()], q.end()
        else:
            n = _RE_NEXT.search(body, pos)
            end = n.start() if n is not None else len(body)
            value, pos = body[pos:end], end
        fields.append((key, value))
        if pos < len(body):
            if not body.startswith(", ", pos):
                return None
            pos += 2
    return fields


def _number(text: str, kind: type) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    if kind is int:
        return int(value) if value.is_integer() else None
    return value


def parse_line(line: str) -> Optional[LogRecord]:
    """Parse one log line, or return None if it is not an SCR log record.

    Accepts what the C library and :class:`ScrLog` write: a timestamp, then ``key=value``
    fields joined by ``", "``, with ``event=`` or ``xfer=`` naming the record; ``secs`` may
    be an integer or a float; unknown keys land in ``extra``.  Older pre-3.0 lines
    (``EVENT="..."`` with no timestamp) are not records and give None.
    """
    raw = line.rstrip("\r\n")
    text = raw.strip()
    m = _RE_STAMP.match(text)
    if m is None:
        return None
    y, mo, d, hh, mi, ss = (int(g) for g in m.groups()[:6])
    frac = float(m.group(7)) if m.group(7) else 0.0
    try:
        # mktime would silently normalise month 13 or hour 99; reject them instead.
        _dt.datetime(y, mo, d, hh, mi, min(ss, 59))
        when = time.mktime((y, mo, d, hh, mi, ss, 0, 0, -1)) + frac
    except (OverflowError, ValueError):
        return None
    fields = _split_fields(text[m.end() :])
    if not fields:
        return None

    values: dict[str, object] = {}
    extra: dict[str, str] = {}
    kind = label = None
    for key, value in fields:
        if key in ("event", "xfer"):
            if kind is not None:
                return None
            kind, label = key, value
        elif key in _INT_FIELDS or key in _FLOAT_FIELDS:
            num = _number(value, int if key in _INT_FIELDS else float)
            if num is None:
                return None
            values[key] = num
        elif key == "from":
            values["from_"] = value
        elif key in _STR_FIELDS:
            values[key] = value
        else:
            extra[key] = value
    if kind is None or label is None or not _RE_LABEL.fullmatch(label):
        return None
    return LogRecord(
        time=when,
        host=values.pop("host", None),  # type: ignore[arg-type]
        jobid=values.pop("jobid", None),  # type: ignore[arg-type]
        kind=kind,
        label=label,
        raw=raw,
        extra=extra,
        **values,  # type: ignore[arg-type]
    )


class ParsedLog(list):
    """The records of a log file (a list), plus how many non-blank lines were skipped."""

    def __init__(self, records: Iterable[LogRecord] = (), skipped_lines: Iterable[int] = ()):
        super().__init__(records)
        self.skipped_lines: list[int] = list(skipped_lines)  # 1-based line numbers

    @property
    def skipped(self) -> int:
        return len(self.skipped_lines)


def parse_lines(lines: Iterable[str]) -> ParsedLog:
    """Parse lines, skipping (and counting) those that are not records; blank lines are ignored."""
    result = ParsedLog()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = parse_line(line)
        if record is None:
            result.skipped_lines.append(number)
        else:
            result.append(record)
    return result


def parse_file(path: str) -> ParsedLog:
    """Parse a log file.  Unparseable lines (a torn last line, foreign text) are skipped and
    counted in ``.skipped``; an unreadable file raises :class:`OSError`."""
    # errors="replace": stray bytes in a note must not make the whole log unreadable.
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_lines(f)
