/* The communication layer: every MPI call ens makes goes through here. When
 * MPI is initialized (started by mpirun, srun or another PMI launcher) each
 * call is the MPI call itself; when it is not (one process and no launcher:
 * see ens_launch_detect) the job is a world of one rank and each call does
 * what MPI does for one rank, without the MPI runtime's start-up.
 *
 * The ens_comm_* calls take the arguments of the MPI call they name, in the
 * same order (ens_comm_bcast = MPI_Bcast, ...), so a call site changes by a
 * rename only. Handles (MPI_Comm, MPI_Datatype, MPI_Op, MPI_Request) are the
 * MPI library's constants; they are compared, never dereferenced, without
 * MPI. Without MPI there is no other process: point-to-point messages have
 * no peer (MPI_ERR_RANK), a probe finds nothing, collectives copy the
 * caller's own contribution. */
#ifndef ENS_CORE_COMM_H
#define ENS_CORE_COMM_H

#include <mpi.h>
#include <stddef.h>

/* 1 when MPI is initialized (and not finalized): calls go to MPI. */
int ens_comm_mpi(void);

/* How this process was started (environment variables only: nothing is
 * initialized). See docs/DESIGN.md "Launchers". */
enum { ENS_LAUNCH_NONE = 0, ENS_LAUNCH_MPIRUN, ENS_LAUNCH_PMI, ENS_LAUNCH_SRUN, ENS_LAUNCH_PMIX };
typedef struct ens_launch {
  int kind;           /* ENS_LAUNCH_* */
  const char *name;   /* "mpirun", "srun", ... or "no MPI launcher" */
  const char *var;    /* the variable that told (NULL for none) */
  int size;           /* processes the launcher started (0: it does not say) */
  int use_mpi;        /* 1: initialize MPI */
  int forced;         /* ENS_MPI=always asked for MPI */
  int job_tasks;      /* kind NONE inside a SLURM job: SLURM_NTASKS (else 0) */
} ens_launch;

/* Fills l from the environment as `get` sees it (getenv-like; ctx is passed
 * on). Returns 0, or ENS_ECONFIG with a message in err when ENS_MPI holds
 * something other than auto or always. */
int ens_launch_detect(ens_launch *l, const char *(*get)(const char *name, void *ctx), void *ctx,
                      char *err, size_t errlen);

/* The process's start: detects the launcher (from getenv) and initializes
 * MPI when there is one (or ENS_MPI=always). Then checks that MPI sees as
 * many ranks as the launcher started; returns 0, ENS_ECONFIG (bad ENS_MPI,
 * or a launcher whose processes MPI cannot join: each would train alone)
 * or ENS_EMPI (MPI_Init failed), with a message in err. */
int ens_comm_start(int *argc, char ***argv, ens_launch *l, char *err, size_t errlen);
/* MPI_Finalize when MPI was initialized. */
void ens_comm_finish(void);
/* "1 process, no MPI launcher", "mpirun, 4 ranks", "srun, 1 task, no MPI",
 * ...: how this process was started, for the start-up line. */
void ens_launch_describe(const ens_launch *l, int ranks, char *buf, size_t len);

/* The MPI calls ens makes, same arguments. */
int ens_comm_rank(MPI_Comm comm, int *rank);
int ens_comm_size(MPI_Comm comm, int *size);
double ens_comm_wtime(void);
int ens_comm_barrier(MPI_Comm comm);
int ens_comm_abort(MPI_Comm comm, int code);
int ens_comm_bcast(void *buf, int count, MPI_Datatype type, int root, MPI_Comm comm);
int ens_comm_allreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op,
                       MPI_Comm comm);
int ens_comm_gather(const void *sendbuf, int scount, MPI_Datatype stype, void *recvbuf, int rcount,
                    MPI_Datatype rtype, int root, MPI_Comm comm);
int ens_comm_allgather(const void *sendbuf, int scount, MPI_Datatype stype, void *recvbuf,
                       int rcount, MPI_Datatype rtype, MPI_Comm comm);
int ens_comm_send(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm);
int ens_comm_recv(void *buf, int count, MPI_Datatype type, int src, int tag, MPI_Comm comm,
                  MPI_Status *st);
int ens_comm_isend(const void *buf, int count, MPI_Datatype type, int dest, int tag,
                   MPI_Comm comm, MPI_Request *req);
int ens_comm_iprobe(int src, int tag, MPI_Comm comm, int *flag, MPI_Status *st);
int ens_comm_probe(int src, int tag, MPI_Comm comm, MPI_Status *st);
int ens_comm_get_count(const MPI_Status *st, MPI_Datatype type, int *count);
int ens_comm_reduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op,
                    int root, MPI_Comm comm);
int ens_comm_test(MPI_Request *req, int *flag, MPI_Status *st);
int ens_comm_wait(MPI_Request *req, MPI_Status *st);
int ens_comm_waitall(int count, MPI_Request reqs[], MPI_Status sts[]);
int ens_comm_split_type(MPI_Comm comm, int type, int key, MPI_Info info, MPI_Comm *out);
int ens_comm_free(MPI_Comm *comm);
int ens_comm_set_errhandler(MPI_Comm comm, MPI_Errhandler h);
int ens_comm_processor_name(char *name, int *len);
int ens_comm_error_string(int code, char *msg, int *len);
int ens_comm_win_allocate_shared(MPI_Aint size, int disp_unit, MPI_Info info, MPI_Comm comm,
                                 void *base, MPI_Win *win);
int ens_comm_win_shared_query(MPI_Win win, int rank, MPI_Aint *size, int *disp_unit, void *base);
int ens_comm_win_fence(int assert, MPI_Win win);
int ens_comm_win_free(MPI_Win *win);

#endif
