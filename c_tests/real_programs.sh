#!/bin/sh
# Real programs under LD_PRELOAD: runs each workload below twice, once with the system's malloc
# and once with LD_PRELOAD=target/release/libmy_alloc.so and MY_ALLOC_STATS=1, and checks that
# the preloaded run
#   - exits 0, like the normal run;
#   - prints the same stdout (the workloads are deterministic, so nothing is normalised), and the
#     same stderr once my_alloc's own lines are removed;
#   - really used my_alloc: every process prints its statistics at exit (a table per size class,
#     then "my_alloc: N allocations, ..." and two more totals lines), and the sum of N over the
#     run's processes must reach the workload's minimum; any other "my_alloc: " line (a
#     diagnostic) is a failure.
# Workloads: python3 (allocation-heavy, threaded, word frequencies), git, gcc (compile and run a C
# program), perl, sqlite3. Their files are in c_tests/programs/.
#
#   sh c_tests/real_programs.sh                    all workloads
#   sh c_tests/real_programs.sh NAME...            only these
#   sh c_tests/real_programs.sh --workload NAME DIR  one run of one workload in DIR, an absolute
#                                                  path (used internally, and to reproduce a
#                                                  failure by hand under LD_PRELOAD)
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
SELF=$ROOT/c_tests/real_programs.sh
LIB=$ROOT/target/release/libmy_alloc.so
PROGS=$ROOT/c_tests/programs
PYTHON=/usr/bin/python3      # Debian's python, not a pyenv shim
TIMEOUT=${TEST_TIMEOUT:-120} # seconds, per run

# Settings for both runs: every Python object through malloc, fixed hashing, a fixed locale.
export PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 LC_ALL=C TZ=UTC

# ---- The workloads: wl_NAME DIR runs in DIR (a fresh directory) and prints to stdout. ----

WORKLOADS="python_alloc python_threads wordfreq git gcc perl sqlite"

wl_python_alloc() { "$PYTHON" "$PROGS/py_alloc.py"; }
wl_python_threads() { "$PYTHON" "$PROGS/py_threads.py"; }
wl_wordfreq() { "$PYTHON" "$PROGS/wordfreq.py"; }
wl_git() { sh "$PROGS/git_work.sh" "$1/repo"; }
wl_perl() { perl "$PROGS/perl_work.pl"; }
wl_sqlite() { sqlite3 "$1/test.db" < "$PROGS/sqlite_work.sql"; }
wl_gcc() {
    # Compile (cc1, as, collect2, ld; with -flto also lto-wrapper and lto1) and run. The build
    # directory is mapped to "." in the debug info, so the binaries must be identical too.
    gcc -O2 -g -Wall -Wextra -ffile-prefix-map="$1"=. -o "$1/prog" "$PROGS/cprog.c"
    gcc -O3 -flto -ffile-prefix-map="$1"=. -o "$1/prog_lto" "$PROGS/cprog.c"
    "$1/prog" > "$1/prog.out"
    "$1/prog_lto" > "$1/lto.out"
    cmp "$1/prog.out" "$1/lto.out"
    cat "$1/prog.out"
    echo "binaries: $(cd "$1" && sha256sum prog prog_lto | cut -c1-16 | tr '\n' ' ')"
}

# Fewest allocations (summed over the run's processes) that prove my_alloc did the work: well
# below what each workload does today (its line in the output shows the count), far above what
# merely loading the library would give.
min_allocations() {
    case $1 in
    python_alloc | python_threads | wordfreq | perl) echo 1000000 ;;
    git | gcc) echo 50000 ;;
    sqlite) echo 100000 ;;
    esac
}

if [ "${1:-}" = --workload ]; then
    [ $# -eq 3 ] || { echo "usage: $0 --workload NAME DIR" >&2; exit 2; }
    mkdir -p "$3"
    cd "$3"
    "wl_$2" "$PWD"
    exit 0
fi

# ---- The driver ----

[ -e "$LIB" ] || { echo "real_programs: $LIB is missing: run cargo build --release" >&2; exit 1; }
for tool in "$PYTHON" git gcc perl sqlite3 timeout sha256sum; do
    command -v "$tool" > /dev/null || { echo "real_programs: $tool is not installed" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/real_programs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }

# describe_status STATUS: "exit N", or "killed by SIGNAME" for 128 + signal.
describe_status() {
    if [ "$1" -gt 128 ] && [ "$1" -lt 160 ]; then
        echo "exit $1 = killed by SIG$(kill -l $(($1 - 128)))"
    elif [ "$1" -eq 124 ]; then
        echo "exit 124 = timed out after ${TIMEOUT}s"
    else
        echo "exit $1"
    fi
}

# run_once NAME MODE: one run, in $tmp/NAME.MODE/, output in $tmp/NAME.MODE.{out,err};
# sets $status and $secs.
run_once() {
    dir=$tmp/$1.$2
    mkdir "$dir"
    start=$(now)
    status=0
    if [ "$2" = preloaded ]; then
        timeout "$TIMEOUT" env LD_PRELOAD="$LIB" MY_ALLOC_STATS=1 \
            sh "$SELF" --workload "$1" "$dir" < /dev/null > "$dir.out" 2> "$dir.err" || status=$?
    else
        timeout "$TIMEOUT" env -u LD_PRELOAD -u MY_ALLOC_STATS \
            sh "$SELF" --workload "$1" "$dir" < /dev/null > "$dir.out" 2> "$dir.err" || status=$?
    fi
    secs=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
}

# show_file LABEL FILE: a file's last lines, indented, for a failure report.
show_file() {
    if [ -s "$2" ]; then
        echo "    $1 (last 20 lines):"
        tail -n 20 "$2" | sed 's/^/      /'
    else
        echo "    $1: (empty)"
    fi
}

passed=0
failed=0
[ $# -gt 0 ] && WORKLOADS="$*"
for name in $WORKLOADS; do
    min=$(min_allocations "$name")
    [ -n "$min" ] || { echo "real_programs: no workload named $name" >&2; exit 2; }
    run_once "$name" normal
    normal_status=$status normal_secs=$secs
    run_once "$name" preloaded
    pre_status=$status pre_secs=$secs
    n=$tmp/$name.normal p=$tmp/$name.preloaded

    # my_alloc's lines apart from the program's; the statistics summed over processes.
    grep -v '^my_alloc: ' "$n.err" > "$n.err.prog" || true
    grep -v '^my_alloc: ' "$p.err" > "$p.err.prog" || true
    # Statistics lines: the per-class table (its header and rows) and the three totals lines.
    grep '^my_alloc: ' "$p.err" \
        | grep -Ev '^my_alloc: ([0-9]+ allocations, |peak in use |from the OS: |size class +requests)' \
        | grep -Ev '^my_alloc: +(>?[0-9.]+ (B|KiB|MiB|GiB)|mapped)( +[0-9]+){4}$' \
        > "$p.diag" || true
    allocs=$(awk '/^my_alloc: [0-9]+ allocations, / { s += $2; n++ } END { printf "%d %d", s, n }' "$p.err")
    procs=${allocs#* }
    allocs=${allocs% *}

    problems=""
    [ "$normal_status" -eq 0 ] || problems="$problems
    normal run (system malloc) failed: $(describe_status "$normal_status")"
    [ "$pre_status" -eq 0 ] || problems="$problems
    preloaded run failed: $(describe_status "$pre_status")"
    cmp -s "$n.out" "$p.out" || problems="$problems
    stdout differs (diff normal preloaded below)"
    cmp -s "$n.err.prog" "$p.err.prog" || problems="$problems
    stderr differs, my_alloc lines removed (diff normal preloaded below)"
    [ ! -s "$p.diag" ] || problems="$problems
    my_alloc printed diagnostics (below)"
    [ "$allocs" -ge "$min" ] || problems="$problems
    my_alloc counted $allocs allocations in $procs processes, expected at least $min"

    if [ -z "$problems" ]; then
        passed=$((passed + 1))
        verdict=OK
    else
        failed=$((failed + 1))
        verdict=FAILED
    fi
    printf '  %-15s %-6s %11s allocations in %3s processes   normal %6ss   preloaded %6ss\n' \
        "$name" "$verdict" "$allocs" "$procs" "$normal_secs" "$pre_secs"
    if [ -n "$problems" ]; then
        echo "    reproduce: LD_PRELOAD=$LIB MY_ALLOC_STATS=1 sh c_tests/real_programs.sh --workload $name DIR$problems"
        if ! cmp -s "$n.out" "$p.out"; then
            echo "    stdout diff:"
            diff -u "$n.out" "$p.out" | head -n 40 | sed 's/^/      /' || true
        fi
        if ! cmp -s "$n.err.prog" "$p.err.prog"; then
            echo "    stderr diff:"
            diff -u "$n.err.prog" "$p.err.prog" | head -n 40 | sed 's/^/      /' || true
        fi
        if [ -s "$p.diag" ]; then show_file "my_alloc diagnostics" "$p.diag"; fi
        show_file "preloaded stderr" "$p.err"
    fi
done

echo "real_programs: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
