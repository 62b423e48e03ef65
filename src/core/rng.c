/* Philox4x32-10 counter-based generator and the draws built on it
 * (uniform, normal, bounded integers, permutations). */
#include "ens/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void ens_philox4x32(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = (uint32_t)p1;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = (uint32_t)p0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

void ens_rng_init(ens_rng *r, uint64_t seed, uint32_t member, uint32_t stream,
                  uint32_t substream) {
  r->key[0] = (uint32_t)seed;
  r->key[1] = (uint32_t)(seed >> 32);
  r->ctr[0] = 0;
  r->ctr[1] = substream;
  r->ctr[2] = stream;
  r->ctr[3] = member;
  r->pos = 4;
}

uint32_t ens_rng_u32(ens_rng *r) {
  if (r->pos >= 4) {
    ens_philox4x32(r->buf, r->ctr, r->key);
    r->ctr[0]++;
    r->pos = 0;
  }
  return r->buf[r->pos++];
}

uint64_t ens_rng_u64(ens_rng *r) {
  uint64_t hi = ens_rng_u32(r);
  return (hi << 32) | ens_rng_u32(r);
}

double ens_rng_uniform(ens_rng *r) {
  return (double)(ens_rng_u64(r) >> 11) * 0x1.0p-53;
}

double ens_rng_normal(ens_rng *r) {
  /* 1 - u lies in (0, 1], so the logarithm is finite. */
  double u1 = 1.0 - ens_rng_uniform(r);
  double u2 = ens_rng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint32_t ens_rng_below(ens_rng *r, uint32_t n) {
  /* Lemire, "Fast random integer generation in an interval", 2019. */
  uint64_t m = (uint64_t)ens_rng_u32(r) * n;
  uint32_t low = (uint32_t)m;
  if (low < n) {
    uint32_t threshold = (uint32_t)(-n) % n;
    while (low < threshold) {
      m = (uint64_t)ens_rng_u32(r) * n;
      low = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

void ens_rng_permutation(ens_rng *r, int32_t *perm, int n) {
  for (int i = 0; i < n; i++)
    perm[i] = i;
  for (int i = n - 1; i > 0; i--) {
    int j = (int)ens_rng_below(r, (uint32_t)(i + 1));
    int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

void ens_rng_seek(ens_rng *r, uint32_t block) {
  r->ctr[0] = block;
  r->pos = 4;
}
