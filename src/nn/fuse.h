/* Fused runs of layers in training passes (fuse.c). */
#ifndef ENS_NN_FUSE_H
#define ENS_NN_FUSE_H

#include "ens/model.h"

/* Marks the runs of m->layers executed fused (ens_layer.fuse) and grows
 * m->nwork to their scratch; called by ens_model_create before allocating. */
void ens_fuse_plan(ens_model *m);
/* Training forward of the run starting at layer i on x (batch rows); returns
 * the run's output (its last layer's y). */
const float *ens_fuse_forward(ens_model *m, int i, const float *x, int batch);
/* Backward of the run starting at layer i: its parameter gradients and, when
 * dx is not NULL, dx (the input gradient of layer i) from dy (the gradient
 * of the run's output). dx must not alias dy. */
void ens_fuse_backward(ens_model *m, int i, float *dx, const float *dy, int batch);

#endif
