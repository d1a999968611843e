"""pytest plugin: a real multi-node Flux instance for tests marked ``@pytest.mark.flux``.

flux-core is built from the tarball in ``tests/flux_lab`` by its ``build.sh`` when missing
(cached in ``/var/tmp/flux-lab``, about 2.5 min once per machine, under the same lock file
the lead's build uses). The lab (``tests/flux_lab/start-lab.sh``: 4 brokers n1..n4, each in
its own network/UTS/mount/PID namespaces) is started once per session, lazily, by the first
marked test, and stopped at the end of the session, also after failures or Ctrl-C.

The test process reaches the instance through rank 0's local socket
(``FLUX_URI=local://<lab>/run/n1/local``); jobs run on the lab nodes with the environment
they were submitted with (``FluxLab.env()``: the venv and flux on PATH).

Skips: only when not root or when flux-core's Debian build dependencies cannot be installed
(``build.sh`` exits 3). With ``CI=true`` both are failures instead. Any other build or start
problem is a failure. ``SCR_FLUX_LAB_KEEP=1`` leaves the lab running after the session (a
later session reuses it at once); ``SCR_FLUX_LAB_DIR`` moves it; ``FLUXLAB`` moves the build.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

LAB_SRC = Path(__file__).resolve().parent / "flux_lab"
BUILD_DIR = Path(os.environ.get("FLUXLAB", "/var/tmp/flux-lab"))
PREFIX = BUILD_DIR / "install"
LAB_DIR = Path(os.environ.get("SCR_FLUX_LAB_DIR", "/var/tmp/scr-flux-lab"))
BUILD_TIMEOUT = 1800.0
START_TIMEOUT = 120.0
CLIENT_TIMEOUT = 60.0
LOCK_WAIT = 1800.0  # the build lock may be held by a build already under way
VENV_BIN = os.path.dirname(sys.executable)


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_or_fail(reason: str) -> None:
    if _ci():
        pytest.fail(f"Flux lab required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _lock(path: str, what: str) -> Any:
    """An exclusive flock on ``path`` (waits up to LOCK_WAIT); the open file holds it."""
    fh = open(path, "w")
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except BlockingIOError:
            if time.monotonic() > deadline:
                fh.close()
                pytest.fail(f"{what}: another session holds {path}", pytrace=False)
            time.sleep(1)


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("FLUX_", "SCR_"))}


@dataclasses.dataclass
class FluxLab:
    """The running lab: its URI, node names and helpers with timeouts."""

    lab_dir: Path
    nodes: list[str]
    uri: str
    start_seconds: float = 0.0

    @property
    def flux(self) -> str:
        return str(PREFIX / "bin" / "flux")

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment (no FLUX_*/SCR_* of ours) connected to the instance, with
        the venv and flux first on PATH (jobs inherit it)."""
        env = _clean_environ()
        env["PATH"] = os.pathsep.join([VENV_BIN, str(PREFIX / "bin"), env.get("PATH", "")])
        env["FLUX_URI"] = self.uri
        env.update(extra)
        return env

    def run(self, argv: Sequence[str], timeout: float = CLIENT_TIMEOUT, check: bool = True,
            env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess:
        """``flux ARGV`` against the instance."""
        full = [self.flux, *argv]
        proc = subprocess.run(full, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(full)} failed ({proc.returncode}): "
                                 f"{proc.stderr.strip()} {proc.stdout.strip()}")
        return proc

    def lab(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """The lab control script (crash, restart, on, status)."""
        return subprocess.run([str(self.lab_dir / "bin" / "lab"), *args], env=_clean_environ(),
                              capture_output=True, text=True, timeout=timeout, check=True)

    def settings(self, **over: Any) -> Any:
        from scr_plugins_flux.settings import FluxSettings

        return FluxSettings(**{"flux": self.flux, **over})

    # -- state helpers ------------------------------------------------------------------------
    def ranks_in(self, state: str) -> str:
        return self.run(["resource", "status", "-s", state, "-no", "{ranks}"]).stdout.strip()

    def wait_for(self, what: str, predicate: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(0.1)

    def wait_event(self, job_id: str, event: str, timeout: float = 30.0) -> None:
        self.run(["job", "wait-event", "-t", str(timeout), job_id, event],
                 timeout=timeout + 10)

    def node_alive(self, node: str) -> bool:
        try:
            pid = int((self.lab_dir / "run" / f"{node}.init.pid").read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            return False
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")

    def reset(self) -> None:
        """Cancel every job, restart crashed nodes, undrain, and wait until every broker is
        online and every node free (the next test starts from a clean instance). If rank 0
        (n1) itself was lost the instance is gone: the lab is started afresh."""
        if not self.node_alive(self.nodes[0]):
            _stop_lab(force=True)
            _start_lab_scripts()
        self.run(["cancel", "--all", "-u", "all"], check=False)  # -u all: root may run others
        for node in self.nodes:
            if not self.node_alive(node):
                self.lab("restart", node)
        drained = self.run(["resource", "drain", "-no", "{nodelist}"], check=False)
        if drained.returncode == 0 and drained.stdout.strip():
            for hosts in drained.stdout.split():
                self.run(["resource", "undrain", hosts], check=False)
        n = str(len(self.nodes))

        def clean() -> bool:
            online = self.run(["resource", "status", "-s", "online", "-no", "{nnodes}"],
                              check=False).stdout.strip()
            free = self.run(["resource", "list", "-s", "free", "-no", "{nnodes}"],
                            check=False).stdout.strip()
            return online == n and free == n

        self.wait_for("every broker online and every node free", clean, 60)


def _build() -> None:
    if os.geteuid() != 0:
        _skip_or_fail("the Flux lab needs root (network/PID namespaces)")
    env = dict(os.environ, FLUXLAB=str(BUILD_DIR), PREFIX=str(PREFIX))
    BUILD_DIR.parent.mkdir(parents=True, exist_ok=True)
    with _lock(f"{BUILD_DIR}.lock", "building flux-core"):
        try:
            proc = subprocess.run([str(LAB_SRC / "build.sh")], env=env, capture_output=True,
                                  text=True, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"building flux-core took more than {BUILD_TIMEOUT:g}s "
                        f"(logs in {BUILD_DIR})", pytrace=False)
    if proc.returncode == 3:
        _skip_or_fail(f"flux-core cannot be built here: {proc.stderr.strip()[-500:]}")
    if proc.returncode != 0:
        pytest.fail(f"tests/flux_lab/build.sh failed ({proc.returncode}; logs in "
                    f"{BUILD_DIR}):\n{proc.stderr[-3000:]}", pytrace=False)


def _start_lab_scripts() -> None:
    env = dict(_clean_environ(), FLUXLAB_DIR=str(LAB_DIR), FLUX_PREFIX=str(PREFIX))
    try:
        proc = subprocess.run([str(LAB_SRC / "start-lab.sh")], env=env, capture_output=True,
                              text=True, timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        _stop_lab(force=True)
        pytest.fail(f"the Flux lab did not start within {START_TIMEOUT:g}s: {exc}",
                    pytrace=False)
    if proc.returncode != 0:
        _stop_lab(force=True)
        pytest.fail(f"the Flux lab did not start ({proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", pytrace=False)


def _start_lab() -> FluxLab:
    _build()
    t0 = time.monotonic()
    _start_lab_scripts()
    values = {}
    for line in (LAB_DIR / "run" / "lab.env").read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value.strip('"')
    lab = FluxLab(lab_dir=LAB_DIR, nodes=values["NODES"].split(), uri=values["FLUX_URI"],
                  start_seconds=time.monotonic() - t0)
    lab.reset()  # a reused lab may hold a previous session's leftovers
    return lab


def _stop_lab(force: bool = False) -> None:
    if os.environ.get("SCR_FLUX_LAB_KEEP") == "1" and not force:
        return
    subprocess.run([str(LAB_SRC / "stop-lab.sh")],
                   env=dict(_clean_environ(), FLUXLAB_DIR=str(LAB_DIR)),
                   capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def flux_lab() -> Iterator[FluxLab]:
    """The running 4-node Flux instance (session-wide)."""
    LAB_DIR.parent.mkdir(parents=True, exist_ok=True)
    with _lock(f"{LAB_DIR}.lock", "the Flux lab"):
        started = False
        try:
            lab = _start_lab()
            started = True
            yield lab
        finally:
            # stop also after a failed or interrupted start: no half-started brokers left
            if started or os.geteuid() == 0:
                _stop_lab()


@pytest.fixture
def flux_instance(flux_lab: FluxLab) -> Iterator[FluxLab]:
    """The lab, reset to "every broker online, every node free, no jobs" after the test."""
    try:
        yield flux_lab
    finally:
        flux_lab.reset()


@pytest.fixture(autouse=True)
def _flux_marker(request: pytest.FixtureRequest) -> None:
    """Tests marked ``flux`` get the session instance started for them."""
    if request.node.get_closest_marker("flux") is not None:
        request.getfixturevalue("flux_lab")
