"""Where SCR keeps its control files. Layout from SCR ``develop`` (see kvtree.md §5).

Public API (each returns a :class:`pathlib.Path`):

- ``scr_dir(prefix)``: ``<prefix>/.scr``
- ``halt_path(prefix)``: ``<prefix>/.scr/halt.scr``
- ``flush_path(prefix)``: ``<prefix>/.scr/flush.scr``
- ``nodes_path(prefix)``: ``<prefix>/.scr/nodes.scr``
- ``index_path(prefix)``: ``<prefix>/.scr/index.scr``
- ``log_path(prefix)``: ``<prefix>/.scr/log``
- ``dataset_dir(prefix, dataset_id)``: ``<prefix>/.scr/scr.dataset.<id>``
- ``summary_path(prefix, dataset_id)``: ``<dataset dir>/summary.scr``
- ``rank2file_path(prefix, dataset_id)``: ``<dataset dir>/rank2file`` (parts add ``.0.<writer>``)
- ``filemap_path(cache_dataset_dir, rank)``: ``<cache dataset dir>/.scr/filemap_<rank>``
- ``cindex_path(cntl_dir)``: ``<control dir>/cindex.scrinfo``

``ensure_scr_dir(prefix, source)`` is the one rule for the prefix of the commands that write
into it (``scr run``, ``scr prerun``, ``scr halt``); see its docstring.

``halt_file(prefix)`` is ``halt_path`` as a ``str``: ``scr_should_exit`` reads the halt file
without importing :mod:`pathlib` (start-up time); the other functions import it on first call.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "cindex_path",
    "dataset_dir",
    "ensure_scr_dir",
    "filemap_path",
    "flush_path",
    "halt_file",
    "halt_path",
    "index_path",
    "log_path",
    "nodes_path",
    "path_str",
    "rank2file_path",
    "scr_dir",
    "summary_path",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Size limit of the small control files (halt.scr, nodes.scr: a few fields): a valid 30 MB
#: halt file cost scr_should_exit 650 MB to decode. Here, not in kvtree, so that reading the
#: halt file needs no import of kvtree when there is none.
SMALL_FILE_MAX = 1 << 20

SCR_DIR_NAME = ".scr"
HALT_FILE_NAME = "halt.scr"


def scr_dir(prefix: PathLike) -> Path:
    from pathlib import Path

    return Path(prefix) / SCR_DIR_NAME


def halt_path(prefix: PathLike) -> Path:
    return scr_dir(prefix) / HALT_FILE_NAME


def halt_file(prefix: PathLike) -> str:
    """``str(halt_path(prefix))``, without pathlib."""
    return path_str(os.path.join(os.fspath(prefix), SCR_DIR_NAME, HALT_FILE_NAME))


def path_str(path: PathLike) -> str:
    """``str(pathlib.Path(path))`` (pathlib's normal form of a POSIX path), without pathlib."""
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"expected str or os.PathLike[str], not {type(text).__name__}")
    if text.startswith("//") and not text.startswith("///"):
        head = "//"  # POSIX leaves a leading double slash to the implementation, as pathlib
    elif text.startswith("/"):
        head = "/"
    else:
        head = ""
    parts = [p for p in text.split("/") if p not in ("", ".")]
    return (head + "/".join(parts)) or "."


def flush_path(prefix: PathLike) -> Path:
    return scr_dir(prefix) / "flush.scr"


def nodes_path(prefix: PathLike) -> Path:
    return scr_dir(prefix) / "nodes.scr"


def index_path(prefix: PathLike) -> Path:
    return scr_dir(prefix) / "index.scr"


def log_path(prefix: PathLike) -> Path:
    return scr_dir(prefix) / "log"


def dataset_dir(prefix: PathLike, dataset_id: int) -> Path:
    return scr_dir(prefix) / f"scr.dataset.{int(dataset_id)}"


def summary_path(prefix: PathLike, dataset_id: int) -> Path:
    return dataset_dir(prefix, dataset_id) / "summary.scr"


def rank2file_path(prefix: PathLike, dataset_id: int) -> Path:
    return dataset_dir(prefix, dataset_id) / "rank2file"


def filemap_path(cache_dataset_dir: PathLike, rank: int) -> Path:
    from pathlib import Path

    return Path(cache_dataset_dir) / SCR_DIR_NAME / f"filemap_{int(rank)}"


def cindex_path(cntl_dir: PathLike) -> Path:
    from pathlib import Path

    return Path(cntl_dir) / "cindex.scrinfo"


def ensure_scr_dir(prefix: str, source: str = "SCR_PREFIX", create_prefix: bool = True) -> str:
    """``<prefix>/.scr``, made if missing, and checked to be a directory this process can
    write in; returns its path.

    The rule, the same for run, prerun and halt: what starts a job (``scr run``,
    ``scr prerun``: *create_prefix*) makes a missing prefix with its parents, as SCR's
    scripts do; what acts on a job (``scr halt``) needs the prefix to exist, so that a
    mistyped directory is an error rather than a new, empty prefix nobody reads. Anything
    else (no prefix, the prefix or its ``.scr`` is a file, a parent cannot be searched, no
    write permission) is a ConfigError (exit 3) naming the directory, the reason, and where
    the prefix came from (*source*).
    """
    from ..errors import ConfigError

    where = os.path.join(prefix, SCR_DIR_NAME)

    def bad(why: str) -> ConfigError:
        return ConfigError(f"SCR prefix {prefix} (from {source}) cannot be used: {why}")

    if os.path.exists(prefix) and not os.path.isdir(prefix):
        raise bad("it is not a directory")
    if not create_prefix and not os.path.exists(prefix):
        raise bad("it does not exist (scr run makes it; scr halt acts on an existing one)")
    try:
        os.makedirs(where, exist_ok=True)
    except FileExistsError:
        raise bad(f"{where} exists and is not a directory") from None
    except OSError as exc:
        raise bad(f"cannot create {exc.filename or where}: {exc.strerror or exc}") from None
    if not os.access(where, os.W_OK | os.X_OK):
        raise bad(f"no permission to write in {where}")
    return where
