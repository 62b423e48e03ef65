/* Job configuration: one table of keys (key_table below) drives the
 * defaults, INI parsing with inih, --set overrides, the INI text stored in
 * result files and the key listing, so that every key is declared once. */
#include "ens/config.h"

#include "ens/error.h"
#include "ens/model.h"
#include "ens/search.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

/* Numbers are written and read in the "C" locale (strtod/printf), which is
 * what a program gets unless it calls setlocale(LC_NUMERIC, ...). */

/* Enum fields are stored through memcpy of an int (see key_set). */
_Static_assert(sizeof(ens_init_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(ens_schedule_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(ens_mode_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(ens_combine_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(ens_trunk_source) == sizeof(int), "enum size");
_Static_assert(sizeof(ens_share_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(ens_task_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(ens_loss_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(ens_optimizer_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(ens_calibrate_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(ens_standardize_kind) == sizeof(int), "enum size");

/* Value names, indexed by the enum value; NULL-terminated. */
static const char *const init_names[] = {"normal", "xavier", "he", "orthogonal", "torch", NULL};
static const char *const schedule_names[] = {"constant", "step", "cosine", "cyclic", NULL};
static const char *const mode_names[] = {"seed", "bootstrap", "snapshot", "search", NULL};
static const char *const combine_names[] = {"average", "vote", "params", "select", NULL};
static const char *const task_names[] = {"auto", "classify", "regress", NULL};
static const char *const loss_names[] = {"gaussian", "mse", NULL};
static const char *const optimizer_names[] = {"sgd", "adam", "adamw", NULL};
static const char *const calibrate_names[] = {"none", "temperature", NULL};
static const char *const trunk_names[] = {"none", "file", "pretrain", NULL};
static const char *const share_names[] = {"auto", "true", "false", NULL};
static const char *const halving_schedule_names[] = {"whole", "rungs", NULL};
static const char *const standardize_names[] = {"feature", "channel", "global", NULL};
static const char *const wn_init_names[] = {"norm", "data", NULL};
static const char *const placement_names[] = {"queue", "cost", "modulo", NULL};
_Static_assert(ENS_INIT_ORTHOGONAL == 3 && ENS_INIT_TORCH == 4 && ENS_SCHED_CYCLIC == 3 && ENS_MODE_SEARCH == 3 &&
                   ENS_COMBINE_SELECT == 3 && ENS_TASK_REGRESS == 2 && ENS_LOSS_MSE == 1 &&
                   ENS_OPT_ADAMW == 2 && ENS_CALIBRATE_TEMPERATURE == 1 && ENS_TRUNK_PRETRAIN == 2 && ENS_SHARE_AUTO == 0 &&
                   ENS_SHARE_YES == 1 && ENS_SHARE_NO == 2,
               "name tables follow the enum order");

typedef enum { KEY_BOOL, KEY_INT, KEY_DOUBLE, KEY_STRING, KEY_ENUM, KEY_INTLIST, KEY_U64 } key_type;

/* Bounds of a KEY_INT/KEY_DOUBLE value: which ends exist, which are open. */
enum { B_LO = 1, B_LO_OPEN = 2, B_HI = 4, B_HI_OPEN = 8 };
#define GE(a) .bounds = B_LO, .lo = (a)
#define GT(a) .bounds = B_LO | B_LO_OPEN, .lo = (a)
#define CLOSED(a, b) .bounds = B_LO | B_HI, .lo = (a), .hi = (b)                  /* [a, b] */
#define CLOSED_OPEN(a, b) .bounds = B_LO | B_HI | B_HI_OPEN, .lo = (a), .hi = (b) /* [a, b) */
#define OPEN_CLOSED(a, b) .bounds = B_LO | B_LO_OPEN | B_HI, .lo = (a), .hi = (b) /* (a, b] */
#define ANY .bounds = 0

typedef struct {
  const char *section;
  const char *key;
  key_type type;
  size_t offset;            /* of the field in ens_config */
  size_t size;              /* KEY_STRING: buffer size */
  size_t count_offset;      /* KEY_INTLIST: offset of the element count */
  int bounds;               /* KEY_INT, KEY_DOUBLE: B_* flags */
  double lo, hi;
  const char *const *names; /* KEY_ENUM */
  const char *def;          /* default, as INI text */
  const char *help;
  /* KEY_STRING: optional check of the value's syntax (0 or ENS_ECONFIG
   * with a message that names the key). */
  int (*check)(const char *key, const char *value, char *msg, size_t len);
  /* KEY_DOUBLE: the word "auto" is accepted too, stored as ENS_AUTO (-1). */
  bool auto_word;
} key_spec;

static int trunk_layers_check(const char *key, const char *value, char *msg, size_t len);

#define FIELD(f) .offset = offsetof(ens_config, f)
#define K_BOOL(s, k, f, d, h) {s, k, KEY_BOOL, FIELD(f), .def = d, .help = h}
#define K_INT(s, k, f, b, d, h) {s, k, KEY_INT, FIELD(f), b, .def = d, .help = h}
#define K_DBL(s, k, f, b, d, h) {s, k, KEY_DOUBLE, FIELD(f), b, .def = d, .help = h}
#define K_STR(s, k, f, d, h) \
  {s, k, KEY_STRING, FIELD(f), .size = sizeof(((ens_config *)0)->f), .def = d, .help = h}
#define K_ENUM(s, k, f, n, d, h) {s, k, KEY_ENUM, FIELD(f), .names = n, .def = d, .help = h}
#define K_U64(s, k, f, d, h) {s, k, KEY_U64, FIELD(f), .def = d, .help = h}
#define K_SEARCH(k, f, d, h)                                                               \
  {"search", k, KEY_STRING, FIELD(f), .size = sizeof(((ens_config *)0)->f), .def = d, .help = h, \
   .check = ens_search_check}
#define K_CONV(k, f, d, h)                                                                 \
  {"search", k, KEY_STRING, FIELD(f), .size = sizeof(((ens_config *)0)->f), .def = d, .help = h, \
   .check = ens_search_conv_check}

/* Every key, grouped by section in output order. Field names are those of
 * ens_config; key names are what users write in the INI file. */
static const key_spec key_table[] = {
    K_STR("data", "path", data_path, "data.h5", "input HDF5 file (/train/x, /train/y, /test/x, ...)"),
    K_BOOL("data", "standardize", standardize, "true",
           "standardize features with the train split's per-feature mean/std"),
    K_ENUM("data", "standardize_by", standardize_by, standardize_names, "feature",
           "standardize: statistics per feature (pixel), per channel of image rows, or one "
           "global mean/std"),
    K_BOOL("data", "standardize_y", standardize_y, "true",
           "regression: standardize targets with the train split's mean/std (results stay in "
           "the original units)"),
    K_INT("data", "augment_crop", augment_crop, CLOSED(0, 64), "0",
          "image rows, training steps only: random crop of the image padded by this many "
          "pixels (0 = off)"),
    K_BOOL("data", "augment_flip", augment_flip, "false",
           "image rows, training steps only: random horizontal flip"),
    K_DBL("data", "val_fraction", val_fraction, CLOSED_OPEN(0, 1), "0",
          "fraction of the train split held out of training when the file has no /val "
          "(scored per member and for the ensemble)"),

    K_ENUM("model", "task", task, task_names, "auto",
           "auto = integer /train/y classifies, floating-point /train/y regresses"),
    K_ENUM("model", "loss", loss, loss_names, "gaussian",
           "regression loss: gaussian (mean and variance heads, Gaussian NLL) or mse (mean only)"),
    {"model", "hidden", KEY_INTLIST, FIELD(hidden), .count_offset = offsetof(ens_config, n_hidden),
     .def = "512,256", .help = "hidden layer widths, comma-separated (empty = no hidden layer)"},
    K_BOOL("model", "batchnorm", batchnorm, "true", "batch normalization after each hidden layer"),
    K_BOOL("model", "weightnorm", weightnorm, "false",
           "weight normalization (Salimans & Kingma 2016) of every dense layer, the output layer "
           "too: w = g v / ||v|| per unit, trained as v and g"),
    K_ENUM("model", "weightnorm_init", weightnorm_init, wn_init_names, "norm",
           "weight norm's g at init: norm = ||v|| (the network starts as without weight norm), "
           "data = the paper's data-dependent init on the member's first batch"),
    K_DBL("model", "dropout", dropout, CLOSED_OPEN(0, 1), "0",
          "dropout probability after each hidden layer"),
    K_ENUM("model", "init", init, init_names, "he", "weight initialization"),
    K_DBL("model", "init_std", init_std, GT(0), "0.01", "weight standard deviation for init = normal"),
    K_DBL("model", "bias_init", bias_init, ANY, "0", "initial value of hidden-layer biases (the output bias starts at 0)"),
    {"model", "layers", KEY_STRING, FIELD(model_layers), .size = sizeof(((ens_config *)0)->model_layers),
     .def = "", .check = ens_layers_check,
     .help = "layer list, replacing hidden/batchnorm/dropout when set (see 'Layer lists' below), "
             "e.g. conv 32 3 pad 1, bn, relu, maxpool 2, flatten, dense 128, bn, relu"},

    K_INT("train", "epochs", epochs, GE(1), "10", "epochs per member (per chain in snapshot mode)"),
    K_INT("train", "batch", batch, GE(2), "128", "minibatch size"),
    K_ENUM("train", "optimizer", optimizer, optimizer_names, "sgd",
           "sgd (momentum, nesterov), adam, or adamw (decoupled weight decay)"),
    K_DBL("train", "beta1", beta1, CLOSED_OPEN(0, 1), "0.9", "Adam: first-moment decay"),
    K_DBL("train", "beta2", beta2, CLOSED_OPEN(0, 1), "0.999", "Adam: second-moment decay"),
    K_DBL("train", "eps", eps, GT(0), "1e-08", "Adam: denominator epsilon"),
    K_DBL("train", "lr", lr, GT(0), "0.05", "learning rate (peak of the schedule)"),
    K_DBL("train", "lr_min", lr_min, GE(0), "0", "learning-rate floor of the cosine and cyclic schedules"),
    K_DBL("train", "momentum", momentum, CLOSED_OPEN(0, 1), "0.9", "SGD momentum"),
    K_BOOL("train", "nesterov", nesterov, "true", "Nesterov momentum"),
    K_DBL("train", "weight_decay", weight_decay, GE(0), "0.0005", "L2 weight decay"),
    K_ENUM("train", "schedule", schedule, schedule_names, "cosine", "learning-rate schedule"),
    K_INT("train", "step_size", step_size, GE(1), "30", "step schedule: epochs between decays"),
    K_DBL("train", "step_gamma", step_gamma, OPEN_CLOSED(0, 1), "0.1", "step schedule: decay factor"),
    K_INT("train", "cycles", cycles, GE(1), "4", "cyclic schedule: cosine cycles (restarts) in the run"),
    K_DBL("train", "clip_value", clip_value, GE(0), "0", "clip each gradient element to [-v, v] (0 = off)"),
    {"train", "clip_norm", KEY_DOUBLE, FIELD(clip_norm), GE(0), .def = "0", .auto_word = true,
     .help = "clip the global gradient norm to c (0 = off; auto = c from the member's own "
             "gradient norms: see clip_warmup)"},
    K_INT("train", "clip_warmup", clip_warmup, GE(0), "100",
          "clip_norm = auto: warm-up steps at clip_warmup_lr times the learning rate, unclipped; "
          "then c = clip_factor x the median of their gradient norms (0 = AutoClip instead)"),
    K_DBL("train", "clip_warmup_lr", clip_warmup_lr, OPEN_CLOSED(0, 1), "0.1",
          "clip_norm = auto: learning-rate factor during the warm-up"),
    K_DBL("train", "clip_factor", clip_factor, GT(0), "0.5",
          "clip_norm = auto: c = this x the median gradient norm of the warm-up"),
    K_DBL("train", "clip_percentile", clip_percentile, OPEN_CLOSED(0, 100), "10",
          "clip_norm = auto with clip_warmup = 0 (AutoClip): c is this percentile of the "
          "gradient norms so far"),
    K_INT("train", "threads", threads, CLOSED(1, 256), "1",
          "OpenBLAS threads per rank (results are bitwise reproducible for a fixed value)"),
    K_DBL("train", "bn_momentum", bn_momentum, OPEN_CLOSED(0, 1), "0.1",
          "batch-norm running-statistics momentum"),

    K_INT("ensemble", "members", members, GE(1), "1", "number of ensemble members"),
    K_ENUM("ensemble", "mode", mode, mode_names, "seed",
           "how members differ: own seed, bootstrap resample, snapshot chains, or random search ([search])"),
    K_INT("ensemble", "snapshots", snapshots, GE(1), "1", "members per snapshot chain (mode = snapshot)"),
    K_ENUM("ensemble", "combine", combine, combine_names, "average", "how members are combined"),
    K_U64("ensemble", "seed", seed, "42", "ensemble seed; all randomness of member k derives from it"),
    K_ENUM("ensemble", "share_init", share_init, share_names, "auto",
           "members start from the same initial weights; auto = only for combine = params"),
    K_INT("ensemble", "first_member", first_member, GE(0), "0", "first member index this job trains"),
    K_INT("ensemble", "count", count, GE(0), "0", "members this job trains (0 = all from first_member)"),
    K_INT("ensemble", "min_members", min_members, GE(1), "1",
          "fewer finished members than this fail the run (members whose loss diverges are "
          "recorded as failed)"),
    K_INT("ensemble", "select_max", select_max, GE(1), "50",
          "combine = select: most greedy picks (with replacement)"),
    K_INT("ensemble", "select_bags", select_bags, CLOSED(0, 10000), "20",
          "combine = select: greedy selections on random halves of the members, whose picks are "
          "summed (Caruana et al. 2006; 0 = one selection over all members)"),
    K_DBL("ensemble", "select_fraction", select_fraction, OPEN_CLOSED(0, 1), "0.5",
          "combine = select: fraction of the members in each bag"),
    K_BOOL("ensemble", "select_check", select_check, "true",
           "combine = select: keep the selection only if, fitted on half of the validation rows, "
           "it beats the plain average on the other half (both ways); else use the average"),
    K_ENUM("ensemble", "calibrate", calibrate, calibrate_names, "none",
           "fit one temperature (regression: variance scale) on the validation rows"),
    K_INT("ensemble", "mc_samples", mc_samples, CLOSED(0, 100000), "0",
          "MC-dropout passes per member whose test metrics train also reports (0 = off)"),

    K_SEARCH("lr", search_lr, "0.03,0.15", "learning rates to draw from (log-uniform)"),
    K_SEARCH("weight_decay", search_weight_decay, "2e-4,1e-3",
             "weight decays to draw from (log-uniform)"),
    K_SEARCH("momentum", search_momentum, "0.85,0.95", "momenta to draw from (uniform)"),
    K_SEARCH("dropout", search_dropout, "0,0.15", "dropout probabilities to draw from (uniform)"),
    K_SEARCH("batch", search_batch, "64,128", "batch sizes to choose from"),
    K_SEARCH("hidden", search_hidden, "512,256 | 1024,512 | 1024,1024 | 512,512,256",
             "architectures to choose from ('|' between width lists)"),
    K_SEARCH("init", search_init, "he,orthogonal", "initializations to choose from"),
    K_SEARCH("batchnorm", search_batchnorm, "true", "batch norm choices (true, false)"),
    K_SEARCH("layers", search_layers, "",
             "layer lists to choose from, separated by '|' (with [model] layers)"),
    K_CONV("conv_blocks", search_conv_blocks, "",
           "conv generator: blocks per member, 'lo,hi' or one value (empty = off; each block: "
           "conv_per_block convs, [bn], relu, then a 2x2 pooling)"),
    K_CONV("conv_width", search_conv_width, "16,64",
           "conv generator: first block's channels, 'lo,hi' = powers of two from lo "
           "(log-uniform), or 'a | b | c'"),
    K_CONV("conv_grow", search_conv_grow, "true",
           "conv generator: channels double per block (true, false choices)"),
    K_CONV("conv_kernel", search_conv_kernel, "3",
           "conv generator: odd kernel sizes to choose from, drawn per block"),
    K_CONV("conv_per_block", search_conv_per_block, "1",
           "conv generator: conv layers per block, 'lo,hi' or one value (1 or 2)"),
    K_CONV("conv_bn", search_conv_bn, "true",
           "conv generator: batch norm after each conv and the dense layer (true, false choices)"),
    K_CONV("pool", search_pool, "max", "conv generator: pooling per block (max, avg choices)"),
    K_CONV("conv_end", search_conv_end, "flatten",
           "conv generator: how the conv blocks end (flatten, gap choices)"),
    K_CONV("dense", search_dense, "64,256",
           "conv generator: dense width before the output, 'lo,hi' = powers of two, 'a | b', "
           "or 0 = none"),
    K_BOOL("search", "halving", search_halving, "false",
           "successive halving: train every member to rung 1, keep the best 1/halving_factor "
           "on validation nll, train those to the next rung, ... up to [train] epochs"),
    K_INT("search", "halving_min_epochs", search_halving_min_epochs, GE(1), "1",
          "halving: epochs of the first rung (rungs: m, m*f, m*f^2, ..., [train] epochs)"),
    K_INT("search", "halving_factor", search_halving_factor, GE(2), "3",
          "halving: rungs grow by this factor and the members kept shrink by it"),
    K_ENUM("search", "halving_schedule", search_halving_schedule, halving_schedule_names,
           "whole",
           "halving: the cosine schedule spans [train] epochs (whole), or restarts at each "
           "rung and anneals to lr_min at its end (rungs), so every ranking is made at a "
           "low learning rate"),
    K_INT("search", "hyper_deep", search_hyper_deep, GE(0), "0",
          "hyper-deep ensemble: new seeds for each selected configuration, trained after "
          "the selection in the same job (0 = off; needs combine = select)"),
    K_INT("search", "hyper_deep_configs", search_hyper_deep_configs, GE(1), "1",
          "hyper-deep: how many selected configurations to retrain (ranked by selection "
          "picks, then validation nll)"),

    K_ENUM("trunk", "source", trunk_source, trunk_names, "none", "shared frozen feature trunk"),
    K_STR("trunk", "file", trunk_file, "", "result file holding the trunk (source = file)"),
    K_STR("trunk", "dataset", trunk_dataset, "trunk",
          "parameters of the trunk file to use: trunk, ensemble or member:<k>"),
    {"trunk", "layers", KEY_STRING, FIELD(trunk_layers_text),
     .size = sizeof(((ens_config *)0)->trunk_layers_text), .def = "0", .check = trunk_layers_check,
     .help = "trunk: how many leading blocks (hidden layers), or its own layer list "
             "([model] layers = the heads)"},
    K_INT("trunk", "pretrain_epochs", pretrain_epochs, GE(0), "5",
          "epochs to pretrain the trunk (source = pretrain)"),
    K_INT("trunk", "pretrain_batch", pretrain_batch, GE(0), "0",
          "global batch of data-parallel pretraining, split over the ranks (0 = [train] batch)"),
    K_DBL("trunk", "pretrain_lr", pretrain_lr, GE(0), "0",
          "peak learning rate of pretraining (0 = [train] lr)"),
    K_BOOL("trunk", "check_sync", check_sync, "false",
           "pretrain: verify after every step that all ranks hold identical weights"),

    K_STR("output", "path", output_path, "result.h5", "result HDF5 file"),
    K_STR("output", "checkpoint_dir", checkpoint_dir, "", "checkpoint directory (empty = <output path>.ckpt)"),
    K_INT("output", "checkpoint_every", checkpoint_every, GE(0), "1",
          "epochs between checkpoints (0 = only on a signal)"),
    K_DBL("output", "progress_interval", progress_interval, GT(0), "10", "seconds between progress lines"),
    K_INT("output", "verbose", verbose, GE(0), "1", "verbosity: 0 = quiet, 1 = per-epoch lines"),
    K_ENUM("output", "placement", placement, placement_names, "queue",
           "which rank trains which member: queue = rank 0 hands them out, costliest first, as "
           "ranks free up; cost = a fixed plan from estimated costs; modulo = member k on rank "
           "k mod P (the result is the same for all three)"),
};
#define N_KEYS (sizeof key_table / sizeof key_table[0])

/* Messages quote at most this many characters of a bad value. */
#define QUOTE_MAX 80
/* Room for one message without its "file:line: " prefix. */
#define MSG_MAX 512

/* ---- small helpers ------------------------------------------------------ */

static char *lskip(char *s) {
  while (*s && isspace((unsigned char)*s))
    s++;
  return s;
}

static void rstrip(char *s) {
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1]))
    s[--n] = '\0';
}

/* Index of the first character of s in `chars`, or of an inline comment
 * (';' after whitespace), or of the terminating NUL: the same scan inih
 * uses, so that over-long lines are split exactly as inih would. */
static size_t span_to(const char *s, const char *chars) {
  size_t i = 0;
  bool was_space = false;
  while (s[i] && !(chars && strchr(chars, s[i])) && !(was_space && s[i] == ';')) {
    was_space = isspace((unsigned char)s[i]) != 0;
    i++;
  }
  return i;
}

static bool name_is(const char *name, const char *s, size_t n) {
  return strlen(name) == n && strncmp(name, s, n) == 0;
}

static bool section_known(const char *s, size_t n) {
  for (size_t i = 0; i < N_KEYS; i++)
    if (name_is(key_table[i].section, s, n))
      return true;
  return false;
}

static const key_spec *find_key(const char *sec, size_t slen, const char *key, size_t klen) {
  for (size_t i = 0; i < N_KEYS; i++)
    if (name_is(key_table[i].section, sec, slen) && name_is(key_table[i].key, key, klen))
      return &key_table[i];
  return NULL;
}

/* "data, model, train, ..." for messages. */
static void section_list(char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < N_KEYS; i++) {
    if (i > 0 && strcmp(key_table[i].section, key_table[i - 1].section) == 0)
      continue;
    int n = snprintf(buf + used, len - used, "%s[%s]", used ? ", " : "", key_table[i].section);
    if (n < 0 || (size_t)n >= len - used)
      return;
    used += (size_t)n;
  }
}

/* "a|b|c" */
static void name_list(char *buf, size_t len, const char *const *names) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; names[i]; i++) {
    int n = snprintf(buf + used, len - used, "%s%s", i ? "|" : "", names[i]);
    if (n < 0 || (size_t)n >= len - used)
      return;
    used += (size_t)n;
  }
}

static int name_count(const char *const *names) {
  int n = 0;
  while (names[n])
    n++;
  return n;
}

static const char *enum_name(const char *const *names, int k) {
  return k >= 0 && k < name_count(names) ? names[k] : "unknown";
}

/* ---- strict value parsers ----------------------------------------------- */

static bool parse_long(const char *s, long *out) {
  if (!*s || isspace((unsigned char)*s))
    return false;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno == ERANGE)
    return false;
  *out = v;
  return true;
}

/* Underflow to a subnormal is accepted (errno is not consulted) so that any
 * finite double written with %.17g reads back. */
static bool parse_double(const char *s, double *out) {
  if (!*s || isspace((unsigned char)*s))
    return false;
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !isfinite(v))
    return false;
  *out = v;
  return true;
}

/* Decimal digits only: strtoull would accept (and negate) "-1". */
static bool parse_u64(const char *s, uint64_t *out) {
  if (!isdigit((unsigned char)*s))
    return false;
  for (const char *p = s; *p; p++)
    if (!isdigit((unsigned char)*p))
      return false;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end || errno == ERANGE || v > UINT64_MAX)
    return false;
  *out = (uint64_t)v;
  return true;
}

static bool parse_bool(const char *s, int *out) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) {
      *out = 1;
      return true;
    }
    if (strcasecmp(s, no[i]) == 0) {
      *out = 0;
      return true;
    }
  }
  return false;
}

/* "512,256" or "512, 256"; empty (or blank) means no hidden layer. */
static bool parse_intlist(const char *s, int *vals, int *n) {
  *n = 0;
  const char *p = s;
  while (isspace((unsigned char)*p))
    p++;
  if (!*p)
    return true;
  for (;;) {
    while (isspace((unsigned char)*p))
      p++;
    if (!isdigit((unsigned char)*p) || *n == ENS_MAX_HIDDEN)
      return false;
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (errno == ERANGE || v < 1 || v > INT_MAX)
      return false;
    vals[(*n)++] = (int)v;
    p = end;
    while (isspace((unsigned char)*p))
      p++;
    if (!*p)
      return true;
    if (*p != ',')
      return false;
    p++;
  }
}

static bool in_bounds(const key_spec *k, double v) {
  if (k->bounds & B_LO) {
    if ((k->bounds & B_LO_OPEN) ? !(v > k->lo) : !(v >= k->lo))
      return false;
  }
  if (k->bounds & B_HI) {
    if ((k->bounds & B_HI_OPEN) ? !(v < k->hi) : !(v <= k->hi))
      return false;
  }
  return true;
}

/* What a key accepts, e.g. "a number > 0", "an integer in [1, 256]". */
static void describe_expected(const key_spec *k, char *buf, size_t len) {
  char names[256];
  switch (k->type) {
  case KEY_BOOL:
    snprintf(buf, len, "true or false (or yes/no, on/off, 1/0)");
    return;
  case KEY_STRING:
    snprintf(buf, len, "at most %zu characters", k->size - 1);
    return;
  case KEY_ENUM:
    name_list(names, sizeof names, k->names);
    snprintf(buf, len, "one of %s", names);
    return;
  case KEY_INTLIST:
    snprintf(buf, len, "a comma-separated list of at most %d positive integers (e.g. 512,256; empty for none)",
             ENS_MAX_HIDDEN);
    return;
  case KEY_U64:
    snprintf(buf, len, "an unsigned 64-bit integer");
    return;
  case KEY_INT:
  case KEY_DOUBLE:
    break;
  }
  const char *what = k->type == KEY_INT ? "an integer" : k->auto_word ? "auto or a number" : "a number";
  int b = k->bounds;
  if ((b & B_LO) && (b & B_HI))
    snprintf(buf, len, "%s in %c%g, %g%c", what, (b & B_LO_OPEN) ? '(' : '[', k->lo, k->hi,
             (b & B_HI_OPEN) ? ')' : ']');
  else if (b & B_LO)
    snprintf(buf, len, "%s %s %g", what, (b & B_LO_OPEN) ? ">" : ">=", k->lo);
  else if (b & B_HI)
    snprintf(buf, len, "%s %s %g", what, (b & B_HI_OPEN) ? "<" : "<=", k->hi);
  else
    snprintf(buf, len, "%s", k->type == KEY_INT ? "an integer" : "a finite number");
}

/* Strings are written back verbatim by ens_config_to_ini, so reject what the
 * INI syntax cannot carry: control characters, leading or trailing blanks
 * (inih strips them) and ';' after a blank (an inline comment). */
static const char *string_problem(const char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
      return "must not contain control characters";
    /* ens_config_to_ini writes "key = value": a ';' first would follow
     * the blank after '=' there. */
    if ((ch == ';' || ch == '#') && (i == 0 || isspace((unsigned char)s[i - 1])))
      return "must not contain ';' or '#' at the start or after a blank (it starts an INI "
             "comment)";
  }
  if (n > 0 && (isspace((unsigned char)s[0]) || isspace((unsigned char)s[n - 1])))
    return "must not start or end with a blank";
  return NULL;
}

/* Parses `value` for key k and stores it in c; c is unchanged on error.
 * Returns 0, or ENS_ECONFIG with "[sec] key: expected ..., got '...'" in msg. */
static int key_set(ens_config *c, const key_spec *k, const char *value, char *msg, size_t msglen) {
  char *field = (char *)c + k->offset;
  bool ok = false;
  long l;
  double d;
  int i;
  uint64_t u;
  int list[ENS_MAX_HIDDEN];
  switch (k->type) {
  case KEY_BOOL:
    if ((ok = parse_bool(value, &i)))
      memcpy(field, &i, sizeof i);
    break;
  case KEY_INT:
    ok = parse_long(value, &l) && l >= INT_MIN && l <= INT_MAX && in_bounds(k, (double)l);
    if (ok) {
      i = (int)l;
      memcpy(field, &i, sizeof i);
    }
    break;
  case KEY_DOUBLE:
    if (k->auto_word && strcasecmp(value, "auto") == 0) {
      d = ENS_AUTO;
      ok = true;
    } else {
      ok = parse_double(value, &d) && in_bounds(k, d);
    }
    if (ok)
      memcpy(field, &d, sizeof d);
    break;
  case KEY_U64:
    if ((ok = parse_u64(value, &u)))
      memcpy(field, &u, sizeof u);
    break;
  case KEY_ENUM:
    for (i = 0; k->names[i]; i++)
      if (strcasecmp(value, k->names[i]) == 0) {
        memcpy(field, &i, sizeof i);
        ok = true;
        break;
      }
    break;
  case KEY_INTLIST:
    if ((ok = parse_intlist(value, list, &i))) {
      memset(field, 0, sizeof list);
      memcpy(field, list, (size_t)i * sizeof list[0]);
      memcpy((char *)c + k->count_offset, &i, sizeof i);
    }
    break;
  case KEY_STRING: {
    size_t n = strlen(value);
    const char *problem = string_problem(value);
    if (n >= k->size) {
      snprintf(msg, msglen, "[%s] %s: expected at most %zu characters, got %zu", k->section, k->key,
               k->size - 1, n);
      return ENS_ECONFIG;
    }
    if (problem) {
      snprintf(msg, msglen, "[%s] %s: %s, got '%.*s'", k->section, k->key, problem, QUOTE_MAX, value);
      return ENS_ECONFIG;
    }
    if (k->check && k->check(k->key, value, msg, msglen))
      return ENS_ECONFIG;
    memset(field, 0, k->size);
    memcpy(field, value, n);
    /* [trunk] layers as a count sets trunk_layers at once (a list is folded
     * into [model] layers once the whole configuration is read). */
    if (k->offset == offsetof(ens_config, trunk_layers_text) && parse_long(value, &l))
      c->trunk_layers = (int)l;
    return 0;
  }
  }
  if (ok)
    return 0;
  char expected[320];
  describe_expected(k, expected, sizeof expected);
  snprintf(msg, msglen, "[%s] %s: expected %s, got '%.*s%s'", k->section, k->key, expected, QUOTE_MAX,
           value, strlen(value) > QUOTE_MAX ? "..." : "");
  return ENS_ECONFIG;
}

/* Edit distance (Levenshtein, case-insensitive) between a[0..na) and the
 * string b, capped at 99; for "did you mean" hints. */
static int edit_distance(const char *a, size_t na, const char *b) {
  size_t nb = strlen(b);
  if (na > 64 || nb > 64)
    return 99;
  int row[65];
  for (size_t j = 0; j <= nb; j++)
    row[j] = (int)j;
  for (size_t i = 1; i <= na; i++) {
    int diag = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= nb; j++) {
      int up = row[j];
      int sub = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
      int best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
      row[j] = sub < best ? sub : best;
      diag = up;
    }
  }
  return row[nb] < 99 ? row[nb] : 99;
}

/* A name close enough to be a typo of one with n characters: at most 1 edit
 * for short names, about a third of the length for longer ones. */
static bool close_enough(int dist, size_t n) {
  int limit = n <= 4 ? 1 : (int)(n / 3) + 1;
  return dist <= limit;
}

/* The key nearest to key[0..klen): same section first, else any section.
 * NULL when none is close. */
static const key_spec *nearest_key(const char *sec, size_t slen, const char *key, size_t klen) {
  const key_spec *best = NULL;
  int bd = 99;
  for (int pass = 0; pass < 2 && !best; pass++)
    for (size_t i = 0; i < N_KEYS; i++) {
      if (pass == 0 && !name_is(key_table[i].section, sec, slen))
        continue;
      int d = edit_distance(key, klen, key_table[i].key);
      if (d < bd && close_enough(d, klen)) {
        bd = d;
        best = &key_table[i];
      }
    }
  return best;
}

static const char *nearest_section(const char *sec, size_t slen) {
  const char *best = NULL;
  int bd = 99;
  for (size_t i = 0; i < N_KEYS; i++) {
    int d = edit_distance(sec, slen, key_table[i].section);
    if (d < bd && close_enough(d, slen)) {
      bd = d;
      best = key_table[i].section;
    }
  }
  return best;
}

/* Applies section.key = value (section and key given by pointer and length).
 * Returns 0 or ENS_ECONFIG with a message (no location prefix) in msg. */
static int apply(ens_config *c, const char *sec, size_t slen, const char *key, size_t klen,
                 const char *value, char *msg, size_t msglen) {
  char list[256];
  if (slen == 0) {
    section_list(list, sizeof list);
    snprintf(msg, msglen, "key '%.*s' is outside any section (sections: %s)", (int)klen, key, list);
    return ENS_ECONFIG;
  }
  if (!section_known(sec, slen)) {
    const char *near = nearest_section(sec, slen);
    section_list(list, sizeof list);
    if (near)
      snprintf(msg, msglen, "unknown section [%.*s] (did you mean [%s]? sections: %s)", (int)slen,
               sec, near, list);
    else
      snprintf(msg, msglen, "unknown section [%.*s] (sections: %s)", (int)slen, sec, list);
    return ENS_ECONFIG;
  }
  const key_spec *k = find_key(sec, slen, key, klen);
  if (!k) {
    /* Point at the right section when the key exists elsewhere. */
    const key_spec *elsewhere = NULL;
    for (size_t i = 0; i < N_KEYS && !elsewhere; i++)
      if (name_is(key_table[i].key, key, klen))
        elsewhere = &key_table[i];
    const key_spec *near = elsewhere ? elsewhere : nearest_key(sec, slen, key, klen);
    if (near && name_is(near->section, sec, slen))
      snprintf(msg, msglen, "unknown key '%.*s' in section [%.*s] (did you mean %s?)", (int)klen,
               key, (int)slen, sec, near->key);
    else if (near)
      snprintf(msg, msglen, "unknown key '%.*s' in section [%.*s] (did you mean [%s] %s?)",
               (int)klen, key, (int)slen, sec, near->section, near->key);
    else
      snprintf(msg, msglen,
               "unknown key '%.*s' in section [%.*s] (`ens train --help` lists every key)",
               (int)klen, key, (int)slen, sec);
    return ENS_ECONFIG;
  }
  return key_set(c, k, value ? value : "", msg, msglen);
}

/* Writes key k's value of c as INI text into buf. */
static void format_value(const ens_config *c, const key_spec *k, char *buf, size_t len) {
  const char *field = (const char *)c + k->offset;
  int i;
  double d;
  uint64_t u;
  switch (k->type) {
  case KEY_BOOL:
    memcpy(&i, field, sizeof i);
    snprintf(buf, len, "%s", i ? "true" : "false");
    return;
  case KEY_INT:
    memcpy(&i, field, sizeof i);
    snprintf(buf, len, "%d", i);
    return;
  case KEY_DOUBLE:
    /* Shortest of %.15g..%.17g that reads back to the same double. */
    memcpy(&d, field, sizeof d);
    if (k->auto_word && d == ENS_AUTO) {
      snprintf(buf, len, "auto");
      return;
    }
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(buf, len, "%.*g", prec, d);
      if (strtod(buf, NULL) == d)
        return;
    }
    return;
  case KEY_U64:
    memcpy(&u, field, sizeof u);
    snprintf(buf, len, "%" PRIu64, u);
    return;
  case KEY_ENUM:
    memcpy(&i, field, sizeof i);
    snprintf(buf, len, "%s", enum_name(k->names, i));
    return;
  case KEY_STRING:
    snprintf(buf, len, "%.*s", (int)(k->size - 1), field);
    return;
  case KEY_INTLIST: {
    int n, v;
    size_t used = 0;
    memcpy(&n, (const char *)c + k->count_offset, sizeof n);
    if (n < 0)
      n = 0;
    if (n > ENS_MAX_HIDDEN)
      n = ENS_MAX_HIDDEN;
    buf[0] = '\0';
    for (int j = 0; j < n && used < len; j++) {
      memcpy(&v, field + (size_t)j * sizeof v, sizeof v);
      int w = snprintf(buf + used, len - used, "%s%d", j ? "," : "", v);
      if (w < 0)
        return;
      used += (size_t)w;
    }
    return;
  }
  }
}

/* ---- INI file loading --------------------------------------------------- */

/* State shared by file_reader and file_handler. inih's handler gets no line
 * number, so lines are read here and counted as they are handed to inih;
 * inih calls the handler for a line before it reads the next one. */
typedef struct {
  ens_config *cfg;
  FILE *fp;
  char *line;             /* getline buffer, owned */
  size_t cap;
  int lineno;             /* number of the line last handed to inih */
  const char *long_value; /* value of an over-long key line (see long_line) */
  int long_lineno;
  int read_errno;         /* errno of a failed read, 0 = none */
  int err_line;           /* line of the first error, 0 = none */
  char msg[MSG_MAX];      /* that error, without the "file:line: " prefix */
  int seen[N_KEYS];       /* line on which each key was set, 0 = not yet */
} file_ctx;

static void note_error(file_ctx *x, const char *fmt, ...) {
  if (x->err_line)
    return;
  x->err_line = x->lineno;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->msg, sizeof x->msg, fmt, ap);
  va_end(ap);
}

#define SYNTAX_MSG "syntax error: expected [section], key = value, or a comment"

/* inih reads into a fixed buffer of `num` bytes (200 in Debian's build) and
 * would silently split a longer line in two. A long `key = value` line
 * (a deep path) is split here as inih would split it and handed over as
 * "key=\x01"; file_handler substitutes the value kept in x. */
static char *long_line(file_ctx *x, char *s, char *str, int num) {
  str[0] = '\0';
  if (*s == ';' || *s == '#' || *s == '[')
    return str; /* a comment, or a section already checked by check_section */
  size_t eq = span_to(s, "=:");
  if (s[eq] != '=' && s[eq] != ':') {
    note_error(x, SYNTAX_MSG);
    return str;
  }
  s[eq] = '\0';
  rstrip(s);
  char *value = lskip(s + eq + 1);
  value[span_to(value, NULL)] = '\0';
  rstrip(value);
  if (strlen(s) + 3 > (size_t)num) {
    note_error(x, "line too long");
    return str;
  }
  x->long_value = value;
  x->long_lineno = x->lineno;
  snprintf(str, (size_t)num, "%s=\x01", s);
  return str;
}

/* Reports an unknown [section] at its own line, even if it has no keys
 * (inih only calls the handler for key lines). */
static void check_section(file_ctx *x, const char *s) {
  size_t end = span_to(s + 1, "]");
  if (s[1 + end] != ']')
    return; /* inih reports the syntax error */
  if (!section_known(s + 1, end)) {
    char list[256];
    const char *near = nearest_section(s + 1, end);
    section_list(list, sizeof list);
    if (near)
      note_error(x, "unknown section [%.*s] (did you mean [%s]? sections: %s)", (int)end, s + 1,
                 near, list);
    else
      note_error(x, "unknown section [%.*s] (sections: %s)", (int)end, s + 1, list);
  }
}

/* Both ';' and '#' start a comment, at the start of a line (inih) and after
 * a blank inside it. inih knows only ';' inline, so a '#' after a blank ends
 * the line here. */
static void inline_hash_comment(char *s) {
  if (*s == ';' || *s == '#')
    return;
  for (size_t i = 1; s[i]; i++)
    if (s[i] == '#' && isspace((unsigned char)s[i - 1])) {
      s[i] = '\0';
      return;
    }
}

/* fgets-style reader for ini_parse_stream. Leading blanks are removed, so
 * an indented line is never taken as a continuation of the previous value
 * (inih's multi-line values would otherwise make `lr = 0.1\n  0.2` mean
 * lr = 0.2). */
static char *file_reader(char *str, int num, void *stream) {
  file_ctx *x = stream;
  errno = 0;
  ssize_t n = getline(&x->line, &x->cap, x->fp);
  if (n < 0) {
    if (ferror(x->fp) || errno == ENOMEM)
      x->read_errno = errno ? errno : EIO;
    return NULL;
  }
  x->lineno++;
  char *s = x->line;
  if ((size_t)n != strlen(s)) {
    note_error(x, "line contains a NUL character");
    str[0] = '\0';
    return str;
  }
  if (x->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
    s += 3; /* UTF-8 byte order mark */
  rstrip(s);
  s = lskip(s);
  inline_hash_comment(s);
  rstrip(s);
  if (*s == '[')
    check_section(x, s);
  size_t len = strlen(s);
  if (len < (size_t)num) {
    memcpy(str, s, len + 1);
    return str;
  }
  return long_line(x, s, str, num);
}

static int file_handler(void *user, const char *section, const char *name, const char *value) {
  file_ctx *x = user;
  if (x->err_line)
    return 1; /* only the first error is reported */
  if (value && x->long_lineno == x->lineno && strcmp(value, "\x01") == 0)
    value = x->long_value;
  char msg[MSG_MAX];
  if (apply(x->cfg, section, strlen(section), name, strlen(name), value, msg, sizeof msg) != 0) {
    note_error(x, "%s", msg);
    return 0;
  }
  /* A key given twice is a mistake (which one did the user mean?). */
  const key_spec *k = find_key(section, strlen(section), name, strlen(name));
  if (k) {
    size_t i = (size_t)(k - key_table);
    if (x->seen[i]) {
      note_error(x, "[%s] %s is set a second time (first on line %d): remove one of the two",
                 k->section, k->key, x->seen[i]);
      return 0;
    }
    x->seen[i] = x->lineno;
  }
  return 1;
}

/* Parses the open stream fp (closed here); `path` names it in messages. */
static int load_stream(ens_config *c, FILE *fp, const char *path, char *err, size_t errlen) {
  file_ctx x;
  memset(&x, 0, sizeof x);
  x.cfg = c;
  x.fp = fp;
  /* ini_parse_stream rather than ini_parse: the reader gives line numbers. */
  int ret = ini_parse_stream(file_reader, &x, file_handler, &x);
  int rc = 0;
  if (x.read_errno == ENOMEM || ret == -2) {
    ens_errorf(err, errlen, "out of memory reading config file '%s'", path);
    rc = ENS_ENOMEM;
  } else if (x.read_errno) {
    ens_errorf(err, errlen, "error reading config file '%s': %s", path, strerror(x.read_errno));
    rc = ENS_EIO;
  } else if (ret > 0 && (x.err_line == 0 || ret < x.err_line)) {
    ens_errorf(err, errlen, "%s:%d: " SYNTAX_MSG, path, ret);
    rc = ENS_ECONFIG;
  } else if (x.err_line) {
    ens_errorf(err, errlen, "%s:%d: %s", path, x.err_line, x.msg);
    rc = ENS_ECONFIG;
  }
  free(x.line);
  fclose(x.fp);
  return rc;
}

static int load_file(ens_config *c, const char *path, char *err, size_t errlen) {
  FILE *fp = fopen(path, "r");
  if (!fp) {
    ens_errorf(err, errlen, "cannot open config file '%s': %s", path, strerror(errno));
    return ENS_EIO;
  }
  return load_stream(c, fp, path, err, errlen);
}

/* ---- public API --------------------------------------------------------- */


/* [trunk] layers: a non-negative block count or a layer list. */
static int trunk_layers_check(const char *key, const char *value, char *msg, size_t len) {
  long n;
  if (isdigit((unsigned char)value[0]) || value[0] == '-' || value[0] == '+') {
    if (parse_long(value, &n) && n >= 0 && n <= INT_MAX)
      return 0;
    snprintf(msg, len, "[trunk] %s: expected a block count (an integer >= 0) or a layer list, got '%.80s'",
             key, value);
    return ENS_ECONFIG;
  }
  char why[256];
  if (!value[0] || ens_layers_parse(value, NULL, why, sizeof why)) {
    snprintf(msg, len, "[trunk] %s: %s", key,
             value[0] ? why : "expected a block count (an integer >= 0) or a layer list, got ''");
    return ENS_ECONFIG;
  }
  return 0;
}

/* Folds a [trunk] layer list into [model] layers (trunk, then heads) and sets
 * trunk_layers to the trunk's block count; afterwards the config reads as the
 * count form, so its echo reloads to the same config. */
static int trunk_layers_fold(ens_config *c, const char *name, char *err, size_t errlen) {
  long n;
  const char *t = c->trunk_layers_text;
  if (isdigit((unsigned char)t[0]) && parse_long(t, &n)) {
    c->trunk_layers = (int)n;
    return 0;
  }
  char why[256];
  ens_arch ta, ha;
  if (ens_layers_parse(t, &ta, why, sizeof why) != 0) {
    ens_errorf(err, errlen, "%s: [trunk] layers: %s", name, why);
    return ENS_ECONFIG;
  }
  if (!c->model_layers[0] || ens_layers_parse(c->model_layers, &ha, why, sizeof why) != 0) {
    ens_errorf(err, errlen,
               "%s: [trunk] layers is a layer list, so [model] layers must list the heads on "
               "top of its features (e.g. dense 128, bn, relu)%s%s",
               name, c->model_layers[0] ? ": " : "", c->model_layers[0] ? why : "");
    return ENS_ECONFIG;
  }
  if (ha.spec[0].kind != ENS_LAYER_DENSE && ha.spec[0].kind != ENS_LAYER_CONV) {
    ens_errorf(err, errlen,
               "%s: [model] layers = %.200s: with a [trunk] layer list the heads must begin "
               "with a conv or dense layer (end the trunk list with the layers that finish its "
               "last block)",
               name, c->model_layers);
    return ENS_ECONFIG;
  }
  char both[ENS_LAYERS_MAX];
  int w = snprintf(both, sizeof both, "%s, %s", t, c->model_layers);
  if (w < 0 || (size_t)w >= sizeof both) {
    ens_errorf(err, errlen, "%s: [trunk] layers and [model] layers together exceed %d characters",
               name, (int)sizeof both - 1);
    return ENS_ECONFIG;
  }
  memcpy(c->model_layers, both, sizeof both);
  c->trunk_layers = ta.n_hidden;
  snprintf(c->trunk_layers_text, sizeof c->trunk_layers_text, "%d", ta.n_hidden);
  return 0;
}

int ens_config_load_text(ens_config *c, const char *name, const char *text, char *err,
                         size_t errlen) {
  ens_config_defaults(c);
  /* fmemopen wants a writable buffer (and a non-empty one): parse a copy. */
  size_t len = strlen(text);
  char *copy = malloc(len + 2);
  FILE *fp = NULL;
  if (copy) {
    memcpy(copy, text, len);
    copy[len] = '\n';
    copy[len + 1] = '\0';
    fp = fmemopen(copy, len + 1, "r");
  }
  if (!fp) {
    free(copy);
    ens_errorf(err, errlen, "out of memory reading the configuration of %s", name);
    return ENS_ENOMEM;
  }
  int ret = load_stream(c, fp, name, err, errlen);
  free(copy);
  if (ret == 0)
    ret = trunk_layers_fold(c, name, err, errlen);
  return ret;
}

void ens_config_defaults(ens_config *c) {
  char msg[MSG_MAX];
  memset(c, 0, sizeof *c); /* zero padding too, so configs compare with memcmp */
  for (size_t i = 0; i < N_KEYS; i++)
    (void)key_set(c, &key_table[i], key_table[i].def, msg, sizeof msg); /* tested */
}

int ens_config_set(ens_config *c, const char *assignment, char *err, size_t errlen) {
  const char *eq = strchr(assignment, '=');
  const char *dot = eq ? memchr(assignment, '.', (size_t)(eq - assignment)) : NULL;
  if (!eq || !dot) {
    ens_errorf(err, errlen, "--set %s: expected section.key=value", assignment);
    return ENS_ECONFIG;
  }
  const char *sec = assignment, *key = dot + 1;
  while (sec < dot && isspace((unsigned char)*sec))
    sec++;
  while (key < eq && isspace((unsigned char)*key))
    key++;
  size_t slen = (size_t)(dot - sec), klen = (size_t)(eq - key);
  while (klen > 0 && isspace((unsigned char)key[klen - 1]))
    klen--;
  if (slen == 0 || klen == 0) {
    ens_errorf(err, errlen, "--set %s: expected section.key=value", assignment);
    return ENS_ECONFIG;
  }
  char *value = malloc(strlen(eq + 1) + 1);
  if (!value) {
    ens_errorf(err, errlen, "--set %s: out of memory", assignment);
    return ENS_ENOMEM;
  }
  strcpy(value, eq + 1);
  rstrip(value);
  char msg[MSG_MAX];
  int rc = apply(c, sec, slen, key, klen, lskip(value), msg, sizeof msg);
  if (rc)
    ens_errorf(err, errlen, "--set %s: %s", assignment, msg);
  free(value);
  return rc;
}

int ens_config_load(ens_config *c, const char *path, const char *const *sets, int nsets, char *err,
                    size_t errlen) {
  ens_errorf(err, errlen, "%s", "");
  ens_config_defaults(c);
  if (path) {
    int rc = load_file(c, path, err, errlen);
    if (rc)
      return rc;
  }
  for (int i = 0; i < nsets; i++) {
    int rc = ens_config_set(c, sets[i], err, errlen);
    if (rc)
      return rc;
  }
  return trunk_layers_fold(c, path ? path : "--set", err, errlen);
}

/* Accepts "trunk", "ensemble" or "member:<k>" with k a non-negative integer. */
static bool trunk_dataset_ok(const char *s) {
  if (strcmp(s, "trunk") == 0 || strcmp(s, "ensemble") == 0)
    return true;
  if (strncmp(s, "member:", 7) != 0)
    return false;
  long k;
  return isdigit((unsigned char)s[7]) && parse_long(s + 7, &k) && k <= INT_MAX;
}

int ens_config_validate(const ens_config *c, char *err, size_t errlen) {
  char buf[ENS_PATH_MAX + 64], expected[320];
  /* Per-key checks again, for configs filled in by code rather than parsed. */
  for (size_t i = 0; i < N_KEYS; i++) {
    const key_spec *k = &key_table[i];
    const char *field = (const char *)c + k->offset;
    bool ok = true;
    int v;
    double d;
    switch (k->type) {
    case KEY_INT:
      memcpy(&v, field, sizeof v);
      ok = in_bounds(k, v);
      break;
    case KEY_DOUBLE:
      memcpy(&d, field, sizeof d);
      ok = isfinite(d) && (in_bounds(k, d) || (k->auto_word && d == ENS_AUTO));
      break;
    case KEY_ENUM:
      memcpy(&v, field, sizeof v);
      ok = v >= 0 && v < name_count(k->names);
      break;
    case KEY_STRING:
      ok = memchr(field, '\0', k->size) != NULL;
      if (ok && k->check && k->check(k->key, field, err, errlen))
        return ENS_ECONFIG;
      break;
    case KEY_INTLIST:
      memcpy(&v, (const char *)c + k->count_offset, sizeof v);
      ok = v >= 0 && v <= ENS_MAX_HIDDEN;
      for (int j = 0; ok && j < v; j++)
        ok = c->hidden[j] >= 1;
      break;
    case KEY_BOOL:
    case KEY_U64:
      break;
    }
    if (!ok) {
      format_value(c, k, buf, sizeof buf);
      describe_expected(k, expected, sizeof expected);
      ens_errorf(err, errlen, "[%s] %s = %.*s: expected %s", k->section, k->key, QUOTE_MAX, buf, expected);
      return ENS_ECONFIG;
    }
  }
  if (c->mode == ENS_MODE_SNAPSHOT) {
    if (c->members % c->snapshots != 0) {
      ens_errorf(err, errlen,
              "[ensemble] members = %d is not a multiple of [ensemble] snapshots = %d "
              "(mode = snapshot: each chain yields snapshots members)",
              c->members, c->snapshots);
      return ENS_ECONFIG;
    }
    if (c->first_member % c->snapshots != 0 || c->count % c->snapshots != 0) {
      ens_errorf(err, errlen,
              "[ensemble] first_member = %d and count = %d must be multiples of "
              "[ensemble] snapshots = %d (mode = snapshot: a job trains whole chains)",
              c->first_member, c->count, c->snapshots);
      return ENS_ECONFIG;
    }
    if (c->epochs < c->snapshots) {
      ens_errorf(err, errlen,
              "[train] epochs = %d is less than [ensemble] snapshots = %d "
              "(mode = snapshot needs at least one epoch per snapshot)",
              c->epochs, c->snapshots);
      return ENS_ECONFIG;
    }
  }
  if ((c->schedule == ENS_SCHED_COSINE || c->schedule == ENS_SCHED_CYCLIC ||
       c->mode == ENS_MODE_SNAPSHOT) &&
      c->lr_min > c->lr) {
    ens_errorf(err, errlen, "[train] lr_min = %g is greater than [train] lr = %g", c->lr_min, c->lr);
    return ENS_ECONFIG;
  }
  if (c->pretrain_batch == 1) {
    ens_errorf(err, errlen, "[trunk] pretrain_batch = 1: expected 0 (= [train] batch) or at least 2");
    return ENS_ECONFIG;
  }
  if (c->first_member >= c->members) {
    ens_errorf(err, errlen, "[ensemble] first_member = %d must be less than [ensemble] members = %d",
            c->first_member, c->members);
    return ENS_ECONFIG;
  }
  if ((long long)c->first_member + c->count > c->members) {
    ens_errorf(err, errlen,
            "[ensemble] first_member + count = %d + %d exceeds [ensemble] members = %d", c->first_member,
            c->count, c->members);
    return ENS_ECONFIG;
  }
  if (c->trunk_source != ENS_TRUNK_NONE) {
    const char *src = ens_trunk_source_name(c->trunk_source);
    if (c->trunk_layers < 1) {
      ens_errorf(err, errlen, "[trunk] layers = %d: source = %s needs a trunk of at least 1 layer",
              c->trunk_layers, src);
      return ENS_ECONFIG;
    }
    ens_arch la;
    char why[256];
    if (c->model_layers[0] && ens_layers_parse(c->model_layers, &la, why, sizeof why) == 0) {
      /* A layer list: blocks start at each conv or dense layer. */
      if (c->trunk_layers > la.n_hidden) {
        ens_errorf(err, errlen,
                   "[trunk] layers = %d exceeds the %d block(s) of [model] layers (a block "
                   "starts at each conv or dense layer; source = %s)",
                   c->trunk_layers, la.n_hidden, src);
        return ENS_ECONFIG;
      }
    } else if (c->trunk_layers > c->n_hidden) {
      ens_errorf(err, errlen,
              "[trunk] layers = %d exceeds the %d hidden layer(s) of [model] hidden (source = %s)",
              c->trunk_layers, c->n_hidden, src);
      return ENS_ECONFIG;
    }
  }
  if (c->combine == ENS_COMBINE_PARAMS && c->mode == ENS_MODE_SEARCH) {
    ens_errorf(err, errlen,
               "[ensemble] combine = params with mode = search: members of a search have their "
               "own hyperparameters%s and independent initializations, so their parameters "
               "cannot be averaged (use combine = select or average)",
               ens_search_varies_arch(c) ? " and architectures" : "");
    return ENS_ECONFIG;
  }
  if (c->mode == ENS_MODE_SEARCH && c->trunk_source != ENS_TRUNK_NONE && c->search_hidden[0]) {
    ens_errorf(err, errlen,
               "[search] hidden = %.80s with a [trunk]: the trunk fixes the first %d hidden "
               "layers, so the search cannot draw the architecture (set [search] hidden = to "
               "an empty value)",
               c->search_hidden, c->trunk_layers);
    return ENS_ECONFIG;
  }
  if (c->calibrate != ENS_CALIBRATE_NONE && c->combine == ENS_COMBINE_VOTE) {
    ens_errorf(err, errlen,
               "[ensemble] calibrate = %s with combine = vote: vote shares are not "
               "probabilities to calibrate (use combine = average or select)",
               ens_calibrate_name(c->calibrate));
    return ENS_ECONFIG;
  }
  if (c->task == ENS_TASK_REGRESS && c->combine == ENS_COMBINE_VOTE) {
    ens_errorf(err, errlen,
               "[ensemble] combine = vote with [model] task = regress: votes need classes "
               "(use average, select or params)");
    return ENS_ECONFIG;
  }
  {
    int jm = c->count > 0 ? c->count : c->members - c->first_member;
    if (c->min_members > jm) {
      ens_errorf(err, errlen,
                 "[ensemble] min_members = %d exceeds the %d member(s) this job trains",
                 c->min_members, jm);
      return ENS_ECONFIG;
    }
  }
  if (c->trunk_source == ENS_TRUNK_FILE) {
    if (c->trunk_file[0] == '\0') {
      ens_errorf(err, errlen, "[trunk] file is empty: source = file needs the result file holding the trunk");
      return ENS_ECONFIG;
    }
    if (!trunk_dataset_ok(c->trunk_dataset)) {
      ens_errorf(err, errlen, "[trunk] dataset: expected trunk, ensemble or member:<k>, got '%.*s'", QUOTE_MAX,
              c->trunk_dataset);
      return ENS_ECONFIG;
    }
  }
  return 0;
}

/* Growing string for ens_config_to_ini. */
typedef struct {
  char *p;
  size_t len, cap;
  bool oom;
} sbuf;

static void sbuf_add(sbuf *b, const char *a, const char *s1, const char *s2) {
  if (b->oom)
    return;
  size_t n = strlen(a) + strlen(s1) + strlen(s2);
  if (b->len + n + 1 > b->cap) {
    size_t cap = (b->cap ? b->cap : 1024);
    while (b->len + n + 1 > cap)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  b->len += (size_t)sprintf(b->p + b->len, "%s%s%s", a, s1, s2);
}

char *ens_config_to_ini(const ens_config *c) {
  sbuf b = {NULL, 0, 0, false};
  char value[ENS_PATH_MAX + 64];
  for (size_t i = 0; i < N_KEYS; i++) {
    const key_spec *k = &key_table[i];
    if (i == 0 || strcmp(k->section, key_table[i - 1].section) != 0)
      sbuf_add(&b, i ? "\n[" : "[", k->section, "]\n");
    format_value(c, k, value, sizeof value);
    sbuf_add(&b, k->key, " = ", value);
    sbuf_add(&b, "\n", "", "");
  }
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

void ens_config_print_keys(FILE *out) {
  char left[N_KEYS][128], names[256];
  int width = 0;
  for (size_t i = 0; i < N_KEYS; i++) {
    const key_spec *k = &key_table[i];
    int n = snprintf(left[i], sizeof left[i], "[%s] %s =%s%s", k->section, k->key, k->def[0] ? " " : "",
                     k->def);
    if (n > width)
      width = n;
  }
  for (size_t i = 0; i < N_KEYS; i++) {
    const key_spec *k = &key_table[i];
    if (i > 0 && strcmp(k->section, key_table[i - 1].section) != 0)
      fputc('\n', out);
    names[0] = '\0';
    if (k->type == KEY_ENUM)
      name_list(names, sizeof names, k->names);
    fprintf(out, "  %-*s    %s%s%s%s\n", width, left[i], k->help, names[0] ? " (" : "", names,
            names[0] ? ")" : "");
  }
}

const char *ens_init_name(ens_init_kind k) { return enum_name(init_names, (int)k); }
const char *ens_schedule_name(ens_schedule_kind k) { return enum_name(schedule_names, (int)k); }
const char *ens_mode_name(ens_mode_kind k) { return enum_name(mode_names, (int)k); }
const char *ens_combine_name(ens_combine_kind k) { return enum_name(combine_names, (int)k); }
const char *ens_task_name(ens_task_kind k) { return enum_name(task_names, (int)k); }
const char *ens_loss_name(ens_loss_kind k) { return enum_name(loss_names, (int)k); }
const char *ens_optimizer_name(ens_optimizer_kind k) { return enum_name(optimizer_names, (int)k); }
const char *ens_calibrate_name(ens_calibrate_kind k) { return enum_name(calibrate_names, (int)k); }
const char *ens_trunk_source_name(ens_trunk_source k) { return enum_name(trunk_names, (int)k); }

/* ---- single keys (effective-configuration rules, diffs) ------------------ */

static const key_spec *lookup(const char *section, const char *key) {
  return find_key(section, strlen(section), key, strlen(key));
}

int ens_config_key_text(const ens_config *c, const char *section, const char *key, char *buf,
                        size_t len) {
  const key_spec *k = lookup(section, key);
  if (!k) {
    if (len)
      buf[0] = '\0';
    return ENS_ENOTFOUND;
  }
  format_value(c, k, buf, len);
  return 0;
}

int ens_config_key_changed(const ens_config *c, const char *section, const char *key) {
  const key_spec *k = lookup(section, key);
  if (!k)
    return 0;
  char now[ENS_PATH_MAX + 64], def[ENS_PATH_MAX + 64];
  ens_config d;
  ens_config_defaults(&d);
  format_value(c, k, now, sizeof now);
  format_value(&d, k, def, sizeof def);
  return strcmp(now, def) != 0;
}

int ens_config_key_reset(ens_config *c, const char *section, const char *key) {
  const key_spec *k = lookup(section, key);
  char msg[MSG_MAX];
  if (!k)
    return ENS_ENOTFOUND;
  return key_set(c, k, k->def, msg, sizeof msg);
}
