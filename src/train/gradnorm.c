/* Gradient-norm record and AutoClip threshold of one training run. The
 * running percentile is kept exactly with two heaps (the lowest k + 1 norms
 * in a max-heap, the rest in a min-heap), O(log n) per step; it depends only
 * on the multiset of norms, never on the rank or on when a run resumed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ens/config.h"
#include "ens/error.h"
#include "ens/gradnorm.h"

const char ens_gradnorm_columns[] = "min,median,p90,p99,max,steps,clipped,clip_norm";

int ens_gradnorm_create(ens_gradnorm *g, long max_steps, int epochs, int autoclip) {
  memset(g, 0, sizeof(*g));
  size_t cap = (size_t)(max_steps > 0 ? max_steps : 1);
  g->cap = (long)cap;
  g->epochs = epochs;
  g->hist = malloc(cap * sizeof(double));
  g->scratch = malloc(cap * sizeof(double));
  g->summary = malloc((size_t)(epochs > 0 ? epochs : 1) * ENS_GN_COLS * sizeof(float));
  if (autoclip) {
    g->lo = malloc(cap * sizeof(double));
    g->hi = malloc(cap * sizeof(double));
  }
  if (!g->hist || !g->scratch || !g->summary || (autoclip && (!g->lo || !g->hi)))
    return ENS_ENOMEM;
  ens_gradnorm_reset(g, 0.0, 0.0, 0, 1.0, 1.0);
  return 0;
}

void ens_gradnorm_free(ens_gradnorm *g) {
  if (!g)
    return;
  free(g->hist);
  free(g->scratch);
  free(g->summary);
  free(g->lo);
  free(g->hi);
  memset(g, 0, sizeof(*g));
}

void ens_gradnorm_reset(ens_gradnorm *g, double clip_norm, double pct, long warmup,
                        double warmup_lr, double factor) {
  int autoc = clip_norm == ENS_AUTO;
  g->n = g->nlo = g->nhi = 0;
  g->fixed = clip_norm > 0.0 ? clip_norm : 0.0;
  g->warmup = autoc && warmup > 0 ? warmup : 0;
  g->warmup_lr = warmup_lr;
  g->factor = factor;
  g->pct = autoc && !g->warmup && g->lo ? pct : 0.0;
  g->epoch_start = 0;
  g->clipped = 0;
  g->c_last = 0.0;
  for (long i = 0; i < (long)g->epochs * ENS_GN_COLS; i++)
    g->summary[i] = NAN;
}

/* ---- heaps: sign = +1 max-heap, -1 min-heap ------------------------------ */

static int above(double a, double b, int sign) { return sign > 0 ? a > b : a < b; }

static void heap_push(double *h, long *n, double x, int sign) {
  long i = (*n)++;
  while (i > 0) {
    long p = (i - 1) / 2;
    if (!above(x, h[p], sign))
      break;
    h[i] = h[p];
    i = p;
  }
  h[i] = x;
}

static double heap_pop(double *h, long *n, int sign) {
  double top = h[0], x = h[--*n];
  long i = 0;
  for (;;) {
    long c = 2 * i + 1;
    if (c >= *n)
      break;
    if (c + 1 < *n && above(h[c + 1], h[c], sign))
      c++;
    if (!above(h[c], x, sign))
      break;
    h[i] = h[c];
    i = c;
  }
  if (*n > 0)
    h[i] = x;
  return top;
}

/* Adds x to the heaps and returns the pct-th percentile of all values:
 * with h = (n - 1) pct / 100 and k = floor(h), the lower heap holds the
 * k + 1 smallest values, so x_(k) is its top and x_(k+1) the upper top. */
static double autoclip_add(ens_gradnorm *g, double x) {
  if (g->nlo > 0 && x <= g->lo[0])
    heap_push(g->lo, &g->nlo, x, +1);
  else
    heap_push(g->hi, &g->nhi, x, -1);
  long n = g->nlo + g->nhi;
  double h = (double)(n - 1) * g->pct / 100.0;
  long k = (long)floor(h);
  if (k > n - 1)
    k = n - 1;
  while (g->nlo > k + 1)
    heap_push(g->hi, &g->nhi, heap_pop(g->lo, &g->nlo, +1), -1);
  while (g->nlo < k + 1)
    heap_push(g->lo, &g->nlo, heap_pop(g->hi, &g->nhi, -1), +1);
  double a = g->lo[0], frac = h - (double)k;
  if (frac <= 0.0 || g->nhi == 0)
    return a;
  return a + frac * (g->hi[0] - a);
}

double ens_gradnorm_lr_factor(const ens_gradnorm *g, long step) {
  return g->warmup > 0 && step < g->warmup ? g->warmup_lr : 1.0;
}

static int cmp_double(const void *a, const void *b);

double ens_gradnorm_push(ens_gradnorm *g, double norm) {
  if (g->n >= g->cap)
    return -1.0;
  g->hist[g->n++] = norm;
  double c = g->fixed;
  if (g->pct > 0.0)
    c = autoclip_add(g, norm);
  if (g->warmup > 0) {
    if (g->n <= g->warmup) {
      c = 0.0; /* the warm-up is not clipped: its norms are the reference */
    } else if (g->n == g->warmup + 1) {
      /* The first step after the warm-up fixes c for the rest of the run. */
      memcpy(g->scratch, g->hist, (size_t)g->warmup * sizeof(double));
      qsort(g->scratch, (size_t)g->warmup, sizeof(double), cmp_double);
      g->fixed = g->factor * ens_percentile_sorted(g->scratch, g->warmup, 50.0);
      c = g->fixed;
    }
  }
  g->c_last = c;
  return c;
}

void ens_gradnorm_clipped(ens_gradnorm *g) { g->clipped++; }

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double ens_percentile_sorted(const double *x, long n, double p) {
  double h = (double)(n - 1) * p / 100.0;
  long k = (long)floor(h);
  if (k >= n - 1)
    return x[n - 1];
  return x[k] + (h - (double)k) * (x[k + 1] - x[k]);
}

void ens_gradnorm_end_epoch(ens_gradnorm *g, int epoch) {
  long m = g->n - g->epoch_start;
  if (epoch >= 0 && epoch < g->epochs) {
    float *row = g->summary + (size_t)epoch * ENS_GN_COLS;
    for (int i = 0; i < ENS_GN_COLS; i++)
      row[i] = NAN;
    if (m > 0) {
      memcpy(g->scratch, g->hist + g->epoch_start, (size_t)m * sizeof(double));
      qsort(g->scratch, (size_t)m, sizeof(double), cmp_double);
      row[ENS_GN_MIN] = (float)g->scratch[0];
      row[ENS_GN_MEDIAN] = (float)ens_percentile_sorted(g->scratch, m, 50.0);
      row[ENS_GN_P90] = (float)ens_percentile_sorted(g->scratch, m, 90.0);
      row[ENS_GN_P99] = (float)ens_percentile_sorted(g->scratch, m, 99.0);
      row[ENS_GN_MAX] = (float)g->scratch[m - 1];
    }
    row[ENS_GN_STEPS] = (float)m;
    row[ENS_GN_CLIPPED] = (float)g->clipped;
    row[ENS_GN_CLIP] = (float)g->c_last;
  }
  g->epoch_start = g->n;
  g->clipped = 0;
}

int ens_gradnorm_restore(ens_gradnorm *g, const double *hist, long n, long epoch_start,
                         long clipped) {
  if (n < 0 || n > g->cap || epoch_start < 0 || epoch_start > n || clipped < 0 ||
      clipped > n - epoch_start)
    return -1;
  for (long i = 0; i < n; i++)
    if (!isfinite(hist[i]) || hist[i] < 0.0)
      return -1;
  g->n = g->nlo = g->nhi = 0;
  if (g->warmup > 0)
    g->fixed = 0.0; /* fixed again by the replay when it passes the warm-up */
  g->c_last = g->fixed;
  for (long i = 0; i < n; i++)
    ens_gradnorm_push(g, hist[i]);
  if (n == 0)
    g->c_last = 0.0;
  g->epoch_start = epoch_start;
  g->clipped = clipped;
  return 0;
}
