/* Storage helpers (see storage.h): free space, directory checks, worded
 * write errors, in-memory HDF5 files published with POSIX writes, space
 * reservation and the checkpoint directory lock. Linux: fallocate. */
#define _GNU_SOURCE /* fallocate, FALLOC_FL_KEEP_SIZE */
#include "io/storage.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#include "ens/error.h"
#include "io/fsutil.h"

int ens_storage_free(const char *path, uint64_t *bytes, uint64_t *dev) {
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", path);
  /* The nearest existing ancestor answers for a path not created yet. */
  struct stat st;
  while (stat(dir, &st) != 0) {
    char up[4096];
    ens_dirname(dir, up, sizeof(up));
    if (!strcmp(up, dir))
      return -1;
    snprintf(dir, sizeof(dir), "%s", up);
  }
  struct statvfs vf;
  if (statvfs(dir, &vf) != 0)
    return -1;
  *bytes = (uint64_t)vf.f_bavail * (uint64_t)vf.f_frsize;
  if (dev)
    *dev = (uint64_t)st.st_dev;
  return 0;
}

void ens_storage_human(char *buf, size_t len, uint64_t b) {
  static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = (double)b;
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    u++;
  }
  if (u == 0)
    snprintf(buf, len, "%llu bytes", (unsigned long long)b);
  else
    snprintf(buf, len, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, unit[u]);
}

int ens_storage_check_dir(const char *dir, const char *what, char *err, size_t errlen) {
  struct stat st;
  if (stat(dir, &st) != 0) {
    ens_errorf(err, errlen, "%s: directory '%s' does not exist (%s)", what, dir, strerror(errno));
    return ENS_EIO;
  }
  if (!S_ISDIR(st.st_mode)) {
    ens_errorf(err, errlen, "%s: '%s' is not a directory", what, dir);
    return ENS_EIO;
  }
  /* access() says nothing about read-only mounts or ACL quirks: create a
   * file for real. */
  char probe[4200], host[128] = "";
  gethostname(host, sizeof(host) - 1); /* ranks on other hosts may share a PID */
  snprintf(probe, sizeof(probe), "%s/.ens-probe.%s.%ld", dir, host, (long)getpid());
  int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    int e = errno;
    ens_errorf(err, errlen, "%s: cannot create files in directory '%s': %s", what, dir,
               strerror(e));
    return ENS_EIO;
  }
  close(fd);
  unlink(probe);
  return 0;
}

/* "<prefix>: <reason>" for errno e; fspath locates the file system whose
 * free space is reported (and decides when e is 0). */
static int word_error(char *err, size_t errlen, int e, const char *fspath, uint64_t need,
                      const char *prefix) {
  uint64_t avail = 0;
  int have_free = ens_storage_free(fspath, &avail, NULL) == 0;
  if (e == 0 && have_free && avail < (need > 65536 ? need : 65536))
    e = ENOSPC; /* the HDF5 library said nothing more, the disk did */
  char nb[32], fb[32];
  ens_storage_human(nb, sizeof(nb), need);
  ens_storage_human(fb, sizeof(fb), avail);
  if (e == ENOSPC || e == EDQUOT) {
    if (need > 0 && have_free)
      ens_errorf(err, errlen, "%s: %s (%s needed, %s free)", prefix, strerror(e), nb, fb);
    else if (have_free)
      ens_errorf(err, errlen, "%s: %s (%s free)", prefix, strerror(e), fb);
    else
      ens_errorf(err, errlen, "%s: %s", prefix, strerror(e));
    return ENS_ENOSPACE;
  }
  if (e)
    ens_errorf(err, errlen, "%s: %s", prefix, strerror(e));
  else
    ens_errorf(err, errlen, "%s: the HDF5 library reported a write error (no system error)",
               prefix);
  return ENS_EWRITE;
}

int ens_storage_write_error(char *err, size_t errlen, int e, const char *path, uint64_t need,
                            const char *what) {
  char prefix[4400];
  snprintf(prefix, sizeof(prefix), "%s %s", what, path);
  return word_error(err, errlen, e, path, need, prefix);
}

hid_t ens_storage_h5_memory(const char *name) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0)
    return -1;
  /* Grow in 1 MiB steps; backing_store = 0: the image stays in memory. */
  hid_t f = -1;
  if (H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) >= 0)
    f = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  return f;
}

int ens_storage_fsync(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return errno;
  int r;
  do
    r = fsync(fd);
  while (r != 0 && errno == EINTR);
  int e = r ? errno : 0;
  /* Some file systems refuse fsync on what they cannot sync; only real
   * write errors count. */
  if (e == EINVAL || e == EROFS)
    e = 0;
  close(fd);
  return e;
}

enum { STEP_CREATE = 1, STEP_WRITE, STEP_RENAME };

/* Writes buf (n bytes) to tmp, syncs it, renames it to path. Returns 0 or
 * the errno of the failing step (tmp removed), the step in *step. */
static int write_atomic(const char *path, const char *tmp, const void *buf, size_t n, int *step) {
  *step = STEP_CREATE;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (fd < 0)
    return errno;
  *step = STEP_WRITE;
  const char *p = buf;
  size_t left = n;
  int e = 0;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR)
        continue; /* a stop signal arrived: finish the file anyway */
      e = errno;
      break;
    }
    p += w;
    left -= (size_t)w;
  }
  if (!e) {
    int r;
    do
      r = fsync(fd);
    while (r != 0 && errno == EINTR);
    if (r != 0 && errno != EINVAL && errno != EROFS)
      e = errno;
  }
  if (close(fd) != 0 && !e && errno != EINTR)
    e = errno;
  if (!e && rename(tmp, path) != 0) {
    e = errno;
    *step = STEP_RENAME;
  }
  if (e) {
    unlink(tmp);
    return e;
  }
  ens_fsync_dir_of(path);
  return 0;
}

int ens_storage_h5_publish(hid_t f, const char *path, const char *tmp, const char *what, char *err,
                           size_t errlen) {
  char tbuf[4200];
  if (!tmp) {
    snprintf(tbuf, sizeof(tbuf), "%s.tmp.%ld", path, (long)getpid());
    tmp = tbuf;
  }
  void *img = NULL;
  ssize_t n = -1;
  if (H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0)
    n = H5Fget_file_image(f, NULL, 0);
  if (n > 0 && (img = malloc((size_t)n)) != NULL && H5Fget_file_image(f, img, (size_t)n) != n) {
    free(img);
    img = NULL;
  }
  if (H5Fclose(f) < 0 && img) {
    free(img);
    img = NULL;
  }
  if (!img) {
    ens_errorf(err, errlen, "%s %s: cannot build the file in memory (%s)", what, path,
               n > 0 ? "out of memory" : "HDF5 library error");
    return n > 0 ? ENS_ENOMEM : ENS_EHDF5;
  }
  int step = 0;
  int e = write_atomic(path, tmp, img, (size_t)n, &step);
  free(img);
  if (!e)
    return 0;
  /* Name the file the user knows (path), and the temporary one when that
   * is where it failed; either way the temporary file is gone. */
  char how[9000];
  if (step == STEP_CREATE)
    snprintf(how, sizeof(how), "%s %s: cannot create %s", what, path, tmp);
  else if (step == STEP_RENAME)
    snprintf(how, sizeof(how), "%s %s: cannot rename %s to it", what, path, tmp);
  else
    snprintf(how, sizeof(how), "%s %s", what, path);
  return word_error(err, errlen, e, path, (uint64_t)n, how);
}

int ens_storage_reserve(const char *path, uint64_t bytes, const char *what, char *err,
                        size_t errlen) {
  int fd = open(path, O_WRONLY);
  if (fd < 0)
    return ens_storage_write_error(err, errlen, errno, path, bytes, what);
  int r;
  do
    r = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes);
  while (r != 0 && errno == EINTR);
  int e = r ? errno : 0;
  close(fd);
  if (e == EOPNOTSUPP || e == ENOSYS || e == EINVAL)
    return 0; /* no reservation on this file system: the space check must do */
  if (e)
    return ens_storage_write_error(err, errlen, e, path, bytes, what);
  return 0;
}

int ens_storage_trim(const char *path) {
  int fd = open(path, O_WRONLY);
  if (fd < 0)
    return -1;
  struct stat st;
  int r = fstat(fd, &st);
  if (r == 0)
    r = ftruncate(fd, st.st_size); /* frees the blocks kept beyond the end */
  int e = errno;
  close(fd);
  errno = e;
  return r;
}

/* ---- the checkpoint directory lock --------------------------------------- */

/* Start time of process pid in clock ticks since boot (field 22 of
 * /proc/<pid>/stat), or 0 when unknown. */
static unsigned long long proc_start(long pid) {
  char p[64], buf[1024];
  snprintf(p, sizeof(p), "/proc/%ld/stat", pid);
  FILE *fp = fopen(p, "r");
  if (!fp)
    return 0;
  size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  /* The command name (field 2) may hold spaces and parentheses: count
   * fields after its closing parenthesis. */
  char *s = strrchr(buf, ')');
  if (!s)
    return 0;
  s++;
  for (int field = 3; field < 22 && s; field++) {
    s = strchr(s + 1, ' ');
  }
  return s ? strtoull(s + 1, NULL, 10) : 0;
}

typedef struct lock_owner {
  char host[256];
  long pid;
  unsigned long long start;
} lock_owner;

static int read_owner(const char *path, lock_owner *o) {
  memset(o, 0, sizeof(*o));
  FILE *fp = fopen(path, "r");
  if (!fp)
    return -1;
  char line[256];
  while (fgets(line, sizeof(line), fp)) {
    if (!strncmp(line, "host ", 5)) {
      snprintf(o->host, sizeof(o->host), "%s", line + 5);
      o->host[strcspn(o->host, "\r\n")] = '\0';
    } else if (!strncmp(line, "pid ", 4)) {
      o->pid = strtol(line + 4, NULL, 10);
    } else if (!strncmp(line, "start ", 6)) {
      o->start = strtoull(line + 6, NULL, 10);
    }
  }
  fclose(fp);
  return o->host[0] && o->pid > 0 ? 0 : -1;
}

/* 1 when the owner may still run: another host (cannot tell), or a process
 * with that PID (and, when recorded, that start time) exists here. */
static int owner_alive(const lock_owner *o, const char *host) {
  if (strcmp(o->host, host) != 0)
    return 1;
  if (kill((pid_t)o->pid, 0) != 0 && errno == ESRCH)
    return 0;
  unsigned long long st = proc_start(o->pid);
  if (o->start && st && st != o->start)
    return 0; /* the PID was reused by another process */
  return 1;
}

static int write_lock(const char *path, const char *host) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0)
    return errno;
  char text[512];
  long pid = (long)getpid();
  int n = snprintf(text, sizeof(text),
                   "ens checkpoint directory lock: a job is using this directory\n"
                   "host %s\npid %ld\nstart %llu\n",
                   host, pid, proc_start(pid));
  int e = 0;
  if (write(fd, text, (size_t)n) != n)
    e = errno ? errno : EIO;
  if (close(fd) != 0 && !e)
    e = errno;
  if (e)
    unlink(path);
  return e;
}

/* The words for a directory whose lock a running job holds. */
static void in_use(const lock_owner *o, const char *dir, const char *lock, const char *host,
                   char *err, size_t errlen) {
  ens_errorf(err, errlen,
             "checkpoint directory %s is in use by another job (process %ld on host %s, lock "
             "file %s); wait for it to finish, or give this job another [output] "
             "checkpoint_dir%s",
             dir, o->pid, o->host, lock,
             strcmp(o->host, host) ? " (if no job runs there any more, remove the lock file)" : "");
}

int ens_storage_lock_busy(const char *dir, char *err, size_t errlen) {
  char path[1100], host[256] = "";
  snprintf(path, sizeof(path), "%s/lock", dir);
  gethostname(host, sizeof(host) - 1);
  lock_owner o;
  if (read_owner(path, &o) != 0 || !owner_alive(&o, host))
    return 0; /* none, unreadable or stale: ens_storage_lock decides */
  in_use(&o, dir, path, host, err, errlen);
  return ENS_ELOCKED;
}

int ens_storage_lock(ens_lock *l, const char *dir, int *created, char *err, size_t errlen) {
  memset(l, 0, sizeof(*l));
  struct stat st;
  int existed = stat(dir, &st) == 0;
  if (created)
    *created = 0;
  if (ens_mkdir_p(dir) != 0) {
    ens_errorf(err, errlen, "[output] checkpoint_dir: cannot create directory '%s': %s", dir,
               strerror(errno));
    return ENS_EIO;
  }
  if (created)
    *created = !existed;
  char host[256] = "";
  gethostname(host, sizeof(host) - 1);
  snprintf(l->path, sizeof(l->path), "%s/lock", dir);
  for (int attempt = 0; attempt < 3; attempt++) {
    int e = write_lock(l->path, host);
    if (!e) {
      l->held = 1;
      return 0;
    }
    if (e != EEXIST) {
      ens_errorf(err, errlen, "cannot create the lock file %s: %s", l->path, strerror(e));
      return ENS_EIO;
    }
    lock_owner o;
    if (read_owner(l->path, &o) != 0) {
      if (access(l->path, F_OK) != 0)
        continue; /* released meanwhile: try again */
      ens_errorf(err, errlen,
                 "checkpoint directory %s is locked by %s, which does not name its owner; if no "
                 "job uses the directory, remove %s",
                 dir, l->path, l->path);
      return ENS_ELOCKED;
    }
    if (owner_alive(&o, host)) {
      in_use(&o, dir, l->path, host, err, errlen);
      return ENS_ELOCKED;
    }
    /* Stale: move it aside, check that what moved is the lock judged stale
     * (another job may have taken it over meanwhile), then retry. */
    char aside[1200];
    snprintf(aside, sizeof(aside), "%s.stale.%ld", l->path, (long)getpid());
    if (rename(l->path, aside) != 0)
      continue;
    lock_owner moved;
    if (read_owner(aside, &moved) != 0 || moved.pid != o.pid || strcmp(moved.host, o.host) ||
        moved.start != o.start) {
      if (link(aside, l->path) == 0)
        unlink(aside);
      continue;
    }
    unlink(aside);
    fprintf(stderr,
            "ens: warning: %s was left by process %ld on host %s, which no longer runs: taking "
            "it over\n",
            l->path, o.pid, o.host);
  }
  ens_errorf(err, errlen, "cannot take the lock %s (another job keeps changing it)", l->path);
  return ENS_ELOCKED;
}

void ens_storage_unlock(ens_lock *l) {
  if (l->held)
    unlink(l->path);
  l->held = 0;
}

int ens_storage_publish_bytes(const char *path, const void *buf, size_t n, const char *what,
                              char *err, size_t errlen) {
  char tmp[4200];
  ens_tmp_path(path, tmp, sizeof(tmp));
  int step = 0, e = write_atomic(path, tmp, buf, n, &step);
  if (!e)
    return 0;
  char how[9000];
  if (step == STEP_CREATE)
    snprintf(how, sizeof(how), "%s %s: cannot create %s", what, path, tmp);
  else if (step == STEP_RENAME)
    snprintf(how, sizeof(how), "%s %s: cannot rename %s to it", what, path, tmp);
  else
    snprintf(how, sizeof(how), "%s %s", what, path);
  return word_error(err, errlen, e, path, (uint64_t)n, how);
}
