/* The hand-off of a finished member from the training loop to the
 * collection (store.c). */
#ifndef ENS_ENSEMBLE_STORE_H
#define ENS_ENSEMBLE_STORE_H

#include "ensemble/job.h"

/* Keeps a finished member: rank 0 writes it to the result file; other ranks
 * keep its metadata and rebuild it from its checkpoint at collection
 * (ens_job_pack_checkpoint). */
int ens_job_store_member(ens_job *j, const ens_member_meta *meta, const float *packed);

/* Packs the trainer's current model (predictions included) and stores it
 * as member meta->k (see ens_job_store_member); a failed member is stored
 * without data. */
int ens_job_emit_packed(ens_job *j, ens_trainer *t, const ens_member_meta *meta);

#endif
