/* Shared frozen trunk: loading or pretraining it, broadcasting it, and
 * computing its features once per node. */
#ifndef ENS_ENSEMBLE_TRUNK_H
#define ENS_ENSEMBLE_TRUNK_H

#include <stddef.h>

#include "ensemble/job.h"

/* Collective. Fills j->trunk and points j->data.ftrain/ftest/fval/fd at the
 * trunk features in the node-shared block j->trunk.shm (each rank of a node
 * computes a slice of them). Returns 0 or an ENS_E* code with a message. */
int ens_trunk_prepare(ens_job *j, char *err, size_t errlen);

/* A layer-list architecture's /model attributes in f: layer_list (the
 * canonical text) and input_channels/height/width; nothing for the MLP
 * form. Returns 0 or non-zero on an HDF5 failure. */
int ens_trunk_write_layer_list(hid_t f, const ens_arch *a);

/* Reads the first `layers` blocks of a trunk from `path`: which = "trunk"
 * (/trunk of an ens result or a PyTorch export), "ensemble" (/ensemble/params
 * of a result trained without a trunk) or "member:<k>". The file's /model
 * (inputs, hidden, batchnorm) must match arch's first `layers` blocks; a
 * mismatch is ENS_ESHAPE with both shapes in err. params and stats receive
 * ens_arch_sizes(arch, 0, layers, 0) values. Every message in err starts
 * with `label`: how the user named the file (e.g. "[trunk] file = <path>",
 * or the path itself). */
int ens_trunk_load_file(const char *path, const char *label, const char *which,
                        const ens_arch *arch, int layers, float *params, float *stats, char *err,
                        size_t errlen);

#endif
