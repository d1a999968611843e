"""Helpers shared by the remote executors (not a public API)."""

from __future__ import annotations

import re
from typing import Any, Sequence

from ..errors import ConfigError, UsageError
from ..hostlist import validate_node_name

_PATTERN_RE = re.compile(r"%(%|\{h\}|\{host\}|host|h)")


def settings_or_default(context: Any) -> Any:
    """The ``remote`` settings of a backend context (defaults when none were given)."""
    settings = getattr(context, "settings", None)
    if settings is None:
        from .settings import RemoteSettings

        settings = RemoteSettings()
    return settings


def check_nodes(nodes: Sequence[str]) -> list[str]:
    """The node list, each name validated (it ends up in argv and in wrapper patterns)."""
    out = list(nodes)
    for n in out:
        validate_node_name(n)
    if len(set(out)) != len(out):
        raise UsageError("remote exec: the node list has duplicates")
    return out


def has_node_pattern(wrapper: Sequence[str]) -> bool:
    return any(_PATTERN_RE.search(a.replace("%%", "")) for a in wrapper)


def require_per_node_wrapper(wrapper: Sequence[str], what: str) -> list[str]:
    """The wrapper argv, or ConfigError when it would run the command on *this* machine.

    An exec transport without a per-node wrapper would run the command locally once per
    node name, so a node check would test the batch node N times and call them all healthy
    (SCR's pdsh -Rexec did exactly that with jsrun/lrun/flux launchers).
    """
    wrapper = list(wrapper)
    if not wrapper:
        raise ConfigError(
            f"{what}: the exec transport needs a per-node wrapper (settings remote.wrapper, "
            "e.g. [srun, -N1, -n1, -w, '%h']); without one the command would run on this "
            "machine instead of on the nodes")
    if not has_node_pattern(wrapper):
        raise ConfigError(
            f"{what}: remote.wrapper {wrapper} has no %h: it would run the same command "
            "locally for every node instead of on each node")
    return wrapper


def expand_wrapper(wrapper: Sequence[str], node: str) -> list[str]:
    """``%h``/``%host``/``%{h}`` -> node, ``%%`` -> ``%`` in each wrapper element."""
    def sub(m: re.Match) -> str:
        return "%" if m.group(1) == "%" else node

    return [_PATTERN_RE.sub(sub, a) for a in wrapper]


def checked_request(
    settings: Any, argv: Sequence[str], nodes: Sequence[str], fanout: int,
    timeout: float | None,
) -> tuple[list[str], list[str], int, float | None]:
    """What every executor's ``run`` checks first: a non-empty argv (as strings), valid
    unique node names, and the fanout/timeout the settings allow."""
    argv = [str(a) for a in argv]
    if not argv:
        raise UsageError("remote exec: empty command")
    fanout, timeout = effective_limits(settings, fanout, timeout)
    return argv, check_nodes(nodes), fanout, timeout


def effective_limits(settings: Any, fanout: int, timeout: float | None) -> tuple[int, float | None]:
    """Fanout and per-node timeout: the ``remote`` settings override what the caller asked."""
    if getattr(settings, "fanout", None):
        fanout = settings.fanout
    if getattr(settings, "timeout", None):
        timeout = settings.timeout
    fanout = max(1, int(fanout or 1))
    if timeout is not None and timeout <= 0:
        timeout = None
    return fanout, timeout


def last_line(text: str, limit: int = 200) -> str:
    """The last non-empty line of ``text``, shortened: for one-line reasons."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
