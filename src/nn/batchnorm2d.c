/* Batch norm over the channels of NCHW tensors (Ioffe & Szegedy 2015,
 * sec. 3.2: one mean and variance per channel over the batch and all pixels).
 * Each plane (one image's channel, P pixels) is summed in 8 float lanes
 * (lane j takes pixels j, j + 8, ...: fixed chains the compiler vectorizes
 * without reassociating, so the bits do not depend on the vector width),
 * and the planes' sums are accumulated in double, in order. */
#include <math.h>
#include <string.h>

#include "core/clones.h"
#include "ens/conv.h"

enum { LANES = 8 };

/* The 8 lanes as one vector (GCC/clang vector extension: two SSE registers
 * in the baseline clone, one AVX register in the avx2 one). Lane j does
 * exactly what the scalar loop over j would, so the bits are the same; the
 * explicit vector keeps the compiler from the shuffling code it produced for
 * the j loops (plane_dot was 5 % of a training step of the reference CNN). */
typedef float v8f __attribute__((vector_size(LANES * sizeof(float))));

/* v = the 8 floats at p (unaligned). */
#define LOAD8(v, p) memcpy(&(v), (p), sizeof(v8f))

/* Sum of x (n). */
ENS_CLONES static double plane_sum(const float *x, int n) {
  v8f acc = {0};
  int i = 0;
  for (; i + LANES <= n; i += LANES) {
    v8f v;
    LOAD8(v, x + i);
    acc += v;
  }
  double s = 0.0;
  for (int j = 0; j < LANES; j++)
    s += acc[j];
  for (; i < n; i++)
    s += x[i];
  return s;
}

/* Sum of (x - c)^2 over n. */
ENS_CLONES static double plane_center(const float *x, float c, int n) {
  v8f acc = {0};
  const v8f cv = {c, c, c, c, c, c, c, c};
  int i = 0;
  for (; i + LANES <= n; i += LANES) {
    v8f d;
    LOAD8(d, x + i);
    d -= cv;
    acc += d * d;
  }
  double s = 0.0;
  for (int j = 0; j < LANES; j++)
    s += acc[j];
  for (; i < n; i++) {
    float d = x[i] - c;
    s += (double)d * d;
  }
  return s;
}

/* Sums of g and of g h over n. */
ENS_CLONES static void plane_dot(double *sg, double *sgh, const float *g, const float *h, int n) {
  v8f a = {0}, b = {0};
  int i = 0;
  for (; i + LANES <= n; i += LANES) {
    v8f gv, hv;
    LOAD8(gv, g + i);
    LOAD8(hv, h + i);
    a += gv;
    b += gv * hv;
  }
  double s1 = 0.0, s2 = 0.0;
  for (int j = 0; j < LANES; j++) {
    s1 += a[j];
    s2 += b[j];
  }
  for (; i < n; i++) {
    s1 += g[i];
    s2 += (double)g[i] * h[i];
  }
  *sg += s1;
  *sgh += s2;
}

/* h = (x - c) inv (xhat), y = gm h + bt. */
ENS_CLONES static void plane_affine(float *y, float *h, const float *x, float c, float inv,
                                    float gm, float bt, int n) {
  for (int i = 0; i < n; i++) {
    float v = (x[i] - c) * inv;
    h[i] = v;
    y[i] = gm * v + bt;
  }
}

ENS_CLONES static void plane_scale_shift(float *y, const float *x, float scale, float shift,
                                         int n) {
  for (int i = 0; i < n; i++)
    y[i] = x[i] * scale + shift;
}

ENS_CLONES static void plane_dx(float *d, const float *g, const float *h, float a, float mdy,
                                float mdyx, int n) {
  for (int i = 0; i < n; i++)
    d[i] = a * (g[i] - mdy - h[i] * mdyx);
}

void ens_batchnorm2d_forward_train(float *y, float *xhat, float *invstd, float *run_mean,
                                   float *run_var, const float *x, const float *gamma,
                                   const float *beta, int batch, int C, int P, float momentum,
                                   float eps) {
  const double M = (double)batch * P;
  for (int c = 0; c < C; c++) {
    double s = 0.0;
    for (int n = 0; n < batch; n++)
      s += plane_sum(x + ((size_t)n * C + c) * P, P);
    const float mean = (float)(s / M);
    double s2 = 0.0;
    for (int n = 0; n < batch; n++)
      s2 += plane_center(x + ((size_t)n * C + c) * P, mean, P);
    const double var = s2 / M;
    const float inv = (float)(1.0 / sqrt(var + (double)eps));
    invstd[c] = inv;
    const double unbias = M > 1.0 ? M / (M - 1.0) : 1.0;
    run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * mean;
    run_var[c] = (1.0f - momentum) * run_var[c] + momentum * (float)(var * unbias);
    for (int n = 0; n < batch; n++) {
      size_t off = ((size_t)n * C + c) * P;
      plane_affine(y + off, xhat + off, x + off, mean, inv, gamma[c], beta[c], P);
    }
  }
}

void ens_batchnorm2d_forward_eval(float *y, const float *x, const float *gamma, const float *beta,
                                  const float *run_mean, const float *run_var, int batch, int C,
                                  int P, float eps) {
  for (int c = 0; c < C; c++) {
    const float scale = gamma[c] / sqrtf(run_var[c] + eps);
    const float shift = beta[c] - run_mean[c] * scale;
    for (int n = 0; n < batch; n++) {
      size_t off = ((size_t)n * C + c) * P;
      plane_scale_shift(y + off, x + off, scale, shift, P);
    }
  }
}

void ens_batchnorm2d_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                              const float *xhat, const float *gamma, const float *invstd, int batch,
                              int C, int P) {
  const double M = (double)batch * P;
  for (int c = 0; c < C; c++) {
    double sdy = 0.0, sdyx = 0.0;
    for (int n = 0; n < batch; n++) {
      size_t off = ((size_t)n * C + c) * P;
      plane_dot(&sdy, &sdyx, dy + off, xhat + off, P);
    }
    dbeta[c] = (float)sdy;
    dgamma[c] = (float)sdyx;
    /* dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat)) */
    const float a = gamma[c] * invstd[c];
    const float mdy = (float)(sdy / M), mdyx = (float)(sdyx / M);
    for (int n = 0; n < batch; n++) {
      size_t off = ((size_t)n * C + c) * P;
      plane_dx(dx + off, dy + off, xhat + off, a, mdy, mdyx, P);
    }
  }
}
