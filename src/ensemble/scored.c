/* Inputs without a test split: the held-out validation rows ([data]
 * val_fraction of /train, or the file's /val) become the rows the members
 * and the ensemble are scored on. Nothing else changes: the result has its
 * usual layout, with root attribute test_split saying where the scored rows
 * came from. Rules that fit on the validation rows (selection, calibration)
 * and searches, which compare members on them, are refused: their scores
 * would come from the rows they were fitted on. */
#include <stdio.h>
#include <string.h>

#include "ens/error.h"
#include "ensemble/job.h"

const char *ens_jobdata_scored_name(const ens_jobdata *d) {
  return d->scored && strcmp(d->scored, "/test") != 0 ? "val" : "test";
}

int ens_jobdata_score_val(ens_job *j, char *err, size_t errlen) {
  const ens_config *c = j->c;
  ens_data *d = &j->data.sets;
  const char *fit = c->combine == ENS_COMBINE_SELECT            ? "[ensemble] combine = select"
                    : c->calibrate != ENS_CALIBRATE_NONE        ? "[ensemble] calibrate"
                    : c->mode == ENS_MODE_SEARCH                ? "[ensemble] mode = search"
                                                                : NULL;
  if (d->val.n == 0) {
    snprintf(err, errlen,
             "%s has no /test split and no validation rows to score the members on: set "
             "[data] val_fraction (e.g. 0.2) to hold out rows of /train, or give the input a "
             "/test split (ens import idx --test-images/--test-labels, ens import csv "
             "--test-fraction)",
             c->data_path);
    return ENS_ECONFIG;
  }
  if (fit) {
    snprintf(err, errlen,
             "%s has no /test split, so its validation rows are the scored rows; %s fits on "
             "the validation rows, and the ensemble would be scored on the rows it was fitted "
             "on. Give the input a /test split (ens import idx --test-images/--test-labels, "
             "ens import csv --test-fraction), or use combine = average and calibrate = none "
             "without a search",
             c->data_path, fit);
    return ENS_ECONFIG;
  }
  d->test = d->val;
  memset(&d->val, 0, sizeof(d->val));
  return 0;
}
