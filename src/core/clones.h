/* ENS_CLONES: an element-wise kernel compiled twice, for baseline x86-64
 * (SSE2, what the build targets so that one binary runs on a mixed cluster)
 * and for AVX2; the dynamic loader picks the clone the CPU runs (GCC/clang
 * function multiversioning, an ifunc resolved once).
 *
 * Only for loops whose every output element is its own chain of IEEE
 * operations (no reassociated reductions): "avx2" does not enable FMA, and
 * ISO C mode (-std=c11) keeps -ffp-contract=off, so each element sees the
 * same operations in the same order in both clones and the results are the
 * same to the bit on every machine. */
#ifndef ENS_CORE_CLONES_H
#define ENS_CORE_CLONES_H

#if defined(__x86_64__) && defined(__has_attribute) && !defined(ENS_NO_CLONES)
#if __has_attribute(target_clones)
#define ENS_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef ENS_CLONES
#define ENS_CLONES
#endif

#endif
