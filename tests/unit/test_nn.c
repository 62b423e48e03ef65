/* Unit tests of src/nn: finite-difference gradient checks of every layer and
 * of a whole network, initialization statistics, batch norm in train, eval
 * and re-estimation passes, and dropout.
 *
 * Gradient checks compare the library's float analytic gradient with central
 * differences of a double-precision reference of the same function (the
 * reference is itself checked against the library's forward pass), so the
 * numeric gradient is accurate to ~1e-9 and a tolerance of 1e-3 relative
 * separates float rounding (at most 8e-5 over 3000 random networks) from a
 * wrong formula (errors of order 1) by orders of magnitude.
 * ENS_TEST_VERBOSE=1 prints every measured error; ENS_TEST_GRAD_SEEDS=n
 * runs the network check on n seeds instead of 3. */
#include "ens/model.h"
#include "ens/nn.h"

#include "cu_run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

/* ------------------------------------------------------------------ dense */

typedef struct {
  int batch, in, out;
  double *x, *w, *b, *c; /* c (batch, out): the loss is sum(c * y) */
} dense_ctx;

static void dense_ref(double *y, const dense_ctx *d) {
  for (int i = 0; i < d->batch; i++)
    for (int o = 0; o < d->out; o++) {
      double s = d->b[o];
      for (int k = 0; k < d->in; k++)
        s += d->x[i * d->in + k] * d->w[o * d->in + k];
      y[i * d->out + o] = s;
    }
}

static double dense_loss(void *ctx) {
  dense_ctx *d = ctx;
  double y[64];
  dense_ref(y, d);
  double s = 0.0;
  for (int i = 0; i < d->batch * d->out; i++)
    s += d->c[i] * y[i];
  return s;
}

static void test_dense_grad(void) {
  enum { B = 5, IN = 4, OUT = 3 };
  ens_rng r;
  ens_rng_init(&r, 1, 0, ENS_STREAM_TEST, 1);
  float x[B * IN], w[OUT * IN], b[OUT], c[B * OUT], y[B * OUT];
  fill_normal(x, B * IN, 0.0, 1.0, &r);
  fill_normal(w, OUT * IN, 0.0, 1.0, &r);
  fill_normal(b, OUT, 0.0, 1.0, &r);
  fill_normal(c, B * OUT, 0.0, 1.0, &r);
  dense_ctx d = {B, IN, OUT, to_double(x, B * IN), to_double(w, OUT * IN), to_double(b, OUT),
                 to_double(c, B * OUT)};
  CU_ASSERT_FATAL(d.x && d.w && d.b && d.c);

  /* Forward matches the reference. */
  double yref[B * OUT];
  ens_dense_forward(y, x, w, b, B, IN, OUT);
  dense_ref(yref, &d);
  CU_CHECK_CLOSE(max_diff(y, yref, B * OUT), 0.0, 1e-5);

  float dx[B * IN], dw[OUT * IN], db[OUT];
  memset(dw, 0x7f, sizeof(dw)); /* garbage: the backward overwrites */
  memset(db, 0x7f, sizeof(db));
  ens_dense_backward(dx, dw, db, c, x, w, B, IN, OUT);
  double gx[B * IN], gw[OUT * IN], gb[OUT];
  numeric_grad(gx, d.x, B * IN, dense_loss, &d);
  numeric_grad(gw, d.w, OUT * IN, dense_loss, &d);
  numeric_grad(gb, d.b, OUT, dense_loss, &d);
  check_grad("dense dx", dx, gx, B * IN, GRAD_TOL, 0.0);
  check_grad("dense dw", dw, gw, OUT * IN, GRAD_TOL, 0.0);
  check_grad("dense db", db, gb, OUT, GRAD_TOL, 0.0);

  /* dx = NULL (first layer) gives the same dw, db. */
  float dw2[OUT * IN], db2[OUT];
  ens_dense_backward(NULL, dw2, db2, c, x, w, B, IN, OUT);
  CU_ASSERT(memcmp(dw, dw2, sizeof(dw)) == 0);
  CU_ASSERT(memcmp(db, db2, sizeof(db)) == 0);
  free(d.x);
  free(d.w);
  free(d.b);
  free(d.c);
}

/* -------------------------------------------------------------- batchnorm */

typedef struct {
  int batch, n;
  double eps;
  double *x, *gamma, *beta, *c;
} bn_ctx;

/* Training-mode batch norm in double: batch mean, biased variance. */
static void bn_ref(double *y, const bn_ctx *d) {
  for (int j = 0; j < d->n; j++) {
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < d->batch; i++)
      mean += d->x[i * d->n + j];
    mean /= d->batch;
    for (int i = 0; i < d->batch; i++) {
      double e = d->x[i * d->n + j] - mean;
      var += e * e;
    }
    var /= d->batch;
    for (int i = 0; i < d->batch; i++)
      y[i * d->n + j] =
          d->gamma[j] * (d->x[i * d->n + j] - mean) / sqrt(var + d->eps) + d->beta[j];
  }
}

static double bn_loss(void *ctx) {
  bn_ctx *d = ctx;
  double y[64];
  bn_ref(y, d);
  double s = 0.0;
  for (int i = 0; i < d->batch * d->n; i++)
    s += d->c[i] * y[i];
  return s;
}

static void test_batchnorm_grad(void) {
  enum { B = 6, N = 5 };
  const float eps = 1e-5f;
  ens_rng r;
  ens_rng_init(&r, 2, 0, ENS_STREAM_TEST, 2);
  float x[B * N], gamma[N], beta[N], c[B * N], y[B * N], xhat[B * N], invstd[N];
  float rm[N] = {0}, rv[N] = {1, 1, 1, 1, 1};
  fill_normal(x, B * N, 1.0, 2.0, &r);
  fill_normal(gamma, N, 1.0, 0.5, &r);
  fill_normal(beta, N, 0.0, 1.0, &r);
  fill_normal(c, B * N, 0.0, 1.0, &r);
  bn_ctx d = {B, N, eps, to_double(x, B * N), to_double(gamma, N), to_double(beta, N),
              to_double(c, B * N)};
  CU_ASSERT_FATAL(d.x && d.gamma && d.beta && d.c);

  ens_batchnorm_forward_train(y, xhat, invstd, rm, rv, x, gamma, beta, B, N, 0.1f, eps);
  double yref[B * N];
  bn_ref(yref, &d);
  CU_CHECK_CLOSE(max_diff(y, yref, B * N), 0.0, 1e-5);

  float dx[B * N], dgamma[N], dbeta[N];
  ens_batchnorm_backward(dx, dgamma, dbeta, c, xhat, gamma, invstd, B, N);
  double gx[B * N], gg[N], gb[N];
  numeric_grad(gx, d.x, B * N, bn_loss, &d);
  numeric_grad(gg, d.gamma, N, bn_loss, &d);
  numeric_grad(gb, d.beta, N, bn_loss, &d);
  check_grad("batchnorm dx", dx, gx, B * N, GRAD_TOL, 0.0);
  check_grad("batchnorm dgamma", dgamma, gg, N, GRAD_TOL, 0.0);
  check_grad("batchnorm dbeta", dbeta, gb, N, GRAD_TOL, 0.0);

  /* dx may alias dy: same result in place. */
  float inplace[B * N], dg2[N], db2[N];
  memcpy(inplace, c, sizeof(c));
  ens_batchnorm_backward(inplace, dg2, db2, inplace, xhat, gamma, invstd, B, N);
  CU_ASSERT(memcmp(inplace, dx, sizeof(dx)) == 0);
  CU_ASSERT(memcmp(dg2, dgamma, sizeof(dg2)) == 0);
  CU_ASSERT(memcmp(db2, dbeta, sizeof(db2)) == 0);
  free(d.x);
  free(d.gamma);
  free(d.beta);
  free(d.c);
}

/* ------------------------------------------------------- relu and dropout */

typedef struct {
  size_t n;
  double *x, *c;
  const float *mask; /* NULL: relu; else dropout with this mask */
} ew_ctx;

static double ew_loss(void *ctx) {
  ew_ctx *d = ctx;
  double s = 0.0;
  for (size_t i = 0; i < d->n; i++) {
    double y = d->mask ? d->x[i] * d->mask[i] : (d->x[i] > 0.0 ? d->x[i] : 0.0);
    s += d->c[i] * y;
  }
  return s;
}

static void test_relu_grad(void) {
  enum { N = 40 };
  ens_rng r;
  ens_rng_init(&r, 3, 0, ENS_STREAM_TEST, 3);
  float x[N], c[N], y[N], dx[N];
  /* |x| >= 0.1 keeps the finite differences away from the kink. */
  for (int i = 0; i < N; i++) {
    float mag = (float)(0.1 + 2.0 * ens_rng_uniform(&r));
    x[i] = (i % 3 == 0) ? -mag : mag;
  }
  fill_normal(c, N, 0.0, 1.0, &r);
  ens_relu_forward(y, x, N);
  int ok = 1;
  for (int i = 0; i < N; i++)
    ok &= y[i] == (x[i] > 0.0f ? x[i] : 0.0f);
  CU_ASSERT(ok);
  ens_relu_backward(dx, c, y, N);
  ew_ctx d = {N, to_double(x, N), to_double(c, N), NULL};
  CU_ASSERT_FATAL(d.x && d.c);
  double g[N];
  numeric_grad(g, d.x, N, ew_loss, &d);
  check_grad("relu dx", dx, g, N, GRAD_TOL, 0.0);
  /* In place (dx aliases dy). */
  float inplace[N];
  memcpy(inplace, c, sizeof(c));
  ens_relu_backward(inplace, inplace, y, N);
  CU_ASSERT(memcmp(inplace, dx, sizeof(dx)) == 0);
  free(d.x);
  free(d.c);
}

static void test_dropout_grad(void) {
  enum { N = 64 };
  const float p = 0.3f;
  ens_rng r;
  ens_rng_init(&r, 4, 0, ENS_STREAM_TEST, 4);
  float x[N], c[N], y[N], mask[N], mask2[N], y2[N], dx[N];
  fill_normal(x, N, 0.0, 1.0, &r);
  fill_normal(c, N, 0.0, 1.0, &r);
  ens_rng_init(&r, 4, 0, ENS_STREAM_DROPOUT, 17);
  ens_dropout_forward(y, mask, x, p, N, &r);
  /* The same key draws the same mask. */
  ens_rng_init(&r, 4, 0, ENS_STREAM_DROPOUT, 17);
  ens_dropout_forward(y2, mask2, x, p, N, &r);
  CU_ASSERT(memcmp(mask, mask2, sizeof(mask)) == 0);
  CU_ASSERT(memcmp(y, y2, sizeof(y)) == 0);
  int ok = 1, zeros = 0;
  const float keep = 1.0f / (1.0f - p);
  for (int i = 0; i < N; i++) {
    ok &= mask[i] == 0.0f || mask[i] == keep;
    ok &= y[i] == x[i] * mask[i];
    zeros += mask[i] == 0.0f;
  }
  CU_ASSERT(ok);
  CU_ASSERT(zeros > 0 && zeros < N); /* both branches exercised */
  ens_dropout_backward(dx, c, mask, N);
  ew_ctx d = {N, to_double(x, N), to_double(c, N), mask};
  CU_ASSERT_FATAL(d.x && d.c);
  double g[N];
  numeric_grad(g, d.x, N, ew_loss, &d);
  check_grad("dropout dx", dx, g, N, GRAD_TOL, 0.0);
  free(d.x);
  free(d.c);
}

/* ---------------------------------------------------------------- softmax */

typedef struct {
  int batch, C;
  const double *z; /* (batch, C) logits */
  const int32_t *y;
} xent_ctx;

static double xent_ref(void *ctx) {
  xent_ctx *d = ctx;
  double loss = 0.0;
  for (int i = 0; i < d->batch; i++) {
    const double *z = d->z + i * d->C;
    double mx = z[0], s = 0.0;
    for (int k = 1; k < d->C; k++)
      mx = z[k] > mx ? z[k] : mx;
    for (int k = 0; k < d->C; k++)
      s += exp(z[k] - mx);
    loss += mx + log(s) - z[d->y[i]];
  }
  return loss / d->batch;
}

static void test_softmax_xent_grad(void) {
  enum { B = 5, C = 4 };
  ens_rng r;
  ens_rng_init(&r, 5, 0, ENS_STREAM_TEST, 5);
  float z[B * C], probs[B * C], dz[B * C], probs2[B * C];
  const int32_t y[B] = {0, 3, 1, 1, 2};
  fill_normal(z, B * C, 0.0, 3.0, &r);
  double *zd = to_double(z, B * C);
  CU_ASSERT_FATAL(zd != NULL);
  xent_ctx d = {B, C, zd, y};
  double loss = ens_softmax_xent(probs, dz, z, y, B, C);
  CU_CHECK_CLOSE(loss, xent_ref(&d), 1e-5);
  /* probs rows are the softmax and sum to 1; ens_softmax agrees. */
  ens_softmax(probs2, z, B, C);
  for (int i = 0; i < B; i++) {
    double s = 0.0;
    for (int k = 0; k < C; k++)
      s += probs[i * C + k];
    CU_CHECK_CLOSE(s, 1.0, 1e-6);
  }
  CU_ASSERT(memcmp(probs, probs2, sizeof(probs)) == 0);
  double g[B * C];
  numeric_grad(g, zd, B * C, xent_ref, &d);
  check_grad("softmax xent dlogits", dz, g, B * C, GRAD_TOL, 0.0);
  /* dlogits = NULL only skips the gradient. */
  CU_ASSERT(ens_softmax_xent(probs2, NULL, z, y, B, C) == loss);
  free(zd);

  /* Large logits neither overflow nor lose the true-class term:
   * z = {1000, 0, -1000}, y = 1: loss = 1000 + log(1 + e^-1000 + e^-2000). */
  const float big[3] = {1000.0f, 0.0f, -1000.0f};
  const int32_t y1 = 1;
  float pb[3], db[3];
  double lb = ens_softmax_xent(pb, db, big, &y1, 1, 3);
  CU_CHECK_CLOSE(lb, 1000.0, 1e-3);
  CU_CHECK_CLOSE(pb[0], 1.0, 1e-7);
  CU_CHECK_CLOSE(db[0], 1.0, 1e-7);
  CU_CHECK_CLOSE(db[1], -1.0, 1e-7);
  CU_CHECK_CLOSE(db[2], 0.0, 1e-7);
}

/* ------------------------------------------------------------ whole model */

/* Double-precision forward pass of m's layer table on parameters p (nparams)
 * and input x (batch, in), with dropout masks taken from the layers' aux
 * buffers of the last library training pass (batch norm uses batch
 * statistics). Returns the mean softmax cross-entropy against y. */
typedef struct {
  const ens_model *m;
  double *p, *x;
  const int32_t *y;
  int batch;
  const float *const *masks; /* per layer, dropout only */
  double *buf[2];            /* (batch, max width) each */
} model_ctx;

static double model_ref_loss(void *ctx) {
  model_ctx *d = ctx;
  const ens_model *m = d->m;
  const int B = d->batch;
  const double *cur = d->x;
  int w = m->in, which = 0;
  for (int li = 0; li < m->nlayers; li++) {
    const ens_layer *l = &m->layers[li];
    const double *p = d->p + l->param_off;
    double *out = d->buf[which];
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
    case ENS_LAYER_BATCHNORM:
      for (int j = 0; j < l->out; j++) {
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < B; i++)
          mean += cur[i * w + j];
        mean /= B;
        for (int i = 0; i < B; i++)
          var += (cur[i * w + j] - mean) * (cur[i * w + j] - mean);
        var /= B;
        double inv = 1.0 / sqrt(var + (double)m->bn_eps);
        for (int i = 0; i < B; i++)
          out[i * w + j] = p[j] * (cur[i * w + j] - mean) * inv + p[l->out + j];
      }
      break;
    case ENS_LAYER_RELU:
      for (int i = 0; i < B * w; i++)
        out[i] = cur[i] > 0.0 ? cur[i] : 0.0;
      break;
    case ENS_LAYER_DROPOUT:
      for (int i = 0; i < B * w; i++)
        out[i] = cur[i] * d->masks[li][i];
      break;
    default: /* image layers: checked in test_conv.c */
      CU_FAIL("image layer in an MLP check");
      break;
    }
    cur = out;
    w = l->out;
    which = 1 - which;
  }
  xent_ctx xc = {B, w, cur, d->y};
  return xent_ref(&xc);
}

/* One gradient check of the 3-layer network; `seed` picks the weights, the
 * input and the dropout masks. */
static void model_grad_case(uint64_t seed) {
  enum { B = 8, IN = 6, C = 4 };
  ens_arch a = {.in = IN, .width = C, .outputs = C, .n_hidden = 2, .hidden = {7, 5}, .batchnorm = 1,
                .dropout = 0.3f};
  ens_model m;
  CU_ASSERT_FATAL(ens_model_create(&m, &a, 0, 2, 1, B) == 0);
  CU_ASSERT_EQUAL(m.nlayers, 9); /* (dense bn relu dropout) x 2 + dense */
  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_HE, 0.0, 0.1, seed, 0) == 0);
  ens_rng r;
  ens_rng_init(&r, seed, 0, ENS_STREAM_TEST, 6);
  /* Move gamma, beta and the output bias off their initial values so that
   * every parameter's gradient is generic. */
  for (int i = 0; i < m.nlayers; i++) {
    ens_layer *l = &m.layers[i];
    float *p = m.params + l->param_off;
    if (l->kind == ENS_LAYER_BATCHNORM) {
      fill_normal(p, (size_t)l->out, 1.0, 0.3, &r);
      fill_normal(p + l->out, (size_t)l->out, 0.0, 0.3, &r);
    } else if (l->kind == ENS_LAYER_DENSE) {
      fill_normal(p + (size_t)l->out * l->in, (size_t)l->out, 0.0, 0.3, &r);
    }
  }
  float x[B * IN];
  const int32_t y[B] = {0, 1, 2, 3, 3, 2, 1, 0};
  fill_normal(x, B * IN, 0.0, 1.0, &r);

  /* Library: forward with a fixed dropout key, then the analytic gradient. */
  ens_rng drop;
  ens_rng_init(&drop, seed, 0, ENS_STREAM_DROPOUT, 3);
  ens_model_forward(&m, x, B, ENS_PASS_TRAIN, &drop);
  float dx[B * IN];
  double loss = ens_model_loss_backward(&m, y, NULL, B, dx);
  float *grads = malloc(m.nparams * sizeof(float));
  float *masks_store = malloc((size_t)m.nlayers * B * 7 * sizeof(float));
  const float *masks[9] = {0};
  CU_ASSERT_FATAL(grads && masks_store);
  memcpy(grads, m.grads, m.nparams * sizeof(float));
  int nzero = 0, nmask = 0;
  for (int i = 0; i < m.nlayers; i++)
    if (m.layers[i].kind == ENS_LAYER_DROPOUT) {
      size_t n = (size_t)B * m.layers[i].out;
      float *dst = masks_store + (size_t)i * B * 7;
      memcpy(dst, m.layers[i].aux, n * sizeof(float));
      masks[i] = dst;
      for (size_t k = 0; k < n; k++)
        nzero += dst[k] == 0.0f;
      nmask += (int)n;
    }
  CU_ASSERT(nzero > 0 && nzero < nmask); /* dropout is really on */

  /* The same key reproduces the forward pass and the gradient bit for bit. */
  ens_rng_init(&drop, seed, 0, ENS_STREAM_DROPOUT, 3);
  ens_model_forward(&m, x, B, ENS_PASS_TRAIN, &drop);
  float dx2[B * IN];
  CU_ASSERT(ens_model_loss_backward(&m, y, NULL, B, dx2) == loss);
  CU_ASSERT(memcmp(grads, m.grads, m.nparams * sizeof(float)) == 0);
  CU_ASSERT(memcmp(dx, dx2, sizeof(dx)) == 0);

  /* The double reference computes the library's loss. */
  model_ctx d = {&m, to_double(m.params, m.nparams), to_double(x, B * IN), y, B, masks,
                 {malloc(B * 7 * sizeof(double)), malloc(B * 7 * sizeof(double))}};
  CU_ASSERT_FATAL(d.p && d.x && d.buf[0] && d.buf[1]);
  CU_CHECK_CLOSE(model_ref_loss(&d), loss, 1e-5 * (1.0 + fabs(loss)));

  double *gp = malloc(m.nparams * sizeof(double));
  double gx[B * IN];
  CU_ASSERT_FATAL(gp != NULL);
  numeric_grad(gp, d.p, m.nparams, model_ref_loss, &d);
  numeric_grad(gx, d.x, B * IN, model_ref_loss, &d);
  /* Per layer, so a failure names the tensor. */
  const double gscale = max_abs(gp, m.nparams);
  char name[64];
  for (int i = 0; i < m.nlayers; i++) {
    const ens_layer *l = &m.layers[i];
    if (!l->nparam)
      continue;
    size_t nw = l->kind == ENS_LAYER_DENSE ? (size_t)l->out * l->in : (size_t)l->out;
    snprintf(name, sizeof(name), "model layer %d %s", i,
             l->kind == ENS_LAYER_DENSE ? "weight" : "gamma");
    check_grad(name, grads + l->param_off, gp + l->param_off, nw, GRAD_TOL, gscale);
    snprintf(name, sizeof(name), "model layer %d %s", i,
             l->kind == ENS_LAYER_DENSE ? "bias" : "beta");
    check_grad(name, grads + l->param_off + nw, gp + l->param_off + nw, (size_t)l->out,
               GRAD_TOL, gscale);
  }
  check_grad("model all params", grads, gp, m.nparams, GRAD_TOL, 0.0);
  check_grad("model dx_out", dx, gx, B * IN, GRAD_TOL, 0.0);

  /* The reference is the library's function around the base point too: at
   * random nearby parameters (offsets of 1e-2), the library's float forward
   * with the same dropout key gives the reference's loss. */
  float *psave = malloc(m.nparams * sizeof(float));
  CU_ASSERT_FATAL(psave != NULL);
  memcpy(psave, m.params, m.nparams * sizeof(float));
  double worst = 0.0;
  for (int trial = 0; trial < 4; trial++) {
    for (size_t k = 0; k < m.nparams; k++) {
      m.params[k] = psave[k] + (float)(1e-2 * ens_rng_normal(&r));
      d.p[k] = m.params[k];
    }
    ens_rng_init(&drop, seed, 0, ENS_STREAM_DROPOUT, 3);
    ens_model_forward(&m, x, B, ENS_PASS_TRAIN, &drop);
    double lib = ens_model_loss_backward(&m, y, NULL, B, NULL);
    worst = fmax(worst, fabs(lib - model_ref_loss(&d)) / (1.0 + fabs(lib)));
  }
  CU_CHECK_CLOSE(worst, 0.0, 1e-5);
  /* Directional derivative of the library's own float loss along the
   * gradient u = g / |g|: L(p + h u) - L(p - h u) = g . (p+ - p-), with the
   * float-rounded p+ and p- actually used. With h = 2e-4, float rounding of
   * the loss allows ~1e-3 relative (ReLU kinks within h of a unit could add
   * more; none for these seeds); the double check above is the strict one. */
  double gnorm = 0.0;
  for (size_t k = 0; k < m.nparams; k++)
    gnorm += (double)grads[k] * grads[k];
  gnorm = sqrt(gnorm);
  const double hdir = 2e-4;
  double lpm[2], want = 0.0;
  for (int sgn = 0; sgn < 2; sgn++) {
    double h = sgn ? -hdir : hdir;
    for (size_t k = 0; k < m.nparams; k++) {
      m.params[k] = (float)(psave[k] + h * grads[k] / gnorm);
      want += (sgn ? -1.0 : 1.0) * (double)grads[k] * ((double)m.params[k] - psave[k]);
    }
    ens_rng_init(&drop, seed, 0, ENS_STREAM_DROPOUT, 3);
    ens_model_forward(&m, x, B, ENS_PASS_TRAIN, &drop);
    lpm[sgn] = ens_model_loss_backward(&m, y, NULL, B, NULL);
  }
  memcpy(m.params, psave, m.nparams * sizeof(float));
  double got = lpm[0] - lpm[1], dir_err = fabs(got - want) / fabs(want);
  if (dir_err > 1e-2 || getenv("ENS_TEST_VERBOSE"))
    fprintf(stderr, "\n  library forward: loss change %.6g along the gradient, predicted %.6g "
            "(rel %.3g)\n", got, want, dir_err);
  CU_ASSERT(dir_err <= 1e-2);
  free(psave);

  free(gp);
  free(d.p);
  free(d.x);
  free(d.buf[0]);
  free(d.buf[1]);
  free(grads);
  free(masks_store);
  ens_model_free(&m);
}

/* The regression heads inside a whole network (dense, batch norm, ReLU,
 * output): the gradient the model's backward pass returns for the Gaussian
 * NLL and the MSE heads must predict the change of the model's own loss
 * along random directions and along the gradient. The heads' kernels have
 * their own double-precision checks in test_regress.c; this one checks that
 * the head's output gradient enters the backward chain correctly. */
static double head_loss(ens_model *m, const float *x, const float *t, int B) {
  ens_model_forward(m, x, B, ENS_PASS_TRAIN, NULL);
  return ens_model_loss_backward(m, NULL, t, B, NULL);
}

static void head_grad_case(ens_head_kind head, uint64_t seed) {
  enum { B = 16, IN = 5, T = 2 };
  ens_arch a = {.in = IN, .head = head, .width = T,
                .outputs = head == ENS_HEAD_GAUSSIAN ? 2 * T : T, .n_hidden = 2,
                .hidden = {9, 6}, .batchnorm = 1};
  ens_model m;
  CU_ASSERT_FATAL(ens_model_create(&m, &a, 0, 2, 1, B) == 0);
  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_HE, 0.0, 0.1, seed, 0) == 0);
  ens_rng r;
  ens_rng_init(&r, seed, 0, ENS_STREAM_TEST, 17);
  float x[B * IN], t[B * T], dx[B * IN];
  fill_normal(x, B * IN, 0.0, 1.0, &r);
  fill_normal(t, B * T, 0.0, 1.0, &r);
  /* The batch-norm running statistics change with every training forward;
   * they do not enter the training loss, so they need no restoring. */
  ens_model_forward(&m, x, B, ENS_PASS_TRAIN, NULL);
  double loss = ens_model_loss_backward(&m, NULL, t, B, dx);
  CU_ASSERT(isfinite(loss));
  float *g = malloc(m.nparams * sizeof(float)), *p0 = malloc(m.nparams * sizeof(float));
  float *u = malloc(m.nparams * sizeof(float));
  CU_ASSERT_FATAL(g && p0 && u);
  memcpy(g, m.grads, m.nparams * sizeof(float));
  memcpy(p0, m.params, m.nparams * sizeof(float));
  double gnorm = 0;
  for (size_t k = 0; k < m.nparams; k++)
    gnorm += (double)g[k] * g[k];
  gnorm = sqrt(gnorm);
  CU_ASSERT_FATAL(gnorm > 0);
  const double h = 1e-3;
  for (int dir = 0; dir < 6; dir++) {
    /* Direction 0: the gradient; then random unit directions. */
    double un = 0;
    for (size_t k = 0; k < m.nparams; k++) {
      u[k] = dir == 0 ? g[k] : (float)ens_rng_normal(&r);
      un += (double)u[k] * u[k];
    }
    un = sqrt(un);
    double want = 0, lpm[2];
    for (int sgn = 0; sgn < 2; sgn++) {
      double s = sgn ? -h : h;
      for (size_t k = 0; k < m.nparams; k++) {
        m.params[k] = (float)(p0[k] + s * u[k] / un);
        want += (sgn ? -1.0 : 1.0) * (double)g[k] * ((double)m.params[k] - p0[k]);
      }
      lpm[sgn] = head_loss(&m, x, t, B);
    }
    double got = lpm[0] - lpm[1];
    /* Float rounding of the loss (~1e-7 relative) over 2h: allow 2 % of the
     * gradient norm times the step, or 1 % along the gradient itself. */
    double tol = dir == 0 ? 1e-2 * fabs(want) : 2e-2 * gnorm * 2 * h;
    if (fabs(got - want) > tol)
      fprintf(stderr, "\n  %s head, direction %d: loss change %.6g, gradient predicts %.6g\n",
              head == ENS_HEAD_GAUSSIAN ? "gaussian" : "mse", dir, got, want);
    CU_ASSERT(fabs(got - want) <= tol);
  }
  /* The input gradient: the same along random input directions. */
  memcpy(m.params, p0, m.nparams * sizeof(float));
  for (int dir = 0; dir < 4; dir++) {
    float xu[B * IN], xp[B * IN];
    double xn = 0, gx = 0;
    for (int k = 0; k < B * IN; k++) {
      xu[k] = (float)ens_rng_normal(&r);
      xn += (double)xu[k] * xu[k];
    }
    xn = sqrt(xn);
    double lpm[2];
    for (int sgn = 0; sgn < 2; sgn++) {
      for (int k = 0; k < B * IN; k++)
        xp[k] = (float)(x[k] + (sgn ? -h : h) * xu[k] / xn);
      lpm[sgn] = head_loss(&m, xp, t, B);
    }
    for (int k = 0; k < B * IN; k++)
      gx += (double)dx[k] * (2 * h * xu[k] / xn);
    double dn = 0;
    for (int k = 0; k < B * IN; k++)
      dn += (double)dx[k] * dx[k];
    CU_ASSERT(fabs((lpm[0] - lpm[1]) - gx) <= 2e-2 * sqrt(dn) * 2 * h + 1e-6);
  }
  free(g);
  free(p0);
  free(u);
  ens_model_free(&m);
}

static void test_head_grad(void) {
  for (uint64_t s = 1; s <= 3; s++) {
    head_grad_case(ENS_HEAD_GAUSSIAN, s);
    head_grad_case(ENS_HEAD_MSE, s);
  }
}

/* Prediction rows of the heads: Gaussian means then variances >= the floor;
 * MSE means then zeros. */
static void test_head_predict(void) {
  enum { B = 5, IN = 3, T = 2 };
  for (int hk = 0; hk < 2; hk++) {
    ens_head_kind head = hk ? ENS_HEAD_MSE : ENS_HEAD_GAUSSIAN;
    ens_arch a = {.in = IN, .head = head, .width = T, .outputs = hk ? T : 2 * T,
                  .n_hidden = 1, .hidden = {4}};
    ens_model m;
    CU_ASSERT_FATAL(ens_model_create(&m, &a, 0, 1, 1, B) == 0);
    CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_HE, 0, 0, 3, 0) == 0);
    CU_ASSERT_EQUAL(ens_arch_pred_width(&a), 2 * T);
    float x[B * IN], pred[B * 2 * T];
    ens_rng r;
    ens_rng_init(&r, 5, 0, ENS_STREAM_TEST, 0);
    fill_normal(x, B * IN, 0.0, 1.0, &r);
    ens_model_predict(&m, pred, x, B);
    const float *z = ens_model_forward(&m, x, B, ENS_PASS_EVAL, NULL);
    for (int i = 0; i < B; i++)
      for (int t = 0; t < T; t++) {
        CU_ASSERT_EQUAL(pred[i * 2 * T + t], z[i * a.outputs + t]);
        if (hk) {
          CU_ASSERT_EQUAL(pred[i * 2 * T + T + t], 0.0f);
        } else {
          CU_ASSERT(pred[i * 2 * T + T + t] >= ENS_VAR_FLOOR);
        }
      }
    ens_model_free(&m);
  }
}

static void test_model_grad(void) {
  const char *env = getenv("ENS_TEST_GRAD_SEEDS"); /* more seeds, for calibration */
  int n = env ? atoi(env) : 3;
  for (int k = 0; k < n; k++)
    model_grad_case(11 + (uint64_t)k);
}

/* ------------------------------------------------------------------- init */

/* Mean and variance of n floats, in double. */
static void moments(const float *v, size_t n, double *mean, double *var) {
  double s = 0.0, ss = 0.0;
  for (size_t i = 0; i < n; i++)
    s += v[i];
  *mean = s / (double)n;
  for (size_t i = 0; i < n; i++)
    ss += (v[i] - *mean) * (v[i] - *mean);
  *var = ss / (double)n;
}

static void check_var(const char *what, const float *w, size_t n, double want) {
  double mean, var;
  moments(w, n, &mean, &var);
  /* sd of the sample variance is want sqrt(2/n) = 0.28 % for 512 x 512. */
  if (fabs(var / want - 1.0) > 0.05 || fabs(mean) > 5.0 * sqrt(want / (double)n))
    fprintf(stderr, "\n  %s: mean %.4g, variance %.6g, expected 0 and %.6g (5 %%)\n", what, mean,
            var, want);
  CU_ASSERT(fabs(var / want - 1.0) <= 0.05);
  CU_ASSERT(fabs(mean) <= 5.0 * sqrt(want / (double)n));
}

static void test_init_variance(void) {
  enum { W = 512 };
  ens_arch a = {.in = W, .width = W, .outputs = W, .n_hidden = 1, .hidden = {W}, .batchnorm = 0};
  ens_model m;
  CU_ASSERT_FATAL(ens_model_create(&m, &a, 0, 1, 1, 1) == 0);
  const size_t nw = (size_t)W * W;
  const ens_layer *hid = &m.layers[0], *out = &m.layers[m.nlayers - 1];
  CU_ASSERT_FATAL(hid->kind == ENS_LAYER_DENSE && out->kind == ENS_LAYER_DENSE);

  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_XAVIER, 0.0, 0.0, 1, 0) == 0);
  check_var("xavier hidden", m.params + hid->param_off, nw, 2.0 / (W + W));
  check_var("xavier output", m.params + out->param_off, nw, 2.0 / (W + W));

  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_HE, 0.0, 0.05, 1, 0) == 0);
  check_var("he hidden", m.params + hid->param_off, nw, 2.0 / W);
  /* The output layer is linear: gain 1 (model.c). */
  check_var("he output", m.params + out->param_off, nw, 1.0 / W);
  /* Biases: bias_init for hidden units, 0 for the output. */
  int ok = 1;
  for (int j = 0; j < W; j++) {
    ok &= m.params[hid->param_off + nw + j] == 0.05f;
    ok &= m.params[out->param_off + nw + j] == 0.0f;
  }
  CU_ASSERT(ok);

  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_NORMAL, 0.03, 0.0, 1, 0) == 0);
  check_var("normal(0.03)", m.params + hid->param_off, nw, 0.03 * 0.03);

  /* Same (seed, member): same weights; another member: different ones. */
  float *copy = malloc(m.nparams * sizeof(float));
  CU_ASSERT_FATAL(copy != NULL);
  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_HE, 0.0, 0.0, 9, 2) == 0);
  memcpy(copy, m.params, m.nparams * sizeof(float));
  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_HE, 0.0, 0.0, 9, 2) == 0);
  CU_ASSERT(memcmp(copy, m.params, m.nparams * sizeof(float)) == 0);
  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_HE, 0.0, 0.0, 9, 3) == 0);
  CU_ASSERT(memcmp(copy, m.params, nw * sizeof(float)) != 0);
  free(copy);
  ens_model_free(&m);

  /* A non-square layer separates Xavier, 2 / (in + out), from 1 / in or
   * 1 / out: 512 -> 256 -> 512. */
  ens_arch rect = {.in = W, .width = W, .outputs = W, .n_hidden = 1, .hidden = {W / 2}, .batchnorm = 0};
  CU_ASSERT_FATAL(ens_model_create(&m, &rect, 0, 1, 1, 1) == 0);
  hid = &m.layers[0];
  out = &m.layers[m.nlayers - 1];
  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_XAVIER, 0.0, 0.0, 2, 0) == 0);
  check_var("xavier 512->256", m.params + hid->param_off, nw / 2, 2.0 / (W + W / 2));
  check_var("xavier 256->512", m.params + out->param_off, nw / 2, 2.0 / (W + W / 2));
  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_HE, 0.0, 0.0, 2, 0) == 0);
  check_var("he 512->256", m.params + hid->param_off, nw / 2, 2.0 / W);
  check_var("he output 256->512", m.params + out->param_off, nw / 2, 1.0 / (W / 2));
  ens_model_free(&m);
}

/* Largest |(G - gain^2 I)_ij| of the Gram matrix G = W^T W (cols) when
 * by_cols, else W W^T (rows), for w (rows, cols). */
static double gram_error(const float *w, int rows, int cols, int by_cols, double gain) {
  int k = by_cols ? cols : rows, len = by_cols ? rows : cols;
  double worst = 0.0;
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++) {
      double s = 0.0;
      for (int t = 0; t < len; t++) {
        double a = by_cols ? w[(size_t)t * cols + i] : w[(size_t)i * cols + t];
        double b = by_cols ? w[(size_t)t * cols + j] : w[(size_t)j * cols + t];
        s += a * b;
      }
      double e = fabs(s - (i == j ? gain * gain : 0.0));
      worst = e > worst ? e : worst;
    }
  return worst;
}

static void test_init_orthogonal(void) {
  const struct {
    int rows, cols, by_cols;
    const char *what;
  } shapes[] = {
      {64, 64, 1, "square W^T W"}, {64, 64, 0, "square W W^T"}, {96, 48, 1, "tall W^T W"},
      {48, 96, 0, "wide W W^T"},   {1, 10, 0, "one row"},       {10, 1, 1, "one column"},
  };
  ens_rng r;
  for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
    int rows = shapes[s].rows, cols = shapes[s].cols;
    float *w = malloc((size_t)rows * cols * sizeof(float));
    CU_ASSERT_FATAL(w != NULL);
    ens_rng_init(&r, 8, 0, ENS_STREAM_TEST, (uint32_t)s);
    CU_ASSERT_FATAL(ens_init_orthogonal(w, rows, cols, 1.0, &r) == 0);
    double e = gram_error(w, rows, cols, shapes[s].by_cols, 1.0);
    if (e > 1e-4)
      fprintf(stderr, "\n  orthogonal %s (%dx%d): max |G - I| = %.3g\n", shapes[s].what, rows,
              cols, e);
    CU_ASSERT(e <= 1e-4);
    /* gain scales: G = gain^2 I. */
    ens_rng_init(&r, 8, 0, ENS_STREAM_TEST, (uint32_t)s);
    CU_ASSERT_FATAL(ens_init_orthogonal(w, rows, cols, 2.0, &r) == 0);
    CU_ASSERT(gram_error(w, rows, cols, shapes[s].by_cols, 2.0) <= 4e-4);
    free(w);
  }
  /* Through the model: hidden layers get gain sqrt(2) (they feed a ReLU). */
  ens_arch a = {.in = 64, .width = 3, .outputs = 3, .n_hidden = 1, .hidden = {32}, .batchnorm = 0};
  ens_model m;
  CU_ASSERT_FATAL(ens_model_create(&m, &a, 0, 1, 1, 1) == 0);
  CU_ASSERT_FATAL(ens_model_init(&m, ENS_INIT_ORTHOGONAL, 0.0, 0.0, 1, 0) == 0);
  CU_ASSERT(gram_error(m.params, 32, 64, 0, sqrt(2.0)) <= 2e-4);
  ens_model_free(&m);
}

/* -------------------------------------------------------- batch norm modes */

static void test_batchnorm_train_eval(void) {
  enum { B = 64, N = 3 };
  const float eps = 1e-5f;
  ens_rng r;
  ens_rng_init(&r, 10, 0, ENS_STREAM_TEST, 10);
  float x[B * N], y[B * N], xhat[B * N], invstd[N];
  for (int i = 0; i < B; i++) {
    x[i * N + 0] = (float)(5.0 + 3.0 * ens_rng_normal(&r));
    x[i * N + 1] = (float)(-2.0 + 0.1 * ens_rng_normal(&r));
    x[i * N + 2] = (float)(100.0 + 20.0 * ens_rng_normal(&r));
  }
  const float gamma1[N] = {1, 1, 1}, beta0[N] = {0, 0, 0};
  /* Running statistics far from the batch's: they must not matter. */
  float rm[N] = {100.0f, -50.0f, 0.0f}, rv[N] = {1e-3f, 1e3f, 7.0f};
  ens_batchnorm_forward_train(y, xhat, invstd, rm, rv, x, gamma1, beta0, B, N, 0.1f, eps);
  for (int j = 0; j < N; j++) {
    double mean = 0.0, var = 0.0, xm = 0.0, xv = 0.0;
    for (int i = 0; i < B; i++) {
      mean += y[i * N + j];
      xm += x[i * N + j];
    }
    mean /= B;
    xm /= B;
    for (int i = 0; i < B; i++) {
      var += (y[i * N + j] - mean) * (y[i * N + j] - mean);
      xv += (x[i * N + j] - xm) * (x[i * N + j] - xm);
    }
    var /= B;
    xv /= B;
    CU_CHECK_CLOSE(mean, 0.0, 1e-5);
    /* Biased variance var / (var + eps): 1 up to eps / var <= 1e-3. */
    CU_CHECK_CLOSE(var, xv / (xv + eps), 1e-4);
    CU_CHECK_CLOSE(var, 1.0, 2e-3);
    CU_CHECK_CLOSE(invstd[j], 1.0 / sqrt(xv + eps), 1e-5 / sqrt(xv + eps));
  }

  /* Eval: y = gamma (x - rm) / sqrt(rv + eps) + beta, row by row, with the
   * running statistics as given and left unchanged. */
  const float gamma[N] = {2.0f, -0.5f, 1.5f}, beta[N] = {0.25f, 1.0f, -3.0f};
  const float em[N] = {4.0f, -2.5f, 90.0f}, ev[N] = {9.0f, 0.25f, 400.0f};
  float em2[N], ev2[N], y1[N];
  memcpy(em2, em, sizeof(em));
  memcpy(ev2, ev, sizeof(ev));
  ens_batchnorm_forward_eval(y, x, gamma, beta, em2, ev2, B, N, eps);
  CU_ASSERT(memcmp(em, em2, sizeof(em)) == 0 && memcmp(ev, ev2, sizeof(ev)) == 0);
  double worst = 0.0;
  for (int i = 0; i < B; i++)
    for (int j = 0; j < N; j++) {
      double want = gamma[j] * (x[i * N + j] - em[j]) / sqrt((double)ev[j] + eps) + beta[j];
      worst = fmax(worst, fabs(y[i * N + j] - want) / (1.0 + fabs(want)));
    }
  CU_CHECK_CLOSE(worst, 0.0, 1e-6);
  /* Eval output of a row does not depend on the rest of the batch. */
  ens_batchnorm_forward_eval(y1, x + 5 * N, gamma, beta, em, ev, 1, N, eps);
  CU_ASSERT(memcmp(y1, y + 5 * N, sizeof(y1)) == 0);
}

static void test_batchnorm_running_stats(void) {
  /* x (4, 2):   col 0 = 1, 2, 3, 4      mean 2.5, sum sq dev 5  -> biased 1.25, unbiased 5/3
   *             col 1 = 10, 10, 13, 15  mean 12,  sum sq dev 18 -> biased 4.5,  unbiased 6
   * momentum 0.1 from rm = {0.5, -1}, rv = {1, 2}:
   *   rm = 0.9 rm + 0.1 mean     = {0.45 + 0.25, -0.9 + 1.2}  = {0.7, 0.3}
   *   rv = 0.9 rv + 0.1 unbiased = {0.9 + 1/6, 1.8 + 0.6}     = {1.0666667, 2.4}
   * a second identical batch:
   *   rm = {0.63 + 0.25, 0.27 + 1.2} = {0.88, 1.47}
   *   rv = {0.96 + 1/6, 2.16 + 0.6}  = {1.1266667, 2.76} */
  const float x[8] = {1, 10, 2, 10, 3, 13, 4, 15};
  const float gamma[2] = {1, 1}, beta[2] = {0, 0};
  float rm[2] = {0.5f, -1.0f}, rv[2] = {1.0f, 2.0f};
  float y[8], xhat[8], invstd[2];
  ens_batchnorm_forward_train(y, xhat, invstd, rm, rv, x, gamma, beta, 4, 2, 0.1f, 1e-5f);
  CU_CHECK_CLOSE(rm[0], 0.7, 1e-6);
  CU_CHECK_CLOSE(rm[1], 0.3, 1e-6);
  CU_CHECK_CLOSE(rv[0], 0.9 + 0.1 * 5.0 / 3.0, 1e-6);
  CU_CHECK_CLOSE(rv[1], 2.4, 1e-6);
  CU_CHECK_CLOSE(invstd[0], 1.0 / sqrt(1.25 + 1e-5), 1e-6);
  CU_CHECK_CLOSE(invstd[1], 1.0 / sqrt(4.5 + 1e-5), 1e-6);
  CU_CHECK_CLOSE(xhat[0], -1.5 / sqrt(1.25 + 1e-5), 1e-6);
  CU_CHECK_CLOSE(xhat[7], 3.0 / sqrt(4.5 + 1e-5), 1e-6);
  ens_batchnorm_forward_train(y, xhat, invstd, rm, rv, x, gamma, beta, 4, 2, 0.1f, 1e-5f);
  CU_CHECK_CLOSE(rm[0], 0.88, 1e-6);
  CU_CHECK_CLOSE(rm[1], 1.47, 1e-6);
  CU_CHECK_CLOSE(rv[0], 0.96 + 0.1 * 5.0 / 3.0, 1e-6);
  CU_CHECK_CLOSE(rv[1], 2.76, 1e-6);
}

/* A model whose first dense layer is the identity (in = hidden[0], w = I,
 * b = 0), so the first batch norm sees x itself. */
static int identity_bn_model(ens_model *m, int width, int batch_max, float dropout) {
  ens_arch a = {.in = width, .width = 2, .outputs = 2, .n_hidden = 1, .hidden = {width}, .batchnorm = 1,
                .dropout = dropout};
  int ret = ens_model_create(m, &a, 0, 1, 1, batch_max);
  if (ret)
    return ret;
  ret = ens_model_init(m, ENS_INIT_HE, 0.0, 0.0, 1, 0);
  if (ret)
    return ret;
  float *w = m->params + m->layers[0].param_off;
  memset(w, 0, ((size_t)width * width + width) * sizeof(float));
  for (int j = 0; j < width; j++)
    w[(size_t)j * width + j] = 1.0f;
  return 0;
}

static void test_model_bn_passes(void) {
  enum { W = 3, B = 16 };
  ens_model m;
  CU_ASSERT_FATAL(identity_bn_model(&m, W, B, 0.0f) == 0);
  CU_ASSERT_FATAL(m.layers[1].kind == ENS_LAYER_BATCHNORM);
  ens_rng r;
  ens_rng_init(&r, 12, 0, ENS_STREAM_TEST, 12);
  float x[B * W];
  fill_normal(x, B * W, 3.0, 2.0, &r);
  float *stats = m.stats + m.layers[1].stat_off;
  float before[2 * W];
  memcpy(before, stats, sizeof(before));
  /* Eval leaves the statistics alone and uses them: with rm = 0, rv = 1,
   * gamma 1, beta 0 and the identity dense layer, bn(x) = x / sqrt(1 + eps). */
  ens_model_forward(&m, x, B, ENS_PASS_EVAL, NULL);
  CU_ASSERT(memcmp(before, stats, sizeof(before)) == 0);
  double worst = 0.0;
  for (int i = 0; i < B * W; i++)
    worst = fmax(worst, fabs(m.layers[1].y[i] - x[i] / sqrt(1.0 + 1e-5)));
  CU_CHECK_CLOSE(worst, 0.0, 1e-5);
  /* Train moves them toward the batch statistics by bn_momentum. */
  m.bn_momentum = 0.25f;
  ens_model_forward(&m, x, B, ENS_PASS_TRAIN, NULL);
  for (int j = 0; j < W; j++) {
    double mean = 0.0, ss = 0.0;
    for (int i = 0; i < B; i++)
      mean += x[i * W + j];
    mean /= B;
    for (int i = 0; i < B; i++)
      ss += (x[i * W + j] - mean) * (x[i * W + j] - mean);
    CU_CHECK_CLOSE(stats[j], 0.25 * mean, 1e-5);
    CU_CHECK_CLOSE(stats[W + j], 0.75 + 0.25 * ss / (B - 1), 1e-5);
  }
  ens_model_free(&m);
}

static void test_reestimate_bn(void) {
  enum { W = 3, BM = 10 };
  ens_model m;
  CU_ASSERT_FATAL(identity_bn_model(&m, W, BM, 0.0f) == 0);
  ens_rng r;
  ens_rng_init(&r, 13, 0, ENS_STREAM_TEST, 13);
  /* n = 43: batches of 10, 10, 10, 10, 3, each counted once (SWA update_bn's
   * cumulative average of batch statistics); n = 41 drops the final row, and
   * n <= BM is a single batch: the exact mean and unbiased variance. */
  float x[43 * W];
  for (int i = 0; i < 43; i++)
    for (int j = 0; j < W; j++)
      x[i * W + j] = (float)((j + 1.0) * ens_rng_normal(&r) + 2.0 * j - 1.0 + 0.05 * i);
  const int ns[] = {10, 7, 43, 41, 40};
  float *stats = m.stats + m.layers[1].stat_off;
  for (size_t s = 0; s < sizeof(ns) / sizeof(ns[0]); s++) {
    int n = ns[s];
    /* Stale statistics and counter: re-estimation starts from scratch. */
    for (int j = 0; j < W; j++) {
      stats[j] = 1e3f;
      stats[W + j] = 1e-3f;
    }
    m.bn_batches = 77;
    ens_model_reestimate_bn(&m, x, n);
    double want_m[W] = {0}, want_v[W] = {0};
    int nb = 0;
    for (int lo = 0; lo + 1 < n; lo += BM, nb++) {
      int b = n - lo < BM ? n - lo : BM;
      for (int j = 0; j < W; j++) {
        double mean = 0.0, ss = 0.0;
        for (int i = lo; i < lo + b; i++)
          mean += x[i * W + j];
        mean /= b;
        for (int i = lo; i < lo + b; i++)
          ss += (x[i * W + j] - mean) * (x[i * W + j] - mean);
        want_m[j] += mean;
        want_v[j] += ss / (b - 1);
      }
    }
    CU_ASSERT_EQUAL(m.bn_batches, nb);
    for (int j = 0; j < W; j++) {
      want_m[j] /= nb;
      want_v[j] /= nb;
      CU_CHECK_CLOSE(stats[j], want_m[j], 1e-5 * (1.0 + fabs(want_m[j])));
      CU_CHECK_CLOSE(stats[W + j], want_v[j], 1e-5 * want_v[j]);
    }
  }
  ens_model_free(&m);
}

/* ---------------------------------------------------------------- dropout */

static void test_dropout_statistics(void) {
  const size_t n = 1u << 20;
  float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
  float *mask = malloc(n * sizeof(float));
  CU_ASSERT_FATAL(x && y && mask);
  for (size_t i = 0; i < n; i++)
    x[i] = 1.0f + (float)(i % 7);
  const float ps[] = {0.1f, 0.3f, 0.5f};
  ens_rng r;
  for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
    ens_rng_init(&r, 14, 0, ENS_STREAM_DROPOUT, (uint32_t)k);
    ens_dropout_forward(y, mask, x, ps[k], n, &r);
    double s = 0.0;
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++) {
      s += mask[i];
      zeros += mask[i] == 0.0f;
    }
    /* sd(mean mask) = sqrt(p / (1 - p) / n) <= 1e-3, sd(zero fraction)
     * = sqrt(p (1 - p) / n) <= 5e-4: bounds of at least 5 sd. */
    CU_CHECK_CLOSE(s / (double)n, 1.0, 5e-3);
    CU_CHECK_CLOSE((double)zeros / (double)n, ps[k], 2.5e-3);
  }
  /* p = 0: the identity, mask all ones. */
  ens_rng_init(&r, 14, 0, ENS_STREAM_DROPOUT, 9);
  ens_dropout_forward(y, mask, x, 0.0f, n, &r);
  int ok = 1;
  for (size_t i = 0; i < n; i++)
    ok &= mask[i] == 1.0f && y[i] == x[i];
  CU_ASSERT(ok);
  free(x);
  free(y);
  free(mask);
}

static void test_dropout_eval(void) {
  enum { B = 12, IN = 5, C = 3 };
  ens_arch with = {.in = IN, .width = C, .outputs = C, .n_hidden = 2, .hidden = {8, 6}, .batchnorm = 1,
                   .dropout = 0.5f};
  ens_arch without = with;
  without.dropout = 0.0f;
  ens_model md, m0;
  CU_ASSERT_FATAL(ens_model_create(&md, &with, 0, 2, 1, B) == 0);
  CU_ASSERT_FATAL(ens_model_create(&m0, &without, 0, 2, 1, B) == 0);
  CU_ASSERT(md.nlayers == m0.nlayers + 2);
  /* Dropout has no parameters or statistics: the flat layouts coincide. */
  CU_ASSERT_FATAL(md.nparams == m0.nparams && md.nstats == m0.nstats);
  CU_ASSERT_FATAL(ens_model_init(&md, ENS_INIT_HE, 0.0, 0.0, 15, 0) == 0);
  ens_rng r;
  ens_rng_init(&r, 15, 0, ENS_STREAM_TEST, 15);
  float x[B * IN];
  fill_normal(x, B * IN, 0.0, 1.0, &r);
  /* Some training passes so the running statistics are not the defaults. */
  for (int t = 0; t < 3; t++) {
    ens_rng_init(&r, 15, 0, ENS_STREAM_DROPOUT, (uint32_t)t);
    ens_model_forward(&md, x, B, ENS_PASS_TRAIN, &r);
  }
  memcpy(m0.params, md.params, md.nparams * sizeof(float));
  memcpy(m0.stats, md.stats, md.nstats * sizeof(float));

  float out1[B * C], out2[B * C], out0[B * C];
  memcpy(out1, ens_model_forward(&md, x, B, ENS_PASS_EVAL, NULL), sizeof(out1));
  memcpy(out2, ens_model_forward(&md, x, B, ENS_PASS_EVAL, NULL), sizeof(out2));
  memcpy(out0, ens_model_forward(&m0, x, B, ENS_PASS_EVAL, NULL), sizeof(out0));
  CU_ASSERT(memcmp(out1, out2, sizeof(out1)) == 0);
  CU_ASSERT(memcmp(out1, out0, sizeof(out1)) == 0);
  /* predict agrees as well (it is an eval pass plus softmax). */
  float p1[B * C], p0[B * C];
  ens_model_predict(&md, p1, x, B);
  ens_model_predict(&m0, p0, x, B);
  CU_ASSERT(memcmp(p1, p0, sizeof(p1)) == 0);

  /* Training passes: the same key gives the same output, another key a
   * different one (dropout is active). */
  float t1[B * C], t2[B * C], t3[B * C];
  ens_rng_init(&r, 15, 0, ENS_STREAM_DROPOUT, 100);
  memcpy(t1, ens_model_forward(&md, x, B, ENS_PASS_TRAIN, &r), sizeof(t1));
  ens_rng_init(&r, 15, 0, ENS_STREAM_DROPOUT, 100);
  memcpy(t2, ens_model_forward(&md, x, B, ENS_PASS_TRAIN, &r), sizeof(t2));
  ens_rng_init(&r, 15, 0, ENS_STREAM_DROPOUT, 101);
  memcpy(t3, ens_model_forward(&md, x, B, ENS_PASS_TRAIN, &r), sizeof(t3));
  CU_ASSERT(memcmp(t1, t2, sizeof(t1)) == 0);
  CU_ASSERT(memcmp(t1, t3, sizeof(t1)) != 0);
  ens_model_free(&md);
  ens_model_free(&m0);
}

int main(void) {
  static const cu_case cases[] = {
      {"dense gradient", test_dense_grad},
      {"batchnorm gradient", test_batchnorm_grad},
      {"relu gradient", test_relu_grad},
      {"dropout gradient (fixed mask)", test_dropout_grad},
      {"softmax cross-entropy gradient", test_softmax_xent_grad},
      {"3-layer model gradient (params and inputs)", test_model_grad},
      {"regression heads in a network: gradient (params and inputs)", test_head_grad},
      {"regression heads: prediction rows", test_head_predict},
      {"xavier/he/normal init variance", test_init_variance},
      {"orthogonal init", test_init_orthogonal},
      {"batchnorm train vs eval", test_batchnorm_train_eval},
      {"batchnorm running statistics", test_batchnorm_running_stats},
      {"model batchnorm passes", test_model_bn_passes},
      {"batchnorm re-estimation", test_reestimate_bn},
      {"dropout mask statistics", test_dropout_statistics},
      {"dropout off in eval", test_dropout_eval},
      {NULL, NULL},
  };
  return cu_run_suite("nn", cases);
}
