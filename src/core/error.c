/* ens_strerror: messages for the ENS_ERRNO_MAP codes. */
#include "ens/error.h"

#include <stdarg.h>
#include <stdio.h>

void ens_errorf(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

const char *ens_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define ENS_ERR_CASE(name, val, msg) \
  case ENS_E##name:                  \
    return msg;
    ENS_ERRNO_MAP(ENS_ERR_CASE)
#undef ENS_ERR_CASE
  default:
    return "unknown error";
  }
}
