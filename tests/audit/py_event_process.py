# SPDX-License-Identifier: MIT
"""The issue's reproducer: a thread waits on a multiprocessing.Event,
drops it (its semaphores are sem_close'd, which unmaps them) and stays
alive while the main thread starts a Process with the fork method. Under
the old interposer the fork read the unmapped semaphores and died."""
import multiprocessing as mp
import threading
import time


def work(done):
    ev = mp.Event()
    ev.wait(0.01)       # times out: the Condition counts a sleeper
    ev.set()            # notify_all takes the counting semaphores
    del ev              # sem_close: the semaphores are unmapped
    done.set()
    time.sleep(5)       # stay alive across the fork


done = threading.Event()
threading.Thread(target=work, args=(done,), daemon=True).start()
done.wait()
p = mp.get_context('fork').Process(target=print, args=('child ok',))
p.start()
p.join()
print('parent ok', p.exitcode)
