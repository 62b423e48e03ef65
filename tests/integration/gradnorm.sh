# Gradient norms and clip_norm = auto: the per-epoch record in
# /members/<k>/grad_norm (shape, order of the statistics, steps, clipped
# counts, the c in force), the warm-up rule's c against the warm-up's
# recorded median, `ens info`'s table, bitwise results on 1 and 3 ranks and
# across a stop and resume (a stop inside the warm-up, before c settles, and
# under AutoClip, whose c never settles), and config errors.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 2000 16 3
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 32,16
batchnorm = false
[train]
epochs = 4
batch = 40
lr = 0.5
clip_norm = auto
clip_warmup = 50
[ensemble]
members = 3
[output]
path = result.h5
verbose = 1
INI
# 2000 rows, batch 40: 50 steps per epoch, so the warm-up is epoch 1.
run_np 0 auto -c "$WORK/job.ini" || fail "clip_norm = auto run"
run_np 0 fixed -c "$WORK/job.ini" --set train.clip_norm=0.7 || fail "fixed clip_norm run"
run_np 0 off -c "$WORK/job.ini" --set train.clip_norm=0 || fail "unclipped run"
$PY - <<'PY' || fail "grad_norm records"
import h5py, numpy as np
def rec(path, k):
    d = h5py.File(path)[f"/members/{k}/grad_norm"]
    return d[()].astype(np.float64), {n: (v.decode() if isinstance(v, bytes) else v) for n, v in d.attrs.items()}
for name in ("auto", "fixed", "off"):
    f = h5py.File(f"{name}/result.h5")
    for k in range(3):
        g, a = rec(f"{name}/result.h5", k)
        assert g.shape == (4, 8), g.shape
        assert a["columns"] == "min,median,p90,p99,max,steps,clipped,clip_norm", a
        assert a["clip"] == {"auto": "auto", "fixed": "fixed", "off": "off"}[name], a
        assert (np.diff(g[:, :5], axis=1) >= 0).all(), (name, k, g)  # min <= ... <= max
        assert (g[:, 0] > 0).all(), g
        assert (g[:, 5] == 50).all() and g[:, 5].sum() == f[f"/members/{k}"].attrs["steps"], g
        assert ((g[:, 6] >= 0) & (g[:, 6] <= g[:, 5])).all(), g
        if name == "off":
            assert (g[:, 6] == 0).all() and (g[:, 7] == 0).all(), g
        if name == "fixed":
            assert (g[:, 7] == np.float32(0.7)).all(), g
            # a step is clipped exactly when its norm exceeds c
            assert g[0, 6] == 50 or g[0, 4] > 0.7 or g[0, 6] == 0
            if g[0, 0] > 0.7: assert g[0, 6] == 50, g
            if g[0, 4] <= 0.7: assert g[0, 6] == 0, g
        if name == "auto":
            # the warm-up (epoch 1) is not clipped and has no c; then
            # c = 0.5 x the warm-up's median norm, the same every epoch
            assert g[0, 6] == 0 and g[0, 7] == 0, g
            c = g[1:, 7]
            assert (c == c[0]).all() and abs(c[0] - 0.5 * g[0, 1]) <= 1e-6 * c[0], g
print("ok: grad_norm records of auto, fixed and off")
PY
"$ENS" info auto/result.h5 >info.txt || fail "ens info"
grep -q "gradient norm before clipping, last epoch (clip_norm: auto" info.txt || { cat info.txt; fail "ens info: no gradient-norm table"; }
[ "$(grep -cE "^  [0-2] .* [0-9]+ of 200 " info.txt)" = 3 ] || { cat info.txt; fail "ens info: not one row per member"; }
echo "ok: ens info shows the gradient norms"
# Both rules, and a fixed c: identical on 1 and 3 ranks.
for rule in "warmup 50" "autoclip 0"; do
  set -- $rule
  run_np 3 "$1-np3" -c "$WORK/job.ini" --set train.clip_warmup=$2 || fail "$1 on 3 ranks"
  [ "$1" = warmup ] && ref=auto || { run_np 0 "$1-np1" -c "$WORK/job.ini" --set train.clip_warmup=$2 || fail "$1"; ref="$1-np1"; }
  same_result "$ref/result.h5" "$1-np3/result.h5" || fail "$1: 1 and 3 ranks differ"
  echo "ok: $1 identical on 1 and 3 ranks"
done
# Stop and resume: a warm-up of 150 of 200 epochs (the stop, sent once the
# first epoch line is out, lands in it, before c settles) and AutoClip. An
# epoch of this small network takes milliseconds, so the members run 200
# epochs for the stop to arrive well before the end, however fast the
# machine.
$PY "$SRC/tests/integration/make_data.py" big.h5 8000 16 3
stop_resume warmup -c "$WORK/job.ini" --set data.path="$WORK/big.h5" --set train.epochs=200 \
  --set train.clip_warmup=30000
# Every unit that was resumed went on from inside the warm-up (before epoch 150).
grep -E "resumed at epoch [0-9]+," stop-warmup/log | grep -q . &&
  ! grep -E "resumed at epoch [0-9]+," stop-warmup/log |
  sed -E 's/.*resumed at epoch ([0-9]+),.*/\1/' | awk '$1 >= 150 {bad = 1} END {exit !bad}' ||
  { cat stop-warmup/log; fail "the stop was not inside the warm-up"; }
stop_resume autoclip -c "$WORK/job.ini" --set data.path="$WORK/big.h5" --set train.epochs=200 \
  --set train.clip_warmup=0
# Config: the word auto only where it is meant, keys of the rule in use.
code=0
"$ENS" train -c "$WORK/job.ini" --set train.clip_norm=often >err.txt 2>&1 || code=$?
[ $code = 1 ] && grep -q "clip_norm: expected auto or a number >= 0, got 'often'" err.txt ||
  { cat err.txt; fail "bad clip_norm: exit $code"; }
code=0
"$ENS" train -c "$WORK/job.ini" --set train.clip_value=auto >err.txt 2>&1 || code=$?
[ $code = 1 ] || { cat err.txt; fail "clip_value = auto accepted"; }
run_np 0 warn -c "$WORK/job.ini" --set train.clip_norm=1 --set train.clip_factor=2 || fail "clip_factor with a fixed c"
grep -q "clip_factor = 2 is not used" warn/log || { cat warn/log; fail "no warning for clip_factor"; }
echo "gradnorm: all passed"
