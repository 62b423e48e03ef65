# Determinism contract (DESIGN.md): the same config gives bitwise-identical
# result datasets on 1 (no mpirun), 2, 3 and 4 ranks, in every mode; with a
# trunk file too, whose features the ranks of a node compute in slices that
# change with the rank count.
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
  for np in 0 2 3 4; do
    run_np $np "$1-$2-np$np" -c "$WORK/job.ini" "${sets[@]}" || fail "$1/$2 on $np ranks"
    [ -f "$1-$2-np$np/result.h5" ] || fail "no result for $1/$2 on $np ranks"
  done
  for np in 2 3 4; do
    same_result "$1-$2-np0/result.h5" "$1-$2-np$np/result.h5" ||
      fail "$1/$2: 1 rank and $np ranks differ"
  done
  echo "ok: $1/$2 identical on 1, 2, 3, 4 ranks"
done
# Convolutional members on small images (tests/integration/conv.sh covers
# every mode on 1 and 3 ranks): conv layers with batch norm and dropout plus
# augmentation, a search over layer lists, and a conv trunk from a file.
$PY "$SRC/tests/integration/make_images.py" img.h5 240 8 0 4
CONV="conv 6 3 pad 1, bn, relu, maxpool 2, conv 8 3 pad 1, relu, dropout 0.1, flatten, dense 12, bn, relu"
csets=(--set data.path="$WORK/img.h5" --set "model.layers=$CONV" --set data.standardize_by=global)
run_np 0 conv-pre -c "$WORK/job.ini" "${csets[@]}" --set trunk.source=pretrain --set trunk.layers=2 \
  --set trunk.pretrain_epochs=1 --set ensemble.members=1 || fail "pretraining a conv trunk file"
for mode in conv-augment conv-search conv-trunk; do
  sets=("${csets[@]}")
  case $mode in
  conv-augment) sets+=(--set data.augment_crop=1 --set data.augment_flip=true) ;;
  conv-search) sets+=(--set ensemble.mode=search --set ensemble.combine=select --set data.val_fraction=0.2
    --set search.hidden= --set "search.layers=conv 4 3 pad 1, relu, gap | $CONV") ;;
  conv-trunk) sets+=(--set trunk.source=file --set "trunk.file=$WORK/conv-pre/result.h5" --set trunk.layers=2
    --set train.batch=24) ;;
  esac
  for np in 0 2 3 4; do
    run_np $np "$mode-np$np" -c "$WORK/job.ini" "${sets[@]}" || fail "$mode on $np ranks"
  done
  for np in 2 3 4; do
    same_result "$mode-np0/result.h5" "$mode-np$np/result.h5" || fail "$mode: 1 and $np ranks differ"
  done
  echo "ok: $mode identical on 1, 2, 3, 4 ranks"
done
# The check itself must be able to fail: another seed gives another result.
run_np 0 other -c "$WORK/job.ini" --set ensemble.seed=8
if same_result seed-average-np0/result.h5 other/result.h5 >/dev/null; then
  fail "same_result did not notice a different seed"
fi
echo "determinism: all passed"
