/* Placement of units on ranks (see place.h). The queue is driven by rank 0,
 * which trains too: it answers requests between its own training steps
 * (MPI_Iprobe, a few microseconds when none is waiting) and, once its own
 * work is done, in a polling loop. Units go out costliest first (the
 * longest-processing-time rule), so the last units handed out are the
 * cheap ones that fill the gaps. */
#include "ensemble/place.h"
#include "ensemble/tags.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ens/error.h"


static const double *sort_cost; /* qsort has no context argument */

static int by_cost(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  if (sort_cost[x] != sort_cost[y])
    return sort_cost[x] > sort_cost[y] ? -1 : 1;
  return x < y ? -1 : x > y;
}

int ens_place_plan(int32_t *order, int32_t *plan, ens_place_policy policy, int u_first,
                   int nunits, int size, const double *cost) {
  double *load = calloc((size_t)size + 1, sizeof(double));
  if (!load)
    return ENS_ENOMEM;
  for (int i = 0; i < nunits; i++) {
    order[i] = i;
    plan[i] = (u_first + i) % size; /* modulo: as before */
  }
  if (policy != ENS_PLACE_MODULO) {
    sort_cost = cost;
    qsort(order, (size_t)nunits, sizeof(int32_t), by_cost);
    sort_cost = NULL;
    if (policy == ENS_PLACE_COST)
      for (int a = 0; a < nunits; a++) {
        int u = order[a], best = 0;
        for (int r = 1; r < size; r++)
          if (load[r] < load[best])
            best = r;
        plan[u] = best;
        load[best] += cost[u];
      }
  }
  free(load);
  return 0;
}

int ens_place_init(ens_place *p, MPI_Comm comm, ens_place_policy policy, int u_first, int nunits,
                   const double *cost) {
  memset(p, 0, sizeof(*p));
  p->comm = comm;
  ens_comm_rank(comm, &p->rank);
  ens_comm_size(comm, &p->size);
  p->policy = policy;
  p->u_first = u_first;
  p->nunits = nunits;
  p->t0 = ens_comm_wtime();
  if (nunits < 0)
    return ENS_EINVAL;
  size_t n = (size_t)nunits + 1;
  p->order = malloc(n * sizeof(int32_t));
  p->plan = malloc(n * sizeof(int32_t));
  p->owner = malloc(n * sizeof(int32_t));
  p->t_start = malloc(n * sizeof(double));
  p->t_end = malloc(n * sizeof(double));
  if (p->rank == 0 && policy == ENS_PLACE_QUEUE)
    p->quit = calloc((size_t)p->size, 1);
  if (!p->order || !p->plan || !p->owner || !p->t_start || !p->t_end ||
      (p->rank == 0 && policy == ENS_PLACE_QUEUE && !p->quit) ||
      ens_place_plan(p->order, p->plan, policy, u_first, nunits, p->size, cost)) {
    ens_place_free(p);
    return ENS_ENOMEM;
  }
  for (int i = 0; i < nunits; i++) {
    p->owner[i] = -1;
    p->t_start[i] = p->t_end[i] = -1.0;
  }
  p->quitting = p->size - 1;
  return 0;
}

/* Rank 0's own next unit from the queue (skipping units not in the round). */
static int queue_take(ens_place *p, int stop) {
  if (stop)
    return -1;
  while (p->next < p->nunits) {
    int u = p->order[p->next++];
    if (!p->active || p->active[u])
      return u;
  }
  return -1;
}

void ens_place_round(ens_place *p, const uint8_t *active) {
  p->active = active;
  p->next = 0;
  p->told_done = 0;
  p->quitting = p->size - 1;
  if (p->quit)
    memset(p->quit, 0, (size_t)p->size);
  for (int i = 0; i < p->nunits; i++)
    if (active[i]) {
      p->owner[i] = -1;
      p->t_start[i] = p->t_end[i] = -1.0;
    }
}

int ens_place_next(ens_place *p, int stop) {
  if (p->policy != ENS_PLACE_QUEUE) {
    if (stop)
      return -1;
    while (p->next < p->nunits) {
      int u = p->order[p->next++];
      if (p->plan[u] == p->rank && (!p->active || p->active[u]))
        return p->u_first + u;
    }
    return -1;
  }
  if (p->rank == 0) {
    int u = queue_take(p, stop);
    return u < 0 ? -1 : p->u_first + u;
  }
  if (p->told_done)
    return -1;
  int ask = stop ? 1 : 0, u = -1;
  ens_comm_send(&ask, 1, MPI_INT, 0, ENS_TAG_ASK, p->comm);
  if (stop) {
    p->told_done = 1;
    return -1;
  }
  ens_comm_recv(&u, 1, MPI_INT, 0, ENS_TAG_ANSWER, p->comm, MPI_STATUS_IGNORE);
  if (u < 0) {
    p->told_done = 1;
    return -1;
  }
  return p->u_first + u;
}

/* Answers one request from rank src. */
static void answer(ens_place *p, int src, int stop) {
  int ask = 0;
  ens_comm_recv(&ask, 1, MPI_INT, src, ENS_TAG_ASK, p->comm, MPI_STATUS_IGNORE);
  if (p->quit[src])
    return;
  if (ask == 1) {
    p->quit[src] = 1;
    p->quitting--;
    return;
  }
  int u = queue_take(p, stop);
  ens_comm_send(&u, 1, MPI_INT, src, ENS_TAG_ANSWER, p->comm);
  if (u < 0) {
    p->quit[src] = 1;
    p->quitting--;
  }
}

void ens_place_serve(ens_place *p, int stop) {
  if (p->policy != ENS_PLACE_QUEUE || p->rank != 0 || p->quitting <= 0)
    return;
  for (;;) {
    int flag = 0;
    MPI_Status st;
    ens_comm_iprobe(MPI_ANY_SOURCE, ENS_TAG_ASK, p->comm, &flag, &st);
    if (!flag)
      return;
    answer(p, st.MPI_SOURCE, stop);
  }
}

void ens_place_finish(ens_place *p, int stop, int (*poll)(void *), void *ctx) {
  if (p->policy != ENS_PLACE_QUEUE)
    return;
  if (p->rank != 0) {
    if (!p->told_done) {
      int ask = 1;
      ens_comm_send(&ask, 1, MPI_INT, 0, ENS_TAG_ASK, p->comm);
      p->told_done = 1;
    }
    return;
  }
  /* Poll rather than block: a blocking receive spins a core in Open MPI,
   * which the ranks still training on this node need. */
  const struct timespec nap = {0, 2000000};
  while (p->quitting > 0) {
    if (poll && poll(ctx))
      stop = 1;
    ens_place_serve(p, stop);
    if (p->quitting <= 0)
      break;
    nanosleep(&nap, NULL);
  }
}

void ens_place_started(ens_place *p, int unit) {
  int i = unit - p->u_first;
  if (i < 0 || i >= p->nunits)
    return;
  p->owner[i] = p->rank;
  p->t_start[i] = ens_comm_wtime() - p->t0;
}

void ens_place_ended(ens_place *p, int unit) {
  int i = unit - p->u_first;
  if (i >= 0 && i < p->nunits)
    p->t_end[i] = ens_comm_wtime() - p->t0;
}

int ens_place_gather(ens_place *p) {
  if (p->size == 1 || p->nunits == 0)
    return 0;
  /* Each unit was taken by at most one rank; the others hold -1, so the
   * maximum is the taker's value (exact: no arithmetic). */
  int ret = 0;
  void *in = p->rank == 0 ? MPI_IN_PLACE : p->owner;
  ret |= ens_comm_reduce(in, p->owner, p->nunits, MPI_INT32_T, MPI_MAX, 0, p->comm);
  in = p->rank == 0 ? MPI_IN_PLACE : p->t_start;
  ret |= ens_comm_reduce(in, p->t_start, p->nunits, MPI_DOUBLE, MPI_MAX, 0, p->comm);
  in = p->rank == 0 ? MPI_IN_PLACE : p->t_end;
  ret |= ens_comm_reduce(in, p->t_end, p->nunits, MPI_DOUBLE, MPI_MAX, 0, p->comm);
  return ret == MPI_SUCCESS ? 0 : ENS_EMPI;
}

int ens_place_owner(const ens_place *p, int unit) {
  int i = unit - p->u_first;
  if (!p->owner || i < 0 || i >= p->nunits)
    return -1;
  return p->owner[i];
}

const char *ens_place_policy_name(ens_place_policy policy) {
  switch (policy) {
  case ENS_PLACE_COST:
    return "cost";
  case ENS_PLACE_MODULO:
    return "modulo";
  case ENS_PLACE_QUEUE:
  default:
    return "queue";
  }
}

void ens_place_free(ens_place *p) {
  free(p->order);
  free(p->plan);
  free(p->owner);
  free(p->t_start);
  free(p->t_end);
  free(p->quit);
  p->order = p->plan = p->owner = NULL;
  p->t_start = p->t_end = NULL;
  p->quit = NULL;
}
