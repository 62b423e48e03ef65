/* SGD with momentum / Nesterov, Adam and AdamW, weight decay over flat
 * buffers, gradient clipping, and learning-rate schedules. */
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

typedef struct ens_adam {
  double beta1, beta2, eps, weight_decay;
  int decoupled; /* 0: Adam (L2 added to the gradient), 1: AdamW (decoupled decay) */
} ens_adam;

/* One step at 1-based step count t (Kingma & Ba 2015, alg. 1; AdamW: Loshchilov & Hutter 2019).
 * Adam:  g = grad + wd p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *        p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 * AdamW: p *= 1 - lr wd first, then the same with g = grad.
 * p, m, v, grad are (n); grad read only. m and v start at 0 and carry the
 * moments between calls; t must be >= 1 (t counts the calls, PyTorch's
 * state["step"]). Per element the arithmetic is in double, rounded to float
 * when stored, so the step is deterministic and independent of n. With
 * weight_decay = 0 Adam and AdamW take bitwise identical steps. */
void ens_adam_step(float *p, float *m, float *v, const float *grad, size_t n, double lr, long t,
                   const ens_adam *o);

/* Clamps every element of g (n) to [-c, c]. */
void ens_clip_value(float *g, size_t n, float c);
/* Scales g (n) by c / ||g||_2 when the norm exceeds c. Returns the norm
 * before clipping (computed in double). */
double ens_clip_norm(float *g, size_t n, double c);
/* The L2 norm of g (n), summed in double in index order. */
double ens_grad_norm(const float *g, size_t n);
/* Scales g (n), whose norm is `norm` (> c > 0), by c / norm: the step of
 * ens_clip_norm once the norm is known. */
void ens_clip_scale(float *g, size_t n, double norm, double c);

/* Cycles with given ends at most (successive halving's rungs). */
#define ENS_SCHED_MAX_BOUNDS 64

typedef struct ens_schedule {
  ens_schedule_kind kind;
  double lr, lr_min;   /* peak and floor */
  double gamma;        /* step: decay factor */
  int step_size;       /* step: epochs between decays */
  int cycles;          /* cyclic: number of cosine cycles in the run */
  long steps_per_epoch;
  long total_steps;
  /* Cyclic with given cycle ends (0 = evenly spaced): cycle j ends at epoch
   * bound_epoch[j] (increasing, the last = the run's epochs). */
  int nbounds;
  int bound_epoch[ENS_SCHED_MAX_BOUNDS];
} ens_schedule;

/* Fills s from the [train] keys. Snapshot mode runs kind = cyclic with
 * cycles = snapshots; a halving search with [search] halving_schedule =
 * rungs runs the cosine as cycles that end at the rungs. */
void ens_schedule_from_config(ens_schedule *s, const ens_config *c, long steps_per_epoch);

/* Learning rate of step t (0-based):
 *  constant: lr;  step: lr gamma^floor(epoch / step_size);
 *  cosine: lr_min + (lr - lr_min)(1 + cos(pi t / T)) / 2  (Loshchilov & Hutter 2017);
 *  cyclic: the same within each cycle [b_j, b_{j+1}), b_j = round(j T / cycles)
 *  (cyclic cosine, Huang et al. 2017, eq. 2, with cycle boundaries that give
 *  exactly `cycles` cycles for any T >= cycles), or b_j = the end of the
 *  j-th given cycle (bound_epoch[j - 1] epochs; SGDR, Loshchilov & Hutter
 *  2017, with cycles of any lengths). */
double ens_schedule_lr(const ens_schedule *s, long t);
/* 1 when step t is the last step of a cycle (cyclic) or of the run. */
int ens_schedule_cycle_end(const ens_schedule *s, long t);

#endif
