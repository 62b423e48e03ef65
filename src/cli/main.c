/* The ens command: argument parsing, MPI start-up, signal handling and exit
 * codes (0 ok, 1 usage/config/input error, 2 runtime failure, 75 stopped by
 * a signal after writing checkpoints). Library code never exits; this does. */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/suggest.h"
#include "core/comm.h"
#include "ens/config.h"
#include "ens/data.h"
#include "ens/ensemble.h"
#include "ens/error.h"
#include "ens/halving.h"
#include "ens/hyperdeep.h"
#include "ens/search.h"
#include "ensemble/fault.h"
#include "io/h5util.h"
#include "io/outcheck.h"
#include "ensemble/history.h"

#define EXIT_USAGE 1
#define EXIT_RUNTIME 2
#define EXIT_STOPPED 75

/* The only process-wide state: set by the signal handler, read by the
 * training loop between steps. */
static volatile sig_atomic_t g_stop = 0;
static volatile sig_atomic_t g_signal = 0; /* the first stop signal, for messages */
/* Set once ens_train_job returned: its outcome is the same on every rank
 * (agreed collectively), so no rank needs to take the job down. */
static int g_agreed = 0;

static void on_signal(int sig) {
  if (!g_stop)
    g_signal = sig;
  g_stop = 1;
}

/* The stop handlers go in first thing, before MPI_Init (which can take
 * seconds, and a batch job's USR1 may come at once): a stop at any moment
 * ends the run with exit 75, never with a rank killed by the signal.
 * SA_RESTART: MPI start-up's own system calls must not fail with EINTR. */
static void install_stop_handlers(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL); /* a closed terminal or dropped ssh: stop like SIGTERM */
}

/* Before main: the handlers go in as soon as the program's libraries are
 * loaded, so that a launcher's USR1 that comes right after the exec finds
 * them (the time from exec to main is spent loading libraries). Commands
 * other than train get the default actions back in main. */
__attribute__((constructor)) static void early_stop_handlers(void) { install_stop_handlers(); }

static void default_signals(void) {
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  signal(SIGUSR1, SIG_DFL);
  signal(SIGHUP, SIG_DFL);
  if (g_stop)
    raise(g_signal); /* it came before main: act on it now */
}

/* Wall-clock seconds since the epoch, for the run history. */
static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *signal_name(int sig) {
  return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP"
                                                                              : "SIGUSR1";
}

/* ENS_STATUS_FILE: where rank 0 leaves the outcome for a batch script
 * (jobs/ens-job.bash), which trusts it over the launcher's exit code. */
static int g_status_written = 0;
static void write_status(int rank, const char *state, int code, const ens_config *c,
                         const char *msg) {
  if (rank != 0 || g_status_written)
    return;
  g_status_written = 1;
  const char *file = getenv("ENS_STATUS_FILE");
  if (file && file[0] && ens_cli_status_write(file, state, code, c, msg) != 0)
    fprintf(stderr, "ens train: warning: cannot write the outcome file %s (ENS_STATUS_FILE)\n",
            file);
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: ens <command> [options]\n"
          "\n"
          "commands:\n"
          "  import idx --images F --labels F [--test-images F --test-labels F] -o data.h5\n"
          "      convert (gzip) IDX files to the ens input layout\n"
          "  import csv FILE --target NAME|INDEX[,...] -o data.h5 [--test FILE] ...\n"
          "      convert a CSV table (numeric and categorical columns) to the input layout\n"
          "  train -c job.ini [--set section.key=value ...] [--resume | --restart] [--force]\n"
          "      train an ensemble (under mpirun: one rank per process)\n"
          "  predict -m result.h5 -i input.h5 -o predictions.h5 [--combine average|vote|params]\n"
          "      apply a trained ensemble to new data\n"
          "  info [--config] result.h5 ...\n"
          "      print a result file's data, architecture, members and metrics\n"
          "  merge a.h5 b.h5 ... -o all.h5 [--partial]\n"
          "      combine result files of disjoint member slices into one\n"
          "  diff A.h5 B.h5\n"
          "      compare two results (datasets bitwise, configurations key by key;\n"
          "      exit 0 identical, 1 different, 2 unreadable)\n"
          "\n"
          "`ens <command> --help` gives the command's options; `ens train --help` lists\n"
          "every config key with its default.\n"
          "exit codes: 0 success, 1 usage/config/input error, 2 runtime failure,\n"
          "75 stopped by a signal after writing checkpoints\n");
}

/* Warnings of the effective configuration, printed once (rank 0). */
static void print_warning(void *ctx, const char *msg) {
  (void)ctx;
  fprintf(stderr, "ens train: warning: %s\n", msg);
}

static void train_usage(FILE *out) {
  fprintf(out,
          "usage: ens train -c job.ini [--set section.key=value ...] [--resume | --restart]\n"
          "                 [--force]\n"
          "\n"
          "  -c, --config FILE    INI job file (keys below; every key has a default)\n"
          "  --set S.K=V          override one key, e.g. --set train.epochs=5 (repeatable)\n"
          "  --resume             continue from the checkpoints in [output] checkpoint_dir\n"
          "  --restart            discard this job's checkpoints there and start over\n"
          "  --force              train even when [output] path holds a result (of this or\n"
          "                       another configuration) and overwrite it\n"
          "  -h, --help           this help\n"
          "\n"
          "Before training: a result of the same configuration and data at [output] path\n"
          "means nothing to do (exit 0); a result of another configuration is never\n"
          "overwritten without --force; checkpoints of an earlier run are never\n"
          "overwritten without --resume or --restart.\n"
          "Relative paths in the job ([data] path, [output] path, ...) resolve from the\n"
          "current folder; missing output and checkpoint folders are created.\n"
          "\n"
          "Signals: SIGTERM, SIGINT, SIGHUP or SIGUSR1 stop all ranks after the current\n"
          "step; checkpoints are written and ens exits with 75. Run again with --resume.\n"
          "Under mpirun send SIGUSR1 to mpirun (it passes it on and exits 75); mpirun\n"
          "exits 1 after SIGINT (Ctrl-C) or SIGTERM even though the ranks checkpointed.\n"
          "A closed stdout (ens train | head) does not stop training.\n"
          "\n"
          "config keys ([section] key = default  description):\n");
  ens_config_print_keys(out);
  fputc('\n', out);
  ens_search_print_help(out);
  fprintf(out,
          "\n"
          "Layer lists ([model] layers; [search] layers draws among several, separated by\n"
          "'|'): layers separated by commas, applied in order to image rows (C,H,W) or\n"
          "flat rows; ens adds the output layer (dense to the classes or targets).\n"
          "  conv C K [stride S] [pad P]  2-D convolution, C output channels, K x K kernel,\n"
          "                               zero padding P (default stride 1, pad 0)\n"
          "  dense N                      fully connected, N units (needs a flat input)\n"
          "  bn                           batch norm (per channel of an image, per feature)\n"
          "  relu | dropout P             element-wise, any shape\n"
          "  maxpool K [stride S]         K x K windows every S pixels (default S = K);\n"
          "  avgpool K [stride S]         the windows must tile the input exactly\n"
          "  gap                          global average pooling: (C,H,W) -> C\n"
          "  flatten                      (C,H,W) -> C*H*W\n"
          "Example: conv 32 3 pad 1, bn, relu, maxpool 2, conv 64 3 pad 1, bn, relu,\n"
          "         maxpool 2, flatten, dense 128, bn, relu\n"
          "A block starts at each conv or dense layer: [trunk] layers = N takes the first\n"
          "N blocks as the trunk; [trunk] layers = <layer list> is the trunk itself, and\n"
          "[model] layers then holds only the heads (beginning with conv or dense). A\n"
          "layer list replaces hidden, batchnorm and dropout; a stack that does not fit\n"
          "the data's images is a config error naming the line, the layer and the shape.\n"
          "Image rows: /train/x of shape (n,H,W) or (n,C,H,W) (ens import idx keeps\n"
          "28x28); an MLP (hidden = ...) flattens them. Augmentation ([data] augment_crop,\n"
          "augment_flip) touches training steps only, keyed by (seed, member, epoch, row).\n");
}

/* For an option that names a config key (--val_fraction, --epochs=5):
 * "[data] val_fraction is a config key: --set data.val_fraction=VALUE". */
static void key_hint(char *buf, size_t len, const char *opt) {
  static const char *const sections[] = {"data",   "model", "train", "ensemble",
                                         "search", "trunk", "output", NULL};
  char key[96];
  buf[0] = '\0';
  while (*opt == '-')
    opt++;
  snprintf(key, sizeof(key), "%s", opt);
  char *eq = strchr(key, '=');
  const char *value = eq ? strchr(opt, '=') + 1 : "VALUE";
  if (eq)
    *eq = '\0';
  for (char *p = key; *p; p++)
    if (*p == '-')
      *p = '_';
  ens_config d;
  char text[ENS_PATH_MAX + 64];
  ens_config_defaults(&d);
  for (int i = 0; sections[i]; i++)
    if (key[0] && ens_config_key_text(&d, sections[i], key, text, sizeof(text)) == 0) {
      snprintf(buf, len, "[%s] %s is a config key: --set %s.%s=%s", sections[i], key, sections[i],
               key, value);
      return;
    }
}

static int cmd_train(int argc, char **argv, const ens_launch *launch) {
  const char *cfg_path = NULL;
  int resume = 0, restart = 0, force = 0, nsets = 0;
  const char **sets = calloc((size_t)argc + 1, sizeof(char *));
  int rank = 0, code;
  ens_comm_rank(MPI_COMM_WORLD, &rank);
  if (!sets)
    return EXIT_RUNTIME;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      if (rank == 0)
        train_usage(stdout);
      free(sets);
      return 0;
    } else if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc) {
      cfg_path = argv[++i];
    } else if (!strcmp(a, "--set") && i + 1 < argc) {
      sets[nsets++] = argv[++i];
    } else if (!strncmp(a, "--set=", 6)) {
      sets[nsets++] = a + 6;
    } else if (!strcmp(a, "--resume")) {
      resume = 1;
    } else if (!strcmp(a, "--restart")) {
      restart = 1;
    } else if (!strcmp(a, "--force")) {
      force = 1;
    } else {
      if (rank == 0) {
        static const char *const known[] = {"-c",        "--config",  "--set", "--resume",
                                            "--restart", "--force",   "--help", NULL};
        char hint[400];
        key_hint(hint, sizeof(hint), a);
        if (!strcmp(a, "-c") || !strcmp(a, "--config") || !strcmp(a, "--set"))
          fprintf(stderr, "ens train: option '%s' needs a value (see ens train --help)\n", a);
        else
          ens_cli_unknown_option("train", a, known, hint);
      }
      free(sets);
      return EXIT_USAGE;
    }
  }
  if (!cfg_path) {
    if (rank == 0)
      fprintf(stderr, "ens train: -c job.ini is required (see ens train --help)\n");
    free(sets);
    return EXIT_USAGE;
  }
  if (resume && restart) {
    if (rank == 0)
      fprintf(stderr, "ens train: --resume continues from the checkpoints and --restart discards "
                      "them: give one of the two\n");
    free(sets);
    return EXIT_USAGE;
  }
  ens_config cfg;
  char err[2048] = "";
  int ret = ens_config_load(&cfg, cfg_path, sets, nsets, err, sizeof(err));
  if (!ret)
    ret = ens_config_effective(&cfg, rank == 0 ? print_warning : NULL, NULL, err, sizeof(err));
  if (!ret)
    ret = ens_config_validate(&cfg, err, sizeof(err));
  if (!ret)
    ret = ens_halving_check(&cfg, cfg_path, err, sizeof(err));
  if (!ret)
    ret = ens_hyperdeep_check(&cfg, cfg_path, err, sizeof(err));
  const char *layers_set = NULL; /* the last --set of the layer list names it */
  for (int i = 0; i < nsets; i++)
    if (!strncmp(sets[i], "model.layers=", 13))
      layers_set = sets[i];
  const char *conv_blocks_set = NULL;
  for (int i = 0; i < nsets; i++)
    if (!strncmp(sets[i], "search.conv_blocks=", 19))
      conv_blocks_set = sets[i];
  free(sets);
  /* Every rank reads the config itself (it may not be readable on every
   * node): agree, so that no rank goes on alone. */
  ret = ens_agree(MPI_COMM_WORLD, ret ? ENS_ECONFIG : 0, err, sizeof(err));
  if (ret) {
    if (rank == 0)
      fprintf(stderr, "ens train: %s\n", err);
    return EXIT_USAGE;
  }
  char *text = ens_config_to_ini(&cfg);
  if (!text)
    return EXIT_RUNTIME;
  ens_cli_print_start(launch, rank);
  {
    /* Still "running", now with where the checkpoints go and how many
     * members: a batch script whose ranks are killed before they can say how
     * far they got reads the checkpoint folder itself. */
    const char *file = getenv("ENS_STATUS_FILE");
    if (rank == 0 && file && file[0])
      ens_cli_status_write(file, "running", 0, &cfg, "");
  }
  /* A closed stdout or stderr pipe (ens train | head) must not kill training:
   * writes then fail with EPIPE and are dropped. */
  signal(SIGPIPE, SIG_IGN);
  ens_job_opts o = {.config_text = text, .config_path = cfg_path, .stop = &g_stop,
                    .resume = resume, .restart = restart, .force = force, .guard = 1,
                    .layers_set = layers_set, .conv_blocks_set = conv_blocks_set};
  /* A stop that came before training (during MPI_Init, the config): every
   * rank learns of it here, so none goes into the job alone. */
  int stop_any = 0, stop_mine = g_stop ? 1 : 0;
  ens_comm_allreduce(&stop_mine, &stop_any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  /* This run is one segment of the result's history (src/ensemble/history.h). */
  int size = 1, nodes = ens_cli_count_nodes(MPI_COMM_WORLD);
  ens_comm_size(MPI_COMM_WORLD, &size);
  char *history = rank == 0 ? ens_cli_history_load(&cfg, restart) : NULL;
  double t_start = ens_comm_wtime();
  o.history = history;
  o.started = wall_now();
  ret = stop_any ? ENS_ESTOPPED : ens_train_job(&cfg, &o, MPI_COMM_WORLD, err, sizeof(err));
  g_agreed = 1;
  free(text);
  free(history);
  if (ret == 0) {
    if (rank == 0)
      ens_cli_history_done(&cfg);
    write_status(rank, "done", 0, &cfg, "");
    return 0;
  }
  /* Every rank holds the same outcome and message: rank 0 says it once. */
  code = ret == ENS_ESTOPPED ? EXIT_STOPPED : ens_cli_exit_code(ret);
  if (rank == 0 && ret == ENS_ESTOPPED) {
    /* One line: what was saved, where, and the command that resumes. */
    char note[ENS_PATH_MAX + 256];
    int saved = ens_cli_stop_note(note, sizeof(note), &cfg);
    if (saved > 0) {
      char seg[256];
      int first = cfg.first_member,
          last = ens_hyperdeep_on(&cfg) ? ens_hyperdeep_total(&cfg)
                 : cfg.count > 0         ? first + cfg.count
                                         : cfg.members;
      ens_history_segment(seg, sizeof(seg), o.started, wall_now(), size, nodes,
                          ens_comm_wtime() - t_start, signal_name(g_signal ? g_signal : SIGUSR1),
                          first, last);
      ens_cli_history_append(&cfg, seg);
    }
    /* During trunk pretraining, trunk.c's message says where it stopped. */
    if (saved != 2 || !err[0])
      snprintf(err, sizeof(err), "stopped by %s: %s; %s",
               signal_name(g_signal ? g_signal : SIGUSR1), note,
               saved > 0 ? "resume: the same command with --resume"
                         : "resume: the same command (with or without --resume)");
  }
  if (rank == 0)
    fprintf(stderr, "ens train: %s\n", err[0] ? err : ens_strerror(ret));
  write_status(rank, ret == ENS_ESTOPPED ? "stopped" : "failed", code, &cfg,
               err[0] ? err : ens_strerror(ret));
  return code;
}

static void import_usage(FILE *out) {
  fprintf(out, "usage: ens import idx --images F --labels F [--test-images F --test-labels F] "
               "-o data.h5\n"
               "       ens import csv FILE --target NAME|INDEX[,...] -o data.h5 [options]\n"
               "\n"
               "  idx  converts (gzip) IDX image and label files (MNIST format)\n"
               "  csv  converts a CSV table: numeric and one-hot categorical features, class or\n"
               "       regression targets, train/test/val splits\n"
               "\n"
               "`ens import idx --help` and `ens import csv --help` give the options.\n");
}

static int cmd_import(int argc, char **argv) {
  if (argc >= 1 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))) {
    import_usage(stdout);
    return 0;
  }
  if (argc >= 1 && !strcmp(argv[0], "csv"))
    return ens_cli_import_csv(argc - 1, argv + 1);
  if (argc < 1) {
    import_usage(stderr);
    return EXIT_USAGE;
  }
  if (strcmp(argv[0], "idx") != 0) {
    fprintf(stderr, "ens import: unknown format '%s': expected idx or csv (see ens import "
                    "--help)\n", argv[0]);
    return EXIT_USAGE;
  }
  const char *img = NULL, *lab = NULL, *timg = NULL, *tlab = NULL, *out = NULL;
  int force = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--force")) {
      force = 1;
      continue;
    }
    const char **dst = !strcmp(a, "--images")        ? &img
                       : !strcmp(a, "--labels")      ? &lab
                       : !strcmp(a, "--test-images") ? &timg
                       : !strcmp(a, "--test-labels") ? &tlab
                       : (!strcmp(a, "-o") || !strcmp(a, "--output")) ? &out
                                                                      : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      printf("usage: ens import idx --images F --labels F [--test-images F --test-labels F] "
             "-o data.h5\n  Reads gzip or plain IDX files and writes /train/x, /train/y "
             "(and /test/x, /test/y) plus the root attribute `classes`.\n"
             "  Without test files there is no /test: ens train then scores on held-out\n"
             "  validation rows ([data] val_fraction). Missing folders of -o are created.\n"
             "  --force: overwrite an existing -o that is not an earlier ens import output\n"
             "  (an -o that is one of the IDX files is always refused).\n");
      return 0;
    }
    if (!dst || i + 1 >= argc) {
      fprintf(stderr, "ens import idx: unknown or incomplete option '%s'\n", a);
      return EXIT_USAGE;
    }
    *dst = argv[++i];
  }
  if (!img || !lab || !out || (!timg) != (!tlab)) {
    fprintf(stderr, "ens import idx: --images, --labels and -o are required; --test-images "
                    "and --test-labels go together\n");
    return EXIT_USAGE;
  }
  char err[4096] = "";
  const char *in[4] = {img, lab, timg, tlab};
  const char *labels[4] = {"--images", "--labels", "--test-images", "--test-labels"};
  ens_h5_quiet();
  if (ens_output_check(out, in, labels, 4, ENS_OUT_IMPORT, force, "ens import idx", err,
                       sizeof(err))) {
    fprintf(stderr, "%s\n", err);
    return EXIT_USAGE;
  }
  int ret = ens_idx_import(img, lab, timg, tlab, out, err, sizeof(err));
  if (ret) {
    fprintf(stderr, "ens import idx: %s\n", err[0] ? err : ens_strerror(ret));
    return ens_cli_exit_code(ret);
  }
  printf("wrote %s\n", out);
  if (!timg)
    printf("note: %s has no test split (no --test-images/--test-labels): ens train then scores "
           "the members on held-out validation rows, so the job needs [data] val_fraction "
           "(e.g. 0.2)\n", out);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "train") != 0)
    default_signals();
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? EXIT_USAGE : 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("ens %s\n", ENS_VERSION);
    return 0;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "import"))
    return cmd_import(argc - 2, argv + 2);
  if (!strcmp(cmd, "info"))
    return ens_cli_info(argc - 2, argv + 2);
  if (!strcmp(cmd, "predict"))
    return ens_cli_predict(argc - 2, argv + 2);
  if (!strcmp(cmd, "diff"))
    return ens_cli_diff(argc - 2, argv + 2);
  if (!strcmp(cmd, "merge")) {
    /* merge reuses the job machinery as a world of one rank: no MPI. */
    return ens_cli_merge(argc - 2, argv + 2);
  }
  if (strcmp(cmd, "train") != 0) {
    fprintf(stderr, "ens: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
  }
  install_stop_handlers();
  /* MPI only under a launcher (core/comm.h): one process starts at once. */
  ens_launch launch;
  char err[512] = "";
  int ret = ens_comm_start(&argc, &argv, &launch, err, sizeof(err));
  if (ret) {
    fprintf(stderr, "ens train: %s\n", err);
    return ens_cli_exit_code(ret);
  }
  {
    /* "running": every rank is past MPI_Init (or runs without MPI), so its
     * stop handlers are in place; a batch script re-sends a stop that came
     * before this, which a launcher with no ranks yet may have dropped. */
    int rank0 = 0;
    ens_comm_rank(MPI_COMM_WORLD, &rank0);
    const char *file = getenv("ENS_STATUS_FILE");
    if (rank0 == 0 && file && file[0])
      ens_cli_status_write(file, "running", 0, NULL, "");
  }
  int code = cmd_train(argc - 2, argv + 2, &launch);
  if (code != 0) { /* an error before the job: usage, config */
    int rank = 0;
    ens_comm_rank(MPI_COMM_WORLD, &rank);
    write_status(rank, "failed", code, NULL, "see the error above");
  }
  if (code == EXIT_RUNTIME && !g_agreed) {
    /* Last resort: a failure before the ranks could agree (out of memory
     * in the CLI itself); others may be blocked in communication. */
    int size;
    ens_comm_size(MPI_COMM_WORLD, &size);
    if (size > 1)
      ens_comm_abort(MPI_COMM_WORLD, EXIT_RUNTIME);
  }
  ens_comm_finish();
  return code;
}
