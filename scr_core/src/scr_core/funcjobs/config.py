"""Where function jobs keep their database and staging directories, and the systems they
can run on: ``systems.yaml`` files, found as ExPyRe finds its ``config.json``.

Location rules:

* ``$SCR_JOBS_ROOT`` set: that directory is the root, and its ``systems.yaml`` is the only
  file read.
* otherwise ``~/.scr/systems.yaml`` is read first, then the nearest project directory
  ``_scr/`` found walking up from the current directory (stopping before ``$HOME``) is
  merged over it: a system there updates the same-named one key by key, a new one is
  added, and one set to ``null`` is removed. The root is that ``_scr/`` if there is one,
  else ``~/.scr``.

The root holds ``jobs.db`` and ``stage/<job id>/``. A system named ``local`` (this machine,
the local backend's batch jobs) exists unless a file removes it.

A system::

    systems:
      cluster:
        host: login.example.org      # 'local', or [user@]host reached with remote_shell
        user: me                     # optional; also as user@host
        scheduler: slurm             # resource manager plugin that runs the jobs there
        remote_shell: [ssh, -p, "22"]   # argv prefix of the remote command (default ssh)
        transfer: auto               # rsync, scp or auto (rsync when installed)
        rundir: scr-jobs             # remote directory of the run directories
        python: python3              # the Python that runs the function there
        setup: [module load python]  # shell lines run before the function
        header: ["#SBATCH --qos=normal", "#SBATCH --ntasks-per-node={ntasks_per_node}"]
        env: {OMP_NUM_THREADS: "1"}
        partitions:                  # override/complete what the node inventory says
          batch: {cpus: 36, memory: 128G, max_time: 24h}

Header lines are templates; the keys are those of
:meth:`scr_core.funcjobs.resources.Placement.template_keys` (``{nnodes}``, ``{ntasks}``,
``{ntasks_per_node}``, ``{ncores_per_task}``, ``{partition}``, ``{max_time}`` (s),
``{max_time_hms}``, ``{max_time_min}``, ``{memory_per_task_mb}``, ``{job_name}``).
"""

from __future__ import annotations

import copy
import os
from typing import Any, Mapping, Optional

from ..errors import ConfigError

ROOT_ENV = "SCR_JOBS_ROOT"
PROJECT_DIR = "_scr"
FILE_NAME = "systems.yaml"
DEFAULT_SYSTEMS: dict[str, dict[str, Any]] = {"local": {"host": "local", "scheduler": "local"}}


def _models() -> tuple[type, type]:
    from pydantic import BaseModel, ConfigDict, Field

    class PartitionConfig(BaseModel):
        model_config = ConfigDict(extra="forbid")
        cpus: Optional[int] = Field(None, description="cores per node")
        memory: Optional[str] = Field(None, description="memory per node, e.g. 128G")
        max_time: Optional[str] = Field(None, description="time limit, e.g. 24h")
        nodes: Optional[int] = Field(None, description="nodes available")

    class SystemConfig(BaseModel):
        model_config = ConfigDict(extra="forbid")
        host: str = Field("local", description="'local' or [user@]host")
        user: Optional[str] = None
        scheduler: str = Field("local", description="resource manager plugin on the host")
        remote_shell: list[str] = Field(default_factory=lambda: ["ssh"])
        transfer: str = Field("auto", pattern="^(auto|rsync|scp)$")
        rundir: Optional[str] = None
        python: Optional[str] = None
        setup: list[str] = Field(default_factory=list)
        header: list[str] = Field(default_factory=list)
        env: dict[str, str] = Field(default_factory=dict)
        partitions: dict[str, PartitionConfig] = Field(default_factory=dict)
        fault_tolerant: bool = Field(False, description="submit with the RM's no-kill flag")

    return PartitionConfig, SystemConfig


def _load(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or set(data) - {"systems"}:
        raise ConfigError(f"{path}: expected a mapping with one key, 'systems'")
    systems = data.get("systems") or {}
    if not isinstance(systems, dict):
        raise ConfigError(f"{path}: 'systems' must map names to systems")
    return systems


def _merge(base: dict[str, Any], over: Mapping[str, Any], path: str) -> None:
    for name, value in over.items():
        if value is None:
            base.pop(str(name), None)
        elif isinstance(value, dict):
            merged = dict(base.get(str(name)) or {})
            merged.update(value)
            base[str(name)] = merged
        else:
            raise ConfigError(f"{path}: system '{name}' must be a mapping or null")


class JobsConfig:
    """The root directory, the files read and the validated systems."""

    def __init__(self, root: str, systems: Mapping[str, Any], files: list[str]) -> None:
        self.root = os.path.abspath(root)
        self.files = files
        self.systems = dict(systems)

    @property
    def db_path(self) -> str:
        return os.path.join(self.root, "jobs.db")

    @property
    def stage_root(self) -> str:
        return os.path.join(self.root, "stage")

    def system(self, name: str) -> Any:
        if name not in self.systems:
            raise ConfigError(f"unknown system '{name}'; configured: "
                              f"{', '.join(sorted(self.systems)) or 'none'} "
                              f"(files read: {', '.join(self.files) or 'none'})")
        return self.systems[name]


def load_config(environ: Mapping[str, str] | None = None, cwd: str | None = None
                ) -> JobsConfig:
    """Find and merge the systems files (see the module docstring)."""
    env = os.environ if environ is None else environ
    home = os.path.abspath(env.get("HOME") or os.path.expanduser("~"))
    raw: dict[str, Any] = copy.deepcopy(DEFAULT_SYSTEMS)
    files: list[str] = []

    def read(path: str) -> None:
        if os.path.isfile(path):
            _merge(raw, _load(path), path)
            files.append(path)

    if env.get(ROOT_ENV):
        root = os.path.abspath(os.path.expanduser(env[ROOT_ENV]))
        read(os.path.join(root, FILE_NAME))
    else:
        root = os.path.join(home, ".scr")
        read(os.path.join(root, FILE_NAME))
        here = os.path.abspath(cwd or os.getcwd())
        while here != home:
            candidate = os.path.join(here, PROJECT_DIR)
            if os.path.isdir(candidate):
                root = candidate
                read(os.path.join(candidate, FILE_NAME))
                break
            parent = os.path.dirname(here)
            if parent == here:
                break
            here = parent
    _, system_model = _models()
    from pydantic import ValidationError

    systems = {}
    for name, values in raw.items():
        try:
            systems[name] = system_model(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err.get("loc", ()))
            raise ConfigError(f"{', '.join(files) or 'systems'}: system '{name}': {loc}: "
                              f"{err['msg']}") from exc
        except TypeError as exc:
            raise ConfigError(f"system '{name}': {exc}") from exc
    return JobsConfig(root, systems, files)
