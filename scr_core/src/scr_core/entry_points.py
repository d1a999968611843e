"""Entry-point discovery with an on-disk cache (start-up time of every ``scr`` command).

Scanning the installed distributions needs :mod:`importlib.metadata` (with :mod:`email`,
:mod:`zipfile`, :mod:`pathlib` ...) and reading every distribution's metadata: about 25 ms
of a command that should take 50. The result is the same until a distribution is installed,
removed or changed, so it is cached in a file.

Location
    ``$XDG_CACHE_HOME/scr/entry-points-<tag>.marshal`` (default ``~/.cache/scr``); ``<tag>``
    names the interpreter and venv (a hash of ``sys.executable`` and ``sys.prefix``), so each
    venv has its own file.
Key
    the entry-point group; the Python version; every ``sys.path`` entry (made absolute) with
    the stat (mtime, size) of the directory; for every ``*.dist-info`` / ``*.egg-info`` in
    it, its name, the directory's mtime and the mtime and size of its ``entry_points.txt``.
    Installing or uninstalling a distribution adds or removes a directory (changing the
    listing and the mtime of the directory holding it); rewriting ``entry_points.txt`` (an
    editable re-install) changes its stat. Computing the key is a ``stat`` of each path
    entry, a listing of each directory and two ``stat`` per distribution: well under a
    millisecond for a hundred distributions.
Entries
    the file keeps the entry points of the last :data:`MAX_ENTRIES` keys, most recent first:
    ``scr`` (``sys.path[0]`` = the venv's ``bin``) and ``python -m scr_core`` run in various
    directories (``sys.path[0]`` = the current directory) have different keys and would
    otherwise evict each other on every call.
Invalidation
    no entry with an equal key: the entry points are scanned again and the file rewritten
    (written to a temporary file in the same directory, then renamed: readers never see a
    partial file). Any error reading the file (missing, truncated, corrupt, another Python's
    format) counts as a miss; an error writing it is ignored.
``SCR_PLUGINS_CACHE=0``
    (or ``no``, ``false``, ``off``) disables the cache: every command scans.

The file holds only names and strings (``marshal`` of tuples); the modules it names are
imported as if found by the scan.
"""

from __future__ import annotations

import marshal
import os
import sys
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple

CACHE_ENV = "SCR_PLUGINS_CACHE"
#: bump when the layout of the file changes
FORMAT = 2
#: keys (sys.path variants) remembered in one file
MAX_ENTRIES = 8

_DIST_SUFFIXES = (".dist-info", ".egg-info")

EntryPoint = Tuple[str, str, str, str]  # (name, "module[:attr]", distribution, version)


def scan(group: str, path: Sequence[str] | None = None) -> list[EntryPoint]:
    """(name, value, distribution, version) of every entry point of ``group``, no cache.

    Walks distributions directly (works on 3.9, gives the distribution of each entry point)
    and skips a distribution seen twice on the path, as importlib.metadata does.
    """
    from importlib import metadata

    found: list[EntryPoint] = []
    seen: set[str] = set()
    dists = metadata.distributions() if path is None else metadata.distributions(path=list(path))
    for dist in dists:
        dist_name = dist.metadata["Name"] or "?"
        key = dist_name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for ep in dist.entry_points:
            if ep.group == group:
                found.append((ep.name, ep.value, dist_name, dist.version))
    return found


def cache_disabled(environ: Mapping[str, str]) -> bool:
    return (environ.get(CACHE_ENV) or "").strip().lower() in ("0", "no", "false", "off")


def cache_file(environ: Mapping[str, str]) -> str:
    """Where this interpreter's cache file is (it may not exist)."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".cache")
    tag = _fnv1a(f"{sys.executable}\0{sys.prefix}".encode("utf-8", "surrogateescape"))
    return os.path.join(base, "scr", f"entry-points-{tag:08x}.marshal")


def _fnv1a(data: bytes) -> int:
    """32-bit FNV-1a (deterministic across processes, unlike hash(); no zlib import)."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def cache_key(group: str, path: Sequence[str]) -> tuple:
    """What the cached entry points depend on (see the module docstring)."""
    entries: list[Any] = [group, sys.version]
    for entry in path:
        where = os.path.abspath(entry or ".")
        st = _stat(where)
        item: list[Any] = [where, st]
        if st is not None:
            try:
                names = [n for n in os.listdir(where) if n.endswith(_DIST_SUFFIXES)]
            except OSError:  # a file (zip) or an unreadable directory: its stat is the key
                names = []
            names.sort()
            for name in names:
                dist_dir = os.path.join(where, name)
                item.append((name, _stat(dist_dir),
                             _stat(os.path.join(dist_dir, "entry_points.txt"))))
        entries.append(tuple(item))
    return tuple(entries)


def _load(file: str) -> list[tuple[tuple, list]]:
    """The (key, entry points) pairs of the file; [] when missing or unreadable."""
    try:
        with open(file, "rb") as fh:
            fmt, pairs = marshal.loads(fh.read())
        if fmt != FORMAT or not isinstance(pairs, list):
            return []
        return [(k, eps) for k, eps in pairs]
    except Exception:  # missing, truncated, corrupt, foreign: rescan
        return []


def _lookup(pairs: list[tuple[tuple, list]], key: tuple) -> list[EntryPoint] | None:
    for stored_key, eps in pairs:
        if stored_key == key:
            try:
                out = [tuple(ep) for ep in eps]
            except TypeError:
                return None
            if not all(len(ep) == 4 and all(isinstance(s, str) for s in ep) for ep in out):
                return None
            return out  # type: ignore[return-value]
    return None


def _write(file: str, key: tuple, eps: Iterable[EntryPoint],
           pairs: list[tuple[tuple, list]]) -> None:
    tmp = f"{file}.{os.getpid()}.tmp"
    keep = [(key, [tuple(ep) for ep in eps])]
    keep += [(k, e) for k, e in pairs if k != key][:MAX_ENTRIES - 1]
    try:
        os.makedirs(os.path.dirname(file), mode=0o700, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(marshal.dumps((FORMAT, keep)))
        os.replace(tmp, file)
    except Exception:  # a read-only or full home must not fail a command
        try:
            os.unlink(tmp)
        except OSError:
            pass


def entry_points(
    group: str,
    environ: Mapping[str, str] | None = None,
    path: Optional[Sequence[str]] = None,
) -> List[EntryPoint]:
    """The entry points of ``group``: from the cache when its key matches, else scanned
    (and the cache rewritten). ``path`` defaults to ``sys.path``."""
    env = os.environ if environ is None else environ
    if cache_disabled(env):
        return scan(group, path)
    search = list(sys.path if path is None else path)
    key = cache_key(group, search)
    file = cache_file(env)
    pairs = _load(file)
    cached = _lookup(pairs, key)
    if cached is not None:
        return cached
    found = scan(group, search)
    _write(file, key, found, pairs)
    return found
