/* ens-trunk-forward: applies a trunk file (a PyTorch export or an ens
 * result's /trunk) to rows of an HDF5 file and writes the features, so tests
 * can compare ens's trunk with PyTorch's. Not installed.
 *   ens-trunk-forward trunk.h5 input.h5 /x out.h5   ->  out.h5:/features (n, width) */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"
#include "ens/model.h"
#include "ensemble/trunk.h"
#include "io/h5util.h"

#define BATCH 256

/* Architecture from the trunk file's /model: input width, hidden widths,
 * batch norm; the trunk has /trunk attr `layers` blocks. Returns 0 or 1. */
static int read_arch(const char *path, ens_arch *a, int *layers) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    fprintf(stderr, "ens-trunk-forward: %s: cannot open as HDF5\n", path);
    return 1;
  }
  int64_t inputs = 0, bn = 0, tl = 0;
  int32_t hidden[ENS_MAX_LAYERS + 1];
  long long nh = ens_h5_size(f, "/model/hidden", NULL, NULL);
  /* A layer list (conv trunks): /model layer_list and the input shape. */
  char *list = NULL;
  int64_t ic = 0, ih = 0, iw = 0;
  if (ens_h5_get_attr_str(f, "/model", "layer_list", &list) == 0 && list) {
    char err[256];
    memset(a, 0, sizeof(*a));
    int bad = ens_h5_get_attr_i64(f, "/model", "inputs", &inputs) ||
              ens_h5_get_attr_i64(f, "/trunk", "layers", &tl) ||
              ens_h5_get_attr_i64(f, "/model", "input_channels", &ic) ||
              ens_h5_get_attr_i64(f, "/model", "input_height", &ih) ||
              ens_h5_get_attr_i64(f, "/model", "input_width", &iw) ||
              ens_h5_get_attr_i64(f, "/model", "batchnorm", &bn) ||
              ens_layers_parse(list, a, err, sizeof err);
    H5Fclose(f);
    free(list);
    if (bad || tl < 1 || tl > a->n_hidden) {
      fprintf(stderr, "ens-trunk-forward: %s: bad layer list, input shape or /trunk layers\n",
              path);
      return 1;
    }
    a->in = (int)inputs;
    a->in_shape = ih > 0 ? (ens_shape){.c = (int)ic, .h = (int)ih, .w = (int)iw, .image = 1}
                         : (ens_shape){.c = (int)inputs, .h = 1, .w = 1, .image = 0};
    a->width = a->outputs = 1;
    a->batchnorm = bn != 0; /* unused by a layer list, but compared with the file's */
    *layers = (int)tl;
    return 0;
  }
  int bad = nh < 1 || nh > ENS_MAX_HIDDEN ||
            ens_h5_read(f, "/model/hidden", H5T_NATIVE_INT32, hidden, (size_t)nh) ||
            ens_h5_get_attr_i64(f, "/model", "inputs", &inputs) ||
            ens_h5_get_attr_i64(f, "/model", "batchnorm", &bn) ||
            ens_h5_get_attr_i64(f, "/trunk", "layers", &tl);
  H5Fclose(f);
  if (bad || tl < 1 || tl > nh) {
    fprintf(stderr,
            "ens-trunk-forward: %s: expected /model/hidden, /model attrs inputs and batchnorm, "
            "and /trunk attr layers in [1, %lld]\n",
            path, nh);
    return 1;
  }
  memset(a, 0, sizeof(*a));
  a->in = (int)inputs;
  a->width = a->outputs = 1; /* no output layer is built */
  a->n_hidden = (int)nh;
  for (int i = 0; i < nh; i++)
    a->hidden[i] = hidden[i];
  a->batchnorm = bn != 0;
  *layers = (int)tl;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 5 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    fprintf(argc == 2 ? stdout : stderr,
            "usage: ens-trunk-forward trunk.h5 input.h5 /dataset out.h5\n"
            "  Runs the trunk of trunk.h5 (eval mode) on the rows of input.h5:/dataset\n"
            "  (n, d), read as float32 and used as they are (no standardization), and\n"
            "  writes out.h5:/features float32 (n, width).\n");
    return argc == 2 ? 0 : 1;
  }
  const char *tpath = argv[1], *ipath = argv[2], *ds = argv[3], *opath = argv[4];
  ens_h5_quiet();
  ens_arch a;
  int L = 0;
  if (read_arch(tpath, &a, &L))
    return 1;
  int ret = 1;
  float *x = NULL, *feat = NULL;
  ens_model m;
  memset(&m, 0, sizeof(m));
  if (ens_model_create(&m, &a, 0, L, 0, BATCH)) {
    fprintf(stderr, "ens-trunk-forward: %s: invalid architecture\n", tpath);
    return 1;
  }
  char err[1024];
  int r = ens_trunk_load_file(tpath, tpath, "trunk", &a, L, m.params, m.stats, err, sizeof(err));
  if (r) {
    fprintf(stderr, "ens-trunk-forward: %s (%s)\n", err, ens_strerror(r));
    goto cleanup;
  }
  hid_t f = H5Fopen(ipath, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    fprintf(stderr, "ens-trunk-forward: %s: cannot open as HDF5\n", ipath);
    goto cleanup;
  }
  int rank = 0;
  hsize_t dims[8];
  long long total = ens_h5_size(f, ds, &rank, dims);
  long long per_row = 1;
  for (int k = 1; k < rank; k++)
    per_row *= (long long)dims[k];
  if (total < 1 || rank < 2 || per_row != a.in) { /* (n, d) or images (n, [C,] H, W) */
    fprintf(stderr, "ens-trunk-forward: %s:%s: expected a dataset (n, %d)\n", ipath, ds, a.in);
    H5Fclose(f);
    goto cleanup;
  }
  int n = (int)dims[0];
  x = malloc((size_t)total * sizeof(float));
  feat = malloc((size_t)n * m.out * sizeof(float));
  if (!x || !feat || ens_h5_read(f, ds, H5T_NATIVE_FLOAT, x, (size_t)total)) {
    fprintf(stderr, "ens-trunk-forward: %s:%s: cannot read\n", ipath, ds);
    H5Fclose(f);
    goto cleanup;
  }
  H5Fclose(f);
  ens_model_features(&m, feat, x, n);
  hid_t of = H5Fcreate(opath, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t od[2] = {(hsize_t)n, (hsize_t)m.out};
  if (of < 0 || ens_h5_write(of, "/features", H5T_NATIVE_FLOAT, 2, od, feat, 0) ||
      H5Fclose(of) < 0) {
    fprintf(stderr, "ens-trunk-forward: %s: cannot write /features\n", opath);
    goto cleanup;
  }
  printf("%s: features (%d, %d) of a %d-block trunk\n", opath, n, m.out, L);
  ret = 0;
cleanup:
  ens_model_free(&m);
  free(x);
  free(feat);
  return ret;
}
