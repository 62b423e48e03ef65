/* The communication layer (comm.h): MPI when it is initialized, else a world
 * of one rank in which every call does what MPI does for one rank. The only
 * state is MPI's own (MPI_Initialized / MPI_Finalized, which MPI allows at
 * any time), so code that initializes MPI itself (the unit tests) gets MPI. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/comm.h"
#include "ens/error.h"

int ens_comm_mpi(void) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  if (!init)
    return 0;
  MPI_Finalized(&fin);
  return !fin;
}

/* ---- launcher detection ---------------------------------------------- */

/* A positive count from variable `name`, 0 when unset or not a number. */
static int count_of(const char *(*get)(const char *, void *), void *ctx, const char *name) {
  const char *v = get(name, ctx);
  if (!v || !*v)
    return 0;
  char *end = NULL;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || *end || n <= 0 || n > INT32_MAX)
    return 0;
  return (int)n;
}

static int is_set(const char *(*get)(const char *, void *), void *ctx, const char *name) {
  const char *v = get(name, ctx);
  return v && *v;
}

int ens_launch_detect(ens_launch *l, const char *(*get)(const char *name, void *ctx), void *ctx,
                      char *err, size_t errlen) {
  memset(l, 0, sizeof(*l));
  l->name = "no MPI launcher";
  const char *force = get("ENS_MPI", ctx);
  if (force && *force && strcmp(force, "auto") != 0) {
    if (strcmp(force, "always") != 0) {
      ens_errorf(err, errlen,
                 "environment variable ENS_MPI = '%s': expected auto (initialize MPI only "
                 "under a launcher) or always",
                 force);
      return ENS_ECONFIG;
    }
    l->forced = 1;
  }
  /* The innermost launcher first: its variables are the ones set for this
   * process; an outer one's are inherited (mpirun inside an sbatch script
   * starts its daemons with srun, so the ranks also see that step's
   * SLURM_STEP_* variables). */
  if (is_set(get, ctx, "OMPI_COMM_WORLD_SIZE")) {
    l->kind = ENS_LAUNCH_MPIRUN; /* Open MPI's mpirun / mpiexec / orterun */
    l->name = "mpirun";
    l->var = "OMPI_COMM_WORLD_SIZE";
    l->size = count_of(get, ctx, "OMPI_COMM_WORLD_SIZE");
  } else if (is_set(get, ctx, "PMI_SIZE") || is_set(get, ctx, "PMI_RANK")) {
    l->kind = ENS_LAUNCH_PMI; /* a PMI-1/2 launcher: MPICH's hydra, srun --mpi=pmi2 */
    l->name = "PMI launcher";
    l->var = is_set(get, ctx, "PMI_SIZE") ? "PMI_SIZE" : "PMI_RANK";
    l->size = count_of(get, ctx, "PMI_SIZE");
  } else if (is_set(get, ctx, "SLURM_STEP_ID") && is_set(get, ctx, "SLURM_STEP_NUM_TASKS")) {
    l->kind = ENS_LAUNCH_SRUN; /* srun, with or without --mpi=pmix */
    l->name = "srun";
    l->var = "SLURM_STEP_NUM_TASKS";
    l->size = count_of(get, ctx, "SLURM_STEP_NUM_TASKS");
  } else if (is_set(get, ctx, "PMIX_RANK")) {
    l->kind = ENS_LAUNCH_PMIX; /* a PMIx launcher (prterun, ...) */
    l->name = "PMIx launcher";
    l->var = "PMIX_RANK";
  } else {
    l->job_tasks = count_of(get, ctx, "SLURM_NTASKS");
  }
  /* A launcher that says it started one process (srun -n 1, mpirun -np 1
   * included) still gets MPI except srun: there the step is this process
   * alone, and no MPI daemon or PMI server is involved in anything ens
   * does. mpirun -np 1 keeps MPI (the 1-rank reference of the tests). */
  l->use_mpi = l->forced || (l->kind != ENS_LAUNCH_NONE && !(l->kind == ENS_LAUNCH_SRUN &&
                                                             l->size == 1));
  return 0;
}

static const char *env_get(const char *name, void *ctx) {
  (void)ctx;
  return getenv(name);
}

int ens_comm_start(int *argc, char ***argv, ens_launch *l, char *err, size_t errlen) {
  int ret = ens_launch_detect(l, env_get, NULL, err, errlen);
  if (ret || !l->use_mpi)
    return ret;
  if (MPI_Init(argc, argv) != MPI_SUCCESS) {
    ens_errorf(err, errlen, "MPI_Init failed (started by %s)", l->name);
    return ENS_EMPI;
  }
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (l->size > 0 && size != l->size) {
    /* Each process would train the whole job alone and write the same
     * result: never go on. */
    ens_errorf(err, errlen,
               "started by %s as %d processes (%s=%d), but MPI sees %d rank%s: this Open MPI "
               "cannot join that launcher's processes (under srun use --mpi=pmix, or start "
               "the ranks with mpirun)",
               l->name, l->size, l->var, l->size, size, size == 1 ? "" : "s");
    MPI_Finalize();
    return ENS_ECONFIG;
  }
  return 0;
}

void ens_comm_finish(void) {
  if (ens_comm_mpi())
    MPI_Finalize();
}

void ens_launch_describe(const ens_launch *l, int ranks, char *buf, size_t len) {
  const char *s = ranks == 1 ? "" : "s";
  if (l->kind == ENS_LAUNCH_NONE && !l->forced) {
    snprintf(buf, len, "1 process, no MPI launcher");
  } else if (l->kind == ENS_LAUNCH_NONE) {
    snprintf(buf, len, "1 process, no MPI launcher, MPI initialized (ENS_MPI=always)");
  } else if (!l->use_mpi) {
    snprintf(buf, len, "%s, 1 task, no MPI", l->name);
  } else {
    snprintf(buf, len, "%s, %d rank%s%s", l->name, ranks, s,
             l->kind == ENS_LAUNCH_SRUN && l->size == 1 ? " (ENS_MPI=always)" : "");
  }
}

/* ---- one rank without MPI --------------------------------------------- */

/* Bytes of one element of the predefined types ens sends. Without MPI there
 * is no type engine to ask; a type missing here is a programming error. */
static size_t type_size(MPI_Datatype t) {
  if (t == MPI_BYTE || t == MPI_CHAR || t == MPI_UNSIGNED_CHAR || t == MPI_SIGNED_CHAR ||
      t == MPI_INT8_T || t == MPI_UINT8_T)
    return 1;
  if (t == MPI_SHORT || t == MPI_UNSIGNED_SHORT || t == MPI_INT16_T || t == MPI_UINT16_T)
    return 2;
  if (t == MPI_INT || t == MPI_UNSIGNED || t == MPI_FLOAT || t == MPI_INT32_T ||
      t == MPI_UINT32_T)
    return 4;
  if (t == MPI_DOUBLE || t == MPI_LONG_LONG || t == MPI_UNSIGNED_LONG_LONG ||
      t == MPI_INT64_T || t == MPI_UINT64_T)
    return 8;
  if (t == MPI_LONG || t == MPI_UNSIGNED_LONG)
    return sizeof(long);
  fprintf(stderr, "ens: internal error: an MPI datatype the one-process layer does not know\n");
  abort();
}

/* The one rank's own contribution: copied unless in place. */
static void copy_own(void *dst, const void *src, int count, MPI_Datatype t) {
  if (src != MPI_IN_PLACE && dst && src && dst != src && count > 0)
    memmove(dst, src, (size_t)count * type_size(t));
}

/* Without MPI, a rank other than 0 does not exist. */
static int no_peer(const char *call, int r) {
  fprintf(stderr, "ens: internal error: %s with rank %d in a one-process run\n", call, r);
  return MPI_ERR_RANK;
}

int ens_comm_rank(MPI_Comm comm, int *rank) {
  if (ens_comm_mpi())
    return MPI_Comm_rank(comm, rank);
  *rank = 0;
  return MPI_SUCCESS;
}

int ens_comm_size(MPI_Comm comm, int *size) {
  if (ens_comm_mpi())
    return MPI_Comm_size(comm, size);
  *size = 1;
  return MPI_SUCCESS;
}

double ens_comm_wtime(void) {
  if (ens_comm_mpi())
    return MPI_Wtime();
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int ens_comm_barrier(MPI_Comm comm) {
  return ens_comm_mpi() ? MPI_Barrier(comm) : MPI_SUCCESS;
}

int ens_comm_abort(MPI_Comm comm, int code) {
  if (ens_comm_mpi())
    return MPI_Abort(comm, code);
  /* What MPI_Abort does to a job of one process: it ends. */
  fflush(NULL);
  _exit(code);
}

int ens_comm_bcast(void *buf, int count, MPI_Datatype type, int root, MPI_Comm comm) {
  if (ens_comm_mpi())
    return MPI_Bcast(buf, count, type, root, comm);
  return root == 0 ? MPI_SUCCESS : no_peer("MPI_Bcast", root);
}

int ens_comm_allreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op,
                       MPI_Comm comm) {
  if (ens_comm_mpi())
    return MPI_Allreduce(sendbuf, recvbuf, count, type, op, comm);
  /* Any reduction of one value is that value. */
  copy_own(recvbuf, sendbuf, count, type);
  return MPI_SUCCESS;
}

int ens_comm_gather(const void *sendbuf, int scount, MPI_Datatype stype, void *recvbuf, int rcount,
                    MPI_Datatype rtype, int root, MPI_Comm comm) {
  if (ens_comm_mpi())
    return MPI_Gather(sendbuf, scount, stype, recvbuf, rcount, rtype, root, comm);
  if (root != 0)
    return no_peer("MPI_Gather", root);
  (void)rcount;
  (void)rtype;
  copy_own(recvbuf, sendbuf, scount, stype);
  return MPI_SUCCESS;
}

int ens_comm_allgather(const void *sendbuf, int scount, MPI_Datatype stype, void *recvbuf,
                       int rcount, MPI_Datatype rtype, MPI_Comm comm) {
  if (ens_comm_mpi())
    return MPI_Allgather(sendbuf, scount, stype, recvbuf, rcount, rtype, comm);
  (void)rcount;
  (void)rtype;
  copy_own(recvbuf, sendbuf, scount, stype);
  return MPI_SUCCESS;
}

int ens_comm_send(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm) {
  if (ens_comm_mpi())
    return MPI_Send(buf, count, type, dest, tag, comm);
  return no_peer("MPI_Send", dest);
}

int ens_comm_recv(void *buf, int count, MPI_Datatype type, int src, int tag, MPI_Comm comm,
                  MPI_Status *st) {
  if (ens_comm_mpi())
    return MPI_Recv(buf, count, type, src, tag, comm, st);
  return no_peer("MPI_Recv", src);
}

int ens_comm_isend(const void *buf, int count, MPI_Datatype type, int dest, int tag,
                   MPI_Comm comm, MPI_Request *req) {
  if (ens_comm_mpi())
    return MPI_Isend(buf, count, type, dest, tag, comm, req);
  *req = MPI_REQUEST_NULL;
  return no_peer("MPI_Isend", dest);
}

int ens_comm_iprobe(int src, int tag, MPI_Comm comm, int *flag, MPI_Status *st) {
  if (ens_comm_mpi())
    return MPI_Iprobe(src, tag, comm, flag, st);
  (void)st;
  *flag = 0; /* nobody else sends */
  return MPI_SUCCESS;
}

/* A blocking probe waits for another rank's message: none exists in a
 * world of one. */
int ens_comm_probe(int src, int tag, MPI_Comm comm, MPI_Status *st) {
  if (ens_comm_mpi())
    return MPI_Probe(src, tag, comm, st);
  (void)tag;
  (void)comm;
  (void)st;
  return no_peer("MPI_Probe", src);
}

/* Without MPI no message is ever received, so no status holds a count. */
int ens_comm_get_count(const MPI_Status *st, MPI_Datatype type, int *count) {
  if (ens_comm_mpi())
    return MPI_Get_count(st, type, count);
  (void)st;
  (void)type;
  *count = 0;
  return MPI_SUCCESS;
}

int ens_comm_reduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op,
                    int root, MPI_Comm comm) {
  if (ens_comm_mpi())
    return MPI_Reduce(sendbuf, recvbuf, count, type, op, root, comm);
  (void)op;
  (void)comm;
  if (root != 0)
    return no_peer("MPI_Reduce", root);
  copy_own(recvbuf, sendbuf, count, type); /* a reduction of one value is that value */
  return MPI_SUCCESS;
}

/* Without MPI no request is ever started (ens_comm_isend has no peer), so
 * every request is MPI_REQUEST_NULL: complete. */
int ens_comm_test(MPI_Request *req, int *flag, MPI_Status *st) {
  if (ens_comm_mpi())
    return MPI_Test(req, flag, st);
  (void)st;
  *req = MPI_REQUEST_NULL;
  *flag = 1;
  return MPI_SUCCESS;
}

int ens_comm_wait(MPI_Request *req, MPI_Status *st) {
  if (ens_comm_mpi())
    return MPI_Wait(req, st);
  (void)st;
  *req = MPI_REQUEST_NULL;
  return MPI_SUCCESS;
}

int ens_comm_waitall(int count, MPI_Request reqs[], MPI_Status sts[]) {
  if (ens_comm_mpi())
    return MPI_Waitall(count, reqs, sts);
  (void)sts;
  for (int i = 0; i < count; i++)
    reqs[i] = MPI_REQUEST_NULL;
  return MPI_SUCCESS;
}

int ens_comm_split_type(MPI_Comm comm, int type, int key, MPI_Info info, MPI_Comm *out) {
  if (ens_comm_mpi())
    return MPI_Comm_split_type(comm, type, key, info, out);
  (void)type;
  (void)key;
  (void)info;
  /* The one process is its own node. */
  *out = MPI_COMM_SELF;
  return MPI_SUCCESS;
}

int ens_comm_free(MPI_Comm *comm) {
  if (ens_comm_mpi())
    return MPI_Comm_free(comm);
  *comm = MPI_COMM_NULL;
  return MPI_SUCCESS;
}

int ens_comm_set_errhandler(MPI_Comm comm, MPI_Errhandler h) {
  if (ens_comm_mpi())
    return MPI_Comm_set_errhandler(comm, h);
  return MPI_SUCCESS; /* nothing to report errors of */
}

int ens_comm_processor_name(char *name, int *len) {
  if (ens_comm_mpi())
    return MPI_Get_processor_name(name, len);
  /* What Open MPI reports: the host name. */
  if (gethostname(name, MPI_MAX_PROCESSOR_NAME) != 0)
    snprintf(name, MPI_MAX_PROCESSOR_NAME, "localhost");
  name[MPI_MAX_PROCESSOR_NAME - 1] = '\0';
  *len = (int)strlen(name);
  return MPI_SUCCESS;
}

int ens_comm_error_string(int code, char *msg, int *len) {
  if (ens_comm_mpi())
    return MPI_Error_string(code, msg, len);
  *len = snprintf(msg, MPI_MAX_ERROR_STRING, "MPI error class %d", code);
  return MPI_SUCCESS;
}

/* Shared windows of a one-process node: the rank's own memory. ens gives a
 * node of one rank private memory (ens_shm_alloc) and never gets here
 * without MPI; these keep the calls correct all the same. */
typedef struct solo_win {
  void *mem;
  MPI_Aint size;
  int disp_unit;
} solo_win;
_Static_assert(sizeof(MPI_Win) == sizeof(solo_win *), "MPI_Win holds a pointer");

int ens_comm_win_allocate_shared(MPI_Aint size, int disp_unit, MPI_Info info, MPI_Comm comm,
                                 void *base, MPI_Win *win) {
  if (ens_comm_mpi())
    return MPI_Win_allocate_shared(size, disp_unit, info, comm, base, win);
  (void)info;
  solo_win *w = calloc(1, sizeof(*w));
  void *mem = NULL;
  if (!w || (size > 0 && posix_memalign(&mem, 4096, (size_t)size) != 0)) {
    free(w);
    return MPI_ERR_NO_MEM;
  }
  w->mem = mem;
  w->size = size;
  w->disp_unit = disp_unit;
  *(void **)base = mem;
  *win = (MPI_Win)(void *)w;
  return MPI_SUCCESS;
}

int ens_comm_win_shared_query(MPI_Win win, int rank, MPI_Aint *size, int *disp_unit, void *base) {
  if (ens_comm_mpi())
    return MPI_Win_shared_query(win, rank, size, disp_unit, base);
  if (rank != 0)
    return no_peer("MPI_Win_shared_query", rank);
  const solo_win *w = (const solo_win *)(void *)win;
  *size = w->size;
  *disp_unit = w->disp_unit;
  *(void **)base = w->mem;
  return MPI_SUCCESS;
}

int ens_comm_win_fence(int assert, MPI_Win win) {
  if (ens_comm_mpi())
    return MPI_Win_fence(assert, win);
  return MPI_SUCCESS;
}

int ens_comm_win_free(MPI_Win *win) {
  if (ens_comm_mpi())
    return MPI_Win_free(win);
  solo_win *w = (solo_win *)(void *)*win;
  if (w)
    free(w->mem);
  free(w);
  *win = MPI_WIN_NULL;
  return MPI_SUCCESS;
}
