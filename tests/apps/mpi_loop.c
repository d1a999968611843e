/* A tiny MPI program for the mpirun/mpiexec launcher tests: STEPS allreduces, PAUSE_MS
 * apart. Rank 0 prints the world size and MPI library; every rank prints its host and the
 * value of $SCR_MPI_PROBE (to show the launcher passed the environment through). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int rank, size, len, step, steps = argc > 1 ? atoi(argv[1]) : 10;
    int pause_ms = argc > 2 ? atoi(argv[2]) : 10;
    char host[256], lib[MPI_MAX_LIBRARY_VERSION_STRING];
    const char *probe = getenv("SCR_MPI_PROBE");
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    gethostname(host, sizeof host);
    host[sizeof host - 1] = 0;
    printf("mpi_loop: rank %d of %d on %s probe=%s\n", rank, size, host, probe ? probe : "-");
    fflush(stdout);
    if (rank == 0) {
        MPI_Get_library_version(lib, &len);
        for (int i = 0; lib[i]; i++) if (lib[i] == '\n' || lib[i] == ',') { lib[i] = 0; break; }
        printf("mpi_loop: %d ranks, %s\n", size, lib);
        fflush(stdout);
    }
    for (step = 1; step <= steps; step++) {
        int total = 0;
        MPI_Allreduce(&step, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        if (total != step * size) {
            fprintf(stderr, "mpi_loop: bad sum %d at step %d\n", total, step);
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
        if (pause_ms > 0) usleep(pause_ms * 1000);
    }
    if (rank == 0) { printf("mpi_loop: finished %d steps on %d ranks\n", steps, size); fflush(stdout); }
    MPI_Finalize();
    return 0;
}
