/* The model's execution plan for training passes: runs of layers that one
 * fused kernel executes while the data is in the cache. Two run kinds:
 * - conv -> batch norm over channels -> ReLU -> max pooling whose windows
 *   tile the plane (the block of the usual CNN): the convolution hands
 *   batch norm its planes' sums, batch norm normalizes the convolution's
 *   output in place, and backward writes the convolution's output gradient
 *   straight into its GEMM operand, group by group
 *   (ens_conv2d_forward_sums, ens_bn_relu_maxpool_forward_inplace,
 *   ens_bn_relu_maxpool_coefs/_dx_planes, ens_conv2d_backward_fill).
 *   Forward gives the separate layers' bits; backward sums batch norm's
 *   channel sums over the pooling windows instead of the pixels, so its
 *   gradients equal the layers' up to those sums' rounding;
 * - batch norm -> ReLU -> max pooling otherwise (ens_bn_relu_maxpool_*),
 *   the separate layers' bits.
 * The layers stay in the table (layers.c) with their own kernels:
 * evaluation, MC and batch-norm re-estimation passes, and models with
 * nofuse set (the tests' reference), run them one by one. */
#include "ens/conv.h"
#include "nn/fuse.h"

/* Max pooling geometry of layer l over its input. */
static ens_conv_geom pool_geom(const ens_layer *l) {
  ens_conv_geom g = {.C = l->sin.c, .H = l->sin.h, .W = l->sin.w, .O = l->sin.c,
                     .k = l->spec.k, .stride = l->spec.stride, .pad = l->spec.pad};
  ens_conv_geom_init(&g);
  return g;
}

/* Geometry of convolution layer l. */
static ens_conv_geom conv_geom(const ens_layer *l) {
  ens_conv_geom g = {.C = l->sin.c, .H = l->sin.h, .W = l->sin.w, .O = l->spec.n,
                     .k = l->spec.k, .stride = l->spec.stride, .pad = l->spec.pad};
  ens_conv_geom_init(&g);
  return g;
}

/* A conv run's scratch in m->work, after the convolution's own (rounded up
 * to a whole double): 2 C doubles of sums, 3 C floats (forward: C means;
 * backward: 3 C coefficients), then a plane. run_scratch returns its end
 * in floats (what the plan reserves) and, when s is not NULL, points s
 * into m->work. */
typedef struct {
  double *acc;
  float *f3, *plane;
} run_scratch_t;

static size_t run_scratch(const ens_model *m, const ens_layer *cv, const ens_layer *bn,
                          run_scratch_t *s) {
  ens_conv_geom g = conv_geom(cv);
  size_t off = ens_conv2d_nwork(&g, m->batch_max), C = (size_t)bn->sin.c;
  off += off & 1;
  if (s) {
    s->acc = (double *)(m->work + off);
    s->f3 = m->work + off + 4 * C;
    s->plane = s->f3 + 3 * C;
  }
  return off + 7 * C + (size_t)bn->sin.h * bn->sin.w;
}

/* A conv -> bn -> relu -> maxpool run at layer i whose windows tile the
 * plane. */
static int conv_run(const ens_model *m, int i) {
  if (i + 3 >= m->nlayers)
    return 0;
  const ens_layer *cv = &m->layers[i], *bn = &m->layers[i + 1], *relu = &m->layers[i + 2],
                  *mp = &m->layers[i + 3];
  return cv->kind == ENS_LAYER_CONV && bn->kind == ENS_LAYER_BATCHNORM && bn->sin.image &&
         relu->kind == ENS_LAYER_RELU && mp->kind == ENS_LAYER_MAXPOOL && mp->spec.pad == 0 &&
         mp->spec.k == mp->spec.stride && mp->sin.h % mp->spec.k == 0 &&
         mp->sin.w % mp->spec.k == 0;
}

void ens_fuse_plan(ens_model *m) {
  for (int i = 0; i < m->nlayers; i++)
    m->layers[i].fuse = 0;
  for (int i = 0; i + 2 < m->nlayers; i++) {
    if (conv_run(m, i)) {
      ens_layer *cv = &m->layers[i];
      const ens_layer *bn = &m->layers[i + 1];
      cv->fuse = 4;
      size_t need = run_scratch(m, cv, bn, NULL);
      m->nwork = need > m->nwork ? need : m->nwork;
      i += 3;
      continue;
    }
    ens_layer *bn = &m->layers[i];
    const ens_layer *relu = &m->layers[i + 1], *mp = &m->layers[i + 2];
    if (bn->kind != ENS_LAYER_BATCHNORM || !bn->sin.image || relu->kind != ENS_LAYER_RELU ||
        mp->kind != ENS_LAYER_MAXPOOL || mp->spec.pad != 0)
      continue;
    bn->fuse = 3;
    /* One plane of scratch in the shared work buffer. */
    size_t plane = (size_t)bn->sin.h * bn->sin.w;
    m->nwork = plane > m->nwork ? plane : m->nwork;
    i += 2;
  }
}

/* conv -> bn -> relu -> maxpool: forward. */
static const float *conv_run_forward(ens_model *m, int i, const float *x, int batch) {
  ens_layer *cv = &m->layers[i], *bn = &m->layers[i + 1], *relu = &m->layers[i + 2],
            *mp = &m->layers[i + 3];
  const float *pc = m->params + cv->param_off, *p = m->params + bn->param_off;
  float *s = m->stats + bn->stat_off;
  const int C = bn->sin.c;
  const ens_conv_geom gc = conv_geom(cv), g = pool_geom(mp);
  run_scratch_t w;
  run_scratch(m, cv, bn, &w);
  cv->x = x;
  bn->x = cv->y; /* holds xhat after this pass */
  relu->x = bn->y; /* not written by the fused pass (nor relu->y) */
  mp->x = relu->y;
  ens_conv2d_forward_sums(cv->y, w.acc, m->work, x, pc, pc + (size_t)gc.O * gc.C * gc.k * gc.k,
                          &gc, batch);
  ens_bn_relu_maxpool_forward_inplace(mp->y, mp->aux, bn->aux + (size_t)m->batch_max * bn->out,
                                      s, s + C, w.plane, w.f3, w.acc, cv->y, p, p + C, &g, batch,
                                      m->bn_momentum, m->bn_eps);
  return mp->y;
}

/* Its backward: the convolution's output gradient comes from the pooled
 * gradient, group by group. */
typedef struct {
  const ens_model *m;
  const ens_layer *bn, *mp;
  const float *dy, *coef;
  ens_conv_geom pool;
} conv_run_ctx;

static const float *conv_run_fill(void *ctx, float *dycol, float *db, int n0, int gb,
                                  const ens_conv_geom *g) {
  const conv_run_ctx *c = ctx;
  const float *p = c->m->params + c->bn->param_off;
  ens_bn_relu_maxpool_dx_planes(dycol, (size_t)gb * g->Ho * g->Wo, db, c->dy, c->mp->aux,
                                c->bn->x, p, p + c->bn->sin.c, c->coef, &c->pool, n0, gb);
  return dycol;
}

static void conv_run_backward(ens_model *m, int i, float *dx, const float *dy, int batch) {
  const ens_layer *cv = &m->layers[i], *bn = &m->layers[i + 1], *mp = &m->layers[i + 3];
  const float *p = m->params + bn->param_off, *pc = m->params + cv->param_off;
  float *g = m->grads + bn->param_off, *gc = m->grads + cv->param_off;
  const int C = bn->sin.c;
  const ens_conv_geom geom = conv_geom(cv);
  run_scratch_t w;
  run_scratch(m, cv, bn, &w);
  conv_run_ctx ctx = {.m = m, .bn = bn, .mp = mp, .dy = dy, .coef = w.f3,
                      .pool = pool_geom(mp)};
  ens_bn_relu_maxpool_coefs(g, g + C, w.f3, w.acc, dy, mp->aux, bn->x, p, p + C,
                            bn->aux + (size_t)m->batch_max * bn->out, &ctx.pool, batch);
  const size_t nw = (size_t)geom.O * geom.C * geom.k * geom.k;
  ens_conv2d_backward_fill(dx, gc, gc + nw, m->work, conv_run_fill, &ctx, cv->x, pc, &geom,
                           batch);
}

const float *ens_fuse_forward(ens_model *m, int i, const float *x, int batch) {
  if (m->layers[i].fuse == 4)
    return conv_run_forward(m, i, x, batch);
  ens_layer *bn = &m->layers[i], *relu = &m->layers[i + 1], *mp = &m->layers[i + 2];
  const float *p = m->params + bn->param_off;
  float *s = m->stats + bn->stat_off;
  const int C = bn->sin.c;
  const ens_conv_geom g = pool_geom(mp);
  bn->x = x;
  relu->x = bn->y; /* not written by the fused pass (nor relu->y) */
  mp->x = relu->y;
  ens_bn_relu_maxpool_forward_train(mp->y, mp->aux, bn->aux,
                                    bn->aux + (size_t)m->batch_max * bn->out, s, s + C, m->work,
                                    x, p, p + C, &g, batch, m->bn_momentum, m->bn_eps);
  return mp->y;
}

void ens_fuse_backward(ens_model *m, int i, float *dx, const float *dy, int batch) {
  if (m->layers[i].fuse == 4) {
    conv_run_backward(m, i, dx, dy, batch);
    return;
  }
  const ens_layer *bn = &m->layers[i], *mp = &m->layers[i + 2];
  const float *p = m->params + bn->param_off;
  float *g = m->grads + bn->param_off;
  const int C = bn->sin.c;
  const ens_conv_geom geom = pool_geom(mp);
  ens_bn_relu_maxpool_backward(dx, g, g + C, m->work, dy, mp->aux, bn->aux, p, p + C,
                               bn->aux + (size_t)m->batch_max * bn->out, &geom, batch);
}
