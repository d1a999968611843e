"""The persistent jobs database of function jobs (SQLite).

One row per function job: id, name, hash (of function + arguments + input files), system,
status, remote (batch) id and status, staging and remote run directories, created/updated
times, and a claim ("lock") that one process holds while it stages or submits the job.

Safe under concurrent processes: WAL journal, a busy timeout, every read-modify-write in a
``BEGIN IMMEDIATE`` transaction, and a partial unique index that allows only one *live* job
per (name, hash) -- two scripts creating the same job at once get the same row. SQL is
always parameterised; filters by regular expression use a ``REGEXP`` function registered on
the connection (``re.search`` semantics: anchor with ``^...$`` for a full match).

Statuses::

    created     staged locally, not submitted yet
    submitted   the batch system has it (pending)
    running     started
    succeeded   finished; its result is in the staging directory
    failed      finished; the function raised (the exception is in the staging directory)
    died        the batch job ended without either (killed, node failure, time limit...)
    cancelled   cancelled by the user
    processed   results were used (mark_processed); a new identical job may be created
    cleaned     the staging files were removed
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from typing import Any, Iterable, Iterator, Sequence

from ..errors import EXIT_DATA, EXIT_FAILURE, ScrError, UsageError

STATUSES = ("created", "submitted", "running", "succeeded", "failed", "died", "cancelled",
            "processed", "cleaned")
#: statuses whose job can still give results: re-attached to instead of resubmitting
LIVE = ("created", "submitted", "running", "succeeded", "failed")
GROUPS = {
    "ongoing": ("created", "submitted", "running"),
    "live": LIVE,
    "done": ("succeeded", "failed", "died", "cancelled"),
    "finished": ("succeeded", "failed", "died", "cancelled", "processed", "cleaned"),
}
COLUMNS = ("id", "name", "hash", "system", "status", "remote_id", "remote_status", "message",
           "stage_dir", "remote_dir", "created", "updated", "lock_owner", "lock_time")
_UPDATABLE = set(COLUMNS) - {"id", "name", "hash", "created"}
SCHEMA_VERSION = 1
BUSY_TIMEOUT_SECONDS = 60.0
LOCK_STALE_SECONDS = 6 * 3600  # a claim by a process on another host is trusted this long

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        system TEXT,
        status TEXT NOT NULL,
        remote_id TEXT,
        remote_status TEXT,
        message TEXT,
        stage_dir TEXT,
        remote_dir TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        lock_owner TEXT,
        lock_time REAL
    )""",
    # one live job per (name, hash): concurrent creators of the same job share it
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_live_hash ON jobs(name, hash) WHERE status IN "
    "('created', 'submitted', 'running', 'succeeded', 'failed')",
    "CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
)


class JobsDBError(ScrError):
    """The jobs database cannot be opened or is not ours."""

    exit_code = EXIT_DATA


class JobLockedError(JobsDBError):
    """Another live process holds the claim on a job (``scr jobs unlock`` clears dead ones)."""

    exit_code = EXIT_FAILURE


def _regexp(pattern: str, value: Any) -> bool:
    return value is not None and re.search(pattern, str(value)) is not None


def owner_id() -> str:
    """Who holds a claim: ``host:pid:start-ticks`` (the start time defeats pid reuse)."""
    start = ""
    try:
        with open(f"/proc/{os.getpid()}/stat") as fh:
            start = fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        pass
    return f"{socket.gethostname()}:{os.getpid()}:{start}"


def owner_alive(owner: str | None, lock_time: float | None = None,
                stale: float = LOCK_STALE_SECONDS) -> bool:
    """Is the process that holds a claim still there? Exact on this host; a claim from
    another host is trusted until it is ``stale`` seconds old."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname():
        return lock_time is not None and time.time() - lock_time < stale
    try:
        pid = int(pid_text)
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (ValueError, OSError, IndexError):
        return False
    if fields[0] in ("Z", "X"):
        return False
    return not start or fields[19] == start


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise UsageError(f"unknown job status '{status}'; known: {', '.join(STATUSES)}")


class JobsDB:
    """The database at ``path`` (created on first use)."""

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        self.path = os.path.abspath(path)
        self.busy_timeout = busy_timeout
        self._conns: dict[tuple[int, int], sqlite3.Connection] = {}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._init()

    # -- connections --------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # one connection per process and thread, reused (opening one per query is slow)
        key = (os.getpid(), threading.get_ident())
        cached = self._conns.get(key)
        if cached is not None:
            return cached
        conn = self._open()
        self._conns[key] = conn
        return conn

    def close(self) -> None:
        for key, conn in list(self._conns.items()):
            if key[0] == os.getpid():
                conn.close()
            del self._conns[key]

    def _open(self) -> sqlite3.Connection:
        # autocommit mode: transactions are explicit (BEGIN IMMEDIATE) where they matter
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.create_function("REGEXP", 2, _regexp, deterministic=True)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, much faster
        return conn

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise JobsDBError(f"cannot open the jobs database {self.path}: {exc}") from exc
        try:
            yield conn
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            raise JobsDBError(f"jobs database {self.path}: {exc} (if it stays locked, "
                              "'scr jobs unlock --rebuild')") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front, so read-then-write cannot interleave."""
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:  # an error, or a failed COMMIT: leave it clean
                    conn.execute("ROLLBACK")

    def _init(self) -> None:
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                with self._conn() as conn:
                    # WAL: readers never block the writer; stored in the file, set once
                    conn.execute("PRAGMA journal_mode = WAL")
                with self._transaction() as conn:
                    for stmt in _SCHEMA:
                        conn.execute(stmt)
                    row = conn.execute("SELECT value FROM meta WHERE key = ?",
                                       ("schema",)).fetchone()
                    if row is None:
                        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)",
                                     ("schema", str(SCHEMA_VERSION)))
                    elif int(row["value"]) > SCHEMA_VERSION:
                        raise JobsDBError(f"{self.path}: written by a newer scr (schema "
                                          f"{row['value']} > {SCHEMA_VERSION})")
                return
            except JobsDBError as exc:
                # first use by several processes at once: the journal-mode switch can
                # fail with "locked" before the busy handler applies; retry
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # -- rows ---------------------------------------------------------------------------------
    @staticmethod
    def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
        return dict(row) if row is not None else None

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._conn() as conn:
            return self._row(conn.execute("SELECT * FROM jobs WHERE id = ?",
                                          (job_id,)).fetchone())

    def find_live(self, name: str, hash_: str) -> dict[str, Any] | None:
        with self._conn() as conn:
            return self._row(conn.execute(
                "SELECT * FROM jobs WHERE name = ? AND hash = ? AND status IN "
                "(?, ?, ?, ?, ?)", (name, hash_, *LIVE)).fetchone())

    def create_or_attach(self, name: str, hash_: str, stage_root: str,
                         system: str | None = None) -> tuple[dict[str, Any], bool]:
        """The live job of (name, hash), or a new ``created`` one claimed by this process.

        Returns ``(row, new)``; a new job is claimed by this process, which must stage it
        and then release the claim. The check and the insert are one transaction, so of
        several processes creating the same job at once exactly one creates it.
        """
        me = owner_id()
        now = time.time()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT * FROM jobs WHERE name = ? AND hash = ? AND status IN "
                "(?, ?, ?, ?, ?)", (name, hash_, *LIVE)).fetchone()
            if row is not None:
                return dict(row), False
            job_id = f"{name}_{hash_[:16]}_{uuid.uuid4().hex[:8]}"
            stage_dir = os.path.join(os.path.abspath(stage_root), job_id)
            conn.execute(
                "INSERT INTO jobs (id, name, hash, system, status, stage_dir, created, "
                "updated, lock_owner, lock_time) VALUES (?, ?, ?, ?, 'created', ?, ?, ?, ?, ?)",
                (job_id, name, hash_, system, stage_dir, now, now, me, now))
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return dict(row), True

    def add(self, name: str, hash_: str, stage_dir: str, status: str = "created",
            system: str | None = None) -> dict[str, Any]:
        """Insert a job unconditionally (``IntegrityError`` if a live twin exists)."""
        _check_status(status)
        now = time.time()
        job_id = f"{name}_{hash_[:16]}_{uuid.uuid4().hex[:8]}"
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO jobs (id, name, hash, system, status, stage_dir, created, "
                "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, name, hash_, system, status, stage_dir, now, now))
        return self.get(job_id) or {}

    def update(self, job_id: str, expect_status: Sequence[str] | None = None,
               **fields: Any) -> bool:
        """Set ``fields`` of a job; with ``expect_status`` only if its status is one of them
        (compare-and-set). Returns whether the row was changed."""
        bad = sorted(set(fields) - _UPDATABLE)
        if bad:
            raise UsageError(f"cannot update job column(s) {', '.join(bad)}")
        if "status" in fields:
            _check_status(fields["status"])
        fields["updated"] = time.time()
        names = sorted(fields)
        sets = ", ".join(f"{n} = ?" for n in names)  # names come from the whitelist above
        params: list[Any] = [fields[n] for n in names]
        sql = f"UPDATE jobs SET {sets} WHERE id = ?"
        params.append(job_id)
        if expect_status:
            sql += f" AND status IN ({', '.join('?' for _ in expect_status)})"
            params.extend(expect_status)
        with self._transaction() as conn:
            return conn.execute(sql, params).rowcount > 0

    def claim(self, job_id: str, statuses: Sequence[str] = ("created",)) -> bool:
        """Take the claim on a job in one of ``statuses`` if nobody live holds it."""
        me = owner_id()
        now = time.time()
        with self._transaction() as conn:
            row = conn.execute("SELECT status, lock_owner, lock_time FROM jobs WHERE id = ?",
                               (job_id,)).fetchone()
            if row is None or row["status"] not in statuses:
                return False
            if row["lock_owner"] not in (None, me) and owner_alive(row["lock_owner"],
                                                                  row["lock_time"]):
                return False
            conn.execute("UPDATE jobs SET lock_owner = ?, lock_time = ? WHERE id = ?",
                         (me, now, job_id))
            return True

    def release(self, job_id: str) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE jobs SET lock_owner = NULL, lock_time = NULL WHERE id = ? "
                         "AND lock_owner = ?", (job_id, owner_id()))

    def jobs(
        self,
        name: str | None = None,
        status: str | Iterable[str] | None = None,
        system: str | None = None,
        id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Jobs whose name/system/id match the regular expressions given and whose status
        is one of ``status`` (names of statuses or of :data:`GROUPS`, or one regex)."""
        where: list[str] = []
        params: list[Any] = []
        for column, pattern in (("name", name), ("system", system), ("id", id)):
            if pattern is not None:
                _compile(pattern, column)
                where.append(f"{column} REGEXP ?")
                params.append(pattern)
        if status is not None:
            wanted = _expand_status(status)
            where.append(f"status IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created, id"
        with self._conn() as conn:
            return [dict(r) for r in conn.execute(sql, params).fetchall()]

    def remove(self, job_id: str) -> bool:
        with self._transaction() as conn:
            return conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0

    # -- maintenance ----------------------------------------------------------------------------
    def unlock(self, job_ids: Sequence[str] | None = None, force: bool = False) -> list[str]:
        """Clear the claims of dead processes (all claims with ``force``), on the jobs given
        or all. Returns the ids cleared."""
        cleared = []
        with self._transaction() as conn:
            rows = conn.execute("SELECT id, lock_owner, lock_time FROM jobs WHERE "
                                "lock_owner IS NOT NULL").fetchall()
            for row in rows:
                if job_ids is not None and row["id"] not in job_ids:
                    continue
                if force or not owner_alive(row["lock_owner"], row["lock_time"]):
                    conn.execute("UPDATE jobs SET lock_owner = NULL, lock_time = NULL "
                                 "WHERE id = ?", (row["id"],))
                    cleared.append(row["id"])
        return cleared

    def rebuild(self) -> str:
        """Copy the database into a fresh file and swap it in (what to do when a crashed
        process or a network file system left the file locked for good). The old file is
        kept as ``<db>.old``; returns its path. Other processes must not be using it."""
        self.close()
        tmp = self.path + ".rebuild"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        src = sqlite3.connect(self.path, timeout=self.busy_timeout)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
            finally:
                dst.close()
        except sqlite3.Error as exc:
            raise JobsDBError(f"cannot copy {self.path}: {exc}") from exc
        finally:
            src.close()
        old = self.path + ".old"
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path + suffix, old + suffix)
        os.replace(self.path, old)
        os.replace(tmp, self.path)
        self._init()
        return old


def _compile(pattern: str, what: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"invalid {what} regular expression {pattern!r}: {exc}") from exc


def _expand_status(status: str | Iterable[str]) -> list[str]:
    items = [status] if isinstance(status, str) else list(status)
    out: list[str] = []
    for item in items:
        if item in GROUPS:
            out.extend(GROUPS[item])
        elif item in STATUSES:
            out.append(item)
        else:
            _compile(item, "status")
            matched = [s for s in STATUSES if re.fullmatch(item, s)]
            if not matched:
                raise UsageError(f"status '{item}' matches none of {', '.join(STATUSES)} "
                                 f"(groups: {', '.join(GROUPS)})")
            out.extend(matched)
    return list(dict.fromkeys(out))
