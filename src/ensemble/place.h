/* Placement: which rank trains which unit (a member, or a snapshot chain),
 * and the record of where and when each unit trained. A leaf: it knows
 * units, costs and ranks, nothing of members, data or combining; the
 * training loop asks it for the next unit, the collection asks it who holds
 * a unit. A unit's result never depends on where it trained, so every
 * policy gives the same result file (placement records aside). */
#ifndef ENS_ENSEMBLE_PLACE_H
#define ENS_ENSEMBLE_PLACE_H

#include <mpi.h>
#include <stdint.h>

#include "core/comm.h"

typedef enum {
  ENS_PLACE_QUEUE = 0,  /* rank 0 hands out units, costliest first, as ranks free up */
  ENS_PLACE_COST = 1,   /* fixed plan: costliest first, each to the least-loaded rank */
  ENS_PLACE_MODULO = 2  /* fixed plan: unit u on rank u mod P (before issue 18) */
} ens_place_policy;

typedef struct ens_place {
  MPI_Comm comm;
  int rank, size;
  ens_place_policy policy;
  int u_first, nunits;   /* units [u_first, u_first + nunits) */
  int32_t *order;        /* (nunits) unit indexes (0-based) in the order handed out */
  int next;              /* next position in order (queue: rank 0's counter) */
  int32_t *plan;         /* (nunits) static policies: the planned rank */
  int32_t *owner;        /* (nunits) the rank that took the unit in this run, -1 none;
                            complete on rank 0 after ens_place_gather */
  double *t_start, *t_end; /* (nunits) seconds since ens_place_init on the taking rank */
  double t0;
  int told_done;         /* non-root, queue: rank 0 answered "no more units" */
  uint8_t *quit;         /* rank 0, queue: (size) rank r has finished asking */
  int quitting;          /* rank 0, queue: ranks still asking */
  const uint8_t *active; /* (nunits) the current round's units (ens_place_round), NULL = all */
} ens_place;

/* Collective. cost (nunits): estimated cost of each unit (any positive
 * scale; only its order and sums matter). Returns 0 or ENS_ENOMEM /
 * ENS_EINVAL (the same on every rank: the arguments are). */
int ens_place_init(ens_place *p, MPI_Comm comm, ens_place_policy policy, int u_first, int nunits,
                   const double *cost);
/* The plan behind ens_place_init, without MPI: order (nunits) = unit
 * indexes (0-based) in the order handed out (modulo: 0, 1, ...; else by
 * cost, highest first, ties to the lower index); plan (nunits) = the rank
 * of each unit for the static policies (modulo: (u_first + i) mod size;
 * cost: in that order, each to the rank with the least planned cost, ties
 * to the lower rank). 0 or ENS_ENOMEM. */
int ens_place_plan(int32_t *order, int32_t *plan, ens_place_policy policy, int u_first,
                   int nunits, int size, const double *cost);
/* The next unit this rank trains (an absolute unit index), or -1 when there
 * is none for it. stop: this rank stops (it takes nothing more; with the
 * queue, it tells rank 0). Queue on a non-root rank: asks rank 0 and waits
 * for the answer (rank 0 answers between its training steps). */
int ens_place_next(ens_place *p, int stop);
/* Rank 0 with the queue: answers the requests that have arrived (never
 * blocks). stop: answer "no more units". Any other rank: nothing. */
void ens_place_serve(ens_place *p, int stop);
/* End of this rank's training. Rank 0 with the queue keeps answering until
 * every rank has stopped asking, calling poll(ctx) about every 2 ms
 * meanwhile (it returns 1 when the job stops: then every later request is
 * answered "no more units"); a non-root rank tells rank 0 it stops asking
 * unless rank 0 told it first. */
void ens_place_finish(ens_place *p, int stop, int (*poll)(void *), void *ctx);
/* Collective: a new round over the units with active[i] set (i = unit -
 * u_first), handed out as by ens_place_init's policy (the queue: costliest
 * first, as ranks free up). Call after ens_place_finish of the previous
 * round. The record of an active unit is cleared on every rank, so it
 * names the rank of the unit's last round. Successive halving trains each
 * rung as a round. */
void ens_place_round(ens_place *p, const uint8_t *active);
/* This rank's unit u started / ended (for the record). */
void ens_place_started(ens_place *p, int unit);
void ens_place_ended(ens_place *p, int unit);
/* Collective: rank 0 gets every unit's owner and times. 0 or ENS_ENOMEM. */
int ens_place_gather(ens_place *p);
/* The rank that took unit u in this run (rank 0 after ens_place_gather, or
 * this rank's own units), -1 when none did. */
int ens_place_owner(const ens_place *p, int unit);
const char *ens_place_policy_name(ens_place_policy policy);
void ens_place_free(ens_place *p);

#endif
