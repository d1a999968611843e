"""scr_core.scrlog: the writer's exact SCR line format, the parser on our lines and on lines
in the C library's format, and whole lines under concurrent appends."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from scr_core.scrlog import (
    LogFileError,
    LogRecord,
    ScrLog,
    format_event,
    format_start,
    format_transfer,
    log_path,
    parse_file,
    parse_line,
    parse_lines,
)


def L(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return int(time.mktime((y, mo, d, h, mi, s, 0, 0, -1)))


T0 = L(2024, 3, 1, 10, 0, 0)
STAMP = "2024-03-01T10:00:00"


def read_lines(log: ScrLog) -> list[str]:
    with open(log.path) as f:
        return f.read().splitlines()


# ------------------------------------------------------------------------------ writer


def test_event_format_all_fields(tmp_path) -> None:
    log = ScrLog(str(tmp_path), 1234, host="node7")
    line = log.event("CHECKPOINT_END", note="/dev/shm", dset=3, name="ckpt.3", start=T0, secs=12.5)
    assert line == (
        f'{STAMP}: host=node7, jobid=1234, event=CHECKPOINT_END, note="/dev/shm", dset=3, '
        'name="ckpt.3", secs=12.500000'
    )
    assert read_lines(log) == [line]
    assert log.path == os.path.join(str(tmp_path), ".scr", "log") == log_path(str(tmp_path))


def test_event_optional_fields_omitted(tmp_path) -> None:
    log = ScrLog(str(tmp_path), "j1", host="h")
    assert log.event("RUN_START", start=T0) == f"{STAMP}: host=h, jobid=j1, event=RUN_START"
    assert log.event("NODE_FAIL", note="down: node3", start=T0) == (
        f'{STAMP}: host=h, jobid=j1, event=NODE_FAIL, note="down: node3"'
    )
    assert log.event("COMPUTE_END", dset=0, secs=0, start=T0) == (
        f"{STAMP}: host=h, jobid=j1, event=COMPUTE_END, dset=0, secs=0.000000"
    )
    assert log.event("SCAVENGE_END", dset=7, start=T0, secs=1) == (
        f"{STAMP}: host=h, jobid=j1, event=SCAVENGE_END, dset=7, secs=1.000000"
    )


def test_transfer_format(tmp_path) -> None:
    log = ScrLog(str(tmp_path), 99, host="n1")
    line = log.transfer(
        "FLUSH_SYNC", src="/dev/shm/u/scr.99/scr.dataset.3", dst="/p/run", dset=3,
        name="ckpt.3", start=T0, secs=30.25, bytes=1073741824, files=64,
    )
    assert line == (
        f"{STAMP}: host=n1, jobid=99, xfer=FLUSH_SYNC, from=/dev/shm/u/scr.99/scr.dataset.3, "
        'to=/p/run, dset=3, name="ckpt.3", secs=30.250000, bytes=1073741824.000000, files=64'
    )
    assert log.transfer("FETCH", start=T0) == f"{STAMP}: host=n1, jobid=99, xfer=FETCH"
    assert log.transfer("FETCH", dst="/p", bytes=1.5, start=T0) == (
        f"{STAMP}: host=n1, jobid=99, xfer=FETCH, to=/p, bytes=1.500000"
    )


def test_start_and_halt(tmp_path) -> None:
    log = ScrLog(str(tmp_path), 5, host="n1")
    assert log.start(128, 4, start=T0) == (
        f"{STAMP}: host=n1, jobid=5, event=START, procs=128, nodes=4"
    )
    halt = log.halt("JOB_HALTED")
    assert halt is not None and halt.endswith(', event=HALT, note="JOB_HALTED"')
    assert log.halt() is not None and read_lines(log)[-1].endswith(", event=HALT")


def test_default_timestamp_is_now_and_host_default(tmp_path) -> None:
    log = ScrLog(str(tmp_path), 5)
    before = time.time()
    line = log.event("RUN_END")
    rec = parse_line(line)
    assert rec is not None and int(before) <= rec.time <= time.time()
    assert rec.host == log.host and log.host


def test_formatters_match_writer() -> None:
    assert format_event("h", "1", "X", start=T0) == f"{STAMP}: host=h, jobid=1, event=X"
    assert format_transfer("h", "1", "X", start=T0) == f"{STAMP}: host=h, jobid=1, xfer=X"
    assert format_start("h", "1", 2, 1, start=T0).endswith("event=START, procs=2, nodes=1")


def test_newlines_in_note_stay_on_one_line(tmp_path) -> None:
    log = ScrLog(str(tmp_path), 1, host="h")
    log.event("HALT", note="line one\nline two\r", start=T0)
    assert read_lines(log) == [f'{STAMP}: host=h, jobid=1, event=HALT, note="line one line two "']


def test_disabled_writes_nothing(tmp_path) -> None:
    log = ScrLog(str(tmp_path), 1, enabled=False)
    assert log.event("RUN_START") is None
    assert log.transfer("FETCH") is None
    assert log.start(1, 1) is None
    assert not os.path.exists(log.path)


def test_creates_dot_scr_and_file_mode(tmp_path) -> None:
    log = ScrLog(str(tmp_path / "prefix"), 1, host="h")
    log.event("RUN_START", start=T0)
    assert stat.S_IMODE(os.stat(log.path).st_mode) & 0o077 == 0  # like SCR: S_IRUSR|S_IWUSR


def test_appends_to_existing_file(tmp_path) -> None:
    log = ScrLog(str(tmp_path), 1, host="h")
    os.makedirs(os.path.dirname(log.path))
    with open(log.path, "w") as f:
        f.write("existing line\n")
    log.event("RUN_START", start=T0)
    assert read_lines(log) == ["existing line", f"{STAMP}: host=h, jobid=1, event=RUN_START"]


def test_write_failure_is_not_fatal(tmp_path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    log = ScrLog(str(blocker), 1, host="h")  # prefix is a file: .scr cannot be created
    assert log.event("RUN_START") is None
    assert "cannot append to SCR log" in caplog.text


# ------------------------------------------------------------------------------ parser


def test_round_trip_all_kinds(tmp_path) -> None:
    log = ScrLog(str(tmp_path), "job.42", host="n1")
    log.start(64, 2, start=T0)
    log.event("CHECKPOINT_END", note="/dev/shm", dset=3, name="ckpt.3", start=T0 + 5, secs=2.5)
    log.transfer("FLUSH_SYNC", "/a", "/b", 3, "ckpt.3", T0 + 6, 4.0, 2048, 8)
    log.halt("SCR_FINALIZE_CALLED")
    recs = parse_file(log.path)
    assert recs.skipped == 0 and len(recs) == 4
    start, ckpt, flush, halt = recs
    assert (start.kind, start.label, start.procs, start.nodes) == ("event", "START", 64, 2)
    assert start.time == T0 and start.host == "n1" and start.jobid == "job.42"
    assert (ckpt.label, ckpt.note, ckpt.dset, ckpt.name, ckpt.secs) == (
        "CHECKPOINT_END", "/dev/shm", 3, "ckpt.3", 2.5)
    assert ckpt.time == T0 + 5
    assert (flush.kind, flush.from_, flush.to, flush.secs, flush.bytes, flush.files) == (
        "xfer", "/a", "/b", 4.0, 2048.0, 8)
    assert (halt.label, halt.note) == ("HALT", "SCR_FINALIZE_CALLED")
    assert flush.raw == read_lines(log)[2]


# Lines exactly as src/scr_log.c prints them (snprintf formats "%s: host=%s, jobid=%s,
# event=%s" + ", note=\"%s\"" + ", dset=%d" + ", name=\"%s\"" + ", secs=%f", and for
# transfers ", from=%s" ", to=%s" ... ", bytes=%f" ", files=%d").
C_LINES = [
    "2024-03-01T10:00:00: host=rzgenie12, jobid=123456, event=START, procs=128, nodes=4",
    "2024-03-01T10:00:02: host=rzgenie12, jobid=123456, event=COMPUTE_START",
    '2024-03-01T10:05:00: host=rzgenie12, jobid=123456, event=CHECKPOINT_START, '
    'note="/dev/shm", dset=3, name="timestep.3"',
    '2024-03-01T10:05:12: host=rzgenie12, jobid=123456, event=CHECKPOINT_END, '
    'note="/dev/shm", dset=3, name="timestep.3", secs=12.345678',
    "2024-03-01T10:05:00: host=rzgenie12, jobid=123456, xfer=CHECKPOINT, from=/dev/shm, "
    "to=/dev/shm/user/scr.123456/scr.dataset.3, dset=3, name=\"timestep.3\", "
    "secs=12.345678, bytes=1073741824.000000, files=128",
    "2024-03-01T10:05:13: host=rzgenie12, jobid=123456, xfer=FLUSH_SYNC, "
    "from=/dev/shm/user/scr.123456/scr.dataset.3, to=/p/lustre/user/run, dset=3, "
    'name="timestep.3", secs=30.000000, bytes=1073741824.000000, files=128',
    '2024-03-01T10:05:43: host=rzgenie12, jobid=123456, event=FLUSH_SUCCESS, dset=3, '
    'name="timestep.3", secs=30.000000',
    "2024-03-01T10:06:00: host=rzgenie12, jobid=123456, event=RESTART_FAIL, secs=1.500000",
    '2024-03-01T10:07:00: host=rzgenie12, jobid=123456, event=HALT, note="SCR_FINALIZE_CALLED"',
]


def test_parse_c_library_lines() -> None:
    recs = parse_lines(C_LINES)
    assert recs.skipped == 0 and len(recs) == len(C_LINES)
    start, compute, cstart, cend, cxfer, flush, fsucc, rfail, halt = recs
    assert start.procs == 128 and start.nodes == 4 and start.jobid == "123456"
    assert compute.label == "COMPUTE_START" and compute.secs is None and compute.note is None
    assert cstart.dset == 3 and cstart.name == "timestep.3" and cstart.secs is None
    assert cend.secs == pytest.approx(12.345678) and cend.note == "/dev/shm"
    assert cxfer.kind == "xfer" and cxfer.label == "CHECKPOINT" and cxfer.files == 128
    assert flush.from_ == "/dev/shm/user/scr.123456/scr.dataset.3"
    assert flush.to == "/p/lustre/user/run" and flush.bytes == 1073741824.0
    assert fsucc.kind == "event" and fsucc.secs == 30.0
    assert rfail.label == "RESTART_FAIL" and rfail.secs == 1.5
    assert halt.note == "SCR_FINALIZE_CALLED"
    assert halt.time - start.time == 7 * 60
    assert start.time == L(2024, 3, 1, 10, 0, 0)


@pytest.mark.parametrize(
    ("line", "check"),
    [
        # a quoted note may contain ", " and even key=value-looking text and quotes
        (f'{STAMP}: host=h, jobid=1, event=HALT, note="a, b=c, d", dset=2',
         lambda r: r.note == "a, b=c, d" and r.dset == 2),
        (f'{STAMP}: host=h, jobid=1, event=HALT, note="say "hi", ok"',
         lambda r: r.note == 'say "hi", ok'),
        (f'{STAMP}: host=h, jobid=1, event=HALT, note=""', lambda r: r.note == ""),
        # secs as an int, and as a float without the %f padding
        (f"{STAMP}: host=h, jobid=1, event=CHECKPOINT_END, secs=12",
         lambda r: r.secs == 12.0),
        (f"{STAMP}: host=h, jobid=1, event=CHECKPOINT_END, secs=1.5",
         lambda r: r.secs == 1.5),
        (f"{STAMP}: host=h, jobid=1, xfer=FETCH, files=3.000000", lambda r: r.files == 3),
        # unknown keys are kept, not fatal; trailing whitespace/CRLF ignored
        (f"{STAMP}: host=h, jobid=1, event=X, user=bob, prefix=/p\r\n",
         lambda r: r.extra == {"user": "bob", "prefix": "/p"} and r.raw.endswith("prefix=/p")),
        # no host (syslog-like body with our timestamp) is still a record
        (f"{STAMP}: jobid=1, event=RUN_END", lambda r: r.host is None and r.jobid == "1"),
        (f"{STAMP}.250000: host=h, jobid=1, event=X", lambda r: r.time == T0 + 0.25),
    ],
)
def test_parse_line_tolerance(line: str, check) -> None:
    rec = parse_line(line)
    assert isinstance(rec, LogRecord)
    assert check(rec), rec


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        'EVENT="START", start=1700000000',  # pre-3.0 format
        "2024-03-01T10:00:00 host=h, jobid=1, event=X",  # no colon after the stamp
        f"{STAMP}: host=h, jobid=1",  # neither event nor xfer
        f"{STAMP}: host=h, jobid=1, event=",
        f"{STAMP}: host=h, jobid=1, event=X, dset=abc",
        f"{STAMP}: host=h, jobid=1, event=X, secs=fast",
        f'{STAMP}: host=h, jobid=1, event=X, note="unterminated',
        f"{STAMP}: host=h, jobid=1, event=X, xfer=Y",
        f"{STAMP}: host=h, jobid=1, event=X, garbage",
        "2024-13-45T99:99:99: host=h, jobid=1, event=X",
    ],
)
def test_parse_line_rejects(line: str) -> None:
    assert parse_line(line) is None


def test_parse_file_skips_and_counts(tmp_path) -> None:
    path = tmp_path / "log"
    good = f"{STAMP}: host=h, jobid=1, event=RUN_START"
    path.write_bytes(
        (good + "\n\nnot a record\n" + good + "\n").encode()
        + b"\xff\xfe binary junk\n"
        + good[:25].encode()  # torn last line, no newline
    )
    recs = parse_file(str(path))
    assert len(recs) == 2
    assert recs.skipped == 3 and recs.skipped_lines == [3, 5, 6]


def test_parse_file_missing_raises_oserror(tmp_path) -> None:
    with pytest.raises(OSError):
        parse_file(str(tmp_path / "nope"))


def test_log_file_error_exit_code() -> None:
    assert LogFileError("x").exit_code == 6


# ------------------------------------------------------------------------ concurrency

WRITER = textwrap.dedent(
    """
    import sys
    from scr_core.scrlog import ScrLog
    prefix, who, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = ScrLog(prefix, "777", host="w" + who)
    pad = who * 3000  # long lines: well past one pipe buffer's worth of interleaving risk
    for i in range(count):
        assert log.event("TICK", note=f"{who}:{i}:{pad}", dset=i, secs=i / 8)
    """
)


def test_concurrent_appends_are_whole_lines(tmp_path) -> None:
    writers, count = 6, 150
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), str(count)])
        for w in range(writers)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    recs = parse_file(log_path(str(tmp_path)))
    assert recs.skipped == 0
    assert len(recs) == writers * count
    seen: dict[str, list[int]] = {}
    for r in recs:
        who, i, pad = r.note.split(":")
        assert pad == who * 3000 and r.host == "w" + who and r.dset == int(i)
        seen.setdefault(who, []).append(int(i))
    # every writer's lines are all there, in its own order
    assert all(seen[str(w)] == list(range(count)) for w in range(writers))
