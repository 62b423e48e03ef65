/* 3x3 convolutions with stride 1 and padding 1 by Winograd's minimal
 * filtering F(2x2, 3x3) (Lavin & Gray, "Fast algorithms for convolutional
 * neural networks", CVPR 2016): each 2x2 tile of output pixels comes from
 * the 4x4 input tile around it with 16 multiplies per channel pair instead
 * of 36. With U = G g G^T (the 3x3 filter g as a 4x4 tile), V = B^T d B (the
 * input tile d) and Y = A^T M A, the 16 points xi of the transformed tiles
 * are independent:
 *
 *   M[xi] (O, tiles) = U[xi] (O, C) V[xi] (C, tiles)
 *
 * 16 OpenBLAS GEMMs per group of images, with 2.25 times fewer multiplies
 * than the im2col GEMM. The input gradient of the same convolution is the
 * same computation with the filters turned by 180 degrees and C and O
 * exchanged. The weight gradient stays an im2col GEMM (conv.c).
 *
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 *
 * Tile (a, b) covers output rows 2a, 2a + 1 and columns 2b, 2b + 1 (those
 * inside the plane), and reads input rows 2a - 1 .. 2a + 2 and columns
 * 2b - 1 .. 2b + 2, zero outside. Both transforms work on 8 tiles of a tile
 * row at a time (GCC/clang vector extensions): the input plane is first
 * copied with its padding, each row split into its even and odd columns, so
 * that each of a tile's 4 columns is a contiguous vector over the tiles.
 * Every value is a fixed sequence of float operations, so the results are
 * the same on any rank count and batch split (the GEMM reduces each column
 * over the channels the same way wherever the column sits). They differ from
 * the im2col path's by rounding (the transforms' additions; relative
 * differences of a few 1e-7). */
#include <cblas.h>
#include <string.h>

#include "core/clones.h"
#include "ens/conv.h"
#include "nn/winograd.h"

/* XI points per transformed tile; VL floats per vector. The GEMMs' columns
 * (tiles) are rounded up by ens_gemm_cols (see winograd.h). */
enum { XI = 16, VL = 8 };
typedef float v8f __attribute__((vector_size(VL * sizeof(float))));

#define LD8(v, p) memcpy(&(v), (p), sizeof(v8f))
#define ST8(p, v) memcpy((p), &(v), sizeof(v8f))

int ens_wino_applies(const ens_conv_geom *g) {
  return g->k == 3 && g->stride == 1 && g->pad == 1 && g->C >= 8 && g->O >= 8 &&
         g->Ho == g->H && g->Wo == g->W;
}

typedef struct {
  int th, tw, tp;   /* tile rows, tile columns, tiles per image */
  int cw;           /* floats per split half-row: tw + 1 rounded up to VL, plus VL */
  size_t T, blk;    /* tiles of G images, rounded up to NCOL; floats per xi block of V
                     * or M (max channels) */
} wgeom;

static wgeom wino_geom(const ens_conv_geom *g, int G) {
  wgeom w;
  w.th = (g->H + 1) / 2;
  w.tw = (g->W + 1) / 2;
  w.tp = w.th * w.tw;
  w.cw = (w.tw + 1 + VL - 1) / VL * VL + VL;
  w.T = ens_gemm_cols((size_t)G * w.tp);
  const int ch = g->C > g->O ? g->C : g->O;
  /* A tile row's last vector may write up to VL - 1 floats past it (see
   * in_plane): slack at the end of each block. */
  w.blk = (size_t)ch * w.T + VL;
  return w;
}

size_t ens_wino_nwork(const ens_conv_geom *g, int G) {
  const wgeom w = wino_geom(g, G);
  /* U (16 O C), V and M (16 blocks each), one split plane (th + 1 row
   * pairs: 2 (th + 1) rows of 2 half-rows). */
  return (size_t)XI * g->O * g->C + 2 * (size_t)XI * w.blk + (size_t)4 * (w.th + 1) * w.cw;
}

/* U[xi] from w (O, C, 3, 3): (O, C) per xi, or with flip the filters
 * turned by 180 degrees as (C, O) per xi (the input gradient's). */
static void wino_filters(float *u, const float *w, int O, int C, int flip) {
  const size_t OC = (size_t)O * C;
  for (int o = 0; o < O; o++)
    for (int c = 0; c < C; c++) {
      const float *f = w + ((size_t)o * C + c) * 9;
      float g[3][3], t[4][3];
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
          g[i][j] = flip ? f[(2 - i) * 3 + (2 - j)] : f[i * 3 + j];
      for (int j = 0; j < 3; j++) { /* t = G g */
        t[0][j] = g[0][j];
        t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
        t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
        t[3][j] = g[2][j];
      }
      const size_t at = flip ? (size_t)c * O + o : (size_t)o * C + c;
      for (int i = 0; i < 4; i++) { /* U = t G^T */
        u[(size_t)(i * 4 + 0) * OC + at] = t[i][0];
        u[(size_t)(i * 4 + 1) * OC + at] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
        u[(size_t)(i * 4 + 2) * OC + at] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
        u[(size_t)(i * 4 + 3) * OC + at] = t[i][2];
      }
    }
}

/* The chunks of VL tiles of a tile row of tw tiles: starts b = 0, VL, ...,
 * the last one overlapping its predecessor when tw > VL is not a multiple
 * of VL (the same values computed twice); with tw < VL one chunk whose
 * lanes past tw are junk. */
static inline int chunk_start(int b, int tw) { return b + VL <= tw || tw < VL ? b : tw - VL; }

/* Columns j = 0..3 of the tiles b..b+7 in a split row (e, then o at
 * e + cw): e[b..], o[b..], e[b + 1..], o[b + 1..]. */
static inline void tile_row(v8f d[4], const float *e, int cw, int b) {
  LD8(d[0], e + b);
  LD8(d[1], e + cw + b);
  LD8(d[2], e + b + 1);
  LD8(d[3], e + cw + b + 1);
}

/* Row i of (B^T d) B from row i of B^T d (u): its 4 points to V. */
static inline void store_row(float *out, size_t ldv, int i, const v8f u[4]) {
  const v8f c0 = u[0] - u[2], c1 = u[1] + u[2], c2 = u[2] - u[1], c3 = u[1] - u[3];
  ST8(out + (size_t)(i * 4 + 0) * ldv, c0);
  ST8(out + (size_t)(i * 4 + 1) * ldv, c1);
  ST8(out + (size_t)(i * 4 + 2) * ldv, c2);
  ST8(out + (size_t)(i * 4 + 3) * ldv, c3);
}

/* V (16 blocks of ldv, tiles t0 + a tw + b of one plane) = B^T d B of the
 * H x W plane x. sp: scratch of 4 (th + 1) cw floats. The split plane:
 * padded row r (input row r - 1; rows 0 and > H are zero) as its even
 * columns e_r[b] = pad[r][2b] (input column 2b - 1) and odd columns
 * o_r[b] = pad[r][2b + 1] (input column 2b), so that column j of the tiles
 * b..b+7 is e_r[b..], o_r[b..], e_r[b + 1..], o_r[b + 1..] for j = 0..3.
 * Where tw < VL, a tile row's vector writes VL - tw junk floats past the
 * row: into tiles written later (the next tile row, plane or channel, in
 * the order the callers go) or the block's slack. */
ENS_CLONES static void in_plane(float *v, size_t ldv, size_t t0, const float *x, int H, int W,
                                const wgeom *w, float *sp) {
  const int th = w->th, tw = w->tw, cw = w->cw, rows = 2 * th + 2;
  for (int r = 0; r < rows; r++) {
    float *e = sp + (size_t)r * 2 * cw, *o = e + cw;
    const int ir = r - 1;
    if (ir < 0 || ir >= H) {
      memset(e, 0, 2 * (size_t)cw * sizeof(float));
      continue;
    }
    const float *xr = x + (size_t)ir * W;
    const int ne = W / 2, no = (W + 1) / 2; /* odd and even input columns */
    e[0] = 0.0f;
    for (int b = 0; b < ne; b++)
      e[b + 1] = xr[2 * b + 1];
    for (int b = ne + 1; b < cw; b++)
      e[b] = 0.0f;
    for (int b = 0; b < no; b++)
      o[b] = xr[2 * b];
    for (int b = no; b < cw; b++)
      o[b] = 0.0f;
  }
  for (int a = 0; a < th; a++) {
    const float *r0 = sp + (size_t)(2 * a) * 2 * cw;
    for (int b0 = 0; b0 < tw; b0 += VL) {
      const int b = chunk_start(b0, tw);
      float *out = v + t0 + (size_t)a * tw + b;
      /* B^T d, row by row of the result (row 0 from tile rows 0 and 2,
       * rows 1 and 2 from 1 and 2, row 3 from 1 and 3: few vectors live at
       * a time), then B on its columns. */
      v8f d1[4], d2[4], dk[4], u[4], u2[4];
      tile_row(dk, r0, cw, b);
      tile_row(d2, r0 + (size_t)2 * 2 * cw, cw, b);
      for (int j = 0; j < 4; j++)
        u[j] = dk[j] - d2[j];
      store_row(out, ldv, 0, u);
      tile_row(d1, r0 + (size_t)1 * 2 * cw, cw, b);
      for (int j = 0; j < 4; j++) {
        u[j] = d1[j] + d2[j];
        u2[j] = d2[j] - d1[j];
      }
      store_row(out, ldv, 1, u);
      store_row(out, ldv, 2, u2);
      tile_row(dk, r0 + (size_t)3 * 2 * cw, cw, b);
      for (int j = 0; j < 4; j++)
        u[j] = d1[j] - dk[j];
      store_row(out, ldv, 3, u);
      if (b + VL >= tw)
        break;
    }
  }
}

/* The H x W plane y = A^T M A + bias from M (16 blocks of ldm, tiles t0 +
 * a tw + b); pixels outside the plane (odd H or W) are not written. */
ENS_CLONES static void out_plane(float *y, const float *m, size_t ldm, size_t t0, float bias,
                                 int H, int W, const wgeom *w) {
  const int th = w->th, tw = w->tw;
  const v8f bv = {bias, bias, bias, bias, bias, bias, bias, bias};
  for (int a = 0; a < th; a++)
    for (int b0 = 0; b0 < tw; b0 += VL) {
      const int b = chunk_start(b0, tw);
      const float *in = m + t0 + (size_t)a * tw + b;
      v8f s[2][4];
      for (int j = 0; j < 4; j++) { /* A^T M: rows, column by column */
        v8f q0, q1, q2, q3;
        LD8(q0, in + (size_t)j * ldm);
        LD8(q1, in + (size_t)(4 + j) * ldm);
        LD8(q2, in + (size_t)(8 + j) * ldm);
        LD8(q3, in + (size_t)(12 + j) * ldm);
        s[0][j] = q0 + q1 + q2;
        s[1][j] = q1 - q2 - q3;
      }
      for (int i = 0; i < 2; i++) { /* (A^T M) A: columns, interleaved */
        const int row = 2 * a + i;
        if (row >= H)
          break;
        const v8f y0 = s[i][0] + s[i][1] + s[i][2] + bv, y1 = s[i][1] - s[i][2] - s[i][3] + bv;
        float px[2 * VL];
        const v8f lo = __builtin_shufflevector(y0, y1, 0, 8, 1, 9, 2, 10, 3, 11);
        const v8f hi = __builtin_shufflevector(y0, y1, 4, 12, 5, 13, 6, 14, 7, 15);
        ST8(px, lo);
        ST8(px + VL, hi);
        const int nb = tw - b < VL ? tw - b : VL;
        int n = 2 * nb;
        if (2 * b + n > W)
          n = W - 2 * b;
        /* n pixels from px: whole vectors, the last one overlapping its
         * predecessor (a library call per row cost as much as the row). */
        float *dst = y + (size_t)row * W + 2 * b;
        if (n >= VL) {
          ST8(dst, lo);
          v8f t;
          LD8(t, px + n - VL);
          ST8(dst + n - VL, t);
        } else {
          for (int k = 0; k < n; k++)
            dst[k] = px[k];
        }
      }
      if (b + VL >= tw)
        break;
    }
}

/* One group: out planes (n, q) at out + n os_n + q os_q (q < Q, bias b[q]
 * or 0, sums[q] += each plane's sum when not NULL) from in planes (n, p) at
 * in + n is_n + p is_p (p < Pch), through u (16 blocks of Q x Pch). */
static void wino_group(float *out, size_t os_n, size_t os_q, int Q, const float *b, double *sums,
                       const float *in, size_t is_n, size_t is_p, int Pch, const float *u,
                       float *work, const ens_conv_geom *g, int gb, int G) {
  const wgeom w = wino_geom(g, G);
  const size_t nt = (size_t)gb * w.tp, T = ens_gemm_cols(nt);
  const size_t P = (size_t)g->H * g->W;
  float *v = work, *m = v + XI * w.blk, *sp = m + XI * w.blk;
  /* The columns past the group's tiles: zeros, whose products are not
   * read. */
  if (T > nt)
    for (int x = 0; x < XI; x++)
      for (int p = 0; p < Pch; p++)
        memset(v + (size_t)x * w.blk + (size_t)p * T + nt, 0, (T - nt) * sizeof(float));
  /* Channel by channel, image by image: the order in which a tile row's
   * junk floats (tw < VL) land on tiles still to be written. */
  for (int p = 0; p < Pch; p++)
    for (int n = 0; n < gb; n++)
      in_plane(v + (size_t)p * T, w.blk, (size_t)n * w.tp, in + n * is_n + p * is_p, g->H, g->W,
               &w, sp);
  for (int x = 0; x < XI; x++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Q, (int)T, Pch, 1.0f,
                u + (size_t)x * Q * Pch, Pch, v + (size_t)x * w.blk, (int)T, 0.0f,
                m + (size_t)x * w.blk, (int)T);
  for (int n = 0; n < gb; n++)
    for (int q = 0; q < Q; q++) {
      float *yp = out + n * os_n + q * os_q;
      out_plane(yp, m + (size_t)q * T, w.blk, (size_t)n * w.tp, b ? b[q] : 0.0f, g->H, g->W, &w);
      if (sums)
        sums[q] += ens_plane_sum(yp, P);
    }
}

void ens_wino_forward(float *y, float *work, const float *x, const float *w, const float *b,
                      const ens_conv_geom *g, int batch, double *sums) {
  const int G = ens_conv2d_group(g, batch), C = g->C, O = g->O;
  const size_t P = (size_t)g->H * g->W;
  float *u = work;
  wino_filters(u, w, O, C, 0);
  for (int n0 = 0; n0 < batch; n0 += G) {
    const int gb = batch - n0 < G ? batch - n0 : G;
    wino_group(y + (size_t)n0 * O * P, (size_t)O * P, P, O, b, sums, x + (size_t)n0 * C * P,
               (size_t)C * P, P, C, u, u + (size_t)XI * O * C, g, gb, G);
  }
}

void ens_wino_dx(float *dx, float *work, const float *dyg, size_t N, const float *w,
                 const ens_conv_geom *g, int gb, int filters) {
  const int C = g->C, O = g->O;
  const size_t P = (size_t)g->H * g->W;
  float *u = work;
  if (filters)
    wino_filters(u, w, O, C, 1);
  /* dy's plane (n, o) at dyg + o N + n P; dx's (n, c) at dx + (n C + c) P. */
  wino_group(dx, (size_t)C * P, P, C, NULL, NULL, dyg, P, N, O, u, u + (size_t)XI * O * C, g, gb,
             gb);
}
