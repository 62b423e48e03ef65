/* Successive halving: the rung table, its decisions and records (see
 * halving.h). Every rank holds the same table: the reports of a round are
 * combined with one MPI_MAX reduction (each value comes from the one rank
 * that trained the unit, the others send -inf: exact), and every rank
 * makes the same ranking from it. */
#include "ensemble/halving.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ens/error.h"
#include "ensemble/job.h"
#include "io/h5util.h"
#include "io/storage.h"

static void halving_path(const ens_job *j, char *buf, size_t len) {
  snprintf(buf, len, "%s/halving.h5", j->ckpt.dir);
}

void ens_halving_free(ens_halving *h) {
  free(h->nll);
  free(h->loss);
  free(h->steps);
  free(h->seconds);
  free(h->rank);
  free(h->state);
  free(h->last_rung);
  free(h->place);
  free(h->entered);
  free(h->active);
  free(h->rep);
  free(h->ident);
  memset(h, 0, sizeof(*h));
}

static void clear_reports(ens_halving *h) {
  for (size_t i = 0; i < (size_t)h->n * ENS_RUNG_REP_N; i++)
    h->rep[i] = -INFINITY;
}

/* Rank 0: reads halving.h5 into the table; 0 when restored, else a reason
 * in why. */
static int read_table(ens_halving *h, const char *path, char *why, size_t len) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    snprintf(why, len, "is not an HDF5 file (or is truncated)");
    return 1;
  }
  char *saved = NULL;
  const char *ident = h->ident;
  int64_t R = 0, n = 0, decided = 0;
  int bad = ens_h5_get_attr_str(f, "/", "config", &saved);
  bad |= ens_h5_get_attr_i64(f, "/", "rungs", &R);
  bad |= ens_h5_get_attr_i64(f, "/", "members", &n);
  bad |= ens_h5_get_attr_i64(f, "/", "decided", &decided);
  if (bad || !ident) {
    snprintf(why, len, "lacks its attributes");
  } else if (strcmp(saved, ident) != 0) {
    snprintf(why, len, "was written by another configuration");
    bad = 1;
  } else if (R != h->R || n != h->n || decided < 0 || decided >= h->R) {
    snprintf(why, len, "has %lld rungs of %lld members (this job: %d of %d)", (long long)R,
             (long long)n, h->R, h->n);
    bad = 1;
  }
  size_t nr = (size_t)h->n * h->R;
  if (!bad) {
    bad |= ens_h5_read(f, "nll", H5T_NATIVE_DOUBLE, h->nll, nr);
    bad |= ens_h5_read(f, "loss", H5T_NATIVE_DOUBLE, h->loss, nr);
    bad |= ens_h5_read(f, "steps", H5T_NATIVE_DOUBLE, h->steps, nr);
    bad |= ens_h5_read(f, "seconds", H5T_NATIVE_DOUBLE, h->seconds, nr);
    bad |= ens_h5_read(f, "rank", H5T_NATIVE_INT32, h->rank, nr);
    bad |= ens_h5_read(f, "state", H5T_NATIVE_INT32, h->state, (size_t)h->n);
    bad |= ens_h5_read(f, "last_rung", H5T_NATIVE_INT32, h->last_rung, (size_t)h->n);
    bad |= ens_h5_read(f, "place", H5T_NATIVE_INT32, h->place, (size_t)h->n);
    bad |= ens_h5_read(f, "entered", H5T_NATIVE_INT32, h->entered, (size_t)h->R);
    if (bad)
      snprintf(why, len, "lacks a dataset of the table (or it has the wrong size)");
    for (int u = 0; !bad && u < h->n; u++)
      if (h->state[u] < ENS_RUNG_ALIVE || h->state[u] > ENS_RUNG_FAILED || h->last_rung[u] < 0 ||
          h->last_rung[u] >= h->R) {
        snprintf(why, len, "holds a bad state for member %d", u);
        bad = 1;
      }
  }
  h->decided = bad ? 0 : (int)decided;
  free(saved);
  H5Fclose(f);
  return bad ? 1 : 0;
}

static void reset_table(ens_halving *h) {
  size_t nr = (size_t)h->n * h->R;
  for (size_t i = 0; i < nr; i++) {
    h->nll[i] = h->loss[i] = h->steps[i] = h->seconds[i] = NAN;
    h->rank[i] = -1;
  }
  for (int u = 0; u < h->n; u++) {
    h->state[u] = ENS_RUNG_ALIVE;
    h->last_rung[u] = 0;
    h->place[u] = 0;
  }
  for (int r = 0; r < h->R; r++)
    h->entered[r] = 0;
  h->decided = 0;
}

/* The units of round h->decided: those still alive, and (after a resume)
 * those that failed in an earlier run's round, whose failed member the
 * round's taker restores from its checkpoint and keeps for collection. */
static void set_active(ens_halving *h, int resumed) {
  for (int u = 0; u < h->n; u++)
    h->active[u] = h->state[u] == ENS_RUNG_ALIVE || (resumed && h->state[u] == ENS_RUNG_FAILED);
}

int ens_halving_init(ens_halving *h, ens_job *j, const char *ident, char *err, size_t errlen) {
  memset(h, 0, sizeof(*h));
  h->ident = ident ? strdup(ident) : NULL;
  const ens_config *c = j->c;
  h->R = ens_halving_rungs(c, h->rungs);
  h->factor = c->search_halving_factor;
  h->n = j->last - j->first;
  size_t n = (size_t)h->n + 1, nr = n * (size_t)h->R;
  h->nll = malloc(nr * sizeof(double));
  h->loss = malloc(nr * sizeof(double));
  h->steps = malloc(nr * sizeof(double));
  h->seconds = malloc(nr * sizeof(double));
  h->rank = malloc(nr * sizeof(int32_t));
  h->state = malloc(n * sizeof(int32_t));
  h->last_rung = malloc(n * sizeof(int32_t));
  h->place = malloc(n * sizeof(int32_t));
  h->entered = malloc((size_t)h->R * sizeof(int32_t));
  h->active = malloc(n);
  h->rep = malloc(n * ENS_RUNG_REP_N * sizeof(double));
  int ret = 0;
  if (!h->nll || !h->loss || !h->steps || !h->seconds || !h->rank || !h->state ||
      !h->last_rung || !h->place || !h->entered || !h->active || !h->rep || !h->ident) {
    snprintf(err, errlen, "out of memory for the successive-halving table");
    ret = ENS_ENOMEM;
  } else if (j->data.n_val <= 0) {
    snprintf(err, errlen,
             "[search] halving = true: members are ranked on validation rows, and this job has "
             "none (set [data] val_fraction, or give the input a /val split)");
    ret = ENS_ECONFIG;
  }
  ret = ens_agree(j->comm, ret, err, errlen);
  if (ret) {
    ens_halving_free(h);
    return ret;
  }
  reset_table(h);
  clear_reports(h);
  if (j->o->resume && j->rank == 0) {
    char path[ENS_PATH_MAX + 64], why[256] = "";
    halving_path(j, path, sizeof(path));
    if (access(path, F_OK) == 0) {
      if (read_table(h, path, why, sizeof(why)) != 0) {
        fprintf(stderr,
                "ens: warning: successive-halving checkpoint %s %s: ignored (members whose "
                "checkpoints lie beyond the first rung cannot go back and will fail)\n",
                path, why);
        fflush(stderr);
        reset_table(h);
      } else {
        h->restored = 1;
      }
    }
  }
  /* Every rank gets rank 0's table. */
  size_t nr2 = (size_t)h->n * h->R;
  int hdr[2] = {h->decided, h->restored};
  int mret = ens_comm_bcast(hdr, 2, MPI_INT, 0, j->comm);
  h->decided = hdr[0];
  h->restored = hdr[1];
  mret |= ens_comm_bcast(h->nll, (int)nr2, MPI_DOUBLE, 0, j->comm);
  mret |= ens_comm_bcast(h->loss, (int)nr2, MPI_DOUBLE, 0, j->comm);
  mret |= ens_comm_bcast(h->steps, (int)nr2, MPI_DOUBLE, 0, j->comm);
  mret |= ens_comm_bcast(h->seconds, (int)nr2, MPI_DOUBLE, 0, j->comm);
  mret |= ens_comm_bcast(h->rank, (int)nr2, MPI_INT32_T, 0, j->comm);
  mret |= ens_comm_bcast(h->state, h->n, MPI_INT32_T, 0, j->comm);
  mret |= ens_comm_bcast(h->last_rung, h->n, MPI_INT32_T, 0, j->comm);
  mret |= ens_comm_bcast(h->place, h->n, MPI_INT32_T, 0, j->comm);
  mret |= ens_comm_bcast(h->entered, h->R, MPI_INT32_T, 0, j->comm);
  if (mret != MPI_SUCCESS) {
    ens_halving_free(h);
    snprintf(err, errlen, "broadcasting the successive-halving table: %s", ens_strerror(ENS_EMPI));
    return ENS_EMPI;
  }
  h->round = h->decided;
  set_active(h, h->restored);
  if (j->rank == 0 && h->restored && c->verbose) {
    printf("successive halving: rungs 0..%d were ranked before the stop; training rung %d "
           "(epoch %d)\n",
           h->decided - 1, h->decided, h->rungs[h->decided]);
    fflush(stdout);
  }
  return 0;
}

void ens_halving_report(ens_halving *h, int u, double nll, double loss, int64_t steps,
                        double seconds, int state, int rank) {
  if (u < 0 || u >= h->n)
    return;
  double *r = h->rep + (size_t)u * ENS_RUNG_REP_N;
  /* NaN does not survive MPI_MAX: a diverged nll ranks last as +inf. */
  r[ENS_RUNG_REP_NLL] = isnan(nll) ? INFINITY : nll;
  r[ENS_RUNG_REP_LOSS] = isnan(loss) ? INFINITY : loss;
  r[ENS_RUNG_REP_STEPS] = (double)steps;
  r[ENS_RUNG_REP_SECONDS] = seconds;
  r[ENS_RUNG_REP_STATE] = state;
  r[ENS_RUNG_REP_RANK] = rank;
}

/* Ranking order: lower nll first, then the lower member index. */
static const double *sort_nll;
static int by_nll(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  double p = sort_nll[x], q = sort_nll[y];
  if (p != q)
    return p < q ? -1 : 1;
  return x < y ? -1 : x > y;
}

/* Rank 0: halving.h5 with the table after `decided` rungs. */
static int write_table(const ens_halving *h, ens_job *j, char *err, size_t errlen) {
  char path[ENS_PATH_MAX + 64], tmp[ENS_PATH_MAX + 80];
  halving_path(j, path, sizeof(path));
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  hid_t f = ens_storage_h5_memory(path);
  if (f < 0) {
    snprintf(err, errlen, "cannot write checkpoint %s: %s", path, ens_strerror(ENS_EHDF5));
    return ENS_EHDF5;
  }
  const char *ident = h->ident;
  hsize_t d2[2] = {(hsize_t)h->n, (hsize_t)h->R}, dn = (hsize_t)h->n, dr = (hsize_t)h->R;
  int ret = ident ? 0 : ENS_ENOMEM;
  ret |= ens_h5_attr_str(f, "/", "config", ident ? ident : "");
  ret |= ens_h5_attr_i64(f, "/", "rungs", h->R);
  ret |= ens_h5_attr_i64(f, "/", "members", h->n);
  ret |= ens_h5_attr_i64(f, "/", "decided", h->decided);
  ret |= ens_h5_write(f, "nll", H5T_NATIVE_DOUBLE, 2, d2, h->nll, 0);
  ret |= ens_h5_write(f, "loss", H5T_NATIVE_DOUBLE, 2, d2, h->loss, 0);
  ret |= ens_h5_write(f, "steps", H5T_NATIVE_DOUBLE, 2, d2, h->steps, 0);
  ret |= ens_h5_write(f, "seconds", H5T_NATIVE_DOUBLE, 2, d2, h->seconds, 0);
  ret |= ens_h5_write(f, "rank", H5T_NATIVE_INT32, 2, d2, h->rank, 0);
  ret |= ens_h5_write(f, "state", H5T_NATIVE_INT32, 1, &dn, h->state, 0);
  ret |= ens_h5_write(f, "last_rung", H5T_NATIVE_INT32, 1, &dn, h->last_rung, 0);
  ret |= ens_h5_write(f, "place", H5T_NATIVE_INT32, 1, &dn, h->place, 0);
  ret |= ens_h5_write(f, "entered", H5T_NATIVE_INT32, 1, &dr, h->entered, 0);
  if (ret) {
    H5Fclose(f);
    snprintf(err, errlen, "cannot build checkpoint %s in memory: %s", path, ens_strerror(ret));
    return ret;
  }
  return ens_storage_h5_publish(f, path, tmp, "cannot write checkpoint", err, errlen);
}

int ens_halving_end_round(ens_halving *h, ens_job *j, char *err, size_t errlen) {
  const int r = h->round, n = h->n;
  double *all = malloc(((size_t)n * ENS_RUNG_REP_N + 1) * sizeof(double));
  int *order = malloc(((size_t)n + 1) * sizeof(int));
  int ret = all && order ? 0 : ENS_ENOMEM;
  ret = ens_agree(j->comm, ret, err, errlen);
  if (ret) {
    free(all);
    free(order);
    return ret;
  }
  if (ens_comm_allreduce(h->rep, all, n * ENS_RUNG_REP_N, MPI_DOUBLE, MPI_MAX, j->comm) !=
      MPI_SUCCESS) {
    snprintf(err, errlen, "gathering rung %d's results: %s", r, ens_strerror(ENS_EMPI));
    ret = ENS_EMPI;
  }
  int m = 0, entered = 0;
  for (int u = 0; !ret && u < n; u++) {
    if (!h->active[u])
      continue;
    const double *x = all + (size_t)u * ENS_RUNG_REP_N;
    int was_failed = h->state[u] == ENS_RUNG_FAILED; /* restored only to be kept */
    if (x[ENS_RUNG_REP_STATE] == -INFINITY) { /* every active unit reports */
      snprintf(err, errlen, "rung %d: no rank reported member %d", r, j->first + u);
      ret = ENS_EMPI;
      break;
    }
    if (was_failed)
      continue;
    entered++;
    size_t at = (size_t)u * h->R + r;
    int st = (int)x[ENS_RUNG_REP_STATE];
    h->nll[at] = x[ENS_RUNG_REP_NLL] == INFINITY ? NAN : x[ENS_RUNG_REP_NLL];
    h->loss[at] = x[ENS_RUNG_REP_LOSS] == INFINITY ? NAN : x[ENS_RUNG_REP_LOSS];
    h->steps[at] = x[ENS_RUNG_REP_STEPS];
    h->seconds[at] = x[ENS_RUNG_REP_SECONDS];
    h->rank[at] = (int32_t)x[ENS_RUNG_REP_RANK];
    h->last_rung[u] = r;
    if (st == ENS_RUNG_FAILED)
      h->state[u] = ENS_RUNG_FAILED;
    else if (r == h->R - 1)
      h->state[u] = ENS_RUNG_FINISHED;
    else
      order[m++] = u;
  }
  if (!ret) {
    h->entered[r] = entered;
    if (r < h->R - 1) {
      /* The ranking: the best floor(entered / factor) go on. */
      double *col = malloc(((size_t)n + 1) * sizeof(double));
      if (!col) {
        ret = ENS_ENOMEM;
      } else {
        for (int u = 0; u < n; u++)
          col[u] = isnan(h->nll[(size_t)u * h->R + r]) ? INFINITY : h->nll[(size_t)u * h->R + r];
        sort_nll = col;
        qsort(order, (size_t)m, sizeof(int), by_nll);
        sort_nll = NULL;
        free(col);
        int keep = ens_halving_keep(entered, h->factor);
        for (int i = 0; i < m; i++) {
          int u = order[i];
          h->place[u] = i + 1;
          if (i >= keep)
            h->state[u] = ENS_RUNG_STOPPED;
        }
      }
      h->decided = r + 1;
      if (!ret && j->rank == 0 && j->c->verbose) {
        printf("successive halving: rung %d (epoch %d): %d member%s ranked on validation nll, "
               "%d go on to epoch %d:",
               r, h->rungs[r], m, m == 1 ? "" : "s", m < ens_halving_keep(entered, h->factor)
                                                          ? m
                                                          : ens_halving_keep(entered, h->factor),
               h->rungs[r + 1]);
        for (int i = 0; i < m && i < ens_halving_keep(entered, h->factor); i++)
          printf(" %d", j->first + order[i]);
        printf("\n");
        fflush(stdout);
      }
      if (!ret && j->rank == 0)
        ret = write_table(h, j, err, errlen);
    }
    h->round = r + 1;
    for (int u = 0; u < n; u++)
      h->active[u] = h->state[u] == ENS_RUNG_ALIVE;
  }
  free(all);
  free(order);
  clear_reports(h);
  return ens_agree(j->comm, ret, err, errlen);
}

int ens_halving_stopped_meta(const ens_halving *h, const ens_job *j, int u,
                             ens_member_meta *meta) {
  if (u < 0 || u >= h->n || h->state[u] != ENS_RUNG_STOPPED)
    return 0;
  int r = h->last_rung[u];
  size_t at = (size_t)u * h->R + r;
  memset(meta, 0, sizeof(*meta));
  meta->k = j->first + u;
  meta->status = ENS_MEMBER_STOPPED;
  meta->epochs = h->rungs[r];
  meta->steps = (int64_t)h->steps[at];
  meta->init_key = j->shared_init ? 0 : (int32_t)(j->first + u);
  meta->rng_key = (int32_t)(j->first + u);
  meta->fail_epoch = h->rungs[r];
  meta->fail_step = (int64_t)h->steps[at];
  meta->final_loss = h->loss[at];
  meta->train_seconds = h->seconds[at];
  snprintf(meta->fail_reason, sizeof(meta->fail_reason),
           "stopped by successive halving at rung %d (epoch %d): validation nll %.4f, "
           "place %d of %d",
           r, h->rungs[r], h->nll[at], h->place[u], h->entered[r]);
  return 1;
}

int ens_halving_write(const ens_halving *h, ens_job *j, const double *val_nll) {
  const int n = h->n, R = h->R;
  double *nll = malloc(((size_t)n * R + 1) * sizeof(double));
  int32_t *rung = malloc(((size_t)n + 1) * sizeof(int32_t));
  int32_t *status = malloc(((size_t)n + 1) * sizeof(int32_t));
  int32_t *epochs = malloc(((size_t)n + 1) * sizeof(int32_t));
  if (!nll || !rung || !status || !epochs) {
    free(nll);
    free(rung);
    free(status);
    free(epochs);
    return ENS_ENOMEM;
  }
  int64_t member_epochs = 0;
  for (int u = 0; u < n; u++) {
    for (int r = 0; r < R; r++)
      nll[(size_t)u * R + r] = h->nll[(size_t)u * R + r];
    /* The last rung's nll is that of the member's stored validation rows. */
    if (h->state[u] == ENS_RUNG_FINISHED)
      nll[(size_t)u * R + R - 1] = val_nll[u];
    rung[u] = h->last_rung[u];
    status[u] = h->state[u] == ENS_RUNG_FINISHED  ? 0
                : h->state[u] == ENS_RUNG_STOPPED ? 1
                                                  : 2;
    epochs[u] = h->state[u] == ENS_RUNG_FAILED ? -1 : h->rungs[h->last_rung[u]];
    member_epochs += h->state[u] == ENS_RUNG_FAILED ? 0 : h->rungs[h->last_rung[u]];
  }
  hid_t f = j->file;
  hsize_t d2[2] = {(hsize_t)n, (hsize_t)R}, dn = (hsize_t)n, dr = (hsize_t)R;
  int ret = ens_h5_group(f, "/search");
  ret |= ens_h5_attr_str(f, "/search", "budget", "successive halving");
  ret |= ens_h5_attr_i64(f, "/search", "halving_factor", h->factor);
  ret |= ens_h5_attr_i64(f, "/search", "halving_min_epochs", h->rungs[0]);
  ret |= ens_h5_attr_i64(f, "/search", "member_epochs", member_epochs);
  ret |= ens_h5_attr_str(
      f, "/search", "schedule",
      j->c->search_halving_schedule == ENS_HALVING_SCHED_RUNGS
          ? "rungs: every member's cosine schedule restarts at each rung and anneals to lr_min "
            "at its end; a member stopped at a rung ended its last cycle there"
          : "whole: every member's learning-rate schedule spans [train] epochs; a member "
            "stopped at a rung stopped early on it");
  ret |= ens_h5_write(f, "/search/rung_epochs", H5T_NATIVE_INT32, 1, &dr, h->rungs, 0);
  ret |= ens_h5_write(f, "/search/rung_members", H5T_NATIVE_INT32, 1, &dr, h->entered, 0);
  ret |= ens_h5_write(f, "/search/rung_nll", H5T_NATIVE_DOUBLE, 2, d2, nll, 0);
  ret |= ens_h5_attr_str(f, "/search/rung_nll", "meaning",
                         "validation nll of member k at the end of rung r (NaN: not reached)");
  ret |= ens_h5_write(f, "/search/member_rung", H5T_NATIVE_INT32, 1, &dn, rung, 0);
  ret |= ens_h5_write(f, "/search/member_status", H5T_NATIVE_INT32, 1, &dn, status, 0);
  ret |= ens_h5_attr_str(f, "/search/member_status", "codes",
                         "0 finished (trained to [train] epochs, combined), 1 stopped at its "
                         "rung (never combined), 2 failed");
  ret |= ens_h5_write(f, "/search/member_epochs", H5T_NATIVE_INT32, 1, &dn, epochs, 0);
  ret |= ens_h5_write(f, "/search/member_place", H5T_NATIVE_INT32, 1, &dn, h->place, 0);
  ret |= ens_h5_attr_str(f, "/search/member_place", "meaning",
                         "1-based place in the ranking of its last ranked rung (0: none)");
  for (int u = 0; u < n; u++) {
    char grp[64];
    snprintf(grp, sizeof(grp), "/members/%d", j->first + u);
    ret |= ens_h5_attr_i64(f, grp, "rung", rung[u]);
  }
  /* Where each rung trained: placement, outside the determinism contract. */
  ret |= ens_h5_group(f, "/ranks");
  ret |= ens_h5_write(f, "/ranks/rung_rank", H5T_NATIVE_INT32, 2, d2, h->rank, 0);
  free(nll);
  free(rung);
  free(status);
  free(epochs);
  return ret ? ENS_EHDF5 : 0;
}

void ens_halving_cleanup(const ens_halving *h, ens_job *j) {
  if (j->rank != 0 || !j->ckpt.dir[0])
    return;
  char path[ENS_PATH_MAX + 64];
  for (int u = 0; u < h->n; u++)
    if (h->state[u] == ENS_RUNG_STOPPED) {
      snprintf(path, sizeof(path), "%s/unit_%d.h5", j->ckpt.dir, j->first + u);
      unlink(path);
    }
  halving_path(j, path, sizeof(path));
  unlink(path);
}
