"""Real SCR across the Slurm lab: SCR's ``test_api`` (libscr, Open MPI through
``srun --mpi=pmix``) on 3 of the lab's 4 nodes, each with its own hostname and private
``/dev/shm`` cache, with PARTNER or XOR redundancy, through real node crashes.

* ``scr_run srun``: a node crashes mid-run; the relaunch on the survivors plus the spare
  restarts from cache, libscr rebuilding the lost node's part, and finishes with its data
  verified by test_api; postrun saves the newest checkpoint.
* A node crashes after the last checkpoint and the allocation ends: ``scr postrun``
  scavenges from the survivors and the dataset is completed by SCR's ``scr_index --build``
  (our delegation); test_api restarts from the prefix in a new allocation.
* SCR's own job script template (``scr_srun_loop.sh`` from the SCR tarball) driving our
  ``scr_prerun``, ``scr_should_exit``, ``scr_list_down_nodes`` and ``scr_postrun``.

libscr is built with ``SCR_RESOURCE_MANAGER=NONE``: its job id is ``SCR_JOB_ID``, set to the
Slurm job id in each batch script.
"""

from __future__ import annotations

import re
import sys
import tarfile
import time
from pathlib import Path

import pytest
from scr_core.control.flush import FlushFile
from scr_core.control.index import IndexFile

from scr_plugins_slurm import parse

pytestmark = [pytest.mark.slurm, pytest.mark.real_scr]

PY = sys.executable
BIN = str(Path(PY).parent)
TARBALL = Path(__file__).parent / "real_scr" / "src" / "scr-3.1.0.tar.gz"


def submit(slurm, tmp_path: Path, body: str, *sbatch_args: str, name: str = "job",
           args: tuple = ()) -> tuple:
    out = tmp_path / f"{name}.out"
    script = tmp_path / f"{name}.sh"
    script.write_text(body if body.startswith("#!") else "#!/bin/bash\n" + body)
    script.chmod(0o755)
    # test_api writes its files relative to its working directory: the prefix
    proc = slurm.run(["sbatch", "--parsable", "--no-kill", *sbatch_args, f"--output={out}",
                      f"--chdir={tmp_path / 'prefix'}", str(script), *args], timeout=30)
    return parse.parse_sbatch_parsable(proc.stdout), out


def finish(slurm, jid: str, out: Path, timeout: float = 240) -> str:
    state = slurm.wait_job(jid, "COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|", timeout)
    return f"[job {state or 'gone'}]\n" + (out.read_text() if out.exists() else "")


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def checkpoints(prefix: Path) -> int:
    try:
        return len(FlushFile(prefix).list_ckpt())
    except Exception:  # not written yet, or being replaced
        return 0


def exports(prefix: Path, copy_type: str, **extra: str) -> str:
    """libscr's and our settings for a batch script (SCR_JOB_ID: the Slurm job)."""
    values = {"USER": "root", "SCR_PREFIX": str(prefix), "SCR_FLUSH": "0",
              "SCR_CACHE_BYPASS": "0", "SCR_CACHE_SIZE": "2", "SCR_COPY_TYPE": copy_type,
              "SCR_SET_SIZE": "3", "SCR_NODE_TESTS": "none", "SCR_RUN_SETTLE_SECONDS": "2",
              "PATH": f"{BIN}:/usr/bin:/bin", **extra}
    return ("export SCR_JOB_ID=$SLURM_JOB_ID\n" +
            "".join(f"export {k}='{v}'\n" for k, v in values.items()))


def restarted_from(text: str) -> list[str]:
    return re.findall(r"^Restarting from checkpoint named (\S+)", text, re.M)


def assert_verified(text: str) -> None:
    """test_api checks every byte it restarts from; these are its complaints (a first run
    has nothing to restart from and says so before its first checkpoint)."""
    restarted = text[text.index("Restarting from checkpoint named"):]
    for bad in ("Invalid value", "not correct", "did not find its checkpoint",
                "Could not read checkpoint", "ABORT"):
        assert bad not in restarted, text


def listing(real_scr, prefix: Path) -> dict[str, tuple[str, bool]]:
    proc = real_scr.run_tool("scr_index", "--prefix", str(prefix), "--list")
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines()[1:]:
        parts = line.split()
        rows[parts[-1]] = (parts[1], "*" in parts)
    return rows


def test_scr_run_node_crash_mid_run_xor_rebuilds_from_cache(slurm, real_scr, tmp_path):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    app = real_scr.app("test_api")
    body = (exports(prefix, "XOR", SCR_RUNS="3", SCR_MIN_NODES="3") +
            f"scr_run srun -N3 --ntasks-per-node=1 --mpi=pmix {app} -s 256KB -t 10 -z 1\n"
            "echo SCR_RUN_EXIT=$?\n")
    jid, out = submit(slurm, tmp_path, body, "-N4", "-t", "10")
    wait_for(lambda: checkpoints(prefix) >= 2, 120, "two checkpoints in cache")
    slurm.lab("crash", "n3")
    text = finish(slurm, jid, out, timeout=300)
    assert "SCR_RUN_EXIT=0" in text, text
    assert "excluding n3" in text, text
    # nothing was ever flushed: the restart can only come from the caches, with n3's part
    # rebuilt from the XOR set on n1, n2 (n4, the spare, had nothing)
    names = restarted_from(text)
    assert names and names[0].startswith("ckpt."), text
    assert_verified(text)
    rows = listing(real_scr, prefix)
    current = [name for name, (_, cur) in rows.items() if cur]
    assert len(current) == 1 and rows[current[0]][0] == "YES", rows


def test_crash_after_last_checkpoint_scavenge_rebuilds_with_scr_index(slurm, real_scr,
                                                                      tmp_path):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    go = tmp_path / "go"
    app = real_scr.app("test_api")
    scr_index = real_scr.tool("scr_index")
    body = (exports(prefix, "PARTNER", SCR_INDEX_EXE=scr_index) +
            f"srun -N3 --ntasks-per-node=1 --mpi=pmix {app} -s 256KB -t 3\n"
            "echo APP_EXIT=$?\n"
            f"touch {tmp_path}/ran\n"
            f"while [ ! -e {go} ]; do sleep 0.2; done\n"
            "scr postrun -j srun\n"
            "echo POSTRUN_EXIT=$?\n")
    jid, out = submit(slurm, tmp_path, body, "-N4", "-t", "10")
    wait_for(lambda: (tmp_path / "ran").exists(), 120, "the application's end")
    slurm.lab("crash", "n3")
    slurm.wait_node("n3", r"down\*|idle\*|mixed\*|allocated\*", 90)
    go.touch()
    text = finish(slurm, jid, out, timeout=240)
    assert "APP_EXIT=0" in text and "POSTRUN_EXIT=0" in text, text
    latest = FlushFile(prefix).name(FlushFile(prefix).latest())
    # n3's rank came back from its partner's copy, and was verified before being recorded
    assert re.search(r"saved \(rebuilt by scr_index\): 3 rank\(s\), 3 file\(s\)", text), text
    assert listing(real_scr, prefix) == {latest: ("YES", True)}
    assert next(e for e in IndexFile(prefix).entries() if e.name == latest).valid
    slurm.reset()

    # a new allocation restarts from the prefix (its caches are empty)
    body = (exports(prefix, "PARTNER", SCR_FETCH="1") +
            f"srun -N3 --ntasks-per-node=1 --mpi=pmix {app} -s 256KB -t 1\n"
            "echo APP_EXIT=$?\n")
    jid, out = submit(slurm, tmp_path, body, "-N3", "-t", "5", name="restart")
    text = finish(slurm, jid, out, timeout=180)
    assert "APP_EXIT=0" in text, text
    assert restarted_from(text) == [latest], text
    assert_verified(text)


def _srun_loop_template() -> str:
    with tarfile.open(TARBALL) as tar:
        member = next(m for m in tar.getmembers()
                      if m.name.endswith("scripts/jobscripts/scr_srun_loop.sh"))
        return tar.extractfile(member).read().decode()


def test_scrs_job_script_template_drives_our_commands_through_a_crash(slurm, real_scr,
                                                                      tmp_path):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    template = _srun_loop_template()
    # what a user edits: where the commands are, the prefix; and the template's own hint
    # ("give nodes a chance to clean up") shortened for a test
    script = (template.replace("@X_BINDIR@", BIN)
              .replace("scr_prefix=`pwd`", f"scr_prefix={prefix}")
              .replace("sleep 60", "sleep 2")
              .replace("runs=5", "runs=3"))
    assert script.count(BIN) == 1 and "sleep 2" in script
    head, _, rest = script.partition("\n")
    script = head + "\n" + exports(prefix, "PARTNER", SCR_MIN_NODES="3") + rest
    app = real_scr.app("test_api")
    jid, out = submit(slurm, tmp_path, script, "-N4", "-t", "10", name="loop",
                      args=("-N3", "--ntasks-per-node=1", "--mpi=pmix", app, "-s", "256KB",
                            "-t", "10", "-z", "1"))
    wait_for(lambda: checkpoints(prefix) >= 2, 120, "two checkpoints in cache")
    slurm.lab("crash", "n3")
    text = finish(slurm, jid, out, timeout=300)
    launches = re.findall(r"^\+ srun .*test_api", text, re.M)
    assert len(launches) >= 2 and "--exclude n3" in launches[1], text
    names = restarted_from(text)
    assert names and names[0].startswith("ckpt."), text
    assert_verified(text)
    assert re.search(r"^\++ .*/scr_list_down_nodes -j srun\n\+ down_nodes=n3$", text, re.M), text
    assert re.search(r"^scr postrun: dataset \d+ \(ckpt\.\d+\) saved", text, re.M), text
    rows = listing(real_scr, prefix)
    current = [name for name, (_, cur) in rows.items() if cur]
    assert len(current) == 1 and rows[current[0]][0] == "YES", (rows, text)
    # SCR's semantics: after the successful run (SCR_Finalize), scr_should_exit within the
    # allocation says stop, so the loop launches twice (depends on i16a's change)
    assert len(launches) == 2, text
    assert "Halt condition detected, ending run." in text, text
