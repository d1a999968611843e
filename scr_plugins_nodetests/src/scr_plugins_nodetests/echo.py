"""``echo``: each node must run ``echo UP`` through the job's remote executor.

A node is down unless its stdout has a line ``UP`` and the command exited 0. The reason says
what happened instead: ``Failed to echo UP (timed out after 10 s)``, ``(unreachable: ...)``,
``(printed: '...')``, ``(exit code N: ...)``. A silent node is never healthy.
"""

from __future__ import annotations

from typing import Any, Sequence

from scr_core.interfaces import NodeResult, NodeTest

from ._common import (
    effective_timeout,
    exit_detail,
    remote_run,
    settings_of,
    show,
    transport_failure,
)

REASON = "Failed to echo UP"


def echo_verdict(res: NodeResult, timeout: float) -> str | None:
    """None if ``res`` is a good answer to ``echo UP``, else the reason."""
    failure = transport_failure(res, timeout)
    if failure:
        return f"{REASON} ({failure})"
    said_up = any(line.strip() == "UP" for line in res.stdout.splitlines())
    if said_up and res.rc == 0:
        return None
    if said_up or not res.stdout.strip():
        if res.rc == 0:
            return f"{REASON} (printed nothing)"
        return f"{REASON} ({exit_detail(res)})"
    return f"{REASON} (printed: {show(res.stdout)})"


class EchoTest(NodeTest):
    name = "echo"

    def run(self, nodes: Sequence[str], job: Any) -> dict[str, str]:
        settings = settings_of(self.context)
        timeout = settings.echo_timeout
        result = remote_run(job, settings, ["echo", "UP"], nodes, timeout)
        shown = effective_timeout(job, timeout)
        failed: dict[str, str] = {}
        for n in nodes:
            res = result.get(n)
            if res is None:  # an executor that lost a node: never count it healthy
                failed[n] = f"{REASON} (no result for this node)"
                continue
            why = echo_verdict(res, shown)
            if why:
                failed[n] = why
        return failed
