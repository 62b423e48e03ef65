/* Successive halving's rungs, kept counts and key checks (src/core/halving.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu_run.h"
#include "ens/config.h"
#include "ens/error.h"
#include "ens/halving.h"

static void search_config(ens_config *c, int members, int epochs, int m, int f) {
  ens_config_defaults(c);
  c->mode = ENS_MODE_SEARCH;
  c->members = members;
  c->epochs = epochs;
  c->search_halving = 1;
  c->search_halving_min_epochs = m;
  c->search_halving_factor = f;
}

static void test_rungs(void) {
  ens_config c;
  int r[ENS_HALVING_MAX_RUNGS];
  search_config(&c, 27, 9, 1, 3);
  CU_ASSERT_EQUAL(ens_halving_rungs(&c, r), 3);
  CU_ASSERT(r[0] == 1 && r[1] == 3 && r[2] == 9);
  CU_ASSERT_EQUAL(ens_halving_final_count(&c), 3); /* 27 -> 9 -> 3 */
  search_config(&c, 16, 10, 1, 3); /* 1, 3, 9, then [train] epochs */
  CU_ASSERT_EQUAL(ens_halving_rungs(&c, r), 4);
  CU_ASSERT(r[0] == 1 && r[1] == 3 && r[2] == 9 && r[3] == 10);
  search_config(&c, 8, 4, 4, 2); /* first rung = epochs: one rung, no ranking */
  CU_ASSERT_EQUAL(ens_halving_rungs(&c, r), 1);
  CU_ASSERT(r[0] == 4);
  CU_ASSERT_EQUAL(ens_halving_final_count(&c), 8);
  c.search_halving = 0; /* off: [train] epochs */
  search_config(&c, 8, 7, 2, 2);
  c.search_halving = 0;
  CU_ASSERT_EQUAL(ens_halving_rungs(&c, r), 1);
  CU_ASSERT(r[0] == 7);
  /* Very many rungs stay within the table. */
  search_config(&c, 8, 1 << 30, 1, 2);
  int n = ens_halving_rungs(&c, r);
  CU_ASSERT(n <= ENS_HALVING_MAX_RUNGS && r[n - 1] == 1 << 30);
  for (int i = 1; i < n; i++)
    CU_ASSERT(r[i] > r[i - 1]);
}

static void test_keep(void) {
  CU_ASSERT_EQUAL(ens_halving_keep(16, 3), 5);
  CU_ASSERT_EQUAL(ens_halving_keep(9, 3), 3);
  CU_ASSERT_EQUAL(ens_halving_keep(2, 3), 1); /* at least one goes on */
  CU_ASSERT_EQUAL(ens_halving_keep(1, 2), 1);
  CU_ASSERT_EQUAL(ens_halving_keep(11, 2), 5);
}

static void test_check(void) {
  char path[] = "/tmp/ens_test_halvingXXXXXX";
  int fd = mkstemp(path);
  CU_ASSERT_FATAL(fd >= 0);
  FILE *fp = fdopen(fd, "w");
  fputs("[ensemble]\nmode = search\nmembers = 8\n[search]\nhalving = true\n"
        "halving_min_epochs = 20\nhalving_factor = 1\n",
        fp);
  fclose(fp);
  ens_config c;
  char err[1024];
  search_config(&c, 8, 10, 20, 3);
  CU_ASSERT_EQUAL(ens_halving_check(&c, path, err, sizeof(err)), ENS_ECONFIG);
  char want[1200];
  snprintf(want, sizeof(want), "%s:6: [search] halving_min_epochs = 20 exceeds [train] epochs = 10",
           path);
  CU_ASSERT(strstr(err, want) != NULL);
  search_config(&c, 8, 10, 2, 1);
  CU_ASSERT_EQUAL(ens_halving_check(&c, path, err, sizeof(err)), ENS_ECONFIG);
  snprintf(want, sizeof(want), "%s:7: [search] halving_factor = 1", path);
  CU_ASSERT(strstr(err, want) != NULL);
  search_config(&c, 8, 10, 2, 3);
  c.mode = ENS_MODE_SEED;
  CU_ASSERT_EQUAL(ens_halving_check(&c, path, err, sizeof(err)), ENS_ECONFIG);
  snprintf(want, sizeof(want), "%s:5: [search] halving = true needs [ensemble] mode = search", path);
  CU_ASSERT(strstr(err, want) != NULL);
  search_config(&c, 8, 10, 2, 3);
  c.count = 4;
  CU_ASSERT_EQUAL(ens_halving_check(&c, path, err, sizeof(err)), ENS_ECONFIG);
  CU_ASSERT(strstr(err, "slice of the members") != NULL);
  search_config(&c, 1, 10, 2, 3);
  CU_ASSERT_EQUAL(ens_halving_check(&c, NULL, err, sizeof(err)), ENS_ECONFIG);
  CU_ASSERT(strstr(err, "[ensemble] members = 1") != NULL);
  search_config(&c, 8, 10, 2, 3);
  CU_ASSERT_EQUAL(ens_halving_check(&c, path, err, sizeof(err)), 0);
  c.search_halving = 0; /* off: nothing to check */
  c.search_halving_factor = 0;
  CU_ASSERT_EQUAL(ens_halving_check(&c, path, err, sizeof(err)), 0);
  unlink(path);
}

int main(void) {
  static const cu_case cases[] = {
      {"rungs: m, m f, ... and [train] epochs last", test_rungs},
      {"members kept: floor(n / f), at least 1", test_keep},
      {"key checks name file:line and the key", test_check},
      {NULL, NULL},
  };
  return cu_run_suite("halving", cases);
}
