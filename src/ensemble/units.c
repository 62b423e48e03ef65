/* Members, units and ranks (units.h). */
#include "ensemble/units.h"

#include "ensemble/job.h"

int ens_job_unit_of(const ens_job *j, int k) {
  return j->c->mode == ENS_MODE_SNAPSHOT ? k / j->c->snapshots : k;
}

/* The rank that trained member k in this run (placement is recorded by
 * place.c; rank 0 knows every unit's after ens_place_gather). */
int ens_job_rank_of(const ens_job *j, int k) {
  return ens_place_owner(&j->place, ens_job_unit_of(j, k));
}
