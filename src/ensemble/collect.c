/* Collecting members on rank 0 in member order: each member's packed buffer
 * comes from rank 0's own temporary result file or from the rank that
 * trained it, and is written into the result file (result.c). The fold
 * (combine.c) asks for them through the reader this file gives it (fold.h);
 * `ens merge` gives it another (merge.c). Rank 0 holds one member at a
 * time. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ens/error.h"
#include "ensemble/collect.h"
#include "ensemble/fold.h"
#include "ensemble/job.h"
#include "ensemble/ranks.h"
#include "ensemble/result.h"
#include "ensemble/tags.h"
#include "io/fsutil.h"
#include "io/h5util.h"
#include "io/storage.h"


/* MPI counts are int: send large buffers in pieces of at most 2^30 floats. */
static int send_floats(const float *p, size_t n, int dest, MPI_Comm comm) {
  const size_t piece = (size_t)1 << 30;
  for (size_t off = 0; off < n; off += piece) {
    size_t m = n - off < piece ? n - off : piece;
    if (ens_comm_send(p + off, (int)m, MPI_FLOAT, dest, ENS_TAG_DATA, comm) != MPI_SUCCESS)
      return ENS_EMPI;
  }
  return 0;
}

static int recv_floats(float *p, size_t n, int src, MPI_Comm comm) {
  const size_t piece = (size_t)1 << 30;
  for (size_t off = 0; off < n; off += piece) {
    size_t m = n - off < piece ? n - off : piece;
    if (ens_comm_recv(p + off, (int)m, MPI_FLOAT, src, ENS_TAG_DATA, comm, MPI_STATUS_IGNORE) !=
        MPI_SUCCESS)
      return ENS_EMPI;
  }
  return 0;
}

/* The training job's reader of members (fold.h): brings member k (index i
 * in this job) into j->pack and makes sure the result file holds it: from
 * rank 0's own temporary result file, or from the rank that trained it. */
static int get_member(void *ctx, ens_job *j, int i, int k, ens_member_meta *meta, char *err,
                      size_t errlen) {
  (void)ctx;
  int ret = 0, missing = 0;
  if (ens_job_rank_of(j, k) == 0) {
    ret = ens_job_read_member(j, j->file, (hsize_t)i, k, meta, &missing);
  } else {
    int src = ens_job_rank_of(j, k);
    if (ens_comm_recv(meta, (int)sizeof(*meta), MPI_BYTE, src, ENS_TAG_META, j->comm,
                 MPI_STATUS_IGNORE) != MPI_SUCCESS || meta->k != k)
      ret = ENS_EMPI;
    if (!ret && meta->status == ENS_MEMBER_LOST) {
      /* A runtime failure (exit 2), whatever the rebuild's own code was.
       * That rank sends nothing more: drain() must not wait for it. */
      j->collect_next = i + 1;
      if (!j->lost_ranks)
        j->lost_ranks = calloc((size_t)j->size, 1);
      if (j->lost_ranks)
        j->lost_ranks[src] = 1;
      snprintf(err, errlen, "collecting member %d from rank %d: %s", k, src, meta->fail_reason);
      return ENS_EMPI;
    }
    size_t len = ret ? 0 : ens_member_packed_len(j, meta);
    if (!ret && len && !(ret = ens_job_pack_reserve(j, len)))
      ret = recv_floats(j->pack, len, src, j->comm);
    j->collect_next = i + 1; /* received: not to be drained */
    if (!ret)
      ret = ens_job_write_member(j, meta, j->pack);
  }
  if (ret)
    ret = ens_job_result_error(j, ret, err, errlen, "collecting member", k);
  return ret;
}

/* Rank 0 after a failed collection: receives (and drops) the members the
 * other ranks still send, so that none of them blocks in MPI_Send. */
static void drain(ens_job *j) {
  const int M = j->last - j->first;
  for (int i = j->collect_next; i < M; i++) {
    int k = j->first + i, src = ens_job_rank_of(j, k);
    if (src == 0 || (j->lost_ranks && j->lost_ranks[src]))
      continue;
    ens_member_meta meta;
    ens_comm_recv(&meta, (int)sizeof(meta), MPI_BYTE, src, ENS_TAG_META, j->comm, MPI_STATUS_IGNORE);
    size_t len = ens_member_packed_len(j, &meta);
    /* Last resort: without memory to take the member, the sender would
     * block for ever. */
    if (len && (ens_job_pack_reserve(j, len) || recv_floats(j->pack, len, src, j->comm)))
      ens_comm_abort(j->comm, 2);
  }
  j->collect_next = M;
}

/* Non-root ranks: rebuild each held member from its checkpoint and send it,
 * in member order (rank 0 asks in the same order, so plain blocking sends
 * cannot deadlock). A member that cannot be rebuilt goes as ENS_MEMBER_LOST
 * with the reason, and the rank stops there. */
static int by_member(const void *a, const void *b) {
  int32_t x = ((const ens_member_meta *)a)->k, y = ((const ens_member_meta *)b)->k;
  return x < y ? -1 : x > y;
}

static int send_held(ens_job *j, char *err, size_t errlen) {
  /* Units finish in placement order; rank 0 asks in member order. */
  if (j->nheld > 1)
    qsort(j->held, (size_t)j->nheld, sizeof(*j->held), by_member);
  for (int i = 0; i < j->nheld; i++) {
    ens_member_meta meta = j->held[i];
    size_t len = ens_member_packed_len(j, &meta);
    int ret = len ? ens_job_pack_checkpoint(j, &meta, err, errlen) : 0;
    if (ret) {
      meta.status = ENS_MEMBER_LOST;
      snprintf(meta.fail_reason, sizeof(meta.fail_reason), "%s", err);
      len = 0;
    }
    if (ens_comm_send(&meta, (int)sizeof(meta), MPI_BYTE, 0, ENS_TAG_META, j->comm) != MPI_SUCCESS)
      return ENS_EMPI;
    if (ret)
      return ENS_EMPI; /* as rank 0 reports it */
    if (len && (ret = send_floats(j->pack, len, 0, j->comm)))
      return ret;
  }
  return 0;
}

int ens_job_collect(ens_job *j, double train_wall, char *err, size_t errlen) {
  int ret = ens_job_gather_ranks(j);
  if (ret) {
    snprintf(err, errlen, "out of memory gathering the ranks' reports");
    return ens_agree(j->comm, ret, err, errlen);
  }
  j->collect_next = 0;
  if (j->rank == 0) {
    const ens_member_reader rd = {get_member, NULL};
    ret = ens_job_finish_root(j, &rd, train_wall, err, errlen);
    if (ret && j->size > 1)
      drain(j);
  } else {
    ret = send_held(j, err, errlen);
  }
  /* Everyone learns whether rank 0 published the result, and why not. */
  return ens_agree(j->comm, ret, err, errlen);
}
