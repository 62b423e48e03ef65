/* libens inference (include/ens/infer.h): loads a result file once into a
 * read-only handle, and predicts rows through per-thread workspaces whose
 * models borrow the handle's parameters. This is the only implementation of
 * inference: `ens predict` (src/ensemble/predict.c) calls it. */
#include "ens/infer.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/config.h"
#include "ens/data.h"
#include "ens/hyperdeep.h"
#include "ens/model.h"
#include "ens/search.h"
#include "ensemble/task.h"
#include "infer/fast.h"
#include "io/h5util.h"

_Static_assert(ENS_RULE_AVERAGE == (int)ENS_COMBINE_AVERAGE &&
                   ENS_RULE_VOTE == (int)ENS_COMBINE_VOTE &&
                   ENS_RULE_PARAMS == (int)ENS_COMBINE_PARAMS &&
                   ENS_RULE_SELECT == (int)ENS_COMBINE_SELECT,
               "ENS_RULE_* mirror ens_combine_kind");

/* One network of the handle: its parameters (owned) and training batch. */
typedef struct infer_net {
  ens_model model; /* params/stats loaded; its activations are unused */
  int k;           /* member index (-1: trunk or parameter average) */
  double sel_w;    /* select weight: number of picks */
} infer_net;

/* The throughput path's compiled networks (src/infer/fast.h), built by the
 * first workspace that asks for them (batch > 0), under the lock: a handle
 * used only through the exact path never holds a second copy of its weights. */
typedef struct fast_cache {
  pthread_mutex_t lock;
  int built;              /* 1 once built */
  int level;              /* kernel level of this CPU */
  ens_fast_net *nets;     /* (nnets); nlayers 0: not compilable, exact path */
  ens_fast_net trunk, avg;
} fast_cache;

struct ens_infer {
  ens_config c;
  ens_task K;
  int regress, C, T, d;
  ens_shape shape; /* input shape: (d,1,1) flat, or an image (C,H,W) */
  int members_stored, members_total, first;
  float *xmean, *xstd; /* (d) input standardization, NULL when none */
  float *ymean, *ystd; /* (T) target standardization, NULL when none */
  int has_trunk;
  infer_net trunk;
  int nnets;
  infer_net *nets; /* finished members, in member order */
  int has_params;
  infer_net avg; /* combine = params network */
  int has_select;
  double calib; /* 0: none */
  char **class_names;
  int rows_default;
  fast_cache *fast; /* mutable behind the read-only handle, under fast->lock */
};

struct ens_infer_ws {
  const ens_infer *m;
  int rows_max;
  ens_model trunk; /* views: borrow the handle's params, own activations */
  ens_model *nets;
  ens_model avg;
  ens_acc acc;
  float *xs;         /* (rows_max, d) standardized rows */
  float *feat;       /* (rows_max, trunk out) */
  float *rows, *fin; /* (rows_max, W) */
  float *alea, *epi; /* (rows_max, T) */
  float *unc;        /* (rows_max, 3) */
  int32_t *pred;     /* (rows_max) */
  float *scratch;    /* MC: (rows_max, W), allocated by the first MC call */
  double *mcsum;     /* MC: (rows_max, W) */
  int fast;          /* batch > 0: compiled networks where there are */
  float *fscratch;   /* fast: ens_fast_scratch of the widest network */
  int *iscratch;     /* fast: ens_fast_iscratch of the widest network */
  float *z;          /* fast: (rows_max, widest output) output-layer rows */
};

static _Thread_local char errbuf[1024];

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
  va_end(ap);
  return code;
}

const char *ens_infer_errmsg(void) { return errbuf; }

const char *ens_infer_version(void) { return ENS_VERSION; }

const char *ens_rule_name(int rule) {
  static const char *const names[ENS_RULE_COUNT] = {"average", "vote", "params", "select"};
  return rule >= 0 && rule < ENS_RULE_COUNT ? names[rule] : NULL;
}

int ens_rule_parse(const char *name) {
  for (int r = 0; name && r < ENS_RULE_COUNT; r++)
    if (!strcmp(name, ens_rule_name(r)))
      return r;
  return -1;
}

/* ---- loading ------------------------------------------------------------ */

/* Datasets pp (and sp) must hold exactly the parameters (and batch-norm
 * statistics) of blocks [first, last) (+ output) of a, and fit in memory,
 * before any buffer is sized from the file. */
static int check_sizes(hid_t f, const char *file, const ens_arch *a, int first, int last,
                       int output, const char *pp, const char *sp) {
  size_t np = 0, ns = 0;
  ens_arch_sizes(a, first, last, output, &np, &ns);
  long long hp = ens_h5_size(f, pp, NULL, NULL), hs = ns ? ens_h5_size(f, sp, NULL, NULL) : 0;
  if (hp < 0 || hs < 0)
    return fail(ENS_EFORMAT, "%s: dataset %s is missing (expected %zu float values)", file,
                hp < 0 ? pp : sp, hp < 0 ? np : ns);
  if (hp != (long long)np || hs != (long long)ns)
    return fail(ENS_EFORMAT,
                "%s: %s holds %lld values and %s %lld; the architecture in its stored "
                "configuration needs %zu and %zu",
                file, pp, hp, sp, hs, np, ns);
  if (!ens_h5_affordable((unsigned long long)(np + ns) * 4 * sizeof(float)))
    return fail(ENS_EFORMAT, "%s: %s declares %zu parameters, more than the memory of this node",
                file, pp, np);
  return 0;
}

/* Creates net's model for blocks [first, last) (+ output) of a and reads its
 * parameters pp and statistics sp. */
static int load_net(infer_net *net, hid_t f, const char *file, const ens_arch *a, int first,
                    int last, int output, int batch, const char *pp, const char *sp) {
  int ret = check_sizes(f, file, a, first, last, output, pp, sp);
  if (ret)
    return ret;
  ret = ens_model_create(&net->model, a, first, last, output, batch);
  if (ret == ENS_ENOMEM)
    return fail(ret, "%s: out of memory for the network of %s", file, pp);
  if (ret)
    return fail(ENS_EFORMAT, "%s: the stored configuration does not describe a network for %s",
                file, pp);
  if (ens_h5_read(f, pp, H5T_NATIVE_FLOAT, net->model.params, net->model.nparams) ||
      (net->model.nstats &&
       ens_h5_read(f, sp, H5T_NATIVE_FLOAT, net->model.stats, net->model.nstats)))
    return fail(ENS_EFORMAT, "%s: %s cannot be read as float32", file, pp);
  return 0;
}

static long long gcd_ll(long long a, long long b) {
  while (b) {
    long long t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* Reads (n) floats at path into a new buffer: 0 or ENS_EFORMAT/ENOMEM. */
static int read_vec(hid_t f, const char *file, const char *path, int n, float **out) {
  *out = malloc((size_t)n * sizeof(float));
  if (!*out)
    return fail(ENS_ENOMEM, "%s: out of memory reading %s", file, path);
  if (ens_h5_size(f, path, NULL, NULL) != n ||
      ens_h5_read(f, path, H5T_NATIVE_FLOAT, *out, (size_t)n))
    return fail(ENS_EFORMAT, "%s: dataset %s is missing or does not hold %d float values", file,
                path, n);
  return 0;
}

static int open_file(ens_infer *m, hid_t f, const char *path) {
  char *text = NULL, *taskname = NULL;
  int ret = 0;
  int64_t classes = 0, inputs = 0, members = 0, first = 0, tl = 0, standardized = 0, T = 0;
  int64_t total = 0;
  if (ens_h5_get_attr_str(f, "/", "config", &text) ||
      ens_h5_get_attr_i64(f, "/model", "classes", &classes) ||
      ens_h5_get_attr_i64(f, "/model", "inputs", &inputs) ||
      ens_h5_get_attr_i64(f, "/", "members", &members) ||
      ens_h5_get_attr_i64(f, "/", "first_member", &first) ||
      ens_h5_get_attr_i64(f, "/model", "trunk_layers", &tl) ||
      ens_h5_get_attr_i64(f, "/model", "standardized", &standardized)) {
    ret = fail(ENS_EFORMAT, "%s: not an ens result file (missing /model or root attributes)", path);
    goto done;
  }
  if (ens_h5_get_attr_i64(f, "/", "members_total", &total))
    total = members;
  int regress =
      ens_h5_get_attr_str(f, "/", "task", &taskname) == 0 && strcmp(taskname, "regress") == 0;
  if (regress && ens_h5_get_attr_i64(f, "/model", "targets", &T)) {
    ret = fail(ENS_EFORMAT, "%s: regression result without /model targets", path);
    goto done;
  }
  if (members < 1 || members > (1 << 24) || first < 0 || first > INT32_MAX - members ||
      total < members || total > INT32_MAX || inputs < 1 || inputs > INT32_MAX ||
      (!regress && (classes < 2 || classes > (1 << 24))) || (regress && (T < 1 || T > 65536)) ||
      tl < 0 || tl > ENS_MAX_LAYERS) {
    ret = fail(ENS_EFORMAT, "%s: /model attributes out of range (members %lld, inputs %lld)", path,
               (long long)members, (long long)inputs);
    goto done;
  }
  char msg[1024];
  if (ens_config_load_text(&m->c, path, text, msg, sizeof(msg))) {
    ret = fail(ENS_EFORMAT, "%s: stored configuration does not load: %s", path, msg);
    goto done;
  }
  m->regress = regress;
  m->C = regress ? 0 : (int)classes;
  m->T = regress ? (int)T : 0;
  m->d = (int)inputs;
  /* The input shape of a layer list trained on images (absent: flat rows). */
  m->shape = (ens_shape){.c = m->d, .h = 1, .w = 1, .image = 0};
  int64_t ich = 0, ih = 0, iw = 0;
  if (ens_h5_get_attr_i64(f, "/model", "input_channels", &ich) == 0 &&
      ens_h5_get_attr_i64(f, "/model", "input_height", &ih) == 0 &&
      ens_h5_get_attr_i64(f, "/model", "input_width", &iw) == 0 && ich > 0 && ih > 0 && iw > 0 &&
      ich * ih * iw == inputs)
    m->shape = (ens_shape){.c = (int)ich, .h = (int)ih, .w = (int)iw, .image = 1};
  m->members_stored = (int)members;
  m->members_total = (int)total;
  m->first = (int)first;
  if (standardized && ((ret = read_vec(f, path, "/model/input_mean", m->d, &m->xmean)) ||
                       (ret = read_vec(f, path, "/model/input_std", m->d, &m->xstd))))
    goto done;
  if (regress && ens_h5_exists(f, "/model/target_mean") &&
      ((ret = read_vec(f, path, "/model/target_mean", m->T, &m->ymean)) ||
       (ret = read_vec(f, path, "/model/target_std", m->T, &m->ystd))))
    goto done;
  ens_task_init(&m->K, regress, m->C, m->T, m->c.loss, m->ymean, m->ystd);
  const int width = regress ? m->T : m->C;
  ens_arch arch;
  ens_arch_from_config_shape(&arch, &m->c, m->shape, m->K.head, width);
  long long lcm = 1;
#define LCM(b) (lcm = lcm / gcd_ll(lcm, (b)) * (b), lcm = lcm > (1 << 16) ? (b) : lcm)
  if (tl > 0) {
    if (tl > arch.n_hidden) {
      ret = fail(ENS_EFORMAT,
                 "%s: /model trunk_layers = %lld but its configuration has %d hidden "
                 "layers",
                 path, (long long)tl, arch.n_hidden);
      goto done;
    }
    m->has_trunk = 1;
    m->trunk.k = -1;
    if ((ret = load_net(&m->trunk, f, path, &arch, 0, (int)tl, 0, m->c.batch, "/trunk/params",
                        "/trunk/bn_stats")))
      goto done;
    LCM(m->c.batch);
  }
  /* Selection weights: the number of times each member was picked. */
  float *weights = NULL;
  int64_t picks = 0;
  m->has_select = ens_h5_size(f, "/ensemble/weights", NULL, NULL) == members &&
                  !ens_h5_get_attr_i64(f, "/metrics/ensemble", "select_picks", &picks);
  if (m->has_select) {
    weights = malloc((size_t)members * sizeof(float));
    if (!weights ||
        ens_h5_read(f, "/ensemble/weights", H5T_NATIVE_FLOAT, weights, (size_t)members)) {
      free(weights);
      ret = fail(ENS_EFORMAT, "%s: /ensemble/weights cannot be read", path);
      goto done;
    }
  }
  m->nets = calloc((size_t)members, sizeof(infer_net));
  if (!m->nets) {
    free(weights);
    ret = fail(ENS_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  for (int k = (int)first; k < first + members; k++) {
    char grp[64], pp[128], sp[128];
    char *status = NULL;
    snprintf(grp, sizeof(grp), "/members/%d", k);
    snprintf(pp, sizeof(pp), "/members/%d/params", k);
    snprintf(sp, sizeof(sp), "/members/%d/bn_stats", k);
    int failed = ens_h5_get_attr_str(f, grp, "status", &status) == 0 && strcmp(status, "done") != 0;
    free(status);
    if (failed)
      continue;
    ens_config mc;
    ens_arch ma;
    ens_search_member_config_in(&mc, &m->c, ens_hyperdeep_read_source(f, k), m->shape.image ? m->shape.h : 0,
                                m->shape.image ? m->shape.w : 0);
    ens_arch_from_config_shape(&ma, &mc, m->shape, m->K.head, width);
    infer_net *net = &m->nets[m->nnets];
    net->k = k;
    net->sel_w = m->has_select ? (double)lround(weights[k - first] * picks) : 1.0;
    ret = load_net(net, f, path, &ma, (int)tl, ma.n_hidden, 1, mc.batch, pp, sp);
    m->nnets++; /* freed by close even when loading failed */
    if (ret) {
      free(weights);
      goto done;
    }
    LCM(mc.batch);
  }
  free(weights);
  if (!m->nnets) {
    ret = fail(ENS_EFORMAT, "%s: no finished member to apply", path);
    goto done;
  }
  if (ens_h5_exists(f, "/ensemble/params")) {
    m->has_params = 1;
    m->avg.k = -1;
    if ((ret = load_net(&m->avg, f, path, &arch, (int)tl, arch.n_hidden, 1, m->c.batch,
                        "/ensemble/params", "/ensemble/bn_stats")))
      goto done;
    LCM(m->c.batch);
  }
#undef LCM
  /* Passes of a multiple of every batch size keep the batches of one pass
   * over all rows; at least 256 rows so small batches still amortize. */
  m->rows_default = (int)(lcm * ((256 + lcm - 1) / lcm));
  double cal = 0;
  if (ens_h5_get_attr_f64(f, "/ensemble", regress ? "variance_scale" : "temperature", &cal) == 0 &&
      isfinite(cal) && cal > 0)
    m->calib = cal;
  m->class_names = regress ? NULL : ens_h5_read_strings(f, "/model/class_names", m->C);
done:
  free(text);
  free(taskname);
  return ret;
}

int ens_infer_open(ens_infer **model, const char *path) {
  if (!model)
    return fail(ENS_EINVAL, "ens_infer_open: model is NULL");
  *model = NULL;
  if (!path)
    return fail(ENS_EINVAL, "ens_infer_open: path is NULL");
  ens_h5_quiet();
  ens_infer *m = calloc(1, sizeof(*m));
  fast_cache *fc = calloc(1, sizeof(*fc));
  if (!m || !fc || pthread_mutex_init(&fc->lock, NULL)) {
    free(m);
    free(fc);
    return fail(ENS_ENOMEM, "%s: out of memory", path);
  }
  m->fast = fc;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    H5Eclear2(H5E_DEFAULT);
    ens_infer_close(m);
    return fail(ENS_EIO, "%s: cannot open as an HDF5 result file", path);
  }
  int ret = open_file(m, f, path);
  H5Fclose(f);
  /* Failed probes leave records on this thread's HDF5 error stack; clear it
   * so a thread that exits now leaves nothing behind (HDF5 frees the stack
   * but not its records at thread exit). */
  H5Eclear2(H5E_DEFAULT);
  if (ret) {
    ens_infer_close(m);
    return ret;
  }
  *model = m;
  return 0;
}

void ens_infer_close(ens_infer *m) {
  if (!m)
    return;
  if (m->fast) {
    for (int i = 0; m->fast->nets && i < m->nnets; i++)
      ens_fast_net_free(&m->fast->nets[i]);
    free(m->fast->nets);
    ens_fast_net_free(&m->fast->trunk);
    ens_fast_net_free(&m->fast->avg);
    pthread_mutex_destroy(&m->fast->lock);
    free(m->fast);
  }
  ens_model_free(&m->trunk.model);
  for (int i = 0; i < m->nnets; i++)
    ens_model_free(&m->nets[i].model);
  free(m->nets);
  ens_model_free(&m->avg.model);
  for (int c = 0; m->class_names && c < m->C; c++)
    free(m->class_names[c]);
  free(m->class_names);
  free(m->xmean);
  free(m->xstd);
  free(m->ymean);
  free(m->ystd);
  free(m);
}

/* ---- queries ------------------------------------------------------------ */

int ens_infer_task(const ens_infer *m) {
  return m->regress ? ENS_INFER_REGRESS : ENS_INFER_CLASSIFY;
}
int ens_infer_inputs(const ens_infer *m) { return m->d; }
int ens_infer_input_shape(const ens_infer *m, int *dims, int maxdims) {
  if (!m->shape.image) {
    if (dims && maxdims >= 1)
      dims[0] = m->d;
    return 1;
  }
  const int s[3] = {m->shape.c, m->shape.h, m->shape.w};
  for (int i = 0; dims && i < 3 && i < maxdims; i++)
    dims[i] = s[i];
  return 3;
}
int ens_infer_classes(const ens_infer *m) { return m->C; }
int ens_infer_targets(const ens_infer *m) { return m->T; }
int ens_infer_members(const ens_infer *m) { return m->nnets; }
int ens_infer_members_total(const ens_infer *m) { return m->members_total; }
int ens_infer_first_member(const ens_infer *m) { return m->first; }
int ens_infer_stored_members(const ens_infer *m) { return m->members_stored; }
int ens_infer_default_rule(const ens_infer *m) { return (int)m->c.combine; }
double ens_infer_calibration(const ens_infer *m) { return m->calib; }
const char *ens_infer_class_name(const ens_infer *m, int c) {
  return m->class_names && c >= 0 && c < m->C ? m->class_names[c] : NULL;
}

int ens_infer_rules(const ens_infer *m) {
  int r = 1 << ENS_RULE_AVERAGE;
  if (!m->regress)
    r |= 1 << ENS_RULE_VOTE;
  if (m->has_params)
    r |= 1 << ENS_RULE_PARAMS;
  if (m->has_select)
    r |= 1 << ENS_RULE_SELECT;
  return r;
}

static int rule_of(const ens_infer *m, const ens_infer_opts *o) {
  return o->rule == ENS_RULE_DEFAULT ? (int)m->c.combine : o->rule;
}

int ens_infer_members_used(const ens_infer *m, int rule) {
  if (rule == ENS_RULE_DEFAULT)
    rule = (int)m->c.combine;
  if (rule < 0 || rule >= ENS_RULE_COUNT || !(ens_infer_rules(m) >> rule & 1))
    return fail(ENS_EINVAL, "combine rule %d is not available", rule);
  if (rule == ENS_RULE_PARAMS)
    return 1;
  int used = 0;
  for (int i = 0; i < m->nnets; i++)
    used += rule != ENS_RULE_SELECT || m->nets[i].sel_w != 0.0;
  return used;
}

int ens_infer_check(const ens_infer *m, const ens_infer_opts *o) {
  static const ens_infer_opts defaults = ENS_INFER_OPTS_DEFAULT;
  if (!m)
    return fail(ENS_EINVAL, "ens_infer: model is NULL");
  if (!o)
    o = &defaults;
  const int rule = rule_of(m, o);
  if (rule < 0 || rule >= ENS_RULE_COUNT)
    return fail(ENS_EINVAL, "combine rule %d: expected average, vote, params or select", o->rule);
  if (o->mc_samples < 0)
    return fail(ENS_EINVAL, "mc_samples = %d: expected 0 or a positive count", o->mc_samples);
  if (rule == ENS_RULE_PARAMS && !m->has_params)
    return fail(ENS_EINVAL,
                "the result has no /ensemble/params: it was trained with combine = %s "
                "(parameter averaging is stored only for combine = params)",
                ens_combine_name(m->c.combine));
  if (rule == ENS_RULE_VOTE && m->regress)
    return fail(ENS_EINVAL, "combine vote: the result is a regression result (votes need "
                            "classes)");
  if (rule == ENS_RULE_PARAMS && o->mc_samples > 0)
    return fail(ENS_EINVAL, "MC-dropout (mc_samples) with combine = params: MC-dropout applies "
                            "to members");
  if (rule == ENS_RULE_SELECT && !m->has_select)
    return fail(ENS_EINVAL, "combine select needs /ensemble/weights of a combine = select result");
  if (ens_infer_members_used(m, rule) < 1)
    return fail(ENS_EINVAL, "combine %s: no finished member to apply", ens_rule_name(rule));
  return 0;
}

int ens_infer_calibrated(const ens_infer *m, const ens_infer_opts *o) {
  static const ens_infer_opts defaults = ENS_INFER_OPTS_DEFAULT;
  if (!o)
    o = &defaults;
  return o->calibrate && m->calib > 0 && rule_of(m, o) == (int)m->c.combine;
}

/* ---- workspaces --------------------------------------------------------- */

/* A model over src's parameters with activations of its own for batch_max
 * rows: eval and MC passes only read params and stats. */
static int view_create(ens_model *v, const ens_model *src, int batch_max) {
  int ret = ens_model_create(v, &src->arch, src->first_block, src->last_block, src->has_output,
                             batch_max);
  if (ret)
    return ret;
  free(v->params);
  free(v->grads);
  free(v->stats);
  v->params = src->params;
  v->stats = src->stats;
  v->grads = NULL;
  return 0;
}

static void view_free(ens_model *v) {
  if (!v->layers)
    return;
  v->params = NULL; /* borrowed */
  v->stats = NULL;
  ens_model_free(v);
}

void ens_infer_ws_free(ens_infer_ws *ws) {
  if (!ws)
    return;
  view_free(&ws->trunk);
  for (int i = 0; ws->nets && i < ws->m->nnets; i++)
    view_free(&ws->nets[i]);
  free(ws->nets);
  view_free(&ws->avg);
  ens_acc_free(&ws->acc);
  free(ws->xs);
  free(ws->feat);
  free(ws->rows);
  free(ws->fin);
  free(ws->alea);
  free(ws->epi);
  free(ws->unc);
  free(ws->pred);
  free(ws->scratch);
  free(ws->mcsum);
  free(ws->fscratch);
  free(ws->iscratch);
  free(ws->z);
  free(ws);
}

/* Compiles every network of m for the fast path, once per handle. A network
 * the fast path cannot run keeps nlayers = 0. 0 or ENS_ENOMEM. */
static int fast_build(const ens_infer *m) {
  fast_cache *fc = m->fast;
  int ret = 0;
  pthread_mutex_lock(&fc->lock);
  if (fc->built)
    goto done;
  fc->level = ens_fast_level();
  fc->nets = calloc((size_t)m->nnets, sizeof(ens_fast_net));
  if (!fc->nets) {
    ret = ENS_ENOMEM;
    goto done;
  }
  /* The networks that read the standardized rows may fold it in. */
  const float *mu = m->has_trunk ? NULL : m->xmean, *sd = m->has_trunk ? NULL : m->xstd;
  if (m->has_trunk &&
      (ret = ens_fast_net_build(&fc->trunk, &m->trunk.model, m->xmean, m->xstd)) < 0)
    goto done;
  for (int i = 0; i < m->nnets; i++)
    if ((ret = ens_fast_net_build(&fc->nets[i], &m->nets[i].model, mu, sd)) < 0)
      goto done;
  if (m->has_params && (ret = ens_fast_net_build(&fc->avg, &m->avg.model, mu, sd)) < 0)
    goto done;
  ret = 0; /* 1 (not compilable) is not an error */
  fc->built = 1;
done:
  if (ret) {
    for (int i = 0; fc->nets && i < m->nnets; i++)
      ens_fast_net_free(&fc->nets[i]);
    free(fc->nets);
    fc->nets = NULL;
    ens_fast_net_free(&fc->trunk);
    ens_fast_net_free(&fc->avg);
  }
  pthread_mutex_unlock(&fc->lock);
  return ret;
}

/* Scratch floats and ints and output width the fast path needs for rows rows. */
static void fast_sizes(const ens_infer *m, int rows, size_t *scratch, size_t *iscratch,
                       size_t *zw) {
  const fast_cache *fc = m->fast;
  *scratch = 0;
  *iscratch = 0;
  *zw = 0;
  const ens_fast_net *all[2] = {&fc->trunk, &fc->avg};
  for (int i = 0; i < m->nnets + 2; i++) {
    const ens_fast_net *f = i < m->nnets ? &fc->nets[i] : all[i - m->nnets];
    if (!f->nlayers)
      continue;
    size_t s = ens_fast_scratch(f, rows), is = ens_fast_iscratch(f, rows);
    *scratch = s > *scratch ? s : *scratch;
    *iscratch = is > *iscratch ? is : *iscratch;
    *zw = (size_t)f->out > *zw ? (size_t)f->out : *zw;
  }
}

int ens_infer_ws_create(ens_infer_ws **out, const ens_infer *m, int rows_max, int batch) {
  if (!out || !m)
    return fail(ENS_EINVAL, "ens_infer_ws_create: NULL argument");
  *out = NULL;
  ens_infer_ws *ws = calloc(1, sizeof(*ws));
  if (!ws)
    return fail(ENS_ENOMEM, "out of memory for a workspace");
  ws->m = m;
  ws->rows_max = rows_max > 0 ? rows_max : m->rows_default;
  const size_t R = (size_t)ws->rows_max, W = (size_t)m->K.W;
  const size_t T = (size_t)(m->regress ? m->T : 1);
  int ret = 0;
  ws->nets = calloc((size_t)m->nnets, sizeof(ens_model));
  if (!ws->nets)
    ret = ENS_ENOMEM;
  const int B = batch > 0 ? (batch < ws->rows_max ? batch : ws->rows_max) : 0;
  if (!ret && m->has_trunk)
    ret = view_create(&ws->trunk, &m->trunk.model, B ? B : m->trunk.model.batch_max);
  for (int i = 0; !ret && i < m->nnets; i++)
    ret = view_create(&ws->nets[i], &m->nets[i].model, B ? B : m->nets[i].model.batch_max);
  if (!ret && m->has_params)
    ret = view_create(&ws->avg, &m->avg.model, B ? B : m->avg.model.batch_max);
  if (!ret)
    ret = ens_acc_init(&ws->acc, &m->K, ws->rows_max);
  if (!ret && batch > 0 && !(ret = fast_build(m))) {
    size_t ns = 0, nis = 0, zw = 0;
    fast_sizes(m, ws->rows_max, &ns, &nis, &zw);
    ws->fast = ns > 0;
    if (ws->fast) {
      ws->fscratch = malloc(ns * sizeof(float));
      ws->iscratch = malloc(nis * sizeof(int));
      ws->z = malloc(R * zw * sizeof(float));
      if (!ws->fscratch || !ws->iscratch || !ws->z)
        ret = ENS_ENOMEM;
    }
  }
  if (!ret) {
    ws->xs = malloc(R * m->d * sizeof(float));
    ws->feat = m->has_trunk ? malloc(R * m->trunk.model.out * sizeof(float)) : NULL;
    ws->rows = malloc(R * W * sizeof(float));
    ws->fin = malloc(R * W * sizeof(float));
    ws->alea = calloc(R * T, sizeof(float));
    ws->epi = calloc(R * T, sizeof(float));
    ws->unc = calloc(R * 3, sizeof(float));
    ws->pred = calloc(R, sizeof(int32_t));
    if (!ws->xs || (m->has_trunk && !ws->feat) || !ws->rows || !ws->fin || !ws->alea || !ws->epi ||
        !ws->unc || !ws->pred)
      ret = ENS_ENOMEM;
  }
  if (ret) {
    ens_infer_ws_free(ws);
    return fail(ret, "cannot create a workspace for %d rows: %s", (int)R, ens_strerror(ret));
  }
  *out = ws;
  return 0;
}

/* ---- prediction --------------------------------------------------------- */

/* Prediction rows (b, W) of network net (compiled as f) for rows hx (b, ldx):
 * the fast path's forward, then the head and the original units as
 * ens_task_predict. */
static void fast_predict(const ens_infer *m, ens_infer_ws *ws, const ens_fast_net *f,
                         const ens_model *net, float *rows, const float *hx, int ldx, int b) {
  ens_fast_forward(f, ws->z, hx, ldx, b, ws->fscratch, ws->iscratch, m->fast->level);
  ens_model_head(net, rows, ws->z, b);
  ens_task_units(&m->K, rows, b);
}

/* Rows [r0, r0 + b) of x into ws buffers, then into out. */
static void predict_pass(const ens_infer *m, ens_infer_ws *ws, int rule, int calibrated, int mc,
                         const float *x, int r0, int b, ens_infer_out *out) {
  const int d = m->d, W = m->K.W, T = m->T, C = m->C;
  const fast_cache *fc = ws->fast ? m->fast : NULL;
  /* A compiled network with the standardization folded in takes raw rows;
   * the others the standardized rows, made only when one needs them. */
#define RAW(f) (fc && (f)->nlayers && (f)->raw_input)
  int need = !m->has_trunk || !RAW(&fc->trunk);
  if (!m->has_trunk && rule == ENS_RULE_PARAMS)
    need = !RAW(&fc->avg);
  else if (!m->has_trunk) {
    need = 0;
    for (int i = 0; i < m->nnets; i++)
      need |= (rule != ENS_RULE_SELECT || m->nets[i].sel_w != 0.0) &&
              (mc > 0 || !RAW(&fc->nets[i]));
  }
  const float *raw = x + (size_t)r0 * d, *xs = raw;
  if (m->xmean && need) {
    memcpy(ws->xs, raw, (size_t)b * d * sizeof(float));
    ens_split s = {.n = b, .d = d, .x = ws->xs};
    ens_standardize_apply(&s, m->xmean, m->xstd);
    xs = ws->xs;
  }
  const float *hx = xs;
  int hw = d;
  if (m->has_trunk) {
    if (fc && fc->trunk.nlayers)
      ens_fast_forward(&fc->trunk, ws->feat, RAW(&fc->trunk) ? raw : xs, d, b, ws->fscratch,
                       ws->iscratch, fc->level);
    else
      ens_model_features(&ws->trunk, ws->feat, xs, b);
    hx = ws->feat;
    hw = m->trunk.model.out;
  }
  ens_acc *acc = &ws->acc;
  acc->n = b;
  ens_acc_reset(acc);
  float *fin = ws->fin;
  if (rule == ENS_RULE_PARAMS) {
    if (fc && fc->avg.nlayers)
      fast_predict(m, ws, &fc->avg, &m->avg.model, fin, RAW(&fc->avg) ? raw : hx, hw, b);
    else
      ens_task_predict(&m->K, &ws->avg, fin, hx, b);
    ens_acc_add(acc, fin, 1.0, NULL);
  } else {
    for (int i = 0; i < m->nnets; i++) {
      double w = rule == ENS_RULE_SELECT ? m->nets[i].sel_w : 1.0;
      if (w == 0.0)
        continue;
      if (mc > 0)
        ens_task_predict_mc_at(&m->K, &ws->nets[i], ws->rows, ws->scratch, ws->mcsum, hx, b, r0,
                               m->c.seed, (uint32_t)m->nets[i].k, mc);
      else if (fc && fc->nets[i].nlayers)
        fast_predict(m, ws, &fc->nets[i], &m->nets[i].model, ws->rows,
                     RAW(&fc->nets[i]) ? raw : hx, hw, b);
      else
        ens_task_predict(&m->K, &ws->nets[i], ws->rows, hx, b);
      ens_acc_add(acc, ws->rows, w, NULL);
    }
  }
  if (rule == ENS_RULE_VOTE)
    ens_acc_vote(acc, fin, ws->pred);
  else if (rule != ENS_RULE_PARAMS)
    ens_acc_mean(acc, fin);
  if (m->regress) {
    if (rule == ENS_RULE_PARAMS) {
      for (int i = 0; i < b; i++)
        for (int t = 0; t < T; t++) {
          ws->alea[(size_t)i * T + t] = fin[(size_t)i * W + T + t];
          ws->epi[(size_t)i * T + t] = 0.0f;
        }
    } else {
      ens_acc_var_parts(acc, fin, ws->alea, ws->epi);
    }
  }
  if (calibrated)
    ens_task_calibration_apply(&m->K, fin, b, m->calib, m->regress ? ws->alea : NULL,
                               m->regress ? ws->epi : NULL);
  if (!m->regress) {
    if (rule != ENS_RULE_VOTE)
      ens_task_argmax(&m->K, ws->pred, fin, b);
    ens_acc_uncertainty(acc, fin, ws->unc);
    if (out->probs)
      memcpy(out->probs + (size_t)r0 * C, fin, (size_t)b * C * sizeof(float));
    if (out->pred)
      memcpy(out->pred + r0, ws->pred, (size_t)b * sizeof(int32_t));
    if (out->uncertainty)
      memcpy(out->uncertainty + (size_t)r0 * 3, ws->unc, (size_t)b * 3 * sizeof(float));
    return;
  }
  for (int i = 0; i < b; i++) {
    const size_t o = (size_t)(r0 + i) * T;
    if (out->mean)
      memcpy(out->mean + o, fin + (size_t)i * W, (size_t)T * sizeof(float));
    if (out->var)
      memcpy(out->var + o, fin + (size_t)i * W + T, (size_t)T * sizeof(float));
  }
  if (out->var_aleatoric)
    memcpy(out->var_aleatoric + (size_t)r0 * T, ws->alea, (size_t)b * T * sizeof(float));
  if (out->var_epistemic)
    memcpy(out->var_epistemic + (size_t)r0 * T, ws->epi, (size_t)b * T * sizeof(float));
}
#undef RAW

int ens_infer_predict(const ens_infer *m, ens_infer_ws *ws, const ens_infer_opts *o, const float *x,
                      int n, int d, ens_infer_out *out) {
  static const ens_infer_opts defaults = ENS_INFER_OPTS_DEFAULT;
  if (!m || !x || !out)
    return fail(ENS_EINVAL, "ens_infer_predict: %s is NULL", !m ? "model" : !x ? "x" : "out");
  if (!o)
    o = &defaults;
  if (d != m->d)
    return fail(ENS_ESHAPE, "input rows have %d features; the model expects %d", d, m->d);
  if (n < 1)
    return fail(ENS_ESHAPE, "%d rows: expected at least one row", n);
  int ret = ens_infer_check(m, o);
  if (ret)
    return ret;
  if (ws && ws->m != m)
    return fail(ENS_EINVAL, "ens_infer_predict: the workspace belongs to another model");
  const size_t total = (size_t)n * d;
  for (size_t i = 0; i < total; i++)
    if (!isfinite(x[i]))
      return fail(ENS_EINVAL, "input has a non-finite value (%g) at row %zu, column %zu",
                  (double)x[i], i / (size_t)d, i % (size_t)d);
  ens_infer_ws *own = NULL;
  if (!ws) {
    if ((ret = ens_infer_ws_create(&own, m, 0, 0)))
      return ret;
    ws = own;
  }
  const int rule = rule_of(m, o);
  const int mc = rule == ENS_RULE_PARAMS ? 0 : o->mc_samples;
  if (mc > 0 && !ws->scratch) {
    const size_t nw = (size_t)ws->rows_max * m->K.W;
    ws->scratch = malloc(nw * sizeof(float));
    ws->mcsum = malloc(nw * sizeof(double));
    if (!ws->scratch || !ws->mcsum) {
      free(ws->scratch);
      free(ws->mcsum);
      ws->scratch = NULL;
      ws->mcsum = NULL;
      ens_infer_ws_free(own);
      return fail(ENS_ENOMEM, "out of memory for MC-dropout buffers");
    }
  }
  const int calibrated = ens_infer_calibrated(m, o);
  for (int r0 = 0; r0 < n; r0 += ws->rows_max) {
    int b = n - r0 < ws->rows_max ? n - r0 : ws->rows_max;
    predict_pass(m, ws, rule, calibrated, mc, x, r0, b, out);
  }
  ens_infer_ws_free(own);
  return 0;
}
