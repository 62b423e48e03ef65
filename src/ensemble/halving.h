/* Successive halving of a search (ens/halving.h says what it does): the
 * rung table, the decisions, their checkpoint (<checkpoint_dir>/halving.h5)
 * and their record in the result (/search). The training loop (sched.c)
 * trains each rung as a placement round and reports each unit's outcome
 * here; nothing here trains or combines, and nothing here calls the
 * training loop, the checkpoints, the members or the collection: a leaf
 * that sched.c (the rounds) and combine.c (the record) ask. */
#ifndef ENS_ENSEMBLE_HALVING_H
#define ENS_ENSEMBLE_HALVING_H

#include <stdint.h>

#include "ens/halving.h"

struct ens_job;

/* A unit's state in the table. */
enum {
  ENS_RUNG_ALIVE = 0,    /* still training (or reached the last rung: finished) */
  ENS_RUNG_STOPPED = 1,  /* ranked out at rung last_rung */
  ENS_RUNG_FAILED = 2,   /* its loss diverged during rung last_rung (emitted as failed) */
  ENS_RUNG_FINISHED = 3  /* trained to the last rung ([train] epochs) */
};

/* One unit's outcome of a round, as the rank that trained it reports it. */
enum { ENS_RUNG_REP_NLL, ENS_RUNG_REP_LOSS, ENS_RUNG_REP_STEPS, ENS_RUNG_REP_SECONDS,
       ENS_RUNG_REP_STATE, ENS_RUNG_REP_RANK, ENS_RUNG_REP_N };

typedef struct ens_halving {
  int R;                   /* rungs */
  int rungs[ENS_HALVING_MAX_RUNGS]; /* their epochs; rungs[R-1] = [train] epochs */
  int factor;
  int n;                   /* units (= members) */
  int decided;             /* rungs whose ranking was made (restored or in this run) */
  int round;               /* the rung being trained */
  double *nll, *loss, *steps, *seconds; /* (n, R): at the end of each rung, NaN = not reached */
  int32_t *rank;           /* (n, R): the rank that trained the rung, -1 */
  int32_t *state;          /* (n) ENS_RUNG_* */
  int32_t *last_rung;      /* (n) the last rung the unit trained in (or ranked at) */
  int32_t *place;          /* (n) 1-based place in its last ranking, 0 = none */
  int32_t *entered;        /* (n) units that entered the last ranked rung, per rung (R) */
  uint8_t *active;         /* (n) units of the current round */
  double *rep;             /* (n, ENS_RUNG_REP_N) this round's reports, -INF = none here */
  int restored;            /* 1: the table came from halving.h5 (--resume) */
  char *ident;             /* the job's configuration text (halving.h5 must match it) */
} ens_halving;

/* Collective: the rungs and an empty table for job j (its configuration
 * text `ident`, as checkpoints hold it); with --resume rank 0 reads the
 * decided rungs from halving.h5 (a foreign or damaged file is named in a
 * warning and ignored) and every rank gets them. Sets the first round's
 * units. Returns 0 or an ENS_E* code with err (the same on every rank). */
int ens_halving_init(ens_halving *h, struct ens_job *j, const char *ident, char *err,
                     size_t errlen);
void ens_halving_free(ens_halving *h);
/* The first round to train (rungs before it were decided in an earlier run). */
static inline int ens_halving_first_round(const ens_halving *h) { return h->decided; }
/* This rank's outcome of unit u in the current round. */
void ens_halving_report(ens_halving *h, int u, double nll, double loss, int64_t steps,
                        double seconds, int state, int rank);
/* Collective, after every rank finished the round: gathers the reports,
 * ranks the units (all but the last rung), keeps the best, sets the next
 * round's units, and rank 0 checkpoints the table. 0 or an ENS_E* code
 * with err (agreed). */
int ens_halving_end_round(ens_halving *h, struct ens_job *j, char *err, size_t errlen);
/* The metadata of unit u as a stopped member (status stopped, the rung's
 * epochs and steps, no weights or rows): 1 when u was stopped, else 0. */
struct ens_member_meta;
int ens_halving_stopped_meta(const ens_halving *h, const struct ens_job *j, int u,
                             struct ens_member_meta *meta);
/* Rank 0: writes /search (rung epochs, the table, each member's rung and
 * status) into the result file; val_nll (M) is each member's validation
 * nll of its stored rows (the last rung's column). */
int ens_halving_write(const ens_halving *h, struct ens_job *j, const double *val_nll);
/* Rank 0, after a published result: removes halving.h5 and the unit
 * checkpoints of stopped members. */
void ens_halving_cleanup(const ens_halving *h, struct ens_job *j);

#endif
