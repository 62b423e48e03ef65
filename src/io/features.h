/* The columns of tabular data between ens import csv, the result and ens
 * predict: what a result knows about its input columns (names, one-hot
 * categories, targets, id column), reading the rows to predict from an
 * HDF5 input or a CSV file into the model's feature order (matched by name
 * when both sides name their features), and the CSV form of a prediction.
 * The inference itself never sees any of this: it gets raw rows (n, d) in
 * the model's feature order and returns the prediction datasets. */
#ifndef ENS_IO_FEATURES_H
#define ENS_IO_FEATURES_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* What a result file says about its input columns. Every array is owned. */
typedef struct ens_schema {
  int d;                /* model inputs */
  char **feature_names; /* (d) /model/feature_names, or NULL when the result has none */
  int ncat;             /* categorical columns (/model/categories) */
  char **cat_columns;   /* (ncat) column names */
  int *cat_counts;      /* (ncat) */
  char ***cat_values;   /* (ncat) categories of each column */
  int ntargets;         /* target columns named in /model/target_names (0: unknown) */
  char **target_names;
  int regress, classes, T;
  char **class_names;   /* (classes) or NULL */
  char *id_column;      /* /model attribute id_column (ens import csv --id), or NULL */
  int ndropped;         /* columns left out at import (--drop), accepted and ignored */
  char **dropped;
  char delimiter, decimal; /* of the imported CSV (/model attributes), 0 when unknown */
  int no_header;           /* the imported CSV had no header line (columns 0, 1, ...) */
  int img[3];              /* a model trained on images: their shape (C, H, W); else 0 */
} ens_schema;

/* Reads the schema of the result open in mf; d, regress, classes and T come
 * from the caller (who has checked them). Absent parts stay NULL/0. A
 * result written before results kept their columns takes them from
 * data_path (its [data] path; may be NULL) when that file still names the
 * same features. Returns 0 or ENS_ENOMEM. Free with ens_schema_free. */
int ens_schema_load(ens_schema *s, hid_t mf, int d, int regress, int classes, int T,
                    const char *data_path);
void ens_schema_free(ens_schema *s);

/* Copies what ens import csv stored about the columns of data file
 * data_path into the result f being written: /categories to
 * /model/categories, /target_names to /model/target_names (when /model has
 * none yet), /dropped_columns to /model/dropped_columns, and the root
 * attributes id_column, csv_delimiter and csv_decimal to /model. Parts the
 * data file lacks are skipped. Returns 0 or ENS_EHDF5. */
int ens_schema_store(hid_t f, const char *data_path);

/* Rows to predict, in the model's feature order. */
typedef struct ens_rows {
  int n, d;
  float *x;            /* (n, d) raw features (before standardization) */
  int32_t *y;          /* (n) class labels in the model's classes, or NULL */
  float *t;            /* (n, T) regression targets, or NULL */
  char truth[700];     /* where y or t came from, for the printed score */
  char **ids;          /* (n) identifiers (ens import csv --id), or NULL */
  char *id_name;       /* their column name */
  int64_t *lines;      /* (n) line of each row in its source CSV, or NULL */
  char dataset[600];   /* the dataset read, or "csv" */
  int img[3];          /* HDF5 rows of rank 3 or 4: the image shape (C, H, W); else 0 */
  int matched;         /* features matched by name */
  int reordered;       /* ... and they came in another order than the model's */
  long unseen;         /* values of categories the model did not see (all-zero blocks) */
} ens_rows;

typedef struct ens_rows_opts {
  const char *dataset; /* HDF5 input: the rows (NULL: /x, else /test/x) */
  char delimiter;      /* CSV input: 0 = the one stored at import, else ',' */
  char decimal;        /* CSV input: 0 = the one stored at import, else '.' */
  int no_header;       /* CSV input: 1 = no header line (also when the import had none) */
} ens_rows_opts;

/* Reads the rows of `input`: an HDF5 file (by its content; a name ending in
 * .h5/.hdf5 must be one) or a CSV text file (gzip read too).
 * HDF5: the dataset's rows as float32; when both the input (/feature_names)
 * and the model name their features, columns are matched by name: the same
 * names in another order are reordered, a one-hot category of the input that
 * the model lacks is an unseen category (all-zero block, counted in unseen),
 * a one-hot category of the model that the input lacks is 0, and any other
 * missing or extra name is an error naming them. Labels or targets beside
 * the rows (/y for /x, /test/y for /test/x), ids and lines likewise.
 * CSV: columns by header name in any order: the model's feature columns
 * must all be there; the target columns, the id column and columns dropped at
 * import may be; any other column is an error. Values are encoded as at
 * import (numbers with the stored decimal mark, one-hot categories; an unseen
 * category gives an all-zero block and is counted). A missing feature value is
 * an error naming line and column. Returns 0 or an ENS_E* code with a message
 * naming the file (and line and column) in err. Free with ens_rows_free. */
int ens_rows_read(ens_rows *r, const ens_schema *s, const char *input, const ens_rows_opts *o,
                  char *err, size_t errlen);
void ens_rows_free(ens_rows *r);

/* Writes /id and /line of r (when present) into the predict output f. */
int ens_rows_write_h5(hid_t f, const ens_rows *r);

/* 1 when an output path names a CSV file (ends in .csv, any case). */
int ens_is_csv_path(const char *path);

/* Writes the CSV form of the predict output f (its /probs, /pred,
 * /uncertainty or /mean, /var, /var_aleatoric, /var_epistemic) to `path`
 * atomically (temporary file, fsync, rename): one line per row, in input
 * order: the id column (when r has ids), line (when r has lines), then
 * classify: class, class_name (with class names), p_<class> per class,
 * entropy, expected_entropy, mutual_information; regress, per target <t>:
 * <t>_mean, <t>_std, <t>_lower90, <t>_upper90 (mean -+ 1.645 std, the
 * central 90% interval of a Gaussian), <t>_var_aleatoric, <t>_var_epistemic.
 * Returns 0 or an ENS_E* code with the reason in err. */
int ens_rows_write_csv(const char *path, hid_t f, const ens_schema *s, const ens_rows *r,
                       char *err, size_t errlen);

#endif
