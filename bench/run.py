#!/usr/bin/python3
"""Benchmark runner: my_alloc against glibc, jemalloc, tcmalloc, mimalloc 2 and 3, snmalloc.

jemalloc, tcmalloc and mimalloc 2 are Debian's; mimalloc 3 and snmalloc are built from the
sources their crates ship, by bench/peers/build.sh (`make bench-peers`).

    /usr/bin/python3 bench/run.py [--quick] [--rounds N] [--only a,b] [--group g,h] [--allocators a,b]
    (usually through `make bench` / `make bench-quick`, which build bench/bin first)

Each benchmark runs under every allocator, interleaved (A B C ..., A B C ..., ...), so slow
drifts of a noisy machine hit every allocator alike; absolute times mean little here,
ratios measured side by side do. Per run: wall time and peak RSS (ru_maxrss of the child,
both measured by bin/spawn) and any measurements the program prints itself (lines
"rss_kib|live_kib|ms|count <label> <value>"). Per benchmark and allocator: medians,
reported as ratios to glibc and to mimalloc, with geometric means. Three groups: our own
speed suite ("speed"), our programs reproducing the published allocator benchmarks
("public", section "Public patterns"), each with its own geometric means, plus one combined
geometric mean over both; and the memory programs (rss_return, fragment, realloc_big), which
run in the same interleaved way but get their own "Memory" section and stay out of every
geometric mean.

Writes bench/RESULTS.md, bench/results.svg and bench/results.json (or --out-dir) and
prints the tables. Standard library only.
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
BIN = os.path.join(BENCH_DIR, "bin")
SPAWN = os.path.join(BIN, "spawn")
sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, BENCH_DIR)
import svgchart  # noqa: E402  (our own SVG writer, next to this file)

PY = "/usr/bin/python3"
LIBDIR = "/usr/lib/x86_64-linux-gnu"
MY_ALLOC_LIB = os.path.join(ROOT, "target", "release", "libmy_alloc.so")

# name, library to preload (None = glibc's own malloc), where it comes from: a Debian package
# (its version from dpkg), or BUILT for the peers that bench/peers/build.sh compiles from the
# sources their crates ship (their version in a file next to the library, "<lib>.version").
BUILT = "built"
ALLOCATORS = [
    ("glibc", None, "libc6"),
    ("jemalloc", LIBDIR + "/libjemalloc.so.2", "libjemalloc2"),
    ("tcmalloc", LIBDIR + "/libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
    ("mimalloc", LIBDIR + "/libmimalloc.so.2", "libmimalloc2.0"),
    ("mimalloc3", os.path.join(BIN, "libmimalloc3.so"), BUILT),
    ("snmalloc", os.path.join(BIN, "libsnmalloc.so"), BUILT),
    ("my_alloc", MY_ALLOC_LIB, None),
]

# my_alloc again with its profiler on (MY_ALLOC_PROFILE, call stacks at the default rate): the
# cost of profiling in production, as a column beside the rest.
PROFILED = "my_alloc+prof"
# my_alloc with its guarded samples off (MY_ALLOC_GUARD_RATE=0), on request: the cost of the
# default guarded sampling is my_alloc's column against this one.
UNGUARDED = "my_alloc-guard"

# Each benchmark: program and arguments at full and quick size, threads it runs (for the
# "more threads than cores" note) and extra environment. Full sizes take ~0.5-2 s under
# glibc on the 2-core reference machine; quick sizes about a tenth of that.
BENCHMARKS = [
    dict(name="churn", threads=1, desc="small objects 8-512 B, one thread: LIFO batches, then random replacement",
         cmd=["churn"], full=["10000", "1000", "20000", "10000000"], quick=["10000", "100", "20000", "1000000"]),
    dict(name="server", threads=4, desc="4 threads, working sets of 16 B-8 KiB objects, 25% freed by another thread",
         cmd=["server"], full=["4", "1500000", "5000", "25"], quick=["4", "150000", "5000", "25"]),
    dict(name="prodcons", threads=2, desc="one thread allocates 16 B-1 KiB, another frees (batched bounded queue)",
         cmd=["prodcons"], full=["6000000"], quick=["600000"]),
    dict(name="growth", threads=1, desc="realloc growth: strings a few bytes at a time, vectors by doubling",
         cmd=["growth"], full=["256", "10000", "16", "30"], quick=["256", "1000", "16", "3"]),
    dict(name="mixed", threads=1, desc="16 B-1 MiB power-law sizes, live set rising and falling",
         cmd=["mixed"], full=["16000000", "100000", "8"], quick=["1600000", "100000", "2"]),
    dict(name="large", threads=1, desc="64 KiB-32 MiB blocks, every page written, 4 live",
         cmd=["large"], full=["700", "4"], quick=["70", "4"]),
    dict(name="python", threads=1, desc="CPython (PYTHONMALLOC=malloc) running bench/pyload.py",
         cmd=[PY, "-s", "-B", os.path.join(BENCH_DIR, "pyload.py")], full=["1.0"], quick=["0.1"],
         env={"PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"},
         # A whole interpreter's run varies the most from run to run (its spread was 25-55% over
         # 7 rounds), and its allocator's share of the time is the smallest: three times the
         # rounds, so that its median is as trustworthy as the others'.
         rounds_factor=3),
    # Public patterns (section "Public patterns"): our own programs written from the published
    # descriptions of the standard allocator benchmarks (mimalloc-bench, glibc's benchtests,
    # Hoard's), with their own geometric means. Fixed work, so wall time is the measure.
    dict(name="larson", group="public", threads=2,
         desc="Larson server simulation: 2 lineages of 5000 blocks of 8-1000 B, each round by a new thread",
         cmd=["larson"], full=["2", "80", "100000", "5000", "8", "1000"], quick=["2", "8", "100000", "5000", "8", "1000"]),
    dict(name="larson_sized", group="public", threads=2,
         desc="larson in C++: operator new and sized operator delete",
         cmd=["larson_sized"], full=["2", "80", "100000", "5000", "8", "1000"],
         quick=["2", "8", "100000", "5000", "8", "1000"]),
    dict(name="bmt1", group="public", threads=1,
         desc="glibc bench-malloc-thread, 1 thread: 1024 slots, 4 B-32 KiB inverse-square sizes",
         cmd=["bench_malloc_thread"], full=["1", "40000000"], quick=["1", "4000000"]),
    dict(name="bmt2", group="public", threads=2, desc="glibc bench-malloc-thread, 2 threads",
         cmd=["bench_malloc_thread"], full=["2", "30000000"], quick=["2", "3000000"]),
    dict(name="bmt4", group="public", threads=4, desc="glibc bench-malloc-thread, 4 threads",
         cmd=["bench_malloc_thread"], full=["4", "15000000"], quick=["4", "1500000"]),
    dict(name="bmt64", group="public", threads=64, desc="glibc bench-malloc-thread, 64 threads (oversubscribed)",
         cmd=["bench_malloc_thread"], full=["64", "1000000"], quick=["64", "100000"]),
    dict(name="malloc_simple", group="public", threads=2,
         desc="glibc bench-malloc-simple: batches of 16 B-4 KiB blocks; main thread, 2 threads, main again",
         cmd=["bench_malloc_simple"], full=["25", "2"], quick=["3", "2"]),
    dict(name="alloc_test1", group="public", threads=1,
         desc="alloc-test (OLT): 8 B-1 KiB Pareto sizes, short- and long-lived objects, 1 thread",
         cmd=["alloc_test"], full=["1", "12000000", "100000"], quick=["1", "1200000", "100000"]),
    dict(name="alloc_test2", group="public", threads=2, desc="alloc-test (OLT), 2 threads",
         cmd=["alloc_test"], full=["2", "12000000", "100000"], quick=["2", "1200000", "100000"]),
    dict(name="mstress", group="public", threads=4,
         desc="mimalloc stress test: 17 B-4 MiB, live sets growing and shrinking, objects passed between threads",
         cmd=["mstress"], full=["4", "10", "400000", "2000", "1000"], quick=["4", "2", "200000", "2000", "1000"]),
    dict(name="xmalloc", group="public", threads=4,
         desc="xmalloc-test: 2 threads allocate 16-128 B, 2 others free, through a shared list",
         cmd=["xmalloc"], full=["2", "2", "12000000", "100", "64"], quick=["2", "2", "1200000", "100", "64"]),
    dict(name="cache_thrash", group="public", threads=2,
         desc="Hoard cache-thrash: each thread writes its own 8 B objects (active false sharing)",
         cmd=["cache_thrash"], full=["2", "2500", "8", "100000"], quick=["2", "250", "8", "100000"]),
    dict(name="cache_scratch", group="public", threads=2,
         desc="Hoard cache-scratch: threads free neighbouring objects from main, then write their own",
         cmd=["cache_scratch"], full=["2", "2500", "8", "100000"], quick=["2", "250", "8", "100000"]),
    dict(name="malloc_large", group="public", threads=1,
         desc="mimalloc-bench malloc-large: 5-25 MiB blocks, every page written, 4 live",
         cmd=["malloc_large"], full=["600", "4"], quick=["60", "4"]),
    # Memory programs (section "Memory" of RESULTS.md, not in the geometric means). The two
    # phases of rss_return run as separate processes, so that memory one phase keeps cannot
    # be reused by (and hide in) the other. Each run sleeps 1 s by design: max_rounds caps them.
    dict(name="rss_large", group="memory", threads=1, max_rounds=5,
         desc="rss_return, large phase: 1 MiB blocks written, all freed; RSS right after and 1 s later",
         cmd=["rss_return"], full=["1024", "0"], quick=["256", "0"]),
    dict(name="rss_small", group="memory", threads=1, max_rounds=5,
         desc="rss_return, small phase: 64 B blocks written, all freed; RSS right after and 1 s later",
         cmd=["rss_return"], full=["0", "500"], quick=["0", "128"]),
    dict(name="fragment", group="memory", threads=1,
         desc="16-128 B blocks, every other one freed, then 1-64 KiB blocks for as many bytes",
         cmd=["fragment"], full=["2000000"], quick=["500000"]),
    dict(name="realloc_big", group="memory", threads=1,
         desc="one buffer grown by realloc (doubling, then +4 KiB steps) to max_mib MiB, other blocks live",
         cmd=["realloc_big"], full=["256", "16"], quick=["64", "16"]),
]

# Lines a program may print besides its checksum: "<unit> <label> <value>".
METRIC_UNITS = ("rss_kib", "live_kib", "ms", "count")

# Variables that would change an allocator's behaviour: dropped so every run uses defaults.
SCRUB_PREFIXES = ("LD_PRELOAD", "MALLOC_", "GLIBC_TUNABLES", "MIMALLOC_", "TCMALLOC_",
                  "JEMALLOC_", "MY_ALLOC_", "PYTHON")


# Benchmark groups, in report order: our own speed suite (benchmarks without a "group"), our
# programs reproducing the published benchmarks, and the memory programs.
GROUPS = ("speed", "public", "memory")
SECTION = {"speed": "Results", "public": "Public patterns", "memory": "Memory"}   # of RESULTS.md


def group_of(bench):
    return bench.get("group", "speed")


def is_memory(bench):
    return group_of(bench) == "memory"


def rounds_of(bench, rounds):
    """Rounds for this benchmark: the requested number times its rounds_factor, capped by its
    max_rounds."""
    n = rounds * bench.get("rounds_factor", 1)
    return min(n, bench.get("max_rounds", n))


def argv_of(bench, quick):
    prog = bench["cmd"]
    if not os.path.isabs(prog[0]):
        prog = [os.path.join(BIN, prog[0])] + prog[1:]
    return prog + (bench["quick"] if quick else bench["full"])


def env_of(bench):
    """Our environment without allocator knobs, plus the benchmark's own variables.
    LD_PRELOAD is not set here: bin/spawn adds it for the child only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUB_PREFIXES)}
    env.update(bench.get("env", {}))
    return env


def shell_command(argv, bench, lib):
    """The command line to reproduce one run by hand, from the repository root."""
    parts = ["%s=%s" % (k, v) for k, v in sorted(bench.get("env", {}).items())]
    if lib:
        parts.append("LD_PRELOAD=" + lib)
    rel = [os.path.relpath(a, ROOT) if a.startswith(ROOT + "/") else a for a in argv]
    return " ".join(parts + rel)


def kill_quietly(pidfd):
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass


def run_once(argv, lib, env, timeout):
    """Run argv under allocator lib (None = glibc) through bin/spawn, our small C launcher
    (see spawn.c: forked straight from Python, the child's ru_maxrss would start at the
    runner's own RSS). spawn forks, execs, wait4()s and reports the child's wall time and
    ru_maxrss. Returns a dict: status, wall (s), rss_kib, checksum, stderr (tail)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as report:
        cmd = [SPAWN, report.name, str(int(math.ceil(timeout))), lib or "-"] + argv
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                   (os.POSIX_SPAWN_DUP2, err.fileno(), 2)]
        pid = os.posix_spawn(SPAWN, cmd, env, file_actions=actions)
        # Backstop in case the launcher itself hangs. A pidfd names this process and no
        # other, so the kill can never hit a reused pid.
        pidfd = os.pidfd_open(pid)
        timer = threading.Timer(timeout + 30, kill_quietly, (pidfd,))
        timer.start()
        os.wait4(pid, 0)
        timer.cancel()
        os.close(pidfd)
        fields = report.read().split()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")

    rep = dict(zip(fields[0::2], fields[1::2]))
    if "status" not in rep:
        return dict(status="NOREPORT", wall=0.0, rss_kib=0, checksum=None, metrics={}, stderr=stderr[-600:])
    code = os.waitstatus_to_exitcode(int(rep["status"]))
    checksum = None
    metrics = {}
    for line in stdout.splitlines():
        f = line.split()
        if line.startswith("checksum "):
            checksum = f[1]
        elif len(f) == 3 and f[0] in METRIC_UNITS:
            try:
                metrics[f[0] + " " + f[1]] = float(f[2])
            except ValueError:
                pass
    if rep["timedout"] == "1":
        state = "TIMEOUT"
    elif code < 0:
        state = "SIG" + signal.Signals(-code).name[3:]
    elif code > 0:
        state = "EXIT%d" % code
    elif checksum is None:
        state = "NOSUM"
    else:
        state = "ok"
    return dict(status=state, wall=int(rep["wall_ns"]) / 1e9, rss_kib=int(rep["maxrss_kib"]),
                checksum=checksum, metrics=metrics, stderr=stderr[-600:] if state != "ok" else "")


def median(xs):
    return statistics.median(xs) if xs else None


def geomean(xs):
    xs = [x for x in xs if x is not None and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        return ""


def machine_info(allocs, lib_snapshot):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    versions, built = {}, {}
    for name, lib, pkg in ALLOCATORS:
        if pkg == BUILT:
            if name in allocs:
                try:
                    with open(lib + ".version") as f:
                        built[name] = f.read().strip()
                except OSError:
                    built[name] = "version unknown"
        elif pkg:
            versions[name] = sh(["dpkg-query", "-W", "-f=${Version}", pkg]) or "not installed"
    commit = sh(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = sh(["git", "status", "--porcelain", "--", "src", "build.rs", "Cargo.toml", "Cargo.lock"])
    with open(lib_snapshot, "rb") as f:
        lib_sha = hashlib.sha256(f.read()).hexdigest()[:16]
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        cpu=cpu, cores=os.cpu_count(), mem_gib=round(mem_kib / 2**20, 1),
        kernel=platform.release(), glibc=os.confstr("CS_GNU_LIBC_VERSION"),
        python=sh([PY, "-c", "import platform; print(platform.python_version())"]),
        versions=versions, built_versions=built, my_alloc_commit=commit + (" + uncommitted changes in src" if dirty else ""),
        my_alloc_lib_sha256=lib_sha, loadavg_start=os.getloadavg()[0],
    )


# ----------------------------------------------------------------------------- tables

def fmt_time(s):
    return "%.3f s" % s if s < 10 else "%.1f s" % s


def fmt_ratio(r):
    return "%.2f" % r if r < 100 else "%.0f" % r


def summarize(benches, allocs, runs):
    """Medians and ratios. A cell with any failed run is marked failed (the reason is kept)."""
    summary = {}
    for b in benches:
        row = {}
        for a in allocs:
            rs = runs[b["name"]][a]
            ok = [r for r in rs if r["status"] == "ok"]
            bad = [r["status"] for r in rs if r["status"] != "ok"]
            walls = [r["wall"] for r in ok]
            cell = dict(n=len(rs), ok=len(ok),
                        failed=("%s %d/%d" % (bad[0], len(bad), len(rs))) if bad else None,
                        wall=median(walls), rss_kib=median([r["rss_kib"] for r in ok]),
                        spread=((max(walls) - min(walls)) / median(walls)) if len(walls) > 1 else None)
            row[a] = cell
        for a in allocs:
            for base in ("glibc", "mimalloc"):
                c, bc = row[a], row.get(base)
                usable = bc and not c["failed"] and not bc["failed"] and c["wall"] and bc["wall"]
                c["time_vs_" + base] = c["wall"] / bc["wall"] if usable else None
                c["rss_vs_" + base] = c["rss_kib"] / bc["rss_kib"] if usable else None
        summary[b["name"]] = row
    return summary


GEO_KEYS = ("time_vs_glibc", "time_vs_mimalloc", "rss_vs_glibc", "rss_vs_mimalloc")


def geomeans(benches, allocs, summary):
    """Per allocator: the geometric mean of each ratio over these benchmarks, and over how many
    of them it could be taken (key + "_n")."""
    geo = {}
    for a in allocs:
        g = {}
        for key in GEO_KEYS:
            xs = [summary[b["name"]][a][key] for b in benches]
            g[key] = geomean(xs)
            g[key + "_n"] = len([x for x in xs if x is not None])
        geo[a] = g
    return geo


def md_table(benches, allocs, summary, geo, cell_fn, geo_key=None):
    lines = ["| benchmark | " + " | ".join(allocs) + " |",
             "|---|" + "---:|" * len(allocs)]
    for b in benches:
        cells = []
        for a in allocs:
            c = summary[b["name"]][a]
            cells.append("FAILED (%s)" % c["failed"] if c["failed"] else cell_fn(c))
        lines.append("| %s | %s |" % (b["name"], " | ".join(cells)))
    if geo_key:
        cells = []
        for a in allocs:
            g, n = geo[a][geo_key], geo[a][geo_key + "_n"]
            txt = "-" if g is None else "**%s**" % fmt_ratio(g)
            if g is not None and n < len(benches):
                txt += " (%d of %d)" % (n, len(benches))
            cells.append(txt)
        lines.append("| geomean | %s |" % " | ".join(cells))
    return "\n".join(lines)


def ratio_cell(key):
    return lambda c: "-" if c[key] is None else fmt_ratio(c[key])


def tables(benches, allocs, summary, geo, rounds, intro, prefix=""):
    """The tables of one group of speed benchmarks; prefix starts each heading (e.g.
    "Public patterns: "), so that the headings of two groups differ."""
    def heading(text):
        return "### %s%s\n" % (prefix, text[0].lower() + text[1:] if prefix else text)

    out = [intro]
    more = ["%s %d" % (b["name"], rounds_of(b, rounds)) for b in benches if rounds_of(b, rounds) != rounds]
    out.append(heading("Wall time: median of %d rounds%s (spread = (max - min) / median)"
                       % (rounds, " (%s)" % ", ".join(more) if more else "")))
    out.append(md_table(benches, allocs, summary, geo,
                        lambda c: "%s (%.0f%%)" % (fmt_time(c["wall"]), 100 * c["spread"])
                        if c["spread"] is not None else fmt_time(c["wall"])))
    for base in ("glibc", "mimalloc"):
        out.append("\n" + heading("Wall time ratio to %s (lower is faster)" % base))
        out.append(md_table(benches, allocs, summary, geo, ratio_cell("time_vs_" + base), "time_vs_" + base))
    out.append("\n" + heading("Peak RSS: median, MiB"))
    out.append(md_table(benches, allocs, summary, geo, lambda c: "%.1f" % (c["rss_kib"] / 1024)))
    for base in ("glibc", "mimalloc"):
        out.append("\n" + heading("Peak RSS ratio to %s (lower is smaller)" % base))
        out.append(md_table(benches, allocs, summary, geo, ratio_cell("rss_vs_" + base), "rss_vs_" + base))
    return "\n".join(out) + "\n"


def combined_table(allocs, geo, n):
    """One row per ratio: its geometric mean over all n speed benchmarks, ours and public."""
    lines = ["| geometric mean over all %d | %s |" % (n, " | ".join(allocs)),
             "|---|" + "---:|" * len(allocs)]
    for key, label in (("time_vs_glibc", "wall time / glibc"), ("time_vs_mimalloc", "wall time / mimalloc"),
                       ("rss_vs_glibc", "peak RSS / glibc"), ("rss_vs_mimalloc", "peak RSS / mimalloc")):
        cells = []
        for a in allocs:
            g, k = geo[a][key], geo[a][key + "_n"]
            txt = "-" if g is None else "**%s**" % fmt_ratio(g)
            if g is not None and k < n:
                txt += " (%d of %d)" % (k, n)
            cells.append(txt)
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    return "\n".join(lines) + "\n"


def speed_report(ours, public, allocs, summary, geo, rounds):
    """The markdown of the speed groups: our suite ("Results"), the public patterns, and the
    geometric means over both. geo holds the geometric means per group: speed, public, all."""
    out = []
    if ours:
        out.append("## Results\n")
        out.append(tables(ours, allocs, summary, geo["speed"], rounds,
                          "Our own speed suite; its geometric means (\"geomean\" rows) are over these %d "
                          "benchmarks only. The public patterns and the memory programs have their own "
                          "sections below.\n" % len(ours)))
    if public:
        out.append("## Public patterns\n")
        out.append(tables(public, allocs, summary, geo["public"], rounds,
                          "Our own programs reproducing the patterns of the published allocator benchmarks "
                          "(mimalloc-bench, glibc's benchtests, Hoard's), from their descriptions; the "
                          "geometric means here are over these %d only.\n" % len(public),
                          prefix="Public patterns: "))
    if ours and public:
        out.append("## All speed benchmarks\n")
        out.append("Geometric means over our suite and the public patterns together (%d benchmarks; "
                   "the memory programs stay out).\n" % (len(ours) + len(public)))
        out.append(combined_table(allocs, geo["all"], len(ours) + len(public)))
    return "\n".join(out)


# ----------------------------------------------------------------------------- memory section

TARGET_MIB = 2.0    # my_alloc's target: within 2 MiB of the start within 1 s of freeing all


def metric(key, scale=1.0):
    """One value a program printed ("unit label"), times scale; None when it did not."""
    return lambda r: r["metrics"][key] * scale if key in r["metrics"] else None


def above(key, base):
    """MiB by which the RSS sample `key` exceeds the sample `base` in the same run."""
    return lambda r: ((r["metrics"][key] - r["metrics"][base]) / 1024
                      if key in r["metrics"] and base in r["metrics"] else None)


def peak_mib(r):
    return r["rss_kib"] / 1024


def rss_rows(phase):
    """rss_return rows for one phase; `target` rows are checked against TARGET_MIB."""
    k = "rss_kib %s_" % phase
    return [
        dict(label="RSS at start, MiB", fn=metric(k + "start", 1 / 1024)),
        dict(label="allocated: RSS above start, MiB", fn=above(k + "peak", k + "start")),
        dict(label="right after freeing all, above start, MiB", fn=above(k + "freed", k + "start"), target=True),
        dict(label="1 s later, above start, MiB", fn=above(k + "later", k + "start"), target=True),
        dict(label="1 s later + one malloc/free, above start, MiB", fn=above(k + "poked", k + "start"), target=True),
        dict(label="time to allocate and write, ms", fn=metric("ms %s_alloc" % phase), fmt="%.0f"),
        dict(label="time to free all, ms", fn=metric("ms %s_free" % phase), fmt="%.0f"),
    ]


# Rows of the memory tables, per program. fn gives a run's value (the cell is the median over
# the rounds that succeeded); ratio=True adds a row "... / glibc" of the medians' ratio.
MEMORY_ROWS = {
    "rss_large": rss_rows("large"),
    "rss_small": rss_rows("small"),
    "fragment": [
        dict(label="peak RSS (ru_maxrss), MiB", fn=peak_mib, ratio=True),
        dict(label="RSS with the small blocks, MiB", fn=metric("rss_kib small", 1 / 1024)),
        dict(label="RSS after freeing every other one, MiB", fn=metric("rss_kib half", 1 / 1024)),
        dict(label="RSS at the end (larger blocks added), MiB", fn=metric("rss_kib end", 1 / 1024), ratio=True),
        dict(label="RSS after freeing everything, MiB", fn=metric("rss_kib freed", 1 / 1024)),
        dict(label="wall time, s", fn=lambda r: r["wall"], fmt="%.3f", ratio=True),
    ],
    "realloc_big": [
        dict(label="peak RSS (ru_maxrss), MiB", fn=peak_mib, ratio=True),
        dict(label="RSS with the buffer at full size, MiB", fn=metric("rss_kib end", 1 / 1024)),
        dict(label="RSS after freeing everything, MiB", fn=metric("rss_kib freed", 1 / 1024)),
        dict(label="growth time (all reallocs and page writes), ms", fn=metric("ms grow"), fmt="%.0f", ratio=True),
        dict(label="reallocs that moved the buffer", fn=metric("count moved"), fmt="%.0f"),
    ],
}


def memory_summary(benches, allocs, runs, summary):
    """Per memory program and row: median, min, max over the successful runs, per allocator;
    ratio rows; and for target rows whether my_alloc's median is within TARGET_MIB."""
    out = {}
    for b in benches:
        if not is_memory(b) or b["name"] not in MEMORY_ROWS:
            continue
        rows = []
        for spec in MEMORY_ROWS[b["name"]]:
            cells = {}
            for a in allocs:
                vals = [v for v in (spec["fn"](r) for r in runs[b["name"]][a] if r["status"] == "ok") if v is not None]
                cells[a] = dict(median=median(vals), min=min(vals) if vals else None,
                                max=max(vals) if vals else None, n=len(vals),
                                failed=summary[b["name"]][a]["failed"])
            row = dict(label=spec["label"], fmt=spec.get("fmt", "%.1f"), cells=cells)
            if spec.get("target") and "my_alloc" in cells and cells["my_alloc"]["median"] is not None \
                    and not cells["my_alloc"]["failed"]:
                c = cells["my_alloc"]
                row["target"] = dict(limit_mib=TARGET_MIB, met=c["median"] <= TARGET_MIB, median=c["median"],
                                     every_round=c["max"] <= TARGET_MIB, worst=c["max"])
            rows.append(row)
            if spec.get("ratio"):
                g = cells["glibc"]["median"] if "glibc" in cells and not cells["glibc"]["failed"] else None
                rows.append(dict(label=spec["label"].split(",")[0] + ": ratio to glibc", fmt="ratio",
                                 cells={a: dict(median=(cells[a]["median"] / g if g and cells[a]["median"] is not None
                                                        and not cells[a]["failed"] else None),
                                                failed=cells[a]["failed"]) for a in allocs}))
        out[b["name"]] = rows
    return out


def memory_rows_md(rows, allocs, with_target):
    lines = []
    for row in rows:
        cells = []
        for a in allocs:
            c = row["cells"][a]
            if c["failed"]:
                cells.append("FAILED (%s)" % c["failed"])
            elif c["median"] is None:
                cells.append("-")
            elif row["fmt"] == "ratio":
                cells.append(fmt_ratio(c["median"]))
            else:
                v = c["median"] if abs(c["median"]) >= 0.05 else 0.0     # no "-0.0"
                cells.append(row["fmt"] % v)
        if with_target:
            t = row.get("target")
            cells.append("" if not t else "%s (median %.2f, worst round %.2f)" % (
                "yes" if t["met"] else "**NO**", t["median"], t["worst"]))
        lines.append("| %s | %s |" % (row["label"], " | ".join(cells)))
    return lines


def memory_tables(benches, allocs, mem, runs, args):
    """The "Memory" section of RESULTS.md (markdown)."""
    by_name = {b["name"]: b for b in benches}
    out = ["## Memory\n",
           "Our memory programs, run in the same interleaved rounds as the benchmarks above. They "
           "are reported here and **not** in the geometric means above: each is built around one "
           "deliberately large live set (or, for rss_return, around what happens after freeing it), "
           "so one of them would outweigh the whole suite. Cells are medians over the rounds "
           "(MiB = 2^20 bytes).\n"]
    head = "| measurement | " + " | ".join(allocs) + " |"
    sep = "|---|" + "---:|" * len(allocs)
    rss = [n for n in ("rss_large", "rss_small") if n in mem]
    if rss:
        rounds = ", ".join("%s %d" % (n, rounds_of(by_name[n], args.rounds)) for n in rss)
        has_my = "my_alloc" in allocs
        out.append("### rss_return: is freed memory given back, and how soon? (rounds: %s)\n" % rounds)
        out.append("VmRSS sampled by the program itself. Each phase runs in its own process "
                   "(`rss_return L 0`, `rss_return 0 S`), so that what one phase keeps cannot be "
                   "reused by the other. '1 s later' follows a sleep(1) with no allocator call; "
                   "'+ one malloc/free' is sampled after a single malloc(64)+free following it, "
                   "for allocators that only give memory back when called. Target for my_alloc: "
                   "within %.0f MiB of the start 1 s after freeing everything (the '1 s later' "
                   "rows); the column on the right checks the median and shows the worst round.\n"
                   % TARGET_MIB)
        out.append(head[:-1] + ("| my_alloc within %.0f MiB? |" % TARGET_MIB if has_my else "|"))
        out.append(sep + ("---|" if has_my else ""))
        for n in rss:
            blank = " |" * (len(allocs) + (1 if has_my else 0))
            out.append("| **%s phase**: `rss_return %s` |%s" % (n[4:], " ".join(argv_of(by_name[n], args.quick)[1:]), blank))
            out.extend(memory_rows_md(mem[n], allocs, has_my))
        out.append("")
    for n, title in (("fragment", "fragment: small holes, larger requests"),
                     ("realloc_big", "realloc_big: one buffer grown by realloc")):
        if n not in mem:
            continue
        b = by_name[n]
        nr = rounds_of(b, args.rounds)
        out.append("### %s (`%s`, %d round%s)\n" % (title, " ".join([n] + argv_of(b, args.quick)[1:]),
                                                     nr, "" if nr == 1 else "s"))
        if n == "fragment":
            live = [r["metrics"] for a in allocs for r in runs[n][a] if r["status"] == "ok"][:1]
            if live:
                out.append("Live data (requested bytes, with the program's own pointer arrays): "
                           "%.1f MiB with all small blocks, %.1f MiB after freeing half, %.1f MiB at the end.\n"
                           % tuple(live[0].get("live_kib " + k, 0) / 1024 for k in ("small", "half", "end")))
        out.append(head)
        out.append(sep)
        out.extend(memory_rows_md(mem[n], allocs, False))
        out.append("")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- outputs

def write_svg(path, ours, public, allocs, summary, geo, info, quick):
    """Bars for our suite then its geomean, the public patterns then theirs, then the geomean
    over both (the memory programs are not drawn)."""
    shown = [a for a in allocs if a != "glibc"]          # glibc is the 1.0 line
    colours = [svgchart.COLOURS.get(a, svgchart.PALETTE[i % len(svgchart.PALETTE)]) for i, a in enumerate(shown)]
    segments = []                                        # (benchmarks, label of their geomean, geomeans)
    if ours:
        segments.append((ours, "geomean", geo["speed"]))
    if public:
        segments.append((public, "geomean public", geo["public"]))
    if ours and public:
        segments.append(([], "geomean all", geo["all"]))
    groups = [b["name"] for seg, label, _ in segments for b in seg + [dict(name=label)]]

    def values(key):
        rows = []
        for seg, _, g in segments:
            for b in seg:
                row = []
                for a in shown:
                    c = summary[b["name"]][a]
                    row.append(c["failed"] if c["failed"] else c[key])
                rows.append(row)
            rows.append([g[a][key] for a in shown])
        return rows

    w, ph = max(1100, 60 + 84 * len(groups)), 360      # room for each group's label
    svg = svgchart.Svg(w, 2 * ph + 110)
    title = "my_alloc vs %s - %s%s" % (", ".join(a for a in allocs if a != "my_alloc"), info["date"],
                                       " (QUICK MODE)" if quick else "")
    svg.text(w / 2, 26, title, size=18, anchor="middle", weight="bold")
    svg.text(w / 2, 46, "median of interleaved runs, ratio to glibc (log scale): below the 1.0 line is better",
             size=12, anchor="middle", fill="#444")
    svgchart.bar_panel(svg, 0, 56, w, ph, "Wall time ratio to glibc", groups, shown,
                       values("time_vs_glibc"), colours, "time / glibc time")
    svgchart.bar_panel(svg, 0, 56 + ph, w, ph, "Peak RSS ratio to glibc", groups, shown,
                       values("rss_vs_glibc"), colours, "peak RSS / glibc peak RSS")
    svgchart.legend(svg, 70, 2 * ph + 90, shown, colours,
                    notes=["1.0 line = glibc", "X = failed run", "%s, %d cores, commit %s" % (info["cpu"], info["cores"],
                                                                       info["my_alloc_commit"].split()[0])])
    with open(path, "w") as f:
        f.write(svg.to_string())


def write_markdown(path, benches, allocs, missing, info, args, failures, table_text):
    L = []
    L.append("# Allocator benchmark results%s\n" % (" (QUICK MODE: small sizes, few rounds)" if args.quick else ""))
    L.append("Generated by `bench/run.py`%s. Absolute times depend on a noisy 2-core machine; compare the "
             "ratios, which come from runs interleaved side by side.\n" % (" --quick" if args.quick else ""))
    L.append("- date: %s (start), %.0f s in all" % (info["date"], info["elapsed_s"]))
    L.append("- machine: %s, %d cores, %.1f GiB RAM" % (info["cpu"], info["cores"], info["mem_gib"]))
    L.append("- kernel: %s; %s; %s %s (python benchmark)" % (info["kernel"], info["glibc"], PY, info["python"]))
    L.append("- peers (Debian packages): " + ", ".join(
        "%s %s" % (k, v) for k, v in info["versions"].items() if k != "glibc"))
    if info["built_versions"]:
        L.append("- peers (built from the sources their crates ship, by bench/peers/build.sh): " + ", ".join(
            "%s %s" % (k, v) for k, v in info["built_versions"].items()))
    L.append("- my_alloc: commit %s, library sha256 %s" % (info["my_alloc_commit"], info["my_alloc_lib_sha256"]))
    L.append("- rounds: %d per allocator per benchmark, interleaved (%s), after one untimed warm-up run under glibc"
             % (args.rounds, " ".join(allocs)))
    capped = [b for b in benches if rounds_of(b, args.rounds) < args.rounds]
    if capped:
        L.append("- fewer rounds for %s: %s (each run sleeps 1 s by design)" % (
            ", ".join(b["name"] for b in capped), ", ".join(str(rounds_of(b, args.rounds)) for b in capped)))
    extra = [b for b in benches if rounds_of(b, args.rounds) > args.rounds]
    if extra:
        L.append("- more rounds for %s: %s (the widest run-to-run spread: a whole interpreter's run)" % (
            ", ".join(b["name"] for b in extra), ", ".join(str(rounds_of(b, args.rounds)) for b in extra)))
    L.append("- load average (1 min): %.2f at start, %.2f at end" % (info["loadavg_start"], info["loadavg_end"]))
    if missing:
        source = {name: pkg for name, _, pkg in ALLOCATORS}
        L.append("- NOT RUN (library not found): " + ", ".join(
            "%s (%s)" % (m, "not built: `make bench-peers` failed or was not run" if source[m] == BUILT
                         else "Debian package %s not installed" % source[m]) for m in missing))
    over = [b for b in benches if b["threads"] > info["cores"]]
    if over:
        L.append("- note: %s run%s more threads than the %d cores (%s), on purpose: the allocator's locks "
                 "then see preempted holders" % (", ".join(b["name"] for b in over), "" if len(over) > 1 else "s",
                                                 info["cores"], ", ".join("%s: %d" % (b["name"], b["threads"]) for b in over)))
    L.append("\n![chart](results.svg)\n")
    L.append("## Benchmarks\n")
    L.append("| name | section | threads | what | arguments |")
    L.append("|---|---|---:|---|---|")
    for b in benches:
        L.append("| %s | %s | %d | %s | `%s` |" % (b["name"], SECTION[group_of(b)], b["threads"],
                                                  b["desc"], " ".join(b["quick"] if args.quick else b["full"])))
    L.append("")
    L.append(table_text)
    if failures:
        L.append("## Failed runs\n")
        L.append("Reproduce with the command shown (from the repository root).\n")
        for f in failures:
            L.append("- **%s / %s**: %s (round %s)\n\n  `%s`" % (f["bench"], f["alloc"], f["status"], f["round"], f["command"]))
            if f["stderr"].strip():
                tail = f["stderr"].strip().splitlines()[-3:]
                L.append("\n  stderr (last lines):\n\n" + "\n".join("      " + t for t in tail))
            L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, 3 rounds (for a smoke test)")
    ap.add_argument("--rounds", type=int, help="rounds per allocator (default 7, quick 3; rss_large and rss_small at most 5)")
    ap.add_argument("--only", help="comma-separated benchmark names")
    ap.add_argument("--group", help="comma-separated groups to run: %s (our speed suite, the public "
                    "patterns, the memory programs)" % ", ".join(GROUPS))
    ap.add_argument("--allocators", help="comma-separated allocator names")
    ap.add_argument("--no-profiled", action="store_true", help="leave out the %s column (my_alloc profiling)" % PROFILED)
    ap.add_argument("--unguarded", action="store_true", help="add the %s column (my_alloc without guarded samples)" % UNGUARDED)
    ap.add_argument("--my-alloc", default=MY_ALLOC_LIB, help="my_alloc library to test (default: %(default)s)")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=LIB",
                    help="another library to run beside the others, e.g. my_alloc before a change "
                         "(repeatable; copied at the start like my_alloc)")
    ap.add_argument("--timeout", type=float, help="seconds per run before it is killed (default 120, quick 30)")
    ap.add_argument("--out-dir", default=BENCH_DIR, help="where RESULTS.md, results.svg, results.json go")
    args = ap.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 7)
    timeout = args.timeout or (30.0 if args.quick else 120.0)

    benches = BENCHMARKS
    if args.group:
        groups = args.group.split(",")
        unknown = [g for g in groups if g not in GROUPS]
        if unknown:
            sys.exit("unknown group %s; the groups are: %s" % (", ".join(unknown), ", ".join(GROUPS)))
        benches = [b for b in benches if group_of(b) in groups]
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in [b["name"] for b in BENCHMARKS]]
        if unknown:
            sys.exit("unknown benchmark %s; the benchmarks are: %s"
                     % (", ".join(unknown), ", ".join(b["name"] for b in BENCHMARKS)))
        benches = [b for b in benches if b["name"] in names]
    if not benches:
        sys.exit("no benchmark left to run (--only and --group together select none)")

    # Snapshot the library: other people rebuild target/release while we measure, and every
    # run of a benchmark session must use the same bytes.
    if not os.path.exists(args.my_alloc):
        sys.exit("my_alloc library not found: %s (run `make build`)" % args.my_alloc)
    os.makedirs(BIN, exist_ok=True)
    snapshot = os.path.join(BIN, "libmy_alloc.snapshot.so")
    shutil.copyfile(args.my_alloc, snapshot)

    libs, missing = {}, []
    for name, lib, pkg in ALLOCATORS:
        if args.allocators and name not in args.allocators.split(","):
            continue
        if name == "my_alloc":
            lib = snapshot
        if lib and not os.path.exists(lib):
            print("%s: %s not found, skipping it (%s)" % (
                name, lib, "build it: make bench-peers" if pkg == BUILT else "install its Debian package"))
            missing.append(name)
            continue
        libs[name] = lib
    for spec in args.extra:
        name, _, lib = spec.partition("=")
        if not name or not os.path.exists(lib) or name in libs:
            sys.exit("--extra %s: want NAME=LIB with a new name and an existing library" % spec)
        copy = os.path.join(BIN, "lib%s.snapshot.so" % name)
        shutil.copyfile(lib, copy)
        libs[name] = copy
    if "my_alloc" in libs and not args.no_profiled:
        libs[PROFILED] = libs["my_alloc"]
    if "my_alloc" in libs and args.unguarded:
        libs[UNGUARDED] = libs["my_alloc"]
    allocs = list(libs)
    if "glibc" not in allocs:
        sys.exit("glibc must be among the allocators: it is the baseline")
    for b in [dict(cmd=[SPAWN], quick=[], full=[])] + benches:
        prog = argv_of(b, args.quick)[0]
        if not os.access(prog, os.X_OK):
            sys.exit("%s not built: run `make bench-progs` (or `make bench`)" % prog)

    info = machine_info(allocs, snapshot)
    if info["loadavg_start"] > 0.5:
        # Someone else is using the CPUs: the ratios still hold roughly, the spreads grow.
        print("note: load average %.2f before starting: other work is running, expect noise"
              % info["loadavg_start"])
    print("allocators: %s%s" % (", ".join(allocs), ("; missing: " + ", ".join(missing)) if missing else ""))
    print("rounds: %d, mode: %s, my_alloc %s" % (args.rounds, "quick" if args.quick else "full", info["my_alloc_commit"]))

    runs = {b["name"]: {a: [] for a in allocs} for b in benches}
    failures = []
    reference = {}
    t_start = time.time()
    for b in benches:
        argv = argv_of(b, args.quick)
        # Warm-up under glibc: pages the program in and gives the reference checksum.
        warm = run_once(argv, None, env_of(b), timeout)
        reference[b["name"]] = warm["checksum"] if warm["status"] == "ok" else None
        gave_up = set()
        for rnd in range(1, rounds_of(b, args.rounds) + 1):
            for a in allocs:
                if a in gave_up:
                    continue
                env = env_of(b)
                prof = os.path.join(BIN, "bench.prof")
                if a == PROFILED:
                    env["MY_ALLOC_PROFILE"] = prof
                if a == UNGUARDED:
                    env["MY_ALLOC_GUARD_RATE"] = "0"
                r = run_once(argv, libs[a], env, timeout)
                if a == PROFILED:
                    r["profile_bytes"] = os.path.getsize(prof) if os.path.exists(prof) else 0
                    if os.path.exists(prof):
                        os.unlink(prof)
                if r["status"] == "ok" and reference[b["name"]] and r["checksum"] != reference[b["name"]]:
                    r["status"] = "BADSUM"       # different result from glibc's: wrong memory
                    r["stderr"] = "checksum %s, glibc gave %s" % (r["checksum"], reference[b["name"]])
                r["round"] = rnd
                runs[b["name"]][a].append(r)
                if r["status"] != "ok":
                    failures.append(dict(bench=b["name"], alloc=a, round=rnd, status=r["status"],
                                         stderr=r["stderr"], command=shell_command(argv, b, args.my_alloc if a == "my_alloc" else libs[a])))
                    last = r["stderr"].strip().splitlines()
                    print("  %s / %s round %d: %s  %s" % (b["name"], a, rnd, r["status"], last[-1] if last else ""))
                    if r["status"] == "TIMEOUT":
                        gave_up.add(a)           # a hang costs the whole budget: stop retrying it
        line = []
        for a in allocs:
            rs = [r for r in runs[b["name"]][a] if r["status"] == "ok"]
            line.append("%s %s" % (a, fmt_time(median([r["wall"] for r in rs])) if rs else "FAILED"))
        print("%-9s %s   [%.0f s elapsed]" % (b["name"], "  ".join(line), time.time() - t_start), flush=True)

    info["loadavg_end"] = os.getloadavg()[0]
    info["elapsed_s"] = round(time.time() - t_start, 1)
    summary = summarize(benches, allocs, runs)
    ours = [b for b in benches if group_of(b) == "speed"]
    public = [b for b in benches if group_of(b) == "public"]
    speed = ours + public
    # Each group has its own geometric means (ours stay comparable with earlier runs of the
    # suite), and "all" is over both; the memory programs are in none.
    geo = dict(speed=geomeans(ours, allocs, summary), public=geomeans(public, allocs, summary),
               all=geomeans(speed, allocs, summary))
    mem = memory_summary(benches, allocs, runs, summary)
    table_text = speed_report(ours, public, allocs, summary, geo, args.rounds)
    if mem:
        table_text += "\n" + memory_tables(benches, allocs, mem, runs, args)
    print()
    print(table_text)

    os.makedirs(args.out_dir, exist_ok=True)
    args.out_dir = os.path.relpath(args.out_dir) if args.out_dir.startswith(os.getcwd() + "/") else args.out_dir
    md = os.path.join(args.out_dir, "RESULTS.md")
    svg = os.path.join(args.out_dir, "results.svg")
    js = os.path.join(args.out_dir, "results.json")
    write_markdown(md, benches, allocs, missing, info, args, failures, table_text)
    if speed:
        write_svg(svg, ours, public, allocs, summary, geo, info, args.quick)     # speed groups only
    # Paths inside the repository are written relative to its root, so that the committed
    # results name no particular checkout.
    def rel(path):
        return os.path.relpath(path, ROOT) if isinstance(path, str) and path.startswith(ROOT + "/") else path
    with open(js, "w") as f:
        json.dump(dict(
            format=1, mode="quick" if args.quick else "full", rounds=args.rounds, info=info,
            allocators={a: rel(libs[a]) for a in allocs}, missing=missing,
            benchmarks=[dict(name=b["name"], threads=b["threads"], desc=b["desc"], group=group_of(b),
                             rounds=rounds_of(b, args.rounds), argv=[rel(x) for x in argv_of(b, args.quick)],
                             env=b.get("env", {}))
                        for b in benches],
            reference_checksums=reference, summary=summary,
            # "geomean" is over our own speed suite, as in earlier results files.
            geomean=geo["speed"], geomean_over=[b["name"] for b in ours],
            geomean_public=geo["public"], geomean_public_over=[b["name"] for b in public],
            geomean_all=geo["all"], geomean_all_over=[b["name"] for b in speed],
            memory={n: [{k: v for k, v in row.items() if k != "fmt"} for row in rows] for n, rows in mem.items()},
            runs={b: {a: [{k: v for k, v in r.items() if k != "stderr" or v} for r in rs]
                      for a, rs in per.items()} for b, per in runs.items()},
            failures=failures,
        ), f, indent=1, sort_keys=True)
    print("wrote %s, %s, %s (%.0f s)" % (md, svg, js, time.time() - t_start))
    # Failures are results, not runner errors: exit 0 so `make bench` finishes and reports.
    return 0


if __name__ == "__main__":
    sys.exit(main())
