# comm_lint.sh SOURCE_DIR: every MPI call in src/ goes through the
# communication layer (src/core/comm.c, ens_comm_* = MPI_* renamed), so that
# a single `ens train` runs without MPI. Fails naming each file and call that
# calls MPI directly (comments and string literals are not calls).
set -u
root=${1:?usage: comm_lint.sh SOURCE_DIR}
bad=0 files=0
while IFS= read -r f; do
  files=$((files + 1))
  case $f in */src/core/comm.c) continue ;; esac
  # Comments out (the compiler's own scanner), then string literals.
  hits=$(gcc -fpreprocessed -dD -E -P -x c "$f" 2>/dev/null |
    sed -E 's/"([^"\\]|\\.)*"//g' | grep -oE '\bMPI_[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | sort -u)
  if [ -n "$hits" ]; then
    echo "${f#"$root"/}: calls MPI directly: $(echo $hits | tr -d '(' ) (use ens_comm_* from core/comm.h: sed -i -f tests/tools/comm_rename.sed FILE)"
    bad=1
  fi
done < <(find "$root/src" -name '*.c' -o -name '*.h')
[ "$files" -gt 0 ] || { echo "comm_lint: no sources under $root/src"; exit 1; }
[ $bad = 0 ] && echo "comm_lint: $files files, every MPI call goes through src/core/comm.c"
exit $bad
