/* The run history of a result (/history): every segment of training (one
 * `ens train` from start to its end or stop) and, for a merged result, every
 * part. Like train_seconds, it describes how the result was made, not the
 * result: `ens diff` exempts it. */
#ifndef ENS_HISTORY_H
#define ENS_HISTORY_H

#include <hdf5.h>
#include <stddef.h>

#include "ensemble/job.h"

/* One segment line: "start=ISO stop=ISO ranks=R nodes=N seconds=S end=E
 * members=A-B", times in UTC from the wall-clock seconds given. */
void ens_history_segment(char *out, size_t len, double start, double stop, int ranks, int nodes,
                         double seconds, const char *end, int first, int last);

/* Rank 0, while writing the result: /history/segments (one string per
 * segment: the earlier segments of j->o->history, newline-separated, then
 * for `ens train` this run's, ended "done"), with the attributes segments,
 * parts (merged parts, 0 for a run) and seconds (their sum). Returns 0 or
 * ENS_EHDF5. */
int ens_history_write_job(hid_t f, const ens_job *j, double train_wall);

/* The segments of result f as text, one line each, each prefixed with
 * prefix; a result without /history gives one line made from its
 * train_seconds and /ranks. Malloc'd (caller frees); NULL when out of memory. */
char *ens_history_read(hid_t f, const char *prefix);

#endif
