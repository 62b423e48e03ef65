/* libens's throughput path (src/infer/fast.h): MLP networks compiled into
 * packed dense layers with batch norm folded in, and the register-tiled
 * kernels that evaluate them. The kernels are written once with GCC vector
 * extensions and instantiated per instruction set; vectors run across output
 * columns, never across the sum over inputs, so every instantiation computes
 * each output with the same operations in the same order. */
#include "infer/fast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"

#define NR ENS_FAST_NR
#define RB 144 /* rows per block: a multiple of every kernel's row count */

typedef float vf8 __attribute__((vector_size(32)));
typedef int vi8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));
typedef int vi4 __attribute__((vector_size(16)));

typedef void (*kernel_fn)(float *y, int ldy, const float *x, int ldx, const float *w,
                          size_t pstride, const float *b, int K, int relu);

/* y (MR, NP NR) = [relu](b + x (MR, K) W) for NP consecutive panels of W
 * (each (K, NR), pstride floats apart). acc starts from the bias and adds
 * x[k] w[k] for k = 0, 1, ... (multiply, then add: ISO C mode keeps GCC from
 * contracting them into an FMA). */
#define ENS_FAST_KERNEL(NAME, ATTR, V, VI, L, MR, NP)                                              \
  ATTR static void NAME(float *y, int ldy, const float *x, int ldx, const float *w,               \
                        size_t pstride, const float *b, int K, int relu) {                         \
    enum { NV = NR / (L), NA = (NP) * NV };                                                         \
    V acc[MR][NA];                                                                                 \
    _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++)                                        \
        _Pragma("GCC unroll 16") for (int v = 0; v < NA; v++)                                      \
            memcpy(&acc[r][v], b + (size_t)v * (L), sizeof(V));                                    \
    for (int k = 0; k < K; k++) {                                                                  \
      V wv[NA];                                                                                    \
      _Pragma("GCC unroll 16") for (int v = 0; v < NA; v++)                                        \
          memcpy(&wv[v], w + (size_t)(v / NV) * pstride + (size_t)k * NR + (size_t)(v % NV) * (L), \
                 sizeof(V));                                                                       \
      _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++) {                                    \
        const float xr = x[(size_t)r * ldx + k];                                                   \
        _Pragma("GCC unroll 16") for (int v = 0; v < NA; v++) acc[r][v] += xr * wv[v];             \
      }                                                                                            \
    }                                                                                              \
    _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++)                                        \
        _Pragma("GCC unroll 16") for (int v = 0; v < NA; v++) {                                    \
      V a = acc[r][v];                                                                             \
      if (relu) { /* x > 0 ? x : 0, as ens_relu_forward (NaN and -0 give +0) */                    \
        const V zero = {0};                                                                        \
        a = (V)((VI)a & (VI)(a > zero));                                                           \
      }                                                                                            \
      memcpy(y + (size_t)r * ldy + (size_t)v * (L), &a, sizeof(V));                                \
    }                                                                                              \
  }

#if defined(__x86_64__) && defined(__GNUC__)
#define ATTR_AVX2 __attribute__((target("avx2")))
#define HAVE_LEVELS 1
#else
#define ATTR_AVX2
#define HAVE_LEVELS 0
#endif

ENS_FAST_KERNEL(k256_big, ATTR_AVX2, vf8, vi8, 8, 3, 1)
ENS_FAST_KERNEL(k256_row, ATTR_AVX2, vf8, vi8, 8, 1, 4)
ENS_FAST_KERNEL(k256_one, ATTR_AVX2, vf8, vi8, 8, 1, 1)
ENS_FAST_KERNEL(k128_one, , vf4, vi4, 4, 1, 1)

/* One instruction set's kernels: big (mr rows, 1 panel), row (1 row, np
 * panels) and one (1 row, 1 panel). */
typedef struct kset {
  kernel_fn big, row, one;
  int mr, np;
} kset;

static const kset ksets[2] = {
    [ENS_FAST_SSE2] = {k128_one, k128_one, k128_one, 1, 1},
    [ENS_FAST_AVX2] = {k256_big, k256_row, k256_one, 3, 4},
};

int ens_fast_level(void) {
#if HAVE_LEVELS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2"))
    return ENS_FAST_AVX2;
#endif
  return ENS_FAST_SSE2;
}

/* ---- compiling a model --------------------------------------------------- */

void ens_fast_net_free(ens_fast_net *f) {
  for (int i = 0; f->layers && i < f->nlayers; i++) {
    free(f->layers[i].w);
    free(f->layers[i].b);
  }
  free(f->layers);
  memset(f, 0, sizeof(*f));
}

/* Packs dense layer (W (out, in), b) followed by batch norm (gamma, beta,
 * running mean and var; NULL when none) into L: with s = gamma / sqrt(var +
 * eps), W' = s W and b' = s (b - mean) + beta, each rounded once to float
 * from double. */
static int pack_layer(ens_fast_layer *L, const float *W, const float *b, const float *bn_p,
                      const float *bn_s, float eps) {
  const int in = L->in, out = L->out;
  L->outp = (out + NR - 1) / NR * NR;
  const size_t nw = (size_t)L->outp * in;
  L->w = aligned_alloc(64, (nw * sizeof(float) + 63) / 64 * 64);
  L->b = aligned_alloc(64, ((size_t)L->outp * sizeof(float) + 63) / 64 * 64);
  if (!L->w || !L->b)
    return ENS_ENOMEM;
  memset(L->w, 0, nw * sizeof(float));
  memset(L->b, 0, (size_t)L->outp * sizeof(float));
  for (int j = 0; j < out; j++) {
    double s = 1.0, t = 0.0;
    if (bn_p) {
      const float sd = sqrtf(bn_s[out + j] + eps); /* as the eval kernel */
      s = (double)bn_p[j] / sd;
      t = (double)bn_p[out + j] - (double)bn_s[j] * s;
    }
    float *panel = L->w + (size_t)(j / NR) * in * NR;
    const float *wr = W + (size_t)j * in;
    for (int k = 0; k < in; k++)
      panel[(size_t)k * NR + j % NR] = bn_p ? (float)((double)wr[k] * s) : wr[k];
    L->b[j] = bn_p ? (float)((double)b[j] * s + t) : b[j];
  }
  return 0;
}

int ens_fast_net_build(ens_fast_net *f, const ens_model *m) {
  memset(f, 0, sizeof(*f));
  /* First pass: which layers, and is every one supported. */
  int n = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const ens_layer *l = &m->layers[i];
    const ens_layer_kind prev = i ? m->layers[i - 1].kind : ENS_LAYER_KIND_COUNT;
    switch (l->kind) {
    case ENS_LAYER_DENSE:
      if (l->sin.image)
        return 1;
      n++;
      break;
    case ENS_LAYER_BATCHNORM: /* folded into the dense layer right before it */
      if (prev != ENS_LAYER_DENSE || l->sout.image)
        return 1;
      break;
    case ENS_LAYER_RELU: /* fused into the dense (+ batch norm) before it */
      if (prev != ENS_LAYER_DENSE && prev != ENS_LAYER_BATCHNORM)
        return 1;
      break;
    case ENS_LAYER_DROPOUT: /* the identity in an eval pass */
      break;
    default:
      return 1;
    }
  }
  if (!n)
    return 1;
  f->layers = calloc((size_t)n, sizeof(ens_fast_layer));
  if (!f->layers)
    return ENS_ENOMEM;
  f->in = m->in;
  f->out = m->out;
  for (int i = 0; i < m->nlayers; i++) {
    const ens_layer *l = &m->layers[i];
    if (l->kind != ENS_LAYER_DENSE)
      continue;
    ens_fast_layer *L = &f->layers[f->nlayers++];
    L->in = l->in;
    L->out = l->out;
    const float *W = m->params + l->param_off, *b = W + (size_t)l->out * l->in;
    const float *bn_p = NULL, *bn_s = NULL;
    int j = i + 1;
    if (j < m->nlayers && m->layers[j].kind == ENS_LAYER_BATCHNORM) {
      bn_p = m->params + m->layers[j].param_off;
      bn_s = m->stats + m->layers[j].stat_off;
      j++;
    }
    L->relu = j < m->nlayers && m->layers[j].kind == ENS_LAYER_RELU;
    int ret = pack_layer(L, W, b, bn_p, bn_s, m->bn_eps);
    if (ret) {
      ens_fast_net_free(f);
      return ret;
    }
    if (L->outp > f->maxp)
      f->maxp = L->outp;
  }
  return 0;
}

/* ---- evaluation ---------------------------------------------------------- */

int ens_fast_block(int n) { return n < RB ? n : RB; }

size_t ens_fast_scratch(const ens_fast_net *f, int n) {
  return 2 * (size_t)ens_fast_block(n) * (size_t)f->maxp;
}

/* y (n, outp; row stride ldy) = layer L of x (n, L->in; row stride ldx). */
static void layer_forward(const ens_fast_layer *L, const kset *ks, float *y, int ldy,
                          const float *x, int ldx, int n) {
  const int P = L->outp / NR, K = L->in;
  const size_t ps = (size_t)K * NR;
  if (n < ks->mr) { /* a few rows: each streams the weights once, np panels at a time */
    for (int r = 0; r < n; r++) {
      const float *xr = x + (size_t)r * ldx;
      float *yr = y + (size_t)r * ldy;
      int p = 0;
      for (; p + ks->np <= P; p += ks->np)
        ks->row(yr + (size_t)p * NR, ldy, xr, ldx, L->w + p * ps, ps, L->b + (size_t)p * NR, K,
                L->relu);
      for (; p < P; p++)
        ks->one(yr + (size_t)p * NR, ldy, xr, ldx, L->w + p * ps, ps, L->b + (size_t)p * NR, K,
                L->relu);
    }
    return;
  }
  /* A panel (K NR floats) stays in cache while every row group passes it. */
  for (int p = 0; p < P; p++) {
    const float *w = L->w + p * ps, *b = L->b + (size_t)p * NR;
    int r = 0;
    for (; r + ks->mr <= n; r += ks->mr)
      ks->big(y + (size_t)r * ldy + (size_t)p * NR, ldy, x + (size_t)r * ldx, ldx, w, ps, b, K,
              L->relu);
    for (; r < n; r++)
      ks->one(y + (size_t)r * ldy + (size_t)p * NR, ldy, x + (size_t)r * ldx, ldx, w, ps, b, K,
              L->relu);
  }
}

void ens_fast_forward(const ens_fast_net *f, float *z, const float *x, int ldx, int n,
                      float *scratch, int level) {
  if (level < ENS_FAST_SSE2 || level > ENS_FAST_AVX2)
    level = ens_fast_level();
  const kset *ks = &ksets[level];
  const int B = ens_fast_block(n), mp = f->maxp;
  float *buf[2] = {scratch, scratch + (size_t)B * mp};
  for (int r0 = 0; r0 < n; r0 += B) {
    const int b = n - r0 < B ? n - r0 : B;
    const float *cur = x + (size_t)r0 * ldx;
    int ld = ldx;
    for (int i = 0; i < f->nlayers; i++) {
      float *y = buf[i & 1];
      layer_forward(&f->layers[i], ks, y, mp, cur, ld, b);
      cur = y;
      ld = mp;
    }
    for (int r = 0; r < b; r++)
      memcpy(z + (size_t)(r0 + r) * f->out, cur + (size_t)r * ld, (size_t)f->out * sizeof(float));
  }
}
