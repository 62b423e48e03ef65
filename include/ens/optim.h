/* SGD with momentum / Nesterov and weight decay over flat buffers, gradient
 * clipping, and learning-rate schedules. */
#ifndef ENS_OPTIM_H
#define ENS_OPTIM_H

#include <stddef.h>

#include "ens/config.h"

typedef struct ens_sgd {
  double momentum;
  double weight_decay;
  int nesterov;
} ens_sgd;

/* One SGD step in PyTorch's convention (dampening 0):
 *   g = grad + wd p;  v = mu v + g;  p -= lr (nesterov ? g + mu v : v).
 * p, v, grad are (n). grad is read only. */
void ens_sgd_step(float *p, float *v, const float *grad, size_t n, double lr, const ens_sgd *o);

/* Clamps every element of g (n) to [-c, c]. */
void ens_clip_value(float *g, size_t n, float c);
/* Scales g (n) by c / ||g||_2 when the norm exceeds c. Returns the norm
 * before clipping (computed in double). */
double ens_clip_norm(float *g, size_t n, double c);

typedef struct ens_schedule {
  ens_schedule_kind kind;
  double lr, lr_min;   /* peak and floor */
  double gamma;        /* step: decay factor */
  int step_size;       /* step: epochs between decays */
  int cycles;          /* cyclic: number of cosine cycles in the run */
  long steps_per_epoch;
  long total_steps;
} ens_schedule;

/* Fills s from the [train] keys; in snapshot mode the caller passes
 * kind = cyclic and cycles = snapshots. */
void ens_schedule_from_config(ens_schedule *s, const ens_config *c, long steps_per_epoch);

/* Learning rate of step t (0-based):
 *  constant: lr;  step: lr gamma^floor(epoch / step_size);
 *  cosine: lr_min + (lr - lr_min)(1 + cos(pi t / T)) / 2  (Loshchilov & Hutter 2017);
 *  cyclic: the same within each cycle [b_j, b_{j+1}), b_j = round(j T / cycles)
 *  (cyclic cosine, Huang et al. 2017, eq. 2, with cycle boundaries that give
 *  exactly `cycles` cycles for any T >= cycles). */
double ens_schedule_lr(const ens_schedule *s, long t);
/* 1 when step t is the last step of a cycle (cyclic) or of the run. */
int ens_schedule_cycle_end(const ens_schedule *s, long t);

#endif
