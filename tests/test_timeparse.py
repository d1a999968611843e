"""scr_core.timeparse: every accepted form against a fixed ``now``, in the local zone and
under a zone with DST; expected values come from time.mktime so the checks hold anywhere."""

from __future__ import annotations

import calendar
import os
import time

import pytest
from scr_core.errors import EXIT_USAGE, UsageError
from scr_core.timeparse import format_time, parse_seconds, parse_time


def L(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    """Local wall-clock time to epoch, the same way the parser resolves it."""
    return int(time.mktime((y, mo, d, h, mi, s, 0, 0, -1)))


# Tuesday 2024-12-10 14:00:00 local
NOW = L(2024, 12, 10, 14, 0, 0)


def test_fixed_now_is_a_tuesday() -> None:
    assert time.localtime(NOW).tm_wday == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("NOW", NOW),
        ("@1700000000", 1700000000),
        ("+2h", NOW + 7200),
        ("+90m", NOW + 5400),
        ("+30s", NOW + 30),
        ("+1d", NOW + 86400),
        ("+1h30m", NOW + 5400),
        ("+1h 30m", NOW + 5400),
        ("+2 hours", NOW + 7200),
        ("+45", NOW + 45),
        ("+01:30", NOW + 5400),
        ("+01:30:15", NOW + 5415),
        ("+36:00", NOW + 36 * 3600),
        ("+1:02:03:04", NOW + 86400 + 2 * 3600 + 3 * 60 + 4),
        ("now + 2h", NOW + 7200),
        ("now+90m", NOW + 5400),
        # SCR's parsetime: a 4-field colon form is DD:HH:MM:SS from now
        ("42:10:36:30", NOW + 42 * 86400 + 10 * 3600 + 36 * 60 + 30),
    ],
)
def test_epoch_and_relative(text: str, expected: int) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-12-11T15:00", L(2024, 12, 11, 15)),
        ("2024-12-11T15:00:30", L(2024, 12, 11, 15, 0, 30)),
        ("2024-12-11 15:00", L(2024, 12, 11, 15)),
        ("2024-12-11 15:00:30", L(2024, 12, 11, 15, 0, 30)),
        ("2024-12-11", L(2024, 12, 11)),
        ("2023-01-05T08:00:00", L(2023, 1, 5, 8)),  # ISO is never rolled forward
        ("  2024-12-11T15:00  ", L(2024, 12, 11, 15)),
        ("2024-12-11T15:00:00Z", calendar.timegm((2024, 12, 11, 15, 0, 0, 0, 0, 0))),
        ("2024-12-11T15:00:00+01:00", calendar.timegm((2024, 12, 11, 14, 0, 0, 0, 0, 0))),
        ("2024-12-11T15:00-0500", calendar.timegm((2024, 12, 11, 20, 0, 0, 0, 0, 0))),
    ],
)
def test_iso(text: str, expected: int) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # clock times still ahead today
        ("3pm", L(2024, 12, 10, 15)),
        ("3PM", L(2024, 12, 10, 15)),
        ("3 pm", L(2024, 12, 10, 15)),
        ("3 p.m.", L(2024, 12, 10, 15)),
        ("3:00pm", L(2024, 12, 10, 15)),
        ("3:00:30 pm", L(2024, 12, 10, 15, 0, 30)),
        ("15:00", L(2024, 12, 10, 15)),
        ("15:00:30", L(2024, 12, 10, 15, 0, 30)),
        ("1500", L(2024, 12, 10, 15)),
        ("1500:30", L(2024, 12, 10, 15, 0, 30)),
        ("15", L(2024, 12, 10, 15)),
        ("11pm", L(2024, 12, 10, 23)),
        # already past today: at(1) rolls to tomorrow
        ("1pm", L(2024, 12, 11, 13)),
        ("9am", L(2024, 12, 11, 9)),
        ("9", L(2024, 12, 11, 9)),
        ("03:00am", L(2024, 12, 11, 3)),
        ("14:00", L(2024, 12, 11, 14)),  # exactly now is not ahead
        ("noon", L(2024, 12, 11, 12)),
        ("12pm", L(2024, 12, 11, 12)),
        ("midnight", L(2024, 12, 11, 0)),
        ("12am", L(2024, 12, 11, 0)),
        # explicit days never roll
        ("tomorrow 15:00", L(2024, 12, 11, 15)),
        ("tomorrow, 3pm", L(2024, 12, 11, 15)),
        ("1500 tomorrow", L(2024, 12, 11, 15)),
        ("1500:30 today", L(2024, 12, 10, 15, 0, 30)),
        ("today 08:00", L(2024, 12, 10, 8)),
        ("yesterday noon", L(2024, 12, 9, 12)),
        ("today", NOW),
        ("tomorrow", L(2024, 12, 11, 14)),
        ("yesterday", L(2024, 12, 9, 14)),
        ("noon tomorrow", L(2024, 12, 11, 12)),
        # weekdays: the next such day; today only if the time is still ahead
        ("3:00 pm Monday", L(2024, 12, 16, 15)),
        ("mon", L(2024, 12, 16, 14)),
        ("tues 3:00:30pm", L(2024, 12, 10, 15, 0, 30)),
        ("tuesday 1pm", L(2024, 12, 17, 13)),
        ("tue", L(2024, 12, 17, 14)),
        ("wed", L(2024, 12, 11, 14)),
        ("weds 9am", L(2024, 12, 11, 9)),
        ("thurs noon", L(2024, 12, 12, 12)),
        ("Friday 17:00", L(2024, 12, 13, 17)),
        ("sat", L(2024, 12, 14, 14)),
        ("sunday midnight", L(2024, 12, 15, 0)),
        # calendar dates
        ("December 11th 03:00am", L(2024, 12, 11, 3)),
        ("december 9th 03:00am", L(2025, 12, 9, 3)),  # passed this year
        ("Dec 11", L(2024, 12, 11, 14)),
        ("11 dec 3pm", L(2024, 12, 11, 15)),
        ("dec 11 3pm", L(2024, 12, 11, 15)),
        ("jan 2nd", L(2025, 1, 2, 14)),
        ("sept 1st 1200", L(2025, 9, 1, 12)),
        ("feb 29 noon", L(2028, 2, 29, 12)),  # next year that has the date
        ("3pm 12/11", L(2024, 12, 11, 15)),
        ("12/11 3pm", L(2024, 12, 11, 15)),
        ("1/15", L(2025, 1, 15, 14)),
        ("12/11/2025 15:00", L(2025, 12, 11, 15)),
        ("12/11/25 15:00", L(2025, 12, 11, 15)),
        ("2024-12-24 3pm", L(2024, 12, 24, 15)),
        ("11th", L(2024, 12, 11, 14)),
        ("5th", L(2025, 1, 5, 14)),
        ("31st 09:00", L(2024, 12, 31, 9)),
    ],
)
def test_human_forms(text: str, expected: int) -> None:
    got = parse_time(text, now=NOW)
    assert got == expected, f"{text!r}: {format_time(got)} != {format_time(expected)}"


def test_day_of_month_skips_short_months() -> None:
    now = L(2025, 1, 31, 12)
    assert parse_time("31st 09:00", now=now) == L(2025, 3, 31, 9)


def test_weekday_same_day_time_ahead_counts() -> None:
    assert parse_time("tuesday 23:59", now=NOW) == L(2024, 12, 10, 23, 59)


def test_deterministic_and_default_now() -> None:
    assert parse_time("tues 1pm", now=NOW) == parse_time("tues 1pm", now=NOW)
    before = int(time.time())
    got = parse_time("+10s")
    assert before + 10 <= got <= int(time.time()) + 10


def test_fractional_now() -> None:
    assert parse_time("now", now=NOW + 0.9) == NOW
    assert parse_time("+1s", now=NOW + 0.9) == NOW + 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "garbage",
        "soon",
        "25:00",
        "13pm",
        "0am",
        "3pm 4pm",
        "noon pm",
        "pm",
        "1500 3pm",
        "tomorrow yesterday",
        "monday tuesday",
        "monday 12/11",
        "tomorrow dec 11",
        "december",
        "december 3pm",
        "12/32",
        "2/30",
        "2024-02-30",
        "2024-13-01",
        "2024-12-11T25:00",
        "+",
        "+2x",
        "+1:75",
        "+-2h",
        "now - 2h",
        "123",
        "1700000000",
        "@",
        "@abc",
        "12:00:00:00:00",
        "1:30:99:00",
        "1575",
        "32nd",
    ],
)
def test_bad_input_raises_usage_error_quoting_text(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_time(text, now=NOW)
    assert repr(text) in str(info.value)
    assert "accepted" in str(info.value)
    assert info.value.exit_code == EXIT_USAGE


def test_non_string_rejected() -> None:
    with pytest.raises(UsageError):
        parse_time(1700000000, now=NOW)  # type: ignore[arg-type]


def test_format_time_round_trip() -> None:
    for epoch in (NOW, NOW + 12345, L(2024, 7, 1, 23, 59, 59), 0):
        text = format_time(epoch)
        assert len(text) == 19 and text[10] == "T"
        assert parse_time(text, now=NOW) == epoch
    assert format_time(L(2024, 12, 11, 15, 0, 30)) == "2024-12-11T15:00:30"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3600", 3600),
        ("0", 0),
        (" 90m ", 5400),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1d", 86400),
        ("30s", 30),
        ("+30s", 30),
        ("2 hours", 7200),
        ("01:30:00", 5400),
        ("1:30", 5400),
        ("1:00:00:00", 86400),
    ],
)
def test_parse_seconds(text: str, expected: int) -> None:
    assert parse_seconds(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-5", "1.5h", "1:60:00", "2x", "1h30", "::"])
def test_parse_seconds_bad(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_seconds(text)
    assert repr(text) in str(info.value)


# --------------------------------------------------------------- a zone with DST changes


@pytest.fixture
def new_york():
    if not os.path.exists("/usr/share/zoneinfo/America/New_York"):
        pytest.skip("tzdata not installed")
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_dst_spring_forward(new_york) -> None:
    now = L(2024, 3, 9, 12)  # the day before clocks go forward
    assert parse_time("tomorrow 12:00", now=now) - now == 23 * 3600
    assert parse_time("tomorrow", now=now) - now == 23 * 3600
    assert parse_time("+1d", now=now) - now == 24 * 3600  # durations are elapsed time
    assert parse_time("sun noon", now=now) == L(2024, 3, 10, 12)
    assert format_time(parse_time("2024-03-10T12:00", now=now)) == "2024-03-10T12:00:00"


def test_dst_fall_back(new_york) -> None:
    now = L(2024, 11, 2, 12)
    assert parse_time("tomorrow 12:00", now=now) - now == 25 * 3600
    assert parse_time("noon", now=now) - now == 25 * 3600
    assert parse_time("2024-11-03T12:00:00Z", now=now) == calendar.timegm(
        (2024, 11, 3, 12, 0, 0, 0, 0, 0)
    )


def test_dst_local_iso_is_wall_clock(new_york) -> None:
    winter = parse_time("2024-01-15T12:00", now=NOW)
    summer = parse_time("2024-07-15T12:00", now=NOW)
    assert time.localtime(winter).tm_hour == 12 and time.localtime(winter).tm_isdst == 0
    assert time.localtime(summer).tm_hour == 12 and time.localtime(summer).tm_isdst == 1
