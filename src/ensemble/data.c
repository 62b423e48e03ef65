/* The data of a job on one rank: the input file loaded and checked, the
 * validation rows split off, features (and regression targets)
 * standardized with the train split's statistics, the task resolved, and a
 * checksum that identifies the data set in results and merges. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ens/error.h"
#include "ensemble/job.h"

/* adler32 over the splits' values and labels: identifies the data set. */
static int64_t data_checksum(const ens_data *d) {
  const ens_split *s[3] = {&d->train, &d->test, &d->val};
  uLong a = adler32(0L, Z_NULL, 0);
  for (int i = 0; i < 3; i++) {
    if (!s[i]->n)
      continue;
    a = adler32_z(a, (const Bytef *)s[i]->x, (size_t)s[i]->n * s[i]->d * sizeof(float));
    if (s[i]->y)
      a = adler32_z(a, (const Bytef *)s[i]->y, (size_t)s[i]->n * sizeof(int32_t));
    if (s[i]->t)
      a = adler32_z(a, (const Bytef *)s[i]->t, (size_t)s[i]->n * d->targets * sizeof(float));
  }
  return (int64_t)a;
}

/* Regression targets: the networks learn standardized targets (train
 * split's per-target mean and std, [data] standardize_y); predictions are
 * turned back into the original units by the task. */
static int setup_targets(ens_job *j) {
  const int T = j->data.sets.targets, n = j->data.n_train;
  j->data.train_t = j->data.sets.train.t;
  if (!j->c->standardize_y)
    return 0;
  j->data.ymean = malloc((size_t)T * sizeof(float));
  j->data.ystd = malloc((size_t)T * sizeof(float));
  float *ts = malloc((size_t)n * T * sizeof(float));
  if (!j->data.ymean || !j->data.ystd || !ts) {
    free(ts);
    return ENS_ENOMEM;
  }
  ens_split view = {.n = n, .d = T, .x = j->data.sets.train.t};
  ens_standardize_fit(j->data.ymean, j->data.ystd, &view);
  memcpy(ts, j->data.sets.train.t, (size_t)n * T * sizeof(float));
  ens_split tv = {.n = n, .d = T, .x = ts};
  ens_standardize_apply(&tv, j->data.ymean, j->data.ystd);
  j->data.train_t = ts;
  return 0;
}

int ens_jobdata_load(ens_job *j, char *err, size_t errlen) {
  const ens_config *c = j->c;
  int ret = ens_data_load(&j->data.sets, c->data_path, err, errlen);
  int file_val = !ret && j->data.sets.val.n > 0;
  if (!ret && c->val_fraction > 0.0 && j->data.sets.val.n == 0)
    ret = ens_data_split_val(&j->data.sets, c->val_fraction, c->seed);
  j->data.val_from_file = file_val;
  j->data.scored = file_val ? "/val" : "val_fraction";
  if (!ret && j->data.sets.test.n == 0) /* no /test: score the validation rows */
    ret = ens_jobdata_score_val(j, err, errlen);
  else
    j->data.scored = "/test";
  /* The task: [model] task, or (auto) what the labels are. */
  if (!ret && c->task == ENS_TASK_CLASSIFY && j->data.sets.regress) {
    snprintf(err, errlen,
             "%s: /train/y holds floating-point targets but [model] task = classify (class "
             "labels must be integers; use task = regress or auto)",
             c->data_path);
    ret = ENS_EFORMAT;
  }
  if (!ret && c->task == ENS_TASK_REGRESS && !j->data.sets.regress)
    ret = ens_data_labels_to_targets(&j->data.sets);
  if (!ret && j->data.sets.regress && c->combine == ENS_COMBINE_VOTE) {
    snprintf(err, errlen,
             "[ensemble] combine = vote: %s holds regression targets (float /train/y), and "
             "votes need classes (use average, select or params)",
             c->data_path);
    ret = ENS_ECONFIG;
  }
  if (!ret && j->data.sets.val.n == 0 &&
      (c->mode == ENS_MODE_SEARCH || c->combine == ENS_COMBINE_SELECT ||
       c->calibrate != ENS_CALIBRATE_NONE)) {
    snprintf(err, errlen,
             "%s needs validation rows, and %s has no /val group and [data] val_fraction = 0 "
             "(set e.g. val_fraction = 0.1)",
             c->mode == ENS_MODE_SEARCH        ? "[ensemble] mode = search"
             : c->combine == ENS_COMBINE_SELECT ? "[ensemble] combine = select"
                                                : "[ensemble] calibrate = temperature",
             c->data_path);
    ret = ENS_ECONFIG;
  }
  if (!ret) {
    j->data.classes = j->data.sets.classes;
    j->data.n_train = j->data.sets.train.n;
    j->data.n_test = j->data.sets.test.n;
    j->data.n_val = j->data.sets.val.n;
    j->data.dim = j->data.sets.train.d;
    if (j->data.n_train < 2) {
      snprintf(err, errlen, "%s: /train has %d rows; at least 2 are needed", c->data_path,
               j->data.n_train);
      ret = ENS_EFORMAT;
    }
  }
  if (!ret)
    j->data.checksum = data_checksum(&j->data.sets);
  if (!ret && c->standardize) {
    j->data.mean = malloc((size_t)j->data.dim * sizeof(float));
    j->data.std = malloc((size_t)j->data.dim * sizeof(float));
    if (!j->data.mean || !j->data.std) {
      ret = ENS_ENOMEM;
    } else {
      ens_standardize_fit(j->data.mean, j->data.std, &j->data.sets.train);
      ens_standardize_apply(&j->data.sets.train, j->data.mean, j->data.std);
      ens_standardize_apply(&j->data.sets.test, j->data.mean, j->data.std);
      if (j->data.sets.val.n)
        ens_standardize_apply(&j->data.sets.val, j->data.mean, j->data.std);
    }
  }
  if (!ret && j->data.sets.regress)
    ret = setup_targets(j);
  return ret;
}

void ens_jobdata_free(ens_jobdata *d) {
  ens_data_free(&d->sets);
  free(d->mean);
  free(d->std);
  free(d->ymean);
  free(d->ystd);
  if (d->train_t != d->sets.train.t)
    free(d->train_t);
  memset(d, 0, sizeof(*d));
}
