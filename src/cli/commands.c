/* `ens merge`, `ens predict`, `ens info` and `ens import csv`: argument
 * parsing around the library calls, and the readable summary of a result
 * file. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/suggest.h"
#include "ens/config.h"
#include "ens/data.h"
#include "ens/ensemble.h"
#include "ens/error.h"
#include "ens/metrics.h"
#include "ens/search.h"
#include "io/h5util.h"
#include "io/outcheck.h"

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
  case ENS_ELOCKED:
    return 1;
  default:
    return 2;
  }
}

int ens_cli_merge(int argc, char **argv) {
  const char **parts = calloc((size_t)argc + 1, sizeof(char *));
  const char *out = NULL;
  int n = 0, partial = 0, force = 0;
  if (!parts)
    return 2;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      printf("usage: ens merge a.h5 b.h5 ... -o all.h5 [--partial]\n"
             "  Combines results of disjoint member slices of one job (e.g. the tasks of a\n"
             "  SLURM array, each run with [ensemble] first_member/count) into one result,\n"
             "  identical to a single run over all members. The parts must share the\n"
             "  configuration (apart from [output] and the slice) and the data, and cover\n"
             "  all [ensemble] members.\n"
             "  --partial   merge an incomplete (contiguous) set of slices; ens info and\n"
             "              ens predict then say \"k of M members\"\n"
             "  Missing folders of the output are created.\n"
             "  --force     overwrite an existing -o that is not an ens result (an -o that\n"
             "              is one of the parts is always refused)\n");
      free(parts);
      return 0;
    }
    if (!strcmp(argv[i], "-o") && i + 1 < argc)
      out = argv[++i];
    else if (!strcmp(argv[i], "--partial"))
      partial = 1;
    else if (!strcmp(argv[i], "--force"))
      force = 1;
    else if (argv[i][0] == '-') {
      static const char *const known[] = {"-o", "--partial", "--help", NULL};
      if (!strcmp(argv[i], "-o"))
        fprintf(stderr, "ens merge: option '-o' needs a value (see ens merge --help)\n");
      else
        ens_cli_unknown_option("merge", argv[i], known, NULL);
      free(parts);
      return 1;
    } else
      parts[n++] = argv[i];
  }
  if (!out || n < 1) {
    fprintf(stderr, "ens merge: usage: ens merge a.h5 b.h5 ... -o all.h5 [--partial] (see ens "
                    "merge --help)\n");
    free(parts);
    return 1;
  }
  char err[4096];
  const char **labels = calloc((size_t)n + 1, sizeof(char *));
  if (!labels) {
    free(parts);
    return 2;
  }
  for (int i = 0; i < n; i++)
    labels[i] = "the part";
  ens_h5_quiet();
  int bad = ens_output_check(out, parts, labels, n, ENS_OUT_MERGE, force, "ens merge", err,
                             sizeof(err));
  free(labels);
  if (bad) {
    fprintf(stderr, "%s\n", err);
    free(parts);
    return 1;
  }
  int ret = ens_merge(parts, n, out, partial, err, sizeof(err));
  free(parts);
  if (ret)
    fprintf(stderr, "ens merge: %s\n", err[0] ? err : ens_strerror(ret));
  return ens_cli_exit_code(ret);
}

int ens_cli_predict(int argc, char **argv) {
  const char *model = NULL, *input = NULL, *out = NULL, *dataset = NULL;
  int combine = -1, mc = 0, force = 0;
  ens_predict_opts po = {0, 0, 0};
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      printf("usage: ens predict -m result.h5 -i input.h5|input.csv -o predictions.h5|.csv\n"
             "                   [--combine average|vote|params|select] [--dataset /path/x]\n"
             "                   [--mc-samples T] [--delimiter C] [--decimal C] [--no-header]\n"
             "                   [--force]\n"
             "  Applies the result's standardization, trunk and members to the rows of\n"
             "  input.h5 (/x when present, else /test/x; or --dataset). Classification\n"
             "  writes /probs (n, C), /pred (n) and /uncertainty (n, 3: predictive entropy,\n"
             "  expected member entropy, mutual information); regression writes /mean,\n"
             "  /var, /var_aleatoric and /var_epistemic (n, T) in the units of y.\n"
             "  The default rule (and its calibration) is the one the result was trained\n"
             "  with; params needs a result trained with combine = params, select one\n"
             "  trained with combine = select.\n"
             "  --mc-samples T: each member is the average of T MC-dropout passes (masks\n"
             "  keyed by seed, member, row and pass: reproducible, independent of batching).\n"
             "  Missing folders of -o are created. A partial result (k of M members) says so.\n"
             "  Features are matched by name when the result (/model/feature_names) and the\n"
             "  input (/feature_names, or a CSV header) name them: another order is\n"
             "  reordered; missing or extra names are an error naming them. A CSV input\n"
             "  (columns in any order, with or without the target, id and --drop columns of\n"
             "  ens import csv) is encoded with the result's categories and decimal mark; a\n"
             "  category unseen in training gives an all-zero one-hot block and a warning.\n"
             "  -o ending in .csv writes one line per input row, in input order: the id\n"
             "  column (ens import csv --id), line, then class, class_name, p_<class>...,\n"
             "  entropy, expected_entropy, mutual_information; or per target <t>_mean,\n"
             "  _std, _lower90, _upper90, _var_aleatoric, _var_epistemic. The score is\n"
             "  printed only when the input holds the targets.\n"
             "  --delimiter C, --decimal C, --no-header: for a CSV input (default: as at\n"
             "  import; a table imported with --no-header is read without one)\n"
             "  --force: overwrite an existing -o that is not an earlier ens predict output\n"
             "  (an -o that is -m or -i is always refused).\n"
             "  BLAS threads: the result's [train] threads, so that the test rows give\n"
             "  the result's stored probabilities bit for bit; OPENBLAS_NUM_THREADS in\n"
             "  the environment overrides it (the last bits may then differ).\n");
      return 0;
    }
    if (a[0] != '-') {
      fprintf(stderr, "ens predict: unexpected argument '%s' (options are -m, -i, -o, "
                      "--combine, --dataset, --mc-samples; see ens predict --help)\n", a);
      return 1;
    }
    if (!strcmp(a, "--force")) {
      force = 1;
      continue;
    }
    if (!strcmp(a, "--no-header")) {
      po.no_header = 1;
      continue;
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
    else if (!strcmp(a, "--delimiter")) {
      char ch = !strcmp(v, "tab") || !strcmp(v, "\\t") ? '\t' : v[0];
      if ((strlen(v) != 1 && ch != '\t') || ch == '"' || ch == '\n' || ch == '\r' || ch == '\0') {
        fprintf(stderr, "ens predict: --delimiter: expected one character other than a quote "
                        "or a line end (or 'tab'), got '%s'\n", v);
        return 1;
      }
      po.delimiter = ch;
    } else if (!strcmp(a, "--decimal")) {
      if (strlen(v) != 1 || (v[0] != '.' && v[0] != ',')) {
        fprintf(stderr, "ens predict: --decimal: expected '.' or ',', got '%s'\n", v);
        return 1;
      }
      po.decimal = v[0];
    }
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
      static const char *const known[] = {"-m", "--model", "-i", "--input", "-o", "--output",
                                          "--dataset", "--mc-samples", "--combine", "--help",
                                          NULL};
      ens_cli_unknown_option("predict", a, known,
                             !strcmp(a, "--set") ? "ens predict takes no configuration keys: "
                                                   "the result's own configuration applies"
                                                 : NULL);
      return 1;
    }
  }
  if (!model || !input || !out) {
    fprintf(stderr, "ens predict: -m, -i and -o are required (see ens predict --help)\n");
    return 1;
  }
  char err[4096];
  const char *in[2] = {model, input}, *lab[2] = {"-m", "-i"};
  ens_h5_quiet();
  if (ens_output_check(out, in, lab, 2, ENS_OUT_PREDICT, force, "ens predict", err,
                       sizeof(err))) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  int ret = ens_predict(model, input, dataset, out, combine, mc, &po, err, sizeof(err));
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

/* Names the finished members whose nll (validation, else scored rows) is not
 * ENS_PRIOR_MIN_NATS below the result's prior_nll (ens_no_better_than_prior),
 * as training's summary does. */
static void print_no_better(hid_t f, long long first, long long members, const float *nll,
                            int on_val, int regress) {
  double prior = NAN;
  if (!nll || ens_h5_get_attr_f64(f, "/metrics/ensemble", "prior_nll", &prior) != 0)
    return;
  uint8_t *named = calloc((size_t)(members > 0 ? members : 1), 1);
  int count = 0;
  for (long long i = 0; named && i < members; i++) {
    char grp[64], *status = NULL;
    snprintf(grp, sizeof(grp), "/members/%lld", first + i);
    int done = ens_h5_get_attr_str(f, grp, "status", &status) == 0 && !strcmp(status, "done");
    free(status);
    named[i] = done && ens_no_better_than_prior(nll[i], prior);
    count += named[i];
  }
  for (long long i = 0, w = 0; count && i < members; i++)
    if (named[i])
      printf("%s%lld",
             w++         ? ", "
             : count > 1 ? "  warning: no better than the prior: members "
                         : "  warning: no better than the prior: member ",
             first + i);
  free(named);
  if (count)
    printf(" (%s nll not %g below %.4f, that of predicting the training %s for every row)\n",
           on_val ? "validation" : "scored-row", ENS_PRIOR_MIN_NATS, prior,
           regress ? "targets' mean and variance" : "class frequencies");
}

/* The /ranks group of a result (nodes, one data copy per node, peak memory
 * per rank), when the result has one. */
static void print_placement(hid_t f) {
  int64_t nodes = 0;
  if (!ens_h5_exists(f, "/ranks") || ens_h5_get_attr_i64(f, "/ranks", "nodes", &nodes) ||
      nodes < 1 || nodes > 1000000)
    return;
  long long P = ens_h5_size(f, "/ranks/peak_rss", NULL, NULL);
  int32_t *per = malloc((size_t)nodes * sizeof(int32_t));
  int64_t *bytes = malloc((size_t)nodes * sizeof(int64_t));
  int64_t *rss = P > 0 ? malloc((size_t)P * sizeof(int64_t)) : NULL;
  if (per && bytes && rss &&
      !ens_h5_read(f, "/ranks/node_ranks", H5T_NATIVE_INT32, per, (size_t)nodes) &&
      !ens_h5_read(f, "/ranks/node_data_bytes", H5T_NATIVE_INT64, bytes, (size_t)nodes) &&
      !ens_h5_read(f, "/ranks/peak_rss", H5T_NATIVE_INT64, rss, (size_t)P)) {
    int64_t lo = rss[0], hi = rss[0];
    for (long long r = 1; r < P; r++) {
      lo = rss[r] < lo ? rss[r] : lo;
      hi = rss[r] > hi ? rss[r] : hi;
    }
    printf("  placement     %lld node%s (ranks per node:", (long long)nodes, nodes == 1 ? "" : "s");
    for (int64_t i = 0; i < nodes && i < 16; i++)
      printf(" %d", per[i]);
    printf("%s), data %.1f MB per node, peak RSS per rank %.0f-%.0f MB\n",
           nodes > 16 ? " ..." : "", bytes[0] / 1e6, lo / 1048576.0, hi / 1048576.0);
  }
  free(per);
  free(bytes);
  free(rss);
}

/* Table cells of `ens info`: a label column of LABEL_W characters, then
 * columns of CELL_W characters, one blank apart, headers right-aligned like
 * the numbers under them. */
#define LABEL_W 8
#define CELL_W 11

static void cell_head(const char *h) { printf(" %*s", CELL_W, h); }

/* A value; pct prints a fraction as percent. NaN prints as "-". */
static void cell(double v, int pct) {
  if (isnan(v))
    printf(" %*s", CELL_W, "-");
  else if (pct)
    printf(" %*.2f%%", CELL_W - 1, 100 * v);
  else
    printf(" %*.4g", CELL_W, v);
}

/* The headline metric as text: accuracy in percent, rmse as a number. */
static const char *m0_text(char buf[32], int regress, double v) {
  snprintf(buf, 32, regress ? "%.4g" : "%.2f%%", regress ? v : 100 * v);
  return buf;
}

/* Rows of the first dimension of dataset path, or -1. */
static long long rows_of(hid_t f, const char *path, int dim) {
  int rank = 0;
  hsize_t dims[8];
  if (ens_h5_size(f, path, &rank, dims) < 0 || rank <= dim)
    return -1;
  return (long long)dims[dim];
}

/* Prints one result file; returns the exit code. */
/* A search result's training line and [search] ranges: the job's own
 * values of drawn keys were used by no member (issue 20). */
static void print_search(const ens_config *c) {
  const struct {
    const char *key, *value, *kind;
  } keys[] = {{"lr", c->search_lr, "log-uniform"},
              {"weight_decay", c->search_weight_decay, "log-uniform"},
              {"momentum", c->search_momentum, "uniform"},
              {"dropout", c->search_dropout, "uniform"},
              {"batch", c->search_batch, NULL},
              {"hidden", c->search_hidden, NULL},
              {"init", c->search_init, NULL},
              {"batchnorm", c->search_batchnorm, NULL}};
  printf("  training      %d epoch%s, %s, schedule %s", c->epochs, c->epochs == 1 ? "" : "s",
         ens_optimizer_name(c->optimizer), ens_schedule_name(c->schedule));
  if (!c->search_batch[0])
    printf(", batch %d", c->batch);
  if (!c->search_lr[0])
    printf(", lr %g", c->lr);
  printf("\n  search        each member drew from these [search] ranges (its draws: "
         "hyperparameters below)\n");
  const int conv = ens_search_conv_on(c);
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    if (!keys[i].value[0])
      continue;
    if (conv && (!strcmp(keys[i].key, "hidden") || !strcmp(keys[i].key, "batchnorm")))
      continue; /* the conv generator builds the layer list */
    if (keys[i].kind) {
      const char *comma = strchr(keys[i].value, ',');
      if (comma)
        printf("                  %-13s %.*s to %s, %s\n", keys[i].key,
               (int)(comma - keys[i].value), keys[i].value, comma + 1, keys[i].kind);
      else
        printf("                  %-13s %s\n", keys[i].key, keys[i].value);
    } else {
      printf("                  %-13s one of %s\n", keys[i].key, keys[i].value);
    }
  }
  if (conv) {
    char desc[4096];
    ens_search_conv_describe(c, desc, sizeof desc);
    printf("                  conv generator: %s\n", desc);
  }
}

static int info_one(const char *path, int print_config) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "ens info: %s: %s\n", path, strerror(errno));
    return 1;
  }
  hid_t f = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
  if (f < 0) {
    fprintf(stderr, "ens info: %s: not an HDF5 file (ens info reads the result files of ens "
                    "train and ens merge)\n", path);
    return 1;
  }
  char *version = NULL, *mode = NULL, *combine = NULL, *layers = NULL, *text = NULL;
  int64_t members = 0, first = 0, ranks = 0, seed = 0, tl = 0, threads = 0, total = 0;
  int64_t shared = 0;
  if (ens_h5_get_attr_i64(f, "/", "members", &members) ||
      ens_h5_get_attr_str(f, "/", "mode", &mode) ||
      ens_h5_get_attr_str(f, "/", "combine", &combine) || members < 1 || members > (1 << 24)) {
    fprintf(stderr, "ens info: %s: not an ens result file (no members/mode/combine "
                    "attributes)\n",
            path);
    free(mode);
    free(combine);
    H5Fclose(f);
    return 1;
  }
  ens_h5_get_attr_str(f, "/", "config", &text);
  if (print_config) {
    if (!text) {
      fprintf(stderr, "ens info: %s has no stored configuration (root attribute config)\n", path);
      free(mode);
      free(combine);
      H5Fclose(f);
      return 1;
    }
    printf("; configuration stored in %s\n%s", path, text);
    free(text);
    free(mode);
    free(combine);
    H5Fclose(f);
    return 0;
  }
  ens_config c;
  char msg[512];
  int have_cfg = text && ens_config_load_text(&c, path, text, msg, sizeof(msg)) == 0;
  ens_h5_get_attr_str(f, "/", "ens_version", &version);
  ens_h5_get_attr_i64(f, "/", "first_member", &first);
  if (ens_h5_get_attr_i64(f, "/", "members_total", &total))
    total = members;
  ens_h5_get_attr_i64(f, "/", "ranks", &ranks);
  ens_h5_get_attr_i64(f, "/", "seed", &seed);
  ens_h5_get_attr_i64(f, "/", "threads", &threads);
  ens_h5_get_attr_i64(f, "/", "shared_init", &shared);
  ens_h5_get_attr_str(f, "/model", "layers", &layers);
  ens_h5_get_attr_i64(f, "/model", "trunk_layers", &tl);
  double secs = 0;
  ens_h5_get_attr_f64(f, "/", "train_seconds", &secs);
  char *task = NULL, *split = NULL;
  int regress = ens_h5_get_attr_str(f, "/", "task", &task) == 0 && !strcmp(task, "regress");
  free(task);
  printf("%s (ens %s)\n", path, version ? version : "?");
  /* The data: file, rows of every split, and which rows are scored. */
  int64_t ntrain = -1, ntest = -1, nval = -1;
  ens_h5_get_attr_i64(f, "/", "train_rows", &ntrain);
  if (ens_h5_get_attr_i64(f, "/", "test_rows", &ntest))
    ntest = rows_of(f, regress ? "/members/mean" : "/members/probs", 1);
  if (ens_h5_get_attr_i64(f, "/", "val_rows", &nval))
    nval = rows_of(f, regress ? "/members/val_mean" : "/members/val_probs", 1);
  if (nval < 0)
    nval = 0;
  int scored_val = ens_h5_get_attr_str(f, "/", "test_split", &split) == 0 && strcmp(split, "/test");
  printf("  data          %s:", have_cfg ? c.data_path : "?");
  if (ntrain >= 0)
    printf(" %lld train,", (long long)ntrain);
  if (scored_val)
    printf(" %lld held-out validation rows (%s) scored in place of a test split\n"
           "                (the input has no /test: the metrics below are on these rows)\n",
           (long long)ntest,
           !strcmp(split, "/val") ? "its /val" : "[data] val_fraction of /train");
  else
    printf(" %lld test, %lld validation rows\n", (long long)ntest, (long long)nval);
  free(split);
  const int search = have_cfg && !strcmp(mode, "search");
  if (search && ens_search_conv_on(&c))
    printf("  architecture  drawn per member by the [search] conv generator (each member's: "
           "hyperparameters below; the table is member 0's)\n");
  else if (search && c.search_hidden[0])
    printf("  architecture  drawn per member from [search] hidden (each member's: "
           "hyperparameters below)\n");
  else
    printf("  architecture  %s\n", layers ? layers : "?");
  char *summary = NULL; /* layer lists: each layer's output shape and parameters */
  if (ens_h5_get_attr_str(f, "/model", "summary", &summary) == 0 && summary)
    printf("%s", summary);
  free(summary);
  if (tl > 0)
    printf("  trunk         first %lld hidden block%s, shared and frozen\n", (long long)tl,
           tl == 1 ? "" : "s");
  if (members == total)
    printf("  ensemble      %lld member%s", (long long)members, members == 1 ? "" : "s");
  else
    printf("  ensemble      %lld of %lld members (members %lld-%lld: a partial result)",
           (long long)members, (long long)total, (long long)first,
           (long long)(first + members - 1));
  printf(", mode %s, combine %s, seed %lld%s\n", mode, combine, (long long)seed,
         shared ? ", shared initialization" : "");
  if (search)
    print_search(&c);
  else if (have_cfg)
    printf("  training      %d epoch%s, batch %d, %s lr %g, schedule %s\n", c.epochs,
           c.epochs == 1 ? "" : "s", c.batch, ens_optimizer_name(c.optimizer), c.lr,
           ens_schedule_name(c.schedule));
  int64_t merged_parts = 0, segments = 1;
  if (ens_h5_exists(f, "/history")) {
    ens_h5_get_attr_i64(f, "/history", "parts", &merged_parts);
    ens_h5_get_attr_i64(f, "/history", "segments", &segments);
  }
  if (merged_parts > 0) /* ranks and placement are the merge's own: see the history */
    printf("  trained on    %lld parts, merged by ens merge (history below: each part's "
           "runs)\n", (long long)merged_parts);
  else
    printf("  trained on    %lld rank%s, %lld BLAS thread%s each, %.1f s%s\n", (long long)ranks,
           ranks == 1 ? "" : "s", (long long)threads, threads == 1 ? "" : "s", secs,
           segments > 1 ? " in the last run (all runs: history)" : "");
  if (merged_parts <= 0)
    print_placement(f);
  ens_cli_print_history(f);
  {
    int64_t nt = 0, classes = 0;
    ens_h5_get_attr_i64(f, "/", "classes", &classes);
    ens_h5_get_attr_i64(f, "/model", "targets", &nt);
    long long nn_ = regress ? nt : classes;
    char **nm = ens_h5_read_strings(f, regress ? "/model/target_names" : "/model/class_names", nn_);
    if (regress)
      printf("  task          regression, %lld target%s", (long long)nt, nt == 1 ? "" : "s");
    else
      printf("  task          classification, %lld classes", (long long)classes);
    for (long long i = 0; nm && i < nn_; i++) {
      printf("%s%s", i ? ", " : ": ", nm[i]);
      free(nm[i]);
    }
    free(nm);
    printf("\n");
  }
  /* Columns: the task's metrics, then validation, out-of-bag, MC. */
  static const char *const cnames[] = {"accuracy", "nll", "brier", "ece"};
  static const char *const rnames[] = {"rmse", "mae", "r2", "nll", "crps", "coverage_90"};
  const char *const *names = regress ? rnames : cnames;
  const int nn = regress ? 6 : 4;
  const char *m0 = names[0];
  float *m[6] = {0}, *vm[2] = {0}, *mm[2] = {0};
  char p[96];
  for (int i = 0; i < nn; i++) {
    snprintf(p, sizeof(p), "/metrics/member_%s", names[i]);
    m[i] = read_vec(f, p, members);
  }
  snprintf(p, sizeof(p), "/metrics/member_val_%s", m0);
  vm[0] = read_vec(f, p, members);
  vm[1] = read_vec(f, "/metrics/member_val_nll", members);
  snprintf(p, sizeof(p), "/metrics/member_mc_%s", m0);
  mm[0] = read_vec(f, p, members);
  mm[1] = read_vec(f, "/metrics/member_mc_nll", members);
  snprintf(p, sizeof(p), "/metrics/member_oob_%s", m0);
  float *oob = read_vec(f, p, members);
  snprintf(p, sizeof(p), "/metrics/curve_%s", m0);
  float *ca = read_vec(f, p, members);
  float *cn = read_vec(f, "/metrics/curve_nll", members);
  float *wts = read_vec(f, "/ensemble/weights", members);
#define PCT(name) (!regress ? !strcmp((name), "accuracy") : !strncmp((name), "coverage", 8))
  int have_all = 1;
  for (int i = 0; i < nn; i++)
    have_all &= m[i] != NULL;
  const char *scored = scored_val ? "scored rows" : "test rows";
  if (have_all) {
    printf("\n  member metrics on the %s%s\n  %-*s", scored,
           vm[0] && vm[1] ? " and the validation rows (val)" : "", LABEL_W, "member");
    for (int i = 0; i < nn; i++)
      cell_head(names[i]);
    if (vm[0] && vm[1]) {
      cell_head(regress ? "val rmse" : "val acc");
      cell_head("val nll");
    }
    if (oob)
      cell_head(regress ? "oob rmse" : "oob acc");
    if (mm[0] && mm[1]) {
      cell_head(regress ? "mc rmse" : "mc acc");
      cell_head("mc nll");
    }
    if (wts)
      cell_head("weight");
    printf("  hyperparameters\n");
    for (int i = 0; i < members; i++) {
      char grp[64], *status = NULL, *why = NULL, *hid = NULL, *ini = NULL;
      snprintf(grp, sizeof(grp), "/members/%lld", (long long)(first + i));
      printf("  %-*lld", LABEL_W, (long long)(first + i));
      if (ens_h5_get_attr_str(f, grp, "status", &status) == 0 && strcmp(status, "done") != 0) {
        int64_t fe = 0;
        ens_h5_get_attr_i64(f, grp, "fail_epoch", &fe);
        ens_h5_get_attr_str(f, grp, "fail_reason", &why);
        if (!strcmp(status, "stopped")) /* successive halving ranked it out */
          printf(" stopped at epoch %lld: %s\n", (long long)fe, why ? why : "?");
        else
          printf(" FAILED at epoch %lld: %s\n", (long long)fe, why ? why : "?");
        free(status);
        free(why);
        continue;
      }
      free(status);
      for (int k = 0; k < nn; k++)
        cell(m[k][i], PCT(names[k]));
      if (vm[0] && vm[1]) {
        cell(vm[0][i], !regress);
        cell(vm[1][i], 0);
      }
      if (oob)
        cell(oob[i], !regress);
      if (mm[0] && mm[1]) {
        cell(mm[0][i], !regress);
        cell(mm[1][i], 0);
      }
      if (wts)
        printf(" %*.3f", CELL_W, wts[i]);
      double lr = 0, wd = 0, mo = 0, dr = 0;
      int64_t bs = 0, bn = 0;
      if (ens_h5_get_attr_f64(f, grp, "lr", &lr) == 0) {
        ens_h5_get_attr_f64(f, grp, "weight_decay", &wd);
        ens_h5_get_attr_f64(f, grp, "dropout", &dr);
        ens_h5_get_attr_i64(f, grp, "batch", &bs);
        ens_h5_get_attr_i64(f, grp, "batchnorm", &bn);
        ens_h5_get_attr_str(f, grp, "hidden", &hid);
        ens_h5_get_attr_str(f, grp, "init", &ini);
        printf("  lr %.3g wd %.2g", lr, wd);
        if (ens_h5_get_attr_f64(f, grp, "momentum", &mo) == 0)
          printf(" mom %.3f", mo);
        char *lay = NULL;
        if (ens_h5_get_attr_str(f, grp, "layers", &lay) == 0 && lay)
          printf(" batch %lld %s layers %s", (long long)bs, ini ? ini : "?", lay);
        else
          printf(" drop %.2f batch %lld hidden %s %s%s", dr, (long long)bs, hid ? hid : "?",
                 ini ? ini : "?", bn ? " bn" : "");
        free(lay);
      }
      free(hid);
      free(ini);
      printf("\n");
    }
    print_no_better(f, first, members, vm[1] ? vm[1] : m[regress ? 3 : 1], vm[1] != NULL, regress);
  }
  double e[6];
  int have = 1;
  for (int i = 0; i < nn; i++)
    have &= ens_h5_get_attr_f64(f, "/metrics/ensemble", names[i], &e[i]) == 0;
  if (have) {
    printf("  %-*s", LABEL_W, "ensemble");
    for (int k = 0; k < nn; k++)
      cell(e[k], PCT(names[k]));
    double v1, v2;
    char vn[64];
    snprintf(vn, sizeof(vn), "val_%s", m0);
    if (vm[0] && vm[1] && ens_h5_get_attr_f64(f, "/metrics/ensemble", vn, &v1) == 0 &&
        ens_h5_get_attr_f64(f, "/metrics/ensemble", "val_nll", &v2) == 0) {
      cell(v1, !regress);
      cell(v2, 0);
    }
    printf("  (%s)\n", combine);
    if (!strcmp(combine, "vote") && !regress)
      printf("  (vote: the nll and brier of vote shares, which are not probabilities, are large "
             "by construction; compare accuracy)\n");
  }
  double v1, v2;
  char t1[32];
  int64_t bm = 0;
  snprintf(p, sizeof(p), "best_member_%s", m0);
  if (ens_h5_get_attr_i64(f, "/metrics/ensemble", "best_member", &bm) == 0 &&
      ens_h5_get_attr_f64(f, "/metrics/ensemble", p, &v1) == 0 &&
      ens_h5_get_attr_f64(f, "/metrics/ensemble", "best_member_nll", &v2) == 0)
    printf("\n  best single member by validation nll: %lld (%s %s %s, nll %.4f)\n",
           (long long)bm, scored_val ? "scored" : "test", m0, m0_text(t1, regress, v1), v2);
  snprintf(p, sizeof(p), "average_%s", m0);
  if (ens_h5_get_attr_f64(f, "/metrics/ensemble", p, &v1) == 0 &&
      ens_h5_get_attr_f64(f, "/metrics/ensemble", "average_nll", &v2) == 0)
    printf("  plain average of all finished members: %s %s, nll %.4f\n", m0,
           m0_text(t1, regress, v1), v2);
  if (ens_h5_get_attr_f64(f, "/ensemble", regress ? "variance_scale" : "temperature", &v1) == 0 &&
      ens_h5_get_attr_f64(f, "/metrics/ensemble", "uncalibrated_nll", &v2) == 0)
    printf("  calibration: %s %.4g (nll before %.4f)\n",
           regress ? "variance scale" : "temperature", v1, v2);
  snprintf(p, sizeof(p), "mc_%s", m0);
  if (ens_h5_get_attr_f64(f, "/metrics/ensemble", p, &v1) == 0 &&
      ens_h5_get_attr_f64(f, "/metrics/ensemble", "mc_nll", &v2) == 0)
    printf("  MC-dropout average: %s %s, nll %.4f\n", m0, m0_text(t1, regress, v1), v2);
  if (!regress && ens_h5_get_attr_f64(f, "/metrics/ensemble", "accuracy_vote", &v1) == 0 &&
      ens_h5_get_attr_f64(f, "/metrics/ensemble", "accuracy_average", &v2) == 0)
    printf("  accuracy by rule: average %.2f%%, vote %.2f%%\n", 100 * v2, 100 * v1);
  snprintf(p, sizeof(p), "%s_params", m0);
  if (ens_h5_get_attr_f64(f, "/metrics/ensemble", p, &v1) == 0)
    printf("  %s of the parameter average: %s%s\n", m0, m0_text(t1, regress, v1),
           shared ? "" : " (the members were initialized independently: averaging their "
                         "parameters means little; share_init = true makes it meaningful)");
  snprintf(p, sizeof(p), "oob_%s", m0);
  if (ens_h5_get_attr_f64(f, "/metrics/ensemble", p, &v1) == 0)
    printf("  out-of-bag ensemble %s: %s\n", m0, m0_text(t1, regress, v1));
  if (ca && cn) {
    /* One row per finished member, numbered by how many are combined: the
     * slots of stopped or failed members only repeat the row before (NaN
     * before the first finished member). */
    uint8_t *fin = malloc(members > 0 ? (size_t)members : 1);
    int all = 1;
    for (int i = 0; fin && i < members; i++) {
      char grp[64], *status = NULL;
      snprintf(grp, sizeof(grp), "/members/%lld", (long long)(first + i));
      fin[i] = ens_h5_get_attr_str(f, grp, "status", &status) != 0 || !strcmp(status, "done");
      all &= fin[i];
      free(status);
    }
    printf("\n  ensemble-size curve%s\n  %-*s",
           all ? "" : " (finished members, in member order)", LABEL_W, "size");
    cell_head(m0);
    cell_head("nll");
    printf("\n");
    for (int i = 0, k = 0; i < members; i++) {
      if (fin && !fin[i])
        continue;
      printf("  %-*d", LABEL_W, ++k);
      cell(ca[i], !regress);
      cell(cn[i], 0);
      printf("\n");
    }
    free(fin);
  }
#undef PCT
  ens_cli_info_grad_norm(f, (long long)first, (long long)members);
  ens_cli_info_search(f, (long long)first, (long long)members);
  long long nd = ens_h5_size(f, "/metrics/disagreement", NULL, NULL);
  if (members > 1 && members <= (1 << 20) && nd == members * members) {
    double *dis = malloc((size_t)nd * sizeof(double));
    if (dis && !ens_h5_read(f, "/metrics/disagreement", H5T_NATIVE_DOUBLE, dis, (size_t)nd)) {
      double s = 0;
      long pairs = 0; /* pairs of finished members (NaN: failed or stopped) */
      for (int a = 0; a < members; a++)
        for (int b = 0; b < members; b++)
          if (a != b && !isnan(dis[a * members + b]))
            s += dis[a * members + b], pairs++;
      if (pairs)
        printf("\n  mean pairwise disagreement: %.2f%%\n", 100 * s / pairs);
    }
    free(dis);
  }
  for (int i = 0; i < 6; i++)
    free(m[i]);
  for (int i = 0; i < 2; i++) {
    free(vm[i]);
    free(mm[i]);
  }
  free(wts);
  free(oob);
  free(ca);
  free(cn);
  free(version);
  free(mode);
  free(combine);
  free(layers);
  free(text);
  H5Fclose(f);
  return 0;
}

int ens_cli_info(int argc, char **argv) {
  int print_config = 0, nfiles = 0;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      printf("usage: ens info [--config] result.h5 [more.h5 ...]\n"
             "  Prints a result's data, architecture, members, metrics (accuracy and\n"
             "  coverage in percent) and the ensemble-size curve; several files one after\n"
             "  the other.\n"
             "  --config   print the configuration stored in the result instead (INI text\n"
             "             that `ens train -c` reads)\n");
      return 0;
    }
    if (!strcmp(argv[i], "--config"))
      print_config = 1;
    else if (argv[i][0] == '-' && argv[i][1]) {
      static const char *const known[] = {"--config", "--help", NULL};
      ens_cli_unknown_option("info", argv[i], known, NULL);
      return 1;
    } else
      nfiles++;
  }
  if (!nfiles) {
    fprintf(stderr, "ens info: expected a result file: ens info [--config] result.h5 ...\n");
    return 1;
  }
  ens_h5_quiet();
  int code = 0, shown = 0;
  for (int i = 0; i < argc; i++) {
    if (argv[i][0] == '-' && argv[i][1])
      continue;
    if (shown++ && !print_config)
      printf("\n");
    int c = info_one(argv[i], print_config);
    if (c > code)
      code = c;
  }
  return code;
}

void ens_cli_import_csv_usage(FILE *out) {
  fprintf(out,
          "usage: ens import csv FILE --target NAME|INDEX[,NAME|INDEX...] -o OUT.h5\n"
          "                      [--test FILE | --test-fraction F --split-seed S]\n"
          "                      [--val-fraction F] [--task auto|classify|regress]\n"
          "                      [--delimiter C] [--decimal C] [--no-header] [--drop-missing]\n"
          "                      [--drop COL[,COL...]] [--id COL] [--keep COL[,COL...]]\n"
          "                      [--force]\n"
          "\n"
          "  FILE                 CSV text: RFC 4180 quoting, LF or CRLF line ends, optional\n"
          "                       UTF-8 byte order mark (gzip-compressed files are read too)\n"
          "  --target T[,T...]    target column(s): header names, else 0-based indexes\n"
          "  -o, --output OUT.h5  output file (missing parent directories are created)\n"
          "  --test FILE          test rows from a second CSV with the same columns (matched\n"
          "                       by header name, in any order), encoded with FILE's categories\n"
          "  --test-fraction F    without --test: share of FILE's rows held out as /test\n"
          "                       (default 0.2)\n"
          "  --split-seed S       seed of the test and validation split permutations\n"
          "                       (default 0)\n"
          "  --val-fraction F     share of the remaining training rows moved to /val\n"
          "                       (default 0)\n"
          "  --task T             auto (default): a non-numeric target means classify, numeric\n"
          "                       targets mean regress; classify takes one target (a numeric\n"
          "                       one must hold integer codes); regress needs numeric targets\n"
          "  --delimiter C        field separator (default ','; 'tab' or '\\t' for a tab)\n"
          "  --decimal C          decimal mark of the numbers (default '.'; ',' for 3,14 with\n"
          "                       --delimiter ';'); stored, so ens predict reads new rows alike\n"
          "  --drop COL[,COL...]  leave these columns out (names, else 0-based indexes); ens\n"
          "                       predict accepts and ignores them in new rows\n"
          "  --id COL             an identifier column: not a feature, kept as text in\n"
          "                       /<split>/id and carried to ens predict's output\n"
          "  --keep COL[,COL...]  one-hot encode these columns even when they look like\n"
          "                       dates or identifiers (which are refused otherwise)\n"
          "  --force              overwrite an existing -o that is not an earlier ens import\n"
          "                       output (an -o that is an input is always refused)\n"
          "  --no-header          the first line is data; columns are named 0, 1, ...\n"
          "  --drop-missing       drop rows with a missing value (empty, NA, NaN, nan, ?)\n"
          "                       instead of failing\n"
          "  -h, --help           this help\n"
          "\n"
          "A column whose values all parse as numbers is numeric; a column of mostly numbers\n"
          "with some other values is an error; other columns are categorical and one-hot\n"
          "encoded (categories in byte order, learned from every row of FILE). A string\n"
          "column of dates, or with a distinct value on every row (at least 5 rows) or on\n"
          "more than half of the rows (at least 20 rows), is refused with the column's name:\n"
          "--drop, --id or --keep it. Numbers with decimal commas are refused with a hint.\n"
          "Each split's source line numbers are in /<split>/line.\n"
          "Output: /train/x, /test/x and optional /val/x float32 (n, d); /<split>/y int32\n"
          "class indexes (classify: root attribute classes, /class_names) or float32 (n) or\n"
          "(n, T) (regress); /feature_names, /target_names, /categories/<column>; root\n"
          "attributes source and task. Errors name the file, line and column; exit code 1.\n");
}

/* A number for --test-fraction / --val-fraction (range checked later). */
static int parse_fraction(const char *s, double *v) {
  char *end;
  errno = 0;
  *v = strtod(s, &end);
  return end != s && *end == '\0' && isfinite(*v);
}

static int parse_seed(const char *s, uint64_t *v) {
  char *end;
  if (s[0] < '0' || s[0] > '9')
    return 0;
  errno = 0;
  unsigned long long u = strtoull(s, &end, 10);
  *v = (uint64_t)u;
  return *end == '\0' && errno != ERANGE;
}

int ens_cli_import_csv(int argc, char **argv) {
  ens_csv_import_opts o;
  memset(&o, 0, sizeof o);
  o.enc.task = ENS_CSV_AUTO;
  o.enc.test_fraction = 0.2;
  int fraction_given = 0, seed_given = 0, force = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      ens_cli_import_csv_usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--no-header")) {
      o.csv.no_header = 1;
      continue;
    }
    if (!strcmp(a, "--drop-missing")) {
      o.enc.drop_missing = 1;
      continue;
    }
    if (!strcmp(a, "--force")) {
      force = 1;
      continue;
    }
    if (a[0] != '-' || a[1] == '\0') {
      if (o.path) {
        fprintf(stderr, "ens import csv: more than one input file ('%s' and '%s'); the test "
                        "file goes with --test\n", o.path, a);
        return 1;
      }
      o.path = a;
      continue;
    }
    /* Options with a value: "--opt value" or "--opt=value". */
    char opt[32];
    const char *v = NULL, *eq = strchr(a, '=');
    if (eq && !strncmp(a, "--", 2) && (size_t)(eq - a) < sizeof opt) {
      memcpy(opt, a, (size_t)(eq - a));
      opt[eq - a] = '\0';
      v = eq + 1;
    } else {
      snprintf(opt, sizeof opt, "%s", a);
      if (i + 1 < argc)
        v = argv[++i];
    }
    int known = !strcmp(opt, "--target") || !strcmp(opt, "-o") || !strcmp(opt, "--output") ||
                !strcmp(opt, "--test") || !strcmp(opt, "--test-fraction") ||
                !strcmp(opt, "--split-seed") || !strcmp(opt, "--val-fraction") ||
                !strcmp(opt, "--task") || !strcmp(opt, "--delimiter") ||
                !strcmp(opt, "--decimal") || !strcmp(opt, "--drop") || !strcmp(opt, "--id") ||
                !strcmp(opt, "--keep");
    if (!known) {
      static const char *const known_opts[] = {
          "--target", "-o", "--output", "--test", "--test-fraction", "--split-seed",
          "--val-fraction", "--task", "--delimiter", "--no-header", "--drop-missing", NULL};
      ens_cli_unknown_option("import csv", a, known_opts, NULL);
      return 1;
    }
    if (!v) {
      fprintf(stderr, "ens import csv: option '%s' needs a value (see ens import csv --help)\n",
              a);
      return 1;
    }
    if (!strcmp(opt, "--target")) {
      o.enc.target = v;
    } else if (!strcmp(opt, "--drop")) {
      o.enc.drop = v;
    } else if (!strcmp(opt, "--id")) {
      o.enc.id = v;
    } else if (!strcmp(opt, "--keep")) {
      o.enc.keep = v;
    } else if (!strcmp(opt, "--decimal")) {
      if (strlen(v) != 1 || (v[0] != '.' && v[0] != ',')) {
        fprintf(stderr, "ens import csv: --decimal: expected '.' or ',', got '%s'\n", v);
        return 1;
      }
      o.enc.decimal = v[0];
    } else if (!strcmp(opt, "-o") || !strcmp(opt, "--output")) {
      o.out_path = v;
    } else if (!strcmp(opt, "--test")) {
      o.test_path = v;
    } else if (!strcmp(opt, "--test-fraction")) {
      if (!parse_fraction(v, &o.enc.test_fraction) ||
          !(o.enc.test_fraction > 0 && o.enc.test_fraction < 1)) {
        fprintf(stderr, "ens import csv: --test-fraction: expected a number in (0, 1), got "
                        "'%s'\n", v);
        return 1;
      }
      fraction_given = 1;
    } else if (!strcmp(opt, "--val-fraction")) {
      if (!parse_fraction(v, &o.enc.val_fraction) ||
          !(o.enc.val_fraction >= 0 && o.enc.val_fraction < 1)) {
        fprintf(stderr, "ens import csv: --val-fraction: expected a number in [0, 1), got "
                        "'%s'\n", v);
        return 1;
      }
    } else if (!strcmp(opt, "--split-seed")) {
      if (!parse_seed(v, &o.enc.split_seed)) {
        fprintf(stderr, "ens import csv: --split-seed: expected an unsigned 64-bit integer, got "
                        "'%s'\n", v);
        return 1;
      }
      seed_given = 1;
    } else if (!strcmp(opt, "--task")) {
      if (!strcmp(v, "auto"))
        o.enc.task = ENS_CSV_AUTO;
      else if (!strcmp(v, "classify"))
        o.enc.task = ENS_CSV_CLASSIFY;
      else if (!strcmp(v, "regress"))
        o.enc.task = ENS_CSV_REGRESS;
      else {
        fprintf(stderr, "ens import csv: --task: expected auto, classify or regress, got '%s'\n",
                v);
        return 1;
      }
    } else {
      char c = !strcmp(v, "tab") || !strcmp(v, "\\t") ? '\t' : v[0];
      if ((strlen(v) != 1 && c != '\t') || c == '"' || c == '\n' || c == '\r' || c == '\0') {
        fprintf(stderr, "ens import csv: --delimiter: expected one character other than a quote "
                        "or a line end (or 'tab'), got '%s'\n", v);
        return 1;
      }
      o.csv.delimiter = c;
    }
  }
  if (!o.path || !o.enc.target || !o.out_path) {
    fprintf(stderr, "ens import csv: FILE, --target and -o are required (see ens import csv "
                    "--help)\n");
    return 1;
  }
  if (o.enc.decimal == ',' && (o.csv.delimiter == 0 || o.csv.delimiter == ',')) {
    fprintf(stderr, "ens import csv: --decimal ',' needs another field separator: add "
                    "--delimiter ';' (or the file's own)\n");
    return 1;
  }
  {
    const char *in[2] = {o.path, o.test_path}, *lab[2] = {"the input", "--test"};
    char oerr[4096];
    if (ens_output_check(o.out_path, in, lab, 2, ENS_OUT_IMPORT, force, "ens import csv", oerr,
                         sizeof oerr)) {
      fprintf(stderr, "%s\n", oerr);
      return 1;
    }
  }
  if (o.test_path && fraction_given) {
    fprintf(stderr, "ens import csv: --test and --test-fraction exclude each other (the test "
                    "rows come from one or the other)\n");
    return 1;
  }

  ens_csv_summary s;
  char err[2048] = "";
  int ret = ens_csv_import(&s, &o, err, sizeof err);
  if (ret) {
    fprintf(stderr, "ens import csv: %s\n", err[0] ? err : ens_strerror(ret));
    return ens_cli_exit_code(ret);
  }
  printf("%s: %d data rows; %d numeric and %d categorical feature column%s -> %d features; "
         "%d target%s\n", o.path, s.rows, s.numeric_cols, s.categorical_cols,
         s.numeric_cols + s.categorical_cols == 1 ? "" : "s", s.features, s.targets,
         s.targets == 1 ? "" : "s");
  if (s.dropped)
    printf("dropped %d row%s with missing values from %s\n", s.dropped, s.dropped == 1 ? "" : "s",
           o.path);
  if (s.test_dropped)
    printf("dropped %d row%s with missing values from %s\n", s.test_dropped,
           s.test_dropped == 1 ? "" : "s", o.test_path);
  if (s.task == ENS_CSV_CLASSIFY)
    printf("task: classify%s, %d classes%s\n",
           s.task_auto ? " (--task auto: the target is not numeric)" : "", s.classes,
           s.integer_codes ? " (the target's integer codes in increasing order; /class_names "
                             "holds them)" : "");
  else
    printf("task: regress%s\n", s.task_auto ? " (--task auto: the target is numeric; --task "
                                              "classify treats integer codes as classes)" : "");
  if (o.test_path)
    printf("test: %d row%s from %s\n", s.test_rows, s.test_rows == 1 ? "" : "s", o.test_path);
  else
    printf("test: %d row%s held out (--test-fraction %g%s, --split-seed %llu%s)\n", s.test_rows,
           s.test_rows == 1 ? "" : "s",
           o.enc.test_fraction, fraction_given ? "" : ", the default without --test",
           (unsigned long long)o.enc.split_seed, seed_given ? "" : ", the default");
  if (s.unseen)
    fprintf(stderr, "warning: %ld value%s in %s of categorical columns do%s not occur in %s: encoded as "
           "all-zero one-hot columns\n", s.unseen, s.unseen == 1 ? "" : "s", o.test_path,
           s.unseen == 1 ? "es" : "", o.path);
  if (o.enc.drop)
    printf("dropped columns: %s\n", o.enc.drop);
  if (o.enc.id)
    printf("id column: %s (in /train/id, /test/id%s; ens predict carries it to its output)\n",
           o.enc.id, s.val_rows ? ", /val/id" : "");
  printf("wrote %s: train %d, val %d, test %d rows x %d features\n", o.out_path, s.train_rows,
         s.val_rows, s.test_rows, s.features);
  return 0;
}
