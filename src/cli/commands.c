/* `ens merge`, `ens predict` and `ens info`: argument parsing around the
 * library calls, and the readable summary of a result file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ens/config.h"
#include "ens/ensemble.h"
#include "ens/error.h"
#include "io/h5util.h"

int ens_cli_exit_code(int ret) {
  switch (ret) {
  case 0:
    return 0;
  case ENS_EINVAL:
  case ENS_EIO:
  case ENS_EFORMAT:
  case ENS_ECONFIG:
  case ENS_ESHAPE:
  case ENS_ENOTFOUND:
    return 1;
  default:
    return 2;
  }
}

int ens_cli_merge(int argc, char **argv) {
  const char **parts = calloc((size_t)argc + 1, sizeof(char *));
  const char *out = NULL;
  int n = 0;
  if (!parts)
    return 2;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      printf("usage: ens merge a.h5 b.h5 ... -o all.h5\n"
             "  Combines results of disjoint member slices of one job (e.g. the tasks of a\n"
             "  SLURM array, each run with [ensemble] first_member/count) into one result,\n"
             "  identical to a single run over all members. The parts must share the\n"
             "  configuration (apart from [output] and the slice) and the data.\n");
      free(parts);
      return 0;
    }
    if (!strcmp(argv[i], "-o") && i + 1 < argc)
      out = argv[++i];
    else if (argv[i][0] == '-') {
      fprintf(stderr, "ens merge: unknown or incomplete option '%s'\n", argv[i]);
      free(parts);
      return 1;
    } else
      parts[n++] = argv[i];
  }
  if (!out || n < 1) {
    fprintf(stderr, "ens merge: usage: ens merge a.h5 b.h5 ... -o all.h5\n");
    free(parts);
    return 1;
  }
  char err[2048];
  int ret = ens_merge(parts, n, out, err, sizeof(err));
  free(parts);
  if (ret)
    fprintf(stderr, "ens merge: %s\n", err[0] ? err : ens_strerror(ret));
  return ens_cli_exit_code(ret);
}

int ens_cli_predict(int argc, char **argv) {
  const char *model = NULL, *input = NULL, *out = NULL, *dataset = NULL;
  int combine = -1, mc = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      printf("usage: ens predict -m result.h5 -i input.h5 -o predictions.h5\n"
             "                   [--combine average|vote|params|select] [--dataset /path/x]\n"
             "                   [--mc-samples T]\n"
             "  Applies the result's standardization, trunk and members to the rows of\n"
             "  input.h5 (/x when present, else /test/x; or --dataset). Classification\n"
             "  writes /probs (n, C), /pred (n) and /uncertainty (n, 3: predictive entropy,\n"
             "  expected member entropy, mutual information); regression writes /mean,\n"
             "  /var, /var_aleatoric and /var_epistemic (n, T) in the units of y.\n"
             "  The default rule (and its calibration) is the one the result was trained\n"
             "  with; params needs a result trained with combine = params, select one\n"
             "  trained with combine = select.\n"
             "  --mc-samples T: each member is the average of T MC-dropout passes (masks\n"
             "  keyed by seed, member, row and pass: reproducible, independent of batching).\n");
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "ens predict: option '%s' needs a value\n", a);
      return 1;
    }
    const char *v = argv[++i];
    if (!strcmp(a, "-m") || !strcmp(a, "--model"))
      model = v;
    else if (!strcmp(a, "-i") || !strcmp(a, "--input"))
      input = v;
    else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
      out = v;
    else if (!strcmp(a, "--dataset"))
      dataset = v;
    else if (!strcmp(a, "--mc-samples")) {
      char *end;
      long t = strtol(v, &end, 10);
      if (*end || end == v || t < 1 || t > 100000) {
        fprintf(stderr, "ens predict: --mc-samples: expected an integer in [1, 100000], got '%s'\n",
                v);
        return 1;
      }
      mc = (int)t;
    } else if (!strcmp(a, "--combine")) {
      combine = !strcmp(v, "average")  ? ENS_COMBINE_AVERAGE
                : !strcmp(v, "vote")   ? ENS_COMBINE_VOTE
                : !strcmp(v, "params") ? ENS_COMBINE_PARAMS
                : !strcmp(v, "select") ? ENS_COMBINE_SELECT
                                       : -2;
      if (combine == -2) {
        fprintf(stderr,
                "ens predict: --combine: expected average, vote, params or select, got '%s'\n", v);
        return 1;
      }
    } else {
      fprintf(stderr, "ens predict: unknown option '%s'\n", a);
      return 1;
    }
  }
  if (!model || !input || !out) {
    fprintf(stderr, "ens predict: -m, -i and -o are required (see ens predict --help)\n");
    return 1;
  }
  char err[2048];
  int ret = ens_predict(model, input, dataset, out, combine, mc, err, sizeof(err));
  if (ret)
    fprintf(stderr, "ens predict: %s\n", err[0] ? err : ens_strerror(ret));
  return ens_cli_exit_code(ret);
}

/* Reads a 1-D float dataset of n values into v (malloc'd), or NULL. */
static float *read_vec(hid_t f, const char *path, long long n) {
  if (ens_h5_size(f, path, NULL, NULL) != n)
    return NULL;
  float *v = malloc((size_t)(n ? n : 1) * sizeof(float));
  if (v && ens_h5_read(f, path, H5T_NATIVE_FLOAT, v, (size_t)n)) {
    free(v);
    v = NULL;
  }
  return v;
}

int ens_cli_info(int argc, char **argv) {
  if (argc != 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
    printf("usage: ens info result.h5\n  Prints architecture, mode, members, metrics and the "
           "ensemble-size curve.\n");
    return argc == 1 ? 0 : 1;
  }
  ens_h5_quiet();
  const char *path = argv[0];
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    fprintf(stderr, "ens info: %s: cannot open as an HDF5 file\n", path);
    return 1;
  }
  char *version = NULL, *mode = NULL, *combine = NULL, *layers = NULL;
  int64_t members = 0, first = 0, ranks = 0, seed = 0, classes = 0, tl = 0, threads = 0;
  int64_t shared = 0;
  if (ens_h5_get_attr_i64(f, "/", "members", &members) ||
      ens_h5_get_attr_str(f, "/", "mode", &mode) ||
      ens_h5_get_attr_str(f, "/", "combine", &combine)) {
    fprintf(stderr, "ens info: %s: not an ens result file (no members/mode/combine "
                    "attributes)\n",
            path);
    H5Fclose(f);
    return 1;
  }
  ens_h5_get_attr_str(f, "/", "ens_version", &version);
  ens_h5_get_attr_i64(f, "/", "first_member", &first);
  ens_h5_get_attr_i64(f, "/", "ranks", &ranks);
  ens_h5_get_attr_i64(f, "/", "seed", &seed);
  ens_h5_get_attr_i64(f, "/", "classes", &classes);
  ens_h5_get_attr_i64(f, "/", "threads", &threads);
  ens_h5_get_attr_i64(f, "/", "shared_init", &shared);
  ens_h5_get_attr_str(f, "/model", "layers", &layers);
  ens_h5_get_attr_i64(f, "/model", "trunk_layers", &tl);
  double secs = 0;
  ens_h5_get_attr_f64(f, "/", "train_seconds", &secs);
  printf("%s (ens %s)\n", path, version ? version : "?");
  printf("  architecture  %s\n", layers ? layers : "?");
  if (tl > 0)
    printf("  trunk         first %lld hidden block%s, shared and frozen\n", (long long)tl,
           tl == 1 ? "" : "s");
  printf("  ensemble      %lld member%s (from %lld), mode %s, combine %s, seed %lld%s\n",
         (long long)members, members == 1 ? "" : "s", (long long)first, mode, combine,
         (long long)seed, shared ? ", shared initialization" : "");
  printf("  trained on    %lld rank%s, %lld BLAS thread%s each, %.1f s\n", (long long)ranks,
         ranks == 1 ? "" : "s", (long long)threads, threads == 1 ? "" : "s", secs);
  const char *names[4] = {"accuracy", "nll", "brier", "ece"};
  float *m[4];
  for (int i = 0; i < 4; i++) {
    char p[64];
    snprintf(p, sizeof(p), "/metrics/member_%s", names[i]);
    m[i] = read_vec(f, p, members);
  }
  float *oob = read_vec(f, "/metrics/member_oob_accuracy", members);
  float *ca = read_vec(f, "/metrics/curve_accuracy", members);
  float *cn = read_vec(f, "/metrics/curve_nll", members);
  if (m[0] && m[1] && m[2] && m[3]) {
    printf("\n  %-8s %9s %8s %8s %8s%s\n", "member", "accuracy", "nll", "brier", "ece",
           oob ? "   oob acc" : "");
    for (int i = 0; i < members; i++) {
      printf("  %-8lld %8.2f%% %8.4f %8.4f %8.4f", (long long)(first + i), 100 * m[0][i],
             m[1][i], m[2][i], m[3][i]);
      if (oob)
        printf("  %8.2f%%", 100 * oob[i]);
      printf("\n");
    }
  }
  double e[4];
  int have = 1;
  for (int i = 0; i < 4; i++)
    have &= ens_h5_get_attr_f64(f, "/metrics/ensemble", names[i], &e[i]) == 0;
  if (have)
    printf("  %-8s %8.2f%% %8.4f %8.4f %8.4f\n", "ensemble", 100 * e[0], e[1], e[2], e[3]);
  double ra[3];
  if (ens_h5_get_attr_f64(f, "/metrics/ensemble", "accuracy_average", &ra[0]) == 0 &&
      ens_h5_get_attr_f64(f, "/metrics/ensemble", "accuracy_vote", &ra[1]) == 0 &&
      ens_h5_get_attr_f64(f, "/metrics/ensemble", "accuracy_params", &ra[2]) == 0)
    printf("\n  accuracy by rule: average %.2f%%, vote %.2f%%, params %.2f%%\n", 100 * ra[0],
           100 * ra[1], 100 * ra[2]);
  double oe, vn;
  if (ens_h5_get_attr_f64(f, "/metrics/ensemble", "oob_accuracy", &oe) == 0)
    printf("  out-of-bag ensemble accuracy: %.2f%%\n", 100 * oe);
  if (ens_h5_get_attr_f64(f, "/metrics/ensemble", "val_accuracy", &oe) == 0 &&
      ens_h5_get_attr_f64(f, "/metrics/ensemble", "val_nll", &vn) == 0)
    printf("  validation (held out of training, probability average): accuracy %.2f%%, "
           "nll %.4f\n", 100 * oe, vn);
  if (ca && cn) {
    printf("\n  ensemble-size curve\n  %-8s %9s %8s\n", "size", "accuracy", "nll");
    for (int i = 0; i < members; i++)
      printf("  %-8d %8.2f%% %8.4f\n", i + 1, 100 * ca[i], cn[i]);
  }
  long long nd = ens_h5_size(f, "/metrics/disagreement", NULL, NULL);
  if (nd == members * members && members > 1) {
    double *dis = malloc((size_t)nd * sizeof(double));
    if (dis && !ens_h5_read(f, "/metrics/disagreement", H5T_NATIVE_DOUBLE, dis, (size_t)nd)) {
      double s = 0;
      for (int a = 0; a < members; a++)
        for (int b = 0; b < members; b++)
          s += a != b ? dis[a * members + b] : 0;
      printf("\n  mean pairwise disagreement: %.2f%%\n", 100 * s / (members * (members - 1)));
    }
    free(dis);
  }
  for (int i = 0; i < 4; i++)
    free(m[i]);
  free(oob);
  free(ca);
  free(cn);
  free(version);
  free(mode);
  free(combine);
  free(layers);
  H5Fclose(f);
  return 0;
}
