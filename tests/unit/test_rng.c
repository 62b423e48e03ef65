/* Unit tests of src/core/rng.c: the Philox4x32-10 block function against the
 * Random123 known answers, the addressing of (seed, member, stream,
 * substream), and the statistics of the derived draws. Every generator is
 * keyed, so each statistical check is deterministic; the bounds are still set
 * at several standard errors so that a correct generator passes for any key. */
#include "ens/rng.h"

#include "cu_run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Fails the test, printing both blocks, unless got == want word for word. */
static void check_block(const uint32_t got[4], const uint32_t want[4], const char *what) {
  int same = memcmp(got, want, 4 * sizeof(uint32_t)) == 0;
  if (!same)
    fprintf(stderr, "\n  %s: got {%08x %08x %08x %08x}, expected {%08x %08x %08x %08x}\n", what,
            got[0], got[1], got[2], got[3], want[0], want[1], want[2], want[3]);
  CU_ASSERT(same);
}

static void test_philox_kat(void) {
  /* Random123 kat_vectors, philox4x32_10 (Salmon et al. 2011). */
  const uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
  const uint32_t w0[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
  const uint32_t c1[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
  const uint32_t k1[2] = {0xffffffffu, 0xffffffffu};
  const uint32_t w1[4] = {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu};
  /* The digits of pi vector: distinct words catch swapped lanes. */
  const uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u};
  const uint32_t k2[2] = {0xa4093822u, 0x299f31d0u};
  const uint32_t w2[4] = {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u};
  uint32_t out[4];
  ens_philox4x32(out, c0, k0);
  check_block(out, w0, "philox(ctr 0, key 0)");
  ens_philox4x32(out, c1, k1);
  check_block(out, w1, "philox(ctr ~0, key ~0)");
  ens_philox4x32(out, c2, k2);
  check_block(out, w2, "philox(ctr pi, key pi)");
}

static void test_stream_layout(void) {
  /* The documented counter layout: ctr = {block, substream, stream, member},
   * key = the 64-bit seed, low word first; words come out in block order. */
  const uint64_t seed = 0x0123456789abcdefULL;
  ens_rng r;
  ens_rng_init(&r, seed, 7, ENS_STREAM_TEST, 11);
  const uint32_t key[2] = {0x89abcdefu, 0x01234567u};
  for (uint32_t block = 0; block < 3; block++) {
    const uint32_t ctr[4] = {block, 11, ENS_STREAM_TEST, 7};
    uint32_t want[4], got[4];
    ens_philox4x32(want, ctr, key);
    for (int i = 0; i < 4; i++)
      got[i] = ens_rng_u32(&r);
    check_block(got, want, "ens_rng_u32 block");
  }
  /* u64 is two consecutive words, the first one high. */
  ens_rng a, b;
  ens_rng_init(&a, 5, 0, ENS_STREAM_TEST, 0);
  ens_rng_init(&b, 5, 0, ENS_STREAM_TEST, 0);
  for (int i = 0; i < 10; i++) {
    uint64_t hi = ens_rng_u32(&a);
    uint64_t lo = ens_rng_u32(&a);
    CU_ASSERT_EQUAL(ens_rng_u64(&b), (hi << 32) | lo);
  }
}

static void test_reproducible(void) {
  ens_rng a, b;
  ens_rng_init(&a, 42, 3, ENS_STREAM_DROPOUT, 1000);
  ens_rng_init(&b, 42, 3, ENS_STREAM_DROPOUT, 1000);
  int same = 1;
  for (int i = 0; i < 10000; i++) {
    same &= ens_rng_u32(&a) == ens_rng_u32(&b);
    same &= ens_rng_uniform(&a) == ens_rng_uniform(&b);
    same &= ens_rng_normal(&a) == ens_rng_normal(&b);
    same &= ens_rng_below(&a, 1000) == ens_rng_below(&b, 1000);
  }
  CU_ASSERT(same);
  /* Re-initializing restarts the sequence. */
  ens_rng_init(&a, 42, 3, ENS_STREAM_DROPOUT, 1000);
  ens_rng_init(&b, 42, 3, ENS_STREAM_DROPOUT, 1000);
  uint32_t first = ens_rng_u32(&a);
  for (int i = 0; i < 5; i++)
    ens_rng_u32(&a);
  ens_rng_init(&a, 42, 3, ENS_STREAM_DROPOUT, 1000);
  CU_ASSERT_EQUAL(ens_rng_u32(&a), first);
  CU_ASSERT_EQUAL(ens_rng_u32(&b), first);
}

#define NSEQ 256
/* Number of positions at which the first NSEQ words of two streams agree. */
static int agreements(ens_rng *a, ens_rng *b) {
  int same = 0;
  for (int i = 0; i < NSEQ; i++)
    same += ens_rng_u32(a) == ens_rng_u32(b);
  return same;
}

/* Pearson correlation of n paired uniforms from a and b. */
static double correlation(ens_rng *a, ens_rng *b, int n) {
  double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
  for (int i = 0; i < n; i++) {
    double u = ens_rng_uniform(a), v = ens_rng_uniform(b);
    sa += u;
    sb += v;
    saa += u * u;
    sbb += v * v;
    sab += u * v;
  }
  double cov = sab / n - (sa / n) * (sb / n);
  double va = saa / n - (sa / n) * (sa / n), vb = sbb / n - (sb / n) * (sb / n);
  return cov / sqrt(va * vb);
}

static void test_independent_streams(void) {
  /* Each key differs from the base in one coordinate, including neighbours
   * (substream 0 vs 1) and the high word of the seed. */
  const struct {
    uint64_t seed;
    uint32_t member, stream, sub;
  } keys[] = {
      {42, 0, ENS_STREAM_SHUFFLE, 0},          /* base */
      {43, 0, ENS_STREAM_SHUFFLE, 0},          /* seed */
      {42 + (1ULL << 32), 0, ENS_STREAM_SHUFFLE, 0}, /* high seed word */
      {42, 1, ENS_STREAM_SHUFFLE, 0},          /* member */
      {42, 0, ENS_STREAM_DROPOUT, 0},          /* stream */
      {42, 0, ENS_STREAM_SHUFFLE, 1},          /* substream */
  };
  const int nk = (int)(sizeof(keys) / sizeof(keys[0]));
  const int n = 100000;
  const double bound = 4.0 / sqrt((double)n);
  for (int i = 0; i < nk; i++)
    for (int j = i + 1; j < nk; j++) {
      ens_rng a, b;
      ens_rng_init(&a, keys[i].seed, keys[i].member, keys[i].stream, keys[i].sub);
      ens_rng_init(&b, keys[j].seed, keys[j].member, keys[j].stream, keys[j].sub);
      /* Two independent 32-bit streams agree on a word with probability 2^-32. */
      int same = agreements(&a, &b);
      if (same > 1)
        fprintf(stderr, "\n  keys %d and %d agree on %d of %d words\n", i, j, same, NSEQ);
      CU_ASSERT(same <= 1);
      ens_rng_init(&a, keys[i].seed, keys[i].member, keys[i].stream, keys[i].sub);
      ens_rng_init(&b, keys[j].seed, keys[j].member, keys[j].stream, keys[j].sub);
      double rho = correlation(&a, &b, n);
      if (fabs(rho) > bound)
        fprintf(stderr, "\n  keys %d and %d: correlation %.5f, bound %.5f\n", i, j, rho, bound);
      CU_ASSERT(fabs(rho) <= bound);
    }
}

static void test_uniform_moments(void) {
  ens_rng r;
  ens_rng_init(&r, 2024, 0, ENS_STREAM_TEST, 0);
  const int n = 1000000;
  double s = 0, ss = 0, lo = 1, hi = 0;
  for (int i = 0; i < n; i++) {
    double u = ens_rng_uniform(&r);
    s += u;
    ss += u * u;
    lo = u < lo ? u : lo;
    hi = u > hi ? u : hi;
  }
  double mean = s / n, var = ss / n - mean * mean;
  /* sd of the mean = sqrt(1/12 / n) = 2.9e-4; of the variance = sqrt(1/180 / n)
   * = 7.5e-5. Bounds are about 7 standard errors. */
  CU_CHECK_CLOSE(mean, 0.5, 2e-3);
  CU_CHECK_CLOSE(var, 1.0 / 12.0, 5e-4);
  CU_ASSERT(lo >= 0.0);
  CU_ASSERT(hi < 1.0);
  CU_ASSERT(lo < 1e-4 && hi > 1.0 - 1e-4);
}

static void test_normal_moments(void) {
  ens_rng r;
  ens_rng_init(&r, 7, 2, ENS_STREAM_TEST, 5);
  const int n = 1000000;
  double s = 0, s2 = 0, s3 = 0, s4 = 0;
  int beyond2 = 0, finite = 1;
  for (int i = 0; i < n; i++) {
    double z = ens_rng_normal(&r);
    finite &= isfinite(z) != 0;
    s += z;
    s2 += z * z;
    s3 += z * z * z;
    s4 += z * z * z * z;
    beyond2 += fabs(z) > 2.0;
  }
  CU_ASSERT(finite);
  double mean = s / n, var = s2 / n - mean * mean;
  /* sd(mean) = 1e-3, sd(var) = sqrt(2/n) = 1.4e-3, sd(skew) = sqrt(15/n) = 3.9e-3,
   * sd(E z^4) = sqrt(96/n) = 9.8e-3; bounds about 6 standard errors. */
  CU_CHECK_CLOSE(mean, 0.0, 6e-3);
  CU_CHECK_CLOSE(var, 1.0, 9e-3);
  CU_CHECK_CLOSE(s3 / n, 0.0, 0.025);
  CU_CHECK_CLOSE(s4 / n, 3.0, 0.06);
  /* P(|z| > 2) = 0.0455003; sd of the fraction = 2.1e-4. */
  CU_CHECK_CLOSE((double)beyond2 / n, 0.0455003, 1.3e-3);
}

static void test_below_unbiased(void) {
  ens_rng r;
  ens_rng_init(&r, 99, 0, ENS_STREAM_TEST, 1);
  enum { K = 10 };
  const int n = 200000;
  long count[K] = {0};
  int in_range = 1;
  for (int i = 0; i < n; i++) {
    uint32_t v = ens_rng_below(&r, K);
    in_range &= v < K;
    if (v < K)
      count[v]++;
  }
  CU_ASSERT(in_range);
  double chi2 = 0.0, e = (double)n / K;
  for (int k = 0; k < K; k++)
    chi2 += (count[k] - e) * (count[k] - e) / e;
  /* 9 degrees of freedom: P(chi2 > 35) < 1e-4. */
  if (chi2 > 35.0)
    fprintf(stderr, "\n  chi-square of ens_rng_below(10) = %.2f (9 dof)\n", chi2);
  CU_ASSERT(chi2 <= 35.0);

  /* n = 3 * 2^30 is where a biased reduction shows most: 2^32 mod n = 2^30,
   * so without rejection a quarter of the draws land twice on a third of the
   * outputs. Plain modulo would give P(v < n/3) = 1/2, plain multiply-shift
   * P(v % 3 == 0) = 1/2; unbiased, both are 1/3 (sd 1.05e-3 here). */
  const uint32_t big = 0xC0000000u;
  long low = 0, mult3 = 0;
  in_range = 1;
  for (int i = 0; i < n; i++) {
    uint32_t v = ens_rng_below(&r, big);
    in_range &= v < big;
    low += v < big / 3;
    mult3 += v % 3 == 0;
  }
  CU_ASSERT(in_range);
  CU_CHECK_CLOSE((double)low / n, 1.0 / 3.0, 6e-3);
  CU_CHECK_CLOSE((double)mult3 / n, 1.0 / 3.0, 6e-3);

  /* Edge bounds. */
  int ok = 1;
  for (int i = 0; i < 1000; i++) {
    ok &= ens_rng_below(&r, 1) == 0;
    ok &= ens_rng_below(&r, 2) < 2;
    ok &= ens_rng_below(&r, 0xffffffffu) < 0xffffffffu;
  }
  CU_ASSERT(ok);
}

static int is_permutation(const int32_t *p, int n) {
  char *seen = calloc((size_t)(n > 0 ? n : 1), 1);
  int ok = seen != NULL;
  for (int i = 0; ok && i < n; i++) {
    if (p[i] < 0 || p[i] >= n || seen[p[i]])
      ok = 0;
    else
      seen[p[i]] = 1;
  }
  free(seen);
  return ok;
}

static void test_permutation(void) {
  const int sizes[] = {1, 2, 3, 10, 1000, 100003};
  ens_rng r;
  for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
    int n = sizes[s];
    int32_t *p = malloc((size_t)n * sizeof(int32_t));
    int32_t *q = malloc((size_t)n * sizeof(int32_t));
    CU_ASSERT_FATAL(p && q);
    ens_rng_init(&r, 1, 0, ENS_STREAM_SHUFFLE, (uint32_t)s);
    ens_rng_permutation(&r, p, n);
    CU_ASSERT(is_permutation(p, n));
    /* Same key, same permutation. */
    ens_rng_init(&r, 1, 0, ENS_STREAM_SHUFFLE, (uint32_t)s);
    ens_rng_permutation(&r, q, n);
    CU_ASSERT(memcmp(p, q, (size_t)n * sizeof(int32_t)) == 0);
    if (n >= 1000) { /* and it actually shuffles */
      int fixed = 0;
      for (int i = 0; i < n; i++)
        fixed += p[i] == i;
      CU_ASSERT(fixed < 10); /* expected 1 fixed point */
    }
    free(p);
    free(q);
  }

  /* All 6 permutations of 3 elements are equally likely: chi-square, 5 dof,
   * P(chi2 > 30) < 2e-5. The index of a permutation is 2 p[0] + (p[1] > p[2]). */
  enum { TRIALS = 60000 };
  long count[6] = {0};
  ens_rng_init(&r, 3, 0, ENS_STREAM_TEST, 0);
  for (int t = 0; t < TRIALS; t++) {
    int32_t p[3];
    ens_rng_permutation(&r, p, 3);
    count[2 * p[0] + (p[1] > p[2])]++;
  }
  double chi2 = 0.0, e = TRIALS / 6.0;
  for (int k = 0; k < 6; k++)
    chi2 += (count[k] - e) * (count[k] - e) / e;
  if (chi2 > 30.0)
    fprintf(stderr, "\n  chi-square of permutations of 3 = %.2f (5 dof)\n", chi2);
  CU_ASSERT(chi2 <= 30.0);

  /* Different epochs (substreams) give different orders. */
  int32_t a[100], b[100];
  ens_rng_init(&r, 1, 0, ENS_STREAM_SHUFFLE, 0);
  ens_rng_permutation(&r, a, 100);
  ens_rng_init(&r, 1, 0, ENS_STREAM_SHUFFLE, 1);
  ens_rng_permutation(&r, b, 100);
  CU_ASSERT(memcmp(a, b, sizeof(a)) != 0);
}

int main(void) {
  static const cu_case cases[] = {
      {"philox4x32-10 known answers", test_philox_kat},
      {"counter layout of a stream", test_stream_layout},
      {"same key, same sequence", test_reproducible},
      {"different keys are independent", test_independent_streams},
      {"uniform mean and variance", test_uniform_moments},
      {"normal moments", test_normal_moments},
      {"below is unbiased", test_below_unbiased},
      {"permutation", test_permutation},
      {NULL, NULL},
  };
  return cu_run_suite("rng", cases);
}
