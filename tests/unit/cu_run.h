/* Shared CUnit runner and tolerance helpers for the unit test executables. */
#ifndef ENS_CU_RUN_H
#define ENS_CU_RUN_H

#include <CUnit/CUnit.h>
#include <stdio.h>

typedef struct {
  const char *name;
  CU_TestFunc fn;
} cu_case;

/* Registers one suite with the NULL-terminated cases and runs it with the
 * basic runner in verbose mode; returns the process exit status (0 = all
 * passed). */
int cu_run_suite(const char *suite, const cu_case *cases);

/* Fails the current test, printing both values, when |got - want| > tol. */
#define CU_CHECK_CLOSE(got, want, tol)                                                   \
  do {                                                                                   \
    double g_ = (double)(got), w_ = (double)(want), t_ = (double)(tol);                   \
    if (!(g_ - w_ <= t_ && w_ - g_ <= t_))                                               \
      fprintf(stderr, "\n  %s:%d: %s = %.9g, expected %.9g (tolerance %.3g)\n", __FILE__, \
              __LINE__, #got, g_, w_, t_);                                               \
    CU_ASSERT(g_ - w_ <= t_ && w_ - g_ <= t_);                                           \
  } while (0)

#endif
