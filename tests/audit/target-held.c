/* target-held.c: lock-held-at-fork (with its prerequisite,
   fork-with-threads). A helper thread holds an unregistered mutex while
   the main thread forks; with argv[1] == "deadlock" the child then locks
   it, which forksafe-audit reports as child-deadlock and ends with status
   86 (without the audit the child would hang; the parent kills it). */
#include "target-util.h"

#include <string.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static int go[2];

static void *holder_main(void *arg)
{
    char c;
    (void)arg;
    pthread_mutex_lock(&m);
    if (write(go[1], "h", 1) != 1)
        exit(92);
    while (read(target_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
    pthread_mutex_unlock(&m);
    return NULL;
}

int main(int argc, char **argv)
{
    int deadlock = argc > 1 && strcmp(argv[1], "deadlock") == 0;
    char c;
    if (pipe(target_pipe) != 0 || pipe(go) != 0 ||
        pthread_create(&target_thread, NULL, holder_main, NULL) != 0 ||
        read(go[0], &c, 1) != 1)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        if (deadlock)
            pthread_mutex_lock(&m); /* never returns without the audit */
        _exit(0);
    }
    int st = target_wait(pid, 10000);
    target_parked_stop();
    if (deadlock)
        return st == 86 ? 0 : 3; /* FORKSAFE_AUDIT_DEADLOCK_STATUS */
    return st == 0 ? 0 : 2;
}
