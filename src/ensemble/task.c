/* Task dispatch: prediction rows, metrics, combination, calibration and
 * selection for classification (probabilities) and regression (means and
 * variances). Every sum is accumulated in double in member order. */
#include "ensemble/task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"
#include "ens/metrics.h"
#include "io/h5util.h"

static const char *const class_metrics[] = {"accuracy", "nll", "brier", "ece"};
static const char *const reg_metrics[] = {"rmse",        "nll",         "mae",
                                          "r2",          "crps",        "coverage_50",
                                          "coverage_90", "coverage_95", "width_50",
                                          "width_90",    "width_95"};

void ens_task_init(ens_task *k, int regress, int C, int T, ens_loss_kind loss,
                   const float *ymean, const float *ystd) {
  memset(k, 0, sizeof(*k));
  k->regress = regress;
  k->C = regress ? 0 : C;
  k->T = regress ? T : 0;
  k->head = !regress ? ENS_HEAD_SOFTMAX : loss == ENS_LOSS_MSE ? ENS_HEAD_MSE : ENS_HEAD_GAUSSIAN;
  k->W = regress ? 2 * T : C;
  k->ymean = regress ? ymean : NULL;
  k->ystd = regress ? ystd : NULL;
}

const char *ens_task_kind_name(const ens_task *k) { return k->regress ? "regress" : "classify"; }

int ens_task_nmetrics(const ens_task *k) {
  return k->regress ? (int)(sizeof reg_metrics / sizeof *reg_metrics)
                    : (int)(sizeof class_metrics / sizeof *class_metrics);
}

const char *ens_task_metric_name(const ens_task *k, int i) {
  return k->regress ? reg_metrics[i] : class_metrics[i];
}

int ens_task_metric_higher_better(const ens_task *k, int i) {
  if (!k->regress)
    return i == 0;
  return i == 3 || (i >= 5 && i <= 7);
}

int ens_task_parts(const ens_task *k, const char **names) {
  if (!k->regress) {
    names[0] = "probs";
    return 1;
  }
  names[0] = "mean";
  names[1] = "var";
  return 2;
}

void ens_task_split_rows(const ens_task *k, const float *rows, int n, float *const *parts) {
  const char *names[ENS_TASK_MAX_PARTS];
  const int np = ens_task_parts(k, names);
  const size_t cols = (size_t)(k->W / np);
  for (int p = 0; p < np; p++)
    for (int i = 0; i < n; i++) {
      float *dst = parts[p] + (size_t)i * cols;
      if (rows)
        memcpy(dst, rows + (size_t)i * k->W + (size_t)p * cols, cols * sizeof(float));
      else
        for (size_t c = 0; c < cols; c++)
          dst[c] = NAN;
    }
}

void ens_task_join_rows(const ens_task *k, const float *const *parts, int n, float *rows) {
  const char *names[ENS_TASK_MAX_PARTS];
  const int np = ens_task_parts(k, names);
  const size_t cols = (size_t)(k->W / np);
  for (int p = 0; p < np; p++)
    for (int i = 0; i < n; i++)
      memcpy(rows + (size_t)i * k->W + (size_t)p * cols, parts[p] + (size_t)i * cols,
             cols * sizeof(float));
}

/* Splits regression rows (n, 2T) into means and variances (n, T) each. */
static void split_rows(const ens_task *k, const float *rows, int n, float *mean, float *var) {
  float *const parts[2] = {mean, var};
  ens_task_split_rows(k, rows, n, parts);
}

void ens_task_metrics(const ens_task *k, double *out, const float *pred, const ens_truth *truth) {
  const int n = truth->n;
  if (!k->regress) {
    out[0] = ens_metric_accuracy(pred, truth->y, n, k->C);
    out[1] = ens_metric_nll(pred, truth->y, n, k->C);
    out[2] = ens_metric_brier(pred, truth->y, n, k->C);
    out[3] = ens_metric_ece(pred, truth->y, n, k->C);
    return;
  }
  const int T = k->T;
  float *mean = malloc((size_t)(n ? n : 1) * T * sizeof(float));
  float *var = malloc((size_t)(n ? n : 1) * T * sizeof(float));
  if (!mean || !var) {
    for (int i = 0; i < ens_task_nmetrics(k); i++)
      out[i] = NAN;
    free(mean);
    free(var);
    return;
  }
  split_rows(k, pred, n, mean, var);
  ens_reg_metrics m;
  ens_reg_metrics_compute(&m, mean, var, truth->t, n, T);
  double v[] = {m.rmse,  m.nll,   m.mae,   m.r2,      m.crps,    m.cov50,
                m.cov90, m.cov95, m.width50, m.width90, m.width95};
  memcpy(out, v, sizeof(v));
  free(mean);
  free(var);
}

double ens_task_prior_nll(const ens_task *k, const ens_split *train, const ens_truth *truth) {
  const int n = truth->n, nt = train->n;
  if (nt <= 0 || n <= 0 || (!k->regress && !train->y) || (k->regress && !train->t))
    return NAN;
  double *prior = calloc((size_t)k->W, sizeof(double));
  float *rows = malloc((size_t)n * k->W * sizeof(float));
  double out[ENS_TASK_MAX_METRICS];
  if (!prior || !rows) {
    free(prior);
    free(rows);
    return NAN;
  }
  if (!k->regress) {
    for (int i = 0; i < nt; i++)
      if (train->y[i] >= 0 && train->y[i] < k->C)
        prior[train->y[i]] += 1;
    for (int c = 0; c < k->C; c++)
      prior[c] = (prior[c] + 1) / ((double)nt + k->C);
  } else {
    const int T = k->T;
    for (int t = 0; t < T; t++) {
      double s = 0, ss = 0;
      for (int i = 0; i < nt; i++)
        s += train->t[(size_t)i * T + t];
      const double mu = s / nt;
      for (int i = 0; i < nt; i++) {
        const double d = train->t[(size_t)i * T + t] - mu;
        ss += d * d;
      }
      prior[t] = mu;
      prior[T + t] = fmax(ss / nt, 1e-12);
    }
  }
  for (int i = 0; i < n; i++)
    for (int w = 0; w < k->W; w++)
      rows[(size_t)i * k->W + w] = (float)prior[w];
  ens_task_metrics(k, out, rows, truth);
  free(prior);
  free(rows);
  return out[1];
}

/* Undoes the target standardization of rows (n, 2T) in place. */
static void to_original_units(const ens_task *k, float *rows, int n) {
  if (!k->regress || !k->ymean)
    return;
  const int T = k->T;
  for (int i = 0; i < n; i++) {
    float *r = rows + (size_t)i * 2 * T;
    for (int t = 0; t < T; t++) {
      r[t] = r[t] * k->ystd[t] + k->ymean[t];
      r[T + t] = r[T + t] * k->ystd[t] * k->ystd[t];
    }
  }
}

void ens_task_predict(const ens_task *k, ens_model *m, float *pred, const float *x, int n) {
  ens_model_predict(m, pred, x, n);
  to_original_units(k, pred, n);
}

void ens_task_predict_mc(const ens_task *k, ens_model *m, float *pred, float *scratch,
                         const float *x, int n, uint64_t seed, uint32_t member, int passes) {
  const size_t nw = (size_t)n * k->W;
  double *sum = calloc(nw ? nw : 1, sizeof(double));
  if (!sum) {
    ens_task_predict(k, m, pred, x, n);
    return;
  }
  ens_task_predict_mc_at(k, m, pred, scratch, sum, x, n, 0, seed, member, passes);
  free(sum);
}

void ens_task_predict_mc_at(const ens_task *k, ens_model *m, float *pred, float *scratch,
                            double *sum, const float *x, int n, long row0, uint64_t seed,
                            uint32_t member, int passes) {
  const size_t nw = (size_t)n * k->W;
  memset(sum, 0, (nw ? nw : 1) * sizeof(double));
  for (int p = 0; p < passes; p++) {
    ens_model_predict_mc(m, scratch, x, n, row0, seed, member, (uint32_t)p);
    to_original_units(k, scratch, n);
    if (!k->regress) {
      for (size_t e = 0; e < nw; e++)
        sum[e] += scratch[e];
      continue;
    }
    const int T = k->T;
    for (int i = 0; i < n; i++)
      for (int t = 0; t < T; t++) {
        double mu = scratch[(size_t)i * 2 * T + t], v = scratch[(size_t)i * 2 * T + T + t];
        sum[(size_t)i * 2 * T + t] += mu;
        sum[(size_t)i * 2 * T + T + t] += v + mu * mu;
      }
  }
  if (!k->regress) {
    for (size_t e = 0; e < nw; e++)
      pred[e] = (float)(sum[e] / passes);
  } else {
    const int T = k->T;
    for (int i = 0; i < n; i++)
      for (int t = 0; t < T; t++) {
        double mu = sum[(size_t)i * 2 * T + t] / passes;
        double v = sum[(size_t)i * 2 * T + T + t] / passes - mu * mu;
        pred[(size_t)i * 2 * T + t] = (float)mu;
        pred[(size_t)i * 2 * T + T + t] = (float)(v > 0 ? v : 0);
      }
  }
}

/* ---- combination --------------------------------------------------------- */

int ens_acc_init(ens_acc *a, const ens_task *k, int n) {
  memset(a, 0, sizeof(*a));
  a->k = k;
  a->n = n;
  size_t rows = (size_t)(n ? n : 1);
  a->sum = calloc(rows * k->W, sizeof(double));
  a->ent = calloc(rows * (k->regress ? k->T : 1), sizeof(double));
  if (!k->regress)
    a->votes = calloc(rows * k->C, sizeof(int32_t));
  if (!a->sum || !a->ent || (!k->regress && !a->votes)) {
    ens_acc_free(a);
    return ENS_ENOMEM;
  }
  return 0;
}

void ens_acc_free(ens_acc *a) {
  free(a->sum);
  free(a->ent);
  free(a->votes);
  memset(a, 0, sizeof(*a));
}

void ens_acc_reset(ens_acc *a) {
  const ens_task *k = a->k;
  size_t rows = (size_t)a->n;
  memset(a->sum, 0, rows * k->W * sizeof(double));
  memset(a->ent, 0, rows * (k->regress ? k->T : 1) * sizeof(double));
  if (a->votes)
    memset(a->votes, 0, rows * k->C * sizeof(int32_t));
  a->wsum = 0;
  a->count = 0;
}

void ens_acc_add(ens_acc *a, const float *pred, double w, int32_t *pred_argmax) {
  const ens_task *k = a->k;
  const int n = a->n;
  a->wsum += w;
  a->count++;
  if (!k->regress) {
    const int C = k->C;
    for (int i = 0; i < n; i++) {
      const float *row = pred + (size_t)i * C;
      double *s = a->sum + (size_t)i * C;
      for (int c = 0; c < C; c++)
        s[c] += w * row[c];
      int best = ens_argmax(row, C);
      a->votes[(size_t)i * C + best]++;
      if (pred_argmax)
        pred_argmax[i] = best;
    }
    ens_entropy_accumulate(a->ent, pred, w, n, C);
    return;
  }
  const int T = k->T;
  for (int i = 0; i < n; i++) {
    const float *row = pred + (size_t)i * 2 * T;
    double *s = a->sum + (size_t)i * 2 * T;
    for (int t = 0; t < T; t++) {
      double mu = row[t], v = row[T + t];
      s[t] += w * mu;
      s[T + t] += w * (v + mu * mu);
      a->ent[(size_t)i * T + t] += w * v;
    }
  }
}

void ens_acc_mean(const ens_acc *a, float *out) {
  const ens_task *k = a->k;
  const int n = a->n;
  const double W = a->wsum > 0 ? a->wsum : 1.0;
  if (!k->regress) {
    for (size_t e = 0; e < (size_t)n * k->C; e++)
      out[e] = (float)(a->sum[e] / W);
    return;
  }
  const int T = k->T;
  for (int i = 0; i < n; i++)
    for (int t = 0; t < T; t++) {
      double mu = a->sum[(size_t)i * 2 * T + t] / W;
      double v = a->sum[(size_t)i * 2 * T + T + t] / W - mu * mu;
      out[(size_t)i * 2 * T + t] = (float)mu;
      out[(size_t)i * 2 * T + T + t] = (float)(v > 0 ? v : 0);
    }
}

void ens_acc_vote(const ens_acc *a, float *out, int32_t *pred) {
  ens_combine_vote(out, pred, a->votes, a->sum, a->count, a->n, a->k->C);
}

void ens_acc_uncertainty(const ens_acc *a, const float *comb, float *out) {
  ens_uncertainty_finish(out, comb, a->ent, a->wsum > 0 ? a->wsum : 1.0, a->n, a->k->C);
}

void ens_acc_var_parts(const ens_acc *a, const float *comb, float *alea, float *epi) {
  const int T = a->k->T, n = a->n;
  const double W = a->wsum > 0 ? a->wsum : 1.0;
  for (int i = 0; i < n; i++)
    for (int t = 0; t < T; t++) {
      double al = a->ent[(size_t)i * T + t] / W;
      double tot = comb[(size_t)i * 2 * T + T + t];
      double ep = tot - al;
      alea[(size_t)i * T + t] = (float)al;
      epi[(size_t)i * T + t] = (float)(ep > 0 ? ep : 0);
    }
}

void ens_task_argmax(const ens_task *k, int32_t *pred, const float *rows, int n) {
  if (k->regress)
    return;
  ens_predict_argmax(pred, rows, n, k->C);
}

/* ---- calibration and selection ------------------------------------------ */

double ens_task_calibration_fit(const ens_task *k, const float *val_rows, const ens_truth *val) {
  if (!k->regress)
    return ens_temperature_fit(val_rows, val->y, val->n, k->C);
  const int T = k->T, n = val->n;
  float *mean = malloc((size_t)(n ? n : 1) * T * sizeof(float));
  float *var = malloc((size_t)(n ? n : 1) * T * sizeof(float));
  double s = 1.0;
  if (mean && var) {
    split_rows(k, val_rows, n, mean, var);
    s = ens_variance_scale_fit(mean, var, val->t, n, T);
  }
  free(mean);
  free(var);
  return s;
}

void ens_task_calibration_apply(const ens_task *k, float *rows, int n, double f, float *alea,
                                float *epi) {
  if (!k->regress) {
    ens_temperature_apply(rows, rows, n, k->C, f);
    return;
  }
  const int T = k->T;
  for (int i = 0; i < n; i++)
    for (int t = 0; t < T; t++) {
      rows[(size_t)i * 2 * T + T + t] = (float)(rows[(size_t)i * 2 * T + T + t] * f);
      if (alea)
        alea[(size_t)i * T + t] = (float)(alea[(size_t)i * T + t] * f);
      if (epi)
        epi[(size_t)i * T + t] = (float)(epi[(size_t)i * T + t] * f);
    }
}

ens_select_opts ens_task_select_opts(const ens_config *c) {
  return (ens_select_opts){.max_picks = c->select_max,
                           .bags = c->select_bags,
                           .fraction = c->select_fraction,
                           .min_rows = ENS_SELECT_MIN_ROWS,
                           .check = c->select_check,
                           .seed = c->seed};
}

int ens_task_select(const ens_task *k, int32_t *counts, ens_select_info *info, const float *vrows,
                    const uint8_t *usable, const ens_truth *val, int M,
                    const ens_select_opts *o) {
  if (!k->regress)
    return ens_select_robust_probs(counts, info, vrows, usable, val->y, M, val->n, k->C, o);
  return ens_select_robust_gauss(counts, info, vrows, usable, val->t, M, val->n, k->T,
                                 k->head == ENS_HEAD_GAUSSIAN, o);
}

int ens_task_write_rows(hid_t f, const char *prefix, const ens_task *k, const float *rows,
                        const int32_t *pred, const float *unc, const float *alea,
                        const float *epi, int n) {
  char path[128];
  int ret = 0;
  if (!k->regress) {
    hsize_t d2[2] = {(hsize_t)n, (hsize_t)k->C}, dn = (hsize_t)n, d3[2] = {(hsize_t)n, 3};
    snprintf(path, sizeof(path), "%sprobs", prefix);
    ret |= ens_h5_write(f, path, H5T_NATIVE_FLOAT, 2, d2, rows, 0);
    snprintf(path, sizeof(path), "%spred", prefix);
    ret |= ens_h5_write(f, path, H5T_NATIVE_INT32, 1, &dn, pred, 0);
    snprintf(path, sizeof(path), "%suncertainty", prefix);
    ret |= ens_h5_write(f, path, H5T_NATIVE_FLOAT, 2, d3, unc, 0);
    ret |= ens_h5_attr_str(f, path, "columns",
                           "predictive_entropy,expected_entropy,mutual_information");
    return ret;
  }
  const int T = k->T;
  float *mean = malloc((size_t)(n ? n : 1) * T * sizeof(float));
  float *var = malloc((size_t)(n ? n : 1) * T * sizeof(float));
  if (!mean || !var) {
    free(mean);
    free(var);
    return ENS_ENOMEM;
  }
  split_rows(k, rows, n, mean, var);
  hsize_t d2[2] = {(hsize_t)n, (hsize_t)T};
  const char *names[4] = {"mean", "var", "var_aleatoric", "var_epistemic"};
  const float *data[4] = {mean, var, alea, epi};
  for (int i = 0; i < 4; i++) {
    snprintf(path, sizeof(path), "%s%s", prefix, names[i]);
    ret |= ens_h5_write(f, path, H5T_NATIVE_FLOAT, 2, d2, data[i], 0);
  }
  free(mean);
  free(var);
  return ret;
}

void ens_task_units(const ens_task *k, float *rows, int n) { to_original_units(k, rows, n); }
