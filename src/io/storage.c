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
#include <sys/file.h>
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

/* Writes n bytes to tmp, fsyncs and renames it to path (write_atomic); on
 * failure names the file the user knows (path), and the temporary one when
 * that is where it failed; either way the temporary file is gone. */
static int publish(const char *path, const char *tmp, const void *buf, size_t n, const char *what,
                   char *err, size_t errlen) {
  int step = 0;
  int e = write_atomic(path, tmp, buf, n, &step);
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
  int ret = publish(path, tmp, img, (size_t)n, what, err, errlen);
  free(img);
  return ret;
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

/* The lock is a kernel lock (flock) on `<dir>/lock`, held on an open file
 * description for as long as the job runs: the kernel releases it when the
 * holder exits however it ends (SIGKILL, a dead node whose NFSv4 lease runs
 * out), so a requeued job on another host takes it without a person. The
 * host/PID record in the file only words the message. Where the file system
 * has no locks (ENOLCK, EOPNOTSUPP), or ENS_LOCK_RECORD_ONLY=1 says its
 * locks are not to be trusted (NFS mounted `nolock` keeps them local), the
 * record decides: a live process on this host, or any process on another
 * host, holds it, unless the same SLURM job id after a requeue (a higher
 * SLURM_RESTART_COUNT) asks. */

/* Start time of process pid in clock ticks since boot (field 22 of
 * /proc/<pid>/stat), or 0 when unknown; *state (may be NULL) gets field 3
 * ('Z' for a zombie), or '\0'. */
static unsigned long long proc_start(long pid, char *state) {
  char p[64], buf[1024];
  if (state)
    *state = '\0';
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
  if (state && s[0] == ' ')
    *state = s[1];
  for (int field = 3; field < 22 && s; field++) {
    s = strchr(s + 1, ' ');
  }
  return s ? strtoull(s + 1, NULL, 10) : 0;
}

typedef struct lock_owner {
  char host[256];
  long pid;
  unsigned long long start;
  char slurm_job[256]; /* "" outside SLURM */
  long slurm_restart;
} lock_owner;

static int read_owner(const char *path, lock_owner *o) {
  memset(o, 0, sizeof(*o));
  FILE *fp = fopen(path, "r");
  if (!fp)
    return -1;
  char line[256];
  while (fgets(line, sizeof(line), fp)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (!strncmp(line, "host ", 5)) {
      snprintf(o->host, sizeof(o->host), "%s", line + 5);
    } else if (!strncmp(line, "pid ", 4)) {
      o->pid = strtol(line + 4, NULL, 10);
    } else if (!strncmp(line, "start ", 6)) {
      o->start = strtoull(line + 6, NULL, 10);
    } else if (!strncmp(line, "slurm_job ", 10)) {
      snprintf(o->slurm_job, sizeof(o->slurm_job), "%s", line + 10);
    } else if (!strncmp(line, "slurm_restart ", 14)) {
      o->slurm_restart = strtol(line + 14, NULL, 10);
    }
  }
  fclose(fp);
  return o->host[0] && o->pid > 0 ? 0 : -1;
}

static const char *env_or(const char *name, const char *dflt) {
  const char *v = getenv(name);
  return v && *v ? v : dflt;
}

/* 1 when the record's owner may still run (record-only rule): a process of
 * another host (cannot tell from here) unless this is the same SLURM job
 * after a requeue, or a live, non-zombie process with that PID (and, when
 * recorded, that start time) here. *requeued is set when the SLURM rule
 * released it. */
static int owner_alive(const lock_owner *o, const char *host, int *requeued) {
  *requeued = 0;
  const char *job = env_or("SLURM_JOB_ID", "");
  if (o->slurm_job[0] && !strcmp(o->slurm_job, job) &&
      strtol(env_or("SLURM_RESTART_COUNT", "0"), NULL, 10) > o->slurm_restart) {
    *requeued = 1;
    return 0;
  }
  if (strcmp(o->host, host) != 0)
    return 1;
  if (kill((pid_t)o->pid, 0) != 0 && errno == ESRCH)
    return 0;
  char state;
  unsigned long long st = proc_start(o->pid, &state);
  if (state == 'Z' || state == 'X')
    return 0; /* exited, not reaped yet */
  if (o->start && st && st != o->start)
    return 0; /* the PID was reused by another process */
  return 1;
}

/* The record: host, PID, start time and the SLURM job (for the messages,
 * and for the record-only rule). */
static int format_owner(char *text, size_t len, const char *host) {
  long pid = (long)getpid();
  return snprintf(text, len,
                  "ens checkpoint directory lock: a job is using this directory\n"
                  "host %s\npid %ld\nstart %llu\nslurm_job %s\nslurm_restart %s\n",
                  host, pid, proc_start(pid, NULL), env_or("SLURM_JOB_ID", ""),
                  env_or("SLURM_RESTART_COUNT", "0"));
}

/* Writes the record into fd from offset 0 (truncating). Returns 0 or errno. */
static int write_owner_fd(int fd, const char *host) {
  char text[640];
  int n = format_owner(text, sizeof(text), host);
  if (ftruncate(fd, 0) != 0)
    return errno;
  if (pwrite(fd, text, (size_t)n, 0) != n)
    return errno ? errno : EIO;
  return 0;
}

static int record_only(void) {
  return !strcmp(env_or("ENS_LOCK_RECORD_ONLY", "0"), "1");
}

/* errno values of flock that mean "this file system has no locks". */
static int no_locks(int e) {
  return e == ENOLCK || e == EOPNOTSUPP || e == ENOSYS || e == EINVAL;
}

/* The words for a directory whose lock a running job holds; kernel: the
 * kernel said so (no removal hint: the holder runs). */
static void in_use(const lock_owner *o, const char *dir, const char *lock, const char *host,
                   int kernel, char *err, size_t errlen) {
  const char *hint = "";
  if (!kernel && strcmp(o->host, host))
    hint = " (this file system has no locks: if no job runs there any more, remove the lock "
           "file; a requeued SLURM job takes over its own lock)";
  if (o->host[0])
    ens_errorf(err, errlen,
               "checkpoint directory %s is in use by another job (process %ld on host %s, lock "
               "file %s); wait for it to finish, or give this job another [output] "
               "checkpoint_dir%s",
               dir, o->pid, o->host, lock, hint);
  else
    ens_errorf(err, errlen,
               "checkpoint directory %s is in use by another job (lock file %s, which does not "
               "name its owner yet); wait for it to finish, or give this job another [output] "
               "checkpoint_dir",
               dir, lock);
}

/* 1 when fd is still the file at path (not unlinked by a holder's release
 * between our open and our lock). */
static int same_file(int fd, const char *path) {
  struct stat a, b;
  return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
         a.st_ino == b.st_ino;
}

int ens_storage_lock_busy(const char *dir, char *err, size_t errlen) {
  char path[1100], host[256] = "";
  snprintf(path, sizeof(path), "%s/lock", dir);
  gethostname(host, sizeof(host) - 1);
  lock_owner o;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0; /* no lock */
  if (!record_only()) {
    int r = -1;
    for (int attempt = 0; attempt < 5 && r != 0; attempt++) {
      r = flock(fd, LOCK_SH | LOCK_NB);
      if (r != 0 && errno != EWOULDBLOCK)
        break;
      if (r != 0)
        usleep(20000); /* a job's own short probe, or a holder exiting */
    }
    int e = errno;
    if (r == 0 || !no_locks(e)) {
      close(fd);
      if (r == 0)
        return 0; /* nobody holds it: stale, ens_storage_lock takes it */
      read_owner(path, &o);
      in_use(&o, dir, path, host, 1, err, errlen);
      return ENS_ELOCKED;
    }
  }
  close(fd);
  int requeued;
  if (read_owner(path, &o) != 0 || !owner_alive(&o, host, &requeued))
    return 0; /* unreadable or stale: ens_storage_lock decides */
  in_use(&o, dir, path, host, 0, err, errlen);
  return ENS_ELOCKED;
}

/* The record-only rule (no kernel locks): create the file exclusively, or
 * take over a record whose owner no longer runs. */
static int lock_by_record(ens_lock *l, const char *dir, const char *host, char *err,
                          size_t errlen) {
  for (int attempt = 0; attempt < 3; attempt++) {
    int fd = open(l->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      int e = write_owner_fd(fd, host);
      if (close(fd) != 0 && !e)
        e = errno;
      if (e) {
        unlink(l->path);
        ens_errorf(err, errlen, "cannot write the lock file %s: %s", l->path, strerror(e));
        return ENS_EIO;
      }
      l->held = 1;
      return 0;
    }
    if (errno != EEXIST) {
      ens_errorf(err, errlen, "cannot create the lock file %s: %s", l->path, strerror(errno));
      return ENS_EIO;
    }
    lock_owner o;
    int requeued = 0;
    if (read_owner(l->path, &o) != 0) {
      if (access(l->path, F_OK) != 0)
        continue; /* released meanwhile: try again */
      ens_errorf(err, errlen,
                 "checkpoint directory %s is locked by %s, which does not name its owner; if no "
                 "job uses the directory, remove %s",
                 dir, l->path, l->path);
      return ENS_ELOCKED;
    }
    if (owner_alive(&o, host, &requeued)) {
      in_use(&o, dir, l->path, host, 0, err, errlen);
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
    if (requeued)
      fprintf(stderr,
              "ens: warning: %s was left by process %ld on host %s of this SLURM job (%s) before "
              "its requeue: taking it over\n",
              l->path, o.pid, o.host, o.slurm_job);
    else
      fprintf(stderr,
              "ens: warning: %s was left by process %ld on host %s, which no longer runs: "
              "taking it over\n",
              l->path, o.pid, o.host);
  }
  ens_errorf(err, errlen, "cannot take the lock %s (another job keeps changing it)", l->path);
  return ENS_ELOCKED;
}

int ens_storage_lock(ens_lock *l, const char *dir, int *created, char *err, size_t errlen) {
  memset(l, 0, sizeof(*l));
  l->fd = -1;
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
  if (record_only())
    return lock_by_record(l, dir, host, err, errlen);
  for (int attempt = 0; attempt < 5; attempt++) {
    int fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      ens_errorf(err, errlen, "cannot create the lock file %s: %s", l->path, strerror(errno));
      return ENS_EIO;
    }
    int r = -1, e = 0;
    for (int wait = 0; wait < 5 && r != 0; wait++) {
      r = flock(fd, LOCK_EX | LOCK_NB);
      e = errno;
      if (r != 0 && e != EWOULDBLOCK)
        break;
      if (r != 0)
        usleep(20000); /* a holder that is exiting, or another job's probe */
    }
    if (r != 0 && no_locks(e)) {
      close(fd);
      /* An empty file is what our open just created: the record rule
       * needs to create it itself. */
      if (stat(l->path, &st) == 0 && st.st_size == 0)
        unlink(l->path);
      return lock_by_record(l, dir, host, err, errlen);
    }
    if (r != 0 && e == EWOULDBLOCK) {
      lock_owner o;
      close(fd);
      read_owner(l->path, &o);
      in_use(&o, dir, l->path, host, 1, err, errlen);
      return ENS_ELOCKED;
    }
    if (r != 0) {
      close(fd);
      ens_errorf(err, errlen, "cannot lock %s: %s", l->path, strerror(e));
      return ENS_EIO;
    }
    if (!same_file(fd, l->path)) {
      close(fd); /* released and removed by its holder meanwhile: again */
      continue;
    }
    /* Ours. A record left in it is a holder that ended without removing
     * the file (killed, or its node died): the kernel let go of its lock. */
    lock_owner o;
    if (read_owner(l->path, &o) == 0)
      fprintf(stderr,
              "ens: warning: %s was left by process %ld on host %s, which no longer holds it: "
              "taking it over\n",
              l->path, o.pid, o.host);
    e = write_owner_fd(fd, host);
    if (e) {
      ens_errorf(err, errlen, "cannot write the lock file %s: %s", l->path, strerror(e));
      unlink(l->path);
      close(fd);
      return ENS_EIO;
    }
    l->fd = fd;
    l->held = 1;
    return 0;
  }
  ens_errorf(err, errlen, "cannot take the lock %s (another job keeps changing it)", l->path);
  return ENS_ELOCKED;
}

void ens_storage_unlock(ens_lock *l) {
  /* Remove, then let go: a job that opened the file meanwhile finds it
   * unlinked (same_file) and starts again. */
  if (l->held)
    unlink(l->path);
  if (l->held && l->fd >= 0)
    close(l->fd);
  l->held = 0;
  l->fd = -1;
}

int ens_storage_publish_bytes(const char *path, const void *buf, size_t n, const char *what,
                              char *err, size_t errlen) {
  char tmp[4200];
  ens_tmp_path(path, tmp, sizeof(tmp));
  return publish(path, tmp, buf, n, what, err, errlen);
}
