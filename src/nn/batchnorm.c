/* Batch normalization kernels (Ioffe & Szegedy 2015): training pass with
 * batch statistics, eval pass with running statistics, and the full backward
 * pass through the batch mean and variance. Loops run rows outer and features
 * inner so they stream memory and vectorize. */
#include <math.h>

#include "core/clones.h"
#include "ens/nn.h"

ENS_CLONES void ens_batchnorm_forward_train(float *y, float *xhat, float *invstd, float *run_mean,
                                            float *run_var, const float *x, const float *gamma,
                                            const float *beta, int batch, int n, float momentum,
                                            float eps) {
  /* invstd doubles as the accumulator of the mean, y's first row as that
   * of the variance: no scratch allocation is needed. xhat holds the
   * centred x meanwhile. y must not alias x. */
  float *acc = invstd;
  for (int j = 0; j < n; j++)
    acc[j] = 0.0f;
  for (int i = 0; i < batch; i++) {
    const float *xr = x + (size_t)i * n;
    for (int j = 0; j < n; j++)
      acc[j] += xr[j];
  }
  const float inv_b = 1.0f / (float)batch;
  /* Update the running mean now, then centre x into xhat. */
  for (int j = 0; j < n; j++) {
    float mean = acc[j] * inv_b;
    run_mean[j] = (1.0f - momentum) * run_mean[j] + momentum * mean;
    acc[j] = mean;
  }
  /* Centre x and sum the squares in one pass, the sums in y's first row
   * (y is written last): per feature, the same operations in the same
   * order as a pass for each. */
  float *acc2 = y;
  for (int j = 0; j < n; j++)
    acc2[j] = 0.0f;
  for (int i = 0; i < batch; i++) {
    const float *xr = x + (size_t)i * n;
    float *hr = xhat + (size_t)i * n;
    for (int j = 0; j < n; j++) {
      float h = xr[j] - acc[j];
      hr[j] = h;
      acc2[j] += h * h;
    }
  }
  const float unbias = batch > 1 ? (float)batch / (float)(batch - 1) : 1.0f;
  for (int j = 0; j < n; j++) {
    float var = acc2[j] * inv_b;
    run_var[j] = (1.0f - momentum) * run_var[j] + momentum * var * unbias;
    invstd[j] = 1.0f / sqrtf(var + eps);
  }
  for (int i = 0; i < batch; i++) {
    float *hr = xhat + (size_t)i * n;
    float *yr = y + (size_t)i * n;
    for (int j = 0; j < n; j++) {
      hr[j] *= invstd[j];
      yr[j] = gamma[j] * hr[j] + beta[j];
    }
  }
}

ENS_CLONES void ens_batchnorm_forward_eval(float *y, const float *x, const float *gamma,
                                           const float *beta, const float *run_mean,
                                           const float *run_var, int batch, int n, float eps) {
  /* The per-feature square roots once per chunk of features rather than
   * once per element: sqrtf is correctly rounded, so the result is the same
   * to the bit, and the inner loop has no libm call and vectorizes. */
  enum { CHUNK = 256 };
  float sd[CHUNK];
  for (int j0 = 0; j0 < n; j0 += CHUNK) {
    int m = n - j0 < CHUNK ? n - j0 : CHUNK;
    for (int j = 0; j < m; j++)
      sd[j] = sqrtf(run_var[j0 + j] + eps);
    const float *g = gamma + j0, *b = beta + j0, *mu = run_mean + j0;
    for (int i = 0; i < batch; i++) {
      const float *xr = x + (size_t)i * n + j0;
      float *yr = y + (size_t)i * n + j0;
      for (int j = 0; j < m; j++)
        yr[j] = g[j] * ((xr[j] - mu[j]) / sd[j]) + b[j];
    }
  }
}

ENS_CLONES void ens_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                       const float *xhat, const float *gamma, const float *invstd,
                                       int batch, int n) {
  /* dbeta = sum dy, dgamma = sum dy xhat; then with g = gamma:
   * dx = g invstd / B (B dy - dbeta - xhat dgamma). */
  for (int j = 0; j < n; j++) {
    dgamma[j] = 0.0f;
    dbeta[j] = 0.0f;
  }
  for (int i = 0; i < batch; i++) {
    const float *dyr = dy + (size_t)i * n;
    const float *hr = xhat + (size_t)i * n;
    for (int j = 0; j < n; j++) {
      dbeta[j] += dyr[j];
      dgamma[j] += dyr[j] * hr[j];
    }
  }
  const float inv_b = 1.0f / (float)batch;
  for (int i = 0; i < batch; i++) {
    const float *dyr = dy + (size_t)i * n;
    const float *hr = xhat + (size_t)i * n;
    float *dxr = dx + (size_t)i * n;
    for (int j = 0; j < n; j++)
      dxr[j] = gamma[j] * invstd[j] * (dyr[j] - inv_b * (dbeta[j] + hr[j] * dgamma[j]));
  }
}
