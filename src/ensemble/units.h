/* Members, units and ranks: which unit (a member, or a snapshot chain)
 * member k belongs to, and which rank trained it. The job's questions to
 * placement (place.c); a leaf that every other file of src/ensemble/ may
 * ask (units.c calls place.c only). */
#ifndef ENS_ENSEMBLE_UNITS_H
#define ENS_ENSEMBLE_UNITS_H

struct ens_job;

/* The unit that trains member k. */
int ens_job_unit_of(const struct ens_job *j, int k);
/* The rank that trained member k in this run (rank 0: any member after the
 * placement record was gathered; other ranks: their own), -1 when unknown. */
int ens_job_rank_of(const struct ens_job *j, int k);

#endif
