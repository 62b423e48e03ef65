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
typedef int v8i __attribute__((vector_size(LANES * sizeof(int))));

/* v = the 8 floats at p (unaligned). */
#define LOAD8(v, p) memcpy(&(v), (p), sizeof(v8f))

ENS_CLONES double ens_plane_sum(const float *x, size_t n) {
  v8f acc = {0};
  size_t i = 0;
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
    s += ens_plane_sum(x + ((size_t)n * C + c) * P, (size_t)P);
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
 * Backward never builds the BN output gradient d: it is the pooled
 * gradient at each window's maximum where the ReLU passed, 0 elsewhere. The
 * channel sums of d and d xhat are sums over the windows (pool_dot), and
 * the BN input gradient, that is the convolution's output gradient, is
 * written group by group straight into the convolution's (O, group P)
 * matrix (ens_conv2d_backward_fill), never as an NCHW tensor: every pixel
 * as if d were 0, then the windows' maxima again (pool_dx). The forward
 * pass gives the layers' bits; backward's sums add the same terms in
 * another order (over windows, not pixels), so its results differ from the
 * layers one by one only by the rounding of those sums. */

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


/* The 8 windows from i: their argmax pixels (at), xhat there (*hv), and
 * their pooled gradient where the ReLU passed it (gm h + bt > 0), else +0
 * (*gw). gv, bv: gm and bt in every lane. */
static inline void pool_gather8(v8f *gw, v8f *hv, int at[LANES], const float *dy,
                                const float *am, const float *h, const v8f *gv, const v8f *bv,
                                int i) {
  v8f g, af, hw;
  const v8f zero = {0};
  LOAD8(g, dy + i);
  LOAD8(af, am + i);
  const v8i ai = __builtin_convertvector(af, v8i);
  memcpy(at, &ai, LANES * sizeof(int));
  for (int j = 0; j < LANES; j++)
    hw[j] = h[at[j]];
  *hv = hw;
  *gw = (v8f)((v8i)g & (*gv * hw + *bv > zero));
}

/* The sums of d and of d h over a plane whose BN output gradient d is the
 * pooled gradient dy (n windows) at each window's argmax where the ReLU
 * passed it (gm h + bt > 0), 0 elsewhere: the sums over the windows of
 * dy and dy h[argmax] where the ReLU passed, the plane's other pixels
 * adding nothing, so the plane is never built. In 8 float lanes (lane j
 * takes windows j, j + 8, ...), the lanes then the tail added in double. */
ENS_CLONES static void pool_dot(double *sg, double *sgh, const float *dy, const float *am,
                                const float *h, float gm, float bt, int n) {
  v8f a = {0}, b = {0};
  const v8f gv = {gm, gm, gm, gm, gm, gm, gm, gm}, bv = {bt, bt, bt, bt, bt, bt, bt, bt};
  int i = 0;
  for (; i + LANES <= n; i += LANES) {
    int at[LANES];
    v8f gw, hv;
    pool_gather8(&gw, &hv, at, dy, am, h, &gv, &bv, i);
    a += gw;
    b += gw * hv;
  }
  double s1 = 0.0, s2 = 0.0;
  for (int j = 0; j < LANES; j++) {
    s1 += a[j];
    s2 += b[j];
  }
  for (; i < n; i++) {
    const float hv = h[(int)am[i]];
    if (gm * hv + bt > 0.0f) {
      s1 += dy[i];
      s2 += (double)dy[i] * hv;
    }
  }
  *sg += s1;
  *sgh += s2;
}

void ens_bn_relu_maxpool_coefs(float *dgamma, float *dbeta, float *coef, double *acc,
                               const float *dy, const float *argmax, const float *xhat,
                               const float *gamma, const float *beta, const float *invstd,
                               const ens_conv_geom *pool, int batch) {
  const int C = pool->C, P = pool->H * pool->W, Po = pool->Ho * pool->Wo;
  const double M = (double)batch * P;
  double *sdy = acc, *sdyx = acc + C;
  for (int c = 0; c < C; c++)
    sdy[c] = sdyx[c] = 0.0;
  /* In memory order; each channel's sums over the images in order. */
  for (int n = 0; n < batch; n++)
    for (int c = 0; c < C; c++) {
      const size_t pl = (size_t)n * C + c;
      pool_dot(&sdy[c], &sdyx[c], dy + pl * Po, argmax + pl * Po, xhat + pl * P, gamma[c],
               beta[c], Po);
    }
  for (int c = 0; c < C; c++) {
    dbeta[c] = (float)sdy[c];
    dgamma[c] = (float)sdyx[c];
    coef[3 * c] = gamma[c] * invstd[c];
    coef[3 * c + 1] = (float)(sdy[c] / M);
    coef[3 * c + 2] = (float)(sdyx[c] / M);
  }
}

/* The BN input gradient of a plane whose output gradient d is the pooled
 * gradient dy (n windows) at each window's argmax where the ReLU passed it,
 * 0 elsewhere (see pool_dot): a (d - mdy - h mdyx), as plane_dx computes
 * it, into out (P). Every pixel first as if d were 0, then each window's
 * argmax pixel again with its d (the same value again where the ReLU
 * stopped it), so the plane is never built. */
ENS_CLONES static void pool_dx(float *out, const float *dy, const float *am, const float *h,
                               float gm, float bt, float a, float mdy, float mdyx, int P,
                               int n) {
  const float m0 = 0.0f - mdy; /* d - mdy where d is +0 */
  for (int i = 0; i < P; i++)
    out[i] = a * (m0 - h[i] * mdyx);
  const v8f gv = {gm, gm, gm, gm, gm, gm, gm, gm}, bv = {bt, bt, bt, bt, bt, bt, bt, bt},
            av = {a, a, a, a, a, a, a, a}, mv = {mdy, mdy, mdy, mdy, mdy, mdy, mdy, mdy},
            xv = {mdyx, mdyx, mdyx, mdyx, mdyx, mdyx, mdyx, mdyx};
  int i = 0;
  for (; i + LANES <= n; i += LANES) {
    int at[LANES];
    v8f gw, hv;
    pool_gather8(&gw, &hv, at, dy, am, h, &gv, &bv, i);
    const v8f dv = av * (gw - mv - hv * xv);
    for (int j = 0; j < LANES; j++)
      out[at[j]] = dv[j];
  }
  for (; i < n; i++) {
    const int at = (int)am[i];
    const float hv = h[at], g = gm * hv + bt > 0.0f ? dy[i] : 0.0f;
    out[at] = a * (g - mdy - hv * mdyx);
  }
}

void ens_bn_relu_maxpool_dx_planes(float *dcol, size_t ld, float *db, const float *dy,
                                   const float *argmax, const float *xhat, const float *gamma,
                                   const float *beta, const float *coef,
                                   const ens_conv_geom *pool, int n0, int gb) {
  const int C = pool->C, P = pool->H * pool->W, Po = pool->Ho * pool->Wo;
  for (int n = 0; n < gb; n++)
    for (int c = 0; c < C; c++) {
      const size_t pl = (size_t)(n0 + n) * C + c;
      float *out = dcol + (size_t)c * ld + (size_t)n * P;
      pool_dx(out, dy + pl * Po, argmax + pl * Po, xhat + pl * P, gamma[c], beta[c],
              coef[3 * c], coef[3 * c + 1], coef[3 * c + 2], P, Po);
      db[c] += ens_sum8(out, (size_t)P);
    }
}
