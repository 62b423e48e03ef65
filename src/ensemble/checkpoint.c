/* Checkpoints: each unit (member or snapshot chain) of a job keeps its full
 * training state in <checkpoint_dir>/unit_<u>.h5, and every finished member
 * its weights in member_<k>.h5. Files are written to a temporary name,
 * fsync'ed and renamed, so a crash never leaves a half-written checkpoint.
 * The loop's position (epoch, batch, step) is enough to regenerate the data
 * order and dropout masks, so a resumed run is bit-identical. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ens/error.h"
#include "ensemble/job.h"
#include "ensemble/store.h"
#include "io/fsutil.h"
#include "io/h5util.h"
#include "io/storage.h"

static int enabled(const ens_job *j) { return j->ckpt.dir[0] != '\0'; }

/* The parts of the configuration a checkpoint must agree with: everything
 * except [output] and the progress settings. Malloc'd; caller frees. */
char *ens_job_identity_text(const ens_config *c) {
  ens_config k = *c;
  k.output_path[0] = '\0';
  k.checkpoint_dir[0] = '\0';
  k.checkpoint_every = 0;
  k.progress_interval = 1.0;
  k.verbose = 0;
  k.placement = ENS_PLACEMENT_QUEUE;
  k.first_member = 0;
  k.count = 0;
  return ens_config_to_ini(&k);
}

char *ens_job_identity_diff(const char *saved, const char *ident, const char *name) {
  ens_config a, b;
  char msg[512];
  if (ens_config_load_text(&a, name, saved, msg, sizeof(msg)) ||
      ens_config_load_text(&b, "this job", ident, msg, sizeof(msg)))
    return NULL;
  return ens_config_diff_text(&b, &a, 1, "this job", "the checkpoint");
}

static void unit_path(const ens_job *j, int unit, char *buf, size_t len) {
  snprintf(buf, len, "%s/unit_%d.h5", j->ckpt.dir, unit);
}

static void member_path(const ens_job *j, int k, char *buf, size_t len) {
  snprintf(buf, len, "%s/member_%d.h5", j->ckpt.dir, k);
}

/* A checkpoint is built in memory and published by ens_storage_h5_publish:
 * the HDF5 library never writes to a disk that may fill up, and a failed
 * write names the file and the system's reason. */
static hid_t begin_write(const ens_job *j, const char *path) {
  if (ens_mkdir_p(j->ckpt.dir) != 0)
    return -1;
  return ens_storage_h5_memory(path);
}

/* Publishes f at path (`<path>.tmp`, fsync, rename) unless building it
 * failed (ret); the message goes to j->ckpt.err. */
static int end_write(ens_job *j, hid_t f, int ret, const char *path) {
  char tmp[ENS_PATH_MAX + 80];
  if (ret) {
    H5Fclose(f);
    ens_errorf(j->ckpt.err, sizeof(j->ckpt.err), "cannot build checkpoint %s in memory: %s", path,
               ens_strerror(ret));
    return ret;
  }
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  return ens_storage_h5_publish(f, path, tmp, "cannot write checkpoint", j->ckpt.err,
                                sizeof(j->ckpt.err));
}

static int cannot_begin(ens_job *j, const char *path) {
  ens_errorf(j->ckpt.err, sizeof(j->ckpt.err), "cannot write checkpoint %s: %s", path,
             ens_mkdir_p(j->ckpt.dir) != 0 ? strerror(errno) : "HDF5 library error");
  return ENS_EWRITE;
}

/* The trainer's state every checkpoint holds (weights, optimizer moments,
 * batch-norm statistics) and the job's identity. */
static int write_trainer_state(const ens_job *j, hid_t f, const ens_trainer *t) {
  const ens_model *m = &t->model;
  hsize_t np = m->nparams, ns = m->nstats;
  char *ident = ens_job_identity_text(j->c);
  int ret = ident ? 0 : ENS_ENOMEM;
  ret |= ens_h5_write(f, "params", H5T_NATIVE_FLOAT, 1, &np, m->params, 0);
  ret |= ens_h5_write(f, "velocity", H5T_NATIVE_FLOAT, 1, &np, t->velocity, 0);
  if (t->moment2)
    ret |= ens_h5_write(f, "moment2", H5T_NATIVE_FLOAT, 1, &np, t->moment2, 0);
  ret |= ens_h5_write(f, "bn_stats", H5T_NATIVE_FLOAT, 1, &ns, m->stats, 0);
  ret |= ens_h5_attr_str(f, "/", "config", ident ? ident : "");
  free(ident);
  return ret;
}

/* The gradient-norm record: the per-epoch summary, and (for AutoClip and
 * the summary of an unfinished epoch) every norm so far, in double. */
static int write_grad_norm(hid_t f, const ens_gradnorm *g, hsize_t ne) {
  hsize_t dims[2] = {ne, ENS_GN_COLS}, n = (hsize_t)g->n;
  int ret = ens_h5_write(f, "grad_norm", H5T_NATIVE_FLOAT, 2, dims, g->summary, 0);
  if (n > 0)
    ret |= ens_h5_write(f, "grad_norms", H5T_NATIVE_DOUBLE, 1, &n, g->hist, 0);
  ret |= ens_h5_attr_i64(f, "/", "grad_norm_clipped", g->clipped);
  return ret;
}

static int write_unit(ens_job *j, ens_trainer *t, int unit, int done) {
  if (!enabled(j))
    return 0;
  char path[ENS_PATH_MAX + 64];
  unit_path(j, unit, path, sizeof(path));
  hid_t f = begin_write(j, path);
  if (f < 0)
    return cannot_begin(j, path);
  int ret = write_trainer_state(j, f, t);
  hsize_t ne = (hsize_t)t->epochs;
  ret |= ens_h5_write(f, "curve_train_loss", H5T_NATIVE_FLOAT, 1, &ne, t->curve_loss, 0);
  ret |= ens_h5_write(f, "curve_eval", H5T_NATIVE_FLOAT, 1, &ne, t->curve_eval, 0);
  ret |= write_grad_norm(f, &t->gn, ne);
  ret |= ens_h5_attr_i64(f, "/", "unit", unit);
  ret |= ens_h5_attr_i64(f, "/", "done", done);
  ret |= ens_h5_attr_i64(f, "/", "epoch", t->epoch);
  ret |= ens_h5_attr_i64(f, "/", "batch_in_epoch", t->batch_in_epoch);
  ret |= ens_h5_attr_i64(f, "/", "step", t->step);
  ret |= ens_h5_attr_i64(f, "/", "cycles_done", t->cycles_done);
  ret |= ens_h5_attr_i64(f, "/", "loss_count", t->loss_count);
  ret |= ens_h5_attr_f64(f, "/", "loss_sum", t->loss_sum);
  ret |= ens_h5_attr_f64(f, "/", "last_loss", t->last_loss);
  ret |= ens_h5_attr_f64(f, "/", "elapsed", ens_comm_wtime() - j->unit_t0);
  return end_write(j, f, ret ? ENS_EHDF5 : 0, path);
}

int ens_job_checkpoint_member(ens_job *j, const ens_member_meta *meta, const float *packed) {
  if (!enabled(j))
    return 0;
  char path[ENS_PATH_MAX + 64];
  member_path(j, meta->k, path, sizeof(path));
  hid_t f = begin_write(j, path);
  if (f < 0)
    return cannot_begin(j, path);
  int ret = 0;
  if (meta->status == ENS_MEMBER_DONE) {
    ens_pack_view v;
    ens_member_view(j, meta, packed, &v);
    hsize_t np = (hsize_t)meta->nparams, ns = (hsize_t)meta->nstats, ne = (hsize_t)j->c->epochs;
    ret |= ens_h5_write(f, "params", H5T_NATIVE_FLOAT, 1, &np, v.params, 0);
    ret |= ens_h5_write(f, "bn_stats", H5T_NATIVE_FLOAT, 1, &ns, v.stats, 0);
    ret |= ens_h5_write(f, "curve_train_loss", H5T_NATIVE_FLOAT, 1, &ne, v.curve_loss, 0);
    ret |= ens_h5_write(f, "curve_eval", H5T_NATIVE_FLOAT, 1, &ne, v.curve_eval, 0);
    hsize_t gdims[2] = {ne, ENS_GN_COLS};
    ret |= ens_h5_write(f, "grad_norm", H5T_NATIVE_FLOAT, 2, gdims, v.grad_norm, 0);
  }
  ret |= ens_h5_attr_i64(f, "/", "k", meta->k);
  ret |= ens_job_meta_write(f, "/", meta);
  return end_write(j, f, ret ? ENS_EHDF5 : 0, path);
}

int ens_job_checkpoint_epoch(ens_job *j, ens_trainer *t, int unit, int epoch) {
  int every = j->c->checkpoint_every;
  if (every <= 0 || (epoch + 1) % every != 0 || t->epoch >= t->epochs)
    return 0;
  return write_unit(j, t, unit, 0);
}

int ens_job_checkpoint_stop(ens_job *j, ens_trainer *t, int unit) {
  int ret = write_unit(j, t, unit, 0);
  return ret ? ret : ENS_ESTOPPED;
}

int ens_job_checkpoint_done(ens_job *j, ens_trainer *t, int unit) {
  return write_unit(j, t, unit, 1);
}

/* Unit checkpoint attributes: the loop position and its running sums. */
typedef struct unit_state {
  int64_t done, epoch, bie, step, cyc, lcount;
  double lsum, last, elapsed;
} unit_state;

/* Reads member k's checkpoint into the trainer's model (and its metadata
 * into *meta). Returns 0, or -1 with the reason in why. */
static int read_member(ens_trainer *t, const char *path, int k, ens_member_meta *meta, char *why,
                       size_t whylen) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    struct stat st;
    snprintf(why, whylen, "%s",
             stat(path, &st) != 0 ? "is missing" : "is not an HDF5 file (or is truncated)");
    return -1;
  }
  int64_t kk = -1;
  int bad =
      ens_h5_get_attr_i64(f, "/", "k", &kk) || kk != k || ens_job_meta_read(f, "/", k, meta) != 0;
  if (bad) {
    snprintf(why, whylen, "has no metadata of member %d", k);
  } else if (meta->status == ENS_MEMBER_DONE) {
    ens_model *m = &t->model;
    bad = (size_t)meta->nparams != m->nparams || (size_t)meta->nstats != m->nstats ||
          ens_h5_read(f, "params", H5T_NATIVE_FLOAT, m->params, m->nparams) ||
          (m->nstats && ens_h5_read(f, "bn_stats", H5T_NATIVE_FLOAT, m->stats, m->nstats)) ||
          ens_h5_read(f, "curve_train_loss", H5T_NATIVE_FLOAT, t->curve_loss, (size_t)t->epochs) ||
          ens_h5_read(f, "curve_eval", H5T_NATIVE_FLOAT, t->curve_eval, (size_t)t->epochs) ||
          ens_h5_read(f, "grad_norm", H5T_NATIVE_FLOAT, t->gn.summary,
                      (size_t)t->epochs * ENS_GN_COLS);
    if (bad)
      snprintf(why, whylen,
               "does not match this job's network (%zu parameters, %zu batch-norm "
               "statistics, %d epochs)",
               m->nparams, m->nstats, t->epochs);
  }
  H5Fclose(f);
  return bad ? -1 : 0;
}

/* Reads the unit checkpoint f: attributes into *s, and (unless s->done)
 * the training state into t. Returns 0, or -1 with the reason in why. */
static int read_unit(ens_job *j, ens_trainer *t, hid_t f, int unit, unit_state *s, char *why,
                     size_t whylen) {
  char *saved = NULL, *ident = ens_job_identity_text(j->c);
  int64_t u = -1;
  int ret = -1;
  memset(s, 0, sizeof(*s));
  if (ens_h5_get_attr_str(f, "/", "config", &saved) != 0) {
    snprintf(why, whylen, "is not an ens checkpoint (no config attribute)");
    goto done;
  }
  if (!ident || strcmp(saved, ident) != 0) {
    char *diff = ident ? ens_job_identity_diff(saved, ident, "the checkpoint") : NULL;
    snprintf(why, whylen,
             "was written with a different configuration (%s; only [output] keys "
             "and the member slice may change on --resume)",
             diff ? diff : "its configuration does not load");
    free(diff);
    goto done;
  }
  int bad = ens_h5_get_attr_i64(f, "/", "unit", &u);
  bad |= ens_h5_get_attr_i64(f, "/", "done", &s->done);
  bad |= ens_h5_get_attr_i64(f, "/", "epoch", &s->epoch);
  bad |= ens_h5_get_attr_i64(f, "/", "batch_in_epoch", &s->bie);
  bad |= ens_h5_get_attr_i64(f, "/", "step", &s->step);
  bad |= ens_h5_get_attr_i64(f, "/", "cycles_done", &s->cyc);
  bad |= ens_h5_get_attr_i64(f, "/", "loss_count", &s->lcount);
  bad |= ens_h5_get_attr_f64(f, "/", "loss_sum", &s->lsum);
  bad |= ens_h5_get_attr_f64(f, "/", "last_loss", &s->last);
  bad |= ens_h5_get_attr_f64(f, "/", "elapsed", &s->elapsed);
  if (bad) {
    snprintf(why, whylen, "is incomplete or from another ens version (attributes missing)");
    goto done;
  }
  if (u != unit || (s->done != 0 && s->done != 1) || s->epoch < 0 || s->epoch > t->epochs ||
      s->bie < 0 || s->bie >= t->sched.steps_per_epoch || s->step < 0 || s->cyc < 0 ||
      s->lcount < 0) {
    snprintf(why, whylen, "holds an impossible position (unit %lld, epoch %lld, batch %lld)",
             (long long)u, (long long)s->epoch, (long long)s->bie);
    goto done;
  }
  if (!s->done) {
    ens_model *m = &t->model;
    bad = ens_h5_read(f, "params", H5T_NATIVE_FLOAT, m->params, m->nparams);
    bad |= ens_h5_read(f, "velocity", H5T_NATIVE_FLOAT, t->velocity, m->nparams);
    if (t->moment2)
      bad |= ens_h5_read(f, "moment2", H5T_NATIVE_FLOAT, t->moment2, m->nparams);
    bad |= ens_h5_read(f, "curve_train_loss", H5T_NATIVE_FLOAT, t->curve_loss, (size_t)t->epochs);
    bad |= ens_h5_read(f, "curve_eval", H5T_NATIVE_FLOAT, t->curve_eval, (size_t)t->epochs);
    if (m->nstats)
      bad |= ens_h5_read(f, "bn_stats", H5T_NATIVE_FLOAT, m->stats, m->nstats);
    if (bad) {
      snprintf(why, whylen,
               "does not match this job's network (%zu parameters, %zu batch-norm "
               "statistics, %d epochs)",
               m->nparams, m->nstats, t->epochs);
      goto done;
    }
    /* The gradient-norm record of the s->step steps done (AutoClip's
     * threshold is rebuilt from it). */
    int64_t clipped = -1;
    bad = ens_h5_read(f, "grad_norm", H5T_NATIVE_FLOAT, t->gn.summary,
                      (size_t)t->epochs * ENS_GN_COLS);
    bad |= ens_h5_get_attr_i64(f, "/", "grad_norm_clipped", &clipped);
    if (!bad && s->step > t->gn.cap)
      bad = 1;
    if (!bad && s->step > 0)
      bad = ens_h5_read(f, "grad_norms", H5T_NATIVE_DOUBLE, t->gn.hist, (size_t)s->step);
    if (!bad)
      bad = ens_gradnorm_restore(&t->gn, t->gn.hist, (long)s->step, (long)(s->step - s->bie),
                                 (long)clipped) != 0;
    if (bad) {
      snprintf(why, whylen, "has no valid gradient-norm record of its %lld steps",
               (long long)s->step);
      goto done;
    }
  }
  ret = 0;
done:
  free(saved);
  free(ident);
  return ret;
}

int ens_job_pack_checkpoint(ens_job *j, const ens_member_meta *meta, char *err,
                            size_t errlen) {
  char path[ENS_PATH_MAX + 64];
  member_path(j, meta->k, path, sizeof(path));
  /* The network as the trainer built it: same batch size, same batches. */
  ens_model m;
  int ret = ens_member_model(j, meta->k, &m);
  if (ret) {
    snprintf(err, errlen, "member %d: cannot create its network: %s", meta->k, ens_strerror(ret));
    return ret;
  }
  const size_t E = (size_t)j->c->epochs;
  float *curves = malloc(((2 + ENS_GN_COLS) * E + 1) * sizeof(float));
  hid_t f = curves ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : H5I_INVALID_HID;
  if (!curves) {
    ret = ENS_ENOMEM;
    snprintf(err, errlen, "member %d: out of memory", meta->k);
  } else if (f < 0) {
    ret = ENS_EIO;
    snprintf(err, errlen, "member %d: its checkpoint %s is missing or unreadable", meta->k, path);
  } else {
    if ((size_t)meta->nparams != m.nparams || (size_t)meta->nstats != m.nstats)
      ret = ENS_EFORMAT;
    ret = ret ? ret : ens_h5_read(f, "params", H5T_NATIVE_FLOAT, m.params, m.nparams);
    if (!ret && m.nstats)
      ret = ens_h5_read(f, "bn_stats", H5T_NATIVE_FLOAT, m.stats, m.nstats);
    ret = ret ? ret : ens_h5_read(f, "curve_train_loss", H5T_NATIVE_FLOAT, curves, E);
    ret = ret ? ret : ens_h5_read(f, "curve_eval", H5T_NATIVE_FLOAT, curves + E, E);
    ret = ret ? ret : ens_h5_read(f, "grad_norm", H5T_NATIVE_FLOAT, curves + 2 * E, ENS_GN_COLS * E);
    H5Fclose(f);
    if (ret)
      snprintf(err, errlen, "member %d: checkpoint %s does not match it (sizes differ)", meta->k,
               path);
  }
  if (!ret)
    ret = ens_job_pack_model(j, &m, curves, curves + E, meta, 1, NULL);
  if (!ret)
    ens_job_pack_grad_norm(j, meta, curves + 2 * E);
  free(curves);
  ens_model_free(&m);
  return ret;
}

int ens_job_restore_unit(ens_job *j, ens_trainer *t, int unit, int first_k, int nmembers,
                         int *done, char *err, size_t errlen) {
  *done = 0;
  if ((!j->o->resume && !j->rung_restore) || !enabled(j))
    return 0;
  char path[ENS_PATH_MAX + 64], mpath[ENS_PATH_MAX + 64], why[512] = "";
  const char *bad_file = path;
  unit_path(j, unit, path, sizeof(path));
  struct stat st;
  if (stat(path, &st) != 0) {
    if (j->c->verbose) {
      ens_progress_clear(&j->progress);
      printf("[unit %d] no checkpoint at %s: starting from scratch\n", unit, path);
    }
    return 0;
  }
  /* Check everything before anything is kept: a damaged file costs this
   * unit its progress, never the job (the result stays the same, only
   * later). */
  unit_state s;
  int emitted = 0, ok = 0;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    snprintf(why, sizeof(why), "is not an HDF5 file (or is truncated)");
  else {
    ok = read_unit(j, t, f, unit, &s, why, sizeof(why)) == 0;
    H5Fclose(f);
  }
  if (ok) {
    emitted = s.done ? nmembers : (j->c->mode == ENS_MODE_SNAPSHOT ? (int)s.cyc : 0);
    if (emitted > nmembers)
      emitted = nmembers;
    for (int i = 0; i < emitted && ok; i++) {
      ens_member_meta meta;
      member_path(j, first_k + i, mpath, sizeof(mpath));
      ok = read_member(t, mpath, first_k + i, &meta, why, sizeof(why)) == 0;
      if (!ok)
        bad_file = mpath;
    }
  }
  if (!ok) {
    fprintf(stderr, "ens: warning: checkpoint %s %s: unit %d restarts from scratch\n", bad_file,
            why, unit);
    fflush(stderr);
    return 1; /* the caller resets the trainer */
  }
  ens_progress_clear(&j->progress); /* the messages below */
  /* Keep: re-store the members the unit had emitted (their predictions are
   * recomputed, bit-identical to the first time), then its state. */
  for (int i = 0; i < emitted; i++) {
    ens_member_meta meta;
    member_path(j, first_k + i, mpath, sizeof(mpath));
    int ret = read_member(t, mpath, first_k + i, &meta, why, sizeof(why));
    if (ret) {
      snprintf(err, errlen, "checkpoint %s %s (it changed during --resume)", mpath, why);
      return ENS_EFORMAT;
    }
    if ((ret = ens_job_emit_packed(j, t, &meta)))
      return ret;
  }
  if (s.done) {
    *done = 1;
    printf("[unit %d] finished before the stop: not retrained\n", unit);
    fflush(stdout);
    return 0;
  }
  f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0 || read_unit(j, t, f, unit, &s, why, sizeof(why)) != 0) {
    if (f >= 0)
      H5Fclose(f);
    snprintf(err, errlen, "checkpoint %s %s (it changed during --resume)", path,
             why[0] ? why : "cannot be opened");
    return ENS_EFORMAT;
  }
  H5Fclose(f);
  t->epoch = (int)s.epoch;
  t->batch_in_epoch = s.bie;
  t->step = s.step;
  t->cycles_done = (int)s.cyc;
  t->loss_count = s.lcount;
  t->loss_sum = s.lsum;
  t->last_loss = s.last;
  j->unit_t0 = ens_comm_wtime() - s.elapsed;
  if (!j->rung_restore || j->c->verbose) { /* a halving rung: continuing is routine */
    printf("[unit %d] %s at epoch %d, step %ld\n", unit,
           j->rung_restore ? "continues" : "resumed", t->epoch, t->step);
    fflush(stdout);
  }
  return 0;
}

/* ---- trunk pretraining --------------------------------------------------- */

static void pretrain_path(const ens_job *j, char *buf, size_t len) {
  snprintf(buf, len, "%s/pretrain.h5", j->ckpt.dir);
}

int ens_job_pretrain_save(ens_job *j, const ens_trainer *t, const ens_pretrain_pos *pos, char *err,
                          size_t errlen) {
  if (!enabled(j) || j->rank != 0)
    return 0;
  char path[ENS_PATH_MAX + 64];
  pretrain_path(j, path, sizeof(path));
  hid_t f = begin_write(j, path);
  if (f < 0) {
    int ret = cannot_begin(j, path);
    snprintf(err, errlen, "%s", j->ckpt.err);
    return ret;
  }
  int ret = write_trainer_state(j, f, t);
  ret |= ens_h5_attr_i64(f, "/", "ranks", j->size);
  ret |= ens_h5_attr_i64(f, "/", "epoch", pos->epoch);
  ret |= ens_h5_attr_i64(f, "/", "step_in_epoch", pos->step_in_epoch);
  ret |= ens_h5_attr_i64(f, "/", "step", pos->step);
  ret |= ens_h5_attr_f64(f, "/", "loss_sum", pos->loss_sum);
  ret |= ens_h5_attr_f64(f, "/", "loss_n", pos->loss_n);
  ret = end_write(j, f, ret ? ENS_EHDF5 : 0, path);
  if (ret)
    snprintf(err, errlen, "%s", j->ckpt.err);
  return ret;
}

/* Rank 0: reads pretrain.h5 into buf (params, velocity, moment2 when used,
 * stats: 3 np + ns floats) and *pos. Returns 0, or -1 with the reason. */
static int read_pretrain(ens_job *j, const ens_trainer *t, const char *path, float *buf,
                         ens_pretrain_pos *pos, char *why, size_t whylen) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    snprintf(why, whylen, "is not an HDF5 file (or is truncated)");
    return -1;
  }
  char *saved = NULL, *ident = ens_job_identity_text(j->c);
  int64_t ranks = 0, ep = -1, sie = -1, step = -1;
  int ret = -1;
  const size_t np = t->model.nparams, ns = t->model.nstats;
  if (ens_h5_get_attr_str(f, "/", "config", &saved) || !ident || strcmp(saved, ident) != 0) {
    snprintf(why, whylen, "was written with a different configuration");
  } else if (ens_h5_get_attr_i64(f, "/", "ranks", &ranks) || ranks != j->size) {
    snprintf(why, whylen,
             "was written on %lld ranks, this job runs on %d (data-parallel "
             "pretraining depends on the rank count)",
             (long long)ranks, j->size);
  } else if (ens_h5_get_attr_i64(f, "/", "epoch", &ep) ||
             ens_h5_get_attr_i64(f, "/", "step_in_epoch", &sie) ||
             ens_h5_get_attr_i64(f, "/", "step", &step) ||
             ens_h5_get_attr_f64(f, "/", "loss_sum", &pos->loss_sum) ||
             ens_h5_get_attr_f64(f, "/", "loss_n", &pos->loss_n) || ep < 0 || ep > t->epochs ||
             sie < 0 || step < 0) {
    snprintf(why, whylen, "is incomplete or holds an impossible position");
  } else if (ens_h5_read(f, "params", H5T_NATIVE_FLOAT, buf, np) ||
             ens_h5_read(f, "velocity", H5T_NATIVE_FLOAT, buf + np, np) ||
             (t->moment2 && ens_h5_read(f, "moment2", H5T_NATIVE_FLOAT, buf + 2 * np, np)) ||
             (ns && ens_h5_read(f, "bn_stats", H5T_NATIVE_FLOAT, buf + 3 * np, ns))) {
    snprintf(why, whylen, "does not match this job's network (%zu parameters)", np);
  } else {
    pos->epoch = (int)ep;
    pos->step_in_epoch = (long)sie;
    pos->step = (long)step;
    ret = 0;
  }
  free(saved);
  free(ident);
  H5Fclose(f);
  return ret;
}

int ens_job_pretrain_restore(ens_job *j, ens_trainer *t, ens_pretrain_pos *pos) {
  const size_t np = t->model.nparams, ns = t->model.nstats;
  char path[ENS_PATH_MAX + 64], why[256];
  pretrain_path(j, path, sizeof(path));
  int found = 0;
  float *buf = NULL;
  if (j->rank == 0 && j->o->resume && enabled(j) && access(path, F_OK) == 0) {
    buf = malloc((3 * np + ns + 1) * sizeof(float));
    if (buf && read_pretrain(j, t, path, buf, pos, why, sizeof(why)) == 0)
      found = 1;
    else
      fprintf(stderr,
              "ens: warning: checkpoint %s %s: trunk pretraining restarts from "
              "scratch\n",
              path, buf ? why : "cannot be read (out of memory)");
  }
  ens_comm_bcast(&found, 1, MPI_INT, 0, j->comm);
  if (found) {
    /* Every rank holds the same weights and optimizer state; batch-norm
     * statistics are per rank and only rank 0's are kept in the trunk. */
    if (j->rank == 0) {
      memcpy(t->model.params, buf, np * sizeof(float));
      memcpy(t->velocity, buf + np, np * sizeof(float));
      if (t->moment2)
        memcpy(t->moment2, buf + 2 * np, np * sizeof(float));
      memcpy(t->model.stats, buf + 3 * np, ns * sizeof(float));
    }
    ens_comm_bcast(t->model.params, (int)np, MPI_FLOAT, 0, j->comm);
    ens_comm_bcast(t->velocity, (int)np, MPI_FLOAT, 0, j->comm);
    if (t->moment2)
      ens_comm_bcast(t->moment2, (int)np, MPI_FLOAT, 0, j->comm);
    ens_comm_bcast(pos, (int)sizeof(*pos), MPI_BYTE, 0, j->comm);
    if (j->rank == 0) {
      printf("[trunk] pretraining resumed at epoch %d, step %ld\n", pos->epoch + 1,
             pos->step_in_epoch);
      fflush(stdout);
    }
  }
  free(buf);
  return found;
}

void ens_job_pretrain_discard(ens_job *j) {
  if (!enabled(j) || j->rank != 0)
    return;
  char path[ENS_PATH_MAX + 64];
  pretrain_path(j, path, sizeof(path));
  unlink(path);
}

/* ---- the directory ------------------------------------------------------- */

int ens_job_checkpoint_lock(ens_job *j, char *err, size_t errlen) {
  if (!enabled(j) || j->rank != 0)
    return 0;
  return ens_storage_lock(&j->ckpt.lock, j->ckpt.dir, &j->ckpt.created_dir, err, errlen);
}

void ens_job_checkpoint_unlock(ens_job *j) {
  if (!j->ckpt.lock.held)
    return;
  ens_storage_unlock(&j->ckpt.lock);
  if (j->ckpt.created_dir)
    rmdir(j->ckpt.dir); /* only when empty: checkpoints stay */
}

void ens_job_checkpoint_cleanup(ens_job *j, const int *units, int nunits) {
  if (!enabled(j))
    return;
  char path[ENS_PATH_MAX + 64];
  for (int i = 0; i < nunits; i++) {
    unit_path(j, units[i], path, sizeof(path));
    unlink(path);
  }
  for (int k = j->first; k < j->last; k++)
    if (ens_job_rank_of(j, k) == j->rank) {
      member_path(j, k, path, sizeof(path));
      unlink(path);
    }
  ens_comm_barrier(j->comm);
  if (j->rank == 0) {
    snprintf(path, sizeof(path), "%s/trunk.h5", j->ckpt.dir); /* a pretrained trunk */
    unlink(path);
    pretrain_path(j, path, sizeof(path));
    unlink(path);
    ens_storage_unlock(&j->ckpt.lock);
    rmdir(j->ckpt.dir); /* only succeeds when empty: foreign files stay */
  }
}
