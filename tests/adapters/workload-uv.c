/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/workload-uv.c: libuv as its users use it, while the main
 * thread forks (see workload.h). A loop thread runs a tracked loop; other
 * threads wake it with uv_async_send(), and each wake-up queues work on
 * libuv's threadpool, whose threads hand it back through the loop's
 * wq_mutex. Each child checks that uv_loop_fork() worked and runs a timer
 * on a loop of its own.
 */
#include "workload.h"

#include <forksafe/uv.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static uv_loop_t s_loop;
static uv_async_t s_wake, s_quit;
static atomic_int s_done;

static void work(uv_work_t *req)
{
    (void)req;
}

static void after_work(uv_work_t *req, int status)
{
    (void)status;
    atomic_fetch_add(&s_done, 1);
    free(req);
}

static void on_wake(uv_async_t *h)
{
    (void)h;
    uv_work_t *req = malloc(sizeof *req);
    if (req == NULL || uv_queue_work(&s_loop, req, work, after_work) != 0) {
        free(req);
        wl_thread_error("uv_queue_work");
    }
}

static void on_quit(uv_async_t *h)
{
    (void)h;
    uv_close((uv_handle_t *)&s_wake, NULL);
    uv_close((uv_handle_t *)&s_quit, NULL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&s_loop, UV_RUN_DEFAULT);
    return NULL;
}

static void *worker(void *arg)
{
    (void)arg;
    while (!atomic_load(&wl_stop)) {
        if (uv_async_send(&s_wake) != 0)
            wl_thread_error("uv_async_send");
        struct timespec pause = {0, 200 * 1000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void on_timer(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
}

static int child(void *arg)
{
    (void)arg;
    if (forksafe_uv_fork_error() != 0)
        return 10;
    uv_loop_t loop;
    uv_timer_t t;
    if (uv_loop_init(&loop) != 0 || uv_timer_init(&loop, &t) != 0 ||
        uv_timer_start(&t, on_timer, 1, 0) != 0 ||
        uv_run(&loop, UV_RUN_DEFAULT) != 0 || uv_loop_close(&loop) != 0)
        return 11;
    return 0;
}

int main(int argc, char **argv)
{
    struct wl_opts o = {1000, 300, 6, 0, ""};
    wl_parse(argc, argv, &o);
    if (uv_loop_init(&s_loop) != 0 ||
        uv_async_init(&s_loop, &s_wake, on_wake) != 0 ||
        uv_async_init(&s_loop, &s_quit, on_quit) != 0 ||
        forksafe_uv_track(&s_loop) != 0)
        return 3;
    pthread_t loop;
    if (pthread_create(&loop, NULL, loop_main, NULL) != 0)
        return 3;
    wl_run(&o, worker, child, NULL);
    uv_async_send(&s_quit);
    pthread_join(loop, NULL);
    if (atomic_load(&s_done) == 0)
        wl_thread_error("no work completed");
    forksafe_uv_untrack(&s_loop);
    uv_loop_close(&s_loop);
    return wl_report("workload-uv", &o);
}
