/* The member -> configuration map of a hyper-deep job, alone in its file:
 * member, result and predict code ask it, and it asks nothing (hyperdeep.c,
 * which trains and selects, sits above them). */
#include "ensemble/hyperdeep.h"

int ens_hyperdeep_source(const ens_hyperdeep *h, int k) {
  if (!h || !h->source || k < 0 || k >= h->N)
    return k;
  return h->source[k];
}

