/* Data sets: the input HDF5 layout of DESIGN.md (/train, /test, optional /val),
 * IDX import, validation split and per-feature standardization. */
#ifndef ENS_DATA_H
#define ENS_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef struct ens_split {
  int n;       /* rows */
  int d;       /* features */
  float *x;    /* (n, d) row-major, owned */
  int32_t *y;  /* classification: (n), values in [0, classes), owned; else NULL */
  float *t;    /* regression: (n, targets) real-valued targets, owned; else NULL */
} ens_split;

typedef struct ens_data {
  ens_split train, test, val; /* val.n == 0 when absent */
  int regress;  /* 1: y were floating point (targets t), 0: integer labels (y) */
  int classes;  /* classification: number of classes */
  int targets;  /* regression: targets per row (T) */
} ens_data;

/* Reads `path` (DESIGN.md input layout). x of any integer or float type is
 * converted to float32, y of any integer type to int32 labels (classes),
 * y of a floating-point type of shape (n) or (n, T) to float32 regression
 * targets (finite values only; then regress = 1 and classes = 0). classes comes from the
 * root attribute `classes` when present, else max label + 1 over all splits.
 * Checks: shapes (x 2-D or more, flattened row-major to (n, d); y 1-D with n
 * rows), equal d across splits, labels in [0, classes), non-empty train and
 * test, finite x values. On error returns ENS_EIO/ENS_EFORMAT/ENS_EHDF5 with a
 * message naming the file and dataset in err, and leaves *out zeroed.
 * The caller frees with ens_data_free. */
int ens_data_load(ens_data *out, const char *path, char *err, size_t errlen);
void ens_data_free(ens_data *d);
void ens_split_free(ens_split *s);

/* Moves the last round(fraction * n) rows of a fixed permutation (drawn from
 * ENS_STREAM_SPLIT with `seed`) of train into val, when val is empty and
 * fraction > 0. Returns 0 or ENS_ENOMEM/ENS_EINVAL. */
int ens_data_split_val(ens_data *d, double fraction, uint64_t seed);

/* Per-feature mean and std of s (std computed in double, population variance;
 * a feature with std < 1e-6... treated as constant gets std 1). mean and std
 * are caller-provided arrays of s->d floats. */
void ens_standardize_fit(float *mean, float *std, const ens_split *s);
/* x <- (x - mean) / std in place. */
void ens_standardize_apply(ens_split *s, const float *mean, const float *std);

/* Turns integer labels into one regression target each (task = regress on
 * integer y): t = (float)y, y freed. Returns 0 or ENS_ENOMEM. */
int ens_data_labels_to_targets(ens_data *d);

/* Converts gzip (or plain) IDX image and label files to the input layout.
 * Images of any rank (n, r, c) are flattened; uint8 stays uint8 in the file.
 * test_images/test_labels may be NULL (then no /test group). The output is
 * written to a temporary file and renamed, so a failure leaves nothing.
 * Returns 0 or an error with a message naming the offending file. */
int ens_idx_import(const char *images, const char *labels, const char *test_images,
                   const char *test_labels, const char *out_path, char *err, size_t errlen);

#endif
