# SPDX-License-Identifier: MIT
"""multiprocessing's three start methods, concurrent.futures with processes
and threads, a Queue through a forked Process, and a signal handler: the
output must be the same with and without forksafe-audit
(test-audit-transparency.c)."""
import concurrent.futures as cf
import multiprocessing as mp
import os
import signal


def sq(x):
    return x * x


def main():
    for method in ("fork", "forkserver", "spawn"):
        with mp.get_context(method).Pool(2) as p:
            print(method, sum(p.map(sq, range(50))))
    fork = mp.get_context("fork")
    with cf.ProcessPoolExecutor(2, mp_context=fork) as ex:
        print("processes", sum(ex.map(sq, range(20))))
    with cf.ThreadPoolExecutor(2) as ex:
        print("threads", sum(ex.map(sq, range(20))))
    got = []
    signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    os.kill(os.getpid(), signal.SIGUSR1)
    print("signal", got == [signal.SIGUSR1])
    q = fork.Queue()
    pr = fork.Process(target=q.put, args=(42,))
    pr.start()
    print("queue", q.get())
    pr.join()
    print("exit", pr.exitcode)


if __name__ == "__main__":
    main()
