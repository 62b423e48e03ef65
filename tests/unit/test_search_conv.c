/* The conv architecture generator of a search (src/core/search_conv.c):
 * value checks, the depth limit, draws keyed by (seed, k) alone, each key on
 * its own substream, and every generated list valid for its image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_run.h"
#include "ens/config.h"
#include "ens/error.h"
#include "ens/model.h"
#include "ens/search.h"

static void conv_config(ens_config *c) {
  ens_config_defaults(c);
  c->mode = ENS_MODE_SEARCH;
  snprintf(c->search_conv_blocks, sizeof c->search_conv_blocks, "1,4");
  snprintf(c->search_conv_width, sizeof c->search_conv_width, "8,64");
  snprintf(c->search_conv_kernel, sizeof c->search_conv_kernel, "3,5,7");
  snprintf(c->search_conv_per_block, sizeof c->search_conv_per_block, "1,2");
  snprintf(c->search_conv_bn, sizeof c->search_conv_bn, "true,false");
  snprintf(c->search_conv_grow, sizeof c->search_conv_grow, "true,false");
  snprintf(c->search_pool, sizeof c->search_pool, "max,avg");
  snprintf(c->search_conv_end, sizeof c->search_conv_end, "flatten,gap");
  snprintf(c->search_dense, sizeof c->search_dense, "0 | 32 | 128");
}

static void test_check(void) {
  char msg[512];
  const char *good[][2] = {{"conv_blocks", ""},          {"conv_blocks", "2"},
                           {"conv_blocks", " 1 , 8 "},   {"conv_width", "16,64"},
                           {"conv_width", "24 | 48"},     {"conv_width", "32"},
                           {"conv_kernel", "3, 5"},       {"conv_per_block", "1,2"},
                           {"conv_bn", "true, false"},    {"conv_grow", "no"},
                           {"pool", "avg"},               {"conv_end", "gap, flatten"},
                           {"dense", "0"},                {"dense", "0 | 64 | 256"},
                           {"dense", "64,256"}};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    int rc = ens_search_conv_check(good[i][0], good[i][1], msg, sizeof msg);
    if (rc)
      fprintf(stderr, "\n  %s = '%s' refused: %s\n", good[i][0], good[i][1], msg);
    CU_ASSERT_EQUAL(rc, 0);
  }
  const char *bad[][2] = {{"conv_blocks", "0,2"},   {"conv_blocks", "9"},
                          {"conv_blocks", "3,1"},   {"conv_blocks", "1,2,3"},
                          {"conv_blocks", "x"},     {"conv_width", ""},
                          {"conv_width", "64,16"},  {"conv_width", "0"},
                          {"conv_width", "8 | 8"},  {"conv_width", "1,2,4"},
                          {"conv_kernel", "4"},     {"conv_kernel", "3,,5"},
                          {"conv_kernel", "17"},    {"conv_per_block", "3"},
                          {"conv_bn", "maybe"},     {"pool", "min"},
                          {"pool", "max,max"},      {"conv_end", "dense"},
                          {"dense", "-1"},          {"dense", "0,64"},
                          {"nosuchkey", "1"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = ens_search_conv_check(bad[i][0], bad[i][1], msg, sizeof msg);
    if (!rc)
      fprintf(stderr, "\n  %s = '%s' accepted\n", bad[i][0], bad[i][1]);
    CU_ASSERT_EQUAL(rc, ENS_ECONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, bad[i][0]));
  }
}

static void test_depth_limit(void) {
  CU_ASSERT_EQUAL(ens_search_conv_depth_limit(28, 28), 2);
  CU_ASSERT_EQUAL(ens_search_conv_depth_limit(12, 12), 2);
  CU_ASSERT_EQUAL(ens_search_conv_depth_limit(8, 8), 3);
  CU_ASSERT_EQUAL(ens_search_conv_depth_limit(32, 16), 4);
  CU_ASSERT_EQUAL(ens_search_conv_depth_limit(7, 8), 0);
  CU_ASSERT_EQUAL(ens_search_conv_depth_limit(1, 1), 0);
  CU_ASSERT_EQUAL(ens_search_conv_depth_limit(1024, 1024), ENS_SEARCH_CONV_MAX_BLOCKS);
  ens_config c;
  char why[512];
  conv_config(&c);
  CU_ASSERT_EQUAL(ens_search_conv_fit(&c, 1, 12, 12, why, sizeof why), 0);
  CU_ASSERT_EQUAL(ens_search_conv_fit(&c, 0, 1, 1, why, sizeof why), ENS_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(why, "image rows"));
  CU_ASSERT_EQUAL(ens_search_conv_fit(&c, 1, 7, 7, why, sizeof why), ENS_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(why, "7x7 input can be halved exactly 0 times"));
  snprintf(c.search_conv_blocks, sizeof c.search_conv_blocks, "3,4");
  CU_ASSERT_EQUAL(ens_search_conv_fit(&c, 1, 12, 12, why, sizeof why), ENS_ECONFIG);
  CU_ASSERT_EQUAL(ens_search_conv_fit(&c, 1, 8, 8, why, sizeof why), 0);
  c.mode = ENS_MODE_SEED; /* off outside a search */
  CU_ASSERT_EQUAL(ens_search_conv_fit(&c, 0, 0, 0, why, sizeof why), 0);
  CU_ASSERT_EQUAL(ens_search_conv_on(&c), 0);
}

static int is_pow2_multiple(int v, int lo) {
  while (v > lo && v % 2 == 0)
    v /= 2;
  return v == lo;
}

/* Draws of many members: deterministic, within their candidates, every
 * candidate reached, the depth within what the image allows. */
static void test_draws(void) {
  ens_config c;
  conv_config(&c);
  int seen_blocks[9] = {0}, seen_kernel[8] = {0}, seen_width[65] = {0}, seen_dense[129] = {0};
  int seen_end[2] = {0}, seen_pool[2] = {0}, seen_bn[2] = {0}, seen_pb[3] = {0};
  for (int k = 0; k < 400; k++) {
    ens_search_conv_arch a, b;
    CU_ASSERT_EQUAL(ens_search_conv_draw(&a, &c, k, 12, 12), 0);
    CU_ASSERT_EQUAL(ens_search_conv_draw(&b, &c, k, 12, 12), 0);
    CU_ASSERT_EQUAL(memcmp(&a, &b, sizeof a), 0);
    CU_ASSERT(a.blocks >= 1 && a.blocks <= 2); /* 12x12: at most 2 */
    CU_ASSERT(a.clamped);
    CU_ASSERT(a.width >= 8 && a.width <= 64 && is_pow2_multiple(a.width, 8));
    CU_ASSERT(a.dense == 0 || a.dense == 32 || a.dense == 128);
    for (int i = 0; i < a.blocks; i++) {
      CU_ASSERT(a.kernel[i] == 3 || a.kernel[i] == 5 || a.kernel[i] == 7);
      seen_kernel[a.kernel[i]]++;
    }
    seen_blocks[a.blocks]++;
    seen_width[a.width]++;
    seen_dense[a.dense]++;
    seen_end[a.end]++;
    seen_pool[a.pool]++;
    seen_bn[a.bn]++;
    seen_pb[a.per_block]++;
    /* Without the image: the whole range. */
    ens_search_conv_draw(&b, &c, k, 0, 0);
    CU_ASSERT(b.blocks >= 1 && b.blocks <= 4);
    seen_blocks[b.blocks] += 1000;
  }
  CU_ASSERT(seen_blocks[1] && seen_blocks[2] && seen_blocks[3] >= 1000 && seen_blocks[4] >= 1000);
  CU_ASSERT(seen_kernel[3] && seen_kernel[5] && seen_kernel[7]);
  CU_ASSERT(seen_width[8] && seen_width[16] && seen_width[32] && seen_width[64]);
  CU_ASSERT(seen_dense[0] && seen_dense[32] && seen_dense[128]);
  CU_ASSERT(seen_end[0] && seen_end[1] && seen_pool[0] && seen_pool[1]);
  CU_ASSERT(seen_bn[0] && seen_bn[1] && seen_pb[1] && seen_pb[2]);
  /* Log-uniform over the powers of two: each of 4 widths about 100 of 400. */
  for (int w = 8; w <= 64; w *= 2)
    CU_ASSERT(seen_width[w] > 60 && seen_width[w] < 140);
}

/* Each key has its own substream: changing one key's value leaves the
 * other keys' draws alone; another seed draws otherwise. */
static void test_substreams(void) {
  ens_config c, d;
  conv_config(&c);
  conv_config(&d);
  snprintf(d.search_conv_kernel, sizeof d.search_conv_kernel, "1,9");
  snprintf(d.search_dense, sizeof d.search_dense, "16,64");
  int differ_kernel = 0;
  for (int k = 0; k < 50; k++) {
    ens_search_conv_arch a, b;
    ens_search_conv_draw(&a, &c, k, 8, 8);
    ens_search_conv_draw(&b, &d, k, 8, 8);
    CU_ASSERT(a.blocks == b.blocks && a.width == b.width && a.grow == b.grow &&
              a.per_block == b.per_block && a.bn == b.bn && a.pool == b.pool && a.end == b.end);
    differ_kernel += a.kernel[0] != b.kernel[0];
  }
  CU_ASSERT(differ_kernel > 0);
  d = c;
  d.seed = c.seed + 1;
  int differ = 0;
  for (int k = 0; k < 20; k++) {
    ens_search_conv_arch a, b;
    ens_search_conv_draw(&a, &c, k, 8, 8);
    ens_search_conv_draw(&b, &d, k, 8, 8);
    differ += memcmp(&a, &b, sizeof a) != 0;
  }
  CU_ASSERT(differ > 10);
}

/* Every member's list parses, passes shape inference on its image, and
 * carries the member's dropout exactly (as a float); the member config of
 * the search draws it. */
static void test_lists_fit(void) {
  ens_config c;
  conv_config(&c);
  snprintf(c.search_dropout, sizeof c.search_dropout, "0.05,0.3");
  const int sizes[][3] = {{1, 12, 12}, {3, 8, 8}, {1, 28, 28}, {2, 32, 16}, {1, 6, 10}};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    ens_shape in = {.c = sizes[s][0], .h = sizes[s][1], .w = sizes[s][2], .image = 1};
    for (int k = 0; k < 60; k++) {
      ens_config mc;
      ens_arch a;
      char why[256];
      ens_search_member_config_in(&mc, &c, k, in.h, in.w);
      CU_ASSERT(mc.model_layers[0] != '\0');
      ens_arch_from_config_shape(&a, &mc, in, ENS_HEAD_SOFTMAX, 3);
      CU_ASSERT(a.nspec > 0);
      int rc = ens_arch_check(&a, why, sizeof why);
      if (rc)
        fprintf(stderr, "\n  %dx%d member %d: '%s': %s\n", in.h, in.w, k, mc.model_layers, why);
      CU_ASSERT_EQUAL(rc, 0);
      CU_ASSERT(mc.dropout >= 0.05 && mc.dropout <= 0.3);
      CU_ASSERT_EQUAL(a.spec[a.nspec - 1].kind, ENS_LAYER_DROPOUT);
      CU_ASSERT(a.spec[a.nspec - 1].p == (float)mc.dropout);
    }
  }
  /* Other modes, or conv_blocks empty: the config is left as it is. */
  ens_config mc;
  c.mode = ENS_MODE_SEED;
  ens_search_member_config_in(&mc, &c, 3, 12, 12);
  CU_ASSERT_EQUAL(mc.model_layers[0], '\0');
  c.mode = ENS_MODE_SEARCH;
  c.search_conv_blocks[0] = '\0';
  ens_search_member_config_in(&mc, &c, 3, 12, 12);
  CU_ASSERT_EQUAL(mc.model_layers[0], '\0');
  CU_ASSERT_EQUAL(ens_search_varies_arch(&c), 1); /* [search] hidden default */
}

/* The longest lists the keys allow fit a layer list. */
static void test_longest(void) {
  ens_search_conv_arch a = {.blocks = ENS_SEARCH_CONV_MAX_BLOCKS, .width = 4096, .grow = 1,
                            .per_block = 2, .bn = 1, .pool = 1, .end = 0, .dense = 65536};
  for (int b = 0; b < ENS_SEARCH_CONV_MAX_BLOCKS; b++)
    a.kernel[b] = 15;
  char buf[ENS_LAYERS_MAX];
  CU_ASSERT_EQUAL(ens_search_conv_format(buf, sizeof buf, &a, 0.123456789), 0);
  ens_arch arch;
  char why[256];
  CU_ASSERT_EQUAL(ens_layers_parse(buf, &arch, why, sizeof why), 0);
  CU_ASSERT(arch.nspec <= ENS_MAX_LAYERS);
  CU_ASSERT_EQUAL(ens_search_conv_format(buf, 40, &a, 0), -1); /* too small a buffer */
}

typedef struct {
  int n;
  char all[4096];
} warns;
static void on_warn(void *ctx, const char *m) {
  warns *w = ctx;
  w->n++;
  strncat(w->all, m, sizeof w->all - strlen(w->all) - 2);
  strcat(w->all, "\n");
}

/* The effective configuration: the generator's contradictions are errors,
 * the MLP keys it replaces are unused (one warning each), and its keys
 * outside a search or without conv_blocks are unused too. */
static void test_effective(void) {
  ens_config c;
  char err[1024];
  warns w = {0};
  const char *base = "[ensemble]\nmode = search\n[search]\nconv_blocks = 1,2\n";
  char text[1024];
  snprintf(text, sizeof text, "%s[model]\nhidden = 8\ndropout = 0.2\n", base);
  CU_ASSERT_EQUAL(ens_config_load_text(&c, "t.ini", text, err, sizeof err), 0);
  CU_ASSERT_EQUAL(ens_config_effective(&c, on_warn, &w, err, sizeof err), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.all, "[model] hidden = 8 is not used: [search] conv_blocks"));
  CU_ASSERT_PTR_NULL(strstr(w.all, "draws each member's hidden"));
  CU_ASSERT_PTR_NULL(strstr(w.all, "[model] dropout = 0.2 is not used"));
  CU_ASSERT(ens_search_conv_on(&c));
  snprintf(text, sizeof text, "%s[model]\nlayers = conv 4 3, flatten\n", base);
  CU_ASSERT_EQUAL(ens_config_load_text(&c, "t.ini", text, err, sizeof err), 0);
  CU_ASSERT_EQUAL(ens_config_effective(&c, NULL, NULL, err, sizeof err), ENS_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "[model] layers cannot be used as well"));
  snprintf(text, sizeof text, "%s[trunk]\nsource = pretrain\nlayers = 1\n", base);
  CU_ASSERT_EQUAL(ens_config_load_text(&c, "t.ini", text, err, sizeof err), 0);
  CU_ASSERT_EQUAL(ens_config_effective(&c, NULL, NULL, err, sizeof err), ENS_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "a [trunk] cannot fix its first layers"));
  memset(&w, 0, sizeof w);
  CU_ASSERT_EQUAL(ens_config_load_text(&c, "t.ini", "[ensemble]\nmode = search\n[search]\n"
                                       "conv_kernel = 5\n", err, sizeof err), 0);
  CU_ASSERT_EQUAL(ens_config_effective(&c, on_warn, &w, err, sizeof err), 0);
  CU_ASSERT_EQUAL(w.n, 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.all, "[search] conv_kernel = 5 is not used"));
  CU_ASSERT_STRING_EQUAL(c.search_conv_kernel, "3");
}

int main(void) {
  const cu_case cases[] = {{"values: accepted and refused by key", test_check},
                           {"depth limit and fit", test_depth_limit},
                           {"draws: deterministic, in range, every candidate", test_draws},
                           {"one substream per key", test_substreams},
                           {"every member's list fits its image", test_lists_fit},
                           {"the longest list fits", test_longest},
                           {"effective configuration", test_effective},
                           {NULL, NULL}};
  return cu_run_suite("search_conv", cases);
}
