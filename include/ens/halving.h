/* Successive halving of a search ([search] halving = true; Jamieson &
 * Talwalkar 2016, Li et al. 2017). Rungs of epochs m, m f, m f^2, ...
 * below [train] epochs, and [train] epochs itself last. At each rung but the
 * last, the members still training are ranked on validation NLL (ties: the
 * lower member index first) and the best floor(n / f) (at least 1) go on;
 * the others stop there. With halving_schedule = whole (the default) the
 * learning-rate schedule is that of [train] epochs, whatever the rungs: a
 * member stopped at rung r is a member of the plain search that stopped
 * early, and a member that reaches the last rung trains exactly as in the
 * plain search (bitwise the same weights). With halving_schedule = rungs the
 * cosine restarts at each rung and ends at it (cycles of the cyclic schedule
 * that end at the rungs; ens_schedule_from_config), so each ranking is made
 * at the end of an annealed cycle; a member's trajectory is still the same
 * whatever rung it stops at. */
#ifndef ENS_HALVING_H
#define ENS_HALVING_H

#include <stddef.h>

#include "ens/config.h"

#define ENS_HALVING_MAX_RUNGS 64

/* The rungs' epochs into rungs (at most ENS_HALVING_MAX_RUNGS); returns
 * their count (1 when halving is off: [train] epochs). */
int ens_halving_rungs(const ens_config *c, int *rungs);

/* Members that go on from a rung of n members: floor(n / factor), at least 1. */
int ens_halving_keep(int n, int factor);

/* Members that reach the last rung when none fails (all of them without
 * halving). */
int ens_halving_final_count(const ens_config *c);

/* The [search] halving keys against the rest of the configuration (loaded
 * from config_path, NULL when unknown): 0, or ENS_ECONFIG with one message
 * naming config_path:line of the key, the key and what was expected. */
int ens_halving_check(const ens_config *c, const char *config_path, char *err, size_t errlen);

#endif
