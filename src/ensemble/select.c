/* Greedy ensemble selection with replacement (Caruana et al., ICML 2004):
 * members are added one at a time, repeats allowed, while the loss of the
 * count-weighted average keeps falling. One greedy loop serves the
 * classification (NLL) and regression (Gaussian NLL or MSE) losses. */
#include "ens/error.h"
#include "ens/metrics.h"

#include <math.h>
#include <stdlib.h>

#define ENS_SEL_FLOOR 1e-12 /* the ens_metric_nll floor */

/* The running sums of the picked members (count-weighted, recomputed in
 * member index order after every pick, so they are a function of the counts
 * alone) and the loss of adding one more member to them. */
typedef struct sel_ctx sel_ctx;
struct sel_ctx {
  /* Loss of (sums + member j) / (k + 1), or of sums / k when j < 0. */
  double (*loss)(const sel_ctx *s, int j, int k);
  void (*rebuild)(sel_ctx *s, const int32_t *counts);
  int M, n, T, use_var;
  const float *lab;  /* probs: (M, n) probability of the label */
  const float *pred; /* gauss: (M, n, 2T) */
  const float *y;    /* gauss: (n, T) */
  double *sum;       /* probs: (n); gauss: (n, T) sum of counts mu */
  double *sum2;      /* gauss with use_var: (n, T) sum of counts (var + mu^2) */
};

/* a ranks before b: smaller, and any number before NaN. */
static int better(double a, double b) { return a < b || (isnan(b) && !isnan(a)); }

static int greedy(int32_t *counts, const uint8_t *usable, int M, int max_picks, sel_ctx *s) {
  int picks = 0;
  double cur = NAN;
  for (;;) {
    int best = -1;
    double best_loss = NAN;
    for (int j = 0; j < M; j++) {
      if (usable && !usable[j])
        continue;
      double l = s->loss(s, j, picks);
      /* Ascending scan with a strict comparison: ties keep the lower index. */
      if (best < 0 || better(l, best_loss)) {
        best = j;
        best_loss = l;
      }
    }
    if (picks > 0 && !(best_loss < cur))
      break;
    counts[best]++;
    picks++;
    if (picks >= max_picks)
      break;
    s->rebuild(s, counts);
    cur = s->loss(s, -1, picks);
  }
  return picks;
}

/* ------------------------------------------------------- classification */

static double probs_loss(const sel_ctx *s, int j, int k) {
  const float *pj = j >= 0 ? s->lab + (size_t)j * s->n : NULL;
  const double inv = 1.0 / (j >= 0 ? k + 1 : k);
  double sum = 0.0;
  for (int i = 0; i < s->n; i++) {
    double py = (s->sum[i] + (pj ? pj[i] : 0.0)) * inv;
    if (py < ENS_SEL_FLOOR) /* NaN passes through, as in ens_metric_nll */
      py = ENS_SEL_FLOOR;
    sum -= log(py);
  }
  return sum / s->n;
}

static void probs_rebuild(sel_ctx *s, const int32_t *counts) {
  for (int i = 0; i < s->n; i++)
    s->sum[i] = 0.0;
  for (int j = 0; j < s->M; j++) {
    if (!counts[j])
      continue; /* never 0 x NaN from a member that was not picked */
    const float *pj = s->lab + (size_t)j * s->n;
    const double c = counts[j];
    for (int i = 0; i < s->n; i++)
      s->sum[i] += c * pj[i];
  }
}

static int check_args(int32_t *counts, const uint8_t *usable, int M, int n, int max_picks) {
  if (M < 1 || n < 0 || max_picks < 1)
    return ENS_EINVAL;
  int any = 0;
  for (int j = 0; j < M; j++) {
    counts[j] = 0;
    any |= !usable || usable[j];
  }
  return any ? 0 : ENS_EINVAL;
}

int ens_select_greedy_probs(int32_t *counts, const float *probs, const uint8_t *usable,
                            const int32_t *y, int M, int n, int C, int max_picks) {
  if (C < 1)
    return ENS_EINVAL;
  int ret = check_args(counts, usable, M, n, max_picks);
  if (ret)
    return ret;
  /* Only the label's probability enters the NLL: gather that column once,
   * (M, n), so each candidate costs O(n) with contiguous reads. */
  float *lab = malloc(((size_t)M * n + 1) * sizeof(float));
  double *sum = calloc((size_t)n + 1, sizeof(double));
  sel_ctx s = {
      .loss = probs_loss, .rebuild = probs_rebuild, .M = M, .n = n, .lab = lab, .sum = sum};
  if (!lab || !sum) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  for (int j = 0; j < M; j++)
    for (int i = 0; i < n; i++)
      lab[(size_t)j * n + i] = probs[((size_t)j * n + i) * C + y[i]];
  ret = greedy(counts, usable, M, max_picks, &s);
cleanup:
  free(lab);
  free(sum);
  return ret;
}

/* ----------------------------------------------------------- regression */

static double gauss_loss(const sel_ctx *s, int j, int k) {
  const int T = s->T;
  const double inv = 1.0 / (j >= 0 ? k + 1 : k), log2pi = log(2.0 * M_PI);
  double sum = 0.0;
  for (int i = 0; i < s->n; i++) {
    const float *row = j >= 0 ? s->pred + ((size_t)j * s->n + i) * 2 * T : NULL;
    const float *yi = s->y + (size_t)i * T;
    for (int t = 0; t < T; t++) {
      const size_t e = (size_t)i * T + t;
      const double mu = row ? (double)row[t] : 0.0;
      const double mean = (s->sum[e] + mu) * inv;
      const double r = (double)yi[t] - mean;
      if (!s->use_var) {
        sum += r * r;
        continue;
      }
      const double second = (s->sum2[e] + (row ? (double)row[T + t] + mu * mu : 0.0)) * inv;
      const double var = second - mean * mean;
      /* A mixture variance <= 0 (all mass on one point, or rounding) makes
       * the density unbounded near the mean: +inf, never picked. */
      sum += var <= 0.0 ? INFINITY : 0.5 * (log2pi + log(var)) + r * r / (2.0 * var);
    }
  }
  return sum / ((double)s->n * T);
}

static void gauss_rebuild(sel_ctx *s, const int32_t *counts) {
  const int T = s->T;
  const size_t len = (size_t)s->n * T;
  for (size_t e = 0; e < len; e++) {
    s->sum[e] = 0.0;
    if (s->use_var)
      s->sum2[e] = 0.0;
  }
  for (int j = 0; j < s->M; j++) {
    if (!counts[j])
      continue;
    const double c = counts[j];
    for (int i = 0; i < s->n; i++) {
      const float *row = s->pred + ((size_t)j * s->n + i) * 2 * T;
      for (int t = 0; t < T; t++) {
        const size_t e = (size_t)i * T + t;
        const double mu = row[t];
        s->sum[e] += c * mu;
        if (s->use_var)
          s->sum2[e] += c * ((double)row[T + t] + mu * mu);
      }
    }
  }
}

int ens_select_greedy_gauss(int32_t *counts, const float *pred, const uint8_t *usable,
                            const float *y, int M, int n, int T, int max_picks, int use_var) {
  if (T < 1)
    return ENS_EINVAL;
  int ret = check_args(counts, usable, M, n, max_picks);
  if (ret)
    return ret;
  const size_t len = (size_t)n * T + 1;
  double *sum = calloc(len, sizeof(double));
  double *sum2 = use_var ? calloc(len, sizeof(double)) : NULL;
  sel_ctx s = {.loss = gauss_loss,
               .rebuild = gauss_rebuild,
               .M = M,
               .n = n,
               .T = T,
               .use_var = use_var != 0,
               .pred = pred,
               .y = y,
               .sum = sum,
               .sum2 = sum2};
  if (!sum || (use_var && !sum2)) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  ret = greedy(counts, usable, M, max_picks, &s);
cleanup:
  free(sum);
  free(sum2);
  return ret;
}

/* ------------------------------------------------- robust selection
 * Caruana, Munson and Niculescu-Mizil, "Getting the most out of ensemble
 * selection", ICDM 2006: sorted initialization and bagged selection, plus a
 * held-out check that falls back to the plain average when the validation
 * rows are too few to trust (see ens_select_robust in ens/metrics.h). */

#include "ens/rng.h"

#include <limits.h>
#include <string.h>

/* One data set for the robust selection: the rows of s restricted to a list,
 * copied, so that the loss functions above run unchanged on the subset. */
typedef struct sel_src {
  int gauss; /* 0: probabilities (label column), 1: regression rows */
  int M, n, T, use_var;
  const float *lab, *pred, *y;
} sel_src;

static void ctx_free(sel_ctx *s) {
  free((void *)s->lab);
  free((void *)s->pred);
  free((void *)s->y);
  free(s->sum);
  free(s->sum2);
  memset(s, 0, sizeof(*s));
}

/* s = the rows `rows` (nrows; NULL = all) of src. Owns its copies. */
static int ctx_init(sel_ctx *s, const sel_src *src, const int32_t *rows, int nrows) {
  memset(s, 0, sizeof(*s));
  const int M = src->M, T = src->gauss ? src->T : 1;
  s->M = M;
  s->n = nrows;
  s->T = T;
  s->use_var = src->use_var;
  const size_t len = (size_t)nrows * T + 1;
  s->sum = calloc(len, sizeof(double));
  s->sum2 = src->gauss && src->use_var ? calloc(len, sizeof(double)) : NULL;
  if (!s->sum || (src->gauss && src->use_var && !s->sum2))
    goto oom;
  if (!src->gauss) {
    float *lab = malloc(((size_t)M * nrows + 1) * sizeof(float));
    if (!lab)
      goto oom;
    for (int j = 0; j < M; j++)
      for (int i = 0; i < nrows; i++)
        lab[(size_t)j * nrows + i] = src->lab[(size_t)j * src->n + (rows ? rows[i] : i)];
    s->lab = lab;
    s->loss = probs_loss;
    s->rebuild = probs_rebuild;
    return 0;
  }
  float *pred = malloc(((size_t)M * nrows * 2 * T + 1) * sizeof(float));
  float *y = malloc(((size_t)nrows * T + 1) * sizeof(float));
  s->pred = pred;
  s->y = y;
  if (!pred || !y)
    goto oom;
  for (int i = 0; i < nrows; i++) {
    const int r = rows ? rows[i] : i;
    memcpy(y + (size_t)i * T, src->y + (size_t)r * T, (size_t)T * sizeof(float));
    for (int j = 0; j < M; j++)
      memcpy(pred + ((size_t)j * nrows + i) * 2 * T, src->pred + ((size_t)j * src->n + r) * 2 * T,
             (size_t)2 * T * sizeof(float));
  }
  s->loss = gauss_loss;
  s->rebuild = gauss_rebuild;
  return 0;
oom:
  ctx_free(s);
  return ENS_ENOMEM;
}

/* Loss of the count-weighted average of counts (total > 0). */
static double counts_loss(sel_ctx *s, const int32_t *counts) {
  int total = 0;
  for (int j = 0; j < s->M; j++)
    total += counts[j];
  s->rebuild(s, counts);
  return s->loss(s, -1, total);
}

/* The sorted initialization's members start with ENS_SELECT_INIT_MASS picks
 * between them (ceil(mass / N) each, at least 1), so the first greedy
 * addition weighs about 1 / (mass + 1), not 1 / (N + 1). With N = 1 the
 * plain greedy can only add a member at weight 1/2: where one member is
 * much better than the rest, every addition at 1/2 hurts, the selection
 * stops at that one member and cannot do better than it, although mixing a
 * tenth of a second member usually lowers the NLL (a convex loss of the
 * mixture). The weights the greedy can reach from N >= mass are unchanged. */
#define ENS_SELECT_INIT_MASS 10

static int init_copies(int nn) {
  return nn >= ENS_SELECT_INIT_MASS ? 1 : (ENS_SELECT_INIT_MASS + nn - 1) / nn;
}

/* Sorted initialization (Caruana et al. 2006, section 2.1): the usable
 * members ranked by their own loss (ties: lower index), the best N, N in
 * [1, min(usable, max_picks)] with the lowest loss of the plain average of
 * the N (ties: smaller N), each counted init_copies(N) times. Returns N.
 * order: scratch (M). */
static int sorted_init(int32_t *counts, int32_t *order, double *own, const uint8_t *usable,
                       int max_picks, sel_ctx *s) {
  const int M = s->M;
  int nu = 0;
  for (int j = 0; j < M; j++) {
    counts[j] = 0;
    if (usable && !usable[j])
      continue;
    own[j] = s->loss(s, j, 0); /* sums are 0 after the reset below */
    order[nu++] = j;
  }
  /* Insertion sort, stable: equal losses keep member order. */
  for (int a = 1; a < nu; a++) {
    int v = order[a], b = a;
    while (b > 0 && better(own[v], own[order[b - 1]])) {
      order[b] = order[b - 1];
      b--;
    }
    order[b] = v;
  }
  int best_n = 1;
  double best_loss = NAN;
  const int top = nu < max_picks ? nu : max_picks;
  for (int nn = 1; nn <= top; nn++) {
    counts[order[nn - 1]] = 1;
    double l = counts_loss(s, counts);
    if (nn == 1 || better(l, best_loss)) {
      best_loss = l;
      best_n = nn;
    }
  }
  for (int nn = best_n; nn < top; nn++)
    counts[order[nn]] = 0;
  for (int nn = 0; nn < best_n; nn++)
    counts[order[nn]] = init_copies(best_n);
  return best_n;
}

/* Greedy additions (with replacement) after the sorted initialization. */
static int greedy_from(int32_t *counts, int picks, const uint8_t *usable, int max_picks,
                       sel_ctx *s) {
  s->rebuild(s, counts);
  double cur = s->loss(s, -1, picks);
  while (picks < max_picks) {
    int best = -1;
    double best_loss = NAN;
    for (int j = 0; j < s->M; j++) {
      if (usable && !usable[j])
        continue;
      double l = s->loss(s, j, picks);
      if (best < 0 || better(l, best_loss)) {
        best = j;
        best_loss = l;
      }
    }
    if (best < 0 || !(best_loss < cur))
      break;
    counts[best]++;
    picks++;
    s->rebuild(s, counts);
    cur = s->loss(s, -1, picks);
  }
  return picks;
}

/* The bagged selection on s: counts (M) = the sum over bags of each bag's
 * picks; *init_sum = the sum of the bags' sorted-initialization sizes.
 * Returns the total picks or a negative code. */
static int bagged(int32_t *counts, int *init_sum, const uint8_t *usable, const ens_select_opts *o,
                  sel_ctx *s) {
  const int M = s->M, bags = o->bags > 0 ? o->bags : 1;
  if (M < 1)
    return ENS_EINVAL;
  int32_t *bc = malloc((size_t)M * sizeof(int32_t)), *order = malloc((size_t)M * sizeof(int32_t));
  int32_t *perm = malloc((size_t)M * sizeof(int32_t));
  double *own = malloc((size_t)M * sizeof(double));
  uint8_t *mask = malloc((size_t)M);
  int ret = 0, total = 0, nu = 0;
  *init_sum = 0;
  if (!bc || !order || !perm || !own || !mask) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  for (int j = 0; j < M; j++) {
    counts[j] = 0;
    nu += !usable || usable[j];
  }
  /* Sums must be zero for sorted_init's single-member losses. */
  memset(bc, 0, (size_t)M * sizeof(int32_t));
  for (int b = 0; b < bags; b++) {
    if (o->bags > 0) {
      /* Bag b: ceil(fraction * usable) usable members, the first of a
       * permutation keyed by (seed, bag), so it depends on nothing else. */
      int take = (int)ceil(o->fraction * nu);
      take = take < 1 ? 1 : take > nu ? nu : take;
      ens_rng r;
      ens_rng_init(&r, o->seed, 0, ENS_STREAM_SELECT, (uint32_t)b);
      ens_rng_permutation(&r, perm, nu);
      int u = 0;
      int32_t *idx = order; /* usable member of rank u */
      for (int j = 0; j < M; j++)
        if (!usable || usable[j])
          idx[u++] = j;
      memset(mask, 0, (size_t)M);
      for (int a = 0; a < take; a++)
        mask[idx[perm[a]]] = 1;
    } else {
      for (int j = 0; j < M; j++)
        mask[j] = !usable || usable[j];
    }
    memset(bc, 0, (size_t)M * sizeof(int32_t));
    s->rebuild(s, bc);
    int nn = sorted_init(bc, order, own, mask, o->max_picks, s);
    *init_sum += nn;
    /* max_picks greedy additions after the initialization's picks. */
    const int ip = nn * init_copies(nn);
    int picks = greedy_from(bc, ip, mask, o->max_picks > INT_MAX - ip ? INT_MAX : ip + o->max_picks,
                            s);
    for (int j = 0; j < M; j++)
      counts[j] += bc[j];
    total += picks;
  }
  ret = total;
cleanup:
  free(bc);
  free(order);
  free(perm);
  free(own);
  free(mask);
  return ret;
}

/* Candidate rules of the held-out check, in the order ties go. */
enum { CAND_AVERAGE, CAND_GREEDY, CAND_BAGGED, NCAND };

static int robust(int32_t *counts, ens_select_info *info, const sel_src *src,
                  const uint8_t *usable, const ens_select_opts *o) {
  const int M = src->M, n = src->n;
  if (M < 1 || n < 0 || o->max_picks < 1 || o->bags < 0 || !(o->fraction > 0) ||
      o->fraction > 1)
    return ENS_EINVAL;
  int nu = 0;
  for (int j = 0; j < M; j++)
    nu += !usable || usable[j];
  if (!nu)
    return ENS_EINVAL;
  memset(info, 0, sizeof(*info));
  info->cv_average = info->cv_greedy = info->cv_bagged = NAN;
  int32_t *rows = malloc(((size_t)n + 1) * sizeof(int32_t));
  int32_t *cc = malloc((size_t)M * sizeof(int32_t)), *ones = malloc((size_t)M * sizeof(int32_t));
  sel_ctx fit = {0}, held = {0};
  int ret = 0;
  if (!rows || !cc || !ones) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  for (int j = 0; j < M; j++)
    ones[j] = !usable || usable[j];
  int rule = o->bags > 0 ? CAND_BAGGED : CAND_GREEDY;
  if (n < o->min_rows) {
    rule = CAND_AVERAGE;
    info->reason = ENS_SELECT_FEW_ROWS;
  } else if (o->check) {
    /* Two-fold check: even and odd validation rows. Each candidate rule is
     * fitted on one half and scored on the other, both ways; the lowest mean
     * held-out loss wins (ties: average, then greedy, then bagged). */
    double loss[NCAND] = {0, 0, 0};
    const int ncand = o->bags > 0 ? NCAND : CAND_BAGGED;
    for (int f = 0; f < 2 && !ret; f++) {
      int nf = 0, nh = 0;
      for (int i = 0; i < n; i++)
        if (i % 2 == f)
          rows[nf++] = i;
      for (int i = 0; i < n; i++)
        if (i % 2 != f)
          rows[nf + nh++] = i;
      if ((ret = ctx_init(&fit, src, rows, nf)) || (ret = ctx_init(&held, src, rows + nf, nh)))
        break;
      loss[CAND_AVERAGE] += counts_loss(&held, ones) * nh;
      for (int cand = CAND_GREEDY; cand < ncand && !ret; cand++) {
        ens_select_opts oc = *o;
        oc.bags = cand == CAND_BAGGED ? o->bags : 0;
        int init = 0, p = bagged(cc, &init, usable, &oc, &fit);
        if (p < 0)
          ret = p;
        else
          loss[cand] += counts_loss(&held, cc) * nh;
      }
      ctx_free(&fit);
      ctx_free(&held);
    }
    if (ret)
      goto cleanup;
    info->cv_average = loss[CAND_AVERAGE] / n;
    info->cv_greedy = loss[CAND_GREEDY] / n;
    if (ncand == NCAND)
      info->cv_bagged = loss[CAND_BAGGED] / n;
    rule = CAND_AVERAGE;
    for (int cand = CAND_GREEDY; cand < ncand; cand++)
      if (better(loss[cand], loss[rule]))
        rule = cand;
    if (rule == CAND_AVERAGE)
      info->reason = ENS_SELECT_HELDOUT_WORSE;
  }
  if (rule == CAND_AVERAGE) {
    memcpy(counts, ones, (size_t)M * sizeof(int32_t));
    info->rule = ENS_SELECT_RULE_AVERAGE;
    info->picks = nu;
    ret = nu;
    goto cleanup;
  }
  if ((ret = ctx_init(&fit, src, NULL, n)))
    goto cleanup;
  ens_select_opts oc = *o;
  oc.bags = rule == CAND_BAGGED ? o->bags : 0;
  ret = bagged(counts, &info->init_sum, usable, &oc, &fit);
  info->rule = rule == CAND_BAGGED ? ENS_SELECT_RULE_BAGGED : ENS_SELECT_RULE_GREEDY;
  info->picks = ret > 0 ? ret : 0;
cleanup:
  ctx_free(&fit);
  ctx_free(&held);
  free(rows);
  free(cc);
  free(ones);
  return ret;
}

int ens_select_robust_probs(int32_t *counts, ens_select_info *info, const float *probs,
                            const uint8_t *usable, const int32_t *y, int M, int n, int C,
                            const ens_select_opts *o) {
  if (C < 1 || M < 1 || n < 0)
    return ENS_EINVAL;
  float *lab = malloc(((size_t)M * n + 1) * sizeof(float));
  if (!lab)
    return ENS_ENOMEM;
  for (int j = 0; j < M; j++)
    for (int i = 0; i < n; i++)
      lab[(size_t)j * n + i] = probs[((size_t)j * n + i) * C + y[i]];
  sel_src src = {.gauss = 0, .M = M, .n = n, .T = 1, .lab = lab};
  int ret = robust(counts, info, &src, usable, o);
  free(lab);
  return ret;
}

int ens_select_robust_gauss(int32_t *counts, ens_select_info *info, const float *pred,
                            const uint8_t *usable, const float *y, int M, int n, int T,
                            int use_var, const ens_select_opts *o) {
  if (T < 1)
    return ENS_EINVAL;
  sel_src src = {.gauss = 1, .M = M, .n = n, .T = T, .use_var = use_var != 0, .pred = pred, .y = y};
  return robust(counts, info, &src, usable, o);
}

const char *ens_select_rule_name(ens_select_rule r) {
  return r == ENS_SELECT_RULE_AVERAGE ? "average" : r == ENS_SELECT_RULE_BAGGED ? "bagged" : "greedy";
}

const char *ens_select_reason_text(ens_select_reason r) {
  switch (r) {
  case ENS_SELECT_FEW_ROWS:
    return "too few validation rows";
  case ENS_SELECT_HELDOUT_WORSE:
    return "on held-out validation rows no selection beat the plain average";
  case ENS_SELECT_TRUSTED:
  default:
    return "";
  }
}
