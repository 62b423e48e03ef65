/* Helpers of the finite-difference gradient checks (gradcheck.h). */
#include "gradcheck.h"

#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void fill_normal(float *v, size_t n, double mean, double std, ens_rng *r) {
  for (size_t i = 0; i < n; i++)
    v[i] = (float)(mean + std * ens_rng_normal(r));
}

double *to_double(const float *v, size_t n) {
  double *d = malloc((n ? n : 1) * sizeof(double));
  if (d)
    for (size_t i = 0; i < n; i++)
      d[i] = v[i];
  return d;
}

void numeric_grad(double *g, double *v, size_t n, loss_fn f, void *ctx) {
  for (size_t i = 0; i < n; i++) {
    double save = v[i];
    v[i] = save + FD_H;
    double fp = f(ctx);
    v[i] = save - FD_H;
    double fm = f(ctx);
    v[i] = save;
    g[i] = (fp - fm) / (2.0 * FD_H);
  }
}

double max_abs(const double *v, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++)
    m = fabs(v[i]) > m ? fabs(v[i]) : m;
  return m;
}

/* The largest relative error of analytic a (n) against numeric g (n), on the
 * floor 1e-2 scale (scale: the largest |g| of the whole gradient, or of g
 * when 0); *at receives the worst index. */
double grad_error(const float *a, const double *g, size_t n, double scale, size_t *at) {
  if (scale <= 0.0)
    scale = max_abs(g, n);
  double floor_ = 1e-2 * scale > 1e-12 ? 1e-2 * scale : 1e-12;
  double worst = 0.0;
  *at = 0;
  for (size_t i = 0; i < n; i++) {
    double den = fmax(fmax(fabs((double)a[i]), fabs(g[i])), floor_);
    double rel = fabs((double)a[i] - g[i]) / den;
    if (rel > worst || isnan(rel)) {
      worst = isnan(rel) ? INFINITY : rel;
      *at = i;
    }
  }
  return worst;
}

/* Fails the test unless a matches g within tol (see grad_error); prints the
 * worst entry on failure. */
double check_grad(const char *what, const float *a, const double *g, size_t n, double tol,
                         double scale) {
  size_t wi;
  double worst = grad_error(a, g, n, scale, &wi);
  if (!(worst <= tol))
    fprintf(stderr,
            "\n  gradient check %s: max relative error %.3g > %.3g at [%zu]: analytic %.9g, "
            "numeric %.9g (n = %zu)\n",
            what, worst, tol, wi, n ? (double)a[wi] : 0.0, n ? g[wi] : 0.0, n);
  else if (getenv("ENS_TEST_VERBOSE"))
    fprintf(stderr, "\n  gradient check %s: max relative error %.3g (n = %zu)", what, worst, n);
  CU_ASSERT(worst <= tol);
  return worst;
}

double max_diff(const float *a, const double *b, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (isnan(d))
      return INFINITY;
    m = d > m ? d : m;
  }
  return m;
}

