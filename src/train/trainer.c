/* The training loop of one network: per-epoch shuffles and per-step dropout
 * masks come from counter-based streams addressed by (epoch) and (step), so
 * the loop can stop after any step and resume bit-identically from its
 * position alone. No allocation happens inside the loop. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"
#include "ens/train.h"

int ens_trainer_create(ens_trainer *t, const ens_arch *arch, int first_block,
                       const ens_config *c, int max_rows) {
  memset(t, 0, sizeof(*t));
  int ret = ens_model_create(&t->model, arch, first_block, arch->n_hidden, 1, c->batch);
  if (ret)
    return ret;
  t->model.bn_momentum = (float)c->bn_momentum;
  t->optimizer = c->optimizer;
  size_t np = t->model.nparams ? t->model.nparams : 1;
  int T = arch->head == ENS_HEAD_SOFTMAX ? 1 : arch->width;
  t->velocity = calloc(np, sizeof(float));
  if (c->optimizer != ENS_OPT_SGD)
    t->moment2 = calloc(np, sizeof(float));
  t->xb = malloc((size_t)c->batch * t->model.in * sizeof(float));
  t->yb = malloc((size_t)c->batch * sizeof(int32_t));
  t->tb = malloc((size_t)c->batch * T * sizeof(float));
  t->aug_row = malloc((size_t)t->model.in * sizeof(float));
  t->order = malloc((size_t)(max_rows > 0 ? max_rows : 1) * sizeof(int32_t));
  t->order_cap = max_rows;
  t->curve_loss = malloc((size_t)c->epochs * sizeof(float));
  t->curve_eval = malloc((size_t)c->epochs * sizeof(float));
  long max_steps = (long)c->epochs * ens_steps_per_epoch(max_rows > 0 ? max_rows : 1, c->batch);
  if (ens_gradnorm_create(&t->gn, max_steps, c->epochs,
                          c->clip_norm == ENS_AUTO && c->clip_warmup == 0)) {
    ens_trainer_free(t);
    return ENS_ENOMEM;
  }
  if (!t->velocity || (c->optimizer != ENS_OPT_SGD && !t->moment2) || !t->xb || !t->yb ||
      !t->tb || !t->aug_row || !t->order || !t->curve_loss || !t->curve_eval) {
    ens_trainer_free(t);
    return ENS_ENOMEM;
  }
  return 0;
}

void ens_trainer_free(ens_trainer *t) {
  if (!t)
    return;
  ens_model_free(&t->model);
  free(t->velocity);
  free(t->moment2);
  free(t->xb);
  free(t->yb);
  free(t->tb);
  free(t->aug_row);
  free(t->curve_loss);
  free(t->curve_eval);
  free(t->order);
  ens_gradnorm_free(&t->gn);
  memset(t, 0, sizeof(*t));
}

long ens_steps_per_epoch(int nrows, int batch) {
  long full = nrows / batch;
  return full + (nrows % batch >= 2 ? 1 : 0);
}

int ens_trainer_start(ens_trainer *t, const ens_config *c, uint32_t init_member,
                      uint32_t rng_member, int nrows) {
  if (nrows > t->order_cap || nrows < 2)
    return ENS_EINVAL;
  int ret = ens_model_init(&t->model, c->init, c->init_std, c->bias_init, c->seed, init_member);
  if (ret)
    return ret;
  memset(t->velocity, 0, t->model.nparams * sizeof(float));
  if (t->moment2)
    memset(t->moment2, 0, t->model.nparams * sizeof(float));
  for (int e = 0; e < c->epochs; e++)
    t->curve_loss[e] = t->curve_eval[e] = NAN;
  ens_schedule_from_config(&t->sched, c, ens_steps_per_epoch(nrows, c->batch));
  t->sgd = (ens_sgd){.momentum = c->momentum, .weight_decay = c->weight_decay,
                     .nesterov = c->nesterov};
  t->adam = (ens_adam){.beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps,
                       .weight_decay = c->weight_decay,
                       .decoupled = c->optimizer == ENS_OPT_ADAMW};
  t->clip_value = (float)c->clip_value;
  t->clip_norm = c->clip_norm == ENS_AUTO ? 0.0f : (float)c->clip_norm;
  /* A fixed threshold keeps its float rounding of before (bitwise results). */
  ens_gradnorm_reset(&t->gn, c->clip_norm == ENS_AUTO ? ENS_AUTO : (double)t->clip_norm,
                     c->clip_percentile, c->clip_warmup, c->clip_warmup_lr, c->clip_factor);
  t->fail_grad = 0;
  t->wn_data_init = c->weightnorm && c->weightnorm_init == 1;
  t->batch = c->batch;
  t->epochs = c->epochs;
  t->seed = c->seed;
  t->rng_member = rng_member;
  t->epoch = 0;
  t->batch_in_epoch = 0;
  t->step = 0;
  t->cycles_done = 0;
  t->loss_sum = 0.0;
  t->loss_count = 0;
  t->last_loss = NAN;
  return 0;
}

/* One optimizer step on rows order[lo, lo + b). Returns the batch loss. */
static double train_step(ens_trainer *t, const ens_train_set *set, long lo, int b) {
  ens_model *m = &t->model;
  const int d = set->d, T = set->T;
  /* The batch's rows are scattered over the training set: while copying a
   * row, ask for the first lines of the row PREFETCH ahead (the hardware
   * streams the rest), so the misses overlap. */
  enum { PREFETCH = 8 };
  const size_t rowbytes = (size_t)d * sizeof(float);
  for (int i = 0; i < b; i++) {
    if (i + PREFETCH < b) {
      int32_t rn = t->order[lo + i + PREFETCH];
      if (set->rows)
        rn = set->rows[rn];
      const char *next = (const char *)(set->x + (size_t)rn * d);
      for (size_t o = 0; o < rowbytes && o < 256; o += 64)
        __builtin_prefetch(next + o, 0, 0);
    }
    int32_t r = t->order[lo + i];
    if (set->rows)
      r = set->rows[r];
    memcpy(t->xb + (size_t)i * d, set->x + (size_t)r * d, (size_t)d * sizeof(float));
    if (set->y)
      t->yb[i] = set->y[r];
    if (set->t)
      memcpy(t->tb + (size_t)i * T, set->t + (size_t)r * T, (size_t)T * sizeof(float));
    if (set->aug) { /* keyed by (seed, member, epoch, data row) */
      ens_rng ar;
      ens_rng_init(&ar, t->seed, t->rng_member, ENS_STREAM_AUGMENT, (uint32_t)t->epoch);
      ens_rng_seek(&ar, (uint32_t)r);
      ens_augment_row(t->xb + (size_t)i * d, t->aug_row, set->aug, &ar);
    }
  }
  /* Weight norm's data-dependent init runs on the first batch of the run
   * (epoch 0's order), before its step; a resumed run is past it. */
  if (t->wn_data_init && t->step == 0)
    ens_model_wn_data_init(m, t->xb, b);
  ens_rng drop;
  ens_rng_init(&drop, t->seed, t->rng_member, ENS_STREAM_DROPOUT, (uint32_t)t->step);
  ens_model_forward(m, t->xb, b, ENS_PASS_TRAIN, &drop);
  double loss = ens_model_loss_backward(m, t->yb, t->tb, b, NULL);
  if (!isfinite(loss))
    return loss; /* nothing applied: the caller records the failing step */
  /* The global norm before any clipping, recorded at every step. */
  double norm = ens_grad_norm(m->grads, m->nparams);
  if (!isfinite(norm)) {
    t->fail_grad = 1;
    return NAN;
  }
  double c = ens_gradnorm_push(&t->gn, norm);
  if (c < 0.0)
    return NAN; /* cannot happen: the record holds every step of the run */
  if (t->clip_value > 0.0f) {
    ens_clip_value(m->grads, m->nparams, t->clip_value);
    if (c > 0.0)
      norm = ens_grad_norm(m->grads, m->nparams); /* what the norm clip sees */
  }
  if (c > 0.0 && norm > c) {
    ens_clip_scale(m->grads, m->nparams, norm, c);
    ens_gradnorm_clipped(&t->gn);
  }
  double lr = ens_schedule_lr(&t->sched, t->step);
  if (t->gn.warmup > 0 && t->step < t->gn.warmup) /* clip_norm = auto's warm-up */
    lr *= ens_gradnorm_lr_factor(&t->gn, t->step);
  if (t->optimizer == ENS_OPT_SGD)
    ens_sgd_step(m->params, t->velocity, m->grads, m->nparams, lr, &t->sgd);
  else
    ens_adam_step(m->params, t->velocity, t->moment2, m->grads, m->nparams, lr, t->step + 1,
                  &t->adam);
  return loss;
}

int ens_trainer_run(ens_trainer *t, const ens_train_set *set, const ens_train_hooks *h) {
  const int nrows = set->rows ? set->nrows : set->n;
  const long spe = t->sched.steps_per_epoch;
  int ret = 0;
  if (nrows > t->order_cap || set->d != t->model.in)
    return ENS_EINVAL;
  if (t->model.arch.head == ENS_HEAD_SOFTMAX ? !set->y : (!set->t || set->T != t->model.arch.width))
    return ENS_EINVAL;
  while (t->epoch < t->epochs) {
    /* The epoch's order is a pure function of (seed, member, epoch). */
    ens_rng shuf;
    ens_rng_init(&shuf, t->seed, t->rng_member, ENS_STREAM_SHUFFLE, (uint32_t)t->epoch);
    ens_rng_permutation(&shuf, t->order, nrows);
    while (t->batch_in_epoch < spe) {
      long lo = t->batch_in_epoch * t->batch;
      int b = nrows - lo < t->batch ? (int)(nrows - lo) : t->batch;
      double loss = train_step(t, set, lo, b);
      if (!isfinite(loss))
        return ENS_ENUMERIC;
      t->loss_sum += loss * b;
      t->loss_count += b;
      t->batch_in_epoch++;
      long done = t->step++;
      if (ens_schedule_cycle_end(&t->sched, done)) {
        int index = t->cycles_done++;
        if (t->batch_in_epoch == spe) /* cycle ends with the epoch: report its loss */
          t->last_loss = t->loss_sum / (double)t->loss_count;
        if (h && h->on_cycle_end && (ret = h->on_cycle_end(h->ctx, t, index)))
          return ret;
      }
      /* Poll once per step; a request at the end of an epoch is honoured
       * after the epoch's bookkeeping below. */
      int stop = h && h->should_stop && h->should_stop(h->ctx);
      if (stop && t->batch_in_epoch < spe)
        return ENS_ESTOPPED;
      if (t->batch_in_epoch < spe)
        continue;
      /* End of epoch. */
      t->last_loss = t->loss_sum / (double)t->loss_count;
      int finished = t->epoch;
      t->curve_loss[finished] = (float)t->last_loss;
      ens_gradnorm_end_epoch(&t->gn, finished);
      t->epoch++;
      t->batch_in_epoch = 0;
      t->loss_sum = 0.0;
      t->loss_count = 0;
      if (h && h->on_epoch && (ret = h->on_epoch(h->ctx, t, finished, t->last_loss)))
        return ret;
      if (stop && t->epoch < t->epochs)
        return ENS_ESTOPPED;
      break;
    }
  }
  return 0;
}
