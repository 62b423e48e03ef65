/* Successive halving: the rungs and the checks of its keys (ens/halving.h). */
#include "ens/halving.h"

#include <stdio.h>

#include "ens/error.h"

int ens_halving_rungs(const ens_config *c, int *rungs) {
  int n = 0;
  if (c->mode == ENS_MODE_SEARCH && c->search_halving) {
    long e = c->search_halving_min_epochs;
    while (e < c->epochs && n < ENS_HALVING_MAX_RUNGS - 1) {
      rungs[n++] = (int)e;
      e *= c->search_halving_factor > 1 ? c->search_halving_factor : 2;
    }
  }
  rungs[n++] = c->epochs;
  return n;
}

int ens_halving_keep(int n, int factor) {
  int k = factor > 0 ? n / factor : n;
  return k < 1 ? 1 : k;
}

int ens_halving_check(const ens_config *c, const char *config_path, char *err, size_t errlen) {
  char at[ENS_PATH_MAX + 32];
  if (!c->search_halving)
    return 0;
  ens_config_key_where(at, sizeof(at), config_path, "search", "halving");
  if (c->mode != ENS_MODE_SEARCH) {
    ens_errorf(err, errlen,
               "%s[search] halving = true needs [ensemble] mode = search (this job has mode = "
               "%s): halving ranks members of a search on validation nll",
               at, ens_mode_name(c->mode));
    return ENS_ECONFIG;
  }
  if (c->search_halving_min_epochs > c->epochs) {
    ens_config_key_where(at, sizeof(at), config_path, "search", "halving_min_epochs");
    ens_errorf(err, errlen,
               "%s[search] halving_min_epochs = %d exceeds [train] epochs = %d: expected the "
               "first rung within the training budget (1 .. %d)",
               at, c->search_halving_min_epochs, c->epochs, c->epochs);
    return ENS_ECONFIG;
  }
  if (c->search_halving_factor < 2) {
    ens_config_key_where(at, sizeof(at), config_path, "search", "halving_factor");
    ens_errorf(err, errlen, "%s[search] halving_factor = %d: expected an integer of at least 2",
               at, c->search_halving_factor);
    return ENS_ECONFIG;
  }
  if (c->search_halving_schedule == ENS_HALVING_SCHED_RUNGS && c->schedule != ENS_SCHED_COSINE) {
    ens_config_key_where(at, sizeof(at), config_path, "search", "halving_schedule");
    ens_errorf(err, errlen,
               "%s[search] halving_schedule = rungs restarts the cosine schedule at each rung, "
               "and [train] schedule = %s: expected schedule = cosine (or halving_schedule = "
               "whole)",
               at, ens_schedule_name(c->schedule));
    return ENS_ECONFIG;
  }
  int jm = c->count > 0 ? c->count : c->members - c->first_member;
  if (jm != c->members) {
    ens_config_key_where(at, sizeof(at), config_path, "search", "halving");
    ens_errorf(err, errlen,
               "%s[search] halving = true with a slice of the members ([ensemble] first_member "
               "= %d, count = %d): halving ranks all %d members together, so a job must train "
               "them all (ens merge cannot join halving parts)",
               at, c->first_member, c->count, c->members);
    return ENS_ECONFIG;
  }
  if (c->members < 2) {
    ens_config_key_where(at, sizeof(at), config_path, "ensemble", "members");
    ens_errorf(err, errlen,
               "%s[search] halving = true with [ensemble] members = %d: expected at least 2 "
               "members to rank",
               at, c->members);
    return ENS_ECONFIG;
  }
  return 0;
}

int ens_halving_final_count(const ens_config *c) {
  int rungs[ENS_HALVING_MAX_RUNGS];
  int R = ens_halving_rungs(c, rungs), n = c->members;
  for (int r = 0; r + 1 < R; r++)
    n = ens_halving_keep(n, c->search_halving_factor);
  return n;
}
