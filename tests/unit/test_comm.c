/* The communication layer (src/core/comm.c): launcher detection from the
 * environment, and the one-rank world without MPI (this test never calls
 * MPI_Init: every call takes the path a single `ens train` takes). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/comm.h"
#include "cu_run.h"
#include "ens/error.h"
#include "ensemble/node.h"

/* An environment of "NAME=VALUE" strings, NULL-terminated. */
static const char *fake_get(const char *name, void *ctx) {
  const char *const *env = ctx;
  size_t n = strlen(name);
  for (; *env; env++)
    if (!strncmp(*env, name, n) && (*env)[n] == '=')
      return *env + n + 1;
  return NULL;
}

static ens_launch detect(const char *const *env, int *ret, char *err, size_t errlen) {
  ens_launch l;
  *ret = ens_launch_detect(&l, fake_get, (void *)env, err, errlen);
  return l;
}

static void describe_is(const ens_launch *l, int ranks, const char *want) {
  char buf[160];
  ens_launch_describe(l, ranks, buf, sizeof(buf));
  if (strcmp(buf, want))
    fprintf(stderr, "\n  described as '%s', expected '%s'\n", buf, want);
  CU_ASSERT_STRING_EQUAL(buf, want);
}

static void test_no_launcher(void) {
  const char *env[] = {"HOME=/root", "PATH=/bin", NULL};
  int ret;
  char err[256] = "";
  ens_launch l = detect(env, &ret, err, sizeof(err));
  CU_ASSERT_EQUAL(ret, 0);
  CU_ASSERT_EQUAL(l.kind, ENS_LAUNCH_NONE);
  CU_ASSERT_EQUAL(l.use_mpi, 0);
  CU_ASSERT_EQUAL(l.job_tasks, 0);
  describe_is(&l, 1, "1 process, no MPI launcher");
  /* Empty values count as unset. */
  const char *empty[] = {"OMPI_COMM_WORLD_SIZE=", "PMIX_RANK=", NULL};
  l = detect(empty, &ret, err, sizeof(err));
  CU_ASSERT_EQUAL(l.kind, ENS_LAUNCH_NONE);
  CU_ASSERT_EQUAL(l.use_mpi, 0);
}

static void test_mpirun(void) {
  /* mpirun inside an sbatch script: its daemons were started by srun, so
   * the ranks inherit a one-task step's variables; mpirun's own win. */
  const char *env[] = {"OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_RANK=2", "PMIX_RANK=2",
                       "SLURM_STEP_ID=0", "SLURM_STEP_NUM_TASKS=1", "SLURM_NTASKS=4", NULL};
  int ret;
  char err[256] = "";
  ens_launch l = detect(env, &ret, err, sizeof(err));
  CU_ASSERT_EQUAL(ret, 0);
  CU_ASSERT_EQUAL(l.kind, ENS_LAUNCH_MPIRUN);
  CU_ASSERT_EQUAL(l.size, 4);
  CU_ASSERT_EQUAL(l.use_mpi, 1);
  CU_ASSERT_STRING_EQUAL(l.var, "OMPI_COMM_WORLD_SIZE");
  describe_is(&l, 4, "mpirun, 4 ranks");
  /* mpirun -np 1 keeps MPI: the 1-rank reference run. */
  const char *one[] = {"OMPI_COMM_WORLD_SIZE=1", NULL};
  l = detect(one, &ret, err, sizeof(err));
  CU_ASSERT_EQUAL(l.use_mpi, 1);
  describe_is(&l, 1, "mpirun, 1 rank");
}

static void test_srun(void) {
  const char *one[] = {"SLURM_JOB_ID=7", "SLURM_STEP_ID=0", "SLURM_STEP_NUM_TASKS=1",
                       "SLURM_NTASKS=1", "SLURM_PROCID=0", "PMIX_RANK=0", NULL};
  int ret;
  char err[256] = "";
  ens_launch l = detect(one, &ret, err, sizeof(err));
  CU_ASSERT_EQUAL(ret, 0);
  CU_ASSERT_EQUAL(l.kind, ENS_LAUNCH_SRUN);
  CU_ASSERT_EQUAL(l.size, 1);
  CU_ASSERT_EQUAL(l.use_mpi, 0);
  describe_is(&l, 1, "srun, 1 task, no MPI");
  const char *four[] = {"SLURM_STEP_ID=3", "SLURM_STEP_NUM_TASKS=4", "SLURM_PROCID=1", NULL};
  l = detect(four, &ret, err, sizeof(err));
  CU_ASSERT_EQUAL(l.kind, ENS_LAUNCH_SRUN);
  CU_ASSERT_EQUAL(l.size, 4);
  CU_ASSERT_EQUAL(l.use_mpi, 1);
  describe_is(&l, 4, "srun, 4 ranks");
}

static void test_other_launchers(void) {
  int ret;
  char err[256] = "";
  const char *hydra[] = {"PMI_RANK=1", "PMI_SIZE=3", "PMI_FD=5", NULL};
  ens_launch l = detect(hydra, &ret, err, sizeof(err));
  CU_ASSERT_EQUAL(l.kind, ENS_LAUNCH_PMI);
  CU_ASSERT_EQUAL(l.size, 3);
  CU_ASSERT_EQUAL(l.use_mpi, 1);
  const char *pmix[] = {"PMIX_RANK=0", "PMIX_NAMESPACE=prterun-1", NULL};
  l = detect(pmix, &ret, err, sizeof(err));
  CU_ASSERT_EQUAL(l.kind, ENS_LAUNCH_PMIX);
  CU_ASSERT_EQUAL(l.size, 0); /* PMIx does not say; MPI will */
  CU_ASSERT_EQUAL(l.use_mpi, 1);
}

static void test_slurm_job_without_launcher(void) {
  /* `ens train` straight in a batch script of 4 tasks: one process, and the
   * start-up warns (job_tasks). */
  const char *env[] = {"SLURM_JOB_ID=9", "SLURM_NTASKS=4", NULL};
  int ret;
  char err[256] = "";
  ens_launch l = detect(env, &ret, err, sizeof(err));
  CU_ASSERT_EQUAL(l.kind, ENS_LAUNCH_NONE);
  CU_ASSERT_EQUAL(l.use_mpi, 0);
  CU_ASSERT_EQUAL(l.job_tasks, 4);
}

static void test_force(void) {
  int ret;
  char err[256] = "";
  const char *always[] = {"ENS_MPI=always", NULL};
  ens_launch l = detect(always, &ret, err, sizeof(err));
  CU_ASSERT_EQUAL(ret, 0);
  CU_ASSERT_EQUAL(l.use_mpi, 1);
  describe_is(&l, 1, "1 process, no MPI launcher, MPI initialized (ENS_MPI=always)");
  const char *autov[] = {"ENS_MPI=auto", NULL};
  l = detect(autov, &ret, err, sizeof(err));
  CU_ASSERT_EQUAL(ret, 0);
  CU_ASSERT_EQUAL(l.use_mpi, 0);
  const char *bad[] = {"ENS_MPI=yes", NULL};
  l = detect(bad, &ret, err, sizeof(err));
  CU_ASSERT_EQUAL(ret, ENS_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "ENS_MPI = 'yes'"));
}

static void test_one_rank_calls(void) {
  CU_ASSERT_EQUAL(ens_comm_mpi(), 0);
  int rank = -1, size = -1;
  CU_ASSERT_EQUAL(ens_comm_rank(MPI_COMM_WORLD, &rank), MPI_SUCCESS);
  CU_ASSERT_EQUAL(ens_comm_size(MPI_COMM_WORLD, &size), MPI_SUCCESS);
  CU_ASSERT_EQUAL(rank, 0);
  CU_ASSERT_EQUAL(size, 1);
  float a[3] = {1.5f, -2.0f, 3.25f}, b[3] = {0};
  CU_ASSERT_EQUAL(ens_comm_allreduce(a, b, 3, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), MPI_SUCCESS);
  CU_ASSERT(memcmp(a, b, sizeof(a)) == 0);
  CU_ASSERT_EQUAL(ens_comm_allreduce(MPI_IN_PLACE, b, 3, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD),
                  MPI_SUCCESS);
  CU_ASSERT(memcmp(a, b, sizeof(a)) == 0);
  double d = 2.5, dd = 0;
  ens_comm_allreduce(&d, &dd, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  CU_ASSERT_EQUAL(dd, 2.5);
  unsigned long long u[2] = {1ull << 40, 7}, uu[2] = {0};
  ens_comm_allreduce(u, uu, 2, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
  CU_ASSERT(uu[0] == u[0] && uu[1] == u[1]);
  char name[8] = "abcdefg", names[8] = "";
  CU_ASSERT_EQUAL(ens_comm_gather(name, 8, MPI_CHAR, names, 8, MPI_CHAR, 0, MPI_COMM_WORLD),
                  MPI_SUCCESS);
  CU_ASSERT_STRING_EQUAL(names, "abcdefg");
  int v = 42, all = 0;
  ens_comm_allgather(&v, 1, MPI_INT, &all, 1, MPI_INT, MPI_COMM_WORLD);
  CU_ASSERT_EQUAL(all, 42);
  CU_ASSERT_EQUAL(ens_comm_bcast(&v, 1, MPI_INT, 0, MPI_COMM_WORLD), MPI_SUCCESS);
  CU_ASSERT_EQUAL(v, 42);
  CU_ASSERT_EQUAL(ens_comm_barrier(MPI_COMM_WORLD), MPI_SUCCESS);
  /* No other rank exists. */
  CU_ASSERT_EQUAL(ens_comm_bcast(&v, 1, MPI_INT, 1, MPI_COMM_WORLD), MPI_ERR_RANK);
  CU_ASSERT_EQUAL(ens_comm_send(&v, 1, MPI_INT, 1, 0, MPI_COMM_WORLD), MPI_ERR_RANK);
  CU_ASSERT_EQUAL(ens_comm_recv(&v, 1, MPI_INT, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
                  MPI_ERR_RANK);
  int flag = 1;
  ens_comm_iprobe(MPI_ANY_SOURCE, 0, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
  CU_ASSERT_EQUAL(flag, 0);
  MPI_Request req = MPI_REQUEST_NULL;
  flag = 0;
  ens_comm_test(&req, &flag, MPI_STATUS_IGNORE);
  CU_ASSERT_EQUAL(flag, 1);
  CU_ASSERT_EQUAL(ens_comm_wait(&req, MPI_STATUS_IGNORE), MPI_SUCCESS);
  MPI_Request reqs[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  CU_ASSERT_EQUAL(ens_comm_waitall(2, reqs, MPI_STATUSES_IGNORE), MPI_SUCCESS);
  double t0 = ens_comm_wtime();
  usleep(2000);
  double t1 = ens_comm_wtime();
  CU_ASSERT(t1 - t0 >= 0.0019 && t1 - t0 < 5.0);
  char host[MPI_MAX_PROCESSOR_NAME], want[MPI_MAX_PROCESSOR_NAME] = "";
  int len = 0;
  ens_comm_processor_name(host, &len);
  gethostname(want, sizeof(want));
  CU_ASSERT_STRING_EQUAL(host, want);
  CU_ASSERT_EQUAL(len, (int)strlen(want));
}

static void test_one_rank_node(void) {
  /* The node layer as a single `ens train` sees it. */
  ens_node n;
  char err[256] = "";
  CU_ASSERT_EQUAL_FATAL(ens_node_init(&n, MPI_COMM_WORLD, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(n.rank, 0);
  CU_ASSERT_EQUAL(n.size, 1);
  CU_ASSERT_EQUAL(n.count, 1);
  CU_ASSERT_EQUAL(n.index, 0);
  CU_ASSERT_EQUAL(n.node_ranks[0], 1);
  CU_ASSERT(n.comm == MPI_COMM_SELF);
  ens_shm s;
  CU_ASSERT_EQUAL_FATAL(ens_shm_alloc(&s, &n, 1000, "test block", err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(s.kind, ENS_SHM_PRIVATE);
  memset(s.base, 7, 1000);
  ens_shm_sync(&s);
  ens_shm_free(&s);
  ens_node_free(&n);
  CU_ASSERT(n.comm == MPI_COMM_NULL);
  /* A shared window of a one-process world: its own memory. */
  void *mine = NULL, *q = NULL;
  MPI_Win win = MPI_WIN_NULL;
  CU_ASSERT_EQUAL_FATAL(ens_comm_win_allocate_shared(4096, 1, MPI_INFO_NULL, MPI_COMM_SELF,
                                                     &mine, &win),
                        MPI_SUCCESS);
  MPI_Aint seg = 0;
  int disp = 0;
  CU_ASSERT_EQUAL(ens_comm_win_shared_query(win, 0, &seg, &disp, &q), MPI_SUCCESS);
  CU_ASSERT(q == mine && seg == 4096 && disp == 1);
  memset(q, 1, 4096);
  CU_ASSERT_EQUAL(ens_comm_win_fence(0, win), MPI_SUCCESS);
  CU_ASSERT_EQUAL(ens_comm_win_free(&win), MPI_SUCCESS);
  CU_ASSERT(win == MPI_WIN_NULL);
}

int main(void) {
  static const cu_case cases[] = {{"no launcher", test_no_launcher},
                                  {"mpirun (also inside sbatch)", test_mpirun},
                                  {"srun with 1 and 4 tasks", test_srun},
                                  {"PMI and PMIx launchers", test_other_launchers},
                                  {"SLURM job without a launcher", test_slurm_job_without_launcher},
                                  {"ENS_MPI", test_force},
                                  {"one rank without MPI: calls", test_one_rank_calls},
                                  {"one rank without MPI: node and windows", test_one_rank_node},
                                  {NULL, NULL}};
  return cu_run_suite("comm", cases);
}
