/* The scheduler (sched.c): trains this rank's units. */
#ifndef ENS_ENSEMBLE_SCHED_H
#define ENS_ENSEMBLE_SCHED_H

#include "ensemble/halving.h"
#include "ensemble/job.h"

/* One placement round: this rank trains the units the placement gives it
 * (each to epoch `target`), appending them to units[*mine]; rank 0 then
 * answers the others until they are all done. Each finished member goes to
 * store.c. 0, ENS_ESTOPPED on a stop, or an error with a message in err. */
int ens_job_train_round(ens_job *j, int target, int *units, int *mine, char *err, size_t errlen);
/* Successive halving: one round per rung, halving.c ranking the units
 * between them; rank 0 stores the stopped members at the end. */
int ens_job_train_rungs(ens_job *j, ens_halving *hv, int *units, int *mine, char *err,
                        size_t errlen);

#endif
