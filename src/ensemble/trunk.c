/* Shared frozen trunk (issue 4): not yet written. */
#include <stdio.h>

#include "ens/error.h"
#include "ensemble/trunk.h"

int ens_trunk_prepare(ens_job *j, char *err, size_t errlen) {
  (void)j;
  snprintf(err, errlen, "[trunk] source: trunks are not implemented yet");
  return ENS_ECONFIG;
}
