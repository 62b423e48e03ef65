/* Pooling kernels on NCHW tensors: max and average pooling over k x k
 * windows (no padding), and global average pooling. */
#include <string.h>

#include "core/clones.h"
#include "ens/conv.h"

typedef float v4f __attribute__((vector_size(4 * sizeof(float))));
typedef int v4i __attribute__((vector_size(4 * sizeof(int))));

/* 2x2 windows every 2 pixels, the common case, 4 windows at a time (GCC
 * vector extensions: the even and odd columns of two input rows
 * deinterleaved by shuffles): the same comparisons in the same order as the
 * general loop (first maximum wins; a NaN never replaces), so the same bits.
 * The scalar loop was about 4 % of a training step of the reference CNN. */

static inline v4f blend(v4i sel, v4f a, v4f b) { /* sel ? a : b, lane by lane */
  return (v4f)(((v4i)a & sel) | ((v4i)b & ~sel));
}

ENS_CLONES static void maxpool2(float *y, float *argmax, const float *x, const ens_conv_geom *g,
                                int batch) {
  const int W = g->W, Ho = g->Ho, Wo = g->Wo;
  const size_t HW = (size_t)g->H * W, P = (size_t)Ho * Wo;
  const v4i lane2 = {0, 2, 4, 6};
  for (size_t pl = 0; pl < (size_t)batch * g->C; pl++) {
    const float *in = x + pl * HW;
    float *out = y + pl * P, *am = argmax + pl * P;
    for (int oh = 0; oh < Ho; oh++) {
      const float *r0 = in + (size_t)(2 * oh) * W, *r1 = r0 + W;
      /* Chunks of 4 windows; the last one overlaps its predecessor when
       * Wo is not a multiple of 4 (the same values written twice). */
      int ow = 0;
      for (int ow4 = 0; Wo >= 4 && ow4 < Wo; ow4 += 4) {
        ow = ow4 + 4 <= Wo ? ow4 : Wo - 4;
        const int c = 2 * ow;
        v4f a0, a1, b0, b1;
        memcpy(&a0, r0 + c, sizeof a0);
        memcpy(&a1, r0 + c + 4, sizeof a1);
        memcpy(&b0, r1 + c, sizeof b0);
        memcpy(&b1, r1 + c + 4, sizeof b1);
        const v4f e0 = __builtin_shufflevector(a0, a1, 0, 2, 4, 6);
        const v4f o0 = __builtin_shufflevector(a0, a1, 1, 3, 5, 7);
        const v4f e1 = __builtin_shufflevector(b0, b1, 0, 2, 4, 6);
        const v4f o1 = __builtin_shufflevector(b0, b1, 1, 3, 5, 7);
        const v4i i0 = lane2 + (2 * oh * W + c);
        v4f m = e0;
        v4i best = i0, sel;
        sel = o0 > m;
        m = blend(sel, o0, m);
        best = ((i0 + 1) & sel) | (best & ~sel);
        sel = e1 > m;
        m = blend(sel, e1, m);
        best = ((i0 + W) & sel) | (best & ~sel);
        sel = o1 > m;
        m = blend(sel, o1, m);
        best = ((i0 + (W + 1)) & sel) | (best & ~sel);
        const v4f bf = __builtin_convertvector(best, v4f);
        memcpy(out + oh * Wo + ow, &m, sizeof m);
        memcpy(am + oh * Wo + ow, &bf, sizeof bf);
        ow += 4;
      }
      for (; ow < Wo; ow++) {
        int c = 2 * ow, best = 2 * oh * W + c;
        float m = r0[c];
        if (r0[c + 1] > m)
          m = r0[c + 1], best = 2 * oh * W + c + 1;
        if (r1[c] > m)
          m = r1[c], best = (2 * oh + 1) * W + c;
        if (r1[c + 1] > m)
          m = r1[c + 1], best = (2 * oh + 1) * W + c + 1;
        out[oh * Wo + ow] = m;
        am[oh * Wo + ow] = (float)best;
      }
    }
  }
}

/* The gradient of 4 windows scattered to their 16 pixels: v (the windows'
 * gradients), am (their argmax, a plane index as a float), c the plane
 * index of the first window's top-left pixel, W the plane width. out[0],
 * out[1]: the top row's 8 pixels from c; out[2], out[3]: the bottom row's
 * from c + W. Each pixel is its window's gradient where it is the window's
 * argmax, +0 elsewhere. */
static inline void pool2_scatter4(v4f out[4], v4f v, v4f am, int c, int W) {
  const v4i lane2 = {0, 2, 4, 6};
  const v4i off = __builtin_convertvector(am, v4i) - (lane2 + c);
  const v4i vi = (v4i)v;
  const v4f e0 = (v4f)(vi & (off == 0)), o0 = (v4f)(vi & (off == 1));
  const v4f e1 = (v4f)(vi & (off == W)), o1 = (v4f)(vi & (off == W + 1));
  out[0] = __builtin_shufflevector(e0, o0, 0, 4, 1, 5);
  out[1] = __builtin_shufflevector(e0, o0, 2, 6, 3, 7);
  out[2] = __builtin_shufflevector(e1, o1, 0, 4, 1, 5);
  out[3] = __builtin_shufflevector(e1, o1, 2, 6, 3, 7);
}

/* Backward of 2x2 windows tiling the plane: each window's four pixels
 * written at once (the window's gradient at its maximum, 0 elsewhere), 4
 * windows at a time. */
ENS_CLONES static void maxpool2_backward(float *dx, const float *dy, const float *argmax,
                                         const ens_conv_geom *g, int batch) {
  const size_t HW = (size_t)g->H * g->W, P = (size_t)g->Ho * g->Wo;
  const int W = g->W, Wo = g->Wo;
  for (size_t pl = 0; pl < (size_t)batch * g->C; pl++) {
    float *d = dx + pl * HW;
    const float *gy = dy + pl * P, *am = argmax + pl * P;
    for (int oh = 0; oh < g->Ho; oh++) {
      float *r0 = d + (size_t)(2 * oh) * W, *r1 = r0 + W;
      const float *gr = gy + (size_t)oh * Wo, *ar = am + (size_t)oh * Wo;
      int ow = 0;
      for (int ow4 = 0; Wo >= 4 && ow4 < Wo; ow4 += 4) {
        ow = ow4 + 4 <= Wo ? ow4 : Wo - 4;
        const int c = 2 * ow;
        v4f v, a, p[4];
        memcpy(&v, gr + ow, sizeof v);
        memcpy(&a, ar + ow, sizeof a);
        pool2_scatter4(p, v, a, 2 * oh * W + c, W);
        memcpy(r0 + c, &p[0], sizeof p[0]);
        memcpy(r0 + c + 4, &p[1], sizeof p[1]);
        memcpy(r1 + c, &p[2], sizeof p[2]);
        memcpy(r1 + c + 4, &p[3], sizeof p[3]);
        ow += 4;
      }
      for (; ow < Wo; ow++) {
        const int best = (int)ar[ow] - 2 * oh * W, c = 2 * ow;
        const float v = gr[ow];
        r0[c] = best == c ? v : 0.0f;
        r0[c + 1] = best == c + 1 ? v : 0.0f;
        r1[c] = best == W + c ? v : 0.0f;
        r1[c + 1] = best == W + c + 1 ? v : 0.0f;
      }
    }
  }
}

void ens_maxpool_forward(float *y, float *argmax, const float *x, const ens_conv_geom *g,
                         int batch) {
  const int k = g->k, s = g->stride, W = g->W, Ho = g->Ho, Wo = g->Wo;
  const size_t HW = (size_t)g->H * W, P = (size_t)Ho * Wo;
  if (k == 2 && s == 2) {
    maxpool2(y, argmax, x, g, batch);
    return;
  }
  for (size_t pl = 0; pl < (size_t)batch * g->C; pl++) {
    const float *in = x + pl * HW;
    float *out = y + pl * P, *am = argmax + pl * P;
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        int best = oh * s * W + ow * s;
        float m = in[best];
        for (int ki = 0; ki < k; ki++)
          for (int kj = 0; kj < k; kj++) {
            int idx = (oh * s + ki) * W + ow * s + kj;
            if (in[idx] > m) {
              m = in[idx];
              best = idx;
            }
          }
        out[oh * Wo + ow] = m;
        am[oh * Wo + ow] = (float)best;
      }
  }
}

void ens_maxpool_backward(float *dx, const float *dy, const float *argmax, const ens_conv_geom *g,
                          int batch) {
  const size_t HW = (size_t)g->H * g->W, P = (size_t)g->Ho * g->Wo;
  const int k = g->k, W = g->W, Wo = g->Wo;
  if (k == 2 && g->stride == 2 && g->Ho * 2 == g->H && Wo * 2 == W) {
    maxpool2_backward(dx, dy, argmax, g, batch);
    return;
  }
  if (k == g->stride && g->Ho * k == g->H && Wo * k == W) {
    /* Windows that tile the plane: each pixel is in exactly one window, so
     * every pixel is written once (its window's gradient at the maximum, 0
     * elsewhere) with no clearing pass first. */
    for (size_t pl = 0; pl < (size_t)batch * g->C; pl++) {
      float *d = dx + pl * HW;
      const float *gy = dy + pl * P, *am = argmax + pl * P;
      for (int oh = 0; oh < g->Ho; oh++)
        for (int ki = 0; ki < k; ki++) {
          float *row = d + (size_t)(oh * k + ki) * W;
          for (int ow = 0; ow < Wo; ow++) {
            const int best = (int)am[oh * Wo + ow], base = (oh * k + ki) * W + ow * k;
            for (int kj = 0; kj < k; kj++)
              row[ow * k + kj] = base + kj == best ? gy[oh * Wo + ow] : 0.0f;
          }
        }
    }
    return;
  }
  memset(dx, 0, (size_t)batch * g->C * HW * sizeof(float));
  for (size_t pl = 0; pl < (size_t)batch * g->C; pl++) {
    float *d = dx + pl * HW;
    const float *gy = dy + pl * P, *am = argmax + pl * P;
    for (size_t p = 0; p < P; p++)
      d[(size_t)am[p]] += gy[p];
  }
}

void ens_avgpool_forward(float *y, const float *x, const ens_conv_geom *g, int batch) {
  const int k = g->k, s = g->stride, W = g->W, Ho = g->Ho, Wo = g->Wo;
  const size_t HW = (size_t)g->H * W, P = (size_t)Ho * Wo;
  const float inv = 1.0f / (float)(k * k);
  for (size_t pl = 0; pl < (size_t)batch * g->C; pl++) {
    const float *in = x + pl * HW;
    float *out = y + pl * P;
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        float sum = 0.0f;
        for (int ki = 0; ki < k; ki++)
          for (int kj = 0; kj < k; kj++)
            sum += in[(oh * s + ki) * W + ow * s + kj];
        out[oh * Wo + ow] = sum * inv;
      }
  }
}

void ens_avgpool_backward(float *dx, const float *dy, const ens_conv_geom *g, int batch) {
  const int k = g->k, s = g->stride, W = g->W, Ho = g->Ho, Wo = g->Wo;
  const size_t HW = (size_t)g->H * W, P = (size_t)Ho * Wo;
  const float inv = 1.0f / (float)(k * k);
  memset(dx, 0, (size_t)batch * g->C * HW * sizeof(float));
  for (size_t pl = 0; pl < (size_t)batch * g->C; pl++) {
    float *d = dx + pl * HW;
    const float *gy = dy + pl * P;
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        float v = gy[oh * Wo + ow] * inv;
        for (int ki = 0; ki < k; ki++)
          for (int kj = 0; kj < k; kj++)
            d[(oh * s + ki) * W + ow * s + kj] += v;
      }
  }
}

void ens_gap_forward(float *y, const float *x, int batch, int C, int P) {
  const float inv = 1.0f / (float)P;
  for (size_t pl = 0; pl < (size_t)batch * C; pl++) {
    const float *in = x + pl * P;
    float sum = 0.0f;
    for (int p = 0; p < P; p++)
      sum += in[p];
    y[pl] = sum * inv;
  }
}

void ens_gap_backward(float *dx, const float *dy, int batch, int C, int P) {
  const float inv = 1.0f / (float)P;
  for (size_t pl = 0; pl < (size_t)batch * C; pl++) {
    float v = dy[pl] * inv;
    float *d = dx + pl * P;
    for (int p = 0; p < P; p++)
      d[p] = v;
  }
}
