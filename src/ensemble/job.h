/* Private state of one ensemble job on one rank, shared by the files of
 * src/ensemble/ (setup, training, collection, checkpoints). */
#ifndef ENS_ENSEMBLE_JOB_H
#define ENS_ENSEMBLE_JOB_H

#include <hdf5.h>
#include <mpi.h>
#include <stdint.h>

#include "core/comm.h"
#include "ens/config.h"
#include "ens/data.h"
#include "ens/ensemble.h"
#include "ens/model.h"
#include "ens/train.h"
#include "ensemble/fault.h"
#include "ensemble/lines.h"
#include "ensemble/node.h"
#include "ensemble/place.h"
#include "ensemble/progress.h"
#include "ensemble/task.h"
#include "ensemble/units.h"
#include "io/storage.h"

/* ENS_MEMBER_LOST only travels to rank 0 at collection: the rank that
 * trained the member could not rebuild it (fail_reason says why). */
/* ENS_MEMBER_STOPPED: ranked out by successive halving (halving.h); like a
 * failed member it has no weights or rows and is never combined. */
enum { ENS_MEMBER_DONE = 0, ENS_MEMBER_FAILED = 1, ENS_MEMBER_LOST = 2, ENS_MEMBER_STOPPED = 3 };

/* Metadata of a finished (or failed) member, sent with its packed buffer. */
typedef struct ens_member_meta {
  int32_t k;
  int32_t status;        /* ENS_MEMBER_DONE or ENS_MEMBER_FAILED */
  int32_t epochs;        /* epochs finished */
  int64_t steps;
  int32_t init_key, rng_key;
  int32_t fail_epoch;    /* failed: 1-based epoch and 0-based step of the failure */
  int64_t fail_step;
  int64_t nparams, nstats; /* of this member's network (head with a trunk) */
  double final_loss;
  double train_seconds;
  char fail_reason[160];
} ens_member_meta;

/* One input of `ens merge`: a result file holding members [first, first+count). */
typedef struct ens_part {
  char path[ENS_PATH_MAX];
  hid_t file;
  int first, count;
} ens_part;

/* The job's data on this rank (data.c): loaded, split, standardized, one
 * copy per node. */
typedef struct ens_jobdata {
  ens_shm shm;           /* the node's block: every array of sets, and train_t */
  int reads;             /* times this rank read the input file (1 on node rank 0, else 0) */
  ens_data sets;         /* borrowed from shm; x standardized; labels/targets in the
                            original units */
  float *mean, *std;     /* (dim) feature standardization, NULL when off */
  float *ymean, *ystd;   /* (T) target standardization (regression), NULL when off */
  float *train_t;        /* (n_train, T) training targets as the networks learn them
                            (in shm, or sets.train.t) */
  int classes, n_train, n_test, n_val, dim;
  int img[3];            /* image shape (C, H, W) of an input row, all 0 when flat */
  int64_t checksum;      /* adler32 of the loaded data, before standardization */
  int val_from_file;     /* the validation rows are the input's /val */
  const char *scored;    /* where the scored ("test") rows come from: "/test", or,
                            without /test in the input, "/val" or "val_fraction"
                            (scored.c) */
  /* Inputs of the trained networks: the data itself, or trunk features. */
  const float *ftrain, *ftest, *fval;
  int fd;
} ens_jobdata;

/* The shared frozen trunk (trunk.c). */
typedef struct ens_trunk_state {
  int layers;            /* 0 = no trunk */
  float *params, *stats; /* (nparams), (nstats) */
  size_t nparams, nstats;
  uint32_t checksum;     /* adler32 of the broadcast trunk (same on all ranks) */
  ens_shm shm;           /* the node's feature block: train, test, val rows */
  float *train, *test, *val; /* feature caches in shm */
  int feature_rows;      /* rows whose features this rank computed */
  double feature_seconds; /* and the time it took */
} ens_trunk_state;

/* What each rank reports about itself for /ranks (rank 0 keeps all). */
typedef struct ens_rank_info {
  int32_t node;          /* node index */
  int32_t data_reads;    /* times it read the input file */
  int32_t feature_rows;  /* trunk feature rows it computed */
  int64_t data_bytes;    /* its node's data block (same on every rank of the node) */
  int64_t feature_bytes; /* its node's trunk feature block */
  int64_t peak_rss;      /* bytes (getrusage ru_maxrss), filled at collection */
  double feature_seconds;
} ens_rank_info;

/* `ens merge`'s inputs (merge.c). */
typedef struct ens_merge_parts {
  ens_part *parts;       /* the input results, sorted by first member */
  int n;
  const char *trunk_result; /* take the trunk from this result file */
} ens_merge_parts;

/* Checkpoint state (checkpoint.c). */
typedef struct ens_ckpt_state {
  char dir[ENS_PATH_MAX + 16];
  ens_lock lock;   /* rank 0: the directory's lock while the job runs */
  int created_dir; /* rank 0: the job created dir (removed when empty) */
  char err[1024];  /* message of a failed write inside a training hook */
} ens_ckpt_state;

typedef struct ens_job {
  const ens_config *c;
  const ens_job_opts *o;
  MPI_Comm comm;
  int rank, size;
  ens_node node;         /* this rank's node: its ranks share the data */
  ens_rank_info *ranks;  /* rank 0: (size) every rank's report, else NULL */
  int first, last;       /* members [first, last) of this job */
  int shared_init;       /* members start from one initialization (key 0) */
  ens_task task;         /* what members predict; W floats per row */
  ens_jobdata data;
  ens_trunk_state trunk;
  ens_merge_parts merge;
  ens_ckpt_state ckpt;
  ens_arch arch;          /* the job's [model] architecture */
  ens_augment aug;        /* image augmentation of training rows (aug.c = 0: off) */
  float *aug_pad;         /* (dim) aug.pad: a raw 0 pixel after standardization */
  size_t nparams, nstats; /* of a member of the job's architecture */
  ens_trainer trainer;   /* the current unit's network (its member's architecture) */
  ens_config unit_cfg;   /* the current unit's member configuration */
  uint32_t init_key;
  int32_t *rows;         /* (n_train) bootstrap draw */
  float *pack;           /* one member, pack_cap floats */
  size_t pack_cap;
  float *eval_pred;      /* (max(n_test, n_val), W) per-epoch evaluation */
  const ens_trainer *eval_of; /* whose weights eval_pred holds, at step eval_step */
  long eval_step;
  float *scratch;        /* (n_test, W) MC passes */
  ens_member_meta *held; /* non-root: finished members (metadata; weights in checkpoints) */
  int nheld;
  double unit_t0;        /* wall time the current unit started (resume-adjusted) */
  ens_progress progress; /* ensemble-wide progress reports */
  ens_fault fault;       /* early-stop notices between ranks (fault.c) */
  ens_lines lines;       /* ranks' log lines, printed by rank 0 (lines.c) */
  int collect_next;      /* rank 0: index of the next member to collect */
  uint64_t result_bytes; /* rank 0: estimated size of the result (space.c) */
  hid_t file;            /* rank 0: the temporary result file */
  char tmp_path[ENS_PATH_MAX + 256];
  int complete;          /* guard.c: the result exists already, nothing to do */
  uint8_t *lost_ranks;   /* rank 0, collection: ranks that stopped sending (size) */
  ens_place place;       /* which rank trains which unit, and the record (place.c) */
  struct ens_halving *halving; /* successive halving's table (halving.c), NULL = off */
  struct ens_hyperdeep *hyperdeep; /* member -> configuration map (hyperdeep.c), NULL = off */
  int rung_restore;      /* a halving round after the first: units continue from their
                            checkpoints even without --resume */
  int last_status;       /* status of the member last stored on this rank */
} ens_job;

/* ---- before training (guard.c) ---- */
/* Every rank: [data] path (and [trunk] file) exist; else ENS_EIO with a
 * message that names the key, the path as written and the folder it was
 * resolved from. */
int ens_guard_inputs(const ens_config *c, char *err, size_t errlen);
/* Collective, after the data is loaded: rank 0 looks at [output] path and
 * the checkpoint folder, removes stale temporary files, and decides; every
 * rank gets the decision. Sets j->complete when a result of this
 * configuration and data exists (and o->force is not set). Returns 0 or
 * ENS_EINVAL with the reason and the ways on in err. */
int ens_guard_existing(ens_job *j, char *err, size_t errlen);
/* Every rank, after the data is loaded: keys that this data leaves unused
 * ([data] val_fraction with a /val in the input; [model] loss and [data]
 * standardize_y with class labels) are errors, since the configuration was
 * stored before the data was seen. Returns 0 or ENS_ECONFIG. */
int ens_guard_data_keys(const ens_job *j, char *err, size_t errlen);

/* Collective over the node (j->c, j->node set): node rank 0 loads, splits
 * and standardizes the data of job j into the node's shared block and
 * resolves the task; the other ranks map the block (data.c). The same
 * values on every rank. Errors (the same on every rank of the node) come
 * with a message. */
int ens_jobdata_load(ens_job *j, char *err, size_t errlen);
/* Collective over the node: frees the statistics and the node's block. */
void ens_jobdata_free(ens_jobdata *d);
/* An input without /test (scored.c): the validation rows become the scored
 * rows (sets.test, with sets.val empty) and d->scored says where they came
 * from. Refuses (ENS_ECONFIG, message in err) when there are no validation
 * rows, or when a rule fits on them (combine = select, calibrate, search),
 * which would score the ensemble on the rows it was fitted on. */
int ens_jobdata_score_val(ens_job *j, char *err, size_t errlen);
/* "test" or "val": the name of the scored split in messages. */
const char *ens_jobdata_scored_name(const ens_jobdata *d);

enum { ENS_SETUP_TRAIN = 1 }; /* ens_job_setup flags: rank 0 prints the layout */
int ens_job_setup(ens_job *j, const ens_config *c, const ens_job_opts *o, MPI_Comm comm,
                  int flags, char *err, size_t errlen);
/* Collective (node-shared blocks are freed with the node's ranks). */
void ens_job_free(ens_job *j);


/* ens_job_unit_of, ens_job_rank_of: units.h */

/* ---- members (member.c) ---- */
/* Member k's configuration (its drawn hyperparameters in a search) and
 * network architecture. */
void ens_member_config(const ens_job *j, int k, ens_config *mc);
void ens_member_arch(const ens_job *j, const ens_config *mc, ens_arch *a);
/* Shape of an input row: the image shape of the data, or its flat width. */
ens_shape ens_job_input_shape(const ens_job *j);
/* The job's architecture (j->arch, /model in the result): [model]'s, or with
 * the conv generator of a search member 0's (the same in every slice). */
void ens_job_arch(const ens_job *j, ens_arch *a);
/* Rank 0 at start, conv generator on: each member's drawn layer list. */
void ens_job_print_conv_draws(const ens_job *j);
/* A layer list must fit the data's rows (every member's, in a search):
 * returns 0 or ENS_ECONFIG with a message naming config_path:line (or the
 * --set layers_set that gave the list), the layer and the shapes. */
int ens_job_check_arch(const ens_job *j, const char *config_path, const char *layers_set,
                       char *err, size_t errlen);
/* Parameters and batch-norm statistics of member k's network on a trunk of
 * trunk_layers blocks (its head; the whole network when 0). */
void ens_member_sizes(const ens_job *j, int k, int trunk_layers, size_t *np, size_t *ns);
/* Member k's network on the job's trunk, as its trainer builds it (same
 * architecture and batch size, so the same batches). */
int ens_member_model(const ens_job *j, int k, ens_model *m);
/* Floats of a member's packed buffer: params, stats, test rows, val rows,
 * (bootstrap) train rows, the two per-epoch curves, (mc_samples) MC test
 * rows, the per-epoch gradient-norm summary. 0 for a failed member. */
size_t ens_member_packed_len(const ens_job *j, const ens_member_meta *meta);
/* Offsets into a packed buffer. */
typedef struct ens_pack_view {
  const float *params, *stats, *test, *val, *train, *curve_loss, *curve_eval, *mc;
  const float *grad_norm; /* (epochs, ENS_GN_COLS) gradient-norm summary, after the rest */
} ens_pack_view;
void ens_member_view(const ens_job *j, const ens_member_meta *meta, const float *packed,
                     ens_pack_view *v);
/* Grows j->pack to hold n floats. */
int ens_job_pack_reserve(ens_job *j, size_t n);

/* rows (n) = n draws with replacement from [0, n), keyed by (seed, member). */
void ens_job_bootstrap_rows(int32_t *rows, int n, uint64_t seed, uint32_t member);


/* Fills j->pack from model m (the member's network) and its curves (epochs
 * floats each): weights, curves and, when rows is set, the prediction rows
 * (test, val, bootstrap train, MC), computed in batches of m's batch size.
 * eval_rows, when not NULL, are m's rows of the evaluated split (val when
 * the job has validation rows, else test), already computed by
 * ens_job_eval from the same weights: copied, not computed again. */
int ens_job_pack_model(ens_job *j, ens_model *m, const float *curve_loss, const float *curve_eval,
                       const ens_member_meta *meta, int rows, const float *eval_rows);

/* Copies the gradient-norm summary gn (epochs x ENS_GN_COLS floats) into
 * j->pack, filled by ens_job_pack_model for the same member. */
void ens_job_pack_grad_norm(ens_job *j, const ens_member_meta *meta, const float *gn);




/* Per-epoch evaluation of t's network: accuracy (classify) or RMSE
 * (regress) on the validation rows when there are any, else the test rows. */
double ens_job_eval(ens_job *j, ens_trainer *t, double *nll);

/* A member's metadata as attributes of object obj of file f (result files
 * and member checkpoints share the names). Return 0 or ENS_EHDF5/ENS_EFORMAT. */
int ens_job_meta_write(hid_t f, const char *obj, const ens_member_meta *meta);
int ens_job_meta_read(hid_t f, const char *obj, int k, ens_member_meta *meta);

/* The merge part holding member k. */
const ens_part *ens_job_part_of(const ens_job *j, int k);
/* The configuration text that checkpoints and merge parts must share:
 * everything but [output] and the member slice. Malloc'd. */
char *ens_job_identity_text(const ens_config *c);
/* The keys in which two identity texts differ, for messages: "[train] lr =
 * 0.1 (this job) vs 0.05 (the checkpoint); ..." (malloc'd), or NULL when a
 * text does not load (`name` names `saved` in that case). */
char *ens_job_identity_diff(const char *saved, const char *ident, const char *name);

/* Checkpoints, in j->ckpt_dir. A unit's state after an epoch (every
 * checkpoint_every epochs), on a stop (then returns ENS_ESTOPPED), and when
 * it is done; every finished member's weights. */
int ens_job_checkpoint_epoch(ens_job *j, ens_trainer *t, int unit, int epoch);
int ens_job_checkpoint_stop(ens_job *j, ens_trainer *t, int unit);
int ens_job_checkpoint_done(ens_job *j, ens_trainer *t, int unit);
int ens_job_checkpoint_member(ens_job *j, const ens_member_meta *meta, const float *packed);
/* With --resume: restores a unit (members first_k .. first_k+nmembers-1)
 * from its checkpoint, re-storing the members it had emitted; *done = 1 when
 * it had finished. Without a checkpoint the unit starts fresh. */
int ens_job_restore_unit(ens_job *j, ens_trainer *t, int unit, int first_k, int nmembers,
                         int *done, char *err, size_t errlen);
/* Rebuilds finished member meta->k in j->pack from its checkpoint
 * member_<k>.h5: weights and curves read back, prediction rows recomputed
 * exactly as when it finished (same network, batches and threads). Returns
 * 0, or an error with a message naming the file. */
int ens_job_pack_checkpoint(ens_job *j, const ens_member_meta *meta, char *err, size_t errlen);
/* After a published result: removes this rank's checkpoint files (collective). */
void ens_job_checkpoint_cleanup(ens_job *j, const int *units, int nunits);
/* Rank 0: creates the checkpoint directory when needed and takes its lock
 * (ENS_ELOCKED when another job holds it). */
int ens_job_checkpoint_lock(ens_job *j, char *err, size_t errlen);
/* Rank 0: releases the lock and removes the directory when the job created
 * it and it is empty. */
void ens_job_checkpoint_unlock(ens_job *j);

/* Trunk pretraining's position, saved with its state in
 * <checkpoint_dir>/pretrain.h5: the next step runs batch `step_in_epoch` of
 * epoch `epoch`; `step` counts steps since the start; loss_sum/loss_n are
 * the epoch's partial training loss (all ranks). */
typedef struct ens_pretrain_pos {
  int epoch;
  long step_in_epoch, step;
  double loss_sum, loss_n;
} ens_pretrain_pos;
/* Rank 0: writes the pretraining state (t's weights, optimizer state and
 * rank 0's batch-norm statistics) and position. 0 or an ENS_E* code with err. */
int ens_job_pretrain_save(ens_job *j, const ens_trainer *t, const ens_pretrain_pos *pos, char *err,
                          size_t errlen);
/* Collective, with --resume: restores the pretraining state of the same job
 * on as many ranks into t (every rank) and *pos; returns 1 when restored, 0
 * when there is nothing to restore (a damaged or foreign file is named in a
 * warning and pretraining starts from scratch). */
int ens_job_pretrain_restore(ens_job *j, ens_trainer *t, ens_pretrain_pos *pos);
/* Rank 0: removes pretrain.h5 (pretraining finished and trunk.h5 saved). */
void ens_job_pretrain_discard(ens_job *j);

/* ---- storage (space.c) ---- */
/* Rank 0, before training: the output directory exists and is writable,
 * the checkpoint directory is locked, and the free space can hold the
 * result and the checkpoints (estimated from parameters, members and rows;
 * an upper bound). Sets j->result_bytes. Other ranks check that the
 * checkpoint directory is writable from where they run. */
int ens_job_check_storage(ens_job *j, char *err, size_t errlen);

#endif
