/* Training one network: the SGD loop over mini-batches with its schedule,
 * clipping and counter-based randomness. The trainer owns the model, the
 * optimizer state and every buffer the loop needs (allocated once). */
#ifndef ENS_TRAIN_H
#define ENS_TRAIN_H

#include <stdint.h>

#include "ens/config.h"
#include "ens/gradnorm.h"
#include "ens/model.h"
#include "ens/optim.h"

/* Training inputs: x (n, d) features, y (n) labels (classification) or
 * t (n, T) targets (regression, in the units the network learns); rows
 * (nrows) selects the training rows (a bootstrap draw), or NULL for all n. */
/* Augmentation of image rows (C, H, W) in training steps only: a random
 * crop of the image padded by `crop` pixels (a shift of -crop..crop rows and
 * columns, uncovered pixels set to pad) and a horizontal flip with
 * probability 1/2 when flip is set. Row r's draw in epoch e comes from block
 * r of the stream (seed, member, ENS_STREAM_AUGMENT, e): it depends on
 * nothing else (not the batch, the rank or a resume). */
typedef struct ens_augment {
  int crop, flip;
  int c, h, w;
  const float *pad; /* (c h w) value of an uncovered pixel (a raw 0 after
                       standardization), or NULL for 0 */
} ens_augment;

/* Augments one row x (c h w) in place with the draws of r; scratch (c h w). */
void ens_augment_row(float *x, float *scratch, const ens_augment *a, ens_rng *r);

typedef struct ens_train_set {
  const float *x;
  const int32_t *y;
  const float *t;
  int T;
  int n, d;
  const int32_t *rows;
  int nrows;
  const ens_augment *aug; /* augmentation of training rows, or NULL */
} ens_train_set;

typedef struct ens_trainer ens_trainer;

/* Callbacks of the loop; any may be NULL. A non-zero return stops the loop
 * and is returned by ens_trainer_run. */
typedef struct ens_train_hooks {
  void *ctx;
  /* After every epoch with its mean training loss (t->curve_loss holds it;
   * the hook may fill t->curve_eval[epoch]). */
  int (*on_epoch)(void *ctx, ens_trainer *t, int epoch, double train_loss);
  /* After the last step of each cycle of a cyclic schedule (and of the run):
   * `index` counts them from 0. */
  int (*on_cycle_end)(void *ctx, ens_trainer *t, int index);
  /* Polled after every step: non-zero asks the loop to stop there (e.g. a
   * signal arrived); the loop then returns ENS_ESTOPPED with the state
   * consistent and resumable. */
  int (*should_stop)(void *ctx);
} ens_train_hooks;

struct ens_trainer {
  ens_model model;     /* the network being trained (full model or head) */
  ens_optimizer_kind optimizer;
  float *velocity;     /* (model.nparams) SGD momentum, or Adam's first moment */
  float *moment2;      /* (model.nparams) Adam's second moment; NULL for SGD */
  float *xb;           /* (batch, d) gathered inputs */
  int32_t *yb;         /* (batch) gathered labels */
  float *tb;           /* (batch, T) gathered targets (regression) */
  float *aug_row;      /* (d) scratch of the augmentation */
  int32_t *order;      /* (max rows) permutation of the current epoch */
  int order_cap;
  ens_schedule sched;
  ens_sgd sgd;
  ens_adam adam;
  float clip_value, clip_norm;
  ens_gradnorm gn;     /* every step's gradient norm before clipping, the threshold in force */
  int fail_grad;       /* the failing step's loss was finite, its gradient norm was not */
  int wn_data_init;    /* weight norm's data-dependent init on the first batch */
  int batch, epochs;
  uint64_t seed;
  uint32_t rng_member; /* key of the shuffle and dropout streams */
  /* Position, enough to resume: the next step runs batch `batch_in_epoch`
   * of epoch `epoch`; `step` counts steps since the start. */
  int epoch;
  long batch_in_epoch;
  long step;
  int cycles_done;     /* cycle ends seen (snapshot mode) */
  double loss_sum;     /* training loss accumulated over this epoch */
  long loss_count;
  double last_loss;    /* mean loss of the last finished epoch */
  float *curve_loss;   /* (epochs) mean training loss of each finished epoch */
  float *curve_eval;   /* (epochs) an evaluation metric per epoch (NaN unless a hook sets it) */
};

/* Creates a trainer for blocks [first_block, n_hidden) + output of `arch`
 * (first_block > 0: a head on trunk features) for up to max_rows training rows.
 * Returns 0 or an ENS_E* code; free with ens_trainer_free. */
int ens_trainer_create(ens_trainer *t, const ens_arch *arch, int first_block,
                       const ens_config *c, int max_rows);
void ens_trainer_free(ens_trainer *t);

/* Number of optimizer steps per epoch for nrows rows: a final batch of one
 * row is dropped (batch norm needs two). */
long ens_steps_per_epoch(int nrows, int batch);

/* Resets to a fresh start: parameters initialized with key init_member,
 * zero optimizer state and curves, position 0; shuffle and dropout keyed by rng_member. The
 * schedule is set for `nrows` training rows. */
int ens_trainer_start(ens_trainer *t, const ens_config *c, uint32_t init_member,
                      uint32_t rng_member, int nrows);

/* Runs from the current position to the end of training. Returns 0, the
 * first non-zero hook result, ENS_ESTOPPED, or ENS_ENUMERIC when the loss
 * or the gradient norm becomes NaN or infinite (then t->epoch and t->step
 * name the failing step, which was not applied; t->fail_grad says which). */
int ens_trainer_run(ens_trainer *t, const ens_train_set *set, const ens_train_hooks *h);

#endif
