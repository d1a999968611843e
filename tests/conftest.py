"""Shared test configuration."""

import os
import sys

import pytest

# the Slurm lab cluster for tests marked @pytest.mark.slurm (tests/conftest_slurm.py), the
# Flux lab instance for tests marked @pytest.mark.flux (tests/conftest_flux.py), LLNL's real
# SCR for tests marked @pytest.mark.real_scr (tests/conftest_real_scr.py)
pytest_plugins = ["conftest_slurm", "conftest_flux", "conftest_real_scr"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="session", autouse=True)
def _private_cache_home(tmp_path_factory):
    """The entry-point cache of every scr run by the tests goes to a session directory, not
    the user's ~/.cache (tests of the cache itself set their own XDG_CACHE_HOME)."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


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
