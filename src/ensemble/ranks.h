/* /ranks of the result file (ranks.c). */
#ifndef ENS_ENSEMBLE_RANKS_H
#define ENS_ENSEMBLE_RANKS_H

#include "ensemble/job.h"

/* Collective: rank 0 gathers every rank's ens_rank_info into j->ranks
 * (peak_rss measured now). */
int ens_job_gather_ranks(ens_job *j);
/* Rank 0: writes /ranks (placement and memory, exempt from the determinism
 * contract) into the result file; its own peak_rss is measured again now. */
int ens_job_write_ranks(ens_job *j);

#endif
