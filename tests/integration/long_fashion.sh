# Full-size accuracy checks on Fashion-MNIST (label `long`; minutes, not
# seconds): the reference workload reaches >= 90.0 % with one member, and
# 4 seed members on 2 ranks reach >= 90.7 % with an ensemble NLL below the
# mean member NLL.
source "$(dirname "$0")/lib.bash"
FM=/usr/share/datasets/fashion-mnist
"$ENS" import idx --images $FM/train-images-idx3-ubyte.gz --labels $FM/train-labels-idx1-ubyte.gz \
  --test-images $FM/t10k-images-idx3-ubyte.gz --test-labels $FM/t10k-labels-idx1-ubyte.gz \
  -o fashion.h5 >/dev/null || fail "import"
run_np 0 one -c "$SRC/jobs/fashion.ini" --set data.path=$WORK/fashion.h5 --set output.path=r.h5 ||
  fail "reference workload"
run_np 2 four -c "$SRC/jobs/fashion-seed.ini" --set data.path=$WORK/fashion.h5 \
  --set output.path=r.h5 || fail "4 seed members"
$PY - <<PYEOF || fail "accuracy targets"
import h5py, numpy as np
with h5py.File("one/r.h5") as f:
    acc = f["metrics/ensemble"].attrs["accuracy"]
    print(f"one member: test accuracy {acc:.4f} (target >= 0.900)")
    assert acc >= 0.900
with h5py.File("four/r.h5") as f:
    e = f["metrics/ensemble"].attrs
    nll = f["metrics/member_nll"][:]
    print(f"4 members: accuracy {e['accuracy']:.4f} (target >= 0.907), "
          f"NLL {e['nll']:.4f} vs mean member {nll.mean():.4f}, ECE {e['ece']:.4f}")
    assert e["accuracy"] >= 0.907 and e["nll"] < nll.mean()
PYEOF
echo "long_fashion: all passed"
