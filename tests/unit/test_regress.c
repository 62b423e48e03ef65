/* Unit tests of regression: the Gaussian NLL and MSE heads of src/nn/regress.c
 * (hand values, finite-difference gradient checks that fail the test, the
 * variance floor), the regression metrics of src/ensemble/metrics.c (every
 * field worked out by hand) and the variance scale of
 * src/ensemble/calibrate.c. */
#include "ens/metrics.h"
#include "ens/nn.h"
#include "ens/rng.h"

#include "cu_run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Hand values are computed in double from inputs that are exact in float;
 * the library rounds gradients to float (~6e-8 relative), so 1e-6 is tight
 * without being brittle. */
#define TOL 1e-6
/* Central differences of a double reference loss: step and tolerance as in
 * test_nn.c (truncation ~h^2, rounding ~1e-16 / h). */
#define FD_H 1e-5
#define GRAD_TOL 1e-3

/* ------------------------------------------------------------- helpers */

/* Fails the test unless every analytic a[i] matches the numeric g[i]:
 * |a - g| <= tol max(|a|, |g|, 1e-6 max|g|). The floor only excuses
 * entries that are zero up to rounding (e.g. dmu at y = mu). Prints the
 * worst entry with both values on failure. */
static void check_grad(const char *what, const float *a, const double *g, size_t n, double tol) {
  double scale = 0.0;
  for (size_t i = 0; i < n; i++)
    scale = fmax(scale, fabs(g[i]));
  const double floor_ = fmax(1e-6 * scale, 1e-300);
  double worst = 0.0;
  size_t wi = 0;
  for (size_t i = 0; i < n; i++) {
    double den = fmax(fmax(fabs((double)a[i]), fabs(g[i])), floor_);
    double rel = fabs((double)a[i] - g[i]) / den;
    if (!(rel <= worst)) {
      worst = isnan(rel) ? INFINITY : rel;
      wi = i;
    }
  }
  if (!(worst < tol))
    fprintf(stderr,
            "\n  gradient check %s: max relative error %.3g >= %.3g at [%zu]: analytic %.9g, "
            "numeric %.9g\n",
            what, worst, tol, wi, (double)a[wi], g[wi]);
  CU_ASSERT(worst < tol);
}

/* Double-precision reference of the Gaussian NLL head on double inputs:
 * exact softplus (no linear branch), so it is independent of the library. */
typedef struct {
  double *out; /* (batch, 2T) */
  const double *y;
  int batch, T;
  double floor_;
} gauss_ctx;

static double gauss_ref(const gauss_ctx *d) {
  double loss = 0.0;
  for (int i = 0; i < d->batch; i++)
    for (int t = 0; t < d->T; t++) {
      const double mu = d->out[i * 2 * d->T + t], raw = d->out[i * 2 * d->T + d->T + t];
      const double var = (raw > 30 ? raw + log1p(exp(-raw)) : log1p(exp(raw))) + d->floor_;
      const double r = d->y[i * d->T + t] - mu;
      loss += 0.5 * log(2.0 * M_PI * var) + r * r / (2.0 * var);
    }
  return loss / d->batch;
}

static double mse_ref(const double *out, const double *y, int batch, int T) {
  double s = 0.0;
  for (int j = 0; j < batch * T; j++)
    s += (out[j] - y[j]) * (out[j] - y[j]);
  return s / (batch * T);
}

/* ---------------------------------------------------------------- heads */

static void test_gaussian_nll_hand(void) {
  /* batch 2, T 2, floor 0.25; rows [mu0, mu1, raw0, raw1]:
   *   out = [1, -2, 0, 21], [0, 3, -1, 2];  y = [1.5, -2], [-1, 1].
   * var = softplus(raw) + 0.25, sigma(raw) = d softplus / d raw:
   *   (0,0) raw 0:  var = log 2 + 0.25 = 0.943147180559945, sigma 1/2,      r = mu - y = -0.5
   *   (0,1) raw 21: var = 21 + 0.25    = 21.25 (linear branch), sigma 1,   r = 0
   *   (1,0) raw -1: var = log(1 + e^-1) + 0.25 = 0.563261687518223, sigma 0.268941421369995, r = 1
   *   (1,1) raw 2:  var = log(1 + e^2) + 0.25  = 2.376928011042973, sigma 0.880797077977882, r = 2
   * term = 0.5 log(2 pi var) + r^2 / (2 var):
   *   0.5 (1.837877066409345 - 0.058532932) + 0.25 / 1.886294361 = 1.022207055140610
   *   0.5 (1.837877066409345 + 3.056356895) + 0                  = 2.447116980889886
   *   0.5 (1.837877066409345 - 0.574010950) + 1 / 1.126523375    = 1.519619920550615
   *   0.5 (1.837877066409345 + 0.865808902) + 4 / 4.753856022    = 2.193265185905744
   * loss = 7.182209142486855 / 2 = 3.591104571243427.
   * Gradients (divided by batch 2): dmu = r / var / 2;
   * draw = (1 / (2 var) - r^2 / (2 var^2)) sigma / 2:
   *   dmu  = -0.265069975453434, 0, 0.887686862216816, 0.420711100779703
   *   draw = 0.389615767133100 * 0.5 / 2 = 0.097403941783275,
   *          0.023529411764706 * 1 / 2   = 0.011764705882353,
   *         -0.688289068487857 * 0.268941421369995 / 2 = -0.092554720196277,
   *         -0.143640110248688 * 0.880797077977882 / 2 = -0.063258894693733 */
  const float out[8] = {1, -2, 0, 21, 0, 3, -1, 2};
  const float y[4] = {1.5f, -2, -1, 1};
  const double want_d[8] = {-0.2650699754534338,   0.0,
                            0.097403941783274911,  0.011764705882352941,
                            0.88768686221681614,   0.42071110077970336,
                            -0.092554720196277127, -0.06325889469373254};
  float d[8];
  double loss = ens_gaussian_nll_loss(d, out, y, 2, 2, 0.25f);
  CU_CHECK_CLOSE(loss, 3.5911045712434273, TOL * 3.6);
  for (int k = 0; k < 8; k++)
    CU_CHECK_CLOSE(d[k], want_d[k], TOL * fmax(fabs(want_d[k]), 1e-3));
  /* dout NULL only skips the gradient. */
  CU_ASSERT(ens_gaussian_nll_loss(NULL, out, y, 2, 2, 0.25f) == loss);
  /* The prediction head: means copied, variances as above. */
  float pred[8];
  ens_gaussian_head(pred, out, 2, 2, 0.25f);
  const double want_p[8] = {1, -2, 0.94314718055994529, 21.25,
                            0, 3,  0.56326168751822281, 2.3769280110429727};
  for (int k = 0; k < 8; k++)
    CU_CHECK_CLOSE(pred[k], want_p[k], TOL * fabs(want_p[k]));
  CU_CHECK_CLOSE(ens_softplus_var(0.0, 0.25), 0.94314718055994529, 1e-15);
}

static void test_mse_hand(void) {
  /* out = [1, -2], [0, 3]; y = [1.5, -2], [-1, 1]: mu - y = -0.5, 0, 1, 2;
   * loss = (0.25 + 0 + 1 + 4) / 4 = 1.3125; dout = 2 (mu - y) / 4 = -0.25, 0, 0.5, 1
   * (all exact in float). */
  const float out[4] = {1, -2, 0, 3}, y[4] = {1.5f, -2, -1, 1};
  const float want[4] = {-0.25f, 0.0f, 0.5f, 1.0f};
  float d[4];
  CU_CHECK_CLOSE(ens_mse_loss(d, out, y, 2, 2), 1.3125, 0.0);
  for (int k = 0; k < 4; k++)
    CU_CHECK_CLOSE(d[k], want[k], 0.0);
  CU_CHECK_CLOSE(ens_mse_loss(NULL, out, y, 2, 2), 1.3125, 0.0);
}

static void test_gaussian_nll_grad(void) {
  /* batch 5, T 3, random means and targets; raw variances random in rows
   * 0-2, and in rows 3-4 the extremes: very negative (-8: var ~ 3.4e-4 +
   * floor, a large and steep loss) and large (25: the linear branch). */
  enum { B = 5, T = 3 };
  const float floors[2] = {1e-3f, 0.1f};
  ens_rng r;
  ens_rng_init(&r, 11, 0, ENS_STREAM_TEST, 0);
  float out[B * 2 * T], y[B * T], d[B * 2 * T];
  for (int i = 0; i < B; i++)
    for (int t = 0; t < T; t++) {
      out[i * 2 * T + t] = (float)ens_rng_normal(&r);
      y[i * T + t] = (float)ens_rng_normal(&r);
      out[i * 2 * T + T + t] = i < 3 ? (float)(2.0 * ens_rng_normal(&r)) : (t % 2 ? 25.0f : -8.0f);
    }
  out[4 * 2 * T + T + 1] = -8.0f; /* row 4: -8, -8, -8 */
  out[3 * 2 * T + T + 0] = 25.0f; /* row 3: 25, 25, -8 */
  out[3 * 2 * T + T + 2] = -8.0f;
  for (int f = 0; f < 2; f++) {
    double od[B * 2 * T], yd[B * T], g[B * 2 * T];
    for (int k = 0; k < B * 2 * T; k++)
      od[k] = out[k];
    for (int k = 0; k < B * T; k++)
      yd[k] = y[k];
    gauss_ctx c = {od, yd, B, T, floors[f]};
    double loss = ens_gaussian_nll_loss(d, out, y, B, T, floors[f]);
    CU_CHECK_CLOSE(loss, gauss_ref(&c), 1e-9 * fabs(loss));
    for (int k = 0; k < B * 2 * T; k++) {
      double save = od[k];
      od[k] = save + FD_H;
      double fp = gauss_ref(&c);
      od[k] = save - FD_H;
      double fm = gauss_ref(&c);
      od[k] = save;
      g[k] = (fp - fm) / (2.0 * FD_H);
    }
    check_grad(f ? "gaussian nll (floor 0.1)" : "gaussian nll (floor 1e-3)", d, g, B * 2 * T,
               GRAD_TOL);
  }
}

static void test_mse_grad(void) {
  enum { B = 4, T = 3 };
  ens_rng r;
  ens_rng_init(&r, 12, 0, ENS_STREAM_TEST, 0);
  float out[B * T], y[B * T], d[B * T];
  double od[B * T], yd[B * T], g[B * T];
  for (int k = 0; k < B * T; k++) {
    od[k] = out[k] = (float)(3.0 * ens_rng_normal(&r));
    yd[k] = y[k] = (float)ens_rng_normal(&r);
  }
  double loss = ens_mse_loss(d, out, y, B, T);
  CU_CHECK_CLOSE(loss, mse_ref(od, yd, B, T), 1e-12 * loss);
  for (int k = 0; k < B * T; k++) {
    double save = od[k];
    od[k] = save + FD_H;
    double fp = mse_ref(od, yd, B, T);
    od[k] = save - FD_H;
    double fm = mse_ref(od, yd, B, T);
    od[k] = save;
    g[k] = (fp - fm) / (2.0 * FD_H);
  }
  check_grad("mse", d, g, B * T, GRAD_TOL);
}

static void test_variance_floor(void) {
  /* var >= floor for every raw value, from underflowing exponentials to the
   * linear branch, and equals the floor where softplus underflows to 0. */
  const float floors[3] = {1e-6f, 1e-3f, 0.5f};
  const float raws[] = {-INFINITY, -1e30f, -1000.0f, -104.0f, -88.0f, -30.0f, -8.0f, -1e-3f,
                        0.0f,      1e-3f,  8.0f,     19.99f,  20.0f,  20.01f, 25.0f, 1e30f};
  const int nr = (int)(sizeof(raws) / sizeof(raws[0]));
  for (int f = 0; f < 3; f++) {
    float out[2 * 16], pred[2 * 16];
    for (int k = 0; k < nr; k++) {
      out[2 * k] = 0.0f;
      out[2 * k + 1] = raws[k];
    }
    ens_gaussian_head(pred, out, nr, 1, floors[f]);
    int ok = 1;
    for (int k = 0; k < nr; k++) {
      if (!(pred[2 * k + 1] >= floors[f])) {
        fprintf(stderr, "\n  raw %g floor %g: var %.9g below the floor\n", raws[k], floors[f],
                pred[2 * k + 1]);
        ok = 0;
      }
      ok &= ens_softplus_var(raws[k], floors[f]) >= floors[f];
    }
    CU_ASSERT(ok);
    CU_CHECK_CLOSE(pred[1], floors[f], 0.0); /* raw -inf */
    CU_CHECK_CLOSE(pred[5], floors[f], 0.0); /* raw -1000: exp underflows */
    CU_CHECK_CLOSE(pred[31], 1e30, 1e23);    /* linear branch, no overflow */
    /* Continuity at the switch: log(1 + e^20) - 20 = 2.06e-9. */
    CU_CHECK_CLOSE(ens_softplus_var(20.0, 0.0), 20.0, 3e-9);
    CU_CHECK_CLOSE(ens_softplus_var(20.0 + 1e-12, 0.0), 20.0, 1e-11);
  }
  /* The loss is finite at both extremes and its gradient too. */
  const float out[4] = {0.0f, 0.0f, -1000.0f, 1e30f}, y[2] = {0.5f, 0.5f};
  float d[4];
  double loss = ens_gaussian_nll_loss(d, out, y, 1, 2, 1e-3f);
  CU_ASSERT(isfinite(loss));
  for (int k = 0; k < 4; k++)
    CU_ASSERT(isfinite(d[k]));
}

/* -------------------------------------------------------------- metrics */

static void check_metrics(const char *what, const ens_reg_metrics *m, const double want[11],
                          double tol) {
  const double got[11] = {m->rmse,  m->mae,   m->r2,      m->nll,     m->crps,   m->cov50,
                          m->cov90, m->cov95, m->width50, m->width90, m->width95};
  static const char *names[11] = {"rmse",  "mae",   "r2",      "nll",     "crps",   "cov50",
                                  "cov90", "cov95", "width50", "width90", "width95"};
  for (int k = 0; k < 11; k++) {
    int ok = isnan(want[k])
                 ? isnan(got[k])
                 : (isinf(want[k]) ? got[k] == want[k]
                                   : fabs(got[k] - want[k]) <= tol * fmax(1.0, fabs(want[k])));
    if (!ok)
      fprintf(stderr, "\n  %s: %s = %.17g, expected %.17g (tolerance %.3g)\n", what, names[k],
              got[k], want[k], tol);
    CU_ASSERT(ok);
  }
}

/* Constants of the hand computations below:
 *   log(2 pi) = 1.8378770664093453, so 0.5 log(2 pi) = 0.9189385332046727;
 *   phi(0) = 0.3989422804014327, phi(1) = 0.24197072451914337,
 *   phi(1.75) = 0.08627731882651153, phi(2) = 0.05399096651318806;
 *   Phi(1) = 0.8413447460685429, Phi(1.75) = 0.9599408431361829,
 *   Phi(2) = 0.9772498680518208; 1/sqrt(pi) = 0.5641895835477563;
 *   z_q = 0.6744897501960817, 1.6448536269514722, 1.959963984540054.
 * crps(z, sigma) = sigma (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)), even in z:
 *   z = 0:    0.7978845608028654 - 0.5641895835477563 = 0.2336949772551091
 *   z = 1:    0.6826894921370859 + 0.4839414490382867 - 0.5641895835477563 = 0.6024413576276163
 *   z = 1.75: 1.75 * 0.9198816862723658 + 0.1725546376530231 - 0.5641895835477563
 *             = 1.2181580050819072
 *   z = 2:    2 * 0.9544997361036416 + 0.1079819330263761 - 0.5641895835477563
 *             = 1.4527918216859031 */

static void test_reg_metrics_t1(void) {
  /* n 3, T 1: mean = (0, 1, 2), var = (1, 4, 0.25), y = (0, 3, 1.5).
   * r = y - mu = (0, 2, -0.5), sigma = (1, 2, 0.5), z = (0, 1, -1).
   * rmse = sqrt((0 + 4 + 0.25) / 3) = sqrt(1.416666...) = 1.1902380714238083
   * mae  = (0 + 2 + 0.5) / 3 = 0.8333333333333334
   * r2: ybar = 1.5, SS_tot = 2.25 + 2.25 + 0 = 4.5, SS_res = 4.25, r2 = 1 - 4.25/4.5 = 0.0555556
   * nll: 0.9189385 + 0; 0.9189385 + 0.5 log 4 + 4/8; 0.9189385 + 0.5 log 0.25 + 0.25/0.5;
   *      the log terms cancel: mean = 0.9189385332046727 + 1/3 = 1.252271866538006
   * crps: 1 * 0.2336949772551091 + 2 * 0.6024413576276163 + 0.5 * 0.6024413576276163
   *       = 1.7397983713241494 / 3 = 0.5799327904413832
   * coverage: |z| = 0, 1, 1: 50 % only the first (1 > 0.674) = 1/3; 90 % and 95 %: all = 1
   * width = 2 z_q mean(sigma) = 2 z_q (3.5 / 3): 1.5738094171241908, 3.8379917962201016,
   *         4.573249297260126 */
  const float mean[3] = {0, 1, 2}, var[3] = {1, 4, 0.25f}, y[3] = {0, 3, 1.5f};
  const double want[11] = {1.1902380714238083,  /* rmse */
                           0.8333333333333334,  /* mae */
                           0.05555555555555558, /* r2 */
                           1.252271866538006,   /* nll */
                           0.5799327904413832,  /* crps */
                           1.0 / 3.0,           /* cov50 */
                           1.0,                 /* cov90 */
                           1.0,                 /* cov95 */
                           1.5738094171241908,  /* width50 */
                           3.8379917962201016,  /* width90 */
                           4.573249297260126};  /* width95 */
  ens_reg_metrics m;
  ens_reg_metrics_compute(&m, mean, var, y, 3, 1);
  check_metrics("n 3, T 1", &m, want, 1e-12);
}

static void test_reg_metrics_t2(void) {
  /* n 2, T 2: mean = [1, 10], [2, 20]; var = [1, 4], [0.25, 1]; y = [1, 13.5], [3, 19].
   * r = (0, 3.5, 1, -1), sigma = (1, 2, 0.5, 1), z = (0, 1.75, 2, -1).
   * rmse = sqrt((0 + 12.25 + 1 + 1) / 4) = sqrt(3.5625) = 1.8874586088176875
   * mae  = (0 + 3.5 + 1 + 1) / 4 = 1.375
   * r2: target 0: y = (1, 3), ybar 2, SS_tot 2, SS_res 0 + 1 = 1, r2 = 0.5;
   *     target 1: y = (13.5, 19), ybar 16.25, SS_tot 2 * 2.75^2 = 15.125,
   *               SS_res 12.25 + 1 = 13.25, r2 = 1 - 13.25/15.125 = 0.12396694214876036;
   *     mean = 0.3119834710743802
   * nll: 0.9189385 + 0                       = 0.9189385332046727
   *      0.9189385 + 0.5 log 4 + 12.25 / 8   = 3.143335713764618
   *      0.9189385 + 0.5 log 0.25 + 1 / 0.5  = 2.2257913526447273
   *      0.9189385 + 0 + 1 / 2               = 1.4189385332046727
   *      mean = 7.7070041328186907 / 4 = 1.9267510332046727
   * crps: 0.2336949772551091 + 2 * 1.2181580050819072 + 0.5 * 1.4527918216859031
   *       + 0.6024413576276163 = 3.9988482558894916 / 4 = 0.9997120639723729
   * coverage: |z| = 0, 1.75, 2, 1: 50 %: {0} = 0.25; 90 % (1.645): {0, 1} = 0.5;
   *           95 % (1.960): {0, 1.75, 1} = 0.75
   * width = 2 z_q mean(sigma) = 2 z_q (4.5 / 4): 1.5176019379411838, 3.7009206606408123,
   *         4.409918965215121 */
  const float mean[4] = {1, 10, 2, 20}, var[4] = {1, 4, 0.25f, 1}, y[4] = {1, 13.5f, 3, 19};
  const double want[11] = {1.8874586088176875, /* rmse */
                           1.375,              /* mae */
                           0.3119834710743802, /* r2 */
                           1.9267510332046727, /* nll */
                           0.9997120639723729, /* crps */
                           0.25,               /* cov50 */
                           0.5,                /* cov90 */
                           0.75,               /* cov95 */
                           1.5176019379411838, /* width50 */
                           3.7009206606408123, /* width90 */
                           4.409918965215121}; /* width95 */
  ens_reg_metrics m;
  ens_reg_metrics_compute(&m, mean, var, y, 2, 2);
  check_metrics("n 2, T 2", &m, want, 1e-12);
}

static void test_reg_metrics_no_var(void) {
  /* var NULL: the point metrics of the T 2 case, NaN for the rest. A
   * constant target (SS_tot 0) makes r2 NaN; so does n = 0 for everything. */
  const float mean[4] = {1, 10, 2, 20}, y[4] = {1, 13.5f, 3, 19};
  const double want[11] = {
      1.8874586088176875, 1.375, 0.3119834710743802, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
  ens_reg_metrics m;
  ens_reg_metrics_compute(&m, mean, NULL, y, 2, 2);
  check_metrics("var NULL", &m, want, 1e-12);

  const float yc[4] = {1, 13.5f, 1, 19}; /* target 0 constant */
  ens_reg_metrics_compute(&m, mean, NULL, yc, 2, 2);
  CU_ASSERT(isnan(m.r2));
  CU_ASSERT(isfinite(m.rmse));

  const double nan11[11] = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
  ens_reg_metrics_compute(&m, mean, NULL, y, 0, 2);
  check_metrics("n 0", &m, nan11, 0.0);
}

static void test_reg_metrics_point_mass(void) {
  /* var 0 is a point mass at mu. n 2, T 1: mean (1, 0), var (0, 1), y (3, 0).
   * entry 0: r 2: nll +inf, crps |r| = 2, outside every interval, width 0;
   * entry 1: z 0: nll 0.9189385, crps 0.2336949772551091, inside, sigma 1.
   * rmse = sqrt(4 / 2) = 1.4142135623730951, mae 1, r2: ybar 1.5, SS_tot 4.5,
   * SS_res 4, r2 = 0.1111111; nll +inf; crps 2.2336949772551091 / 2 = 1.1168474886275546;
   * coverage 0.5 each; width = z_q (2 * 1 / 2) = z_q. */
  const float mean[2] = {1, 0}, var[2] = {0, 1}, y[2] = {3, 0};
  const double want[11] = {1.4142135623730951, /* rmse */
                           1.0,                /* mae */
                           1.0 / 9.0,          /* r2 */
                           INFINITY,           /* nll */
                           1.1168474886275546, /* crps */
                           0.5,                /* cov50 */
                           0.5,                /* cov90 */
                           0.5,                /* cov95 */
                           0.6744897501960817, /* width50 */
                           1.6448536269514722, /* width90 */
                           1.959963984540054}; /* width95 */
  ens_reg_metrics m;
  ens_reg_metrics_compute(&m, mean, var, y, 2, 1);
  check_metrics("point mass", &m, want, 1e-12);
  /* A point mass exactly at y: inside every interval, crps 0, nll -inf. */
  const float y1[2] = {1, 0};
  ens_reg_metrics_compute(&m, mean, var, y1, 2, 1);
  CU_ASSERT(m.nll == -INFINITY);
  CU_CHECK_CLOSE(m.crps, 0.2336949772551091 / 2, 1e-12);
  CU_CHECK_CLOSE(m.cov50, 1.0, 0.0);
}

static void test_variance_scale(void) {
  /* mean (0, 1, 2, 5), var (1, 4, 0, 0.25), y (1, 3, 7, 6): the var 0 entry is
   * skipped; s = (1^2/1 + 2^2/4 + 1^2/0.25) / 3 = (1 + 1 + 4) / 3 = 2. */
  const float mean[4] = {0, 1, 2, 5}, var[4] = {1, 4, 0, 0.25f}, y[4] = {1, 3, 7, 6};
  CU_CHECK_CLOSE(ens_variance_scale_fit(mean, var, y, 2, 2), 2.0, 1e-15);
  /* No positive variance: 1. */
  const float zero[4] = {0, 0, 0, 0};
  CU_CHECK_CLOSE(ens_variance_scale_fit(mean, zero, y, 4, 1), 1.0, 0.0);
  CU_CHECK_CLOSE(ens_variance_scale_fit(mean, var, y, 0, 1), 1.0, 0.0);
  /* s minimizes the Gaussian NLL of (mean, s var) over the positive-variance
   * entries: nudging it either way raises the NLL of the metrics. */
  const float m3[3] = {0, 1, 5}, v3[3] = {1, 4, 0.25f}, y3[3] = {1, 3, 6};
  const double s = ens_variance_scale_fit(m3, v3, y3, 3, 1);
  CU_CHECK_CLOSE(s, 2.0, 1e-15);
  double nll[3];
  const double f[3] = {1.0, 0.9, 1.1};
  for (int k = 0; k < 3; k++) {
    float vs[3];
    for (int j = 0; j < 3; j++)
      vs[j] = (float)(v3[j] * s * f[k]);
    ens_reg_metrics mm;
    ens_reg_metrics_compute(&mm, m3, vs, y3, 3, 1);
    nll[k] = mm.nll;
  }
  CU_ASSERT(nll[0] < nll[1] && nll[0] < nll[2]);
}

int main(void) {
  static const cu_case cases[] = {
      {"gaussian nll head, hand values", test_gaussian_nll_hand},
      {"mse head, hand values", test_mse_hand},
      {"gaussian nll gradient (finite differences)", test_gaussian_nll_grad},
      {"mse gradient (finite differences)", test_mse_grad},
      {"variance floor", test_variance_floor},
      {"regression metrics n 3, T 1", test_reg_metrics_t1},
      {"regression metrics n 2, T 2", test_reg_metrics_t2},
      {"regression metrics without variance", test_reg_metrics_no_var},
      {"regression metrics with point masses", test_reg_metrics_point_mass},
      {"variance scale fit", test_variance_scale},
      {NULL, NULL},
  };
  return cu_run_suite("regress", cases);
}
