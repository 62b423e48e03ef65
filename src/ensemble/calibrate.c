/* Post-hoc calibration of ensemble predictions: temperature scaling of
 * combined class probabilities, fitted by golden-section search on the NLL,
 * and the closed-form variance scale of Gaussian regression predictions. */
#include "ens/metrics.h"

#include <math.h>
#include <stddef.h>

/* The ens_metric_nll floor, also the floor of the log-probabilities. */
#define ENS_CAL_FLOOR 1e-12
#define ENS_T_MIN 0.05
#define ENS_T_MAX 20.0
#define ENS_LOG_T_TOL 1e-5

static double floored_log(float p) {
  double x = p;
  return log(x < ENS_CAL_FLOOR ? ENS_CAL_FLOOR : x); /* NaN passes through */
}

/* log of the largest floored entry of p (C): the max of the floored logs,
 * since log is increasing, for one log per row instead of C. NaN wins. */
static double row_max_log(const float *p, int C) {
  float mx = p[0];
  for (int c = 1; c < C; c++)
    mx = p[c] > mx || isnan(p[c]) ? p[c] : mx;
  return floored_log(mx);
}

void ens_temperature_apply(float *out, const float *p, int n, int C, double T) {
  const double beta = 1.0 / T;
  for (int i = 0; i < n; i++) {
    const float *pi = p + (size_t)i * C;
    float *oi = out + (size_t)i * C;
    /* Every pass reads p before out is written, so out may alias p without
     * a scratch row: max, sum of exponentials, normalized values. */
    const double mx = row_max_log(pi, C) * beta;
    double s = 0.0;
    for (int c = 0; c < C; c++)
      s += exp(floored_log(pi[c]) * beta - mx);
    for (int c = 0; c < C; c++)
      oi[c] = (float)(exp(floored_log(pi[c]) * beta - mx) / s);
  }
}

/* Mean NLL of the temperature-scaled rows at beta = 1/T, in double, with
 * the per-row loss capped at -log(1e-12) like ens_metric_nll. One log and
 * one exp per entry. */
static double scaled_nll(const float *p, const int32_t *y, int n, int C, double beta) {
  const double cap = -log(ENS_CAL_FLOOR);
  double sum = 0.0;
  for (int i = 0; i < n; i++) {
    const float *pi = p + (size_t)i * C;
    const double mx = row_max_log(pi, C) * beta;
    double s = 0.0;
    for (int c = 0; c < C; c++)
      s += exp(floored_log(pi[c]) * beta - mx);
    double nll = mx + log(s) - floored_log(pi[y[i]]) * beta;
    sum += nll > cap ? cap : nll;
  }
  return sum / n;
}

/* Golden-section search (Kiefer 1953) on u = log T. The NLL is convex in
 * 1/T (a log-sum-exp of linear functions), hence unimodal in log T. Every
 * step is a fixed sequence of double operations, so the result is a pure
 * function of the inputs. */
double ens_temperature_fit(const float *p, const int32_t *y, int n, int C) {
  if (n <= 0)
    return 1.0;
  const double invphi = (sqrt(5.0) - 1.0) / 2.0;
  double a = log(ENS_T_MIN), b = log(ENS_T_MAX);
  double c = b - invphi * (b - a), d = a + invphi * (b - a);
  double fc = scaled_nll(p, y, n, C, exp(-c)), fd = scaled_nll(p, y, n, C, exp(-d));
  while (b - a > ENS_LOG_T_TOL) {
    if (fc < fd) {
      b = d;
      d = c;
      fd = fc;
      c = b - invphi * (b - a);
      fc = scaled_nll(p, y, n, C, exp(-c));
    } else {
      a = c;
      c = d;
      fc = fd;
      d = a + invphi * (b - a);
      fd = scaled_nll(p, y, n, C, exp(-d));
    }
  }
  const double u = 0.5 * (a + b);
  /* Prefer the identity when it is no worse (a flat NLL, e.g. uniform rows,
   * would otherwise drift to an end of the range). */
  if (!(scaled_nll(p, y, n, C, exp(-u)) < scaled_nll(p, y, n, C, 1.0)))
    return 1.0;
  return exp(u);
}

double ens_variance_scale_fit(const float *mean, const float *var, const float *y, int n, int T) {
  const size_t len = (size_t)n * T;
  double sum = 0.0;
  size_t count = 0;
  for (size_t j = 0; j < len; j++) {
    if (!(var[j] > 0.0f))
      continue;
    const double r = (double)y[j] - mean[j];
    sum += r * r / var[j];
    count++;
  }
  return count ? sum / (double)count : 1.0;
}
