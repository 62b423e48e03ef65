/* Sub-commands of the ens CLI that live in their own files. Each returns the
 * process exit code. */
#ifndef ENS_CLI_H
#define ENS_CLI_H

int ens_cli_info(int argc, char **argv);
int ens_cli_predict(int argc, char **argv);
int ens_cli_merge(int argc, char **argv);

#endif
