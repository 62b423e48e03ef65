/* ens-infer-threads: THREADS threads share one libens model handle, each with
 * its own workspace, and must reproduce the bits of one thread.
 *
 *   ens-infer-threads RESULT.h5 THREADS ROWS CALL_ROWS REPEATS [MC [BATCH]]
 *
 * ROWS pseudo-random rows (a fixed generator, values in [-2, 2)) are
 * predicted by the main thread alone in calls of CALL_ROWS rows, with the
 * result's own rule (and MC passes when MC > 0); then every thread predicts
 * the same calls REPEATS times into its own buffers, all threads at once.
 * Exit 0 when every output of every thread equals the single-threaded one
 * bit for bit, 1 otherwise (the first difference is printed). BATCH is
 * ens_infer_ws_create's batch (default 0; > 0: the fast path, whose compiled
 * networks the threads' first workspaces build at once). Run under
 * valgrind --tool=helgrind or a ThreadSanitizer build by
 * tests/integration/libens.sh. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ens/infer.h"

typedef struct {
  const ens_infer *m;
  const float *x;
  int n, call, repeats, mc, fields, batch;
  float *out; /* (fields, n) per-row outputs packed: see run() */
  int32_t *pred;
  int err;
  char msg[512];
} job;

static void *run(void *arg) {
  job *j = arg;
  ens_infer_ws *ws = NULL;
  if (ens_infer_ws_create(&ws, j->m, 0, j->batch)) {
    j->err = 1;
    snprintf(j->msg, sizeof(j->msg), "%s", ens_infer_errmsg());
    return NULL;
  }
  const int d = ens_infer_inputs(j->m);
  const int regress = ens_infer_task(j->m) == ENS_INFER_REGRESS;
  const int w = regress ? ens_infer_targets(j->m) : ens_infer_classes(j->m);
  ens_infer_opts o = ENS_INFER_OPTS_DEFAULT;
  o.mc_samples = j->mc;
  for (int r = 0; r < j->repeats && !j->err; r++)
    for (int i = 0; i < j->n; i += j->call) {
      int b = j->n - i < j->call ? j->n - i : j->call;
      float *base = j->out;
      size_t N = (size_t)j->n;
      ens_infer_out out = {0};
      if (regress) {
        out.mean = base + (size_t)i * w;
        out.var = base + N * w + (size_t)i * w;
        out.var_aleatoric = base + 2 * N * w + (size_t)i * w;
        out.var_epistemic = base + 3 * N * w + (size_t)i * w;
      } else {
        out.probs = base + (size_t)i * w;
        out.uncertainty = base + N * w + (size_t)i * 3;
        out.pred = j->pred + i;
      }
      if (ens_infer_predict(j->m, ws, &o, j->x + (size_t)i * d, b, d, &out)) {
        j->err = 1;
        snprintf(j->msg, sizeof(j->msg), "%s", ens_infer_errmsg());
        break;
      }
    }
  ens_infer_ws_free(ws);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 6 || argc > 8) {
    fprintf(stderr, "usage: %s RESULT.h5 THREADS ROWS CALL_ROWS REPEATS [MC [BATCH]]\n", argv[0]);
    return 2;
  }
  const int nt = atoi(argv[2]), n = atoi(argv[3]), call = atoi(argv[4]), rep = atoi(argv[5]);
  const int mc = argc >= 7 ? atoi(argv[6]) : 0, batch = argc == 8 ? atoi(argv[7]) : 0;
  ens_infer *m = NULL;
  if (nt < 1 || n < 1 || call < 1 || rep < 1 || ens_infer_open(&m, argv[1])) {
    fprintf(stderr, "%s\n", m ? "bad arguments" : ens_infer_errmsg());
    return 2;
  }
  const int d = ens_infer_inputs(m);
  const int regress = ens_infer_task(m) == ENS_INFER_REGRESS;
  const int w = regress ? ens_infer_targets(m) : ens_infer_classes(m);
  const size_t per = regress ? 4 * (size_t)n * w : (size_t)n * (w + 3);
  float *x = malloc((size_t)n * d * sizeof(float));
  job *jobs = calloc((size_t)nt + 1, sizeof(job));
  pthread_t *th = calloc((size_t)nt, sizeof(pthread_t));
  if (!x || !jobs || !th)
    return 2;
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < (size_t)n * d; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x[i] = (float)((double)(s >> 40) / (double)(1ull << 24) * 4.0 - 2.0);
  }
  for (int t = 0; t <= nt; t++) {
    jobs[t] = (job){.m = m, .x = x, .n = n, .call = call, .repeats = t ? rep : 1, .mc = mc,
                   .batch = batch};
    jobs[t].out = calloc(per, sizeof(float));
    jobs[t].pred = calloc((size_t)n, sizeof(int32_t));
    if (!jobs[t].out || !jobs[t].pred)
      return 2;
  }
  run(&jobs[0]); /* the reference: this thread alone */
  for (int t = 1; t <= nt; t++)
    if (pthread_create(&th[t - 1], NULL, run, &jobs[t]))
      return 2;
  for (int t = 1; t <= nt; t++)
    pthread_join(th[t - 1], NULL);
  int bad = 0;
  for (int t = 0; t <= nt && !bad; t++) {
    if (jobs[t].err) {
      fprintf(stderr, "thread %d: %s\n", t, jobs[t].msg);
      bad = 1;
      break;
    }
    if (t == 0)
      continue;
    for (size_t e = 0; e < per && !bad; e++)
      if (memcmp(&jobs[t].out[e], &jobs[0].out[e], sizeof(float))) {
        fprintf(stderr, "thread %d: output value %zu is %.9g, one thread gave %.9g\n", t, e,
                (double)jobs[t].out[e], (double)jobs[0].out[e]);
        bad = 1;
      }
    if (!bad && memcmp(jobs[t].pred, jobs[0].pred, (size_t)n * sizeof(int32_t))) {
      fprintf(stderr, "thread %d: predicted classes differ from one thread's\n", t);
      bad = 1;
    }
  }
  if (!bad)
    printf("%d threads x %d repeats, %d rows in calls of %d%s%s: identical to 1 thread\n", nt, rep,
           n, call, mc ? " (MC-dropout)" : "", batch > 0 ? " (fast path)" : "");
  for (int t = 0; t <= nt; t++) {
    free(jobs[t].out);
    free(jobs[t].pred);
  }
  free(jobs);
  free(th);
  free(x);
  ens_infer_close(m);
  return bad;
}
