"""Running LSF/JSM commands: argv lists only, a timeout, errors chained into ScrError."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Mapping, Sequence

from scr_core.errors import ScrError


def run(argv: Sequence[str], env: Mapping[str, str], timeout: float,
        error: type[ScrError], stdin_text: str | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` to completion and capture text output; a missing command or a timeout
    raises ``error`` with the cause chained. A non-zero exit is returned, not raised: LSF
    commands print partial results (``Job <1> is not found``) and callers decide."""
    try:
        return subprocess.run(
            list(argv), env=dict(env), input=stdin_text,
            stdin=None if stdin_text is not None else subprocess.DEVNULL,
            capture_output=True, text=True, encoding="utf-8", errors="replace",
            timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise error(f"{argv[0]}: command not found (is LSF in PATH?)") from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{' '.join(argv[:3])}: no answer within {timeout:g} s") from exc
    except OSError as exc:
        raise error(f"{argv[0]}: cannot run: {exc}") from exc


def failed(cp: subprocess.CompletedProcess) -> str:
    """One-line description of a failed command for error messages."""
    text = (cp.stderr or cp.stdout or "").strip().splitlines()
    return f"exit {cp.returncode}" + (f": {text[-1]}" if text else "")


def signal_process(proc: subprocess.Popen, sig: int) -> None:
    """Signal the launcher process itself. It stays in our process group (so a terminal's
    Ctrl-C and stdin reach it as they would without scr) and forwards signals to its tasks,
    as jsrun, lrun and flux job attach do."""
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def stop_process(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the launcher, SIGKILL after ``grace`` seconds; returns once reaped."""
    if proc.poll() is not None:
        return
    signal_process(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        signal_process(proc, signal.SIGKILL)
        proc.wait()


def wait_code(proc: subprocess.Popen, timeout: float | None) -> int | None:
    """Exit code of ``proc`` within ``timeout`` (None = forever), else None."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
