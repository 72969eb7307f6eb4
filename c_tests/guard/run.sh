#!/bin/sh
# Guarded blocks' tests, linked and preloaded:
# 1. bugs.c, one bug class per run, in each mode: "sampled" (every allocation sampled,
#    MY_ALLOC_GUARD_RATE=1), "below" (sampled, blocks at the start of their page, where an
#    underflow faults and an overflow is found at free) and "guard" (MY_ALLOC_CHECK=guard). Each bug must abort (SIGABRT) with the report's line given here and
#    the stack of the block's allocation naming main; correct uses (realloc, memalign, calloc,
#    fork, threads) must exit 0.
# 2. handlers.c: the program's own SIGSEGV handler and ours, in either order, and the default
#    action for a fault that is nobody's.
# 3. `my_alloc symbolize` names a report's frames (function, file:line).
set -eu
cd "$(dirname "$0")/../.."
LIB_DIR=$PWD/target/release
LIB=$LIB_DIR/libmy_alloc.so
OUT=$PWD/c_tests/bin/guard
CC=${CC:-cc}
TIMEOUT=${TEST_TIMEOUT:-120}
mkdir -p "$OUT"
failed=0
passed=0

for prog in bugs handlers; do
    $CC -O0 -g -Wall -Wextra -Werror -Wno-use-after-free -Wno-array-bounds -Wno-stringop-overflow -o "$OUT/$prog.linked" "c_tests/guard/$prog.c" \
        -L"$LIB_DIR" -lmy_alloc -Wl,-rpath,"$LIB_DIR" -ldl -lpthread
    $CC -O0 -g -Wall -Wextra -Werror -Wno-use-after-free -Wno-array-bounds -Wno-stringop-overflow -o "$OUT/$prog.plain" "c_tests/guard/$prog.c" -ldl -lpthread
done

# run LABEL STATUS EXPECTED COMMAND...: COMMAND must exit with STATUS and print EXPECTED on stderr
# (EXPECTED empty: anything).
run() {
    label=$1; want=$2; expected=$3; shift 3
    status=0
    out=$(sh -c 'timeout "$0" "$@"' "$TIMEOUT" "$@" 2>&1) || status=$?
    if [ "$status" -eq "$want" ] && { [ -z "$expected" ] || printf '%s\n' "$out" | grep -qF -- "$expected"; }; then
        passed=$((passed + 1))
        printf '  %-44s %s\n' "$label" "$(printf '%s\n' "$out" | grep -F -- "${expected:-ok}" | head -n 1)"
        LAST_OUT=$out
        return 0
    fi
    failed=$((failed + 1))
    printf '  %-44s FAILED (exit %s, expected %s with "%s")\n%s\n' "$label" "$status" "$want" "$expected" "$out"
    LAST_OUT=""
    return 1
}

# The bug classes: NAME|MODES|EXPECTED (modes: s = sampled, b = below, g = guard).
BUGS='overflow1-write|sg|heap buffer overflow (write) at
overflow1-read|sg|heap buffer overflow (read) at
overflow32-write|sg|31 bytes after the 64-byte block
overflow32-read|sg|31 bytes after the 64-byte block
overflow-memcpy|sg|0 bytes after the 64-byte block
overflow-memcpy-read|sg|heap buffer overflow (read)
overflow-odd|sg|heap buffer overflow (found at free): the 13-byte block
underflow|sg|heap buffer underflow (found at free): the 64-byte block
underflow|b|heap buffer underflow (write) at
uaf-read|sbg|use after free (read) at
uaf-write|sbg|use after free (write) at
uaf-after-reuse|sbg|use after free (write) at
malloc0-write|sbg|0 bytes after the 0-byte block
double-free|sbg|free(): double free'
USES='realloc memalign fork threads'

for mode in s b g; do
    case $mode in
    s) menv="MY_ALLOC_GUARD_RATE=1"; mname=sampled ;;
    b) menv="MY_ALLOC_GUARD_RATE=1 MY_ALLOC_GUARD_BELOW=1"; mname=below ;;
    g) menv="MY_ALLOC_CHECK=guard"; mname=guard ;;
    esac
    for link in linked preloaded; do
        if [ $link = linked ]; then cmd="$OUT/bugs.linked"; pre=""; else cmd="$OUT/bugs.plain"; pre="LD_PRELOAD=$LIB"; fi
        while IFS='|' read -r bug modes expected; do
            case $modes in *$mode*) ;; *) continue ;; esac
            # shellcheck disable=SC2086
            run "$bug ($mname, $link)" 134 "$expected" env $menv $pre "$cmd" "$bug" || continue
            # The block's allocation stack reaches into the program.
            if ! printf '%s\n' "$LAST_OUT" | sed -n '/allocated by thread/,/by thread/p' | grep -q "bugs\.\(linked\|plain\)+0x"; then
                failed=$((failed + 1))
                printf '    FAILED: no allocation stack into the program\n%s\n' "$LAST_OUT"
            fi
        done <<END
$BUGS
END
        for use in $USES; do
            # shellcheck disable=SC2086
            run "$use ($mname, $link)" 0 "$use: ok" env $menv $pre "$cmd" "$use" || true
        done
    done
done

# Handlers: the program's handler over ours, ours over the program's (dlopen), and nobody's.
for link in linked preloaded; do
    if [ $link = linked ]; then cmd="$OUT/handlers.linked"; pre=""; else cmd="$OUT/handlers.plain"; pre="LD_PRELOAD=$LIB"; fi
    # shellcheck disable=SC2086
    run "program's handler first ($link)" 134 "heap buffer overflow (write)" env MY_ALLOC_GUARD_RATE=1 $pre "$cmd" mine-first || true
    printf '%s\n' "$LAST_OUT" | grep -q "the program's handler repaired its own fault" ||
        { failed=$((failed + 1)); echo "    FAILED: the program's handler did not run first"; }
    # 139 = 128 + SIGSEGV: the default action, as without the allocator.
    # shellcheck disable=SC2086
    run "a fault that is nobody's ($link)" 139 "" env MY_ALLOC_GUARD_RATE=1 $pre "$cmd" none || true
done
run "the program's handler under ours (dlopen)" 0 "after the allocator's was installed" \
    env MY_ALLOC_GUARD_RATE=1 "$OUT/handlers.plain" dlopen "$LIB" || true

# The report's frames named by the command: the use after free's three stacks reach main, at the
# lines of the allocation, the free and the write.
# (Through an inner shell, whose "Aborted" notice goes into the pipe too.)
named=$(MY_ALLOC_CHECK=guard sh -c '"$0" uaf-write' "$OUT/bugs.linked" 2>&1 | "$LIB_DIR/my_alloc" symbolize || true)
case_line=$(grep -n '"uaf-write"' c_tests/guard/bugs.c | cut -d: -f1)
for want in "in block (.*bugs.c:" "in main (.*bugs.c:$((case_line + 1)))" "in main (.*bugs.c:$((case_line + 2)))" \
    "in main (.*bugs.c:$((case_line + 3)))"; do
    if printf '%s\n' "$named" | grep -q "$want"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        printf '  FAILED: my_alloc symbolize gave no "%s":\n%s\n' "$want" "$named"
    fi
done
echo "  my_alloc symbolize: $(printf '%s\n' "$named" | grep -c ' in ') frames named"

echo "guard tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
