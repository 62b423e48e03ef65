/* Where a finished member goes (the scheduler's hand-off to the
 * collection): rank 0 writes it into the temporary result file at once
 * (result.c); the other ranks keep its metadata, and collect.c rebuilds it
 * from its checkpoint when rank 0 asks. The training loop (sched.c) and a
 * resumed unit (checkpoint.c) store members here and know nothing of how
 * they are collected or combined. */
#include <stdlib.h>

#include "ens/error.h"
#include "ensemble/job.h"
#include "ensemble/result.h"
#include "ensemble/store.h"

int ens_job_emit_packed(ens_job *j, ens_trainer *t, const ens_member_meta *meta) {
  if (meta->status == ENS_MEMBER_DONE) {
    /* Only rank 0 keeps the prediction rows now (it writes them at once);
     * the other ranks rebuild them at collection (ens_job_store_member). */
    /* The last evaluation's rows are this member's, when no step came since. */
    const float *eval_rows =
        j->eval_of == t && j->eval_step == t->step && t->step > 0 ? j->eval_pred : NULL;
    int ret = ens_job_pack_model(j, &t->model, t->curve_loss, t->curve_eval, meta, j->rank == 0,
                                 eval_rows);
    if (ret)
      return ret;
    ens_job_pack_grad_norm(j, meta, t->gn.summary);
  }
  return ens_job_store_member(j, meta, j->pack);
}

int ens_job_store_member(ens_job *j, const ens_member_meta *meta, const float *packed) {
  (void)packed;
  j->last_status = meta->status;
  if (j->rank == 0) {
    int ret = ens_job_write_member(j, meta, packed);
    if (ret) /* words for the training loop's caller */
      ret = ens_job_result_error(j, ret, j->ckpt.err, sizeof(j->ckpt.err), "member", meta->k);
    return ret;
  }
  /* Other ranks keep the metadata only: the weights are in the member's
   * checkpoint, written next, and the member is rebuilt from it when rank 0
   * asks, so a rank's memory does not grow with the members it trained. */
  ens_member_meta *h = realloc(j->held, (size_t)(j->nheld + 1) * sizeof(*h));
  if (!h)
    return ENS_ENOMEM;
  j->held = h;
  h[j->nheld++] = *meta;
  return 0;
}
