/* IDX (MNIST format) parsing on a memory buffer, shared by the file importer
 * (src/io/idx.c) and the fuzz harness tests/fuzz/fuzz_idx.c. */
#ifndef ENS_IO_IDX_H
#define ENS_IO_IDX_H

#include <stddef.h>
#include <stdint.h>

/* One IDX file held in memory, data still big-endian as in the file. */
typedef struct ens_idx {
  const char *path; /* names the file in messages (not owned) */
  int type;         /* IDX type code, 0x08 ubyte ... 0x0E double */
  size_t esize;     /* bytes per element */
  int ndim;
  uint32_t dims[255];
  size_t count;              /* dims[0] */
  size_t rowlen;             /* product of dims[1..], 1 for a 1-D file */
  const unsigned char *data; /* count * rowlen elements; points into the parsed buffer */
} ens_idx;

/* Parses the len bytes of a whole (decompressed) IDX file: magic, type code,
 * dimensions (overflow-checked), and exactly as many data bytes as they
 * describe. f->data then points into buf, which must outlive f. Returns 0,
 * ENS_EFORMAT ("not an IDX file", "truncated IDX file: expected N bytes,
 * found M", "K trailing bytes ...") or ENS_ENOMEM for dimensions whose size
 * overflows, with a message naming `path`. */
int ens_idx_parse(ens_idx *f, const unsigned char *buf, size_t len, const char *path, char *err,
                  size_t errlen);

/* Checks an image/label pair: labels 1-D non-negative integers, one per
 * image, at least one image of at least one value, sizes that fit an int.
 * *maxlab gets the largest label. Returns 0 or ENS_EFORMAT. */
int ens_idx_check_pair(int64_t *maxlab, const ens_idx *x, const ens_idx *y, char *err,
                       size_t errlen);

#endif
