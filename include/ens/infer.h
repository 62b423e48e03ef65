/* libens inference API: apply a trained ensemble (an `ens train` result file)
 * to rows of raw features from C, C++, Fortran (ISO_C_BINDING) or Python
 * (ctypes). `ens predict` is a caller of this API, so both give the same bits.
 *
 * A model handle (ens_infer) is read-only after ens_infer_open and may be
 * shared by any number of threads. Each thread predicts through its own
 * workspace (ens_infer_ws), created once: a call with a workspace allocates
 * nothing (MC-dropout buffers are allocated by the first MC call). Nothing
 * here initializes or needs MPI. Functions return 0 or a negative ENS_E* code
 * (ens/error.h) and never exit; ens_infer_errmsg() gives the calling thread's
 * message for its last failed call.
 *
 * Minimal use:
 *   ens_infer *m;  ens_infer_ws *ws;
 *   if (ens_infer_open(&m, "result.h5") || ens_infer_ws_create(&ws, m, 0, 0))
 *     fprintf(stderr, "%s\n", ens_infer_errmsg());
 *   float probs[n * C]; int32_t pred[n];
 *   ens_infer_out out = {.probs = probs, .pred = pred};
 *   ens_infer_predict(m, ws, NULL, x, n, ens_infer_inputs(m), &out);
 *   ens_infer_ws_free(ws); ens_infer_close(m);
 * Full documentation: docs/LIBRARY.md. */
#ifndef ENS_INFER_H
#define ENS_INFER_H

#include <stdint.h>

#include "ens/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the library (and of the ens that wrote this header). */
const char *ens_infer_version(void);

/* Tasks (ens_infer_task). */
enum { ENS_INFER_CLASSIFY = 0, ENS_INFER_REGRESS = 1 };

/* Combine rules. ENS_RULE_DEFAULT is the rule the result was trained with.
 * average: mean of member probabilities (classify) or the moment-matched
 *   mixture of member Gaussians (regress);
 * vote: majority vote, probabilities are vote shares (classify only);
 * params: the parameter-averaged network (results of combine = params);
 * select: greedy selection weights (results of combine = select). */
enum {
  ENS_RULE_DEFAULT = -1,
  ENS_RULE_AVERAGE = 0,
  ENS_RULE_VOTE = 1,
  ENS_RULE_PARAMS = 2,
  ENS_RULE_SELECT = 3,
  ENS_RULE_COUNT = 4
};

typedef struct ens_infer ens_infer;       /* a loaded result (opaque, shareable) */
typedef struct ens_infer_ws ens_infer_ws; /* per-thread scratch memory (opaque) */

/* Options of a prediction; NULL means ENS_INFER_OPTS_DEFAULT. */
typedef struct ens_infer_opts {
  int rule;       /* ENS_RULE_*; default ENS_RULE_DEFAULT */
  int calibrate;  /* 1 (default): apply the result's stored calibration (temperature,
                     or variance scale) when `rule` is the rule it was fitted for */
  int mc_samples; /* 0 (default), or T > 0: each member is the average of T MC-dropout
                     passes (masks keyed by the result's seed, member and row index
                     within the call, so reproducible); not with ENS_RULE_PARAMS */
} ens_infer_opts;
#define ENS_INFER_OPTS_DEFAULT                                                                     \
  { ENS_RULE_DEFAULT, 1, 0 }

/* Where a prediction of n rows goes. Every pointer may be NULL (not wanted);
 * the caller owns the buffers. Shapes: C classes, T targets, row-major. */
typedef struct ens_infer_out {
  float *probs;         /* classify: (n, C) probabilities (vote: vote shares) */
  int32_t *pred;        /* classify: (n) predicted class */
  float *uncertainty;   /* classify: (n, 3) predictive entropy, expected member entropy,
                           mutual information (nats) */
  float *mean;          /* regress: (n, T) predictive mean, original units of y */
  float *var;           /* regress: (n, T) predictive variance (aleatoric + epistemic) */
  float *var_aleatoric; /* regress: (n, T) mean of the member variances */
  float *var_epistemic; /* regress: (n, T) variance of the member means */
} ens_infer_out;

/* Opens result file `path` (written by `ens train` or `ens merge`), checks
 * it and loads the standardization, the trunk and every finished member (and
 * the parameter-averaged network when stored). On success *model is a new
 * handle (free it with ens_infer_close); on failure *model is NULL and the
 * code is ENS_EIO (not readable as HDF5), ENS_EFORMAT (not an ens result, a
 * dataset missing or of the wrong size), ENS_EINVAL or ENS_ENOMEM. */
int ens_infer_open(ens_infer **model, const char *path);
/* Frees a handle (NULL is ignored). No workspace of it may be in use. */
void ens_infer_close(ens_infer *model);

/* Queries (constant for the life of the handle). */
int ens_infer_task(const ens_infer *model);   /* ENS_INFER_CLASSIFY or ENS_INFER_REGRESS */
int ens_infer_inputs(const ens_infer *model); /* raw features per row */
/* Shape of one input row: writes up to maxdims extents to dims and returns
 * the rank: 1 for feature vectors (dims[0] = ens_infer_inputs), 3 for a
 * model trained on images (C, H, W; rows are passed flat in NCHW order). */
int ens_infer_input_shape(const ens_infer *model, int *dims, int maxdims);
int ens_infer_classes(const ens_infer *model);        /* C (classify), 0 for regression */
int ens_infer_targets(const ens_infer *model);        /* T (regress), 0 for classification */
int ens_infer_members(const ens_infer *model);        /* finished members loaded */
int ens_infer_members_total(const ens_infer *model);  /* members of the whole ensemble
                                                         (more for a partial result) */
int ens_infer_first_member(const ens_infer *model);   /* index of the first stored member */
int ens_infer_stored_members(const ens_infer *model); /* members stored, finished or not */
/* Bit mask of the available rules: bit r set when rule r can be applied. */
int ens_infer_rules(const ens_infer *model);
/* The rule the result was trained with (ENS_RULE_AVERAGE..SELECT). */
int ens_infer_default_rule(const ens_infer *model);
/* Members that rule `rule` combines (select: those picked at least once;
 * params: 1), or a negative ENS_E* code when the rule is not available. */
int ens_infer_members_used(const ens_infer *model, int rule);
/* Stored calibration: the temperature (classify) or variance scale (regress)
 * fitted for the default rule, or 0 when the result has none. */
double ens_infer_calibration(const ens_infer *model);
/* Name of class c from `ens import csv`, or NULL when the data had none. */
const char *ens_infer_class_name(const ens_infer *model, int c);
/* Name of a rule ("average", ...) or NULL; and the inverse (-1: unknown). */
const char *ens_rule_name(int rule);
int ens_rule_parse(const char *name);

/* Checks options against a model: 0, or ENS_EINVAL with a message (rule not
 * available for this result, vote on regression, MC with params ...). */
int ens_infer_check(const ens_infer *model, const ens_infer_opts *opts);
/* 1 when a prediction with these options applies the stored calibration. */
int ens_infer_calibrated(const ens_infer *model, const ens_infer_opts *opts);

/* Creates a workspace for predictions of up to rows_max rows per pass
 * (rows_max <= 0: a default that is a multiple of every member's training
 * batch; larger calls are processed in passes of rows_max rows). One
 * workspace per thread; it belongs to `model`.
 * batch = 0 (the exact path): every network runs in batches of its training
 * batch size, which gives `ens predict`'s bits (see ens_infer_predict).
 * batch > 0 (the fast path): every MLP network (dense, batch norm, ReLU,
 * dropout) runs compiled: batch norm, and the input standardization where
 * that is numerically safe, folded into the weights once per handle (by the
 * first such workspace: a second copy of those weights), register-tiled
 * kernels with bias and ReLU fused, and single rows skipping their zero
 * inputs. A row's result then does not depend on the batch, on the other
 * rows of the call, on the thread count or on the x86-64 CPU, and agrees
 * with `ens predict` to float rounding (within 1e-5), not bit for bit. Other
 * networks (conv, weight normalization) and MC-dropout passes run as with
 * batch = 0 in batches of min(batch, rows_max) rows.
 * Returns 0 or ENS_ENOMEM. */
int ens_infer_ws_create(ens_infer_ws **ws, const ens_infer *model, int rows_max, int batch);
void ens_infer_ws_free(ens_infer_ws *ws);

/* Predicts n rows x (n, d) of raw features (d must equal ens_infer_inputs;
 * the result's standardization is applied inside) into out. ws may be NULL:
 * the call then creates and frees its own workspace. Rows are processed in
 * the batches of each member's training batch size from the first row of the
 * call (of each pass of rows_max rows), which is what makes the bits
 * reproducible: OpenBLAS sgemm results depend on the batch size and on its
 * thread count (OPENBLAS_NUM_THREADS). Errors: ENS_ESHAPE (d wrong, n < 1),
 * ENS_EINVAL (x or out NULL, a non-finite input value, options not
 * available), ENS_ENOMEM. */
int ens_infer_predict(const ens_infer *model, ens_infer_ws *ws, const ens_infer_opts *opts,
                      const float *x, int n, int d, ens_infer_out *out);

/* Message of the calling thread's last failed ens_infer_* call ("" when
 * none). Thread-local storage: valid until this thread's next failing call. */
const char *ens_infer_errmsg(void);

#ifdef __cplusplus
}
#endif

#endif
