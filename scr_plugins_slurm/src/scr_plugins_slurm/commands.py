"""Running Slurm client commands: argv lists, a timeout each, a clean environment, errors as
:class:`~scr_core.errors.ResourceManagerError` naming the command and Slurm's message."""

from __future__ import annotations

import subprocess
from typing import Any, Mapping, Sequence

from scr_core.errors import ResourceManagerError

# Environment variables that change what the clients print or which jobs they list
# (SQUEUE_STATES, SQUEUE_FORMAT, SINFO_SORT, SACCT_FORMAT, ...): dropped for our queries.
_DROP_PREFIXES = ("SQUEUE_", "SINFO_", "SACCT_", "SCONTROL_")


def settings_or_default(settings: Any) -> Any:
    """The plugin's settings, or the defaults when the backend was built without any."""
    if settings is None:
        from .settings import SlurmSettings

        return SlurmSettings()
    return settings


def query_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` made safe for parsing the clients' output."""
    env = {k: v for k, v in environ.items() if not k.startswith(_DROP_PREFIXES)}
    # a user's SLURM_TIME_FORMAT=relative would print "Tomorrow 10:00" as EndTime
    env["SLURM_TIME_FORMAT"] = "standard"
    return env


class SlurmCommands:
    """The configured client commands, run with :meth:`run`."""

    def __init__(self, settings: Any, environ: Mapping[str, str]) -> None:
        self.settings = settings_or_default(settings)
        self.environ = environ

    def path(self, name: str) -> str:
        return str(getattr(self.settings, name))

    def run(
        self,
        name: str,
        args: Sequence[str],
        timeout: float | None = None,
        ok_errors: Sequence[str] = (),
        query: bool = True,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run client ``name`` (``"squeue"``) with ``args``; stdout/stderr captured as text.

        A non-zero exit raises, unless ``check`` is false or stderr contains one of
        ``ok_errors`` (the caller then inspects ``returncode``). ``query=False`` keeps the
        caller's SQUEUE_*/SBATCH_* variables (for sbatch, whose input options they are)."""
        argv = [self.path(name), *args]
        env = query_env(self.environ) if query else dict(self.environ)
        limit = timeout if timeout is not None else self.settings.command_timeout
        try:
            proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=limit,
                                  errors="replace")
        except FileNotFoundError as exc:
            raise ResourceManagerError(
                f"{name}: command not found ({argv[0]}); set 'slurm.{name}' in the settings "
                "or fix PATH", transient=False) from exc
        except subprocess.TimeoutExpired as exc:
            raise ResourceManagerError(
                f"{name} did not answer within {limit:g} s: {' '.join(argv)}") from exc
        except OSError as exc:
            raise ResourceManagerError(f"cannot run {argv[0]}: {exc}") from exc
        if check and proc.returncode != 0 and not any(e in proc.stderr for e in ok_errors):
            msg = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
            raise ResourceManagerError(
                f"{' '.join(argv)} failed (exit {proc.returncode}): {'; '.join(msg[:3])}")
        return proc
