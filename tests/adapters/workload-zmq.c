/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/workload-zmq.c: ZeroMQ as its users use it, while the
 * main thread forks (see workload.h). One tracked context; pairs of
 * threads pass messages over PUSH/PULL sockets, half over inproc://, half
 * over tcp://127.0.0.1. Each child drops the inherited context with
 * forksafe_zmq_term() and passes a message over a context of its own.
 */
#include "workload.h"

#include <forksafe/zmq.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

static void *s_ctx;

struct pair {
    char endpoint[64];
    int id;
};

static void *puller(void *arg)
{
    struct pair *p = arg;
    void *s = zmq_socket(s_ctx, ZMQ_PULL);
    int ms = 100;
    char buf[16];
    if (s == NULL || zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof ms) != 0 ||
        zmq_bind(s, p->endpoint) != 0) {
        wl_thread_error("pull socket");
        return NULL;
    }
    size_t len = sizeof p->endpoint;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, p->endpoint, &len);
    atomic_thread_fence(memory_order_seq_cst);
    p->id = 1; /* bound: the pusher may connect */
    while (!atomic_load(&wl_stop))
        zmq_recv(s, buf, sizeof buf, 0);
    zmq_close(s);
    return NULL;
}

static void *pusher(void *arg)
{
    struct pair *p = arg;
    while (__atomic_load_n(&p->id, __ATOMIC_SEQ_CST) == 0)
        ;
    void *s = zmq_socket(s_ctx, ZMQ_PUSH);
    int ms = 100, zero = 0;
    if (s == NULL || zmq_setsockopt(s, ZMQ_SNDTIMEO, &ms, sizeof ms) != 0 ||
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_connect(s, p->endpoint) != 0) {
        wl_thread_error("push socket");
        return NULL;
    }
    while (!atomic_load(&wl_stop)) {
        zmq_send(s, "msg", 3, 0);
        struct timespec pause = {0, 100 * 1000};
        nanosleep(&pause, NULL);
    }
    zmq_close(s);
    return NULL;
}

static int child(void *arg)
{
    (void)arg;
    if (!forksafe_zmq_inherited(s_ctx) || forksafe_zmq_term(s_ctx) != 0)
        return 10;
    void *ctx = zmq_ctx_new();
    void *a = ctx ? zmq_socket(ctx, ZMQ_PAIR) : NULL;
    void *b = ctx ? zmq_socket(ctx, ZMQ_PAIR) : NULL;
    char buf[8];
    int rc = a && b && zmq_bind(a, "inproc://child") == 0 &&
                     zmq_connect(b, "inproc://child") == 0 &&
                     zmq_send(b, "hi", 2, 0) == 2 &&
                     zmq_recv(a, buf, sizeof buf, 0) == 2
                 ? 0
                 : 11;
    zmq_close(a);
    zmq_close(b);
    zmq_ctx_term(ctx);
    return rc;
}

int main(int argc, char **argv)
{
    struct wl_opts o = {1000, 300, 6, 0, ""};
    wl_parse(argc, argv, &o);
    s_ctx = zmq_ctx_new();
    if (s_ctx == NULL || forksafe_zmq_track(s_ctx) != 0)
        return 3;
    int npairs = (o.threads + 1) / 2;
    struct pair pairs[32];
    pthread_t t[64];
    for (int i = 0; i < npairs; i++) {
        pairs[i].id = 0;
        if (i % 2)
            snprintf(pairs[i].endpoint, sizeof pairs[i].endpoint,
                     "tcp://127.0.0.1:*");
        else
            snprintf(pairs[i].endpoint, sizeof pairs[i].endpoint,
                     "inproc://pair-%d", i);
        if (pthread_create(&t[2 * i], NULL, puller, &pairs[i]) != 0 ||
            pthread_create(&t[2 * i + 1], NULL, pusher, &pairs[i]) != 0)
            return 3;
    }
    wl_forks(&o, child, NULL);
    for (int i = 0; i < 2 * npairs; i++)
        pthread_join(t[i], NULL);
    if (forksafe_zmq_term(s_ctx) != 0)
        wl_thread_error("zmq_ctx_term");
    return wl_report("workload-zmq", &o);
}
