/* The start-up line of `ens train`: how the process was started, so that a
 * run meant to be parallel is never taken for one process in silence. */
#include <stdio.h>

#include "cli/cli.h"
#include "core/comm.h"

void ens_cli_print_start(const ens_launch *l, int rank) {
  if (rank != 0)
    return;
  int ranks = 1;
  ens_comm_size(MPI_COMM_WORLD, &ranks);
  char how[160];
  ens_launch_describe(l, ranks, how, sizeof(how));
  printf("start: %s\n", how);
  fflush(stdout);
  if (l->kind == ENS_LAUNCH_NONE && l->job_tasks > 1)
    fprintf(stderr,
            "ens train: warning: this SLURM job has %d tasks (SLURM_NTASKS) but ens was "
            "started without srun or mpirun: it trains as 1 process (start the ranks with "
            "`srun ens train ...` or `mpirun ens train ...`)\n",
            l->job_tasks);
}
