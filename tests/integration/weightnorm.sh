# Weight normalization in every mode: bitwise the same on 1 and 3 ranks
# (seed with the data-dependent init, bootstrap, snapshot, params), across a
# stop and resume, `ens predict` reproduces /ensemble/pred, combine = params
# stores the average of the members' effective weights, and one SGD step
# with weight decay matches PyTorch's torch.nn.utils.weight_norm (decay on
# v, g and b) when torch is installed.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 600 12 3
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 24,12
batchnorm = false
weightnorm = true
[train]
epochs = 3
batch = 32
lr = 0.1
[ensemble]
members = 3
seed = 5
[output]
path = result.h5
verbose = 1
INI
for mode in "seed average data" "bootstrap vote norm" "snapshot average norm" "seed params norm"; do
  set -- $mode
  sets=(--set ensemble.mode=$1 --set ensemble.combine=$2 --set model.weightnorm_init=$3)
  [ "$1" = snapshot ] && sets+=(--set ensemble.snapshots=3 --set train.schedule=cyclic --set train.cycles=3)
  run_np 0 "$1-$2-np1" -c "$WORK/job.ini" "${sets[@]}" || fail "$1/$2"
  run_np 3 "$1-$2-np3" -c "$WORK/job.ini" "${sets[@]}" || fail "$1/$2 on 3 ranks"
  same_result "$1-$2-np1/result.h5" "$1-$2-np3/result.h5" || fail "$1/$2: 1 and 3 ranks differ"
  grep -q "wndense(12,24) relu(24) wndense(24,12) relu(12) wndense(12,3)" <("$ENS" info "$1-$2-np1/result.h5") ||
    fail "$1/$2: ens info does not show the weight-normalized layers"
  echo "ok: $1/$2 (weightnorm_init = $3) identical on 1 and 3 ranks"
done
# predict reproduces the result's predictions (average and params).
for r in seed-average seed-params; do
  comb=${r#seed-}
  "$ENS" predict -m "$r-np1/result.h5" -i data.h5 -o "pred-$r.h5" --combine $comb >/dev/null ||
    fail "predict $r"
  $PY - "$r-np1/result.h5" "pred-$r.h5" <<'PY' || fail "predict $r differs"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
assert (a["/ensemble/pred"][()] == b["/pred"][()]).all()
PY
done
echo "ok: predict reproduces /ensemble/pred (average, params)"
# params: /ensemble/params holds v = the average of the members' w, g = ||v||.
$PY - seed-params-np1/result.h5 <<'PY' || fail "params average of effective weights"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1])
def layers(p, sizes):
    out, o = [], 0
    for i, n in sizes:
        v = p[o:o + n * i].reshape(n, i); g = p[o + n * i:o + n * i + n]; b = p[o + n * i + n:o + n * i + 2 * n]
        out.append((v, g, b)); o += n * i + 2 * n
    assert o == len(p)
    return out
sizes = [(12, 24), (24, 12), (12, 3)]
eff = lambda v, g: g[:, None] * v / np.linalg.norm(v.astype(np.float64), axis=1)[:, None]
mem = [layers(f[f"/members/{k}/params"][()].astype(np.float64), sizes) for k in range(3)]
avg = layers(f["/ensemble/params"][()].astype(np.float64), sizes)
for li, (v, g, b) in enumerate(avg):
    want = np.mean([eff(m[li][0], m[li][1]) for m in mem], axis=0)
    assert np.allclose(eff(v, g), want, atol=1e-6, rtol=1e-5), li
    assert np.allclose(g, np.linalg.norm(v, axis=1), rtol=1e-6), li
    assert np.allclose(b, np.mean([m[li][2] for m in mem], axis=0), atol=1e-7), li
    # and it is not the average of v and g taken apart
    assert not np.allclose(v, np.mean([m[li][0] for m in mem], axis=0), atol=1e-4), li
print("ok: /ensemble/params averages the members' effective weights")
PY
# Stop and resume (data-dependent init: the resumed run must not redo it).
# An epoch of this network takes milliseconds: 100 epochs, so that the stop
# lands mid-run however fast the machine.
$PY "$SRC/tests/integration/make_data.py" big.h5 8000 16 3
stop_resume wn -c "$WORK/job.ini" --set data.path="$WORK/big.h5" --set model.weightnorm_init=data \
  --set train.epochs=100
# One SGD step against PyTorch: ens's initial parameters come from a run
# with lr 1e-30 (the step leaves them as they are), the stepped ones from lr
# 0.1; torch takes the same step from the former with weight_norm layers and
# SGD(weight_decay) on all its parameters (weight_v, weight_g, bias).
if ! $PY -c "import torch" 2>/dev/null; then
  echo "torch not installed: the PyTorch comparison is skipped"
else
  cat >one.ini <<INI
[data]
path = $WORK/data.h5
standardize = false
[model]
hidden = 16
batchnorm = false
weightnorm = true
[train]
epochs = 1
batch = 600
momentum = 0
nesterov = false
schedule = constant
weight_decay = 0.01
[output]
verbose = 0
INI
  run_np 0 step0 -c "$WORK/one.ini" --set train.lr=1e-30 --set output.path=r.h5 || fail "step0"
  run_np 0 step1 -c "$WORK/one.ini" --set train.lr=0.1 --set output.path=r.h5 || fail "step1"
  $PY - <<'PY' || fail "one step differs from PyTorch's weight_norm"
import h5py, numpy as np, torch
torch.set_default_dtype(torch.float64)
d = h5py.File("data.h5")
x = torch.tensor(d["/train/x"][()].astype(np.float64)); y = torch.tensor(d["/train/y"][()].astype(np.int64))
p0 = h5py.File("step0/r.h5")["/members/0/params"][()].astype(np.float64)
p1 = h5py.File("step1/r.h5")["/members/0/params"][()].astype(np.float64)
sizes = [(12, 16), (16, 3)]
net, o = [], 0
for i, n in sizes:
    lin = torch.nn.utils.weight_norm(torch.nn.Linear(i, n), dim=0)
    with torch.no_grad():
        lin.weight_v.copy_(torch.tensor(p0[o:o + n * i].reshape(n, i)))
        lin.weight_g.copy_(torch.tensor(p0[o + n * i:o + n * i + n].reshape(n, 1)))
        lin.bias.copy_(torch.tensor(p0[o + n * i + n:o + n * i + 2 * n]))
    net.append(lin); o += n * i + 2 * n
model = torch.nn.Sequential(net[0], torch.nn.ReLU(), net[1])
opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.01)
loss = torch.nn.functional.cross_entropy(model(x), y)
loss.backward(); opt.step()
got, o = [], 0
for (i, n), lin in zip(sizes, net):
    got += [lin.weight_v.detach().numpy().ravel(), lin.weight_g.detach().numpy().ravel(), lin.bias.detach().numpy().ravel()]
got = np.concatenate(got)
step = np.abs(p1 - p0).max()
err = np.abs(got - p1).max()
print(f"PyTorch weight_norm step: largest parameter change {step:.3g}, largest difference {err:.3g}")
assert step > 1e-3 and err < 1e-3 * step, (step, err)
# Decay on the effective w instead (the other convention) would differ.
PY
  echo "ok: one step matches PyTorch's weight_norm with weight decay on v, g and b"
fi
echo "weightnorm: all passed"
