/* Random hyperparameter search (Bergstra & Bengio 2012: random, not grid).
 * The [search] keys hold ranges as text; member k of a search draws its own
 * values from them with generators keyed by (seed, k, ENS_STREAM_SEARCH,
 * key), so a draw depends on nothing but the configuration and k. */
#ifndef ENS_SEARCH_H
#define ENS_SEARCH_H

#include <stddef.h>
#include <stdio.h>

#include "ens/config.h"

/* Checks the value of [search] `key` (lr, weight_decay, momentum, dropout,
 * batch, hidden, init, batchnorm). Returns 0, or ENS_ECONFIG with what was
 * expected in msg ("[search] lr: expected ..., got '...'"). An empty value
 * is valid: the key is not drawn. */
int ens_search_check(const char *key, const char *value, char *msg, size_t len);

/* *out = *c with member k's drawn hyperparameters in place of the [model] and
 * [train] values (mode = search); for other modes *out = *c. The [search]
 * values must have passed ens_search_check. It knows no input shape: with
 * the conv generator on, a caller that builds member k's network must use
 * ens_search_member_config_in (the depth rule needs the image's size). */
void ens_search_member_config(ens_config *out, const ens_config *c, int k);

/* 1 when members of a search can differ in architecture (hidden widths,
 * depth or batch norm), so that their parameters cannot be averaged. */
int ens_search_varies_arch(const ens_config *c);

/* Writes the hyperparameters a member used as "lr=0.05 weight_decay=..."
 * (the keys a search can draw), for messages and tables. */
void ens_search_describe(const ens_config *mc, char *buf, size_t len);

/* Prints the [search] keys' syntax, for `ens train --help`. */
void ens_search_print_help(FILE *out);

/* ---- the conv architecture generator (src/core/search_conv.c) ----------
 * [search] conv_blocks (non-empty, mode = search) turns it on: member k's
 * layer list is built from its own draws of depth, widths, kernel sizes,
 * batch norm, pooling and dense head (keys conv_blocks, conv_width,
 * conv_grow, conv_kernel, conv_per_block, conv_bn, pool, conv_end, dense),
 * each from (seed, k, ENS_STREAM_SEARCH, ENS_SEARCH_CONV_SUBSTREAM + key). */
#define ENS_SEARCH_CONV_SUBSTREAM 64 /* above every ens_search key's index */
#define ENS_SEARCH_CONV_MAX_BLOCKS 8

/* member k's draws */
typedef struct ens_search_conv_arch {
  int blocks, width, grow, per_block, bn, pool, end, dense;
  int kernel[ENS_SEARCH_CONV_MAX_BLOCKS];
  int clamped; /* bool: the image ruled out some conv_blocks values */
} ens_search_conv_arch;

/* As ens_search_member_config, for input rows of an h x w image (h = w = 0:
 * flat rows or shape unknown): with the generator on, out->model_layers is
 * member k's generated list, whose depth is at most what h x w allows. Every
 * caller that builds a member's network passes the image's h and w. */
void ens_search_member_config_in(ens_config *out, const ens_config *c, int k, int h, int w);

/* Checks the value of a generator key; as ens_search_check. */
int ens_search_conv_check(const char *key, const char *value, char *msg, size_t len);
/* 1 when the generator is on (mode = search and conv_blocks set). */
int ens_search_conv_on(const ens_config *c);
/* How many 2x2 poolings an h x w image takes: how many times h and w can
 * both be halved exactly (at most ENS_SEARCH_CONV_MAX_BLOCKS). */
int ens_search_conv_depth_limit(int h, int w);
/* 0, or ENS_ECONFIG with why when no member can be built on this input:
 * flat rows, or a lowest conv_blocks above ens_search_conv_depth_limit. */
int ens_search_conv_fit(const ens_config *c, int image, int h, int w, char *why, size_t len);
/* Member k's draws (h, w as for ens_search_member_config_in); -1 when the
 * generator is off. */
int ens_search_conv_draw(ens_search_conv_arch *a, const ens_config *c, int k, int h, int w);
/* The layer list of a draw, with "dropout P" before the output when
 * dropout > 0; -1 when it does not fit in len. */
int ens_search_conv_format(char *buf, size_t len, const ens_search_conv_arch *a, double dropout);
/* The generator keys' syntax, for `ens train --help`. */
void ens_search_conv_print_help(FILE *out);
/* "conv_blocks 1,3; conv_width 16,64; ..." of the keys set, for ens info. */
void ens_search_conv_describe(const ens_config *c, char *buf, size_t len);

#endif
