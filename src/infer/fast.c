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

typedef float vf16 __attribute__((vector_size(64)));
typedef int vi16 __attribute__((vector_size(64)));
typedef float vf8 __attribute__((vector_size(32)));
typedef int vi8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));
typedef int vi4 __attribute__((vector_size(16)));

typedef void (*kernel_fn)(float *y, int ldy, const float *x, int ldx, const float *w,
                          size_t pstride, const float *b, const int *idx, int nk, int relu);

/* y (MR, NP NR) = [relu](b + x (MR, K) W) for NP consecutive panels of W
 * (each (K, NR), pstride floats apart), over the inputs k = idx[0] < idx[1]
 * < ... < idx[nk - 1] (SPARSE; the others are zero in all MR rows), or k = 0,
 * 1, ..., nk - 1 (dense). acc starts from
 * the bias and adds x[k] w[k] in that order (multiply, then add: ISO C mode
 * keeps GCC from contracting them into an FMA). Leaving out a term x[k] w[k]
 * with x[k] = 0 gives the same bits: the term is a zero, and a sum that
 * starts from a bias other than -0 is never -0, so adding a zero leaves it as
 * it is (weights are finite, see ens_fast_net_build). */
#define ENS_FAST_KERNEL(NAME, ATTR, V, VI, L, MR, NP, SPARSE)                                      \
  ATTR static void NAME(float *y, int ldy, const float *x, int ldx, const float *w,               \
                        size_t pstride, const float *b, const int *idx, int nk, int relu) {        \
    enum { NV = NR / (L), NA = (NP) * NV };                                                        \
    V acc[MR][NA];                                                                                 \
    const float *xp[MR];                                                                           \
    _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++) xp[r] = x + (size_t)r * ldx;           \
    _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++)                                        \
        _Pragma("GCC unroll 16") for (int v = 0; v < NA; v++)                                      \
            memcpy(&acc[r][v], b + (size_t)v * (L), sizeof(V));                                    \
    for (int t = 0; t < nk; t++) {                                                                 \
      const int k = (SPARSE) ? idx[t] : t;                                                         \
      const float *wk = w + (size_t)k * NR;                                                        \
      float xs[MR];                                                                                \
      _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++) xs[r] = xp[r][k];                    \
      /* One weight vector at a time, used by every row: few registers. */                         \
      _Pragma("GCC unroll 16") for (int v = 0; v < NA; v++) {                                      \
        V wv;                                                                                      \
        memcpy(&wv, wk + (size_t)(v / NV) * pstride + (size_t)(v % NV) * (L), sizeof(V));          \
        _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++) acc[r][v] += xs[r] * wv;           \
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
#define ATTR_AVX512 __attribute__((target("avx512f")))
#define HAVE_LEVELS 1
#else
#define ATTR_AVX2
#define ATTR_AVX512
#define HAVE_LEVELS 0
#endif

/* Groups of rows run dense (the zeros common to a whole group are too few to
 * pay for the indirection); single rows skip their zero inputs. */
ENS_FAST_KERNEL(k256_big, ATTR_AVX2, vf8, vi8, 8, 3, 1, 0)
ENS_FAST_KERNEL(k256_row, ATTR_AVX2, vf8, vi8, 8, 1, 2, 1)
ENS_FAST_KERNEL(k256_one, ATTR_AVX2, vf8, vi8, 8, 1, 1, 1)
ENS_FAST_KERNEL(k512_row, ATTR_AVX512, vf16, vi16, 16, 1, 8, 1)
ENS_FAST_KERNEL(k512_one, ATTR_AVX512, vf16, vi16, 16, 1, 1, 1)
ENS_FAST_KERNEL(k128_big, , vf4, vi4, 4, 1, 1, 0)
ENS_FAST_KERNEL(k128_one, , vf4, vi4, 4, 1, 1, 1)

/* One instruction set's kernels: big (mr rows, 1 panel, dense), row (1 row,
 * np panels, sparse) and one (1 row, 1 panel, sparse). */
typedef struct kset {
  kernel_fn big, row, one;
  int mr, np;
} kset;

static const kset ksets[3] = {
    [ENS_FAST_SSE2] = {k128_big, k128_one, k128_one, 1, 1},
    [ENS_FAST_AVX2] = {k256_big, k256_row, k256_one, 3, 2},
    /* AVX-512 only for single rows: measured on AMD Zen 4, the AVX2 tile
     * is the faster one for groups of rows. */
    [ENS_FAST_AVX512] = {k256_big, k512_row, k512_one, 3, 8},
};

int ens_fast_level(void) {
#if HAVE_LEVELS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f"))
    return ENS_FAST_AVX512;
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

/* Packs dense layer (W (out, in), b), followed by batch norm (gamma, beta
 * params bn_p, running mean and var bn_s; NULL when none) and preceded by the
 * input standardization (mean, std; NULL when none), into L. With s = gamma /
 * sqrt(var + eps): W' = s W / std (per column), b' = s (b - mean_bn) + beta -
 * sum_k W'[k] mean[k], computed in double and rounded once to float. A zero
 * bias is stored as +0 (see ENS_FAST_KERNEL). Returns 0, 1 when a weight is
 * not finite (the exact path keeps NaN and infinity semantics), or ENS_ENOMEM. */
static int pack_layer(ens_fast_layer *L, const float *W, const float *b, const float *bn_p,
                      const float *bn_s, float eps, const float *xmean, const float *xstd) {
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
    double shift = 0.0;
    for (int k = 0; k < in; k++) {
      double v = (double)wr[k] * s;
      if (xstd) {
        v /= xstd[k];
        shift += v * xmean[k];
      }
      panel[(size_t)k * NR + j % NR] = (float)v;
      if (!isfinite(panel[(size_t)k * NR + j % NR]))
        return 1;
    }
    const float bj = (float)((double)b[j] * s + t - shift);
    if (!isfinite(bj))
      return 1;
    L->b[j] = bj + 0.0f; /* -0 -> +0 */
  }
  return 0;
}

/* Folding the standardization into the first layer turns inputs that are
 * zero in raw units (image background, one-hot columns) into terms the
 * kernels skip. It moves the subtraction of the mean into the bias, which
 * costs accuracy when a feature's mean is large against its spread: folded
 * only when every |mean| <= ENS_FAST_FOLD_MAX std. */
#define ENS_FAST_FOLD_MAX 8.0

static int foldable(const float *xmean, const float *xstd, int d) {
  if (!xmean || !xstd)
    return 0;
  for (int k = 0; k < d; k++)
    if (!(isfinite(xmean[k]) && isfinite(xstd[k]) && xstd[k] > 0 &&
          fabs((double)xmean[k]) <= ENS_FAST_FOLD_MAX * xstd[k]))
      return 0;
  return 1;
}

int ens_fast_net_build(ens_fast_net *f, const ens_model *m, const float *xmean,
                       const float *xstd) {
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
  if (!n || m->layers[0].kind != ENS_LAYER_DENSE)
    return 1;
  f->layers = calloc((size_t)n, sizeof(ens_fast_layer));
  if (!f->layers)
    return ENS_ENOMEM;
  f->in = m->in;
  f->out = m->out;
  f->raw_input = foldable(xmean, xstd, m->in);
  for (int i = 0; i < m->nlayers; i++) {
    const ens_layer *l = &m->layers[i];
    if (l->kind != ENS_LAYER_DENSE)
      continue;
    const int first = f->nlayers == 0;
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
    int ret = pack_layer(L, W, b, bn_p, bn_s, m->bn_eps, first && f->raw_input ? xmean : NULL,
                         first && f->raw_input ? xstd : NULL);
    if (ret) {
      ens_fast_net_free(f);
      return ret;
    }
    f->maxp = L->outp > f->maxp ? L->outp : f->maxp;
    f->maxin = L->in > f->maxin ? L->in : f->maxin;
  }
  return 0;
}

/* ---- evaluation ---------------------------------------------------------- */

int ens_fast_block(int n) { return n < RB ? n : RB; }

size_t ens_fast_scratch(const ens_fast_net *f, int n) {
  return 2 * (size_t)ens_fast_block(n) * (size_t)f->maxp;
}

size_t ens_fast_iscratch(const ens_fast_net *f, int n) {
  return (size_t)ens_fast_block(n) * ((size_t)f->maxin + 1);
}

/* idx = the k < K at which any of rows x (nr, stride ldx) is not zero, in
 * increasing order; returns their count. First a mask per input (4 at a
 * time), then the mask compacted in place into indices. */
static int nonzero_cols(int *idx, const float *x, int ldx, int nr, int K) {
  const vf4 zero = {0};
  int k = 0;
  for (; k + 4 <= K; k += 4) { /* SSE2 vectors: the baseline of x86-64 */
    vi4 nz = {0};
    for (int r = 0; r < nr; r++) {
      vf4 v;
      memcpy(&v, x + (size_t)r * ldx + k, sizeof(v));
      nz |= v != zero;
    }
    memcpy(idx + k, &nz, sizeof(nz));
  }
  for (; k < K; k++) {
    int nz = 0;
    for (int r = 0; r < nr; r++)
      nz |= x[(size_t)r * ldx + k] != 0.0f;
    idx[k] = -nz;
  }
  int nk = 0;
  for (k = 0; k < K; k++) { /* idx[k] is read before idx[nk <= k] is written */
    const int nz = idx[k] != 0;
    idx[nk] = k;
    nk += nz;
  }
  return nk;
}

/* y (n, outp; row stride ldy) = layer L of x (n, L->in; row stride ldx).
 * iscr: n (maxin + 1) ints. */
static void layer_forward(const ens_fast_layer *L, const kset *ks, float *y, int ldy,
                          const float *x, int ldx, int n, int *iscr) {
  const int P = L->outp / NR, K = L->in, mr = ks->mr;
  const size_t ps = (size_t)K * NR;
  if (n < mr || n == 1) { /* a few rows: each streams the weights it needs once */
    for (int r = 0; r < n; r++) {
      const float *xr = x + (size_t)r * ldx;
      float *yr = y + (size_t)r * ldy;
      const int nk = nonzero_cols(iscr, xr, ldx, 1, K);
      int p = 0;
      for (; p + ks->np <= P; p += ks->np)
        ks->row(yr + (size_t)p * NR, ldy, xr, ldx, L->w + p * ps, ps, L->b + (size_t)p * NR, iscr,
                nk, L->relu);
      for (; p < P; p++)
        ks->one(yr + (size_t)p * NR, ldy, xr, ldx, L->w + p * ps, ps, L->b + (size_t)p * NR, iscr,
                nk, L->relu);
    }
    return;
  }
  /* Groups of mr rows (dense), then the last rows one by one (with their
   * lists of non-zero inputs). A panel (K NR floats) stays in cache while
   * every group passes it. */
  const int ng = n / mr, nt = n - ng * mr;
  int *cnt = iscr, *lists = iscr + nt;
  for (int t = 0; t < nt; t++)
    cnt[t] = nonzero_cols(lists + (size_t)t * K, x + (size_t)(ng * mr + t) * ldx, ldx, 1, K);
  for (int p = 0; p < P; p++) {
    const float *w = L->w + p * ps, *b = L->b + (size_t)p * NR;
    for (int g = 0; g < ng; g++)
      ks->big(y + (size_t)g * mr * ldy + (size_t)p * NR, ldy, x + (size_t)g * mr * ldx, ldx, w,
              ps, b, NULL, K, L->relu);
    for (int t = 0; t < nt; t++) {
      const int r = ng * mr + t;
      ks->one(y + (size_t)r * ldy + (size_t)p * NR, ldy, x + (size_t)r * ldx, ldx, w, ps, b,
              lists + (size_t)t * K, cnt[t], L->relu);
    }
  }
}

void ens_fast_forward(const ens_fast_net *f, float *z, const float *x, int ldx, int n,
                      float *scratch, int *iscratch, int level) {
  if (level < ENS_FAST_SSE2 || level > ENS_FAST_AVX512)
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
      layer_forward(&f->layers[i], ks, y, mp, cur, ld, b, iscratch);
      cur = y;
      ld = mp;
    }
    for (int r = 0; r < b; r++)
      memcpy(z + (size_t)(r0 + r) * f->out, cur + (size_t)r * ld, (size_t)f->out * sizeof(float));
  }
}
