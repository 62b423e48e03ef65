/* Unit tests of src/train: gradient clipping, the SGD step against values
 * worked out in PyTorch's convention, Adam/AdamW steps against an
 * independent double-precision computation, learning-rate schedules
 * (including the cycle boundaries of the cyclic schedule for any T and cycle
 * count), and
 * the training loop: it learns a separable problem, resumes bit-identically
 * after a stop, and reports snapshot cycle ends exactly `snapshots` times. */
#include "ens/error.h"
#include "ens/optim.h"
#include "ens/train.h"

#include "cu_run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- clipping */

static double norm2(const float *g, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++)
    s += (double)g[i] * g[i];
  return sqrt(s);
}

static void test_clip_norm(void) {
  enum { N = 1000 };
  float g[N], orig[N];
  ens_rng r;
  ens_rng_init(&r, 1, 0, ENS_STREAM_TEST, 0);
  for (int i = 0; i < N; i++)
    orig[i] = (float)ens_rng_normal(&r); /* norm ~ sqrt(1000) = 31.6 */
  const double n0 = norm2(orig, N);
  const double cs[] = {1.0, 5.0, 0.01, 30.0};
  for (size_t k = 0; k < sizeof(cs) / sizeof(cs[0]); k++) {
    memcpy(g, orig, sizeof(g));
    double before = ens_clip_norm(g, N, cs[k]);
    CU_CHECK_CLOSE(before, n0, 1e-9 * n0);
    /* Above the threshold: the new norm is c (float scaling: ~1e-7 relative). */
    CU_CHECK_CLOSE(norm2(g, N), cs[k], 1e-5 * cs[k]);
    /* The direction is kept. */
    double worst = 0.0;
    for (int i = 0; i < N; i++)
      worst = fmax(worst, fabs(g[i] - orig[i] * cs[k] / n0));
    CU_CHECK_CLOSE(worst, 0.0, 1e-6 * cs[k]);
  }
  /* Below (or at) the threshold: untouched, bit for bit. */
  memcpy(g, orig, sizeof(g));
  CU_CHECK_CLOSE(ens_clip_norm(g, N, 100.0), n0, 1e-9 * n0);
  CU_ASSERT(memcmp(g, orig, sizeof(g)) == 0);
  /* A zero gradient stays zero (no 0/0). */
  float z[4] = {0, 0, 0, 0};
  CU_ASSERT(ens_clip_norm(z, 4, 1.0) == 0.0);
  CU_ASSERT(z[0] == 0.0f && z[1] == 0.0f && z[2] == 0.0f && z[3] == 0.0f);
  /* Hand example: (3, 4) has norm 5; clipped to 1 it is (0.6, 0.8). */
  float v[2] = {3.0f, -4.0f};
  CU_CHECK_CLOSE(ens_clip_norm(v, 2, 1.0), 5.0, 1e-12);
  CU_CHECK_CLOSE(v[0], 0.6, 1e-7);
  CU_CHECK_CLOSE(v[1], -0.8, 1e-7);
}

static void test_clip_value(void) {
  float g[7] = {-3.0f, -0.5f, 0.0f, 0.25f, 0.5f, 0.75f, 1e30f};
  const float want[7] = {-0.5f, -0.5f, 0.0f, 0.25f, 0.5f, 0.5f, 0.5f};
  ens_clip_value(g, 7, 0.5f);
  for (int i = 0; i < 7; i++)
    CU_CHECK_CLOSE(g[i], want[i], 0.0);
  /* Random values: every element within [-c, c], those inside untouched. */
  enum { N = 10000 };
  float a[N], b[N];
  ens_rng r;
  ens_rng_init(&r, 2, 0, ENS_STREAM_TEST, 0);
  for (int i = 0; i < N; i++)
    a[i] = b[i] = (float)(3.0 * ens_rng_normal(&r));
  ens_clip_value(a, N, 1.5f);
  int ok = 1;
  for (int i = 0; i < N; i++) {
    ok &= a[i] >= -1.5f && a[i] <= 1.5f;
    ok &= fabsf(b[i]) <= 1.5f ? a[i] == b[i] : a[i] == copysignf(1.5f, b[i]);
  }
  CU_ASSERT(ok);
}

/* ------------------------------------------------------------------ SGD */

static void test_sgd_step(void) {
  /* PyTorch SGD, dampening 0: g = grad + wd p; v = mu v + g (v starts at 0,
   * so the first v is g, as torch's clone); p -= lr (nesterov ? g + mu v : v).
   * p0 = (1, -0.5, 2); grads (0.1, -0.2, 0.3), (-0.05, 0.1, 0.2), (0.3, 0, -0.1);
   * lr 0.1, 0.05, 0.02. Element 0 with mu 0.9, nesterov:
   *   step 1: g = 0.1,  v = 0.1,   p = 1 - 0.1 (0.1 + 0.09)        = 0.981
   *   step 2: g = -0.05, v = 0.04, p = 0.981 - 0.05 (-0.05 + 0.036) = 0.9817
   *   step 3: g = 0.3,  v = 0.336, p = 0.9817 - 0.02 (0.3 + 0.3024) = 0.969652
   * The other values were computed the same way in double. */
  const float p0[3] = {1.0f, -0.5f, 2.0f};
  const float grads[3][3] = {{0.1f, -0.2f, 0.3f}, {-0.05f, 0.1f, 0.2f}, {0.3f, 0.0f, -0.1f}};
  const double lrs[3] = {0.1, 0.05, 0.02};
  const struct {
    ens_sgd o;
    double want[3][3];
  } cases[] = {
      {{0.0, 0.0, 0},
       {{0.99, -0.48, 1.97}, {0.9925, -0.485, 1.96}, {0.9865, -0.485, 1.962}}},
      {{0.9, 0.0, 0},
       {{0.99, -0.48, 1.97}, {0.988, -0.476, 1.9465}, {0.98128, -0.47456, 1.94004}}},
      {{0.9, 0.0, 1},
       {{0.981, -0.462, 1.943}, {0.9817, -0.4634, 1.91185}, {0.969652, -0.462104, 1.908036}}},
      {{0.9, 0.01, 1},
       {{0.9791, -0.46105, 1.9392},
        {0.978464855, -0.4618095025, 1.90539776},
        {0.9657406242, -0.4601904248, 1.9002539585}}},
      {{0.5, 0.1, 0},
       {{0.98, -0.475, 1.95}, {0.9726, -0.471375, 1.91775}, {0.9631748, -0.46970725, 1.9094645}}},
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    float p[3], v[3] = {0, 0, 0};
    memcpy(p, p0, sizeof(p));
    for (int s = 0; s < 3; s++) {
      float g[3];
      memcpy(g, grads[s], sizeof(g));
      ens_sgd_step(p, v, g, 3, lrs[s], &cases[c].o);
      CU_ASSERT(memcmp(g, grads[s], sizeof(g)) == 0); /* grad is read only */
      for (int i = 0; i < 3; i++) {
        if (fabs(p[i] - cases[c].want[s][i]) > 1e-6)
          fprintf(stderr, "\n  case %zu (mu %g wd %g nesterov %d) step %d:", c,
                  cases[c].o.momentum, cases[c].o.weight_decay, cases[c].o.nesterov, s + 1);
        CU_CHECK_CLOSE(p[i], cases[c].want[s][i], 1e-6);
      }
    }
  }
}

/* ----------------------------------------------------------------- Adam */

/* Fails unless |got - want| <= 1e-6 |want| (float parameters carry ~6e-8). */
#define ADAM_RTOL 1e-6

static void test_adam_step(void) {
  /* Three steps on p0 = (1, -0.5, 2) with the SGD test's gradients and rates.
   * Step 1 of any variant without decay: m^ = g, v^ = g^2, so the step is
   * lr g / (|g| + eps); element 0 (b1 0.9, b2 0.999, eps 1e-8):
   *   p = 1 - 0.1 * 0.1 / (0.1 + 1e-8) = 0.90000000999999990.
   * Adam, wd 0.1: g = 0.1 + 0.1 * 1 = 0.2, p = 1 - 0.1 * 0.2 / (0.2 + 1e-8) = 0.900000005.
   * AdamW, wd 0.1: p = 1 (1 - 0.1 * 0.1) = 0.99, then 0.99 - 0.09999999 = 0.89000001.
   * The rest comes from an independent double-precision loop over the
   * formulas of the header (m, v kept in double, decimal inputs). Element 1
   * of the b1 0.5 case has a zero gradient in step 3 (m halves, p moves
   * only by m^ / sqrt(v^) with both from earlier steps); its eps of 0.1 is
   * large enough that adding eps inside the sqrt would fail the test. */
  const float p0[3] = {1.0f, -0.5f, 2.0f};
  const float grads[3][3] = {{0.1f, -0.2f, 0.3f}, {-0.05f, 0.1f, 0.2f}, {0.3f, 0.0f, -0.1f}};
  const double lrs[3] = {0.1, 0.05, 0.02};
  const struct {
    ens_adam o;
    double want[3][3];
  } cases[] = {
      {{0.9, 0.999, 1e-8, 0.0, 0},
       {{0.90000000999999896, -0.40000000499999971, 1.9000000033333333},
        {0.88668315970169487, -0.38668315385933771, 1.8514823988317182},
        {0.87327314912350851, -0.38256556810670678, 1.8404445614079612}}},
      {{0.9, 0.999, 1e-8, 0.1, 0},
       {{0.90000000499999977, -0.4000000039999998, 1.9000000020000001},
        {0.85984795879120535, -0.37611026471945636, 1.8506973715912571},
        {0.84275351000518528, -0.366950354448696, 1.8338883749938062}}},
      {{0.9, 0.999, 1e-8, 0.1, 1},
       {{0.89000000999999895, -0.39500000499999971, 1.8800000033333333},
        {0.8722331596516949, -0.3797081538343377, 1.8220823988150514},
        {0.85707868275420518, -0.37483115177403808, 1.8074003965936642}}},
      {{0.5, 0.9, 0.1, 0.0, 0},
       {{0.94999999999999996, -0.43333333333333335, 1.925},
        {0.94999999999999996, -0.43333333333333335, 1.8918896701547987},
        {0.93827560487374662, -0.43333333333333335, 1.8891198907527502}}},
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    float p[3], m[3] = {0, 0, 0}, v[3] = {0, 0, 0};
    memcpy(p, p0, sizeof(p));
    for (int s = 0; s < 3; s++) {
      float g[3];
      memcpy(g, grads[s], sizeof(g));
      ens_adam_step(p, m, v, g, 3, lrs[s], s + 1, &cases[c].o);
      CU_ASSERT(memcmp(g, grads[s], sizeof(g)) == 0); /* grad is read only */
      for (int i = 0; i < 3; i++) {
        double want = cases[c].want[s][i];
        if (fabs(p[i] - want) > ADAM_RTOL * fabs(want))
          fprintf(stderr, "\n  case %zu (b1 %g wd %g decoupled %d) step %d [%d]:", c,
                  cases[c].o.beta1, cases[c].o.weight_decay, cases[c].o.decoupled, s + 1, i);
        CU_CHECK_CLOSE(p[i], want, ADAM_RTOL * fabs(want));
      }
    }
  }
}

static void test_adam_adamw_agree(void) {
  /* With weight_decay 0 the two variants are the same update, bit for bit,
   * over many steps and random gradients (including exact zeros and -0). */
  enum { N = 257, STEPS = 20 };
  float pa[N], ma[N] = {0}, va[N] = {0}, pw[N], mw[N] = {0}, vw[N] = {0}, g[N];
  ens_rng r;
  ens_rng_init(&r, 3, 0, ENS_STREAM_TEST, 0);
  for (int i = 0; i < N; i++)
    pa[i] = pw[i] = (float)ens_rng_normal(&r);
  const ens_adam adam = {0.9, 0.999, 1e-8, 0.0, 0}, adamw = {0.9, 0.999, 1e-8, 0.0, 1};
  int same = 1;
  for (long t = 1; t <= STEPS; t++) {
    for (int i = 0; i < N; i++)
      g[i] = i % 17 == 0 ? (i % 2 ? -0.0f : 0.0f) : (float)ens_rng_normal(&r);
    ens_adam_step(pa, ma, va, g, N, 1e-2, t, &adam);
    ens_adam_step(pw, mw, vw, g, N, 1e-2, t, &adamw);
    same &= memcmp(pa, pw, sizeof(pa)) == 0 && memcmp(ma, mw, sizeof(ma)) == 0 &&
            memcmp(va, vw, sizeof(va)) == 0;
  }
  if (!same)
    fprintf(stderr, "\n  Adam and AdamW differ with weight_decay 0\n");
  CU_ASSERT(same);
  /* And they do differ once there is decay. */
  const ens_adam adam_wd = {0.9, 0.999, 1e-8, 0.1, 0}, adamw_wd = {0.9, 0.999, 1e-8, 0.1, 1};
  ens_adam_step(pa, ma, va, g, N, 1e-2, STEPS + 1, &adam_wd);
  ens_adam_step(pw, mw, vw, g, N, 1e-2, STEPS + 1, &adamw_wd);
  CU_ASSERT(memcmp(pa, pw, sizeof(pa)) != 0);
}

/* ------------------------------------------------------------ schedules */

static ens_schedule sched(ens_schedule_kind kind, long spe, long epochs) {
  ens_schedule s = {.kind = kind, .lr = 0.1, .lr_min = 0.001, .gamma = 0.5, .step_size = 3,
                    .cycles = 4, .steps_per_epoch = spe, .total_steps = spe * epochs};
  return s;
}

static void test_schedule_basic(void) {
  ens_schedule s = sched(ENS_SCHED_CONSTANT, 10, 10);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 0), 0.1, 1e-15);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 57), 0.1, 1e-15);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 99), 0.1, 1e-15);
  /* Non-cyclic schedules end one cycle, at the last step. */
  int ends = 0;
  for (long t = 0; t < 100; t++)
    ends += ens_schedule_cycle_end(&s, t) != 0;
  CU_ASSERT_EQUAL(ends, 1);
  CU_ASSERT(ens_schedule_cycle_end(&s, 99));

  /* step: lr gamma^floor(epoch / step_size), 10 steps per epoch, size 3. */
  s = sched(ENS_SCHED_STEP, 10, 10);
  s.lr = 0.2;
  const struct {
    long t;
    double lr;
  } st[] = {{0, 0.2}, {29, 0.2}, {30, 0.1}, {59, 0.1}, {60, 0.05}, {89, 0.05}, {90, 0.025},
            {99, 0.025}};
  for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++)
    CU_CHECK_CLOSE(ens_schedule_lr(&s, st[i].t), st[i].lr, 1e-15);

  /* cosine: lr_min + (lr - lr_min)(1 + cos(pi t / T)) / 2, T = 100:
   * t = 0: 0.1; t = 25: 0.001 + 0.099 (1 + 0.70710678) / 2 = 0.085501785669;
   * t = 50: 0.0505; t = 99: 0.001 + 0.099 (1 + cos(0.99 pi)) / 2 = 0.001024425262. */
  s = sched(ENS_SCHED_COSINE, 10, 10);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 0), 0.1, 1e-12);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 25), 0.085501785669, 1e-12);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 50), 0.0505, 1e-12);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 99), 0.001024425262, 1e-12);
  int decreasing = 1;
  for (long t = 1; t < 100; t++)
    decreasing &= ens_schedule_lr(&s, t) < ens_schedule_lr(&s, t - 1);
  CU_ASSERT(decreasing);
}

/* Checks the cyclic schedule for one (T, cycles); returns 1 if all hold. */
static int check_cyclic(long T, int cycles) {
  ens_schedule s = sched(ENS_SCHED_CYCLIC, T, 1);
  s.cycles = cycles;
  int ok = 1, ends = 0;
  long start = 0, shortest = T, longest = 0;
  if (ens_schedule_lr(&s, 0) != s.lr)
    ok = 0;
  for (long t = 0; t < T; t++) {
    double lr = ens_schedule_lr(&s, t);
    int end = ens_schedule_cycle_end(&s, t) != 0;
    ends += end;
    if (!(lr >= s.lr_min && lr <= s.lr))
      ok = 0;
    /* Within a cycle the rate decreases; a cycle end is followed by a
     * restart at the peak, and only a cycle end is. */
    if (t + 1 < T) {
      double next = ens_schedule_lr(&s, t + 1);
      if (end && next != s.lr)
        ok = 0;
      if (!end && !(next < lr))
        ok = 0;
    }
    if (end) {
      long len = t + 1 - start;
      shortest = len < shortest ? len : shortest;
      longest = len > longest ? len : longest;
      start = t + 1;
    }
  }
  /* Exactly `cycles` cycles, the last ending with the run, and balanced:
   * with b_j = round(j T / cycles) every length is floor or ceil of T / cycles. */
  if (ends != cycles || start != T || !ens_schedule_cycle_end(&s, T - 1))
    ok = 0;
  if (shortest < T / cycles || longest > (T + cycles - 1) / cycles)
    ok = 0;
  if (!ok)
    fprintf(stderr, "\n  cyclic T = %ld, cycles = %d: %d cycle ends, lengths %ld..%ld\n", T,
            cycles, ends, shortest, longest);
  return ok;
}

static void test_schedule_cyclic(void) {
  /* The combinations named in the design, then every T <= 64. */
  CU_ASSERT(check_cyclic(9, 4));
  CU_ASSERT(check_cyclic(10, 3));
  CU_ASSERT(check_cyclic(7, 7));
  CU_ASSERT(check_cyclic(100, 4));
  CU_ASSERT(check_cyclic(1, 1));
  CU_ASSERT(check_cyclic(1000003, 7));
  int all = 1;
  for (long T = 1; T <= 64; T++)
    for (int c = 1; c <= T; c++)
      all &= check_cyclic(T, c);
  CU_ASSERT(all);

  /* Explicit boundaries b_j = round(j T / cycles):
   * T = 10, 3 cycles: 0, 3.33 -> 3, 6.67 -> 7, 10: cycles [0,3) [3,7) [7,10);
   * lr at t = 5 is half-way through [3,7): (lr + lr_min) / 2 = 0.0505;
   * at t = 4, a quarter: 0.001 + 0.099 (1 + cos(pi/4)) / 2 = 0.085501785669. */
  ens_schedule s = sched(ENS_SCHED_CYCLIC, 10, 1);
  s.cycles = 3;
  const int end10[10] = {0, 0, 1, 0, 0, 0, 1, 0, 0, 1};
  for (long t = 0; t < 10; t++)
    CU_ASSERT_EQUAL(ens_schedule_cycle_end(&s, t) != 0, end10[t]);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 3), 0.1, 1e-12);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 4), 0.085501785669, 1e-12);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 5), 0.0505, 1e-12);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 7), 0.1, 1e-12);
  /* T = 9, 4 cycles: 2.25 -> 2, 4.5 -> 5 (half away from zero), 6.75 -> 7. */
  s = sched(ENS_SCHED_CYCLIC, 9, 1);
  s.cycles = 4;
  const int end9[9] = {0, 1, 0, 0, 1, 0, 1, 0, 1};
  for (long t = 0; t < 9; t++)
    CU_ASSERT_EQUAL(ens_schedule_cycle_end(&s, t) != 0, end9[t]);
  /* T = 7, 7 cycles: every step is a cycle of one step at the peak. */
  s = sched(ENS_SCHED_CYCLIC, 7, 1);
  s.cycles = 7;
  for (long t = 0; t < 7; t++) {
    CU_ASSERT(ens_schedule_cycle_end(&s, t));
    CU_CHECK_CLOSE(ens_schedule_lr(&s, t), 0.1, 1e-15);
  }
  /* With one cycle the cyclic schedule is the cosine schedule. */
  ens_schedule cyc = sched(ENS_SCHED_CYCLIC, 10, 10), cosn = sched(ENS_SCHED_COSINE, 10, 10);
  cyc.cycles = 1;
  double worst = 0.0;
  for (long t = 0; t < 100; t++)
    worst = fmax(worst, fabs(ens_schedule_lr(&cyc, t) - ens_schedule_lr(&cosn, t)));
  CU_CHECK_CLOSE(worst, 0.0, 1e-15);
}

static void test_schedule_from_config(void) {
  ens_config c;
  ens_config_defaults(&c);
  c.schedule = ENS_SCHED_COSINE;
  c.cycles = 4;
  c.snapshots = 5;
  c.epochs = 10;
  c.lr = 0.3;
  c.lr_min = 0.01;
  c.step_gamma = 0.2;
  c.step_size = 2;
  ens_schedule s;
  c.mode = ENS_MODE_SEED;
  ens_schedule_from_config(&s, &c, 7);
  CU_ASSERT_EQUAL(s.kind, ENS_SCHED_COSINE);
  CU_ASSERT_EQUAL(s.cycles, 4);
  CU_ASSERT_EQUAL(s.steps_per_epoch, 7);
  CU_ASSERT_EQUAL(s.total_steps, 70);
  CU_CHECK_CLOSE(s.lr, 0.3, 0.0);
  CU_CHECK_CLOSE(s.lr_min, 0.01, 0.0);
  CU_CHECK_CLOSE(s.gamma, 0.2, 0.0);
  CU_ASSERT_EQUAL(s.step_size, 2);
  /* Snapshot mode forces a cyclic schedule with one cycle per snapshot,
   * whatever [train] schedule and cycles say. */
  c.mode = ENS_MODE_SNAPSHOT;
  ens_schedule_from_config(&s, &c, 7);
  CU_ASSERT_EQUAL(s.kind, ENS_SCHED_CYCLIC);
  CU_ASSERT_EQUAL(s.cycles, 5);
  CU_ASSERT_EQUAL(s.total_steps, 70);
  int ends = 0;
  for (long t = 0; t < s.total_steps; t++)
    ends += ens_schedule_cycle_end(&s, t) != 0;
  CU_ASSERT_EQUAL(ends, 5);
  c.schedule = ENS_SCHED_STEP;
  ens_schedule_from_config(&s, &c, 7);
  CU_ASSERT_EQUAL(s.kind, ENS_SCHED_CYCLIC);
}

/* Successive halving with halving_schedule = rungs: the cosine restarts at
 * every rung (2, 6, 18, 20 for m = 2, f = 3, 20 epochs) and anneals to
 * lr_min at its end; with whole, or halving off, it spans the run. */
static void test_schedule_halving_rungs(void) {
  ens_config c;
  ens_config_defaults(&c);
  c.mode = ENS_MODE_SEARCH;
  c.schedule = ENS_SCHED_COSINE;
  c.epochs = 20;
  c.lr = 0.2;
  c.lr_min = 0.002;
  c.search_halving = 1;
  c.search_halving_min_epochs = 2;
  c.search_halving_factor = 3;
  c.search_halving_schedule = ENS_HALVING_SCHED_RUNGS;
  const long spe = 5;
  ens_schedule s;
  ens_schedule_from_config(&s, &c, spe);
  CU_ASSERT_EQUAL(s.kind, ENS_SCHED_CYCLIC);
  CU_ASSERT_EQUAL(s.cycles, 4);
  CU_ASSERT_EQUAL(s.total_steps, 100);
  const int bound[4] = {2, 6, 18, 20};
  int ok = 1, ends = 0;
  long b0 = 0;
  for (int j = 0; j < 4; j++) {
    long b1 = bound[j] * spe;
    for (long t = b0; t < b1; t++) {
      /* The cosine over [b0, b1), whose last step is a cycle end. */
      double want = 0.002 + 0.198 * 0.5 * (1.0 + cos(M_PI * (double)(t - b0) / (double)(b1 - b0)));
      double lr = ens_schedule_lr(&s, t);
      int end = ens_schedule_cycle_end(&s, t) != 0;
      ends += end;
      if (fabs(lr - want) > 1e-12 || end != (t + 1 == b1)) {
        fprintf(stderr, "\n  rung schedule: step %ld lr %.15g (want %.15g), end %d\n", t, lr,
                want, end);
        ok = 0;
      }
    }
    b0 = b1;
  }
  CU_ASSERT(ok);
  CU_ASSERT_EQUAL(ends, 4);
  /* The last step of each rung is within 1 % of the way down to lr_min
   * (the ranking's point); the first step of the next is the peak. */
  CU_ASSERT(ens_schedule_lr(&s, 6 * spe - 1) < 0.002 + 0.01 * 0.198);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 6 * spe), 0.2, 1e-15);
  /* whole: one cosine over the 20 epochs. */
  c.search_halving_schedule = ENS_HALVING_SCHED_WHOLE;
  ens_schedule_from_config(&s, &c, spe);
  CU_ASSERT_EQUAL(s.kind, ENS_SCHED_COSINE);
  CU_ASSERT_EQUAL(s.nbounds, 0);
  CU_CHECK_CLOSE(ens_schedule_lr(&s, 50), 0.101, 1e-12);
  /* rungs without halving: no restarts. */
  c.search_halving_schedule = ENS_HALVING_SCHED_RUNGS;
  c.search_halving = 0;
  ens_schedule_from_config(&s, &c, spe);
  CU_ASSERT_EQUAL(s.kind, ENS_SCHED_COSINE);
  CU_ASSERT_EQUAL(s.nbounds, 0);
}

/* -------------------------------------------------------------- trainer */

enum { NROWS = 200, NFEAT = 3 };

/* Two Gaussian blobs, unit variance, centres at -1.5 and +1.5 in every
 * feature: the Bayes error is Phi(-1.5 sqrt(3)) = 0.5 %. */
static void make_blobs(float *x, int32_t *y) {
  ens_rng r;
  ens_rng_init(&r, 77, 0, ENS_STREAM_TEST, 0);
  for (int i = 0; i < NROWS; i++) {
    y[i] = i % 2;
    double centre = y[i] ? 1.5 : -1.5;
    for (int j = 0; j < NFEAT; j++)
      x[i * NFEAT + j] = (float)(centre + ens_rng_normal(&r));
  }
}

static void small_config(ens_config *c) {
  ens_config_defaults(c);
  c->n_hidden = 1;
  c->hidden[0] = 16;
  c->batchnorm = 1;
  c->dropout = 0.0;
  c->epochs = 30;
  c->batch = 20;
  c->lr = 0.1;
  c->schedule = ENS_SCHED_COSINE;
  c->seed = 42;
}

typedef struct {
  ens_trainer *t;
  int epochs_seen;
  double first_loss, last_loss;
  int cycle_calls;
  long cycle_steps[16];
  int cycle_index_ok;
  const long *stops; /* should_stop: true once t->step reaches stops[next] */
  int nstops, next;
} hook_ctx;

static int on_epoch(void *ctx, ens_trainer *t, int epoch, double loss) {
  hook_ctx *h = ctx;
  (void)t;
  if (epoch != h->epochs_seen)
    return -1000; /* out of order */
  if (h->epochs_seen == 0)
    h->first_loss = loss;
  h->last_loss = loss;
  h->epochs_seen++;
  return 0;
}

static int on_cycle_end(void *ctx, ens_trainer *t, int index) {
  hook_ctx *h = ctx;
  if (index != h->cycle_calls)
    h->cycle_index_ok = 0;
  if (h->cycle_calls < 16)
    h->cycle_steps[h->cycle_calls] = t->step;
  h->cycle_calls++;
  return 0;
}

/* Sticky, like a signal flag: stays true until the test moves `next` on. */
static int should_stop(void *ctx) {
  hook_ctx *h = ctx;
  return h->next < h->nstops && h->t->step >= h->stops[h->next];
}

static void test_trainer_learns(void) {
  static float x[NROWS * NFEAT];
  static int32_t y[NROWS];
  make_blobs(x, y);
  ens_config c;
  small_config(&c);
  ens_arch a;
  ens_arch_from_config(&a, &c, NFEAT, ENS_HEAD_SOFTMAX, 2);
  ens_trainer t;
  CU_ASSERT_FATAL(ens_trainer_create(&t, &a, 0, &c, NROWS) == 0);
  CU_ASSERT_FATAL(ens_trainer_start(&t, &c, 0, 0, NROWS) == 0);
  ens_train_set set = {.x = x, .y = y, .n = NROWS, .d = NFEAT};
  hook_ctx h = {.t = &t, .cycle_index_ok = 1};
  ens_train_hooks hooks = {.ctx = &h, .on_epoch = on_epoch, .on_cycle_end = on_cycle_end};
  CU_ASSERT_EQUAL(ens_trainer_run(&t, &set, &hooks), 0);
  CU_ASSERT_EQUAL(h.epochs_seen, c.epochs);
  CU_ASSERT_EQUAL(t.step, 10L * c.epochs); /* 200 rows / 20 = 10 steps per epoch */
  /* A cosine run has one "cycle": the whole run. */
  CU_ASSERT_EQUAL(h.cycle_calls, 1);
  CU_ASSERT(h.last_loss < 0.5 * h.first_loss);

  float *probs = malloc((size_t)NROWS * 2 * sizeof(float));
  CU_ASSERT_FATAL(probs != NULL);
  ens_model_predict(&t.model, probs, x, NROWS);
  int hits = 0;
  for (int i = 0; i < NROWS; i++)
    hits += (probs[2 * i + 1] > probs[2 * i]) == (y[i] == 1);
  double acc = (double)hits / NROWS;
  if (acc <= 0.95 || getenv("ENS_TEST_VERBOSE"))
    fprintf(stderr, "\n  training accuracy %.3f (loss %.4f -> %.4f)\n", acc, h.first_loss,
            h.last_loss);
  CU_ASSERT(acc > 0.95);
  free(probs);
  ens_trainer_free(&t);
}

/* A snapshot-mode configuration with everything that carries state between
 * steps switched on: dropout masks, batch-norm statistics, momentum,
 * weight decay, clipping, and a partial last batch (200 = 6 x 32 + 8). */
static void resume_config(ens_config *c) {
  ens_config_defaults(c);
  c->n_hidden = 2;
  c->hidden[0] = 8;
  c->hidden[1] = 6;
  c->batchnorm = 1;
  c->dropout = 0.2;
  c->epochs = 4;
  c->batch = 32;
  c->lr = 0.05;
  c->momentum = 0.9;
  c->nesterov = 1;
  c->weight_decay = 5e-4;
  c->clip_norm = 2.0;
  c->mode = ENS_MODE_SNAPSHOT;
  c->snapshots = 3;
  c->members = 3;
  c->seed = 5;
}

static void test_trainer_resume(void) {
  static float x[NROWS * NFEAT];
  static int32_t y[NROWS];
  make_blobs(x, y);
  ens_config c;
  resume_config(&c);
  ens_arch a;
  ens_arch_from_config(&a, &c, NFEAT, ENS_HEAD_SOFTMAX, 2);
  ens_train_set set = {.x = x, .y = y, .n = NROWS, .d = NFEAT};
  const long spe = ens_steps_per_epoch(NROWS, c.batch);
  CU_ASSERT_FATAL(spe == 7);

  /* Uninterrupted reference. */
  ens_trainer ref;
  CU_ASSERT_FATAL(ens_trainer_create(&ref, &a, 0, &c, NROWS) == 0);
  CU_ASSERT_FATAL(ens_trainer_start(&ref, &c, 1, 2, NROWS) == 0);
  hook_ctx hr = {.t = &ref, .cycle_index_ok = 1};
  ens_train_hooks hooks_r = {.ctx = &hr, .on_epoch = on_epoch, .on_cycle_end = on_cycle_end,
                             .should_stop = should_stop};
  CU_ASSERT_EQUAL(ens_trainer_run(&ref, &set, &hooks_r), 0);
  CU_ASSERT_EQUAL(ref.step, 4 * spe);
  /* Snapshot mode: exactly `snapshots` cycle ends, indexed 0, 1, 2, after
   * steps round(j 28 / 3) = 9, 19, 28. */
  CU_ASSERT_EQUAL(hr.cycle_calls, c.snapshots);
  CU_ASSERT(hr.cycle_index_ok);
  CU_ASSERT_EQUAL(hr.cycle_steps[0], 9);
  CU_ASSERT_EQUAL(hr.cycle_steps[1], 19);
  CU_ASSERT_EQUAL(hr.cycle_steps[2], 28);

  /* Stopped and resumed: mid-epoch (3, 20, 27), at epoch ends (7, 14), right
   * after a cycle end (9) and at one that is also mid-epoch (19). */
  static const long stops[] = {3, 7, 9, 14, 19, 20, 27};
  const int nstops = (int)(sizeof(stops) / sizeof(stops[0]));
  ens_trainer t;
  CU_ASSERT_FATAL(ens_trainer_create(&t, &a, 0, &c, NROWS) == 0);
  CU_ASSERT_FATAL(ens_trainer_start(&t, &c, 1, 2, NROWS) == 0);
  hook_ctx ht = {.t = &t, .cycle_index_ok = 1, .stops = stops, .nstops = nstops};
  ens_train_hooks hooks_t = {.ctx = &ht, .on_epoch = on_epoch, .on_cycle_end = on_cycle_end,
                             .should_stop = should_stop};
  int ret, runs = 0;
  while ((ret = ens_trainer_run(&t, &set, &hooks_t)) == ENS_ESTOPPED && runs < 100) {
    CU_ASSERT_EQUAL(t.step, stops[ht.next]); /* stopped where asked */
    ht.next++;
    runs++;
  }
  CU_ASSERT_EQUAL(ret, 0);
  CU_ASSERT_EQUAL(runs, nstops);
  CU_ASSERT_EQUAL(t.step, ref.step);
  CU_ASSERT_EQUAL(ht.epochs_seen, c.epochs);
  CU_ASSERT_EQUAL(ht.cycle_calls, c.snapshots);
  CU_ASSERT(ht.cycle_index_ok);
  CU_ASSERT(memcmp(ht.cycle_steps, hr.cycle_steps, 3 * sizeof(long)) == 0);

  /* Bitwise identical state. */
  CU_ASSERT_FATAL(t.model.nparams == ref.model.nparams);
  CU_ASSERT(memcmp(t.model.params, ref.model.params, t.model.nparams * sizeof(float)) == 0);
  CU_ASSERT(memcmp(t.velocity, ref.velocity, t.model.nparams * sizeof(float)) == 0);
  CU_ASSERT(memcmp(t.model.stats, ref.model.stats, t.model.nstats * sizeof(float)) == 0);
  CU_ASSERT(memcmp(&t.last_loss, &ref.last_loss, sizeof(double)) == 0);
  CU_ASSERT(memcmp(&ht.last_loss, &hr.last_loss, sizeof(double)) == 0);

  /* And the run did something: parameters moved from their initial values. */
  ens_trainer fresh;
  CU_ASSERT_FATAL(ens_trainer_create(&fresh, &a, 0, &c, NROWS) == 0);
  CU_ASSERT_FATAL(ens_trainer_start(&fresh, &c, 1, 2, NROWS) == 0);
  CU_ASSERT(memcmp(fresh.model.params, ref.model.params, t.model.nparams * sizeof(float)) != 0);
  ens_trainer_free(&fresh);
  ens_trainer_free(&t);
  ens_trainer_free(&ref);
}

static void test_trainer_step_recipe(void) {
  /* Each step of the loop is the documented recipe, replayed here by hand:
   * rows order[j b, (j + 1) b) of the permutation keyed (seed, rng_member,
   * SHUFFLE, epoch), dropout keyed (seed, rng_member, DROPOUT, global step),
   * clipping, then SGD at the schedule's rate of that step. Compared bit for
   * bit after each of the first 10 steps (across the end of epoch 0 at 7,
   * whose last batch has 8 rows). */
  static float x[NROWS * NFEAT];
  static int32_t y[NROWS];
  make_blobs(x, y);
  ens_config c;
  resume_config(&c);
  c.clip_value = 0.05; /* both clips active */
  ens_arch a;
  ens_arch_from_config(&a, &c, NFEAT, ENS_HEAD_SOFTMAX, 2);
  ens_train_set set = {.x = x, .y = y, .n = NROWS, .d = NFEAT};
  const uint32_t init_member = 1, rng_member = 2;
  const long spe = ens_steps_per_epoch(NROWS, c.batch);

  ens_trainer t;
  CU_ASSERT_FATAL(ens_trainer_create(&t, &a, 0, &c, NROWS) == 0);
  CU_ASSERT_FATAL(ens_trainer_start(&t, &c, init_member, rng_member, NROWS) == 0);
  static const long stops[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  hook_ctx h = {.t = &t, .cycle_index_ok = 1, .stops = stops, .nstops = 10};
  ens_train_hooks hooks = {.ctx = &h, .should_stop = should_stop};

  ens_model m;
  CU_ASSERT_FATAL(ens_model_create(&m, &a, 0, a.n_hidden, 1, c.batch) == 0);
  CU_ASSERT_FATAL(ens_model_init(&m, c.init, c.init_std, c.bias_init, c.seed, init_member) == 0);
  m.bn_momentum = (float)c.bn_momentum;
  float *vel = calloc(m.nparams, sizeof(float));
  float *xb = malloc((size_t)c.batch * NFEAT * sizeof(float));
  int32_t *yb = malloc((size_t)c.batch * sizeof(int32_t));
  int32_t order[NROWS];
  CU_ASSERT_FATAL(vel && xb && yb);
  CU_ASSERT(memcmp(m.params, t.model.params, m.nparams * sizeof(float)) == 0);
  ens_schedule sch;
  ens_schedule_from_config(&sch, &c, spe);
  const ens_sgd sgd = {.momentum = c.momentum, .weight_decay = c.weight_decay,
                       .nesterov = c.nesterov};

  for (long step = 0; step < 10; step++) {
    CU_ASSERT_EQUAL(ens_trainer_run(&t, &set, &hooks), ENS_ESTOPPED);
    h.next++;
    long epoch = step / spe, j = step % spe;
    if (j == 0) {
      ens_rng sh;
      ens_rng_init(&sh, c.seed, rng_member, ENS_STREAM_SHUFFLE, (uint32_t)epoch);
      ens_rng_permutation(&sh, order, NROWS);
    }
    int lo = (int)(j * c.batch), b = NROWS - lo < c.batch ? NROWS - lo : c.batch;
    for (int i = 0; i < b; i++) {
      memcpy(xb + (size_t)i * NFEAT, x + (size_t)order[lo + i] * NFEAT, NFEAT * sizeof(float));
      yb[i] = y[order[lo + i]];
    }
    ens_rng dr;
    ens_rng_init(&dr, c.seed, rng_member, ENS_STREAM_DROPOUT, (uint32_t)step);
    ens_model_forward(&m, xb, b, ENS_PASS_TRAIN, &dr);
    ens_model_loss_backward(&m, yb, NULL, b, NULL);
    ens_clip_value(m.grads, m.nparams, (float)c.clip_value);
    ens_clip_norm(m.grads, m.nparams, (float)c.clip_norm);
    ens_sgd_step(m.params, vel, m.grads, m.nparams, ens_schedule_lr(&sch, step), &sgd);
    int same = memcmp(m.params, t.model.params, m.nparams * sizeof(float)) == 0 &&
               memcmp(vel, t.velocity, m.nparams * sizeof(float)) == 0 &&
               memcmp(m.stats, t.model.stats, m.nstats * sizeof(float)) == 0;
    if (!same)
      fprintf(stderr, "\n  trainer step %ld differs from the documented recipe\n", step);
    CU_ASSERT(same);
    if (!same)
      break;
  }
  free(vel);
  free(xb);
  free(yb);
  ens_model_free(&m);
  ens_trainer_free(&t);
}

static void test_trainer_snapshot_counts(void) {
  /* on_cycle_end fires `snapshots` times for several chain lengths, including
   * a step count not divisible by the snapshots (3 epochs x 7 steps = 21). */
  static float x[NROWS * NFEAT];
  static int32_t y[NROWS];
  make_blobs(x, y);
  ens_train_set set = {.x = x, .y = y, .n = NROWS, .d = NFEAT};
  const int snaps[] = {1, 2, 4, 5, 21};
  for (size_t k = 0; k < sizeof(snaps) / sizeof(snaps[0]); k++) {
    ens_config c;
    resume_config(&c);
    c.epochs = 3;
    c.snapshots = snaps[k];
    c.members = snaps[k];
    c.dropout = 0.0;
    ens_arch a;
    ens_arch_from_config(&a, &c, NFEAT, ENS_HEAD_SOFTMAX, 2);
    ens_trainer t;
    CU_ASSERT_FATAL(ens_trainer_create(&t, &a, 0, &c, NROWS) == 0);
    CU_ASSERT_FATAL(ens_trainer_start(&t, &c, 0, 0, NROWS) == 0);
    hook_ctx h = {.t = &t, .cycle_index_ok = 1};
    ens_train_hooks hooks = {.ctx = &h, .on_cycle_end = on_cycle_end};
    CU_ASSERT_EQUAL(ens_trainer_run(&t, &set, &hooks), 0);
    if (h.cycle_calls != snaps[k])
      fprintf(stderr, "\n  snapshots %d: on_cycle_end called %d times\n", snaps[k],
              h.cycle_calls);
    CU_ASSERT_EQUAL(h.cycle_calls, snaps[k]);
    CU_ASSERT(h.cycle_index_ok);
    ens_trainer_free(&t);
  }
}

int main(void) {
  static const cu_case cases[] = {
      {"clip by global norm", test_clip_norm},
      {"clip by value", test_clip_value},
      {"sgd step (pytorch convention)", test_sgd_step},
      {"adam and adamw steps (pytorch convention)", test_adam_step},
      {"adam equals adamw without decay (bitwise)", test_adam_adamw_agree},
      {"constant, step and cosine schedules", test_schedule_basic},
      {"cyclic schedule boundaries", test_schedule_cyclic},
      {"schedule from config (snapshot mode)", test_schedule_from_config},
      {"schedule restarting at the halving rungs", test_schedule_halving_rungs},
      {"trainer learns two blobs", test_trainer_learns},
      {"trainer stop and resume is bitwise identical", test_trainer_resume},
      {"trainer step follows the recipe", test_trainer_step_recipe},
      {"trainer snapshot cycle ends", test_trainer_snapshot_counts},
      {NULL, NULL},
  };
  return cu_run_suite("optim", cases);
}
