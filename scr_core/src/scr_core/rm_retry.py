"""Trying resource-manager queries again after a transient failure: the one place that does.

A controller that does not answer for a few seconds (``sinfo`` timing out once, ``bjobs``
losing its connection) must not end a job that ``scr run`` keeps alive, so every query of
the selected resource manager (:data:`QUERIES`) goes through :func:`call`: an error whose
``transient`` attribute is true (:mod:`scr_core.errors`; every ``ResourceManagerError`` unless
raised with ``transient=False``) is tried again after ``SCR_RM_RETRY_SECONDS``, doubling
each time (at most :data:`MAX_DELAY` between tries), up to ``SCR_RM_RETRIES`` times; then the
error is raised as it was. Submitting and cancelling are never repeated (not idempotent).
Plugins do not retry on their own.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable

from .errors import ConfigError, ScrError

#: the ResourceManager methods that only ask (safe to repeat)
QUERIES = frozenset(("job_id", "job_nodes", "down_nodes", "end_time", "node_inventory",
                     "status"))
DEFAULT_RETRIES = 3
DEFAULT_SECONDS = 2.0
MAX_DELAY = 60.0


def policy(params: Any) -> tuple[int, float]:
    """``(retries, first delay)`` from ``SCR_RM_RETRIES`` and ``SCR_RM_RETRY_SECONDS``."""
    raw = params.get("SCR_RM_RETRIES")
    try:
        retries = DEFAULT_RETRIES if raw in (None, "") else int(str(raw).strip())
    except ValueError:
        retries = -1
    if retries < 0:
        raise ConfigError(f"SCR_RM_RETRIES={raw!r} ({params.source('SCR_RM_RETRIES')}) is "
                          "not a count of retries (0 or more)")
    raw = params.get("SCR_RM_RETRY_SECONDS")
    try:
        seconds = DEFAULT_SECONDS if raw in (None, "") else float(str(raw).strip())
    except ValueError:
        seconds = -1.0
    if not (0 <= seconds <= MAX_DELAY) or math.isnan(seconds):
        raise ConfigError(f"SCR_RM_RETRY_SECONDS={raw!r} "
                          f"({params.source('SCR_RM_RETRY_SECONDS')}) is not a number of "
                          f"seconds from 0 to {MAX_DELAY:g}")
    return retries, seconds


def call(query: Callable[[], Any], what: str, params: Any,
         warn: Callable[[str], None] | None = None,
         sleep: Callable[[float], None] = time.sleep) -> Any:
    """``query()``, tried again while it raises a transient :class:`ScrError`, as the
    parameters allow. The parameters are read at the first failure only."""
    tries = 0
    delay = 0.0
    while True:
        try:
            return query()
        except ScrError as exc:
            if not exc.transient:
                raise
            if tries == 0:
                retries, delay = policy(params)
            else:
                delay = min(delay * 2, MAX_DELAY)
            if tries >= retries:
                raise
            tries += 1
            (warn or _warn)(f"{what} failed: {exc}; trying again in {delay:g} s "
                            f"({tries} of {retries}, SCR_RM_RETRIES)")
            sleep(delay)


def _warn(message: str) -> None:
    print(f"scr: warning: {message}", file=sys.stderr, flush=True)


def with_retries(backend: Any, params: Any,
                 warn: Callable[[str], None] | None = None) -> Any:
    """``backend`` (a resource manager) with its :data:`QUERIES` tried again on transient
    errors. The methods are wrapped on the instance, so ``type(backend)`` and ``isinstance``
    stay what they were (the batch scheduler looks at which methods a class overrides)."""
    for name in QUERIES:
        original = getattr(backend, name, None)
        if callable(original):
            setattr(backend, name, _retrying(original, f"{getattr(backend, 'name', '?')} {name}",
                                             params, warn))
    return backend


def _retrying(original: Callable[..., Any], what: str, params: Any,
              warn: Callable[[str], None] | None) -> Callable[..., Any]:
    def query(*args: Any, **kwargs: Any) -> Any:
        return call(lambda: original(*args, **kwargs), what, params, warn)

    query.__wrapped__ = original  # type: ignore[attr-defined]
    return query
