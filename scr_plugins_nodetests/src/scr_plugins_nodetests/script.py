"""``script``: a site's own health check, run on every node (only when named in
SCR_NODE_TESTS).

The argv is settings ``nodetests.script`` (or ``SCR_NODE_TEST_SCRIPT``), run through the job's
remote executor. A node is down when the script exits non-zero, prints a line starting with
``FAIL`` (its message, after ``FAIL`` and an optional ``:``, is the reason), times out or
cannot be reached. Without a configured script the test cannot run and says so (the engine
then skips or stops, per SCR_NODE_TEST_ERRORS).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from scr_core.errors import ConfigError
from scr_core.interfaces import NodeResult, NodeTest

from ._common import effective_timeout, exit_detail, remote_run, settings_of, transport_failure


def script_verdict(name: str, res: NodeResult, timeout: float) -> str | None:
    failure = transport_failure(res, timeout)
    if failure:
        return f"Failed site script {name} ({failure})"
    for line in res.stdout.splitlines():
        text = line.strip()
        if text.startswith("FAIL"):
            message = text[4:].lstrip(":").strip()
            return message or f"Failed site script {name} (printed {text!r})"
    if res.rc != 0:
        return f"Failed site script {name} ({exit_detail(res)})"
    return None


class ScriptTest(NodeTest):
    name = "script"

    def run(self, nodes: Sequence[str], job: Any) -> dict[str, str]:
        settings = settings_of(self.context)
        argv = list(settings.script)
        if not argv:
            raise ConfigError("node test 'script' needs a command: set nodetests.script in the "
                              "settings file or SCR_NODE_TEST_SCRIPT")
        result = remote_run(job, settings, argv, nodes, settings.script_timeout)
        shown = effective_timeout(job, settings.script_timeout)
        name = os.path.basename(argv[0])
        failed: dict[str, str] = {}
        for n in nodes:
            res = result.get(n)
            why = (f"Failed site script {name} (no result for this node)" if res is None
                   else script_verdict(name, res, shown))
            if why:
                failed[n] = why
        return failed
