/* Unit tests of src/infer/infer.c (libens) that need no trained result:
 * argument checks, error codes and thread-local messages, rule names, and
 * files that are not results. The comparisons against `ens predict` on real
 * results are in tests/integration/libens.sh. */
#include "ens/infer.h"

#include "cu_run.h"

#include <hdf5.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_rule_names(void) {
  const char *names[] = {"average", "vote", "params", "select"};
  for (int r = 0; r < ENS_RULE_COUNT; r++) {
    CU_ASSERT_STRING_EQUAL(ens_rule_name(r), names[r]);
    CU_ASSERT_EQUAL(ens_rule_parse(names[r]), r);
  }
  CU_ASSERT_PTR_NULL(ens_rule_name(-1));
  CU_ASSERT_PTR_NULL(ens_rule_name(ENS_RULE_COUNT));
  CU_ASSERT_EQUAL(ens_rule_parse("median"), -1);
  CU_ASSERT_EQUAL(ens_rule_parse(NULL), -1);
  CU_ASSERT_STRING_EQUAL(ens_infer_version(), ENS_VERSION);
}

static void test_open_arguments(void) {
  ens_infer *m = (ens_infer *)&m; /* must be reset to NULL on failure */
  CU_ASSERT_EQUAL(ens_infer_open(NULL, "x.h5"), ENS_EINVAL);
  CU_ASSERT_EQUAL(ens_infer_open(&m, NULL), ENS_EINVAL);
  CU_ASSERT_PTR_NULL(m);
  m = (ens_infer *)&m;
  CU_ASSERT_EQUAL(ens_infer_open(&m, "/nonexistent/dir/result.h5"), ENS_EIO);
  CU_ASSERT_PTR_NULL(m);
  CU_ASSERT_PTR_NOT_NULL(strstr(ens_infer_errmsg(), "/nonexistent/dir/result.h5: cannot open"));
  ens_infer_close(NULL); /* ignored */
  ens_infer_ws_free(NULL);
  float x[4] = {0};
  ens_infer_out out = {0};
  CU_ASSERT_EQUAL(ens_infer_predict(NULL, NULL, NULL, x, 1, 4, &out), ENS_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(ens_infer_errmsg(), "model is NULL"));
  ens_infer_ws *ws = NULL;
  CU_ASSERT_EQUAL(ens_infer_ws_create(&ws, NULL, 0, 0), ENS_EINVAL);
  CU_ASSERT_EQUAL(ens_infer_check(NULL, NULL), ENS_EINVAL);
}

/* HDF5 files that are not results: an empty one, and one with a /model
 * group but no attributes. Both are ENS_EFORMAT naming the file. */
static void test_not_a_result(void) {
  char path[] = "/tmp/ens-test-infer-XXXXXX";
  int fd = mkstemp(path);
  CU_ASSERT_FATAL(fd >= 0);
  close(fd);
  for (int variant = 0; variant < 2; variant++) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    if (variant == 1) {
      hid_t g = H5Gcreate2(f, "/model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      H5Gclose(g);
    }
    H5Fclose(f);
    ens_infer *m = NULL;
    CU_ASSERT_EQUAL(ens_infer_open(&m, path), ENS_EFORMAT);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_PTR_NOT_NULL(strstr(ens_infer_errmsg(), path));
    CU_ASSERT_PTR_NOT_NULL(strstr(ens_infer_errmsg(), "not an ens result file"));
  }
  /* Not HDF5 at all. */
  FILE *t = fopen(path, "w");
  CU_ASSERT_FATAL(t != NULL);
  fputs("text, not HDF5\n", t);
  fclose(t);
  ens_infer *m = NULL;
  CU_ASSERT_EQUAL(ens_infer_open(&m, path), ENS_EIO);
  unlink(path);
}

/* Each thread keeps its own last message. */
static void *fail_in_thread(void *arg) {
  ens_infer *m = NULL;
  ens_infer_open(&m, (const char *)arg);
  return strstr(ens_infer_errmsg(), (const char *)arg) ? arg : NULL;
}

static void test_errmsg_thread_local(void) {
  ens_infer *m = NULL;
  ens_infer_open(&m, "/nonexistent/main-thread.h5");
  pthread_t t;
  void *ret = NULL;
  static char other[] = "/nonexistent/other-thread.h5";
  CU_ASSERT_FATAL(pthread_create(&t, NULL, fail_in_thread, other) == 0);
  pthread_join(t, &ret);
  CU_ASSERT_PTR_EQUAL(ret, other);
  CU_ASSERT_PTR_NOT_NULL(strstr(ens_infer_errmsg(), "main-thread.h5"));
  CU_ASSERT_PTR_NULL(strstr(ens_infer_errmsg(), "other-thread.h5"));
}

int main(void) {
  const cu_case cases[] = {{"rule names", test_rule_names},
                           {"open/predict arguments", test_open_arguments},
                           {"files that are not results", test_not_a_result},
                           {"messages are per thread", test_errmsg_thread_local},
                           {NULL, NULL}};
  return cu_run_suite("infer", cases);
}
