/* Tabular columns between import, result and predict (see features.h): the
 * schema a result keeps of its input columns, the rows to predict read from
 * HDF5 or CSV in the model's feature order (matched by name), and the CSV
 * form of a prediction. */
#include "io/features.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ens/data.h"
#include "ens/error.h"
#include "io/fsutil.h"
#include "io/h5util.h"
#include "io/storage.h"

/* Names listed in a message before "and N more". */
#define LIST_MAX 8

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

static void free_strs(char **v, long long n) {
  for (long long i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

/* A 1-D string dataset of any length, or NULL; *n receives its length. */
static char **read_names(hid_t f, const char *path, int *n) {
  int rank = 0;
  hsize_t dims[8];
  long long k = ens_h5_exists(f, path) ? ens_h5_size(f, path, &rank, dims) : -1;
  *n = 0;
  if (k < 1 || rank != 1 || k > INT_MAX)
    return NULL;
  char **v = ens_h5_read_strings(f, path, k);
  if (v)
    *n = (int)k;
  return v;
}

/* ---- schema ------------------------------------------------------------- */

void ens_schema_free(ens_schema *s) {
  if (!s)
    return;
  free_strs(s->feature_names, s->d);
  for (int k = 0; k < s->ncat; k++)
    free_strs(s->cat_values ? s->cat_values[k] : NULL, s->cat_counts ? s->cat_counts[k] : 0);
  free_strs(s->cat_columns, s->ncat);
  free(s->cat_counts);
  free(s->cat_values);
  free_strs(s->target_names, s->ntargets);
  free_strs(s->class_names, s->classes);
  free(s->id_column);
  free_strs(s->dropped, s->ndropped);
  memset(s, 0, sizeof(*s));
}

/* One character of a string attribute of obj (delimiter, decimal mark). */
static char attr_char(hid_t f, const char *obj, const char *name) {
  char *v = NULL, c = 0;
  if (ens_h5_get_attr_str(f, obj, name, &v) == 0 && v && strlen(v) == 1)
    c = v[0];
  free(v);
  return c;
}

/* The column descriptions under group grp of f ("/model" in a result, "" in
 * an ens import csv data file): target and dropped columns, the id column,
 * delimiter and decimal mark, and the categories. */
static int load_columns(ens_schema *s, hid_t f, const char *grp) {
  char p[64];
  const char *obj = grp[0] ? grp : "/";
  snprintf(p, sizeof(p), "%s/target_names", grp);
  s->target_names = read_names(f, p, &s->ntargets);
  snprintf(p, sizeof(p), "%s/dropped_columns", grp);
  s->dropped = read_names(f, p, &s->ndropped);
  if (ens_h5_get_attr_str(f, obj, "id_column", &s->id_column)) {
    free(s->id_column);
    s->id_column = NULL;
  }
  s->delimiter = attr_char(f, obj, "csv_delimiter");
  s->decimal = attr_char(f, obj, "csv_decimal");
  char *h = NULL;
  s->no_header = ens_h5_get_attr_str(f, obj, "csv_header", &h) == 0 && h && !strcmp(h, "no");
  free(h);
  snprintf(p, sizeof(p), "%s/categories", grp);
  if (!ens_h5_exists(f, p))
    return 0;
  hid_t g = H5Gopen2(f, p, H5P_DEFAULT);
  H5G_info_t gi;
  if (g < 0 || H5Gget_info(g, &gi) < 0 || gi.nlinks > (hsize_t)INT_MAX / 2) {
    if (g >= 0)
      H5Gclose(g);
    return 0;
  }
  int n = (int)gi.nlinks, ret = 0;
  s->cat_columns = calloc((size_t)n + 1, sizeof(char *));
  s->cat_counts = calloc((size_t)n + 1, sizeof(int));
  s->cat_values = calloc((size_t)n + 1, sizeof(char **));
  if (!s->cat_columns || !s->cat_counts || !s->cat_values)
    ret = ENS_ENOMEM;
  for (int i = 0; !ret && i < n; i++) {
    char name[1024];
    if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, (hsize_t)i, name, sizeof(name),
                           H5P_DEFAULT) < 0)
      continue;
    char *col = NULL;
    int cnt = 0;
    char **vals = read_names(g, name, &cnt);
    if (!vals || ens_h5_get_attr_str(g, name, "column", &col)) {
      free(col);
      free_strs(vals, cnt);
      continue;
    }
    s->cat_columns[s->ncat] = col;
    s->cat_counts[s->ncat] = cnt;
    s->cat_values[s->ncat] = vals;
    s->ncat++;
  }
  H5Gclose(g);
  return ret;
}

/* The column parts of s, emptied (before they are loaded from elsewhere). */
static void clear_columns(ens_schema *s) {
  for (int k = 0; k < s->ncat; k++)
    free_strs(s->cat_values ? s->cat_values[k] : NULL, s->cat_counts ? s->cat_counts[k] : 0);
  free_strs(s->cat_columns, s->ncat);
  free(s->cat_counts);
  free(s->cat_values);
  free_strs(s->target_names, s->ntargets);
  free(s->id_column);
  free_strs(s->dropped, s->ndropped);
  s->cat_columns = NULL;
  s->cat_counts = NULL;
  s->cat_values = NULL;
  s->target_names = NULL;
  s->id_column = NULL;
  s->dropped = NULL;
  s->ncat = s->ntargets = s->ndropped = 0;
  s->delimiter = s->decimal = 0;
  s->no_header = 0;
}

int ens_schema_load(ens_schema *s, hid_t mf, int d, int regress, int classes, int T,
                    const char *data_path) {
  memset(s, 0, sizeof(*s));
  s->d = d;
  s->regress = regress;
  s->classes = regress ? 0 : classes;
  s->T = regress ? T : 0;
  s->feature_names = ens_h5_read_strings(mf, "/model/feature_names", d);
  int64_t ich = 0, ih = 0, iw = 0; /* layer lists trained on images */
  if (ens_h5_get_attr_i64(mf, "/model", "input_channels", &ich) == 0 &&
      ens_h5_get_attr_i64(mf, "/model", "input_height", &ih) == 0 &&
      ens_h5_get_attr_i64(mf, "/model", "input_width", &iw) == 0 && ich > 0 && ih > 0 && iw > 0 &&
      ich * ih * iw == d) {
    s->img[0] = (int)ich;
    s->img[1] = (int)ih;
    s->img[2] = (int)iw;
  }
  if (!regress)
    s->class_names = ens_h5_read_strings(mf, "/model/class_names", classes);
  int ret = load_columns(s, mf, "/model");
  /* A result written before it kept its columns (no csv_delimiter): the
   * data file it was trained on says, when it is still there and names the
   * same features. */
  if (ret || s->delimiter || !data_path || !s->feature_names || H5Fis_hdf5(data_path) <= 0)
    return ret;
  hid_t df = H5Fopen(data_path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (df < 0)
    return 0;
  char **names = ens_h5_read_strings(df, "/feature_names", d);
  int same = names != NULL;
  for (int j = 0; same && j < d; j++)
    same = !strcmp(names[j], s->feature_names[j]);
  free_strs(names, d);
  if (same) {
    clear_columns(s);
    ret = load_columns(s, df, "");
  }
  H5Fclose(df);
  return ret;
}

static int copy_obj(hid_t dst, const char *dpath, hid_t src, const char *spath) {
  if (!ens_h5_exists(src, spath) || ens_h5_exists(dst, dpath))
    return 0;
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  if (lcpl < 0)
    return ENS_EHDF5;
  H5Pset_create_intermediate_group(lcpl, 1);
  H5Pset_char_encoding(lcpl, H5T_CSET_UTF8);
  int ret = H5Ocopy(src, spath, dst, dpath, H5P_DEFAULT, lcpl) >= 0 ? 0 : ENS_EHDF5;
  H5Pclose(lcpl);
  return ret;
}

int ens_schema_store(hid_t f, const char *data_path) {
  if (H5Fis_hdf5(data_path) <= 0)
    return 0;
  hid_t src = H5Fopen(data_path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (src < 0)
    return 0;
  int ret = 0;
  ret |= copy_obj(f, "/model/categories", src, "/categories");
  ret |= copy_obj(f, "/model/target_names", src, "/target_names");
  ret |= copy_obj(f, "/model/dropped_columns", src, "/dropped_columns");
  static const char *const attrs[] = {"id_column", "csv_delimiter", "csv_decimal", "csv_header"};
  for (int i = 0; i < 4; i++) {
    char *v = NULL;
    if (ens_h5_get_attr_str(src, "/", attrs[i], &v) == 0 && v)
      ret |= ens_h5_attr_str(f, "/model", attrs[i], v);
    free(v);
  }
  H5Fclose(src);
  return ret ? ENS_EHDF5 : 0;
}

/* ---- names -------------------------------------------------------------- */

typedef struct name_ix {
  const char *s;
  int i;
} name_ix;

static int cmp_name_ix(const void *a, const void *b) {
  const name_ix *x = a, *y = b;
  int c = strcmp(x->s, y->s);
  return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* A sorted index of n names, for find(). */
static name_ix *index_names(char *const *names, int n) {
  name_ix *v = malloc((size_t)(n ? n : 1) * sizeof(*v));
  if (!v)
    return NULL;
  for (int i = 0; i < n; i++)
    v[i] = (name_ix){names[i], i};
  qsort(v, (size_t)n, sizeof(*v), cmp_name_ix);
  return v;
}

/* Position of s among the names indexed by v (n), or -1. */
static int find(const name_ix *v, int n, const char *s) {
  int lo = 0, hi = n;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2, c = strcmp(v[mid].s, s);
    if (c == 0) {
      while (mid > 0 && !strcmp(v[mid - 1].s, s))
        mid--;
      return v[mid].i;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

/* Appends 'name' to a list of names for a message ("'a', 'b' and 3 more"). */
typedef struct name_list {
  char text[1200];
  int count;
} name_list;

static void list_add(name_list *l, const char *name) {
  size_t used = strlen(l->text);
  if (l->count < LIST_MAX && used + strlen(name) + 8 < sizeof(l->text))
    snprintf(l->text + used, sizeof(l->text) - used, "%s'%s'", l->count ? ", " : "", name);
  l->count++;
}

static const char *list_end(name_list *l, char *buf, size_t len) {
  if (l->count > LIST_MAX)
    snprintf(buf, len, "%s and %d more", l->text, l->count - LIST_MAX);
  else
    snprintf(buf, len, "%s", l->text);
  return buf;
}

/* The categorical column (index into s->cat_columns) and category of model
 * feature name f ("column=value"), or -1. */
static int cat_of(const ens_schema *s, const char *f, int *value) {
  for (int k = 0; k < s->ncat; k++) {
    size_t cl = strlen(s->cat_columns[k]);
    if (strncmp(f, s->cat_columns[k], cl) || f[cl] != '=')
      continue;
    for (int j = 0; j < s->cat_counts[k]; j++)
      if (!strcmp(f + cl + 1, s->cat_values[k][j])) {
        *value = j;
        return k;
      }
  }
  return -1;
}

/* ---- rows from HDF5 ------------------------------------------------------ */

void ens_rows_free(ens_rows *r) {
  if (!r)
    return;
  free(r->x);
  free(r->y);
  free(r->t);
  free_strs(r->ids, r->n);
  free(r->id_name);
  free(r->lines);
  memset(r, 0, sizeof(*r));
}

/* Reads rows (n, d) of `path` in `f` as float32, any numeric type: a rank
 * >= 2 dataset whose size fits an int count and this node's memory, with
 * finite values. Returns 0 or ENS_EFORMAT with the reason in why. */
static int read_rows(hid_t f, const char *path, float **x, int *n, int *d, char *why,
                     size_t whylen) {
  int rank = 0;
  hsize_t dims[8];
  long long total = ens_h5_size(f, path, &rank, dims);
  *x = NULL;
  if (total < 0) {
    snprintf(why, whylen, "is missing or not a dataset");
    return ENS_EFORMAT;
  }
  if (rank < 2) {
    snprintf(why, whylen, "has rank %d, expected rows of features (n, d)", rank);
    return ENS_EFORMAT;
  }
  unsigned long long rows = dims[0], cols = 1;
  int over = 0;
  for (int i = 1; i < rank; i++) {
    if (dims[i] && cols > ULLONG_MAX / dims[i])
      over = 1;
    else
      cols *= dims[i];
  }
  if (over || rows > INT32_MAX || cols > INT32_MAX) {
    snprintf(why, whylen, "declares %llu rows of %llu features, more than %d", rows, cols,
             INT32_MAX);
    return ENS_EFORMAT;
  }
  if (!ens_h5_affordable((unsigned long long)total * sizeof(float))) {
    snprintf(why, whylen, "declares %llu x %llu values, more than the memory of this node", rows,
             cols);
    return ENS_EFORMAT;
  }
  *n = (int)rows;
  *d = (int)cols;
  *x = malloc((size_t)(total ? total : 1) * sizeof(float));
  if (!*x)
    return ENS_ENOMEM;
  if (ens_h5_read(f, path, H5T_NATIVE_FLOAT, *x, (size_t)total)) {
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    char r[160] = "HDF5 cannot read it";
    if (ds >= 0) {
      ens_h5_read_failure(ds, r, sizeof(r));
      H5Dclose(ds);
    }
    snprintf(why, whylen, "cannot be read as float32: %s", r);
    return ENS_EFORMAT;
  }
  for (long long i = 0; i < total; i++)
    if (!isfinite((*x)[i])) {
      snprintf(why, whylen,
               "has a non-finite value (%g) at row %lld, column %lld (after "
               "conversion to float32)",
               (double)(*x)[i], i / (long long)cols, i % (long long)cols);
      return ENS_EFORMAT;
    }
  return 0;
}

/* Matches the input's features (names in, din of them, rows x (n, din)) to
 * the model's by name; on success r->x holds (n, s->d) in the model's order. */
static int match_h5(ens_rows *r, const ens_schema *s, char **in, int din, float *x,
                    const char *input, char *err, size_t errlen) {
  int n = r->n, d = s->d, ret = 0;
  if (din == d) {
    int same = 1;
    for (int j = 0; j < d && same; j++)
      same = !strcmp(in[j], s->feature_names[j]);
    if (same) {
      r->x = x;
      r->d = d;
      r->matched = 1;
      return 0;
    }
  }
  name_ix *mi = index_names(s->feature_names, d);
  int *src = malloc((size_t)d * sizeof(int));
  float *y = calloc((size_t)n * (size_t)d + 1, sizeof(float));
  if (!mi || !src || !y) {
    ret = ENS_ENOMEM;
    goto done;
  }
  for (int j = 0; j < d; j++)
    src[j] = -1;
  name_list extra = {{0}, 0}, missing = {{0}, 0};
  for (int i = 0; i < din; i++) {
    int j = find(mi, d, in[i]);
    if (j >= 0) {
      if (src[j] < 0)
        src[j] = i;
      continue;
    }
    /* "column=value" of a categorical column the model has: an unseen
     * category. */
    int known_col = 0;
    for (int k = 0; k < s->ncat && !known_col; k++) {
      size_t cl = strlen(s->cat_columns[k]);
      known_col = !strncmp(in[i], s->cat_columns[k], cl) && in[i][cl] == '=';
    }
    if (known_col) {
      for (int row = 0; row < n; row++)
        r->unseen += x[(size_t)row * din + i] != 0.0f;
    } else {
      list_add(&extra, in[i]);
    }
  }
  for (int j = 0; j < d; j++) {
    if (src[j] >= 0)
      continue;
    int v = 0, k = cat_of(s, s->feature_names[j], &v);
    if (k >= 0) {
      /* A category the input's import never saw: the column is all zero,
       * when the input has the categorical column at all. */
      size_t cl = strlen(s->cat_columns[k]);
      int has_col = 0;
      for (int i = 0; i < din && !has_col; i++)
        has_col = !strncmp(in[i], s->cat_columns[k], cl) && in[i][cl] == '=';
      if (has_col)
        continue;
    }
    list_add(&missing, s->feature_names[j]);
  }
  if (missing.count || extra.count) {
    char a[1400], b[1400];
    ens_errorf(err, errlen,
               "%s: its features do not match the model's by name (/feature_names of both "
               "files):%s%s%s%s%s%s (the input must hold the features the model was trained on; "
               "nothing was predicted)",
               input, missing.count ? " missing " : "",
               missing.count ? list_end(&missing, a, sizeof(a)) : "",
               missing.count && extra.count ? ";" : "", extra.count ? " not in the model " : "",
               extra.count ? list_end(&extra, b, sizeof(b)) : "", "");
    ret = ENS_ESHAPE;
    goto done;
  }
  int moved = 0;
  for (int j = 0; j < d; j++)
    moved |= src[j] != j;
  for (int row = 0; row < n; row++)
    for (int j = 0; j < d; j++)
      if (src[j] >= 0)
        y[(size_t)row * d + j] = x[(size_t)row * din + src[j]];
  r->x = y;
  y = NULL;
  r->d = d;
  r->matched = 1;
  r->reordered = moved;
  free(x);
done:
  free(mi);
  free(src);
  free(y);
  return ret;
}

/* Labels or targets beside dataset ds ("/x" -> "/y"), in the model's terms. */
static void read_truth_h5(ens_rows *r, const ens_schema *s, hid_t inf, const char *ds,
                          const char *input) {
  char ypath[600];
  snprintf(ypath, sizeof(ypath), "%s", ds);
  size_t yl = strlen(ypath);
  if (yl < 1 || ypath[yl - 1] != 'x')
    return;
  ypath[yl - 1] = 'y';
  long long ysz = ens_h5_size(inf, ypath, NULL, NULL);
  int n = r->n, ok = 0;
  if (!s->regress && ysz == n) {
    r->y = malloc((size_t)n * sizeof(int32_t));
    ok = r->y && !ens_h5_read(inf, ypath, H5T_NATIVE_INT32, r->y, (size_t)n);
    /* The input's own class names (an import of its own sorts them): map
     * its labels to the model's classes by name. */
    int nc = 0;
    char **cn = ok && s->class_names ? read_names(inf, "/class_names", &nc) : NULL;
    int differ = cn && (nc != s->classes);
    for (int c = 0; cn && !differ && c < nc; c++)
      differ = strcmp(cn[c], s->class_names[c]) != 0;
    if (differ) {
      int *map = malloc((size_t)nc * sizeof(int));
      for (int c = 0; map && c < nc; c++) {
        map[c] = -1;
        for (int m = 0; m < s->classes; m++)
          if (!strcmp(cn[c], s->class_names[m]))
            map[c] = m;
      }
      for (int i = 0; ok && map && i < n; i++) {
        int32_t v = r->y[i];
        if (v < 0 || v >= nc || map[v] < 0) {
          fprintf(stderr,
                  "ens predict: warning: %s: %s row %d is class '%s', which the model does not "
                  "have; no score is printed\n",
                  input, ypath, i, v >= 0 && v < nc ? cn[v] : "?");
          ok = 0;
        } else {
          r->y[i] = map[v];
        }
      }
      ok = ok && map;
      free(map);
    }
    free_strs(cn, nc);
  } else if (s->regress && ysz == (long long)n * s->T) {
    r->t = malloc((size_t)n * s->T * sizeof(float));
    ok = r->t && !ens_h5_read(inf, ypath, H5T_NATIVE_FLOAT, r->t, (size_t)n * s->T);
  }
  /* Only a score is at stake: labels that cannot be scored (outside
   * [0, classes), non-finite targets) are named and left out. */
  for (int i = 0; ok && i < n; i++) {
    int bad = s->regress ? 0 : (r->y[i] < 0 || r->y[i] >= s->classes);
    for (int t = 0; s->regress && t < s->T; t++)
      bad |= !isfinite(r->t[(size_t)i * s->T + t]);
    if (bad) {
      fprintf(stderr, "ens predict: warning: %s: %s has %s at row %d; no score is printed\n",
              input, ypath, s->regress ? "a non-finite target" : "a label outside [0, classes)",
              i);
      ok = 0;
    }
  }
  if (!ok) {
    free(r->y);
    free(r->t);
    r->y = NULL;
    r->t = NULL;
    return;
  }
  snprintf(r->truth, sizeof(r->truth), "%s", ypath);
}

/* Ids and source lines beside dataset ds ("/test/x" -> "/test/id", "/test/line"). */
static void read_trace_h5(ens_rows *r, hid_t inf, const char *ds) {
  size_t l = strlen(ds);
  if (l < 2 || strcmp(ds + l - 2, "/x") != 0)
    return;
  char p[640];
  snprintf(p, sizeof(p), "%.*sid", (int)(l - 1), ds);
  r->ids = ens_h5_read_strings(inf, p, r->n);
  if (r->ids && ens_h5_get_attr_str(inf, "/", "id_column", &r->id_name)) {
    free(r->id_name);
    r->id_name = dup_str("id");
  }
  snprintf(p, sizeof(p), "%.*sline", (int)(l - 1), ds);
  if (ens_h5_size(inf, p, NULL, NULL) == r->n) {
    r->lines = malloc((size_t)(r->n ? r->n : 1) * sizeof(int64_t));
    if (r->lines && ens_h5_read(inf, p, H5T_NATIVE_INT64, r->lines, (size_t)r->n)) {
      free(r->lines);
      r->lines = NULL;
    }
  }
}

static int read_h5(ens_rows *r, const ens_schema *s, const char *input, const char *dataset,
                   char *err, size_t errlen) {
  hid_t inf = H5Fopen(input, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (inf < 0) {
    ens_errorf(err, errlen, "%s: cannot open as an HDF5 file", input);
    return ENS_EIO;
  }
  const char *ds = dataset ? dataset : ens_h5_exists(inf, "/x") ? "/x" : "/test/x";
  snprintf(r->dataset, sizeof(r->dataset), "%s", ds);
  char why[256] = "";
  float *x = NULL;
  int n = 0, din = 0, in_count = 0;
  char **in = NULL;
  int ret = read_rows(inf, ds, &x, &n, &din, why, sizeof(why));
  if (ret && !dataset && !ens_h5_exists(inf, ds)) {
    ens_errorf(err, errlen,
               "%s has neither /x nor /test/x: name the rows to predict with "
               "--dataset (e.g. --dataset /train/x)",
               input);
    goto done;
  }
  if (ret) {
    if (ret == ENS_ENOMEM)
      ens_errorf(err, errlen, "%s: out of memory reading dataset %s", input, ds);
    else
      ens_errorf(err, errlen, "%s: dataset %s %s", input, ds, why);
    goto done;
  }
  r->n = n;
  {
    int rank = 0;
    hsize_t dims[8];
    if (ens_h5_size(inf, ds, &rank, dims) >= 0 && (rank == 3 || rank == 4)) {
      r->img[0] = rank == 4 ? (int)dims[1] : 1; /* (n, H, W) or (n, C, H, W) */
      r->img[1] = (int)dims[rank - 2];
      r->img[2] = (int)dims[rank - 1];
    }
  }
  /* A model trained on images takes images of that shape (or flat rows of
   * its size, NCHW order). */
  if (s->img[0] > 0 && r->img[0] > 0 &&
      (r->img[0] != s->img[0] || r->img[1] != s->img[1] || r->img[2] != s->img[2])) {
    ens_errorf(err, errlen,
               "%s: %s holds images of shape (%d,%d,%d) (C,H,W); the model was trained on "
               "images of shape (%d,%d,%d)",
               input, ds, r->img[0], r->img[1], r->img[2], s->img[0], s->img[1], s->img[2]);
    ret = ENS_ESHAPE;
    goto done;
  }
  if (n < 1) {
    ens_errorf(err, errlen, "%s: %s has no rows", input, ds);
    ret = ENS_ESHAPE;
    goto done;
  }
  in = read_names(inf, "/feature_names", &in_count);
  if (s->feature_names && in && in_count == din) {
    ret = match_h5(r, s, in, din, x, input, err, errlen);
    if (ret)
      goto done;
    x = NULL; /* owned by r now (or freed) */
  } else {
    if (din != s->d) {
      ens_errorf(err, errlen,
                 "%s: %s has %d rows of %d features; the model expects %d features%s", input, ds,
                 n, din, s->d,
                 s->feature_names && !in ? " (the input has no /feature_names to match them by "
                                           "name)"
                                         : "");
      ret = ENS_ESHAPE;
      goto done;
    }
    r->x = x;
    r->d = din;
    x = NULL;
  }
  if (r->unseen)
    fprintf(stderr,
            "ens predict: warning: %s: %ld value%s of %s: categories the model did not see in "
            "training (one-hot features of /feature_names that the model lacks): encoded as "
            "all-zero one-hot columns\n",
            input, r->unseen, r->unseen == 1 ? "" : "s", ds);
  read_truth_h5(r, s, inf, ds, input);
  read_trace_h5(r, inf, ds);
done:
  free(x);
  free_strs(in, in_count);
  H5Fclose(inf);
  return ret;
}

/* ---- rows from CSV -------------------------------------------------------- */

/* How the CSV columns map to the model. */
enum { COL_EXTRA = 0, COL_NUMERIC, COL_CATEGORY, COL_TARGET, COL_ID, COL_DROPPED };

static int is_h5_name(const char *p) {
  size_t n = strlen(p);
  return (n >= 3 && !strcasecmp(p + n - 3, ".h5")) || (n >= 5 && !strcasecmp(p + n - 5, ".hdf5"));
}

int ens_is_csv_path(const char *p) {
  size_t n = strlen(p);
  return n >= 4 && !strcasecmp(p + n - 4, ".csv");
}

static int read_csv(ens_rows *r, const ens_schema *s, const char *input, const ens_rows_opts *o,
                    char *err, size_t errlen) {
  ens_csv c;
  ens_csv_opts po = {.name = input,
                     .delimiter = o && o->delimiter ? o->delimiter : s->delimiter,
                     .no_header = (o && o->no_header) || s->no_header};
  char decimal = o && o->decimal ? o->decimal : s->decimal ? s->decimal : '.';
  int ret = ens_csv_load(&c, input, &po, err, errlen);
  if (ret)
    return ret;
  snprintf(r->dataset, sizeof(r->dataset), "csv");
  const int d = s->d, cols = c.cols, n = c.rows;
  int *kind = calloc((size_t)cols, sizeof(int)), *feat = malloc((size_t)d * sizeof(int));
  int *catk = malloc((size_t)cols * sizeof(int)), *tgt = malloc((size_t)cols * sizeof(int));
  int *featv = malloc((size_t)d * sizeof(int));
  name_ix *ci = index_names(c.names, cols);
  unsigned char *hit = malloc((size_t)cols);
  if (!kind || !feat || !catk || !tgt || !featv || !ci || !hit) {
    ret = ENS_ENOMEM;
    ens_errorf(err, errlen, "%s: out of memory", input);
    goto done;
  }
  if (!s->feature_names) {
    ens_errorf(err, errlen,
               "%s: the model has no feature names (/model/feature_names: it was not trained on "
               "an ens import csv file), so the columns of a CSV cannot be matched to its "
               "features; give the rows as an HDF5 file",
               input);
    ret = ENS_EFORMAT;
    goto done;
  }
  /* Each model feature: a CSV column (numeric) or one category of one. */
  name_list missing = {{0}, 0}, extra = {{0}, 0};
  for (int k = 0; k < cols; k++) {
    catk[k] = -1;
    tgt[k] = -1;
  }
  for (int j = 0; j < d; j++) {
    int v = 0, k = cat_of(s, s->feature_names[j], &v);
    const char *col = s->feature_names[j];
    char *tmp = NULL;
    if (k >= 0) {
      col = s->cat_columns[k];
    } else if (find(ci, cols, col) < 0 && !s->ncat && strchr(col, '=')) {
      /* A result without /model/categories: "column=value" of a column that
       * the CSV has. */
      tmp = dup_str(col);
      for (char *eq = tmp ? strchr(tmp, '=') : NULL; eq; eq = strchr(eq + 1, '=')) {
        *eq = '\0';
        if (find(ci, cols, tmp) >= 0) {
          k = -2;
          break;
        }
        *eq = '=';
      }
      if (k == -2)
        col = tmp;
    }
    int ck = find(ci, cols, col);
    if (ck < 0) {
      if (k == -1 || !missing.count || !strstr(missing.text, col))
        list_add(&missing, col);
      feat[j] = -1;
      free(tmp);
      continue;
    }
    feat[j] = ck;
    featv[j] = v;
    if (k == -1) {
      kind[ck] = COL_NUMERIC;
    } else {
      kind[ck] = COL_CATEGORY;
      catk[ck] = k; /* -2: no category list; values are matched by feature name */
    }
    free(tmp);
  }
  for (int k = 0; k < cols; k++) {
    if (kind[k] != COL_EXTRA)
      continue;
    for (int t = 0; t < s->ntargets; t++)
      if (!strcmp(c.names[k], s->target_names[t])) {
        kind[k] = COL_TARGET;
        tgt[k] = t;
      }
    if (kind[k] == COL_EXTRA && s->id_column && !strcmp(c.names[k], s->id_column))
      kind[k] = COL_ID;
    for (int t = 0; kind[k] == COL_EXTRA && t < s->ndropped; t++)
      if (!strcmp(c.names[k], s->dropped[t]))
        kind[k] = COL_DROPPED;
    if (kind[k] == COL_EXTRA)
      list_add(&extra, c.names[k]);
  }
  if (missing.count || extra.count) {
    char a[1400], b[1400];
    ens_errorf(err, errlen,
               "%s: line %ld: its columns do not match the model's by name:%s%s%s%s%s (the file "
               "needs the feature columns the model was trained on, in any order; its target "
               "and id columns may be there too%s%s)",
               input, c.header_line ? c.header_line : 1, missing.count ? " missing " : "",
               missing.count ? list_end(&missing, a, sizeof(a)) : "",
               missing.count && extra.count ? ";" : "", extra.count ? " not in the model " : "",
               extra.count ? list_end(&extra, b, sizeof(b)) : "",
               c.header_line ? "" : "; with --no-header the columns are named 0, 1, ...",
               extra.count && !s->ntargets
                   ? "; this result does not name its target and id columns (it was trained "
                     "before results kept them, and its data file is gone): remove them from "
                     "the file, or train again"
                   : "");
    ret = ENS_EFORMAT;
    goto done;
  }
  r->n = n;
  r->d = d;
  r->matched = 1;
  for (int j = 1; j < d && !r->reordered; j++)
    r->reordered = feat[j] < feat[j - 1];
  r->x = calloc((size_t)n * (size_t)d + 1, sizeof(float));
  r->lines = malloc((size_t)n * sizeof(int64_t));
  if (!r->x || !r->lines) {
    ret = ENS_ENOMEM;
    ens_errorf(err, errlen, "%s: out of memory for %d x %d features", input, n, d);
    goto done;
  }
  long first_unseen_line = 0;
  char first_unseen[200] = "";
  for (int i = 0; i < n; i++) {
    float *x = r->x + (size_t)i * d;
    r->lines[i] = c.lines[i];
    for (int j = 0; j < d; j++) {
      int ck = feat[j];
      const char *v = c.fields[(size_t)i * cols + ck];
      char a[200], b[200];
      if (ens_csv_missing(v)) {
        ens_errorf(err, errlen,
                   "%s: line %ld, column '%s': missing value '%s' (ens predict needs every "
                   "feature of every row; fill it in or remove the row)",
                   input, c.lines[i], ens_csv_show(a, sizeof(a), c.names[ck]),
                   ens_csv_show(b, sizeof(b), v));
        ret = ENS_EFORMAT;
        goto done;
      }
      if (kind[ck] == COL_NUMERIC) {
        double num = 0;
        int e = ens_csv_number(v, decimal, &num);
        if (e) {
          ens_errorf(err, errlen,
                     "%s: line %ld, column '%s': '%s' %s (the column is numeric in the model's "
                     "data%s)",
                     input, c.lines[i], ens_csv_show(a, sizeof(a), c.names[ck]),
                     ens_csv_show(b, sizeof(b), v),
                     e == 2 ? "is out of range for float32" : "is not a number",
                     strchr(v, decimal == '.' ? ',' : '.') ? "; see --decimal" : "");
          ret = ENS_EFORMAT;
          goto done;
        }
        x[j] = (float)num;
        continue;
      }
      /* One-hot feature j: 1 when the row's value is its category. */
      int k = catk[ck];
      const char *cat =
          k >= 0 ? s->cat_values[k][featv[j]] : s->feature_names[j] + strlen(c.names[ck]) + 1;
      if (!strcmp(v, cat))
        x[j] = 1.0f;
    }
    /* Unseen categories: a categorical column none of whose features is set
     * (hit[] marks the columns that have one). */
    memset(hit, 0, (size_t)cols);
    for (int j = 0; j < d; j++)
      if (x[j] != 0.0f && kind[feat[j]] == COL_CATEGORY)
        hit[feat[j]] = 1;
    for (int ck = 0; ck < cols; ck++) {
      if (kind[ck] != COL_CATEGORY)
        continue;
      if (!hit[ck]) {
        if (!r->unseen) {
          char a[200], b[200];
          first_unseen_line = c.lines[i];
          snprintf(first_unseen, sizeof(first_unseen), "column '%s': '%s'",
                   ens_csv_show(a, sizeof(a), c.names[ck]),
                   ens_csv_show(b, sizeof(b), c.fields[(size_t)i * cols + ck]));
        }
        r->unseen++;
      }
    }
  }
  if (r->unseen)
    fprintf(stderr,
            "ens predict: warning: %s: %ld value%s of categorical columns did not occur in the "
            "training data (first: line %ld, %s): encoded as all-zero one-hot columns, as "
            "ens import csv --test does\n",
            input, r->unseen, r->unseen == 1 ? "" : "s", first_unseen_line, first_unseen);
  /* Ids. */
  for (int k = 0; k < cols; k++)
    if (kind[k] == COL_ID) {
      r->ids = calloc((size_t)n + 1, sizeof(char *));
      r->id_name = dup_str(c.names[k]);
      for (int i = 0; r->ids && i < n; i++)
        if (!(r->ids[i] = dup_str(c.fields[(size_t)i * cols + k])))
          ret = ENS_ENOMEM;
      if (!r->ids || !r->id_name)
        ret = ENS_ENOMEM;
      if (ret) {
        ens_errorf(err, errlen, "%s: out of memory", input);
        goto done;
      }
    }
  /* Truth: every target column present, every value usable. */
  int present = 0;
  for (int k = 0; k < cols; k++)
    present += kind[k] == COL_TARGET;
  int want = s->regress ? s->T : 1;
  if (present == want && s->ntargets == want) {
    int ok = 1;
    if (s->regress)
      r->t = malloc((size_t)n * want * sizeof(float));
    else
      r->y = malloc((size_t)n * sizeof(int32_t));
    ok = s->regress ? r->t != NULL : r->y != NULL;
    for (int k = 0; ok && k < cols; k++) {
      if (kind[k] != COL_TARGET)
        continue;
      for (int i = 0; ok && i < n; i++) {
        const char *v = c.fields[(size_t)i * cols + k];
        char a[200], b[200];
        double num = 0;
        if (ens_csv_missing(v)) {
          fprintf(stderr,
                  "ens predict: warning: %s: line %ld, column '%s': the target is missing; no "
                  "score is printed\n",
                  input, c.lines[i], ens_csv_show(a, sizeof(a), c.names[k]));
          ok = 0;
        } else if (s->regress) {
          if (ens_csv_number(v, decimal, &num)) {
            fprintf(stderr,
                    "ens predict: warning: %s: line %ld, column '%s': target '%s' is not a "
                    "number; no score is printed\n",
                    input, c.lines[i], ens_csv_show(a, sizeof(a), c.names[k]),
                    ens_csv_show(b, sizeof(b), v));
            ok = 0;
          }
          r->t[(size_t)i * want + tgt[k]] = (float)num;
        } else {
          int cls = -1;
          for (int m = 0; s->class_names && m < s->classes && cls < 0; m++)
            if (!strcmp(v, s->class_names[m]))
              cls = m;
          /* Integer class codes: "2.0" is class "2". */
          for (int m = 0; s->class_names && cls < 0 && m < s->classes; m++) {
            double cv = 0;
            if (!ens_csv_number(v, decimal, &num) &&
                !ens_csv_number(s->class_names[m], '.', &cv) && cv == num)
              cls = m;
          }
          if (cls < 0) {
            fprintf(stderr,
                    "ens predict: warning: %s: line %ld, column '%s': class '%s' is not one of "
                    "the model's classes; no score is printed\n",
                    input, c.lines[i], ens_csv_show(a, sizeof(a), c.names[k]),
                    ens_csv_show(b, sizeof(b), v));
            ok = 0;
          }
          r->y[i] = cls;
        }
      }
    }
    if (ok) {
      int len = 0;
      for (int k = 0; k < cols; k++)
        if (kind[k] == COL_TARGET && len < 400)
          len += snprintf(r->truth + len, sizeof(r->truth) - (size_t)len, "%s'%s'",
                          len ? ", " : "column ", c.names[k]);
      snprintf(r->truth + len, sizeof(r->truth) - (size_t)len, " of %s", input);
    } else {
      free(r->y);
      free(r->t);
      r->y = NULL;
      r->t = NULL;
    }
  }
  ret = 0;
done:
  if (ret) {
    ens_rows_free(r);
  }
  free(kind);
  free(feat);
  free(featv);
  free(catk);
  free(tgt);
  free(ci);
  free(hit);
  ens_csv_free(&c);
  return ret;
}

int ens_rows_read(ens_rows *r, const ens_schema *s, const char *input, const ens_rows_opts *o,
                  char *err, size_t errlen) {
  memset(r, 0, sizeof(*r));
  int ret;
  if (is_h5_name(input) || H5Fis_hdf5(input) > 0) {
    ret = read_h5(r, s, input, o ? o->dataset : NULL, err, errlen);
  } else {
    if (o && o->dataset) {
      ens_errorf(err, errlen,
                 "--dataset %s: %s is not an HDF5 file (--dataset names rows of an HDF5 input; "
                 "a CSV's rows are all read)",
                 o->dataset, input);
      return ENS_EINVAL;
    }
    ret = read_csv(r, s, input, o, err, errlen);
  }
  if (ret)
    ens_rows_free(r);
  return ret;
}

int ens_rows_write_h5(hid_t f, const ens_rows *r) {
  int ret = 0;
  hsize_t n = (hsize_t)r->n;
  if (r->ids) {
    ret |= ens_h5_write_strings(f, "/id", (const char *const *)r->ids, (size_t)r->n);
    ret |= ens_h5_attr_str(f, "/id", "column", r->id_name ? r->id_name : "id");
  }
  if (r->lines)
    ret |= ens_h5_write(f, "/line", H5T_NATIVE_INT64, 1, &n, r->lines, 0);
  return ret ? ENS_EHDF5 : 0;
}

/* ---- CSV output ----------------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->len + n + 1)
      c *= 2;
    char *q = realloc(b->p, c);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = c;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A text field, quoted (RFC 4180) when it holds a comma, a quote, a line
 * end or blanks at either end (which a reader would drop). */
static void sb_field(sbuf *b, const char *s) {
  size_t n = strlen(s);
  int q = n && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t');
  for (size_t i = 0; i < n && !q; i++)
    q = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
  if (!q) {
    sb_put(b, s, n);
    return;
  }
  sb_put(b, "\"", 1);
  for (size_t i = 0; i < n; i++)
    sb_put(b, s[i] == '"' ? "\"\"" : s + i, s[i] == '"' ? 2 : 1);
  sb_put(b, "\"", 1);
}

static void sb_num(sbuf *b, double v) {
  char t[40];
  snprintf(t, sizeof(t), ",%.9g", v);
  sb_str(b, t);
}

/* A header field sep + quoted(prefix name suffix). */
static void sb_named(sbuf *b, const char *sep, const char *prefix, const char *name,
                     const char *suffix) {
  size_t n = strlen(prefix) + strlen(name) + strlen(suffix) + 1;
  char *t = malloc(n);
  if (!t) {
    b->oom = 1;
    return;
  }
  snprintf(t, n, "%s%s%s", prefix, name, suffix);
  sb_str(b, sep);
  sb_field(b, t);
  free(t);
}

int ens_rows_write_csv(const char *path, hid_t f, const ens_schema *s, const ens_rows *r,
                       char *err, size_t errlen) {
  const int n = r->n, regress = s->regress, W = regress ? s->T : s->classes;
  const size_t nw = (size_t)n * (size_t)(W ? W : 1);
  float *a = malloc(nw * sizeof(float)), *b = malloc(nw * sizeof(float));
  float *c3 = malloc(nw * sizeof(float) + (size_t)n * 3 * sizeof(float));
  float *e4 = malloc(nw * sizeof(float));
  int32_t *pred = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
  sbuf sb = {0};
  int ret = 0;
  if (!a || !b || !c3 || !e4 || !pred) {
    ret = ENS_ENOMEM;
    goto done;
  }
  if (regress)
    ret = ens_h5_read(f, "/mean", H5T_NATIVE_FLOAT, a, nw) ||
          ens_h5_read(f, "/var", H5T_NATIVE_FLOAT, b, nw) ||
          ens_h5_read(f, "/var_aleatoric", H5T_NATIVE_FLOAT, c3, nw) ||
          ens_h5_read(f, "/var_epistemic", H5T_NATIVE_FLOAT, e4, nw);
  else
    ret = ens_h5_read(f, "/probs", H5T_NATIVE_FLOAT, a, nw) ||
          ens_h5_read(f, "/pred", H5T_NATIVE_INT32, pred, (size_t)n) ||
          ens_h5_read(f, "/uncertainty", H5T_NATIVE_FLOAT, c3, (size_t)n * 3);
  if (ret) {
    ret = ENS_EHDF5;
    goto done;
  }
  /* Header. */
  int lead = 0;
  if (r->ids) {
    sb_field(&sb, r->id_name ? r->id_name : "id");
    lead = 1;
  }
  if (r->lines) {
    sb_str(&sb, lead ? ",line" : "line");
    lead = 1;
  }
  if (!regress) {
    sb_str(&sb, lead ? ",class" : "class");
    if (s->class_names)
      sb_str(&sb, ",class_name");
    for (int k = 0; k < W; k++) {
      char num[24];
      snprintf(num, sizeof(num), "%d", k);
      sb_named(&sb, ",", "p_", s->class_names ? s->class_names[k] : num, "");
    }
    sb_str(&sb, ",entropy,expected_entropy,mutual_information\n");
  } else {
    static const char *const sfx[6] = {"_mean",  "_std", "_lower90", "_upper90", "_var_aleatoric",
                                       "_var_epistemic"};
    for (int t = 0; t < W; t++) {
      char num[24];
      snprintf(num, sizeof(num), "y%d", t);
      const char *tn = s->ntargets == W ? s->target_names[t] : num;
      for (int q = 0; q < 6; q++)
        sb_named(&sb, lead || t || q ? "," : "", "", tn, sfx[q]);
    }
    sb_str(&sb, "\n");
  }
  /* Rows. */
  for (int i = 0; i < n && !sb.oom; i++) {
    int first = 1;
    if (r->ids) {
      sb_field(&sb, r->ids[i]);
      first = 0;
    }
    if (r->lines) {
      char t[32];
      snprintf(t, sizeof(t), "%s%lld", first ? "" : ",", (long long)r->lines[i]);
      sb_str(&sb, t);
      first = 0;
    }
    if (!regress) {
      char t[32];
      snprintf(t, sizeof(t), "%s%d", first ? "" : ",", pred[i]);
      sb_str(&sb, t);
      if (s->class_names) {
        sb_put(&sb, ",", 1);
        sb_field(&sb, pred[i] >= 0 && pred[i] < W ? s->class_names[pred[i]] : "");
      }
      for (int k = 0; k < W; k++)
        sb_num(&sb, a[(size_t)i * W + k]);
      for (int k = 0; k < 3; k++)
        sb_num(&sb, c3[(size_t)i * 3 + k]);
    } else {
      for (int t = 0; t < W; t++) {
        size_t o = (size_t)i * W + t;
        double m = a[o], sd = sqrt(b[o] > 0 ? b[o] : 0.0), z = 1.6448536269514722;
        char tx[40];
        snprintf(tx, sizeof(tx), "%s%.9g", first && t == 0 ? "" : ",", m);
        sb_str(&sb, tx);
        sb_num(&sb, sd);
        sb_num(&sb, m - z * sd);
        sb_num(&sb, m + z * sd);
        sb_num(&sb, c3[o]);
        sb_num(&sb, e4[o]);
      }
    }
    sb_str(&sb, "\n");
  }
  if (sb.oom) {
    ret = ENS_ENOMEM;
    goto done;
  }
  ret = ens_storage_publish_bytes(path, sb.p, sb.len, "cannot write", err, errlen);
done:
  if (ret == ENS_ENOMEM || ret == ENS_EHDF5)
    ens_errorf(err, errlen, "-o %s: cannot build the CSV output (%s)", path, ens_strerror(ret));
  free(sb.p);
  free(a);
  free(b);
  free(c3);
  free(e4);
  free(pred);
  return ret;
}
