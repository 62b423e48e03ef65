/* The model's execution plan for training passes: runs of layers that one
 * fused kernel executes while the data is in the cache. Today one run kind,
 * batch norm over channels -> ReLU -> max pooling (the block after each
 * convolution of the usual CNN), executed by ens_bn_relu_maxpool_* with
 * results identical to the bit to the separate layers'. The layers stay in
 * the table (layers.c) with their own kernels: evaluation, MC and
 * batch-norm re-estimation passes, and models with nofuse set (the tests'
 * reference), run them one by one. */
#include "ens/conv.h"
#include "nn/fuse.h"

/* Max pooling geometry of layer l over its input. */
static ens_conv_geom pool_geom(const ens_layer *l) {
  ens_conv_geom g = {.C = l->sin.c, .H = l->sin.h, .W = l->sin.w, .O = l->sin.c,
                     .k = l->spec.k, .stride = l->spec.stride, .pad = l->spec.pad};
  ens_conv_geom_init(&g);
  return g;
}

void ens_fuse_plan(ens_model *m) {
  for (int i = 0; i < m->nlayers; i++)
    m->layers[i].fuse = 0;
  for (int i = 0; i + 2 < m->nlayers; i++) {
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

const float *ens_fuse_forward(ens_model *m, int i, const float *x, int batch) {
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
  const ens_layer *bn = &m->layers[i], *mp = &m->layers[i + 2];
  const float *p = m->params + bn->param_off;
  float *g = m->grads + bn->param_off;
  const int C = bn->sin.c;
  const ens_conv_geom geom = pool_geom(mp);
  ens_bn_relu_maxpool_backward(dx, g, g + C, m->work, dy, mp->aux, bn->aux, p, p + C,
                               bn->aux + (size_t)m->batch_max * bn->out, &geom, batch);
}
