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

/* Regression heads. A regression network's output row for T targets is
 * (2T) = T means then T raw variances for the Gaussian head, (T) means for
 * the MSE head. */

/* Softplus variance with a floor: var = log(1 + exp(raw)) + floor, computed stably
 * (raw > 20: raw), in double. */
double ens_softplus_var(double raw, double var_floor);
/* Gaussian NLL head (Lakshminarayanan et al. 2017, eq. 1): returns the mean over the batch rows
 * of sum over targets of 0.5 log(2 pi var) + (y - mu)^2 / (2 var); dout (batch, 2T), when not
 * NULL, receives the gradient of that mean w.r.t. out (so already divided by batch).
 * out (batch, 2T), y (batch, T). var = ens_softplus_var(raw, var_floor), so var_floor > 0 keeps
 * the loss finite. The loss is accumulated and the gradient computed in double; dout is rounded
 * to float. dout may not alias out. */
double ens_gaussian_nll_loss(float *dout, const float *out, const float *y, int batch, int T,
                             float var_floor);
/* pred (batch, 2T) = [mu_0..mu_{T-1}, var_0..var_{T-1}] from out (batch, 2T).
 * pred may not alias out. */
void ens_gaussian_head(float *pred, const float *out, int batch, int T, float var_floor);
/* MSE head: returns the mean over batch*T entries of (mu - y)^2; dout (batch, T) its gradient
 * (2 (mu - y) / (batch T)) when not NULL. out (batch, T), y (batch, T). */
double ens_mse_loss(float *dout, const float *out, const float *y, int batch, int T);

/* Orthogonal initialization (Saxe et al. 2014): w (rows, cols) gets
 * orthonormal rows (rows <= cols) or columns (rows > cols) from the QR
 * decomposition of a Gaussian matrix drawn from r (signs fixed by diag(R)),
 * times gain. Returns 0, ENS_ENOMEM or ENS_ELAPACK. */
int ens_init_orthogonal(float *w, int rows, int cols, double gain, ens_rng *r);
/* w (n) ~ N(0, std^2) from r. */
void ens_init_normal(float *w, size_t n, double std, ens_rng *r);

#endif
