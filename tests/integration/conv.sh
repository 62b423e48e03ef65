# Convolutional members end to end on small synthetic images (8x8 and
# 12x12): every mode on 1 and 3 ranks bitwise identical (the 1-4 rank sweep
# of the same cases is in determinism.sh), stop/resume with augmentation and
# with a Winograd convolution, image regression, predict/info/merge on a conv
# result, each kind of layer-list mistake, predict on images of another
# shape, and the shipped jobs/fashion-cnn*.ini with the --set keys tests
# rely on.
source "$(dirname "$0")/lib.bash"
MK="$SRC/tests/integration/make_images.py"
$PY "$MK" img.h5 300 8 0 1
$PY "$MK" img2c.h5 300 8 2 1
$PY "$MK" img12.h5 2000 12 0 2
$PY "$MK" imgreg.h5 400 8 0 3 --regress
LAYERS="conv 6 3 pad 1, bn, relu, maxpool 2, conv 8 3 stride 2 pad 1, relu, dropout 0.1, flatten, dense 12, bn, relu"
cat >job.ini <<INI
[data]
path = $WORK/img.h5
standardize_by = channel
[model]
layers = $LAYERS
[train]
epochs = 3
batch = 32
lr = 0.05
[ensemble]
members = 3
seed = 7
[output]
path = result.h5
verbose = 1
INI

# Rank 0 prints every layer's output shape and parameter count; ens info too.
run_np 0 seed -c "$WORK/job.ini" || fail "conv seed run"
grep -qE "^  1 +conv 6 3 stride 1 pad 1 +\(6,8,8\) +60$" seed/log || { cat seed/log; fail "no layer table at start"; }
grep -qE "^  8 +flatten +\(32\) +0$" seed/log || fail "layer table: flatten (32)"
"$ENS" info seed/result.h5 >info.txt
grep -qE "^  5 +conv 8 3 stride 2 pad 1 +\(8,2,2\) +440$" info.txt || { cat info.txt; fail "ens info: no layer table"; }
grep -q "layers conv 6 3 pad 1" info.txt || fail "ens info: members' layer lists"

# Predict gives the stored ensemble probabilities; other image shapes are refused.
"$ENS" predict -m seed/result.h5 -i img.h5 -o pred.h5 >/dev/null || fail "predict on a conv result"
$PY - <<'PYEOF' || fail "predict differs from the stored ensemble"
import h5py, numpy as np
a = h5py.File("seed/result.h5")["ensemble/probs"][:]
b = h5py.File("pred.h5")["probs"][:]
assert a.shape == b.shape and (a == b).all(), abs(a - b).max()
PYEOF
code=0
"$ENS" predict -m seed/result.h5 -i img2c.h5 -o bad.h5 2>err.txt || code=$?
[ $code = 1 ] && grep -q "images of shape (2,8,8) (C,H,W); the model was trained on images of shape (1,8,8)" err.txt ||
  { cat err.txt; fail "predict on 2-channel images: exit $code"; }
[ ! -e bad.h5 ] || fail "predict left output after refusing the input"
"$ENS" predict -m seed/result.h5 -i img.h5 -o mc.h5 --mc-samples 4 >/dev/null || fail "--mc-samples on conv"

# Every mode, 1 and 3 ranks.
cases=("seed" "bootstrap --set ensemble.mode=bootstrap --set ensemble.combine=vote --set data.val_fraction=0.2"
  "snapshot --set ensemble.mode=snapshot --set ensemble.snapshots=3 --set train.epochs=3"
  "params --set ensemble.combine=params"
  "search --set ensemble.mode=search --set ensemble.combine=select --set data.val_fraction=0.2 --set ensemble.calibrate=temperature --set search.hidden= --set search.batch=16,32"
  "augment --set data.augment_crop=1 --set data.augment_flip=true"
  "twochan --set data.path=$WORK/img2c.h5"
  "regress --set data.path=$WORK/imgreg.h5 --set train.optimizer=adam --set train.lr=0.005")
for cs in "${cases[@]}"; do
  set -- $cs
  name=$1
  shift
  extra=("$@")
  [ "$name" = search ] && extra+=(--set "search.layers=conv 4 3 pad 1, relu, gap | conv 6 3, bn, relu, maxpool 2, flatten, dense 8, relu | conv 4 5 pad 2, relu, avgpool 2, flatten")
  for np in 0 3; do
    run_np $np "$name-np$np" -c "$WORK/job.ini" --set output.verbose=0 "${extra[@]}" || fail "$name on $np ranks"
  done
  same_result "$name-np0/result.h5" "$name-np3/result.h5" || fail "$name: 1 and 3 ranks differ"
  echo "ok: conv $name identical on 1 and 3 ranks"
done
# The search drew more than one layer list; the image regression learned.
[ "$(h5dump -a /members/0/layers -a /members/1/layers -a /members/2/layers search-np0/result.h5 | grep -c '"conv')" -ge 3 ] ||
  fail "search members have no layer lists"
$PY - <<'PYEOF' || fail "image regression did not learn"
import h5py
f = h5py.File("regress-np0/result.h5")
r2 = f["metrics/ensemble"].attrs["r2"]
assert r2 > 0.3, r2
print("image regression r2", r2)
PYEOF
# Augmentation changes the members (it is on), and never touches scored rows:
# predict on the augmented run's result gives its stored probabilities.
if "$ENS" diff seed-np0/result.h5 augment-np0/result.h5 >/dev/null 2>&1; then
  fail "augmentation changed nothing"
fi
"$ENS" predict -m augment-np0/result.h5 -i img.h5 -o apred.h5 >/dev/null
$PY -c "
import h5py; a=h5py.File('augment-np0/result.h5')['ensemble/probs'][:]; b=h5py.File('apred.h5')['probs'][:]
assert (a == b).all()" || fail "augmented result: prediction rows differ from the stored ones"

# A conv trunk: pretrained by ens (the first 2 blocks), then from its file on
# 1 and 3 ranks.
run_np 0 pre -c "$WORK/job.ini" --set trunk.source=pretrain --set trunk.layers=2 \
  --set trunk.pretrain_epochs=1 --set ensemble.members=1 || fail "conv trunk pretraining"
for np in 0 3; do
  run_np $np "trunk-np$np" -c "$WORK/job.ini" --set trunk.source=file --set "trunk.file=$WORK/pre/result.h5" \
    --set trunk.layers=2 || fail "conv trunk file on $np ranks"
done
same_result trunk-np0/result.h5 trunk-np3/result.h5 || fail "conv trunk: 1 and 3 ranks differ"
# Another conv architecture must not take that trunk.
code=0
run_np 0 trunkbad -c "$WORK/job.ini" --set trunk.source=file --set "trunk.file=$WORK/pre/result.h5" \
  --set trunk.layers=2 --set "model.layers=conv 5 3 pad 1, bn, relu, maxpool 2, conv 8 3 stride 2 pad 1, relu, flatten, dense 12, relu" >/dev/null || code=$?
[ $code != 0 ] && grep -q "do not begin with the first 2 blocks" trunkbad/log || fail "a mismatched conv trunk was taken"
# [trunk] layers as its own list, [model] layers the heads: the same network
# as the count form, so the same result bitwise (pretrain and from the file).
TRUNK_LIST="conv 6 3 pad 1, bn, relu, maxpool 2, conv 8 3 stride 2 pad 1, relu, dropout 0.1, flatten"
HEADS="dense 12, bn, relu"
run_np 0 prelist -c "$WORK/job.ini" --set trunk.source=pretrain --set "trunk.layers=$TRUNK_LIST" \
  --set "model.layers=$HEADS" --set trunk.pretrain_epochs=1 --set ensemble.members=1 || fail "conv trunk list pretraining"
same_result pre/result.h5 prelist/result.h5 || fail "conv trunk list: pretrain differs from the count form"
run_np 2 trunklist -c "$WORK/job.ini" --set trunk.source=file --set "trunk.file=$WORK/pre/result.h5" \
  --set "trunk.layers=$TRUNK_LIST" --set "model.layers=$HEADS" || fail "conv trunk list from a file"
same_result trunk-np0/result.h5 trunklist/result.h5 || fail "conv trunk list from a file differs from the count form"
# Heads that do not begin a block, and a trunk whose output does not fit them.
code=0
run_np 0 trunklistbad1 -c "$WORK/job.ini" --set trunk.source=pretrain --set "trunk.layers=$TRUNK_LIST" \
  --set "model.layers=bn, dense 12, relu" >/dev/null || code=$?
[ $code = 1 ] && grep -q "heads must begin with a conv or dense layer" trunklistbad1/log || fail "heads starting with bn were taken"
code=0
run_np 0 trunklistbad2 -c "$WORK/job.ini" --set trunk.source=pretrain --set "trunk.layers=conv 6 3 pad 1, relu" \
  --set "model.layers=$HEADS" >/dev/null || code=$?
[ $code = 1 ] && grep -q "layer 3 (dense): input shape (6,8,8)" trunklistbad2/log && grep -q "flatten" trunklistbad2/log || fail "a trunk list not fitting its heads was taken"

# merge of two halves equals the whole.
run_np 0 half0 -c "$WORK/job.ini" --set ensemble.first_member=0 --set ensemble.count=2 --set output.path=a.h5 --set output.verbose=0
run_np 0 half1 -c "$WORK/job.ini" --set ensemble.first_member=2 --set ensemble.count=1 --set output.path=b.h5 --set output.verbose=0
"$ENS" merge half0/a.h5 half1/b.h5 -o merged.h5 >/dev/null || fail "merge of conv halves"
same_result seed-np0/result.h5 merged.h5 || fail "merged conv result differs from the whole"

# Stop and resume with augmentation (2 ranks, larger images).
stop_resume conv-augment -c "$WORK/job.ini" --set data.path="$WORK/img12.h5" --set data.augment_crop=2 \
  --set data.augment_flip=true --set ensemble.members=2 --set train.epochs=12

# A convolution that runs through Winograd F(2x2, 3x3) (8 -> 8 channels, 3x3,
# padding 1): stop/resume identical, and predict gives the stored ensemble
# probabilities to the bit.
WINO="conv 8 3 pad 1, bn, relu, conv 8 3 pad 1, bn, relu, maxpool 2, flatten, dense 12, relu"
stop_resume conv-wino -c "$WORK/job.ini" --set data.path="$WORK/img12.h5" --set "model.layers=$WINO" \
  --set ensemble.members=2 --set train.epochs=12
"$ENS" predict -m full-conv-wino/result.h5 -i img12.h5 -o predw.h5 >/dev/null || fail "predict on a Winograd conv result"
$PY - <<'PYEOF' || fail "predict differs from the stored ensemble (Winograd)"
import h5py
a = h5py.File("full-conv-wino/result.h5")["ensemble/probs"][:]
b = h5py.File("predw.h5")["probs"][:]
assert a.shape == b.shape and (a == b).all(), abs(a - b).max()
PYEOF

# Each kind of layer-list mistake: one clear error naming file:line, the layer
# and the shapes; exit 1, nothing written.
bad() {
  local pattern=$1 layers=$2
  local code=0
  mkdir -p out
  sed "s|^layers = .*|layers = $layers|" "$WORK/job.ini" >bad.ini
  "$ENS" train -c bad.ini --set output.path=out/r.h5 >out.txt 2>err.txt || code=$?
  [ $code = 1 ] && grep -qE "$pattern" err.txt || { cat err.txt; fail "layers '$layers': exit $code, message not /$pattern/"; }
  [ -z "$(ls -A out)" ] || fail "layers '$layers': output left behind"
  echo "ok: $(head -c 220 err.txt)"
}
bad "bad.ini:5: \[model\] layers: layer 6 \(dense\): input shape \(8,4,4\): a dense layer needs a flat input" \
  "conv 8 3 pad 1, relu, maxpool 2, conv 8 3 pad 1, relu, dense 10"
bad "bad.ini:5: \[model\] layers: layer 3 \(maxpool\): input shape \(8,6,6\): 4x4 windows every 4 pixels do not divide the 6x6 input" \
  "conv 8 3, relu, maxpool 4"
bad "bad.ini:5: \[model\] layers: layer 4 \(conv\): input shape \(8,2,2\): the 3x3 window is larger than the input's 2x2" \
  "conv 8 3 pad 1, maxpool 4, relu, conv 8 3, flatten"
bad "bad.ini:5: \[model\] layers: output layer \(dense 3\): input shape \(8,8,8\): a dense layer needs a flat input: add flatten" \
  "conv 8 3 pad 1, relu"
bad "bad.ini:5: \[model\] layers: layer 2: unknown kind 'pool'" "conv 8 3, pool 2"
# A [trunk] layer list whose output does not fit the heads: both lines named.
mkdir -p out
{ sed "s|^layers = .*|layers = dense 12, relu|" "$WORK/job.ini"; printf '[trunk]\nsource = pretrain\nlayers = conv 6 3 pad 1, relu\n'; } >badtrunk.ini
code=0
"$ENS" train -c badtrunk.ini --set output.path=out/r.h5 >out.txt 2>err.txt || code=$?
[ $code = 1 ] && grep -qE "badtrunk.ini:[0-9]+: \[trunk\] layers and badtrunk.ini:5: \[model\] layers .*layer 3 \(dense\): input shape \(6,8,8\)" err.txt ||
  { cat err.txt; fail "a [trunk] list not fitting its heads: exit $code"; }
[ -z "$(ls -A out)" ] || fail "a [trunk] list not fitting its heads: output left behind"
bad "bad.ini:5: \[model\] layers: layer 1 \(conv\): expected 'conv CHANNELS KERNEL" "conv 8"
bad "bad.ini:5: \[model\] layers: layer 2 \(dropout\): expected 'dropout P' with 0 <= P < 1" "flatten, dropout 1.5"
# A layer list from --set is named as such.
code=0
"$ENS" train -c "$WORK/job.ini" --set "model.layers=conv 4 3, maxpool 4" --set output.path=out/r.h5 >/dev/null 2>err.txt || code=$?
[ $code = 1 ] && grep -q "^ens train: --set model.layers=conv 4 3, maxpool 4: \[model\] layers: layer 2 (maxpool): input shape (4,6,6)" err.txt ||
  { cat err.txt; fail "--set layers: exit $code"; }
$PY "$SRC/tests/integration/make_data.py" flat.h5 200 12 3
code=0
"$ENS" train -c "$WORK/job.ini" --set data.path="$WORK/flat.h5" --set output.path=out/r.h5 >/dev/null 2>err.txt || code=$?
[ $code = 1 ] && grep -q "layer 1 (conv): input shape (12): a conv layer needs an image input" err.txt ||
  { cat err.txt; fail "conv on flat rows: exit $code"; }
code=0
"$ENS" train -c "$WORK/job.ini" --set data.path="$WORK/flat.h5" --set model.layers= --set model.hidden=8 --set data.standardize_by=feature \
  --set data.augment_flip=true --set output.path=out/r.h5 >/dev/null 2>err.txt || code=$?
[ $code = 1 ] && grep -q "augment_flip needs image rows" err.txt || { cat err.txt; fail "augmentation on flat rows: exit $code"; }

# A PyTorch-trained conv trunk through scripts/export_torch_trunk.py: ens's
# features equal PyTorch's (max abs diff <= 1e-4), ens heads train on it, and
# unsupported modules are refused by name.
TOOL=$(dirname "$ENS")/tests/ens-trunk-forward
if $PY -c "import torch" 2>/dev/null && [ -x "$TOOL" ]; then
  $PY - <<'PYEOF'
import h5py, numpy as np, torch, torch.nn as nn
torch.manual_seed(5)
m = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(8, 12, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(12),
                  nn.ReLU(inplace=True), nn.AvgPool2d(2), nn.Dropout(0.1),
                  nn.Conv2d(12, 16, 2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                  nn.Linear(16, 20), nn.BatchNorm1d(20), nn.ReLU())
with torch.no_grad():
    for bn in (m[1], m[5], m[14]):
        bn.weight.uniform_(0.5, 1.5); bn.bias.normal_(0.0, 0.3)
        bn.running_mean.normal_(0.0, 0.5); bn.running_var.uniform_(0.3, 2.0)
m.eval()
torch.save(m, "torch_conv.pt")
x = np.random.default_rng(2).normal(0, 1.5, size=(200, 1, 12, 12)).astype(np.float32)
with torch.no_grad():
    f = m(torch.from_numpy(x)).numpy()
assert (f > 0).mean() > 0.2, "degenerate trunk"
with h5py.File("conv_rows.h5", "w") as h:
    h["x"] = x
with h5py.File("torch_conv_features.h5", "w") as h:
    h["features"] = f
torch.save(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid()), "sigmoid.pt")
torch.save(nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2), nn.ReLU()), "dilated.pt")
PYEOF
  $PY "$SRC/scripts/export_torch_trunk.py" torch_conv.pt conv_trunk.h5 --shape 1,12,12 >export.log 2>&1 ||
    { cat export.log; fail "export of a PyTorch conv trunk"; }
  "$TOOL" conv_trunk.h5 conv_rows.h5 /x ens_conv_features.h5 >/dev/null || fail "ens-trunk-forward on a conv trunk"
  d=$($PY -c "
import h5py, numpy as np
a = h5py.File('ens_conv_features.h5')['features'][()].astype(np.float64)
b = h5py.File('torch_conv_features.h5')['features'][()].astype(np.float64)
assert a.shape == b.shape, (a.shape, b.shape)
print(np.abs(a - b).max())")
  echo "PyTorch vs ens conv trunk features: max abs diff $d"
  $PY -c "import sys; sys.exit(0 if $d <= 1e-4 else 1)" || fail "conv trunk features differ by $d > 1e-4"
  list=$(sed -n 's/^layers = //p' export.log)
  run_np 0 torchtrunk -c "$WORK/job.ini" --set data.path="$WORK/img12.h5" --set data.standardize=false \
    --set "model.layers=$list, dense 8, relu" --set trunk.source=file --set trunk.file="$WORK/conv_trunk.h5" \
    --set trunk.layers=4 --set output.verbose=0 || fail "ens heads on the PyTorch conv trunk"
  for bad in sigmoid dilated; do
    code=0
    $PY "$SRC/scripts/export_torch_trunk.py" $bad.pt x.h5 --shape 1,12,12 2>err.txt || code=$?
    [ $code = 1 ] && [ ! -e x.h5 ] || fail "export of $bad.pt: exit $code"
    echo "ok: $(cat err.txt)"
  done
  grep -q "unsupported module 'Sigmoid'" <($PY "$SRC/scripts/export_torch_trunk.py" sigmoid.pt x.h5 --shape 1,12,12 2>&1) ||
    fail "Sigmoid not refused by name"
  # Missing folders of the output are created; an output that cannot be
  # written is named.
  $PY "$SRC/scripts/export_torch_trunk.py" torch_conv.pt new/dir/t.h5 --shape 1,12,12 >/dev/null 2>&1 &&
    cmp -s <(h5dump -d /trunk/params conv_trunk.h5 | tail -n +3) <(h5dump -d /trunk/params new/dir/t.h5 | tail -n +3) ||
    fail "export into a missing folder"
  code=0
  $PY "$SRC/scripts/export_torch_trunk.py" torch_conv.pt /proc/none/t.h5 --shape 1,12,12 2>err.txt || code=$?
  [ $code = 1 ] && grep -q "/proc/none/t.h5: cannot write" err.txt ||
    { cat err.txt; fail "export to an impossible folder: exit $code"; }
  echo "ok: export_torch_trunk.py creates missing folders and names an output it cannot write"
else
  echo "note: no torch or ens-trunk-forward: PyTorch conv trunk check skipped"
fi

# The shipped jobs take the keys tests set.
for job in fashion-cnn fashion-cnn-augment fashion-cnn-trunk; do
  run_np 0 "job-$job" -c "$SRC/jobs/$job.ini" --set data.path="$WORK/img12.h5" \
    --set output.path="$WORK/job-$job/r.h5" --set ensemble.members=2 --set train.epochs=1 \
    --set ensemble.seed=5 --set trunk.pretrain_epochs=1 --set output.verbose=0 || fail "jobs/$job.ini"
  [ -f "job-$job/r.h5" ] || fail "jobs/$job.ini wrote no result"
done
echo "conv: all passed"
