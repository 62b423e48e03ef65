/* Hyper-deep ensembles: the member count, the key checks (src/core/hyperdeep.c)
 * and the combining weights (src/ensemble/hyperdeep.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu_run.h"
#include "ens/config.h"
#include "ens/error.h"
#include "ens/hyperdeep.h"
#include "ensemble/hyperdeep.h"

static void search_config(ens_config *c, int members, int seeds, int configs) {
  ens_config_defaults(c);
  c->mode = ENS_MODE_SEARCH;
  c->combine = ENS_COMBINE_SELECT;
  c->members = members;
  c->search_hyper_deep = seeds;
  c->search_hyper_deep_configs = configs;
}

static void test_total(void) {
  ens_config c;
  search_config(&c, 8, 3, 2);
  CU_ASSERT_EQUAL(ens_hyperdeep_total(&c), 14);
  CU_ASSERT(ens_hyperdeep_on(&c));
  c.search_hyper_deep = 0;
  CU_ASSERT_EQUAL(ens_hyperdeep_total(&c), 8);
  CU_ASSERT(!ens_hyperdeep_on(&c));
  search_config(&c, 8, 3, 2);
  c.mode = ENS_MODE_SEED; /* only a search has configurations to retrain */
  CU_ASSERT_EQUAL(ens_hyperdeep_total(&c), 8);
}

static void test_check(void) {
  char path[] = "/tmp/ens_test_hyperdeepXXXXXX";
  int fd = mkstemp(path);
  CU_ASSERT_FATAL(fd >= 0);
  FILE *fp = fdopen(fd, "w");
  fputs("[ensemble]\nmode = search\nmembers = 8\n[search]\nhyper_deep = 2\n"
        "hyper_deep_configs = 3\n",
        fp);
  fclose(fp);
  ens_config c;
  char err[1024], want[1200];
  search_config(&c, 8, 2, 3);
  CU_ASSERT_EQUAL(ens_hyperdeep_check(&c, path, err, sizeof(err)), 0);
  c.mode = ENS_MODE_BOOTSTRAP;
  CU_ASSERT_EQUAL(ens_hyperdeep_check(&c, path, err, sizeof(err)), ENS_ECONFIG);
  snprintf(want, sizeof(want), "%s:5: [search] hyper_deep = 2 needs [ensemble] mode = search",
           path);
  CU_ASSERT(strstr(err, want) != NULL);
  search_config(&c, 8, 2, 3);
  c.combine = ENS_COMBINE_AVERAGE;
  CU_ASSERT_EQUAL(ens_hyperdeep_check(&c, path, err, sizeof(err)), ENS_ECONFIG);
  snprintf(want, sizeof(want), "%s:5: [search] hyper_deep = 2 needs [ensemble] combine = select",
           path);
  CU_ASSERT(strstr(err, want) != NULL);
  search_config(&c, 8, -1, 3);
  CU_ASSERT_EQUAL(ens_hyperdeep_check(&c, path, err, sizeof(err)), ENS_ECONFIG);
  CU_ASSERT(strstr(err, ":5: [search] hyper_deep = -1: expected") != NULL);
  search_config(&c, 8, ENS_HYPERDEEP_MAX_SEEDS + 1, 3);
  CU_ASSERT_EQUAL(ens_hyperdeep_check(&c, path, err, sizeof(err)), ENS_ECONFIG);
  search_config(&c, 8, 2, 9);
  CU_ASSERT_EQUAL(ens_hyperdeep_check(&c, path, err, sizeof(err)), ENS_ECONFIG);
  snprintf(want, sizeof(want), "%s:6: [search] hyper_deep_configs = 9: expected", path);
  CU_ASSERT(strstr(err, want) != NULL);
  search_config(&c, 8, 2, 0);
  CU_ASSERT_EQUAL(ens_hyperdeep_check(&c, NULL, err, sizeof(err)), ENS_ECONFIG);
  CU_ASSERT(strstr(err, "[search] hyper_deep_configs = 0") != NULL);
  search_config(&c, 8, 2, 3);
  c.count = 4;
  CU_ASSERT_EQUAL(ens_hyperdeep_check(&c, path, err, sizeof(err)), ENS_ECONFIG);
  CU_ASSERT(strstr(err, "slice of the members") != NULL);
  search_config(&c, 8, 2, 3);
  c.search_halving = 1;
  CU_ASSERT_EQUAL(ens_hyperdeep_check(&c, path, err, sizeof(err)), ENS_ECONFIG);
  CU_ASSERT(strstr(err, "halving") != NULL);
  search_config(&c, 8, 0, 99); /* off: nothing to check */
  c.combine = ENS_COMBINE_AVERAGE;
  CU_ASSERT_EQUAL(ens_hyperdeep_check(&c, path, err, sizeof(err)), 0);
  unlink(path);
}

/* A map of M = 4 search members and S = 2 configurations x K = 2 seeds. */
static void map(ens_hyperdeep *h, int32_t *source, int s0, int s1) {
  memset(h, 0, sizeof(*h));
  h->M = 4, h->S = 2, h->K = 2, h->N = 8;
  h->source = source;
  for (int k = 0; k < 4; k++)
    source[k] = k;
  source[4] = source[5] = s0;
  source[6] = source[7] = s1;
}

static void test_spread(void) {
  ens_hyperdeep h;
  int32_t source[8], counts[8];
  uint8_t done[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  /* Picks 5, 0, 2, 1; configurations 0 and 2 retrained: groups of 3 each.
   * L = 3: member weights 5, 0, 2*1, 1*3, then 5, 5, 2, 2 (per configuration:
   * 15, 0, 6, 3 = the picks times 3: 24 in all). */
  map(&h, source, 0, 2);
  int32_t picks[4] = {5, 0, 2, 1};
  CU_ASSERT_EQUAL(ens_hyperdeep_spread(&h, counts, picks, done), 24);
  int32_t want[8] = {5, 0, 2, 3, 5, 5, 2, 2};
  CU_ASSERT(memcmp(counts, want, sizeof(want)) == 0);
  /* A retrained configuration without a pick (1) gets one pick, spread. */
  map(&h, source, 0, 1);
  CU_ASSERT_EQUAL(ens_hyperdeep_spread(&h, counts, picks, done), 5 * 3 + 1 * 3 + 2 * 3 + 1 * 3);
  int32_t want2[8] = {5, 1, 6, 3, 5, 5, 1, 1};
  CU_ASSERT(memcmp(counts, want2, sizeof(want2)) == 0);
  /* A failed retrained member: its configuration's weight over the rest
   * (groups of 2 and 3: L = 6). */
  map(&h, source, 0, 2);
  done[5] = 0;
  CU_ASSERT(ens_hyperdeep_spread(&h, counts, picks, done) > 0);
  int32_t want3[8] = {15, 0, 4, 6, 15, 0, 4, 4};
  CU_ASSERT(memcmp(counts, want3, sizeof(want3)) == 0);
  /* Nothing finished: an error, not weights. */
  memset(done, 0, sizeof(done));
  CU_ASSERT(ens_hyperdeep_spread(&h, counts, picks, done) < 0);
}

static void test_source(void) {
  CU_ASSERT_EQUAL(ens_hyperdeep_source(NULL, 7), 7); /* off: member k trains draw k */
  ens_hyperdeep h;
  int32_t source[8];
  map(&h, source, 3, 1);
  CU_ASSERT_EQUAL(ens_hyperdeep_source(&h, 2), 2);
  CU_ASSERT_EQUAL(ens_hyperdeep_source(&h, 5), 3);
  CU_ASSERT_EQUAL(ens_hyperdeep_source(&h, 7), 1);
}

int main(void) {
  static const cu_case cases[] = {
      {"members: the search's plus configurations x seeds", test_total},
      {"key checks name file:line and the key", test_check},
      {"weights: each configuration's picks spread over its seeds", test_spread},
      {"member -> configuration map", test_source},
      {NULL, NULL},
  };
  return cu_run_suite("hyperdeep", cases);
}
