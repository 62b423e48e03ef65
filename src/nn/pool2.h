/* 2x2 max pooling every 2 pixels, 4 windows at a time: the vector pieces
 * that pool.c (max pooling's backward) and batchnorm2d.c (the fused run's
 * BN output gradient) share. GCC/clang vector extensions; plain lane-wise
 * moves and masks, so the bits are those of the scalar loops. */
#ifndef ENS_NN_POOL2_H
#define ENS_NN_POOL2_H

typedef float v4f __attribute__((vector_size(4 * sizeof(float))));
typedef int v4i __attribute__((vector_size(4 * sizeof(int))));

/* The gradient of 4 windows scattered to their 16 pixels: v (the windows'
 * gradients), am (their argmax, a plane index as a float), c the plane
 * index of the first window's top-left pixel, W the plane width. out[0],
 * out[1]: the top row's 8 pixels from c; out[2], out[3]: the bottom row's
 * from c + W. Each pixel is its window's gradient where it is the window's
 * argmax, +0 elsewhere. */
static inline void pool2_scatter4(v4f out[4], v4f v, v4f am, int c, int W) {
  const v4i lane2 = {0, 2, 4, 6};
  const v4i off = __builtin_convertvector(am, v4i) - (lane2 + c);
  const v4i vi = (v4i)v;
  const v4f e0 = (v4f)(vi & (off == 0)), o0 = (v4f)(vi & (off == 1));
  const v4f e1 = (v4f)(vi & (off == W)), o1 = (v4f)(vi & (off == W + 1));
  out[0] = __builtin_shufflevector(e0, o0, 0, 4, 1, 5);
  out[1] = __builtin_shufflevector(e0, o0, 2, 6, 3, 7);
  out[2] = __builtin_shufflevector(e1, o1, 0, 4, 1, 5);
  out[3] = __builtin_shufflevector(e1, o1, 2, 6, 3, 7);
}

#endif
