"""A small SCR-style application for demos and tests: ``python -m scr_core.demo``.

Every task (rank) counts steps; every ``--ckpt-every`` steps each rank writes its state to
node-local cache (``$SCR_CACHE_BASE/<user>/scr.<jobid>/scr.dataset.<step>``), copies it to
``<prefix>/ckpt.<step>/``, and rank 0, once every rank's copy is there, records the dataset as
SCR does (flush.scr, summary.scr, index.scr with CURRENT). On start it resumes from the index's
CURRENT checkpoint. Like the SCR library, rank 0 checks the halt file at each checkpoint
(decrementing CheckpointsLeft) and all ranks stop cleanly when a halt condition holds.

The ranks coordinate through the (shared) prefix only: rank 0 publishes a decision per
checkpoint, which the others wait for. Rank and size come from the launcher's environment
(Slurm, Open MPI/PMIx, LSF jsrun, Flux, the local backend).

With ``SCR_LOG_ENABLE=1`` rank 0 writes the SCR log lines libscr writes (``START``,
``RESTART_SUCCESS``, ``CHECKPOINT_START``/``_END``, ``xfer=CHECKPOINT`` and ``xfer=FLUSH_SYNC``
with bytes and seconds, ``HALT``), so that ``scr report`` and ``scr ckpt-interval`` have what a real
application gives them.

Failure injection, each at most once per prefix (marker files in ``<prefix>/.scr``):
``--fail-at-step N`` (rank 0 exits 1), ``--hang-at-step N`` (every rank hangs),
``--crash-node-at-step N`` (the last rank's node dies: on the local backend the virtual node
is crashed; elsewhere the rank kills its own process group).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time

RANK_VARS = ("SCR_LOCAL_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMIX_RANK",
             "JSM_NAMESPACE_RANK", "FLUX_TASK_RANK", "PMI_RANK")
SIZE_VARS = ("SCR_LOCAL_NRANKS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "JSM_NAMESPACE_SIZE",
             "FLUX_JOB_SIZE", "PMI_SIZE")
WAIT_SECONDS = 120.0


def _first_int(names: tuple, default: int) -> int:
    for n in names:
        v = os.environ.get(n)
        if v not in (None, ""):
            try:
                return int(v)
            except ValueError:
                pass
    return default


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _wait_for(path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rank = _first_int(RANK_VARS, 0)
        self.size = _first_int(SIZE_VARS, 1)
        self.prefix = os.path.abspath(os.environ.get("SCR_PREFIX") or os.getcwd())
        self.scr_dir = os.path.join(self.prefix, ".scr")
        os.makedirs(self.scr_dir, exist_ok=True)
        run_id = os.environ.get("SCR_RUN_ID") or f"run.{os.getppid()}"
        self.run_id = run_id.replace("/", "_")
        self.job_id = (os.environ.get("SLURM_JOB_ID") or os.environ.get("LSB_JOBID")
                       or os.environ.get("FLUX_JOB_ID") or run_id.rsplit(".", 1)[0])
        self.user = os.environ.get("USER") or "user"
        self.cache_base = os.environ.get("SCR_CACHE_BASE") or "/dev/shm"
        self.sync_dir = os.path.join(self.scr_dir, "demo.sync")
        os.makedirs(self.sync_dir, exist_ok=True)
        self.log = None
        if self.rank == 0 and (os.environ.get("SCR_LOG_ENABLE") or "0").strip() == "1":
            from .scrlog import ScrLog

            self.log = ScrLog(self.prefix, self.job_id, user=self.user,
                              host=os.environ.get("SCR_LOCAL_NODE") or socket.gethostname())

    def say(self, msg: str) -> None:
        print(f"demo[{self.rank}/{self.size}@{socket.gethostname()}"
              f"{'/' + os.environ['SCR_LOCAL_NODE'] if 'SCR_LOCAL_NODE' in os.environ else ''}"
              f"]: {msg}", flush=True)

    # -- restart ------------------------------------------------------------------------------
    def restart_step(self) -> int:
        from .control.index import IndexFile

        try:
            index = IndexFile(self.prefix)
            name = index.current()
        except Exception:
            return 0
        if not name:
            return 0
        int(name.rsplit(".", 1)[1])
        ckpt_dir = os.path.join(self.prefix, name)
        files = sorted(f for f in os.listdir(ckpt_dir) if f.startswith("rank_"))
        mine = f"rank_{self.rank}.ckpt"
        path = os.path.join(ckpt_dir, mine if mine in files else files[0])
        with open(path, "rb") as fh:
            state = json.loads(fh.readline())
        if self.rank == 0:
            self.say(f"restarting from checkpoint {name} (step {state['step']}, "
                     f"written by {state['size']} ranks)")
        return int(state["step"])

    # -- failure injection --------------------------------------------------------------------
    def _once(self, kind: str) -> bool:
        marker = os.path.join(self.scr_dir, f"demo.injected.{kind}")
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def inject(self, step: int) -> None:
        a = self.args
        if a.fail_at_step == step and self.rank == 0 and self._once("fail"):
            self.say(f"injected failure at step {step}")
            sys.exit(1)
        if a.hang_at_step == step and self._once(f"hang.{self.rank}"):
            self.say(f"injected hang at step {step}")
            while True:
                time.sleep(3600)
        if a.crash_node_at_step == step and self.rank == self.size - 1 and self._once("crash"):
            self.say(f"injected node crash at step {step}")
            local_dir, node = os.environ.get("SCR_LOCAL_DIR"), os.environ.get("SCR_LOCAL_NODE")
            if local_dir and node:
                from .local.allocation import LocalAllocation

                LocalAllocation(local_dir).crash(node)
            os.killpg(0, signal.SIGKILL)

    # -- checkpoint ---------------------------------------------------------------------------
    def checkpoint(self, step: int) -> str:
        """Write, flush and (rank 0) record checkpoint ``step``; return the decision."""
        name = f"ckpt.{step}"
        state = json.dumps({"step": step, "size": self.size, "rank": self.rank}).encode()
        payload = state + b"\n" + os.urandom(self.args.size_kb * 1024)
        cache_dir = os.path.join(self.cache_base, self.user, f"scr.{self.job_id}",
                                 f"scr.dataset.{step}")
        os.makedirs(cache_dir, exist_ok=True)
        started = time.time()
        _atomic_write(os.path.join(cache_dir, f"rank_{self.rank}.ckpt"), payload)
        written = time.time()
        if self.rank == 0:
            self.record_start(step, name)
        out_dir = os.path.join(self.prefix, name)
        os.makedirs(out_dir, exist_ok=True)
        _atomic_write(os.path.join(out_dir, f"rank_{self.rank}.ckpt"), payload)
        decision_path = os.path.join(self.sync_dir, f"{self.run_id}.{step}")
        if self.rank == 0:
            complete = all(_wait_for(os.path.join(out_dir, f"rank_{r}.ckpt"), WAIT_SECONDS)
                           for r in range(self.size))
            if complete:
                self.record_complete(step, name, len(payload))
                if self.log is not None:
                    self.log_checkpoint(step, name, cache_dir, started, written,
                                        len(payload) * self.size)
            decision = self.halt_decision() if complete else "halt: lost a rank"
            _atomic_write(decision_path, decision.encode())
            return decision
        if not _wait_for(decision_path, WAIT_SECONDS):
            self.say("rank 0 did not answer; giving up")
            sys.exit(3)
        with open(decision_path) as fh:
            return fh.read()

    def _desc(self, step: int, name: str, size: int = 0, complete: int = 0):
        from .control.dataset import DatasetDescriptor

        return DatasetDescriptor(
            id=step, name=name, user=self.user, jobid=self.job_id, ckpt=step,
            created=int(time.time() * 1e6), flag_ckpt=1, flag_output=0,
            files=self.size if complete else None, size=size * self.size if complete else None,
            complete=complete)

    def log_checkpoint(self, step: int, name: str, cache_dir: str, started: float,
                       written: float, nbytes: int) -> None:
        """What libscr logs for a checkpoint written to cache then flushed synchronously
        (rank 0's own write time stands for the checkpoint's, as in libscr)."""
        log, now = self.log, time.time()
        assert log is not None
        log.event("CHECKPOINT_START", note=self.cache_base, dset=step, name=name,
                  start=started)
        log.event("CHECKPOINT_END", note=self.cache_base, dset=step, name=name,
                  start=written, secs=written - started)
        log.transfer("CHECKPOINT", src=self.cache_base, dst=cache_dir, dset=step, name=name,
                     start=started, secs=written - started, bytes=nbytes, files=self.size)
        log.transfer("FLUSH_SYNC", src=cache_dir, dst=self.prefix, dset=step, name=name,
                     start=written, secs=now - written, bytes=nbytes, files=self.size)

    def record_start(self, step: int, name: str) -> None:
        from .control.flush import FlushFile

        FlushFile(self.prefix).new_entry(step, name, ckpt=True, output=False,
                                         desc=self._desc(step, name))

    def record_complete(self, step: int, name: str, size: int) -> None:
        from .control.flush import FlushFile
        from .control.index import IndexFile
        from .control.paths import dataset_dir
        from .control.summary import write_summary

        desc = self._desc(step, name, size, complete=1)
        ddir = dataset_dir(self.prefix, step)
        os.makedirs(ddir, exist_ok=True)
        write_summary(ddir, desc, complete=True)
        index = IndexFile(self.prefix)
        index.add(desc, complete=True, flushed_time=time.time(), from_flush=True)
        index.set_current(name)
        FlushFile(self.prefix).location_add(step, "PFS")

    def halt_decision(self) -> str:
        from .control.halt import HaltFile, halt_reason
        from .control.paths import halt_path

        path = halt_path(self.prefix)
        with HaltFile(path).update(replace_corrupt=True) as state:  # as libscr
            if state.checkpoints_left is not None and state.checkpoints_left > 0:
                state.checkpoints_left -= 1
            snapshot = state
        now = time.time()
        end = int(os.environ.get("SCR_END_TIME") or 0)
        left = end - now if end > 0 else None
        reason = halt_reason(snapshot, now, left, int(os.environ.get("SCR_HALT_SECONDS") or 0))
        return f"halt: {reason}" if reason else "continue"

    # -- main ---------------------------------------------------------------------------------
    def main(self) -> int:
        a = self.args
        step = self.restart_step()
        if self.rank == 0:
            from .control.nodes import write_nodes

            nnodes = _first_int(("SCR_LOCAL_NNODES", "SLURM_JOB_NUM_NODES",
                                 "SLURM_STEP_NUM_NODES"), 1)
            write_nodes(self.prefix, nnodes)
            self.say(f"starting at step {step} of {a.steps} with {self.size} rank(s)")
            if self.log is not None:
                self.log.start(procs=self.size, nodes=nnodes)
                if step:
                    self.log.event("RESTART_SUCCESS", dset=step, secs=0.0)
        while step < a.steps:
            step += 1
            time.sleep(a.step_seconds)
            self.inject(step)
            if step % a.ckpt_every == 0 or step == a.steps:
                decision = self.checkpoint(step)
                if self.rank == 0:
                    self.say(f"checkpoint ckpt.{step} done")
                if decision.startswith("halt"):
                    if self.rank == 0:
                        self.say(f"halting at step {step}: {decision[6:]}")
                        if self.log is not None:
                            self.log.halt(decision[6:])
                    return 0
        if self.rank == 0:
            from .control.halt import HaltFile
            from .control.paths import halt_path

            with HaltFile(halt_path(self.prefix)).update(replace_corrupt=True) as state:
                if not state.exit_reason:
                    state.exit_reason = "SCR_FINALIZE_CALLED"
            self.say(f"finished all {a.steps} steps")
            if self.log is not None:
                self.log.halt("SCR_FINALIZE_CALLED")
        return 0


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scr_core.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--step-seconds", type=float, default=0.1)
    p.add_argument("--ckpt-every", type=int, default=5)
    p.add_argument("--size-kb", type=int, default=16, help="checkpoint size per rank (KiB)")
    p.add_argument("--fail-at-step", type=int)
    p.add_argument("--hang-at-step", type=int)
    p.add_argument("--crash-node-at-step", type=int)
    args = p.parse_args(argv)
    if args.steps < 1 or args.ckpt_every < 1:
        p.error("--steps and --ckpt-every must be at least 1")
    return Demo(args).main()


if __name__ == "__main__":
    sys.exit(main())
