/* Unit tests of src/ensemble/metrics.c: each metric and combination rule on
 * small inputs whose expected values are worked out by hand in the comments. */
#include "ens/metrics.h"

#include "cu_run.h"

#include <math.h>

/* Rows whose decimal probabilities are not exact in float32 carry errors of
 * about 1e-8; 1e-6 leaves room without hiding a wrong formula. */
#define TOL 1e-6

static void test_argmax(void) {
  /* Ties go to the lowest index, wherever they are. */
  const float a[4] = {0.1f, 0.4f, 0.4f, 0.1f};
  const float b[3] = {0.3f, 0.3f, 0.3f};
  const float c[3] = {0.1f, 0.2f, 0.7f};
  CU_ASSERT_EQUAL(ens_argmax(a, 4), 1);
  CU_ASSERT_EQUAL(ens_argmax(b, 3), 0);
  CU_ASSERT_EQUAL(ens_argmax(c, 3), 2);
  CU_ASSERT_EQUAL(ens_argmax(c, 1), 0);

  const float p[3 * 3] = {0.1f, 0.2f, 0.7f, 0.5f, 0.5f, 0.0f, 0.2f, 0.6f, 0.2f};
  int32_t pred[3] = {-1, -1, -1};
  ens_predict_argmax(pred, p, 3, 3);
  CU_ASSERT_EQUAL(pred[0], 2);
  CU_ASSERT_EQUAL(pred[1], 0);
  CU_ASSERT_EQUAL(pred[2], 1);
}

static void test_accuracy(void) {
  /* row 0 argmax 0 = y 0  hit
   * row 1 argmax 2 != y 1 miss
   * row 2 tie {0,1} -> 0 != y 1 miss (ties to the lowest class)
   * row 3 argmax 1 = y 1  hit
   * accuracy = 2/4 = 0.5 */
  const float p[4 * 3] = {0.7f, 0.2f, 0.1f, 0.1f, 0.3f, 0.6f,
                          0.4f, 0.4f, 0.2f, 0.2f, 0.5f, 0.3f};
  const int32_t y[4] = {0, 1, 1, 1};
  CU_CHECK_CLOSE(ens_metric_accuracy(p, y, 4, 3), 0.5, 1e-15);
  CU_CHECK_CLOSE(ens_metric_accuracy(p, y, 1, 3), 1.0, 1e-15);
}

static void test_nll(void) {
  /* -log 0.5             = 0.6931471805599453
   * -log max(0, 1e-12)   = 27.631021115928547  (zero probability clamped)
   * -log 0.75            = 0.2876820724517809
   * mean = 28.611850368940174 / 3 = 9.537283456313423
   * 0.5, 0 and 0.75 are exact in float32, so the tolerance can be tight. */
  const float p[3 * 2] = {0.5f, 0.5f, 0.0f, 1.0f, 0.25f, 0.75f};
  const int32_t y[3] = {0, 0, 1};
  CU_CHECK_CLOSE(ens_metric_nll(p, y, 3, 2), 9.537283456313423, 1e-12);
  CU_CHECK_CLOSE(ens_metric_nll(p + 2, y + 1, 1, 2), -log(1e-12), 1e-12);
  CU_CHECK_CLOSE(ens_metric_nll(p + 2, y + 1, 1, 2), 27.631021115928547, 1e-12);
  /* A probability below the floor but above zero is clamped the same way. */
  const float tiny[2] = {1e-20f, 1.0f};
  const int32_t y0 = 0;
  CU_CHECK_CLOSE(ens_metric_nll(tiny, &y0, 1, 2), 27.631021115928547, 1e-12);
}

static void test_brier(void) {
  /* row 0, y = 0: (0.7-1)^2 + 0.2^2 + 0.1^2 = 0.09 + 0.04 + 0.01 = 0.14
   * row 1, y = 1: 0.1^2 + (0.3-1)^2 + 0.6^2 = 0.01 + 0.49 + 0.36 = 0.86
   * mean = 1.00 / 2 = 0.5 */
  const float p[2 * 3] = {0.7f, 0.2f, 0.1f, 0.1f, 0.3f, 0.6f};
  const int32_t y[2] = {0, 1};
  CU_CHECK_CLOSE(ens_metric_brier(p, y, 2, 3), 0.5, TOL);
  /* A perfect one-hot prediction scores 0, a confident wrong one 2. */
  const float hot[3] = {0.0f, 1.0f, 0.0f};
  const int32_t y1 = 1, y2 = 2;
  CU_CHECK_CLOSE(ens_metric_brier(hot, &y1, 1, 3), 0.0, 1e-15);
  CU_CHECK_CLOSE(ens_metric_brier(hot, &y2, 1, 3), 2.0, 1e-15);
}

static void test_ece(void) {
  /* conf = max probability, bin = ceil(conf * 15) - 1:
   *   A [0.60, 0.40] y 0  conf 0.60 = 9/15 on an edge -> bin 8,  correct
   *   B [0.55, 0.45] y 1  conf 0.55, 8.25 -> 9       -> bin 8,  wrong
   *   C [0.90, 0.10] y 0  conf 0.90, 13.5 -> 14      -> bin 13, correct
   *   D [0.20, 0.80] y 1  conf 0.80 = 12/15 on an edge -> bin 11, correct
   *   E [0.75, 0.25] y 1  conf 0.75, 11.25 -> 12     -> bin 11, wrong
   *   F [1.00, 0.00] y 1  conf 1.00, 15 -> 15        -> bin 14, wrong
   * per bin |mean acc - mean conf| * count / n, n = 6:
   *   bin 8:  |1/2 - 1.15/2| * 2/6 = 0.075 / 3 = 0.025
   *   bin 11: |1/2 - 1.55/2| * 2/6 = 0.275 / 3 = 0.0916667
   *   bin 13: |1   - 0.90  | * 1/6 = 0.1 / 6   = 0.0166667
   *   bin 14: |0   - 1.00  | * 1/6 = 1 / 6     = 0.1666667
   *   ECE = (0.15 + 0.55 + 0.1 + 1) / 6 = 1.8 / 6 = 0.3
   * Had 0.6f (which is 0.6000000238 in float32, above 9/15) gone to bin 9,
   * bins 8 and 9 would hold |0 - 0.55| and |1 - 0.6| and ECE would be
   * (0.55 + 0.4 + 0.55 + 0.1 + 1) / 6 = 0.4333333; with 0.8f in bin 12 as
   * well, (0.55 + 0.4 + 0.75 + 0.2 + 0.1 + 1) / 6 = 0.5. */
  const float p[6 * 2] = {0.60f, 0.40f, 0.55f, 0.45f, 0.90f, 0.10f,
                          0.20f, 0.80f, 0.75f, 0.25f, 1.00f, 0.00f};
  const int32_t y[6] = {0, 1, 0, 1, 1, 1};
  CU_CHECK_CLOSE(ens_metric_ece(p, y, 6, 2), 0.3, TOL);

  /* A and B alone: one bin, |1 - 1.15| / 2 = 0.075. */
  CU_CHECK_CLOSE(ens_metric_ece(p, y, 2, 2), 0.075, TOL);

  /* conf = 0 (an all-zero row) goes to bin 0, together with conf 0.05
   * (0.75 -> 1 -> bin 0):
   *   [0, 0] y 0 correct, [0.05, 0] y 1 wrong: |1 - 0.05| / 2 = 0.475
   * (in separate bins it would be (1 + 0.05) / 2 = 0.525). */
  const float z[2 * 2] = {0.0f, 0.0f, 0.05f, 0.0f};
  const int32_t yz[2] = {0, 1};
  CU_CHECK_CLOSE(ens_metric_ece(z, yz, 2, 2), 0.475, TOL);

  /* Perfectly calibrated: two points at conf 0.5 (bin 7), one right, one
   * wrong: |1 - 1| / 2 = 0. */
  const float h[2 * 2] = {0.5f, 0.5f, 0.5f, 0.5f};
  const int32_t yh[2] = {0, 1};
  CU_CHECK_CLOSE(ens_metric_ece(h, yh, 2, 2), 0.0, 1e-15);
}

static void test_ece_every_edge(void) {
  /* For each interior edge e = k/15 (as float32), pair a correct point at
   * conf e with a wrong point in the middle of bin k-1, conf (k-0.5)/15.
   * Same bin (the rule): |1 - (e + mid)| / 2.
   * Different bins:      (|1 - e| + mid) / 2, which differs from it by
   * mid or 1 - e, both above 0.03. Then the float just above e must land in bin k. */
  for (int k = 1; k < ENS_ECE_BINS; k++) {
    float e = (float)((double)k / ENS_ECE_BINS);
    float mid = (float)((k - 0.5) / ENS_ECE_BINS);
    float above = nextafterf(e, 2.0f);
    const float p[2 * 2] = {e, 0.0f, mid, 0.0f};
    const float q[2 * 2] = {above, 0.0f, mid, 0.0f};
    const int32_t y[2] = {0, 1};
    double same = fabs(1.0 - ((double)e + mid)) / 2.0;
    double split = (fabs(1.0 - (double)above) + mid) / 2.0;
    CU_CHECK_CLOSE(ens_metric_ece(p, y, 2, 2), same, 1e-12);
    CU_CHECK_CLOSE(ens_metric_ece(q, y, 2, 2), split, 1e-12);
  }
}

static void test_combine_vote(void) {
  /* m = 4 members, 3 classes.
   * row 0: votes {2,2,0}, psum {1.4,1.7,0.9}: 2 vs 2 -> larger psum -> class 1
   * row 1: votes {0,2,2}, psum {0.8,1.6,1.6}: 2 vs 2, psum tied -> lower, 1
   * row 2: votes {1,3,0}, psum {2.0,1.5,0.5}: most votes wins over psum -> 1
   * row 3: votes {2,0,2}, psum {1.0,0.5,2.5}: 2 vs 2 -> larger psum -> class 2
   * shares = votes / 4. */
  const int32_t votes[4 * 3] = {2, 2, 0, 0, 2, 2, 1, 3, 0, 2, 0, 2};
  const double psum[4 * 3] = {1.4, 1.7, 0.9, 0.8, 1.6, 1.6, 2.0, 1.5, 0.5, 1.0, 0.5, 2.5};
  const float share[4 * 3] = {0.5f,  0.5f,  0.0f, 0.0f, 0.5f, 0.5f,
                              0.25f, 0.75f, 0.0f, 0.5f, 0.0f, 0.5f};
  float out[4 * 3];
  int32_t pred[4] = {-1, -1, -1, -1};
  ens_combine_vote(out, pred, votes, psum, 4, 4, 3);
  CU_ASSERT_EQUAL(pred[0], 1);
  CU_ASSERT_EQUAL(pred[1], 1);
  CU_ASSERT_EQUAL(pred[2], 1);
  CU_ASSERT_EQUAL(pred[3], 2);
  for (int j = 0; j < 4 * 3; j++)
    CU_CHECK_CLOSE(out[j], share[j], 0.0);

  /* Three members, a full three-way tie: the lowest class, shares 1/3. */
  const int32_t v3[3] = {1, 1, 1};
  const double s3[3] = {1.0, 1.0, 1.0};
  float o3[3];
  int32_t p3 = -1;
  ens_combine_vote(o3, &p3, v3, s3, 3, 1, 3);
  CU_ASSERT_EQUAL(p3, 0);
  CU_CHECK_CLOSE(o3[2], (float)(1.0 / 3.0), 0.0);
}

static void test_combine_average(void) {
  /* m = 3: sums {0.9, 1.5, 0.6} -> {0.3, 0.5, 0.2}; {1, 2, 0} -> {1/3, 2/3, 0},
   * rounded to float once from the double quotient. */
  const double sum[2 * 3] = {0.9, 1.5, 0.6, 1.0, 2.0, 0.0};
  float out[2 * 3];
  ens_combine_average(out, sum, 3, 2, 3);
  CU_CHECK_CLOSE(out[0], 0.3, 1e-7);
  CU_CHECK_CLOSE(out[1], 0.5, 0.0);
  CU_CHECK_CLOSE(out[2], 0.2, 1e-7);
  CU_CHECK_CLOSE(out[3], (float)(1.0 / 3.0), 0.0);
  CU_CHECK_CLOSE(out[4], (float)(2.0 / 3.0), 0.0);
  CU_CHECK_CLOSE(out[5], 0.0, 0.0);
}

static void test_disagreement(void) {
  /* a and b differ at rows 1 and 3 of 5: 2/5 = 0.4. */
  const int32_t a[5] = {0, 1, 2, 1, 0};
  const int32_t b[5] = {0, 2, 2, 0, 0};
  CU_CHECK_CLOSE(ens_metric_disagreement(a, b, 5), 0.4, 1e-15);
  CU_CHECK_CLOSE(ens_metric_disagreement(b, a, 5), 0.4, 1e-15);
  CU_CHECK_CLOSE(ens_metric_disagreement(a, a, 5), 0.0, 0.0);
}

static void test_empty(void) {
  /* No points: the means are undefined and reported as NaN. */
  const float p[2] = {0.5f, 0.5f};
  const int32_t y[1] = {0};
  CU_ASSERT(isnan(ens_metric_accuracy(p, y, 0, 2)));
  CU_ASSERT(isnan(ens_metric_nll(p, y, 0, 2)));
  CU_ASSERT(isnan(ens_metric_brier(p, y, 0, 2)));
  CU_ASSERT(isnan(ens_metric_ece(p, y, 0, 2)));
  CU_ASSERT(isnan(ens_metric_disagreement(y, y, 0)));
}

int main(void) {
  static const cu_case cases[] = {{"argmax", test_argmax},
                                  {"accuracy", test_accuracy},
                                  {"nll", test_nll},
                                  {"brier", test_brier},
                                  {"ece", test_ece},
                                  {"ece_every_edge", test_ece_every_edge},
                                  {"combine_vote", test_combine_vote},
                                  {"combine_average", test_combine_average},
                                  {"disagreement", test_disagreement},
                                  {"empty", test_empty},
                                  {NULL, NULL}};
  return cu_run_suite("metrics", cases);
}
