/* A rank of a real MPI job for the step-watch tests (tests/slurm_watch.py): MPI_Allreduce in
 * a loop for SECONDS seconds (argv[1]), so that when a node dies the surviving ranks block on
 * the dead peer, as a production job does. Rank 0 checks the sum; exit 0 when done. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int rank, size;
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    double start = MPI_Wtime();
    long rounds = 0;
    int stop = 0;
    while (!stop) {
        int one = 1, sum = 0;
        MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        if (sum != size) {
            fprintf(stderr, "allreduce_loop: rank %d: sum %d != %d\n", rank, sum, size);
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
        rounds++;
        /* rank 0 decides when to stop, so every rank leaves the loop in the same round */
        int done = rank == 0 && MPI_Wtime() - start >= seconds;
        MPI_Allreduce(&done, &stop, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        usleep(10000);
    }
    if (rank == 0)
        printf("allreduce_loop: %d ranks, %ld rounds, done\n", size, rounds);
    MPI_Finalize();
    return 0;
}
