/* Hyper-deep ensembles ([search] hyper_deep = K; Wenzel et al., NeurIPS
 * 2020): after a search's members [0, M) are trained and combine = select
 * has chosen among them, the best hyper_deep_configs = S configurations are
 * trained again, K times each, with new seeds, in the same job, as members
 * [M, M + S*K). Member M + s*K + r retrains the configuration ranked s
 * (ranking: selection picks, more first; then validation NLL, lower first;
 * then the member index), its r-th new seed; like every member it draws its
 * initialization, batches and dropout from (seed, k), its own index. */
#ifndef ENS_HYPERDEEP_H
#define ENS_HYPERDEEP_H

#include <hdf5.h>
#include <stddef.h>

#include "ens/config.h"

#define ENS_HYPERDEEP_MAX_SEEDS 8 /* [search] hyper_deep at most */

/* Members of the job's result: [ensemble] members, plus S*K retrained ones
 * when hyper-deep is on. */
int ens_hyperdeep_total(const ens_config *c);

/* 1 when hyper-deep is on ([search] hyper_deep > 0 in a search). */
int ens_hyperdeep_on(const ens_config *c);

/* The [search] hyper_deep keys against the rest of the configuration
 * (loaded from config_path, NULL when unknown): 0, or ENS_ECONFIG with one
 * message naming config_path:line of the key, the key and what was
 * expected. */
int ens_hyperdeep_check(const ens_config *c, const char *config_path, char *err, size_t errlen);

/* Reads the configuration of member k from a result file's /members/<k>
 * "source" attribute; k for results without one (before hyper-deep). */
int ens_hyperdeep_read_source(hid_t f, int k);

#endif
