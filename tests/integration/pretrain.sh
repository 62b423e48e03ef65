# Trunk pretraining under a time limit (issue 11): it is checkpointed every
# epoch, a stop signal during pretraining is acted on within one step (exit
# 75 with <checkpoint_dir>/pretrain.h5 holding the position inside the
# epoch), and --resume continues it to a result bitwise identical to an
# uninterrupted run. A damaged pretrain.h5 is named in a warning and
# pretraining starts again, with the same result.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 20000 32 4
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 256,128
dropout = 0.1
[train]
epochs = 2
batch = 64
[ensemble]
members = 2
[trunk]
source = pretrain
layers = 1
pretrain_epochs = 4
pretrain_batch = 32
[output]
path = result.h5
verbose = 1
INI
run_np 2 full -c "$WORK/job.ini" || fail "uninterrupted run"

mkdir -p stop
(cd stop && exec mpirun -np 2 "$ENS" train -c "$WORK/job.ini") >stop/log 2>&1 &
pid=$!
stop_at "pretrain epoch 1/" stop/log $pid
code=0
wait $pid || code=$?
[ $code = 75 ] || { cat stop/log; fail "exit $code after USR1 during pretraining, expected 75"; }
no_abort stop/log
line=$(ens_lines stop/log | grep "^ens train:" || true)
[ "$(echo "$line" | wc -l)" = 1 ] && echo "$line" |
  grep -qE "stopped by a signal during trunk pretraining \(epoch [2-4], step [0-9]+ of the epoch\).*pretrain.h5.*--resume" ||
  { cat stop/log; fail "no single stop message naming pretrain.h5"; }
# The epoch the stop came in: 2 unless the machine was slow to freeze the
# ranks after the epoch-1 line (1-based; pretrain_epochs = 4).
E=$(echo "$line" | sed -n 's/.*during trunk pretraining (epoch \([0-9]*\), step.*/\1/p')
grep -q "pretrain epoch $E/" stop/log && fail "pretraining went on to the end of epoch $E after the signal"
[ -f stop/result.h5.ckpt/pretrain.h5 ] || fail "no pretraining checkpoint"
[ ! -e stop/result.h5.ckpt/trunk.h5 ] || fail "trunk.h5 written although pretraining stopped"
ls stop/result.h5.ckpt/unit_*.h5 2>/dev/null && fail "member checkpoints before members started"
# The position is inside epoch E (0-based E-1): acted on within a step, not
# at the end of the epoch. 20000 rows / 32 = 625 steps per epoch.
$PY - stop/result.h5.ckpt/pretrain.h5 "$E" <<'PY' || fail "pretrain.h5 does not hold a mid-epoch position"
import sys, h5py
a = h5py.File(sys.argv[1], "r").attrs
E = int(sys.argv[2])
e, s, step = int(a["epoch"]), int(a["step_in_epoch"]), int(a["step"])
print(f"pretrain.h5: epoch {e}, step_in_epoch {s}, step {step}")
assert e == E - 1 and 0 < s < 625 and step == 625 * e + s, (E, e, s, step)
PY
cp -r stop damaged
rm -f damaged/log

run_np 2 stop -c "$WORK/job.ini" --resume || fail "resume"
grep -q "\[trunk\] pretraining resumed at epoch $E, step" stop/log || { cat stop/log; fail "pretraining was not resumed"; }
same_result full/result.h5 stop/result.h5 || fail "resumed result differs"
[ ! -e stop/result.h5.ckpt ] || fail "checkpoints left after success"
echo "ok: stop during pretraining, resume identical"

printf 'not a checkpoint\n' >damaged/result.h5.ckpt/pretrain.h5
run_np 2 damaged -c "$WORK/job.ini" --resume || fail "resume with a damaged pretrain.h5"
grep -q "^ens: warning: checkpoint result.h5.ckpt/pretrain.h5 is not an HDF5 file (or is truncated): trunk pretraining restarts from scratch" \
  damaged/log || { cat damaged/log; fail "no warning naming the damaged pretrain.h5"; }
same_result full/result.h5 damaged/result.h5 || fail "result differs after a damaged pretrain.h5"
echo "ok: damaged pretrain.h5: warning, pretrained again, identical"
echo "pretrain: all passed"
