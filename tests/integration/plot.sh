# scripts/plot.py and scripts/ood.py: figures of a real (tiny) result with
# validation rows and of synthetic full-layout results (search with selection
# and a failed member; regression), exit 1 without a traceback on a missing
# or non-ens file, and OOD inputs and AUROC with known answers.
source "$(dirname "$0")/lib.bash"
PY=${ENS_PYTHON:-/usr/bin/python3}
PLOT="$SRC/scripts/plot.py"
OOD="$SRC/scripts/ood.py"

# check_pngs DIR NAME...: each DIR/NAME is a PNG that decodes to a non-blank
# image of at least 400x300 pixels and 10 kB.
check_pngs() {
  local dir=$1
  shift
  $PY - "$dir" "$@" <<'PYEOF' || fail "PNG check in $dir"
import os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
d = sys.argv[1]
for name in sys.argv[2:]:
    p = os.path.join(d, name)
    if not os.path.isfile(p):
        sys.exit(f"{p}: missing")
    with open(p, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            sys.exit(f"{p}: not a PNG file")
    size = os.path.getsize(p)
    img = plt.imread(p)
    h, w = img.shape[:2]
    if size < 10000 or w < 400 or h < 300 or img[..., :3].std() < 0.02:
        sys.exit(f"{p}: trivial image ({size} bytes, {w}x{h}, std {img[..., :3].std():.3f})")
    print(f"ok: {p} {w}x{h} {size} bytes")
PYEOF
}

# expect_skip LOG NAME: plot.py said it skipped NAME (one line).
expect_skip() {
  [ "$(grep -c "^skipping $2: " "$1")" = 1 ] || { cat "$1"; fail "no 'skipping $2' line in $1"; }
}

# --- a real result: 3 members, validation rows, no hyperparameter search ---
$PY "$SRC/tests/integration/make_data.py" data.h5 400 10 3
cat >job.ini <<INI
[data]
path = $WORK/data.h5
val_fraction = 0.2
[model]
hidden = 16,8
[train]
epochs = 3
batch = 32
[ensemble]
members = 3
[output]
path = result.h5
verbose = 0
INI
run_np 0 . -c job.ini || fail "training the result"
$PY "$PLOT" result.h5 -o plots >plot.log 2>plot.err || { cat plot.log plot.err; fail "plot.py result.h5"; }
cat plot.log
[ -s plot.err ] && { cat plot.err; fail "plot.py wrote to stderr"; }
check_pngs plots size_curve.png reliability.png disagreement.png
# Learning curves come with newer results: either drawn or skipped in one line.
if [ -f plots/learning_curves.png ]; then
  check_pngs plots learning_curves.png
else
  expect_skip plot.log learning_curves.png
fi
# Seed mode, equal hyperparameters: no search figure.
expect_skip plot.log search.png
[ "$(grep -c '\.png$' plot.log)" = "$(ls plots/*.png | wc -l)" ] || fail "printed paths and files differ"

# Default output directory: <result stem>-plots/ beside the result; the data
# file is found through the result's config, or --data.
mkdir -p sub
cp result.h5 sub/r.h5
$PY "$PLOT" sub/r.h5 >default.log || fail "plot.py with the default directory"
grep -qx "sub/r-plots/reliability.png" default.log || { cat default.log; fail "default directory"; }
check_pngs sub/r-plots reliability.png
(cd sub && $PY "$PLOT" r.h5 --data ../data.h5 -o p2 >../data.log) || fail "plot.py --data"
grep -qx "p2/reliability.png" data.log || { cat data.log; fail "--data"; }

# --- synthetic full layout: search + select with failed members; regression ---
$PY "$SRC/tests/integration/make_result.py" search.h5 search-data.h5 --members 10 --failed 2,7 ||
  fail "make_result.py classify"
$PY "$PLOT" search.h5 -o search-plots >search.log 2>&1 || { cat search.log; fail "plot.py search.h5"; }
cat search.log
check_pngs search-plots size_curve.png reliability.png learning_curves.png disagreement.png search.png
$PY "$SRC/tests/integration/make_result.py" regress.h5 regress-data.h5 --task regress --members 5 --failed 1 ||
  fail "make_result.py regress"
$PY "$PLOT" regress.h5 -o regress-plots >regress.log 2>&1 || { cat regress.log; fail "plot.py regress.h5"; }
cat regress.log
check_pngs regress-plots size_curve.png reliability.png learning_curves.png search.png
expect_skip regress.log disagreement.png

# Without test labels the reliability figure is skipped, the others drawn.
mv search-data.h5 search-data.moved
$PY "$PLOT" search.h5 -o nolabels >nolabels.log 2>&1 || { cat nolabels.log; fail "plot.py without labels"; }
expect_skip nolabels.log reliability.png
check_pngs nolabels size_curve.png search.png
mv search-data.moved search-data.h5

# --- errors: exit 1, a message naming the file, no traceback ---
# expect_error PATTERN cmd...
expect_error() {
  local pattern=$1 code=0
  shift
  "$@" >err.out 2>err.txt || code=$?
  [ "$code" = 1 ] || { cat err.out err.txt; fail "'$*' exited $code, expected 1"; }
  grep -qE "$pattern" err.txt || { cat err.txt; fail "'$*': message does not match /$pattern/"; }
  if grep -q Traceback err.txt; then cat err.txt; fail "'$*': traceback"; fi
  echo "ok: exit 1: $(head -c 200 err.txt | tr '\n' ' ')"
}
expect_error "nothere\.h5: no such file" $PY "$PLOT" nothere.h5
expect_error "data\.h5: not an ens result" $PY "$PLOT" data.h5
echo "not hdf5" >text.h5
expect_error "text\.h5: not an HDF5 file" $PY "$PLOT" text.h5
expect_error "missing\.h5 \(--data\): no such file" $PY "$PLOT" result.h5 --data missing.h5 -o never
[ ! -e never ] || fail "plot.py wrote figures before rejecting --data"
$PY -c "
import h5py
with h5py.File('short.h5', 'w') as f:
    f.attrs['members'] = 3
    f['metrics/curve_nll'] = [1.0, 2.0]
"
expect_error "short\.h5: dataset /metrics/curve_nll has shape \[2\], expected \[3\]" $PY "$PLOT" short.h5 -o short
expect_error "nothere\.h5" $PY "$OOD" auroc nothere.h5 result.h5
expect_error "result\.h5 .*no dataset /uncertainty" $PY "$OOD" auroc result.h5 result.h5
$PY "$PLOT" --help | grep -q "RESULT.h5" || fail "plot.py --help"
$PY "$OOD" --help | grep -q "auroc" || fail "ood.py --help"

# --- ood.py auroc on predictions with a known answer ---
$PY - <<'PYEOF'
import h5py, numpy as np
def pred(path, mi, ent, maxp):
    n = len(mi)
    with h5py.File(path, "w") as f:
        f["uncertainty"] = np.stack([ent, np.zeros(n), mi], axis=1).astype(np.float32)
        p = np.stack([maxp, 1 - np.asarray(maxp)], axis=1)
        f["probs"] = p.astype(np.float32)
# mi: OOD 0.3 beats 2 of 4 and ties 1 (2.5), the other three beat all 4:
# (2.5 + 12) / 16 = 0.90625. entropy: the OOD rows are lower, AUROC 0.
# maxprob: every score equal, AUROC 0.5.
pred("in.h5", [0.1, 0.2, 0.3, 0.4], [2.0, 2.1, 2.2, 2.3], [0.9] * 4)
pred("out.h5", [0.3, 0.5, 0.6, 0.7], [1.0, 1.1, 1.2, 1.3], [0.9] * 4)
PYEOF
check_auroc() { # want args...
  local want=$1 got
  shift
  got=$($PY "$OOD" auroc in.h5 out.h5 "$@") || fail "ood.py auroc $*"
  echo "$got"
  [ "$(echo "$got" | awk '{print $2}')" = "$want" ] || fail "ood.py auroc $*: got '$got', expected $want"
}
check_auroc 0.906250
check_auroc 0.906250 --score mi
check_auroc 0.000000 --score entropy
check_auroc 0.500000 --score maxprob

# --- ood.py make: invert (uint8: 255 - x; float: max - x) and shuffle ---
$PY - <<'PYEOF'
import h5py, numpy as np
rng = np.random.default_rng(4)
with h5py.File("u8.h5", "w") as f:
    f["test/x"] = rng.integers(0, 256, (20, 49)).astype(np.uint8)
PYEOF
$PY "$OOD" make u8.h5 -o inv.h5 --kind invert || fail "ood.py make invert"
$PY "$OOD" make u8.h5 -o shuf.h5 --kind shuffle --seed 5 || fail "ood.py make shuffle"
$PY "$OOD" make u8.h5 -o shuf2.h5 --kind shuffle --seed 5 || fail "ood.py make shuffle again"
$PY "$OOD" make data.h5 -o finv.h5 --kind invert || fail "ood.py make invert float"
$PY - <<'PYEOF' || fail "ood.py make output"
import h5py, numpy as np
x = h5py.File("u8.h5")["test/x"][()]
inv = h5py.File("inv.h5")["x"][()]
s, s2 = h5py.File("shuf.h5")["x"][()], h5py.File("shuf2.h5")["x"][()]
assert inv.dtype == np.uint8 and (inv == 255 - x).all(), "invert uint8"
assert s.dtype == np.uint8 and s.shape == x.shape, "shuffle dtype/shape"
assert (np.sort(s, axis=1) == np.sort(x, axis=1)).all(), "shuffle keeps each row's values"
assert (s != x).any() and (s == s2).all(), "shuffle permutes, reproducibly"
fx = h5py.File("data.h5")["test/x"][()]
fi = h5py.File("finv.h5")["x"][()]
assert fi.dtype == fx.dtype and np.allclose(fi, fx.max() - fx), "invert float"
print("ok: ood.py make")
PYEOF

# ens predict reads /x of an OOD file; once it writes /uncertainty, the real
# predictions get an AUROC too.
"$ENS" predict -m result.h5 -i data.h5 -o pred-in.h5 >/dev/null || fail "ens predict in-distribution"
"$ENS" predict -m result.h5 -i finv.h5 -o pred-ood.h5 >/dev/null || fail "ens predict OOD"
$PY "$OOD" auroc pred-in.h5 pred-ood.h5 --score maxprob | grep -qE '^AUROC [01]\.[0-9]{6} ' ||
  fail "ood.py auroc on ens predict output"
if h5ls pred-in.h5 | grep -q uncertainty; then
  $PY "$OOD" auroc pred-in.h5 pred-ood.h5 | grep -qE '^AUROC [01]\.[0-9]{6} ' || fail "ood.py auroc (mi)"
fi
# --- issue 20: one "best member", the select star, vote NLL, log ticks ---
# A real search with select (default [search] weight_decay range 2e-4..1e-3,
# under a decade), a vote ensemble and a regression; the figures are
# inspected through plot.py's own functions.
for spec in "sel search select" "vot seed vote" "reg seed average"; do
  set -- $spec
  data=data.h5
  [ "$1" = reg ] && { [ -f reg.h5 ] || $PY "$SRC/tests/integration/make_regression.py" reg.h5 400 1 3; data=reg.h5; }
  run_np 0 "i20-$1" -c "$WORK/job.ini" --set data.path="$WORK/$data" --set ensemble.members=6 \
    --set ensemble.mode=$2 --set ensemble.combine=$3 --set search.hidden=8 --set output.path=r.h5 ||
    fail "training $1"
  "$ENS" info "i20-$1/r.h5" >"i20-$1/info" || fail "ens info $1"
done
$PY - "$SRC/scripts" <<'PYEOF' || fail "issue 20 figure checks"
import re, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import plot
figs = {}
plot.save = lambda fig, outdir, name: figs.__setitem__(name, fig) or name

def info_best(d):
    m = re.search(r"best single member by validation nll: (\d+)", open(f"{d}/info").read())
    return int(m.group(1)) if m else None

# select: the star sits at the number of members with a positive weight,
# and the best member is the one ens info names (validation NLL).
res = plot.Result("i20-sel/r.h5")
w = res.ds("/ensemble/weights")
k = int((w > 0).sum())
assert k < res.M, f"the selection kept all {res.M} members: the test shows nothing"
plot.fig_size_curve(res, None, None)
for ax in figs["size_curve.png"].axes:
    stars = [l for l in ax.get_lines() if l.get_marker() == "*"]
    assert stars and list(stars[0].get_xdata()) == [k], f"star at {stars and stars[0].get_xdata()}, expected k = {k}"
    labels = [l.get_label() for l in ax.get_lines()]
    best = info_best("i20-sel")
    assert any(f"best single member by validation NLL (member {best}:" in s for s in labels), labels
print(f"ok: select star at k = {k} of {res.M}; best member {best} as ens info says")
plot.fig_reliability(res, None, None)
labels = [l.get_label() for l in figs["reliability.png"].axes[0].get_lines()]
assert any(s.startswith(f"best member {best} by validation NLL") for s in labels), labels
print("ok: reliability names the same best member")

# weight_decay (and every log axis) of search.png: labels do not overlap.
plot.fig_search(res, None, None)
fig = figs["search.png"]
fig.canvas.draw()
r = fig.canvas.get_renderer()
for ax in fig.axes:
    boxes = [t.get_window_extent(r) for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    boxes.sort(key=lambda b: b.x0)
    for a, b in zip(boxes, boxes[1:]):
        assert a.x1 <= b.x0, f"{ax.get_xlabel()}: tick labels overlap"
    if ax.get_xlabel().startswith("weight_decay"):
        assert len(boxes) >= 2, f"weight_decay: {len(boxes)} labelled ticks"
print("ok: search.png tick labels do not overlap")

# vote: the NLL panel says vote shares are not probabilities.
figs.clear()
plot.fig_size_curve(plot.Result("i20-vot/r.h5"), None, None)
ax = figs["size_curve.png"].axes[1]
assert "vote shares" in ax.get_title(), ax.get_title()
assert any("not probabilities" in t.get_text() for t in ax.texts), "no caveat on the vote NLL"
print("ok: vote NLL carries its caveat")

# regression: the coverage figure's best member is the validation one.
res = plot.Result("i20-reg/r.h5")
plot.fig_reliability(res, None, None)
val = res.member_ds("member_val_nll")
want = int(np.argmin(val))
labels = [l.get_label() for l in figs["reliability.png"].axes[0].get_lines()]
assert any(s.startswith(f"best member {want} by validation NLL") for s in labels), labels
print(f"ok: regression coverage: best member {want} by validation NLL")
PYEOF

# Gradient norms: drawn for a real result (with a clip threshold), skipped
# in one line for a result without /members/<k>/grad_norm.
run_np 0 gn -c "$WORK/job.ini" --set train.clip_norm=auto --set train.clip_warmup=10 \
  --set output.path=gn.h5 || fail "training with clip_norm = auto"
$PY "$PLOT" gn/gn.h5 -o gn-plots >gn.log 2>&1 || { cat gn.log; fail "plot.py gn.h5"; }
check_pngs gn-plots grad_norm.png
$PY - <<'PY' || fail "result without grad_norm"
import h5py, shutil
shutil.copy("gn/gn.h5", "nogn.h5")
with h5py.File("nogn.h5", "a") as f:
    for k in f["/members"]:
        if isinstance(f["/members"][k], h5py.Group) and "grad_norm" in f["/members"][k]:
            del f["/members"][k]["grad_norm"]
PY
$PY "$PLOT" nogn.h5 -o nogn-plots >nogn.log 2>&1 || { cat nogn.log; fail "plot.py nogn.h5"; }
expect_skip nogn.log grad_norm.png
echo "ok: grad_norm.png drawn, or skipped without the record"
echo "plot: all checks passed"
