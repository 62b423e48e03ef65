/* Words for an unknown command-line option: the option it was probably
 * meant to be (underscores for dashes, or a small typo) and where the
 * command's options are listed. */
#include "cli/suggest.h"

#include <stdio.h>
#include <string.h>

/* Edit distance of a and b, capped at 9. */
static int distance(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  if (na > 63 || nb > 63)
    return 9;
  int d[64][64];
  for (size_t i = 0; i <= na; i++)
    d[i][0] = (int)i;
  for (size_t j = 0; j <= nb; j++)
    d[0][j] = (int)j;
  for (size_t i = 1; i <= na; i++)
    for (size_t j = 1; j <= nb; j++) {
      int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
      d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
  return d[na][nb] > 9 ? 9 : d[na][nb];
}

const char *ens_cli_closest_option(const char *opt, const char *const *known) {
  char norm[64];
  snprintf(norm, sizeof(norm), "%s", opt);
  char *eq = strchr(norm, '=');
  if (eq)
    *eq = '\0';
  for (char *p = norm; *p; p++)
    if (*p == '_')
      *p = '-';
  const char *best = NULL;
  int bd = 3; /* at most 2 edits away */
  for (int i = 0; known && known[i]; i++) {
    int dd = distance(norm, known[i]);
    if (dd < bd) {
      bd = dd;
      best = known[i];
    }
  }
  return best && strcmp(best, opt) ? best : NULL;
}

void ens_cli_unknown_option(const char *cmd, const char *opt, const char *const *known,
                            const char *hint) {
  const char *near = ens_cli_closest_option(opt, known);
  fprintf(stderr, "ens %s: unknown option '%s' (", cmd, opt);
  if (near)
    fprintf(stderr, "did you mean %s? ", near);
  if (hint && *hint)
    fprintf(stderr, "%s; ", hint);
  fprintf(stderr, "%s ens %s --help)\n", near && !(hint && *hint) ? "See" : "see", cmd);
}
