"""Times and durations typed by users, e.g. for ``scr_halt --before/--after/--seconds``.

SCR's own ``parsetime.py`` documented a set of human forms but was dead code that crashed on
most of them (reference §1.6), and ``scr_halt`` fell back to ISO only.  This module accepts
ISO and those documented forms, correctly, as a pure function of ``(text, now)``.

Accepted by :func:`parse_time` (case-insensitive; result is epoch seconds, local time):

===============================  ==========================================================
``2024-12-11T15:00[:30]``        ISO local time; a space may replace the ``T``; a trailing
                                 ``Z`` or ``+HH:MM`` offset makes it absolute instead
``2024-12-11``                   midnight at the start of that day (ISO convention)
``@1700000000``                  epoch seconds
``now``, ``now + 2h``            the current time, optionally plus a duration
``+2h`` ``+90m`` ``+30s`` ``+1d`` a duration from now; units may be combined (``+1h30m``)
``+HH:MM[:SS]`` ``+45``          likewise; ``+DD:HH:MM:SS`` too; a bare number is seconds
``42:10:36:30``                  ``DD:HH:MM:SS``: in SCR's parsetime a 4-field colon form
                                 is a duration from now (42 days 10 h 36 min 30 s)
``3pm`` ``3:00pm`` ``3:00:30 pm`` 12-hour clock (``am`` optional, ``a.m.`` accepted)
``15:00`` ``15:00:30`` ``1500``   24-hour clock; 4 digits are HHMM; ``1500:30`` is HHMM:SS
``15``                           a bare 1-2 digit number is an hour (as in SCR)
``noon`` ``midnight``            12:00 and 00:00
``today`` ``tomorrow``           with or without a time, in either order
``yesterday``                    (``1500 tomorrow``, ``tomorrow 15:00``, ``1500:30 today``)
``monday`` ``tues`` ...          the next such day (names, 3-letter and common abbrevs)
``December 11th`` ``dec 11``     a month name with a day (ordinal suffix optional)
``12/11`` ``12/11/2025``         MM/DD[/YYYY]
``11th``                         day of the month
===============================  ==========================================================

Rules (the at(1) convention, chosen over SCR's own parsetime where they differ):

* Durations are elapsed seconds (``+1d`` is 86400 s even across a DST change); calendar
  forms (``tomorrow``, weekdays, dates) are wall-clock times resolved with
  ``mktime(..., tm_isdst=-1)``, so ``tomorrow 15:00`` is 15:00 local either side of a change.
* A form that leaves the day open picks the next occurrence strictly after ``now``: a bare
  time already past today means tomorrow; a weekday that is today counts only if the time
  is still ahead, else it is next week; a date without a year whose moment has passed (or
  does not exist, like Feb 29) is next year; a bare ``11th`` rolls to the next month.
* Explicit days never roll: ``today 08:00`` may be in the past, ``yesterday`` always is.
* A day given without a time keeps the current time of day (SCR and at(1) both do this),
  so ``tomorrow`` is "this time tomorrow"; only the ISO ``YYYY-MM-DD`` form means midnight.
* A wall-clock time that does not exist (skipped by a DST change) resolves the way the C
  library's mktime does (normally shifted by the size of the gap).

Anything else raises :class:`~scr_core.errors.UsageError` quoting the text.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
import time
from typing import Optional

from scr_core.errors import UsageError

__all__ = ["format_time", "parse_seconds", "parse_time"]

ACCEPTED_FORMS = (
    "accepted: YYYY-MM-DD[THH:MM[:SS]], YYYY-MM-DD, @EPOCH, now, +DURATION "
    "(+2h, +90m, +30s, +1d, +1h30m, +HH:MM[:SS]), DD:HH:MM:SS, and forms like 3pm, "
    "3:00:30pm, 15:00, 1500, noon, midnight, 'tomorrow 15:00', '1500:30 today', "
    "'tues 3:00pm', 'December 11th 03:00am', '3pm 12/11'"
)

_UNIT_SECONDS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "wk": 604800, "week": 604800, "weeks": 604800,
}

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = (
    "january", "february", "march", "april", "may", "june", "july",
    "august", "september", "october", "november", "december",
)
# Abbreviations that are not plain prefixes of the full name.
_EXTRA_WEEKDAYS = {"weds": 2}
_EXTRA_MONTHS: dict[str, int] = {}

_RE_DUR_UNITS = re.compile(r"(?:\d+\s*[a-z]+\s*)+")
_RE_DUR_PART = re.compile(r"(\d+)\s*([a-z]+)")
_RE_COLONS = re.compile(r"\d+(?::\d+){1,3}")
_RE_ISO = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[t ]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*(z|[+-]\d{2}:?\d{2})?)?"
)
_RE_EPOCH = re.compile(r"@\s*(\d+)")
_RE_NOW_PLUS = re.compile(r"now\s*\+\s*(.+)")
_RE_DHMS = re.compile(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}")

_RE_TOK_HMS = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_RE_TOK_HHMMSS = re.compile(r"(\d{1,2})(\d{2}):(\d{2})")  # SCR's "1500:30"
_RE_TOK_HHMM = re.compile(r"(\d{1,2})(\d{2})")  # exactly 4 digits, checked by caller
_RE_TOK_ORD = re.compile(r"(\d{1,2})(?:st|nd|rd|th)")
_RE_TOK_MDY = re.compile(r"(\d{1,2})/(\d{1,2})(?:/(\d{4}|\d{2}))?")
_RE_TOK_YMD = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")


def _usage(text: str, why: str) -> UsageError:
    return UsageError(f"cannot parse time {text!r}: {why}; {ACCEPTED_FORMS}")


def _name_index(tok: str, names: tuple[str, ...], extra: dict[str, int]) -> Optional[int]:
    """Index of a name given in full or abbreviated to a prefix of at least 3 letters."""
    if tok in extra:
        return extra[tok]
    if len(tok) < 3:
        return None
    for i, name in enumerate(names):
        if name.startswith(tok):
            return i
    return None


def _duration(body: str) -> Optional[int]:
    """Seconds for ``N``, ``2h``, ``1h30m``, ``2 hours``, ``HH:MM[:SS]``, ``DD:HH:MM:SS``."""
    body = body.strip().lower()
    if not body:
        return None
    if body.isdigit():
        return int(body)
    if _RE_COLONS.fullmatch(body):
        fields = [int(f) for f in body.split(":")]
        # Only the leading field may exceed its natural range (e.g. 36:00 hours).
        if any(f > 59 for f in fields[1:]) or (len(fields) == 4 and fields[1] > 23):
            return None
        weights = {2: (3600, 60), 3: (3600, 60, 1), 4: (86400, 3600, 60, 1)}[len(fields)]
        return sum(f * w for f, w in zip(fields, weights))
    if _RE_DUR_UNITS.fullmatch(body):
        total = 0
        for num, unit in _RE_DUR_PART.findall(body):
            if unit not in _UNIT_SECONDS:
                return None
            total += int(num) * _UNIT_SECONDS[unit]
        return total
    return None


def parse_seconds(text: str) -> int:
    """Parse a duration for ``scr_halt --seconds``: ``3600``, ``90m``, ``2h``, ``1h30m``,
    ``HH:MM:SS`` (also ``HH:MM`` and ``DD:HH:MM:SS``); a leading ``+`` is allowed.

    Two colon fields mean HH:MM (as in ``+HH:MM`` for times), not Slurm's MM:SS.
    """
    raw = text
    body = str(text).strip()
    if not body.isascii():
        body = ""  # str.isdigit() holds for other scripts' digits, int() takes only some
    if body.startswith("+"):
        body = body[1:]
    secs = _duration(body)
    if secs is None:
        raise UsageError(
            f"cannot parse duration {raw!r}; accepted: seconds (3600), units "
            "(30s, 90m, 2h, 1d, 1h30m), HH:MM[:SS] or DD:HH:MM:SS"
        )
    return secs


def format_time(epoch: float) -> str:
    """ISO 8601 local time without offset, ``YYYY-MM-DDTHH:MM:SS`` (what parse_time reads)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


def _local_epoch(day: _dt.date, hms: tuple[int, int, int]) -> int:
    # tm_isdst=-1 lets the C library decide whether DST applies on that date.
    return int(time.mktime((day.year, day.month, day.day, hms[0], hms[1], hms[2], 0, 0, -1)))


def _check_hms(text: str, h: int, m: int, s: int) -> tuple[int, int, int]:
    if not (0 <= h <= 23 and 0 <= m <= 59 and 0 <= s <= 59):
        raise _usage(text, f"time of day {h:02d}:{m:02d}:{s:02d} out of range")
    return h, m, s


def _make_date(text: str, y: int, m: int, d: int) -> _dt.date:
    try:
        return _dt.date(y, m, d)
    except ValueError as exc:
        raise _usage(text, f"no such date {y:04d}-{m:02d}-{d:02d}") from exc


def _parse_iso(text: str, m: re.Match) -> int:
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    day = _make_date(text, y, mo, d)
    if m.group(4) is None:
        return _local_epoch(day, (0, 0, 0))
    hms = _check_hms(text, int(m.group(4)), int(m.group(5)), int(m.group(6) or 0))
    tz = m.group(7)
    if tz is None:
        return _local_epoch(day, hms)
    # Explicit offset: an absolute instant, independent of the local zone.
    offset = 0
    if tz != "z":
        digits = tz[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + int(digits[2:]) * 60
        if tz[0] == "-":
            offset = -offset
    return calendar.timegm((y, mo, d, *hms, 0, 0, 0)) - offset


class _Human:
    """Accumulates the pieces of an at(1)-style expression, rejecting duplicates."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.hms: Optional[tuple[int, int, int]] = None
        self.hour_12ok = False  # the time can take am/pm (it came from digits)
        self.ampm_done = False
        self.day_offset: Optional[int] = None  # today/tomorrow/yesterday
        self.weekday: Optional[int] = None
        self.month: Optional[int] = None
        self.mday: Optional[int] = None
        self.year: Optional[int] = None

    def set_time(self, h: int, m: int, s: int, digits: bool = True) -> None:
        if self.hms is not None:
            raise _usage(self.text, "more than one time of day")
        self.hms = (h, m, s)
        self.hour_12ok = digits

    def set_ampm(self, tok: str) -> None:
        if self.hms is None or not self.hour_12ok or self.ampm_done:
            raise _usage(self.text, f"{tok!r} must follow a clock time")
        h, m, s = self.hms
        if not 1 <= h <= 12:
            raise _usage(self.text, f"hour {h} is not a 12-hour clock hour")
        self.hms = ((h % 12) + (12 if tok == "pm" else 0), m, s)
        self.ampm_done = True

    def set_date(self, month: Optional[int], mday: int, year: Optional[int] = None) -> None:
        if self.mday is not None or (month is not None and self.month is not None):
            raise _usage(self.text, "more than one date")
        if month is not None:
            self.month = month
        self.mday = mday
        self.year = year

    def set_month(self, month: int) -> None:
        if self.month is not None:
            raise _usage(self.text, "more than one month")
        self.month = month


def _parse_human(text: str, low: str, now: int) -> int:
    s = re.sub(r"\b([ap])\.m\.?", r"\1m", low)
    s = re.sub(r"(\d)(am|pm)\b", r"\1 \2", s)
    tokens = s.replace(",", " ").split()
    if not tokens:
        raise _usage(text, "empty")
    st = _Human(text)
    n = len(tokens)
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < n else ""
        prev = tokens[i - 1] if i > 0 else ""
        if tok in ("am", "pm"):
            st.set_ampm(tok)
        elif tok == "noon":
            st.set_time(12, 0, 0, digits=False)
        elif tok == "midnight":
            st.set_time(0, 0, 0, digits=False)
        elif tok in ("today", "tomorrow", "yesterday"):
            if st.day_offset is not None:
                raise _usage(text, "more than one of today/tomorrow/yesterday")
            st.day_offset = {"today": 0, "tomorrow": 1, "yesterday": -1}[tok]
        elif (m := _RE_TOK_HMS.fullmatch(tok)) is not None:
            st.set_time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
        elif (m := _RE_TOK_HHMMSS.fullmatch(tok)) is not None:
            st.set_time(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        elif (m := _RE_TOK_ORD.fullmatch(tok)) is not None:
            st.set_date(None, int(m.group(1)))
        elif (m := _RE_TOK_MDY.fullmatch(tok)) is not None:
            year = m.group(3)
            y = None if year is None else int(year) + (2000 if len(year) == 2 else 0)
            st.set_date(int(m.group(1)), int(m.group(2)), y)
        elif (m := _RE_TOK_YMD.fullmatch(tok)) is not None:
            st.set_date(int(m.group(2)), int(m.group(3)), int(m.group(1)))
        elif tok.isdigit() and len(tok) == 4:
            m = _RE_TOK_HHMM.fullmatch(tok)
            assert m is not None
            st.set_time(int(m.group(1)), int(m.group(2)), 0)
        elif tok.isdigit() and len(tok) <= 2:
            # Next to a month name a bare number is the day ("dec 11", "11 dec"), unless
            # am/pm makes it an hour; otherwise it is an hour, as in SCR's parsetime.
            near_month = _name_index(prev, _MONTHS, _EXTRA_MONTHS) is not None or (
                _name_index(nxt, _MONTHS, _EXTRA_MONTHS) is not None
            )
            if near_month and nxt not in ("am", "pm") and st.mday is None:
                st.set_date(None, int(tok))
            else:
                st.set_time(int(tok), 0, 0)
        elif (wd := _name_index(tok, _WEEKDAYS, _EXTRA_WEEKDAYS)) is not None:
            if st.weekday is not None:
                raise _usage(text, "more than one weekday")
            st.weekday = wd
        elif (mo := _name_index(tok, _MONTHS, _EXTRA_MONTHS)) is not None:
            st.set_month(mo + 1)
        else:
            raise _usage(text, f"unrecognised word {tok!r}")

    if st.month is not None and st.mday is None:
        raise _usage(text, "a month needs a day")
    given = [x is not None for x in (st.day_offset, st.weekday, st.mday)]
    if sum(given) > 1:
        raise _usage(text, "conflicting day specifications")

    now_tm = time.localtime(now)
    today = _dt.date(now_tm.tm_year, now_tm.tm_mon, now_tm.tm_mday)
    time_given = st.hms is not None
    hms = _check_hms(text, *st.hms) if st.hms is not None else (
        now_tm.tm_hour, now_tm.tm_min, now_tm.tm_sec)

    if st.day_offset is not None:
        return _local_epoch(today + _dt.timedelta(days=st.day_offset), hms)

    if st.weekday is not None:
        day = today + _dt.timedelta(days=(st.weekday - today.weekday()) % 7)
        epoch = _local_epoch(day, hms)
        if epoch <= now:
            epoch = _local_epoch(day + _dt.timedelta(days=7), hms)
        return epoch

    if st.mday is not None:
        if st.year is not None:
            assert st.month is not None
            return _local_epoch(_make_date(text, st.year, st.month, st.mday), hms)
        if st.month is not None:
            # This year if still ahead, else the next year in which the date exists.
            for y in range(today.year, today.year + 9):
                try:
                    day = _dt.date(y, st.month, st.mday)
                except ValueError:
                    continue
                epoch = _local_epoch(day, hms)
                if epoch > now:
                    return epoch
            raise _usage(text, f"no such date {st.month:02d}/{st.mday:02d}")
        # Day of month only: this month if still ahead, else the next month that has it.
        y, mo = today.year, today.month
        for _ in range(13):
            try:
                epoch = _local_epoch(_dt.date(y, mo, st.mday), hms)
            except ValueError:
                epoch = None
            if epoch is not None and epoch > now:
                return epoch
            y, mo = (y + 1, 1) if mo == 12 else (y, mo + 1)
        raise _usage(text, f"no month has a day {st.mday}")

    if not time_given:
        raise _usage(text, "no time or day given")
    epoch = _local_epoch(today, hms)
    if epoch <= now:  # at(1): a time already past today means tomorrow
        epoch = _local_epoch(today + _dt.timedelta(days=1), hms)
    return epoch


def parse_time(text: str, now: Optional[float] = None) -> int:
    """Epoch seconds for ``text`` (see the module docstring for the forms and rules).

    ``now`` (epoch seconds) makes the result deterministic; it defaults to ``time.time()``.
    Raises :class:`UsageError` quoting ``text`` when it cannot be parsed.
    """
    if not isinstance(text, str):
        raise UsageError(f"cannot parse time {text!r}: not a string; {ACCEPTED_FORMS}")
    now_i = int(time.time() if now is None else now)
    low = " ".join(text.strip().lower().split())
    if not low:
        raise _usage(text, "empty")
    if not low.isascii():  # str.isdigit() holds for '¹' and other scripts' digits
        raise _usage(text, "only ASCII letters, digits and punctuation are understood")
    if low == "now":
        return now_i
    m = _RE_EPOCH.fullmatch(low)
    if m is not None:
        return int(m.group(1))
    m = _RE_NOW_PLUS.fullmatch(low)
    if m is not None or low.startswith("+"):
        body = m.group(1) if m is not None else low[1:]
        secs = _duration(body)
        if secs is None:
            raise _usage(text, f"bad duration {body.strip()!r}")
        return now_i + secs
    m = _RE_ISO.fullmatch(low)
    if m is not None:
        return _parse_iso(text, m)
    if _RE_DHMS.fullmatch(low):
        secs = _duration(low)
        if secs is None:
            raise _usage(text, "DD:HH:MM:SS field out of range")
        return now_i + secs
    return _parse_human(text, low, now_i)
