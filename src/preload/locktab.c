/* SPDX-License-Identifier: MIT */
/*
 * locktab.c: the lock table and the lock-order pairs. Both are written on
 * the lock path, so neither locks, allocates nor makes a system call.
 *
 * DESIGN. Every process pays for what it touches, and fork() copies the
 * page tables of every page either process wrote, so the tables are laid
 * out to touch as few pages as possible: entries go into a dense array in
 * the order locks are first seen (a process that uses 50 locks touches
 * one page of it), and are found through an open-addressed index of 4-byte
 * slots. A scan (at exit, or when memory is unmapped) walks only the
 * entries in use. Nothing is ever resized or freed: an entry whose lock
 * went away is reset and stays with its address, which the next lock
 * there (malloc reuses addresses) takes over.
 */
#include "interpose.h"

/* ------------------------------------------------------------ locks */

#define INDEX_BITS  16
#define INDEX_SLOTS (1u << INDEX_BITS)
#define PROBES      32

static struct lock_ent ents[LOCK_MAX];
static uint32_t lock_index[INDEX_SLOTS]; /* entry + 1; 0: empty */
HOT static unsigned nents;               /* claimed; may pass LOCK_MAX */
HOT static long untracked;
/* Births so far: a lock's first use since its entry was made or reset
   takes the next number (lock_ent.born). A pair stamped before an outer
   lock's birth was noted under an earlier lock at that address. */
HOT static unsigned births;

static struct lock_ent retired[RETIRED_MAX];
HOT static int nretired;

/* One bit per 2 MiB region (hashed) that ever held a tracked lock, so
   that munmap() of memory without locks costs a few bit tests. */
#define REGION_SHIFT 21
#define REGION_BITS  4096
HOT static uint64_t regions[REGION_BITS / 64];

static inline size_t hash_ptr(uintptr_t a, unsigned bits)
{
    return (size_t)(((uint64_t)(a >> 3) * 0x9e3779b97f4a7c15ull) >>
                    (64 - bits));
}

static inline unsigned region_bit(uintptr_t region)
{
    return (unsigned)(((uint64_t)region * 0x9e3779b97f4a7c15ull) >> 52);
}

static void region_mark(uintptr_t a)
{
    unsigned b = region_bit(a >> REGION_SHIFT);
    uint64_t m = 1ull << (b & 63);
    if (!(LOAD(&regions[b >> 6]) & m))
        __atomic_fetch_or(&regions[b >> 6], m, __ATOMIC_ACQ_REL);
}

int forksafe__lock_maybe_in(uintptr_t lo, uintptr_t hi)
{
    if (hi <= lo)
        return 0;
    uintptr_t first = lo >> REGION_SHIFT, last = (hi - 1) >> REGION_SHIFT;
    if (last - first >= REGION_BITS)
        return 1;
    for (uintptr_t r = first; r <= last; r++) {
        unsigned b = region_bit(r);
        if (LOAD(&regions[b >> 6]) & (1ull << (b & 63)))
            return 1;
    }
    return 0;
}

static struct lock_ent *lock_find(uintptr_t a, int insert)
{
    size_t h = hash_ptr(a, INDEX_BITS);
    unsigned mine = 0; /* an entry claimed for a, not yet indexed (+1) */
    for (unsigned i = 0; i < PROBES; i++) {
        uint32_t *slot = &lock_index[(h + i) & (INDEX_SLOTS - 1)];
        uint32_t v = LOAD(slot);
        if (v == 0) {
            if (!insert)
                return NULL;
            if (!mine) {
                unsigned n = __atomic_fetch_add(&nents, 1, __ATOMIC_ACQ_REL);
                if (n >= LOCK_MAX) {
                    __atomic_add_fetch(&untracked, 1, __ATOMIC_RELAXED);
                    return NULL;
                }
                STORE(&ents[n].addr, a);
                mine = n + 1;
            }
            if (__atomic_compare_exchange_n(slot, &v, mine, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
                return &ents[mine - 1];
            /* Another thread filled this slot first: look at what it put
               there (perhaps this very lock), then go on probing. */
        }
        if (v && LOAD(&ents[v - 1].addr) == a)
            return &ents[v - 1]; /* a claimed entry of ours stays unused */
    }
    if (insert)
        __atomic_add_fetch(&untracked, 1, __ATOMIC_RELAXED);
    return NULL; /* index region full: this lock is not tracked */
}

static void mark_mixed(struct lock_ent *e, int tid)
{
    unsigned char was = 0;
    if (__atomic_compare_exchange_n(&e->mixed, &was, 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        STORE(&e->mixed_tid, tid);
}

int forksafe__lock_gone_since(uintptr_t lock, unsigned stamp)
{
    if (lock == OUTER_BARE || lock == 0)
        return 0;
    struct lock_ent *o = lock_find(lock, 0);
    if (!o || !LOAD(&o->owner))
        return 1;
    return stamp != 0 && (int)(LOAD(&o->born) - stamp) > 0;
}

/* 1 if the pair in slot i of e is over: one of its locks went away since
   it was last noted (every taking under it ended before that). */
static int pair_over(struct lock_ent *e, int i)
{
    uintptr_t v = LOAD(&e->outer[i]), v0 = LOAD(&e->outer0[i]);
    unsigned st = LOAD(&e->outer_stamp[i]);
    if (v == 0 || v0 == 0)
        return 0; /* free, or being filled */
    return (v != e->addr && forksafe__lock_gone_since(v, st)) ||
           (v0 != e->addr && forksafe__lock_gone_since(v0, st));
}

static void slot_fill(struct lock_ent *e, int i, uintptr_t outer0,
                      unsigned stamp, int tid)
{
    STORE(&e->outer_tid[i], tid);
    STORE(&e->outer0[i], outer0);
    STORE(&e->outer_stamp[i], stamp);
}

/* The pair (lock, lock), stricter than the pair in slot k (which names
   lock), takes slot k; the thread that added it stays named, so that no
   taking by a thread of the parent is lost in a child. 0 if another
   thread rewrote the slot meanwhile. */
static int take_implied(struct lock_ent *e, int k, uintptr_t lock,
                        unsigned stamp)
{
    STORE(&e->outer_stamp[k], 0);
    uintptr_t w = LOAD(&e->outer[k]), w0 = LOAD(&e->outer0[k]);
    if (w != lock && w0 == lock)
        __atomic_compare_exchange_n(&e->outer[k], &w, lock, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
    else if (w == lock && w0 != lock)
        __atomic_compare_exchange_n(&e->outer0[k], &w0, lock, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    if (LOAD(&e->outer[k]) != lock || LOAD(&e->outer0[k]) != lock)
        return 0;
    STORE(&e->outer_stamp[k], stamp);
    return 1;
}

/* Add the pair (outer, outer0) to e's: the taking is covered at a fork
   if either lock is. Kept exact and small: a pair already there is
   restamped; a pair implied by one there (which names one lock, both
   innermost and outermost, and that lock is one of the new pair's) adds
   nothing; a new pair that names one lock replaces a pair it implies
   (the two together hold exactly when that lock is covered); else a free
   slot, then the slot of a pair that is over; mixed when none is left. */
static void outer_note(struct lock_ent *e, uintptr_t outer, uintptr_t outer0,
                       int tid)
{
    if (LOAD(&e->mixed))
        return;
    unsigned stamp = LOAD(&births);
    int single = outer == outer0 && outer != OUTER_BARE;
    int implied = -1; /* a slot that the new (single) pair implies */
    for (int i = 0; i < OUTER_MAX; i++) {
        uintptr_t v = LOAD(&e->outer[i]), v0 = LOAD(&e->outer0[i]);
        if ((v == outer && v0 == outer0) ||
            (v != 0 && v == v0 && v != OUTER_BARE &&
             (v == outer || v == outer0) && !pair_over(e, i))) {
            /* The same pair, or one that implies it; perhaps under new
               locks at the same addresses: it now stands for this
               taking. A pair that implies it only while its lock lives
               does not once that lock is over: a new lock at its
               address, held with a covered lock inside, is not the old
               one held alone. */
            if (LOAD(&e->outer_stamp[i]) != stamp)
                STORE(&e->outer_stamp[i], stamp);
            return;
        }
        if (single && implied < 0 && v != 0 && v0 != 0 &&
            (v == outer || v0 == outer))
            implied = i;
        if (v == 0 && implied >= 0 && take_implied(e, implied, outer, stamp))
            return;
        if (v == 0) {
            if (__atomic_compare_exchange_n(&e->outer[i], &v, outer, 0,
                                            __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                slot_fill(e, i, outer0, stamp, tid);
                return;
            }
        }
    }
    if (implied >= 0 && take_implied(e, implied, outer, stamp))
        return;
    /* No room: reuse the slot of a pair that is over. */
    for (int i = 0; i < OUTER_MAX; i++) {
        uintptr_t v = LOAD(&e->outer[i]);
        if (!pair_over(e, i))
            continue;
        /* Unknown stamp first: while the slot is rewritten it reads as a
           pair not over (never covered by a stale stamp). */
        STORE(&e->outer_stamp[i], 0);
        if (__atomic_compare_exchange_n(&e->outer[i], &v, outer, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            slot_fill(e, i, outer0, stamp, tid);
            return;
        }
    }
    mark_mixed(e, tid);
}

void forksafe__lock_unnest(void *lock, int tid)
{
    struct lock_ent *e = lock_find((uintptr_t)lock, 0);
    if (e)
        mark_mixed(e, tid);
}

void forksafe__lock_note(void *lock, int kind, void *site, struct thread_rec *r,
                         uintptr_t outer, uintptr_t outer0)
{
    region_mark((uintptr_t)lock);
    struct lock_ent *e = lock_find((uintptr_t)lock, 1);
    if (!e)
        return; /* untracked (counted) */
    outer_note(e, outer, outer0, r->tid);
    unsigned o = LOAD(&e->owner);
    if (o == r->ident || LOAD(&e->shared))
        return;
    if (o == 0) {
        if (__atomic_compare_exchange_n(&e->owner, &o, r->ident, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            STORE(&e->born, __atomic_add_fetch(&births, 1, __ATOMIC_ACQ_REL));
            e->kind = (unsigned char)kind;
            e->site1 = site;
            e->tid1 = r->tid;
            return;
        }
        if (o == r->ident)
            return;
    }
    e->site2 = site;
    e->tid2 = r->tid;
    STORE(&e->shared, 1);
}

struct lock_ent *forksafe__lock_lookup(const void *lock)
{
    return lock_find((uintptr_t)lock, 0);
}

size_t forksafe__lock_count(void)
{
    unsigned n = LOAD(&nents);
    return n < LOCK_MAX ? n : LOCK_MAX;
}

struct lock_ent *forksafe__lock_at(size_t i)
{
    return &ents[i];
}

long forksafe__lock_untracked(void)
{
    return LOAD(&untracked);
}

const struct lock_ent *forksafe__lock_retired(int *n)
{
    *n = LOAD(&nretired);
    return retired;
}

static void lock_reset(struct lock_ent *e)
{
    if (LOAD(&e->shared)) {
        /* It was shared while it lived: keep it for the exit report. */
        int i = __atomic_fetch_add(&nretired, 1, __ATOMIC_ACQ_REL);
        if (i < RETIRED_MAX)
            retired[i] = *e;
        STORE(&e->shared, 0);
    }
    if (LOAD(&e->owner))
        STORE(&e->owner, 0);
    if (LOAD(&e->outer[0]) || LOAD(&e->mixed)) {
        for (int i = 0; i < OUTER_MAX; i++) {
            STORE(&e->outer[i], 0);
            STORE(&e->outer0[i], 0);
        }
        STORE(&e->mixed, 0);
    }
}

/* Drop every reference to [lo, hi] (lo == hi: exactly lo) from the held
   stacks and seen caches of all threads. Only the owner moves entries of
   its own stack; others swap the lock for NULL, which readers skip. */
static void threads_forget(uintptr_t lo, uintptr_t hi)
{
    int hwm = LOAD(&forksafe__threads_hwm);
    for (int i = 0; i < hwm; i++) {
        struct thread_rec *t = &forksafe__threads[i];
        if (LOAD(&t->tid) == 0)
            continue;
        /* A cached pair under a lock that goes away must be noted again
           when taken under a new lock at its address. */
        for (int k = 0; k < SEEN_CACHE; k++) {
            uintptr_t s = LOAD(&t->seen[k].lock);
            uintptr_t o = LOAD(&t->seen[k].outer),
                      o0 = LOAD(&t->seen[k].outer0);
            if ((s && s >= lo && (s < hi || s == lo)) ||
                (o >= lo && (o < hi || o == lo)) ||
                (o0 >= lo && (o0 < hi || o0 == lo)))
                STORE(&t->seen[k].lock, 0);
        }
        int nh = LOAD(&t->nheld);
        struct held *more = LOAD(&t->more), *h;
        for (int j = 0; j < nh && (h = held_entry(t, more, j)) != NULL; j++) {
            void *l = LOAD(&h->lock);
            uintptr_t a = (uintptr_t)l;
            if (l && a >= lo && (a < hi || a == lo))
                __atomic_compare_exchange_n(&h->lock, &l, NULL, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
        }
    }
}

void forksafe__lock_forget(uintptr_t lo, uintptr_t hi)
{
    if (lo == hi) {
        struct lock_ent *e = lock_find(lo, 0);
        if (e)
            lock_reset(e);
        threads_forget(lo, hi);
        return;
    }
    if (!forksafe__lock_maybe_in(lo, hi))
        return;
    size_t n = forksafe__lock_count();
    for (size_t i = 0; i < n; i++) {
        uintptr_t a = LOAD(&ents[i].addr);
        if (a >= lo && a < hi)
            lock_reset(&ents[i]);
    }
    threads_forget(lo, hi);
}

/* ------------------------------------------------------------ edges */

#define EDGE_INDEX_BITS 13

struct edge_ent {
    uint64_t key;
    struct edge e;
    int ready;
};

static struct edge_ent edges[EDGE_MAX];
static uint32_t edge_index[1u << EDGE_INDEX_BITS];
HOT static unsigned nedges;

void forksafe__edge_note(const struct held *outer, void *b, void *site,
                         struct thread_rec *r)
{
    uint64_t key = ((uint64_t)(uintptr_t)outer->lock * 0x9e3779b97f4a7c15ull) ^
                   ((uint64_t)(uintptr_t)b * 0xc2b2ae3d27d4eb4full);
    key |= 1;
    size_t h = (size_t)(key >> (64 - EDGE_INDEX_BITS));
    for (unsigned i = 0; i < PROBES; i++) {
        uint32_t *slot = &edge_index[(h + i) & ((1u << EDGE_INDEX_BITS) - 1)];
        uint32_t v = LOAD(slot);
        if (v && LOAD(&edges[v - 1].key) == key)
            return;
        if (v)
            continue;
        unsigned n = LOAD(&nedges);
        if (n >= EDGE_MAX)
            return;
        n = __atomic_fetch_add(&nedges, 1, __ATOMIC_ACQ_REL);
        if (n >= EDGE_MAX)
            return;
        struct edge_ent *e = &edges[n];
        e->e.a = outer->lock;
        e->e.b = b;
        e->e.site_a = outer->site;
        e->e.site_b = site;
        e->e.tid = r->tid;
        STORE(&e->key, key);
        STORE(&e->ready, 1);
        /* If another thread indexes the same pair meanwhile, both entries
           stay: the report shows the pair twice at worst. */
        __atomic_compare_exchange_n(slot, &v, n + 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED);
        return;
    }
}

size_t forksafe__edge_count(void)
{
    unsigned n = LOAD(&nedges);
    return n < EDGE_MAX ? n : EDGE_MAX;
}

const struct edge *forksafe__edge_at(size_t i)
{
    return LOAD(&edges[i].ready) ? &edges[i].e : NULL;
}
