/* A small real SCR application for the halt tests: it writes N checkpoints through libscr and
 * asks SCR_Should_exit after each, printing what libscr said on rank 0:
 *
 *   halt_app N [MILLISECONDS]
 *
 *   "checkpoint K"              after SCR_Complete_output of checkpoint K (1..N)
 *   "should_exit K"             SCR_Should_exit said stop after checkpoint K; the loop ends
 *   "done"                      after the loop, before SCR_Finalize
 *
 * With SCR_HALT_EXIT=1 libscr itself exits inside SCR_Complete_output when a halt condition
 * holds, so "checkpoint K" is then the last line. MILLISECONDS: sleep between checkpoints.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scr.h"

int main(int argc, char** argv)
{
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int count = argc > 1 ? atoi(argv[1]) : 3;
  int msecs = argc > 2 ? atoi(argv[2]) : 0;
  if (SCR_Init() != SCR_SUCCESS) {
    fprintf(stderr, "halt_app: SCR_Init failed\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  for (int k = 1; k <= count; k++) {
    char name[64], path[256], routed[SCR_MAX_FILENAME];
    snprintf(name, sizeof(name), "ckpt.%d", k);
    SCR_Start_output(name, SCR_FLAG_CHECKPOINT);
    snprintf(path, sizeof(path), "%s/rank_%d.dat", name, rank);
    SCR_Route_file(path, routed);
    int valid = 0;
    FILE* fh = fopen(routed, "w");
    if (fh != NULL) {
      valid = fprintf(fh, "checkpoint %d rank %d\n", k, rank) > 0;
      valid = (fclose(fh) == 0) && valid;
    }
    SCR_Complete_output(valid);
    if (rank == 0) {
      printf("checkpoint %d\n", k);
      fflush(stdout);
    }
    int flag = 0;
    SCR_Should_exit(&flag);
    if (flag) {
      if (rank == 0) {
        printf("should_exit %d\n", k);
        fflush(stdout);
      }
      break;
    }
    if (msecs > 0) {
      usleep((useconds_t) msecs * 1000);
    }
  }
  if (rank == 0) {
    printf("done\n");
    fflush(stdout);
  }
  SCR_Finalize();
  MPI_Finalize();
  return 0;
}
