"""Hostlists: expansion in the order written, folding, set algebra on lists."""

from __future__ import annotations

import os
import random

import hostlist as pyhostlist  # python-hostlist, the reference for expansion
import pytest
from ClusterShell.NodeSet import NOGROUP_RESOLVER, NodeSet
from hypothesis import given, settings
from hypothesis import strategies as st
from scr_core.errors import UsageError

from scr_core import hostlist as hl

# --------------------------------------------------------------------------- expand


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", []),
        ("   ", []),
        ("n1", ["n1"]),
        ("n1,n2", ["n1", "n2"]),
        ("n[1-3]", ["n1", "n2", "n3"]),
        ("n[1-3,7]", ["n1", "n2", "n3", "n7"]),
        ("n[08-10]", ["n08", "n09", "n10"]),
        ("n[001-003]", ["n001", "n002", "n003"]),
        ("n[7]", ["n7"]),
        ("n[007]", ["n007"]),
        ("n[98-101]", ["n98", "n99", "n100", "n101"]),
        ("n[098-101]", ["n098", "n099", "n100", "n101"]),
        ("rhea[2-4,6].llnl.gov", [f"rhea{i}.llnl.gov" for i in (2, 3, 4, 6)]),
        (
            "rack[1-2]n[01-03]",
            ["rack1n01", "rack1n02", "rack1n03", "rack2n01", "rack2n02", "rack2n03"],
        ),
        ("r[1-2]-[3-4]x", ["r1-3x", "r1-4x", "r2-3x", "r2-4x"]),
        ("[1-3]", ["1", "2", "3"]),
        ("a[1-2],b,c[5]", ["a1", "a2", "b", "c5"]),
        ("node-a_1.x", ["node-a_1.x"]),
        # whitespace separates, as in Slurm and `$(cat hostfile)`
        ("n1 n2\nn3", ["n1", "n2", "n3"]),
        ("n1, n2 ,n3", ["n1", "n2", "n3"]),
        (" n[1-2] ", ["n1", "n2"]),
    ],
)
def test_expand(text: str, names: list[str]) -> None:
    assert hl.expand(text) == names


def test_expand_keeps_order_written() -> None:
    # SCR sorted by trailing number across prefixes (b5,a3,c1 -> c1,a3,b5); NodeSet sorts too.
    assert hl.expand("b5,a3,c1") == ["b5", "a3", "c1"]
    assert hl.expand("n[5,3,1-2]") == ["n5", "n3", "n1", "n2"]
    assert hl.expand("z[2-1000],a1")[-1] == "a1"


def test_expand_keeps_duplicates_and_unique_drops_them() -> None:
    names = hl.expand("n[1-3],n2,n[1-2]")
    assert names == ["n1", "n2", "n3", "n2", "n1", "n2"]
    assert hl.unique(names) == ["n1", "n2", "n3"]
    assert hl.unique("n[3,1,3,2,1]") == ["n3", "n1", "n2"]


REFERENCE_CASES = [
    "n[1-10]",
    "n[1-3,5,7-9,12]",
    "n[0001-0012,0100-0103]",
    "n[08-12]",
    "n[8-12,014-016]",
    "n[1-2,01-02]",
    "rhea[2-4,6].llnl.gov,rhea10.llnl.gov",
    "rack[1-3]n[001-004]",
    "rack[01-02]-node[7-9].ib",
    "a[1-2]b[3-4]c[5-6]",
    "x1,y[2-3],z,w[9-11]q",
    "[1-3],[07-09]",
    "c[10-12]n[2,4]s[0-1]",
]


@pytest.mark.parametrize("text", REFERENCE_CASES)
def test_expand_matches_python_hostlist(text: str) -> None:
    assert hl.expand(text) == pyhostlist.expand_hostlist(text, allow_duplicates=True)


@pytest.mark.parametrize("text", REFERENCE_CASES)
def test_expand_matches_nodeset_as_a_set(text: str) -> None:
    assert sorted(hl.expand(text)) == sorted(NodeSet(text, resolver=NOGROUP_RESOLVER))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("n[1-3", "unbalanced"),
        ("n1-3]", "unbalanced"),
        ("n[[1-3]]", "unbalanced"),
        ("n[1-[2]]", "unbalanced"),
        ("n]1[", "unbalanced"),
        ("n[3-1]", "decreasing"),
        ("n[]", "empty brackets"),
        ("n[a-b]", "bad range"),
        ("n[1-]", "bad range"),
        ("n[-1]", "bad range"),
        ("n[1,,2]", "bad range"),
        ("n[1-2-3]", "bad range"),
        ("n[1-10/2]", "steps"),
        ("a,,b", "empty item"),
        ("a,", "empty item"),
        (",a", "empty item"),
        (",", "empty item"),
        ("@rack1", "@group"),
        ("n1,@io", "@group"),
        ("-n1", "must not start with '-'"),
        ("n1,-rf", "must not start with '-'"),
        ("-x[1-2]", "must not start with '-'"),
        ("n1;rm", "';'"),
        ("n$1", "'$'"),
        ("n1!n2", "'!'"),
        ("nöde", "'ö'"),
        ("n[1-10000001]", "more than"),
        ("a[1-5000]b[1-5000]", "more than"),
    ],
)
def test_malformed_hostlists_raise_usage_error(text: str, why: str) -> None:
    with pytest.raises(UsageError) as info:
        hl.expand(text)
    message = str(info.value)
    assert repr(text) in message
    assert why in message
    assert info.value.exit_code == 2


def test_error_message_shortens_huge_input() -> None:
    text = ",".join(f"n{i}" for i in range(10000)) + ",,"
    with pytest.raises(UsageError) as info:
        hl.expand(text)
    assert len(str(info.value)) < 300


def test_expand_rejects_non_strings() -> None:
    with pytest.raises(UsageError):
        hl.expand(None)  # type: ignore[arg-type]


def test_expand_million_names() -> None:
    names = hl.expand("n[1-1000000]")
    assert len(names) == 1_000_000
    assert names[0] == "n1" and names[-1] == "n1000000"
    names = hl.expand("r[1-1000]n[0001-1000]")
    assert len(names) == 1_000_000
    assert names[1000] == "r2n0001"


# Long ranges are where expand_joined copies blocks of 1,000 from a template:
# ranges that start and end inside, on and around block edges, from 0, padded
# to fewer, exactly and more digits than the block's three, behind other groups.
JOINED_CASES = [
    *REFERENCE_CASES,
    "n[1-1000000]",
    "n[0-4000]",
    "n[999-5001]",
    "n[1000-3999]",
    "n[1000-4000],n[2-3],n2",
    "n[0998-123456]x",
    "n[07-12345]",
    "n[0000001-0010000]",
    "r[1-3]n[0001-5000].ib",
    "r[1-2]-[3-4]x[0-3000]",
    # several heads over a group of whole blocks: the heads' template is made of blocks
    "r[1-3]n[1000-3999]",
    "rack[1-10]n[0001-5000]",
    "r[1-4]n[0-4000],r[5-6]-[1-3]n[998-7001]x",
    "rack[1-4]n[001-250],login,rack[2-3]n[001-250]",
    "a b\nc[1-3000]",
]


def _textjoin_built() -> object:
    try:
        from scr_core import _textjoin
    except ImportError:
        if os.environ.get("CI") == "true":  # dev/setup installs a compiler: it must build
            raise
        pytest.skip("scr_core._textjoin is not built (no C compiler at install): "
                    "only the Python path is tested")
    return _textjoin


@pytest.fixture(params=["C helper", "Python"])
def joined_calls(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list | None:
    """expand_joined with its C helper (the calls made to it are recorded in the list
    returned), then with its pure-Python path (None)."""
    if request.param == "Python":
        monkeypatch.setattr(hl, "_textjoin", lambda: None)
        return None
    module = _textjoin_built()
    calls: list = []

    class Counting:
        @staticmethod
        def join_pieces(*args: object) -> object:
            calls.append(args)
            return module.join_pieces(*args)

    monkeypatch.setattr(hl, "_textjoin", lambda: Counting)
    return calls


@pytest.mark.parametrize("text", JOINED_CASES)
@pytest.mark.parametrize(
    "sep", [",", "\n", " :: ", "", "\x00", "\x01x", "%", "%s", "%%", "\u00e9", " \u2603 "]
)
def test_expand_joined_is_the_joined_expansion(
    text: str, sep: str, joined_calls: list | None
) -> None:
    assert hl.expand_joined(text, sep) == sep.join(hl.expand(text))
    if joined_calls is not None and "[" in text and "\x00" not in sep and "\x01" not in sep:
        assert joined_calls  # the helper was asked (it declines a non-ASCII separator)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["n", "rack", "", "x-", "r1n"]),
            st.lists(
                st.tuples(st.integers(0, 30_000), st.integers(0, 9_000), st.integers(1, 7)),
                min_size=1,
                max_size=3,
            ),
            st.sampled_from(["", ".ib", "x"]),
            # heads before the group: none, few or several (2-D template over blocks)
            st.sampled_from(["", "r[1-2]", "r[1-5]", "r[1-3]-[1-2]"]),
        ),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from([",", "\n", " "]),
)
def test_expand_joined_hypothesis(items: list, sep: str) -> None:
    parts = []
    for head, ranges, lit, heads in items:
        body = ",".join(f"{lo:0{w}d}-{lo + n:0{w}d}" for lo, n, w in ranges)
        parts.append(f"{heads}{head}[{body}]{lit}")
    text = ",".join(parts)
    expected = sep.join(hl.expand(text))
    assert hl.expand_joined(text, sep) == expected  # with the C helper where it is built
    helper = hl._textjoin
    hl._textjoin = lambda: None  # (a function-scoped monkeypatch does not mix with @given)
    try:
        assert hl.expand_joined(text, sep) == expected
    finally:
        hl._textjoin = helper


@pytest.mark.parametrize("text", ["n[1-3", "n[3-1]", "n[1--2]", "a,,b", "n[1-10000001]", "n@x"])
def test_expand_joined_rejects_what_expand_rejects(text: str) -> None:
    with pytest.raises(UsageError) as joined:
        hl.expand_joined(text)
    with pytest.raises(UsageError) as listed:
        hl.expand(text)
    assert str(joined.value) == str(listed.value)


# scr_core._textjoin.join_pieces on its own: its contract, beyond what expand_joined asks.


def test_join_pieces_writes_strs_and_joins_of_cuts() -> None:
    tj = _textjoin_built()
    cuts = [",n", "x", "y"]
    pieces = ["ab", (["1", "22"], cuts), "", ([], cuts), (["3"], []), (["4"], ["only"]), "z"]
    expected = "ab" + "".join(v.join(cuts) for v in ["1", "22"]) + "only" + "z"
    assert tj.join_pieces(pieces) == expected
    for skip in range(len(expected) + 3):
        text = tj.join_pieces(pieces, skip)
        assert text == expected[skip:]
        assert text.isascii() and type(text) is str
    assert tj.join_pieces([]) == ""


def test_join_pieces_leaves_wide_text_to_python() -> None:
    tj = _textjoin_built()
    assert tj.join_pieces(["a", "\u00e9"]) is NotImplemented  # Latin-1: one byte, not ASCII
    assert tj.join_pieces([(["a"], ["x", "\u2603"])]) is NotImplemented
    assert tj.join_pieces([(["\U0001f600"], ["x", "y"])]) is NotImplemented


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("ab",), TypeError),
        (([b"ab"],), TypeError),
        (([("a", ["b"])],), TypeError),
        (([(["a"], ("b",))],), TypeError),
        (([(["a"], [1])],), TypeError),
        (([(["a"], ["b"], ["c"])],), TypeError),
        ((["a"], -1), ValueError),
    ],
)
def test_join_pieces_refuses_what_it_does_not_know(args: tuple, error: type) -> None:
    tj = _textjoin_built()
    with pytest.raises(error):
        tj.join_pieces(*args)


def test_expand_joined_empty_and_plain() -> None:
    assert hl.expand_joined("") == hl.expand_joined("  ") == ""
    assert hl.expand_joined("b a", ";") == "b;a"


def test_cap_is_checked_before_expanding() -> None:
    with pytest.raises(UsageError):
        hl.expand("n[1-999999999999]")  # would exhaust memory if generated


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["n1", "node-1", "a.b_c", "1", "_x", ".hidden", "N1"])
def test_validate_node_name_accepts(name: str) -> None:
    assert hl.validate_node_name(name) == name


@pytest.mark.parametrize("name", ["", "-n1", "a b", "a,b", "n[1]", "a/b", "a;b", "a\nb", "é"])
def test_validate_node_name_rejects(name: str) -> None:
    with pytest.raises(UsageError):
        hl.validate_node_name(name)


# --------------------------------------------------------------------------- fold


@pytest.mark.parametrize(
    ("names", "folded"),
    [
        ([], ""),
        (["n1"], "n1"),
        (["n1", "n2", "n3", "n5"], "n[1-3,5]"),
        (["n5", "n3", "n2", "n1"], "n[1-3,5]"),
        (["n1", "n1", "n2"], "n[1-2]"),
        (["n08", "n09", "n10"], "n[08-10]"),  # SCR dropped the padding here
        (["n008", "n009", "n010", "n011"], "n[008-011]"),
        (["n98", "n99", "n100"], "n[98-100]"),
        (["n098", "n099", "n100", "n1000"], "n[098-100,1000]"),
        (["n1", "n01"], "n[1,01]"),
        (["login", "n1", "n2"], "login,n[1-2]"),
        (["n2", "n10", "n1"], "n[1-2,10]"),
        (["rhea2.llnl.gov", "rhea3.llnl.gov"], "rhea[2-3].llnl.gov"),
        (["rack1n01", "rack1n02", "rack2n01", "rack2n02"], "rack1n[01-02],rack2n[01-02]"),
        (["b1", "a2", "a1"], "a[1-2],b1"),
        (["1", "2", "3"], "[1-3]"),
        (["a1b"], "a1b"),
    ],
)
def test_fold(names: list[str], folded: str) -> None:
    assert hl.fold(names) == folded
    assert hl.compress(names) == folded


def test_fold_multidim() -> None:
    names = hl.expand("rack[1-2]n[01-03],rack3n[01-02]")
    assert hl.fold(names, multidim=True) == "rack3n[01-02],rack[1-2]n[01-03]"
    assert hl.fold(names) == "rack1n[01-03],rack2n[01-03],rack3n[01-02]"
    assert hl.fold(["a1b1", "a2b1", "c"], multidim=True) == "a[1-2]b1,c"


def test_fold_accepts_a_hostlist_string() -> None:
    assert hl.fold("n3,n[1-2],n1") == "n[1-3]"


def test_fold_validates_names() -> None:
    for bad in (["n1", "a b"], ["-x"], [""], ["n[1]"]):
        with pytest.raises(UsageError):
            hl.fold(bad)


def test_fold_large_2d_is_fast_enough() -> None:
    # NodeSet needs >10 s for this (design.md); ours a fraction of a second.
    names = hl.expand("rack[1-400]n[001-250]")
    random.Random(7).shuffle(names)
    folded = hl.fold(names)
    assert folded.startswith("rack1n[001-250],rack2n[001-250],")
    assert hl.fold(names, multidim=True) == "rack[1-400]n[001-250]"


_prefix = st.sampled_from(["n", "node", "a-b", "x.y", "", "r1n", "c_"])
_suffix = st.sampled_from(["", ".llnl.gov", "-ib"])
_one_d = st.builds(
    lambda p, n, w, s: f"{p}{n:0{w}d}{s}",
    _prefix,
    st.integers(0, 130),
    st.integers(0, 4),
    _suffix,
)
_two_d = st.builds(
    lambda r, rw, n, nw: f"rack{r:0{rw}d}n{n:0{nw}d}",
    st.integers(0, 12),
    st.integers(0, 2),
    st.integers(0, 40),
    st.integers(1, 3),
)
_plain = st.sampled_from(["login", "head", "io-a", "mds"])
_names = st.lists(st.one_of(_one_d, _two_d, _plain), max_size=120)


@settings(max_examples=300, deadline=None)
@given(_names, st.booleans())
def test_fold_expand_round_trip(names: list[str], multidim: bool) -> None:
    folded = hl.fold(names, multidim=multidim)
    back = hl.expand(folded)
    assert sorted(back) == sorted(set(names))  # same names, each once
    # The output is ordinary hostlist syntax for other tools too.
    assert sorted(pyhostlist.expand_hostlist(folded, allow_duplicates=True)) == sorted(back)
    assert set(NodeSet(folded, resolver=NOGROUP_RESOLVER)) == set(names)
    # Folding is deterministic whatever the input order.
    assert hl.fold(list(reversed(names)), multidim=multidim) == folded


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2000), min_size=1, max_size=300), st.integers(1, 5))
def test_fold_numbers_compactly(values: list[int], width: int) -> None:
    names = [f"n{v:0{width}d}" for v in values]
    folded = hl.fold(names)
    assert sorted(hl.expand(folded)) == sorted(set(names))
    # One bracket group, one range per run of consecutive values.
    distinct = sorted(set(values))
    runs = 1 + sum(1 for a, b in zip(distinct, distinct[1:]) if b != a + 1)
    if len(distinct) > 1:
        assert folded.count(",") == runs - 1


# --------------------------------------------------------------------------- list ops


def test_difference_keeps_first_order_and_duplicates() -> None:
    a = ["n5", "n1", "n3", "n1", "n2"]
    assert hl.difference(a, ["n3", "n9"]) == ["n5", "n1", "n1", "n2"]
    assert hl.difference("n[5,1,3]", "n3") == ["n5", "n1"]
    assert hl.difference(a, []) == a
    assert hl.difference([], a) == []


def test_intersection_keeps_first_order() -> None:
    assert hl.intersection(["n5", "n1", "n3"], ["n3", "n5", "n7"]) == ["n5", "n3"]
    assert hl.intersection("n[1-5]", "n[4-9]") == ["n4", "n5"]
    assert hl.intersection("n[1-3]", "") == []


def test_union_appends_new_names_once() -> None:
    assert hl.union(["n3", "n1"], ["n2", "n1", "n2", "n4"]) == ["n3", "n1", "n2", "n4"]
    assert hl.union("", "n[1-2]") == ["n1", "n2"]


def test_set_ops_scale_linearly_on_2d_names() -> None:
    # ClusterShell took minutes for this; sets make it instant.
    a = hl.expand("rack[1-40]n[001-256]")
    b = hl.expand("rack[1-40]n[001-128]")
    diff = hl.difference(a, b)
    assert len(diff) == 40 * 128
    assert hl.fold(diff).startswith("rack1n[129-256],rack2n[129-256]")


def test_count() -> None:
    assert hl.count("") == 0
    assert hl.count("n[1-3],m[01-10],x") == 14
    assert hl.count("rack[1-40]n[001-256]") == 10240
    assert hl.count("n1,n1") == 2
    assert hl.count(["a", "b"]) == 2
    assert hl.count(iter(["a", "b", "c"])) == 3
    assert hl.count("n[1-9999999]") == 9_999_999  # counted without expanding
    with pytest.raises(UsageError):
        hl.count("n[2-1]")


def test_nth() -> None:
    names = hl.expand("n[1-3,5-7]")
    assert hl.nth(names, 1) == "n1"
    assert hl.nth(names, 4) == "n5"
    assert hl.nth(names, -1) == "n7"
    assert hl.nth(names, -6) == "n1"
    assert hl.nth("n[1-3]", 2) == "n2"
    for bad in (0, 7, -7):
        with pytest.raises(UsageError):
            hl.nth(names, bad)
    with pytest.raises(UsageError):
        hl.nth([], 1)


def test_join() -> None:
    assert hl.join(["a", "b"]) == "a,b"
    assert hl.join(["a", "b"], " ") == "a b"
    assert hl.join([]) == ""
