/* Small HDF5 helpers shared by the result writer, the trunk loader and
 * prediction: datasets created with their parent groups, typed attributes,
 * and reads that check the expected size. All return 0 or ENS_EHDF5/ENS_EFORMAT. */
#ifndef ENS_IO_H5UTIL_H
#define ENS_IO_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* Silences HDF5's automatic error printing (we report our own messages).
 * Instead, a failing HDF5 call records the system error (errno) that its
 * error stack mentions, if any: HDF5 words a failed read or write of the
 * disk as "..., errno = 28, error message = '...'" and would otherwise hide
 * it from the caller. */
void ens_h5_quiet(void);
/* The system error recorded by the first failing HDF5 call since the last
 * ens_h5_take_errno(), or 0; clears it. Take it before a sequence of writes
 * to forget earlier failures (probes of absent files). */
int ens_h5_take_errno(void);

/* Creates dataset `path` (parents created as needed) of `rank` dims and
 * writes data (memory type = file type = `type`). Large datasets are chunked
 * and compressed when `compress` is set. */
int ens_h5_write(hid_t loc, const char *path, hid_t type, int rank, const hsize_t *dims,
                 const void *data, int compress);
/* Creates an empty dataset (rank dims) to be filled with ens_h5_write_rows. */
int ens_h5_create(hid_t loc, const char *path, hid_t type, int rank, const hsize_t *dims);
/* Writes rows [row, row + nrows) along the first dimension of an existing
 * dataset from data (contiguous). */
int ens_h5_write_rows(hid_t loc, const char *path, hid_t type, hsize_t row, hsize_t nrows,
                      const void *data);

/* Writes n strings as a 1-D dataset of variable-length UTF-8 strings
 * (parents created as needed); h5py reads it as an array of bytes/str. */
int ens_h5_write_strings(hid_t loc, const char *path, const char *const *s, size_t n);

int ens_h5_attr_str(hid_t loc, const char *obj, const char *name, const char *value);
int ens_h5_attr_i64(hid_t loc, const char *obj, const char *name, int64_t value);
int ens_h5_attr_f64(hid_t loc, const char *obj, const char *name, double value);
/* Reads an attribute; ENS_ENOTFOUND when absent. str: malloc'd, caller frees. */
int ens_h5_get_attr_i64(hid_t loc, const char *obj, const char *name, int64_t *value);
int ens_h5_get_attr_f64(hid_t loc, const char *obj, const char *name, double *value);
int ens_h5_get_attr_str(hid_t loc, const char *obj, const char *name, char **value);

/* Copies the 1-D string dataset src_path of file src_file (when it exists
 * and holds n strings) to dst_path of dst. Returns 0, ENS_ENOTFOUND or
 * ENS_EHDF5. */
int ens_h5_copy_names(hid_t dst, const char *dst_path, const char *src_file, const char *src_path,
                      long long n);
/* Reads a 1-D string dataset of exactly n strings (variable-length) into a NULL-terminated malloc'd array of
 * malloc'd strings; NULL when absent, of another shape, or not strings. */
char **ens_h5_read_strings(hid_t loc, const char *path, long long n);
/* Why dataset ds could not be read, for a message: "it is compressed with
 * filter 32000 (lzf), which this HDF5 library cannot decode", or "HDF5
 * cannot read or convert it". */
void ens_h5_read_failure(hid_t ds, char *buf, size_t len);
/* 1 when `bytes` (a size declared by a file) fit in this node's physical
 * memory, so allocating them is worth trying; 0 otherwise. */
int ens_h5_affordable(unsigned long long bytes);

/* Creates group `path` (and its parents) unless it exists. */
int ens_h5_group(hid_t loc, const char *path);
/* 1 when `path` names a link that exists (every parent checked). */
int ens_h5_exists(hid_t loc, const char *path);
/* Number of elements of dataset path, or -1 when absent. dims (up to 8)
 * optionally receives its shape and rank its rank. */
long long ens_h5_size(hid_t loc, const char *path, int *rank, hsize_t *dims);
/* Reads all of dataset path converted to `type`; it must hold exactly `n`
 * elements (else ENS_EFORMAT). */
int ens_h5_read(hid_t loc, const char *path, hid_t type, void *out, size_t n);
/* Reads the first n elements of a 1-D dataset holding at least n (else
 * ENS_EFORMAT), converted to `type`; the rest is never read or allocated. */
int ens_h5_read_prefix(hid_t loc, const char *path, hid_t type, void *out, size_t n);
/* Reads rows [row, row+nrows) of a dataset whose rows have `rowlen` elements. */
int ens_h5_read_rows(hid_t loc, const char *path, hid_t type, hsize_t row, hsize_t nrows,
                     size_t rowlen, void *out);

#endif
