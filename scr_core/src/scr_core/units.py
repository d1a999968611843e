"""Byte sizes and durations as users and resource managers write them.

``parse_bytes`` follows SCR's ``abtoull`` (a number, an optional decimal part,
an optional 1024-based unit, case-insensitive) and fixes what SCR got wrong: a
plain number without a unit is accepted (SCR crashed on it), ``KiB``-style
units are accepted, and garbage raises :class:`~scr_core.errors.UsageError`
naming the text instead of an ``AttributeError``.

``parse_duration`` accepts plain seconds, unit suffixes (``90s``, ``5m``,
``1h30m``, ``2d``) and the clock forms Slurm prints and accepts
(``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``).
"""

from __future__ import annotations

import re
from fractions import Fraction

from scr_core.errors import UsageError

__all__ = ["format_bytes", "parse_bytes", "parse_duration"]

# 1024-based multipliers, as SCR's abtoull: "kb" and "k" both mean KiB.
_BYTE_UNITS = {
    "": 1,
    "b": 1,
}
for _power, _letter in enumerate("kmgtpe", start=1):
    for _suffix in (_letter, _letter + "b", _letter + "ib"):
        _BYTE_UNITS[_suffix] = 1024**_power

_BYTES_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)

_FORMAT_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def parse_bytes(text: str | int) -> int:
    """Return the number of bytes ``text`` describes, e.g. ``"1.5GB"`` -> 1610612736.

    Units are 1024-based whatever their spelling (``k``, ``kb``, ``KiB``...),
    as in SCR. Fractional results are truncated, as SCR's ``abtoull`` does.
    """
    if isinstance(text, bool):  # bool is an int; True bytes is surely a bug
        raise UsageError(f"invalid size {text!r}: expected a number of bytes")
    if isinstance(text, int):
        if text < 0:
            raise UsageError(f"invalid size {text!r}: sizes cannot be negative")
        return text
    m = _BYTES_RE.fullmatch(text)
    if m is None:
        raise UsageError(
            f"invalid size {text!r}: expected a number with an optional unit "
            "(B, KB/KiB, MB/MiB, GB/GiB, TB/TiB, PB/PiB, EB/EiB)"
        )
    number, unit = m.groups()
    multiplier = _BYTE_UNITS.get(unit.lower())
    if multiplier is None:
        raise UsageError(f"invalid size {text!r}: unknown unit {unit!r}")
    # Fraction keeps "1.1GB" exact; float would round the product.
    return int(Fraction(number) * multiplier)


def format_bytes(n: int) -> str:
    """Return ``n`` bytes in the largest binary unit, e.g. ``"1.5 GiB"``, ``"512 B"``."""
    if n < 0:
        return "-" + format_bytes(-n)
    value = float(n)
    unit = 0
    while value >= 1024 and unit < len(_FORMAT_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{n} B"
    text = f"{value:.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return f"{text} {_FORMAT_UNITS[unit]}"


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT_TERM_RE = re.compile(rf"({_NUMBER})\s*([smhd])", re.IGNORECASE)
_UNIT_DURATION_RE = re.compile(rf"(?:{_NUMBER}\s*[smhd]\s*)+", re.IGNORECASE)
_PLAIN_RE = re.compile(_NUMBER)
# Slurm's time formats: "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS".
_CLOCK_RE = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")


def parse_duration(text: str | float) -> float:
    """Return the seconds ``text`` describes.

    Accepted: ``"90"`` or ``"1.5"`` (seconds), ``"30s"``, ``"5m"``, ``"2h"``,
    ``"1d"``, combinations such as ``"1h30m"``, and Slurm's clock forms
    ``"MM:SS"``, ``"HH:MM:SS"``, ``"D-HH"``, ``"D-HH:MM"``, ``"D-HH:MM:SS"``.
    ``"UNLIMITED"``/``"INFINITE"`` (what Slurm prints for no limit) give ``inf``.
    """
    if isinstance(text, bool):
        raise UsageError(f"invalid duration {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise UsageError(f"invalid duration {text!r}: durations cannot be negative")
        return float(text)
    s = text.strip()
    if s.lower() in ("unlimited", "infinite"):
        return float("inf")
    if _PLAIN_RE.fullmatch(s):
        return float(s)
    if _UNIT_DURATION_RE.fullmatch(s):
        total = 0.0
        for number, unit in _UNIT_TERM_RE.findall(s):
            total += float(number) * _DURATION_UNITS[unit.lower()]
        return total
    m = _CLOCK_RE.fullmatch(s)
    # A bare number matched _PLAIN_RE above, so here days or a colon is present.
    if m is not None:
        days, first, second, third = m.groups()
        if days is not None:  # D-HH[:MM[:SS]]
            total = int(days) * 86400 + int(first) * 3600
            total += int(second or 0) * 60 + int(third or 0)
            return float(total)
        if third is None:  # MM:SS
            return float(int(first) * 60 + int(second))
        return float(int(first) * 3600 + int(second) * 60 + int(third))
    raise UsageError(
        f"invalid duration {text!r}: expected seconds, a number with s/m/h/d, or [D-]HH:MM:SS"
    )
