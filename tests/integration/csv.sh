# `ens import csv` end to end: a mixed numeric + string CSV with a string
# class target is imported, trained on and predicted from; then the error
# cases each exit 1 with a message naming the file, line and column, and
# leave no output (nor temporary) file behind.
source "$(dirname "$0")/lib.bash"

# 400 rows: two numeric features, a categorical one tied to the class, a
# noise category with quoted commas, and the class as a string.
$PY - <<'PYEOF'
import csv, gzip, numpy as np
rng = np.random.default_rng(3)
classes = ["alpha", "beta", "gamma"]
colors = {"alpha": ["red", "red", "blue"], "beta": ["blue", "green", "green"],
          "gamma": ["red", "green", "yellow"]}
def rows(n):
    out = []
    for i in range(n):
        c = classes[rng.integers(3)]
        k = classes.index(c)
        out.append([f"{rng.normal(2.0 * k, 0.7):.4f}", f"{rng.normal(-k, 1.0) * 10:.3f}",
                    colors[c][rng.integers(3)], rng.choice(["x, y", "z", "w \"q\""]), c])
    return out
with open("data.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\r\n")
    w.writerow(["size", "weight", "color", "noise", "species"])
    w.writerows(rows(400))
# A test file with the columns in another order, one unseen color and one
# row with a missing value.
with open("test.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["species", "noise", "color", "weight", "size"])
    for r in rows(60):
        w.writerow([r[4], r[3], r[2], r[1], r[0]])
    w.writerow(["beta", "z", "purple", "3", "1"])
    w.writerow(["beta", "z", "NA", "3", "1"])
with open("data.csv", "rb") as src, gzip.open("data.csv.gz", "wb") as dst:
    dst.write(src.read())
PYEOF

"$ENS" import --help >help.txt || fail "ens import --help exited non-zero"
grep -q "import csv" help.txt || fail "ens import --help does not mention csv"
"$ENS" import csv --help >help.txt || fail "ens import csv --help exited non-zero"
grep -q -- "--drop-missing" help.txt || fail "ens import csv --help lacks --drop-missing"

# Split by fraction into a directory that does not exist yet.
"$ENS" import csv data.csv --target species -o out/sub/data.h5 --val-fraction 0.1 \
  --split-seed 5 >import.txt || { cat import.txt; fail "import failed"; }
cat import.txt
grep -q "classify" import.txt || fail "the task choice is not reported"
grep -q "test-fraction 0.2" import.txt || fail "the default test fraction is not reported"
$PY - <<'PYEOF' || fail "layout check failed"
import h5py, numpy as np
f = h5py.File("out/sub/data.h5", "r")
n = {s: f[s + "/x"].shape[0] for s in ("train", "val", "test")}
assert n == {"train": 288, "val": 32, "test": 80}, n
assert f["train/x"].dtype == np.float32 and f["train/y"].dtype == np.int32
assert f.attrs["classes"] == 3 and f.attrs["task"] in (b"classify", "classify")
assert [s.decode() for s in f["class_names"][:]] == ["alpha", "beta", "gamma"]
names = [s.decode() for s in f["feature_names"][:]]
assert names[:6] == ["size", "weight", "color=blue", "color=green", "color=red", "color=yellow"], names
assert names[6:] == ["noise=w \"q\"", "noise=x, y", "noise=z"], names
assert [s.decode() for s in f["categories/color"][:]] == ["blue", "green", "red", "yellow"]
x = f["train/x"][:]
assert x.shape[1] == 9 and np.all(x[:, 2:6].sum(1) == 1) and np.all(x[:, 6:].sum(1) == 1)
y = f["train/y"][:]
assert y.min() == 0 and y.max() == 2
print("layout ok:", n)
PYEOF
ls out/sub | grep -q tmp && fail "temporary file left in out/sub"

# Same seed, same file; the gzip copy gives the same data.
"$ENS" import csv data.csv.gz --target 4 -o again.h5 --val-fraction 0.1 --split-seed 5 >/dev/null ||
  fail "gzip import failed"
for d in /train/x /train/y /val/x /test/y; do
  h5diff out/sub/data.h5 again.h5 "$d" "$d" || fail "$d differs between two imports with one seed"
done
"$ENS" import csv data.csv --target species -o other.h5 --val-fraction 0.1 --split-seed 6 >/dev/null
if h5diff -q out/sub/data.h5 other.h5 /test/y /test/y >/dev/null 2>&1; then
  fail "another --split-seed gave the same test split"
fi

# Train a small classifier on it and predict the test rows.
cat >job.ini <<INI
[data]
path = $WORK/out/sub/data.h5
[model]
hidden = 16
[train]
epochs = 8
batch = 32
lr = 0.05
[ensemble]
members = 2
[output]
path = $WORK/result.h5
verbose = 0
INI
run_np 0 train -c "$WORK/job.ini" || fail "training on the imported CSV failed"
"$ENS" predict -m result.h5 -i out/sub/data.h5 -o p.h5 >predict.txt || fail "predict failed"
grep -qE "predicted classes: alpha [0-9]+, beta [0-9]+, gamma [0-9]+" predict.txt ||
  { cat predict.txt; fail "predict does not name the classes"; }
"$ENS" info result.h5 | grep -q "3 classes: alpha, beta, gamma" || fail "info does not name the classes"
$PY - <<'PYEOF' || fail "prediction check failed"
import h5py
r = h5py.File("result.h5", "r")
p = h5py.File("p.h5", "r")
d = h5py.File("out/sub/data.h5", "r")
assert p["pred"].shape == (d["test/x"].shape[0],), p["pred"].shape
names = [s.decode() for s in p["class_names"][:]]
assert [names[k] for k in p["pred"][:]] == [s.decode() for s in p["pred_names"][:]]
acc = float(r["metrics/ensemble"].attrs["accuracy"])
print("ensemble test accuracy %.3f" % acc)
assert acc > 0.7, acc
PYEOF

# A test file: columns in another order, an unseen category, a dropped row.
"$ENS" import csv data.csv --target species --test test.csv --drop-missing -o t.h5 >import.txt \
  2>warn.txt || { cat import.txt warn.txt; fail "import with --test failed"; }
grep -q "dropped 1 row with missing values from test.csv" import.txt || { cat import.txt; fail "drop count"; }
grep -q "warning: 1 value" warn.txt || { cat warn.txt; fail "unseen category warning"; }
grep -q "test: 61 rows from test.csv" import.txt || { cat import.txt; fail "test rows"; }

# Regression on a numeric target (auto), two targets.
"$ENS" import csv data.csv --target size,weight -o reg.h5 >import.txt || fail "regression import"
grep -q "regress" import.txt || fail "regression not reported"
$PY -c "
import h5py, numpy as np
f = h5py.File('reg.h5', 'r')
assert f['train/y'].dtype == np.float32 and f['train/y'].shape[1] == 2
assert [s.decode() for s in f['target_names'][:]] == ['size', 'weight']
assert f.attrs['task'] in (b'regress', 'regress') and 'classes' not in f.attrs
" || fail "regression layout"

# ---- errors: exit 1, message with file/line/column, nothing left ----------
mkdir -p err
expect() { # CODE PATTERN cmd...
  local want=$1 pattern=$2
  shift 2
  local code=0
  "$@" >stdout.txt 2>stderr.txt || code=$?
  [ "$code" = "$want" ] || { cat stdout.txt stderr.txt; fail "'$*' exited $code, expected $want"; }
  grep -qE -- "$pattern" stderr.txt || { cat stderr.txt; fail "'$*': message does not match /$pattern/"; }
  [ "$(wc -l <stderr.txt)" = 1 ] || { cat stderr.txt; fail "'$*': message is not one line"; }
  [ -z "$(ls -A err)" ] || { ls -la err; fail "'$*' left output in err/"; }
  echo "ok: exit $code: $(cat stderr.txt)"
}
printf 'a,b,y\n1,2,p\n3,4\n' >ragged.csv
expect 1 "ragged.csv: line 3: expected 3 fields .*got 2" "$ENS" import csv ragged.csv --target y -o err/o.h5
printf 'a,b,y\n1,2,p\n3,abc,q\n4,5,p\n6,7,q\n' >mixed.csv
expect 1 "mixed.csv: line 3, column 'b': 'abc' is not a number \(the column is numeric" \
  "$ENS" import csv mixed.csv --target y -o err/o.h5
printf 'a,b,y\n1,2,p\n3,,q\n' >missing.csv
expect 1 "missing.csv: line 3, column 'b': missing value.*--drop-missing" \
  "$ENS" import csv missing.csv --target y -o err/o.h5
expect 1 "data.csv: line 1: no target column named 'kind'" \
  "$ENS" import csv data.csv --target kind -o err/o.h5
expect 1 "data.csv: target index 9 is out of range" "$ENS" import csv data.csv --target 9 -o err/o.h5
: >empty.csv
expect 1 "empty.csv: line 1: empty file" "$ENS" import csv empty.csv --target 0 -o err/o.h5
printf 'a,b,y\n' >header.csv
expect 1 "header.csv: line 2: no data rows" "$ENS" import csv header.csv --target y -o err/o.h5
printf 'a,b,a\n1,2,3\n' >dup.csv
expect 1 "dup.csv: line 1, column 2: duplicated column name 'a'" \
  "$ENS" import csv dup.csv --target b -o err/o.h5
printf 'a,y\n1,"open\n2,q\n' >quote.csv
expect 1 "quote.csv: line 2, field 2: the quoted field opened here is never closed" \
  "$ENS" import csv quote.csv --target y -o err/o.h5
printf 'species,size,weight,color,noise\nomega,1,2,red,z\n' >unseen.csv
expect 1 "unseen.csv: line 2, column 'species': class 'omega' does not occur in data.csv" \
  "$ENS" import csv data.csv --target species --test unseen.csv -o err/o.h5
expect 1 "data.csv: line [0-9]+, column 'species': '[a-z]+' is not a number \(--task regress" \
  "$ENS" import csv data.csv --target species --task regress -o err/o.h5
expect 1 "classify takes one target" "$ENS" import csv data.csv --target size,weight --task classify -o err/o.h5
expect 1 "nothere.csv: cannot open" "$ENS" import csv nothere.csv --target y -o err/o.h5
expect 1 "exclude each other" "$ENS" import csv data.csv --target species --test test.csv \
  --test-fraction 0.3 -o err/o.h5
expect 1 "--test-fraction: expected a number in \(0, 1\)" \
  "$ENS" import csv data.csv --target species --test-fraction 1.5 -o err/o.h5
expect 1 "unknown option '--frobnicate'" "$ENS" import csv data.csv --target species --frobnicate -o err/o.h5
expect 1 "required" "$ENS" import csv data.csv -o err/o.h5
expect 1 "unknown format 'xls'" "$ENS" import xls data.csv
# An output directory that cannot be created (a file stands in the way).
touch err-file
expect 1 "err-file/x/o.h5: cannot create the output directory" \
  "$ENS" import csv data.csv --target species -o err-file/x/o.h5
echo "csv: all passed"
