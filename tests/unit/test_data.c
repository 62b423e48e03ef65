/* Unit tests for the data layer (src/io/data.c, src/io/idx.c): IDX import
 * round trips and errors, HDF5 loading of many source types and its error
 * messages, the validation split and per-feature standardization. */
#include "cu_run.h"
#include "ens/data.h"
#include "ens/error.h"

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char g_dir[256];

/* Path of `name` inside the test's temporary directory, in one of a few
 * rotating static buffers: fine as an argument, copy it to keep it. */
static const char *tpath(const char *name) {
  static char bufs[8][512];
  static int next;
  char *b = bufs[next++ % 8];
  snprintf(b, 512, "%s/%s", g_dir, name);
  return b;
}

static void make_dir(void) {
  if (g_dir[0])
    return;
  snprintf(g_dir, sizeof g_dir, "/tmp/ens_test_data.XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    exit(2);
  }
}

static void remove_dir(void) {
  DIR *dir = opendir(g_dir);
  if (!dir)
    return;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      remove(tpath(e->d_name));
  }
  closedir(dir);
  rmdir(g_dir);
}

/* Number of entries in the temp dir whose name contains `part`. */
static int count_files(const char *part) {
  int n = 0;
  DIR *dir = opendir(g_dir);
  if (!dir)
    return -1;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL)
    if (strstr(e->d_name, part))
      n++;
  closedir(dir);
  return n;
}

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

/* IDX header: 00 00 type ndim, then big-endian u32 dims. */
static size_t idx_header(unsigned char *h, int type, int ndim, const uint32_t *dims) {
  h[0] = 0;
  h[1] = 0;
  h[2] = (unsigned char)type;
  h[3] = (unsigned char)ndim;
  for (int k = 0; k < ndim; k++) {
    h[4 + 4 * k] = (unsigned char)(dims[k] >> 24);
    h[5 + 4 * k] = (unsigned char)(dims[k] >> 16);
    h[6 + 4 * k] = (unsigned char)(dims[k] >> 8);
    h[7 + 4 * k] = (unsigned char)dims[k];
  }
  return 4 + 4 * (size_t)ndim;
}

/* Writes header + data (cut to `keep` data bytes, or with `extra` zero bytes
 * appended), gzip-compressed when gz is set. */
static void write_idx(const char *path, int gz, int type, int ndim, const uint32_t *dims,
                      const void *data, size_t nbytes, size_t keep, size_t extra) {
  unsigned char h[64];
  size_t hl = idx_header(h, type, ndim, dims);
  size_t len = keep < nbytes ? keep : nbytes;
  unsigned char *zeros = calloc(extra + 1, 1);
  if (gz) {
    gzFile f = gzopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    gzwrite(f, h, (unsigned)hl);
    if (len)
      gzwrite(f, data, (unsigned)len);
    if (extra)
      gzwrite(f, zeros, (unsigned)extra);
    gzclose(f);
  } else {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fwrite(h, 1, hl, f);
    fwrite(data, 1, len, f);
    fwrite(zeros, 1, extra, f);
    fclose(f);
  }
  free(zeros);
}

/* 7 images of 3x4 ubyte, labels 0..4, and a test set of 3 images. */
static unsigned char g_img[7 * 12], g_timg[3 * 12];
static const unsigned char g_lab[7] = {0, 1, 2, 3, 4, 1, 0};
static const unsigned char g_tlab[3] = {4, 2, 0};

static void write_small_pair(void) {
  for (int i = 0; i < 7 * 12; i++)
    g_img[i] = (unsigned char)(i * 37 % 256);
  for (int i = 0; i < 3 * 12; i++)
    g_timg[i] = (unsigned char)(255 - i * 5);
  const uint32_t di[3] = {7, 3, 4}, dl[1] = {7}, ti[3] = {3, 3, 4}, tl[1] = {3};
  write_idx(tpath("img.gz"), 1, 0x08, 3, di, g_img, sizeof g_img, SIZE_MAX, 0);
  write_idx(tpath("lab.gz"), 1, 0x08, 1, dl, g_lab, sizeof g_lab, SIZE_MAX, 0);
  write_idx(tpath("timg.gz"), 1, 0x08, 3, ti, g_timg, sizeof g_timg, SIZE_MAX, 0);
  write_idx(tpath("tlab.gz"), 1, 0x08, 1, tl, g_tlab, sizeof g_tlab, SIZE_MAX, 0);
}

static void test_idx_roundtrip(void) {
  char err[512] = "";
  ens_data d;
  write_small_pair();
  char out[512];
  snprintf(out, sizeof out, "%s", tpath("rt.h5"));
  int rc = ens_idx_import(tpath("img.gz"), tpath("lab.gz"), tpath("timg.gz"), tpath("tlab.gz"),
                          out, err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  import: %s\n", err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(count_files(".tmp."), 0);
  rc = ens_data_load(&d, out, err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  load: %s\n", err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d.train.n, 7);
  CU_ASSERT_EQUAL(d.train.d, 12);
  CU_ASSERT_EQUAL(d.test.n, 3);
  CU_ASSERT_EQUAL(d.test.d, 12);
  CU_ASSERT_EQUAL(d.val.n, 0);
  CU_ASSERT_EQUAL(d.classes, 5);
  for (int i = 0; i < 7 * 12; i++)
    CU_ASSERT_EQUAL(d.train.x[i], (float)g_img[i]);
  for (int i = 0; i < 3 * 12; i++)
    CU_ASSERT_EQUAL(d.test.x[i], (float)g_timg[i]);
  for (int i = 0; i < 7; i++)
    CU_ASSERT_EQUAL(d.train.y[i], g_lab[i]);
  for (int i = 0; i < 3; i++)
    CU_ASSERT_EQUAL(d.test.y[i], g_tlab[i]);
  ens_data_free(&d);

  /* The stored types stay uint8, and /train/x names its source. */
  hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
  CU_ASSERT_FATAL(f >= 0);
  hid_t ds = H5Dopen2(f, "/train/x", H5P_DEFAULT), t = H5Dget_type(ds);
  CU_ASSERT(H5Tequal(t, H5T_NATIVE_UINT8) > 0);
  H5Tclose(t);
  CU_ASSERT(H5Aexists(ds, "source") > 0);
  H5Dclose(ds);
  ds = H5Dopen2(f, "/test/y", H5P_DEFAULT);
  t = H5Dget_type(ds);
  CU_ASSERT(H5Tequal(t, H5T_NATIVE_UINT8) > 0);
  H5Tclose(t);
  H5Dclose(ds);
  H5Fclose(f);
  remove(out);
}

/* Plain (uncompressed) files, big-endian short images of rank 1 and int
 * labels; also enough rows (> 1024) for the chunked, deflated layout. */
static void test_idx_plain_short_chunked(void) {
  enum { N = 3000 };
  char err[512] = "";
  ens_data d;
  unsigned char *img = malloc(N * 2), *lab = malloc(N * 4);
  unsigned char timg[2 * 2] = {0xFF, 0xFE, 0x01, 0x00}; /* -2, 256 */
  unsigned char tlab[2 * 4] = {0, 0, 0, 6, 0, 0, 0, 0};
  CU_ASSERT_PTR_NOT_NULL_FATAL(img);
  CU_ASSERT_PTR_NOT_NULL_FATAL(lab);
  for (int i = 0; i < N; i++) {
    int16_t v = (int16_t)(i * 7 - 9000);
    img[2 * i] = (unsigned char)((uint16_t)v >> 8);
    img[2 * i + 1] = (unsigned char)((uint16_t)v & 0xFF);
    lab[4 * i] = lab[4 * i + 1] = lab[4 * i + 2] = 0;
    lab[4 * i + 3] = (unsigned char)(i % 3);
  }
  const uint32_t dn[1] = {N}, dt[1] = {2};
  write_idx(tpath("simg"), 0, 0x0B, 1, dn, img, N * 2, SIZE_MAX, 0);
  write_idx(tpath("slab"), 0, 0x0C, 1, dn, lab, N * 4, SIZE_MAX, 0);
  write_idx(tpath("stimg"), 0, 0x0B, 1, dt, timg, 4, SIZE_MAX, 0);
  write_idx(tpath("stlab"), 0, 0x0C, 1, dt, tlab, 8, SIZE_MAX, 0);
  char out[512];
  snprintf(out, sizeof out, "%s", tpath("short.h5"));
  int rc = ens_idx_import(tpath("simg"), tpath("slab"), tpath("stimg"), tpath("stlab"), out, err,
                          sizeof err);
  if (rc)
    fprintf(stderr, "\n  import: %s\n", err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  rc = ens_data_load(&d, out, err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  load: %s\n", err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d.train.n, N);
  CU_ASSERT_EQUAL(d.train.d, 1);
  CU_ASSERT_EQUAL(d.classes, 7);
  int bad = 0;
  for (int i = 0; i < N; i++)
    bad += d.train.x[i] != (float)(i * 7 - 9000) || d.train.y[i] != i % 3;
  CU_ASSERT_EQUAL(bad, 0);
  CU_ASSERT_EQUAL(d.test.x[0], -2.0f);
  CU_ASSERT_EQUAL(d.test.x[1], 256.0f);
  CU_ASSERT_EQUAL(d.test.y[0], 6);
  CU_ASSERT_EQUAL(d.test.y[1], 0);
  ens_data_free(&d);

  hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
  CU_ASSERT_FATAL(f >= 0);
  hid_t ds = H5Dopen2(f, "/train/x", H5P_DEFAULT), t = H5Dget_type(ds);
  hid_t dcpl = H5Dget_create_plist(ds);
  CU_ASSERT(H5Tequal(t, H5T_NATIVE_INT16) > 0);
  CU_ASSERT_EQUAL(H5Pget_layout(dcpl), H5D_CHUNKED);
  H5Pclose(dcpl);
  H5Tclose(t);
  H5Dclose(ds);
  ds = H5Dopen2(f, "/train/y", H5P_DEFAULT);
  t = H5Dget_type(ds);
  CU_ASSERT(H5Tequal(t, H5T_NATIVE_INT32) > 0);
  H5Tclose(t);
  H5Dclose(ds);
  H5Fclose(f);
  remove(out);
  free(img);
  free(lab);
}

static void test_idx_truncated(void) {
  char err[512] = "";
  write_small_pair();
  const uint32_t di[3] = {7, 3, 4};
  char bad[512], out[512];
  snprintf(bad, sizeof bad, "%s", tpath("trunc.gz"));
  snprintf(out, sizeof out, "%s", tpath("trunc.h5"));
  write_idx(bad, 1, 0x08, 3, di, g_img, sizeof g_img, sizeof g_img - 5, 0);
  int rc = ens_idx_import(bad, tpath("lab.gz"), NULL, NULL, out, err, sizeof err);
  CU_ASSERT_EQUAL(rc, ENS_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, bad));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "expected 100 bytes, found 95"));
  CU_ASSERT(!file_exists(out));
  CU_ASSERT_EQUAL(count_files(".tmp."), 0);

  /* A truncated gzip stream (cut inside the compressed data). */
  FILE *f = fopen(tpath("img.gz"), "rb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  unsigned char buf[4096];
  size_t len = fread(buf, 1, sizeof buf, f);
  fclose(f);
  f = fopen(bad, "wb");
  fwrite(buf, 1, len - 12, f);
  fclose(f);
  rc = ens_idx_import(bad, tpath("lab.gz"), NULL, NULL, out, err, sizeof err);
  CU_ASSERT_EQUAL(rc, ENS_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, bad));
  CU_ASSERT(!file_exists(out));

  /* Trailing bytes after the data are an error too. */
  write_idx(bad, 1, 0x08, 3, di, g_img, sizeof g_img, SIZE_MAX, 3);
  rc = ens_idx_import(bad, tpath("lab.gz"), NULL, NULL, out, err, sizeof err);
  CU_ASSERT_EQUAL(rc, ENS_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "3 trailing bytes"));
  CU_ASSERT(!file_exists(out));
  CU_ASSERT_EQUAL(count_files(".tmp."), 0);
}

static void test_idx_errors(void) {
  char err[512] = "";
  write_small_pair();
  char out[512];
  snprintf(out, sizeof out, "%s", tpath("err.h5"));
  /* 6 labels for 7 images. */
  const uint32_t d6[1] = {6};
  write_idx(tpath("lab6.gz"), 1, 0x08, 1, d6, g_lab, 6, SIZE_MAX, 0);
  int rc = ens_idx_import(tpath("img.gz"), tpath("lab6.gz"), NULL, NULL, out, err, sizeof err);
  CU_ASSERT_EQUAL(rc, ENS_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "7 images"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "6 labels"));
  CU_ASSERT(!file_exists(out));

  /* Bad magic. */
  const uint32_t d7[1] = {7};
  write_idx(tpath("magic"), 0, 0x07, 1, d7, g_lab, 7, SIZE_MAX, 0);
  rc = ens_idx_import(tpath("img.gz"), tpath("magic"), NULL, NULL, out, err, sizeof err);
  CU_ASSERT_EQUAL(rc, ENS_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "not an IDX file"));

  /* Labels of rank 2, and negative sbyte labels. */
  const uint32_t d71[2] = {7, 1};
  write_idx(tpath("lab2d"), 0, 0x08, 2, d71, g_lab, 7, SIZE_MAX, 0);
  rc = ens_idx_import(tpath("img.gz"), tpath("lab2d"), NULL, NULL, out, err, sizeof err);
  CU_ASSERT_EQUAL(rc, ENS_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "1-D"));
  const unsigned char neg[7] = {0, 1, 0xFF, 1, 0, 1, 0};
  write_idx(tpath("labneg"), 0, 0x09, 1, d7, neg, 7, SIZE_MAX, 0);
  rc = ens_idx_import(tpath("img.gz"), tpath("labneg"), NULL, NULL, out, err, sizeof err);
  CU_ASSERT_EQUAL(rc, ENS_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "negative label -1"));

  /* Missing file, and test images with another row length. */
  rc = ens_idx_import(tpath("nope.gz"), tpath("lab.gz"), NULL, NULL, out, err, sizeof err);
  CU_ASSERT_EQUAL(rc, ENS_EIO);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "nope.gz"));
  const uint32_t d3[2] = {3, 12 - 1}, dl3[1] = {3};
  write_idx(tpath("timg11"), 0, 0x08, 2, d3, g_timg, 33, SIZE_MAX, 0);
  write_idx(tpath("tlab3"), 0, 0x08, 1, dl3, g_tlab, 3, SIZE_MAX, 0);
  rc = ens_idx_import(tpath("img.gz"), tpath("lab.gz"), tpath("timg11"), tpath("tlab3"), out, err,
                      sizeof err);
  CU_ASSERT_EQUAL(rc, ENS_EFORMAT);
  CU_ASSERT(!file_exists(out));
  CU_ASSERT_EQUAL(count_files(".tmp."), 0);
}

/* Creates dataset `name` (intermediate groups too) of file type ftype with
 * data in memory type mtype. */
static void put(hid_t f, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                const void *data) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t space = H5Screate_simple(rank, dims, NULL);
  hid_t ds = H5Dcreate2(f, name, ftype, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  CU_ASSERT_FATAL(ds >= 0);
  CU_ASSERT(H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
  H5Dclose(ds);
  H5Sclose(space);
  H5Pclose(lcpl);
}

static void put_classes(hid_t f, hid_t ftype, long long v) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, "classes", ftype, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_LLONG, &v);
  H5Aclose(a);
  H5Sclose(space);
}

/* A valid file: train x float64 (4,3) / y int8, test x int16 (2,1,3) / y
 * uint16, val x uint8 (2,3) / y int64. `omit` leaves out one dataset, and
 * `classes` > 0 adds the root attribute. */
static const double g_trx[12] = {0.5, -1.25, 3, 1e-3, 2, 7, -8, 0, 1, 1e6, -1e6, 42};
static const int8_t g_try[4] = {0, 3, 1, 2};
static const int16_t g_tex[6] = {-300, 0, 300, 32767, -32768, 5};
static const uint16_t g_tey[2] = {5, 1};
static const uint8_t g_vax[6] = {0, 255, 128, 1, 2, 3};
static const int64_t g_vay[2] = {2, 0};

static const char *make_h5(const char *name, const char *omit, long long classes) {
  const char *path = tpath(name);
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  CU_ASSERT_FATAL(f >= 0);
  const hsize_t d43[2] = {4, 3}, d4[1] = {4}, d213[3] = {2, 1, 3}, d2[1] = {2}, d23[2] = {2, 3};
  struct {
    const char *n;
    hid_t ft, mt;
    int rank;
    const hsize_t *dims;
    const void *data;
  } sets[] = {
      {"/train/x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d43, g_trx},
      {"/train/y", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, d4, g_try},
      {"/test/x", H5T_STD_I16BE, H5T_NATIVE_INT16, 3, d213, g_tex},
      {"/test/y", H5T_STD_U16LE, H5T_NATIVE_UINT16, 1, d2, g_tey},
      {"/val/x", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, d23, g_vax},
      {"/val/y", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d2, g_vay},
  };
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
    if (!omit || strcmp(omit, sets[i].n))
      put(f, sets[i].n, sets[i].ft, sets[i].mt, sets[i].rank, sets[i].dims, sets[i].data);
  if (classes > 0)
    put_classes(f, H5T_STD_U8LE, classes);
  H5Fclose(f);
  return path;
}

static int zeroed(const ens_data *d) {
  static const ens_data z;
  return memcmp(d, &z, sizeof z) == 0;
}

static void test_load_types(void) {
  char err[512] = "";
  ens_data d;
  const char *p = make_h5("types.h5", NULL, 0);
  int rc = ens_data_load(&d, p, err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  load: %s\n", err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d.train.n, 4);
  CU_ASSERT_EQUAL(d.train.d, 3);
  CU_ASSERT_EQUAL(d.test.n, 2);
  CU_ASSERT_EQUAL(d.test.d, 3);
  CU_ASSERT_EQUAL(d.val.n, 2);
  CU_ASSERT_EQUAL(d.val.d, 3);
  CU_ASSERT_EQUAL(d.classes, 6); /* max label 5 in /test/y */
  for (int i = 0; i < 12; i++)
    CU_ASSERT_EQUAL(d.train.x[i], (float)g_trx[i]);
  for (int i = 0; i < 6; i++) {
    CU_ASSERT_EQUAL(d.test.x[i], (float)g_tex[i]);
    CU_ASSERT_EQUAL(d.val.x[i], (float)g_vax[i]);
  }
  for (int i = 0; i < 4; i++)
    CU_ASSERT_EQUAL(d.train.y[i], g_try[i]);
  for (int i = 0; i < 2; i++) {
    CU_ASSERT_EQUAL(d.test.y[i], g_tey[i]);
    CU_ASSERT_EQUAL(d.val.y[i], g_vay[i]);
  }
  ens_data_free(&d);
  CU_ASSERT(zeroed(&d));

  /* The attribute wins over max label + 1 when larger. */
  p = make_h5("classes.h5", NULL, 10);
  rc = ens_data_load(&d, p, err, sizeof err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d.classes, 10);
  ens_data_free(&d);

  /* No val group at all is fine. */
  p = tpath("noval.h5");
  hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t d43[2] = {4, 3}, d4[1] = {4};
  put(f, "/train/x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d43, g_trx);
  put(f, "/train/y", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, d4, g_try);
  put(f, "/test/x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d43, g_trx);
  put(f, "/test/y", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, d4, g_try);
  H5Fclose(f);
  rc = ens_data_load(&d, p, err, sizeof err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d.val.n, 0);
  CU_ASSERT_PTR_NULL(d.val.x);
  CU_ASSERT_EQUAL(d.classes, 4);
  ens_data_free(&d);
}

/* Loads path, expecting rc and a message containing `want`. */
static void expect_load_error(const char *path, int want_rc, const char *want) {
  char err[512] = "";
  ens_data d;
  int rc = ens_data_load(&d, path, err, sizeof err);
  CU_ASSERT_EQUAL(rc, want_rc);
  if (!strstr(err, want))
    fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", err, want);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
  CU_ASSERT(zeroed(&d));
  if (rc == 0)
    ens_data_free(&d);
}

static void test_load_errors(void) {
  expect_load_error(make_h5("notestx.h5", "/test/x", 0), ENS_EFORMAT,
                    "/test/y is present but /test/x is missing (give both or neither)");
  /* No /test at all is accepted (the job then scores validation rows). */
  const char *nt = make_h5("notest.h5", "/test/x", 0);
  hid_t nf = H5Fopen(nt, H5F_ACC_RDWR, H5P_DEFAULT);
  CU_ASSERT_FATAL(nf >= 0);
  CU_ASSERT(H5Ldelete(nf, "/test", H5P_DEFAULT) >= 0);
  H5Fclose(nf);
  ens_data nd;
  char nerr[512] = "";
  int nrc = ens_data_load(&nd, nt, nerr, sizeof nerr);
  if (nrc)
    fprintf(stderr, "\n  %s\n", nerr);
  CU_ASSERT_EQUAL_FATAL(nrc, 0);
  CU_ASSERT_EQUAL(nd.test.n, 0);
  CU_ASSERT_PTR_NULL(nd.test.x);
  CU_ASSERT_EQUAL(nd.train.n, 4);
  CU_ASSERT_EQUAL(nd.val.n, 2);
  ens_data_free(&nd);
  expect_load_error(make_h5("novaly.h5", "/val/y", 0), ENS_EFORMAT,
                    "/val/x is present but /val/y is missing");
  expect_load_error(make_h5("range.h5", NULL, 4), ENS_EFORMAT,
                    "/test/y contains label 5 but classes = 4");
  expect_load_error(tpath("absent.h5"), ENS_EIO, "cannot open");
  FILE *fp = fopen(tpath("text.h5"), "w");
  fputs("not hdf5\n", fp);
  fclose(fp);
  expect_load_error(tpath("text.h5"), ENS_EFORMAT, "not an HDF5 file");

  /* Float labels, rank-1 x, row mismatch, negative label, NaN, d mismatch. */
  const hsize_t d43[2] = {4, 3}, d4[1] = {4}, d3[1] = {3}, d12[1] = {12}, d42[2] = {4, 2};
  const float fy[4] = {0, 1, 2, 1};
  const int32_t negy[4] = {0, 1, -3, 1};
  double nanx[12];
  memcpy(nanx, g_trx, sizeof nanx);
  nanx[7] = NAN;
  struct {
    const char *file, *want;
    const char *xname;
    int xrank;
    const hsize_t *xdims;
    const void *xdata;
    hid_t ytype, ymem;
    const hsize_t *ydims;
    const void *ydata;
  } cases[] = {
      {"floaty.h5", "/train/y holds float targets but /test/y holds integer labels", "/train/x", 2, d43,
       g_trx, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, d4, fy},
      {"rank1.h5", "dataset /train/x: expected shape (n, d), found (12)", "/train/x", 1, d12,
       g_trx, H5T_STD_I8LE, H5T_NATIVE_INT8, d4, g_try},
      {"rows.h5", "/train/x has 4 rows but /train/y has 3", "/train/x", 2, d43, g_trx,
       H5T_STD_I8LE, H5T_NATIVE_INT8, d3, g_try},
      {"neg.h5", "/train/y contains negative label -3 at row 2", "/train/x", 2, d43, g_trx,
       H5T_STD_I32LE, H5T_NATIVE_INT32, d4, negy},
      {"nan.h5", "/train/x has a non-finite value (nan) at row 2, column 1", "/train/x", 2, d43,
       nanx, H5T_STD_I8LE, H5T_NATIVE_INT8, d4, g_try},
      {"dmis.h5", "/test/x has 2 features per row but /train/x has 3", "/train/x", 2, d43, g_trx,
       H5T_STD_I8LE, H5T_NATIVE_INT8, d4, g_try},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *p = tpath(cases[i].file);
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    put(f, cases[i].xname, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, cases[i].xrank, cases[i].xdims,
        cases[i].xdata);
    put(f, "/train/y", cases[i].ytype, cases[i].ymem, 1, cases[i].ydims, cases[i].ydata);
    if (i == 5)
      put(f, "/test/x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d42, g_trx);
    else
      put(f, "/test/x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d43, g_trx);
    put(f, "/test/y", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, d4, g_try);
    H5Fclose(f);
    expect_load_error(p, ENS_EFORMAT, cases[i].want);
  }

  /* float64 beyond the float32 range must not load as a finite value. */
  double big[12];
  memcpy(big, g_trx, sizeof big);
  big[4] = 1e300;
  const char *p = tpath("big.h5");
  hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  put(f, "/train/x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d43, big);
  put(f, "/train/y", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, d4, g_try);
  put(f, "/test/x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d43, g_trx);
  put(f, "/test/y", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, d4, g_try);
  H5Fclose(f);
  expect_load_error(p, ENS_EFORMAT, "non-finite value (inf) at row 1, column 1");

  /* All labels equal and no attribute: fewer than 2 classes. */
  const int8_t zeros[4] = {0, 0, 0, 0};
  p = tpath("oneclass.h5");
  f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  put(f, "/train/x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d43, g_trx);
  put(f, "/train/y", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, d4, zeros);
  put(f, "/test/x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d43, g_trx);
  put(f, "/test/y", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, d4, zeros);
  H5Fclose(f);
  expect_load_error(p, ENS_EFORMAT, "at least 2");
}

static void test_standardize(void) {
  /* 4 rows x 3 features; column 1 constant. */
  float x[12] = {1, 5, -2, 2, 5, 0, 3, 5, 2, 4, 5, 4};
  ens_split s = {4, 3, x, NULL, .t = NULL};
  float mean[3], sd[3];
  ens_standardize_fit(mean, sd, &s);
  CU_CHECK_CLOSE(mean[0], 2.5, 1e-6);
  CU_CHECK_CLOSE(mean[1], 5.0, 1e-6);
  CU_CHECK_CLOSE(mean[2], 1.0, 1e-6);
  CU_CHECK_CLOSE(sd[0], 1.118033988749895, 1e-6); /* sqrt(1.25) */
  CU_CHECK_CLOSE(sd[1], 1.0, 0);
  CU_CHECK_CLOSE(sd[2], 2.23606797749979, 1e-6); /* sqrt(5) */
  ens_standardize_apply(&s, mean, sd);
  CU_CHECK_CLOSE(x[0], -1.5 / 1.118033988749895, 1e-6);
  CU_CHECK_CLOSE(x[1], 0.0, 1e-6);
  CU_CHECK_CLOSE(x[2], -3.0 / 2.23606797749979, 1e-6);
  CU_CHECK_CLOSE(x[11], 3.0 / 2.23606797749979, 1e-6);
  /* Standardized columns: mean 0, population std 1. */
  ens_standardize_fit(mean, sd, &s);
  CU_CHECK_CLOSE(mean[0], 0.0, 1e-6);
  CU_CHECK_CLOSE(mean[2], 0.0, 1e-6);
  CU_CHECK_CLOSE(sd[0], 1.0, 1e-6);
  CU_CHECK_CLOSE(sd[2], 1.0, 1e-6);

  /* Large offset: computing in double keeps the small spread exact. */
  float y[4] = {1e4f + 1, 1e4f + 2, 1e4f + 3, 1e4f + 4};
  ens_split t = {4, 1, y, NULL, .t = NULL};
  ens_standardize_fit(mean, sd, &t);
  CU_CHECK_CLOSE(mean[0], 10002.5, 1e-3);
  CU_CHECK_CLOSE(sd[0], 1.118033988749895, 1e-6);
}

/* A data set whose train row i is (i, -i) with label i % 4. */
static void make_rows(ens_data *d, int n) {
  memset(d, 0, sizeof *d);
  d->train.n = n;
  d->train.d = 2;
  d->train.x = malloc((size_t)n * 2 * sizeof(float));
  d->train.y = malloc((size_t)n * sizeof(int32_t));
  for (int i = 0; i < n; i++) {
    d->train.x[2 * i] = (float)i;
    d->train.x[2 * i + 1] = (float)-i;
    d->train.y[i] = i % 4;
  }
  d->classes = 4;
}

static void test_split_val(void) {
  ens_data a, b, c;
  make_rows(&a, 100);
  make_rows(&b, 100);
  make_rows(&c, 100);
  CU_ASSERT_EQUAL_FATAL(ens_data_split_val(&a, 0.2, 7), 0);
  CU_ASSERT_EQUAL_FATAL(ens_data_split_val(&b, 0.2, 7), 0);
  CU_ASSERT_EQUAL_FATAL(ens_data_split_val(&c, 0.2, 8), 0);
  CU_ASSERT_EQUAL(a.train.n, 80);
  CU_ASSERT_EQUAL(a.val.n, 20);
  CU_ASSERT_EQUAL(a.val.d, 2);
  /* Reproducible with the same seed, different with another. */
  CU_ASSERT(memcmp(a.val.x, b.val.x, 20 * 2 * sizeof(float)) == 0);
  CU_ASSERT(memcmp(a.train.x, b.train.x, 80 * 2 * sizeof(float)) == 0);
  CU_ASSERT(memcmp(a.val.y, b.val.y, 20 * sizeof(int32_t)) == 0);
  CU_ASSERT(memcmp(a.val.x, c.val.x, 20 * 2 * sizeof(float)) != 0);
  /* Every row lands exactly once; rows stay intact; train keeps its order. */
  int seen[100] = {0};
  for (int i = 0; i < 80; i++) {
    int r = (int)a.train.x[2 * i];
    seen[r]++;
    CU_ASSERT_EQUAL(a.train.x[2 * i + 1], (float)-r);
    CU_ASSERT_EQUAL(a.train.y[i], r % 4);
    if (i > 0)
      CU_ASSERT(a.train.x[2 * i] > a.train.x[2 * i - 2]);
  }
  for (int i = 0; i < 20; i++) {
    int r = (int)a.val.x[2 * i];
    seen[r]++;
    CU_ASSERT_EQUAL(a.val.x[2 * i + 1], (float)-r);
    CU_ASSERT_EQUAL(a.val.y[i], r % 4);
  }
  int once = 0;
  for (int i = 0; i < 100; i++)
    once += seen[i] == 1;
  CU_ASSERT_EQUAL(once, 100);
  /* A second call is a no-op (val present); bad fractions are rejected. */
  CU_ASSERT_EQUAL(ens_data_split_val(&a, 0.5, 7), 0);
  CU_ASSERT_EQUAL(a.val.n, 20);
  CU_ASSERT_EQUAL(ens_data_split_val(&c, 1.0, 7), ENS_EINVAL);
  ens_data_free(&a);
  ens_data_free(&b);
  ens_data_free(&c);

  /* fraction 0 does nothing; rounding: 0.25 of 10 rows -> 3 (2.5 rounds up). */
  make_rows(&a, 10);
  CU_ASSERT_EQUAL(ens_data_split_val(&a, 0.0, 1), 0);
  CU_ASSERT_EQUAL(a.val.n, 0);
  CU_ASSERT_EQUAL(ens_data_split_val(&a, 0.25, 1), 0);
  CU_ASSERT_EQUAL(a.val.n, 3);
  CU_ASSERT_EQUAL(a.train.n, 7);
  ens_data_free(&a);
}

/* 1 when [p, p + bytes) lies inside the arena. */
static int in_arena(const ens_data_arena *a, const void *p, size_t bytes) {
  const unsigned char *c = p;
  return c >= a->base && c + bytes <= a->base + a->size;
}

/* Loading into caller memory (a node-shared block in ens train): the probe
 * sizes it exactly, the values are those of a malloc load, nothing is freed
 * by ens_data_free, and a block too small fails cleanly. */
static void test_load_arena(void) {
  char err[512] = "";
  const char *p = make_h5("arena.h5", NULL, 0);
  size_t bytes = 1, yvals = 1;
  int yfloat = 1;
  ens_data_probe(p, &bytes, &yvals, &yfloat);
  /* Six arrays of 4-byte values (12, 4, 6, 2, 6, 2), 64 bytes each at most. */
  CU_ASSERT_EQUAL(bytes, 6 * 64);
  CU_ASSERT_EQUAL(yvals, 4);
  CU_ASSERT_EQUAL(yfloat, 0);
  ens_data ref, d;
  CU_ASSERT_EQUAL_FATAL(ens_data_load(&ref, p, err, sizeof err), 0);
  CU_ASSERT_EQUAL(ref.borrowed, 0);
  void *mem = NULL;
  CU_ASSERT_EQUAL_FATAL(posix_memalign(&mem, ENS_DATA_ALIGN, bytes), 0);
  ens_data_arena a = {.base = mem, .size = bytes, .used = 0};
  int rc = ens_data_load_in(&d, p, &a, err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  load_in: %s\n", err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d.borrowed, 1);
  CU_ASSERT_EQUAL(a.used, bytes);
  CU_ASSERT_EQUAL(d.classes, ref.classes);
  const ens_split *sr[3] = {&ref.train, &ref.test, &ref.val}, *sd[3] = {&d.train, &d.test, &d.val};
  for (int i = 0; i < 3; i++) {
    size_t nx = (size_t)sr[i]->n * sr[i]->d * sizeof(float), ny = (size_t)sr[i]->n * 4;
    CU_ASSERT_EQUAL(sd[i]->n, sr[i]->n);
    CU_ASSERT_EQUAL(sd[i]->d, sr[i]->d);
    CU_ASSERT(in_arena(&a, sd[i]->x, nx) && in_arena(&a, sd[i]->y, ny));
    CU_ASSERT((uintptr_t)sd[i]->x % ENS_DATA_ALIGN == 0);
    CU_ASSERT(memcmp(sd[i]->x, sr[i]->x, nx) == 0);
    CU_ASSERT(memcmp(sd[i]->y, sr[i]->y, ny) == 0);
  }
  ens_data_free(&d); /* must not free arena memory (ASan would object) */
  CU_ASSERT(zeroed(&d));
  ens_data_free(&ref);

  /* One array short: ENS_ENOMEM naming the file, nothing left behind. */
  a.size = bytes - 64;
  a.used = 0;
  rc = ens_data_load_in(&d, p, &a, err, sizeof err);
  CU_ASSERT_EQUAL(rc, ENS_ENOMEM);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, p));
  CU_ASSERT(zeroed(&d));
  free(mem);

  /* A file that cannot be read: the probe says 0, the load says why. */
  ens_data_probe(tpath("missing.h5"), &bytes, &yvals, &yfloat);
  CU_ASSERT_EQUAL(bytes, 0);
  CU_ASSERT_EQUAL(yvals, 0);
}

/* make_rows, copied into caller memory (borrowed arrays). */
static void *make_rows_borrowed(ens_data *d, int n) {
  ens_data m;
  make_rows(&m, n);
  unsigned char *mem = malloc((size_t)n * 3 * sizeof(float));
  CU_ASSERT_PTR_NOT_NULL_FATAL(mem);
  *d = m;
  d->borrowed = 1;
  d->train.x = memcpy(mem, m.train.x, (size_t)n * 2 * sizeof(float));
  d->train.y = memcpy(mem + (size_t)n * 2 * sizeof(float), m.train.y, (size_t)n * sizeof(int32_t));
  ens_data_free(&m);
  return mem;
}

/* Borrowed arrays: the split gives the same rows, val in train's tail. */
static void test_split_val_borrowed(void) {
  ens_data a, b;
  make_rows(&a, 100);
  void *mem = make_rows_borrowed(&b, 100);
  float *x0 = b.train.x;
  int32_t *y0 = b.train.y;
  CU_ASSERT_EQUAL_FATAL(ens_data_split_val(&a, 0.2, 7), 0);
  CU_ASSERT_EQUAL_FATAL(ens_data_split_val(&b, 0.2, 7), 0);
  CU_ASSERT_EQUAL(b.train.n, 80);
  CU_ASSERT_EQUAL(b.val.n, 20);
  CU_ASSERT(b.train.x == x0 && b.train.y == y0);
  CU_ASSERT(b.val.x == x0 + 80 * 2);
  CU_ASSERT(b.val.y == y0 + 80);
  CU_ASSERT(memcmp(a.train.x, b.train.x, 80 * 2 * sizeof(float)) == 0);
  CU_ASSERT(memcmp(a.train.y, b.train.y, 80 * sizeof(int32_t)) == 0);
  CU_ASSERT(memcmp(a.val.x, b.val.x, 20 * 2 * sizeof(float)) == 0);
  CU_ASSERT(memcmp(a.val.y, b.val.y, 20 * sizeof(int32_t)) == 0);
  /* Labels become targets in place, in both kinds of memory. */
  CU_ASSERT_EQUAL(ens_data_labels_to_targets(&a), 0);
  CU_ASSERT_EQUAL(ens_data_labels_to_targets(&b), 0);
  CU_ASSERT(b.train.y == NULL && b.train.t == (float *)(void *)y0);
  CU_ASSERT(a.regress && b.regress && a.targets == 1 && b.targets == 1);
  for (int i = 0; i < 80; i++) {
    CU_ASSERT_EQUAL(b.train.t[i], (float)((int)b.train.x[2 * i] % 4));
    CU_ASSERT_EQUAL(a.train.t[i], b.train.t[i]);
  }
  for (int i = 0; i < 20; i++)
    CU_ASSERT_EQUAL(a.val.t[i], b.val.t[i]);
  ens_data_free(&a);
  ens_data_free(&b);
  free(mem);
}

int main(void) {
  make_dir();
  static const cu_case cases[] = {
      {"idx_roundtrip", test_idx_roundtrip},
      {"idx_plain_short_chunked", test_idx_plain_short_chunked},
      {"idx_truncated", test_idx_truncated},
      {"idx_errors", test_idx_errors},
      {"load_types", test_load_types},
      {"load_errors", test_load_errors},
      {"standardize", test_standardize},
      {"split_val", test_split_val},
      {"load_arena", test_load_arena},
      {"split_val_borrowed", test_split_val_borrowed},
      {NULL, NULL},
  };
  int rc = cu_run_suite("data", cases);
  remove_dir();
  return rc;
}
