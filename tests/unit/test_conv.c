/* Unit tests of the image layers (src/nn/conv.c, pool.c, batchnorm2d.c and
 * their rows in src/nn/layers.c): finite-difference gradient checks in double
 * of every kernel and of whole conv networks, shape inference and its
 * errors, conv init statistics, and planted errors that the checks must
 * catch.
 *
 * As in test_nn.c, the library's float analytic gradient is compared with
 * central differences of a double-precision reference (itself checked against
 * the library's forward pass); 1e-3 relative separates float rounding from a
 * wrong formula. ENS_TEST_VERBOSE=1 prints every measured error. */
#include "ens/conv.h"
#include "ens/error.h"
#include "ens/model.h"
#include "ens/optim.h"
#include "ens/nn.h"

#include "cu_run.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "nn/winograd.h"

/* ------------------------------------------------ double reference kernels */

/* y (B, O, Ho, Wo) of a convolution, straight from the definition. */
static void conv_ref(double *y, const double *x, const double *w, const double *b,
                     const ens_conv_geom *g, int B) {
  for (int n = 0; n < B; n++)
    for (int o = 0; o < g->O; o++)
      for (int oh = 0; oh < g->Ho; oh++)
        for (int ow = 0; ow < g->Wo; ow++) {
          double s = b[o];
          for (int c = 0; c < g->C; c++)
            for (int ki = 0; ki < g->k; ki++)
              for (int kj = 0; kj < g->k; kj++) {
                int ih = oh * g->stride - g->pad + ki, iw = ow * g->stride - g->pad + kj;
                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                  continue;
                s += x[((n * g->C + c) * g->H + ih) * g->W + iw] *
                     w[((o * g->C + c) * g->k + ki) * g->k + kj];
              }
          y[((n * g->O + o) * g->Ho + oh) * g->Wo + ow] = s;
        }
}

/* Batch norm over channels, batch statistics (biased variance). */
static void bn2d_ref(double *y, const double *x, const double *gamma, const double *beta, int B,
                     int C, int P, double eps) {
  for (int c = 0; c < C; c++) {
    double mean = 0.0, var = 0.0;
    for (int n = 0; n < B; n++)
      for (int p = 0; p < P; p++)
        mean += x[(n * C + c) * P + p];
    mean /= (double)B * P;
    for (int n = 0; n < B; n++)
      for (int p = 0; p < P; p++) {
        double e = x[(n * C + c) * P + p] - mean;
        var += e * e;
      }
    var /= (double)B * P;
    for (int n = 0; n < B; n++)
      for (int p = 0; p < P; p++)
        y[(n * C + c) * P + p] =
            gamma[c] * (x[(n * C + c) * P + p] - mean) / sqrt(var + eps) + beta[c];
  }
}

/* Max (is_max) or average pooling of k x k windows every stride pixels. */
static void pool_ref(double *y, const double *x, const ens_conv_geom *g, int B, int is_max) {
  for (int pl = 0; pl < B * g->C; pl++)
    for (int oh = 0; oh < g->Ho; oh++)
      for (int ow = 0; ow < g->Wo; ow++) {
        double m = is_max ? -INFINITY : 0.0;
        for (int ki = 0; ki < g->k; ki++)
          for (int kj = 0; kj < g->k; kj++) {
            double v = x[(pl * g->H + oh * g->stride + ki) * g->W + ow * g->stride + kj];
            m = is_max ? (v > m ? v : m) : m + v;
          }
        y[(pl * g->Ho + oh) * g->Wo + ow] = is_max ? m : m / (g->k * g->k);
      }
}

/* ------------------------------------------------------------ convolution */

typedef struct {
  ens_conv_geom g;
  int B;
  double *x, *w, *b, *c; /* the loss is sum(c * y) */
  double *y;
} conv_ctx;

static double conv_loss(void *ctx) {
  conv_ctx *d = ctx;
  conv_ref(d->y, d->x, d->w, d->b, &d->g, d->B);
  size_t ny = (size_t)d->B * d->g.O * d->g.Ho * d->g.Wo;
  double s = 0.0;
  for (size_t i = 0; i < ny; i++)
    s += d->c[i] * d->y[i];
  return s;
}

/* Images per GEMM in conv_case (0: the kernel's own choice). */
static int conv_group;

/* One conv gradient check; `plant` = 1 runs the backward pass with a wrong
 * padding (a planted error) and returns the error instead of asserting. */
static double conv_case(int B, int C, int H, int W, int O, int k, int stride, int pad, uint32_t key,
                        int plant) {
  ens_conv_geom g = {.C = C, .H = H, .W = W, .O = O, .k = k, .stride = stride, .pad = pad,
                     .group = conv_group};
  CU_ASSERT_FATAL(ens_conv_geom_init(&g) == 0);
  size_t nx = (size_t)B * C * H * W, nw = (size_t)O * C * k * k;
  size_t ny = (size_t)B * O * g.Ho * g.Wo;
  ens_rng r;
  ens_rng_init(&r, 21, 0, ENS_STREAM_TEST, key);
  float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float));
  float *b = malloc(O * sizeof(float)), *c = malloc(ny * sizeof(float));
  float *y = malloc(ny * sizeof(float)), *work = malloc(ens_conv2d_nwork(&g, B) * sizeof(float));
  float *dx = malloc(nx * sizeof(float)), *dw = malloc(nw * sizeof(float));
  float *db = malloc(O * sizeof(float));
  CU_ASSERT_FATAL(x && w && b && c && y && work && dx && dw && db);
  fill_normal(x, nx, 0.0, 1.0, &r);
  fill_normal(w, nw, 0.0, 1.0, &r);
  fill_normal(b, O, 0.0, 1.0, &r);
  fill_normal(c, ny, 0.0, 1.0, &r);
  conv_ctx d = {g,
                B,
                to_double(x, nx),
                to_double(w, nw),
                to_double(b, O),
                to_double(c, ny),
                malloc(ny * sizeof(double))};
  CU_ASSERT_FATAL(d.x && d.w && d.b && d.c && d.y);
  ens_conv2d_forward(y, work, x, w, b, &g, B);
  conv_loss(&d);
  CU_CHECK_CLOSE(max_diff(y, d.y, ny), 0.0, 1e-4);

  ens_conv_geom gb = g;
  if (plant) /* a col2im/im2col that disagrees with the forward pass */
    gb.pad = g.pad ? g.pad - 1 : 1, ens_conv_geom_init(&gb);
  memset(dw, 0x7f, nw * sizeof(float)); /* garbage: the backward overwrites */
  ens_conv2d_backward(dx, dw, db, work, c, x, w, &gb, B);
  double *gx = malloc(nx * sizeof(double)), *gw = malloc(nw * sizeof(double));
  double gbias[64];
  CU_ASSERT_FATAL(gx && gw && O <= 64);
  numeric_grad(gx, d.x, nx, conv_loss, &d);
  numeric_grad(gw, d.w, nw, conv_loss, &d);
  numeric_grad(gbias, d.b, O, conv_loss, &d);
  double err = 0.0;
  if (plant) {
    size_t at;
    err = fmax(grad_error(dx, gx, nx, 0.0, &at), grad_error(dw, gw, nw, 0.0, &at));
  } else {
    char name[96];
    snprintf(name, sizeof name, "conv dx (C%d %dx%d O%d k%d s%d p%d)", C, H, W, O, k, stride, pad);
    check_grad(name, dx, gx, nx, GRAD_TOL, 0.0);
    snprintf(name, sizeof name, "conv dw (C%d %dx%d O%d k%d s%d p%d)", C, H, W, O, k, stride, pad);
    check_grad(name, dw, gw, nw, GRAD_TOL, 0.0);
    check_grad("conv db", db, gbias, O, GRAD_TOL, 0.0);
    /* dx = NULL gives the same dw and db. */
    float *dw2 = malloc(nw * sizeof(float)), db2[64];
    CU_ASSERT_FATAL(dw2 != NULL);
    ens_conv2d_backward(NULL, dw2, db2, work, c, x, w, &g, B);
    CU_ASSERT(memcmp(dw, dw2, nw * sizeof(float)) == 0);
    CU_ASSERT(memcmp(db, db2, O * sizeof(float)) == 0);
    free(dw2);
  }
  free(x), free(w), free(b), free(c), free(y), free(work), free(dx), free(dw), free(db);
  free(d.x), free(d.w), free(d.b), free(d.c), free(d.y), free(gx), free(gw);
  return err;
}

static void test_conv_grad(void) {
  conv_case(3, 2, 5, 6, 3, 3, 1, 1, 1, 0); /* same padding, non-square */
  conv_case(2, 3, 7, 7, 4, 3, 2, 1, 2, 0); /* stride 2 */
  conv_case(2, 2, 6, 5, 2, 2, 2, 0, 3, 0); /* stride = k, no padding */
  conv_case(2, 1, 5, 5, 3, 5, 1, 2, 4, 0); /* kernel as large as the input */
  conv_case(2, 2, 8, 7, 3, 3, 3, 2, 5, 0); /* stride 3, pad 2 (floor) */
  conv_case(1, 1, 4, 4, 1, 1, 1, 0, 6, 0); /* 1x1 */
}

static void test_conv_planted(void) {
  /* A backward pass that disagrees with the forward's padding must fail. */
  double err = conv_case(2, 2, 5, 5, 2, 3, 1, 1, 7, 1);
  if (getenv("ENS_TEST_VERBOSE"))
    fprintf(stderr, "\n  planted conv error: %.3g", err);
  CU_ASSERT(err > 100 * GRAD_TOL);
}

/* im2col then col2im is the adjoint pair: <col2im(c), x> = <c, im2col(x)>. */
static void test_im2col_adjoint(void) {
  ens_conv_geom g = {.C = 2, .H = 6, .W = 5, .O = 1, .k = 3, .stride = 2, .pad = 1};
  CU_ASSERT_FATAL(ens_conv_geom_init(&g) == 0);
  enum { B = 2 };
  size_t nx = (size_t)B * 2 * 6 * 5, nc = (size_t)2 * 9 * B * g.Ho * g.Wo;
  float *x = malloc(nx * sizeof(float)), *col = malloc(nc * sizeof(float));
  float *c = malloc(nc * sizeof(float)), *dx = malloc(nx * sizeof(float));
  CU_ASSERT_FATAL(x && col && c && dx);
  ens_rng r;
  ens_rng_init(&r, 5, 0, ENS_STREAM_TEST, 99);
  fill_normal(x, nx, 0.0, 1.0, &r);
  fill_normal(c, nc, 0.0, 1.0, &r);
  ens_im2col(col, x, &g, B);
  ens_col2im(dx, c, &g, B);
  double a = 0.0, b = 0.0;
  for (size_t i = 0; i < nc; i++)
    a += (double)c[i] * col[i];
  for (size_t i = 0; i < nx; i++)
    b += (double)dx[i] * x[i];
  CU_CHECK_CLOSE(a, b, 1e-4 * (1.0 + fabs(a)));
  free(x), free(col), free(c), free(dx);
}

/* im2col against its definition, entry by entry, and ens_col2im_scratch
 * against ens_col2im to the bit, on "same" convolutions (the contiguous-run
 * path: 3x3 pad 1, 5x5 pad 2 on non-square planes, 1x1) and others (the
 * row path: stride 2, pad 0, a 2x2 kernel). */
static void test_im2col_paths(void) {
  const int geo[][5] = {/* H, W, k, stride, pad */
                        {7, 5, 3, 1, 1}, {6, 9, 5, 1, 2}, {4, 3, 1, 1, 0}, {3, 2, 3, 1, 1},
                        {7, 6, 3, 2, 1}, {6, 6, 3, 1, 0}, {5, 4, 2, 1, 1}};
  for (size_t t = 0; t < sizeof geo / sizeof geo[0]; t++) {
    ens_conv_geom g = {.C = 2, .H = geo[t][0], .W = geo[t][1], .O = 1, .k = geo[t][2],
                       .stride = geo[t][3], .pad = geo[t][4]};
    CU_ASSERT_FATAL(ens_conv_geom_init(&g) == 0);
    enum { B = 3 };
    const int k = g.k, P = g.Ho * g.Wo;
    size_t nx = (size_t)B * g.C * g.H * g.W, nc = (size_t)g.C * k * k * B * P;
    float *x = malloc(nx * sizeof(float)), *col = malloc(nc * sizeof(float));
    float *c = malloc(nc * sizeof(float)), *c2 = malloc(nc * sizeof(float));
    float *d1 = malloc(nx * sizeof(float)), *d2 = malloc(nx * sizeof(float));
    CU_ASSERT_FATAL(x && col && c && c2 && d1 && d2);
    ens_rng r;
    ens_rng_init(&r, 6, 0, ENS_STREAM_TEST, (uint32_t)t);
    fill_normal(x, nx, 0.0, 1.0, &r);
    fill_normal(c, nc, 0.0, 1.0, &r);
    for (size_t i = 0; i < nc; i++)
      col[i] = NAN;
    ens_im2col(col, x, &g, B);
    int bad = 0;
    for (int ch = 0; ch < g.C; ch++)
      for (int ki = 0; ki < k; ki++)
        for (int kj = 0; kj < k; kj++)
          for (int n = 0; n < B; n++)
            for (int oh = 0; oh < g.Ho; oh++)
              for (int ow = 0; ow < g.Wo; ow++) {
                int ih = oh * g.stride - g.pad + ki, iw = ow * g.stride - g.pad + kj;
                float want = ih < 0 || ih >= g.H || iw < 0 || iw >= g.W
                                 ? 0.0f
                                 : x[(((size_t)n * g.C + ch) * g.H + ih) * g.W + iw];
                size_t at = ((size_t)(ch * k + ki) * k + kj) * B * P + (size_t)n * P +
                            (size_t)oh * g.Wo + ow;
                bad += memcmp(&col[at], &want, sizeof want) != 0;
              }
    CU_ASSERT(bad == 0);
    memcpy(c2, c, nc * sizeof(float));
    ens_col2im(d1, c, &g, B);
    ens_col2im_scratch(d2, c2, &g, B);
    CU_ASSERT(memcmp(d1, d2, nx * sizeof(float)) == 0);
    free(x), free(col), free(c), free(c2), free(d1), free(d2);
  }
}

/* ---------------------------------------------------- batch norm (channels) */

typedef struct {
  int B, C, P;
  double eps;
  double *x, *gamma, *beta, *c, *y;
} bn2d_ctx;

static double bn2d_loss(void *ctx) {
  bn2d_ctx *d = ctx;
  bn2d_ref(d->y, d->x, d->gamma, d->beta, d->B, d->C, d->P, d->eps);
  double s = 0.0;
  for (int i = 0; i < d->B * d->C * d->P; i++)
    s += d->c[i] * d->y[i];
  return s;
}

static void test_batchnorm2d_grad(void) {
  enum { B = 3, C = 4, P = 6, N = B * C * P };
  const float eps = 1e-5f;
  ens_rng r;
  ens_rng_init(&r, 31, 0, ENS_STREAM_TEST, 31);
  float x[N], gamma[C], beta[C], c[N], y[N], xhat[N], invstd[C];
  float rm[C] = {0}, rv[C] = {1, 1, 1, 1};
  fill_normal(x, N, 2.0, 3.0, &r);
  fill_normal(gamma, C, 1.0, 0.5, &r);
  fill_normal(beta, C, 0.0, 1.0, &r);
  fill_normal(c, N, 0.0, 1.0, &r);
  double yd[N];
  bn2d_ctx d = {
      B, C, P, eps, to_double(x, N), to_double(gamma, C), to_double(beta, C), to_double(c, N), yd};
  CU_ASSERT_FATAL(d.x && d.gamma && d.beta && d.c);
  ens_batchnorm2d_forward_train(y, xhat, invstd, rm, rv, x, gamma, beta, B, C, P, 0.1f, eps);
  bn2d_loss(&d);
  CU_CHECK_CLOSE(max_diff(y, yd, N), 0.0, 1e-5);
  /* Running statistics moved toward the channel mean and unbiased var. */
  for (int ch = 0; ch < C; ch++) {
    double mean = 0.0, var = 0.0;
    for (int n = 0; n < B; n++)
      for (int p = 0; p < P; p++)
        mean += x[(n * C + ch) * P + p];
    mean /= B * P;
    for (int n = 0; n < B; n++)
      for (int p = 0; p < P; p++)
        var += (x[(n * C + ch) * P + p] - mean) * (x[(n * C + ch) * P + p] - mean);
    var /= B * P - 1;
    CU_CHECK_CLOSE(rm[ch], 0.1 * mean, 1e-5);
    CU_CHECK_CLOSE(rv[ch], 0.9 + 0.1 * var, 1e-5);
  }
  float dx[N], dgamma[C], dbeta[C];
  ens_batchnorm2d_backward(dx, dgamma, dbeta, c, xhat, gamma, invstd, B, C, P);
  double gx[N], gg[C], gb[C];
  numeric_grad(gx, d.x, N, bn2d_loss, &d);
  numeric_grad(gg, d.gamma, C, bn2d_loss, &d);
  numeric_grad(gb, d.beta, C, bn2d_loss, &d);
  check_grad("batchnorm2d dx", dx, gx, N, GRAD_TOL, 0.0);
  check_grad("batchnorm2d dgamma", dgamma, gg, C, GRAD_TOL, 0.0);
  check_grad("batchnorm2d dbeta", dbeta, gb, C, GRAD_TOL, 0.0);
  /* dx may alias dy. */
  float inplace[N], dg2[C], db2[C];
  memcpy(inplace, c, sizeof(c));
  ens_batchnorm2d_backward(inplace, dg2, db2, inplace, xhat, gamma, invstd, B, C, P);
  CU_ASSERT(memcmp(inplace, dx, sizeof(dx)) == 0);
  /* Eval with the running statistics. */
  float ye[N];
  ens_batchnorm2d_forward_eval(ye, x, gamma, beta, rm, rv, B, C, P, eps);
  double worst = 0.0;
  for (int i = 0; i < N; i++) {
    int ch = (i / P) % C;
    double want = gamma[ch] * (x[i] - rm[ch]) / sqrt((double)rv[ch] + eps) + beta[ch];
    worst = fmax(worst, fabs(ye[i] - want));
  }
  CU_CHECK_CLOSE(worst, 0.0, 1e-5);
  free(d.x), free(d.gamma), free(d.beta), free(d.c);
}

/* ---------------------------------------------------------------- pooling */

typedef struct {
  ens_conv_geom g;
  int B, kind; /* 0 max, 1 avg, 2 global average */
  double *x, *c, *y;
} pool_ctx;

static double pool_loss(void *ctx) {
  pool_ctx *d = ctx;
  size_t ny;
  if (d->kind == 2) {
    int P = d->g.H * d->g.W;
    ny = (size_t)d->B * d->g.C;
    for (size_t pl = 0; pl < ny; pl++) {
      double s = 0.0;
      for (int p = 0; p < P; p++)
        s += d->x[pl * P + p];
      d->y[pl] = s / P;
    }
  } else {
    pool_ref(d->y, d->x, &d->g, d->B, d->kind == 0);
    ny = (size_t)d->B * d->g.C * d->g.Ho * d->g.Wo;
  }
  double s = 0.0;
  for (size_t i = 0; i < ny; i++)
    s += d->c[i] * d->y[i];
  return s;
}

static void pool_case(int kind, int B, int C, int H, int W, int k, int stride, uint32_t key) {
  ens_conv_geom g = {.C = C, .H = H, .W = W, .O = C, .k = k, .stride = stride, .pad = 0};
  CU_ASSERT_FATAL(ens_conv_geom_init(&g) == 0);
  size_t nx = (size_t)B * C * H * W;
  size_t ny = kind == 2 ? (size_t)B * C : (size_t)B * C * g.Ho * g.Wo;
  ens_rng r;
  ens_rng_init(&r, 41, 0, ENS_STREAM_TEST, key);
  float *x = malloc(nx * sizeof(float)), *c = malloc(ny * sizeof(float));
  float *y = malloc(ny * sizeof(float)), *am = malloc(ny * sizeof(float));
  float *dx = malloc(nx * sizeof(float));
  CU_ASSERT_FATAL(x && c && y && am && dx);
  /* Distinct values at least 1e-2 apart: no ties within the FD step. */
  for (size_t i = 0; i < nx; i++)
    x[i] = (float)(0.01 * (double)((i * 7919) % nx) - 0.3);
  fill_normal(c, ny, 0.0, 1.0, &r);
  pool_ctx d = {g, B, kind, to_double(x, nx), to_double(c, ny), malloc(ny * sizeof(double))};
  CU_ASSERT_FATAL(d.x && d.c && d.y);
  if (kind == 0)
    ens_maxpool_forward(y, am, x, &g, B);
  else if (kind == 1)
    ens_avgpool_forward(y, x, &g, B);
  else
    ens_gap_forward(y, x, B, C, H * W);
  pool_loss(&d);
  CU_CHECK_CLOSE(max_diff(y, d.y, ny), 0.0, 1e-5);
  memset(dx, 0x7f, nx * sizeof(float));
  if (kind == 0)
    ens_maxpool_backward(dx, c, am, &g, B);
  else if (kind == 1)
    ens_avgpool_backward(dx, c, &g, B);
  else
    ens_gap_backward(dx, c, B, C, H * W);
  double *gx = malloc(nx * sizeof(double));
  CU_ASSERT_FATAL(gx != NULL);
  numeric_grad(gx, d.x, nx, pool_loss, &d);
  static const char *names[] = {"maxpool dx", "avgpool dx", "global average pool dx"};
  check_grad(names[kind], dx, gx, nx, GRAD_TOL, 0.0);
  free(x), free(c), free(y), free(am), free(dx), free(d.x), free(d.c), free(d.y), free(gx);
}

static void test_pool_grad(void) {
  pool_case(0, 2, 3, 4, 6, 2, 2, 1); /* max 2x2 */
  pool_case(0, 2, 2, 7, 7, 3, 2, 2); /* max 3x3 every 2 (overlapping) */
  pool_case(1, 2, 3, 4, 6, 2, 2, 3); /* average 2x2 */
  pool_case(1, 2, 2, 5, 5, 3, 1, 4); /* average 3x3 every 1 (overlapping) */
  pool_case(2, 3, 4, 3, 5, 1, 1, 5); /* global average */
}

/* ---------------------------------------------------------- whole network */

/* A network of image layers in double: the library's layer table walked with
 * the reference kernels, dropout masks taken from the library's last
 * training pass. Returns the mean softmax cross-entropy. */
typedef struct {
  const ens_model *m;
  double *p, *x;
  const int32_t *y;
  int batch;
  float **masks; /* per layer, dropout only */
  double *buf[2];
} net_ctx;

static double net_loss(void *ctx) {
  net_ctx *d = ctx;
  const ens_model *m = d->m;
  const int B = d->batch;
  const double *cur = d->x;
  int which = 0;
  for (int li = 0; li < m->nlayers; li++) {
    const ens_layer *l = &m->layers[li];
    const double *p = d->p + l->param_off;
    double *out = d->buf[which];
    size_t n = (size_t)B * l->out;
    ens_conv_geom g = {.C = l->sin.c,
                       .H = l->sin.h,
                       .W = l->sin.w,
                       .O = l->sout.c,
                       .k = l->spec.k,
                       .stride = l->spec.stride,
                       .pad = l->spec.pad};
    if (l->sin.image)
      ens_conv_geom_init(&g);
    switch (l->kind) {
    case ENS_LAYER_DENSE:
      for (int i = 0; i < B; i++)
        for (int o = 0; o < l->out; o++) {
          double s = p[(size_t)l->out * l->in + o];
          for (int k = 0; k < l->in; k++)
            s += cur[i * l->in + k] * p[(size_t)o * l->in + k];
          out[i * l->out + o] = s;
        }
      break;
    case ENS_LAYER_CONV:
      conv_ref(out, cur, p, p + (size_t)g.O * g.C * g.k * g.k, &g, B);
      break;
    case ENS_LAYER_WNDENSE:
    case ENS_LAYER_WNCONV: {
      /* Weight norm: w = g v / ||v|| per output unit (v, g, b), in double. */
      int rows = l->kind == ENS_LAYER_WNCONV ? g.O : l->out;
      int fan = l->kind == ENS_LAYER_WNCONV ? g.C * g.k * g.k : l->in;
      double *w = malloc((size_t)rows * fan * sizeof(double));
      const double *gg = p + (size_t)rows * fan, *b = gg + rows;
      for (int o = 0; o < rows; o++) {
        double ss = 0.0;
        for (int k = 0; k < fan; k++)
          ss += p[(size_t)o * fan + k] * p[(size_t)o * fan + k];
        for (int k = 0; k < fan; k++)
          w[(size_t)o * fan + k] = gg[o] * p[(size_t)o * fan + k] / sqrt(ss);
      }
      if (l->kind == ENS_LAYER_WNCONV)
        conv_ref(out, cur, w, b, &g, B);
      else
        for (int i = 0; i < B; i++)
          for (int o = 0; o < l->out; o++) {
            double s = b[o];
            for (int k = 0; k < l->in; k++)
              s += cur[i * l->in + k] * w[(size_t)o * l->in + k];
            out[i * l->out + o] = s;
          }
      free(w);
      break;
    }
    case ENS_LAYER_BATCHNORM: {
      int C = l->sout.c, P = l->sout.h * l->sout.w;
      bn2d_ref(out, cur, p, p + C, B, C, P, (double)m->bn_eps);
      break;
    }
    case ENS_LAYER_RELU:
      for (size_t i = 0; i < n; i++)
        out[i] = cur[i] > 0.0 ? cur[i] : 0.0;
      break;
    case ENS_LAYER_DROPOUT:
      for (size_t i = 0; i < n; i++)
        out[i] = cur[i] * d->masks[li][i];
      break;
    case ENS_LAYER_MAXPOOL:
    case ENS_LAYER_AVGPOOL:
      pool_ref(out, cur, &g, B, l->kind == ENS_LAYER_MAXPOOL);
      break;
    case ENS_LAYER_GAP: {
      int P = l->sin.h * l->sin.w;
      for (size_t pl = 0; pl < n; pl++) {
        double s = 0.0;
        for (int q = 0; q < P; q++)
          s += cur[pl * P + q];
        out[pl] = s / P;
      }
      break;
    }
    case ENS_LAYER_FLATTEN:
      memcpy(out, cur, n * sizeof(double));
      break;
    case ENS_LAYER_KIND_COUNT:
      break;
    }
    cur = out;
    which = 1 - which;
  }
  /* Mean softmax cross-entropy (log-sum-exp). */
  const int C = m->out;
  double loss = 0.0;
  for (int i = 0; i < B; i++) {
    double mx = -INFINITY, s = 0.0;
    for (int k = 0; k < C; k++)
      mx = fmax(mx, cur[i * C + k]);
    for (int k = 0; k < C; k++)
      s += exp(cur[i * C + k] - mx);
    loss += mx + log(s) - cur[i * C + d->y[i]];
  }
  return loss / B;
}

static ens_layer_spec L(ens_layer_kind kind, int n, int k, int stride, int pad, float p,
                        int block) {
  return (ens_layer_spec){
      .kind = kind, .n = n, .k = k, .stride = stride, .pad = pad, .p = p, .block = block};
}

/* Network 1: conv-bn-relu-maxpool, conv-relu-dropout, flatten, dense-bn-relu,
 * dense. Network 2: strided conv-bn-relu, avgpool, global average pool,
 * dense. */
static void net_arch(ens_arch *a, int which) {
  memset(a, 0, sizeof(*a));
  a->head = ENS_HEAD_SOFTMAX;
  a->width = a->outputs = 3;
  a->in_shape = (ens_shape){.c = 2, .h = 7, .w = 7, .image = 1};
  a->in = 2 * 7 * 7;
  int n = 0;
  if (which == 0 || which == 2) {
    a->spec[n++] = L(ENS_LAYER_CONV, 4, 3, 1, 1, 0, 0);
    a->spec[n++] = L(ENS_LAYER_BATCHNORM, 0, 0, 0, 0, 0, 0);
    a->spec[n++] = L(ENS_LAYER_RELU, 0, 0, 0, 0, 0, 0);
    a->spec[n++] = L(ENS_LAYER_MAXPOOL, 0, 3, 2, 0, 0, 0);
    a->spec[n++] = L(ENS_LAYER_CONV, 5, 2, 1, 0, 0, 1);
    a->spec[n++] = L(ENS_LAYER_RELU, 0, 0, 0, 0, 0, 1);
    a->spec[n++] = L(ENS_LAYER_DROPOUT, 0, 0, 0, 0, 0.25f, 1);
    a->spec[n++] = L(ENS_LAYER_FLATTEN, 0, 0, 0, 0, 0, 1);
    a->spec[n++] = L(ENS_LAYER_DENSE, 6, 0, 0, 0, 0, 2);
    a->spec[n++] = L(ENS_LAYER_BATCHNORM, 0, 0, 0, 0, 0, 2);
    a->spec[n++] = L(ENS_LAYER_RELU, 0, 0, 0, 0, 0, 2);
    a->n_hidden = 3;
  } else {
    a->spec[n++] = L(ENS_LAYER_CONV, 3, 3, 2, 1, 0, 0);
    a->spec[n++] = L(ENS_LAYER_BATCHNORM, 0, 0, 0, 0, 0, 0);
    a->spec[n++] = L(ENS_LAYER_RELU, 0, 0, 0, 0, 0, 0);
    a->spec[n++] = L(ENS_LAYER_AVGPOOL, 0, 2, 2, 0, 0, 0);
    a->spec[n++] = L(ENS_LAYER_GAP, 0, 0, 0, 0, 0, 0);
    a->n_hidden = 1;
  }
  a->nspec = n;
  a->weightnorm = which == 2; /* network 1 with weight-normalized conv and dense layers */
}

/* Gradient check of a whole conv network; with plant, the gradient of one
 * batch-norm gamma is replaced by its beta's (a planted error) and the
 * worst error is returned instead of asserted. */
static double net_case(int which, uint64_t seed, int plant) {
  enum { B = 6 };
  ens_arch a;
  net_arch(&a, which);
  char err[256];
  CU_ASSERT_FATAL(ens_arch_check(&a, err, sizeof err) == 0);
  ens_model m;
  CU_ASSERT_FATAL(ens_model_create(&m, &a, 0, a.n_hidden, 1, B) == 0);
  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_HE, 0.0, 0.1, seed, 0) == 0);
  ens_rng r;
  ens_rng_init(&r, seed, 0, ENS_STREAM_TEST, 60);
  /* Generic gamma, beta and biases. */
  for (int i = 0; i < m.nlayers; i++) {
    ens_layer *l = &m.layers[i];
    if (l->kind == ENS_LAYER_BATCHNORM)
      fill_normal(m.params + l->param_off, l->nparam, 0.5, 0.5, &r);
  }
  float *x = malloc((size_t)B * m.in * sizeof(float));
  CU_ASSERT_FATAL(x != NULL);
  fill_normal(x, (size_t)B * m.in, 0.0, 1.0, &r);
  const int32_t y[B] = {0, 1, 2, 2, 1, 0};
  ens_rng drop;
  ens_rng_init(&drop, seed, 0, ENS_STREAM_DROPOUT, 1);
  ens_model_forward(&m, x, B, ENS_PASS_TRAIN, &drop);
  float *dx = malloc((size_t)B * m.in * sizeof(float));
  CU_ASSERT_FATAL(dx != NULL);
  double loss = ens_model_loss_backward(&m, y, NULL, B, dx);
  float *masks[ENS_MAX_LAYERS + 1] = {0};
  size_t maxw = (size_t)m.in;
  for (int i = 0; i < m.nlayers; i++) {
    ens_layer *l = &m.layers[i];
    maxw = (size_t)l->out > maxw ? (size_t)l->out : maxw;
    if (l->kind == ENS_LAYER_DROPOUT) {
      masks[i] = malloc((size_t)B * l->out * sizeof(float));
      CU_ASSERT_FATAL(masks[i] != NULL);
      memcpy(masks[i], l->aux, (size_t)B * l->out * sizeof(float));
    }
  }
  if (plant)
    for (int i = 0; i < m.nlayers; i++)
      if (m.layers[i].kind == ENS_LAYER_BATCHNORM && m.layers[i].sout.image) {
        int C = m.layers[i].sout.c;
        float *g = m.grads + m.layers[i].param_off;
        memcpy(g, g + C, (size_t)C * sizeof(float));
        break;
      }
  net_ctx d = {&m,
               to_double(m.params, m.nparams),
               to_double(x, (size_t)B * m.in),
               y,
               B,
               masks,
               {malloc(B * maxw * sizeof(double)), malloc(B * maxw * sizeof(double))}};
  CU_ASSERT_FATAL(d.p && d.x && d.buf[0] && d.buf[1]);
  CU_CHECK_CLOSE(net_loss(&d), loss, 1e-5 * (1.0 + fabs(loss)));
  double *gp = malloc(m.nparams * sizeof(double));
  double *gx = malloc((size_t)B * m.in * sizeof(double));
  CU_ASSERT_FATAL(gp && gx);
  numeric_grad(gp, d.p, m.nparams, net_loss, &d);
  numeric_grad(gx, d.x, (size_t)B * m.in, net_loss, &d);
  double worst = 0.0;
  if (plant) {
    size_t at;
    worst = grad_error(m.grads, gp, m.nparams, 0.0, &at);
  } else {
    const double gscale = max_abs(gp, m.nparams);
    char name[96];
    for (int i = 0; i < m.nlayers; i++) {
      const ens_layer *l = &m.layers[i];
      if (!l->nparam)
        continue;
      snprintf(name, sizeof name, "net %d layer %d (%s)", which, i, ens_layer_kind_name(l->kind));
      check_grad(name, m.grads + l->param_off, gp + l->param_off, l->nparam, GRAD_TOL, gscale);
    }
    snprintf(name, sizeof name, "net %d dx_out", which);
    check_grad(name, dx, gx, (size_t)B * m.in, GRAD_TOL, 0.0);
  }
  for (int i = 0; i <= ENS_MAX_LAYERS; i++)
    free(masks[i]);
  free(x), free(dx), free(d.p), free(d.x), free(d.buf[0]), free(d.buf[1]), free(gp), free(gx);
  ens_model_free(&m);
  return worst;
}

static void test_net_grad(void) {
  for (uint64_t s = 0; s < 3; s++) {
    net_case(0, 100 + s, 0);
    net_case(1, 200 + s, 0);
    net_case(2, 300 + s, 0);
  }
}

static void test_net_planted(void) {
  double err = net_case(0, 100, 1);
  if (getenv("ENS_TEST_VERBOSE"))
    fprintf(stderr, "\n  planted network error: %.3g", err);
  CU_ASSERT(err > 100 * GRAD_TOL);
}

/* ---------------------------------------------------------------- shapes */

static void test_shapes(void) {
  ens_arch a;
  net_arch(&a, 0);
  ens_model m;
  CU_ASSERT_FATAL(ens_model_create(&m, &a, 0, a.n_hidden, 1, 4) == 0);
  /* conv 4 (7x7, pad 1) -> maxpool 3/2 -> 3x3 -> conv 5 k2 -> 2x2 -> 20 */
  CU_ASSERT(m.layers[0].sout.c == 4 && m.layers[0].sout.h == 7 && m.layers[0].sout.w == 7);
  CU_ASSERT(m.layers[3].sout.c == 4 && m.layers[3].sout.h == 3 && m.layers[3].sout.w == 3);
  CU_ASSERT(m.layers[4].sout.c == 5 && m.layers[4].sout.h == 2 && m.layers[4].sout.w == 2);
  CU_ASSERT(m.layers[7].out == 20 && !m.layers[7].sout.image);
  /* Parameters: conv 2*4*9+4, bn 2*4, conv 4*5*4+5, dense 20*6+6, bn 12,
   * dense 6*3+3; statistics: 8 + 12. */
  CU_ASSERT_EQUAL(m.nparams, (size_t)(76 + 8 + 85 + 126 + 12 + 21));
  CU_ASSERT_EQUAL(m.nstats, (size_t)20);
  size_t np, ns;
  ens_arch_sizes(&a, 0, a.n_hidden, 1, &np, &ns);
  CU_ASSERT(np == m.nparams && ns == m.nstats);
  /* A head from block 1 knows its input shape (4, 3, 3). */
  ens_model h;
  CU_ASSERT_FATAL(ens_model_create(&h, &a, 1, a.n_hidden, 1, 4) == 0);
  CU_ASSERT(h.layers[0].kind == ENS_LAYER_CONV && h.layers[0].sin.c == 4 &&
            h.layers[0].sin.h == 3 && h.in == 36);
  ens_arch_sizes(&a, 0, 1, 0, &np, &ns);
  CU_ASSERT_EQUAL(np + h.nparams, m.nparams); /* trunk + head = full */
  ens_model_free(&h);
  ens_model_free(&m);

  /* Stacks that do not fit: each error names the layer and both shapes. */
  struct {
    int at;
    ens_layer_spec s;
    const char *want;
  } bad[] = {
      {8, L(ENS_LAYER_DENSE, 6, 0, 0, 0, 0, 2), "layer 8 (dense): input shape (5,2,2)"},
      {3, L(ENS_LAYER_MAXPOOL, 0, 2, 2, 0, 0, 0), "do not divide the 7x7"},
      {4, L(ENS_LAYER_CONV, 5, 5, 1, 0, 0, 1), "layer 5 (conv): input shape (4,3,3)"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    net_arch(&a, 0);
    if (bad[i].at == 8) /* drop the flatten */
      a.spec[7] = a.spec[8], a.spec[8] = a.spec[9], a.spec[9] = a.spec[10], a.nspec--;
    else
      a.spec[bad[i].at] = bad[i].s;
    char err[256] = "";
    CU_ASSERT(ens_arch_check(&a, err, sizeof err) == ENS_EINVAL);
    CU_ASSERT(ens_model_create(&m, &a, 0, a.n_hidden, 1, 4) == ENS_EINVAL);
    if (!strstr(err, bad[i].want))
      fprintf(stderr, "\n  shape error %zu: got \"%s\", want \"%s\"\n", i, err, bad[i].want);
    CU_ASSERT(strstr(err, bad[i].want) != NULL);
  }
  /* A conv on a flat input. */
  net_arch(&a, 0);
  a.in_shape = (ens_shape){0};
  char err[256] = "";
  CU_ASSERT(ens_arch_check(&a, err, sizeof err) == ENS_EINVAL);
  CU_ASSERT(strstr(err, "layer 1 (conv): input shape (98)") != NULL);
}

/* ------------------------------------------------------------------- init */

static void test_conv_init(void) {
  ens_arch a = {.head = ENS_HEAD_SOFTMAX, .width = 2, .outputs = 2, .n_hidden = 1, .nspec = 3};
  a.in_shape = (ens_shape){.c = 16, .h = 6, .w = 6, .image = 1};
  a.in = 16 * 36;
  a.spec[0] = L(ENS_LAYER_CONV, 64, 3, 1, 1, 0, 0);
  a.spec[1] = L(ENS_LAYER_RELU, 0, 0, 0, 0, 0, 0);
  a.spec[2] = L(ENS_LAYER_GAP, 0, 0, 0, 0, 0, 0);
  ens_model m;
  CU_ASSERT_FATAL(ens_model_create(&m, &a, 0, 1, 1, 1) == 0);
  const int O = 64, K = 16 * 9;
  const size_t nw = (size_t)O * K;
  /* He: Var = 2 / (C k k); Xavier: 2 / (C k k + O k k). */
  struct {
    ens_init_kind kind;
    double var;
  } rules[] = {{ENS_INIT_HE, 2.0 / K}, {ENS_INIT_XAVIER, 2.0 / (K + O * 9)}};
  for (int t = 0; t < 2; t++) {
    CU_ASSERT_FATAL(ens_model_init(&m, rules[t].kind, 0.0, 0.02, 3, 0) == 0);
    double s = 0.0, ss = 0.0;
    for (size_t i = 0; i < nw; i++) {
      s += m.params[i];
      ss += (double)m.params[i] * m.params[i];
    }
    double mean = s / nw, var = ss / nw - mean * mean;
    /* 9216 draws: the sample variance is within 5% of the truth (>3 sd). */
    CU_CHECK_CLOSE(var / rules[t].var, 1.0, 0.05);
    CU_ASSERT(m.params[nw] == 0.02f && m.params[nw + O - 1] == 0.02f); /* bias_init */
  }
  /* torch (PyTorch's default): weights and biases uniform in +-1/sqrt(C k k),
   * so Var = 1 / (3 C k k); bias_init does not apply. */
  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_TORCH, 0.0, 0.02, 3, 0) == 0);
  {
    const double bound = 1.0 / sqrt((double)K);
    double s = 0.0, ss = 0.0, top = 0.0;
    for (size_t i = 0; i < nw + O; i++) {
      top = fmax(top, fabs(m.params[i]));
      if (i < nw) {
        s += m.params[i];
        ss += (double)m.params[i] * m.params[i];
      }
    }
    double mean = s / nw, var = ss / nw - mean * mean;
    CU_CHECK_CLOSE(var / (1.0 / (3.0 * K)), 1.0, 0.05);
    CU_ASSERT(top <= bound && top > 0.9 * bound);
    int distinct = 0;
    for (int j = 1; j < O; j++)
      distinct += m.params[nw + j] != m.params[nw];
    CU_ASSERT(distinct == O - 1 && m.params[nw] != 0.02f);
  }
  /* Orthogonal: the (O, C k k) = (64, 144) matrix has orthonormal rows times
   * the ReLU gain sqrt(2). */
  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_ORTHOGONAL, 0.0, 0.0, 3, 0) == 0);
  double worst = 0.0;
  for (int i = 0; i < O; i++)
    for (int j = 0; j < O; j++) {
      double dot = 0.0;
      for (int k = 0; k < K; k++)
        dot += (double)m.params[(size_t)i * K + k] * m.params[(size_t)j * K + k];
      worst = fmax(worst, fabs(dot - (i == j ? 2.0 : 0.0)));
    }
  CU_CHECK_CLOSE(worst, 0.0, 1e-4);
  ens_model_free(&m);
}

/* Whether this OpenBLAS core's sgemm computes a product's column with the
 * same float operations wherever the column falls in the product: the same
 * 40 columns placed at offsets 0, 8, ..., 216 of a 256-column product. Yes
 * on the SkylakeX and Cooperlake kernels; no on Haswell's and Zen's, which
 * give other last bits at most offsets (measured 2026-12-05). */
static int sgemm_columns_place_free(void) {
  enum { O = 16, K = 32, L = 256, P = 40 };
  static float w[O * K], src[K * P], b[K * L], c[O * L], c0[O * P];
  ens_rng r;
  ens_rng_init(&r, 5, 0, ENS_STREAM_TEST, 77);
  fill_normal(w, O * K, 0.0, 1.0, &r);
  fill_normal(src, K * P, 0.0, 1.0, &r);
  for (int s = 0; s + P <= L; s += 8) {
    memset(b, 0, sizeof b);
    for (int k = 0; k < K; k++)
      memcpy(b + k * L + s, src + k * P, P * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, L, K, 1.0f, w, K, b, L, 0.0f, c, L);
    for (int o = 0; o < O; o++) {
      if (s == 0)
        memcpy(c0 + o * P, c + o * L, P * sizeof(float));
      else if (memcmp(c0 + o * P, c + o * L + s, P * sizeof(float)))
        return 0;
    }
  }
  return 1;
}

/* a and b of n floats: the same bits when exact, else within rel of each
 * other (relative to the largest |a|). */
static int same_outputs(const float *a, const float *b, size_t n, int exact, double rel) {
  if (exact)
    return memcmp(a, b, n * sizeof(float)) == 0;
  double big = 0.0, worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    big = fmax(big, fabs(a[i]));
    worst = fmax(worst, fabs((double)a[i] - b[i]));
  }
  return worst <= rel * (big > 0.0 ? big : 1.0);
}

/* The eval pass of a conv net does not depend on how rows are batched (to
 * the bit where the BLAS computes columns independently of their place). */
static void batch_case(const ens_arch *a, int exact) {
  enum { N = 13 };
  ens_model m5, m13;
  CU_ASSERT_FATAL(ens_model_create(&m5, a, 0, a->n_hidden, 1, 5) == 0);
  CU_ASSERT_FATAL(ens_model_create(&m13, a, 0, a->n_hidden, 1, N) == 0);
  CU_ASSERT_FATAL(ens_model_init(&m5, ENS_INIT_HE, 0.0, 0.0, 9, 0) == 0);
  memcpy(m13.params, m5.params, m5.nparams * sizeof(float));
  memcpy(m13.stats, m5.stats, m5.nstats * sizeof(float));
  float *x = malloc((size_t)N * m5.in * sizeof(float));
  float p5[N * 3], p13[N * 3];
  CU_ASSERT_FATAL(x != NULL);
  ens_rng r;
  ens_rng_init(&r, 9, 0, ENS_STREAM_TEST, 9);
  fill_normal(x, (size_t)N * m5.in, 0.0, 1.0, &r);
  ens_model_predict(&m5, p5, x, N);
  ens_model_predict(&m13, p13, x, N);
  CU_ASSERT(same_outputs(p5, p13, N * 3, exact, 1e-5));
  free(x);
  ens_model_free(&m5);
  ens_model_free(&m13);
}

static void test_batch_independence(void) {
  /* One BLAS thread, as ens runs by default ([train] threads = 1):
   * OpenBLAS splits a product's columns among its threads. */
  openblas_set_num_threads(1);
  const int exact = sgemm_columns_place_free();
  if (!exact)
    printf("(this OpenBLAS core's sgemm columns depend on their place: batching checked to "
           "1e-5, not to the bit) ");
  ens_arch a;
  net_arch(&a, 0);
  batch_case(&a, exact);
  /* The convolutions alone, im2col and Winograd geometries: 13 images at
   * once and as 5, 5 and 3 give the same bits (the GEMMs' zero columns)
   * where the kernel computes columns alike wherever they fall, else the
   * same to 1e-5. A dense layer is not covered: OpenBLAS may compute a row
   * of a product differently with another number of rows (docs/DESIGN.md). */
  static const int geo[3][5] = {{2, 7, 7, 8, 3}, {8, 7, 7, 8, 3}, {32, 14, 14, 64, 3}};
  for (int i = 0; i < 3; i++) {
    ens_conv_geom g = {.C = geo[i][0], .H = geo[i][1], .W = geo[i][2], .O = geo[i][3],
                       .k = geo[i][4], .stride = 1, .pad = 1};
    CU_ASSERT_FATAL(ens_conv_geom_init(&g) == 0);
    CU_ASSERT(ens_wino_applies(&g) == (i > 0));
    enum { N = 13 };
    const size_t in = (size_t)g.C * g.H * g.W, out = (size_t)g.O * g.Ho * g.Wo;
    const size_t nw = (size_t)g.O * g.C * 9;
    float *x = malloc(N * in * sizeof(float)), *w = malloc(nw * sizeof(float)), b[64];
    float *y13 = malloc(N * out * sizeof(float)), *y5 = malloc(N * out * sizeof(float));
    float *work = malloc(ens_conv2d_nwork(&g, N) * sizeof(float));
    CU_ASSERT_FATAL(x && w && y13 && y5 && work && g.O <= 64);
    ens_rng r;
    ens_rng_init(&r, 9, 0, ENS_STREAM_TEST, 90 + (uint32_t)i);
    fill_normal(x, N * in, 0.0, 1.0, &r);
    fill_normal(w, nw, 0.0, 0.3, &r);
    fill_normal(b, g.O, 0.0, 1.0, &r);
    ens_conv2d_forward(y13, work, x, w, b, &g, N);
    for (int n0 = 0; n0 < N; n0 += 5)
      ens_conv2d_forward(y5 + n0 * out, work, x + n0 * in, w, b, &g, N - n0 < 5 ? N - n0 : 5);
    CU_ASSERT(same_outputs(y13, y5, N * out, exact, 1e-5));
    free(x), free(w), free(y13), free(y5), free(work);
  }
}

/* The convolution in groups of images (a partial last group, and groups of
 * one whose GEMM writes the NCHW output directly): the same gradient checks,
 * and a planted error still fails. The cache-sized choice takes whole groups
 * of the reference CNN's layers and never more than the batch. */
static void test_conv_groups(void) {
  conv_group = 2;
  conv_case(5, 2, 5, 6, 3, 3, 1, 1, 11, 0); /* groups 2, 2, 1 */
  conv_case(3, 3, 7, 7, 4, 3, 2, 1, 12, 0); /* stride 2: groups 2, 1 */
  conv_group = 1;
  conv_case(3, 2, 6, 5, 2, 2, 2, 0, 13, 0); /* one image per GEMM */
  conv_group = 2;
  double err = conv_case(5, 2, 5, 5, 2, 3, 1, 1, 14, 1);
  conv_group = 0;
  CU_ASSERT(err > 100 * GRAD_TOL);
  ens_conv_geom g1 = {.C = 1, .H = 28, .W = 28, .O = 32, .k = 3, .stride = 1, .pad = 1};
  ens_conv_geom g2 = {.C = 32, .H = 14, .W = 14, .O = 64, .k = 3, .stride = 1, .pad = 1};
  CU_ASSERT_FATAL(ens_conv_geom_init(&g1) == 0 && ens_conv_geom_init(&g2) == 0);
  int G1 = ens_conv2d_group(&g1, 128), G2 = ens_conv2d_group(&g2, 128);
  CU_ASSERT(G1 > 1 && G1 < 128 && G2 >= 1 && G2 < G1);
  CU_ASSERT(ens_conv2d_group(&g1, 3) == 3);
  CU_ASSERT(ens_conv2d_nwork(&g1, 128) == (size_t)(9 + 32) * G1 * 28 * 28);
}

/* 3x3 convolutions with stride 1, padding 1 and at least 8 channels in and
 * out run through Winograd F(2x2, 3x3) (nn/winograd.c): gradient checks on
 * small planes whose tile rows are shorter than a vector (the junk lanes
 * that land on later tiles), longer with an overlapping last chunk, odd
 * sizes, one pixel, groups of images; then the reference CNN's second
 * convolution against the definition in double (forward, input gradient,
 * and the plane sums batch norm takes from the forward pass). */
static void test_winograd(void) {
  ens_conv_geom t = {.C = 8, .H = 5, .W = 6, .O = 8, .k = 3, .stride = 1, .pad = 1};
  CU_ASSERT_FATAL(ens_conv_geom_init(&t) == 0);
  CU_ASSERT(ens_wino_applies(&t));
  t.C = 4;
  CU_ASSERT(!ens_wino_applies(&t)); /* too few channels: im2col */
  conv_case(2, 8, 5, 6, 8, 3, 1, 1, 31, 0);
  conv_case(1, 8, 3, 17, 9, 3, 1, 1, 32, 0); /* 9 tiles per row: overlapping chunk */
  conv_case(2, 9, 1, 1, 8, 3, 1, 1, 33, 0);  /* one pixel */
  conv_group = 2;
  conv_case(3, 9, 3, 3, 8, 3, 1, 1, 34, 0); /* groups 2, 1 */
  conv_group = 0;

  enum { B = 3 };
  ens_conv_geom g = {.C = 32, .H = 14, .W = 14, .O = 64, .k = 3, .stride = 1, .pad = 1};
  CU_ASSERT_FATAL(ens_conv_geom_init(&g) == 0 && ens_wino_applies(&g));
  const size_t P = 14 * 14, nx = B * 32 * P, nw = 64 * 32 * 9, ny = B * 64 * P;
  ens_rng r;
  ens_rng_init(&r, 35, 0, ENS_STREAM_TEST, 35);
  float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float)), b[64];
  float *y = malloc(ny * sizeof(float)), *y2 = malloc(ny * sizeof(float));
  float *dy = malloc(ny * sizeof(float)), *dx = malloc(nx * sizeof(float));
  float *dw = malloc(nw * sizeof(float)), db[64];
  float *work = malloc(ens_conv2d_nwork(&g, B) * sizeof(float));
  double *xd = malloc(nx * sizeof(double)), *wd = malloc(nw * sizeof(double)), bd[64];
  double *yd = malloc(ny * sizeof(double)), sums[64];
  CU_ASSERT_FATAL(x && w && y && y2 && dy && dx && dw && work && xd && wd && yd);
  fill_normal(x, nx, 0.0, 1.0, &r);
  fill_normal(w, nw, 0.0, 0.1, &r);
  fill_normal(b, 64, 0.0, 1.0, &r);
  fill_normal(dy, ny, 0.0, 1.0, &r);
  for (size_t i = 0; i < nx; i++)
    xd[i] = x[i];
  for (size_t i = 0; i < nw; i++)
    wd[i] = w[i];
  for (int i = 0; i < 64; i++)
    bd[i] = b[i];
  ens_conv2d_forward(y, work, x, w, b, &g, B);
  conv_ref(yd, xd, wd, bd, &g, B);
  double e = 0.0, big = 0.0;
  for (size_t i = 0; i < ny; i++) {
    e = fmax(e, fabs(y[i] - yd[i]));
    big = fmax(big, fabs(yd[i]));
  }
  CU_ASSERT(e <= 1e-5 * big);
  /* The sums: the same y, and each channel's sum of it. */
  ens_conv2d_forward_sums(y2, sums, work, x, w, b, &g, B);
  CU_ASSERT(memcmp(y, y2, ny * sizeof(float)) == 0);
  for (int o = 0; o < 64; o++) {
    double s = 0.0;
    for (int n = 0; n < B; n++)
      for (size_t p = 0; p < P; p++)
        s += y[((size_t)n * 64 + o) * P + p];
    CU_ASSERT(fabs(sums[o] - s) <= 1e-5 * (fabs(s) + P));
  }
  /* dx from the definition: dx[n, c, ih, iw] = sum of dy[n, o, oh, ow]
   * w[o, c, ki, kj] over ih = oh - 1 + ki, iw = ow - 1 + kj. */
  ens_conv2d_backward(dx, dw, db, work, dy, x, w, &g, B);
  e = big = 0.0;
  for (int n = 0; n < B; n++)
    for (int c = 0; c < 32; c++)
      for (int ih = 0; ih < 14; ih++)
        for (int iw = 0; iw < 14; iw++) {
          double s = 0.0;
          for (int o = 0; o < 64; o++)
            for (int ki = 0; ki < 3; ki++)
              for (int kj = 0; kj < 3; kj++) {
                int oh = ih + 1 - ki, ow = iw + 1 - kj;
                if (oh < 0 || oh >= 14 || ow < 0 || ow >= 14)
                  continue;
                s += (double)dy[((size_t)(n * 64 + o) * 14 + oh) * 14 + ow] *
                     w[((size_t)(o * 32 + c) * 3 + ki) * 3 + kj];
              }
          e = fmax(e, fabs(dx[((size_t)(n * 32 + c) * 14 + ih) * 14 + iw] - s));
          big = fmax(big, fabs(s));
        }
  CU_ASSERT(e <= 1e-5 * big);
  if (getenv("ENS_TEST_VERBOSE"))
    fprintf(stderr, "\n  winograd dx: max error %.3g of %.3g", e, big);
  free(x), free(w), free(y), free(y2), free(dy), free(dx), free(dw), free(work);
  free(xd), free(wd), free(yd);
}

/* Max pooling whose windows tile the plane (size = stride) writes dx in one
 * pass without clearing it first: gradient-checked for 2x2 and 3x3 windows,
 * and a wrong argmax (a planted error) makes the check fail. */
static void test_maxpool_tiling(void) {
  pool_case(0, 2, 2, 9, 6, 3, 3, 6); /* max 3x3 every 3 */
  pool_case(0, 3, 1, 2, 2, 2, 2, 7); /* one window per plane */
  ens_conv_geom g = {.C = 2, .H = 4, .W = 6, .O = 2, .k = 2, .stride = 2, .pad = 0};
  CU_ASSERT_FATAL(ens_conv_geom_init(&g) == 0);
  enum { B = 2 };
  size_t nx = (size_t)B * 2 * 4 * 6, ny = (size_t)B * 2 * g.Ho * g.Wo;
  float x[B * 2 * 4 * 6], c[B * 2 * 2 * 3], y[B * 2 * 2 * 3], am[B * 2 * 2 * 3], dx[B * 2 * 4 * 6];
  for (size_t i = 0; i < nx; i++)
    x[i] = (float)(0.01 * (double)((i * 7919) % nx) - 0.3);
  ens_rng r;
  ens_rng_init(&r, 43, 0, ENS_STREAM_TEST, 8);
  fill_normal(c, ny, 0.0, 1.0, &r);
  ens_maxpool_forward(y, am, x, &g, B);
  pool_ctx d = {g, B, 0, to_double(x, nx), to_double(c, ny), malloc(ny * sizeof(double))};
  double *gx = malloc(nx * sizeof(double));
  CU_ASSERT_FATAL(d.x && d.c && d.y && gx);
  numeric_grad(gx, d.x, nx, pool_loss, &d);
  /* Plant: window 1 of plane 0 points at the other pixel of its top row. */
  am[1] = am[1] == 2.0f ? 3.0f : 2.0f;
  ens_maxpool_backward(dx, c, am, &g, B);
  size_t at;
  double err = grad_error(dx, gx, nx, 0.0, &at);
  if (getenv("ENS_TEST_VERBOSE"))
    fprintf(stderr, "\n  planted maxpool error: %.3g", err);
  CU_ASSERT(err > 100 * GRAD_TOL);
  free(d.x), free(d.c), free(d.y), free(gx);
}

/* 2x2 max pooling every 2 pixels (4 windows at a time, the last chunk of a
 * row overlapping when Wo is not a multiple of 4) against its definition,
 * to the bit: output and argmax (first maximum wins; ties and a NaN
 * included), and backward scattering to the argmax; plane widths 2 to 28,
 * odd heights (the last row left out). Gradient-checked too at Wo = 5 and 7. */
static void test_maxpool2_paths(void) {
  pool_case(0, 2, 2, 4, 10, 2, 2, 11);
  pool_case(0, 1, 3, 6, 14, 2, 2, 12);
  const int dims[][2] = {{2, 2}, {4, 6}, {4, 8}, {5, 10}, {6, 14}, {2, 16}, {28, 28}, {3, 26}};
  for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
    ens_conv_geom g = {.C = 3, .H = dims[t][0], .W = dims[t][1], .O = 3, .k = 2, .stride = 2};
    CU_ASSERT_FATAL(ens_conv_geom_init(&g) == 0);
    enum { B = 2 };
    const size_t HW = (size_t)g.H * g.W, P = (size_t)g.Ho * g.Wo;
    const size_t nx = B * 3 * HW, ny = B * 3 * P;
    float *x = malloc(nx * sizeof(float)), *y = malloc(ny * sizeof(float));
    float *am = malloc(ny * sizeof(float)), *dy = malloc(ny * sizeof(float));
    float *dx = malloc(nx * sizeof(float));
    CU_ASSERT_FATAL(x && y && am && dy && dx);
    ens_rng r;
    ens_rng_init(&r, 44, 0, ENS_STREAM_TEST, (uint32_t)t);
    fill_normal(x, nx, 0.0, 1.0, &r);
    fill_normal(dy, ny, 0.0, 1.0, &r);
    for (size_t i = 0; i < nx; i++) /* ties: values on a coarse grid */
      x[i] = roundf(x[i] * 2.0f) / 2.0f;
    x[nx / 2] = NAN;
    ens_maxpool_forward(y, am, x, &g, B);
    ens_maxpool_backward(dx, dy, am, &g, B);
    int bad = 0;
    for (size_t pl = 0; pl < (size_t)B * 3; pl++)
      for (int oh = 0; oh < g.Ho; oh++)
        for (int ow = 0; ow < g.Wo; ow++) {
          const float *in = x + pl * HW;
          int best = 2 * oh * g.W + 2 * ow;
          for (int ki = 0; ki < 2; ki++)
            for (int kj = 0; kj < 2; kj++) {
              int i = (2 * oh + ki) * g.W + 2 * ow + kj;
              if (in[i] > in[best])
                best = i;
            }
          size_t j = pl * P + (size_t)oh * g.Wo + ow;
          bad += memcmp(&y[j], &in[best], sizeof(float)) != 0 || am[j] != (float)best;
        }
    CU_ASSERT(bad == 0);
    /* Backward: dy at each argmax, 0 elsewhere (windows do not overlap). */
    bad = 0;
    for (size_t pl = 0; pl < (size_t)B * 3; pl++) {
      float want[28 * 28];
      for (size_t i = 0; i < HW; i++)
        want[i] = 0.0f;
      for (size_t j = 0; j < P; j++)
        want[(size_t)am[pl * P + j]] = dy[pl * P + j];
      for (int h = 0; h < 2 * g.Ho; h++) /* rows past the last window are not written */
        for (int w = 0; w < g.W; w++)
          bad += memcmp(&dx[pl * HW + (size_t)h * g.W + w], &want[h * g.W + w], sizeof(float)) != 0;
    }
    CU_ASSERT(bad == 0);
    free(x), free(y), free(am), free(dy), free(dx);
  }
}

/* Largest |a - b| over n, against tol times the largest |b| of the block
 * plus floor: 0 when within, else 1 (and a note of the worst). */
static int differs(const float *a, const float *b, size_t n, double tol, double floor,
                   const char *what) {
  double worst = 0.0, big = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double d = fabs((double)a[i] - b[i]);
    worst = d > worst || d != d ? d : worst;
    big = fabs(b[i]) > big ? fabs(b[i]) : big;
  }
  if (worst <= tol * big + floor)
    return 0;
  fprintf(stderr, "\n%s: |fused - unfused| up to %g, largest value %g\n", what, worst, big);
  return 1;
}

/* The fused training runs (bn -> relu -> maxpool and conv -> bn -> relu ->
 * maxpool, nn/fuse.c) against the layers run one by one (nofuse), over
 * three steps of SGD, on net 0 (3x3 windows every 2, overlapping: a bn ->
 * relu -> maxpool run) and nets with 2x2 and 3x3 windows tiling the planes
 * (conv runs); the fused plan covers exactly those runs. Where only bn ->
 * relu -> maxpool runs are fused, every output, loss, parameter and input
 * gradient and running statistic is the same to the bit. A conv run's
 * forward pass is the same to the bit (the first step's output, loss and
 * running statistics); its backward sums batch norm's channel sums over
 * the windows, so gradients, and the parameters they move, agree to a
 * relative 1e-5 per layer (a wrong window, mask or coefficient is off by
 * far more). */
static void test_fused_runs(void) {
  for (int which = 0; which < 4; which++) {
    ens_arch a;
    net_arch(&a, 0);
    /* Nets 1-3: conv, bn, relu, maxpool twice on (c, h, w) images, with
     * these channels and windows (size, stride) per block. Net 1: 2x2
     * windows tiling 8x8 planes. Net 2: planes whose pixel counts are not
     * multiples of 8 (36 and 9: the sums' tails), two input channels, 3x3
     * windows tiling a 3x3 plane. Net 3: 14x14 planes, 2x2 pooling to 7x7
     * (the vector path with its overlapping last chunk), then 3x3 windows
     * every 2 on 7x7, which overlap (a bn+relu+maxpool run). */
    static const int nets[4][9] = {
        {0}, {1, 8, 8, 4, 2, 2, 3, 2, 2}, {2, 6, 6, 4, 2, 2, 3, 3, 3}, {1, 14, 14, 3, 2, 2, 2, 3, 2}};
    if (which > 0) {
      const int *d = nets[which];
      int n = 0;
      a.in_shape = (ens_shape){.c = d[0], .h = d[1], .w = d[2], .image = 1};
      a.in = d[0] * d[1] * d[2];
      for (int blk = 0; blk < 2; blk++) {
        a.spec[n++] = L(ENS_LAYER_CONV, d[3 + 3 * blk], 3, 1, 1, 0, blk);
        a.spec[n++] = L(ENS_LAYER_BATCHNORM, 0, 0, 0, 0, 0, blk);
        a.spec[n++] = L(ENS_LAYER_RELU, 0, 0, 0, 0, 0, blk);
        a.spec[n++] = L(ENS_LAYER_MAXPOOL, 0, d[4 + 3 * blk], d[5 + 3 * blk], 0, 0, blk);
      }
      a.spec[n++] = L(ENS_LAYER_FLATTEN, 0, 0, 0, 0, 0, 1);
      a.nspec = n;
      a.n_hidden = 2;
    }
    enum { B = 5 };
    ens_model mf, mu;
    CU_ASSERT_FATAL(ens_model_create(&mf, &a, 0, a.n_hidden, 1, B) == 0);
    CU_ASSERT_FATAL(ens_model_create(&mu, &a, 0, a.n_hidden, 1, B) == 0);
    /* Net 0: a bn+relu+maxpool run (its windows overlap); net 1: two
     * conv+bn+relu+maxpool runs (windows tiling the planes), the first
     * one at the input, whose gradient is wanted too. */
    int runs = 0;
    for (int i = 0; i < mf.nlayers; i++)
      if (mf.layers[i].fuse) {
        runs++;
        if (which == 0 || (which == 3 && i > 0)) {
          CU_ASSERT(mf.layers[i].fuse == 3 && mf.layers[i].kind == ENS_LAYER_BATCHNORM &&
                    mf.layers[i + 2].kind == ENS_LAYER_MAXPOOL);
        } else {
          CU_ASSERT(mf.layers[i].fuse == 4 && mf.layers[i].kind == ENS_LAYER_CONV &&
                    mf.layers[i + 3].kind == ENS_LAYER_MAXPOOL);
        }
      }
    CU_ASSERT(runs == (which == 0 ? 1 : 2));
    CU_ASSERT(which == 0 || mf.layers[0].fuse == 4);
    mu.nofuse = 1;
    CU_ASSERT_FATAL(ens_model_init(&mf, ENS_INIT_HE, 0.0, 0.1, 70 + which, 0) == 0);
    ens_rng r;
    ens_rng_init(&r, 70 + which, 0, ENS_STREAM_TEST, 70);
    for (int i = 0; i < mf.nlayers; i++)
      if (mf.layers[i].kind == ENS_LAYER_BATCHNORM)
        fill_normal(mf.params + mf.layers[i].param_off, mf.layers[i].nparam, 0.3, 0.5, &r);
    memcpy(mu.params, mf.params, mf.nparams * sizeof(float));
    memcpy(mu.stats, mf.stats, mf.nstats * sizeof(float));
    float *x = malloc((size_t)B * mf.in * sizeof(float));
    float *dxf = malloc((size_t)B * mf.in * sizeof(float));
    float *dxu = malloc((size_t)B * mf.in * sizeof(float));
    float *vf = calloc(mf.nparams, sizeof(float)), *vu = calloc(mf.nparams, sizeof(float));
    CU_ASSERT_FATAL(x && dxf && dxu && vf && vu);
    const int32_t y[B] = {0, 1, 2, 2, 1};
    ens_sgd sgd = {.momentum = 0.9, .weight_decay = 5e-4, .nesterov = 1};
    for (int step = 0; step < 3; step++) {
      fill_normal(x, (size_t)B * mf.in, 0.0, 1.0, &r);
      /* Ties in the pooling windows too: a plateau of equal pixels. */
      for (int i = 0; i < 6; i++)
        x[i] = 0.5f;
      ens_rng df, du;
      ens_rng_init(&df, 70, 0, ENS_STREAM_DROPOUT, (uint32_t)step);
      ens_rng_init(&du, 70, 0, ENS_STREAM_DROPOUT, (uint32_t)step);
      const float *zf = ens_model_forward(&mf, x, B, ENS_PASS_TRAIN, &df);
      const float *zu = ens_model_forward(&mu, x, B, ENS_PASS_TRAIN, &du);
      CU_ASSERT(mf.fused_pass == 1 && mu.fused_pass == 0);
      const size_t nz = (size_t)B * mf.out;
      double lf = ens_model_loss_backward(&mf, y, NULL, B, dxf);
      double lu = ens_model_loss_backward(&mu, y, NULL, B, dxu);
      if (which == 0 || step == 0) { /* the same parameters so far */
        CU_ASSERT(memcmp(zf, zu, nz * sizeof(float)) == 0);
        CU_ASSERT(lf == lu);
        CU_ASSERT(memcmp(mf.stats, mu.stats, mf.nstats * sizeof(float)) == 0);
      } else {
        CU_ASSERT(!differs(zf, zu, nz, 1e-5, 0.0, "output"));
        CU_ASSERT(fabs(lf - lu) <= 1e-5 * fabs(lu));
        CU_ASSERT(!differs(mf.stats, mu.stats, mf.nstats, 1e-5, 0.0, "running statistics"));
      }
      if (which == 0) {
        CU_ASSERT(memcmp(mf.grads, mu.grads, mf.nparams * sizeof(float)) == 0);
        CU_ASSERT(memcmp(dxf, dxu, (size_t)B * mf.in * sizeof(float)) == 0);
      } else {
        CU_ASSERT(!differs(dxf, dxu, (size_t)B * mf.in, 1e-5, 0.0, "input gradient"));
        /* Per layer. A convolution's bias ahead of batch norm has a
         * gradient of 0 but for rounding: its floor is the rounding of
         * the layer's output gradient sums, 1e-6 of the largest gradient. */
        double gmax = 0.0;
        for (size_t i = 0; i < mf.nparams; i++)
          gmax = fabs(mu.grads[i]) > gmax ? fabs(mu.grads[i]) : gmax;
        for (int i = 0; i < mf.nlayers; i++) {
          const ens_layer *l = &mf.layers[i];
          CU_ASSERT(!differs(mf.grads + l->param_off, mu.grads + l->param_off, l->nparam,
                             1e-5, 1e-6 * gmax, "parameter gradient"));
        }
      }
      ens_sgd_step(mf.params, vf, mf.grads, mf.nparams, 0.05, &sgd);
      ens_sgd_step(mu.params, vu, mu.grads, mu.nparams, 0.05, &sgd);
    }
    if (which == 0) {
      CU_ASSERT(memcmp(mf.params, mu.params, mf.nparams * sizeof(float)) == 0);
    } else {
      CU_ASSERT(!differs(mf.params, mu.params, mf.nparams, 1e-5, 0.0, "parameters"));
    }
    free(x), free(dxf), free(dxu), free(vf), free(vu);
    ens_model_free(&mf);
    ens_model_free(&mu);
  }
}

int main(void) {
  static const cu_case cases[] = {
      {"conv2d gradient (padding, stride, kernel sizes)", test_conv_grad},
      {"im2col by its definition, col2im paths to the bit", test_im2col_paths},
      {"2x2 max pooling by its definition, to the bit", test_maxpool2_paths},
      {"conv2d planted error fails the check", test_conv_planted},
      {"im2col/col2im adjoint", test_im2col_adjoint},
      {"batchnorm over channels: gradient, running stats, eval", test_batchnorm2d_grad},
      {"max/avg/global pooling gradient", test_pool_grad},
      {"conv networks: gradient (params and inputs)", test_net_grad},
      {"conv network planted error fails the check", test_net_planted},
      {"shape inference and misfit errors", test_shapes},
      {"conv init (he, xavier, orthogonal on (O, C k k))", test_conv_init},
      {"eval independent of batching", test_batch_independence},
      {"conv2d in groups of images: gradient, planted error, group size", test_conv_groups},
      {"maxpool whose windows tile the plane: gradient, planted error", test_maxpool_tiling},
      {"fused (conv+)bn+relu+maxpool runs equal the layers one by one", test_fused_runs},
      {"winograd F(2x2, 3x3): gradients, tiles, groups, against the definition", test_winograd},
      {NULL, NULL},
  };
  return cu_run_suite("conv", cases);
}
