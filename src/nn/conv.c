/* 2-D convolution as im2col + OpenBLAS sgemm (Chellapilla et al. 2006), over
 * groups of images sized to the cache (ens_conv2d_group): per group, the
 * forward pass, the weight gradient and the input gradient are each one GEMM
 * of shape (O x C k k) against (C k k x group Ho Wo); im2col/col2im and the
 * NCHW <-> (O, group P) moves around them stay in the cache. */
#include <cblas.h>
#include <string.h>

#include "core/clones.h"
#include "ens/conv.h"

int ens_conv_geom_init(ens_conv_geom *g) {
  if (g->k < 1 || g->stride < 1 || g->pad < 0 || g->C < 1 || g->H < 1 || g->W < 1 ||
      g->k > g->H + 2 * g->pad || g->k > g->W + 2 * g->pad)
    return -1;
  g->Ho = (g->H + 2 * g->pad - g->k) / g->stride + 1;
  g->Wo = (g->W + 2 * g->pad - g->k) / g->stride + 1;
  return 0;
}

/* Output columns ow in [lo, hi) read input column ow*stride - pad + kj inside
 * [0, W); the rest read padding. */
static void col_range(int *lo, int *hi, int kj, int W, int Wo, int stride, int pad) {
  int a = pad - kj; /* ow stride >= a */
  int l = a > 0 ? (a + stride - 1) / stride : 0;
  int b = W + pad - kj; /* ow stride < b */
  int h = b > 0 ? (b + stride - 1) / stride : 0;
  if (h > Wo)
    h = Wo;
  if (l > h)
    l = h;
  *lo = l;
  *hi = h;
}

void ens_im2col(float *col, const float *x, const ens_conv_geom *g, int batch) {
  const int k = g->k, s = g->stride, pad = g->pad, H = g->H, W = g->W;
  const int Ho = g->Ho, Wo = g->Wo, C = g->C;
  const size_t P = (size_t)Ho * Wo, N = (size_t)batch * P, HW = (size_t)H * W;
  for (int c = 0; c < C; c++)
    for (int ki = 0; ki < k; ki++)
      for (int kj = 0; kj < k; kj++) {
        float *row = col + ((size_t)(c * k + ki) * k + kj) * N;
        int lo, hi;
        col_range(&lo, &hi, kj, W, Wo, s, pad);
        for (int n = 0; n < batch; n++) {
          const float *plane = x + ((size_t)n * C + c) * HW;
          float *dst = row + (size_t)n * P;
          for (int oh = 0; oh < Ho; oh++, dst += Wo) {
            int ih = oh * s - pad + ki;
            if (ih < 0 || ih >= H) {
              memset(dst, 0, (size_t)Wo * sizeof(float));
              continue;
            }
            const float *src = plane + (size_t)ih * W - pad + kj;
            for (int ow = 0; ow < lo; ow++)
              dst[ow] = 0.0f;
            if (s == 1)
              memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
            else
              for (int ow = lo; ow < hi; ow++)
                dst[ow] = src[(size_t)ow * s];
            for (int ow = hi; ow < Wo; ow++)
              dst[ow] = 0.0f;
          }
        }
      }
}

void ens_col2im(float *dx, const float *col, const ens_conv_geom *g, int batch) {
  const int k = g->k, s = g->stride, pad = g->pad, H = g->H, W = g->W;
  const int Ho = g->Ho, Wo = g->Wo, C = g->C;
  const size_t P = (size_t)Ho * Wo, N = (size_t)batch * P, HW = (size_t)H * W;
  memset(dx, 0, (size_t)batch * C * HW * sizeof(float));
  /* Per image and channel, the window offsets in a fixed order: every pixel
   * sums its contributions in the same order whatever the batch. */
  for (int n = 0; n < batch; n++)
    for (int c = 0; c < C; c++) {
      float *plane = dx + ((size_t)n * C + c) * HW;
      for (int ki = 0; ki < k; ki++)
        for (int kj = 0; kj < k; kj++) {
          const float *src = col + ((size_t)(c * k + ki) * k + kj) * N + (size_t)n * P;
          int lo, hi;
          col_range(&lo, &hi, kj, W, Wo, s, pad);
          for (int oh = 0; oh < Ho; oh++, src += Wo) {
            int ih = oh * s - pad + ki;
            if (ih < 0 || ih >= H)
              continue;
            float *dst = plane + (size_t)ih * W - pad + kj;
            if (s == 1)
              for (int ow = lo; ow < hi; ow++)
                dst[ow] += src[ow];
            else
              for (int ow = lo; ow < hi; ow++)
                dst[(size_t)ow * s] += src[ow];
          }
        }
    }
}

/* Images per GEMM when g->group is 0: as many as keep one group's im2col
 * columns and GEMM output, (C k k + O) Ho Wo floats per image, within this
 * many bytes, so that the GEMM reads what im2col has just written from the
 * core's cache instead of memory. Measured on the reference CNN
 * (bench/bench_conv.c, CPU time per training step): 0.097 s with one GEMM
 * over the whole batch, 0.110 s with one image per GEMM, 0.082-0.089 s with
 * budgets of 256 KiB to 2 MiB (1 MiB: 8 images per group in conv 1->32 on
 * 28x28, 3 in conv 32->64 on 14x14). A
 * function of the geometry alone, so results do not depend on anything but
 * the network and the batch. */
enum { GROUP_BYTES = 1024 * 1024 };

int ens_conv2d_group(const ens_conv_geom *g, int batch) {
  int G = g->group;
  if (G < 1) {
    size_t per = ((size_t)g->C * g->k * g->k + (size_t)g->O) * g->Ho * g->Wo * sizeof(float);
    G = per < GROUP_BYTES ? (int)(GROUP_BYTES / per) : 1;
  }
  return G < batch ? G : batch;
}

/* Sum of x (n) in 8 lanes (lane j takes elements j, j + 8, ...; the lanes
 * then the tail added in order): one serial chain of float additions was
 * latency-bound (the bias gradient of conv 1->32 on 28x28 images was about
 * 5 % of a training step). A fixed order, so the same bits on every CPU. */
typedef float v8f __attribute__((vector_size(8 * sizeof(float))));

static float sum_lanes(const float *x, size_t n) {
  v8f acc = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8f v;
    memcpy(&v, x + i, sizeof v);
    acc += v;
  }
  float s = 0.0f;
  for (int j = 0; j < 8; j++)
    s += acc[j];
  for (; i < n; i++)
    s += x[i];
  return s;
}

/* ------------------------------------------------------ direct convolution */

/* A convolution with few input values per window (C k k <= DIRECT_K, such
 * as the first layer of an image network: C = 1 or 3) is computed directly:
 * its GEMMs have an inner dimension of C k k, too short for the GEMM kernel
 * to pay for the im2col columns and the NCHW moves around it (for conv
 * 1->32 3x3 on 28x28 images they cost more than the GEMMs). Used when the
 * group is left to the cache budget (g->group 0); a set group forces the
 * im2col path (the tests' reference). */
enum { DIRECT_K = 27 };

int ens_conv2d_direct(const ens_conv_geom *g) {
  return g->group == 0 && g->C * g->k * g->k <= DIRECT_K;
}

/* Output columns rounded up to 8: the direct loops run whole 8-float
 * vectors over rows of this width (the extra columns are computed from
 * padding and dropped), so no row has a scalar tail. */
static int cols8(const ens_conv_geom *g) { return (g->Wo + 7) & ~7; }
/* The padded rows and columns the windows read: (Ho-1) s + k rows, and
 * columns for cols8 outputs at stride 1, (Wo-1) s + k otherwise. */
static int padded_rows(const ens_conv_geom *g) { return (g->Ho - 1) * g->stride + g->k; }
static int padded_cols(const ens_conv_geom *g) {
  return g->stride == 1 ? cols8(g) + g->k - 1 : (g->Wo - 1) * g->stride + g->k;
}
/* Floats of the direct path's scratch: the padded image, one output row
 * and one output gradient plane of cols8 columns. */
static size_t direct_nwork(const ens_conv_geom *g) {
  return (size_t)g->C * padded_rows(g) * padded_cols(g) + (size_t)(g->Ho + 1) * cols8(g);
}

/* xp (C, Hp, Wp) = image x (C, H, W) framed by pad zeros (and zeros right
 * of it up to Wp). */
static void pad_image(float *xp, const float *x, const ens_conv_geom *g) {
  const int Hp = padded_rows(g), Wp = padded_cols(g), pad = g->pad;
  for (int c = 0; c < g->C; c++)
    for (int r = 0; r < Hp; r++) {
      float *dst = xp + ((size_t)c * Hp + r) * Wp;
      const int ih = r - pad;
      if (ih < 0 || ih >= g->H) {
        memset(dst, 0, (size_t)Wp * sizeof(float));
        continue;
      }
      const float *src = x + ((size_t)c * g->H + ih) * g->W;
      for (int q = 0; q < Wp; q++) {
        const int iw = q - pad;
        dst[q] = iw >= 0 && iw < g->W ? src[iw] : 0.0f;
      }
    }
}

/* One output plane y (Ho, Wo) of output channel o, stride 1: per pixel,
 * the window's products added in tap order ((c, ki, kj), from 0), then the
 * bias; each pixel is its own chain of float operations, so the clones
 * give the same bits. Blocks of 32 columns (4 vectors of 8, independent
 * chains in registers), then single vectors; row: scratch of W8 floats.
 * off: the taps' offsets in xp; K a constant where inlined with one. */
static inline __attribute__((always_inline)) void
direct_plane_s1(float *y, float *row, const float *xp, const float *w, float b, const size_t *off,
                int K, int Wp, int Ho, int Wo, int W8) {
  for (int oh = 0; oh < Ho; oh++) {
    const float *xr = xp + (size_t)oh * Wp;
    int q = 0;
    for (; q + 32 <= W8; q += 32) {
      v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
      for (int t = 0; t < K; t++) {
        const float *xq = xr + off[t] + q;
        const v8f wv = {w[t], w[t], w[t], w[t], w[t], w[t], w[t], w[t]};
        v8f x0, x1, x2, x3;
        memcpy(&x0, xq, sizeof x0);
        memcpy(&x1, xq + 8, sizeof x1);
        memcpy(&x2, xq + 16, sizeof x2);
        memcpy(&x3, xq + 24, sizeof x3);
        a0 += wv * x0;
        a1 += wv * x1;
        a2 += wv * x2;
        a3 += wv * x3;
      }
      memcpy(row + q, &a0, sizeof a0);
      memcpy(row + q + 8, &a1, sizeof a1);
      memcpy(row + q + 16, &a2, sizeof a2);
      memcpy(row + q + 24, &a3, sizeof a3);
    }
    for (; q < W8; q += 8) {
      v8f a0 = {0};
      for (int t = 0; t < K; t++) {
        const v8f wv = {w[t], w[t], w[t], w[t], w[t], w[t], w[t], w[t]};
        v8f x0;
        memcpy(&x0, xr + off[t] + q, sizeof x0);
        a0 += wv * x0;
      }
      memcpy(row + q, &a0, sizeof a0);
    }
    float *yr = y + (size_t)oh * Wo;
    for (int ow = 0; ow < Wo; ow++)
      yr[ow] = row[ow] + b;
  }
}

/* The same for any stride (scalar taps, same order). */
ENS_CLONES static void direct_plane(float *y, float *row, const float *xp, const float *w,
                                    float b, const size_t *off, int K, int s, int Wp, int Ho,
                                    int Wo, int W8) {
  if (s == 1) {
    if (K == 9) /* 3x3 on one channel: the taps unrolled */
      direct_plane_s1(y, row, xp, w, b, off, 9, Wp, Ho, Wo, W8);
    else
      direct_plane_s1(y, row, xp, w, b, off, K, Wp, Ho, Wo, W8);
    return;
  }
  for (int oh = 0; oh < Ho; oh++) {
    const float *xr = xp + (size_t)oh * s * Wp;
    for (int ow = 0; ow < Wo; ow++)
      row[ow] = 0.0f;
    for (int t = 0; t < K; t++) {
      const float wv = w[t];
      const float *xq = xr + off[t];
      for (int ow = 0; ow < Wo; ow++)
        row[ow] += wv * xq[(size_t)ow * s];
    }
    float *yr = y + (size_t)oh * Wo;
    for (int ow = 0; ow < Wo; ow++)
      yr[ow] = row[ow] + b;
  }
}

/* Tap offsets in the padded image xp (C, Hp, Wp): tap (c, ki, kj). */
static void tap_offsets(size_t *off, const ens_conv_geom *g, int Hp, int Wp) {
  const int k = g->k;
  for (int t = 0; t < g->C * k * k; t++)
    off[t] = ((size_t)(t / (k * k)) * Hp + (size_t)(t / k % k)) * Wp + (size_t)(t % k);
}

/* dwo (C k k) += the window taps' dot products of one image's output
 * gradient plane with its padded input xp, stride 1: dyp (Ho, W8) is the
 * plane with zero columns up to W8; per tap, 8 float lanes (lane j takes
 * columns j, j + 8, ... of every row, rows in order), the lanes then added
 * in order: the same bits on every CPU. */
static inline __attribute__((always_inline)) void
direct_dw_s1(float *dwo, const float *dyp, const float *xp, const size_t *off, int K, int Wp,
             int Ho, int W8) {
  v8f acc[DIRECT_K];
  for (int t = 0; t < K; t++)
    acc[t] = (v8f){0};
  for (int oh = 0; oh < Ho; oh++) {
    const float *xr = xp + (size_t)oh * Wp;
    for (int q = 0; q < W8; q += 8) {
      v8f d;
      memcpy(&d, dyp + (size_t)oh * W8 + q, sizeof d);
      for (int t = 0; t < K; t++) {
        v8f x;
        memcpy(&x, xr + off[t] + q, sizeof x);
        acc[t] += d * x;
      }
    }
  }
  for (int t = 0; t < K; t++) {
    float sum = 0.0f;
    for (int j = 0; j < 8; j++)
      sum += acc[t][j];
    dwo[t] += sum;
  }
}

/* The same for any stride: dyp (Ho, Wo), one chain per tap. */
ENS_CLONES static void direct_plane_dw(float *dwo, const float *dyp, const float *xp,
                                       const size_t *off, int K, int s, int Wp, int Ho, int Wo,
                                       int W8) {
  if (s == 1) {
    if (K == 9)
      direct_dw_s1(dwo, dyp, xp, off, 9, Wp, Ho, W8);
    else
      direct_dw_s1(dwo, dyp, xp, off, K, Wp, Ho, W8);
    return;
  }
  for (int t = 0; t < K; t++) {
    float sum = 0.0f;
    for (int oh = 0; oh < Ho; oh++) {
      const float *xr = xp + (size_t)oh * s * Wp + off[t];
      for (int ow = 0; ow < Wo; ow++)
        sum += dyp[(size_t)oh * Wo + ow] * xr[(size_t)ow * s];
    }
    dwo[t] += sum;
  }
}

static void direct_forward(float *y, float *work, const float *x, const float *w, const float *b,
                           const ens_conv_geom *g, int batch) {
  const int K = g->C * g->k * g->k, Hp = padded_rows(g), Wp = padded_cols(g), W8 = cols8(g);
  const size_t P = (size_t)g->Ho * g->Wo, CHW = (size_t)g->C * g->H * g->W;
  float *xp = work, *row = work + (size_t)g->C * Hp * Wp;
  size_t off[DIRECT_K];
  tap_offsets(off, g, Hp, Wp);
  for (int n = 0; n < batch; n++) {
    pad_image(xp, x + (size_t)n * CHW, g);
    for (int o = 0; o < g->O; o++)
      direct_plane(y + ((size_t)n * g->O + o) * P, row, xp, w + (size_t)o * K, b[o], off, K,
                   g->stride, Wp, g->Ho, g->Wo, W8);
  }
}

/* dw (O, C k k) and db (O) overwritten: per image in batch order, per
 * output channel, the plane's sum and tap dot products added. */
static void direct_backward_w(float *dw, float *db, float *work, const float *dy, const float *x,
                              const ens_conv_geom *g, int batch) {
  const int K = g->C * g->k * g->k, Hp = padded_rows(g), Wp = padded_cols(g), W8 = cols8(g);
  const int Ho = g->Ho, Wo = g->Wo;
  const size_t P = (size_t)Ho * Wo, CHW = (size_t)g->C * g->H * g->W;
  float *xp = work, *dyp = work + (size_t)g->C * Hp * Wp;
  size_t off[DIRECT_K];
  tap_offsets(off, g, Hp, Wp);
  memset(dw, 0, (size_t)g->O * K * sizeof(float));
  memset(db, 0, (size_t)g->O * sizeof(float));
  for (int n = 0; n < batch; n++) {
    pad_image(xp, x + (size_t)n * CHW, g);
    for (int o = 0; o < g->O; o++) {
      const float *dyo = dy + ((size_t)n * g->O + o) * P;
      db[o] += sum_lanes(dyo, P);
      const float *src = dyo;
      if (g->stride == 1) { /* rows widened to W8 with zeros */
        for (int oh = 0; oh < Ho; oh++) {
          float *dr = dyp + (size_t)oh * W8;
          memcpy(dr, dyo + (size_t)oh * Wo, (size_t)Wo * sizeof(float));
          for (int q = Wo; q < W8; q++)
            dr[q] = 0.0f;
        }
        src = dyp;
      }
      direct_plane_dw(dw + (size_t)o * K, src, xp, off, K, g->stride, Wp, Ho, Wo, W8);
    }
  }
}

size_t ens_conv2d_nwork(const ens_conv_geom *g, int batch) {
  int G = ens_conv2d_group(g, batch);
  size_t n = ((size_t)g->C * g->k * g->k + (size_t)g->O) * (size_t)(G > 1 ? G : 1) * g->Ho * g->Wo;
  if (ens_conv2d_direct(g)) /* its scratch after the columns (kept for the input gradient) */
    n += direct_nwork(g);
  return n;
}

void ens_conv2d_forward(float *y, float *work, const float *x, const float *w, const float *b,
                        const ens_conv_geom *g, int batch) {
  const int K = g->C * g->k * g->k, O = g->O, G = ens_conv2d_group(g, batch);
  const size_t P = (size_t)g->Ho * g->Wo, CHW = (size_t)g->C * g->H * g->W;
  float *col = work, *ycol = work + (size_t)K * G * P;
  if (ens_conv2d_direct(g)) {
    direct_forward(y, work + (size_t)(K + O) * G * P, x, w, b, g, batch);
    return;
  }
  for (int n0 = 0; n0 < batch; n0 += G) {
    const int gb = batch - n0 < G ? batch - n0 : G;
    const size_t N = (size_t)gb * P;
    float *yn = y + (size_t)n0 * O * P;
    ens_im2col(col, x + (size_t)n0 * CHW, g, gb);
    /* One image: its (O, P) output is already the NCHW slice. */
    float *dst0 = gb == 1 ? yn : ycol;
    /* (O, gb P) = w (O, K) col (K, gb P) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, (int)N, K, 1.0f, w, K, col, (int)N,
                0.0f, dst0, (int)N);
    /* (O, gb, P) -> (gb, O, P), plus the bias. */
    for (int n = 0; n < gb; n++)
      for (int o = 0; o < O; o++) {
        const float *src = dst0 + (size_t)o * N + (size_t)n * P;
        float *dst = yn + ((size_t)n * O + o) * P;
        const float bo = b[o];
        for (size_t p = 0; p < P; p++)
          dst[p] = src[p] + bo;
      }
  }
}

void ens_conv2d_backward(float *dx, float *dw, float *db, float *work, const float *dy,
                         const float *x, const float *w, const ens_conv_geom *g, int batch) {
  const int K = g->C * g->k * g->k, O = g->O, G = ens_conv2d_group(g, batch);
  const size_t P = (size_t)g->Ho * g->Wo, CHW = (size_t)g->C * g->H * g->W;
  float *col = work, *dycol = work + (size_t)K * G * P;
  const int direct = ens_conv2d_direct(g);
  if (direct) {
    direct_backward_w(dw, db, work + (size_t)(K + O) * G * P, dy, x, g, batch);
    if (!dx)
      return;
  }
  for (int o = 0; o < O; o++)
    if (!direct)
      db[o] = 0.0f;
  /* Group by group in batch order: dw accumulates the groups' GEMMs (beta
   * 1 after the first), db the images' sums. */
  for (int n0 = 0; n0 < batch; n0 += G) {
    const int gb = batch - n0 < G ? batch - n0 : G;
    const size_t N = (size_t)gb * P;
    const float *dyn = dy + (size_t)n0 * O * P;
    /* dy (gb, O, P) -> dycol (O, gb P) (one image: dy's slice as it is);
     * db sums it per channel, in the order of the batch rows. */
    const float *dyg = gb == 1 ? dyn : dycol;
    for (int n = 0; n < gb; n++)
      for (int o = 0; o < O; o++) {
        const float *src = dyn + ((size_t)n * O + o) * P;
        if (gb > 1)
          memcpy(dycol + (size_t)o * N + (size_t)n * P, src, P * sizeof(float));
        if (!direct)
          db[o] += sum_lanes(src, P);
      }
    if (!direct) {
      ens_im2col(col, x + (size_t)n0 * CHW, g, gb);
      /* dw (O, K) (+)= dycol (O, N) col^T (N, K) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, K, (int)N, 1.0f, dyg, (int)N, col,
                  (int)N, n0 ? 1.0f : 0.0f, dw, K);
    }
    if (!dx)
      continue;
    /* dcol (K, N) = w^T (K, O) dycol (O, N), into col's place; then col2im. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)N, O, 1.0f, w, K, dyg, (int)N,
                0.0f, col, (int)N);
    ens_col2im(dx + (size_t)n0 * CHW, col, g, gb);
  }
}
