/* The task of a job: what a member predicts for a row and how predictions
 * are scored and combined. Classification predicts C probabilities per row;
 * regression predicts T means then T variances (2T floats, in the original
 * units of y). Packing, combine rules, metrics, predict and merge call these
 * functions instead of branching on the task themselves. */
#ifndef ENS_ENSEMBLE_TASK_H
#define ENS_ENSEMBLE_TASK_H

#include <hdf5.h>
#include <stdint.h>

#include "ens/config.h"
#include "ens/data.h"
#include "ens/metrics.h"
#include "ens/model.h"

#define ENS_TASK_MAX_METRICS 11

typedef struct ens_task {
  int regress;         /* 0: classify, 1: regress */
  ens_head_kind head;  /* softmax, gaussian or mse */
  int C, T;            /* classes (classify) or targets (regress) */
  int W;               /* floats per prediction row: C or 2T */
  const float *ymean;  /* (T) target standardization to undo, NULL = none */
  const float *ystd;   /* (T) */
} ens_task;

/* The truth of a split: labels y (n) or targets t (n, T), original units. */
typedef struct ens_truth {
  const int32_t *y;
  const float *t;
  int n;
} ens_truth;

/* Fills k for a classification (C classes) or regression (T targets, loss)
 * job; ymean/ystd may be NULL. */
void ens_task_init(ens_task *k, int regress, int C, int T, ens_loss_kind loss,
                   const float *ymean, const float *ystd);
/* "classify" or "regress". */
const char *ens_task_kind_name(const ens_task *k);

/* Metrics of prediction rows pred (n, W) against truth: classify accuracy,
 * nll, brier, ece; regress rmse, mae, r2, nll, crps, coverage_50/90/95,
 * width_50/90/95 (ens_reg_metrics; variances of zero make nll, crps and the
 * coverages those of a point prediction). out has ens_task_nmetrics values.
 * Metric 0 is the headline (accuracy or rmse), metric 1 the NLL. */
int ens_task_nmetrics(const ens_task *k);
const char *ens_task_metric_name(const ens_task *k, int i);
/* 1 when a larger value of metric i is better (accuracy, r2, coverage). */
int ens_task_metric_higher_better(const ens_task *k, int i);
void ens_task_metrics(const ens_task *k, double *out, const float *pred, const ens_truth *truth);
/* The NLL on truth's rows of the prior predictor: the same prediction for
 * every row, the class frequencies of the training labels (add-one
 * smoothed, so a class they lack stays finite), or per target the training
 * targets' mean and variance (original units). ens_no_better_than_prior compares
 * a member's NLL with it. NaN when train has no rows or memory runs out. */
double ens_task_prior_nll(const ens_task *k, const ens_split *train, const ens_truth *truth);

/* Prediction rows (n, W) of model m for the rows of x, in the original
 * units of y. */
void ens_task_predict(const ens_task *k, ens_model *m, float *pred, const float *x, int n);
/* The average of `passes` MC-dropout passes (ens_model_predict_mc with
 * passes 0..passes-1, rows numbered from 0) for member key `member`;
 * scratch holds (n, W) floats. For regression the passes are combined as a
 * uniform mixture (mean of means; mean of var + mean^2 minus mean^2). */
void ens_task_predict_mc(const ens_task *k, ens_model *m, float *pred, float *scratch,
                         const float *x, int n, uint64_t seed, uint32_t member, int passes);

/* The same for rows numbered from row0 (a pass over part of a larger input
 * gets the masks those rows get in one pass over all of it), with the
 * caller's sum (n, W) doubles: allocates nothing. */
void ens_task_predict_mc_at(const ens_task *k, ens_model *m, float *pred, float *scratch,
                            double *sum, const float *x, int n, long row0, uint64_t seed,
                            uint32_t member, int passes);

/* Running combination of members' prediction rows, with weights, folded
 * in member order (bitwise reproducible). */
typedef struct ens_acc {
  const ens_task *k;
  int n;
  double *sum;     /* (n, W): sum w p (classify); sum w mu, sum w (var + mu^2) (regress) */
  double *ent;     /* classify: (n) sum w H(p); regress: (n, T) sum w var */
  int32_t *votes;  /* classify: (n, C) argmax counts (unweighted), NULL for regress */
  double wsum;
  int count;       /* members folded */
} ens_acc;

int ens_acc_init(ens_acc *a, const ens_task *k, int n);
void ens_acc_free(ens_acc *a);
void ens_acc_reset(ens_acc *a);
/* Folds one member's rows pred (n, W) with weight w; pred_argmax (n), when
 * not NULL, receives its class predictions (classify). */
void ens_acc_add(ens_acc *a, const float *pred, double w, int32_t *pred_argmax);
/* Combined rows (n, W): the weighted average of probabilities, or the
 * moment-matched mixture mean and variance (Lakshminarayanan et al. 2017). */
void ens_acc_mean(const ens_acc *a, float *out);
/* Classify: vote shares out (n, C) and predictions pred (n) (ties: larger
 * summed probability, then lower class). */
void ens_acc_vote(const ens_acc *a, float *out, int32_t *pred);
/* Classify: out (n, 3) = predictive entropy, expected member entropy, mutual
 * information, for the combined rows comb (n, C). */
void ens_acc_uncertainty(const ens_acc *a, const float *comb, float *out);
/* Regress: aleatoric (mean of member variances) and epistemic (variance of
 * member means) parts (n, T) of the combined rows comb (n, 2T). */
void ens_acc_var_parts(const ens_acc *a, const float *comb, float *alea, float *epi);

/* Class of each row (classify, argmax) into pred (n). */
void ens_task_argmax(const ens_task *k, int32_t *pred, const float *rows, int n);

/* Calibration fitted on validation rows: a temperature for probabilities
 * (Guo et al. 2017) or a variance scale for regression. Returns the factor. */
double ens_task_calibration_fit(const ens_task *k, const float *val_rows, const ens_truth *val);
/* Applies factor f to rows (n, W) in place (temperature, or variance
 * scale); alea/epi (n, T), when not NULL, are scaled with the variance. */
void ens_task_calibration_apply(const ens_task *k, float *rows, int n, double f, float *alea,
                                float *epi);

/* combine = select: fewer validation rows than this use the plain average. */
#define ENS_SELECT_MIN_ROWS 20

/* Robust selection (ens_select_robust_*: sorted initialization, bagging,
 * the held-out fallback to the plain average) on validation rows vrows
 * (M, n_val, W): counts (M) of picks, usable (M), info filled.
 * Returns the number of picks or a negative ENS_E* code. */
int ens_task_select(const ens_task *k, int32_t *counts, ens_select_info *info, const float *vrows,
                    const uint8_t *usable, const ens_truth *val, int M,
                    const ens_select_opts *o);
/* The selection's options as the job's [ensemble] select_* keys set them
 * (the collection's and hyper-deep's selections are the same one). */
ens_select_opts ens_task_select_opts(const ens_config *c);

/* How a member's prediction rows (n, W) are stored: in the datasets
 * names[0..parts) (classify "probs" (n, C); regress "mean" and "var"
 * (n, T) each), each holding W / parts columns. Returns parts. */
#define ENS_TASK_MAX_PARTS 2
int ens_task_parts(const ens_task *k, const char **names);
/* Rows (n, W) into the stored parts (n, W / parts) each; rows == NULL
 * fills the parts with NaN (a failed member). */
void ens_task_split_rows(const ens_task *k, const float *rows, int n, float *const *parts);
/* The inverse: stored parts into rows (n, W). */
void ens_task_join_rows(const ens_task *k, const float *const *parts, int n, float *rows);

/* Writes combined rows (n, W) as <prefix>probs, <prefix>pred and
 * <prefix>uncertainty (classify), or <prefix>mean, var, var_aleatoric and
 * var_epistemic (n, T) (regress). Returns 0 or an ENS_E* code. */
int ens_task_write_rows(hid_t f, const char *prefix, const ens_task *k, const float *rows,
                        const int32_t *pred, const float *unc, const float *alea,
                        const float *epi, int n);

/* Model prediction rows (n, W) in standardized target units into the
 * original units of y in place (what ens_task_predict applies after
 * ens_model_predict); nothing for classification. */
void ens_task_units(const ens_task *k, float *rows, int n);

#endif
