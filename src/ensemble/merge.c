/* `ens merge`: result files of member slices (e.g. the tasks of a SLURM job
 * array) become one result. The parts must come from the same job: equal
 * configuration apart from [output] and the slice, equal data checksum, and
 * disjoint slices that together form one contiguous range. The members are
 * then folded in member order by the same code as a live run, so the merged
 * file equals what one run over all members would have written. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

#include "ens/error.h"
#include "ensemble/history.h"
#include "ensemble/fold.h"
#include "ens/hyperdeep.h"
#include "ensemble/hyperdeep.h"
#include "ensemble/job.h"
#include "ensemble/result.h"
#include "io/h5util.h"

const ens_part *ens_job_part_of(const ens_job *j, int k) {
  for (int i = 0; i < j->merge.n; i++)
    if (k >= j->merge.parts[i].first && k < j->merge.parts[i].first + j->merge.parts[i].count)
      return &j->merge.parts[i];
  return NULL;
}

/* Recomputes the rows a part file does not keep (out-of-bag training rows,
 * MC passes) from member k's weights in j->pack. */
static int recompute_rows(ens_job *j, const ens_member_meta *meta) {
  ens_model m;
  int ret = ens_member_model(j, meta->k, &m);
  if (ret)
    return ret;
  ens_pack_view v;
  ens_member_view(j, meta, j->pack, &v);
  if ((size_t)meta->nparams != m.nparams || (size_t)meta->nstats != m.nstats) {
    ens_model_free(&m);
    return ENS_EFORMAT;
  }
  memcpy(m.params, v.params, m.nparams * sizeof(float));
  memcpy(m.stats, v.stats, m.nstats * sizeof(float));
  if (v.train)
    ens_task_predict(&j->task, &m, (float *)v.train, j->data.ftrain, j->data.n_train);
  if (v.mc)
    ens_task_predict_mc(&j->task, &m, (float *)v.mc, j->scratch, j->data.ftest, j->data.n_test,
                        j->c->seed, (uint32_t)meta->k, j->c->mc_samples);
  ens_model_free(&m);
  return 0;
}

/* `ens merge`'s reader of members (fold.h): brings member k into j->pack
 * from the part file that holds it, and writes it into the result file. */
static int get_part_member(void *ctx, ens_job *j, int i, int k, ens_member_meta *meta, char *err,
                           size_t errlen) {
  (void)ctx;
  (void)i;
  int ret = 0, missing = 0;
  const ens_part *p = ens_job_part_of(j, k);
  ret = ens_job_read_member(j, p->file, (hsize_t)(k - p->first), k, meta, &missing);
  if (ret) {
    snprintf(err, errlen,
             "%s: member %d is missing, damaged or of the wrong size for its "
             "architecture (/members/%d, its params and prediction rows)",
             p->path, k, k);
    return ret == ENS_ENOMEM ? ret : ENS_EFORMAT;
  }
  if (missing && (ret = recompute_rows(j, meta))) {
    snprintf(err, errlen, "%s: member %d does not match its architecture", p->path, k);
    return ret;
  }
  ret = ens_job_write_member(j, meta, j->pack);
  if (ret)
    ret = ens_job_result_error(j, ret, err, errlen, "collecting member", k);
  return ret;
}

static int by_first(const void *a, const void *b) {
  const ens_part *x = a, *y = b;
  return (x->first > y->first) - (x->first < y->first);
}

static int open_part(ens_part *p, const char *path, ens_config *c, int64_t *checksum, char *err,
                     size_t errlen) {
  snprintf(p->path, sizeof(p->path), "%s", path);
  if (access(path, F_OK) != 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return ENS_EIO;
  }
  p->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (p->file < 0) {
    snprintf(err, errlen, "%s: cannot open as an HDF5 result file", path);
    return ENS_EIO;
  }
  char *text = NULL;
  int64_t first = 0, count = 0;
  int ret = ens_h5_get_attr_str(p->file, "/", "config", &text);
  ret |= ens_h5_get_attr_i64(p->file, "/", "first_member", &first);
  ret |= ens_h5_get_attr_i64(p->file, "/", "members", &count);
  ret |= ens_h5_get_attr_i64(p->file, "/", "data_checksum", checksum);
  /* A finished result holds the ensemble's outputs: class probabilities,
   * or a regression's predictive mean. */
  if (ret || !(ens_h5_exists(p->file, "/ensemble/probs") ||
               ens_h5_exists(p->file, "/ensemble/mean"))) {
    free(text);
    snprintf(err, errlen, "%s: not a finished ens result (missing config, members or "
                          "/ensemble/probs or /ensemble/mean)", path);
    return ENS_EFORMAT;
  }
  char msg[1024];
  ret = ens_config_load_text(c, path, text, msg, sizeof(msg));
  free(text);
  if (ret) {
    snprintf(err, errlen, "%s: its stored configuration does not load: %s", path, msg);
    return ENS_EFORMAT;
  }
  const int total = ens_hyperdeep_total(c); /* hyper-deep: the retrained members too */
  if (first < 0 || count < 1 || first >= total || count > total - first) {
    snprintf(err, errlen,
             "%s: members %lld-%lld (attributes first_member = %lld, members = "
             "%lld) are not a slice of its job's %d members",
             path, (long long)first, (long long)(first + count - 1), (long long)first,
             (long long)count, total);
    return ENS_EFORMAT;
  }
  /* The per-member datasets must hold that many rows. */
  int rank = 0;
  hsize_t dims[8];
  const char *rows = ens_h5_exists(p->file, "/members/probs") ? "/members/probs" : "/members/mean";
  if (ens_h5_size(p->file, rows, &rank, dims) < 0 || rank != 3 || dims[0] != (hsize_t)count) {
    snprintf(err, errlen, "%s: %s is missing or does not hold %lld members' rows", path, rows,
             (long long)count);
    return ENS_EFORMAT;
  }
  p->first = (int)first;
  p->count = (int)count;
  return 0;
}

int ens_merge(const char *const *paths, int nparts, const char *out, int partial, char *err,
              size_t errlen) {
  ens_h5_quiet();
  err[0] = '\0';
  if (nparts < 1) {
    snprintf(err, errlen, "no input files");
    return ENS_EINVAL;
  }
  ens_part *parts = calloc((size_t)nparts, sizeof(ens_part));
  ens_config *cfgs = calloc((size_t)nparts, sizeof(ens_config));
  int64_t *sums = calloc((size_t)nparts, sizeof(int64_t));
  char *ident0 = NULL, *text = NULL, *history = NULL;
  ens_job job;
  int have_job = 0, ret = 0;
  if (!parts || !cfgs || !sums) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  for (int i = 0; i < nparts; i++)
    parts[i].file = -1;
  for (int i = 0; i < nparts && !ret; i++)
    ret = open_part(&parts[i], paths[i], &cfgs[i], &sums[i], err, errlen);
  if (ret)
    goto cleanup;
  ident0 = ens_job_identity_text(&cfgs[0]);
  for (int i = 1; i < nparts && ident0; i++) {
    char *id = ens_job_identity_text(&cfgs[i]);
    int same = id && strcmp(id, ident0) == 0;
    free(id);
    if (!same) {
      ens_config a = cfgs[0], b = cfgs[i];
      a.first_member = b.first_member = 0; /* the slices may differ */
      a.count = b.count = 0;
      char *diff = ens_config_diff_text(&a, &b, 1, paths[0], paths[i]);
      snprintf(err, errlen,
               "%s and %s come from different jobs: their configurations differ beyond "
               "[output] and the member slice: %s (`ens info --config` prints a result's "
               "configuration)",
               paths[0], paths[i], diff ? diff : "?");
      free(diff);
      ret = ENS_ECONFIG;
      goto cleanup;
    }
    if (sums[i] != sums[0]) {
      snprintf(err, errlen, "%s and %s were trained on different data (data checksums differ)",
               paths[0], paths[i]);
      ret = ENS_EFORMAT;
      goto cleanup;
    }
  }
  /* Sort the parts by first member; slices must neither overlap nor leave gaps. */
  ens_part *sorted = parts;
  qsort(sorted, (size_t)nparts, sizeof(ens_part), by_first);
  for (int i = 1; i < nparts; i++) {
    int end = sorted[i - 1].first + sorted[i - 1].count;
    if (sorted[i].first < end) {
      snprintf(err, errlen, "%s (members %d-%d) and %s (members %d-%d) overlap",
               sorted[i - 1].path, sorted[i - 1].first, end - 1, sorted[i].path, sorted[i].first,
               sorted[i].first + sorted[i].count - 1);
      ret = ENS_EINVAL;
      goto cleanup;
    }
    if (sorted[i].first > end) {
      char gap[48];
      if (sorted[i].first - 1 > end)
        snprintf(gap, sizeof(gap), "members %d-%d are", end, sorted[i].first - 1);
      else
        snprintf(gap, sizeof(gap), "member %d is", end);
      snprintf(err, errlen,
               "%s missing between %s and %s: give the part that holds them (even with "
               "--partial, which merges an incomplete set, the members must be contiguous: "
               "leave out %s or everything after it to merge with --partial)",
               gap, sorted[i - 1].path, sorted[i].path, sorted[i].path);
      ret = ENS_EINVAL;
      goto cleanup;
    }
  }
  ens_config c = cfgs[0];
  {
    /* Rank 0 keeps per-member metrics and an M x M disagreement matrix. */
    unsigned long long M =
        (unsigned long long)(sorted[nparts - 1].first + sorted[nparts - 1].count - sorted[0].first);
    if (!ens_h5_affordable(M * M * 16 + M * 4096)) {
      snprintf(err, errlen, "%s ... %s: %llu members are more than this node's memory can combine",
               sorted[0].path, sorted[nparts - 1].path, M);
      ret = ENS_EFORMAT;
      goto cleanup;
    }
  }
  c.first_member = sorted[0].first;
  c.count = sorted[nparts - 1].first + sorted[nparts - 1].count - c.first_member;
  /* The parts' BLAS threads, as training ran them: the rows merge
   * recomputes and the combined rows are then those of one whole run (another
   * count changes a product's last bits; docs/DESIGN.md "BLAS threads"). */
  openblas_set_num_threads(c.threads);
  if (ens_hyperdeep_on(&c)) {
    /* A hyper-deep job trains all its members (no slices): one whole result. */
    if (nparts != 1 || c.first_member != 0 || c.count != ens_hyperdeep_total(&c)) {
      snprintf(err, errlen,
               "%s: a hyper-deep result ([search] hyper_deep = %d) is merged whole: expected "
               "one part holding all %d members",
               sorted[0].path, c.search_hyper_deep, ens_hyperdeep_total(&c));
      ret = ENS_EINVAL;
      goto cleanup;
    }
    c.count = c.members;
  }
  if (!partial && (c.first_member != 0 || c.count != c.members)) {
    int end = c.first_member + c.count;
    char missing[96];
    if (c.first_member > 0 && end < c.members)
      snprintf(missing, sizeof(missing), "members 0-%d and %d-%d", c.first_member - 1, end,
               c.members - 1);
    else if (c.first_member > 0)
      snprintf(missing, sizeof(missing), "member%s 0-%d", c.first_member > 1 ? "s" : "",
               c.first_member - 1);
    else
      snprintf(missing, sizeof(missing), "member%s %d-%d", c.members - end > 1 ? "s" : "", end,
               c.members - 1);
    snprintf(err, errlen,
             "the parts hold members %d-%d, %d of the ensemble's %d ([ensemble] members): "
             "%s are missing. Give every part, or --partial to merge an incomplete set (the "
             "result then says \"%d of %d members\")",
             c.first_member, end - 1, c.count, c.members, missing, c.count, c.members);
    ret = ENS_EINVAL;
    goto cleanup;
  }
  snprintf(c.output_path, sizeof(c.output_path), "%s", out);
  if (c.first_member == 0 && c.count == c.members)
    c.count = 0; /* the whole ensemble: written as a single run writes it */
  c.verbose = cfgs[0].verbose;
  /* The merged file records the configuration of a run over the whole range. */
  text = ens_config_to_ini(&c);
  ens_job_opts o = {.config_text = text,
                    .config_path = paths[0],
                    .no_checkpoints = 1,
                    .trunk_from = c.trunk_source != ENS_TRUNK_NONE ? sorted[0].path : NULL};
  ret = ens_job_setup(&job, &c, &o, MPI_COMM_SELF, 0, err, errlen);
  have_job = 1;
  if (ret)
    goto cleanup;
  if (job.data.checksum != sums[0]) {
    snprintf(err, errlen, "%s has changed since the parts were trained (data checksum differs)",
             c.data_path);
    ret = ENS_EFORMAT;
    goto cleanup;
  }
  job.merge.parts = sorted;
  job.merge.n = nparts;
  if (job.hyperdeep) { /* which configuration each retrained member trains */
    ens_hyperdeep_load(job.hyperdeep, sorted[0].file);
    if ((ret = ens_hyperdeep_record(&job, job.hyperdeep, err, errlen)))
      goto cleanup;
  }
  /* Each part's segments, named by the part: the merged result's history. */
  {
    size_t hl = 1;
    char **each = calloc((size_t)nparts, sizeof(char *));
    for (int i = 0; each && i < nparts; i++) {
      char prefix[ENS_PATH_MAX + 16];
      const char *base = strrchr(sorted[i].path, '/');
      snprintf(prefix, sizeof(prefix), "part=%s ", base ? base + 1 : sorted[i].path);
      each[i] = ens_history_read(sorted[i].file, prefix);
      hl += each[i] ? strlen(each[i]) : 0;
    }
    history = each ? malloc(hl) : NULL;
    if (history) {
      history[0] = '\0';
      for (int i = 0; i < nparts; i++)
        if (each[i])
          strcat(history, each[i]);
    }
    for (int i = 0; each && i < nparts; i++)
      free(each[i]);
    free(each);
    o.history = history;
  }
  double wall = 0;
  for (int i = 0; i < nparts; i++) {
    double w = 0;
    if (ens_h5_get_attr_f64(sorted[i].file, "/", "train_seconds", &w) == 0)
      wall += w;
  }
  const ens_member_reader rd = {get_part_member, NULL};
  ret = ens_job_finish_root(&job, &rd, wall, err, errlen);
cleanup:
  if (have_job) {
    job.merge.parts = NULL;
    ens_job_free(&job);
  }
  for (int i = 0; parts && i < nparts; i++)
    if (parts[i].file >= 0)
      H5Fclose(parts[i].file);
  free(parts);
  free(cfgs);
  free(sums);
  free(ident0);
  free(text);
  free(history);
  return ret;
}
