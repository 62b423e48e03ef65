# Placement of members on ranks ([output] placement, src/ensemble/place.c):
# a search of members of very different cost gives the same result on 1
# rank and on 2 and 3 ranks under every policy (queue, cost, modulo); /ranks
# records which rank trained each member and when; stop + resume with the queue (the resumed job may place members differently)
# gives the same result.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 1500 16 4
cat >job.ini <<INI
[data]
path = $WORK/data.h5
val_fraction = 0.2
[model]
hidden = 32
[train]
epochs = 3
batch = 32
[ensemble]
members = 8
mode = search
seed = 5
[search]
hidden = 8 | 256,256
batch = 16,128
[output]
path = result.h5
verbose = 1
INI
run_np 0 one -c "$WORK/job.ini" || fail "1 rank"
for pol in queue cost modulo; do
  for np in 2 3; do
    run_np $np "$pol$np" -c "$WORK/job.ini" --set output.placement=$pol || fail "$pol on $np ranks"
    same_result one/result.h5 "$pol$np/result.h5" || fail "$pol on $np ranks differs from 1 rank"
  done
done
echo "ok: queue, cost and modulo placements on 2 and 3 ranks identical to 1 rank"
# The record: every member has a rank in [0, 3) and start <= end; modulo is
# member k on rank k mod 3; every rank trained something.
$PY - queue3/result.h5 modulo3/result.h5 <<'PY' || fail "/ranks placement record"
import sys, h5py, numpy as np
for path, pol in ((sys.argv[1], "queue"), (sys.argv[2], "modulo")):
    with h5py.File(path, "r") as f:
        g = f["/ranks"]
        assert g.attrs["placement"] in (pol, pol.encode()), g.attrs["placement"]
        r, s, e = g["member_rank"][...], g["member_start"][...], g["member_end"][...]
        assert len(r) == 8 and ((r >= 0) & (r < 3)).all(), r
        assert (s >= 0).all() and (e >= s).all(), (s, e)
        assert set(r.tolist()) == {0, 1, 2}, r
        if pol == "modulo":
            assert (r == np.arange(8) % 3).all(), r
print("placement record ok")
PY
grep -q "placement" <("$ENS" train --help 2>&1) || fail "--help lacks [output] placement"
echo "ok: /ranks records member_rank, member_start, member_end and the policy"
# Stop + resume with the queue on 2 ranks.
stop_resume queue -c "$WORK/job.ini" --set output.placement=queue --set train.epochs=12
# A job stopped under the queue on 2 ranks resumes on 3 ranks under another
# policy (units are independent of placement) with the same result.
mkdir -p mixed
(cd mixed && exec mpirun -np 2 "$ENS" train -c "$WORK/job.ini" --set train.epochs=12 \
  --set output.placement=queue) >mixed/log 2>&1 &
pid=$!
stop_at "epoch 2/" mixed/log $pid
code=0
wait $pid || code=$?
[ $code = 75 ] || { cat mixed/log; fail "queue stop: exit $code, expected 75"; }
run_np 3 mixed -c "$WORK/job.ini" --set train.epochs=12 --set output.placement=modulo --resume ||
  fail "resume on 3 ranks with modulo"
same_result full-queue/result.h5 mixed/result.h5 || fail "stop (queue, 2 ranks) + resume (modulo, 3 ranks) differs"
echo "ok: stopped with the queue on 2 ranks, resumed with modulo on 3: identical"
