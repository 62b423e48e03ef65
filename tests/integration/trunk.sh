# Shared frozen trunk (issue 4), end to end:
#  a. a PyTorch trunk exported by scripts/export_torch_trunk.py computes the
#     same features in ens (ens-trunk-forward) as in PyTorch;
#  b. `ens train` uses an exported trunk ([trunk] source = file), and an
#     architecture mismatch fails with exit 1 naming both shapes;
#  c. pretraining on 2 ranks with check_sync agrees on one trunk checksum, and
#     trunks taken from earlier results (dataset = trunk, member:0) work;
#  d. `ens predict` on a trunk result reproduces /ensemble/pred exactly;
#  e. the trunk stays frozen (stored /trunk equals its source) and 1- and
#     2-rank runs with a trunk file give identical results.
source "$(dirname "$0")/lib.bash"
TOOL=$(dirname "$ENS")/tests/ens-trunk-forward
[ -x "$TOOL" ] || TOOL=$(find "$(dirname "$ENS")" -name ens-trunk-forward -type f -perm -u+x | head -1)
[ -n "$TOOL" ] && [ -x "$TOOL" ] || fail "ens-trunk-forward not found beside $ENS (build it first)"
EXPORT="$SRC/scripts/export_torch_trunk.py"
T0=$SECONDS

D=20
$PY "$SRC/tests/integration/make_data.py" data.h5 1500 $D 7
# Random rows for the feature comparison, on the scale of standardized data.
$PY - <<'PY'
import h5py, numpy as np
rng = np.random.default_rng(3)
with h5py.File("rows.h5", "w") as f:
    f["x"] = rng.normal(0, 1.5, size=(300, 20)).astype(np.float32)
PY

# max_abs_diff a.h5 b.h5: max |a - b| over /features of two files.
max_abs_diff() {
  $PY - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a = h5py.File(sys.argv[1], "r")["features"][()].astype(np.float64)
b = h5py.File(sys.argv[2], "r")["features"][()].astype(np.float64)
if a.shape != b.shape:
    print(f"shape {a.shape} vs {b.shape}")
    sys.exit(1)
print(f"{np.max(np.abs(a - b)):.3e} (features {a.shape}, max |value| {np.max(np.abs(b)):.3g})")
PY
}
# within DIFF TOL: the number at the start of DIFF is <= TOL.
within() { $PY -c "import sys; sys.exit(0 if float('$1'.split()[0]) <= $2 else 1)"; }

# ------------------------------------------------ a. PyTorch export round trip
if $PY -c "import torch" 2>/dev/null; then
  $PY - <<'PY'
import h5py, numpy as np, torch, torch.nn as nn
torch.manual_seed(11)
m = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2),
                  nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU())
with torch.no_grad():
    for bn in (m[1], m[5]):  # non-trivial affine parameters and running statistics
        n = bn.num_features
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0.0, 0.3)
        bn.running_mean.normal_(0.0, 0.5)
        bn.running_var.uniform_(0.3, 2.0)
m.eval()
torch.save(m.state_dict(), "torch_trunk.pt")
torch.save(m, "torch_module.pt")
with h5py.File("rows.h5", "r") as f:
    x = torch.from_numpy(f["x"][()])
with torch.no_grad():
    feats = m(x).numpy().astype(np.float32)
assert (feats > 0).mean() > 0.2, "degenerate trunk (dead ReLUs)"
with h5py.File("torch_features.h5", "w") as f:
    f["features"] = feats
# A linear layer without bias, for the error message check.
torch.save(nn.Sequential(nn.Linear(20, 32, bias=False), nn.ReLU()).state_dict(), "nobias.pt")
PY
  $PY "$EXPORT" torch_trunk.pt trunk.h5 --inputs $D >export.log 2>&1 ||
    { cat export.log; fail "export of the state dict"; }
  "$TOOL" trunk.h5 rows.h5 /x ens_features.h5 >/dev/null || fail "ens-trunk-forward on trunk.h5"
  diff=$(max_abs_diff ens_features.h5 torch_features.h5) || fail "feature comparison: $diff"
  echo "PyTorch vs ens trunk features (state dict): max abs diff $diff"
  within "$diff" 1e-4 || fail "exported trunk features differ from PyTorch's by $diff > 1e-4"
  # The whole pickled module gives the same file contents.
  $PY "$EXPORT" torch_module.pt trunk_module.h5 >/dev/null 2>&1 || fail "export of the module"
  h5diff trunk.h5 trunk_module.h5 /trunk/params /trunk/params >/dev/null &&
    h5diff trunk.h5 trunk_module.h5 /trunk/bn_stats /trunk/bn_stats >/dev/null ||
    fail "state dict and pickled module exports differ"
  code=0
  $PY "$EXPORT" nobias.pt bad.h5 >bad.log 2>&1 || code=$?
  [ $code != 0 ] && grep -q "no bias" bad.log || { cat bad.log; fail "missing bias not reported"; }
  [ ! -e bad.h5 ] || fail "a failed export left bad.h5 behind"
  code=0
  $PY "$EXPORT" torch_trunk.pt bad.h5 --inputs 19 >bad.log 2>&1 || code=$?
  [ $code != 0 ] && grep -q "takes 20 inputs" bad.log || { cat bad.log; fail "--inputs mismatch"; }
  echo "ok: a. PyTorch export round trip"
else
  echo "SKIPPED: python3-torch not installed (PyTorch export round trip, part a)"
  # Parts b-e still run, on a trunk file written directly in the same layout.
  $PY - <<'PY'
import h5py, numpy as np
rng = np.random.default_rng(11)
params, stats, width = [], [], 20
for out in (32, 16):
    params += [rng.normal(0, (2 / width) ** 0.5, out * width), rng.normal(0, 0.1, out),
               rng.uniform(0.5, 1.5, out), rng.normal(0, 0.3, out)]
    stats += [rng.normal(0, 0.5, out), rng.uniform(0.3, 2.0, out)]
    width = out
with h5py.File("trunk.h5", "w") as f:
    f["model/hidden"] = np.array([32, 16], np.int32)
    f["model"].attrs["inputs"] = np.int64(20)
    f["model"].attrs["batchnorm"] = np.int64(1)
    f["trunk/params"] = np.concatenate(params).astype(np.float32)
    f["trunk/bn_stats"] = np.concatenate(stats).astype(np.float32)
    f["trunk"].attrs["layers"] = np.int64(2)
PY
fi

# The documented layout, evaluated independently in numpy (float64), must
# match ens's features too: checks the tool and the layout without torch.
$PY - <<'PY' || fail "numpy reference of the trunk layout"
import h5py, numpy as np
with h5py.File("trunk.h5", "r") as f:
    hidden = list(f["model/hidden"][()]); d = int(f["model"].attrs["inputs"])
    L = int(f["trunk"].attrs["layers"]); p = f["trunk/params"][()].astype(np.float64)
    s = f["trunk/bn_stats"][()].astype(np.float64)
x = h5py.File("rows.h5", "r")["x"][()].astype(np.float64)
po = so = 0
w_in = d
for out in hidden[:L]:
    W = p[po:po + out * w_in].reshape(out, w_in); po += out * w_in
    b = p[po:po + out]; po += out
    g = p[po:po + out]; be = p[po:po + out * 2][out:]; po += 2 * out
    rm = s[so:so + out]; rv = s[so + out:so + 2 * out]; so += 2 * out
    x = np.maximum(g * (x @ W.T + b - rm) / np.sqrt(rv + 1e-5) + be, 0.0)
    w_in = out
assert po == p.size and so == s.size, (po, p.size, so, s.size)
with h5py.File("numpy_features.h5", "w") as f:
    f["features"] = x.astype(np.float32)
PY
"$TOOL" trunk.h5 rows.h5 /x ens_features.h5 >/dev/null || fail "ens-trunk-forward on trunk.h5"
diff=$(max_abs_diff ens_features.h5 numpy_features.h5) || fail "feature comparison: $diff"
echo "numpy reference vs ens trunk features: max abs diff $diff"
within "$diff" 1e-4 || fail "ens trunk features differ from the documented layout by $diff"

# ------------------------------------------- b. training on the exported trunk
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 32,16,8
batchnorm = true
dropout = 0.1
[train]
epochs = 3
batch = 64
lr = 0.05
[ensemble]
members = 3
seed = 5
[trunk]
source = file
file = $WORK/trunk.h5
layers = 2
[output]
path = result.h5
verbose = 1
INI
run_np 0 file1 -c "$WORK/job.ini" || fail "b. ens train with [trunk] source = file"
grep -q "trunk ready" file1/log || fail "b. no 'trunk ready' line"
# A head-only result: members hold only the head's parameters.
$PY - <<'PY' || fail "b. result layout"
import h5py
r = h5py.File("file1/result.h5", "r")
assert int(r["trunk"].attrs["layers"]) == 2, "trunk layers attr"
n_head = 16 * 8 + 8 + 2 * 8 + 8 * 3 + 3  # dense(16,8) bn(8) dense(8,3)
got = r["members/0/params"].shape[0]
assert got == n_head, f"/members/0/params has {got} values, the head has {n_head}"
assert r["trunk/params"].shape[0] == 20 * 32 + 32 + 64 + 32 * 16 + 16 + 32
PY
for bad in "model.hidden=40,16,8:20-32-16:20-40-16" "model.batchnorm=false:with batch norm:without batch norm"; do
  IFS=: read -r set want1 want2 <<<"$bad"
  mkdir -p mismatch
  code=0
  (cd mismatch && "$ENS" train -c "$WORK/job.ini" --set "$set") >mismatch/log 2>&1 || code=$?
  [ $code = 1 ] || { cat mismatch/log; fail "b. --set $set: exit code $code, expected 1"; }
  grep -q -- "$want1" mismatch/log && grep -q -- "$want2" mismatch/log ||
    { cat mismatch/log; fail "b. --set $set: message does not name '$want1' and '$want2'"; }
  [ ! -e mismatch/result.h5 ] || fail "b. a result was written despite the mismatch"
  echo "  exit 1: $(grep -m1 'does not match' mismatch/log)"
done
echo "ok: b. training on an exported trunk; mismatches exit 1"

# ---------------------------------------------------- e. frozen, rank-independent
for ds in params bn_stats; do
  h5diff trunk.h5 file1/result.h5 /trunk/$ds /trunk/$ds ||
    fail "e. /trunk/$ds of the result differs from the trunk file"
done
run_np 2 file2 -c "$WORK/job.ini" || fail "e. 2-rank run with source = file"
same_result file1/result.h5 file2/result.h5 || fail "e. 1-rank and 2-rank results differ"
echo "ok: e. trunk unchanged by training; 1 and 2 ranks identical"

# ---------------------------------------------------------- d. ens predict
"$ENS" predict -m file1/result.h5 -i data.h5 -o pred.h5 >predict.log 2>&1 ||
  { cat predict.log; fail "d. ens predict"; }
# (values only: the result's datasets carry attributes that /pred and /probs lack)
h5diff --exclude-attribute /ensemble/pred file1/result.h5 pred.h5 /ensemble/pred /pred ||
  fail "d. predict /pred != /ensemble/pred"
h5diff --exclude-attribute /ensemble/probs file1/result.h5 pred.h5 /ensemble/probs /probs ||
  fail "d. predict /probs != /ensemble/probs"
echo "ok: d. ens predict reproduces /ensemble/pred and /ensemble/probs exactly"

# ------------------------------------------------- c. pretraining on 2 ranks
run_np 2 pre -c "$WORK/job.ini" --set trunk.source=pretrain --set trunk.file= \
  --set trunk.pretrain_epochs=2 --set trunk.check_sync=true ||
  fail "c. pretraining on 2 ranks with check_sync"
grep -q "pretrain epoch 2/2" pre/log || { cat pre/log; fail "c. no pretraining epochs logged"; }
sums=$(grep -oE "^\[rank [0-9]+\] trunk ready: .*checksum [0-9a-f]{8}" pre/log |
  sed -E 's/^\[rank ([0-9]+)\].*checksum ([0-9a-f]{8})/\1 \2/' | sort)
[ "$(echo "$sums" | awk '{print $1}' | tr '\n' ' ')" = "0 1 " ] ||
  { cat pre/log; fail "c. expected one 'trunk ready' line from each of ranks 0 and 1"; }
[ "$(echo "$sums" | awk '{print $2}' | sort -u | wc -l)" = 1 ] ||
  fail "c. ranks report different trunk checksums: $sums"
stored=$(h5dump -a /trunk/checksum pre/result.h5 | awk '/\(0\)/ {print $2}')
[ "$(printf '%08x' "$stored")" = "$(echo "$sums" | awk 'NR==1 {print $2}')" ] ||
  fail "c. /trunk checksum attribute $stored does not match the logged checksum"
echo "ok: c. pretraining on 2 ranks, one checksum: $(echo "$sums" | awk 'NR==1 {print $2}')"

# The pretrained trunk reused by a new job (dataset = trunk).
run_np 0 reuse -c "$WORK/job.ini" --set "trunk.file=$WORK/pre/result.h5" ||
  fail "c. source = file from a pretrained result"
for ds in params bn_stats; do
  h5diff pre/result.h5 reuse/result.h5 /trunk/$ds /trunk/$ds ||
    fail "c./e. reused /trunk/$ds differs from its source"
done
# dataset = member:0 of a result trained without a trunk: the first blocks of
# member 0's full network become the trunk.
run_np 0 notrunk -c "$WORK/job.ini" --set trunk.source=none --set trunk.file= \
  --set ensemble.members=1 || fail "c. training without a trunk"
run_np 0 member -c "$WORK/job.ini" --set "trunk.file=$WORK/notrunk/result.h5" \
  --set trunk.dataset=member:0 || fail "c. source = file, dataset = member:0"
$PY - <<'PY' || fail "c. trunk from member:0 is not the prefix of member 0's parameters"
import h5py, numpy as np
a, b = h5py.File("notrunk/result.h5", "r"), h5py.File("member/result.h5", "r")
for ds in ("params", "bn_stats"):
    t = b["trunk/" + ds][()]
    assert np.array_equal(t, a["members/0/" + ds][: t.size]), ds
PY
# A head-only member of a trunk result cannot serve as a trunk.
code=0
(cd member && "$ENS" train -c "$WORK/job.ini" --set "trunk.file=$WORK/file1/result.h5" \
  --set trunk.dataset=member:0 --set output.path=bad.h5) >member/bad.log 2>&1 || code=$?
[ $code = 1 ] && grep -q "only the head" member/bad.log ||
  { cat member/bad.log; fail "c. member:0 of a trunk result: exit $code, expected 1"; }
echo "ok: c. trunks from a pretrained result and from member:0 of a plain result"

echo "trunk: all passed in $((SECONDS - T0)) s"
