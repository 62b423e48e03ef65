/* The rank-0 fold (combine.c): members in member order become the
 * ensemble's rows, metrics and the published result. It reads members
 * through a reader that its caller supplies, so it knows nothing of where
 * they come from: the training job's collection (collect.c: rank 0's own
 * file and the other ranks) or `ens merge` (merge.c: the part files). */
#ifndef ENS_ENSEMBLE_FOLD_H
#define ENS_ENSEMBLE_FOLD_H

#include "ensemble/job.h"

/* A reader of members: get brings member k (index i in this job) into
 * j->pack with its metadata in *meta, and makes sure the result file holds
 * it (ens_job_write_member). Returns 0, or an error with a message in err. */
typedef struct ens_member_reader {
  int (*get)(void *ctx, ens_job *j, int i, int k, ens_member_meta *meta, char *err, size_t errlen);
  void *ctx;
} ens_member_reader;

/* Rank 0's half of the collection: folds the members that rd gives, in
 * member order, writes the metrics, publishes the result. */
int ens_job_finish_root(ens_job *j, const ens_member_reader *rd, double train_wall, char *err,
                        size_t errlen);

#endif
