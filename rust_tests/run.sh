#!/bin/sh
# The Rust program of rust_tests/user_program, a project of its own that depends on my_alloc by
# path and sets it as its global allocator: built and run as is (only its Rust allocations on
# my_alloc), in checking mode, and with the C names exported (the whole process on my_alloc);
# then misuses through the Rust surface, which must abort with the C library's diagnoses.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
CARGO=${CARGO:-cargo}
run() {
    "$CARGO" run --release --quiet --manifest-path "$here/user_program/Cargo.toml" \
        --target-dir "$root/target/user_program" "$@"
}

run
MY_ALLOC_CHECK=1 run
run --features c-names

# misuse EXPECTED [ENV=VALUE] ARG: the program must die of SIGABRT with EXPECTED on stderr.
misuse() {
    expected=$1
    shift
    err=$root/target/user_program/misuse.err
    status=0
    env "$@" "$root/target/user_program/release/my_alloc-user-program" "$which" 2>"$err" >/dev/null || status=$?
    if [ "$status" -ne 134 ] || ! grep -qF "$expected" "$err"; then
        echo "FAIL: Rust misuse $which (exit status $status), expected \"$expected\"; stderr:"
        cat "$err"
        exit 1
    fi
    echo "ok: Rust misuse $which: $(grep -F "$expected" "$err" | head -n 1)"
}

# The plain build again (the last run built the c-names one into the same place).
"$CARGO" build --release --quiet --manifest-path "$here/user_program/Cargo.toml" --target-dir "$root/target/user_program"
which=double-free misuse "my_alloc: dealloc(): double free of" MY_ALLOC_CHECK=0
which=wrong-layout misuse "my_alloc: dealloc(): layout larger than the block" MY_ALLOC_CHECK=1
