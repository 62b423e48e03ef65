/* What `ens train` checks before it trains, so that no work is lost to a
 * forgotten flag: the inputs exist (messages name the key, the path and the
 * folder it was resolved from); a result already at [output] path is either
 * complete for this configuration and data (nothing to do) or from another
 * one (never overwritten without --force); checkpoints of an earlier run are
 * never overwritten without --resume or --restart. Stale temporary files of
 * dead processes are removed here too. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ens/error.h"
#include "ensemble/job.h"
#include "io/fsutil.h"
#include "io/h5util.h"
#include "io/storage.h"

/* ---- inputs -------------------------------------------------------------- */

/* "the current folder, /home/u/ens" or "/data/x.h5 is absolute" for messages. */
static void resolved_from(const char *path, char *buf, size_t len) {
  char cwd[2048];
  if (path[0] == '/')
    snprintf(buf, len, "an absolute path");
  else if (getcwd(cwd, sizeof(cwd)))
    snprintf(buf, len, "resolved from the current folder, %s", cwd);
  else
    snprintf(buf, len, "resolved from the current folder");
}

/* 1 when path is the Fashion-MNIST input of the jobs in jobs/. */
static int is_fashion_input(const char *path) {
  size_t n = strlen(path), m = strlen("fashion.h5");
  return n >= m && strcmp(path + n - m, "fashion.h5") == 0 &&
         (n == m || path[n - m - 1] == '/');
}

static int check_input(const char *section, const char *key, const char *path, char *err,
                       size_t errlen) {
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
    return 0;
  int e = errno;
  char from[2200];
  resolved_from(path, from, sizeof(from));
  const char *what = stat(path, &st) == 0 ? "is a folder, not a file" : strerror(e);
  if (is_fashion_input(path))
    ens_errorf(err, errlen,
               "[%s] %s = %s: %s (%s; relative paths in a job resolve from the folder ens runs "
               "in). This is the Fashion-MNIST input: scripts/demo imports it into "
               "data/fashion.h5, or run `ens import idx --images "
               "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz --labels "
               "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz --test-images "
               "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --test-labels "
               "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz -o %s`",
               section, key, path, what, from, path);
  else
    ens_errorf(err, errlen,
               "[%s] %s = %s: %s (%s; relative paths in a job resolve from the folder ens runs "
               "in: run from another folder, or give an absolute path)",
               section, key, path, what, from);
  return ENS_EIO;
}

int ens_guard_inputs(const ens_config *c, char *err, size_t errlen) {
  int ret = check_input("data", "path", c->data_path, err, errlen);
  if (!ret && c->trunk_source == ENS_TRUNK_FILE)
    ret = check_input("trunk", "file", c->trunk_file, err, errlen);
  return ret;
}

/* ---- keys the data leaves unused ------------------------------------------ */

int ens_guard_data_keys(const ens_job *j, char *err, size_t errlen) {
  const ens_config *c = j->c;
  if (j->data.val_from_file && c->val_fraction > 0) {
    ens_errorf(err, errlen,
               "[data] val_fraction = %g is not used: %s has validation rows of its own (/val, "
               "%d rows), which the job uses instead. Remove val_fraction from the job",
               c->val_fraction, c->data_path, j->data.n_val);
    return ENS_ECONFIG;
  }
  if (!j->data.sets.regress) {
    const char *key = ens_config_key_changed(c, "model", "loss")            ? "loss"
                      : ens_config_key_changed(c, "data", "standardize_y") ? "standardize_y"
                                                                             : NULL;
    if (key) {
      char v[64];
      ens_config_key_text(c, !strcmp(key, "loss") ? "model" : "data", key, v, sizeof(v));
      ens_errorf(err, errlen,
                 "[%s] %s = %s is not used: it applies to regression, and %s holds class "
                 "labels (integer /train/y). Remove %s from the job, or set [model] task = "
                 "regress to regress on the labels",
                 !strcmp(key, "loss") ? "model" : "data", key, v, c->data_path, key);
      return ENS_ECONFIG;
    }
  }
  return 0;
}

/* ---- an existing result -------------------------------------------------- */

/* Rank 0: looks at [output] path. Returns 0 (train), 0 with *complete = 1,
 * or ENS_EINVAL with a message. */
static int check_result(ens_job *j, int *complete, char *err, size_t errlen) {
  const ens_config *c = j->c;
  const char *out = c->output_path;
  struct stat st;
  *complete = 0;
  if (stat(out, &st) != 0)
    return 0;
  const char *ways = "Nothing was trained. Set another [output] path, or run with --force to "
                     "train and overwrite it";
  if (S_ISDIR(st.st_mode)) {
    ens_errorf(err, errlen, "[output] path = %s is a folder: give a file name (e.g. %s/result.h5)",
               out, out);
    return ENS_EINVAL;
  }
  /* The job's own inputs are never its output, --force or not. */
  const char *inputs[2] = {c->data_path,
                           c->trunk_source == ENS_TRUNK_FILE ? c->trunk_file : NULL};
  const char *keys[2] = {"[data] path", "[trunk] file"};
  for (int i = 0; i < 2; i++) {
    struct stat si;
    if (inputs[i] && stat(inputs[i], &si) == 0 && si.st_dev == st.st_dev &&
        si.st_ino == st.st_ino) {
      ens_errorf(err, errlen,
                 "[output] path = %s is the same file as %s = %s: the result would overwrite "
                 "the job's input. Nothing was trained; set another [output] path (--force "
                 "does not apply)",
                 out, keys[i], inputs[i]);
      return ENS_EINVAL;
    }
  }
  hid_t f = H5Fis_hdf5(out) > 0 ? H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
  char *text = NULL;
  int64_t checksum = 0;
  int ret = 0;
  if (f < 0 || ens_h5_get_attr_str(f, "/", "config", &text) ||
      ens_h5_get_attr_i64(f, "/", "data_checksum", &checksum)) {
    if (!j->o->force) {
      ens_errorf(err, errlen, "[output] path = %s exists and is not an ens result. %s", out, ways);
      ret = ENS_EINVAL;
    }
    goto done;
  }
  ens_config saved;
  char msg[1024];
  if (ens_config_load_text(&saved, out, text, msg, sizeof(msg)) != 0) {
    if (!j->o->force) {
      ens_errorf(err, errlen,
                 "[output] path = %s holds a result whose configuration this ens cannot read "
                 "(%s). %s",
                 out, msg, ways);
      ret = ENS_EINVAL;
    }
    goto done;
  }
  char *diff = ens_config_diff_text(c, &saved, 1, "this job", "the result");
  if (!diff) {
    ret = ENS_ENOMEM;
    goto done;
  }
  int same_config = diff[0] == '\0', same_data = checksum == j->data.checksum;
  if (same_config && same_data && !j->o->force) {
    *complete = 1;
  } else if (!j->o->force) {
    if (!same_config)
      ens_errorf(err, errlen,
                 "[output] path = %s holds the result of another configuration: %s. %s", out,
                 diff, ways);
    else
      ens_errorf(err, errlen,
                 "[output] path = %s was trained on other data (the data checksum of %s "
                 "differs from the one stored in the result). %s",
                 out, c->data_path, ways);
    ret = ENS_EINVAL;
  }
  free(diff);
done:
  free(text);
  if (f >= 0)
    H5Fclose(f);
  return ret;
}

/* ---- checkpoints --------------------------------------------------------- */

typedef struct ckpt_scan {
  int units, units_done, members, trunk, stale;
  int furthest_epoch, epochs;
  int other;       /* a checkpoint of another configuration (or unreadable) */
  int same;        /* checkpoints of this configuration */
  char diff[1024]; /* how it differs */
  char other_file[300];
} ckpt_scan;

/* Parses "<prefix><int>.h5" (optionally followed by `suffix`) into *v. */
static int parse_name(const char *name, const char *prefix, const char *suffix, int *v) {
  size_t pl = strlen(prefix);
  if (strncmp(name, prefix, pl) != 0)
    return 0;
  char *end;
  long x = strtol(name + pl, &end, 10);
  if (end == name + pl || x < 0 || x > 1 << 30 || strcmp(end, suffix) != 0)
    return 0;
  *v = (int)x;
  return 1;
}

/* Compares the `config` attribute of checkpoint `path` with this job's. */
static void check_config(const ens_job *j, const char *path, const char *name, ckpt_scan *s) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  char *text = NULL, *ident = ens_job_identity_text(j->c);
  int same = 0;
  if (f >= 0 && ens_h5_get_attr_str(f, "/", "config", &text) == 0 && ident) {
    same = strcmp(text, ident) == 0;
    if (!same && !s->other) {
      ens_config saved;
      char msg[512];
      if (ens_config_load_text(&saved, path, text, msg, sizeof(msg)) == 0) {
        ens_config mine;
        ens_config_load_text(&mine, "this job", ident, msg, sizeof(msg));
        char *d = ens_config_diff_text(&mine, &saved, 1, "this job", "the checkpoints");
        snprintf(s->diff, sizeof(s->diff), "%s", d ? d : "");
        free(d);
      } else {
        snprintf(s->diff, sizeof(s->diff), "a configuration this ens cannot read");
      }
    }
  } else if (!s->other) {
    snprintf(s->diff, sizeof(s->diff), "%s is not readable as a checkpoint", name);
  }
  if (same)
    s->same++;
  else if (!s->other++)
    snprintf(s->other_file, sizeof(s->other_file), "%s", name);
  free(text);
  free(ident);
  if (f >= 0)
    H5Fclose(f);
}

/* Reads how far unit checkpoint `path` got. */
static void unit_progress(const char *path, ckpt_scan *s) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return;
  int64_t done = 0, epoch = 0;
  ens_h5_get_attr_i64(f, "/", "done", &done);
  ens_h5_get_attr_i64(f, "/", "epoch", &epoch);
  H5Fclose(f);
  if (done)
    s->units_done++;
  else if (epoch > s->furthest_epoch)
    s->furthest_epoch = (int)epoch;
}

/* Rank 0: the checkpoints of this job's units and members in the folder;
 * with remove set, deletes them instead of reading them. Stale `.tmp` files
 * of the same names are always removed: no rank writes yet. */
static int scan_checkpoints(const ens_job *j, ckpt_scan *s, int remove, int *removed) {
  memset(s, 0, sizeof(*s));
  s->epochs = j->c->epochs;
  *removed = 0;
  DIR *d = opendir(j->ckpt.dir);
  if (!d)
    return 0;
  int u_first = ens_job_unit_of(j, j->first), u_last = ens_job_unit_of(j, j->last - 1) + 1;
  struct dirent *e;
  char path[ENS_PATH_MAX + 512];
  while ((e = readdir(d)) != NULL) {
    int v, unit = 0, member = 0, trunk = 0, tmp = 0;
    if (parse_name(e->d_name, "unit_", ".h5", &v) && v >= u_first && v < u_last)
      unit = 1;
    else if (parse_name(e->d_name, "unit_", ".h5.tmp", &v) && v >= u_first && v < u_last)
      tmp = 1;
    else if (parse_name(e->d_name, "member_", ".h5", &v) && v >= j->first && v < j->last)
      member = 1;
    else if (parse_name(e->d_name, "member_", ".h5.tmp", &v) && v >= j->first && v < j->last)
      tmp = 1;
    else if (!strcmp(e->d_name, "trunk.h5"))
      trunk = 1;
    else if (!strcmp(e->d_name, "trunk.h5.tmp") || !strcmp(e->d_name, "halving.h5.tmp"))
      tmp = 1;
    else if (!strcmp(e->d_name, "halving.h5") && !remove)
      continue; /* successive halving's rankings: read with --resume only */
    else if (strcmp(e->d_name, "halving.h5") != 0)
      continue;
    snprintf(path, sizeof(path), "%s/%s", j->ckpt.dir, e->d_name);
    if (tmp) {
      if (unlink(path) == 0)
        s->stale++;
      continue;
    }
    if (remove) {
      if (unlink(path) == 0)
        (*removed)++;
      continue;
    }
    if (unit) {
      s->units++;
      unit_progress(path, s);
    }
    s->members += member;
    s->trunk += trunk;
    if (unit || trunk)
      check_config(j, path, e->d_name, s);
  }
  closedir(d);
  return 0;
}

/* "2 of 4 units, the furthest at epoch 3 of 10; 1 of 4 members finished". */
static void describe(const ens_job *j, const ckpt_scan *s, char *buf, size_t len) {
  int u_first = ens_job_unit_of(j, j->first), u_last = ens_job_unit_of(j, j->last - 1) + 1;
  int nu = u_last - u_first, nm = j->last - j->first;
  const char *unit = j->c->mode == ENS_MODE_SNAPSHOT ? "snapshot chain" : "member run";
  size_t used = 0;
  buf[0] = '\0';
  if (s->units) {
    used += (size_t)snprintf(buf, len, "%d of %d %s%s", s->units, nu, unit, nu == 1 ? "" : "s");
    if (s->units > s->units_done && used < len)
      used += (size_t)snprintf(buf + used, len - used, ", the furthest at epoch %d of %d",
                               s->furthest_epoch, s->epochs);
    if (used < len)
      used += (size_t)snprintf(buf + used, len - used, "; %d of %d member%s finished", s->members,
                               nm, nm == 1 ? "" : "s");
  }
  if (s->trunk && used < len)
    snprintf(buf + used, len - used, "%sa pretrained trunk", used ? "; " : "");
}

static int check_checkpoints(ens_job *j, char *err, size_t errlen) {
  const ens_job_opts *o = j->o;
  /* A directory in use by a running job: its checkpoints are neither an
   * earlier run's nor for --restart to remove. */
  int busy = ens_storage_lock_busy(j->ckpt.dir, err, errlen);
  if (busy)
    return busy;
  ckpt_scan s;
  int removed = 0;
  scan_checkpoints(j, &s, o->restart, &removed);
  if (s.stale)
    printf("removed %d unfinished checkpoint file%s (*.tmp) from %s\n", s.stale,
           s.stale == 1 ? "" : "s", j->ckpt.dir);
  if (o->restart) {
    if (removed)
      printf("--restart: removed %d checkpoint file%s of this job from %s\n", removed,
             removed == 1 ? "" : "s", j->ckpt.dir);
    return 0;
  }
  if (!s.units && !s.members && !s.trunk)
    return 0;
  char what[512];
  describe(j, &s, what, sizeof(what));
  /* With --resume, files of this job that are damaged or of another
   * configuration among checkpoints of this one restart their unit with a
   * warning (checkpoint.c); a folder holding none of this job's is refused. */
  if (s.other && !(o->resume && s.same > 0)) {
    ens_errorf(err, errlen,
               "%s holds checkpoints of another configuration (%s: %s). Nothing was changed. "
               "Run with --restart to discard them and start over, or set [output] "
               "checkpoint_dir to another folder%s",
               j->ckpt.dir, s.other_file, s.diff,
               o->resume ? " (--resume continues only checkpoints of the same configuration; "
                           "only [output] keys may change)"
                         : "");
    return ENS_EINVAL;
  }
  if (o->resume)
    return 0;
  ens_errorf(err, errlen,
             "%s holds checkpoints of this job from an earlier run (%s). Nothing was trained. "
             "Run the same command with --resume to continue from them, or with --restart to "
             "discard them and start over",
             j->ckpt.dir, what);
  return ENS_EINVAL;
}

int ens_guard_existing(ens_job *j, char *err, size_t errlen) {
  int st[2] = {0, 0};
  if (j->rank == 0) {
    int n = ens_tmp_sweep(j->c->output_path);
    if (n)
      printf("removed %d temporary file%s of %s left by ens processes that no longer run\n", n,
             n == 1 ? "" : "s", j->c->output_path);
    st[0] = check_result(j, &st[1], err, errlen);
    if (!st[0] && !st[1])
      st[0] = check_checkpoints(j, err, errlen);
    fflush(stdout);
  }
  ens_comm_bcast(st, 2, MPI_INT, 0, j->comm);
  if (st[0]) {
    char msg[2048];
    if (j->rank == 0)
      snprintf(msg, sizeof(msg), "%s", err);
    ens_comm_bcast(msg, sizeof(msg), MPI_CHAR, 0, j->comm);
    snprintf(err, errlen, "%s", msg);
  }
  j->complete = st[1];
  return st[0];
}
