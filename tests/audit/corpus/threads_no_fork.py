# SPDX-License-Identifier: MIT
"""Clean: threads that share a lock and a queue, and never fork."""
import queue
import threading

q = queue.Queue()
lock = threading.Lock()
total = [0]


def worker():
    while True:
        v = q.get()
        if v is None:
            return
        with lock:
            total[0] += v


ts = [threading.Thread(target=worker) for _ in range(4)]
for t in ts:
    t.start()
for i in range(2000):
    q.put(i)
for t in ts:
    q.put(None)
for t in ts:
    t.join()
assert total[0] == sum(range(2000))
