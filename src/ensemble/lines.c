/* Ranks' log lines routed through rank 0 (see lines.h). Each line is one
 * message with tag ENS_TAG_LINE on the job's communicator; an empty message is
 * a rank's last. Messages of one sender arrive in order (MPI's
 * non-overtaking rule), so a rank's lines keep their order. */
#include "ensemble/lines.h"
#include "ensemble/tags.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/error.h"


int ens_lines_init(ens_lines *l, MPI_Comm comm, ens_progress *p) {
  memset(l, 0, sizeof(*l));
  l->comm = comm;
  ens_comm_rank(comm, &l->rank);
  ens_comm_size(comm, &l->size);
  l->progress = p;
  l->active = l->size > 1;
  return 0;
}

static void put(ens_lines *l, const char *line) {
  if (l->progress)
    ens_progress_clear(l->progress);
  fputs(line, stdout);
  fflush(stdout);
}

/* Non-root: a free slot (a finished send's, or a new one), or -1. */
static int free_slot(ens_lines *l) {
  for (int i = 0; i < l->cap; i++) {
    if (l->req[i] != MPI_REQUEST_NULL) {
      int done = 0;
      ens_comm_test(&l->req[i], &done, MPI_STATUS_IGNORE);
    }
    if (l->req[i] == MPI_REQUEST_NULL)
      return i;
  }
  int cap = l->cap ? 2 * l->cap : 8;
  MPI_Request *req = realloc(l->req, (size_t)cap * sizeof(*req));
  if (!req)
    return -1;
  l->req = req;
  char **buf = realloc(l->buf, (size_t)cap * sizeof(*buf));
  if (!buf)
    return -1;
  l->buf = buf;
  for (int i = l->cap; i < cap; i++) {
    l->req[i] = MPI_REQUEST_NULL;
    l->buf[i] = NULL;
  }
  int slot = l->cap;
  l->cap = cap;
  return slot;
}

void ens_lines_printf(ens_lines *l, const char *fmt, ...) {
  char line[ENS_LINE_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if (n > (int)sizeof(line) - 2)
    n = (int)sizeof(line) - 2;
  line[n] = '\n';
  line[n + 1] = '\0';
  if (!l->active || l->rank == 0) {
    put(l, line);
    return;
  }
  int s = free_slot(l);
  if (s >= 0 && !l->buf[s])
    l->buf[s] = malloc(ENS_LINE_MAX);
  if (s < 0 || !l->buf[s]) {
    put(l, line); /* out of memory: better a line here than none */
    return;
  }
  memcpy(l->buf[s], line, (size_t)n + 2);
  ens_comm_isend(l->buf[s], n + 2, MPI_CHAR, 0, ENS_TAG_LINE, l->comm, &l->req[s]);
}

/* Rank 0: receives the message st announced and prints it. */
static void take(ens_lines *l, const MPI_Status *st) {
  int count = 0;
  ens_comm_get_count(st, MPI_CHAR, &count);
  char line[ENS_LINE_MAX + 1];
  if (count < 0 || count > ENS_LINE_MAX)
    count = ENS_LINE_MAX;
  ens_comm_recv(line, count, MPI_CHAR, st->MPI_SOURCE, ENS_TAG_LINE, l->comm, MPI_STATUS_IGNORE);
  line[count] = '\0';
  if (count == 0)
    l->ended++;
  else
    put(l, line);
}

void ens_lines_poll(ens_lines *l) {
  if (!l->active || l->rank != 0)
    return;
  for (;;) {
    int flag = 0;
    MPI_Status st;
    ens_comm_iprobe(MPI_ANY_SOURCE, ENS_TAG_LINE, l->comm, &flag, &st);
    if (!flag)
      return;
    take(l, &st);
  }
}

void ens_lines_finish(ens_lines *l) {
  if (!l->active)
    return;
  if (l->rank != 0) {
    ens_comm_send(NULL, 0, MPI_CHAR, 0, ENS_TAG_LINE, l->comm);
    if (l->cap)
      ens_comm_waitall(l->cap, l->req, MPI_STATUSES_IGNORE);
    return;
  }
  while (l->ended < l->size - 1) {
    MPI_Status st;
    ens_comm_probe(MPI_ANY_SOURCE, ENS_TAG_LINE, l->comm, &st);
    take(l, &st);
  }
}

void ens_lines_free(ens_lines *l) {
  if (l->cap && l->rank != 0)
    ens_comm_waitall(l->cap, l->req, MPI_STATUSES_IGNORE);
  for (int i = 0; i < l->cap; i++)
    free(l->buf[i]);
  free(l->buf);
  free(l->req);
  memset(l, 0, sizeof(*l));
}
