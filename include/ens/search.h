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
 * values must have passed ens_search_check. */
void ens_search_member_config(ens_config *out, const ens_config *c, int k);

/* 1 when members of a search can differ in architecture (hidden widths,
 * depth or batch norm), so that their parameters cannot be averaged. */
int ens_search_varies_arch(const ens_config *c);

/* Writes the hyperparameters a member used as "lr=0.05 weight_decay=..."
 * (the keys a search can draw), for messages and tables. */
void ens_search_describe(const ens_config *mc, char *buf, size_t len);

/* Prints the [search] keys' syntax, for `ens train --help`. */
void ens_search_print_help(FILE *out);

#endif
