/* Hyper-deep ensembles in a job (ens/hyperdeep.h for the keys): the map
 * from member to the configuration it trains, the selection between the
 * search's members and their retraining, and the combining weights. */
#ifndef ENS_ENSEMBLE_HYPERDEEP_H
#define ENS_ENSEMBLE_HYPERDEEP_H

#include <hdf5.h>
#include <stdint.h>

#include "ens/metrics.h"
#include "ensemble/task.h"

struct ens_job;

typedef struct ens_hyperdeep {
  int M, S, K, N;  /* search members, configurations retrained, seeds each, all members */
  int32_t *source; /* (N) configuration (drawn member index) each member trains */
  int known;       /* the selection has chosen: source[M..N) are final */
  int32_t *counts; /* (M) the selection's picks of the search's members */
  uint8_t *active; /* (N) the placement round's units (borrowed by ens_place_round) */
  ens_select_info info;
} ens_hyperdeep;

/* Sets up h for job j (all off when the job's configuration has no
 * hyper-deep). Before the selection, member M + s*K + r stands for
 * configuration s (estimates only). 0 or ENS_ENOMEM. */
int ens_hyperdeep_init(ens_hyperdeep *h, const struct ens_job *j);
void ens_hyperdeep_free(ens_hyperdeep *h);

/* The configuration member k trains: k itself without hyper-deep (h NULL). */
int ens_hyperdeep_source(const ens_hyperdeep *h, int k);

/* Collective, after members [0, M) are trained (finished or failed): rank
 * 0 gathers their validation rows, runs the job's selection on them
 * (ens_task_select, as the collection would), ranks the configurations
 * (picks, more first; validation NLL; index) and the first S become the
 * sources of members [M, N) on every rank; rank 0 records them in the
 * result file (/search). 0 or an error with a message. */
int ens_hyperdeep_choose(struct ens_job *j, ens_hyperdeep *h, char *err, size_t errlen);

/* The combining weights of all N members as integer picks (counts, N):
 * the selection (ens_task_select with opts o) among the search's finished
 * members [0, M) on their validation rows vrows (N, nv, W; the first M
 * used), the same selection that chose the configurations to retrain.
 * Each configuration keeps the picks of its search member (a retrained
 * configuration the selection did not pick gets 1 pick), spread evenly over
 * its finished members (the original and its new seeds): counts[i] =
 * picks(source) * L / members(source), L the least common multiple of the
 * group sizes. done (N): finished members. Returns the sum of counts (> 0)
 * or an error (ENS_EINVAL: no usable member). */
int ens_hyperdeep_select(const ens_hyperdeep *h, const ens_task *task, int32_t *counts,
                         ens_select_info *info, const float *vrows, const uint8_t *done,
                         const ens_truth *val, const ens_select_opts *o);
/* The spreading alone: base (N) holds the picks of the search's members in
 * [0, M) (the rest ignored); counts (N) gets the weights. */
int ens_hyperdeep_spread(const ens_hyperdeep *h, int32_t *counts, const int32_t *base_picks,
                         const uint8_t *done);

/* Merge: the sources (and the selection's picks) of a whole hyper-deep
 * result file f into h. */
void ens_hyperdeep_load(ens_hyperdeep *h, hid_t f);
/* Rank 0: writes h into the job's result file (/search). 0 or an error with
 * a message. */
int ens_hyperdeep_record(struct ens_job *j, const ens_hyperdeep *h, char *err, size_t errlen);


#endif
