/* Unit tests of src/io/storage.c and the HDF5 errno capture (issue 11):
 * in-memory HDF5 files are published atomically and a failed publish names
 * the path and the system's reason and leaves nothing; the lock of a
 * checkpoint directory refuses a live owner, takes over a killed one at once
 * (kernel lock), and without kernel locks respects another host's record
 * unless a requeued SLURM job owns it; write errors are worded with sizes; a failing
 * HDF5 call's errno is recorded. */
#include "ens/error.h"
#include "io/h5util.h"
#include "io/storage.h"

#include "cu_run.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[256];

static void path_in(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/%s", g_dir, name);
}

static int exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* Number of entries in g_dir whose name contains `part`. */
static int count_named(const char *part) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "ls -A '%s' | grep -c -- '%s'", g_dir, part);
  FILE *p = popen(cmd, "r");
  int n = -1;
  if (p) {
    if (fscanf(p, "%d", &n) != 1)
      n = -1;
    pclose(p);
  }
  return n;
}

static void test_publish(void) {
  char path[512];
  path_in(path, sizeof(path), "pub.h5");
  hid_t f = ens_storage_h5_memory(path);
  CU_ASSERT_FATAL(f >= 0);
  CU_ASSERT_FALSE(exists(path)); /* in memory only */
  float v[100];
  for (int i = 0; i < 100; i++)
    v[i] = (float)i;
  hsize_t n = 100;
  CU_ASSERT_EQUAL(ens_h5_write(f, "/a/b", H5T_NATIVE_FLOAT, 1, &n, v, 0), 0);
  char err[512] = "";
  CU_ASSERT_EQUAL(ens_storage_h5_publish(f, path, NULL, "cannot write", err, sizeof(err)), 0);
  CU_ASSERT_TRUE(exists(path));
  CU_ASSERT_EQUAL(count_named(".tmp"), 0);
  hid_t g = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  CU_ASSERT_FATAL(g >= 0);
  float back[100];
  CU_ASSERT_EQUAL(ens_h5_read(g, "/a/b", H5T_NATIVE_FLOAT, back, 100), 0);
  CU_ASSERT_EQUAL(memcmp(back, v, sizeof(v)), 0);
  H5Fclose(g);
}

/* A publish that cannot create its temporary file names both files and the
 * reason, returns ENS_EWRITE and leaves the previous file untouched. */
static void test_publish_failure(void) {
  char path[512], tmp[600], err[1024] = "";
  path_in(path, sizeof(path), "keep.h5");
  FILE *fp = fopen(path, "w");
  CU_ASSERT_FATAL(fp != NULL);
  fputs("previous", fp);
  fclose(fp);
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  CU_ASSERT_FATAL(mkdir(tmp, 0700) == 0); /* a directory stands in the way */
  hid_t f = ens_storage_h5_memory(path);
  CU_ASSERT_FATAL(f >= 0);
  int ret = ens_storage_h5_publish(f, path, tmp, "cannot write checkpoint", err, sizeof(err));
  CU_ASSERT_EQUAL(ret, ENS_EWRITE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot write checkpoint"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "keep.h5.tmp"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, strerror(EISDIR)));
  if (ret != ENS_EWRITE)
    fprintf(stderr, "\n  message: %s\n", err);
  char buf[32] = "";
  fp = fopen(path, "r");
  CU_ASSERT_FATAL(fp != NULL);
  CU_ASSERT_PTR_NOT_NULL(fgets(buf, sizeof(buf), fp));
  fclose(fp);
  CU_ASSERT_STRING_EQUAL(buf, "previous");
  rmdir(tmp);
}

static void test_write_error_words(void) {
  char err[512];
  CU_ASSERT_EQUAL(ens_storage_write_error(err, sizeof(err), ENOSPC, g_dir, 3 << 20, "cannot write"),
                  ENS_ENOSPACE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, strerror(ENOSPC)));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "3.00 MiB needed"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, " free)"));
  CU_ASSERT_EQUAL(ens_storage_write_error(err, sizeof(err), EDQUOT, g_dir, 0, "cannot write"),
                  ENS_ENOSPACE);
  CU_ASSERT_EQUAL(ens_storage_write_error(err, sizeof(err), EIO, g_dir, 0, "cannot write"),
                  ENS_EWRITE);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, strerror(EIO)));
  char h[32];
  ens_storage_human(h, sizeof(h), 1000);
  CU_ASSERT_STRING_EQUAL(h, "1000 bytes");
  ens_storage_human(h, sizeof(h), (uint64_t)5 << 30);
  CU_ASSERT_STRING_EQUAL(h, "5.00 GiB");
}

static void write_owner(const char *lock, const char *host, long pid, const char *slurm_job) {
  FILE *fp = fopen(lock, "w");
  CU_ASSERT_FATAL(fp != NULL);
  fprintf(fp, "ens checkpoint directory lock\nhost %s\npid %ld\nstart 0\nslurm_job %s\n", host,
          pid, slurm_job);
  fclose(fp);
}

/* A child that takes the lock of dir, rewrites the record to name host (a
 * job of another node on a shared file system), reports on fd and waits to
 * be killed. */
static pid_t lock_in_child(const char *dir, const char *host) {
  int p[2];
  CU_ASSERT_FATAL(pipe(p) == 0);
  pid_t child = fork();
  if (child == 0) {
    char err[1024];
    ens_lock l;
    close(p[0]);
    char ok = ens_storage_lock(&l, dir, NULL, err, sizeof(err)) == 0 ? 'y' : 'n';
    if (ok == 'y') {
      char lock[600];
      snprintf(lock, sizeof(lock), "%s/lock", dir);
      FILE *fp = fopen(lock, "w"); /* another descriptor: the lock stays */
      fprintf(fp, "ens checkpoint directory lock\nhost %s\npid %ld\nstart 0\n", host,
              (long)getpid());
      fclose(fp);
    }
    if (write(p[1], &ok, 1) != 1)
      _exit(1);
    for (;;)
      pause();
  }
  close(p[1]);
  char ok = 'n';
  CU_ASSERT_EQUAL(read(p[0], &ok, 1), 1);
  close(p[0]);
  CU_ASSERT_EQUAL(ok, 'y');
  return child;
}

static void test_lock(void) {
  char dir[512], lock[600], err[1024] = "", host[256] = "";
  gethostname(host, sizeof(host) - 1);
  path_in(dir, sizeof(dir), "ckpt/sub");
  snprintf(lock, sizeof(lock), "%s/lock", dir);
  unsetenv("ENS_LOCK_RECORD_ONLY");
  ens_lock a, b;
  int created = 0;
  CU_ASSERT_EQUAL(ens_storage_lock(&a, dir, &created, err, sizeof(err)), 0);
  CU_ASSERT_TRUE(created);
  CU_ASSERT_TRUE(exists(lock));
  CU_ASSERT_TRUE(a.fd >= 0);
  /* Held by this (live) process: a second lock is refused, naming it. */
  CU_ASSERT_EQUAL(ens_storage_lock(&b, dir, &created, err, sizeof(err)), ENS_ELOCKED);
  CU_ASSERT_FALSE(created);
  char pid[320];
  snprintf(pid, sizeof(pid), "process %ld on host %s", (long)getpid(), host);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, pid));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, lock));
  CU_ASSERT_EQUAL(ens_storage_lock_busy(dir, err, sizeof(err)), ENS_ELOCKED);
  ens_storage_unlock(&a);
  CU_ASSERT_FALSE(exists(lock));
  CU_ASSERT_EQUAL(ens_storage_lock_busy(dir, err, sizeof(err)), 0);

  /* Kernel locks: a holder on "another host" (its record says so) is
   * respected, without a hint to remove the file: the kernel says it runs. */
  pid_t child = lock_in_child(dir, "elsewhere.example");
  err[0] = '\0';
  CU_ASSERT_EQUAL(ens_storage_lock(&a, dir, NULL, err, sizeof(err)), ENS_ELOCKED);
  snprintf(pid, sizeof(pid), "process %ld on host elsewhere.example", (long)child);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, pid));
  CU_ASSERT_PTR_NULL(strstr(err, "remove the lock file"));
  CU_ASSERT_EQUAL(ens_storage_lock_busy(dir, err, sizeof(err)), ENS_ELOCKED);
  /* Killed by SIGKILL and not reaped yet (a zombie, whose PID still answers
   * kill(pid, 0)): the kernel released its lock, so it is taken over at
   * once, whichever host the record names. */
  kill(child, SIGKILL);
  for (int i = 0; i < 200; i++) {
    char st[64], buf[256] = "";
    snprintf(st, sizeof(st), "/proc/%ld/stat", (long)child);
    FILE *fp = fopen(st, "r");
    if (fp) {
      if (!fgets(buf, sizeof(buf), fp))
        buf[0] = '\0';
      fclose(fp);
    }
    char *z = strrchr(buf, ')');
    if (z && z[1] == ' ' && z[2] == 'Z')
      break;
    usleep(5000);
  }
  CU_ASSERT_EQUAL(kill(child, 0), 0); /* still there, as a zombie */
  CU_ASSERT_EQUAL(ens_storage_lock_busy(dir, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(ens_storage_lock(&a, dir, NULL, err, sizeof(err)), 0);
  CU_ASSERT_TRUE(a.held);
  ens_storage_unlock(&a);
  waitpid(child, NULL, 0);
  /* A record nobody holds (a job of a node that died): taken over. */
  write_owner(lock, "elsewhere.example", 1, "");
  CU_ASSERT_EQUAL(ens_storage_lock(&a, dir, NULL, err, sizeof(err)), 0);
  ens_storage_unlock(&a);

  /* The record-only rule, for file systems without locks. */
  setenv("ENS_LOCK_RECORD_ONLY", "1", 1);
  CU_ASSERT_EQUAL(ens_storage_lock(&a, dir, NULL, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(ens_storage_lock(&b, dir, NULL, err, sizeof(err)), ENS_ELOCKED);
  ens_storage_unlock(&a);
  CU_ASSERT_FALSE(exists(lock));
  /* Left by a process that has exited, reaped or not: taken over. */
  for (int reap = 0; reap < 2; reap++) {
    child = fork();
    if (child == 0)
      _exit(0);
    if (reap)
      waitpid(child, NULL, 0);
    else
      usleep(100000); /* a zombie until waitpid below */
    write_owner(lock, host, (long)child, "");
    CU_ASSERT_EQUAL(ens_storage_lock(&a, dir, NULL, err, sizeof(err)), 0);
    CU_ASSERT_TRUE(a.held);
    ens_storage_unlock(&a);
    if (!reap)
      waitpid(child, NULL, 0);
  }
  /* Another host: cannot be checked, so it is respected... */
  write_owner(lock, "elsewhere.example", 1, "4242");
  CU_ASSERT_EQUAL(ens_storage_lock(&a, dir, NULL, err, sizeof(err)), ENS_ELOCKED);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "elsewhere.example"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "remove the lock file"));
  /* ...by another SLURM job, or by the same one not requeued... */
  setenv("SLURM_JOB_ID", "4243", 1);
  CU_ASSERT_EQUAL(ens_storage_lock(&a, dir, NULL, err, sizeof(err)), ENS_ELOCKED);
  setenv("SLURM_JOB_ID", "4242", 1);
  CU_ASSERT_EQUAL(ens_storage_lock(&a, dir, NULL, err, sizeof(err)), ENS_ELOCKED);
  /* ...but the same job after a requeue takes over its own lock. */
  setenv("SLURM_RESTART_COUNT", "1", 1);
  CU_ASSERT_EQUAL(ens_storage_lock_busy(dir, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(ens_storage_lock(&a, dir, NULL, err, sizeof(err)), 0);
  ens_storage_unlock(&a);
  unsetenv("SLURM_JOB_ID");
  unsetenv("SLURM_RESTART_COUNT");
  unsetenv("ENS_LOCK_RECORD_ONLY");
}

/* A failing HDF5 call's system error is recorded, the first one wins until
 * it is taken. */
static void test_h5_errno(void) {
  ens_h5_quiet();
  ens_h5_take_errno();
  char path[512];
  path_in(path, sizeof(path), "no/such/dir/f.h5");
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  CU_ASSERT_TRUE(f < 0);
  int e = ens_h5_take_errno();
  CU_ASSERT_EQUAL(e, ENOENT);
  if (e != ENOENT)
    fprintf(stderr, "\n  recorded errno %d, expected %d\n", e, ENOENT);
  CU_ASSERT_EQUAL(ens_h5_take_errno(), 0);
}

static void test_free_space(void) {
  uint64_t b = 0, dev1 = 0, dev2 = 0;
  char p[512];
  path_in(p, sizeof(p), "not/yet/there.h5"); /* answered by its nearest ancestor */
  CU_ASSERT_EQUAL(ens_storage_free(p, &b, &dev1), 0);
  CU_ASSERT_TRUE(b > 0);
  CU_ASSERT_EQUAL(ens_storage_free(g_dir, &b, &dev2), 0);
  CU_ASSERT_EQUAL(dev1, dev2);
  char err[512];
  CU_ASSERT_EQUAL(ens_storage_check_dir(g_dir, "[output] path", err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(ens_storage_check_dir(p, "[output] path", err, sizeof(err)), ENS_EIO);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "[output] path: directory"));
  CU_ASSERT_EQUAL(count_named(".ens-probe"), 0);
}

int main(void) {
  snprintf(g_dir, sizeof(g_dir), "/tmp/ens-test-storage.%ld", (long)getpid());
  if (mkdir(g_dir, 0700) != 0)
    return 1;
  const cu_case cases[] = {{"publish in-memory file", test_publish},
                           {"failed publish keeps the previous file", test_publish_failure},
                           {"write errors name the reason and sizes", test_write_error_words},
                           {"checkpoint directory lock", test_lock},
                           {"HDF5 errno capture", test_h5_errno},
                           {"free space and directory checks", test_free_space},
                           {NULL, NULL}};
  int rc = cu_run_suite("storage", cases);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
  if (system(cmd) != 0)
    rc = rc ? rc : 1;
  return rc;
}
