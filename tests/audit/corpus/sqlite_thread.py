# SPDX-License-Identifier: MIT
"""Hazard: a thread opened an SQLite connection that is still open when the
process forks, and the child runs on (uses its own connection to the same
database)."""
import os
import sqlite3
import sys
import threading

path = sys.argv[1]
ready = threading.Event()
done = threading.Event()


def worker():
    db = sqlite3.connect(path)
    db.execute("create table if not exists t(x)")
    db.commit()
    ready.set()
    done.wait()
    db.close()


t = threading.Thread(target=worker)
t.start()
ready.wait()
pid = os.fork()
if pid == 0:
    db = sqlite3.connect(path)
    db.execute("select count(*) from t").fetchall()
    os._exit(0)
_, status = os.waitpid(pid, 0)
done.set()
t.join()
sys.exit(0 if status == 0 else 1)
