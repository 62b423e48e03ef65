/* libFuzzer harness for the IDX reader (src/io/idx.c, memory-level parser
 * ens_idx_parse). Input: a 2-byte little-endian length L, then L bytes of an
 * image file and the rest as a label file (L is cut to what is there). Both
 * are parsed; a valid pair goes through ens_idx_check_pair and every data
 * byte is read. Aborts when an error comes without a message or a parsed file
 * breaks an invariant. The unit test test_fuzz_regress calls the same entry
 * point on saved inputs. */
#include "io/idx.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_ENTRY
#define FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int FUZZ_ENTRY(const uint8_t *data, size_t size);

/* Parses buf (an exact-size copy); returns the parse result. */
static int fuzz_idx_one(ens_idx *f, const unsigned char *buf, size_t len, const char *name) {
  char err[512] = "";
  int rc = ens_idx_parse(f, buf, len, name, err, sizeof err);
  if (rc != 0 && err[0] == '\0')
    abort();
  if (rc == 0) {
    if (f->data < buf || f->count != f->dims[0] || f->ndim < 1 || f->esize == 0)
      abort();
    /* Every data byte must lie inside the buffer: ASan checks the reads. */
    size_t bytes = f->count * f->rowlen * f->esize;
    if (f->count && (size_t)(f->data - buf) + bytes != len)
      abort();
    volatile unsigned char sum = 0;
    for (size_t i = 0; i < bytes; i++)
      sum ^= f->data[i];
    (void)sum;
  }
  return rc;
}

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  size_t l = (size_t)data[0] | (size_t)data[1] << 8;
  if (l > size - 2)
    l = size - 2;
  size_t l2 = size - 2 - l;
  unsigned char *a = malloc(l ? l : 1), *b = malloc(l2 ? l2 : 1);
  if (!a || !b) {
    free(a);
    free(b);
    return 0;
  }
  memcpy(a, data + 2, l);
  memcpy(b, data + 2 + l, l2);
  ens_idx x, y;
  if (fuzz_idx_one(&x, a, l, "images.idx") == 0 && fuzz_idx_one(&y, b, l2, "labels.idx") == 0) {
    char err[512] = "";
    int64_t maxlab = -1;
    int rc = ens_idx_check_pair(&maxlab, &x, &y, err, sizeof err);
    if (rc != 0 && err[0] == '\0')
      abort();
    if (rc == 0 && (maxlab < 0 || x.count != y.count || x.count == 0))
      abort();
  }
  free(a);
  free(b);
  return 0;
}
