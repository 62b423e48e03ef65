# Shared by the SLURM tests (slurm.sh, slurm_twonode.sh), after lib.bash: a
# test cluster from scripts/slurm-cluster (ENS_SLURM_DIR, ports and
# ENS_SLURM_SIMNODES as set by the caller), stopped on exit when the test
# started it, and helpers to submit jobs and wait for them.
CLUSTER=$SRC/scripts/slurm-cluster
export ENS_BIN=$ENS
unset ENS_CONFIG ENS_SET ENS_MEMBERS ENS_OUTPUT ENS_PER ENS_PARTS ENS_REQUEUE ENS_MPIRUN_ARGS \
  ENS_LAUNCHER ENS_SRUN_ARGS

submitted=()
started_cluster=0
cleanup() {
  local code=$?
  set +e
  ((${#submitted[@]})) && scancel "${submitted[@]}" 2>/dev/null
  ((started_cluster)) && "$CLUSTER" stop >cluster-stop.log 2>&1
  exit $code
}
trap cleanup EXIT

# start_cluster: uses the cluster of $ENS_SLURM_DIR when it runs, else starts
# one (and stops it on exit); exports SLURM_CONF.
start_cluster() {
  if "$CLUSTER" status >/dev/null 2>&1; then
    echo "slurm: using the cluster that is already running"
  else
    started_cluster=1 # stop it on exit, also what a failed start left running
    "$CLUSTER" start >cluster.log 2>&1 || { cat cluster.log; fail "scripts/slurm-cluster start"; }
  fi
  eval "$("$CLUSTER" env)"
  export SLURM_CONF
}

# Failure report: the job's output and what SLURM says about it.
job_fail() { # dir jobid message
  echo "---- $1/job.out" >&2
  cat "$1"/job*.out >&2 2>/dev/null || true
  echo "---- scontrol show job $2" >&2
  scontrol show job "$2" >&2 2>/dev/null || true
  local d=${ENS_SLURM_DIR:-/tmp/ens-slurm}
  tail -n 20 "$d/log/slurmctld.log" "$d"/log/slurmd*.log >&2 2>/dev/null || true
  fail "$3"
}

# submit dir sbatch-args...: sbatch from inside dir (the job's submit and work
# directory), output in dir/job.out (array tasks: dir/job-<task>.out); sets
# $JOB to the job id.
submit() {
  local dir=$1 out=job.out
  shift
  case " $* " in *" --array="*) out=job-%a.out ;; esac
  mkdir -p "$dir"
  JOB=$(cd "$dir" && sbatch --parsable --output="$WORK/$dir/$out" "$@") || fail "sbatch $*"
  JOB=${JOB%%;*}
  submitted+=("$JOB")
}

# wait_gone jobid seconds: until the job (all tasks of an array) left the queue.
wait_gone() {
  local i
  for ((i = 0; i < $2 * 4; i++)); do
    [ -z "$(squeue -h -j "$1" -o %i 2>/dev/null)" ] && return 0
    sleep 0.25
  done
  return 1
}

# cancel_job dir jobid: a plain scancel (TERM to every process of the job);
# waits until the job left the queue and its script wrote its exit line.
cancel_job() {
  local i
  scancel "$2" || fail "scancel $2"
  wait_gone "$2" 60 || job_fail "$1" "$2" "job still running 60 s after scancel"
  for ((i = 0; i < 40; i++)); do grep -q "^ens-job: exit" "$1/job.out" && break; sleep 0.25; done
}

# job_field jobid Field: a field of `scontrol show job` (first task of an array).
job_field() {
  scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}

# expect_done dir jobid what: the job ended COMPLETED with exit 0.
expect_done() {
  wait_gone "$2" 120 || job_fail "$1" "$2" "$3: still in the queue after 120 s"
  local state code
  state=$(job_field "$2" JobState)
  code=$(job_field "$2" ExitCode)
  if [ "$state" != COMPLETED ] || [ "$code" != 0:0 ]; then
    job_fail "$1" "$2" "$3: job $2 ended $state with exit $code, expected COMPLETED 0:0"
  fi
}

# wait_training dir jobid: until the job's output shows a finished epoch.
wait_training() {
  local i
  # Generous: a loaded machine may take long to schedule and start the job.
  for ((i = 0; i < 1200; i++)); do
    grep -q "epoch 1/" "$1"/job*.out 2>/dev/null && return 0
    sleep 0.1
  done
  job_fail "$1" "$2" "no training progress in $1 after 120 s"
}
