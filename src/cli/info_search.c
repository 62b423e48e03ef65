/* ens info: the rungs of a successive-halving search (/search). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/h5util.h"

/* A hyper-deep search (/search/hyper_deep_source): which configuration each
 * retrained member trains, with its seed key. */
static void info_hyperdeep(hid_t f, long long members) {
  if (!ens_h5_exists(f, "/search/hyper_deep_source") || members <= 0 || members > (1 << 20) ||
      ens_h5_size(f, "/search/hyper_deep_source", NULL, NULL) != members)
    return;
  int64_t K = 0, S = 0, M = 0;
  ens_h5_get_attr_i64(f, "/search", "hyper_deep", &K);
  ens_h5_get_attr_i64(f, "/search", "hyper_deep_configs", &S);
  ens_h5_get_attr_i64(f, "/search", "search_members", &M);
  int32_t *src = malloc((size_t)members * sizeof(int32_t));
  int32_t *picks = M > 0 && M <= members ? calloc((size_t)M, sizeof(int32_t)) : NULL;
  if (!src || !picks || ens_h5_read(f, "/search/hyper_deep_source", H5T_NATIVE_INT32, src,
                                    (size_t)members)) {
    free(src);
    free(picks);
    return;
  }
  if (ens_h5_read(f, "/search/hyper_deep_picks", H5T_NATIVE_INT32, picks, (size_t)M))
    memset(picks, 0, (size_t)M * sizeof(int32_t));
  printf("\n  hyper-deep: members 0-%lld are the search; the selection's first %lld "
         "configuration%s trained again with %lld new seed%s each\n",
         (long long)M - 1, (long long)S, S == 1 ? "" : "s", (long long)K, K == 1 ? "" : "s");
  printf("  %-8s %14s %8s %10s\n", "member", "configuration", "seed key", "picks");
  for (long long k = M; k < members; k++) {
    char grp[64];
    int64_t key = k;
    snprintf(grp, sizeof(grp), "/members/%lld", k);
    ens_h5_get_attr_i64(f, grp, "rng_key", &key);
    int s = src[k] >= 0 && src[k] < M ? src[k] : 0;
    printf("  %-8lld %14d %8lld %10d\n", k, src[k], (long long)key, picks[s]);
  }
  free(src);
  free(picks);
}

void ens_cli_info_search(hid_t f, long long first, long long members) {
  if (first == 0)
    info_hyperdeep(f, members);
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
