/* Error codes of the ens library: one X-macro table, negative values,
 * ens_strerror() for messages. Library functions return 0 or one of these;
 * only the CLI decides to exit. */
#ifndef ENS_ERROR_H
#define ENS_ERROR_H

#include <stddef.h>

#define ENS_ERRNO_MAP(X)                                              \
  X(NOMEM, -1, "out of memory")                                       \
  X(INVAL, -2, "invalid argument")                                    \
  X(IO, -3, "input/output error")                                     \
  X(FORMAT, -4, "malformed input file")                               \
  X(CONFIG, -5, "invalid configuration")                              \
  X(SHAPE, -6, "shape mismatch")                                      \
  X(HDF5, -7, "HDF5 library error")                                   \
  X(MPI, -8, "MPI error")                                             \
  X(LAPACK, -9, "LAPACK error")                                       \
  X(NUMERIC, -10, "non-finite value (NaN or Inf) in training")        \
  X(STOPPED, -11, "stopped by a signal")                              \
  X(NOTFOUND, -12, "not found")                                      \
  X(NOSPACE, -13, "no space left on device")                          \
  X(WRITE, -14, "write failed")                                       \
  X(LOCKED, -15, "checkpoint directory in use by another job")

enum {
#define ENS_ERR_ENUM(name, val, msg) ENS_E##name = (val),
  ENS_ERRNO_MAP(ENS_ERR_ENUM)
#undef ENS_ERR_ENUM
};

/* snprintf into a caller's message buffer; does nothing when err is NULL or
 * errlen is 0 (library functions take an optional err/errlen pair). */
void ens_errorf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns a static, human-readable string for an ENS_E* code (or "success"). */
const char *ens_strerror(int err);

#endif
