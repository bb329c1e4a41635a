/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/workload-event.c: libevent with pthreads as its users use
 * it, while the main thread forks (see workload.h). A loop thread runs a
 * tracked base with a persistent timer and a socketpair read event; other
 * threads add one-shot events to the base and write to the socketpair,
 * taking the base lock from outside the loop. Each child checks that
 * event_reinit() worked and runs a base of its own once (the inherited one
 * still says a loop is running on it: the loop thread's, which the child
 * does not have, so event_base_loop() refuses it there).
 */
#include "workload.h"

#include <forksafe/event.h>

#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static struct event_base *s_base;
static int s_pair[2];
static atomic_int s_fired;

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)arg;
    char buf[64];
    if (what & EV_READ)
        (void)!read(fd, buf, sizeof buf);
    atomic_fetch_add(&s_fired, 1);
}

static void *loop_main(void *arg)
{
    (void)arg;
    if (event_base_loop(s_base, EVLOOP_NO_EXIT_ON_EMPTY) < 0)
        wl_thread_error("event_base_loop");
    return NULL;
}

static void *worker(void *arg)
{
    (void)arg;
    const struct timeval soon = {0, 100};
    while (!atomic_load(&wl_stop)) {
        if (event_base_once(s_base, -1, EV_TIMEOUT, on_event, NULL, &soon))
            wl_thread_error("event_base_once");
        (void)!write(s_pair[1], "x", 1);
        struct timespec pause = {0, 200 * 1000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static int child(void *arg)
{
    (void)arg;
    if (forksafe_event_fork_error() != 0)
        return 10;
    struct event_base *b = event_base_new();
    if (b == NULL)
        return 11;
    int rc = event_base_loop(b, EVLOOP_NONBLOCK) < 0 ? 12 : 0;
    event_base_free(b);
    return rc;
}

int main(int argc, char **argv)
{
    struct wl_opts o = {1000, 300, 6, 0, ""};
    wl_parse(argc, argv, &o);
    if (forksafe_event_use_pthreads() != 0 ||
        (s_base = event_base_new()) == NULL ||
        forksafe_event_track(s_base) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s_pair) != 0)
        return 3;
    evutil_make_socket_nonblocking(s_pair[0]);
    evutil_make_socket_nonblocking(s_pair[1]);
    struct event *rd =
        event_new(s_base, s_pair[0], EV_READ | EV_PERSIST, on_event, NULL);
    struct event *tick = event_new(s_base, -1, EV_PERSIST, on_event, NULL);
    const struct timeval ms = {0, 1000};
    if (!rd || !tick || event_add(rd, NULL) || event_add(tick, &ms))
        return 3;
    pthread_t loop;
    if (pthread_create(&loop, NULL, loop_main, NULL) != 0)
        return 3;
    wl_run(&o, worker, child, NULL);
    event_base_loopbreak(s_base);
    pthread_join(loop, NULL);
    if (atomic_load(&s_fired) == 0)
        wl_thread_error("no event fired");
    event_free(rd);
    event_free(tick);
    forksafe_event_untrack(s_base);
    event_base_free(s_base);
    return wl_report("workload-event", &o);
}
