"""The body of a function job: ``python -m scr_core.funcjobs.runner RUN_DIR``.

Reads ``_scr_task.pkl`` (function, args, kwargs) and ``_scr_task.json`` (extra
``sys.path`` entries; the script file when the function lives in ``__main__``), runs the
function with stdout/stderr going to ``_scr_stdout``/``_scr_stderr`` (file descriptors, so
child processes are captured too), and leaves, each written atomically:

``_scr_started``    JSON: host, pid, time (written first)
``_scr_result.pkl`` the pickled return value, on success
``_scr_exception.pkl`` / ``_scr_error.txt``  the pickled exception (when it pickles) and its
                    traceback text, on failure
``_scr_done``       JSON ``{"ok": bool, ...}``, written last: results are complete

The exit code is 0 on success and 1 when the function raised.
"""

from __future__ import annotations

import json
import os
import pickle
import runpy
import socket
import sys
import time
import traceback
import types
from typing import Any, Sequence

TASK = "_scr_task.pkl"
META = "_scr_task.json"
STARTED = "_scr_started"
RESULT = "_scr_result.pkl"
EXCEPTION = "_scr_exception.pkl"
ERROR = "_scr_error.txt"
DONE = "_scr_done"
STDOUT = "_scr_stdout"
STDERR = "_scr_stderr"
JOB_SCRIPT = "_scr_job.sh"
JOB_OUTPUT = "_scr_job.out"
#: files the job writes (fetched back from a remote system)
OUTPUTS = (STARTED, RESULT, EXCEPTION, ERROR, DONE, STDOUT, STDERR, JOB_OUTPUT)


def _atomic_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_json(path: str, data: Any) -> None:
    _atomic_bytes(path, json.dumps(data).encode())


def _fix_main(main_file: str) -> None:
    """Make functions pickled from a script's ``__main__`` importable, as multiprocessing's
    spawn does: run the script as ``__mp_main__`` (its ``if __name__ == "__main__"`` part
    does not run) and alias it as ``__main__``."""
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(runpy.run_path(main_file, run_name="__mp_main__"))
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def run(run_dir: str) -> int:
    os.chdir(run_dir)
    _atomic_json(STARTED, {"host": socket.gethostname(), "pid": os.getpid(),
                           "time": time.time()})
    ok = False
    out = open(STDOUT, "w")
    err = open(STDERR, "w")
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    try:
        try:
            with open(META) as fh:
                meta = json.load(fh)
        except FileNotFoundError:
            meta = {}
        for path in reversed(meta.get("python_path") or []):
            if path not in sys.path:
                sys.path.insert(0, path)
        if meta.get("main_file"):
            _fix_main(meta["main_file"])
        with open(TASK, "rb") as fh:
            function, args, kwargs = pickle.load(fh)
        result = function(*args, **kwargs)
        try:
            data = pickle.dumps(result)
        except Exception as exc:
            raise TypeError(f"the function's result cannot be pickled: {exc}") from exc
        _atomic_bytes(RESULT, data)
        ok = True
    except BaseException as exc:  # the job reports every failure, SystemExit included
        text = traceback.format_exc()
        sys.stdout.flush()
        _atomic_bytes(ERROR, text.encode(errors="replace"))
        try:
            data = pickle.dumps(exc)
            pickle.loads(data)  # only keep what the client can load back
            _atomic_bytes(EXCEPTION, data)
        except Exception:
            pass  # the traceback text above still says what happened
        print(text, file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _atomic_json(DONE, {"ok": ok, "time": time.time(), "host": socket.gethostname()})
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m scr_core.funcjobs.runner RUN_DIR", file=sys.stderr)
        return 2
    return run(args[0])


if __name__ == "__main__":
    sys.exit(main())
