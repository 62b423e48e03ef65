/* Replays saved fuzzer inputs through the libFuzzer harnesses of tests/fuzz/
 * (compiled here with gcc, without libFuzzer): every input under
 * tests/fuzz/regress/<harness>/ (inputs that once crashed, fixed since) and
 * the seeds under tests/fuzz/corpus/<harness>/ must run without a crash, an
 * abort or (in the sanitizer build) a sanitizer report. */
#include "cu_run.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ENTRY fuzz_csv_entry
#include "../fuzz/fuzz_csv.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_config_entry
#include "../fuzz/fuzz_config.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_idx_entry
#include "../fuzz/fuzz_idx.c"
#undef FUZZ_ENTRY

typedef int (*fuzz_entry)(const uint8_t *data, size_t size);

/* Runs every file of tests/fuzz/<kind>/<harness>/ through fn; returns the
 * number of inputs, -1 when the directory is missing. */
static int replay(const char *kind, const char *harness, fuzz_entry fn) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/tests/fuzz/%s/%s", ENS_TEST_SOURCE_DIR, kind, harness);
  DIR *d = opendir(dir);
  if (!d)
    return -1;
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_EQUAL(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    CU_ASSERT_EQUAL(fn(buf, (size_t)len), 0);
    free(buf);
    n++;
  }
  closedir(d);
  return n;
}

static void run(const char *harness, fuzz_entry fn) {
  int seeds = replay("corpus", harness, fn), crashes = replay("regress", harness, fn);
  CU_ASSERT(seeds > 0); /* the seed corpus is part of the repository */
  printf(" (%d seeds, %d regression inputs) ", seeds, crashes < 0 ? 0 : crashes);
}

static void test_csv(void) { run("fuzz_csv", fuzz_csv_entry); }
static void test_config(void) { run("fuzz_config", fuzz_config_entry); }
static void test_idx(void) { run("fuzz_idx", fuzz_idx_entry); }

int main(void) {
  static const cu_case cases[] = {
      {"fuzz_csv", test_csv},
      {"fuzz_config", test_config},
      {"fuzz_idx", test_idx},
      {NULL, NULL},
  };
  return cu_run_suite("fuzz_regress", cases);
}
