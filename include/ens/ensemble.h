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
  const char *trunk_from;    /* take the trunk from this result file's /trunk
                                (merge, predict) instead of [trunk] source */
  int guard;                 /* `ens train`: before training, check the inputs, an
                                existing result and checkpoints (src/ensemble/guard.c) */
  int restart;               /* discard this job's checkpoints first (--restart) */
  int force;                 /* overwrite a result of another configuration (--force) */
  int no_checkpoints;        /* merge: no checkpoint directory (no lock, no
                                checkpoint space) */
  const char *layers_set;    /* the --set model.layers=... that gave the layer list
                                (for messages), or NULL: it came from the file */
  const char *conv_blocks_set; /* the --set search.conv_blocks=... likewise */
  const char *history;       /* earlier segments for the result's /history,
                                one line each (src/ensemble/history.h); may be NULL */
  double started;            /* this run's start, wall-clock seconds (time()) */
} ens_job_opts;

/* Runs the job on every rank of comm (collective). Rank 0 writes the result
 * to c->output_path atomically. With o->guard it first checks (guard.c) that
 * the inputs exist, that [output] path holds no result of another
 * configuration (a complete result of this one: nothing to do, returns 0),
 * and that the checkpoint folder holds no checkpoints that a run without
 * o->resume would overwrite (o->restart removes them). Returns 0; ENS_ESTOPPED
 * after a signal (with checkpoints written); or another ENS_E* code. Every
 * rank returns the same code with the same message in err: the words of the
 * rank that failed ("rank R: ..." for R > 0), so the caller prints it once
 * (rank 0). */
int ens_train_job(const ens_config *c, const ens_job_opts *o, MPI_Comm comm, char *err,
                  size_t errlen);

/* `ens merge`: recombines result files of disjoint, contiguous member slices
 * of one job (same configuration apart from [output] and the slice, same
 * data) into `out`, exactly as one run over all their members would have
 * written it. The slices must cover all [ensemble] members unless `partial`
 * is set. Runs on the calling process only. Returns 0 or an ENS_E* code
 * with a message in err. */
int ens_merge(const char *const *parts, int nparts, const char *out, int partial, char *err,
              size_t errlen);

/* `ens predict`: applies result file `model` (standardization, trunk,
 * members) to the rows of dataset `dataset` of `input` (NULL: /x when
 * present, else /test/x) and writes /probs (n, C), /pred (n) and
 * /uncertainty (n, 3) (classification) or /mean, /var, /var_aleatoric,
 * /var_epistemic (n, T) (regression) to `out` atomically; combine < 0 uses
 * the result's own rule (and its calibration). mc_samples > 0 replaces each
 * member by the average of that many MC-dropout passes. When labels exist
 * beside the rows (/y or /test/y) the accuracy is printed. Returns 0 or an
 * ENS_E* code with a message in err. */
/* How ens predict reads a CSV input (0: what the result stored at import, else
 * ',' and '.'). The input may be a CSV file (header names matched to the
 * model's features) and `out` may end in .csv (see src/io/features.h). */
typedef struct ens_predict_opts {
  char delimiter;
  char decimal;
  int no_header; /* the CSV has no header line: columns are 0, 1, ... */
} ens_predict_opts;
int ens_predict(const char *model, const char *input, const char *dataset, const char *out,
                int combine, int mc_samples, const ens_predict_opts *po, char *err,
                size_t errlen);

#endif
