#!/bin/sh
# The profiler's tests: call stacks recorded by the library and read back by `my_alloc report`.
#
# 1. sites.c (known call sites: 80% / 20% of the bytes, a 32 MiB leak, and 16 MiB of strings
#    grown by realloc and kept), linked (snapshot by the API) and preloaded (snapshot by a
#    signal), with a fixed seed at the default rate: the folded stacks give each site its share
#    within the sampling error, the leak report names the leaking function with about the bytes it
#    kept (and the grown strings at about their final size), the snapshot holds half of them, and
#    the pprof file decodes (the command's own tests decode it field by field).
# 2. python3 under LD_PRELOAD (Debian's, built without frame pointers): stacks with names from
#    the interpreter.
# 3. Re-entry: the thread, fork, dlopen and thread-churn tests again with profiling on, sampling
#    one allocation per 4 KiB (and per byte for two of them): they must pass, in bounded time,
#    and leave a complete profile.
set -eu
cd "$(dirname "$0")/../.."
LIB_DIR=$PWD/target/release
LIB=$LIB_DIR/libmy_alloc.so
CLI=$LIB_DIR/my_alloc
BIN=$PWD/c_tests/bin
OUT=$BIN/profile
CC=${CC:-cc}
TIMEOUT=${TEST_TIMEOUT:-300}
mkdir -p "$OUT"
failed=0

fail() {
    echo "  FAILED: $*"
    failed=$((failed + 1))
}

# share FOLDED FUNCTION: the percentage of the folded bytes in stacks whose innermost frame is FUNCTION.
share() {
    awk -v f="$2" '{ n = split($1, fr, ";"); total += $NF; if (fr[n] == f) mine += $NF }
                   END { if (total == 0) print -1; else printf "%.1f\n", 100 * mine / total }' "$1"
}

# within VALUE LOW HIGH
within() {
    awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'
}

$CC -O1 -g -Wall -Wextra -Werror -o "$OUT/sites.linked" c_tests/profile/sites.c \
    -L"$LIB_DIR" -lmy_alloc -Wl,-rpath,"$LIB_DIR" -ldl
$CC -O1 -g -Wall -Wextra -Werror -o "$OUT/sites.plain" c_tests/profile/sites.c -ldl

for mode in linked preloaded; do
    prof=$OUT/sites.$mode.prof
    rm -f "$prof"
    if [ $mode = linked ]; then
        timeout "$TIMEOUT" env MY_ALLOC_PROFILE="$prof" MY_ALLOC_PROFILE_SEED=1 "$OUT/sites.linked" snapshot 2> "$OUT/stderr"
    else
        # Here the snapshot is asked for by a signal.
        timeout "$TIMEOUT" env LD_PRELOAD="$LIB" MY_ALLOC_PROFILE="$prof" MY_ALLOC_PROFILE_SEED=1 \
            MY_ALLOC_PROFILE_SIGNAL=USR2 "$OUT/sites.plain" signal 2> "$OUT/stderr"
    fi
    # The exit summary: the live samples, in one line.
    grep -q "sampled allocations (~.*) still live at exit; 'my_alloc report --leaks" "$OUT/stderr" ||
        fail "sites ($mode): no leak summary at exit: $(cat "$OUT/stderr")"
    "$CLI" report "$prof" --folded > "$OUT/sites.folded"
    # The shares are of the three sites' bytes: what grow_some's strings allocate as they move
    # from one size class to the next depends on the heap, not on the program.
    grep -v ';grow_some ' "$OUT/sites.folded" > "$OUT/sites.three"
    hot=$(share "$OUT/sites.three" hot_path)
    cold=$(share "$OUT/sites.three" cold_path)
    leak=$(share "$OUT/sites.three" leak_some)
    # Of 1032 MiB requested, hot_path asks 800 (77.5%), cold_path 200 (19.4%), leak_some 32.
    # About 2100 samples: the standard error of a 77.5% share is 0.9 points; allow 4.
    within "$hot" 73.5 81.5 || fail "sites ($mode): hot_path has $hot% of the bytes (expected 77.5% +- 4)"
    within "$cold" 15.4 23.4 || fail "sites ($mode): cold_path has $cold% (expected 19.4% +- 4)"
    within "$leak" 2 5 || fail "sites ($mode): leak_some has $leak% (expected 3.1%)"
    "$CLI" report "$prof" --leaks -o "$OUT/sites.$mode.svg" > "$OUT/sites.leaks"
    # 32 MiB kept in 16 KiB blocks: about 64 samples, a standard error of 12.5%; allow 35%.
    top=$(sed -n 's/^#1 *\([0-9.]*\) MiB in .*/\1/p' "$OUT/sites.leaks")
    within "${top:-0}" 21 44 || fail "sites ($mode): the top leak is ${top:-none} MiB (expected 32 +- 35%)"
    sed -n '/^#1/,/^$/p' "$OUT/sites.leaks" | sed -n 2p | grep -q "^ *leak_some (.*sites.c:[0-9]*)" ||
        fail "sites ($mode): the top leak's first frame is not leak_some: $(sed -n '/^#1/,/^$/p' "$OUT/sites.leaks")"
    grep -q "cold_path\|hot_path" "$OUT/sites.leaks" && fail "sites ($mode): freed blocks reported as leaks"
    # 16 MiB of strings grown in place and moved: about 32 samples followed through their resizes.
    grown=$(awk '/^#[0-9]/ { mib = $2; unit = $3; next } /^ *grow_some \(/ && unit == "MiB" { print mib; exit }' "$OUT/sites.leaks")
    within "${grown:-0}" 9 24 || fail "sites ($mode): grow_some keeps ${grown:-no} MiB (expected 16 +- 45%)"
    "$CLI" report "$prof" --leaks --snapshot 1 -o "$OUT/sites.$mode.svg" > "$OUT/sites.snap"
    half=$(sed -n 's/^#1 *\([0-9.]*\) MiB in .*/\1/p' "$OUT/sites.snap")
    within "${half:-0}" 9 26 || fail "sites ($mode): snapshot 1 holds ${half:-none} MiB (expected 16 +- 45%)"
    "$CLI" report "$prof" --pprof "$OUT/sites.pb.gz" --flame-peak "$OUT/peak.svg" --flame-alloc "$OUT/alloc.svg" -o "$OUT/sites.$mode.svg" > /dev/null
    gzip -t "$OUT/sites.pb.gz" || fail "sites ($mode): the pprof file is not gzip"
    grep -q "leak_some" "$OUT/peak.svg" || fail "sites ($mode): the peak flame graph does not show leak_some"
    grep -q "hot_path" "$OUT/alloc.svg" || fail "sites ($mode): the allocation flame graph does not show hot_path"
    echo "  sites ($mode): hot_path $hot%, cold_path $cold%, leak_some $leak% of the bytes; leak ${top} MiB, at the snapshot ${half} MiB; grown strings ${grown} MiB"
done

# python3, preloaded: names from the interpreter's dynamic symbol table.
PY=${PYTHON:-/usr/bin/python3}
prof=$OUT/python.prof
rm -f "$prof"
timeout "$TIMEOUT" env LD_PRELOAD="$LIB" PYTHONMALLOC=malloc MY_ALLOC_PROFILE="$prof" MY_ALLOC_PROFILE_SEED=1 \
    "$PY" c_tests/programs/wordfreq.py > /dev/null 2>&1 || fail "python3 under the profiler"
"$CLI" report "$prof" --folded > "$OUT/python.folded"
frames=$(tr ';' '\n' < "$OUT/python.folded" | sed 's/ [0-9]*$//' | sort -u)
for name in Py_RunMain _PyEval_EvalFrameDefault; do
    printf '%s\n' "$frames" | grep -qx "$name" || fail "python3: no frame named $name in the folded stacks"
done
echo "  python3 (preloaded): $(wc -l < "$OUT/python.folded") distinct stacks, $(printf '%s\n' "$frames" | wc -l) distinct frames"

# Re-entry: the existing tests with profiling on, linked and preloaded.
for spec in threads_stress:4096 fork_with_threads:4096 dlopen_tls:4096 thread_churn:4096 threads_stress:1 dlopen_tls:1; do
    name=${spec%%:*}
    rate=${spec#*:}
    for mode in linked plain; do
        prof=$OUT/$name.$mode.prof
        rm -f "$prof"
        pre=""
        [ $mode = plain ] && pre="LD_PRELOAD=$LIB"
        status=0
        # shellcheck disable=SC2086
        timeout "$TIMEOUT" env $pre MY_ALLOC_PROFILE="$prof" MY_ALLOC_PROFILE_RATE="$rate" TEST_LIB_DIR="$BIN" \
            "$BIN/$name.$mode" > "$OUT/out" 2>&1 || status=$?
        if [ $status -ne 0 ]; then
            fail "$name ($mode, rate $rate): exit $status: $(tail -n 3 "$OUT/out")"
            continue
        fi
        samples=$(grep -c '^A ' "$prof" || true)
        grep -q '^E ' "$prof" || fail "$name ($mode, rate $rate): the profile has no end"
        [ "$samples" -gt 1000 ] || fail "$name ($mode, rate $rate): only $samples samples"
        "$CLI" report "$prof" --leaks -o "$OUT/$name.svg" > /dev/null || fail "$name ($mode): report failed"
        echo "  $name ($mode, one sample per $rate B): $samples samples, passed"
    done
done

[ "$failed" -eq 0 ] && echo "profile tests: all passed"
[ "$failed" -eq 0 ]
