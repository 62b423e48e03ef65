/* Ranks grouped by node: the node communicator (MPI_COMM_TYPE_SHARED), which
 * node every rank is on, the layout report printed at start, and node-shared
 * memory blocks (MPI-3 shared windows) that hold one copy of read-only data
 * per node instead of one per rank. */
#ifndef ENS_ENSEMBLE_NODE_H
#define ENS_ENSEMBLE_NODE_H

#include <mpi.h>
#include <stddef.h>

#include "core/comm.h"

typedef struct ens_node {
  MPI_Comm comm;    /* this node's ranks; owned (MPI_COMM_NULL when not set up) */
  int rank, size;   /* in comm: node rank 0 is the node's lowest job rank */
  int index, count; /* this node's number (nodes ordered by their lowest job
                       rank) and the number of nodes of the job */
  int *of_rank;     /* (job size) the node index of every job rank */
  int cores;        /* online processors of this node (sysconf) */
  char name[MPI_MAX_PROCESSOR_NAME];
  /* Job rank 0 only (else NULL): per node (count) its name, cores and ranks. */
  char *names;      /* (count, MPI_MAX_PROCESSOR_NAME) */
  int *node_cores, *node_ranks;
} ens_node;

/* Collective over comm: splits it into nodes and gathers the layout.
 * Returns 0, or ENS_ENOMEM / ENS_EMPI with a message in err. Free with
 * ens_node_free (collective over the node). */
int ens_node_init(ens_node *n, MPI_Comm comm, char *err, size_t errlen);
void ens_node_free(ens_node *n);

/* Job rank 0 prints the layout once: nodes, ranks per node, BLAS threads per
 * rank and cores per node, and warns on stderr about every node where
 * ranks x threads exceed the cores. Other ranks do nothing. */
void ens_node_print_layout(const ens_node *n, int threads);

/* "0-3,6,8-9": the job ranks on node `node` (job rank 0 only). */
void ens_node_rank_list(const ens_node *n, int job_size, int node, char *buf, size_t len);

enum { ENS_SHM_NONE = 0, ENS_SHM_PRIVATE, ENS_SHM_WINDOW };

/* One node-shared block: allocated by node rank 0, mapped by the others. A
 * zeroed struct is an empty block (ens_shm_free does nothing). */
typedef struct ens_shm {
  int kind;            /* ENS_SHM_NONE, _PRIVATE (a node of one rank: malloc) or _WINDOW */
  MPI_Win win;         /* kind == ENS_SHM_WINDOW */
  unsigned char *base; /* the block as mapped in this rank (ENS_DATA_ALIGN-aligned) */
  size_t bytes;
} ens_shm;

/* Collective over the node: a block of `bytes` (node rank 0's value counts)
 * that every rank of the node sees at s->base. Returns 0, or ENS_ENOMEM with
 * a message in err naming what was asked for. */
int ens_shm_alloc(ens_shm *s, const ens_node *n, size_t bytes, const char *what, char *err,
                  size_t errlen);
/* Collective over the node: every rank's writes into the block are visible
 * to all ranks of the node afterwards (a node barrier). */
void ens_shm_sync(ens_shm *s);
/* Collective over the node: frees the block. */
void ens_shm_free(ens_shm *s);

#endif
