#!/bin/sh
# Builds every C test in c_tests/ twice — linked against libmy_alloc.so, and plain to run under
# LD_PRELOAD — and runs both. The conformance test is also linked statically with libmy_alloc.a.
#
# - lib_*.c are helper shared libraries (built first, loaded by the tests with dlopen);
# - misuse_*.c must die with SIGABRT and print the line given after "EXPECT:" in the source
#   (with guarded samples off, so that the block misused is an ordinary one);
# - a source's "ENV:" line gives environment settings for its runs (e.g. MY_ALLOC_CHECK=1).
set -eu
cd "$(dirname "$0")/.."
LIB_DIR=$PWD/target/release
BIN=$PWD/c_tests/bin
CC=${CC:-cc}
CFLAGS="-O1 -g -fno-builtin -Wall -Wextra -Werror -pthread -Iinclude"
TIMEOUT=${TEST_TIMEOUT:-300}
mkdir -p "$BIN"

for src in c_tests/lib_*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    $CC $CFLAGS -shared -fPIC -o "$BIN/$name.so" "$src"
done

failed=0
passed=0

# run LABEL COMMAND... : runs a test that must exit 0.
run() {
    label=$1; shift
    status=0
    out=$(timeout "$TIMEOUT" "$@" 2>&1) || status=$?
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
        printf '  %-40s %s\n' "$label" "$(printf '%s\n' "$out" | tail -n 1)"
    else
        failed=$((failed + 1))
        printf '  %-40s FAILED (exit %s)\n%s\n' "$label" "$status" "$out"
    fi
}

# run_misuse LABEL EXPECTED COMMAND... : the command must abort with EXPECTED on stderr.
run_misuse() {
    label=$1; expected=$2; shift 2
    status=0
    # Through an inner shell, whose "Aborted" notice lands in $out rather than on the terminal.
    out=$(sh -c 'timeout "$0" "$@"' "$TIMEOUT" "$@" 2>&1) || status=$?
    # 134 = 128 + SIGABRT
    if [ "$status" -eq 134 ] && printf '%s\n' "$out" | grep -qF -- "$expected"; then
        passed=$((passed + 1))
        printf '  %-40s aborted: %s\n' "$label" "$(printf '%s\n' "$out" | grep -F -- "$expected" | head -n 1)"
    else
        failed=$((failed + 1))
        printf '  %-40s FAILED (exit %s, expected abort with "%s")\n%s\n' "$label" "$status" "$expected" "$out"
    fi
}

for src in c_tests/*.c; do
    name=$(basename "$src" .c)
    case $name in lib_*) continue ;; esac
    testenv=$(sed -n 's/.*ENV: *//p' "$src" | sed 's| *[*]/ *$||' | head -n 1)
    $CC $CFLAGS -o "$BIN/$name.linked" "$src" -L"$LIB_DIR" -lmy_alloc -Wl,-rpath,"$LIB_DIR" -ldl
    $CC $CFLAGS -o "$BIN/$name.plain" "$src" -ldl
    case $name in
    misuse_*)
        expected=$(sed -n 's/.*EXPECT: *//p' "$src" | sed 's| *[*]/ *$||' | head -n 1)
        # shellcheck disable=SC2086
        run_misuse "$name (linked)" "$expected" env MY_ALLOC_GUARD_RATE=0 $testenv TEST_LIB_DIR="$BIN" "$BIN/$name.linked"
        # shellcheck disable=SC2086
        run_misuse "$name (preloaded)" "$expected" env MY_ALLOC_GUARD_RATE=0 $testenv TEST_LIB_DIR="$BIN" LD_PRELOAD="$LIB_DIR/libmy_alloc.so" "$BIN/$name.plain"
        ;;
    *)
        # shellcheck disable=SC2086
        run "$name (linked)" env $testenv TEST_LIB_DIR="$BIN" "$BIN/$name.linked"
        # shellcheck disable=SC2086
        run "$name (preloaded)" env $testenv TEST_LIB_DIR="$BIN" LD_PRELOAD="$LIB_DIR/libmy_alloc.so" "$BIN/$name.plain"
        ;;
    esac
done

# The static library: these tests also run with libmy_alloc.a linked into the program.
for name in conformance early_calls; do
    [ -e "c_tests/$name.c" ] || continue
    $CC $CFLAGS -rdynamic -o "$BIN/$name.static" "c_tests/$name.c" "$LIB_DIR/libmy_alloc.a" -ldl
    run "$name (static)" "$BIN/$name.static"
done

echo "c_tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
