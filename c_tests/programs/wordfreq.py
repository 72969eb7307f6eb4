"""Word frequencies over a generated text: the `make demo` workload (also in real_programs.sh).

Self-contained: generates a deterministic pseudo-random text of about 2 million words
(random.Random(42), a Zipf-like vocabulary made of syllables), then counts word frequencies and
builds a few intermediate structures (lines, bigrams, words by length and by first letter).
Prints the top 10 words with their counts and some totals. Allocation-heavy by design: run it with
PYTHONMALLOC=malloc so every Python object goes through the C malloc.
"""
import random

N_WORDS = 2_000_000
WORDS_PER_LINE = 12

rng = random.Random(42)

# A vocabulary of syllable words, weighted like natural text (frequency ~ 1 / rank).
syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pha", "dri", "ston", "ple", "qua"]
vocab = []
seen = set()
while len(vocab) < 20000:
    w = "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
    if w not in seen:
        seen.add(w)
        vocab.append(w)
cum = []
total = 0.0
for rank in range(1, len(vocab) + 1):
    total += 1.0 / rank
    cum.append(total)

# The text: lines of words, joined into one big string, as if read from a file.
words = rng.choices(vocab, cum_weights=cum, k=N_WORDS)
lines = [" ".join(words[i:i + WORDS_PER_LINE]) for i in range(0, N_WORDS, WORDS_PER_LINE)]
text = "\n".join(lines)
del words, lines

# Count: split the text again and count in a plain dict.
counts = {}
n_tokens = 0
for line in text.split("\n"):
    for w in line.split():
        counts[w] = counts.get(w, 0) + 1
        n_tokens += 1

# Intermediate structures: bigrams within lines, words grouped by length and first letter.
bigrams = {}
for line in text.split("\n"):
    toks = line.split()
    for a, b in zip(toks, toks[1:]):
        key = (a, b)
        bigrams[key] = bigrams.get(key, 0) + 1
by_length = {}
by_letter = {}
for w, c in counts.items():
    by_length.setdefault(len(w), []).append(w)
    by_letter[w[0]] = by_letter.get(w[0], 0) + c

top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
top_bigram = max(bigrams.items(), key=lambda kv: (kv[1], kv[0]))
longest = max(by_length)

print("text: %d characters, %d words, %d distinct" % (len(text), n_tokens, len(counts)))
print("top 10 words:")
for w, c in top:
    print("  %-12s %8d" % (w, c))
print("distinct bigrams: %d, most common: %s %s (%d)" % (len(bigrams), top_bigram[0][0], top_bigram[0][1], top_bigram[1]))
print("words used once: %d" % sum(1 for c in counts.values() if c == 1))
print("longest words: %d characters (%d of them)" % (longest, len(by_length[longest])))
print("by first letter: %s" % " ".join("%s=%d" % (k, by_letter[k]) for k in sorted(by_letter)))
