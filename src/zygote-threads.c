/*
 * zygote-threads.c: the thread census the fork server relies on to refuse
 * forking from a multi-threaded state. It lives in its own object so tests
 * can substitute it (-Wl,--wrap) and make the server see a second thread.
 */
#include "spawn-zygote.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* Contract in spawn-zygote.h. Counts the entries of /proc/self/task; each
   is one live thread of this process. getdents64() into a stack buffer
   rather than opendir(): the server calls this for every request and must
   not allocate, so its memory stays flat however many workers it forks. */
int forksafe__zygote_threads(void)
{
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int n = 0;
    _Alignas(8) char buf[2048];
    for (;;) {
        ssize_t got = getdents64(fd, buf, sizeof buf);
        if (got < 0) {
            n = -errno;
            break;
        }
        if (got == 0)
            break;
        for (ssize_t off = 0; off < got;) {
            struct dirent64 *e = (struct dirent64 *)(void *)(buf + off);
            if (e->d_name[0] != '.')
                n++;
            off += e->d_reclen;
        }
    }
    close(fd);
    return n;
}
