"""Node lists: expand, fold and combine Slurm/ClusterShell-style hostlists.

Supported syntax (what Slurm prints in ``SLURM_NODELIST`` and accepts in
``--nodelist``/``--exclude``)::

    n1,n2,n5                 comma-separated names (whitespace also separates)
    n[1-3,7]                 bracket ranges: n1 n2 n3 n7
    n[001-010]               zero padding: the width is the length of the low bound
    rhea[2-4].llnl.gov       text after the brackets (a suffix)
    rack[1-2]n[01-03]        several bracket groups; the leftmost varies slowest,
                             like Slurm: rack1n01 rack1n02 rack1n03 rack2n01 ...
    [1-3]                    names may be all digits

Not supported, and reported as :class:`~scr_core.errors.UsageError`: steps
(``n[1-9/2]``), nested or unbalanced brackets, decreasing ranges
(``n[3-1]``), empty items (``a,,b``), and ClusterShell ``@group`` names and
operators: node lists are never resolved through groups.

Node names may contain only ``A-Z a-z 0-9 . _ -`` and must not start with
``-``, so that any name is safe as one argv word and inside a hostlist.

:func:`expand` keeps the order written and keeps duplicates (unlike
ClusterShell's ``NodeSet``, which sorts and merges); :func:`expand_joined`
gives the same names as one string with a separator, built from templates
without a ``str`` per name (for writing them out); :func:`unique` drops
repeats keeping first occurrences. The list set operations (:func:`difference`,
:func:`intersection`, :func:`union`) work on plain Python lists and sets, keep
the order of their first argument, and run in O(n): ClusterShell set algebra
on 2-D names is pathologically slow (see ``design.md``).

:func:`fold` compresses names into a hostlist string. It is implemented here,
not with ``NodeSet``: folding 100k 2-D names with ``NodeSet`` takes >10 s.
Its output is sorted (natural order), merges duplicates, keeps zero padding,
and by default folds one digit run per name (``rack1n[01-03],rack2n[01-03]``),
the form every consumer of hostlists (Slurm, pdsh, Flux) accepts.

:func:`fold_difference`, :func:`fold_intersection` and :func:`fold_union`
return the folded result of a set operation, computed on ranges (see "range
algebra" below): a hostlist string is parsed into sorted runs of integers per
name pattern and never expanded, so ``fold_difference("n[1-1000000]", down)``
costs in proportion to the ranges of ``down``, not to a million names. The
result is the string :func:`fold` gives for the same names.
"""

from __future__ import annotations

import functools
import gc
import re
import string
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate, islice, repeat
from itertools import compress as _select
from operator import eq, ge, gt, lt, sub
from types import ModuleType

from scr_core.errors import UsageError

__all__ = [
    "MAX_NAMES",
    "compress",
    "count",
    "difference",
    "expand",
    "expand_joined",
    "fold",
    "fold_difference",
    "fold_intersection",
    "fold_union",
    "intersection",
    "join",
    "names_between",
    "nth",
    "union",
    "unique",
    "validate_node_name",
]

#: Largest number of names one hostlist may expand to; guards against a typo
#: such as ``n[1-1000000000]`` eating all memory.
MAX_NAMES = 10_000_000

_NAME_RE = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")
# Characters allowed anywhere in a hostlist (names, separators, brackets).
_BAD_CHAR_RE = re.compile(r"[^A-Za-z0-9._\-,\[\]]")
_BAD_NAME_CHAR_RE = re.compile(r"[^A-Za-z0-9._\-\n]")
_WS_RE = re.compile(r"\s")
_SEP_RE = re.compile(r"\s*,\s*|\s+")
_GROUP_RE = re.compile(r"\[([^\[\]]*)\]")
_RANGE_RE = re.compile(r"(\d+)(?:-(\d+))?")

_DIGITS = string.digits
_NONDIGITS = string.ascii_letters + "._-"


def _without_gc(func: Callable[..., str]) -> Callable[..., str]:
    """Run ``func`` with CPython's cyclic garbage collector paused.

    Folding and range algebra allocate ~10^5 small lists, tuples and dicts
    and make no reference cycles; each allocation burst triggers collections
    that traverse the big lists of ints over and over (a quarter of the time
    of a 2-D intersection at 1M names). Nothing is lost by pausing: cycles
    made meanwhile elsewhere are collected once it is enabled again. If the
    collector was already disabled it is left so.
    """

    @functools.wraps(func)
    def paused(*args: object, **kwargs: object) -> str:
        if not gc.isenabled():
            return func(*args, **kwargs)
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            gc.enable()

    return paused


def _show(text: str, limit: int = 120) -> str:
    """Quote ``text`` for an error message, shortened if huge."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def _bad(text: str, why: str) -> UsageError:
    return UsageError(f"invalid hostlist {_show(text)}: {why}")


def validate_node_name(name: str) -> str:
    """Return ``name`` if it is a safe node name, else raise UsageError.

    Safe means only ``A-Z a-z 0-9 . _ -`` and no leading ``-`` (which a
    command would take for an option).
    """
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        if isinstance(name, str) and name.startswith("-"):
            raise UsageError(f"invalid node name {_show(name)}: must not start with '-'")
        raise UsageError(
            f"invalid node name {_show(str(name))}: only letters, digits, '.', '_' "
            "and '-' are allowed"
        )
    return name


def _validate_names(names: Sequence[str], joined: str) -> None:
    """Validate many names at once: one regex over ``"\\n".join(names)``, not one per name."""
    if not names:
        return
    bad = _BAD_NAME_CHAR_RE.search(joined) if joined else None
    if (
        bad is not None
        or "" in names
        or joined.startswith("-")
        or "\n-" in joined
        or joined.count("\n") != len(names) - 1  # a name holding a newline
    ):
        for name in names:  # slow path only to name the culprit
            validate_node_name(name)


# --------------------------------------------------------------------------- parsing

# A parsed item is either a plain name (str) or a list of segments
# [literal, group, literal, group, ..., literal]; a group is a list of
# (low, high, width) ranges, width being the length of the low bound.


class _Group:
    """The ranges of one bracket group as parallel lists (low, high, width of low).

    ``widths`` is None when no low bound is zero-padded (all plain numbers).
    """

    __slots__ = ("his", "los", "widths")

    def __init__(self, los: list[int], his: list[int], widths: list[int] | None) -> None:
        self.los, self.his, self.widths = los, his, widths

    def __iter__(self):  # (low, high, width) triples
        return zip(self.los, self.his, self.widths or repeat(1))

    def size(self) -> int:
        return sum(self.his) - sum(self.los) + len(self.los)


_DROP_BODY_CHARS = str.maketrans("", "", "0123456789,-")
_PADDED_LOW_RE = re.compile(r",0[0-9]")  # on "," + body: a zero-padded low bound
_DROP_DIGITS = str.maketrans("", "", "0123456789")
_NUM_RE = re.compile(r"[0-9]+")


def _parse_group(text: str, body: str) -> _Group:
    # `text` is the hostlist as the user wrote it, for error messages.
    # Validated by one regex and converted by C-level map()s: a folded list of a
    # gappy 1M-node set has ~100k ranges in one group.
    if body == "":
        raise _bad(text, "empty brackets '[]'")
    # Validated without a regex (a third of the parse at 100k ranges): only ASCII
    # digits, "," and "-" (int() would also take "+1", "1_0" and other scripts'
    # digits), no empty number (",,", "-5", "5-"), no "1-2-3".
    dashes = "-" in body
    nums = body.replace("-", ",").split(",") if dashes else body.split(",")
    seps = body.translate(_DROP_DIGITS) if dashes else ""
    if body.translate(_DROP_BODY_CHARS) or "" in nums or "--" in seps:
        for part in body.split(","):
            if _RANGE_RE.fullmatch(part) is None or not part.isascii():
                raise _bad(text, f"bad range {part!r} in '[{body}]' (expected N or N-M)")
        raise _bad(text, f"bad ranges in '[{body}]' (expected N or N-M)")  # pragma: no cover
    if dashes:
        # Every number, converted once; the separators between them (one-character
        # strings, which CPython does not allocate) say which numbers start a range:
        # those after a ",". A range ends just before the next one starts.
        values = list(map(int, nums))
        n = len(nums)
        lo_at = [0, *_select(range(1, n), map(eq, seps, repeat(",")))]
        hi_at = list(map((-1).__add__, islice(lo_at, 1, None)))
        hi_at.append(n - 1)
        los = list(map(values.__getitem__, lo_at))
        his = list(map(values.__getitem__, hi_at))
        los_s = list(map(nums.__getitem__, lo_at))
        if any(map(gt, los, his)):
            i = next(i for i, (lo, hi) in enumerate(zip(los, his)) if lo > hi)
            raise _bad(text, f"range '{los_s[i]}-{nums[hi_at[i]]}' is decreasing")
    else:
        los_s = nums
        los = his = list(map(int, los_s))
    padded = _PADDED_LOW_RE.search("," + body) is not None
    return _Group(los, his, list(map(len, los_s)) if padded else None)


def _normalise(text: str) -> str:
    if not isinstance(text, str):
        raise UsageError(f"invalid hostlist {text!r}: expected a string")
    if _WS_RE.search(text):
        # Whitespace separates names, as in Slurm (`$(cat hostfile)` works).
        text = _SEP_RE.sub(",", text.strip())
    return text


def _parse(text: str, orig: str) -> list:
    """Parse a normalised hostlist into items; raise UsageError naming ``orig`` if malformed.

    Without brackets in ``text`` the items are all plain names.
    """
    bad = _BAD_CHAR_RE.search(text)
    if bad is not None:
        char = bad.group()
        if char == "@":
            raise _bad(orig, "'@group' names are not supported (no group resolution)")
        if char == "/" and "[" in text:
            raise _bad(orig, "range steps ('/') are not supported")
        raise _bad(orig, f"character {char!r} is not allowed in node names")
    if "[" not in text and "]" not in text:
        items: list = text.split(",")
        if "" in items:
            raise _bad(orig, "empty item (stray comma)")
        if text.startswith("-") or ",-" in text:
            name = next(i for i in items if i.startswith("-"))
            raise _bad(orig, f"node name {name!r} must not start with '-'")
        return items
    parts = _GROUP_RE.split(text)
    items = []
    cur: list | None = None
    for idx, part in enumerate(parts):
        if idx % 2:  # the body of a bracket group
            assert cur is not None
            cur.append(_parse_group(orig, part))
            continue
        if "[" in part or "]" in part:
            raise _bad(orig, "unbalanced or nested brackets")
        pieces = part.split(",")
        if cur is None:
            cur = [pieces[0]]
        else:
            cur.append(pieces[0])
        for piece in pieces[1:]:
            items.append(cur)
            cur = [piece]
    assert cur is not None
    items.append(cur)
    out: list = []
    for segs in items:
        if len(segs) == 1:
            if segs[0] == "":
                raise _bad(orig, "empty item (stray comma)")
            segs = segs[0]
            if segs.startswith("-"):
                raise _bad(orig, f"node name {segs!r} must not start with '-'")
        elif segs[0].startswith("-"):
            raise _bad(orig, f"node names ({segs[0]!r}...) must not start with '-'")
        out.append(segs)
    return out


def _item_size(item: str | list) -> int:
    """Names of one item; past MAX_NAMES only "more than MAX_NAMES" matters, so the product
    stops there (``n[1-2]`` written 10^6 times in one item must not multiply 2^(10^6))."""
    if isinstance(item, str):
        return 1
    size = 1
    for group in item[1::2]:
        size *= group.size()
        if size > MAX_NAMES:
            return size
    return size


def _item_name(item: str | list, k: int) -> str:
    """The ``k``-th name (0-based) of one item, without expanding it: the offsets in the
    groups are the digits of ``k`` in the mixed radix of the groups' sizes."""
    if isinstance(item, str):
        return item
    groups = item[1::2]
    offsets = []
    for group in reversed(groups):
        k, r = divmod(k, group.size())
        offsets.append(r)
    parts = [item[0]]
    for group, r, lit in zip(groups, reversed(offsets), item[2::2]):
        for lo, hi, width in group:
            if r <= hi - lo:
                parts.append(f"{lo + r:0{width}d}" if width > 1 else str(lo + r))
                break
            r -= hi - lo + 1
        parts.append(lit)
    return "".join(parts)


def _items(text: str) -> list:
    norm = _normalise(text)
    if norm == "":
        return []
    items = _parse(norm, text)
    _checked_size(text, items)
    return items


def names_between(texts: Sequence[str], start: int, stop: int) -> list[str]:
    """Names ``start`` to ``stop - 1`` (0-based) of the hostlists ``texts`` one after the
    other, in the order written: only those names are made (``scr hostlist --size``)."""
    out: list[str] = []
    pos = 0
    for text in texts:
        for item in _items(text):
            size = _item_size(item)
            lo, hi = max(start - pos, 0), min(stop - pos, size)
            if lo == 0 and hi == size and not isinstance(item, str):
                out.extend(_expand_item(item))
            elif lo < hi:
                out.extend(_item_name(item, k) for k in range(lo, hi))
            pos += size
            if pos >= stop:
                return out
    return out


def _checked_size(orig: str, items: list) -> int:
    total = 0
    for item in items:
        total += _item_size(item)
        if total > MAX_NAMES:
            raise _bad(orig, f"expands to more than {MAX_NAMES:,} names")
    return total


def _range_strings(head: str, lo: int, hi: int, width: int, lit: str) -> list[str]:
    if width <= 1:
        # An f-string comprehension is the fastest pure-Python way to make them.
        return [f"{head}{i}{lit}" for i in range(lo, hi + 1)]
    # Names are validated, so they hold no '%' and can serve as % templates.
    return list(map(f"{head}%0{width}d{lit}".__mod__, range(lo, hi + 1)))


def _group_strings(head: str, group: _Group, lit: str) -> list[str]:
    """``head`` + each value of ``group`` as written + ``lit``, in the order written."""
    if len(group.los) == 1:  # one range: its list as it is (a copy of 1M pointers costs)
        return _range_strings(head, group.los[0], group.his[0], (group.widths or [1])[0], lit)
    out: list[str] = []
    for lo, hi, width in group:
        out.extend(_range_strings(head, lo, hi, width, lit))
    return out


def _expand_item(segs: list) -> list[str]:
    acc = [segs[0]]
    for gi in range(1, len(segs), 2):
        group, lit = segs[gi], segs[gi + 1]
        if len(acc) == 1:
            acc = _group_strings(acc[0], group, lit)
        else:
            # Format the group's values once; each name is then one concatenation.
            tails = _group_strings("", group, lit)
            acc = [head + tail for head in acc for tail in tails]
    return acc


def expand(text: str) -> list[str]:
    """Return the names of hostlist ``text`` in the order written, duplicates kept.

    ``expand("n[1-3],m[08-09]")`` -> ``['n1', 'n2', 'n3', 'm08', 'm09']``.
    An empty or all-whitespace string is the empty list. Malformed input
    raises :class:`UsageError` naming the text.
    """
    norm = _normalise(text)
    if norm == "":
        return []
    items = _parse(norm, text)
    if "[" not in norm:  # _parse returned plain names
        return items
    _checked_size(text, items)
    names: list[str] = []
    for item in items:
        if isinstance(item, str):
            names.append(item)
        elif names:
            names.extend(_expand_item(item))
        else:  # the first (often the only) item: its list is kept, not copied
            names = _expand_item(item)
    return names


# expand_joined builds its text from pieces, each starting with the separator
# (the first piece's is cut off). A run of names is written once as a template
# with a marker where the part that changes goes, cut at the markers; a piece
# is then either a str or a (values, cuts) pair: "".join(v.join(cuts) for v in
# values), each copy one C-level str.join (2.5x faster than str.replace, which
# searches). The markers are control characters, which names never contain (a
# separator holding one falls back to joining names). scr_core._textjoin, a C
# helper built when the install had a compiler, writes the pairs straight into
# the text; without it they are joined first and the text is copied twice
# (at 1M names half the time, most of it page faults on the second copy).
_HEAD_MARK = "\x00"  # where a head (the names' text before the last group) goes
_BLOCK_MARK = "\x01"  # where the digits above a block's last three go
_BLOCK = 1000  # values per block: 10**3, so a block's last three digits run 000-999


def _run_piece(head: str, lo: int, hi: int, width: int, lit: str, sep: str) -> str:
    """``sep`` + the names ``head`` + each of ``lo..hi`` + ``lit``, joined by ``sep``."""
    return sep + sep.join(_range_strings(head, lo, hi, width, lit))


def _range_pieces(
    head: str, lo: int, hi: int, width: int, lit: str, sep: str
) -> Iterator[str | tuple[list[str], list[str]]]:
    # Whole blocks of 1,000 values (from 1000 up, where the digits are always
    # the block's number, padded to width - 3, then three digits) are copies of
    # one template with the block's number put in; the ends are written out.
    first = max(-(-lo // _BLOCK), 1)  # the first whole block
    last = (hi + 1) // _BLOCK - 1  # the last whole block
    if last - first < 2:  # too few to be worth a template
        yield _run_piece(head, lo, hi, width, lit, sep)
        return
    if lo < first * _BLOCK:
        yield _run_piece(head, lo, first * _BLOCK - 1, width, lit, sep)
    cuts = "".join([f"{sep}{head}{_BLOCK_MARK}{j:03d}{lit}" for j in range(_BLOCK)]).split(
        _BLOCK_MARK
    )
    yield list(map(f"%0{max(width - 3, 1)}d".__mod__, range(first, last + 1))), cuts
    if hi > (last + 1) * _BLOCK - 1:
        yield _run_piece(head, (last + 1) * _BLOCK, hi, width, lit, sep)


def _item_pieces(segs: list, sep: str) -> Iterator[str | tuple[list[str], list[str]]]:
    """The pieces of one bracketed item's names (see above), in the order written."""
    group, lit = segs[-2], segs[-1]
    heads = _expand_item(segs[:-2]) if len(segs) > 3 else [segs[0]]
    # With several heads the last group's text is one template with a marker for
    # the head, cut into one piece per name: worth it unless the group is so big
    # (r[1-2]n[1-1000000]) that making each head's names from blocks costs less.
    if len(heads) == 1 or group.size() > len(heads) * _BLOCK:
        for head in heads:
            for lo, hi, width in group:
                yield from _range_pieces(head, lo, hi, width, lit, sep)
        return
    # rack[1-4000]n[001-250]: the 250 tails once, copied with each rack's head put in
    # (r[1-3]n[1000-3999]: a group of whole blocks is itself written from pieces)
    template = [
        piece
        for lo, hi, width in group
        for piece in _range_pieces(_HEAD_MARK, lo, hi, width, lit, sep)
    ]
    yield heads, _join_pieces(template, 0).split(_HEAD_MARK)


def expand_joined(text: str, sep: str = ",") -> str:
    """``sep.join(expand(text))``, without making a string object per name.

    What ``scr hostlist -e`` prints. Long ranges are copied from templates by
    C-level ``str.join`` (1M names: a tenth of the time of building the
    list), so it pays where the names are only written out: a hostfile, a
    pipe, a terminal. Malformed input raises :class:`UsageError` as
    :func:`expand` does.
    """
    norm = _normalise(text)
    if norm == "":
        return ""
    items = _parse(norm, text)
    if "[" not in norm:  # _parse returned plain names
        return sep.join(items)
    _checked_size(text, items)
    if _HEAD_MARK in sep or _BLOCK_MARK in sep:  # the templates need the markers unique
        return sep.join(expand(text))

    pieces: list[str | tuple[list[str], list[str]]] = []
    for item in items:
        if isinstance(item, str):
            pieces.append(sep + item)
        else:
            pieces.extend(_item_pieces(item, sep))
    textjoin = _textjoin()
    if textjoin is not None:
        text = textjoin.join_pieces(pieces, len(sep))
        if text is not NotImplemented:
            return text
    return _join_pieces(pieces, len(sep))


def _join_pieces(pieces: list[str | tuple[list[str], list[str]]], skip: int) -> str:
    """``_textjoin.join_pieces`` in Python, for expand_joined's pieces: the text written twice."""
    parts: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            parts.append(piece)
        else:
            parts.extend(map(str.join, piece[0], repeat(piece[1])))
    # One join of all parts: the text is copied once more (an append loop would
    # rely on CPython resizing in place, and be quadratic where it does not).
    parts[0] = parts[0][skip:]  # every part starts with the separator
    return "".join(parts)


@functools.cache
def _textjoin() -> ModuleType | None:
    """The C helper ``scr_core._textjoin``, or None where it was not built."""
    try:
        from scr_core import _textjoin
    except ImportError:
        return None
    return _textjoin


def count(hosts: str | Iterable[str]) -> int:
    """Return how many names ``hosts`` holds (duplicates counted), without expanding a string."""
    if isinstance(hosts, str):
        norm = _normalise(hosts)
        if norm == "":
            return 0
        return _checked_size(hosts, _parse(norm, hosts))
    if isinstance(hosts, Sequence):
        return len(hosts)
    return sum(1 for _ in hosts)


# --------------------------------------------------------------------------- list ops


def _as_list(hosts: str | Iterable[str]) -> list[str]:
    if isinstance(hosts, str):
        return expand(hosts)
    return list(hosts)


def unique(hosts: str | Iterable[str]) -> list[str]:
    """Return the names without repeats, keeping each first occurrence in place."""
    return list(dict.fromkeys(_as_list(hosts)))


def difference(a: str | Iterable[str], b: str | Iterable[str]) -> list[str]:
    """Names of ``a`` not in ``b``, in ``a``'s order (``a``'s duplicates kept)."""
    drop = set(_as_list(b))
    return [h for h in _as_list(a) if h not in drop]


def intersection(a: str | Iterable[str], b: str | Iterable[str]) -> list[str]:
    """Names of ``a`` also in ``b``, in ``a``'s order (``a``'s duplicates kept)."""
    keep = set(_as_list(b))
    return [h for h in _as_list(a) if h in keep]


def union(a: str | Iterable[str], b: str | Iterable[str]) -> list[str]:
    """``a`` as it is, then the names of ``b`` not in ``a``, each once, in ``b``'s order."""
    first = _as_list(a)
    seen = set(first)
    extra = [h for h in dict.fromkeys(_as_list(b)) if h not in seen]
    return first + extra


def nth(hosts: str | Sequence[str], index: int) -> str:
    """Return the ``index``-th name, 1-based; negative counts from the end (-1 is the last).

    A string is not expanded: only the name asked for is made."""
    if isinstance(hosts, str):
        n = count(hosts)
        _check_index(index, n)
        return names_between([hosts], index - 1 if index > 0 else n + index,
                             index if index > 0 else n + index + 1)[0]
    names = hosts
    n = len(names)
    _check_index(index, n)
    return names[index - 1 if index > 0 else index]


def _check_index(index: int, n: int) -> None:
    if index == 0 or index > n or index < -n:
        raise UsageError(
            f"host index {index} is out of range for a list of {n} names "
            "(1-based; negative counts from the end)"
        )


def join(names: Iterable[str], sep: str = ",") -> str:
    """Return the names joined by ``sep`` (no folding)."""
    return sep.join(names)


# --------------------------------------------------------------------------- folding


def _runs(values: list[int]) -> tuple[list[int], list[int]]:
    """Maximal runs of consecutive values of ``values`` (any order, repeats allowed).

    Returns parallel sorted lists of lows and highs. The steps between
    neighbours are computed by one C-level ``map`` (mostly 1: small ints are
    cached by CPython, so this allocates next to nothing); a run starts after
    every step that is not 1, and the input was strictly increasing exactly
    when none of those steps is below 1, so sorted input is never sorted.
    """
    n = len(values)
    first, last = values[0], values[-1]
    if last - first == n - 1 and values == list(range(first, last + 1)):
        return [first], [last]  # the common case: sorted, one block
    steps = list(map(sub, islice(values, 1, None), values))
    starts = [i for i, step in enumerate(steps, 1) if step != 1]
    if starts and min(map(steps.__getitem__, map((-1).__add__, starts))) < 1:
        values = sorted(set(values))  # not strictly increasing: sort and drop repeats
        n = len(values)
        steps = list(map(sub, islice(values, 1, None), values))
        starts = [i for i, step in enumerate(steps, 1) if step != 1]
    ends = list(map((-1).__add__, starts))
    ends.append(n - 1)
    starts.insert(0, 0)
    return list(map(values.__getitem__, starts)), list(map(values.__getitem__, ends))


def _fmt_range(lo: int, hi: int, width: int) -> str:
    if lo == hi:
        return f"{lo:0{width}d}"
    return f"{lo:0{width}d}-{hi:0{width}d}"


def _fold_digits(ds: list[str], lines: str | None = None) -> str:
    """Fold distinct digit strings into ``"7"`` or ``"[1-3,5,08-10]"``, keeping padding.

    A range ``lo-hi`` expands with the width of ``lo``; a string belongs to a
    range only if it is exactly that formatting of its value. ``lines`` is
    ``"\\n".join(ds)`` if the caller has it.
    """
    if len(ds) == 1:
        return ds[0]
    if lines is None:
        lines = "\n".join(ds)
    parts: list[str]
    if _PADDED_LINE_RE.search("\n" + lines) is None:
        # No padding anywhere: plain decimal numbers.
        parts = _fmt_runs(*_runs(list(map(int, ds))), 1)
    else:
        lengths = set(map(len, ds))
        if len(lengths) == 1:
            # All the same length: every string is its value padded to that width.
            parts = _fmt_runs(*_runs(list(map(int, ds))), lengths.pop())
        else:
            parts = _fold_mixed(list(set(ds)))
    if len(parts) == 1 and "-" not in parts[0]:
        return parts[0]
    return "[" + ",".join(parts) + "]"


def _fmt_runs(los: list[int], his: list[int], width: int) -> list[str]:
    if width <= 1:
        return [f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in zip(los, his)]
    one, two = _TEMPLATES.get(width) or _TEMPLATES.setdefault(
        width, (f"%0{width}d", f"%0{width}d-%0{width}d")
    )
    return [two % (lo, hi) if lo != hi else one % lo for lo, hi in zip(los, his)]


_TEMPLATES: dict[int, tuple[str, str]] = {}


def _fold_mixed(ds: list[str]) -> list[str]:
    """General case: mixed widths, possibly one value spelt twice (``1`` and ``01``).

    Greedy over ascending values: a run of width w (the length of its first
    string) takes the next value if one of its spellings is exactly that value
    padded to w; spellings left over are folded in further passes.
    """
    spellings: dict[int, list[str]] = {}
    for d in ds:
        spellings.setdefault(int(d), []).append(d)
    for cands in spellings.values():
        cands.sort(key=len)
    parts: list[tuple[int, int, str]] = []
    values = sorted(spellings)
    while values:
        left: list[int] = []
        lo = prev = -2
        width = 0
        for v in values:
            cands = spellings[v]
            if v == prev + 1:
                fit = next(
                    (c for c in cands if len(c) == width or (len(c) > width and c[0] != "0")),
                    None,
                )
                if fit is not None:
                    cands.remove(fit)
                    prev = v
                    if cands:
                        left.append(v)
                    continue
            if prev >= 0:
                parts.append((lo, len(parts), _fmt_range(lo, prev, width)))
            width = len(cands.pop(0))
            lo = prev = v
            if cands:
                left.append(v)
        parts.append((lo, len(parts), _fmt_range(lo, prev, width)))
        values = left
    return [p for _v, _i, p in sorted(parts)]


_NATURAL_SPLIT = re.compile(r"(\d+)")
# One name: (everything up to the last digit run)(the run)(the rest).
_LAST_DIGITS_RE = re.compile(r"^([^\n]*[^0-9\n]|)([0-9]+)([^0-9\n]*)$", re.MULTILINE)
# A block of consecutive lines (each ending in "\n") sharing what surrounds their last digit run.
_BLOCK_RE = re.compile(
    r"^((?:[^\n]*[^0-9\n])?)([0-9]+)([^0-9\n]*)\n(?:\1[0-9]+\3\n)*", re.MULTILINE
)
# (Plain character classes and literal prefixes: the regex engine scans those
# fast; alternations and MULTILINE anchors cost 10x more per character.)
_DIGITS_AND_NEWLINE = b"0123456789\n"


def _digit_lines(text: str) -> bool:
    """Whether ``text`` holds only ASCII digits and newlines (10x faster than a regex)."""
    return text.isascii() and not text.encode("ascii").translate(None, _DIGITS_AND_NEWLINE)


_PADDED_LINE_RE = re.compile(r"\n0[0-9]")  # on "\n" + lines: a zero-padded line


class _Digits(list):
    """Digit strings (a list) that may carry their ``"\\n".join`` as ``lines``."""

    def __init__(self, items: list[str], lines: str | None = None) -> None:
        super().__init__(items)
        self.lines = lines


def _first_level(names: list[str], joined: str) -> dict[tuple[str, str], list[str]] | None:
    """Group names by what surrounds their last digit run: {(stem, suffix): [digits]}.

    Returns None if some name has no digits or is not a valid node name (the
    caller's general path validates and handles those). Valid names are
    checked here through their stems and suffixes (the rest is digits).
    When all names share one stem and suffix (``n1..nN``, the usual case), the
    digits are cut out by two ``str.replace`` and one ``split``; otherwise one
    regex pass finds blocks of consecutive names sharing a stem, so the
    Python-level work is per block (a rack), not per name.
    """
    n = len(names)
    first = _LAST_DIGITS_RE.fullmatch(names[0])
    last = _LAST_DIGITS_RE.fullmatch(names[-1])
    if first is None or last is None:
        return None
    stem, suffix = first[1], first[3]
    if (stem, suffix) == (last[1], last[3]):
        # "n1\nn2\nn3" split at "\nn" (suffix + "\n" + stem) is [n1, 2, 3]: the digits
        # but for the first name's stem and the last name's suffix.
        parts = joined.split(f"{suffix}\n{stem}")
        parts[0] = parts[0][len(stem) :]
        parts[-1] = parts[-1][: len(parts[-1]) - len(suffix)]
        if len(parts) == n and "" not in parts:
            body = "\n".join(parts)
            if _digit_lines(body):
                if not _key_valid(stem, suffix):
                    return None
                return {(stem, suffix): _Digits(parts, body)}
    groups: dict[tuple[str, str], _Digits] = {}
    text = joined + "\n"
    pos = 0
    for m in _BLOCK_RE.finditer(text):
        if m.start() != pos:
            return None
        block = "\n" + text[pos : m.end()]
        pos = m.end()
        stem, suffix = m[1], m[3]
        if stem:
            block = block.replace("\n" + stem, "\n")
        if suffix:
            block = block.replace(suffix + "\n", "\n")
        lines = block[1:-1]
        found = groups.get((stem, suffix))
        if found is None:
            if not _key_valid(stem, suffix):
                return None
            groups[stem, suffix] = _Digits(lines.split("\n"), lines)
        else:
            found.extend(lines.split("\n"))
            found.lines = None
    if pos != len(text) or sum(map(len, groups.values())) != n:
        return None  # a name with a newline, or no digits
    return groups


def _key_valid(stem: str, suffix: str) -> bool:
    return _NAME_RE.fullmatch(stem + "0" + suffix) is not None


def _fold_groups(groups: dict[tuple[str, str], list[str]]) -> list[tuple[str, str]]:
    return [
        (stem, _fold_digits(ds, getattr(ds, "lines", None)) + rest)
        for (stem, rest), ds in groups.items()
    ]


def _natural_key(text: str) -> list:
    parts: list = _NATURAL_SPLIT.split(text)
    parts[1::2] = [int(p) for p in parts[1::2]]
    return parts


@_without_gc
def fold(names: str | Iterable[str], multidim: bool = False) -> str:
    """Return a compressed hostlist string for ``names``: ``n[1-3,5]``.

    Duplicates are merged and the result is sorted naturally, so it does not
    keep the input order (``expand(fold(x))`` has the same *set* as ``x``).
    Zero padding is kept. One digit run per name is folded (the last one,
    as Slurm does), giving ``rack1n[01-03],rack2n[01-03]``, which Slurm, pdsh and Flux
    all accept; ``multidim=True`` also folds the earlier runs
    (``rack[1-2]n[01-03]``), which only readers of multi-bracket names accept.
    A string argument is read as a hostlist (without ``multidim`` through the
    range algebra, so it is not expanded).
    """
    if not multidim:
        return _format(_rangeset(names))
    if isinstance(names, str):
        names = expand(names)
    names = list(names)
    if not names:
        return ""
    # Duplicates are not removed here (that costs a hash of every name); they
    # collapse in _fold_digits and in the final set of `done`.
    joined = "\n".join(names)
    done: list[str] = []
    # Items are (head, tail): head still to fold, tail already folded.
    items: list[tuple[str, str]]
    groups = _first_level(names, joined)  # checks the names it groups
    if groups is not None:
        items = _fold_groups(groups)
    else:
        _validate_names(names, joined)
        items = [(n, "") for n in names]
    # (only multidim=True comes here: every digit run is folded, the last first)
    while items:
        groups = {}
        for head, tail in items:
            base = head.rstrip(_NONDIGITS)
            if not base:  # no digit run left to fold
                done.append(head + tail)
                continue
            stem = base.rstrip(_DIGITS)
            key = (stem, head[len(base) :] + tail)
            found = groups.get(key)
            if found is None:
                groups[key] = [base[len(stem) :]]
            else:
                found.append(base[len(stem) :])
        items = _fold_groups(groups)
    done.extend(head + tail for head, tail in items)
    return _join_sorted(done)


def _head_key(item: str) -> list:
    # The natural key of the item up to its first "[": a prefix of its full
    # natural key (a bracket body starts with a digit), and cheap where the
    # full key is not (a folded item can be megabytes of ranges).
    cut = item.find("[")
    return _natural_key(item if cut < 0 else item[: cut + 1])


def _join_sorted(done: list[str]) -> str:
    """The items joined by commas, in natural order, each once."""
    if len(done) == 1:
        return done[0]
    keyed = sorted((_head_key(item), item) for item in set(done))
    out = [item for _key, item in keyed]
    # Items with equal heads (same stem, other suffixes) are ordered by their
    # full natural keys, as if the whole item had been the key.
    i = 0
    while i < len(keyed):
        j = i + 1
        while j < len(keyed) and keyed[j][0] == keyed[i][0]:
            j += 1
        if j - i > 1:
            out[i:j] = sorted(out[i:j], key=_natural_key)
        i = j
    return ",".join(out)


#: SCR's name for :func:`fold`.
compress = fold


# --------------------------------------------------------------------------- range algebra
#
# A range set holds a set of names as {(stem, suffix): {cls: (los, his)}}:
# the names stem + digits + suffix, where digits is the last digit run of the
# name (as fold groups them), stem is empty or ends in a non-digit and suffix
# has no digits. ``cls`` says how a value v is spelt: 0 is plain decimal
# (str(v)); w > 1 is zero-padded to w digits, for values below 10**(w-1) only
# (n[08-10] is n08 n09 of class 2 and n10 of class 0, the same name as an
# unpadded n10), so that one name has exactly one (key, cls, value).
# ``los``/``his`` are the sorted lows and highs of disjoint, non-adjacent runs.
# A name without digits is (name, "") with class -1 and the range 0-0.
# Set operations walk these ranges (bisect into the longer list, C-level
# slices and maps), never the names; the result is formatted as fold does.

_Ranges = tuple[list[int], list[int]]
_RangeSet = dict[tuple[str, str], dict[int, _Ranges]]


def _normal(los: list[int], his: list[int]) -> _Ranges:
    """Sorted, disjoint, non-adjacent runs covering the given ranges (each lo <= hi)."""
    if len(los) <= 1 or all(map(lt, map((1).__add__, his), islice(los, 1, None))):
        return los, his
    out_l: list[int] = []
    out_h: list[int] = []
    for lo, hi in sorted(zip(los, his)):
        if out_h and lo <= out_h[-1] + 1:
            if hi > out_h[-1]:
                out_h[-1] = hi
        else:
            out_l.append(lo)
            out_h.append(hi)
    return out_l, out_h


# Ranges being collected: {key: {cls: [los, his, owned, normal]}}. The lists may be
# shared with the caller until `owned` (copied on the first extend); `normal`
# says they are known to be sorted, disjoint and non-adjacent.
_Acc = dict


def _add(
    acc: _Acc,
    key: tuple[str, str],
    cls: int,
    los: list[int],
    his: list[int],
    normal: bool = False,
) -> None:
    """Add ranges to ``acc`` (the lists are not modified); ``normal``: known normal."""
    classes = acc.get(key)
    if classes is None:
        classes = acc[key] = {}
    got = classes.get(cls)
    if got is None:
        classes[cls] = [los, his, False, normal]
    else:
        if not got[2]:
            got[0], got[1], got[2] = list(got[0]), list(got[1]), True
        got[0].extend(los)
        got[1].extend(his)
        got[3] = False


def _finish(acc: _Acc) -> _RangeSet:
    return {
        key: {cls: (e[0], e[1]) if e[3] else _normal(e[0], e[1]) for cls, e in classes.items()}
        for key, classes in acc.items()
    }


def _split_padded(los: list[int], his: list[int], widths: list[int] | None) -> dict[int, _Ranges]:
    """Ranges (lo, hi, width) by class: padded values below 10**(width-1), the rest plain."""
    if widths is None:
        return {0: (los, his)}
    w = widths[0]
    if w == 1 and widths.count(1) == len(widths):
        return {0: (los, his)}
    if widths.count(w) == len(widths) and los == sorted(los):
        bound = 10 ** (w - 1)
        k = bisect_left(los, bound)
        if k == 0:
            return {0: (los, his)}
        p_l, p_h = los[:k], his[:k]
        n_l, n_h = los[k:], his[k:]
        if p_h[-1] >= bound:  # the last padded range runs past the bound
            n_l.insert(0, bound)
            n_h.insert(0, p_h[-1])
            p_h[-1] = bound - 1
        return {w: (p_l, p_h), 0: (n_l, n_h)} if n_l else {w: (p_l, p_h)}
    out: dict[int, tuple[list[int], list[int]]] = {}
    for lo, hi, w in zip(los, his, widths):
        bound = 10 ** (w - 1) if w > 1 else 0
        if lo < bound:
            pl, ph = out.setdefault(w, ([], []))
            pl.append(lo)
            ph.append(min(hi, bound - 1))
            if hi >= bound:
                nl, nh = out.setdefault(0, ([], []))
                nl.append(bound)
                nh.append(hi)
        else:
            nl, nh = out.setdefault(0, ([], []))
            nl.append(lo)
            nh.append(hi)
    return out


def _digit_classes(ds: list[str], lines: str | None) -> dict[int, _Ranges]:
    """The runs of digit strings ``ds`` by class (see the range algebra above)."""
    if lines is None:
        lines = "\n".join(ds)
    if _PADDED_LINE_RE.search("\n" + lines) is None:
        return {0: _runs(list(map(int, ds)))}
    lengths = set(map(len, ds))
    if len(lengths) == 1:  # n001..n250: one width, padded below 10**(w-1)
        los, his = _runs(list(map(int, ds)))
        return _split_padded(los, his, [lengths.pop()] * len(los))
    by_cls: dict[int, list[int]] = {}
    for d in ds:
        cls = len(d) if d[0] == "0" and len(d) > 1 else 0
        v = int(d)
        found = by_cls.get(cls)
        if found is None:
            by_cls[cls] = [v]
        else:
            found.append(v)
    return {cls: _runs(vals) for cls, vals in by_cls.items()}


def _rangeset_of_names(names: list[str]) -> _RangeSet:
    if not names:
        return {}
    joined = "\n".join(names)
    groups: dict[tuple[str, str], list[str]] | None = _first_level(names, joined)
    plain: list[str] = []
    if groups is None:
        _validate_names(names, joined)
        groups = {}
        for name in names:
            m = _LAST_DIGITS_RE.fullmatch(name)
            if m is None:
                plain.append(name)
            else:
                groups.setdefault((m[1], m[3]), []).append(m[2])
    out: _RangeSet = {
        key: _digit_classes(ds, getattr(ds, "lines", None)) for key, ds in groups.items()
    }
    for name in plain:
        out.setdefault((name, ""), {})[-1] = ([0], [0])
    return out


# Items of at most one bracket group each: what fold and Slurm print.
# (Only characters allowed in names and bodies: a match also validates those.)
_FLAT_ITEM = r"[A-Za-z0-9._-]*(?:\[[0-9,-]+\][A-Za-z0-9._-]*)?"
_FLAT_LIST_RE = re.compile(f"{_FLAT_ITEM}(?:,{_FLAT_ITEM})*")
_FLAT_ITEM_RE = re.compile(r"([^,\[\]]*)(?:\[([^\[\]]*)\]([^,\[\]]*))?(?:,|$)")


def _rangeset_of_flat(text: str) -> _RangeSet | None:
    """Fast path for a list of items with one bracket group at most (``a[..]b,c``).

    All bracket bodies are validated and converted at once, by C-level regexes
    and maps over their comma-joined text. Returns None where the general
    parser is needed (other forms, and malformed text, for its error messages).
    """
    if text.startswith("-") or ",-" in text or _FLAT_LIST_RE.fullmatch(text) is None:
        return None
    items = _FLAT_ITEM_RE.findall(text)
    items.pop()  # the empty match at the end
    loose: list[str] = []
    grouped: list[tuple[str, str, str]] = []
    for head, body, tail in items:
        if not body:
            if not head:  # an empty item, or "[]"
                return None
            loose.append(head + tail)
        elif (head and head[-1] in _DIGITS) or _NUM_RE.search(tail):
            return None  # the last digit run is not (only) the bracket's
        else:
            grouped.append((head, body, tail))
    out: _RangeSet = {}
    again: list[tuple[tuple[str, str], dict[int, _Ranges]]] = []  # patterns seen again
    trusted = True
    if grouped:
        try:
            group = _parse_group(text, ",".join([body for _h, body, _t in grouped]))
        except UsageError:
            return None  # the general parser says which group is wrong
        if len(loose) + group.size() > MAX_NAMES:
            raise _bad(text, f"expands to more than {MAX_NAMES:,} names")
        los, his, widths = group.los, group.his, group.widths
        counts = [body.count(",") + 1 for _h, body, _t in grouped]
        # Are the ranges of every body sorted, disjoint and non-adjacent (as fold
        # writes them)? Then the runs need no normalising: one C-level pass finds
        # the places where a range does not stay clear of the next one, and they
        # must all be where one body ends and the next begins.
        ends = set(accumulate(counts, initial=-1))
        trusted = ends.issuperset(
            _select(range(len(los) - 1), map(ge, map((1).__add__, his), islice(los, 1, None)))
        )
        pos = 0
        for (head, _body, tail), count in zip(grouped, counts):
            end = pos + count
            key = (head, tail)
            classes = _split_padded(
                los[pos:end], his[pos:end], None if widths is None else widths[pos:end]
            )
            if key in out:
                again.append((key, classes))
            else:
                out[key] = classes
            pos = end
    if loose:
        for key, classes in _rangeset_of_names(loose).items():
            if key in out:
                again.append((key, classes))
            else:
                out[key] = classes
    if trusted and not again:
        return out  # the usual case: each pattern once, written as fold writes it
    acc: _Acc = {
        key: {cls: [lo_p, hi_p, False, trusted] for cls, (lo_p, hi_p) in classes.items()}
        for key, classes in out.items()
    }
    for key, classes in again:
        for cls, (lo_p, hi_p) in classes.items():
            _add(acc, key, cls, lo_p, hi_p)
    return _finish(acc)


def _rangeset_of_text(text: str) -> _RangeSet:
    norm = _normalise(text)
    if norm == "":
        return {}
    if "[" in norm and norm.count("[") == norm.count("]"):
        flat = _rangeset_of_flat(norm)
        if flat is not None:
            return flat
    items = _parse(norm, text)
    if "[" not in norm:
        return _rangeset_of_names(items)
    _checked_size(text, items)  # the same limit as expand, though nothing is expanded
    acc: _Acc = {}
    loose: list[str] = []
    for item in items:
        if isinstance(item, str):
            loose.append(item)
            continue
        before, group, suffix = item[-3], item[-2], item[-1]
        if (
            _NUM_RE.search(suffix)  # the last digit run is after the last bracket
            or (before and before[-1] in _DIGITS)  # "n1[0-5]": digits run into it
            or (not before and len(item) > 3)  # "[1-2][3-4]": so do the groups' digits
        ):
            loose.extend(_expand_item(item))
            continue
        stems = _expand_item(item[:-2]) if len(item) > 3 else [before]
        classes = {
            cls: _normal(los, his)
            for cls, (los, his) in _split_padded(group.los, group.his, group.widths).items()
        }
        for stem in stems:
            for cls, (los, his) in classes.items():
                _add(acc, (stem, suffix), cls, los, his, normal=True)
    if loose:
        for key, classes in _rangeset_of_names(loose).items():
            for cls, (los, his) in classes.items():
                _add(acc, key, cls, los, his)
    return _finish(acc)


def _rangeset(hosts: str | Iterable[str]) -> _RangeSet:
    if isinstance(hosts, str):
        return _rangeset_of_text(hosts)
    # A list is used as it is: copying it would touch every name (and, in a
    # forked worker, fault in a private copy of every page holding names).
    return _rangeset_of_names(hosts if isinstance(hosts, list) else list(hosts))


def _and(al: list[int], ah: list[int], bl: list[int], bh: list[int]) -> _Ranges:
    """Intersection of two normal range lists, walking the shorter one."""
    if len(al) > len(bl):
        al, ah, bl, bh = bl, bh, al, ah
    out_l: list[int] = []
    out_h: list[int] = []
    nb = len(bl)
    for lo, hi in zip(al, ah):
        i = bisect_left(bh, lo)  # the first b range ending at or after lo
        if i == nb:
            break
        j = bisect_right(bl, hi, i)  # past the last b range starting at or before hi
        if j <= i:
            continue
        b_lo = bl[i]
        out_l.append(lo if lo > b_lo else b_lo)
        if j - i > 1:
            out_l.extend(bl[i + 1 : j])
            out_h.extend(bh[i : j - 1])
        b_hi = bh[j - 1]
        out_h.append(hi if hi < b_hi else b_hi)
    return out_l, out_h


def _minus(al: list[int], ah: list[int], bl: list[int], bh: list[int]) -> _Ranges:
    """``a`` minus ``b``: ``a`` and the complement of ``b`` (its gaps, built by C-level maps)."""
    if not bl or not al:
        return al, ah
    lo, hi = al[0], ah[-1]
    cl = [lo, *map((1).__add__, bh)]
    ch = [*map((-1).__add__, bl), hi]
    if ch[0] < cl[0]:
        del cl[0], ch[0]
    if ch and ch[-1] < cl[-1]:
        del cl[-1], ch[-1]
    return _and(al, ah, cl, ch)


def _combine(a: _RangeSet, b: _RangeSet, op: str) -> _RangeSet:
    out: _RangeSet = {}
    if op == "or":
        acc: _Acc = {}
        for rs in (a, b):
            for key, classes in rs.items():
                for cls, (los, his) in classes.items():
                    _add(acc, key, cls, los, his)
        return _finish(acc)
    for key, ca in a.items():
        cb = b.get(key)
        if cb is None:
            if op == "minus":
                out[key] = ca
            continue
        classes: dict[int, _Ranges] = {}
        for cls, (al, ah) in ca.items():
            rb = cb.get(cls)
            if rb is None:
                if op == "minus":
                    classes[cls] = (al, ah)
                continue
            bl, bh = rb
            if op == "minus":
                got = _minus(al, ah, bl, bh)
            elif len(al) == 1 and al[0] <= bl[0] and bh[-1] <= ah[0]:
                got = rb  # a's one run covers b
            else:
                got = _and(al, ah, bl, bh)
            if got[0]:
                classes[cls] = got
        if classes:
            out[key] = classes
    return out


def _fmt_classes(classes: dict[int, _Ranges]) -> list[str]:
    """The bracket parts of one (stem, suffix), as fold writes them."""
    if len(classes) == 1:
        ((cls, (los, his)),) = classes.items()
        return _fmt_runs(los, his, cls)
    if len(classes) == 2 and 0 in classes:
        # The usual mix, n[001-250]: padded runs below 10**(w-1), plain ones above.
        w = max(classes)
        bound = 10 ** (w - 1)
        (pl, ph), (nl, nh) = classes[w], classes[0]
        if w > 0 and nl[0] >= bound:
            parts = _fmt_runs(pl, ph, w)
            if ph[-1] == bound - 1 and nl[0] == bound:
                parts[-1] = _fmt_range(pl[-1], nh[0], w)
                return parts + _fmt_runs(nl[1:], nh[1:], 1)
            return parts + _fmt_runs(nl, nh, 1)
    # Mixed spellings: a padded run that ends at 9..9 continues into the plain
    # run starting at 10..0 (n[098-100]); parts are ordered by value, then
    # shortest spelling first, as fold orders them.
    nat_l, nat_h = classes.get(0, ([], []))
    joined_at: dict[int, int] = {}  # plain run index -> its high, taken by a padded run
    entries: list[tuple[int, int, int]] = []  # (lo, cls, hi)
    for cls, (los, his) in classes.items():
        if cls <= 0:
            continue
        entries.extend(zip(los, repeat(cls), his))
        bound = 10 ** (cls - 1)
        if his[-1] == bound - 1:
            k = bisect_left(nat_l, bound)
            if k < len(nat_l) and nat_l[k] == bound:
                joined_at[k] = nat_h[k]
                entries[-1] = (entries[-1][0], cls, nat_h[k])
    entries.extend(
        (lo, 0, hi) for k, (lo, hi) in enumerate(zip(nat_l, nat_h)) if k not in joined_at
    )
    entries.sort()
    return [_fmt_range(lo, hi, cls or 1) for lo, cls, hi in entries]


def _format(rs: _RangeSet) -> str:
    """The folded hostlist of a range set: what fold() gives for the same names."""
    done: list[str] = []
    for (stem, suffix), classes in rs.items():
        if -1 in classes:
            done.append(stem + suffix)
            if len(classes) == 1:
                continue
            classes = {cls: r for cls, r in classes.items() if cls != -1}
        parts = _fmt_classes(classes)
        if len(parts) == 1 and "-" not in parts[0]:
            done.append(stem + parts[0] + suffix)
        else:
            done.append(f"{stem}[{','.join(parts)}]{suffix}")
    if not done:
        return ""
    return _join_sorted(done)


@_without_gc
def _fold_op(op: str, a: str | Iterable[str], others: tuple[str | Iterable[str], ...]) -> str:
    acc = _rangeset(a)
    for other in others:
        acc = _combine(acc, _rangeset(other), op)
    return _format(acc)


def fold_difference(
    a: str | Iterable[str], b: str | Iterable[str], *more: str | Iterable[str]
) -> str:
    """``fold(difference(a, b))``, computed on ranges: hostlist strings are not expanded.

    Each argument is a hostlist string or an iterable of names. The result is
    the folded hostlist of the names of ``a`` in none of the others (sorted,
    each once): the same string :func:`fold` gives for those names. Time grows
    with the number of ranges of the inputs, not of names, when they are
    strings (``fold_difference("n[1-1000000]", "n[5-9]")`` is instant).
    """
    return _fold_op("minus", a, (b, *more))


def fold_intersection(
    a: str | Iterable[str], b: str | Iterable[str], *more: str | Iterable[str]
) -> str:
    """``fold(intersection(a, b))``: the names of ``a`` in every other argument, on ranges.

    See :func:`fold_difference`.
    """
    return _fold_op("and", a, (b, *more))


def fold_union(*hostlists: str | Iterable[str]) -> str:
    """The folded hostlist of all names of the arguments, computed on ranges.

    ``fold_union(a, b) == fold(union(a, b))``; ``fold_union(a) == fold(a)``.
    """
    if not hostlists:
        return ""
    return _fold_op("or", hostlists[0], hostlists[1:])


# --------------------------------------------------------------------------- number bounds


def _numbers_bounded(func: Callable) -> Callable:
    """Every number in a hostlist is converted by ``int()``; one longer than Python's limit
    for a decimal conversion (4,300 digits) raises ValueError. Checking each number's length
    beforehand would cost a pass over the text (a fifth of a 1M-name fold), so the public
    functions turn that ValueError into the UsageError every other malformed input gets."""

    @functools.wraps(func)
    def bounded(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except ValueError as exc:
            if isinstance(exc, UsageError) or "integer string conversion" not in str(exc):
                raise
            text = args[0] if args and isinstance(args[0], str) else "(names)"
            raise _bad(text, "a node number in it is too long (more than "
                             f"{_max_digits()} digits)") from None

    return bounded


def _max_digits() -> int:
    import sys

    return getattr(sys, "get_int_max_str_digits", lambda: 4300)() or 4300


for _public in ("count", "difference", "expand", "expand_joined", "fold", "fold_difference",
                "fold_intersection", "fold_union", "intersection", "names_between", "nth",
                "union", "unique"):
    globals()[_public] = _numbers_bounded(globals()[_public])
