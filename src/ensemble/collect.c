/* Collecting members on rank 0 in member order: each member's packed buffer
 * comes from rank 0's own temporary result file, from the rank that trained
 * it, or (merge) from a part file, and is written into the result file.
 * combine.c folds them. Rank 0 holds one member at a time. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ens/error.h"
#include "ensemble/hyperdeep.h"
#include "ensemble/job.h"
#include "ensemble/tags.h"
#include "io/fsutil.h"
#include "io/h5util.h"
#include "io/storage.h"


/* Room for one member's prediction rows (n, W) in their stored parts
 * (ens_task_parts). Returns the number of parts, or 0 without memory. */
static int alloc_parts(const ens_task *k, int n, const char **names, float **parts) {
  const int np = ens_task_parts(k, names);
  size_t cnt = (size_t)n * (size_t)(k->W / np);
  int ok = 1;
  for (int p = 0; p < np; p++)
    ok &= (parts[p] = malloc((cnt ? cnt : 1) * sizeof(float))) != NULL;
  if (ok)
    return np;
  for (int p = 0; p < np; p++)
    free(parts[p]);
  return 0;
}

/* Writes prediction rows (n, W) of one member as row `row` of its stored
 * datasets /members/<base><part> (probs; or mean and var); rows == NULL
 * writes NaN (a failed member). */
static int write_pred_rows(ens_job *j, const char *base, hsize_t row, const float *rows, int n) {
  const char *names[ENS_TASK_MAX_PARTS];
  float *parts[ENS_TASK_MAX_PARTS] = {NULL};
  const int np = alloc_parts(&j->task, n, names, parts);
  if (!np)
    return ENS_ENOMEM;
  ens_task_split_rows(&j->task, rows, n, parts);
  int ret = 0;
  for (int p = 0; p < np && !ret; p++) {
    char path[64];
    snprintf(path, sizeof(path), "/members/%s%s", base, names[p]);
    ret = ens_h5_write_rows(j->file, path, H5T_NATIVE_FLOAT, row, 1, parts[p]);
  }
  for (int p = 0; p < np; p++)
    free(parts[p]);
  return ret;
}

/* Reads prediction rows of one member back into rows (n, W). */
static int read_pred_rows(const ens_job *j, hid_t f, const char *base, hsize_t row, float *rows,
                          int n) {
  const char *names[ENS_TASK_MAX_PARTS];
  float *parts[ENS_TASK_MAX_PARTS] = {NULL};
  const int np = alloc_parts(&j->task, n, names, parts);
  if (!np)
    return ENS_ENOMEM;
  size_t cnt = (size_t)n * (size_t)(j->task.W / np);
  int ret = 0;
  for (int p = 0; p < np && !ret; p++) {
    char path[64];
    snprintf(path, sizeof(path), "/members/%s%s", base, names[p]);
    ret = ens_h5_read_rows(f, path, H5T_NATIVE_FLOAT, row, 1, cnt, parts[p]);
  }
  if (!ret)
    ens_task_join_rows(&j->task, (const float *const *)parts, n, rows);
  for (int p = 0; p < np; p++)
    free(parts[p]);
  return ret;
}

int ens_job_read_rows(const ens_job *j, const char *base, int k, float *rows, int n) {
  return read_pred_rows(j, j->file, base, (hsize_t)(k - j->first), rows, n);
}

/* The hyperparameters member k trained with, as attributes of its group. */
static int write_hyper(ens_job *j, const char *obj, int k) {
  ens_config mc;
  ens_member_config(j, k, &mc);
  char h[256];
  size_t used = 0;
  h[0] = '\0';
  for (int i = 0; i < mc.n_hidden && used < sizeof(h); i++)
    used += (size_t)snprintf(h + used, sizeof(h) - used, "%s%d", i ? "," : "", mc.hidden[i]);
  int ret = 0;
  if (j->hyperdeep) /* the configuration it trains (member index that drew it) */
    ret |= ens_h5_attr_i64(j->file, obj, "source", ens_hyperdeep_source(j->hyperdeep, k));
  ret |= ens_h5_attr_f64(j->file, obj, "lr", mc.lr);
  ret |= ens_h5_attr_f64(j->file, obj, "weight_decay", mc.weight_decay);
  if (mc.optimizer == ENS_OPT_SGD) /* Adam has no momentum (beta1 instead) */
    ret |= ens_h5_attr_f64(j->file, obj, "momentum", mc.momentum);
  else
    ret |= ens_h5_attr_f64(j->file, obj, "beta1", mc.beta1);
  ret |= ens_h5_attr_f64(j->file, obj, "dropout", mc.dropout);
  ret |= ens_h5_attr_i64(j->file, obj, "batch", mc.batch);
  ret |= ens_h5_attr_str(j->file, obj, "hidden", h);
  ret |= ens_h5_attr_str(j->file, obj, "init", ens_init_name(mc.init));
  ret |= ens_h5_attr_i64(j->file, obj, "batchnorm", mc.batchnorm);
  ret |= ens_h5_attr_i64(j->file, obj, "weightnorm", mc.weightnorm);
  ret |= ens_h5_attr_str(j->file, obj, "optimizer", ens_optimizer_name(mc.optimizer));
  if (mc.model_layers[0]) /* a layer list replaces hidden, batchnorm and dropout */
    ret |= ens_h5_attr_str(j->file, obj, "layers", mc.model_layers);
  return ret;
}

/* /members/<k>/grad_norm (ne, ENS_GN_COLS): the per-epoch summary of the
 * member's gradient norms before clipping, and the clipping rule. */
static int write_grad_norm(ens_job *j, const char *grp, hsize_t ne, const float *gn) {
  char path[128];
  const ens_config *c = j->c;
  hsize_t dims[2] = {ne, ENS_GN_COLS};
  float dummy[ENS_GN_COLS] = {0};
  snprintf(path, sizeof(path), "%s/grad_norm", grp);
  int ret = ens_h5_write(j->file, path, H5T_NATIVE_FLOAT, 2, dims, ne ? gn : dummy, 0);
  ret |= ens_h5_attr_str(j->file, path, "columns", ens_gradnorm_columns);
  ret |= ens_h5_attr_str(j->file, path, "clip",
                         c->clip_norm == ENS_AUTO ? "auto" : c->clip_norm > 0 ? "fixed" : "off");
  if (c->clip_norm == ENS_AUTO && c->clip_warmup == 0) {
    ret |= ens_h5_attr_f64(j->file, path, "clip_percentile", c->clip_percentile);
  } else if (c->clip_norm == ENS_AUTO) {
    ret |= ens_h5_attr_i64(j->file, path, "clip_warmup", c->clip_warmup);
    ret |= ens_h5_attr_f64(j->file, path, "clip_warmup_lr", c->clip_warmup_lr);
    ret |= ens_h5_attr_f64(j->file, path, "clip_factor", c->clip_factor);
  }
  return ret;
}

int ens_job_write_member(ens_job *j, const ens_member_meta *meta, const float *packed) {
  ens_h5_take_errno(); /* a failure below is explained by its own errno */
  char grp[64], path[128];
  hid_t f = j->file;
  hsize_t row = (hsize_t)(meta->k - j->first);
  int ret = 0;
  snprintf(grp, sizeof(grp), "/members/%d", meta->k);
  ret |= ens_h5_group(f, grp);
  ret |= ens_job_meta_write(f, grp, meta);
  /* The member's own key: its random streams are keyed by (ensemble seed,
   * this key) (init by init_key, which is 0 for all with shared init). */
  ret |= ens_h5_attr_i64(f, grp, "seed", meta->rng_key);
  ret |= ens_h5_attr_i64(f, grp, "ensemble_seed", (int64_t)j->c->seed);
  ret |= write_hyper(j, grp, meta->k);
  if (meta->status != ENS_MEMBER_DONE) {
    ret |= write_pred_rows(j, "", row, NULL, j->data.n_test);
    if (j->data.n_val)
      ret |= write_pred_rows(j, "val_", row, NULL, j->data.n_val);
    return ret ? ENS_EHDF5 : 0;
  }
  ens_pack_view v;
  ens_member_view(j, meta, packed, &v);
  hsize_t np = (hsize_t)meta->nparams, ns = (hsize_t)meta->nstats;
  snprintf(path, sizeof(path), "%s/params", grp);
  ret |= ens_h5_write(f, path, H5T_NATIVE_FLOAT, 1, &np, v.params, 0);
  ret |= ens_h5_attr_i64(f, path, "seed", meta->rng_key);
  ret |= ens_h5_attr_i64(f, path, "ensemble_seed", (int64_t)j->c->seed);
  ret |= ens_job_meta_write(f, path, meta);
  snprintf(path, sizeof(path), "%s/bn_stats", grp);
  if (ns) /* no batch norm: no (empty) dataset */
    ret |= ens_h5_write(f, path, H5T_NATIVE_FLOAT, 1, &ns, v.stats, 0);
  /* Learning curves: the epochs this member finished. */
  hsize_t ne = (hsize_t)(meta->epochs < j->c->epochs ? meta->epochs : j->c->epochs);
  float dummy = 0;
  snprintf(path, sizeof(path), "%s/curve_train_loss", grp);
  ret |= ens_h5_write(f, path, H5T_NATIVE_FLOAT, 1, &ne, ne ? v.curve_loss : &dummy, 0);
  snprintf(path, sizeof(path), "%s/curve_eval", grp);
  ret |= ens_h5_write(f, path, H5T_NATIVE_FLOAT, 1, &ne, ne ? v.curve_eval : &dummy, 0);
  ret |= ens_h5_attr_str(f, path, "metric", ens_task_metric_name(&j->task, 0));
  ret |= ens_h5_attr_str(f, path, "split", j->data.n_val ? "val" : ens_jobdata_scored_name(&j->data));
  ret |= write_grad_norm(j, grp, ne, v.grad_norm);
  ret |= write_pred_rows(j, "", row, v.test, j->data.n_test);
  if (j->data.n_val)
    ret |= write_pred_rows(j, "val_", row, v.val, j->data.n_val);
  /* Rows needed only by the collection pass (out-of-bag training rows, MC
   * passes) wait in the scratch group, deleted before the rename. */
  hsize_t W = (hsize_t)j->task.W;
  if (v.train) {
    hsize_t dims[2] = {(hsize_t)j->data.n_train, W};
    snprintf(path, sizeof(path), "/scratch/train_%d", meta->k);
    ret |= ens_h5_write(f, path, H5T_NATIVE_FLOAT, 2, dims, v.train, 0);
  }
  if (v.mc) {
    hsize_t dims[2] = {(hsize_t)j->data.n_test, W};
    snprintf(path, sizeof(path), "/scratch/mc_%d", meta->k);
    ret |= ens_h5_write(f, path, H5T_NATIVE_FLOAT, 2, dims, v.mc, 0);
  }
  return ret ? ENS_EHDF5 : 0;
}

/* MPI counts are int: send large buffers in pieces of at most 2^30 floats. */
static int send_floats(const float *p, size_t n, int dest, MPI_Comm comm) {
  const size_t piece = (size_t)1 << 30;
  for (size_t off = 0; off < n; off += piece) {
    size_t m = n - off < piece ? n - off : piece;
    if (ens_comm_send(p + off, (int)m, MPI_FLOAT, dest, ENS_TAG_DATA, comm) != MPI_SUCCESS)
      return ENS_EMPI;
  }
  return 0;
}

static int recv_floats(float *p, size_t n, int src, MPI_Comm comm) {
  const size_t piece = (size_t)1 << 30;
  for (size_t off = 0; off < n; off += piece) {
    size_t m = n - off < piece ? n - off : piece;
    if (ens_comm_recv(p + off, (int)m, MPI_FLOAT, src, ENS_TAG_DATA, comm, MPI_STATUS_IGNORE) !=
        MPI_SUCCESS)
      return ENS_EMPI;
  }
  return 0;
}

/* Reads member k's metadata from result file f: its group, or (older
 * files) its params dataset. */
static int read_meta(ens_job *j, hid_t f, int k, ens_member_meta *meta) {
  char obj[64];
  snprintf(obj, sizeof(obj), "/members/%d", k);
  int ret = ens_job_meta_read(f, obj, k, meta);
  if (ret && ens_h5_exists(f, "/members/0/params")) {
    snprintf(obj, sizeof(obj), "/members/%d/params", k);
    ret = ens_job_meta_read(f, obj, k, meta);
  }
  (void)j;
  return ret;
}

/* Reads member k from result file f (where it is row `row` of the member
 * datasets) into j->pack: weights, prediction rows and curves; rows the file
 * does not keep (out-of-bag, MC) come from its scratch group when present,
 * else *missing is set. */
static int read_member(ens_job *j, hid_t f, hsize_t row, int k, ens_member_meta *meta,
                       int *missing) {
  char path[128];
  *missing = 0;
  int ret = read_meta(j, f, k, meta);
  if (ret || meta->status != ENS_MEMBER_DONE)
    return ret;
  /* The sizes a file declares must be member k's own before any buffer is
   * sized from them (a merge part may be damaged). */
  size_t np = 0, ns = 0;
  ens_member_sizes(j, k, j->trunk.layers, &np, &ns);
  if ((size_t)meta->nparams != np || (size_t)meta->nstats != ns || meta->epochs < 0)
    return ENS_ESHAPE;
  if ((ret = ens_job_pack_reserve(j, ens_member_packed_len(j, meta))))
    return ret;
  ens_pack_view v;
  ens_member_view(j, meta, j->pack, &v);
  snprintf(path, sizeof(path), "/members/%d/params", k);
  ret |= ens_h5_read(f, path, H5T_NATIVE_FLOAT, (float *)v.params, (size_t)meta->nparams);
  snprintf(path, sizeof(path), "/members/%d/bn_stats", k);
  if (meta->nstats)
    ret |= ens_h5_read(f, path, H5T_NATIVE_FLOAT, (float *)v.stats, (size_t)meta->nstats);
  ret |= read_pred_rows(j, f, "", row, (float *)v.test, j->data.n_test);
  if (j->data.n_val)
    ret |= read_pred_rows(j, f, "val_", row, (float *)v.val, j->data.n_val);
  const int E = j->c->epochs;
  for (int e = 0; e < E; e++)
    ((float *)v.curve_loss)[e] = ((float *)v.curve_eval)[e] = NAN;
  int ne = meta->epochs < E ? meta->epochs : E;
  for (size_t i = 0; i < (size_t)E * ENS_GN_COLS; i++)
    ((float *)v.grad_norm)[i] = NAN;
  snprintf(path, sizeof(path), "/members/%d/grad_norm", k);
  if (ens_h5_exists(f, path))
    ret |= ens_h5_read(f, path, H5T_NATIVE_FLOAT, (float *)v.grad_norm, (size_t)ne * ENS_GN_COLS);
  snprintf(path, sizeof(path), "/members/%d/curve_train_loss", k);
  if (ens_h5_exists(f, path)) {
    ret |= ens_h5_read(f, path, H5T_NATIVE_FLOAT, (float *)v.curve_loss, (size_t)ne);
    snprintf(path, sizeof(path), "/members/%d/curve_eval", k);
    ret |= ens_h5_read(f, path, H5T_NATIVE_FLOAT, (float *)v.curve_eval, (size_t)ne);
  }
  size_t W = (size_t)j->task.W;
  if (v.train) {
    snprintf(path, sizeof(path), "/scratch/train_%d", k);
    if (ens_h5_exists(f, path))
      ret |= ens_h5_read(f, path, H5T_NATIVE_FLOAT, (float *)v.train, (size_t)j->data.n_train * W);
    else
      *missing = 1;
  }
  if (v.mc) {
    snprintf(path, sizeof(path), "/scratch/mc_%d", k);
    if (ens_h5_exists(f, path))
      ret |= ens_h5_read(f, path, H5T_NATIVE_FLOAT, (float *)v.mc, (size_t)j->data.n_test * W);
    else
      *missing = 1;
  }
  return ret ? ENS_EFORMAT : 0;
}

/* Recomputes the rows a part file does not keep (out-of-bag training rows,
 * MC passes) from member k's weights in j->pack. */
static int recompute_rows(ens_job *j, const ens_member_meta *meta) {
  ens_model m;
  int ret = ens_member_model(j, meta->k, &m);
  if (ret)
    return ret;
  ens_pack_view v;
  ens_member_view(j, meta, j->pack, &v);
  if ((size_t)meta->nparams != m.nparams || (size_t)meta->nstats != m.nstats) {
    ens_model_free(&m);
    return ENS_EFORMAT;
  }
  memcpy(m.params, v.params, m.nparams * sizeof(float));
  memcpy(m.stats, v.stats, m.nstats * sizeof(float));
  if (v.train)
    ens_task_predict(&j->task, &m, (float *)v.train, j->data.ftrain, j->data.n_train);
  if (v.mc)
    ens_task_predict_mc(&j->task, &m, (float *)v.mc, j->scratch, j->data.ftest, j->data.n_test,
                        j->c->seed, (uint32_t)meta->k, j->c->mc_samples);
  ens_model_free(&m);
  return 0;
}

/* Brings member k (index i in this job) into j->pack and makes sure the
 * output file holds it: from rank 0's own file, from another rank, or from
 * one of the part files of a merge. */
int ens_job_get_member(ens_job *j, int i, int k, ens_member_meta *meta, char *err,
                       size_t errlen) {
  int ret = 0, missing = 0;
  if (j->merge.n > 0) {
    const ens_part *p = ens_job_part_of(j, k);
    ret = read_member(j, p->file, (hsize_t)(k - p->first), k, meta, &missing);
    if (ret) {
      snprintf(err, errlen,
               "%s: member %d is missing, damaged or of the wrong size for its "
               "architecture (/members/%d, its params and prediction rows)",
               p->path, k, k);
      return ret == ENS_ENOMEM ? ret : ENS_EFORMAT;
    }
    if (missing && (ret = recompute_rows(j, meta))) {
      snprintf(err, errlen, "%s: member %d does not match its architecture", p->path, k);
      return ret;
    }
    ret = ens_job_write_member(j, meta, j->pack);
  } else if (ens_job_rank_of(j, k) == 0) {
    ret = read_member(j, j->file, (hsize_t)i, k, meta, &missing);
  } else {
    int src = ens_job_rank_of(j, k);
    if (ens_comm_recv(meta, (int)sizeof(*meta), MPI_BYTE, src, ENS_TAG_META, j->comm,
                 MPI_STATUS_IGNORE) != MPI_SUCCESS || meta->k != k)
      ret = ENS_EMPI;
    if (!ret && meta->status == ENS_MEMBER_LOST) {
      /* A runtime failure (exit 2), whatever the rebuild's own code was.
       * That rank sends nothing more: drain() must not wait for it. */
      j->collect_next = i + 1;
      if (!j->lost_ranks)
        j->lost_ranks = calloc((size_t)j->size, 1);
      if (j->lost_ranks)
        j->lost_ranks[src] = 1;
      snprintf(err, errlen, "collecting member %d from rank %d: %s", k, src, meta->fail_reason);
      return ENS_EMPI;
    }
    size_t len = ret ? 0 : ens_member_packed_len(j, meta);
    if (!ret && len && !(ret = ens_job_pack_reserve(j, len)))
      ret = recv_floats(j->pack, len, src, j->comm);
    j->collect_next = i + 1; /* received: not to be drained */
    if (!ret)
      ret = ens_job_write_member(j, meta, j->pack);
  }
  if (ret)
    ret = ens_job_result_error(j, ret, err, errlen, "collecting member", k);
  return ret;
}

int ens_job_result_error(ens_job *j, int ret, char *err, size_t errlen, const char *doing, int k) {
  int e = ens_h5_take_errno();
  char what[160];
  if (k >= 0)
    snprintf(what, sizeof(what), "%s %d: cannot write the result file", doing, k);
  else
    snprintf(what, sizeof(what), "%s: cannot write the result file", doing);
  if (ret == ENS_EHDF5 || e)
    return ens_storage_write_error(err, errlen, e, j->tmp_path[0] ? j->tmp_path : j->c->output_path,
                                   0, what);
  snprintf(err, errlen, "%s %d: %s", doing, k, ens_strerror(ret));
  return ret;
}

/* Rank 0 after a failed collection: receives (and drops) the members the
 * other ranks still send, so that none of them blocks in MPI_Send. */
static void drain(ens_job *j) {
  const int M = j->last - j->first;
  for (int i = j->collect_next; i < M; i++) {
    int k = j->first + i, src = ens_job_rank_of(j, k);
    if (src == 0 || (j->lost_ranks && j->lost_ranks[src]))
      continue;
    ens_member_meta meta;
    ens_comm_recv(&meta, (int)sizeof(meta), MPI_BYTE, src, ENS_TAG_META, j->comm, MPI_STATUS_IGNORE);
    size_t len = ens_member_packed_len(j, &meta);
    /* Last resort: without memory to take the member, the sender would
     * block for ever. */
    if (len && (ens_job_pack_reserve(j, len) || recv_floats(j->pack, len, src, j->comm)))
      ens_comm_abort(j->comm, 2);
  }
  j->collect_next = M;
}

/* Non-root ranks: rebuild each held member from its checkpoint and send it,
 * in member order (rank 0 asks in the same order, so plain blocking sends
 * cannot deadlock). A member that cannot be rebuilt goes as ENS_MEMBER_LOST
 * with the reason, and the rank stops there. */
static int by_member(const void *a, const void *b) {
  int32_t x = ((const ens_member_meta *)a)->k, y = ((const ens_member_meta *)b)->k;
  return x < y ? -1 : x > y;
}

static int send_held(ens_job *j, char *err, size_t errlen) {
  /* Units finish in placement order; rank 0 asks in member order. */
  if (j->nheld > 1)
    qsort(j->held, (size_t)j->nheld, sizeof(*j->held), by_member);
  for (int i = 0; i < j->nheld; i++) {
    ens_member_meta meta = j->held[i];
    size_t len = ens_member_packed_len(j, &meta);
    int ret = len ? ens_job_pack_checkpoint(j, &meta, err, errlen) : 0;
    if (ret) {
      meta.status = ENS_MEMBER_LOST;
      snprintf(meta.fail_reason, sizeof(meta.fail_reason), "%s", err);
      len = 0;
    }
    if (ens_comm_send(&meta, (int)sizeof(meta), MPI_BYTE, 0, ENS_TAG_META, j->comm) != MPI_SUCCESS)
      return ENS_EMPI;
    if (ret)
      return ENS_EMPI; /* as rank 0 reports it */
    if (len && (ret = send_floats(j->pack, len, 0, j->comm)))
      return ret;
  }
  return 0;
}

/* This process's peak resident set in bytes (ru_maxrss is in KiB on Linux).
 * It counts the pages of node-shared blocks this rank touched as well. */
static int64_t peak_rss(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return -1;
  return (int64_t)ru.ru_maxrss * 1024;
}

int ens_job_gather_ranks(ens_job *j) {
  ens_rank_info me = {.node = j->node.index,
                      .data_reads = j->data.reads,
                      .feature_rows = j->trunk.feature_rows,
                      .data_bytes = (int64_t)j->data.shm.bytes,
                      .feature_bytes = (int64_t)j->trunk.shm.bytes,
                      .peak_rss = peak_rss(),
                      .feature_seconds = j->trunk.feature_seconds};
  int ok = 1;
  if (j->rank == 0 && !j->ranks)
    ok = (j->ranks = calloc((size_t)j->size, sizeof(ens_rank_info))) != NULL;
  ens_comm_bcast(&ok, 1, MPI_INT, 0, j->comm);
  if (!ok)
    return ENS_ENOMEM;
  ens_comm_gather(&me, (int)sizeof(me), MPI_BYTE, j->ranks, (int)sizeof(me), MPI_BYTE, 0, j->comm);
  return 0;
}

/* The columns of /ranks: per rank (node 0) or per node (node 1, the value
 * any of the node's ranks reports: the same on each), from ens_rank_info. */
static const struct rank_column {
  const char *name;
  int per_node;
  enum { COL_I32, COL_I64, COL_F64 } kind;
  size_t off;
} rank_columns[] = {
    {"node", 0, COL_I32, offsetof(ens_rank_info, node)},
    {"peak_rss", 0, COL_I64, offsetof(ens_rank_info, peak_rss)},
    {"data_reads", 0, COL_I32, offsetof(ens_rank_info, data_reads)},
    {"feature_rows", 0, COL_I32, offsetof(ens_rank_info, feature_rows)},
    {"feature_seconds", 0, COL_F64, offsetof(ens_rank_info, feature_seconds)},
    {"node_data_bytes", 1, COL_I64, offsetof(ens_rank_info, data_bytes)},
    {"node_feature_bytes", 1, COL_I64, offsetof(ens_rank_info, feature_bytes)},
};

/* Writes one column of /ranks from the ranks' reports. */
static int write_rank_column(ens_job *j, const struct rank_column *c, void *buf) {
  const int P = j->size, N = j->node.count, len = c->per_node ? N : P;
  const size_t width = c->kind == COL_I32 ? sizeof(int32_t) : 8;
  memset(buf, 0, (size_t)len * width);
  for (int r = 0; r < P; r++) {
    const char *src = (const char *)&j->ranks[r] + c->off;
    int at = c->per_node ? j->ranks[r].node : r;
    memcpy((char *)buf + (size_t)at * width, src, width);
  }
  char path[64];
  snprintf(path, sizeof(path), "/ranks/%s", c->name);
  hsize_t d = (hsize_t)len;
  hid_t type = c->kind == COL_I32   ? H5T_NATIVE_INT32
               : c->kind == COL_I64 ? H5T_NATIVE_INT64
                                    : H5T_NATIVE_DOUBLE;
  return ens_h5_write(j->file, path, type, 1, &d, buf, 0);
}

/* Which rank trained which member, and when (place.c's record; a snapshot
 * chain's members share their unit's rank and times). Nothing when the job
 * trained nothing (ens merge). */
static int write_placement(ens_job *j) {
  const ens_place *p = &j->place;
  const int M = j->last - j->first;
  if (!p->owner || M <= 0)
    return 0;
  int32_t *rk = malloc((size_t)M * sizeof(int32_t));
  double *t0 = malloc((size_t)M * sizeof(double)), *t1 = malloc((size_t)M * sizeof(double));
  int ret = 0;
  if (!rk || !t0 || !t1) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  for (int i = 0; i < M; i++) {
    int u = ens_job_unit_of(j, j->first + i) - p->u_first;
    int ok = u >= 0 && u < p->nunits;
    rk[i] = ok ? p->owner[u] : -1;
    t0[i] = ok ? p->t_start[u] : -1.0;
    t1[i] = ok ? p->t_end[u] : -1.0;
  }
  hsize_t dm = (hsize_t)M;
  ret |= ens_h5_attr_str(j->file, "/ranks", "placement", ens_place_policy_name(p->policy));
  ret |= ens_h5_attr_str(j->file, "/ranks", "member_times",
                         "seconds since training started on the member's rank: when its unit "
                         "started and ended there (a resumed unit: in this run)");
  ret |= ens_h5_write(j->file, "/ranks/member_rank", H5T_NATIVE_INT32, 1, &dm, rk, 0);
  ret |= ens_h5_write(j->file, "/ranks/member_start", H5T_NATIVE_DOUBLE, 1, &dm, t0, 0);
  ret |= ens_h5_write(j->file, "/ranks/member_end", H5T_NATIVE_DOUBLE, 1, &dm, t1, 0);
cleanup:
  free(rk);
  free(t0);
  free(t1);
  return ret;
}

int ens_job_write_ranks(ens_job *j) {
  const ens_node *n = &j->node;
  const int P = j->size, N = n->count;
  if (!j->ranks || !n->names)
    return ENS_EINVAL;
  j->ranks[0].peak_rss = peak_rss(); /* rank 0's peak includes the collection */
  void *buf = malloc((size_t)(P > N ? P : N) * 8);
  const char **names = malloc((size_t)N * sizeof(char *));
  if (!buf || !names) {
    free(buf);
    free(names);
    return ENS_ENOMEM;
  }
  hid_t f = j->file;
  hsize_t dn = (hsize_t)N;
  int ret = ens_h5_group(f, "/ranks");
  ret |= ens_h5_attr_i64(f, "/ranks", "nodes", N);
  ret |= ens_h5_attr_i64(f, "/ranks", "threads", j->c->threads);
  ret |= ens_h5_attr_str(f, "/ranks", "peak_rss_units",
                         "bytes (getrusage ru_maxrss: counts the node-shared pages a rank "
                         "touched, so a node's memory is less than the sum over its ranks)");
  for (size_t i = 0; i < sizeof(rank_columns) / sizeof(rank_columns[0]); i++)
    ret |= write_rank_column(j, &rank_columns[i], buf);
  for (int i = 0; i < N; i++)
    names[i] = n->names + (size_t)i * MPI_MAX_PROCESSOR_NAME;
  ret |= ens_h5_write_strings(f, "/ranks/node_names", names, (size_t)N);
  ret |= ens_h5_write(f, "/ranks/node_ranks", H5T_NATIVE_INT32, 1, &dn, n->node_ranks, 0);
  ret |= ens_h5_write(f, "/ranks/node_cores", H5T_NATIVE_INT32, 1, &dn, n->node_cores, 0);
  ret |= write_placement(j);
  free(buf);
  free(names);
  return ret ? ENS_EHDF5 : 0;
}

int ens_job_collect(ens_job *j, double train_wall, char *err, size_t errlen) {
  int ret = ens_job_gather_ranks(j);
  if (ret) {
    snprintf(err, errlen, "out of memory gathering the ranks' reports");
    return ens_agree(j->comm, ret, err, errlen);
  }
  j->collect_next = 0;
  if (j->rank == 0) {
    ret = ens_job_finish_root(j, train_wall, err, errlen);
    if (ret && j->size > 1)
      drain(j);
  } else {
    ret = send_held(j, err, errlen);
  }
  /* Everyone learns whether rank 0 published the result, and why not. */
  return ens_agree(j->comm, ret, err, errlen);
}
