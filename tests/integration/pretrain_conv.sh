# Stop and --resume of a job whose [trunk] layers is a layer list (issue 16
# points 7-8): a conv trunk pretrained by ens, dense heads trained on its
# features. Stopped by USR1 during trunk pretraining and, in another run,
# during head training; each resumed run's result is bitwise identical to
# the uninterrupted run's (2 ranks).
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_images.py" img.h5 1500 12 0 7
cat >job.ini <<INI
[data]
path = $WORK/img.h5
val_fraction = 0.1
standardize_by = global
[model]
layers = dense 16, bn, relu, dropout 0.1
[train]
epochs = 30
batch = 32
[ensemble]
members = 2
[trunk]
source = pretrain
layers = conv 6 3 pad 1, bn, relu, maxpool 2, conv 8 3 pad 1, relu, maxpool 2, flatten
pretrain_epochs = 25
pretrain_batch = 32
[output]
path = result.h5
verbose = 1
INI
run_np 2 full -c "$WORK/job.ini" || fail "uninterrupted run"
grep -q "^\[trunk\] pretrain epoch 25/25" full/log || { cat full/log; fail "no pretraining in the log"; }
$PY - full/result.h5 <<'PY' || fail "the result has no conv trunk"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
assert f["model"].attrs["trunk_layers"] == 2 and "trunk/params" in f
PY

# stopped DIR PATTERN [MESSAGE]: ens train on 2 ranks in DIR, stopped by USR1
# once the log matches PATTERN (ranks frozen first, so the stop lands right
# there); exit 75, no result, no temporary file. With MESSAGE, a run whose
# stop message does not match it is tried again (up to 3 runs): the log
# reaches the test through mpirun's forwarding, and a phase shorter than
# that delay (a few epochs of a small trunk) can end before the ranks are
# frozen.
stopped() {
  local dir=$1 pattern=$2 message=${3:-} pid code attempt
  for attempt in 1 2 3; do
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$dir" && exec mpirun -np 2 "$ENS" train -c "$WORK/job.ini") >"$dir/log" 2>&1 &
    pid=$!
    stop_at "$pattern" "$dir/log" $pid
    code=0
    wait $pid || code=$?
    [ -z "$message" ] || ens_lines "$dir/log" | grep -qE "$message" || [ $attempt = 3 ] ||
      { echo "$dir: the stop missed the phase; again"; continue; }
    break
  done
  [ $code = 75 ] || { cat "$dir/log"; fail "$dir: exit $code after USR1, expected 75"; }
  no_abort "$dir/log"
  [ ! -e "$dir/result.h5" ] || fail "$dir: a result was written despite the stop"
  ! ls "$dir"/result.h5.tmp.* >/dev/null 2>&1 || fail "$dir: temporary result left behind"
}

# During trunk pretraining: pretrain.h5 holds the position, no trunk.h5 and
# no member checkpoints yet.
stopped pre "^\[trunk\] pretrain epoch 1/" "^ens train: .*stopped by a signal during trunk pretraining"
ens_lines pre/log | grep -qE "^ens train: .*stopped by a signal during trunk pretraining" ||
  { cat pre/log; fail "pre: no stop message naming trunk pretraining"; }
[ -f pre/result.h5.ckpt/pretrain.h5 ] || fail "pre: no pretrain.h5"
[ ! -e pre/result.h5.ckpt/trunk.h5 ] || fail "pre: trunk.h5 although pretraining stopped"
! ls pre/result.h5.ckpt/unit_*.h5 >/dev/null 2>&1 || fail "pre: member checkpoints before the heads"
run_np 2 pre -c "$WORK/job.ini" --resume || fail "pre: resume"
grep -q "\[trunk\] pretraining resumed at epoch" pre/log || { cat pre/log; fail "pre: pretraining not resumed"; }
same_result full/result.h5 pre/result.h5 || fail "stopped in conv trunk pretraining: resumed result differs"
[ ! -d pre/result.h5.ckpt ] || fail "pre: checkpoints not cleaned up"
echo "ok: stop during conv trunk pretraining, resume identical"

# During head training: the trunk is done (trunk.h5), the heads resume from
# their unit checkpoints on the trunk's features.
stopped heads "^\[member [0-9]+\] epoch 1/"
[ -f heads/result.h5.ckpt/trunk.h5 ] || fail "heads: no trunk.h5"
ls heads/result.h5.ckpt/unit_*.h5 >/dev/null 2>&1 || fail "heads: no member checkpoints"
run_np 2 heads -c "$WORK/job.ini" --resume || fail "heads: resume"
grep -qE "resumed at|not retrained" heads/log || { cat heads/log; fail "heads: nothing was resumed"; }
grep -q "pretrain epoch" heads/log && { cat heads/log; fail "heads: the trunk was pretrained again"; }
same_result full/result.h5 heads/result.h5 || fail "stopped in head training: resumed result differs"
[ ! -d heads/result.h5.ckpt ] || fail "heads: checkpoints not cleaned up"
echo "ok: stop during head training on a conv trunk, resume identical"
echo "pretrain_conv: all passed"
