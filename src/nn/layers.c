/* Rows of the layer table for the dense-shaped kinds: dense, batch norm,
 * ReLU and dropout. Each row wraps its kernels (dense.c, batchnorm.c,
 * activation.c) with shape inference, sizes and init. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ens/error.h"
#include "ens/nn.h"
#include "nn/layer.h"

static size_t no_size(const ens_layer *l) {
  (void)l;
  return 0;
}
static size_t no_buf(const ens_layer *l, int batch_max) {
  (void)l;
  (void)batch_max;
  return 0;
}
static int no_init(const ens_layer *l, float *p, const ens_init_args *a) {
  (void)l;
  (void)p;
  (void)a;
  return 0;
}
static void no_stats(const ens_layer *l, float *s) {
  (void)l;
  (void)s;
}
static int same_shape(ens_layer *l, char *err, size_t errlen) {
  (void)err;
  (void)errlen;
  l->sout = l->sin;
  return 0;
}
static int describe_width(const ens_model *m, const ens_layer *l, char *buf, size_t len,
                          int first) {
  (void)m;
  return snprintf(buf, len, "%s%s(%d)", first ? "" : " ", ens_layer_table[l->kind].name, l->out);
}

/* ------------------------------------------------------------------ dense */

static int dense_shape(ens_layer *l, char *err, size_t errlen) {
  if (l->sin.image) {
    snprintf(err, errlen, "a dense layer needs a flat input: add flatten before it");
    return ENS_EINVAL;
  }
  if (l->spec.n < 1) {
    snprintf(err, errlen, "a dense layer needs at least 1 unit");
    return ENS_EINVAL;
  }
  l->sout = (ens_shape){.c = l->spec.n, .h = 1, .w = 1, .image = 0};
  return 0;
}
static size_t dense_nparam(const ens_layer *l) { return (size_t)l->out * l->in + l->out; }

/* Weights (out, fan_in) by the init rule, biases after them. fan_in is in for
 * a dense layer (C k k for a convolution: the same code serves both). */
int ens_layer_init_weights(const ens_layer *l, float *p, int rows, int fan_in, int fan_out,
                           const ens_init_args *a) {
  ens_rng r;
  ens_rng_init(&r, a->seed, a->member, ENS_STREAM_INIT, (uint32_t)l->block);
  size_t nw = (size_t)rows * fan_in;
  /* Hidden layers feed a ReLU: He gain sqrt(2); the output layer is linear. */
  double relu_gain = a->is_output ? 1.0 : sqrt(2.0);
  switch (a->init) {
  case ENS_INIT_NORMAL:
    ens_init_normal(p, nw, a->init_std, &r);
    break;
  case ENS_INIT_XAVIER: /* Glorot & Bengio 2010: Var = 2 / (fan_in + fan_out) */
    ens_init_normal(p, nw, sqrt(2.0 / (fan_in + fan_out)), &r);
    break;
  case ENS_INIT_HE: /* He et al. 2015: Var = 2 / fan_in (gain 1 for the output) */
    ens_init_normal(p, nw, relu_gain / sqrt((double)fan_in), &r);
    break;
  case ENS_INIT_ORTHOGONAL: {
    int ret = ens_init_orthogonal(p, rows, fan_in, relu_gain, &r);
    if (ret)
      return ret;
    break;
  }
  }
  /* bias_init targets ReLU units (a small positive value keeps them alive);
   * the output layer's bias starts at 0 so no class is favoured. */
  for (int j = 0; j < rows; j++)
    p[nw + j] = a->is_output ? 0.0f : (float)a->bias_init;
  return 0;
}

static int dense_init(const ens_layer *l, float *p, const ens_init_args *a) {
  return ens_layer_init_weights(l, p, l->out, l->in, l->out, a);
}
static const float *dense_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                                  ens_pass pass, ens_rng *r, int index) {
  (void)pass;
  (void)r;
  (void)index;
  const float *p = m->params + l->param_off;
  ens_dense_forward(l->y, x, p, p + (size_t)l->out * l->in, batch, l->in, l->out);
  return l->y;
}
static void dense_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                           const float *p, int batch) {
  (void)m;
  ens_dense_backward(dx, g, g + (size_t)l->out * l->in, dy, l->x, p, batch, l->in, l->out);
}
static int dense_describe(const ens_model *m, const ens_layer *l, char *buf, size_t len,
                          int first) {
  (void)m;
  return snprintf(buf, len, "%sdense(%d,%d)", first ? "" : " ", l->in, l->out);
}

/* ------------------------------------------------------------- batch norm */

/* Flat input: one channel per feature. */
static size_t bn_nparam(const ens_layer *l) { return 2 * (size_t)l->sout.c; }
static size_t bn_naux(const ens_layer *l, int batch_max) {
  return (size_t)batch_max * l->out + (size_t)l->sout.c;
}
static int bn_init(const ens_layer *l, float *p, const ens_init_args *a) {
  (void)a;
  int n = l->sout.c;
  for (int j = 0; j < n; j++) {
    p[j] = 1.0f;     /* gamma */
    p[n + j] = 0.0f; /* beta */
  }
  return 0;
}
static void bn_init_stats(const ens_layer *l, float *s) {
  int n = l->sout.c;
  for (int j = 0; j < n; j++) {
    s[j] = 0.0f;     /* running mean */
    s[n + j] = 1.0f; /* running var */
  }
}
static const float *bn_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                               ens_pass pass, ens_rng *r, int index) {
  (void)r;
  (void)index;
  const float *p = m->params + l->param_off;
  float *s = m->stats + l->stat_off;
  float mom = m->bn_momentum;
  if (pass == ENS_PASS_BN_REESTIMATE)
    mom = 1.0f / (float)(m->bn_batches + 1); /* cumulative average */
  if (pass == ENS_PASS_EVAL || pass == ENS_PASS_MC)
    ens_batchnorm_forward_eval(l->y, x, p, p + l->out, s, s + l->out, batch, l->out, m->bn_eps);
  else
    ens_batchnorm_forward_train(l->y, l->aux, l->aux + (size_t)m->batch_max * l->out, s,
                                s + l->out, x, p, p + l->out, batch, l->out, mom, m->bn_eps);
  return l->y;
}
static void bn_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                        const float *p, int batch) {
  ens_batchnorm_backward(dx, g, g + l->out, dy, l->aux, p, l->aux + (size_t)m->batch_max * l->out,
                         batch, l->out);
}

/* ------------------------------------------------------------------- ReLU */

static const float *relu_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                                 ens_pass pass, ens_rng *r, int index) {
  (void)m;
  (void)pass;
  (void)r;
  (void)index;
  ens_relu_forward(l->y, x, (size_t)batch * l->out);
  return l->y;
}
static void relu_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                          const float *p, int batch) {
  (void)m;
  (void)g;
  (void)p;
  ens_relu_backward(dx, dy, l->y, (size_t)batch * l->out);
}

/* ---------------------------------------------------------------- dropout */

static size_t mask_naux(const ens_layer *l, int batch_max) { return (size_t)batch_max * l->out; }

/* Dropout of an MC pass: row i of the batch is row mc_row0 + i of the data,
 * and its mask is block (row * ceil(width/4)) of the stream keyed by
 * (seed, member, ENS_STREAM_MC, pass * 64 + layer). */
static void mc_dropout(ens_model *m, ens_layer *l, const float *x, int batch, uint32_t layer) {
  uint32_t blocks = (uint32_t)((l->out + 3) / 4);
  for (int i = 0; i < batch; i++) {
    ens_rng r;
    ens_rng_init(&r, m->mc_seed, m->mc_member, ENS_STREAM_MC, m->mc_pass * 64u + layer);
    ens_rng_seek(&r, (uint32_t)(m->mc_row0 + i) * blocks);
    size_t off = (size_t)i * l->out;
    ens_dropout_forward(l->y + off, l->aux + off, x + off, l->spec.p, (size_t)l->out, &r);
  }
}
static const float *dropout_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                                    ens_pass pass, ens_rng *r, int index) {
  if (pass == ENS_PASS_TRAIN) {
    ens_dropout_forward(l->y, l->aux, x, l->spec.p, (size_t)batch * l->out, r);
    return l->y;
  }
  if (pass == ENS_PASS_MC) {
    mc_dropout(m, l, x, batch, (uint32_t)index);
    return l->y;
  }
  return x; /* identity: the next layer reads the input directly */
}
static void dropout_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                             const float *p, int batch) {
  (void)m;
  (void)g;
  (void)p;
  ens_dropout_backward(dx, dy, l->aux, (size_t)batch * l->out);
}
static int dropout_describe(const ens_model *m, const ens_layer *l, char *buf, size_t len,
                            int first) {
  (void)m;
  return snprintf(buf, len, "%sdropout(%g)", first ? "" : " ", (double)l->spec.p);
}

/* ------------------------------------------------------------------ table */

#define ROW(name_, shape_, nparam_, nstat_, naux_, nwork_, init_, stats_, fwd_, bwd_, inplace_, \
            describe_)                                                                         \
  {.name = (name_), .shape = (shape_), .nparam = (nparam_), .nstat = (nstat_), .naux = (naux_),  \
   .nwork = (nwork_), .init = (init_), .init_stats = (stats_), .forward = (fwd_),                \
   .backward = (bwd_), .inplace = (inplace_), .describe = (describe_)}

const ens_layer_ops ens_layer_table[ENS_LAYER_KIND_COUNT] = {
    [ENS_LAYER_DENSE] = ROW("dense", dense_shape, dense_nparam, no_size, no_buf, no_buf,
                            dense_init, no_stats, dense_forward, dense_backward, 0,
                            dense_describe),
    [ENS_LAYER_BATCHNORM] = ROW("batchnorm", same_shape, bn_nparam, bn_nparam, bn_naux, no_buf,
                                bn_init, bn_init_stats, bn_forward, bn_backward, 1,
                                describe_width),
    [ENS_LAYER_RELU] = ROW("relu", same_shape, no_size, no_size, no_buf, no_buf, no_init,
                           no_stats, relu_forward, relu_backward, 1, describe_width),
    [ENS_LAYER_DROPOUT] = ROW("dropout", same_shape, no_size, no_size, mask_naux, no_buf, no_init,
                              no_stats, dropout_forward, dropout_backward, 1, dropout_describe),
};
