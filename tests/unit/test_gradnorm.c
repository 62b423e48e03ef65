/* The gradient-norm record: AutoClip's running percentile against a sort,
 * the warm-up rule, the per-epoch summary, and rebuilding the record from
 * its norms (a resume) at every step, including before c settles. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cu_run.h"
#include "ens/config.h"
#include "ens/gradnorm.h"
#include "ens/rng.h"

enum { NSTEPS = 400, EPOCHS = 5 };

/* Norms with ties, a wide range and a spike, from a fixed seed. */
static void make_norms(double *x, int n) {
  ens_rng r;
  ens_rng_init(&r, 7, 0, 0, 0);
  for (int i = 0; i < n; i++) {
    double u = ens_rng_uniform(&r);
    x[i] = i % 17 == 3 ? 1.0 : exp(4.0 * u - 2.0);
    if (i == 50)
      x[i] = 1e6;
  }
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void test_percentile_sorted(void) {
  const double x[] = {1, 2, 3, 4, 10};
  CU_CHECK_CLOSE(ens_percentile_sorted(x, 5, 0), 1, 0);
  CU_CHECK_CLOSE(ens_percentile_sorted(x, 5, 50), 3, 0);
  CU_CHECK_CLOSE(ens_percentile_sorted(x, 5, 100), 10, 0);
  CU_CHECK_CLOSE(ens_percentile_sorted(x, 5, 90), 4 + 0.6 * 6, 1e-12); /* numpy: 7.6 */
  CU_CHECK_CLOSE(ens_percentile_sorted(x, 5, 10), 1.4, 1e-12);
  CU_CHECK_CLOSE(ens_percentile_sorted(x, 1, 37), 1, 0);
}

/* At every step AutoClip's c equals the percentile of a sorted copy of all
 * norms so far, for several percentiles. */
static void test_autoclip_matches_sort(void) {
  static double x[NSTEPS], s[NSTEPS];
  make_norms(x, NSTEPS);
  const double pcts[] = {10, 50, 90, 100, 0.5};
  for (int q = 0; q < 5; q++) {
    ens_gradnorm g;
    CU_ASSERT_FATAL(ens_gradnorm_create(&g, NSTEPS, EPOCHS, 1) == 0);
    ens_gradnorm_reset(&g, ENS_AUTO, pcts[q], 0, 1, 1);
    int bad = 0;
    for (int i = 0; i < NSTEPS; i++) {
      double c = ens_gradnorm_push(&g, x[i]);
      memcpy(s, x, (size_t)(i + 1) * sizeof(double));
      qsort(s, (size_t)(i + 1), sizeof(double), cmp);
      double want = ens_percentile_sorted(s, i + 1, pcts[q]);
      if (c != want && bad++ < 3)
        fprintf(stderr, "\n  p%g step %d: c = %.17g, sorted gives %.17g", pcts[q], i, c, want);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(ens_gradnorm_push(&g, 1.0) < 0); /* full */
    ens_gradnorm_free(&g);
  }
}

/* Warm-up: no threshold during the warm-up, then factor x the median of
 * its norms for good; the learning-rate factor only during the warm-up. */
static void test_warmup_rule(void) {
  static double x[NSTEPS], s[NSTEPS];
  make_norms(x, NSTEPS);
  const long W = 30;
  ens_gradnorm g;
  CU_ASSERT_FATAL(ens_gradnorm_create(&g, NSTEPS, EPOCHS, 0) == 0);
  ens_gradnorm_reset(&g, ENS_AUTO, 10, W, 0.1, 0.5);
  memcpy(s, x, (size_t)W * sizeof(double));
  qsort(s, (size_t)W, sizeof(double), cmp);
  double want = 0.5 * ens_percentile_sorted(s, W, 50);
  for (long i = 0; i < NSTEPS; i++) {
    CU_ASSERT_EQUAL(ens_gradnorm_lr_factor(&g, i), i < W ? 0.1 : 1.0);
    double c = ens_gradnorm_push(&g, x[i]);
    if (i < W) {
      CU_ASSERT_EQUAL(c, 0.0);
    } else if (c != want) {
      fprintf(stderr, "\n  step %ld: c = %g, expected %g", i, c, want);
      CU_FAIL("warm-up threshold");
      break;
    }
  }
  ens_gradnorm_free(&g);
}

/* Summary rows: statistics of the epoch's own steps, clipped count, c. */
static void test_epoch_summary(void) {
  ens_gradnorm g;
  CU_ASSERT_FATAL(ens_gradnorm_create(&g, 100, 3, 0) == 0);
  ens_gradnorm_reset(&g, 2.5, 10, 0, 1, 1);
  const double e0[] = {3, 1, 2, 5}, e1[] = {0.5, 0.25};
  for (int i = 0; i < 4; i++)
    if (ens_gradnorm_push(&g, e0[i]) == 2.5 && e0[i] > 2.5)
      ens_gradnorm_clipped(&g);
  ens_gradnorm_end_epoch(&g, 0);
  for (int i = 0; i < 2; i++)
    ens_gradnorm_push(&g, e1[i]);
  ens_gradnorm_end_epoch(&g, 1);
  const float *r0 = g.summary, *r1 = g.summary + ENS_GN_COLS, *r2 = r1 + ENS_GN_COLS;
  CU_CHECK_CLOSE(r0[ENS_GN_MIN], 1, 0);
  CU_CHECK_CLOSE(r0[ENS_GN_MEDIAN], 2.5, 0);
  CU_CHECK_CLOSE(r0[ENS_GN_P90], 3 + 0.7 * 2, 1e-6);
  CU_CHECK_CLOSE(r0[ENS_GN_MAX], 5, 0);
  CU_CHECK_CLOSE(r0[ENS_GN_STEPS], 4, 0);
  CU_CHECK_CLOSE(r0[ENS_GN_CLIPPED], 2, 0);
  CU_CHECK_CLOSE(r0[ENS_GN_CLIP], 2.5, 0);
  CU_CHECK_CLOSE(r1[ENS_GN_MEDIAN], 0.375, 0);
  CU_CHECK_CLOSE(r1[ENS_GN_CLIPPED], 0, 0);
  CU_CHECK_CLOSE(r1[ENS_GN_STEPS], 2, 0);
  CU_ASSERT(isnan(r2[ENS_GN_MIN])); /* an epoch not reached */
  ens_gradnorm_free(&g);
}

/* A record rebuilt from the first k norms (what --resume reads from a
 * checkpoint) continues exactly as the original, for every k: both rules,
 * stops before, at and after the warm-up's end. */
static void test_restore_every_step(void) {
  static double x[NSTEPS], cref[NSTEPS];
  make_norms(x, NSTEPS);
  for (int rule = 0; rule < 2; rule++) {
    long W = rule ? 40 : 0;
    ens_gradnorm ref, g;
    CU_ASSERT_FATAL(ens_gradnorm_create(&ref, NSTEPS, EPOCHS, !rule) == 0);
    CU_ASSERT_FATAL(ens_gradnorm_create(&g, NSTEPS, EPOCHS, !rule) == 0);
    ens_gradnorm_reset(&ref, ENS_AUTO, 25, W, 0.1, 0.5);
    for (int i = 0; i < NSTEPS; i++)
      cref[i] = ens_gradnorm_push(&ref, x[i]);
    int bad = 0;
    for (long k = 0; k < NSTEPS && bad < 3; k += 7) {
      ens_gradnorm_reset(&g, ENS_AUTO, 25, W, 0.1, 0.5);
      memcpy(g.hist, x, (size_t)k * sizeof(double));
      CU_ASSERT_FATAL(ens_gradnorm_restore(&g, g.hist, k, k - k % 20, 0) == 0);
      if (k > 0 && g.c_last != cref[k - 1]) {
        fprintf(stderr, "\n  rule %d, restored at %ld: c_last %g, expected %g", rule, k, g.c_last,
                cref[k - 1]);
        bad++;
      }
      for (long i = k; i < NSTEPS; i++) {
        double c = ens_gradnorm_push(&g, x[i]);
        if (memcmp(&c, &cref[i], sizeof c) != 0) {
          if (bad++ < 3)
            fprintf(stderr, "\n  rule %d, restored at %ld: step %ld c = %.17g, expected %.17g",
                    rule, k, i, c, cref[i]);
          break;
        }
      }
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* Impossible records are refused. */
    double neg[2] = {1, -1}, nan_[2] = {1, NAN};
    CU_ASSERT(ens_gradnorm_restore(&g, neg, 2, 0, 0) != 0);
    CU_ASSERT(ens_gradnorm_restore(&g, nan_, 2, 0, 0) != 0);
    CU_ASSERT(ens_gradnorm_restore(&g, x, NSTEPS + 1, 0, 0) != 0);
    CU_ASSERT(ens_gradnorm_restore(&g, x, 10, 4, 7) != 0);
    ens_gradnorm_free(&ref);
    ens_gradnorm_free(&g);
  }
}

int main(void) {
  static const cu_case cases[] = {
      {"percentile with linear interpolation", test_percentile_sorted},
      {"autoclip equals the sorted percentile at every step", test_autoclip_matches_sort},
      {"warm-up rule: factor x median of the warm-up", test_warmup_rule},
      {"per-epoch summary", test_epoch_summary},
      {"restore from the norms continues identically", test_restore_every_step},
      {NULL, NULL},
  };
  return cu_run_suite("gradnorm", cases);
}
