# libens on the reference ensemble (label `long`): 4 members of the
# Fashion-MNIST MLP (jobs/fashion.ini, 1 epoch each). ens predict, the Python
# module (ctypes over libens) and the C example agree bit for bit on the
# 10,000 test rows; with OPENBLAS_NUM_THREADS=1 (the result's [train]
# threads) they also equal the result's own /ensemble/probs; the TorchScript
# export is within 1e-5 of them.
source "$(dirname "$0")/lib.bash"
BUILD=$(dirname "$ENS")
export ENS_LIB=$BUILD/libens.so PYTHONPATH=$SRC/python OPENBLAS_NUM_THREADS=1
FM=/usr/share/datasets/fashion-mnist
"$ENS" import idx --images $FM/train-images-idx3-ubyte.gz --labels $FM/train-labels-idx1-ubyte.gz \
  --test-images $FM/t10k-images-idx3-ubyte.gz --test-labels $FM/t10k-labels-idx1-ubyte.gz \
  -o fashion.h5 >/dev/null || fail "import"
run_np 0 four -c "$SRC/jobs/fashion.ini" --set data.path=$WORK/fashion.h5 --set output.path=r.h5 \
  --set ensemble.members=4 --set train.epochs=1 || fail "4 members"
"$ENS" predict -m four/r.h5 -i fashion.h5 -o p.h5 >/dev/null || fail "ens predict"
$PY "$SRC/scripts/export_torch.py" four/r.h5 -o r.pt >/dev/null || fail "export"
$PY - <<'PY' || fail "libens / Python / TorchScript vs ens predict"
import h5py, numpy as np, torch, ens
torch.set_num_threads(1)
x = h5py.File("fashion.h5", "r")["test/x"][()]
p = h5py.File("p.h5", "r")
r = h5py.File("four/r.h5", "r")
assert np.array_equal(p["probs"][()], r["ensemble/probs"][()]), "ens predict != /ensemble/probs"
out = ens.load("four/r.h5").predict(x)
for k in ("probs", "pred", "uncertainty"):
    assert np.array_equal(out[k], p[k][()]), k
with torch.no_grad():
    t = torch.jit.load("r.pt")(torch.from_numpy(x)).numpy()
d = np.abs(t - p["probs"][()]).max()
print(f"python == ens predict == /ensemble/probs bit for bit; TorchScript max abs diff {d:.3g}")
assert d <= 1e-5
PY
echo "long_libens_fashion: all passed"
