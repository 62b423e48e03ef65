/* HDF5 helpers: datasets with parent groups, attributes, checked reads. */
#include "io/h5util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ens/error.h"

/* The system error of the last failed HDF5 call. HDF5's error stack is
 * process-wide state already; this mirrors one number of it, written only
 * by the handler below (ens is single-threaded around HDF5). */
static int g_h5_errno = 0;

static herr_t find_errno(unsigned n, const H5E_error2_t *e, void *data) {
  (void)n;
  int *found = data;
  const char *s = e->desc ? strstr(e->desc, "errno = ") : NULL;
  if (s && !*found) {
    int v = atoi(s + 8);
    if (v > 0)
      *found = v;
  }
  return 0;
}

/* Automatic error handler: records the errno of the innermost system
 * error of the failing call, prints nothing. */
static herr_t capture_errno(hid_t stack, void *data) {
  (void)data;
  int found = 0;
  H5Ewalk2(stack, H5E_WALK_UPWARD, find_errno, &found);
  if (found && !g_h5_errno) /* the first failure since the last take explains the rest */
    g_h5_errno = found;
  return 0;
}

void ens_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, capture_errno, NULL); }

int ens_h5_take_errno(void) {
  int e = g_h5_errno;
  g_h5_errno = 0;
  return e;
}

static hid_t link_props(void) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  if (lcpl >= 0)
    H5Pset_create_intermediate_group(lcpl, 1);
  return lcpl;
}

static int create_dataset(hid_t loc, const char *path, hid_t type, int rank, const hsize_t *dims,
                          int compress, hid_t *out) {
  int ret = ENS_EHDF5;
  hid_t space = -1, lcpl = -1, dcpl = H5P_DEFAULT, ds = -1;
  hsize_t total = 1;
  for (int i = 0; i < rank; i++)
    total *= dims[i];
  if ((space = H5Screate_simple(rank, dims, NULL)) < 0 || (lcpl = link_props()) < 0)
    goto cleanup;
  if (compress && total >= 65536 && rank >= 1 && dims[0] > 0) {
    /* Chunks of whole rows, about 1 MiB, deflate level 4. */
    hsize_t chunk[8];
    hsize_t rowlen = total / dims[0];
    chunk[0] = rowlen ? (262144 / rowlen) : 1;
    if (chunk[0] < 1)
      chunk[0] = 1;
    if (chunk[0] > dims[0])
      chunk[0] = dims[0];
    for (int i = 1; i < rank; i++)
      chunk[i] = dims[i];
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0 || H5Pset_chunk(dcpl, rank, chunk) < 0 || H5Pset_deflate(dcpl, 4) < 0)
      goto cleanup;
  }
  ds = H5Dcreate2(loc, path, type, space, lcpl, dcpl, H5P_DEFAULT);
  if (ds < 0)
    goto cleanup;
  *out = ds;
  ds = -1;
  ret = 0;
cleanup:
  if (ds >= 0)
    H5Dclose(ds);
  if (dcpl != H5P_DEFAULT && dcpl >= 0)
    H5Pclose(dcpl);
  if (lcpl >= 0)
    H5Pclose(lcpl);
  if (space >= 0)
    H5Sclose(space);
  return ret;
}

int ens_h5_write(hid_t loc, const char *path, hid_t type, int rank, const hsize_t *dims,
                 const void *data, int compress) {
  hid_t ds;
  int ret = create_dataset(loc, path, type, rank, dims, compress, &ds);
  if (ret)
    return ret;
  if (data && H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    ret = ENS_EHDF5;
  H5Dclose(ds);
  return ret;
}

int ens_h5_create(hid_t loc, const char *path, hid_t type, int rank, const hsize_t *dims) {
  return ens_h5_write(loc, path, type, rank, dims, NULL, 0);
}

int ens_h5_write_strings(hid_t loc, const char *path, const char *const *s, size_t n) {
  int ret = ENS_EHDF5;
  hsize_t dims[1] = {(hsize_t)n};
  hid_t t = H5Tcopy(H5T_C_S1), space = -1, lcpl = -1, ds = -1;
  if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0 ||
      (space = H5Screate_simple(1, dims, NULL)) < 0 || (lcpl = link_props()) < 0)
    goto cleanup;
  ds = H5Dcreate2(loc, path, t, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  if (ds < 0 || (n > 0 && H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) < 0))
    goto cleanup;
  ret = 0;
cleanup:
  if (ds >= 0)
    H5Dclose(ds);
  if (lcpl >= 0)
    H5Pclose(lcpl);
  if (space >= 0)
    H5Sclose(space);
  if (t >= 0)
    H5Tclose(t);
  return ret;
}

/* Selects rows [row, row + nrows) of ds; returns file and memory spaces. */
static int select_rows(hid_t ds, hsize_t row, hsize_t nrows, hid_t *fspace, hid_t *mspace) {
  hsize_t dims[8], start[8] = {0}, count[8];
  *fspace = H5Dget_space(ds);
  int rank = *fspace >= 0 ? H5Sget_simple_extent_ndims(*fspace) : -1;
  if (rank < 1 || rank > 8)
    return ENS_EFORMAT;
  H5Sget_simple_extent_dims(*fspace, dims, NULL);
  if (row + nrows > dims[0])
    return ENS_EFORMAT;
  for (int i = 0; i < rank; i++)
    count[i] = dims[i];
  start[0] = row;
  count[0] = nrows;
  if (H5Sselect_hyperslab(*fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0)
    return ENS_EHDF5;
  *mspace = H5Screate_simple(rank, count, NULL);
  return *mspace < 0 ? ENS_EHDF5 : 0;
}

static int rows_io(hid_t loc, const char *path, hid_t type, hsize_t row, hsize_t nrows,
                   void *buf, int write) {
  hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT), fs = -1, ms = -1;
  if (ds < 0)
    return ENS_EFORMAT;
  int ret = select_rows(ds, row, nrows, &fs, &ms);
  if (!ret) {
    herr_t e = write ? H5Dwrite(ds, type, ms, fs, H5P_DEFAULT, buf)
                     : H5Dread(ds, type, ms, fs, H5P_DEFAULT, buf);
    ret = e < 0 ? ENS_EHDF5 : 0;
  }
  if (ms >= 0)
    H5Sclose(ms);
  if (fs >= 0)
    H5Sclose(fs);
  H5Dclose(ds);
  return ret;
}

int ens_h5_write_rows(hid_t loc, const char *path, hid_t type, hsize_t row, hsize_t nrows,
                      const void *data) {
  return rows_io(loc, path, type, row, nrows, (void *)data, 1);
}

int ens_h5_read_rows(hid_t loc, const char *path, hid_t type, hsize_t row, hsize_t nrows,
                     size_t rowlen, void *out) {
  (void)rowlen;
  return rows_io(loc, path, type, row, nrows, out, 0);
}

static int attr_write(hid_t loc, const char *obj, const char *name, hid_t type, const void *v) {
  hid_t space = H5Screate(H5S_SCALAR);
  if (space < 0)
    return ENS_EHDF5;
  if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) > 0)
    H5Adelete_by_name(loc, obj, name, H5P_DEFAULT);
  hid_t a = H5Acreate_by_name(loc, obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int ret = ENS_EHDF5;
  if (a >= 0 && H5Awrite(a, type, v) >= 0)
    ret = 0;
  if (a >= 0)
    H5Aclose(a);
  H5Sclose(space);
  return ret;
}

int ens_h5_attr_str(hid_t loc, const char *obj, const char *name, const char *value) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t < 0)
    return ENS_EHDF5;
  H5Tset_size(t, strlen(value) + 1);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  H5Tset_cset(t, H5T_CSET_UTF8);
  int ret = attr_write(loc, obj, name, t, value);
  H5Tclose(t);
  return ret;
}

int ens_h5_attr_i64(hid_t loc, const char *obj, const char *name, int64_t value) {
  return attr_write(loc, obj, name, H5T_NATIVE_INT64, &value);
}

int ens_h5_attr_f64(hid_t loc, const char *obj, const char *name, double value) {
  return attr_write(loc, obj, name, H5T_NATIVE_DOUBLE, &value);
}

static int attr_read(hid_t loc, const char *obj, const char *name, hid_t type, void *v) {
  if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) <= 0)
    return ENS_ENOTFOUND;
  hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0)
    return ENS_EHDF5;
  hid_t sp = H5Aget_space(a);
  int ret = (sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1) ? 0 : ENS_EFORMAT;
  if (!ret && H5Aread(a, type, v) < 0)
    ret = ENS_EFORMAT;
  if (sp >= 0)
    H5Sclose(sp);
  H5Aclose(a);
  return ret;
}

int ens_h5_get_attr_i64(hid_t loc, const char *obj, const char *name, int64_t *value) {
  return attr_read(loc, obj, name, H5T_NATIVE_INT64, value);
}

int ens_h5_get_attr_f64(hid_t loc, const char *obj, const char *name, double *value) {
  return attr_read(loc, obj, name, H5T_NATIVE_DOUBLE, value);
}

int ens_h5_get_attr_str(hid_t loc, const char *obj, const char *name, char **value) {
  *value = NULL;
  if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) <= 0)
    return ENS_ENOTFOUND;
  hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0)
    return ENS_EHDF5;
  int ret = ENS_EFORMAT;
  hid_t ft = H5Aget_type(a);
  if (ft >= 0 && H5Tget_class(ft) == H5T_STRING && !H5Tis_variable_str(ft)) {
    size_t len = H5Tget_size(ft);
    char *s = calloc(len + 1, 1);
    hid_t mt = H5Tcopy(ft);
    if (s && mt >= 0 && H5Aread(a, mt, s) >= 0) {
      *value = s;
      ret = 0;
    } else {
      free(s);
    }
    if (mt >= 0)
      H5Tclose(mt);
  }
  if (ft >= 0)
    H5Tclose(ft);
  H5Aclose(a);
  return ret;
}

int ens_h5_exists(hid_t loc, const char *path) {
  char buf[1024];
  size_t len = strlen(path);
  if (len >= sizeof(buf))
    return 0;
  memcpy(buf, path, len + 1);
  /* Check every prefix: H5Lexists fails on a missing intermediate group. */
  for (size_t i = 1; i <= len; i++) {
    if (buf[i] == '/' || buf[i] == '\0') {
      char saved = buf[i];
      buf[i] = '\0';
      if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0)
        return 0;
      buf[i] = saved;
    }
  }
  return 1;
}

long long ens_h5_size(hid_t loc, const char *path, int *rank, hsize_t *dims) {
  if (!ens_h5_exists(loc, path))
    return -1;
  hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
  if (ds < 0)
    return -1;
  hid_t sp = H5Dget_space(ds);
  long long n = -1;
  if (sp >= 0) {
    int r = H5Sget_simple_extent_ndims(sp);
    if (r >= 0 && r <= 8) {
      hsize_t d[8];
      H5Sget_simple_extent_dims(sp, d, NULL);
      /* Declared sizes come from files: saturate instead of overflowing. */
      unsigned long long u = 1;
      for (int i = 0; i < r; i++)
        u = d[i] && u > (unsigned long long)LLONG_MAX / d[i] ? (unsigned long long)LLONG_MAX
                                                             : u * d[i];
      n = (long long)u;
      if (rank)
        *rank = r;
      if (dims)
        memcpy(dims, d, (size_t)r * sizeof(hsize_t));
    }
    H5Sclose(sp);
  }
  H5Dclose(ds);
  return n;
}

int ens_h5_read(hid_t loc, const char *path, hid_t type, void *out, size_t n) {
  long long have = ens_h5_size(loc, path, NULL, NULL);
  if (have < 0 || (size_t)have != n)
    return ENS_EFORMAT;
  hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
  if (ds < 0)
    return ENS_EFORMAT;
  int ret = H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0 ? ENS_EFORMAT : 0;
  H5Dclose(ds);
  return ret;
}

int ens_h5_read_prefix(hid_t loc, const char *path, hid_t type, void *out, size_t n) {
  int rank = 0;
  hsize_t dims[8];
  long long have = ens_h5_size(loc, path, &rank, dims);
  if (have < 0 || rank != 1 || (unsigned long long)have < (unsigned long long)n)
    return ENS_EFORMAT;
  if (n == 0)
    return 0;
  /* The first n rows of a 1-D dataset; a failed read is the file's fault. */
  return rows_io(loc, path, type, 0, (hsize_t)n, out, 0) ? ENS_EFORMAT : 0;
}

int ens_h5_group(hid_t loc, const char *path) {
  if (ens_h5_exists(loc, path))
    return 0;
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  if (lcpl < 0)
    return ENS_EHDF5;
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t g = H5Gcreate2(loc, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Pclose(lcpl);
  if (g < 0)
    return ENS_EHDF5;
  H5Gclose(g);
  return 0;
}

int ens_h5_copy_names(hid_t dst, const char *dst_path, const char *src_file, const char *src_path,
                      long long n) {
  hid_t f = H5Fopen(src_file, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return ENS_ENOTFOUND;
  int ret = ENS_ENOTFOUND;
  int rank = 0;
  hsize_t dims[8];
  if (ens_h5_exists(f, src_path) && ens_h5_size(f, src_path, &rank, dims) == n && rank == 1) {
    hid_t ds = H5Dopen2(f, src_path, H5P_DEFAULT), t = ds >= 0 ? H5Dget_type(ds) : -1;
    int is_str = t >= 0 && H5Tget_class(t) == H5T_STRING;
    if (t >= 0)
      H5Tclose(t);
    if (ds >= 0)
      H5Dclose(ds);
    if (is_str) {
      hid_t lcpl = link_props();
      ret = lcpl >= 0 && H5Ocopy(f, src_path, dst, dst_path, H5P_DEFAULT, lcpl) >= 0 ? 0
                                                                                  : ENS_EHDF5;
      if (lcpl >= 0)
        H5Pclose(lcpl);
    }
  }
  H5Fclose(f);
  return ret;
}

char **ens_h5_read_strings(hid_t loc, const char *path, long long n) {
  int rank = 0;
  hsize_t dims[8];
  if (n < 1 || ens_h5_size(loc, path, &rank, dims) != n || rank != 1)
    return NULL;
  hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
  if (ds < 0)
    return NULL;
  hid_t mt = H5Tcopy(H5T_C_S1);
  H5Tset_size(mt, H5T_VARIABLE);
  H5Tset_cset(mt, H5T_CSET_UTF8);
  char **raw = calloc((size_t)n, sizeof(char *)), **out = calloc((size_t)n + 1, sizeof(char *));
  hid_t ft = H5Dget_type(ds);
  int ok = raw && out && ft >= 0 && H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0 &&
           H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0;
  for (long long i = 0; ok && i < n; i++)
    ok = (out[i] = strdup(raw[i] ? raw[i] : "")) != NULL;
  if (raw && ok) {
    hid_t sp = H5Dget_space(ds);
    H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, raw);
    H5Sclose(sp);
  }
  if (ft >= 0)
    H5Tclose(ft);
  H5Tclose(mt);
  H5Dclose(ds);
  free(raw);
  if (!ok) {
    for (long long i = 0; out && i < n; i++)
      free(out[i]);
    free(out);
    return NULL;
  }
  return out;
}

void ens_h5_read_failure(hid_t ds, char *buf, size_t len) {
  hid_t dcpl = H5Dget_create_plist(ds);
  int n = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
  for (int i = 0; i < n; i++) {
    unsigned flags = 0, cd[8];
    size_t ncd = 8;
    char name[64] = "";
    H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof(name), name, NULL);
    if (id >= 0 && H5Zfilter_avail(id) <= 0) {
      snprintf(buf, len,
               "it is compressed with filter %d (%s), which this HDF5 library cannot "
               "decode",
               (int)id, name[0] ? name : "unknown");
      H5Pclose(dcpl);
      return;
    }
  }
  if (dcpl >= 0)
    H5Pclose(dcpl);
  snprintf(buf, len, "HDF5 cannot read it or convert its values");
}

int ens_h5_affordable(unsigned long long bytes) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0)
    return 1; /* unknown: let malloc decide */
  return bytes <= (unsigned long long)pages * (unsigned long long)page;
}
