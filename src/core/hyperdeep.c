/* Hyper-deep ensembles: the member count and the checks of the keys
 * (ens/hyperdeep.h). */
#include "ens/hyperdeep.h"

#include <stdint.h>
#include <stdio.h>

#include "ens/error.h"
#include "io/h5util.h"

int ens_hyperdeep_on(const ens_config *c) {
  return c->mode == ENS_MODE_SEARCH && c->search_hyper_deep > 0;
}

int ens_hyperdeep_total(const ens_config *c) {
  if (!ens_hyperdeep_on(c))
    return c->members;
  return c->members + c->search_hyper_deep * c->search_hyper_deep_configs;
}

int ens_hyperdeep_check(const ens_config *c, const char *config_path, char *err, size_t errlen) {
  char at[1200];
  if (c->search_hyper_deep == 0)
    return 0;
  ens_config_key_where(at, sizeof(at), config_path, "search", "hyper_deep");
  if (c->search_hyper_deep < 0 || c->search_hyper_deep > ENS_HYPERDEEP_MAX_SEEDS) {
    ens_errorf(err, errlen,
               "%s[search] hyper_deep = %d: expected the number of new seeds per selected "
               "configuration, 0 (off) .. %d",
               at, c->search_hyper_deep, ENS_HYPERDEEP_MAX_SEEDS);
    return ENS_ECONFIG;
  }
  if (c->mode != ENS_MODE_SEARCH) {
    ens_errorf(err, errlen,
               "%s[search] hyper_deep = %d needs [ensemble] mode = search (this job has mode = "
               "%s): hyper-deep retrains configurations a search drew",
               at, c->search_hyper_deep, ens_mode_name(c->mode));
    return ENS_ECONFIG;
  }
  if (c->combine != ENS_COMBINE_SELECT) {
    ens_errorf(err, errlen,
               "%s[search] hyper_deep = %d needs [ensemble] combine = select (this job has "
               "combine = %s): the retrained configurations are those the selection picks",
               at, c->search_hyper_deep, ens_combine_name(c->combine));
    return ENS_ECONFIG;
  }
  if (c->search_halving) {
    ens_errorf(err, errlen,
               "%s[search] hyper_deep = %d with [search] halving = true: expected one of the "
               "two (hyper-deep after successive halving is not supported)",
               at, c->search_hyper_deep);
    return ENS_ECONFIG;
  }
  int jm = c->count > 0 ? c->count : c->members - c->first_member;
  if (jm != c->members) {
    ens_errorf(err, errlen,
               "%s[search] hyper_deep = %d with a slice of the members ([ensemble] first_member "
               "= %d, count = %d): the selection needs all %d members of the search, so a job "
               "must train them all (ens merge cannot join hyper-deep parts)",
               at, c->search_hyper_deep, c->first_member, c->count, c->members);
    return ENS_ECONFIG;
  }
  if (c->search_hyper_deep_configs < 1 || c->search_hyper_deep_configs > c->members) {
    ens_config_key_where(at, sizeof(at), config_path, "search", "hyper_deep_configs");
    ens_errorf(err, errlen,
               "%s[search] hyper_deep_configs = %d: expected the number of selected "
               "configurations to retrain, 1 .. [ensemble] members = %d",
               at, c->search_hyper_deep_configs, c->members);
    return ENS_ECONFIG;
  }
  return 0;
}

int ens_hyperdeep_read_source(hid_t f, int k) {
  char grp[64];
  int64_t v = k;
  snprintf(grp, sizeof(grp), "/members/%d", k);
  if (H5Aexists_by_name(f, grp, "source", H5P_DEFAULT) > 0 &&
      ens_h5_get_attr_i64(f, grp, "source", &v) == 0 && v >= 0 && v <= k)
    return (int)v;
  return k;
}
