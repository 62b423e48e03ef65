/* The gradient-norm record of one training run: the global norm of every
 * step's gradient before clipping, the clipping threshold in force (a fixed
 * [train] clip_norm, or AutoClip's percentile of the norms so far), and a
 * per-epoch summary (min, median, p90, p99, max, steps, clipped, c). */
#ifndef ENS_GRADNORM_H
#define ENS_GRADNORM_H

#include <stddef.h>

/* Columns of one summary row, in this order. */
enum {
  ENS_GN_MIN,
  ENS_GN_MEDIAN,
  ENS_GN_P90,
  ENS_GN_P99,
  ENS_GN_MAX,
  ENS_GN_STEPS,   /* steps in the epoch */
  ENS_GN_CLIPPED, /* steps whose gradient the norm clip scaled down */
  ENS_GN_CLIP,    /* c in force at the epoch's last step (0 = no norm clipping) */
  ENS_GN_COLS
};
/* "min,median,p90,p99,max,steps,clipped,clip_norm": the `columns` attribute. */
extern const char ens_gradnorm_columns[];

typedef struct ens_gradnorm {
  double *hist;     /* (cap) norm before clipping of steps 0 .. n-1 */
  long n, cap;
  double *lo, *hi;  /* (cap) AutoClip: max-heap of the lowest norms, min-heap of the rest */
  long nlo, nhi;
  double *scratch;  /* (cap) sorted copy of one epoch's norms */
  float *summary;   /* (epochs, ENS_GN_COLS); rows of unfinished epochs are NaN */
  int epochs;
  double fixed;     /* > 0: the fixed threshold; 0: none or auto */
  double pct;       /* > 0: AutoClip percentile in (0, 100] */
  long warmup;      /* > 0: the warm-up rule's steps (then c = factor x their median) */
  double warmup_lr; /* learning-rate factor during the warm-up */
  double factor;
  long epoch_start; /* index in hist of the current epoch's first step */
  long clipped;     /* steps of the current epoch that were clipped */
  double c_last;    /* threshold applied at the last step (0 = none) */
} ens_gradnorm;

/* Allocates a record for up to max_steps steps over `epochs` epochs (the
 * AutoClip heaps only when `autoclip`). Returns 0 or ENS_ENOMEM; free with
 * ens_gradnorm_free (also after a failure). */
int ens_gradnorm_create(ens_gradnorm *g, long max_steps, int epochs, int autoclip);
void ens_gradnorm_free(ens_gradnorm *g);

/* Empties the record. clip_norm: 0 off, > 0 fixed, ENS_AUTO automatic:
 * warmup > 0 selects the warm-up rule (warmup steps at warmup_lr times the
 * learning rate, unclipped; then c = factor x the median of their norms,
 * fixed), warmup = 0 AutoClip at percentile pct. */
void ens_gradnorm_reset(ens_gradnorm *g, double clip_norm, double pct, long warmup,
                        double warmup_lr, double factor);

/* The learning-rate factor of step `step` (warm-up: warmup_lr, else 1). */
double ens_gradnorm_lr_factor(const ens_gradnorm *g, long step);

/* Records the (finite) norm of the next step and returns the threshold to
 * clip it to, 0 for none. Warm-up rule: 0 during the warm-up; the step
 * after it fixes c. AutoClip (Seetharaman et al. 2020): c is the
 * pct-th percentile, with linear interpolation between order statistics
 * (numpy's default), of all norms recorded so far including this one; so
 * the first step is never clipped. Returns -1 when the record is full. */
double ens_gradnorm_push(ens_gradnorm *g, double norm);

/* Counts the last step as clipped. */
void ens_gradnorm_clipped(ens_gradnorm *g);

/* Fills summary row `epoch` from the steps since the last call (or reset)
 * and starts the next epoch. */
void ens_gradnorm_end_epoch(ens_gradnorm *g, int epoch);

/* Rebuilds the state after n steps from their norms (hist, e.g. read from a
 * checkpoint) with the current epoch started at step epoch_start and
 * `clipped` of its steps clipped; summary rows are the caller's to restore.
 * The AutoClip threshold depends only on the multiset of norms, so the
 * rebuilt record continues exactly as the original. Returns 0, or -1 when
 * the values are impossible (n > cap, a non-finite or negative norm). */
int ens_gradnorm_restore(ens_gradnorm *g, const double *hist, long n, long epoch_start,
                         long clipped);

/* The p-th percentile (0 <= p <= 100) of the ascending values x (n >= 1),
 * with linear interpolation between closest ranks. */
double ens_percentile_sorted(const double *x, long n, double p);

#endif
