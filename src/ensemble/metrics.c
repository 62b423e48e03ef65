/* Metrics of probabilistic predictions (accuracy, NLL, Brier, ECE,
 * disagreement) and the average and vote combination rules. Inputs are
 * float32 probabilities; every sum is accumulated in double. */
#include "ens/metrics.h"

#include <math.h>
#include <stddef.h>

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
