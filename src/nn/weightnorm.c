/* Weight normalization (Salimans & Kingma 2016): kernels and the layer-table
 * rows of weight-normalized dense and conv layers. The parameter block is
 * v (rows, fan_in), g (rows), b (rows): PyTorch's weight_norm(dim=0) with
 * weight_v, weight_g and bias. The effective weights w are computed into the
 * layer's aux buffer at every forward pass, the dense/conv kernels run on w,
 * and the backward pass turns dw into (dv, dg). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/clones.h"
#include "ens/conv.h"
#include "ens/error.h"
#include "ens/nn.h"
#include "nn/weightnorm.h"

/* Sums of products in double over four interleaved accumulators, added
 * in a fixed order: each accumulator is its own chain of IEEE operations,
 * so the result is the same whether or not the compiler puts the four in
 * one vector register (and 3-4x faster than one chain). */
static double dot4(const float *a, const float *b, int n) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    s0 += (double)a[j] * b[j];
    s1 += (double)a[j + 1] * b[j + 1];
    s2 += (double)a[j + 2] * b[j + 2];
    s3 += (double)a[j + 3] * b[j + 3];
  }
  for (; j < n; j++)
    s0 += (double)a[j] * b[j];
  return (s0 + s1) + (s2 + s3);
}

static double row_norm(const float *v, int fan) { return sqrt(dot4(v, v, fan)); }

ENS_CLONES void ens_weightnorm_forward(float *w, const float *v, const float *g, int rows, int fan) {
  for (int i = 0; i < rows; i++) {
    const float *vi = v + (size_t)i * fan;
    float *wi = w + (size_t)i * fan;
    double s = row_norm(vi, fan);
    /* One float scale per row: the element loop vectorizes. */
    float scale = s > 0.0 ? (float)((double)g[i] / s) : 0.0f;
    for (int j = 0; j < fan; j++)
      wi[j] = scale * vi[j];
  }
}

ENS_CLONES void ens_weightnorm_backward(float *dv, float *dg, const float *dw, const float *v,
                             const float *g, int rows, int fan) {
  for (int i = 0; i < rows; i++) {
    const float *vi = v + (size_t)i * fan, *dwi = dw + (size_t)i * fan;
    float *dvi = dv + (size_t)i * fan;
    double s = row_norm(vi, fan);
    if (!(s > 0.0)) {
      memset(dvi, 0, (size_t)fan * sizeof(float));
      dg[i] = 0.0f;
      continue;
    }
    double dgi = dot4(dwi, vi, fan) / s;
    const float a = (float)((double)g[i] / s), c = (float)((double)g[i] * dgi / (s * s));
    for (int j = 0; j < fan; j++)
      dvi[j] = a * dwi[j] - c * vi[j];
    dg[i] = (float)dgi;
  }
}

ens_layer_kind ens_weightnorm_kind(ens_layer_kind kind) {
  if (kind == ENS_LAYER_DENSE)
    return ENS_LAYER_WNDENSE;
  if (kind == ENS_LAYER_CONV)
    return ENS_LAYER_WNCONV;
  return kind;
}

/* v by the layer's init rule (the same draws as the plain layer), biases
 * after g, and g = ||v_i||: w = v at step 0, so the function is the plain
 * layer's. */
static int wn_init(const ens_layer *l, float *p, int rows, int fan_in, int fan_out,
                   const ens_init_args *a) {
  size_t nw = (size_t)rows * fan_in;
  /* ens_layer_init_weights writes the biases right after the weights (the
   * g slot): move them to the b slot first. */
  int ret = ens_layer_init_weights(l, p, rows, fan_in, fan_out, a);
  if (ret)
    return ret;
  for (int i = 0; i < rows; i++) {
    p[nw + rows + i] = p[nw + i];
    p[nw + i] = (float)row_norm(p + (size_t)i * fan_in, fan_in);
  }
  return 0;
}

/* ---------------------------------------------------------------- wndense */

size_t ens_wn_dense_nparam(const ens_layer *l) { return (size_t)l->out * l->in + 2 * (size_t)l->out; }
/* aux: w (out, in), then dw (out, in). */
size_t ens_wn_dense_naux(const ens_layer *l, int batch_max) {
  (void)batch_max;
  return 2 * (size_t)l->out * l->in;
}
int ens_wn_dense_init(const ens_layer *l, float *p, const ens_init_args *a) {
  return wn_init(l, p, l->out, l->in, l->out, a);
}
const float *ens_wn_dense_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                                  ens_pass pass, ens_rng *r, int index) {
  (void)pass;
  (void)r;
  (void)index;
  const float *p = m->params + l->param_off;
  const size_t nw = (size_t)l->out * l->in;
  ens_weightnorm_forward(l->aux, p, p + nw, l->out, l->in);
  ens_dense_forward(l->y, x, l->aux, p + nw + l->out, batch, l->in, l->out);
  return l->y;
}
void ens_wn_dense_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                           const float *p, int batch) {
  (void)m;
  const size_t nw = (size_t)l->out * l->in;
  float *w = l->aux, *dw = l->aux + nw;
  ens_dense_backward(dx, dw, g + nw + l->out, dy, l->x, w, batch, l->in, l->out);
  ens_weightnorm_backward(g, g + nw, dw, p, p + nw, l->out, l->in);
}
int ens_wn_dense_describe(const ens_model *m, const ens_layer *l, char *buf, size_t len,
                          int first) {
  (void)m;
  return snprintf(buf, len, "%swndense(%d,%d)", first ? "" : " ", l->in, l->out);
}

/* ----------------------------------------------------------------- wnconv */

static ens_conv_geom wn_geom(const ens_layer *l) {
  ens_conv_geom g = {.C = l->sin.c, .H = l->sin.h, .W = l->sin.w, .O = l->spec.n,
                     .k = l->spec.k, .stride = l->spec.stride, .pad = l->spec.pad};
  ens_conv_geom_init(&g);
  return g;
}
static int conv_fan(const ens_layer *l) { return l->sin.c * l->spec.k * l->spec.k; }
size_t ens_wn_conv_nparam(const ens_layer *l) {
  return (size_t)l->spec.n * conv_fan(l) + 2 * (size_t)l->spec.n;
}
size_t ens_wn_conv_naux(const ens_layer *l, int batch_max) {
  (void)batch_max;
  return 2 * (size_t)l->spec.n * conv_fan(l);
}
int ens_wn_conv_init(const ens_layer *l, float *p, const ens_init_args *a) {
  int kk = l->spec.k * l->spec.k;
  return wn_init(l, p, l->spec.n, conv_fan(l), l->spec.n * kk, a);
}
const float *ens_wn_conv_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                                 ens_pass pass, ens_rng *r, int index) {
  (void)pass;
  (void)r;
  (void)index;
  const float *p = m->params + l->param_off;
  const int O = l->spec.n, F = conv_fan(l);
  const size_t nw = (size_t)O * F;
  ens_conv_geom g = wn_geom(l);
  ens_weightnorm_forward(l->aux, p, p + nw, O, F);
  ens_conv2d_forward(l->y, m->work, x, l->aux, p + nw + O, &g, batch);
  return l->y;
}
void ens_wn_conv_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                          const float *p, int batch) {
  const int O = l->spec.n, F = conv_fan(l);
  const size_t nw = (size_t)O * F;
  ens_conv_geom geom = wn_geom(l);
  float *w = l->aux, *dw = l->aux + nw;
  ens_conv2d_backward(dx, dw, g + nw + O, m->work, dy, l->x, w, &geom, batch);
  ens_weightnorm_backward(g, g + nw, dw, p, p + nw, O, F);
}
int ens_wn_conv_describe(const ens_model *m, const ens_layer *l, char *buf, size_t len,
                         int first) {
  (void)m;
  return snprintf(buf, len, "%swnconv(%d,%d,k%d,s%d,p%d)", first ? "" : " ", l->sin.c,
                  l->spec.n, l->spec.k, l->spec.stride, l->spec.pad);
}

/* ------------------------------------------------- data-dependent init */

int ens_model_wn_data_init(ens_model *m, const float *x, int batch) {
  int done = 0;
  for (int i = 0; i < m->nlayers; i++) {
    ens_layer *l = &m->layers[i];
    if (l->kind != ENS_LAYER_WNDENSE && l->kind != ENS_LAYER_WNCONV)
      continue;
    /* This layer's pre-activations with the layers before it initialized. */
    ens_model_forward(m, x, batch, ENS_PASS_EVAL, NULL);
    const int rows = l->kind == ENS_LAYER_WNCONV ? l->spec.n : l->out;
    const int P = l->kind == ENS_LAYER_WNCONV ? l->sout.h * l->sout.w : 1;
    const size_t nw = l->nparam - 2 * (size_t)rows;
    float *g = m->params + l->param_off + nw, *b = g + rows;
    for (int o = 0; o < rows; o++) {
      double s = 0.0, ss = 0.0;
      for (int n = 0; n < batch; n++)
        for (int q = 0; q < P; q++)
          s += l->y[((size_t)n * rows + o) * P + q];
      double cnt = (double)batch * P, mu = s / cnt;
      for (int n = 0; n < batch; n++)
        for (int q = 0; q < P; q++) {
          double d = l->y[((size_t)n * rows + o) * P + q] - mu;
          ss += d * d;
        }
      double sd = sqrt(ss / cnt);
      if (!(sd > 0.0) || !isfinite(sd))
        continue; /* a constant unit on this batch: left as it is */
      g[o] = (float)((double)g[o] / sd);
      b[o] = (float)(((double)b[o] - mu) / sd);
    }
    done++;
  }
  return done;
}

/* ---------------------------------------------- averaging the weights */

void ens_model_wn_add_effective(const ens_model *m, double *sum, const float *params) {
  size_t next = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const ens_layer *l = &m->layers[i];
    if (l->kind != ENS_LAYER_WNDENSE && l->kind != ENS_LAYER_WNCONV)
      continue;
    for (size_t p = next; p < l->param_off; p++)
      sum[p] += params[p];
    const int rows = l->kind == ENS_LAYER_WNCONV ? l->spec.n : l->out;
    const size_t nw = l->nparam - 2 * (size_t)rows;
    const int fan = (int)(nw / (size_t)rows);
    const float *v = params + l->param_off, *g = v + nw;
    double *sv = sum + l->param_off;
    for (int o = 0; o < rows; o++) {
      double s = row_norm(v + (size_t)o * fan, fan);
      double scale = s > 0.0 ? (double)g[o] / s : 0.0;
      for (int k = 0; k < fan; k++)
        sv[(size_t)o * fan + k] += scale * v[(size_t)o * fan + k];
    }
    /* g's slot: unused (ens_model_wn_renormalize sets it); b as it is. */
    for (size_t p = l->param_off + nw + rows; p < l->param_off + l->nparam; p++)
      sum[p] += params[p];
    next = l->param_off + l->nparam;
  }
  for (size_t p = next; p < m->nparams; p++)
    sum[p] += params[p];
}

void ens_model_wn_renormalize(ens_model *m) {
  for (int i = 0; i < m->nlayers; i++) {
    ens_layer *l = &m->layers[i];
    if (l->kind != ENS_LAYER_WNDENSE && l->kind != ENS_LAYER_WNCONV)
      continue;
    const int rows = l->kind == ENS_LAYER_WNCONV ? l->spec.n : l->out;
    const size_t nw = l->nparam - 2 * (size_t)rows;
    const int fan = (int)(nw / (size_t)rows);
    float *v = m->params + l->param_off, *g = v + nw;
    for (int o = 0; o < rows; o++)
      g[o] = (float)row_norm(v + (size_t)o * fan, fan);
  }
}

int ens_model_has_weightnorm(const ens_model *m) {
  for (int i = 0; i < m->nlayers; i++)
    if (m->layers[i].kind == ENS_LAYER_WNDENSE || m->layers[i].kind == ENS_LAYER_WNCONV)
      return 1;
  return 0;
}
