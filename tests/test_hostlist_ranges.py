"""Range algebra on hostlists: fold_difference / fold_intersection / fold_union.

Checked against a plain implementation on Python sets of expanded names, on
random gappy 1-D and 2-D sets, zero-padded and multi-prefix names (seeded
``random`` and hypothesis), and on edge cases.
"""

from __future__ import annotations

import gc
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scr_core.errors import UsageError

from scr_core import hostlist as hl


def names_of(hosts: str | list[str]) -> list[str]:
    return hl.expand(hosts) if isinstance(hosts, str) else list(hosts)


def ref_minus(a: str | list[str], *others: str | list[str]) -> str:
    drop: set[str] = set()
    for other in others:
        drop |= set(names_of(other))
    return hl.fold([n for n in names_of(a) if n not in drop])


def ref_and(a: str | list[str], *others: str | list[str]) -> str:
    keep = set(names_of(a))
    for other in others:
        keep &= set(names_of(other))
    return hl.fold(sorted(keep))


def ref_or(*lists: str | list[str]) -> str:
    return hl.fold([n for hosts in lists for n in names_of(hosts)])


def check(a: str | list[str], b: str | list[str]) -> None:
    """Every operation, with strings and with lists, equals the set-based result exactly.

    The expected strings are fold() of the sets' names; fold() formats as the
    range algebra does, so the sets are also compared on their own.
    """
    for x, y in ((a, b), (b, a)):
        sx, sy = set(names_of(x)), set(names_of(y))
        want_minus, want_and, want_or = ref_minus(x, y), ref_and(x, y), ref_or(x, y)
        assert set(hl.expand(want_minus)) == sx - sy
        for xx in (x, names_of(x)):
            for yy in (y, names_of(y)):
                got = hl.fold_difference(xx, yy)
                assert got == want_minus, (xx, yy)
                assert sorted(hl.expand(got)) == sorted(sx - sy)
                got = hl.fold_intersection(xx, yy)
                assert got == want_and, (xx, yy)
                assert sorted(hl.expand(got)) == sorted(sx & sy)
                got = hl.fold_union(xx, yy)
                assert got == want_or, (xx, yy)
                assert sorted(hl.expand(got)) == sorted(sx | sy)


# --------------------------------------------------------------------------- random sets


def gappy(rnd: random.Random, names: list[str], keep: float) -> list[str]:
    out = [n for n in names if rnd.random() < keep]
    rnd.shuffle(out) if rnd.random() < 0.3 else None
    return out


@pytest.mark.parametrize("seed", range(40))
def test_random_gappy_sets_match_set_algebra(seed: int) -> None:
    rnd = random.Random(seed)
    width = rnd.choice([1, 1, 2, 3, 4])
    hi = rnd.choice([9, 15, 120, 1100])
    shapes = [
        f"n[{0 if width > 1 else 1:0{width}d}-{hi:0{width}d}]",  # 1-D, maybe padded
        f"rack[1-{rnd.randint(1, 12)}]n[{1:0{width}d}-{min(hi, 300):0{width}d}]",  # 2-D
        f"a[1-{rnd.randint(1, 50)}],b[{1:0{width}d}-{hi:0{width}d}].ib,login",  # multi-prefix
        f"x[{1:0{width}d}-{hi:0{width}d}],x[1-{hi}]",  # one value spelt two ways
    ]
    universe = hl.unique(rnd.choice(shapes))
    a = gappy(rnd, universe, rnd.choice([0.3, 0.9, 1.0]))
    b = gappy(rnd, universe, rnd.choice([0.1, 0.5, 0.9]))
    check(hl.fold(a), hl.fold(b))  # the folded (string) forms, as Slurm prints them
    check(a, b)  # the lists


@pytest.mark.parametrize("seed", range(10))
def test_random_2d_multidim_strings(seed: int) -> None:
    # Operands written with several bracket groups, and with digits after the last bracket.
    rnd = random.Random(100 + seed)
    r, n = rnd.randint(1, 9), rnd.randint(1, 40)
    a = f"rack[1-{r}]n[{rnd.randint(1, 5):03d}-{n + 5:03d}]"
    universe = hl.expand(a)
    b = hl.fold(gappy(rnd, universe, 0.5), multidim=rnd.random() < 0.5)
    check(a, b)
    check(f"n[1-{n}].ib0,n[1-{n}]-[1-2]", f"n[{rnd.randint(1, n)}-{n}].ib0,n1-2")


_prefix = st.sampled_from(["n", "node", "x.y", "", "r1n", "c_"])
_suffix = st.sampled_from(["", ".llnl.gov", "-ib"])
_name = st.one_of(
    st.builds(
        lambda p, v, w, s: f"{p}{v:0{w}d}{s}",
        _prefix,
        st.integers(0, 130),
        st.integers(0, 4),
        _suffix,
    ),
    st.builds(
        lambda r, n, w: f"rack{r}n{n:0{w}d}",
        st.integers(0, 5),
        st.integers(0, 30),
        st.integers(1, 3),
    ),
    st.sampled_from(["login", "head", "io-a"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_name, max_size=60), st.lists(_name, max_size=60), st.booleans())
def test_hypothesis_matches_set_algebra(a: list[str], b: list[str], as_text: bool) -> None:
    if as_text:
        check(hl.fold(a), hl.fold(b))
    else:
        check(a, b)


# --------------------------------------------------------------------------- edge cases


def test_examples() -> None:
    assert hl.fold_difference("n[1-1000000]", "n[2-999999]") == "n[1,1000000]"
    assert hl.fold_intersection("n[1-10]", "n[5-20]") == "n[5-10]"
    assert hl.fold_union("n[1-3]", "n[4-6]", "n8") == "n[1-6,8]"
    assert hl.fold_difference("rack[1-2]n[001-250]", "rack1n[001-125]") == (
        "rack1n[126-250],rack2n[001-250]"
    )
    assert hl.fold_intersection("n[1-9]", "n[2-8]", "n[5-20]") == "n[5-8]"
    assert hl.fold_difference("n[1-9]", "n2", "n[7-8]") == "n[1,3-6,9]"


def test_empty_operands() -> None:
    assert hl.fold_difference("", "n1") == ""
    assert hl.fold_difference("n[1-2]", "") == "n[1-2]"
    assert hl.fold_difference([], []) == ""
    assert hl.fold_intersection("n[1-3]", "") == ""
    assert hl.fold_intersection("", "") == ""
    assert hl.fold_union() == ""
    assert hl.fold_union("", []) == ""
    assert hl.fold_difference("n[1-3]", "n[1-3]") == ""


def test_duplicates_are_merged() -> None:
    assert hl.fold_difference("n1,n1,n[1-3],n2", "n3") == "n[1-2]"
    assert hl.fold_union(["n2", "n2", "n1"], "n[1-2]") == "n[1-2]"
    assert hl.fold_intersection("n[1-5],n[3-7]", "n[4-9]") == "n[4-7]"


def test_padding_is_part_of_the_name() -> None:
    assert hl.fold_difference("n[01-10]", "n[1-10]") == "n[01-09]"  # n10 is n10 either way
    assert hl.fold_intersection("n[01-10]", "n[1-10]") == "n10"
    assert hl.fold_union("n[01-03]", "n[1-3]") == "n[1-3,01-03]"
    assert hl.fold_intersection("n[008-012]", "n[08-12]") == ""  # n010 is not n10
    assert hl.fold_intersection("n[08-12]", "n[8-12]") == "n[10-12]"
    assert hl.fold_difference("n[098-101]", "n099") == "n[098,100-101]"
    assert hl.fold_union("n[098-099]", "n[100-101]") == "n[098-101]"


def test_names_without_digits_and_odd_forms() -> None:
    assert hl.fold_difference("login,n[1-3],head", "head") == "login,n[1-3]"
    assert hl.fold_union("n", "n[1-2]") == "n,n[1-2]"
    assert hl.fold_intersection("n[1-3].ib0", "n2.ib0") == "n2.ib0"  # digits after the bracket
    assert hl.fold_difference("n1[0-5]", "n12") == "n[10-11,13-15]"  # digits before it
    assert hl.fold_difference("[1-20]", "[5-9]") == "[1-4,10-20]"  # all-digit names
    assert hl.fold_union("n[5-7,1-3]", "n4") == "n[1-7]"  # unsorted ranges


@pytest.mark.parametrize(
    "bad",
    [
        "n[]", "n[2-1]", "n[1,,2]", "n[1-2", "n@x", "-n1", "a,,b", "n[1/2]", "n[a]",
        # bracket bodies the range parser checks without a regex: each kind of flaw,
        # in the one-bracket fast path and behind a second group
        "n[1--2]", "n[1-2-3]", "n[-1]", "n[1-]", "n[,1]", "n[1,]", "n[1-2,-3]",
        "n[+1]", "n[1_0]", "n[ 1]", "a[1-2],b[3--4]", "r[1-2]n[1,,2]", "r[1-2]n[+1]",
    ],
)
def test_malformed_operands_raise_usage_error(bad: str) -> None:
    for call in (
        lambda: hl.fold_difference(bad, "n1"),
        lambda: hl.fold_intersection("n1", bad),
        lambda: hl.fold_union(bad),
    ):
        with pytest.raises(UsageError) as info:
            call()
        assert "invalid hostlist" in str(info.value)
    with pytest.raises(UsageError):
        hl.expand(bad)  # the same verdict on the expanding path


def test_bad_names_in_lists_raise_usage_error() -> None:
    for bad in (["n1", "a b"], ["-x"], [""], ["n1\nn2"], ["n1", "x2\nx3", "n2"]):
        with pytest.raises(UsageError):
            hl.fold_difference(bad, [])
        with pytest.raises(UsageError):
            hl.fold(bad)


def test_unsorted_padded_bodies_keep_their_padding() -> None:
    # A body whose ranges are not in order still names n01, not n1 (another node).
    assert hl.fold("n[10,01]") == hl.fold(["n10", "n01"]) == "n[01,10]"
    assert hl.fold_union("n[10,01]") == "n[01,10]"
    assert hl.fold_difference("n[10,01,02]", "n02") == "n[01,10]"
    assert hl.fold_intersection("r1n[250,001-003],r2n[2]", "r1n[001-002,250]") == "r1n[001-002,250]"


def test_folding_leaves_the_garbage_collector_as_it_found_it() -> None:
    # fold and the range algebra pause the cyclic collector while they run
    assert gc.isenabled()
    hl.fold_difference("n[1-100]", "n[5-9]")
    hl.fold(["n1", "n2"])
    assert gc.isenabled()
    gc.disable()
    try:
        hl.fold_union("n[1-3]", "n5")
        assert not gc.isenabled()  # not turned on behind the caller's back
    finally:
        gc.enable()
    with pytest.raises(UsageError):
        hl.fold_union("n[3-1]")
    assert gc.isenabled()  # restored after an error too


def test_huge_compressed_operands_are_not_expanded() -> None:
    # 9,999,999 names (just under MAX_NAMES) would take seconds and gigabytes to expand.
    big = "n[1-9999999]"
    assert hl.fold_difference(big, "n[2-9999998]") == "n[1,9999999]"
    assert hl.fold_intersection(big, "rack1,n[5-6]") == "n[5-6]"
    with pytest.raises(UsageError):
        hl.fold_union("n[1-99999999]")  # the same size limit as expand


def test_range_parsing_fast_path_agrees_with_expand() -> None:
    rnd = random.Random(5)
    names = gappy(rnd, hl.expand("rack[1-30]n[001-120]"), 0.6)
    text = hl.fold(names)  # one bracket per rack: the flat fast path
    assert hl.fold_union(text) == hl.fold(names) == hl.fold(hl.expand(text))
    assert hl.count(hl.fold_union(text)) == len(names)
