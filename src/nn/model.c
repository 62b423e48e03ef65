/* The model: lays out the layers of a range of hidden blocks (plus the
 * output layer), infers their shapes, points every tensor into flat buffers
 * allocated once, and runs forward, backward, prediction and batch-norm
 * re-estimation. Everything per kind goes through the layer table
 * (nn/layer.h); nothing here branches on a kind. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"
#include "ens/model.h"
#include "ens/nn.h"
#include "nn/fuse.h"
#include "nn/layer.h"
#include "nn/weightnorm.h"

void ens_arch_from_config(ens_arch *a, const ens_config *c, int in, ens_head_kind head,
                          int width) {
  ens_arch_from_config_shape(a, c, (ens_shape){.c = in, .h = 1, .w = 1, .image = 0}, head, width);
}

void ens_arch_from_config_shape(ens_arch *a, const ens_config *c, ens_shape shape,
                                ens_head_kind head, int width) {
  int in = (int)ens_shape_size(shape);
  memset(a, 0, sizeof(*a));
  a->in = in;
  a->head = head;
  a->width = width;
  a->outputs = head == ENS_HEAD_GAUSSIAN ? 2 * width : width;
  a->n_hidden = c->n_hidden;
  for (int i = 0; i < c->n_hidden; i++)
    a->hidden[i] = c->hidden[i];
  a->batchnorm = c->batchnorm;
  a->dropout = (float)c->dropout;
  a->weightnorm = c->weightnorm;
  if (c->model_layers[0]) {
    /* A layer list replaces the MLP form (its syntax passed the config
     * check; a list that fails here leaves nspec 0 and n_hidden -1, which
     * ens_model_create refuses). */
    char err[256];
    a->n_hidden = 0;
    a->hidden[0] = 0;
    if (ens_layers_parse(c->model_layers, a, err, sizeof err))
      a->nspec = 0, a->n_hidden = -1;
    a->in_shape = shape;
  }
}

int ens_arch_pred_width(const ens_arch *a) {
  return a->head == ENS_HEAD_SOFTMAX ? a->width : 2 * a->width;
}

/* The hidden layers of the MLP form: per hidden width, dense, [batchnorm],
 * relu, [dropout]. Fills spec (may be NULL to count); returns the count. */
static int mlp_specs(ens_layer_spec *spec, const ens_arch *a) {
  int n = 0;
#define ADD(kind_, n_, p_, block_)                                                          \
  do {                                                                                      \
    if (spec)                                                                               \
      spec[n] = (ens_layer_spec){.kind = (kind_), .n = (n_), .p = (p_), .block = (block_)}; \
    n++;                                                                                    \
  } while (0)
  for (int b = 0; b < a->n_hidden; b++) {
    ADD(ENS_LAYER_DENSE, a->hidden[b], 0.0f, b);
    if (a->batchnorm)
      ADD(ENS_LAYER_BATCHNORM, 0, 0.0f, b);
    ADD(ENS_LAYER_RELU, 0, 0.0f, b);
    if (a->dropout > 0.0f)
      ADD(ENS_LAYER_DROPOUT, 0, a->dropout, b);
  }
#undef ADD
  return n;
}

/* The input shape of a network: in_shape when set, else a flat width. */
static ens_shape arch_input(const ens_arch *a) {
  if (a->in_shape.c > 0 && ens_shape_size(a->in_shape) == (size_t)a->in)
    return a->in_shape;
  return (ens_shape){.c = a->in, .h = 1, .w = 1, .image = 0};
}

static void shape_text(char *buf, size_t len, ens_shape s) {
  if (s.image)
    snprintf(buf, len, "(%d,%d,%d)", s.c, s.h, s.w);
  else
    snprintf(buf, len, "(%d)", s.c);
}

/* Lays out blocks [first, last) + output into layers (may be NULL to count)
 * with shapes inferred from the network's input; returns the count, or -1
 * with err (when not NULL) naming the layer that does not fit. Shapes are
 * always inferred from layer 0 of the full network, so a head knows its
 * input shape. */
static int build_layers(ens_layer *layers, const ens_arch *a, int first, int last,
                        int with_output, char *err, size_t errlen) {
  ens_layer_spec mlp[4 * ENS_MAX_HIDDEN];
  const ens_layer_spec *spec = a->spec;
  int nspec = a->nspec;
  if (nspec == 0) {
    nspec = mlp_specs(mlp, a);
    spec = mlp;
  }
  ens_layer_spec out = {.kind = ENS_LAYER_DENSE, .n = a->outputs, .block = a->n_hidden};
  ens_shape cur = arch_input(a);
  int n = 0;
  for (int i = 0; i <= nspec; i++) {
    const ens_layer_spec *sp = i < nspec ? &spec[i] : &out;
    if (i == nspec && !with_output)
      break;
    ens_layer l = {.kind = sp->kind, .spec = *sp, .block = sp->block, .sin = cur};
    if (a->weightnorm) /* spec.kind keeps what the user asked for */
      l.kind = ens_weightnorm_kind(l.kind);
    char why[160] = "";
    if (ens_layer_table[l.kind].shape(&l, why, sizeof why)) {
      if (err) {
        char si[48];
        shape_text(si, sizeof si, cur);
        if (i < nspec)
          snprintf(err, errlen, "layer %d (%s): input shape %s: %s", i + 1,
                   ens_layer_kind_name(sp->kind), si, why);
        else
          snprintf(err, errlen, "output layer (dense %d): input shape %s: %s", a->outputs, si,
                   why);
      }
      return -1;
    }
    l.in = (int)ens_shape_size(l.sin);
    l.out = (int)ens_shape_size(l.sout);
    cur = l.sout;
    if (sp->block < first || (sp->block >= last && i < nspec))
      continue;
    if (layers)
      layers[n] = l;
    n++;
  }
  return n;
}

static int check_range(const ens_arch *a, int first, int last, int with_output) {
  if (!a || a->in <= 0 || a->width < 1 || a->n_hidden < 0 || a->nspec < 0 ||
      a->nspec > ENS_MAX_LAYERS || (a->nspec == 0 && a->n_hidden > ENS_MAX_HIDDEN))
    return ENS_EINVAL;
  if (a->outputs != (a->head == ENS_HEAD_GAUSSIAN ? 2 * a->width : a->width))
    return ENS_EINVAL;
  if (first < 0 || last < first || last > a->n_hidden)
    return ENS_EINVAL;
  if (!with_output && last == first)
    return ENS_EINVAL;
  if (with_output && last != a->n_hidden)
    return ENS_EINVAL;
  return 0;
}

void ens_arch_sizes(const ens_arch *a, int first_block, int last_block, int with_output,
                    size_t *nparams, size_t *nstats) {
  ens_layer layers[ENS_MAX_LAYERS + 1];
  int n = build_layers(layers, a, first_block, last_block, with_output, NULL, 0);
  size_t p = 0, s = 0;
  for (int i = 0; i < n; i++) {
    p += ens_layer_table[layers[i].kind].nparam(&layers[i]);
    s += ens_layer_table[layers[i].kind].nstat(&layers[i]);
  }
  *nparams = p;
  *nstats = s;
}

int ens_arch_check(const ens_arch *a, char *err, size_t errlen) {
  if (check_range(a, 0, a ? a->n_hidden : 0, 1)) {
    snprintf(err, errlen, "invalid architecture");
    return ENS_EINVAL;
  }
  return build_layers(NULL, a, 0, a->n_hidden, 1, err, errlen) < 0 ? ENS_EINVAL : 0;
}

const char *ens_layer_kind_name(ens_layer_kind kind) {
  return kind >= 0 && kind < ENS_LAYER_KIND_COUNT ? ens_layer_table[kind].name : "?";
}

int ens_model_create(ens_model *m, const ens_arch *a, int first_block, int last_block,
                     int with_output, int batch_max) {
  memset(m, 0, sizeof(*m));
  int ret = check_range(a, first_block, last_block, with_output);
  if (ret)
    return ret;
  if (batch_max < 1)
    return ENS_EINVAL;
  m->arch = *a;
  m->first_block = first_block;
  m->last_block = last_block;
  m->has_output = with_output;
  m->batch_max = batch_max;
  m->bn_eps = 1e-5f;
  m->bn_momentum = 0.1f;
  m->nlayers = build_layers(NULL, a, first_block, last_block, with_output, NULL, 0);
  if (m->nlayers < 1)
    return ENS_EINVAL;
  m->layers = calloc((size_t)m->nlayers, sizeof(ens_layer));
  if (!m->layers)
    return ENS_ENOMEM;
  build_layers(m->layers, a, first_block, last_block, with_output, NULL, 0);

  /* Sizes first, then one allocation per buffer, then point into them. */
  size_t nact = 0;
  int maxw = m->layers[0].in;
  for (int i = 0; i < m->nlayers; i++) {
    ens_layer *l = &m->layers[i];
    const ens_layer_ops *t = &ens_layer_table[l->kind];
    l->param_off = m->nparams;
    l->nparam = t->nparam(l);
    m->nparams += l->nparam;
    l->stat_off = m->nstats;
    l->nstat = t->nstat(l);
    m->nstats += l->nstat;
    nact += (size_t)batch_max * l->out + t->naux(l, batch_max);
    size_t nw = t->nwork(l, batch_max);
    m->nwork = nw > m->nwork ? nw : m->nwork;
    maxw = l->out > maxw ? l->out : maxw;
    maxw = l->in > maxw ? l->in : maxw;
  }
  ens_fuse_plan(m);
  m->in = m->layers[0].in;
  m->out = m->layers[m->nlayers - 1].out;
  size_t nd = (size_t)batch_max * maxw;
  m->params = calloc(m->nparams ? m->nparams : 1, sizeof(float));
  m->grads = calloc(m->nparams ? m->nparams : 1, sizeof(float));
  m->stats = calloc(m->nstats ? m->nstats : 1, sizeof(float));
  int pw = with_output ? ens_arch_pred_width(a) : m->out;
  pw = pw > m->out ? pw : m->out;
  m->acts = calloc(nact + 2 * nd + (size_t)batch_max * pw, sizeof(float));
  if (m->nwork)
    m->work = calloc(m->nwork, sizeof(float));
  if (!m->params || !m->grads || !m->stats || !m->acts || (m->nwork && !m->work)) {
    ens_model_free(m);
    return ENS_ENOMEM;
  }
  float *p = m->acts;
  for (int i = 0; i < m->nlayers; i++) {
    ens_layer *l = &m->layers[i];
    l->y = p;
    p += (size_t)batch_max * l->out;
    size_t naux = ens_layer_table[l->kind].naux(l, batch_max);
    l->aux = naux ? p : NULL;
    p += naux;
  }
  m->dbuf[0] = p;
  m->dbuf[1] = p + nd;
  m->probs = p + 2 * nd;
  return 0;
}

void ens_model_free(ens_model *m) {
  if (!m)
    return;
  free(m->layers);
  free(m->params);
  free(m->grads);
  free(m->stats);
  free(m->acts);
  free(m->work);
  memset(m, 0, sizeof(*m));
}

int ens_model_init(ens_model *m, ens_init_kind init, double init_std, double bias_init,
                   uint64_t seed, uint32_t member) {
  for (int i = 0; i < m->nlayers; i++) {
    ens_layer *l = &m->layers[i];
    ens_init_args args = {.init = init, .init_std = init_std, .bias_init = bias_init,
                          .seed = seed, .member = member,
                          .is_output = l->block == m->arch.n_hidden};
    const ens_layer_ops *t = &ens_layer_table[l->kind];
    int ret = t->init(l, m->params + l->param_off, &args);
    if (ret)
      return ret;
    t->init_stats(l, m->stats + l->stat_off);
  }
  return 0;
}

const float *ens_model_forward(ens_model *m, const float *x, int batch, ens_pass pass,
                               ens_rng *r) {
  const float *cur = x;
  /* Training passes run the fused runs of the plan (fuse.c). */
  m->fused_pass = pass == ENS_PASS_TRAIN && !m->nofuse;
  for (int i = 0; i < m->nlayers; i++) {
    ens_layer *l = &m->layers[i];
    if (m->fused_pass && l->fuse) {
      cur = ens_fuse_forward(m, i, cur, batch);
      i += l->fuse - 1;
      continue;
    }
    l->x = cur;
    cur = ens_layer_table[l->kind].forward(m, l, cur, batch, pass, r, i);
  }
  if (pass == ENS_PASS_BN_REESTIMATE)
    m->bn_batches++;
  return cur;
}

/* The first layer of the fused run that ends at layer i, or -1. */
static int fused_run_start(const ens_model *m, int i) {
  for (int j = i; j >= 0 && j > i - 8; j--)
    if (m->layers[j].fuse)
      return j + m->layers[j].fuse - 1 == i ? j : -1;
  return -1;
}

double ens_model_loss_backward(ens_model *m, const int32_t *labels, const float *targets,
                               int batch, float *dx_out) {
  /* Layer inputs were recorded by the forward pass (l->x). */
  ens_layer *last = &m->layers[m->nlayers - 1];
  int which = 0;
  float *d = m->dbuf[which];
  double loss;
  switch (m->arch.head) {
  case ENS_HEAD_GAUSSIAN:
    loss = ens_gaussian_nll_loss(d, last->y, targets, batch, m->arch.width, ENS_VAR_FLOOR);
    break;
  case ENS_HEAD_MSE:
    loss = ens_mse_loss(d, last->y, targets, batch, m->arch.width);
    break;
  case ENS_HEAD_SOFTMAX:
  default:
    loss = ens_softmax_xent(m->probs, d, last->y, labels, batch, m->out);
    break;
  }
  /* Layers that work in place keep the current buffer; the others write
   * the other ping-pong buffer, or dx_out for layer 0. */
  for (int i = m->nlayers - 1; i >= 0; i--) {
    ens_layer *l = &m->layers[i];
    const ens_layer_ops *t = &ens_layer_table[l->kind];
    float *g = m->grads + l->param_off;
    const float *p = m->params + l->param_off;
    const int run0 = m->fused_pass ? fused_run_start(m, i) : -1;
    if (run0 >= 0) { /* a fused run [run0, i]: one input gradient buffer */
      float *dx = run0 == 0 ? dx_out : m->dbuf[1 - which];
      ens_fuse_backward(m, run0, dx, d, batch);
      which = 1 - which;
      d = dx;
      i = run0;
      continue;
    }
    if (t->inplace) {
      t->backward(m, l, d, d, g, p, batch);
      continue;
    }
    float *dx = i == 0 ? dx_out : m->dbuf[1 - which];
    t->backward(m, l, dx, d, g, p, batch);
    which = 1 - which;
    d = dx;
  }
  /* A model whose first layer works in place leaves the input gradient in
   * a ping-pong buffer. */
  if (dx_out && d != dx_out)
    memcpy(dx_out, d, (size_t)batch * m->in * sizeof(float));
  return loss;
}

/* Output rows z (b, outputs) into prediction rows (b, pred width). */
static void head_output(const ens_model *m, float *pred, const float *z, int b) {
  const int T = m->arch.width;
  switch (m->arch.head) {
  case ENS_HEAD_GAUSSIAN:
    ens_gaussian_head(pred, z, b, T, ENS_VAR_FLOOR);
    break;
  case ENS_HEAD_MSE:
    for (int i = 0; i < b; i++) {
      memcpy(pred + (size_t)i * 2 * T, z + (size_t)i * T, (size_t)T * sizeof(float));
      memset(pred + (size_t)i * 2 * T + T, 0, (size_t)T * sizeof(float));
    }
    break;
  case ENS_HEAD_SOFTMAX:
  default:
    ens_softmax(pred, z, b, m->out);
    break;
  }
}

void ens_model_predict(ens_model *m, float *pred, const float *x, int n) {
  const size_t pw = (size_t)ens_arch_pred_width(&m->arch);
  for (int i = 0; i < n; i += m->batch_max) {
    int b = n - i < m->batch_max ? n - i : m->batch_max;
    const float *z = ens_model_forward(m, x + (size_t)i * m->in, b, ENS_PASS_EVAL, NULL);
    head_output(m, pred + (size_t)i * pw, z, b);
  }
}

void ens_model_predict_mc(ens_model *m, float *pred, const float *x, int n, long row0,
                          uint64_t seed, uint32_t member, uint32_t pass) {
  const size_t pw = (size_t)ens_arch_pred_width(&m->arch);
  m->mc_seed = seed;
  m->mc_member = member;
  m->mc_pass = pass;
  for (int i = 0; i < n; i += m->batch_max) {
    int b = n - i < m->batch_max ? n - i : m->batch_max;
    m->mc_row0 = row0 + i;
    const float *z = ens_model_forward(m, x + (size_t)i * m->in, b, ENS_PASS_MC, NULL);
    head_output(m, pred + (size_t)i * pw, z, b);
  }
}

void ens_model_features(ens_model *m, float *out, const float *x, int n) {
  for (int i = 0; i < n; i += m->batch_max) {
    int b = n - i < m->batch_max ? n - i : m->batch_max;
    const float *z = ens_model_forward(m, x + (size_t)i * m->in, b, ENS_PASS_EVAL, NULL);
    memcpy(out + (size_t)i * m->out, z, (size_t)b * m->out * sizeof(float));
  }
}

void ens_model_reestimate_bn(ens_model *m, const float *x, int n) {
  for (int i = 0; i < m->nlayers; i++) {
    ens_layer *l = &m->layers[i];
    ens_layer_table[l->kind].init_stats(l, m->stats + l->stat_off);
  }
  m->bn_batches = 0;
  for (int i = 0; i < n; i += m->batch_max) {
    int b = n - i < m->batch_max ? n - i : m->batch_max;
    if (b < 2) /* a single row has no batch variance */
      break;
    ens_model_forward(m, x + (size_t)i * m->in, b, ENS_PASS_BN_REESTIMATE, NULL);
  }
}

void ens_model_describe(const ens_model *m, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < m->nlayers && used < len; i++) {
    const ens_layer *l = &m->layers[i];
    int k = ens_layer_table[l->kind].describe(m, l, buf + used, len - used, i == 0);
    if (k < 0)
      break;
    used += (size_t)k;
  }
}

void ens_model_summary(const ens_model *m, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
#define PUT(...)                                                                                   \
  do {                                                                                             \
    if (used < len) {                                                                              \
      int k_ = snprintf(buf + used, len - used, __VA_ARGS__);                                      \
      used += k_ > 0 ? (size_t)k_ : 0;                                                             \
    }                                                                                              \
  } while (0)
  char shape[48];
  shape_text(shape, sizeof shape, m->layers[0].sin);
  PUT("  %-3s %-28s %-14s %10s\n", "", "input", shape, "params");
  for (int i = 0; i < m->nlayers; i++) {
    const ens_layer *l = &m->layers[i];
    char what[64];
    ens_layer_spec_text(what, sizeof what, &l->spec);
    shape_text(shape, sizeof shape, l->sout);
    PUT("  %-3d %-28s %-14s %10zu\n", i + 1, what, shape, l->nparam);
  }
  PUT("  %-3s %-28s %-14s %10zu\n", "", "total", "", m->nparams);
#undef PUT
}

void ens_model_head(const ens_model *m, float *pred, const float *z, int n) {
  head_output(m, pred, z, n);
}
