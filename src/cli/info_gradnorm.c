/* The gradient-norm part of `ens info`: per member, the norms of the last
 * epoch before clipping (min, median, p90, p99, max), the steps the norm
 * clip scaled down over the whole run, and the threshold c in force at the
 * end (a fixed clip_norm, or AutoClip's percentile). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ens/gradnorm.h"
#include "io/h5util.h"

static void num(double v) {
  if (isnan(v))
    printf(" %10s", "-");
  else
    printf(" %10.4g", v);
}

void ens_cli_info_grad_norm(hid_t f, long long first, long long members) {
  char path[96], *clip = NULL;
  snprintf(path, sizeof(path), "/members/%lld/grad_norm", first);
  int have = 0;
  for (long long i = 0; i < members && !have; i++) {
    snprintf(path, sizeof(path), "/members/%lld/grad_norm", first + i);
    have = ens_h5_exists(f, path);
  }
  if (!have)
    return; /* a result of an ens before the record */
  double pct = 0, factor = 0, wlr = 0;
  int64_t warmup = 0;
  ens_h5_get_attr_str(f, path, "clip", &clip);
  printf("\n  gradient norm before clipping, last epoch (clip_norm: ");
  if (clip && !strcmp(clip, "auto") && ens_h5_get_attr_f64(f, path, "clip_percentile", &pct) == 0)
    printf("auto, AutoClip: the %gth percentile of all norms so far)\n", pct);
  else if (clip && !strcmp(clip, "auto") &&
           ens_h5_get_attr_i64(f, path, "clip_warmup", &warmup) == 0 &&
           ens_h5_get_attr_f64(f, path, "clip_factor", &factor) == 0 &&
           ens_h5_get_attr_f64(f, path, "clip_warmup_lr", &wlr) == 0)
    printf("auto, %g x the median norm of a %lld-step warm-up at %g x lr)\n", factor,
           (long long)warmup, wlr);
  else
    printf("%s)\n", clip && !strcmp(clip, "fixed") ? "fixed" : "off");
  free(clip);
  printf("  %-8s %10s %10s %10s %10s %10s %16s %10s\n", "member", "min", "median", "p90", "p99",
         "max", "clipped steps", "c");
  for (long long i = 0; i < members; i++) {
    snprintf(path, sizeof(path), "/members/%lld/grad_norm", first + i);
    int rank = 0;
    hsize_t dims[8];
    long long n = ens_h5_exists(f, path) ? ens_h5_size(f, path, &rank, dims) : -1;
    if (n <= 0 || rank != 2 || dims[1] != ENS_GN_COLS || dims[0] > (1u << 24)) {
      printf("  %-8lld %10s\n", first + i, "-");
      continue;
    }
    float *g = malloc((size_t)n * sizeof(float));
    if (!g || ens_h5_read(f, path, H5T_NATIVE_FLOAT, g, (size_t)n)) {
      free(g);
      printf("  %-8lld %10s\n", first + i, "?");
      continue;
    }
    const float *last = g + (dims[0] - 1) * ENS_GN_COLS;
    double steps = 0, clipped = 0;
    for (hsize_t e = 0; e < dims[0]; e++) {
      steps += g[e * ENS_GN_COLS + ENS_GN_STEPS];
      clipped += g[e * ENS_GN_COLS + ENS_GN_CLIPPED];
    }
    printf("  %-8lld", first + i);
    for (int c = ENS_GN_MIN; c <= ENS_GN_MAX; c++)
      num(last[c]);
    char cs[40];
    snprintf(cs, sizeof(cs), "%.0f of %.0f", clipped, steps);
    printf(" %16s", cs);
    if (last[ENS_GN_CLIP] > 0)
      num(last[ENS_GN_CLIP]);
    else
      printf(" %10s", "off");
    printf("\n");
    free(g);
  }
}
