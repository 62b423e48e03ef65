/* SGD update and gradient clipping on flat buffers. */
#include <math.h>

#include "ens/optim.h"

void ens_sgd_step(float *p, float *v, const float *grad, size_t n, double lr, const ens_sgd *o) {
  const float mu = (float)o->momentum, wd = (float)o->weight_decay, eta = (float)lr;
  if (o->nesterov) {
    for (size_t i = 0; i < n; i++) {
      float g = grad[i] + wd * p[i];
      float vi = mu * v[i] + g;
      v[i] = vi;
      p[i] -= eta * (g + mu * vi);
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      float g = grad[i] + wd * p[i];
      float vi = mu * v[i] + g;
      v[i] = vi;
      p[i] -= eta * vi;
    }
  }
}

void ens_clip_value(float *g, size_t n, float c) {
  for (size_t i = 0; i < n; i++)
    g[i] = g[i] > c ? c : (g[i] < -c ? -c : g[i]);
}

double ens_clip_norm(float *g, size_t n, double c) {
  double ss = 0.0;
  for (size_t i = 0; i < n; i++)
    ss += (double)g[i] * g[i];
  double norm = sqrt(ss);
  if (norm > c && norm > 0.0) {
    float scale = (float)(c / norm);
    for (size_t i = 0; i < n; i++)
      g[i] *= scale;
  }
  return norm;
}
