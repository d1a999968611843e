"""Scavenge of real libscr cache data on the Slurm lab's 4 nodes: ``scr scavenge`` against
SCR's own per-node copier ``scr_copy`` launched the same way, CRC on.

Data: ``tests/real_scr/apps/ckpt_files`` (libscr, ``SCR_FLUSH=0 SCR_CACHE_BYPASS=0``, copy
type SINGLE), one rank per lab node (``srun -N4 --mpi=pmix``) in one allocation:

``large``  8 files of 128 MiB per node, 4 GiB in all (default mode: 2 x 128 MiB per node)
``small``  250 files of 8 KiB per node, 1,000 in all. 20,000 (the issue's figure) cannot
           be made by real libscr 3.1.0: from ~1,500 files in one dataset its
           duplicate-name check (``DTCMP_Rankv_strings``) reports distinct names as shared,
           and libscr aborts ("Shared file access detected") across nodes, or silently
           drops files from the filemaps on one node (docs/notes.md, issue 18). The 20k
           small-file case against ``cp -a`` is ``bench_scavenge.py``'s.

Each node's cache is ``/var/tmp/scr-bench-lab/cache/<hostname>`` on the disk (the lab's
private ``/dev/shm`` is a 256 MiB tmpfs); control directories stay in each node's
``/dev/shm``. The prefix is a directory on the same disk.

Measured (interleaved rounds, medians; before each round the prefix's copies, dataset
directory and index are removed, the flush file restored and ``sync`` run, untimed):

* ours: ``scr scavenge --id 1`` in the allocation's environment: the copy agent on every
  node through the launcher executor (``srun --overlap -N1 -w NODE``), batch-node
  verification, summary/rank2file/index/flush writes;
* reference: what SCR's ``scavenge.py`` does: ``mkdir`` of the dataset directory, then
  ``scr_copy --id 1 --cntldir /dev/shm/root/scr.<job> --prefix P --buf 1048576 --crc`` on
  every node at once, each through the same ``srun --overlap -N1 -w NODE``, then
  ``scr_index --prefix P --build 1`` on the batch node.

Target: speed (SCR's time / ours) >= 1.0x.

Needs root, the lab scripts (``tests/slurm_lab``) and real SCR (``tests/real_scr``); the
lab is taken under its lock (waits up to a minute for another session), started if it is
not running and stopped again afterwards in that case. Without them the rows say why.
``--quick`` skips it (the lab and the data take minutes). Limits: the 4 "nodes" share this
VM's 2 cores, its disk and its page cache: the copies read data the page cache mostly
still holds, and all four nodes' copies compete for the same two cores.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402

NAME = "scavenge_lab"
REFERENCE = "SCR's scr_copy per node + scr_index --build"
TARGET = "speed >= 1.0x"
REPO = os.path.dirname(HERE)
LAB_SRC = os.path.join(REPO, "tests", "slurm_lab")
LAB_DIR = os.environ.get("SCR_SLURM_LAB_DIR", "/var/tmp/scr-slurm-lab")
SCR_ROOT = os.environ.get("SCR_REAL_SCR_ROOT", "/var/tmp/real-scr")
WORK = "/var/tmp/scr-bench-lab"
APP_SRC = os.path.join(REPO, "tests", "real_scr", "apps", "ckpt_files.c")


class _Unavailable(Exception):
    pass


def _lab_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SCR_", "SRUN_", "SALLOC_", "SBATCH_"))}
    env["LAB_DIR"] = LAB_DIR
    env.update(extra)
    return env


def _client(name: str) -> str:
    return os.path.join(LAB_DIR, "clientbin", name)


def _run(argv: list, timeout: float = 120, env: dict | None = None) -> str:
    proc = subprocess.run(argv, env=env or _lab_env(), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... exited {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()[:600]}")
    return proc.stdout + proc.stderr


def _build_app() -> str:
    install = os.path.join(SCR_ROOT, "install")
    if not os.path.exists(os.path.join(install, "libexec", "scr_copy")):
        raise _Unavailable("real SCR not installed (tests/real_scr/build.sh)")
    os.makedirs(WORK, exist_ok=True)
    exe = os.path.join(WORK, "ckpt_files")
    _run(["mpicc", "-O2", "-o", exe, APP_SRC, f"-I{install}/include", f"-L{install}/lib",
          f"-Wl,-rpath,{install}/lib", "-lscr"], env=dict(os.environ))
    return exe


class _Lab:
    """The lab under its lock, started if needed, with one 4-node allocation."""

    def __enter__(self) -> _Lab:
        if os.geteuid() != 0:
            raise _Unavailable("the Slurm lab needs root")
        self.lock = open(f"{LAB_DIR}.lock", "w")
        deadline = time.monotonic() + 60
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.lock.close()
                    raise _Unavailable("the Slurm lab is busy (another session holds its "
                                       "lock)") from None
                time.sleep(1)
        self.started = False
        self.job = None
        try:
            was_up = os.path.exists(_client("sinfo")) and subprocess.run(
                [_client("sinfo"), "-h"], env=_lab_env(), capture_output=True,
                timeout=20).returncode == 0
            if not was_up:
                proc = subprocess.run([os.path.join(LAB_SRC, "start-cluster.sh")],
                                      env=_lab_env(), capture_output=True, text=True,
                                      timeout=600)
                if proc.returncode != 0:
                    raise _Unavailable(f"the Slurm lab did not start: "
                                       f"{proc.stderr.strip()[-200:]}")
                self.started = True
            out = _run([_client("salloc"), "--no-shell", "--no-kill", "-N4", "-t", "60"])
            m = re.search(r"Granted job allocation (\d+)", out)
            if not m:
                raise RuntimeError(f"salloc gave no job id: {out[-200:]}")
            self.job = m.group(1)
            self.nodes = ["n1", "n2", "n3", "n4"]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.job:
            subprocess.run([_client("scancel"), self.job], env=_lab_env(),
                           capture_output=True, timeout=30)
        if self.started:
            subprocess.run([os.path.join(LAB_SRC, "stop-cluster.sh")], env=_lab_env(),
                           capture_output=True, timeout=120)
        self.lock.close()

    def srun(self, *args: str) -> list:
        return [_client("srun"), "--jobid", self.job, *args]


def _job_env(lab: _Lab, prefix: str, settings: str) -> dict:
    return common.clean_env({
        "SLURM_JOB_ID": lab.job, "SLURM_JOB_NODELIST": "n[1-4]", "SCR_PREFIX": prefix,
        "SCR_SETTINGS_FILE": settings, "SCR_NODE_TESTS": "none", "USER": "root",
        "SCR_SCAVENGE_SYNC": "none", "SCR_REMOTE_EXEC": "launcher", "SCR_LAUNCHER": "srun",
        "LAB_DIR": LAB_DIR})


def _write_data(lab: _Lab, app: str, prefix: str, files: int, size: int) -> None:
    cache = os.path.join(WORK, "cache")
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(prefix, ignore_errors=True)
    os.makedirs(cache)
    os.makedirs(prefix)
    # the previous case's control directories name cache directories that are gone now
    _run(lab.srun("-N4", "--ntasks-per-node=1", "rm", "-rf", f"/dev/shm/root/scr.{lab.job}"))
    env = _lab_env(USER="root", SCR_JOB_ID=lab.job, SCR_PREFIX=prefix, SCR_FLUSH="0",
                   SCR_CACHE_BYPASS="0", SCR_COPY_TYPE="SINGLE")
    # every node's cache under its own hostname: one srun, each task picks its directory
    script = f'export SCR_CACHE_BASE={cache}/$(hostname); exec "$@"'
    _run(lab.srun("-N4", "--ntasks-per-node=1", "--mpi=pmix", "--chdir", prefix, "sh", "-c",
                  script, "sh", app, str(files), str(size)), timeout=1800, env=env)


def _reset(prefix: str, flush_bytes: bytes) -> None:
    os.sync()
    shutil.rmtree(os.path.join(prefix, "ckpt.1"), ignore_errors=True)
    shutil.rmtree(os.path.join(prefix, ".scr", "scr.dataset.1"), ignore_errors=True)
    try:
        os.unlink(os.path.join(prefix, ".scr", "index.scr"))
    except FileNotFoundError:
        pass
    with open(os.path.join(prefix, ".scr", "flush.scr"), "wb") as fh:
        fh.write(flush_bytes)
    os.sync()


def _case(lab: _Lab, app: str, label: str, files: int, size: int, rounds: int) -> list[dict]:
    prefix = os.path.join(WORK, f"prefix-{label}")
    common.progress(f"{NAME}: writing {label} ({4 * files} files of {size} bytes) with libscr")
    _write_data(lab, app, prefix, files, size)
    with open(os.path.join(prefix, ".scr", "flush.scr"), "rb") as fh:
        flush_bytes = fh.read()
    settings = os.path.join(WORK, "settings.yaml")
    with open(settings, "w") as fh:
        fh.write("slurm:\n" + "".join(f"  {c}: {_client(c)}\n"
                                      for c in ("sinfo", "squeue", "scontrol", "srun")))
    env = _job_env(lab, prefix, settings)
    ours = [os.path.join(common.VENV_BIN, "scr"), "scavenge", "--id", "1", "--quiet"]
    libexec = os.path.join(SCR_ROOT, "install", "libexec")
    scr_index = os.path.join(SCR_ROOT, "install", "bin", "scr_index")

    def run_ours() -> float:
        _reset(prefix, flush_bytes)
        return common.time_subprocess(ours, env=env, cap=900)[0]

    def run_scr() -> float:
        _reset(prefix, flush_bytes)
        t0 = time.perf_counter()
        os.makedirs(os.path.join(prefix, ".scr", "scr.dataset.1"))
        procs = [subprocess.Popen(lab.srun(
            "--nodes=1", "--ntasks=1", f"--nodelist={node}", "--overlap", "--mpi=none",
            os.path.join(libexec, "scr_copy"), "--id", "1", "--cntldir",
            f"/dev/shm/root/scr.{lab.job}", "--prefix", prefix, "--buf", "1048576", "--crc"),
            env=_lab_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for node in lab.nodes]
        errors = [p.communicate(timeout=900)[1] for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError(f"scr_copy failed: {errors[0][-300:]!r}")
        _run([scr_index, "--prefix", prefix, "--build", "1"], env=dict(os.environ))
        return time.perf_counter() - t0

    samples = common.interleave({"ours": run_ours, "scr": run_scr}, rounds)
    note = (f"4 nodes x {files} file(s) x {common.fmt_count(size)} B "
            f"({4 * files * size / 2**30:.2f} GiB)")
    for key in ("ours", "scr"):
        if samples[key].error:
            note += f"; {key}: {samples[key].error}"
    shutil.rmtree(prefix, ignore_errors=True)
    return [common.make_row(NAME, f"{label} {4 * files} files", samples["ours"].median,
                            REFERENCE, samples["scr"].median, TARGET, note)]


def run(quick: bool, full: bool = False) -> list[dict]:
    if quick:
        return [common.make_row(NAME, case, None, REFERENCE, None, TARGET,
                                "skipped in --quick (needs the Slurm lab and minutes)")
                for case in ("large", "small")]
    cases = ([("large", 8, 128 << 20), ("small", 250, 8192)] if full
             else [("large", 2, 128 << 20), ("small", 250, 8192)])
    try:
        app = _build_app()
        with _Lab() as lab:
            rows: list[dict] = []
            for label, files, size in cases:
                try:
                    rows += _case(lab, app, label, files, size, rounds=3)
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    rows.append(common.make_row(NAME, label, None, REFERENCE, None, TARGET,
                                                f"failed: {exc}"))
            return rows
    except _Unavailable as exc:
        return [common.make_row(NAME, label, None, REFERENCE, None, TARGET, str(exc))
                for label, _, _ in cases]
    finally:
        shutil.rmtree(os.path.join(WORK, "cache"), ignore_errors=True)


if __name__ == "__main__":
    sys.exit(common.standalone(run))
