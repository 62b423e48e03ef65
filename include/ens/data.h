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
  int img[3];  /* image shape (C, H, W) of a row when x was (n, H, W) (C = 1) or
                  (n, C, H, W); all 0 for (n, d) or other ranks */
} ens_split;

typedef struct ens_data {
  ens_split train, test, val; /* val.n == 0 when absent */
  int regress;  /* 1: y were floating point (targets t), 0: integer labels (y) */
  int classes;  /* classification: number of classes */
  int targets;  /* regression: targets per row (T) */
  int borrowed; /* 1: the arrays live in caller memory (ens_data_load_in with an
                   arena); ens_data_free and ens_data_split_val never free or
                   resize them */
} ens_data;

/* Caller-owned memory that ens_data_load_in carves its arrays from, for
 * example a node-shared MPI window: base aligned to ENS_DATA_ALIGN. */
#define ENS_DATA_ALIGN 64
typedef struct ens_data_arena {
  unsigned char *base;
  size_t size, used;
} ens_data_arena;

/* Takes `bytes` (rounded up to ENS_DATA_ALIGN) from a; NULL when a is full. */
void *ens_data_arena_take(ens_data_arena *a, size_t bytes);

/* Reads `path` (DESIGN.md input layout). x of any integer or float type is
 * converted to float32, y of any integer type to int32 labels (classes),
 * y of a floating-point type of shape (n) or (n, T) to float32 regression
 * targets (finite values only; then regress = 1 and classes = 0). classes comes from the
 * root attribute `classes` when present, else max label + 1 over all splits.
 * Checks: shapes (x 2-D or more, flattened row-major to (n, d); y 1-D with n
 * rows), equal d across splits, labels in [0, classes), non-empty train,
 * finite x values. /test and /val are optional (test.n or val.n is then 0). On error returns ENS_EIO/ENS_EFORMAT/ENS_EHDF5 with a
 * message naming the file and dataset in err, and leaves *out zeroed.
 * The caller frees with ens_data_free. */
int ens_data_load(ens_data *out, const char *path, char *err, size_t errlen);
/* The same, with the arrays (x, labels, targets) taken from `arena` (may be
 * NULL: malloc) and out->borrowed set; temporary buffers still use malloc.
 * An arena that is too small fails with ENS_ENOMEM. */
int ens_data_load_in(ens_data *out, const char *path, ens_data_arena *arena, char *err,
                     size_t errlen);
/* What ens_data_load_in will take from an arena for `path`: *bytes (each
 * array rounded up to ENS_DATA_ALIGN), the number of values of /train/y
 * (labels, or n * T targets) and whether /train/y is floating point. All 0
 * when the file cannot be read; the load then says why. Reads metadata only. */
void ens_data_probe(const char *path, size_t *bytes, size_t *train_y_values, int *y_float);
void ens_data_free(ens_data *d);
void ens_split_free(ens_split *s);

/* Moves the last round(fraction * n) rows of a fixed permutation (drawn from
 * ENS_STREAM_SPLIT with `seed`) of train into val, when val is empty and
 * fraction > 0. With borrowed arrays val takes the tail of train's arrays
 * (which then hold n rows in all); otherwise train's arrays shrink and val's
 * are malloc'd. Returns 0 or ENS_ENOMEM/ENS_EINVAL. */
int ens_data_split_val(ens_data *d, double fraction, uint64_t seed);

/* Per-feature mean and std of s (std computed in double, population variance;
 * a feature with std < 1e-6... treated as constant gets std 1). mean and std
 * are caller-provided arrays of s->d floats. */
void ens_standardize_fit(float *mean, float *std, const ens_split *s);
/* The same with one mean and std per group of `group` consecutive features
 * (per channel of an image row: group = H W), or for all features at once
 * (group = d), written to every feature of the group: the arrays keep one
 * value per feature, so applying them is ens_standardize_apply. */
void ens_standardize_fit_grouped(float *mean, float *std, const ens_split *s, int group);
/* x <- (x - mean) / std in place. */
void ens_standardize_apply(ens_split *s, const float *mean, const float *std);

/* Turns integer labels into one regression target each (task = regress on
 * integer y): t = (float)y, in place in y's array (t takes it over, y
 * becomes NULL). Returns 0. */
int ens_data_labels_to_targets(ens_data *d);

/* Converts gzip (or plain) IDX image and label files to the input layout.
 * Images (n, rows, cols) keep that shape (a layer list takes them as (1, rows,
 * cols) images; an MLP flattens them); other ranks are written (n, row
 * length); uint8 stays uint8 in the file.
 * test_images/test_labels may be NULL (then no /test group). The output is
 * written to a temporary file and renamed, so a failure leaves nothing.
 * Returns 0 or an error with a message naming the offending file. */
int ens_idx_import(const char *images, const char *labels, const char *test_images,
                   const char *test_labels, const char *out_path, char *err, size_t errlen);

/* ---- CSV import (src/io/csv.c) -------------------------------------------
 * RFC 4180 text (quoted delimiters, doubled quotes, newlines inside quotes),
 * LF or CRLF line ends, an optional UTF-8 byte order mark, an optional final
 * newline; blanks (space, tab) around unquoted fields are dropped and lines
 * that hold nothing but blanks are skipped. */

typedef struct ens_csv_opts {
  const char *name; /* names the input in messages (the file path); NULL = "<input>" */
  char delimiter;   /* field separator; 0 = ','; never '"', CR or LF */
  int no_header;    /* 1: the first record is data and columns are named "0", "1", ... */
} ens_csv_opts;

/* A parsed CSV table: every field as NUL-terminated text, quotes removed. */
typedef struct ens_csv {
  char *name;     /* copy of ens_csv_opts.name */
  int cols;       /* fields per record (>= 1) */
  int rows;       /* data records, header excluded (>= 1) */
  char **names;   /* (cols) column names, unique and non-empty */
  char **fields;  /* (rows * cols) row-major field texts */
  long *lines;    /* (rows) 1-based line on which each record starts */
  long header_line; /* line of the header record; 0 with no_header */
  char *store;    /* text of every field and generated name (internal) */
  char delimiter; /* the field separator it was parsed with */
} ens_csv;

/* Parses len bytes of buf (NUL bytes are an error; buf need not end in NUL).
 * Errors (ENS_EFORMAT) name the input, the line and, where one is at fault,
 * the column: a ragged record ("expected 4 fields, got 3"), an unclosed quote,
 * an empty or duplicated column name, an empty input or a header without data
 * rows. ENS_EINVAL for a bad delimiter, ENS_ENOMEM. On error *out is zeroed;
 * on success the caller frees it with ens_csv_free. */
int ens_csv_parse(ens_csv *out, const char *buf, size_t len, const ens_csv_opts *o, char *err,
                  size_t errlen);
void ens_csv_free(ens_csv *c);
/* Reads file `path` (gzip-compressed files too) and parses it as
 * ens_csv_parse does (o->name is replaced by path). */
int ens_csv_load(ens_csv *out, const char *path, const ens_csv_opts *o, char *err, size_t errlen);
/* A field as a number ("C" locale, blanks around allowed, finite float32)
 * written with decimal mark `decimal` (0 or '.', or e.g. ','): 0 and *v set,
 * 1 not a number, 2 out of range for float32. */
int ens_csv_number(const char *s, char decimal, double *v);
/* 1 when a field is a missing value: empty, NA, NaN, nan or ?. */
int ens_csv_missing(const char *s);
/* s cut and escaped for a one-line message, into dst (len bytes); returns dst. */
const char *ens_csv_show(char *dst, size_t len, const char *s);
/* A hint for messages when `header` (a one-column header) holds a likely
 * delimiter other than delim: " (the header holds ';': ...)", else "". */
void ens_csv_delimiter_hint(char *buf, size_t len, const char *header, char delim);

typedef enum { ENS_CSV_AUTO, ENS_CSV_CLASSIFY, ENS_CSV_REGRESS } ens_csv_task;

typedef struct ens_csv_encode_opts {
  const char *target;   /* "name|index[,name|index...]": header names first, else 0-based indexes */
  ens_csv_task task;    /* auto: classify for one non-numeric target, else regress */
  int drop_missing;     /* drop rows with a missing value instead of failing */
  double test_fraction; /* without a test table: share of rows moved to test, in (0, 1) */
  double val_fraction;  /* share of the remaining train rows moved to val, in [0, 1) */
  uint64_t split_seed;  /* key of both split permutations (ENS_STREAM_SPLIT) */
  char decimal;         /* decimal mark of numbers: 0 or '.' (default), or e.g. ',' */
  const char *drop;     /* "name|index[,...]": columns left out entirely, or NULL */
  const char *id;       /* name|index of an identifier column carried as text, or NULL */
  const char *keep;     /* "name|index[,...]": columns kept as categories even when they
                           look like dates or identifiers, or NULL */
} ens_csv_encode_opts;

/* What an import did, for the caller to report. */
typedef struct ens_csv_summary {
  ens_csv_task task;         /* ENS_CSV_CLASSIFY or ENS_CSV_REGRESS */
  int task_auto;             /* the task was chosen by ENS_CSV_AUTO */
  int integer_codes;         /* classify on a numeric target (codes become classes) */
  int classes;               /* classify: C, else 0 */
  int targets;               /* T target columns */
  int features;              /* d, after one-hot encoding */
  int numeric_cols;          /* feature columns of each kind */
  int categorical_cols;
  int rows;                  /* main-file data rows, before dropping */
  int dropped;               /* main-file rows dropped for missing values */
  int test_dropped;          /* test-file rows dropped for missing values */
  long unseen;               /* test-file fields whose category the main file lacks */
  int train_rows, test_rows, val_rows;
} ens_csv_summary;

/* One split of an encoded table. */
typedef struct ens_csv_part {
  int n;           /* rows */
  float *x;        /* (n, d) features, one-hot columns 0/1 */
  int32_t *label;  /* (n) class indexes in [0, classes) when classifying, else NULL */
  float *y;        /* (n, targets) regression targets, else NULL */
  long *line;      /* (n) line of each row in its source file */
  char **id;       /* (n) the --id column's text of each row, or NULL */
} ens_csv_part;

/* An encoded data set. Categories are learned from every kept row of the
 * main table (before the split), sorted in byte order (strcmp); numeric class
 * codes are sorted numerically and named by their decimal text. */
typedef struct ens_csv_data {
  ens_csv_summary info;
  int d, targets, classes;
  char **feature_names;  /* (d) "column" or, for one-hot columns, "column=value" */
  char **target_names;   /* (targets) */
  char **class_names;    /* (classes), classify only */
  int ncat;              /* categorical columns (a string target included) */
  char **cat_columns;    /* (ncat) their names, in file order */
  int *cat_counts;       /* (ncat) */
  char ***cat_values;    /* (ncat) sorted category lists of cat_counts[k] strings */
  ens_csv_part train, test, val; /* val.n == 0 when absent */
  char *id_column;       /* the --id column's name, or NULL */
  int ndropped;          /* --drop columns */
  char **dropped;        /* (ndropped) their names */
} ens_csv_data;

/* Infers column types over the main table `m` (numeric when every non-missing
 * value parses as a finite number; an error when more than half but not all
 * do; categorical otherwise), one-hot encodes the feature columns, resolves
 * the task and targets, then encodes `test` (may be NULL: split m instead by
 * test_fraction) with m's categories (an unseen category gives an all-zero
 * one-hot block and counts in info.unseen) and moves val_fraction of train to
 * val. Test columns are matched to m's by header name, in any order. Missing
 * values are empty fields, NA, NaN, nan and ?. Returns 0, ENS_EFORMAT or
 * ENS_EINVAL with a message naming the input, line and column, or ENS_ENOMEM;
 * on error *out is zeroed. The caller frees with ens_csv_data_free. */
int ens_csv_encode(ens_csv_data *out, const ens_csv *m, const ens_csv *test,
                   const ens_csv_encode_opts *o, char *err, size_t errlen);
void ens_csv_data_free(ens_csv_data *d);

typedef struct ens_csv_import_opts {
  const char *path;       /* main CSV file (gzip-compressed files are read too) */
  const char *test_path;  /* test CSV file, or NULL to split path by enc.test_fraction */
  const char *out_path;   /* HDF5 output; missing parent directories are created */
  ens_csv_opts csv;       /* delimiter, no_header (name is set per file) */
  ens_csv_encode_opts enc;
} ens_csv_import_opts;

/* Reads, parses and encodes the CSV file(s) and writes the input layout of
 * DESIGN.md plus names: /train/x, /test/x, optional /val/x (float32 (n, d));
 * /<split>/y int32 (n) when classifying (root attribute `classes`, string
 * dataset /class_names) or float32 (n) or (n, T) when regressing; string
 * datasets /target_names (T), /feature_names (d), /categories/<column> ('/'
 * in a name becomes '_'); root attributes `source` and `task`. The file is
 * written to a temporary name beside out_path, fsynced and renamed, so an
 * error leaves nothing behind. *sum (may be NULL) says what was done.
 * Returns 0 or an error with a message naming the file, line and column. */
int ens_csv_import(ens_csv_summary *sum, const ens_csv_import_opts *o, char *err, size_t errlen);

#endif
