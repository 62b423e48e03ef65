/* The run history of a result (see history.h). */
#include "ensemble/history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ens/error.h"
#include "io/h5util.h"

static void iso(char *out, size_t len, double t) {
  time_t s = (time_t)t;
  struct tm tm;
  if (t <= 0 || !gmtime_r(&s, &tm) || !strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(out, len, "?");
}

void ens_history_segment(char *out, size_t len, double start, double stop, int ranks, int nodes,
                         double seconds, const char *end, int first, int last) {
  char a[32], b[32];
  iso(a, sizeof(a), start);
  iso(b, sizeof(b), stop);
  snprintf(out, len, "start=%s stop=%s ranks=%d nodes=%d seconds=%.1f end=%s members=%d-%d", a,
           b, ranks, nodes, seconds, end, first, last - 1);
}

/* The value of "seconds=" in a segment line (0 when absent). */
static double line_seconds(const char *line) {
  const char *p = strstr(line, "seconds=");
  return p ? atof(p + 8) : 0.0;
}

int ens_history_write_job(hid_t f, const ens_job *j, double train_wall) {
  const char *prior = j->o && j->o->history ? j->o->history : "";
  int merged = j->merge.n > 0;
  char now[256];
  if (!merged) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double stop = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    double start = j->o && j->o->started > 0 ? j->o->started : stop - train_wall;
    ens_history_segment(now, sizeof(now), start, stop, j->size, j->node.count > 0 ? j->node.count : 1,
                        stop - start, "done", j->first, j->last);
  }
  /* Lines: the prior text split at newlines, then this run's. */
  size_t n = merged ? 0 : 1, cap;
  for (const char *p = prior; *p; p++)
    n += *p == '\n';
  n += prior[0] && prior[strlen(prior) - 1] != '\n';
  cap = n;
  char *copy = malloc(strlen(prior) + 1);
  const char **lines = malloc((cap ? cap : 1) * sizeof(char *));
  if (!copy || !lines) {
    free(copy);
    free(lines);
    return ENS_ENOMEM;
  }
  strcpy(copy, prior);
  size_t k = 0;
  double secs = 0;
  int parts = 0;
  for (char *save = NULL, *tok = strtok_r(copy, "\n", &save); tok && k < cap;
       tok = strtok_r(NULL, "\n", &save)) {
    lines[k++] = tok;
    secs += line_seconds(tok);
  }
  if (!merged && k < cap) {
    lines[k++] = now;
    secs += line_seconds(now);
  }
  if (merged)
    parts = j->merge.n;
  int ret = ens_h5_group(f, "/history");
  ret |= ens_h5_write_strings(f, "/history/segments", lines, k);
  ret |= ens_h5_attr_i64(f, "/history", "segments", (int64_t)k);
  ret |= ens_h5_attr_i64(f, "/history", "parts", parts);
  ret |= ens_h5_attr_f64(f, "/history", "seconds", secs);
  free(copy);
  free(lines);
  return ret ? ENS_EHDF5 : 0;
}

char *ens_history_read(hid_t f, const char *prefix) {
  long long n = ens_h5_exists(f, "/history/segments") ? ens_h5_size(f, "/history/segments", NULL, NULL)
                                                       : 0;
  char **s = n > 0 ? ens_h5_read_strings(f, "/history/segments", n) : NULL;
  size_t len = 1, plen = strlen(prefix);
  for (long long i = 0; s && i < n; i++)
    len += plen + strlen(s[i]) + 1;
  char legacy[256] = "";
  if (!s) {
    /* A result from before /history: one segment from what it has. */
    double secs = 0;
    int64_t ranks = 1, nodes = 1;
    ens_h5_get_attr_f64(f, "/", "train_seconds", &secs);
    ens_h5_get_attr_i64(f, "/", "ranks", &ranks);
    if (ens_h5_exists(f, "/ranks"))
      ens_h5_get_attr_i64(f, "/ranks", "nodes", &nodes);
    snprintf(legacy, sizeof(legacy), "start=? stop=? ranks=%lld nodes=%lld seconds=%.1f end=done",
             (long long)ranks, (long long)nodes, secs);
    len += plen + strlen(legacy) + 1;
  }
  char *out = malloc(len);
  if (out) {
    size_t used = 0;
    out[0] = '\0';
    for (long long i = 0; s && i < n; i++)
      used += (size_t)snprintf(out + used, len - used, "%s%s\n", prefix, s[i]);
    if (!s)
      snprintf(out + used, len - used, "%s%s\n", prefix, legacy);
  }
  for (long long i = 0; s && i < n; i++)
    free(s[i]);
  free(s);
  return out;
}
