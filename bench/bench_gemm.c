/* GEMM floor of one training epoch: times exactly the cblas_sgemm calls that
 * src/nn/dense.c makes for an MLP of the given widths (forward, dW, dx except
 * for the first layer) over one epoch, plus the eval forward pass over the
 * test split that `ens train` runs after every epoch. Nothing but sgemm. */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_WIDTHS 32

typedef struct bench_opts {
  int widths[MAX_WIDTHS];
  int nwidths;
  int batch;
  int train_rows;
  int test_rows;
  int repeats;
  int threads;
} bench_opts;

/* Per-layer buffers, allocated once for the largest batch, like ens does. */
typedef struct bench_layer {
  int in, out;
  float *w;  /* (out, in) row-major */
  float *dw; /* (out, in) */
  float *y;  /* (batch, out) */
  float *dy; /* (batch, out) */
  float *dx; /* (batch, in); NULL for the first layer */
} bench_layer;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f) {
  fprintf(f, "usage: ens-bench-gemm [--widths 784,512,256,10] [--batch 128] [--train-rows 60000]\n"
             "                      [--test-rows 10000] [--repeats 3] [--threads 1]\n"
             "Times the sgemm calls of one `ens train` epoch (training and eval) for an MLP\n"
             "with these layer widths; prints the minimum over the repeats.\n");
}

static int parse_int(const char *s, const char *what, int min, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > 1000000000L) {
    fprintf(stderr, "ens-bench-gemm: %s: expected an integer >= %d, got '%s'\n", what, min, s);
    return -1;
  }
  *out = (int)v;
  return 0;
}

static int parse_widths(const char *s, bench_opts *o) {
  char buf[512];
  if (strlen(s) >= sizeof(buf)) {
    fprintf(stderr, "ens-bench-gemm: --widths: list too long\n");
    return -1;
  }
  strcpy(buf, s);
  o->nwidths = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (o->nwidths == MAX_WIDTHS) {
      fprintf(stderr, "ens-bench-gemm: --widths: at most %d widths\n", MAX_WIDTHS);
      return -1;
    }
    if (parse_int(tok, "--widths", 1, &o->widths[o->nwidths]))
      return -1;
    o->nwidths++;
  }
  if (o->nwidths < 2) {
    fprintf(stderr, "ens-bench-gemm: --widths: need at least input and output width, got '%s'\n",
            s);
    return -1;
  }
  return 0;
}

/* Returns 0, 1 (usage error) or 2 (--help printed). */
static int parse_args(int argc, char **argv, bench_opts *o) {
  static const int defaults[] = {784, 512, 256, 10};
  memcpy(o->widths, defaults, sizeof(defaults));
  o->nwidths = 4;
  o->batch = 128;
  o->train_rows = 60000;
  o->test_rows = 10000;
  o->repeats = 3;
  o->threads = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 2;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "ens-bench-gemm: %s: missing value (or unknown option)\n", a);
      usage(stderr);
      return 1;
    }
    const char *v = argv[++i];
    int bad;
    if (!strcmp(a, "--widths"))
      bad = parse_widths(v, o);
    else if (!strcmp(a, "--batch"))
      bad = parse_int(v, a, 1, &o->batch);
    else if (!strcmp(a, "--train-rows"))
      bad = parse_int(v, a, 2, &o->train_rows);
    else if (!strcmp(a, "--test-rows"))
      bad = parse_int(v, a, 0, &o->test_rows);
    else if (!strcmp(a, "--repeats"))
      bad = parse_int(v, a, 1, &o->repeats);
    else if (!strcmp(a, "--threads"))
      bad = parse_int(v, a, 1, &o->threads);
    else {
      fprintf(stderr, "ens-bench-gemm: unknown option '%s'\n", a);
      usage(stderr);
      return 1;
    }
    if (bad)
      return 1;
  }
  return 0;
}

/* Uniform values in [-0.5, 0.5) from a file-local LCG: the values do not
 * matter for the timing, only that they are finite and not denormal. */
static void fill(float *p, size_t n, unsigned *state) {
  for (size_t i = 0; i < n; i++) {
    *state = *state * 1664525u + 1013904223u;
    p[i] = (float)(*state >> 8) / 16777216.0f - 0.5f;
  }
}

/* The sgemm calls of one optimizer step on b rows, as in ens_dense_forward
 * and ens_dense_backward; returns the flop count. */
static double train_step(bench_layer *L, int nl, const float *x0, int b) {
  double flops = 0.0;
  const float *x = x0;
  for (int i = 0; i < nl; i++) { /* y = x W^T, beta 1 (bias rows already in y) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, L[i].out, L[i].in, 1.0f, x, L[i].in,
                L[i].w, L[i].in, 1.0f, L[i].y, L[i].out);
    flops += 2.0 * b * L[i].out * L[i].in;
    x = L[i].y;
  }
  for (int i = nl - 1; i >= 0; i--) {
    const float *xi = i == 0 ? x0 : L[i - 1].y;
    /* dW = dy^T x */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L[i].out, L[i].in, b, 1.0f, L[i].dy,
                L[i].out, xi, L[i].in, 0.0f, L[i].dw, L[i].in);
    flops += 2.0 * b * L[i].out * L[i].in;
    if (L[i].dx) { /* dx = dy W */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, L[i].in, L[i].out, 1.0f, L[i].dy,
                  L[i].out, L[i].w, L[i].in, 0.0f, L[i].dx, L[i].in);
      flops += 2.0 * b * L[i].out * L[i].in;
    }
  }
  return flops;
}

static double eval_step(bench_layer *L, int nl, const float *x0, int b) {
  double flops = 0.0;
  const float *x = x0;
  for (int i = 0; i < nl; i++) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, L[i].out, L[i].in, 1.0f, x, L[i].in,
                L[i].w, L[i].in, 1.0f, L[i].y, L[i].out);
    flops += 2.0 * b * L[i].out * L[i].in;
    x = L[i].y;
  }
  return flops;
}

/* Batches as the trainer cuts them: full batches, then the remainder if it
 * has at least two rows (ens_steps_per_epoch). */
static double train_epoch(bench_layer *L, int nl, const float *x0, const bench_opts *o) {
  double flops = 0.0;
  for (int lo = 0; lo < o->train_rows; lo += o->batch) {
    int b = o->train_rows - lo < o->batch ? o->train_rows - lo : o->batch;
    if (b < 2)
      break;
    flops += train_step(L, nl, x0, b);
  }
  return flops;
}

/* Batches as ens_model_predict cuts them: every remainder counts. */
static double eval_epoch(bench_layer *L, int nl, const float *x0, const bench_opts *o) {
  double flops = 0.0;
  for (int lo = 0; lo < o->test_rows; lo += o->batch) {
    int b = o->test_rows - lo < o->batch ? o->test_rows - lo : o->batch;
    flops += eval_step(L, nl, x0, b);
  }
  return flops;
}

int main(int argc, char **argv) {
  bench_opts o;
  int ret = parse_args(argc, argv, &o);
  if (ret)
    return ret == 2 ? 0 : 1;
  openblas_set_num_threads(o.threads);

  int nl = o.nwidths - 1;
  bench_layer L[MAX_WIDTHS];
  memset(L, 0, sizeof(L));
  float *x0 = malloc((size_t)o.batch * o.widths[0] * sizeof(float));
  unsigned seed = 12345u;
  ret = x0 ? 0 : 2;
  if (x0)
    fill(x0, (size_t)o.batch * o.widths[0], &seed);
  for (int i = 0; i < nl && !ret; i++) {
    L[i].in = o.widths[i];
    L[i].out = o.widths[i + 1];
    size_t nw = (size_t)L[i].out * L[i].in;
    size_t ny = (size_t)o.batch * L[i].out;
    L[i].w = malloc(nw * sizeof(float));
    L[i].dw = malloc(nw * sizeof(float));
    L[i].y = malloc(ny * sizeof(float));
    L[i].dy = malloc(ny * sizeof(float));
    if (i > 0)
      L[i].dx = malloc((size_t)o.batch * L[i].in * sizeof(float));
    if (!L[i].w || !L[i].dw || !L[i].y || !L[i].dy || (i > 0 && !L[i].dx)) {
      ret = 2;
      break;
    }
    fill(L[i].w, nw, &seed);
    fill(L[i].y, ny, &seed);
    fill(L[i].dy, ny, &seed);
    /* Keep the activations bounded when forward accumulates (beta 1). */
    for (size_t k = 0; k < nw; k++)
      L[i].w[k] *= 0.05f;
  }
  if (ret) {
    fprintf(stderr, "ens-bench-gemm: out of memory\n");
    goto cleanup;
  }

  /* Warm-up: one full training epoch and eval pass (thread pool, page
   * faults, caches, CPU frequency). */
  train_epoch(L, nl, x0, &o);
  eval_epoch(L, nl, x0, &o);

  double best_train = 1e300, best_eval = 1e300, best_sum = 1e300;
  double train_flops = 0.0, eval_flops = 0.0;
  for (int r = 0; r < o.repeats; r++) {
    double t0 = now_seconds();
    train_flops = train_epoch(L, nl, x0, &o);
    double t1 = now_seconds();
    eval_flops = eval_epoch(L, nl, x0, &o);
    double t2 = now_seconds();
    if (t1 - t0 < best_train)
      best_train = t1 - t0;
    if (t2 - t1 < best_eval)
      best_eval = t2 - t1;
    if (t2 - t0 < best_sum)
      best_sum = t2 - t0;
  }
  /* Keep the results observable so nothing can be optimised away. */
  volatile float sink = L[nl - 1].y[0] + L[0].dw[0];
  (void)sink;

  char widths[256];
  size_t used = 0;
  for (int i = 0; i < o.nwidths && used < sizeof(widths); i++)
    used +=
        (size_t)snprintf(widths + used, sizeof(widths) - used, "%s%d", i ? "," : "", o.widths[i]);
  long steps = o.train_rows / o.batch + (o.train_rows % o.batch >= 2 ? 1 : 0);
  long eval_batches = (o.test_rows + o.batch - 1) / o.batch;
  printf("gemm_widths %s\n", widths);
  printf("gemm_batch %d\n", o.batch);
  printf("gemm_threads %d\n", o.threads);
  printf("gemm_openblas %s\n", openblas_get_corename());
  printf("gemm_train_rows %d\n", o.train_rows);
  printf("gemm_train_steps %ld\n", steps);
  printf("gemm_test_rows %d\n", o.test_rows);
  printf("gemm_repeats %d\n", o.repeats);
  printf("gemm_epoch_seconds %.4f\n", best_train);
  printf("gemm_eval_seconds %.4f\n", best_eval);
  printf("gemm_epoch_eval_seconds %.4f\n", best_sum);
  printf("gemm_epoch_gflops %.2f\n", best_train > 0 ? train_flops / best_train * 1e-9 : 0.0);
  printf("gemm_eval_gflops %.2f\n", best_eval > 0 ? eval_flops / best_eval * 1e-9 : 0.0);
  printf("gemm: %s batch %d, %d thread(s) (%s): training epoch (%ld steps) %.3f s "
         "(%.1f GFLOP/s), eval (%ld batches) %.3f s (%.1f GFLOP/s), together %.3f s; "
         "min of %d\n",
         widths, o.batch, o.threads, openblas_get_corename(), steps, best_train,
         best_train > 0 ? train_flops / best_train * 1e-9 : 0.0, eval_batches, best_eval,
         best_eval > 0 ? eval_flops / best_eval * 1e-9 : 0.0, best_sum, o.repeats);

cleanup:
  for (int i = 0; i < nl; i++) {
    free(L[i].w);
    free(L[i].dw);
    free(L[i].y);
    free(L[i].dy);
    free(L[i].dx);
  }
  free(x0);
  return ret;
}
