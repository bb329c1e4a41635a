# SPDX-License-Identifier: MIT
"""Hazard: multiprocessing (fork start method) while a thread holds a
threading.Lock; the child then takes the lock. Without the audit the child
hangs forever. Writes the holder's native TID to argv[1]."""
import multiprocessing as mp
import sys
import threading
import time

lock = threading.Lock()
done = threading.Event()


def holder():
    with lock:
        with open(sys.argv[1], "w") as f:
            f.write(str(threading.get_native_id()))
        done.wait()


def child():
    with lock:
        pass


if __name__ == "__main__":
    t = threading.Thread(target=holder, name="holder")
    t.start()
    while not lock.locked():
        time.sleep(0.001)
    p = mp.get_context("fork").Process(target=child)
    p.start()
    p.join(20)
    done.set()
    t.join()
    sys.exit(0)
