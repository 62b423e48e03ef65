/* Dense (fully connected) layer kernels on top of OpenBLAS sgemm. */
#include <cblas.h>
#include <string.h>

#include "ens/nn.h"

void ens_dense_forward(float *y, const float *x, const float *w, const float *b, int batch,
                       int in, int out) {
  /* Start from the bias rows so sgemm accumulates onto them (beta = 1). */
  for (int i = 0; i < batch; i++)
    memcpy(y + (size_t)i * out, b, (size_t)out * sizeof(float));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, 1.0f, x, in, w, in, 1.0f,
              y, out);
}

void ens_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int batch, int in, int out) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, batch, 1.0f, dy, out, x, in, 0.0f,
              dw, in);
  for (int j = 0; j < out; j++)
    db[j] = 0.0f;
  for (int i = 0; i < batch; i++) {
    const float *row = dy + (size_t)i * out;
    for (int j = 0; j < out; j++)
      db[j] += row[j];
  }
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, in, out, 1.0f, dy, out, w, in,
                0.0f, dx, in);
}
