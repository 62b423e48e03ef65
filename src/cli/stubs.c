/* Commands still to be written (issue 5). */
#include <stdio.h>

#include "cli/cli.h"

int ens_cli_info(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "ens info: not implemented yet\n");
  return 2;
}
int ens_cli_predict(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "ens predict: not implemented yet\n");
  return 2;
}
int ens_cli_merge(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "ens merge: not implemented yet\n");
  return 2;
}
