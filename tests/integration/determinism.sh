# Determinism contract (DESIGN.md): the same config gives bitwise-identical
# result datasets on 1 (no mpirun), 2, 3 and 4 ranks, in every mode; with a
# trunk file too, whose features the ranks of a node compute in slices that
# change with the rank count. One process without a launcher runs without
# MPI (src/core/comm.c): its results equal a 1-rank mpirun run's, and a run
# stopped in one way resumes in the other.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 400 12 3
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 24,12
dropout = 0.1
[train]
epochs = 4
batch = 32
lr = 0.05
[ensemble]
members = 4
seed = 7
[output]
path = result.h5
verbose = 0
INI
$PY "$SRC/tests/integration/make_regression.py" reg.h5 800 2 3
# A trunk file: the pretrained trunk of a 1-rank run.
run_np 0 pretrained -c "$WORK/job.ini" --set trunk.source=pretrain --set trunk.layers=1 \
  --set trunk.pretrain_epochs=1 --set ensemble.members=1 || fail "pretraining a trunk file"
for mode in "seed average" "bootstrap vote" "snapshot average" "seed params" "search select" \
  "regress average" "regress-search select" "trunk average"; do
  set -- $mode
  sets=(--set ensemble.mode=${1#regress-} --set ensemble.combine=$2)
  [ "$1" = snapshot ] && sets+=(--set ensemble.snapshots=2)
  # Bootstrap also holds out validation rows (scored per member and ensemble).
  [ "$1" = bootstrap ] && sets+=(--set data.val_fraction=0.2)
  # A search draws each member's hyperparameters and architecture; selection
  # and calibration work on validation rows.
  case $1 in
  search | regress-search)
    sets+=(--set data.val_fraction=0.2 --set ensemble.calibrate=temperature
      --set "search.hidden=24,12 | 16 | 16,16,8" --set search.batch=32,64) ;;
  esac
  # A trunk from a file, batch norm in the heads, validation rows (features
  # of all three splits), batches of 24 rows (the feature slices' unit).
  [ "$1" = trunk ] && sets=(--set trunk.source=file --set "trunk.file=$WORK/pretrained/result.h5"
    --set trunk.layers=1 --set model.batchnorm=true --set data.val_fraction=0.15 --set train.batch=24)
  # Regression: two float targets, Gaussian heads, Adam.
  case $1 in
  regress*)
    sets=(--set data.path="$WORK/reg.h5" --set train.optimizer=adam --set train.lr=0.005
      "${sets[@]/ensemble.mode=regress/ensemble.mode=seed}") ;;
  esac
  for np in 0 1 2 3 4; do
    run_np $np "$1-$2-np$np" -c "$WORK/job.ini" "${sets[@]}" || fail "$1/$2 on $np ranks"
    [ -f "$1-$2-np$np/result.h5" ] || fail "no result for $1/$2 on $np ranks"
  done
  # np0 ran without MPI, np1 under mpirun: the start-up lines say so.
  grep -qx "start: 1 process, no MPI launcher" "$1-$2-np0/log" ||
    { cat "$1-$2-np0/log"; fail "$1/$2: no launcher, but the start-up line does not say so"; }
  grep -qx "start: mpirun, 1 rank" "$1-$2-np1/log" ||
    { cat "$1-$2-np1/log"; fail "$1/$2: mpirun -np 1, but the start-up line does not say so"; }
  for np in 1 2 3 4; do
    same_result "$1-$2-np0/result.h5" "$1-$2-np$np/result.h5" ||
      fail "$1/$2: 1 rank and $np ranks differ"
  done
  echo "ok: $1/$2 identical without MPI and on 1, 2, 3, 4 ranks"
done
# Convolutional members on small images (tests/integration/conv.sh covers
# every mode on 1 and 3 ranks): conv layers with batch norm and dropout plus
# augmentation, a search over layer lists, and a conv trunk from a file.
$PY "$SRC/tests/integration/make_images.py" img.h5 240 8 0 4
# The second convolution (8 -> 8, 3x3, padding 1) runs through Winograd.
CONV="conv 8 3 pad 1, bn, relu, maxpool 2, conv 8 3 pad 1, relu, dropout 0.1, flatten, dense 12, bn, relu"
csets=(--set data.path="$WORK/img.h5" --set "model.layers=$CONV" --set data.standardize_by=global)
run_np 0 conv-pre -c "$WORK/job.ini" "${csets[@]}" --set trunk.source=pretrain --set trunk.layers=2 \
  --set trunk.pretrain_epochs=1 --set ensemble.members=1 || fail "pretraining a conv trunk file"
for mode in conv-augment conv-search conv-gen conv-trunk conv-trunklist; do
  sets=("${csets[@]}")
  case $mode in
  conv-augment) sets+=(--set data.augment_crop=1 --set data.augment_flip=true) ;;
  conv-search) sets+=(--set ensemble.mode=search --set ensemble.combine=select --set data.val_fraction=0.2
    --set search.hidden= --set "search.layers=conv 4 3 pad 1, relu, gap | $CONV") ;;
  # The conv generator: each member's depth (at most 3 on 8x8), widths,
  # kernels, batch norm, pooling, end and dense head drawn from (seed, k).
  conv-gen) sets+=(--set ensemble.mode=search --set ensemble.combine=select --set data.val_fraction=0.2
    --set ensemble.calibrate=temperature --set model.layers= --set search.conv_blocks=1,4
    --set search.conv_width=4,8 --set search.conv_kernel=3,5 --set search.conv_per_block=1,2
    --set search.conv_bn=true,false --set search.pool=max,avg --set search.conv_end=flatten,gap
    --set "search.dense=0 | 12" --set search.dropout=0,0.2) ;;
  conv-trunk) sets+=(--set trunk.source=file --set "trunk.file=$WORK/conv-pre/result.h5" --set trunk.layers=2
    --set train.batch=24) ;;
  conv-trunklist) sets+=(--set trunk.source=file --set "trunk.file=$WORK/conv-pre/result.h5" --set train.batch=24
    --set "trunk.layers=${CONV%, dense 12, bn, relu}" --set "model.layers=dense 12, bn, relu") ;;
  esac
  for np in 0 2 3 4; do
    run_np $np "$mode-np$np" -c "$WORK/job.ini" "${sets[@]}" || fail "$mode on $np ranks"
  done
  for np in 2 3 4; do
    same_result "$mode-np0/result.h5" "$mode-np$np/result.h5" || fail "$mode: 1 and $np ranks differ"
  done
  echo "ok: $mode identical on 1, 2, 3, 4 ranks"
done
# A [trunk] layer list is the count form written apart: the same result.
same_result conv-trunk-np0/result.h5 conv-trunklist-np0/result.h5 || fail "conv trunk list differs from the count form"
# The check itself must be able to fail: another seed gives another result.
run_np 0 other -c "$WORK/job.ini" --set ensemble.seed=8
if same_result seed-average-np0/result.h5 other/result.h5 >/dev/null; then
  fail "same_result did not notice a different seed"
fi

# Stopped without MPI, resumed under mpirun -np 1, and the other way round:
# the checkpoints are the same whichever way ens was started.
cross_resume() {
  local name=$1 first=$2 then=$3 code attempt
  shift 3
  for attempt in 1 2 3; do
    rm -rf "$name"
    mkdir -p "$name"
    if [ "$first" = 0 ]; then
      (cd "$name" && exec "$ENS" train "$@") >"$name/log" 2>&1 &
    else
      (cd "$name" && exec mpirun -np 1 "$ENS" train "$@") >"$name/log" 2>&1 &
    fi
    stop_at "epoch 1/" "$name/log" $!
    code=0
    wait $! || code=$?
    [ $code = 0 ] && [ $attempt -lt 3 ] && { echo "$name: finished before USR1; again"; continue; }
    break
  done
  [ $code = 75 ] || { cat "$name/log"; fail "$name: exit $code after USR1, expected 75"; }
  ls "$name/result.h5.ckpt"/unit_*.h5 >/dev/null 2>&1 || fail "$name: no checkpoints"
  [ ! -e "$name/result.h5" ] || fail "$name: a result was written despite the stop"
  run_np "$then" "$name" "$@" --resume || fail "$name: resume"
  grep -qE "resumed at|not retrained" "$name/log" || { cat "$name/log"; fail "$name: nothing was resumed"; }
  same_result cross-ref/result.h5 "$name/result.h5" || fail "$name: resumed result differs"
  echo "ok: $name: stopped ($( [ "$first" = 0 ] && echo "no MPI" || echo "mpirun -np 1")), resumed, identical"
}
long=(-c "$WORK/job.ini" --set train.epochs=150 --set output.verbose=1 --set ensemble.members=2)
run_np 0 cross-ref "${long[@]}" || fail "uninterrupted run for the cross resume"
cross_resume cross-nompi-mpirun 0 1 "${long[@]}"
cross_resume cross-mpirun-nompi 1 0 "${long[@]}"
echo "determinism: all passed"
