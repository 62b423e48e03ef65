/* The layer table: one row of functions per layer kind (KANN's operator
 * table). model.c walks layers through these rows only, so adding a kind is
 * a row here plus its kernels; sizes drive the flat buffers, the packing of
 * parameters and checkpoints without knowing the kinds. */
#ifndef ENS_NN_LAYER_H
#define ENS_NN_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "ens/config.h"
#include "ens/model.h"
#include "ens/rng.h"

/* What init needs beyond the layer: the rule, its knobs and the generator
 * key. is_output tells the linear output layer from hidden ones. */
typedef struct ens_init_args {
  ens_init_kind init;
  double init_std, bias_init;
  uint64_t seed;
  uint32_t member;
  int is_output;
} ens_init_args;

typedef struct ens_layer_ops {
  const char *name; /* as ens_model_describe prints it */
  /* Sets l->sout from l->sin and l->spec; returns 0, or ENS_EINVAL with err
   * saying what does not fit (the caller adds the layer and both shapes). */
  int (*shape)(ens_layer *l, char *err, size_t errlen);
  size_t (*nparam)(const ens_layer *l);                /* floats in params/grads */
  size_t (*nstat)(const ens_layer *l);                 /* floats in stats */
  size_t (*naux)(const ens_layer *l, int batch_max);   /* floats of l->aux */
  size_t (*nwork)(const ens_layer *l, int batch_max);  /* shared scratch (m->work) */
  /* Initializes p (nparam). Returns 0 or a negative ENS_E code. */
  int (*init)(const ens_layer *l, float *p, const ens_init_args *a);
  /* Resets s (nstat) to the statistics of a fresh layer (batch norm: mean 0,
   * var 1); also what BN re-estimation starts from. */
  void (*init_stats)(const ens_layer *l, float *s);
  /* Forward of `batch` rows of x (batch, in): returns the output (batch, out),
   * l->y or, for an identity pass, x itself. `index` is the layer's position
   * in m (keys MC-dropout masks). */
  const float *(*forward)(ens_model *m, ens_layer *l, const float *x, int batch, ens_pass pass,
                          ens_rng *r, int index);
  /* Backward: dx (batch, in) from dy (batch, out); g (nparam) is overwritten
   * with the parameter gradient. With inplace set, dx == dy; else dx may be
   * NULL (first layer, no input gradient wanted). */
  void (*backward)(ens_model *m, ens_layer *l, float *dx, float *dy, float *g, const float *p,
                   int batch);
  int inplace; /* backward works in place (dx == dy) */
  /* Appends this layer to buf as ens_model_describe prints it; returns the
   * snprintf count. */
  int (*describe)(const ens_model *m, const ens_layer *l, char *buf, size_t len, int first);
} ens_layer_ops;

extern const ens_layer_ops ens_layer_table[ENS_LAYER_KIND_COUNT];

/* Weights (rows, fan_in) of a weight layer by the init rule, from the
 * generator (seed, member, ENS_STREAM_INIT, block), then rows biases
 * (bias_init, or 0 for the output layer). A convolution passes its reshaped
 * (out, C k k) matrix. Returns 0 or ENS_ELAPACK/ENS_ENOMEM (orthogonal). */
int ens_layer_init_weights(const ens_layer *l, float *p, int rows, int fan_in, int fan_out,
                           const ens_init_args *a);

#endif
