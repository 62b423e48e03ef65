/* -o checks of ens predict, ens import and ens merge (see outcheck.h): an
 * output that is an input is always refused, an existing file that the
 * command did not write is refused without --force. Files are identified by
 * device and inode, so another name for the same file (a hard link, a
 * symbolic link, "./x.h5") is caught too. */
#include "io/outcheck.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ens/error.h"
#include "io/h5util.h"

int ens_output_is_predict_csv(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return 0;
  char line[65536];
  int ok = 0;
  if (fgets(line, sizeof(line), fp)) {
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = '\0';
    const char *last = line;
    for (const char *p = line; *p; p++)
      if (*p == ',' || *p == ';' || *p == '\t')
        last = p + 1;
    size_t ll = strlen(last), ve = strlen("var_epistemic");
    ok = !strcmp(last, "mutual_information") || (ll >= ve && !strcmp(last + ll - ve, "var_epistemic"));
  }
  fclose(fp);
  return ok;
}

/* What the existing HDF5 file at path is, for the rule and the message:
 * 1 an ens result, 2 an ens predict output, 3 an ens input data file (import
 * output), 0 another HDF5 file, -1 not HDF5. */
static int h5_kind(const char *path) {
  if (H5Fis_hdf5(path) <= 0)
    return -1;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return -1;
  int k = 0;
  char *s = NULL;
  if (ens_h5_get_attr_str(f, "/", "config", &s) == 0 && ens_h5_exists(f, "/model"))
    k = 1;
  else if (ens_h5_exists(f, "/model") == 0 && ens_h5_get_attr_str(f, "/", "combine", &s) == 0 &&
           (ens_h5_exists(f, "/probs") || ens_h5_exists(f, "/mean")))
    k = 2;
  else if (ens_h5_exists(f, "/train/x") && !ens_h5_exists(f, "/members"))
    k = 3;
  free(s);
  H5Fclose(f);
  return k;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

int ens_output_check(const char *out, const char *const *inputs, const char *const *labels,
                     int ninputs, ens_out_kind kind, int force, const char *cmd, char *err,
                     size_t errlen) {
  struct stat so;
  if (stat(out, &so) != 0)
    return 0; /* nothing there (or a folder still to be created) */
  for (int i = 0; i < ninputs; i++) {
    struct stat si;
    if (!inputs[i] || stat(inputs[i], &si) != 0)
      continue;
    if (si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
      ens_errorf(err, errlen,
                 "%s: -o %s is the same file as %s %s: writing it would destroy that input. "
                 "Nothing was written; choose another output file (--force does not apply)",
                 cmd, out, labels[i], inputs[i]);
      return ENS_EINVAL;
    }
  }
  if (S_ISDIR(so.st_mode)) {
    ens_errorf(err, errlen, "%s: -o %s is a folder: give a file name (e.g. %s/%s)", cmd, out, out,
               kind == ENS_OUT_PREDICT ? "predictions.h5" : kind == ENS_OUT_IMPORT ? "data.h5"
                                                                                : "result.h5");
    return ENS_EINVAL;
  }
  if (force)
    return 0;
  const char *what;
  int hk = h5_kind(out);
  if (kind == ENS_OUT_PREDICT && (hk == 2 || (hk < 0 && ens_output_is_predict_csv(out))))
    return 0;
  if (kind == ENS_OUT_IMPORT && hk == 3)
    return 0;
  if (kind == ENS_OUT_MERGE && hk == 1)
    return 0;
  switch (hk) {
  case 1:
    what = "an ens result (a trained ensemble)";
    break;
  case 2:
    what = "an ens predict output";
    break;
  case 3:
    what = "an ens input data file (ens import output)";
    break;
  case 0:
    what = "an HDF5 file that ens did not write";
    break;
  default:
    what = ends_with(out, ".csv") || ends_with(out, ".csv.gz") ? "a CSV file (not one ens "
                                                                 "predict wrote)"
                                                               : "a file ens did not write";
  }
  const char *mine = kind == ENS_OUT_PREDICT  ? "ens predict output"
                     : kind == ENS_OUT_IMPORT ? "ens import output"
                                              : "ens result";
  ens_errorf(err, errlen,
             "%s: -o %s exists and is %s, not an earlier %s. Nothing was written; choose "
             "another output file, or add --force to overwrite it",
             cmd, out, what, mine);
  return ENS_EINVAL;
}
