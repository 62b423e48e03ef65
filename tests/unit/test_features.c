/* Unit tests for tabular columns (src/io/features.c, src/io/outcheck.c and the
 * --drop/--id/--keep/--decimal parts of src/io/csv.c): CSV rows matched to a
 * model's features by name, unseen categories, targets, ids and lines; the
 * CSV form of a prediction; date, identifier and decimal-comma refusals;
 * and the -o rule (an input is never an output; a foreign file needs
 * --force). */
#include "cu_run.h"
#include "ens/data.h"
#include "ens/error.h"
#include "io/features.h"
#include "io/h5util.h"
#include "io/outcheck.h"
#include "io/storage.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];
static char g_err[4096];

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

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fwrite(text, 1, strlen(text), f);
  fclose(f);
}

/* Encodes text (delimiter delim) with target y and the given options. */
static int encode(ens_csv_data *d, const char *text, char delim, char decimal, const char *drop,
                  const char *id, const char *keep) {
  ens_csv c;
  ens_csv_opts po = {"t.csv", delim, 0};
  int rc = ens_csv_parse(&c, text, strlen(text), &po, g_err, sizeof g_err);
  if (rc) {
    memset(d, 0, sizeof *d);
    return rc;
  }
  ens_csv_encode_opts o = {"y", ENS_CSV_AUTO, 0, 0.25, 0, 1, decimal, drop, id, keep};
  rc = ens_csv_encode(d, &c, NULL, &o, g_err, sizeof g_err);
  ens_csv_free(&c);
  return rc;
}

/* n rows "name<i>,<i>,<date>,<i%2 ? a : b>,<class>". */
static char *table(int n) {
  char *t = malloc((size_t)n * 80 + 64);
  int w = sprintf(t, "name,x,day,kind,y\n");
  for (int i = 0; i < n; i++)
    w += sprintf(t + w, "n%d,%d,2020-01-%02d,%s,%s\n", i, i, 1 + i % 28, i % 2 ? "a" : "b",
                 i % 3 ? "p" : "q");
  return t;
}

static void test_import_columns(void) {
  ens_csv_data d;
  char *t = table(40);
  /* The name column is an identifier, the day column dates. */
  CU_ASSERT_EQUAL(encode(&d, t, 0, 0, NULL, NULL, NULL), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "feature column 'name' looks like an identifier (e.g. 'n0'; 40 distinct");
  CU_ASSERT_HAS(g_err, "--id name");
  CU_ASSERT_EQUAL(encode(&d, t, 0, 0, NULL, "name", NULL), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "feature column 'day' holds dates (e.g. '2020-01-01'");
  CU_ASSERT_HAS(g_err, "--drop day");
  /* --drop, --id: 2 features left (x, kind=a, kind=b), ids follow the split. */
  CU_ASSERT_EQUAL_FATAL(encode(&d, t, 0, 0, "day", "name", NULL), 0);
  CU_ASSERT_EQUAL(d.d, 3);
  CU_ASSERT_STRING_EQUAL(d.feature_names[0], "x");
  CU_ASSERT_STRING_EQUAL(d.id_column, "name");
  CU_ASSERT_EQUAL(d.ndropped, 1);
  CU_ASSERT_STRING_EQUAL(d.dropped[0], "day");
  CU_ASSERT_EQUAL(d.train.n + d.test.n, 40);
  for (int s = 0; s < 2; s++) {
    const ens_csv_part *p = s ? &d.test : &d.train;
    CU_ASSERT_PTR_NOT_NULL_FATAL(p->id);
    for (int i = 0; i < p->n; i++) {
      char want[16];
      int row = (int)p->x[(size_t)i * d.d]; /* x = the row index */
      snprintf(want, sizeof want, "n%d", row);
      CU_ASSERT_STRING_EQUAL(p->id[i], want);
      CU_ASSERT_EQUAL(p->line[i], row + 2);
    }
  }
  ens_csv_data_free(&d);
  /* --keep: the dates as categories after all. */
  CU_ASSERT_EQUAL_FATAL(encode(&d, t, 0, 0, NULL, "name", "day"), 0);
  CU_ASSERT_EQUAL(d.d, 1 + 28 + 2);
  ens_csv_data_free(&d);
  /* Errors of the lists. */
  CU_ASSERT_EQUAL(encode(&d, t, 0, 0, "nope", NULL, NULL), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "--drop 'nope': no such column");
  CU_ASSERT_EQUAL(encode(&d, t, 0, 0, "y", NULL, NULL), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "--drop 'y': the column is a target");
  CU_ASSERT_EQUAL(encode(&d, t, 0, 0, NULL, "name,x", NULL), ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "give one column");
  free(t);
  /* Small tables: a distinct value on every row of 5 is an identifier, of 4 not. */
  CU_ASSERT_EQUAL(encode(&d, "c,y\na,p\nb,q\nc,p\nd,q\ne,p\n", 0, 0, NULL, NULL, NULL),
                  ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "column 'c' looks like an identifier");
  CU_ASSERT_EQUAL(encode(&d, "c,y\na,p\nb,q\nc,p\nd,q\n", 0, 0, NULL, NULL, NULL), 0);
  ens_csv_data_free(&d);
}

static void test_decimal(void) {
  double v = 0;
  CU_ASSERT_EQUAL(ens_csv_number("3,25", ',', &v), 0);
  CU_CHECK_CLOSE(v, 3.25, 1e-12);
  CU_ASSERT_EQUAL(ens_csv_number(" -1,5e2 ", ',', &v), 0);
  CU_CHECK_CLOSE(v, -150, 1e-9);
  CU_ASSERT_NOT_EQUAL(ens_csv_number("3.25", ',', &v), 0); /* '.' is not a number then */
  CU_ASSERT_NOT_EQUAL(ens_csv_number("3,25", '.', &v), 0);
  CU_ASSERT_EQUAL(ens_csv_number("3.25", 0, &v), 0);
  const char *text = "a;b;y\n1,5;x;2,5\n2,5;z;3,5\n3,5;x;1,25\n4,5;z;0,5\n";
  ens_csv_data d;
  CU_ASSERT_EQUAL(encode(&d, text, ';', 0, NULL, NULL, NULL), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "column 'a': its values are numbers with a decimal comma (e.g. '1,5')");
  CU_ASSERT_HAS(g_err, "--decimal ','");
  CU_ASSERT_EQUAL_FATAL(encode(&d, text, ';', ',', NULL, NULL, NULL), 0);
  CU_ASSERT_EQUAL(d.info.task, ENS_CSV_REGRESS);
  CU_ASSERT_EQUAL(d.d, 3);
  ens_csv_data_free(&d);
  /* A ';' file read with ',': the header hint. */
  ens_csv c;
  ens_csv_opts po = {"t.csv", 0, 0};
  CU_ASSERT_EQUAL(ens_csv_parse(&c, text, strlen(text), &po, g_err, sizeof g_err), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "use --delimiter ';'");
}

/* A schema by hand: features x, w, color=blue, color=red; target y (classes
 * no, yes); id column key; dropped column note. */
static char *S(const char *s) { return strdup(s); }
static void schema(ens_schema *s) {
  memset(s, 0, sizeof *s);
  s->d = 4;
  s->feature_names = calloc(4, sizeof(char *));
  s->feature_names[0] = S("x");
  s->feature_names[1] = S("w");
  s->feature_names[2] = S("color=blue");
  s->feature_names[3] = S("color=red");
  s->ncat = 1;
  s->cat_columns = calloc(1, sizeof(char *));
  s->cat_columns[0] = S("color");
  s->cat_counts = calloc(1, sizeof(int));
  s->cat_counts[0] = 2;
  s->cat_values = calloc(1, sizeof(char **));
  s->cat_values[0] = calloc(2, sizeof(char *));
  s->cat_values[0][0] = S("blue");
  s->cat_values[0][1] = S("red");
  s->ntargets = 1;
  s->target_names = calloc(1, sizeof(char *));
  s->target_names[0] = S("y");
  s->classes = 2;
  s->class_names = calloc(2, sizeof(char *));
  s->class_names[0] = S("no");
  s->class_names[1] = S("yes");
  s->id_column = S("key");
  s->ndropped = 1;
  s->dropped = calloc(1, sizeof(char *));
  s->dropped[0] = S("note");
}

static void test_rows_csv(void) {
  ens_schema s;
  schema(&s);
  ens_rows r;
  ens_rows_opts o = {NULL, 0, 0, 0};
  /* Another order, the id, a dropped column, no target; an unseen color. */
  write_text(tpath("a.csv"), "color,key,note,w,x\nred,k1,zz,2.5,1\n"
                             "\"blue\",k2,,3.5,2\ngreen,\"k,3\",z,4.5,3\n");
  CU_ASSERT_EQUAL_FATAL(ens_rows_read(&r, &s, tpath("a.csv"), &o, g_err, sizeof g_err), 0);
  CU_ASSERT_EQUAL(r.n, 3);
  CU_ASSERT_EQUAL(r.d, 4);
  CU_ASSERT(r.reordered);
  CU_ASSERT_EQUAL(r.unseen, 1);
  float want[12] = {1, 2.5f, 0, 1, 2, 3.5f, 1, 0, 3, 4.5f, 0, 0};
  for (int i = 0; i < 12; i++)
    CU_CHECK_CLOSE(r.x[i], want[i], 0);
  CU_ASSERT_PTR_NULL(r.y);
  CU_ASSERT_PTR_NOT_NULL_FATAL(r.ids);
  CU_ASSERT_STRING_EQUAL(r.ids[2], "k,3");
  CU_ASSERT_STRING_EQUAL(r.id_name, "key");
  CU_ASSERT_EQUAL(r.lines[0], 2);
  CU_ASSERT_EQUAL(r.lines[2], 4);

  /* The CSV output of a prediction of these rows. */
  hid_t f = ens_storage_h5_memory(tpath("p.csv"));
  CU_ASSERT_FATAL(f >= 0);
  float probs[6] = {0.25f, 0.75f, 1, 0, 0.5f, 0.5f}, unc[9] = {0};
  int32_t pred[3] = {1, 0, 0};
  hsize_t d2[2] = {3, 2}, d1 = 3, d3[2] = {3, 3};
  CU_ASSERT_EQUAL(ens_h5_write(f, "/probs", H5T_NATIVE_FLOAT, 2, d2, probs, 0), 0);
  CU_ASSERT_EQUAL(ens_h5_write(f, "/pred", H5T_NATIVE_INT32, 1, &d1, pred, 0), 0);
  CU_ASSERT_EQUAL(ens_h5_write(f, "/uncertainty", H5T_NATIVE_FLOAT, 2, d3, unc, 0), 0);
  CU_ASSERT_EQUAL(ens_rows_write_csv(tpath("p.csv"), f, &s, &r, g_err, sizeof g_err), 0);
  H5Fclose(f);
  FILE *fp = fopen(tpath("p.csv"), "r");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  char text[1024] = "";
  size_t got = fread(text, 1, sizeof text - 1, fp);
  text[got] = '\0';
  fclose(fp);
  CU_ASSERT_STRING_EQUAL(text,
                         "key,line,class,class_name,p_no,p_yes,entropy,expected_entropy,"
                         "mutual_information\n"
                         "k1,2,1,yes,0.25,0.75,0,0,0\n"
                         "k2,3,0,no,1,0,0,0,0\n"
                         "\"k,3\",4,0,no,0.5,0.5,0,0,0\n");
  CU_ASSERT(ens_output_is_predict_csv(tpath("p.csv")));
  ens_rows_free(&r);

  /* With the target: labels by class name. */
  write_text(tpath("b.csv"), "y,x,w,color\nyes,1,2,red\nno,2,3,blue\n");
  CU_ASSERT_EQUAL_FATAL(ens_rows_read(&r, &s, tpath("b.csv"), &o, g_err, sizeof g_err), 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(r.y);
  CU_ASSERT_EQUAL(r.y[0], 1);
  CU_ASSERT_EQUAL(r.y[1], 0);
  CU_ASSERT_HAS(r.truth, "column 'y' of");
  CU_ASSERT_PTR_NULL(r.ids); /* the id column is optional */
  ens_rows_free(&r);

  /* Missing and extra columns are named; a missing value is an error. */
  write_text(tpath("c.csv"), "x,color,size\n1,red,3\n");
  CU_ASSERT_EQUAL(ens_rows_read(&r, &s, tpath("c.csv"), &o, g_err, sizeof g_err), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "missing 'w'; not in the model 'size'");
  write_text(tpath("d.csv"), "x,w,color\n1,,red\n");
  CU_ASSERT_EQUAL(ens_rows_read(&r, &s, tpath("d.csv"), &o, g_err, sizeof g_err), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "line 2, column 'w': missing value");
  write_text(tpath("e.csv"), "x,w,color\n1,2;5,red\n");
  CU_ASSERT_EQUAL(ens_rows_read(&r, &s, tpath("e.csv"), &o, g_err, sizeof g_err), ENS_EFORMAT);
  CU_ASSERT_HAS(g_err, "line 2, column 'w': '2;5' is not a number");
  /* --decimal ',' with --delimiter ';'. */
  write_text(tpath("f.csv"), "x;w;color\n1,5;2;red\n");
  o.delimiter = ';';
  o.decimal = ',';
  CU_ASSERT_EQUAL_FATAL(ens_rows_read(&r, &s, tpath("f.csv"), &o, g_err, sizeof g_err), 0);
  CU_CHECK_CLOSE(r.x[0], 1.5, 0);
  CU_ASSERT(!r.reordered);
  ens_rows_free(&r);
  ens_schema_free(&s);
}

static void test_rows_h5(void) {
  ens_schema s;
  schema(&s);
  /* An input imported on its own: other order, a color the model lacks. */
  hid_t f = H5Fcreate(tpath("in.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  CU_ASSERT_FATAL(f >= 0);
  const char *names[4] = {"color=green", "color=red", "w", "x"};
  float x[8] = {1, 0, 5, 6, 0, 1, 7, 8};
  hsize_t d2[2] = {2, 4};
  CU_ASSERT_EQUAL(ens_h5_write_strings(f, "/feature_names", names, 4), 0);
  CU_ASSERT_EQUAL(ens_h5_write(f, "/x", H5T_NATIVE_FLOAT, 2, d2, x, 0), 0);
  H5Fclose(f);
  ens_rows r;
  ens_rows_opts o = {NULL, 0, 0, 0};
  CU_ASSERT_EQUAL_FATAL(ens_rows_read(&r, &s, tpath("in.h5"), &o, g_err, sizeof g_err), 0);
  float want[8] = {6, 5, 0, 0, 8, 7, 0, 1};
  for (int i = 0; i < 8; i++)
    CU_CHECK_CLOSE(r.x[i], want[i], 0);
  CU_ASSERT(r.reordered);
  CU_ASSERT_EQUAL(r.unseen, 1);
  ens_rows_free(&r);
  /* A feature the model lacks, and one it has that the input lacks. */
  f = H5Fcreate(tpath("bad.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const char *bad[4] = {"x", "v", "color=blue", "color=red"};
  CU_ASSERT_EQUAL(ens_h5_write_strings(f, "/feature_names", bad, 4), 0);
  CU_ASSERT_EQUAL(ens_h5_write(f, "/x", H5T_NATIVE_FLOAT, 2, d2, x, 0), 0);
  H5Fclose(f);
  CU_ASSERT_EQUAL(ens_rows_read(&r, &s, tpath("bad.h5"), &o, g_err, sizeof g_err), ENS_ESHAPE);
  CU_ASSERT_HAS(g_err, "missing 'w'; not in the model 'v'");
  ens_schema_free(&s);
}

static void test_output_check(void) {
  char in[512], other[512]; /* tpath's buffers are reused */
  snprintf(in, sizeof in, "%s", tpath("input.h5"));
  snprintf(other, sizeof other, "%s", tpath("other.txt"));
  write_text(in, "data");
  write_text(other, "something else\n");
  const char *inputs[2] = {in, NULL}, *labels[2] = {"-i", "-m"};
  /* Missing output: fine. */
  CU_ASSERT_EQUAL(ens_output_check(tpath("new.h5"), inputs, labels, 2, ENS_OUT_PREDICT, 0,
                                   "ens predict", g_err, sizeof g_err),
                  0);
  /* The input itself, a symbolic link and a hard link to it: never. */
  CU_ASSERT_EQUAL(symlink(in, tpath("sym.h5")), 0);
  CU_ASSERT_EQUAL(link(in, tpath("hard.h5")), 0);
  const char *same[3] = {in, tpath("sym.h5"), tpath("hard.h5")};
  for (int i = 0; i < 3; i++) {
    CU_ASSERT_EQUAL(ens_output_check(same[i], inputs, labels, 2, ENS_OUT_PREDICT, 1,
                                     "ens predict", g_err, sizeof g_err),
                    ENS_EINVAL);
    CU_ASSERT_HAS(g_err, "is the same file as -i");
  }
  /* A file the command did not write: only with force. */
  CU_ASSERT_EQUAL(ens_output_check(other, inputs, labels, 2, ENS_OUT_PREDICT, 0, "ens predict",
                                   g_err, sizeof g_err),
                  ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "exists and is a file ens did not write");
  CU_ASSERT_HAS(g_err, "--force");
  CU_ASSERT_EQUAL(ens_output_check(other, inputs, labels, 2, ENS_OUT_PREDICT, 1, "ens predict",
                                   g_err, sizeof g_err),
                  0);
  /* A folder: never. */
  CU_ASSERT_EQUAL(ens_output_check(g_dir, inputs, labels, 2, ENS_OUT_IMPORT, 1, "ens import csv",
                                   g_err, sizeof g_err),
                  ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "is a folder");
  /* An earlier predict CSV (regression header) is replaced. */
  write_text(tpath("old.csv"), "line,y_mean,y_std,y_lower90,y_upper90,y_var_aleatoric,"
                               "y_var_epistemic\r\n2,1,1,1,1,1,0\r\n");
  CU_ASSERT_EQUAL(ens_output_check(tpath("old.csv"), inputs, labels, 2, ENS_OUT_PREDICT, 0,
                                   "ens predict", g_err, sizeof g_err),
                  0);
  /* ... but not by import, and an import output not by predict. */
  CU_ASSERT_EQUAL(ens_output_check(tpath("old.csv"), inputs, labels, 2, ENS_OUT_IMPORT, 0,
                                   "ens import csv", g_err, sizeof g_err),
                  ENS_EINVAL);
  hid_t f = H5Fcreate(tpath("data.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  float x[2] = {1, 2};
  hsize_t d2[2] = {1, 2};
  CU_ASSERT_EQUAL(ens_h5_write(f, "/train/x", H5T_NATIVE_FLOAT, 2, d2, x, 0), 0);
  H5Fclose(f);
  CU_ASSERT_EQUAL(ens_output_check(tpath("data.h5"), inputs, labels, 2, ENS_OUT_IMPORT, 0,
                                   "ens import csv", g_err, sizeof g_err),
                  0);
  CU_ASSERT_EQUAL(ens_output_check(tpath("data.h5"), inputs, labels, 2, ENS_OUT_PREDICT, 0,
                                   "ens predict", g_err, sizeof g_err),
                  ENS_EINVAL);
  CU_ASSERT_HAS(g_err, "is an ens input data file");
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/ens_test_features.XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 2;
  }
  ens_h5_quiet();
  static const cu_case cases[] = {
      {"import_columns", test_import_columns},
      {"decimal", test_decimal},
      {"rows_csv", test_rows_csv},
      {"rows_h5", test_rows_h5},
      {"output_check", test_output_check},
      {NULL, NULL},
  };
  int rc = cu_run_suite("features", cases);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", g_dir);
  return rc;
}
