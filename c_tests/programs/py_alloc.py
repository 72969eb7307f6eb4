"""Allocation-heavy Python workload for c_tests/real_programs.sh.

Builds and discards many dicts, lists, tuples, strings and bytes objects, and round-trips
nested structures through json. Run with PYTHONMALLOC=malloc so that every Python object goes
through the C malloc being tested. The output is deterministic (fixed seed, sorted keys).
"""
import hashlib
import json
import random

rng = random.Random(1234)
digest = hashlib.sha256()


def record(i):
    return {
        "id": i,
        "name": "item-%06d" % i,
        "tags": [rng.choice("abcdefgh") * rng.randint(1, 12) for _ in range(rng.randint(0, 6))],
        "score": rng.randint(0, 10**6) / 7.0,
        "blob": bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 48))).hex(),
        "nested": {"k%d" % j: list(range(j)) for j in range(rng.randint(0, 5))},
    }


# 1. Many small dicts with lists inside, round-tripped through json in batches.
total_len = 0
for batch in range(40):
    items = [record(batch * 1000 + i) for i in range(1000)]
    text = json.dumps(items, sort_keys=True)
    back = json.loads(text)
    assert back == json.loads(json.dumps(back, sort_keys=True))
    total_len += len(text)
    digest.update(text.encode())
print("json: %d bytes, sha256 %s" % (total_len, digest.hexdigest()[:16]))

# 2. String building and splitting: many short-lived strings of varied sizes.
words = []
for i in range(200000):
    w = "".join(chr(97 + (i * 7 + k * 13) % 26) for k in range(1 + i % 17))
    words.append(w)
joined = " ".join(words)
parts = joined.split(" ")
upper = [p.upper() for p in parts if len(p) % 3]
print("strings: %d words, joined %d chars, %d upper, last %s" % (len(parts), len(joined), len(upper), upper[-1]))

# 3. A growing and shrinking dict of lists (hash table resizes, realloc of list storage).
table = {}
for i in range(300000):
    key = "k%d" % (i * 2654435761 % 50021)
    table.setdefault(key, []).append(i)
    if i % 3 == 0:
        victim = "k%d" % (i * 40503 % 50021)
        lst = table.get(victim)
        if lst:
            lst.pop()
            if not lst:
                del table[victim]
sizes = sorted(len(v) for v in table.values())
print("table: %d keys, %d values, median list %d" % (len(table), sum(sizes), sizes[len(sizes) // 2]))

# 4. bytes and bytearray: concatenation, slicing, growth by doubling and shrinking.
buf = bytearray()
chunks = []
for i in range(20000):
    chunk = bytes((i + k) & 0xFF for k in range(i % 300))
    buf += chunk
    chunks.append(chunk[::-1])
    if len(buf) > 1 << 20:
        del buf[: len(buf) // 2]
blob = b"".join(chunks)
print("bytes: buf %d, blob %d, sha256 %s" % (len(buf), len(blob), hashlib.sha256(blob).hexdigest()[:16]))

# 5. Tuples and sets of tuples, sorting large lists of objects.
pts = [(rng.randint(-1000, 1000), rng.randint(-1000, 1000)) for _ in range(200000)]
uniq = set(pts)
srt = sorted(uniq, key=lambda p: (p[0] * p[0] + p[1] * p[1], p))
print("tuples: %d points, %d unique, nearest %s, farthest %s" % (len(pts), len(uniq), srt[0], srt[-1]))

# 6. Large allocations that come and go (big lists and strings, beyond any small-size class).
acc = 0
for i in range(60):
    big = [i] * (100000 + i * 5000)
    s = ("x" * (i + 1)) * 20000
    acc += len(big) + len(s)
    del big, s
print("large: %d" % acc)
