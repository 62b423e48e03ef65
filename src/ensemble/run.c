/* Ensemble training across MPI ranks. Work is split into units: a member
 * (seed and bootstrap modes) or a snapshot chain; unit u runs on rank
 * u mod P. Every rank trains its units; rank 0 writes its own members to the
 * temporary result file as they finish, then visits members in member order,
 * receiving the others' one at a time, writing them and folding them into
 * running sums, so the result does not depend on the number of ranks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "ens/data.h"
#include "ens/ensemble.h"
#include "ens/error.h"
#include "ens/metrics.h"
#include "ens/model.h"
#include "ens/train.h"
#include "ensemble/job.h"
#include "io/h5util.h"

static double now(void) { return MPI_Wtime(); }

/* ---- member placement ---------------------------------------------------- */

int ens_job_unit_of(const ens_job *j, int k) {
  return j->c->mode == ENS_MODE_SNAPSHOT ? k / j->c->snapshots : k;
}

int ens_job_rank_of(const ens_job *j, int k) { return ens_job_unit_of(j, k) % j->size; }

/* ---- packing one member -------------------------------------------------- */

size_t ens_job_packed_len(const ens_job *j) {
  size_t n = j->nparams + j->nstats + (size_t)(j->n_test + j->n_val) * j->classes;
  if (j->c->mode == ENS_MODE_BOOTSTRAP)
    n += (size_t)j->n_train * j->classes;
  return n;
}

/* Fills j->pack from the trainer's model: parameters, statistics, test
 * probabilities and (bootstrap) training-set probabilities. */
static void pack_member(ens_job *j, ens_trainer *t) {
  ens_model *m = &t->model;
  float *p = j->pack;
  memcpy(p, m->params, j->nparams * sizeof(float));
  p += j->nparams;
  memcpy(p, m->stats, j->nstats * sizeof(float));
  p += j->nstats;
  ens_model_predict(m, p, j->ftest, j->n_test);
  p += (size_t)j->n_test * j->classes;
  if (j->n_val) {
    ens_model_predict(m, p, j->fval, j->n_val);
    p += (size_t)j->n_val * j->classes;
  }
  if (j->c->mode == ENS_MODE_BOOTSTRAP)
    ens_model_predict(m, p, j->ftrain, j->n_train);
}

/* ---- hooks of the training loop ------------------------------------------ */

typedef struct unit_ctx {
  ens_job *j;
  int unit;
  int first_k;      /* first member of this unit */
  double t_epoch;   /* start of the current epoch */
} unit_ctx;

int ens_job_emit_packed(ens_job *j, ens_trainer *t, const ens_member_meta *meta) {
  pack_member(j, t);
  return ens_job_store_member(j, meta, j->pack);
}

static int emit_member(ens_job *j, ens_trainer *t, int k, double seconds) {
  ens_member_meta meta = {.k = k,
                          .epochs = t->epoch,
                          .steps = t->step,
                          .final_loss = t->last_loss,
                          .train_seconds = seconds,
                          .init_key = (int32_t)j->init_key,
                          .rng_key = (int32_t)t->rng_member};
  int ret = ens_job_emit_packed(j, t, &meta);
  if (!ret)
    ret = ens_job_checkpoint_member(j, &meta, j->pack);
  ens_progress_member(&j->progress);
  return ret;
}

static int on_epoch(void *ctx, ens_trainer *t, int epoch, double loss) {
  unit_ctx *u = ctx;
  ens_job *j = u->j;
  double train_time = now() - u->t_epoch;
  if (j->c->verbose) {
    /* Test metrics of the current weights, eval mode. */
    ens_model_predict(&t->model, j->eval_probs, j->ftest, j->n_test);
    double acc = ens_metric_accuracy(j->eval_probs, j->data.test.y, j->n_test, j->classes);
    double nll = ens_metric_nll(j->eval_probs, j->data.test.y, j->n_test, j->classes);
    int nrows = j->n_train; /* a bootstrap draw has n rows too */
    char who[64];
    if (j->c->mode == ENS_MODE_SNAPSHOT)
      snprintf(who, sizeof(who), "chain %d", u->unit);
    else
      snprintf(who, sizeof(who), "member %d", u->first_k);
    printf("[%s] epoch %d/%d  loss %.4f  test acc %.2f%%  nll %.4f  %.0f samples/s  lr %.4g\n",
           who, epoch + 1, t->epochs, loss, 100.0 * acc, nll,
           train_time > 0 ? nrows / train_time : 0.0,
           ens_schedule_lr(&t->sched, t->step > 0 ? t->step - 1 : 0));
    fflush(stdout);
  }
  u->t_epoch = now();
  return ens_job_checkpoint_epoch(j, t, u->unit, epoch);
}

static int on_cycle_end(void *ctx, ens_trainer *t, int index) {
  unit_ctx *u = ctx;
  ens_job *j = u->j;
  if (j->c->mode != ENS_MODE_SNAPSHOT)
    return 0;
  int k = u->first_k + index;
  if (index >= j->c->snapshots)
    return 0;
  int ret = emit_member(j, t, k, now() - j->unit_t0);
  if (j->c->verbose) {
    printf("[chain %d] snapshot %d -> member %d at epoch %d\n", u->unit, index, k,
           t->epoch + (t->batch_in_epoch > 0 ? 1 : 0));
    fflush(stdout);
  }
  return ret;
}

static int should_stop(void *ctx) {
  unit_ctx *u = ctx;
  ens_job *j = u->j;
  const ens_trainer *t = &j->trainer;
  double el = now() - j->unit_t0;
  ens_progress_step(&j->progress, t->step, t->epoch < t->epochs ? t->epoch + 1 : t->epochs,
                    t->epochs,
                    t->loss_count ? t->loss_sum / (double)t->loss_count : t->last_loss,
                    el > 0 ? (double)t->step * t->batch / el : 0.0);
  return j->o->stop && *j->o->stop;
}

/* ---- one unit ------------------------------------------------------------ */

static int train_unit(ens_job *j, int unit, char *err, size_t errlen) {
  const ens_config *c = j->c;
  int S = c->mode == ENS_MODE_SNAPSHOT ? c->snapshots : 1;
  int first_k = unit * S;
  uint32_t rng_key = (uint32_t)unit;
  j->init_key = j->shared_init ? 0 : rng_key;
  ens_train_set set = {.x = j->ftrain, .y = j->data.train.y, .n = j->n_train, .d = j->fd};
  if (c->mode == ENS_MODE_BOOTSTRAP) {
    ens_job_bootstrap_rows(j->rows, j->n_train, c->seed, (uint32_t)unit);
    set.rows = j->rows;
    set.nrows = j->n_train; /* a bootstrap draw has n rows too */
  }
  ens_trainer *t = &j->trainer;
  int ret = ens_trainer_start(t, c, j->init_key, rng_key, j->n_train);
  if (ret)
    return ret;
  unit_ctx u = {.j = j, .unit = unit, .first_k = first_k};
  int done = 0;
  j->unit_t0 = now();
  ret = ens_job_restore_unit(j, t, unit, first_k, S, &done, err, errlen);
  if (ret || done)
    return ret;
  u.t_epoch = now();
  ens_train_hooks h = {.ctx = &u, .on_epoch = on_epoch, .on_cycle_end = on_cycle_end,
                       .should_stop = should_stop};
  ret = ens_trainer_run(t, &set, &h);
  ens_progress_unit_end(&j->progress, t->step);
  if (ret == ENS_ESTOPPED)
    return ens_job_checkpoint_stop(j, t, unit);
  if (ret == ENS_ENUMERIC)
    snprintf(err, errlen, "member %d: the training loss became NaN or infinite at epoch %d "
             "(try a lower [train] lr or set clip_norm)", first_k, t->epoch + 1);
  if (ret)
    return ret;
  if (c->mode != ENS_MODE_SNAPSHOT)
    ret = emit_member(j, t, first_k, now() - j->unit_t0);
  if (!ret)
    ret = ens_job_checkpoint_done(j, t, unit);
  return ret;
}

/* ---- the job ------------------------------------------------------------- */

int ens_train_job(const ens_config *c, const ens_job_opts *o, MPI_Comm comm, char *err,
                  size_t errlen) {
  ens_job job;
  ens_job *j = &job;
  /* Threads first: setup may already compute (trunk pretraining, features). */
  openblas_set_num_threads(c->threads);
  int ret = ens_job_setup(j, c, o, comm, err, errlen);
  if (ret) {
    ens_job_free(j);
    return ret;
  }
  double t0 = now();
  long spe = ens_steps_per_epoch(j->n_train, c->batch);
  int u_first = ens_job_unit_of(j, j->first), u_last = ens_job_unit_of(j, j->last - 1) + 1;
  int64_t steps_total = (int64_t)(u_last - u_first) * c->epochs * spe;
  if (ens_progress_init(&j->progress, comm, steps_total, j->last - j->first,
                        c->progress_interval)) {
    ens_job_free(j);
    return ENS_ENOMEM;
  }
  int mine = 0;
  int *units = malloc((size_t)(u_last - u_first + 1) * sizeof(int));
  if (!units) {
    ens_job_free(j);
    return ENS_ENOMEM;
  }
  for (int u = u_first; u < u_last; u++) {
    if (u % j->size != j->rank)
      continue;
    units[mine++] = u;
    if (o->stop && *o->stop) { /* stopped between units: the rest start fresh */
      ret = ENS_ESTOPPED;
      break;
    }
    ret = train_unit(j, u, err, errlen);
    if (ret)
      break;
  }
  if (!mine && !ret) {
    printf("rank %d: idle (%d member%s on %d ranks)\n", j->rank, j->last - j->first,
           j->last - j->first == 1 ? "" : "s", j->size);
    fflush(stdout);
  }
  ens_progress_finish(&j->progress);
  ens_progress_free(&j->progress);
  /* Agree on the outcome: a signal or failure on any rank stops everyone
   * before the collection phase. */
  int local = ret == ENS_ESTOPPED ? 1 : (ret ? 2 : 0), global = 0;
  MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_MAX, comm);
  if (global == 0) {
    ret = ens_job_collect(j, now() - t0, err, errlen);
    if (!ret)
      ens_job_checkpoint_cleanup(j, units, mine);
  } else if (!ret) {
    /* This rank finished its work but another stopped or failed. */
    ret = global == 1 ? ENS_ESTOPPED : ENS_EMPI;
    if (ret == ENS_EMPI)
      snprintf(err, errlen, "another rank failed");
  }
  if (ret == ENS_ESTOPPED && !err[0])
    snprintf(err, errlen, "stopped by a signal; checkpoints are in %s", j->ckpt_dir);
  free(units);
  ens_job_free(j);
  return ret;
}
