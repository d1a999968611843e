"""Tests of scr_core.kvtree against the KVTree 1.5.0 golden files and the format spec."""

from __future__ import annotations

import json
import math
import os
import random
import stat
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import scr_core.kvtree as kvtree
from scr_core.errors import ControlFileError
from scr_core.kvtree import KVTree, c_atoi, c_strtoll, c_strtoul, dumps, format_tree, loads

GOLDEN = Path(__file__).parent / "fixtures" / "kvtree-golden"
STEMS = sorted(p.name[: -len(".kvtree")] for p in GOLDEN.glob("*.kvtree"))
META = {stem: json.loads((GOLDEN / f"{stem}.json").read_text()) for stem in STEMS}
ACCEPTED = [s for s in STEMS if META[s]["accepted_by_real_library"]]
REJECTED = [s for s in STEMS if not META[s]["accepted_by_real_library"]]
LIBRARY_WRITTEN = [s for s in STEMS if s[0] in "abcdgh"]


def golden_bytes(stem: str) -> bytes:
    return (GOLDEN / f"{stem}.kvtree").read_bytes()


def ordered(tree: KVTree | dict[str, Any]) -> list[Any]:
    """Nested [key, children] lists: compares order as well as content."""
    return [[key, ordered(sub)] for key, sub in tree.items()]


def build(
    *elems: bytes, crc: bool = True, flags: int | None = None, size: int | None = None
) -> bytes:
    """A file from raw packed-tree bytes, with a correct header unless told otherwise."""
    body = b"".join(elems)
    filesize = 20 + len(body) + (4 if crc else 0)
    header = struct.pack(
        ">IHHQI",
        0x951FC3F5,
        1,
        1,
        filesize if size is None else size,
        (1 if crc else 0) if flags is None else flags,
    )
    data = header + body
    return data + struct.pack(">I", zlib.crc32(data)) if crc else data


def count(n: int) -> bytes:
    return struct.pack(">I", n)


def elem(key: bytes, *children: bytes) -> bytes:
    return key + b"\0" + count(len(children)) + b"".join(children)


def test_golden_set_is_complete() -> None:
    # the copy in fixtures must hold every group the spec talks about
    assert len(STEMS) == 26
    assert {s[0] for s in ACCEPTED} == set("abcdghy")
    assert all(s.startswith("x_") for s in REJECTED) and len(REJECTED) == 6


# --- golden files ---------------------------------------------------------------------------


@pytest.mark.parametrize("stem", ACCEPTED)
def test_accepted_golden_reads_to_library_tree(stem: str) -> None:
    tree = loads(golden_bytes(stem), stem)
    assert ordered(tree) == ordered(META[stem]["tree"])
    assert tree.to_dict() == META[stem]["tree"]
    assert json.dumps(tree.to_dict()) == json.dumps(META[stem]["tree"])  # order too
    # the file-based reader gives the same tree
    assert kvtree.read(GOLDEN / f"{stem}.kvtree").same_order(tree)


@pytest.mark.parametrize("stem", ACCEPTED)
@pytest.mark.parametrize(
    ("mode", "sort", "suffix"),
    [("tree", False, "tree"), ("keyval", False, "keyval"), ("keyval", True, "scr_print")],
)
def test_printers_match_library(stem: str, mode: str, sort: bool, suffix: str) -> None:
    tree = loads(golden_bytes(stem), stem)
    expected = (GOLDEN / f"{stem}.{suffix}.txt").read_bytes()
    assert format_tree(tree, mode, sort).encode("utf-8", "surrogateescape") == expected


@pytest.mark.parametrize("stem", LIBRARY_WRITTEN)
def test_library_written_golden_rewrites_byte_for_byte(stem: str, tmp_path: Path) -> None:
    data = golden_bytes(stem)
    crc = not stem.endswith("_nocrc")
    tree = loads(data, stem)
    assert dumps(tree, crc=crc) == data
    # also from the JSON tree, i.e. from a tree built through the public constructor
    assert dumps(KVTree.from_dict(META[stem]["tree"]), crc=crc) == data
    kvtree.write(tmp_path / "out.kvtree", tree, crc=crc)
    assert (tmp_path / "out.kvtree").read_bytes() == data


@pytest.mark.parametrize("stem", REJECTED)
def test_rejected_golden_raises_control_file_error(stem: str) -> None:
    path = GOLDEN / f"{stem}.kvtree"
    with pytest.raises(ControlFileError) as info:
        kvtree.read(path)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 6
    with pytest.raises(ControlFileError, match=stem):
        loads(path.read_bytes(), stem)


@pytest.mark.parametrize(
    ("stem", "pattern"),
    [
        ("x_bad_crc", "CRC32 mismatch"),
        ("x_flipped_byte", "CRC32 mismatch"),
        ("x_bad_magic", "not a KVTree file"),
        ("x_filesize_too_small", "invalid file size 16"),
        ("x_short_header", "10 bytes"),
        ("x_truncated", "truncated"),
    ],
)
def test_rejection_messages_say_what_is_wrong(stem: str, pattern: str) -> None:
    with pytest.raises(ControlFileError, match=pattern):
        kvtree.read(GOLDEN / f"{stem}.kvtree")


# --- reading rules of §3.2 / §3.4 not covered by a golden file ------------------------------


def test_zero_length_file_is_empty_tree(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert len(kvtree.read(path)) == 0
    assert len(loads(b"")) == 0


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        kvtree.read(tmp_path / "nope")


def test_trailing_bytes_after_filesize_are_ignored(tmp_path: Path) -> None:
    data = golden_bytes("a_flat")
    tree = loads(data + b"garbage that was never written by this tree")
    assert ordered(tree) == ordered(META["a_flat"]["tree"])
    # like kvtree_write_with_lock: a shorter file written over a longer one, no ftruncate
    old = dumps(KVTree.from_dict({"X" * 300: {"y": {}}}))
    path = tmp_path / "stale"
    path.write_bytes(data + old[len(data) :])
    assert path.stat().st_size == len(old)
    assert kvtree.read(path).same_order(loads(data))


def test_slack_between_tree_and_crc_is_ignored() -> None:
    packed = count(1) + elem(b"NAME", elem(b"ckpt.1"))
    data = build(packed, b"\xaa\xbb\xcc")
    assert loads(data).to_dict() == {"NAME": {"ckpt.1": {}}}
    assert loads(build(packed, b"\x00" * 7, crc=False)).to_dict() == {"NAME": {"ckpt.1": {}}}


def test_unknown_flag_bits_are_ignored() -> None:
    packed = count(1) + elem(b"K", elem(b"V"))
    assert loads(build(packed, flags=0xFFFFFFFF)).to_dict() == {"K": {"V": {}}}
    assert loads(build(packed, crc=False, flags=0x7FFFFFFE)).to_dict() == {"K": {"V": {}}}


def test_nocrc_corruption_is_not_detected_like_the_library() -> None:
    data = bytearray(golden_bytes("d_halt_job_halted_nocrc"))
    data[data.index(b"JOB_HALTED")] ^= 0x20
    assert loads(bytes(data)).to_dict() == {"ExitReason": {"jOB_HALTED": {}}}


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (struct.pack(">IHHQI", 0x951FC3F5, 2, 1, 28, 1) + bytes(8), "type 2"),
        (struct.pack(">IHHQI", 0x951FC3F5, 1, 2, 28, 1) + bytes(8), "version 2"),
        (struct.pack("<IHHQI", 0x951FC3F5, 1, 1, 28, 1) + bytes(8), "not a KVTree file"),
        (struct.pack(">IHHQI", 0x951FC3F5, 1, 1, 2**64 - 1, 1) + bytes(8), "truncated"),
        (struct.pack(">IHHQI", 0x951FC3F5, 1, 1, 2**40, 0) + bytes(8), "truncated"),
    ],
)
def test_bad_headers(data: bytes, pattern: str, tmp_path: Path) -> None:
    with pytest.raises(ControlFileError, match=pattern):
        loads(data)
    path = tmp_path / "f"
    path.write_bytes(data)
    with pytest.raises(ControlFileError, match=pattern):
        kvtree.read(path)


@pytest.mark.parametrize("filesize", [20, 21, 22, 23])
def test_crc_flag_with_filesize_below_24_is_rejected(filesize: int) -> None:
    data = struct.pack(">IHHQI", 0x951FC3F5, 1, 1, filesize, 1) + bytes(8)
    with pytest.raises(ControlFileError, match="no room for the CRC32"):
        loads(data)


@pytest.mark.parametrize(
    "packed",
    [
        b"",  # no count at all (filesize 20, no CRC)
        count(1000) + elem(b"A"),  # count far beyond the data (C: SIGSEGV)
        count(2) + elem(b"A"),  # count 2, one element (C: invents a "" key)
        count(1) + b"KEY-WITHOUT-NUL",  # key runs off the end (C: accepted)
        count(1) + b"KEY\0" + b"\x00\x00",  # subtree count cut short
        count(1) + elem(b"A")[:-4] + count(3) + b"x\0",  # nested count too large
    ],
)
def test_out_of_bounds_counts_and_keys_are_rejected(packed: bytes) -> None:
    for data in (build(packed, crc=False), build(packed, crc=True)):
        with pytest.raises(ControlFileError):
            loads(data)


def test_count_that_cannot_fit_fails_before_parsing_elements() -> None:
    # 2**32-1 elements would need 20 GiB; the check against the bytes left catches it at once
    packed = count(2**32 - 1) + elem(b"A") * 3
    with pytest.raises(ControlFileError, match="exceeds the data left"):
        loads(build(packed, crc=False))
    with pytest.raises(ControlFileError, match="exceeds the data left"):
        loads(build(count(1) + b"A\0" + count(100) + elem(b"x")))


def test_io_error_while_reading_is_control_file_error(tmp_path: Path) -> None:
    with pytest.raises(ControlFileError, match="not a regular file"):
        kvtree.read(tmp_path)  # refused before reading (a FIFO would block)
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(ControlFileError, match="read failed"):
            kvtree.read_fd(fd, str(tmp_path))  # a directory opens, but cannot be read
    finally:
        os.close(fd)


def test_nesting_deeper_than_max_depth_is_rejected() -> None:
    deep = elem(b"leaf")
    for _ in range(kvtree.MAX_DEPTH + 5):
        deep = elem(b"n", deep)
    with pytest.raises(ControlFileError, match="nested deeper"):
        loads(build(count(1) + deep))
    ok = elem(b"leaf")
    for _ in range(kvtree.MAX_DEPTH - 2):
        ok = elem(b"n", ok)
    assert len(loads(build(count(1) + ok))) == 1


def c_read_model(data: bytes) -> list[Any]:
    """The C read path, literally: unpack inserting at the head, then kvtree_merge into empty."""

    def unpack(pos: int) -> tuple[list[Any], int]:
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4
        lst: list[Any] = []
        for _ in range(n):
            nul = data.index(b"\0", pos)
            key = data[pos:nul].decode("utf-8", "surrogateescape")
            sub, pos = unpack(nul + 1)
            lst.insert(0, [key, sub])  # LIST_INSERT_HEAD
        return lst, pos

    def merge(dst: list[Any], src: list[Any]) -> None:
        for key, sub in src:  # walk src front to back
            existing = next((e for e in dst if e[0] == key), None)
            if existing is None:
                existing = [key, []]
                dst.insert(0, existing)  # kvtree_set inserts at the head
            merge(existing[1], sub)

    raw, _ = unpack(20)
    result: list[Any] = []
    merge(result, raw)
    return result


def test_duplicate_keys_are_merged_by_the_c_rule() -> None:
    packed = count(4) + b"".join(
        [
            elem(b"A", elem(b"x"), elem(b"y", elem(b"1"))),
            elem(b"B", elem(b"b")),
            elem(b"A", elem(b"z"), elem(b"y", elem(b"2"))),
            elem(b"C"),
        ]
    )
    data = build(packed)
    tree = loads(data)
    # walk in reverse file order: C, A(2nd), B, A(1st merged into A) -> B, A, C
    assert ordered(tree) == [
        ["B", [["b", []]]],
        ["A", [["x", []], ["z", []], ["y", [["1", []], ["2", []]]]]],
        ["C", []],
    ]
    assert ordered(tree) == c_read_model(data)


def test_unusual_bytes_in_keys_round_trip(tmp_path: Path) -> None:
    keys = [b"", b"a=b c", b"\xff\xfe invalid utf-8", "\u00e9t\u00e9".encode(), b"\x01\x7f\n\t"]
    packed = count(len(keys)) + b"".join(elem(k, elem(k + b"!")) for k in keys)
    data = build(packed)
    tree = loads(data)
    assert [k.encode("utf-8", "surrogateescape") for k in tree] == keys
    assert dumps(tree) == data
    kvtree.write(tmp_path / "u", tree)
    assert (tmp_path / "u").read_bytes() == data


# --- fuzzing: truncations and bit flips of every golden file ---------------------------------


@pytest.mark.parametrize("stem", ACCEPTED)
def test_truncations_and_bit_flips_only_raise_control_file_error(stem: str) -> None:
    data = golden_bytes(stem)
    rng = random.Random(stem)
    variants = [data[:n] for n in range(len(data))]
    for _ in range(400):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            if mutated:
                mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        variants.append(bytes(mutated))
    start = time.monotonic()
    accepted = 0
    for variant in variants:
        try:
            result = loads(variant, stem)
        except ControlFileError:
            continue
        assert isinstance(result, KVTree)
        dumps(result)  # whatever was accepted must also be writable
        accepted += 1
    assert time.monotonic() - start < 10
    if not stem.endswith("_nocrc") and data:
        # with a CRC, almost every change must be caught (flags bits other than 0 are ignored)
        assert accepted < len(variants) // 10


def test_random_garbage_never_crashes() -> None:
    rng = random.Random(7)
    header = struct.pack(">IHHQ", 0x951FC3F5, 1, 1, 0)[:8]
    for _ in range(2000):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(60)))
        filesize = 20 + len(body)
        data = header + struct.pack(">QI", filesize, 0) + body
        try:
            loads(data)
        except ControlFileError:
            pass


# --- data model ----------------------------------------------------------------------------


def test_setters_insert_at_head_like_c() -> None:
    tree = KVTree()
    tree.set_value("NAME", "ckpt.1")
    tree.set_value("USER", "alice")
    tree.set_value("CLUSTER", "quartz")
    assert dumps(tree) == golden_bytes("a_flat")
    assert list(tree) == ["CLUSTER", "USER", "NAME"]
    tree.set_value("NAME", "ckpt.2")  # unset + set moves it to the front
    assert list(tree) == ["NAME", "CLUSTER", "USER"]
    tree.set("USER", KVTree.from_dict({"bob": {}}))  # kvtree_set also moves to the front
    assert list(tree) == ["USER", "NAME", "CLUSTER"]


def test_value_accessors() -> None:
    tree = KVTree()
    tree.add_value("LOCATION", "CACHE")
    tree.add_value("LOCATION", "PFS")
    tree.add_value("LOCATION", "CACHE")  # existing value keeps its place
    assert tree.values("LOCATION") == ["PFS", "CACHE"]
    assert tree.first_value("LOCATION") == "PFS"
    assert tree.value("LOCATION") is None  # not exactly one
    assert tree.has_value("LOCATION", "PFS")
    tree.remove_value("LOCATION", "PFS")
    assert tree.value("LOCATION") == "CACHE"
    tree.remove_value("LOCATION", "CACHE")
    assert "LOCATION" not in tree  # kvtree_unset_kv drops the emptied key
    assert tree.value("LOCATION") is None and tree.values("LOCATION") == []
    tree.set_value("FLAG", True)
    assert tree.value("FLAG") == "1"
    assert tree.get("missing") is None
    assert tree.subtree("missing", create=False) is None
    assert tree.unset("FLAG") and not tree.unset("FLAG")


def test_util_setters_reproduce_c_util_values_golden() -> None:
    tree = KVTree()
    tree.set_int("INT_POS", 42)
    tree.set_int("INT_NEG", -7)
    tree.set_int("INT_ZERO", 0)
    tree.set_int("INT_MAX", 2**31 - 1)
    tree.set_int("INT_MIN", -(2**31))
    tree.set_unsigned("ULONG_ZERO", 0)
    tree.set_unsigned("ULONG_MAX", 2**64 - 1)
    tree.set_int64("INT64_MIN", -(2**63))
    tree.set_int64("INT64_CREATED_USECS", 1589050790160919)
    tree.set_double("DBL_PI", math.pi)
    tree.set_double("DBL_NEG_HALF", -0.5)
    tree.set_double("DBL_1E20", 1e20)
    tree.set_double("DBL_1E_9", 1e-9)
    tree.set_double("DBL_ZERO", 0.0)
    tree.set_double("DBL_NEG_ZERO", -0.0)
    tree.set_double("DBL_INF", math.inf)
    tree.set_double("DBL_NAN", math.nan)
    tree.set_double("DBL_ROUND", 2.5e-7)
    tree.set_bytecount("BYTES_ZERO", 0)
    tree.set_bytecount("BYTES_GIB", 2**30)
    tree.set_bytecount("BYTES_TIB", 2**40)
    tree.set_crc32("CRC_ZERO", 0)
    tree.set_crc32("CRC_ONE", 1)
    tree.set_crc32("CRC_DEADBEEF", 0xDEADBEEF)
    tree.set_crc32("CRC_FFFFFFFF", 0xFFFFFFFF)
    tree.set_crc32("CRC_OF_hello", zlib.crc32(b"hello"))
    tree.set_value("STR", "hello world")
    tree.set_int("OVERWRITTEN", 1)
    tree.set_int("OVERWRITTEN", 2)
    tree.add_value("MULTI", "1")
    tree.add_value("MULTI", "2")
    tree.add_value("SET_KV_INT", -1)
    assert dumps(tree) == golden_bytes("c_util_values")


def test_setter_ranges_are_checked() -> None:
    tree = KVTree()
    for setter, bad in [
        (tree.set_int, 2**31),
        (tree.set_unsigned, -1),
        (tree.set_unsigned, 2**64),
        (tree.set_int64, 2**63),
    ]:
        with pytest.raises(ValueError):
            setter("K", bad)
    with pytest.raises(ValueError):
        tree.set_value("bad\0key", "v")
    with pytest.raises(ValueError):
        tree.set_value("k", "bad\0value")
    with pytest.raises(ValueError):
        tree.subtree("\ud800")  # a lone surrogate outside surrogateescape's range


def test_getters_use_c_conversions() -> None:
    assert [c_atoi(s) for s in ["42", " -7", "1e3", "12abc", "abc", "", "+5"]] == [
        42,
        -7,
        1,
        12,
        0,
        0,
        5,
    ]
    texts = ["010", "0x1f", "0X1F", "0x", "08", "-1", "99999999999999999999"]
    assert [c_strtoul(s) for s in texts] == [
        8,
        31,
        31,
        0,
        0,
        2**64 - 1,
        2**64 - 1,
    ]
    assert c_strtoll("-9223372036854775809") == -(2**63)
    assert c_strtoll("0x10") == 16
    tree = KVTree.from_dict({"N": {"7": {}, "9": {}}, "H": {"0x10": {}}, "S": {"x": {}}})
    assert tree.get_int("N") == 7  # first value, count not checked
    assert tree.get_unsigned("N") is None  # exactly one value required
    assert tree.get_unsigned("H") == 16
    assert tree.get_int("S") == 0
    assert tree.get_int("missing") is None
    assert tree.get_int64("H") == 16


def test_merge_copies_reversed_like_kvtree_merge() -> None:
    src = KVTree.from_dict({"A": {"1": {}}, "B": {"2": {}, "3": {}}})
    dst = KVTree()
    dst.merge(src)
    assert ordered(dst) == [["B", [["3", []], ["2", []]]], ["A", [["1", []]]]]
    dst.merge(KVTree.from_dict({"A": {"4": {}}, "C": {}}))
    assert ordered(dst) == [["C", []], ["B", [["3", []], ["2", []]]], ["A", [["4", []], ["1", []]]]]


def test_equality_ignores_order_and_same_order_does_not() -> None:
    a = KVTree.from_dict({"A": {}, "B": {"x": {}, "y": {}}})
    b = KVTree.from_dict({"B": {"y": {}, "x": {}}, "A": {}})
    assert a == b and not a.same_order(b)
    assert a.same_order(a.copy())
    assert a != KVTree.from_dict({"A": {}})
    c = a.copy()
    c.subtree("B").add_value("z", "1")
    assert c != a  # deep copy


def test_sort_is_strcmp_on_raw_bytes() -> None:
    tree = KVTree.from_dict({"b": {}, "10": {"z": {}, "a": {}}, "6": {}, "\udcff": {}, "B": {}})
    tree.sort(recursive=True)
    assert list(tree) == ["10", "6", "B", "b", "\udcff"]
    assert list(tree["10"]) == ["a", "z"]


def test_format_tree_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError):
        format_tree(KVTree(), "json")


# --- file I/O ------------------------------------------------------------------------------


def test_write_is_atomic_and_uses_umask_mode(tmp_path: Path) -> None:
    path = tmp_path / "t.scr"
    old = os.umask(0o027)
    try:
        kvtree.write(path, KVTree.from_dict({"A": {}}))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    path.chmod(0o600)
    kvtree.write(path, KVTree.from_dict({"B": {}}))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # an existing file keeps its mode
    assert kvtree.read(path).to_dict() == {"B": {}}
    assert os.listdir(tmp_path) == ["t.scr"]  # no temporary left behind


def test_write_failure_is_control_file_error(tmp_path: Path) -> None:
    with pytest.raises(ControlFileError, match="cannot write"):
        kvtree.write(tmp_path / "no-such-dir" / "f", KVTree())


def test_write_fd_in_place_truncates_and_read_fd_reads_from_start(tmp_path: Path) -> None:
    path = tmp_path / "halt"
    big = KVTree.from_dict({"X" * 500: {"y": {}}})
    path.write_bytes(dumps(big))
    fd = os.open(path, os.O_RDWR)
    try:
        os.lseek(fd, 100, os.SEEK_SET)
        assert kvtree.read_fd(fd, str(path)) == big  # pread from offset 0
        small = KVTree.from_dict({"ExitReason": {"JOB_HALTED": {}}})
        size = kvtree.write_fd_in_place(fd, small)
    finally:
        os.close(fd)
    assert path.read_bytes() == golden_bytes("d_halt_job_halted")
    assert size == path.stat().st_size == 58


def test_huge_size_field_is_rejected_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    path.write_bytes(struct.pack(">IHHQI", 0x951FC3F5, 1, 1, 2**63, 1) + bytes(100))
    start = time.monotonic()
    with pytest.raises(ControlFileError, match="truncated"):
        kvtree.read(path)
    assert time.monotonic() - start < 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file_is_control_file_error(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(golden_bytes("a_flat"))
    path.chmod(0)
    with pytest.raises(ControlFileError, match="cannot open"):
        kvtree.read(path)


def test_large_index_parses_quickly() -> None:
    # the shape of index.scr with 10,000 datasets (about 350,000 elements)
    tree = KVTree()
    tree.set_int("VERSION", 2)
    for i in range(1, 10001):
        tree.subtree("NAME").subtree(f"ckpt.{i}").set_int("DSET", i)
        entry = tree.subtree("DSET").subtree(str(i))
        desc = entry.subtree("DSET")
        for key, val in [
            ("ID", i),
            ("NAME", f"ckpt.{i}"),
            ("FLAG_CKPT", 1),
            ("FLAG_OUTPUT", 0),
            ("CREATED", 1589050790160919 + i),
            ("USER", "alice"),
            ("JOBID", "42"),
            ("CKPT", i),
            ("FILES", 4),
            ("SIZE", 2097186),
            ("COMPLETE", 1),
        ]:
            desc.set_value(key, val)
        entry.set_int("COMPLETE", 1)
        entry.set_value("FLUSHED", "2020-05-09T11:59:50")
    data = dumps(tree)
    start = time.monotonic()
    back = loads(data)
    elapsed = time.monotonic() - start
    assert back.same_order(tree)
    assert elapsed < 5, f"parsing a 10,000-dataset index took {elapsed:.2f}s"


# --- property tests ------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

raw_keys = st.binary(max_size=12).filter(lambda b: b"\0" not in b)
keys = raw_keys.map(lambda b: b.decode("utf-8", "surrogateescape"))
trees = st.recursive(
    st.just({}),
    lambda children: st.dictionaries(keys, children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(trees, st.booleans())
def test_round_trip_random_trees(data: dict[str, Any], crc: bool) -> None:
    tree = KVTree.from_dict(data)
    packed = dumps(tree, crc=crc)
    back = loads(packed)
    assert back.same_order(tree)
    assert ordered(back) == ordered(data)
    assert dumps(back, crc=crc) == packed
    assert format_tree(back, "keyval", sort=True) == format_tree(tree, "keyval", sort=True)


raw_elements = st.recursive(
    st.just([]),
    lambda children: st.lists(
        st.tuples(st.sampled_from([b"a", b"b", b"c", b""]), children), max_size=4
    ),
    max_leaves=25,
)


def pack_raw(elements: list[Any]) -> bytes:
    return count(len(elements)) + b"".join(k + b"\0" + pack_raw(sub) for k, sub in elements)


@settings(max_examples=300, deadline=None)
@given(raw_elements)
def test_duplicates_match_c_model(elements: list[Any]) -> None:
    data = build(pack_raw(elements))
    assert ordered(loads(data)) == c_read_model(data)
