/* Agreement on errors across ranks and the early-stop notice (fault.h). */
#include "ensemble/fault.h"
#include "ensemble/tags.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"

#define MSG_LEN 2048
#define POLL_EVERY 0.05 /* seconds between probes for a notice */

int ens_agree(MPI_Comm comm, int ret, char *err, size_t errlen) {
  int rank, size;
  ens_comm_rank(comm, &rank);
  ens_comm_size(comm, &size);
  /* Severity: 2 error, 1 stopped, 0 fine; then the lowest rank with the
   * worst severity speaks for everyone. */
  int sev = ret == 0 ? 0 : ret == ENS_ESTOPPED ? 1 : 2, worst;
  ens_comm_allreduce(&sev, &worst, 1, MPI_INT, MPI_MAX, comm);
  if (worst == 0)
    return 0;
  int mine = sev == worst ? rank : size, who;
  ens_comm_allreduce(&mine, &who, 1, MPI_INT, MPI_MIN, comm);
  int code = ret;
  ens_comm_bcast(&code, 1, MPI_INT, who, comm);
  char msg[MSG_LEN];
  if (rank == who) {
    const char *text = err && err[0] ? err : ens_strerror(ret);
    if (who > 0 && worst == 2)
      snprintf(msg, sizeof(msg), "rank %d: %s", who, text);
    else
      snprintf(msg, sizeof(msg), "%s", text);
  }
  ens_comm_bcast(msg, sizeof(msg), MPI_CHAR, who, comm);
  if (err && errlen)
    snprintf(err, errlen, "%s", msg);
  return code;
}

int ens_fault_init(ens_fault *f, MPI_Comm comm) {
  memset(f, 0, sizeof(*f));
  f->comm = comm;
  ens_comm_rank(comm, &f->rank);
  ens_comm_size(comm, &f->size);
  f->reqs = malloc((size_t)f->size * sizeof(MPI_Request));
  if (!f->reqs)
    return ENS_ENOMEM;
  for (int r = 0; r < f->size; r++)
    f->reqs[r] = MPI_REQUEST_NULL;
  f->last_poll = ens_comm_wtime();
  return 0;
}

void ens_fault_raise(ens_fault *f, int code) {
  if (f->raised || !f->reqs)
    return;
  f->raised = 1;
  f->payload = (int32_t)code;
  for (int r = 0; r < f->size; r++)
    if (r != f->rank)
      ens_comm_isend(&f->payload, 1, MPI_INT32_T, r, ENS_TAG_FAULT, f->comm, &f->reqs[r]);
}

int ens_fault_heard(ens_fault *f) {
  if (f->heard || f->size < 2)
    return f->heard;
  double now = ens_comm_wtime();
  if (now - f->last_poll < POLL_EVERY)
    return 0;
  f->last_poll = now;
  int flag = 0;
  ens_comm_iprobe(MPI_ANY_SOURCE, ENS_TAG_FAULT, f->comm, &flag, MPI_STATUS_IGNORE);
  f->heard = flag;
  return flag;
}

void ens_fault_finish(ens_fault *f) {
  int raised = f->raised, total = 0;
  ens_comm_allreduce(&raised, &total, 1, MPI_INT, MPI_SUM, f->comm);
  /* Every rank that raised sent one notice to each other rank. */
  for (int i = 0; i < total - raised; i++) {
    int32_t v;
    ens_comm_recv(&v, 1, MPI_INT32_T, MPI_ANY_SOURCE, ENS_TAG_FAULT, f->comm, MPI_STATUS_IGNORE);
  }
  if (f->reqs)
    ens_comm_waitall(f->size, f->reqs, MPI_STATUSES_IGNORE);
}

void ens_fault_free(ens_fault *f) {
  free(f->reqs);
  f->reqs = NULL;
}
