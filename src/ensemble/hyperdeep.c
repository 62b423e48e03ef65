/* Hyper-deep ensembles (Wenzel et al., NeurIPS 2020): the search's
 * members [0, M) train first; the selection ranks their configurations;
 * the best S are trained again with K new seeds each as members [M, N);
 * all are combined with the selection's weight of each configuration
 * spread over its seeds (see hyperdeep.h). */
#include "ensemble/hyperdeep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/comm.h"
#include "ens/error.h"
#include "ens/hyperdeep.h"
#include "ensemble/job.h"
#include "ensemble/result.h"
#include "io/h5util.h"

int ens_hyperdeep_init(ens_hyperdeep *h, const ens_job *j) {
  memset(h, 0, sizeof(*h));
  const ens_config *c = j->c;
  if (!ens_hyperdeep_on(c))
    return 0;
  h->M = c->members;
  h->K = c->search_hyper_deep;
  h->S = c->search_hyper_deep_configs;
  h->N = ens_hyperdeep_total(c);
  h->source = malloc((size_t)h->N * sizeof(int32_t));
  h->counts = calloc((size_t)h->M, sizeof(int32_t));
  h->active = calloc((size_t)h->N, 1);
  if (!h->source || !h->counts || !h->active) {
    ens_hyperdeep_free(h);
    return ENS_ENOMEM;
  }
  for (int k = 0; k < h->N; k++)
    h->source[k] = k < h->M ? k : (k - h->M) / h->K;
  return 0;
}

void ens_hyperdeep_free(ens_hyperdeep *h) {
  free(h->source);
  free(h->counts);
  free(h->active);
  memset(h, 0, sizeof(*h));
}

/* Sums n floats (or ints) of every rank into rank 0, in chunks that fit an int count. */
static int reduce_sum(const void *send, void *recv, size_t n, MPI_Datatype type, size_t size,
                      MPI_Comm comm) {
  const size_t chunk = (size_t)1 << 26;
  for (size_t at = 0; at < n; at += chunk) {
    size_t m = n - at < chunk ? n - at : chunk;
    if (ens_comm_reduce((const char *)send + at * size, recv ? (char *)recv + at * size : NULL,
                        (int)m, type, MPI_SUM, 0, comm))
      return ENS_EMPI;
  }
  return 0;
}

/* This rank's finished search members: their validation rows into rows
 * (M, nv, W) and 1 into done; the rest stay 0. */
static int own_rows(ens_job *j, const ens_hyperdeep *h, float *rows, int32_t *done, char *err,
                    size_t errlen) {
  const int nv = j->data.n_val, W = j->task.W;
  const size_t per = (size_t)nv * W;
  if (j->rank == 0) {
    for (int k = 0; k < h->M; k++) {
      if (ens_place_owner(&j->place, k) != 0)
        continue;
      char grp[64];
      ens_member_meta meta;
      snprintf(grp, sizeof(grp), "/members/%d", k);
      if (ens_job_meta_read(j->file, grp, k, &meta) || meta.status != ENS_MEMBER_DONE)
        continue;
      int ret = ens_job_read_rows(j, "val_", k, rows + (size_t)k * per, nv);
      if (ret) {
        snprintf(err, errlen, "hyper-deep: reading member %d's validation rows back: %s", k,
                 ens_strerror(ret));
        return ret;
      }
      done[k] = 1;
    }
    return 0;
  }
  for (int i = 0; i < j->nheld; i++) {
    ens_member_meta meta = j->held[i];
    if (meta.k >= h->M || meta.status != ENS_MEMBER_DONE)
      continue;
    int ret = ens_job_pack_checkpoint(j, &meta, err, errlen);
    if (ret)
      return ret;
    ens_pack_view v;
    ens_member_view(j, &meta, j->pack, &v);
    memcpy(rows + (size_t)meta.k * per, v.val, per * sizeof(float));
    done[meta.k] = 1;
  }
  return 0;
}

/* Rank 0: the selection on the gathered rows, and the ranking. */
static int rank_configs(ens_job *j, ens_hyperdeep *h, const float *rows, const int32_t *done,
                        int32_t *chosen, char *err, size_t errlen) {
  const ens_config *c = j->c;
  const int M = h->M, nv = j->data.n_val, W = j->task.W;
  const size_t per = (size_t)nv * W;
  const ens_truth val = {j->data.sets.val.y, j->data.sets.val.t, nv};
  uint8_t *usable = calloc((size_t)M, 1);
  double *nll = malloc((size_t)M * sizeof(double));
  int32_t *order = malloc((size_t)M * sizeof(int32_t));
  int ret = 0, nuse = 0;
  if (!usable || !nll || !order) {
    ret = ENS_ENOMEM;
    snprintf(err, errlen, "hyper-deep: out of memory for the selection");
    goto cleanup;
  }
  for (int k = 0; k < M; k++) {
    usable[k] = done[k] > 0;
    nll[k] = INFINITY;
    h->counts[k] = 0;
    if (usable[k]) {
      double m[ENS_TASK_MAX_METRICS];
      ens_task_metrics(&j->task, m, rows + (size_t)k * per, &val);
      nll[k] = isnan(m[1]) ? INFINITY : m[1];
      nuse++;
    }
  }
  memset(&h->info, 0, sizeof(h->info));
  h->info.cv_average = h->info.cv_greedy = h->info.cv_bagged = NAN;
  if (nuse > 0) {
    ens_select_opts so = ens_task_select_opts(c);
    int picks = ens_task_select(&j->task, h->counts, &h->info, rows, usable, &val, M, &so);
    if (picks < 0) {
      ret = picks;
      snprintf(err, errlen, "hyper-deep: the selection among the search's members: %s",
               ens_strerror(ret));
      goto cleanup;
    }
  }
  /* Finished members by picks (more first), validation nll, index; then the rest. */
  int n = 0;
  for (int k = 0; k < M; k++)
    if (usable[k])
      order[n++] = k;
  for (int a = 1; a < n; a++) {
    int32_t x = order[a];
    int b = a - 1;
    while (b >= 0) {
      int32_t y = order[b];
      int after = h->counts[y] < h->counts[x] || (h->counts[y] == h->counts[x] &&
                                                  (nll[y] > nll[x] || (nll[y] == nll[x] && y > x)));
      if (!after)
        break;
      order[b + 1] = y;
      b--;
    }
    order[b + 1] = x;
  }
  /* Fewer finished members than S: the ranked ones again, in turn (none
   * finished: the collection reports the failure; the sources are 0..S-1). */
  for (int s = 0; s < h->S; s++)
    chosen[s] = n > 0 ? order[s % n] : s % M;
cleanup:
  free(usable);
  free(nll);
  free(order);
  return ret;
}

/* Rank 0: /search in the result file. */
static int write_record(ens_job *j, const ens_hyperdeep *h) {
  hid_t f = j->file;
  hsize_t dn = (hsize_t)h->N, dm = (hsize_t)h->M;
  int ret = ens_h5_group(f, "/search");
  ret |= ens_h5_attr_str(f, "/search", "budget", "hyper-deep");
  ret |= ens_h5_attr_i64(f, "/search", "hyper_deep", h->K);
  ret |= ens_h5_attr_i64(f, "/search", "hyper_deep_configs", h->S);
  ret |= ens_h5_attr_i64(f, "/search", "search_members", h->M);
  ret |= ens_h5_write(f, "/search/hyper_deep_source", H5T_NATIVE_INT32, 1, &dn, h->source, 0);
  ret |= ens_h5_attr_str(f, "/search/hyper_deep_source", "meaning",
                         "member k trains the configuration drawn by member source[k]");
  ret |= ens_h5_write(f, "/search/hyper_deep_picks", H5T_NATIVE_INT32, 1, &dm, h->counts, 0);
  ret |= ens_h5_attr_str(f, "/search/hyper_deep_picks", "meaning",
                         "picks of the search's members by the selection that chose the "
                         "configurations to retrain");
  return ret ? ENS_EHDF5 : 0;
}

int ens_hyperdeep_record(ens_job *j, const ens_hyperdeep *h, char *err, size_t errlen) {
  int ret = write_record(j, h);
  if (ret)
    ret = ens_job_result_error(j, ret, err, errlen, "hyper-deep record", -1);
  return ret;
}

int ens_hyperdeep_choose(ens_job *j, ens_hyperdeep *h, char *err, size_t errlen) {
  const int M = h->M, nv = j->data.n_val, W = j->task.W;
  const size_t n = (size_t)M * nv * W;
  float *rows = calloc(n + 1, sizeof(float));
  float *all = j->rank == 0 ? calloc(n + 1, sizeof(float)) : NULL;
  int32_t *done = calloc((size_t)M, sizeof(int32_t));
  int32_t *done_all = calloc((size_t)M, sizeof(int32_t));
  int32_t *chosen = calloc((size_t)h->S, sizeof(int32_t));
  int ret = 0;
  err[0] = '\0';
  if (!rows || (j->rank == 0 && !all) || !done || !done_all || !chosen) {
    ret = ENS_ENOMEM;
    snprintf(err, errlen, "hyper-deep: out of memory gathering the validation rows");
  }
  if (!ret)
    ret = own_rows(j, h, rows, done, err, errlen);
  ret = ens_agree(j->comm, ret, err, errlen);
  if (!ret) {
    /* One rank holds each member, the others add zeros: exact sums. */
    ret = reduce_sum(rows, all, n, MPI_FLOAT, sizeof(float), j->comm);
    ret |= reduce_sum(done, done_all, (size_t)M, MPI_INT32_T, sizeof(int32_t), j->comm);
    if (ret)
      snprintf(err, errlen, "hyper-deep: gathering the validation rows: %s", ens_strerror(ret));
  }
  if (!ret && j->rank == 0) {
    ret = rank_configs(j, h, all, done_all, chosen, err, errlen);
    if (!ret) {
      for (int k = M; k < h->N; k++)
        h->source[k] = chosen[(k - M) / h->K];
      ret = ens_hyperdeep_record(j, h, err, errlen);
    }
  }
  ret = ens_agree(j->comm, ret, err, errlen);
  if (!ret && ens_comm_bcast(chosen, h->S, MPI_INT32_T, 0, j->comm)) {
    ret = ENS_EMPI;
    snprintf(err, errlen, "hyper-deep: sending the chosen configurations: %s", ens_strerror(ret));
  }
  if (!ret) {
    for (int k = M; k < h->N; k++)
      h->source[k] = chosen[(k - M) / h->K];
    h->known = 1;
    if (j->rank == 0 && j->c->verbose) {
      printf("hyper-deep: selection %s; retraining configuration%s",
             ens_select_rule_name(h->info.rule), h->S == 1 ? "" : "s");
      for (int s = 0; s < h->S; s++)
        printf("%s %d (%d pick%s)", s ? "," : "", chosen[s], h->counts[chosen[s]],
               h->counts[chosen[s]] == 1 ? "" : "s");
      printf(" with %d new seed%s each as members %d-%d\n", h->K, h->K == 1 ? "" : "s", M,
             h->N - 1);
      fflush(stdout);
    }
  }
  free(rows);
  free(all);
  free(done);
  free(done_all);
  free(chosen);
  return ret;
}

static long long gcd(long long a, long long b) {
  while (b) {
    long long t = a % b;
    a = b;
    b = t;
  }
  return a;
}

int ens_hyperdeep_spread(const ens_hyperdeep *h, int32_t *counts, const int32_t *base_picks,
                         const uint8_t *done) {
  const int M = h->M, N = h->N;
  int32_t *base = calloc((size_t)M, sizeof(int32_t)), *group = calloc((size_t)M, sizeof(int32_t));
  if (!base || !group) {
    free(base);
    free(group);
    return ENS_ENOMEM;
  }
  for (int k = 0; k < M; k++)
    base[k] = done[k] ? base_picks[k] : 0;
  for (int k = M; k < N; k++)
    if (done[k] && base[h->source[k]] == 0)
      base[h->source[k]] = 1; /* retrained without a pick: combined at one pick */
  for (int k = 0; k < N; k++)
    if (done[k])
      group[h->source[k]]++;
  long long L = 1;
  for (int s = 0; s < M; s++)
    if (base[s] > 0 && group[s] > 0)
      L = L / gcd(L, group[s]) * group[s];
  long long total = 0;
  for (int k = 0; k < N; k++) {
    int s = h->source[k];
    long long w = done[k] && base[s] > 0 && group[s] > 0 ? base[s] * (L / group[s]) : 0;
    counts[k] = w > INT32_MAX ? INT32_MAX : (int32_t)w;
    total += counts[k];
  }
  free(base);
  free(group);
  if (total <= 0)
    return ENS_EINVAL;
  return total > INT32_MAX ? ENS_EINVAL : (int)total;
}

int ens_hyperdeep_select(const ens_hyperdeep *h, const ens_task *task, int32_t *counts,
                         ens_select_info *info, const float *vrows, const uint8_t *done,
                         const ens_truth *val, const ens_select_opts *o) {
  int32_t *base = calloc((size_t)h->M, sizeof(int32_t));
  if (!base)
    return ENS_ENOMEM;
  int ret = ens_task_select(task, base, info, vrows, done, val, h->M, o);
  if (ret > 0)
    ret = ens_hyperdeep_spread(h, counts, base, done);
  if (ret > 0)
    info->picks = ret;
  free(base);
  return ret;
}

void ens_hyperdeep_load(ens_hyperdeep *h, hid_t f) {
  for (int k = h->M; k < h->N; k++)
    h->source[k] = ens_hyperdeep_read_source(f, k);
  if (ens_h5_read(f, "/search/hyper_deep_picks", H5T_NATIVE_INT32, h->counts, (size_t)h->M))
    memset(h->counts, 0, (size_t)h->M * sizeof(int32_t));
  h->known = 1;
}
