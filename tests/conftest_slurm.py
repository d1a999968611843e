"""pytest plugin: the real Slurm lab cluster for tests marked ``@pytest.mark.slurm``.

The cluster (``tests/slurm_lab``, netns mode, 4 nodes n1..n4) is started once per session,
lazily, by the first marked test, and stopped at the end of the session, also after
failures or Ctrl-C. How the test process reaches slurmctld: through the wrappers in
``$LAB_DIR/clientbin`` (``exec ip netns exec <head> <client>``), which tests pass as argv[0]
or as command paths in :class:`SlurmSettings`; jobs running *on* lab nodes use the plain
commands. See ``tests/slurm_lab/README.md``.

Skips: only when not root or when Slurm cannot be installed (``start-cluster.sh
--install-only`` exits 3). With ``CI=true`` both are failures instead. Any other start
problem is a failure. ``SCR_SLURM_LAB_KEEP=1`` leaves the cluster running after the session
(a later session reuses it in ~0.1 s); ``SCR_SLURM_LAB_DIR`` moves it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

LAB_SRC = Path(__file__).resolve().parent / "slurm_lab"
LAB_DIR = Path(os.environ.get("SCR_SLURM_LAB_DIR", "/var/tmp/scr-slurm-lab"))
INSTALL_TIMEOUT = 900.0
START_TIMEOUT = 300.0
CLIENT_TIMEOUT = 60.0
LOCK_WAIT = 900.0  # another session (a colleague's) may hold the lab


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_or_fail(reason: str) -> None:
    if _ci():
        pytest.fail(f"Slurm lab required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _lab_environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SQUEUE_", "SINFO_", "SBATCH_", "SALLOC_", "SRUN_",
                                "SACCT_", "SCR_"))}
    env["LAB_DIR"] = str(LAB_DIR)
    return env


@dataclasses.dataclass
class SlurmLab:
    """The running lab: client wrappers, node names and helpers with timeouts."""

    lab_dir: Path
    nodes: list[str]
    start_seconds: float = 0.0

    @property
    def clientbin(self) -> Path:
        return self.lab_dir / "clientbin"

    def client(self, name: str) -> str:
        return str(self.clientbin / name)

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment for client commands (no SLURM_* of ours leaking in)."""
        env = _lab_environ()
        env.update(extra)
        return env

    def run(self, argv: Sequence[str], timeout: float = CLIENT_TIMEOUT, check: bool = True,
            env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess:
        """Run a Slurm client (argv[0] = its name) where slurmctld is reachable."""
        full = [self.client(argv[0]), *argv[1:]]
        proc = subprocess.run(full, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(full)} failed ({proc.returncode}): "
                                 f"{proc.stderr.strip()} {proc.stdout.strip()}")
        return proc

    def lab(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """The lab control script (crash, restart, down, resume, on ...)."""
        return subprocess.run([str(self.lab_dir / "bin" / "lab"), *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout, check=True)

    def settings(self, **over: Any) -> Any:
        """SlurmSettings whose client commands are the lab wrappers."""
        from scr_plugins_slurm.settings import SlurmSettings

        paths = {c: self.client(c) for c in ("sinfo", "squeue", "scontrol", "sbatch",
                                              "scancel", "sacct", "srun")}
        paths.update(over)
        return SlurmSettings(**paths)

    # -- state helpers ------------------------------------------------------------------------
    def node_states(self) -> dict[str, str]:
        out = self.run(["sinfo", "-h", "-N", "-o", "%N|%T"]).stdout
        return dict(line.split("|", 1) for line in out.split() if "|" in line)

    def wait_node(self, node: str, pattern: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.node_states().get(node, "")
            if re.fullmatch(pattern, state):
                return state
            time.sleep(0.25)
        raise AssertionError(f"{node} did not reach {pattern!r} in {timeout}s (is {state!r})")

    def job_state(self, job_id: str) -> str:
        out = self.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
                       check=False).stdout
        return out.strip()

    def wait_job(self, job_id: str, pattern: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if re.fullmatch(pattern, state):
                return state
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not reach {pattern!r} (is {state!r})")

    def salloc(self, *args: str, timeout: float = 60.0) -> str:
        """``salloc --no-shell ARGS`` -> job id (the allocation keeps running)."""
        proc = self.run(["salloc", "--no-shell", *args], timeout=timeout)
        m = re.search(r"Granted job allocation (\d+)", proc.stderr + proc.stdout)
        assert m, f"salloc gave no job id: {proc.stderr}"
        return m.group(1)

    def job_fields(self, job_id: str) -> dict[str, str]:
        from scr_plugins_slurm.parse import parse_scontrol_job

        return parse_scontrol_job(self.run(["scontrol", "show", "job", "-o", job_id]).stdout)

    def job_env(self, job_id: str, **extra: str) -> dict[str, str]:
        """What a process of the allocation sees: SLURM_JOB_ID and SLURM_JOB_NODELIST."""
        nodes = self.job_fields(job_id)["NodeList"]
        return self.env(SLURM_JOB_ID=job_id, SLURM_JOB_NODELIST=nodes, **extra)

    def reset(self) -> None:
        """Cancel every job, resume admin-downed/drained nodes, restart crashed ones, and
        wait until every node is idle (the next test starts from a clean cluster)."""
        self.run(["scancel", "--full", "-u", "root"], check=False)
        states = self.node_states()
        for node, state in states.items():
            if state.endswith("*") or not self._init_alive(node):
                self.lab("restart", node)
            elif state.rstrip("*~#!%$@^-") not in ("idle", "allocated", "mixed", "completing"):
                self.run(["scontrol", "update", f"nodename={node}", "state=resume"],
                         check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(s == "idle" for s in self.node_states().values()) and not self.run(
                    ["squeue", "-h", "-o", "%i"]).stdout.strip():
                return
            time.sleep(0.25)
        raise AssertionError(f"lab did not return to idle: {self.node_states()}")

    def _init_alive(self, node: str) -> bool:
        pidfile = self.lab_dir / "run" / f"{node}.init.pid"
        try:
            pid = int(pidfile.read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            return False
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _start_lab() -> SlurmLab:
    if os.geteuid() != 0:
        _skip_or_fail("the Slurm lab needs root (network/PID namespaces, daemons)")
    env = _lab_environ()
    t0 = time.monotonic()
    try:
        inst = subprocess.run([str(LAB_SRC / "start-cluster.sh"), "--install-only"], env=env,
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        _skip_or_fail(f"installing Slurm took more than {INSTALL_TIMEOUT:g}s")
    if inst.returncode == 3:
        _skip_or_fail(f"Slurm cannot be installed: {inst.stderr.strip()[-500:]}")
    if inst.returncode != 0:
        pytest.fail(f"start-cluster.sh --install-only failed ({inst.returncode}):\n"
                    f"{inst.stdout[-2000:]}\n{inst.stderr[-2000:]}", pytrace=False)
    try:
        proc = subprocess.run([str(LAB_SRC / "start-cluster.sh")], env=env,
                              capture_output=True, text=True, timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        _stop_lab()
        pytest.fail(f"the Slurm lab did not start within {START_TIMEOUT:g}s: {exc}",
                    pytrace=False)
    if proc.returncode != 0:
        _stop_lab()
        pytest.fail(f"the Slurm lab did not start ({proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", pytrace=False)
    cluster = {}
    for line in (LAB_DIR / "run" / "cluster.env").read_text().splitlines():
        key, _, value = line.partition("=")
        cluster[key] = value.strip('"')
    lab = SlurmLab(lab_dir=LAB_DIR, nodes=cluster["NODES"].split(),
                   start_seconds=time.monotonic() - t0)
    lab.reset()  # a reused cluster may hold a previous session's leftovers
    return lab


def _stop_lab() -> None:
    if os.environ.get("SCR_SLURM_LAB_KEEP") == "1":
        return
    subprocess.run([str(LAB_SRC / "stop-cluster.sh")], env=_lab_environ(),
                   capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def slurm_lab() -> Iterator[SlurmLab]:
    """The running lab cluster (session-wide)."""
    LAB_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{LAB_DIR}.lock", "w") as lock:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session holds {LAB_DIR}.lock", pytrace=False)
                time.sleep(1)
        started = False
        try:
            lab = _start_lab()
            started = True
            yield lab
        finally:
            # stop also after a failed or interrupted start: no half-started daemons left
            if started or os.geteuid() == 0:
                _stop_lab()


@pytest.fixture
def slurm(slurm_lab: SlurmLab) -> Iterator[SlurmLab]:
    """The lab, reset to "every node idle, no jobs" after the test."""
    try:
        yield slurm_lab
    finally:
        slurm_lab.reset()


@pytest.fixture(autouse=True)
def _slurm_marker(request: pytest.FixtureRequest) -> None:
    """Tests marked ``slurm`` get the session cluster started for them."""
    if request.node.get_closest_marker("slurm") is not None:
        request.getfixturevalue("slurm_lab")
