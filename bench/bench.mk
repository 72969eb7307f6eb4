# Benchmarks of my_alloc against glibc, jemalloc, tcmalloc, mimalloc, mimalloc 3 and snmalloc.
# Included by the top-level Makefile; from the repository root:
#
#   make bench             full suite (7 interleaved rounds, 21 for python; roughly 25 min on 2 cores)
#   make bench-quick       smoke test: small sizes, 3 rounds (2-3 min)
#   make bench-callgrind   instructions per malloc+free pair on the hot path (valgrind)
#   make bench-progs       only build the C programs into bench/bin/
#   make bench-peers       only build the peers that come from crates (mimalloc 3, snmalloc)
#   make bench-rust        Rust workloads under System, the mimalloc and tikv-jemallocator crates
#                          and my_alloc::MyAlloc (bench/rust/run.py; make bench runs it too)
#
# Extra runner options: make bench BENCH_ARGS="--rounds 7 --only churn,server"
# Results: bench/RESULTS.md, bench/results.svg, bench/results.json (see bench/run.py).
# Also works alone: make -f bench/bench.mk bench-quick (from the repository root).

# Directory of this file, whatever the includer's directory is (taken before any include).
BENCH_DIR    := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
BENCH_BIN    := $(BENCH_DIR)/bin
BENCH_CC     ?= cc
BENCH_CFLAGS := -O2 -fno-builtin -pthread -Wall -Wextra
BENCH_PYTHON ?= /usr/bin/python3
BENCH_ARGS   ?=
BENCH_CXX    ?= g++
BENCH_CXXFLAGS := -O2 -fno-builtin -fsized-deallocation -pthread -Wall -Wextra
BENCH_PROGS  := churn server prodcons growth mixed large rss_return fragment realloc_big hotpath spawn \
                larson larson_sized bench_malloc_thread bench_malloc_simple alloc_test mstress xmalloc \
                cache_thrash cache_scratch malloc_large

# Keep the includer's default goal: targets defined here must not become `make`'s default.
_bench_saved_goal := $(.DEFAULT_GOAL)

.PHONY: bench bench-quick bench-callgrind bench-progs bench-peers bench-rust

bench-progs: $(addprefix $(BENCH_BIN)/,$(BENCH_PROGS))

$(BENCH_BIN)/%: $(BENCH_DIR)/%.c $(BENCH_DIR)/bench_common.h
	@mkdir -p $(BENCH_BIN)
	$(BENCH_CC) $(BENCH_CFLAGS) -o $@ $<

# The C++ variant of larson: larson.c with operator new and sized delete.
$(BENCH_BIN)/larson_sized: $(BENCH_DIR)/larson_sized.cc $(BENCH_DIR)/larson.c $(BENCH_DIR)/bench_common.h
	@mkdir -p $(BENCH_BIN)
	$(BENCH_CXX) $(BENCH_CXXFLAGS) -o $@ $<

# mimalloc 3 and snmalloc, compiled from the sources their crates ship (bench/peers/build.sh).
# A failed build (no network for the fetch, say) does not stop `make bench`: the stamp is not
# written, so the next make tries again, and the runner skips the missing peer and says so.
bench-peers: $(BENCH_BIN)/peers.stamp

$(BENCH_BIN)/peers.stamp: $(BENCH_DIR)/peers/build.sh $(BENCH_DIR)/peers/Cargo.toml $(BENCH_DIR)/peers/Cargo.lock
	@mkdir -p $(BENCH_BIN)
	@if sh $(BENCH_DIR)/peers/build.sh $(BENCH_BIN); then touch $@; else \
	  echo "bench-peers: not every peer was built; bench/run.py skips the missing ones"; fi

bench: build bench-progs bench-peers
	$(BENCH_PYTHON) $(BENCH_DIR)/run.py $(BENCH_ARGS)
	$(BENCH_PYTHON) $(BENCH_DIR)/rust/run.py

# The Rust workloads (their binaries are built by the runner, one per global allocator).
bench-rust: $(BENCH_BIN)/spawn
	$(BENCH_PYTHON) $(BENCH_DIR)/rust/run.py $(BENCH_RUST_ARGS)

# Quick runs are smoke tests: their results go to bench/bin/quick (git-ignored), so that they
# never overwrite the committed results of a full run.
bench-quick: build bench-progs bench-peers
	$(BENCH_PYTHON) $(BENCH_DIR)/run.py --quick --out-dir $(BENCH_BIN)/quick $(BENCH_ARGS)

bench-callgrind: build bench-progs
	$(BENCH_PYTHON) $(BENCH_DIR)/callgrind.py $(BENCH_CALLGRIND_N)

BENCH_CALLGRIND_N ?= 1000000

# Used alone (`make -f bench/bench.mk ...`), there is no top-level `build`: delegate to it.
ifeq ($(notdir $(firstword $(MAKEFILE_LIST))),bench.mk)
.PHONY: build
build:
	$(MAKE) -C $(BENCH_DIR)/.. -f Makefile build
endif

.DEFAULT_GOAL := $(_bench_saved_goal)
