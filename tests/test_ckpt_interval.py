"""scr_core.ckpt_interval and scr_ckpt_interval: hand-computed Young/Daly on a synthetic log,
what counts as a failure, the no-data cases, and the CLI's exit codes."""

from __future__ import annotations

import argparse
import math
import os
import re
import time

import pytest
from scr_core.ckpt_interval import (
    LogStats,
    NotEnoughDataError,
    analyze,
    daly,
    optimum_interval,
    overhead_percent,
    young,
)
from scr_core.cli import ckpt_interval_cmd as cmd
from scr_core.scrlog import format_event, format_start, format_transfer, parse_lines


def L(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return int(time.mktime((y, mo, d, h, mi, s, 0, 0, -1)))


T = L(2024, 3, 1, 8)  # allocation 100
U = L(2024, 3, 2, 8)  # allocation 200
V = L(2024, 3, 3, 8)  # allocation 300


def ev(jobid, t, label, **kw) -> str:
    return format_event("n1", str(jobid), label, start=t, **kw)


def xf(jobid, t, label, **kw) -> str:
    return format_transfer("n1", str(jobid), label, start=t, **kw)


def synthetic_log() -> list[str]:
    """Five runs in three allocations:

    run 1 (job 100)  T+0    .. T+2000   lost a node (NODE_FAIL)            -> failed
    run 2 (job 100)  T+2060 .. T+5000   ended rc=1, relaunched in job 100   -> failed
    run 3 (job 100)  T+5060 .. T+6050   HALT TIME_LIMIT, RUN_END rc=0       -> halted
    run 4 (job 200)  U+0    .. U+4000   killed at allocation end (rc=143)   -> allocation_end
    run 5 (job 300)  V+0    .. V+500    HALT SCR_FINALIZE_CALLED            -> halted

    T = 2000 + 2940 + 990 + 4000 + 500 = 10430 s, failures = 2, M = 5215 s.
    Checkpoints dset 1, 2, 4, 5, 6 at 10 s each = 50 s; checkpoint flushes: dset 1 (20 s,
    right after it) and dset 5 (30 s, at halt) = 50 s; dset 3 is output (4 s flush, not C).
    C = (50 + 50) / 5 = 20 s.
    """
    return [
        # ---- job 100, run 1
        ev(100, T, "RUN_START"),
        format_start("n1", "100", 64, 2, start=T + 1),  # the library inside the same launch
        ev(100, T + 10, "CHECKPOINT_START", dset=1, name="ckpt.1"),
        ev(100, T + 20, "CHECKPOINT_END", note="/dev/shm", dset=1, name="ckpt.1", secs=10),
        xf(100, T + 10, "CHECKPOINT", src="/dev/shm", dst="/c", dset=1, secs=10, bytes=1e9),
        xf(100, T + 21, "FLUSH_SYNC", src="/c", dst="/p", dset=1, secs=20, bytes=1e9, files=8),
        ev(100, T + 41, "COMPUTE_START"),
        ev(100, T + 1000, "COMPUTE_END", secs=959),
        ev(100, T + 1000, "CHECKPOINT_START", dset=2),
        ev(100, T + 1010, "CHECKPOINT_END", dset=2, secs=10),
        ev(100, T + 1011, "COMPUTE_START"),
        ev(100, T + 1500, "OUTPUT_START", dset=3),
        ev(100, T + 1505, "OUTPUT_END", dset=3, secs=5),
        xf(100, T + 1506, "FLUSH_SYNC", dset=3, secs=4),
        ev(100, T + 2000, "NODE_FAIL", note="node7"),
        # ---- job 100, run 2: relaunched after the failure
        ev(100, T + 2060, "RUN_START"),
        format_start("n1", "100", 48, 2, start=T + 2061),
        xf(100, T + 2062, "FETCH", src="/p", dst="/c", dset=2, secs=3),
        ev(100, T + 2062, "RESTART_SUCCESS", dset=2, secs=2),
        ev(100, T + 3000, "CHECKPOINT_START", dset=4),
        ev(100, T + 3010, "CHECKPOINT_END", dset=4, secs=10),
        ev(100, T + 3011, "COMPUTE_START"),
        ev(100, T + 5000, "RUN_END", note="rc=1"),
        # ---- job 100, run 3: halts for the time limit, flushing its last checkpoint
        ev(100, T + 5060, "RUN_START"),
        format_start("n1", "100", 48, 2, start=T + 5061),
        ev(100, T + 6000, "CHECKPOINT_START", dset=5),
        ev(100, T + 6010, "CHECKPOINT_END", dset=5, secs=10),
        ev(100, T + 6010, "HALT", note="TIME_LIMIT"),
        xf(100, T + 6011, "FLUSH_SYNC", dset=5, secs=30),
        ev(100, T + 6050, "RUN_END", note="rc=0"),
        # ---- job 200: one run, killed when the allocation ran out
        ev(200, U, "RUN_START"),
        format_start("n1", "200", 64, 2, start=U + 1),
        ev(200, U + 2, "RESTART_FAIL", secs=1.5),
        ev(200, U + 100, "CHECKPOINT_START", dset=6),
        ev(200, U + 110, "CHECKPOINT_END", dset=6, secs=10),
        ev(200, U + 111, "COMPUTE_START"),
        ev(200, U + 4000, "RUN_END", note="rc=143"),
        # ---- job 300: one run that finished
        ev(300, V, "RUN_START"),
        format_start("n1", "300", 64, 2, start=V + 1),
        ev(300, V + 500, "HALT", note="SCR_FINALIZE_CALLED"),
    ]


C_EXPECTED = 20.0
M_EXPECTED = 10430 / 2
YOUNG = math.sqrt(2 * 20.0 * 5215.0)  # 456.727...
_R = 20.0 / (2 * 5215.0)
DALY = math.sqrt(2 * 20.0 * 5215.0) * (1 + math.sqrt(_R) / 3 + _R / 9) - 20.0  # 443.49...


def write_log(tmp_path, lines) -> str:
    path = tmp_path / "log"
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def stats_of(lines) -> LogStats:
    return analyze(parse_lines(lines))


# ------------------------------------------------------------------------------ analysis


def test_synthetic_log_counts() -> None:
    s = stats_of(synthetic_log())
    assert [r.outcome for r in s.runs] == [
        "failed", "failed", "halted", "allocation_end", "halted"]
    assert [r.secs for r in s.runs] == [2000, 2940, 990, 4000, 500]
    assert [r.jobid for r in s.runs] == ["100", "100", "100", "200", "300"]
    assert s.runs[2].halt_reason == "TIME_LIMIT"
    assert s.failures == 2 and s.run_secs == 10430
    assert s.checkpoints == 5 and s.checkpoint_secs == 50
    assert (s.flush_ckpt_count, s.flush_ckpt_secs) == (2, 50)
    assert (s.flush_output_count, s.flush_output_secs) == (1, 4)
    assert (s.fetch_count, s.fetch_secs) == (1, 3)
    assert (s.rebuild_count, s.rebuild_secs, s.restart_failures) == (2, 3.5, 1)
    assert (s.compute_count, s.compute_secs) == (1, 959)
    assert s.checkpoint_cost == C_EXPECTED
    assert s.mtti == M_EXPECTED


def test_hand_computed_young_and_daly() -> None:
    s = stats_of(synthetic_log())
    assert YOUNG == pytest.approx(456.7275, abs=1e-3)
    assert DALY == pytest.approx(443.4906, abs=1e-3)
    assert optimum_interval(s, "young") == pytest.approx(YOUNG)
    assert optimum_interval(s, "daly") == pytest.approx(DALY)
    assert overhead_percent(20.0, DALY) == pytest.approx(100 * 20 / DALY)


def test_model_functions() -> None:
    assert young(8, 100) == pytest.approx(40.0)
    r = 8 / 200
    assert daly(8, 100) == pytest.approx(40 * (1 + math.sqrt(r) / 3 + r / 9) - 8)
    assert daly(300, 100) == 100  # C >= 2M: t = M
    assert daly(200, 100) == 100
    for bad in ((0, 100), (5, 0), (5, math.inf), (-1, 10)):
        with pytest.raises(ValueError):
            young(*bad)
        with pytest.raises(ValueError):
            daly(*bad)
    with pytest.raises(ValueError):
        optimum_interval(stats_of(synthetic_log()), "lognormal")


def test_allocation_end_is_not_a_failure() -> None:
    # Three allocations, one run each, none halted: SCR's script would see 3 starts
    # and call them interrupts; none is.
    lines = []
    for job, base in ((1, T), (2, U), (3, V)):
        lines += [
            ev(job, base, "RUN_START"),
            ev(job, base + 10, "CHECKPOINT_START", dset=job),
            ev(job, base + 20, "CHECKPOINT_END", dset=job, secs=10),
            ev(job, base + 3600, "RUN_END", note="rc=143"),
        ]
    s = stats_of(lines)
    assert [r.outcome for r in s.runs] == ["allocation_end", "allocation_end", "last"]
    assert s.failures == 0 and s.mtti is None
    with pytest.raises(NotEnoughDataError, match="no failures"):
        optimum_interval(s)


def test_halt_then_relaunch_in_same_job_is_not_a_failure() -> None:
    lines = [
        ev(1, T, "RUN_START"),
        ev(1, T + 100, "HALT", note="JOB_HALTED"),
        ev(1, T + 200, "RUN_START"),
        ev(1, T + 300, "RUN_START"),  # run 2 ended without a halt and was relaunched
    ]
    s = stats_of(lines)
    assert [r.outcome for r in s.runs] == ["halted", "failed", "last"]


def test_library_only_log_without_run_start() -> None:
    # A log written by the C library alone (SCR's own scripts): runs begin at START.
    lines = [
        format_start("n1", "7", 4, 1, start=T),
        ev(7, T + 10, "CHECKPOINT_START", dset=1),
        ev(7, T + 14, "CHECKPOINT_END", dset=1, secs=4),
        ev(7, T + 14, "COMPUTE_START"),
        ev(7, T + 1000, "COMPUTE_END", secs=986),
        format_start("n1", "7", 4, 1, start=T + 1100),
        ev(7, T + 1300, "HALT", note="SCR_FINALIZE_CALLED"),
    ]
    s = stats_of(lines)
    assert [r.outcome for r in s.runs] == ["failed", "halted"]
    assert s.run_secs == 1000 + 200 and s.mtti == 1200
    assert s.checkpoint_cost == 4
    assert optimum_interval(s, "young") == pytest.approx(math.sqrt(2 * 4 * 1200))


def test_flush_without_dset_uses_phase() -> None:
    lines = [
        ev(1, T, "RUN_START"),
        ev(1, T + 1, "CHECKPOINT_START"),
        ev(1, T + 2, "CHECKPOINT_END", secs=1),
        xf(1, T + 3, "FLUSH_SYNC", secs=5),  # inside the checkpoint phase
        ev(1, T + 9, "COMPUTE_START"),
        xf(1, T + 10, "FLUSH_SYNC", secs=7),  # during compute: output
    ]
    s = stats_of(lines)
    assert (s.flush_ckpt_secs, s.flush_output_secs) == (5, 7)
    assert s.checkpoint_cost == 6


def test_zero_cost_and_no_checkpoints() -> None:
    base = [ev(1, T, "RUN_START"), ev(1, T + 50, "RUN_START"), ev(1, T + 90, "NODE_FAIL")]
    no_ckpt = stats_of(base)
    assert no_ckpt.checkpoint_cost is None and no_ckpt.failures == 2
    with pytest.raises(NotEnoughDataError, match="no completed checkpoints"):
        optimum_interval(no_ckpt)
    zero = stats_of([*base, ev(1, T + 60, "CHECKPOINT_END", dset=1, secs=0)])
    assert zero.checkpoint_cost == 0
    with pytest.raises(NotEnoughDataError, match="cost is 0"):
        optimum_interval(zero, "young")


def test_failure_with_no_run_time() -> None:
    s = stats_of([
        ev(1, T, "RUN_START"),
        ev(1, T, "CHECKPOINT_END", secs=3),
        ev(1, T + 100, "RUN_START"),
    ])
    # run 1 has a single timestamp: 0 s of run time but one failure
    assert s.failures == 1 and s.run_secs == 0
    with pytest.raises(NotEnoughDataError, match="no measurable run time"):
        optimum_interval(s)


def test_empty_log() -> None:
    s = analyze([])
    assert s.runs == [] and s.checkpoint_cost is None and s.mtti is None
    with pytest.raises(NotEnoughDataError):
        optimum_interval(s)


# ----------------------------------------------------------------------------------- CLI


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cmd.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_prints_integer_seconds(tmp_path, capsys) -> None:
    log = write_log(tmp_path, synthetic_log())
    assert run_cli(capsys, "--logfile", log) == (0, f"{int(DALY)}\n", "")
    assert run_cli(capsys, "--logfile", log, "--model", "young") == (0, f"{int(YOUNG)}\n", "")


def test_cli_percent(tmp_path, capsys) -> None:
    log = write_log(tmp_path, synthetic_log())
    rc, out, _ = run_cli(capsys, "--logfile", log, "--percent")
    assert rc == 0 and out == f"{100 * 20 / DALY:.2f}\n"


def test_cli_prefix_and_env(tmp_path, capsys, monkeypatch) -> None:
    os.makedirs(tmp_path / ".scr")
    write_log(tmp_path / ".scr", synthetic_log())
    assert run_cli(capsys, "--prefix", str(tmp_path))[:2] == (0, f"{int(DALY)}\n")
    monkeypatch.setenv("SCR_PREFIX", str(tmp_path))
    assert run_cli(capsys)[:2] == (0, f"{int(DALY)}\n")
    monkeypatch.delenv("SCR_PREFIX")
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys)[:2] == (0, f"{int(DALY)}\n")


def test_cli_stats_table(tmp_path, capsys) -> None:
    log = write_log(tmp_path, [*synthetic_log(), "junk line"])
    rc, out, _ = run_cli(capsys, "--logfile", log, "--stats")
    assert rc == 0
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.splitlines())
    assert rows["runs"] == "5"
    assert rows["failed (interrupts)"] == "2"
    assert rows["ended with allocation"] == "1"
    assert rows["total run time (s)"] == "10430"
    assert rows["mean time to interrupt (s)"] == "5215.0"
    assert rows["checkpoint cost C (s)"] == "20.000"
    assert rows["interval (s)"] == f"{DALY:.1f}"
    assert rows["records"].endswith("(1 unparseable lines skipped)")


def test_cli_not_enough_data_exit_1(tmp_path, capsys) -> None:
    no_failures = [
        ev(1, T, "RUN_START"),
        ev(1, T + 20, "CHECKPOINT_END", dset=1, secs=10),
        ev(1, T + 3600, "HALT", note="SCR_FINALIZE_CALLED"),
    ]
    log = write_log(tmp_path, no_failures)
    rc, out, err = run_cli(capsys, "--logfile", log)
    assert (rc, out) == (1, "") and "no failures" in err and err.count("\n") == 1
    rc, out, err = run_cli(capsys, "--logfile", log, "--stats")
    assert rc == 1 and "unbounded" in out and "no failures" in err
    rc, out, err = run_cli(capsys, "--logfile", log, "--default", "1800")
    assert (rc, out) == (0, "1800\n") and "using --default" in err
    rc, out, _ = run_cli(capsys, "--logfile", log, "--stats", "--default", "1800")
    assert rc == 0 and "1800 (--default" in out


def test_cli_zero_cost_exit_1(tmp_path, capsys) -> None:
    log = write_log(tmp_path, [
        ev(1, T, "RUN_START"),
        ev(1, T + 5, "CHECKPOINT_END", dset=1, secs=0),
        ev(1, T + 100, "RUN_START"),
    ])
    rc, out, err = run_cli(capsys, "--logfile", log, "--percent")
    assert (rc, out) == (1, "") and "cost is 0" in err


def test_cli_empty_log_exit_1(tmp_path, capsys) -> None:
    log = write_log(tmp_path, [])
    rc, out, err = run_cli(capsys, "--logfile", log)
    assert (rc, out) == (1, "") and "no completed checkpoints" in err


def test_cli_missing_or_corrupt_log_exit_6(tmp_path, capsys) -> None:
    missing = str(tmp_path / "none" / "log")
    rc, out, err = run_cli(capsys, "--logfile", missing)
    assert (rc, out) == (6, "") and repr(missing) in err
    rc, out, err = run_cli(capsys, "--logfile", missing, "--default", "600")
    assert (rc, out) == (0, "600\n")
    garbage = write_log(tmp_path, ["this is not", "an SCR log"])
    rc, out, err = run_cli(capsys, "--logfile", garbage)
    assert (rc, out) == (6, "") and "no SCR log records" in err
    rc, _, err = run_cli(capsys, "--logfile", str(tmp_path))  # a directory
    assert rc == 6 and "cannot read SCR log" in err


def test_cli_usage_errors_exit_2(tmp_path, capsys) -> None:
    log = write_log(tmp_path, synthetic_log())
    assert run_cli(capsys, "--model", "weibull")[0] == 2
    assert run_cli(capsys, "--bogus")[0] == 2
    assert run_cli(capsys, "--default", "0")[0] == 2
    assert run_cli(capsys, "--default", "abc")[0] == 2
    rc, _, err = run_cli(capsys, "--logfile", log, "--percent", "--default", "60")
    assert rc == 2 and "--percent" in err


def test_cli_never_prints_zero(tmp_path, capsys) -> None:
    # Tiny cost and MTTI: the optimum is under a second; 0 would disable checkpointing.
    log = write_log(tmp_path, [
        ev(1, T, "RUN_START"),
        ev(1, T + 1, "CHECKPOINT_END", dset=1, secs=0.001),
        ev(1, T + 2, "RUN_START"),
    ])
    assert run_cli(capsys, "--logfile", log, "--model", "young")[:2] == (0, "1\n")


def test_configure_parser_interface() -> None:
    parser = argparse.ArgumentParser(prog="scr ckpt-interval")
    cmd.configure_parser(parser)
    args = parser.parse_args([])
    assert (args.stats, args.model, args.percent, args.prefix, args.logfile) == (
        False, "daly", False, None, None)
    help_text = parser.format_help()
    for code in ("0 ", "1 ", "2 ", "6 "):
        assert f"  {code} " in help_text
    assert "--logfile" in help_text and "young" in help_text


def test_other_jobs_records_do_not_touch_a_run() -> None:
    lines = [
        ev(1, T, "RUN_START"),
        ev(1, T + 10, "CHECKPOINT_END", dset=1, secs=2),
        ev(1, T + 100, "RUN_END", note="rc=137"),
        ev(1, T + 160, "SCAVENGE_START"),  # postrun: not run time
        ev(1, T + 900, "SCAVENGE_END", dset=1, secs=740),
        ev(2, U - 60, "NODE_FAIL", note="node3"),  # next job's prerun found a bad node
        ev(2, U, "RUN_START"),
        ev(2, U + 50, "HALT", note="SCR_FINALIZE_CALLED"),
    ]
    s = stats_of(lines)
    assert [r.outcome for r in s.runs] == ["allocation_end", "halted"]
    assert [r.secs for r in s.runs] == [100, 50]
    assert not s.runs[0].node_fail


def test_node_fail_after_run_end_counts_but_halt_wins() -> None:
    lines = [
        ev(1, T, "RUN_START"),
        ev(1, T + 100, "RUN_END", note="rc=1"),
        ev(1, T + 130, "NODE_FAIL", note="node3"),  # scr_list_down_nodes --log after the run
        ev(2, U, "RUN_START"),
        ev(2, U + 100, "HALT", note="TIME_LIMIT"),
        ev(2, U + 110, "RUN_END", note="rc=0"),
        ev(2, U + 130, "NODE_FAIL", note="node4"),
    ]
    s = stats_of(lines)
    assert [r.outcome for r in s.runs] == ["failed", "halted"]
    assert [r.secs for r in s.runs] == [100, 110]
    assert s.mtti == 210


def test_run_end_rc_zero_is_clean() -> None:
    lines = [
        ev(1, T, "RUN_START"),
        ev(1, T + 100, "RUN_END", note="rc=0"),
        ev(1, T + 200, "RUN_START"),
        ev(1, T + 300, "RUN_END", note="rc=10"),
        ev(1, T + 400, "RUN_START"),
    ]
    assert [r.outcome for r in stats_of(lines).runs] == ["halted", "failed", "last"]


def test_halt_after_run_end_does_not_clean_a_crashed_run() -> None:
    # scr run: the step died, a node is down, and should_exit then decides to halt.
    lines = [
        ev(1, T, "RUN_START", note="run=1"),
        ev(1, T + 500, "RUN_END", note="run=1 rc=1", secs=500),
        ev(1, T + 501, "NODE_FAIL", note="node3: ping failed", secs=0),
        ev(1, T + 502, "HALT", note="not enough nodes"),
        ev(2, U, "RUN_START", note="run=1"),
        ev(2, U + 100, "RUN_END", note="run=1 rc=2", secs=100),
        ev(2, U + 101, "HALT", note="TIME_LIMIT"),
    ]
    s = stats_of(lines)
    assert [r.outcome for r in s.runs] == ["failed", "last"]
    assert not s.runs[0].halted and s.runs[0].secs == 500
