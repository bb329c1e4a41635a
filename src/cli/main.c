/* SPDX-License-Identifier: MIT */
/*
 * main.c: forksafe-audit [--json FILE] [--sarif FILE] [--fail-on
 * warning|error] [--suppressions FILE]... [--baseline OLD.json]
 * [--grace-ms MS] [--] PROGRAM [ARGS...]. Runs PROGRAM with
 * libforksafe-audit.so preloaded and a private record directory, waits for
 * it (and, as a child subreaper, for descendants it orphaned), merges the
 * records, drops what the suppression rules match, marks what the baseline
 * already had, prints the report to stderr, writes JSON and SARIF when
 * asked, and exits with PROGRAM's status, or EXIT_HAZARDS when --fail-on
 * matched a finding that is neither suppressed nor in the baseline and
 * PROGRAM itself succeeded. Every input (suppression files, the baseline,
 * the output files) is checked before PROGRAM starts: a bad one is a
 * usage error and PROGRAM is not run.
 *
 * PROGRAM inherits exactly the signal dispositions and mask that
 * forksafe-audit inherited. SIGTERM, SIGHUP, SIGQUIT, SIGINT, the other
 * signals whose default action ends a process, SIGWINCH and SIGURG
 * (forwarded[]) sent to forksafe-audit are forwarded to PROGRAM, unless
 * the terminal sent them to the whole process group (PROGRAM then has
 * its own copy); the report of what was seen is still written and the
 * record directory removed.
 * When PROGRAM is killed by a signal, forksafe-audit, once the reports
 * are written, dies of the same signal.
 */
#include "cmd.h"
#include "cli.h"

#include "../preload/execcheck.h"
#include "../preload/runpage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "forksafe.h"

#ifndef FORKSAFE_AUDIT_INSTALLED_PRELOAD
#define FORKSAFE_AUDIT_INSTALLED_PRELOAD                                       \
    "/usr/local/lib/forksafe/libforksafe-audit.so"
#endif
#ifndef FORKSAFE_AUDIT_LIBDIR
#define FORKSAFE_AUDIT_LIBDIR "lib"
#endif
#ifndef FORKSAFE_AUDIT_DATADIR /* where install puts the JSON schema */
#define FORKSAFE_AUDIT_DATADIR "/usr/local/share/forksafe"
#endif

#define EXIT_USAGE   2 /* bad arguments or setup failure; PROGRAM not run */
#define EXIT_HAZARDS 3 /* --fail-on matched and PROGRAM exited 0 */
#define PRELOAD_NAME "libforksafe-audit.so"
#define LINGER_MS    1000 /* wait for orphaned descendants after PROGRAM */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: forksafe-audit [--json FILE] [--sarif FILE] [--fail-on "
            "warning|error]\n"
            "                      [--suppressions FILE]... [--baseline "
            "OLD.json] [--grace-ms MS]\n"
            "                      [--] PROGRAM [ARGS...]\n"
            "Run PROGRAM (and every process it starts) under the forksafe "
            "fork-hazard interposer;\nprint the findings to stderr and exit "
            "with PROGRAM's status.\n"
            "  --json FILE          also write the report as JSON\n"
            "                       (schema: " FORKSAFE_AUDIT_DATADIR
            "/forksafe.schema.json)\n"
            "  --sarif FILE         also write it as SARIF 2.1.0 (GitHub "
            "code scanning, SARIF viewers)\n"
            "  --fail-on LEVEL      exit %d if PROGRAM succeeded but a "
            "finding of LEVEL or worse\n"
            "                       was made that is neither suppressed nor "
            "in the baseline\n"
            "  --suppressions FILE  drop the findings FILE's rules match "
            "(lines of KIND [KEY=GLOB]...,\n"
            "                       KEY one of object, function, file, lock, "
            "exe; # comments); repeatable\n"
            "  --baseline OLD.json  an earlier --json report: its findings "
            "are marked unchanged and\n"
            "                       do not fail --fail-on; only new ones do\n"
            "  --grace-ms MS        how long a child blocked on a lock held "
            "at fork waits before it\n"
            "                       is reported as child-deadlock and ended "
            "with status 86 (default 2000)\n"
            "Environment: FORKSAFE_AUDIT_PRELOAD overrides the interposer's "
            "path;\nFORKSAFE_AUDIT_DEBUG_DIRS adds directories to search for "
            "debug files (by build-id);\nFORKSAFE_AUDIT_NO_DWARF=1 names "
            "functions from ELF symbol tables only.\n",
            EXIT_HAZARDS);
}

/* The descriptors this process passes on (no close-on-exec), by number
   and identity: the program inherits them from outside, which is not its
   leak. */
static size_t inherited_fds(struct forksafe_fdid *ids, size_t max)
{
    size_t n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < max) {
        int fd = atoi(de->d_name);
        struct stat st;
        if (fd <= 2 || fd == dirfd(d))
            continue;
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0 || (fl & FD_CLOEXEC) || fstat(fd, &st) != 0)
            continue;
        ids[n].fd = fd;
        ids[n].dev = (unsigned long)st.st_dev;
        ids[n].ino = (unsigned long)st.st_ino;
        n++;
    }
    closedir(d);
    return n;
}

/* The signal state forksafe-audit inherited, which PROGRAM gets back. */
static struct sigaction inherited_act[NSIG];
static sigset_t inherited_mask;
/* Every signal that someone may send to stop or poke PROGRAM (kill,
   timeout -s, a supervisor): those whose default action ends a process,
   the real-time signals, and SIGWINCH and SIGURG, which a program may
   catch. Signals the kernel raises for forksafe-audit's own faults and
   limits are not forwarded, nor job control (SIGTSTP, SIGCONT); SIGPIPE
   is ignored by forksafe-audit itself (a closed stderr must not cost the
   JSON report), and PROGRAM gets its inherited action back. Filled by
   signals_hold(). */
static const int forwarded_base[] = {
    SIGTERM, SIGHUP,    SIGQUIT, SIGINT,  SIGUSR1, SIGUSR2,
    SIGALRM, SIGVTALRM, SIGPROF, SIGWINCH, SIGURG,
#ifdef SIGPOLL
    SIGPOLL,
#endif
#ifdef SIGPWR
    SIGPWR,
#endif
};
static int forwarded[NSIG];
static size_t nforwarded;
#define NFORWARDED nforwarded
/* The real timer forksafe-audit was started with (an alarm() before the
   exec): PROGRAM's, handed on to it and cancelled here. */
static struct itimerval inherited_timer;

/* From the first file it creates on: the inherited signal state is saved,
   SIGPIPE ignored and the forwarded signals blocked, so that one sent
   before PROGRAM runs is held, then forwarded to it once it does, and
   the record directory is always removed. */
static void signals_hold(void)
{
    for (size_t k = 0; k < sizeof forwarded_base / sizeof forwarded_base[0];
         k++)
        forwarded[nforwarded++] = forwarded_base[k];
#ifdef SIGRTMIN
    for (int sig = SIGRTMIN; sig <= SIGRTMAX && nforwarded < NSIG; sig++)
        forwarded[nforwarded++] = sig;
#endif
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, &inherited_timer);
    sigprocmask(SIG_SETMASK, NULL, &inherited_mask);
    for (size_t k = 0; k < NFORWARDED; k++)
        sigaction(forwarded[k], NULL, &inherited_act[forwarded[k]]);
    sigaction(SIGPIPE, NULL, &inherited_act[SIGPIPE]);
    signal(SIGPIPE, SIG_IGN);
    /* Started with SIGCHLD ignored, children would be reaped by the
       kernel and PROGRAM's status lost: forksafe-audit takes the default,
       PROGRAM gets the inherited action back. */
    sigaction(SIGCHLD, NULL, &inherited_act[SIGCHLD]);
    signal(SIGCHLD, SIG_DFL);
    sigset_t held;
    sigemptyset(&held);
    for (size_t k = 0; k < NFORWARDED; k++)
        sigaddset(&held, forwarded[k]);
    sigprocmask(SIG_BLOCK, &held, NULL);
}

/* PROGRAM was killed by sig: end the same way, so that a caller sees the
   same ending (WIFSIGNALED, a shell's "Terminated"), without a core file
   of forksafe-audit's own (PROGRAM's is what matters). Returns only if
   the signal did not end the process. */
static void die_of(int sig)
{
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    fflush(NULL);
    signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    raise(sig);
}

static pid_t program_pid;
static volatile sig_atomic_t interrupted;

/* Sent by the kernel on behalf of the terminal (SI_KERNEL: ^C, ^\,
   hangup, a window size change), which delivers it to the whole
   foreground process group, PROGRAM included. Other kernel-sent signals
   (a timer's SIGALRM) are meant for PROGRAM. */
static int session_leader;

static int from_terminal(int sig, const siginfo_t *si)
{
    /* A hangup goes to the session leader only: as one, forksafe-audit
       passes it on. */
    if (sig == SIGHUP && session_leader)
        return 0;
    return si->si_code == SI_KERNEL &&
           (sig == SIGINT || sig == SIGQUIT || sig == SIGHUP ||
            sig == SIGWINCH);
}

/* The forwarded signals: pass them on to PROGRAM, unless the terminal
   sent them to the whole group; once PROGRAM has been reaped, nothing is
   forwarded (its pid may be another process's by then). */
static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int saved = errno;
    pid_t p = program_pid;
    if (p > 0) {
        interrupted = sig;
        if (!from_terminal(sig, si))
            kill(p, sig);
    }
    errno = saved;
}

/* In the child: environment for the interposer, the inherited signal
   state, then exec. preload NULL: PROGRAM cannot load it (another ELF
   class), so it is left out of LD_PRELOAD, and the loader says nothing. */
static void run_child(char **argv, const char *preload, const char *dir,
                      const char *grace)
{
    const char *old = getenv("LD_PRELOAD");
    size_t len = (old ? strlen(old) : 0) + (preload ? strlen(preload) : 0) + 2;
    char *buf = malloc(len);
    if (!buf)
        _exit(127);
    /* Existing preloads stay first: a sanitizer runtime must come first. */
    if (old && *old && preload)
        snprintf(buf, len, "%s:%s", old, preload);
    else
        snprintf(buf, len, "%s", preload ? preload : old ? old : "");
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    if ((buf[0] && setenv("LD_PRELOAD", buf, 1) != 0) ||
        setenv("FORKSAFE_AUDIT_DIR", dir, 1) != 0 ||
        setenv("FORKSAFE_AUDIT_ROOT", pid, 1) != 0 ||
        (grace && setenv("FORKSAFE_AUDIT_GRACE_MS", grace, 1) != 0))
        _exit(127);
    for (size_t i = 0; i < NFORWARDED; i++)
        sigaction(forwarded[i], &inherited_act[forwarded[i]], NULL);
    sigaction(SIGPIPE, &inherited_act[SIGPIPE], NULL);
    sigaction(SIGCHLD, &inherited_act[SIGCHLD], NULL);
    if (inherited_timer.it_value.tv_sec || inherited_timer.it_value.tv_usec)
        setitimer(ITIMER_REAL, &inherited_timer, NULL);
    sigprocmask(SIG_SETMASK, &inherited_mask, NULL);
    execvp(argv[0], argv);
    int e = errno;
    fprintf(stderr, "forksafe-audit: cannot run %s: %s\n", argv[0],
            strerror(e));
    _exit(e == ENOENT ? 127 : 126);
}

/* The run page: a file of FORKSAFE_RUNPAGE_SIZE in the record directory
   that every audited process maps (runpage.h). */
static int make_run_page(const char *dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s", dir, FORKSAFE_RUNPAGE_NAME);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int ok = ftruncate(fd, FORKSAFE_RUNPAGE_SIZE) == 0;
    struct forksafe_runpage head = {
        FORKSAFE_RUNPAGE_MAGIC, FORKSAFE_RUNPAGE_SIZE, 0, 0, 0, 0};
    ok = ok && pwrite(fd, &head, sizeof head, 0) == (ssize_t)sizeof head;
    close(fd);
    return ok ? 0 : -1;
}

/* Open an output file before PROGRAM runs, so that a typo does not cost
   a whole run. It is not truncated yet (finish_output does that), and
   *created says whether this call made it: if a later check fails, an
   earlier report keeps its contents and a new file is removed
   (drop_output), so bad input changes nothing. */
static FILE *open_output(const char *path, const char *what, int *created)
{
    *created = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0)
        *created = 1;
    else if (errno == EEXIST)
        fd = open(path, O_WRONLY | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (*created)
            unlink(path);
        fprintf(stderr,
                "forksafe-audit: cannot write the %s report to '%s': %s\n",
                what, path, strerror(e));
    }
    return f;
}

/* Close an output that will not be written, as if it had not been
   opened. */
static void drop_output(FILE *f, const char *path, int created)
{
    if (!f)
        return;
    fclose(f);
    if (created)
        unlink(path);
}

/* Write and close an output; returns 0 or an errno value. */
static int finish_output(FILE *f, const struct forksafe_run *run, int sarif)
{
    int werr = 0;
    if (ftruncate(fileno(f), 0) != 0 && errno != EINVAL)
        werr = errno; /* EINVAL: not a regular file (a pipe, /dev/stdout) */
    if (!werr)
        werr = sarif ? forksafe__report_sarif(f, run)
                     : forksafe__report_json(f, run);
    if (fclose(f) != 0 && !werr)
        werr = errno;
    return werr;
}

int main(int argc, char **argv)
{
    const char *json = NULL, *sarif = NULL, *grace = NULL;
    const char *baseline_path = NULL;
    const char *supp_files[32];
    int nsupp = 0;
    int fail_on = -1;
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
            printf("forksafe-audit %d.%d.%d (report schema %d)\n",
                   FORKSAFE_VERSION_MAJOR, FORKSAFE_VERSION_MINOR,
                   FORKSAFE_VERSION_PATCH, FORKSAFE_AUDIT_SCHEMA_VERSION);
            return 0;
        }
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0 && val) {
            json = val;
            i++;
        } else if (strcmp(a, "--sarif") == 0 && val) {
            sarif = val;
            i++;
        } else if (strcmp(a, "--baseline") == 0 && val) {
            baseline_path = val;
            i++;
        } else if (strcmp(a, "--suppressions") == 0 && val) {
            if (nsupp == (int)(sizeof supp_files / sizeof supp_files[0])) {
                fprintf(stderr,
                        "forksafe-audit: at most %zu --suppressions "
                        "files\n",
                        sizeof supp_files / sizeof supp_files[0]);
                return EXIT_USAGE;
            }
            supp_files[nsupp++] = val;
            i++;
        } else if (strcmp(a, "--fail-on") == 0 && val) {
            fail_on = forksafe__sev_parse(val);
            if (fail_on < FS_SEV_WARNING) {
                fprintf(stderr,
                        "forksafe-audit: --fail-on takes warning or "
                        "error, not '%s'\n",
                        val);
                return EXIT_USAGE;
            }
            i++;
        } else if (strcmp(a, "--grace-ms") == 0 && val) {
            char *end;
            long g = strtol(val, &end, 10);
            if (*end || end == val || g < 0 || g > 3600000) {
                fprintf(stderr,
                        "forksafe-audit: --grace-ms takes a number "
                        "of milliseconds, not '%s'\n",
                        val);
                return EXIT_USAGE;
            }
            grace = val;
            i++;
        } else {
            fprintf(stderr,
                    "forksafe-audit: unknown or incomplete option "
                    "'%s'\n",
                    a);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    char **prog = argv + i;

    char preload[PATH_MAX];
    static const struct forksafe_cmd_preload where = {
        .cmd = "forksafe-audit",
        .env = "FORKSAFE_AUDIT_PRELOAD",
        .name = PRELOAD_NAME,
        .build_dir = "../preload",
        .libdir = FORKSAFE_AUDIT_LIBDIR,
        .installed = FORKSAFE_AUDIT_INSTALLED_PRELOAD,
    };
    if (forksafe__cmd_find_preload(&where, preload, sizeof preload) != 0)
        return EXIT_USAGE;
    /* Can PROGRAM itself load the interposer? */
    char resolved[PATH_MAX], found[PATH_MAX];
    int top_reason = FORKSAFE_EXEC_OK;
    if (forksafe__exec_search(prog[0], getenv("PATH"), found, sizeof found) ==
        0)
        top_reason = forksafe__exec_check(AT_FDCWD, found, -1, resolved,
                                          sizeof resolved);
    /* Every input and output is checked before anything runs. */
    struct forksafe_run run;
    memset(&run, 0, sizeof run);
    for (int k = 0; k < nsupp; k++)
        if (forksafe__supp_load(&run, supp_files[k]) != 0) {
            forksafe__run_free(&run);
            return EXIT_USAGE;
        }
    struct forksafe_baseline *baseline = NULL;
    if (baseline_path) {
        baseline = forksafe__baseline_load(baseline_path);
        if (!baseline) {
            forksafe__run_free(&run);
            return EXIT_USAGE;
        }
        run.baseline_path = baseline_path;
    }
    signals_hold();
    FILE *jf = NULL, *sf = NULL;
    int jf_new = 0, sf_new = 0;
    if (json && !(jf = open_output(json, "JSON", &jf_new))) {
        forksafe__run_free(&run);
        forksafe__baseline_free(baseline);
        return EXIT_USAGE;
    }
    if (sarif && !(sf = open_output(sarif, "SARIF", &sf_new))) {
        drop_output(jf, json, jf_new);
        forksafe__run_free(&run);
        forksafe__baseline_free(baseline);
        return EXIT_USAGE;
    }
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX];
    /* Absolute, so that a program that changes directory still finds it. */
    snprintf(dir, sizeof dir, "%s/forksafe-audit.XXXXXX",
             tmp && tmp[0] == '/' ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        snprintf(dir, sizeof dir, "/tmp/forksafe-audit.XXXXXX");
        if (!mkdtemp(dir)) {
            fprintf(stderr,
                    "forksafe-audit: cannot create a record "
                    "directory: %s\n",
                    strerror(errno));
            drop_output(jf, json, jf_new);
            drop_output(sf, sarif, sf_new);
            return EXIT_USAGE;
        }
    }
    if (make_run_page(dir) != 0) {
        fprintf(stderr, "forksafe-audit: cannot create %s/%s: %s\n", dir,
                FORKSAFE_RUNPAGE_NAME, strerror(errno));
        forksafe__cmd_remove_dir(dir);
        drop_output(jf, json, jf_new);
        drop_output(sf, sarif, sf_new);
        return EXIT_USAGE;
    }
    struct forksafe_fdid ignore[256];
    size_t nignore = inherited_fds(ignore, 256);

    /* Orphaned descendants come back to us, so their records are complete
       before we read them (bounded by LINGER_MS). */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    fflush(NULL);
    /* The signal state to hand on, and the forwarding handlers, installed
       with every signal blocked so that none is lost between the fork and
       program_pid being known. */
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    /* Signals held since signals_hold(): one the terminal sent came before
       PROGRAM existed, so PROGRAM never got its copy: forksafe-audit dies
       of it, as PROGRAM would have, without starting it. Others are
       forwarded once PROGRAM runs. */
    sigset_t fwd;
    sigemptyset(&fwd);
    for (size_t k = 0; k < NFORWARDED; k++)
        sigaddset(&fwd, forwarded[k]);
    int early[NSIG] = {0};
    siginfo_t si;
    struct timespec zero = {0, 0};
    int esig;
    session_leader = getsid(0) == getpid();
    while ((esig = sigtimedwait(&fwd, &si, &zero)) > 0) {
        /* Ignored (inherited SIG_IGN), it was discarded for PROGRAM too;
           blocked, it was queued all the same. */
        if (inherited_act[esig].sa_handler == SIG_IGN)
            continue;
        if (from_terminal(esig, &si) && esig == SIGWINCH)
            continue; /* a resize before PROGRAM existed: nothing to do */
        if (from_terminal(esig, &si) && !sigismember(&inherited_mask, esig)) {
            forksafe__cmd_remove_dir(dir);
            drop_output(jf, json, jf_new);
            drop_output(sf, sarif, sf_new);
            die_of(esig);
            return 128 + esig;
        }
        early[esig] = 1;
    }
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "forksafe-audit: fork: %s\n", strerror(errno));
        forksafe__cmd_remove_dir(dir);
        drop_output(jf, json, jf_new);
        drop_output(sf, sarif, sf_new);
        return EXIT_USAGE;
    }
    if (child == 0)
        run_child(prog, top_reason == FORKSAFE_EXEC_CLASS ? NULL : preload, dir,
                  grace);
    program_pid = child;
    for (size_t k = 0; k < NFORWARDED; k++) {
        /* A signal forksafe-audit was started with ignored (nohup, a
           background job's SIGINT) stays ignored, here and in PROGRAM. */
        if (inherited_act[forwarded[k]].sa_handler == SIG_IGN)
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_signal;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigfillset(&sa.sa_mask);
        sigaction(forwarded[k], &sa, NULL);
    }
    for (int k = 1; k < NSIG; k++)
        if (early[k]) {
            interrupted = k;
            kill(child, k);
        }
    /* forksafe-audit itself takes every forwarded signal, even one it was
       started with blocked: PROGRAM gets that mask and decides. */
    sigset_t mine = inherited_mask;
    for (size_t k = 0; k < NFORWARDED; k++)
        sigdelset(&mine, forwarded[k]);
    sigprocmask(SIG_SETMASK, &mine, NULL);
    int st = 0;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR)
        ;
    program_pid = 0; /* reaped: its pid may be given to another process */
    long long end = forksafe__cmd_now_ms() + LINGER_MS;
    for (;;) {
        int other;
        pid_t r = waitpid(-1, &other, WNOHANG);
        if (r > 0)
            continue;
        if (r < 0 && errno != EINTR)
            break; /* ECHILD: no descendants left */
        if (forksafe__cmd_now_ms() >= end)
            break;
        struct timespec d = {0, 5 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    /* Daemons that outlive PROGRAM may still write: move the directory
       away first, so that their next record finds no directory and they
       stop recording (see emit.c), and nothing is recreated after the
       directory is removed. */
    char done[PATH_MAX + 8];
    snprintf(done, sizeof done, "%s.done", dir);
    const char *readdir_path = rename(dir, done) == 0 ? done : dir;

    run.argv = prog;
    if (WIFSIGNALED(st)) {
        run.signal = WTERMSIG(st);
        run.status = 128 + run.signal;
    } else {
        run.status = WEXITSTATUS(st);
    }
    run.interrupted_by = interrupted;
    int err = forksafe__records_load(&run, readdir_path, ignore, nignore);
    forksafe__cmd_remove_dir(readdir_path);
    if (top_reason != FORKSAFE_EXEC_OK)
        forksafe__records_add_unaudited(&run, child, resolved, top_reason,
                                        "the command line");
    forksafe__records_mark_running(&run);
    if (err)
        fprintf(stderr, "forksafe-audit: reading records: %s\n", strerror(err));
    forksafe__supp_apply(&run);
    forksafe__fingerprint_all(&run);
    if (baseline)
        forksafe__baseline_apply(&run, baseline);
    forksafe__baseline_free(baseline);
    /* stderr is unbuffered: the text report is built in memory and
       written with one call, not one write per character. */
    char *text = NULL;
    size_t textlen = 0;
    FILE *tf = open_memstream(&text, &textlen);
    if (tf) {
        forksafe__report_text(tf, &run);
        if (fclose(tf) == 0 && textlen)
            fwrite(text, 1, textlen, stderr);
        free(text);
    } else {
        forksafe__report_text(stderr, &run);
    }
    int status = run.status;
    FILE *outs[2] = {jf, sf};
    const char *names[2] = {json, sarif};
    for (int k = 0; k < 2; k++) {
        if (!outs[k])
            continue;
        int werr = finish_output(outs[k], &run, k == 1);
        if (werr) {
            fprintf(stderr, "forksafe-audit: writing '%s': %s\n", names[k],
                    strerror(werr));
            if (status == 0)
                status = EXIT_USAGE;
        }
    }
    if (fail_on >= 0 && status == 0) {
        size_t hits = 0;
        for (size_t k = 0; k < run.nfindings; k++)
            hits += (int)run.findings[k].sev >= fail_on &&
                    run.findings[k].baseline != 2;
        if (hits) {
            fprintf(stderr,
                    "forksafe-audit: failing (exit %d): %zu %sfinding%s at "
                    "or above %s%s\n",
                    EXIT_HAZARDS, hits, baseline_path ? "new " : "",
                    hits == 1 ? "" : "s",
                    forksafe__sev_name((enum forksafe_sev)fail_on),
                    run.not_audited ? " (some processes were not audited)"
                                    : "");
            status = EXIT_HAZARDS;
        }
    }
    int sig = status == run.status ? run.signal : 0;
    forksafe__run_free(&run);
    forksafe__symbols_free();
    if (sig)
        die_of(sig);
    return status;
}
