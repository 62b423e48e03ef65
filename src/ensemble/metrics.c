/* Metrics of probabilistic predictions (accuracy, NLL, Brier, ECE,
 * disagreement), the average and vote combination rules, regression metrics
 * of Gaussian predictions, entropy-based uncertainty and the AUROC. Inputs
 * are float32; every sum is accumulated in double. */
#include "ens/metrics.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define ENS_NLL_FLOOR 1e-12

/* An empty set of points has no defined mean: say so with NaN rather than a
 * plausible-looking 0. */
static double mean_or_nan(double sum, int n) { return n > 0 ? sum / (double)n : NAN; }

/* Upper edge k/15 of ECE bin k-1, rounded to float32 like the probabilities.
 * Comparing float confidences with float edges puts 0.6f (which is slightly
 * above the real 9/15) in bin 8 as the edge rule intends, instead of bin 9. */
static float ece_edge(int k) { return (float)((double)k / ENS_ECE_BINS); }

/* Bin i holds conf in (edge(i), edge(i+1)], conf <= 0 (and NaN) in bin 0,
 * conf > 1 in the last bin. ceil(conf * 15) - 1 gives the bin up to one step
 * at the float-rounded edges; the two comparisons settle those cases. */
static int ece_bin(float conf) {
  if (!(conf > 0.0f))
    return 0;
  if (conf >= 1.0f)
    return ENS_ECE_BINS - 1;
  int b = (int)ceil((double)conf * ENS_ECE_BINS) - 1;
  if (b < 0)
    b = 0;
  if (b > ENS_ECE_BINS - 1)
    b = ENS_ECE_BINS - 1;
  if (b > 0 && conf <= ece_edge(b))
    b--;
  else if (b < ENS_ECE_BINS - 1 && conf > ece_edge(b + 1))
    b++;
  return b;
}

int ens_no_better_than_prior(double nll, double prior_nll) {
  if (!isfinite(prior_nll))
    return 0;
  return !(nll < prior_nll - ENS_PRIOR_MIN_NATS);
}

int ens_argmax(const float *p, int C) {
  int best = 0;
  for (int c = 1; c < C; c++)
    if (p[c] > p[best])
      best = c;
  return best;
}

void ens_predict_argmax(int32_t *pred, const float *p, int n, int C) {
  for (int i = 0; i < n; i++)
    pred[i] = ens_argmax(p + (size_t)i * C, C);
}

double ens_metric_accuracy(const float *p, const int32_t *y, int n, int C) {
  double hits = 0.0;
  for (int i = 0; i < n; i++)
    if (ens_argmax(p + (size_t)i * C, C) == y[i])
      hits += 1.0;
  return mean_or_nan(hits, n);
}

double ens_metric_nll(const float *p, const int32_t *y, int n, int C) {
  double sum = 0.0;
  for (int i = 0; i < n; i++) {
    double py = p[(size_t)i * C + y[i]];
    /* fmax would pass a NaN p through as the floor; keep NaN visible. */
    if (py < ENS_NLL_FLOOR)
      py = ENS_NLL_FLOOR;
    sum -= log(py);
  }
  return mean_or_nan(sum, n);
}

double ens_metric_brier(const float *p, const int32_t *y, int n, int C) {
  double sum = 0.0;
  for (int i = 0; i < n; i++) {
    const float *row = p + (size_t)i * C;
    for (int c = 0; c < C; c++) {
      double d = (double)row[c] - (c == y[i] ? 1.0 : 0.0);
      sum += d * d;
    }
  }
  return mean_or_nan(sum, n);
}

/* Guo et al. 2017, "On Calibration of Modern Neural Networks", eq. 3. */
double ens_metric_ece(const float *p, const int32_t *y, int n, int C) {
  double count[ENS_ECE_BINS] = {0}, acc[ENS_ECE_BINS] = {0}, conf[ENS_ECE_BINS] = {0};
  for (int i = 0; i < n; i++) {
    const float *row = p + (size_t)i * C;
    int k = ens_argmax(row, C);
    int b = ece_bin(row[k]);
    count[b] += 1.0;
    conf[b] += row[k];
    if (k == y[i])
      acc[b] += 1.0;
  }
  if (n <= 0)
    return NAN;
  /* |acc_b/count_b - conf_b/count_b| * count_b/n = |acc_b - conf_b| / n */
  double ece = 0.0;
  for (int b = 0; b < ENS_ECE_BINS; b++)
    if (count[b] > 0.0)
      ece += fabs(acc[b] - conf[b]);
  return ece / (double)n;
}

void ens_combine_add(double *psum, int32_t *votes, int32_t *pred, const float *p, int n, int C) {
  for (int r = 0; r < n; r++) {
    const float *row = p + (size_t)r * C;
    double *sum = psum + (size_t)r * C;
    for (int c = 0; c < C; c++)
      sum[c] += row[c];
    int best = ens_argmax(row, C);
    votes[(size_t)r * C + best]++;
    if (pred)
      pred[r] = best;
  }
}

void ens_combine_average(float *out, const double *sum, int m, int n, int C) {
  size_t len = (size_t)n * C;
  for (size_t j = 0; j < len; j++)
    out[j] = (float)(sum[j] / m);
}

void ens_combine_vote(float *out, int32_t *pred, const int32_t *votes, const double *psum,
                      int m, int n, int C) {
  for (int i = 0; i < n; i++) {
    const int32_t *v = votes + (size_t)i * C;
    const double *s = psum + (size_t)i * C;
    float *o = out + (size_t)i * C;
    int best = 0;
    for (int c = 0; c < C; c++) {
      o[c] = (float)((double)v[c] / m);
      /* Ascending scan with strict comparisons keeps the lower class on a
       * full tie. */
      if (v[c] > v[best] || (v[c] == v[best] && s[c] > s[best]))
        best = c;
    }
    pred[i] = best;
  }
}

double ens_metric_disagreement(const int32_t *pred_a, const int32_t *pred_b, int n) {
  double differ = 0.0;
  for (int i = 0; i < n; i++)
    if (pred_a[i] != pred_b[i])
      differ += 1.0;
  return mean_or_nan(differ, n);
}

/* ------------------------------------------------------------ regression */

/* Two-sided standard normal quantiles of the central 50, 90 and 95 %
 * intervals: Phi^-1(0.75), Phi^-1(0.95), Phi^-1(0.975). */
static const double reg_z[3] = {0.6744897501960817, 1.6448536269514722, 1.959963984540054};

static double std_normal_cdf(double z) { return 0.5 * erfc(-z / M_SQRT2); }
static double std_normal_pdf(double z) { return exp(-0.5 * z * z) / sqrt(2.0 * M_PI); }

/* CRPS of N(mu, sigma^2) at y, sigma > 0 (Gneiting & Raftery 2007, eq. 21). */
static double crps_gaussian(double r, double sigma) {
  const double z = r / sigma;
  return sigma * (z * (2.0 * std_normal_cdf(z) - 1.0) + 2.0 * std_normal_pdf(z) - 1.0 / sqrt(M_PI));
}

void ens_reg_metrics_compute(ens_reg_metrics *m, const float *mean, const float *var,
                             const float *y, int n, int T) {
  const size_t len = (size_t)n * T;
  const double log2pi = log(2.0 * M_PI);
  double se = 0.0, ae = 0.0, nll = 0.0, crps = 0.0, cov[3] = {0}, width[3] = {0};
  for (size_t j = 0; j < len; j++) {
    const double r = (double)y[j] - mean[j];
    se += r * r;
    ae += fabs(r);
    if (!var)
      continue;
    const double v = var[j];
    if (v > 0.0) {
      const double sigma = sqrt(v);
      nll += 0.5 * (log2pi + log(v)) + r * r / (2.0 * v);
      crps += crps_gaussian(r, sigma);
      for (int q = 0; q < 3; q++) {
        cov[q] += fabs(r) <= reg_z[q] * sigma;
        width[q] += 2.0 * reg_z[q] * sigma;
      }
    } else if (v <= 0.0) {
      /* A point mass at mu (a negative variance, e.g. from rounding in a
       * moment-matched mixture, is read the same way): the limits of the
       * Gaussian terms as var -> 0. Its density at y = mu is infinite. */
      nll += r == 0.0 ? -INFINITY : INFINITY;
      crps += fabs(r);
      for (int q = 0; q < 3; q++)
        cov[q] += r == 0.0;
    } else {
      /* NaN variance: keep it visible in every variance-based metric. */
      nll = crps = NAN;
      for (int q = 0; q < 3; q++)
        cov[q] = width[q] = NAN;
    }
  }
  const double inv = 1.0 / (double)len; /* len 0: every mean is NaN (0 * inf) */
  m->rmse = len ? sqrt(se * inv) : NAN;
  m->mae = len ? ae * inv : NAN;
  if (var && len) {
    m->nll = nll * inv;
    m->crps = crps * inv;
    m->cov50 = cov[0] * inv, m->cov90 = cov[1] * inv, m->cov95 = cov[2] * inv;
    m->width50 = width[0] * inv, m->width90 = width[1] * inv, m->width95 = width[2] * inv;
  } else {
    m->nll = m->crps = NAN;
    m->cov50 = m->cov90 = m->cov95 = NAN;
    m->width50 = m->width90 = m->width95 = NAN;
  }

  /* r2 per target: 1 - SS_res / SS_tot about that target's mean, two passes
   * in double; averaged over targets (a constant target gives NaN). */
  double r2 = 0.0;
  for (int t = 0; t < T; t++) {
    double ybar = 0.0, ss_res = 0.0, ss_tot = 0.0;
    for (int i = 0; i < n; i++)
      ybar += y[(size_t)i * T + t];
    ybar /= n;
    for (int i = 0; i < n; i++) {
      const size_t j = (size_t)i * T + t;
      const double d = (double)y[j] - ybar, r = (double)y[j] - mean[j];
      ss_tot += d * d;
      ss_res += r * r;
    }
    r2 += ss_tot > 0.0 ? 1.0 - ss_res / ss_tot : NAN;
  }
  m->r2 = T > 0 && n > 0 ? r2 / T : NAN;
}

/* ---------------------------------------------- classification uncertainty */

/* Shannon entropy in nats of p (C), with 0 log 0 = 0; accumulated in double. */
static double row_entropy(const float *p, int C) {
  double h = 0.0;
  for (int c = 0; c < C; c++)
    if (p[c] > 0.0f)
      h -= (double)p[c] * log((double)p[c]);
  return h;
}

void ens_entropy_accumulate(double *acc, const float *p, double w, int n, int C) {
  for (int i = 0; i < n; i++)
    acc[i] += w * row_entropy(p + (size_t)i * C, C);
}

void ens_uncertainty_finish(float *out, const float *pbar, const double *ent_sum, double wsum,
                            int n, int C) {
  for (int i = 0; i < n; i++) {
    const double total = row_entropy(pbar + (size_t)i * C, C);
    const double expected = ent_sum[i] / wsum;
    const double mi = total - expected;
    out[3 * (size_t)i] = (float)total;
    out[3 * (size_t)i + 1] = (float)expected;
    /* Entropy is concave, so MI >= 0 in exact arithmetic; clamp rounding. */
    out[3 * (size_t)i + 2] = (float)(mi < 0.0 ? 0.0 : mi); /* NaN stays NaN */
  }
}

/* ----------------------------------------------------------------- AUROC */

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Mann-Whitney form of the AUROC (Hanley & McNeil 1982): sort both sets,
 * then for each positive count the negatives below it and those tied with
 * it in one merge pass. Counts are exact in int64 (2 x the statistic). */
double ens_auroc(const float *pos, int npos, const float *neg, int nneg) {
  if (npos <= 0 || nneg <= 0)
    return NAN;
  for (int i = 0; i < npos; i++)
    if (isnan(pos[i]))
      return NAN;
  for (int i = 0; i < nneg; i++)
    if (isnan(neg[i]))
      return NAN;
  float *a = malloc((size_t)npos * sizeof(float)), *b = malloc((size_t)nneg * sizeof(float));
  double auc = NAN; /* also the answer when allocation fails */
  if (!a || !b)
    goto done;
  memcpy(a, pos, (size_t)npos * sizeof(float));
  memcpy(b, neg, (size_t)nneg * sizeof(float));
  qsort(a, (size_t)npos, sizeof(float), cmp_float);
  qsort(b, (size_t)nneg, sizeof(float), cmp_float);
  int64_t twice = 0; /* 2 #(pos > neg) + #(pos == neg) */
  int lo = 0, hi = 0; /* b[0..lo) < a[i], b[0..hi) <= a[i] */
  for (int i = 0; i < npos; i++) {
    while (lo < nneg && b[lo] < a[i])
      lo++;
    if (hi < lo)
      hi = lo;
    while (hi < nneg && b[hi] <= a[i])
      hi++;
    twice += 2 * (int64_t)lo + (hi - lo);
  }
  auc = (double)twice / (2.0 * (double)npos * (double)nneg);
done:
  free(a);
  free(b);
  return auc;
}
