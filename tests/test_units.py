"""Sizes and durations: SCR's abtoull semantics plus what SCR rejected by crashing."""

from __future__ import annotations

import math

import pytest
from scr_core.errors import UsageError
from scr_core.units import format_bytes, parse_bytes, parse_duration

KIB = 1024
MIB = 1024**2
GIB = 1024**3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("4096", 4096),  # plain number: SCR's abtoull crashed on this
        ("10b", 10),
        ("10B", 10),
        ("1k", KIB),
        ("1kb", KIB),
        ("1KB", KIB),
        ("1KiB", KIB),
        ("2m", 2 * MIB),
        ("2MB", 2 * MIB),
        ("2mib", 2 * MIB),
        ("1.5GB", GIB + GIB // 2),
        ("1.5 GiB", GIB + GIB // 2),
        ("  3 g  ", 3 * GIB),
        ("1t", 1024**4),
        ("1TB", 1024**4),
        ("1p", 1024**5),
        ("1PB", 1024**5),
        ("1e", 1024**6),
        ("1EB", 1024**6),
        ("1EiB", 1024**6),
        (".5k", 512),
        ("1.", 1),
        ("1.5", 1),  # fractional bytes truncate, like abtoull
        ("1.1GB", int(1.1 * GIB)),
    ],
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


def test_parse_bytes_is_exact_for_decimals() -> None:
    # Fraction arithmetic: 0.1 MiB is exactly 104857.6 -> 104857.
    assert parse_bytes("0.1MB") == 104857


def test_parse_bytes_accepts_ints() -> None:
    assert parse_bytes(12) == 12


@pytest.mark.parametrize(
    "text", ["", " ", "-1", "-1GB", "abc", "1x", "1 2", "GB", "1.2.3", "1kbb", "1e3", "0x10", "1,5"]
)
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_bytes(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("value", [-1, True])
def test_parse_bytes_rejects_bad_ints(value: int) -> None:
    with pytest.raises(UsageError):
        parse_bytes(value)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (KIB, "1 KiB"),
        (1536, "1.5 KiB"),
        (GIB + GIB // 2, "1.5 GiB"),
        (3 * 1024**4, "3 TiB"),
        (2 * 1024**6, "2 EiB"),
        (5000 * 1024**6, "5000 EiB"),
        (-GIB, "-1 GiB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize("n", [0, 1, 1000, KIB, 7 * MIB, 5 * GIB, 3 * 1024**5])
def test_format_bytes_round_trips_whole_units(n: int) -> None:
    assert parse_bytes(format_bytes(n)) == n


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("90", 90.0),
        ("1.5", 1.5),
        (" 30 ", 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1.5h", 5400.0),
        ("1h30m", 5400.0),
        ("1h 30m 10s", 5410.0),
        ("2D", 172800.0),
        ("5:00", 300.0),  # MM:SS, as squeue prints short times
        ("01:02:03", 3723.0),  # HH:MM:SS
        ("100:00:00", 360000.0),
        ("1-00:00:00", 86400.0),  # D-HH:MM:SS
        ("2-03:04:05", 2 * 86400 + 3 * 3600 + 4 * 60 + 5.0),
        ("1-2", 86400 + 7200.0),  # D-HH
        ("1-02:30", 86400 + 2 * 3600 + 30 * 60.0),  # D-HH:MM
        ("UNLIMITED", math.inf),
        ("infinite", math.inf),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_accepts_numbers() -> None:
    assert parse_duration(3) == 3.0
    assert parse_duration(2.5) == 2.5


@pytest.mark.parametrize(
    "text", ["", "-5", "abc", "5x", "1:2:3:4", "1-", "-1:00", "1h-2m", "h", "N/A", "1--2"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


def test_parse_duration_rejects_negative_number() -> None:
    with pytest.raises(UsageError):
        parse_duration(-1)
