# scripts/uci.py --quick on Boston Housing (3 splits, 10 epochs, ~5 s): the
# report has a table with finite "mean ± s.e." figures in every row, ens's
# mean RMSE is below 6.0 (MEDV's std is ~9.2; ridge gets ~3.5), ens's NLL
# is below 4; the section replaces itself in the output file on a rerun;
# --csv/--target reads the same CSV; bad arguments exit 1; scripts/hetero.py
# writes its section (small run: noise correlation > 0.5).
source "$(dirname "$0")/lib.bash"
PY=${ENS_PYTHON:-/usr/bin/python3}
UCI="$SRC/scripts/uci.py"
BOSTON=/usr/lib/python3/dist-packages/sklearn/datasets/data/boston_house_prices.csv
[ -f "$BOSTON" ] || fail "$BOSTON missing (Debian's python3-sklearn, scripts/deps --test)"

# check_table MD KEY MAX_RMSE: the section KEY of MD has finite figures in every
# table row, and ens's mean RMSE is below MAX_RMSE.
check_table() {
  $PY - "$@" <<'PYEOF' || fail "table check of $1 ($2)"
import math, re, sys
md, key, max_rmse = sys.argv[1], sys.argv[2], float(sys.argv[3])
text = open(md).read()
m = re.search(rf"<!-- BEGIN uci.py:{key} -->(.*?)<!-- END uci.py:{key} -->", text, re.S)
assert m, f"no section {key}"
assert text.count(f"<!-- BEGIN uci.py:{key} -->") == 1, f"section {key} twice"
sec = m.group(1)
rows = [l for l in sec.splitlines() if l.startswith("| ") and "±" in l]
assert len(rows) >= 5, f"{len(rows)} table rows with figures:\n{sec}"
num = r"(-?[0-9]+\.[0-9]+) ± ([0-9]+\.[0-9]+)"
figs = {}
for row in rows:
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 3, row
    for c in cells[1:]:
        mm = re.fullmatch(num, c)
        assert mm and all(math.isfinite(float(g)) for g in mm.groups()), f"not a finite figure: {c!r} in {row}"
    figs[cells[0]] = [float(re.fullmatch(num, c).group(1)) for c in cells[1:]]
ens = [v for k, v in figs.items() if k.startswith("ens ")]
assert len(ens) == 1, figs
rmse, nll = ens[0]
print(f"ens RMSE {rmse} NLL {nll}")
assert rmse < max_rmse, f"ens mean RMSE {rmse} >= {max_rmse}"
assert nll < 4.0, f"ens mean NLL {nll} >= 4"
for k in ("Command:", "Wall time:", "Machine:"):
    assert k in sec, f"no '{k}' line"
PYEOF
}

start=$SECONDS
$PY "$UCI" --quick --ens "$ENS" -o report.md --workdir runs >uci.log 2>&1 ||
  { cat uci.log; fail "uci.py --quick"; }
cat uci.log
check_table report.md boston-quick 6.0
[ -f runs/result00.h5 ] && [ -f runs/split02.h5 ] || fail "--workdir kept no files"

# A rerun replaces its section and keeps the others; --csv reads the same data.
echo "hand-written line" >>report.md
$PY "$UCI" --csv "$BOSTON" --target MEDV --name bcsv --splits 1 --epochs 5 --ens "$ENS" \
  -o report.md >csv.log 2>&1 || { cat csv.log; fail "uci.py --csv"; }
$PY "$UCI" --quick --ens "$ENS" -o report.md >uci2.log 2>&1 || { cat uci2.log; fail "uci.py rerun"; }
check_table report.md boston-quick 6.0
grep -q "^hand-written line$" report.md || fail "rerun dropped other text"
grep -q "BEGIN uci.py:bcsv-1splits" report.md || fail "no --csv section"
grep -q "target MEDV" report.md || fail "--csv section does not name the target"

# scripts/hetero.py, small: a section with a coverage and a correlation.
$PY "$SRC/scripts/hetero.py" --n 1000 --epochs 10 --schedule constant --ens "$ENS" -o report.md \
  >hetero.log 2>&1 || { cat hetero.log; fail "hetero.py"; }
$PY - <<'PYEOF' || { cat hetero.log; fail "hetero.py section"; }
import re
text = open("report.md").read()
sec = re.search(r"<!-- BEGIN hetero.py:hetero-n1000-epochs10-scheduleconstant -->(.*?)<!-- END", text, re.S)
assert sec, "no hetero section"
cov = float(re.search(r"coverage_90`\) \| ([0-9.]+)%", sec.group(1)).group(1))
r = float(re.search(r"sqrt\(var_aleatoric\) vs true sigma \| (-?[0-9.]+) \|", sec.group(1)).group(1))
print(f"hetero: coverage_90 {cov}%, r {r}")
assert 50 <= cov <= 100 and r > 0.5, (cov, r)
PYEOF

# Errors: exit 1 with a message, no traceback.
expect_error() {
  local pattern=$1 code=0
  shift
  "$@" >err.out 2>err.txt || code=$?
  [ "$code" = 1 ] || { cat err.out err.txt; fail "'$*' exited $code, expected 1"; }
  grep -qE "$pattern" err.txt || { cat err.txt; fail "'$*': message does not match /$pattern/"; }
  if grep -q Traceback err.txt; then cat err.txt; fail "'$*': traceback"; fi
}
expect_error "no column 'NOPE'" $PY "$UCI" --csv "$BOSTON" --target NOPE --ens "$ENS" -o never.md
expect_error "nothere.csv: no such file" $PY "$UCI" --csv nothere.csv --target y --ens "$ENS" -o never.md
expect_error "no ens binary" $PY "$UCI" --quick --ens ./nothere -o never.md
[ ! -e never.md ] || fail "wrote a report on an error"
$PY "$UCI" --help | grep -q -- "--quick" || fail "uci.py --help"
echo "uci: all checks passed in $((SECONDS - start)) s"
