"""A real MPI application for the Slurm end-to-end test (mpi4py on Debian's Open MPI).

Every step is an allreduce across all ranks; every --ckpt-every steps rank 0 writes the step
to <prefix>/mpi_ckpt.json after a barrier (all ranks reached it). On start, every rank
resumes from that file. Prints one line per checkpoint with the world size.
"""

import json
import os
import sys
import time

from mpi4py import MPI


def main() -> int:
    steps, every, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    comm = MPI.COMM_WORLD
    rank, size = comm.rank, comm.size
    path = os.path.join(os.environ["SCR_PREFIX"], "mpi_ckpt.json")
    step = 0
    if os.path.exists(path):
        with open(path) as fh:
            step = json.load(fh)["step"]
    step = comm.bcast(step, root=0)
    if rank == 0:
        print(f"mpi: starting at step {step} with {size} ranks "
              f"({MPI.Get_library_version().splitlines()[0].strip()})", flush=True)
    while step < steps:
        step += 1
        total = comm.allreduce(step)
        assert total == step * size
        time.sleep(pause)
        if step % every == 0:
            comm.Barrier()
            if rank == 0:
                tmp = path + ".tmp"
                with open(tmp, "w") as fh:
                    json.dump({"step": step, "size": size}, fh)
                os.replace(tmp, path)
                print(f"mpi: checkpoint at step {step} on {size} ranks", flush=True)
    if rank == 0:
        print(f"mpi: finished {steps} steps on {size} ranks", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
