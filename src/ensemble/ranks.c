/* /ranks: what every rank reports about itself (node, data reads, trunk
 * features, peak memory), gathered on rank 0, and the placement record,
 * written into the result file. Exempt from the determinism contract. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ens/error.h"
#include "ensemble/job.h"
#include "ensemble/ranks.h"
#include "io/h5util.h"

/* This process's peak resident set in bytes (ru_maxrss is in KiB on Linux).
 * It counts the pages of node-shared blocks this rank touched as well. */
static int64_t peak_rss(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return -1;
  return (int64_t)ru.ru_maxrss * 1024;
}

int ens_job_gather_ranks(ens_job *j) {
  ens_rank_info me = {.node = j->node.index,
                      .data_reads = j->data.reads,
                      .feature_rows = j->trunk.feature_rows,
                      .data_bytes = (int64_t)j->data.shm.bytes,
                      .feature_bytes = (int64_t)j->trunk.shm.bytes,
                      .peak_rss = peak_rss(),
                      .feature_seconds = j->trunk.feature_seconds};
  int ok = 1;
  if (j->rank == 0 && !j->ranks)
    ok = (j->ranks = calloc((size_t)j->size, sizeof(ens_rank_info))) != NULL;
  ens_comm_bcast(&ok, 1, MPI_INT, 0, j->comm);
  if (!ok)
    return ENS_ENOMEM;
  ens_comm_gather(&me, (int)sizeof(me), MPI_BYTE, j->ranks, (int)sizeof(me), MPI_BYTE, 0, j->comm);
  return 0;
}

/* The columns of /ranks: per rank (node 0) or per node (node 1, the value
 * any of the node's ranks reports: the same on each), from ens_rank_info. */
static const struct rank_column {
  const char *name;
  int per_node;
  enum { COL_I32, COL_I64, COL_F64 } kind;
  size_t off;
} rank_columns[] = {
    {"node", 0, COL_I32, offsetof(ens_rank_info, node)},
    {"peak_rss", 0, COL_I64, offsetof(ens_rank_info, peak_rss)},
    {"data_reads", 0, COL_I32, offsetof(ens_rank_info, data_reads)},
    {"feature_rows", 0, COL_I32, offsetof(ens_rank_info, feature_rows)},
    {"feature_seconds", 0, COL_F64, offsetof(ens_rank_info, feature_seconds)},
    {"node_data_bytes", 1, COL_I64, offsetof(ens_rank_info, data_bytes)},
    {"node_feature_bytes", 1, COL_I64, offsetof(ens_rank_info, feature_bytes)},
};

/* Writes one column of /ranks from the ranks' reports. */
static int write_rank_column(ens_job *j, const struct rank_column *c, void *buf) {
  const int P = j->size, N = j->node.count, len = c->per_node ? N : P;
  const size_t width = c->kind == COL_I32 ? sizeof(int32_t) : 8;
  memset(buf, 0, (size_t)len * width);
  for (int r = 0; r < P; r++) {
    const char *src = (const char *)&j->ranks[r] + c->off;
    int at = c->per_node ? j->ranks[r].node : r;
    memcpy((char *)buf + (size_t)at * width, src, width);
  }
  char path[64];
  snprintf(path, sizeof(path), "/ranks/%s", c->name);
  hsize_t d = (hsize_t)len;
  hid_t type = c->kind == COL_I32   ? H5T_NATIVE_INT32
               : c->kind == COL_I64 ? H5T_NATIVE_INT64
                                    : H5T_NATIVE_DOUBLE;
  return ens_h5_write(j->file, path, type, 1, &d, buf, 0);
}

/* Which rank trained which member, and when (place.c's record; a snapshot
 * chain's members share their unit's rank and times). Nothing when the job
 * trained nothing (ens merge). */
static int write_placement(ens_job *j) {
  const ens_place *p = &j->place;
  const int M = j->last - j->first;
  if (!p->owner || M <= 0)
    return 0;
  int32_t *rk = malloc((size_t)M * sizeof(int32_t));
  double *t0 = malloc((size_t)M * sizeof(double)), *t1 = malloc((size_t)M * sizeof(double));
  int ret = 0;
  if (!rk || !t0 || !t1) {
    ret = ENS_ENOMEM;
    goto cleanup;
  }
  for (int i = 0; i < M; i++) {
    int u = ens_job_unit_of(j, j->first + i) - p->u_first;
    int ok = u >= 0 && u < p->nunits;
    rk[i] = ok ? p->owner[u] : -1;
    t0[i] = ok ? p->t_start[u] : -1.0;
    t1[i] = ok ? p->t_end[u] : -1.0;
  }
  hsize_t dm = (hsize_t)M;
  ret |= ens_h5_attr_str(j->file, "/ranks", "placement", ens_place_policy_name(p->policy));
  ret |= ens_h5_attr_str(j->file, "/ranks", "member_times",
                         "seconds since training started on the member's rank: when its unit "
                         "started and ended there (a resumed unit: in this run)");
  ret |= ens_h5_write(j->file, "/ranks/member_rank", H5T_NATIVE_INT32, 1, &dm, rk, 0);
  ret |= ens_h5_write(j->file, "/ranks/member_start", H5T_NATIVE_DOUBLE, 1, &dm, t0, 0);
  ret |= ens_h5_write(j->file, "/ranks/member_end", H5T_NATIVE_DOUBLE, 1, &dm, t1, 0);
cleanup:
  free(rk);
  free(t0);
  free(t1);
  return ret;
}

int ens_job_write_ranks(ens_job *j) {
  const ens_node *n = &j->node;
  const int P = j->size, N = n->count;
  if (!j->ranks || !n->names)
    return ENS_EINVAL;
  j->ranks[0].peak_rss = peak_rss(); /* rank 0's peak includes the collection */
  void *buf = malloc((size_t)(P > N ? P : N) * 8);
  const char **names = malloc((size_t)N * sizeof(char *));
  if (!buf || !names) {
    free(buf);
    free(names);
    return ENS_ENOMEM;
  }
  hid_t f = j->file;
  hsize_t dn = (hsize_t)N;
  int ret = ens_h5_group(f, "/ranks");
  ret |= ens_h5_attr_i64(f, "/ranks", "nodes", N);
  ret |= ens_h5_attr_i64(f, "/ranks", "threads", j->c->threads);
  ret |= ens_h5_attr_str(f, "/ranks", "peak_rss_units",
                         "bytes (getrusage ru_maxrss: counts the node-shared pages a rank "
                         "touched, so a node's memory is less than the sum over its ranks)");
  for (size_t i = 0; i < sizeof(rank_columns) / sizeof(rank_columns[0]); i++)
    ret |= write_rank_column(j, &rank_columns[i], buf);
  for (int i = 0; i < N; i++)
    names[i] = n->names + (size_t)i * MPI_MAX_PROCESSOR_NAME;
  ret |= ens_h5_write_strings(f, "/ranks/node_names", names, (size_t)N);
  ret |= ens_h5_write(f, "/ranks/node_ranks", H5T_NATIVE_INT32, 1, &dn, n->node_ranks, 0);
  ret |= ens_h5_write(f, "/ranks/node_cores", H5T_NATIVE_INT32, 1, &dn, n->node_cores, 0);
  ret |= write_placement(j);
  free(buf);
  free(names);
  return ret ? ENS_EHDF5 : 0;
}
