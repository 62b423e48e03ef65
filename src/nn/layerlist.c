/* The layer-list syntax of `[model] layers` (and `[search] layers`): items
 * separated by commas, each a kind and its numbers, e.g.
 *   conv 32 3 pad 1, bn, relu, maxpool 2, flatten, dense 128, relu
 * Parsing fills an architecture's layer specs and blocks; shapes are checked
 * later against the data (ens_arch_check). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ens/error.h"
#include "ens/model.h"

/* One word of an item: the next run of non-blanks (at most 31 chars). */
static const char *next_word(const char *p, const char *end, char *w, size_t cap) {
  while (p < end && isspace((unsigned char)*p))
    p++;
  size_t n = 0;
  while (p < end && !isspace((unsigned char)*p)) {
    if (n + 1 < cap)
      w[n++] = *p;
    p++;
  }
  w[n] = '\0';
  return p;
}

static int parse_int(const char *s, int lo, int *v) {
  char *e;
  errno = 0;
  long x = strtol(s, &e, 10);
  if (!*s || *e || errno || x < lo || x > 1 << 20)
    return -1;
  *v = (int)x;
  return 0;
}

/* Parses one item [p, end) into *sp; returns 0 or -1 with err. */
static int parse_item(const char *p, const char *end, ens_layer_spec *sp, int index, char *err,
                      size_t errlen) {
  char words[8][32];
  int nw = 0;
  for (;;) {
    char w[32];
    p = next_word(p, end, w, sizeof w);
    if (!w[0])
      break;
    if (nw == 8) {
      snprintf(err, errlen, "layer %d: too many words", index);
      return -1;
    }
    strcpy(words[nw++], w);
  }
  if (nw == 0) {
    snprintf(err, errlen, "layer %d is empty (two commas in a row?)", index);
    return -1;
  }
  const char *kind = words[0];
  memset(sp, 0, sizeof(*sp));
  sp->stride = 1;
#define BAD(...)                                                                                   \
  do {                                                                                             \
    int k_ = snprintf(err, errlen, "layer %d (%s): ", index, kind);                                \
    if (k_ > 0 && (size_t)k_ < errlen)                                                             \
      snprintf(err + k_, errlen - (size_t)k_, __VA_ARGS__);                                        \
    return -1;                                                                                     \
  } while (0)
  if (!strcasecmp(kind, "dense") || !strcasecmp(kind, "linear")) {
    sp->kind = ENS_LAYER_DENSE;
    if (nw != 2 || parse_int(words[1], 1, &sp->n))
      BAD("expected 'dense UNITS' with UNITS >= 1");
  } else if (!strcasecmp(kind, "conv")) {
    sp->kind = ENS_LAYER_CONV;
    if (nw < 3 || parse_int(words[1], 1, &sp->n) || parse_int(words[2], 1, &sp->k))
      BAD("expected 'conv CHANNELS KERNEL [stride S] [pad P]' with CHANNELS, KERNEL >= 1");
    for (int i = 3; i < nw; i += 2) {
      int *dst = !strcasecmp(words[i], "stride") ? &sp->stride
                 : !strcasecmp(words[i], "pad")  ? &sp->pad
                                                 : NULL;
      if (!dst || i + 1 >= nw || parse_int(words[i + 1], dst == &sp->pad ? 0 : 1, dst))
        BAD("expected 'stride S' (S >= 1) or 'pad P' (P >= 0) after the kernel size, got '%s'",
            words[i]);
    }
  } else if (!strcasecmp(kind, "maxpool") || !strcasecmp(kind, "avgpool")) {
    sp->kind = tolower((unsigned char)kind[0]) == 'm' ? ENS_LAYER_MAXPOOL : ENS_LAYER_AVGPOOL;
    if ((nw != 2 && nw != 4) || parse_int(words[1], 1, &sp->k) ||
        (nw == 4 && (strcasecmp(words[2], "stride") || parse_int(words[3], 1, &sp->stride))))
      BAD("expected '%s SIZE [stride S]' with SIZE, S >= 1", kind);
    if (nw == 2)
      sp->stride = sp->k;
  } else if (!strcasecmp(kind, "bn") || !strcasecmp(kind, "batchnorm")) {
    sp->kind = ENS_LAYER_BATCHNORM;
  } else if (!strcasecmp(kind, "relu")) {
    sp->kind = ENS_LAYER_RELU;
  } else if (!strcasecmp(kind, "dropout")) {
    sp->kind = ENS_LAYER_DROPOUT;
    char *e;
    double p_ = nw == 2 ? strtod(words[1], &e) : -1.0;
    if (nw != 2 || *e || !(p_ >= 0.0 && p_ < 1.0))
      BAD("expected 'dropout P' with 0 <= P < 1");
    sp->p = (float)p_;
  } else if (!strcasecmp(kind, "gap") || !strcasecmp(kind, "globalavgpool")) {
    sp->kind = ENS_LAYER_GAP;
  } else if (!strcasecmp(kind, "flatten")) {
    sp->kind = ENS_LAYER_FLATTEN;
  } else {
    snprintf(err, errlen,
             "layer %d: unknown kind '%s' (kinds: conv, dense, bn, relu, dropout, maxpool, "
             "avgpool, gap, flatten)",
             index, kind);
    return -1;
  }
  if (sp->kind == ENS_LAYER_BATCHNORM || sp->kind == ENS_LAYER_RELU || sp->kind == ENS_LAYER_GAP ||
      sp->kind == ENS_LAYER_FLATTEN) {
    if (nw != 1)
      BAD("takes no arguments, got '%s'", words[1]);
  }
#undef BAD
  return 0;
}

int ens_layers_parse(const char *text, ens_arch *a, char *err, size_t errlen) {
  int n = 0, weights = 0, block = 0;
  const char *p = text;
  while (*p && isspace((unsigned char)*p))
    p++;
  if (!*p) {
    snprintf(err, errlen, "the layer list is empty");
    return ENS_ECONFIG;
  }
  for (;;) {
    const char *e = strchr(p, ',');
    const char *end = e ? e : p + strlen(p);
    if (n == ENS_MAX_LAYERS) {
      snprintf(err, errlen, "more than %d layers", ENS_MAX_LAYERS);
      return ENS_ECONFIG;
    }
    ens_layer_spec sp;
    if (parse_item(p, end, &sp, n + 1, err, errlen))
      return ENS_ECONFIG;
    /* A block starts at each weight layer after the first. */
    if (sp.kind == ENS_LAYER_DENSE || sp.kind == ENS_LAYER_CONV) {
      if (weights++ > 0)
        block++;
    }
    sp.block = block;
    if (a)
      a->spec[n] = sp;
    n++;
    if (!e)
      break;
    p = e + 1;
  }
  if (a) {
    a->nspec = n;
    a->n_hidden = block + 1;
  }
  return 0;
}

int ens_layers_check(const char *key, const char *value, char *msg, size_t len) {
  if (!value[0])
    return 0;
  char why[256];
  if (ens_layers_parse(value, NULL, why, sizeof why)) {
    snprintf(msg, len, "[model] %s: %s", key, why);
    return ENS_ECONFIG;
  }
  return 0;
}

int ens_layer_spec_text(char *buf, size_t len, const ens_layer_spec *sp) {
  switch (sp->kind) {
  case ENS_LAYER_DENSE:
    return snprintf(buf, len, "dense %d", sp->n);
  case ENS_LAYER_CONV:
    return snprintf(buf, len, "conv %d %d stride %d pad %d", sp->n, sp->k, sp->stride, sp->pad);
  case ENS_LAYER_MAXPOOL:
  case ENS_LAYER_AVGPOOL:
    return snprintf(buf, len, "%s %d stride %d",
                    sp->kind == ENS_LAYER_MAXPOOL ? "maxpool" : "avgpool", sp->k, sp->stride);
  case ENS_LAYER_DROPOUT:
    return snprintf(buf, len, "dropout %g", (double)sp->p);
  case ENS_LAYER_BATCHNORM:
    return snprintf(buf, len, "bn");
  default:
    return snprintf(buf, len, "%s", ens_layer_kind_name(sp->kind));
  }
}

void ens_layers_format(char *buf, size_t len, const ens_arch *a) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < a->nspec && used < len; i++) {
    if (i) {
      int k = snprintf(buf + used, len - used, ", ");
      used += k > 0 ? (size_t)k : 0;
      if (used >= len)
        break;
    }
    int k = ens_layer_spec_text(buf + used, len - used, &a->spec[i]);
    used += k > 0 ? (size_t)k : 0;
  }
}
