"""SCR parameters: one place that answers "what is SCR_X, and where does it come from".

Sources, highest precedence first (SCR's own order, ``param.py`` and
``scr_param.c``)::

    1. environment        only names starting with SCR_ (see below)
    2. user config        $SCR_CONF_FILE if set, else <prefix>/.scrconf
    3. app config         <prefix>/.scr/app.conf (written by the SCR library from SCR_Config())
    4. system config      $SCR_SYSTEM_CONF_FILE if set, else /etc/scr/scr.conf
    5. built-in defaults  the DEFAULTS table below

``SCR_SYSTEM_CONF_FILE`` is our addition: SCR fixed the system file at build
time. The prefix is the ``prefix`` argument, else ``$SCR_PREFIX``, else the
current directory; ``~`` and ``$VAR`` in it are expanded and it is made
absolute.

Differences from SCR, on purpose:

* Reading configuration has no side effects (SCR's scripts created
  ``<prefix>/.scr`` while reading it) and each file is read once, lazily.
* A malformed line raises :class:`~scr_core.errors.ConfigError` naming file,
  line and text; SCR's scripts silently dropped the whole file.
* Only ``SCR_*`` names are taken from the environment. SCR also read
  descriptor keys such as ``CACHE`` and ``STORE`` from it, so an unrelated
  ``$CACHE`` variable could redirect the cache. An empty environment variable
  counts as unset.
* :meth:`Params.get_hash` follows the same order as :meth:`Params.get` (SCR's
  scripts skipped the app config there).

Config file syntax (as SCR's C parser, ``scr_config.c``)::

    # a comment; blank lines are fine
    SCR_CACHE_SIZE = 2                      # KEY=VALUE, spaces around '=' allowed
    STORE=/dev/shm GROUP=NODE COUNT=1       # first pair is the entry, the rest its attributes
    STORE=/ssd     GROUP=NODE COUNT=3       # same key again, other value: a second entry
    CACHE=$HOME/cache SIZE=1                # $VAR and ${VAR} expand; a leading ~ is $HOME

Keys are case-insensitive (upper-cased); values are not. A value is one word:
it cannot contain whitespace or ``=`` nor start with ``#``. There is no
quoting: quotes are part of the value, as in SCR. A backslash escapes the next
character (``\\$`` is a literal dollar; ``\\n``, ``\\t`` are C escapes, as in
SCR). ``#`` starts a comment only where a key could start, so
``KEY=a#b`` has the value ``a#b`` (SCR does the same). An undefined ``$VAR``
in a file is an error. The same ``KEY=VALUE`` on several lines merges its
attributes (later lines win). For a single-valued parameter set on several
lines of one file, :meth:`Params.get` returns the first, as SCR's scripts do;
:meth:`Params.source` names the line.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping

from scr_core.errors import ConfigError, JobEnvironmentError, UsageError
from scr_core.records import FrozenRecord, Record

__all__ = [
    "DEFAULTS",
    "ConfigData",
    "Entry",
    "ParamInfo",
    "Params",
    "interpolate",
    "parse_config",
    "read_config_file",
]

DEFAULT_SYSTEM_CONF = "/etc/scr/scr.conf"


class ParamInfo(FrozenRecord):
    """A parameter scr knows: its built-in default (None = unset) and what it does."""

    _fields = ("name", "default", "description")
    __slots__ = _fields

    def __init__(self, name: str, default: str | None, description: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "default", default)
        object.__setattr__(self, "description", description)


#: Built-in defaults, the lowest-precedence source. None means "unset".
DEFAULTS: dict[str, ParamInfo] = {
    p.name: p
    for p in (
        ParamInfo("SCR_ENABLE", "1", "0 disables SCR: scr run only launches the job once"),
        ParamInfo("SCR_DEBUG", "0", "verbosity; > 0 prints what the job scripts do"),
        ParamInfo("SCR_CNTL_BASE", "/dev/shm", "base of the node-local control directory"),
        ParamInfo("SCR_CACHE_BASE", "/dev/shm", "base of the cache when no CACHE entry is set"),
        ParamInfo("SCR_CACHE_SIZE", "1", "datasets kept in the cache when no CACHE entry is set"),
        ParamInfo("SCR_RUNS", None, "job steps scr run may launch in one allocation"),
        ParamInfo("SCR_RETRIES", "0", "extra job steps after a failure (runs = retries + 1)"),
        ParamInfo("SCR_MIN_NODES", None, "stop relaunching when fewer healthy nodes remain"),
        ParamInfo("SCR_HALT_SECONDS", "0", "halt this many seconds before the allocation ends"),
        ParamInfo("SCR_WATCHDOG", "0", "1 kills a job step whose output stalls"),
        ParamInfo("SCR_WATCHDOG_TIMEOUT", None, "seconds without output before the watchdog fires"),
        ParamInfo(
            "SCR_WATCHDOG_TIMEOUT_PFS", None, "watchdog timeout while writing to the file system"
        ),
        ParamInfo("SCR_FILE_BUF_SIZE", "1048576", "copy buffer size in bytes (units allowed)"),
        ParamInfo("SCR_CRC_ON_FLUSH", "1", "1 computes CRC32 of files while flushing/scavenging"),
        ParamInfo("SCR_LOG_ENABLE", "0", "1 records SCR events in <prefix>/.scr/log"),
        ParamInfo("SCR_NODE_TESTS", None, "comma-separated node health tests to run"),
        ParamInfo("SCR_EXCLUDE_NODES", None, "hostlist of nodes never to use"),
        ParamInfo(
            "SCR_RUN_SETTLE_SECONDS",
            "5",
            "pause between job steps for the RM to settle (SCR hard-coded 60 s)",
        ),
        ParamInfo("SCR_RM_RETRIES", "3",
                  "times a resource-manager query that failed transiently is tried again"),
        ParamInfo("SCR_RM_RETRY_SECONDS", "2",
                  "wait before the first retry of a resource-manager query (doubles each time)"),
        ParamInfo("SCR_WATCH", "1", "0 turns off the in-step health watch of scr run"),
        ParamInfo("SCR_WATCH_INTERVAL", "1", "seconds between the watch's probe rounds"),
        ParamInfo(
            "SCR_WATCH_FAILURES", "3", "consecutive failed probes before a node is dead"
        ),
        ParamInfo(
            "SCR_WATCH_WINDOW", "5", "seconds those failed probes must span (outages shorter "
            "than this are ridden out)"
        ),
        ParamInfo(
            "SCR_WATCH_TESTS", None, "in-step node tests the watch runs (default: every "
            "in-step default test: ping)"
        ),
        ParamInfo(
            "SCR_RUN_KILL_GRACE_SECONDS", "5", "seconds a killed launcher gets before its "
            "processes are killed outright"
        ),
    )
}

#: Settings that locate the configuration itself; shown by describe(), never read from files.
_META = {
    "SCR_PREFIX": "the job's prefix directory (default: the current directory)",
    "SCR_CONF_FILE": "the user config file (default: <prefix>/.scrconf)",
    "SCR_SYSTEM_CONF_FILE": f"the system config file (default: {DEFAULT_SYSTEM_CONF})",
}

_TRUE = {"1", "yes", "y", "true", "on"}
_FALSE = {"0", "no", "n", "false", "off"}


# --------------------------------------------------------------------------- values

# Patterns are compiled on first use (a command that reads no config file and interpolates
# nothing, scr_should_exit in a batch script, does not pay for compiling them).
@functools.cache
def _var_re() -> re.Pattern[str]:
    return re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _home(environ: Mapping[str, str]) -> str:
    return environ.get("HOME") or os.path.expanduser("~")


def interpolate(value: str, environ: Mapping[str, str] | None = None, strict: bool = False) -> str:
    """Expand a leading ``~`` (``~`` or ``~/...``) and ``$VAR``/``${VAR}`` in ``value``.

    Undefined variables stay as written, unless ``strict``, which raises
    KeyError naming the variable. (SCR also turned a leading ``.`` into the
    current directory for every value; we do not: ``.5`` is not a path.)
    """
    env = os.environ if environ is None else environ
    if value == "~" or value.startswith("~/"):
        value = _home(env) + value[1:]

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name in env:
            return env[name]
        if strict:
            raise KeyError(name)
        return m.group(0)

    return _var_re().sub(sub, value)


@functools.cache
def _value_token_re() -> re.Pattern[str]:
    return re.compile(
        r"\\(.?)|\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))?|[^\\$]+"
    )



def _expand_file_value(raw: str, environ: Mapping[str, str], where: str) -> str:
    """SCR's scr_expand_value: backslash escapes and ``$VAR`` (undefined is an error).

    A leading ``~`` (``~`` or ``~/...``) also means ``$HOME``, as in SCR's scripts.
    """
    out: list[str] = []
    if raw == "~" or raw.startswith("~/"):
        out.append(_home(environ))
        raw = raw[1:]
    for m in _value_token_re().finditer(raw):
        text = m.group(0)
        if text.startswith("\\"):
            char = m.group(1)
            out.append(_C_ESCAPES.get(char, char) if char else "\\")
        elif text.startswith("$"):
            name = m.group(2) or m.group(3)
            if name is None:
                raise ConfigError(f"{where}: '$' without a variable name in value {raw!r}")
            if name not in environ:
                raise ConfigError(
                    f"{where}: environment variable ${name} is not set (in value {raw!r})"
                )
            out.append(environ[name])
        else:
            out.append(text)
    return "".join(out)


# --------------------------------------------------------------------------- config files


class Entry(Record):
    """One ``KEY=VALUE attr=... attr=...`` entry of a config file."""

    _fields = ("value", "attrs", "where")
    __slots__ = _fields

    def __init__(self, value: str, attrs: dict[str, str] | None = None, where: str = "") -> None:
        self.value = value
        self.attrs: dict[str, str] = {} if attrs is None else attrs
        self.where = where  # "path:line" of its first line


#: KEY -> VALUE -> Entry, in file order.
ConfigData = dict[str, dict[str, Entry]]

@functools.cache
def _pair_re() -> re.Pattern[str]:
    return re.compile(r"([^\s=#][^\s=]*)[ \t]*=[ \t]*([^\s=#][^\s=]*)")


@functools.cache
def _space_re() -> re.Pattern[str]:
    return re.compile(r"[ \t\r\f\v]*")


def parse_config(text: str, path: str, environ: Mapping[str, str] | None = None) -> ConfigData:
    """Parse config-file ``text`` (read from ``path``, named in errors) into entries."""
    env = os.environ if environ is None else environ
    data: ConfigData = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        where = f"{path}:{lineno}"
        pos = 0
        entry: Entry | None = None
        seen_attrs: set[str] = set()
        while True:
            pos = _space_re().match(line, pos).end()  # type: ignore[union-attr]
            if pos >= len(line) or line[pos] == "#":
                break
            m = _pair_re().match(line, pos)
            if m is None:
                raise ConfigError(
                    f"{where}: expected KEY=VALUE at {line[pos:]!r} in line {line.strip()!r}"
                )
            end = m.end()
            if end < len(line) and line[end] not in " \t\r\f\v":
                raise ConfigError(
                    f"{where}: unexpected {line[end]!r} after {m.group(0)!r} "
                    f"in line {line.strip()!r}"
                )
            key = m.group(1).upper()
            value = _expand_file_value(m.group(2), env, where)
            if entry is None:
                entry = data.setdefault(key, {}).get(value)
                if entry is None:
                    entry = Entry(value, {}, where)
                    data[key][value] = entry
            else:
                if key in seen_attrs:
                    raise ConfigError(
                        f"{where}: attribute {key} given twice in line {line.strip()!r}"
                    )
                seen_attrs.add(key)
                entry.attrs[key] = value
            pos = end
    return data


def read_config_file(path: str, environ: Mapping[str, str] | None = None) -> ConfigData | None:
    """Read and parse ``path``; None if it does not exist, ConfigError if unreadable or bad."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{lineno}: not valid UTF-8 text") from None
    return parse_config(text, path, environ)


# --------------------------------------------------------------------------- Params


class Params:
    """SCR parameters from environment, config files and defaults (see module doc).

    ``environ`` defaults to ``os.environ`` (read at each lookup); pass a
    mapping to isolate tests or to describe another process's environment.
    """

    _LAYERS = ("user", "app", "system")

    def __init__(self, prefix: str | None = None, environ: Mapping[str, str] | None = None):
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        if prefix is not None:
            self._prefix_source = "argument"
        elif self.environ.get("SCR_PREFIX"):
            prefix = self.environ["SCR_PREFIX"]
            self._prefix_source = "env SCR_PREFIX"
        else:
            prefix = os.getcwd()
            self._prefix_source = "default"
        self.prefix: str = os.path.abspath(interpolate(prefix, self.environ))
        self._loaded: dict[str, ConfigData | None] = {}

    # ------------------------------------------------------------------ files

    def config_files(self) -> list[tuple[str, str]]:
        """The config files consulted, highest precedence first: ``[(layer, path), ...]``."""
        env = self.environ
        user = env.get("SCR_CONF_FILE")
        system = env.get("SCR_SYSTEM_CONF_FILE")
        return [
            ("user", interpolate(user, env) if user else os.path.join(self.prefix, ".scrconf")),
            ("app", os.path.join(self.prefix, ".scr", "app.conf")),
            ("system", interpolate(system, env) if system else DEFAULT_SYSTEM_CONF),
        ]

    def _layer(self, label: str, path: str) -> ConfigData | None:
        if label not in self._loaded:
            self._loaded[label] = read_config_file(path, self.environ)
        return self._loaded[label]

    def _env(self, name: str) -> str | None:
        if not name.startswith("SCR_"):
            return None
        value = self.environ.get(name)
        return interpolate(value, self.environ) if value else None

    def _meta(self, name: str) -> tuple[str, str]:
        """Value and source of a setting that locates the configuration."""
        if name == "SCR_PREFIX":
            src = self._prefix_source
            return self.prefix, "default (current directory)" if src == "default" else src
        layer = "user" if name == "SCR_CONF_FILE" else "system"
        src = f"env {name}" if self.environ.get(name) else "default"
        return dict(self.config_files())[layer], src

    def _lookup(self, name: str) -> tuple[dict[str, Entry] | None, str]:
        """Entries for ``name`` from the highest source that has it, and that source."""
        name = name.upper()
        if name in _META:  # resolved by __init__/config_files, never from files
            value, src = self._meta(name)
            return {value: Entry(value, {}, src)}, src
        value = self._env(name)
        if value is not None:
            return {value: Entry(value, {}, f"env {name}")}, f"env {name}"
        for label, path in self.config_files():
            data = self._layer(label, path)
            if data and name in data:
                entries = data[name]
                return entries, next(iter(entries.values())).where
        info = DEFAULTS.get(name)
        if info is not None and info.default is not None:
            return {info.default: Entry(info.default, {}, "default")}, "default"
        return None, "unset"

    # ------------------------------------------------------------------ getters

    def get(self, name: str) -> str | None:
        """The value of ``name`` (its first entry's value), or None if unset everywhere."""
        entries, _src = self._lookup(name)
        return next(iter(entries)) if entries else None

    def source(self, name: str) -> str:
        """Where ``name`` comes from: ``"env SCR_RUNS"``, ``"/p/.scrconf:3"``, ``"default"``.

        ``"unset"`` if no source sets it.
        """
        return self._lookup(name)[1]

    def get_hash(self, name: str) -> dict[str, dict[str, str]]:
        """All entries of ``name``: ``{value: {ATTR: value}}`` (``{}`` if unset).

        From the highest source that sets ``name`` at all; sources are not merged.
        """
        entries, _src = self._lookup(name)
        if not entries:
            return {}
        return {value: dict(entry.attrs) for value, entry in entries.items()}

    def _bad(self, name: str, value: str, what: str) -> ConfigError:
        return ConfigError(f"{name}={value!r} ({self.source(name)}) is not {what}")

    def get_int(self, name: str, default: int | None = None) -> int | None:
        """``name`` as an int; ``default`` if unset (after the built-in defaults)."""
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(value.strip())
        except ValueError:
            raise self._bad(name, value, "an integer") from None

    def get_bool(self, name: str, default: bool | None = None) -> bool | None:
        """``name`` as a bool: 1/yes/true/on or 0/no/false/off (any integer: nonzero is true)."""
        value = self.get(name)
        if value is None:
            return default
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        try:
            return int(word) != 0
        except ValueError:
            raise self._bad(name, value, "a boolean (1/0, yes/no, true/false, on/off)") from None

    def get_bytes(self, name: str, default: int | None = None) -> int | None:
        """``name`` as a byte count (``1MB``, ``1.5GiB``, ``4096``); ``default`` if unset."""
        from scr_core.units import parse_bytes

        value = self.get(name)
        if value is None:
            return default
        try:
            return parse_bytes(value)
        except UsageError:
            raise self._bad(name, value, "a size in bytes") from None

    def get_seconds(self, name: str, default: float | None = None) -> float | None:
        """``name`` as seconds (``90``, ``5m``, ``1:30:00``); ``default`` if unset."""
        from scr_core.units import parse_duration

        value = self.get(name)
        if value is None:
            return default
        try:
            return parse_duration(value)
        except UsageError:
            raise self._bad(name, value, "a duration") from None

    # ------------------------------------------------------------------ listing

    def describe(self) -> list[tuple[str, str | None, str]]:
        """``(name, value, source)`` for every known and every set parameter.

        Order: the settings locating the config (SCR_PREFIX...), the DEFAULTS
        table, then other names set in the environment or files, sorted.
        A multi-entry value is shown as ``"v1 ATTR=x; v2 ATTR=y"``.
        """
        rows: list[tuple[str, str | None, str]] = [(m, *self._meta(m)) for m in _META]
        names = list(DEFAULTS)
        extra: set[str] = {n for n in self.environ if n.startswith("SCR_") and self.environ[n]}
        for label, path in self.config_files():
            data = self._layer(label, path)
            if data:
                extra.update(data)
        names += sorted(extra - set(names) - set(_META))
        for name in names:
            entries, src = self._lookup(name)
            rows.append((name, _render(entries), src))
        return rows

    # ------------------------------------------------------------------ directories

    def _user(self) -> str:
        user = self.environ.get("USER") or self.environ.get("LOGNAME")
        if user:
            return user
        try:
            import pwd

            return pwd.getpwuid(os.getuid()).pw_name
        except (ImportError, KeyError) as exc:
            raise JobEnvironmentError("cannot tell the user name: $USER is not set") from exc

    def control_base(self) -> str:
        """SCR_CNTL_BASE: the base of the node-local control directory."""
        return self.get("SCR_CNTL_BASE") or DEFAULTS["SCR_CNTL_BASE"].default or "/dev/shm"

    def control_dir(self, user: str | None = None, jobid: str | None = None) -> str:
        """The control directory: the base, or ``<base>/<user>/scr.<jobid>`` given a job id.

        ``user`` defaults to ``$USER``. This is the layout SCR's library uses.
        """
        base = self.control_base()
        if jobid is None:
            return base
        return os.path.join(base, user or self._user(), f"scr.{jobid}")

    def cache_bases(self) -> list[str]:
        """Every base directory SCR may cache datasets in, in config order, once each.

        The legacy ``CACHE=<base>`` entries, or ``SCR_CACHE_BASE`` when there
        are none (SCR's library does the same), then the modern ``STORE=<dir>``
        entries and the ``STORE=`` attributes of ``CKPT`` entries. A store that
        never held a cache is listed too: for scavenging and cleanup, an extra
        directory without job data costs a listing, a missing one loses data.
        """
        bases = list(self.get_hash("CACHE"))
        if not bases:
            bases.append(self.get("SCR_CACHE_BASE") or "/dev/shm")
        bases.extend(self.get_hash("STORE"))
        bases.extend(attrs["STORE"] for attrs in self.get_hash("CKPT").values() if "STORE" in attrs)
        return list(dict.fromkeys(b.rstrip("/") or "/" for b in bases))

    def cache_dirs(self, user: str | None = None, jobid: str | None = None) -> list[str]:
        """The cache bases, or each ``<base>/<user>/scr.<jobid>`` given a job id."""
        bases = self.cache_bases()
        if jobid is None:
            return bases
        user = user or self._user()
        return [os.path.join(base, user, f"scr.{jobid}") for base in bases]


def _render(entries: dict[str, Entry] | None) -> str | None:
    if not entries:
        return None
    if len(entries) == 1:
        entry = next(iter(entries.values()))
        if not entry.attrs:
            return entry.value
    return "; ".join(
        " ".join([e.value, *(f"{k}={v}" for k, v in e.attrs.items())]) for e in entries.values()
    )
