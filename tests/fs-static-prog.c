/* SPDX-License-Identifier: MIT */
/*
 * fs-static-prog.c: a program that links libforksafe.a with -rdynamic (as
 * programs that load plugins often do), for test-exports.c: it must not
 * export libforksafe's interposers (__cxa_finalize, __register_atfork).
 */
#include "forksafe.h"

int main(void)
{
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    return forksafe_register_mutex(&m, "m", 1) == 0 ? 0 : 1;
}
