/* Ensemble mechanics: bootstrap draws and member placement (place.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cu_run.h"
#include "ensemble/job.h"
#include "ensemble/task.h"

static void test_bootstrap_reproducible(void) {
  const int n = 5000;
  int32_t *a = malloc(n * sizeof(int32_t)), *b = malloc(n * sizeof(int32_t));
  int32_t *c = malloc(n * sizeof(int32_t));
  ens_job_bootstrap_rows(a, n, 42, 3);
  ens_job_bootstrap_rows(b, n, 42, 3);
  ens_job_bootstrap_rows(c, n, 42, 4);
  CU_ASSERT(memcmp(a, b, n * sizeof(int32_t)) == 0);
  CU_ASSERT(memcmp(a, c, n * sizeof(int32_t)) != 0);
  for (int i = 0; i < n; i++)
    CU_ASSERT(a[i] >= 0 && a[i] < n);
  free(a);
  free(b);
  free(c);
}

static void test_bootstrap_unique_fraction(void) {
  /* With replacement, a fraction 1 - (1 - 1/n)^n -> 1 - 1/e = 0.632 of the
   * points appears at least once; its standard deviation over draws is
   * about 0.0048 at n = 10000, so 0.01 is a safe bound for each member. */
  const int n = 10000;
  int32_t *rows = malloc(n * sizeof(int32_t));
  unsigned char *seen = malloc(n);
  for (uint32_t member = 0; member < 8; member++) {
    memset(seen, 0, n);
    ens_job_bootstrap_rows(rows, n, 7, member);
    int unique = 0;
    for (int i = 0; i < n; i++) {
      unique += !seen[rows[i]];
      seen[rows[i]] = 1;
    }
    CU_CHECK_CLOSE((double)unique / n, 0.6321, 0.01);
  }
  free(rows);
  free(seen);
}

static void test_placement(void) {
  /* Snapshot mode: member k belongs to chain k / S. */
  ens_config c;
  ens_config_defaults(&c);
  ens_job j;
  memset(&j, 0, sizeof(j));
  j.c = &c;
  j.size = 3;
  c.mode = ENS_MODE_SNAPSHOT;
  c.snapshots = 4;
  CU_ASSERT_EQUAL(ens_job_unit_of(&j, 5), 1);
  c.mode = ENS_MODE_SEED;
  CU_ASSERT_EQUAL(ens_job_unit_of(&j, 5), 5);
  /* The rank of a member is the placement record's (units 2..5 here). */
  int32_t owner[4] = {1, 0, -1, 2};
  j.place.owner = owner;
  j.place.u_first = 2;
  j.place.nunits = 4;
  CU_ASSERT_EQUAL(ens_job_rank_of(&j, 2), 1);
  CU_ASSERT_EQUAL(ens_job_rank_of(&j, 3), 0);
  CU_ASSERT_EQUAL(ens_job_rank_of(&j, 4), -1);
  CU_ASSERT_EQUAL(ens_job_rank_of(&j, 5), 2);
  CU_ASSERT_EQUAL(ens_job_rank_of(&j, 6), -1);
  CU_ASSERT_EQUAL(ens_job_rank_of(&j, 1), -1);
}

static void test_place_plan(void) {
  /* Costs of units 10..15: 1, 5, 5, 2, 9, 1 on 3 ranks. */
  const double cost[6] = {1, 5, 5, 2, 9, 1};
  int32_t order[6], plan[6];
  /* modulo: unit u on rank u mod 3, handed out in index order. */
  CU_ASSERT_EQUAL(ens_place_plan(order, plan, ENS_PLACE_MODULO, 10, 6, 3, cost), 0);
  for (int i = 0; i < 6; i++) {
    CU_ASSERT_EQUAL(order[i], i);
    CU_ASSERT_EQUAL(plan[i], (10 + i) % 3);
  }
  /* queue: costliest first, ties to the lower index: 4, 1, 2, 3, 0, 5. */
  const int32_t want_order[6] = {4, 1, 2, 3, 0, 5};
  CU_ASSERT_EQUAL(ens_place_plan(order, plan, ENS_PLACE_QUEUE, 10, 6, 3, cost), 0);
  CU_ASSERT(memcmp(order, want_order, sizeof(order)) == 0);
  /* cost (LPT): 4 (9) -> r0; 1 (5) -> r1; 2 (5) -> r2; 3 (2) -> r1 (5 < 9, ties lower);
   * 0 (1) -> r2 (5 < 7); 5 (1) -> r2 (6 < 7, 9). Loads 9, 7, 7. */
  const int32_t want_plan[6] = {2, 1, 2, 1, 0, 2};
  CU_ASSERT_EQUAL(ens_place_plan(order, plan, ENS_PLACE_COST, 10, 6, 3, cost), 0);
  CU_ASSERT(memcmp(order, want_order, sizeof(order)) == 0);
  CU_ASSERT(memcmp(plan, want_plan, sizeof(plan)) == 0);
  /* One rank: everything on rank 0. */
  ens_place_plan(order, plan, ENS_PLACE_COST, 0, 6, 1, cost);
  for (int i = 0; i < 6; i++)
    CU_ASSERT_EQUAL(plan[i], 0);
}

/* The prior predictor's NLL (ens_task_prior_nll) by hand, and the rule that
 * names members no better than it (ens_no_better_than_prior). */
static void test_prior_nll(void) {
  ens_task k;
  /* Classes: train labels 0,0,0,1 of 3 classes; add-one frequencies 4/7, 2/7, 1/7. */
  int32_t ty[4] = {0, 0, 0, 1}, vy[2] = {0, 2};
  ens_split train = {.n = 4, .d = 1, .y = ty};
  ens_truth val = {vy, NULL, 2};
  ens_task_init(&k, 0, 3, 0, ENS_LOSS_GAUSSIAN, NULL, NULL);
  CU_CHECK_CLOSE(ens_task_prior_nll(&k, &train, &val), -(log(4.0 / 7) + log(1.0 / 7)) / 2, 1e-6);
  /* A class the training rows lack stays finite; no training rows: unknown. */
  ens_split empty = {.n = 0, .d = 1, .y = ty};
  CU_ASSERT(isnan(ens_task_prior_nll(&k, &empty, &val)));
  /* Targets: train 1, 2, 3, 4 (mean 2.5, variance 1.25), scored at 2.5 (no
   * squared error) and 0 (6.25 / 2.5); the mean over the two rows. */
  float tt[4] = {1, 2, 3, 4}, vt[2] = {2.5f, 0};
  ens_split rtrain = {.n = 4, .d = 1, .t = tt};
  ens_truth rval = {NULL, vt, 2};
  ens_task_init(&k, 1, 0, 1, ENS_LOSS_GAUSSIAN, NULL, NULL);
  const double g = 0.5 * log(2 * M_PI * 1.25);
  CU_CHECK_CLOSE(ens_task_prior_nll(&k, &rtrain, &rval), g + (2.5 * 2.5 / (2 * 1.25)) / 2, 1e-5);
  /* The rule: at least ENS_PRIOR_MIN_NATS below the prior, else no better. */
  CU_ASSERT(ens_no_better_than_prior(2.3026, 2.3026));
  CU_ASSERT(ens_no_better_than_prior(2.2950, 2.3026));
  CU_ASSERT(!ens_no_better_than_prior(2.2900, 2.3026));
  CU_ASSERT(!ens_no_better_than_prior(0.2, 2.3026));
  CU_ASSERT(ens_no_better_than_prior(NAN, 2.3026));
  CU_ASSERT(!ens_no_better_than_prior(2.5, NAN));
  CU_ASSERT(ens_no_better_than_prior(-1.0, -1.005));
}

int main(void) {
  static const cu_case cases[] = {
      {"bootstrap draws are reproducible per member", test_bootstrap_reproducible},
      {"bootstrap keeps ~63.2% unique points", test_bootstrap_unique_fraction},
      {"member k: its unit, and the rank the placement record says", test_placement},
      {"placement plans: modulo, queue order, cost (LPT)", test_place_plan},
      {"prior predictor nll and members no better than it", test_prior_nll},
      {NULL, NULL}};
  return cu_run_suite("ensemble", cases);
}
