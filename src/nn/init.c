/* Weight initialization: Gaussian draws and orthogonal matrices (QR of a
 * Gaussian matrix via LAPACKE, computed in double then rounded). */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>

#include "ens/error.h"
#include "ens/nn.h"

void ens_init_normal(float *w, size_t n, double std, ens_rng *r) {
  for (size_t i = 0; i < n; i++)
    w[i] = (float)(std * ens_rng_normal(r));
}

int ens_init_orthogonal(float *w, int rows, int cols, double gain, ens_rng *r) {
  /* Work on the tall orientation: a (m, k) with m >= k, column-major. */
  int tall = rows >= cols;
  int m = tall ? rows : cols, k = tall ? cols : rows;
  int ret = 0;
  double *a = malloc((size_t)m * k * sizeof(double));
  double *tau = malloc((size_t)k * sizeof(double));
  double *diag = malloc((size_t)k * sizeof(double));
  if (!a || !tau || !diag) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  for (size_t i = 0; i < (size_t)m * k; i++)
    a[i] = ens_rng_normal(r);
  if (LAPACKE_dgeqrf(LAPACK_COL_MAJOR, m, k, a, m, tau) != 0) {
    ret = ENS_ELAPACK;
    goto cleanup;
  }
  /* Sign of diag(R) makes the result uniformly distributed (Mezzadri 2007). */
  for (int j = 0; j < k; j++)
    diag[j] = a[(size_t)j * m + j] < 0.0 ? -1.0 : 1.0;
  if (LAPACKE_dorgqr(LAPACK_COL_MAJOR, m, k, k, a, m, tau) != 0) {
    ret = ENS_ELAPACK;
    goto cleanup;
  }
  /* Q is (m, k) column-major: Q[i, j] = a[j*m + i]. */
  for (int i = 0; i < m; i++)
    for (int j = 0; j < k; j++) {
      float v = (float)(gain * diag[j] * a[(size_t)j * m + i]);
      if (tall)
        w[(size_t)i * cols + j] = v; /* w = Q: orthonormal columns */
      else
        w[(size_t)j * cols + i] = v; /* w = Q^T: orthonormal rows */
    }
cleanup:
  free(a);
  free(tau);
  free(diag);
  return ret;
}
