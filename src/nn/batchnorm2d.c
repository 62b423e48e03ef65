/* Batch norm over the channels of NCHW tensors (Ioffe & Szegedy 2015,
 * sec. 3.2: one mean and variance per channel over the batch and all pixels).
 * Per-channel sums run over up to batch H W values, so they are accumulated
 * in double, plane by plane in a fixed order. */
#include <math.h>

#include "ens/conv.h"

void ens_batchnorm2d_forward_train(float *y, float *xhat, float *invstd, float *run_mean,
                                   float *run_var, const float *x, const float *gamma,
                                   const float *beta, int batch, int C, int P, float momentum,
                                   float eps) {
  const double M = (double)batch * P;
  for (int c = 0; c < C; c++) {
    double s = 0.0;
    for (int n = 0; n < batch; n++) {
      const float *in = x + ((size_t)n * C + c) * P;
      for (int p = 0; p < P; p++)
        s += in[p];
    }
    const float mean = (float)(s / M);
    double s2 = 0.0;
    for (int n = 0; n < batch; n++) {
      const float *in = x + ((size_t)n * C + c) * P;
      float *h = xhat + ((size_t)n * C + c) * P;
      for (int p = 0; p < P; p++) {
        float d = in[p] - mean;
        h[p] = d;
        s2 += (double)d * d;
      }
    }
    const double var = s2 / M;
    const float inv = (float)(1.0 / sqrt(var + (double)eps));
    invstd[c] = inv;
    const double unbias = M > 1.0 ? M / (M - 1.0) : 1.0;
    run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * mean;
    run_var[c] = (1.0f - momentum) * run_var[c] + momentum * (float)(var * unbias);
    const float gm = gamma[c], bt = beta[c];
    for (int n = 0; n < batch; n++) {
      float *h = xhat + ((size_t)n * C + c) * P;
      float *out = y + ((size_t)n * C + c) * P;
      for (int p = 0; p < P; p++) {
        h[p] *= inv;
        out[p] = gm * h[p] + bt;
      }
    }
  }
}

void ens_batchnorm2d_forward_eval(float *y, const float *x, const float *gamma,
                                  const float *beta, const float *run_mean,
                                  const float *run_var, int batch, int C, int P, float eps) {
  for (int c = 0; c < C; c++) {
    const float scale = gamma[c] / sqrtf(run_var[c] + eps);
    const float shift = beta[c] - run_mean[c] * scale;
    for (int n = 0; n < batch; n++) {
      const float *in = x + ((size_t)n * C + c) * P;
      float *out = y + ((size_t)n * C + c) * P;
      for (int p = 0; p < P; p++)
        out[p] = in[p] * scale + shift;
    }
  }
}

void ens_batchnorm2d_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                              const float *xhat, const float *gamma, const float *invstd,
                              int batch, int C, int P) {
  const double M = (double)batch * P;
  for (int c = 0; c < C; c++) {
    double sdy = 0.0, sdyx = 0.0;
    for (int n = 0; n < batch; n++) {
      const float *g = dy + ((size_t)n * C + c) * P;
      const float *h = xhat + ((size_t)n * C + c) * P;
      for (int p = 0; p < P; p++) {
        sdy += g[p];
        sdyx += (double)g[p] * h[p];
      }
    }
    dbeta[c] = (float)sdy;
    dgamma[c] = (float)sdyx;
    /* dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat)) */
    const float a = gamma[c] * invstd[c];
    const float mdy = (float)(sdy / M), mdyx = (float)(sdyx / M);
    for (int n = 0; n < batch; n++) {
      const float *g = dy + ((size_t)n * C + c) * P;
      const float *h = xhat + ((size_t)n * C + c) * P;
      float *d = dx + ((size_t)n * C + c) * P;
      for (int p = 0; p < P; p++)
        d[p] = a * (g[p] - mdy - h[p] * mdyx);
    }
  }
}
