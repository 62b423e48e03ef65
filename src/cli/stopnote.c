/* What a stopped `ens train` leaves behind, said in one line: where the
 * checkpoints are and how far they got (read back from the checkpoint
 * folder, so the line is true whatever rank wrote what), and the outcome
 * file a batch script reads (ENS_STATUS_FILE) to decide its own exit code. */
#include <hdf5.h>
#include <mpi.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ens/hyperdeep.h"
#include "ensemble/history.h"
#include "io/h5util.h"

/* path made absolute against the current folder (no symlink resolution: the
 * file may not exist yet). */
void ens_cli_abspath(char *out, size_t len, const char *path) {
  char cwd[PATH_MAX];
  const char *rel = path[0] == '.' && path[1] == '/' ? path + 2 : path;
  size_t nc, nr = strlen(rel);
  if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)) || (nc = strlen(cwd)) + nr + 2 > len) {
    snprintf(out, len, "%s", path);
    return;
  }
  memcpy(out, cwd, nc);
  out[nc] = '/';
  memcpy(out + nc + 1, rel, nr + 1);
}

void ens_cli_checkpoint_dir(char *out, size_t len, const ens_config *c) {
  char rel[ENS_PATH_MAX + 8];
  if (c->checkpoint_dir[0])
    snprintf(rel, sizeof(rel), "%s", c->checkpoint_dir);
  else
    snprintf(rel, sizeof(rel), "%s.ckpt", c->output_path);
  ens_cli_abspath(out, len, rel);
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

int ens_cli_stop_note(char *out, size_t len, const ens_config *c) {
  char dir[ENS_PATH_MAX + 64], path[ENS_PATH_MAX + 96];
  ens_cli_checkpoint_dir(dir, sizeof(dir), c);
  int first = c->first_member,
      last = ens_hyperdeep_on(c) ? ens_hyperdeep_total(c)
             : c->count > 0  ? c->first_member + c->count
                             : c->members;
  int S = c->mode == ENS_MODE_SNAPSHOT && c->snapshots > 0 ? c->snapshots : 1;
  int done = 0, partial = 0, saved = 0;
  int64_t emin = -1, emax = -1;
  for (int k = first; k < last; k++) {
    snprintf(path, sizeof(path), "%s/member_%d.h5", dir, k);
    if (exists(path))
      done++;
  }
  saved = done;
  H5E_BEGIN_TRY {
    for (int u = first / S; u <= (last - 1) / S; u++) {
      snprintf(path, sizeof(path), "%s/unit_%d.h5", dir, u);
      if (!exists(path))
        continue;
      saved++;
      hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
      int64_t d = 1, e = 0;
      if (f >= 0 && !ens_h5_get_attr_i64(f, "/", "done", &d) && !d &&
          !ens_h5_get_attr_i64(f, "/", "epoch", &e)) {
        partial++;
        emin = emin < 0 || e < emin ? e : emin;
        emax = e > emax ? e : emax;
      }
      if (f >= 0)
        H5Fclose(f);
    }
  }
  H5E_END_TRY;
  if (!saved) {
    /* Stopped during trunk pretraining: its own checkpoint (trunk.c says
     * where it stopped). */
    snprintf(path, sizeof(path), "%s/pretrain.h5", dir);
    if (exists(path))
      return snprintf(out, len, "checkpoints in %s: trunk pretraining (pretrain.h5), no member "
                                "started yet", dir) < 0 ? -1 : 2;
  }
  if (!saved)
    return snprintf(out, len, "nothing to save yet (stopped before the first checkpoint; "
                              "%s holds none)", dir) < 0 ? -1 : 0;
  char at[96] = "";
  if (partial && emin == emax)
    snprintf(at, sizeof(at), ", %d in progress with %lld of %d epochs done", partial * S,
             (long long)emin, c->epochs);
  else if (partial)
    snprintf(at, sizeof(at), ", %d in progress with %lld-%lld of %d epochs done", partial * S,
             (long long)emin, (long long)emax, c->epochs);
  snprintf(out, len, "checkpoints in %s: %d of %d members finished%s", dir, done, last - first,
           at);
  return 1;
}

int ens_cli_status_write(const char *file, const char *state, int code, const ens_config *c,
                         const char *message) {
  char tmp[PATH_MAX + 8], result[ENS_PATH_MAX + 8], dir[ENS_PATH_MAX + 64];
  if (!file || !file[0])
    return 0;
  snprintf(tmp, sizeof(tmp), "%s.tmp", file);
  FILE *f = fopen(tmp, "w");
  if (!f)
    return -1;
  fprintf(f, "state=%s\ncode=%d\n", state, code);
  if (c) {
    ens_cli_abspath(result, sizeof(result), c->output_path);
    ens_cli_checkpoint_dir(dir, sizeof(dir), c);
    fprintf(f, "result=%s\ncheckpoints=%s\nmembers=%d\n", result, dir,
            ens_hyperdeep_on(c) ? ens_hyperdeep_total(c)
            : c->count > 0  ? c->count
                            : c->members - c->first_member);
  }
  /* One line: the message's own newlines would end the key. */
  fputs("message=", f);
  for (const char *p = message ? message : ""; *p; p++)
    fputc(*p == '\n' ? ' ' : *p, f);
  fputc('\n', f);
  if (fclose(f) != 0 || rename(tmp, file) != 0) {
    remove(tmp);
    return -1;
  }
  return 0;
}

/* ---- run history across stops (see src/ensemble/history.h) -------------- */

/* <checkpoint folder>/history_<first>-<last>.txt: the segments of the runs
 * that stopped, one line each, until a run finishes and the result takes
 * them. */
static void history_path(char *out, size_t len, const ens_config *c) {
  char dir[ENS_PATH_MAX + 64];
  int first = c->first_member,
      last = ens_hyperdeep_on(c) ? ens_hyperdeep_total(c)
             : c->count > 0  ? c->first_member + c->count
                             : c->members;
  ens_cli_checkpoint_dir(dir, sizeof(dir), c);
  snprintf(out, len, "%s/history_%d-%d.txt", dir, first, last - 1);
}

char *ens_cli_history_load(const ens_config *c, int discard) {
  char path[ENS_PATH_MAX + 128];
  history_path(path, sizeof(path), c);
  if (discard) {
    remove(path);
    return NULL;
  }
  FILE *f = fopen(path, "r");
  if (!f)
    return NULL;
  size_t cap = 4096, n = 0;
  char *s = malloc(cap);
  int ch;
  while (s && (ch = fgetc(f)) != EOF) {
    if (n + 2 > cap) {
      char *t = realloc(s, cap *= 2);
      if (!t) {
        free(s);
        s = NULL;
        break;
      }
      s = t;
    }
    s[n++] = (char)ch;
  }
  if (s)
    s[n] = '\0';
  fclose(f);
  return s;
}

void ens_cli_history_append(const ens_config *c, const char *line) {
  char path[ENS_PATH_MAX + 128];
  history_path(path, sizeof(path), c);
  FILE *f = fopen(path, "a");
  if (!f)
    return; /* the history is a record, not a reason to fail the stop */
  fprintf(f, "%s\n", line);
  fclose(f);
}

void ens_cli_history_done(const ens_config *c) {
  char path[ENS_PATH_MAX + 128], dir[ENS_PATH_MAX + 64];
  history_path(path, sizeof(path), c);
  if (remove(path) == 0) {
    ens_cli_checkpoint_dir(dir, sizeof(dir), c);
    rmdir(dir); /* only when empty, as the job's own cleanup */
  }
}

int ens_cli_count_nodes(MPI_Comm comm) {
  MPI_Comm local;
  int lrank = 0, one, nodes = 1;
  if (ens_comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) != MPI_SUCCESS)
    return 1;
  ens_comm_rank(local, &lrank);
  one = lrank == 0;
  ens_comm_allreduce(&one, &nodes, 1, MPI_INT, MPI_SUM, comm);
  ens_comm_free(&local);
  return nodes;
}

/* The value of key=... in a history line (up to the next blank), or "?". */
static void field(char *out, size_t len, const char *line, const char *key) {
  char pat[32];
  snprintf(pat, sizeof(pat), "%s=", key);
  const char *p = line;
  size_t kl = strlen(pat);
  while ((p = strstr(p, pat)) && p != line && p[-1] != ' ')
    p += kl;
  if (!p) {
    snprintf(out, len, "?");
    return;
  }
  p += kl;
  size_t n = strcspn(p, " ");
  if (n >= len)
    n = len - 1;
  memcpy(out, p, n);
  out[n] = '\0';
}

void ens_cli_print_history(hid_t f) {
  char *text = ens_history_read(f, "");
  if (!text)
    return;
  int64_t parts = 0;
  double total = 0;
  int n = 0, stops = 0;
  if (ens_h5_exists(f, "/history"))
    ens_h5_get_attr_i64(f, "/history", "parts", &parts);
  for (char *p = text; *p; p++)
    n += *p == '\n';
  char *save = NULL, *copy = text;
  char a[40], b[40], r[16], nd[16], s[24], e[24], m[32], part[256];
  for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    field(s, sizeof(s), line, "seconds");
    total += atof(s);
    field(e, sizeof(e), line, "end");
    stops += strcmp(e, "done") != 0;
  }
  if (parts > 0)
    printf("  history       merged from %lld parts: %d run segment%s, %d stopped and resumed, "
           "%.1f s of runs in all\n",
           (long long)parts, n, n == 1 ? "" : "s", stops, total);
  else
    printf("  history       %d run segment%s (%d stopped and resumed), %.1f s of runs in all\n", n,
           n == 1 ? "" : "s", stops, total);
  free(text);
  text = ens_history_read(f, "");
  save = NULL;
  int i = 0;
  for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
       line = strtok_r(NULL, "\n", &save)) {
    field(part, sizeof(part), line, "part");
    field(a, sizeof(a), line, "start");
    field(b, sizeof(b), line, "stop");
    field(r, sizeof(r), line, "ranks");
    field(nd, sizeof(nd), line, "nodes");
    field(s, sizeof(s), line, "seconds");
    field(e, sizeof(e), line, "end");
    field(m, sizeof(m), line, "members");
    /* Same day: the stop as a time only. */
    const char *bshow = strlen(a) > 11 && !strncmp(a, b, 11) ? b + 11 : b;
    printf("                %d. %s%s%s - %s  %s rank%s on %s node%s  %s s  %s%s  members %s\n",
           ++i, parts > 0 ? part : "", parts > 0 ? ": " : "", a, bshow, r,
           strcmp(r, "1") ? "s" : "", nd, strcmp(nd, "1") ? "s" : "", s,
           strcmp(e, "done") ? "stopped by " : "", e, m);
  }
  free(text);
}
