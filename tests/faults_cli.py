"""Running ``scr`` subcommands in-process for the fault/bad-input tests (a helper, not tests).

``run_cli(argv, env)`` runs :func:`scr_core.cli.main.main` with exactly ``env`` as the
environment (plus PATH), a fresh plugin registry, and returns (exit code, stdout, stderr).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Mapping, Sequence

from scr_core.cli.main import main

from scr_core import plugins

#: every code a command may return: the common ones (errors.py) and scr run's own
DOCUMENTED = {0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12}


def run_cli(argv: Sequence[str], env: Mapping[str, str], registry: object = None,
            prog: str | None = None) -> tuple[int, str, str]:
    saved_env = dict(os.environ)
    saved_registry = plugins._default_registry
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update({"PATH": saved_env.get("PATH", "/usr/bin:/bin")})
    os.environ.update(env)
    plugins._default_registry = registry  # type: ignore[assignment]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(list(argv), prog=prog)
            except SystemExit as exc:  # argparse: --help, usage errors
                code = exc.code
                rc = code if isinstance(code, int) else (0 if code is None else 2)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        plugins._default_registry = saved_registry
        sys.stdout.flush()
    return rc, out.getvalue(), err.getvalue()


def base_env(tmp: str) -> dict[str, str]:
    """No settings file, no SCR parameters, no allocation: a clean user."""
    return {"HOME": os.path.join(tmp, "home"), "XDG_CONFIG_HOME": os.path.join(tmp, "cfg"),
            "XDG_CACHE_HOME": os.path.join(tmp, "cache"), "SCR_NODE_TESTS": "none"}
