"""Pure-Python reader and writer for LLNL KVTree files, the format of every SCR control file.

The byte format and the C library's behaviour are described in
``/work/shared/formats/kvtree.md``. Files written here are byte-for-byte what KVTree 1.5.0
writes for the same tree in the same order. Every file the C library accepts reads here to
the same tree. Corrupt input raises :class:`~scr_core.errors.ControlFileError` and never
crashes. Where the C library's behaviour is undefined, this reader is stricter: a count or
key that runs past the end of the data is an error, and so is a CRC flag on a file too
short to hold the CRC.

Public API
----------
``KVTree()``
    An ordered tree: a mapping of ``str`` key to subtree ``KVTree``. A "value" is a key
    whose subtree is empty, so ``key = value`` is stored as ``{key: {value: {}}}``.
    Keys are the raw bytes of the file, decoded as UTF-8 with ``surrogateescape``, so any
    byte string except one containing NUL can be stored and written back unchanged.
    Its methods are documented on the class.
``loads(data, name="<bytes>") -> KVTree``
    Parse the bytes of a whole file. *name* only goes into error messages.
``dumps(tree, crc=True) -> bytes``
    Serialize a tree. ``crc=False`` writes flags 0 and no CRC trailer. The C library
    never writes such files itself, but it reads them.
``read(path, max_size=MAX_FILE_SIZE) -> KVTree``
    Read a file. Raises ``FileNotFoundError`` if it is missing, and ``ControlFileError``
    if it cannot be read or is corrupt. A zero-length file is an empty tree, as in C.
``write(path, tree, crc=True) -> None``
    Write atomically: a temporary file in the same directory, then ``fsync`` and
    ``os.replace``. New files get mode ``0666 & ~umask``, as in C; an existing file keeps
    its mode.
``read_fd(fd, name="<fd>", max_size=MAX_FILE_SIZE) -> KVTree``
    Read from an open descriptor, starting at offset 0 (``pread``). This is for
    protocols that hold a lock on the descriptor, such as the halt file.
``write_fd_in_place(fd, tree) -> int``
    ``lseek(0)``, write, ``ftruncate``. This is how the C tools rewrite the halt file
    under ``flock``. Returns the number of bytes written.
``format_tree(tree, mode="tree", sort=False) -> str``
    Reproduce the C printers. ``mode="tree"`` is ``kvtree_print``; ``mode="keyval"`` with
    ``sort=True`` is SCR's ``scr_print``.
``MAX_DEPTH``
    The deepest nesting the reader accepts (SCR's files are at most 6 levels deep).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, Literal, Union, overload

from scr_core.errors import ControlFileError

__all__ = [
    "MAX_DEPTH",
    "KVTree",
    "dumps",
    "format_tree",
    "gc_paused",
    "loads",
    "read",
    "read_fd",
    "write",
    "write_fd_in_place",
]

MAGIC = 0x951FC3F5
FILE_TYPE_HASH = 1
FILE_VERSION_HASH_1 = 1
FLAG_CRC32 = 0x1
HEADER_SIZE = 20

# Deeper trees are rejected rather than risking Python's recursion limit in the recursive
# helpers (dumps, to_dict, ==). SCR's deepest file (filemap: FILE/<f>/META/<k>/<v>) has 5 levels.
MAX_DEPTH = 256

_HEADER = struct.Struct(">IHHQI")
_U32 = struct.Struct(">I")
_unpack_u32 = _U32.unpack_from
_pack_u32 = _U32.pack
_LEAF_TAIL = b"\0\0\0\0\0"  # a key's NUL terminator followed by an empty subtree (count 0)

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_ULONG_MAX = 2**64 - 1

Value = Union[str, int]


def _encode(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _check_key(key: str) -> str:
    """Validate a key before it enters a tree, so that dumps() can never fail or corrupt."""
    if not isinstance(key, str):
        raise TypeError(f"KVTree keys must be str, not {type(key).__name__}")
    if "\0" in key:
        raise ValueError(f"KVTree keys cannot contain NUL: {key!r}")
    try:
        _encode(key)
    except UnicodeEncodeError as exc:
        raise ValueError(f"KVTree key cannot be encoded as bytes: {key!r}") from exc
    return key


def _value_str(val: Value) -> str:
    # bool is an int subclass; C code stores flags with "%d", so True must become "1"
    if isinstance(val, bool):
        return "1" if val else "0"
    if isinstance(val, int):
        return str(val)
    return _check_key(val)


# --- C conversions (atoi, strtoul/strtoll with base 0) -------------------------------------

_ATOI_RE = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", re.ASCII)
# base 0: "0x" + hex digit is hex, a leading 0 is octal, otherwise decimal. A bare "0x" with no
# hex digit after it parses as "0" (the x is where parsing stops), which the alternation gives.
_STRTO_RE = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", re.ASCII)


def c_atoi(text: str) -> int:
    """C ``atoi``: optional blanks and sign, then the longest run of digits; none gives 0.

    Deliberately not reproduced: glibc's silent truncation of results outside a C ``int``
    (for example epoch times after 2038). Such values are returned unchanged.
    """
    if text.isascii() and text.isdigit():  # fast path: the common case, plain decimal
        return int(text)
    m = _ATOI_RE.match(text)
    return int(m.group(1)) if m else 0


def _strto_base0(text: str) -> tuple[bool, int]:
    if text.isascii() and text.isdigit() and (text[0] != "0" or text == "0"):
        return False, int(text)  # fast path: plain decimal, no octal prefix
    m = _STRTO_RE.match(text)
    if not m:
        return False, 0
    sign, digits = m.groups()
    if digits[:2] in ("0x", "0X"):
        magnitude = int(digits[2:], 16)
    elif len(digits) > 1 and digits[0] == "0":
        magnitude = int(digits[1:], 8)
    else:
        magnitude = int(digits)
    return sign == "-", magnitude


def c_strtoul(text: str) -> int:
    """C ``strtoul(s, NULL, 0)`` for a 64-bit ``unsigned long``, including its odd cases.

    ``0x`` means hex and a leading ``0`` means octal (``"010"`` is 8). A negative number
    wraps modulo 2**64. Overflow gives ``ULONG_MAX``.
    """
    negative, magnitude = _strto_base0(text)
    if magnitude > _ULONG_MAX:
        return _ULONG_MAX
    return (-magnitude) % (_ULONG_MAX + 1) if negative else magnitude


def c_strtoll(text: str) -> int:
    """C ``strtoll(s, NULL, 0)``: base detection as in ``strtoul``; clamps to the int64 range."""
    negative, magnitude = _strto_base0(text)
    value = -magnitude if negative else magnitude
    return max(_INT64_MIN, min(_INT64_MAX, value))


def _c_double(value: float) -> str:
    """glibc ``printf("%f")``. Python's "%f" matches it, except that glibc signs a negative NaN."""
    if math.isnan(value) and math.copysign(1.0, value) < 0:
        return "-nan"
    return f"{value:f}"


class KVTree:
    """An ordered mapping of ``str`` keys to ``KVTree`` subtrees, with KVTree's C semantics.

    Order is element order in the file. New keys go to the **front**, as with the C
    library's ``LIST_INSERT_HEAD``. Setting A, then B, then C therefore iterates and writes
    as C, B, A, exactly as C SCR writes it. Order carries no meaning; it only matters for
    producing the same bytes.

    Mapping protocol: ``len``, ``iter`` (keys in order), ``in``, ``t[key]`` (the subtree;
    ``KeyError`` if missing), ``keys()``, ``items()``. ``==`` compares content and ignores
    order, like ``dict``. :meth:`same_order` also compares order.

    C equivalents:

    - ``get(key)`` ~ ``kvtree_get``: the subtree, or None.
    - ``set(key, subtree=None)`` ~ ``kvtree_set``: replace, and move to the front.
    - ``subtree(key, create=True)`` ~ get, or create at the front.
    - ``unset(key)`` ~ ``kvtree_unset``.
    - ``value(key)`` ~ ``kvtree_get_val`` / ``util_get_str``: the value if the key has
      **exactly one**, else None (C prints an error when there are several).
    - ``first_value(key)`` ~ ``kvtree_elem_get_first_val``: the first value, whatever the count.
    - ``values(key)``: all values, in order.
    - ``set_value(key, val)`` ~ ``kvtree_util_set_str``: unset, then one value.
    - ``add_value(key, val)`` ~ ``kvtree_set_kv``: add one more value.
    - ``remove_value(key, val)`` ~ ``kvtree_unset_kv``: when the last value goes, the
      key goes too.
    - ``set_int``, ``set_unsigned``, ``set_bytecount``, ``set_int64``, ``set_double``,
      ``set_crc32`` ~ ``kvtree_util_set_*``, with their exact formatting (§4).
    - ``get_int`` (atoi of the first value), ``get_unsigned``/``get_bytecount`` (strtoul base 0
      of the single value), ``get_int64`` (strtoll base 0): None when not available.
    - ``merge(other)`` ~ ``kvtree_merge``: new keys are inserted at the front while walking
      *other* in order, so merging into an empty tree copies it **reversed**.
    - ``to_dict()`` / ``KVTree.from_dict(d)``: nested dicts with ``{}`` leaves, in order.
    """

    # _d holds the elements in REVERSE order: the last dict entry is the first element.
    # Appending to a dict is O(1), so inserting at the front (what C does on every set) stays
    # cheap even for an index with 10,000 datasets.
    __slots__ = ("_d",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._d: dict[str, KVTree] = {}
        if data is not None:
            for key, sub in reversed(list(data.items())):
                if isinstance(sub, KVTree):
                    sub = sub.copy()
                elif isinstance(sub, Mapping):
                    sub = KVTree(sub)
                else:
                    raise TypeError(
                        f"subtree of {key!r} must be a mapping, not {type(sub).__name__}"
                    )
                self._d[_check_key(key)] = sub

    @classmethod
    def _empty(cls) -> KVTree:
        tree = cls.__new__(cls)
        tree._d = {}
        return tree

    # --- mapping protocol -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._d)

    def __iter__(self) -> Iterator[str]:
        return reversed(self._d)

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __getitem__(self, key: str) -> KVTree:
        return self._d[key]

    def keys(self) -> list[str]:
        return list(reversed(self._d))

    def items(self) -> list[tuple[str, KVTree]]:
        return list(reversed(self._d.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KVTree):
            return NotImplemented
        return self._d == other._d

    __hash__ = None  # type: ignore[assignment]  # mutable

    def same_order(self, other: KVTree) -> bool:
        """True if equal *and* in the same order at every level, so ``dumps`` gives equal bytes."""
        if list(self._d) != list(other._d):
            return False
        return all(sub.same_order(other._d[key]) for key, sub in self._d.items())

    def __repr__(self) -> str:
        return f"KVTree({self.to_dict()!r})"

    def copy(self) -> KVTree:
        """Deep copy, keeping the order."""
        new = KVTree._empty()
        new._d = {key: sub.copy() for key, sub in self._d.items()}
        return new

    def to_dict(self) -> dict[str, Any]:
        """Nested dicts in element order, ``{}`` for leaves: the JSON form of the golden files."""
        return {key: sub.to_dict() for key, sub in reversed(self._d.items())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KVTree:
        """Build a tree from nested mappings; the mapping order becomes element order."""
        return cls(data)

    # --- structure ----------------------------------------------------------------------------

    def get(self, key: str) -> KVTree | None:
        """The subtree under *key*, or None."""
        return self._d.get(key)

    def set(self, key: str, subtree: KVTree | None = None) -> KVTree:
        """Store *subtree* (empty if None) under *key*, replacing and moving it to the front."""
        d = self._d
        if key in d:
            del d[key]
        else:
            _check_key(key)
        sub = KVTree._empty() if subtree is None else subtree
        d[key] = sub
        return sub

    @overload
    def subtree(self, key: str, create: Literal[True] = ...) -> KVTree: ...
    @overload
    def subtree(self, key: str, create: bool) -> KVTree | None: ...

    def subtree(self, key: str, create: bool = True) -> KVTree | None:
        """The subtree under *key*. If missing, create an empty one at the front, or return None."""
        sub = self._d.get(key)
        if sub is None and create:
            sub = KVTree._empty()
            self._d[_check_key(key)] = sub
        return sub

    def unset(self, key: str) -> bool:
        """Remove *key* and its subtree; True if it was there."""
        return self._d.pop(key, None) is not None

    def unset_all(self) -> None:
        self._d.clear()

    def merge(self, other: KVTree) -> None:
        """``kvtree_merge(self, other)``: add *other*'s content, recursively.

        Walking *other* in order, a new key is inserted at the front, so the new keys come out
        reversed. An existing key keeps its place and is merged into.
        """
        d = self._d
        for key, sub in reversed(other._d.items()):
            mine = d.get(key)
            if mine is None:
                mine = d[key] = KVTree._empty()
            mine.merge(sub)

    def sort(self, recursive: bool = False) -> None:
        """``kvtree_sort`` ascending: keys in ``strcmp`` order of their raw bytes."""
        keys = sorted(self._d, key=_encode, reverse=True)  # reversed storage
        self._d = {key: self._d[key] for key in keys}
        if recursive:
            for sub in self._d.values():
                sub.sort(recursive=True)

    # --- values -------------------------------------------------------------------------------

    def values(self, key: str) -> list[str]:
        """All values of *key* in order; empty if the key is missing."""
        sub = self._d.get(key)
        return [] if sub is None else list(reversed(sub._d))

    def first_value(self, key: str) -> str | None:
        """The first value of *key*, however many it has; None if none."""
        sub = self._d.get(key)
        if not sub:
            return None
        return next(reversed(sub._d))

    def value(self, key: str) -> str | None:
        """The value of *key* if it has exactly one, else None (missing, no value, or several)."""
        sub = self._d.get(key)
        if sub is None or len(sub._d) != 1:
            return None
        return next(iter(sub._d))

    def has_value(self, key: str, val: Value) -> bool:
        sub = self._d.get(key)
        return sub is not None and _value_str(val) in sub._d

    def set_value(self, key: str, val: Value) -> KVTree:
        """Unset *key*, then give it the single value *val*. An int is written with ``%d``."""
        text = _value_str(val)
        self.unset(key)
        return self.add_value(key, text)

    def add_value(self, key: str, val: Value) -> KVTree:
        """``kvtree_set_kv``: add *val* to *key*, which may then hold several values.

        A new key, or a new value, goes to the front. An existing one keeps its place.
        Returns the value's subtree, as the C function does.
        """
        text = _value_str(val)
        return self.subtree(key).subtree(text)

    def remove_value(self, key: str, val: Value) -> None:
        """``kvtree_unset_kv``: remove one value; if *key* is then empty, remove *key* too."""
        sub = self._d.get(key)
        if sub is None:
            return
        sub._d.pop(_value_str(val), None)
        if not sub._d:
            del self._d[key]

    # kvtree_util_set_* (§4): every setter unsets the key first, so exactly one value remains.

    def set_int(self, key: str, val: int) -> None:
        """``%d`` of a C int."""
        if not _INT_MIN <= val <= _INT_MAX:
            raise ValueError(f"{key}: {val} does not fit a C int")
        self.set_value(key, str(int(val)))

    def set_unsigned(self, key: str, val: int) -> None:
        """``%lu`` of a 64-bit unsigned long (``kvtree_util_set_unsigned_long``)."""
        if not 0 <= val <= _ULONG_MAX:
            raise ValueError(f"{key}: {val} does not fit an unsigned long")
        self.set_value(key, str(int(val)))

    set_bytecount = set_unsigned  # kvtree_util_set_bytecount also writes "%lu"

    def set_int64(self, key: str, val: int) -> None:
        """``%lld`` of an int64."""
        if not _INT64_MIN <= val <= _INT64_MAX:
            raise ValueError(f"{key}: {val} does not fit an int64")
        self.set_value(key, str(int(val)))

    def set_double(self, key: str, val: float) -> None:
        """glibc ``%f``: six decimals, ``inf``, ``nan``, ``-0.000000``."""
        self.set_value(key, _c_double(float(val)))

    def set_crc32(self, key: str, crc: int) -> None:
        """``%#x`` of a uint32: ``0x3610a686``, but a bare ``0`` for zero (C adds no prefix)."""
        crc &= 0xFFFFFFFF
        self.set_value(key, f"0x{crc:x}" if crc else "0")

    def get_int(self, key: str) -> int | None:
        """``kvtree_util_get_int``: ``atoi`` of the first value (count unchecked); None if none."""
        text = self.first_value(key)
        return None if text is None else c_atoi(text)

    def get_unsigned(self, key: str) -> int | None:
        """``kvtree_util_get_unsigned_long``: strtoul base 0 of the single value; None otherwise."""
        text = self.value(key)
        return None if text is None else c_strtoul(text)

    get_bytecount = get_unsigned

    def get_int64(self, key: str) -> int | None:
        """``kvtree_util_get_int64``: strtoll base 0 of the single value; None otherwise."""
        text = self.value(key)
        return None if text is None else c_strtoll(text)


# --- reading --------------------------------------------------------------------------------


class _Duplicates(Exception):
    """Internal: the fast parser met a duplicate key; reparse with the C merge rule."""


def _fail(name: str, what: str) -> ControlFileError:
    return ControlFileError(f"{name}: {what}")


def _parse_fast(buf: bytes, pos: int, end: int, name: str) -> KVTree:
    """Unpack the tree in ``buf[pos:end]``, assuming no duplicate keys (raises _Duplicates).

    Iterative, so hostile nesting cannot overflow the stack. Every count is checked against
    the bytes left (each element needs at least 5: a NUL and a count), and every key must end
    in a NUL before *end*.
    """
    find = buf.find
    u32 = _unpack_u32
    new = KVTree.__new__
    if end - pos < 4:
        raise _fail(name, f"no room for the element count at offset {pos}")
    (count,) = u32(buf, pos)
    pos += 4
    if count * 5 > end - pos:
        raise _fail(name, f"element count {count} at offset {pos - 4} exceeds the data left")
    root = new(KVTree)
    node, d, remaining, expected = root, {}, count, count
    stack: list[tuple[KVTree, dict[str, KVTree], int, int]] = []
    while True:
        if remaining == 0:
            if len(d) != expected:
                raise _Duplicates
            # storage is reversed (see KVTree); the file gave us front-to-back order
            node._d = dict(reversed(d.items())) if expected > 1 else d
            if not stack:
                return root
            node, d, remaining, expected = stack.pop()
            continue
        nul = find(b"\0", pos, end)
        if nul < 0:
            raise _fail(name, f"key at offset {pos} has no terminating NUL before the end of data")
        key = buf[pos:nul].decode("utf-8", "surrogateescape")
        pos = nul + 5
        if pos > end:
            raise _fail(name, f"no room for the element count of key {key!r} at offset {nul + 1}")
        (n,) = u32(buf, nul + 1)
        child = new(KVTree)
        d[key] = child
        remaining -= 1
        if n == 0:
            child._d = {}
            continue
        if n * 5 > end - pos:
            raise _fail(name, f"element count {n} at offset {nul + 1} exceeds the data left")
        if n == 1:
            # fast path for the commonest shape, "key = value": one child that is a leaf
            nul2 = find(b"\0", pos, end)
            if nul2 >= 0 and nul2 + 5 <= end and u32(buf, nul2 + 1)[0] == 0:
                leaf = new(KVTree)
                leaf._d = {}
                child._d = {buf[pos:nul2].decode("utf-8", "surrogateescape"): leaf}
                pos = nul2 + 5
                continue
        if len(stack) >= MAX_DEPTH:
            raise _fail(name, f"tree is nested deeper than {MAX_DEPTH} levels")
        stack.append((node, d, remaining, expected))
        node, d, remaining, expected = child, {}, n, n


def _parse_raw(buf: bytes, pos: int, end: int, name: str) -> list[Any]:
    """Unpack into nested ``[(key, children), ...]`` lists in file order, duplicates kept."""
    find = buf.find
    u32 = _unpack_u32
    if end - pos < 4:
        raise _fail(name, f"no room for the element count at offset {pos}")
    (count,) = u32(buf, pos)
    pos += 4
    if count * 5 > end - pos:
        raise _fail(name, f"element count {count} at offset {pos - 4} exceeds the data left")
    root: list[Any] = []
    cur, remaining = root, count
    stack: list[tuple[list[Any], int]] = []
    while True:
        if remaining == 0:
            if not stack:
                return root
            cur, remaining = stack.pop()
            continue
        nul = find(b"\0", pos, end)
        if nul < 0 or nul + 5 > end:
            raise _fail(name, f"truncated element at offset {pos}")
        (n,) = u32(buf, nul + 1)
        children: list[Any] = []
        cur.append((buf[pos:nul].decode("utf-8", "surrogateescape"), children))
        pos = nul + 5
        remaining -= 1
        if n:
            if n * 5 > end - pos:
                raise _fail(name, f"element count {n} at offset {nul + 1} exceeds the data left")
            if len(stack) >= MAX_DEPTH:
                raise _fail(name, f"tree is nested deeper than {MAX_DEPTH} levels")
            stack.append((cur, remaining))
            cur, remaining = children, n


def _merge_raw(dst: KVTree, elems: list[Any]) -> None:
    """Apply the C library's read path (unpack at head, then kvtree_merge) to raw elements.

    Elements are walked in reverse file order. A key not seen yet goes to the front; a repeated
    key's children are merged into the existing subtree by the same rule (§3.4).
    """
    d = dst._d
    for key, children in reversed(elems):
        sub = d.get(key)
        if sub is None:
            sub = d[key] = KVTree._empty()
        if children:
            _merge_raw(sub, children)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector (left as it was if already paused).

    A parsed tree is ~2 tracked objects per element and has no cycles. Pausing the collector
    only while parsing defers its cost: the next allocation after re-enabling it scans every
    node once (most of ``IndexFile.entries()`` on a 10,000-dataset index). A caller that
    reads a tree, decodes it and drops it can pause it around all three: the nodes are freed
    by reference counting before the collector runs again, and it never sees them.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _decode(buf: bytes, filesize: int, flags: int, name: str) -> KVTree:
    """Check the CRC and unpack; ``buf[:filesize]`` is the file (later bytes are ignored)."""
    if flags & FLAG_CRC32:
        if filesize < HEADER_SIZE + 4:
            raise _fail(name, f"file size {filesize} in the header leaves no room for the CRC32")
        end = filesize - 4
        (stored,) = _unpack_u32(buf, end)
        computed = zlib.crc32(memoryview(buf)[:end])
        if stored != computed:
            raise _fail(name, f"CRC32 mismatch (stored {stored:#010x}, computed {computed:#010x})")
    else:
        end = filesize
    # The parser allocates one object per element and keeps them all alive; the cyclic GC
    # would rescan them again and again for nothing (it more than doubled the time of reading
    # a 10,000-dataset index), so it is paused while parsing. The parser creates no cycles.
    with gc_paused():
        try:
            return _parse_fast(buf, HEADER_SIZE, end, name)
        except _Duplicates:
            tree = KVTree._empty()
            _merge_raw(tree, _parse_raw(buf, HEADER_SIZE, end, name))
            return tree


def _check_header(header: bytes, name: str) -> tuple[int, int]:
    magic, ftype, version, filesize, flags = _HEADER.unpack_from(header)
    if magic != MAGIC or ftype != FILE_TYPE_HASH or version != FILE_VERSION_HASH_1:
        raise _fail(
            name,
            f"not a KVTree file: header magic {magic:#010x} type {ftype} version {version} "
            f"(expected {MAGIC:#010x} type 1 version 1)",
        )
    if filesize < HEADER_SIZE:
        raise _fail(name, f"invalid file size {filesize} in header (less than {HEADER_SIZE})")
    return filesize, flags


def loads(data: bytes | bytearray | memoryview, name: str = "<bytes>") -> KVTree:
    """Parse a whole KVTree file held in memory. Empty input is an empty tree, as in C."""
    buf = data if isinstance(data, (bytes, bytearray)) else bytes(data)
    size = len(buf)
    if size == 0:
        return KVTree._empty()
    if size < HEADER_SIZE:
        raise _fail(name, f"invalid header: {size} bytes but a header needs {HEADER_SIZE}")
    filesize, flags = _check_header(buf, name)
    if filesize > size:
        raise _fail(name, f"truncated: header says {filesize} bytes but only {size} present")
    return _decode(buf, filesize, flags, name)


_READ_CHUNK = 1 << 24


def _pread_upto(fd: int, count: int, offset: int) -> bytes:
    """Read up to *count* bytes at *offset*, in bounded chunks, stopping early at end of file.

    The buffer grows only with data actually read, so a corrupt size field cannot make us
    allocate more memory than the file holds.
    """
    parts = []
    while count > 0:
        chunk = os.pread(fd, min(count, _READ_CHUNK), offset)
        if not chunk:
            break
        parts.append(chunk)
        count -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


#: Largest control file read (``read``/``read_fd``'s *max_size*): decoding costs ~20 times
#: the file's size in memory, so a file claiming more is refused as corrupt, not parsed.
MAX_FILE_SIZE = 256 << 20


def read_fd(fd: int, name: str = "<fd>", max_size: int = MAX_FILE_SIZE) -> KVTree:
    """Read a KVTree file from open descriptor *fd*, starting at offset 0; a file larger
    than *max_size* bytes is a ``ControlFileError``."""
    try:
        header = _pread_upto(fd, HEADER_SIZE, 0)
        if not header:
            return KVTree._empty()
        if len(header) < HEADER_SIZE:
            raise _fail(
                name, f"invalid header: {len(header)} bytes but a header needs {HEADER_SIZE}"
            )
        filesize, flags = _check_header(header, name)
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and filesize > st.st_size:
            # checked before reading, so a huge size field costs nothing
            raise _fail(
                name, f"truncated: header says {filesize} bytes but the file has {st.st_size}"
            )
        if filesize > max_size:
            raise _fail(name, f"too large: header says {filesize} bytes, more than the "
                              f"{max_size} a control file of this kind may have")
        body = _pread_upto(fd, filesize - HEADER_SIZE, HEADER_SIZE)
    except OSError as exc:
        raise _fail(name, f"read failed: {exc.strerror or exc}") from exc
    if len(body) < filesize - HEADER_SIZE:
        raise _fail(
            name, f"truncated: header says {filesize} bytes but only {HEADER_SIZE + len(body)} read"
        )
    return _decode(header + body, filesize, flags, name)


def require_regular(fd: int, name: str) -> None:
    """ControlFileError unless *fd* is a regular file (a FIFO or device could block a read
    forever or never end)."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        raise _fail(name, "not a regular file")


def read(path: str | os.PathLike[str], max_size: int = MAX_FILE_SIZE) -> KVTree:
    """Read a KVTree file.

    Missing: ``FileNotFoundError``. Unreadable, corrupt or larger than *max_size* bytes:
    ``ControlFileError``.
    """
    name = os.fspath(path)
    try:
        # O_NONBLOCK: a FIFO put in a control file's place must not hang the open
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _fail(name, f"cannot open: {exc.strerror or exc}") from exc
    try:
        require_regular(fd, name)
        return read_fd(fd, name, max_size)
    finally:
        os.close(fd)


# --- writing --------------------------------------------------------------------------------


def _pack(tree: KVTree, out: list[bytes]) -> None:
    d = tree._d
    out.append(_pack_u32(len(d)))
    for key in reversed(d):  # storage is reversed; write front to back
        sub = d[key]
        if sub._d:
            out.append(_encode(key) + b"\0")
            _pack(sub, out)
        else:
            out.append(_encode(key) + _LEAF_TAIL)


def dumps(tree: KVTree, crc: bool = True) -> bytes:
    """Serialize *tree* as the C library does (header, packed tree, CRC32 trailer if *crc*)."""
    parts: list[bytes] = [b""]  # placeholder for the header
    _pack(tree, parts)
    body_size = sum(map(len, parts))
    filesize = HEADER_SIZE + body_size + (4 if crc else 0)
    parts[0] = _HEADER.pack(
        MAGIC, FILE_TYPE_HASH, FILE_VERSION_HASH_1, filesize, FLAG_CRC32 if crc else 0
    )
    data = b"".join(parts)
    if crc:
        data += _pack_u32(zlib.crc32(data))
    return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_fd_in_place(fd: int, tree: KVTree) -> int:
    """Rewrite the file open on *fd*: ``lseek(0)``, write, ``ftruncate``. Returns the size.

    This is the halt-file protocol of ``scr_halt_cntl`` and ``kvtree_write_close_unlock``;
    the caller holds the lock.
    """
    data = dumps(tree)
    os.lseek(fd, 0, os.SEEK_SET)
    _write_all(fd, data)
    os.ftruncate(fd, len(data))
    return len(data)


def write(path: str | os.PathLike[str], tree: KVTree, crc: bool = True) -> None:
    """Write *tree* to *path* atomically: temporary file in the same directory, fsync, rename.

    Unlike ``kvtree_write_file`` (``O_TRUNC`` in place), a concurrent reader sees either the
    old or the new file, never a partial one. Errors raise ``ControlFileError``. Not for the
    halt file: its users lock the inode, which a rename would replace (use
    :func:`write_fd_in_place`).
    """
    data = dumps(tree, crc=crc)
    name = os.fspath(path)
    directory, base = os.path.split(name)
    directory = directory or "."
    try:
        mode: int | None = stat.S_IMODE(os.stat(name).st_mode)
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise _fail(name, f"cannot write: {exc.strerror or exc}") from exc
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    tmp = ""
    fd = -1
    try:
        for _ in range(100):
            tmp = os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
            try:
                fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask, as for C
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"could not create a temporary file next to {name}")
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name)
    except OSError as exc:
        if fd >= 0:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise _fail(name, f"cannot write: {exc.strerror or exc}") from exc
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    # Makes the rename durable; best effort, since some file systems refuse it.
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# --- printing -------------------------------------------------------------------------------


def format_tree(tree: KVTree, mode: str = "tree", sort: bool = False) -> str:
    """Text of the C printers (§5.8): indent 2 per level, top level at 2 spaces.

    ``mode="tree"`` prints one key per line (``kvtree_print``). ``mode="keyval"`` prints an
    element whose subtree is exactly one leaf as ``key = value``. ``sort=True`` sorts every
    level by the raw bytes of the keys first, as SCR's ``scr_print`` does (it defaults to
    keyval). Keys are raw bytes: encode the result with ``surrogateescape`` to get the
    C output byte for byte.
    """
    if mode not in ("tree", "keyval"):
        raise ValueError(f"unknown print mode {mode!r} (expected 'tree' or 'keyval')")
    keyval = mode == "keyval"
    lines: list[str] = []

    def walk(node: KVTree, pad: str) -> None:
        keys = sorted(node._d, key=_encode) if sort else reversed(node._d)
        for key in keys:
            sub = node._d[key]
            if keyval and len(sub._d) == 1:
                ((val, leaf),) = sub._d.items()
                if not leaf._d:
                    lines.append(f"{pad}{key} = {val}\n")
                    continue
            lines.append(f"{pad}{key}\n")
            if sub._d:
                walk(sub, pad + "  ")

    walk(tree, "  ")
    return "".join(lines)
