/* Counter-based random numbers (Philox4x32-10, Salmon et al. 2011, SC'11).
 * A generator is keyed by (seed, member, stream, substream): the same key
 * always yields the same sequence, different keys are independent, and no
 * state is shared between members or ranks. Substreams make a sequence
 * addressable (e.g. the shuffle of epoch e, the dropout masks of step t), so
 * a resumed run regenerates exactly what an uninterrupted one would draw. */
#ifndef ENS_RNG_H
#define ENS_RNG_H

#include <stdint.h>

/* Stream identifiers: one per purpose, so draws never overlap. */
enum ens_rng_stream {
  ENS_STREAM_INIT = 1,      /* weight initialization; substream = layer */
  ENS_STREAM_SHUFFLE = 2,   /* data order; substream = epoch */
  ENS_STREAM_DROPOUT = 3,   /* dropout masks; substream = global step */
  ENS_STREAM_BOOTSTRAP = 4, /* bootstrap resample; substream = 0 */
  ENS_STREAM_SPLIT = 5,     /* validation split (member-independent) */
  ENS_STREAM_SEARCH = 6,    /* hyperparameter search draws; substream = key */
  ENS_STREAM_MC = 7,        /* MC-dropout masks; substream = pass * 64 + layer,
                               block = row * ceil(width / 4) */
  ENS_STREAM_AUGMENT = 8,   /* image augmentation; substream = epoch, block = data row */
  ENS_STREAM_SELECT = 9,    /* bagged selection: members of bag b; substream = b */
  ENS_STREAM_TEST = 99      /* reserved for tests */
};

typedef struct ens_rng {
  uint32_t key[2];  /* the 64-bit seed */
  uint32_t ctr[4];  /* ctr[0] block index, ctr[1] substream, ctr[2] stream, ctr[3] member */
  uint32_t buf[4];  /* outputs of the current block */
  int pos;          /* next unused word of buf; 4 = block exhausted */
} ens_rng;

/* Initializes r for the given key; no allocation. */
void ens_rng_init(ens_rng *r, uint64_t seed, uint32_t member, uint32_t stream,
                  uint32_t substream);
/* One Philox4x32-10 block: out = philox(key, ctr). Exposed for tests. */
void ens_philox4x32(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]);
uint32_t ens_rng_u32(ens_rng *r);
/* Moves to block `block` of the sequence (the next draw is its first word). */
void ens_rng_seek(ens_rng *r, uint32_t block);
uint64_t ens_rng_u64(ens_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double ens_rng_uniform(ens_rng *r);
/* Standard normal (Box-Muller on two uniforms; no cached second value so the
 * state stays a pure counter). */
double ens_rng_normal(ens_rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias (Lemire 2019). */
uint32_t ens_rng_below(ens_rng *r, uint32_t n);
/* Fills perm with a uniformly random permutation of 0..n-1 (Fisher-Yates). */
void ens_rng_permutation(ens_rng *r, int32_t *perm, int n);

#endif
