/* Random hyperparameter search: parsing the [search] ranges and drawing a
 * member's values from them. Each key draws from its own generator
 * (seed, k, ENS_STREAM_SEARCH, key index), so adding or fixing one key never
 * changes what the others draw. */
#include "ens/search.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ens/error.h"
#include "ens/model.h"
#include "ens/rng.h"

#define MAX_CHOICES 32

typedef enum { S_LOG_RANGE, S_RANGE, S_INT_CHOICE, S_HIDDEN_CHOICE, S_INIT_CHOICE, S_BOOL_CHOICE,
               S_LAYERS_CHOICE } skind;

typedef struct {
  const char *key;
  skind kind;
  size_t off;        /* offset of the text in ens_config */
  double lo, hi;     /* bounds of a range value (inclusive) */
  const char *what;  /* expected syntax, for messages */
} search_key;

#define OFF(f) offsetof(ens_config, f)
/* Order fixes the substream of each key: append only. */
static const search_key keys[] = {
    {"lr", S_LOG_RANGE, OFF(search_lr), 1e-12, 1e3,
     "'lo,hi' (log-uniform, 0 < lo <= hi) or one fixed value, e.g. 0.01,0.2"},
    {"weight_decay", S_LOG_RANGE, OFF(search_weight_decay), 1e-12, 1.0,
     "'lo,hi' (log-uniform, 0 < lo <= hi <= 1) or one fixed value (0 allowed), e.g. 1e-5,1e-3"},
    {"momentum", S_RANGE, OFF(search_momentum), 0.0, 0.999999,
     "'lo,hi' (uniform, 0 <= lo <= hi < 1) or one fixed value, e.g. 0.85,0.95"},
    {"dropout", S_RANGE, OFF(search_dropout), 0.0, 0.95,
     "'lo,hi' (uniform, 0 <= lo <= hi <= 0.95) or one fixed value, e.g. 0,0.3"},
    {"batch", S_INT_CHOICE, OFF(search_batch), 2, 1 << 20,
     "a comma-separated list of batch sizes >= 2 to choose from, e.g. 64,128,256"},
    {"hidden", S_HIDDEN_CHOICE, OFF(search_hidden), 1, INT_MAX,
     "width lists separated by '|', e.g. 512,256 | 1024,512 | 512,256,128"},
    {"init", S_INIT_CHOICE, OFF(search_init), 0, 0,
     "a comma-separated list of normal, xavier, he, orthogonal, torch"},
    {"batchnorm", S_BOOL_CHOICE, OFF(search_batchnorm), 0, 1,
     "a comma-separated list of true/false to choose from, e.g. true,false"},
    {"layers", S_LAYERS_CHOICE, OFF(search_layers), 0, 0,
     "layer lists separated by '|' (needs [model] layers), e.g. conv 16 3 pad 1, relu, "
     "maxpool 2, flatten | conv 32 5 pad 2, bn, relu, gap"},
};
#define N_SKEYS (sizeof keys / sizeof keys[0])

static const char *const init_names[] = {"normal", "xavier", "he", "orthogonal", "torch"};

static const search_key *find(const char *key) {
  for (size_t i = 0; i < N_SKEYS; i++)
    if (strcmp(keys[i].key, key) == 0)
      return &keys[i];
  return NULL;
}

/* Splits s at `sep` into at most max trimmed pieces copied into out[i]
 * (each of size cap). Returns the count, or -1 when there are too many, a
 * piece is empty, or a piece does not fit. */
static int split(const char *s, char sep, char out[][ENS_SEARCH_MAX], int max) {
  int n = 0;
  const char *p = s;
  for (;;) {
    const char *e = strchr(p, sep);
    size_t len = e ? (size_t)(e - p) : strlen(p);
    while (len && isspace((unsigned char)*p)) {
      p++;
      len--;
    }
    while (len && isspace((unsigned char)p[len - 1]))
      len--;
    if (n == max || len == 0 || len >= ENS_SEARCH_MAX)
      return -1;
    memcpy(out[n], p, len);
    out[n][len] = '\0';
    n++;
    if (!e)
      return n;
    p = e + 1;
  }
}

static int parse_num(const char *s, double *v) {
  char *end;
  errno = 0;
  *v = strtod(s, &end);
  return end != s && !*end && errno != ERANGE && isfinite(*v);
}

static int parse_bool(const char *s, int *v) {
  if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on") || !strcmp(s, "1"))
    *v = 1;
  else if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off") ||
           !strcmp(s, "0"))
    *v = 0;
  else
    return 0;
  return 1;
}

/* "512,256" into widths; returns the count or -1. */
static int parse_widths(const char *s, int *w) {
  char parts[ENS_MAX_HIDDEN + 1][ENS_SEARCH_MAX];
  int n = split(s, ',', parts, ENS_MAX_HIDDEN + 1);
  if (n < 1 || n > ENS_MAX_HIDDEN)
    return -1;
  for (int i = 0; i < n; i++) {
    double v;
    if (!parse_num(parts[i], &v) || v < 1 || v > INT_MAX || v != floor(v))
      return -1;
    w[i] = (int)v;
  }
  return n;
}

/* Parses a value into its choices or range. Returns the number of choices
 * (ranges: 1 for a fixed value, 2 for lo,hi), 0 for an empty value, -1 when
 * malformed. */
typedef struct {
  int n;
  double v[MAX_CHOICES];                        /* ranges, ints, bools, inits */
  int widths[MAX_CHOICES][ENS_MAX_HIDDEN];       /* hidden */
  int nw[MAX_CHOICES];
} parsed;

static int parse_value(const search_key *k, const char *value, parsed *p) {
  char parts[MAX_CHOICES][ENS_SEARCH_MAX];
  memset(p, 0, sizeof(*p));
  const char *s = value;
  while (isspace((unsigned char)*s))
    s++;
  if (!*s)
    return 0;
  int n = split(s, k->kind == S_HIDDEN_CHOICE || k->kind == S_LAYERS_CHOICE ? '|' : ',', parts,
                MAX_CHOICES);
  if (n < 1)
    return -1;
  for (int i = 0; i < n; i++) {
    double v;
    int b;
    switch (k->kind) {
    case S_LOG_RANGE:
    case S_RANGE:
      if (n > 2 || !parse_num(parts[i], &v) || v > k->hi)
        return -1;
      /* A fixed value may be 0 for weight decay; a log range needs lo > 0. */
      if (k->kind == S_LOG_RANGE ? (n == 2 ? v < k->lo : v < 0) : v < k->lo)
        return -1;
      if (k->kind == S_LOG_RANGE && n == 1 && strcmp(k->key, "lr") == 0 && v <= 0)
        return -1;
      p->v[i] = v;
      break;
    case S_INT_CHOICE:
      if (!parse_num(parts[i], &v) || v != floor(v) || v < k->lo || v > k->hi)
        return -1;
      p->v[i] = v;
      break;
    case S_HIDDEN_CHOICE:
      if ((p->nw[i] = parse_widths(parts[i], p->widths[i])) < 0)
        return -1;
      break;
    case S_INIT_CHOICE:
      b = -1;
      for (int j = 0; j < (int)(sizeof init_names / sizeof init_names[0]); j++)
        if (strcasecmp(parts[i], init_names[j]) == 0)
          b = j;
      if (b < 0)
        return -1;
      p->v[i] = b;
      break;
    case S_BOOL_CHOICE:
      if (!parse_bool(parts[i], &b))
        return -1;
      p->v[i] = b;
      break;
    case S_LAYERS_CHOICE: {
      char why[256];
      if (ens_layers_parse(parts[i], NULL, why, sizeof why))
        return -1;
      break;
    }
    }
  }
  if ((k->kind == S_LOG_RANGE || k->kind == S_RANGE) && n == 2 && p->v[0] > p->v[1])
    return -1;
  p->n = n;
  return n;
}

int ens_search_check(const char *key, const char *value, char *msg, size_t len) {
  const search_key *k = find(key);
  parsed p;
  if (!k) {
    ens_errorf(msg, len, "[search] %s: not a search key", key);
    return ENS_ECONFIG;
  }
  if (parse_value(k, value, &p) < 0) {
    ens_errorf(msg, len, "[search] %s: expected %s (or empty: not drawn), got '%.80s'", key,
               k->what, value);
    return ENS_ECONFIG;
  }
  return 0;
}

static const char *text_of(const ens_config *c, const search_key *k) {
  return (const char *)c + k->off;
}

void ens_search_member_config(ens_config *out, const ens_config *c, int k) {
  ens_search_member_config_in(out, c, k, 0, 0);
}

void ens_search_member_config_in(ens_config *out, const ens_config *c, int k, int h, int w) {
  *out = *c;
  if (c->mode != ENS_MODE_SEARCH)
    return;
  for (size_t i = 0; i < N_SKEYS; i++) {
    const search_key *s = &keys[i];
    parsed p;
    if (parse_value(s, text_of(c, s), &p) <= 0)
      continue;
    ens_rng r;
    ens_rng_init(&r, c->seed, (uint32_t)k, ENS_STREAM_SEARCH, (uint32_t)i);
    double u = ens_rng_uniform(&r);
    int pick = (int)ens_rng_below(&r, (uint32_t)p.n);
    double v = p.v[0];
    if (s->kind == S_LOG_RANGE && p.n == 2)
      v = exp(log(p.v[0]) + u * (log(p.v[1]) - log(p.v[0])));
    else if (s->kind == S_RANGE && p.n == 2)
      v = p.v[0] + u * (p.v[1] - p.v[0]);
    else if (s->kind != S_LOG_RANGE && s->kind != S_RANGE)
      v = p.v[pick];
    if (!strcmp(s->key, "lr"))
      out->lr = v;
    else if (!strcmp(s->key, "weight_decay"))
      out->weight_decay = v;
    else if (!strcmp(s->key, "momentum"))
      out->momentum = v;
    else if (!strcmp(s->key, "dropout"))
      out->dropout = v;
    else if (!strcmp(s->key, "batch"))
      out->batch = (int)v;
    else if (!strcmp(s->key, "init"))
      out->init = (ens_init_kind)(int)v;
    else if (!strcmp(s->key, "batchnorm"))
      out->batchnorm = (int)v;
    else if (!strcmp(s->key, "layers")) {
      char parts[MAX_CHOICES][ENS_SEARCH_MAX];
      split(text_of(c, s) + strspn(text_of(c, s), " \t"), '|', parts, MAX_CHOICES);
      snprintf(out->model_layers, sizeof out->model_layers, "%s", parts[pick]);
    } else if (!strcmp(s->key, "hidden")) {
      out->n_hidden = p.nw[pick];
      memset(out->hidden, 0, sizeof(out->hidden));
      memcpy(out->hidden, p.widths[pick], (size_t)p.nw[pick] * sizeof(int));
    }
  }
  /* The conv generator (search_conv.c): member k's own layer list, with its
   * drawn (or [model]) dropout before the output layer. */
  ens_search_conv_arch ca;
  if (ens_search_conv_draw(&ca, c, k, h, w) == 0 &&
      ens_search_conv_format(out->model_layers, sizeof out->model_layers, &ca, out->dropout))
    out->model_layers[0] = '\0'; /* cannot happen within the keys' bounds */
  /* A cosine floor above a drawn peak would invert the schedule. */
  if (out->lr_min > out->lr)
    out->lr_min = out->lr;
}

int ens_search_varies_arch(const ens_config *c) {
  if (c->mode != ENS_MODE_SEARCH)
    return 0;
  parsed p;
  return parse_value(find("hidden"), c->search_hidden, &p) > 1 ||
         parse_value(find("batchnorm"), c->search_batchnorm, &p) > 1 ||
         parse_value(find("layers"), c->search_layers, &p) > 1 || ens_search_conv_on(c);
}

void ens_search_describe(const ens_config *mc, char *buf, size_t len) {
  char h[128];
  size_t used = 0;
  h[0] = '\0';
  for (int i = 0; i < mc->n_hidden && used < sizeof(h); i++)
    used += (size_t)snprintf(h + used, sizeof(h) - used, "%s%d", i ? "," : "", mc->hidden[i]);
  if (mc->model_layers[0]) {
    snprintf(buf, len, "lr=%.3g wd=%.2g mom=%.3f batch=%d init=%s layers=%s", mc->lr,
             mc->weight_decay, mc->momentum, mc->batch, ens_init_name(mc->init),
             mc->model_layers);
    return;
  }
  snprintf(buf, len, "lr=%.3g wd=%.2g mom=%.3f drop=%.2f batch=%d hidden=%s init=%s bn=%d",
           mc->lr, mc->weight_decay, mc->momentum, mc->dropout, mc->batch, h,
           ens_init_name(mc->init), mc->batchnorm);
}

void ens_search_print_help(FILE *out) {
  fprintf(out, "[search] values (mode = search; member k draws its own, keyed by (seed, k)):\n");
  for (size_t i = 0; i < N_SKEYS; i++)
    fprintf(out, "  %-13s %s\n", keys[i].key, keys[i].what);
  fprintf(out, "  An empty value is not drawn: the [model] or [train] value is used.\n");
  fprintf(out, "[search] conv architecture generator (on when conv_blocks is set; member k builds "
               "its own layer list:\n  blocks of conv(s), [bn], relu and a 2x2 pooling, then "
               "flatten or gap, [dense, [bn], relu], [dropout]):\n");
  ens_search_conv_print_help(out);
}
