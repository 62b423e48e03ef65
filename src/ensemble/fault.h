/* Errors across the ranks of a job. Ranks agree on an outcome at the points
 * where they synchronize anyway (setup, the end of training, the
 * collection): the worst outcome wins and every rank leaves with the
 * message of the rank that had it, so the user sees that rank's own words
 * once. Between those points a rank that fails sends a small notice to the
 * others, who then stop training after their current step (writing
 * checkpoints, as on a signal) instead of going on for hours. */
#ifndef ENS_ENSEMBLE_FAULT_H
#define ENS_ENSEMBLE_FAULT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "core/comm.h"

/* Collective over comm. ret is this rank's outcome (0, ENS_ESTOPPED or
 * another ENS_E* code) with its message in err. Every rank returns the same
 * code and message: the error of the lowest rank that had one (its message
 * prefixed with "rank R: " when R > 0), else ENS_ESTOPPED when a rank
 * stopped (the lowest such rank's message), else 0. */
int ens_agree(MPI_Comm comm, int ret, char *err, size_t errlen);

typedef struct ens_fault {
  MPI_Comm comm;
  int rank, size;
  int raised;        /* this rank sent its notice */
  int heard;         /* a notice from another rank arrived */
  int32_t payload;   /* the notice (this rank's error code) */
  MPI_Request *reqs; /* (size) sends of this rank's notice */
  double last_poll;
} ens_fault;

/* Returns 0 or ENS_ENOMEM. */
int ens_fault_init(ens_fault *f, MPI_Comm comm);
/* This rank failed with `code`: tells every other rank (non-blocking, once). */
void ens_fault_raise(ens_fault *f, int code);
/* 1 once another rank's notice has arrived (polled at most every 50 ms, so
 * it is cheap enough to ask after every training step). */
int ens_fault_heard(ens_fault *f);
/* Collective: receives every notice that was sent and completes this rank's
 * sends, so nothing is left in flight. Call once, after training. */
void ens_fault_finish(ens_fault *f);
void ens_fault_free(ens_fault *f);

#endif
