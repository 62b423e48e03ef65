/* Training a whole ensemble across the ranks of an MPI communicator and
 * writing the result file (DESIGN.md "Result file"). */
#ifndef ENS_ENSEMBLE_H
#define ENS_ENSEMBLE_H

#include <mpi.h>
#include <signal.h>
#include <stddef.h>

#include "ens/config.h"

typedef struct ens_job_opts {
  const char *config_text;   /* full effective config, stored in the result */
  const char *config_path;   /* for messages */
  volatile sig_atomic_t *stop; /* set by a signal handler; may be NULL */
  int resume;                /* continue from checkpoints */
} ens_job_opts;

/* Runs the job on every rank of comm (collective). Rank 0 writes the result
 * to c->output_path atomically. Returns 0; ENS_ESTOPPED after a signal (with
 * checkpoints written); or another ENS_E* code with a message in err (on the
 * rank that failed; the failure is propagated so every rank returns non-zero). */
int ens_train_job(const ens_config *c, const ens_job_opts *o, MPI_Comm comm, char *err,
                  size_t errlen);

#endif
