/* Unit tests for the job configuration (src/core/config.c): defaults, INI
 * parsing with file:line errors, --set overrides, cross-key validation and
 * the exact round trip of ens_config_to_ini. */
#include "cu_run.h"
#include "ens/config.h"
#include "ens/error.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A config file in its own mkdtemp directory. */
typedef struct {
  char dir[64];
  char path[128];
} tmp_ini;

static int tmp_write(tmp_ini *t, const char *text, size_t len) {
  snprintf(t->dir, sizeof t->dir, "/tmp/ens_test_config_XXXXXX");
  if (!mkdtemp(t->dir))
    return -1;
  snprintf(t->path, sizeof t->path, "%s/job.ini", t->dir);
  FILE *f = fopen(t->path, "wb");
  if (!f)
    return -1;
  size_t n = fwrite(text, 1, len, f);
  return fclose(f) == 0 && n == len ? 0 : -1;
}

static void tmp_remove(tmp_ini *t) {
  unlink(t->path);
  rmdir(t->dir);
}

/* Writes text to a temporary job.ini, loads it (with optional --set
 * assignments), removes it; the path used is left in t->path. */
static int load_text_sets(tmp_ini *t, const char *text, const char *const *sets, int nsets, ens_config *c,
                          char *err, size_t errlen) {
  if (tmp_write(t, text, strlen(text)) != 0) {
    CU_FAIL("cannot write temporary config file");
    return -100;
  }
  int rc = ens_config_load(c, t->path, sets, nsets, err, errlen);
  tmp_remove(t);
  return rc;
}

static int load_text(tmp_ini *t, const char *text, ens_config *c, char *err, size_t errlen) {
  return load_text_sets(t, text, NULL, 0, c, err, errlen);
}

/* Loads text and expects ENS_ECONFIG with "path:line: " and `want` in the
 * message. */
static void expect_file_error(const char *text, int line, const char *want) {
  tmp_ini t;
  ens_config c;
  char err[1024] = "", prefix[256];
  int rc = load_text(&t, text, &c, err, sizeof err);
  snprintf(prefix, sizeof prefix, "%s:%d: ", t.path, line);
  bool ok = rc == ENS_ECONFIG && strncmp(err, prefix, strlen(prefix)) == 0 && strstr(err, want);
  if (!ok)
    fprintf(stderr, "\n  rc %d, message '%s'\n  expected '%s...%s'\n", rc, err, prefix, want);
  CU_ASSERT(ok);
}

static void expect_set_error(const char *assignment, const char *want) {
  ens_config c;
  char err[1024] = "";
  ens_config_defaults(&c);
  int rc = ens_config_set(&c, assignment, err, sizeof err);
  char prefix[256];
  snprintf(prefix, sizeof prefix, "--set %s: ", assignment);
  bool ok = rc == ENS_ECONFIG && strncmp(err, prefix, strlen(prefix)) == 0 && strstr(err, want);
  if (!ok)
    fprintf(stderr, "\n  rc %d, message '%s'\n  expected '%s...%s'\n", rc, err, prefix, want);
  CU_ASSERT(ok);
}

static void expect_invalid(const ens_config *c, const char *want1, const char *want2) {
  char err[1024] = "";
  int rc = ens_config_validate(c, err, sizeof err);
  bool ok = rc == ENS_ECONFIG && strstr(err, want1) && (!want2 || strstr(err, want2));
  if (!ok)
    fprintf(stderr, "\n  rc %d, message '%s', expected '%s' and '%s'\n", rc, err, want1,
            want2 ? want2 : "");
  CU_ASSERT(ok);
}

/* Applies one --set that must succeed. */
static void must_set(ens_config *c, const char *assignment) {
  char err[1024] = "";
  int rc = ens_config_set(c, assignment, err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  --set %s failed: %s\n", assignment, err);
  CU_ASSERT_EQUAL(rc, 0);
}

static void test_defaults(void) {
  ens_config c;
  memset(&c, 0xAB, sizeof c);
  ens_config_defaults(&c);
  CU_ASSERT_STRING_EQUAL(c.data_path, "data.h5");
  CU_ASSERT_EQUAL(c.standardize, 1);
  CU_ASSERT_EQUAL(c.val_fraction, 0.0);
  CU_ASSERT_EQUAL(c.n_hidden, 2);
  CU_ASSERT_EQUAL(c.hidden[0], 512);
  CU_ASSERT_EQUAL(c.hidden[1], 256);
  for (int i = 2; i < ENS_MAX_HIDDEN; i++)
    CU_ASSERT_EQUAL(c.hidden[i], 0);
  CU_ASSERT_EQUAL(c.batchnorm, 1);
  CU_ASSERT_EQUAL(c.dropout, 0.0);
  CU_ASSERT_EQUAL(c.init, ENS_INIT_HE);
  CU_ASSERT_EQUAL(c.init_std, 0.01);
  CU_ASSERT_EQUAL(c.bias_init, 0.0);
  CU_ASSERT_EQUAL(c.epochs, 10);
  CU_ASSERT_EQUAL(c.batch, 128);
  CU_ASSERT_EQUAL(c.lr, 0.05);
  CU_ASSERT_EQUAL(c.lr_min, 0.0);
  CU_ASSERT_EQUAL(c.momentum, 0.9);
  CU_ASSERT_EQUAL(c.nesterov, 1);
  CU_ASSERT_EQUAL(c.weight_decay, 5e-4);
  CU_ASSERT_EQUAL(c.schedule, ENS_SCHED_COSINE);
  CU_ASSERT_EQUAL(c.step_size, 30);
  CU_ASSERT_EQUAL(c.step_gamma, 0.1);
  CU_ASSERT_EQUAL(c.cycles, 4);
  CU_ASSERT_EQUAL(c.clip_value, 0.0);
  CU_ASSERT_EQUAL(c.clip_norm, 0.0);
  CU_ASSERT_EQUAL(c.threads, 1);
  CU_ASSERT_EQUAL(c.bn_momentum, 0.1);
  CU_ASSERT_EQUAL(c.members, 1);
  CU_ASSERT_EQUAL(c.mode, ENS_MODE_SEED);
  CU_ASSERT_EQUAL(c.snapshots, 1);
  CU_ASSERT_EQUAL(c.combine, ENS_COMBINE_AVERAGE);
  CU_ASSERT(c.seed == 42);
  CU_ASSERT_EQUAL(c.share_init, ENS_SHARE_AUTO);
  CU_ASSERT_EQUAL(c.first_member, 0);
  CU_ASSERT_EQUAL(c.count, 0);
  CU_ASSERT_EQUAL(c.trunk_source, ENS_TRUNK_NONE);
  CU_ASSERT_STRING_EQUAL(c.trunk_file, "");
  CU_ASSERT_STRING_EQUAL(c.trunk_dataset, "trunk");
  CU_ASSERT_EQUAL(c.trunk_layers, 0);
  CU_ASSERT_EQUAL(c.pretrain_epochs, 5);
  CU_ASSERT_STRING_EQUAL(c.output_path, "result.h5");
  CU_ASSERT_STRING_EQUAL(c.checkpoint_dir, "");
  CU_ASSERT_EQUAL(c.checkpoint_every, 1);
  CU_ASSERT_EQUAL(c.progress_interval, 10.0);
  CU_ASSERT_EQUAL(c.verbose, 1);

  char err[256] = "x";
  CU_ASSERT_EQUAL(ens_config_validate(&c, err, sizeof err), 0);
  /* No file: defaults plus overrides. */
  ens_config d;
  CU_ASSERT_EQUAL(ens_config_load(&d, NULL, NULL, 0, err, sizeof err), 0);
  CU_ASSERT_EQUAL(memcmp(&c, &d, sizeof c), 0);
}

static const char full_ini[] =
    "; every key, none at its default\n"
    "[data]\n"
    "path = /scratch/fmnist.h5\n"
    "standardize = no\n"
    "val_fraction = 0.1\n"
    "\n"
    "[model]\n"
    "hidden = 1024, 512,64\n"
    "batchnorm = OFF\n"
    "dropout = 0.25\n"
    "init = orthogonal\n"
    "init_std = 0.02\n"
    "bias_init = -0.5\n"
    "[train]\n"
    "epochs = 30 ; inline comment\n"
    "batch = 64\n"
    "lr = 0.1\n"
    "lr_min = 1e-4\n"
    "momentum = 0\n"
    "nesterov = False\n"
    "weight_decay = 1e-3\n"
    "schedule = cyclic\n"
    "step_size = 7\n"
    "step_gamma = 0.5\n"
    "cycles = 3\n"
    "clip_value = 1.5\n"
    "clip_norm = 5\n"
    "threads = 4\n"
    "bn_momentum = 0.01\n"
    "[ensemble]\n"
    "members = 12\n"
    "mode = snapshot\n"
    "snapshots = 3\n"
    "combine = params\n"
    "seed = 18446744073709551615\n"
    "share_init = false\n"
    "first_member = 3\n"
    "count = 9\n"
    "[trunk]\n"
    "source = file\n"
    "file = /scratch/pre.h5\n"
    "dataset = member:3\n"
    "layers = 2\n"
    "pretrain_epochs = 0\n"
    "check_sync = true\n"
    "[output]\n"
    "path = out/result.h5\n"
    "checkpoint_dir = /scratch/ckpt\n"
    "checkpoint_every = 0\n"
    "progress_interval = 2.5\n"
    "verbose = 0\n";

static void check_full(const ens_config *c) {
  CU_ASSERT_STRING_EQUAL(c->data_path, "/scratch/fmnist.h5");
  CU_ASSERT_EQUAL(c->standardize, 0);
  CU_ASSERT_EQUAL(c->val_fraction, 0.1);
  CU_ASSERT_EQUAL(c->n_hidden, 3);
  CU_ASSERT_EQUAL(c->hidden[0], 1024);
  CU_ASSERT_EQUAL(c->hidden[1], 512);
  CU_ASSERT_EQUAL(c->hidden[2], 64);
  CU_ASSERT_EQUAL(c->hidden[3], 0);
  CU_ASSERT_EQUAL(c->batchnorm, 0);
  CU_ASSERT_EQUAL(c->dropout, 0.25);
  CU_ASSERT_EQUAL(c->init, ENS_INIT_ORTHOGONAL);
  CU_ASSERT_EQUAL(c->init_std, 0.02);
  CU_ASSERT_EQUAL(c->bias_init, -0.5);
  CU_ASSERT_EQUAL(c->epochs, 30);
  CU_ASSERT_EQUAL(c->batch, 64);
  CU_ASSERT_EQUAL(c->lr, 0.1);
  CU_ASSERT_EQUAL(c->lr_min, 1e-4);
  CU_ASSERT_EQUAL(c->momentum, 0.0);
  CU_ASSERT_EQUAL(c->nesterov, 0);
  CU_ASSERT_EQUAL(c->weight_decay, 1e-3);
  CU_ASSERT_EQUAL(c->schedule, ENS_SCHED_CYCLIC);
  CU_ASSERT_EQUAL(c->step_size, 7);
  CU_ASSERT_EQUAL(c->step_gamma, 0.5);
  CU_ASSERT_EQUAL(c->cycles, 3);
  CU_ASSERT_EQUAL(c->clip_value, 1.5);
  CU_ASSERT_EQUAL(c->clip_norm, 5.0);
  CU_ASSERT_EQUAL(c->threads, 4);
  CU_ASSERT_EQUAL(c->bn_momentum, 0.01);
  CU_ASSERT_EQUAL(c->members, 12);
  CU_ASSERT_EQUAL(c->mode, ENS_MODE_SNAPSHOT);
  CU_ASSERT_EQUAL(c->snapshots, 3);
  CU_ASSERT_EQUAL(c->combine, ENS_COMBINE_PARAMS);
  CU_ASSERT(c->seed == UINT64_MAX);
  CU_ASSERT_EQUAL(c->share_init, ENS_SHARE_NO);
  CU_ASSERT_EQUAL(c->first_member, 3);
  CU_ASSERT_EQUAL(c->check_sync, 1);
  CU_ASSERT_EQUAL(c->count, 9);
  CU_ASSERT_EQUAL(c->trunk_source, ENS_TRUNK_FILE);
  CU_ASSERT_STRING_EQUAL(c->trunk_file, "/scratch/pre.h5");
  CU_ASSERT_STRING_EQUAL(c->trunk_dataset, "member:3");
  CU_ASSERT_EQUAL(c->trunk_layers, 2);
  CU_ASSERT_EQUAL(c->pretrain_epochs, 0);
  CU_ASSERT_STRING_EQUAL(c->output_path, "out/result.h5");
  CU_ASSERT_STRING_EQUAL(c->checkpoint_dir, "/scratch/ckpt");
  CU_ASSERT_EQUAL(c->checkpoint_every, 0);
  CU_ASSERT_EQUAL(c->progress_interval, 2.5);
  CU_ASSERT_EQUAL(c->verbose, 0);
}

static void test_full_file(void) {
  tmp_ini t;
  ens_config c;
  char err[1024] = "";
  int rc = load_text(&t, full_ini, &c, err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  %s\n", err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  check_full(&c);
  rc = ens_config_validate(&c, err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  %s\n", err);
  CU_ASSERT_EQUAL(rc, 0);
}

/* CRLF line endings, a byte order mark, indentation, '#' and ';' comments
 * (whole-line and inline), blank values, upper-case booleans. */
static void test_syntax_variants(void) {
  tmp_ini t;
  ens_config c;
  char err[1024] = "";
  const char *text = "\xEF\xBB\xBF[model]\r\n"
                     "  # comment\r\n"
                     "\thidden =\r\n"
                     "  batchnorm=YES\r\n"
                     "[train]  # the optimizer\r\n"
                     "lr = 0.3 # inline\r\n"
                     "epochs = 10 ; inline too\r\n"
                     "[data]\r\n"
                     "path = a#b.h5\r\n"
                     "[trunk]\r\n";
  int rc = load_text(&t, text, &c, err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  %s\n", err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(c.n_hidden, 0);
  CU_ASSERT_EQUAL(c.hidden[0], 0);
  CU_ASSERT_EQUAL(c.batchnorm, 1);
  CU_ASSERT_EQUAL(c.lr, 0.3);
  CU_ASSERT_EQUAL(c.epochs, 10);
  CU_ASSERT_STRING_EQUAL(c.data_path, "a#b.h5"); /* '#' not after a blank: part of the value */
  /* A '#' comment right after '=' leaves the value empty. */
  expect_file_error("[train]\nlr = # none\n", 2, "[train] lr: expected a number > 0, got ''");

  /* An indented line is not a continuation of the previous value. */
  expect_file_error("[train]\nlr = 0.1\n   0.2\n", 3, "syntax error");
  expect_file_error("[train]\nlr 0.1\n", 2, "syntax error");
  expect_file_error("[train\nlr = 0.1\n", 1, "syntax error");
  expect_file_error("lr = 0.1\n[train]\n", 1, "outside any section");
}

/* A key given twice is an error naming both lines (file only; --set
 * overrides). */
static void test_duplicate_key(void) {
  expect_file_error("[train]\nlr: 0.2\nepochs = 3\nlr = 0.3\n", 4,
                    "[train] lr is set a second time (first on line 2)");
  expect_file_error("[model]\nhidden = 8\n[train]\nlr = 1\n[model]\nhidden = 16\n", 6,
                    "[model] hidden is set a second time (first on line 2)");
  /* The same key name in two sections is not a duplicate. */
  tmp_ini t;
  ens_config c;
  char err[1024] = "";
  int rc = load_text(&t, "[train]\nmomentum = 0.8\n[search]\nmomentum = 0.7,0.9\n", &c, err,
                     sizeof err);
  CU_ASSERT_EQUAL(rc, 0);
  const char *sets[] = {"train.lr=0.2", "train.lr=0.3"};
  rc = load_text_sets(&t, "[train]\nlr = 0.1\n", sets, 2, &c, err, sizeof err);
  CU_ASSERT_EQUAL(rc, 0);
  CU_ASSERT_EQUAL(c.lr, 0.3);
}

/* Unknown keys and sections suggest the nearest known name. */
static void test_suggestions(void) {
  expect_file_error("[model]\nhiden = 8\n", 2,
                    "unknown key 'hiden' in section [model] (did you mean hidden?)");
  expect_file_error("[train]\nepoch = 3\n", 2, "(did you mean epochs?)");
  expect_file_error("[train]\nweight_decy = 0\n", 2, "(did you mean weight_decay?)");
  expect_file_error("[model]\nepoch = 3\n", 2, "(did you mean [train] epochs?)");
  expect_file_error("[train]\nzzzzzz = 3\n", 2, "`ens train --help` lists every key");
  expect_file_error("[trian]\nlr = 1\n", 1, "unknown section [trian] (did you mean [train]?");
  expect_set_error("trian.lr=1", "did you mean [train]?");
  expect_set_error("train.lerning_rate=1", "unknown key 'lerning_rate' in section [train]");
}

static void test_unknown_key(void) {
  expect_file_error("[train]\nlr = 0.1\n\n; c\n\nepochs = 3\nfoo = 1\n", 7,
                    "unknown key 'foo' in section [train]");
  /* A key in the wrong section points to the right one. */
  expect_file_error("[train]\ndropout = 0.1\n", 2, "[model] dropout");
}

static void test_unknown_section(void) {
  expect_file_error("[train]\nlr = 0.1\n[trian]\nepochs = 3\n", 3, "unknown section [trian]");
  /* Reported even when the section is empty (inih never calls back). */
  expect_file_error("[data]\n\n[trian]\n[train]\nlr = 0.1\n", 3, "unknown section [trian]");
}

static void test_bad_values(void) {
  expect_file_error("[train]\nepochs = 3\nlr = abc\n", 3, "[train] lr: expected a number > 0, got 'abc'");
  expect_file_error("[train]\nepochs = 0\n", 2, "[train] epochs: expected an integer >= 1, got '0'");
  expect_file_error("[model]\nhidden = 512,,2\n", 2, "[model] hidden: expected a comma-separated list");
  expect_file_error("[model]\n\ninit = foo\n", 3,
                    "[model] init: expected one of normal|xavier|he|orthogonal|torch, got 'foo'");
  expect_file_error("[model]\nhidden = 512,\n", 2, "[model] hidden");
  expect_file_error("[model]\nhidden = 512,0\n", 2, "[model] hidden");
  expect_file_error("[model]\nhidden = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n", 2, "[model] hidden");
  expect_file_error("[model]\nhidden = 5x\n", 2, "[model] hidden");
  expect_file_error("[model]\ndropout = 1\n", 2, "[model] dropout: expected a number in [0, 1)");
  expect_file_error("[train]\nlr = 0.1x\n", 2, "got '0.1x'");
  expect_file_error("[train]\nlr = nan\n", 2, "[train] lr");
  expect_file_error("[train]\nlr = 1e999\n", 2, "[train] lr");
  expect_file_error("[train]\nlr = 0\n", 2, "[train] lr");
  expect_file_error("[train]\nthreads = 257\n", 2, "[train] threads: expected an integer in [1, 256]");
  expect_file_error("[train]\nbatch = 1\n", 2, "[train] batch");
  expect_file_error("[train]\nepochs = 3.5\n", 2, "[train] epochs");
  expect_file_error("[train]\nepochs = 99999999999\n", 2, "[train] epochs");
  expect_file_error("[train]\nbn_momentum = 0\n", 2, "[train] bn_momentum: expected a number in (0, 1]");
  expect_file_error("[train]\nstep_gamma = 1.5\n", 2, "[train] step_gamma");
  expect_file_error("[train]\nnesterov = maybe\n", 2, "[train] nesterov: expected true or false");
  expect_file_error("[ensemble]\nseed = -1\n", 2, "[ensemble] seed");
  expect_file_error("[ensemble]\nseed = 18446744073709551616\n", 2, "[ensemble] seed");
  expect_file_error("[ensemble]\nshare_init = maybe\n", 2, "one of auto|true|false");
  expect_file_error("[output]\nprogress_interval = 0\n", 2, "[output] progress_interval");
  expect_file_error("[trunk]\nlayers = -1\n", 2, "[trunk] layers");
  /* A string that would read back as a comment after "key = " (fuzz_config). */
  expect_file_error("[data]\npath =;x.h5\n", 2, "[data] path: must not contain ';' or '#' at the start");
  /* Only the first error is reported. */
  expect_file_error("[train]\nepochs = 3\nlr = abc\nfoo = 1\n[bad]\n", 3, "[train] lr");
  expect_file_error("[train]\nbad line\nlr = abc\n", 2, "syntax error");
}

static void test_missing_file(void) {
  ens_config c;
  char err[1024] = "";
  int rc = ens_config_load(&c, "/nonexistent/dir/x.ini", NULL, 0, err, sizeof err);
  CU_ASSERT_EQUAL(rc, ENS_EIO);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot open config file '/nonexistent/dir/x.ini'"));
}

static void test_set(void) {
  tmp_ini t;
  ens_config c;
  char err[1024] = "";
  const char *sets[] = {"train.lr=0.2", "model.hidden = 64", " ensemble.mode=Bootstrap ", "train.lr=0.25",
                        "output.path=a b.h5"};
  int rc = load_text_sets(&t, "[train]\nlr = 0.1\nepochs = 7\n", sets, 5, &c, err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  %s\n", err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(c.lr, 0.25);
  CU_ASSERT_EQUAL(c.epochs, 7);
  CU_ASSERT_EQUAL(c.n_hidden, 1);
  CU_ASSERT_EQUAL(c.hidden[0], 64);
  CU_ASSERT_EQUAL(c.hidden[1], 0);
  CU_ASSERT_EQUAL(c.mode, ENS_MODE_BOOTSTRAP);
  CU_ASSERT_STRING_EQUAL(c.output_path, "a b.h5");

  /* A bad --set passed to load names the assignment. */
  const char *bad[] = {"train.lr=0.2", "train.foo=1"};
  rc = load_text_sets(&t, "[train]\n", bad, 2, &c, err, sizeof err);
  CU_ASSERT_EQUAL(rc, ENS_ECONFIG);
  CU_ASSERT_STRING_EQUAL(err, "--set train.foo=1: unknown key 'foo' in section [train] "
                              "(`ens train --help` lists every key)");

  expect_set_error("train.foo=1", "unknown key 'foo' in section [train]");
  expect_set_error("trian.lr=1", "unknown section [trian]");
  expect_set_error("train.lr=abc", "[train] lr: expected a number > 0, got 'abc'");
  expect_set_error("train.lr", "expected section.key=value");
  expect_set_error("trainlr=1", "expected section.key=value");
  expect_set_error(".lr=1", "expected section.key=value");
  expect_set_error("train.=1", "expected section.key=value");
  expect_set_error("output.path=a ;b", "[output] path");
  expect_set_error("output.path=a\nb", "[output] path");

  /* A failed --set leaves the config unchanged. */
  ens_config before;
  ens_config_defaults(&c);
  ens_config_defaults(&before);
  CU_ASSERT_NOT_EQUAL(ens_config_set(&c, "model.hidden=8,,8", err, sizeof err), 0);
  CU_ASSERT_NOT_EQUAL(ens_config_set(&c, "train.epochs=-3", err, sizeof err), 0);
  CU_ASSERT_EQUAL(memcmp(&c, &before, sizeof c), 0);

  /* Values at the edges of their ranges. */
  must_set(&c, "train.momentum=0");
  must_set(&c, "train.bn_momentum=1");
  must_set(&c, "train.threads=256");
  must_set(&c, "ensemble.seed=0");
  must_set(&c, "model.hidden=");
  CU_ASSERT_EQUAL(c.n_hidden, 0);
  must_set(&c, "ensemble.share_init=TRUE");
  CU_ASSERT_EQUAL(c.share_init, ENS_SHARE_YES);
  must_set(&c, "trunk.source=pretrain");
  CU_ASSERT_EQUAL(c.trunk_source, ENS_TRUNK_PRETRAIN);
}

static void test_validate(void) {
  ens_config c;
  char err[1024];

  ens_config_defaults(&c);
  must_set(&c, "ensemble.mode=snapshot");
  must_set(&c, "ensemble.members=10");
  must_set(&c, "ensemble.snapshots=3");
  expect_invalid(&c, "[ensemble] members = 10", "[ensemble] snapshots = 3");
  must_set(&c, "ensemble.members=9");
  CU_ASSERT_EQUAL(ens_config_validate(&c, err, sizeof err), 0);
  /* A job slice must hold whole chains. */
  must_set(&c, "ensemble.first_member=1");
  expect_invalid(&c, "first_member = 1", "snapshots = 3");
  must_set(&c, "ensemble.first_member=3");
  must_set(&c, "ensemble.count=3");
  CU_ASSERT_EQUAL(ens_config_validate(&c, err, sizeof err), 0);
  must_set(&c, "ensemble.first_member=0");
  must_set(&c, "ensemble.count=0");
  must_set(&c, "train.epochs=2");
  expect_invalid(&c, "[train] epochs = 2", "snapshots = 3");
  /* snapshots is ignored outside snapshot mode. */
  must_set(&c, "ensemble.mode=seed");
  must_set(&c, "ensemble.members=10");
  CU_ASSERT_EQUAL(ens_config_validate(&c, err, sizeof err), 0);

  ens_config_defaults(&c);
  must_set(&c, "trunk.source=pretrain");
  expect_invalid(&c, "[trunk] layers = 0", NULL);
  must_set(&c, "trunk.layers=3");
  expect_invalid(&c, "[trunk] layers = 3", "[model] hidden");
  must_set(&c, "trunk.layers=2");
  CU_ASSERT_EQUAL(ens_config_validate(&c, err, sizeof err), 0);
  must_set(&c, "trunk.source=file");
  expect_invalid(&c, "[trunk] file", NULL);
  must_set(&c, "trunk.file=pre.h5");
  CU_ASSERT_EQUAL(ens_config_validate(&c, err, sizeof err), 0);
  must_set(&c, "trunk.dataset=member:x");
  expect_invalid(&c, "[trunk] dataset", "member:x");
  must_set(&c, "trunk.dataset=ensemble");
  CU_ASSERT_EQUAL(ens_config_validate(&c, err, sizeof err), 0);

  ens_config_defaults(&c);
  must_set(&c, "ensemble.members=4");
  must_set(&c, "ensemble.first_member=4");
  expect_invalid(&c, "[ensemble] first_member = 4", "members = 4");
  must_set(&c, "ensemble.first_member=2");
  must_set(&c, "ensemble.count=3");
  expect_invalid(&c, "first_member + count", "members = 4");
  must_set(&c, "ensemble.count=2");
  CU_ASSERT_EQUAL(ens_config_validate(&c, err, sizeof err), 0);

  ens_config_defaults(&c);
  must_set(&c, "train.lr_min=0.1");
  expect_invalid(&c, "[train] lr_min", "[train] lr");

  /* Configs filled in by code are range-checked too. */
  ens_config_defaults(&c);
  c.threads = 0;
  expect_invalid(&c, "[train] threads = 0", "[1, 256]");
  ens_config_defaults(&c);
  c.combine = (ens_combine_kind)7;
  expect_invalid(&c, "[ensemble] combine", NULL);
}

#define SAME(f) CU_ASSERT(memcmp(&a->f, &b->f, sizeof a->f) == 0)
static void check_same(const ens_config *a, const ens_config *b) {
  SAME(data_path);
  SAME(standardize);
  SAME(val_fraction);
  SAME(n_hidden);
  SAME(hidden);
  SAME(batchnorm);
  SAME(dropout);
  SAME(init);
  SAME(init_std);
  SAME(bias_init);
  SAME(epochs);
  SAME(batch);
  SAME(lr);
  SAME(lr_min);
  SAME(momentum);
  SAME(nesterov);
  SAME(weight_decay);
  SAME(schedule);
  SAME(step_size);
  SAME(step_gamma);
  SAME(cycles);
  SAME(clip_value);
  SAME(clip_norm);
  SAME(threads);
  SAME(bn_momentum);
  SAME(members);
  SAME(mode);
  SAME(snapshots);
  SAME(combine);
  SAME(seed);
  SAME(share_init);
  SAME(first_member);
  SAME(count);
  SAME(trunk_source);
  SAME(trunk_file);
  SAME(trunk_dataset);
  SAME(trunk_layers);
  SAME(pretrain_epochs);
  SAME(output_path);
  SAME(checkpoint_dir);
  SAME(checkpoint_every);
  SAME(progress_interval);
  SAME(verbose);
  /* Both came from ens_config_defaults, which zeroes the padding. */
  CU_ASSERT(memcmp(a, b, sizeof *a) == 0);
}

/* to_ini, write, load: the same config, and the same text again. */
static void round_trip(const ens_config *a) {
  char *text = ens_config_to_ini(a);
  CU_ASSERT_PTR_NOT_NULL_FATAL(text);
  tmp_ini t;
  ens_config b;
  char err[1024] = "";
  int rc = load_text(&t, text, &b, err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  %s\n", err);
  CU_ASSERT_EQUAL(rc, 0);
  check_same(a, &b);
  char *again = ens_config_to_ini(&b);
  CU_ASSERT_PTR_NOT_NULL_FATAL(again);
  CU_ASSERT_STRING_EQUAL(text, again);
  free(again);
  free(text);
}

static void test_to_ini_round_trip(void) {
  ens_config a;
  ens_config_defaults(&a);
  char *text = ens_config_to_ini(&a);
  CU_ASSERT_PTR_NOT_NULL_FATAL(text);
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "[train]\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nlr = 0.05\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nhidden = 512,256\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nseed = 42\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nshare_init = auto\n"));
  free(text);
  round_trip(&a);

  /* The full file, then awkward values: doubles that need 17 digits, a
   * subnormal, -0, extreme integers, 16 layers, paths longer than inih's
   * 200-byte line buffer. */
  tmp_ini t;
  char err[1024] = "";
  CU_ASSERT_EQUAL_FATAL(load_text(&t, full_ini, &a, err, sizeof err), 0);
  round_trip(&a);
  a.lr = 0.1 + 0.2;
  a.weight_decay = 4.9406564584124654e-324;
  a.bias_init = -0.0;
  a.init_std = DBL_MAX;
  a.val_fraction = nextafter(1.0, 0.0);
  a.progress_interval = 1.0 / 3.0;
  a.epochs = 2147483647;
  a.seed = 12345678901234567ull;
  a.n_hidden = ENS_MAX_HIDDEN;
  for (int i = 0; i < ENS_MAX_HIDDEN; i++)
    a.hidden[i] = 1000000 + i;
  memset(a.checkpoint_dir, 'd', ENS_PATH_MAX - 1);
  a.checkpoint_dir[0] = '/';
  a.checkpoint_dir[ENS_PATH_MAX - 1] = '\0';
  memset(a.data_path, 0, sizeof a.data_path);
  for (int i = 0; i < 300; i++)
    a.data_path[i] = "abc/; =:#"[i % 9];
  a.data_path[0] = 'x';
  round_trip(&a);
  a.n_hidden = 0;
  memset(a.hidden, 0, sizeof a.hidden);
  memset(a.trunk_file, 0, sizeof a.trunk_file); /* strings compare bytewise here */
  round_trip(&a);
}

static void test_long_lines(void) {
  tmp_ini t;
  ens_config c;
  char err[2048] = "";
  char text[3000];
  char path[1100];
  memset(path, 'p', 600);
  path[0] = '/';
  path[600] = '\0';
  snprintf(text, sizeof text, "[data]\n  path =   %s   ; a comment\n[train]\nlr = 0.5\n", path);
  int rc = load_text(&t, text, &c, err, sizeof err);
  if (rc)
    fprintf(stderr, "\n  %s\n", err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_STRING_EQUAL(c.data_path, path);
  CU_ASSERT_EQUAL(c.lr, 0.5);
  /* Too long for the buffer: an error, not a truncation. */
  memset(path, 'p', 1050);
  path[1050] = '\0';
  snprintf(text, sizeof text, "[data]\npath = %s\n", path);
  expect_file_error(text, 2, "[data] path: expected at most 1023 characters");
  /* A long comment is fine; a long line without '=' is a syntax error. */
  snprintf(text, sizeof text, "[data]\n; %s\nstandardize = 0\n%s\n", path, path);
  expect_file_error(text, 4, "syntax error");
  /* A long value of a numeric key is still checked. */
  snprintf(text, sizeof text, "[train]\n\nlr = 0.1%s\n", path);
  expect_file_error(text, 3, "[train] lr: expected a number > 0");
}

static void test_print_keys(void) {
  FILE *f = tmpfile();
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  ens_config_print_keys(f);
  long n = ftell(f);
  CU_ASSERT_FATAL(n > 0);
  char *buf = calloc((size_t)n + 1, 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
  rewind(f);
  CU_ASSERT_EQUAL(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  CU_ASSERT_PTR_NOT_NULL(strstr(buf, "  [train] lr = 0.05 "));
  CU_ASSERT_PTR_NOT_NULL(strstr(buf, "learning rate (peak of the schedule)"));
  CU_ASSERT_PTR_NOT_NULL(strstr(buf, "[model] hidden = 512,256 "));
  CU_ASSERT_PTR_NOT_NULL(strstr(buf, "normal|xavier|he|orthogonal"));
  /* Every key the to_ini text has is listed. */
  ens_config c;
  ens_config_defaults(&c);
  char *ini = ens_config_to_ini(&c);
  CU_ASSERT_PTR_NOT_NULL_FATAL(ini);
  char section[64] = "", want[160];
  for (char *line = strtok(ini, "\n"); line; line = strtok(NULL, "\n")) {
    if (line[0] == '[') {
      snprintf(section, sizeof section, "%.*s", (int)(strchr(line, ']') - line + 1), line);
      continue;
    }
    snprintf(want, sizeof want, "%s %.*s =", section, (int)strcspn(line, " "), line);
    if (!strstr(buf, want))
      fprintf(stderr, "\n  '%s' missing from the key listing\n", want);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, want));
  }
  free(ini);
  free(buf);
}

static void test_names(void) {
  CU_ASSERT_STRING_EQUAL(ens_init_name(ENS_INIT_NORMAL), "normal");
  CU_ASSERT_STRING_EQUAL(ens_init_name(ENS_INIT_ORTHOGONAL), "orthogonal");
  CU_ASSERT_STRING_EQUAL(ens_init_name(ENS_INIT_TORCH), "torch");
  CU_ASSERT_STRING_EQUAL(ens_schedule_name(ENS_SCHED_STEP), "step");
  CU_ASSERT_STRING_EQUAL(ens_schedule_name(ENS_SCHED_CYCLIC), "cyclic");
  CU_ASSERT_STRING_EQUAL(ens_mode_name(ENS_MODE_BOOTSTRAP), "bootstrap");
  CU_ASSERT_STRING_EQUAL(ens_mode_name(ENS_MODE_SNAPSHOT), "snapshot");
  CU_ASSERT_STRING_EQUAL(ens_combine_name(ENS_COMBINE_VOTE), "vote");
  CU_ASSERT_STRING_EQUAL(ens_combine_name(ENS_COMBINE_PARAMS), "params");
  CU_ASSERT_STRING_EQUAL(ens_trunk_source_name(ENS_TRUNK_NONE), "none");
  CU_ASSERT_STRING_EQUAL(ens_trunk_source_name(ENS_TRUNK_PRETRAIN), "pretrain");
  CU_ASSERT_STRING_EQUAL(ens_combine_name((ens_combine_kind)42), "unknown");
}

/* Single keys by name. */
static void test_key_api(void) {
  ens_config c;
  char buf[64];
  ens_config_defaults(&c);
  CU_ASSERT_EQUAL(ens_config_key_text(&c, "train", "lr", buf, sizeof buf), 0);
  CU_ASSERT_STRING_EQUAL(buf, "0.05");
  CU_ASSERT_EQUAL(ens_config_key_text(&c, "train", "nope", buf, sizeof buf), ENS_ENOTFOUND);
  CU_ASSERT_EQUAL(ens_config_key_changed(&c, "train", "lr"), 0);
  c.lr = 0.1;
  c.n_hidden = 1;
  c.hidden[0] = 7;
  CU_ASSERT_EQUAL(ens_config_key_changed(&c, "train", "lr"), 1);
  CU_ASSERT_EQUAL(ens_config_key_changed(&c, "model", "hidden"), 1);
  CU_ASSERT_EQUAL(ens_config_key_reset(&c, "train", "lr"), 0);
  CU_ASSERT_EQUAL(ens_config_key_reset(&c, "model", "hidden"), 0);
  CU_ASSERT_EQUAL(c.lr, 0.05);
  CU_ASSERT_EQUAL(c.n_hidden, 2);
  CU_ASSERT_EQUAL(c.hidden[0], 512);
  CU_ASSERT_EQUAL(ens_config_key_reset(&c, "nope", "lr"), ENS_ENOTFOUND);
}

typedef struct {
  int n;
  char lines[8][160];
} diff_log;

static void log_diff(void *ctx, const char *section, const char *key, const char *a,
                     const char *b) {
  diff_log *d = ctx;
  if (d->n < 8)
    snprintf(d->lines[d->n], sizeof d->lines[0], "[%s] %s: %s | %s", section, key, a, b);
  d->n++;
}

/* Key-by-key comparison: every differing key once, [output] skippable. */
static void test_diff(void) {
  ens_config a, b;
  ens_config_defaults(&a);
  ens_config_defaults(&b);
  diff_log d = {0};
  CU_ASSERT_EQUAL(ens_config_diff(&a, &b, 0, log_diff, &d), 0);
  b.lr = 0.1;
  b.n_hidden = 1;
  snprintf(b.output_path, sizeof b.output_path, "other.h5");
  snprintf(b.search_lr, sizeof b.search_lr, "%s", "");
  CU_ASSERT_EQUAL(ens_config_diff(&a, &b, 0, log_diff, &d), 4);
  CU_ASSERT_EQUAL(d.n, 4);
  CU_ASSERT_STRING_EQUAL(d.lines[0], "[model] hidden: 512,256 | 512");
  CU_ASSERT_STRING_EQUAL(d.lines[1], "[train] lr: 0.05 | 0.1");
  CU_ASSERT_STRING_EQUAL(d.lines[2], "[search] lr: 0.03,0.15 | ");
  CU_ASSERT_STRING_EQUAL(d.lines[3], "[output] path: result.h5 | other.h5");
  CU_ASSERT_EQUAL(ens_config_diff(&a, &b, 1, NULL, NULL), 3);
  char *t = ens_config_diff_text(&a, &b, 1, "A", "B");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  CU_ASSERT_STRING_EQUAL(t, "[model] hidden = 512,256 (A) vs 512 (B); [train] lr = 0.05 (A) vs "
                            "0.1 (B); [search] lr = 0.03,0.15 (A) vs (empty) (B)");
  free(t);
  t = ens_config_diff_text(&a, &a, 0, "A", "B");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  CU_ASSERT_STRING_EQUAL(t, "");
  free(t);
  /* At most 8 keys, then a count. */
  b.epochs = 2, b.batch = 3, b.momentum = 0.5, b.weight_decay = 0, b.members = 4, b.seed = 1,
  b.threads = 2;
  t = ens_config_diff_text(&a, &b, 1, "A", "B");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  CU_ASSERT_PTR_NOT_NULL(strstr(t, "; and 2 more"));
  free(t);
}

typedef struct {
  int n;
  char last[1024];
} warn_log;

static void log_warn(void *ctx, const char *msg) {
  warn_log *w = ctx;
  w->n++;
  snprintf(w->last, sizeof w->last, "%s", msg);
}

/* Loads text, applies ens_config_effective; returns its code. */
static int effective(const char *text, ens_config *c, warn_log *w, char *err, size_t errlen) {
  tmp_ini t;
  memset(w, 0, sizeof *w);
  int rc = load_text(&t, text, c, err, errlen);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  return ens_config_effective(c, log_warn, w, err, errlen);
}

static void test_effective(void) {
  ens_config c;
  warn_log w;
  char err[1024] = "";
  /* Snapshot mode: schedule and cycles are what the chains run; other values
   * are contradictions. */
  CU_ASSERT_EQUAL(effective("[ensemble]\nmode = snapshot\nsnapshots = 4\nmembers = 4\n", &c,
                            &w, err, sizeof err), 0);
  CU_ASSERT_EQUAL(c.schedule, ENS_SCHED_CYCLIC);
  CU_ASSERT_EQUAL(c.cycles, 4);
  CU_ASSERT_EQUAL(w.n, 0);
  char *ini = ens_config_to_ini(&c);
  CU_ASSERT_PTR_NOT_NULL(strstr(ini, "schedule = cyclic\n"));
  free(ini);
  CU_ASSERT_EQUAL(effective("[train]\nschedule = step\n[ensemble]\nmode = snapshot\n", &c, &w,
                            err, sizeof err), ENS_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "[train] schedule = step contradicts [ensemble] mode = "
                                     "snapshot"));
  CU_ASSERT_EQUAL(effective("[train]\nschedule = cyclic\ncycles = 3\n[ensemble]\nmode = "
                            "snapshot\nsnapshots = 2\nmembers = 2\n", &c, &w, err, sizeof err),
                  ENS_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "[train] cycles = 3 contradicts"));
  CU_ASSERT_EQUAL(effective("[ensemble]\nsnapshots = 4\n", &c, &w, err, sizeof err),
                  ENS_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "[ensemble] snapshots = 4 applies only to mode = snapshot"));
  /* Unused keys: one warning each, defaults recorded. */
  CU_ASSERT_EQUAL(effective("[train]\nstep_size = 10\nbeta1 = 0.8\ncycles = 2\n", &c, &w, err,
                            sizeof err), 0);
  CU_ASSERT_EQUAL(w.n, 3);
  CU_ASSERT_EQUAL(c.step_size, 30);
  CU_ASSERT_EQUAL(c.beta1, 0.9);
  CU_ASSERT_EQUAL(c.cycles, 4);
  CU_ASSERT_EQUAL(effective("[train]\nschedule = step\nstep_size = 10\n", &c, &w, err,
                            sizeof err), 0);
  CU_ASSERT_EQUAL(w.n, 0);
  CU_ASSERT_EQUAL(c.step_size, 10);
  CU_ASSERT_EQUAL(effective("[train]\nschedule = constant\nlr_min = 0.01\n", &c, &w, err,
                            sizeof err), 0);
  CU_ASSERT_EQUAL(w.n, 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.last, "[train] lr_min = 0.01 is not used"));
  CU_ASSERT_EQUAL(c.lr_min, 0);
  CU_ASSERT_EQUAL(effective("[search]\nlr = 0.1,0.2\n", &c, &w, err, sizeof err), 0);
  CU_ASSERT_EQUAL(w.n, 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.last, "[search] lr = 0.1,0.2 is not used: [search] applies to "
                                        "mode = search"));
  CU_ASSERT_STRING_EQUAL(c.search_lr, "0.03,0.15");
  CU_ASSERT_EQUAL(effective("[trunk]\nlayers = 1\nfile = t.h5\n", &c, &w, err, sizeof err), 0);
  CU_ASSERT_EQUAL(w.n, 2);
  CU_ASSERT_EQUAL(c.trunk_layers, 0);
  CU_ASSERT_STRING_EQUAL(c.trunk_file, "");
  /* Adam: SGD keys unused; a search draws no momentum. */
  CU_ASSERT_EQUAL(effective("[train]\noptimizer = adam\nnesterov = false\n[ensemble]\nmode = "
                            "search\n", &c, &w, err, sizeof err), 0);
  CU_ASSERT_EQUAL(w.n, 1);
  CU_ASSERT_EQUAL(c.nesterov, 1);
  CU_ASSERT_STRING_EQUAL(c.search_momentum, "");
  /* A search replaces [train] lr: warned, kept; not when the [search] value is empty. */
  CU_ASSERT_EQUAL(effective("[train]\nlr = 0.2\n[ensemble]\nmode = search\n", &c, &w, err,
                            sizeof err), 0);
  CU_ASSERT_EQUAL(w.n, 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.last, "mode = search draws each member's lr from [search] lr"));
  CU_ASSERT_EQUAL(c.lr, 0.2);
  CU_ASSERT_EQUAL(effective("[train]\nlr = 0.2\n[ensemble]\nmode = search\n[search]\nlr =\n",
                            &c, &w, err, sizeof err), 0);
  CU_ASSERT_EQUAL(w.n, 0);
  /* Defaults everywhere: nothing to say, nothing changed. */
  ens_config d;
  ens_config_defaults(&d);
  CU_ASSERT_EQUAL(effective("[train]\n", &c, &w, err, sizeof err), 0);
  CU_ASSERT_EQUAL(w.n, 0);
  CU_ASSERT_EQUAL(ens_config_diff(&c, &d, 0, NULL, NULL), 0);
}

int main(void) {
  static const cu_case cases[] = {
      {"defaults", test_defaults},
      {"full file", test_full_file},
      {"syntax variants", test_syntax_variants},
      {"unknown key", test_unknown_key},
      {"duplicate key", test_duplicate_key},
      {"suggestions", test_suggestions},
      {"key text, changed, reset", test_key_api},
      {"diff", test_diff},
      {"effective configuration", test_effective},
      {"unknown section", test_unknown_section},
      {"bad values", test_bad_values},
      {"missing file", test_missing_file},
      {"--set", test_set},
      {"validate", test_validate},
      {"to_ini round trip", test_to_ini_round_trip},
      {"long lines", test_long_lines},
      {"print keys", test_print_keys},
      {"enum names", test_names},
      {NULL, NULL},
  };
  return cu_run_suite("config", cases);
}
