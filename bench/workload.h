/* SPDX-License-Identifier: MIT */
/*
 * workload.h: the in-process workloads bench-audit and bench-run both
 * time in a fresh process with and without their interposer.
 */
#ifndef FORKSAFE_BENCH_WORKLOAD_H
#define FORKSAFE_BENCH_WORKLOAD_H

/* ns of CPU per lock+unlock pair: threads threads, each with its own
   mutex, do pairs pairs at once after a barrier (the threads' own CPU
   time over their loops, summed, / (threads * pairs)), each mutex on
   a cache line of its own. On a machine with fewer cores than threads, or
   shared with other work, CPU time is what the pairs cost; wall time is
   mostly how the scheduler shared the cores. */
double bench_mutex_pairs_cpu(int threads, long pairs);

/* µs per fork + child _exit + waitpid, forks times, while idle threads
   threads (at most 64) block in read(). If cpu_us is not NULL, *cpu_us
   gets the CPU µs per fork over the same loop: this process's user and
   system time (the forking thread's, fork itself included; the idle
   threads add none) and its reaped children's (RUSAGE_CHILDREN), so the
   program's own start is not counted. Exits 3-5 if something fails. */
double bench_fork_wait(int idle, int forks, double *cpu_us);

#endif
