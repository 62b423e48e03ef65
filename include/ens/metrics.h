/* Metrics of probabilistic predictions and the ensemble combination rules.
 * All functions take probabilities p (n, C) row-major and labels y (n). */
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

#endif
