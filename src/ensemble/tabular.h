/* Checks of the data a training job is given that catch a task or batch
 * size that trains without error and answers wrongly (issue 20): class codes
 * regressed as numbers, a continuous quantity classified, a batch at least
 * as large as the training rows. */
#ifndef ENS_ENSEMBLE_TABULAR_H
#define ENS_ENSEMBLE_TABULAR_H

#include <stdint.h>

/* The documented thresholds (README "Tabular data"). */
#define ENS_FEW_CODES                                                                              \
  10                         /* a regression target with at most this many distinct                \
                                whole values looks like class codes */
#define ENS_MANY_CLASSES 20  /* more classes than this, with fewer than */
#define ENS_ROWS_PER_CLASS 5 /* this many training rows per class, looks continuous */

/* Distinct values of column col of t (n rows, T columns) when they are all
 * whole numbers and at most max distinct (then *lo, *hi get the smallest and
 * largest); -1 otherwise (a fractional value, more than max values, or no
 * rows). */
int ens_target_codes(const float *t, int n, int T, int col, int max, double *lo, double *hi);

/* 1 when C classes on n training rows look like a continuous quantity
 * (C > ENS_MANY_CLASSES and n < ENS_ROWS_PER_CLASS * C). */
int ens_classes_look_continuous(int C, int n);

/* A batch size to suggest for n training rows: the largest power of two
 * not above n / 4 (at least 1). */
int ens_batch_suggestion(int n);

struct ens_job;
/* Rank 0 of a training job, before training: prints the warnings above on
 * stderr (each once), and, when verbose, the start-up line about batch
 * norm on a single batch per epoch on stdout. */
void ens_job_warn_data(const struct ens_job *j);

#endif
