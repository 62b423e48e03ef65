/* Checkpoints (issue 5): not yet written; training runs without them. */
#include "ens/error.h"
#include "ensemble/job.h"

int ens_job_checkpoint_epoch(ens_job *j, ens_trainer *t, int unit, int epoch) {
  (void)j; (void)t; (void)unit; (void)epoch;
  return 0;
}
int ens_job_checkpoint_stop(ens_job *j, ens_trainer *t, int unit) {
  (void)j; (void)t; (void)unit;
  return ENS_ESTOPPED;
}
int ens_job_checkpoint_done(ens_job *j, int unit) {
  (void)j; (void)unit;
  return 0;
}
int ens_job_restore_unit(ens_job *j, ens_trainer *t, int unit, int *done) {
  (void)j; (void)t; (void)unit;
  *done = 0;
  return 0;
}
