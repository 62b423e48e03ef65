/* Sub-commands of the ens CLI that live in their own files. Each returns the
 * process exit code. */
#ifndef ENS_CLI_H
#define ENS_CLI_H

#include <stdio.h>

#include <hdf5.h>

/* DESIGN.md exit codes for a library result: 0, 1 for input errors (config,
 * data, file formats, shapes, usage), 2 for runtime failures. */
int ens_cli_exit_code(int ret);

int ens_cli_info(int argc, char **argv);
/* `ens info`'s table of the members' gradient norms (info_gradnorm.c);
 * prints nothing for a result without /members/<k>/grad_norm. */
void ens_cli_info_grad_norm(hid_t f, long long first, long long members);
int ens_cli_predict(int argc, char **argv);
int ens_cli_merge(int argc, char **argv);
/* `ens diff A.h5 B.h5` (diff.c): 0 identical, 1 different, 2 unreadable. */
int ens_cli_diff(int argc, char **argv);
/* `ens import csv FILE ...`: argv[0] is the first argument after "csv". */
int ens_cli_import_csv(int argc, char **argv);
/* Prints the usage of `ens import csv`. */
void ens_cli_import_csv_usage(FILE *out);
/* `ens train`'s start-up line (start.c, rank 0): how the process was started
 * ("1 process, no MPI launcher", "mpirun, 4 ranks", ...), and a warning when
 * a SLURM job of several tasks started it without a launcher. */
struct ens_launch;
void ens_cli_print_start(const struct ens_launch *l, int rank);

#endif
