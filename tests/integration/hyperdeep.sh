# Hyper-deep ensembles ([search] hyper_deep, src/ensemble/hyperdeep.c): after
# the search's members, the configurations the selection ranks first are
# trained again with new seeds in the same job. Checks: the member ->
# configuration and seed record (/search, /members/<k> source and rng_key),
# the search's members bitwise those of the plain search, the combining
# weights (each configuration's picks spread over its seeds), results
# identical on 1, 2 and 3 ranks and across a stop inside the retraining
# phase, ens predict / info / merge on the result, and bad keys giving one
# error naming job.ini:line and the key.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 1500 16 4
cat >job.ini <<INI
[data]
path = $WORK/data.h5
val_fraction = 0.2
[train]
epochs = 6
schedule = cosine
[ensemble]
members = 6
mode = search
combine = select
calibrate = temperature
seed = 7
[search]
lr = 0.003,0.3
hidden = 32 | 16,16 | 64
batch = 32,64
hyper_deep = 2
hyper_deep_configs = 2
[output]
path = result.h5
verbose = 1
INI
run_np 0 one -c "$WORK/job.ini" || fail "hyper-deep on 1 rank"
for np in 2 3; do
  run_np $np "np$np" -c "$WORK/job.ini" || fail "hyper-deep on $np ranks"
  same_result one/result.h5 "np$np/result.h5" || fail "hyper-deep: 1 and $np ranks differ"
done
echo "ok: hyper-deep identical on 1, 2 and 3 ranks"
grep -q "^hyper-deep: selection .*retraining configurations .* with 2 new seeds each as members 6-9" one/log ||
  { cat one/log; fail "no hyper-deep line"; }

# The plain search: the same six members, bit for bit, and the same selection.
run_np 2 plain -c "$WORK/job.ini" --set search.hyper_deep=0 || fail "plain search"
$PY - one/result.h5 plain/result.h5 <<'PY' || fail "hyper-deep record"
import sys, h5py, numpy as np
h, p = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
M, S, K = 6, 2, 2
N = M + S * K
assert h.attrs["members"] == N and h.attrs["members_total"] == N
s = h["/search"]
assert s.attrs["hyper_deep"] == K and s.attrs["hyper_deep_configs"] == S
src = s["hyper_deep_source"][...]
picks = s["hyper_deep_picks"][...]
assert src[:M].tolist() == list(range(M)), src
# The selection between the phases is the plain search's selection.
assert np.array_equal(picks, p["/ensemble/picks"][...]), (picks, p["/ensemble/picks"][...])
# Ranked by picks (more first), then validation nll, then index.
vnll = p["/metrics/member_val_nll"][...]
order = sorted(range(M), key=lambda k: (-picks[k], vnll[k], k))
chosen = [int(src[M + s * K]) for s in range(S)]
assert chosen == order[:S], (chosen, order, picks)
for k in range(N):
    g = h["/members/%d" % k]
    assert g.attrs["source"] == src[k], (k, g.attrs["source"], src[k])
    assert g.attrs["rng_key"] == k and g.attrs["init_key"] == k, k  # new seeds: keyed (seed, k)
    sg = h["/members/%d" % src[k]]
    for a in ("lr", "weight_decay", "momentum", "dropout", "batch", "hidden"):
        assert sg.attrs[a] == g.attrs[a], (k, a)      # the configuration it retrains
    if k < M:
        for d in ("params", "bn_stats"):
            assert np.array_equal(g[d][...], p["/members/%d/%s" % (k, d)][...]), (k, d)
    else:
        assert not np.array_equal(g["params"][...], sg["params"][...]), k  # another seed
for d in ("probs", "val_probs"):
    assert np.array_equal(h["/members/" + d][:M], p["/members/" + d][...]), d
# Weights: each configuration's picks (at least 1 when retrained) spread
# evenly over its members; the plain search's other selected members keep theirs.
w = h["/ensemble/weights"][...].astype(np.float64)
wp = p["/ensemble/weights"][...].astype(np.float64)
base = picks.astype(np.float64).copy()
for c in chosen:
    base[c] = max(base[c], 1)
want = np.zeros(N)
for k in range(N):
    want[k] = base[src[k]] / (src == src[k]).sum()
want /= want.sum()
assert np.abs(w - want).max() < 1e-6, (w, want)
for c in chosen:
    assert (w[src == c] > 0).all() and np.ptp(w[src == c]) < 1e-7, (c, w)
# The ensemble is the weighted mean of the members' rows, then calibrated:
# uncalibrated, it equals the weighted mean.
print("record ok: chosen", chosen, "picks", picks.tolist(), "weights", np.round(w, 4).tolist())
PY
echo "ok: member -> configuration and seed recorded; search members equal the plain search's"

# ens info, predict, merge.
"$ENS" info one/result.h5 >info.txt || fail "ens info"
grep -q "hyper-deep" info.txt || { cat info.txt; fail "ens info says nothing of hyper-deep"; }
"$ENS" predict -m one/result.h5 -i data.h5 -o pred.h5 >/dev/null || fail "predict on a hyper-deep result"
h5diff --exclude-attribute /ensemble/probs one/result.h5 pred.h5 /ensemble/probs /probs ||
  fail "predict /probs differs from the hyper-deep result's ensemble"
"$ENS" merge one/result.h5 -o merged.h5 >/dev/null || fail "ens merge of a whole hyper-deep result"
same_result one/result.h5 merged.h5 || fail "merged hyper-deep result differs"
echo "ok: ens info, predict and merge on a hyper-deep result"

# Regression: the selection on the Gaussian NLL; 1 and 2 ranks identical;
# ens predict reproduces the ensemble's mean.
$PY "$SRC/tests/integration/make_regression.py" reg.h5 900 2 3
for np in 0 2; do
  run_np $np "reg$np" -c "$WORK/job.ini" --set data.path="$WORK/reg.h5" --set search.lr=0.001,0.03 ||
    fail "regression hyper-deep on $np ranks"
done
same_result reg0/result.h5 reg2/result.h5 || fail "regression hyper-deep: 1 and 2 ranks differ"
$PY - reg0/result.h5 <<'PY' || fail "regression hyper-deep record"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    src = f["/search/hyper_deep_source"][...]
    assert len(src) == 10 and src[:6].tolist() == list(range(6)), src
    w = f["/ensemble/weights"][...]
    assert (w[6:] > 0).all(), w
PY
"$ENS" predict -m reg0/result.h5 -i reg.h5 -o regpred.h5 >/dev/null || fail "predict on a regression hyper-deep result"
h5diff --exclude-attribute /ensemble/mean reg0/result.h5 regpred.h5 /ensemble/mean /mean ||
  fail "predict /mean differs from the regression hyper-deep result's ensemble"
echo "ok: regression hyper-deep identical on 1 and 2 ranks; predict reproduces it"

# A stop inside the retraining phase (member 8 part-way), resumed on 1 rank.
run_np 2 full -c "$WORK/job.ini" --set train.epochs=30 || fail "uninterrupted 30-epoch run"
rm -rf stop
mkdir -p stop
(cd stop && exec mpirun -np 2 "$ENS" train -c "$WORK/job.ini" --set train.epochs=30) >stop/log 2>&1 &
pid=$!
stop_at "^\[member [6-9]\] epoch 3/30" stop/log $pid
code=0
wait $pid || code=$?
[ $code = 75 ] || { cat stop/log; fail "exit $code after USR1 in the retraining phase, expected 75"; }
grep -q "^hyper-deep: selection" stop/log || { cat stop/log; fail "the stop was not in the retraining phase"; }
[ ! -e stop/result.h5 ] || fail "a result after the stop"
ls stop/result.h5.ckpt/member_0.h5 >/dev/null || fail "no member checkpoints after the stop"
run_np 0 stop -c "$WORK/job.ini" --set train.epochs=30 --resume || fail "resume in the retraining phase"
same_result full/result.h5 stop/result.h5 || fail "resumed in the retraining phase: result differs"
[ ! -d stop/result.h5.ckpt ] || { ls stop/result.h5.ckpt; fail "checkpoints left after the resumed run"; }
echo "ok: stop in the retraining phase (2 ranks) + --resume on 1 rank identical"

# Bad keys: one error naming job.ini:line and the key, exit 1. bad NAME
# BASE KEY PATTERN SECTION.KEY=VALUE...: BASE.ini with the values set; @L in
# PATTERN is the line of KEY in the written file.
grep -vE "^(lr|hidden|batch) = " job.ini >nosearch.ini # the mode check without unused-key warnings
bad() {
  local name=$1 base=$2 key=$3 pattern=$4 code line
  shift 4
  cp "$base.ini" "$name.ini"
  for kv in "$@"; do
    $PY - "$name.ini" "$kv" <<'PY'
import sys, re
path, kv = sys.argv[1], sys.argv[2]
sec, rest = kv.split(".", 1)
key, val = rest.split("=", 1)
out, cur, done = [], None, False
for l in open(path).read().splitlines():
    m = re.match(r"\[(\w+)\]", l)
    if m:
        cur = m.group(1)
    if cur == sec and re.match(r"%s\s*=" % key, l):
        l = "%s = %s" % (key, val); done = True
    out.append(l)
if not done:
    out.insert(out.index("[%s]" % sec) + 1, "%s = %s" % (key, val))
open(path, "w").write("\n".join(out) + "\n")
PY
  done
  line=$(grep -n "^$key = " "$name.ini" | cut -d: -f1)
  code=$(run2 "$name" -c "$WORK/$name.ini")
  [ "$code" = 1 ] || { cat "$name/log"; fail "$name: exit $code, expected 1"; }
  one_error "$name" "$name.ini:$line: ${pattern}"
  [ ! -e "$name/result.h5" ] || fail "$name: a result was written"
}
bad mode nosearch hyper_deep '\[search\] hyper_deep = 2 needs \[ensemble\] mode = search' ensemble.mode=bootstrap
bad combine job hyper_deep '\[search\] hyper_deep = 2 needs \[ensemble\] combine = select' ensemble.combine=average
bad negative job hyper_deep '.*hyper_deep' search.hyper_deep=-1
bad toomany job hyper_deep '\[search\] hyper_deep = 9: expected' search.hyper_deep=9
bad configs job hyper_deep_configs '\[search\] hyper_deep_configs = 7: expected .*1 \.\. \[ensemble\] members = 6' search.hyper_deep_configs=7
bad zero job hyper_deep_configs '.*hyper_deep_configs' search.hyper_deep_configs=0
bad halving job hyper_deep '\[search\] hyper_deep = 2 with \[search\] halving = true' search.halving=true
bad slice job hyper_deep '\[search\] hyper_deep = 2 with a slice of the members' ensemble.count=3
echo "ok: bad hyper-deep keys refused with file:line and key"
