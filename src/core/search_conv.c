/* The conv architecture generator of a search: [search] conv_blocks and its
 * companion keys draw member k's depth, widths, kernel sizes, batch norm,
 * pooling and dense head, and build its layer list from them.
 *
 * Every key draws from its own generator (seed, k, ENS_STREAM_SEARCH,
 * ENS_SEARCH_CONV_SUBSTREAM + key index), so a draw depends on nothing but
 * the configuration, k and the input image's height and width. Each value is
 * a set of candidates and a draw picks one uniformly: "lo,hi" of an integer
 * key is every integer in between, "lo,hi" of a width is lo, 2 lo, 4 lo, ...
 * up to hi (log-uniform over powers of two), "a | b | c" is those widths.
 *
 * The depth rule: every block ends in a 2x2 pooling that halves the image,
 * so an H x W input allows P blocks, P being how many times H and W can both
 * be halved exactly. The depth candidates above P are dropped before the
 * draw (the draw itself never depends on anything else), and a range whose
 * lowest depth exceeds P can never fit: ens_search_conv_fit says so. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ens/error.h"
#include "ens/rng.h"
#include "ens/search.h"

#define CMAX 64 /* candidates of one key */

typedef enum { C_INT_RANGE, C_WIDTH, C_ODD_LIST, C_BOOL_LIST, C_WORD_LIST } ckind;

typedef struct {
  const char *key;
  ckind kind;
  size_t off; /* offset of the text in ens_config */
  int lo, hi; /* bounds of a candidate */
  const char *const *words;
  const char *what; /* expected syntax, for messages and --help */
} conv_key;

static const char *const pool_words[] = {"max", "avg", NULL};
static const char *const end_words[] = {"flatten", "gap", NULL};

#define OFF(f) offsetof(ens_config, f)
/* Order fixes the substream of each key: append only. */
static const conv_key ckeys[] = {
    {"conv_blocks", C_INT_RANGE, OFF(search_conv_blocks), 1, ENS_SEARCH_CONV_MAX_BLOCKS, NULL,
     "'lo,hi' or one value: conv blocks (each: convs, pooling 2), 1 to 8; the image may lower "
     "hi (empty = no conv generator)"},
    {"conv_width", C_WIDTH, OFF(search_conv_width), 1, 4096, NULL,
     "first block's channels: 'lo,hi' (lo, 2lo, 4lo, ... <= hi, log-uniform), 'a | b | c' or "
     "one value, 1 to 4096"},
    {"conv_grow", C_BOOL_LIST, OFF(search_conv_grow), 0, 1, NULL,
     "true/false choices: channels double from block to block (else every block has the "
     "first's)"},
    {"conv_kernel", C_ODD_LIST, OFF(search_conv_kernel), 1, 15, NULL,
     "comma-separated odd kernel sizes, drawn per block (padding keeps the size), e.g. 3,5"},
    {"conv_per_block", C_INT_RANGE, OFF(search_conv_per_block), 1, 2, NULL,
     "'lo,hi' or one value: conv layers per block, 1 or 2"},
    {"conv_bn", C_BOOL_LIST, OFF(search_conv_bn), 0, 1, NULL,
     "true/false choices: batch norm after every conv and the dense layer"},
    {"pool", C_WORD_LIST, OFF(search_pool), 0, 1, pool_words,
     "choices of max, avg: the 2x2 pooling that ends each block"},
    {"conv_end", C_WORD_LIST, OFF(search_conv_end), 0, 1, end_words,
     "choices of flatten, gap: how the conv blocks end"},
    {"dense", C_WIDTH, OFF(search_dense), 0, 65536, NULL,
     "dense layer before the output: 'lo,hi' (powers of two from lo, log-uniform), "
     "'a | b' or one value; 0 = none"},
};
#define N_CKEYS (sizeof ckeys / sizeof ckeys[0])
enum { K_BLOCKS, K_WIDTH, K_GROW, K_KERNEL, K_PER_BLOCK, K_BN, K_POOL, K_END, K_DENSE };

typedef struct {
  int n;
  int v[CMAX];
} cands;

static const conv_key *cfind(const char *key) {
  for (size_t i = 0; i < N_CKEYS; i++)
    if (strcmp(ckeys[i].key, key) == 0)
      return &ckeys[i];
  return NULL;
}

/* Trimmed copy of [p, p+len) into out (cap bytes); -1 when empty or too long. */
static int trim(const char *p, size_t len, char *out, size_t cap) {
  while (len && isspace((unsigned char)*p))
    p++, len--;
  while (len && isspace((unsigned char)p[len - 1]))
    len--;
  if (!len || len >= cap)
    return -1;
  memcpy(out, p, len);
  out[len] = '\0';
  return 0;
}

static int parse_int(const char *s, int lo, int hi, int *v) {
  char *e;
  errno = 0;
  long x = strtol(s, &e, 10);
  if (e == s || *e || errno || x < lo || x > hi)
    return -1;
  *v = (int)x;
  return 0;
}

static int add(cands *c, int v) {
  for (int i = 0; i < c->n; i++)
    if (c->v[i] == v)
      return -1; /* a repeated choice would weigh twice: refuse it */
  if (c->n == CMAX)
    return -1;
  c->v[c->n++] = v;
  return 0;
}

/* The candidates of one value; -1 when malformed. An empty value gives the
 * key's default (only conv_blocks has none: then the generator is off). */
static int parse_cands(const conv_key *k, const char *value, cands *c) {
  char parts[CMAX][32];
  int np = 0;
  memset(c, 0, sizeof *c);
  const char *s = value;
  char sep = k->kind == C_WIDTH && strchr(s, '|') ? '|' : ',';
  for (;;) {
    const char *e = strchr(s, sep);
    size_t len = e ? (size_t)(e - s) : strlen(s);
    if (np == CMAX || trim(s, len, parts[np], sizeof parts[np]))
      return -1;
    np++;
    if (!e)
      break;
    s = e + 1;
  }
  int a, b;
  switch (k->kind) {
  case C_INT_RANGE:
    if (np > 2 || parse_int(parts[0], k->lo, k->hi, &a) ||
        parse_int(parts[np - 1], k->lo, k->hi, &b) || a > b)
      return -1;
    for (int v = a; v <= b; v++)
      add(c, v);
    break;
  case C_WIDTH:
    if (sep == ',' && np == 2) { /* lo, 2 lo, 4 lo, ... <= hi */
      if (parse_int(parts[0], k->lo > 1 ? k->lo : 1, k->hi, &a) ||
          parse_int(parts[1], k->lo > 1 ? k->lo : 1, k->hi, &b) || a > b)
        return -1;
      for (long v = a; v <= b; v *= 2)
        add(c, (int)v);
      break;
    }
    if (sep == ',' && np > 2)
      return -1;
    for (int i = 0; i < np; i++)
      if (parse_int(parts[i], k->lo, k->hi, &a) || add(c, a))
        return -1;
    break;
  case C_ODD_LIST:
    for (int i = 0; i < np; i++)
      if (parse_int(parts[i], k->lo, k->hi, &a) || a % 2 == 0 || add(c, a))
        return -1;
    break;
  case C_BOOL_LIST:
    for (int i = 0; i < np; i++) {
      const char *w = parts[i];
      if (!strcasecmp(w, "true") || !strcasecmp(w, "yes") || !strcasecmp(w, "on") ||
          !strcmp(w, "1"))
        a = 1;
      else if (!strcasecmp(w, "false") || !strcasecmp(w, "no") || !strcasecmp(w, "off") ||
               !strcmp(w, "0"))
        a = 0;
      else
        return -1;
      if (add(c, a))
        return -1;
    }
    break;
  case C_WORD_LIST:
    for (int i = 0; i < np; i++) {
      a = -1;
      for (int j = 0; k->words[j]; j++)
        if (!strcasecmp(parts[i], k->words[j]))
          a = j;
      if (a < 0 || add(c, a))
        return -1;
    }
    break;
  }
  return c->n > 0 ? 0 : -1;
}

static const char *text_of(const ens_config *c, const conv_key *k) {
  return (const char *)c + k->off;
}

static int blank(const char *s) {
  while (isspace((unsigned char)*s))
    s++;
  return !*s;
}

int ens_search_conv_check(const char *key, const char *value, char *msg, size_t len) {
  const conv_key *k = cfind(key);
  cands c;
  if (!k) {
    ens_errorf(msg, len, "[search] %s: not a search key", key);
    return ENS_ECONFIG;
  }
  if (blank(value)) {
    if (k == &ckeys[K_BLOCKS])
      return 0;
    ens_errorf(msg, len, "[search] %s: expected %s, got an empty value", key, k->what);
    return ENS_ECONFIG;
  }
  if (parse_cands(k, value, &c)) {
    ens_errorf(msg, len, "[search] %s: expected %s (no choice twice), got '%.80s'", key, k->what,
               value);
    return ENS_ECONFIG;
  }
  return 0;
}

int ens_search_conv_on(const ens_config *c) {
  return c->mode == ENS_MODE_SEARCH && !blank(c->search_conv_blocks);
}

int ens_search_conv_depth_limit(int h, int w) {
  int p = 0;
  while (h >= 2 && w >= 2 && h % 2 == 0 && w % 2 == 0 && p < ENS_SEARCH_CONV_MAX_BLOCKS) {
    h /= 2;
    w /= 2;
    p++;
  }
  return p;
}

int ens_search_conv_fit(const ens_config *c, int image, int h, int w, char *why, size_t len) {
  if (!ens_search_conv_on(c))
    return 0;
  if (!image) {
    ens_errorf(why, len,
               "[search] conv_blocks = %.40s draws conv networks, which need image rows, and "
               "/train/x has flat rows (write it as (n, H, W) or (n, C, H, W))",
               c->search_conv_blocks);
    return ENS_ECONFIG;
  }
  cands b;
  if (parse_cands(&ckeys[K_BLOCKS], c->search_conv_blocks, &b))
    return ENS_ECONFIG; /* refused at load already */
  int p = ens_search_conv_depth_limit(h, w);
  if (b.v[0] > p) {
    ens_errorf(why, len,
               "[search] conv_blocks = %.40s: every block ends in a 2x2 pooling that halves the "
               "image, and the %dx%d input can be halved exactly %d time%s, so no member can have "
               "%d block%s (lower conv_blocks to at most %d)",
               c->search_conv_blocks, h, w, p, p == 1 ? "" : "s", b.v[0], b.v[0] == 1 ? "" : "s",
               p);
    return ENS_ECONFIG;
  }
  return 0;
}

/* Candidates of key i, its default when the value is empty (validated at
 * load: a malformed value cannot reach here; it falls back to the default). */
static void cands_of(const ens_config *c, int i, cands *out) {
  const conv_key *k = &ckeys[i];
  const char *v = text_of(c, k);
  if (!blank(v) && parse_cands(k, v, out) == 0)
    return;
  ens_config d;
  ens_config_defaults(&d);
  if (parse_cands(k, text_of(&d, k), out))
    out->n = 1, out->v[0] = k->lo;
}

static int pick(const ens_config *c, int k, int key, const cands *cs, ens_rng *r, int first) {
  if (first)
    ens_rng_init(r, c->seed, (uint32_t)k, ENS_STREAM_SEARCH,
                 (uint32_t)(ENS_SEARCH_CONV_SUBSTREAM + key));
  return cs->v[ens_rng_below(r, (uint32_t)cs->n)];
}

int ens_search_conv_draw(ens_search_conv_arch *a, const ens_config *c, int k, int h, int w) {
  memset(a, 0, sizeof *a);
  if (!ens_search_conv_on(c))
    return -1;
  cands cs[N_CKEYS];
  for (size_t i = 0; i < N_CKEYS; i++)
    cands_of(c, (int)i, &cs[i]);
  /* The depth rule, before the draw: candidates the image cannot halve for
   * go (h = w = 0: shape unknown, no limit); at least the lowest stays. */
  if (h > 0 && w > 0) {
    int p = ens_search_conv_depth_limit(h, w), n = 0;
    for (int i = 0; i < cs[K_BLOCKS].n; i++)
      if (cs[K_BLOCKS].v[i] <= p || i == 0)
        cs[K_BLOCKS].v[n++] = cs[K_BLOCKS].v[i];
    a->clamped = n < cs[K_BLOCKS].n;
    cs[K_BLOCKS].n = n;
  }
  ens_rng r;
  a->blocks = pick(c, k, K_BLOCKS, &cs[K_BLOCKS], &r, 1);
  a->width = pick(c, k, K_WIDTH, &cs[K_WIDTH], &r, 1);
  a->grow = pick(c, k, K_GROW, &cs[K_GROW], &r, 1);
  /* One kernel per block, in block order from the key's own generator. */
  for (int b = 0; b < a->blocks; b++)
    a->kernel[b] = pick(c, k, K_KERNEL, &cs[K_KERNEL], &r, b == 0);
  a->per_block = pick(c, k, K_PER_BLOCK, &cs[K_PER_BLOCK], &r, 1);
  a->bn = pick(c, k, K_BN, &cs[K_BN], &r, 1);
  a->pool = pick(c, k, K_POOL, &cs[K_POOL], &r, 1);
  a->end = pick(c, k, K_END, &cs[K_END], &r, 1);
  a->dense = pick(c, k, K_DENSE, &cs[K_DENSE], &r, 1);
  return 0;
}

int ens_search_conv_format(char *buf, size_t len, const ens_search_conv_arch *a, double dropout) {
  size_t used = 0;
  int ok = 1;
#define PUT(...)                                                     \
  do {                                                               \
    int n_ = snprintf(buf + used, used < len ? len - used : 0, __VA_ARGS__); \
    if (n_ < 0 || used + (size_t)n_ >= len)                          \
      ok = 0;                                                        \
    else                                                             \
      used += (size_t)n_;                                            \
  } while (0)
  buf[0] = '\0';
  long width = a->width;
  for (int b = 0; b < a->blocks && ok; b++) {
    for (int i = 0; i < a->per_block; i++) {
      PUT("%sconv %ld %d pad %d", used ? ", " : "", width, a->kernel[b], a->kernel[b] / 2);
      if (a->bn)
        PUT(", bn");
      PUT(", relu");
    }
    PUT(", %s 2", a->pool ? "avgpool" : "maxpool");
    if (a->grow && width < (1L << 20) / 2)
      width *= 2;
  }
  PUT(", %s", a->end ? "gap" : "flatten");
  if (a->dense > 0) {
    PUT(", dense %d", a->dense);
    if (a->bn)
      PUT(", bn");
    PUT(", relu");
  }
  /* The layer list parses "dropout P" into a float: %.9g gives that float
   * back exactly. */
  if (dropout > 0)
    PUT(", dropout %.9g", (double)(float)dropout);
#undef PUT
  return ok ? 0 : -1;
}

void ens_search_conv_print_help(FILE *out) {
  for (size_t i = 0; i < N_CKEYS; i++)
    fprintf(out, "  %-14s %s\n", ckeys[i].key, ckeys[i].what);
  fprintf(out,
          "  Depth rule: an H x W image takes as many blocks as H and W can both be halved "
          "exactly\n  (28x28: 2, 32x32: 5); larger conv_blocks values are dropped before the "
          "draw, and a\n  lowest value above that is a config error. The member's dropout "
          "([search] dropout, else\n  [model] dropout) goes before the output layer. Each "
          "member's list is printed at start and\n  recorded as /members/<k> layers.\n");
}

void ens_search_conv_describe(const ens_config *c, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < N_CKEYS && used < len; i++) {
    const char *v = text_of(c, &ckeys[i]);
    if (blank(v))
      continue;
    int n = snprintf(buf + used, len - used, "%s%s %s", used ? "; " : "", ckeys[i].key, v);
    if (n < 0)
      break;
    used += (size_t)n;
  }
}
