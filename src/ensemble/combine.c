/* Rank 0's half of the collection: fold the members in member order into
 * running sums (every rule at once), select members greedily on the
 * validation rows, calibrate, score, write the ensemble and the metrics, and
 * publish the result file atomically. Used by live runs and `ens merge`.
 * Everything here is a function of the members in member order, so the
 * result does not depend on the number of ranks. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"
#include "ens/metrics.h"
#include "ens/search.h"
#include "ensemble/history.h"
#include "ens/halving.h"
#include "ensemble/halving.h"
#include "ensemble/fold.h"
#include "ensemble/hyperdeep.h"
#include "ensemble/job.h"
#include "ensemble/ranks.h"
#include "ensemble/result.h"
#include "io/fsutil.h"
#include "io/h5util.h"
#include "io/storage.h"

#define NM ENS_TASK_MAX_METRICS

/* What the fold gathers. Per-member metric tables are (M, nmetrics). */
typedef struct fold {
  int M, nm;
  uint8_t *done;              /* (M) 1 = finished */
  ens_member_meta *meta;      /* (M) */
  double *mtest, *mval, *mmc; /* (M, nm) */
  double *moob;               /* (M) out-of-bag headline metric */
  double *curve0, *curve1;    /* (M) headline metric and NLL of the first i+1 members */
  int32_t *preds;             /* (M, n_test) class predictions (classify) */
  ens_acc test, val, mc;      /* uniform sums over finished members */
  double *wsum;               /* (nparams) parameter sums (combine = params) */
  ens_model wn;                /* weight norm + params: the layout whose effective w is summed */
  int have_wn;
  double *oob_sum;            /* (n_train, W) bootstrap: sums as ens_acc keeps them */
  int32_t *oob_cnt;           /* (n_train) */
  uint8_t *inbag;             /* (n_train) */
  float *oob_rows;            /* (n_train, W) scratch */
  int32_t *oob_y;             /* (n_train) scratch */
  float *oob_t;               /* (n_train, T) scratch */
  float *tmp;                 /* (n_test, W) scratch */
  int32_t *tpred;             /* (n_test) scratch */
} fold;

static void fold_free(fold *f) {
  free(f->done);
  free(f->meta);
  free(f->mtest);
  free(f->mval);
  free(f->mmc);
  free(f->moob);
  free(f->curve0);
  free(f->curve1);
  free(f->preds);
  ens_acc_free(&f->test);
  ens_acc_free(&f->val);
  ens_acc_free(&f->mc);
  free(f->wsum);
  if (f->have_wn)
    ens_model_free(&f->wn);
  free(f->oob_sum);
  free(f->oob_cnt);
  free(f->inbag);
  free(f->oob_rows);
  free(f->oob_y);
  free(f->oob_t);
  free(f->tmp);
  free(f->tpred);
}

static double *nan_array(size_t n) {
  double *a = malloc((n ? n : 1) * sizeof(double));
  if (a)
    for (size_t i = 0; i < n; i++)
      a[i] = NAN;
  return a;
}

static int fold_alloc(fold *f, const ens_job *j, int M) {
  const ens_task *K = &j->task;
  const size_t W = (size_t)K->W, n = (size_t)j->data.n_test, nt = (size_t)j->data.n_train;
  memset(f, 0, sizeof(*f));
  f->M = M;
  f->nm = ens_task_nmetrics(K);
  f->done = calloc((size_t)M, 1);
  f->meta = calloc((size_t)M, sizeof(ens_member_meta));
  f->mtest = nan_array((size_t)M * NM);
  f->mval = nan_array((size_t)M * NM);
  f->mmc = nan_array((size_t)M * NM);
  f->moob = nan_array((size_t)M);
  f->curve0 = nan_array((size_t)M);
  f->curve1 = nan_array((size_t)M);
  f->preds = calloc((size_t)M * (n ? n : 1), sizeof(int32_t));
  f->tmp = malloc((n ? n : 1) * W * sizeof(float));
  f->tpred = calloc(n ? n : 1, sizeof(int32_t));
  int ok = f->done && f->meta && f->mtest && f->mval && f->mmc && f->moob && f->curve0 &&
           f->curve1 && f->preds && f->tmp && f->tpred;
  ok = ok && !ens_acc_init(&f->test, K, j->data.n_test);
  ok = ok && (!j->data.n_val || !ens_acc_init(&f->val, K, j->data.n_val));
  ok = ok && (j->c->mc_samples <= 0 || !ens_acc_init(&f->mc, K, j->data.n_test));
  if (ok && j->c->combine == ENS_COMBINE_PARAMS)
    ok = (f->wsum = calloc(j->nparams ? j->nparams : 1, sizeof(double))) != NULL;
  /* Weight norm: members are averaged in their effective weights w. */
  if (ok && j->c->combine == ENS_COMBINE_PARAMS && j->arch.weightnorm) {
    ok = ens_model_create(&f->wn, &j->arch, j->trunk.layers, j->arch.n_hidden, 1, 1) == 0;
    f->have_wn = ok;
  }
  if (ok && j->c->mode == ENS_MODE_BOOTSTRAP) {
    f->oob_sum = calloc(nt * W, sizeof(double));
    f->oob_cnt = calloc(nt, sizeof(int32_t));
    f->inbag = calloc(nt, 1);
    f->oob_rows = malloc(nt * W * sizeof(float));
    f->oob_y = malloc(nt * sizeof(int32_t));
    f->oob_t = malloc(nt * (size_t)(K->regress ? K->T : 1) * sizeof(float));
    ok = f->oob_sum && f->oob_cnt && f->inbag && f->oob_rows && f->oob_y && f->oob_t;
  }
  return ok ? 0 : ENS_ENOMEM;
}

/* Copies the rows of `rows` (n_train, W) and the truth of the training rows
 * marked in `sel` into the compact scratch arrays; returns their count. */
static int gather_rows(const ens_job *j, fold *f, const float *rows, const uint8_t *sel,
                       int want) {
  const ens_task *K = &j->task;
  const size_t W = (size_t)K->W;
  int c = 0;
  for (int r = 0; r < j->data.n_train; r++) {
    if (sel[r] != want)
      continue;
    memcpy(f->oob_rows + (size_t)c * W, rows + (size_t)r * W, W * sizeof(float));
    if (K->regress)
      memcpy(f->oob_t + (size_t)c * K->T, j->data.sets.train.t + (size_t)r * K->T,
             (size_t)K->T * sizeof(float));
    else
      f->oob_y[c] = j->data.sets.train.y[r];
    c++;
  }
  return c;
}

/* Headline metric of rows against the compact truth of gather_rows. */
static double headline(const ens_job *j, fold *f, const float *rows, int cnt) {
  double m[NM];
  ens_truth t = {.y = f->oob_y, .t = f->oob_t, .n = cnt};
  if (!cnt)
    return NAN;
  ens_task_metrics(&j->task, m, rows, &t);
  return m[0];
}

/* Folds member i (index within the job), held in j->pack, into f. */
static void fold_member(ens_job *j, fold *f, int i) {
  const ens_task *K = &j->task;
  const ens_config *c = j->c;
  const ens_member_meta *meta = &f->meta[i];
  const int n = j->data.n_test, nm = f->nm;
  const ens_truth test = {j->data.sets.test.y, j->data.sets.test.t, n};
  const ens_truth val = {j->data.sets.val.y, j->data.sets.val.t, j->data.n_val};
  ens_pack_view v;
  ens_member_view(j, meta, j->pack, &v);
  ens_task_metrics(K, f->mtest + (size_t)i * NM, v.test, &test);
  ens_acc_add(&f->test, v.test, 1.0, f->preds + (size_t)i * n);
  if (j->data.n_val) {
    ens_task_metrics(K, f->mval + (size_t)i * NM, v.val, &val);
    ens_acc_add(&f->val, v.val, 1.0, NULL);
  }
  if (v.mc) {
    ens_task_metrics(K, f->mmc + (size_t)i * NM, v.mc, &test);
    ens_acc_add(&f->mc, v.mc, 1.0, NULL);
  }
  if (f->wsum && (size_t)meta->nparams == j->nparams && f->have_wn)
    ens_model_wn_add_effective(&f->wn, f->wsum, v.params);
  else if (f->wsum && (size_t)meta->nparams == j->nparams)
    for (size_t p = 0; p < j->nparams; p++)
      f->wsum[p] += v.params[p];
  /* Ensemble-size curve under the configured rule (params and select: the
   * probability average of the members so far). */
  double m[NM];
  if (c->combine == ENS_COMBINE_VOTE) {
    ens_acc_vote(&f->test, f->tmp, f->tpred);
    int hit = 0;
    for (int r = 0; r < n; r++)
      hit += f->tpred[r] == test.y[r];
    ens_task_metrics(K, m, f->tmp, &test);
    m[0] = (double)hit / n;
  } else {
    ens_acc_mean(&f->test, f->tmp);
    ens_task_metrics(K, m, f->tmp, &test);
  }
  f->curve0[i] = m[0];
  f->curve1[i] = m[1];
  (void)nm;
  if (v.train) {
    /* Out-of-bag rows of this member's bootstrap draw. */
    const size_t W = (size_t)K->W;
    memset(f->inbag, 0, (size_t)j->data.n_train);
    ens_job_bootstrap_rows(j->rows, j->data.n_train, c->seed, (uint32_t)ens_job_unit_of(j, meta->k));
    for (int r = 0; r < j->data.n_train; r++)
      f->inbag[j->rows[r]] = 1;
    int cnt = gather_rows(j, f, v.train, f->inbag, 0);
    f->moob[i] = headline(j, f, f->oob_rows, cnt);
    for (int r = 0; r < j->data.n_train; r++) {
      if (f->inbag[r])
        continue;
      const float *row = v.train + (size_t)r * W;
      double *s = f->oob_sum + (size_t)r * W;
      if (!K->regress) {
        for (size_t e = 0; e < W; e++)
          s[e] += row[e];
      } else {
        for (int t = 0; t < K->T; t++) {
          s[t] += row[t];
          s[K->T + t] += (double)row[K->T + t] + (double)row[t] * row[t];
        }
      }
      f->oob_cnt[r]++;
    }
  }
}

/* Headline metric of the out-of-bag ensemble: each training row scored by
 * the members that did not draw it. */
static double oob_ensemble(const ens_job *j, fold *f) {
  const ens_task *K = &j->task;
  const size_t W = (size_t)K->W;
  float *rows = malloc((size_t)(j->data.n_train ? j->data.n_train : 1) * W * sizeof(float));
  uint8_t *has = malloc((size_t)(j->data.n_train ? j->data.n_train : 1));
  double out = NAN;
  if (rows && has) {
    for (int r = 0; r < j->data.n_train; r++) {
      has[r] = f->oob_cnt[r] > 0;
      const double *s = f->oob_sum + (size_t)r * W;
      float *o = rows + (size_t)r * W;
      double cnt = f->oob_cnt[r] ? f->oob_cnt[r] : 1;
      if (!K->regress) {
        for (size_t e = 0; e < W; e++)
          o[e] = (float)(s[e] / cnt);
      } else {
        for (int t = 0; t < K->T; t++) {
          double mu = s[t] / cnt, v = s[K->T + t] / cnt - mu * mu;
          o[t] = (float)mu;
          o[K->T + t] = (float)(v > 0 ? v : 0);
        }
      }
    }
    int cnt = gather_rows(j, f, rows, has, 1);
    out = headline(j, f, f->oob_rows, cnt);
  }
  free(rows);
  free(has);
  return out;
}

/* The parameter-averaged network (batch-norm statistics re-estimated on the
 * training inputs, SWA's update_bn): test rows into test_rows, validation
 * rows into val_rows (when not NULL), parameters and statistics into
 * avg_params/avg_stats. */
static int params_average(ens_job *j, const fold *f, int ndone, float *test_rows,
                          float *val_rows, float *avg_params, float *avg_stats) {
  ens_model m;
  int ret = ens_model_create(&m, &j->arch, j->trunk.layers, j->arch.n_hidden, 1,
                             j->c->batch > 256 ? j->c->batch : 256);
  if (ret)
    return ret;
  for (size_t p = 0; p < j->nparams; p++)
    m.params[p] = (float)(f->wsum[p] / ndone);
  /* Weight norm: v holds the average of the members' w; g = ||v|| makes it
   * the layer's weight. */
  if (f->have_wn)
    ens_model_wn_renormalize(&m);
  ens_model_reestimate_bn(&m, j->data.ftrain, j->data.n_train);
  ens_task_predict(&j->task, &m, test_rows, j->data.ftest, j->data.n_test);
  if (val_rows && j->data.n_val)
    ens_task_predict(&j->task, &m, val_rows, j->data.fval, j->data.n_val);
  memcpy(avg_params, m.params, j->nparams * sizeof(float));
  memcpy(avg_stats, m.stats, j->nstats * sizeof(float));
  ens_model_free(&m);
  return 0;
}

static int write_f64_as_f32(hid_t f, const char *path, const double *v, int n, size_t stride) {
  float *t = malloc((size_t)(n ? n : 1) * sizeof(float));
  if (!t)
    return ENS_ENOMEM;
  for (int i = 0; i < n; i++)
    t[i] = (float)v[(size_t)i * stride];
  hsize_t d = (hsize_t)n;
  int ret = ens_h5_write(f, path, H5T_NATIVE_FLOAT, 1, &d, t, 0);
  free(t);
  return ret;
}

/* Writes table (M, NM) as /metrics/member_<prefix><name> for every metric. */
static int write_member_metrics(const ens_job *j, const double *table, int M, const char *prefix) {
  int ret = 0;
  char path[96];
  for (int m = 0; m < ens_task_nmetrics(&j->task); m++) {
    snprintf(path, sizeof(path), "/metrics/member_%s%s", prefix,
             ens_task_metric_name(&j->task, m));
    ret |= write_f64_as_f32(j->file, path, table + m, M, NM);
  }
  return ret;
}

/* Attributes <prefix><name> of /metrics/ensemble for every metric. */
static int write_ens_metrics(const ens_job *j, const double *m, const char *prefix) {
  int ret = 0;
  char name[96];
  for (int i = 0; i < ens_task_nmetrics(&j->task); i++) {
    snprintf(name, sizeof(name), "%s%s", prefix, ens_task_metric_name(&j->task, i));
    ret |= ens_h5_attr_f64(j->file, "/metrics/ensemble", name, m[i]);
  }
  return ret;
}

/* ---- the printed summary ------------------------------------------------- */

/* Metrics shown in the tables: classify all four; regress rmse, mae, r2,
 * nll, crps, coverage_90 (metric 0 is the headline, metric 1 the NLL). */
static const int shown_class[] = {0, 1, 2, 3};
static const int shown_reg[] = {0, 2, 3, 1, 4, 6};

static void print_value(const ens_task *K, int m, double v) {
  int pct = !K->regress ? m == 0 : (m >= 5 && m <= 7);
  if (pct)
    printf(" %9.2f%%", 100 * v);
  else
    printf(" %10.4g", v);
}

/* The robust selection's record: which rule was used and why, the held-out
 * check's losses, and the picks per member (/ensemble/weights holds them
 * divided by select_picks). */
static int write_select_info(hid_t h, const ens_select_info *si, const int32_t *counts, int M,
                             const ens_config *c) {
  int ret = 0;
  const char *g = "/metrics/ensemble";
  hsize_t dm = (hsize_t)M;
  ret |= ens_h5_write(h, "/ensemble/picks", H5T_NATIVE_INT32, 1, &dm, counts, 0);
  ret |= ens_h5_attr_str(h, g, "select_rule", ens_select_rule_name(si->rule));
  ret |= ens_h5_attr_str(h, g, "select_reason",
                         si->rule == ENS_SELECT_RULE_AVERAGE ? ens_select_reason_text(si->reason)
                         : c->select_check ? "lowest NLL on held-out validation rows"
                                           : "[ensemble] select_check = false");
  ret |= ens_h5_attr_i64(h, g, "select_bags", c->select_bags);
  ret |= ens_h5_attr_i64(h, g, "select_init", si->init_sum);
  ret |= ens_h5_attr_f64(h, g, "select_check_average_nll", si->cv_average);
  ret |= ens_h5_attr_f64(h, g, "select_check_greedy_nll", si->cv_greedy);
  ret |= ens_h5_attr_f64(h, g, "select_check_bagged_nll", si->cv_bagged);
  return ret;
}

static void print_select_info(const ens_select_info *si, int nv, int ndone) {
  if (si->rule == ENS_SELECT_RULE_AVERAGE && si->reason == ENS_SELECT_FEW_ROWS) {
    printf("selection: plain average of the %d finished members: %d validation rows are fewer "
           "than %d\n",
           ndone, nv, ENS_SELECT_MIN_ROWS);
    return;
  }
  if (si->rule == ENS_SELECT_RULE_AVERAGE)
    printf("selection: plain average of the %d finished members (no selection beat it on "
           "held-out validation rows)",
           ndone);
  else
    printf("selection: %s, %d picks", ens_select_rule_name(si->rule), si->picks);
  if (!isnan(si->cv_average)) {
    printf("; held-out nll on the %d validation rows: average %.4f, greedy %.4f", nv,
           si->cv_average, si->cv_greedy);
    if (!isnan(si->cv_bagged))
      printf(", bagged %.4f", si->cv_bagged);
  }
  printf("\n");
}

/* Names the finished members whose NLL is not ENS_PRIOR_MIN_NATS below the
 * prior predictor's (ens_no_better_than_prior): a network stuck at the class
 * frequencies (dead ReLUs, a learning rate too high without batch norm)
 * finishes with a finite loss, so the guard does not fail it, and the plain
 * average would dilute the others with it unnoticed. prior is NaN (nothing
 * named) for mse heads, whose rows carry no variance to score. */
static void print_no_better(const ens_job *j, const fold *f, double prior) {
  const double *nll = j->data.n_val ? f->mval : f->mtest;
  int count = 0;
  for (int i = 0; i < f->M; i++)
    count += f->done[i] && ens_no_better_than_prior(nll[(size_t)i * NM + 1], prior);
  if (!count)
    return;
  printf("warning: %d finished member%s no better than the prior (", count,
         count > 1 ? "s are" : " is");
  for (int i = 0, w = 0; i < f->M; i++)
    if (f->done[i] && ens_no_better_than_prior(nll[(size_t)i * NM + 1], prior))
      printf("%s%d", w++ ? ", " : "", j->first + i);
  printf("): %s nll not %g below %.4f, that of predicting the training %s for every row; ",
         j->data.n_val ? "validation" : "scored-row", ENS_PRIOR_MIN_NATS, prior,
         j->task.regress ? "targets' mean and variance" : "class frequencies");
  const char *them = count > 1 ? "them" : "it";
  if (j->c->combine == ENS_COMBINE_SELECT)
    printf("the selection weighs %s on the validation rows like the others\n", them);
  else if (j->c->combine == ENS_COMBINE_PARAMS)
    printf("%s parameters are averaged with the others'\n", count > 1 ? "their" : "its");
  else
    printf("combine = %s includes %s like the others\n", ens_combine_name(j->c->combine), them);
}

static void print_summary(const ens_job *j, const fold *f, const double *em, const char *rule,
                          double oob, const double *sel_best, int best, const double *avg_m,
                          double calib, const double *uncal, const double *ens_mc, double prior) {
  const ens_task *K = &j->task;
  const ens_config *c = j->c;
  const int *shown = K->regress ? shown_reg : shown_class;
  int ns = K->regress ? 6 : 4;
  if (strcmp(ens_jobdata_scored_name(&j->data), "test") == 0)
    printf("\nscores on the %d test rows", j->data.n_test);
  else
    printf("\nscores on %d held-out validation rows (%s): the input has no /test split",
           j->data.n_test,
           strcmp(j->data.scored, "/val") == 0 ? "its /val" : "[data] val_fraction of /train");
  printf("%s\n", j->data.n_val ? ", validation scores (val) on the validation rows" : "");
  printf("%-8s", "member");
  for (int s = 0; s < ns; s++)
    printf(" %10s", ens_task_metric_name(K, shown[s]));
  if (c->mode == ENS_MODE_BOOTSTRAP)
    printf(" %10s", K->regress ? "oob rmse" : "oob acc");
  if (j->data.n_val)
    printf(" %10s %10s", K->regress ? "val rmse" : "val acc", "val nll");
  if (c->mc_samples > 0)
    printf(" %10s %10s", K->regress ? "mc rmse" : "mc acc", "mc nll");
  printf("\n");
  for (int i = 0; i < f->M; i++) {
    printf("%-8d", j->first + i);
    if (!f->done[i]) {
      if (f->meta[i].status == ENS_MEMBER_STOPPED)
        printf(" %s\n", f->meta[i].fail_reason);
      else
        printf(" failed at epoch %d: %s\n", f->meta[i].fail_epoch, f->meta[i].fail_reason);
      continue;
    }
    for (int s = 0; s < ns; s++)
      print_value(K, shown[s], f->mtest[(size_t)i * NM + shown[s]]);
    if (c->mode == ENS_MODE_BOOTSTRAP)
      print_value(K, 0, f->moob[i]);
    if (j->data.n_val) {
      print_value(K, 0, f->mval[(size_t)i * NM]);
      print_value(K, 1, f->mval[(size_t)i * NM + 1]);
    }
    if (c->mc_samples > 0) {
      print_value(K, 0, f->mmc[(size_t)i * NM]);
      print_value(K, 1, f->mmc[(size_t)i * NM + 1]);
    }
    if (c->mode == ENS_MODE_SEARCH) {
      ens_config mc;
      char desc[256];
      ens_member_config(j, j->first + i, &mc);
      ens_search_describe(&mc, desc, sizeof(desc));
      printf("  %s", desc);
    }
    printf("\n");
  }
  print_no_better(j, f, prior);
  printf("ensemble (%s):", rule);
  for (int s = 0; s < ns; s++) {
    printf(" %s ", ens_task_metric_name(K, shown[s]));
    int pct = !K->regress ? shown[s] == 0 : (shown[s] >= 5 && shown[s] <= 7);
    printf(pct ? "%.2f%%" : "%.4g", pct ? 100 * em[shown[s]] : em[shown[s]]);
  }
  printf("\n");
  if (c->combine == ENS_COMBINE_VOTE)
    printf("  (vote: nll and brier are computed on vote shares, which are not probabilities, so "
           "they are large by construction; compare accuracy)\n");
  if (c->combine == ENS_COMBINE_PARAMS && j->arch.weightnorm)
    printf("  (params, weight norm: the members' effective weights w = g v / ||v|| are "
           "averaged, not g and v apart)\n");
  if (c->combine == ENS_COMBINE_PARAMS && !j->shared_init)
    printf("  (params: the members were initialized independently ([ensemble] share_init = "
           "false), so the average of their parameters is rarely a working network; these "
           "scores mean little)\n");
  if (best >= 0) {
    const char *fmt = K->regress ? "%s: %s %.4g, nll %.4f\n" : "%s: %s %.2f%%, nll %.4f\n";
    char what[96];
    snprintf(what, sizeof(what), "best single member by validation nll (member %d)", best);
    printf(fmt, what, ens_task_metric_name(K, 0), K->regress ? sel_best[0] : 100 * sel_best[0],
           sel_best[1]);
    printf(fmt, "plain average of all finished members", ens_task_metric_name(K, 0),
           K->regress ? avg_m[0] : 100 * avg_m[0], avg_m[1]);
  }
  if (c->calibrate != ENS_CALIBRATE_NONE)
    printf("calibration on %d validation rows: %s %.4g; test nll %.4f -> %.4f%s\n", j->data.n_val,
           K->regress ? "variance scale" : "temperature", calib, uncal[1], em[1],
           K->regress ? "" : "");
  if (!K->regress && c->calibrate != ENS_CALIBRATE_NONE)
    printf("  test ece %.4f -> %.4f\n", uncal[3], em[3]);
  if (c->mc_samples > 0)
    printf(K->regress ? "MC-dropout (%d passes per member), ensemble: %s %.4g, nll %.4f\n"
                      : "MC-dropout (%d passes per member), ensemble: %s %.2f%%, nll %.4f\n",
           c->mc_samples, ens_task_metric_name(K, 0), K->regress ? ens_mc[0] : 100 * ens_mc[0],
           ens_mc[1]);
  if (c->mode == ENS_MODE_BOOTSTRAP)
    printf(K->regress ? "out-of-bag ensemble %s: %.4g\n" : "out-of-bag ensemble %s: %.2f%%\n",
           ens_task_metric_name(K, 0), K->regress ? oob : 100 * oob);
  /* One entry per finished member, numbered by how many are combined: the
   * slots of stopped or failed members only repeat the previous value in
   * /metrics/curve_* (NaN before the first finished member). */
  int all = 1;
  for (int i = 0; i < f->M; i++)
    all &= f->done[i] != 0;
  printf("ensemble-size curve (%s%s):", c->combine == ENS_COMBINE_VOTE ? "vote" : "average",
         all ? "" : ", finished members in member order");
  for (int i = 0, k = 0; i < f->M; i++)
    if (f->done[i])
      printf(" %d:%.4g/%.4f", ++k, K->regress ? f->curve0[i] : 100 * f->curve0[i],
             f->curve1[i]);
  printf("\n");
  fflush(stdout);
}

/* ---- the collection ------------------------------------------------------ */

int ens_job_finish_root(ens_job *j, const ens_member_reader *rd, double train_wall, char *err,
                        size_t errlen) {
  const ens_config *c = j->c;
  const ens_task *K = &j->task;
  const int M = j->last - j->first, n = j->data.n_test, nv = j->data.n_val;
  const size_t W = (size_t)K->W, nw = (size_t)n * W;
  const ens_truth test = {j->data.sets.test.y, j->data.sets.test.t, n};
  const ens_truth val = {j->data.sets.val.y, j->data.sets.val.t, nv};
  fold f;
  ens_acc sel, selv;
  memset(&sel, 0, sizeof(sel));
  memset(&selv, 0, sizeof(selv));
  float *final = malloc((nw ? nw : 1) * sizeof(float));
  float *final_val = malloc(((size_t)nv * W + 1) * sizeof(float));
  float *avg_rows = malloc((nw ? nw : 1) * sizeof(float));
  float *unc = malloc((size_t)(n ? n : 1) * 3 * sizeof(float));
  size_t nT = (size_t)(n ? n : 1) * (K->regress ? K->T : 1);
  float *alea = calloc(nT, sizeof(float)), *epi = calloc(nT, sizeof(float));
  int32_t *pred = calloc((size_t)(n ? n : 1), sizeof(int32_t));
  int32_t *counts = calloc((size_t)M, sizeof(int32_t));
  float *weights = calloc((size_t)M, sizeof(float));
  float *avg_params = malloc((j->nparams ? j->nparams : 1) * sizeof(float));
  float *avg_stats = malloc((j->nstats ? j->nstats : 1) * sizeof(float));
  float *vrows = NULL;
  double *dis = NULL;
  int ret = fold_alloc(&f, j, M);
  if (ret || !final || !final_val || !avg_rows || !unc || !alea || !epi || !pred || !counts ||
      !weights || !avg_params || !avg_stats) {
    ret = ENS_ENOMEM;
    snprintf(err, errlen, "out of memory in the collection phase");
    goto cleanup;
  }
  /* Pass 1: every member in member order. */
  int ndone = 0;
  for (int i = 0; i < M; i++) {
    int k = j->first + i;
    if ((ret = rd->get(rd->ctx, j, i, k, &f.meta[i], err, errlen)))
      goto cleanup;
    if (f.meta[i].status != ENS_MEMBER_DONE) {
      f.curve0[i] = i ? f.curve0[i - 1] : NAN;
      f.curve1[i] = i ? f.curve1[i - 1] : NAN;
      for (int r = 0; r < n; r++)
        f.preds[(size_t)i * n + r] = -1;
      continue;
    }
    f.done[i] = 1;
    ndone++;
    fold_member(j, &f, i);
  }
  int nstopped = 0;
  for (int i = 0; i < M; i++)
    nstopped += f.meta[i].status == ENS_MEMBER_STOPPED;
  /* Successive halving stops members on purpose: only the members that
   * reach the last rung can finish. */
  int need = c->min_members;
  if (j->halving && need > ens_halving_final_count(c))
    need = ens_halving_final_count(c);
  if (ndone < need || ndone == 0) {
    ret = ENS_ENUMERIC;
    int first_failed = -1;
    for (int i = 0; i < M && first_failed < 0; i++)
      if (!f.done[i] && f.meta[i].status != ENS_MEMBER_STOPPED)
        first_failed = i;
    snprintf(err, errlen,
             "only %d of %d members finished, fewer than [ensemble] min_members = %d "
             "(member %d: %s; try a lower [train] lr or [search] lr range, or set clip_norm)",
             ndone, M - nstopped, need, j->first + first_failed,
             first_failed >= 0 ? f.meta[first_failed].fail_reason : "");
    goto cleanup;
  }
  /* The prior predictor's NLL on the rows that judge the members (not for
   * mse heads: their NLL is that of a zero variance). */
  const double prior =
      K->head == ENS_HEAD_MSE ? NAN : ens_task_prior_nll(K, &j->data.sets.train, nv ? &val : &test);
  /* The plain average of the finished members (every rule reports it). */
  ens_acc_mean(&f.test, avg_rows);
  double avg_m[NM], em[NM], uncal[NM], ens_mc[NM], best_m[NM];
  for (int m = 0; m < NM; m++)
    avg_m[m] = em[m] = uncal[m] = ens_mc[m] = best_m[m] = NAN;
  ens_task_metrics(K, avg_m, avg_rows, &test);
  /* Every rule's headline metric on the same members. */
  double rule_m[3] = {avg_m[0], NAN, NAN};
  int32_t *vpred = f.tpred;
  float *vote_rows = f.tmp;
  if (!K->regress) {
    ens_acc_vote(&f.test, vote_rows, vpred);
    int hit = 0;
    for (int r = 0; r < n; r++)
      hit += vpred[r] == test.y[r];
    rule_m[1] = (double)hit / n;
  }
  float *par_val = NULL;
  if (c->combine == ENS_COMBINE_PARAMS) {
    par_val = malloc(((size_t)nv * W + 1) * sizeof(float));
    if (!par_val || (ret = params_average(j, &f, ndone, final, par_val, avg_params, avg_stats))) {
      free(par_val);
      ret = ret ? ret : ENS_ENOMEM;
      snprintf(err, errlen, "parameter averaging: %s", ens_strerror(ret));
      goto cleanup;
    }
    double pm[NM];
    ens_task_metrics(K, pm, final, &test);
    rule_m[2] = pm[0];
  }
  /* Weights: uniform over finished members, or greedy selection. */
  const ens_acc *used = &f.test;
  int best = -1, picks = 0;
  ens_select_info sinfo = {.cv_average = NAN, .cv_greedy = NAN, .cv_bagged = NAN};
  for (int i = 0; i < M; i++)
    counts[i] = f.done[i];
  if (c->combine == ENS_COMBINE_SELECT) {
    vrows = malloc((size_t)M * nv * W * sizeof(float));
    if (!vrows || (ret = ens_acc_init(&sel, K, n)) || (ret = ens_acc_init(&selv, K, nv))) {
      ret = ENS_ENOMEM;
      snprintf(err, errlen, "out of memory for selection");
      goto cleanup;
    }
    for (int i = 0; i < M && !ret; i++)
      if (f.done[i])
        ret = ens_job_read_rows(j, "val_", j->first + i, vrows + (size_t)i * nv * W, nv);
    if (!ret) {
      ens_select_opts so = ens_task_select_opts(c);
      /* Hyper-deep: the selection among the search's members, each
       * configuration's weight spread over its seeds (hyperdeep.c). */
      picks = j->hyperdeep
                  ? ens_hyperdeep_select(j->hyperdeep, K, counts, &sinfo, vrows, f.done, &val, &so)
                  : ens_task_select(K, counts, &sinfo, vrows, f.done, &val, M, &so);
      ret = picks < 0 ? picks : 0;
    }
    /* Pass 2: the selected members' test rows, weighted by their picks. */
    for (int i = 0; i < M && !ret; i++) {
      if (!counts[i])
        continue;
      ret = ens_job_read_rows(j, "", j->first + i, f.tmp, n);
      if (!ret) {
        ens_acc_add(&sel, f.tmp, counts[i], NULL);
        ens_acc_add(&selv, vrows + (size_t)i * nv * W, counts[i], NULL);
      }
    }
    if (ret) {
      snprintf(err, errlen, "greedy selection: %s", ens_strerror(ret));
      goto cleanup;
    }
    used = &sel;
    for (int i = 0; i < M; i++)
      if (f.done[i] && (best < 0 || f.mval[(size_t)i * NM + 1] < f.mval[(size_t)best * NM + 1]))
        best = i;
    memcpy(best_m, f.mtest + (size_t)best * NM, sizeof(best_m));
  }
  double wtot = 0;
  for (int i = 0; i < M; i++)
    wtot += counts[i];
  for (int i = 0; i < M; i++)
    weights[i] = (float)(counts[i] / wtot);
  /* The combined rows of the configured rule (test and validation). */
  switch (c->combine) {
  case ENS_COMBINE_VOTE:
    memcpy(final, vote_rows, nw * sizeof(float));
    memcpy(pred, vpred, (size_t)n * sizeof(int32_t));
    break;
  case ENS_COMBINE_PARAMS:
    if (nv)
      memcpy(final_val, par_val, (size_t)nv * W * sizeof(float));
    break;
  case ENS_COMBINE_SELECT:
    ens_acc_mean(&sel, final);
    ens_acc_mean(&selv, final_val);
    break;
  case ENS_COMBINE_AVERAGE:
  default:
    memcpy(final, avg_rows, nw * sizeof(float));
    if (nv)
      ens_acc_mean(&f.val, final_val);
    break;
  }
  free(par_val);
  if (K->regress) {
    if (c->combine == ENS_COMBINE_PARAMS) {
      for (int i = 0; i < n; i++)
        for (int t = 0; t < K->T; t++) {
          alea[(size_t)i * K->T + t] = final[(size_t)i * W + K->T + t];
          epi[(size_t)i * K->T + t] = 0;
        }
    } else {
      ens_acc_var_parts(used, final, alea, epi);
    }
  }
  /* Calibration on the validation rows of the same rule. */
  double calib = NAN;
  ens_task_metrics(K, uncal, final, &test);
  if (c->calibrate != ENS_CALIBRATE_NONE && nv) {
    calib = ens_task_calibration_fit(K, final_val, &val);
    ens_task_calibration_apply(K, final, n, calib, K->regress ? alea : NULL,
                               K->regress ? epi : NULL);
  }
  if (!K->regress) {
    if (c->combine != ENS_COMBINE_VOTE)
      ens_task_argmax(K, pred, final, n);
    ens_acc_uncertainty(used, final, unc);
  }
  ens_task_metrics(K, em, final, &test);
  if (!K->regress) {
    int hit = 0;
    for (int r = 0; r < n; r++)
      hit += pred[r] == test.y[r];
    em[0] = (double)hit / n;
  }
  if (c->mc_samples > 0) {
    ens_acc_mean(&f.mc, f.tmp);
    ens_task_metrics(K, ens_mc, f.tmp, &test);
  }
  double oob = c->mode == ENS_MODE_BOOTSTRAP ? oob_ensemble(j, &f) : NAN;

  /* Write everything (a failure is explained by its own errno). */
  ens_h5_take_errno();
  hid_t h = j->file;
  const char *m0 = ens_task_metric_name(K, 0);
  char name[96];
  ret |= ens_task_write_rows(h, "/ensemble/", K, final, pred, unc, alea, epi, n);
  ret |= ens_h5_group(h, "/ensemble");
  ret |= ens_h5_attr_str(h, "/ensemble", "combine", ens_combine_name(c->combine));
  if (!K->regress)
    ret |= ens_h5_attr_str(h, "/ensemble/probs", "combine", ens_combine_name(c->combine));
  hsize_t dm = (hsize_t)M, np = j->nparams, ns = j->nstats;
  ret |= ens_h5_write(h, "/ensemble/weights", H5T_NATIVE_FLOAT, 1, &dm, weights, 0);
  if (c->combine == ENS_COMBINE_PARAMS) {
    ret |= ens_h5_write(h, "/ensemble/params", H5T_NATIVE_FLOAT, 1, &np, avg_params, 0);
    if (ns)
      ret |= ens_h5_write(h, "/ensemble/bn_stats", H5T_NATIVE_FLOAT, 1, &ns, avg_stats, 0);
  }
  if (c->calibrate != ENS_CALIBRATE_NONE)
    ret |= ens_h5_attr_f64(h, "/ensemble", K->regress ? "variance_scale" : "temperature", calib);
  ret |= write_member_metrics(j, f.mtest, M, "");
  if (nv)
    ret |= write_member_metrics(j, f.mval, M, "val_");
  if (c->mc_samples > 0)
    ret |= write_member_metrics(j, f.mmc, M, "mc_");
  snprintf(name, sizeof(name), "/metrics/curve_%s", m0);
  ret |= write_f64_as_f32(h, name, f.curve0, M, 1);
  ret |= ens_h5_attr_str(h, name, "rule", c->combine == ENS_COMBINE_VOTE ? "vote" : "average");
  ret |= write_f64_as_f32(h, "/metrics/curve_nll", f.curve1, M, 1);
  if (c->mode == ENS_MODE_BOOTSTRAP) {
    snprintf(name, sizeof(name), "/metrics/member_oob_%s", m0);
    ret |= write_f64_as_f32(h, name, f.moob, M, 1);
  }
  if (!K->regress) {
    /* Pairwise disagreement of the members' class predictions (NaN with a
     * failed member). */
    dis = malloc((size_t)M * M * sizeof(double));
    if (!dis) {
      ret = ENS_ENOMEM;
    } else {
      for (int a = 0; a < M; a++)
        for (int b = 0; b < M; b++)
          dis[(size_t)a * M + b] =
              f.done[a] && f.done[b]
                  ? ens_metric_disagreement(f.preds + (size_t)a * n, f.preds + (size_t)b * n, n)
                  : NAN;
      hsize_t dmm[2] = {(hsize_t)M, (hsize_t)M};
      ret |= ens_h5_write(h, "/metrics/disagreement", H5T_NATIVE_DOUBLE, 2, dmm, dis, 0);
    }
  }
  ret |= ens_h5_group(h, "/metrics/ensemble");
  ret |= write_ens_metrics(j, em, "");
  ret |= ens_h5_attr_i64(h, "/metrics/ensemble", "members_done", ndone);
  if (isfinite(prior))
    ret |= ens_h5_attr_f64(h, "/metrics/ensemble", "prior_nll", prior);
  ret |= ens_h5_attr_i64(h, "/metrics/ensemble", "members_failed", M - ndone - nstopped);
  if (j->halving)
    ret |= ens_h5_attr_i64(h, "/metrics/ensemble", "members_stopped", nstopped);
  snprintf(name, sizeof(name), "%s_average", m0);
  ret |= ens_h5_attr_f64(h, "/metrics/ensemble", name, rule_m[0]);
  if (!K->regress) {
    ret |= ens_h5_attr_f64(h, "/metrics/ensemble", "accuracy_vote", rule_m[1]);
    /* Without parameter averaging (combine != params) its accuracy is not
     * computed: it costs a batch-norm pass and means nothing for members
     * with independent initializations. */
  }
  if (c->combine == ENS_COMBINE_PARAMS) {
    snprintf(name, sizeof(name), "%s_params", m0);
    ret |= ens_h5_attr_f64(h, "/metrics/ensemble", name, rule_m[2]);
  }
  if (c->mode == ENS_MODE_BOOTSTRAP) {
    snprintf(name, sizeof(name), "oob_%s", m0);
    ret |= ens_h5_attr_f64(h, "/metrics/ensemble", name, oob);
  }
  if (nv) {
    double vm[NM];
    ens_task_metrics(K, vm, final_val, &val);
    if (c->calibrate != ENS_CALIBRATE_NONE) {
      float *cv = malloc(((size_t)nv * W + 1) * sizeof(float));
      if (cv) {
        memcpy(cv, final_val, (size_t)nv * W * sizeof(float));
        ens_task_calibration_apply(K, cv, nv, calib, NULL, NULL);
        ens_task_metrics(K, vm, cv, &val);
        free(cv);
      }
    }
    if (c->combine == ENS_COMBINE_VOTE) {
      ens_acc_mean(&f.val, final_val); /* vote: score the probability average */
      ens_task_metrics(K, vm, final_val, &val);
    }
    snprintf(name, sizeof(name), "val_%s", m0);
    ret |= ens_h5_attr_f64(h, "/metrics/ensemble", name, vm[0]);
    ret |= ens_h5_attr_f64(h, "/metrics/ensemble", "val_nll", vm[1]);
  }
  if (c->combine == ENS_COMBINE_SELECT) {
    ret |= ens_h5_attr_i64(h, "/metrics/ensemble", "select_picks", picks);
    ret |= write_select_info(h, &sinfo, counts, M, c);
    ret |= ens_h5_attr_i64(h, "/metrics/ensemble", "best_member", j->first + best);
    ret |= write_ens_metrics(j, best_m, "best_member_");
    ret |= write_ens_metrics(j, avg_m, "average_");
  }
  if (c->calibrate != ENS_CALIBRATE_NONE)
    ret |= write_ens_metrics(j, uncal, "uncalibrated_");
  if (c->mc_samples > 0) {
    ret |= write_ens_metrics(j, ens_mc, "mc_");
    ret |= ens_h5_attr_i64(h, "/metrics/ensemble", "mc_samples", c->mc_samples);
  }
  ret |= ens_h5_attr_f64(h, "/", "train_seconds", train_wall);
  ret |= ens_history_write_job(h, j, train_wall);
  ret |= ens_job_write_ranks(j);
  if (j->halving) {
    double *vn = malloc(((size_t)M + 1) * sizeof(double));
    if (!vn)
      ret |= ENS_ENOMEM;
    for (int i = 0; vn && i < M; i++)
      vn[i] = nv && f.done[i] ? f.mval[(size_t)i * NM + 1] : NAN;
    if (vn)
      ret |= ens_halving_write(j->halving, j, vn);
    free(vn);
  }
  if (ens_h5_exists(h, "/scratch") && H5Ldelete(h, "/scratch", H5P_DEFAULT) < 0)
    ret = ENS_EHDF5;
  if (ret) {
    ret = ens_job_result_error(j, ENS_EHDF5, err, errlen, "writing the ensemble", -1);
    goto cleanup;
  }
  print_summary(j, &f, em, ens_combine_name(c->combine), oob, best_m,
                best >= 0 ? j->first + best : -1, avg_m, calib, uncal, ens_mc, prior);
  if (c->combine == ENS_COMBINE_SELECT)
    print_select_info(&sinfo, nv, ndone);
  /* Atomic publication: flush, close, give back the unused reserved
   * space, fsync, rename. */
  ens_h5_take_errno();
  if (H5Fflush(h, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(h) < 0) {
    j->file = -1;
    ret = ens_job_result_error(j, ENS_EHDF5, err, errlen, "closing the result", -1);
    goto cleanup;
  }
  j->file = -1;
  int e = ens_storage_trim(j->tmp_path) != 0 ? errno : 0;
  if (!e)
    e = ens_storage_fsync(j->tmp_path);
  if (!e && rename(j->tmp_path, c->output_path) != 0)
    e = errno;
  if (e) {
    ret =
        ens_storage_write_error(err, errlen, e, c->output_path, 0, "cannot publish the result as");
    goto cleanup;
  }
  ens_fsync_dir_of(c->output_path);
  j->tmp_path[0] = '\0';
  {
    /* A relative path also in full: a batch job's log is read elsewhere. */
    char *full = c->output_path[0] == '/' ? NULL : realpath(c->output_path, NULL);
    printf("result written to %s%s%s%s\n", c->output_path, full ? " (" : "", full ? full : "",
           full ? ")" : "");
    free(full);
  }
  fflush(stdout);
cleanup:
  fold_free(&f);
  ens_acc_free(&sel);
  ens_acc_free(&selv);
  free(final);
  free(final_val);
  free(avg_rows);
  free(unc);
  free(alea);
  free(epi);
  free(pred);
  free(counts);
  free(weights);
  free(avg_params);
  free(avg_stats);
  free(vrows);
  free(dis);
  return ret;
}
