"""Real-program benchmark: a CPython workload that allocates like ordinary Python code.

Run as  PYTHONMALLOC=malloc PYTHONHASHSEED=0 /usr/bin/python3 -s -B bench/pyload.py [scale]
(not -I or -E: they make Python ignore PYTHONMALLOC)
so that every Python object comes from malloc (not from pymalloc's arenas) and the
allocator under LD_PRELOAD sees the whole stream. scale=1.0 is the full size; the output
is one deterministic "checksum" line, compared across allocators by bench/run.py.

Phases (each allocates and frees many objects of many sizes):
  - word counting with dicts and strings,
  - JSON encoding and decoding of nested records,
  - building, sorting and slicing lists of tuples,
  - a small object graph (class instances with dicts) built and torn down,
  - bytes/str joins and splits (medium and large buffers).
"""
import json
import random
import sys
import zlib


def words(rng, n):
    syll = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "qua", "bri", "stel"]
    return ["".join(rng.choice(syll) for _ in range(rng.randint(1, 5))) for _ in range(n)]


def word_count(rng, n):
    vocab = words(rng, 5000)
    counts = {}
    for _ in range(n):
        w = vocab[int(rng.paretovariate(1.2)) % len(vocab)] + str(rng.randint(0, 9))
        counts[w] = counts.get(w, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:50]
    return zlib.crc32(repr(top).encode())


def json_round_trip(rng, n):
    crc = 0
    for i in range(n):
        rec = {
            "id": i,
            "name": "user%d" % rng.randint(0, 10**6),
            "tags": [rng.choice("abcdefgh") * rng.randint(1, 8) for _ in range(rng.randint(0, 12))],
            "scores": [rng.random() for _ in range(rng.randint(1, 30))],
            "nested": {"a": {"b": list(range(rng.randint(0, 20)))}},
        }
        text = json.dumps(rec, sort_keys=True)
        back = json.loads(text)
        crc = zlib.crc32(text.encode(), crc) ^ len(back["tags"])
    return crc


def list_work(rng, n):
    crc = 0
    for _ in range(n):
        rows = [(rng.randint(0, 1000), "r%d" % rng.randint(0, 99999), rng.random())
                for _ in range(rng.randint(100, 3000))]
        rows.sort()
        mid = rows[len(rows) // 4: 3 * len(rows) // 4]
        crc = zlib.crc32(repr(mid[:5]).encode(), crc)
    return crc


class Node:
    def __init__(self, key, parent):
        self.key = key
        self.parent = parent
        self.children = []
        self.attrs = {"k%d" % (key % 7): key}


def object_graph(rng, n):
    total = 0
    for _ in range(n):
        root = Node(0, None)
        nodes = [root]
        for k in range(1, rng.randint(2000, 8000)):
            parent = nodes[rng.randrange(len(nodes))]
            child = Node(k, parent)
            parent.children.append(child)
            nodes.append(child)
        # Depth of a few nodes, then drop the whole graph (cycles via parent links).
        for node in nodes[::500]:
            d = 0
            while node.parent is not None:
                node = node.parent
                d += 1
            total += d
        for node in nodes:
            node.parent = None
        del nodes, root
    return total


def text_buffers(rng, n):
    crc = 0
    for _ in range(n):
        parts = ["%08x" % rng.getrandbits(32) * rng.randint(1, 64) for _ in range(rng.randint(10, 400))]
        blob = ",".join(parts)
        data = blob.encode() * rng.randint(1, 8)
        fields = data.split(b",")
        crc = zlib.crc32(b"".join(fields[::3]), crc)
    return crc


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    rng = random.Random(12345)
    results = [
        word_count(rng, int(240000 * scale)),
        json_round_trip(rng, int(6000 * scale)),
        list_work(rng, int(120 * scale)),
        object_graph(rng, max(1, int(15 * scale))),
        text_buffers(rng, int(600 * scale)),
    ]
    print("checksum %016x" % (zlib.crc32(repr(results).encode()) & 0xFFFFFFFFFFFFFFFF))


if __name__ == "__main__":
    main()
