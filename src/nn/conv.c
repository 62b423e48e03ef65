/* 2-D convolution as im2col + OpenBLAS sgemm (Chellapilla et al. 2006), over
 * groups of images sized to the cache (ens_conv2d_group): per group, the
 * forward pass, the weight gradient and the input gradient are each one GEMM
 * of shape (O x C k k) against (C k k x group Ho Wo); im2col/col2im and the
 * NCHW <-> (O, group P) moves around them stay in the cache. */
#include <cblas.h>
#include <string.h>

#include "core/clones.h"
#include "ens/conv.h"
#include "nn/winograd.h"

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

/* Short-row moves for im2col without library calls: its rows are a few
 * dozen floats (14 in conv 32->64 on 14x14), and a memcpy/memset call per
 * row was about 10 % of a training step of the reference CNN. Vectors of 8
 * floats with the last one overlapping its predecessor; plain moves, so the
 * bits are those of any copy. */
typedef float v8f __attribute__((vector_size(8 * sizeof(float))));
typedef float v4f __attribute__((vector_size(4 * sizeof(float))));

static inline void copy_row(float *d, const float *s, int n) {
  if (n >= 8) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
      v8f v;
      memcpy(&v, s + i, sizeof v);
      memcpy(d + i, &v, sizeof v);
    }
    if (i < n) {
      v8f v;
      memcpy(&v, s + n - 8, sizeof v);
      memcpy(d + n - 8, &v, sizeof v);
    }
  } else if (n >= 4) {
    v4f a, b;
    memcpy(&a, s, sizeof a);
    memcpy(&b, s + n - 4, sizeof b);
    memcpy(d, &a, sizeof a);
    memcpy(d + n - 4, &b, sizeof b);
  } else {
    for (int i = 0; i < n; i++)
      d[i] = s[i];
  }
}

static inline void zero_row(float *d, int n) {
  const v8f z8 = {0};
  const v4f z4 = {0};
  if (n >= 8) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
      memcpy(d + i, &z8, sizeof z8);
    if (i < n)
      memcpy(d + n - 8, &z8, sizeof z8);
  } else if (n >= 4) {
    memcpy(d, &z4, sizeof z4);
    memcpy(d + n - 4, &z4, sizeof z4);
  } else {
    for (int i = 0; i < n; i++)
      d[i] = 0.0f;
  }
}

/* "Same" convolutions (stride 1, k = 2 pad + 1: Ho = H, Wo = W) read, for a
 * window offset (ki, kj), the input plane shifted by (ki - pad) W + kj - pad
 * floats: the valid rows' pixels form one contiguous run of the plane,
 * moved at once; only the few pixels whose column falls in the padding
 * (which the run picks up from the neighbouring row) are set apart. */
static int same_conv(const ens_conv_geom *g) {
  return g->stride == 1 && g->k == 2 * g->pad + 1 && g->Ho == g->H && g->Wo == g->W;
}

/* Rows [r0, r1) and columns [c0, c1) of an H x W plane whose pixel (oh, ow)
 * reads input (oh + dy, ow + dx) inside the plane. */
static void same_range(int *r0, int *r1, int *c0, int *c1, int dy, int dx, int H, int W) {
  *r0 = dy < 0 ? -dy : 0;
  *r1 = dy > 0 ? H - dy : H;
  *c0 = dx < 0 ? -dx : 0;
  *c1 = dx > 0 ? W - dx : W;
  if (*r1 < *r0)
    *r1 = *r0;
}

/* Zeroes the columns outside [c0, c1) of rows [r0, r1) of a W-wide plane:
 * the pixels of a window offset's valid rows that read padding. */
static inline void zero_pad_cols(float *plane, int r0, int r1, int c0, int c1, int W) {
  /* One padding column on either side (k = 3), as straight loops: the
   * general one's inner loops of 0 or 1 trips were about a third of
   * im2col's time. */
  if (c0 == 0 && c1 == W)
    return;
  if (c0 == 1 && c1 == W) {
    for (int r = r0; r < r1; r++)
      plane[r * W] = 0.0f;
    return;
  }
  if (c0 == 0 && c1 == W - 1) {
    for (int r = r0; r < r1; r++)
      plane[r * W + W - 1] = 0.0f;
    return;
  }
  for (int r = r0; r < r1; r++) {
    for (int j = 0; j < c0; j++)
      plane[r * W + j] = 0.0f;
    for (int j = c1; j < W; j++)
      plane[r * W + j] = 0.0f;
  }
}

ENS_CLONES __attribute__((optimize("no-tree-loop-distribute-patterns"))) static void
im2col_same(float *col, size_t N, const float *x, const ens_conv_geom *g, int batch) {
  const int k = g->k, pad = g->pad, H = g->H, W = g->W, C = g->C;
  const size_t P = (size_t)H * W;
  for (int c = 0; c < C; c++)
    for (int ki = 0; ki < k; ki++)
      for (int kj = 0; kj < k; kj++) {
        float *row = col + ((size_t)(c * k + ki) * k + kj) * N;
        const int dy = ki - pad, dx = kj - pad;
        int r0, r1, c0, c1;
        same_range(&r0, &r1, &c0, &c1, dy, dx, H, W);
        const long shift = (long)dy * W + dx;
        for (int n = 0; n < batch; n++) {
          const float *plane = x + ((size_t)n * C + c) * P;
          float *dst = row + (size_t)n * P;
          if (r0 == r1 || c0 >= c1) {
            zero_row(dst, (int)P);
            continue;
          }
          const int p0 = r0 * W + c0, p1 = (r1 - 1) * W + c1;
          zero_row(dst, p0);
          copy_row(dst + p0, plane + p0 + shift, p1 - p0);
          zero_row(dst + p1, (int)P - p1);
          zero_pad_cols(dst, r0, r1, c0, c1, W);
        }
      }
}

/* ens_im2col with rows ld floats apart (ld >= batch Ho Wo). */
ENS_CLONES static void im2col_ld(float *col, size_t ld, const float *x, const ens_conv_geom *g,
                                 int batch) {
  if (same_conv(g)) {
    im2col_same(col, ld, x, g, batch);
    return;
  }
  const int k = g->k, s = g->stride, pad = g->pad, H = g->H, W = g->W;
  const int Ho = g->Ho, Wo = g->Wo, C = g->C;
  const size_t P = (size_t)Ho * Wo, N = ld, HW = (size_t)H * W;
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
              zero_row(dst, Wo);
              continue;
            }
            const float *src = plane + (size_t)ih * W - pad + kj;
            if (s == 1) {
              /* The padding columns, then the input's: the row's zeros
               * are written first and the copy may overwrite them. */
              if (lo > 0 || hi < Wo)
                zero_row(dst, Wo);
              copy_row(dst + lo, src + lo, hi - lo);
            } else {
              for (int ow = 0; ow < lo; ow++)
                dst[ow] = 0.0f;
              for (int ow = lo; ow < hi; ow++)
                dst[ow] = src[(size_t)ow * s];
              for (int ow = hi; ow < Wo; ow++)
                dst[ow] = 0.0f;
            }
          }
        }
      }
}

void ens_im2col(float *col, const float *x, const ens_conv_geom *g, int batch) {
  im2col_ld(col, (size_t)batch * g->Ho * g->Wo, x, g, batch);
}

/* col2im of a "same" convolution, plane by plane: each window offset's
 * entries whose column falls in the padding are set to 0 in col (scratch
 * of the backward pass), then the valid rows are added as one contiguous
 * run. Each pixel gets its contributions in the window-offset order of the
 * general loop, and the added zeros change no bit (a sum started at +0
 * never becomes -0), so the result is the same to the bit. */
ENS_CLONES static void col2im_same(float *dx, float *col, const ens_conv_geom *g, int batch) {
  const int k = g->k, pad = g->pad, H = g->H, W = g->W, C = g->C;
  const size_t P = (size_t)H * W, N = (size_t)batch * P;
  for (int n = 0; n < batch; n++)
    for (int c = 0; c < C; c++) {
      float *plane = dx + ((size_t)n * C + c) * P;
      for (size_t i = 0; i < P; i++)
        plane[i] = 0.0f;
      for (int ki = 0; ki < k; ki++)
        for (int kj = 0; kj < k; kj++) {
          float *src = col + ((size_t)(c * k + ki) * k + kj) * N + (size_t)n * P;
          const int dy = ki - pad, dxo = kj - pad;
          int r0, r1, c0, c1;
          same_range(&r0, &r1, &c0, &c1, dy, dxo, H, W);
          if (r0 == r1 || c0 >= c1)
            continue;
          zero_pad_cols(src, r0, r1, c0, c1, W);
          const int p0 = r0 * W + c0, p1 = (r1 - 1) * W + c1;
          float *dst = plane + p0 + (long)dy * W + dxo;
          const float *sp = src + p0;
          for (int i = 0; i < p1 - p0; i++)
            dst[i] += sp[i];
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

void ens_col2im_scratch(float *dx, float *col, const ens_conv_geom *g, int batch) {
  if (same_conv(g))
    col2im_same(dx, col, g, batch);
  else
    ens_col2im(dx, col, g, batch);
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
ENS_CLONES float ens_sum8(const float *x, size_t n) {
  /* Lanes 0-3 and 4-7 as two 4-float vectors: the same lane-by-lane sums as
   * one 8-float vector, kept in registers in the baseline (SSE2) build too,
   * where an 8-float accumulator went through the stack on every add. */
  v4f lo = {0}, hi = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v4f a, b;
    memcpy(&a, x + i, sizeof a);
    memcpy(&b, x + i + 4, sizeof b);
    lo += a;
    hi += b;
  }
  float s = 0.0f;
  for (int j = 0; j < 4; j++)
    s += lo[j];
  for (int j = 0; j < 4; j++)
    s += hi[j];
  for (; i < n; i++)
    s += x[i];
  return s;
}

size_t ens_conv2d_nwork(const ens_conv_geom *g, int batch) {
  int G = ens_conv2d_group(g, batch);
  size_t n = ((size_t)g->C * g->k * g->k + (size_t)g->O) *
             ens_gemm_cols((size_t)(G > 1 ? G : 1) * g->Ho * g->Wo);
  /* Winograd: after the weight gradient's im2col columns and output
   * gradient (backward), or alone (forward). */
  return ens_wino_applies(g) ? n + ens_wino_nwork(g, G > 1 ? G : 1) : n;
}

/* dst = src + bo (n). */
ENS_CLONES static void bias_copy(float *dst, const float *src, float bo, size_t n) {
  for (size_t p = 0; p < n; p++)
    dst[p] = src[p] + bo;
}

/* The same, returning the sum of dst as batch norm over channels sums a
 * plane (ens_plane_sum in batchnorm2d.c: 8 float lanes over whole chunks,
 * added in double in lane order, then the tail in double): one pass over
 * the plane instead of a copy then a sum. */
ENS_CLONES static double bias_copy_sum(float *dst, const float *src, float bo, size_t n) {
  const v4f bv = {bo, bo, bo, bo};
  v4f lo = {0}, hi = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v4f a, b;
    memcpy(&a, src + i, sizeof a);
    memcpy(&b, src + i + 4, sizeof b);
    a += bv;
    b += bv;
    memcpy(dst + i, &a, sizeof a);
    memcpy(dst + i + 4, &b, sizeof b);
    lo += a;
    hi += b;
  }
  double s = 0.0;
  for (int j = 0; j < 4; j++)
    s += lo[j];
  for (int j = 0; j < 4; j++)
    s += hi[j];
  for (; i < n; i++) {
    dst[i] = src[i] + bo;
    s += dst[i];
  }
  return s;
}

/* The forward pass; with sums not NULL, sums[o] += the 8-lane sum of each
 * output plane of channel o (bias_copy_sum) in image order: batch norm's
 * first statistics pass, taken while the group's output is in the cache. */
static void conv2d_forward(float *y, float *work, const float *x, const float *w, const float *b,
                           const ens_conv_geom *g, int batch, double *sums) {
  if (ens_wino_applies(g)) {
    ens_wino_forward(y, work, x, w, b, g, batch, sums);
    return;
  }
  const int K = g->C * g->k * g->k, O = g->O, G = ens_conv2d_group(g, batch);
  const size_t P = (size_t)g->Ho * g->Wo, CHW = (size_t)g->C * g->H * g->W;
  float *col = work, *ycol = work + (size_t)K * ens_gemm_cols((size_t)G * P);
  for (int n0 = 0; n0 < batch; n0 += G) {
    const int gb = batch - n0 < G ? batch - n0 : G;
    /* N columns of the group's pixels, ld with the zero columns that make
     * every column's bits independent of the group's size (winograd.h). */
    const size_t N = (size_t)gb * P, ld = ens_gemm_cols(N);
    float *yn = y + (size_t)n0 * O * P;
    im2col_ld(col, ld, x + (size_t)n0 * CHW, g, gb);
    for (int r = 0; ld > N && r < K; r++)
      memset(col + (size_t)r * ld + N, 0, (ld - N) * sizeof(float));
    /* One image and no zero columns: its (O, P) output is already the NCHW
     * slice. */
    float *dst0 = gb == 1 && ld == N ? yn : ycol;
    /* (O, ld) = w (O, K) col (K, ld) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, (int)ld, K, 1.0f, w, K, col,
                (int)ld, 0.0f, dst0, (int)ld);
    /* (O, gb, P) -> (gb, O, P), plus the bias. */
    for (int n = 0; n < gb; n++)
      for (int o = 0; o < O; o++) {
        const float *src = dst0 + (size_t)o * ld + (size_t)n * P;
        float *dst = yn + ((size_t)n * O + o) * P;
        if (sums)
          sums[o] += bias_copy_sum(dst, src, b[o], P);
        else
          bias_copy(dst, src, b[o], P);
      }
  }
}

void ens_conv2d_forward(float *y, float *work, const float *x, const float *w, const float *b,
                        const ens_conv_geom *g, int batch) {
  conv2d_forward(y, work, x, w, b, g, batch, NULL);
}

void ens_conv2d_forward_sums(float *y, double *sums, float *work, const float *x, const float *w,
                             const float *b, const ens_conv_geom *g, int batch) {
  for (int o = 0; o < g->O; o++)
    sums[o] = 0.0;
  conv2d_forward(y, work, x, w, b, g, batch, sums);
}

/* The output gradient of images [n0, n0 + gb) as (O, gb P): dy's planes
 * copied (or, for one image, dy's slice as it is), each plane's sum added
 * to db as it goes. */
typedef struct {
  const float *dy;
} copy_src;

static const float *fill_copy(void *ctx, float *dycol, float *db, int n0, int gb,
                             const ens_conv_geom *g) {
  const float *dy = ((const copy_src *)ctx)->dy;
  const size_t P = (size_t)g->Ho * g->Wo, N = (size_t)gb * P;
  const float *dyn = dy + (size_t)n0 * g->O * P;
  for (int n = 0; n < gb; n++)
    for (int o = 0; o < g->O; o++) {
      const float *src = dyn + ((size_t)n * g->O + o) * P;
      db[o] += ens_sum8(src, P);
      if (gb > 1)
        memcpy(dycol + (size_t)o * N + (size_t)n * P, src, P * sizeof(float));
    }
  return gb == 1 ? dyn : dycol;
}

void ens_conv2d_backward_fill(float *dx, float *dw, float *db, float *work, ens_conv_dy_fill fill,
                              void *ctx, const float *x, const float *w, const ens_conv_geom *g,
                              int batch) {
  const int K = g->C * g->k * g->k, O = g->O, G = ens_conv2d_group(g, batch);
  const size_t P = (size_t)g->Ho * g->Wo, CHW = (size_t)g->C * g->H * g->W;
  float *col = work, *dycol = work + (size_t)K * G * P;
  for (int o = 0; o < O; o++)
    db[o] = 0.0f;
  /* Group by group in batch order: dw accumulates the groups' GEMMs (beta
   * 1 after the first), db the images' sums. */
  for (int n0 = 0; n0 < batch; n0 += G) {
    const int gb = batch - n0 < G ? batch - n0 : G;
    const size_t N = (size_t)gb * P;
    const float *dyg = fill(ctx, dycol, db, n0, gb, g);
    ens_im2col(col, x + (size_t)n0 * CHW, g, gb);
    /* dw (O, K) (+)= dycol (O, N) col^T (N, K) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, K, (int)N, 1.0f, dyg, (int)N, col,
                (int)N, n0 ? 1.0f : 0.0f, dw, K);
    if (!dx)
      continue;
    if (ens_wino_applies(g)) {
      ens_wino_dx(dx + (size_t)n0 * CHW, work + (size_t)(K + O) * G * P, dyg, N, w, g, gb, !n0);
      continue;
    }
    /* dcol (K, N) = w^T (K, O) dycol (O, N), into col's place; then col2im. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)N, O, 1.0f, w, K, dyg, (int)N,
                0.0f, col, (int)N);
    ens_col2im_scratch(dx + (size_t)n0 * CHW, col, g, gb);
  }
}

void ens_conv2d_backward(float *dx, float *dw, float *db, float *work, const float *dy,
                         const float *x, const float *w, const ens_conv_geom *g, int batch) {
  copy_src c = {dy};
  ens_conv2d_backward_fill(dx, dw, db, work, fill_copy, &c, x, w, g, batch);
}
