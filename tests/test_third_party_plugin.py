"""A third-party plugin distribution, built and pip-installed for real into a scratch venv.

No mocking of entry points: the venv gets scr-core, scr-plugins-slurm and a throwaway
distribution made here, and the real ``scr`` console script must discover and select it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
from scr_core.hookspecs import hookimpl, LauncherSpec, ResourceManagerSpec

def detect(environ):
    return bool(environ.get("ACME_JOB_ID"))

@hookimpl
def scr_resource_managers():
    return [ResourceManagerSpec(name="acme", description="ACME scheduler",
            backend="acme_scr.backend:AcmeRM", detect=detect, priority=20)]

@hookimpl
def scr_launchers():
    return [LauncherSpec(name="acmerun", description="ACME launcher",
            backend="acme_scr.backend:AcmeRun", commands=("acmerun",))]
'''

BACKEND = '''
from scr_core.interfaces import ResourceManager
from scr_core.local.backend import LocalLauncher

class AcmeRM(ResourceManager):
    name = "acme"
    def job_id(self): return self.environ.get("ACME_JOB_ID")
    def job_nodes(self): return self.environ.get("ACME_NODES", "").split(",")
    def down_nodes(self): return {"a2": "acme says broken"} if "a2" in self.job_nodes() else {}
    def end_time(self): return -1

class AcmeRun(LocalLauncher):
    name = "acmerun"
'''


def _run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)


def write_dist(base: Path, name: str, version: str, modules: dict, dependencies=()) -> Path:
    """A setuptools source tree for distribution ``name`` with one package of ``modules``
    whose ``plugin`` module is registered as an ``scr.plugins`` entry point."""
    package = name.replace("-", "_")
    dist = base / name
    (dist / package).mkdir(parents=True)
    (dist / package / "__init__.py").write_text("")
    for module, text in modules.items():
        (dist / package / f"{module}.py").write_text(text)
    deps = f"dependencies = {json.dumps(list(dependencies))}\n" if dependencies else ""
    (dist / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "{version}"
        """) + deps + textwrap.dedent(f"""\
        [project.entry-points."scr.plugins"]
        {name.split("-")[0]} = "{package}.plugin"
        [tool.setuptools]
        packages = ["{package}"]
        """))
    return dist


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("thirdparty")
    dist = write_dist(base, "acme-scr", "1.2.3", {"plugin": PLUGIN, "backend": BACKEND},
                      dependencies=["scr-core"])
    env_dir = base / "venv"
    r = _run([sys.executable, "-m", "venv", str(env_dir)])
    assert r.returncode == 0, r.stderr
    py = env_dir / "bin" / "python"
    r = _run([str(py), "-m", "pip", "install", "-q", str(ROOT / "scr_core"),
              str(ROOT / "scr_plugins_slurm"), str(dist)])
    if r.returncode != 0:
        pytest.fail(f"pip install into the scratch venv failed:\n{r.stderr[-3000:]}")
    return env_dir


def test_discovered_and_selectable(venv, tmp_path):
    scr = str(venv / "bin" / "scr")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    r = _run([scr, "plugins", "--json"], env=env)
    assert r.returncode == 0, r.stderr
    plugins = {p["plugin"]: p for p in json.loads(r.stdout)}
    assert plugins["acme"]["distribution"] == "acme-scr"
    assert plugins["acme"]["version"] == "1.2.3"
    assert {"slurm", "local", "acme"} <= set(plugins)
    # only what was installed: no LSF or Flux
    assert "lsf" not in plugins and "flux" not in plugins

    # selected through detect() from the environment
    env_job = dict(env, ACME_JOB_ID="77", ACME_NODES="a1,a2,a3")
    r = _run([scr, "env", "--jobid"], env=env_job)
    assert (r.returncode, r.stdout.strip()) == (0, "77"), r.stderr
    r = _run([scr, "list-down-nodes", "--reason"], env=dict(env_job, SCR_NODE_TESTS="none"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "a2: acme says broken"
    # and explicitly, with a clear error for a name that does not exist
    r = _run([scr, "env", "--jobid"], env=dict(env, SCR_RESOURCE_MANAGER="nosuch"))
    assert r.returncode == 4
    assert "unknown resource manager 'nosuch'" in r.stderr and "acme" in r.stderr
    assert "Traceback" not in r.stderr


def test_no_foreign_plugin_module_imported(venv):
    # discovery and detection (what every command does), not `scr plugins`, which imports
    # every backend class it lists to say whether it loads
    code = ("import sys; from scr_core.plugins import get_registry; r = get_registry(); "
            "[r.detected(k) for k in ('resource_manager', 'launcher', 'remote_executor')]; "
            "print(sorted(m for m in sys.modules if m.startswith(('scr_plugins', 'acme'))), "
            "file=sys.stderr)")
    r = _run([str(venv / "bin" / "python"), "-c", code],
             env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})
    assert r.returncode == 0, r.stderr
    imported = r.stderr.strip().splitlines()[-1]
    # plugin registration modules are imported; their backends (and LSF/Flux) are not
    assert "scr_plugins_lsf" not in imported and "scr_plugins_flux" not in imported
    assert "acme_scr.backend" not in imported and "scr_plugins_slurm.rm" not in imported


def test_cache_follows_pip_install_and_uninstall(venv, tmp_path):
    """The entry-point cache (on, in HOME/.cache/scr) sees a real pip install and uninstall."""
    # a plugin providing nothing yet
    dist = write_dist(tmp_path, "beta-scr", "0.1",
                      {"plugin": "from scr_core.hookspecs import hookimpl\n"})
    scr, py = str(venv / "bin" / "scr"), str(venv / "bin" / "python")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")}

    def plugins(extra=None):
        r = _run([scr, "plugins", "--json"], env=dict(env, **(extra or {})))
        assert r.returncode == 0, r.stderr
        return {p["plugin"] for p in json.loads(r.stdout)}

    before = plugins()
    assert "acme" in before and "beta" not in before
    cache_dir = tmp_path / "home" / ".cache" / "scr"
    assert os.listdir(cache_dir)  # written
    assert plugins() == before  # a hit
    r = _run([py, "-m", "pip", "install", "-q", "--no-deps", str(dist)])
    if r.returncode != 0:
        pytest.fail(f"pip install failed:\n{r.stderr[-3000:]}")
    assert plugins() == before | {"beta"}
    assert plugins({"SCR_PLUGINS_CACHE": "0"}) == before | {"beta"}
    r = _run([py, "-m", "pip", "uninstall", "-q", "-y", "beta-scr"])
    assert r.returncode == 0, r.stderr
    assert plugins() == before
