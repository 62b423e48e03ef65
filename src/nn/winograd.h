/* Winograd F(2x2, 3x3) for 3x3 convolutions with stride 1 and padding 1
 * (winograd.c): the forward pass and the input gradient; conv.c chooses it
 * for such layers. */
#ifndef ENS_NN_WINOGRAD_H
#define ENS_NN_WINOGRAD_H

#include <stddef.h>

#include "ens/conv.h"

/* Forward GEMMs of the convolutions (im2col and Winograd) run on column
 * counts rounded up to a multiple of ENS_GEMM_NCOL, the extra columns zero
 * and their products unread. OpenBLAS computes a column of a product with
 * other float operations when it falls in the remainder of its N unrolling
 * (up to 16 columns; on this CPU's kernels a product's columns 144-146 of
 * 147 differ from the same columns of a 588-column product), so without
 * it an image's output would depend on how many images share its group,
 * that is on the batch size, and eval outputs on how rows are batched. */
enum { ENS_GEMM_NCOL = 16 };
static inline size_t ens_gemm_cols(size_t n) {
  return (n + ENS_GEMM_NCOL - 1) / ENS_GEMM_NCOL * ENS_GEMM_NCOL;
}

/* Whether conv.c runs g through Winograd: k 3, stride 1, padding 1, and at
 * least 8 input and 8 output channels (below that the GEMMs are too thin
 * to gain). */
int ens_wino_applies(const ens_conv_geom *g);
/* Scratch floats for groups of up to G images (forward, or the input
 * gradient of one group). */
size_t ens_wino_nwork(const ens_conv_geom *g, int G);
/* y (batch, O, H, W) = conv(x, w) + b, groups of ens_conv2d_group images;
 * sums[o] += each output plane's 8-lane sum, image by image, when not
 * NULL. */
void ens_wino_forward(float *y, float *work, const float *x, const float *w, const float *b,
                      const ens_conv_geom *g, int batch, double *sums);
/* dx (gb, C, H, W) of one group from its output gradient dyg (O, N = gb H
 * W); filters: transform w into the scratch first (the group's first
 * call; later groups reuse the transformed filters left there). */
void ens_wino_dx(float *dx, float *work, const float *dyg, size_t N, const float *w,
                 const ens_conv_geom *g, int gb, int filters);

#endif
