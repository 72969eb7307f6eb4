/*
 * A C program for the gcc workload of c_tests/real_programs.sh: gcc (cc1, as, ld) compiles it
 * under LD_PRELOAD, then the binary runs, also preloaded. It exercises malloc/realloc/free with
 * the usual data structures of C programs and prints deterministic checksums:
 *   - a growable string buffer (realloc doubling)
 *   - a chained hash map from strings to counts, with rehashing
 *   - an AVL tree with insertions and deletions
 *   - an expression parser that builds, evaluates and frees syntax trees
 *   - big-number factorials in a growable digit array
 *   - a linked list merge sort, and qsort of heap-allocated records
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p && n) { fprintf(stderr, "out of memory\n"); exit(2); }
    return p;
}

static void *xrealloc(void *old, size_t n) {
    void *p = realloc(old, n);
    if (!p && n) { fprintf(stderr, "out of memory\n"); exit(2); }
    return p;
}

static uint64_t fnv(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return h;
}

/* ---- growable string buffer ---- */
typedef struct { char *s; size_t len, cap; } Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16;
        while (cap < b->len + n + 1) cap *= 2;
        b->s = xrealloc(b->s, cap);
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void test_buf(void) {
    uint64_t h = 14695981039346656037ULL;
    size_t total = 0;
    for (int round = 0; round < 200; round++) {
        Buf b = {0};
        int n = 100 + (int)(rnd() % 3000);
        for (int i = 0; i < n; i++) {
            char tmp[32];
            int k = snprintf(tmp, sizeof tmp, "%d:%llu;", i, (unsigned long long)(rnd() % 100000));
            buf_put(&b, tmp, (size_t)k);
        }
        h = fnv(b.s, b.len, h);
        total += b.len;
        free(b.s);
    }
    printf("buf: %zu bytes, hash %016llx\n", total, (unsigned long long)h);
}

/* ---- chained hash map ---- */
typedef struct Entry { struct Entry *next; char *key; long count; } Entry;
typedef struct { Entry **slots; size_t nslots, n; } Map;

static uint64_t str_hash(const char *s) { return fnv(s, strlen(s), 14695981039346656037ULL); }

static void map_grow(Map *m) {
    size_t ns = m->nslots ? m->nslots * 2 : 8;
    Entry **slots = calloc(ns, sizeof *slots);
    if (!slots) exit(2);
    for (size_t i = 0; i < m->nslots; i++) {
        Entry *e = m->slots[i];
        while (e) {
            Entry *next = e->next;
            size_t j = str_hash(e->key) & (ns - 1);
            e->next = slots[j];
            slots[j] = e;
            e = next;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = ns;
}

static void map_add(Map *m, const char *key, long d) {
    if (m->n + 1 > m->nslots * 3 / 4) map_grow(m);
    size_t j = str_hash(key) & (m->nslots - 1);
    for (Entry *e = m->slots[j]; e; e = e->next)
        if (strcmp(e->key, key) == 0) { e->count += d; return; }
    Entry *e = xmalloc(sizeof *e);
    e->key = strdup(key);
    e->count = d;
    e->next = m->slots[j];
    m->slots[j] = e;
    m->n++;
}

static int map_del(Map *m, const char *key) {
    if (!m->nslots) return 0;
    Entry **pp = &m->slots[str_hash(key) & (m->nslots - 1)];
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0) {
            Entry *e = *pp;
            *pp = e->next;
            free(e->key);
            free(e);
            m->n--;
            return 1;
        }
    }
    return 0;
}

static void map_free(Map *m) {
    for (size_t i = 0; i < m->nslots; i++) {
        Entry *e = m->slots[i];
        while (e) { Entry *next = e->next; free(e->key); free(e); e = next; }
    }
    free(m->slots);
}

static void test_map(void) {
    Map m = {0};
    char key[64];
    long deleted = 0;
    for (int i = 0; i < 400000; i++) {
        snprintf(key, sizeof key, "word-%llu-%s", (unsigned long long)(rnd() % 50000),
                 (i % 3) ? "long-suffix-to-vary-the-size" : "s");
        map_add(&m, key, 1);
        if (i % 5 == 0) {
            snprintf(key, sizeof key, "word-%llu-s", (unsigned long long)(rnd() % 50000));
            deleted += map_del(&m, key);
        }
    }
    long total = 0, maxc = 0;
    for (size_t i = 0; i < m.nslots; i++)
        for (Entry *e = m.slots[i]; e; e = e->next) { total += e->count; if (e->count > maxc) maxc = e->count; }
    printf("map: %zu keys, %ld deleted, %ld counted, max %ld, %zu slots\n", m.n, deleted, total, maxc, m.nslots);
    map_free(&m);
}

/* ---- AVL tree ---- */
typedef struct Node { struct Node *l, *r; long key; int h; char *payload; } Node;

static int ht(Node *n) { return n ? n->h : 0; }
static void fix(Node *n) { int a = ht(n->l), b = ht(n->r); n->h = (a > b ? a : b) + 1; }
static Node *rot_r(Node *n) { Node *l = n->l; n->l = l->r; l->r = n; fix(n); fix(l); return l; }
static Node *rot_l(Node *n) { Node *r = n->r; n->r = r->l; r->l = n; fix(n); fix(r); return r; }

static Node *balance(Node *n) {
    fix(n);
    int bf = ht(n->l) - ht(n->r);
    if (bf > 1) { if (ht(n->l->l) < ht(n->l->r)) n->l = rot_l(n->l); return rot_r(n); }
    if (bf < -1) { if (ht(n->r->r) < ht(n->r->l)) n->r = rot_r(n->r); return rot_l(n); }
    return n;
}

static Node *avl_insert(Node *n, long key) {
    if (!n) {
        n = xmalloc(sizeof *n);
        n->l = n->r = NULL; n->key = key; n->h = 1;
        size_t len = 1 + (size_t)(key % 200);
        n->payload = xmalloc(len);
        memset(n->payload, 'a' + (int)(key % 26), len);
        return n;
    }
    if (key < n->key) n->l = avl_insert(n->l, key);
    else if (key > n->key) n->r = avl_insert(n->r, key);
    else return n;
    return balance(n);
}

static Node *avl_remove_min(Node *n, Node **min) {
    if (!n->l) { *min = n; return n->r; }
    n->l = avl_remove_min(n->l, min);
    return balance(n);
}

static Node *avl_delete(Node *n, long key, int *found) {
    if (!n) return NULL;
    if (key < n->key) n->l = avl_delete(n->l, key, found);
    else if (key > n->key) n->r = avl_delete(n->r, key, found);
    else {
        Node *l = n->l, *r = n->r;
        free(n->payload);
        free(n);
        *found = 1;
        if (!r) return l;
        Node *min;
        r = avl_remove_min(r, &min);
        min->l = l; min->r = r;
        return balance(min);
    }
    return balance(n);
}

static void avl_walk(Node *n, uint64_t *h, long *count) {
    if (!n) return;
    avl_walk(n->l, h, count);
    *h = fnv(&n->key, sizeof n->key, *h);
    *h = fnv(n->payload, 1 + (size_t)(n->key % 200), *h);
    (*count)++;
    avl_walk(n->r, h, count);
}

static void avl_free(Node *n) {
    if (!n) return;
    avl_free(n->l); avl_free(n->r); free(n->payload); free(n);
}

static void test_avl(void) {
    Node *root = NULL;
    long deleted = 0;
    for (int i = 0; i < 300000; i++) {
        root = avl_insert(root, (long)(rnd() % 1000000));
        if (i % 2) { int f = 0; root = avl_delete(root, (long)(rnd() % 1000000), &f); deleted += f; }
    }
    uint64_t h = 14695981039346656037ULL;
    long count = 0;
    avl_walk(root, &h, &count);
    printf("avl: %ld nodes, %ld deleted, height %d, hash %016llx\n", count, deleted, ht(root),
           (unsigned long long)h);
    avl_free(root);
}

/* ---- expression trees ---- */
typedef struct Expr { char op; long val; struct Expr *a, *b; } Expr;
typedef struct { const char *p; } Parser;

static Expr *mk(char op, long val, Expr *a, Expr *b) {
    Expr *e = xmalloc(sizeof *e);
    e->op = op; e->val = val; e->a = a; e->b = b;
    return e;
}

static Expr *parse_sum(Parser *ps);

static Expr *parse_atom(Parser *ps) {
    if (*ps->p == '(') { ps->p++; Expr *e = parse_sum(ps); ps->p++; return e; }
    long v = 0;
    while (*ps->p >= '0' && *ps->p <= '9') v = v * 10 + (*ps->p++ - '0');
    return mk('n', v, NULL, NULL);
}

static Expr *parse_prod(Parser *ps) {
    Expr *e = parse_atom(ps);
    while (*ps->p == '*') { ps->p++; e = mk('*', 0, e, parse_atom(ps)); }
    return e;
}

static Expr *parse_sum(Parser *ps) {
    Expr *e = parse_prod(ps);
    while (*ps->p == '+' || *ps->p == '-') { char op = *ps->p++; e = mk(op, 0, e, parse_prod(ps)); }
    return e;
}

static long eval(Expr *e) {
    switch (e->op) {
    case 'n': return e->val;
    case '+': return (eval(e->a) + eval(e->b)) % 1000000007L;
    case '-': return (eval(e->a) - eval(e->b)) % 1000000007L;
    default: return (eval(e->a) * eval(e->b)) % 1000000007L;
    }
}

static void expr_free(Expr *e) { if (e) { expr_free(e->a); expr_free(e->b); free(e); } }

static void gen_expr(Buf *b, int depth) {
    if (depth == 0 || rnd() % 4 == 0) {
        char tmp[24];
        int k = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)(rnd() % 1000));
        buf_put(b, tmp, (size_t)k);
        return;
    }
    buf_put(b, "(", 1);
    gen_expr(b, depth - 1);
    buf_put(b, "+-*" + rnd() % 3, 1);
    gen_expr(b, depth - 1);
    buf_put(b, ")", 1);
}

static void test_expr(void) {
    long acc = 0;
    size_t chars = 0;
    for (int i = 0; i < 3000; i++) {
        Buf b = {0};
        gen_expr(&b, 12);
        Parser ps = {b.s};
        Expr *e = parse_sum(&ps);
        acc = (acc * 31 + eval(e)) % 1000000007L;
        chars += b.len;
        expr_free(e);
        free(b.s);
    }
    printf("expr: %zu chars parsed, checksum %ld\n", chars, acc);
}

/* ---- big numbers: n! in base 10^9 ---- */
static void test_bignum(void) {
    uint64_t h = 14695981039346656037ULL;
    for (int n = 500; n <= 2500; n += 500) {
        size_t len = 1, cap = 4;
        uint32_t *d = xmalloc(cap * sizeof *d);
        d[0] = 1;
        for (int k = 2; k <= n; k++) {
            uint64_t carry = 0;
            for (size_t i = 0; i < len; i++) {
                uint64_t v = (uint64_t)d[i] * (uint64_t)k + carry;
                d[i] = (uint32_t)(v % 1000000000u);
                carry = v / 1000000000u;
            }
            while (carry) {
                if (len == cap) { cap *= 2; d = xrealloc(d, cap * sizeof *d); }
                d[len++] = (uint32_t)(carry % 1000000000u);
                carry /= 1000000000u;
            }
        }
        int digits = 0;
        for (uint32_t top = d[len - 1]; top; top /= 10) digits++;
        digits += (int)(len - 1) * 9;
        h = fnv(d, len * sizeof *d, h);
        printf("bignum: %d! has %d digits, leading %u\n", n, digits, d[len - 1]);
        free(d);
    }
    printf("bignum: hash %016llx\n", (unsigned long long)h);
}

/* ---- linked list merge sort and qsort of records ---- */
typedef struct Cell { struct Cell *next; long v; } Cell;

static Cell *merge(Cell *a, Cell *b) {
    Cell head, *t = &head;
    while (a && b) {
        if (a->v <= b->v) { t->next = a; a = a->next; } else { t->next = b; b = b->next; }
        t = t->next;
    }
    t->next = a ? a : b;
    return head.next;
}

static Cell *msort(Cell *c) {
    if (!c || !c->next) return c;
    Cell *slow = c, *fast = c->next;
    while (fast && fast->next) { slow = slow->next; fast = fast->next->next; }
    Cell *back = slow->next;
    slow->next = NULL;
    return merge(msort(c), msort(back));
}

typedef struct { char *name; long score; } Rec;

static int rec_cmp(const void *x, const void *y) {
    const Rec *a = x, *b = y;
    if (a->score != b->score) return a->score < b->score ? -1 : 1;
    return strcmp(a->name, b->name);
}

static void test_sort(void) {
    Cell *list = NULL;
    for (int i = 0; i < 200000; i++) {
        Cell *c = xmalloc(sizeof *c);
        c->v = (long)(rnd() % 1000000);
        c->next = list;
        list = c;
    }
    list = msort(list);
    long prev = -1, bad = 0, sum = 0;
    for (Cell *c = list; c;) {
        if (c->v < prev) bad++;
        prev = c->v; sum += c->v;
        Cell *next = c->next;
        free(c);
        c = next;
    }
    int n = 100000;
    Rec *recs = xmalloc((size_t)n * sizeof *recs);
    for (int i = 0; i < n; i++) {
        char tmp[48];
        snprintf(tmp, sizeof tmp, "rec-%llx", (unsigned long long)(rnd() % 0xFFFFFF));
        recs[i].name = strdup(tmp);
        recs[i].score = (long)(rnd() % 1000);
    }
    qsort(recs, (size_t)n, sizeof *recs, rec_cmp);
    printf("sort: list sum %ld, %ld out of order; records first %s/%ld last %s/%ld\n", sum, bad,
           recs[0].name, recs[0].score, recs[n - 1].name, recs[n - 1].score);
    for (int i = 0; i < n; i++) free(recs[i].name);
    free(recs);
}

int main(void) {
    test_buf();
    test_map();
    test_avl();
    test_expr();
    test_bignum();
    test_sort();
    return 0;
}
