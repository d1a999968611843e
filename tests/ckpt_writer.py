"""Test checkpoint writer: leaves datasets in node-local cache the way libscr does before a
flush, and nowhere else (unlike ``scr_core.demo``, which copies to the prefix itself).

Per node, for dataset ``<id>`` written by job ``<jobid>`` of user ``<user>``:

* control dir ``<cntl base>/<user>/scr.<jobid>/cindex.scrinfo``: ``DSET/<id>/{DSETDESC,
  PATH -> <cache dir>, BYPASS -> 0}``, ``CURRENT -> <name>``;
* cache dir ``<cache base>/<user>/scr.<jobid>/scr.dataset.<id>/``: the data files (at
  their path relative to the prefix) and ``.scr/filemap_<rank>`` per rank held there
  (``FILE/<cache path>/META/{COMPLETE, RANKS, RANK, CKPT, ORIG, PATH, NAME, SIZE, MODE,
  UID, GID, [AMC]TIME_[N]SECS, CRC}``, ``DSETDESC``), plus a redundancy descriptor
  ``reddesc.er.<rank>.redset`` per rank;
* on the prefix only ``.scr/flush.scr``: ``DATASET/<id>/{NAME, LOCATION -> CACHE,
  CKPT|OUTPUT -> 1, DSETDESC}``.

File content is a pure function of (dataset, rank, file index), see :func:`content`, so a
test can check every byte that reaches the prefix.

Two ways to use it:

* in-process, for a local allocation: :func:`write_dataset` places ranks on virtual
  nodes (block distribution) and writes every node's storage directory;
* per task, e.g. ``srun python tests/ckpt_writer.py --per-rank --prefix P --id 3``: each
  task writes its own rank into ``$SCR_CACHE_BASE``/``$SCR_CNTL_BASE`` (default
  /dev/shm) of the node it runs on; local task 0 writes the node's cache index (after the
  node's other tasks, which it waits for), rank 0 the flush file entry.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import os
import random
import sys
import time
import zlib
from dataclasses import dataclass, field

from scr_core.control.cindex import CacheDataset, read_cindex, write_cindex
from scr_core.control.dataset import DatasetDescriptor
from scr_core.control.filemap import Filemap, FileMeta, write_filemap
from scr_core.control.flush import FlushFile
from scr_core.control.paths import cindex_path


def content(dataset_id: int, rank: int, index: int, size: int) -> bytes:
    """The bytes of file ``index`` of ``rank`` in ``dataset_id`` (deterministic)."""
    seed = int.from_bytes(hashlib.sha256(f"{dataset_id}/{rank}/{index}".encode()).digest()[:8],
                          "big")
    rnd = random.Random(seed)
    if hasattr(rnd, "randbytes"):
        return rnd.randbytes(size)
    return bytes(rnd.getrandbits(8) for _ in range(size))  # Python 3.8


def rel_path(dataset_id: int, rank: int, index: int, name: str) -> str:
    """Where a file goes, relative to the prefix (SCR keeps the app's directory layout)."""
    return f"{name}/rank_{rank}/file_{index}.dat"


def job_dir(base: str, user: str, jobid: str) -> str:
    return os.path.join(base, user, f"scr.{jobid}")


def cache_dir(cache_base: str, user: str, jobid: str, dataset_id: int) -> str:
    return os.path.join(job_dir(cache_base, user, jobid), f"scr.dataset.{dataset_id}")


@dataclass
class Dataset:
    """What was written: enough for tests to check the prefix afterwards."""

    id: int
    name: str
    ranks: int
    files: dict[int, list[str]] = field(default_factory=dict)  # rank -> rel paths
    sizes: dict[str, int] = field(default_factory=dict)
    holders: dict[int, str] = field(default_factory=dict)  # rank -> node
    cache_files: dict[str, str] = field(default_factory=dict)  # rel path -> cache path
    desc: DatasetDescriptor | None = None


def descriptor(dataset_id: int, name: str, user: str, jobid: str, kind: str, nfiles: int,
               nbytes: int) -> DatasetDescriptor:
    ckpt = kind in ("ckpt", "both")
    output = kind in ("output", "both")
    return DatasetDescriptor(
        id=dataset_id, name=name, user=user, jobname="ckpt_writer", jobid=jobid,
        cluster="testcluster", ckpt=dataset_id if ckpt else None, size=nbytes, files=nfiles,
        created=int(time.time() * 1e6), complete=True, flag_ckpt=ckpt, flag_output=output)


def write_rank(prefix: str, dataset_id: int, rank: int, nranks: int, cache_base: str,
               user: str, jobid: str, desc: DatasetDescriptor, files_per_rank: int,
               size: int, crc: bool = True, mode: int = 0o640) -> dict[str, str]:
    """Write one rank's files and filemap into its node's cache; {rel path: cache path}."""
    cdir = cache_dir(cache_base, user, jobid, dataset_id)
    os.makedirs(os.path.join(cdir, ".scr"), exist_ok=True)
    filemap = Filemap(dataset=desc)
    written = {}
    for index in range(files_per_rank):
        rel = rel_path(dataset_id, rank, index, desc.name or f"scr.dataset.{dataset_id}")
        cpath = os.path.join(cdir, rel)
        os.makedirs(os.path.dirname(cpath), exist_ok=True)
        data = content(dataset_id, rank, index, size)
        with open(cpath, "wb") as fh:
            fh.write(data)
        os.chmod(cpath, mode)
        # times the app's file had: fixed and distinct, so preservation is checkable
        when = 1_600_000_000 + dataset_id * 1000 + rank * 10 + index
        os.utime(cpath, ns=(when * 10**9 + 111, when * 10**9 + 222))
        st = os.stat(cpath)
        orig = os.path.join(os.path.abspath(prefix), rel)
        filemap.files[cpath] = FileMeta(
            complete=True, ranks=nranks, rank=rank,
            ckpt=desc.ckpt, orig=orig, path=os.path.dirname(orig),
            name=os.path.basename(orig), size=len(data), mode=st.st_mode, uid=st.st_uid,
            gid=st.st_gid, atime_secs=when, atime_nsecs=111, ctime_secs=int(st.st_ctime),
            ctime_nsecs=st.st_ctime_ns % 10**9, mtime_secs=when, mtime_nsecs=222,
            crc=zlib.crc32(data) if crc else None)
        written[rel] = cpath
    write_filemap(os.path.join(cdir, ".scr", f"filemap_{rank}"), filemap)
    with open(os.path.join(cdir, ".scr", f"reddesc.er.{rank}.redset"), "wb") as fh:
        fh.write(f"redundancy descriptor of rank {rank}\n".encode())
    return written


def write_cindex_entry(cntl_base: str, user: str, jobid: str, cache_base: str,
                       desc: DatasetDescriptor) -> None:
    cntl = job_dir(cntl_base, user, jobid)
    os.makedirs(cntl, exist_ok=True)
    path = cindex_path(cntl)
    index = read_cindex(path)
    index.datasets[desc.id] = CacheDataset(
        dataset=desc, path=cache_dir(cache_base, user, jobid, desc.id), bypass=False)
    index.datasets = dict(sorted(index.datasets.items()))
    index.current = desc.name
    write_cindex(path, index)


def write_dataset(prefix: str, dataset_id: int, storage: dict[str, str], jobid: str,
                  user: str | None = None, ranks_per_node: int = 2, files_per_rank: int = 2,
                  size: int = 4096, kind: str = "ckpt", crc: bool = True,
                  name: str | None = None) -> Dataset:
    """Write a dataset into the node storage dirs ``{node: dir}`` (cntl and cache base)."""
    user = user or os.environ.get("USER") or getpass.getuser()
    name = name or (f"ckpt.{dataset_id}" if kind != "output" else f"output.{dataset_id}")
    nodes = list(storage)
    nranks = len(nodes) * ranks_per_node
    desc = descriptor(dataset_id, name, user, jobid, kind, nranks * files_per_rank,
                      nranks * files_per_rank * size)
    ds = Dataset(id=dataset_id, name=name, ranks=nranks, desc=desc)
    for i, node in enumerate(nodes):
        base = storage[node]
        for rank in range(i * ranks_per_node, (i + 1) * ranks_per_node):
            written = write_rank(prefix, dataset_id, rank, nranks, base, user, jobid, desc,
                                 files_per_rank, size, crc)
            ds.files[rank] = sorted(written)
            ds.cache_files.update(written)
            for rel in written:
                ds.sizes[rel] = size
            ds.holders[rank] = node
        write_cindex_entry(base, user, jobid, base, desc)
    record_in_flush(prefix, desc)
    return ds


def record_in_flush(prefix: str, desc: DatasetDescriptor) -> None:
    os.makedirs(os.path.join(prefix, ".scr"), exist_ok=True)
    FlushFile(prefix).new_entry(desc.id, desc.name or f"scr.dataset.{desc.id}",
                                ckpt=bool(desc.flag_ckpt), output=bool(desc.flag_output),
                                desc=desc)


def local_storage(alloc_dir: str, nodes: list[str] | None = None) -> dict[str, str]:
    """``{node: storage dir}`` of a local allocation (optionally only some nodes)."""
    from scr_core.local.allocation import LocalAllocation

    alloc = LocalAllocation(alloc_dir)
    chosen = nodes or alloc.nodes
    return {n: alloc.node_storage(n) for n in chosen}


# --------------------------------------------------------------------------- command line


def _env_int(names: tuple[str, ...], default: int) -> int:
    for n in names:
        if os.environ.get(n, "") != "":
            return int(os.environ[n])
    return default


def _per_rank(args: argparse.Namespace) -> int:
    rank = _env_int(("SLURM_PROCID", "FLUX_TASK_RANK", "SCR_LOCAL_RANK"), 0)
    nranks = _env_int(("SLURM_NTASKS", "FLUX_JOB_SIZE", "SCR_LOCAL_NRANKS"), 1)
    localid = _env_int(("SLURM_LOCALID", "FLUX_TASK_LOCAL_ID", "SCR_LOCAL_LOCALID"), 0)
    local_n = _env_int(("SLURM_NTASKS_PER_NODE", "SCR_LOCAL_TASKS_PER_NODE"), 1)
    jobid = args.jobid or os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOBID")
    if not jobid:
        print("ckpt_writer: no job id (--jobid or SLURM_JOB_ID)", file=sys.stderr)
        return 2
    user = os.environ.get("USER") or getpass.getuser()
    cache_base = os.environ.get("SCR_CACHE_BASE") or "/dev/shm"
    cntl_base = os.environ.get("SCR_CNTL_BASE") or "/dev/shm"
    kind = "output" if args.output else "ckpt"
    name = args.name or (f"ckpt.{args.id}" if kind == "ckpt" else f"output.{args.id}")
    desc = descriptor(args.id, name, user, jobid, kind, nranks * args.files_per_rank,
                      nranks * args.files_per_rank * args.size)
    write_rank(args.prefix, args.id, rank, nranks, cache_base, user, jobid, desc,
               args.files_per_rank, args.size, not args.no_crc)
    if localid == 0:
        # the node's cache index lists the dataset once the node's ranks are all written
        fmdir = os.path.join(cache_dir(cache_base, user, jobid, args.id), ".scr")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(n.startswith("filemap_") for n in os.listdir(fmdir)) >= local_n:
                break
            time.sleep(0.05)
        write_cindex_entry(cntl_base, user, jobid, cache_base, desc)
    if rank == 0:
        record_in_flush(args.prefix, desc)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prefix", required=True)
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--output", action="store_true", help="an output dataset, not a checkpoint")
    p.add_argument("--name")
    p.add_argument("--files-per-rank", type=int, default=2)
    p.add_argument("--size", type=int, default=4096, help="bytes per file")
    p.add_argument("--ranks-per-node", type=int, default=2)
    p.add_argument("--nodes", help="comma list of local-allocation nodes (default all)")
    p.add_argument("--no-crc", action="store_true", help="filemaps without CRC")
    p.add_argument("--jobid")
    p.add_argument("--per-rank", action="store_true",
                   help="write only this task's rank (srun/launcher mode)")
    args = p.parse_args(argv)
    if args.per_rank:
        return _per_rank(args)
    alloc_dir = os.environ.get("SCR_LOCAL_DIR")
    if not alloc_dir:
        print("ckpt_writer: not in a local allocation (SCR_LOCAL_DIR)", file=sys.stderr)
        return 2
    from scr_core.local.allocation import LocalAllocation

    alloc = LocalAllocation(alloc_dir)
    storage = local_storage(alloc_dir, args.nodes.split(",") if args.nodes else None)
    write_dataset(args.prefix, args.id, storage, args.jobid or alloc.job_id,
                  ranks_per_node=args.ranks_per_node, files_per_rank=args.files_per_rank,
                  size=args.size, kind="output" if args.output else "ckpt",
                  crc=not args.no_crc, name=args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
