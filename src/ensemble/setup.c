/* Job setup on every rank: data loading, standardization, member range,
 * buffers, and on rank 0 the temporary result file with its static parts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "ens/error.h"
#include "ens/rng.h"
#include "ensemble/job.h"
#include "ensemble/trunk.h"
#include "io/h5util.h"

void ens_job_bootstrap_rows(int32_t *rows, int n, uint64_t seed, uint32_t member) {
  ens_rng r;
  ens_rng_init(&r, seed, member, ENS_STREAM_BOOTSTRAP, 0);
  for (int i = 0; i < n; i++)
    rows[i] = (int32_t)ens_rng_below(&r, (uint32_t)n);
}

/* adler32 over the splits' values and labels: identifies the data set. */
static int64_t data_checksum(const ens_data *d) {
  const ens_split *s[3] = {&d->train, &d->test, &d->val};
  uLong a = adler32(0L, Z_NULL, 0);
  for (int i = 0; i < 3; i++) {
    if (!s[i]->n)
      continue;
    a = adler32_z(a, (const Bytef *)s[i]->x, (size_t)s[i]->n * s[i]->d * sizeof(float));
    if (s[i]->y)
      a = adler32_z(a, (const Bytef *)s[i]->y, (size_t)s[i]->n * sizeof(int32_t));
    if (s[i]->t)
      a = adler32_z(a, (const Bytef *)s[i]->t, (size_t)s[i]->n * d->targets * sizeof(float));
  }
  return (int64_t)a;
}

/* Writes what is known before training: root attributes and /model. */
static int write_static(ens_job *j) {
  const ens_config *c = j->c;
  hid_t f = j->file;
  int ret = 0;
  ret |= ens_h5_attr_str(f, "/", "ens_version", ENS_VERSION);
  ret |= ens_h5_attr_str(f, "/", "config", j->o->config_text ? j->o->config_text : "");
  ret |= ens_h5_attr_i64(f, "/", "ranks", j->size);
  ret |= ens_h5_attr_i64(f, "/", "members", j->last - j->first);
  ret |= ens_h5_attr_i64(f, "/", "first_member", j->first);
  ret |= ens_h5_attr_i64(f, "/", "members_total", c->members);
  ret |= ens_h5_attr_str(f, "/", "mode", ens_mode_name(c->mode));
  ret |= ens_h5_attr_str(f, "/", "combine", ens_combine_name(c->combine));
  ret |= ens_h5_attr_i64(f, "/", "seed", (int64_t)c->seed);
  ret |= ens_h5_attr_i64(f, "/", "classes", j->classes);
  ret |= ens_h5_attr_str(f, "/", "task", ens_task_kind_name(&j->task));
  if (j->task.regress) {
    ret |= ens_h5_attr_i64(f, "/", "targets", j->task.T);
    ret |= ens_h5_attr_str(f, "/", "loss", ens_loss_name(c->loss));
  }
  ret |= ens_h5_attr_str(f, "/", "optimizer", ens_optimizer_name(c->optimizer));
  ret |= ens_h5_attr_str(f, "/", "calibrate", ens_calibrate_name(c->calibrate));
  ret |= ens_h5_attr_i64(f, "/", "threads", c->threads);
  ret |= ens_h5_attr_i64(f, "/", "data_checksum", j->data_checksum);
  ret |= ens_h5_attr_i64(f, "/", "shared_init", j->shared_init);
  if (ret)
    return ENS_EHDF5;
  /* /model: architecture of the full network and the input transform. */
  int32_t hidden[ENS_MAX_HIDDEN];
  for (int i = 0; i < j->arch.n_hidden; i++)
    hidden[i] = j->arch.hidden[i];
  hsize_t nh = (hsize_t)j->arch.n_hidden;
  int32_t dummy = 0;
  ret |= ens_h5_write(f, "/model/hidden", H5T_NATIVE_INT32, 1, &nh, nh ? hidden : &dummy, 0);
  ret |= ens_h5_attr_i64(f, "/model", "inputs", j->d);
  ret |= ens_h5_attr_i64(f, "/model", "classes", j->classes);
  ret |= ens_h5_attr_i64(f, "/model", "targets", j->task.T);
  ret |= ens_h5_attr_str(f, "/model", "task", ens_task_kind_name(&j->task));
  ret |= ens_h5_attr_i64(f, "/model", "head", (int64_t)j->task.head);
  ret |= ens_h5_attr_i64(f, "/model", "batchnorm", j->arch.batchnorm);
  ret |= ens_h5_attr_f64(f, "/model", "dropout", j->arch.dropout);
  ret |= ens_h5_attr_i64(f, "/model", "trunk_layers", j->trunk_layers);
  ret |= ens_h5_attr_i64(f, "/model", "member_params", (int64_t)j->nparams);
  ret |= ens_h5_attr_i64(f, "/model", "member_bn_stats", (int64_t)j->nstats);
  ens_model full;
  char desc[2048];
  if (ens_model_create(&full, &j->arch, 0, j->arch.n_hidden, 1, 1) == 0) {
    ens_model_describe(&full, desc, sizeof(desc));
    ens_model_free(&full);
    ret |= ens_h5_attr_str(f, "/model", "layers", desc);
  }
  ret |= ens_h5_attr_i64(f, "/model", "standardized", j->mean != NULL);
  if (j->mean) {
    hsize_t d = (hsize_t)j->d;
    ret |= ens_h5_write(f, "/model/input_mean", H5T_NATIVE_FLOAT, 1, &d, j->mean, 0);
    ret |= ens_h5_write(f, "/model/input_std", H5T_NATIVE_FLOAT, 1, &d, j->std, 0);
  }
  if (j->ymean) {
    hsize_t T = (hsize_t)j->task.T;
    ret |= ens_h5_write(f, "/model/target_mean", H5T_NATIVE_FLOAT, 1, &T, j->ymean, 0);
    ret |= ens_h5_write(f, "/model/target_std", H5T_NATIVE_FLOAT, 1, &T, j->ystd, 0);
  }
  if (j->trunk_layers > 0) {
    hsize_t np = j->trunk_nparams, ns = j->trunk_nstats ? j->trunk_nstats : 0;
    ret |= ens_h5_write(f, "/trunk/params", H5T_NATIVE_FLOAT, 1, &np, j->trunk_params, 0);
    ret |= ens_h5_write(f, "/trunk/bn_stats", H5T_NATIVE_FLOAT, 1, &ns, j->trunk_stats, 0);
    ret |= ens_h5_attr_i64(f, "/trunk", "layers", j->trunk_layers);
    ret |= ens_h5_attr_str(f, "/trunk", "source", ens_trunk_source_name(c->trunk_source));
    ret |= ens_h5_attr_i64(f, "/trunk", "checksum", j->trunk_checksum);
  }
  /* Per-member prediction rows: probabilities, or means and variances. */
  hsize_t M = (hsize_t)(j->last - j->first);
  hsize_t w = (hsize_t)(j->task.regress ? j->task.T : j->task.C);
  hsize_t pd[3] = {M, (hsize_t)j->n_test, w}, vd[3] = {M, (hsize_t)j->n_val, w};
  if (!j->task.regress) {
    ret |= ens_h5_create(f, "/members/probs", H5T_NATIVE_FLOAT, 3, pd);
    if (j->n_val)
      ret |= ens_h5_create(f, "/members/val_probs", H5T_NATIVE_FLOAT, 3, vd);
  } else {
    ret |= ens_h5_create(f, "/members/mean", H5T_NATIVE_FLOAT, 3, pd);
    ret |= ens_h5_create(f, "/members/var", H5T_NATIVE_FLOAT, 3, pd);
    if (j->n_val) {
      ret |= ens_h5_create(f, "/members/val_mean", H5T_NATIVE_FLOAT, 3, vd);
      ret |= ens_h5_create(f, "/members/val_var", H5T_NATIVE_FLOAT, 3, vd);
    }
  }
  return ret ? ENS_EHDF5 : 0;
}

/* Regression targets: the networks learn standardized targets (train
 * split's per-target mean and std, [data] standardize_y); predictions are
 * turned back into the original units by the task. */
static int setup_targets(ens_job *j) {
  const int T = j->data.targets, n = j->n_train;
  j->train_t = j->data.train.t;
  if (!j->c->standardize_y)
    return 0;
  j->ymean = malloc((size_t)T * sizeof(float));
  j->ystd = malloc((size_t)T * sizeof(float));
  float *ts = malloc((size_t)n * T * sizeof(float));
  if (!j->ymean || !j->ystd || !ts) {
    free(ts);
    return ENS_ENOMEM;
  }
  ens_split view = {.n = n, .d = T, .x = j->data.train.t};
  ens_standardize_fit(j->ymean, j->ystd, &view);
  memcpy(ts, j->data.train.t, (size_t)n * T * sizeof(float));
  ens_split tv = {.n = n, .d = T, .x = ts};
  ens_standardize_apply(&tv, j->ymean, j->ystd);
  j->train_t = ts;
  return 0;
}

/* Status agreed by all ranks: the worst local code wins; the message comes
 * from the lowest rank that failed. */
static int agree(ens_job *j, int ret, char *err, size_t errlen) {
  int bad = ret ? j->rank : j->size, first_bad;
  MPI_Allreduce(&bad, &first_bad, 1, MPI_INT, MPI_MIN, j->comm);
  if (first_bad == j->size)
    return 0;
  int code = ret;
  MPI_Bcast(&code, 1, MPI_INT, first_bad, j->comm);
  char msg[1024];
  if (j->rank == first_bad)
    snprintf(msg, sizeof(msg), "%s", err);
  MPI_Bcast(msg, sizeof(msg), MPI_CHAR, first_bad, j->comm);
  snprintf(err, errlen, "%s", msg);
  return code;
}

int ens_job_setup(ens_job *j, const ens_config *c, const ens_job_opts *o, MPI_Comm comm,
                  char *err, size_t errlen) {
  memset(j, 0, sizeof(*j));
  j->c = c;
  j->o = o;
  j->comm = comm;
  j->file = -1;
  err[0] = '\0';
  MPI_Comm_rank(comm, &j->rank);
  MPI_Comm_size(comm, &j->size);
  ens_h5_quiet();
  j->first = c->first_member;
  j->last = c->count > 0 ? c->first_member + c->count : c->members;
  j->shared_init = c->share_init == ENS_SHARE_YES ||
                   (c->share_init == ENS_SHARE_AUTO && c->combine == ENS_COMBINE_PARAMS);
  if (c->checkpoint_dir[0])
    snprintf(j->ckpt_dir, sizeof(j->ckpt_dir), "%s", c->checkpoint_dir);
  else
    snprintf(j->ckpt_dir, sizeof(j->ckpt_dir), "%s.ckpt", c->output_path);

  int ret = ens_data_load(&j->data, c->data_path, err, errlen);
  if (!ret && c->val_fraction > 0.0 && j->data.val.n == 0)
    ret = ens_data_split_val(&j->data, c->val_fraction, c->seed);
  /* The task: [model] task, or (auto) what the labels are. */
  if (!ret && c->task == ENS_TASK_CLASSIFY && j->data.regress) {
    snprintf(err, errlen,
             "%s: /train/y holds floating-point targets but [model] task = classify (class "
             "labels must be integers; use task = regress or auto)",
             c->data_path);
    ret = ENS_EFORMAT;
  }
  if (!ret && c->task == ENS_TASK_REGRESS && !j->data.regress)
    ret = ens_data_labels_to_targets(&j->data);
  if (!ret && j->data.regress && c->combine == ENS_COMBINE_VOTE) {
    snprintf(err, errlen,
             "[ensemble] combine = vote: %s holds regression targets (float /train/y), and "
             "votes need classes (use average, select or params)",
             c->data_path);
    ret = ENS_ECONFIG;
  }
  if (!ret && j->data.val.n == 0 &&
      (c->mode == ENS_MODE_SEARCH || c->combine == ENS_COMBINE_SELECT ||
       c->calibrate != ENS_CALIBRATE_NONE)) {
    snprintf(err, errlen,
             "%s needs validation rows, and %s has no /val group and [data] val_fraction = 0 "
             "(set e.g. val_fraction = 0.1)",
             c->mode == ENS_MODE_SEARCH        ? "[ensemble] mode = search"
             : c->combine == ENS_COMBINE_SELECT ? "[ensemble] combine = select"
                                                : "[ensemble] calibrate = temperature",
             c->data_path);
    ret = ENS_ECONFIG;
  }
  if (!ret) {
    j->classes = j->data.classes;
    j->n_train = j->data.train.n;
    j->n_test = j->data.test.n;
    j->n_val = j->data.val.n;
    j->d = j->data.train.d;
    if (j->n_train < 2) {
      snprintf(err, errlen, "%s: /train has %d rows; at least 2 are needed", c->data_path,
               j->n_train);
      ret = ENS_EFORMAT;
    }
  }
  if (!ret)
    j->data_checksum = data_checksum(&j->data);
  if (!ret && c->standardize) {
    j->mean = malloc((size_t)j->d * sizeof(float));
    j->std = malloc((size_t)j->d * sizeof(float));
    if (!j->mean || !j->std) {
      ret = ENS_ENOMEM;
    } else {
      ens_standardize_fit(j->mean, j->std, &j->data.train);
      ens_standardize_apply(&j->data.train, j->mean, j->std);
      ens_standardize_apply(&j->data.test, j->mean, j->std);
      if (j->data.val.n)
        ens_standardize_apply(&j->data.val, j->mean, j->std);
    }
  }
  if (!ret && j->data.regress)
    ret = setup_targets(j);
  if (!ret) {
    ens_task_init(&j->task, j->data.regress, j->classes, j->data.targets, c->loss, j->ymean,
                  j->ystd);
    ens_member_arch(j, c, &j->arch);
    j->ftrain = j->data.train.x;
    j->ftest = j->data.test.x;
    j->fval = j->data.val.x;
    j->fd = j->d;
  }
  if (!ret) {
    size_t rows = (size_t)(j->n_test > j->n_val ? j->n_test : j->n_val);
    j->eval_pred = malloc(rows * j->task.W * sizeof(float));
    j->scratch = malloc((size_t)(j->n_test ? j->n_test : 1) * j->task.W * sizeof(float));
    if (!j->eval_pred || !j->scratch)
      ret = ENS_ENOMEM;
  }
  /* Data errors are identical on every rank; agree before going on. */
  ret = agree(j, ret, err, errlen);
  if (ret)
    return ret;
  if (c->trunk_source != ENS_TRUNK_NONE || o->trunk_from) {
    ret = ens_trunk_prepare(j, err, errlen);
    ret = agree(j, ret, err, errlen);
    if (ret)
      return ret;
  }
  size_t np, ns;
  ens_arch_sizes(&j->arch, j->trunk_layers, j->arch.n_hidden, 1, &np, &ns);
  j->nparams = np;
  j->nstats = ns;
  ens_model probe; /* the job's architecture must be buildable */
  ret = ens_model_create(&probe, &j->arch, j->trunk_layers, j->arch.n_hidden, 1, 2);
  ens_model_free(&probe);
  if (!ret) {
    j->rows = malloc((size_t)j->n_train * sizeof(int32_t));
    if (!j->rows) {
      snprintf(err, errlen, "out of memory allocating member buffers");
      ret = ENS_ENOMEM;
    }
  } else {
    snprintf(err, errlen, "cannot create the network: %s", ens_strerror(ret));
  }
  if (!ret && j->rank == 0) {
    snprintf(j->tmp_path, sizeof(j->tmp_path), "%s.tmp.%ld", c->output_path, (long)getpid());
    j->file = H5Fcreate(j->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (j->file < 0) {
      snprintf(err, errlen, "[output] path: cannot create '%s' (is the directory writable?)",
               j->tmp_path);
      ret = ENS_EIO;
    } else if ((ret = write_static(j))) {
      snprintf(err, errlen, "%s: cannot write the result file", j->tmp_path);
    }
  }
  return agree(j, ret, err, errlen);
}

void ens_job_free(ens_job *j) {
  if (j->file >= 0) {
    H5Fclose(j->file);
    j->file = -1;
  }
  if (j->tmp_path[0])
    unlink(j->tmp_path); /* still there only when the job did not finish */
  ens_trainer_free(&j->trainer);
  ens_data_free(&j->data);
  free(j->mean);
  free(j->std);
  free(j->trunk_train);
  free(j->trunk_test);
  free(j->trunk_val);
  free(j->trunk_params);
  free(j->trunk_stats);
  free(j->rows);
  free(j->pack);
  free(j->eval_pred);
  free(j->scratch);
  free(j->ymean);
  free(j->ystd);
  if (j->train_t != j->data.train.t)
    free(j->train_t);
  for (int i = 0; i < j->nheld; i++)
    free(j->held[i].data);
  free(j->held);
  memset(j, 0, sizeof(*j));
  j->file = -1;
}
