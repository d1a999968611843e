"""Python functions run as batch jobs (ExPyRe-style), with a persistent jobs database.

See :mod:`scr_core.funcjobs.func` for the API, :mod:`.config` for the systems file,
:mod:`.resources` for partition matching and :mod:`.jobsdb` for the database.
"""

from __future__ import annotations

from .config import JobsConfig, load_config
from .func import (
    FunctionJob,
    FunctionJobError,
    JobDiedError,
    JobTimeoutError,
    RemoteFunctionError,
    RemoteTraceback,
    job_hash,
    sync_jobs,
)
from .jobsdb import JobLockedError, JobsDB
from .resources import NoMatchingPartitionError, PartitionSpec, Placement, Resources, place
from .systems import RMSystem, SshSystem, System, make_system

__all__ = [
    "FunctionJob",
    "FunctionJobError",
    "JobDiedError",
    "JobLockedError",
    "JobTimeoutError",
    "JobsConfig",
    "JobsDB",
    "NoMatchingPartitionError",
    "PartitionSpec",
    "Placement",
    "RMSystem",
    "RemoteFunctionError",
    "RemoteTraceback",
    "Resources",
    "SshSystem",
    "System",
    "job_hash",
    "load_config",
    "make_system",
    "place",
    "sync_jobs",
]
