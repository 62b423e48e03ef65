/* IDX import (the MNIST file format, gzip-compressed or plain): converts image
 * and label files to the input HDF5 layout of DESIGN.md. The output goes to a
 * temporary file that is renamed into place, so a failure leaves nothing. */
#include "ens/data.h"

#include "ens/error.h"
#include "io/fsutil.h"
#include "io/h5util.h"
#include "io/idx.h"
#include "io/storage.h"

#include <hdf5.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* gzread takes an unsigned int length; read in pieces this large. A short
 * piece also bounds how much a truncated gzip stream can hide (zlib drops the
 * partial count of a call that hits the end of a broken stream). */
#define IDX_READ_PIECE (1u << 20)
/* Rows per HDF5 chunk of x (fewer when a row is large; see chunk_rows). */
#define IDX_CHUNK_ROWS 1024
#define IDX_CHUNK_BYTES ((size_t)1 << 20)
#define IDX_DEFLATE_LEVEL 4

typedef ens_idx idx_file;

/* Element size and name of an IDX type code; 0 for an unknown code. */
static size_t type_size(int type, const char **name) {
  switch (type) {
  case 0x08:
    *name = "ubyte";
    return 1;
  case 0x09:
    *name = "sbyte";
    return 1;
  case 0x0B:
    *name = "short";
    return 2;
  case 0x0C:
    *name = "int";
    return 4;
  case 0x0D:
    *name = "float";
    return 4;
  case 0x0E:
    *name = "double";
    return 8;
  default:
    *name = "unknown";
    return 0;
  }
}

static int is_integer_type(int type) { return type == 0x08 || type == 0x09 || type == 0x0B || type == 0x0C; }

/* The element as an integer (integer types only; the data are big-endian). */
static int64_t get_int(const idx_file *f, size_t i) {
  const unsigned char *p = f->data + i * f->esize;
  switch (f->type) {
  case 0x08:
    return p[0];
  case 0x09:
    return (int8_t)p[0];
  case 0x0B:
    return (int16_t)(uint16_t)((unsigned)p[0] << 8 | p[1]);
  default:
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
  }
}

/* The in-memory (big-endian) HDF5 type of the data and the type stored in
 * the file (the same type in native byte order; HDF5 swaps on write). */
static void h5_types(int type, hid_t *mem, hid_t *file) {
  switch (type) {
  case 0x08:
    *mem = *file = H5T_NATIVE_UINT8;
    break;
  case 0x09:
    *mem = *file = H5T_NATIVE_INT8;
    break;
  case 0x0B:
    *mem = H5T_STD_I16BE;
    *file = H5T_NATIVE_INT16;
    break;
  case 0x0C:
    *mem = H5T_STD_I32BE;
    *file = H5T_NATIVE_INT32;
    break;
  case 0x0D:
    *mem = H5T_IEEE_F32BE;
    *file = H5T_NATIVE_FLOAT;
    break;
  default:
    *mem = H5T_IEEE_F64BE;
    *file = H5T_NATIVE_DOUBLE;
    break;
  }
}

/* Total size (header + data) that a header in buf[0..len) describes, or 0
 * when the header is incomplete, invalid, or describes an unrepresentable
 * size. */
static size_t described_size(const unsigned char *buf, size_t len) {
  const char *tname;
  if (len < 4 || buf[0] != 0 || buf[1] != 0 || buf[3] == 0)
    return 0;
  size_t esize = type_size(buf[2], &tname), hdrlen = 4 + 4 * (size_t)buf[3];
  if (esize == 0 || len < hdrlen)
    return 0;
  size_t total = esize;
  for (int k = 0; k < buf[3]; k++) {
    const unsigned char *p = buf + 4 + 4 * k;
    uint32_t d = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (d != 0 && total > (SIZE_MAX - hdrlen) / d)
      return 0;
    total *= d;
  }
  return hdrlen + total;
}

int ens_idx_parse(ens_idx *f, const unsigned char *buf, size_t len, const char *path, char *err,
                  size_t errlen) {
  const char *tname;
  memset(f, 0, sizeof *f);
  f->path = path;
  if (len < 4) {
    ens_errorf(err, errlen, "%s: truncated IDX file: expected at least 4 bytes, found %zu", path,
               len);
    return ENS_EFORMAT;
  }
  f->type = buf[2];
  f->ndim = buf[3];
  f->esize = type_size(f->type, &tname);
  if (buf[0] != 0 || buf[1] != 0 || f->esize == 0 || f->ndim == 0) {
    ens_errorf(err, errlen, "%s: not an IDX file (magic %02x %02x %02x %02x; expected 00 00, a "
               "type code 08/09/0b/0c/0d/0e and at least one dimension)", path, buf[0], buf[1],
               buf[2], buf[3]);
    return ENS_EFORMAT;
  }
  size_t hdrlen = 4 + 4 * (size_t)f->ndim;
  if (len < hdrlen) {
    ens_errorf(err, errlen, "%s: truncated IDX file: expected %zu header bytes, found %zu", path,
               hdrlen, len);
    return ENS_EFORMAT;
  }
  /* Element count with overflow checks. */
  size_t total = 1;
  for (int k = 0; k < f->ndim; k++) {
    const unsigned char *p = buf + 4 + 4 * k;
    f->dims[k] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (f->dims[k] != 0 && total > (SIZE_MAX - hdrlen) / f->esize / f->dims[k]) {
      ens_errorf(err, errlen, "%s: IDX dimensions too large to hold in memory", path);
      return ENS_ENOMEM;
    }
    total *= f->dims[k];
  }
  f->count = f->dims[0];
  f->rowlen = 1;
  for (int k = 1; k < f->ndim; k++) {
    /* Cannot overflow when count > 0 (total did not); when count == 0 the
     * row length alone may, and then saturates (the pair check rejects an
     * empty file anyway). */
    if (f->dims[k] != 0 && f->rowlen > SIZE_MAX / f->dims[k])
      f->rowlen = SIZE_MAX;
    else
      f->rowlen *= f->dims[k];
  }
  size_t bytes = total * f->esize;
  if (len - hdrlen < bytes) {
    ens_errorf(err, errlen, "%s: truncated IDX file: expected %zu bytes, found %zu", path,
               hdrlen + bytes, len);
    return ENS_EFORMAT;
  }
  /* Anything after the data means the header does not describe the file. */
  if (len - hdrlen > bytes) {
    ens_errorf(err, errlen, "%s: %zu trailing bytes after the IDX data: expected %zu bytes, "
               "found %zu", path, len - hdrlen - bytes, hdrlen + bytes, len);
    return ENS_EFORMAT;
  }
  f->data = buf + hdrlen;
  return 0;
}

/* Reads a whole gzip (or plain) file into *buf (malloc'd, *len bytes), then
 * parses it into f; f->data points into *buf, which the caller frees. */
static int idx_read(idx_file *f, unsigned char **buf, const char *path, char *err,
                    size_t errlen) {
  int rc = ENS_EFORMAT;
  size_t cap = 0, len = 0;
  unsigned char *b = NULL;

  memset(f, 0, sizeof *f);
  *buf = NULL;
  errno = 0;
  gzFile gz = gzopen(path, "rb");
  if (!gz) {
    ens_errorf(err, errlen, "%s: cannot open: %s", path,
            errno ? strerror(errno) : "out of memory");
    return errno ? ENS_EIO : ENS_ENOMEM;
  }
  gzbuffer(gz, 1u << 17);
  for (;;) {
    if (cap - len < IDX_READ_PIECE) {
      size_t ncap = cap ? cap : IDX_READ_PIECE;
      while (ncap - len < IDX_READ_PIECE) {
        if (ncap > SIZE_MAX / 2) {
          ncap = 0;
          break;
        }
        ncap *= 2;
      }
      unsigned char *nb = ncap ? realloc(b, ncap) : NULL;
      if (!nb) {
        rc = ENS_ENOMEM;
        ens_errorf(err, errlen, "%s: out of memory after reading %zu bytes", path, len);
        goto cleanup;
      }
      b = nb;
      cap = ncap;
    }
    /* A short piece also bounds how much a truncated gzip stream can hide
     * (zlib drops the partial count of a call that hits a broken end). */
    int r = gzread(gz, b + len, IDX_READ_PIECE);
    if (r < 0) {
      int zerr = Z_OK;
      const char *msg = gzerror(gz, &zerr);
      if (zerr == Z_ERRNO) {
        rc = ENS_EIO;
        ens_errorf(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto cleanup;
      }
      /* zlib prefixes its message with the path; we already print it. */
      size_t plen = strlen(path);
      if (strncmp(msg, path, plen) == 0 && strncmp(msg + plen, ": ", 2) == 0)
        msg += plen + 2;
      size_t want = described_size(b, len);
      if (want)
        ens_errorf(err, errlen, "%s: truncated or corrupt gzip data (%s): expected %zu bytes of "
                   "IDX data, found at least %zu", path, msg, want, len);
      else
        ens_errorf(err, errlen, "%s: truncated or corrupt gzip data (%s) after %zu bytes", path,
                   msg, len);
      goto cleanup;
    }
    if (r == 0)
      break;
    len += (size_t)r;
  }
  if ((rc = ens_idx_parse(f, b, len, path, err, errlen)) != 0)
    goto cleanup;
  *buf = b;
  b = NULL;

cleanup:
  gzclose(gz);
  free(b);
  return rc;
}

/* Checks an image/label pair: labels 1-D non-negative integers, one per image,
 * and at least one image. *maxlab gets the largest label. */
int ens_idx_check_pair(int64_t *maxlab, const ens_idx *x, const ens_idx *y, char *err,
                       size_t errlen) {
  if (y->ndim != 1) {
    ens_errorf(err, errlen, "%s: labels: expected a 1-D IDX file, found %d dimensions", y->path,
            y->ndim);
    return ENS_EFORMAT;
  }
  if (!is_integer_type(y->type)) {
    const char *tname;
    type_size(y->type, &tname);
    ens_errorf(err, errlen, "%s: labels: expected an integer IDX type, found %s", y->path, tname);
    return ENS_EFORMAT;
  }
  if (x->count != y->count) {
    ens_errorf(err, errlen, "%s has %zu images but %s has %zu labels", x->path, x->count, y->path,
            y->count);
    return ENS_EFORMAT;
  }
  if (x->count == 0 || x->rowlen == 0) {
    ens_errorf(err, errlen, "%s: no data (%zu images of %zu values)", x->path, x->count, x->rowlen);
    return ENS_EFORMAT;
  }
  if (x->count > INT_MAX || x->rowlen > INT_MAX) {
    ens_errorf(err, errlen, "%s: %zu x %zu is too large (at most %d rows and %d features)", x->path,
            x->count, x->rowlen, INT_MAX, INT_MAX);
    return ENS_EFORMAT;
  }
  int64_t mx = 0;
  for (size_t i = 0; i < y->count; i++) {
    int64_t v = get_int(y, i);
    if (v < 0) {
      ens_errorf(err, errlen, "%s: negative label %lld at index %zu", y->path, (long long)v, i);
      return ENS_EFORMAT;
    }
    if (v > mx)
      mx = v;
  }
  *maxlab = mx;
  return 0;
}

/* Rows per chunk of x: IDX_CHUNK_ROWS, fewer for large rows so that a chunk
 * stays near IDX_CHUNK_BYTES (HDF5's default chunk cache size). */
static hsize_t chunk_rows(size_t n, size_t rowbytes) {
  size_t rows = IDX_CHUNK_BYTES / rowbytes;
  if (rows > IDX_CHUNK_ROWS)
    rows = IDX_CHUNK_ROWS;
  if (rows < 1)
    rows = 1;
  if (rows > n)
    rows = n;
  return (hsize_t)rows;
}

/* Writes /<grp>/x (n, rowlen) in the source type and /<grp>/y, with `source`
 * attributes naming the IDX files. */
static int write_split(hid_t file, const char *grp, const idx_file *x, const idx_file *y,
                       const char *out, char *err, size_t errlen) {
  int rc = ENS_EHDF5;
  hid_t g = H5I_INVALID_HID, space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
  hid_t dx = H5I_INVALID_HID, dy = H5I_INVALID_HID;
  int32_t *y32 = NULL;
  hid_t memtype, filetype;

  g = H5Gcreate2(file, grp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) {
    ens_errorf(err, errlen, "%s: cannot create group /%s", out, grp);
    goto cleanup;
  }

  /* Images keep their shape: (n, rows, cols) stays 3-D, so a layer list
   * sees (1, rows, cols) images; an MLP reads the rows flattened as before.
   * Other ranks are written (n, row length). */
  hsize_t dims[3] = {(hsize_t)x->count, (hsize_t)x->rowlen, 1};
  int xrank = 2;
  if (x->ndim == 3) {
    dims[1] = x->dims[1];
    dims[2] = x->dims[2];
    xrank = 3;
  }
  space = H5Screate_simple(xrank, dims, NULL);
  dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (space < 0 || dcpl < 0)
    goto fail_x;
  /* Large sets are chunked by rows and deflated; the shuffle filter groups
   * the bytes of multi-byte values, which helps deflate. Rows over 2 GiB
   * cannot form a chunk (HDF5's 4 GiB chunk limit), so they stay contiguous. */
  size_t rowbytes = x->rowlen * x->esize;
  if (x->count > IDX_CHUNK_ROWS && rowbytes <= ((size_t)1 << 31) &&
      H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
    hsize_t chunk[3] = {chunk_rows(x->count, rowbytes), dims[1], dims[2]};
    if (H5Pset_chunk(dcpl, xrank, chunk) < 0 || (x->esize > 1 && H5Pset_shuffle(dcpl) < 0) ||
        H5Pset_deflate(dcpl, IDX_DEFLATE_LEVEL) < 0)
      goto fail_x;
  }
  h5_types(x->type, &memtype, &filetype);
  dx = H5Dcreate2(g, "x", filetype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (dx < 0 || H5Dwrite(dx, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, x->data) < 0 ||
      ens_h5_attr_str(dx, ".", "source", x->path) != 0)
    goto fail_x;
  H5Sclose(space);
  space = H5I_INVALID_HID;

  /* Labels: ubyte stays uint8, the other integer types become int32 (they
   * were checked to be non-negative and fit). */
  hsize_t ny = (hsize_t)y->count;
  space = H5Screate_simple(1, &ny, NULL);
  if (space < 0)
    goto fail_y;
  if (y->type == 0x08) {
    dy = H5Dcreate2(g, "y", H5T_NATIVE_UINT8, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (dy < 0 || H5Dwrite(dy, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, y->data) < 0)
      goto fail_y;
  } else {
    y32 = malloc(y->count * sizeof *y32);
    if (!y32) {
      rc = ENS_ENOMEM;
      ens_errorf(err, errlen, "%s: out of memory converting the labels", y->path);
      goto cleanup;
    }
    for (size_t i = 0; i < y->count; i++)
      y32[i] = (int32_t)get_int(y, i);
    dy = H5Dcreate2(g, "y", H5T_NATIVE_INT32, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (dy < 0 || H5Dwrite(dy, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y32) < 0)
      goto fail_y;
  }
  if (ens_h5_attr_str(dy, ".", "source", y->path) != 0)
    goto fail_y;
  rc = 0;
  goto cleanup;

fail_x:
  ens_errorf(err, errlen, "%s: cannot write /%s/x (from %s)", out, grp, x->path);
  goto cleanup;
fail_y:
  ens_errorf(err, errlen, "%s: cannot write /%s/y (from %s)", out, grp, y->path);

cleanup:
  free(y32);
  if (dy >= 0)
    H5Dclose(dy);
  if (dx >= 0)
    H5Dclose(dx);
  if (dcpl >= 0)
    H5Pclose(dcpl);
  if (space >= 0)
    H5Sclose(space);
  if (g >= 0)
    H5Gclose(g);
  return rc;
}

static int write_classes(hid_t file, int32_t classes) {
  int rc = -1;
  hid_t space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
  if (space < 0)
    goto cleanup;
  attr = H5Acreate2(file, "classes", H5T_NATIVE_INT32, space, H5P_DEFAULT, H5P_DEFAULT);
  if (attr < 0 || H5Awrite(attr, H5T_NATIVE_INT32, &classes) < 0)
    goto cleanup;
  rc = 0;

cleanup:
  if (attr >= 0)
    H5Aclose(attr);
  if (space >= 0)
    H5Sclose(space);
  return rc;
}

int ens_idx_import(const char *images, const char *labels, const char *test_images,
                   const char *test_labels, const char *out_path, char *err, size_t errlen) {
  int rc = 0;
  idx_file tx, ty, sx, sy;
  unsigned char *btx = NULL, *bty = NULL, *bsx = NULL, *bsy = NULL; /* file contents */
  hid_t file = H5I_INVALID_HID;
  int has_test = test_images != NULL;
  int64_t max_train = 0, max_test = 0;
  H5E_auto2_t old_func = NULL;
  void *old_data = NULL;

  memset(&tx, 0, sizeof tx);
  memset(&ty, 0, sizeof ty);
  memset(&sx, 0, sizeof sx);
  memset(&sy, 0, sizeof sy);
  if (err && errlen)
    err[0] = '\0';
  H5Eget_auto2(H5E_DEFAULT, &old_func, &old_data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

  if (!images || !labels || !out_path) {
    rc = ENS_EINVAL;
    ens_errorf(err, errlen, "IDX import: the image file, label file and output path are required");
    goto cleanup;
  }
  if ((test_images == NULL) != (test_labels == NULL)) {
    rc = ENS_EINVAL;
    ens_errorf(err, errlen, "IDX import: test images and test labels must be given together");
    goto cleanup;
  }
  if ((rc = idx_read(&tx, &btx, images, err, errlen)) != 0 ||
      (rc = idx_read(&ty, &bty, labels, err, errlen)) != 0 ||
      (rc = ens_idx_check_pair(&max_train, &tx, &ty, err, errlen)) != 0)
    goto cleanup;
  if (has_test) {
    if ((rc = idx_read(&sx, &bsx, test_images, err, errlen)) != 0 ||
        (rc = idx_read(&sy, &bsy, test_labels, err, errlen)) != 0 ||
        (rc = ens_idx_check_pair(&max_test, &sx, &sy, err, errlen)) != 0)
      goto cleanup;
    if (sx.rowlen != tx.rowlen) {
      rc = ENS_EFORMAT;
      ens_errorf(err, errlen, "%s has %zu values per image but %s has %zu", test_images, sx.rowlen,
              images, tx.rowlen);
      goto cleanup;
    }
  }
  int64_t mx = max_train > max_test ? max_train : max_test;
  if (mx < 1 || mx >= INT32_MAX) {
    rc = ENS_EFORMAT;
    ens_errorf(err, errlen, "%s: largest label is %lld: expected at least 2 classes and fewer than "
            "2^31", mx == max_train ? labels : test_labels, (long long)mx);
    goto cleanup;
  }

  if (ens_mkdir_parent(out_path) != 0) {
    rc = ENS_EIO;
    ens_errorf(err, errlen, "%s: cannot create its folder: %s", out_path, strerror(errno));
    goto cleanup;
  }
  ens_tmp_sweep(out_path); /* temporary files of dead imports */
  /* Built in memory, then written and renamed into place with plain POSIX
   * calls (io/storage.h): a full disk is reported as such, nothing is left. */
  file = ens_storage_h5_memory(out_path);
  if (file < 0) {
    rc = ENS_EHDF5;
    ens_errorf(err, errlen, "%s: cannot create the output file in memory", out_path);
    goto cleanup;
  }
  if ((rc = write_split(file, "train", &tx, &ty, out_path, err, errlen)) != 0)
    goto cleanup;
  if (has_test && (rc = write_split(file, "test", &sx, &sy, out_path, err, errlen)) != 0)
    goto cleanup;
  if (write_classes(file, (int32_t)(mx + 1)) < 0) {
    rc = ENS_EHDF5;
    ens_errorf(err, errlen, "%s: cannot write the root attribute classes", out_path);
    goto cleanup;
  }
  rc = ens_storage_h5_publish(file, out_path, NULL, "cannot write", err, errlen);
  file = H5I_INVALID_HID;

cleanup:
  if (file >= 0)
    H5Fclose(file);
  H5Eset_auto2(H5E_DEFAULT, old_func, old_data);
  free(btx);
  free(bty);
  free(bsx);
  free(bsy);
  return rc;
}
