/* The files ens writes: free space and directory checks, write failures
 * reported with the path and the system's reason, HDF5 files built in memory
 * and published atomically with plain POSIX writes, space reservation for
 * the one file too large to build in memory (the result), and the lock of a
 * checkpoint directory.
 *
 * Why files are built in memory: HDF5 1.10 hides errno behind its error
 * stack and does not survive a failed write (measured here with 1.10.8: after
 * ENOSPC in the metadata flush, H5Fclose crashes in H5F__close or leaves the
 * file open, and the library prints "infinite loop closing library" at exit).
 * So no HDF5 call ever writes to a disk that can fill up, except the result
 * file, whose space is reserved with fallocate() before anything is written. */
#ifndef ENS_IO_STORAGE_H
#define ENS_IO_STORAGE_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* Free bytes (for an unprivileged user, statvfs f_bavail) of the file system
 * holding path, a file or directory that need not exist yet (its nearest
 * existing ancestor is asked); *dev (may be NULL) identifies that file
 * system. Returns 0 or -1 with errno set. */
int ens_storage_free(const char *path, uint64_t *bytes, uint64_t *dev);

/* "12.3 MiB" style text for a byte count. */
void ens_storage_human(char *buf, size_t len, uint64_t bytes);

/* Checks that directory dir exists and that this process can create a file
 * in it (a probe file is created and removed). `what` names it in the
 * message, e.g. "[output] path". Returns 0, ENS_EIO (missing or not
 * writable; an input error) with the reason in err. */
int ens_storage_check_dir(const char *dir, const char *what, char *err, size_t errlen);

/* Words a failed write of `path` (`what`: e.g. "cannot write checkpoint")
 * from the system error sys_errno: "<what> <path>: <strerror>" and, for a
 * full disk or quota, the bytes needed (when need > 0) and free. When
 * sys_errno is 0 (the HDF5 library reported no system error) the free space
 * decides whether the disk is full. Returns ENS_ENOSPACE (ENOSPC, EDQUOT) or
 * ENS_EWRITE. */
int ens_storage_write_error(char *err, size_t errlen, int sys_errno, const char *path,
                            uint64_t need, const char *what);

/* An empty HDF5 file in memory (core driver without a backing store), named
 * `name` (the path it will be published at; nothing is opened on disk).
 * Returns the file id or a negative value. */
hid_t ens_storage_h5_memory(const char *name);

/* Publishes the in-memory file f at `path`: its image is written to `tmp`
 * (NULL: "<path>.tmp.<pid>"), fsync'ed, renamed over path, and the directory
 * fsync'ed. f is closed in every case. On failure the previous file at path
 * is untouched, tmp is removed, and err says what failed with the path and
 * the system's reason (see ens_storage_write_error). Returns 0 or an ENS_E*
 * code. */
int ens_storage_h5_publish(hid_t f, const char *path, const char *tmp, const char *what, char *err,
                           size_t errlen);

/* Reserves `bytes` of disk for the existing file `path` beyond its end
 * (fallocate with FALLOC_FL_KEEP_SIZE), so that writes up to that size
 * cannot run out of space. A file system without fallocate is not an error
 * (nothing is reserved). Returns 0, or ENS_ENOSPACE/ENS_EWRITE with err. */
int ens_storage_reserve(const char *path, uint64_t bytes, const char *what, char *err,
                        size_t errlen);
/* Gives back the reserved space beyond the end of path (ftruncate to its
 * size). Returns 0 or -1 with errno. */
int ens_storage_trim(const char *path);

/* fsync of path, retried on EINTR; returns 0 or the errno of the failure. */
int ens_storage_fsync(const char *path);

/* The lock of a checkpoint directory: a kernel lock (flock) on `<dir>/lock`,
 * held on fd while the job runs and released by the kernel when the holder
 * dies; the file records the host name, the PID, the start time and the
 * SLURM job of the holder, for messages (and for the record-only rule where
 * the file system has no locks, see storage.c). */
typedef struct ens_lock {
  char path[1100];
  int held;
  int fd; /* the locked file, or -1 (record-only rule) */
} ens_lock;

/* Creates dir (and its parents) when needed and takes its lock. A lock file
 * whose kernel lock nobody holds (its job was killed, or its node died) is
 * taken over with a warning on stderr. A held lock is ENS_ELOCKED with the
 * recorded owner and the lock file named in err; nothing is changed then.
 * Without kernel locks (or ENS_LOCK_RECORD_ONLY=1): a record of a process
 * that no longer runs on this host, or of this SLURM job before a requeue,
 * is taken over; a live process here or any process on another host holds
 * it. Other failures: ENS_EIO. *created (may be NULL) is set when dir did
 * not exist before. */
int ens_storage_lock(ens_lock *l, const char *dir, int *created, char *err, size_t errlen);
/* Removes the lock file and releases the lock when held. */
void ens_storage_unlock(ens_lock *l);
/* ENS_ELOCKED, with ens_storage_lock's words, when a running job holds the
 * lock of dir; 0 otherwise (no lock, or a stale one). Changes nothing: for
 * checks before the lock is taken (what --restart would remove, say). */
int ens_storage_lock_busy(const char *dir, char *err, size_t errlen);

/* Writes n bytes of buf to path atomically: "<path>.tmp.<host>.<pid>",
 * fsync, rename, directory fsync. On failure the previous file at path is
 * untouched, the temporary file removed, and err words the failure as
 * ens_storage_write_error does. Returns 0 or an ENS_E* code. */
int ens_storage_publish_bytes(const char *path, const void *buf, size_t n, const char *what,
                              char *err, size_t errlen);

#endif
