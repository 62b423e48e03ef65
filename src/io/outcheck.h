/* Output paths that are never overwritten by accident (ens predict, ens import,
 * ens merge): the rule ens train follows for [output] path, for the other
 * commands that write a file given with -o. */
#ifndef ENS_IO_OUTCHECK_H
#define ENS_IO_OUTCHECK_H

#include <stddef.h>

/* What wrote a file, as far as -o checks need to know. */
typedef enum {
  ENS_OUT_PREDICT, /* ens predict: HDF5 /probs or /mean with root attribute model, or its CSV */
  ENS_OUT_IMPORT,  /* ens import csv|idx: an input data file (/train/x, no result attributes) */
  ENS_OUT_MERGE    /* ens merge: an ens result */
} ens_out_kind;

/* Checks -o `out` of command `cmd` ("ens predict") before anything is
 * computed. inputs[i] (ninputs paths, NULL entries skipped) are the files the
 * command reads, labelled by labels[i] in messages ("-m", "-i", "--test").
 * - An output that is one of the inputs (the same file: device and inode,
 *   whatever the name, hard link or symbolic link) is always refused.
 * - An existing folder is refused.
 * - An existing file that this kind of command did not write (see
 *   ens_out_kind) is refused unless force; the message says what it is.
 * A missing output (or one whose folder does not exist yet) passes.
 * Returns 0 or ENS_EINVAL with the message in err. */
int ens_output_check(const char *out, const char *const *inputs, const char *const *labels,
                     int ninputs, ens_out_kind kind, int force, const char *cmd, char *err,
                     size_t errlen);

/* 1 when the first line of CSV file path is the header of an ens predict
 * CSV output (its last column is mutual_information, or var_epistemic of a
 * regression target). */
int ens_output_is_predict_csv(const char *path);

#endif
