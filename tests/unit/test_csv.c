/* Unit tests for the CSV importer (src/io/csv.c): the parser (quoting, line
 * ends, BOM, errors with line numbers), type inference and one-hot order,
 * missing values, targets and tasks, test tables, seeded splits, the HDF5
 * output and its atomicity. */
#include "cu_run.h"
#include "ens/data.h"
#include "ens/error.h"

#include <dirent.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];
static char g_err[2048];

/* Fails (and prints the message) unless `hay` contains `needle`. */
#define CU_ASSERT_HAS(hay, needle)                                                                 \
  do {                                                                                             \
    if (!strstr((hay), (needle)))                                                                  \
      fprintf(stderr, "\n  %s:%d: '%s' does not contain '%s'\n", __FILE__, __LINE__, (hay),        \
              (needle));                                                                           \
    CU_ASSERT_PTR_NOT_NULL(strstr((hay), (needle)));                                               \
  } while (0)

static const char *tpath(const char *name) {
  static char bufs[8][512];
  static int next;
  char *b = bufs[next++ % 8];
  snprintf(b, 512, "%s/%s", g_dir, name);
  return b;
}

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
      remove_tree(p);
    else
      remove(p);
  }
  closedir(d);
  rmdir(dir);
}

/* Entries of dir (non-recursive) whose name contains part. */
static int count_files(const char *dir, const char *part) {
  int n = 0;
  DIR *d = opendir(dir);
  if (!d)
    return -1;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strstr(e->d_name, part))
      n++;
  closedir(d);
  return n;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fwrite(text, 1, strlen(text), f);
  fclose(f);
}

static int parse(ens_csv *c, const char *text, char delim, int no_header) {
  ens_csv_opts o = {"t.csv", delim, no_header};
  return ens_csv_parse(c, text, strlen(text), &o, g_err, sizeof g_err);
}

/* Parses and encodes text with the given target and task; test rows by
 * fraction 0.25 with seed 1. */
static int encode(ens_csv_data *d, const char *text, const char *target, ens_csv_task task,
                  int drop) {
  ens_csv c;
  int rc = parse(&c, text, 0, 0);
  if (rc) {
    fprintf(stderr, "\n  parse: %s\n", g_err);
    memset(d, 0, sizeof *d);
    return rc;
  }
  ens_csv_encode_opts o = {target, task, drop, 0.25, 0, 1, 0, NULL, NULL, NULL};
  rc = ens_csv_encode(d, &c, NULL, &o, g_err, sizeof g_err);
  ens_csv_free(&c);
  return rc;
}

/* ---- parser ----------------------------------------------------------- */

static void test_quoting(void) {
  ens_csv c;
  const char *text = "a,\"b,c\",d\n"
                     "1,\"x,y\",\"say \"\"hi\"\"\"\n"
                     "  2 ,  \"two\nlines\"  ,\"\"\n"
                     "3,plain text , \"\"\"\"\n";
  int rc = parse(&c, text, 0, 0);
  if (rc)
    fprintf(stderr, "\n  %s\n", g_err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(c.cols, 3);
  CU_ASSERT_EQUAL(c.rows, 3);
  CU_ASSERT_STRING_EQUAL(c.names[1], "b,c");
  CU_ASSERT_STRING_EQUAL(c.fields[1], "x,y");
  CU_ASSERT_STRING_EQUAL(c.fields[2], "say \"hi\"");
  CU_ASSERT_STRING_EQUAL(c.fields[3], "2");
  CU_ASSERT_STRING_EQUAL(c.fields[4], "two\nlines");
  CU_ASSERT_STRING_EQUAL(c.fields[5], "");
  CU_ASSERT_STRING_EQUAL(c.fields[7], "plain text");
  CU_ASSERT_STRING_EQUAL(c.fields[8], "\"");
  /* Records start on lines 2, 3 and 5 (the quoted newline counts). */
  CU_ASSERT_EQUAL(c.lines[0], 2);
  CU_ASSERT_EQUAL(c.lines[1], 3);
  CU_ASSERT_EQUAL(c.lines[2], 5);
  ens_csv_free(&c);

  /* Errors: an unclosed quote, text after a closing quote, a NUL byte. */
  CU_ASSERT_EQUAL(parse(&c, "a,b\n1,\"open\n2,3\n", 0, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "t.csv: line 2, field 2: the quoted field opened here is never closed");
  CU_ASSERT_EQUAL(parse(&c, "a,b\n1,\"x\"y\n", 0, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "line 2, field 2: unexpected 'y' after the closing quote");
  ens_csv_opts o = {"t.csv", 0, 0};
  CU_ASSERT_EQUAL(ens_csv_parse(&c, "a,b\n1,\0\n", 8, &o, g_err, sizeof g_err), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "line 2: NUL byte");
  /* A failed parse leaves the table zeroed. */
  CU_ASSERT_PTR_NULL(c.fields);
  CU_ASSERT_EQUAL(c.rows, 0);
}

static void test_line_ends_bom(void) {
  ens_csv c;
  /* BOM, CRLF, a blank line, no final newline, another delimiter. */
  const char *text = "\xEF\xBB\xBFx;y\r\n1;\"a\r\nb\"\r\n\r\n   \r\n2;c";
  int rc = parse(&c, text, ';', 0);
  if (rc)
    fprintf(stderr, "\n  %s\n", g_err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_STRING_EQUAL(c.names[0], "x");
  CU_ASSERT_EQUAL(c.rows, 2);
  CU_ASSERT_STRING_EQUAL(c.fields[1], "a\r\nb");
  CU_ASSERT_STRING_EQUAL(c.fields[2], "2");
  CU_ASSERT_STRING_EQUAL(c.fields[3], "c");
  CU_ASSERT_EQUAL(c.lines[1], 6);
  ens_csv_free(&c);

  /* Tab-separated, no header: names are the indexes; empty last field. */
  rc = parse(&c, "1\t2\t\n3\t4\t5\n", '\t', 1);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(c.cols, 3);
  CU_ASSERT_EQUAL(c.rows, 2);
  CU_ASSERT_STRING_EQUAL(c.names[2], "2");
  CU_ASSERT_STRING_EQUAL(c.fields[2], "");
  CU_ASSERT_EQUAL(c.lines[0], 1);
  ens_csv_free(&c);

  /* A delimiter that gives one column is fine for the parser. */
  rc = parse(&c, "a;b\n1;2\n", 0, 0);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(c.cols, 1);
  CU_ASSERT_STRING_EQUAL(c.names[0], "a;b");
  ens_csv_free(&c);
}

static void test_parse_errors(void) {
  ens_csv c;
  CU_ASSERT_EQUAL(parse(&c, "a,b,c\n1,2,3\n4,5\n", 0, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "t.csv: line 3: expected 3 fields (as in the header on line 1), got 2");
  CU_ASSERT_EQUAL(parse(&c, "a,b\n1,2,3\n", 0, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "line 2: expected 2 fields");
  CU_ASSERT_EQUAL(parse(&c, "", 0, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "empty file");
  CU_ASSERT_EQUAL(parse(&c, "\xEF\xBB\xBF\n\n", 0, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "empty file");
  CU_ASSERT_EQUAL(parse(&c, "a,b\n", 0, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "no data rows after the header");
  CU_ASSERT_EQUAL(parse(&c, "a,b,a\n1,2,3\n", 0, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "line 1, column 2: duplicated column name 'a' (also column 0)");
  /* Blank lines before the header: messages name the header's real line. */
  CU_ASSERT_EQUAL(parse(&c, "\n\na,b,a\n1,2,3\n", 0, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "line 3, column 2: duplicated column name");
  CU_ASSERT_EQUAL(parse(&c, "1,2\n3\n", 0, 1), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "line 2: expected 2 fields (as in the first record on line 1), got 1");
  CU_ASSERT_EQUAL(parse(&c, "a,,b\n1,2,3\n", 0, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "line 1, column 1: empty column name");
  CU_ASSERT_EQUAL(parse(&c, "a\n1\n", '"', 0), ENS_EINVAL);
  /* Values in messages stay on one line. */
  CU_ASSERT_EQUAL(parse(&c, "\"a\nb\",\"a\nb\"\n1,2\n", 0, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "'a\\nb'");
  CU_ASSERT_PTR_NULL(strchr(g_err, '\n'));
}

/* ---- encoding ----------------------------------------------------------- */

static void test_types_onehot(void) {
  ens_csv_data d;
  /* num: numbers with blanks and exponents; cat: byte order B < a < b < ä;
   * half: exactly half numbers -> categorical. */
  const char *text = "num,cat,half,y\n"
                     " 1.5 ,b,1,0.5\n"
                     "-2e1,B,x,1.5\n"
                     "\"3\",\xC3\xA4,2,2.5\n"
                     "4,a,y,3.5\n";
  int rc = encode(&d, text, "y", ENS_CSV_AUTO, 0);
  if (rc)
    fprintf(stderr, "\n  %s\n", g_err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d.info.task, ENS_CSV_REGRESS);
  CU_ASSERT(d.info.task_auto);
  CU_ASSERT_EQUAL(d.info.numeric_cols, 1);
  CU_ASSERT_EQUAL(d.info.categorical_cols, 2);
  CU_ASSERT_EQUAL_FATAL(d.d, 1 + 4 + 4);
  const char *names[9] = {"num",    "cat=B",  "cat=a",  "cat=b", "cat=\xC3\xA4",
                          "half=1", "half=2", "half=x", "half=y"};
  for (int i = 0; i < 9; i++)
    CU_ASSERT_STRING_EQUAL(d.feature_names[i], names[i]);
  CU_ASSERT_EQUAL_FATAL(d.ncat, 2);
  CU_ASSERT_STRING_EQUAL(d.cat_columns[0], "cat");
  CU_ASSERT_EQUAL(d.cat_counts[0], 4);
  CU_ASSERT_STRING_EQUAL(d.cat_values[0][3], "\xC3\xA4");
  CU_ASSERT_EQUAL(d.targets, 1);
  CU_ASSERT_STRING_EQUAL(d.target_names[0], "y");
  CU_ASSERT_EQUAL(d.train.n + d.test.n, 4);
  CU_ASSERT_EQUAL(d.test.n, 1);
  /* Each row: one-hot blocks hold exactly one 1, and x matches y. */
  ens_csv_part *parts[2] = {&d.train, &d.test};
  const float want_num[4] = {1.5f, -20.0f, 3.0f, 4.0f};
  const int want_cat[4] = {3, 1, 4, 2}, want_half[4] = {5, 7, 6, 8};
  for (int p = 0; p < 2; p++)
    for (int i = 0; i < parts[p]->n; i++) {
      const float *x = parts[p]->x + i * d.d;
      int r = (int)parts[p]->line[i] - 2;
      CU_ASSERT_EQUAL(x[0], want_num[r]);
      CU_ASSERT_EQUAL(parts[p]->y[i], 0.5f + (float)r);
      float s1 = 0, s2 = 0;
      for (int j = 1; j < 5; j++)
        s1 += x[j];
      for (int j = 5; j < 9; j++)
        s2 += x[j];
      CU_ASSERT_EQUAL(s1, 1.0f);
      CU_ASSERT_EQUAL(s2, 1.0f);
      CU_ASSERT_EQUAL(x[want_cat[r]], 1.0f);
      CU_ASSERT_EQUAL(x[want_half[r]], 1.0f);
    }
  ens_csv_data_free(&d);

  /* More than half numbers: an error naming line, column and value. */
  const char *mixed = "id,age,y\n1,30,a\n2,41,b\n3,abc,a\n4,22,b\n";
  CU_ASSERT_EQUAL(encode(&d, mixed, "y", ENS_CSV_AUTO, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "t.csv: line 4, column 'age': 'abc' is not a number (the column is numeric");
  /* Out of float32 range counts as not a number. */
  const char *huge = "a,y\n1,0\n1e39,1\n2,0\n3,1\n";
  CU_ASSERT_EQUAL(encode(&d, huge, "y", ENS_CSV_AUTO, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "line 3, column 'a': '1e39' is out of range for float32");
  /* Only a target column: no features (e.g. a wrong delimiter). */
  CU_ASSERT_EQUAL(encode(&d, "a;b\n1;2\n3;4\n", "0", ENS_CSV_AUTO, 0), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "no feature columns");
  CU_ASSERT_HAS(g_err, "--delimiter");
}

static void test_missing(void) {
  ens_csv_data d;
  const char *text = "a,b,y\n"
                     "1,u,0\n"
                     "2, NA ,1\n"
                     "3,v,\n"
                     "?,u,1\n"
                     "5,\"nan\",0\n"
                     "6,NaN,1\n"
                     "7,w,0\n"
                     "8,v,1\n"
                     "9,u,0\n";
  CU_ASSERT_EQUAL(encode(&d, text, "y", ENS_CSV_AUTO, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "t.csv: line 3, column 'b': missing value 'NA'");
  CU_ASSERT_HAS(g_err, "--drop-missing");
  int rc = encode(&d, text, "y", ENS_CSV_AUTO, 1);
  if (rc)
    fprintf(stderr, "\n  %s\n", g_err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d.info.rows, 9);
  CU_ASSERT_EQUAL(d.info.dropped, 5);
  CU_ASSERT_EQUAL(d.train.n + d.test.n, 4);
  /* "NA" and "nan" never become categories. */
  CU_ASSERT_EQUAL(d.cat_counts[0], 3);
  for (int i = 0; i < d.d; i++)
    CU_ASSERT_PTR_NULL(strstr(d.feature_names[i], "NA"));
  ens_csv_data_free(&d);
  /* Every row missing something. */
  CU_ASSERT_EQUAL(encode(&d, "a,y\n1,\n,2\n", "y", ENS_CSV_AUTO, 1), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "no rows left");
}

static void test_targets(void) {
  ens_csv_data d;
  const char *text = "x,z,t1,t2,s\n1,2,0.5,10,p\n2,3,1.5,20,q\n3,4,2.5,30,p\n4,5,3.5,40,q\n";
  /* Unknown names, indexes out of range, duplicates. */
  CU_ASSERT_EQUAL(encode(&d, text, "nope", ENS_CSV_AUTO, 0), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "t.csv: line 1: no target column named 'nope' (columns: x, z, t1, t2, s)");
  CU_ASSERT_EQUAL(encode(&d, text, "7", ENS_CSV_AUTO, 0), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "target index 7 is out of range (the file has 5 columns: 0..4)");
  CU_ASSERT_EQUAL(encode(&d, text, "t1,2", ENS_CSV_AUTO, 0), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "column 't1' is named twice");
  CU_ASSERT_EQUAL(encode(&d, text, "t1,", ENS_CSV_AUTO, 0), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "empty column name");

  /* Two numeric targets, by name and index: regression, y (n, 2). */
  int rc = encode(&d, text, "t1, 3", ENS_CSV_AUTO, 0);
  if (rc)
    fprintf(stderr, "\n  %s\n", g_err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d.info.task, ENS_CSV_REGRESS);
  CU_ASSERT_EQUAL(d.targets, 2);
  CU_ASSERT_STRING_EQUAL(d.target_names[0], "t1");
  CU_ASSERT_STRING_EQUAL(d.target_names[1], "t2");
  CU_ASSERT_EQUAL(d.d, 4);
  CU_ASSERT_PTR_NULL(d.train.label);
  for (int i = 0; i < d.train.n; i++) {
    int r = (int)d.train.line[i] - 2;
    CU_ASSERT_EQUAL(d.train.y[2 * i], 0.5f + (float)r);
    CU_ASSERT_EQUAL(d.train.y[2 * i + 1], 10.0f * (float)(r + 1));
    CU_ASSERT_EQUAL(d.train.x[i * d.d], (float)(r + 1));
  }
  ens_csv_data_free(&d);

  /* Several targets with a string one; classify with two; regress on a string. */
  CU_ASSERT_EQUAL(encode(&d, text, "t1,s", ENS_CSV_AUTO, 0), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "target column 's' is not numeric");
  CU_ASSERT_EQUAL(encode(&d, text, "t1,t2", ENS_CSV_CLASSIFY, 0), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "--task classify takes one target column, got 2");
  CU_ASSERT_EQUAL(encode(&d, text, "s", ENS_CSV_REGRESS, 0), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "line 2, column 's': 'p' is not a number (--task regress");
  /* Classify on a non-integer numeric target. */
  CU_ASSERT_EQUAL(encode(&d, text, "t1", ENS_CSV_CLASSIFY, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "line 2, column 't1': '0.5' is not an integer class code");
  /* A single class. */
  CU_ASSERT_EQUAL(encode(&d, "a,y\n1,k\n2,k\n", "y", ENS_CSV_AUTO, 0), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "single value ('k')");
}

static void test_classify(void) {
  ens_csv_data d;
  /* String target: classes in byte order; the target is not a feature. */
  const char *text = "f,species\n1,versicolor\n2,setosa\n3,virginica\n4,setosa\n"
                     "5,virginica\n6,versicolor\n7,setosa\n8,setosa\n";
  int rc = encode(&d, text, "species", ENS_CSV_AUTO, 0);
  if (rc)
    fprintf(stderr, "\n  %s\n", g_err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d.info.task, ENS_CSV_CLASSIFY);
  CU_ASSERT(d.info.task_auto);
  CU_ASSERT_FALSE(d.info.integer_codes);
  CU_ASSERT_EQUAL_FATAL(d.classes, 3);
  CU_ASSERT_STRING_EQUAL(d.class_names[0], "setosa");
  CU_ASSERT_STRING_EQUAL(d.class_names[1], "versicolor");
  CU_ASSERT_STRING_EQUAL(d.class_names[2], "virginica");
  CU_ASSERT_EQUAL(d.d, 1);
  CU_ASSERT_PTR_NULL(d.train.y);
  const int want[8] = {1, 0, 2, 0, 2, 1, 0, 0};
  for (int i = 0; i < d.train.n; i++)
    CU_ASSERT_EQUAL(d.train.label[i], want[(int)d.train.x[i] - 1]);
  for (int i = 0; i < d.test.n; i++)
    CU_ASSERT_EQUAL(d.test.label[i], want[(int)d.test.x[i] - 1]);
  /* The string target's categories are listed too. */
  CU_ASSERT_EQUAL(d.ncat, 1);
  CU_ASSERT_STRING_EQUAL(d.cat_columns[0], "species");
  ens_csv_data_free(&d);

  /* Integer codes: classes in numeric order, named by their decimal text. */
  const char *codes = "f,k\n1,10\n2,-1\n3,2\n4,10.0\n5,-1\n6,2\n7,-0\n8,0\n";
  rc = encode(&d, codes, "k", ENS_CSV_CLASSIFY, 0);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT(d.info.integer_codes);
  CU_ASSERT_EQUAL_FATAL(d.classes, 4);
  const char *cn[4] = {"-1", "0", "2", "10"};
  for (int i = 0; i < 4; i++)
    CU_ASSERT_STRING_EQUAL(d.class_names[i], cn[i]);
  const int wk[8] = {3, 0, 2, 3, 0, 2, 1, 1};
  for (int i = 0; i < d.train.n; i++)
    CU_ASSERT_EQUAL(d.train.label[i], wk[(int)d.train.x[i] - 1]);
  ens_csv_data_free(&d);
  /* Auto on the same numeric target regresses. */
  rc = encode(&d, codes, "k", ENS_CSV_AUTO, 0);
  CU_ASSERT_EQUAL(rc, 0);
  CU_ASSERT_EQUAL(d.info.task, ENS_CSV_REGRESS);
  ens_csv_data_free(&d);
}

/* A table of n rows: x = row index, a category, label = row % 3. */
static char *make_rows(int n) {
  char *t = malloc((size_t)n * 32 + 32);
  size_t w = (size_t)sprintf(t, "x,c,y\n");
  for (int i = 0; i < n; i++)
    w += (size_t)sprintf(t + w, "%d,c%d,k%d\n", i, i % 4, i % 3);
  return t;
}

static int split(ens_csv_data *d, const char *text, double test, double val, uint64_t seed) {
  ens_csv c;
  int rc = parse(&c, text, 0, 0);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  ens_csv_encode_opts o = {"y", ENS_CSV_AUTO, 0, test, val, seed, 0, NULL, NULL, NULL};
  rc = ens_csv_encode(d, &c, NULL, &o, g_err, sizeof g_err);
  ens_csv_free(&c);
  return rc;
}

static int same_part(const ens_csv_part *a, const ens_csv_part *b, int dim) {
  return a->n == b->n && memcmp(a->x, b->x, (size_t)a->n * dim * sizeof(float)) == 0 &&
         memcmp(a->label, b->label, (size_t)a->n * sizeof(int32_t)) == 0;
}

static void test_split(void) {
  char *text = make_rows(100);
  ens_csv_data a, b, c;
  CU_ASSERT_EQUAL_FATAL(split(&a, text, 0.2, 0.25, 7), 0);
  CU_ASSERT_EQUAL_FATAL(split(&b, text, 0.2, 0.25, 7), 0);
  CU_ASSERT_EQUAL_FATAL(split(&c, text, 0.2, 0.25, 8), 0);
  CU_ASSERT_EQUAL(a.test.n, 20);
  CU_ASSERT_EQUAL(a.val.n, 20);
  CU_ASSERT_EQUAL(a.train.n, 60);
  /* Same seed, same split; another seed, another split. */
  CU_ASSERT(same_part(&a.train, &b.train, a.d));
  CU_ASSERT(same_part(&a.test, &b.test, a.d));
  CU_ASSERT(same_part(&a.val, &b.val, a.d));
  CU_ASSERT(!same_part(&a.test, &c.test, a.d));
  CU_ASSERT(!same_part(&a.val, &c.val, a.d));
  /* Every row lands once, intact, in file order within its split; the
   * categories (and so d) come from all rows. */
  int seen[100] = {0};
  ens_csv_part *parts[3] = {&a.train, &a.test, &a.val};
  for (int p = 0; p < 3; p++) {
    CU_ASSERT_EQUAL(parts[p]->x == NULL, 0);
    for (int i = 0; i < parts[p]->n; i++) {
      const float *x = parts[p]->x + i * a.d;
      int r = (int)x[0];
      CU_ASSERT_EQUAL(parts[p]->line[i], r + 2);
      CU_ASSERT_EQUAL(x[1 + r % 4], 1.0f);
      CU_ASSERT_EQUAL(parts[p]->label[i], r % 3);
      if (i > 0)
        CU_ASSERT(x[0] > x[-a.d]);
      seen[r]++;
    }
  }
  int once = 0;
  for (int i = 0; i < 100; i++)
    once += seen[i] == 1;
  CU_ASSERT_EQUAL(once, 100);
  CU_ASSERT_EQUAL(a.d, 5);
  ens_csv_data_free(&a);
  ens_csv_data_free(&b);
  ens_csv_data_free(&c);

  /* The test split does not depend on val_fraction (its own substream). */
  CU_ASSERT_EQUAL_FATAL(split(&a, text, 0.2, 0, 7), 0);
  CU_ASSERT_EQUAL_FATAL(split(&b, text, 0.2, 0.5, 7), 0);
  CU_ASSERT(same_part(&a.test, &b.test, a.d));
  CU_ASSERT_EQUAL(a.val.n, 0);
  ens_csv_data_free(&a);
  ens_csv_data_free(&b);
  free(text);

  /* Too few rows for the fractions. */
  text = make_rows(2);
  CU_ASSERT_EQUAL(split(&a, text, 0.1, 0, 1), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "leaves no test rows");
  CU_ASSERT_EQUAL(split(&a, text, 0.5, 0.6, 1), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "leaves no training rows");
  CU_ASSERT_EQUAL(split(&a, text, 1.5, 0, 1), ENS_EINVAL);
  free(text);
}

static void test_test_table(void) {
  ens_csv m, t;
  ens_csv_data d;
  ens_csv_encode_opts o = {"y", ENS_CSV_AUTO, 1, 0, 0, 0, 0, NULL, NULL, NULL};
  CU_ASSERT_EQUAL_FATAL(parse(&m, "n,c,y\n1,a,p\n2,b,q\n3,a,p\n", 0, 0), 0);
  /* Columns in another order, an unseen category, a dropped row. */
  CU_ASSERT_EQUAL_FATAL(parse(&t, "y,n,c\nq,5,b\np,6,zz\nq,NA,a\np,7,a\n", 0, 0), 0);
  int rc = ens_csv_encode(&d, &m, &t, &o, g_err, sizeof g_err);
  if (rc)
    fprintf(stderr, "\n  %s\n", g_err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d.train.n, 3);
  CU_ASSERT_EQUAL_FATAL(d.test.n, 3);
  CU_ASSERT_EQUAL(d.info.test_dropped, 1);
  CU_ASSERT_EQUAL(d.info.unseen, 1);
  const float want[9] = {5, 0, 1, 6, 0, 0, 7, 1, 0};
  for (int i = 0; i < 9; i++)
    CU_ASSERT_EQUAL(d.test.x[i], want[i]);
  CU_ASSERT_EQUAL(d.test.label[0], 1);
  CU_ASSERT_EQUAL(d.test.label[1], 0);
  CU_ASSERT_EQUAL(d.test.line[2], 5);
  ens_csv_data_free(&d);
  ens_csv_free(&t);

  /* An unseen class, a non-number in a numeric column, a missing column. */
  CU_ASSERT_EQUAL_FATAL(parse(&t, "y,n,c\nr,5,b\n", 0, 0), 0);
  CU_ASSERT_EQUAL(ens_csv_encode(&d, &m, &t, &o, g_err, sizeof g_err), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "t.csv: line 2, column 'y': class 'r' does not occur in t.csv");
  ens_csv_free(&t);
  CU_ASSERT_EQUAL_FATAL(parse(&t, "y,n,c\np,five,b\n", 0, 0), 0);
  CU_ASSERT_EQUAL(ens_csv_encode(&d, &m, &t, &o, g_err, sizeof g_err), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "line 2, column 'n': 'five' is not a number (the column is numeric");
  ens_csv_free(&t);
  CU_ASSERT_EQUAL_FATAL(parse(&t, "y,n,d\np,5,b\n", 0, 0), 0);
  CU_ASSERT_EQUAL(ens_csv_encode(&d, &m, &t, &o, g_err, sizeof g_err), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "no column 'c'");
  ens_csv_free(&t);
  CU_ASSERT_EQUAL_FATAL(parse(&t, "y,n\np,5\n", 0, 0), 0);
  CU_ASSERT_EQUAL(ens_csv_encode(&d, &m, &t, &o, g_err, sizeof g_err), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "no column 'c'");
  ens_csv_free(&t);
  ens_csv_free(&m);
}

/* ---- files -------------------------------------------------------------- */

/* Reads string dataset `path` of f; returns its length, strings in s. */
static int read_strings(hid_t f, const char *path, char **s, int max) {
  hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
  if (ds < 0)
    return -1;
  hid_t sp = H5Dget_space(ds), t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  int n = (int)H5Sget_simple_extent_npoints(sp);
  if (n <= max && H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) < 0)
    n = -1;
  H5Tclose(t);
  H5Sclose(sp);
  H5Dclose(ds);
  return n;
}

static void free_strings(char **s, int n) {
  for (int i = 0; i < n; i++) {
    H5free_memory(s[i]);
    s[i] = NULL;
  }
}

static void test_import_file(void) {
  const char *csv = tpath("in.csv"), *out = tpath("sub/dir/out.h5");
  write_text(csv, "w,kind/of,label\n1,a,yes\n2,b,no\n3,a,yes\n4,b,no\n5,a,yes\n");
  ens_csv_import_opts o;
  memset(&o, 0, sizeof o);
  o.path = csv;
  o.out_path = out;
  o.enc.target = "label";
  o.enc.test_fraction = 0.4;
  ens_csv_summary s;
  int rc = ens_csv_import(&s, &o, g_err, sizeof g_err);
  if (rc)
    fprintf(stderr, "\n  %s\n", g_err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(s.train_rows, 3);
  CU_ASSERT_EQUAL(s.test_rows, 2);
  CU_ASSERT_EQUAL(count_files(tpath("sub/dir"), ".tmp."), 0);

  /* The trainer's loader accepts it. */
  ens_data d;
  rc = ens_data_load(&d, out, g_err, sizeof g_err);
  if (rc)
    fprintf(stderr, "\n  %s\n", g_err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d.classes, 2);
  CU_ASSERT_EQUAL(d.train.d, 3);
  CU_ASSERT_EQUAL(d.train.n, 3);
  CU_ASSERT_EQUAL(d.test.n, 2);
  ens_data_free(&d);

  hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
  CU_ASSERT_FATAL(f >= 0);
  char *s8[8] = {0};
  CU_ASSERT_EQUAL(read_strings(f, "/feature_names", s8, 8), 3);
  CU_ASSERT_STRING_EQUAL(s8[1], "kind/of=a");
  free_strings(s8, 3);
  CU_ASSERT_EQUAL(read_strings(f, "/class_names", s8, 8), 2);
  CU_ASSERT_STRING_EQUAL(s8[0], "no");
  CU_ASSERT_STRING_EQUAL(s8[1], "yes");
  free_strings(s8, 2);
  CU_ASSERT_EQUAL(read_strings(f, "/categories/kind_of", s8, 8), 2);
  free_strings(s8, 2);
  CU_ASSERT_EQUAL(read_strings(f, "/target_names", s8, 8), 1);
  CU_ASSERT_STRING_EQUAL(s8[0], "label");
  free_strings(s8, 1);
  CU_ASSERT(H5Aexists(f, "source") > 0);
  CU_ASSERT(H5Aexists(f, "task") > 0);
  H5Fclose(f);

  /* Regression with two targets: float32 y of shape (n, 2). */
  o.enc.target = "w,1";
  o.enc.task = ENS_CSV_REGRESS;
  CU_ASSERT_EQUAL(ens_csv_import(&s, &o, g_err, sizeof g_err), ENS_EINVAL);
  write_text(csv, "a,b,c\n1,2,3\n4,5,6\n7,8,9\n");
  o.enc.target = "a,c";
  rc = ens_csv_import(&s, &o, g_err, sizeof g_err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t ds = H5Dopen2(f, "/train/y", H5P_DEFAULT), sp = H5Dget_space(ds), t = H5Dget_type(ds);
  hsize_t dims[2] = {0, 0};
  CU_ASSERT_EQUAL(H5Sget_simple_extent_dims(sp, dims, NULL), 2);
  CU_ASSERT_EQUAL(dims[1], 2);
  CU_ASSERT(H5Tequal(t, H5T_NATIVE_FLOAT) > 0);
  H5Tclose(t);
  H5Sclose(sp);
  H5Dclose(ds);
  CU_ASSERT(H5Aexists(f, "classes") == 0);
  H5Fclose(f);

  /* Errors leave neither the output nor a temporary file. */
  remove(out);
  write_text(csv, "a,b\n1,2\n3\n");
  rc = ens_csv_import(&s, &o, g_err, sizeof g_err);
  CU_ASSERT_EQUAL(rc, ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, csv);
  CU_ASSERT_HAS(g_err, "line 3: expected 2 fields");
  CU_ASSERT(access(out, F_OK) != 0);
  CU_ASSERT_EQUAL(count_files(tpath("sub/dir"), ".tmp."), 0);
  o.path = tpath("missing.csv");
  CU_ASSERT_EQUAL(ens_csv_import(&s, &o, g_err, sizeof g_err), ENS_EIO);
  CU_ASSERT_HAS(g_err, "missing.csv: cannot open");
  CU_ASSERT(access(out, F_OK) != 0);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/ens_test_csv.XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 2;
  }
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  static const cu_case cases[] = {
      {"quoting", test_quoting},
      {"line_ends_bom", test_line_ends_bom},
      {"parse_errors", test_parse_errors},
      {"types_onehot", test_types_onehot},
      {"missing", test_missing},
      {"targets", test_targets},
      {"classify", test_classify},
      {"split", test_split},
      {"test_table", test_test_table},
      {"import_file", test_import_file},
      {NULL, NULL},
  };
  int rc = cu_run_suite("csv", cases);
  remove_tree(g_dir);
  return rc;
}
