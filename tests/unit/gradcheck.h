/* Helpers of the finite-difference gradient checks (test_nn.c, test_conv.c):
 * double-precision central differences, the relative-error comparison that
 * fails a CUnit test and prints the worst entry, and small vector helpers. */
#ifndef ENS_TEST_GRADCHECK_H
#define ENS_TEST_GRADCHECK_H

#include <stddef.h>

#include "ens/rng.h"

/* Central-difference step on double inputs of size O(1): truncation error
 * O(h^2) ~ 1e-10, rounding O(1e-16 / h) ~ 1e-11. */
#define FD_H 1e-5
/* Relative tolerance of analytic vs numeric gradients (see above). */
#define GRAD_TOL 1e-3

typedef double (*loss_fn)(void *ctx);

/* v (n) ~ N(mean, std^2) from r. */
void fill_normal(float *v, size_t n, double mean, double std, ens_rng *r);
/* A malloc'ed double copy of v (n), or NULL; the caller frees it. */
double *to_double(const float *v, size_t n);
/* g (n) = central differences of f with respect to v (n), which f reads
 * through ctx; v is restored exactly. */
void numeric_grad(double *g, double *v, size_t n, loss_fn f, void *ctx);
/* Largest |v| over n doubles. */
double max_abs(const double *v, size_t n);
/* The largest relative error of analytic a (n) against numeric g (n):
 * |a - g| / max(|a|, |g|, floor), where floor is 1e-2 of `scale` (the largest
 * |g| of the whole gradient, or of g when scale is 0), so entries that are
 * zero up to float cancellation, e.g. the bias of a dense layer followed by
 * batch norm, are compared on the scale of the gradient; *at receives the
 * worst index. */
double grad_error(const float *a, const double *g, size_t n, double scale, size_t *at);
/* Fails the test unless grad_error <= tol; prints the worst entry on failure
 * (every error with ENS_TEST_VERBOSE=1). Returns the error. */
double check_grad(const char *what, const float *a, const double *g, size_t n, double tol,
                  double scale);
/* Largest |a - b| over n floats against doubles (INFINITY for a NaN). */
double max_diff(const float *a, const double *b, size_t n);

#endif
