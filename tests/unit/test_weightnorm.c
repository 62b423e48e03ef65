/* Weight normalization: the (v, g) gradient kernel against finite
 * differences in double, init (g = ||v||: the same function as without
 * weight norm), the data-dependent init (unit pre-activations, layer by
 * layer, deterministic), and parameter averaging in the effective weights.
 * Whole weight-normalized networks are gradient-checked in test_conv.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cu_run.h"
#include "ens/model.h"
#include "ens/rng.h"
#include "nn/weightnorm.h"

static void fill(float *v, size_t n, double mean, double sd, ens_rng *r) {
  for (size_t i = 0; i < n; i++)
    v[i] = (float)(mean + sd * ens_rng_normal(r));
}

/* L(v, g) = sum_ij c_ij w_ij with w = g v / ||v||, in double. */
static double wn_loss(const double *v, const double *g, const double *c, int rows, int fan) {
  double L = 0.0;
  for (int i = 0; i < rows; i++) {
    double ss = 0.0;
    for (int j = 0; j < fan; j++)
      ss += v[i * fan + j] * v[i * fan + j];
    for (int j = 0; j < fan; j++)
      L += c[i * fan + j] * g[i] * v[i * fan + j] / sqrt(ss);
  }
  return L;
}

static void test_kernel_grad(void) {
  enum { R = 5, F = 7 };
  ens_rng r;
  ens_rng_init(&r, 3, 0, ENS_STREAM_TEST, 1);
  float v[R * F], g[R], dw[R * F], w[R * F], dv[R * F], dg[R];
  fill(v, R * F, 0.0, 1.0, &r);
  fill(g, R, 1.0, 0.5, &r);
  fill(dw, R * F, 0.0, 1.0, &r);
  double vd[R * F], gd[R], c[R * F];
  for (int i = 0; i < R * F; i++)
    vd[i] = v[i], c[i] = dw[i];
  for (int i = 0; i < R; i++)
    gd[i] = g[i];
  /* Forward against the double formula. */
  ens_weightnorm_forward(w, v, g, R, F);
  for (int i = 0; i < R; i++) {
    double ss = 0.0;
    for (int j = 0; j < F; j++)
      ss += vd[i * F + j] * vd[i * F + j];
    for (int j = 0; j < F; j++)
      CU_CHECK_CLOSE(w[i * F + j], gd[i] * vd[i * F + j] / sqrt(ss), 1e-6);
  }
  /* dL/dw = c, so the kernel's (dv, dg) must be L's gradient. */
  ens_weightnorm_backward(dv, dg, dw, v, g, R, F);
  const double h = 1e-6;
  double worst = 0.0;
  for (int i = 0; i < R * F; i++) {
    double s = vd[i];
    vd[i] = s + h;
    double lp = wn_loss(vd, gd, c, R, F);
    vd[i] = s - h;
    double lm = wn_loss(vd, gd, c, R, F);
    vd[i] = s;
    double num = (lp - lm) / (2 * h), e = fabs(dv[i] - num) / (1e-3 + fabs(num));
    worst = e > worst ? e : worst;
  }
  for (int i = 0; i < R; i++) {
    double s = gd[i];
    gd[i] = s + h;
    double lp = wn_loss(vd, gd, c, R, F);
    gd[i] = s - h;
    double lm = wn_loss(vd, gd, c, R, F);
    gd[i] = s;
    double num = (lp - lm) / (2 * h), e = fabs(dg[i] - num) / (1e-3 + fabs(num));
    worst = e > worst ? e : worst;
  }
  if (worst > 1e-4)
    fprintf(stderr, "\n  weight-norm gradient: worst relative error %.3g", worst);
  CU_ASSERT(worst <= 1e-4);
  /* A zero row: w = 0 and no gradient, never NaN. */
  memset(v, 0, F * sizeof(float));
  ens_weightnorm_forward(w, v, g, R, F);
  ens_weightnorm_backward(dv, dg, dw, v, g, R, F);
  for (int j = 0; j < F; j++)
    CU_ASSERT(w[j] == 0.0f && dv[j] == 0.0f);
  CU_ASSERT(dg[0] == 0.0f);
}

static void mlp(ens_arch *a, int wn) {
  ens_config c;
  ens_config_defaults(&c);
  c.n_hidden = 2;
  c.hidden[0] = 12;
  c.hidden[1] = 9;
  c.batchnorm = 0;
  c.weightnorm = wn;
  ens_arch_from_config(a, &c, 6, ENS_HEAD_SOFTMAX, 4);
}

/* g = ||v|| at init: the weight-normalized network computes what the plain
 * one computes with the same seed (up to rounding), with v = w. */
static void test_init_unchanged(void) {
  enum { B = 10 };
  ens_arch a0, a1;
  mlp(&a0, 0);
  mlp(&a1, 1);
  ens_model m0, m1;
  CU_ASSERT_FATAL(ens_model_create(&m0, &a0, 0, 2, 1, B) == 0);
  CU_ASSERT_FATAL(ens_model_create(&m1, &a1, 0, 2, 1, B) == 0);
  CU_ASSERT_EQUAL(m1.nparams, m0.nparams + 12 + 9 + 4); /* one g per unit */
  CU_ASSERT(ens_model_has_weightnorm(&m1) && !ens_model_has_weightnorm(&m0));
  CU_ASSERT_FATAL(ens_model_init(&m0, ENS_INIT_HE, 0, 0.1, 5, 2) == 0);
  CU_ASSERT_FATAL(ens_model_init(&m1, ENS_INIT_HE, 0, 0.1, 5, 2) == 0);
  /* v equals the plain weights; g the row norms; b the plain biases. */
  const float *v = m1.params, *w = m0.params;
  CU_ASSERT(memcmp(v, w, 12 * 6 * sizeof(float)) == 0);
  for (int i = 0; i < 12; i++) {
    double ss = 0;
    for (int j = 0; j < 6; j++)
      ss += (double)v[i * 6 + j] * v[i * 6 + j];
    CU_CHECK_CLOSE(v[72 + i], sqrt(ss), 1e-6);
    CU_CHECK_CLOSE(v[84 + i], w[72 + i], 0);
  }
  float x[B * 6];
  ens_rng r;
  ens_rng_init(&r, 1, 0, ENS_STREAM_TEST, 2);
  fill(x, B * 6, 0, 1, &r);
  float p0[B * 4], p1[B * 4];
  ens_model_predict(&m0, p0, x, B);
  ens_model_predict(&m1, p1, x, B);
  for (int i = 0; i < B * 4; i++)
    CU_CHECK_CLOSE(p1[i], p0[i], 1e-5);
  ens_model_free(&m0);
  ens_model_free(&m1);
}

/* Data-dependent init: every weight-normalized layer's pre-activations on
 * the batch have mean 0 and variance 1 per unit; the same batch gives the
 * same bits. */
static void test_data_init(void) {
  enum { B = 32 };
  ens_arch a;
  mlp(&a, 1);
  ens_model m, m2;
  CU_ASSERT_FATAL(ens_model_create(&m, &a, 0, 2, 1, B) == 0);
  CU_ASSERT_FATAL(ens_model_create(&m2, &a, 0, 2, 1, B) == 0);
  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_NORMAL, 0.05, 0, 5, 2) == 0);
  CU_ASSERT_FATAL(ens_model_init(&m2, ENS_INIT_NORMAL, 0.05, 0, 5, 2) == 0);
  float x[B * 6];
  ens_rng r;
  ens_rng_init(&r, 1, 0, ENS_STREAM_TEST, 3);
  fill(x, B * 6, 2.0, 3.0, &r);
  CU_ASSERT_EQUAL(ens_model_wn_data_init(&m, x, B), 3);
  ens_model_forward(&m, x, B, ENS_PASS_EVAL, NULL);
  int checked = 0;
  for (int li = 0; li < m.nlayers; li++) {
    const ens_layer *l = &m.layers[li];
    if (l->kind != ENS_LAYER_WNDENSE)
      continue;
    for (int o = 0; o < l->out; o++) {
      double s = 0, ss = 0;
      for (int n = 0; n < B; n++)
        s += l->y[n * l->out + o];
      for (int n = 0; n < B; n++)
        ss += (l->y[n * l->out + o] - s / B) * (l->y[n * l->out + o] - s / B);
      if (ss == 0) /* a ReLU input that is 0 on the whole batch: left alone */
        continue;
      CU_CHECK_CLOSE(s / B, 0.0, 1e-4);
      CU_CHECK_CLOSE(ss / B, 1.0, 1e-3);
      checked++;
    }
  }
  CU_ASSERT(checked >= 20);
  ens_model_wn_data_init(&m2, x, B);
  CU_ASSERT(memcmp(m.params, m2.params, m.nparams * sizeof(float)) == 0);
  ens_model_free(&m);
  ens_model_free(&m2);
}

/* Parameter averaging of weight-normalized members averages w: the averaged
 * network computes with w = (w_a + w_b) / 2. */
static void test_average_effective(void) {
  enum { B = 6 };
  ens_arch a;
  mlp(&a, 1);
  ens_model ma, mb, avg;
  CU_ASSERT_FATAL(ens_model_create(&ma, &a, 0, 2, 1, B) == 0);
  CU_ASSERT_FATAL(ens_model_create(&mb, &a, 0, 2, 1, B) == 0);
  CU_ASSERT_FATAL(ens_model_create(&avg, &a, 0, 2, 1, B) == 0);
  CU_ASSERT_FATAL(ens_model_init(&ma, ENS_INIT_HE, 0, 0, 5, 1) == 0);
  CU_ASSERT_FATAL(ens_model_init(&mb, ENS_INIT_HE, 0, 0, 5, 2) == 0);
  /* Change g so that w differs from v (v scaled, g random). */
  ens_rng r;
  ens_rng_init(&r, 1, 0, ENS_STREAM_TEST, 4);
  for (int li = 0; li < ma.nlayers; li++) {
    const ens_layer *l = &ma.layers[li];
    if (l->kind != ENS_LAYER_WNDENSE)
      continue;
    size_t nw = (size_t)l->out * l->in;
    fill(ma.params + l->param_off + nw, (size_t)l->out, 2, 0.5, &r);
    for (size_t k = 0; k < nw; k++)
      mb.params[l->param_off + k] *= 3.0f;
  }
  double *sum = calloc(ma.nparams, sizeof(double));
  CU_ASSERT_FATAL(sum != NULL);
  ens_model_wn_add_effective(&avg, sum, ma.params);
  ens_model_wn_add_effective(&avg, sum, mb.params);
  for (size_t p = 0; p < avg.nparams; p++)
    avg.params[p] = (float)(sum[p] / 2);
  ens_model_wn_renormalize(&avg);
  /* Against the effective weights computed by the forward kernel. */
  for (int li = 0; li < avg.nlayers; li++) {
    const ens_layer *l = &avg.layers[li];
    if (l->kind != ENS_LAYER_WNDENSE)
      continue;
    size_t nw = (size_t)l->out * l->in, off = l->param_off;
    float *wa = malloc(nw * sizeof(float)), *wb = malloc(nw * sizeof(float)),
          *w = malloc(nw * sizeof(float));
    ens_weightnorm_forward(wa, ma.params + off, ma.params + off + nw, l->out, l->in);
    ens_weightnorm_forward(wb, mb.params + off, mb.params + off + nw, l->out, l->in);
    ens_weightnorm_forward(w, avg.params + off, avg.params + off + nw, l->out, l->in);
    for (size_t k = 0; k < nw; k++)
      CU_CHECK_CLOSE(w[k], 0.5 * ((double)wa[k] + wb[k]), 1e-5);
    for (int o = 0; o < l->out; o++) /* biases averaged as they are */
      CU_CHECK_CLOSE(avg.params[off + nw + l->out + o],
                     0.5 * ((double)ma.params[off + nw + l->out + o] +
                            mb.params[off + nw + l->out + o]),
                     1e-7);
    free(wa), free(wb), free(w);
  }
  free(sum);
  ens_model_free(&ma);
  ens_model_free(&mb);
  ens_model_free(&avg);
}

int main(void) {
  static const cu_case cases[] = {
      {"weight-norm kernel: forward and (v, g) gradient in double", test_kernel_grad},
      {"init g = ||v||: the function of the plain network", test_init_unchanged},
      {"data-dependent init: unit pre-activations, deterministic", test_data_init},
      {"params averaging averages the effective weights", test_average_effective},
      {NULL, NULL},
  };
  return cu_run_suite("weightnorm", cases);
}
