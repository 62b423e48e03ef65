/* Softmax and softmax cross-entropy, in log-sum-exp form so large logits
 * neither overflow nor lose the true-class term. */
#include <math.h>

#include "ens/nn.h"

static float row_softmax(float *p, const float *z, int C) {
  float mx = z[0];
  for (int c = 1; c < C; c++)
    mx = z[c] > mx ? z[c] : mx;
  float s = 0.0f;
  for (int c = 0; c < C; c++) {
    p[c] = expf(z[c] - mx);
    s += p[c];
  }
  float inv = 1.0f / s;
  for (int c = 0; c < C; c++)
    p[c] *= inv;
  return mx + logf(s); /* log-sum-exp */
}

void ens_softmax(float *probs, const float *logits, int batch, int C) {
  for (int i = 0; i < batch; i++)
    row_softmax(probs + (size_t)i * C, logits + (size_t)i * C, C);
}

double ens_softmax_xent(float *probs, float *dlogits, const float *logits, const int32_t *y,
                        int batch, int C) {
  double loss = 0.0;
  const float inv_b = 1.0f / (float)batch;
  for (int i = 0; i < batch; i++) {
    const float *z = logits + (size_t)i * C;
    float *p = probs + (size_t)i * C;
    float lse = row_softmax(p, z, C);
    loss += (double)(lse - z[y[i]]);
    if (dlogits) {
      float *d = dlogits + (size_t)i * C;
      for (int c = 0; c < C; c++)
        d[c] = p[c] * inv_b;
      d[y[i]] -= inv_b;
    }
  }
  return loss / batch;
}
