/* ens-bench-infer: throughput and latency of libens (include/ens/infer.h)
 * for scripts/bench-infer.
 *
 *   ens-bench-infer RESULT.h5 INPUT.h5 DATASET REPS CALLS [BATCH [raw]]
 *
 * Throughput: all rows of DATASET in one ens_infer_predict call with a
 * workspace made for them, best of REPS. Latency: CALLS calls of one row each
 * (row i mod n) through one workspace; prints the median and the 99th
 * percentile. BATCH (default 0) is ens_infer_ws_create's batch for the
 * throughput workspace (0: training batch sizes, as ens predict). One line of
 * JSON on stdout; with "raw", each call's latency in microseconds instead
 * (scripts/bench-infer interleaves rounds of calls with PyTorch's). BLAS threads:
 * OPENBLAS_NUM_THREADS.
 *
 *   ens-bench-infer --floor FLOATS
 *
 * The two floors of this machine that bound any implementation: the best time
 * to read FLOATS floats already in cache (a single-row call reads every
 * weight once), and OpenBLAS sgemm's rate on a cache-friendly shape (M = 144,
 * N = 512, K = 784, best of 50). One line of JSON. */
#include <cblas.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ens/infer.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Best seconds to sum n floats (vectors into 8 independent sums, so the
 * reads, not the adds, bound it), over reps passes. */
typedef float vf4 __attribute__((vector_size(16)));
static double read_floor(long n, int reps) {
  float *w = malloc((size_t)n * sizeof(float));
  if (!w)
    return -1;
  for (long i = 0; i < n; i++)
    w[i] = 1e-3f * (float)(i & 15);
  double best = 1e30;
  volatile float sink = 0;
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    vf4 s[8] = {{0}};
    for (long i = 0; i + 32 <= n; i += 32)
      for (int j = 0; j < 8; j++) {
        vf4 v;
        memcpy(&v, w + i + 4 * j, sizeof(v));
        s[j] += v;
      }
    double t = now() - t0;
    sink += s[0][0] + s[7][3];
    best = t < best ? t : best;
  }
  free(w);
  return best;
}

static double sgemm_rate(void) {
  enum { M = 144, N = 512, K = 784 };
  float *a = calloc((size_t)M * K, sizeof(float)), *b = calloc((size_t)N * K, sizeof(float));
  float *c = calloc((size_t)M * N, sizeof(float));
  if (!a || !b || !c)
    return -1;
  double best = 1e30;
  for (int r = 0; r < 50; r++) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
    double t = now() - t0;
    best = t < best ? t : best;
  }
  free(a);
  free(b);
  free(c);
  return 2.0 * M * N * K / best;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--floor")) {
    const long n = atol(argv[2]);
    double t = read_floor(n, 200);
    printf("{\"floats\": %ld, \"read_seconds\": %.9f, \"read_bytes_per_second\": %.4g, "
           "\"sgemm_flops\": %.4g}\n",
           n, t, 4.0 * n / t, sgemm_rate());
    return 0;
  }
  if (argc < 6 || argc > 8) {
    fprintf(stderr, "usage: %s RESULT.h5 INPUT.h5 DATASET REPS CALLS [BATCH [raw]]\n", argv[0]);
    return 1;
  }
  const int reps = atoi(argv[4]), batch = argc >= 7 ? atoi(argv[6]) : 0;
  int calls = atoi(argv[5]);
  const int raw = argc == 8 && !strcmp(argv[7], "raw");
  ens_infer *m = NULL;
  if (ens_infer_open(&m, argv[1])) {
    fprintf(stderr, "%s\n", ens_infer_errmsg());
    return 1;
  }
  const int d = ens_infer_inputs(m);
  hid_t f = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t ds = f < 0 ? -1 : H5Dopen2(f, argv[3], H5P_DEFAULT);
  hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
  hsize_t dims[8] = {0};
  if (sp < 0 || H5Sget_simple_extent_ndims(sp) < 2) {
    fprintf(stderr, "%s: cannot read dataset %s\n", argv[2], argv[3]);
    return 1;
  }
  H5Sget_simple_extent_dims(sp, dims, NULL);
  const int n = (int)dims[0];
  float *x = malloc((size_t)n * d * sizeof(float));
  if (!x || H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) {
    fprintf(stderr, "%s: cannot read %s as (n, %d) floats\n", argv[2], argv[3], d);
    return 1;
  }
  H5Sclose(sp);
  H5Dclose(ds);
  H5Fclose(f);
  const int w =
      ens_infer_task(m) == ENS_INFER_REGRESS ? ens_infer_targets(m) : ens_infer_classes(m);
  float *a = malloc((size_t)n * w * sizeof(float)), *b = malloc((size_t)n * w * sizeof(float));
  int32_t *pred = malloc((size_t)n * sizeof(int32_t));
  double *lat = malloc((size_t)(calls > 0 ? calls : 1) * sizeof(double));
  ens_infer_out out = {0};
  if (ens_infer_task(m) == ENS_INFER_REGRESS) {
    out.mean = a;
    out.var = b;
  } else {
    out.probs = a;
    out.pred = pred;
  }
  ens_infer_ws *big = NULL, *one = NULL;
  if (!a || !b || !pred || !lat || ens_infer_ws_create(&big, m, n, batch) ||
      ens_infer_ws_create(&one, m, 1, batch)) {
    fprintf(stderr, "setup: %s\n", ens_infer_errmsg());
    return 1;
  }
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    if (ens_infer_predict(m, big, NULL, x, n, d, &out)) {
      fprintf(stderr, "%s\n", ens_infer_errmsg());
      return 2;
    }
    double t = now() - t0;
    best = t < best ? t : best;
  }
  /* Warm-up call, then one row per call. */
  ens_infer_predict(m, one, NULL, x, 1, d, &out);
  for (int i = 0; i < calls; i++) {
    const float *row = x + (size_t)(i % n) * d;
    double t0 = now();
    if (ens_infer_predict(m, one, NULL, row, 1, d, &out)) {
      fprintf(stderr, "%s\n", ens_infer_errmsg());
      return 2;
    }
    lat[i] = now() - t0;
  }
  if (raw) {
    for (int i = 0; i < calls; i++)
      printf("%.3f\n", lat[i] * 1e6);
    calls = 0; /* nothing more to print */
  }
  qsort(lat, (size_t)calls, sizeof(double), cmp_double);
  double med = calls ? lat[calls / 2] : 0, p99 = calls ? lat[(size_t)(0.99 * (calls - 1))] : 0;
  if (!raw)
    printf("{\"rows\": %d, \"throughput_seconds\": %.6f, \"rows_per_second\": %.1f, "
           "\"latency_median_us\": %.2f, \"latency_p99_us\": %.2f, \"calls\": %d}\n",
           n, best, n / best, med * 1e6, p99 * 1e6, calls);
  ens_infer_ws_free(big);
  ens_infer_ws_free(one);
  ens_infer_close(m);
  free(x);
  free(a);
  free(b);
  free(pred);
  free(lat);
  return 0;
}
