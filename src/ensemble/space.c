/* Before training: the output directory must be writable, the checkpoint
 * directory locked, and the free space must hold what the job will write.
 * The sizes are upper bounds computed from the parameters of every member
 * (members of a search differ), the prediction rows and the checkpoint
 * layout, so a job that cannot finish fails before its first step, with
 * both numbers in the message. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ens/error.h"
#include "ensemble/job.h"
#include "io/fsutil.h"
#include "io/storage.h"

/* HDF5 metadata per object (group or dataset with its attributes): a
 * generous bound of what the library writes beside the raw values. */
#define OBJECT_BYTES 8192u
#define FILE_BYTES 65536u

typedef struct sizes {
  uint64_t result;      /* the result file */
  uint64_t checkpoints; /* every checkpoint file at its largest moment */
} sizes;

/* Bytes of an existing file, 0 when absent. */
static uint64_t file_bytes(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void estimate(const ens_job *j, sizes *s, uint64_t *replaced) {
  const ens_config *c = j->c;
  const uint64_t f4 = sizeof(float);
  const int M = j->last - j->first;
  const uint64_t W = (uint64_t)j->task.W, nt = (uint64_t)j->data.n_test,
                 nv = (uint64_t)j->data.n_val, ntr = (uint64_t)j->data.n_train;
  const uint64_t E = (uint64_t)c->epochs;
  const int tl = c->trunk_source != ENS_TRUNK_NONE || j->o->trunk_from ? c->trunk_layers : 0;
  const uint64_t text = (j->o->config_text ? strlen(j->o->config_text) : 0) + 1;
  const uint64_t opt = c->optimizer == ENS_OPT_SGD ? 2 : 3; /* params + moments */
  size_t tnp = 0, tns = 0, fnp = 0, fns = 0;
  if (tl > 0) {
    ens_arch_sizes(&j->arch, 0, tl, 0, &tnp, &tns);
    ens_arch_sizes(&j->arch, 0, j->arch.n_hidden, 1, &fnp, &fns); /* pretraining */
  }
  *replaced = 0;
  /* Result: static parts, every member, the combined outputs and metrics. */
  uint64_t r =
      FILE_BYTES + 2 * text + 4 * f4 * (uint64_t)j->data.dim + f4 * (tnp + tns) + 4 * OBJECT_BYTES;
  uint64_t ck = 0, unit_max = 0, units = 0;
  size_t jnp = 0, jns = 0;
  ens_member_sizes(j, j->first, tl, &jnp, &jns);
  for (int i = 0; i < M; i++) {
    int k = j->first + i;
    size_t np, ns;
    ens_member_sizes(j, k, tl, &np, &ns);
    /* weights, curves and the gradient-norm summary */
    uint64_t w = f4 * ((uint64_t)np + ns + (2 + ENS_GN_COLS) * E) + OBJECT_BYTES;
    uint64_t rows = f4 * (nt + nv) * W;
    if (c->mode == ENS_MODE_BOOTSTRAP)
      rows += f4 * ntr * W; /* scratch rows: deleted, but HDF5 keeps their space */
    if (c->mc_samples > 0)
      rows += f4 * nt * W;
    r += w + rows + 6 * OBJECT_BYTES + f4 * 40; /* + per-member metrics */
    /* Checkpoints: member_<k>.h5, and unit_<u>.h5 for the unit's first member. */
    ck += w + 4 * OBJECT_BYTES;
    int first_of_unit = c->mode != ENS_MODE_SNAPSHOT || k % c->snapshots == 0;
    if (first_of_unit) {
      /* + every step's gradient norm (double) */
      ens_config mc;
      ens_member_config(j, k, &mc);
      uint64_t steps = E * (uint64_t)ens_steps_per_epoch(j->data.n_train, mc.batch);
      uint64_t u = f4 * ((uint64_t)np * opt + ns + (2 + ENS_GN_COLS) * E) + 8 * steps + text +
                   9 * OBJECT_BYTES;
      ck += u;
      units++;
      if (u > unit_max)
        unit_max = u;
    }
  }
  /* Combined outputs: probabilities or moments (+ parts), uncertainty,
   * predictions, weights, optional averaged parameters, disagreement. */
  r += f4 * (nt + nv) * W * 4 + f4 * nt * 4 + f4 * (uint64_t)M * 40 +
       8 * (uint64_t)M * (uint64_t)M + 32 * OBJECT_BYTES;
  if (c->combine == ENS_COMBINE_PARAMS)
    r += f4 * ((uint64_t)jnp + jns);
  r += r / 10; /* HDF5 alignment and free-space slack */
  /* While a checkpoint is rewritten, the old file and the new one coexist:
   * one per rank at a time. */
  uint64_t writers = units < (uint64_t)j->size ? units : (uint64_t)j->size;
  ck += unit_max * writers;
  if (tl > 0 && c->trunk_source == ENS_TRUNK_PRETRAIN) {
    ck += f4 * (tnp + tns) + text + 8 * OBJECT_BYTES;                       /* trunk.h5 */
    ck += 2 * (f4 * ((uint64_t)fnp * opt + fns) + text + 8 * OBJECT_BYTES); /* pretrain.h5 */
  }
  ck += FILE_BYTES; /* the lock and the directory itself */
  /* With --resume the existing checkpoints are replaced by files of the
   * same size: their space is there already. */
  if (j->o->resume) {
    char p[ENS_PATH_MAX + 64];
    int u_first = ens_job_unit_of(j, j->first), u_last = ens_job_unit_of(j, j->last - 1) + 1;
    for (int u = u_first; u < u_last; u++) {
      snprintf(p, sizeof(p), "%s/unit_%d.h5", j->ckpt.dir, u);
      *replaced += file_bytes(p);
    }
    for (int k = j->first; k < j->last; k++) {
      snprintf(p, sizeof(p), "%s/member_%d.h5", j->ckpt.dir, k);
      *replaced += file_bytes(p);
    }
    snprintf(p, sizeof(p), "%s/trunk.h5", j->ckpt.dir);
    *replaced += file_bytes(p);
    snprintf(p, sizeof(p), "%s/pretrain.h5", j->ckpt.dir);
    *replaced += file_bytes(p);
  }
  s->result = r;
  s->checkpoints = ck;
}

/* "995 KiB (1019055 bytes)", or "512 bytes" when that says it all. */
static void both(char *buf, size_t len, uint64_t b) {
  char h[32];
  ens_storage_human(h, sizeof(h), b);
  if (b < 1024)
    snprintf(buf, len, "%s", h);
  else
    snprintf(buf, len, "%s (%llu bytes)", h, (unsigned long long)b);
}

int ens_job_check_storage(ens_job *j, char *err, size_t errlen) {
  const ens_config *c = j->c;
  const int ckpt = !j->o->no_checkpoints;
  if (j->rank != 0) /* after rank 0 made the directory: can this node write there? */
    return ckpt ? ens_storage_check_dir(j->ckpt.dir, "[output] checkpoint_dir", err, errlen) : 0;
  char outdir[ENS_PATH_MAX + 16];
  ens_dirname(c->output_path, outdir, sizeof(outdir));
  /* Missing output folders are created, like mkdir -p (then checked). */
  if (ens_mkdir_parent(c->output_path) != 0) {
    snprintf(err, errlen, "[output] path = %s: cannot create its folder %s (%s)", c->output_path,
             outdir, strerror(errno));
    return ENS_EIO;
  }
  int ret = ens_storage_check_dir(outdir, "[output] path", err, errlen);
  if (ret)
    return ret;
  if (ckpt && (ret = ens_job_checkpoint_lock(j, err, errlen)))
    return ret;
  sizes s;
  uint64_t replaced = 0;
  estimate(j, &s, &replaced);
  j->result_bytes = s.result;
  uint64_t ck = ckpt ? (s.checkpoints > replaced ? s.checkpoints - replaced : 0) : 0;
  uint64_t free_out = 0, free_ck = 0, dev_out = 0, dev_ck = 0;
  if (ens_storage_free(outdir, &free_out, &dev_out) != 0) {
    snprintf(err, errlen, "[output] path: cannot query the free space of '%s': %s", outdir,
             strerror(errno));
    return ENS_EIO;
  }
  if (ckpt && ens_storage_free(j->ckpt.dir, &free_ck, &dev_ck) != 0) {
    snprintf(err, errlen, "[output] checkpoint_dir: cannot query the free space of '%s': %s",
             j->ckpt.dir, strerror(errno));
    return ENS_EIO;
  }
  char rb[64], cb[64], nb[64], fb[64];
  both(rb, sizeof(rb), s.result);
  both(cb, sizeof(cb), ck);
  if (c->verbose >= 2) {
    both(fb, sizeof(fb), free_out);
    printf("storage: result up to %s, checkpoints up to %s; %s free in %s\n", rb, cb, fb, outdir);
    fflush(stdout);
  }
  if (!ckpt || dev_ck != dev_out) {
    if (s.result > free_out) {
      both(fb, sizeof(fb), free_out);
      snprintf(err, errlen,
               "not enough free space for the result: it needs up to %s in %s, which has %s free",
               rb, outdir, fb);
      return ENS_ENOSPACE;
    }
    if (ckpt && ck > free_ck) {
      both(fb, sizeof(fb), free_ck);
      snprintf(err, errlen,
               "not enough free space for the checkpoints: they need up to %s in %s, which has "
               "%s free (point [output] checkpoint_dir elsewhere)",
               cb, j->ckpt.dir, fb);
      return ENS_ENOSPACE;
    }
    return 0;
  }
  uint64_t need = s.result + ck;
  if (need > free_out) {
    both(nb, sizeof(nb), need);
    both(fb, sizeof(fb), free_out);
    ens_storage_human(rb, sizeof(rb), s.result);
    ens_storage_human(cb, sizeof(cb), ck);
    snprintf(err, errlen,
             "not enough free space: the result (up to %s) and the checkpoints (up to %s) need "
             "%s in %s, which has %s free",
             rb, cb, nb, outdir, fb);
    return ENS_ENOSPACE;
  }
  return 0;
}
