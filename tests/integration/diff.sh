# `ens diff A.h5 B.h5`: 0 when identical (datasets bitwise, attributes by
# value, configurations key by key), 1 with a short report when not, 2 when
# an input cannot be read. Timing and placement (train_seconds, ranks,
# peak_rss*, /ranks) and the [output] keys are exempt. Every check here can
# fail: each difference below is planted and must be found.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 300 6 2
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 8
[train]
epochs = 2
batch = 32
[ensemble]
members = 2
[output]
path = a.h5
verbose = 0
INI
"$ENS" train -c job.ini >/dev/null || fail "train a.h5"
"$ENS" train -c job.ini --set output.path=b.h5 >/dev/null || fail "train b.h5"

# expect CODE PATTERN A B: ens diff A B exits CODE and prints PATTERN.
expect() {
  local want=$1 pattern=$2 code=0
  "$ENS" diff "$3" "$4" >out.txt 2>&1 || code=$?
  [ "$code" = "$want" ] || { cat out.txt; fail "ens diff $3 $4 exited $code, expected $want"; }
  grep -qE -- "$pattern" out.txt || { cat out.txt; fail "ens diff $3 $4: no /$pattern/"; }
  echo "ok: exit $code: $(grep -E -- "$pattern" out.txt | head -n 1 | head -c 200)"
}
# plant NAME PYTHON: copies a.h5 to NAME.h5 and runs PYTHON on it (as f).
plant() {
  cp a.h5 "$1.h5"
  $PY - "$1.h5" <<PYEOF || fail "planting $1"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
$2
PYEOF
}

# Two runs that differ only in [output] path and timing: identical.
expect 0 "a.h5 and b.h5 are identical: [1-9][0-9]* datasets" a.h5 b.h5
grep -q "note: configuration \[output\] path = a.h5 vs b.h5 (exempt" out.txt || fail "no note on [output]"
same_result a.h5 b.h5 || fail "same_result of two identical runs"

# Timing and placement are exempt.
plant timing '    f.attrs["train_seconds"] = 1e9; f.attrs["ranks"] = 64
    f["members/0"].attrs["train_seconds"] = 5.0; f["members/0"].attrs["peak_rss_mb"] = 12.5
    g = f.require_group("ranks"); g.pop("peak_rss", None); g["peak_rss"] = np.arange(64.0)'
expect 0 "are identical" a.h5 timing.h5

# One value of a dataset.
plant value '    p = f["ensemble/probs"][:]; p[3, 1] = np.nextafter(p[3, 1], np.float32(2)); f["ensemble/probs"][...] = p'
expect 1 "dataset /ensemble/probs: 1 of [0-9]+ values differ \(largest difference [0-9.e-]+; first at index 10" a.h5 value.h5
grep -q "a.h5 and value.h5 differ in 1 place;" out.txt || fail "summary line"
same_result a.h5 value.h5 >/dev/null && fail "same_result missed a changed value"
# NaN: equal bit patterns are equal, other payloads are not.
plant nan1 '    p = f["ensemble/probs"][:]; p[0, 0] = np.float32("nan"); f["ensemble/probs"][...] = p'
cp nan1.h5 nan2.h5
expect 0 "are identical" nan1.h5 nan2.h5
$PY - nan2.h5 <<'PYEOF'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    p = f["ensemble/probs"][:]
    p.view(np.uint32)[0, 0] = 0x7fc00001  # another NaN payload
    f["ensemble/probs"][...] = p
PYEOF
expect 1 "dataset /ensemble/probs: 1 of" nan1.h5 nan2.h5
# Attributes: numbers and strings.
plant attr '    f["metrics/ensemble"].attrs["accuracy"] = 0.25; f.attrs["mode"] = np.bytes_("vote")'
expect 1 "attribute /metrics/ensemble accuracy: .* vs 0.25" a.h5 attr.h5
grep -q 'attribute / mode: "seed" vs "vote"' out.txt || { cat out.txt; fail "string attribute"; }
# Shapes, objects only on one side.
plant shape '    del f["metrics/curve_nll"]; f["metrics/curve_nll"] = np.zeros(3, np.float32)
    del f["metrics/member_ece"]; f["extra"] = np.zeros(2)'
expect 1 "dataset /metrics/curve_nll: shape \(2\) vs \(3\)" a.h5 shape.h5
grep -q "dataset /metrics/member_ece: only in a.h5" out.txt || fail "only in A"
grep -q "dataset /extra: only in shape.h5" out.txt || fail "only in B"
# Configurations key by key.
"$ENS" train -c job.ini --set output.path=c.h5 --set train.lr=0.1 --set model.dropout=0.1 >/dev/null || fail "train c.h5"
expect 1 "configuration \[model\] dropout = 0 vs 0.1" a.h5 c.h5
grep -q "configuration \[train\] lr = 0.05 vs 0.1" out.txt || fail "config lr"
# Long reports are cut (--all lists everything).
n_short=$(grep -c . out.txt)
"$ENS" diff --all a.h5 c.h5 >all.txt && fail "--all: exit 0"
[ "$(grep -c . all.txt)" -gt "$n_short" ] || fail "--all listed no more than the default"
grep -q "\.\.\. and [0-9]* more differences (--all lists them)" out.txt || fail "no '... and N more'"
# Variable-length string datasets (ens import csv writes them).
printf 'a,b,y\n1,x,p\n2,y,q\n3,x,p\n4,y,q\n5,x,p\n' >t.csv
"$ENS" import csv t.csv --target y -o t1.h5 >/dev/null && cp t1.h5 t2.h5 || fail "import csv"
expect 0 "are identical" t1.h5 t2.h5
$PY - t2.h5 <<'PYEOF'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    names = [s.decode() for s in f["feature_names"][:]]
    names[0] = "A"
    del f["feature_names"]
    f.create_dataset("feature_names", data=names, dtype=h5py.string_dtype())
PYEOF
expect 1 "dataset /feature_names: 1 of" t1.h5 t2.h5
# Unreadable inputs and usage: exit 2.
expect 2 "nope.h5: No such file or directory" a.h5 nope.h5
expect 2 "job.ini: not an HDF5 file" job.ini a.h5
code=0; "$ENS" diff a.h5 >/dev/null 2>&1 || code=$?
[ $code = 2 ] || fail "ens diff with one file exited $code, expected 2"
"$ENS" diff --help | grep -q "0 identical, 1 different, 2" || fail "ens diff --help"
echo "diff: all passed"
