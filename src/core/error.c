/* ens_strerror: messages for the ENS_ERRNO_MAP codes. */
#include "ens/error.h"

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
