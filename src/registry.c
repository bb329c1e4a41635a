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
 * or child handler releases it, so registry changes wait for a fork.
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
#include <unistd.h>

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

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

/* The objects that registered entries, by load address; entries hold an
   index. Objects are few, so a linear search is fine. */
#define OWNER_UNKNOWN UINT16_MAX
static uintptr_t *owners;
static size_t n_owners, owners_cap;

/* The fork handlers' view (see forksafe__registry_snapshot). Capacity is
   reserved at registration so that rebuilding it never allocates. */
static const void **slot_key;
static unsigned char *slot_kind;
static uint32_t *single_idx;
static struct forksafe_exception *exceptions;
static size_t slot_cap, n_slots, n_single;
static unsigned long generation = 1, slots_generation;

static char **adapters;
static size_t n_adapters;

static unsigned long long seen_subs; /* dlpi_subs at the last sweep */

/* ------------------------------------------------------------ locking */

void forksafe__registry_lock(void)
{
    pthread_mutex_lock(&reg_lock);
}

int forksafe__registry_lock_until(const struct timespec *deadline)
{
    return forksafe__platform()->mutex_lock_until(&reg_lock, deadline);
}

void forksafe__registry_unlock(void)
{
    pthread_mutex_unlock(&reg_lock);
}

void forksafe__registry_child_reset(void)
{
    /* A normal mutex: unlock has no owner check, so this is valid in the
       child even though the parent's TID is recorded in it. */
    pthread_mutex_unlock(&reg_lock);
}

struct forksafe_entry *forksafe__registry_first(void)
{
    return head;
}

/* ------------------------------------------------------------ snapshot */

/* Grow *p to cap elements of size sz; on failure *p is left as it was. */
static int grow(void *p, size_t cap, size_t sz)
{
    void *n = realloc(*(void **)p, cap * sz);
    if (!n)
        return ENOMEM;
    *(void **)p = n;
    return 0;
}

/* Make room for `need` slots. The arrays are grown one after the other; a
   failure leaves all of them valid, with at least the old capacity. */
static int reserve_slots(size_t need)
{
    if (need <= slot_cap)
        return 0;
    size_t cap = slot_cap ? slot_cap * 2 : 64;
    while (cap < need)
        cap *= 2;
    if (grow(&slot_key, cap, sizeof *slot_key) ||
        grow(&slot_kind, cap, sizeof *slot_kind) ||
        grow(&single_idx, cap, sizeof *single_idx) ||
        grow(&exceptions, cap, sizeof *exceptions))
        return ENOMEM;
    slot_cap = cap;
    return 0;
}

void forksafe__registry_snapshot(struct forksafe_snapshot *snap)
{
    if (slots_generation != generation) {
        size_t i = 0, k = 0;
        for (struct forksafe_entry *e = head; e; e = e->next, i++) {
            FORKSAFE_ASSERT(i < slot_cap);
            slot_key[i] = e->key;
            slot_kind[i] = e->kind;
            if (e->single)
                single_idx[k++] = (uint32_t)i;
        }
        n_slots = i;
        n_single = k;
        slots_generation = generation;
    }
    snap->key = slot_key;
    snap->kind = slot_kind;
    snap->single = single_idx;
    snap->exc = exceptions;
    snap->n = n_slots;
    snap->n_single = n_single;
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

static void free_entry(struct forksafe_entry *e)
{
    free(e->kind == FS_KIND_OPS ? (void *)forksafe__entry_ops(e) : (void *)e);
}

/* The load address of the object that contains addr, or 0 if unknown.
   This is the same value as dl_iterate_phdr's dlpi_addr. */
static uintptr_t object_of(const void *addr)
{
    return forksafe__platform()->object_base(addr);
}

/* The owner index for base, adding it if new. Caller holds the registry
   lock. Returns ENOMEM (table unchanged) or 0. */
static int owner_index(uintptr_t base, uint16_t *idx)
{
    for (size_t i = 0; i < n_owners; i++) {
        if (owners[i] == base) {
            *idx = (uint16_t)i;
            return 0;
        }
    }
    if (n_owners >= OWNER_UNKNOWN) {
        *idx = OWNER_UNKNOWN;
        return 0;
    }
    if (n_owners == owners_cap) {
        size_t cap = owners_cap ? owners_cap * 2 : 16;
        if (grow(&owners, cap, sizeof *owners))
            return ENOMEM;
        owners_cap = cap;
    }
    owners[n_owners] = base;
    *idx = (uint16_t)n_owners++;
    return 0;
}

static int add(const void *key, const char *name, unsigned rank,
               enum forksafe_kind kind, const struct forksafe_ops *ops,
               const void *caller)
{
    if (!key || !name)
        return EINVAL;
    if (forksafe__in_fork())
        return EDEADLK;
    /* Everything that can fail is done before the registry is touched. */
    size_t len = strlen(name);
    size_t pre = ops ? sizeof *ops : 0;
    char *block = malloc(pre + offsetof(struct forksafe_entry, name) + len + 1);
    if (!block)
        return ENOMEM;
    struct forksafe_entry *e = (struct forksafe_entry *)(void *)(block + pre);
    memcpy(e->name, name, len + 1);
    e->key = key;
    e->rank = rank;
    e->kind = (unsigned char)kind;
    if (ops) {
        memcpy(block, ops, sizeof *ops);
        const void *code = ops->prepare ? (const void *)ops->prepare
                           : ops->child ? (const void *)ops->child
                                        : (const void *)ops->parent;
        if (code)
            caller = code;
    }
    e->single = (unsigned char)(forksafe__kinds[kind].single(key) != 0);
    uintptr_t base = object_of(caller);
    struct rank_bucket *nb = malloc(sizeof *nb);

    forksafe__registry_lock();
    int err = !nb ? ENOMEM : find(key) ? EEXIST : 0;
    if (!err)
        err = reserve_table(count + 1);
    if (!err)
        err = reserve_slots(count + 1);
    if (!err)
        err = owner_index(base, &e->owner);
    if (!err) {
        e->seq = next_seq++;
        link_entry(e, &nb);
    }
    forksafe__registry_unlock();
    free(nb); /* unused when the rank already had a bucket */
    if (err)
        free(block);
    return err;
}

/* The return address is taken here, in each exported function, so that the
   owner is the object that called forksafe (not libforksafe itself). */
#define CALLER() __builtin_extract_return_addr(__builtin_return_address(0))

int forksafe_register_mutex(pthread_mutex_t *m, const char *name, unsigned rank)
{
    return add(m, name, rank, FS_KIND_MUTEX, NULL, CALLER());
}

int forksafe_register_rwlock(pthread_rwlock_t *l, const char *name,
                             unsigned rank)
{
    return add(l, name, rank, FS_KIND_RWLOCK, NULL, CALLER());
}

int forksafe_register_spinlock(pthread_spinlock_t *l, const char *name,
                               unsigned rank)
{
    return add((const void *)l, name, rank, FS_KIND_SPINLOCK, NULL, CALLER());
}

int forksafe_register_ops(void *ctx, const char *name, unsigned rank,
                          const struct forksafe_ops *ops)
{
    if (!ops)
        return EINVAL;
    return add(ctx, name, rank, FS_KIND_OPS, ops, CALLER());
}

int forksafe_unregister(const void *key)
{
    if (!key)
        return EINVAL;
    if (forksafe__in_fork())
        return EDEADLK;
    forksafe__registry_lock();
    struct forksafe_entry *e = find(key);
    if (e)
        unlink_entry(e);
    forksafe__registry_unlock();
    if (!e)
        return ENOENT;
    free_entry(e);
    return 0;
}

int forksafe_lookup(const void *key, struct forksafe_info *info)
{
    if (!key)
        return EINVAL;
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
    return e ? 0 : ENOENT;
}

/* ------------------------------------------------------------ adapters */

int forksafe_register_adapter(const char *name)
{
    if (!name || !*name)
        return EINVAL;
    if (forksafe__in_fork())
        return EDEADLK;
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
    return err;
}

int forksafe_adapter_installed(const char *name)
{
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

/* Remove every entry owned by owner index idx. Caller holds the registry
   lock. */
static void drop_owner(size_t idx)
{
    for (struct forksafe_entry *e = head, *nx; e; e = nx) {
        nx = e->next;
        if (e->owner == idx) {
            unlink_entry(e);
            free_entry(e);
        }
    }
}

static int read_subs(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    *(unsigned long long *)arg = info->dlpi_subs;
    return 1; /* the counters are the same for every object: stop */
}

static int is_base(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    return (uintptr_t)info->dlpi_addr == *(uintptr_t *)arg;
}

/* The fallback for programs where our __cxa_finalize is not the one that
   unloading objects call (libforksafe linked statically, or loaded with
   RTLD_LOCAL after them): dlpi_subs counts unloads, so the walk below runs
   only after some object was unloaded, and drops the entries of owners
   that are gone. It cannot see an object unloaded and reloaded at the same
   address between two checks; the __cxa_finalize hook covers that. */
void forksafe__registry_sweep(void)
{
    unsigned long long subs = 0;
    dl_iterate_phdr(read_subs, &subs);
    if (subs == seen_subs)
        return;
    seen_subs = subs;
    for (size_t i = 0; i < n_owners; i++) {
        uintptr_t base = owners[i];
        if (base != 0 && !dl_iterate_phdr(is_base, &base))
            drop_owner(i);
    }
}

/* glibc's crtbeginS.o makes every shared object call __cxa_finalize with its
   own __dso_handle when it is unloaded (stdlib/cxa_finalize.c), which is
   also where glibc drops that object's pthread_atfork handlers. Interposing
   it gives the same exact hook: the object's entries are removed before its
   memory is unmapped. The real function is then called as usual. */
typedef void (*cxa_finalize_fn)(void *);
static cxa_finalize_fn real_cxa_finalize;

__attribute__((visibility("default"))) void __cxa_finalize(void *d);
void __cxa_finalize(void *d)
{
    if (!real_cxa_finalize)
        real_cxa_finalize = (cxa_finalize_fn)dlsym(RTLD_NEXT, "__cxa_finalize");
    if (d && !forksafe__in_fork()) {
        uintptr_t base = object_of(d);
        forksafe__registry_lock();
        for (size_t i = 0; i < n_owners; i++)
            if (owners[i] == base && base != 0)
                drop_owner(i);
        forksafe__registry_unlock();
    }
    if (real_cxa_finalize)
        real_cxa_finalize(d);
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
    if (e->owner < n_owners) {
        q.base = owners[e->owner];
        dl_iterate_phdr(name_of, &q);
    }
    if (!q.found)
        snprintf(buf, len, "?");
}
