/* CSV import: an RFC 4180 parser that works on a memory buffer, column type
 * inference with one-hot encoding of categorical columns, the seeded
 * train/test/val splits, and the HDF5 writer (temporary file beside the
 * output, fsync, rename), so that a failed import leaves nothing behind. */
#include "ens/data.h"

#include "ens/error.h"
#include "ens/rng.h"
#include "io/fsutil.h"
#include "io/h5util.h"
#include "io/storage.h"

#include <errno.h>
#include <float.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* Bytes of a value or name quoted in a message, and the buffer that holds
 * one after escaping (\xHH is four bytes per input byte). */
#define SHOW_MAX 60
#define SHOW_BUF (4 * SHOW_MAX + 8)
/* Split permutations: the member slot ens_data_split_val uses (all ones) and
 * substreams of their own (split_val, at training time, uses 0). */
#define SPLIT_MEMBER 0xFFFFFFFFu
#define SPLIT_SUB_TEST 1u
#define SPLIT_SUB_VAL 2u
/* Read buffer growth for the input files. */
#define READ_CHUNK ((size_t)1 << 20)

/* ---- small helpers ------------------------------------------------------ */

/* Copies at most SHOW_MAX bytes of s into dst (SHOW_BUF bytes) for a one-line
 * message: control bytes are escaped, a cut never splits a UTF-8 sequence,
 * and "..." marks a cut. Returns dst. */
static const char *show(char *dst, const char *s) {
  size_t len = strlen(s), cut = len < SHOW_MAX ? len : SHOW_MAX, w = 0;
  while (cut > 0 && cut < len && ((unsigned char)s[cut] & 0xC0) == 0x80)
    cut--;
  for (size_t i = 0; i < cut; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\n' || c == '\r' || c == '\t') {
      dst[w++] = '\\';
      dst[w++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
    } else if (c < 0x20 || c == 0x7f) {
      w += (size_t)snprintf(dst + w, SHOW_BUF - w, "\\x%02x", c);
    } else {
      dst[w++] = (char)c;
    }
  }
  if (cut < len) {
    memcpy(dst + w, "...", 3);
    w += 3;
  }
  dst[w] = '\0';
  return dst;
}

/* Makes room for `need` elements of `elem` bytes in *p (capacity *cap). */
static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap)
    return 0;
  size_t c = *cap ? *cap : 64;
  while (c < need) {
    if (c > SIZE_MAX / 2 / elem)
      return ENS_ENOMEM;
    c *= 2;
  }
  void *q = realloc(*p, c * elem);
  if (!q)
    return ENS_ENOMEM;
  *p = q;
  *cap = c;
  return 0;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* ---- parsing ------------------------------------------------------------ */

/* Blanks dropped around fields: space and tab, unless one is the delimiter. */
static int is_blank(char c, char delim) { return (c == ' ' || c == '\t') && c != delim; }

/* A CR that ends a line: followed by LF or by the end of the input. */
static int is_line_end(const char *buf, size_t len, size_t pos) {
  return buf[pos] == '\n' || (buf[pos] == '\r' && (pos + 1 == len || buf[pos + 1] == '\n'));
}

typedef struct {
  const char *s;
  int i;
} name_ref;

static int cmp_name_ref(const void *a, const void *b) {
  const name_ref *x = a, *y = b;
  int c = strcmp(x->s, y->s);
  return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* Header checks: names non-empty and unique. */
static int check_names(const ens_csv *c, char *err, size_t errlen) {
  char a[SHOW_BUF];
  for (int k = 0; k < c->cols; k++)
    if (c->names[k][0] == '\0') {
      ens_errorf(err, errlen,
                 "%s: line %ld, column %d: empty column name (name every column, or "
                 "use --no-header when the file has no header line)",
                 c->name, c->header_line, k);
      return ENS_EFORMAT;
    }
  name_ref *r = malloc((size_t)c->cols * sizeof *r);
  if (!r) {
    ens_errorf(err, errlen, "%s: out of memory", c->name);
    return ENS_ENOMEM;
  }
  for (int k = 0; k < c->cols; k++)
    r[k] = (name_ref){c->names[k], k};
  qsort(r, (size_t)c->cols, sizeof *r, cmp_name_ref);
  /* Of all duplicated pairs, report the one whose second column comes first. */
  int first = -1, dup = -1;
  for (int k = 1; k < c->cols; k++)
    if (strcmp(r[k].s, r[k - 1].s) == 0 && (dup < 0 || r[k].i < dup)) {
      first = r[k - 1].i;
      dup = r[k].i;
    }
  free(r);
  if (dup >= 0) {
    ens_errorf(err, errlen, "%s: line %ld, column %d: duplicated column name '%s' (also column %d)",
               c->name, c->header_line, dup, show(a, c->names[dup]), first);
    return ENS_EFORMAT;
  }
  return 0;
}

int ens_csv_parse(ens_csv *out, const char *buf, size_t len, const ens_csv_opts *o, char *err,
                  size_t errlen) {
  int rc = ENS_EFORMAT;
  char delim = o && o->delimiter ? o->delimiter : ',';
  int header = !(o && o->no_header);
  size_t fcap = 0, lcap = 0, nfields = 0, cols = 0, rows = 0;
  long *lines = NULL;
  char **fields = NULL;

  memset(out, 0, sizeof *out);
  if (err && errlen)
    err[0] = '\0';
  out->name = dup_str(o && o->name ? o->name : "<input>");
  out->store = malloc(len + 1); /* fields never outgrow the text (see below) */
  if (!out->name || !out->store) {
    rc = ENS_ENOMEM;
    ens_errorf(err, errlen, "%s: out of memory for %zu bytes of CSV text",
               out->name ? out->name : "<input>", len);
    goto cleanup;
  }
  const char *name = out->name;
  if (delim == '"' || delim == '\n' || delim == '\r') {
    rc = ENS_EINVAL;
    ens_errorf(err, errlen, "%s: the delimiter cannot be a quote, CR or LF", name);
    goto cleanup;
  }

  /* Invariant: at the start of each field, the write offset (w - store)
   * is at most the read offset pos: a field never writes more bytes than it
   * consumes, and its NUL takes the place of the delimiter or line end that
   * ends it, or of the one extra byte at the end of the input. */
  size_t pos = len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
  char *w = out->store;
  long line = 1;
  while (pos < len) {
    long rec_line = line;
    size_t rec_first = nfields, nf = 0;
    char *rec_w = w;
    int quoted_any = 0;
    for (;;) {
      char *start = w;
      while (pos < len && is_blank(buf[pos], delim))
        pos++;
      if (pos < len && buf[pos] == '"') {
        long open_line = line;
        quoted_any = 1;
        pos++;
        for (;;) {
          if (pos >= len) {
            ens_errorf(err, errlen,
                       "%s: line %ld, field %zu: the quoted field opened here is "
                       "never closed (the text ends on line %ld)",
                       name, open_line, nf + 1, line);
            goto cleanup;
          }
          char c = buf[pos];
          if (c == '"') {
            if (pos + 1 < len && buf[pos + 1] == '"') {
              *w++ = '"';
              pos += 2;
              continue;
            }
            pos++;
            break;
          }
          if (c == '\0') {
            ens_errorf(err, errlen, "%s: line %ld: NUL byte in the text (not a CSV file?)", name,
                       line);
            goto cleanup;
          }
          if (c == '\n')
            line++;
          *w++ = c;
          pos++;
        }
        while (pos < len && is_blank(buf[pos], delim))
          pos++;
        if (pos < len && buf[pos] != delim && !is_line_end(buf, len, pos)) {
          char a[SHOW_BUF], ch[2] = {buf[pos], '\0'};
          ens_errorf(err, errlen,
                     "%s: line %ld, field %zu: unexpected '%s' after the closing quote "
                     "(write a quote inside a quoted field as \"\")",
                     name, line, nf + 1, show(a, ch));
          goto cleanup;
        }
      } else {
        while (pos < len && buf[pos] != delim && !is_line_end(buf, len, pos)) {
          if (buf[pos] == '\0') {
            ens_errorf(err, errlen, "%s: line %ld: NUL byte in the text (not a CSV file?)", name,
                       line);
            goto cleanup;
          }
          *w++ = buf[pos++];
        }
        while (w > start && is_blank(w[-1], delim))
          w--;
      }
      *w++ = '\0';
      if (grow((void **)&fields, &fcap, nfields + 1, sizeof *fields)) {
        rc = ENS_ENOMEM;
        ens_errorf(err, errlen, "%s: out of memory at line %ld", name, line);
        goto cleanup;
      }
      fields[nfields++] = start;
      nf++;
      if (pos < len && buf[pos] == delim) {
        pos++;
        continue;
      }
      if (pos < len && buf[pos] == '\r')
        pos++;
      if (pos < len && buf[pos] == '\n') {
        pos++;
        line++;
      }
      break;
    }
    /* A line of nothing but blanks is skipped ("" is an empty field). */
    if (nf == 1 && !quoted_any && fields[rec_first][0] == '\0') {
      nfields = rec_first;
      w = rec_w;
      continue;
    }
    if (cols == 0) {
      if (nf > INT_MAX) {
        ens_errorf(err, errlen, "%s: line %ld: %zu fields; at most %d columns", name, rec_line, nf,
                   INT_MAX);
        goto cleanup;
      }
      cols = nf;
      if (header) {
        /* The header's field pointers become the names. */
        out->header_line = rec_line;
        out->names = malloc(cols * sizeof *out->names);
        if (!out->names) {
          rc = ENS_ENOMEM;
          ens_errorf(err, errlen, "%s: out of memory", name);
          goto cleanup;
        }
        memcpy(out->names, fields, cols * sizeof *fields);
        nfields = 0;
        continue;
      }
    } else if (nf != cols) {
      char hint[96] = "";
      if (header && cols == 1)
        ens_csv_delimiter_hint(hint, sizeof hint, out->names[0], delim);
      ens_errorf(err, errlen, "%s: line %ld: expected %zu field%s (as %s on line %ld), got %zu%s",
                 name, rec_line, cols, cols == 1 ? "" : "s",
                 header ? "in the header" : "in the first record",
                 header ? out->header_line : lines[0], nf, hint);
      goto cleanup;
    }
    if (rows >= INT_MAX) {
      ens_errorf(err, errlen, "%s: line %ld: more than %d data rows", name, rec_line, INT_MAX);
      goto cleanup;
    }
    if (grow((void **)&lines, &lcap, rows + 1, sizeof *lines)) {
      rc = ENS_ENOMEM;
      ens_errorf(err, errlen, "%s: out of memory at line %ld", name, line);
      goto cleanup;
    }
    lines[rows++] = rec_line;
  }

  if (cols == 0) {
    ens_errorf(err, errlen, "%s: line %ld: empty file (expected a %s)", name, line,
               header ? "header line and data rows" : "data row");
    goto cleanup;
  }
  if (rows == 0) {
    ens_errorf(err, errlen, "%s: line %ld: no data rows after the header", name, line);
    goto cleanup;
  }
  if (!header) {
    /* Names "0", "1", ...: pointer array and text in one block. */
    size_t bytes = cols * sizeof(char *) + cols * 12;
    out->names = malloc(bytes);
    if (!out->names) {
      rc = ENS_ENOMEM;
      ens_errorf(err, errlen, "%s: out of memory", name);
      goto cleanup;
    }
    char *text = (char *)(out->names + cols);
    for (size_t k = 0; k < cols; k++) {
      out->names[k] = text + 12 * k;
      snprintf(out->names[k], 12, "%d", (int)k);
    }
  }
  out->cols = (int)cols;
  out->rows = (int)rows;
  out->delimiter = delim;
  out->fields = fields;
  out->lines = lines;
  fields = NULL;
  lines = NULL;
  if (header && (rc = check_names(out, err, errlen)) != 0)
    goto cleanup;
  rc = 0;

cleanup:
  free(fields);
  free(lines);
  if (rc)
    ens_csv_free(out);
  return rc;
}

void ens_csv_free(ens_csv *c) {
  if (!c)
    return;
  free(c->name);
  free(c->names);
  free(c->fields);
  free(c->lines);
  free(c->store);
  memset(c, 0, sizeof *c);
}

/* ---- values ------------------------------------------------------------- */

/* Missing: empty, NA, NaN, nan or ?, with blanks around allowed. */
static int is_missing(const char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  return n == 0 || (n == 1 && s[0] == '?') || (n == 2 && memcmp(s, "NA", 2) == 0) ||
         (n == 3 && (memcmp(s, "NaN", 3) == 0 || memcmp(s, "nan", 3) == 0));
}

enum { NUM_OK = 0, NUM_NOT = 1, NUM_RANGE = 2 };

/* strtod ("C" locale), blanks around allowed; NUM_RANGE when the number does
 * not fit a finite float32 (the type of x). Text such as "inf" is NUM_NOT. */
static int parse_number_c(const char *s, double *v) {
  char *end;
  while (*s == ' ' || *s == '\t')
    s++;
  if (!*s)
    return NUM_NOT;
  errno = 0;
  double x = strtod(s, &end);
  if (end == s)
    return NUM_NOT;
  while (*end == ' ' || *end == '\t')
    end++;
  if (*end)
    return NUM_NOT;
  if (!isfinite(x))
    return errno == ERANGE ? NUM_RANGE : NUM_NOT;
  if (fabs(x) > FLT_MAX)
    return NUM_RANGE;
  *v = x;
  return NUM_OK;
}

/* A number written with decimal mark `decimal` ('.' or another character,
 * e.g. ','): the mark becomes '.', and a '.' is then not part of a number. */
int ens_csv_number(const char *s, char decimal, double *v) {
  if (!decimal || decimal == '.')
    return parse_number_c(s, v);
  char buf[128];
  size_t n = strlen(s);
  if (n >= sizeof buf || strchr(s, '.'))
    return NUM_NOT;
  for (size_t i = 0; i <= n; i++)
    buf[i] = s[i] == decimal ? '.' : s[i];
  return parse_number_c(buf, v);
}

int ens_csv_missing(const char *s) { return is_missing(s); }

const char *ens_csv_show(char *dst, size_t len, const char *s) {
  char b[SHOW_BUF];
  snprintf(dst, len, "%s", show(b, s));
  return dst;
}

void ens_csv_delimiter_hint(char *buf, size_t len, const char *header, char delim) {
  static const char cand[] = {';', '\t', '|', ','};
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof cand; i++)
    if (cand[i] != delim && strchr(header, cand[i])) {
      snprintf(buf, len, " (the header holds '%s': is that the delimiter? use --delimiter %s)",
               cand[i] == '\t' ? "\\t" : (char[]){cand[i], 0},
               cand[i] == '\t' ? "tab" : cand[i] == ';' ? "';'" : cand[i] == '|' ? "'|'" : "','");
      return;
    }
}

static const char *number_problem(int r) {
  return r == NUM_RANGE ? "is out of range for float32" : "is not a number";
}

/* ---- encoding ----------------------------------------------------------- */

typedef struct column {
  int target; /* index among the targets, -1 for a feature */
  int categorical;
  int ncat;
  const char **cats; /* (ncat) sorted distinct values, pointing into the main table */
  int feature;       /* first feature index of a feature column, else -1 */
  int test_col;      /* the column's index in the test table */
  int numbers;       /* values that parse as numbers (over kept rows) */
  int bad_row;       /* first kept row whose value is not a number, -1 if none */
  int bad_kind;      /* its parse_number result */
  int role;          /* ROLE_FEATURE (or target), ROLE_DROP (--drop), ROLE_ID (--id) */
  int keep;          /* --keep: categorical even when it looks like dates or identifiers */
} column;

enum { ROLE_FEATURE = 0, ROLE_DROP, ROLE_ID };

typedef struct enc {
  const ens_csv *m, *t;
  const ens_csv_encode_opts *o;
  column *col; /* (m->cols) */
  int *tcol;   /* (targets) column of each target */
  unsigned char *keep_m, *keep_t;
  int n_m, n_t;  /* kept rows */
  double *codes; /* (classes) numeric class codes, sorted */
  int classify;
  char delim; /* the main table's delimiter, for hints */
  char *err;
  size_t errlen;
} enc;

/* The header's line, or the first record's without a header. */
static long first_line(const ens_csv *c) { return c->header_line ? c->header_line : c->lines[0]; }

static const char *field(const ens_csv *c, int row, int col) {
  return c->fields[(size_t)row * (size_t)c->cols + (size_t)col];
}

/* Resolves "name|index[,...]" against the main table's header. */
/* The header's column names for a message, "a, b, c", cut with "..." when
 * they do not fit in list (len bytes). */
static void column_list(char *list, size_t len, const ens_csv *m) {
  char b[SHOW_BUF];
  size_t used = 0;
  list[0] = '\0';
  for (int k = 0; k < m->cols; k++) {
    int wr = snprintf(list + used, len - used, "%s%s", k ? ", " : "", show(b, m->names[k]));
    if (wr < 0 || (size_t)wr >= len - used - 4) {
      snprintf(list + used, len - used, "%s...", k ? ", " : "");
      break;
    }
    used += (size_t)wr;
  }
}

static int resolve_targets(enc *E, ens_csv_data *out) {
  const ens_csv *m = E->m;
  const char *spec = E->o->target;
  char a[SHOW_BUF];
  if (!spec || !*spec) {
    ens_errorf(E->err, E->errlen, "%s: no target column given (--target NAME|INDEX)", m->name);
    return ENS_EINVAL;
  }
  size_t slen = strlen(spec), cap = 1;
  for (size_t i = 0; i < slen; i++)
    cap += spec[i] == ',';
  if (cap > (size_t)m->cols) {
    ens_errorf(E->err, E->errlen, "%s: %zu target columns given, but the file has %d column%s",
               m->name, cap, m->cols, m->cols == 1 ? "" : "s");
    return ENS_EINVAL;
  }
  char *item = malloc(slen + 1);
  E->tcol = malloc(cap * sizeof *E->tcol);
  if (!item || !E->tcol) {
    free(item);
    ens_errorf(E->err, E->errlen, "%s: out of memory", m->name);
    return ENS_ENOMEM;
  }
  int rc = ENS_EINVAL, t = 0;
  const char *p = spec;
  for (;;) {
    const char *q = strchr(p, ',');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    while (n > 0 && (*p == ' ' || *p == '\t'))
      p++, n--;
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
      n--;
    memcpy(item, p, n);
    item[n] = '\0';
    if (n == 0) {
      ens_errorf(E->err, E->errlen, "%s: --target '%s': empty column name", m->name, show(a, spec));
      goto cleanup;
    }
    int c = -1;
    for (int k = 0; k < m->cols && c < 0; k++)
      if (strcmp(m->names[k], item) == 0)
        c = k;
    if (c < 0) {
      size_t digits = strspn(item, "0123456789");
      if (digits != n) {
        char list[256];
        column_list(list, sizeof list, m);
        char hint[96] = "";
        if (m->cols == 1)
          ens_csv_delimiter_hint(hint, sizeof hint, m->names[0], E->delim);
        ens_errorf(E->err, E->errlen, "%s: line %ld: no target column named '%s' (columns: %s)%s",
                   m->name, first_line(m), show(a, item), list, hint);
        goto cleanup;
      }
      errno = 0;
      unsigned long long v = strtoull(item, NULL, 10);
      if (errno == ERANGE || v >= (unsigned long long)m->cols) {
        ens_errorf(E->err, E->errlen,
                   "%s: target index %s is out of range (the file has %d "
                   "column%s: 0..%d)",
                   m->name, show(a, item), m->cols, m->cols == 1 ? "" : "s", m->cols - 1);
        goto cleanup;
      }
      c = (int)v;
    }
    if (E->col[c].target >= 0) {
      ens_errorf(E->err, E->errlen, "%s: column '%s' is named twice in --target", m->name,
                 show(a, m->names[c]));
      goto cleanup;
    }
    E->col[c].target = t;
    E->tcol[t++] = c;
    if (!q)
      break;
    p = q + 1;
  }
  out->targets = t;
  rc = 0;
cleanup:
  free(item);
  return rc;
}

/* Columns named by a --drop, --id or --keep list ("name|index[,...]"):
 * header names first, else 0-based indexes. Calls back with each column. */
static int each_column(enc *E, const char *spec, const char *opt, int *cols, int *n) {
  const ens_csv *m = E->m;
  char a[SHOW_BUF];
  *n = 0;
  const char *p = spec;
  for (;;) {
    const char *q = strchr(p, ',');
    size_t len = q ? (size_t)(q - p) : strlen(p);
    while (len > 0 && (*p == ' ' || *p == '\t'))
      p++, len--;
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
      len--;
    char item[512];
    if (len == 0 || len >= sizeof item) {
      ens_errorf(E->err, E->errlen, "%s: %s '%s': %s column name", m->name, opt, show(a, spec),
                 len ? "too long a" : "empty");
      return ENS_EINVAL;
    }
    memcpy(item, p, len);
    item[len] = '\0';
    int c = -1;
    for (int k = 0; k < m->cols && c < 0; k++)
      if (strcmp(m->names[k], item) == 0)
        c = k;
    if (c < 0 && strspn(item, "0123456789") == len && len < 10 && atoi(item) < m->cols)
      c = atoi(item);
    if (c < 0) {
      char list[256];
      column_list(list, sizeof list, m);
      ens_errorf(E->err, E->errlen, "%s: line %ld: %s '%s': no such column (columns: %s)",
                 m->name, first_line(m), opt, show(a, item), list);
      return ENS_EINVAL;
    }
    cols[(*n)++] = c;
    if (!q || *n >= m->cols)
      break;
    p = q + 1;
  }
  return 0;
}

/* Applies --drop, --id and --keep to the columns. */
static int resolve_roles(enc *E, ens_csv_data *out) {
  const ens_csv *m = E->m;
  const ens_csv_encode_opts *o = E->o;
  char a[SHOW_BUF];
  int *cols = malloc((size_t)m->cols * sizeof *cols), n = 0, rc = 0;
  if (!cols) {
    ens_errorf(E->err, E->errlen, "%s: out of memory", m->name);
    return ENS_ENOMEM;
  }
  if (o->drop && *o->drop) {
    if ((rc = each_column(E, o->drop, "--drop", cols, &n)) != 0)
      goto done;
    out->dropped = calloc((size_t)n, sizeof *out->dropped);
    if (!out->dropped) {
      rc = ENS_ENOMEM;
      goto done;
    }
    for (int i = 0; i < n; i++) {
      column *C = &E->col[cols[i]];
      if (C->target >= 0) {
        ens_errorf(E->err, E->errlen, "%s: --drop '%s': the column is a target (--target)",
                   m->name, show(a, m->names[cols[i]]));
        rc = ENS_EINVAL;
        goto done;
      }
      if (C->role == ROLE_DROP)
        continue;
      C->role = ROLE_DROP;
      if (!(out->dropped[out->ndropped++] = dup_str(m->names[cols[i]]))) {
        rc = ENS_ENOMEM;
        goto done;
      }
    }
  }
  if (o->id && *o->id) {
    if ((rc = each_column(E, o->id, "--id", cols, &n)) != 0)
      goto done;
    column *C = &E->col[cols[0]];
    if (n != 1 || C->target >= 0 || C->role == ROLE_DROP) {
      ens_errorf(E->err, E->errlen,
                 "%s: --id '%s': %s", m->name, show(a, o->id),
                 n != 1 ? "give one column" : C->target >= 0 ? "the column is a target (--target)"
                                                             : "the column is also in --drop");
      rc = ENS_EINVAL;
      goto done;
    }
    C->role = ROLE_ID;
    if (!(out->id_column = dup_str(m->names[cols[0]]))) {
      rc = ENS_ENOMEM;
      goto done;
    }
  }
  if (o->keep && *o->keep) {
    if ((rc = each_column(E, o->keep, "--keep", cols, &n)) != 0)
      goto done;
    for (int i = 0; i < n; i++)
      E->col[cols[i]].keep = 1;
  }
done:
  if (rc == ENS_ENOMEM)
    ens_errorf(E->err, E->errlen, "%s: out of memory", m->name);
  free(cols);
  return rc;
}

/* Digits at s[0..n). */
static int digits(const char *s, int n) {
  for (int i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return 0;
  return 1;
}

/* A calendar date, optionally with a time: 2012-01-31, 2012/01/31,
 * 2012.01.31, 31.01.2012, 01/31/2012, 31-01-2012, each optionally followed by
 * 'T' or ' ' and hh:mm[:ss[.fff]] and a zone (Z, +hh:mm). */
static int looks_like_date(const char *s) {
  while (*s == ' ')
    s++;
  size_t n = strlen(s);
  const char *t = NULL;
  if (n >= 10 && digits(s, 4) && (s[4] == '-' || s[4] == '/' || s[4] == '.') &&
      digits(s + 5, 2) && s[7] == s[4] && digits(s + 8, 2)) {
    int mo = atoi(s + 5), dy = atoi(s + 8);
    if (mo < 1 || mo > 12 || dy < 1 || dy > 31)
      return 0;
    t = s + 10;
  } else if (n >= 10 && digits(s, 2) && (s[2] == '.' || s[2] == '/' || s[2] == '-') &&
             digits(s + 3, 2) && s[5] == s[2] && digits(s + 6, 4)) {
    int a = atoi(s), b = atoi(s + 3);
    if (a < 1 || b < 1 || a > 31 || b > 31 || (a > 12 && b > 12))
      return 0;
    t = s + 10;
  } else {
    return 0;
  }
  if (!*t)
    return 1;
  if (*t != 'T' && *t != ' ')
    return 0;
  t++;
  if (!(digits(t, 2) && t[2] == ':' && digits(t + 3, 2)))
    return 0;
  t += 5;
  while (*t && strchr("0123456789:.Z+- ", *t))
    t++;
  return *t == '\0';
}

/* Identifier-like columns: a string column with a distinct value on every
 * row (of at least ID_MIN_ROWS rows), or on more than ID_SHARE of them (of
 * at least ID_SHARE_ROWS rows). */
#define ID_MIN_ROWS 5
#define ID_SHARE 0.5
#define ID_SHARE_ROWS 20

/* A categorical column that should not be one-hot encoded (dates,
 * identifiers, numbers with decimal commas) is refused, with how to keep it. */
static int check_suspicious(enc *E, int k) {
  const ens_csv *m = E->m;
  const column *C = &E->col[k];
  if (C->role != ROLE_FEATURE || !C->categorical || C->keep)
    return 0;
  char a[SHOW_BUF], b[SHOW_BUF], c2[SHOW_BUF];
  int n = E->n_m, dates = 0, commas = 0, first = -1;
  for (int r = 0; r < m->rows; r++) {
    if (!E->keep_m[r])
      continue;
    const char *v = field(m, r, k);
    double num;
    if (first < 0)
      first = r;
    dates += looks_like_date(v);
    commas += E->o->decimal != ',' && strchr(v, ',') && ens_csv_number(v, ',', &num) == NUM_OK;
  }
  const char *name = show(a, m->names[k]), *ex = show(b, field(m, first, k));
  const char *role = C->target >= 0 ? "target" : "feature";
  if (commas == n) {
    ens_errorf(E->err, E->errlen,
               "%s: column '%s': its values are numbers with a decimal comma (e.g. '%s'), which "
               "would be read as %d categories: use --decimal ','%s (or --keep %s to keep them "
               "as categories)",
               m->name, name, ex, C->ncat,
               E->delim == ',' ? " with a delimiter other than ',' (--delimiter ';')" : "",
               show(c2, m->names[k]));
    return ENS_EFORMAT;
  }
  if (C->target >= 0)
    return 0;
  if (dates == n) {
    ens_errorf(E->err, E->errlen,
               "%s: %s column '%s' holds dates (e.g. '%s'; %d distinct values in %d rows): as "
               "one-hot categories they give %d features that never match a new date. Drop it "
               "with --drop %s, or keep it as categories with --keep %s",
               m->name, role, name, ex, C->ncat, n, C->ncat, show(c2, m->names[k]), name);
    return ENS_EFORMAT;
  }
  if ((C->ncat == n && n >= ID_MIN_ROWS) || (n >= ID_SHARE_ROWS && C->ncat > ID_SHARE * n)) {
    ens_errorf(E->err, E->errlen,
               "%s: %s column '%s' looks like an identifier (e.g. '%s'; %d distinct values in %d "
               "rows, more than %.0f%%): as one-hot categories it gives %d features that do not "
               "generalize. Carry it through with --id %s, drop it with --drop %s, or keep it as "
               "categories with --keep %s",
               m->name, role, name, ex, C->ncat, n, 100 * ID_SHARE, C->ncat,
               show(c2, m->names[k]), name, name);
    return ENS_EFORMAT;
  }
  return 0;
}

/* Matches the test table's columns to the main table's by name. */
static int map_test_columns(enc *E) {
  const ens_csv *m = E->m, *t = E->t;
  char a[SHOW_BUF];
  name_ref *r = malloc((size_t)t->cols * sizeof *r);
  if (!r) {
    ens_errorf(E->err, E->errlen, "%s: out of memory", t->name);
    return ENS_ENOMEM;
  }
  for (int k = 0; k < t->cols; k++)
    r[k] = (name_ref){t->names[k], k};
  qsort(r, (size_t)t->cols, sizeof *r, cmp_name_ref);
  int rc = 0;
  for (int c = 0; c < m->cols; c++) {
    /* Names are unique, so the index part of the key never decides. */
    name_ref key = {m->names[c], -1}, *hit = NULL;
    size_t lo = 0, hi = (size_t)t->cols;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      int cmp = strcmp(r[mid].s, key.s);
      if (cmp == 0) {
        hit = &r[mid];
        break;
      }
      if (cmp < 0)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (!hit && E->col[c].role == ROLE_DROP) {
      E->col[c].test_col = -1; /* a dropped column need not be there */
      continue;
    }
    if (!hit) {
      ens_errorf(E->err, E->errlen,
                 "%s: line %ld: no column '%s' (the test file needs the columns "
                 "of %s, matched by header name in any order)",
                 t->name, first_line(t), show(a, m->names[c]), m->name);
      rc = ENS_EFORMAT;
      break;
    }
    E->col[c].test_col = hit->i;
  }
  free(r);
  if (rc)
    return rc;
  /* A column the main file lacks. */
  unsigned char *used = calloc((size_t)t->cols, 1);
  if (!used) {
    ens_errorf(E->err, E->errlen, "%s: out of memory", t->name);
    return ENS_ENOMEM;
  }
  for (int c = 0; c < m->cols; c++)
    if (E->col[c].test_col >= 0)
      used[E->col[c].test_col] = 1;
  for (int k = 0; k < t->cols && !rc; k++)
    if (!used[k]) {
      ens_errorf(E->err, E->errlen,
                 "%s: line %ld: column '%s' is not a column of %s (the test file needs the "
                 "same columns, matched by header name in any order)",
                 t->name, first_line(t), show(a, t->names[k]), m->name);
      rc = ENS_EFORMAT;
    }
  free(used);
  return rc;
}

/* Marks the rows of c without a missing value; *kept counts them. */
static int scan_missing(enc *E, const ens_csv *c, const int *colmap, unsigned char *keep, int *kept,
                        int *dropped) {
  char a[SHOW_BUF], b[SHOW_BUF];
  *kept = 0;
  *dropped = 0;
  for (int r = 0; r < c->rows; r++) {
    keep[r] = 1;
    for (int k = 0; k < E->m->cols && keep[r]; k++) {
      if (E->col[k].role != ROLE_FEATURE)
        continue;
      int ck = colmap ? colmap[k] : k;
      const char *v = field(c, r, ck);
      if (!is_missing(v))
        continue;
      if (!E->o->drop_missing) {
        ens_errorf(E->err, E->errlen,
                   "%s: line %ld, column '%s': missing value '%s' (use "
                   "--drop-missing to drop rows with missing values)",
                   c->name, c->lines[r], show(a, c->names[ck]), show(b, v));
        return ENS_EFORMAT;
      }
      keep[r] = 0;
    }
    if (keep[r])
      (*kept)++;
    else
      (*dropped)++;
  }
  if (*kept == 0) {
    ens_errorf(E->err, E->errlen,
               "%s: line %ld: no rows left: all %d data rows have missing "
               "values",
               c->name, c->lines[c->rows - 1], c->rows);
    return ENS_EFORMAT;
  }
  return 0;
}

/* Type of column k over the kept rows of the main table; categories of a
 * categorical column. */
static int infer_column(enc *E, int k) {
  const ens_csv *m = E->m;
  column *C = &E->col[k];
  char a[SHOW_BUF], b[SHOW_BUF];
  double v;
  C->bad_row = -1;
  if (C->role != ROLE_FEATURE)
    return 0;
  for (int r = 0; r < m->rows; r++) {
    if (!E->keep_m[r])
      continue;
    int kind = ens_csv_number(field(m, r, k), E->o->decimal, &v);
    if (kind == NUM_OK)
      C->numbers++;
    else if (C->bad_row < 0) {
      C->bad_row = r;
      C->bad_kind = kind;
    }
  }
  if (C->bad_row < 0)
    return 0;
  if (2 * (long)C->numbers > (long)E->n_m) {
    ens_errorf(E->err, E->errlen,
               "%s: line %ld, column '%s': '%s' %s (the column is numeric: "
               "%d of its %d values are numbers)",
               m->name, m->lines[C->bad_row], show(a, m->names[k]),
               show(b, field(m, C->bad_row, k)), number_problem(C->bad_kind), C->numbers, E->n_m);
    return ENS_EFORMAT;
  }
  C->categorical = 1;
  C->cats = malloc((size_t)E->n_m * sizeof *C->cats);
  if (!C->cats) {
    ens_errorf(E->err, E->errlen, "%s: out of memory", m->name);
    return ENS_ENOMEM;
  }
  int n = 0;
  for (int r = 0; r < m->rows; r++)
    if (E->keep_m[r])
      C->cats[n++] = field(m, r, k);
  qsort(C->cats, (size_t)n, sizeof *C->cats, cmp_str);
  int u = 0;
  for (int i = 0; i < n; i++)
    if (u == 0 || strcmp(C->cats[i], C->cats[u - 1]) != 0)
      C->cats[u++] = C->cats[i];
  C->ncat = u;
  /* Keep only the distinct values (one list per categorical column). */
  const char **shrunk = realloc(C->cats, (size_t)u * sizeof *C->cats);
  if (shrunk)
    C->cats = shrunk;
  return 0;
}

/* Index of s among the sorted categories of C, or -1. */
static int find_cat(const column *C, const char *s) {
  const char **hit = bsearch(&s, C->cats, (size_t)C->ncat, sizeof *C->cats, cmp_str);
  return hit ? (int)(hit - C->cats) : -1;
}

static int find_code(const enc *E, int classes, double v) {
  const double *hit = bsearch(&v, E->codes, (size_t)classes, sizeof *E->codes, cmp_double);
  return hit ? (int)(hit - E->codes) : -1;
}

/* Integer class codes: whole numbers small enough to print exactly. */
static int is_code(double v) { return v == floor(v) && fabs(v) <= 9007199254740992.0; }

/* Resolves the task and the classes. */
static int choose_task(enc *E, ens_csv_data *out) {
  const ens_csv *m = E->m;
  char a[SHOW_BUF], b[SHOW_BUF];
  int T = out->targets, cat_t = -1, task = E->o->task;
  for (int t = 0; t < T && cat_t < 0; t++)
    if (E->col[E->tcol[t]].categorical)
      cat_t = E->tcol[t];
  if (task == ENS_CSV_AUTO) {
    out->info.task_auto = 1;
    if (cat_t >= 0 && T > 1) {
      ens_errorf(E->err, E->errlen,
                 "%s: target column '%s' is not numeric, but classification "
                 "takes one target and %d were given (regression needs numeric targets)",
                 m->name, show(a, m->names[cat_t]), T);
      return ENS_EINVAL;
    }
    task = cat_t >= 0 ? ENS_CSV_CLASSIFY : ENS_CSV_REGRESS;
  } else if (task == ENS_CSV_CLASSIFY) {
    if (T != 1) {
      ens_errorf(E->err, E->errlen, "%s: --task classify takes one target column, got %d", m->name,
                 T);
      return ENS_EINVAL;
    }
  } else if (task == ENS_CSV_REGRESS) {
    if (cat_t >= 0) {
      const column *C = &E->col[cat_t];
      ens_errorf(E->err, E->errlen,
                 "%s: line %ld, column '%s': '%s' is not a number "
                 "(--task regress needs numeric targets)",
                 m->name, m->lines[C->bad_row], show(a, m->names[cat_t]),
                 show(b, field(m, C->bad_row, cat_t)));
      return ENS_EINVAL;
    }
  } else {
    ens_errorf(E->err, E->errlen, "%s: unknown task %d", m->name, task);
    return ENS_EINVAL;
  }
  out->info.task = (ens_csv_task)task;
  E->classify = task == ENS_CSV_CLASSIFY;
  if (!E->classify)
    return 0;

  int c = E->tcol[0];
  const column *C = &E->col[c];
  if (C->categorical) {
    out->classes = C->ncat;
  } else {
    /* Numeric codes: whole numbers, classes in numeric order. */
    out->info.integer_codes = 1;
    E->codes = malloc((size_t)E->n_m * sizeof *E->codes);
    if (!E->codes) {
      ens_errorf(E->err, E->errlen, "%s: out of memory", m->name);
      return ENS_ENOMEM;
    }
    int n = 0;
    for (int r = 0; r < m->rows; r++) {
      double v = 0;
      if (!E->keep_m[r])
        continue;
      ens_csv_number(field(m, r, c), E->o->decimal, &v);
      if (!is_code(v)) {
        ens_errorf(E->err, E->errlen,
                   "%s: line %ld, column '%s': '%s' is not an integer class "
                   "code (classification on a numeric target needs whole numbers)",
                   m->name, m->lines[r], show(a, m->names[c]), show(b, field(m, r, c)));
        return ENS_EFORMAT;
      }
      E->codes[n++] = v == 0 ? 0.0 : v; /* -0 and 0 are one class */
    }
    qsort(E->codes, (size_t)n, sizeof *E->codes, cmp_double);
    int u = 0;
    for (int i = 0; i < n; i++)
      if (u == 0 || E->codes[i] != E->codes[u - 1])
        E->codes[u++] = E->codes[i];
    out->classes = u;
  }
  if (out->classes < 2) {
    char num[32];
    if (!C->categorical)
      snprintf(num, sizeof num, "%lld", (long long)E->codes[0]);
    ens_errorf(E->err, E->errlen,
               "%s: target column '%s' has a single value ('%s'): "
               "classification needs at least 2 classes",
               m->name, show(a, m->names[c]), show(b, C->categorical ? C->cats[0] : num));
    return ENS_EFORMAT;
  }
  return 0;
}

/* Names of features, targets, classes and categories, all owned by out. */
static int build_names(enc *E, ens_csv_data *out) {
  const ens_csv *m = E->m;
  long d = 0;
  for (int k = 0; k < m->cols; k++) {
    column *C = &E->col[k];
    if (C->role != ROLE_FEATURE)
      continue;
    if (C->categorical)
      out->ncat++;
    if (C->target >= 0)
      continue;
    C->feature = (int)d;
    d += C->categorical ? C->ncat : 1;
    if (C->categorical)
      out->info.categorical_cols++;
    else
      out->info.numeric_cols++;
    if (d > INT_MAX) {
      ens_errorf(E->err, E->errlen, "%s: more than %d features after one-hot encoding", m->name,
                 INT_MAX);
      return ENS_EFORMAT;
    }
  }
  if (d == 0) {
    ens_errorf(E->err, E->errlen,
               "%s: line %ld: no feature columns: every one of the %d column%s "
               "is a target, dropped or the id (is the delimiter right? see --delimiter)",
               m->name, first_line(m), m->cols, m->cols == 1 ? "" : "s");
    return ENS_EINVAL;
  }
  out->d = (int)d;
  int T = out->targets;
  out->feature_names = calloc((size_t)d, sizeof *out->feature_names);
  out->target_names = calloc((size_t)T, sizeof *out->target_names);
  out->cat_columns = calloc((size_t)out->ncat + 1, sizeof *out->cat_columns);
  out->cat_counts = calloc((size_t)out->ncat + 1, sizeof *out->cat_counts);
  out->cat_values = calloc((size_t)out->ncat + 1, sizeof *out->cat_values);
  if (E->classify)
    out->class_names = calloc((size_t)out->classes, sizeof *out->class_names);
  if (!out->feature_names || !out->target_names || !out->cat_columns || !out->cat_counts ||
      !out->cat_values || (E->classify && !out->class_names))
    goto nomem;
  for (int t = 0; t < T; t++)
    if (!(out->target_names[t] = dup_str(m->names[E->tcol[t]])))
      goto nomem;
  int cat = 0;
  for (int k = 0; k < m->cols; k++) {
    const column *C = &E->col[k];
    const char *cn = m->names[k];
    if (C->role != ROLE_FEATURE)
      continue;
    if (C->categorical) {
      out->cat_columns[cat] = dup_str(cn);
      out->cat_values[cat] = calloc((size_t)C->ncat, sizeof **out->cat_values);
      if (!out->cat_columns[cat] || !out->cat_values[cat])
        goto nomem;
      out->cat_counts[cat] = C->ncat;
      for (int j = 0; j < C->ncat; j++)
        if (!(out->cat_values[cat][j] = dup_str(C->cats[j])))
          goto nomem;
      cat++;
    }
    if (C->target >= 0)
      continue;
    if (!C->categorical) {
      if (!(out->feature_names[C->feature] = dup_str(cn)))
        goto nomem;
      continue;
    }
    size_t cl = strlen(cn);
    for (int j = 0; j < C->ncat; j++) {
      size_t vl = strlen(C->cats[j]);
      char *s = malloc(cl + vl + 2);
      if (!s)
        goto nomem;
      memcpy(s, cn, cl);
      s[cl] = '=';
      memcpy(s + cl + 1, C->cats[j], vl + 1);
      out->feature_names[C->feature + j] = s;
    }
  }
  if (E->classify) {
    const column *C = &E->col[E->tcol[0]];
    for (int j = 0; j < out->classes; j++) {
      char num[32];
      snprintf(num, sizeof num, "%lld", (long long)(C->categorical ? 0 : E->codes[j]));
      if (!(out->class_names[j] = dup_str(C->categorical ? C->cats[j] : num)))
        goto nomem;
    }
  }
  return 0;
nomem:
  ens_errorf(E->err, E->errlen, "%s: out of memory", m->name);
  return ENS_ENOMEM;
}

static int part_alloc(ens_csv_part *p, int n, int d, int T, int classify, int ids) {
  size_t rows = n > 0 ? (size_t)n : 1;
  if ((size_t)d > SIZE_MAX / sizeof(float) / rows)
    return ENS_ENOMEM;
  p->n = n;
  p->x = calloc(rows * (size_t)d, sizeof *p->x);
  p->line = malloc(rows * sizeof *p->line);
  if (ids && !(p->id = calloc(rows, sizeof *p->id)))
    return ENS_ENOMEM;
  if (classify)
    p->label = malloc(rows * sizeof *p->label);
  else
    p->y = malloc(rows * (size_t)T * sizeof *p->y);
  return p->x && p->line && (classify ? p->label != NULL : p->y != NULL) ? 0 : ENS_ENOMEM;
}

static void part_free(ens_csv_part *p) {
  for (int i = 0; p->id && i < p->n; i++)
    free(p->id[i]);
  free(p->id);
  free(p->x);
  free(p->label);
  free(p->y);
  free(p->line);
  memset(p, 0, sizeof *p);
}

/* Encodes the kept rows of table c (the main table when is_test is 0) into
 * p, which part_alloc sized. */
static int encode_rows(enc *E, ens_csv_data *out, const ens_csv *c, const unsigned char *keep,
                       int is_test, ens_csv_part *p) {
  const ens_csv *m = E->m;
  char a[SHOW_BUF], b[SHOW_BUF], e[SHOW_BUF];
  int d = out->d, T = out->targets, i = 0;
  for (int r = 0; r < c->rows; r++) {
    if (!keep[r])
      continue;
    float *x = p->x + (size_t)i * (size_t)d;
    p->line[i] = c->lines[r];
    for (int k = 0; k < m->cols; k++) {
      const column *C = &E->col[k];
      int ck = is_test ? C->test_col : k;
      if (C->role == ROLE_DROP)
        continue;
      const char *v = field(c, r, ck);
      if (C->role == ROLE_ID) {
        if (!(p->id[i] = dup_str(v))) {
          ens_errorf(E->err, E->errlen, "%s: out of memory", c->name);
          return ENS_ENOMEM;
        }
        continue;
      }
      double num = 0;
      int kind = C->categorical ? NUM_NOT : ens_csv_number(v, E->o->decimal, &num);
      if (!C->categorical && kind != NUM_OK) {
        ens_errorf(E->err, E->errlen,
                   "%s: line %ld, column '%s': '%s' %s (the column is numeric "
                   "in %s)",
                   c->name, c->lines[r], show(a, c->names[ck]), show(b, v), number_problem(kind),
                   m->name);
        return ENS_EFORMAT;
      }
      if (C->target >= 0) {
        if (!E->classify) {
          p->y[(size_t)i * (size_t)T + (size_t)C->target] = (float)num;
          continue;
        }
        int cls = C->categorical ? find_cat(C, v)
                  : is_code(num) ? find_code(E, out->classes, num == 0 ? 0.0 : num)
                                 : -1;
        if (cls < 0) {
          ens_errorf(E->err, E->errlen,
                     "%s: line %ld, column '%s': class '%s' does not occur in "
                     "%s",
                     c->name, c->lines[r], show(a, c->names[ck]), show(b, v), show(e, m->name));
          return ENS_EFORMAT;
        }
        p->label[i] = cls;
        continue;
      }
      if (!C->categorical) {
        x[C->feature] = (float)num;
        continue;
      }
      int j = find_cat(C, v);
      if (j >= 0)
        x[C->feature + j] = 1.0f;
      else
        out->info.unseen++; /* only the test table can miss */
    }
    i++;
  }
  return 0;
}

/* Moves nmove rows of p, chosen by a permutation keyed by (seed,
 * ENS_STREAM_SPLIT, sub), to q; both keep the rows in file order. */
static int split_part(ens_csv_part *q, ens_csv_part *p, int nmove, uint64_t seed, uint32_t sub,
                      int d, int T, int classify, int ids) {
  int n = p->n, rc = ENS_ENOMEM;
  int32_t *perm = malloc((size_t)n * sizeof *perm);
  unsigned char *mv = calloc((size_t)n, 1);
  if (!perm || !mv || part_alloc(q, nmove, d, T, classify, ids))
    goto cleanup;
  ens_rng r;
  ens_rng_init(&r, seed, SPLIT_MEMBER, ENS_STREAM_SPLIT, sub);
  ens_rng_permutation(&r, perm, n);
  for (int k = 0; k < nmove; k++)
    mv[perm[k]] = 1;
  size_t dd = (size_t)d, tt = classify ? 1 : (size_t)T;
  int kept = 0, moved = 0;
  for (int i = 0; i < n; i++) {
    ens_csv_part *dst = mv[i] ? q : p;
    int j = mv[i] ? moved++ : kept++;
    /* Rows of p only move towards the front, so memmove in place is safe. */
    if (dst == p && j == i)
      continue;
    memmove(dst->x + (size_t)j * dd, p->x + (size_t)i * dd, dd * sizeof *p->x);
    dst->line[j] = p->line[i];
    if (ids)
      dst->id[j] = p->id[i];
    if (classify)
      dst->label[j] = p->label[i];
    else
      memmove(dst->y + (size_t)j * tt, p->y + (size_t)i * tt, tt * sizeof *p->y);
  }
  for (int i = kept; ids && i < n; i++)
    p->id[i] = NULL; /* moved to q, or moved forward within p */
  p->n = kept;
  rc = 0;
cleanup:
  free(perm);
  free(mv);
  return rc;
}

void ens_csv_data_free(ens_csv_data *d) {
  if (!d)
    return;
  if (d->feature_names)
    for (int i = 0; i < d->d; i++)
      free(d->feature_names[i]);
  if (d->target_names)
    for (int i = 0; i < d->targets; i++)
      free(d->target_names[i]);
  if (d->class_names)
    for (int i = 0; i < d->classes; i++)
      free(d->class_names[i]);
  for (int k = 0; k < d->ncat; k++) {
    if (d->cat_values && d->cat_values[k])
      for (int j = 0; j < d->cat_counts[k]; j++)
        free(d->cat_values[k][j]);
    if (d->cat_values)
      free(d->cat_values[k]);
    if (d->cat_columns)
      free(d->cat_columns[k]);
  }
  free(d->feature_names);
  free(d->target_names);
  free(d->class_names);
  free(d->cat_columns);
  free(d->cat_counts);
  free(d->cat_values);
  free(d->id_column);
  for (int k = 0; d->dropped && k < d->ndropped; k++)
    free(d->dropped[k]);
  free(d->dropped);
  part_free(&d->train);
  part_free(&d->test);
  part_free(&d->val);
  memset(d, 0, sizeof *d);
}

int ens_csv_encode(ens_csv_data *out, const ens_csv *m, const ens_csv *test,
                   const ens_csv_encode_opts *o, char *err, size_t errlen) {
  int rc = ENS_EINVAL;
  enc E;
  memset(&E, 0, sizeof E);
  memset(out, 0, sizeof *out);
  if (err && errlen)
    err[0] = '\0';
  E.m = m;
  E.t = test;
  E.o = o;
  E.err = err;
  E.errlen = errlen;
  E.delim = m && m->delimiter ? m->delimiter : ',';
  if (!m || !o || m->cols < 1 || m->rows < 1 || (test && (test->cols < 1 || test->rows < 1))) {
    ens_errorf(err, errlen, "CSV encode: empty or missing table");
    return ENS_EINVAL;
  }
  if (!test && !(o->test_fraction > 0 && o->test_fraction < 1)) {
    ens_errorf(err, errlen, "%s: test fraction %g: expected a number in (0, 1) (or a test file)",
               m->name, o->test_fraction);
    return ENS_EINVAL;
  }
  if (!(o->val_fraction >= 0 && o->val_fraction < 1)) {
    ens_errorf(err, errlen, "%s: validation fraction %g: expected a number in [0, 1)", m->name,
               o->val_fraction);
    return ENS_EINVAL;
  }
  int cols = m->cols;
  int *colmap = NULL;
  E.col = calloc((size_t)cols, sizeof *E.col);
  E.keep_m = malloc((size_t)m->rows);
  if (test) {
    E.keep_t = malloc((size_t)test->rows);
    colmap = malloc((size_t)cols * sizeof *colmap);
  }
  if (!E.col || !E.keep_m || (test && (!E.keep_t || !colmap))) {
    rc = ENS_ENOMEM;
    ens_errorf(err, errlen, "%s: out of memory", m->name);
    goto cleanup;
  }
  for (int k = 0; k < cols; k++) {
    E.col[k].target = -1;
    E.col[k].feature = -1;
    E.col[k].test_col = k;
  }
  out->info.rows = m->rows;
  if ((rc = resolve_targets(&E, out)) != 0 || (rc = resolve_roles(&E, out)) != 0)
    goto cleanup;
  if (test && (rc = map_test_columns(&E)) != 0)
    goto cleanup;
  if ((rc = scan_missing(&E, m, NULL, E.keep_m, &E.n_m, &out->info.dropped)) != 0)
    goto cleanup;
  if (test) {
    for (int k = 0; k < cols; k++)
      colmap[k] = E.col[k].test_col;
    if ((rc = scan_missing(&E, test, colmap, E.keep_t, &E.n_t, &out->info.test_dropped)) != 0)
      goto cleanup;
  }
  for (int k = 0; k < cols; k++)
    if ((rc = infer_column(&E, k)) != 0)
      goto cleanup;
  for (int k = 0; k < cols; k++)
    if ((rc = check_suspicious(&E, k)) != 0)
      goto cleanup;
  if ((rc = choose_task(&E, out)) != 0 || (rc = build_names(&E, out)) != 0)
    goto cleanup;
  out->info.targets = out->targets;
  out->info.features = out->d;
  out->info.classes = out->classes;

  int T = out->targets;
  rc = ENS_ENOMEM;
  const int ids = out->id_column != NULL;
  if (part_alloc(&out->train, E.n_m, out->d, T, E.classify, ids) ||
      (test && part_alloc(&out->test, E.n_t, out->d, T, E.classify, ids))) {
    ens_errorf(err, errlen, "%s: out of memory for %d x %d features", m->name, E.n_m, out->d);
    goto cleanup;
  }
  if ((rc = encode_rows(&E, out, m, E.keep_m, 0, &out->train)) != 0 ||
      (test && (rc = encode_rows(&E, out, test, E.keep_t, 1, &out->test)) != 0))
    goto cleanup;

  if (!test) {
    long ntest = lround(o->test_fraction * E.n_m);
    if (ntest < 1 || ntest >= E.n_m) {
      rc = ENS_EINVAL;
      ens_errorf(err, errlen,
                 "%s: a test fraction of %g of %d row%s leaves %s (give more rows, "
                 "another --test-fraction, or --test FILE)",
                 m->name, o->test_fraction, E.n_m, E.n_m == 1 ? "" : "s",
                 ntest < 1 ? "no test rows" : "no training rows");
      goto cleanup;
    }
    if ((rc = split_part(&out->test, &out->train, (int)ntest, o->split_seed, SPLIT_SUB_TEST, out->d,
                         T, E.classify, ids)) != 0) {
      ens_errorf(err, errlen, "%s: out of memory splitting the rows", m->name);
      goto cleanup;
    }
  }
  if (o->val_fraction > 0) {
    long nval = lround(o->val_fraction * out->train.n);
    if (nval >= out->train.n) {
      rc = ENS_EINVAL;
      ens_errorf(err, errlen,
                 "%s: a validation fraction of %g of %d training rows leaves no "
                 "training rows",
                 m->name, o->val_fraction, out->train.n);
      goto cleanup;
    }
    if (nval > 0 && (rc = split_part(&out->val, &out->train, (int)nval, o->split_seed,
                                     SPLIT_SUB_VAL, out->d, T, E.classify, ids)) != 0) {
      ens_errorf(err, errlen, "%s: out of memory splitting the rows", m->name);
      goto cleanup;
    }
  }
  out->info.train_rows = out->train.n;
  out->info.test_rows = out->test.n;
  out->info.val_rows = out->val.n;
  rc = 0;

cleanup:
  if (E.col)
    for (int k = 0; k < cols; k++)
      free(E.col[k].cats);
  free(E.col);
  free(E.tcol);
  free(E.keep_m);
  free(E.keep_t);
  free(E.codes);
  free(colmap);
  if (rc)
    ens_csv_data_free(out);
  return rc;
}

/* ---- files -------------------------------------------------------------- */

/* Reads a whole (possibly gzip-compressed) file into *buf (malloc'd). */
static int read_file(char **buf, size_t *len, const char *path, char *err, size_t errlen) {
  *buf = NULL;
  *len = 0;
  errno = 0;
  gzFile gz = gzopen(path, "rb");
  if (!gz) {
    ens_errorf(err, errlen, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    return errno ? ENS_EIO : ENS_ENOMEM;
  }
  int rc = 0;
  size_t cap = 0, n = 0;
  char *b = NULL;
  for (;;) {
    if (grow((void **)&b, &cap, n + READ_CHUNK, 1)) {
      rc = ENS_ENOMEM;
      ens_errorf(err, errlen, "%s: out of memory after %zu bytes", path, n);
      break;
    }
    int r = gzread(gz, b + n, (unsigned)READ_CHUNK);
    if (r < 0) {
      int zerr = Z_OK;
      const char *msg = gzerror(gz, &zerr);
      rc = zerr == Z_ERRNO ? ENS_EIO : ENS_EFORMAT;
      ens_errorf(err, errlen, "%s: read error after %zu bytes: %s", path, n,
                 zerr == Z_ERRNO ? strerror(errno) : msg);
      break;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  gzclose(gz);
  if (rc) {
    free(b);
    return rc;
  }
  *buf = b;
  *len = n;
  return 0;
}

int ens_csv_load(ens_csv *out, const char *path, const ens_csv_opts *o, char *err,
                 size_t errlen) {
  char *buf = NULL;
  size_t len = 0;
  memset(out, 0, sizeof *out);
  int rc = read_file(&buf, &len, path, err, errlen);
  if (rc)
    return rc;
  ens_csv_opts po = o ? *o : (ens_csv_opts){0};
  po.name = path;
  rc = ens_csv_parse(out, buf, len, &po, err, errlen);
  free(buf);
  return rc;
}

/* '/' cannot appear in an HDF5 link name and "." means the group itself. */
static void sanitize(char *s) {
  int dots = 1;
  for (char *p = s; *p; p++) {
    if (*p == '/')
      *p = '_';
    dots &= *p == '.';
  }
  if (dots)
    for (char *p = s; *p; p++)
      *p = '_';
}

static int write_part(hid_t f, const char *grp, const ens_csv_part *p, const ens_csv_data *d) {
  char path[64];
  hsize_t dims[2] = {(hsize_t)p->n, (hsize_t)d->d};
  snprintf(path, sizeof path, "/%s/x", grp);
  if (ens_h5_write(f, path, H5T_NATIVE_FLOAT, 2, dims, p->x, 1))
    return ENS_EHDF5;
  /* Where each row came from: its line in the source file, and its id. */
  snprintf(path, sizeof path, "/%s/line", grp);
  int64_t *ln = malloc((size_t)(p->n ? p->n : 1) * sizeof *ln);
  if (!ln)
    return ENS_ENOMEM;
  for (int i = 0; i < p->n; i++)
    ln[i] = p->line[i];
  int bad = ens_h5_write(f, path, H5T_NATIVE_INT64, 1, dims, ln, 1);
  free(ln);
  if (bad)
    return ENS_EHDF5;
  snprintf(path, sizeof path, "/%s/id", grp);
  if (p->id && ens_h5_write_strings(f, path, (const char *const *)p->id, (size_t)p->n))
    return ENS_EHDF5;
  snprintf(path, sizeof path, "/%s/y", grp);
  if (p->label)
    return ens_h5_write(f, path, H5T_NATIVE_INT32, 1, dims, p->label, 1);
  dims[1] = (hsize_t)d->targets;
  return ens_h5_write(f, path, H5T_NATIVE_FLOAT, d->targets == 1 ? 1 : 2, dims, p->y, 1);
}

static int write_file(hid_t f, const ens_csv_data *d, const ens_csv_import_opts *o) {
  int classify = d->info.task == ENS_CSV_CLASSIFY;
  if (write_part(f, "train", &d->train, d) || write_part(f, "test", &d->test, d) ||
      (d->val.n > 0 && write_part(f, "val", &d->val, d)))
    return ENS_EHDF5;
  if (ens_h5_write_strings(f, "/feature_names", (const char *const *)d->feature_names,
                           (size_t)d->d) ||
      ens_h5_write_strings(f, "/target_names", (const char *const *)d->target_names,
                           (size_t)d->targets) ||
      (classify && ens_h5_write_strings(f, "/class_names", (const char *const *)d->class_names,
                                        (size_t)d->classes)))
    return ENS_EHDF5;
  for (int k = 0; k < d->ncat; k++) {
    size_t n = strlen(d->cat_columns[k]);
    char *path = malloc(n + 40);
    if (!path)
      return ENS_ENOMEM;
    memcpy(path, "/categories/", 12);
    memcpy(path + 12, d->cat_columns[k], n + 1);
    sanitize(path + 12);
    /* Two names may sanitize alike ("a/b", "a_b"): tell them apart. */
    if (ens_h5_exists(f, path))
      snprintf(path + 12 + n, 28, "#%d", k);
    int bad = ens_h5_write_strings(f, path, (const char *const *)d->cat_values[k],
                                   (size_t)d->cat_counts[k]) ||
              ens_h5_attr_str(f, path, "column", d->cat_columns[k]);
    free(path);
    if (bad)
      return ENS_EHDF5;
  }
  if (ens_h5_attr_str(f, "/", "source", o->path) ||
      ens_h5_attr_str(f, "/", "task", classify ? "classify" : "regress") ||
      (classify && ens_h5_attr_i64(f, "/", "classes", d->classes)) ||
      (o->test_path && ens_h5_attr_str(f, "/", "test_source", o->test_path)) ||
      (!o->test_path && ens_h5_attr_f64(f, "/", "test_fraction", o->enc.test_fraction)) ||
      ens_h5_attr_f64(f, "/", "val_fraction", o->enc.val_fraction) ||
      ens_h5_attr_i64(f, "/", "split_seed", (int64_t)o->enc.split_seed))
    return ENS_EHDF5;
  /* What ens predict needs to read new rows of the same table. */
  char delim[2] = {o->csv.delimiter ? o->csv.delimiter : ',', 0};
  char dec[2] = {o->enc.decimal ? o->enc.decimal : '.', 0};
  if (ens_h5_attr_str(f, "/", "csv_delimiter", delim) ||
      ens_h5_attr_str(f, "/", "csv_header", o->csv.no_header ? "no" : "yes") ||
      ens_h5_attr_str(f, "/", "csv_decimal", dec) ||
      (d->id_column && ens_h5_attr_str(f, "/", "id_column", d->id_column)) ||
      (d->ndropped && ens_h5_write_strings(f, "/dropped_columns",
                                           (const char *const *)d->dropped, (size_t)d->ndropped)))
    return ENS_EHDF5;
  return 0;
}

/* mkdir -p of the directory part of path (nothing for a bare file name). */
static int make_parent(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path)
    return 0;
  size_t n = (size_t)(slash - path);
  char *dir = malloc(n + 1);
  if (!dir)
    return -1;
  memcpy(dir, path, n);
  dir[n] = '\0';
  int r = ens_mkdir_p(dir);
  free(dir);
  return r;
}

int ens_csv_import(ens_csv_summary *sum, const ens_csv_import_opts *o, char *err, size_t errlen) {
  int rc = 0;
  char *mbuf = NULL, *tbuf = NULL;
  size_t mlen = 0, tlen = 0;
  ens_csv m, t;
  ens_csv_data d;
  hid_t f = H5I_INVALID_HID;
  H5E_auto2_t old_func = NULL;
  void *old_data = NULL;

  memset(&m, 0, sizeof m);
  memset(&t, 0, sizeof t);
  memset(&d, 0, sizeof d);
  if (sum)
    memset(sum, 0, sizeof *sum);
  if (err && errlen)
    err[0] = '\0';
  H5Eget_auto2(H5E_DEFAULT, &old_func, &old_data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (!o || !o->path || !o->out_path) {
    rc = ENS_EINVAL;
    ens_errorf(err, errlen, "CSV import: the input file and the output path are required");
    goto cleanup;
  }
  ens_csv_opts po = o->csv;
  if ((rc = read_file(&mbuf, &mlen, o->path, err, errlen)) != 0)
    goto cleanup;
  po.name = o->path;
  if ((rc = ens_csv_parse(&m, mbuf, mlen, &po, err, errlen)) != 0)
    goto cleanup;
  free(mbuf);
  mbuf = NULL;
  if (o->test_path) {
    if ((rc = read_file(&tbuf, &tlen, o->test_path, err, errlen)) != 0)
      goto cleanup;
    po.name = o->test_path;
    if ((rc = ens_csv_parse(&t, tbuf, tlen, &po, err, errlen)) != 0)
      goto cleanup;
    free(tbuf);
    tbuf = NULL;
  }
  if ((rc = ens_csv_encode(&d, &m, o->test_path ? &t : NULL, &o->enc, err, errlen)) != 0)
    goto cleanup;
  ens_csv_free(&m);
  ens_csv_free(&t);

  if (make_parent(o->out_path) != 0) {
    rc = ENS_EIO;
    ens_errorf(err, errlen, "%s: cannot create the output directory: %s", o->out_path,
               strerror(errno));
    goto cleanup;
  }
  ens_tmp_sweep(o->out_path); /* temporary files of dead imports */
  /* Built in memory, then written and renamed into place with plain POSIX
   * calls (io/storage.h): a full disk is reported as such, nothing is left. */
  f = ens_storage_h5_memory(o->out_path);
  if (f < 0) {
    rc = ENS_EHDF5;
    ens_errorf(err, errlen, "%s: cannot create the output file in memory", o->out_path);
    goto cleanup;
  }
  if ((rc = write_file(f, &d, o)) != 0) {
    ens_errorf(err, errlen, "%s: cannot build the output file in memory", o->out_path);
    goto cleanup;
  }
  rc = ens_storage_h5_publish(f, o->out_path, NULL, "cannot write", err, errlen);
  f = H5I_INVALID_HID;
  if (rc)
    goto cleanup;
  if (sum)
    *sum = d.info;

cleanup:
  if (f >= 0)
    H5Fclose(f);
  H5Eset_auto2(H5E_DEFAULT, old_func, old_data);
  free(mbuf);
  free(tbuf);
  ens_csv_free(&m);
  ens_csv_free(&t);
  ens_csv_data_free(&d);
  return rc;
}
