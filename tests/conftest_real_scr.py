"""pytest plugin: LLNL's real SCR v3.1.0 (libscr and its C tools) for tests marked
``@pytest.mark.real_scr``.

The first marked test builds SCR from the source tarballs in ``tests/real_scr/src`` with
``tests/real_scr/build.sh`` (about a minute; idempotent, stamps per component) into
``/var/tmp/real-scr/install`` under ``flock /var/tmp/real-scr.lock`` (the lock another
session's build holds too), then compiles the test applications once: SCR's own
``test_api`` (from the installed examples) and ``tests/real_scr/apps/*.c``, cached under
``/var/tmp/real-scr/apps/<hash of their sources>``.

Skips: only when SCR cannot be built because its Debian packages cannot be installed (not
root, or apt fails). With ``CI=true`` that is a failure instead. A failed build is always a
failure. ``SCR_REAL_SCR_ROOT`` moves the cache.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

import pytest

SRC = Path(__file__).resolve().parent / "real_scr"
ROOT = Path(os.environ.get("SCR_REAL_SCR_ROOT", "/var/tmp/real-scr"))
LOCK = Path(f"{ROOT}.lock")
BUILD_TIMEOUT = 1800.0
LOCK_WAIT = 1800.0
MPIRUN_TIMEOUT = 120.0


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_or_fail(reason: str) -> None:
    if _ci():
        pytest.fail(f"real SCR required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclasses.dataclass
class RealScr:
    """The installed SCR and the compiled test applications."""

    install: Path
    apps: Path

    def tool(self, name: str) -> str:
        """Path of an SCR tool (``bin/`` or ``libexec/``)."""
        for sub in ("bin", "libexec"):
            path = self.install / sub / name
            if path.exists():
                return str(path)
        raise AssertionError(f"SCR tool {name} is not installed in {self.install}")

    def app(self, name: str) -> str:
        return str(self.apps / name)

    def env(self, prefix: str | os.PathLike[str], cache: str | os.PathLike[str],
            cntl: str | os.PathLike[str] | None = None, jobid: str = "1",
            **extra: str) -> dict[str, str]:
        """Environment of a libscr run: no SCR_*/SLURM_* of ours, USER set (libscr aborts
        without it), control and cache under the given directories, no flush."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SCR_", "SLURM_", "OMPI_", "PMIX_"))}
        env.update(USER=env.get("USER") or "root", SCR_JOB_ID=jobid, SCR_PREFIX=str(prefix),
                   SCR_CACHE_BASE=str(cache), SCR_CNTL_BASE=str(cntl or cache),
                   SCR_FLUSH="0", SCR_CACHE_BYPASS="0")
        env.update(extra)
        return env

    def mpirun(self, argv: Sequence[str], env: dict[str, str], np: int = 2,
               cwd: str | os.PathLike[str] | None = None,
               timeout: float = MPIRUN_TIMEOUT) -> subprocess.CompletedProcess:
        """``mpirun -np N argv`` on this machine (Open MPI, as root)."""
        return subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np",
                               str(np), *argv], env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)

    def run_tool(self, name: str, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 60.0, **kw: Any) -> subprocess.CompletedProcess:
        return subprocess.run([self.tool(name), *args], env=env, capture_output=True,
                              text=True, timeout=timeout, **kw)


def _apps_hash(examples: Path) -> str:
    h = hashlib.sha256()
    sources = [*sorted((SRC / "apps").glob("*.c")), examples / "test_api.c",
               examples / "test_common.c", examples / "test_common.h"]
    for path in sources:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    h.update(str((ROOT / "install" / "lib" / "libscr.so").stat().st_mtime_ns).encode())
    return h.hexdigest()[:16]


def _build_apps(install: Path) -> Path:
    examples = install / "share" / "scr" / "examples"
    apps = ROOT / "apps" / _apps_hash(examples)
    if (apps / ".done").exists():
        return apps
    work = Path(f"{apps}.tmp.{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    flags = [f"-I{install}/include", f"-L{install}/lib", f"-Wl,-rpath,{install}/lib", "-lscr"]
    steps = [["mpicc", "-O2", "-o", "test_api", str(examples / "test_api.c"),
              str(examples / "test_common.c"), *flags]]
    steps += [["mpicc", "-O2", "-o", src.stem, str(src), *flags]
              for src in sorted((SRC / "apps").glob("*.c"))]
    for argv in steps:
        proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            pytest.fail(f"building {argv[3]} against real SCR failed:\n{proc.stderr[-3000:]}",
                        pytrace=False)
    (work / ".done").write_text("ok\n")
    shutil.rmtree(apps, ignore_errors=True)
    os.replace(work, apps)
    return apps


def _build() -> RealScr:
    install = ROOT / "install"
    ROOT.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # a colleague's session is building it
                if time.monotonic() > deadline:
                    pytest.fail(f"another session holds {LOCK} for too long", pytrace=False)
                time.sleep(1)
        env = dict(os.environ, ROOT=str(ROOT))
        if os.geteuid() != 0 and not (install / "lib" / "libscr.so").exists():
            _skip_or_fail("building real SCR needs root (apt-get of its build tools)")
        try:
            proc = subprocess.run(["bash", str(SRC / "build.sh")], env=env,
                                  capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"building real SCR took more than {BUILD_TIMEOUT:g}s", pytrace=False)
        if proc.returncode != 0:
            out = proc.stdout[-2000:] + proc.stderr[-2000:]
            if "apt-get install" in proc.stdout and "all components installed" not in out \
                    and shutil.which("mpicc") is None:
                _skip_or_fail(f"SCR's build tools cannot be installed: {out[-500:]}")
            pytest.fail(f"tests/real_scr/build.sh failed ({proc.returncode}):\n{out}",
                        pytrace=False)
        return RealScr(install=install, apps=_build_apps(install))


@pytest.fixture(scope="session")
def real_scr() -> RealScr:
    """The installed real SCR (built on first use) and the compiled test applications."""
    return _build()


@pytest.fixture(autouse=True)
def _real_scr_marker(request: pytest.FixtureRequest) -> None:
    """Tests marked ``real_scr`` get the build done for them."""
    if request.node.get_closest_marker("real_scr") is not None:
        request.getfixturevalue("real_scr")
