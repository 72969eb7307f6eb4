"""Threaded Python workload for c_tests/real_programs.sh.

Several threading.Thread workers build and discard objects (dicts, lists, strings, bytes) at
the same time, handing some results to each other through a queue, so that memory allocated in
one thread is freed in another. Run with PYTHONMALLOC=malloc. Each worker's results depend only
on its own seed, and the main thread prints them sorted, so the output is deterministic.
"""
import hashlib
import queue
import random
import threading

N_WORKERS = 6
ROUNDS = 120

handoff = queue.Queue(maxsize=64)
results = {}
results_lock = threading.Lock()


def producer(wid):
    rng = random.Random(wid)
    h = hashlib.sha256()
    kept = []
    for r in range(ROUNDS):
        d = {}
        for i in range(600):
            key = "w%d-r%d-%d" % (wid, r, rng.randint(0, 400))
            d.setdefault(key, []).append(bytes(rng.getrandbits(8) for _ in range(i % 24)))
        text = "|".join("%s=%d" % (k, len(v)) for k, v in sorted(d.items()))
        h.update(text.encode())
        kept.append(text[: rng.randint(0, 200)])
        if len(kept) > 30:
            del kept[: 15]
        # Hand an object over: the consumer thread frees it.
        handoff.put((wid, r, [text, list(d.keys()), bytearray(text.encode())]))
    with results_lock:
        results["producer-%d" % wid] = h.hexdigest()[:16]


def consumer(cid, n_items):
    total = 0
    for _ in range(n_items):
        wid, r, obj = handoff.get()
        total += len(obj[0]) + len(obj[1]) + len(obj[2])
        del obj
    with results_lock:
        results["consumer-%d" % cid] = total


def churner(cid):
    # Pure allocation churn, no sharing: lists of strings, tuples and dicts built and dropped.
    rng = random.Random(1000 + cid)
    acc = 0
    for r in range(300):
        objs = [("%x" % rng.getrandbits(64)) * rng.randint(1, 8) for _ in range(500)]
        pairs = {s: (i, s[::-1]) for i, s in enumerate(objs)}
        acc += sum(len(v[1]) for v in pairs.values()) % 1000003
    with results_lock:
        results["churner-%d" % cid] = acc


n_items = N_WORKERS * ROUNDS
threads = [threading.Thread(target=producer, args=(w,)) for w in range(N_WORKERS)]
# Two consumers share the items; each item's size is fixed, but which consumer takes it is not,
# so only the sum of the consumers' totals is printed.
threads += [threading.Thread(target=consumer, args=(c, n_items // 2)) for c in range(2)]
threads += [threading.Thread(target=churner, args=(c,)) for c in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()

for k in sorted(results):
    if not k.startswith("consumer"):
        print(k, results[k])
print("consumed total", sum(v for k, v in results.items() if k.startswith("consumer")))
print("threads", len(threads))
