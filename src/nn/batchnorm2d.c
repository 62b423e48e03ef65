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
#include "nn/pool2.h"

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

/* Channel c's invstd from its sum of squared deviations s2 over M values
 * about mean, and the running statistics moved toward the batch's mean
 * and unbiased variance by momentum. */
static void stats_finish(float *invstd, float *run_mean, float *run_var, int c, float mean,
                         double s2, double M, float momentum, float eps) {
  const double var = s2 / M;
  invstd[c] = (float)(1.0 / sqrt(var + (double)eps));
  const double unbias = M > 1.0 ? M / (M - 1.0) : 1.0;
  run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * mean;
  run_var[c] = (1.0f - momentum) * run_var[c] + momentum * (float)(var * unbias);
}

/* Batch statistics of channel c of x (batch, C, P): returns the mean, sets
 * invstd[c] and moves the running statistics. */
static float channel_stats(float *invstd, float *run_mean, float *run_var, const float *x,
                           int batch, int C, int P, int c, float momentum, float eps) {
  const double M = (double)batch * P;
  double s = 0.0;
  for (int n = 0; n < batch; n++)
    s += plane_sum(x + ((size_t)n * C + c) * P, P);
  const float mean = (float)(s / M);
  double s2 = 0.0;
  for (int n = 0; n < batch; n++)
    s2 += plane_center(x + ((size_t)n * C + c) * P, mean, P);
  stats_finish(invstd, run_mean, run_var, c, mean, s2, M, momentum, eps);
  return mean;
}

void ens_batchnorm2d_forward_train(float *y, float *xhat, float *invstd, float *run_mean,
                                   float *run_var, const float *x, const float *gamma,
                                   const float *beta, int batch, int C, int P, float momentum,
                                   float eps) {
  for (int c = 0; c < C; c++) {
    const float mean = channel_stats(invstd, run_mean, run_var, x, batch, C, P, c, momentum, eps);
    const float inv = invstd[c];
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

/* ------------------------------------------- batch norm + ReLU + max pool */

/* The fused run conv -> [bn, relu, maxpool] of a training pass: per plane,
 * normalize, ReLU and pool while the plane is in the cache, instead of one
 * pass over the whole batch per layer. Every element goes through the same
 * float operations in the same order as the separate layers (plane_affine,
 * ens_relu_forward, ens_maxpool_forward on the ReLU output; in backward
 * ens_maxpool_backward, the ReLU mask of ens_relu_backward, plane_dot and
 * plane_dx), so the results are the same to the bit. */

/* h = (x - c) inv (xhat); z = max(gm h + bt, 0) (ReLU of the BN output). */
ENS_CLONES static void plane_affine_relu(float *z, float *h, const float *x, float c, float inv,
                                         float gm, float bt, int n) {
  for (int i = 0; i < n; i++) {
    float v = (x[i] - c) * inv;
    h[i] = v;
    float t = gm * v + bt;
    z[i] = t > 0.0f ? t : 0.0f;
  }
}

/* d = d where the BN output gm h + bt was > 0 (the ReLU passed it), else 0. */
ENS_CLONES static void plane_relu_mask(float *d, const float *h, float gm, float bt, int n) {
  for (int i = 0; i < n; i++) {
    float g = d[i];
    float t = gm * h[i] + bt;
    d[i] = t > 0.0f ? g : 0.0f;
  }
}

/* The geometry of one plane of the pooling. */
static ens_conv_geom plane_geom(const ens_conv_geom *pool) {
  ens_conv_geom g = *pool;
  g.C = g.O = 1;
  return g;
}

void ens_bn_relu_maxpool_forward_train(float *y, float *argmax, float *xhat, float *invstd,
                                       float *run_mean, float *run_var, float *plane,
                                       const float *x, const float *gamma, const float *beta,
                                       const ens_conv_geom *pool, int batch, float momentum,
                                       float eps) {
  const int C = pool->C, P = pool->H * pool->W;
  const size_t Po = (size_t)pool->Ho * pool->Wo;
  const ens_conv_geom g1 = plane_geom(pool);
  for (int c = 0; c < C; c++) {
    const float mean = channel_stats(invstd, run_mean, run_var, x, batch, C, P, c, momentum, eps);
    for (int n = 0; n < batch; n++) {
      const size_t pl = (size_t)n * C + c;
      plane_affine_relu(plane, xhat + pl * P, x + pl * P, mean, invstd[c], gamma[c], beta[c], P);
      ens_maxpool_forward(y + pl * Po, argmax + pl * Po, plane, &g1, 1);
    }
  }
}

void ens_bn_relu_maxpool_backward(float *dx, float *dgamma, float *dbeta, float *plane,
                                  const float *dy, const float *argmax, const float *xhat,
                                  const float *gamma, const float *beta, const float *invstd,
                                  const ens_conv_geom *pool, int batch) {
  const int C = pool->C, P = pool->H * pool->W;
  const size_t Po = (size_t)pool->Ho * pool->Wo;
  const double M = (double)batch * P;
  const ens_conv_geom g1 = plane_geom(pool);
  for (int c = 0; c < C; c++) {
    double sdy = 0.0, sdyx = 0.0;
    /* Pass 1: the BN output gradient of each plane (pooling then ReLU
     * backward) into dx (or the plane buffer when no dx is wanted), and the
     * channel's sums. */
    for (int n = 0; n < batch; n++) {
      const size_t pl = (size_t)n * C + c;
      float *d = dx ? dx + pl * P : plane;
      ens_maxpool_backward(d, dy + pl * Po, argmax + pl * Po, &g1, 1);
      plane_relu_mask(d, xhat + pl * P, gamma[c], beta[c], P);
      plane_dot(&sdy, &sdyx, d, xhat + pl * P, P);
    }
    dbeta[c] = (float)sdy;
    dgamma[c] = (float)sdyx;
    if (!dx)
      continue;
    /* Pass 2: dx from it in place (the channel's planes were just
     * written, so they are still in the cache). */
    const float a = gamma[c] * invstd[c];
    const float mdy = (float)(sdy / M), mdyx = (float)(sdyx / M);
    for (int n = 0; n < batch; n++) {
      const size_t pl = (size_t)n * C + c;
      plane_dx(dx + pl * P, dx + pl * P, xhat + pl * P, a, mdy, mdyx, P);
    }
  }
}

/* ------------------------- convolution + batch norm + ReLU + max pool */

/* The fused run conv -> [bn, relu, maxpool] with pooling windows that tile
 * the plane (k == stride, no padding, H and W multiples of k): the
 * convolution's output is never copied. Forward: the convolution adds its
 * planes' sums (ens_conv2d_forward_sums), the variance pass follows, and
 * each plane is normalized in place (x becomes xhat), ReLU'd and pooled.
 * Backward: the BN output gradient of each plane is rebuilt in a scratch
 * plane from the pooled gradient (twice: for the channel sums, then for
 * the input gradient), never stored whole, and the BN input gradient, that
 * is the convolution's output gradient, is written group by group straight
 * into the convolution's (O, group P) matrix (ens_conv2d_backward_fill),
 * never as an NCHW tensor. Every value goes through the float operations
 * of the separate layers in the same order, so results are the same to
 * the bit. */

void ens_bn_relu_maxpool_forward_inplace(float *y, float *argmax, float *invstd,
                                         float *run_mean, float *run_var, float *plane,
                                         float *mean, double *acc, float *x, const float *gamma,
                                         const float *beta, const ens_conv_geom *pool, int batch,
                                         float momentum, float eps) {
  const int C = pool->C, P = pool->H * pool->W;
  const size_t Po = (size_t)pool->Ho * pool->Wo;
  const double M = (double)batch * P;
  const ens_conv_geom g1 = plane_geom(pool);
  double *s2 = acc + C;
  /* The passes go through x in memory order (image, then channel), each
   * channel's sums still accumulating over the images in order, as
   * channel_stats does. */
  for (int c = 0; c < C; c++) {
    mean[c] = (float)(acc[c] / M);
    s2[c] = 0.0;
  }
  for (int n = 0; n < batch; n++)
    for (int c = 0; c < C; c++)
      s2[c] += plane_center(x + ((size_t)n * C + c) * P, mean[c], P);
  for (int c = 0; c < C; c++)
    stats_finish(invstd, run_mean, run_var, c, mean[c], s2[c], M, momentum, eps);
  for (int n = 0; n < batch; n++)
    for (int c = 0; c < C; c++) {
      const size_t pl = (size_t)n * C + c;
      /* h aliases x: each element is read before it is written. */
      plane_affine_relu(plane, x + pl * P, x + pl * P, mean[c], invstd[c], gamma[c], beta[c], P);
      ens_maxpool_forward(y + pl * Po, argmax + pl * Po, plane, &g1, 1);
    }
}


/* plane_bn_grad for 2x2 windows every 2 pixels tiling the plane, 4 windows
 * at a time (the last chunk of a row overlapping when Wo is not a multiple
 * of 4): each pixel is dy of its window where it is the window's argmax and
 * the ReLU passed (gm h + bt > 0), +0 elsewhere, as max pooling's backward
 * then plane_relu_mask give it. */
ENS_CLONES static void plane_bn_grad2(float *d, const float *dy, const float *am,
                                      const float *h, float gm, float bt, int W, int Ho,
                                      int Wo) {
  const v4f gv = {gm, gm, gm, gm}, bv = {bt, bt, bt, bt}, zero = {0};
  for (int oh = 0; oh < Ho; oh++) {
    const int r0 = 2 * oh * W;
    int ow = 0;
    for (int ow4 = 0; Wo >= 4 && ow4 < Wo; ow4 += 4) {
      ow = ow4 + 4 <= Wo ? ow4 : Wo - 4;
      const int c = r0 + 2 * ow;
      v4f v, a, hv[4], p[4];
      memcpy(&v, dy + oh * Wo + ow, sizeof v);
      memcpy(&a, am + oh * Wo + ow, sizeof a);
      pool2_scatter4(p, v, a, c, W);
      const int at[4] = {c, c + 4, c + W, c + W + 4};
      for (int q = 0; q < 4; q++) {
        memcpy(&hv[q], h + at[q], sizeof hv[q]);
        const v4f m = (v4f)((v4i)p[q] & (gv * hv[q] + bv > zero));
        memcpy(d + at[q], &m, sizeof m);
      }
      ow += 4;
    }
    for (; ow < Wo; ow++) {
      const int c = r0 + 2 * ow, best = (int)am[oh * Wo + ow];
      const float g = dy[oh * Wo + ow];
      const int at[4] = {c, c + 1, c + W, c + W + 1};
      for (int q = 0; q < 4; q++) {
        const float t = gm * h[at[q]] + bt;
        d[at[q]] = at[q] == best && t > 0.0f ? g : 0.0f;
      }
    }
  }
}

/* The BN output gradient of plane pl, d (P), from the pooled gradient:
 * max pooling's backward, then the ReLU's mask rebuilt from xhat, as in
 * ens_bn_relu_maxpool_backward. */
static void plane_bn_grad(float *d, size_t pl, const float *dy, const float *argmax,
                          const float *xhat, float gm, float bt, const ens_conv_geom *g1) {
  const size_t P = (size_t)g1->H * g1->W, Po = (size_t)g1->Ho * g1->Wo;
  if (g1->k == 2 && g1->stride == 2 && g1->Ho * 2 == g1->H && g1->Wo * 2 == g1->W) {
    plane_bn_grad2(d, dy + pl * Po, argmax + pl * Po, xhat + pl * P, gm, bt, g1->W, g1->Ho,
                   g1->Wo);
    return;
  }
  ens_maxpool_backward(d, dy + pl * Po, argmax + pl * Po, g1, 1);
  plane_relu_mask(d, xhat + pl * P, gm, bt, (int)P);
}

void ens_bn_relu_maxpool_coefs(float *dgamma, float *dbeta, float *coef, float *plane,
                               double *acc, const float *dy, const float *argmax,
                               const float *xhat, const float *gamma, const float *beta,
                               const float *invstd, const ens_conv_geom *pool, int batch) {
  const int C = pool->C, P = pool->H * pool->W;
  const double M = (double)batch * P;
  const ens_conv_geom g1 = plane_geom(pool);
  double *sdy = acc, *sdyx = acc + C;
  for (int c = 0; c < C; c++)
    sdy[c] = sdyx[c] = 0.0;
  /* In memory order; each channel's sums over the images in order. */
  for (int n = 0; n < batch; n++)
    for (int c = 0; c < C; c++) {
      const size_t pl = (size_t)n * C + c;
      plane_bn_grad(plane, pl, dy, argmax, xhat, gamma[c], beta[c], &g1);
      plane_dot(&sdy[c], &sdyx[c], plane, xhat + pl * P, P);
    }
  for (int c = 0; c < C; c++) {
    dbeta[c] = (float)sdy[c];
    dgamma[c] = (float)sdyx[c];
    coef[3 * c] = gamma[c] * invstd[c];
    coef[3 * c + 1] = (float)(sdy[c] / M);
    coef[3 * c + 2] = (float)(sdyx[c] / M);
  }
}

/* plane_dx, returning the sum of the written plane as ens_sum8 computes it
 * (8 float lanes of whole chunks, the lanes in order, then the tail): the
 * convolution's bias gradient taken while the plane is in registers. */
ENS_CLONES static float plane_dx_sum(float *d, const float *g, const float *h, float a,
                                     float mdy, float mdyx, int n) {
  const v8f av = {a, a, a, a, a, a, a, a}, mv = {mdy, mdy, mdy, mdy, mdy, mdy, mdy, mdy},
             xv = {mdyx, mdyx, mdyx, mdyx, mdyx, mdyx, mdyx, mdyx};
  v8f acc = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    v8f gv, hv;
    memcpy(&gv, g + i, sizeof gv);
    memcpy(&hv, h + i, sizeof hv);
    const v8f dv = av * (gv - mv - hv * xv);
    memcpy(d + i, &dv, sizeof dv);
    acc += dv;
  }
  float s = 0.0f;
  for (int j = 0; j < 8; j++)
    s += acc[j];
  for (; i < n; i++) {
    d[i] = a * (g[i] - mdy - h[i] * mdyx);
    s += d[i];
  }
  return s;
}

void ens_bn_relu_maxpool_dx_planes(float *dcol, size_t ld, float *db, float *plane,
                                   const float *dy, const float *argmax, const float *xhat,
                                   const float *gamma, const float *beta, const float *coef,
                                   const ens_conv_geom *pool, int n0, int gb) {
  const int C = pool->C, P = pool->H * pool->W;
  const ens_conv_geom g1 = plane_geom(pool);
  for (int n = 0; n < gb; n++)
    for (int c = 0; c < C; c++) {
      const size_t pl = (size_t)(n0 + n) * C + c;
      plane_bn_grad(plane, pl, dy, argmax, xhat, gamma[c], beta[c], &g1);
      db[c] += plane_dx_sum(dcol + (size_t)c * ld + (size_t)n * P, plane, xhat + pl * P,
                            coef[3 * c], coef[3 * c + 1], coef[3 * c + 2], P);
    }
}
