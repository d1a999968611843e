"""Value classes without ``@dataclass``'s build cost.

Every ``@dataclass`` ``exec``s its generated methods when its module is imported (~0.5 ms
each), and the classes below are built by every command, ``scr_should_exit`` included. A
subclass lists its fields in ``_fields`` and writes its own ``__init__``; it gets the
dataclass's ``==`` (same class, same field values), ``repr`` and hashing rules from here.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Record:
    """Mutable and unhashable, as a plain ``@dataclass``. Fields named in ``_uncompared``
    are shown by ``repr`` but ignored by ``==`` (``field(compare=False)``)."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _uncompared: ClassVar[tuple[str, ...]] = ()

    def _compared_values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self._fields if f not in self._uncompared)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._compared_values() == other._compared_values()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{self.__class__.__name__}({shown})"


class FrozenRecord(Record):
    """Immutable and hashable, as ``@dataclass(frozen=True)``: ``__init__`` sets the fields
    with ``object.__setattr__``; copy and pickle rebuild through ``__init__``."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"{self.__class__.__name__} is immutable (cannot assign to {name!r})")

    def __hash__(self) -> int:
        return hash(self._compared_values())

    def __reduce__(self) -> tuple:
        return (self.__class__, tuple(getattr(self, f) for f in self._fields))
