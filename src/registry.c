/*
 * registry.c: the set of registered locks and callback sets, keyed by lock
 * address or callback context, kept in fork order (ascending rank, then
 * registration order).
 *
 * DESIGN. Three views of the same entries, so every operation is cheap:
 * a hash table by key (register's EEXIST check, unregister, lookup: O(1)),
 * a treap ordered by (rank, seq) (finding where a new entry goes: expected
 * O(log n)), and a doubly linked list in that same order, which is all the
 * fork handlers walk (no allocation, no recursion, O(1) per step, forwards
 * for prepare and backwards for parent and child). Each entry is a single
 * allocation with its name inline. The registry lock is also the fork lock:
 * prepare takes it and the parent or child handler releases it, so registry
 * changes from other threads wait for a fork to finish.
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

static struct forksafe_entry **table; /* hash buckets, power of two */
static size_t table_mask;             /* buckets - 1, or 0 when no table */
static size_t count;

static struct forksafe_entry *root;   /* treap */
static struct forksafe_entry *head, *tail; /* fork order */
static unsigned long next_seq = 1;
static uint32_t prio_state = 2463534242u;

static char **adapters;
static size_t n_adapters;

static unsigned long long seen_subs;  /* dlpi_subs at the last sweep */

/* ------------------------------------------------------------ locking */

void forksafe__registry_lock(void)
{
    pthread_mutex_lock(&reg_lock);
}

int forksafe__registry_lock_until(const struct timespec *deadline)
{
    return pthread_mutex_clocklock(&reg_lock, CLOCK_MONOTONIC, deadline);
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

struct forksafe_entry *forksafe__registry_last(void)
{
    return tail;
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

static struct forksafe_entry **bucket_of(const void *key)
{
    return &table[hash_key(key) & table_mask];
}

static struct forksafe_entry *find(const void *key)
{
    if (!table)
        return NULL;
    for (struct forksafe_entry *e = *bucket_of(key); e; e = e->hnext)
        if (e->key == key)
            return e;
    return NULL;
}

/* Grow the table to keep chains short. A failed allocation is not an error:
   the old table keeps working, just with longer chains. */
static void maybe_grow(void)
{
    size_t n = table ? table_mask + 1 : 0;
    if (count < n)
        return;
    size_t nn = n ? n * 2 : 64;
    struct forksafe_entry **t = calloc(nn, sizeof *t);
    if (!t)
        return;
    for (size_t i = 0; i < n; i++) {
        struct forksafe_entry *e = table[i], *nx;
        for (; e; e = nx) {
            nx = e->hnext;
            size_t b = hash_key(e->key) & (nn - 1);
            e->hnext = t[b];
            t[b] = e;
        }
    }
    free(table);
    table = t;
    table_mask = nn - 1;
}

static void hash_remove(struct forksafe_entry *e)
{
    struct forksafe_entry **p = bucket_of(e->key);
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
}

/* ------------------------------------------------------------ treap */

static int before(const struct forksafe_entry *a, const struct forksafe_entry *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->seq < b->seq);
}

static struct forksafe_entry *rotate_right(struct forksafe_entry *t)
{
    struct forksafe_entry *l = t->left;
    t->left = l->right;
    l->right = t;
    return l;
}

static struct forksafe_entry *rotate_left(struct forksafe_entry *t)
{
    struct forksafe_entry *r = t->right;
    t->right = r->left;
    r->left = t;
    return r;
}

/* Insert e below t; *pred receives the greatest entry ordered before e. */
static struct forksafe_entry *treap_insert(struct forksafe_entry *t,
                                           struct forksafe_entry *e,
                                           struct forksafe_entry **pred)
{
    if (!t)
        return e;
    if (before(e, t)) {
        t->left = treap_insert(t->left, e, pred);
        if (t->left->prio > t->prio)
            t = rotate_right(t);
    } else {
        *pred = t;
        t->right = treap_insert(t->right, e, pred);
        if (t->right->prio > t->prio)
            t = rotate_left(t);
    }
    return t;
}

static struct forksafe_entry *treap_remove(struct forksafe_entry *t,
                                           struct forksafe_entry *e)
{
    FORKSAFE_ASSERT(t != NULL);
    if (t == e) {
        if (!t->left)
            return t->right;
        if (!t->right)
            return t->left;
        if (t->left->prio > t->right->prio) {
            t = rotate_right(t);
            t->right = treap_remove(t->right, e);
        } else {
            t = rotate_left(t);
            t->left = treap_remove(t->left, e);
        }
    } else if (before(e, t)) {
        t->left = treap_remove(t->left, e);
    } else {
        t->right = treap_remove(t->right, e);
    }
    return t;
}

static uint32_t next_prio(void)
{
    uint32_t x = prio_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return prio_state = x;
}

/* ------------------------------------------------------------ entries */

static void link_entry(struct forksafe_entry *e)
{
    struct forksafe_entry *pred = NULL;
    e->prio = next_prio();
    root = treap_insert(root, e, &pred);
    e->prev = pred;
    e->next = pred ? pred->next : head;
    if (e->next)
        e->next->prev = e;
    else
        tail = e;
    if (pred)
        pred->next = e;
    else
        head = e;
    struct forksafe_entry **b = bucket_of(e->key);
    e->hnext = *b;
    *b = e;
    count++;
}

static void unlink_entry(struct forksafe_entry *e)
{
    hash_remove(e);
    root = treap_remove(root, e);
    if (e->prev)
        e->prev->next = e->next;
    else
        head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        tail = e->prev;
    count--;
}

/* The load address of the object that contains addr, or 0 if unknown.
   This is the same value as dl_iterate_phdr's dlpi_addr. */
static uintptr_t object_of(const void *addr)
{
    Dl_info info;
    struct link_map *lm = NULL;
    if (addr && dladdr1(addr, &info, (void **)&lm, RTLD_DL_LINKMAP) && lm)
        return (uintptr_t)lm->l_addr;
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
    size_t len = strlen(name);
    struct forksafe_entry *e = malloc(sizeof *e + len + 1);
    if (!e)
        return ENOMEM;
    memset(e, 0, sizeof *e);
    memcpy(e->name, name, len + 1);
    e->key = key;
    e->rank = rank;
    e->kind = (unsigned char)kind;
    if (ops) {
        e->ops = *ops;
        const void *code = ops->prepare ? (const void *)ops->prepare
                         : ops->child   ? (const void *)ops->child
                         : (const void *)ops->parent;
        if (code)
            caller = code;
    }
    e->owner = object_of(caller);

    forksafe__registry_lock();
    if (!table)
        maybe_grow();
    if (!table || find(key)) {
        int err = table ? EEXIST : ENOMEM;
        forksafe__registry_unlock();
        free(e);
        return err;
    }
    e->seq = next_seq++;
    link_entry(e);
    maybe_grow();
    forksafe__registry_unlock();
    return 0;
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
    free(e);
    return 0;
}

int forksafe_lookup(const void *key, struct forksafe_info *info)
{
    if (!key)
        return EINVAL;
    if (forksafe__in_fork()) {
        /* The forking thread already holds the registry lock; reading is
           safe because nothing else can change it now. */
        struct forksafe_entry *e = find(key);
        if (!e)
            return ENOENT;
        if (info) {
            info->name = e->name;
            info->kind = forksafe__kinds[e->kind].name;
            info->rank = e->rank;
            info->seq = e->seq;
        }
        return 0;
    }
    forksafe__registry_lock();
    struct forksafe_entry *e = find(key);
    if (e && info) {
        info->name = e->name;
        info->kind = forksafe__kinds[e->kind].name;
        info->rank = e->rank;
        info->seq = e->seq;
    }
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
        char **grown = copy ? realloc(adapters, (n_adapters + 1) * sizeof *grown)
                            : NULL;
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

/* Remove every entry owned by the object loaded at base. Caller holds the
   registry lock. */
static void drop_owner(uintptr_t base)
{
    struct forksafe_entry *e = head, *nx;
    for (; e; e = nx) {
        nx = e->next;
        if (e->owner == base) {
            unlink_entry(e);
            free(e);
        }
    }
}

static int read_subs(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    *(unsigned long long *)arg = info->dlpi_subs;
    return 1; /* the counters are the same for every object: stop */
}

struct loaded_check {
    uintptr_t base;
    int found;
};

static int is_base(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct loaded_check *c = arg;
    if ((uintptr_t)info->dlpi_addr == c->base) {
        c->found = 1;
        return 1;
    }
    return 0;
}

/* The fallback for programs where our __cxa_finalize is not the one that
   unloading objects call (libforksafe linked statically, or dlopen'ed
   RTLD_LOCAL): dlpi_subs counts unloads, so the walk below runs only after
   some object was unloaded, and drops entries whose object is gone. It
   cannot see an object unloaded and reloaded at the same address between
   two checks; the __cxa_finalize hook below covers that case. */
void forksafe__registry_sweep(void)
{
    unsigned long long subs = 0;
    dl_iterate_phdr(read_subs, &subs);
    if (subs == seen_subs)
        return;
    seen_subs = subs;
    for (struct forksafe_entry *e = head, *nx; e; e = nx) {
        nx = e->next;
        if (e->owner == 0)
            continue;
        struct loaded_check c = {e->owner, 0};
        dl_iterate_phdr(is_base, &c);
        if (!c.found)
            drop_owner(e->owner), nx = head; /* restart: nx may be freed */
    }
}

/* glibc's crtbeginS.o makes every shared object call __cxa_finalize with its
   own __dso_handle when it is unloaded (stdlib/cxa_finalize.c), which is
   also where glibc drops that object's pthread_atfork handlers. Interposing
   it gives us the same exact hook: the object's entries are removed before
   its memory is unmapped. The real function is then called as usual. */
typedef void (*cxa_finalize_fn)(void *);
static cxa_finalize_fn real_cxa_finalize;

__attribute__((visibility("default"))) void __cxa_finalize(void *d);
void __cxa_finalize(void *d)
{
    if (!real_cxa_finalize)
        real_cxa_finalize = (cxa_finalize_fn)dlsym(RTLD_NEXT, "__cxa_finalize");
    if (d && !forksafe__in_fork()) {
        uintptr_t base = object_of(d);
        if (base) {
            forksafe__registry_lock();
            drop_owner(base);
            forksafe__registry_unlock();
        }
    }
    if (real_cxa_finalize)
        real_cxa_finalize(d);
}

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

void forksafe__object_name(uintptr_t base, char *buf, size_t len)
{
    struct name_query q = {base, buf, len, 0};
    dl_iterate_phdr(name_of, &q);
    if (!q.found)
        snprintf(buf, len, "?");
}
