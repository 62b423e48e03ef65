/* The rows of the layer table: dense, batch norm (per feature, or per
 * channel of an image), ReLU, dropout, convolution, max/average pooling,
 * global average pooling and flatten. Each row wraps its kernels (dense.c,
 * batchnorm.c, batchnorm2d.c, activation.c, conv.c, pool.c) with shape
 * inference, sizes and init. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ens/conv.h"
#include "ens/error.h"
#include "ens/nn.h"
#include "nn/layer.h"
#include "nn/weightnorm.h"

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
  if (l->sout.image)
    return snprintf(buf, len, "%s%s(%d,%d,%d)", first ? "" : " ", ens_layer_table[l->kind].name,
                    l->sout.c, l->sout.h, l->sout.w);
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
  case ENS_INIT_TORCH: {
    /* PyTorch's default for nn.Linear and nn.Conv2d (kaiming_uniform_ with
     * a = sqrt(5)): weights and biases uniform in +-1/sqrt(fan_in), every
     * layer alike, the output layer included. The weights are drawn first,
     * then the biases, from the same stream. */
    const double bound = 1.0 / sqrt((double)fan_in);
    for (size_t i = 0; i < nw + (size_t)rows; i++)
      p[i] = (float)(bound * (2.0 * ens_rng_uniform(&r) - 1.0));
    return 0;
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
  if (l->sin.image) {
    const int C = l->sin.c, P = l->sin.h * l->sin.w;
    if (pass == ENS_PASS_EVAL || pass == ENS_PASS_MC)
      ens_batchnorm2d_forward_eval(l->y, x, p, p + C, s, s + C, batch, C, P, m->bn_eps);
    else
      ens_batchnorm2d_forward_train(l->y, l->aux, l->aux + (size_t)m->batch_max * l->out, s,
                                    s + C, x, p, p + C, batch, C, P, mom, m->bn_eps);
    return l->y;
  }
  if (pass == ENS_PASS_EVAL || pass == ENS_PASS_MC)
    ens_batchnorm_forward_eval(l->y, x, p, p + l->out, s, s + l->out, batch, l->out, m->bn_eps);
  else
    ens_batchnorm_forward_train(l->y, l->aux, l->aux + (size_t)m->batch_max * l->out, s,
                                s + l->out, x, p, p + l->out, batch, l->out, mom, m->bn_eps);
  return l->y;
}
static void bn_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                        const float *p, int batch) {
  if (l->sin.image) {
    const int C = l->sin.c;
    ens_batchnorm2d_backward(dx, g, g + C, dy, l->aux, p,
                             l->aux + (size_t)m->batch_max * l->out, batch, C,
                             l->sin.h * l->sin.w);
    return;
  }
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

/* ------------------------------------------------------------ image layers */

static int need_image(const ens_layer *l, const char *what, char *err, size_t errlen) {
  if (l->sin.image)
    return 0;
  snprintf(err, errlen, "%s needs an image input (C,H,W), not a flat one", what);
  return ENS_EINVAL;
}

/* The window geometry of a conv or pooling layer. */
static ens_conv_geom layer_geom(const ens_layer *l) {
  ens_conv_geom g = {.C = l->sin.c, .H = l->sin.h, .W = l->sin.w,
                     .O = l->spec.kind == ENS_LAYER_CONV ? l->spec.n : l->sin.c, .k = l->spec.k,
                     .stride = l->spec.stride, .pad = l->spec.pad};
  ens_conv_geom_init(&g);
  return g;
}

/* Shape of a window layer; pooling windows must tile the input exactly. */
static int window_shape(ens_layer *l, const char *what, int exact, char *err, size_t errlen) {
  if (need_image(l, what, err, errlen))
    return ENS_EINVAL;
  const ens_layer_spec *sp = &l->spec;
  if (sp->k < 1 || sp->stride < 1 || sp->pad < 0) {
    snprintf(err, errlen, "%s needs a size >= 1, stride >= 1 and pad >= 0", what);
    return ENS_EINVAL;
  }
  ens_conv_geom g = {.C = l->sin.c, .H = l->sin.h, .W = l->sin.w, .k = sp->k,
                     .stride = sp->stride, .pad = sp->pad};
  if (ens_conv_geom_init(&g)) {
    snprintf(err, errlen, "the %dx%d window is larger than the input's %dx%d%s", sp->k, sp->k,
             l->sin.h + 2 * sp->pad, l->sin.w + 2 * sp->pad, sp->pad ? " (with padding)" : "");
    return ENS_EINVAL;
  }
  if (exact && ((l->sin.h + 2 * sp->pad - sp->k) % sp->stride ||
                (l->sin.w + 2 * sp->pad - sp->k) % sp->stride)) {
    snprintf(err, errlen,
             "%dx%d windows every %d pixels do not divide the %dx%d input (rows or columns "
             "would be dropped)",
             sp->k, sp->k, sp->stride, l->sin.h, l->sin.w);
    return ENS_EINVAL;
  }
  l->sout = (ens_shape){.c = l->spec.kind == ENS_LAYER_CONV ? sp->n : l->sin.c, .h = g.Ho, .w = g.Wo,
                        .image = 1};
  return 0;
}

static int conv_shape(ens_layer *l, char *err, size_t errlen) {
  if (l->spec.n < 1) {
    snprintf(err, errlen, "a conv layer needs at least 1 output channel");
    return ENS_EINVAL;
  }
  return window_shape(l, "a conv layer", 0, err, errlen);
}
static size_t conv_nweight(const ens_layer *l) {
  return (size_t)l->spec.n * l->sin.c * l->spec.k * l->spec.k;
}
static size_t conv_nparam(const ens_layer *l) { return conv_nweight(l) + (size_t)l->spec.n; }
static size_t conv_nwork(const ens_layer *l, int batch_max) {
  ens_conv_geom g = layer_geom(l);
  return ens_conv2d_nwork(&g, batch_max);
}
/* Fan-in C k k, fan-out O k k; orthogonal rows of the (O, C k k) matrix. */
static int conv_init(const ens_layer *l, float *p, const ens_init_args *a) {
  int kk = l->spec.k * l->spec.k;
  return ens_layer_init_weights(l, p, l->spec.n, l->sin.c * kk, l->spec.n * kk, a);
}
static const float *conv_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                                 ens_pass pass, ens_rng *r, int index) {
  (void)pass;
  (void)r;
  (void)index;
  const float *p = m->params + l->param_off;
  ens_conv_geom g = layer_geom(l);
  ens_conv2d_forward(l->y, m->work, x, p, p + conv_nweight(l), &g, batch);
  return l->y;
}
static void conv_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                          const float *p, int batch) {
  ens_conv_geom geom = layer_geom(l);
  ens_conv2d_backward(dx, g, g + conv_nweight(l), m->work, dy, l->x, p, &geom, batch);
}
static int conv_describe(const ens_model *m, const ens_layer *l, char *buf, size_t len,
                         int first) {
  (void)m;
  return snprintf(buf, len, "%sconv(%d,%d,k%d,s%d,p%d)", first ? "" : " ", l->sin.c, l->spec.n,
                  l->spec.k, l->spec.stride, l->spec.pad);
}

static int pool_shape(ens_layer *l, char *err, size_t errlen) {
  if (l->spec.pad != 0) {
    snprintf(err, errlen, "pooling takes no padding");
    return ENS_EINVAL;
  }
  return window_shape(l, l->kind == ENS_LAYER_MAXPOOL ? "maxpool" : "avgpool", 1, err, errlen);
}
static const float *maxpool_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                                    ens_pass pass, ens_rng *r, int index) {
  (void)m;
  (void)pass;
  (void)r;
  (void)index;
  ens_conv_geom g = layer_geom(l);
  ens_maxpool_forward(l->y, l->aux, x, &g, batch);
  return l->y;
}
static void maxpool_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                             const float *p, int batch) {
  (void)m;
  (void)g;
  (void)p;
  if (!dx)
    return;
  ens_conv_geom geom = layer_geom(l);
  ens_maxpool_backward(dx, dy, l->aux, &geom, batch);
}
static const float *avgpool_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                                    ens_pass pass, ens_rng *r, int index) {
  (void)m;
  (void)pass;
  (void)r;
  (void)index;
  ens_conv_geom g = layer_geom(l);
  ens_avgpool_forward(l->y, x, &g, batch);
  return l->y;
}
static void avgpool_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                             const float *p, int batch) {
  (void)m;
  (void)g;
  (void)p;
  if (!dx)
    return;
  ens_conv_geom geom = layer_geom(l);
  ens_avgpool_backward(dx, dy, &geom, batch);
}
static int pool_describe(const ens_model *m, const ens_layer *l, char *buf, size_t len,
                         int first) {
  (void)m;
  return snprintf(buf, len, "%s%s(k%d,s%d)", first ? "" : " ", ens_layer_table[l->kind].name,
                  l->spec.k, l->spec.stride);
}

static int gap_shape(ens_layer *l, char *err, size_t errlen) {
  if (need_image(l, "global average pooling", err, errlen))
    return ENS_EINVAL;
  l->sout = (ens_shape){.c = l->sin.c, .h = 1, .w = 1, .image = 0};
  return 0;
}
static const float *gap_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                                ens_pass pass, ens_rng *r, int index) {
  (void)m;
  (void)pass;
  (void)r;
  (void)index;
  ens_gap_forward(l->y, x, batch, l->sin.c, l->sin.h * l->sin.w);
  return l->y;
}
static void gap_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                         const float *p, int batch) {
  (void)m;
  (void)g;
  (void)p;
  if (dx)
    ens_gap_backward(dx, dy, batch, l->sin.c, l->sin.h * l->sin.w);
}

/* Flatten: NCHW rows are already C H W floats in order; only the shape
 * changes (a flat input stays as it is). */
static int flatten_shape(ens_layer *l, char *err, size_t errlen) {
  (void)err;
  (void)errlen;
  l->sout = (ens_shape){.c = (int)ens_shape_size(l->sin), .h = 1, .w = 1, .image = 0};
  return 0;
}
static const float *flatten_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                                    ens_pass pass, ens_rng *r, int index) {
  (void)m;
  (void)l;
  (void)batch;
  (void)pass;
  (void)r;
  (void)index;
  return x;
}
static void flatten_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                             const float *p, int batch) {
  (void)m;
  (void)l;
  (void)dx;
  (void)dy;
  (void)g;
  (void)p;
  (void)batch;
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
    [ENS_LAYER_CONV] = ROW("conv", conv_shape, conv_nparam, no_size, no_buf, conv_nwork,
                           conv_init, no_stats, conv_forward, conv_backward, 0, conv_describe),
    [ENS_LAYER_MAXPOOL] = ROW("maxpool", pool_shape, no_size, no_size, mask_naux, no_buf,
                              no_init, no_stats, maxpool_forward, maxpool_backward, 0,
                              pool_describe),
    [ENS_LAYER_AVGPOOL] = ROW("avgpool", pool_shape, no_size, no_size, no_buf, no_buf, no_init,
                              no_stats, avgpool_forward, avgpool_backward, 0, pool_describe),
    [ENS_LAYER_GAP] = ROW("gap", gap_shape, no_size, no_size, no_buf, no_buf, no_init, no_stats,
                          gap_forward, gap_backward, 0, describe_width),
    [ENS_LAYER_FLATTEN] = ROW("flatten", flatten_shape, no_size, no_size, no_buf, no_buf, no_init,
                              no_stats, flatten_forward, flatten_backward, 1, describe_width),
    /* Weight-normalized dense and conv (weightnorm.c): the plain layers'
     * shapes and scratch, parameters v, g, b. */
    [ENS_LAYER_WNDENSE] = ROW("wndense", dense_shape, ens_wn_dense_nparam, no_size,
                              ens_wn_dense_naux, no_buf, ens_wn_dense_init, no_stats,
                              ens_wn_dense_forward, ens_wn_dense_backward, 0,
                              ens_wn_dense_describe),
    [ENS_LAYER_WNCONV] = ROW("wnconv", conv_shape, ens_wn_conv_nparam, no_size, ens_wn_conv_naux,
                             conv_nwork, ens_wn_conv_init, no_stats, ens_wn_conv_forward,
                             ens_wn_conv_backward, 0, ens_wn_conv_describe),
};
