# The structure-aware sweep of the files ens reads (tests/sweep_inputs.py,
# issue 11): generated data files through `ens train` and `ens predict` under
# mpirun -np 2, generated result files through `ens predict`, `ens info` and
# `ens merge`, generated trunk files through `[trunk] file`. Every run exits
# 0, or 1 with a short message naming the file; no crash, hang or MPI_ABORT.
# 100 cases here; ENS_SWEEP_FULL=1 runs the full 910 (a few minutes).
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/sweep_inputs.py" "$ENS" "$WORK/sweep" || fail "the sweep found failing cases"
echo "sweep: all passed"
