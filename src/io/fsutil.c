/* fsync and mkdir helpers (POSIX). */
#include "io/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ens_fsync_path(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return -1;
  int r = fsync(fd);
  close(fd);
  return r;
}

int ens_fsync_dir_of(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash)
    snprintf(dir, sizeof(dir), ".");
  else if (slash == dir)
    dir[1] = '\0';
  else
    *slash = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0)
    return -1;
  fsync(fd); /* some file systems refuse fsync on directories; not fatal */
  close(fd);
  return 0;
}

int ens_mkdir_p(const char *path) {
  char buf[4096];
  size_t len = strlen(path);
  if (len == 0 || len >= sizeof(buf))
    return -1;
  memcpy(buf, path, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (buf[i] == '/' || buf[i] == '\0') {
      char saved = buf[i];
      buf[i] = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return -1;
      buf[i] = saved;
    }
  }
  struct stat st;
  if (stat(path, &st) != 0)
    return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

void ens_dirname(const char *path, char *buf, size_t len) {
  snprintf(buf, len, "%s", path);
  char *slash = strrchr(buf, '/');
  if (!slash)
    snprintf(buf, len, ".");
  else if (slash == buf)
    buf[1] = '\0';
  else
    *slash = '\0';
}

int ens_mkdir_parent(const char *path) {
  char dir[4096];
  if (!strchr(path, '/'))
    return 0;
  ens_dirname(path, dir, sizeof(dir));
  return ens_mkdir_p(dir);
}

/* This host's name, with '.' and '/' replaced so that it fits in a file name
 * whose fields are separated by dots. */
static void host_tag(char *buf, size_t len) {
  if (gethostname(buf, len) != 0 || !buf[0])
    snprintf(buf, len, "localhost");
  buf[len - 1] = '\0';
  for (char *p = buf; *p; p++)
    if (*p == '.' || *p == '/')
      *p = '_';
}

void ens_tmp_path(const char *out, char *buf, size_t len) {
  char host[128];
  host_tag(host, sizeof(host));
  snprintf(buf, len, "%s.tmp.%s.%ld", out, host, (long)getpid());
}

/* 1 when s is a non-empty string of decimal digits. */
static int all_digits(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++)
    if (*s < '0' || *s > '9')
      return 0;
  return 1;
}

int ens_tmp_sweep(const char *out) {
  char dir[4096], host[128], prefix[1200];
  ens_dirname(out, dir, sizeof(dir));
  const char *base = strrchr(out, '/') ? strrchr(out, '/') + 1 : out;
  snprintf(prefix, sizeof(prefix), "%s.tmp.", base);
  size_t plen = strlen(prefix);
  host_tag(host, sizeof(host));
  size_t hlen = strlen(host);
  DIR *d = opendir(dir);
  if (!d)
    return 0;
  int removed = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, prefix, plen) != 0)
      continue;
    const char *rest = e->d_name + plen, *pid;
    if (all_digits(rest))
      pid = rest; /* <out>.tmp.<pid>, written before host names were added */
    else if (strncmp(rest, host, hlen) == 0 && rest[hlen] == '.' && all_digits(rest + hlen + 1))
      pid = rest + hlen + 1;
    else
      continue; /* another host's: it may be alive there */
    long p = strtol(pid, NULL, 10);
    if (p <= 0 || p == (long)getpid() || kill((pid_t)p, 0) == 0 || errno != ESRCH)
      continue;
    char full[8192];
    snprintf(full, sizeof(full), "%s/%s", dir, e->d_name);
    if (unlink(full) == 0)
      removed++;
  }
  closedir(d);
  return removed;
}
