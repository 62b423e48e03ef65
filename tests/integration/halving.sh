# Successive halving of a search ([search] halving, src/ensemble/halving.c):
# the rungs and the stopped members are recorded in /search and on each
# member, stopped members are never combined, a member that reaches the last
# rung has bitwise the weights of the same member of the plain search (the
# schedule spans [train] epochs), halving_schedule = rungs restarts the
# cosine at each rung, results are identical on 1, 2 and 3 ranks
# and across a stop between two rungs and a stop inside a rung, and bad
# halving keys give one error naming job.ini:line and the key.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 1500 16 4
cat >job.ini <<INI
[data]
path = $WORK/data.h5
val_fraction = 0.2
[model]
hidden = 32
[train]
epochs = 8
batch = 32
schedule = cosine
[ensemble]
members = 8
mode = search
combine = average
seed = 7
[search]
lr = 0.003,0.3
hidden = 32 | 16,16 | 64
batch = 32,64
halving = true
halving_min_epochs = 2
halving_factor = 2
[output]
path = result.h5
verbose = 1
INI
run_np 0 one -c "$WORK/job.ini" || fail "halving on 1 rank"
for np in 2 3; do
  run_np $np "np$np" -c "$WORK/job.ini" || fail "halving on $np ranks"
  same_result one/result.h5 "np$np/result.h5" || fail "halving: 1 and $np ranks differ"
done
for pol in cost modulo; do
  run_np 3 "$pol" -c "$WORK/job.ini" --set output.placement=$pol || fail "halving, placement $pol"
  same_result one/result.h5 "$pol/result.h5" || fail "halving: placement $pol on 3 ranks differs"
done
echo "ok: halving identical on 1, 2 and 3 ranks (queue), and under the cost and modulo placements"
grep -q "successive halving: rung 0 (epoch 2): 8 members ranked" one/log ||
  { cat one/log; fail "no ranking line for rung 0"; }

# The record, the ranking rule and the combination.
$PY - one/result.h5 <<'PY' || fail "halving record"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    s = f["/search"]
    ep, entered = s["rung_epochs"][...], s["rung_members"][...]
    assert ep.tolist() == [2, 4, 8], ep
    assert entered.tolist() == [8, 4, 2], entered
    nll, st, rung, place = s["rung_nll"][...], s["member_status"][...], s["member_rung"][...], s["member_place"][...]
    assert nll.shape == (8, 3), nll.shape
    assert (st == 0).sum() == 2 and (st == 1).sum() == 6, st
    # Rung r ranks the members that entered it: the kept ones (ranked
    # first by nll, ties to the lower index) have no larger nll.
    for r in range(2):
        inr = [k for k in range(8) if not np.isnan(nll[k, r])]
        assert len(inr) == entered[r], (r, inr)
        order = sorted(inr, key=lambda k: (nll[k, r], k))
        keep = max(1, len(inr) // 2)
        for i, k in enumerate(order):
            if i < keep:
                assert rung[k] > r, (r, k, rung[k])
            else:
                assert rung[k] == r and st[k] == 1 and place[k] == i + 1, (r, k, rung[k], st[k], place[k])
    assert s.attrs["member_epochs"] == sum(ep[rung[k]] for k in range(8)), s.attrs["member_epochs"]
    w = f["/ensemble/weights"][...]
    m = f["/metrics/ensemble"].attrs
    assert m["members_stopped"] == 6 and m["members_failed"] == 0 and m["members_done"] == 2
    probs = f["/members/probs"][...]
    fin = [k for k in range(8) if st[k] == 0]
    for k in range(8):
        g = f["/members/%d" % k]
        status = g.attrs["status"]
        status = status.decode() if isinstance(status, bytes) else status
        assert g.attrs["rung"] == rung[k]
        if st[k] == 1:
            assert status == "stopped" and w[k] == 0 and "params" not in g, (k, status, w[k])
            assert g.attrs["epochs"] == ep[rung[k]], (k, g.attrs["epochs"])
            assert np.isnan(probs[k]).all()
        else:
            assert status == "done" and abs(w[k] - 0.5) < 1e-7 and g.attrs["epochs"] == 8, (k, w[k])
    # The ensemble is the average of the finished members only.
    avg = probs[fin].astype(np.float64).mean(axis=0)
    assert np.abs(f["/ensemble/probs"][...] - avg).max() < 1e-6
print("record ok: finished", fin)
PY
"$ENS" info one/result.h5 >info.txt || fail "ens info"
grep -q "successive halving (factor 2)" info.txt && grep -q "stopped at rung 0" info.txt ||
  { cat info.txt; fail "ens info lacks the rung table"; }
echo "ok: rungs, ranking and stopped members recorded; only finished members combined"

# A finished member is the same member of the plain search, bit for bit.
run_np 2 plain -c "$WORK/job.ini" --set search.halving=false || fail "plain search"
fin=$($PY -c "import h5py; f=h5py.File('one/result.h5','r'); print(' '.join(str(k) for k,s in enumerate(f['/search/member_status'][...]) if s==0))")
for k in $fin; do
  for d in params bn_stats curve_train_loss curve_eval; do
    h5diff --exclude-attribute "/members/$k/$d" one/result.h5 plain/result.h5 "/members/$k/$d" "/members/$k/$d" ||
      fail "member $k: /members/$k/$d differs from the plain search's"
  done
done
$PY - one/result.h5 plain/result.h5 "$fin" <<'PY' || fail "finished members' rows"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
for k in map(int, sys.argv[3].split()):
    for d in ("probs", "val_probs"):
        assert np.array_equal(a["/members/" + d][k], b["/members/" + d][k]), (k, d)
PY
echo "ok: finished members ($fin) bitwise equal to the plain search's members"

# A stop at the boundary of rung 0 and rung 1. On 1 rank the units train
# one after the other in a fixed order, so the last unit to reach epoch 10
# in rung 0 is known from an uninterrupted run; USR1 sent when it prints its
# epoch 10 line reaches ens while that unit checkpoints at the rung (its
# last step is done), before any unit of rung 1 takes a step: the stop lands
# on the boundary, before or just after the ranking of rung 0.
run_np 0 full40 -c "$WORK/job.ini" --set train.epochs=40 --set search.halving_min_epochs=10 ||
  fail "uninterrupted 40-epoch run"
last=$(sed -n '/successive halving: rung 0/q; s/^\[member \([0-9]*\)\] epoch 10\/40.*/\1/p' full40/log | tail -n 1)
[ -n "$last" ] || { cat full40/log; fail "no member reached epoch 10 before the ranking of rung 0"; }
landed=""
for attempt in 1 2 3; do
  rm -rf stop
  mkdir -p stop
  mkfifo stop/pipe
  (cd stop && exec "$ENS" train -c "$WORK/job.ini" --set train.epochs=40 \
    --set search.halving_min_epochs=10) >stop/pipe 2>&1 &
  pid=$!
  while IFS= read -r line; do
    printf '%s\n' "$line" >>stop/log
    [[ $line == "[member $last] epoch 10/40"* ]] && kill -USR1 "$pid"
  done <stop/pipe
  code=0
  wait $pid || code=$?
  [ $code = 75 ] || { cat stop/log; fail "exit $code after USR1 at the rung boundary, expected 75"; }
  # Where it landed: every unit checkpointed at epoch 10 exactly (rung 0
  # ranked or not yet).
  landed=$($PY - stop/result.h5.ckpt <<'PY'
import sys, glob, os, h5py
d = sys.argv[1]
units = sorted(glob.glob(d + "/unit_*.h5"))
at = []
for u in units:
    with h5py.File(u, "r") as f:
        at.append((int(f.attrs["epoch"]), int(f.attrs["batch_in_epoch"])))
decided = 0
if os.path.exists(d + "/halving.h5"):
    with h5py.File(d + "/halving.h5", "r") as f:
        decided = int(f.attrs["decided"])
if len(units) == 8 and all(a == (10, 0) for a in at):
    print("boundary-ranked" if decided == 1 else "boundary-unranked")
else:
    print("elsewhere:%d:%s" % (decided, at))
PY
)
  [[ $landed == boundary* ]] && break
  echo "attempt $attempt: the stop landed $landed; again"
done
[[ $landed == boundary* ]] || { cat stop/log; fail "the stop never landed on the boundary of rung 0 and 1"; }
echo "the stop landed on the rung boundary: $landed (every unit checkpointed at epoch 10)"
run_np 2 stop -c "$WORK/job.ini" --set train.epochs=40 --set search.halving_min_epochs=10 --resume ||
  fail "resume after the boundary stop"
if [ "$landed" = boundary-ranked ]; then
  grep -q "training rung 1 (epoch 20)" stop/log || { cat stop/log; fail "resume did not start at rung 1"; }
fi
same_result full40/result.h5 stop/result.h5 || fail "resumed after the boundary stop: result differs"
[ ! -d stop/result.h5.ckpt ] || { ls stop/result.h5.ckpt; fail "checkpoints left after the resumed run"; }
echo "ok: stop on the rung boundary + --resume on 2 ranks identical to an uninterrupted run"

# Stop inside rung 1 (a unit part-way through), resume on 3 ranks.
rm -rf mid
mkdir -p mid
(cd mid && exec mpirun -np 2 "$ENS" train -c "$WORK/job.ini" --set train.epochs=40 \
  --set search.halving_min_epochs=10) >mid/log 2>&1 &
pid=$!
stop_at "epoch 13/40" mid/log $pid
code=0
wait $pid || code=$?
[ $code = 75 ] || { cat mid/log; fail "exit $code after USR1 inside rung 1, expected 75"; }
grep -q "stopped between rung" mid/log && fail "the stop inside rung 1 landed at a boundary"
run_np 3 mid -c "$WORK/job.ini" --set train.epochs=40 --set search.halving_min_epochs=10 --resume ||
  fail "resume after the stop inside rung 1"
same_result full40/result.h5 mid/result.h5 || fail "resumed inside rung 1: result differs"
echo "ok: stop inside rung 1 + --resume on 3 ranks identical"

# halving_schedule = rungs: each member's cosine restarts at every rung and
# anneals at its end. The verbose log prints the learning rate of each
# epoch's last step: it rises from rung 0's last epoch to rung 1's first (a
# restart), which one cosine over the run never does. Identical on 1 and 3
# ranks and across a stop inside rung 1 resumed on 2 ranks.
R="--set train.epochs=40 --set search.halving_min_epochs=10 --set search.halving_schedule=rungs"
run_np 0 rung1 -c "$WORK/job.ini" $R || fail "halving_schedule = rungs on 1 rank"
run_np 3 rung3 -c "$WORK/job.ini" $R || fail "halving_schedule = rungs on 3 ranks"
same_result rung1/result.h5 rung3/result.h5 || fail "halving_schedule = rungs: 1 and 3 ranks differ"
$PY - rung1/log rung1/result.h5 full40/result.h5 <<'PY' || fail "halving_schedule = rungs: schedule"
import re, sys, h5py, numpy as np
lr = {}
for line in open(sys.argv[1]):
    m = re.match(r"\[member (\d+)\] epoch (\d+)/40 .* lr ([0-9.e+-]+)$", line.strip())
    if m:
        lr[int(m.group(1)), int(m.group(2))] = float(m.group(3))
went_on = [k for k in range(8) if (k, 11) in lr]
assert len(went_on) == 4, went_on   # the 4 members kept at rung 0 restart at epoch 11
for k in went_on:
    assert lr[k, 11] > 10 * lr[k, 10], (k, lr[k, 10], lr[k, 11])
for k in range(8):
    assert lr[k, 10] < lr[k, 9] < lr[k, 1], (k, lr[k, 1], lr[k, 9], lr[k, 10])
with h5py.File(sys.argv[2], "r") as f, h5py.File(sys.argv[3], "r") as g:
    sch = f["/search"].attrs["schedule"]
    sch = sch.decode() if isinstance(sch, bytes) else sch
    assert sch.startswith("rungs:"), sch
    whole = g["/search"].attrs["schedule"]
    assert (whole.decode() if isinstance(whole, bytes) else whole).startswith("whole:")
    # Another schedule gives other rung-0 figures.
    assert not np.array_equal(f["/search/rung_nll"][:, 0], g["/search/rung_nll"][:, 0])
PY
rm -rf rmid
mkdir -p rmid
(cd rmid && exec mpirun -np 2 "$ENS" train -c "$WORK/job.ini" $R) >rmid/log 2>&1 &
pid=$!
stop_at "epoch 13/40" rmid/log $pid
code=0
wait $pid || code=$?
[ $code = 75 ] || { cat rmid/log; fail "rungs schedule: exit $code after USR1 inside rung 1, expected 75"; }
run_np 2 rmid -c "$WORK/job.ini" $R --resume || fail "rungs schedule: resume inside rung 1"
same_result rung1/result.h5 rmid/result.h5 || fail "rungs schedule: resumed inside rung 1 differs"
echo "ok: halving_schedule = rungs restarts at each rung; identical on 1 and 3 ranks and across stop/resume"

# ens predict rebuilds the finished members only and reproduces the ensemble.
"$ENS" predict -m one/result.h5 -i data.h5 -o pred.h5 >/dev/null || fail "predict on a halving result"
h5diff --exclude-attribute /ensemble/probs one/result.h5 pred.h5 /ensemble/probs /probs ||
  fail "predict /probs differs from the halving result's ensemble"
echo "ok: ens predict reproduces the halving ensemble"

# Regression: members ranked on the Gaussian NLL; 1 and 2 ranks identical.
$PY "$SRC/tests/integration/make_regression.py" reg.h5 900 2 3
for np in 0 2; do
  run_np $np "reg$np" -c "$WORK/job.ini" --set data.path="$WORK/reg.h5" --set search.halving_factor=3 \
    --set search.halving_min_epochs=1 --set train.epochs=9 --set search.lr=0.001,0.03 ||
    fail "regression halving on $np ranks"
done
same_result reg0/result.h5 reg2/result.h5 || fail "regression halving: 1 and 2 ranks differ"
$PY - reg0/result.h5 <<'PY' || fail "regression halving record"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    assert f["/search/rung_epochs"][...].tolist() == [1, 3, 9]
    assert f["/search/rung_members"][...].tolist() == [8, 2, 1]
    assert np.isfinite(f["/search/rung_nll"][:, 0]).all()
    assert (f["/search/member_status"][...] == 0).sum() == 1
PY
echo "ok: regression halving (Gaussian nll) identical on 1 and 2 ranks"

# Bad halving keys: one error naming job.ini:line and the key, exit 1.
bad() {
  local want=$1
  shift
  local code=0
  (cd bad && "$ENS" train -c "$WORK/bad.ini" "$@") >bad/log 2>&1 || code=$?
  [ $code = 1 ] || { cat bad/log; fail "bad config ($want): exit $code, expected 1"; }
  grep -qF -- "$want" bad/log || { cat bad/log; fail "bad config: no '$want' in the message"; }
  [ ! -e bad/result.h5 ] || fail "bad config left a result"
}
mkdir -p bad
line_of() { grep -n "^$1 =" "$WORK/bad.ini" | cut -d: -f1; }
sed 's/^halving_factor = 2/halving_factor = 1/' job.ini >bad.ini
bad "bad.ini:$(line_of halving_factor): [search] halving_factor" 
sed 's/^halving_min_epochs = 2/halving_min_epochs = 9/' job.ini >bad.ini
bad "bad.ini:$(line_of halving_min_epochs): [search] halving_min_epochs = 9 exceeds [train] epochs = 8"
sed 's/^mode = search/mode = seed/' job.ini >bad.ini
bad "bad.ini:$(line_of halving): [search] halving = true needs [ensemble] mode = search"
cp job.ini bad.ini
bad "[search] halving = true with a slice of the members" --set ensemble.count=4
sed 's/^val_fraction = 0.2/val_fraction = 0/' job.ini >bad.ini
bad "[ensemble] mode = search needs validation rows"
sed -e 's/^halving_factor = 2/&\nhalving_schedule = rungs/' -e 's/^schedule = cosine/schedule = step/' \
  job.ini >bad.ini
bad "bad.ini:$(line_of halving_schedule): [search] halving_schedule = rungs restarts the cosine schedule at each rung, and [train] schedule = step"
# Without halving the key is not used: a warning, and the result records whole.
run_np 0 nohalv -c "$WORK/job.ini" --set search.halving=false --set search.halving_schedule=rungs ||
  fail "halving_schedule without halving"
grep -q "warning: \[search\] halving_schedule = rungs is not used" nohalv/log ||
  { cat nohalv/log; fail "no warning for halving_schedule without halving"; }
echo "ok: bad halving keys are refused with file:line and key"
