/* Example: predict with a trained ensemble from C through libens.
 *
 *   predict RESULT.h5 [--rule average|vote|params|select] < rows.csv
 *
 * Reads rows of raw features (comma- or blank-separated, one row per line)
 * from standard input, predicts them in one call and prints one line per
 * row: the predicted class and the class probabilities, or per target the
 * mean and the variance (aleatoric + epistemic). Build against an installed
 * libens with either
 *   cc predict.c $(pkg-config --cflags --libs ens) -o predict
 * or CMake's find_package(ens) (examples/CMakeLists.txt). */
#include <ens/infer.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 2 && !(argc == 4 && !strcmp(argv[2], "--rule"))) {
    fprintf(stderr, "usage: %s RESULT.h5 [--rule average|vote|params|select] < rows.csv\n",
            argv[0]);
    return 1;
  }
  ens_infer_opts opts = ENS_INFER_OPTS_DEFAULT;
  if (argc == 4 && (opts.rule = ens_rule_parse(argv[3])) < 0) {
    fprintf(stderr, "--rule %s: expected average, vote, params or select\n", argv[3]);
    return 1;
  }
  ens_infer *model = NULL;
  if (ens_infer_open(&model, argv[1])) {
    fprintf(stderr, "%s\n", ens_infer_errmsg());
    return 1;
  }
  const int d = ens_infer_inputs(model);
  const int regress = ens_infer_task(model) == ENS_INFER_REGRESS;
  const int w = regress ? ens_infer_targets(model) : ens_infer_classes(model);
  fprintf(stderr, "%s: %s, %d inputs, %d %s, %d members, rule %s, libens %s\n", argv[1],
          regress ? "regression" : "classification", d, w, regress ? "targets" : "classes",
          ens_infer_members(model), ens_rule_name(ens_infer_default_rule(model)),
          ens_infer_version());

  /* Rows from stdin into one buffer (n, d). */
  size_t cap = 1024, count = 0;
  float *x = malloc(cap * sizeof(float));
  double v;
  int c, rc = 1;
  while (x && (c = scanf("%lf", &v)) == 1) {
    if (count == cap && !(x = realloc(x, (cap *= 2) * sizeof(float))))
      break;
    x[count++] = (float)v;
    while ((c = getchar()) == ',' || c == ' ' || c == '\t')
      ;
    if (c != EOF)
      ungetc(c, stdin);
  }
  if (!x || count == 0 || count % (size_t)d) {
    fprintf(stderr, "stdin: %zu values, expected rows of %d features\n", count, d);
    goto done;
  }
  const int n = (int)(count / (size_t)d);
  float *a = malloc((size_t)n * w * sizeof(float)), *b = malloc((size_t)n * w * sizeof(float));
  int32_t *pred = malloc((size_t)n * sizeof(int32_t));
  ens_infer_out out = {0};
  if (regress) {
    out.mean = a;
    out.var = b;
  } else {
    out.probs = a;
    out.pred = pred;
  }
  /* ws = NULL: this single call creates its own workspace. A program that
   * predicts repeatedly creates one per thread with ens_infer_ws_create. */
  if (!a || !b || !pred || ens_infer_predict(model, NULL, &opts, x, n, d, &out)) {
    fprintf(stderr, "%s\n", a && b && pred ? ens_infer_errmsg() : "out of memory");
  } else {
    for (int i = 0; i < n; i++) {
      if (!regress)
        printf("%d", pred[i]);
      for (int j = 0; j < w; j++)
        if (regress)
          printf("%s%.9g %.9g", j ? " " : "", a[(size_t)i * w + j], b[(size_t)i * w + j]);
        else
          printf(" %.9g", a[(size_t)i * w + j]);
      printf("\n");
    }
    rc = 0;
  }
  free(a);
  free(b);
  free(pred);
done:
  free(x);
  ens_infer_close(model);
  return rc;
}
