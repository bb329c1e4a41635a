# SPDX-License-Identifier: MIT
"""A thread uses sqlite3 (SQLite's own mutexes are held while it runs, with
the GIL released) while multiprocessing forks workers that use sqlite3
too. Prints 'sqlite: hung H of N' (a worker that has not finished within
its deadline is killed and counted) and exits 0.

  py_sqlite_fork.py [N]"""
import multiprocessing
import sqlite3
import sys
import threading


def busy(stop, ready):
    db = sqlite3.connect(':memory:', check_same_thread=False)
    db.execute('create table t(x)')
    ready.set()
    n = 0
    while not stop.is_set():
        # randomblob() holds SQLite's PRNG mutex while it draws.
        db.execute('insert into t values (randomblob(50000))')
        db.execute('select count(*), sum(length(x)) from t').fetchall()
        n += 1
        if n % 20 == 0:
            db.execute('delete from t')


def worker():
    db = sqlite3.connect(':memory:')
    db.execute('create table w(y)')
    db.execute('insert into w values (randomblob(16))')
    db.execute('select * from w').fetchall()
    db.close()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    ctx = multiprocessing.get_context('fork')
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=busy, args=(stop, ready), name='sqlite-busy')
    t.start()
    ready.wait()
    hung = 0
    for _ in range(n):
        p = ctx.Process(target=worker)
        p.start()
        p.join(1)
        if p.is_alive():
            hung += 1
            p.kill()
            p.join()
    stop.set()
    t.join()
    print('sqlite: hung %d of %d' % (hung, n), flush=True)


if __name__ == '__main__':
    main()
