/* A multilayer perceptron as a small table of layers over flat buffers:
 * parameters, gradients, batch-norm statistics and activations are each one
 * allocation, and every tensor points into them (llm.c style). A full model
 * is blocks [0, n_hidden) plus the output layer; a trunk is the first L blocks
 * and a head the rest plus the output, with the same per-layer parameter
 * layout, so a trunk's parameters are a prefix of the full model's. */
#ifndef ENS_MODEL_H
#define ENS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "ens/config.h"
#include "ens/rng.h"

/* Layer kinds. Each kind is one row of the layer table (src/nn/layer.h):
 * shape inference, parameter/statistic/auxiliary sizes, init, forward (train,
 * eval, MC, BN re-estimation) and backward. model.c only walks the table. */
typedef enum {
  ENS_LAYER_DENSE,
  ENS_LAYER_BATCHNORM,
  ENS_LAYER_RELU,
  ENS_LAYER_DROPOUT,
  ENS_LAYER_CONV,    /* 2-D convolution, k x k, stride, zero padding */
  ENS_LAYER_MAXPOOL, /* k x k windows every stride pixels */
  ENS_LAYER_AVGPOOL,
  ENS_LAYER_GAP,     /* global average pooling: (C,H,W) -> C */
  ENS_LAYER_FLATTEN, /* (C,H,W) -> C H W */
  ENS_LAYER_WNDENSE, /* dense with weight normalization: parameters v, g, b */
  ENS_LAYER_WNCONV,  /* conv with weight normalization: parameters v, g, b */
  ENS_LAYER_KIND_COUNT
} ens_layer_kind;

/* Shape of one row of activations: an image (c, h, w), NCHW in memory, or a
 * flat width c (h = w = 1, image = 0). */
typedef struct ens_shape {
  int c, h, w;
  int image; /* bool */
} ens_shape;

/* Elements of one row of that shape. */
static inline size_t ens_shape_size(ens_shape s) { return (size_t)s.c * s.h * s.w; }

/* Most layers of one network (hidden layers; the output layer is added). */
#define ENS_MAX_LAYERS 64

/* One layer as the user asked for it, before shapes are known. */
typedef struct ens_layer_spec {
  ens_layer_kind kind;
  int n;              /* dense: units; conv: output channels */
  float p;            /* dropout: drop probability */
  int k, stride, pad; /* conv and pooling windows */
  int block;          /* block index: a block starts at each weight layer */
} ens_layer_spec;

/* How a forward pass treats batch norm and dropout. */
typedef enum {
  ENS_PASS_TRAIN,      /* batch statistics (running stats updated), dropout on */
  ENS_PASS_EVAL,       /* running statistics, dropout off */
  ENS_PASS_BN_REESTIMATE, /* batch statistics folded into a cumulative average of
                            the running stats (SWA update_bn), dropout off */
  ENS_PASS_MC            /* running statistics, dropout on with masks keyed by
                            (seed, member, row, pass): MC-dropout (Gal &
                            Ghahramani 2016) independent of the batch size */
} ens_pass;

/* What the output layer predicts and which loss trains it. */
typedef enum {
  ENS_HEAD_SOFTMAX,  /* class probabilities, cross-entropy */
  ENS_HEAD_GAUSSIAN, /* per target a mean and a softplus variance, Gaussian NLL */
  ENS_HEAD_MSE       /* per target a mean, squared error */
} ens_head_kind;

/* Variance floor of the Gaussian head, in the (standardized) units the
 * network is trained in. */
#define ENS_VAR_FLOOR 1e-6f

/* The architecture of a full network. */
typedef struct ens_arch {
  int in;                      /* input features */
  ens_head_kind head;
  int width;                   /* classes (softmax) or targets T (regression) */
  int outputs;                 /* units of the output layer: C, 2T or T */
  int n_hidden;
  int hidden[ENS_MAX_HIDDEN];
  int batchnorm;               /* bool */
  float dropout;               /* drop probability after each hidden block */
  int weightnorm;              /* bool: every dense and conv layer (the output layer
                                  too) is weight-normalized (v, g, b) */
  /* A layer list (nspec > 0) replaces the MLP form above: n_hidden is then
   * its number of blocks, hidden/batchnorm/dropout are unused, and in_shape
   * the shape of an input row (in its size). With nspec == 0 the layers are
   * the MLP form (dense, [batchnorm], relu, [dropout]) per hidden width. */
  ens_shape in_shape;
  int nspec;
  ens_layer_spec spec[ENS_MAX_LAYERS];
} ens_arch;

typedef struct ens_layer {
  ens_layer_kind kind;
  int in, out;         /* elements per row of input and output (shape sizes) */
  ens_shape sin, sout; /* input and output shapes */
  ens_layer_spec spec; /* what the user asked for */
  int block;           /* hidden block index, n_hidden for the output layer */
  size_t param_off;    /* offset into params/grads */
  size_t nparam;
  size_t stat_off;     /* offset into stats (batch norm running mean, var) */
  size_t nstat;
  float *y;            /* output activations (batch_max, out) */
  const float *x;      /* input of the last forward pass (not owned) */
  float *aux;          /* per kind (the table's naux): batch norm: xhat
                          (batch_max,out) then invstd (channels); dropout: mask
                          (batch_max,out) */
  int fuse;            /* >0 on the first layer of a run that a training pass
                          executes as one fused kernel (nn/fuse.c): the run's
                          length; 0 otherwise */
} ens_layer;

typedef struct ens_model {
  ens_arch arch;
  int first_block, last_block; /* hidden blocks [first, last) */
  int has_output;              /* includes the output dense layer */
  int in, out;                 /* input and output widths of this (sub)model */
  int batch_max;
  int nlayers;
  ens_layer *layers;
  size_t nparams, nstats;
  float *params;   /* (nparams) */
  float *grads;    /* (nparams) */
  float *stats;    /* (nstats) */
  float *acts;     /* every layer's y and aux */
  float *dbuf[2];  /* gradient ping-pong buffers (batch_max, max width) */
  float *work;     /* scratch shared by the layers (the table's nwork), or NULL */
  size_t nwork;
  float *probs;    /* softmax output (batch_max, out) when has_output */
  float bn_eps, bn_momentum;
  long bn_batches; /* batches seen by ENS_PASS_BN_REESTIMATE */
  /* Key of the MC-dropout masks of an ENS_PASS_MC forward (set by
   * ens_model_predict_mc): rows are numbered from mc_row0. */
  uint64_t mc_seed;
  uint32_t mc_member, mc_pass;
  long mc_row0;
  /* Fused runs (ens_layer.fuse): nofuse set runs every layer alone (the
   * reference path of the tests); fused_pass records that the last forward
   * pass ran the fused kernels, so backward must too. */
  int nofuse, fused_pass;
} ens_model;

/* Fills arch from a config and data dimensions: `width` is the number of
 * classes (softmax head) or of regression targets. */
void ens_arch_from_config(ens_arch *a, const ens_config *c, int in, ens_head_kind head,
                          int width);
/* Floats per row of a prediction: C probabilities, or 2T = T means then T
 * variances (zero for the MSE head). */
int ens_arch_pred_width(const ens_arch *a);

/* Creates hidden blocks [first_block, last_block) plus the output layer when
 * with_output, for batches of up to batch_max rows. All buffers are allocated
 * here, once. Returns 0, ENS_EINVAL or ENS_ENOMEM; free with ens_model_free. */
int ens_model_create(ens_model *m, const ens_arch *a, int first_block, int last_block,
                     int with_output, int batch_max);
void ens_model_free(ens_model *m);

/* Number of parameters / statistics that blocks [first, last) (+ output)
 * would have, without creating a model. */
void ens_arch_sizes(const ens_arch *a, int first_block, int last_block, int with_output,
                    size_t *nparams, size_t *nstats);

/* Initializes parameters (weights by `init`, biases to bias_init, batch norm
 * gamma 1 / beta 0, running mean 0 / var 1). Layer l of the FULL network uses
 * the generator (seed, member, ENS_STREAM_INIT, l), so a head initialized
 * alone gets the same weights as the same layers of a full model. Returns 0
 * or ENS_ELAPACK (orthogonal init). */
int ens_model_init(ens_model *m, ens_init_kind init, double init_std, double bias_init,
                   uint64_t seed, uint32_t member);

/* Forward pass over x (batch, in). Returns the output (batch, out): the
 * logits when has_output, else the last block's activations; the pointer is
 * into m's buffers and valid until the next forward. `r` draws dropout masks
 * in ENS_PASS_TRAIN (may be NULL otherwise). */
const float *ens_model_forward(ens_model *m, const float *x, int batch, ens_pass pass,
                               ens_rng *r);

/* Loss of the last forward pass (ENS_PASS_TRAIN) and its backward pass: the
 * whole gradient m->grads is overwritten. The head decides the loss:
 * softmax cross-entropy against labels (batch) (fills m->probs), or the
 * Gaussian NLL / MSE against targets (batch, T); the other pointer may be
 * NULL. dx_out, when not NULL, receives the gradient w.r.t. the input
 * (batch, in). Returns the mean loss. */
double ens_model_loss_backward(ens_model *m, const int32_t *labels, const float *targets,
                               int batch, float *dx_out);

/* Predictions (n, ens_arch_pred_width) of the rows of x (n, in), eval mode,
 * in batches of batch_max: probabilities, or means then variances. */
void ens_model_predict(ens_model *m, float *pred, const float *x, int n);
/* The same with dropout active (MC-dropout pass `pass`): the mask of row
 * row0 + i comes from (seed, member, ENS_STREAM_MC, pass, layer, row), so
 * it does not depend on batch sizes or on how the rows are split. */
void ens_model_predict_mc(ens_model *m, float *pred, const float *x, int n, long row0,
                          uint64_t seed, uint32_t member, uint32_t pass);
/* Eval-mode outputs (n, out) without softmax (trunk features). */
void ens_model_features(ens_model *m, float *out, const float *x, int n);
/* Prediction rows pred (n, pred width) from output-layer rows z (n, out) of a
 * model with an output layer: softmax, Gaussian head (mean, variance) or mse
 * (mean, zero variance), as ens_model_predict applies after its forward pass. */
void ens_model_head(const ens_model *m, float *pred, const float *z, int n);

/* Re-estimates batch-norm running statistics with the current weights: resets
 * them and averages batch statistics over x (n, in) in batches of batch_max
 * (SWA's update_bn, Izmailov et al. 2018). */
void ens_model_reestimate_bn(ens_model *m, const float *x, int n);

/* Weight normalization (src/nn/weightnorm.c). The paper's data-dependent
 * init (Salimans & Kingma 2016, sec. 3): layer by layer in order, the
 * pre-activations y of each weight-normalized layer on the rows x (batch,
 * in) (eval pass) get mean 0 and variance 1 per unit: g /= sd(y),
 * b = (b - mean(y)) / sd(y) (a unit constant on the batch is left alone).
 * Returns the number of layers initialized. */
int ens_model_wn_data_init(ens_model *m, const float *x, int batch);
/* sum (nparams, double) += params (a flat buffer of m's layout) with each
 * weight-normalized layer's v replaced by its effective w = g v / ||v||
 * (its g slot is not added): parameter averaging averages w. */
void ens_model_wn_add_effective(const ens_model *m, double *sum, const float *params);
/* Sets every weight-normalized layer's g to ||v||, so that v read as w
 * (e.g. averaged effective weights) is the layer's weight. */
void ens_model_wn_renormalize(ens_model *m);
/* 1 when m has a weight-normalized layer. */
int ens_model_has_weightnorm(const ens_model *m);

/* Human-readable layer list, e.g. "dense(784,512) bn(512) relu ...". */
void ens_model_describe(const ens_model *m, char *buf, size_t len);

/* Shape inference of the whole architecture (blocks [0, n_hidden) plus the
 * output layer) without allocating: returns 0, or ENS_EINVAL with err naming
 * the layer (its 1-based position and kind) and both shapes. */
int ens_arch_check(const ens_arch *a, char *err, size_t errlen);

/* Name of a layer kind ("dense", "batchnorm", "conv", ...). */
const char *ens_layer_kind_name(ens_layer_kind kind);

/* Parses a layer list ("conv 32 3 pad 1, bn, relu, maxpool 2, flatten,
 * dense 128, relu"; src/nn/layerlist.c) into a->spec, a->nspec and
 * a->n_hidden (its blocks: one per weight layer); a may be NULL to check the
 * syntax only. Returns 0 or ENS_ECONFIG with err naming the layer. */
int ens_layers_parse(const char *text, ens_arch *a, char *err, size_t errlen);
/* The config check of `[model] layers` (an empty value is the MLP form). */
int ens_layers_check(const char *key, const char *value, char *msg, size_t len);
/* One layer as the layer list spells it ("conv 32 3 stride 1 pad 1");
 * returns the snprintf count. */
int ens_layer_spec_text(char *buf, size_t len, const ens_layer_spec *sp);
/* A table of m's layers, one line each: the layer, its output shape and its
 * parameter count, then the total (what rank 0 prints at start and ens info
 * shows). */
void ens_model_summary(const ens_model *m, char *buf, size_t len);
/* The canonical text of a's layer list (every number spelled out). */
void ens_layers_format(char *buf, size_t len, const ens_arch *a);

/* ens_arch_from_config for an input row of the given shape: an image shape
 * reaches a layer list's first layer; the MLP form flattens it. */
void ens_arch_from_config_shape(ens_arch *a, const ens_config *c, ens_shape in,
                                ens_head_kind head, int width);

#endif
