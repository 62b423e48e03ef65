/* Unit tests of src/infer/fast.c, libens's throughput path: compiled MLPs
 * agree with the exact eval pass (ens_model_forward) to float rounding, give
 * the same bits at every kernel level the CPU runs and for any grouping of
 * rows (one at a time, all at once, with zero inputs skipped), fold the input
 * standardization only when it is safe, and refuse what they cannot run. */
#include "infer/fast.h"

#include "cu_run.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ens/model.h"

/* A small deterministic generator (no RNG stream of ens is needed here). */
static double uniform(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(*s >> 11) / 9007199254740992.0;
}

/* A 3-block MLP (dense, batch norm, ReLU, dropout) x 2 + output, with
 * widths that are not multiples of the panel width, random weights, batch
 * norm parameters and running statistics away from their initial values. */
static void make_model(ens_model *m, int batchnorm, int weightnorm, uint64_t seed) {
  enum { IN = 37, C = 7 };
  ens_arch a = {.in = IN, .width = C, .outputs = C, .n_hidden = 2, .hidden = {45, 29},
                .batchnorm = batchnorm, .dropout = 0.2f, .weightnorm = weightnorm};
  CU_ASSERT_FATAL(ens_model_create(m, &a, 0, 2, 1, 16) == 0);
  uint64_t s = seed;
  for (size_t i = 0; i < m->nparams; i++)
    m->params[i] = (float)(uniform(&s) - 0.5);
  for (int i = 0; i < m->nlayers; i++) {
    const ens_layer *l = &m->layers[i];
    if (l->kind != ENS_LAYER_BATCHNORM)
      continue;
    float *p = m->params + l->param_off, *st = m->stats + l->stat_off;
    for (int j = 0; j < l->out; j++) {
      p[j] = (float)(0.5 + uniform(&s));            /* gamma */
      st[j] = (float)(uniform(&s) - 0.5);           /* running mean */
      st[l->out + j] = (float)(0.2 + uniform(&s));  /* running var */
    }
  }
}

/* n rows of IN inputs, about a third of them exactly zero. */
static float *make_rows(int n, int d, uint64_t seed) {
  float *x = malloc((size_t)n * d * sizeof(float));
  uint64_t s = seed;
  for (int i = 0; i < n * d; i++) {
    double u = uniform(&s);
    x[i] = u < 0.33 ? 0.0f : (float)(4.0 * uniform(&s) - 1.0);
  }
  return x;
}

static int max_level(void) { return ens_fast_level(); }

/* Output-layer rows of the exact eval pass, one batch of n rows. */
static void exact_rows(ens_model *m, float *z, const float *x, int n) {
  for (int i = 0; i < n; i += m->batch_max) {
    const int b = n - i < m->batch_max ? n - i : m->batch_max;
    const float *y = ens_model_forward(m, x + (size_t)i * m->in, b, ENS_PASS_EVAL, NULL);
    memcpy(z + (size_t)i * m->out, y, (size_t)b * m->out * sizeof(float));
  }
}

static float *fast_rows(const ens_fast_net *f, const float *x, int n, int level, int step) {
  float *z = malloc((size_t)n * f->out * sizeof(float));
  float *sc = malloc(ens_fast_scratch(f, step) * sizeof(float));
  int *isc = malloc(ens_fast_iscratch(f, step) * sizeof(int));
  for (int r = 0; r < n; r += step) {
    const int b = n - r < step ? n - r : step;
    ens_fast_forward(f, z + (size_t)r * f->out, x + (size_t)r * f->in, f->in, b, sc, isc, level);
  }
  free(sc);
  free(isc);
  return z;
}

/* Largest |a - b| / (1 + |b|). */
static double max_rel(const float *a, const float *b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
    worst = e > worst ? e : worst;
  }
  return worst;
}

static void test_matches_exact_and_bits(void) {
  for (int bn = 0; bn <= 1; bn++) {
    ens_model m;
    make_model(&m, bn, 0, 11 + (uint64_t)bn);
    ens_fast_net f;
    CU_ASSERT_FATAL(ens_fast_net_build(&f, &m, NULL, NULL) == 0);
    CU_ASSERT_EQUAL(f.nlayers, 3);
    CU_ASSERT_EQUAL(f.raw_input, 0);
    enum { N = 301 }; /* more than one block of rows, not a multiple of any group */
    float *x = make_rows(N, m.in, 5), *ref = malloc((size_t)N * m.out * sizeof(float));
    exact_rows(&m, ref, x, N);
    float *all = fast_rows(&f, x, N, ENS_FAST_AUTO, N);
    const double err = max_rel(all, ref, (size_t)N * m.out);
    if (err > 1e-5)
      fprintf(stderr, "\n  batchnorm %d: fast vs exact %.3g\n", bn, err);
    CU_ASSERT(err <= 1e-5);
    /* Same bits for rows one at a time, in odd groups, at every level. */
    const int steps[] = {1, 2, 7, 144, 200};
    for (int level = 0; level <= max_level(); level++)
      for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
        float *z = fast_rows(&f, x, N, level, steps[s]);
        int same = !memcmp(z, all, (size_t)N * m.out * sizeof(float));
        if (!same)
          fprintf(stderr, "\n  batchnorm %d: level %d, %d rows per call: other bits\n", bn, level,
                  steps[s]);
        CU_ASSERT(same);
        free(z);
      }
    free(all);
    free(ref);
    free(x);
    ens_fast_net_free(&f);
    ens_model_free(&m);
  }
}

/* With a standardization folded in, raw rows give the standardized rows'
 * outputs to float rounding; a feature whose mean is large against its
 * spread keeps the standardization outside. */
static void test_standardization_fold(void) {
  ens_model m;
  make_model(&m, 1, 0, 3);
  const int d = m.in;
  float *mu = malloc((size_t)d * sizeof(float)), *sd = malloc((size_t)d * sizeof(float));
  uint64_t s = 9;
  for (int k = 0; k < d; k++) {
    mu[k] = (float)(uniform(&s) * 2.0 - 0.5);
    sd[k] = (float)(0.3 + uniform(&s));
  }
  ens_fast_net f;
  CU_ASSERT_FATAL(ens_fast_net_build(&f, &m, mu, sd) == 0);
  CU_ASSERT_EQUAL(f.raw_input, 1);
  enum { N = 50 };
  float *x = make_rows(N, d, 8), *xs = malloc((size_t)N * d * sizeof(float));
  for (int i = 0; i < N * d; i++)
    xs[i] = (x[i] - mu[i % d]) / sd[i % d];
  float *ref = malloc((size_t)N * m.out * sizeof(float));
  exact_rows(&m, ref, xs, N);
  float *z = fast_rows(&f, x, N, ENS_FAST_AUTO, N);
  const double err = max_rel(z, ref, (size_t)N * m.out);
  if (err > 1e-5)
    fprintf(stderr, "\n  folded standardization vs exact %.3g\n", err);
  CU_ASSERT(err <= 1e-5);
  free(z);
  ens_fast_net_free(&f);
  mu[3] = 100.0f; /* |mean| > 8 std */
  sd[3] = 1.0f;
  CU_ASSERT_FATAL(ens_fast_net_build(&f, &m, mu, sd) == 0);
  CU_ASSERT_EQUAL(f.raw_input, 0);
  ens_fast_net_free(&f);
  sd[3] = 0.0f;
  CU_ASSERT_FATAL(ens_fast_net_build(&f, &m, mu, sd) == 0);
  CU_ASSERT_EQUAL(f.raw_input, 0);
  ens_fast_net_free(&f);
  free(ref);
  free(xs);
  free(x);
  free(mu);
  free(sd);
  ens_model_free(&m);
}

/* Weight normalization and non-finite weights stay on the exact path. */
static void test_refused(void) {
  ens_model m;
  ens_fast_net f;
  make_model(&m, 1, 1, 4);
  CU_ASSERT_EQUAL(ens_fast_net_build(&f, &m, NULL, NULL), 1);
  CU_ASSERT_PTR_NULL(f.layers);
  ens_model_free(&m);
  make_model(&m, 0, 0, 4);
  m.params[5] = INFINITY;
  CU_ASSERT_EQUAL(ens_fast_net_build(&f, &m, NULL, NULL), 1);
  CU_ASSERT_PTR_NULL(f.layers);
  ens_model_free(&m);
}

int main(void) {
  const cu_case cases[] = {{"fast vs exact; same bits at every level and grouping",
                            test_matches_exact_and_bits},
                           {"standardization folded when safe", test_standardization_fold},
                           {"what the fast path refuses", test_refused},
                           {NULL, NULL}};
  return cu_run_suite("infer_fast", cases);
}
