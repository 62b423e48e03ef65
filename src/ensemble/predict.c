/* `ens predict`: rebuild the trunk and every member from a result file and
 * apply them to new rows, in the same batch sizes as training used so the
 * probabilities (and so the predictions) are bitwise those of the result. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ens/error.h"
#include "ens/metrics.h"
#include "ens/model.h"
#include "ens/search.h"
#include "ensemble/job.h"
#include "io/fsutil.h"
#include "io/h5util.h"
#include "io/storage.h"
#include <limits.h>
#include <math.h>
#include <stdint.h>

/* Reads rows (n, d) of `path` in `f` as float32, any numeric type: a rank
 * >= 2 dataset whose size fits an int count and this node's memory, with
 * finite values. Returns 0 or ENS_EFORMAT with the reason in why. */
static int read_rows(hid_t f, const char *path, float **x, int *n, int *d, int img[3], char *why,
                     size_t whylen) {
  int rank = 0;
  hsize_t dims[8];
  long long total = ens_h5_size(f, path, &rank, dims);
  *x = NULL;
  img[0] = img[1] = img[2] = 0;
  if (total >= 0 && (rank == 3 || rank == 4)) { /* (n, H, W) or (n, C, H, W) */
    img[0] = rank == 4 ? (int)dims[1] : 1;
    img[1] = (int)dims[rank - 2];
    img[2] = (int)dims[rank - 1];
  }
  if (total < 0) {
    snprintf(why, whylen, "is missing or not a dataset");
    return ENS_EFORMAT;
  }
  if (rank < 2) {
    snprintf(why, whylen, "has rank %d, expected rows of features (n, d)", rank);
    return ENS_EFORMAT;
  }
  unsigned long long rows = dims[0], cols = 1;
  int over = 0;
  for (int i = 1; i < rank; i++) {
    if (dims[i] && cols > ULLONG_MAX / dims[i])
      over = 1;
    else
      cols *= dims[i];
  }
  if (over || rows > INT32_MAX || cols > INT32_MAX) {
    snprintf(why, whylen, "declares %llu rows of %llu features, more than %d", rows, cols,
             INT32_MAX);
    return ENS_EFORMAT;
  }
  if (!ens_h5_affordable((unsigned long long)total * sizeof(float))) {
    snprintf(why, whylen, "declares %llu x %llu values, more than the memory of this node", rows,
             cols);
    return ENS_EFORMAT;
  }
  *n = (int)rows;
  *d = (int)cols;
  *x = malloc((size_t)(total ? total : 1) * sizeof(float));
  if (!*x)
    return ENS_ENOMEM;
  if (ens_h5_read(f, path, H5T_NATIVE_FLOAT, *x, (size_t)total)) {
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    char r[160] = "HDF5 cannot read it";
    if (ds >= 0) {
      ens_h5_read_failure(ds, r, sizeof(r));
      H5Dclose(ds);
    }
    snprintf(why, whylen, "cannot be read as float32: %s", r);
    return ENS_EFORMAT;
  }
  for (long long i = 0; i < total; i++)
    if (!isfinite((*x)[i])) {
      snprintf(why, whylen,
               "has a non-finite value (%g) at row %lld, column %lld (after "
               "conversion to float32)",
               (double)(*x)[i], i / (long long)cols, i % (long long)cols);
      return ENS_EFORMAT;
    }
  return 0;
}

/* Before a network is built from a stored configuration: datasets pp (and
 * sp) must hold exactly the parameters (and batch-norm statistics) of
 * blocks [first, last) (+ the output layer) of a, and those must fit in
 * memory; so no buffer is ever sized from a damaged file. 0, or
 * ENS_EFORMAT with the reason in err. */
static int check_sizes(hid_t f, const char *file, const ens_arch *a, int first, int last,
                       int output, const char *pp, const char *sp, char *err, size_t errlen) {
  size_t np = 0, ns = 0;
  ens_arch_sizes(a, first, last, output, &np, &ns);
  long long hp = ens_h5_size(f, pp, NULL, NULL), hs = ns ? ens_h5_size(f, sp, NULL, NULL) : 0;
  if (hp != (long long)np || hs != (long long)ns) {
    snprintf(err, errlen,
             "%s: %s holds %lld values and %s %lld; the architecture in its stored configuration "
             "needs %zu and %zu",
             file, pp, hp, sp, hs, np, ns);
    return ENS_EFORMAT;
  }
  if (!ens_h5_affordable((unsigned long long)(np + ns) * 4 * sizeof(float))) {
    snprintf(err, errlen, "%s: %s declares %zu parameters, more than the memory of this node", file,
             pp, np);
    return ENS_EFORMAT;
  }
  return 0;
}

static int load_model(ens_model *m, hid_t f, const char *pp, const char *sp) {
  int ret = ens_h5_read(f, pp, H5T_NATIVE_FLOAT, m->params, m->nparams);
  if (!ret && m->nstats)
    ret = ens_h5_read(f, sp, H5T_NATIVE_FLOAT, m->stats, m->nstats);
  return ret;
}

int ens_predict(const char *model_path, const char *input, const char *dataset, const char *out,
                int combine, int mc_samples, char *err, size_t errlen) {
  ens_h5_quiet();
  err[0] = '\0';
  hid_t mf = -1, inf = -1, of = -1;
  char *text = NULL, *taskname = NULL, **names = NULL;
  float *x = NULL, *feat = NULL, *rows = NULL, *fin = NULL, *mean = NULL, *stdv = NULL;
  float *ymean = NULL, *ystd = NULL, *scratch = NULL, *weights = NULL, *unc = NULL;
  float *alea = NULL, *epi = NULL, *ytrue = NULL;
  int32_t *pred = NULL, *y = NULL;
  ens_acc acc;
  memset(&acc, 0, sizeof(acc));
  ens_model trunk, head;
  memset(&trunk, 0, sizeof(trunk));
  memset(&head, 0, sizeof(head));
  int ret = 0, n = 0, d = 0;
  ens_config c;
  mf = H5Fopen(model_path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (mf < 0) {
    snprintf(err, errlen, "%s: cannot open as an HDF5 result file", model_path);
    ret = ENS_EIO;
    goto cleanup;
  }
  int64_t classes = 0, inputs = 0, members = 0, first = 0, tl = 0, standardized = 0, T = 0;
  int64_t total = 0;
  if (ens_h5_get_attr_str(mf, "/", "config", &text) ||
      ens_h5_get_attr_i64(mf, "/model", "classes", &classes) ||
      ens_h5_get_attr_i64(mf, "/model", "inputs", &inputs) ||
      ens_h5_get_attr_i64(mf, "/", "members", &members) ||
      ens_h5_get_attr_i64(mf, "/", "first_member", &first) ||
      ens_h5_get_attr_i64(mf, "/model", "trunk_layers", &tl) ||
      ens_h5_get_attr_i64(mf, "/model", "standardized", &standardized)) {
    snprintf(err, errlen, "%s: not an ens result file (missing /model or root attributes)",
             model_path);
    ret = ENS_EFORMAT;
    goto cleanup;
  }
  if (ens_h5_get_attr_i64(mf, "/", "members_total", &total))
    total = members;
  int regress = ens_h5_get_attr_str(mf, "/", "task", &taskname) == 0 &&
                strcmp(taskname, "regress") == 0;
  if (regress && ens_h5_get_attr_i64(mf, "/model", "targets", &T)) {
    snprintf(err, errlen, "%s: regression result without /model targets", model_path);
    ret = ENS_EFORMAT;
    goto cleanup;
  }
  if (members < 1 || members > (1 << 24) || first < 0 || first > INT32_MAX - members ||
      inputs < 1 || inputs > INT32_MAX || (!regress && (classes < 2 || classes > (1 << 24))) ||
      (regress && (T < 1 || T > 65536)) || tl < 0 || tl > ENS_MAX_LAYERS) {
    snprintf(err, errlen, "%s: /model attributes out of range (members %lld, inputs %lld)",
             model_path, (long long)members, (long long)inputs);
    ret = ENS_EFORMAT;
    goto cleanup;
  }
  /* The input shape of a layer list (absent: flat rows). */
  ens_shape mshape = {.c = (int)inputs, .h = 1, .w = 1, .image = 0};
  int64_t ich = 0, ih = 0, iw = 0;
  if (ens_h5_get_attr_i64(mf, "/model", "input_channels", &ich) == 0 &&
      ens_h5_get_attr_i64(mf, "/model", "input_height", &ih) == 0 &&
      ens_h5_get_attr_i64(mf, "/model", "input_width", &iw) == 0 && ich > 0 && ih > 0 &&
      iw > 0 && ich * ih * iw == inputs)
    mshape = (ens_shape){.c = (int)ich, .h = (int)ih, .w = (int)iw, .image = 1};
  char msg[1024];
  if (ens_config_load_text(&c, model_path, text, msg, sizeof(msg))) {
    snprintf(err, errlen, "%s: stored configuration does not load: %s", model_path, msg);
    ret = ENS_EFORMAT;
    goto cleanup;
  }
  if (combine < 0)
    combine = (int)c.combine;
  if (combine == ENS_COMBINE_PARAMS && !ens_h5_exists(mf, "/ensemble/params")) {
    snprintf(err, errlen,
             "%s has no /ensemble/params: it was trained with combine = %s (parameter "
             "averaging is stored only for combine = params)",
             model_path, ens_combine_name(c.combine));
    ret = ENS_EINVAL;
    goto cleanup;
  }
  if (combine == ENS_COMBINE_VOTE && regress) {
    snprintf(err, errlen, "--combine vote: %s is a regression result (votes need classes)",
             model_path);
    ret = ENS_EINVAL;
    goto cleanup;
  }
  if (combine == ENS_COMBINE_PARAMS && mc_samples > 0) {
    snprintf(err, errlen, "--mc-samples with combine = params: MC-dropout applies to members");
    ret = ENS_EINVAL;
    goto cleanup;
  }
  inf = H5Fopen(input, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (inf < 0) {
    snprintf(err, errlen, "%s: cannot open as an HDF5 file", input);
    ret = ENS_EIO;
    goto cleanup;
  }
  const char *ds = dataset ? dataset : ens_h5_exists(inf, "/x") ? "/x" : "/test/x";
  char why[256] = "";
  int img[3];
  ret = read_rows(inf, ds, &x, &n, &d, img, why, sizeof(why));
  if (ret && !dataset && !ens_h5_exists(inf, ds)) {
    snprintf(err, errlen, "%s has neither /x nor /test/x: name the rows to predict with "
             "--dataset (e.g. --dataset /train/x)", input);
    goto cleanup;
  }
  if (ret) {
    if (ret == ENS_ENOMEM)
      snprintf(err, errlen, "%s: out of memory reading dataset %s", input, ds);
    else
      snprintf(err, errlen, "%s: dataset %s %s", input, ds, why);
    goto cleanup;
  }
  /* A layer list trained on images takes images of that shape (or flat rows
   * of its size, NCHW order). */
  if (mshape.image && img[0] > 0 &&
      (img[0] != mshape.c || img[1] != mshape.h || img[2] != mshape.w)) {
    snprintf(err, errlen,
             "%s: %s holds images of shape (%d,%d,%d) (C,H,W); the model was trained on "
             "images of shape (%d,%d,%d)",
             input, ds, img[0], img[1], img[2], mshape.c, mshape.h, mshape.w);
    ret = ENS_ESHAPE;
    goto cleanup;
  }
  if (d != inputs || n < 1) {
    snprintf(err, errlen, "%s: %s has %d rows of %d features; the model expects %lld features",
             input, ds, n, d, (long long)inputs);
    ret = ENS_ESHAPE;
    goto cleanup;
  }
  /* Labels or targets beside the rows, when present, for a printed score. */
  char ypath[512];
  snprintf(ypath, sizeof(ypath), "%s", ds);
  size_t yl = strlen(ypath);
  int have_truth = 0;
  if (yl >= 1 && ypath[yl - 1] == 'x') {
    ypath[yl - 1] = 'y';
    long long ysz = ens_h5_size(inf, ypath, NULL, NULL);
    if (!regress && ysz == n) {
      y = malloc((size_t)n * sizeof(int32_t));
      have_truth = y && !ens_h5_read(inf, ypath, H5T_NATIVE_INT32, y, (size_t)n);
    } else if (regress && ysz == (long long)n * T) {
      ytrue = malloc((size_t)n * T * sizeof(float));
      have_truth = ytrue && !ens_h5_read(inf, ypath, H5T_NATIVE_FLOAT, ytrue, (size_t)n * T);
    }
    /* Only a score is at stake: labels that cannot be scored (outside
     * [0, classes), non-finite targets) are named and left out. */
    for (int r = 0; have_truth && r < n; r++) {
      int bad = regress ? 0 : (y[r] < 0 || y[r] >= classes);
      for (int t = 0; regress && t < T; t++)
        bad |= !isfinite(ytrue[(size_t)r * T + t]);
      if (bad) {
        fprintf(stderr, "ens predict: warning: %s: %s has %s at row %d; no score is printed\n",
                input, ypath, regress ? "a non-finite target" : "a label outside [0, classes)", r);
        have_truth = 0;
      }
    }
  }
  if (standardized) {
    mean = malloc((size_t)d * sizeof(float));
    stdv = malloc((size_t)d * sizeof(float));
    if (!mean || !stdv || ens_h5_read(mf, "/model/input_mean", H5T_NATIVE_FLOAT, mean, (size_t)d) ||
        ens_h5_read(mf, "/model/input_std", H5T_NATIVE_FLOAT, stdv, (size_t)d)) {
      snprintf(err, errlen, "%s: /model/input_mean or input_std missing", model_path);
      ret = ENS_EFORMAT;
      goto cleanup;
    }
    ens_split s = {.n = n, .d = d, .x = x};
    ens_standardize_apply(&s, mean, stdv);
  }
  if (regress && ens_h5_exists(mf, "/model/target_mean")) {
    ymean = malloc((size_t)T * sizeof(float));
    ystd = malloc((size_t)T * sizeof(float));
    if (!ymean || !ystd ||
        ens_h5_read(mf, "/model/target_mean", H5T_NATIVE_FLOAT, ymean, (size_t)T) ||
        ens_h5_read(mf, "/model/target_std", H5T_NATIVE_FLOAT, ystd, (size_t)T)) {
      snprintf(err, errlen, "%s: /model/target_mean or target_std has the wrong size",
               model_path);
      ret = ENS_EFORMAT;
      goto cleanup;
    }
  }
  ens_task K;
  ens_task_init(&K, regress, (int)classes, (int)T, c.loss, ymean, ystd);
  ens_arch arch;
  ens_arch_from_config_shape(&arch, &c, mshape, K.head, regress ? (int)T : (int)classes);
  const float *hx = x;
  if (tl > 0) {
    if (tl > arch.n_hidden) {
      snprintf(err, errlen,
               "%s: /model trunk_layers = %lld but its configuration has %d hidden "
               "layers",
               model_path, (long long)tl, arch.n_hidden);
      ret = ENS_EFORMAT;
      goto cleanup;
    }
    if ((ret = check_sizes(mf, model_path, &arch, 0, (int)tl, 0, "/trunk/params", "/trunk/bn_stats",
                           err, errlen)))
      goto cleanup;
    if ((ret = ens_model_create(&trunk, &arch, 0, (int)tl, 0, c.batch)) ||
        (ret = load_model(&trunk, mf, "/trunk/params", "/trunk/bn_stats"))) {
      snprintf(err, errlen, "%s: /trunk does not match the architecture", model_path);
      ret = ENS_EFORMAT;
      goto cleanup;
    }
    feat = malloc((size_t)n * trunk.out * sizeof(float));
    if (!feat) {
      ret = ENS_ENOMEM;
      goto cleanup;
    }
    ens_model_features(&trunk, feat, x, n);
    hx = feat;
  }
  const size_t W = (size_t)K.W, nw = (size_t)n * W;
  rows = malloc(nw * sizeof(float));
  fin = malloc(nw * sizeof(float));
  scratch = malloc(nw * sizeof(float));
  pred = calloc((size_t)n, sizeof(int32_t));
  unc = calloc((size_t)n * 3, sizeof(float));
  alea = calloc((size_t)n * (regress ? T : 1), sizeof(float));
  epi = calloc((size_t)n * (regress ? T : 1), sizeof(float));
  weights = calloc((size_t)members, sizeof(float));
  if (!rows || !fin || !scratch || !pred || !unc || !alea || !epi || !weights ||
      ens_acc_init(&acc, &K, n)) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  /* Member weights: the selection's picks, else every finished member. */
  int64_t picks = 0;
  int have_w = ens_h5_size(mf, "/ensemble/weights", NULL, NULL) == members &&
               !ens_h5_read(mf, "/ensemble/weights", H5T_NATIVE_FLOAT, weights, (size_t)members);
  if (combine == ENS_COMBINE_SELECT &&
      (!have_w || ens_h5_get_attr_i64(mf, "/metrics/ensemble", "select_picks", &picks))) {
    snprintf(err, errlen, "%s: --combine select needs /ensemble/weights of a combine = select "
             "result", model_path);
    ret = ENS_EINVAL;
    goto cleanup;
  }
  int used = 0;
  if (combine == ENS_COMBINE_PARAMS) {
    if ((ret = check_sizes(mf, model_path, &arch, (int)tl, arch.n_hidden, 1, "/ensemble/params",
                           "/ensemble/bn_stats", err, errlen)))
      goto cleanup;
    if ((ret = ens_model_create(&head, &arch, (int)tl, arch.n_hidden, 1, c.batch)) ||
        load_model(&head, mf, "/ensemble/params", "/ensemble/bn_stats")) {
      snprintf(err, errlen, "%s: /ensemble/params has the wrong size", model_path);
      ret = ENS_EFORMAT;
      goto cleanup;
    }
    ens_task_predict(&K, &head, fin, hx, n);
    ens_acc_add(&acc, fin, 1.0, NULL);
    used = 1;
  } else {
    for (int k = (int)first; k < first + members; k++) {
      char grp[64], pp[128], sp[128];
      char *status = NULL;
      snprintf(grp, sizeof(grp), "/members/%d", k);
      snprintf(pp, sizeof(pp), "/members/%d/params", k);
      snprintf(sp, sizeof(sp), "/members/%d/bn_stats", k);
      int failed = ens_h5_get_attr_str(mf, grp, "status", &status) == 0 &&
                   strcmp(status, "done") != 0;
      free(status);
      double w = combine == ENS_COMBINE_SELECT ? (double)lround(weights[k - first] * picks) : 1.0;
      if (failed || w == 0.0)
        continue;
      ens_config mc;
      ens_arch ma;
      ens_search_member_config(&mc, &c, k);
      ens_arch_from_config_shape(&ma, &mc, mshape, K.head, regress ? (int)T : (int)classes);
      ens_model_free(&head);
      if ((ret = check_sizes(mf, model_path, &ma, (int)tl, ma.n_hidden, 1, pp, sp, err, errlen)))
        goto cleanup;
      if ((ret = ens_model_create(&head, &ma, (int)tl, ma.n_hidden, 1, mc.batch)) ||
          load_model(&head, mf, pp, sp)) {
        snprintf(err, errlen, "%s: %s missing or of the wrong size for its architecture",
                 model_path, pp);
        ret = ENS_EFORMAT;
        goto cleanup;
      }
      if (mc_samples > 0)
        ens_task_predict_mc(&K, &head, rows, scratch, hx, n, c.seed, (uint32_t)k, mc_samples);
      else
        ens_task_predict(&K, &head, rows, hx, n);
      ens_acc_add(&acc, rows, w, NULL);
      used++;
    }
  }
  if (!used) {
    snprintf(err, errlen, "%s: no finished member to apply", model_path);
    ret = ENS_EFORMAT;
    goto cleanup;
  }
  if (combine == ENS_COMBINE_VOTE) {
    ens_acc_vote(&acc, fin, pred);
  } else if (combine != ENS_COMBINE_PARAMS) {
    ens_acc_mean(&acc, fin);
  }
  if (regress) {
    if (combine == ENS_COMBINE_PARAMS)
      for (int i = 0; i < n; i++)
        for (int t = 0; t < T; t++)
          alea[(size_t)i * T + t] = fin[(size_t)i * W + T + t];
    else
      ens_acc_var_parts(&acc, fin, alea, epi);
  }
  /* The result's calibration, when the rule is the one it was fitted for. */
  double calib = 1.0;
  int calibrated = combine == (int)c.combine &&
                   ens_h5_get_attr_f64(mf, "/ensemble", regress ? "variance_scale" : "temperature",
                                       &calib) == 0;
  if (calibrated)
    ens_task_calibration_apply(&K, fin, n, calib, regress ? alea : NULL, regress ? epi : NULL);
  if (!regress) {
    if (combine != ENS_COMBINE_VOTE)
      ens_task_argmax(&K, pred, fin, n);
    ens_acc_uncertainty(&acc, fin, unc);
  }
  if (ens_mkdir_parent(out) != 0) {
    snprintf(err, errlen, "-o %s: cannot create its folder: %s", out, strerror(errno));
    ret = ENS_EIO;
    goto cleanup;
  }
  ens_tmp_sweep(out); /* temporary files of dead runs */
  /* Built in memory, then written and renamed into place with plain POSIX
   * calls (io/storage.h): a full disk is reported as such, nothing is left. */
  of = ens_storage_h5_memory(out);
  if (of < 0) {
    snprintf(err, errlen, "-o %s: cannot create the output file in memory", out);
    ret = ENS_EHDF5;
    goto cleanup;
  }
  ret |= ens_task_write_rows(of, "/", &K, fin, pred, unc, alea, epi, n);
  /* Class names (ens import csv stores them): the list, and each row's. */
  names = regress ? NULL : ens_h5_read_strings(mf, "/model/class_names", classes);
  if (names) {
    const char **rowname = malloc((size_t)n * sizeof(char *));
    ret |= ens_h5_write_strings(of, "/class_names", (const char *const *)names, (size_t)classes);
    if (rowname) {
      for (int r = 0; r < n; r++)
        rowname[r] = names[pred[r]];
      ret |= ens_h5_write_strings(of, "/pred_names", rowname, (size_t)n);
      free(rowname);
    }
  }
  ret |= ens_h5_attr_str(of, "/", "model", model_path);
  ret |= ens_h5_attr_str(of, "/", "input", input);
  ret |= ens_h5_attr_str(of, "/", "dataset", ds);
  ret |= ens_h5_attr_str(of, "/", "combine", ens_combine_name((ens_combine_kind)combine));
  ret |= ens_h5_attr_i64(of, "/", "members", used);
  ret |= ens_h5_attr_i64(of, "/", "members_total", total);
  ret |= ens_h5_attr_i64(of, "/", "mc_samples", mc_samples);
  if (calibrated)
    ret |= ens_h5_attr_f64(of, "/", regress ? "variance_scale" : "temperature", calib);
  if (ret) {
    snprintf(err, errlen, "%s: cannot build the output file in memory (%s)", out,
             ens_strerror(ret));
    ret = ENS_EHDF5;
    goto cleanup;
  }
  ret = ens_storage_h5_publish(of, out, NULL, "cannot write", err, errlen);
  of = -1;
  if (ret)
    goto cleanup;
  printf("%d rows, %d of %lld members, combine %s%s -> %s\n", n, used, (long long)total,
         ens_combine_name((ens_combine_kind)combine), mc_samples > 0 ? " (MC-dropout)" : "", out);
  if (names) {
    int32_t *cnt = calloc((size_t)classes, sizeof(int32_t));
    if (cnt) {
      for (int r = 0; r < n; r++)
        cnt[pred[r]]++;
      printf("predicted classes:");
      for (int cl = 0; cl < classes; cl++)
        printf(" %s %d%s", names[cl], cnt[cl], cl + 1 < classes ? "," : "\n");
      free(cnt);
    }
  }
  if (total > members)
    printf("note: %s is a partial result: it holds members %lld-%lld of the ensemble's %lld\n",
           model_path, (long long)first, (long long)(first + members - 1), (long long)total);
  if (have_truth) {
    double m[ENS_TASK_MAX_METRICS];
    ens_truth tr = {y, ytrue, n};
    ens_task_metrics(&K, m, fin, &tr);
    if (!regress) {
      int hit = 0;
      for (int r = 0; r < n; r++)
        hit += pred[r] == y[r];
      printf("accuracy against %s: %.2f%%  nll %.4f  ece %.4f\n", ypath, 100.0 * hit / n, m[1],
             m[3]);
    } else {
      printf("against %s: rmse %.4g  mae %.4g  nll %.4f  90%% coverage %.3f\n", ypath, m[0], m[2],
             m[1], m[6]);
    }
  }
cleanup:
  if (of >= 0)
    H5Fclose(of);
  if (mf >= 0)
    H5Fclose(mf);
  if (inf >= 0)
    H5Fclose(inf);
  ens_model_free(&trunk);
  ens_model_free(&head);
  ens_acc_free(&acc);
  free(text);
  free(taskname);
  for (int64_t i = 0; names && i < classes; i++)
    free(names[i]);
  free(names);
  free(x);
  free(feat);
  free(rows);
  free(fin);
  free(mean);
  free(stdv);
  free(ymean);
  free(ystd);
  free(scratch);
  free(weights);
  free(unc);
  free(alea);
  free(epi);
  free(pred);
  free(y);
  free(ytrue);
  return ret;
}
