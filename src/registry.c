/* SPDX-License-Identifier: MIT */
/*
 * registry.c: the set of registered locks and callback sets, keyed by lock
 * address or callback context, kept in fork order (ascending rank, then
 * registration order).
 *
 * DESIGN. The entries form one doubly linked list in fork order, which is
 * what the snapshot for the fork handlers is built from. Entries of equal
 * rank are contiguous in it, and a new entry always goes after the last
 * entry of its rank (its sequence number is the highest), so placing it
 * only needs that rank's bucket, found in a treap of ranks: O(log R) for R
 * distinct ranks, O(1) list surgery, no shifting. A hash table by key gives
 * O(1) EEXIST checks, unregistration and lookup. Entries are small (see
 * internal.h) because fork() copies the page tables of everything resident.
 * The registry lock is also the fork lock: prepare takes it and the parent
 * or child handler releases it, so registry changes wait for a fork. It
 * lives in the fork page (internal.h), with the other state a fork writes
 * after prepare, so that no fork makes the parent copy a page.
 */
#include "internal.h"
#include "platform/platform.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static struct forksafe_entry **table; /* hash buckets, power of two */
static size_t table_mask;             /* buckets - 1 */
static size_t count;

/* One rank in use: where its run of entries starts and ends in the list. */
struct rank_bucket {
    unsigned rank;
    uint32_t prio;
    struct rank_bucket *left, *right;
    struct forksafe_entry *first, *last;
};

static struct rank_bucket *ranks;   /* treap by rank */
static struct forksafe_entry *head; /* fork order */
static uint32_t next_seq = 1;
static uint32_t prio_state = 2463534242u;

/* The objects that registered entries or hold their keys; entries hold an
   index. Objects are few, so a linear search is fine. An owner is known by
   its link map and one address inside it (rep), which is what the unload
   sweep asks _dl_find_object() about; lm is NULL once it is gone. */
#define OWNER_UNKNOWN UINT16_MAX
struct owner {
    uintptr_t base;  /* load address (dlpi_addr) */
    const void *lm;  /* its struct link_map, NULL when unloaded */
    const void *rep; /* an address inside it */
};
static struct owner *owners;
static size_t n_owners, owners_cap;

/* Raw pthread_atfork() triples captured by fork.c, in registration order.
   A fixed table, allocated by the constructor: capturing never allocates,
   so that an allocator may register its handlers from inside its own
   initialisation. (Heap, not static: the library's writable pages then
   fit in one mapping, and every mapping is a cost of each fork.) */
#define RAW_MAX 64
struct raw_entry {
    struct forksafe_raw h;
    const void *dso;
    uint16_t owner;
    unsigned char inner;
};
static struct raw_entry *raws;
static size_t n_raws;
/* The snapshot's copies, split into outer and inner handlers. */
static struct forksafe_raw *raw_outer, *raw_inner;
static size_t n_outer, n_inner, n_ops;

/* The fork handlers' view (see forksafe__registry_snapshot). Capacity is
   reserved at registration so that rebuilding it never allocates. The
   four arrays share one block (slot_block). */
static void *slot_block;
static const void **slot_key;
static unsigned char *slot_kind;
static uint32_t *single_idx;
static struct forksafe_exception *exceptions;
static size_t slot_cap, n_slots, n_single;
static unsigned long generation = 1, slots_generation;

static char **adapters;
static size_t n_adapters;

/* Grow *p to cap elements of size sz; on failure *p is left as it was. */
static int grow(void *p, size_t cap, size_t sz)
{
    void *n = realloc(*(void **)p, cap * sz);
    if (!n)
        return ENOMEM;
    *(void **)p = n;
    return 0;
}

/* ------------------------------------------------------------ fork page */

/* The fork page: a whole page of zero-initialised static data, aligned to
   its size, so that it shares its page with nothing (it lies beyond the
   file-backed part of the data segment, in anonymous memory, where
   MADV_WIPEONFORK applies), and needs no mapping of its own when nothing
   else follows it there: each mapping is a cost of every fork(). Zeroes
   are a free PTHREAD_MUTEX_INITIALIZER mutex, no owner, no waiters. */
#define FORK_PAGE 4096
#if defined(__x86_64__)
/* .lbss: zero-filled, placed after .bss by the linker, so nothing follows
   the page in the data segment's anonymous part. */
#define FORK_PAGE_SECTION __attribute__((section(".lbss.forksafe")))
#else
#define FORK_PAGE_SECTION
#endif
static union {
    struct forksafe_fork_page page;
    char pad[FORK_PAGE];
} fork_page __attribute__((aligned(FORK_PAGE))) FORK_PAGE_SECTION;
struct forksafe_fork_page *forksafe__fp = &fork_page.page;
int forksafe__fp_wiped;

void forksafe__registry_init(void)
{
    /* Room for the first owners and for the captured handlers, so that
       capturing a raw handler (which must not allocate) finds it. */
    if (!owners && grow(&owners, 16, sizeof *owners) == 0)
        owners_cap = 16;
    if (!raws) {
        struct raw_entry *r = calloc(RAW_MAX, sizeof *r);
        struct forksafe_raw *o = calloc(RAW_MAX, sizeof *o);
        struct forksafe_raw *in = calloc(RAW_MAX, sizeof *in);
        if (r && o && in) {
            raws = r;
            raw_outer = o;
            raw_inner = in;
        } else {
            free(r);
            free(o);
            free(in);
        }
    }
    /* Where the page size is another (16 or 64 KiB), the advice would
       take neighbours along: the page is then an ordinary one, reset by
       the child handler. */
#ifdef MADV_WIPEONFORK
    if (!forksafe__fp_wiped && sysconf(_SC_PAGESIZE) == FORK_PAGE &&
        madvise(&fork_page, FORK_PAGE, MADV_WIPEONFORK) == 0)
        forksafe__fp_wiped = 1;
#endif
}

void forksafe__fork_page_child_reset(void)
{
    struct forksafe_fork_page *fp = forksafe__fp;
    pthread_mutex_init(&fp->lock, NULL);
    fp->owner = 0;
    fp->by_wrapper = 0;
    memset(fp->waiters, 0, sizeof fp->waiters);
}

/* ------------------------------------------------------------ locking */

#define LOAD(x)     __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* The contended path: record this thread as a waiter while it blocks. */
static int lock_slow(const struct timespec *deadline)
{
    struct forksafe_fork_page *fp = forksafe__fp;
    pid_t me = gettid();
    int slot = -1;
    for (int i = 0; i < FS_WAITERS && slot < 0; i++) {
        pid_t none = 0;
        if (__atomic_compare_exchange_n(&fp->waiters[i], &none, me, 0,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            slot = i;
    }
    int r = deadline ? forksafe__platform()->mutex_lock_until(&fp->lock,
                                                              deadline)
                     : pthread_mutex_lock(&fp->lock);
    if (slot >= 0)
        STORE(fp->waiters[slot], 0);
    return r;
}

void forksafe__registry_lock(void)
{
    if (pthread_mutex_trylock(&forksafe__fp->lock) != 0)
        lock_slow(NULL);
}

int forksafe__registry_lock_until(const struct timespec *deadline)
{
    if (pthread_mutex_trylock(&forksafe__fp->lock) == 0)
        return 0;
    return lock_slow(deadline);
}

void forksafe__registry_unlock(void)
{
    pthread_mutex_unlock(&forksafe__fp->lock);
}

int forksafe__registry_is_waiter(pid_t tid)
{
    struct forksafe_fork_page *fp = forksafe__fp;
    for (int i = 0; i < FS_WAITERS; i++)
        if (LOAD(fp->waiters[i]) == tid)
            return 1;
    return 0;
}

pid_t forksafe__registry_a_waiter(void)
{
    struct forksafe_fork_page *fp = forksafe__fp;
    for (int i = 0; i < FS_WAITERS; i++) {
        pid_t t = LOAD(fp->waiters[i]);
        if (t)
            return t;
    }
    return 0;
}

void forksafe__registry_wait_for(pid_t tid, const struct timespec *deadline)
{
    while (forksafe__registry_is_waiter(tid) && !forksafe__expired(deadline)) {
        struct timespec d = {0, 50 * 1000};
        nanosleep(&d, NULL);
    }
}

struct forksafe_entry *forksafe__registry_first(void)
{
    return head;
}

/* ------------------------------------------------------------ snapshot */

/* Make room for `need` slots: one new block for the four arrays, the old
   one freed. Nothing is copied: the snapshot is rebuilt from the entry list
   before the next fork uses it (every registration changes generation),
   so memory a fork never writes (exception room, single-threaded slots
   beyond the few in use) is never touched, and a large block, which
   malloc() maps fresh, stays out of what fork() has to copy. A failure
   leaves the old block. */
static int reserve_slots(size_t need)
{
    if (need <= slot_cap)
        return 0;
    size_t cap = slot_cap ? slot_cap * 2 : 64;
    while (cap < need)
        cap *= 2;
    /* key (8), exceptions (8), single (4), kind (1), each aligned. */
    size_t exc_off = cap * sizeof *slot_key;
    size_t single_off = exc_off + cap * sizeof *exceptions;
    size_t kind_off = single_off + cap * sizeof *single_idx;
    char *b = malloc(kind_off + cap * sizeof *slot_kind);
    if (!b)
        return ENOMEM;
    free(slot_block);
    slot_block = b;
    slot_key = (const void **)(void *)b;
    exceptions = (struct forksafe_exception *)(void *)(b + exc_off);
    single_idx = (uint32_t *)(void *)(b + single_off);
    slot_kind = (unsigned char *)(b + kind_off);
    slot_cap = cap;
    slots_generation = 0; /* rebuild it into the new block */
    return 0;
}

/* Append the entries of one rank, [first, end), to the slots: its locks,
   then its callback sets, each in registration order (fork.c takes a
   rank's locks as a set, then runs its callbacks). */
static void add_rank(struct forksafe_entry *first, struct forksafe_entry *end,
                     size_t *i, size_t *k, size_t *ops)
{
    int first_slot = 1;
    for (int pass = 0; pass < 2; pass++) {
        for (struct forksafe_entry *e = first; e != end; e = e->next) {
            if (e->shared || (e->kind == FS_KIND_OPS) != pass)
                continue; /* shared: never visited at fork (see add) */
            FORKSAFE_ASSERT(*i < slot_cap);
            slot_key[*i] = e->key;
            slot_kind[*i] =
                (unsigned char)(e->slot | (first_slot ? FS_SLOT_FIRST : 0));
            first_slot = 0;
            if (e->single)
                single_idx[(*k)++] = (uint32_t)*i;
            *ops += pass;
            (*i)++;
        }
    }
}

void forksafe__registry_snapshot(struct forksafe_snapshot *snap)
{
    if (slots_generation != generation) {
        size_t i = 0, k = 0, ops = 0;
        for (struct forksafe_entry *e = head, *nx; e; e = nx) {
            for (nx = e->next; nx && nx->rank == e->rank;)
                nx = nx->next;
            add_rank(e, nx, &i, &k, &ops);
        }
        n_slots = i;
        n_single = k;
        n_ops = ops;
        n_outer = n_inner = 0;
        for (size_t r = 0; r < n_raws; r++) {
            if (raws[r].inner)
                raw_inner[n_inner++] = raws[r].h;
            else
                raw_outer[n_outer++] = raws[r].h;
        }
        slots_generation = generation;
    }
    snap->key = slot_key;
    snap->kind = slot_kind;
    snap->single = single_idx;
    snap->exc = exceptions;
    snap->outer = raw_outer;
    snap->inner = raw_inner;
    snap->n = n_slots;
    snap->n_single = n_single;
    snap->n_ops = n_ops;
    snap->n_outer = n_outer;
    snap->n_inner = n_inner;
}

/* ------------------------------------------------------------ hashing */

static size_t hash_key(const void *key)
{
    uint64_t h = (uint64_t)(uintptr_t)key;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (size_t)h;
}

static struct forksafe_entry *find(const void *key)
{
    if (!table)
        return NULL;
    for (struct forksafe_entry *e = table[hash_key(key) & table_mask]; e;
         e = e->hnext)
        if (e->key == key)
            return e;
    return NULL;
}

struct forksafe_entry *forksafe__registry_find(const void *key)
{
    return find(key);
}

/* Keep at least one bucket per entry. Returns ENOMEM only when there is no
   table at all; a failed growth just leaves longer chains. */
static int reserve_table(size_t need)
{
    size_t n = table ? table_mask + 1 : 0;
    if (need <= n)
        return 0;
    size_t nn = n ? n * 2 : 64;
    while (nn < need)
        nn *= 2;
    struct forksafe_entry **t = calloc(nn, sizeof *t);
    if (!t)
        return table ? 0 : ENOMEM;
    for (size_t i = 0; i < n; i++) {
        for (struct forksafe_entry *e = table[i], *nx; e; e = nx) {
            nx = e->hnext;
            size_t b = hash_key(e->key) & (nn - 1);
            e->hnext = t[b];
            t[b] = e;
        }
    }
    free(table);
    table = t;
    table_mask = nn - 1;
    return 0;
}

/* ------------------------------------------------------------ ranks */

static uint32_t next_prio(void)
{
    uint32_t x = prio_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return prio_state = x;
}

static struct rank_bucket *bucket_find(unsigned rank)
{
    struct rank_bucket *b = ranks;
    while (b && b->rank != rank)
        b = rank < b->rank ? b->left : b->right;
    return b;
}

/* Insert nb below t; *pred receives the bucket of the next lower rank. */
static struct rank_bucket *bucket_insert(struct rank_bucket *t,
                                         struct rank_bucket *nb,
                                         struct rank_bucket **pred)
{
    if (!t)
        return nb;
    if (nb->rank < t->rank) {
        t->left = bucket_insert(t->left, nb, pred);
        if (t->left->prio > t->prio) {
            struct rank_bucket *l = t->left;
            t->left = l->right;
            l->right = t;
            return l;
        }
    } else {
        *pred = t;
        t->right = bucket_insert(t->right, nb, pred);
        if (t->right->prio > t->prio) {
            struct rank_bucket *r = t->right;
            t->right = r->left;
            r->left = t;
            return r;
        }
    }
    return t;
}

/* Join two treaps where every rank in a is below every rank in b. */
static struct rank_bucket *bucket_join(struct rank_bucket *a,
                                       struct rank_bucket *b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (a->prio > b->prio) {
        a->right = bucket_join(a->right, b);
        return a;
    }
    b->left = bucket_join(a, b->left);
    return b;
}

static struct rank_bucket *bucket_remove(struct rank_bucket *t, unsigned rank)
{
    FORKSAFE_ASSERT(t != NULL);
    if (rank == t->rank)
        return bucket_join(t->left, t->right);
    if (rank < t->rank)
        t->left = bucket_remove(t->left, rank);
    else
        t->right = bucket_remove(t->right, rank);
    return t;
}

/* ------------------------------------------------------------ entries */

/* Link e into the list, the hash table and its rank's bucket (nb: a fresh
   bucket to use if its rank has none yet; consumed then, else left). */
static void link_entry(struct forksafe_entry *e, struct rank_bucket **nb)
{
    struct rank_bucket *b = bucket_find(e->rank);
    struct forksafe_entry *after;
    if (b) {
        after = b->last;
    } else {
        struct rank_bucket *pred = NULL;
        b = *nb;
        *nb = NULL;
        b->rank = e->rank;
        b->prio = next_prio();
        b->left = b->right = NULL;
        b->first = e;
        ranks = bucket_insert(ranks, b, &pred);
        after = pred ? pred->last : NULL;
    }
    b->last = e;
    e->prev = after;
    e->next = after ? after->next : head;
    if (e->next)
        e->next->prev = e;
    if (after)
        after->next = e;
    else
        head = e;

    struct forksafe_entry **slot = &table[hash_key(e->key) & table_mask];
    e->hnext = *slot;
    *slot = e;
    count++;
    generation++;
}

static void unlink_entry(struct forksafe_entry *e)
{
    struct forksafe_entry **p = &table[hash_key(e->key) & table_mask];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;

    struct rank_bucket *b = bucket_find(e->rank);
    FORKSAFE_ASSERT(b != NULL);
    if (b->first == b->last) {
        ranks = bucket_remove(ranks, e->rank);
        free(b);
    } else if (b->first == e) {
        b->first = e->next;
    } else if (b->last == e) {
        b->last = e->prev;
    }
    if (e->prev)
        e->prev->next = e->next;
    else
        head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    count--;
    generation++;
}

/* ------------------------------------------------------------ arena

   Entries are allocated here, not with malloc(), for fork()'s sake: fork
   copies one page-table entry per resident 4 KiB page of the parent, and
   the child's exit drops it again (about 0.15 us per page per fork+wait
   here), and a large registry is most of a process's small allocations.
   The first ARENA_SMALL_LIMIT bytes come in 64 KiB chunks; beyond that,
   in 2 MiB chunks that ask for transparent huge pages (MADV_HUGEPAGE),
   each of which fork copies as one page-table entry. Freed blocks go to a
   free list per 16-byte size class. Caller holds the registry lock. */
#define ARENA_CLASSES     32 /* blocks of 16 to 512 bytes; more: malloc */
#define ARENA_MALLOC      0xff
#define ARENA_SMALL_CHUNK ((size_t)64 << 10)
#define ARENA_HUGE_CHUNK  ((size_t)2 << 20)
#define ARENA_SMALL_LIMIT ((size_t)256 << 10)

static void *arena_free_list[ARENA_CLASSES];
static char *arena_cur, *arena_end;
static size_t arena_mapped;

static void *chunk_map(size_t len, int huge)
{
    size_t span = huge ? 2 * len : len;
    char *p = mmap(NULL, span, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (!huge)
        return p;
    char *a = (char *)(((uintptr_t)p + len - 1) & ~(uintptr_t)(len - 1));
    if (a > p)
        munmap(p, (size_t)(a - p));
    if (p + span > a + len)
        munmap(a + len, (size_t)(p + span - (a + len)));
#ifdef MADV_HUGEPAGE
    madvise(a, len, MADV_HUGEPAGE); /* a hint: normal pages otherwise */
#endif
    return a;
}

static void *arena_alloc(size_t n, unsigned char *cls)
{
    size_t c = (n + 15) / 16 - 1;
    if (c >= ARENA_CLASSES) {
        *cls = ARENA_MALLOC;
        return malloc(n);
    }
    *cls = (unsigned char)c;
    void *p = arena_free_list[c];
    if (p) {
        arena_free_list[c] = *(void **)p;
        return p;
    }
    size_t sz = (c + 1) * 16;
    if ((size_t)(arena_end - arena_cur) < sz) {
        int huge = arena_mapped >= ARENA_SMALL_LIMIT;
        size_t len = huge ? ARENA_HUGE_CHUNK : ARENA_SMALL_CHUNK;
        char *ch = chunk_map(len, huge);
        if (!ch && huge) /* no room for 4 MiB of address space: go small */
            ch = chunk_map(len = ARENA_SMALL_CHUNK, 0);
        if (!ch)
            return NULL;
        arena_cur = ch;
        arena_end = ch + len;
        arena_mapped += len;
    }
    p = arena_cur;
    arena_cur += sz;
    return p;
}

static void arena_free(void *p, unsigned char cls)
{
    if (cls == ARENA_MALLOC) {
        free(p);
        return;
    }
    *(void **)p = arena_free_list[cls];
    arena_free_list[cls] = p;
}

/* Caller holds the registry lock. */
static void free_entry(struct forksafe_entry *e)
{
    arena_free(e->kind == FS_KIND_OPS ? (void *)forksafe__entry_ops(e)
                                      : (void *)e,
               e->cls);
}

/* The object that contains addr, or lm == NULL if none. */
static struct owner object_at(const void *addr)
{
    struct owner o = {0, NULL, addr};
#ifdef __GLIBC__
    Dl_info info;
    struct link_map *lm = NULL;
    if (addr && dladdr1(addr, &info, (void **)&lm, RTLD_DL_LINKMAP) && lm) {
        o.base = (uintptr_t)lm->l_addr;
        o.lm = lm;
    }
#else
    /* No dladdr1() to name the link map: the load address is the object's
       identity (an object unloaded and another loaded at the same address
       between two sweeps looks the same; the __cxa_finalize hook covers
       that where it is in effect). */
    uintptr_t base = addr ? forksafe__platform()->object_base(addr) : 0;
    if (base) {
        o.base = base;
        o.lm = (const void *)base;
    }
#endif
    return o;
}

/* The owner index for object o (lm NULL: OWNER_UNKNOWN), adding it if new
   (reusing the slot of an unloaded one). Caller holds the registry lock.
   Returns ENOMEM (table unchanged) or 0; may_grow 0 returns ENOMEM instead
   of allocating. */
static int owner_index(struct owner o, uint16_t *idx, int may_grow)
{
    *idx = OWNER_UNKNOWN;
    if (!o.lm)
        return 0;
    size_t free_slot = n_owners;
    for (size_t i = 0; i < n_owners; i++) {
        if (owners[i].lm == o.lm && owners[i].base == o.base) {
            *idx = (uint16_t)i;
            return 0;
        }
        if (!owners[i].lm && free_slot == n_owners)
            free_slot = i;
    }
    if (free_slot == n_owners) {
        if (n_owners >= OWNER_UNKNOWN)
            return 0;
        if (n_owners == owners_cap) {
            size_t cap = owners_cap ? owners_cap * 2 : 16;
            if (!may_grow || grow(&owners, cap, sizeof *owners))
                return ENOMEM;
            owners_cap = cap;
        }
        n_owners++;
    }
    owners[free_slot] = o;
    *idx = (uint16_t)free_slot;
    return 0;
}

/* Record why a registry call failed, for forksafe_last_error(), and return
   err. fn is the public function's name. */
static int refuse(int err, const char *fn, const char *why)
{
    forksafe__set_error("%s: %s", fn, why);
    return err;
}

static int refuse_in_fork(const char *fn)
{
    return refuse(EDEADLK, fn,
                  "called from a forksafe callback on the forking thread");
}

/* EEXIST: name the entry that holds key. Caller holds the registry lock. */
static int refuse_taken(const char *fn, const struct forksafe_entry *e)
{
    forksafe__set_error("%s: key %p is already registered (%s \"%s\", rank "
                        "%u)",
                        fn, e->key, forksafe__kinds[e->kind].name, e->name,
                        e->rank);
    return EEXIST;
}

int forksafe__add(const char *fn, const void *key, const char *name,
                  unsigned rank, int kind, const struct forksafe_ops *ops,
                  const void *caller)
{
    FORKSAFE_FORWARD(add(fn, key, name, rank, kind, ops, caller));
    if (forksafe__peer_refused)
        return forksafe__peer_refuse(fn);
    if (!key)
        return refuse(EINVAL, fn,
                      kind == FS_KIND_OPS ? "ctx is NULL" : "the lock is NULL");
    if (!name)
        return refuse(EINVAL, fn, "name is NULL");
    if (forksafe__in_fork())
        return refuse_in_fork(fn);
    /* A key registered already is refused before its memory is read as
       the kind given now (it may be another kind, and smaller), and what
       is read from the lock is read under the registry lock, so that no
       registration of the key as another kind can come in between. */
    forksafe__registry_lock();
    struct forksafe_entry *taken = find(key);
    int busy = taken ? refuse_taken(fn, taken) : 0;
    unsigned char single = 0, pshared = 0, slot = 0;
    if (!busy) {
        single = (unsigned char)(forksafe__kinds[kind].single(key) != 0);
        pshared = (unsigned char)(forksafe__lock_pshared(kind, key) != 0);
        slot = forksafe__lock_slot_kind(kind, key);
    }
    forksafe__registry_unlock();
    if (busy)
        return busy;
    /* What can be learnt about the key is learnt before the registry is
       touched again; everything that can fail under its lock leaves it as
       it was. */
    size_t len = strlen(name);
    size_t pre = ops ? sizeof *ops : 0;
    if (ops) {
        const void *code = ops->prepare ? (const void *)ops->prepare
                           : ops->child ? (const void *)ops->child
                                        : (const void *)ops->parent;
        if (code)
            caller = code;
    }
    /* A process-shared lock in MAP_SHARED memory is one lock in parent and
       child after fork(): there is nothing to copy consistently, and
       rewriting it in the child would break the parent's hold. (/proc is
       read without the registry lock: forks need not wait for it.) */
    unsigned char shared =
        (unsigned char)(pshared && forksafe__in_shared_mapping(key));
    /* Two objects can take an entry with them when they are unloaded: the
       one that registered it (for a callback set, the one holding its
       code), and the one whose memory holds the key (a static lock, or a
       ctx in a plugin's data). The second does not depend on the return
       address, which a tail call (gcc -O2) makes the caller's caller. */
    struct owner by = object_at(caller), home = object_at(key);
    struct rank_bucket *nb = malloc(sizeof *nb);

    forksafe__registry_lock();
    struct forksafe_entry *old = find(key), *e = NULL;
    int err = old ? refuse_taken(fn, old) : !nb ? ENOMEM : 0;
    if (!err)
        err = reserve_table(count + 1);
    if (!err)
        err = reserve_slots(count + 1);
    uint16_t by_idx = OWNER_UNKNOWN, home_idx = OWNER_UNKNOWN;
    if (!err)
        err = owner_index(by, &by_idx, 1);
    if (!err)
        err = owner_index(home, &home_idx, 1);
    unsigned char cls = 0;
    char *block = NULL;
    if (!err) {
        block = arena_alloc(
            pre + offsetof(struct forksafe_entry, name) + len + 1, &cls);
        if (!block)
            err = ENOMEM;
    }
    if (!err) {
        e = (struct forksafe_entry *)(void *)(block + pre);
        if (ops)
            memcpy(block, ops, sizeof *ops);
        memcpy(e->name, name, len + 1);
        e->key = key;
        e->rank = rank;
        e->kind = (unsigned char)kind;
        e->single = single;
        e->shared = shared;
        e->slot = slot;
        e->cls = cls;
        e->owner = by_idx;
        e->home = home_idx;
        e->seq = next_seq++;
        link_entry(e, &nb);
    }
    forksafe__registry_unlock();
    free(nb); /* unused when the rank already had a bucket */
    if (err == ENOMEM)
        refuse(err, fn, "out of memory");
    return err;
}

/* The return address is taken here, in each exported function, so that the
   owner is the object that called forksafe (not libforksafe itself). */
#define CALLER() __builtin_extract_return_addr(__builtin_return_address(0))

int forksafe_register_mutex(pthread_mutex_t *m, const char *name, unsigned rank)
{
    return forksafe__add(__func__, m, name, rank, FS_KIND_MUTEX, NULL,
                         CALLER());
}

int forksafe_register_rwlock(pthread_rwlock_t *l, const char *name,
                             unsigned rank)
{
    return forksafe__add(__func__, l, name, rank, FS_KIND_RWLOCK, NULL,
                         CALLER());
}

int forksafe_register_spinlock(pthread_spinlock_t *l, const char *name,
                               unsigned rank)
{
    return forksafe__add(__func__, (const void *)l, name, rank,
                         FS_KIND_SPINLOCK, NULL, CALLER());
}

int forksafe_register_ops(void *ctx, const char *name, unsigned rank,
                          const struct forksafe_ops *ops)
{
    if (!ops && !forksafe__peer)
        return refuse(EINVAL, __func__, "ops is NULL");
    return forksafe__add(__func__, ctx, name, rank, FS_KIND_OPS, ops, CALLER());
}

/* ENOENT for key, from fn. */
static int refuse_unknown(const char *fn, const void *key)
{
    forksafe__set_error("%s: key %p is not registered", fn, key);
    return ENOENT;
}

int forksafe_unregister(const void *key)
{
    FORKSAFE_FORWARD(unregister(key));
    if (!key)
        return refuse(EINVAL, __func__, "key is NULL");
    if (forksafe__in_fork())
        return refuse_in_fork(__func__);
    forksafe__registry_lock();
    struct forksafe_entry *e = find(key);
    if (e) {
        unlink_entry(e);
        free_entry(e);
    }
    forksafe__registry_unlock();
    if (!e)
        return refuse_unknown(__func__, key);
    return 0;
}

int forksafe_lookup(const void *key, struct forksafe_info *info)
{
    FORKSAFE_FORWARD(lookup(key, info));
    if (!key)
        return refuse(EINVAL, __func__, "key is NULL");
    /* From a callback on the forking thread the registry lock is already
       held by this thread, and nothing else can change the registry. */
    int locked = !forksafe__in_fork();
    if (locked)
        forksafe__registry_lock();
    struct forksafe_entry *e = find(key);
    if (e && info) {
        info->name = e->name;
        info->kind = forksafe__kinds[e->kind].name;
        info->rank = e->rank;
        info->seq = e->seq;
    }
    if (locked)
        forksafe__registry_unlock();
    return e ? 0 : refuse_unknown(__func__, key);
}

/* ------------------------------------------------------------ adapters */

int forksafe_register_adapter(const char *name)
{
    FORKSAFE_FORWARD(register_adapter(name));
    if (forksafe__peer_refused)
        return forksafe__peer_refuse(__func__);
    if (!name || !*name)
        return refuse(EINVAL, __func__, "name is NULL or empty");
    if (forksafe__in_fork())
        return refuse_in_fork(__func__);
    int err = 0;
    forksafe__registry_lock();
    size_t i;
    for (i = 0; i < n_adapters; i++)
        if (strcmp(adapters[i], name) == 0)
            break;
    if (i == n_adapters) {
        /* malloc, not strdup: fault injection wraps malloc. */
        size_t len = strlen(name) + 1;
        char *copy = malloc(len);
        if (copy)
            memcpy(copy, name, len);
        char **grown =
            copy ? realloc(adapters, (n_adapters + 1) * sizeof *grown) : NULL;
        if (grown) {
            adapters = grown;
            adapters[n_adapters++] = copy;
        } else {
            free(copy);
            err = ENOMEM;
        }
    }
    forksafe__registry_unlock();
    return err ? refuse(err, __func__, "out of memory") : 0;
}

int forksafe_adapter_installed(const char *name)
{
    FORKSAFE_FORWARD(adapter_installed(name));
    if (!name)
        return 0;
    int found = 0;
    int locked = !forksafe__in_fork();
    if (locked)
        forksafe__registry_lock();
    for (size_t i = 0; i < n_adapters && !found; i++)
        found = strcmp(adapters[i], name) == 0;
    if (locked)
        forksafe__registry_unlock();
    return found;
}

const char *forksafe__adapter_name(size_t i)
{
    return i < n_adapters ? adapters[i] : NULL;
}

/* ------------------------------------------------------------ unloading */

/* Remove every entry that object idx registered or that lives in its
   memory, and the raw handlers it registered; forget the object. Caller
   holds the registry lock. */
static void drop_owner(size_t idx)
{
    for (struct forksafe_entry *e = head, *nx; e; e = nx) {
        nx = e->next;
        if (e->owner == idx || e->home == idx) {
            unlink_entry(e);
            free_entry(e);
        }
    }
    size_t k = 0;
    for (size_t r = 0; r < n_raws; r++)
        if (raws[r].owner != idx)
            raws[k++] = raws[r];
    if (k != n_raws) {
        n_raws = k;
        generation++;
    }
    owners[idx].lm = NULL;
}

/* Whether owner o is still loaded: the object at its address is the same
   link map. glibc 2.35's _dl_find_object() takes no lock and writes
   nothing (it is meant for unwinders), so this costs nothing on the fork
   path: no fault on the dynamic linker's data. */
static int still_loaded(const struct owner *o)
{
#if defined(__GLIBC__) && defined(DLFO_STRUCT_HAS_EH_DBASE)
    struct dl_find_object r;
    return _dl_find_object((void *)(uintptr_t)o->rep, &r) == 0 &&
           r.dlfo_link_map == o->lm;
#elif defined(__GLIBC__)
    Dl_info info;
    void *lm = NULL;
    return dladdr1(o->rep, &info, &lm, RTLD_DL_LINKMAP) && lm == o->lm;
#else
    return forksafe__platform()->object_base(o->rep) == o->base;
#endif
}

/* Every fork and report checks that each owner object is still there:
   where our __cxa_finalize is not the one unloading objects call
   (libforksafe linked statically, or loaded RTLD_LOCAL after them) this
   is what notices an unload. It cannot see an object unloaded and another
   loaded with a link map at the same address between two checks; the
   __cxa_finalize hook covers that where it is in effect. */
void forksafe__registry_sweep(void)
{
    for (size_t i = 0; i < n_owners; i++)
        if (owners[i].lm && !still_loaded(&owners[i]))
            drop_owner(i);
}

int forksafe__registry_capture_atfork(const struct forksafe_raw *h,
                                      const void *dso, int inner)
{
    const void *code = h->prepare ? (const void *)h->prepare
                       : h->child ? (const void *)h->child
                                  : (const void *)h->parent;
    struct owner o = object_at(code);
    if (!o.lm)
        o = object_at(dso);
    forksafe__registry_lock();
    uint16_t idx;
    int err = !raws || n_raws == RAW_MAX ? ENOSPC : owner_index(o, &idx, 0);
    if (!err) {
        raws[n_raws].h = *h;
        raws[n_raws].dso = dso;
        raws[n_raws].owner = idx;
        raws[n_raws].inner = (unsigned char)(inner != 0);
        n_raws++;
        generation++;
    }
    forksafe__registry_unlock();
    return err;
}

#ifdef FORKSAFE_SHARED
/* glibc's crtbeginS.o makes every shared object call __cxa_finalize with its
   own __dso_handle when it is unloaded (stdlib/cxa_finalize.c), which is
   also where glibc drops that object's pthread_atfork handlers. Interposing
   it gives the same exact hook: the object's entries, and the raw handlers
   captured from it, are removed before its memory is unmapped. The real
   function is then called as usual. Only the shared library has it: the
   static archive must not export it from the program that links it. */
typedef void (*cxa_finalize_fn)(void *);
static cxa_finalize_fn real_cxa_finalize;

__attribute__((visibility("default"))) void __cxa_finalize(void *d);
void __cxa_finalize(void *d)
{
    if (!real_cxa_finalize)
        real_cxa_finalize = (cxa_finalize_fn)dlsym(RTLD_NEXT, "__cxa_finalize");
    const struct forksafe_peer_api *p =
        __atomic_load_n(&forksafe__peer, __ATOMIC_ACQUIRE);
    if (p)
        p->object_unloaded(d);
    else
        forksafe__object_unloaded(d);
    if (real_cxa_finalize)
        real_cxa_finalize(d);
}
#endif

void forksafe__object_unloaded(void *d)
{
    if (!d || forksafe__in_fork())
        return;
    struct owner o = object_at(d);
    forksafe__registry_lock();
    size_t k = 0;
    for (size_t r = 0; r < n_raws; r++)
        if (raws[r].dso != d)
            raws[k++] = raws[r];
    if (k != n_raws) {
        n_raws = k;
        generation++;
    }
    for (size_t i = 0; i < n_owners && o.lm; i++)
        if (owners[i].lm == o.lm)
            drop_owner(i);
    forksafe__registry_unlock();
}

/* ------------------------------------------------------------ names */

struct name_query {
    uintptr_t base;
    char *buf;
    size_t len;
    int found;
};

static int name_of(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct name_query *q = arg;
    if ((uintptr_t)info->dlpi_addr != q->base)
        return 0;
    q->found = 1;
    if (info->dlpi_name && *info->dlpi_name) {
        snprintf(q->buf, q->len, "%s", info->dlpi_name);
    } else {
        /* The main program has no name in the link map. */
        ssize_t n = readlink("/proc/self/exe", q->buf, q->len - 1);
        q->buf[n > 0 ? n : 0] = '\0';
    }
    return 1;
}

void forksafe__entry_object(const struct forksafe_entry *e, char *buf,
                            size_t len)
{
    struct name_query q = {0, buf, len, 0};
    if (e->owner < n_owners && owners[e->owner].lm) {
        q.base = owners[e->owner].base;
        dl_iterate_phdr(name_of, &q);
    }
    if (!q.found)
        snprintf(buf, len, "?");
}
