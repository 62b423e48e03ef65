/* The members of the result file (result.c): written by rank 0 as they
 * come, read back by the collection, a merge and the fold. */
#ifndef ENS_ENSEMBLE_RESULT_H
#define ENS_ENSEMBLE_RESULT_H

#include "ensemble/job.h"

/* Rank 0: writes member meta->k from its packed buffer into the result
 * file (its group with metadata and hyperparameters, weights, prediction
 * rows; a failed member gets NaN rows). */
int ens_job_write_member(ens_job *j, const ens_member_meta *meta, const float *packed);

/* Reads member k from result file f (where it is row `row` of the member
 * datasets) into j->pack with its metadata: weights, prediction rows and
 * curves; rows the file does not keep (out-of-bag, MC) come from its scratch
 * group when present, else *missing is set. 0, ENS_ESHAPE (sizes that are
 * not member k's), ENS_ENOMEM or ENS_EFORMAT. */
int ens_job_read_member(ens_job *j, hid_t f, hsize_t row, int k, ens_member_meta *meta,
                        int *missing);

/* Rank 0: reads member k's prediction rows (n, W) of split base ("" test,
 * "val_") back from the result file. */
int ens_job_read_rows(const ens_job *j, const char *base, int k, float *rows, int n);

/* Rank 0: words a failed write into the result file (the system's reason
 * when HDF5 recorded one) as "<doing> [k]: cannot write the result file
 * <path>: <reason>"; k < 0 omits it. Returns the code to report. */
int ens_job_result_error(ens_job *j, int ret, char *err, size_t errlen, const char *doing, int k);

#endif
