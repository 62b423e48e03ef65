/* The throughput path of libens (ens_infer_ws_create with batch > 0): an MLP
 * network (dense, batch norm, ReLU, dropout) compiled once into dense layers
 * with batch norm folded in and weights packed in panels of ENS_FAST_NR output
 * columns, evaluated by register-tiled kernels with a fused bias + ReLU.
 *
 * Bits: every output is bias + x[0] w[0] + x[1] w[1] + ... in this order, one
 * IEEE multiply then one add per term (no FMA; terms whose x[k] is zero are
 * skipped, which leaves the sum's bits as they are), whichever kernel
 * (AVX-512, AVX2 or SSE2) runs and however rows are grouped: so a row's result does not
 * depend on the other rows of the call, the batch, the thread count or the
 * x86-64 machine. It differs from the exact path (OpenBLAS sgemm over batch
 * norm applied separately) in the last bits. */
#ifndef ENS_INFER_FAST_H
#define ENS_INFER_FAST_H

#include <stddef.h>

#include "ens/model.h"

#define ENS_FAST_NR 32 /* output columns per weight panel */

typedef struct ens_fast_layer {
  int in, out, outp; /* outp: out rounded up to a multiple of ENS_FAST_NR */
  int relu;          /* bool: ReLU after the (folded) affine map */
  float *w;          /* (outp / NR) panels of (in, NR), 64-byte aligned */
  float *b;          /* (outp) */
} ens_fast_layer;

typedef struct ens_fast_net {
  int nlayers;
  ens_fast_layer *layers;
  int in, out;   /* widths of the network's input and output rows */
  int maxp;      /* largest outp */
  int maxin;     /* largest layer input width */
  int raw_input; /* bool: the input standardization is folded into the first
                    layer, which takes raw rows */
} ens_fast_net;

/* Kernel levels, for tests; ENS_FAST_AUTO picks the best the CPU runs. */
enum { ENS_FAST_AUTO = -1, ENS_FAST_SSE2 = 0, ENS_FAST_AVX2 = 1, ENS_FAST_AVX512 = 2 };

/* Compiles model m (its eval pass) into f. xmean, xstd (m->in): the input
 * standardization m's rows get, folded into the first layer when that is
 * numerically safe (then f->raw_input = 1 and ens_fast_forward takes raw
 * rows); NULL when none or not to fold. Returns 0, 1 when m has a layer the
 * fast path does not run (conv, pooling, weight normalization, batch norm not
 * right after a dense layer, a non-finite weight...: the caller keeps the
 * exact path), or ENS_ENOMEM. f owns its buffers; free with
 * ens_fast_net_free. */
int ens_fast_net_build(ens_fast_net *f, const ens_model *m, const float *xmean,
                       const float *xstd);
void ens_fast_net_free(ens_fast_net *f);

/* Scratch ens_fast_forward needs for calls of up to n rows: floats (two
 * buffers of ens_fast_block(n) rows of f->maxp) and ints (lists of the
 * non-zero inputs of each group of rows). */
int ens_fast_block(int n);
size_t ens_fast_scratch(const ens_fast_net *f, int n);
size_t ens_fast_iscratch(const ens_fast_net *f, int n);

/* z (n, f->out) = the network's output rows for x (n, ldx >= f->in; raw rows
 * when f->raw_input) at kernel level `level` (ENS_FAST_AUTO, or one the CPU
 * supports). scratch and iscratch hold ens_fast_scratch and
 * ens_fast_iscratch(f, n) values. Allocates nothing. */
void ens_fast_forward(const ens_fast_net *f, float *z, const float *x, int ldx, int n,
                      float *scratch, int *iscratch, int level);

/* The best level this CPU runs. */
int ens_fast_level(void);

#endif
