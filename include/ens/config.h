/* Job configuration: the INI file of DESIGN.md plus --set overrides.
 * Every key has a default; unknown keys and bad values are errors that name
 * file:line (or the --set argument) and what was expected. */
#ifndef ENS_CONFIG_H
#define ENS_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ENS_MAX_HIDDEN 16
#define ENS_PATH_MAX 1024
#define ENS_SEARCH_MAX 512 /* characters of one [search] value */
#define ENS_LAYERS_MAX 2048 /* characters of a layer list */
/* A number key given as "auto" ([train] clip_norm = auto). */
#define ENS_AUTO (-1.0)

typedef enum {
  ENS_INIT_NORMAL,
  ENS_INIT_XAVIER,
  ENS_INIT_HE,
  ENS_INIT_ORTHOGONAL,
  ENS_INIT_TORCH
} ens_init_kind;
typedef enum { ENS_SCHED_CONSTANT, ENS_SCHED_STEP, ENS_SCHED_COSINE, ENS_SCHED_CYCLIC } ens_schedule_kind;
typedef enum { ENS_MODE_SEED, ENS_MODE_BOOTSTRAP, ENS_MODE_SNAPSHOT, ENS_MODE_SEARCH } ens_mode_kind;
typedef enum {
  ENS_COMBINE_AVERAGE,
  ENS_COMBINE_VOTE,
  ENS_COMBINE_PARAMS,
  ENS_COMBINE_SELECT
} ens_combine_kind;
/* What the members predict: class probabilities or real-valued targets.
 * AUTO: integer labels mean classify, floating-point targets regress. */
typedef enum { ENS_TASK_AUTO, ENS_TASK_CLASSIFY, ENS_TASK_REGRESS } ens_task_kind;
/* Regression loss: Gaussian NLL of a mean and variance head, or MSE of a
 * mean head. */
typedef enum { ENS_LOSS_GAUSSIAN, ENS_LOSS_MSE } ens_loss_kind;
typedef enum { ENS_OPT_SGD, ENS_OPT_ADAM, ENS_OPT_ADAMW } ens_optimizer_kind;
typedef enum { ENS_CALIBRATE_NONE, ENS_CALIBRATE_TEMPERATURE } ens_calibrate_kind;
typedef enum { ENS_TRUNK_NONE, ENS_TRUNK_FILE, ENS_TRUNK_PRETRAIN } ens_trunk_source;
/* [search] halving_schedule: the cosine schedule spans [train] epochs
 * (whole), or restarts at every rung and ends at the rung (rungs). */
typedef enum { ENS_HALVING_SCHED_WHOLE, ENS_HALVING_SCHED_RUNGS } ens_halving_schedule_kind;
typedef enum { ENS_STD_FEATURE, ENS_STD_CHANNEL, ENS_STD_GLOBAL } ens_standardize_kind;
/* share_init: whether all members start from the same initial weights. AUTO
 * means "yes for combine = params, no otherwise". */
typedef enum { ENS_SHARE_AUTO, ENS_SHARE_YES, ENS_SHARE_NO } ens_share_kind;
/* [output] placement: values of ens_place_policy (src/ensemble/place.h). */
typedef enum { ENS_PLACEMENT_QUEUE, ENS_PLACEMENT_COST, ENS_PLACEMENT_MODULO } ens_placement_kind;

typedef struct ens_config {
  /* [data] */
  char data_path[ENS_PATH_MAX]; /* input HDF5 file; default "data.h5" */
  int standardize;              /* bool; default 1 */
  int standardize_y;            /* bool: regression targets too; default 1 */
  ens_standardize_kind standardize_by; /* statistics per feature (pixel), per
                                          channel of an image, or global */
  double val_fraction;          /* in [0,1); default 0 */
  int augment_crop;             /* image rows: random crop with this padding, 0 = off */
  int augment_flip;             /* bool: image rows: random horizontal flip; default 0 */
  /* [model] */
  ens_task_kind task;           /* default auto */
  ens_loss_kind loss;           /* regression loss; default gaussian */
  int n_hidden;                 /* number of hidden layers; default 2 */
  int hidden[ENS_MAX_HIDDEN];   /* widths; default 512,256 */
  int batchnorm;                /* bool; default 1 */
  int weightnorm;               /* bool: weight normalization of dense/conv layers; default 0 */
  int weightnorm_init;          /* 0 = g = ||v|| (function unchanged), 1 = data-dependent; default 0 */
  double dropout;               /* drop probability in [0,1); default 0 */
  ens_init_kind init;           /* default he */
  double init_std;              /* std for init = normal; default 0.01 */
  double bias_init;             /* constant bias; default 0 */
  char model_layers[ENS_LAYERS_MAX]; /* layer list (replaces hidden, batchnorm,
                                        dropout when set); default "" */
  /* [train] */
  int epochs;                   /* default 10 */
  ens_optimizer_kind optimizer; /* default sgd */
  double beta1, beta2, eps;     /* Adam; defaults 0.9, 0.999, 1e-8 */
  int batch;                    /* default 128 */
  double lr;                    /* default 0.05 */
  double lr_min;                /* floor of cosine/cyclic; default 0 */
  double momentum;              /* default 0.9 */
  int nesterov;                 /* bool; default 1 */
  double weight_decay;          /* default 5e-4 */
  ens_schedule_kind schedule;   /* default cosine */
  int step_size;                /* step schedule: epochs between decays; default 30 */
  double step_gamma;            /* step schedule: factor; default 0.1 */
  int cycles;                   /* cyclic schedule: restarts in the run; default 4 */
  double clip_value;            /* per-element clip, 0 = off; default 0 */
  double clip_norm;             /* global-norm clip, 0 = off, ENS_AUTO = AutoClip; default 0 */
  int clip_warmup;              /* clip_norm = auto: warm-up steps (0 = AutoClip); default 100 */
  double clip_warmup_lr;        /* lr factor during the warm-up; default 0.1 */
  double clip_factor;           /* c = factor x median warm-up norm; default 0.5 */
  double clip_percentile;       /* AutoClip: percentile of the norms so far; default 10 */
  int threads;                  /* OpenBLAS threads per rank; default 1 */
  double bn_momentum;           /* running-stat momentum; default 0.1 */
  /* [ensemble] */
  int members;                  /* default 1 */
  ens_mode_kind mode;           /* default seed */
  int snapshots;                /* members per snapshot chain; default 1 */
  ens_combine_kind combine;     /* default average */
  uint64_t seed;                /* default 42 */
  ens_share_kind share_init;    /* default auto */
  int first_member;             /* first member index this job trains; default 0 */
  int count;                    /* members this job trains, 0 = all from first_member; default 0 */
  int min_members;              /* fewer finished members fail the run; default 1 */
  int select_max;               /* combine = select: most picks; default 50 */
  int select_bags;              /* combine = select: bagged selections, 0 = none; default 20 */
  double select_fraction;       /* combine = select: members per bag; default 0.5 */
  int select_check;             /* bool: held-out check against the average; default 1 */
  ens_calibrate_kind calibrate; /* default none */
  int mc_samples;               /* MC-dropout passes reported by train, 0 = off; default 0 */
  /* [search] (mode = search): ranges member k draws from, as text; an empty
   * value means "not drawn" (the [model]/[train] value is used). Parsed by
   * ens_search_parse (ens/search.h). */
  char search_lr[ENS_SEARCH_MAX];
  char search_weight_decay[ENS_SEARCH_MAX];
  char search_momentum[ENS_SEARCH_MAX];
  char search_dropout[ENS_SEARCH_MAX];
  char search_batch[ENS_SEARCH_MAX];
  char search_hidden[ENS_SEARCH_MAX];
  char search_init[ENS_SEARCH_MAX];
  char search_batchnorm[ENS_SEARCH_MAX];
  char search_layers[ENS_SEARCH_MAX]; /* layer lists separated by '|'; default "" */
  /* [search] conv architecture generator (ens/search.h): off while
   * conv_blocks is empty (the default). */
  char search_conv_blocks[ENS_SEARCH_MAX];
  char search_conv_width[ENS_SEARCH_MAX];
  char search_conv_grow[ENS_SEARCH_MAX];
  char search_conv_kernel[ENS_SEARCH_MAX];
  char search_conv_per_block[ENS_SEARCH_MAX];
  char search_conv_bn[ENS_SEARCH_MAX];
  char search_pool[ENS_SEARCH_MAX];
  char search_conv_end[ENS_SEARCH_MAX];
  char search_dense[ENS_SEARCH_MAX];
  /* [search] budget (ens/halving.h): successive halving. */
  int search_halving;             /* bool: successive halving of the members; default 0 */
  int search_halving_min_epochs;  /* epochs of the first rung; default 1 */
  int search_halving_factor;      /* eta: rungs grow and members shrink by it; default 3 */
  ens_halving_schedule_kind search_halving_schedule; /* whole (default) or rungs */
  /* [search] hyper-deep (ens/hyperdeep.h). */
  int search_hyper_deep;          /* new seeds per selected configuration; default 0 (off) */
  int search_hyper_deep_configs;  /* selected configurations retrained; default 1 */
  /* [trunk] */
  ens_trunk_source trunk_source;  /* default none */
  char trunk_file[ENS_PATH_MAX];  /* default "" */
  char trunk_dataset[256];        /* which params in trunk_file: "trunk" (default),
                                     "ensemble" or "member:<k>" */
  int trunk_layers;               /* default 0 */
  char trunk_layers_text[ENS_LAYERS_MAX]; /* [trunk] layers as written: a block count or a
                                     layer list (folded into model_layers at load) */
  int pretrain_epochs;            /* default 5 */
  int pretrain_batch;             /* global pretraining batch, 0 = [train] batch; default 0 */
  double pretrain_lr;             /* pretraining peak lr, 0 = [train] lr; default 0 */
  int check_sync;                 /* bool: pretrain checks weights agree every step; default 0 */
  /* [output] */
  char output_path[ENS_PATH_MAX];     /* default "result.h5" */
  char checkpoint_dir[ENS_PATH_MAX];  /* default "" = <output.path>.ckpt */
  int checkpoint_every;               /* epochs; 0 = only on a signal; default 1 */
  double progress_interval;           /* seconds; default 10 */
  int verbose;                        /* per-epoch lines; default 1 */
  ens_placement_kind placement;       /* which rank trains which unit; default queue */
} ens_config;

/* Line of `path` on which [section] key is set, or 0 (not in the file, or
 * the file cannot be read): for messages about a value that only data can
 * prove wrong (src/core/config_where.c). */
int ens_config_key_line(const char *path, const char *section, const char *key);
/* The prefix of a message about [section] key: "path:line: " when the key is
 * set in the file, else "" (buf gets it either way). */
void ens_config_key_where(char *buf, size_t len, const char *path, const char *section,
                          const char *key);

/* Fills c with every default. */
void ens_config_defaults(ens_config *c);

/* Loads `path` on top of the defaults, then applies `nsets` overrides of the
 * form "section.key=value" in order. ';' and '#' start comments (at the start
 * of a line or after a blank); a key given twice in the file is an error
 * naming both lines; an unknown key or section suggests the nearest known
 * name. Returns 0, or ENS_ECONFIG/ENS_EIO with a message in err (e.g.
 * "job.ini:12: [train] lr: expected a number > 0, got 'abc'" or "--set
 * train.foo=1: unknown key 'foo' in section [train] (...)"). */
int ens_config_load(ens_config *c, const char *path, const char *const *sets, int nsets,
                    char *err, size_t errlen);

/* Loads INI text (e.g. the `config` attribute of a result file) on top of
 * the defaults; `name` stands for the text in messages ("a.h5:/config"). */
int ens_config_load_text(ens_config *c, const char *name, const char *text, char *err,
                         size_t errlen);

/* Applies one "section.key=value" assignment (as --set does). */
int ens_config_set(ens_config *c, const char *assignment, char *err, size_t errlen);

/* Checks cross-key constraints (e.g. members divisible by snapshots, trunk
 * layers < hidden layers). Returns 0 or ENS_ECONFIG with a message. */
int ens_config_validate(const ens_config *c, char *err, size_t errlen);

/* Writes the complete effective configuration as INI text (every key, after
 * overrides) into a malloc'd string the caller frees; NULL on no memory.
 * Loading that text again yields an identical ens_config. */
char *ens_config_to_ini(const ens_config *c);

/* Prints every section and key with its default and a one-line description. */
void ens_config_print_keys(FILE *out);

/* One key, named by section and key as in the INI file. key_text writes
 * its value as ens_config_to_ini does (0, or ENS_ENOTFOUND for an unknown
 * key); key_changed is 1 when the value differs from the default; key_reset
 * sets the default again (0 or ENS_ENOTFOUND). */
int ens_config_key_text(const ens_config *c, const char *section, const char *key, char *buf,
                        size_t len);
int ens_config_key_changed(const ens_config *c, const char *section, const char *key);
int ens_config_key_reset(ens_config *c, const char *section, const char *key);

/* Key-by-key comparison (src/core/config_diff.c). Calls fn (when not NULL)
 * for every key whose value differs between a and b, in table order, with
 * both values as INI text; skips the [output] keys when skip_output is set.
 * Returns the number of differing keys, or ENS_ENOMEM. */
typedef void (*ens_config_diff_fn)(void *ctx, const char *section, const char *key,
                                   const char *a, const char *b);
int ens_config_diff(const ens_config *a, const ens_config *b, int skip_output,
                    ens_config_diff_fn fn, void *ctx);
/* The same as one line for messages: "[train] lr = 0.05 (NAME_A) vs 0.1
 * (NAME_B); [model] hidden = ..." (at most 8 keys, then "and N more").
 * Malloc'd (caller frees); NULL on no memory. "" when nothing differs. */
char *ens_config_diff_text(const ens_config *a, const ens_config *b, int skip_output,
                           const char *name_a, const char *name_b);

/* Effective configuration (src/core/effective.c): what a run really uses.
 * Rejects keys that contradict the mode (e.g. [train] schedule = step with
 * mode = snapshot, whose chains always run a cyclic schedule) with
 * ENS_ECONFIG and a message; sets keys whose value the run derives
 * (snapshot mode: schedule = cyclic, cycles = snapshots); and puts keys that
 * the configuration leaves unused (e.g. step_size with schedule = cosine)
 * back to their defaults, calling warn once per such key with a message, so
 * that the configuration stored in a result never holds a value that was
 * not used. Returns 0 or ENS_ECONFIG. */
typedef void (*ens_config_warn_fn)(void *ctx, const char *message);
int ens_config_effective(ens_config *c, ens_config_warn_fn warn, void *ctx, char *err,
                         size_t errlen);

/* Names of enum values, for messages and the result file. */
const char *ens_init_name(ens_init_kind k);
const char *ens_schedule_name(ens_schedule_kind k);
const char *ens_mode_name(ens_mode_kind k);
const char *ens_combine_name(ens_combine_kind k);
const char *ens_trunk_source_name(ens_trunk_source k);
const char *ens_task_name(ens_task_kind k);
const char *ens_loss_name(ens_loss_kind k);
const char *ens_optimizer_name(ens_optimizer_kind k);
const char *ens_calibrate_name(ens_calibrate_kind k);

#endif
