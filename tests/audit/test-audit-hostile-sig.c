/* SPDX-License-Identifier: MIT */
/*
 * test-audit-hostile-sig.c: the adversary's round 24, against the CLI's
 * signal handling of 6e3f488 and b4c838d (src/cli/main.c): signals held
 * from the start, a terminal's signal before PROGRAM ending the CLI, the
 * forwarded signals, SIGCHLD and SIGPIPE given back to PROGRAM.
 *
 * Tests named test_break_* fail on the code they were written against
 * (b4c838d): real breaks, run only with FORKSAFE_ADV=1 (else skipped, the
 * reason printed) until they are fixed. test_held_* are attacks that held.
 */
#include "audit-util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static void nap_ms(long ms)
{
    struct timespec d = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* A pty master, its slave's name in slave; -1 (the test skipped) without
   one. */
static int open_pty(char *slave, size_t len)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0 || !ptsname(m)) {
        fprintf(stderr, "skipped: no pty\n");
        skip();
    }
    snprintf(slave, len, "%s", ptsname(m));
    return m;
}

/* In a forked child: a new session with slave as its controlling
   terminal, on 0, 1 and 2. */
static void take_pty(const char *slave, int m)
{
    setsid();
    int s = open(slave, O_RDWR);
    if (s < 0)
        _exit(120);
    ioctl(s, TIOCSCTTY, 0);
    dup2(s, 0);
    dup2(s, 1);
    dup2(s, 2);
    if (s > 2)
        close(s);
    close(m);
}

/* Everything the master reads until the slave side is gone. */
static char *drain_pty(int m)
{
    static char out[65536];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(m, out + len, sizeof out - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    return out;
}

static void show(const char *what, int st)
{
    fprintf(stderr, "%s: %s %d\n", what,
            WIFSIGNALED(st) ? "killed by signal" : "exit status",
            WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

/* ------------------------------------------------------------ breaks */

/* ^C at the terminal while forksafe-audit, started with SIGINT ignored
   (a background job of a non-interactive shell: `sh -c 'forksafe-audit
   ... -- prog &'` run from a terminal, whose job stays in the foreground
   group with SIGINT and SIGQUIT set to SIG_IGN), is still opening its
   outputs. signals_hold() blocks SIGINT, and a blocked signal is queued
   even when ignored (the kernel cannot know the action at delivery);
   the sigtimedwait() loop of b4c838d then takes it for a terminal's
   signal and dies of it (die_of() sets SIG_DFL first), without checking
   that it was inherited ignored. Reproduced on a pty: SIGINT ignored,
   `forksafe-audit --json FIFO -- /bin/sh -c 'sleep 1; echo
   PROGRAM-ran-to-end'`, ^C after 500 ms, the FIFO opened 300 ms later.
   Plain (the same sh, SIGINT ignored): "PROGRAM-ran-to-end", exit 0.
   Seen on b4c838d: forksafe-audit killed by SIGINT, PROGRAM never
   started. Expected: a signal inherited ignored stays ignored (as the
   docs promise for `nohup` and a background job's SIGINT): PROGRAM runs
   to its end, exit 0. The same holds for `nohup` and a hangup. */
static void test_fixed_ignored_sigint_from_terminal_ends_cli(void **state)
{
    (void)state;
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/ign.fifo", au_tmp);
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    char slave[200];
    int m = open_pty(slave, sizeof slave);
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        take_pty(slave, m);
        signal(SIGINT, SIG_IGN);
        execl(au_cli(), au_cli(), "--json", fifo, "--", "/bin/sh", "-c",
              "sleep 1; echo PROGRAM-ran-to-end", (char *)NULL);
        _exit(121);
    }
    nap_ms(500);
    assert_int_equal(write(m, "\003", 1), 1);
    nap_ms(300);
    int r = open(fifo, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    assert_true(r >= 0);
    fcntl(r, F_SETFL, 0);
    char buf[4096];
    while (read(r, buf, sizeof buf) > 0)
        ;
    close(r);
    const char *out = drain_pty(m);
    close(m);
    int st;
    assert_int_equal(waitpid(p, &st, 0), p);
    if (!WIFEXITED(st) || !strstr(out, "PROGRAM-ran-to-end")) {
        show("audited", st);
        fprintf(stderr, "%s\n", out);
    }
    assert_non_null(strstr(out, "PROGRAM-ran-to-end"));
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* forksafe-audit as the controlling process of its terminal (the session
   leader: `ssh -t host forksafe-audit -- CMD`, whose shell execs the last
   command; `script -c`, `setsid -c`, a terminal emulator or tmux window
   running it directly). When the terminal hangs up, the kernel sends
   SIGHUP (SI_KERNEL) to the session leader only; the foreground group
   gets its SIGHUP only when the session leader exits. from_terminal()
   takes the leader's SIGHUP for one the whole group got and does not
   forward it, so PROGRAM never gets one while forksafe-audit waits for
   it. Reproduced on a pty: a new session, the pty its controlling
   terminal, `sleep 3` (plain) or `forksafe-audit --json r.json -- sleep
   3`, the master closed after 500 ms. Plain: killed by SIGHUP at once.
   Seen on b4c838d: sleep runs its 3 s, exit 0, 2.5 s after the hangup.
   Expected: killed by SIGHUP at once (a SIGHUP to the session leader
   forwarded; only PROGRAM's own group gets the terminal's copy). */
static void test_fixed_session_leader_hangup_not_forwarded(void **state)
{
    (void)state;
    int sts[2];
    long long took[2];
    for (int audited = 0; audited < 2; audited++) {
        char slave[200];
        int m = open_pty(slave, sizeof slave);
        pid_t p = fork();
        assert_true(p >= 0);
        if (p == 0) {
            take_pty(slave, m);
            if (audited)
                execl(au_cli(), au_cli(), "--json", au_json, "--",
                      "/bin/sleep", "3", (char *)NULL);
            else
                execl("/bin/sleep", "/bin/sleep", "3", (char *)NULL);
            _exit(121);
        }
        nap_ms(500);
        long long t = now_ms();
        close(m);
        assert_int_equal(waitpid(p, &sts[audited], 0), p);
        took[audited] = now_ms() - t;
        show(audited ? "audited" : "plain", sts[audited]);
        fprintf(stderr, "  %lld ms after the hangup\n", took[audited]);
    }
    assert_true(WIFSIGNALED(sts[0]) && WTERMSIG(sts[0]) == SIGHUP);
    assert_true(WIFSIGNALED(sts[1]) && WTERMSIG(sts[1]) == SIGHUP);
    assert_true(took[1] < 1500);
}

/* An alarm() inherited across exec (`perl -e 'alarm 1; exec @ARGV'
   CMD`), and CMD replacing or cancelling it (alarm(0), a new alarm(N):
   any program that sets its own alarm). Plain, the timer is CMD's own and
   alarm(0) cancels it. Under forksafe-audit the inherited timer stays the
   CLI's (fork does not pass timers on; PROGRAM's alarm() returns 0 and
   cancels nothing) and b4c838d forwards its SIGALRM. Here CMD is `perl -e
   'alarm 0; sleep 2; exit 7'`. Plain: exit 7 after 2 s. Seen on b4c838d:
   killed by SIGALRM (142) after 1 s. Expected: exit 7 (the CLI hands the
   remaining time to PROGRAM, getitimer() before the fork and setitimer()
   in the child, and cancels its own). Skipped without perl. */
static void test_fixed_program_cannot_cancel_inherited_alarm(void **state)
{
    (void)state;
    if (access("/usr/bin/perl", X_OK) != 0) {
        fprintf(stderr, "skipped: no perl\n");
        skip();
    }
    char *plain[] = {"/usr/bin/perl", "-e", "alarm 1; exec @ARGV",
                     "/usr/bin/perl", "-e", "alarm 0; sleep 2; exit 7", NULL};
    assert_int_equal(au_run(plain, NULL, au_out, au_err, AU_RUN_MS), 7);
    char *aud[] = {"/usr/bin/perl", "-e", "alarm 1; exec @ARGV",
                   (char *)au_cli(), "--json", au_json, "--", "/usr/bin/perl",
                   "-e", "alarm 0; sleep 2; exit 7", NULL};
    int st = au_run(aud, NULL, au_out, au_err, AU_RUN_MS);
    if (st != 7)
        fprintf(stderr, "audited: status %d\n", st);
    assert_int_equal(st, 7);
}

/* SIGKILL sent to forksafe-audit (Python's Popen.kill(), a supervisor's
   last resort, `kill -9 PID`, systemd's final SIGKILL to the main pid):
   it cannot be caught, so nothing is forwarded and the CLI cannot clean
   up. Here `forksafe-audit --json r.json -- /bin/sleep 3` with TMPDIR a
   fresh directory, SIGKILL to the command 300 ms in. Plain: sleep dies at
   once. Seen on b4c838d: the CLI dies, sleep runs on orphaned for its 3 s
   (Popen.communicate() on its stdout waits the 3 s too: 0.0 s plain,
   5.0 s audited with a 5 s child), and TMPDIR/forksafe-audit.XXXXXX
   (with its run page) is left behind. Expected: PROGRAM ends when the
   command is killed (e.g. PR_SET_PDEATHSIG, or a PROGRAM that is the
   command's own process with the CLI watching from a child), and no
   record directory left behind; or docs/audit.md says SIGKILL is not
   passed on. */
static void test_break_sigkill_leaves_program_and_directory(void **state)
{
    (void)state;
    ADV_BREAK("SIGKILL to forksafe-audit leaves PROGRAM running and the "
              "record directory behind");
    char tmpdir[300], env[320];
    snprintf(tmpdir, sizeof tmpdir, "%s/kill-tmp", au_tmp);
    mkdir(tmpdir, 0700);
    snprintf(env, sizeof env, "TMPDIR=%s", tmpdir);
    const char *envs[] = {env, NULL};
    char *args[] = {(char *)au_cli(), "--json", au_json, "--", "/bin/sleep",
                    "3", NULL};
    pid_t cli = au_start(args, envs, au_out, au_err);
    long prog = 0;
    char path[96];
    snprintf(path, sizeof path, "/proc/%ld/task/%ld/children", (long)cli,
             (long)cli);
    for (int i = 0; i < 200 && prog <= 0; i++) {
        nap_ms(10);
        FILE *f = fopen(path, "r");
        if (!f || fscanf(f, "%ld", &prog) != 1)
            prog = 0;
        if (f)
            fclose(f);
    }
    assert_true(prog > 0);
    nap_ms(300);
    kill(cli, SIGKILL);
    int st;
    assert_int_equal(waitpid(cli, &st, 0), cli);
    nap_ms(300);
    char pp[64];
    snprintf(pp, sizeof pp, "/proc/%ld/cmdline", prog);
    const char *cmd = access(pp, F_OK) == 0 ? au_slurp(pp) : "";
    int alive = strcmp(cmd, "/bin/sleep") == 0;
    if (alive)
        kill((pid_t)prog, SIGKILL);
    char cmdline[400];
    snprintf(cmdline, sizeof cmdline, "ls -A %s | grep -q .", tmpdir);
    int left = system(cmdline) == 0;
    snprintf(cmdline, sizeof cmdline, "rm -rf %s", tmpdir);
    if (system(cmdline) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
    fprintf(stderr, "PROGRAM %s after the CLI's SIGKILL; record directory "
            "%s\n", alive ? "still running" : "gone",
            left ? "left behind" : "removed");
    assert_false(alive);
    assert_false(left);
}

/* PROGRAM dumps core (`ulimit -c unlimited`, `sh -c 'kill -SEGV $$'`).
   die_of() sets RLIMIT_CORE to 0 before raising the signal, so that the
   CLI writes no core of its own: PROGRAM's core is there, but the CLI's
   wait status lacks the core-dump flag (WCOREDUMP), which is part of the
   ending a caller sees: bash prints "Segmentation fault (core dumped)"
   plain, "Segmentation fault" audited; make, CI runners and crash
   collectors that key on the flag go another way. Seen on b4c838d:
   plain status 0x8b, audited 0x0b (the core file "core" of PROGRAM
   written in both runs). Expected: the same status (0x8b), e.g. the CLI
   dumping an empty core of its own somewhere harmless, or docs/audit.md
   saying the flag is lost (it now says "a caller sees the same
   ending"). Skipped where the plain run dumps no core. */
static void test_break_core_dumped_flag_lost(void **state)
{
    (void)state;
    ADV_BREAK("the core-dump flag of PROGRAM's ending is lost");
    /* Not au_start(), which sets RLIMIT_CORE to 0. */
    char script[400];
    snprintf(script, sizeof script, "cd %s && kill -SEGV $$", au_tmp);
    int sts[2];
    for (int audited = 0; audited < 2; audited++) {
        pid_t p = fork();
        assert_true(p >= 0);
        if (p == 0) {
            struct rlimit rl;
            getrlimit(RLIMIT_CORE, &rl);
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_CORE, &rl);
            int n = open("/dev/null", O_RDWR);
            dup2(n, 0);
            dup2(n, 1);
            dup2(n, 2);
            if (audited)
                execl(au_cli(), au_cli(), "--json", au_json, "--", "/bin/sh",
                      "-c", script, (char *)NULL);
            else
                execl("/bin/sh", "/bin/sh", "-c", script, (char *)NULL);
            _exit(121);
        }
        assert_int_equal(waitpid(p, &sts[audited], 0), p);
        fprintf(stderr, "%s: wait status 0x%x\n",
                audited ? "audited" : "plain", sts[audited]);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -f %s/core*", au_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove the cores\n");
    if (!WIFSIGNALED(sts[0]) || !WCOREDUMP(sts[0])) {
        fprintf(stderr, "skipped: the plain run dumped no core\n");
        skip();
    }
    assert_int_equal(sts[1], sts[0]);
}

/* A signal forksafe-audit was started with ignored, sent before PROGRAM
   starts (here SIGUSR1, a Python parent's signal.signal(SIGUSR1,
   SIG_IGN) before exec; `nohup` and SIGHUP are the same): held by
   signals_hold() (a blocked signal is queued even when ignored), taken by
   the sigtimedwait() loop into early[] and "forwarded" to a PROGRAM that
   ignores it. The same signal after PROGRAM started is ignored by the CLI
   as well (no handler) and not mentioned. Reproduced with --json on a
   FIFO: `forksafe-audit --json FIFO -- /bin/sh -c 'sleep 0.3; echo ran'`,
   SIGUSR1 400 ms in, the FIFO read 200 ms later. Seen on b4c838d:
   PROGRAM runs to its end, exit 0, but the report says "received signal
   10 (User defined signal 1), forwarded it to the program", "the report
   is incomplete: the audit was interrupted", interrupted_by 10,
   complete false. Expected: an ignored signal is not a signal the run
   got: interrupted_by null, complete true (as when it comes after the
   start). */
static void test_fixed_ignored_early_signal_marks_report_interrupted(
    void **state)
{
    (void)state;
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/usr1.fifo", au_tmp);
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    const char *wrap = "import os, signal, sys\n"
                       "signal.signal(signal.SIGUSR1, signal.SIG_IGN)\n"
                       "os.execv(sys.argv[1], sys.argv[1:])\n";
    char *argv[] = {AU_PYTHON, "-c", (char *)wrap, (char *)au_cli(), "--json",
                    fifo, "--", "/bin/sh", "-c", "sleep 0.3; echo ran", NULL};
    pid_t p = au_start(argv, NULL, au_out, au_err);
    nap_ms(400);
    kill(p, SIGUSR1);
    nap_ms(200);
    int r = open(fifo, O_RDONLY | O_CLOEXEC);
    assert_true(r >= 0);
    FILE *j = fopen(au_json, "w");
    assert_non_null(j);
    char buf[4096];
    ssize_t n;
    while ((n = read(r, buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)n, j);
    fclose(j);
    close(r);
    int st;
    assert_int_equal(waitpid(p, &st, 0), p);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_string_equal(au_slurp(au_out), "ran\n");
    if (strstr(au_slurp(au_err), "interrupted"))
        fprintf(stderr, "%s\n", au_slurp(au_err));
    au_check("--top=interrupted_by=null", "--top=complete=true");
}

/* A Python PROGRAM that catches sig (exit 4 in the handler; else it
   sleeps 3 s and exits 0), sent sig once it said "ready"; TMPDIR a fresh
   directory. Returns the command's status (128 + N if killed by N);
   *left is set when a record directory was left in TMPDIR. */
static int catch_one(int sig, int audited, int *left)
{
    char tmpdir[300], env[320];
    snprintf(tmpdir, sizeof tmpdir, "%s/sig-tmp", au_tmp);
    mkdir(tmpdir, 0700);
    snprintf(env, sizeof env, "TMPDIR=%s", tmpdir);
    const char *envs[] = {env, NULL};
    char code[400];
    snprintf(code, sizeof code,
             "import signal, sys, time\n"
             "signal.signal(%d, lambda n, f: (print('got', n, flush=True), "
             "sys.exit(4)))\n"
             "print('ready', flush=True)\n"
             "time.sleep(3)\n",
             sig);
    char *plain[] = {AU_PYTHON, "-c", code, NULL};
    char *aud[] = {(char *)au_cli(), "--json", au_json, "--", AU_PYTHON, "-c",
                   code, NULL};
    unlink(au_out); /* no "ready" of the run before */
    pid_t p = au_start(audited ? aud : plain, envs, au_out, au_err);
    for (int i = 0; i < 1000 && !strstr(au_slurp(au_out), "ready"); i++)
        nap_ms(10);
    kill(p, sig);
    int st;
    assert_int_equal(waitpid(p, &st, 0), p);
    nap_ms(100);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls -A %s | grep -q .", tmpdir);
    *left = system(cmd) == 0;
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
    int r = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
    fprintf(stderr, "signal %d, %s: status %d, stdout \"%s\"%s\n", sig,
            audited ? "audited" : "plain", r, au_slurp(au_out),
            *left ? ", record directory left behind" : "");
    return r;
}

/* SIGWINCH sent to the command by pid (`kill -WINCH PID`: Apache httpd's
   graceful-stop, nginx's "stop the workers"; also SIGURG and SIGCONT, any
   signal whose default action is to ignore or continue): not in
   forwarded[], so forksafe-audit takes its default (ignore) and PROGRAM,
   which catches it, never hears of it. Seen on b4c838d: plain, the
   handler runs, exit 4 at once; audited, PROGRAM sleeps its 3 s, exit 0.
   Expected: exit 4 at once (a signal PROGRAM may catch forwarded, or
   docs/audit.md saying which are not). */
static void test_fixed_sigwinch_not_forwarded(void **state)
{
    (void)state;
    int left;
    assert_int_equal(catch_one(SIGWINCH, 0, &left), 4);
    assert_int_equal(catch_one(SIGWINCH, 1, &left), 4);
    assert_false(left);
}

/* A real-time signal sent to the command (`kill -s RTMIN+1 PID`:
   status-bar and logger refreshes, a supervisor's custom control signal;
   default action: terminate). forwarded[] claims "every signal whose
   default action ends a process" but lists none of SIGRTMIN..SIGRTMAX,
   and signals_hold() does not hold them: forksafe-audit dies of it at
   once, without its reports. Seen on b4c838d: plain, PROGRAM's handler
   runs, exit 4; audited, the command is killed by signal 35 (163),
   PROGRAM runs on orphaned for its 3 s holding the caller's pipe, and
   TMPDIR/forksafe-audit.XXXXXX is left behind. Expected: exit 4, no
   record directory left (real-time signals held and forwarded like the
   others). */
static void test_fixed_realtime_signal_kills_cli(void **state)
{
    (void)state;
    int left;
    assert_int_equal(catch_one(SIGRTMIN + 1, 0, &left), 4);
    int st = catch_one(SIGRTMIN + 1, 1, &left);
    assert_false(left);
    assert_int_equal(st, 4);
}

/* -------------------------------------------------------------- held */

/* PROGRAM started with SIGCHLD, SIGUSR1 and SIGPIPE ignored and SIGTERM,
   SIGUSR2, SIGCHLD, SIGINT and SIGALRM blocked (a Python parent's
   signal.signal()/pthread_sigmask() before os.execv): SigBlk and SigIgn
   in PROGRAM's /proc/self/status are the same with and without the audit
   (SIGCHLD, SIGPIPE and the forwarded signals are changed in the CLI
   and given back). Held on b4c838d. */
static void test_held_signal_state_handed_to_program(void **state)
{
    (void)state;
    const char *wrap =
        "import os, signal, sys\n"
        "for s in (signal.SIGCHLD, signal.SIGUSR1, signal.SIGPIPE):\n"
        "    signal.signal(s, signal.SIG_IGN)\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, "
        "signal.SIGUSR2, signal.SIGCHLD, signal.SIGINT, signal.SIGALRM})\n"
        "os.execv(sys.argv[1], sys.argv[1:])\n";
    char *plain[] = {AU_PYTHON, "-c", (char *)wrap, "/bin/grep", "-E",
                     "^Sig(Blk|Ign)", "/proc/self/status", NULL};
    assert_int_equal(au_run(plain, NULL, au_out, au_err, AU_RUN_MS), 0);
    char want[200];
    snprintf(want, sizeof want, "%s", au_slurp(au_out));
    /* CHLD, PIPE and USR1 ignored (Python adds XFSZ) */
    assert_non_null(strstr(want, "11200\n"));
    char *aud[] = {AU_PYTHON, "-c", (char *)wrap, (char *)au_cli(), "--json",
                   au_json, "--", "/bin/grep", "-E", "^Sig(Blk|Ign)",
                   "/proc/self/status", NULL};
    assert_int_equal(au_run(aud, NULL, au_out, au_err, AU_RUN_MS), 0);
    assert_string_equal(au_slurp(au_out), want);
    au_check("--top=exit_status=0");
}

/* SIGPIPE in PROGRAM: `(yes; echo $? >&2) | head -1`, plain and with
   forksafe-audit in front of yes: yes dies of SIGPIPE (141) both times
   though the CLI ignores SIGPIPE itself, and the CLI dies of it after
   its report. Held on b4c838d. */
static void test_held_sigpipe_in_program(void **state)
{
    (void)state;
    char script[800];
    char want[64] = "";
    for (int audited = 0; audited < 2; audited++) {
        if (audited)
            snprintf(script, sizeof script,
                     "(%s --json %s -- yes 2>/dev/null; echo $? >&2) | "
                     "head -1", au_cli(), au_json);
        else
            snprintf(script, sizeof script, "(yes; echo $? >&2) | head -1");
        char *argv[] = {"/bin/sh", "-c", script, NULL};
        assert_int_equal(au_run(argv, NULL, au_out, au_err, AU_RUN_MS), 0);
        assert_string_equal(au_slurp(au_out), "y\n");
        if (!audited)
            snprintf(want, sizeof want, "%s", au_slurp(au_err));
    }
    assert_string_equal(want, "141\n");
    assert_string_equal(au_slurp(au_err), want);
    au_check("--top=exit_status=141");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_ignored_sigint_from_terminal_ends_cli),
        cmocka_unit_test(test_fixed_session_leader_hangup_not_forwarded),
        cmocka_unit_test(test_fixed_program_cannot_cancel_inherited_alarm),
        cmocka_unit_test(test_break_sigkill_leaves_program_and_directory),
        cmocka_unit_test(test_break_core_dumped_flag_lost),
        cmocka_unit_test(
            test_fixed_ignored_early_signal_marks_report_interrupted),
        cmocka_unit_test(test_fixed_sigwinch_not_forwarded),
        cmocka_unit_test(test_fixed_realtime_signal_kills_cli),
        cmocka_unit_test(test_held_signal_state_handed_to_program),
        cmocka_unit_test(test_held_sigpipe_in_program),
    };
    return cmocka_run_group_tests(tests, au_setup, au_teardown);
}
