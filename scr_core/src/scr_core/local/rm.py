"""The ``local`` resource manager: a local allocation (``scr local alloc``) seen as a job.

In a module of its own, so selecting it (``scr_should_exit``, ``scr env``) imports neither
the launcher's subprocess and thread machinery nor the batch lifecycle (``batch.py``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ..errors import JobEnvironmentError
from ..interfaces import ResourceManager
from .allocation import ENV_DIR, LocalAllocation, current_allocation


def _require_allocation(environ: Mapping[str, str]) -> LocalAllocation:
    alloc = current_allocation(environ)
    if alloc is None:
        raise JobEnvironmentError(
            f"not inside a local allocation ({ENV_DIR} is not set); "
            "use 'scr local alloc -N 4 -- COMMAND' or 'scr run local ...'"
        )
    return alloc


class LocalResourceManager(ResourceManager):
    name = "local"

    def _alloc(self) -> LocalAllocation | None:
        return current_allocation(self.environ)

    def job_id(self) -> str | None:
        alloc = self._alloc()
        return alloc.job_id if alloc else None

    def job_nodes(self) -> list[str]:
        alloc = self._alloc()
        return list(alloc.nodes) if alloc else []

    def down_nodes(self) -> dict[str, str]:
        alloc = self._alloc()
        return alloc.down_nodes() if alloc else {}

    def end_time(self) -> int:
        alloc = self._alloc()
        return alloc.end_time if alloc else 0

    def lost_nodes(self, nodes: Sequence[str]) -> dict[str, str]:
        """Crashed virtual nodes: one file check per node, fit for the step watch."""
        alloc = self._alloc()
        if alloc is None:
            return {}
        return {n: "Not responding (node crashed)" for n in nodes if alloc.is_crashed(n)}

    def start_time(self) -> float:
        alloc = self._alloc()
        return alloc.created if alloc else 0

    # batch lifecycle: implemented in local/batch.py (imported only when used); the types
    # are ResourceManager's: NodeInfo list, SubmitRequest -> JobRecord, {id: JobStatus}
    def node_inventory(self, partition: str | None = None) -> list:
        from . import batch

        return batch.node_inventory(self.environ, self.context.settings, partition)

    def submit(self, request: object) -> object:
        from . import batch

        return batch.submit(self.environ, self.context.settings, request)

    def status(self, job_ids: Sequence[str]) -> dict:
        from . import batch

        return batch.status(self.environ, self.context.settings, job_ids)

    def cancel(self, job_id: str) -> None:
        from . import batch

        batch.cancel(self.environ, self.context.settings, job_id)
