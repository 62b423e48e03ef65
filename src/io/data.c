/* Input data sets: reads the HDF5 layout of DESIGN.md (/train, /test, optional
 * /val) into float32/int32 splits with every check the trainer relies on
 * (types, shapes, labels, finiteness); validation split and standardization. */
#include "ens/data.h"

#include "ens/error.h"
#include "ens/rng.h"
#include "io/h5util.h"

#include <hdf5.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Everything the readers need to open datasets and word their messages. */
typedef struct loader {
  const char *path;
  hid_t file;
  char *err;
  size_t errlen;
  ens_data_arena *arena; /* arrays come from here when not NULL, else malloc */
} loader;

void *ens_data_arena_take(ens_data_arena *a, size_t bytes) {
  size_t r = (bytes + ENS_DATA_ALIGN - 1) / ENS_DATA_ALIGN * ENS_DATA_ALIGN;
  if (r < bytes || r > a->size - a->used || a->used > a->size)
    return NULL;
  void *p = a->base + a->used;
  a->used += r;
  return p;
}

/* The loader's allocations: from the arena, or malloc. */
static void *data_alloc(const loader *L, size_t bytes) {
  return L->arena ? ens_data_arena_take(L->arena, bytes ? bytes : 1) : malloc(bytes ? bytes : 1);
}

/* Frees what data_alloc gave (arena memory stays with the arena's owner). */
static void data_release(const loader *L, void *p) {
  if (!L->arena)
    free(p);
}

static const char *class_name(H5T_class_t c) {
  switch (c) {
  case H5T_INTEGER:
    return "integer";
  case H5T_FLOAT:
    return "float";
  case H5T_TIME:
    return "time";
  case H5T_STRING:
    return "string";
  case H5T_BITFIELD:
    return "bitfield";
  case H5T_OPAQUE:
    return "opaque";
  case H5T_COMPOUND:
    return "compound";
  case H5T_REFERENCE:
    return "reference";
  case H5T_ENUM:
    return "enum";
  case H5T_VLEN:
    return "variable-length";
  case H5T_ARRAY:
    return "array";
  default:
    return "unknown";
  }
}

/* 1 when every component of the absolute path `name` exists, else 0. Walks
 * the components because H5Lexists fails (rather than saying no) when an
 * intermediate group is missing. */
static int path_exists(hid_t file, const char *name) {
  char buf[256];
  size_t len = strlen(name);
  if (len >= sizeof buf)
    return 0;
  memcpy(buf, name, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (buf[i] != '/' && buf[i] != '\0')
      continue;
    char saved = buf[i];
    buf[i] = '\0';
    htri_t e = H5Lexists(file, buf, H5P_DEFAULT);
    buf[i] = saved;
    if (e <= 0)
      return 0;
  }
  return 1;
}

/* Reads dataset `name` (any integer or float type, rank >= 2) as float32,
 * flattened to (n, d), into s->x/n/d. */
static int read_x(const loader *L, const char *name, ens_split *s) {
  int rc = ENS_EFORMAT;
  hid_t ds = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
  float *x = NULL;
  hsize_t dims[H5S_MAX_RANK];

  ds = H5Dopen2(L->file, name, H5P_DEFAULT);
  if (ds < 0) {
    ens_errorf(L->err, L->errlen, "%s: %s is not a dataset", L->path, name);
    goto cleanup;
  }
  type = H5Dget_type(ds);
  space = H5Dget_space(ds);
  if (type < 0 || space < 0) {
    rc = ENS_EFORMAT;
    ens_errorf(L->err, L->errlen, "%s: cannot query dataset %s", L->path, name);
    goto cleanup;
  }
  H5T_class_t cls = H5Tget_class(type);
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    ens_errorf(L->err, L->errlen, "%s: dataset %s: expected an integer or float type, found %s",
            L->path, name, class_name(cls));
    goto cleanup;
  }
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0 || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
    rc = ENS_EFORMAT;
    ens_errorf(L->err, L->errlen, "%s: cannot query the shape of %s", L->path, name);
    goto cleanup;
  }
  if (rank < 2) {
    if (rank == 1)
      ens_errorf(L->err, L->errlen, "%s: dataset %s: expected shape (n, d), found (%llu)", L->path,
              name, (unsigned long long)dims[0]);
    else
      ens_errorf(L->err, L->errlen, "%s: dataset %s: expected shape (n, d), found a scalar",
              L->path, name);
    goto cleanup;
  }
  /* Products in 64 bits with explicit overflow checks: d is the product of
   * all but the first dimension. */
  unsigned long long n = dims[0], d = 1;
  for (int k = 1; k < rank; k++) {
    if (dims[k] != 0 && d > ULLONG_MAX / dims[k]) {
      ens_errorf(L->err, L->errlen, "%s: dataset %s: too many features per row", L->path, name);
      goto cleanup;
    }
    d *= dims[k];
  }
  if (n == 0 || d == 0) {
    ens_errorf(L->err, L->errlen, "%s: dataset %s is empty (%llu rows, %llu features)", L->path,
            name, n, d);
    goto cleanup;
  }
  if (n > INT_MAX || d > INT_MAX) {
    ens_errorf(L->err, L->errlen, "%s: dataset %s: %llu x %llu is too large (at most %d rows and %d "
            "features)", L->path, name, n, d, INT_MAX, INT_MAX);
    goto cleanup;
  }
  if ((size_t)n > SIZE_MAX / sizeof(float) / (size_t)d) {
    rc = ENS_ENOMEM;
    ens_errorf(L->err, L->errlen, "%s: dataset %s: %llu x %llu floats do not fit in memory", L->path,
            name, n, d);
    goto cleanup;
  }
  size_t total = (size_t)n * (size_t)d;
  if (!ens_h5_affordable((unsigned long long)total * sizeof(float))) {
    ens_errorf(L->err, L->errlen,
               "%s: dataset %s declares %llu x %llu values (%zu bytes as "
               "float32), more than the memory of this node",
               L->path, name, n, d, total * sizeof(float));
    goto cleanup;
  }
  x = data_alloc(L, total * sizeof(float));
  if (!x) {
    rc = ENS_ENOMEM;
    ens_errorf(L->err, L->errlen, "%s: cannot allocate %zu bytes for %s (%llu x %llu floats)%s",
            L->path, total * sizeof(float), name, n, d,
            L->arena ? " in the node-shared data block (did the file change while loading?)" : "");
    goto cleanup;
  }
  /* HDF5 converts any integer or float type to float32 during the read. */
  if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) {
    char why[160];
    ens_h5_read_failure(ds, why, sizeof why);
    ens_errorf(L->err, L->errlen, "%s: cannot read dataset %s as float32: %s", L->path, name, why);
    goto cleanup;
  }
  for (size_t i = 0; i < total; i++) {
    if (!isfinite(x[i])) {
      ens_errorf(L->err, L->errlen,
              "%s: dataset %s has a non-finite value (%g) at row %zu, column %zu (after "
              "conversion to float32)",
              L->path, name, (double)x[i], i / (size_t)d, i % (size_t)d);
      goto cleanup;
    }
  }
  s->x = x;
  s->n = (int)n;
  s->d = (int)d;
  /* Images keep their shape: (n, H, W) is one channel, (n, C, H, W) C. */
  memset(s->img, 0, sizeof(s->img));
  if (rank == 3 || rank == 4) {
    s->img[0] = rank == 4 ? (int)dims[1] : 1;
    s->img[1] = (int)dims[rank - 2];
    s->img[2] = (int)dims[rank - 1];
  }
  x = NULL;
  rc = 0;

cleanup:
  data_release(L, x);
  if (space >= 0)
    H5Sclose(space);
  if (type >= 0)
    H5Tclose(type);
  if (ds >= 0)
    H5Dclose(ds);
  return rc;
}

/* Reads floating-point regression targets `name` of shape (n) or (n, T)
 * into s->t (float32, finite) and T into *targets. ds/type/space are open. */
static int read_targets(const loader *L, const char *name, const char *xname, ens_split *s,
                        hid_t ds, int rank, const hsize_t *dims, int *targets) {
  size_t n = (size_t)s->n;
  if (rank != 1 && rank != 2) {
    ens_errorf(L->err, L->errlen, "%s: dataset %s: expected shape (n) or (n, T), found rank %d",
               L->path, name, rank);
    return ENS_EFORMAT;
  }
  if (dims[0] != (hsize_t)n) {
    ens_errorf(L->err, L->errlen, "%s: %s has %zu rows but %s has %llu", L->path, xname, n, name,
               (unsigned long long)dims[0]);
    return ENS_EFORMAT;
  }
  hsize_t T = rank == 2 ? dims[1] : 1;
  if (T < 1 || T > 65536) {
    ens_errorf(L->err, L->errlen, "%s: dataset %s: %llu targets per row (expected 1 to 65536)",
               L->path, name, (unsigned long long)T);
    return ENS_EFORMAT;
  }
  if (!ens_h5_affordable((unsigned long long)n * T * sizeof(float))) {
    ens_errorf(L->err, L->errlen,
               "%s: dataset %s declares %zu x %llu targets, more than the "
               "memory of this node",
               L->path, name, n, (unsigned long long)T);
    return ENS_EFORMAT;
  }
  float *t = data_alloc(L, n * (size_t)T * sizeof(float));
  if (!t) {
    ens_errorf(L->err, L->errlen, "%s: cannot allocate memory for %s", L->path, name);
    return ENS_ENOMEM;
  }
  if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t) < 0) {
    char why[160];
    data_release(L, t);
    ens_h5_read_failure(ds, why, sizeof why);
    ens_errorf(L->err, L->errlen, "%s: cannot read dataset %s as float32: %s", L->path, name, why);
    return ENS_EFORMAT;
  }
  for (size_t i = 0; i < n * (size_t)T; i++) {
    if (!isfinite(t[i])) {
      ens_errorf(L->err, L->errlen,
                 "%s: dataset %s has a non-finite target (%g) at row %zu, target %zu", L->path,
                 name, (double)t[i], i / (size_t)T, i % (size_t)T);
      data_release(L, t);
      return ENS_EFORMAT;
    }
  }
  s->t = t;
  *targets = (int)T;
  return 0;
}

/* Reads labels `name` (any integer type, rank 1, n rows to match xname) into
 * s->y as int32 and their maximum into *maxlab; or, for a floating-point
 * type, regression targets into s->t with *targets = T (else 0). */
static int read_y(const loader *L, const char *name, const char *xname, ens_split *s,
                  int32_t *maxlab, int *targets) {
  int rc = ENS_EFORMAT;
  hid_t ds = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
  int64_t *buf = NULL;
  int32_t *y = NULL;
  hsize_t dims[H5S_MAX_RANK];
  size_t n = (size_t)s->n;
  *targets = 0;

  ds = H5Dopen2(L->file, name, H5P_DEFAULT);
  if (ds < 0) {
    ens_errorf(L->err, L->errlen, "%s: %s is not a dataset", L->path, name);
    goto cleanup;
  }
  type = H5Dget_type(ds);
  space = H5Dget_space(ds);
  if (type < 0 || space < 0) {
    rc = ENS_EFORMAT;
    ens_errorf(L->err, L->errlen, "%s: cannot query dataset %s", L->path, name);
    goto cleanup;
  }
  H5T_class_t cls = H5Tget_class(type);
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    ens_errorf(L->err, L->errlen,
               "%s: dataset %s: expected an integer type (class labels) or a float type "
               "(regression targets), found %s",
               L->path, name, class_name(cls));
    goto cleanup;
  }
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0 || rank > H5S_MAX_RANK || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
    rc = ENS_EFORMAT;
    ens_errorf(L->err, L->errlen, "%s: cannot query the shape of %s", L->path, name);
    goto cleanup;
  }
  if (cls == H5T_FLOAT) {
    rc = read_targets(L, name, xname, s, ds, rank, dims, targets);
    goto cleanup;
  }
  if (rank != 1) {
    ens_errorf(L->err, L->errlen, "%s: dataset %s: expected shape (n), found rank %d", L->path,
            name, rank);
    goto cleanup;
  }
  if (dims[0] != (hsize_t)n) {
    ens_errorf(L->err, L->errlen, "%s: %s has %zu rows but %s has %llu", L->path, xname, n, name,
            (unsigned long long)dims[0]);
    goto cleanup;
  }
  buf = malloc(n * sizeof *buf);
  y = data_alloc(L, n * sizeof *y);
  if (!buf || !y) {
    rc = ENS_ENOMEM;
    ens_errorf(L->err, L->errlen, "%s: cannot allocate memory for %s (%zu labels)", L->path, name,
            n);
    goto cleanup;
  }
  /* Read wide, then range-check: a narrowing read would clamp silently. */
  if (H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    char why[160];
    ens_h5_read_failure(ds, why, sizeof why);
    ens_errorf(L->err, L->errlen, "%s: cannot read dataset %s as integers: %s", L->path, name, why);
    goto cleanup;
  }
  int32_t mx = 0;
  for (size_t i = 0; i < n; i++) {
    if (buf[i] < 0 || buf[i] > INT32_MAX) {
      ens_errorf(L->err, L->errlen, "%s: %s contains %s label %lld at row %zu", L->path, name,
              buf[i] < 0 ? "negative" : "too large a", (long long)buf[i], i);
      goto cleanup;
    }
    y[i] = (int32_t)buf[i];
    if (y[i] > mx)
      mx = y[i];
  }
  s->y = y;
  y = NULL;
  *maxlab = mx;
  rc = 0;

cleanup:
  free(buf);
  data_release(L, y);
  if (space >= 0)
    H5Sclose(space);
  if (type >= 0)
    H5Tclose(type);
  if (ds >= 0)
    H5Dclose(ds);
  return rc;
}

/* Reads the optional root attribute `classes` into *classes (0 when absent). */
static int read_classes(const loader *L, int *classes) {
  int rc = ENS_EFORMAT;
  hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
  *classes = 0;
  htri_t has = H5Aexists(L->file, "classes");
  if (has < 0) {
    ens_errorf(L->err, L->errlen, "%s: cannot query the root attribute classes", L->path);
    return ENS_EFORMAT;
  }
  if (!has)
    return 0;
  attr = H5Aopen(L->file, "classes", H5P_DEFAULT);
  if (attr < 0 || (type = H5Aget_type(attr)) < 0 || (space = H5Aget_space(attr)) < 0) {
    rc = ENS_EFORMAT;
    ens_errorf(L->err, L->errlen, "%s: cannot open the root attribute classes", L->path);
    goto cleanup;
  }
  H5T_class_t cls = H5Tget_class(type);
  if (cls != H5T_INTEGER) {
    ens_errorf(L->err, L->errlen, "%s: root attribute classes: expected an integer, found %s",
            L->path, class_name(cls));
    goto cleanup;
  }
  hssize_t npoints = H5Sget_simple_extent_npoints(space);
  if (npoints != 1) {
    ens_errorf(L->err, L->errlen, "%s: root attribute classes: expected one integer, found %lld "
            "values", L->path, (long long)npoints);
    goto cleanup;
  }
  long long v = 0;
  if (H5Aread(attr, H5T_NATIVE_LLONG, &v) < 0) {
    rc = ENS_EFORMAT;
    ens_errorf(L->err, L->errlen, "%s: cannot read the root attribute classes", L->path);
    goto cleanup;
  }
  if (v < 2 || v > INT32_MAX) {
    ens_errorf(L->err, L->errlen, "%s: root attribute classes = %lld: expected an integer in [2, %d]",
            L->path, v, INT32_MAX);
    goto cleanup;
  }
  *classes = (int)v;
  rc = 0;

cleanup:
  if (space >= 0)
    H5Sclose(space);
  if (type >= 0)
    H5Tclose(type);
  if (attr >= 0)
    H5Aclose(attr);
  return rc;
}

/* Loads group `grp` ("train", ...) into s; *maxlab gets its largest label. */
static int load_split(const loader *L, const char *grp, ens_split *s, int32_t *maxlab,
                      int *targets) {
  char xname[64], yname[64];
  snprintf(xname, sizeof xname, "/%s/x", grp);
  snprintf(yname, sizeof yname, "/%s/y", grp);
  if (!path_exists(L->file, xname)) {
    ens_errorf(L->err, L->errlen, "%s: missing dataset %s", L->path, xname);
    return ENS_EFORMAT;
  }
  if (!path_exists(L->file, yname)) {
    ens_errorf(L->err, L->errlen, "%s: missing dataset %s", L->path, yname);
    return ENS_EFORMAT;
  }
  int rc = read_x(L, xname, s);
  if (rc == 0)
    rc = read_y(L, yname, xname, s, maxlab, targets);
  return rc;
}

int ens_data_load(ens_data *out, const char *path, char *err, size_t errlen) {
  return ens_data_load_in(out, path, NULL, err, errlen);
}

/* 1 when the first bytes of path are text with a field delimiter (a CSV or
 * TSV table given where an HDF5 file is expected). */
static int looks_like_table(const char *path) {
  unsigned char buf[512];
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return 0;
  size_t n = fread(buf, 1, sizeof(buf), fp);
  fclose(fp);
  int delim = 0;
  for (size_t i = 0; i < n; i++) {
    if (buf[i] == ',' || buf[i] == ';' || buf[i] == '\t')
      delim = 1;
    else if (buf[i] < 0x20 && buf[i] != '\n' && buf[i] != '\r')
      return 0;
  }
  return n > 0 && delim;
}

int ens_data_load_in(ens_data *out, const char *path, ens_data_arena *arena, char *err,
                     size_t errlen) {
  int rc = 0;
  ens_data d;
  loader L = {path, H5I_INVALID_HID, err, errlen, arena};
  int32_t max_train = 0, max_test = 0, max_val = 0;
  int classes = 0;
  H5E_auto2_t old_func = NULL;
  void *old_data = NULL;

  memset(&d, 0, sizeof d);
  memset(out, 0, sizeof *out);
  d.borrowed = arena != NULL;
  if (err && errlen)
    err[0] = '\0';
  /* Silence HDF5's own error stack while probing; messages are ours. */
  H5Eget_auto2(H5E_DEFAULT, &old_func, &old_data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

  FILE *fp = fopen(path, "rb");
  if (!fp) {
    rc = ENS_EIO;
    ens_errorf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    goto cleanup;
  }
  fclose(fp);
  htri_t is = H5Fis_hdf5(path);
  if (is == 0) {
    rc = ENS_EFORMAT;
    if (looks_like_table(path))
      ens_errorf(err, errlen,
                 "%s: not an HDF5 file; it looks like a text table: convert it with `ens import "
                 "csv %s --target COLUMN -o data.h5` and train on data.h5",
                 path, path);
    else
      ens_errorf(err, errlen, "%s: not an HDF5 file", path);
    goto cleanup;
  }
  if (is > 0)
    L.file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (L.file < 0) {
    rc = ENS_EIO;
    ens_errorf(err, errlen, "%s: not an HDF5 file or cannot be opened", path);
    goto cleanup;
  }

  int tt[3] = {0, 0, 0}; /* targets per split (0: integer labels) */
  if ((rc = load_split(&L, "train", &d.train, &max_train, &tt[0])) != 0)
    goto cleanup;
  /* /test is optional (the job then scores held-out validation rows). */
  int has_tx = path_exists(L.file, "/test/x"), has_ty = path_exists(L.file, "/test/y");
  if (has_tx != has_ty) {
    rc = ENS_EFORMAT;
    ens_errorf(err, errlen, "%s: %s is present but %s is missing (give both or neither)", path,
               has_tx ? "/test/x" : "/test/y", has_tx ? "/test/y" : "/test/x");
    goto cleanup;
  }
  if (has_tx && (rc = load_split(&L, "test", &d.test, &max_test, &tt[1])) != 0)
    goto cleanup;
  if (!has_tx)
    tt[1] = tt[0];
  int has_vx = path_exists(L.file, "/val/x"), has_vy = path_exists(L.file, "/val/y");
  if (has_vx != has_vy) {
    rc = ENS_EFORMAT;
    ens_errorf(err, errlen, "%s: %s is present but %s is missing (give both or neither)", path,
            has_vx ? "/val/x" : "/val/y", has_vx ? "/val/y" : "/val/x");
    goto cleanup;
  }
  if (has_vx && (rc = load_split(&L, "val", &d.val, &max_val, &tt[2])) != 0)
    goto cleanup;
  if (!has_vx)
    tt[2] = tt[0];
  if (tt[1] != tt[0] || tt[2] != tt[0]) {
    const char *bad = tt[1] != tt[0] ? "/test/y" : "/val/y";
    int tb = tt[1] != tt[0] ? tt[1] : tt[2];
    rc = ENS_EFORMAT;
    if (!tt[0] || !tb)
      ens_errorf(err, errlen,
                 "%s: /train/y holds %s but %s holds %s (all splits must be labels or all "
                 "targets)",
                 path, tt[0] ? "float targets" : "integer labels", bad,
                 tb ? "float targets" : "integer labels");
    else
      ens_errorf(err, errlen, "%s: /train/y has %d targets per row but %s has %d", path, tt[0],
                 bad, tb);
    goto cleanup;
  }

  const ens_split *others[2] = {&d.test, &d.val};
  const char *onames[2] = {"/test/x", "/val/x"};
  for (int i = 0; i < 2; i++) {
    if (others[i]->n > 0 && others[i]->d != d.train.d) {
      rc = ENS_EFORMAT;
      ens_errorf(err, errlen, "%s: %s has %d features per row but /train/x has %d", path, onames[i],
              others[i]->d, d.train.d);
      goto cleanup;
    }
  }

  if (tt[0] > 0) { /* regression: no classes */
    d.regress = 1;
    d.targets = tt[0];
    goto cleanup;
  }
  if ((rc = read_classes(&L, &classes)) != 0)
    goto cleanup;
  if (classes > 0) {
    const int32_t maxes[3] = {max_train, max_test, max_val};
    const char *ynames[3] = {"/train/y", "/test/y", "/val/y"};
    for (int i = 0; i < 3; i++) {
      if (maxes[i] >= classes) {
        rc = ENS_EFORMAT;
        ens_errorf(err, errlen, "%s: %s contains label %d but classes = %d", path, ynames[i],
                (int)maxes[i], classes);
        goto cleanup;
      }
    }
  } else {
    int32_t mx = max_train > max_test ? max_train : max_test;
    if (max_val > mx)
      mx = max_val;
    if (mx == INT32_MAX || mx + 1 < 2) {
      rc = ENS_EFORMAT;
      ens_errorf(err, errlen,
              "%s: labels span %d class(es) (max label %d): at least 2 are needed (or set the "
              "root attribute classes)",
              path, (int)(mx == INT32_MAX ? mx : mx + 1), (int)mx);
      goto cleanup;
    }
    classes = (int)mx + 1;
  }
  d.classes = classes;

cleanup:
  if (L.file >= 0)
    H5Fclose(L.file);
  H5Eset_auto2(H5E_DEFAULT, old_func, old_data);
  if (rc != 0)
    ens_data_free(&d);
  else
    *out = d;
  return rc;
}

void ens_split_free(ens_split *s) {
  if (!s)
    return;
  free(s->x);
  free(s->y);
  free(s->t);
  memset(s, 0, sizeof *s);
}

void ens_data_free(ens_data *d) {
  if (!d)
    return;
  if (d->borrowed) { /* the arena's owner frees the arrays */
    memset(&d->train, 0, sizeof d->train);
    memset(&d->test, 0, sizeof d->test);
    memset(&d->val, 0, sizeof d->val);
  } else {
    ens_split_free(&d->train);
    ens_split_free(&d->test);
    ens_split_free(&d->val);
  }
  d->classes = 0;
  d->targets = 0;
  d->regress = 0;
  d->borrowed = 0;
}

/* Elements of dataset `name` (0 when it is missing or unreadable). */
/* The values of dataset `name` the loader would keep, or 0 when it would
 * refuse the dataset before allocating for it: x of rank 2 or more; y (labels or
 * targets) of rank 1 or 2 with as many rows as the split's x (`xrows`, or
 * -1 when x is absent or refused). So a declared size that is not the
 * loader's shape, or more than the node's memory, never sizes the node's
 * data block. */
static size_t dataset_values(hid_t file, const char *name, int is_x, long long xrows,
                             long long *rows, int *is_float) {
  *rows = -1;
  if (!path_exists(file, name))
    return 0;
  hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
  if (ds < 0)
    return 0;
  hid_t space = H5Dget_space(ds), type = H5Dget_type(ds);
  int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  hsize_t dims[H5S_MAX_RANK];
  hssize_t np = -1;
  if (rank >= 1 && H5Sget_simple_extent_dims(space, dims, NULL) == rank) {
    int ok = is_x ? rank >= 2 : (rank <= 2 && xrows >= 0 && (long long)dims[0] == xrows);
    hssize_t pts = ok ? H5Sget_simple_extent_npoints(space) : -1;
    /* The loader refuses what does not fit in the node's memory. */
    if (pts > 0 && ens_h5_affordable((unsigned long long)pts * 4)) {
      np = pts;
      *rows = (long long)dims[0];
    }
  }
  if (is_float && type >= 0)
    *is_float = H5Tget_class(type) == H5T_FLOAT;
  if (type >= 0)
    H5Tclose(type);
  if (space >= 0)
    H5Sclose(space);
  H5Dclose(ds);
  return np > 0 ? (size_t)np : 0;
}

void ens_data_probe(const char *path, size_t *bytes, size_t *train_y_values, int *y_float) {
  *bytes = 0;
  *train_y_values = 0;
  *y_float = 0;
  H5E_auto2_t old_func = NULL;
  void *old_data = NULL;
  H5Eget_auto2(H5E_DEFAULT, &old_func, &old_data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  FILE *fp = fopen(path, "rb");
  hid_t f = H5I_INVALID_HID;
  if (fp) {
    fclose(fp);
    if (H5Fis_hdf5(path) > 0)
      f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  }
  if (f >= 0) {
    /* Every array the loader keeps holds 4-byte values (float32 x and
     * targets, int32 labels), one per element of its dataset. */
    static const char *names[6] = {"/train/x", "/train/y", "/test/x", "/test/y", "/val/x",
                                   "/val/y"};
    size_t total = 0;
    long long xrows = -1;
    for (int i = 0; i < 6; i++) {
      long long rows = -1;
      size_t v = dataset_values(f, names[i], i % 2 == 0, xrows, &rows, i == 1 ? y_float : NULL);
      if (i % 2 == 0)
        xrows = rows;
      if (v > (SIZE_MAX - total) / 4 - ENS_DATA_ALIGN) {
        total = SIZE_MAX; /* let the load report that it does not fit */
        break;
      }
      total += (v * 4 + ENS_DATA_ALIGN - 1) / ENS_DATA_ALIGN * ENS_DATA_ALIGN;
      if (i == 1)
        *train_y_values = v;
    }
    *bytes = total;
    H5Fclose(f);
  }
  H5Eset_auto2(H5E_DEFAULT, old_func, old_data);
}

int ens_data_split_val(ens_data *d, double fraction, uint64_t seed) {
  if (!d || isnan(fraction) || fraction >= 1.0)
    return ENS_EINVAL;
  if (fraction <= 0.0 || d->val.n > 0)
    return 0;
  int n = d->train.n, dim = d->train.d;
  long nval = lround(fraction * (double)n);
  if (nval == 0)
    return 0;
  if (nval >= n)
    return ENS_EINVAL; /* train would be empty */

  int rc = ENS_ENOMEM;
  const int T = d->train.t ? d->targets : 0;
  size_t rowbytes = (size_t)dim * sizeof(float), tbytes = (size_t)T * sizeof(float);
  int32_t *perm = malloc((size_t)n * sizeof *perm);
  unsigned char *to_val = calloc((size_t)n, 1);
  float *vx = malloc((size_t)nval * rowbytes);
  int32_t *vy = d->train.y ? malloc((size_t)nval * sizeof *vy) : NULL;
  float *vt = T ? malloc((size_t)nval * tbytes) : NULL;
  if (!perm || !to_val || !vx || (d->train.y && !vy) || (T && !vt))
    goto cleanup;

  ens_rng r;
  ens_rng_init(&r, seed, 0xFFFFFFFFu, ENS_STREAM_SPLIT, 0);
  ens_rng_permutation(&r, perm, n);
  /* val gets the permutation tail in permutation order; train keeps the
   * remaining rows in their original order, compacted in place (rows only
   * move towards the front, so memmove of one row at a time is safe). */
  size_t first = (size_t)(n - nval);
  for (size_t k = 0; k < (size_t)nval; k++) {
    size_t row = (size_t)perm[first + k];
    to_val[row] = 1;
    memcpy(vx + k * (size_t)dim, d->train.x + row * (size_t)dim, rowbytes);
    if (vy)
      vy[k] = d->train.y[row];
    if (vt)
      memcpy(vt + k * (size_t)T, d->train.t + row * (size_t)T, tbytes);
  }
  size_t w = 0;
  for (size_t i = 0; i < (size_t)n; i++) {
    if (to_val[i])
      continue;
    if (w != i) {
      memmove(d->train.x + w * (size_t)dim, d->train.x + i * (size_t)dim, rowbytes);
      if (vy)
        d->train.y[w] = d->train.y[i];
      if (vt)
        memmove(d->train.t + w * (size_t)T, d->train.t + i * (size_t)T, tbytes);
    }
    w++;
  }
  if (d->borrowed) {
    /* Caller memory cannot be resized: the validation rows take the train
     * arrays' tail, freed by the compaction. */
    float *tx = d->train.x + w * (size_t)dim;
    memcpy(tx, vx, (size_t)nval * rowbytes);
    free(vx);
    vx = tx;
    if (vy) {
      int32_t *ty = d->train.y + w;
      memcpy(ty, vy, (size_t)nval * sizeof *vy);
      free(vy);
      vy = ty;
    }
    if (vt) {
      float *tt = d->train.t + w * (size_t)T;
      memcpy(tt, vt, (size_t)nval * tbytes);
      free(vt);
      vt = tt;
    }
    goto done;
  }
  /* Shrinking can only fail by keeping the larger block, which is harmless. */
  float *nx = realloc(d->train.x, w * rowbytes);
  if (nx)
    d->train.x = nx;
  if (vy) {
    int32_t *ny = realloc(d->train.y, w * sizeof *ny);
    if (ny)
      d->train.y = ny;
  }
  if (vt) {
    float *nt = realloc(d->train.t, w * tbytes);
    if (nt)
      d->train.t = nt;
  }
done:
  d->train.n = (int)w;
  d->val.x = vx;
  d->val.y = vy;
  d->val.t = vt;
  d->val.n = (int)nval;
  d->val.d = dim;
  vx = NULL;
  vy = NULL;
  vt = NULL;
  rc = 0;

cleanup:
  free(perm);
  free(to_val);
  free(vx);
  free(vy);
  free(vt);
  return rc;
}

int ens_data_labels_to_targets(ens_data *d) {
  ens_split *s[3] = {&d->train, &d->test, &d->val};
  _Static_assert(sizeof(int32_t) == sizeof(float), "labels become targets in place");
  for (int i = 0; i < 3; i++) {
    if (!s[i]->y || s[i]->t)
      continue;
    /* In place (the array may be caller memory that cannot be
     * reallocated): each label is read before its slot is overwritten, and
     * memcpy keeps the type punning defined. */
    unsigned char *mem = (unsigned char *)s[i]->y;
    for (int r = 0; r < s[i]->n; r++) {
      int32_t lab;
      memcpy(&lab, mem + (size_t)r * 4, 4);
      float v = (float)lab;
      memcpy(mem + (size_t)r * 4, &v, 4);
    }
    s[i]->y = NULL;
    s[i]->t = (float *)(void *)mem;
  }
  d->regress = 1;
  d->targets = 1;
  d->classes = 0;
  return 0;
}

/* Mean and population std of column j in double, two strided passes: the
 * allocation-free fallback of ens_standardize_fit. */
static void fit_column(float *mean, float *std, const ens_split *s, size_t j) {
  size_t n = (size_t)s->n, dim = (size_t)s->d;
  double m = 0.0, q = 0.0;
  for (size_t i = 0; i < n; i++)
    m += s->x[i * dim + j];
  m /= (double)n;
  for (size_t i = 0; i < n; i++) {
    double c = (double)s->x[i * dim + j] - m;
    q += c * c;
  }
  double sd = sqrt(q / (double)n);
  mean[j] = (float)m;
  std[j] = sd < 1e-6 ? 1.0f : (float)sd;
}

void ens_standardize_fit(float *mean, float *std, const ens_split *s) {
  size_t n = (size_t)(s->n > 0 ? s->n : 0), dim = (size_t)(s->d > 0 ? s->d : 0);
  if (n == 0) {
    /* No data: the identity transform rather than invented statistics. */
    for (size_t j = 0; j < dim; j++) {
      mean[j] = 0.0f;
      std[j] = 1.0f;
    }
    return;
  }
  double *sum = calloc(dim ? dim : 1, sizeof *sum);
  double *sq = calloc(dim ? dim : 1, sizeof *sq);
  if (!sum || !sq) {
    /* Same numbers, computed column by column without scratch memory. */
    for (size_t j = 0; j < dim; j++)
      fit_column(mean, std, s, j);
    free(sum);
    free(sq);
    return;
  }
  /* Two passes in double over the row-major matrix, rows outer so each pass
   * streams through memory once. */
  for (size_t i = 0; i < n; i++) {
    const float *row = s->x + i * dim;
    for (size_t j = 0; j < dim; j++)
      sum[j] += row[j];
  }
  for (size_t j = 0; j < dim; j++)
    sum[j] /= (double)n;
  for (size_t i = 0; i < n; i++) {
    const float *row = s->x + i * dim;
    for (size_t j = 0; j < dim; j++) {
      double c = (double)row[j] - sum[j];
      sq[j] += c * c;
    }
  }
  for (size_t j = 0; j < dim; j++) {
    double sd = sqrt(sq[j] / (double)n);
    mean[j] = (float)sum[j];
    std[j] = sd < 1e-6 ? 1.0f : (float)sd;
  }
  free(sum);
  free(sq);
}

void ens_standardize_apply(ens_split *s, const float *mean, const float *std) {
  size_t n = (size_t)(s->n > 0 ? s->n : 0), dim = (size_t)(s->d > 0 ? s->d : 0);
  for (size_t i = 0; i < n; i++) {
    float *row = s->x + i * dim;
    for (size_t j = 0; j < dim; j++)
      row[j] = (row[j] - mean[j]) / std[j];
  }
}

void ens_standardize_fit_grouped(float *mean, float *std, const ens_split *s, int group) {
  size_t n = (size_t)(s->n > 0 ? s->n : 0), dim = (size_t)(s->d > 0 ? s->d : 0);
  size_t g = group > 0 ? (size_t)group : 1;
  if (n == 0 || dim % g != 0) {
    for (size_t j = 0; j < dim; j++) {
      mean[j] = 0.0f;
      std[j] = 1.0f;
    }
    return;
  }
  /* Per group, two passes in double over every row's slice of the group. */
  const double cnt = (double)n * (double)g;
  for (size_t j0 = 0; j0 < dim; j0 += g) {
    double sum = 0.0, sq = 0.0;
    for (size_t i = 0; i < n; i++) {
      const float *v = s->x + i * dim + j0;
      for (size_t k = 0; k < g; k++)
        sum += v[k];
    }
    const double m = sum / cnt;
    for (size_t i = 0; i < n; i++) {
      const float *v = s->x + i * dim + j0;
      for (size_t k = 0; k < g; k++) {
        double c = (double)v[k] - m;
        sq += c * c;
      }
    }
    double sd = sqrt(sq / cnt);
    for (size_t k = 0; k < g; k++) {
      mean[j0 + k] = (float)m;
      std[j0 + k] = sd < 1e-6 ? 1.0f : (float)sd;
    }
  }
}
