/* A real SCR application that writes one checkpoint of FILES files of BYTES bytes per rank
 * through libscr (the scavenge benchmark's cache data):
 *
 *   ckpt_files FILES BYTES [NAME]
 *
 * Files go to NAME/rank_<r>/r<r>_f<i>.dat (routed by SCR_Route_file into the cache, which
 * keeps only the base name: it must be unique per node); the bytes are a pattern of
 * (rank, file, offset), so a copy can be checked. Prints
 * "checkpoint NAME complete" on rank 0 when SCR_Complete_output returned.
 */
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scr.h"

int main(int argc, char** argv)
{
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (argc < 3) {
    if (rank == 0) fprintf(stderr, "usage: ckpt_files FILES BYTES [NAME]\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  long files = atol(argv[1]);
  long long bytes = atoll(argv[2]);
  const char* name = argc > 3 ? argv[3] : "ckpt.1";
  size_t chunk = bytes < (1 << 20) ? (size_t) bytes : (size_t) (1 << 20);
  unsigned char* buf = malloc(chunk > 0 ? chunk : 1);
  if (SCR_Init() != SCR_SUCCESS || buf == NULL) {
    fprintf(stderr, "ckpt_files: SCR_Init failed\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  SCR_Start_output(name, SCR_FLAG_CHECKPOINT);
  int valid = 1;
  for (long i = 0; i < files && valid; i++) {
    char path[512], routed[SCR_MAX_FILENAME];
    snprintf(path, sizeof(path), "%s/rank_%d/r%d_f%ld.dat", name, rank, rank, i);
    SCR_Route_file(path, routed);
    FILE* fh = fopen(routed, "w");
    if (fh == NULL) { fprintf(stderr, "%d: %s: %s\n", rank, routed, strerror(errno)); valid = 0; break; }
    for (long long off = 0; off < bytes; off += (long long) chunk) {
      size_t n = (size_t) ((bytes - off) < (long long) chunk ? (bytes - off) : (long long) chunk);
      for (size_t k = 0; k < n; k++) buf[k] = (unsigned char) (rank * 31 + i * 7 + (off + k));
      if (fwrite(buf, 1, n, fh) != n) { valid = 0; break; }
    }
    if (fclose(fh) != 0) valid = 0;
  }
  SCR_Complete_output(valid);
  if (rank == 0) {
    printf("checkpoint %s %s\n", name, valid ? "complete" : "FAILED");
    fflush(stdout);
  }
  free(buf);
  SCR_Finalize();
  MPI_Finalize();
  return valid ? 0 : 1;
}
