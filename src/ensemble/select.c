/* Greedy ensemble selection with replacement (Caruana et al., ICML 2004):
 * members are added one at a time, repeats allowed, while the loss of the
 * count-weighted average keeps falling. One greedy loop serves the
 * classification (NLL) and regression (Gaussian NLL or MSE) losses. */
#include "ens/error.h"
#include "ens/metrics.h"

#include <math.h>
#include <stdlib.h>

#define ENS_SEL_FLOOR 1e-12 /* the ens_metric_nll floor */

/* The running sums of the picked members (count-weighted, recomputed in
 * member index order after every pick, so they are a function of the counts
 * alone) and the loss of adding one more member to them. */
typedef struct sel_ctx sel_ctx;
struct sel_ctx {
  /* Loss of (sums + member j) / (k + 1), or of sums / k when j < 0. */
  double (*loss)(const sel_ctx *s, int j, int k);
  void (*rebuild)(sel_ctx *s, const int32_t *counts);
  int M, n, T, use_var;
  const float *lab;  /* probs: (M, n) probability of the label */
  const float *pred; /* gauss: (M, n, 2T) */
  const float *y;    /* gauss: (n, T) */
  double *sum;       /* probs: (n); gauss: (n, T) sum of counts mu */
  double *sum2;      /* gauss with use_var: (n, T) sum of counts (var + mu^2) */
};

/* a ranks before b: smaller, and any number before NaN. */
static int better(double a, double b) { return a < b || (isnan(b) && !isnan(a)); }

static int greedy(int32_t *counts, const uint8_t *usable, int M, int max_picks, sel_ctx *s) {
  int picks = 0;
  double cur = NAN;
  for (;;) {
    int best = -1;
    double best_loss = NAN;
    for (int j = 0; j < M; j++) {
      if (usable && !usable[j])
        continue;
      double l = s->loss(s, j, picks);
      /* Ascending scan with a strict comparison: ties keep the lower index. */
      if (best < 0 || better(l, best_loss)) {
        best = j;
        best_loss = l;
      }
    }
    if (picks > 0 && !(best_loss < cur))
      break;
    counts[best]++;
    picks++;
    if (picks >= max_picks)
      break;
    s->rebuild(s, counts);
    cur = s->loss(s, -1, picks);
  }
  return picks;
}

/* ------------------------------------------------------- classification */

static double probs_loss(const sel_ctx *s, int j, int k) {
  const float *pj = j >= 0 ? s->lab + (size_t)j * s->n : NULL;
  const double inv = 1.0 / (j >= 0 ? k + 1 : k);
  double sum = 0.0;
  for (int i = 0; i < s->n; i++) {
    double py = (s->sum[i] + (pj ? pj[i] : 0.0)) * inv;
    if (py < ENS_SEL_FLOOR) /* NaN passes through, as in ens_metric_nll */
      py = ENS_SEL_FLOOR;
    sum -= log(py);
  }
  return sum / s->n;
}

static void probs_rebuild(sel_ctx *s, const int32_t *counts) {
  for (int i = 0; i < s->n; i++)
    s->sum[i] = 0.0;
  for (int j = 0; j < s->M; j++) {
    if (!counts[j])
      continue; /* never 0 x NaN from a member that was not picked */
    const float *pj = s->lab + (size_t)j * s->n;
    const double c = counts[j];
    for (int i = 0; i < s->n; i++)
      s->sum[i] += c * pj[i];
  }
}

static int check_args(int32_t *counts, const uint8_t *usable, int M, int n, int max_picks) {
  if (M < 1 || n < 0 || max_picks < 1)
    return ENS_EINVAL;
  int any = 0;
  for (int j = 0; j < M; j++) {
    counts[j] = 0;
    any |= !usable || usable[j];
  }
  return any ? 0 : ENS_EINVAL;
}

int ens_select_greedy_probs(int32_t *counts, const float *probs, const uint8_t *usable,
                            const int32_t *y, int M, int n, int C, int max_picks) {
  if (C < 1)
    return ENS_EINVAL;
  int ret = check_args(counts, usable, M, n, max_picks);
  if (ret)
    return ret;
  /* Only the label's probability enters the NLL: gather that column once,
   * (M, n), so each candidate costs O(n) with contiguous reads. */
  float *lab = malloc(((size_t)M * n + 1) * sizeof(float));
  double *sum = calloc((size_t)n + 1, sizeof(double));
  sel_ctx s = {
      .loss = probs_loss, .rebuild = probs_rebuild, .M = M, .n = n, .lab = lab, .sum = sum};
  if (!lab || !sum) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  for (int j = 0; j < M; j++)
    for (int i = 0; i < n; i++)
      lab[(size_t)j * n + i] = probs[((size_t)j * n + i) * C + y[i]];
  ret = greedy(counts, usable, M, max_picks, &s);
cleanup:
  free(lab);
  free(sum);
  return ret;
}

/* ----------------------------------------------------------- regression */

static double gauss_loss(const sel_ctx *s, int j, int k) {
  const int T = s->T;
  const double inv = 1.0 / (j >= 0 ? k + 1 : k), log2pi = log(2.0 * M_PI);
  double sum = 0.0;
  for (int i = 0; i < s->n; i++) {
    const float *row = j >= 0 ? s->pred + ((size_t)j * s->n + i) * 2 * T : NULL;
    const float *yi = s->y + (size_t)i * T;
    for (int t = 0; t < T; t++) {
      const size_t e = (size_t)i * T + t;
      const double mu = row ? (double)row[t] : 0.0;
      const double mean = (s->sum[e] + mu) * inv;
      const double r = (double)yi[t] - mean;
      if (!s->use_var) {
        sum += r * r;
        continue;
      }
      const double second = (s->sum2[e] + (row ? (double)row[T + t] + mu * mu : 0.0)) * inv;
      const double var = second - mean * mean;
      /* A mixture variance <= 0 (all mass on one point, or rounding) makes
       * the density unbounded near the mean: +inf, never picked. */
      sum += var <= 0.0 ? INFINITY : 0.5 * (log2pi + log(var)) + r * r / (2.0 * var);
    }
  }
  return sum / ((double)s->n * T);
}

static void gauss_rebuild(sel_ctx *s, const int32_t *counts) {
  const int T = s->T;
  const size_t len = (size_t)s->n * T;
  for (size_t e = 0; e < len; e++) {
    s->sum[e] = 0.0;
    if (s->use_var)
      s->sum2[e] = 0.0;
  }
  for (int j = 0; j < s->M; j++) {
    if (!counts[j])
      continue;
    const double c = counts[j];
    for (int i = 0; i < s->n; i++) {
      const float *row = s->pred + ((size_t)j * s->n + i) * 2 * T;
      for (int t = 0; t < T; t++) {
        const size_t e = (size_t)i * T + t;
        const double mu = row[t];
        s->sum[e] += c * mu;
        if (s->use_var)
          s->sum2[e] += c * ((double)row[T + t] + mu * mu);
      }
    }
  }
}

int ens_select_greedy_gauss(int32_t *counts, const float *pred, const uint8_t *usable,
                            const float *y, int M, int n, int T, int max_picks, int use_var) {
  if (T < 1)
    return ENS_EINVAL;
  int ret = check_args(counts, usable, M, n, max_picks);
  if (ret)
    return ret;
  const size_t len = (size_t)n * T + 1;
  double *sum = calloc(len, sizeof(double));
  double *sum2 = use_var ? calloc(len, sizeof(double)) : NULL;
  sel_ctx s = {.loss = gauss_loss,
               .rebuild = gauss_rebuild,
               .M = M,
               .n = n,
               .T = T,
               .use_var = use_var != 0,
               .pred = pred,
               .y = y,
               .sum = sum,
               .sum2 = sum2};
  if (!sum || (use_var && !sum2)) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  ret = greedy(counts, usable, M, max_picks, &s);
cleanup:
  free(sum);
  free(sum2);
  return ret;
}
