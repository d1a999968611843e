"""Watchdog: kill a job step that makes no progress (``SCR_WATCHDOG=1``).

Progress is what SCR's watchdog looks at: the flush file's latest dataset id, or that
dataset's location, changing. Unlike SCR, the state at launch is the baseline (a dataset
left by an earlier run is not progress), the file is polled often, and the step is killed
only once ``SCR_WATCHDOG_TIMEOUT`` seconds (``SCR_WATCHDOG_TIMEOUT_PFS`` while the latest
dataset is being flushed synchronously) have passed since the last progress, or since the
start for a job that has not written a dataset yet.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import ConfigError


class Watchdog:
    def __init__(self, prefix: str, timeout: float, timeout_pfs: float) -> None:
        self.prefix = prefix
        self.timeout = timeout
        self.timeout_pfs = timeout_pfs
        self.last_state = self._state()
        self.last_change = time.monotonic()

    @classmethod
    def from_params(cls, job: Any) -> Watchdog | None:
        params = job.params
        if (params.get("SCR_WATCHDOG") or "0").strip() != "1":
            return None
        values = []
        for name in ("SCR_WATCHDOG_TIMEOUT", "SCR_WATCHDOG_TIMEOUT_PFS"):
            text = params.get(name)
            if text in (None, ""):
                if name == "SCR_WATCHDOG_TIMEOUT":
                    raise ConfigError("SCR_WATCHDOG=1 needs SCR_WATCHDOG_TIMEOUT (seconds)")
                text = None
            try:
                values.append(float(text) if text is not None else None)
            except ValueError as exc:
                raise ConfigError(f"{name} must be a number of seconds, not '{text}' "
                                  f"({params.source(name)})") from exc
        timeout, timeout_pfs = values
        if timeout <= 0:
            raise ConfigError("SCR_WATCHDOG_TIMEOUT must be positive")
        return cls(job.prefix, timeout, timeout_pfs if timeout_pfs else timeout)

    def _state(self) -> tuple:
        from ..control.flush import FlushFile

        try:
            flush = FlushFile(self.prefix)
            latest = flush.latest()
            return (latest, flush.location(latest) if latest is not None else None)
        except Exception:  # a half-written or missing flush file is "no progress"
            return (None, None)

    def check(self, now: float | None = None) -> str:
        """'' while the step makes progress; the reason to kill it otherwise."""
        now = time.monotonic() if now is None else now
        state = self._state()
        if state != self.last_state:
            self.last_state = state
            self.last_change = now
            return ""
        limit = self.timeout_pfs if state[1] == "SYNC_FLUSHING" else self.timeout
        idle = now - self.last_change
        if idle >= limit:
            return f"watchdog: no progress for {idle:.0f} s (timeout {limit:g} s)"
        return ""
