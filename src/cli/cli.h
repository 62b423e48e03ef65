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
/* ens info: the successive-halving record (/search) of a result, if any
 * (info_search.c). */
void ens_cli_info_search(hid_t f, long long first, long long members);
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

/* stopnote.c: the end of a stopped `ens train` and its outcome file. */
#include "ens/config.h"
/* path made absolute against the current folder, into out. */
void ens_cli_abspath(char *out, size_t len, const char *path);
/* The job's checkpoint folder ([output] checkpoint_dir or <path>.ckpt), absolute. */
void ens_cli_checkpoint_dir(char *out, size_t len, const ens_config *c);
/* One line on what the checkpoint folder holds for this job's members:
 * "checkpoints in DIR: D of M members finished, P in progress at epoch E of N",
 * or "nothing to save yet ..." when it holds none. Returns 1 when there are
 * member checkpoints, 2 when only trunk pretraining's, 0 when none, -1 on a
 * formatting error. */
int ens_cli_stop_note(char *out, size_t len, const ens_config *c);
/* Writes the outcome for a batch script (key=value lines: state, code,
 * result, checkpoints, message) to file atomically; file NULL or "": nothing.
 * c may be NULL (the config was not read). Returns 0 or -1. */
/* Run history across stops: the segments of earlier stopped runs of this job
 * (malloc'd text, NULL when none; discard removes them, for --restart), one
 * more segment, and their removal once a run finished (the result holds them). */
char *ens_cli_history_load(const ens_config *c, int discard);
void ens_cli_history_append(const ens_config *c, const char *line);
void ens_cli_history_done(const ens_config *c);
/* Collective: the number of nodes (shared-memory domains) of comm. */
#include <mpi.h>
int ens_cli_count_nodes(MPI_Comm comm);
/* `ens info`: the result's run history (/history), when it has one. */
#include <hdf5.h>
void ens_cli_print_history(hid_t f);
int ens_cli_status_write(const char *file, const char *state, int code, const ens_config *c,
                         const char *message);

#endif
