"""``ping``: each node must answer an ICMP echo from this (the batch) node.

``ping -c COUNT -W WAIT NODE`` runs for up to ``ping_fanout`` nodes at once and is retried
(``ping_tries``, default 2 as SCR did) on the nodes that did not answer, so the test takes at
most about ``ceil(nodes / ping_fanout) * ping_tries * COUNT * WAIT`` seconds even when every
node is dead. As the step watch's ``probe`` (``NodeTestSpec(in_step=True)``) it tries once:
the watch counts consecutive failures itself.

On the ``local`` backend the nodes are virtual and have no address, so there is nothing to
ping: the test passes every node there. That loses nothing: the local resource manager itself
reports a crashed virtual node (with the reason "Not responding (node crashed)"), and the core
checks that run before any node test mark it down.
"""

from __future__ import annotations

import math
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from scr_core.errors import ConfigError
from scr_core.hostlist import validate_node_name
from scr_core.interfaces import NodeTest

from ._common import last_line, settings_of

REASON = "Failed to ping"


class PingTest(NodeTest):
    name = "ping"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.settings = settings_of(context)

    def _ping(self, node: str) -> tuple[bool, str]:
        s = self.settings
        wait = max(1, math.ceil(s.ping_wait))
        argv = [s.ping_program, "-c", str(s.ping_count), "-W", str(wait), "-q", node]
        limit = s.ping_count * (s.ping_wait + 1.0) + 5.0
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=limit)
        except subprocess.TimeoutExpired:
            return False, f"no reply within {limit:g} s"
        except OSError as exc:
            # no ping program: the test cannot run at all, the engine reports it
            raise ConfigError(f"ping test: cannot run {s.ping_program}: {exc.strerror}") from exc
        if proc.returncode == 0:
            return True, ""
        err = last_line(proc.stderr.decode(errors="replace"))
        return False, err or "no reply"

    def run(self, nodes: Sequence[str], job: Any) -> dict[str, str]:
        return self._run(nodes, job, self.settings.ping_tries)

    def probe(self, nodes: Sequence[str], job: Any) -> dict[str, str]:
        """One try (the step watch counts consecutive failures itself)."""
        return self._run(nodes, job, 1)

    def _run(self, nodes: Sequence[str], job: Any, tries: int) -> dict[str, str]:
        if getattr(job.resource_manager, "name", "") == "local":
            return {}  # virtual nodes: see the module docstring
        for n in nodes:
            validate_node_name(n)  # never hand ping an option
        todo = list(nodes)
        why: dict[str, str] = {}
        if not todo:
            return {}
        workers = max(1, min(self.settings.ping_fanout, len(todo)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in range(tries):
                answers = list(pool.map(self._ping, todo))
                retry = []
                for node, (ok, detail) in zip(todo, answers):
                    if ok:
                        why.pop(node, None)
                    else:
                        why[node] = detail
                        retry.append(node)
                todo = retry
                if not todo:
                    break
        return {n: f"{REASON} ({detail}; {tries} {'try' if tries == 1 else 'tries'})"
                for n, detail in why.items()}
