/* ens-reselect: re-run combine = select on a stored result's rows, without
 * training (a development tool for studying the selection rule offline, as
 * scripts/bench-select does in Python).
 *
 *   ens-reselect RESULT.h5 DATA.h5 SEED VAL_FRACTION [VAL_LABELS_OUT]
 *
 * The validation rows are rebuilt as training does ([data] val_fraction of
 * DATA's /train with [ensemble] seed; or DATA's /val when it has one); the
 * selection (ens_select_robust_probs, [ensemble] select_* defaults: 50 picks,
 * 20 bags, fraction 0.5) runs on /members/val_probs, and the test NLL of the
 * selected ensemble is printed before and after a temperature fitted on the
 * validation rows, with the plain average's on the same basis.
 * Only members with status "done" are combined. ENS_RESELECT_NO_CHECK=1 in
 * the environment: select_check = false (the bagged rule without the check).
 * VAL_LABELS_OUT: the validation labels, one per line (for Python). */
#include "ens/data.h"
#include "ens/error.h"
#include "ens/metrics.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *read3(hid_t f, const char *name, hsize_t dims[3]) {
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  if (d < 0)
    return NULL;
  hid_t sp = H5Dget_space(d);
  if (H5Sget_simple_extent_ndims(sp) != 3) {
    H5Sclose(sp);
    H5Dclose(d);
    return NULL;
  }
  H5Sget_simple_extent_dims(sp, dims, NULL);
  H5Sclose(sp);
  float *p = malloc(dims[0] * dims[1] * dims[2] * sizeof(float));
  if (p && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, p) < 0) {
    free(p);
    p = NULL;
  }
  H5Dclose(d);
  return p;
}

/* 1 when /members/<k> has status "done" (stopped and failed members are
 * never combined). */
static int member_done(hid_t f, int k) {
  char name[64], buf[64] = "";
  snprintf(name, sizeof(name), "/members/%d", k);
  hid_t a = H5Aopen_by_name(f, name, "status", H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0)
    return 0;
  hid_t t = H5Aget_type(a);
  if (H5Tis_variable_str(t) > 0) {
    char *v = NULL;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    if (H5Aread(a, mt, &v) >= 0 && v) {
      snprintf(buf, sizeof(buf), "%s", v);
      H5free_memory(v);
    }
    H5Tclose(mt);
  } else {
    size_t sz = H5Tget_size(t);
    char *v = calloc(sz + 1, 1);
    if (v && H5Aread(a, t, v) >= 0)
      snprintf(buf, sizeof(buf), "%s", v);
    free(v);
  }
  H5Tclose(t);
  H5Aclose(a);
  return strcmp(buf, "done") == 0;
}

/* out (n, C) = the counts-weighted average of probs (M, n, C). */
static void mix(float *out, const float *probs, const int32_t *counts, int M, int n, int C) {
  double tot = 0.0;
  for (int j = 0; j < M; j++)
    tot += counts[j];
  for (size_t e = 0; e < (size_t)n * C; e++) {
    double s = 0.0;
    for (int j = 0; j < M; j++)
      if (counts[j])
        s += counts[j] * (double)probs[(size_t)j * n * C + e];
    out[e] = (float)(s / tot);
  }
}

int main(int argc, char **argv) {
  if (argc < 5 || argc > 6) {
    fprintf(stderr, "usage: ens-reselect RESULT.h5 DATA.h5 SEED VAL_FRACTION [VAL_LABELS_OUT]\n");
    return 1;
  }
  char err[512] = "";
  ens_data d = {0};
  if (ens_data_load(&d, argv[2], err, sizeof(err))) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  const uint64_t seed = strtoull(argv[3], NULL, 10);
  if (d.val.n == 0 && ens_data_split_val(&d, atof(argv[4]), seed)) {
    fprintf(stderr, "cannot split validation rows\n");
    return 2;
  }
  hid_t f = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    fprintf(stderr, "%s: cannot open\n", argv[1]);
    return 1;
  }
  hsize_t vd[3], td[3];
  float *vp = read3(f, "/members/val_probs", vd), *tp = read3(f, "/members/probs", td);
  const int M = vp ? (int)vd[0] : 0, n = (int)vd[1], C = (int)vd[2], nt = (int)td[1];
  uint8_t *usable = malloc((size_t)M + 1);
  for (int k = 0; usable && k < M; k++)
    usable[k] = (uint8_t)member_done(f, k);
  H5Fclose(f);
  if (!vp || !tp || n != d.val.n || nt != d.test.n || C != d.classes) {
    fprintf(stderr, "%s: /members/val_probs or /members/probs do not match %s's rows\n", argv[1],
            argv[2]);
    return 1;
  }
  if (argc == 6) {
    FILE *o = fopen(argv[5], "w");
    for (int i = 0; o && i < n; i++)
      fprintf(o, "%d\n", d.val.y[i]);
    if (o)
      fclose(o);
  }
  int32_t *counts = malloc(M * sizeof(int32_t)), *ones = malloc(M * sizeof(int32_t));
  for (int j = 0; j < M; j++)
    ones[j] = usable[j];
  ens_select_opts o = {.max_picks = 50, .bags = 20, .fraction = 0.5, .min_rows = 20, .check = 1,
                       .seed = seed};
  if (getenv("ENS_RESELECT_NO_CHECK")) /* select_check = false */
    o.check = 0;
  ens_select_info info;
  int ret = ens_select_robust_probs(counts, &info, vp, usable, d.val.y, M, n, C, &o);
  if (ret < 0) {
    fprintf(stderr, "selection failed: %s\n", ens_strerror(ret));
    return 2;
  }
  printf("rule %s (%s), picks %d; held-out: average %.6f greedy %.6f bagged %.6f\n",
         ens_select_rule_name(info.rule), ens_select_reason_text(info.reason), info.picks,
         info.cv_average, info.cv_greedy, info.cv_bagged);
  printf("counts");
  for (int j = 0; j < M; j++)
    printf(" %d", counts[j]);
  printf("\n");
  float *v = malloc((size_t)n * C * sizeof(float)), *t = malloc((size_t)nt * C * sizeof(float));
  float *tc = malloc((size_t)nt * C * sizeof(float));
  const int32_t *which[2] = {counts, ones};
  const char *label[2] = {"select ", "average"};
  for (int k = 0; k < 2; k++) {
    mix(v, vp, which[k], M, n, C);
    mix(t, tp, which[k], M, nt, C);
    double T = ens_temperature_fit(v, d.val.y, n, C);
    ens_temperature_apply(tc, t, nt, C, T);
    printf("%s test NLL %.4f, calibrated %.4f (T %.4f), accuracy %.2f %%\n", label[k],
           ens_metric_nll(t, d.test.y, nt, C), ens_metric_nll(tc, d.test.y, nt, C), T,
           100.0 * ens_metric_accuracy(t, d.test.y, nt, C));
  }
  free(v);
  free(t);
  free(tc);
  free(counts);
  free(ones);
  free(usable);
  free(vp);
  free(tp);
  ens_data_free(&d);
  return 0;
}
