/* SPDX-License-Identifier: MIT */
/*
 * main.c: forksafe-run [--timeout-ms N] [--report FILE] [--json FILE]
 * [--] PROGRAM [ARGS...]. Runs PROGRAM with libforksafe-run.so preloaded,
 * so that its forks (and those of everything it starts) wait until no
 * other thread holds a pthread lock.
 *
 * Without --report or --json, forksafe-run sets the environment and execs
 * PROGRAM in its own place: same process, same parent, same signals, same
 * exit status, nothing left running beside it. With them, it runs PROGRAM
 * as its child with a private record directory, waits for it (and, as a
 * child subreaper, for descendants it orphaned, up to a second), writes
 * the report, and exits as PROGRAM did: with its status, or by the same
 * signal. SIGTERM, SIGHUP, SIGQUIT and SIGINT sent to forksafe-run are
 * forwarded to PROGRAM, unless the terminal sent them to the whole
 * process group.
 */
#include "../cli/cmd.h"
#include "report.h"

#include "stats.h"
#include "../preload/execcheck.h"
#include "../preload/runpage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "forksafe.h"

#ifndef FORKSAFE_RUN_INSTALLED_PRELOAD
#define FORKSAFE_RUN_INSTALLED_PRELOAD                                         \
    "/usr/local/lib/forksafe/libforksafe-run.so"
#endif
#ifndef FORKSAFE_RUN_LIBDIR
#define FORKSAFE_RUN_LIBDIR "lib"
#endif

#define EXIT_USAGE   2 /* bad arguments or setup failure; PROGRAM not run */
#define PRELOAD_NAME "libforksafe-run.so"
#define LINGER_MS    1000
#define TIMEOUT_MAX  (24u * 3600 * 1000)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: forksafe-run [--timeout-ms N] [--report FILE] [--json "
            "FILE] [--] PROGRAM [ARGS...]\n"
            "Run PROGRAM (and every process it starts) so that a fork made "
            "while other threads\nare alive first waits until no other "
            "thread holds a pthread mutex or rwlock:\nthe child then inherits "
            "no lock held by a thread that does not exist in it.\n"
            "  --timeout-ms N  how long a fork waits for lock holders before "
            "it goes ahead as\n"
            "                  a plain fork would (default 1000)\n"
            "  --report FILE   write the report (forks, waits, forks that "
            "went ahead with a\n"
            "                  lock held, and who held what) to FILE; - is "
            "standard error\n"
            "  --json FILE     write the same as JSON (schema: "
            "forksafe.schema.json)\n"
            "  --help, --version\n"
            "PROGRAM's output and exit status are its own. The same "
            "protection without this\ncommand: LD_PRELOAD=%s "
            "(FORKSAFE_RUN_TIMEOUT_MS sets the timeout).\n"
            "Environment: FORKSAFE_RUN_PRELOAD overrides the library's "
            "path.\n",
            FORKSAFE_RUN_INSTALLED_PRELOAD);
}

/* LD_PRELOAD for PROGRAM: what it already had first (a sanitizer runtime
   must stay first), then the library. preload NULL: PROGRAM cannot load
   it (another ELF class), so it is left out, and the loader says
   nothing. */
static int set_env(const char *preload, const char *timeout, const char *dir)
{
    char buf[PATH_MAX * 2];
    const char *old = getenv("LD_PRELOAD");
    if (old && *old && preload)
        snprintf(buf, sizeof buf, "%s:%s", old, preload);
    else
        snprintf(buf, sizeof buf, "%s", preload ? preload : old ? old : "");
    if (buf[0] && setenv("LD_PRELOAD", buf, 1) != 0)
        return -1;
    if (timeout && setenv("FORKSAFE_RUN_TIMEOUT_MS", timeout, 1) != 0)
        return -1;
    if (dir ? setenv("FORKSAFE_RUN_DIR", dir, 1) != 0
            : unsetenv("FORKSAFE_RUN_DIR") != 0)
        return -1;
    return 0;
}

static void exec_program(char **argv)
{
    execvp(argv[0], argv);
    int e = errno;
    fprintf(stderr, "forksafe-run: cannot run %s: %s\n", argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
}

/* ------------------------------------------------------------ report mode */

/* A zeroed file of size bytes that starts with head. */
static int make_page(const char *dir, const char *name, size_t size,
                     const void *head, size_t headlen)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int ok = ftruncate(fd, (off_t)size) == 0 &&
             pwrite(fd, head, headlen, 0) == (ssize_t)headlen;
    close(fd);
    return ok ? 0 : -1;
}

static struct sigaction inherited_act[NSIG];
static sigset_t inherited_mask;
static const int forwarded[] = {SIGTERM, SIGHUP, SIGQUIT, SIGINT};
#define NFORWARDED (sizeof forwarded / sizeof forwarded[0])

static pid_t program_pid;
static volatile sig_atomic_t interrupted;

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int saved = errno;
    interrupted = sig;
    if (program_pid > 0 && si->si_code != SI_KERNEL)
        kill(program_pid, sig);
    errno = saved;
}

/* End as PROGRAM ended: by the same signal (without a core file of our
   own), or with its status. */
static void exit_like(int st, int status)
{
    if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        signal(sig, SIG_DFL);
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, sig);
        sigprocmask(SIG_UNBLOCK, &s, NULL);
        raise(sig);
    }
    exit(status);
}

/* Open a report destination once, before the run: a typo costs nothing,
   and the report goes to this very file, FIFO or device (opening a FIFO
   twice would hand its reader an end of file after the first open). A
   FIFO nobody reads yet is waited for, as any writer of a FIFO waits
   (the signals still act as they do by default: SIGTERM ends the wait).
   Returns the descriptor (-1 for standard error), or -2 after an error
   message. */
static int open_destination(const char *path)
{
    if (strcmp(path, "-") == 0)
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0 && errno == ENXIO) {
        fprintf(stderr, "forksafe-run: waiting for a reader of the FIFO '%s'\n",
                path);
        while ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0 && errno == EINTR)
            ;
    }
    if (fd < 0) {
        fprintf(stderr, "forksafe-run: cannot write the report to '%s': %s\n",
                path, strerror(errno));
        return -2;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

/* Write the report to fd (from open_destination; -1: standard error),
   from its start if it is a regular file, and close it. */
static int write_report(const char *path, int fd, int json,
                        const struct run_report *rep)
{
    FILE *f = stderr;
    if (fd >= 0) {
        struct stat sb;
        if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
            if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
                fprintf(stderr, "forksafe-run: cannot write '%s': %s\n", path,
                        strerror(errno));
                close(fd);
                return -1;
            }
        }
        f = fdopen(fd, "w");
        if (!f) {
            fprintf(stderr, "forksafe-run: cannot write '%s': %s\n", path,
                    strerror(errno));
            close(fd);
            return -1;
        }
    }
    int err = json ? forksafe__rr_json(f, rep) : forksafe__rr_text(f, rep);
    if (f == stderr)
        fflush(f);
    else if (fclose(f) != 0 && !err)
        err = errno;
    if (err) {
        fprintf(stderr, "forksafe-run: writing '%s': %s\n", path,
                strerror(err));
        return -1;
    }
    return 0;
}

static int run_reported(char **prog, const char *preload, const char *timeout,
                        unsigned timeout_ms, const char *text_path,
                        const char *json_path, int top_reason,
                        const char *resolved)
{
    /* Open the destinations before running anything (once: see
       open_destination). */
    int text_fd = -1, json_fd = -1;
    if (text_path && (text_fd = open_destination(text_path)) == -2)
        return EXIT_USAGE;
    if (json_path && (json_fd = open_destination(json_path)) == -2) {
        if (text_fd >= 0)
            close(text_fd);
        return EXIT_USAGE;
    }
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/forksafe-run.XXXXXX",
             tmp && tmp[0] == '/' ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        snprintf(dir, sizeof dir, "/tmp/forksafe-run.XXXXXX");
        if (!mkdtemp(dir)) {
            fprintf(stderr,
                    "forksafe-run: cannot create a record directory: "
                    "%s\n",
                    strerror(errno));
            return EXIT_USAGE;
        }
    }
    struct forksafe_run_stats sh = {.magic = FORKSAFE_RUN_STATS_MAGIC,
                                    .size = FORKSAFE_RUN_STATS_SIZE};
    struct forksafe_runpage rh = {
        FORKSAFE_RUNPAGE_MAGIC, FORKSAFE_RUNPAGE_SIZE, 0, 0, 0, 0};
    if (make_page(dir, FORKSAFE_RUN_STATS_NAME, FORKSAFE_RUN_STATS_SIZE, &sh,
                  sizeof sh) != 0 ||
        make_page(dir, FORKSAFE_RUNPAGE_NAME, FORKSAFE_RUNPAGE_SIZE, &rh,
                  sizeof rh) != 0) {
        fprintf(stderr, "forksafe-run: cannot create the pages in %s: %s\n",
                dir, strerror(errno));
        forksafe__cmd_remove_dir(dir);
        return EXIT_USAGE;
    }
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    fflush(NULL);
    sigprocmask(SIG_SETMASK, NULL, &inherited_mask);
    for (size_t k = 0; k < NFORWARDED; k++)
        sigaction(forwarded[k], NULL, &inherited_act[forwarded[k]]);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "forksafe-run: fork: %s\n", strerror(errno));
        forksafe__cmd_remove_dir(dir);
        return EXIT_USAGE;
    }
    if (child == 0) {
        if (set_env(preload, timeout, dir) != 0)
            _exit(127);
        for (size_t k = 0; k < NFORWARDED; k++)
            sigaction(forwarded[k], &inherited_act[forwarded[k]], NULL);
        sigprocmask(SIG_SETMASK, &inherited_mask, NULL);
        exec_program(prog);
    }
    program_pid = child;
    for (size_t k = 0; k < NFORWARDED; k++) {
        if (inherited_act[forwarded[k]].sa_handler == SIG_IGN)
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_signal;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigfillset(&sa.sa_mask);
        sigaction(forwarded[k], &sa, NULL);
    }
    sigprocmask(SIG_SETMASK, &inherited_mask, NULL);
    int st = 0;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR)
        ;
    long long end = forksafe__cmd_now_ms() + LINGER_MS;
    for (;;) {
        int other;
        pid_t r = waitpid(-1, &other, WNOHANG);
        if (r > 0)
            continue;
        if (r < 0 && errno != EINTR)
            break;
        if (forksafe__cmd_now_ms() >= end)
            break;
        struct timespec d = {0, 5 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    program_pid = 0;
    /* Descendants that outlive PROGRAM stop recording once the directory
       is gone (src/preload/emit.c). */
    char done[PATH_MAX + 8];
    snprintf(done, sizeof done, "%s.done", dir);
    const char *from = rename(dir, done) == 0 ? done : dir;

    struct run_report rep;
    memset(&rep, 0, sizeof rep);
    rep.argv = prog;
    rep.timeout_ms = timeout_ms;
    if (WIFSIGNALED(st)) {
        rep.signal = WTERMSIG(st);
        rep.status = 128 + rep.signal;
    } else {
        rep.status = WEXITSTATUS(st);
    }
    rep.interrupted_by = interrupted;
    int err = forksafe__rr_load(&rep, from);
    forksafe__cmd_remove_dir(from);
    if (top_reason != FORKSAFE_EXEC_OK)
        forksafe__rr_add_uncovered(&rep, child, resolved, top_reason);
    if (err && err != ENOENT)
        fprintf(stderr, "forksafe-run: reading the records: %s\n",
                strerror(err));
    /* PROGRAM is over: from now on the forwarded signals act as they did
       for forksafe-run's own caller (by default, they end it), so that a
       report that cannot be written (a FIFO nobody reads) never keeps it
       alive. */
    for (size_t k = 0; k < NFORWARDED; k++)
        sigaction(forwarded[k], &inherited_act[forwarded[k]], NULL);
    int bad = 0;
    if (text_path && write_report(text_path, text_fd, 0, &rep) != 0)
        bad = 1;
    if (json_path && write_report(json_path, json_fd, 1, &rep) != 0)
        bad = 1;
    forksafe__rr_free(&rep);
    forksafe__symbols_free();
    if (bad && WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return EXIT_USAGE;
    exit_like(st, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return 0;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    const char *timeout = NULL, *text_path = NULL, *json_path = NULL;
    unsigned timeout_ms = 1000;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-')
            break;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("forksafe-run %d.%d.%d (report schema %d)\n",
                   FORKSAFE_VERSION_MAJOR, FORKSAFE_VERSION_MINOR,
                   FORKSAFE_VERSION_PATCH, FORKSAFE_JSON_SCHEMA_VERSION);
            return 0;
        }
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--timeout-ms") == 0 && val) {
            char *end;
            unsigned long v = strtoul(val, &end, 10);
            if (*val < '0' || *val > '9' || *end || v == 0 || v > TIMEOUT_MAX) {
                fprintf(stderr,
                        "forksafe-run: --timeout-ms takes a number of "
                        "milliseconds from 1 to %u, not '%s'\n",
                        TIMEOUT_MAX, val);
                return EXIT_USAGE;
            }
            timeout = val;
            timeout_ms = (unsigned)v;
            i++;
        } else if (strcmp(a, "--report") == 0 && val) {
            text_path = val;
            i++;
        } else if (strcmp(a, "--json") == 0 && val) {
            json_path = val;
            i++;
        } else {
            fprintf(stderr, "forksafe-run: unknown or incomplete option '%s'\n",
                    a);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (json_path && strcmp(json_path, "-") == 0 && text_path &&
        strcmp(text_path, "-") == 0) {
        fprintf(stderr, "forksafe-run: --report and --json cannot both be "
                        "standard error\n");
        return EXIT_USAGE;
    }
    char **prog = argv + i;
    if (!timeout) {
        /* As a plain LD_PRELOAD would: FORKSAFE_RUN_TIMEOUT_MS holds. */
        const char *t = getenv("FORKSAFE_RUN_TIMEOUT_MS");
        char *end;
        unsigned long v = t ? strtoul(t, &end, 10) : 0;
        if (t && *t >= '0' && *t <= '9' && !*end && v > 0 && v <= TIMEOUT_MAX)
            timeout_ms = (unsigned)v;
    }

    char preload[PATH_MAX];
    static const struct forksafe_cmd_preload where = {
        .cmd = "forksafe-run",
        .env = "FORKSAFE_RUN_PRELOAD",
        .name = PRELOAD_NAME,
        .build_dir = ".",
        .libdir = FORKSAFE_RUN_LIBDIR,
        .installed = FORKSAFE_RUN_INSTALLED_PRELOAD,
    };
    if (forksafe__cmd_find_preload(&where, preload, sizeof preload) != 0)
        return EXIT_USAGE;
    /* Can PROGRAM itself load the library? */
    char resolved[PATH_MAX] = "", found[PATH_MAX];
    int top_reason = FORKSAFE_EXEC_OK;
    if (forksafe__exec_search(prog[0], getenv("PATH"), found, sizeof found) ==
        0)
        top_reason = forksafe__exec_check(AT_FDCWD, found, -1, resolved,
                                          sizeof resolved);
    const char *use = top_reason == FORKSAFE_EXEC_CLASS ? NULL : preload;
    if (!text_path && !json_path) {
        if (top_reason != FORKSAFE_EXEC_OK)
            fprintf(stderr,
                    "forksafe-run: warning: %s cannot be covered: %s; its "
                    "forks are not made safe\n",
                    resolved, forksafe__exec_reason_text(top_reason));
        if (set_env(use, timeout, NULL) != 0) {
            fprintf(stderr, "forksafe-run: cannot set the environment: %s\n",
                    strerror(errno));
            return EXIT_USAGE;
        }
        fflush(NULL);
        exec_program(prog);
    }
    return run_reported(prog, use, timeout, timeout_ms, text_path, json_path,
                        top_reason, resolved);
}
