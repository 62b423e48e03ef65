/* Ensemble training across MPI ranks. Work is split into units: a member
 * (seed and bootstrap modes) or a snapshot chain; place.c says which rank
 * trains which ([output] placement). Every rank trains its units; rank 0 writes its own members to the
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
#include "ensemble/halving.h"
#include "ensemble/hyperdeep.h"
#include "ensemble/job.h"
#include "ensemble/tabular.h"
#include "io/h5util.h"

static double now(void) { return ens_comm_wtime(); }

/* ---- member placement ---------------------------------------------------- */

int ens_job_unit_of(const ens_job *j, int k) {
  return j->c->mode == ENS_MODE_SNAPSHOT ? k / j->c->snapshots : k;
}

/* The rank that trained member k in this run (placement is recorded by
 * place.c; rank 0 knows every unit's after ens_place_gather). */
int ens_job_rank_of(const ens_job *j, int k) {
  return ens_place_owner(&j->place, ens_job_unit_of(j, k));
}

/* Estimated cost of a unit, for ordering the queue and the cost plan:
 * forward and backward passes (about 6 flops per parameter and row) and the
 * optimizer update (about 10 per parameter and step), per epoch. Only its
 * order and sums matter; the queue corrects what it gets wrong. */
static double unit_cost(const ens_job *j, int unit) {
  const int S = j->c->mode == ENS_MODE_SNAPSHOT ? j->c->snapshots : 1;
  ens_config mc;
  size_t np = 0, ns = 0;
  ens_member_config(j, unit * S, &mc);
  ens_member_sizes(j, unit * S, j->trunk.layers, &np, &ns);
  const double steps = (double)ens_steps_per_epoch(j->data.n_train, mc.batch);
  return (double)mc.epochs * ((double)np + ns + 1.0) * (6.0 * j->data.n_train + 10.0 * steps);
}

/* ---- hooks of the training loop ------------------------------------------ */

typedef struct unit_ctx {
  ens_job *j;
  int unit;
  int first_k;      /* first member of this unit */
  double t_epoch;   /* start of the current epoch (or of the resumed part of it) */
  int64_t step_epoch; /* the trainer's step at t_epoch */
  double t_run;     /* start of this run's training of the unit (after a restore) */
  int64_t step_run; /* the trainer's step at t_run */
  int target;       /* successive halving: stop after this many epochs (its rung) */
  int rung_hit;     /* should_stop stopped the loop at the rung */
  int64_t step_base; /* a later halving rung: the steps its earlier rungs counted */
} unit_ctx;

static ens_member_meta member_meta(ens_job *j, ens_trainer *t, int k, double seconds) {
  ens_member_meta meta = {.k = k,
                          .status = ENS_MEMBER_DONE,
                          .epochs = t->epoch,
                          .steps = t->step,
                          .final_loss = t->last_loss,
                          .train_seconds = seconds,
                          .init_key = (int32_t)j->init_key,
                          .rng_key = (int32_t)t->rng_member,
                          .nparams = (int64_t)t->model.nparams,
                          .nstats = (int64_t)t->model.nstats};
  return meta;
}

/* Packs, keeps and checkpoints a finished or failed member. */
static int emit(ens_job *j, ens_trainer *t, const ens_member_meta *meta) {
  int ret = ens_job_emit_packed(j, t, meta);
  if (!ret)
    ret = ens_job_checkpoint_member(j, meta, j->pack);
  ens_progress_member(&j->progress);
  return ret;
}

static int emit_member(ens_job *j, ens_trainer *t, int k, double seconds) {
  ens_member_meta meta = member_meta(j, t, k, seconds);
  return emit(j, t, &meta);
}

static int on_epoch(void *ctx, ens_trainer *t, int epoch, double loss) {
  unit_ctx *u = ctx;
  ens_job *j = u->j;
  double train_time = now() - u->t_epoch;
  /* The learning curve: the headline metric of the current weights (eval
   * mode) on the validation rows, or the test rows when there are none. */
  double nll;
  double m0 = ens_job_eval(j, t, &nll);
  t->curve_eval[epoch] = (float)m0;
  if (j->c->verbose) {
    int nrows = j->data.n_train; /* a bootstrap draw has n rows too */
    char who[64], what[64];
    if (j->c->mode == ENS_MODE_SNAPSHOT)
      snprintf(who, sizeof(who), "chain %d", u->unit);
    else
      snprintf(who, sizeof(who), "member %d", u->first_k);
    const char *split = j->data.n_val ? "val" : ens_jobdata_scored_name(&j->data);
    if (j->task.regress)
      snprintf(what, sizeof(what), "%s rmse %.4g", split, m0);
    else
      snprintf(what, sizeof(what), "%s acc %.2f%%", split, 100.0 * m0);
    /* Rows of this epoch trained in this run: after a resume mid-epoch, only
     * the part after the restore. */
    double rows = (double)(t->step - u->step_epoch) * t->batch;
    if (rows > nrows || rows <= 0)
      rows = nrows;
    ens_lines_printf(&j->lines,
                     "[%s] epoch %d/%d  loss %.4f  %s  nll %.4f  %.0f samples/s  lr %.4g", who,
                     epoch + 1, t->epochs, loss, what, nll,
                     train_time > 0 ? rows / train_time : 0.0,
                     ens_schedule_lr(&t->sched, t->step > 0 ? t->step - 1 : 0));
  }
  u->t_epoch = now();
  u->step_epoch = t->step;
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
    ens_lines_printf(&j->lines, "[chain %d] snapshot %d -> member %d at epoch %d", u->unit, index,
                     k, t->epoch + (t->batch_in_epoch > 0 ? 1 : 0));
  }
  return ret;
}

static int should_stop(void *ctx) {
  unit_ctx *u = ctx;
  ens_job *j = u->j;
  const ens_trainer *t = &j->trainer;
  /* Rate of this run only (not the steps restored from a checkpoint); loss
   * of the last finished epoch, or the running mean in the first. */
  double el = now() - u->t_run;
  double loss = t->epoch > 0 && t->epoch <= t->epochs
                    ? (double)t->curve_loss[t->epoch - 1]
                    : t->loss_count ? t->loss_sum / (double)t->loss_count : t->last_loss;
  ens_progress_step(&j->progress, t->step - u->step_base,
                    t->epoch < t->epochs ? t->epoch + 1 : t->epochs,
                    t->epochs, loss,
                    el > 0 ? (double)(t->step - u->step_run) * t->batch / el : 0.0);
  ens_lines_poll(&j->lines);
  int stop = (j->o->stop && *j->o->stop) || ens_fault_heard(&j->fault);
  ens_place_serve(&j->place, stop); /* rank 0: hand out units to ranks that ask */
  /* A halving rung ends with the last step of epoch `target`: the loop
   * stops after that epoch's bookkeeping, like a stop by a signal. */
  if (!stop && u->target < t->epochs && t->epoch + 1 >= u->target &&
      t->batch_in_epoch >= t->sched.steps_per_epoch) {
    u->rung_hit = 1;
    return 1;
  }
  return stop;
}

/* Rank 0 between its units and after them (queue placement): progress
 * lines and the other ranks' log lines go on, and a signal or a failure
 * elsewhere stops the handing out. */
static int idle_poll(void *ctx) {
  ens_job *j = ctx;
  ens_progress *p = &j->progress;
  ens_progress_step(p, 0, p->self.epoch, p->self.epochs, p->self.loss, 0.0);
  ens_lines_poll(&j->lines);
  return (j->o->stop && *j->o->stop) || ens_fault_heard(&j->fault);
}

/* ---- one unit ------------------------------------------------------------ */

/* A member whose loss became NaN or infinite: recorded as failed with the
 * epoch, step and reason; in snapshot mode every member the chain had not
 * yet emitted fails with it. */
static int fail_unit(ens_job *j, ens_trainer *t, int unit, int first_k, int S) {
  int emitted = j->c->mode == ENS_MODE_SNAPSHOT ? t->cycles_done : 0;
  if (emitted > S)
    emitted = S;
  for (int i = emitted; i < S; i++) {
    ens_member_meta meta = member_meta(j, t, first_k + i, now() - j->unit_t0);
    meta.status = ENS_MEMBER_FAILED;
    meta.fail_epoch = t->epoch + 1;
    meta.fail_step = t->step;
    meta.nparams = meta.nstats = 0;
    snprintf(meta.fail_reason, sizeof(meta.fail_reason),
             "training %s became NaN or infinite at epoch %d, step %ld (lr %.3g)",
             t->fail_grad ? "gradient norm" : "loss", t->epoch + 1, t->step,
             ens_schedule_lr(&t->sched, t->step));
    ens_lines_printf(&j->lines, "[member %d] FAILED: %s; the ensemble goes on without it", meta.k,
                     meta.fail_reason);
    int ret = emit(j, t, &meta);
    if (ret)
      return ret;
  }
  return ens_job_checkpoint_done(j, t, unit);
}

/* Trains unit `unit` to epoch `target` ([train] epochs: to the end; a
 * halving rung: checkpointed there, and its validation nll reported). */
static int train_unit(ens_job *j, int unit, int target, char *err, size_t errlen) {
  const ens_config *c = j->c;
  int S = c->mode == ENS_MODE_SNAPSHOT ? c->snapshots : 1;
  int first_k = unit * S;
  uint32_t rng_key = (uint32_t)unit;
  j->init_key = j->shared_init ? 0 : rng_key;
  /* The unit's own network: a search member has its own hyperparameters
   * and architecture. */
  ens_member_config(j, first_k, &j->unit_cfg);
  const ens_config *mc = &j->unit_cfg;
  ens_arch arch;
  ens_member_arch(j, mc, &arch);
  ens_trainer *t = &j->trainer;
  ens_trainer_free(t);
  int ret = ens_trainer_create(t, &arch, j->trunk.layers, mc, j->data.n_train);
  if (ret) {
    snprintf(err, errlen, "member %d: cannot create its network: %s", first_k,
             ens_strerror(ret));
    return ret;
  }
  ens_train_set set = {.x = j->data.ftrain, .y = j->data.sets.train.y, .t = j->data.train_t,
                       .T = j->task.regress ? j->task.T : 0, .n = j->data.n_train, .d = j->data.fd,
                       .aug = j->aug.c > 0 ? &j->aug : NULL};
  if (c->mode == ENS_MODE_BOOTSTRAP) {
    ens_job_bootstrap_rows(j->rows, j->data.n_train, c->seed, (uint32_t)unit);
    set.rows = j->rows;
    set.nrows = j->data.n_train; /* a bootstrap draw has n rows too */
  }
  ret = ens_trainer_start(t, mc, j->init_key, rng_key, j->data.n_train);
  if (ret)
    return ret;
  j->eval_of = NULL; /* eval_pred holds no rows of this unit yet */
  unit_ctx u = {.j = j, .unit = unit, .first_k = first_k, .target = target};
  int done = 0;
  j->unit_t0 = now();
  j->last_status = -1;
  ret = ens_job_restore_unit(j, t, unit, first_k, S, &done, err, errlen);
  if (ret == 1) /* a damaged checkpoint: from scratch, as if there were none */
    ret = ens_trainer_start(t, mc, j->init_key, rng_key, j->data.n_train);
  if (ret)
    return ret;
  ens_halving *hv = j->halving;
  if (done) {
    if (hv) /* restored: failed before, or finished the last rung */
      ens_halving_report(hv, unit - j->first, NAN, NAN, 0, 0.0,
                         j->last_status == ENS_MEMBER_DONE ? ENS_RUNG_FINISHED : ENS_RUNG_FAILED,
                         j->rank);
    return 0;
  }
  const int at_rung = target < t->epochs;
  if (at_rung && (t->epoch > target || (t->epoch == target && t->batch_in_epoch > 0))) {
    snprintf(err, errlen,
             "member %d: its checkpoint is at epoch %d, past rung %d of successive halving "
             "(epoch %d), and halving.h5 in %s does not hold the ranking that let it go on; "
             "run with --restart",
             first_k, t->epoch + (t->batch_in_epoch > 0), hv ? hv->round : -1, target,
             j->ckpt.dir);
    return ENS_EFORMAT;
  }
  u.t_epoch = u.t_run = now();
  u.step_epoch = u.step_run = t->step;
  u.step_base = j->rung_restore ? t->step : 0;
  ens_train_hooks h = {.ctx = &u, .on_epoch = on_epoch, .on_cycle_end = on_cycle_end,
                       .should_stop = should_stop};
  if (at_rung && t->epoch == target) /* resumed at the rung itself */
    ret = ENS_ESTOPPED, u.rung_hit = 1;
  else
    ret = ens_trainer_run(t, &set, &h);
  ens_progress_unit_end(&j->progress, t->step - u.step_base);
  if (ret == ENS_ESTOPPED && u.rung_hit && hv) {
    /* The rung: keep the state for the next rung and report the nll. */
    ret = ens_job_checkpoint_stop(j, t, unit);
    if (ret == ENS_ESTOPPED)
      ret = 0;
    if (!ret) {
      double nll = NAN;
      ens_job_eval(j, t, &nll);
      ens_halving_report(hv, unit - j->first, nll, t->last_loss, t->step, now() - j->unit_t0,
                         ENS_RUNG_ALIVE, j->rank);
    }
  } else if (ret == ENS_ESTOPPED)
    ret = ens_job_checkpoint_stop(j, t, unit);
  else if (ret == ENS_ENUMERIC) {
    ret = fail_unit(j, t, unit, first_k, S);
    if (hv)
      ens_halving_report(hv, unit - j->first, NAN, NAN, t->step, now() - j->unit_t0,
                         ENS_RUNG_FAILED, j->rank);
  } else if (!ret) {
    if (c->mode != ENS_MODE_SNAPSHOT)
      ret = emit_member(j, t, first_k, now() - j->unit_t0);
    if (!ret)
      ret = ens_job_checkpoint_done(j, t, unit);
    if (!ret && hv)
      ens_halving_report(hv, unit - j->first, NAN, t->last_loss, t->step, now() - j->unit_t0,
                         ENS_RUNG_FINISHED, j->rank);
  }
  /* Failures inside the loop's hooks (a checkpoint or result write) left
   * their words in j->ckpt.err. */
  if (ret && ret != ENS_ESTOPPED && !err[0])
    snprintf(err, errlen, "%s", j->ckpt.err[0] ? j->ckpt.err : ens_strerror(ret));
  return ret;
}

/* ---- the job ------------------------------------------------------------- */

/* One placement round: this rank trains the units the placement gives it
 * (each to epoch `target`), appending them to units[*mine]; rank 0 then
 * answers the others until they are all done. */
static int train_round(ens_job *j, int target, int *units, int *mine, char *err,
                       size_t errlen) {
  const ens_job_opts *o = j->o;
  int ret = 0;
  while (!ret) {
    /* The placement says which unit is next here (see place.c). */
    int stop = (o->stop && *o->stop) || ens_fault_heard(&j->fault);
    int u = ens_place_next(&j->place, stop);
    if (u < 0) {
      if (stop)
        ret = ENS_ESTOPPED; /* stopped between units: the rest start fresh */
      break;
    }
    units[(*mine)++] = u;
    ens_place_started(&j->place, u);
    ret = train_unit(j, u, target, err, errlen);
    ens_place_ended(&j->place, u);
    if (ret && ret != ENS_ESTOPPED)
      ens_fault_raise(&j->fault, ret); /* the others stop after their step */
  }
  /* rank 0 answers the others until they are all done */
  ens_place_finish(&j->place, ret != 0 || (o->stop && *o->stop), idle_poll, j);
  return ret;
}

/* Successive halving: one round per rung (halving.c ranks the units
 * between them); the stopped members are stored by rank 0 at the end. */
static int train_rungs(ens_job *j, ens_halving *hv, int *units, int *mine, char *err,
                       size_t errlen) {
  int ret = 0;
  for (int r = ens_halving_first_round(hv); r < hv->R && !ret; r++) {
    ens_place_round(&j->place, hv->active);
    j->rung_restore = r > 0;
    ret = train_round(j, hv->rungs[r], units, mine, err, errlen);
    /* Every rank ends the round here; a stop or failure anywhere ends the
     * rungs everywhere (the fault notices told the others to stop). */
    ret = ens_agree(j->comm, ret, err, errlen);
    if (!ret)
      ret = ens_halving_end_round(hv, j, err, errlen);
    /* A stop between rungs: every rank stops here, before any unit of the
     * next rung starts (its ranking is checkpointed: --resume starts there). */
    if (!ret && r + 1 < hv->R) {
      int stop = (j->o->stop && *j->o->stop) || ens_fault_heard(&j->fault);
      ret = ens_agree(j->comm, stop ? ENS_ESTOPPED : 0, err, errlen);
      if (ret && j->rank == 0) {
        printf("successive halving: stopped between rung %d (epoch %d, ranked) and rung %d\n", r,
               hv->rungs[r], r + 1);
        fflush(stdout);
      }
    }
  }
  j->rung_restore = 0;
  if (ret == ENS_ESTOPPED)
    err[0] = '\0'; /* the caller words the stop (and where the checkpoints are) */
  /* Rank 0 keeps the stopped members (no weights or rows to fetch). */
  for (int u = 0; !ret && j->rank == 0 && u < hv->n; u++) {
    ens_member_meta meta;
    if (!ens_halving_stopped_meta(hv, j, u, &meta))
      continue;
    ret = ens_job_store_member(j, &meta, NULL);
    if (ret && !err[0])
      snprintf(err, errlen, "%s", j->ckpt.err[0] ? j->ckpt.err : ens_strerror(ret));
    ens_progress_member(&j->progress); /* it ended: counted like a finished one */
  }
  return ret;
}

/* Hyper-deep: the search's members as one round, the selection among
 * them, then their best configurations with new seeds as a second round
 * (hyperdeep.c). A stop in either round resumes from the checkpoints: the
 * first round's members restore as finished and the selection is made
 * again from them (the same choice: it depends on their rows only). */
static int train_hyperdeep(ens_job *j, ens_hyperdeep *h, int *units, int *mine, char *err,
                           size_t errlen) {
  for (int u = 0; u < h->N; u++)
    h->active[u] = u < h->M;
  ens_place_round(&j->place, h->active);
  int ret = train_round(j, j->c->epochs, units, mine, err, errlen);
  ret = ens_agree(j->comm, ret, err, errlen);
  if (!ret)
    ret = ens_hyperdeep_choose(j, h, err, errlen);
  if (!ret) {
    for (int u = 0; u < h->N; u++)
      h->active[u] = u >= h->M;
    ens_place_round(&j->place, h->active);
    ret = train_round(j, j->c->epochs, units, mine, err, errlen);
  }
  if (ret == ENS_ESTOPPED)
    err[0] = '\0'; /* the caller words the stop (and where the checkpoints are) */
  return ret;
}

int ens_train_job(const ens_config *c, const ens_job_opts *o, MPI_Comm comm, char *err,
                  size_t errlen) {
  ens_job job;
  ens_job *j = &job;
  err[0] = '\0';
  /* Threads first: setup may already compute (trunk pretraining, features). */
  openblas_set_num_threads(c->threads);
  int ret = o->guard ? ens_guard_inputs(c, err, errlen) : 0;
  if (ret)
    return ret;
  ret = ens_job_setup(j, c, o, comm, ENS_SETUP_TRAIN, err, errlen);
  if (ret || j->complete) {
    if (!ret && j->rank == 0) {
      printf("%s: result complete, nothing to do (it was made from this configuration and "
             "data; --force trains again and overwrites it)\n",
             c->output_path);
      fflush(stdout);
    }
    ens_job_free(j);
    return ret;
  }
  ens_job_warn_data(j); /* rank 0: task and batch warnings (tabular.c) */
  double t0 = now();
  int u_first = ens_job_unit_of(j, j->first), u_last = ens_job_unit_of(j, j->last - 1) + 1;
  int64_t steps_total = 0;
  /* With successive halving a member trains, on average, the job's
   * member-epochs (all rungs, no failure) divided by the members. */
  double epochs_each = c->epochs;
  if (c->mode == ENS_MODE_SEARCH && c->search_halving && u_last > u_first) {
    int rungs[ENS_HALVING_MAX_RUNGS], R = ens_halving_rungs(c, rungs), n = u_last - u_first;
    double me = 0;
    for (int r = 0, prev = 0; r < R; prev = rungs[r], r++) {
      me += (double)n * (rungs[r] - prev);
      n = ens_halving_keep(n, c->search_halving_factor);
    }
    epochs_each = me / (u_last - u_first);
  }
  for (int u = u_first; u < u_last; u++) {
    ens_config mc;
    ens_member_config(j, u * (c->mode == ENS_MODE_SNAPSHOT ? c->snapshots : 1), &mc);
    steps_total += (int64_t)(epochs_each * ens_steps_per_epoch(j->data.n_train, mc.batch));
  }
  ens_halving hv;
  memset(&hv, 0, sizeof(hv));
  /* Units trained by this rank: with halving a unit may come back each rung. */
  const int rounds = c->mode == ENS_MODE_SEARCH && c->search_halving ? ENS_HALVING_MAX_RUNGS : 1;
  int *units = malloc((size_t)(u_last - u_first + 1) * (size_t)rounds * sizeof(int));
  double *cost = malloc((size_t)(u_last - u_first + 1) * sizeof(double));
  for (int u = u_first; cost && u < u_last; u++)
    cost[u - u_first] = unit_cost(j, u);
  if (!units || !cost ||
      ens_place_init(&j->place, comm, (ens_place_policy)c->placement, u_first, u_last - u_first,
                     cost) ||
      ens_progress_init(&j->progress, comm, steps_total, j->last - j->first,
                        c->progress_interval) ||
      ens_fault_init(&j->fault, comm)) {
    snprintf(err, errlen, "out of memory setting up the training loop");
    ret = ENS_ENOMEM;
  }
  ens_lines_init(&j->lines, comm, &j->progress);
  free(cost);
  /* Every rank reaches the agreement below, even one that failed here. */
  ret = ens_agree(comm, ret, err, errlen);
  j->progress.quiet = c->verbose == 0; /* quiet: errors, warnings and the summary only */
  const int started = !ret;
  if (started && rounds > 1) {
    char *ident = ens_job_identity_text(c);
    ret = ens_halving_init(&hv, j, ident, err, errlen);
    free(ident);
    if (!ret)
      j->halving = &hv;
  }
  int mine = 0;
  if (started && !ret)
    ret = j->halving     ? train_rungs(j, &hv, units, &mine, err, errlen)
          : j->hyperdeep ? train_hyperdeep(j, j->hyperdeep, units, &mine, err, errlen)
                         : train_round(j, c->epochs, units, &mine, err, errlen);
  if (!mine && !ret && c->verbose)
    ens_lines_printf(&j->lines, "rank %d: idle (%d member%s on %d ranks)", j->rank,
                     j->last - j->first, j->last - j->first == 1 ? "" : "s", j->size);
  /* Every rank's lines are printed before the job's last words. */
  ens_lines_finish(&j->lines);
  if (started) {
    ens_progress_finish(&j->progress);
    ens_progress_free(&j->progress);
    ens_fault_finish(&j->fault);
  } else {
    free(j->progress.all);
  }
  /* Agree on the outcome: a signal or failure on any rank stops everyone
   * before the collection phase, with that rank's message. */
  if (ret == ENS_ESTOPPED && !err[0])
    snprintf(err, errlen,
             "stopped by a signal; checkpoints are in %s: run the same command "
             "with --resume to continue",
             j->ckpt.dir);
  if (started && ens_place_gather(&j->place) && !ret) {
    snprintf(err, errlen, "gathering the placement record: %s", ens_strerror(ENS_EMPI));
    ret = ENS_EMPI;
  }
  if (j->halving && j->rank == 0) /* stopped members are kept by rank 0 */
    for (int u = 0; u < hv.n; u++)
      if (hv.state[u] == ENS_RUNG_STOPPED && j->place.owner)
        j->place.owner[u] = 0;
  ret = ens_agree(comm, ret, err, errlen);
  if (!ret) {
    ret = ens_job_collect(j, now() - t0, err, errlen); /* agreed inside */
    /* Too few members finished: the run is deterministic, so its
     * checkpoints would only reproduce the failure; remove them too. */
    if ((!ret || ret == ENS_ENUMERIC) && j->halving)
      ens_halving_cleanup(&hv, j);
    if (!ret || ret == ENS_ENUMERIC)
      ens_job_checkpoint_cleanup(j, units, mine);
  } else if (ret == ENS_ENOSPACE || ret == ENS_EWRITE) {
    size_t used = strlen(err);
    snprintf(err + used, errlen - used,
             "; the checkpoints written before are kept in %s: after "
             "fixing this, run the same command with --resume",
             j->ckpt.dir);
  }
  ens_fault_free(&j->fault);
  ens_lines_free(&j->lines);
  ens_place_free(&j->place);
  j->halving = NULL;
  ens_halving_free(&hv);
  free(units);
  ens_job_free(j);
  return ret;
}
