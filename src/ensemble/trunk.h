/* Shared frozen trunk: loading or pretraining it, broadcasting it, and
 * computing its features once per rank. */
#ifndef ENS_ENSEMBLE_TRUNK_H
#define ENS_ENSEMBLE_TRUNK_H

#include <stddef.h>

#include "ensemble/job.h"

/* Collective. Fills j->trunk_* and points j->ftrain/ftest/fd at the cached
 * trunk features. Returns 0 or an ENS_E* code with a message. */
int ens_trunk_prepare(ens_job *j, char *err, size_t errlen);

#endif
