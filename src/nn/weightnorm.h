/* Weight normalization (Salimans & Kingma 2016): a dense or conv layer whose
 * weight rows are w_i = g_i v_i / ||v_i||, trained as (v, g). Its parameter
 * block is v (rows, fan_in), g (rows), b (rows); the rows of the layer table
 * (ENS_LAYER_WNDENSE, ENS_LAYER_WNCONV) live in weightnorm.c. */
#ifndef ENS_NN_WEIGHTNORM_H
#define ENS_NN_WEIGHTNORM_H

#include "ens/model.h"
#include "nn/layer.h"

/* w (rows, fan) = g_i v_i / ||v_i|| per row (the norm summed in double over
 * four interleaved accumulators in a fixed order); a row with v_i = 0 gives
 * w_i = 0. */
void ens_weightnorm_forward(float *w, const float *v, const float *g, int rows, int fan);
/* Gradients of (v, g) from the gradient dw (rows, fan) of w:
 *   dg_i = dw_i . v_i / ||v_i||,
 *   dv_i = (g_i / ||v_i||) dw_i - (g_i dg_i / ||v_i||^2) v_i   (paper, eq. 3);
 * per row in double; a row with v_i = 0 gets dv_i = 0, dg_i = 0. */
void ens_weightnorm_backward(float *dv, float *dg, const float *dw, const float *v,
                             const float *g, int rows, int fan);

/* The kind a weight layer takes with weight normalization (dense -> wndense,
 * conv -> wnconv); other kinds are returned unchanged. */
ens_layer_kind ens_weightnorm_kind(ens_layer_kind kind);

/* Layer-table functions of the two kinds (rows in layers.c). */
size_t ens_wn_dense_nparam(const ens_layer *l);
size_t ens_wn_dense_naux(const ens_layer *l, int batch_max);
int ens_wn_dense_init(const ens_layer *l, float *p, const ens_init_args *a);
const float *ens_wn_dense_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                                  ens_pass pass, ens_rng *r, int index);
void ens_wn_dense_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                           const float *p, int batch);
int ens_wn_dense_describe(const ens_model *m, const ens_layer *l, char *buf, size_t len,
                          int first);
size_t ens_wn_conv_nparam(const ens_layer *l);
size_t ens_wn_conv_naux(const ens_layer *l, int batch_max);
int ens_wn_conv_init(const ens_layer *l, float *p, const ens_init_args *a);
const float *ens_wn_conv_forward(ens_model *m, ens_layer *l, const float *x, int batch,
                                 ens_pass pass, ens_rng *r, int index);
void ens_wn_conv_backward(ens_model *m, ens_layer *l, float *dx, float *dy, float *g,
                          const float *p, int batch);
int ens_wn_conv_describe(const ens_model *m, const ens_layer *l, char *buf, size_t len,
                         int first);

#endif
