/* Learning-rate schedules: constant, step, cosine and cyclic cosine. */
#include <math.h>

#include "ens/halving.h"
#include "ens/optim.h"

_Static_assert(ENS_SCHED_MAX_BOUNDS >= ENS_HALVING_MAX_RUNGS, "a cycle per rung");

void ens_schedule_from_config(ens_schedule *s, const ens_config *c, long steps_per_epoch) {
  s->kind = c->schedule;
  s->lr = c->lr;
  s->lr_min = c->lr_min;
  s->gamma = c->step_gamma;
  s->step_size = c->step_size;
  s->cycles = c->cycles;
  s->steps_per_epoch = steps_per_epoch;
  s->total_steps = steps_per_epoch * c->epochs;
  s->nbounds = 0;
  if (c->mode == ENS_MODE_SNAPSHOT) {
    s->kind = ENS_SCHED_CYCLIC;
    s->cycles = c->snapshots;
  }
  if (c->mode == ENS_MODE_SEARCH && c->search_halving &&
      c->search_halving_schedule == ENS_HALVING_SCHED_RUNGS && c->schedule == ENS_SCHED_COSINE) {
    int rungs[ENS_HALVING_MAX_RUNGS];
    int R = ens_halving_rungs(c, rungs);
    s->kind = ENS_SCHED_CYCLIC;
    s->cycles = s->nbounds = R;
    for (int r = 0; r < R; r++)
      s->bound_epoch[r] = rungs[r];
  }
}

/* Start of cycle j (0..cycles) in steps. */
static long cycle_bound(const ens_schedule *s, long j) {
  if (s->nbounds > 0)
    return j <= 0 ? 0 : (long)s->bound_epoch[j - 1] * s->steps_per_epoch;
  return (long)llround((double)j * (double)s->total_steps / (double)s->cycles);
}

/* Cycle containing step t. */
static long cycle_of(const ens_schedule *s, long t) {
  long j = (long)((double)t * s->cycles / (double)s->total_steps);
  while (j > 0 && cycle_bound(s, j) > t)
    j--;
  while (j + 1 < s->cycles && cycle_bound(s, j + 1) <= t)
    j++;
  return j;
}

static double cosine(double lr, double lr_min, double frac) {
  return lr_min + (lr - lr_min) * 0.5 * (1.0 + cos(M_PI * frac));
}

double ens_schedule_lr(const ens_schedule *s, long t) {
  switch (s->kind) {
  case ENS_SCHED_CONSTANT:
    return s->lr;
  case ENS_SCHED_STEP: {
    long epoch = t / (s->steps_per_epoch > 0 ? s->steps_per_epoch : 1);
    return s->lr * pow(s->gamma, (double)(epoch / s->step_size));
  }
  case ENS_SCHED_COSINE:
    return cosine(s->lr, s->lr_min, (double)t / (double)s->total_steps);
  case ENS_SCHED_CYCLIC: {
    long j = cycle_of(s, t);
    long b0 = cycle_bound(s, j), b1 = cycle_bound(s, j + 1);
    return cosine(s->lr, s->lr_min, (double)(t - b0) / (double)(b1 - b0));
  }
  }
  return s->lr;
}

int ens_schedule_cycle_end(const ens_schedule *s, long t) {
  if (t + 1 == s->total_steps)
    return 1;
  if (s->kind != ENS_SCHED_CYCLIC)
    return 0;
  long j = cycle_of(s, t);
  return cycle_bound(s, j + 1) == t + 1;
}
