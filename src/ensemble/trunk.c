/* The shared frozen trunk: the first L hidden blocks of the network, either
 * loaded from an HDF5 file (an ens result, or a PyTorch export written by
 * scripts/export_torch_trunk.py) or pretrained data-parallel by all ranks.
 * Rank 0 finishes it and broadcasts it in one MPI_Bcast; the ranks of each
 * node then compute the trunk features of the train, test and validation
 * splits once per node, each rank a slice of the batches, into a
 * node-shared block (eval mode: the trunk's batch norm uses its stored
 * statistics and is never updated), and members train only their heads on
 * those cached features. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "ens/error.h"
#include "ens/metrics.h"
#include "ens/model.h"
#include "ens/train.h"
#include "ensemble/trunk.h"
#include "io/fsutil.h"
#include "io/h5util.h"
#include "io/storage.h"

#define TRUNK_RNG_KEY 0xFFFFFFF0u /* member key of the pretraining streams */

static void describe_widths(char *buf, size_t len, int in, const int *hidden, int n) {
  int used = snprintf(buf, len, "%d", in);
  for (int i = 0; i < n && used > 0 && (size_t)used < len; i++)
    used += snprintf(buf + used, len - (size_t)used, "-%d", hidden[i]);
}

int ens_trunk_write_layer_list(hid_t f, const ens_arch *a) {
  if (a->nspec == 0)
    return 0;
  char list[ENS_LAYERS_MAX + 512];
  ens_layers_format(list, sizeof list, a);
  int ret = ens_h5_attr_str(f, "/model", "layer_list", list);
  ret |= ens_h5_attr_i64(f, "/model", "input_channels", a->in_shape.c);
  ret |= ens_h5_attr_i64(f, "/model", "input_height", a->in_shape.image ? a->in_shape.h : 0);
  ret |= ens_h5_attr_i64(f, "/model", "input_width", a->in_shape.image ? a->in_shape.w : 0);
  return ret;
}

int ens_trunk_load_file(const char *path, const char *label, const char *which,
                        const ens_arch *arch, int layers, float *params, float *stats, char *err,
                        size_t errlen) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    snprintf(err, errlen, "%s: cannot open as HDF5", label);
    return ENS_EIO;
  }
  int ret = 0;
  int64_t inputs = 0, bn = 0, tl = 0;
  int32_t hidden[ENS_MAX_LAYERS + 1];
  long long nh = ens_h5_size(f, "/model/hidden", NULL, NULL);
  if (nh < 0 || nh > ENS_MAX_LAYERS || ens_h5_get_attr_i64(f, "/model", "inputs", &inputs) ||
      ens_h5_get_attr_i64(f, "/model", "batchnorm", &bn) ||
      (nh > 0 && ens_h5_read(f, "/model/hidden", H5T_NATIVE_INT32, hidden, (size_t)nh))) {
    snprintf(err, errlen,
             "%s: not an ens result (no /model description: hidden widths, inputs, batchnorm)",
             label);
    ret = ENS_EFORMAT;
    goto cleanup;
  }
  ens_h5_get_attr_i64(f, "/model", "trunk_layers", &tl);
  /* Which flat vector holds the blocks, and how many blocks it has. */
  char pp[128], sp[128];
  long long avail_blocks = nh;
  if (!strcmp(which, "trunk")) {
    snprintf(pp, sizeof(pp), "/trunk/params");
    snprintf(sp, sizeof(sp), "/trunk/bn_stats");
    int64_t l2 = 0;
    if (!ens_h5_exists(f, "/trunk/params")) {
      snprintf(err, errlen,
               "%s has no /trunk (it was trained without a shared trunk): "
               "set [trunk] dataset = ensemble (the first layers of its /ensemble/params, "
               "combine = params) or member:<k> (those of member k) to take a trunk from it",
               label);
      ret = ENS_EFORMAT;
      goto cleanup;
    }
    if (ens_h5_get_attr_i64(f, "/trunk", "layers", &l2) == 0)
      tl = l2;
    avail_blocks = tl;
  } else if (!strcmp(which, "ensemble")) {
    snprintf(pp, sizeof(pp), "/ensemble/params");
    snprintf(sp, sizeof(sp), "/ensemble/bn_stats");
  } else {
    snprintf(pp, sizeof(pp), "/members/%s/params", which + 7);
    snprintf(sp, sizeof(sp), "/members/%s/bn_stats", which + 7);
  }
  if (strcmp(which, "trunk") != 0 && tl > 0) {
    snprintf(err, errlen,
             "%s: %s holds only the head of a model trained on a trunk; use "
             "[trunk] dataset = trunk",
             label, pp);
    ret = ENS_EFORMAT;
    goto cleanup;
  }
  /* A layers attribute cannot name more blocks than /model/hidden holds. */
  if (avail_blocks > nh)
    avail_blocks = nh;
  if (avail_blocks < 0)
    avail_blocks = 0;
  char want[256], have[256];
  describe_widths(want, sizeof(want), arch->in, arch->hidden, layers);
  describe_widths(have, sizeof(have), (int)inputs, hidden, (int)avail_blocks);
  int match = inputs == arch->in && avail_blocks >= layers && (int)bn == arch->batchnorm;
  for (int i = 0; match && i < layers && arch->nspec == 0; i++)
    match = i < ENS_MAX_HIDDEN && hidden[i] == arch->hidden[i];
  if (match && arch->nspec > 0) {
    /* A layer list: the file's (canonical text, /model layer_list) must
     * begin with the trunk's first `layers` blocks, on images of the same
     * shape. */
    ens_arch t = *arch;
    int n = 0;
    while (n < t.nspec && t.spec[n].block < layers)
      n++;
    t.nspec = n;
    char want_l[ENS_LAYERS_MAX + 512];
    ens_layers_format(want_l, sizeof want_l, &t);
    char *flist = NULL;
    int64_t fc = 0, fh = 0, fw = 0;
    ens_h5_get_attr_str(f, "/model", "layer_list", &flist);
    ens_h5_get_attr_i64(f, "/model", "input_channels", &fc);
    ens_h5_get_attr_i64(f, "/model", "input_height", &fh);
    ens_h5_get_attr_i64(f, "/model", "input_width", &fw);
    size_t wl = strlen(want_l);
    int same_shape = arch->in_shape.image ? fc == arch->in_shape.c && fh == arch->in_shape.h &&
                                                fw == arch->in_shape.w
                                          : fh == 0;
    if (!flist || strncmp(flist, want_l, wl) != 0 || (flist[wl] != '\0' && flist[wl] != ',') ||
        !same_shape) {
      snprintf(err, errlen,
               "%s: trunk layers '%.300s' on (%lld,%lld,%lld) inputs do not begin with the "
               "first %d block%s of [model] layers: '%.300s' on (%d,%d,%d)",
               label, flist ? flist : "(none: not a layer-list model)", (long long)fc,
               (long long)fh, (long long)fw, layers, layers == 1 ? "" : "s", want_l,
               arch->in_shape.c, arch->in_shape.image ? arch->in_shape.h : 0,
               arch->in_shape.image ? arch->in_shape.w : 0);
      free(flist);
      ret = ENS_ESHAPE;
      goto cleanup;
    }
    free(flist);
  }
  if (!match) {
    snprintf(err, errlen,
             "%s: trunk architecture %s%s does not match the config's first %d block%s %s%s", label,
             have, bn ? " with batch norm" : " without batch norm", layers, layers == 1 ? "" : "s",
             want, arch->batchnorm ? " with batch norm" : " without batch norm");
    ret = ENS_ESHAPE;
    goto cleanup;
  }
  size_t np, ns;
  ens_arch_sizes(arch, 0, layers, 0, &np, &ns);
  long long have_p = ens_h5_size(f, pp, NULL, NULL), have_s = ens_h5_size(f, sp, NULL, NULL);
  if (have_p < (long long)np || (ns > 0 && have_s < (long long)ns)) {
    snprintf(err, errlen,
             "%s: %s has %lld values, the trunk needs at least %zu (and %zu batch "
             "norm statistics in %s)",
             label, pp, have_p, np, ns, sp);
    ret = ENS_EFORMAT;
    goto cleanup;
  }
  /* The trunk is a prefix of the flat vectors (layer order layout): only
   * that prefix is read, whatever size the file declares. */
  ret = ens_h5_read_prefix(f, pp, H5T_NATIVE_FLOAT, params, np);
  if (!ret && ns > 0)
    ret = ens_h5_read_prefix(f, sp, H5T_NATIVE_FLOAT, stats, ns);
  if (ret)
    snprintf(err, errlen,
             "%s: cannot read the first %zu values of %s (and %zu of %s) as float32 "
             "vectors",
             label, np, pp, ns, sp);
cleanup:
  H5Fclose(f);
  return ret;
}

/* Adler-32 of the weights: cheap enough to compare ranks. */
static uint32_t weights_checksum(const float *p, size_t n) {
  return (uint32_t)adler32_z(adler32(0L, Z_NULL, 0), (const Bytef *)p, n * sizeof(float));
}

/* 1 when every rank's checksum equals rank 0's. */
static int ranks_agree(MPI_Comm comm, uint32_t sum) {
  uint32_t lo = sum, hi = sum, glo, ghi;
  ens_comm_allreduce(&lo, &glo, 1, MPI_UINT32_T, MPI_MIN, comm);
  ens_comm_allreduce(&hi, &ghi, 1, MPI_UINT32_T, MPI_MAX, comm);
  return glo == ghi;
}

/* A stop during pretraining: rank 0 saves the state at `at`, every rank
 * learns the outcome; ENS_ESTOPPED (or the failed write's code). */
static int pretrain_stop(ens_job *j, const ens_trainer *t, const ens_pretrain_pos *at, char *err,
                         size_t errlen) {
  int ret = ens_agree(j->comm, ens_job_pretrain_save(j, t, at, err, errlen), err, errlen);
  if (ret)
    return ret;
  snprintf(err, errlen,
           "stopped by a signal during trunk pretraining (epoch %d, step %ld of "
           "the epoch); its state is saved in %s/pretrain.h5: run the same command with "
           "--resume to continue",
           at->epoch + 1, at->step_in_epoch, j->ckpt.dir);
  return ENS_ESTOPPED;
}

/* Data-parallel pretraining of the full network: every global batch of
 * [train] batch rows is split into P disjoint shards, one per rank; each
 * rank's gradient (mean over its shard) is weighted by shard/batch and the
 * gradients are summed with MPI_Allreduce, so every rank applies the same
 * update and the weights stay identical. Batch norm uses per-shard
 * statistics (as PyTorch DDP without SyncBatchNorm): the result depends on
 * the number of ranks, and is reproducible for a given number. */
static int pretrain(ens_job *j, char *err, size_t errlen) {
  ens_config pc = *j->c;
  pc.epochs = j->c->pretrain_epochs;
  pc.mode = ENS_MODE_SEED;
  /* Data-parallel pretraining often wants a larger global batch (each rank
   * then keeps a full-size shard) with a scaled learning rate (Goyal et al.
   * 2017, linear scaling rule). */
  if (j->c->pretrain_batch > 0)
    pc.batch = j->c->pretrain_batch;
  if (j->c->pretrain_lr > 0)
    pc.lr = j->c->pretrain_lr;
  if (pc.schedule == ENS_SCHED_CYCLIC)
    pc.schedule = ENS_SCHED_COSINE;
  ens_trainer t;
  int ret = ens_trainer_create(&t, &j->arch, 0, &pc, j->data.n_train);
  if (ret) {
    snprintf(err, errlen, "pretraining: cannot create the network: %s", ens_strerror(ret));
    return ret;
  }
  ret = ens_trainer_start(&t, &pc, TRUNK_RNG_KEY, TRUNK_RNG_KEY, j->data.n_train);
  const int P = j->size, B = pc.batch, n = j->data.n_train, d = j->data.dim;
  ens_model *m = &t.model;
  /* With P shards a global batch needs 2 rows per shard for batch norm. */
  long steps = n / B + (n % B >= 2 * P ? 1 : 0);
  double t0 = ens_comm_wtime();
  /* With --resume, continue from the last pretraining checkpoint. */
  ens_pretrain_pos pos = {0};
  int restored = !ret && ens_job_pretrain_restore(j, &t, &pos);
  if (restored)
    t.step = pos.step;
  for (int epoch = pos.epoch; epoch < pc.epochs && !ret; epoch++) {
    ens_rng shuf;
    ens_rng_init(&shuf, pc.seed, TRUNK_RNG_KEY, ENS_STREAM_SHUFFLE, (uint32_t)epoch);
    ens_rng_permutation(&shuf, t.order, n);
    double loss_sum = 0;
    long loss_n = 0, s0 = 0;
    if (restored && epoch == pos.epoch) {
      s0 = pos.step_in_epoch;
      if (j->rank == 0) { /* the epoch's partial loss, summed over ranks */
        loss_sum = pos.loss_sum;
        loss_n = (long)pos.loss_n;
      }
    }
    int stop = 0;
    for (long s = s0; s < steps && !ret; s++) {
      long lo = s * B;
      int gb = n - lo < B ? (int)(n - lo) : B;
      int a = (int)((long)gb * j->rank / P), b = (int)((long)gb * (j->rank + 1) / P);
      int sb = b - a;
      if (sb >= 2) {
        for (int i = 0; i < sb; i++) {
          int32_t r = t.order[lo + a + i];
          memcpy(t.xb + (size_t)i * d, j->data.sets.train.x + (size_t)r * d, (size_t)d * sizeof(float));
          if (j->data.sets.train.y)
            t.yb[i] = j->data.sets.train.y[r];
          if (j->data.train_t)
            memcpy(t.tb + (size_t)i * j->task.T, j->data.train_t + (size_t)r * j->task.T,
                   (size_t)j->task.T * sizeof(float));
        }
        ens_rng drop;
        ens_rng_init(&drop, pc.seed, TRUNK_RNG_KEY - 1 - (uint32_t)j->rank, ENS_STREAM_DROPOUT,
                     (uint32_t)t.step);
        ens_model_forward(m, t.xb, sb, ENS_PASS_TRAIN, &drop);
        double loss = ens_model_loss_backward(m, t.yb, t.tb, sb, NULL);
        loss_sum += loss * sb;
        loss_n += sb;
        float w = (float)sb / (float)gb;
        for (size_t i = 0; i < m->nparams; i++)
          m->grads[i] *= w;
      } else {
        memset(m->grads, 0, m->nparams * sizeof(float));
      }
      ens_comm_allreduce(MPI_IN_PLACE, m->grads, (int)m->nparams, MPI_FLOAT, MPI_SUM, j->comm);
      if (pc.clip_value > 0)
        ens_clip_value(m->grads, m->nparams, (float)pc.clip_value);
      if (pc.clip_norm > 0)
        ens_clip_norm(m->grads, m->nparams, pc.clip_norm);
      double lr = ens_schedule_lr(&t.sched, t.step);
      if (t.optimizer == ENS_OPT_SGD)
        ens_sgd_step(m->params, t.velocity, m->grads, m->nparams, lr, &t.sgd);
      else
        ens_adam_step(m->params, t.velocity, t.moment2, m->grads, m->nparams, lr, t.step + 1,
                      &t.adam);
      t.step++;
      if (pc.check_sync && !ranks_agree(j->comm, weights_checksum(m->params, m->nparams))) {
        snprintf(err, errlen, "pretraining: ranks hold different weights after step %ld", t.step);
        ret = ENS_EMPI;
      }
      /* A stop request (signal) is agreed after every step: the ranks are
       * in lockstep, so all stop after the same one. */
      int want = j->o->stop && *j->o->stop;
      ens_comm_allreduce(&want, &stop, 1, MPI_INT, MPI_MAX, j->comm);
      if (!ret && stop && s + 1 < steps) {
        double part[2] = {loss_sum, (double)loss_n};
        ens_comm_allreduce(MPI_IN_PLACE, part, 2, MPI_DOUBLE, MPI_SUM, j->comm);
        ens_pretrain_pos at = {epoch, s + 1, t.step, part[0], part[1]};
        ret = pretrain_stop(j, &t, &at, err, errlen);
      }
    }
    if (ret)
      break;
    double gl[2] = {loss_sum, (double)loss_n};
    ens_comm_allreduce(MPI_IN_PLACE, gl, 2, MPI_DOUBLE, MPI_SUM, j->comm);
    if (!ret && j->rank == 0 && j->c->verbose) {
      double mt[ENS_TASK_MAX_METRICS];
      ens_truth tt = {j->data.sets.test.y, j->data.sets.test.t, j->data.n_test};
      ens_task_predict(&j->task, m, j->eval_pred, j->data.sets.test.x, j->data.n_test);
      j->eval_of = NULL; /* eval_pred now holds the pretrained network's rows */
      ens_task_metrics(&j->task, mt, j->eval_pred, &tt);
      printf("[trunk] pretrain epoch %d/%d  loss %.4f  test %s %.4g  (%d rank%s, %.1f s)\n",
             epoch + 1, pc.epochs, gl[0] / gl[1], ens_task_metric_name(&j->task, 0),
             j->task.regress ? mt[0] : 100 * mt[0], P, P == 1 ? "" : "s", ens_comm_wtime() - t0);
      fflush(stdout);
    }
    /* Checkpoint after the epoch (every [output] checkpoint_every epochs,
     * and on a stop); the last epoch's state becomes trunk.h5 instead. */
    int every = j->c->checkpoint_every;
    if (!ret && epoch + 1 < pc.epochs && (stop || (every > 0 && (epoch + 1) % every == 0))) {
      ens_pretrain_pos at = {epoch + 1, 0, t.step, 0, 0};
      if (stop)
        ret = pretrain_stop(j, &t, &at, err, errlen);
      else
        ret = ens_agree(j->comm, ens_job_pretrain_save(j, &t, &at, err, errlen), err, errlen);
    }
  }
  if (!ret && !ranks_agree(j->comm, weights_checksum(m->params, m->nparams))) {
    snprintf(err, errlen, "pretraining: ranks ended with different weights");
    ret = ENS_EMPI;
  }
  if (!ret) {
    /* The batch-norm running statistics were updated from each rank's own
     * shards; take rank 0's so every rank has the same trunk. */
    memcpy(j->trunk.params, m->params, j->trunk.nparams * sizeof(float));
    memcpy(j->trunk.stats, m->stats, j->trunk.nstats * sizeof(float));
  }
  ens_trainer_free(&t);
  return ret;
}

/* Pretrained trunks are kept beside the checkpoints so --resume skips
 * pretraining. */
static void pretrained_path(const ens_job *j, char *buf, size_t len) {
  snprintf(buf, len, "%s/trunk.h5", j->ckpt.dir);
}

/* Rank 0: writes trunk.h5 (built in memory, published atomically). */
static int save_pretrained(ens_job *j, char *err, size_t errlen) {
  char path[ENS_PATH_MAX + 64], tmp[ENS_PATH_MAX + 80];
  pretrained_path(j, path, sizeof(path));
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  hid_t f = ens_mkdir_p(j->ckpt.dir) == 0 ? ens_storage_h5_memory(path) : -1;
  if (f < 0) {
    snprintf(err, errlen, "cannot write checkpoint %s: %s", path, strerror(errno));
    return ENS_EWRITE;
  }
  hsize_t np = j->trunk.nparams, ns = j->trunk.nstats, nh = (hsize_t)j->arch.n_hidden;
  int32_t hidden[ENS_MAX_LAYERS + 1] = {0};
  for (int i = 0; i < j->arch.n_hidden && i < ENS_MAX_HIDDEN && j->arch.nspec == 0; i++)
    hidden[i] = j->arch.hidden[i];
  int ret = 0;
  ret |= ens_h5_write(f, "/trunk/params", H5T_NATIVE_FLOAT, 1, &np, j->trunk.params, 0);
  ret |= ens_h5_write(f, "/trunk/bn_stats", H5T_NATIVE_FLOAT, 1, &ns, j->trunk.stats, 0);
  ret |= ens_h5_attr_i64(f, "/trunk", "layers", j->trunk.layers);
  ret |= ens_h5_write(f, "/model/hidden", H5T_NATIVE_INT32, 1, &nh, hidden, 0);
  ret |= ens_h5_attr_i64(f, "/model", "inputs", j->data.dim);
  ret |= ens_h5_attr_i64(f, "/model", "batchnorm", j->arch.batchnorm);
  ret |= ens_trunk_write_layer_list(f, &j->arch);
  char *ident = ens_job_identity_text(j->c);
  ret |= ens_h5_attr_str(f, "/", "config", ident ? ident : "");
  free(ident);
  ret |= ens_h5_attr_i64(f, "/", "ranks", j->size);
  if (ret) {
    H5Fclose(f);
    snprintf(err, errlen, "cannot build checkpoint %s in memory", path);
    return ENS_EHDF5;
  }
  return ens_storage_h5_publish(f, path, tmp, "cannot write checkpoint", err, errlen);
}

/* With --resume: loads a trunk pretrained by the same job on as many
 * ranks. A file that cannot serve is named in a warning. */
static int load_pretrained(ens_job *j, int *found) {
  char path[ENS_PATH_MAX + 64], why[512] = "";
  struct stat st;
  *found = 0;
  pretrained_path(j, path, sizeof(path));
  if (!j->o->resume || stat(path, &st) != 0)
    return 0;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    fprintf(stderr,
            "ens: warning: checkpoint %s is not an HDF5 file (or is truncated): the "
            "trunk is pretrained again\n",
            path);
    return 0;
  }
  char *saved = NULL, *ident = ens_job_identity_text(j->c);
  int64_t ranks = -1;
  if (ens_h5_get_attr_str(f, "/", "config", &saved) != 0 || !ident || strcmp(saved, ident) != 0)
    snprintf(why, sizeof(why), "was written with a different configuration");
  else if (ens_h5_get_attr_i64(f, "/", "ranks", &ranks) != 0 || ranks != j->size)
    snprintf(why, sizeof(why), "was pretrained on %lld ranks, this job runs on %d",
             (long long)ranks, j->size);
  H5Fclose(f);
  free(saved);
  free(ident);
  if (!why[0]) {
    char err[512];
    if (ens_trunk_load_file(path, path, "trunk", &j->arch, j->trunk.layers, j->trunk.params,
                            j->trunk.stats, err, sizeof(err)) == 0)
      *found = 1;
    else
      ens_errorf(why, sizeof(why), "does not hold this job's trunk (%s)", err);
  }
  if (!*found)
    fprintf(stderr, "ens: warning: checkpoint %s %s: the trunk is pretrained again\n", path, why);
  return 0;
}

int ens_trunk_prepare(ens_job *j, char *err, size_t errlen) {
  const ens_config *c = j->c;
  const int L = c->trunk_layers;
  j->trunk.layers = L;
  ens_arch_sizes(&j->arch, 0, L, 0, &j->trunk.nparams, &j->trunk.nstats);
  size_t total = j->trunk.nparams + j->trunk.nstats;
  float *flat = malloc((total ? total : 1) * sizeof(float));
  if (!flat) {
    snprintf(err, errlen, "out of memory for the trunk");
    return ENS_ENOMEM;
  }
  /* One buffer, so one MPI_Bcast: parameters then statistics. */
  j->trunk.params = flat;
  j->trunk.stats = malloc((j->trunk.nstats ? j->trunk.nstats : 1) * sizeof(float));
  if (!j->trunk.stats) {
    snprintf(err, errlen, "out of memory for the trunk");
    return ENS_ENOMEM;
  }
  int ret = 0;
  double t0 = ens_comm_wtime();
  if (j->o->trunk_from || c->trunk_source == ENS_TRUNK_FILE) {
    if (j->rank == 0) {
      const char *path = j->o->trunk_from ? j->o->trunk_from : c->trunk_file;
      const char *which = j->o->trunk_from ? "trunk" : c->trunk_dataset;
      /* Messages name the key the file came from (merge's parts by path). */
      char label[ENS_PATH_MAX + 32];
      snprintf(label, sizeof(label), j->o->trunk_from ? "%s" : "[trunk] file = %s", path);
      ret = ens_trunk_load_file(path, label, which, &j->arch, L, flat, j->trunk.stats, err, errlen);
    }
  } else {
    int found = 0;
    if (j->rank == 0)
      load_pretrained(j, &found);
    ens_comm_bcast(&found, 1, MPI_INT, 0, j->comm);
    if (!found) {
      ret = pretrain(j, err, errlen);
      /* A failed save stops the job like any failed checkpoint write. */
      if (!ret && j->rank == 0 && !(ret = save_pretrained(j, err, errlen)))
        ens_job_pretrain_discard(j);
    } else if (j->rank == 0) {
      printf("[trunk] pretrained trunk restored from %s/trunk.h5\n", j->ckpt.dir);
    }
  }
  /* Agree on success before the broadcast, with the failing rank's words. */
  ret = ens_agree(j->comm, ret, err, errlen);
  if (ret)
    return ret;
  if (j->rank == 0)
    memcpy(flat + j->trunk.nparams, j->trunk.stats, j->trunk.nstats * sizeof(float));
  ens_comm_bcast(flat, (int)total, MPI_FLOAT, 0, j->comm);
  memcpy(j->trunk.stats, flat + j->trunk.nparams, j->trunk.nstats * sizeof(float));
  uint32_t sum = weights_checksum(flat, total);
  if (!ranks_agree(j->comm, sum)) {
    snprintf(err, errlen, "trunk broadcast: ranks hold different trunks");
    return ENS_EMPI;
  }
  j->trunk.checksum = sum;
  /* Features of every split, once per node, eval mode. */
  ens_model tm;
  ret = ens_model_create(&tm, &j->arch, 0, L, 0, c->batch);
  if (ret) {
    snprintf(err, errlen, "cannot create the trunk: %s", ens_strerror(ret));
    return ret;
  }
  memcpy(tm.params, j->trunk.params, j->trunk.nparams * sizeof(float));
  memcpy(tm.stats, j->trunk.stats, j->trunk.nstats * sizeof(float));
  j->data.fd = tm.out;
  const int nrows[3] = {j->data.n_train, j->data.n_test, j->data.n_val};
  const float *in[3] = {j->data.sets.train.x, j->data.sets.test.x, j->data.sets.val.x};
  size_t off[3], bytes = 0;
  for (int s = 0; s < 3; s++) {
    off[s] = bytes;
    size_t b = (size_t)nrows[s] * (size_t)j->data.fd * sizeof(float);
    bytes += (b + ENS_DATA_ALIGN - 1) / ENS_DATA_ALIGN * ENS_DATA_ALIGN;
  }
  ret = ens_shm_alloc(&j->trunk.shm, &j->node, bytes, "the trunk features", err, errlen);
  if (ret) {
    ens_model_free(&tm);
    return ret;
  }
  float *out[3];
  for (int s = 0; s < 3; s++)
    out[s] = (float *)(void *)(j->trunk.shm.base + off[s]);
  /* The node's ranks share the work: the batches of all three splits (each
   * split in batches of B rows from its row 0, exactly as one rank computes
   * them alone, so the features are bitwise the same) form one list, and
   * node rank r takes the r-th contiguous part of it. */
  const long B = tm.batch_max;
  long nb[3], nbatches = 0;
  for (int s = 0; s < 3; s++) {
    nb[s] = (nrows[s] + B - 1) / B;
    nbatches += nb[s];
  }
  /* feature_seconds: this rank's own computation, from here (the block's
   * allocation above is collective, so it also holds the wait for the
   * node's slowest rank to arrive). */
  double tf = ens_comm_wtime();
  long lo = nbatches * j->node.rank / j->node.size;
  long hi = nbatches * (j->node.rank + 1) / j->node.size;
  long base = 0;
  j->trunk.feature_rows = 0;
  for (int s = 0; s < 3; s++) {
    long a = lo > base ? lo - base : 0, b = hi - base < nb[s] ? hi - base : nb[s];
    if (a < b) {
      long r0 = a * B, r1 = b * B < nrows[s] ? b * B : nrows[s];
      ens_model_features(&tm, out[s] + (size_t)r0 * j->data.fd, in[s] + (size_t)r0 * j->data.dim,
                         (int)(r1 - r0));
      j->trunk.feature_rows += (int)(r1 - r0);
    }
    base += nb[s];
  }
  j->trunk.feature_seconds = ens_comm_wtime() - tf;
  ens_model_free(&tm);
  /* Node barrier: every slice is written before any head reads the block. */
  ens_shm_sync(&j->trunk.shm);
  j->trunk.train = out[0];
  j->trunk.test = out[1];
  j->trunk.val = out[2];
  j->data.ftrain = j->trunk.train;
  j->data.ftest = j->trunk.test;
  j->data.fval = j->trunk.val;
  if (c->verbose)
    printf("[rank %d] trunk ready: %d block%s, %zu parameters, checksum %08x, features (%d, %d): "
           "%d rows computed here (1/%d of node %s) in %.2f s, %.1f s in all\n",
           j->rank, L, L == 1 ? "" : "s", j->trunk.nparams, sum, j->data.n_train, j->data.fd,
           j->trunk.feature_rows, j->node.size, j->node.name, j->trunk.feature_seconds,
           ens_comm_wtime() - t0);
  fflush(stdout);
  return 0;
}
