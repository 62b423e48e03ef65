/* Job setup on every rank: the nodes (node.c), the data, one copy per node
 * (data.c), the trunk (trunk.c), the member range and buffers, and on rank 0
 * the temporary result file with its static parts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "ens/error.h"
#include "ens/rng.h"
#include "ens/search.h"
#include "ens/hyperdeep.h"
#include "ensemble/hyperdeep.h"
#include "ensemble/job.h"
#include "ensemble/ranks.h"
#include "ensemble/result.h"
#include "ensemble/trunk.h"
#include "io/fsutil.h"
#include "io/features.h"
#include "io/h5util.h"
#include "io/storage.h"

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
  ret |= ens_h5_attr_i64(f, "/", "members_total", ens_hyperdeep_total(c));
  ret |= ens_h5_attr_str(f, "/", "mode", ens_mode_name(c->mode));
  ret |= ens_h5_attr_str(f, "/", "combine", ens_combine_name(c->combine));
  ret |= ens_h5_attr_i64(f, "/", "seed", (int64_t)c->seed);
  ret |= ens_h5_attr_i64(f, "/", "classes", j->data.classes);
  ret |= ens_h5_attr_str(f, "/", "task", ens_task_kind_name(&j->task));
  if (j->task.regress) {
    ret |= ens_h5_attr_i64(f, "/", "targets", j->task.T);
    ret |= ens_h5_attr_str(f, "/", "loss", ens_loss_name(c->loss));
  }
  ret |= ens_h5_attr_str(f, "/", "optimizer", ens_optimizer_name(c->optimizer));
  ret |= ens_h5_attr_str(f, "/", "calibrate", ens_calibrate_name(c->calibrate));
  ret |= ens_h5_attr_i64(f, "/", "threads", c->threads);
  ret |= ens_h5_attr_i64(f, "/", "data_checksum", j->data.checksum);
  ret |= ens_h5_attr_i64(f, "/", "shared_init", j->shared_init);
  /* Rows of each split, and where the scored ("test") rows come from. */
  ret |= ens_h5_attr_i64(f, "/", "train_rows", j->data.n_train);
  ret |= ens_h5_attr_i64(f, "/", "test_rows", j->data.n_test);
  ret |= ens_h5_attr_i64(f, "/", "val_rows", j->data.n_val);
  ret |= ens_h5_attr_str(f, "/", "test_split", j->data.scored ? j->data.scored : "/test");
  if (ret)
    return ENS_EHDF5;
  /* /model: architecture of the full network and the input transform. */
  /* hidden widths (MLP form); a layer list has none (zeros, one per block) */
  int32_t hidden[ENS_MAX_LAYERS + 1] = {0};
  for (int i = 0; i < j->arch.n_hidden && i < ENS_MAX_HIDDEN && j->arch.nspec == 0; i++)
    hidden[i] = j->arch.hidden[i];
  hsize_t nh = (hsize_t)j->arch.n_hidden;
  int32_t dummy = 0;
  ret |= ens_h5_write(f, "/model/hidden", H5T_NATIVE_INT32, 1, &nh, nh ? hidden : &dummy, 0);
  ret |= ens_h5_attr_i64(f, "/model", "inputs", j->data.dim);
  ret |= ens_h5_attr_i64(f, "/model", "classes", j->data.classes);
  ret |= ens_h5_attr_i64(f, "/model", "targets", j->task.T);
  ret |= ens_h5_attr_str(f, "/model", "task", ens_task_kind_name(&j->task));
  ret |= ens_h5_attr_i64(f, "/model", "head", (int64_t)j->task.head);
  ret |= ens_h5_attr_i64(f, "/model", "batchnorm", j->arch.batchnorm);
  ret |= ens_h5_attr_i64(f, "/model", "weightnorm", j->arch.weightnorm);
  ret |= ens_h5_attr_f64(f, "/model", "dropout", j->arch.dropout);
  ret |= ens_h5_attr_i64(f, "/model", "trunk_layers", j->trunk.layers);
  ret |= ens_h5_attr_i64(f, "/model", "member_params", (int64_t)j->nparams);
  ret |= ens_h5_attr_i64(f, "/model", "member_bn_stats", (int64_t)j->nstats);
  ens_model full;
  char desc[2048];
  if (ens_model_create(&full, &j->arch, 0, j->arch.n_hidden, 1, 1) == 0) {
    ens_model_describe(&full, desc, sizeof(desc));
    ret |= ens_h5_attr_str(f, "/model", "layers", desc);
    /* A layer list: the input shape its first layer takes (predict refuses
     * other image shapes) and the table of layers (ens info). */
    if (j->arch.nspec > 0) {
      char *table = malloc(8192);
      if (table) {
        ens_model_summary(&full, table, 8192);
        ret |= ens_h5_attr_str(f, "/model", "summary", table);
        free(table);
      }
      ret |= ens_trunk_write_layer_list(f, &j->arch);
    }
    ens_model_free(&full);
  }
  ret |= ens_h5_attr_i64(f, "/model", "standardized", j->data.mean != NULL);
  if (j->data.mean) {
    hsize_t d = (hsize_t)j->data.dim;
    ret |= ens_h5_write(f, "/model/input_mean", H5T_NATIVE_FLOAT, 1, &d, j->data.mean, 0);
    ret |= ens_h5_write(f, "/model/input_std", H5T_NATIVE_FLOAT, 1, &d, j->data.std, 0);
  }
  /* Names of classes, targets and features from the input (ens import csv
   * writes them), for info and predict. */
  if (j->task.regress)
    ens_h5_copy_names(f, "/model/target_names", c->data_path, "/target_names", j->task.T);
  else
    ens_h5_copy_names(f, "/model/class_names", c->data_path, "/class_names", j->data.classes);
  ens_h5_copy_names(f, "/model/feature_names", c->data_path, "/feature_names", j->data.dim);
  /* The columns ens import csv described (categories, target and id column,
   * dropped columns, delimiter): what ens predict needs to read a CSV. */
  ret |= ens_schema_store(f, c->data_path);
  if (j->data.ymean) {
    hsize_t T = (hsize_t)j->task.T;
    ret |= ens_h5_write(f, "/model/target_mean", H5T_NATIVE_FLOAT, 1, &T, j->data.ymean, 0);
    ret |= ens_h5_write(f, "/model/target_std", H5T_NATIVE_FLOAT, 1, &T, j->data.ystd, 0);
  }
  if (j->trunk.layers > 0) {
    hsize_t np = j->trunk.nparams, ns = j->trunk.nstats ? j->trunk.nstats : 0;
    ret |= ens_h5_write(f, "/trunk/params", H5T_NATIVE_FLOAT, 1, &np, j->trunk.params, 0);
    ret |= ens_h5_write(f, "/trunk/bn_stats", H5T_NATIVE_FLOAT, 1, &ns, j->trunk.stats, 0);
    ret |= ens_h5_attr_i64(f, "/trunk", "layers", j->trunk.layers);
    ret |= ens_h5_attr_str(f, "/trunk", "source", ens_trunk_source_name(c->trunk_source));
    ret |= ens_h5_attr_i64(f, "/trunk", "checksum", j->trunk.checksum);
  }
  /* Per-member prediction rows, in their stored parts: probabilities, or
   * means and variances. */
  const char *parts[ENS_TASK_MAX_PARTS];
  const int np = ens_task_parts(&j->task, parts);
  hsize_t M = (hsize_t)(j->last - j->first), w = (hsize_t)(j->task.W / np);
  hsize_t pd[3] = {M, (hsize_t)j->data.n_test, w}, vd[3] = {M, (hsize_t)j->data.n_val, w};
  for (int split = 0; split < (j->data.n_val ? 2 : 1); split++)
    for (int p = 0; p < np; p++) {
      char path[64];
      snprintf(path, sizeof(path), "/members/%s%s", split ? "val_" : "", parts[p]);
      ret |= ens_h5_create(f, path, H5T_NATIVE_FLOAT, 3, split ? vd : pd);
    }
  return ret ? ENS_EHDF5 : 0;
}

/* Rank 0: the temporary result file beside [output] path (its folder is
 * created like mkdir -p), its space reserved, the static parts written.
 * Messages name the output, never the temporary name. */
/* Augmentation of image rows (in training steps only): the rows must be
 * images reaching the trained networks, so not trunk features. A pixel the
 * crop uncovers gets a raw 0 in the job's standardization. */
static int setup_augment(ens_job *j, char *err, size_t errlen) {
  const ens_config *c = j->c;
  const char *key = c->augment_crop > 0 ? "augment_crop" : "augment_flip";
  if (j->data.img[0] == 0) {
    snprintf(err, errlen,
             "[data] %s needs image rows, and %s: /train/x has flat rows of %d features "
             "(write it as (n, H, W) or (n, C, H, W))",
             key, c->data_path, j->data.dim);
    return ENS_ECONFIG;
  }
  if (c->trunk_source != ENS_TRUNK_NONE) {
    snprintf(err, errlen,
             "[data] %s with a [trunk]: the trunk's features are computed once per row, so "
             "the heads cannot see augmented images (augment when pretraining outside this "
             "job, or train full members)",
             key);
    return ENS_ECONFIG;
  }
  j->aug = (ens_augment){.crop = c->augment_crop, .flip = c->augment_flip, .c = j->data.img[0],
                         .h = j->data.img[1], .w = j->data.img[2]};
  if (j->data.mean) {
    j->aug_pad = malloc((size_t)j->data.dim * sizeof(float));
    if (!j->aug_pad)
      return ENS_ENOMEM;
    for (int i = 0; i < j->data.dim; i++)
      j->aug_pad[i] = (0.0f - j->data.mean[i]) / j->data.std[i];
    j->aug.pad = j->aug_pad;
  }
  return 0;
}

/* Rank 0 at start: every layer's output shape and parameter count. */
static void print_layers(const ens_job *j) {
  ens_model full;
  if (ens_model_create(&full, &j->arch, 0, j->arch.n_hidden, 1, 1))
    return;
  char *table = malloc(8192);
  if (table) {
    ens_model_summary(&full, table, 8192);
    printf("layers%s:\n%s",
           ens_search_conv_on(j->c) ? " (of member 0; [search] conv_blocks draws each member's)"
           : j->c->mode == ENS_MODE_SEARCH && j->c->search_layers[0]
               ? " (of [model] layers; a search draws each member's)"
               : "",
           table);
    if (j->trunk.layers > 0)
      printf("  (the first %d block%s the trunk)\n", j->trunk.layers,
             j->trunk.layers == 1 ? " forms" : "s form");
    fflush(stdout);
    free(table);
  }
  ens_model_free(&full);
}

static int create_result(ens_job *j, char *err, size_t errlen) {
  const char *out = j->c->output_path;
  char dir[ENS_PATH_MAX + 8];
  ens_dirname(out, dir, sizeof(dir));
  if (ens_mkdir_parent(out) != 0) {
    snprintf(err, errlen, "[output] path = %s: cannot create its folder %s (%s)", out, dir,
             strerror(errno));
    return ENS_EIO;
  }
  ens_tmp_path(out, j->tmp_path, sizeof(j->tmp_path));
  ens_h5_take_errno(); /* forget earlier failures (probes of absent files) */
  j->file = H5Fcreate(j->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (j->file < 0) {
    int e = ens_h5_take_errno();
    if (!e && access(dir, W_OK) != 0)
      e = errno;
    j->tmp_path[0] = '\0';
    if (e)
      return ens_storage_write_error(err, errlen, e, out, 0, "[output] path: cannot create");
    snprintf(err, errlen,
             "[output] path = %s: cannot create a file in %s (HDF5 could not "
             "create it)",
             out, dir);
    return ENS_EIO;
  }
  /* The result is the one file HDF5 writes to disk itself (it is too large
   * to build in memory): reserve its space now, so that a disk filling up
   * later cannot fail its writes half-way. */
  int ret = ens_storage_reserve(j->tmp_path, j->result_bytes, "cannot reserve space for the result",
                                err, errlen);
  if (!ret && (ret = write_static(j)))
    ret = ens_job_result_error(j, ret, err, errlen, "writing the model description", -1);
  return ret;
}

/* Status agreed by all ranks (fault.c): the worst outcome wins; the
 * message comes from the lowest rank that had it. */
static int agree(ens_job *j, int ret, char *err, size_t errlen) {
  return ens_agree(j->comm, ret, err, errlen);
}

/* Rank 0, verbose: one line per node on its copy of the data. */
static void print_node_data(const ens_job *j) {
  const ens_node *n = &j->node;
  for (int i = 0; i < n->count; i++) {
    int reads = 0, ranks = 0;
    int64_t bytes = 0, fbytes = 0;
    for (int r = 0; r < j->size; r++) {
      if (j->ranks[r].node != i)
        continue;
      reads += j->ranks[r].data_reads;
      ranks++;
      bytes = j->ranks[r].data_bytes;
      fbytes = j->ranks[r].feature_bytes;
    }
    char list[256], feat[96] = "";
    ens_node_rank_list(n, j->size, i, list, sizeof(list));
    if (j->trunk.layers > 0)
      snprintf(feat, sizeof(feat), "; trunk features %lld bytes", (long long)fbytes);
    printf("node %s: data read %s, %lld bytes shared by %d rank%s (%s)%s\n",
           n->names + (size_t)i * MPI_MAX_PROCESSOR_NAME,
           reads == 1 ? "once" : reads == 0 ? "never" : "more than once", (long long)bytes, ranks,
           ranks == 1 ? "" : "s", list, feat);
  }
  fflush(stdout);
}

int ens_job_setup(ens_job *j, const ens_config *c, const ens_job_opts *o, MPI_Comm comm,
                  int flags, char *err, size_t errlen) {
  memset(j, 0, sizeof(*j));
  j->c = c;
  j->o = o;
  j->comm = comm;
  j->file = -1;
  err[0] = '\0';
  ens_comm_rank(comm, &j->rank);
  ens_comm_size(comm, &j->size);
  ens_h5_quiet();
  j->first = c->first_member;
  j->last = c->count > 0 ? c->first_member + c->count : c->members;
  if (ens_hyperdeep_on(c)) { /* the search, then its retrained configurations */
    j->last = ens_hyperdeep_total(c);
    j->hyperdeep = malloc(sizeof(*j->hyperdeep));
    if (!j->hyperdeep || ens_hyperdeep_init(j->hyperdeep, j)) {
      free(j->hyperdeep);
      j->hyperdeep = NULL;
      snprintf(err, errlen, "out of memory for the hyper-deep member map");
      return ENS_ENOMEM;
    }
  }
  j->shared_init = c->share_init == ENS_SHARE_YES ||
                   (c->share_init == ENS_SHARE_AUTO && c->combine == ENS_COMBINE_PARAMS);
  if (c->checkpoint_dir[0])
    snprintf(j->ckpt.dir, sizeof(j->ckpt.dir), "%s", c->checkpoint_dir);
  else
    snprintf(j->ckpt.dir, sizeof(j->ckpt.dir), "%s.ckpt", c->output_path);

  int ret = ens_node_init(&j->node, comm, err, errlen);
  if (ret)
    return ret; /* the same on every rank */
  if ((flags & ENS_SETUP_TRAIN) && j->rank == 0)
    ens_node_print_layout(&j->node, c->threads);
  ret = ens_jobdata_load(j, err, errlen);
  if (!ret) {
    ens_task_init(&j->task, j->data.sets.regress, j->data.classes, j->data.sets.targets, c->loss, j->data.ymean,
                  j->data.ystd);
    ens_job_arch(j, &j->arch);
    ret = ens_job_check_arch(j, o->config_path, o->layers_set, err, errlen);
    j->data.ftrain = j->data.sets.train.x;
    j->data.ftest = j->data.sets.test.x;
    j->data.fval = j->data.sets.val.x;
    j->data.fd = j->data.dim;
  }
  if (!ret && c->standardize && c->standardize_by == ENS_STD_CHANNEL && j->data.img[0] == 0) {
    snprintf(err, errlen,
             "[data] standardize_by = channel needs image rows, and %s: /train/x has flat rows "
             "of %d features (write it as (n, H, W) or (n, C, H, W))",
             c->data_path, j->data.dim);
    ret = ENS_ECONFIG;
  }
  if (!ret && (c->augment_crop > 0 || c->augment_flip))
    ret = setup_augment(j, err, errlen);
  if (!ret) {
    size_t rows = (size_t)(j->data.n_test > j->data.n_val ? j->data.n_test : j->data.n_val);
    j->eval_pred = malloc(rows * j->task.W * sizeof(float));
    j->scratch = malloc((size_t)(j->data.n_test ? j->data.n_test : 1) * j->task.W * sizeof(float));
    if (!j->eval_pred || !j->scratch)
      ret = ENS_ENOMEM;
  }
  /* Data errors are identical on every rank; agree before going on. */
  ret = agree(j, ret, err, errlen);
  if (ret)
    return ret;
  if (o->guard) { /* keys the data leaves unused, an existing result, checkpoints (guard.c) */
    ret = agree(j, ens_guard_data_keys(j, err, errlen), err, errlen);
    if (!ret)
      ret = ens_guard_existing(j, err, errlen);
    if (ret || j->complete)
      return ret;
  }
  /* Where the job writes: rank 0 checks the output directory, locks the
   * checkpoint directory and compares the space needed with the free
   * space; then every other rank checks that it can write checkpoints. */
  ret = agree(j, j->rank == 0 ? ens_job_check_storage(j, err, errlen) : 0, err, errlen);
  if (!ret && !o->no_checkpoints && j->size > 1)
    ret = agree(j, j->rank != 0 ? ens_job_check_storage(j, err, errlen) : 0, err, errlen);
  if (ret)
    return ret;
  if (c->trunk_source != ENS_TRUNK_NONE || o->trunk_from) {
    ret = ens_trunk_prepare(j, err, errlen);
    ret = agree(j, ret, err, errlen);
    if (ret)
      return ret;
  }
  if ((ret = ens_job_gather_ranks(j))) {
    snprintf(err, errlen, "out of memory gathering the layout of %d ranks", j->size);
    return ret;
  }
  if (j->rank == 0 && c->verbose && (flags & ENS_SETUP_TRAIN))
    print_node_data(j);
  if (j->rank == 0 && (flags & ENS_SETUP_TRAIN) && j->arch.nspec > 0)
    print_layers(j);
  if (j->rank == 0 && (flags & ENS_SETUP_TRAIN) && c->verbose)
    ens_job_print_conv_draws(j);
  size_t np, ns;
  ens_arch_sizes(&j->arch, j->trunk.layers, j->arch.n_hidden, 1, &np, &ns);
  j->nparams = np;
  j->nstats = ns;
  ens_model probe; /* the job's architecture must be buildable */
  if (!ens_h5_affordable((unsigned long long)(np + ns) * 4 * sizeof(float))) {
    /* parameters, gradients and two optimizer moments */
    snprintf(err, errlen,
             "[model] hidden: a member has %zu parameters, more than the memory of "
             "this node can train",
             np);
    return agree(j, ENS_ECONFIG, err, errlen);
  }
  ret = ens_model_create(&probe, &j->arch, j->trunk.layers, j->arch.n_hidden, 1, 2);
  ens_model_free(&probe);
  if (!ret) {
    j->rows = malloc((size_t)j->data.n_train * sizeof(int32_t));
    if (!j->rows) {
      snprintf(err, errlen, "out of memory allocating member buffers");
      ret = ENS_ENOMEM;
    }
  } else {
    snprintf(err, errlen, "cannot create the network: %s", ens_strerror(ret));
  }
  if (!ret && j->rank == 0)
    ret = create_result(j, err, errlen);
  return agree(j, ret, err, errlen);
}

void ens_job_free(ens_job *j) {
  free(j->aug_pad);
  j->aug_pad = NULL;
  free(j->lost_ranks);
  j->lost_ranks = NULL;
  if (j->file >= 0) {
    H5Fclose(j->file);
    j->file = -1;
  }
  if (j->tmp_path[0])
    unlink(j->tmp_path); /* still there only when the job did not finish */
  ens_job_checkpoint_unlock(j); /* the checkpoints (if any) stay */
  ens_trainer_free(&j->trainer);
  /* Node-shared blocks: collective over the node, in the same order on
   * every rank. */
  ens_shm_free(&j->trunk.shm);
  ens_jobdata_free(&j->data);
  ens_node_free(&j->node);
  free(j->ranks);
  free(j->trunk.params);
  free(j->trunk.stats);
  free(j->rows);
  free(j->pack);
  free(j->eval_pred);
  free(j->scratch);

  free(j->held);
  if (j->hyperdeep)
    ens_hyperdeep_free(j->hyperdeep);
  free(j->hyperdeep);
  memset(j, 0, sizeof(*j));
  j->file = -1;
}
