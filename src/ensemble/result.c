/* The result file's members: writing a member (its group, weights, curves
 * and prediction rows) and reading one back, from the job's temporary result
 * file or from another result file (a merge part). Below the collection
 * (collect.c, merge.c) and the fold (combine.c); calls member.c for the
 * layout of a packed member. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"
#include "ensemble/hyperdeep.h"
#include "ensemble/job.h"
#include "ensemble/result.h"
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

int ens_job_read_member(ens_job *j, hid_t f, hsize_t row, int k, ens_member_meta *meta,
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
