/* cu_run_suite: register and run one CUnit suite, exit status = failures. */
#include "cu_run.h"

#include <CUnit/Basic.h>

int cu_run_suite(const char *suite, const cu_case *cases) {
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 2;
  CU_pSuite s = CU_add_suite(suite, NULL, NULL);
  if (!s)
    return 2;
  for (const cu_case *c = cases; c->name; c++)
    if (!CU_add_test(s, c->name, c->fn))
      return 2;
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  unsigned run = CU_get_number_of_tests_run();
  CU_cleanup_registry();
  return (failed || run == 0) ? 1 : 0;
}
