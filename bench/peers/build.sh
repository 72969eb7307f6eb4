#!/bin/sh
# Build the peers that come from crates into LD_PRELOAD libraries:
#
#   bench/peers/build.sh [OUT_DIR]        (default bench/bin; `make bench-peers` runs it)
#
#   libmimalloc3.so   mimalloc 3, from the sources that libmimalloc-sys ships
#   libsnmalloc.so    snmalloc, from the sources that snmalloc-sys ships
#
# Cargo only fetches the crates named in bench/peers/Cargo.toml (pinned by its Cargo.lock) and
# tells where their sources are; the libraries are compiled here, the way each project builds
# its own malloc-replacing shared library. Each library gets a "<lib>.version" file that
# bench/run.py puts in RESULTS.md. Exits non-zero if a library could not be built (no network
# for the fetch, say); the runner then skips that peer and says so.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(dirname "$here")/bin}
CC=${CC:-cc}
CXX=${CXX:-g++}
PYTHON=${PYTHON:-/usr/bin/python3}
manifest=$here/Cargo.toml
mkdir -p "$out"

cargo fetch --locked --manifest-path "$manifest"
meta=$(cargo metadata --locked --offline --format-version 1 --manifest-path "$manifest")

# "<source directory> <version>" of a package of the lock file.
crate() {
    printf '%s' "$meta" | "$PYTHON" -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == sys.argv[1]:
        print(os.path.dirname(p["manifest_path"]), p["version"])
' "$1"
}

# Build into a temporary name and rename, so a failed build never leaves a half library.
status=0

set -- $(crate libmimalloc-sys)
mi=$1/c_src/mimalloc/v3
mi_version=$(sed -n 's/^#define MI_MALLOC_VERSION \([0-9]*\).*/\1/p' "$mi/include/mimalloc.h")
# static.c includes every source file; the defines and flags are those of mimalloc's own
# release build of its shared library with malloc overridden.
if $CC -O3 -DNDEBUG -DMI_BUILD_RELEASE -DMI_MALLOC_OVERRIDE -DMI_SHARED_LIB -DMI_SHARED_LIB_EXPORT \
        -fPIC -fvisibility=hidden -ftls-model=initial-exec -fno-builtin-malloc -w \
        -I"$mi/include" -shared -o "$out/libmimalloc3.so.tmp" "$mi/src/static.c" -pthread; then
    mv "$out/libmimalloc3.so.tmp" "$out/libmimalloc3.so"
    # MI_MALLOC_VERSION is major * 10000 + minor * 100 + patch.
    echo "$((mi_version / 10000)).$((mi_version / 100 % 100)).$((mi_version % 100)) (libmimalloc-sys $2)" \
        > "$out/libmimalloc3.so.version"
    echo "built $out/libmimalloc3.so: mimalloc $(cat "$out/libmimalloc3.so.version")"
else
    rm -f "$out/libmimalloc3.so.tmp"
    echo "mimalloc 3 did not build" >&2
    status=1
fi

set -- $(crate snmalloc-sys)
sn=$1/upstream/src
# malloc.cc (the C functions) and new.cc (operator new and delete), as in snmalloc's own
# preloadable "snmallocshim" library, with the defines its build gives it on Linux.
if $CXX -std=c++20 -O3 -DNDEBUG -fPIC -fvisibility=hidden -fno-rtti -fomit-frame-pointer \
        -ftls-model=initial-exec -mcx16 -mprfchw -ffunction-sections \
        '-DSNMALLOC_EXPORT=__attribute__((visibility("default")))' \
        -DSNMALLOC_USE_CXX11_THREAD_ATEXIT_DIRECT -DSNMALLOC_CHECK_LOADS=false -DSNMALLOC_PAGEID=false \
        -DSNMALLOC_USE_WAIT_ON_ADDRESS=1 -DSNMALLOC_HAS_LINUX_FUTEX_H -DSNMALLOC_HAS_LINUX_RANDOM_H \
        -DSNMALLOC_PLATFORM_HAS_GETENTROPY \
        -I"$sn" -shared -o "$out/libsnmalloc.so.tmp" "$sn/snmalloc/override/malloc.cc" \
        "$sn/snmalloc/override/new.cc" -static-libstdc++ -pthread; then
    mv "$out/libsnmalloc.so.tmp" "$out/libsnmalloc.so"
    # The shipped sources name no snmalloc version: say which crate, and which commit of the
    # repository it was packaged from (recorded by cargo in the crate).
    commit=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["git"]["sha1"][:12])' \
             "$1/.cargo_vcs_info.json" 2>/dev/null || echo "commit unknown")
    echo "from snmalloc-sys $2 (snmalloc-rs $commit; the sources name no version of their own)" \
        > "$out/libsnmalloc.so.version"
    echo "built $out/libsnmalloc.so: $(cat "$out/libsnmalloc.so.version")"
else
    rm -f "$out/libsnmalloc.so.tmp"
    echo "snmalloc did not build" >&2
    status=1
fi

exit $status
