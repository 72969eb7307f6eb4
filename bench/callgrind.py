#!/usr/bin/python3
"""Instructions per malloc(32)+free pair on the hot path, under valgrind --tool=callgrind.

    /usr/bin/python3 bench/callgrind.py [N]        (usually `make bench-callgrind`)

For each allocator (preloaded; glibc = nothing preloaded) runs bench/bin/hotpath with N
pairs and with 0 pairs, and prints (Ir(N) - Ir(0)) / N: the instructions of one pair,
start-up and first-call initialisation cancelled out. Instruction counts do not depend on
machine noise, so small differences are real (but they are not cycles: cache misses and
atomic instructions cost more than one). The figure includes the benchmark loop's own
instructions (12 per pair in hotpath's main with gcc -O2, per callgrind_annotate), the same
for every allocator.

Callgrind does not replace malloc (unlike memcheck), so the preloaded allocator is the one
measured. Problems (non-zero exit, valgrind warnings) are printed, not hidden.
"""
import os
import re
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import ALLOCATORS, BIN, MY_ALLOC_LIB, ROOT, SCRUB_PREFIXES  # noqa: E402


def callgrind(prog, n, lib):
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUB_PREFIXES)}
    if lib:
        env["LD_PRELOAD"] = lib
    with tempfile.TemporaryDirectory() as d:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.join(d, "out"), prog, str(n)]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
    # Valgrind's own complaints (unhandled instructions, bad syscalls, warnings) matter here.
    noise = [ln for ln in p.stderr.splitlines()
             if re.search(r"warning|unhandled|unrecognised|error|Invalid|impossible", ln, re.I)]
    ok = p.returncode == 0 and m and p.stdout.startswith("checksum")
    return (int(m.group(1)) if m else None), ok, p.returncode, noise, cmd


def main():
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 1000000
    prog = os.path.join(BIN, "hotpath")
    if not os.access(prog, os.X_OK):
        sys.exit("%s not built: run `make bench-progs`" % prog)
    print("instructions per malloc(32)+free pair (callgrind Ir, N = %d, minus N = 0)" % n)
    print("%-10s %14s %14s %10s  %s" % ("allocator", "Ir(N)", "Ir(0)", "per pair", "notes"))
    problems = 0
    for name, lib, _ in ALLOCATORS:
        if name == "my_alloc":
            lib = MY_ALLOC_LIB
        if lib and not os.path.exists(lib):
            print("%-10s not installed (%s), skipped" % (name, lib))
            continue
        ir_n, ok_n, rc_n, noise_n, cmd = callgrind(prog, n, lib)
        ir_0, ok_0, rc_0, noise_0, _ = callgrind(prog, 0, lib)
        notes = []
        if not (ok_n and ok_0):
            problems += 1
            notes.append("FAILED (exit %d / %d): %s%s" % (rc_n, rc_0, ("LD_PRELOAD=%s " % lib) if lib else "",
                                                          " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)))
        for ln in sorted(set(noise_n + noise_0))[:5]:
            notes.append("valgrind: " + ln.strip())
        per = "%.1f" % ((ir_n - ir_0) / n) if (ir_n is not None and ir_0 is not None and n) else "-"
        print("%-10s %14s %14s %10s  %s" % (name, ir_n if ir_n is not None else "-",
                                            ir_0 if ir_0 is not None else "-", per,
                                            ("\n" + " " * 53).join(notes)), flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
