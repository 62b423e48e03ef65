/* Ensemble mechanics: bootstrap draws and member placement. */
#include <stdlib.h>
#include <string.h>

#include "cu_run.h"
#include "ensemble/job.h"

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
  ens_config c;
  ens_config_defaults(&c);
  ens_job j;
  memset(&j, 0, sizeof(j));
  j.c = &c;
  j.size = 3;
  c.mode = ENS_MODE_SEED;
  for (int k = 0; k < 10; k++)
    CU_ASSERT_EQUAL(ens_job_rank_of(&j, k), k % 3);
  /* Snapshot mode: member k belongs to chain k / S, chain c to rank c mod P. */
  c.mode = ENS_MODE_SNAPSHOT;
  c.snapshots = 4;
  CU_ASSERT_EQUAL(ens_job_unit_of(&j, 5), 1);
  CU_ASSERT_EQUAL(ens_job_rank_of(&j, 3), 0);
  CU_ASSERT_EQUAL(ens_job_rank_of(&j, 4), 1);
  CU_ASSERT_EQUAL(ens_job_rank_of(&j, 13), 0);
}

int main(void) {
  static const cu_case cases[] = {{"bootstrap draws are reproducible per member", test_bootstrap_reproducible},
                                  {"bootstrap keeps ~63.2% unique points", test_bootstrap_unique_fraction},
                                  {"member k runs on rank k mod P", test_placement},
                                  {NULL, NULL}};
  return cu_run_suite("ensemble", cases);
}
