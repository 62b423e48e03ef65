/* Warnings about a training job's data (see tabular.h): the task the
 * targets suggest, and batches that make every epoch a single step. */
#include "ensemble/tabular.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ens/train.h"
#include "ensemble/job.h"
#include "io/h5util.h"

int ens_target_codes(const float *t, int n, int T, int col, int max, double *lo, double *hi) {
  double seen[64];
  int k = 0;
  if (n < 1 || max < 1 || max > 64)
    return -1;
  for (int r = 0; r < n; r++) {
    double v = t[(size_t)r * (size_t)T + (size_t)col];
    if (!isfinite(v) || v != floor(v))
      return -1;
    int i = 0;
    while (i < k && seen[i] != v)
      i++;
    if (i == k) {
      if (k == max)
        return -1;
      seen[k++] = v;
    }
  }
  *lo = *hi = seen[0];
  for (int i = 1; i < k; i++) {
    *lo = seen[i] < *lo ? seen[i] : *lo;
    *hi = seen[i] > *hi ? seen[i] : *hi;
  }
  return k;
}

int ens_classes_look_continuous(int C, int n) {
  return C > ENS_MANY_CLASSES && (long long)n < (long long)ENS_ROWS_PER_CLASS * C;
}

int ens_batch_suggestion(int n) {
  int b = 1;
  while (b * 2 <= n / 4)
    b *= 2;
  return b;
}

/* The data file's /target_names (an imported CSV's), or NULL. */
static char **read_target_names(const char *path, int T) {
  ens_h5_quiet();
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return NULL;
  char **names =
      ens_h5_exists(f, "/target_names") ? ens_h5_read_strings(f, "/target_names", T) : NULL;
  H5Fclose(f);
  return names;
}

static void free_names(char **names) {
  for (int i = 0; names && names[i]; i++)
    free(names[i]);
  free(names);
}

static void warn_targets(const ens_job *j) {
  const ens_config *c = j->c;
  const ens_data *d = &j->data.sets;
  if (d->regress) {
    char **names = NULL;
    int T = d->targets;
    for (int t = 0; t < T; t++) {
      double lo = 0, hi = 0;
      int k = ens_target_codes(d->train.t, d->train.n, T, t, ENS_FEW_CODES, &lo, &hi);
      if (k < 2 || d->train.n < 4 * k)
        continue;
      if (!names)
        names = read_target_names(c->data_path, T);
      char what[2304];
      if (names && names[t])
        snprintf(what, sizeof(what), "'%s' (/train/y column %d of %s)", names[t], t, c->data_path);
      else
        snprintf(what, sizeof(what), "/train/y column %d of %s", t, c->data_path);
      fprintf(stderr,
              "ens: warning: regression target %s takes only %d distinct whole values (%g to "
              "%g) on %d training rows: they look like class codes, which regression treats "
              "as numbers on a scale (at most %d distinct whole values count as codes); %s\n",
              what, k, lo, hi, d->train.n, ENS_FEW_CODES,
              c->task == ENS_TASK_REGRESS
                  ? "[model] task = regress makes them numbers: task = classify (or auto) "
                    "classifies integer labels"
                  : "to classify, store them as integer labels (ens import csv --task "
                    "classify)");
    }
    free_names(names);
  } else if (ens_classes_look_continuous(j->data.classes, d->train.n)) {
    fprintf(stderr,
            "ens: warning: classification into %d classes on %d training rows (%.1f rows per "
            "class): the labels look like the values of a continuous quantity (more than %d "
            "classes with fewer than %d rows each), and a class unseen in training is never "
            "predicted; to regress, use [model] task = regress (or ens import csv --task "
            "regress)\n",
            j->data.classes, d->train.n, (double)d->train.n / j->data.classes, ENS_MANY_CLASSES,
            ENS_ROWS_PER_CLASS);
  }
}

static void warn_batch(const ens_job *j) {
  const ens_config *c = j->c;
  const int n = j->data.n_train, M = j->last - j->first;
  int big = 0, first = -1, batch = 0, bn = 0;
  for (int k = j->first; k < j->last; k++) {
    ens_config mc;
    ens_member_config(j, k, &mc);
    if (mc.batch < n)
      continue;
    if (!big++) {
      first = k;
      batch = mc.batch;
    }
    bn |= mc.batchnorm;
  }
  if (!big)
    return;
  char who[160];
  if (c->mode == ENS_MODE_SEARCH)
    snprintf(who, sizeof(who), "%d of %d members draw a batch (member %d: %d) of", big, M, first,
             batch);
  else
    snprintf(who, sizeof(who), "[train] batch = %d is", batch);
  int s = ens_batch_suggestion(n);
  fprintf(stderr,
          "ens: warning: %s at least the %d training rows: the batch is clamped to the rows, so "
          "every epoch is a single step on all %d rows (%d steps in all); e.g. batch = %d gives "
          "%ld steps per epoch%s\n",
          who, n, n, c->epochs, s, ens_steps_per_epoch(n, s),
          bn ? "; batch norm then normalizes by the statistics of the whole training set and "
               "updates its running averages, used when predicting, once per epoch"
             : "");
  if (bn && c->verbose)
    printf("batch norm: a single batch per epoch (all %d training rows%s)\n", n,
           c->mode == ENS_MODE_SEARCH ? ", for the members named in the warning" : "");
}

void ens_job_warn_data(const ens_job *j) {
  if (j->rank != 0)
    return;
  warn_targets(j);
  warn_batch(j);
  fflush(stdout);
  fflush(stderr);
}
