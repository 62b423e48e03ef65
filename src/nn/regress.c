/* Regression heads: the Gaussian negative log-likelihood head (mean and
 * softplus variance per target) and the mean-squared-error head, with their
 * gradients. Losses are accumulated and gradients computed in double. */
#include <math.h>
#include <stddef.h>

#include "ens/nn.h"

/* Above this raw value log(1 + e^raw) equals raw to within e^-20 ~ 2e-9
 * relative, and exp would overflow for large raw. */
#define ENS_SOFTPLUS_LINEAR 20.0

double ens_softplus_var(double raw, double var_floor) {
  return (raw > ENS_SOFTPLUS_LINEAR ? raw : log1p(exp(raw))) + var_floor;
}

/* d softplus / d raw of the function actually computed: the logistic
 * sigmoid, 1 on the linear branch. */
static double softplus_grad(double raw) {
  return raw > ENS_SOFTPLUS_LINEAR ? 1.0 : 1.0 / (1.0 + exp(-raw));
}

double ens_gaussian_nll_loss(float *dout, const float *out, const float *y, int batch, int T,
                             float var_floor) {
  const double log2pi = log(2.0 * M_PI), inv_b = 1.0 / batch;
  double loss = 0.0;
  for (int i = 0; i < batch; i++) {
    const float *mu = out + (size_t)i * 2 * T, *raw = mu + T, *yi = y + (size_t)i * T;
    for (int t = 0; t < T; t++) {
      const double var = ens_softplus_var(raw[t], var_floor);
      const double r = (double)mu[t] - yi[t]; /* mu - y */
      loss += 0.5 * (log2pi + log(var)) + r * r / (2.0 * var);
      if (dout) {
        float *d = dout + (size_t)i * 2 * T;
        /* dL/dmu = (mu - y) / var;  dL/dvar = 1 / (2 var) - (mu - y)^2 / (2 var^2). */
        d[t] = (float)(r / var * inv_b);
        d[T + t] = (float)((0.5 / var - r * r / (2.0 * var * var)) * softplus_grad(raw[t]) * inv_b);
      }
    }
  }
  return loss * inv_b;
}

void ens_gaussian_head(float *pred, const float *out, int batch, int T, float var_floor) {
  for (int i = 0; i < batch; i++) {
    const float *o = out + (size_t)i * 2 * T;
    float *p = pred + (size_t)i * 2 * T;
    for (int t = 0; t < T; t++) {
      p[t] = o[t];
      /* softplus >= 0, so the double sum is >= var_floor and so is its
       * float rounding (rounding is monotone and var_floor is a float). */
      p[T + t] = (float)ens_softplus_var(o[T + t], var_floor);
    }
  }
}

double ens_mse_loss(float *dout, const float *out, const float *y, int batch, int T) {
  const size_t len = (size_t)batch * T;
  const double scale = 2.0 / (double)len;
  double loss = 0.0;
  for (size_t j = 0; j < len; j++) {
    const double r = (double)out[j] - y[j];
    loss += r * r;
    if (dout)
      dout[j] = (float)(scale * r);
  }
  return loss / (double)len;
}
