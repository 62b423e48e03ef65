# The conv architecture generator of a search (issue 16 point 7): [search]
# conv_blocks and its companion keys draw each member's depth, widths,
# kernel sizes, batch norm, pooling and dense head from (seed, k).
#  a. identical on 1, 2 and 3 ranks; each member's list printed at start and
#     recorded as /members/<k> layers; members differ in architecture; the
#     depth is limited by the 12x12 image before the draw (at most 2 blocks),
#     and the same draws come out whatever slice of the members a job trains;
#  b. select + temperature calibration + MC-dropout (dropout drawn per
#     member, placed before the output): ens predict reproduces the
#     ensemble, --mc-samples is reproducible and differs from the plain pass;
#     libens (python/ens.py) gives ens predict's bits; ens info shows the
#     generator and each member's list; export_torch.py matches ens predict;
#  c. merge of two slices equals the one run; stop + --resume identical;
#  d. config errors: a depth the image can never take (file:line and key, or
#     the --set), flat rows, a malformed value, [model] layers or a trunk
#     beside the generator; nothing written.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_images.py" img.h5 240 12 0 9
cat >job.ini <<INI
[data]
path = $WORK/img.h5
val_fraction = 0.2
standardize_by = global
[train]
epochs = 3
[ensemble]
members = 6
mode = search
combine = select
calibrate = temperature
mc_samples = 3
seed = 5
[search]
batch = 32
dropout = 0.05, 0.2
conv_blocks = 1, 4
conv_width = 4, 16
conv_kernel = 3, 5
conv_per_block = 1, 2
conv_bn = true, false
pool = max, avg
conv_end = flatten, gap
dense = 0 | 16 | 32
[output]
path = result.h5
verbose = 1
INI
for np in 0 2 3; do
  run_np $np "np$np" -c "$WORK/job.ini" || fail "conv search on $np ranks"
done
for np in 2 3; do
  same_result np0/result.h5 "np$np/result.h5" || fail "conv search: 1 and $np ranks differ"
done
echo "ok: a. conv search + select + temperature identical on 1, 2, 3 ranks"
grep -q "^\[search\] conv_blocks = 1, 4: the 12x12 input allows at most 2 blocks" np0/log ||
  { cat np0/log; fail "no line saying the image limits the depth"; }
$PY - np0/log np0/result.h5 <<'PY' || fail "the drawn architectures"
import re, sys, h5py
log, f = open(sys.argv[1]).read(), h5py.File(sys.argv[2], "r")
lists, params = [], set()
for k in range(6):
    m = re.search(rf"^member {k} draws: (.*) \((\d+) parameters\)$", log, re.M)
    assert m, f"member {k}: no 'draws' line at start"
    rec = f[f"members/{k}"].attrs["layers"]
    rec = rec.decode() if isinstance(rec, bytes) else rec
    assert rec == m.group(1), (k, rec, m.group(1))
    assert f[f"members/{k}/params"].shape[0] == int(m.group(2)), k
    items = [i.strip() for i in rec.split(",")]
    pools = sum(i.startswith(("maxpool", "avgpool")) for i in items)
    assert 1 <= pools <= 2, (k, "depth not limited to what 12x12 allows", rec)
    assert items[-1].startswith("dropout "), (k, "no dropout before the output", rec)
    kernels = {int(i.split()[2]) for i in items if i.startswith("conv ")}
    assert kernels <= {3, 5}, (k, rec)
    lists.append(rec)
    params.add(f[f"members/{k}/params"].shape[0])
assert len(set(lists)) == 6 and len(params) >= 4, (lists, params)
print("ok: 6 members, 6 architectures, depth <= 2:", *lists, sep="\n  ")
PY
# The draws depend on (seed, k) only: a slice draws the same lists.
run_np 0 slice -c "$WORK/job.ini" --set ensemble.first_member=4 --set ensemble.count=2 \
  --set output.path=b.h5 || fail "slice 4-5"
for k in 4 5; do
  a=$(h5dump -a /members/$k/layers np0/result.h5 | grep '(0)')
  b=$(h5dump -a /members/$k/layers slice/b.h5 | grep '(0)')
  [ "$a" = "$b" ] || fail "member $k draws another architecture in a slice: $a / $b"
done
echo "ok: a. a slice draws the same architectures"

# ---------------------------------------------- b. predict, MC-dropout, libens
cd np0
"$ENS" info result.h5 >info.txt || fail "ens info"
grep -q "architecture  drawn per member by the \[search\] conv generator" info.txt &&
  grep -q "conv generator: conv_blocks 1, 4; conv_width 4, 16" info.txt &&
  grep -qE "^  5 .*layers conv " info.txt || { cat info.txt; fail "ens info lacks the generator"; }
"$ENS" predict -m result.h5 -i ../img.h5 -o pred.h5 >/dev/null || fail "predict"
h5diff result.h5 pred.h5 /ensemble/pred /pred || fail "predict /pred differs"
h5diff --exclude-attribute /ensemble/probs result.h5 pred.h5 /ensemble/probs /probs ||
  fail "predict /probs differs"
"$ENS" predict -m result.h5 -i ../img.h5 -o mc1.h5 --mc-samples 4 >/dev/null || fail "predict mc"
"$ENS" predict -m result.h5 -i ../img.h5 -o mc2.h5 --mc-samples 4 >/dev/null || fail "predict mc"
h5diff mc1.h5 mc2.h5 /probs /probs || fail "MC-dropout predictions not reproducible"
if h5diff -q pred.h5 mc1.h5 /probs /probs; then fail "MC-dropout changed nothing"; fi
h5dump -a /metrics/ensemble/mc_nll result.h5 >/dev/null || fail "no MC-dropout metrics in train"
h5dump -a /ensemble/temperature result.h5 >/dev/null || fail "no temperature"
echo "ok: b. predict reproduces select + calibration; MC-dropout reproducible and different"
BUILD=$(dirname "$ENS")
# libens leaves the BLAS thread count to its caller; ens predict runs the
# result's [train] threads (1), so the caller asks for one thread too.
OPENBLAS_NUM_THREADS=1 ENS_LIB=$BUILD/libens.so PYTHONPATH=$SRC/python $PY - <<'PY' || fail "libens differs from ens predict"
import h5py, numpy as np, ens
m = ens.load("result.h5")
x = h5py.File("../img.h5", "r")["test/x"][()]
for kw, ref in [({}, "pred.h5"), ({"mc_samples": 4}, "mc1.h5")]:
    out, r = m.predict(x, **kw), h5py.File(ref, "r")
    for k, v in out.items():
        assert np.array_equal(v, r[k][()]), (kw, k)
assert m.default_rule == "select" and m.members == 6
print("ok: libens == ens predict (plain and MC-dropout)")
PY
$PY "$SRC/scripts/export_torch.py" result.h5 -o result.pt >export.log 2>&1 ||
  { cat export.log; fail "export_torch.py on a conv search"; }
$PY - <<'PY' || fail "TorchScript differs from ens predict"
import h5py, numpy as np, torch
torch.set_num_threads(1)
m = torch.jit.load("result.pt")
x = torch.from_numpy(h5py.File("../img.h5", "r")["test/x"][()].astype(np.float64))
with torch.no_grad():
    d = np.abs(m(x).numpy() - h5py.File("pred.h5", "r")["probs"][()]).max()
print(f"export: max abs difference {d:.3g}")
assert d <= 1e-5, d
PY
cd "$WORK"
echo "ok: b. libens and the TorchScript export agree with ens predict"

# ------------------------------------------------------- c. merge, stop/resume
run_np 0 a -c "$WORK/job.ini" --set ensemble.first_member=0 --set ensemble.count=4 \
  --set output.path=a.h5 || fail "slice 0-3"
(cd slice && "$ENS" merge ../a/a.h5 b.h5 -o merged.h5 >/dev/null) || fail "merge"
cp np0/result.h5 slice/result.h5
(cd slice && "$ENS" merge ../a/a.h5 b.h5 -o result.h5 >/dev/null) || fail "merge over result"
same_result np0/result.h5 slice/result.h5 || fail "merged conv search differs from one run"
echo "ok: c. merge of conv search slices equals one run"
stop_resume conv-search -c "$WORK/job.ini" --set train.epochs=40 --set ensemble.members=3

# ------------------------------------------------------------ d. config errors
err_case() { # name pattern args...
  local name=$1 pat=$2 code
  shift 2
  code=$(run2 "$name" -c "$WORK/job.ini" --set output.path=e.h5 "$@")
  [ "$code" = 1 ] || { cat "$name/log"; fail "$name: exit $code, expected 1"; }
  one_error "$name" "$pat"
  [ ! -e "$name/e.h5" ] && ! ls "$name"/e.h5.* >/dev/null 2>&1 || fail "$name: output left behind"
}
sed 's/^conv_blocks = 1, 4$/conv_blocks = 3, 4/' job.ini >deep.ini
line=$(grep -n "^conv_blocks" deep.ini | cut -d: -f1)
code=$(run2 deep -c "$WORK/deep.ini" --set output.path=e.h5)
[ "$code" = 1 ] || { cat deep/log; fail "deep: exit $code, expected 1"; }
one_error deep "deep.ini:$line: \[search\] conv_blocks = 3, 4: .*12x12 input can be halved exactly 2 times.*at most 2"
err_case deep-set "^ens train: --set search.conv_blocks=3: .*halved exactly 2 times" --set search.conv_blocks=3
$PY "$SRC/tests/integration/make_data.py" flat.h5 200 16 3
err_case flat "conv_blocks = 1, 4 draws conv networks, which need image rows" \
  --set data.path="$WORK/flat.h5" --set data.standardize_by=feature
err_case kernel "\[search\] conv_kernel: expected .*odd kernel sizes.*got '4'" --set search.conv_kernel=4
err_case width "\[search\] conv_width: expected .*got '8,4'" --set search.conv_width=8,4
err_case twice "\[search\] pool: expected .*no choice twice.*got 'max,max'" --set search.pool=max,max
err_case blocks "\[search\] conv_blocks: expected .*1 to 8.*got '0,2'" --set search.conv_blocks=0,2
err_case layers "conv_blocks = 1, 4 builds each member's whole layer list, so \[model\] layers" \
  --set "model.layers=conv 4 3, flatten"
err_case trunk "conv_blocks = 1, 4 builds each member's whole layer list, so a \[trunk\]" \
  --set trunk.source=pretrain --set trunk.layers=1
echo "search_conv: all passed"
