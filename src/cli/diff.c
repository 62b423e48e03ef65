/* `ens diff A.h5 B.h5`: are two result files the same? Every dataset is
 * compared bitwise (a NaN equals a NaN of the same bit pattern), every
 * attribute by value, and the stored configurations key by key. Timing and
 * placement are exempt: the attributes train_seconds and ranks, attributes
 * named peak_rss*, and everything under /ranks and /history; so are the [output] keys of
 * the configuration, which do not change a result. Exit 0 identical, 1
 * different (with a short report), 2 when an input cannot be read (as
 * diff(1), cmp(1) and h5diff). This is the check of the determinism contract
 * (tests/integration/lib.bash: same_result). */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/suggest.h"
#include "ens/config.h"
#include "io/h5util.h"

#define DIFF_SHOWN 20 /* report lines before "... and N more" (unless --all) */

typedef struct names {
  char **v;
  int n, cap;
} names;

typedef struct diff_ctx {
  const char *pa, *pb; /* file names */
  hid_t fa, fb;
  int all, verbose;
  long ndiff, shown;
  long datasets, values, attributes; /* compared */
  int config_compared;
  int bad_read; /* an object could not be read: exit 2 */
} diff_ctx;

static int names_add(names *l, const char *s) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 64;
    char **v = realloc(l->v, (size_t)cap * sizeof(char *));
    if (!v)
      return -1;
    l->v = v;
    l->cap = cap;
  }
  size_t len = strlen(s);
  char *c = malloc(len + 1);
  if (!c)
    return -1;
  memcpy(c, s, len + 1);
  l->v[l->n++] = c;
  return 0;
}

static void names_free(names *l) {
  for (int i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof(*l));
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One line of the report (counted always, printed up to DIFF_SHOWN). */
static void report(diff_ctx *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(diff_ctx *d, const char *fmt, ...) {
  d->ndiff++;
  if (!d->all && d->shown >= DIFF_SHOWN)
    return;
  d->shown++;
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
}

/* ---- exemptions ---------------------------------------------------------- */

static int exempt_object(const char *path) {
  return !strcmp(path, "/ranks") || !strncmp(path, "/ranks/", 7) || !strcmp(path, "/history") ||
         !strncmp(path, "/history/", 9); /* run history: how it was made, like timing */
}

static int exempt_attribute(const char *name) {
  return !strcmp(name, "train_seconds") || !strcmp(name, "ranks") ||
         !strncmp(name, "peak_rss", 8);
}

/* ---- walking the files --------------------------------------------------- */

static herr_t collect_link(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)g;
  if (info->type != H5L_TYPE_HARD)
    return 0;
  char path[2048];
  snprintf(path, sizeof(path), "/%s", name);
  return names_add(data, path) ? -1 : 0;
}

static int collect(hid_t f, names *l) {
  if (names_add(l, "/"))
    return -1;
  if (H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, collect_link, l) < 0)
    return -1;
  qsort(l->v, (size_t)l->n, sizeof(char *), cmp_str);
  return 0;
}

static herr_t collect_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
  (void)loc;
  (void)info;
  return names_add(data, name) ? -1 : 0;
}

/* "dataset" or "group" (or "object"). */
static const char *kind_of(hid_t f, const char *path) {
  hid_t o = H5Oopen(f, path, H5P_DEFAULT);
  if (o < 0)
    return "object";
  H5I_type_t t = H5Iget_type(o);
  H5Oclose(o);
  return t == H5I_DATASET ? "dataset" : t == H5I_GROUP ? "group" : "object";
}

/* ---- values -------------------------------------------------------------- */

/* Element i of a native numeric buffer as a double (for the report). */
static double as_double(const void *buf, size_t i, H5T_class_t cls, size_t sz, int is_signed) {
  if (cls == H5T_FLOAT)
    return sz == sizeof(float) ? ((const float *)buf)[i] : ((const double *)buf)[i];
  const char *p = (const char *)buf + i * sz;
  if (sz == 8) {
    int64_t v;
    memcpy(&v, p, 8);
    return is_signed ? (double)v : (double)(uint64_t)v;
  }
  if (sz == 4) {
    int32_t v;
    memcpy(&v, p, 4);
    return is_signed ? (double)v : (double)(uint32_t)v;
  }
  if (sz == 2) {
    int16_t v;
    memcpy(&v, p, 2);
    return is_signed ? (double)v : (double)(uint16_t)v;
  }
  return is_signed ? (double)*(const signed char *)p : (double)*(const unsigned char *)p;
}

/* Reads all of object o (dataset or attribute) as memory type mt into a
 * malloc'd buffer of n elements, or NULL. */
static void *read_all(hid_t o, int is_attr, hid_t mt, size_t n) {
  size_t sz = H5Tget_size(mt);
  void *buf = calloc(n ? n : 1, sz);
  if (!buf)
    return NULL;
  herr_t r = is_attr ? H5Aread(o, mt, buf) : H5Dread(o, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  if (r < 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static void shape_text(char *buf, size_t len, int rank, const hsize_t *dims) {
  buf[0] = '\0';
  for (int i = 0; i < rank; i++)
    snprintf(buf + strlen(buf), len - strlen(buf), "%s%llu", i ? ", " : "",
             (unsigned long long)dims[i]);
}

/* Compares two datasets or two attributes (oa, ob) of the same name; `what`
 * names them in the report ("dataset /x" or "attribute /x lr"). Returns 1
 * when they differ. Numbers are compared bitwise in their stored type (a NaN
 * equals a NaN of the same bits), strings as text. */
static int compare_values(diff_ctx *d, hid_t oa, hid_t ob, int is_attr, const char *what) {
  hid_t ta = is_attr ? H5Aget_type(oa) : H5Dget_type(oa);
  hid_t tb = is_attr ? H5Aget_type(ob) : H5Dget_type(ob);
  hid_t sa = is_attr ? H5Aget_space(oa) : H5Dget_space(oa);
  hid_t sb = is_attr ? H5Aget_space(ob) : H5Dget_space(ob);
  hid_t ma = -1, mb = -1;
  void *a = NULL, *b = NULL;
  int differs = 0, is_str = 0, vstr = 0;
  size_t n = 0;
  if (ta < 0 || tb < 0 || sa < 0 || sb < 0) {
    fprintf(stderr, "ens diff: cannot read %s\n", what);
    d->bad_read = 1;
    goto done;
  }
  H5T_class_t ca = H5Tget_class(ta), cb = H5Tget_class(tb);
  int ra = H5Sget_simple_extent_ndims(sa), rb = H5Sget_simple_extent_ndims(sb);
  hsize_t da[H5S_MAX_RANK], db[H5S_MAX_RANK];
  if (ra < 0 || rb < 0 || H5Sget_simple_extent_dims(sa, da, NULL) < 0 ||
      H5Sget_simple_extent_dims(sb, db, NULL) < 0) {
    fprintf(stderr, "ens diff: cannot read the shape of %s\n", what);
    d->bad_read = 1;
    goto done;
  }
  int same_shape = ra == rb;
  for (int i = 0; same_shape && i < ra; i++)
    same_shape = da[i] == db[i];
  is_str = ca == H5T_STRING;
  if (ca != cb || (!is_str && H5Tequal(ta, tb) <= 0)) {
    report(d, "%s: stored with different types", what);
    differs = 1;
    goto done;
  }
  if (!same_shape) {
    char s1[160], s2[160];
    shape_text(s1, sizeof(s1), ra, da);
    shape_text(s2, sizeof(s2), rb, db);
    report(d, "%s: shape (%s) vs (%s)", what, s1, s2);
    differs = 1;
    goto done;
  }
  hssize_t np = H5Sget_simple_extent_npoints(sa);
  n = np > 0 ? (size_t)np : 0;
  d->values += (long)n;
  if (is_str && (H5Tis_variable_str(ta) > 0) != (H5Tis_variable_str(tb) > 0)) {
    report(d, "%s: stored as different kinds of string", what);
    differs = 1;
    goto done;
  }
  vstr = is_str && H5Tis_variable_str(ta) > 0;
  if (vstr) {
    /* Variable-length strings, read as C strings. */
    ma = H5Tcopy(H5T_C_S1);
    H5Tset_size(ma, H5T_VARIABLE);
    H5Tset_cset(ma, H5Tget_cset(ta));
    mb = H5Tcopy(ma);
  } else if (is_str) {
    ma = H5Tcopy(ta); /* fixed-size strings (sizes may differ): their text */
    mb = H5Tcopy(tb);
  } else if (ca == H5T_INTEGER || ca == H5T_FLOAT) {
    ma = H5Tget_native_type(ta, H5T_DIR_DEFAULT);
    mb = H5Tget_native_type(tb, H5T_DIR_DEFAULT);
  } else {
    ma = H5Tcopy(ta); /* anything else: the stored bytes */
    mb = H5Tcopy(tb);
  }
  if (n == 0)
    goto done;
  a = read_all(oa, is_attr, ma, n);
  b = read_all(ob, is_attr, mb, n);
  if (!a || !b) {
    fprintf(stderr, "ens diff: cannot read %s\n", what);
    d->bad_read = 1;
    goto done;
  }
  size_t sz = H5Tget_size(ma), szb = H5Tget_size(mb);
  int is_signed = ca == H5T_INTEGER && H5Tget_sign(ma) == H5T_SGN_2;
  long count = 0, nans = 0;
  double maxdiff = 0;
  size_t first = 0;
  for (size_t i = 0; i < n; i++) {
    int ne;
    if (vstr) {
      const char *x = ((char **)a)[i], *y = ((char **)b)[i];
      ne = strcmp(x ? x : "", y ? y : "") != 0;
    } else if (is_str) {
      const char *x = (char *)a + i * sz, *y = (char *)b + i * szb;
      size_t lx = strnlen(x, sz), ly = strnlen(y, szb);
      ne = lx != ly || memcmp(x, y, lx) != 0;
    } else {
      ne = memcmp((char *)a + i * sz, (char *)b + i * sz, sz) != 0;
    }
    if (!ne)
      continue;
    if (!count)
      first = i;
    count++;
    if (ca == H5T_FLOAT || ca == H5T_INTEGER) {
      double dd = fabs(as_double(a, i, ca, sz, is_signed) - as_double(b, i, ca, sz, is_signed));
      if (isnan(dd))
        nans++;
      else if (dd > maxdiff)
        maxdiff = dd;
    }
  }
  if (!count)
    goto done;
  differs = 1;
  if (n == 1 && is_str) {
    const char *x = vstr ? ((char **)a)[0] : a, *y = vstr ? ((char **)b)[0] : b;
    int lx = vstr ? (int)strlen(x ? x : "") : (int)strnlen(x, sz);
    int ly = vstr ? (int)strlen(y ? y : "") : (int)strnlen(y, szb);
    report(d, "%s: \"%.*s%s\" vs \"%.*s%s\"", what, lx > 60 ? 60 : lx, x ? x : "",
           lx > 60 ? "..." : "", ly > 60 ? 60 : ly, y ? y : "", ly > 60 ? "..." : "");
  } else if (n == 1 && (ca == H5T_FLOAT || ca == H5T_INTEGER)) {
    report(d, "%s: %.10g vs %.10g", what, as_double(a, 0, ca, sz, is_signed),
           as_double(b, 0, ca, sz, is_signed));
  } else if (ca == H5T_FLOAT || ca == H5T_INTEGER) {
    char nan_note[96] = "";
    if (nans)
      snprintf(nan_note, sizeof(nan_note), ", %ld with a NaN on one side or NaN bits that "
               "differ", nans);
    report(d, "%s: %ld of %zu values differ (largest difference %.3g%s; first at index %zu: "
              "%.10g vs %.10g)",
           what, count, n, maxdiff, nan_note, first, as_double(a, first, ca, sz, is_signed),
           as_double(b, first, ca, sz, is_signed));
  } else {
    report(d, "%s: %ld of %zu values differ (first at index %zu)", what, count, n, first);
  }
done:
  if (vstr && a)
    H5Dvlen_reclaim(ma, sa, H5P_DEFAULT, a);
  if (vstr && b)
    H5Dvlen_reclaim(mb, sb, H5P_DEFAULT, b);
  free(a);
  free(b);
  if (ma >= 0)
    H5Tclose(ma);
  if (mb >= 0)
    H5Tclose(mb);
  if (ta >= 0)
    H5Tclose(ta);
  if (tb >= 0)
    H5Tclose(tb);
  if (sa >= 0)
    H5Sclose(sa);
  if (sb >= 0)
    H5Sclose(sb);
  return differs;
}

/* ---- the configuration --------------------------------------------------- */

typedef struct cfg_note {
  diff_ctx *d;
  int notes;
} cfg_note;

static void config_key(void *ctx, const char *section, const char *key, const char *a,
                       const char *b) {
  cfg_note *c = ctx;
  if (!strcmp(section, "output")) {
    /* Where a run wrote its files does not change the result. */
    if (c->d->verbose || c->notes < 3)
      printf("note: configuration [output] %s = %s vs %s (exempt: it does not change the "
             "result)\n",
             key, a[0] ? a : "(empty)", b[0] ? b : "(empty)");
    c->notes++;
    return;
  }
  report(c->d, "configuration [%s] %s = %s vs %s", section, key, a[0] ? a : "(empty)",
         b[0] ? b : "(empty)");
}

/* The root attribute `config` of both files, key by key (when both load;
 * else as text). */
static void compare_config(diff_ctx *d) {
  char *ta = NULL, *tb = NULL;
  int ha = ens_h5_get_attr_str(d->fa, "/", "config", &ta) == 0;
  int hb = ens_h5_get_attr_str(d->fb, "/", "config", &tb) == 0;
  if (ha != hb) {
    report(d, "attribute / config: only in %s", ha ? d->pa : d->pb);
  } else if (ha) {
    ens_config a, b;
    char msg[512];
    d->attributes++;
    d->config_compared = 1;
    if (ens_config_load_text(&a, d->pa, ta, msg, sizeof(msg)) == 0 &&
        ens_config_load_text(&b, d->pb, tb, msg, sizeof(msg)) == 0) {
      cfg_note c = {d, 0};
      ens_config_diff(&a, &b, 0, config_key, &c);
    } else if (strcmp(ta, tb) != 0) {
      report(d, "attribute / config: the texts differ (and one does not load as an ens "
                "configuration: %s)", msg);
    }
  }
  free(ta);
  free(tb);
}

/* ---- objects ------------------------------------------------------------- */

static void compare_attributes(diff_ctx *d, const char *path) {
  names la = {0}, lb = {0};
  hid_t oa = H5Oopen(d->fa, path, H5P_DEFAULT), ob = H5Oopen(d->fb, path, H5P_DEFAULT);
  if (oa < 0 || ob < 0 || H5Aiterate2(oa, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_attr, &la) < 0 ||
      H5Aiterate2(ob, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_attr, &lb) < 0) {
    fprintf(stderr, "ens diff: cannot read the attributes of %s\n", path);
    d->bad_read = 1;
    goto done;
  }
  if (la.n)
    qsort(la.v, (size_t)la.n, sizeof(char *), cmp_str);
  if (lb.n)
    qsort(lb.v, (size_t)lb.n, sizeof(char *), cmp_str);
  int i = 0, k = 0;
  while (i < la.n || k < lb.n) {
    int c = i >= la.n ? 1 : k >= lb.n ? -1 : strcmp(la.v[i], lb.v[k]);
    const char *name = c <= 0 ? la.v[i] : lb.v[k];
    int root_config = !strcmp(path, "/") && !strcmp(name, "config");
    if (exempt_attribute(name) || root_config) {
      /* timing and placement; the configuration is compared key by key */
    } else if (c < 0) {
      report(d, "attribute %s %s: only in %s", path, name, d->pa);
    } else if (c > 0) {
      report(d, "attribute %s %s: only in %s", path, name, d->pb);
    } else {
      hid_t aa = H5Aopen(oa, name, H5P_DEFAULT), ab = H5Aopen(ob, name, H5P_DEFAULT);
      char what[2300];
      snprintf(what, sizeof(what), "attribute %s %s", path, name);
      if (aa < 0 || ab < 0) {
        fprintf(stderr, "ens diff: cannot open %s\n", what);
        d->bad_read = 1;
      } else {
        d->attributes++;
        compare_values(d, aa, ab, 1, what);
      }
      if (aa >= 0)
        H5Aclose(aa);
      if (ab >= 0)
        H5Aclose(ab);
    }
    if (c <= 0)
      i++;
    if (c >= 0)
      k++;
  }
done:
  if (oa >= 0)
    H5Oclose(oa);
  if (ob >= 0)
    H5Oclose(ob);
  names_free(&la);
  names_free(&lb);
}

static void compare_object(diff_ctx *d, const char *path) {
  const char *ka = kind_of(d->fa, path), *kb = kind_of(d->fb, path);
  if (strcmp(ka, kb) != 0) {
    report(d, "%s: a %s in %s, a %s in %s", path, ka, d->pa, kb, d->pb);
    return;
  }
  if (!strcmp(ka, "dataset")) {
    hid_t a = H5Dopen2(d->fa, path, H5P_DEFAULT), b = H5Dopen2(d->fb, path, H5P_DEFAULT);
    char what[2100];
    snprintf(what, sizeof(what), "dataset %s", path);
    if (a < 0 || b < 0) {
      fprintf(stderr, "ens diff: cannot open %s\n", what);
      d->bad_read = 1;
    } else {
      long before = d->ndiff;
      d->datasets++;
      compare_values(d, a, b, 0, what);
      if (d->verbose && d->ndiff == before)
        printf("same %s\n", what);
    }
    if (a >= 0)
      H5Dclose(a);
    if (b >= 0)
      H5Dclose(b);
  }
  compare_attributes(d, path);
}

/* Opens path as an HDF5 file; NULL message on success. */
static hid_t open_input(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "ens diff: %s: %s\n", path, strerror(errno));
    return -1;
  }
  hid_t f = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
  if (f < 0)
    fprintf(stderr, "ens diff: %s: not an HDF5 file\n", path);
  return f;
}

static void diff_usage(FILE *out) {
  fprintf(out,
          "usage: ens diff [--all] [-v] A.h5 B.h5\n"
          "  Compares two result files: every dataset bitwise (a NaN equals a NaN of the\n"
          "  same bits), every attribute by value, and the stored configurations key by\n"
          "  key. Exempt, because they describe timing and placement rather than the\n"
          "  result: the attributes train_seconds, ranks and peak_rss*, everything under\n"
          "  /ranks and /history (the run history), and the configuration's [output]\n"
          "  keys (reported as notes).\n"
          "  --all   report every difference (default: the first %d)\n"
          "  -v      also list every dataset found identical\n"
          "  Exit codes: 0 identical, 1 different, 2 an input cannot be read (or usage).\n",
          DIFF_SHOWN);
}

int ens_cli_diff(int argc, char **argv) {
  const char *files[2];
  int nf = 0, all = 0, verbose = 0;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      diff_usage(stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--all"))
      all = 1;
    else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose"))
      verbose = 1;
    else if (argv[i][0] == '-' && argv[i][1]) {
      static const char *const known[] = {"--all", "-v", "--verbose", "--help", NULL};
      ens_cli_unknown_option("diff", argv[i], known, NULL);
      return 2;
    } else if (nf < 2) {
      files[nf++] = argv[i];
    } else {
      fprintf(stderr, "ens diff: compares two files; got a third, '%s'\n", argv[i]);
      return 2;
    }
  }
  if (nf != 2) {
    fprintf(stderr, "ens diff: expected two result files: ens diff A.h5 B.h5 (see ens diff "
                    "--help)\n");
    return 2;
  }
  ens_h5_quiet();
  diff_ctx d = {.pa = files[0], .pb = files[1], .all = all, .verbose = verbose};
  d.fa = open_input(files[0]);
  d.fb = d.fa >= 0 ? open_input(files[1]) : -1;
  if (d.fa < 0 || d.fb < 0) {
    if (d.fa >= 0)
      H5Fclose(d.fa);
    return 2;
  }
  /* A result against a file that is not one (an input data file, say): one
   * sentence, not a list of every dataset only one of them has. */
  int ra = H5Aexists(d.fa, "members") > 0 && H5Aexists(d.fa, "config") > 0;
  int rb = H5Aexists(d.fb, "members") > 0 && H5Aexists(d.fb, "config") > 0;
  if (ra != rb) {
    fprintf(stderr,
            "ens diff: %s is not an ens result (no root attributes members and config), and %s "
            "is: ens diff compares two result files\n",
            ra ? files[1] : files[0], ra ? files[0] : files[1]);
    H5Fclose(d.fa);
    H5Fclose(d.fb);
    return 2;
  }
  names la = {0}, lb = {0};
  if (collect(d.fa, &la) || collect(d.fb, &lb)) {
    fprintf(stderr, "ens diff: cannot list the objects of %s or %s\n", files[0], files[1]);
    names_free(&la);
    names_free(&lb);
    H5Fclose(d.fa);
    H5Fclose(d.fb);
    return 2;
  }
  compare_config(&d);
  int i = 0, k = 0;
  while (i < la.n || k < lb.n) {
    int c = i >= la.n ? 1 : k >= lb.n ? -1 : strcmp(la.v[i], lb.v[k]);
    const char *path = c <= 0 ? la.v[i] : lb.v[k];
    if (exempt_object(path)) {
      /* per-rank records */
    } else if (c < 0) {
      report(&d, "%s %s: only in %s", kind_of(d.fa, path), path, d.pa);
    } else if (c > 0) {
      report(&d, "%s %s: only in %s", kind_of(d.fb, path), path, d.pb);
    } else {
      compare_object(&d, path);
    }
    if (c <= 0)
      i++;
    if (c >= 0)
      k++;
  }
  names_free(&la);
  names_free(&lb);
  H5Fclose(d.fa);
  H5Fclose(d.fb);
  if (d.ndiff > d.shown)
    printf("... and %ld more difference%s (--all lists them)\n", d.ndiff - d.shown,
           d.ndiff - d.shown == 1 ? "" : "s");
  char counts[256];
  snprintf(counts, sizeof(counts), "%ld dataset%s (%ld values) and %ld attribute%s compared%s",
           d.datasets, d.datasets == 1 ? "" : "s", d.values, d.attributes,
           d.attributes == 1 ? "" : "s",
           d.config_compared ? ", configurations key by key" : "");
  if (d.bad_read) {
    printf("%s and %s: could not compare everything (see above); %s\n", d.pa, d.pb, counts);
    return 2;
  }
  if (d.ndiff) {
    printf("%s and %s differ in %ld place%s; %s\n", d.pa, d.pb, d.ndiff,
           d.ndiff == 1 ? "" : "s", counts);
    return 1;
  }
  printf("%s and %s are identical: %s (exempt: train_seconds, ranks, peak_rss*, /ranks, "
         "/history, [output])\n",
         d.pa, d.pb, counts);
  return 0;
}
