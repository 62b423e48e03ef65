/* Element-wise layers: ReLU and inverted dropout. */
#include "core/clones.h"
#include "ens/nn.h"

ENS_CLONES void ens_relu_forward(float *y, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

ENS_CLONES void ens_relu_backward(float *dx, const float *dy, const float *y, size_t n) {
  /* Load dy unconditionally: a conditional load keeps GCC from vectorizing
   * the loop and leaves a branch that mispredicts on half the units. */
  for (size_t i = 0; i < n; i++) {
    float g = dy[i];
    dx[i] = y[i] > 0.0f ? g : 0.0f;
  }
}

void ens_dropout_forward(float *y, float *mask, const float *x, float p, size_t n, ens_rng *r) {
  const float keep_scale = 1.0f / (1.0f - p);
  if (p <= 0.0f) {
    for (size_t i = 0; i < n; i++) {
      mask[i] = 1.0f;
      y[i] = x[i];
    }
    return;
  }
  /* One 32-bit draw per element, compared against p in fixed point. */
  const uint64_t threshold = (uint64_t)((double)p * 4294967296.0);
  for (size_t i = 0; i < n; i++) {
    mask[i] = (uint64_t)ens_rng_u32(r) >= threshold ? keep_scale : 0.0f;
    y[i] = x[i] * mask[i];
  }
}

ENS_CLONES void ens_dropout_backward(float *dx, const float *dy, const float *mask, size_t n) {
  for (size_t i = 0; i < n; i++)
    dx[i] = dy[i] * mask[i];
}
