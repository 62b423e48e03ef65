/* `ens train`: one ensemble job across MPI ranks. Sets the job up
 * (setup.c), has every rank train its units (sched.c, the scheduler), then
 * collects the members on rank 0 (collect.c), which folds them in member
 * order (combine.c), so the result does not depend on the number of ranks. */
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
#include "ensemble/collect.h"
#include "ensemble/hyperdeep.h"
#include "ensemble/job.h"
#include "ensemble/sched.h"
#include "ensemble/tabular.h"
#include "io/h5util.h"

static double now(void) { return ens_comm_wtime(); }

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

/* ---- the job ------------------------------------------------------------- */

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
  int ret = ens_job_train_round(j, j->c->epochs, units, mine, err, errlen);
  ret = ens_agree(j->comm, ret, err, errlen);
  if (!ret)
    ret = ens_hyperdeep_choose(j, h, err, errlen);
  if (!ret) {
    for (int u = 0; u < h->N; u++)
      h->active[u] = u >= h->M;
    ens_place_round(&j->place, h->active);
    ret = ens_job_train_round(j, j->c->epochs, units, mine, err, errlen);
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
    ret = j->halving     ? ens_job_train_rungs(j, &hv, units, &mine, err, errlen)
          : j->hyperdeep ? train_hyperdeep(j, j->hyperdeep, units, &mine, err, errlen)
                         : ens_job_train_round(j, c->epochs, units, &mine, err, errlen);
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
