"""Helpers shared by the node tests: remote runs with the configured limits, reasons."""

from __future__ import annotations

from typing import Any, Sequence

from scr_core.interfaces import NodeResult, RemoteResult


def settings_of(context: Any) -> Any:
    settings = getattr(context, "settings", None)
    if settings is None:
        from .settings import NodeTestsSettings

        settings = NodeTestsSettings()
    return settings


def fanout_of(job: Any, settings: Any) -> int:
    """nodetests.fanout, else core.remote_fanout."""
    if settings.fanout:
        return int(settings.fanout)
    try:
        return int(job.settings.section("core").remote_fanout)
    except Exception:  # a job object without settings (embedding, tests): the contract default
        return 64


def effective_timeout(job: Any, timeout: float) -> float:
    """The timeout the executor will really use (remote.timeout overrides callers)."""
    try:
        override = job.settings.section("remote").timeout
    except Exception:  # no 'remote' section: a third-party executor without one
        override = None
    return float(override or timeout)


def remote_run(job: Any, settings: Any, argv: Sequence[str], nodes: Sequence[str],
               timeout: float) -> RemoteResult:
    return job.remote_executor.run(list(argv), list(nodes), fanout=fanout_of(job, settings),
                                   timeout=timeout)


def seconds(value: float) -> str:
    return f"{value:g} s"


def show(text: str, limit: int = 60) -> str:
    """``text`` quoted on one line with control characters escaped, shortened."""
    cut = text if len(text) <= limit else text[:limit]
    escaped = cut.encode("unicode_escape").decode("ascii").replace("'", "\\'")
    return f"'{escaped}{'...' if len(text) > limit else ''}'"


def last_line(text: str, limit: int = 160) -> str:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def transport_failure(res: NodeResult, timeout: float) -> str | None:
    """Why a node gave no usable answer (timed out, unreachable), or None if it answered."""
    if res.timed_out:
        return f"timed out after {seconds(timeout)}"
    if res.unreachable:
        why = last_line(res.stderr) or last_line(res.stdout) or "no response"
        return f"unreachable: {why}"
    return None


def exit_detail(res: NodeResult) -> str:
    """'exit code N: last stderr line' for a node whose command failed."""
    why = last_line(res.stderr) or last_line(res.stdout)
    code = "no exit code" if res.rc is None else f"exit code {res.rc}"
    return f"{code}: {why}" if why else code
