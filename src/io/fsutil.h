/* File-system helpers for atomic publication (fsync of files and their
 * directories) and directory creation. */
#ifndef ENS_IO_FSUTIL_H
#define ENS_IO_FSUTIL_H

/* fsync(2) of an existing file; returns 0 or -1. */
int ens_fsync_path(const char *path);
/* fsync of the directory holding path (so a rename is durable). */
int ens_fsync_dir_of(const char *path);
/* mkdir -p; returns 0 or -1. */
int ens_mkdir_p(const char *path);

#endif
