/* Nodes of a job: which ranks share a machine (MPI_COMM_TYPE_SHARED), the
 * layout line printed at start, and node-shared blocks (MPI-3 shared
 * windows, MPI_Win_allocate_shared + MPI_Win_shared_query) in which one rank
 * per node places read-only data that all ranks of the node then use. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "ens/data.h"
#include "ens/error.h"
#include "ensemble/node.h"

#define NAME_LEN MPI_MAX_PROCESSOR_NAME

int ens_node_init(ens_node *n, MPI_Comm comm, char *err, size_t errlen) {
  memset(n, 0, sizeof(*n));
  n->comm = MPI_COMM_NULL;
  int rank, size, len = 0;
  ens_comm_rank(comm, &rank);
  ens_comm_size(comm, &size);
  if (ens_comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &n->comm) !=
      MPI_SUCCESS) {
    ens_errorf(err, errlen, "ens_comm_split_type(MPI_COMM_TYPE_SHARED) failed");
    return ENS_EMPI;
  }
  /* Window allocation failures come back as codes, to be reported. */
  ens_comm_set_errhandler(n->comm, MPI_ERRORS_RETURN);
  ens_comm_rank(n->comm, &n->rank);
  ens_comm_size(n->comm, &n->size);
  ens_comm_processor_name(n->name, &len);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  n->cores = cores > 0 ? (int)cores : 1;
  /* Node index: nodes are numbered by their lowest job rank (node rank 0,
   * since the split is keyed by job rank). */
  int leader = rank;
  ens_comm_bcast(&leader, 1, MPI_INT, 0, n->comm);
  int *leaders = malloc((size_t)size * sizeof(int));
  n->of_rank = malloc((size_t)size * sizeof(int));
  int ok = leaders && n->of_rank;
  if (ok) {
    ens_comm_allgather(&leader, 1, MPI_INT, leaders, 1, MPI_INT, comm);
    /* index of leader L = number of leaders below L; leaders[r] == r marks one. */
    int *index_of = malloc((size_t)size * sizeof(int));
    ok = index_of != NULL;
    if (ok) {
      int count = 0;
      for (int r = 0; r < size; r++)
        index_of[r] = leaders[r] == r ? count++ : -1;
      for (int r = 0; r < size; r++)
        n->of_rank[r] = index_of[leaders[r]];
      n->count = count;
      n->index = n->of_rank[rank];
    }
    free(index_of);
  }
  free(leaders);
  /* Everyone must take part in the gathers below, ok or not. */
  int all_ok;
  ens_comm_allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
  if (!all_ok) {
    ens_errorf(err, errlen, "out of memory describing the layout of %d ranks", size);
    return ENS_ENOMEM;
  }
  /* Job rank 0 learns every node's name, cores and rank count. */
  char *all_names = NULL;
  int *all_cores = NULL;
  if (rank == 0) {
    all_names = malloc((size_t)size * NAME_LEN);
    all_cores = malloc((size_t)size * sizeof(int));
    n->names = calloc((size_t)n->count, NAME_LEN);
    n->node_cores = calloc((size_t)n->count, sizeof(int));
    n->node_ranks = calloc((size_t)n->count, sizeof(int));
    ok = all_names && all_cores && n->names && n->node_cores && n->node_ranks;
  }
  ens_comm_bcast(&ok, 1, MPI_INT, 0, comm);
  if (!ok) {
    free(all_names);
    free(all_cores);
    ens_errorf(err, errlen, "out of memory describing the layout of %d ranks", size);
    return ENS_ENOMEM;
  }
  ens_comm_gather(n->name, NAME_LEN, MPI_CHAR, all_names, NAME_LEN, MPI_CHAR, 0, comm);
  ens_comm_gather(&n->cores, 1, MPI_INT, all_cores, 1, MPI_INT, 0, comm);
  if (rank == 0) {
    for (int r = 0; r < size; r++) {
      int node = n->of_rank[r];
      if (n->node_ranks[node]++ == 0) {
        memcpy(n->names + (size_t)node * NAME_LEN, all_names + (size_t)r * NAME_LEN, NAME_LEN);
        n->names[(size_t)node * NAME_LEN + NAME_LEN - 1] = '\0';
        n->node_cores[node] = all_cores[r];
      }
    }
  }
  free(all_names);
  free(all_cores);
  return 0;
}

void ens_node_free(ens_node *n) {
  if (n->size > 0 && n->comm != MPI_COMM_NULL)
    ens_comm_free(&n->comm);
  free(n->of_rank);
  free(n->names);
  free(n->node_cores);
  free(n->node_ranks);
  memset(n, 0, sizeof(*n));
  n->comm = MPI_COMM_NULL;
}

void ens_node_rank_list(const ens_node *n, int job_size, int node, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (int r = 0; r < job_size && used < len; r++) {
    if (n->of_rank[r] != node)
      continue;
    int e = r;
    while (e + 1 < job_size && n->of_rank[e + 1] == node)
      e++;
    int k = e > r ? snprintf(buf + used, len - used, "%s%d-%d", used ? "," : "", r, e)
                  : snprintf(buf + used, len - used, "%s%d", used ? "," : "", r);
    if (k < 0)
      break;
    used += (size_t)k;
    r = e;
  }
}

void ens_node_print_layout(const ens_node *n, int threads) {
  if (!n->names)
    return;
  int size = 0;
  for (int i = 0; i < n->count; i++)
    size += n->node_ranks[i];
  printf("layout: %d rank%s on %d node%s, %d BLAS thread%s per rank ([train] threads)\n", size,
         size == 1 ? "" : "s", n->count, n->count == 1 ? "" : "s", threads,
         threads == 1 ? "" : "s");
  for (int i = 0; i < n->count; i++) {
    char ranks[256];
    ens_node_rank_list(n, size, i, ranks, sizeof(ranks));
    int busy = n->node_ranks[i] * threads;
    printf("  node %s: %d rank%s (%s) x %d thread%s = %d thread%s on %d core%s\n",
           n->names + (size_t)i * NAME_LEN, n->node_ranks[i], n->node_ranks[i] == 1 ? "" : "s",
           ranks, threads, threads == 1 ? "" : "s", busy, busy == 1 ? "" : "s", n->node_cores[i],
           n->node_cores[i] == 1 ? "" : "s");
  }
  fflush(stdout);
  for (int i = 0; i < n->count; i++) {
    int busy = n->node_ranks[i] * threads;
    if (busy > n->node_cores[i])
      fprintf(stderr,
              "ens: warning: node %s is oversubscribed: %d rank%s x %d BLAS thread%s = %d "
              "threads on %d core%s; they take turns on the cores (start fewer ranks per node "
              "or lower [train] threads)\n",
              n->names + (size_t)i * NAME_LEN, n->node_ranks[i],
              n->node_ranks[i] == 1 ? "" : "s", threads, threads == 1 ? "" : "s", busy,
              n->node_cores[i], n->node_cores[i] == 1 ? "" : "s");
  }
  fflush(stderr);
}

int ens_shm_alloc(ens_shm *s, const ens_node *n, size_t bytes, const char *what, char *err,
                  size_t errlen) {
  memset(s, 0, sizeof(*s));
  /* Node rank 0's size counts, and its look at the room for it: with
   * several ranks the block lives in a shared-memory file, which Open MPI
   * places in its osc_sm_backing_directory (default /dev/shm; mpirun --mca
   * passes a different one to the ranks as OMPI_MCA_osc_sm_backing_directory),
   * and a block larger than that file system's free space does not fail
   * cleanly there (the ranks may stall when they touch it). */
  const char *dir = getenv("OMPI_MCA_osc_sm_backing_directory");
  if (!dir || !dir[0])
    dir = "/dev/shm";
  unsigned long long hdr[2] = {bytes, 0}; /* size, free bytes + 1 when too small */
  if (n->rank == 0 && n->size > 1) {
    struct statvfs sv;
    if (statvfs(dir, &sv) == 0) {
      unsigned long long avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
      if (hdr[0] + ENS_DATA_ALIGN > avail)
        hdr[1] = avail + 1;
    }
  }
  ens_comm_bcast(hdr, 2, MPI_UNSIGNED_LONG_LONG, 0, n->comm);
  unsigned long long want = hdr[0];
  if (hdr[1]) {
    ens_errorf(err, errlen,
               "node-shared memory for %s: %llu bytes needed on node %s, but %s (where Open "
               "MPI places shared windows) has only %llu bytes free (run fewer ranks per node, "
               "free space there, or point Open MPI's osc_sm_backing_directory elsewhere)",
               what, want, n->name, dir, hdr[1] - 1);
    return ENS_ENOMEM;
  }
  size_t total = (size_t)want + ENS_DATA_ALIGN;
  if (n->size == 1) {
    /* A node of one rank: plain private memory, nothing to share. */
    void *p = NULL;
    if (posix_memalign(&p, ENS_DATA_ALIGN, total) != 0) {
      ens_errorf(err, errlen, "cannot allocate %llu bytes for %s", want, what);
      return ENS_ENOMEM;
    }
    s->kind = ENS_SHM_PRIVATE;
    s->base = p;
    s->bytes = (size_t)want;
    return 0;
  }
  void *mine = NULL;
  MPI_Win win = MPI_WIN_NULL;
  int rc = ens_comm_win_allocate_shared(n->rank == 0 ? (MPI_Aint)total : 0, 1, MPI_INFO_NULL,
                                   n->comm, &mine, &win);
  unsigned char *base = NULL;
  if (rc == MPI_SUCCESS) {
    MPI_Aint seg = 0;
    int disp = 0;
    void *p = NULL;
    rc = ens_comm_win_shared_query(win, 0, &seg, &disp, &p);
    if (rc == MPI_SUCCESS && (size_t)seg < total)
      rc = MPI_ERR_SIZE;
    /* Every rank maps the segment at a page boundary, so aligning up gives
     * the same offset everywhere. */
    if (rc == MPI_SUCCESS)
      base = (unsigned char *)(((uintptr_t)p + ENS_DATA_ALIGN - 1) /
                               ENS_DATA_ALIGN * ENS_DATA_ALIGN);
  }
  int bad = rc != MPI_SUCCESS, any = 0;
  ens_comm_allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, n->comm);
  if (any) {
    char msg[MPI_MAX_ERROR_STRING] = "another rank of the node failed";
    int len = 0;
    if (bad)
      ens_comm_error_string(rc, msg, &len);
    if (win != MPI_WIN_NULL)
      ens_comm_win_free(&win);
    ens_errorf(err, errlen,
               "cannot allocate %llu bytes of node-shared memory for %s on node %s "
               "(MPI_Win_allocate_shared: %s)",
               want, what, n->name, msg);
    return ENS_ENOMEM;
  }
  s->kind = ENS_SHM_WINDOW;
  s->win = win;
  s->base = base;
  s->bytes = (size_t)want;
  ens_comm_win_fence(0, win); /* opens the first epoch */
  return 0;
}

void ens_shm_sync(ens_shm *s) {
  if (s->kind == ENS_SHM_WINDOW)
    ens_comm_win_fence(0, s->win);
}

void ens_shm_free(ens_shm *s) {
  if (s->kind == ENS_SHM_WINDOW)
    ens_comm_win_free(&s->win);
  else if (s->kind == ENS_SHM_PRIVATE)
    free(s->base);
  memset(s, 0, sizeof(*s));
}
