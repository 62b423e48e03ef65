# shellcheck shell=bash disable=SC2154 # ens, ens_args, submit_dir, ...: set by the sourcing script
# Shared by the training batch scripts (fashion-1node, fashion-multinode,
# fashion-array): sourced from $SLURM_SUBMIT_DIR/jobs (or ENS_JOBS_DIR) after
# each script has put its signal traps in place. It launches `ens train`,
# and decides the job's exit code from what ens itself reported
# (ENS_STATUS_FILE) and a check of the result file, never from the
# launcher's exit code alone:
#   0   ens finished and the result file exists and reads back (`ens info`);
#       also a stopped job that requeued itself (ENS_REQUEUE=1: PENDING again)
#   75  stopped by a signal (checkpoints, or nothing to save yet); resubmit
#   1,2 ens's own error codes; 2 when ens reported no outcome at all (the
#       launch failed or a rank was killed), or the result is missing
# Every stop ends with one line: where the checkpoints are, how far they got,
# and the command that resumes. Every line is written whole (one printf).
# Callers set: ens (binary), submit_dir, launch-independent args (array
# ens_args), ens_job_script (the script's path as submitted), and call
# ens_job_main "$@" with the script's own arguments (for the resume command).

ens_job_say() { printf 'ens-job: %s\n' "$*"; }
ens_job_err() { printf 'ens-job: error: %s\n' "$*" >&2; }
ens_job_now() { date -Is; }

# ens_job_seconds D-HH:MM:SS|HH:MM:SS|MM:SS|MM: seconds ('' when unlimited).
ens_job_seconds() {
  local t=$1 d=0 h=0 m=0 s=0
  [[ $t =~ ^[0-9] ]] || return 0
  if [[ $t == *-* ]]; then d=${t%%-*} t=${t#*-}; fi
  IFS=: read -r -a p <<<"$t"
  case ${#p[@]} in
    1) m=${p[0]} ;;
    2) m=${p[0]} s=${p[1]} ;;
    3) h=${p[0]} m=${p[1]} s=${p[2]} ;;
  esac
  echo $((10#$d * 86400 + 10#$h * 3600 + 10#$m * 60 + 10#$s))
}

# The warning's lead: ENS_SIGNAL_LEAD, else the script's own
# "#SBATCH --signal=B:USR1@N" line (an sbatch --signal option given on the
# command line is not visible to the job: set ENS_SIGNAL_LEAD with it).
ens_job_lead() {
  local n
  if [[ -n ${ENS_SIGNAL_LEAD:-} ]]; then
    echo "$ENS_SIGNAL_LEAD"
    return
  fi
  n=$(sed -n 's/^#SBATCH --signal=B:USR1@\([0-9]*\).*/\1/p' "$0" 2>/dev/null | head -1)
  echo "${n:-120}"
}

# Warns when the time limit leaves no time to train before the warning:
# SLURM sends USR1 between lead and lead + 60 s before the limit (it checks
# limits about once a minute), so a limit under lead + 60 s + a first
# checkpoint's time stops the job at once. The scripts want lead + 180 s
# (5 minutes with the default lead of 120 s).
ens_job_check_time() {
  local limit lead secs
  [[ -n ${SLURM_JOB_ID:-} ]] || return 0
  limit=$(squeue -h -j "$SLURM_JOB_ID" -o %l 2>/dev/null | head -1)
  secs=$(ens_job_seconds "$limit")
  [[ -n $secs ]] || return 0
  lead=$(ens_job_lead)
  if ((secs < lead + 180)); then
    ens_job_say "warning: time limit $limit is shorter than $((lead + 180)) s: the USR1 warning" \
      "(--signal=B:USR1@$lead) comes $lead-$((lead + 60)) s before the limit, that is after" \
      "at most $((secs - lead > 0 ? secs - lead : 0)) s, maybe before the first checkpoint;" \
      "give --time of at least $(((lead + 180 + 59) / 60)) minutes"
  fi
}

# Seconds mpirun waits after a TERM before passing it on to its ranks, and
# again before SIGKILL: (KillWait - 4) / 2, so that its SIGKILL comes 4 s
# before SLURM's (KillWait, default 30 s; ENS_KILL_WAIT outside SLURM), but
# at most 5: mpirun also runs this sequence when its ranks exit non-zero
# (75 after a USR1 stop), so it ends 2 x that later (measured: 1 s with 1,
# 9 s with 5). orte_abort_on_non_zero_status=0 would avoid that wait, but
# then a rank killed by a signal leaves mpirun waiting for the others.
ens_job_kill_wait() {
  local kw=${ENS_KILL_WAIT:-}
  if [[ -z $kw && -n ${SLURM_JOB_ID:-} ]]; then
    kw=$(scontrol show config 2>/dev/null | sed -n 's/^KillWait *= *\([0-9]*\).*/\1/p' | head -1)
  fi
  [[ $kw =~ ^[0-9]+$ ]] || kw=30
  echo "$kw"
}
ens_job_kill_grace() {
  local kw
  kw=$(ens_job_kill_wait)
  local g=$(((kw - 4) / 2))
  ((g >= 1)) || g=1
  ((g <= 5)) || g=5
  echo "$g"
}

# The stop line when ens was ended before it wrote its outcome: read from
# the checkpoint folder ens named when it started (ENS_STATUS_FILE's
# checkpoints= and members=).
ens_job_ckpt_note() {
  local dir=$1 members=$2 f done=0 units=0
  if [[ -z $dir ]]; then
    echo "ens was ended before it could say where its checkpoints go (the launcher exited $3): see [output] checkpoint_dir (default <output path>.ckpt)"
    return
  fi
  for f in "$dir"/member_*.h5; do [[ -e $f ]] && done=$((done + 1)); done
  for f in "$dir"/unit_*.h5; do [[ -e $f ]] && units=$((units + 1)); done
  if ((done + units == 0)); then
    echo "nothing to save yet ($dir holds no checkpoint; ens was ended before it said how far it got, the launcher exited $3)"
    return
  fi
  echo "checkpoints in $dir: $done of ${members:-?} members finished, $units in-progress checkpoint file(s) (ens was ended before it said how far it got; the launcher exited $3)"
}

# The launcher (ENS_LAUNCHER) into the array ens_launch.
ens_job_launcher() {
  ens_launcher=${ENS_LAUNCHER:-mpirun}
  case $ens_launcher in
    mpirun)
      ens_launch=(mpirun -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS -x ENS_STATUS_FILE)
      # mpirun given TERM (scancel sends it to every process of the job)
      # sends its ranks TERM after odls_base_sigkill_timeout seconds and
      # SIGKILL after twice that: with the default of 1 s the ranks, which
      # got TERM from SLURM at once, had 2 s to agree on the stop, write
      # their checkpoints and the outcome. Give them most of SLURM's
      # KillWait instead, leaving this script time for its stop line.
      ens_launch+=(--mca odls_base_sigkill_timeout "$(ens_job_kill_grace)")
      [[ $(id -u) == 0 ]] && ens_launch+=(--allow-run-as-root)
      # shellcheck disable=SC2206
      ens_launch+=(${ENS_MPIRUN_ARGS:-}) ;;
    srun)
      # srun passes the environment (OPENBLAS_NUM_THREADS too) to the ranks.
      # shellcheck disable=SC2206
      ens_launch=(srun --mpi=pmix ${ENS_SRUN_ARGS:-}) ;;
    *)
      ens_job_err "ENS_LAUNCHER=$ens_launcher: expected mpirun or srun"
      exit 1 ;;
  esac
}

# mpirun's stderr passes through here: its "exited with non-zero status" box
# is dropped when the code is one ens chose (1, 2, 75; ens has said why in
# its own line); every other box (a rank killed by a signal, no slots, a
# failed launch) passes unchanged. Lines stay whole and in order.
ens_job_filter() {
  awk '
    function flush_box(drop) { if (!drop) for (i = 1; i <= n; i++) print box[i]; n = 0; fflush() }
    /^--------------------*$/ {
      if (!inbox) { inbox = 1; n = 0; box[++n] = $0; next }
      box[++n] = $0; inbox = 0
      text = ""; for (i = 1; i <= n; i++) text = text "\n" box[i]
      drop = 0
      if (text ~ /terminated normally, but [0-9]+ process(es)? returned/) drop = 1
      if (text ~ /exited with non-zero status/ && text ~ /Exit code: *(1|2|75)\n/) drop = 1
      flush_box(drop); next
    }
    inbox { box[++n] = $0; next }
    { print; fflush() }
    END { if (inbox) flush_box(0) }'
}

# The command that resumes this job, for the stop line.
ens_job_resume_cmd() {
  local cmd script v
  script=$ens_job_script
  cmd="cd $(printf %q "$submit_dir") &&"
  for v in ENS_CONFIG ENS_SET ENS_MEMBERS ENS_OUTPUT ENS_PER ENS_PARTS ENS_BIN ENS_LAUNCHER \
    ENS_MPIRUN_ARGS ENS_SRUN_ARGS ENS_REQUEUE ENS_JOBS_DIR ENS_SIGNAL_LEAD; do
    [[ -n ${!v:-} ]] && cmd+=" $v=$(printf %q "${!v}")"
  done
  # An array task alone: the ensemble size must then be given (a smaller
  # --array changes the default).
  if [[ -n ${SLURM_ARRAY_TASK_ID:-} && -z ${ENS_MEMBERS:-} ]]; then
    cmd+=" ENS_MEMBERS=$members"
  fi
  cmd+=" sbatch"
  [[ -n ${SLURM_ARRAY_TASK_ID:-} ]] && cmd+=" --array=$SLURM_ARRAY_TASK_ID"
  [[ -n ${SLURM_JOB_NUM_NODES:-} ]] && cmd+=" --nodes=$SLURM_JOB_NUM_NODES"
  [[ -n ${SLURM_NTASKS:-} ]] && cmd+=" --ntasks=$SLURM_NTASKS"
  cmd+=" $(printf %q "$script")"
  ((${#ens_job_argv[@]})) && cmd+=" $(printf '%q ' "${ens_job_argv[@]}")"
  echo "${cmd% }"
}

# status KEY: a value of the outcome file ens wrote.
ens_job_status() { sed -n "s/^$1=//p" "$ENS_STATUS_FILE" 2>/dev/null | head -1; }

# Called when scontrol requeue returns and, as a trap, by the TERM that the
# requeue sends this shell, which may come in the middle of the first call:
# the trap then returns, and the first call finishes its two lines (an exit
# from the trap ended the log before its "exit 0" line).
ens_job_requeued_exit() {
  ((ens_job_requeue_said)) && return 0
  ens_job_requeue_said=1
  ens_job_say "requeued job $SLURM_JOB_ID: it resumes from the checkpoints when it starts again"
  ens_job_say "exit 0 (requeued; SLURM shows it PENDING again), $(ens_job_now)"
  exit 0
}

# ens_job_stopped NOTE: the stop line, then requeue (ENS_REQUEUE=1) or exit 75.
ens_job_stopped() {
  local note=$1
  if [[ ${ENS_REQUEUE:-0} == 1 && -n ${SLURM_JOB_ID:-} ]]; then
    ens_job_say "stopped by $ens_job_signal: $note; resume: requeueing job $SLURM_JOB_ID (by hand: $(ens_job_resume_cmd))"
    # scontrol requeue ends this shell with TERM: it then only says so.
    ens_job_requeue_said=0
    trap ens_job_requeued_exit TERM USR1
    if scontrol requeue "$SLURM_JOB_ID"; then
      ens_job_requeued_exit
    fi
    trap - TERM USR1
    ens_job_say "scontrol requeue $SLURM_JOB_ID failed; resume: $(ens_job_resume_cmd); exit 75, $(ens_job_now)"
    exit 75
  fi
  ens_job_say "stopped by $ens_job_signal: $note; resume: $(ens_job_resume_cmd)"
  if [[ $ens_job_signal == SIGUSR1 ]]; then
    ens_job_say "exit 75 (stopped; SLURM shows FAILED 75:0), $(ens_job_now)"
  else # TERM from scancel (CANCELLED), scontrol requeue (PENDING) or the limit (TIMEOUT)
    ens_job_say "exit 75 (stopped by $ens_job_signal; SLURM shows the job CANCELLED, PENDING or TIMEOUT), $(ens_job_now)"
  fi
  exit 75
}

# ens_job_main ARGS...: runs ens with ens_args and ends the script.
ens_job_main() {
  ens_job_argv=("$@")
  ens_job_launcher
  export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
  mkdir -p "$submit_dir/logs" 2>/dev/null || true
  export ENS_STATUS_FILE=$submit_dir/logs/.ens-status-${SLURM_JOB_ID:-$$}
  rm -f "$ENS_STATUS_FILE"
  ens_job_say "job ${SLURM_JOB_ID:-none}${ens_job_what:+ ($ens_job_what)} on ${SLURM_JOB_NODELIST:-$(hostname -s)}, ${SLURM_NTASKS:-?} tasks, restart ${SLURM_RESTART_COUNT:-0}, $(ens_job_now)"
  ens_job_check_time
  if [[ -n ${ens_job_members:-} && -n ${SLURM_NTASKS:-} ]] && ((SLURM_NTASKS > ens_job_members)); then
    ens_job_say "warning: $SLURM_NTASKS ranks for $ens_job_members member(s): $((SLURM_NTASKS - ens_job_members)) rank(s) will idle; submit with --ntasks=$ens_job_members or train more members"
  fi
  ens_job_say "$(printf '%q ' "${ens_launch[@]}" "$ens" "${ens_args[@]}")"
  ens_job_say "submit directory $submit_dir"
  local code=0 filt=
  if ((ens_job_stop)); then
    rm -f "$ENS_STATUS_FILE"
    ens_job_stopped "nothing to save yet (the stop came before training started)"
  fi
  if [[ $ens_launcher == mpirun ]]; then
    # The filter ignores the stop signals (scancel sends TERM to every
    # process of the job): it must drain mpirun's stderr to the end, or
    # mpirun blocks writing the ranks' last lines and never exits.
    exec 3> >(
      trap '' TERM INT HUP USR1
      ens_job_filter >&2
    )
    filt=$!
    "${ens_launch[@]}" "$ens" "${ens_args[@]}" 2>&3 &
  else
    "${ens_launch[@]}" "$ens" "${ens_args[@]}" &
  fi
  ens_job_child=$!
  # Until the launcher ends. A stop that came before ens's ranks were up
  # (ENS_STATUS_FILE says "running" once they are) may have been dropped by
  # the launcher, which had no ranks to pass it to: it is sent again then.
  # Sleeping in the background keeps the traps prompt.
  local resent=0 stop_at=-1
  while kill -0 "$ens_job_child" 2>/dev/null; do
    ((ens_job_stop && stop_at < 0)) && stop_at=$SECONDS
    if ((ens_job_stop && !resent)) && [[ $(ens_job_status state) == running ]]; then
      resent=1
      kill -USR1 "$ens_job_child" 2>/dev/null || true
    fi
    sleep 0.2 &
    wait $! 2>/dev/null
  done
  wait "$ens_job_child"
  code=$?
  if [[ -n $filt ]]; then
    exec 3>&-
    wait "$filt" 2>/dev/null || true
  fi

  local state result msg
  state=$(ens_job_status state)
  # The launcher may exit while its ranks are still writing their
  # checkpoints and the outcome: wait for it, up to 10 s but only until 3 s
  # before SLURM's SIGKILL (KillWait after the TERM), so that the stop line
  # below, read from the checkpoint folder if need be, is still said.
  local waited=0 limit=50
  if ((ens_job_stop)); then
    ((stop_at >= 0)) || stop_at=$SECONDS
    limit=$(((stop_at + $(ens_job_kill_wait) - 3 - SECONDS) * 5))
    ((limit <= 50)) || limit=50
  fi
  while ((ens_job_stop)) && [[ $state == running ]] && ((waited < limit)); do
    sleep 0.2 &
    wait $! 2>/dev/null
    waited=$((waited + 1))
    state=$(ens_job_status state)
  done
  local ran=0 ckdir members
  [[ $state == running ]] && ran=1
  ckdir=$(ens_job_status checkpoints)
  members=$(ens_job_status members)
  result=$(ens_job_status result)
  msg=$(ens_job_status message)
  rm -f "$ENS_STATUS_FILE"
  case $state in
    done)
      if [[ -f $result ]] && "$ens" info "$result" >/dev/null 2>&1; then
        ((code == 0)) || ens_job_say "note: the launcher exited $code after ens finished"
        ens_job_say "done: result $result (complete: ens info reads it)"
        ens_job_say "exit 0, $(ens_job_now)"
        exit 0
      fi
      ens_job_err "ens reported success but the result $result is missing or unreadable"
      ens_job_say "exit 2, $(ens_job_now)"
      exit 2 ;;
    stopped)
      [[ -n $ens_job_signal ]] || ens_job_signal=$(sed -n 's/^stopped by \([A-Z0-9]*\):.*/\1/p' <<<"$msg")
      [[ $msg == "stopped by SIG"* ]] && msg=${msg#stopped by SIG*: }
      ens_job_stopped "${msg%%; resume:*}"
      ;;
    failed)
      code=$(ens_job_status code)
      [[ $code =~ ^[0-9]+$ ]] && ((code != 0)) || code=2
      ens_job_say "failed: $msg"
      ens_job_say "exit $code, $(ens_job_now)"
      exit "$code" ;;
  esac
  # No outcome from ens: its ranks never started, or were killed.
  if ((ens_job_stop && ran)); then
    ens_job_stopped "$(ens_job_ckpt_note "$ckdir" "$members" "$code")"
  elif ((ens_job_stop)); then
    ens_job_stopped "nothing to save yet (the stop came before ens could start; the launcher exited $code)"
  fi
  ((code != 0 && code != 75)) || code=2
  ens_job_err "the launcher ($ens_launcher) exited with ens reporting no outcome: the launch failed or a rank was killed (see the messages above); no result"
  ens_job_say "exit $code, $(ens_job_now)"
  exit "$code"
}
