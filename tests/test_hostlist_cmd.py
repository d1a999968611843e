"""`scr hostlist`: SCR's scr_hostlist options, through argparse as the CLI framework calls it."""

from __future__ import annotations

import argparse

import pytest
from scr_core.cli import hostlist_cmd
from scr_core.errors import UsageError

from scr_core import hostlist


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scr hostlist")
    hostlist_cmd.configure_parser(p)
    return p


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    args = parser().parse_args(list(argv))
    assert hostlist_cmd.run(args) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n")
    return out[:-1]


def test_default_folds_all_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "n[1-3]", "n5") == "n[1-3,5]"
    assert cli(capsys, "n1,n2,n3,n5") == "n[1-3,5]"
    assert cli(capsys, "n[08-10]") == "n[08-10]"  # padding kept (SCR dropped it)


def test_expand(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "-e", "n[3,1-2]", "m1") == "n3,n1,n2,m1"  # order written
    assert cli(capsys, "--expand", "-d", " ", "n[1-3]") == "n1 n2 n3"
    assert cli(capsys, "-e", "-d", "\\n", "n[1-3]") == "n1\nn2\nn3"
    assert cli(capsys, "-e", "--delimiter", "\\t", "n[1-2]") == "n1\tn2"
    assert cli(capsys, "-e", "-d", ":", "n[1-2]") == "n1:n2"
    assert cli(capsys, "-e", "n1", "", "  ", "n2") == "n1,n2"  # empty lists add nothing
    assert cli(capsys, "-e", "", "") == ""


def test_expand_long_ranges_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    # Long ranges are written from templates: the same text as the names joined.
    out = cli(capsys, "-e", "-d", "\\n", "r[1-2]n[0998-3001]", "x[5-2500]")
    assert out.split("\n") == hostlist.expand("r[1-2]n[0998-3001],x[5-2500]")


def test_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "-c", "n[1-3,5-7,10]") == "7"
    assert cli(capsys, "--count", "n[1-3]", "n[2-4]") == "6"  # duplicates counted, as SCR


def test_nth(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "-n", "4", "n[1-3,5-7]") == "n5"
    assert cli(capsys, "--nth", "1", "n[1-3,5-7]") == "n1"
    assert cli(capsys, "-n", "-1", "n[1-3,5-7]") == "n7"
    assert cli(capsys, "-n", "-6", "n[1-3,5-7]") == "n1"


@pytest.mark.parametrize("n", ["0", "7", "-7"])
def test_nth_out_of_range(capsys: pytest.CaptureFixture[str], n: str) -> None:
    with pytest.raises(UsageError) as info:
        hostlist_cmd.run(parser().parse_args(["-n", n, "n[1-3,5-7]"]))
    assert info.value.exit_code == 2
    assert n in str(info.value)


def test_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "-s", "2", "n[5,1-4]") == "n[1,5]"  # first two as written: n5, n1
    assert cli(capsys, "-s", "-2", "-e", "n[1-5]") == "n4,n5"
    assert cli(capsys, "--size", "10", "-c", "n[1-5]") == "5"
    assert cli(capsys, "-s", "0", "-c", "n[1-5]") == "0"
    assert cli(capsys, "-s", "3", "-n", "-1", "n[1-5]") == "n3"


def test_minus(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "-m", "n[1-8]", "n[2,4]") == "n[1,3,5-8]"
    assert cli(capsys, "--minus", "-e", "n[8,1-7]", "n[2-6]") == "n8,n1,n7"
    # as SCR: every later hostlist is subtracted from the first
    assert cli(capsys, "-m", "n[1-8]", "n[2,4]", "n8") == "n[1,3,5-7]"
    assert cli(capsys, "-m", "n[1-2]", "n[1-2]") == ""


def test_intersection(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "-i", "n[1-6]", "n[3,5,7]") == "n[3,5]"
    assert cli(capsys, "--intersection", "-e", "n[6,1-5]", "n[5-9]") == "n6,n5"
    assert cli(capsys, "-i", "n[1-6]", "n[3-9]", "n[1-4]") == "n[3-4]"
    assert cli(capsys, "-i", "-c", "rack[1-40]n[001-256]", "rack[2-3]n[001-256]") == "512"


@pytest.mark.parametrize("option", ["-m", "-i"])
def test_set_ops_need_two_hostlists(option: str) -> None:
    with pytest.raises(UsageError) as info:
        hostlist_cmd.run(parser().parse_args([option, "n[1-3]"]))
    assert "two hostlists" in str(info.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "-i", "a", "b"],
        ["-e", "-c", "a"],
        ["-e", "-n", "1", "a"],
        ["-c", "-n", "1", "a"],
        [],
        ["-s", "x", "a"],
        ["-n", "x", "a"],
    ],
)
def test_argparse_rejects(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(argv)
    assert info.value.code == 2


@pytest.mark.parametrize("bad", ["n[3-1]", "n[1-3", "a,,b", "@io", "n1;reboot", "-rf"])
def test_malformed_hostlist_is_a_usage_error(bad: str) -> None:
    args = parser().parse_args(["--", bad])
    with pytest.raises(UsageError) as info:
        hostlist_cmd.run(args)
    assert info.value.exit_code == 2
    assert bad in str(info.value)


def test_empty_hostlist_prints_empty_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "") == ""
    assert cli(capsys, "-c", "") == "0"


def test_help_documents_exit_codes() -> None:
    text = parser().format_help()
    assert "exit codes:" in text
    assert "0  success" in text
    assert "2  usage" in text
    for option in ("--delimiter", "--size", "--minus", "--intersection", "--expand", "--count"):
        assert option in text


def test_folded_output_uses_range_algebra(capsys: pytest.CaptureFixture[str]) -> None:
    # 9 million names each: expanding them would take seconds and gigabytes.
    assert cli(capsys, "-m", "n[1-9000000]", "n[2-8999999]") == "n[1,9000000]"
    assert cli(capsys, "-i", "n[1-9000000]", "n[5-6],m1", "n[6-7]") == "n6"
    assert cli(capsys, "n[1-9000000]", "n[9000001-9000002]") == "n[1-9000002]"
    # the list outputs keep the order written and the repeats
    assert cli(capsys, "-e", "-m", "n[3,1,2,1]", "n2") == "n3,n1,n1"
    assert cli(capsys, "-c", "-i", "n[1-3,1]", "n1") == "2"
