/* Where a key was set in a job file, for messages about values that only
 * turn out wrong once the data is known (a layer list whose shapes do not
 * fit the images). */
#include "ens/config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int ens_config_key_line(const char *path, const char *section, const char *key) {
  FILE *fp = path ? fopen(path, "r") : NULL;
  if (!fp)
    return 0;
  char *line = NULL;
  size_t cap = 0;
  int lineno = 0, found = 0, in_section = 0;
  while (getline(&line, &cap, fp) >= 0) {
    lineno++;
    char *s = line;
    while (isspace((unsigned char)*s))
      s++;
    if (*s == '[') {
      char *e = strchr(s, ']');
      in_section = e && (size_t)(e - s - 1) == strlen(section) &&
                   strncasecmp(s + 1, section, strlen(section)) == 0;
      continue;
    }
    size_t n = strlen(key);
    if (in_section && strncasecmp(s, key, n) == 0) {
      char *t = s + n;
      while (*t == ' ' || *t == '\t')
        t++;
      if (*t == '=' || *t == ':')
        found = lineno; /* the last one: a second is an error the loader reports */
    }
  }
  free(line);
  fclose(fp);
  return found;
}

void ens_config_key_where(char *buf, size_t len, const char *path, const char *section,
                          const char *key) {
  int line = path ? ens_config_key_line(path, section, key) : 0;
  if (line > 0)
    snprintf(buf, len, "%s:%d: ", path, line);
  else if (len)
    buf[0] = '\0';
}
