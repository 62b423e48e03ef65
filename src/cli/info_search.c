/* ens info: the rungs of a successive-halving search (/search). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "io/h5util.h"

void ens_cli_info_search(hid_t f, long long first, long long members) {
  if (!ens_h5_exists(f, "/search/rung_epochs") || members <= 0 || members > (1 << 20))
    return;
  long long R = ens_h5_size(f, "/search/rung_epochs", NULL, NULL);
  if (R <= 0 || R > 64 || ens_h5_size(f, "/search/rung_nll", NULL, NULL) != R * members)
    return;
  int32_t *ep = malloc((size_t)R * sizeof(int32_t)), *in = malloc((size_t)R * sizeof(int32_t));
  int32_t *st = malloc((size_t)members * sizeof(int32_t));
  int32_t *rung = malloc((size_t)members * sizeof(int32_t));
  int32_t *place = malloc((size_t)members * sizeof(int32_t));
  double *nll = malloc((size_t)(R * members) * sizeof(double));
  int64_t fac = 0, me = 0;
  if (!ep || !in || !st || !rung || !place || !nll ||
      ens_h5_read(f, "/search/rung_epochs", H5T_NATIVE_INT32, ep, (size_t)R) ||
      ens_h5_read(f, "/search/rung_members", H5T_NATIVE_INT32, in, (size_t)R) ||
      ens_h5_read(f, "/search/member_status", H5T_NATIVE_INT32, st, (size_t)members) ||
      ens_h5_read(f, "/search/member_rung", H5T_NATIVE_INT32, rung, (size_t)members) ||
      ens_h5_read(f, "/search/member_place", H5T_NATIVE_INT32, place, (size_t)members) ||
      ens_h5_read(f, "/search/rung_nll", H5T_NATIVE_DOUBLE, nll, (size_t)(R * members)))
    goto cleanup;
  ens_h5_get_attr_i64(f, "/search", "halving_factor", &fac);
  ens_h5_get_attr_i64(f, "/search", "member_epochs", &me);
  printf("\n  successive halving (factor %lld): %lld member-epochs in all\n  %-8s", (long long)fac,
         (long long)me, "rung");
  for (long long r = 0; r < R; r++)
    printf(" %10lld", r);
  printf("\n  %-8s", "epochs");
  for (long long r = 0; r < R; r++)
    printf(" %10d", ep[r]);
  printf("\n  %-8s", "members");
  for (long long r = 0; r < R; r++)
    printf(" %10d", in[r]);
  printf("\n\n  %-8s validation nll at the end of each rung, then the outcome\n", "member");
  for (long long i = 0; i < members; i++) {
    printf("  %-8lld", first + i);
    for (long long r = 0; r < R; r++) {
      double v = nll[i * R + r];
      if (isnan(v))
        printf(" %10s", "-");
      else
        printf(" %10.4f", v);
    }
    const char *what = st[i] == 0 ? "finished, combined" : st[i] == 1 ? "stopped" : "failed";
    if (st[i] == 1)
      printf("  %s at rung %d (place %d)\n", what, rung[i], place[i]);
    else
      printf("  %s\n", what);
  }
cleanup:
  free(ep);
  free(in);
  free(st);
  free(rung);
  free(place);
  free(nll);
}
