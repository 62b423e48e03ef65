/* The model: builds the layer table for a range of hidden blocks (plus the
 * output layer), points every tensor into flat buffers allocated once, and
 * runs forward, backward, prediction and batch-norm re-estimation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"
#include "ens/model.h"
#include "ens/nn.h"

/* Per-kind sizes: parameters, statistics and auxiliary activations. */
typedef struct {
  const char *name;
  size_t (*nparam)(int in, int out);
  size_t (*nstat)(int out);
  size_t (*naux)(int out, int batch_max);
} layer_sizes;

static size_t dense_nparam(int in, int out) { return (size_t)out * in + out; }
static size_t bn_nparam(int in, int out) {
  (void)in;
  return 2 * (size_t)out;
}
static size_t no_param(int in, int out) {
  (void)in;
  (void)out;
  return 0;
}
static size_t bn_nstat(int out) { return 2 * (size_t)out; }
static size_t no_stat(int out) {
  (void)out;
  return 0;
}
static size_t bn_naux(int out, int batch_max) { return (size_t)batch_max * out + out; }
static size_t mask_naux(int out, int batch_max) { return (size_t)batch_max * out; }
static size_t no_aux(int out, int batch_max) {
  (void)out;
  (void)batch_max;
  return 0;
}

static const layer_sizes layer_table[ENS_LAYER_KIND_COUNT] = {
    [ENS_LAYER_DENSE] = {"dense", dense_nparam, no_stat, no_aux},
    [ENS_LAYER_BATCHNORM] = {"batchnorm", bn_nparam, bn_nstat, bn_naux},
    [ENS_LAYER_RELU] = {"relu", no_param, no_stat, no_aux},
    [ENS_LAYER_DROPOUT] = {"dropout", no_param, no_stat, mask_naux},
};

void ens_arch_from_config(ens_arch *a, const ens_config *c, int in, ens_head_kind head,
                          int width) {
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
}

int ens_arch_pred_width(const ens_arch *a) {
  return a->head == ENS_HEAD_SOFTMAX ? a->width : 2 * a->width;
}

/* Fills layers (may be NULL to count) for blocks [first, last) + output. */
static int build_layers(ens_layer *layers, const ens_arch *a, int first, int last,
                        int with_output) {
  int n = 0;
  int width = first == 0 ? a->in : a->hidden[first - 1];
#define ADD(kind_, in_, out_, block_)                                                       \
  do {                                                                                      \
    if (layers)                                                                             \
      layers[n] = (ens_layer){.kind = (kind_), .in = (in_), .out = (out_), .block = (block_)}; \
    n++;                                                                                    \
  } while (0)
  for (int b = first; b < last; b++) {
    int h = a->hidden[b];
    ADD(ENS_LAYER_DENSE, width, h, b);
    if (a->batchnorm)
      ADD(ENS_LAYER_BATCHNORM, h, h, b);
    ADD(ENS_LAYER_RELU, h, h, b);
    if (a->dropout > 0.0f)
      ADD(ENS_LAYER_DROPOUT, h, h, b);
    width = h;
  }
  if (with_output)
    ADD(ENS_LAYER_DENSE, width, a->outputs, a->n_hidden);
#undef ADD
  return n;
}

static int check_range(const ens_arch *a, int first, int last, int with_output) {
  if (!a || a->in <= 0 || a->width < 1 || a->n_hidden < 0 || a->n_hidden > ENS_MAX_HIDDEN)
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
  ens_layer layers[4 * ENS_MAX_HIDDEN + 1];
  int n = build_layers(layers, a, first_block, last_block, with_output);
  size_t p = 0, s = 0;
  for (int i = 0; i < n; i++) {
    p += layer_table[layers[i].kind].nparam(layers[i].in, layers[i].out);
    s += layer_table[layers[i].kind].nstat(layers[i].out);
  }
  *nparams = p;
  *nstats = s;
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
  m->nlayers = build_layers(NULL, a, first_block, last_block, with_output);
  m->layers = calloc((size_t)m->nlayers, sizeof(ens_layer));
  if (!m->layers)
    return ENS_ENOMEM;
  build_layers(m->layers, a, first_block, last_block, with_output);

  /* Sizes first, then one allocation per buffer, then point into them. */
  size_t nact = 0;
  int maxw = m->layers[0].in;
  for (int i = 0; i < m->nlayers; i++) {
    ens_layer *l = &m->layers[i];
    const layer_sizes *t = &layer_table[l->kind];
    l->param_off = m->nparams;
    l->nparam = t->nparam(l->in, l->out);
    m->nparams += l->nparam;
    l->stat_off = m->nstats;
    l->nstat = t->nstat(l->out);
    m->nstats += l->nstat;
    nact += (size_t)batch_max * l->out + t->naux(l->out, batch_max);
    maxw = l->out > maxw ? l->out : maxw;
  }
  m->in = m->layers[0].in;
  m->out = m->layers[m->nlayers - 1].out;
  size_t nd = (size_t)batch_max * maxw;
  m->params = calloc(m->nparams ? m->nparams : 1, sizeof(float));
  m->grads = calloc(m->nparams ? m->nparams : 1, sizeof(float));
  m->stats = calloc(m->nstats ? m->nstats : 1, sizeof(float));
  int pw = with_output ? ens_arch_pred_width(a) : m->out;
  pw = pw > m->out ? pw : m->out;
  m->acts = calloc(nact + 2 * nd + (size_t)batch_max * pw, sizeof(float));
  if (!m->params || !m->grads || !m->stats || !m->acts) {
    ens_model_free(m);
    return ENS_ENOMEM;
  }
  float *p = m->acts;
  for (int i = 0; i < m->nlayers; i++) {
    ens_layer *l = &m->layers[i];
    l->y = p;
    p += (size_t)batch_max * l->out;
    size_t naux = layer_table[l->kind].naux(l->out, batch_max);
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
  memset(m, 0, sizeof(*m));
}

int ens_model_init(ens_model *m, ens_init_kind init, double init_std, double bias_init,
                   uint64_t seed, uint32_t member) {
  for (int i = 0; i < m->nlayers; i++) {
    ens_layer *l = &m->layers[i];
    float *p = m->params + l->param_off;
    float *s = m->stats + l->stat_off;
    if (l->kind == ENS_LAYER_BATCHNORM) {
      for (int j = 0; j < l->out; j++) {
        p[j] = 1.0f;          /* gamma */
        p[l->out + j] = 0.0f; /* beta */
        s[j] = 0.0f;          /* running mean */
        s[l->out + j] = 1.0f; /* running var */
      }
      continue;
    }
    if (l->kind != ENS_LAYER_DENSE)
      continue;
    ens_rng r;
    ens_rng_init(&r, seed, member, ENS_STREAM_INIT, (uint32_t)l->block);
    int is_output = l->block == m->arch.n_hidden;
    size_t nw = (size_t)l->out * l->in;
    /* Hidden layers feed a ReLU: He gain sqrt(2); the output layer is linear. */
    double relu_gain = is_output ? 1.0 : sqrt(2.0);
    switch (init) {
    case ENS_INIT_NORMAL:
      ens_init_normal(p, nw, init_std, &r);
      break;
    case ENS_INIT_XAVIER: /* Glorot & Bengio 2010: Var = 2 / (fan_in + fan_out) */
      ens_init_normal(p, nw, sqrt(2.0 / (l->in + l->out)), &r);
      break;
    case ENS_INIT_HE: /* He et al. 2015: Var = 2 / fan_in (gain 1 for the output) */
      ens_init_normal(p, nw, relu_gain / sqrt((double)l->in), &r);
      break;
    case ENS_INIT_ORTHOGONAL: {
      int ret = ens_init_orthogonal(p, l->out, l->in, relu_gain, &r);
      if (ret)
        return ret;
      break;
    }
    }
    /* bias_init targets ReLU units (a small positive value keeps them alive);
     * the output layer's bias starts at 0 so no class is favoured. */
    for (int j = 0; j < l->out; j++)
      p[nw + j] = is_output ? 0.0f : (float)bias_init;
  }
  return 0;
}

/* Dropout of an MC pass: row i of the batch is row mc_row0 + i of the data,
 * and its mask is block (row * ceil(width/4)) of the stream keyed by
 * (seed, member, ENS_STREAM_MC, pass * 64 + layer). */
static void mc_dropout(ens_model *m, ens_layer *l, const float *x, int batch, uint32_t layer) {
  uint32_t blocks = (uint32_t)((l->out + 3) / 4);
  for (int i = 0; i < batch; i++) {
    ens_rng r;
    ens_rng_init(&r, m->mc_seed, m->mc_member, ENS_STREAM_MC, m->mc_pass * 64u + layer);
    ens_rng_seek(&r, (uint32_t)(m->mc_row0 + i) * blocks);
    size_t off = (size_t)i * l->out;
    ens_dropout_forward(l->y + off, l->aux + off, x + off, m->arch.dropout, (size_t)l->out, &r);
  }
}

const float *ens_model_forward(ens_model *m, const float *x, int batch, ens_pass pass,
                               ens_rng *r) {
  const float *cur = x;
  float bn_mom = m->bn_momentum;
  if (pass == ENS_PASS_BN_REESTIMATE)
    bn_mom = 1.0f / (float)(m->bn_batches + 1); /* cumulative average */
  for (int i = 0; i < m->nlayers; i++) {
    ens_layer *l = &m->layers[i];
    const float *p = m->params + l->param_off;
    float *s = m->stats + l->stat_off;
    size_t n = (size_t)batch * l->out;
    l->x = cur;
    switch (l->kind) {
    case ENS_LAYER_DENSE:
      ens_dense_forward(l->y, cur, p, p + (size_t)l->out * l->in, batch, l->in, l->out);
      cur = l->y;
      break;
    case ENS_LAYER_BATCHNORM:
      if (pass == ENS_PASS_EVAL || pass == ENS_PASS_MC)
        ens_batchnorm_forward_eval(l->y, cur, p, p + l->out, s, s + l->out, batch, l->out,
                                   m->bn_eps);
      else
        ens_batchnorm_forward_train(l->y, l->aux, l->aux + (size_t)m->batch_max * l->out, s,
                                    s + l->out, cur, p, p + l->out, batch, l->out, bn_mom,
                                    m->bn_eps);
      cur = l->y;
      break;
    case ENS_LAYER_RELU:
      ens_relu_forward(l->y, cur, n);
      cur = l->y;
      break;
    case ENS_LAYER_DROPOUT:
      if (pass == ENS_PASS_TRAIN) {
        ens_dropout_forward(l->y, l->aux, cur, m->arch.dropout, n, r);
        cur = l->y;
      } else if (pass == ENS_PASS_MC) {
        mc_dropout(m, l, cur, batch, (uint32_t)i);
        cur = l->y;
      } /* else identity: the next layer reads the input directly */
      break;
    case ENS_LAYER_KIND_COUNT:
      break;
    }
  }
  if (pass == ENS_PASS_BN_REESTIMATE)
    m->bn_batches++;
  return cur;
}

double ens_model_loss_backward(ens_model *m, const int32_t *labels, const float *targets,
                               int batch, float *dx_out) {
  /* Layer inputs were recorded by the forward pass (l->x); every model
   * starts with a dense layer, so layer 0 writes dx_out directly. */
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
  for (int i = m->nlayers - 1; i >= 0; i--) {
    ens_layer *l = &m->layers[i];
    float *g = m->grads + l->param_off;
    const float *p = m->params + l->param_off;
    size_t n = (size_t)batch * l->out;
    switch (l->kind) {
    case ENS_LAYER_DENSE: {
      float *dx = i == 0 ? dx_out : m->dbuf[1 - which];
      ens_dense_backward(dx, g, g + (size_t)l->out * l->in, d, l->x, p, batch, l->in, l->out);
      which = 1 - which;
      d = dx;
      break;
    }
    case ENS_LAYER_BATCHNORM:
      ens_batchnorm_backward(d, g, g + l->out, d, l->aux, p,
                             l->aux + (size_t)m->batch_max * l->out, batch, l->out);
      break;
    case ENS_LAYER_RELU:
      ens_relu_backward(d, d, l->y, n);
      break;
    case ENS_LAYER_DROPOUT:
      ens_dropout_backward(d, d, l->aux, n);
      break;
    case ENS_LAYER_KIND_COUNT:
      break;
    }
  }
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
    if (l->kind != ENS_LAYER_BATCHNORM)
      continue;
    float *s = m->stats + l->stat_off;
    for (int j = 0; j < l->out; j++) {
      s[j] = 0.0f;
      s[l->out + j] = 1.0f;
    }
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
    int k;
    if (l->kind == ENS_LAYER_DENSE)
      k = snprintf(buf + used, len - used, "%sdense(%d,%d)", i ? " " : "", l->in, l->out);
    else if (l->kind == ENS_LAYER_DROPOUT)
      k = snprintf(buf + used, len - used, " dropout(%g)", (double)m->arch.dropout);
    else
      k = snprintf(buf + used, len - used, " %s(%d)", layer_table[l->kind].name, l->out);
    if (k < 0)
      break;
    used += (size_t)k;
  }
}
