/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/test-adapter-exports.c: every adapter library exports its
 * own forksafe_<lib>_* functions and nothing else; in particular nothing of
 * the helper all adapters link statically (adapters/common/), whose
 * forksafe__adapter_* and forksafe__list_* functions stay hidden.
 * FS_ADAPTER_SOS lists the built adapters as "name=path" words.
 */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_adapters_export_only_their_api(void **state)
{
    (void)state;
    char list[] = FS_ADAPTER_SOS;
    int adapters = 0;
    for (char *w = strtok(list, " "); w != NULL; w = strtok(NULL, " ")) {
        char *path = strchr(w, '=');
        assert_non_null(path);
        *path++ = '\0';
        char prefix[64], cmd[1200];
        snprintf(prefix, sizeof prefix, "forksafe_%s_", w);
        snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s'", path);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char line[512];
        int own = 0;
        while (fgets(line, sizeof line, p)) {
            char addr[64], type[8], name[256];
            if (sscanf(line, "%63s %7s %255s", addr, type, name) != 3)
                continue;
            if (strncmp(name, prefix, strlen(prefix)) == 0) {
                own++;
                continue;
            }
            fail_msg("%s exports %s", path, name);
        }
        assert_int_equal(pclose(p), 0);
        assert_true(own >= 2); /* at least _install and _uninstall */
        adapters++;
    }
    assert_true(adapters > 0);
}

int main(void)
{
    fs_watchdog(60);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adapters_export_only_their_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
