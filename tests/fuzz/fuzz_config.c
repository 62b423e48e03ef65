/* libFuzzer harness for the job configuration (src/core/config.c): the input
 * is INI text for ens_config_load_text; a loaded config is validated, written
 * back with ens_config_to_ini and loaded again, and the round trip must give
 * an identical ens_config (memcmp) — the contract result files rely on. Aborts
 * otherwise, or when an error comes without a message. The unit test
 * test_fuzz_regress calls the same entry point on saved inputs. */
#include "ens/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_ENTRY
#define FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int FUZZ_ENTRY(const uint8_t *data, size_t size);

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  ens_config a, b;
  char err[1024] = "";
  int rc = ens_config_load_text(&a, "fuzz.ini", text, err, sizeof err);
  if (rc != 0 && err[0] == '\0') {
    fprintf(stderr, "load failed (%d) without a message\n", rc);
    abort();
  }
  if (rc == 0) {
    char verr[1024] = "";
    if (ens_config_validate(&a, verr, sizeof verr) != 0 && verr[0] == '\0') {
      fprintf(stderr, "validate failed without a message\n");
      abort();
    }
    char *ini = ens_config_to_ini(&a);
    if (!ini)
      abort();
    err[0] = '\0';
    if (ens_config_load_text(&b, "round-trip.ini", ini, err, sizeof err) != 0) {
      fprintf(stderr, "the written config does not load: %s\n--- input\n%s\n--- written\n%s", err,
              text, ini);
      abort();
    }
    if (memcmp(&a, &b, sizeof a) != 0) {
      char *again = ens_config_to_ini(&b);
      fprintf(stderr,
              "round trip changed the config\n--- input\n%s\n--- written\n%s\n--- "
              "reloaded\n%s",
              text, ini, again ? again : "(no memory)");
      abort();
    }
    free(ini);
  }
  free(text);
  return 0;
}
