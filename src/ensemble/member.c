/* Ensemble members: each member's own configuration and architecture (a
 * search draws them per member), the layout of its packed buffer (weights,
 * prediction rows, learning curves), its metadata attributes, its bootstrap
 * rows and its per-epoch evaluation. Where a finished member goes is
 * store.c's business. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"
#include "ens/gradnorm.h"
#include "ens/rng.h"
#include "ens/search.h"
#include "ensemble/hyperdeep.h"
#include "ensemble/job.h"
#include "io/h5util.h"

void ens_member_config(const ens_job *j, int k, ens_config *mc) {
  /* The conv generator limits a member's depth by the image's size; a
   * hyper-deep member trains the configuration it retrains. */
  ens_search_member_config_in(mc, j->c, ens_hyperdeep_source(j->hyperdeep, k),
                              j->data.img[0] > 0 ? j->data.img[1] : 0,
                              j->data.img[0] > 0 ? j->data.img[2] : 0);
}

ens_shape ens_job_input_shape(const ens_job *j) {
  if (j->data.img[0] > 0)
    return (ens_shape){.c = j->data.img[0], .h = j->data.img[1], .w = j->data.img[2], .image = 1};
  return (ens_shape){.c = j->data.dim, .h = 1, .w = 1, .image = 0};
}

void ens_member_arch(const ens_job *j, const ens_config *mc, ens_arch *a) {
  ens_arch_from_config_shape(a, mc, ens_job_input_shape(j), j->task.head,
                             j->task.regress ? j->task.T : j->task.C);
}

/* The conv generator: the image must allow the lowest depth (a config error
 * naming conv_blocks' line), and every member's list must fit. */
static int check_conv_search(const ens_job *j, const char *config_path, char *err,
                             size_t errlen) {
  const ens_config *c = j->c;
  char where[ENS_PATH_MAX + 64], why[512];
  if (j->o && j->o->conv_blocks_set)
    snprintf(where, sizeof where, "--set %.200s: ", j->o->conv_blocks_set);
  else
    ens_config_key_where(where, sizeof where, config_path, "search", "conv_blocks");
  if (ens_search_conv_fit(c, j->data.img[0] > 0, j->data.img[1], j->data.img[2], why,
                          sizeof why)) {
    snprintf(err, errlen, "%s%s", where, why);
    return ENS_ECONFIG;
  }
  for (int k = j->first; k < j->last; k++) {
    ens_config mc;
    ens_arch a;
    ens_member_config(j, k, &mc);
    ens_member_arch(j, &mc, &a);
    if (!mc.model_layers[0] || ens_arch_check(&a, why, sizeof why)) {
      snprintf(err, errlen, "%s[search] conv_blocks: member %d draws '%.300s': %s", where, k,
               mc.model_layers, mc.model_layers[0] ? why : "too long a layer list");
      return ENS_ECONFIG;
    }
  }
  return 0;
}

void ens_job_arch(const ens_job *j, ens_arch *a) {
  ens_config mc;
  if (ens_search_conv_on(j->c)) {
    ens_member_config(j, 0, &mc); /* the same whatever slice this job trains */
    ens_member_arch(j, &mc, a);
  } else {
    ens_member_arch(j, j->c, a);
  }
}

void ens_job_print_conv_draws(const ens_job *j) {
  const ens_config *c = j->c;
  if (!ens_search_conv_on(c))
    return;
  int h = j->data.img[1], w = j->data.img[2];
  ens_search_conv_arch ca;
  ens_search_conv_draw(&ca, c, j->first, h, w);
  if (ca.clamped)
    printf("[search] conv_blocks = %s: the %dx%d input allows at most %d block%s (each halves "
           "it), so deeper draws are not made\n",
           c->search_conv_blocks, h, w, ens_search_conv_depth_limit(h, w),
           ens_search_conv_depth_limit(h, w) == 1 ? "" : "s");
  const ens_hyperdeep *hd = j->hyperdeep;
  for (int k = j->first; k < j->last; k++) {
    ens_config mc;
    ens_arch a;
    size_t np = 0, ns = 0;
    if (hd && k >= hd->M && !hd->known) { /* its configuration is not chosen yet */
      printf("member %d: retrains the configuration the selection ranks #%d, with a new seed\n",
             k, (k - hd->M) / hd->K + 1);
      continue;
    }
    ens_member_config(j, k, &mc);
    ens_member_arch(j, &mc, &a);
    ens_arch_sizes(&a, 0, a.n_hidden, 1, &np, &ns);
    printf("member %d draws: %s (%zu parameters)\n", k, mc.model_layers, np);
  }
  fflush(stdout);
}

int ens_job_check_arch(const ens_job *j, const char *config_path, const char *layers_set,
                       char *err, size_t errlen) {
  const ens_config *c = j->c;
  if (ens_search_conv_on(c))
    return check_conv_search(j, config_path, err, errlen);
  if (!c->model_layers[0])
    return 0;
  char where[ENS_PATH_MAX + 64], why[512];
  int line = ens_config_key_line(config_path, "model", "layers");
  if (layers_set)
    snprintf(where, sizeof where, "--set %.200s: [model] layers", layers_set);
  else if (line > 0)
    snprintf(where, sizeof where, "%s:%d: [model] layers", config_path, line);
  else
    snprintf(where, sizeof where, "[model] layers");
  /* A [trunk] layer list was folded in front of the heads: name both lines and
   * the whole list the layer numbers count in. */
  int tline = c->trunk_source != ENS_TRUNK_NONE && c->trunk_layers > 0
                  ? ens_config_key_line(config_path, "trunk", "layers")
                  : 0;
  if (!layers_set && tline > 0 && line > 0) {
    char where2[sizeof where];
    snprintf(where2, sizeof where2, "%s:%d: [trunk] layers and %s:%d: [model] layers ('%.200s')",
             config_path, tline, config_path, line, c->model_layers);
    memcpy(where, where2, sizeof where);
  }
  /* A search draws a list per member; every list must fit. */
  int last = c->mode == ENS_MODE_SEARCH && c->search_layers[0] ? j->last : j->first + 1;
  for (int k = j->first; k < last; k++) {
    ens_config mc;
    ens_arch a;
    ens_member_config(j, k, &mc);
    ens_member_arch(j, &mc, &a);
    if (ens_arch_check(&a, why, sizeof why)) {
      if (c->mode == ENS_MODE_SEARCH && c->search_layers[0])
        snprintf(err, errlen, "[search] layers (member %d draws '%.200s'): %s", k, mc.model_layers,
                 why);
      else
        snprintf(err, errlen, "%s: %s", where, why);
      return ENS_ECONFIG;
    }
  }
  return 0;
}

void ens_member_sizes(const ens_job *j, int k, int trunk_layers, size_t *np, size_t *ns) {
  ens_config mc;
  ens_arch a;
  ens_member_config(j, k, &mc);
  ens_member_arch(j, &mc, &a);
  ens_arch_sizes(&a, trunk_layers, a.n_hidden, 1, np, ns);
}

int ens_member_model(const ens_job *j, int k, ens_model *m) {
  ens_config mc;
  ens_arch a;
  ens_member_config(j, k, &mc);
  ens_member_arch(j, &mc, &a);
  return ens_model_create(m, &a, j->trunk.layers, a.n_hidden, 1, mc.batch);
}

void ens_job_bootstrap_rows(int32_t *rows, int n, uint64_t seed, uint32_t member) {
  ens_rng r;
  ens_rng_init(&r, seed, member, ENS_STREAM_BOOTSTRAP, 0);
  for (int i = 0; i < n; i++)
    rows[i] = (int32_t)ens_rng_below(&r, (uint32_t)n);
}

static size_t pred_rows(const ens_job *j) {
  size_t rows = (size_t)j->data.n_test + (size_t)j->data.n_val;
  if (j->c->mode == ENS_MODE_BOOTSTRAP)
    rows += (size_t)j->data.n_train;
  if (j->c->mc_samples > 0)
    rows += (size_t)j->data.n_test;
  return rows;
}

size_t ens_member_packed_len(const ens_job *j, const ens_member_meta *meta) {
  if (meta->status != ENS_MEMBER_DONE)
    return 0;
  return (size_t)meta->nparams + (size_t)meta->nstats + pred_rows(j) * (size_t)j->task.W +
         (2 + ENS_GN_COLS) * (size_t)j->c->epochs;
}

void ens_member_view(const ens_job *j, const ens_member_meta *meta, const float *packed,
                     ens_pack_view *v) {
  const size_t W = (size_t)j->task.W;
  const float *p = packed;
  memset(v, 0, sizeof(*v));
  v->params = p;
  p += meta->nparams;
  v->stats = p;
  p += meta->nstats;
  v->test = p;
  p += (size_t)j->data.n_test * W;
  v->val = p;
  p += (size_t)j->data.n_val * W;
  if (j->c->mode == ENS_MODE_BOOTSTRAP) {
    v->train = p;
    p += (size_t)j->data.n_train * W;
  }
  v->curve_loss = p;
  p += j->c->epochs;
  v->curve_eval = p;
  p += j->c->epochs;
  if (j->c->mc_samples > 0) {
    v->mc = p;
    p += (size_t)j->data.n_test * W;
  }
  v->grad_norm = p;
}

int ens_job_pack_reserve(ens_job *j, size_t n) {
  if (n <= j->pack_cap)
    return 0;
  float *p = realloc(j->pack, n * sizeof(float));
  if (!p)
    return ENS_ENOMEM;
  j->pack = p;
  j->pack_cap = n;
  return 0;
}

/* ---- metadata attributes ------------------------------------------------- */

int ens_job_meta_write(hid_t f, const char *obj, const ens_member_meta *meta) {
  int ret = 0;
  ret |= ens_h5_attr_str(f, obj, "status",
                         meta->status == ENS_MEMBER_DONE      ? "done"
                         : meta->status == ENS_MEMBER_STOPPED ? "stopped"
                                                              : "failed");
  ret |= ens_h5_attr_i64(f, obj, "init_key", meta->init_key);
  ret |= ens_h5_attr_i64(f, obj, "rng_key", meta->rng_key);
  ret |= ens_h5_attr_i64(f, obj, "epochs", meta->epochs);
  ret |= ens_h5_attr_i64(f, obj, "steps", meta->steps);
  ret |= ens_h5_attr_i64(f, obj, "nparams", meta->nparams);
  ret |= ens_h5_attr_i64(f, obj, "nstats", meta->nstats);
  ret |= ens_h5_attr_f64(f, obj, "final_train_loss", meta->final_loss);
  ret |= ens_h5_attr_f64(f, obj, "train_seconds", meta->train_seconds);
  if (meta->status != ENS_MEMBER_DONE) {
    ret |= ens_h5_attr_i64(f, obj, "fail_epoch", meta->fail_epoch);
    ret |= ens_h5_attr_i64(f, obj, "fail_step", meta->fail_step);
    ret |= ens_h5_attr_str(f, obj, "fail_reason", meta->fail_reason);
  }
  return ret ? ENS_EHDF5 : 0;
}

int ens_job_meta_read(hid_t f, const char *obj, int k, ens_member_meta *meta) {
  int64_t v[6] = {0};
  char *status = NULL;
  int ret = 0;
  memset(meta, 0, sizeof(*meta));
  meta->k = k;
  ret |= ens_h5_get_attr_str(f, obj, "status", &status);
  ret |= ens_h5_get_attr_i64(f, obj, "init_key", &v[0]);
  ret |= ens_h5_get_attr_i64(f, obj, "rng_key", &v[1]);
  ret |= ens_h5_get_attr_i64(f, obj, "epochs", &v[2]);
  ret |= ens_h5_get_attr_i64(f, obj, "steps", &v[3]);
  ret |= ens_h5_get_attr_i64(f, obj, "nparams", &v[4]);
  ret |= ens_h5_get_attr_i64(f, obj, "nstats", &v[5]);
  ret |= ens_h5_get_attr_f64(f, obj, "final_train_loss", &meta->final_loss);
  ret |= ens_h5_get_attr_f64(f, obj, "train_seconds", &meta->train_seconds);
  meta->status = status && strcmp(status, "done") == 0      ? ENS_MEMBER_DONE
                 : status && strcmp(status, "stopped") == 0 ? ENS_MEMBER_STOPPED
                                                            : ENS_MEMBER_FAILED;
  if (!ret && status && strcmp(status, "done") != 0 && strcmp(status, "failed") != 0 &&
      strcmp(status, "stopped") != 0)
    ret = ENS_EFORMAT;
  free(status);
  meta->init_key = (int32_t)v[0];
  meta->rng_key = (int32_t)v[1];
  meta->epochs = (int32_t)v[2];
  meta->steps = v[3];
  meta->nparams = v[4];
  meta->nstats = v[5];
  if (v[4] < 0 || v[5] < 0 || v[4] > ((int64_t)1 << 40) || v[5] > ((int64_t)1 << 40))
    ret = ENS_EFORMAT;
  if (!ret && meta->status != ENS_MEMBER_DONE) {
    int64_t fe = 0, fs = 0;
    char *why = NULL;
    ret |= ens_h5_get_attr_i64(f, obj, "fail_epoch", &fe);
    ret |= ens_h5_get_attr_i64(f, obj, "fail_step", &fs);
    ret |= ens_h5_get_attr_str(f, obj, "fail_reason", &why);
    meta->fail_epoch = (int32_t)fe;
    meta->fail_step = fs;
    snprintf(meta->fail_reason, sizeof(meta->fail_reason), "%s", why ? why : "");
    free(why);
  }
  return ret ? ENS_EFORMAT : 0;
}

/* ---- emitting and keeping members --------------------------------------- */

double ens_job_eval(ens_job *j, ens_trainer *t, double *nll) {
  int use_val = j->data.n_val > 0;
  const float *x = use_val ? j->data.fval : j->data.ftest;
  ens_truth truth = {.y = use_val ? j->data.sets.val.y : j->data.sets.test.y,
                     .t = use_val ? j->data.sets.val.t : j->data.sets.test.t,
                     .n = use_val ? j->data.n_val : j->data.n_test};
  double m[ENS_TASK_MAX_METRICS];
  ens_task_predict(&j->task, &t->model, j->eval_pred, x, truth.n);
  j->eval_of = t;
  j->eval_step = t->step;
  ens_task_metrics(&j->task, m, j->eval_pred, &truth);
  if (nll)
    *nll = m[1];
  return m[0];
}

int ens_job_pack_model(ens_job *j, ens_model *m, const float *curve_loss, const float *curve_eval,
                       const ens_member_meta *meta, int rows, const float *eval_rows) {
  int ret = ens_job_pack_reserve(j, ens_member_packed_len(j, meta));
  if (ret)
    return ret;
  ens_pack_view v;
  ens_member_view(j, meta, j->pack, &v);
  memcpy((float *)v.params, m->params, m->nparams * sizeof(float));
  memcpy((float *)v.stats, m->stats, m->nstats * sizeof(float));
  memcpy((float *)v.curve_loss, curve_loss, (size_t)j->c->epochs * sizeof(float));
  memcpy((float *)v.curve_eval, curve_eval, (size_t)j->c->epochs * sizeof(float));
  if (!rows)
    return 0;
  const size_t W = (size_t)j->task.W;
  if (eval_rows && !j->data.n_val)
    memcpy((float *)v.test, eval_rows, (size_t)j->data.n_test * W * sizeof(float));
  else
    ens_task_predict(&j->task, m, (float *)v.test, j->data.ftest, j->data.n_test);
  if (eval_rows && j->data.n_val)
    memcpy((float *)v.val, eval_rows, (size_t)j->data.n_val * W * sizeof(float));
  else if (j->data.n_val)
    ens_task_predict(&j->task, m, (float *)v.val, j->data.fval, j->data.n_val);
  if (v.train)
    ens_task_predict(&j->task, m, (float *)v.train, j->data.ftrain, j->data.n_train);
  if (v.mc)
    ens_task_predict_mc(&j->task, m, (float *)v.mc, j->scratch, j->data.ftest, j->data.n_test, j->c->seed,
                        (uint32_t)meta->k, j->c->mc_samples);
  return 0;
}

void ens_job_pack_grad_norm(ens_job *j, const ens_member_meta *meta, const float *gn) {
  ens_pack_view v;
  ens_member_view(j, meta, j->pack, &v);
  memcpy((float *)v.grad_norm, gn, (size_t)j->c->epochs * ENS_GN_COLS * sizeof(float));
}
