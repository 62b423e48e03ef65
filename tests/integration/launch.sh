# How `ens train` was started (src/core/comm.c, docs/DESIGN.md "Launchers"):
# one process without a launcher runs without MPI (no MPI daemon is
# started) and says so; a launcher's processes that MPI cannot join are
# refused instead of each training alone; the start-up line names the
# launcher. Launchers other than mpirun are simulated by their variables.
source "$(dirname "$0")/lib.bash"
command -v strace >/dev/null || fail "strace is missing (scripts/deps --test installs it)"
$PY "$SRC/tests/integration/make_regression.py" reg.h5 300 1 5
cat >job.ini <<INI
[data]
path = $WORK/reg.h5
[model]
hidden = 8
[train]
epochs = 2
optimizer = adam
lr = 0.01
[ensemble]
members = 2
seed = 3
[output]
path = result.h5
verbose = 0
INI
# A clean environment: no launcher's variables from whoever runs the test.
clean=(env -u OMPI_COMM_WORLD_SIZE -u PMI_SIZE -u PMI_RANK -u PMIX_RANK -u SLURM_STEP_ID
  -u SLURM_STEP_NUM_TASKS -u SLURM_NTASKS -u SLURM_JOB_ID -u ENS_MPI)

# starts DIR ARGS...: ens train (through strace) in DIR; prints the number
# of programs the run executed (ens itself is 1; MPI's singleton start-up
# executes its daemon too).
execs() {
  local dir=$1
  shift
  mkdir -p "$dir"
  (cd "$dir" && "${clean[@]}" "$@" strace -f -qq -e trace=execve -o trace.txt \
    "$ENS" train -c "$WORK/job.ini") >"$dir/log" 2>&1 || { cat "$dir/log"; fail "$dir: ens train failed"; }
  grep -c 'execve(' "$dir/trace.txt"
}
n=$(execs plain)
[ "$n" = 1 ] || { cat plain/trace.txt; fail "no launcher: $n programs executed, expected ens alone (no MPI start-up)"; }
grep -qx "start: 1 process, no MPI launcher" plain/log || { cat plain/log; fail "no launcher: start-up line"; }
echo "ok: no launcher: ens alone, no MPI start-up; 'start: 1 process, no MPI launcher'"
# The check can fail: with MPI initialized the singleton starts Open MPI's daemon.
n=$(execs forced ENS_MPI=always)
[ "$n" -gt 1 ] || { cat forced/trace.txt; fail "ENS_MPI=always: MPI's singleton start-up executed nothing"; }
grep -q "start: 1 process, no MPI launcher, MPI initialized (ENS_MPI=always)" forced/log ||
  { cat forced/log; fail "ENS_MPI=always: start-up line"; }
same_result plain/result.h5 forced/result.h5 || fail "without MPI and with MPI initialized differ"
echo "ok: ENS_MPI=always initializes MPI ($n programs executed), same result"

# srun with one task: its step is this process alone, no MPI.
mkdir -p srun1
(cd srun1 && "${clean[@]}" SLURM_JOB_ID=5 SLURM_STEP_ID=0 SLURM_STEP_NUM_TASKS=1 SLURM_NTASKS=1 \
  SLURM_PROCID=0 strace -f -qq -e trace=execve -o trace.txt "$ENS" train -c "$WORK/job.ini") \
  >srun1/log 2>&1 || { cat srun1/log; fail "srun with 1 task failed"; }
grep -qx "start: srun, 1 task, no MPI" srun1/log || { cat srun1/log; fail "srun 1 task: start-up line"; }
[ "$(grep -c 'execve(' srun1/trace.txt)" = 1 ] || fail "srun 1 task: MPI was started"
same_result plain/result.h5 srun1/result.h5 || fail "srun 1 task: result differs"
echo "ok: srun with 1 task: no MPI, same result"

# mpirun names itself and its ranks.
run_np 2 np2 -c "$WORK/job.ini" || fail "mpirun -np 2"
grep -qx "start: mpirun, 2 ranks" np2/log || { cat np2/log; fail "mpirun -np 2: start-up line"; }
same_result plain/result.h5 np2/result.h5 || fail "mpirun -np 2: result differs"
echo "ok: 'start: mpirun, 2 ranks', same result"

# refused DIR PATTERN VAR=VALUE...: a launcher said several processes but MPI
# sees one: exit 1, the message, and nothing written.
refused() {
  local dir=$1 pattern=$2 code=0
  shift 2
  mkdir -p "$dir"
  (cd "$dir" && "${clean[@]}" "$@" "$ENS" train -c "$WORK/job.ini") >"$dir/out" 2>"$dir/err" || code=$?
  [ $code = 1 ] || { cat "$dir/out" "$dir/err"; fail "$dir: exit $code, expected 1"; }
  grep -qE "$pattern" "$dir/err" || { cat "$dir/err"; fail "$dir: message does not match /$pattern/"; }
  [ -z "$(ls -A "$dir" | grep -vx 'out\|err')" ] || { ls -la "$dir"; fail "$dir: output left behind"; }
  echo "ok: $dir refused: $(head -c 160 "$dir/err")"
}
refused pmi3 "started by PMI launcher as 3 processes \(PMI_SIZE=3\), but MPI sees 1 rank" \
  PMI_RANK=0 PMI_SIZE=3
refused srun2 "started by srun as 2 processes \(SLURM_STEP_NUM_TASKS=2\), but MPI sees 1 rank.*--mpi=pmix" \
  SLURM_JOB_ID=5 SLURM_STEP_ID=1 SLURM_STEP_NUM_TASKS=2 SLURM_PROCID=0
refused badenv "environment variable ENS_MPI = 'yes': expected auto .* or always" ENS_MPI=yes

# A batch script of 4 tasks that runs ens without srun/mpirun: one process, said aloud.
mkdir -p batch
(cd batch && "${clean[@]}" SLURM_JOB_ID=6 SLURM_NTASKS=4 "$ENS" train -c "$WORK/job.ini") \
  >batch/out 2>batch/err || { cat batch/out batch/err; fail "batch without a launcher failed"; }
grep -qx "start: 1 process, no MPI launcher" batch/out || fail "batch: start-up line"
grep -q "warning: this SLURM job has 4 tasks (SLURM_NTASKS) but ens was started without srun or mpirun" \
  batch/err || { cat batch/err; fail "batch: no warning"; }
echo "ok: a 4-task SLURM job without a launcher trains as 1 process and warns"
echo "launch: all passed"
