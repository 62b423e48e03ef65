# `cmake --install` of libens (issue 19): the libraries, include/ens/infer.h,
# ens.pc and the CMake package config land under a fresh prefix; the C
# example in examples/ builds against that copy with pkg-config (shared and
# --static) and with find_package(ens), needs no MPI, and prints exactly the
# numbers `ens predict` writes; bad input gives a clear error through it.
source "$(dirname "$0")/lib.bash"
source "$SRC/tests/integration/libens_fixtures.bash"
BUILD=$(dirname "$ENS")
command -v cc >/dev/null || { echo "no C compiler: cannot build the example"; exit 77; }
cmake --install "$BUILD" --prefix "$WORK/prefix" >install.log || { cat install.log; fail "cmake --install"; }
P=$WORK/prefix
for f in lib/libens.so lib/libens.a include/ens/infer.h include/ens/error.h lib/pkgconfig/ens.pc \
  lib/cmake/ens/ensConfig.cmake lib/cmake/ens/ensTargets.cmake; do
  [ -e "$P/$f" ] || fail "cmake --install did not install $f"
done
if ldd "$P/lib/libens.so" | grep -qi mpi; then fail "libens.so depends on MPI"; fi
export PKG_CONFIG_PATH=$P/lib/pkgconfig
cc -O2 -Wall -Werror "$SRC/examples/predict.c" $(pkg-config --cflags --libs ens) \
  -Wl,-rpath,"$(pkg-config --variable=libdir ens)" -o ex-pc || fail "example with pkg-config"
cc -O2 -Wall -Werror "$SRC/examples/predict.c" $(pkg-config --cflags ens) \
  "$P/lib/libens.a" $(pkg-config --static --libs-only-other --libs-only-L ens) \
  $(pkg-config --static --libs ens | tr ' ' '\n' | grep -v -- '-lens$' | tr '\n' ' ') -o ex-static ||
  fail "example linked statically with pkg-config --static"
ldd ex-static | grep -q libens && fail "ex-static is linked to libens.so"
cmake -S "$SRC/examples" -B ex-cmake -DCMAKE_PREFIX_PATH="$P" >cmake.log 2>&1 &&
  cmake --build ex-cmake >>cmake.log 2>&1 || { cat cmake.log; fail "example with find_package(ens)"; }
# The installed Python module finds the installed libens by itself.
(unset ENS_LIB; cd / && PYTHONPATH=$P/share/ens/python $PY -c "
import ens, os
assert os.path.realpath(ens._find_library()) == os.path.realpath('$P/lib/libens.so'), ens._find_library()
print('python module finds', ens._find_library(), 'libens', ens.version())") || fail "installed python module"
echo "ok: installed; the example builds with pkg-config (shared, static) and find_package(ens)"

make_fixtures
$PY - <<'PY'
import h5py, numpy as np
for src, out in [("data.h5", "rows.csv"), ("reg.h5", "reg-rows.csv")]:
    np.savetxt(out, h5py.File(src, "r")["test/x"][()], delimiter=",", fmt="%.9g")
PY
for exe in ./ex-pc ./ex-static ex-cmake/predict ex-cmake/predict_static; do
  for r in search trunk reg-out; do
    rows=rows.csv; [ $r = reg-out ] && rows=reg-rows.csv
    in=data.h5; [ $r = reg-out ] && in=reg.h5
    "$exe" $r.h5 <$rows >ex-$r.txt 2>ex.log || { cat ex.log; fail "$exe $r.h5"; }
    # ens predict on the same rows as parsed from the CSV (%.9g round-trips float32).
    $PY - $r <<'PY' || fail "rows of $r.h5 from the CSV"
import sys, h5py, numpy as np
reg = sys.argv[1] == "reg-out"
x = np.loadtxt("reg-rows.csv" if reg else "rows.csv", delimiter=",", dtype=np.float32)
with h5py.File("x.h5", "w") as f:
    f["x"] = x
PY
    "$ENS" predict -m $r.h5 -i x.h5 -o p-$r.h5 >/dev/null || fail "ens predict $r"
    $PY - $r <<'PY' || fail "$exe on $r.h5 differs from ens predict"
import sys, h5py, numpy as np
r = sys.argv[1]
got = np.loadtxt(f"ex-{r}.txt", dtype=np.float64)
p = h5py.File(f"p-{r}.h5", "r")
if r == "reg-out":
    mean, var = got[:, 0::2].astype(np.float32), got[:, 1::2].astype(np.float32)
    assert np.array_equal(mean, p["mean"][()]) and np.array_equal(var, p["var"][()])
else:
    assert np.array_equal(got[:, 0].astype(np.int32), p["pred"][()])
    assert np.array_equal(got[:, 1:].astype(np.float32), p["probs"][()])
PY
  done
done
echo "ok: the installed example prints ens predict's numbers exactly (search, trunk, regression)"

# Bad input through the C API.
ex() {
  local want=$1 pat=$2 code=0; shift 2
  "$@" >out.txt 2>&1 || code=$?
  [ $code = "$want" ] && grep -qE "$pat" out.txt || { cat out.txt; fail "'$*' exit $code, expected $want and /$pat/"; }
}
ex 1 "data.h5: not an ens result" ./ex-pc data.h5 <rows.csv
$PY -c "import h5py; f = h5py.File('x2.h5', 'w'); f['a'] = 1"
ex 1 "x2.h5: not an ens result" ./ex-pc x2.h5 <rows.csv
printf '1,2,3\n' >short.csv
ex 1 "expected rows of 12 features" ./ex-pc cls.h5 <short.csv
head -3 rows.csv | sed '2s/^[^,]*,/nan,/' >nan.csv
ex 1 "non-finite value \(nan\) at row 1, column 0" ./ex-pc cls.h5 <nan.csv
echo "ok: the C API reports bad input clearly"
