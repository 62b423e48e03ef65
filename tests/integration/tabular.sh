# Tabular work end to end (issue 20, part A): ens predict matches features by
# name (HDF5 and CSV inputs), reads a CSV without its target and writes a CSV
# that joins back to the input by id; ens import csv carries source lines and
# an id column, takes --drop/--keep/--decimal, refuses dates and identifiers
# with the way to keep them; -o never destroys an input or a file the command
# did not write.
source "$(dirname "$0")/lib.bash"

expect() { # CODE PATTERN cmd...: exit code, one-line message matching PATTERN
  local want=$1 pattern=$2
  shift 2
  local code=0
  "$@" >stdout.txt 2>stderr.txt || code=$?
  [ "$code" = "$want" ] || { cat stdout.txt stderr.txt; fail "'$*' exited $code, expected $want"; }
  grep -qE -- "$pattern" stderr.txt || { cat stderr.txt; fail "'$*': message does not match /$pattern/"; }
  [ "$(wc -l <stderr.txt)" = 1 ] || { cat stderr.txt; fail "'$*': message is not one line"; }
  echo "ok: exit $code: $(cat stderr.txt)"
}

# Iris (sklearn's copy) with an id column; the same rows with the columns in
# another order and no target; one without petal_width; one with an extra column.
$PY - <<'PYEOF'
from sklearn.datasets import load_iris
import csv
d = load_iris()
names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
rows = [[f"s{i:03d}"] + [f"{v:.1f}" for v in x] + [d.target_names[y]]
        for i, (x, y) in enumerate(zip(d.data, d.target))]
head = ["id"] + names + ["species"]
def write(path, order, drop_target=False, extra=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        h = [head[k] for k in order]
        w.writerow(h + ([extra] if extra else []))
        for r in rows:
            w.writerow([r[k] for k in order] + (["1"] if extra else []))
write("iris.csv", [0, 1, 2, 3, 4, 5])
write("reordered.csv", [5, 4, 1, 3, 2, 0])          # target first, features shuffled
write("new.csv", [4, 2, 0, 3, 1])                   # no target, id in the middle
write("missing.csv", [0, 1, 2, 3, 5])               # no petal_width
write("extra.csv", [0, 1, 2, 3, 4], extra="colour")
PYEOF

"$ENS" import csv iris.csv --target species -o err.h5 >/dev/null 2>err.txt && fail "an id-like column was imported as categories"
grep -q "column 'id' looks like an identifier.*--id id.*--drop id.*--keep id" err.txt ||
  { cat err.txt; fail "identifier message"; }
[ -e err.h5 ] && fail "a refused import left its output"
"$ENS" import csv iris.csv --target species --id id --split-seed 1 -o data.h5 >import.txt ||
  { cat import.txt; fail "import with --id"; }
grep -q "id column: id" import.txt || fail "import does not report the id column"
# The same table with its columns in another order, imported on its own.
"$ENS" import csv reordered.csv --target species --id id --split-seed 1 -o reordered.h5 >/dev/null ||
  fail "import of the reordered table"

# Every /test row names its source line and id, and they agree with the file.
$PY - <<'PYEOF' || fail "lines and ids"
import h5py, csv, numpy as np
rows = list(csv.reader(open("iris.csv")))
f = h5py.File("data.h5", "r")
for s in ("train", "test"):
    lines, ids, x = f[s + "/line"][:], f[s + "/id"][:], f[s + "/x"][:]
    assert lines.dtype == np.int64 and len(lines) == len(x)
    for l, i, xr in zip(lines, ids, x):
        r = rows[l - 1]            # line l of the file (1 = header)
        assert r[0] == i.decode(), (l, r, i)
        assert np.allclose([float(v) for v in r[1:5]], xr), (l, r, xr)
assert f.attrs["id_column"] in (b"id", "id")
print("ok: /train and /test carry their source lines and ids")
PYEOF

cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 16
[train]
epochs = 40
batch = 16
lr = 0.05
[ensemble]
members = 2
[output]
path = $WORK/r.h5
verbose = 0
INI
run_np 0 train -c "$WORK/job.ini" || fail "training on iris"

# ---- predict by name --------------------------------------------------------
"$ENS" predict -m r.h5 -i data.h5 -o p.h5 >p.txt || fail "predict on the training file"
"$ENS" predict -m r.h5 -i reordered.h5 -o preo.h5 >preo.txt || { cat preo.txt; fail "predict on the reordered import"; }
grep -q "matched to the model's by name (in another order" preo.txt || { cat preo.txt; fail "reordering not reported"; }
$PY - <<'PYEOF' || fail "reordered HDF5 input"
import h5py, numpy as np
a, b = h5py.File("p.h5", "r"), h5py.File("preo.h5", "r")
# The two imports split the same rows alike (same seed, same row count):
# join on the ids, which the outputs carry.
ia = [s.decode() for s in a["id"][:]]
ib = [s.decode() for s in b["id"][:]]
assert sorted(ia) == sorted(ib), "the two test splits differ"
pos = {k: i for i, k in enumerate(ib)}
order = [pos[k] for k in ia]
assert np.array_equal(a["probs"][:], b["probs"][:][order]), "probabilities differ after reordering"
assert list(a["line"][:]) and list(b["line"][:])
print("ok: the reordered import gives the same probabilities, row by row")
PYEOF
grep -q "accuracy against /test/y" preo.txt || fail "no score on the reordered import"
acc=$(sed -n 's/.*accuracy against \/test\/y: \([0-9.]*\)%.*/\1/p' preo.txt)
$PY -c "import sys; sys.exit(0 if float('$acc') > 85 else 1)" || fail "reordered accuracy $acc%"

expect 1 "missing.csv: line 1: its columns do not match the model's by name: missing 'petal_width'" \
  "$ENS" predict -m r.h5 -i missing.csv -o pm.csv
expect 1 "extra.csv: line 1: its columns do not match the model's by name: not in the model 'colour'" \
  "$ENS" predict -m r.h5 -i extra.csv -o pm.csv
"$ENS" import csv missing.csv --target species --id id -o missing.h5 >/dev/null
expect 1 "missing.h5: its features do not match the model's by name .*missing 'petal_width'" \
  "$ENS" predict -m r.h5 -i missing.h5 -o pm.h5
[ -e pm.csv ] || [ -e pm.h5 ] && fail "a refused predict left an output"

# ---- CSV round trip ---------------------------------------------------------
"$ENS" predict -m r.h5 -i new.csv -o out/pred.csv >new.txt || { cat new.txt; fail "predict on a CSV without the target"; }
grep -q "against" new.txt && fail "a score was printed without targets"
"$ENS" predict -m r.h5 -i iris.csv -o pred-all.csv >all.txt || fail "predict on the CSV with its target"
grep -qE "accuracy against column 'species' of iris.csv: [0-9.]+%" all.txt || { cat all.txt; fail "no score with the target"; }
"$ENS" predict -m r.h5 -i new.csv -o pred.h5 >/dev/null || fail "CSV in, HDF5 out"
$PY - <<'PYEOF' || fail "CSV round trip"
import csv, h5py, numpy as np
inp = list(csv.DictReader(open("new.csv")))
out = list(csv.DictReader(open("out/pred.csv")))
full = list(csv.DictReader(open("iris.csv")))
assert len(out) == len(inp), (len(out), len(inp))
cols = list(out[0].keys())
assert cols == ["id", "line", "class", "class_name", "p_setosa", "p_versicolor", "p_virginica",
                "entropy", "expected_entropy", "mutual_information"], cols
by_id = {r["id"]: r for r in out}
assert len(by_id) == len(out), "ids are not unique"
truth = {r["id"]: r["species"] for r in full}
hit = 0
for k, (i, o) in enumerate(zip(inp, out)):
    assert i["id"] == o["id"] and int(o["line"]) == k + 2, (i, o)   # input order, source line
    p = [float(o[c]) for c in ("p_setosa", "p_versicolor", "p_virginica")]
    assert abs(sum(p) - 1) < 1e-5 and int(o["class"]) == int(np.argmax(p))
    assert o["class_name"] == ["setosa", "versicolor", "virginica"][int(o["class"])]
    hit += o["class_name"] == truth[o["id"]]
assert hit / len(out) > 0.85, hit / len(out)
# The same rows with the target, in the training order: the same numbers.
other = list(csv.DictReader(open("pred-all.csv")))
o2 = {r["id"]: r for r in other}
for r in out:
    assert all(r[c] == o2[r["id"]][c] for c in cols if c != "line"), r
h = h5py.File("pred.h5", "r")
assert [s.decode() for s in h["id"][:]] == [r["id"] for r in inp]
assert list(h["line"][:]) == list(range(2, len(inp) + 2))
assert np.allclose(h["probs"][:, 0], [float(r["p_setosa"]) for r in out], rtol=1e-6)
print("ok: predictions join back to the input by id: %d rows, accuracy %.3f" % (len(out), hit / len(out)))
PYEOF

# A result written before results kept their columns: the data file names them.
cp r.h5 old.h5
$PY -c "
import h5py
f = h5py.File('old.h5', 'a')
for k in ('target_names', 'categories'):
    if k in f['model']: del f['model'][k]
for a in ('csv_delimiter', 'csv_decimal', 'csv_header', 'id_column'):
    if a in f['model'].attrs: del f['model'].attrs[a]
"
"$ENS" predict -m old.h5 -i iris.csv -o old.csv >old.txt || { cat old.txt; fail "predict with an older result"; }
grep -q "accuracy against column 'species'" old.txt || fail "older result: the target column was not found"
cmp -s <(cut -d, -f3- old.csv) <(cut -d, -f3- pred-all.csv) || fail "older result: other predictions"

# A table without a header line: new rows are read without one too.
tail -n +2 iris.csv | cut -d, -f2-6 >nh.csv
"$ENS" import csv nh.csv --no-header --target 4 -o nh.h5 >/dev/null || fail "--no-header import"
sed "s#$WORK/data.h5#$WORK/nh.h5#; s#$WORK/r.h5#$WORK/nhr.h5#" job.ini >nh.ini
run_np 0 train -c "$WORK/nh.ini" || fail "training without a header"
cut -d, -f1-4 nh.csv >nh-new.csv
"$ENS" predict -m nhr.h5 -i nh-new.csv -o nh-pred.csv >/dev/null || fail "predict without a header"
[ "$(head -1 nh-pred.csv | cut -d, -f1-3)" = "line,class,class_name" ] || fail "no-header output header"
[ "$(sed -n 2p nh-pred.csv | cut -d, -f1)" = 1 ] || fail "no-header: the first row is line 1"
[ "$(wc -l <nh-pred.csv)" = 151 ] || fail "no-header: one line per row"

# ---- regression, a ';' file with decimal commas, a date column, one-hot ------
$PY - <<'PYEOF'
import csv, numpy as np
rng = np.random.default_rng(7)
with open("weather.csv", "w", newline="") as f:
    w = csv.writer(f, delimiter=";")
    w.writerow(["date", "temp", "wind", "sky", "rain"])
    for i in range(120):
        t, sky = rng.normal(10, 5), ["sun", "cloud", "fog"][i % 3]
        rain = 0.5 * t + (2 if sky == "fog" else 0) + rng.normal(0, 0.5)
        w.writerow([f"2012-{1 + i // 28:02d}-{1 + i % 28:02d}", f"{t:.1f}".replace(".", ","),
                    f"{rng.uniform(0, 9):.2f}".replace(".", ","), sky, f"{rain:.2f}".replace(".", ",")])
with open("weather-new.csv", "w", newline="") as f:
    w = csv.writer(f, delimiter=";")
    w.writerow(["sky", "wind", "temp", "date"])
    w.writerow(["fog", "1,5", "12,0", "2013-01-01"])
    w.writerow(["hail", "3,0", "8,5", "2013-01-02"])
PYEOF
expect 1 "weather.csv: line 2: expected 1 field .*got [0-9]+ \(the header holds ';': is that the delimiter\? use --delimiter ';'\)" \
  "$ENS" import csv weather.csv --target rain -o w.h5
expect 1 "weather.csv: feature column 'date' holds dates \(e.g. '2012-01-01'.*--drop date.*--keep date" \
  "$ENS" import csv weather.csv --target rain --delimiter ';' -o w.h5
expect 1 "column 'temp': its values are numbers with a decimal comma \(e.g. '[0-9,-]+'\).*--decimal ','" \
  "$ENS" import csv weather.csv --target rain --delimiter ';' --drop date -o w.h5
expect 1 "--decimal ',' needs another field separator" \
  "$ENS" import csv weather.csv --target rain --decimal , -o w.h5
expect 1 "--drop 'nothere': no such column" \
  "$ENS" import csv weather.csv --target rain --delimiter ';' --drop nothere -o w.h5
[ -e w.h5 ] && fail "a refused import left its output"
"$ENS" import csv weather.csv --target rain --delimiter ';' --decimal , --drop date -o w.h5 >wi.txt ||
  { cat wi.txt; fail "import with --decimal and --drop"; }
grep -q "dropped columns: date" wi.txt || fail "dropped columns not reported"
"$ENS" import csv weather.csv --target rain --delimiter ';' --decimal , --keep date -o wkeep.h5 >/dev/null ||
  fail "--keep date"
$PY -c "
import h5py
f = h5py.File('wkeep.h5', 'r')
assert sum(s.decode().startswith('date=') for s in f['feature_names'][:]) == 120
" || fail "--keep date did not keep the dates as categories"
cat >wjob.ini <<INI
[data]
path = $WORK/w.h5
[model]
hidden = 16
[train]
epochs = 20
batch = 16
[ensemble]
members = 2
[output]
path = $WORK/wr.h5
verbose = 0
INI
run_np 0 train -c "$WORK/wjob.ini" || fail "training the regression"
"$ENS" predict -m wr.h5 -i weather-new.csv -o wp.csv >wp.txt 2>wwarn.txt || { cat wp.txt wwarn.txt; fail "regression predict on a CSV"; }
grep -q "warning: weather-new.csv: 1 value of categorical columns did not occur in the training data (first: line 3, column 'sky': 'hail')" wwarn.txt ||
  { cat wwarn.txt; fail "unseen category warning"; }
grep -q "against" wp.txt && fail "a score was printed without targets"
"$ENS" predict -m wr.h5 -i weather.csv -o wp-all.h5 >wpa.txt || fail "regression predict on the training CSV"
grep -qE "against column 'rain' of weather.csv: rmse" wpa.txt || { cat wpa.txt; fail "no regression score"; }
$PY - <<'PYEOF' || fail "regression CSV output"
import csv, math
out = list(csv.DictReader(open("wp.csv")))
assert len(out) == 2
assert list(out[0].keys()) == ["line", "rain_mean", "rain_std", "rain_lower90", "rain_upper90",
                               "rain_var_aleatoric", "rain_var_epistemic"], list(out[0].keys())
for r in out:
    m, s = float(r["rain_mean"]), float(r["rain_std"])
    va, ve = float(r["rain_var_aleatoric"]), float(r["rain_var_epistemic"])
    assert abs(s * s - (va + ve)) <= 1e-4 * max(1, s * s), r
    assert abs(float(r["rain_lower90"]) - (m - 1.6448536 * s)) < 1e-4 * max(1, abs(m)), r
# fog at 12 degrees: about 0.5 * 12 + 2 = 8
assert 4 < float(out[0]["rain_mean"]) < 12, out[0]
print("ok: regression CSV output:", out[0])
PYEOF

# ---- -o never destroys an input or a file the command did not write ----------
expect 1 "ens predict: -o r.h5 is the same file as -m r.h5: writing it would destroy that input" \
  "$ENS" predict -m r.h5 -i data.h5 -o r.h5
expect 1 "ens predict: -o data.h5 is the same file as -i data.h5" \
  "$ENS" predict -m r.h5 -i data.h5 -o data.h5 --force
ln -s data.h5 alias.h5
ln data.h5 hardlink.h5
expect 1 "ens predict: -o hardlink.h5 is the same file as -i alias.h5" \
  "$ENS" predict -m r.h5 -i alias.h5 -o hardlink.h5 --force
expect 1 "ens predict: -o iris.csv exists and is a CSV file \(not one ens predict wrote\).*--force" \
  "$ENS" predict -m r.h5 -i data.h5 -o iris.csv
expect 1 "ens predict: -o reordered.h5 exists and is an ens input data file" \
  "$ENS" predict -m r.h5 -i data.h5 -o reordered.h5
expect 1 "ens import csv: -o r.h5 exists and is an ens result \(a trained ensemble\).*--force" \
  "$ENS" import csv iris.csv --target species --id id -o r.h5
expect 1 "ens import csv: -o iris.csv is the same file as the input iris.csv" \
  "$ENS" import csv iris.csv --target species --id id -o iris.csv --force
"$ENS" info r.h5 >/dev/null || fail "the result was damaged"
cmp -s data.h5 hardlink.h5 || fail "the input was damaged"
# Earlier outputs of the same command are replaced; --force replaces others.
"$ENS" predict -m r.h5 -i data.h5 -o p.h5 >/dev/null || fail "predict over its own earlier output"
"$ENS" predict -m r.h5 -i new.csv -o out/pred.csv >/dev/null || fail "predict over its own earlier CSV"
"$ENS" import csv iris.csv --target species --id id -o reordered.h5 >/dev/null || fail "import over an earlier import"
cp iris.csv victim.csv
"$ENS" predict -m r.h5 -i data.h5 -o victim.csv --force >/dev/null || fail "--force"
head -1 victim.csv | grep -q mutual_information || fail "--force did not write"
# merge: an -o that is one of the parts is refused
expect 1 "ens merge: -o r.h5 is the same file as the part r.h5" "$ENS" merge r.h5 -o r.h5
expect 1 "ens merge: -o data.h5 exists and is an ens input data file" "$ENS" merge r.h5 -o data.h5
# train: an [output] path that is the job's data is refused even with --force
expect 1 "\[output\] path = $WORK/data.h5 is the same file as \[data\] path = $WORK/data.h5" \
  "$ENS" train -c job.ini --set output.path="$WORK/data.h5" --force
# import idx: the same rule
IDX=/usr/share/datasets/fashion-mnist
if [ -e $IDX/t10k-images-idx3-ubyte.gz ]; then
  cp $IDX/t10k-labels-idx1-ubyte.gz labels.gz
  expect 1 "ens import idx: -o r.h5 exists and is an ens result" \
    "$ENS" import idx --images $IDX/t10k-images-idx3-ubyte.gz --labels labels.gz -o r.h5
  expect 1 "ens import idx: -o labels.gz is the same file as --labels labels.gz" \
    "$ENS" import idx --images $IDX/t10k-images-idx3-ubyte.gz --labels labels.gz -o labels.gz --force
fi
cmp -s data.h5 hardlink.h5 || fail "the input was damaged"
ls | grep -q '\.tmp\.' && fail "temporary files left"
echo "tabular: all passed"
