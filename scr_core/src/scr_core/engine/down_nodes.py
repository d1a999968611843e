"""Which nodes of the allocation are unusable, and why (SCR's ``list_down_nodes``).

Order, each step only on the nodes still standing:

1. nodes already known down (``down=``): reason "Specified as down";
2. ``SCR_EXCLUDE_NODES``: "User excluded via SCR_EXCLUDE_NODES";
3. the resource manager's down nodes, with the RM's reason;
4. the configured node tests (``SCR_NODE_TESTS``, comma list; default: every registered test
   marked default, in its order), each only on the nodes that passed the ones before.

A test that raises is reported on stderr and then skipped (``SCR_NODE_TEST_ERRORS=skip``, the
default: a broken site test must not kill the job) or stops the command
(``SCR_NODE_TEST_ERRORS=stop``). It never marks nodes down or up silently.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from ..errors import ConfigError, JobEnvironmentError, ScrError

SPECIFIED = "Specified as down"
EXCLUDED = "User excluded via SCR_EXCLUDE_NODES"


def configured_tests(job: Any) -> list[Any]:
    """Registered node-test records named by SCR_NODE_TESTS (or the defaults), in order."""
    specs = job.registry.specs("node_test")
    names_text = job.params.get("SCR_NODE_TESTS")
    if names_text is None:
        chosen = sorted((r for r in specs.values() if r.spec.default),
                        key=lambda r: (r.spec.order, r.spec.name))
        return [r.spec for r in chosen]
    out = []
    for name in (n.strip() for n in names_text.replace("\n", ",").split(",")):
        if not name or name.lower() == "none":
            continue
        if name not in specs:
            raise ConfigError(
                f"unknown node test '{name}' in SCR_NODE_TESTS "
                f"({job.params.source('SCR_NODE_TESTS')}); available: "
                f"{', '.join(sorted(specs)) or 'none'}")
        out.append(specs[name].spec)
    return out


def list_down_nodes(
    job: Any,
    nodes: Sequence[str] | None = None,
    down: Sequence[str] = (),
    tests: Sequence[Any] | None = None,
    warn: Any = None,
) -> dict[str, str]:
    """``{node: reason}`` for every unusable node among ``nodes`` (default: the job's)."""
    warn = warn or (lambda m: print(f"scr: warning: {m}", file=sys.stderr, flush=True))
    nodes = list(nodes) if nodes is not None else job.node_list()
    if not nodes:
        raise JobEnvironmentError("failed to identify the nodes of the job allocation")
    result: dict[str, str] = {}
    known_down = set(down)
    for n in nodes:
        if n in known_down:
            result[n] = SPECIFIED
    alive = [n for n in nodes if n not in result]

    exclude_text = job.params.get("SCR_EXCLUDE_NODES")
    if exclude_text:
        from ..hostlist import expand

        excluded = set(expand(exclude_text))
        for n in alive:
            if n in excluded:
                result[n] = EXCLUDED
        alive = [n for n in alive if n not in result]

    rm_down = job.resource_manager.down_nodes()
    for n in alive:
        if n in rm_down:
            result[n] = rm_down[n] or "Reported down by resource manager"
    alive = [n for n in alive if n not in result]

    on_error = (job.params.get("SCR_NODE_TEST_ERRORS") or "skip").strip().lower()
    for spec in configured_tests(job) if tests is None else tests:
        if not alive:
            break
        try:
            cls = spec.load()
            test = cls(job.context(spec.settings))
            failed = test.run(list(alive), job)
        except Exception as exc:
            message = f"node test '{spec.name}' failed to run: {type(exc).__name__}: {exc}"
            if on_error == "stop":
                raise ScrError(message + " (SCR_NODE_TEST_ERRORS=stop)") from exc
            warn(message + "; its verdict is skipped")
            continue
        for n, reason in failed.items():
            if n in alive:
                result[n] = reason or f"Failed node test {spec.name}"
        alive = [n for n in alive if n not in result]
    # keep the allocation's order
    return {n: result[n] for n in nodes if n in result}
