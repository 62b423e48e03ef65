/* SGD and Adam/AdamW updates and gradient clipping on flat buffers. */
#include <math.h>

#include "core/clones.h"
#include "ens/optim.h"

ENS_CLONES void ens_sgd_step(float *p, float *v, const float *grad, size_t n, double lr,
                             const ens_sgd *o) {
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

double ens_grad_norm(const float *g, size_t n) {
  double ss = 0.0;
  for (size_t i = 0; i < n; i++)
    ss += (double)g[i] * g[i];
  return sqrt(ss);
}

void ens_clip_scale(float *g, size_t n, double norm, double c) {
  float scale = (float)(c / norm);
  for (size_t i = 0; i < n; i++)
    g[i] *= scale;
}

double ens_clip_norm(float *g, size_t n, double c) {
  double norm = ens_grad_norm(g, n);
  if (norm > c && norm > 0.0)
    ens_clip_scale(g, n, norm, c);
  return norm;
}

/* Adam (Kingma & Ba 2015, alg. 1) and AdamW (Loshchilov & Hutter 2019, alg. 2)
 * in PyTorch's convention: eps is added to the bias-corrected sqrt(v), and
 * AdamW's decay multiplies p by 1 - lr wd before the Adam update. */
void ens_adam_step(float *p, float *m, float *v, const float *grad, size_t n, double lr, long t,
                   const ens_adam *o) {
  const double b1 = o->beta1, b2 = o->beta2, eps = o->eps, wd = o->weight_decay;
  /* Bias corrections once per call, in double. */
  const double bc1 = 1.0 - pow(b1, (double)t);
  const double bc2 = 1.0 - pow(b2, (double)t);
  const double step = lr / bc1, inv_bc2 = 1.0 / bc2;
  /* wd = 0 skips both decay forms, so Adam and AdamW are then the same loop
   * bit for bit (adding 0 p could turn a -0 gradient into +0). */
  const int l2 = wd != 0.0 && !o->decoupled;
  const double shrink = wd != 0.0 && o->decoupled ? 1.0 - lr * wd : 1.0;
  for (size_t i = 0; i < n; i++) {
    double pi = p[i];
    double g = grad[i];
    if (l2)
      g += wd * pi;
    else if (shrink != 1.0)
      pi *= shrink;
    double mi = b1 * m[i] + (1.0 - b1) * g;
    double vi = b2 * v[i] + (1.0 - b2) * g * g;
    m[i] = (float)mi;
    v[i] = (float)vi;
    p[i] = (float)(pi - step * mi / (sqrt(vi * inv_bc2) + eps));
  }
}
