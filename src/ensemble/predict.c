/* `ens predict`: reads the rows to predict from an input file, applies the
 * result through libens (include/ens/infer.h, the one implementation of
 * inference: same batch sizes as training, so the probabilities and
 * predictions are bitwise those of the result) and writes the predictions. */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ens/error.h"
#include "ens/infer.h"
#include "ens/metrics.h"
#include "ens/model.h"
#include "ens/search.h"
#include "ens/hyperdeep.h"
#include "ensemble/hyperdeep.h"
#include "ensemble/job.h"
#include "io/features.h"
#include "io/fsutil.h"
#include "io/h5util.h"
#include "io/storage.h"
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <zlib.h>

int ens_predict(const char *model_path, const char *input, const char *dataset, const char *out,
                int combine, int mc_samples, const ens_predict_opts *po, char *err,
                size_t errlen) {
  ens_h5_quiet();
  err[0] = '\0';
  hid_t mf = -1, of = -1;
  ens_schema schema;
  ens_rows rin;
  memset(&schema, 0, sizeof(schema));
  memset(&rin, 0, sizeof(rin));
  char *text = NULL;
  float *x = NULL, *fin = NULL, *unc = NULL, *alea = NULL, *epi = NULL, *ytrue = NULL;
  int32_t *pred = NULL, *y = NULL;
  const char **names = NULL;
  ens_infer *model = NULL;
  ens_infer_ws *ws = NULL;
  int ret = 0, n = 0, d = 0;
  if (access(model_path, F_OK) != 0) {
    snprintf(err, errlen, "-m %s: %s", model_path, strerror(errno));
    ret = ENS_EIO;
    goto cleanup;
  }
  /* The model: loaded and checked by libens (src/infer/infer.c), the one
   * implementation of inference. */
  if ((ret = ens_infer_open(&model, model_path))) {
    snprintf(err, errlen, "%s", ens_infer_errmsg());
    goto cleanup;
  }
  const int regress = ens_infer_task(model) == ENS_INFER_REGRESS;
  const int64_t classes = ens_infer_classes(model), T = ens_infer_targets(model);
  const int64_t inputs = ens_infer_inputs(model), total = ens_infer_members_total(model);
  if (combine < 0)
    combine = ens_infer_default_rule(model);
  /* The result's stored configuration and the columns it knows of, for the
   * messages, the MC-dropout check and the by-name matching below. */
  mf = H5Fopen(model_path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (mf < 0) {
    snprintf(err, errlen, "%s: cannot open as an HDF5 result file", model_path);
    ret = ENS_EIO;
    goto cleanup;
  }
  ens_config c;
  char msg[1024];
  const char *data_path = NULL;
  int have_config = ens_h5_get_attr_str(mf, "/", "config", &text) == 0 &&
                    ens_config_load_text(&c, model_path, text, msg, sizeof(msg)) == 0;
  if (have_config)
    data_path = c.data_path;
  if (mc_samples > 0 && have_config) {
    /* Without dropout every pass is the same network: say so, and predict
     * (and record) the plain ensemble rather than call it MC-dropout. */
    const int64_t first = ens_infer_first_member(model), members = ens_infer_stored_members(model);
    int any = 0;
    for (int64_t k = first; k < first + members && !any; k++) {
      ens_config mcfg;
      ens_search_member_config(&mcfg, &c, ens_hyperdeep_read_source(mf, (int)k));
      any = mcfg.dropout > 0;
    }
    if (!any) {
      fprintf(stderr,
              "ens predict: warning: --mc-samples %d: no member of %s has dropout ([model] "
              "dropout = 0), so every pass would be the same network; predicting the plain "
              "ensemble (no MC-dropout)\n",
              mc_samples, model_path);
      mc_samples = 0;
    }
  }
  ens_infer_opts opts = {.rule = combine, .calibrate = 1, .mc_samples = mc_samples};
  if ((ret = ens_infer_check(model, &opts))) {
    const char *why = ens_infer_errmsg();
    if (combine == ENS_RULE_PARAMS && mc_samples > 0)
      snprintf(err, errlen, "--mc-samples with combine = params: MC-dropout applies to members");
    else if (combine == ENS_RULE_VOTE && regress)
      snprintf(err, errlen, "--combine vote: %s is a regression result (votes need classes)",
               model_path);
    else if (combine == ENS_RULE_PARAMS)
      snprintf(err, errlen, "%s has no /ensemble/params: %s", model_path,
               strstr(why, "it was trained") ? strstr(why, "it was trained") : why);
    else if (combine == ENS_RULE_SELECT && have_config)
      snprintf(err, errlen,
               "--combine select: %s was trained with [ensemble] combine = %s, so it holds no "
               "selection to apply (train with combine = select, which picks members on the "
               "validation rows; --combine average or vote work on any result)",
               model_path, ens_combine_name(c.combine));
    else if (combine == ENS_RULE_SELECT)
      snprintf(err, errlen, "%s: --%s", model_path, why);
    else
      snprintf(err, errlen, "%s: %s", model_path, why);
    goto cleanup;
  }
  /* The rows, in the model's feature order (matched by name), with their
   * truth, ids and source lines when the input has them (io/features.c).
   * libens itself takes raw rows in the model's order. */
  if (ens_schema_load(&schema, mf, (int)inputs, regress, (int)classes, (int)T, data_path)) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  ens_rows_opts ro = {dataset, po ? po->delimiter : 0, po ? po->decimal : 0,
                      po ? po->no_header : 0};
  if ((ret = ens_rows_read(&rin, &schema, input, &ro, err, errlen)) != 0)
    goto cleanup;
  x = rin.x;
  y = rin.y;
  ytrue = rin.t;
  rin.x = NULL;
  rin.y = NULL;
  rin.t = NULL;
  n = rin.n;
  d = rin.d;
  const char *ds = rin.dataset, *ypath = rin.truth;
  int have_truth = y || ytrue;
  if (rin.reordered)
    printf("%s: %d features matched to the model's by name (in another order than the "
           "model's)\n", input, d);
  /* All rows in one pass: every member sees the batches of its training
   * batch size from the first row, as in the result file. */
  ens_task K;
  ens_task_init(&K, regress, (int)classes, (int)T, ENS_LOSS_GAUSSIAN, NULL, NULL);
  const size_t W = (size_t)K.W, nw = (size_t)n * W;
  const int used = ens_infer_members_used(model, combine);
  fin = malloc(nw * sizeof(float));
  pred = calloc((size_t)n, sizeof(int32_t));
  unc = calloc((size_t)n * 3, sizeof(float));
  alea = calloc((size_t)n * (regress ? T : 1), sizeof(float));
  epi = calloc((size_t)n * (regress ? T : 1), sizeof(float));
  float *mean = regress ? malloc((size_t)n * T * sizeof(float)) : NULL;
  float *var = regress ? malloc((size_t)n * T * sizeof(float)) : NULL;
  if (!fin || !pred || !unc || !alea || !epi || (regress && (!mean || !var))) {
    free(mean);
    free(var);
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  ens_infer_out o = {.probs = fin, .pred = pred, .uncertainty = unc, .mean = mean, .var = var,
                     .var_aleatoric = alea, .var_epistemic = epi};
  /* The BLAS threads the result's rows were computed with ([train]
   * threads): OpenBLAS splits a product's columns among its threads, and
   * on some cores' kernels (Haswell, Zen) a column's float operations depend
   * on where it falls, so another count changes the last bits. An
   * OPENBLAS_NUM_THREADS of the caller's own wins. */
  const char *env_threads = getenv("OPENBLAS_NUM_THREADS");
  if (!env_threads || !*env_threads)
    openblas_set_num_threads(have_config && c.threads > 0 ? c.threads : 1);
  if ((ret = ens_infer_ws_create(&ws, model, n, 0)) ||
      (ret = ens_infer_predict(model, ws, &opts, x, n, d, &o))) {
    snprintf(err, errlen, "%s: %s", model_path, ens_infer_errmsg());
    free(mean);
    free(var);
    goto cleanup;
  }
  if (regress) { /* rows (n, 2T): T means then T variances */
    for (int i = 0; i < n; i++) {
      memcpy(fin + (size_t)i * W, mean + (size_t)i * T, (size_t)T * sizeof(float));
      memcpy(fin + (size_t)i * W + T, var + (size_t)i * T, (size_t)T * sizeof(float));
    }
  }
  free(mean);
  free(var);
  const int calibrated = ens_infer_calibrated(model, &opts);
  const double calib = ens_infer_calibration(model);
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
  ret |= ens_rows_write_h5(of, &rin);
  /* Class names (ens import csv stores them): the list, and each row's. */
  names = regress || !ens_infer_class_name(model, 0) ? NULL : malloc((size_t)classes * sizeof(char *));
  for (int cl = 0; names && cl < classes; cl++)
    names[cl] = ens_infer_class_name(model, cl);
  if (names) {
    const char **rowname = malloc((size_t)n * sizeof(char *));
    ret |= ens_h5_write_strings(of, "/class_names", names, (size_t)classes);
    if (rowname) {
      for (int r = 0; r < n; r++)
        rowname[r] = names[pred[r]];
      ret |= ens_h5_write_strings(of, "/pred_names", rowname, (size_t)n);
      free(rowname);
    }
  }
  ret |= ens_h5_attr_str(of, "/", "model", model_path);
  if (text) {
    /* Which model, for tools that compare prediction files (scripts/ood.py):
     * a result is a deterministic function of its configuration and data. */
    int64_t dsum = 0;
    ret |= ens_h5_attr_i64(of, "/", "model_config_adler32",
                           (int64_t)adler32(adler32(0L, Z_NULL, 0), (const Bytef *)text,
                                            (uInt)strlen(text)));
    if (ens_h5_get_attr_i64(mf, "/", "data_checksum", &dsum) == 0)
      ret |= ens_h5_attr_i64(of, "/", "model_data_checksum", dsum);
  }
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
  if (ens_is_csv_path(out)) {
    ret = ens_rows_write_csv(out, of, &schema, &rin, err, errlen);
    H5Fclose(of);
  } else {
    ret = ens_storage_h5_publish(of, out, NULL, "cannot write", err, errlen);
  }
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
  const int64_t first = ens_infer_first_member(model), members = ens_infer_stored_members(model);
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
      printf("against %s: rmse %.4g  mae %.4g  nll %.4f  coverage_90 %.2f%%\n", ypath, m[0], m[2],
             m[1], 100.0 * m[6]);
    }
  }
cleanup:
  if (of >= 0)
    H5Fclose(of);
  if (mf >= 0)
    H5Fclose(mf);
  ens_schema_free(&schema);
  ens_rows_free(&rin);
  free(text);
  ens_infer_ws_free(ws);
  ens_infer_close(model);
  free(names);
  free(x);
  free(fin);
  free(unc);
  free(alea);
  free(epi);
  free(pred);
  free(y);
  free(ytrue);
  return ret;
}
