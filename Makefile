# my_alloc — build, test, demo.
#
#   make            build libmy_alloc.so (+ .so.0 link) and libmy_alloc.a in target/release
#   make demo       build, then run a real program under the preloaded library with statistics
#   make test       every test: header, Rust unit tests, C tests (linked and preloaded), real programs
#   make clean
#
# Build-time settings (see README): make ALIGNMENT=16 NUM_CLASSES=128 THREAD_SAFE=1

CARGO    ?= cargo
CC       ?= cc
LIB_DIR  := target/release
LIB      := $(LIB_DIR)/libmy_alloc.so
PYTHON   ?= /usr/bin/python3

ifdef ALIGNMENT
export MY_ALLOC_ALIGNMENT := $(ALIGNMENT)
endif
ifdef NUM_CLASSES
export MY_ALLOC_NUM_CLASSES := $(NUM_CLASSES)
endif
ifdef THREAD_SAFE
export MY_ALLOC_THREAD_SAFE := $(THREAD_SAFE)
endif

.PHONY: all build demo test check-header rust-tests settings-tests c-tests real-tests clean

all: build

build:
	$(CARGO) build --release
	ln -sf libmy_alloc.so $(LIB_DIR)/libmy_alloc.so.0

demo: build
	@echo "== python3 (every Python allocation through malloc) under LD_PRELOAD=$(LIB), MY_ALLOC_STATS=1"
	PYTHONMALLOC=malloc MY_ALLOC_STATS=1 LD_PRELOAD=$(CURDIR)/$(LIB) $(PYTHON) c_tests/programs/wordfreq.py

test: build check-header rust-tests settings-tests c-tests real-tests
	@echo "== all tests passed"

# The committed header must be what the build generates, and must compile cleanly in C and C++.
check-header: build
	@git diff --exit-code -- include/my_alloc.h || \
	  (echo "include/my_alloc.h is out of date: commit the regenerated header"; exit 1)
	printf '#include <stdlib.h>\n#include "my_alloc.h"\nint main(void){void*p=my_alloc(1);freee(p);return my_alloc_check_heap();}\n' > $(LIB_DIR)/header_check.c
	$(CC) -std=c11 -Wall -Wextra -Werror -Iinclude -c $(LIB_DIR)/header_check.c -o $(LIB_DIR)/header_check_c.o
	cp $(LIB_DIR)/header_check.c $(LIB_DIR)/header_check.cpp
	g++ -std=c++17 -Wall -Wextra -Werror -Iinclude -c $(LIB_DIR)/header_check.cpp -o $(LIB_DIR)/header_check_cpp.o

rust-tests:
	$(CARGO) test --release

# The core's tests again under non-default build settings (in their own target directory, with
# their own header, so the default build and the committed header are left alone).
ALT := MY_ALLOC_HEADER_DIR=$(CURDIR)/target/alt $(CARGO) test --release --target-dir target/alt
settings-tests:
	mkdir -p target/alt
	MY_ALLOC_ALIGNMENT=32 MY_ALLOC_NUM_CLASSES=64 MY_ALLOC_THREAD_SAFE=1 $(ALT)
	grep -q 'define MY_ALLOC_ALIGNMENT 32' target/alt/my_alloc.h
	MY_ALLOC_ALIGNMENT=8 MY_ALLOC_NUM_CLASSES=40 MY_ALLOC_THREAD_SAFE=0 $(ALT)
	grep -q 'define MY_ALLOC_THREAD_SAFE 0' target/alt/my_alloc.h

c-tests: build
	sh c_tests/run.sh

real-tests: build
	sh c_tests/real_programs.sh

# make bench, bench-quick, bench-callgrind: see bench/README.md.
include bench/bench.mk

clean:
	$(CARGO) clean
	rm -rf c_tests/bin bench/bin
