/* Layer kernels on row-major float tensors. Outputs first, gradients
 * prefixed d, read-only inputs const, shapes in the comments. Dense weights
 * are stored (out, in) like PyTorch's nn.Linear so trunks can be exchanged. */
#ifndef ENS_NN_H
#define ENS_NN_H

#include <stddef.h>
#include <stdint.h>

#include "ens/rng.h"

/* y (batch,out) = x (batch,in) w^T + b;  w (out,in), b (out). */
void ens_dense_forward(float *y, const float *x, const float *w, const float *b, int batch,
                       int in, int out);
/* dw (out,in) = dy^T x, db (out) = column sums of dy; dx (batch,in) = dy w.
 * dx may be NULL (first layer: no input gradient needed). Overwrites dw, db. */
void ens_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int batch, int in, int out);

/* Batch norm, training pass (Ioffe & Szegedy 2015, alg. 1): normalizes with
 * the batch mean and biased variance, writes xhat (batch,n) and invstd (n) for
 * the backward pass, and moves run_mean/run_var (n) toward the batch mean and
 * unbiased variance by `momentum` (PyTorch convention). y may alias nothing. */
void ens_batchnorm_forward_train(float *y, float *xhat, float *invstd, float *run_mean,
                                 float *run_var, const float *x, const float *gamma,
                                 const float *beta, int batch, int n, float momentum, float eps);
/* Batch norm, eval pass: y = gamma (x - run_mean) / sqrt(run_var + eps) + beta. */
void ens_batchnorm_forward_eval(float *y, const float *x, const float *gamma, const float *beta,
                                const float *run_mean, const float *run_var, int batch, int n,
                                float eps);
/* Full backward through the batch statistics:
 * dx = invstd/B (B g dy - sum(g dy) - xhat sum(g dy xhat)). dx may alias dy. */
void ens_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                            const float *xhat, const float *gamma, const float *invstd, int batch,
                            int n);

/* y = max(x, 0); dx = dy where y > 0 else 0 (dx may alias dy). n elements. */
void ens_relu_forward(float *y, const float *x, size_t n);
void ens_relu_backward(float *dx, const float *dy, const float *y, size_t n);

/* Inverted dropout: mask[i] = 1/(1-p) with probability 1-p else 0, drawn from
 * r; y = x * mask. With p = 0 the mask is all ones. dx = dy * mask (may alias). */
void ens_dropout_forward(float *y, float *mask, const float *x, float p, size_t n, ens_rng *r);
void ens_dropout_backward(float *dx, const float *dy, const float *mask, size_t n);

/* Numerically stable softmax cross-entropy. probs (batch,C) = softmax(logits);
 * returns the mean over the batch of -log p[y] (log-sum-exp form, so no
 * overflow). dlogits, when not NULL, receives (probs - onehot(y)) / batch. */
double ens_softmax_xent(float *probs, float *dlogits, const float *logits, const int32_t *y,
                        int batch, int C);
/* probs (batch,C) = softmax(logits), for prediction. */
void ens_softmax(float *probs, const float *logits, int batch, int C);

/* Orthogonal initialization (Saxe et al. 2014): w (rows, cols) gets
 * orthonormal rows (rows <= cols) or columns (rows > cols) from the QR
 * decomposition of a Gaussian matrix drawn from r (signs fixed by diag(R)),
 * times gain. Returns 0, ENS_ENOMEM or ENS_ELAPACK. */
int ens_init_orthogonal(float *w, int rows, int cols, double gain, ens_rng *r);
/* w (n) ~ N(0, std^2) from r. */
void ens_init_normal(float *w, size_t n, double std, ens_rng *r);

#endif
