/* libFuzzer harness for the CSV importer's parser and encoder (src/io/csv.c).
 * The first input byte chooses the options, the rest is the CSV text:
 *   bit 0     no header          bits 1-2  delimiter , ; tab space
 *   bits 3-4  task auto/classify/regress (3 = auto)
 *   bit 5     drop missing rows  bit 6     encode the table against itself as
 *                                          the test table (else split it)
 *   bit 7     target = the last column (else column 0)
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

static void fuzz_csv_check_data(const ens_csv_data *d, int rows, int self_test) {
  const ens_csv_part *parts[3] = {&d->train, &d->test, &d->val};
  int kept = rows - d->info.dropped;
  int total = d->train.n + d->val.n + (self_test ? 0 : d->test.n);
  if (total != kept || d->train.n < 1 || d->test.n < 1 || d->d < 1 ||
      (self_test && (d->test.n != kept || d->info.unseen != 0))) {
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

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t opt = data[0];
  /* An exact-size copy, so that reading past the end is caught. */
  size_t len = size - 1;
  char *buf = malloc(len ? len : 1);
  if (!buf)
    return 0;
  memcpy(buf, data + 1, len);
  ens_csv_opts o = {"fuzz.csv", ",;\t "[opt >> 1 & 3], opt & 1};
  char err[1024] = "";
  ens_csv c;
  int rc = ens_csv_parse(&c, buf, len, &o, err, sizeof err);
  fuzz_csv_check_error(rc, err);
  if (rc == 0) {
    char target[16];
    snprintf(target, sizeof target, "%d", opt & 0x80 ? c.cols - 1 : 0);
    ens_csv_encode_opts eo = {target, (ens_csv_task)((opt >> 3 & 3) % 3), opt >> 5 & 1, 0.3, 0.2,
                              1};
    int self_test = (opt & 0x40) != 0;
    ens_csv_data d;
    err[0] = '\0';
    rc = ens_csv_encode(&d, &c, self_test ? &c : NULL, &eo, err, sizeof err);
    fuzz_csv_check_error(rc, err);
    if (rc == 0) {
      fuzz_csv_check_data(&d, c.rows, self_test);
      ens_csv_data_free(&d);
    }
    ens_csv_free(&c);
  }
  free(buf);
  return 0;
}
