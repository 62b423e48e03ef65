/* Augmentation of image rows for training steps: random crop with padding
 * and horizontal flip (the standard CIFAR/Fashion-MNIST recipe, e.g. He et
 * al. 2016, sec. 4.2), drawn per row from a keyed counter-based stream. */
#include <string.h>

#include "ens/train.h"

void ens_augment_row(float *x, float *scratch, const ens_augment *a, ens_rng *r) {
  const int C = a->c, H = a->h, W = a->w;
  const size_t n = (size_t)C * H * W;
  /* Three draws, always, so the stream's use does not depend on the values. */
  uint32_t span = (uint32_t)(2 * a->crop + 1);
  int dy = (int)ens_rng_below(r, span) - a->crop;
  int dx = (int)ens_rng_below(r, span) - a->crop;
  int flip = a->flip && (ens_rng_u32(r) & 1u);
  if (dx == 0 && dy == 0 && !flip)
    return;
  memcpy(scratch, x, n * sizeof(float));
  /* out(c, h, w) = in(c, h + dy, w' + dx), w' = W - 1 - w when flipped. */
  for (int c = 0; c < C; c++)
    for (int h = 0; h < H; h++) {
      int sh = h + dy;
      float *out = x + ((size_t)c * H + h) * W;
      const float *pad = a->pad ? a->pad + ((size_t)c * H + h) * W : NULL;
      const float *src = scratch + ((size_t)c * H + sh) * W;
      for (int w = 0; w < W; w++) {
        int sw = (flip ? W - 1 - w : w) + dx;
        if (sh < 0 || sh >= H || sw < 0 || sw >= W)
          out[w] = pad ? pad[w] : 0.0f;
        else
          out[w] = src[sw];
      }
    }
}
