/* Whole log lines under mpirun (issue 20): the lines ranks print while they
 * train (member epochs, snapshots, failures) reach the log through rank 0,
 * which prints them between its own, so that no rank's line is cut by
 * another's, and rank 0 takes every rank's last line before the job's last
 * words (a stop, an error, the summary). */
#ifndef ENS_ENSEMBLE_LINES_H
#define ENS_ENSEMBLE_LINES_H

#include <mpi.h>

#include "ensemble/progress.h"

#define ENS_LINE_MAX 512 /* longer lines are cut to this (with their newline) */

typedef struct ens_lines {
  MPI_Comm comm;
  int rank, size;
  int active;             /* 0: print here (before init, or single-rank use) */
  ens_progress *progress; /* rank 0: its live line is cleared before a line */
  /* Non-root ranks: sends in flight, one buffer each (slot free when its
   * request is MPI_REQUEST_NULL). */
  MPI_Request *req;
  char **buf;
  int cap;
  int ended; /* rank 0: ranks whose last line has arrived */
} ens_lines;

/* Sets l up on comm (no communication). p (may be NULL): rank 0's progress
 * line, cleared before each printed line. Returns 0 or ENS_ENOMEM. */
int ens_lines_init(ens_lines *l, MPI_Comm comm, ens_progress *p);
/* Prints one line (fmt without its newline) on stdout: rank 0 at once,
 * other ranks through rank 0. Never waits for rank 0. */
void ens_lines_printf(ens_lines *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Rank 0: prints the lines that have arrived, without waiting. */
void ens_lines_poll(ens_lines *l);
/* Every rank, once, after its last line: rank 0 prints every other rank's
 * remaining lines and returns when each has said it is done; other ranks
 * return when their lines are delivered. */
void ens_lines_finish(ens_lines *l);
void ens_lines_free(ens_lines *l);

#endif
