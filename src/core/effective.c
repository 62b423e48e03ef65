/* The effective configuration of a run: keys that contradict the mode are
 * errors, keys the run derives are set, and keys the configuration leaves
 * unused go back to their defaults with one warning each, so that the
 * configuration stored in a result says what the run did (ens/config.h,
 * ens_config_effective). */
#include "ens/config.h"

#include <stdio.h>
#include <string.h>

#include "ens/error.h"
#include "ens/search.h"

typedef struct eff {
  ens_config *c;
  ens_config_warn_fn warn;
  void *ctx;
} eff;

#define VAL_MAX (ENS_PATH_MAX + 64)

/* 1 when mode = search draws [search] `key` (its value is not empty), so
 * that a member's value of the [model]/[train] key may differ from c's. */
static int drawn(const ens_config *c, const char *key) {
  if (c->mode != ENS_MODE_SEARCH)
    return 0;
  const char *v = !strcmp(key, "lr")             ? c->search_lr
                  : !strcmp(key, "weight_decay") ? c->search_weight_decay
                  : !strcmp(key, "momentum")     ? c->search_momentum
                  : !strcmp(key, "dropout")      ? c->search_dropout
                  : !strcmp(key, "batch")        ? c->search_batch
                  : !strcmp(key, "hidden")       ? c->search_hidden
                  : !strcmp(key, "init")         ? c->search_init
                  : !strcmp(key, "batchnorm")    ? c->search_batchnorm
                  : !strcmp(key, "layers")       ? c->search_layers
                                                 : "";
  return v[0] != '\0';
}

/* Key [section] key is not used by this configuration (`why` says so): when
 * it differs from its default, warn and put the default back. */
static void unused(eff *e, const char *section, const char *key, const char *why) {
  if (!ens_config_key_changed(e->c, section, key))
    return;
  char now[VAL_MAX], def[VAL_MAX], msg[2 * VAL_MAX + 512];
  ens_config d;
  ens_config_defaults(&d);
  ens_config_key_text(e->c, section, key, now, sizeof now);
  ens_config_key_text(&d, section, key, def, sizeof def);
  snprintf(msg, sizeof msg,
           "[%s] %s = %.200s is not used: %s. The result records the default (%.200s); remove "
           "the key from the job to silence this warning",
           section, key, now, why, def[0] ? def : "empty");
  ens_config_key_reset(e->c, section, key);
  if (e->warn)
    e->warn(e->ctx, msg);
}

/* A [model]/[train] key that every member of a search replaces by its own
 * draw: a warning, and the value stays (it may still serve the trunk). */
static void replaced_by_search(eff *e, const char *section, const char *key) {
  if (!drawn(e->c, key) || !ens_config_key_changed(e->c, section, key))
    return;
  char now[VAL_MAX], range[VAL_MAX], msg[2 * VAL_MAX + 512];
  ens_config_key_text(e->c, section, key, now, sizeof now);
  ens_config_key_text(e->c, "search", key, range, sizeof range);
  snprintf(msg, sizeof msg,
           "[%s] %s = %.200s is not what the members train with: mode = search draws each "
           "member's %s from [search] %s = %.200s (the values used are the attributes of "
           "/members/<k> in the result). Set [search] %s = (empty) to use %.200s for every "
           "member",
           section, key, now, key, key, range, key, now);
  if (e->warn)
    e->warn(e->ctx, msg);
}

static const char *const search_keys[] = {"lr",     "weight_decay", "momentum", "dropout",
                                          "batch",  "hidden",       "init",     "batchnorm",
                                          "layers", "conv_blocks", "conv_width", "conv_grow",
                                          "conv_kernel", "conv_per_block", "conv_bn", "pool",
                                          "conv_end", "dense", NULL};

int ens_config_effective(ens_config *c, ens_config_warn_fn warn, void *ctx, char *err,
                         size_t errlen) {
  eff e = {c, warn, ctx};
  char why[512];
  const char *sched = ens_schedule_name(c->schedule);

  /* Contradictions: the user asked for a kind of run this is not. */
  /* The conv generator builds the whole layer list of every member. */
  if (ens_search_conv_on(c) && (c->trunk_source != ENS_TRUNK_NONE || c->model_layers[0])) {
    ens_errorf(err, errlen,
               "[search] conv_blocks = %.40s builds each member's whole layer list, so %s (set "
               "[search] conv_blocks = to an empty value, or remove %s)",
               c->search_conv_blocks,
               c->trunk_source != ENS_TRUNK_NONE
                   ? "a [trunk] cannot fix its first layers"
                   : "[model] layers cannot be used as well",
               c->trunk_source != ENS_TRUNK_NONE ? "the [trunk]" : "[model] layers");
    return ENS_ECONFIG;
  }
  if (c->mode == ENS_MODE_SNAPSHOT) {
    if (c->schedule != ENS_SCHED_CYCLIC && ens_config_key_changed(c, "train", "schedule")) {
      ens_errorf(err, errlen,
                 "[train] schedule = %s contradicts [ensemble] mode = snapshot: each snapshot "
                 "chain runs a cyclic cosine schedule with one cycle per snapshot ([ensemble] "
                 "snapshots = %d). Remove schedule (or set it to cyclic), or use another mode",
                 sched, c->snapshots);
      return ENS_ECONFIG;
    }
    if (c->cycles != c->snapshots && ens_config_key_changed(c, "train", "cycles")) {
      ens_errorf(err, errlen,
                 "[train] cycles = %d contradicts [ensemble] mode = snapshot: a chain has one "
                 "cycle per snapshot ([ensemble] snapshots = %d). Remove cycles (or set it to "
                 "%d)",
                 c->cycles, c->snapshots, c->snapshots);
      return ENS_ECONFIG;
    }
    /* What a chain runs, recorded as such. */
    c->schedule = ENS_SCHED_CYCLIC;
    c->cycles = c->snapshots;
  } else if (c->snapshots != 1) {
    ens_errorf(err, errlen,
               "[ensemble] snapshots = %d applies only to mode = snapshot, and mode = %s "
               "trains each member in a run of its own. Remove snapshots, or set [ensemble] "
               "mode = snapshot",
               c->snapshots, ens_mode_name(c->mode));
    return ENS_ECONFIG;
  }
  sched = ens_schedule_name(c->schedule);

  /* Schedule parameters of other schedules. */
  if (c->schedule != ENS_SCHED_STEP) {
    snprintf(why, sizeof why, "it applies to schedule = step, and [train] schedule = %s", sched);
    unused(&e, "train", "step_size", why);
    unused(&e, "train", "step_gamma", why);
  }
  if (c->schedule != ENS_SCHED_CYCLIC) {
    snprintf(why, sizeof why, "it applies to schedule = cyclic, and [train] schedule = %s",
             sched);
    unused(&e, "train", "cycles", why);
  }
  if (c->schedule == ENS_SCHED_CONSTANT || c->schedule == ENS_SCHED_STEP) {
    snprintf(why, sizeof why,
             "it is the floor of the cosine and cyclic schedules, and [train] schedule = %s",
             sched);
    unused(&e, "train", "lr_min", why);
  }
  /* Optimizer parameters of the other optimizers. */
  if (c->optimizer == ENS_OPT_SGD) {
    snprintf(why, sizeof why, "it applies to optimizer = adam or adamw, and [train] optimizer "
                              "= sgd");
    unused(&e, "train", "beta1", why);
    unused(&e, "train", "beta2", why);
    unused(&e, "train", "eps", why);
  } else {
    snprintf(why, sizeof why, "it applies to optimizer = sgd, and [train] optimizer = %s",
             ens_optimizer_name(c->optimizer));
    unused(&e, "train", "nesterov", why);
    unused(&e, "train", "momentum", why);
    if (c->mode == ENS_MODE_SEARCH) {
      snprintf(why, sizeof why, "Adam has no momentum to draw ([train] optimizer = %s)",
               ens_optimizer_name(c->optimizer));
      unused(&e, "search", "momentum", why);
      c->search_momentum[0] = '\0'; /* the default range is not drawn either */
    }
  }
  if (!c->standardize)
    unused(&e, "data", "standardize_by", "it chooses the statistics of standardize, and [data] "
                                          "standardize = false");
  /* Regression keys of a classification. */
  if (c->task == ENS_TASK_CLASSIFY) {
    unused(&e, "model", "loss", "it applies to regression, and [model] task = classify");
    unused(&e, "data", "standardize_y", "it applies to regression, and [model] task = classify");
  }
  /* Initialization and batch norm. */
  if (c->init != ENS_INIT_NORMAL && !drawn(c, "init")) {
    snprintf(why, sizeof why, "it applies to init = normal, and [model] init = %s",
             ens_init_name(c->init));
    unused(&e, "model", "init_std", why);
  }
  if (c->init == ENS_INIT_TORCH && !drawn(c, "init"))
    unused(&e, "model", "bias_init",
           "init = torch draws the biases too (uniform in +-1/sqrt(fan_in), as PyTorch does)");
  if (!c->batchnorm && !drawn(c, "batchnorm"))
    unused(&e, "train", "bn_momentum", "the network has no batch norm ([model] batchnorm = false)");
  if (!c->weightnorm)
    unused(&e, "model", "weightnorm_init", "it applies to [model] weightnorm = true");
  if (c->clip_norm != ENS_AUTO) {
    unused(&e, "train", "clip_warmup", "it applies to clip_norm = auto");
    unused(&e, "train", "clip_warmup_lr", "it applies to clip_norm = auto");
    unused(&e, "train", "clip_factor", "it applies to clip_norm = auto");
    unused(&e, "train", "clip_percentile", "it applies to clip_norm = auto");
  } else if (c->clip_warmup > 0) {
    unused(&e, "train", "clip_percentile", "it applies to AutoClip ([train] clip_warmup = 0)");
  } else {
    unused(&e, "train", "clip_warmup_lr", "it applies to the warm-up ([train] clip_warmup > 0)");
    unused(&e, "train", "clip_factor", "it applies to the warm-up ([train] clip_warmup > 0)");
  }
  /* Ensemble keys of other rules. */
  if (c->combine != ENS_COMBINE_SELECT) {
    snprintf(why, sizeof why, "it applies to combine = select, and [ensemble] combine = %s",
             ens_combine_name(c->combine));
    unused(&e, "ensemble", "select_max", why);
    unused(&e, "ensemble", "select_bags", why);
    unused(&e, "ensemble", "select_fraction", why);
    unused(&e, "ensemble", "select_check", why);
  }
  /* Trunk keys of other sources. */
  const char *src = ens_trunk_source_name(c->trunk_source);
  if (c->trunk_source == ENS_TRUNK_NONE) {
    unused(&e, "trunk", "layers", "there is no trunk ([trunk] source = none)");
  }
  if (c->trunk_source != ENS_TRUNK_FILE) {
    snprintf(why, sizeof why, "it applies to source = file, and [trunk] source = %s", src);
    unused(&e, "trunk", "file", why);
    unused(&e, "trunk", "dataset", why);
  }
  if (c->trunk_source != ENS_TRUNK_PRETRAIN) {
    snprintf(why, sizeof why, "it applies to source = pretrain, and [trunk] source = %s", src);
    unused(&e, "trunk", "pretrain_epochs", why);
    unused(&e, "trunk", "pretrain_batch", why);
    unused(&e, "trunk", "pretrain_lr", why);
    unused(&e, "trunk", "check_sync", why);
  }
  if (!(c->mode == ENS_MODE_SEARCH && c->search_halving))
    unused(&e, "search", "halving_schedule",
           "it sets the schedule of successive halving, and [search] halving is off");
  /* [search] outside a search; [model]/[train] values a search replaces. */
  if (c->mode != ENS_MODE_SEARCH) {
    snprintf(why, sizeof why, "[search] applies to mode = search, and [ensemble] mode = %s",
             ens_mode_name(c->mode));
    for (int i = 0; search_keys[i]; i++)
      unused(&e, "search", search_keys[i], why);
  } else {
    int pretrain = c->trunk_source == ENS_TRUNK_PRETRAIN;
    /* Pretraining a trunk uses [train] lr and batch unless its own are set. */
    if (!(pretrain && c->pretrain_lr == 0))
      replaced_by_search(&e, "train", "lr");
    if (!(pretrain && c->pretrain_batch == 0))
      replaced_by_search(&e, "train", "batch");
    replaced_by_search(&e, "train", "weight_decay");
    replaced_by_search(&e, "train", "momentum");
    replaced_by_search(&e, "model", "dropout");
    if (!ens_search_conv_on(c)) { /* else unused: the generator's block below */
      replaced_by_search(&e, "model", "hidden");
      replaced_by_search(&e, "model", "batchnorm");
    }
    replaced_by_search(&e, "model", "init");
    replaced_by_search(&e, "model", "layers");
  }
  /* The conv generator builds every member's layer list: the MLP form's
   * keys and the other architecture draws are not used (dropout is: it
   * goes before the output layer). */
  if (ens_search_conv_on(c)) {
    snprintf(why, sizeof why, "[search] conv_blocks builds each member's layer list");
    unused(&e, "model", "hidden", why);
    unused(&e, "model", "batchnorm", why);
    unused(&e, "search", "hidden", why);
    unused(&e, "search", "batchnorm", why);
    unused(&e, "search", "layers", why);
  } else if (c->mode == ENS_MODE_SEARCH) {
    snprintf(why, sizeof why, "it applies to the conv generator, which [search] conv_blocks "
                              "(empty) leaves off");
    static const char *const gen[] = {"conv_width", "conv_grow", "conv_kernel", "conv_per_block",
                                      "conv_bn",    "pool",      "conv_end",    "dense"};
    for (size_t i = 0; i < sizeof gen / sizeof gen[0]; i++)
      unused(&e, "search", gen[i], why);
  }
  /* A layer list replaces the MLP form and its search keys. */
  if (c->model_layers[0]) {
    snprintf(why, sizeof why, "[model] layers is set, and its layer list replaces the MLP form");
    unused(&e, "model", "hidden", why);
    unused(&e, "model", "batchnorm", why);
    unused(&e, "model", "dropout", why);
    unused(&e, "search", "hidden", why);
    unused(&e, "search", "batchnorm", why);
    unused(&e, "search", "dropout", why);
  } else {
    snprintf(why, sizeof why, "[search] layers draws among layer lists, and [model] layers is "
                              "not set (the MLP form is used)");
    unused(&e, "search", "layers", why);
  }
  return 0;
}
