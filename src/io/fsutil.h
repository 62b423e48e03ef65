/* File-system helpers for atomic publication (fsync of files and their
 * directories) and directory creation. */
#ifndef ENS_IO_FSUTIL_H
#define ENS_IO_FSUTIL_H

#include <stddef.h>

/* fsync(2) of an existing file; returns 0 or -1. */
int ens_fsync_path(const char *path);
/* fsync of the directory holding path (so a rename is durable). */
int ens_fsync_dir_of(const char *path);
/* mkdir -p; returns 0 or -1. */
int ens_mkdir_p(const char *path);
/* mkdir -p of the folder that holds `path` (nothing for a bare file name);
 * returns 0 or -1 with errno set. */
int ens_mkdir_parent(const char *path);
/* The folder of `path` ("." for a bare file name) into buf. */
void ens_dirname(const char *path, char *buf, size_t len);

/* Temporary files for atomic publication: `<out>.tmp.<host>.<pid>` beside
 * the output, so that a rename publishes it. ens_tmp_path writes the name for
 * this process into buf. ens_tmp_sweep removes the temporary files of `out`
 * left behind by dead processes of this host (and the older `<out>.tmp.<pid>`
 * names); it returns how many it removed. */
void ens_tmp_path(const char *out, char *buf, size_t len);
int ens_tmp_sweep(const char *out);

#endif
