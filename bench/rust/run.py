#!/usr/bin/python3
"""Rust workloads under four global allocators: System (glibc's malloc), the mimalloc crate, the
tikv-jemallocator crate and my_alloc::MyAlloc.

    /usr/bin/python3 bench/rust/run.py [--rounds N] [--quick]     (usually `make bench-rust`)

Builds bench/rust (one binary per allocator: a global allocator is chosen at build time) into
bench/bin/rust_bench-<allocator>, then runs each workload under every allocator, interleaved, N
rounds, through bench/bin/spawn (wall time and peak RSS of the child, as bench/run.py measures
them). Checks that every allocator computed the same checksum, and writes the medians and
their ratios to System's in bench/rust/RESULTS.md (or --out). Standard library only.
"""
import argparse
import datetime
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(HERE))
from run import BIN, ROOT, SCRUB_PREFIXES, geomean, median, run_once  # noqa: E402

# name shown, cargo feature that selects it
ALLOCATORS = [("System", "system"), ("mimalloc", "with-mimalloc"), ("jemalloc", "with-jemalloc"),
              ("my_alloc", "with-my_alloc")]
# name, arguments at full and at quick size (full: about a second under System on 2 cores)
WORKLOADS = [
    ("collections", "hash maps, B-trees and vectors churned at random", ["collections", "1500000"], ["collections", "150000"]),
    ("pipeline", "channel pipeline, 5 threads: every free on another thread", ["pipeline", "2000000"], ["pipeline", "200000"]),
    ("strings", "format!, push_str, split, join, replace", ["strings", "600000"], ["strings", "60000"]),
]


def build():
    for name, feature in ALLOCATORS:
        target = os.path.join(ROOT, "target", "bench-rust-" + feature)
        subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", os.path.join(HERE, "Cargo.toml"),
                        "--features", feature, "--target-dir", target], check=True)
        os.makedirs(BIN, exist_ok=True)
        shutil.copy2(os.path.join(target, "release", "rust_bench"), os.path.join(BIN, "rust_bench-" + name))


def versions():
    """The crates' versions, from the lock file cargo wrote."""
    out = {}
    lock = open(os.path.join(HERE, "Cargo.lock")).read().split("[[package]]")
    for block in lock:
        fields = dict(l.split(" = ", 1) for l in block.strip().splitlines() if " = " in l)
        if fields.get("name", "").strip('"') in ("mimalloc", "libmimalloc-sys", "tikv-jemallocator", "tikv-jemalloc-sys"):
            out[fields["name"].strip('"')] = fields["version"].strip('"')
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = ap.parse_args()
    build()
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUB_PREFIXES)}
    runs = {(w[0], a[0]): [] for w in WORKLOADS for a in ALLOCATORS}
    sums = {}
    failures = []
    for r in range(args.rounds):
        for wname, _, full, quick in WORKLOADS:
            for aname, _ in ALLOCATORS:
                argv = [os.path.join(BIN, "rust_bench-" + aname)] + (quick if args.quick else full)
                res = run_once(argv, None, env, 600)
                if res["status"] != "ok":
                    failures.append("%s under %s: %s %s" % (wname, aname, res["status"], res["stderr"]))
                    continue
                sums.setdefault(wname, set()).add(res["checksum"])
                runs[(wname, aname)].append(res)
        print("round %d of %d done" % (r + 1, args.rounds), file=sys.stderr)
    for wname, s in sums.items():
        if len(s) > 1:
            failures.append("%s: the allocators' checksums differ: %s" % (wname, sorted(s)))

    def med(w, a, key):
        xs = [x[key] for x in runs[(w, a)]]
        return median(xs)

    lines = ["| workload | what it does | " + " | ".join(a for a, _ in ALLOCATORS) + " |",
             "|---|---|" + "---:|" * len(ALLOCATORS)]
    rss = list(lines)
    ratios = {a: [] for a, _ in ALLOCATORS}
    rss_ratios = {a: [] for a, _ in ALLOCATORS}
    for wname, desc, _, _ in WORKLOADS:
        base, base_rss = med(wname, "System", "wall"), med(wname, "System", "rss_kib")
        cells, rcells = [], []
        for a, _ in ALLOCATORS:
            t, m = med(wname, a, "wall"), med(wname, a, "rss_kib")
            if t is None or not base:
                cells.append("—")
                rcells.append("—")
                continue
            ratios[a].append(t / base)
            rss_ratios[a].append(m / base_rss)
            cells.append("%.3f s (%.2f)" % (t, t / base))
            rcells.append("%.1f MiB (%.2f)" % (m / 1024, m / base_rss))
        lines.append("| %s | %s | %s |" % (wname, desc, " | ".join(cells)))
        rss.append("| %s | %s | %s |" % (wname, desc, " | ".join(rcells)))
    geo = "| geometric mean of the ratios | | " + " | ".join(
        "%.2f" % geomean(ratios[a]) if ratios[a] else "—" for a, _ in ALLOCATORS) + " |"
    rgeo = "| geometric mean of the ratios | | " + " | ".join(
        "%.2f" % geomean(rss_ratios[a]) if rss_ratios[a] else "—" for a, _ in ALLOCATORS) + " |"
    v = versions()
    text = "\n".join([
        "# Rust workloads under four global allocators",
        "",
        "Generated by `bench/rust/run.py` (`make bench-rust`) on %s, %d interleaved rounds%s; medians, and in"
        " parentheses the ratio to System's (glibc's malloc). Lower is better. Crates: mimalloc %s"
        " (libmimalloc-sys %s), tikv-jemallocator %s (tikv-jemalloc-sys %s)." % (
            datetime.date.today().isoformat(), args.rounds, ", quick sizes" if args.quick else "",
            v.get("mimalloc", "?"), v.get("libmimalloc-sys", "?"), v.get("tikv-jemallocator", "?"),
            v.get("tikv-jemalloc-sys", "?")),
        "",
        "## Wall time", ""] + lines + [geo, "", "## Peak RSS", ""] + rss + [rgeo, ""] +
        (["## Failures", ""] + ["- " + f for f in failures] + [""] if failures else []))
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
