/* Convolutional training step against its GEMM floor, in one process:
 * builds the network of a layer list on (C, H, W) images, then alternates
 * rounds of (a) only the cblas_sgemm calls that ens makes for one training
 * step (conv: forward, weight gradient, input gradient as im2col GEMMs;
 * dense: the same three; no input gradient for the first layer) and (b) the
 * full ens training step (ens_model_forward, ens_model_loss_backward,
 * ens_sgd_step), so that a loaded machine slows both alike and their ratio
 * stays meaningful; and (c) the same step with the model's fused runs
 * off (ens_model.nofuse), so the fusion's gain is measured in the same
 * conditions. Prints seconds per step of each, their ratio, the
 * GEMM rate and the memory of the model's buffers (im2col scratch
 * included). Used by scripts/bench-conv. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ens/conv.h"
#include "ens/model.h"
#include "ens/nn.h"
#include "ens/optim.h"
#include "nn/winograd.h"

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
/* Wall and CPU time: on a loaded machine the process's CPU time leaves out
 * the time it waited for a core. */
static void now(double t[2]) {
  t[0] = clock_s(CLOCK_MONOTONIC);
  t[1] = clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

static void fill(float *p, size_t n, unsigned *s) {
  for (size_t i = 0; i < n; i++) {
    *s = *s * 1664525u + 1013904223u;
    p[i] = (float)(*s >> 8) / 16777216.0f - 0.5f;
  }
}

typedef struct {
  int M, N, K, ta, tb; /* C (M, N) = op(A) (M, K) op(B) (K, N) */
  int reps, acc;       /* calls per step; acc: beta 1 after the first */
  float *a, *b, *c;
} gemm;

/* One training step's GEMMs of a list. */
static void run_gemms(const gemm *g, int ng) {
  for (int i = 0; i < ng; i++)
    for (int k = 0; k < g[i].reps; k++)
      cblas_sgemm(CblasRowMajor, g[i].ta ? CblasTrans : CblasNoTrans,
                  g[i].tb ? CblasTrans : CblasNoTrans, g[i].M, g[i].N, g[i].K, 1.0f, g[i].a,
                  g[i].ta ? g[i].M : g[i].K, g[i].b, g[i].tb ? g[i].K : g[i].N,
                  g[i].acc && k ? 1.0f : 0.0f, g[i].c, g[i].N);
}

int main(int argc, char **argv) {
  const char *layers = "conv 32 3 pad 1, bn, relu, maxpool 2, conv 64 3 pad 1, bn, relu, "
                       "maxpool 2, flatten, dense 128, bn, relu";
  int C = 1, H = 28, W = 28, classes = 10, batch = 128, steps = 20, rounds = 3;
  /* --only floor|ens|unfused: run that part alone (for perf record). */
  const char *only = NULL;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--layers"))
      layers = argv[i + 1];
    else if (!strcmp(argv[i], "--shape") && sscanf(argv[i + 1], "%d,%d,%d", &C, &H, &W) == 3)
      ;
    else if (!strcmp(argv[i], "--batch"))
      batch = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--steps"))
      steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--rounds"))
      rounds = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--only"))
      only = argv[i + 1];
    else {
      fprintf(stderr,
              "usage: ens-bench-conv [--layers LIST] [--shape C,H,W] [--batch B] [--steps S] "
              "[--rounds R] [--only floor|ens|unfused]\n");
      return 1;
    }
  }
  if (batch < 2 || steps < 1 || rounds < 1)
    return 1;
  if (only && strcmp(only, "floor") && strcmp(only, "ens") && strcmp(only, "unfused")) {
    fprintf(stderr, "ens-bench-conv: --only %s: expected floor, ens or unfused\n", only);
    return 1;
  }
  /* One thread, whatever OPENBLAS_NUM_THREADS says: the goal is stated for
   * one thread, and run by hand without the variable OpenBLAS started a
   * second thread whose spinning (sched_yield) the CPU-time figures then
   * counted (about a third of a profile's samples). */
  openblas_set_num_threads(1);
  ens_arch a = {.head = ENS_HEAD_SOFTMAX, .width = classes, .outputs = classes};
  a.in_shape = (ens_shape){.c = C, .h = H, .w = W, .image = 1};
  a.in = C * H * W;
  char err[512];
  if (ens_layers_parse(layers, &a, err, sizeof err) || ens_arch_check(&a, err, sizeof err)) {
    fprintf(stderr, "ens-bench-conv: %s\n", err);
    return 1;
  }
  ens_model m;
  if (ens_model_create(&m, &a, 0, a.n_hidden, 1, batch) ||
      ens_model_init(&m, ENS_INIT_HE, 0, 0, 1, 0)) {
    fprintf(stderr, "ens-bench-conv: cannot create the model\n");
    return 1;
  }
  /* The floor's GEMMs, with buffers of their own: the calls ens makes, in
   * the same shapes and numbers. A convolution runs per group of images
   * (ens_conv2d_group; a last partial group is one more call of its own
   * shape), reusing one im2col buffer and one output buffer per pass as
   * ens does. Convolutions that ens runs through Winograd F(2x2, 3x3)
   * (ens_wino_applies) make 16 GEMMs per group for the forward pass and 16
   * for the input gradient, and the im2col GEMM for the weight gradient.
   * A second list, the im2col floor, has every convolution as im2col GEMMs
   * (what ens made before Winograd): the floor of that formulation. */
  gemm g[6 * ENS_MAX_LAYERS * 16], gi[6 * ENS_MAX_LAYERS];
  int ng = 0, ngi = 0;
  double flops = 0.0, flops_i = 0.0;
  for (int i = 0; i < m.nlayers; i++) {
    const ens_layer *l = &m.layers[i];
    int first = i == 0;
    if (l->kind == ENS_LAYER_CONV) {
      ens_conv_geom cg = {.C = l->sin.c, .H = l->sin.h, .W = l->sin.w, .O = l->spec.n,
                          .k = l->spec.k, .stride = l->spec.stride, .pad = l->spec.pad};
      ens_conv_geom_init(&cg);
      int G = ens_conv2d_group(&cg, batch), P = cg.Ho * cg.Wo, M = cg.O, K = cg.C * cg.k * cg.k;
      int full = batch / G, rest = batch % G, wino = ens_wino_applies(&cg);
      int tp = ((cg.H + 1) / 2) * ((cg.W + 1) / 2); /* Winograd tiles per image */
      for (int part = 0; part < 2; part++) {
        int reps = part ? (rest ? 1 : 0) : full, nimg = part ? rest : G, N = nimg * P;
        if (!reps)
          continue;
        gi[ngi++] = (gemm){.M = M, .N = N, .K = K, .reps = reps};                  /* y = W col */
        gi[ngi++] = (gemm){.M = M, .N = K, .K = N, .tb = 1, .reps = reps, .acc = 1}; /* dW += */
        if (!first)
          gi[ngi++] = (gemm){.M = K, .N = N, .K = M, .ta = 1, .reps = reps}; /* dcol = W^T dy */
        flops_i += 2.0 * M * N * K * (first ? 2 : 3) * reps;
        if (!wino) { /* the forward GEMM on ens_gemm_cols columns, as ens calls it */
          g[ng] = gi[ngi - (first ? 2 : 3)];
          g[ng++].N = (int)ens_gemm_cols((size_t)N);
          g[ng++] = gi[ngi - (first ? 1 : 2)];
          if (!first)
            g[ng++] = gi[ngi - 1];
          flops += 2.0 * M * N * K * (first ? 2 : 3) * reps;
          continue;
        }
        int T = (int)ens_gemm_cols((size_t)nimg * tp);
        for (int x = 0; x < 16; x++) /* M[x] (O, T) = U[x] (O, C) V[x] (C, T) */
          g[ng++] = (gemm){.M = M, .N = T, .K = cg.C, .reps = reps};
        g[ng++] = (gemm){.M = M, .N = K, .K = N, .tb = 1, .reps = reps, .acc = 1}; /* dW += */
        flops += 2.0 * 16 * M * T * cg.C * reps + 2.0 * M * N * K * reps;
        if (!first) {
          for (int x = 0; x < 16; x++) /* (C, T) = U'[x] (C, O) V'[x] (O, T) */
            g[ng++] = (gemm){.M = cg.C, .N = T, .K = M, .reps = reps};
          flops += 2.0 * 16 * M * T * cg.C * reps;
        }
      }
    } else if (l->kind == ENS_LAYER_DENSE) {
      int M = batch, N = l->out, K = l->in; /* y (B, out) = x (B, in) W^T */
      gemm d[3] = {{.M = M, .N = N, .K = K, .tb = 1, .reps = 1},
                   {.M = N, .N = K, .K = M, .ta = 1, .reps = 1}, /* dW = dy^T x */
                   {.M = M, .N = K, .K = N, .reps = 1}};         /* dx = dy W */
      for (int j = 0; j < (first ? 2 : 3); j++)
        g[ng++] = gi[ngi++] = d[j];
      flops += 2.0 * M * N * K * (first ? 2 : 3);
      flops_i += 2.0 * M * N * K * (first ? 2 : 3);
    }
  }
  int ncalls = 0;
  for (int i = 0; i < ng; i++)
    ncalls += g[i].reps;
  unsigned s = 7;
  gemm *lists[2] = {g, gi};
  int counts[2] = {ng, ngi};
  for (int li = 0; li < 2; li++)
    for (int i = 0; i < counts[li]; i++) {
      gemm *q = &lists[li][i];
      q->a = malloc((size_t)q->M * q->K * sizeof(float));
      q->b = malloc((size_t)q->K * q->N * sizeof(float));
      q->c = malloc((size_t)q->M * q->N * sizeof(float));
      if (!q->a || !q->b || !q->c)
        return 1;
      fill(q->a, (size_t)q->M * q->K, &s);
      fill(q->b, (size_t)q->K * q->N, &s);
    }
  float *x = malloc((size_t)batch * m.in * sizeof(float)), *v = calloc(m.nparams, sizeof(float));
  int32_t *y = malloc((size_t)batch * sizeof(int32_t));
  if (!x || !v || !y)
    return 1;
  fill(x, (size_t)batch * m.in, &s);
  for (int i = 0; i < batch; i++)
    y[i] = i % classes;
  ens_sgd sgd = {.momentum = 0.9, .weight_decay = 5e-4, .nesterov = 1};
  double tf[2] = {0, 0}, te[2] = {0, 0}, tu[2] = {0, 0}, ti[2] = {0, 0};
  /* One untimed step of each first: the first touch of the buffers' pages
   * happens once per training run, not per step. */
  for (int r = -1; r < rounds; r++) {
    int ns = r < 0 ? 1 : steps;
    double t0[2], t1[2], t2[2], t4[2];
    now(t0);
    for (int st = 0; st < (only && strcmp(only, "floor") ? 0 : ns); st++)
      run_gemms(g, ng);
    now(t1);
    for (int st = 0; st < (only && strcmp(only, "ens") ? 0 : ns); st++) {
      ens_rng dr;
      ens_rng_init(&dr, 1, 0, ENS_STREAM_DROPOUT, (uint32_t)st);
      ens_model_forward(&m, x, batch, ENS_PASS_TRAIN, &dr);
      ens_model_loss_backward(&m, y, NULL, batch, NULL);
      ens_sgd_step(m.params, v, m.grads, m.nparams, 0.01, &sgd);
    }
    now(t2);
    /* (c) the same step with every layer run alone (no fused runs). */
    m.nofuse = 1;
    for (int st = 0; st < (only && strcmp(only, "unfused") ? 0 : ns); st++) {
      ens_rng dr;
      ens_rng_init(&dr, 1, 0, ENS_STREAM_DROPOUT, (uint32_t)st);
      ens_model_forward(&m, x, batch, ENS_PASS_TRAIN, &dr);
      ens_model_loss_backward(&m, y, NULL, batch, NULL);
      ens_sgd_step(m.params, v, m.grads, m.nparams, 0.01, &sgd);
    }
    m.nofuse = 0;
    double t3[2];
    now(t3);
    for (int st = 0; st < (only ? 0 : ns); st++)
      run_gemms(gi, ngi);
    now(t4);
    if (r < 0)
      continue;
    for (int c = 0; c < 2; c++) {
      tf[c] += t1[c] - t0[c];
      te[c] += t2[c] - t1[c];
      tu[c] += t3[c] - t2[c];
      ti[c] += t4[c] - t3[c];
    }
  }
  double n = (double)steps * rounds;
  size_t nact = 0;
  for (int i = 0; i < m.nlayers; i++)
    nact += (size_t)batch * m.layers[i].out;
  printf("conv_layers %s\n", layers);
  printf("conv_shape %d,%d,%d\n", C, H, W);
  printf("conv_batch %d\n", batch);
  printf("conv_params %zu\n", m.nparams);
  printf("conv_step_flops %.0f\n", flops);
  printf("conv_floor_step_seconds %.6f\n", tf[0] / n);
  printf("conv_ens_step_seconds %.6f\n", te[0] / n);
  printf("conv_floor_step_cpu_seconds %.6f\n", tf[1] / n);
  printf("conv_ens_step_cpu_seconds %.6f\n", te[1] / n);
  printf("conv_unfused_step_seconds %.6f\n", tu[0] / n);
  printf("conv_unfused_step_cpu_seconds %.6f\n", tu[1] / n);
  printf("conv_ratio %.3f\n", te[0] / tf[0]);
  printf("conv_floor_gflops %.2f\n", flops * n / tf[0] * 1e-9);
  printf("conv_floor_cpu_gflops %.2f\n", flops * n / tf[1] * 1e-9);
  printf("conv_gemm_calls %d\n", ncalls);
  printf("conv_im2col_step_flops %.0f\n", flops_i);
  printf("conv_im2col_floor_step_seconds %.6f\n", ti[0] / n);
  printf("conv_im2col_floor_step_cpu_seconds %.6f\n", ti[1] / n);
  printf("conv_ratio_im2col %.3f\n", te[0] / ti[0]);
  printf("conv_im2col_bytes %zu\n", m.nwork * sizeof(float));
  printf("conv_activation_bytes %zu\n", nact * sizeof(float));
  ens_model_free(&m);
  return 0;
}
