# my_alloc — build, test, demo.
#
#   make            build libmy_alloc.so (+ .so.0 link) and libmy_alloc.a in target/release
#   make demo       build, then run a real program under the library with statistics, and draw its
#                   heap picture (target/demo-heap.svg)
#   make test       every test: header, Rust unit tests, C tests (linked and preloaded), real programs
#   make soak       the soak test at full size (make test runs it small), linked and preloaded
#   make install    PREFIX=/usr/local (and DESTDIR): library with soname links, static library,
#                   header, pkg-config file, the my_alloc command; make uninstall removes them
#   make clean
#
# Build-time settings (see README): make ALIGNMENT=16 NUM_CLASSES=128 THREAD_SAFE=1

CARGO    ?= cargo
CC       ?= cc
LIB_DIR  := target/release
LIB      := $(LIB_DIR)/libmy_alloc.so
PYTHON   ?= /usr/bin/python3
PREFIX   ?= /usr/local
DESTDIR  ?=
VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SOMAJOR  := 0

ifdef ALIGNMENT
export MY_ALLOC_ALIGNMENT := $(ALIGNMENT)
endif
ifdef NUM_CLASSES
export MY_ALLOC_NUM_CLASSES := $(NUM_CLASSES)
endif
ifdef THREAD_SAFE
export MY_ALLOC_THREAD_SAFE := $(THREAD_SAFE)
endif

.PHONY: all build demo test check-header rust-tests settings-tests c-tests profile-tests guard-tests real-tests install-test \
        install uninstall soak clean

all: build

build:
	$(CARGO) build --release --workspace
	ln -sf libmy_alloc.so $(LIB_DIR)/libmy_alloc.so.$(SOMAJOR)

demo: build
	@echo "== python3 counting words, every allocation through malloc, under my_alloc (my_alloc run --stats --profile)"
	PYTHONMALLOC=malloc $(LIB_DIR)/my_alloc run --stats --profile $(CURDIR)/target/demo.prof -- $(PYTHON) c_tests/programs/wordfreq.py
	@echo "== the heap picture of that run"
	$(LIB_DIR)/my_alloc report target/demo.prof -o target/demo-heap.svg

test: build check-header rust-tests settings-tests c-tests profile-tests guard-tests real-tests install-test
	@echo "== all tests passed"

# The committed header must be what the build generates, and must compile cleanly in C and C++.
check-header: build
	@git diff --exit-code -- include/my_alloc.h || \
	  (echo "include/my_alloc.h is out of date: commit the regenerated header"; exit 1)
	printf '#include <stdlib.h>\n#include "my_alloc.h"\nint main(void){void*p=my_alloc(1);freee(p);return my_alloc_check_heap();}\n' > $(LIB_DIR)/header_check.c
	$(CC) -std=c11 -Wall -Wextra -Werror -Iinclude -c $(LIB_DIR)/header_check.c -o $(LIB_DIR)/header_check_c.o
	cp $(LIB_DIR)/header_check.c $(LIB_DIR)/header_check.cpp
	g++ -std=c++17 -Wall -Wextra -Werror -Iinclude -c $(LIB_DIR)/header_check.cpp -o $(LIB_DIR)/header_check_cpp.o

# Release tests of the whole workspace (the core's doc tests among them), then the core's tests
# again in a debug build, where the heap verifies every invariant after each operation (slow: a
# walk of the whole heap each time). Then a Rust program of its own that depends on the crate by
# path and sets my_alloc as its global allocator (rust_tests/run.sh).
rust-tests:
	$(CARGO) test --release --workspace
	$(CARGO) test --lib
	CARGO=$(CARGO) sh rust_tests/run.sh

# The core's tests again under non-default build settings (in their own target directory, with
# their own header, so the default build and the committed header are left alone).
# (The C libraries' build writes the header; the core's tests follow.)
ALT := MY_ALLOC_HEADER_DIR=$(CURDIR)/target/alt $(CARGO)
ALT_RUN = $(ALT) build --release --target-dir target/alt -p my_alloc-clib && \
          $(ALT) test --release --target-dir target/alt -p my_alloc
settings-tests:
	mkdir -p target/alt
	export MY_ALLOC_ALIGNMENT=32 MY_ALLOC_NUM_CLASSES=64 MY_ALLOC_THREAD_SAFE=1 && $(ALT_RUN)
	grep -q 'define MY_ALLOC_ALIGNMENT 32' target/alt/my_alloc.h
	export MY_ALLOC_ALIGNMENT=8 MY_ALLOC_NUM_CLASSES=40 MY_ALLOC_THREAD_SAFE=0 && $(ALT_RUN)
	grep -q 'define MY_ALLOC_THREAD_SAFE 0' target/alt/my_alloc.h

c-tests: build
	sh c_tests/run.sh

# Call stacks in the profile: known call sites, python3, and the thread, fork and dlopen tests
# again with profiling on (after c-tests, whose programs they reuse).
profile-tests: build c-tests
	sh c_tests/profile/run.sh

# Guarded blocks: each class of bug caught, in each mode, and the program's fault handlers kept.
guard-tests: build
	sh c_tests/guard/run.sh

real-tests: build
	sh c_tests/real_programs.sh

# make bench, bench-quick, bench-callgrind: see bench/README.md.
include bench/bench.mk

# The soak test at full size (ten times what make test runs), linked and preloaded.
SOAK_SCALE ?= 10
soak: build
	mkdir -p c_tests/bin
	$(CC) -O1 -g -fno-builtin -pthread -Iinclude -o c_tests/bin/soak.linked c_tests/soak.c \
	  -L$(LIB_DIR) -lmy_alloc -Wl,-rpath,$(CURDIR)/$(LIB_DIR) -ldl
	$(CC) -O1 -g -fno-builtin -pthread -Iinclude -o c_tests/bin/soak.plain c_tests/soak.c -ldl
	SOAK_SCALE=$(SOAK_SCALE) c_tests/bin/soak.linked
	SOAK_SCALE=$(SOAK_SCALE) LD_PRELOAD=$(CURDIR)/$(LIB) c_tests/bin/soak.plain

# Installation: the versioned shared library and its soname links, the static library, the
# header, a pkg-config file and the my_alloc command.
DEST := $(DESTDIR)$(PREFIX)
install: build
	install -d $(DEST)/lib/pkgconfig $(DEST)/include $(DEST)/bin
	install -m 755 $(LIB) $(DEST)/lib/libmy_alloc.so.$(VERSION)
	ln -sf libmy_alloc.so.$(VERSION) $(DEST)/lib/libmy_alloc.so.$(SOMAJOR)
	ln -sf libmy_alloc.so.$(SOMAJOR) $(DEST)/lib/libmy_alloc.so
	install -m 644 $(LIB_DIR)/libmy_alloc.a $(DEST)/lib/libmy_alloc.a
	install -m 644 include/my_alloc.h $(DEST)/include/my_alloc.h
	install -m 755 $(LIB_DIR)/my_alloc $(DEST)/bin/my_alloc
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: my_alloc' 'Description: A malloc replacement with a no_std Rust core' 'Version: $(VERSION)' \
	  'Libs: -L$${libdir} -Wl,-rpath,$${libdir} -lmy_alloc' 'Libs.private: -lpthread -ldl' \
	  'Cflags: -I$${includedir}' > $(DEST)/lib/pkgconfig/my_alloc.pc

uninstall:
	rm -f $(DEST)/lib/libmy_alloc.so.$(VERSION) $(DEST)/lib/libmy_alloc.so.$(SOMAJOR) \
	  $(DEST)/lib/libmy_alloc.so $(DEST)/lib/libmy_alloc.a $(DEST)/include/my_alloc.h \
	  $(DEST)/bin/my_alloc $(DEST)/lib/pkgconfig/my_alloc.pc

# Install into a scratch prefix, build a C program with pkg-config against it, run it directly
# and through `my_alloc run`, then uninstall and check nothing is left.
install-test: build
	sh c_tests/install_test.sh

clean:
	$(CARGO) clean
	rm -rf c_tests/bin bench/bin
