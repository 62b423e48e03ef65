/* Checkpoints: each unit (member or snapshot chain) of a job keeps its full
 * training state in <checkpoint_dir>/unit_<u>.h5, and every finished member
 * its weights in member_<k>.h5. Files are written to a temporary name,
 * fsync'ed and renamed, so a crash never leaves a half-written checkpoint.
 * The loop's position (epoch, batch, step) is enough to regenerate the data
 * order and dropout masks, so a resumed run is bit-identical. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ens/error.h"
#include "ensemble/job.h"
#include "io/fsutil.h"
#include "io/h5util.h"

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

/* Opens `<path>.tmp` for writing (creating the directory). */
static hid_t begin_write(const ens_job *j, const char *path, char *tmp, size_t len) {
  if (ens_mkdir_p(j->ckpt.dir) != 0)
    return -1;
  snprintf(tmp, len, "%s.tmp", path);
  return H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
}

static int end_write(hid_t f, int ret, const char *tmp, const char *path) {
  if (H5Fclose(f) < 0)
    ret = ENS_EHDF5;
  if (!ret && (ens_fsync_path(tmp) != 0 || rename(tmp, path) != 0))
    ret = ENS_EIO;
  if (ret)
    unlink(tmp);
  else
    ens_fsync_dir_of(path);
  return ret;
}

static int write_unit(ens_job *j, ens_trainer *t, int unit, int done) {
  if (!enabled(j))
    return 0;
  char path[ENS_PATH_MAX + 64], tmp[ENS_PATH_MAX + 80];
  unit_path(j, unit, path, sizeof(path));
  hid_t f = begin_write(j, path, tmp, sizeof(tmp));
  if (f < 0) {
    fprintf(stderr, "ens: cannot write checkpoint %s\n", path);
    return ENS_EIO;
  }
  ens_model *m = &t->model;
  hsize_t np = m->nparams, ns = m->nstats;
  char *ident = ens_job_identity_text(j->c);
  int ret = ident ? 0 : ENS_ENOMEM;
  ret |= ens_h5_write(f, "params", H5T_NATIVE_FLOAT, 1, &np, m->params, 0);
  ret |= ens_h5_write(f, "velocity", H5T_NATIVE_FLOAT, 1, &np, t->velocity, 0);
  if (t->moment2)
    ret |= ens_h5_write(f, "moment2", H5T_NATIVE_FLOAT, 1, &np, t->moment2, 0);
  ret |= ens_h5_write(f, "bn_stats", H5T_NATIVE_FLOAT, 1, &ns, m->stats, 0);
  hsize_t ne = (hsize_t)t->epochs;
  ret |= ens_h5_write(f, "curve_train_loss", H5T_NATIVE_FLOAT, 1, &ne, t->curve_loss, 0);
  ret |= ens_h5_write(f, "curve_eval", H5T_NATIVE_FLOAT, 1, &ne, t->curve_eval, 0);
  ret |= ens_h5_attr_str(f, "/", "config", ident ? ident : "");
  ret |= ens_h5_attr_i64(f, "/", "unit", unit);
  ret |= ens_h5_attr_i64(f, "/", "done", done);
  ret |= ens_h5_attr_i64(f, "/", "epoch", t->epoch);
  ret |= ens_h5_attr_i64(f, "/", "batch_in_epoch", t->batch_in_epoch);
  ret |= ens_h5_attr_i64(f, "/", "step", t->step);
  ret |= ens_h5_attr_i64(f, "/", "cycles_done", t->cycles_done);
  ret |= ens_h5_attr_i64(f, "/", "loss_count", t->loss_count);
  ret |= ens_h5_attr_f64(f, "/", "loss_sum", t->loss_sum);
  ret |= ens_h5_attr_f64(f, "/", "last_loss", t->last_loss);
  ret |= ens_h5_attr_f64(f, "/", "elapsed", MPI_Wtime() - j->unit_t0);
  free(ident);
  ret = end_write(f, ret ? ENS_EHDF5 : 0, tmp, path);
  if (ret)
    fprintf(stderr, "ens: cannot write checkpoint %s\n", path);
  return ret;
}

int ens_job_checkpoint_member(ens_job *j, const ens_member_meta *meta, const float *packed) {
  if (!enabled(j))
    return 0;
  char path[ENS_PATH_MAX + 64], tmp[ENS_PATH_MAX + 80];
  member_path(j, meta->k, path, sizeof(path));
  hid_t f = begin_write(j, path, tmp, sizeof(tmp));
  if (f < 0) {
    fprintf(stderr, "ens: cannot write checkpoint %s\n", path);
    return ENS_EIO;
  }
  int ret = 0;
  if (meta->status == ENS_MEMBER_DONE) {
    ens_pack_view v;
    ens_member_view(j, meta, packed, &v);
    hsize_t np = (hsize_t)meta->nparams, ns = (hsize_t)meta->nstats, ne = (hsize_t)j->c->epochs;
    ret |= ens_h5_write(f, "params", H5T_NATIVE_FLOAT, 1, &np, v.params, 0);
    ret |= ens_h5_write(f, "bn_stats", H5T_NATIVE_FLOAT, 1, &ns, v.stats, 0);
    ret |= ens_h5_write(f, "curve_train_loss", H5T_NATIVE_FLOAT, 1, &ne, v.curve_loss, 0);
    ret |= ens_h5_write(f, "curve_eval", H5T_NATIVE_FLOAT, 1, &ne, v.curve_eval, 0);
  }
  ret |= ens_h5_attr_i64(f, "/", "k", meta->k);
  ret |= ens_job_meta_write(f, "/", meta);
  return end_write(f, ret ? ENS_EHDF5 : 0, tmp, path);
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

/* Loads member k's checkpoint into the trainer's model and re-stores it:
 * its predictions are recomputed, bit-identical to the first time. */
static int restore_member(ens_job *j, ens_trainer *t, int k, char *err, size_t errlen) {
  char path[ENS_PATH_MAX + 64];
  member_path(j, k, path, sizeof(path));
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    snprintf(err, errlen, "checkpoint %s is missing or unreadable", path);
    return ENS_EFORMAT;
  }
  ens_member_meta meta;
  int ret = ens_job_meta_read(f, "/", k, &meta);
  if (!ret && meta.status == ENS_MEMBER_DONE) {
    if ((size_t)meta.nparams != t->model.nparams || (size_t)meta.nstats != t->model.nstats)
      ret = ENS_EFORMAT;
    ret |= ens_h5_read(f, "params", H5T_NATIVE_FLOAT, t->model.params, t->model.nparams);
    if (t->model.nstats)
      ret |= ens_h5_read(f, "bn_stats", H5T_NATIVE_FLOAT, t->model.stats, t->model.nstats);
    ret |= ens_h5_read(f, "curve_train_loss", H5T_NATIVE_FLOAT, t->curve_loss,
                       (size_t)t->epochs);
    ret |= ens_h5_read(f, "curve_eval", H5T_NATIVE_FLOAT, t->curve_eval, (size_t)t->epochs);
  }
  H5Fclose(f);
  if (ret) {
    snprintf(err, errlen, "checkpoint %s does not match this job (sizes or attributes differ)",
             path);
    return ENS_EFORMAT;
  }
  return ens_job_emit_packed(j, t, &meta);
}

int ens_job_pack_checkpoint(ens_job *j, const ens_member_meta *meta, char *err,
                            size_t errlen) {
  char path[ENS_PATH_MAX + 64];
  member_path(j, meta->k, path, sizeof(path));
  ens_config mc;
  ens_arch a;
  ens_member_config(j, meta->k, &mc);
  ens_member_arch(j, &mc, &a);
  /* The network as the trainer built it: same batch size, same batches. */
  ens_model m;
  int ret = ens_model_create(&m, &a, j->trunk.layers, a.n_hidden, 1, mc.batch);
  if (ret) {
    snprintf(err, errlen, "member %d: cannot create its network: %s", meta->k, ens_strerror(ret));
    return ret;
  }
  const size_t E = (size_t)j->c->epochs;
  float *curves = malloc((2 * E + 1) * sizeof(float));
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
    H5Fclose(f);
    if (ret)
      snprintf(err, errlen, "member %d: checkpoint %s does not match it (sizes differ)", meta->k,
               path);
  }
  if (!ret)
    ret = ens_job_pack_model(j, &m, curves, curves + E, meta, 1);
  free(curves);
  ens_model_free(&m);
  return ret;
}

int ens_job_restore_unit(ens_job *j, ens_trainer *t, int unit, int first_k, int nmembers,
                         int *done, char *err, size_t errlen) {
  *done = 0;
  if (!j->o->resume || !enabled(j))
    return 0;
  char path[ENS_PATH_MAX + 64];
  unit_path(j, unit, path, sizeof(path));
  struct stat st;
  if (stat(path, &st) != 0) {
    if (j->c->verbose) {
      ens_progress_clear(&j->progress);
      printf("[unit %d] no checkpoint at %s: starting from scratch\n", unit, path);
    }
    return 0;
  }
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    snprintf(err, errlen, "checkpoint %s cannot be opened as HDF5", path);
    return ENS_EFORMAT;
  }
  char *saved = NULL, *ident = ens_job_identity_text(j->c);
  int64_t isdone = 0, epoch = 0, bie = 0, step = 0, cyc = 0, lcount = 0;
  double lsum = 0, last = NAN, elapsed = 0;
  int ret = ens_h5_get_attr_str(f, "/", "config", &saved);
  if (!ret && (!ident || strcmp(saved, ident) != 0)) {
    char *diff = ident ? ens_job_identity_diff(saved, ident, path) : NULL;
    snprintf(err, errlen,
             "checkpoint %s was written with a different configuration (%s); only [output] "
             "keys may change on --resume (--restart discards the checkpoints)",
             path, diff ? diff : "its configuration does not load");
    free(diff);
    ret = ENS_ECONFIG;
    goto cleanup;
  }
  int bad = ret;
  bad |= ens_h5_get_attr_i64(f, "/", "done", &isdone);
  bad |= ens_h5_get_attr_i64(f, "/", "epoch", &epoch);
  bad |= ens_h5_get_attr_i64(f, "/", "batch_in_epoch", &bie);
  bad |= ens_h5_get_attr_i64(f, "/", "step", &step);
  bad |= ens_h5_get_attr_i64(f, "/", "cycles_done", &cyc);
  bad |= ens_h5_get_attr_i64(f, "/", "loss_count", &lcount);
  bad |= ens_h5_get_attr_f64(f, "/", "loss_sum", &lsum);
  bad |= ens_h5_get_attr_f64(f, "/", "last_loss", &last);
  bad |= ens_h5_get_attr_f64(f, "/", "elapsed", &elapsed);
  if (bad) {
    snprintf(err, errlen, "checkpoint %s is incomplete or from another ens version", path);
    ret = ENS_EFORMAT;
    goto cleanup;
  }
  ens_progress_clear(&j->progress); /* the messages below */
  /* Members this unit had already emitted. */
  int emitted = isdone ? nmembers : (j->c->mode == ENS_MODE_SNAPSHOT ? (int)cyc : 0);
  if (emitted > nmembers)
    emitted = nmembers;
  for (int i = 0; i < emitted && !ret; i++)
    ret = restore_member(j, t, first_k + i, err, errlen);
  if (ret)
    goto cleanup;
  if (isdone) {
    *done = 1;
    printf("[unit %d] finished before the stop: not retrained\n", unit);
    goto cleanup;
  }
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
    snprintf(err, errlen, "checkpoint %s: parameter sizes do not match this job", path);
    ret = ENS_EFORMAT;
    goto cleanup;
  }
  t->epoch = (int)epoch;
  t->batch_in_epoch = bie;
  t->step = step;
  t->cycles_done = (int)cyc;
  t->loss_count = lcount;
  t->loss_sum = lsum;
  t->last_loss = last;
  j->unit_t0 = MPI_Wtime() - elapsed;
  printf("[unit %d] resumed at epoch %d, step %ld\n", unit, t->epoch, t->step);
cleanup:
  fflush(stdout);
  free(saved);
  free(ident);
  H5Fclose(f);
  return ret;
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
  MPI_Barrier(j->comm);
  if (j->rank == 0) {
    snprintf(path, sizeof(path), "%s/trunk.h5", j->ckpt.dir); /* a pretrained trunk */
    unlink(path);
    rmdir(j->ckpt.dir); /* only succeeds when empty: foreign files stay */
  }
}
