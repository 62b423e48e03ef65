/* Collecting members on rank 0 in member order: write each member, fold it
 * into running sums (probabilities, votes, parameters, out-of-bag sums), then
 * combine, compute the metrics and curves, write them, and rename the
 * temporary result file into place. Rank 0 holds one member at a time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"
#include "ens/metrics.h"
#include "ensemble/job.h"
#include "io/fsutil.h"
#include "io/h5util.h"

#define TAG_META 11
#define TAG_DATA 12

int ens_job_meta_write(hid_t f, const char *obj, const ens_member_meta *meta) {
  int ret = 0;
  ret |= ens_h5_attr_i64(f, obj, "init_key", meta->init_key);
  ret |= ens_h5_attr_i64(f, obj, "rng_key", meta->rng_key);
  ret |= ens_h5_attr_i64(f, obj, "epochs", meta->epochs);
  ret |= ens_h5_attr_i64(f, obj, "steps", meta->steps);
  ret |= ens_h5_attr_f64(f, obj, "final_train_loss", meta->final_loss);
  ret |= ens_h5_attr_f64(f, obj, "train_seconds", meta->train_seconds);
  return ret ? ENS_EHDF5 : 0;
}

int ens_job_meta_read(hid_t f, const char *obj, int k, ens_member_meta *meta) {
  int64_t v[4] = {0};
  int ret = 0;
  memset(meta, 0, sizeof(*meta));
  meta->k = k;
  ret |= ens_h5_get_attr_i64(f, obj, "init_key", &v[0]);
  ret |= ens_h5_get_attr_i64(f, obj, "rng_key", &v[1]);
  ret |= ens_h5_get_attr_i64(f, obj, "epochs", &v[2]);
  ret |= ens_h5_get_attr_i64(f, obj, "steps", &v[3]);
  ret |= ens_h5_get_attr_f64(f, obj, "final_train_loss", &meta->final_loss);
  ret |= ens_h5_get_attr_f64(f, obj, "train_seconds", &meta->train_seconds);
  meta->init_key = (int32_t)v[0];
  meta->rng_key = (int32_t)v[1];
  meta->epochs = (int32_t)v[2];
  meta->steps = v[3];
  return ret ? ENS_EFORMAT : 0;
}

/* Writes member meta->k from its packed buffer into the result file. */
static int write_member(ens_job *j, const ens_member_meta *meta, const float *packed) {
  char path[128];
  hid_t f = j->file;
  int ret = 0;
  hsize_t np = j->nparams, ns = j->nstats;
  snprintf(path, sizeof(path), "/members/%d/params", meta->k);
  ret |= ens_h5_write(f, path, H5T_NATIVE_FLOAT, 1, &np, packed, 0);
  ret |= ens_h5_attr_i64(f, path, "seed", (int64_t)j->c->seed);
  ret |= ens_h5_attr_str(f, path, "status", "done");
  ret |= ens_job_meta_write(f, path, meta);
  snprintf(path, sizeof(path), "/members/%d/bn_stats", meta->k);
  ret |= ens_h5_write(f, path, H5T_NATIVE_FLOAT, 1, &ns, packed + np, 0);
  ret |= ens_h5_write_rows(f, "/members/probs", H5T_NATIVE_FLOAT, (hsize_t)(meta->k - j->first),
                           1, packed + np + ns);
  if (j->n_val)
    ret |= ens_h5_write_rows(f, "/members/val_probs", H5T_NATIVE_FLOAT,
                             (hsize_t)(meta->k - j->first), 1,
                             packed + np + ns + (size_t)j->n_test * j->classes);
  return ret ? ENS_EHDF5 : 0;
}

int ens_job_store_member(ens_job *j, const ens_member_meta *meta, const float *packed) {
  size_t len = ens_job_packed_len(j);
  if (j->rank == 0) {
    int ret = write_member(j, meta, packed);
    if (ret || j->c->mode != ENS_MODE_BOOTSTRAP)
      return ret;
    /* Out-of-bag probabilities are only needed in the collection pass; keep
     * them in the file's scratch group, deleted before the rename. */
    char path[128];
    hsize_t dims[2] = {(hsize_t)j->n_train, (hsize_t)j->classes};
    snprintf(path, sizeof(path), "/scratch/train_probs_%d", meta->k);
    return ens_h5_write(j->file, path, H5T_NATIVE_FLOAT, 2, dims, packed + len - dims[0] * dims[1],
                        0);
  }
  ens_held_member *h = realloc(j->held, (size_t)(j->nheld + 1) * sizeof(*h));
  if (!h)
    return ENS_ENOMEM;
  j->held = h;
  float *copy = malloc(len * sizeof(float));
  if (!copy)
    return ENS_ENOMEM;
  memcpy(copy, packed, len * sizeof(float));
  h[j->nheld].meta = *meta;
  h[j->nheld].data = copy;
  j->nheld++;
  return 0;
}

/* MPI counts are int: send large buffers in pieces of at most 2^30 floats. */
static int send_floats(const float *p, size_t n, int dest, MPI_Comm comm) {
  const size_t piece = (size_t)1 << 30;
  for (size_t off = 0; off < n; off += piece) {
    size_t m = n - off < piece ? n - off : piece;
    if (MPI_Send(p + off, (int)m, MPI_FLOAT, dest, TAG_DATA, comm) != MPI_SUCCESS)
      return ENS_EMPI;
  }
  return 0;
}

static int recv_floats(float *p, size_t n, int src, MPI_Comm comm) {
  const size_t piece = (size_t)1 << 30;
  for (size_t off = 0; off < n; off += piece) {
    size_t m = n - off < piece ? n - off : piece;
    if (MPI_Recv(p + off, (int)m, MPI_FLOAT, src, TAG_DATA, comm, MPI_STATUS_IGNORE) !=
        MPI_SUCCESS)
      return ENS_EMPI;
  }
  return 0;
}

/* Reads member k from result file f (where it is row `row` of
 * /members/probs) into j->pack: parameters, statistics, test probabilities. */
static int read_member(ens_job *j, hid_t f, hsize_t row, int k, ens_member_meta *meta) {
  char path[128];
  int ret = 0;
  snprintf(path, sizeof(path), "/members/%d/params", k);
  ret |= ens_job_meta_read(f, path, k, meta);
  ret |= ens_h5_read(f, path, H5T_NATIVE_FLOAT, j->pack, j->nparams);
  snprintf(path, sizeof(path), "/members/%d/bn_stats", k);
  if (j->nstats)
    ret |= ens_h5_read(f, path, H5T_NATIVE_FLOAT, j->pack + j->nparams, j->nstats);
  ret |= ens_h5_read_rows(f, "/members/probs", H5T_NATIVE_FLOAT, row, 1,
                          (size_t)j->n_test * j->classes, j->pack + j->nparams + j->nstats);
  if (j->n_val)
    ret |= ens_h5_read_rows(f, "/members/val_probs", H5T_NATIVE_FLOAT, row, 1,
                            (size_t)j->n_val * j->classes,
                            j->pack + j->nparams + j->nstats + (size_t)j->n_test * j->classes);
  return ret ? ENS_EFORMAT : 0;
}

/* Brings member k (index i in this job) into j->pack and makes sure the
 * output file holds it: from rank 0's own file, from another rank, or from
 * one of the part files of a merge. */
static int get_member(ens_job *j, int i, int k, ens_member_meta *meta, char *err, size_t errlen) {
  const int C = j->classes;
  const size_t len = ens_job_packed_len(j);
  int ret = 0;
  if (j->nparts > 0) {
    const ens_part *p = ens_job_part_of(j, k);
    ret = read_member(j, p->file, (hsize_t)(k - p->first), k, meta);
    if (ret) {
      snprintf(err, errlen, "%s: member %d is missing or has the wrong size", p->path, k);
      return ret;
    }
    if (j->c->mode == ENS_MODE_BOOTSTRAP) {
      /* Out-of-bag scores: recompute the training-set probabilities. */
      memcpy(j->trainer.model.params, j->pack, j->nparams * sizeof(float));
      memcpy(j->trainer.model.stats, j->pack + j->nparams, j->nstats * sizeof(float));
      ens_model_predict(&j->trainer.model, j->pack + len - (size_t)j->n_train * C, j->ftrain,
                        j->n_train);
    }
    ret = write_member(j, meta, j->pack);
  } else if (ens_job_rank_of(j, k) == 0) {
    ret = read_member(j, j->file, (hsize_t)i, k, meta);
    if (!ret && j->c->mode == ENS_MODE_BOOTSTRAP) {
      char path[128];
      snprintf(path, sizeof(path), "/scratch/train_probs_%d", k);
      ret = ens_h5_read(j->file, path, H5T_NATIVE_FLOAT, j->pack + len - (size_t)j->n_train * C,
                        (size_t)j->n_train * C);
    }
  } else {
    int src = ens_job_rank_of(j, k);
    if (MPI_Recv(meta, (int)sizeof(*meta), MPI_BYTE, src, TAG_META, j->comm,
                 MPI_STATUS_IGNORE) != MPI_SUCCESS || meta->k != k)
      ret = ENS_EMPI;
    if (!ret)
      ret = recv_floats(j->pack, len, src, j->comm);
    if (!ret)
      ret = write_member(j, meta, j->pack);
  }
  if (ret)
    snprintf(err, errlen, "collecting member %d: %s", k, ens_strerror(ret));
  return ret;
}

/* Non-root ranks: send held members in member order (rank 0 asks in the
 * same order, so plain blocking sends cannot deadlock). */
static int send_held(ens_job *j) {
  size_t len = ens_job_packed_len(j);
  for (int i = 0; i < j->nheld; i++) {
    if (MPI_Send(&j->held[i].meta, (int)sizeof(ens_member_meta), MPI_BYTE, 0, TAG_META, j->comm) !=
        MPI_SUCCESS)
      return ENS_EMPI;
    int ret = send_floats(j->held[i].data, len, 0, j->comm);
    if (ret)
      return ret;
    free(j->held[i].data);
    j->held[i].data = NULL;
  }
  return 0;
}

/* Running sums of rank 0. */
typedef struct sums {
  double *psum;      /* (n_test, C) summed probabilities */
  int32_t *votes;    /* (n_test, C) */
  double *wsum;      /* (nparams) summed parameters */
  int32_t *preds;    /* (M, n_test) member predictions */
  double *oob_sum;   /* (n_train, C), bootstrap */
  int32_t *oob_cnt;  /* (n_train) */
  uint8_t *inbag;    /* (n_train) */
  float *tmp;        /* (n_test, C) scratch */
  int32_t *vpred;    /* (n_test) scratch */
  double *macc, *mnll, *mbrier, *mece, *moob; /* (M) */
  double *mvacc, *mvnll;                      /* (M) validation metrics */
  double *vsum;                               /* (n_val, C) summed val probabilities */
  double *curve_acc, *curve_nll;              /* (M) */
} sums;

static void sums_free(sums *s) {
  free(s->psum);
  free(s->votes);
  free(s->wsum);
  free(s->preds);
  free(s->oob_sum);
  free(s->oob_cnt);
  free(s->inbag);
  free(s->tmp);
  free(s->vpred);
  free(s->macc);
  free(s->mnll);
  free(s->mbrier);
  free(s->mece);
  free(s->moob);
  free(s->mvacc);
  free(s->mvnll);
  free(s->vsum);
  free(s->curve_acc);
  free(s->curve_nll);
}

static int sums_alloc(sums *s, const ens_job *j, int M) {
  size_t nc = (size_t)j->n_test * j->classes;
  memset(s, 0, sizeof(*s));
  s->psum = calloc(nc, sizeof(double));
  s->votes = calloc(nc, sizeof(int32_t));
  s->wsum = calloc(j->nparams, sizeof(double));
  s->preds = calloc((size_t)M * j->n_test, sizeof(int32_t));
  s->tmp = calloc(nc, sizeof(float));
  s->vpred = calloc((size_t)j->n_test, sizeof(int32_t));
  s->macc = calloc((size_t)M, sizeof(double));
  s->mnll = calloc((size_t)M, sizeof(double));
  s->mbrier = calloc((size_t)M, sizeof(double));
  s->mece = calloc((size_t)M, sizeof(double));
  s->moob = calloc((size_t)M, sizeof(double));
  s->mvacc = calloc((size_t)M, sizeof(double));
  s->mvnll = calloc((size_t)M, sizeof(double));
  s->vsum = calloc((size_t)(j->n_val ? j->n_val : 1) * j->classes, sizeof(double));
  s->curve_acc = calloc((size_t)M, sizeof(double));
  s->curve_nll = calloc((size_t)M, sizeof(double));
  int ok = s->psum && s->votes && s->wsum && s->preds && s->tmp && s->vpred && s->macc && s->mnll &&
           s->mbrier && s->mece && s->moob && s->curve_acc && s->curve_nll && s->mvacc &&
           s->mvnll && s->vsum;
  if (j->c->mode == ENS_MODE_BOOTSTRAP) {
    s->oob_sum = calloc((size_t)j->n_train * j->classes, sizeof(double));
    s->oob_cnt = calloc((size_t)j->n_train, sizeof(int32_t));
    s->inbag = calloc((size_t)j->n_train, 1);
    ok = ok && s->oob_sum && s->oob_cnt && s->inbag;
  }
  return ok ? 0 : ENS_ENOMEM;
}

/* Folds member i (index within the job) held in j->pack into the sums. */
static void fold_member(ens_job *j, sums *s, int i, int k) {
  const int C = j->classes, n = j->n_test;
  const float *probs = j->pack + j->nparams + j->nstats;
  const int32_t *y = j->data.test.y;
  for (size_t p = 0; p < j->nparams; p++)
    s->wsum[p] += j->pack[p];
  ens_combine_add(s->psum, s->votes, s->preds + (size_t)i * n, probs, n, C);
  s->macc[i] = ens_metric_accuracy(probs, y, n, C);
  s->mnll[i] = ens_metric_nll(probs, y, n, C);
  s->mbrier[i] = ens_metric_brier(probs, y, n, C);
  s->mece[i] = ens_metric_ece(probs, y, n, C);
  if (j->n_val) {
    const float *vp = probs + (size_t)n * C;
    s->mvacc[i] = ens_metric_accuracy(vp, j->data.val.y, j->n_val, C);
    s->mvnll[i] = ens_metric_nll(vp, j->data.val.y, j->n_val, C);
    for (size_t e = 0; e < (size_t)j->n_val * C; e++)
      s->vsum[e] += vp[e];
  }
  /* Ensemble-size curve under the configured rule (params: probability
   * average, since re-estimating batch norm for every prefix is costly). */
  int m = i + 1;
  if (j->c->combine == ENS_COMBINE_VOTE) {
    ens_combine_vote(s->tmp, s->vpred, s->votes, s->psum, m, n, C);
    int hit = 0;
    for (int r = 0; r < n; r++)
      hit += s->vpred[r] == y[r];
    s->curve_acc[i] = (double)hit / n;
  } else {
    ens_combine_average(s->tmp, s->psum, m, n, C);
    s->curve_acc[i] = ens_metric_accuracy(s->tmp, y, n, C);
  }
  s->curve_nll[i] = ens_metric_nll(s->tmp, y, n, C);
  if (j->c->mode == ENS_MODE_BOOTSTRAP) {
    const float *tp = probs + (size_t)(n + j->n_val) * C;
    memset(s->inbag, 0, (size_t)j->n_train);
    ens_job_bootstrap_rows(j->rows, j->n_train, j->c->seed, (uint32_t)ens_job_unit_of(j, k));
    for (int r = 0; r < j->n_train; r++)
      s->inbag[j->rows[r]] = 1;
    int hit = 0, cnt = 0;
    for (int r = 0; r < j->n_train; r++) {
      if (s->inbag[r])
        continue;
      const float *row = tp + (size_t)r * C;
      hit += ens_argmax(row, C) == j->data.train.y[r];
      cnt++;
      for (int c = 0; c < C; c++)
        s->oob_sum[(size_t)r * C + c] += row[c];
      s->oob_cnt[r]++;
    }
    s->moob[i] = cnt ? (double)hit / cnt : NAN;
  }
}

/* Accuracy and NLL of the parameter-averaged network (batch norm statistics
 * re-estimated on the training inputs). probs receives its test
 * probabilities; avg its parameters and statistics. */
static int params_average(ens_job *j, const sums *s, int M, float *probs, float *avg_params,
                          float *avg_stats) {
  ens_model m;
  int ret = ens_model_create(&m, &j->arch, j->trunk_layers, j->arch.n_hidden, 1,
                             j->c->batch > 256 ? j->c->batch : 256);
  if (ret)
    return ret;
  for (size_t p = 0; p < j->nparams; p++)
    m.params[p] = (float)(s->wsum[p] / M);
  ens_model_reestimate_bn(&m, j->ftrain, j->n_train);
  ens_model_predict(&m, probs, j->ftest, j->n_test);
  memcpy(avg_params, m.params, j->nparams * sizeof(float));
  memcpy(avg_stats, m.stats, j->nstats * sizeof(float));
  ens_model_free(&m);
  return 0;
}

static void print_summary(const ens_job *j, const sums *s, int M, const double rule_acc[3],
                          const double ens_m[4], double oob_ens, const double val_m[2]) {
  const ens_config *c = j->c;
  printf("\n%-10s %9s %8s %8s %8s", "member", "accuracy", "nll", "brier", "ece");
  if (c->mode == ENS_MODE_BOOTSTRAP)
    printf(" %9s", "oob acc");
  if (j->n_val)
    printf(" %9s %8s", "val acc", "val nll");
  printf("\n");
  for (int i = 0; i < M; i++) {
    printf("%-10d %8.2f%% %8.4f %8.4f %8.4f", j->first + i, 100 * s->macc[i], s->mnll[i],
           s->mbrier[i], s->mece[i]);
    if (c->mode == ENS_MODE_BOOTSTRAP)
      printf(" %8.2f%%", 100 * s->moob[i]);
    if (j->n_val)
      printf(" %8.2f%% %8.4f", 100 * s->mvacc[i], s->mvnll[i]);
    printf("\n");
  }
  double mean_acc = 0, mean_nll = 0, mean_ece = 0;
  for (int i = 0; i < M; i++) {
    mean_acc += s->macc[i] / M;
    mean_nll += s->mnll[i] / M;
    mean_ece += s->mece[i] / M;
  }
  printf("%-10s %8.2f%% %8.4f %8s %8.4f\n", "mean", 100 * mean_acc, mean_nll, "", mean_ece);
  printf("ensemble (%s): accuracy %.2f%%  nll %.4f  brier %.4f  ece %.4f\n",
         ens_combine_name(c->combine), 100 * ens_m[0], ens_m[1], ens_m[2], ens_m[3]);
  printf("accuracy by rule on these members: average %.2f%%  vote %.2f%%  params %.2f%%\n",
         100 * rule_acc[0], 100 * rule_acc[1], 100 * rule_acc[2]);
  if (c->mode == ENS_MODE_BOOTSTRAP)
    printf("out-of-bag ensemble accuracy: %.2f%%\n", 100 * oob_ens);
  if (j->n_val)
    printf("validation (%d rows, probability average): accuracy %.2f%%  nll %.4f\n", j->n_val,
           100 * val_m[0], val_m[1]);
  printf("ensemble-size curve (%s):", c->combine == ENS_COMBINE_VOTE ? "vote" : "average");
  for (int i = 0; i < M; i++)
    printf(" %d:%.2f%%/%.4f", i + 1, 100 * s->curve_acc[i], s->curve_nll[i]);
  printf("\n");
  fflush(stdout);
}

static int write_f64_as_f32(hid_t f, const char *path, const double *v, int n) {
  float *t = malloc((size_t)(n ? n : 1) * sizeof(float));
  if (!t)
    return ENS_ENOMEM;
  for (int i = 0; i < n; i++)
    t[i] = (float)v[i];
  hsize_t d = (hsize_t)n;
  int ret = ens_h5_write(f, path, H5T_NATIVE_FLOAT, 1, &d, t, 0);
  free(t);
  return ret;
}

int ens_job_finish_root(ens_job *j, double train_wall, char *err, size_t errlen) {
  const ens_config *c = j->c;
  const int M = j->last - j->first, C = j->classes, n = j->n_test;
  const size_t nc = (size_t)n * C;
  sums s;
  float *ens_probs = malloc(nc * sizeof(float)), *vote_probs = malloc(nc * sizeof(float));
  float *par_probs = malloc(nc * sizeof(float));
  float *avg_params = malloc(j->nparams * sizeof(float));
  float *avg_stats = malloc((j->nstats ? j->nstats : 1) * sizeof(float));
  int32_t *pred = malloc((size_t)n * sizeof(int32_t)), *vpred = malloc((size_t)n * sizeof(int32_t));
  double *dis = malloc((size_t)M * M * sizeof(double));
  int ret = sums_alloc(&s, j, M);
  if (ret || !ens_probs || !vote_probs || !par_probs || !avg_params || !avg_stats || !pred ||
      !vpred || !dis) {
    ret = ENS_ENOMEM;
    snprintf(err, errlen, "out of memory in the collection phase");
    goto cleanup;
  }
  for (int i = 0; i < M; i++) {
    int k = j->first + i;
    ens_member_meta meta;
    if ((ret = get_member(j, i, k, &meta, err, errlen)))
      goto cleanup;
    fold_member(j, &s, i, k);
  }
  /* Every rule on the same members. */
  double rule_acc[3];
  ens_combine_average(ens_probs, s.psum, M, n, C);
  rule_acc[0] = ens_metric_accuracy(ens_probs, j->data.test.y, n, C);
  ens_combine_vote(vote_probs, vpred, s.votes, s.psum, M, n, C);
  int hit = 0;
  for (int r = 0; r < n; r++)
    hit += vpred[r] == j->data.test.y[r];
  rule_acc[1] = (double)hit / n;
  ret = params_average(j, &s, M, par_probs, avg_params, avg_stats);
  if (ret) {
    snprintf(err, errlen, "parameter averaging: %s", ens_strerror(ret));
    goto cleanup;
  }
  rule_acc[2] = ens_metric_accuracy(par_probs, j->data.test.y, n, C);
  const float *final = c->combine == ENS_COMBINE_VOTE     ? vote_probs
                       : c->combine == ENS_COMBINE_PARAMS ? par_probs
                                                          : ens_probs;
  if (c->combine == ENS_COMBINE_VOTE)
    memcpy(pred, vpred, (size_t)n * sizeof(int32_t));
  else
    ens_predict_argmax(pred, final, n, C);
  double em[4];
  hit = 0;
  for (int r = 0; r < n; r++)
    hit += pred[r] == j->data.test.y[r];
  em[0] = (double)hit / n;
  em[1] = ens_metric_nll(final, j->data.test.y, n, C);
  em[2] = ens_metric_brier(final, j->data.test.y, n, C);
  em[3] = ens_metric_ece(final, j->data.test.y, n, C);
  for (int a = 0; a < M; a++)
    for (int b = 0; b < M; b++)
      dis[(size_t)a * M + b] = ens_metric_disagreement(s.preds + (size_t)a * n, s.preds + (size_t)b * n, n);
  double oob_ens = NAN;
  if (c->mode == ENS_MODE_BOOTSTRAP) {
    int oh = 0, oc = 0;
    for (int r = 0; r < j->n_train; r++) {
      if (!s.oob_cnt[r])
        continue;
      const double *row = s.oob_sum + (size_t)r * C;
      int best = 0;
      for (int cc = 1; cc < C; cc++)
        best = row[cc] > row[best] ? cc : best;
      oh += best == j->data.train.y[r];
      oc++;
    }
    oob_ens = oc ? (double)oh / oc : NAN;
  }
  /* Write everything. */
  hid_t f = j->file;
  hsize_t d2[2] = {(hsize_t)n, (hsize_t)C}, dn = (hsize_t)n, dmm[2] = {(hsize_t)M, (hsize_t)M};
  hsize_t np = j->nparams, ns = j->nstats;
  ret |= ens_h5_write(f, "/ensemble/probs", H5T_NATIVE_FLOAT, 2, d2, final, 0);
  ret |= ens_h5_write(f, "/ensemble/pred", H5T_NATIVE_INT32, 1, &dn, pred, 0);
  ret |= ens_h5_attr_str(f, "/ensemble/probs", "combine", ens_combine_name(c->combine));
  if (c->combine == ENS_COMBINE_PARAMS) {
    ret |= ens_h5_write(f, "/ensemble/params", H5T_NATIVE_FLOAT, 1, &np, avg_params, 0);
    ret |= ens_h5_write(f, "/ensemble/bn_stats", H5T_NATIVE_FLOAT, 1, &ns, avg_stats, 0);
  }
  ret |= write_f64_as_f32(f, "/metrics/member_accuracy", s.macc, M);
  ret |= write_f64_as_f32(f, "/metrics/member_nll", s.mnll, M);
  ret |= write_f64_as_f32(f, "/metrics/member_brier", s.mbrier, M);
  ret |= write_f64_as_f32(f, "/metrics/member_ece", s.mece, M);
  ret |= write_f64_as_f32(f, "/metrics/curve_accuracy", s.curve_acc, M);
  ret |= write_f64_as_f32(f, "/metrics/curve_nll", s.curve_nll, M);
  ret |= ens_h5_attr_str(f, "/metrics/curve_accuracy", "rule",
                         c->combine == ENS_COMBINE_VOTE ? "vote" : "average");
  ret |= ens_h5_write(f, "/metrics/disagreement", H5T_NATIVE_DOUBLE, 2, dmm, dis, 0);
  if (c->mode == ENS_MODE_BOOTSTRAP) {
    ret |= write_f64_as_f32(f, "/metrics/member_oob_accuracy", s.moob, M);
  }
  /* Validation rows (held out of training): scored with the probability
   * average whatever the rule, to compare configurations on unseen data. */
  double val_m[2] = {NAN, NAN};
  if (j->n_val) {
    for (size_t e = 0; e < (size_t)j->n_val * C; e++)
      s.vsum[e] /= M;
    float *vp = malloc((size_t)j->n_val * C * sizeof(float));
    if (!vp) {
      ret = ENS_ENOMEM;
    } else {
      for (size_t e = 0; e < (size_t)j->n_val * C; e++)
        vp[e] = (float)s.vsum[e];
      val_m[0] = ens_metric_accuracy(vp, j->data.val.y, j->n_val, C);
      val_m[1] = ens_metric_nll(vp, j->data.val.y, j->n_val, C);
      free(vp);
    }
    ret |= write_f64_as_f32(f, "/metrics/member_val_accuracy", s.mvacc, M);
    ret |= write_f64_as_f32(f, "/metrics/member_val_nll", s.mvnll, M);
  }
  hid_t g = H5Gcreate2(f, "/metrics/ensemble", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0)
    ret = ENS_EHDF5;
  else
    H5Gclose(g);
  ret |= ens_h5_attr_f64(f, "/metrics/ensemble", "accuracy", em[0]);
  ret |= ens_h5_attr_f64(f, "/metrics/ensemble", "nll", em[1]);
  ret |= ens_h5_attr_f64(f, "/metrics/ensemble", "brier", em[2]);
  ret |= ens_h5_attr_f64(f, "/metrics/ensemble", "ece", em[3]);
  ret |= ens_h5_attr_f64(f, "/metrics/ensemble", "accuracy_average", rule_acc[0]);
  ret |= ens_h5_attr_f64(f, "/metrics/ensemble", "accuracy_vote", rule_acc[1]);
  ret |= ens_h5_attr_f64(f, "/metrics/ensemble", "accuracy_params", rule_acc[2]);
  if (c->mode == ENS_MODE_BOOTSTRAP)
    ret |= ens_h5_attr_f64(f, "/metrics/ensemble", "oob_accuracy", oob_ens);
  if (j->n_val) {
    ret |= ens_h5_attr_f64(f, "/metrics/ensemble", "val_accuracy", val_m[0]);
    ret |= ens_h5_attr_f64(f, "/metrics/ensemble", "val_nll", val_m[1]);
  }
  ret |= ens_h5_attr_f64(f, "/", "train_seconds", train_wall);
  if (ens_h5_exists(f, "/scratch") && H5Ldelete(f, "/scratch", H5P_DEFAULT) < 0)
    ret = ENS_EHDF5;
  if (ret) {
    ret = ENS_EHDF5;
    snprintf(err, errlen, "%s: writing the result failed", j->tmp_path);
    goto cleanup;
  }
  print_summary(j, &s, M, rule_acc, em, oob_ens, val_m);
  /* Atomic publication: flush, close, rename. */
  if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(f) < 0) {
    j->file = -1;
    ret = ENS_EHDF5;
    snprintf(err, errlen, "%s: cannot flush the result file", j->tmp_path);
    goto cleanup;
  }
  j->file = -1;
  if (ens_fsync_path(j->tmp_path) || rename(j->tmp_path, c->output_path) != 0) {
    ret = ENS_EIO;
    snprintf(err, errlen, "cannot rename %s to %s", j->tmp_path, c->output_path);
    goto cleanup;
  }
  j->tmp_path[0] = '\0';
  printf("result written to %s\n", c->output_path);
  fflush(stdout);
cleanup:
  sums_free(&s);
  free(ens_probs);
  free(vote_probs);
  free(par_probs);
  free(avg_params);
  free(avg_stats);
  free(pred);
  free(vpred);
  free(dis);
  return ret;
}

int ens_job_collect(ens_job *j, double train_wall, char *err, size_t errlen) {
  int ret;
  if (j->rank == 0)
    ret = ens_job_finish_root(j, train_wall, err, errlen);
  else
    ret = send_held(j);
  /* Everyone learns whether rank 0 published the result. */
  int status = ret ? 2 : 0;
  MPI_Bcast(&status, 1, MPI_INT, 0, j->comm);
  if (!ret && status) {
    snprintf(err, errlen, "rank 0 failed to write the result");
    ret = ENS_EIO;
  }
  return ret;
}
