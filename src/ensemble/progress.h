/* Ensemble-wide progress on rank 0: members finished / total, epochs, loss,
 * samples/s and ETA. Other ranks send small non-blocking reports (at most one
 * in flight; a report is skipped rather than waited for), rank 0 polls for
 * them between its own steps, so progress never blocks training. On a
 * terminal the line is redrawn in place, fitted to the terminal's width and
 * erased before any other output; otherwise (SLURM logs, and under mpirun,
 * whose ranks write stderr into a pipe) a plain line is printed every
 * [output] progress_interval seconds and when a member ends. */
#ifndef ENS_ENSEMBLE_PROGRESS_H
#define ENS_ENSEMBLE_PROGRESS_H

#include <mpi.h>
#include <stdint.h>

#include "core/comm.h"

typedef struct ens_progress_msg {
  int32_t rank, members_done, final, epoch, epochs;
  int64_t steps_done;
  double loss;
  double samples_per_s;
} ens_progress_msg;

typedef struct ens_progress {
  MPI_Comm comm;
  int rank, size;
  int tty;                 /* rank 0: stderr is a terminal */
  double interval;         /* seconds between plain lines */
  double t0, last_print, last_send;
  int64_t steps_total;     /* all units of the job */
  int members_total;
  ens_progress_msg self;   /* this rank's state */
  ens_progress_msg *all;   /* rank 0: latest report of every rank */
  ens_progress_msg out;    /* non-root: buffer of the report in flight */
  MPI_Request req;         /* non-root: the report in flight */
  int64_t steps_before;    /* steps of this rank's finished units */
  int printed_live;        /* a live line is on the terminal now */
  int quiet;               /* [output] verbose = 0: no progress lines at all */
  int epochs_seen, epoch_shown; /* rank 0: the epoch field never goes back */
  int ending;              /* rank 0: the final line is being printed */
} ens_progress;

int ens_progress_init(ens_progress *p, MPI_Comm comm, int64_t steps_total, int members_total,
                      double interval);
/* After each optimizer step: steps of the current unit so far. */
void ens_progress_step(ens_progress *p, int64_t unit_steps, int epoch, int epochs, double loss,
                       double samples_per_s);
/* A member finished on this rank. */
void ens_progress_member(ens_progress *p);
/* A unit ended after `steps` steps (its steps now count as done). */
void ens_progress_unit_end(ens_progress *p, int64_t steps);
/* Before other output on the terminal (rank 0): erases the live line so
 * that the next line starts clean; the next report draws it again. */
void ens_progress_clear(ens_progress *p);
/* End of training on this rank (collective in effect: rank 0 waits for every
 * other rank's final report, printing progress meanwhile). */
void ens_progress_finish(ens_progress *p);
void ens_progress_free(ens_progress *p);

#endif
