"""A thread holds a threading.Lock while the main thread calls os.fork().
Prints the holder's native TID first, so the test can find it in the
report. The child leaves with os._exit(0); the script exits 0 when the
child did."""
import os
import threading

lock = threading.Lock()
held = threading.Event()
release = threading.Event()


def holder():
    with lock:
        print(threading.get_native_id(), flush=True)
        held.set()
        release.wait(10)


t = threading.Thread(target=holder, name="holder")
t.start()
held.wait(10)
pid = os.fork()
if pid == 0:
    os._exit(0)
_, status = os.waitpid(pid, 0)
release.set()
t.join()
raise SystemExit(0 if status == 0 else 1)
