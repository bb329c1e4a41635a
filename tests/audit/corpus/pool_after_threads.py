# SPDX-License-Identifier: MIT
"""Hazard: a ProcessPoolExecutor (fork start method) started while a
ThreadPoolExecutor's worker threads are alive."""
import concurrent.futures as cf
import multiprocessing as mp
import sys


def square(x):
    return x * x


if __name__ == "__main__":
    with cf.ThreadPoolExecutor(2) as tp:
        list(tp.map(square, range(8)))
        with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as pp:
            assert list(pp.map(square, range(8))) == [x * x for x in range(8)]
    sys.exit(0)
