/* SPDX-License-Identifier: MIT */
/*
 * version.c: the version of the library in use, for programs that check at
 * run time that the library is the one (or newer than the one) they were
 * compiled against. The numbers come from include/forksafe.h.
 */
#include "forksafe.h"

unsigned forksafe_version(void)
{
    return FORKSAFE_VERSION_NUM;
}

const char *forksafe_version_string(void)
{
    return FORKSAFE_VERSION_STRING;
}
