/* The data of a job, one copy per node: the node's first rank loads the
 * input file into a node-shared block (ens_shm: an MPI-3 shared window, or
 * private memory on a node of one rank), splits off the validation rows,
 * standardizes features (and regression targets) with the train split's
 * statistics, resolves the task and computes the checksum that identifies
 * the data set in results and merges; the other ranks of the node map the
 * same block. Everything is computed once per node by the same code, so it
 * is bitwise what a rank loading the file alone computes. */
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
 * turned back into the original units by the task. The standardized copy
 * takes its room from the node's block (`arena`). */
static int setup_targets(ens_job *j, ens_data_arena *arena) {
  const int T = j->data.sets.targets, n = j->data.n_train;
  j->data.train_t = j->data.sets.train.t;
  if (!j->c->standardize_y)
    return 0;
  j->data.ymean = malloc((size_t)T * sizeof(float));
  j->data.ystd = malloc((size_t)T * sizeof(float));
  float *ts = ens_data_arena_take(arena, (size_t)n * T * sizeof(float));
  if (!j->data.ymean || !j->data.ystd || !ts)
    return ENS_ENOMEM;
  ens_split view = {.n = n, .d = T, .x = j->data.sets.train.t};
  ens_standardize_fit(j->data.ymean, j->data.ystd, &view);
  memcpy(ts, j->data.sets.train.t, (size_t)n * T * sizeof(float));
  ens_split tv = {.n = n, .d = T, .x = ts};
  ens_standardize_apply(&tv, j->data.ymean, j->data.ystd);
  j->data.train_t = ts;
  return 0;
}

/* Node rank 0: loads, checks, splits and standardizes into the node's block. */
static int load_leader(ens_job *j, ens_data_arena *arena, char *err, size_t errlen) {
  const ens_config *c = j->c;
  int ret = ens_data_load_in(&j->data.sets, c->data_path, arena, err, errlen);
  j->data.reads++;
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
    memcpy(j->data.img, j->data.sets.train.img, sizeof(j->data.img));
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
      if (c->standardize_by == ENS_STD_FEATURE)
        ens_standardize_fit(j->data.mean, j->data.std, &j->data.sets.train);
      else
        ens_standardize_fit_grouped(j->data.mean, j->data.std, &j->data.sets.train,
                                    c->standardize_by == ENS_STD_GLOBAL
                                        ? j->data.dim
                                        : j->data.img[1] * j->data.img[2]);
      ens_standardize_apply(&j->data.sets.train, j->data.mean, j->data.std);
      ens_standardize_apply(&j->data.sets.test, j->data.mean, j->data.std);
      if (j->data.sets.val.n)
        ens_standardize_apply(&j->data.sets.val, j->data.mean, j->data.std);
    }
  }
  if (!ret && j->data.sets.regress)
    ret = setup_targets(j, arena);
  return ret;
}

/* What node rank 0 tells the other ranks of its node: the outcome, the
 * shapes and where each array lies in the block (byte offsets, -1 = none). */
enum { A_TRAIN_X, A_TRAIN_Y, A_TRAIN_T, A_TEST_X, A_TEST_Y, A_TEST_T, A_VAL_X, A_VAL_Y, A_VAL_T,
       A_TRAIN_TS, A_COUNT };
typedef struct node_header {
  int32_t ret;
  char err[1024];
  int32_t n[3], dim, classes, regress, targets, has_mean, has_ymean, img[3];
  int32_t val_from_file, scored; /* scored: 0 "/test", 1 "/val", 2 "val_fraction" */
  int64_t checksum;
  int64_t off[A_COUNT];
} node_header;

static int64_t offset_of(const ens_shm *s, const void *p) {
  return p ? (int64_t)((const unsigned char *)p - s->base) : -1;
}

static void *at_offset(const ens_shm *s, int64_t off) {
  return off >= 0 ? s->base + off : NULL;
}

int ens_jobdata_load(ens_job *j, char *err, size_t errlen) {
  const ens_config *c = j->c;
  const ens_node *nd = &j->node;
  ens_jobdata *d = &j->data;
  node_header h;
  memset(&h, 0, sizeof(h));
  /* Node rank 0 sizes the block from the file's metadata. */
  size_t bytes = 0;
  if (nd->rank == 0) {
    size_t yvals = 0;
    int yfloat = 0;
    ens_data_probe(c->data_path, &bytes, &yvals, &yfloat);
    /* Room for the standardized regression targets. */
    if (bytes && c->standardize_y && (yfloat || c->task == ENS_TASK_REGRESS))
      bytes += (yvals * sizeof(float) + ENS_DATA_ALIGN - 1) / ENS_DATA_ALIGN * ENS_DATA_ALIGN;
  }
  int ret = ens_shm_alloc(&d->shm, nd, bytes, "the input data", err, errlen);
  if (ret)
    return ret;
  if (nd->rank == 0) {
    ens_data_arena arena = {.base = d->shm.base, .size = d->shm.bytes, .used = 0};
    err[0] = '\0';
    h.ret = load_leader(j, &arena, err, errlen);
    if (h.ret && !err[0])
      snprintf(err, errlen, "%s: %s", c->data_path, ens_strerror(h.ret));
    if (h.ret)
      memcpy(h.err, err, strnlen(err, sizeof(h.err) - 1));
    const ens_split *sp[3] = {&d->sets.train, &d->sets.test, &d->sets.val};
    for (int i = 0; i < 3; i++) {
      h.n[i] = sp[i]->n;
      h.off[3 * i] = offset_of(&d->shm, sp[i]->x);
      h.off[3 * i + 1] = offset_of(&d->shm, sp[i]->y);
      h.off[3 * i + 2] = offset_of(&d->shm, sp[i]->t);
    }
    h.off[A_TRAIN_TS] = offset_of(&d->shm, d->train_t);
    h.dim = d->sets.train.d;
    memcpy(h.img, d->img, sizeof(h.img));
    h.classes = d->sets.classes;
    h.regress = d->sets.regress;
    h.targets = d->sets.targets;
    h.has_mean = d->mean != NULL;
    h.has_ymean = d->ymean != NULL;
    h.checksum = d->checksum;
    h.val_from_file = d->val_from_file;
    h.scored = !d->scored || !strcmp(d->scored, "/test") ? 0 : !strcmp(d->scored, "/val") ? 1 : 2;
  }
  /* The block is complete before anyone reads it. */
  ens_shm_sync(&d->shm);
  ens_comm_bcast(&h, (int)sizeof(h), MPI_BYTE, 0, nd->comm);
  if (h.ret) {
    if (nd->rank != 0)
      snprintf(err, errlen, "%s", h.err);
    return h.ret;
  }
  if (nd->rank != 0) {
    ens_data *s = &d->sets;
    ens_split *sp[3] = {&s->train, &s->test, &s->val};
    for (int i = 0; i < 3; i++) {
      sp[i]->n = h.n[i];
      sp[i]->d = h.n[i] ? h.dim : 0; /* as the loader leaves an absent split */
      sp[i]->x = at_offset(&d->shm, h.off[3 * i]);
      sp[i]->y = at_offset(&d->shm, h.off[3 * i + 1]);
      sp[i]->t = at_offset(&d->shm, h.off[3 * i + 2]);
    }
    s->classes = h.classes;
    s->regress = h.regress;
    s->targets = h.targets;
    s->borrowed = 1;
    d->train_t = at_offset(&d->shm, h.off[A_TRAIN_TS]);
    d->classes = h.classes;
    d->n_train = h.n[0];
    d->n_test = h.n[1];
    d->n_val = h.n[2];
    d->dim = h.dim;
    memcpy(d->img, h.img, sizeof(d->img));
    d->checksum = h.checksum;
    d->val_from_file = h.val_from_file;
    d->scored = h.scored == 0 ? "/test" : h.scored == 1 ? "/val" : "val_fraction";
    if (h.has_mean) {
      d->mean = malloc((size_t)h.dim * sizeof(float));
      d->std = malloc((size_t)h.dim * sizeof(float));
    }
    if (h.has_ymean) {
      d->ymean = malloc((size_t)h.targets * sizeof(float));
      d->ystd = malloc((size_t)h.targets * sizeof(float));
    }
  }
  /* Small per-rank copies of the statistics (the result stores them). */
  int ok = (!h.has_mean || (d->mean && d->std)) && (!h.has_ymean || (d->ymean && d->ystd));
  int all_ok = 0;
  ens_comm_allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, nd->comm);
  if (!all_ok) {
    snprintf(err, errlen, "out of memory for the standardization statistics");
    return ENS_ENOMEM;
  }
  if (h.has_mean) {
    ens_comm_bcast(d->mean, h.dim, MPI_FLOAT, 0, nd->comm);
    ens_comm_bcast(d->std, h.dim, MPI_FLOAT, 0, nd->comm);
  }
  if (h.has_ymean) {
    ens_comm_bcast(d->ymean, h.targets, MPI_FLOAT, 0, nd->comm);
    ens_comm_bcast(d->ystd, h.targets, MPI_FLOAT, 0, nd->comm);
  }
  return 0;
}

void ens_jobdata_free(ens_jobdata *d) {
  /* Every array, train_t included, is in the node block d->shm. */
  ens_data_free(&d->sets); /* borrowed: the arrays are in d->shm */
  free(d->mean);
  free(d->std);
  free(d->ymean);
  free(d->ystd);
  ens_shm_free(&d->shm); /* collective over the node */
  memset(d, 0, sizeof(*d));
}
