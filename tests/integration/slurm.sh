# SLURM: the batch scripts in jobs/ on a real single-node cluster
# (scripts/slurm-cluster). Checks that
#   - fashion-1node.sbatch (and fashion-multinode.sbatch, on the one node there
#     is) give a result identical to a direct `mpirun -np 2` run, with mpirun
#     and with srun --mpi=pmix (ENS_LAUNCHER=srun) as the launcher;
#   - resubmitting a finished job says "result complete, nothing to do";
#   - fashion-array.sbatch (2 tasks x 2 members) + fashion-merge.sbatch
#     submitted with --dependency=afterok give a result identical to one
#     4-member run;
#   - `scancel --batch --signal=USR1` (what --signal=B:USR1@120 sends before the
#     time limit) makes the job checkpoint and end with exit code 75 and no
#     result; submitting it again resumes to a result identical to an
#     uninterrupted run (with mpirun and with srun); with ENS_REQUEUE=1 the job requeues itself instead and
#     finishes with the same result;
#   - the --signal=B:USR1 warning before a real time limit stops the job the
#     same way (exit 75, checkpoints) instead of it being killed at the limit,
#     and the job warns at its start that the limit is too short;
#   - a launcher that exits 0 without ens having finished (here a stand-in
#     binary) does not make the job succeed;
#   - USR1 within the first second of a job: exit 75, "nothing to save yet"
#     or checkpoints, and the job submitted again finishes identically;
#   - a clean USR1 stop shows no Open MPI "non-zero status" box, and every
#     stop (USR1, plain scancel) ends with one line naming the checkpoint
#     folder, how far it got and the command that resumes; the ENS_REQUEUE=1
#     log is in order and ends "exit 0 (requeued".
# Needs root (or sudo) to start the cluster; stops it again unless it was
# already running.
# shellcheck shell=bash source=tests/integration/lib.bash
source "$(dirname "$0")/lib.bash"
t_start=$SECONDS
JOBS=$SRC/jobs
unset ENS_SLURM_SIMNODES # the single-node cluster (slurm_twonode.sh: two nodes)
# shellcheck source=tests/integration/slurm.bash
source "$(dirname "$0")/slurm.bash"
start_cluster
[ "$(sinfo -h -N -o %T | head -1)" = idle ] || { sinfo -N -l; fail "node not idle"; }
echo "ok: cluster up (node $(sinfo -h -N -o '%N, %c CPUs')) after $((SECONDS - t_start))s"

$PY "$SRC/tests/integration/make_data.py" data.h5 3000 24 5
$PY "$SRC/tests/integration/make_data.py" big.h5 20000 32 7
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 32,16
dropout = 0.1
[train]
epochs = 3
batch = 64
[ensemble]
members = 4
[output]
path = result.h5
INI
# Long enough (several seconds) to be stopped mid-training.
long=(--set data.path="$WORK/big.h5" --set "model.hidden=128,64" --set train.epochs=40)

# References, run directly.
run_np 2 ref4 -c "$WORK/job.ini" || fail "reference run"
run_np 2 ref-long -c "$WORK/job.ini" "${long[@]}" || fail "long reference run"

# 1. One node, and the multi-node script on the one node there is.
submit one --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini"
id=$JOB
expect_done one "$id" "fashion-1node.sbatch"
same_result ref4/result.h5 one/result.h5 || job_fail one "$id" "1-node job result differs from mpirun -np 2"
grep -q "^ens-job: exit 0" one/job.out || job_fail one "$id" "no exit line in the job output"
grep -q "^ens-job: done: result $WORK/one/result.h5 (complete" one/job.out || job_fail one "$id" "no checked result line"
echo "ok: fashion-1node.sbatch result identical to mpirun -np 2 ($((SECONDS - t_start))s)"

# The same job launched by srun --mpi=pmix instead of mpirun: identical result.
srun --mpi=list 2>&1 | grep -qw pmix || fail "srun --mpi=list names no pmix plugin"
ENS_LAUNCHER=srun submit one-srun --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini"
id=$JOB
expect_done one-srun "$id" "fashion-1node.sbatch with ENS_LAUNCHER=srun"
grep -q "^ens-job: srun --mpi=pmix" one-srun/job.out || job_fail one-srun "$id" "the job did not launch with srun"
same_result one/result.h5 one-srun/result.h5 || job_fail one-srun "$id" "srun and mpirun results differ"
echo "ok: ENS_LAUNCHER=srun (srun --mpi=pmix) result identical to mpirun's ($((SECONDS - t_start))s)"

# Resubmitting a finished job (the scripts always pass --resume): nothing to
# do, exit 0, the result untouched.
sum_before=$(md5sum <one/result.h5)
submit one --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini"
id=$JOB
expect_done one "$id" "resubmitted finished job"
grep -q "result complete, nothing to do" one/job.out || job_fail one "$id" "no 'result complete' line"
[ "$(md5sum <one/result.h5)" = "$sum_before" ] || job_fail one "$id" "the finished result was rewritten"
echo "ok: resubmitted finished job: result complete, nothing to do, exit 0 ($((SECONDS - t_start))s)"

ENS_CONFIG=$WORK/job.ini submit multi --nodes=1 --ntasks-per-node=2 "$JOBS/fashion-multinode.sbatch"
id=$JOB
expect_done multi "$id" "fashion-multinode.sbatch"
same_result ref4/result.h5 multi/result.h5 || job_fail multi "$id" "multinode job result differs"
echo "ok: fashion-multinode.sbatch (1 node x 2 tasks, config from ENS_CONFIG) identical ($((SECONDS - t_start))s)"

# 2. Array of 2 tasks x 2 members, then the merge once both succeeded.
ENS_PER=2 ENS_PARTS=$WORK/array/parts submit array --array=0-1 --ntasks=2 \
  "$JOBS/fashion-array.sbatch" "$WORK/job.ini"
arr=$JOB
# Output path as in the reference (result.h5 in the job's directory): the
# result's config attribute records it.
ENS_PARTS=$WORK/array/parts submit merge --dependency=afterok:"$arr" \
  "$JOBS/fashion-merge.sbatch" result.h5
mrg=$JOB
expect_done array "$arr" "fashion-array.sbatch"
for t in 0 1; do
  [ "$(job_field "${arr}_$t" ExitCode)" = 0:0 ] || job_fail array "${arr}_$t" "array task $t failed"
  [ -f array/parts/part-$t.h5 ] || job_fail array "${arr}_$t" "array task $t wrote no part-$t.h5"
done
expect_done merge "$mrg" "fashion-merge.sbatch (afterok:$arr)"
same_result ref4/result.h5 merge/result.h5 || job_fail merge "$mrg" "merged array result differs from one 4-member run"
echo "ok: fashion-array.sbatch (2 tasks x 2 members) + fashion-merge.sbatch identical to one 4-member run ($((SECONDS - t_start))s)"

# 1b. A launcher that exits 0 although ens did not train: the job fails.
printf '#!/bin/sh\nexit 0\n' >fake-ens
chmod +x fake-ens
ENS_BIN=$WORK/fake-ens submit fake --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini"
id=$JOB
wait_gone "$id" 120 || job_fail fake "$id" "job still in the queue after 120 s"
[ "$(job_field "$id" JobState)" = FAILED ] && [ "$(job_field "$id" ExitCode)" = 2:0 ] ||
  job_fail fake "$id" "launcher exit 0 without a result: job ended $(job_field "$id" JobState) $(job_field "$id" ExitCode), expected FAILED 2:0"
grep -q "reporting no outcome" fake/job.out || job_fail fake "$id" "no 'no outcome' message"
echo "ok: launcher exit 0 without ens finishing: job FAILED 2:0 ($((SECONDS - t_start))s)"

# 1c. Ranks killed after a scancel before they said how far they got (a
# stand-in that reports "running" with its checkpoint folder, as ens does
# once its config is agreed, and dies on TERM): the stop line is read from
# the checkpoint folder.
cat >killed-ens <<'SH'
#!/bin/sh
[ "${OMPI_COMM_WORLD_RANK:-0}" = 0 ] || exec sleep 600
d=$PWD/result.h5.ckpt
mkdir -p "$d" && : >"$d/member_1.h5" && : >"$d/unit_0.h5"
printf 'state=running\ncode=0\nresult=%s\ncheckpoints=%s\nmembers=4\nmessage=\n' "$PWD/result.h5" "$d" >"$ENS_STATUS_FILE"
echo "[member 0] epoch 1/40"
exec sleep 600
SH
chmod +x killed-ens
ENS_BIN=$WORK/killed-ens submit killed --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini"
id=$JOB
wait_training killed "$id"
cancel_job killed "$id"
grep -qE "^ens-job: stopped by SIGTERM: checkpoints in $WORK/killed/result.h5.ckpt: 1 of 4 members finished, 1 in-progress checkpoint file\(s\) \(ens was ended before it said how far it got.*; resume: cd $WORK/killed && .*sbatch" killed/job.out ||
  job_fail killed "$id" "no stop line read from the checkpoint folder when the ranks said nothing"
grep -q "^ens-job: exit 75" killed/job.out || job_fail killed "$id" "no exit 75 after the stop"
echo "ok: ranks killed before their outcome: the stop line read from the checkpoint folder ($((SECONDS - t_start))s)"

# 2b. USR1 within the first second of the job: a stop, exit 75, and the job
# can be submitted again.
submit early --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini" "${long[@]}"
id=$JOB
# As soon as the batch shell runs (its first line comes after its traps):
# the launcher and ens's MPI_Init are then still to come.
for ((i = 0; i < 2000; i++)); do
  grep -q "^ens-job: job" early/job.out 2>/dev/null && break
  sleep 0.02
done
scancel --batch --signal=USR1 "$id" || fail "scancel --batch --signal=USR1 $id"
wait_gone "$id" 60 || job_fail early "$id" "job still running 60 s after an early USR1"
[ "$(job_field "$id" ExitCode)" = 75:0 ] ||
  job_fail early "$id" "early USR1: exit code $(job_field "$id" ExitCode), expected 75:0"
grep -qE "^ens-job: stopped by SIGUSR1: (nothing to save yet|checkpoints in $WORK/early/result.h5.ckpt).*; resume: cd $WORK/early && .*sbatch" early/job.out ||
  job_fail early "$id" "no stop line with the checkpoints and the resume command"
! grep -q "exited on signal" early/job.out || job_fail early "$id" "a rank was killed by the early signal"
submit early --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini" "${long[@]}"
id=$JOB
expect_done early "$id" "job submitted again after an early USR1"
same_result ref-long/result.h5 early/result.h5 || job_fail early "$id" "result after an early stop differs"
echo "ok: USR1 in the first second: exit 75 ($(grep -o 'stopped by SIGUSR1: [a-z ]*' early/job.out | head -1)), resubmitted to an identical result ($((SECONDS - t_start))s)"

# 2c. A plain scancel (TERM to every process): the job says where the
# checkpoints are and how to resume.
submit cancel --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini" "${long[@]}"
id=$JOB
wait_training cancel "$id"
cancel_job cancel "$id"
grep -qE "^ens-job: stopped by SIGTERM: checkpoints in $WORK/cancel/result.h5.ckpt: [0-9]+ of 4 members finished.*; resume: cd $WORK/cancel && .*sbatch" cancel/job.out ||
  job_fail cancel "$id" "no line saying where the checkpoints are after scancel"
# ens itself said how far it got: its ranks were not killed (mpirun's own
# SIGKILL, 2 x odls_base_sigkill_timeout after its TERM) while writing.
! grep -q "ens was ended before it said" cancel/job.out ||
  job_fail cancel "$id" "the ranks were killed before writing their outcome"
echo "ok: plain scancel: $(grep -o 'checkpoints in [^;]*' cancel/job.out | tail -1) ($((SECONDS - t_start))s)"

# 3. Stop with the warning signal, then submit again to resume.
submit stop --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini" "${long[@]}"
id=$JOB
wait_training stop "$id"
scancel --batch --signal=USR1 "$id" || fail "scancel --batch --signal=USR1 $id"
wait_gone "$id" 60 || job_fail stop "$id" "job still running 60 s after USR1"
[ "$(job_field "$id" ExitCode)" = 75:0 ] ||
  job_fail stop "$id" "exit code $(job_field "$id" ExitCode) after USR1, expected 75:0"
grep -q "got SIGUSR1" stop/job.out || job_fail stop "$id" "the batch shell did not trap USR1"
! grep -q "non-zero status" stop/job.out || job_fail stop "$id" "Open MPI's non-zero exit box after a clean stop"
grep -qE "^ens-job: stopped by SIGUSR1: checkpoints in $WORK/stop/result.h5.ckpt: " stop/job.out ||
  job_fail stop "$id" "no stop line naming the checkpoints"
[ ! -e stop/result.h5 ] || job_fail stop "$id" "a result was written despite the stop"
ls stop/result.h5.ckpt/unit_*.h5 >/dev/null 2>&1 || job_fail stop "$id" "no checkpoints after the stop"
echo "ok: scancel --batch --signal=USR1: job ended with exit 75, checkpoints, no result ($((SECONDS - t_start))s)"
submit stop --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini" "${long[@]}"
id=$JOB
expect_done stop "$id" "resubmitted job"
grep -qE "resumed at|not retrained" stop/job.out || job_fail stop "$id" "the resubmitted job resumed nothing"
same_result ref-long/result.h5 stop/result.h5 || job_fail stop "$id" "resumed result differs from an uninterrupted run"
[ ! -d stop/result.h5.ckpt ] || job_fail stop "$id" "checkpoints not cleaned up"
echo "ok: resubmitted job resumed to a result identical to an uninterrupted run ($((SECONDS - t_start))s)"

# 3b. The same stop and resume with srun as the launcher.
ENS_LAUNCHER=srun submit stop-srun --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini" "${long[@]}"
id=$JOB
wait_training stop-srun "$id"
scancel --batch --signal=USR1 "$id" || fail "scancel --batch --signal=USR1 $id"
wait_gone "$id" 60 || job_fail stop-srun "$id" "srun job still running 60 s after USR1"
[ "$(job_field "$id" ExitCode)" = 75:0 ] ||
  job_fail stop-srun "$id" "srun job: exit code $(job_field "$id" ExitCode) after USR1, expected 75:0"
[ ! -e stop-srun/result.h5 ] || job_fail stop-srun "$id" "a result was written despite the stop"
ls stop-srun/result.h5.ckpt/unit_*.h5 >/dev/null 2>&1 || job_fail stop-srun "$id" "no checkpoints after the stop"
ENS_LAUNCHER=srun submit stop-srun --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini" "${long[@]}"
id=$JOB
expect_done stop-srun "$id" "resubmitted srun job"
grep -qE "resumed at|not retrained" stop-srun/job.out || job_fail stop-srun "$id" "the resubmitted srun job resumed nothing"
same_result ref-long/result.h5 stop-srun/result.h5 || job_fail stop-srun "$id" "srun: resumed result differs from an uninterrupted run"
echo "ok: srun job stopped by USR1 (exit 75) and resumed to an identical result ($((SECONDS - t_start))s)"

# 4. The same stop with ENS_REQUEUE=1: the job requeues itself and resumes.
ENS_REQUEUE=1 submit requeue --ntasks=2 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini" "${long[@]}"
id=$JOB
wait_training requeue "$id"
scancel --batch --signal=USR1 "$id" || fail "scancel --batch --signal=USR1 $id"
for ((i = 0; i < 240; i++)); do
  state=$(job_field "$id" JobState)
  [ "$(job_field "$id" Restarts)" = 1 ] && [ "$state" = PENDING ] && break
  case $state in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
      job_fail requeue "$id" "job ended $state instead of requeueing itself" ;;
  esac
  sleep 0.25
done
[ "$(job_field "$id" Restarts)" = 1 ] || job_fail requeue "$id" "job not requeued after USR1"
# A requeued job waits (BeginTime) before it becomes eligible; skip that,
# but only once slurmd has finished cleaning up the old batch step: a job
# released too early is killed with "Job credential revoked".
for ((i = 0; i < 120; i++)); do
  [ "$(sinfo -h -o %T | head -n 1)" = idle ] && break
  sleep 0.25
done
sleep 3
scontrol update jobid="$id" StartTime=now || fail "scontrol update StartTime=now"
expect_done requeue "$id" "requeued job"
grep -q "requeueing job $id" requeue/job.out || job_fail requeue "$id" "no requeue line in the output"
# Whole lines in order: the signal, the stop line, the requeue, its exit 0.
order=$(grep -nE "^ens-job: (got SIGUSR1|stopped by|requeued job|exit 0 \(requeued)" requeue/job.out | head -4 | cut -d: -f3 | cut -c2-12 | tr '\n' '|')
[ "$order" = "got SIGUSR1|stopped by |requeued jo|exit 0 (req|" ] ||
  job_fail requeue "$id" "requeue log out of order: $order"
grep -qE "resumed at|not retrained" requeue/job.out || job_fail requeue "$id" "the requeued job resumed nothing"
same_result ref-long/result.h5 requeue/result.h5 || job_fail requeue "$id" "requeued result differs from an uninterrupted run"
echo "ok: ENS_REQUEUE=1: stopped job requeued itself and resumed to an identical result ($((SECONDS - t_start))s)"

# 5. The real warning before the time limit: with --time=2 and
# --signal=B:USR1@60 the signal is due after 60 s, and slurmctld sends it at
# its first time-limit check after that (within about a minute). The job must
# stop with exit 75 and checkpoints, not run into the limit (TIMEOUT). (With
# --time=1 the signal was due at once and came 10 s after the start: on a
# loaded machine the job had no checkpoint yet, and the test failed.)
submit limit --ntasks=2 --time=2 --signal=B:USR1@60 "$JOBS/fashion-1node.sbatch" "$WORK/job.ini" \
  "${long[@]}" --set train.epochs=100000
id=$JOB
wait_gone "$id" 210 || job_fail limit "$id" "job still running after 210 s"
state=$(job_field "$id" JobState)
code=$(job_field "$id" ExitCode)
if [ "$state" != FAILED ] || [ "$code" != 75:0 ]; then
  job_fail limit "$id" "job ended $state with exit $code near its time limit, expected FAILED 75:0"
fi
grep -q "got SIGUSR1" limit/job.out || job_fail limit "$id" "the batch shell got no USR1 before the limit"
grep -qE "^ens-job: warning: time limit [0-9:]+ is shorter than" limit/job.out || job_fail limit "$id" "no warning about the short time limit"
ls limit/result.h5.ckpt/unit_*.h5 >/dev/null 2>&1 || job_fail limit "$id" "no checkpoints after the warning"
echo "ok: --time=2 --signal=B:USR1@60: warned before the limit, exit 75 with checkpoints ($((SECONDS - t_start))s)"

echo "slurm: all passed in $((SECONDS - t_start))s"
