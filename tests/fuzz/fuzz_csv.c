/* libFuzzer harness for the CSV importer's parser and encoder (src/io/csv.c).
 * Two option bytes, then the CSV text:
 *   byte 0  bit 0     no header         bits 1-2  delimiter , ; tab space
 *           bits 3-4  task auto/classify/regress (3 = auto)
 *           bit 5     drop missing rows
 *           bit 6     a test table: the text after the first form feed (\f),
 *                     or the main table itself when there is none (else the
 *                     main table is split by fraction)
 *           bit 7     first target = the last column (else column 0)
 *   byte 1  bits 0-1  extra targets: the next 0-3 columns (may be out of range)
 *           bit 2     name targets by header name (else by index)
 *           bit 3     no validation split (else val_fraction 0.2)
 * Aborts when an error comes without a one-line message or an encoded table
 * breaks an invariant (row counts, labels in range, finite values). The unit
 * test test_fuzz_regress calls the same entry point on saved inputs. */
#include "ens/data.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_ENTRY
#define FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int FUZZ_ENTRY(const uint8_t *data, size_t size);

/* An error must come with a message on one line. */
static void fuzz_csv_check_error(int rc, const char *err) {
  if (rc != 0 && (err[0] == '\0' || strchr(err, '\n'))) {
    fprintf(stderr, "error %d with a bad message: '%s'\n", rc, err);
    abort();
  }
}

/* rows: the main table's; test_rows: the separate test table's, -1 when the
 * main table is its own test table, 0 when it was split. */
static void fuzz_csv_check_data(const ens_csv_data *d, int rows, int test_rows) {
  const ens_csv_part *parts[3] = {&d->train, &d->test, &d->val};
  int kept = rows - d->info.dropped;
  int total = d->train.n + d->val.n + (test_rows == 0 ? d->test.n : 0);
  int bad = total != kept || d->train.n < 1 || d->test.n < 1 || d->d < 1 ||
            (test_rows < 0 && (d->test.n != kept || d->info.unseen != 0)) ||
            (test_rows > 0 && d->test.n != test_rows - d->info.test_dropped);
  if (bad) {
    fprintf(stderr, "row counts: train %d val %d test %d of %d kept rows\n", d->train.n, d->val.n,
            d->test.n, kept);
    abort();
  }
  for (int p = 0; p < 3; p++)
    for (int i = 0; i < parts[p]->n; i++) {
      if (d->info.task == ENS_CSV_CLASSIFY &&
          (parts[p]->label[i] < 0 || parts[p]->label[i] >= d->classes)) {
        fprintf(stderr, "label %d out of [0, %d)\n", parts[p]->label[i], d->classes);
        abort();
      }
      /* Every value is finite (numbers must fit float32; one-hot is 0/1). */
      for (int j = 0; j < d->d; j++)
        if (!isfinite(parts[p]->x[(size_t)i * (size_t)d->d + (size_t)j]))
          abort();
      for (int t = 0; parts[p]->y && t < d->targets; t++)
        if (!isfinite(parts[p]->y[(size_t)i * (size_t)d->targets + (size_t)t]))
          abort();
    }
}

/* "--target" text for the options in o1: malloc'd. */
static char *fuzz_csv_targets(const ens_csv *c, uint8_t o0, uint8_t o1) {
  int base = o0 & 0x80 ? c->cols - 1 : 0, n = 1 + (o1 & 3);
  size_t len = 1;
  for (int k = 0; k < n; k++)
    len += 16 + (base + k < c->cols ? strlen(c->names[base + k]) : 0);
  char *s = malloc(len);
  if (!s)
    return NULL;
  size_t w = 0;
  for (int k = 0; k < n; k++) {
    int col = base + k;
    if ((o1 & 4) && col < c->cols)
      w += (size_t)snprintf(s + w, len - w, "%s%s", k ? "," : "", c->names[col]);
    else
      w += (size_t)snprintf(s + w, len - w, "%s%d", k ? "," : "", col);
  }
  return s;
}

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  uint8_t o0 = data[0], o1 = data[1];
  /* Exact-size copies, so that reading past the end is caught. */
  size_t len = size - 2, tlen = 0;
  const uint8_t *text = data + 2, *ff = NULL;
  if (o0 & 0x40)
    ff = memchr(text, '\f', len);
  if (ff) {
    tlen = len - (size_t)(ff - text) - 1;
    len = (size_t)(ff - text);
  }
  char *buf = malloc(len ? len : 1), *tbuf = malloc(tlen ? tlen : 1);
  if (!buf || !tbuf) {
    free(buf);
    free(tbuf);
    return 0;
  }
  memcpy(buf, text, len);
  if (ff)
    memcpy(tbuf, ff + 1, tlen);
  ens_csv_opts o = {"fuzz.csv", ",;\t "[o0 >> 1 & 3], o0 & 1};
  char err[1024] = "";
  ens_csv c, t;
  memset(&t, 0, sizeof t); /* a failed or skipped parse leaves a table that frees */
  int rc = ens_csv_parse(&c, buf, len, &o, err, sizeof err), trc = -1;
  fuzz_csv_check_error(rc, err);
  if (rc == 0 && ff) {
    o.name = "fuzz-test.csv";
    err[0] = '\0';
    trc = ens_csv_parse(&t, tbuf, tlen, &o, err, sizeof err);
    fuzz_csv_check_error(trc, err);
  }
  char *target = rc == 0 ? fuzz_csv_targets(&c, o0, o1) : NULL;
  if (target && (!ff || trc == 0)) {
    ens_csv_encode_opts eo = {
        target, (ens_csv_task)((o0 >> 3 & 3) % 3), o0 >> 5 & 1, 0.3, o1 & 8 ? 0 : 0.2, 1, 0, NULL, NULL, NULL};
    const ens_csv *test = !(o0 & 0x40) ? NULL : ff ? &t : &c;
    ens_csv_data d;
    err[0] = '\0';
    rc = ens_csv_encode(&d, &c, test, &eo, err, sizeof err);
    fuzz_csv_check_error(rc, err);
    if (rc == 0) {
      fuzz_csv_check_data(&d, c.rows, !test ? 0 : ff ? t.rows : -1);
      ens_csv_data_free(&d);
    }
  }
  free(target);
  ens_csv_free(&t);
  ens_csv_free(&c);
  free(buf);
  free(tbuf);
  return 0;
}
