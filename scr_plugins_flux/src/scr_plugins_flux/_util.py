"""Running flux commands: scr_core's client-command helpers with this plugin's hint."""

from __future__ import annotations

import subprocess
from typing import Mapping, Sequence

from scr_core.client_commands import describe_failure as failed
from scr_core.client_commands import run_client, signal_process, stop_process, wait_code
from scr_core.errors import ScrError

__all__ = ["failed", "run", "signal_process", "stop_process", "wait_code"]


def run(argv: Sequence[str], env: Mapping[str, str], timeout: float,
        error: type[ScrError], stdin_text: str | None = None) -> subprocess.CompletedProcess:
    """:func:`scr_core.client_commands.run_client`; a missing command hints at PATH."""
    return run_client(argv, env, timeout, error, stdin_text=stdin_text,
                      not_found_hint="is Flux in PATH?")
