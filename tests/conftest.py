"""Shared test configuration."""

import os
import sys

import pytest

# the Slurm lab cluster for tests marked @pytest.mark.slurm (tests/conftest_slurm.py)
pytest_plugins = ["conftest_slurm"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


@pytest.fixture
def scr_env(tmp_path):
    """Environment for running scr commands as subprocesses: the venv first on PATH,
    a private HOME (no user settings), quick settle."""
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["HOME"] = str(tmp_path / "home")
    for name in list(env):
        if name.startswith(("SCR_", "SLURM_", "LSB_", "FLUX_")):
            del env[name]
    env["SCR_RUN_SETTLE_SECONDS"] = "0"
    return env
