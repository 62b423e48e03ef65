/* `ens predict`: rebuild the trunk and every member from a result file and
 * apply them to new rows, in the same batch sizes as training used so the
 * probabilities (and so the predictions) are bitwise those of the result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ens/error.h"
#include "ens/metrics.h"
#include "ens/model.h"
#include "io/fsutil.h"
#include "io/h5util.h"
#include "ensemble/job.h"

/* Reads rows (n, d) of `path` in `f` as float32, any numeric type. */
static int read_rows(hid_t f, const char *path, float **x, int *n, int *d) {
  int rank = 0;
  hsize_t dims[8];
  long long total = ens_h5_size(f, path, &rank, dims);
  if (total < 0 || rank < 2)
    return ENS_EFORMAT;
  *n = (int)dims[0];
  *d = (int)(dims[0] ? total / (long long)dims[0] : 0);
  *x = malloc((size_t)(total ? total : 1) * sizeof(float));
  if (!*x)
    return ENS_ENOMEM;
  return ens_h5_read(f, path, H5T_NATIVE_FLOAT, *x, (size_t)total);
}

static int load_model(ens_model *m, hid_t f, const char *pp, const char *sp) {
  int ret = ens_h5_read(f, pp, H5T_NATIVE_FLOAT, m->params, m->nparams);
  if (!ret && m->nstats)
    ret = ens_h5_read(f, sp, H5T_NATIVE_FLOAT, m->stats, m->nstats);
  return ret;
}

int ens_predict(const char *model_path, const char *input, const char *dataset, const char *out,
                int combine, char *err, size_t errlen) {
  ens_h5_quiet();
  err[0] = '\0';
  hid_t mf = -1, inf = -1, of = -1;
  char *text = NULL;
  float *x = NULL, *feat = NULL, *probs = NULL, *mean = NULL, *stdv = NULL, *fin = NULL;
  double *psum = NULL;
  int32_t *votes = NULL, *pred = NULL, *y = NULL;
  ens_model trunk, head;
  memset(&trunk, 0, sizeof(trunk));
  memset(&head, 0, sizeof(head));
  char tmp[ENS_PATH_MAX + 64] = "";
  int ret = 0, n = 0, d = 0;
  ens_config c;
  mf = H5Fopen(model_path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (mf < 0) {
    snprintf(err, errlen, "%s: cannot open as an HDF5 result file", model_path);
    ret = ENS_EIO;
    goto cleanup;
  }
  int64_t classes = 0, inputs = 0, members = 0, first = 0, tl = 0, standardized = 0;
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
  inf = H5Fopen(input, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (inf < 0) {
    snprintf(err, errlen, "%s: cannot open as an HDF5 file", input);
    ret = ENS_EIO;
    goto cleanup;
  }
  const char *ds = dataset ? dataset : ens_h5_exists(inf, "/x") ? "/x" : "/test/x";
  ret = read_rows(inf, ds, &x, &n, &d);
  if (ret) {
    snprintf(err, errlen, "%s: dataset %s missing or not numeric of shape (n, d)", input, ds);
    goto cleanup;
  }
  if (d != inputs || n < 1) {
    snprintf(err, errlen, "%s: %s has %d rows of %d features; the model expects %lld features",
             input, ds, n, d, (long long)inputs);
    ret = ENS_ESHAPE;
    goto cleanup;
  }
  /* Labels beside the rows, when present, for a printed accuracy. */
  char ypath[512];
  snprintf(ypath, sizeof(ypath), "%s", ds);
  size_t yl = strlen(ypath);
  if (yl >= 1 && ypath[yl - 1] == 'x') {
    ypath[yl - 1] = 'y';
    if (ens_h5_size(inf, ypath, NULL, NULL) == n) {
      y = malloc((size_t)n * sizeof(int32_t));
      if (y && ens_h5_read(inf, ypath, H5T_NATIVE_INT32, y, (size_t)n)) {
        free(y);
        y = NULL;
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
  ens_arch arch;
  ens_arch_from_config(&arch, &c, d, (int)classes);
  const float *hx = x;
  int hd = d;
  if (tl > 0) {
    if ((ret = ens_model_create(&trunk, &arch, 0, (int)tl, 0, c.batch)) ||
        (ret = load_model(&trunk, mf, "/trunk/params", "/trunk/bn_stats"))) {
      snprintf(err, errlen, "%s: /trunk does not match the architecture", model_path);
      ret = ENS_EFORMAT;
      goto cleanup;
    }
    hd = trunk.out;
    feat = malloc((size_t)n * hd * sizeof(float));
    if (!feat) {
      ret = ENS_ENOMEM;
      goto cleanup;
    }
    ens_model_features(&trunk, feat, x, n);
    hx = feat;
  }
  if ((ret = ens_model_create(&head, &arch, (int)tl, arch.n_hidden, 1, c.batch)))
    goto cleanup;
  const int C = (int)classes;
  size_t nc = (size_t)n * C;
  probs = malloc(nc * sizeof(float));
  fin = malloc(nc * sizeof(float));
  psum = calloc(nc, sizeof(double));
  votes = calloc(nc, sizeof(int32_t));
  pred = malloc((size_t)n * sizeof(int32_t));
  if (!probs || !fin || !psum || !votes || !pred) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  if (combine == ENS_COMBINE_PARAMS) {
    if (load_model(&head, mf, "/ensemble/params", "/ensemble/bn_stats")) {
      snprintf(err, errlen, "%s: /ensemble/params has the wrong size", model_path);
      ret = ENS_EFORMAT;
      goto cleanup;
    }
    ens_model_predict(&head, fin, hx, n);
    ens_predict_argmax(pred, fin, n, C);
  } else {
    for (int k = (int)first; k < first + members; k++) {
      char pp[128], sp[128];
      snprintf(pp, sizeof(pp), "/members/%d/params", k);
      snprintf(sp, sizeof(sp), "/members/%d/bn_stats", k);
      if (load_model(&head, mf, pp, sp)) {
        snprintf(err, errlen, "%s: %s missing or of the wrong size", model_path, pp);
        ret = ENS_EFORMAT;
        goto cleanup;
      }
      ens_model_predict(&head, probs, hx, n);
      ens_combine_add(psum, votes, NULL, probs, n, C);
    }
    if (combine == ENS_COMBINE_VOTE) {
      ens_combine_vote(fin, pred, votes, psum, (int)members, n, C);
    } else {
      ens_combine_average(fin, psum, (int)members, n, C);
      ens_predict_argmax(pred, fin, n, C);
    }
  }
  snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", out, (long)getpid());
  of = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (of < 0) {
    snprintf(err, errlen, "cannot create %s (is the directory writable?)", tmp);
    ret = ENS_EIO;
    tmp[0] = '\0';
    goto cleanup;
  }
  hsize_t d2[2] = {(hsize_t)n, (hsize_t)C}, dn = (hsize_t)n;
  ret |= ens_h5_write(of, "/probs", H5T_NATIVE_FLOAT, 2, d2, fin, 0);
  ret |= ens_h5_write(of, "/pred", H5T_NATIVE_INT32, 1, &dn, pred, 0);
  ret |= ens_h5_attr_str(of, "/", "model", model_path);
  ret |= ens_h5_attr_str(of, "/", "input", input);
  ret |= ens_h5_attr_str(of, "/", "dataset", ds);
  ret |= ens_h5_attr_str(of, "/", "combine", ens_combine_name((ens_combine_kind)combine));
  ret |= ens_h5_attr_i64(of, "/", "members", members);
  if (ret || H5Fclose(of) < 0) {
    of = -1;
    snprintf(err, errlen, "%s: write failed", tmp);
    ret = ENS_EHDF5;
    goto cleanup;
  }
  of = -1;
  if (ens_fsync_path(tmp) || rename(tmp, out) != 0) {
    snprintf(err, errlen, "cannot rename %s to %s", tmp, out);
    ret = ENS_EIO;
    goto cleanup;
  }
  tmp[0] = '\0';
  printf("%d rows, %lld members, combine %s -> %s\n", n, (long long)members,
         ens_combine_name((ens_combine_kind)combine), out);
  if (y) {
    int hit = 0;
    for (int r = 0; r < n; r++)
      hit += pred[r] == y[r];
    printf("accuracy against %s: %.2f%%\n", ypath, 100.0 * hit / n);
  }
cleanup:
  if (of >= 0)
    H5Fclose(of);
  if (tmp[0])
    unlink(tmp);
  if (mf >= 0)
    H5Fclose(mf);
  if (inf >= 0)
    H5Fclose(inf);
  ens_model_free(&trunk);
  ens_model_free(&head);
  free(text);
  free(x);
  free(feat);
  free(probs);
  free(fin);
  free(mean);
  free(stdv);
  free(psum);
  free(votes);
  free(pred);
  free(y);
  return ret;
}
