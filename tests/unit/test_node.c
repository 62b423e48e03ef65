/* Unit tests for src/ensemble/node.c: the node layout of MPI_COMM_WORLD and
 * node-shared blocks. CTest runs it alone (one rank: private memory) and
 * under `mpirun -np 2` (two ranks on one node: an MPI-3 shared window that
 * both ranks write and read). */
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cu_run.h"
#include "ens/data.h"
#include "ensemble/node.h"

static int g_rank, g_size;

static void test_layout(void) {
  ens_node n;
  char err[256] = "";
  CU_ASSERT_EQUAL_FATAL(ens_node_init(&n, MPI_COMM_WORLD, err, sizeof err), 0);
  /* All ranks of this test run on one machine: one node. */
  CU_ASSERT_EQUAL(n.count, 1);
  CU_ASSERT_EQUAL(n.index, 0);
  CU_ASSERT_EQUAL(n.size, g_size);
  CU_ASSERT_EQUAL(n.rank, g_rank);
  CU_ASSERT(n.cores >= 1);
  CU_ASSERT(n.name[0] != '\0');
  for (int r = 0; r < g_size; r++)
    CU_ASSERT_EQUAL(n.of_rank[r], 0);
  if (g_rank == 0) {
    CU_ASSERT_PTR_NOT_NULL_FATAL(n.names);
    CU_ASSERT_STRING_EQUAL(n.names, n.name);
    CU_ASSERT_EQUAL(n.node_ranks[0], g_size);
    CU_ASSERT_EQUAL(n.node_cores[0], n.cores);
  } else {
    CU_ASSERT_PTR_NULL(n.names);
  }
  ens_node_free(&n);
  CU_ASSERT_EQUAL(n.size, 0);
  ens_node_free(&n); /* twice is harmless */
}

static void test_rank_list(void) {
  int of[7] = {0, 0, 1, 0, 1, 1, 0};
  ens_node n;
  memset(&n, 0, sizeof n);
  n.of_rank = of;
  char buf[64];
  ens_node_rank_list(&n, 7, 0, buf, sizeof buf);
  CU_ASSERT_STRING_EQUAL(buf, "0-1,3,6");
  ens_node_rank_list(&n, 7, 1, buf, sizeof buf);
  CU_ASSERT_STRING_EQUAL(buf, "2,4-5");
  ens_node_rank_list(&n, 7, 2, buf, sizeof buf);
  CU_ASSERT_STRING_EQUAL(buf, "");
}

static void test_shm(void) {
  ens_node n;
  char err[256] = "";
  CU_ASSERT_EQUAL_FATAL(ens_node_init(&n, MPI_COMM_WORLD, err, sizeof err), 0);
  ens_shm s;
  /* Node rank 0's size counts; the others ask for nothing. */
  size_t want = n.rank == 0 ? 1000 * sizeof(int32_t) : 0;
  int rc = ens_shm_alloc(&s, &n, want, "the test block", err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  ens_shm_alloc: %s\n", err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(s.bytes, 1000 * sizeof(int32_t));
  CU_ASSERT_EQUAL(s.kind, g_size == 1 ? ENS_SHM_PRIVATE : ENS_SHM_WINDOW);
  CU_ASSERT((uintptr_t)s.base % ENS_DATA_ALIGN == 0);
  /* Each rank writes its own slice; after the sync every rank sees all. */
  int32_t *v = (int32_t *)(void *)s.base;
  for (int i = n.rank; i < 1000; i += n.size)
    v[i] = 7 * i + 1;
  ens_shm_sync(&s);
  int bad = 0;
  for (int i = 0; i < 1000; i++)
    bad += v[i] != 7 * i + 1;
  CU_ASSERT_EQUAL(bad, 0);
  ens_shm_sync(&s);
  ens_shm_free(&s);
  CU_ASSERT_EQUAL(s.kind, ENS_SHM_NONE);
  ens_shm_free(&s); /* an empty block: nothing to do */
  /* An empty block is fine too. */
  CU_ASSERT_EQUAL(ens_shm_alloc(&s, &n, 0, "nothing", err, sizeof err), 0);
  CU_ASSERT_PTR_NOT_NULL(s.base);
  ens_shm_free(&s);
  ens_node_free(&n);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  static const cu_case cases[] = {{"layout of MPI_COMM_WORLD", test_layout},
                                  {"rank lists", test_rank_list},
                                  {"node-shared block", test_shm},
                                  {NULL, NULL}};
  int rc = cu_run_suite("node", cases);
  /* Every rank's verdict counts. */
  int worst = 0;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
