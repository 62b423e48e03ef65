/* Metrics of probabilistic predictions and the ensemble combination rules,
 * regression metrics, uncertainty decomposition and AUROC, calibration
 * (temperature and variance scaling) and greedy ensemble selection.
 * Classification functions take probabilities p (n, C) row-major and labels
 * y (n); regression functions take row-major (n, T) means, variances and
 * targets. None of them keeps state between calls. */
#ifndef ENS_METRICS_H
#define ENS_METRICS_H

#include <stdint.h>

#define ENS_ECE_BINS 15

/* Fraction of rows whose argmax equals y (ties go to the lowest class). */
double ens_metric_accuracy(const float *p, const int32_t *y, int n, int C);
/* Mean of -log(max(p[y], 1e-12)). */
double ens_metric_nll(const float *p, const int32_t *y, int n, int C);
/* Mean over rows of sum_c (p_c - onehot_c)^2. */
double ens_metric_brier(const float *p, const int32_t *y, int n, int C);
/* Expected calibration error: 15 equal-width bins over the max probability
 * ((0,1/15], ..., bin i holds conf in (i/15, (i+1)/15], conf = 0 in bin 0),
 * sum over bins of |acc - conf| * count / n. */
double ens_metric_ece(const float *p, const int32_t *y, int n, int C);
/* Index of the largest entry of row p (C), lowest index on ties. */
/* A member predicts "no better than the prior" when its NLL on the
 * validation rows is not at least this many nats per row below that of the
 * prior predictor (the training rows' class frequencies, or their targets'
 * mean and variance, for every row): a network stuck at the class
 * frequencies, or one whose means or variances are worse than the
 * constant's. */
#define ENS_PRIOR_MIN_NATS 0.01
/* 1 when nll (a member's) is not ENS_PRIOR_MIN_NATS below prior_nll, NaN
 * included; 0 when prior_nll is not finite (unknown). */
int ens_no_better_than_prior(double nll, double prior_nll);
int ens_argmax(const float *p, int C);
/* pred[i] = argmax of row i. */
void ens_predict_argmax(int32_t *pred, const float *p, int n, int C);

/* Folds one member into the running sums of the rules: psum (n, C) +=
 * p (n, C) and votes (n, C) counts its argmaxes; pred (n), when not NULL,
 * receives those argmaxes. Call in member order for reproducible sums. */
void ens_combine_add(double *psum, int32_t *votes, int32_t *pred, const float *p, int n, int C);

/* Average: out = sum / m, where sum (n, C) holds the sum of m members'
 * probabilities accumulated in member order. */
void ens_combine_average(float *out, const double *sum, int m, int n, int C);
/* Vote: votes (n, C) counts each member's argmax; psum (n, C) the summed
 * probabilities. out holds the vote shares votes/m; pred the class with most
 * votes, ties broken by the larger summed probability, then the lower class. */
void ens_combine_vote(float *out, int32_t *pred, const int32_t *votes, const double *psum,
                      int m, int n, int C);
/* Fraction of rows where the argmaxes of a and b differ. */
double ens_metric_disagreement(const int32_t *pred_a, const int32_t *pred_b, int n);

/* ------------------------------------------------------------ regression */

typedef struct ens_reg_metrics {
  double rmse, mae, r2, nll, crps;
  double cov50, cov90, cov95;       /* fraction of entries inside the central interval */
  double width50, width90, width95; /* mean interval width */
} ens_reg_metrics;

/* mean, y (n, T); var (n, T) or NULL. Averages over all n*T entries, except r2 = mean over
 * targets of 1 - SS_res/SS_tot (a target with SS_tot = 0 contributes NaN). With var NULL,
 * nll/crps/coverage/width are NaN. When var is given, entries with var <= 0 are a point mass
 * at mu (negative variances, e.g. from rounding in a moment-matched mixture, included):
 * nll = +inf for that entry unless y == mu, where it is -inf (the limit of the Gaussian term;
 * a mix of both makes the mean NaN), crps = |y - mu|, coverage = (y == mu), width 0. A NaN
 * variance makes every variance-based field NaN. n*T = 0 gives NaN everywhere.
 * nll per entry: 0.5 log(2 pi var) + (y - mu)^2 / (2 var).
 * crps per entry (Gneiting & Raftery 2007, closed form for a Gaussian):
 *   sigma (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)), z = (y - mu)/sigma.
 * central interval q: |y - mu| <= z_q sigma with z_0.5 = 0.6744897501960817,
 * z_0.9 = 1.6448536269514722, z_0.95 = 1.959963984540054; width = 2 z_q sigma. */
void ens_reg_metrics_compute(ens_reg_metrics *m, const float *mean, const float *var,
                             const float *y, int n, int T);

/* ------------------------------------------------ classification uncertainty */

/* acc (n) += w * H(p_i), H the Shannon entropy in nats of row i of p (n, C) (0 log 0 = 0). */
void ens_entropy_accumulate(double *acc, const float *p, double w, int n, int C);
/* out (n, 3) per row: predictive entropy H(pbar_i), expected member entropy ent_sum_i / wsum,
 * mutual information = their difference clamped at 0 (Depeweg et al. 2018 decomposition).
 * pbar (n, C); ent_sum (n) as left by ens_entropy_accumulate with weights summing to wsum > 0. */
void ens_uncertainty_finish(float *out, const float *pbar, const double *ent_sum, double wsum,
                            int n, int C);
/* Area under the ROC curve of scores where pos should score higher than neg: the Mann-Whitney
 * statistic P(pos > neg) + 0.5 P(pos == neg), computed by sorting (O((n+m) log(n+m))), in double.
 * pos (npos), neg (nneg). NaN if either is empty, if any score is NaN, or if the two sorted
 * copies cannot be allocated. */
double ens_auroc(const float *pos, int npos, const float *neg, int nneg);

/* ----------------------------------------------------------- calibration */

/* Temperature scaling of combined probabilities (Guo et al. 2017, applied to log-probabilities as
 * logits): out_ic proportional to p_ic^(1/T), each row renormalized, computed in double as a
 * softmax of log(max(p_ic, 1e-12)) / T. So a zero (or negative) probability is treated as
 * 1e-12, the ens_metric_nll floor: it stays ~1e-12 at T = 1, shrinks for T < 1 and grows for
 * T > 1 instead of staying exactly 0. A NaN makes its row NaN. p, out (n, C); T > 0.
 * out may alias p. */
void ens_temperature_apply(float *out, const float *p, int n, int C, double T);
/* The T in [0.05, 20] minimizing the mean NLL (ens_metric_nll convention) of
 * ens_temperature_apply(p, T) against y: golden-section search on log T to a tolerance of 1e-5
 * in log T; deterministic (same inputs, same T bit for bit). Returns T (1.0 when n == 0).
 * The NLL is evaluated in double without rounding the scaled probabilities to float:
 * mean over rows of min(logsumexp_c(l_ic / T) - l_iy / T, -log 1e-12), l = log(max(p, 1e-12)).
 * When T = 1 does at least as well as the search result (e.g. a flat NLL), returns exactly 1.
 * p (n, C), y (n) in [0, C). No allocation; about 30 evaluations of n C logs and exps. */
double ens_temperature_fit(const float *p, const int32_t *y, int n, int C);
/* Regression analogue: the variance scale s > 0 minimizing the Gaussian NLL of (mean, s var)
 * against y, closed form s = mean over entries with var > 0 of (y - mu)^2 / var (1.0 when there
 * are none; 0 when all of those residuals are 0). mean, var, y (n, T). */
double ens_variance_scale_fit(const float *mean, const float *var, const float *y, int n, int T);

/* ------------------------------------------------------- greedy selection */

/* Greedy ensemble selection with replacement (Caruana et al., ICML 2004).
 * counts (M) receives how often each member was picked. usable (M) marks members that may be
 * picked (NULL: all). Start from the usable member with the lowest loss alone; then repeatedly
 * add (repeats allowed) the usable member whose addition gives the lowest loss of the
 * count-weighted average; stop when the best addition does not lower the loss strictly, or when
 * max_picks picks (the first included) were made. Ties: lowest member index. A NaN loss is
 * never preferred to a number.
 * Loss: mean NLL (ens_metric_nll convention: -log(max(p_y, 1e-12)), mean over rows, in double
 * without rounding the average to float) of the count-weighted average of probs.
 * probs (M, n, C), y (n) in [0, C).
 * The weighted sums are kept in double and rebuilt after each pick from the counts in member
 * index order, so the loss of a set of counts does not depend on the order of the picks; a
 * candidate costs O(n) (only the label's probability enters the NLL), a pick O(M n).
 * Returns the number of picks (>= 1), ENS_EINVAL when no member is usable (or M < 1, n < 0,
 * C < 1, max_picks < 1), ENS_ENOMEM (allocates O(M n)). Deterministic. */
int ens_select_greedy_probs(int32_t *counts, const float *probs, const uint8_t *usable,
                            const int32_t *y, int M, int n, int C, int max_picks);
/* Regression: pred (M, n, 2T) rows [mu (T), var (T)]. With use_var, the loss is the mean Gaussian
 * NLL of the moment-matched mixture (mean = sum w mu, var = sum w (var + mu^2) - mean^2,
 * w = counts / picks); without it, the mean squared error of the weighted mean. Same rules
 * otherwise. y (n, T). Both losses are means over the n*T entries; a mixture variance <= 0
 * makes its entry's NLL +inf. A candidate costs O(n T), a pick O(M n T); allocates O(n T).
 * ENS_EINVAL also for T < 1. */
int ens_select_greedy_gauss(int32_t *counts, const float *pred, const uint8_t *usable,
                            const float *y, int M, int n, int T, int max_picks, int use_var);

/* ------------------------------------------------ robust selection (2006) */

/* Caruana, Munson and Niculescu-Mizil, ICDM 2006, with a fallback. Rules:
 * - greedy: sorted initialization (the usable members ranked by their own
 *   loss; start from the best N, one pick each, N in [1, max_picks] the size
 *   whose plain average has the lowest loss on the rows, ties: smaller N),
 *   then greedy additions with replacement (the rules of the 2004 greedy);
 * - bagged (bags > 0): bag b holds ceil(fraction * usable) usable members,
 *   the first of a permutation drawn from (seed, member 0, ENS_STREAM_SELECT,
 *   b); each bag runs the greedy rule on its members; counts = the sum of the
 *   bags' picks (each bag's ensemble weighted by its picks);
 * - average: counts = 1 per usable member.
 * Which rule: with fewer than min_rows rows, average. With check, each rule
 * (bagged only when bags > 0) is fitted on the even rows and scored on the
 * odd ones and the reverse; the lowest mean held-out loss wins (ties: average,
 * greedy, bagged), and the winner is fitted again on all rows. Without check,
 * bagged when bags > 0, else greedy.
 * Deterministic: a function of the rows, the mask and the options only. */
typedef struct ens_select_opts {
  int max_picks;   /* most picks per bag (>= 1), sorted initialization included */
  int bags;        /* 0 = no bagging */
  double fraction; /* of the usable members in each bag, (0, 1] */
  int min_rows;    /* fewer rows: the plain average */
  int check;       /* run the two-fold held-out check */
  uint64_t seed;
} ens_select_opts;

typedef enum {
  ENS_SELECT_RULE_GREEDY = 0,
  ENS_SELECT_RULE_BAGGED = 1,
  ENS_SELECT_RULE_AVERAGE = 2
} ens_select_rule;
typedef enum {
  ENS_SELECT_TRUSTED = 0,
  ENS_SELECT_FEW_ROWS = 1,       /* n < min_rows */
  ENS_SELECT_HELDOUT_WORSE = 2   /* the held-out check chose the average */
} ens_select_reason;

typedef struct ens_select_info {
  ens_select_rule rule;
  ens_select_reason reason;
  int picks;        /* sum of counts */
  int init_sum;     /* greedy, bagged: sum over bags of the sorted-initialization size */
  /* check: mean held-out loss of each rule (NaN when not run) */
  double cv_average, cv_greedy, cv_bagged;
} ens_select_info;

/* Returns the total picks (> 0) or ENS_EINVAL (bad options, no usable
 * member), ENS_ENOMEM. counts (M); probs (M, n, C); y (n). */
int ens_select_robust_probs(int32_t *counts, ens_select_info *info, const float *probs,
                            const uint8_t *usable, const int32_t *y, int M, int n, int C,
                            const ens_select_opts *o);
/* Regression rows as for ens_select_greedy_gauss. */
int ens_select_robust_gauss(int32_t *counts, ens_select_info *info, const float *pred,
                            const uint8_t *usable, const float *y, int M, int n, int T,
                            int use_var, const ens_select_opts *o);
/* "greedy", "bagged", "average". */
const char *ens_select_rule_name(ens_select_rule r);
/* Why the plain average was used, as a phrase ("" when trusted). */
const char *ens_select_reason_text(ens_select_reason r);

#endif
