"""Python functions run as batch jobs, in the spirit of ExPyRe::

    job = FunctionJob("fit", fit_model, args=(data,), kwargs={"steps": 100},
                      input_files=["params.yaml"], hash_ignore=["verbose"])
    job.start({"max_time": "1h", "nodes": 1, "partitions": "batch.*"}, system="cluster")
    result = job.get_results(timeout=3600)     # the value, or the remote exception raised
    job.mark_processed()

The constructor pickles the function and its arguments into a staging directory and records
the job in the jobs database (:mod:`.jobsdb`) under a hash of the function (module, qualified
name, source), the arguments (without those named in ``hash_ignore``: indices of ``args``,
names of ``kwargs``) and the input files (names and contents). Constructing the same job
again -- the script run again after it, or the machine, died -- *re-attaches* to the
recorded job instead of creating a new one: ``start`` is then a no-op and ``get_results``
picks up where the first run left off. ``mark_processed`` ends that: the next identical job
is a new one.

The job runs ``python -m scr_core.funcjobs.runner`` (the same interpreter as the caller on
this host, ``sys.executable``; the system's ``python`` elsewhere), which pickles back the
result, or the exception with its traceback text; ``get_results`` re-raises that exception
here, chained from a :class:`RemoteTraceback` showing where it happened.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import os
import pickle
import re
import shutil
import sys
import time
from typing import Any, Iterable, Mapping, Sequence

from ..errors import ConfigError, ScrError, UsageError
from ..interfaces import JobState, JobStatus, ResourceManager, SubmitRequest
from .config import JobsConfig, load_config
from .jobsdb import GROUPS, JobLockedError, JobsDB
from .resources import Placement, Resources, place
from .runner import (
    DONE,
    ERROR,
    EXCEPTION,
    JOB_OUTPUT,
    JOB_SCRIPT,
    META,
    RESULT,
    STARTED,
    STDERR,
    STDOUT,
    TASK,
)
from .systems import RMSystem, System, make_system

SYSTEM_ENV = "SCR_JOBS_SYSTEM"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CLAIM_WAIT_SECONDS = 120.0
UNKNOWN_POLLS = 3  # consecutive "unknown" answers before a job counts as gone
DEATH_GRACE_SECONDS = 5.0


class FunctionJobError(ScrError):
    """A function job cannot do what was asked."""


class JobTimeoutError(FunctionJobError, TimeoutError):
    """``get_results`` gave up waiting (the job goes on; call it again later)."""


class JobDiedError(FunctionJobError):
    """The batch job ended without results (killed, time limit, node failure...)."""


class RemoteFunctionError(FunctionJobError):
    """The function raised remotely and the exception could not be brought back as itself;
    the message holds its traceback text."""


class RemoteTraceback(Exception):
    """Shown as the cause of a re-raised remote exception: where it happened, remotely."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\"\"\"\n{self.text.rstrip()}\n\"\"\""


# --------------------------------------------------------------------------- hashing


def function_identity(function: Any) -> tuple[str, str, str]:
    """(module, qualified name, source) of a function; bytecode when there is no source."""
    module = getattr(function, "__module__", None) or ""
    qualname = getattr(function, "__qualname__", None) or getattr(function, "__name__", "")
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        code = getattr(function, "__code__", None)
        source = (code.co_code.hex() + repr(code.co_consts)) if code is not None else ""
    return module, qualname or repr(type(function)), source


def job_hash(
    name: str,
    function: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    input_files: Iterable[str | os.PathLike] = (),
    hash_ignore: Iterable[int | str] = (),
    cwd: str | None = None,
) -> str:
    """The identity of a job (hex SHA-256): what makes two jobs "the same"."""
    ignore = list(hash_ignore)
    for item in ignore:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise UsageError(f"hash_ignore items are argument indices or keyword names, "
                             f"not {item!r}")
    h = hashlib.sha256(b"scr-funcjob-1\0")
    h.update(name.encode() + b"\0")
    target = function
    while isinstance(target, functools.partial):
        h.update(_pickle(("partial", target.args, sorted(target.keywords.items())), "partial"))
        target = target.func
    for part in function_identity(target):
        h.update(part.encode() + b"\0")
    owner = getattr(target, "__self__", None)
    if owner is not None and not inspect.ismodule(owner):
        # a bound method: the object it is bound to is an argument too
        h.update(b"self\0" + _pickle(owner, "the method's object"))
    for i, arg in enumerate(args):
        if i not in ignore:
            h.update(b"a%d\0" % i + _pickle(arg, f"argument {i}"))
    for key in sorted(kwargs or {}):
        if key not in ignore:
            h.update(b"k" + key.encode() + b"\0" + _pickle((kwargs or {})[key], key))
    base = cwd or os.getcwd()
    for given in input_files:
        h.update(b"f" + os.fspath(given).encode() + b"\0")
        path = os.path.join(base, os.fspath(given))
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for fname in sorted(files):
                    full = os.path.join(root, fname)
                    h.update(os.path.relpath(full, path).encode() + b"\0")
                    h.update(_file_digest(full))
        elif os.path.exists(path):
            h.update(_file_digest(path))
        else:
            raise UsageError(f"input file {given} does not exist")
    return h.hexdigest()


def _pickle(obj: Any, what: str) -> bytes:
    try:
        return pickle.dumps(obj, protocol=4)
    except Exception as exc:
        raise UsageError(f"{what} cannot be pickled: {exc}") from exc


def _file_digest(path: str) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def _module_root(module_name: str) -> str | None:
    """The sys.path entry a module was imported from (so the job can import it too)."""
    mod = sys.modules.get(module_name)
    path = getattr(mod, "__file__", None)
    if not path:
        return None
    root = os.path.dirname(os.path.abspath(path))
    if os.path.basename(path).startswith("__init__."):
        root = os.path.dirname(root)
    for _ in range(module_name.count(".")):
        root = os.path.dirname(root)
    return root


# --------------------------------------------------------------------------- the job


class FunctionJob:
    """A function call run as a batch job (see the module docstring)."""

    #: seconds a batch job must stay ended without results before it counts as dead
    death_grace: float = DEATH_GRACE_SECONDS

    def __init__(
        self,
        name: str,
        function: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        input_files: Iterable[str | os.PathLike] = (),
        hash_ignore: Iterable[int | str] = (),
        python_path: Iterable[str] = (),
        config: JobsConfig | None = None,
        db: JobsDB | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not _NAME_RE.match(name or ""):
            raise UsageError(f"job name {name!r}: letters, digits, '.', '_' and '-' only "
                             "(at most 64), starting with a letter or digit")
        if not callable(function):
            raise UsageError(f"{function!r} is not callable")
        self.environ = dict(os.environ if environ is None else environ)
        self.config = config or load_config(self.environ)
        self.db = db or JobsDB(self.config.db_path)
        self.name = name
        self._system: System | None = None
        args = tuple(args)
        kwargs = dict(kwargs or {})
        inputs = [os.fspath(f) for f in input_files]
        self.hash = job_hash(name, function, args, kwargs, inputs, hash_ignore)
        row, new = self.db.create_or_attach(name, self.hash, self.config.stage_root)
        self._load(row)
        self.recreated = not new  # attached to a job recorded before
        if not new:
            # its creator may have died while staging it: then stage it again (identical)
            if self.status == "created" and not os.path.exists(self._file(META)) and \
                    self.db.claim(self.id):
                if os.path.exists(self._file(META)):
                    self.db.release(self.id)  # it finished meanwhile
                    return
            else:
                return
        try:
            self._stage(function, args, kwargs, inputs, list(python_path))
        except BaseException:
            # nothing half-made stays behind: a later identical job starts afresh
            self.db.remove(self.id)
            shutil.rmtree(self.stage_dir, ignore_errors=True)
            raise
        self.db.release(self.id)

    # -- state --------------------------------------------------------------------------------
    def _load(self, row: Mapping[str, Any]) -> None:
        self.id: str = row["id"]
        self.name = row["name"]
        self.hash = row["hash"]
        self.status: str = row["status"]
        self.system_name: str | None = row["system"]
        self.remote_id: str | None = row["remote_id"]
        self.remote_status: str | None = row["remote_status"]
        self.message: str | None = row["message"]
        self.stage_dir: str = row["stage_dir"]
        self.remote_dir: str | None = row["remote_dir"]

    def refresh(self) -> None:
        row = self.db.get(self.id)
        if row is None:
            raise FunctionJobError(f"job {self.id} is no longer in {self.db.path}")
        self._load(row)

    @classmethod
    def from_db(cls, row: Mapping[str, Any], config: JobsConfig | None = None,
                db: JobsDB | None = None, environ: Mapping[str, str] | None = None
                ) -> FunctionJob:
        """A handle on a recorded job (to poll, cancel or clean it) without its function."""
        self = cls.__new__(cls)
        self.environ = dict(os.environ if environ is None else environ)
        self.config = config or load_config(self.environ)
        self.db = db or JobsDB(self.config.db_path)
        self._system = None
        self.recreated = True
        self._load(row)
        return self

    def __repr__(self) -> str:
        return f"<FunctionJob {self.id} {self.status} on {self.system_name or '-'}>"

    # -- staging ------------------------------------------------------------------------------
    def _stage(self, function: Any, args: tuple, kwargs: dict, inputs: list[str],
               python_path: list[str]) -> None:
        os.makedirs(self.stage_dir, exist_ok=True)
        for given in inputs:
            if os.path.isabs(given):
                dest = os.path.join(self.stage_dir, os.path.basename(given.rstrip("/")))
            else:
                if ".." in given.split(os.sep):
                    raise UsageError(f"input file {given}: '..' is not allowed in a relative "
                                     "path (give an absolute path)")
                dest = os.path.join(self.stage_dir, given)
            os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
            if os.path.isdir(given):
                shutil.copytree(given, dest, dirs_exist_ok=True)
            else:
                shutil.copy2(given, dest)
        module = getattr(function, "__module__", "")
        target = function
        while isinstance(target, functools.partial):
            target = target.func
            module = getattr(target, "__module__", module)
        meta: dict[str, Any] = {"name": self.name, "hash": self.hash,
                                "python_path": list(python_path)}
        if module == "__main__":
            main_file = getattr(sys.modules.get("__main__"), "__file__", None)
            if not main_file:
                raise UsageError(f"{getattr(target, '__qualname__', target)} is defined in an "
                                 "interactive session; put it in a module or a script file")
            meta["main_file"] = os.path.abspath(main_file)
            meta["python_path"].append(os.path.dirname(meta["main_file"]))
        else:
            root = _module_root(module)
            if root:
                meta["python_path"].append(root)
        task = _pickle((function, args, kwargs), "the function and its arguments")
        _write(os.path.join(self.stage_dir, TASK), task)
        _write(os.path.join(self.stage_dir, META), json.dumps(meta, indent=1).encode())

    def _file(self, name: str) -> str:
        return os.path.join(self.stage_dir, name)

    # -- systems ------------------------------------------------------------------------------
    def _resolve_system(self, system: System | ResourceManager | str | None) -> System:
        if isinstance(system, System):
            return system
        if isinstance(system, ResourceManager):
            return RMSystem(system.name, system)
        name = system or self.system_name or self.environ.get(SYSTEM_ENV) or "local"
        if self._system is not None and self._system.name == name:
            return self._system
        return make_system(name, self.config.system(name), self.environ)

    def system(self) -> System:
        if self._system is None:
            self._system = self._resolve_system(None)
        return self._system

    # -- lifecycle ----------------------------------------------------------------------------
    def start(
        self,
        resources: Resources | Mapping[str, Any],
        system: System | ResourceManager | str | None = None,
        header_extra: Sequence[str] = (),
    ) -> None:
        """Submit the job to ``system`` (a configured system's name, a :class:`System`, a
        resource manager; default ``$SCR_JOBS_SYSTEM`` or ``local``) on the partition that
        fits ``resources`` best. A re-attached job is not submitted again."""
        self.refresh()
        if self.status != "created":
            return
        deadline = time.monotonic() + CLAIM_WAIT_SECONDS
        while not self.db.claim(self.id):
            self.refresh()
            if self.status != "created":
                return  # another process submitted it meanwhile: we are attached
            if time.monotonic() > deadline:
                row = self.db.get(self.id) or {}
                raise JobLockedError(f"job {self.id} is held by {row.get('lock_owner')}; if "
                                     "that process is gone, 'scr jobs unlock'")
            time.sleep(0.2)
        try:
            self.refresh()
            if self.status != "created":
                return
            sys_ = self._resolve_system(system)
            placement = place(resources, sys_.partitions())
            _write(self._file(JOB_SCRIPT), sys_.job_script().encode(), mode=0o755)
            run_dir = sys_.stage_in(self.stage_dir, self.id)
            request = self._request(sys_, placement, run_dir, header_extra)
            remote_id = sys_.submit(request)
            self.db.update(self.id, status="submitted", system=sys_.name, remote_id=remote_id,
                           remote_dir=run_dir, remote_status=JobState.PENDING,
                           message=f"on {placement.partition}: {placement.nodes} node(s), "
                                   f"{placement.tasks} task(s)",
                           lock_owner=None, lock_time=None)
            self._system = sys_
        finally:
            self.db.release(self.id)
        self.refresh()

    def _request(self, sys_: System, placement: Placement, run_dir: str,
                 header_extra: Sequence[str]) -> SubmitRequest:
        keys = placement.template_keys(self.name)
        header = []
        for line in sys_.header:
            try:
                header.append(line.format(**keys))
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(f"system '{sys_.name}': header line {line!r}: {exc!r}; "
                                  f"keys: {', '.join(sorted(keys))}") from exc
        partition = None if placement.partition == "default" else placement.partition
        return SubmitRequest(
            command=["/bin/bash", f"{run_dir.rstrip('/')}/{JOB_SCRIPT}"],
            job_name=re.sub(r"[^A-Za-z0-9._-]", "_", self.name)[:64],
            nodes=placement.nodes, tasks=placement.tasks,
            time_limit=math.ceil(placement.time_limit), partition=partition,
            output=f"{run_dir.rstrip('/')}/{JOB_OUTPUT}", workdir=run_dir,
            fault_tolerant=sys_.fault_tolerant,
            header_lines=[*header, *header_extra])

    def _done(self) -> dict[str, Any] | None:
        try:
            with open(self._file(DONE)) as fh:
                return json.load(fh)
        except (FileNotFoundError, ValueError):
            return None

    def _finish(self, done: Mapping[str, Any]) -> Any:
        if done.get("ok"):
            try:
                with open(self._file(RESULT), "rb") as fh:
                    result = pickle.load(fh)
            except Exception as exc:
                raise FunctionJobError(f"job {self.id}: cannot load its result: {exc}") from exc
            if self.status != "succeeded":
                self.db.update(self.id, status="succeeded", message="")
                self.status = "succeeded"
            return result
        try:
            with open(self._file(ERROR), errors="replace") as fh:
                text = fh.read()
        except FileNotFoundError:
            text = "(no traceback recorded)"
        last = text.strip().splitlines()[-1] if text.strip() else "failed"
        if self.status != "failed":
            self.db.update(self.id, status="failed", message=last[:500])
            self.status = "failed"
        exc: Any = None
        try:
            with open(self._file(EXCEPTION), "rb") as fh:
                exc = pickle.load(fh)
        except Exception:
            exc = None
        if isinstance(exc, Exception):
            try:
                exc.remote_traceback = text  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            raise exc from RemoteTraceback(text)
        raise RemoteFunctionError(f"job {self.id}: the function raised remotely:\n{text}")

    def get_results(self, timeout: float | None = 3600, check_interval: float = 1.0,
                    system: System | ResourceManager | str | None = None) -> Any:
        """Wait for the job and return the function's value, or raise its exception.

        Raises :class:`JobTimeoutError` after ``timeout`` seconds (``None`` or <= 0: wait
        forever; the job is not cancelled), :class:`JobDiedError` when the batch job ended
        without results, :class:`FunctionJobError` when results are gone (processed or
        cleaned) or the job was never started."""
        if system is not None:
            self._system = self._resolve_system(system)
        self.refresh()
        if self.status in ("processed", "cleaned"):
            raise FunctionJobError(f"job {self.id} is {self.status}: its results are gone")
        if self.status == "created":
            raise FunctionJobError(f"job {self.id} was not started (call start first)")
        deadline = None if timeout is None or timeout <= 0 else time.monotonic() + timeout
        ended_since: float | None = None
        unknown = 0
        state = self.remote_status or ""
        while True:
            done = self._done()
            if done is not None:
                return self._finish(done)
            if self.status in ("died", "cancelled"):
                raise JobDiedError(f"job {self.id} {self.status}: {self.message or ''}".strip())
            if self.status in ("succeeded", "failed"):
                raise FunctionJobError(f"job {self.id} is {self.status} but its result files "
                                       f"are missing from {self.stage_dir}")
            sys_ = self.system()
            st = sync_jobs(self.db, sys_, [self.id]).get(self.id)
            self.refresh()
            if st is not None:
                state = st.state
                unknown = unknown + 1 if st.state == JobState.UNKNOWN else 0
                if st.state in JobState.FINAL or unknown >= UNKNOWN_POLLS:
                    sys_.stage_out(self.stage_dir, self.remote_dir or self.stage_dir)
                    done = self._done()
                    if done is not None:
                        return self._finish(done)
                    now = time.monotonic()
                    ended_since = now if ended_since is None else ended_since
                    # ended without results -- but file systems may lag the batch system,
                    # and Slurm requeues a batch job whose node failed (NODE_FAIL, then
                    # PENDING again): only an end that lasts is a death
                    if st.state == JobState.CANCELLED or \
                            now - ended_since >= self.death_grace:
                        self._died(st)
                else:
                    ended_since = None
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeoutError(f"job {self.id} ({self.name}) not done after "
                                      f"{timeout:g}s (batch job {self.remote_id} is "
                                      f"{state or 'unknown'})")
            wait = check_interval if deadline is None else \
                max(0.0, min(check_interval, deadline - time.monotonic()))
            time.sleep(wait if ended_since is None else min(wait, 0.5))

    def _died(self, st: JobStatus) -> None:
        status = "cancelled" if st.state == JobState.CANCELLED else "died"
        tail = ""
        try:
            with open(self._file(JOB_OUTPUT), errors="replace") as fh:
                lines = fh.read().strip().splitlines()[-5:]
            if lines:
                tail = "; job output ends: " + " | ".join(lines)
        except FileNotFoundError:
            pass
        msg = (f"batch job {self.remote_id} ended {st.state}"
               + (f" ({st.message})" if st.message else "") + " without results" + tail)
        self.db.update(self.id, status=status, message=msg[:2000])
        self.status = status
        raise JobDiedError(f"job {self.id}: {msg}")

    def mark_processed(self) -> None:
        """The results were used: they need not be kept, and the next identical job is new."""
        self.refresh()
        if self.status in GROUPS["ongoing"] and self.status != "created":
            raise FunctionJobError(f"job {self.id} is {self.status}; cancel it first")
        self.db.update(self.id, status="processed")
        self.status = "processed"

    def cancel(self) -> None:
        """Cancel the batch job (if it runs or waits) and record the job as cancelled."""
        self.refresh()
        if self.status not in GROUPS["ongoing"]:
            return
        if self.remote_id:
            self.system().cancel(self.remote_id)
        self.db.update(self.id, status="cancelled", message="cancelled by user")
        self.status = "cancelled"

    def clean(self, wipe: bool = False) -> None:
        """Remove the run directory on a remote system and the big files here (the task and
        result pickles); ``wipe`` removes the whole staging directory."""
        self.refresh()
        if self.status in GROUPS["ongoing"] and self.status != "created":
            raise FunctionJobError(f"job {self.id} is {self.status}; cancel it first")
        if self.remote_dir and self.remote_dir != self.stage_dir and self.system_name:
            self.system().clean(self.remote_dir)
        if wipe:
            shutil.rmtree(self.stage_dir, ignore_errors=True)
        else:
            for name in (TASK, RESULT):
                try:
                    os.unlink(self._file(name))
                except FileNotFoundError:
                    pass
        self.db.update(self.id, status="cleaned")
        self.status = "cleaned"

    # -- outputs ------------------------------------------------------------------------------
    def _read(self, name: str) -> str:
        try:
            with open(self._file(name), errors="replace") as fh:
                return fh.read()
        except FileNotFoundError:
            return ""

    @property
    def stdout(self) -> str:
        """What the function printed (once the job has ended)."""
        return self._read(STDOUT)

    @property
    def stderr(self) -> str:
        return self._read(STDERR)

    @property
    def started(self) -> bool:
        return os.path.exists(self._file(STARTED))


def sync_jobs(db: JobsDB, system: System, job_ids: Iterable[str] = ()) -> dict[str, JobStatus]:
    """Update the batch state of every ongoing job of ``system`` (and of ``job_ids``) with
    ONE status query; returns {job id: status}. Only the DB's remote state (and submitted ->
    running) is updated here: results are judged from the files (see get_results)."""
    rows = {r["id"]: r for r in db.jobs(status=["submitted", "running"])
            if r["system"] == system.name and r["remote_id"]}
    for jid in job_ids:
        if jid not in rows:
            row = db.get(jid)
            if row and row["remote_id"]:
                rows[jid] = row
    if not rows:
        return {}
    remote = system.status([r["remote_id"] for r in rows.values()])
    out: dict[str, JobStatus] = {}
    for jid, row in rows.items():
        st = remote.get(row["remote_id"])
        if st is None:
            continue
        out[jid] = st
        changes: dict[str, Any] = {}
        if st.state != row["remote_status"]:
            changes["remote_status"] = st.state
        if st.state == JobState.RUNNING and row["status"] == "submitted":
            changes["status"] = "running"
        if changes:
            db.update(jid, expect_status=("submitted", "running"), **changes)
    return out


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
