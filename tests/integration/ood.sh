# scripts/ood.py auroc (issue 20, item 12): the two prediction files must
# come from the same model and settings (another model, another combine
# rule, MC-dropout passes on one side: exit 1 naming the difference), and
# regression predictions are scored by the epistemic variance (default) or
# the predictive variance, each target in units of its in-distribution mean.
source "$(dirname "$0")/lib.bash"
OOD="$SRC/scripts/ood.py"
$PY "$SRC/tests/integration/make_data.py" cls.h5 600 8 3
$PY "$SRC/tests/integration/make_regression.py" reg.h5 600 2 3
cat >job.ini <<INI
[model]
hidden = 16
dropout = 0.1
[train]
epochs = 3
batch = 32
[ensemble]
members = 3
[output]
verbose = 0
INI
for t in cls reg; do
  "$ENS" train -c job.ini --set data.path=$t.h5 --set output.path=$t-r.h5 >/dev/null || fail "train $t"
  "$ENS" train -c job.ini --set data.path=$t.h5 --set output.path=$t-other.h5 --set ensemble.seed=9 >/dev/null ||
    fail "train $t (another model)"
  $PY "$OOD" make $t.h5 -o $t-ood.h5 --kind invert >/dev/null || fail "ood.py make $t"
  "$ENS" predict -m $t-r.h5 -i $t.h5 -o $t-in.p.h5 >/dev/null || fail "predict $t in"
  "$ENS" predict -m $t-r.h5 -i $t-ood.h5 -o $t-ood.p.h5 >/dev/null || fail "predict $t ood"
  "$ENS" predict -m $t-other.h5 -i $t-ood.h5 -o $t-ood-other.p.h5 >/dev/null || fail "predict $t ood, other model"
  "$ENS" predict -m $t-r.h5 -i $t-ood.h5 -o $t-ood-mc.p.h5 --mc-samples 2 >/dev/null 2>&1 || fail "predict $t ood, mc"
done
"$ENS" predict -m cls-r.h5 -i cls-ood.h5 -o cls-ood-vote.p.h5 --combine vote >/dev/null || fail "predict vote"

# expect_error PATTERN cmd...: exit 1, the message matches, no traceback.
expect_error() {
  local pattern=$1 code=0
  shift
  "$@" >err.out 2>err.txt || code=$?
  [ "$code" = 1 ] || { cat err.out err.txt; fail "'$*' exited $code, expected 1"; }
  grep -qE -- "$pattern" err.txt || { cat err.txt; fail "'$*': message does not match /$pattern/"; }
  grep -q Traceback err.txt && { cat err.txt; fail "'$*': traceback"; }
  echo "ok: exit 1: $(cat err.txt)"
}
# auroc_ok ARGS... -> prints the line; checks its form.
auroc_ok() {
  local out
  out=$($PY "$OOD" auroc "$@") || fail "ood.py auroc $*"
  echo "$out" | grep -qE '^AUROC [01]\.[0-9]{6} score=[a-z]+ in=[0-9]+ ood=[0-9]+$' || fail "ood.py auroc $*: '$out'"
  echo "ok: $out"
}

# Same model and settings: scores.
auroc_ok cls-in.p.h5 cls-ood.p.h5
auroc_ok reg-in.p.h5 reg-ood.p.h5 | grep -q "score=epistemic" || fail "regression default score"
auroc_ok reg-in.p.h5 reg-ood.p.h5 --score var | grep -q "score=var" || fail "regression --score var"
# Different model or settings: refused, naming what differs.
expect_error "cls-in.p.h5 and cls-ood-other.p.h5 differ in the model's configuration" \
  $PY "$OOD" auroc cls-in.p.h5 cls-ood-other.p.h5
expect_error "reg-in.p.h5 and reg-ood-other.p.h5 differ in the model's configuration" \
  $PY "$OOD" auroc reg-in.p.h5 reg-ood-other.p.h5
expect_error "differ in combine rule \(attribute combine: average vs vote\)" \
  $PY "$OOD" auroc cls-in.p.h5 cls-ood-vote.p.h5
expect_error "differ in MC-dropout passes \(--mc-samples\) \(attribute mc_samples: 0 vs 2\)" \
  $PY "$OOD" auroc reg-in.p.h5 reg-ood-mc.p.h5
expect_error "cls-in.p.h5 holds class predictions and reg-ood.p.h5 regression predictions" \
  $PY "$OOD" auroc cls-in.p.h5 reg-ood.p.h5
expect_error "regression predictions have no mi score: use --score epistemic \(default\) or var" \
  $PY "$OOD" auroc reg-in.p.h5 reg-ood.p.h5 --score mi
expect_error "--score var is for regression predictions" $PY "$OOD" auroc cls-in.p.h5 cls-ood.p.h5 --score var

# Known answer: target 0's variance is 100x target 1's; in units of each
# target's in-distribution mean the OOD rows are higher on every row (1.0),
# while the raw sum would mix them up.
$PY - <<'PYEOF'
import h5py, numpy as np
def pred(path, v0, v1):
    with h5py.File(path, "w") as f:
        v = np.stack([v0, v1], axis=1).astype(np.float32)
        f["mean"] = np.zeros_like(v); f["var"] = v + 1; f["var_aleatoric"] = np.ones_like(v)
        f["var_epistemic"] = v
pred("kin.h5", [90, 100, 110], [1, 1, 1])
pred("kood.h5", [95, 95, 95], [3, 3, 3])
PYEOF
[ "$($PY "$OOD" auroc kin.h5 kood.h5 | awk '{print $2}')" = 1.000000 ] || fail "per-target scaling"
echo "ok: two targets in units of their in-distribution means: AUROC 1.000000"
echo "ood: all passed"
