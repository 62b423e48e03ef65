# Regression ensembles: heteroscedastic data with a known noise level, the
# Gaussian and MSE heads, Adam, determinism on 1, 2 and 3 ranks and across
# stop + --resume, predict, several targets, bootstrap and snapshot modes,
# and the errors of issue 9.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_regression.py" data.h5 3000 1 2
cat >job.ini <<INI
[data]
path = $WORK/data.h5
val_fraction = 0.1
[model]
hidden = 64,64
batchnorm = false
loss = gaussian
[train]
epochs = 30
batch = 64
optimizer = adam
lr = 0.005
weight_decay = 0
schedule = cosine
[ensemble]
members = 5
seed = 5
[output]
path = result.h5
verbose = 0
INI
for np in 0 2 3; do
  run_np $np "np$np" -c "$WORK/job.ini" || fail "regression on $np ranks"
done
for np in 2 3; do
  same_result np0/result.h5 "np$np/result.h5" || fail "regression: 1 and $np ranks differ"
done
echo "ok: gaussian regression identical on 1, 2, 3 ranks"
for d in /ensemble/mean /ensemble/var /ensemble/var_aleatoric /ensemble/var_epistemic /members/mean /members/var; do
  h5ls "np0/result.h5$d" >/dev/null || fail "no $d"
done
# Coverage of the 90 % interval and the aleatoric sigma against the true one.
$PY - np0/result.h5 data.h5 <<'PY' || fail "uncertainty check"
import sys, h5py, numpy as np
r, d = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
cov = r["metrics/ensemble"].attrs["coverage_90"]
s_pred = np.sqrt(r["ensemble/var_aleatoric"][:, 0])
corr = np.corrcoef(s_pred, d["test/sigma"][:])[0, 1]
mu = r["ensemble/mean"][:, 0]
rmse = np.sqrt(np.mean((mu - d["test/y"][:]) ** 2))
print(f"coverage_90 {cov:.3f}  corr(aleatoric sigma, true sigma) {corr:.3f}  rmse {rmse:.3f} "
      f"(stored {r['metrics/ensemble'].attrs['rmse']:.3f})")
assert 0.85 <= cov <= 0.95, cov
assert corr > 0.8, corr
assert abs(rmse - r["metrics/ensemble"].attrs["rmse"]) < 1e-3 * rmse
PY
"$ENS" info np0/result.h5 >info.txt && grep -q "coverage_90" info.txt || fail "ens info regression table"
"$ENS" predict -m np0/result.h5 -i data.h5 -o pred.h5 >pred.log || fail "predict"
h5diff np0/result.h5 pred.h5 /ensemble/mean /mean || fail "predict /mean differs"
h5diff np0/result.h5 pred.h5 /ensemble/var /var || fail "predict /var differs"
h5diff np0/result.h5 pred.h5 /ensemble/var_epistemic /var_epistemic || fail "predict epistemic differs"
grep -q "rmse" pred.log || fail "predict does not score against /test/y"
echo "ok: predict reproduces mean and variances"
# The NLL curve and val_nll are Gaussian NLLs, not another metric.
$PY - np0/result.h5 data.h5 <<'PY' || fail "nll outputs"
import sys, h5py, numpy as np
r = h5py.File(sys.argv[1], "r")
m = r["metrics"]
assert abs(m["curve_nll"][0] - m["member_nll"][0]) < 1e-5, (m["curve_nll"][0], m["member_nll"][0])
assert abs(m["curve_nll"][-1] - m["ensemble"].attrs["nll"]) < 1e-5
assert abs(m["ensemble"].attrs["val_nll"] - m["ensemble"].attrs["val_mae"]) > 1e-3 if "val_mae" in m["ensemble"].attrs else True
PY
# Stop + resume with Adam's state.
stop_resume adam -c "$WORK/job.ini" --set output.verbose=1 --set train.epochs=40
# MSE head: epistemic variance only.
run_np 2 mse -c "$WORK/job.ini" --set model.loss=mse --set train.epochs=10 || fail "mse"
$PY - mse/result.h5 <<'PY' || fail "mse variances"
import sys, h5py, numpy as np
r = h5py.File(sys.argv[1], "r")
assert np.all(r["ensemble/var_aleatoric"][:] == 0)
assert np.all(r["ensemble/var_epistemic"][:] > 0)
# No variance to score: no prior_nll, and no member named as no better than it.
assert "prior_nll" not in r["metrics/ensemble"].attrs
PY
grep -q "no better than the prior" mse/log && { cat mse/log; fail "mse members named as no better than the prior"; }
# Two targets, bootstrap (out-of-bag RMSE), snapshot, calibration, select.
$PY "$SRC/tests/integration/make_regression.py" data2.h5 1500 2 3
run_np 2 two -c "$WORK/job.ini" --set data.path="$WORK/data2.h5" --set train.epochs=8 \
  --set ensemble.mode=bootstrap --set ensemble.calibrate=temperature || fail "two targets"
h5ls two/result.h5/ensemble/mean | grep -q "{750, 2}" || fail "two targets: shape"
h5dump -a /metrics/ensemble/oob_rmse two/result.h5 >/dev/null || fail "no oob_rmse"
h5dump -a /ensemble/variance_scale two/result.h5 >/dev/null || fail "no variance_scale"
run_np 2 snap -c "$WORK/job.ini" --set train.epochs=8 --set ensemble.mode=snapshot \
  --set ensemble.snapshots=4 --set ensemble.members=4 --set ensemble.combine=select || fail "snapshot select"
h5dump -d /ensemble/weights snap/result.h5 >/dev/null || fail "snapshot select: no weights"
run_np 0 params -c "$WORK/job.ini" --set train.epochs=8 --set ensemble.combine=params || fail "params"
# Targets the networks learn unstandardized (the loaded buffer is shared).
run_np 2 raw -c "$WORK/job.ini" --set train.epochs=3 --set data.standardize_y=false || fail "standardize_y = false"
grep -qiE "double free|corruption|Sanitizer" raw/log && fail "standardize_y = false: memory error"
grep -qE "^warning: [0-9]+ finished members? (is|are) no better than the prior .*that of predicting the training targets' mean and variance for every row" raw/log ||
  { cat raw/log; fail "standardize_y = false: members worse than the targets' mean not named"; }
h5ls raw/result.h5/model/target_mean >/dev/null 2>&1 && fail "standardize_y = false stored target_mean"
echo "ok: mse, two targets + bootstrap + calibration, snapshot + select, params"
# Errors.
code=0
"$ENS" train -c job.ini --set ensemble.combine=vote >err1 2>&1 || code=$?
[ $code = 1 ] && grep -q "votes need classes" err1 || { cat err1; fail "vote for regression"; }
code=0
"$ENS" train -c job.ini --set model.task=classify >err2 2>&1 || code=$?
[ $code = 1 ] && grep -q "task = classify" err2 || { cat err2; fail "classify on float targets"; }
$PY - <<'PY'
import h5py, numpy as np
with h5py.File("nan.h5", "w") as f:
    f["train/x"] = np.zeros((10, 2), np.float32); y = np.zeros(10); y[3] = np.nan
    f["train/y"] = y; f["test/x"] = np.zeros((4, 2), np.float32); f["test/y"] = np.zeros(4)
PY
code=0
"$ENS" train -c job.ini --set data.path=nan.h5 >err3 2>&1 || code=$?
[ $code = 1 ] && grep -q "non-finite target" err3 || { cat err3; fail "NaN target"; }
# Integer labels with task = regress are regression targets.
$PY "$SRC/tests/integration/make_data.py" cls.h5 300 6 1
run_np 0 intreg -c "$WORK/job.ini" --set data.path="$WORK/cls.h5" --set model.task=regress \
  --set train.epochs=3 || fail "task = regress on integer labels"
echo "regress: all passed"
