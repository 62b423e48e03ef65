/* Key-by-key comparison of two configurations, for messages (--resume and
 * merge mismatches) and `ens diff`. Works on the INI text of
 * ens_config_to_ini, which lists every key once, in table order, so the two
 * texts line up key for key. */
#include "ens/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"

/* Splits the next line of *p off (NUL-terminating it in place). */
static char *next_line(char **p) {
  char *s = *p;
  if (!s || !*s)
    return NULL;
  char *nl = strchr(s, '\n');
  if (nl) {
    *nl = '\0';
    *p = nl + 1;
  } else {
    *p = s + strlen(s);
  }
  return s;
}

int ens_config_diff(const ens_config *a, const ens_config *b, int skip_output,
                    ens_config_diff_fn fn, void *ctx) {
  char *ta = ens_config_to_ini(a), *tb = ens_config_to_ini(b);
  if (!ta || !tb) {
    free(ta);
    free(tb);
    return ENS_ENOMEM;
  }
  char *pa = ta, *pb = tb, *la, *lb;
  char section[64] = "";
  int n = 0;
  while ((la = next_line(&pa)) && (lb = next_line(&pb))) {
    if (la[0] == '[') {
      char *end = strchr(la, ']');
      snprintf(section, sizeof section, "%.*s", end ? (int)(end - la - 1) : 0, la + 1);
      continue;
    }
    char *ea = strstr(la, " = "), *eb = strstr(lb, " = ");
    if (!ea || !eb || strcmp(ea + 3, eb + 3) == 0)
      continue;
    if (skip_output && strcmp(section, "output") == 0)
      continue;
    *ea = '\0';
    n++;
    if (fn)
      fn(ctx, section, la, ea + 3, eb + 3);
  }
  free(ta);
  free(tb);
  return n;
}

/* Collects "[s] k = A (name_a) vs B (name_b)" items for ens_config_diff_text. */
typedef struct {
  char *buf;
  size_t len, cap;
  int shown, total;
  const char *na, *nb;
  int oom;
} diff_text;

#define DIFF_TEXT_MAX 8

static void add_item(void *ctx, const char *section, const char *key, const char *a,
                     const char *b) {
  diff_text *d = ctx;
  d->total++;
  if (d->oom || d->shown >= DIFF_TEXT_MAX)
    return;
  int need = snprintf(NULL, 0, "%s[%s] %s = %s (%s) vs %s (%s)", d->shown ? "; " : "", section,
                      key, a[0] ? a : "(empty)", d->na, b[0] ? b : "(empty)", d->nb);
  if (need < 0)
    return;
  if (d->len + (size_t)need + 1 > d->cap) {
    size_t cap = (d->len + (size_t)need + 1) * 2;
    char *p = realloc(d->buf, cap);
    if (!p) {
      d->oom = 1;
      return;
    }
    d->buf = p;
    d->cap = cap;
  }
  d->len += (size_t)snprintf(d->buf + d->len, d->cap - d->len, "%s[%s] %s = %s (%s) vs %s (%s)",
                             d->shown ? "; " : "", section, key, a[0] ? a : "(empty)", d->na,
                             b[0] ? b : "(empty)", d->nb);
  d->shown++;
}

char *ens_config_diff_text(const ens_config *a, const ens_config *b, int skip_output,
                           const char *name_a, const char *name_b) {
  diff_text d = {.na = name_a, .nb = name_b};
  d.buf = calloc(1, 64);
  d.cap = d.buf ? 64 : 0;
  if (!d.buf)
    return NULL;
  int n = ens_config_diff(a, b, skip_output, add_item, &d);
  if (n < 0 || d.oom) {
    free(d.buf);
    return NULL;
  }
  if (d.total > d.shown) {
    char more[64];
    snprintf(more, sizeof more, "; and %d more", d.total - d.shown);
    size_t m = strlen(more);
    char *p = realloc(d.buf, d.len + m + 1);
    if (!p) {
      free(d.buf);
      return NULL;
    }
    d.buf = p;
    memcpy(d.buf + d.len, more, m + 1);
  }
  return d.buf;
}
