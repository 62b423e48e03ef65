/* The collection (collect.c): what the training loop calls once its units
 * are trained. */
#ifndef ENS_ENSEMBLE_COLLECT_H
#define ENS_ENSEMBLE_COLLECT_H

#include "ensemble/job.h"

/* Collection (collective): rank 0 combines members in order and writes and
 * renames the result file; all ranks return its outcome. */
int ens_job_collect(ens_job *j, double train_wall, char *err, size_t errlen);

#endif
