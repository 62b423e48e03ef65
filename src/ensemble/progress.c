/* Progress reporting across ranks (see progress.h). */
#include "ensemble/progress.h"
#include "ensemble/tags.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define SEND_EVERY 1.0 /* seconds between reports of a non-root rank */

int ens_progress_init(ens_progress *p, MPI_Comm comm, int64_t steps_total, int members_total,
                      double interval) {
  memset(p, 0, sizeof(*p));
  p->comm = comm;
  ens_comm_rank(comm, &p->rank);
  ens_comm_size(comm, &p->size);
  p->tty = p->rank == 0 && isatty(STDERR_FILENO);
  p->interval = interval;
  p->t0 = p->last_print = p->last_send = ens_comm_wtime();
  p->steps_total = steps_total > 0 ? steps_total : 1;
  p->members_total = members_total;
  p->req = MPI_REQUEST_NULL;
  p->self.rank = p->rank;
  if (p->rank == 0) {
    p->all = calloc((size_t)p->size, sizeof(ens_progress_msg));
    if (!p->all)
      return -1;
  }
  return 0;
}

static void fmt_seconds(char *buf, size_t len, double s) {
  if (!(s >= 0))
    snprintf(buf, len, "?");
  else if (s < 90)
    snprintf(buf, len, "%.0fs", s);
  else if (s < 5400)
    snprintf(buf, len, "%ldm%02lds", (long)s / 60, (long)s % 60);
  else
    snprintf(buf, len, "%.1fh", s / 3600);
}

/* Columns of the terminal on stderr (COLUMNS, else 80 when unknown). */
static int terminal_width(void) {
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
    return ws.ws_col;
  const char *c = getenv("COLUMNS");
  int n = c ? atoi(c) : 0;
  return n >= 20 ? n : 80;
}

void ens_progress_clear(ens_progress *p) {
  if (p->rank != 0 || !p->printed_live)
    return;
  fprintf(stderr, "\r\033[K");
  fflush(stderr);
  p->printed_live = 0;
  p->last_print = 0; /* draw it again at the next step */
}

/* Rank 0: prints the aggregate line. */
static void print_line(ens_progress *p, int force_plain) {
  if (p->quiet)
    return;
  int64_t steps = 0;
  int done = 0, active = 0, epoch = 0, epochs = 0, nfin = 0;
  double loss = 0, loss_fin = 0, sps = 0;
  p->all[0] = p->self;
  for (int r = 0; r < p->size; r++) {
    const ens_progress_msg *m = &p->all[r];
    steps += m->steps_done;
    done += m->members_done;
    sps += m->final ? 0 : m->samples_per_s;
    if (!m->final && m->epochs > 0) {
      /* loss: a member past its first epoch reports its last finished
       * epoch's mean loss; one in its first epoch, its running mean. */
      loss += m->loss;
      active++;
      if (m->epoch > 1) {
        loss_fin += m->loss;
        nfin++;
      }
      epochs = m->epochs > epochs ? m->epochs : epochs;
    }
  }
  double el = ens_comm_wtime() - p->t0;
  double frac = (double)steps / (double)p->steps_total;
  if (frac > 1)
    frac = 1;
  /* epoch: the job's share of all its steps, in epochs of one member: it
   * never goes back when a rank moves on to its next member. */
  if (epochs > p->epochs_seen)
    p->epochs_seen = epochs;
  epoch = (int)(frac * p->epochs_seen);
  if (epoch > p->epoch_shown)
    p->epoch_shown = epoch;
  epoch = p->epoch_shown;
  epochs = p->epochs_seen;
  if (nfin) {
    loss = loss_fin;
    active = nfin;
  }
  char eta[32], elapsed[32];
  fmt_seconds(eta, sizeof(eta), frac > 0 ? el * (1 - frac) / frac : -1);
  fmt_seconds(elapsed, sizeof(elapsed), el);
  char line[512];
  int live = p->tty && !force_plain;
  if (!active) {
    /* The last line: fewer members done than the job's means it was stopped
     * (or failed); the lines after it say which. */
    snprintf(line, sizeof(line), "progress: %d/%d members done%s  elapsed %s", done,
             p->members_total,
             p->ending && done < p->members_total ? ", training ended (stopped or failed)" : "",
             elapsed);
  } else {
    /* Fields in order of importance: a live line drops the last ones that
     * do not fit the terminal, so that it never wraps. */
    char f[7][64];
    snprintf(f[0], sizeof(f[0]), "progress: %d/%d members", done, p->members_total);
    snprintf(f[1], sizeof(f[1]), "%.1f%%", 100.0 * frac);
    snprintf(f[2], sizeof(f[2]), "ETA %s", eta);
    snprintf(f[3], sizeof(f[3]), "epoch %d/%d", epoch, epochs);
    snprintf(f[4], sizeof(f[4]), "loss %.4f", active ? loss / active : 0.0);
    snprintf(f[5], sizeof(f[5]), "elapsed %s", elapsed);
    snprintf(f[6], sizeof(f[6]), "%.0f samples/s", sps);
    static const int order[7] = {0, 3, 4, 6, 1, 5, 2}; /* printed order */
    int keep = 7;
    int width = live ? terminal_width() - 1 : (int)sizeof(line) - 1;
    for (;;) {
      size_t used = 0;
      line[0] = '\0';
      for (int i = 0; i < 7; i++) {
        if (order[i] >= keep)
          continue;
        used += (size_t)snprintf(line + used, sizeof(line) - used, "%s%s", used ? "  " : "",
                                 f[order[i]]);
        if (used >= sizeof(line))
          used = sizeof(line) - 1;
      }
      if ((int)used <= width || keep == 1)
        break;
      keep--;
    }
    if ((int)strlen(line) > width && width > 0)
      line[width] = '\0';
  }
  if (live) {
    /* Carriage return, the line, erase to the end: redrawn in place. */
    fprintf(stderr, "\r%s\033[K", line);
    p->printed_live = 1;
  } else {
    if (p->printed_live)
      fprintf(stderr, "\r\033[K");
    p->printed_live = 0;
    fprintf(stderr, "%s\n", line);
  }
  fflush(stderr);
  p->last_print = ens_comm_wtime();
}

/* Rank 0: takes every report that has arrived, without waiting. */
static void poll_reports(ens_progress *p) {
  int flag = 1;
  while (flag) {
    MPI_Status st;
    ens_comm_iprobe(MPI_ANY_SOURCE, ENS_TAG_PROGRESS, p->comm, &flag, &st);
    if (!flag)
      break;
    ens_progress_msg m;
    ens_comm_recv(&m, (int)sizeof(m), MPI_BYTE, st.MPI_SOURCE, ENS_TAG_PROGRESS, p->comm,
             MPI_STATUS_IGNORE);
    int before = p->all[st.MPI_SOURCE].members_done;
    p->all[st.MPI_SOURCE] = m;
    if (m.members_done > before && !p->tty)
      print_line(p, 1);
  }
}

/* Non-root: sends the current state unless a report is still in flight. */
static void send_report(ens_progress *p, int force) {
  int done = 1;
  if (p->req != MPI_REQUEST_NULL)
    ens_comm_test(&p->req, &done, MPI_STATUS_IGNORE);
  if (!done)
    return; /* never wait: rank 0 will hear the next one */
  double now = ens_comm_wtime();
  if (!force && now - p->last_send < SEND_EVERY)
    return;
  p->out = p->self;
  ens_comm_isend(&p->out, (int)sizeof(p->out), MPI_BYTE, 0, ENS_TAG_PROGRESS, p->comm, &p->req);
  p->last_send = now;
}

static void tick(ens_progress *p, int member_end) {
  if (p->rank != 0) {
    send_report(p, member_end);
    return;
  }
  poll_reports(p);
  double now = ens_comm_wtime();
  if (member_end && !p->tty)
    print_line(p, 1);
  else if (p->tty ? now - p->last_print >= 0.5 : now - p->last_print >= p->interval)
    print_line(p, 0);
}

void ens_progress_step(ens_progress *p, int64_t unit_steps, int epoch, int epochs, double loss,
                       double samples_per_s) {
  p->self.steps_done = p->steps_before + unit_steps;
  p->self.epoch = epoch;
  p->self.epochs = epochs;
  p->self.loss = loss;
  p->self.samples_per_s = samples_per_s;
  tick(p, 0);
}

void ens_progress_member(ens_progress *p) {
  p->self.members_done++;
  tick(p, 1);
}

void ens_progress_unit_end(ens_progress *p, int64_t steps) {
  p->steps_before += steps;
  p->self.steps_done = p->steps_before;
}

void ens_progress_finish(ens_progress *p) {
  p->self.final = 1;
  p->self.samples_per_s = 0;
  if (p->rank != 0) {
    if (p->req != MPI_REQUEST_NULL)
      ens_comm_wait(&p->req, MPI_STATUS_IGNORE);
    p->out = p->self;
    ens_comm_send(&p->out, (int)sizeof(p->out), MPI_BYTE, 0, ENS_TAG_PROGRESS, p->comm);
    return;
  }
  /* Rank 0 waits for the final report of every rank, reporting meanwhile. */
  int missing = 0;
  for (int r = 1; r < p->size; r++)
    missing += !p->all[r].final;
  while (missing > 0) {
    ens_progress_msg m;
    MPI_Status st;
    ens_comm_recv(&m, (int)sizeof(m), MPI_BYTE, MPI_ANY_SOURCE, ENS_TAG_PROGRESS, p->comm, &st);
    int before = p->all[st.MPI_SOURCE].members_done;
    if (m.final && !p->all[st.MPI_SOURCE].final)
      missing--;
    p->all[st.MPI_SOURCE] = m;
    double now = ens_comm_wtime();
    if ((m.members_done > before && !p->tty) ||
        now - p->last_print >= (p->tty ? 0.5 : p->interval))
      print_line(p, m.members_done > before);
  }
  p->ending = 1;
  print_line(p, 1);
}

void ens_progress_free(ens_progress *p) {
  if (p->rank != 0 && p->req != MPI_REQUEST_NULL)
    ens_comm_wait(&p->req, MPI_STATUS_IGNORE);
  free(p->all);
  p->all = NULL;
}
