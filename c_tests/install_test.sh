#!/bin/sh
# make install into a scratch prefix; a C program builds with pkg-config against it and runs on
# my_alloc, directly and through `my_alloc run`; make uninstall leaves nothing behind.
set -eu
cd "$(dirname "$0")/.."
prefix=$(mktemp -d "${TMPDIR:-/tmp}/my_alloc_install.XXXXXX")
trap 'rm -rf "$prefix"' EXIT INT TERM
fail() { echo "install-test: $*" >&2; exit 1; }

make -s install PREFIX="$prefix" >/dev/null
for f in lib/libmy_alloc.so.0 lib/libmy_alloc.so lib/libmy_alloc.a include/my_alloc.h \
         lib/pkgconfig/my_alloc.pc bin/my_alloc; do
    [ -e "$prefix/$f" ] || fail "missing $f after install"
done
[ "$(readlink "$prefix/lib/libmy_alloc.so.0")" = "libmy_alloc.so.$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)" ] \
    || fail "libmy_alloc.so.0 does not point at the versioned library"
soname=$(readelf -d "$prefix/lib/libmy_alloc.so.0" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = libmy_alloc.so.0 ] || fail "soname is '$soname'"

cat > "$prefix/prog.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include "my_alloc.h"
int main(void) {
    char *p = my_alloc(100);
    p = reall_oc(p, 100000);
    freee(p);
    for (int i = 0; i < 1000; i++) free(malloc((size_t)i * 7));
    printf("heap check %d\n", my_alloc_check_heap());
    return my_alloc_check_heap();
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046
cc -Wall -Werror -o "$prefix/prog" "$prefix/prog.c" $(pkg-config --cflags --libs my_alloc)
out=$("$prefix/prog") || fail "the pkg-config build failed to run: $out"
[ "$out" = "heap check 0" ] || fail "unexpected output: $out"
ldd "$prefix/prog" | grep -q "$prefix/lib/libmy_alloc.so.0" || fail "not linked against the installed library"

# The command finds the installed library next to itself.
stats=$("$prefix/bin/my_alloc" run --stats -- /bin/ls / 2>&1 >/dev/null) || fail "my_alloc run failed"
printf '%s\n' "$stats" | grep -q '^my_alloc: [0-9]* allocations' || fail "my_alloc run printed no statistics: $stats"
"$prefix/bin/my_alloc" --version >/dev/null || fail "my_alloc --version failed"

make -s uninstall PREFIX="$prefix" >/dev/null
left=$(cd "$prefix" && find lib include bin -type f -o -type l 2>/dev/null)
[ -z "$left" ] || fail "left after uninstall: $left"
echo "install-test: installed, built with pkg-config, ran (directly and with my_alloc run), uninstalled"
