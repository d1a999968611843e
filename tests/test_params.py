"""SCR parameters: precedence, config syntax, errors naming file:line, no side effects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from scr_core.errors import ConfigError
from scr_core.params import DEFAULTS, Params, interpolate, parse_config, read_config_file


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    p = tmp_path / "job"
    p.mkdir()
    return p


@pytest.fixture
def sysconf(tmp_path: Path) -> Path:
    return tmp_path / "etc" / "scr.conf"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make(prefix: Path, sysconf: Path, **env: str) -> Params:
    environ = {"HOME": "/home/u", "USER": "u", "SCR_SYSTEM_CONF_FILE": str(sysconf), **env}
    return Params(prefix=str(prefix), environ=environ)


def user_conf(prefix: Path, text: str) -> Path:
    return write(prefix / ".scrconf", text)


def app_conf(prefix: Path, text: str) -> Path:
    return write(prefix / ".scr" / "app.conf", text)


# --------------------------------------------------------------------------- precedence


def test_defaults(prefix: Path, sysconf: Path) -> None:
    p = make(prefix, sysconf)
    assert p.get("SCR_CACHE_BASE") == "/dev/shm"
    assert p.get("SCR_CNTL_BASE") == "/dev/shm"
    assert p.get("SCR_RUN_SETTLE_SECONDS") == "5"
    assert p.get("SCR_RUNS") is None
    assert p.source("SCR_RETRIES") == "default"
    assert p.source("SCR_RUNS") == "unset"
    assert p.get("NO_SUCH_THING") is None


def test_every_default_has_a_description() -> None:
    for name in (
        "SCR_CNTL_BASE SCR_CACHE_BASE SCR_CACHE_SIZE SCR_RUNS SCR_RETRIES SCR_HALT_SECONDS "
        "SCR_MIN_NODES SCR_WATCHDOG SCR_WATCHDOG_TIMEOUT SCR_WATCHDOG_TIMEOUT_PFS "
        "SCR_FILE_BUF_SIZE SCR_CRC_ON_FLUSH SCR_LOG_ENABLE SCR_ENABLE SCR_DEBUG "
        "SCR_NODE_TESTS SCR_EXCLUDE_NODES SCR_RUN_SETTLE_SECONDS"
    ).split():
        assert DEFAULTS[name].description


def test_env_beats_user(prefix: Path, sysconf: Path) -> None:
    user_conf(prefix, "SCR_RUNS=3\n")
    p = make(prefix, sysconf, SCR_RUNS="7")
    assert p.get("SCR_RUNS") == "7"
    assert p.source("SCR_RUNS") == "env SCR_RUNS"


def test_user_beats_app(prefix: Path, sysconf: Path) -> None:
    path = user_conf(prefix, "# comment\n\nSCR_RUNS=3\n")
    app_conf(prefix, "SCR_RUNS=4\n")
    p = make(prefix, sysconf)
    assert p.get("SCR_RUNS") == "3"
    assert p.source("SCR_RUNS") == f"{path}:3"


def test_app_beats_system(prefix: Path, sysconf: Path) -> None:
    path = app_conf(prefix, "SCR_RUNS=4\n")
    write(sysconf, "SCR_RUNS=5\n")
    p = make(prefix, sysconf)
    assert p.get("SCR_RUNS") == "4"
    assert p.source("SCR_RUNS") == f"{path}:1"


def test_system_beats_default(prefix: Path, sysconf: Path) -> None:
    write(sysconf, "SCR_CACHE_BASE=/ssd\n")
    p = make(prefix, sysconf)
    assert p.get("SCR_CACHE_BASE") == "/ssd"
    assert p.source("SCR_CACHE_BASE") == f"{sysconf}:1"


def test_env_beats_everything(prefix: Path, sysconf: Path) -> None:
    user_conf(prefix, "SCR_CACHE_SIZE=2\n")
    app_conf(prefix, "SCR_CACHE_SIZE=3\n")
    write(sysconf, "SCR_CACHE_SIZE=4\n")
    assert make(prefix, sysconf, SCR_CACHE_SIZE="9").get_int("SCR_CACHE_SIZE") == 9
    assert make(prefix, sysconf).get_int("SCR_CACHE_SIZE") == 2


def test_empty_env_var_counts_as_unset(prefix: Path, sysconf: Path) -> None:
    user_conf(prefix, "SCR_RUNS=3\n")
    assert make(prefix, sysconf, SCR_RUNS="").get("SCR_RUNS") == "3"


def test_only_scr_names_come_from_env(prefix: Path, sysconf: Path) -> None:
    user_conf(prefix, "CACHE=/ssd SIZE=2\n")
    p = make(prefix, sysconf, CACHE="/tmp/unrelated")
    assert p.get_hash("CACHE") == {"/ssd": {"SIZE": "2"}}


def test_scr_conf_file_overrides_dot_scrconf(prefix: Path, sysconf: Path, tmp_path: Path) -> None:
    user_conf(prefix, "SCR_RUNS=3\n")
    other = write(tmp_path / "mine.conf", "SCR_RUNS=8\n")
    p = make(prefix, sysconf, SCR_CONF_FILE=str(other))
    assert p.get("SCR_RUNS") == "8"
    assert p.source("SCR_RUNS") == f"{other}:1"
    assert p.config_files()[0] == ("user", str(other))


def test_scr_conf_file_is_interpolated(prefix: Path, sysconf: Path, tmp_path: Path) -> None:
    write(tmp_path / "mine.conf", "SCR_RUNS=8\n")
    p = make(prefix, sysconf, SCR_CONF_FILE="$CONFDIR/mine.conf", CONFDIR=str(tmp_path))
    assert p.get("SCR_RUNS") == "8"


def test_default_system_conf_path(prefix: Path) -> None:
    p = Params(prefix=str(prefix), environ={})
    assert p.config_files()[2] == ("system", "/etc/scr/scr.conf")


def test_keys_are_case_insensitive(prefix: Path, sysconf: Path) -> None:
    user_conf(prefix, "scr_cache_size=3\nStore=/Dev/Shm group=node\n")
    p = make(prefix, sysconf)
    assert p.get("SCR_CACHE_SIZE") == "3"
    assert p.get("scr_cache_size") == "3"
    assert p.get_hash("store") == {"/Dev/Shm": {"GROUP": "node"}}  # values keep case


def test_env_lookup_does_not_read_files(prefix: Path, sysconf: Path) -> None:
    (prefix / ".scrconf").mkdir()  # unreadable as a file: reading it is an error
    p = make(prefix, sysconf, SCR_RUNS="2")
    assert p.get("SCR_RUNS") == "2"
    with pytest.raises(ConfigError) as info:
        p.get("SCR_RETRIES")
    assert str(prefix / ".scrconf") in str(info.value)


def test_files_are_read_once(prefix: Path, sysconf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_conf(prefix, "SCR_RUNS=3\n")
    import scr_core.params as params_mod

    calls: list[str] = []
    real = params_mod.read_config_file

    def counting(path: str, environ: object = None) -> object:
        calls.append(path)
        return real(path, environ)  # type: ignore[arg-type]

    monkeypatch.setattr(params_mod, "read_config_file", counting)
    p = make(prefix, sysconf)
    assert calls == []  # lazy: nothing read at construction
    for _ in range(3):
        p.get("SCR_RUNS")
        p.get("SCR_CACHE_BASE")
        p.describe()
    assert sorted(calls) == sorted(set(calls))
    assert len(calls) == 3


# --------------------------------------------------------------------------- syntax


def test_multi_pair_lines_and_repeated_keys(prefix: Path, sysconf: Path) -> None:
    user_conf(
        prefix,
        "STORE=/dev/shm GROUP=NODE COUNT=1\n"
        "STORE = /ssd\tGROUP = NODE   COUNT=3   # trailing comment\n"
        "CKPT=0 INTERVAL=1 GROUP=NODE STORE=/dev/shm TYPE=XOR SET_SIZE=16\n",
    )
    p = make(prefix, sysconf)
    assert p.get_hash("STORE") == {
        "/dev/shm": {"GROUP": "NODE", "COUNT": "1"},
        "/ssd": {"GROUP": "NODE", "COUNT": "3"},
    }
    assert p.get("STORE") == "/dev/shm"
    assert p.get_hash("CKPT")["0"]["SET_SIZE"] == "16"


def test_same_entry_on_two_lines_merges_attributes() -> None:
    data = parse_config("CACHE=/a SIZE=1\nCACHE=/a SIZE=2 BYTES=1GB\n", "f")
    assert data["CACHE"]["/a"].attrs == {"SIZE": "2", "BYTES": "1GB"}
    assert data["CACHE"]["/a"].where == "f:1"


def test_first_value_of_a_repeated_scalar_wins() -> None:
    data = parse_config("SCR_RUNS=1\nSCR_RUNS=2\n", "f")
    assert list(data["SCR_RUNS"]) == ["1", "2"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("K=v", "v"),
        ("K = v", "v"),
        ("  K\t=\tv  ", "v"),
        ("K=v # comment", "v"),
        ("K=v#notacomment", "v#notacomment"),  # as SCR's C parser
        ('K="quoted"', '"quoted"'),  # no quoting, as SCR
        ("K=a\\tb", "a\tb"),
        ("K=\\$HOME", "$HOME"),
        ("K=a\\ ", "a\\"),
        ("K=v\r", "v"),
    ],
)
def test_value_syntax(text: str, value: str) -> None:
    assert next(iter(parse_config(text, "f", {})["K"])) == value


def test_comments_and_blank_lines() -> None:
    data = parse_config("# only a comment\n\n   \n\t# indented comment\nA=1\n", "f")
    assert list(data) == ["A"]
    assert data["A"]["1"].where == "f:5"


@pytest.mark.parametrize(
    ("text", "lineno", "snippet"),
    [
        ("A=1\nKEY\n", 2, "KEY"),
        ("A=1\n\n=value\n", 3, "=value"),
        ("KEY=\n", 1, "KEY="),
        ("KEY= # comment\n", 1, "KEY="),
        ("A=B=C\n", 1, "A=B=C"),
        ("STORE=/x GROUP\n", 1, "GROUP"),
        ("STORE=/x GROUP=A GROUP=B\n", 1, "GROUP"),
        ("A=1\nB=$NOT_SET_ANYWHERE\n", 2, "NOT_SET_ANYWHERE"),
        ("A=cost$\n", 1, "cost$"),
    ],
)
def test_malformed_lines_name_file_and_line(
    prefix: Path, sysconf: Path, text: str, lineno: int, snippet: str
) -> None:
    path = user_conf(prefix, text)
    with pytest.raises(ConfigError) as info:
        make(prefix, sysconf).get("A")
    message = str(info.value)
    assert f"{path}:{lineno}:" in message
    assert snippet in message
    assert info.value.exit_code == 3


def test_bad_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "c.conf"
    path.write_bytes(b"A=1\nB=\xff\n")
    with pytest.raises(ConfigError) as info:
        read_config_file(str(path))
    assert f"{path}:2:" in str(info.value)


def test_missing_files_are_fine(prefix: Path, tmp_path: Path) -> None:
    p = make(prefix, tmp_path / "nope" / "scr.conf", SCR_CONF_FILE=str(tmp_path / "none"))
    assert p.get("SCR_CACHE_BASE") == "/dev/shm"
    assert read_config_file(str(tmp_path / "none")) is None
    # a path through a regular file is "missing" too
    (tmp_path / "file").write_text("")
    assert read_config_file(str(tmp_path / "file" / "x.conf")) is None


def test_unreadable_file_is_an_error(prefix: Path, sysconf: Path) -> None:
    sysconf.mkdir(parents=True)  # exists, but cannot be read as a file
    with pytest.raises(ConfigError) as info:
        make(prefix, sysconf).get("SCR_CACHE_BASE")
    assert str(sysconf) in str(info.value)


# --------------------------------------------------------------------------- interpolation


def test_interpolation_in_files(prefix: Path, sysconf: Path) -> None:
    user_conf(
        prefix,
        "SCR_CACHE_BASE=$TMPBASE/cache\nSCR_CNTL_BASE=${TMPBASE}x\nCACHE=~/c SIZE=$N\nA=a~b\n",
    )
    p = make(prefix, sysconf, TMPBASE="/scratch", N="2")
    assert p.get("SCR_CACHE_BASE") == "/scratch/cache"
    assert p.get("SCR_CNTL_BASE") == "/scratchx"
    assert p.get_hash("CACHE") == {"/home/u/c": {"SIZE": "2"}}
    assert p.get("A") == "a~b"


def test_interpolation_in_env_is_lenient(prefix: Path, sysconf: Path) -> None:
    p = make(prefix, sysconf, SCR_CACHE_BASE="~/cache", SCR_CNTL_BASE="$UNSET_VAR/x")
    assert p.get("SCR_CACHE_BASE") == "/home/u/cache"
    assert p.get("SCR_CNTL_BASE") == "$UNSET_VAR/x"


def test_interpolate_function() -> None:
    env = {"HOME": "/h", "A": "1"}
    assert interpolate("~", env) == "/h"
    assert interpolate("~/x/$A/${A}b", env) == "/h/x/1/1b"
    assert interpolate(".5", env) == ".5"  # SCR turned a leading '.' into the cwd
    assert interpolate("$NOPE", env) == "$NOPE"
    with pytest.raises(KeyError):
        interpolate("$NOPE", env, strict=True)


def test_prefix_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Params(environ={}).prefix == str(tmp_path)
    assert Params(environ={"SCR_PREFIX": "~/job", "HOME": "/h"}).prefix == "/h/job"
    assert Params(environ={"SCR_PREFIX": "rel/dir"}).prefix == str(tmp_path / "rel" / "dir")
    assert Params(prefix="/a/b/", environ={"SCR_PREFIX": "/x"}).prefix == "/a/b"
    p = Params(environ={"SCR_PREFIX": str(tmp_path / "j")})
    assert p.config_files()[1] == ("app", str(tmp_path / "j" / ".scr" / "app.conf"))


# --------------------------------------------------------------------------- typed getters


def test_typed_getters(prefix: Path, sysconf: Path) -> None:
    user_conf(
        prefix,
        "SCR_RUNS=4\nSCR_WATCHDOG=yes\nSCR_FILE_BUF_SIZE=2MB\nSCR_WATCHDOG_TIMEOUT=5m\n",
    )
    p = make(prefix, sysconf, SCR_DEBUG="2")
    assert p.get_int("SCR_RUNS") == 4
    assert p.get_int("SCR_MIN_NODES") is None
    assert p.get_int("SCR_MIN_NODES", 3) == 3
    assert p.get_int("SCR_RETRIES", 9) == 0  # the built-in default comes first
    assert p.get_bool("SCR_WATCHDOG") is True
    assert p.get_bool("SCR_ENABLE") is True
    assert p.get_bool("SCR_LOG_ENABLE") is False
    assert p.get_bool("SCR_DEBUG") is True
    assert p.get_bool("SCR_NOT_A_THING", False) is False
    assert p.get_bytes("SCR_FILE_BUF_SIZE") == 2 * 1024**2
    assert p.get_bytes("SCR_NOPE", 5) == 5
    assert p.get_seconds("SCR_WATCHDOG_TIMEOUT") == 300.0
    assert p.get_seconds("SCR_WATCHDOG_TIMEOUT_PFS") is None


@pytest.mark.parametrize(
    ("getter", "value"),
    [("get_int", "three"), ("get_bool", "maybe"), ("get_bytes", "lots"), ("get_seconds", "soon")],
)
def test_typed_getters_name_the_source(
    prefix: Path, sysconf: Path, getter: str, value: str
) -> None:
    p = make(prefix, sysconf, SCR_X=value)
    with pytest.raises(ConfigError) as info:
        getattr(p, getter)("SCR_X")
    assert "env SCR_X" in str(info.value)
    assert value in str(info.value)


# --------------------------------------------------------------------------- describe


def test_describe(prefix: Path, sysconf: Path) -> None:
    path = user_conf(prefix, "SCR_CACHE_SIZE=3\nSTORE=/a GROUP=NODE\nSTORE=/b\nMY_KEY=1\n")
    p = make(prefix, sysconf, SCR_RUNS="2", SCR_CUSTOM="x")
    rows = {name: (value, src) for name, value, src in p.describe()}
    assert rows["SCR_PREFIX"] == (str(prefix), "argument")
    assert rows["SCR_SYSTEM_CONF_FILE"] == (str(sysconf), "env SCR_SYSTEM_CONF_FILE")
    assert rows["SCR_CONF_FILE"] == (str(prefix / ".scrconf"), "default")
    assert rows["SCR_RUNS"] == ("2", "env SCR_RUNS")
    assert rows["SCR_CACHE_SIZE"] == ("3", f"{path}:1")
    assert rows["SCR_CACHE_BASE"] == ("/dev/shm", "default")
    assert rows["SCR_MIN_NODES"] == (None, "unset")
    assert rows["SCR_CUSTOM"] == ("x", "env SCR_CUSTOM")
    assert rows["STORE"] == ("/a GROUP=NODE; /b", f"{path}:2")
    assert rows["MY_KEY"] == ("1", f"{path}:4")
    names = [name for name, _v, _s in p.describe()]
    assert len(names) == len(set(names))
    assert set(DEFAULTS) <= set(names)


# --------------------------------------------------------------------------- directories


def test_control_dir(prefix: Path, sysconf: Path) -> None:
    p = make(prefix, sysconf, SCR_CNTL_BASE="/tmp/cntl")
    assert p.control_dir() == "/tmp/cntl"
    assert p.control_dir(jobid="42") == "/tmp/cntl/u/scr.42"
    assert p.control_dir("bob", "7") == "/tmp/cntl/bob/scr.7"
    assert make(prefix, sysconf).control_dir(jobid="1") == "/dev/shm/u/scr.1"


def test_cache_dirs_default_and_cache_base(prefix: Path, sysconf: Path) -> None:
    assert make(prefix, sysconf).cache_dirs() == ["/dev/shm"]
    p = make(prefix, sysconf, SCR_CACHE_BASE="/ssd/")
    assert p.cache_dirs() == ["/ssd"]
    assert p.cache_dirs("bob", "9") == ["/ssd/bob/scr.9"]


def test_cache_dirs_legacy_cache_entries(prefix: Path, sysconf: Path) -> None:
    user_conf(prefix, "CACHE=/dev/shm SIZE=1\nCACHE=/ssd SIZE=2\n")
    p = make(prefix, sysconf, SCR_CACHE_BASE="/ignored")
    assert p.cache_dirs() == ["/dev/shm", "/ssd"]
    assert p.cache_dirs(jobid="3") == ["/dev/shm/u/scr.3", "/ssd/u/scr.3"]


def test_cache_dirs_store_and_ckpt_entries(prefix: Path, sysconf: Path) -> None:
    user_conf(
        prefix,
        "STORE=/dev/shm GROUP=NODE COUNT=1\nSTORE=/ssd GROUP=NODE\n"
        "CKPT=0 STORE=/dev/shm TYPE=XOR\nCKPT=1 STORE=/bb TYPE=SINGLE\n",
    )
    p = make(prefix, sysconf, SCR_CACHE_BASE="/cachebase")
    assert p.cache_dirs() == ["/cachebase", "/dev/shm", "/ssd", "/bb"]


def test_no_side_effects(prefix: Path, sysconf: Path, tmp_path: Path) -> None:
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    p = make(
        prefix, sysconf, SCR_CNTL_BASE=str(tmp_path / "cntl"), SCR_CACHE_BASE=str(tmp_path / "c")
    )
    p.get("SCR_RUNS")
    p.describe()
    p.cache_dirs("u", "1")
    p.control_dir("u", "1")
    p.get_hash("STORE")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert not (prefix / ".scr").exists()
    assert os.listdir(prefix) == []


def test_meta_settings_answer_through_get(prefix: Path, sysconf: Path) -> None:
    p = make(prefix, sysconf)
    assert p.get("SCR_PREFIX") == str(prefix)
    assert p.source("SCR_PREFIX") == "argument"
    assert p.get("SCR_CONF_FILE") == str(prefix / ".scrconf")
    assert p.get("SCR_SYSTEM_CONF_FILE") == str(sysconf)
    assert p.source("SCR_SYSTEM_CONF_FILE") == "env SCR_SYSTEM_CONF_FILE"
