/* SPDX-License-Identifier: MIT */
/* target-release.c: locks whose memory goes away while a thread still
   counts as their holder, then a fork. The interposer must not touch that
   memory at the fork (before it did, and the program died of SIGSEGV).
   argv[1] picks how the memory goes: sem_close (a named semaphore taken
   and closed), munmap (an unnamed semaphore in a page that is unmapped),
   mremap (the page is moved elsewhere), free (a semaphore in a large
   malloc block that glibc unmaps itself) and dlclose (a semaphore in a
   plugin's data, unloaded) and shmdt (a process-shared semaphore in a
   System V segment that is detached). Prints "MODE: ok" and exits 0 when
   the fork and its child behaved. */
#include "target-util.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>

static const char *mode;
static const char *plugin_dir;
static int ready[2];

static sem_t *take_and_lose(void)
{
    sem_t *s = NULL;
    if (strcmp(mode, "sem_close") == 0) {
        char name[64];
        snprintf(name, sizeof name, "/fs-audit-release-%d", (int)getpid());
        s = sem_open(name, O_CREAT | O_EXCL, 0600, 1);
        if (s == SEM_FAILED)
            exit(20);
        sem_unlink(name);
        if (sem_wait(s) != 0 || sem_close(s) != 0)
            exit(21);
    } else if (strcmp(mode, "munmap") == 0 || strcmp(mode, "mremap") == 0) {
        s = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (s == MAP_FAILED || sem_init(s, 0, 1) != 0 || sem_wait(s) != 0)
            exit(22);
        if (mode[1] == 'u') {
            if (munmap(s, 4096) != 0)
                exit(23);
        } else {
            /* Grow it so that the kernel moves it: the old page is gone. */
            void *n = mremap(s, 4096, 1 << 24, MREMAP_MAYMOVE);
            if (n == MAP_FAILED || n == (void *)s)
                exit(24);
        }
    } else if (strcmp(mode, "free") == 0) {
        /* Above the mmap threshold: free() hands the block back to the
           kernel from inside glibc, without the program calling munmap. */
        char *block = malloc(1 << 20);
        if (!block)
            exit(25);
        s = (sem_t *)(void *)(block + 4096);
        if (sem_init(s, 0, 1) != 0 || sem_wait(s) != 0)
            exit(26);
        free(block);
    } else if (strcmp(mode, "shmdt") == 0) {
        int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        s = id < 0 ? NULL : shmat(id, NULL, 0);
        if (id < 0 || s == (void *)-1 || shmctl(id, IPC_RMID, NULL) != 0 ||
            sem_init(s, 1, 1) != 0 || sem_wait(s) != 0 || shmdt(s) != 0)
            exit(30);
    } else if (strcmp(mode, "dlclose") == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/audit-plugin.so", plugin_dir);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        sem_t *(*get)(void) =
            h ? (sem_t * (*)(void)) dlsym(h, "plugin_sem") : NULL;
        if (!get)
            exit(27);
        s = get();
        if (sem_wait(s) != 0 || dlclose(h) != 0)
            exit(28);
    } else {
        exit(2);
    }
    return s;
}

static void *holder_main(void *arg)
{
    (void)arg;
    take_and_lose();
    if (write(ready[1], "r", 1) != 1)
        exit(29);
    return target_parked_main(NULL);
}

/* reuse: a thread uses a mutex in a malloc'd block and frees the block
   without destroying it; another thread gets the same block back and
   initializes a mutex there. The second is a new lock, used by one thread
   only: nothing is shared. */
static void *reuse_first(void *arg)
{
    pthread_mutex_t *m = malloc(sizeof *m);
    if (!m || pthread_mutex_init(m, NULL) != 0)
        exit(40);
    pthread_mutex_lock(m);
    pthread_mutex_unlock(m);
    *(void **)arg = m;
    free(m);
    return NULL;
}

static void *reuse_second(void *arg)
{
    pthread_mutex_t *m = malloc(sizeof *m);
    if (!m || pthread_mutex_init(m, NULL) != 0)
        exit(41);
    pthread_mutex_lock(m);
    pthread_mutex_unlock(m);
    *(void **)arg = m;
    pthread_mutex_destroy(m);
    free(m);
    return NULL;
}

static int mode_reuse(void)
{
    void *a = NULL, *b = NULL;
    pthread_t t;
    if (pthread_create(&t, NULL, reuse_first, &a) != 0 ||
        pthread_join(t, NULL) != 0 ||
        pthread_create(&t, NULL, reuse_second, &b) != 0 ||
        pthread_join(t, NULL) != 0)
        return 42;
    /* The test means something only when malloc gave the block back. */
    printf("reuse: %s\n", a == b ? "ok" : "different block");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    mode = argv[1];
    if (strcmp(mode, "reuse") == 0)
        return mode_reuse();
    plugin_dir = argc > 2 ? argv[2] : ".";
    char c;
    if (pipe(target_pipe) != 0 || pipe(ready) != 0 ||
        pthread_create(&target_thread, NULL, holder_main, NULL) != 0 ||
        read(ready[0], &c, 1) != 1)
        return 1;
    pid_t pid = fork();
    if (pid == 0)
        target_run_on_exit(0);
    int st = target_wait(pid, 10000);
    target_parked_stop();
    printf("%s: %s\n", mode, st == 0 ? "ok" : "failed");
    return st == 0 ? 0 : 3;
}
