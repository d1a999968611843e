"""``scr run flux run ...`` end to end on the real Flux lab (tests/flux_lab, conftest_flux).

Jobs are real ``flux alloc``/``flux batch`` jobs on the lab's 4 brokers; their scripts run
``scr run flux run ...`` on n1 (the nested instance's rank 0) with the project's venv (``/work``
and ``/tmp`` are shared with the lab nodes; ``/dev/shm`` is private per node, as node-local
cache is). Failures are real: ``lab crash nX`` kills the node's broker, the nested
instance's broker and every task there at once, and cuts its link.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.flux

PY = sys.executable
DEMO = f"{PY} -m scr_core.demo --step-seconds 0.1 --ckpt-every 10 --size-kb 4"
WRITER = Path(__file__).parent / "ckpt_writer.py"


def env_lines(prefix: Path, **extra: str) -> str:
    """Exports for the job script; the node tests are off (the RM already knows about
    crashed nodes, and they add seconds per check)."""
    values = {"SCR_PREFIX": str(prefix), "SCR_RUN_SETTLE_SECONDS": "2",
              "SCR_NODE_TESTS": "none", **extra}
    return "".join(f"export {k}='{v}'\n" for k, v in values.items())


def start(flux, tmp_path: Path, body: str, *alloc_args: str) -> tuple[subprocess.Popen, Path]:
    """``flux alloc ALLOC_ARGS SCRIPT`` in the background -> (process, output file)."""
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    out = tmp_path / "job.out"
    fh = open(out, "w")
    proc = subprocess.Popen([flux.flux, "alloc", *alloc_args, str(script)], env=flux.env(),
                            stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path)
    fh.close()
    return proc, out


def finish(proc: subprocess.Popen, out: Path, timeout: float = 180) -> str:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = "timeout"
    return f"[flux alloc rc={rc}]\n" + out.read_text()


def wait_file(path: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def exit_code(text: str) -> int:
    m = re.search(r"^SCR_RUN_EXIT=(\d+)$", text, re.M)
    assert m, text
    return int(m.group(1))


def test_broker_killed_mid_step_relaunch_on_the_spare_and_resume(flux_instance, tmp_path):
    """``scr run flux run -N3`` inside ``flux alloc -N4``: n3 is SIGKILLed mid-step, Flux
    fails the step (node failure), scr run sees n3 offline, relaunches -N3 excluding n3
    (on n1, n2 and the spare n4), resumes from the last checkpoint and exits 0."""
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    hosts = tmp_path / "hosts"
    body = (env_lines(prefix, SCR_RUNS="3", SCR_MIN_NODES="3") +
            f"{PY} -m scr_core run flux run -N3 sh -c "
            f"'hostname >> {hosts}.$FLUX_JOB_ID; exec {DEMO} --steps 120'\n"
            "echo SCR_RUN_EXIT=$?\n"
            f"{PY} -m scr_core list-down-nodes --reason\n")
    proc, out = start(flux_instance, tmp_path, body, "-N4", "-t", "10m")
    wait_file(prefix / ".scr" / "index.scr", 90, "the first checkpoint")
    flux_instance.lab("crash", "n3")
    text = finish(proc, out)
    assert exit_code(text) == 0, text
    assert "node failure on n3" in text
    assert "node n3 is down: offline" in text, text
    assert "run 2 of 3 on 3 node(s), excluding n3" in text, text
    assert re.search(r"restarting from checkpoint ckpt\.\d+", text), text
    assert "finished all 120 steps" in text
    assert re.search(r"^n3: offline", text, re.M), text
    runs = sorted(hosts.parent.glob("hosts.*"), key=lambda p: p.stat().st_mtime)
    assert [sorted(p.read_text().split()) for p in runs] == [["n1", "n2", "n3"],
                                                             ["n1", "n2", "n4"]]


def test_halt_by_time_left_from_the_job_expiration(flux_instance, tmp_path):
    """A 30 s allocation with SCR_HALT_SECONDS=25: the time left (from the alloc job's
    expiration) falls below it about 5 s in and the application halts (exit 10)."""
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    body = (env_lines(prefix, SCR_HALT_SECONDS="25") +
            f"{PY} -m scr_core run flux run -N2 {DEMO} --steps 3000\n"
            "echo SCR_RUN_EXIT=$?\n")
    proc, out = start(flux_instance, tmp_path, body, "-N2", "-t", "30s")
    text = finish(proc, out, timeout=90)
    assert exit_code(text) == 10, text
    assert "seconds left in the allocation" in text
    assert "halting at step" in text


def test_postrun_scavenges_from_the_surviving_nodes(flux_instance, tmp_path):
    """The spare n4 of ``flux alloc -N4`` crashes; ``scr run flux run -N3`` writes a
    checkpoint that exists only in the node-local caches (/dev/shm) of n1..n3, and the
    postrun copies it to the prefix through ``flux exec`` on those surviving nodes."""
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    ready, go = tmp_path / "ready", tmp_path / "go"
    body = (env_lines(prefix, SCR_MIN_NODES="3") +
            f"touch {ready}; while [ ! -e {go} ]; do sleep 0.1; done\n"
            # until this instance, too, has seen n4 go
            "until [ \"$(flux resource status -s offline -no '{nodelist}')\" = n4 ]; do "
            "sleep 0.1; done\n"
            f"{PY} -m scr_core run flux run -N3 -n3 {PY} {WRITER} --per-rank "
            f"--prefix {prefix} --id 1 --files-per-rank 2 --size 5000 "
            "--jobid $(flux getattr jobid)\n"
            "echo SCR_RUN_EXIT=$?\n")
    proc, out = start(flux_instance, tmp_path, body, "-N4", "-t", "10m")
    wait_file(ready, 60, "the allocation")
    flux_instance.lab("crash", "n4")
    go.touch()
    text = finish(proc, out)
    assert exit_code(text) == 0, text
    assert "run 1 of 1 on 3 node(s), excluding n4" in text, text
    assert "postrun: node n4 is down: offline" in text, text
    assert "postrun: dataset 1 (ckpt.1) saved: 3 rank(s), 6 file(s), 30000 bytes" in text
    assert "restart point (CURRENT) is ckpt.1" in text
    for rank in range(3):
        for index in range(2):
            path = prefix / "ckpt.1" / f"rank_{rank}" / f"file_{index}.dat"
            assert path.stat().st_size == 5000, text
    summary = prefix / ".scr" / "scr.dataset.1"
    assert (summary / "summary.scr").exists(), text
    report = next(summary.glob("scavenge.o*")).read_text()
    assert [ln for ln in report.splitlines() if re.fullmatch(r"n\d", ln)] == ["n1", "n2", "n3"]


def test_default_node_tests_through_flux_exclude_a_full_cache(flux_instance, tmp_path):
    """Nothing configured: the default node tests (ping, echo, dir_capacity) reach the
    brokers' nodes by name and through ``flux exec``, pass on healthy nodes, and catch n2,
    whose cache file system is full (Flux does not know); scr run goes on without it."""
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    fill = "/dev/shm/scr-test-fill"
    flux_instance.lab("on", "n2", "sh", "-c", f"cat /dev/zero > {fill} 2>/dev/null; true")
    try:
        body = (env_lines(prefix, SCR_MIN_NODES="3").replace("export SCR_NODE_TESTS='none'\n",
                                                             "") +
                f"{PY} -m scr_core list-down-nodes --reason; echo LIST_EXIT=$?\n"
                f"{PY} -m scr_core run flux run -N4 {DEMO} --steps 20\n"
                "echo SCR_RUN_EXIT=$?\n")
        proc, out = start(flux_instance, tmp_path, body, "-N4", "-t", "10m")
        text = finish(proc, out)
    finally:
        flux_instance.lab("on", "n2", "rm", "-f", fill)
    assert "LIST_EXIT=0" in text, text
    assert re.search(r"^n2: Failed dir check: .*No space left", text, re.M), text
    assert not re.search(r"^n[134]: ", text, re.M), text  # the others passed every test
    assert exit_code(text) == 0, text
    assert "run 1 of 1 on 3 node(s), excluding n2" in text, text
    assert "finished all 20 steps" in text


# --------------------------------------------------------------------------- real SCR

@pytest.mark.real_scr
def test_real_scr_test_api_xor_node_killed_relaunch_on_the_spare_restart_from_cache(
        flux_instance, real_scr, tmp_path):
    """LLNL/scr #553, on Flux: SCR's ``test_api`` with XOR redundancy in /dev/shm on 2 of the
    3 nodes of ``flux alloc -N3``, nothing flushed; n2 is killed mid-run; control comes back
    to the job script within seconds, n2 is found down, the job is relaunched on n1 and the
    spare n3 and libscr restarts from the cached checkpoint (n2's part rebuilt from XOR);
    the postrun then saves the last checkpoint from the surviving nodes."""
    test_api = real_scr.app("test_api")  # tests/conftest_real_scr.py builds it
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    body = ("export SCR_JOB_ID=$(flux getattr jobid)\n" +
            env_lines(prefix, USER="root", SCR_FLUSH="0", SCR_CACHE_BYPASS="0",
                      SCR_CACHE_SIZE="2", SCR_COPY_TYPE="XOR", SCR_SET_SIZE="2",
                      SCR_RUNS="3", SCR_MIN_NODES="2") +
            f"cd {prefix}\n"  # libscr wants the checkpoint files under SCR_PREFIX
            f"{PY} -m scr_core run flux run -N2 -n2 {test_api} -s 256KB -t 6 -z 1\n"
            "echo SCR_RUN_EXIT=$?\n")
    proc, out = start(flux_instance, tmp_path, body, "-N3", "-t", "10m")
    deadline = time.monotonic() + 120
    while out.read_text().count("Completed checkpoint") < 2:
        assert time.monotonic() < deadline and proc.poll() is None, out.read_text()
        time.sleep(0.1)
    flux_instance.lab("crash", "n2")
    crashed = time.monotonic()
    while "run 1 ended with exit code" not in out.read_text():
        assert time.monotonic() - crashed < 10, out.read_text()
        time.sleep(0.05)
    back = time.monotonic() - crashed
    text = finish(proc, out, timeout=180)
    assert back < 5, text  # control back to the job script within seconds
    assert exit_code(text) == 0, text
    assert "node failure on n2" in text and "node n2 is down: offline" in text, text
    assert "run 2 of 3 on 2 node(s), excluding n2" in text, text
    # nothing was flushed (SCR_FLUSH=0): the restart can only come from the caches
    assert re.search(r"^Restarting from checkpoint named ckpt\.[2-9]", text, re.M), text
    relaunched = text.split("run 2 of 3")[1]
    for bad in ("Invalid value", "not correct", "did not find its checkpoint",
                "Could not read checkpoint"):  # test_api verifies what it restarts from
        assert bad not in relaunched, text
    assert re.search(r"postrun: dataset \d+ \(ckpt\.\d+\) saved: 2 rank\(s\)", text), text
