"""Scavenge throughput: the copy agent against ``cp -a`` of the same cache, CRC on.

A dataset is laid out as libscr leaves it in node-local cache (tmpfs, under /dev/shm):
cache index, ``.scr/filemap_<rank>`` with sizes and CRC32s, the files. Cases:

``large files``   8 ranks x 1 file of 64 MiB (512 MiB), prefix on the disk file system of
                  the temp directory; quick: 4 x 8 MiB
``small files``   20,000 files of 8 KiB in 8 ranks (156 MiB), prefix on tmpfs; quick:
                  2,000 files. On this VM's disk a file create costs ~0.6 ms for cp and
                  us alike, which hides the per-file cost that differs (``--full`` adds the
                  disk case)

Measurements (interleaved rounds, medians; before each round the destination is removed
and ``sync`` run, outside the timing, so every run starts from the same page cache state):

* ours: ``python -m scr_core.copy_agent --id 1 --cntldir ... --prefix ... --crc
  --sync none`` run to completion, as it runs on one node (interpreter start, reading the
  cache index and filemaps, copying with CRC32 of every byte compared with the filemap's,
  mode and times, temp file + rename, one JSON line per file);
* reference: ``cp -a <cache dir> <dir>`` of the same cache directory (no CRC, no rename);
* large files, with durability: ours ``--sync fs`` (one ``syncfs`` at the end) against
  ``cp -a`` followed by ``sync -f`` on the destination;
* the whole ``scavenge_dataset`` (node tests off, the agent through the local remote
  executor, batch-node verification, summary/rank2file/index/flush writes) against the
  same ``cp -a``: large files always, small files with ``--full``.

Targets (issue 9, speed = ``cp -a`` time / ours): ``speed >= 0.8x`` for large files (our
time <= 1.25x ``cp -a``'s), ``speed >= 1.0x`` for 20k small files (our time <= ``cp -a``'s).

What limits the figures: the agent copies in one worker process per CPU (2 here), so it
needs the second core, which on this shared 2-core VM is often busy with colleagues' tests
(load average 1.5-4 during development; absolute MB/s move from run to run, so read the
ratios, and expect the small-file row to flip between pass and MISS with the load).
Measured CPU time for the 20k small files: agent ~0.8 s (~0.35 s user: interpreter
start, filemap scan and per-file Python; ~0.45 s system: 8 system calls per file) against
cp's ~0.5 s (all system time): with both cores the agent finishes first (0.82-0.98x cp's
time), with the second core busy it takes 1.5-1.7x. For large files the kernel's
page-cache writes dominate both (~200 ms CPU per 512 MiB, ours and cp's alike); the
agent adds its start-up (~30 ms, serial) and the CRC32 (zlib-ng ~30 ms per 512 MiB;
stdlib zlib ~200 ms, which would miss the target): 0.80-1.0x with both cores, 1.0-1.5x
without. The first round of a run is often 0.5-1 s for whichever command runs first
(the hypervisor's disk), hence medians. Reads come from tmpfs memory and writes go to
page cache (the ``sync`` rows excepted).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402

NAME = "scavenge"
REFERENCE = "cp -a (coreutils)"
USER = "bench"


def _shm_base() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
        else tempfile.gettempdir()


def make_cache(storage: str, jobid: str, prefix: str, ranks: int, files_per_rank: int,
               size: int) -> tuple[str, int]:
    """Write dataset 1 into ``storage`` (the node's cntl and cache base); (cache dir, bytes)."""
    from scr_core.control.cindex import CacheDataset, CacheIndex, write_cindex
    from scr_core.control.dataset import DatasetDescriptor
    from scr_core.control.filemap import Filemap, FileMeta, write_filemap
    from scr_core.control.flush import FlushFile
    from scr_core.control.paths import cindex_path

    jobdir = os.path.join(storage, USER, f"scr.{jobid}")
    cdir = os.path.join(jobdir, "scr.dataset.1")
    os.makedirs(os.path.join(cdir, ".scr"))
    nfiles = ranks * files_per_rank
    desc = DatasetDescriptor(id=1, name="ckpt.1", user=USER, jobid=jobid, ckpt=1,
                             size=nfiles * size, files=nfiles, created=int(time.time() * 1e6),
                             complete=True, flag_ckpt=True, flag_output=False)
    # a few distinct random blocks, so files differ without generating every byte
    blocks = [os.urandom(size) for _ in range(min(nfiles, 16))]
    crcs = [zlib.crc32(b) for b in blocks]
    n = 0
    for rank in range(ranks):
        fmap = Filemap(dataset=desc)
        rdir = os.path.join(cdir, "ckpt.1", f"rank_{rank}")
        os.makedirs(rdir)
        for i in range(files_per_rank):
            src = os.path.join(rdir, f"f{i}.dat")
            with open(src, "wb") as fh:
                fh.write(blocks[n % len(blocks)])
            st = os.stat(src)
            orig = os.path.join(prefix, "ckpt.1", f"rank_{rank}", f"f{i}.dat")
            fmap.files[src] = FileMeta(
                complete=True, ranks=ranks, rank=rank, ckpt=1, orig=orig,
                path=os.path.dirname(orig), name=os.path.basename(orig), size=size,
                mode=st.st_mode, uid=st.st_uid, gid=st.st_gid, atime_secs=int(st.st_atime),
                atime_nsecs=st.st_atime_ns % 10**9, ctime_secs=int(st.st_ctime),
                ctime_nsecs=st.st_ctime_ns % 10**9, mtime_secs=int(st.st_mtime),
                mtime_nsecs=st.st_mtime_ns % 10**9, crc=crcs[n % len(blocks)])
            n += 1
        write_filemap(os.path.join(cdir, ".scr", f"filemap_{rank}"), fmap)
    write_cindex(cindex_path(jobdir), CacheIndex(current="ckpt.1", datasets={
        1: CacheDataset(dataset=desc, path=cdir, bypass=False)}))
    os.makedirs(os.path.join(prefix, ".scr"), exist_ok=True)
    FlushFile(prefix).new_entry(1, "ckpt.1", ckpt=True, output=False, desc=desc)
    return cdir, nfiles * size


def _reset(prefix: str, flush_bytes: bytes, cp_dst: str) -> None:
    """Remove the last run's copies and the index; restore the flush file.

    The copies are written out *before* they are removed: deleting never-written (delayed
    allocation) files frees nothing, deleting written ones makes ext4 free blocks (and
    discard them, on this VM's mount), which slowed the next run by up to 2x. Writing first
    gives every run the same starting state, whatever the previous one did.
    """
    os.sync()
    for path in (os.path.join(prefix, "ckpt.1"), os.path.join(prefix, ".scr", "scr.dataset.1"),
                 cp_dst):
        shutil.rmtree(path, ignore_errors=True)
    for name in ("index.scr",):
        try:
            os.unlink(os.path.join(prefix, ".scr", name))
        except FileNotFoundError:
            pass
    with open(os.path.join(prefix, ".scr", "flush.scr"), "wb") as fh:
        fh.write(flush_bytes)
    os.sync()


def _case(label: str, ranks: int, files_per_rank: int, size: int, rounds: int, *,
          on_disk: bool, sync_rows: bool, whole: bool, target: str) -> list[dict]:
    from scr_core.engine.jobenv import JobEnv
    from scr_core.engine.scavenge import scavenge_dataset
    from scr_core.local.allocation import LocalAllocation

    work = tempfile.mkdtemp(prefix="scr-bench-scavenge.",
                            dir=None if on_disk else _shm_base())
    alloc = LocalAllocation.create(["vnode1"], base=tempfile.mkdtemp(
        prefix="scr-bench-scavenge.", dir=_shm_base()))
    try:
        prefix = os.path.join(work, "prefix")
        storage = alloc.node_storage("vnode1")
        cdir, nbytes = make_cache(storage, alloc.job_id, prefix, ranks, files_per_rank, size)
        nfiles = ranks * files_per_rank
        with open(os.path.join(prefix, ".scr", "flush.scr"), "rb") as fh:
            flush_bytes = fh.read()
        cp_dst = os.path.join(work, "cp_copy")
        cntldir = os.path.join(storage, USER, f"scr.{alloc.job_id}")
        env = common.clean_env(home=os.path.join(work, "home"))
        agent = [common.PYTHON, "-m", "scr_core.copy_agent", "--id", "1", "--cntldir", cntldir,
                 "--prefix", prefix, "--crc"]

        def ours(sync: str):
            def measure() -> float:
                _reset(prefix, flush_bytes, cp_dst)
                dt, out = common.time_subprocess([*agent, "--sync", sync], env=env,
                                                 capture=True)
                if b'"failed":0' not in out.splitlines()[-1]:
                    raise RuntimeError("the agent reported failures")
                return dt
            return measure

        def cp(sync: bool):
            def measure() -> float:
                _reset(prefix, flush_bytes, cp_dst)
                t0 = time.perf_counter()
                subprocess.run(["cp", "-a", cdir, cp_dst], check=True)
                if sync:
                    subprocess.run(["sync", "-f", cp_dst], check=True)
                return time.perf_counter() - t0
            return measure

        job_env = dict(env, SCR_LOCAL_DIR=alloc.path, SCR_PREFIX=prefix,
                       SCR_NODE_TESTS="none", USER=USER, SCR_SCAVENGE_SYNC="none",
                       SCR_CNTL_BASE=storage)

        def scavenge() -> float:
            _reset(prefix, flush_bytes, cp_dst)
            job = JobEnv(environ=job_env)
            t0 = time.perf_counter()
            res = scavenge_dataset(job, 1, ["vnode1"])
            dt = time.perf_counter() - t0
            if not res.complete:
                raise RuntimeError("; ".join(res.describe()))
            return dt

        measures = {"ours": ours("none"), "cp": cp(False)}
        if sync_rows:
            measures.update(ours_sync=ours("fs"), cp_sync=cp(True))
        if whole:
            measures["scavenge"] = scavenge
        samples = common.interleave(measures, repeats=rounds)
        for key, smp in samples.items():
            if smp.error:
                raise RuntimeError(f"{label} {key}: {smp.error}")
        _reset(prefix, flush_bytes, cp_dst)
        where = "disk" if on_disk else "tmpfs"
        what = f"{common.fmt_count(nfiles)} x {common.fmt_count(size)} B to {where}"
        rows = []
        ref = samples["cp"].median
        o = samples["ours"].median
        from scr_core.copy_agent import CRC_IMPL, default_procs

        procs = default_procs()

        rows.append(common.make_row(
            NAME, f"{label}: copy agent, CRC on ({what})", o, REFERENCE, ref, target,
            f"ours {common.mb_per_s(nbytes, o)} ({nfiles / o:.0f} files/s), cp -a "
            f"{common.mb_per_s(nbytes, ref)} ({nfiles / ref:.0f} files/s); CRC32 by "
            f"{CRC_IMPL}; {procs} worker processes",
            repeats=f"{samples['ours'].count}/{samples['cp'].count}"))
        if sync_rows:
            o2, ref2 = samples["ours_sync"].median, samples["cp_sync"].median
            rows.append(common.make_row(
                NAME, f"{label}: copy agent + syncfs ({what})", o2, "cp -a + sync -f", ref2,
                "", f"ours {common.mb_per_s(nbytes, o2)}, reference "
                f"{common.mb_per_s(nbytes, ref2)}",
                repeats=f"{samples['ours_sync'].count}/{samples['cp_sync'].count}"))
        if whole:
            o3 = samples["scavenge"].median
            rows.append(common.make_row(
                NAME, f"{label}: whole scavenge_dataset, 1 node ({what})", o3, REFERENCE,
                ref, "", f"agent via local remote exec + batch verify + summary/rank2file/"
                f"index/flush; {common.mb_per_s(nbytes, o3)}",
                repeats=f"{samples['scavenge'].count}/{samples['cp'].count}"))
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(os.path.dirname(alloc.path), ignore_errors=True)


def run(quick: bool, full: bool = False) -> list[dict]:
    if shutil.which("cp") is None:
        raise RuntimeError("cp is not on PATH")
    if quick:  # a smoke run: interpreter start-up dominates, so no targets
        return (_case("large files", 4, 1, 8 << 20, 1, on_disk=True, sync_rows=True,
                      whole=True, target="")
                + _case("small files", 4, 500, 8 << 10, 1, on_disk=False, sync_rows=False,
                        whole=False, target=""))
    # large files vary most (the VM's page-cache write speed swings 10x under load)
    rows = _case("large files", 8, 1, 64 << 20, 9 if full else 5, on_disk=True,
                 sync_rows=True, whole=True, target="speed >= 0.8x")
    rows += _case("small files", 8, 2500, 8 << 10, 7 if full else 3, on_disk=False,
                  sync_rows=False, whole=full, target="speed >= 1.0x")
    if full:
        rows += _case("small files", 8, 2500, 8 << 10, 3, on_disk=True, sync_rows=False,
                      whole=False, target="")
    return rows


if __name__ == "__main__":
    sys.exit(common.standalone(run))
