/* Pooling kernels on NCHW tensors: max and average pooling over k x k
 * windows (no padding), and global average pooling. */
#include <string.h>

#include "ens/conv.h"

void ens_maxpool_forward(float *y, float *argmax, const float *x, const ens_conv_geom *g,
                         int batch) {
  const int k = g->k, s = g->stride, W = g->W, Ho = g->Ho, Wo = g->Wo;
  const size_t HW = (size_t)g->H * W, P = (size_t)Ho * Wo;
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

void ens_maxpool_backward(float *dx, const float *dy, const float *argmax,
                          const ens_conv_geom *g, int batch) {
  const size_t HW = (size_t)g->H * g->W, P = (size_t)g->Ho * g->Wo;
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
