/* Kernels of the image layers on NCHW float tensors: 2-D convolution (im2col
 * + OpenBLAS sgemm), batch norm over channels, max/average pooling and global
 * average pooling. Outputs first, gradients prefixed d, read-only inputs
 * const, shapes in the comments. Convolution weights are (O, C, k, k) then
 * the bias (O), like PyTorch's nn.Conv2d, so trunks can be exchanged. */
#ifndef ENS_CONV_H
#define ENS_CONV_H

#include <stddef.h>

/* Geometry of a convolution or pooling window over a (C, H, W) input: k x k
 * windows every `stride` pixels over the input padded by `pad` zeros on each
 * side, giving (O, Ho, Wo) with Ho = (H + 2 pad - k) / stride + 1 (floor). */
typedef struct ens_conv_geom {
  int C, H, W; /* input */
  int O;       /* output channels (convolution; C for pooling) */
  int k, stride, pad;
  int Ho, Wo; /* output rows and columns */
  int group;  /* convolution: images per GEMM; 0 = sized to the cache */
} ens_conv_geom;

/* Fills Ho, Wo from the rest; returns 0, or -1 when the window does not fit
 * (k > H + 2 pad or W + 2 pad, stride < 1, pad < 0). */
int ens_conv_geom_init(ens_conv_geom *g);

/* col (C k k, batch Ho Wo): column n Ho Wo + oh Wo + ow holds the window of
 * output pixel (oh, ow) of image n, zero where it covers padding; row
 * (c k + ki) k + kj is input channel c at window offset (ki, kj).
 * x (batch, C, H, W). */
void ens_im2col(float *col, const float *x, const ens_conv_geom *g, int batch);
/* The adjoint of ens_im2col: dx (batch, C, H, W) = sum of the col entries
 * that read each pixel (dx is overwritten). */
void ens_col2im(float *dx, const float *col, const ens_conv_geom *g, int batch);
/* The same, bitwise, for a col that may be overwritten (the backward
 * pass's scratch): "same" convolutions (stride 1, k = 2 pad + 1) add each
 * window offset's valid rows as one run after zeroing col's padding
 * entries. */
void ens_col2im_scratch(float *dx, float *col, const ens_conv_geom *g, int batch);

/* Images per GEMM of a convolution over `batch` images: g->group, or when
 * it is 0 as many as fit a cache budget (at least 1, at most batch). The
 * weight gradient sums the groups in batch order. */
int ens_conv2d_group(const ens_conv_geom *g, int batch);
/* Scratch floats of a forward or backward pass over up to `batch` images:
 * (C k k + O) group Ho Wo (rounded up to a multiple of 16 columns), plus
 * the Winograd buffers of the convolutions that use it. */
size_t ens_conv2d_nwork(const ens_conv_geom *g, int batch);
/* y (batch, O, Ho, Wo) = conv(x (batch, C, H, W), w (O, C, k, k)) + b (O).
 * work: ens_conv2d_nwork floats. */
void ens_conv2d_forward(float *y, float *work, const float *x, const float *w, const float *b,
                        const ens_conv_geom *g, int batch);
/* The same, adding each output plane's sum to sums[o] (O, zeroed first) in
 * image order, as batch norm over channels sums a plane (8 float lanes,
 * added in double): its first statistics pass, bitwise what it would
 * compute itself. */
void ens_conv2d_forward_sums(float *y, double *sums, float *work, const float *x, const float *w,
                             const float *b, const ens_conv_geom *g, int batch);
/* dw (O, C, k, k), db (O) overwritten with the gradient of dy (batch, O, Ho,
 * Wo); dx (batch, C, H, W), when not NULL, the input gradient. */
void ens_conv2d_backward(float *dx, float *dw, float *db, float *work, const float *dy,
                         const float *x, const float *w, const ens_conv_geom *g, int batch);

/* Backward whose output gradient is produced group by group: fill(ctx,
 * dycol, db, n0, gb, g) returns the gradient of images [n0, n0 + gb) as an
 * (O, gb Ho Wo) matrix, written into dycol (that many floats of the
 * scratch) or found elsewhere, and adds each of its planes' ens_sum8 to
 * db[o], image by image (the bias gradient). ens_conv2d_backward is this
 * with a copy of dy's planes. */
typedef const float *(*ens_conv_dy_fill)(void *ctx, float *dycol, float *db, int n0, int gb,
                                         const ens_conv_geom *g);
void ens_conv2d_backward_fill(float *dx, float *dw, float *db, float *work, ens_conv_dy_fill fill,
                              void *ctx, const float *x, const float *w, const ens_conv_geom *g,
                              int batch);
/* Sum of x (n) in 8 float lanes (lane j takes x[j], x[j + 8], ...), the
 * lanes added in order, then the tail: a convolution's bias gradient per
 * plane. */
float ens_sum8(const float *x, size_t n);
/* A plane's sum as batch norm over channels takes it for its mean: 8 float
 * lanes as ens_sum8, the lanes then the tail added in double. */
double ens_plane_sum(const float *x, size_t n);

/* Batch norm over the channels of x (batch, C, P) (P = H W pixels), training
 * pass: statistics over batch P values per channel (Ioffe & Szegedy 2015,
 * sec. 3.2), accumulated in double; writes xhat (batch, C, P) and invstd (C);
 * moves run_mean/run_var toward the batch mean and unbiased variance by
 * momentum (PyTorch convention). y must not alias x. */
void ens_batchnorm2d_forward_train(float *y, float *xhat, float *invstd, float *run_mean,
                                   float *run_var, const float *x, const float *gamma,
                                   const float *beta, int batch, int C, int P, float momentum,
                                   float eps);
/* Eval pass with the running statistics. */
void ens_batchnorm2d_forward_eval(float *y, const float *x, const float *gamma, const float *beta,
                                  const float *run_mean, const float *run_var, int batch, int C,
                                  int P, float eps);
/* Backward through the batch statistics (M = batch P values per channel):
 * dx = invstd/M (M g dy - sum(g dy) - xhat sum(g dy xhat)). dx may alias dy. */
void ens_batchnorm2d_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                              const float *xhat, const float *gamma, const float *invstd, int batch,
                              int C, int P);

/* Batch norm (training pass) + ReLU + max pooling fused, plane by plane:
 * the same results to the bit as ens_batchnorm2d_forward_train, ReLU and
 * ens_maxpool_forward in turn. x (batch, C, H, W) with pool's C, H, W (pool:
 * the max pooling's geometry); writes the pooled y (batch, C, Ho, Wo), its
 * argmax, xhat (batch, C, H W) and invstd (C), and moves the running
 * statistics; plane is scratch of H W floats. The ReLU output is not kept:
 * backward rebuilds its mask from xhat. */
void ens_bn_relu_maxpool_forward_train(float *y, float *argmax, float *xhat, float *invstd,
                                       float *run_mean, float *run_var, float *plane,
                                       const float *x, const float *gamma, const float *beta,
                                       const ens_conv_geom *pool, int batch, float momentum,
                                       float eps);
/* Its backward: dgamma, dbeta (C) and, when dx is not NULL, dx (batch, C, H,
 * W) from the pooled gradient dy (batch, C, Ho, Wo), bitwise what the three
 * layers' backward passes give; plane is scratch of H W floats. */
void ens_bn_relu_maxpool_backward(float *dx, float *dgamma, float *dbeta, float *plane,
                                  const float *dy, const float *argmax, const float *xhat,
                                  const float *gamma, const float *beta, const float *invstd,
                                  const ens_conv_geom *pool, int batch);
/* The run conv -> bn -> relu -> maxpool whose pooling windows tile the
 * plane (k == stride, H and W multiples of k), fused around the
 * convolution (batchnorm2d.c explains). Forward, after
 * ens_conv2d_forward_sums wrote x and its channels' plane sums into
 * acc[0, C): x (batch, C, H, W) becomes xhat in place; y, argmax, invstd
 * and the running statistics as ens_bn_relu_maxpool_forward_train, to the
 * bit. Scratch: plane (H W floats), mean (C floats), acc[C, 2 C). */
void ens_bn_relu_maxpool_forward_inplace(float *y, float *argmax, float *invstd,
                                         float *run_mean, float *run_var, float *plane,
                                         float *mean, double *acc, float *x, const float *gamma,
                                         const float *beta, const ens_conv_geom *pool, int batch,
                                         float momentum, float eps);
/* Backward, first: dgamma, dbeta (C) and coef (3 C: gamma invstd, the mean
 * of the BN output gradient and of it times xhat, per channel) from the
 * pooled gradient dy, summed over the windows (the BN output gradient is 0
 * off the windows' maxima), not over the pixels as the layers one by one
 * sum it: equal up to the float sums' rounding. Scratch: acc (2 C
 * doubles). */
void ens_bn_relu_maxpool_coefs(float *dgamma, float *dbeta, float *coef, double *acc,
                               const float *dy, const float *argmax, const float *xhat,
                               const float *gamma, const float *beta, const float *invstd,
                               const ens_conv_geom *pool, int batch);
/* Then, for images [n0, n0 + gb): the BN input gradient, plane (n, c) at
 * dcol + c ld + n H W (the convolution's (C, gb H W) output gradient),
 * each plane's ens_sum8 added to db[c] (the convolution's bias gradient).
 * Given the same coef, each value is the bits ens_batchnorm2d_backward
 * gives. */
void ens_bn_relu_maxpool_dx_planes(float *dcol, size_t ld, float *db, const float *dy,
                                   const float *argmax, const float *xhat, const float *gamma,
                                   const float *beta, const float *coef,
                                   const ens_conv_geom *pool, int n0, int gb);
/* Max pooling (g->O == g->C, no padding): y (batch, C, Ho, Wo); argmax
 * (batch, C, Ho, Wo) receives the index ih W + iw of each maximum within its
 * plane, as a float (exact below 2^24 pixels); the first maximum wins ties. */
void ens_maxpool_forward(float *y, float *argmax, const float *x, const ens_conv_geom *g,
                         int batch);
/* dx (batch, C, H, W) = dy scattered to the argmax pixels (overwritten). */
void ens_maxpool_backward(float *dx, const float *dy, const float *argmax, const ens_conv_geom *g,
                          int batch);
/* Average pooling: y = mean of each k x k window (no padding). */
void ens_avgpool_forward(float *y, const float *x, const ens_conv_geom *g, int batch);
void ens_avgpool_backward(float *dx, const float *dy, const ens_conv_geom *g, int batch);

/* Global average pooling: y (batch, C) = mean of each plane of x (batch, C,
 * P); dx (batch, C, P) = dy / P. */
void ens_gap_forward(float *y, const float *x, int batch, int C, int P);
void ens_gap_backward(float *dx, const float *dy, int batch, int C, int P);

#endif
