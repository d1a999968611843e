"""scr_core.records: the dataclass behaviour of the plain value classes."""

import copy
import pickle

import pytest
from scr_core.control.halt import HaltState
from scr_core.params import ParamInfo
from scr_core.records import FrozenRecord, Record


class Point(Record):
    __slots__ = ("note", "x", "y")
    _fields = ("x", "y", "note")
    _uncompared = ("note",)

    def __init__(self, x, y, note=""):
        self.x, self.y, self.note = x, y, note


class Key(FrozenRecord):
    __slots__ = ("a", "b")
    _fields = ("a", "b")

    def __init__(self, a, b=0):
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)


def test_record_compares_fields_of_the_same_class_and_is_unhashable():
    assert Point(1, 2, "x") == Point(1, 2, "y")  # note is not compared
    assert Point(1, 2) != Point(1, 3)
    assert Point(1, 2) != Key(1, 2)
    assert repr(Point(1, 2, "n")) == "Point(x=1, y=2, note='n')"
    with pytest.raises(TypeError):
        hash(Point(1, 2))


def test_frozen_record_is_immutable_hashable_copyable_and_picklable():
    k = Key(1, 2)
    with pytest.raises(AttributeError, match="Key is immutable"):
        k.a = 3
    assert {k: "v"}[Key(1, 2)] == "v"
    assert copy.deepcopy(k) == k
    p = ParamInfo("SCR_RUNS", "1", "runs")
    assert pickle.loads(pickle.dumps(p)) == p


def test_halt_state_ignores_the_read_error_in_comparisons():
    assert HaltState(checkpoints_left=0, corrupt="bad CRC") == HaltState(checkpoints_left=0)
