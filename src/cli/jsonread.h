/* SPDX-License-Identifier: MIT */
/*
 * jsonread.h: a small JSON reader for forksafe-audit --baseline, which
 * reads an earlier forksafe-audit report. It parses a whole document
 * (RFC 8259) into a tree; strings are decoded to UTF-8 (\uXXXX escapes and
 * surrogate pairs included); nesting is limited to 64 levels.
 */
#ifndef FORKSAFE_JSONREAD_H
#define FORKSAFE_JSONREAD_H

#include <stddef.h>

enum forksafe_jtype { FS_J_NULL, FS_J_BOOL, FS_J_NUM, FS_J_STR, FS_J_ARR,
                      FS_J_OBJ };

struct forksafe_jval {
    enum forksafe_jtype type;
    int boolean;
    double num;
    char *str;  /* FS_J_STR; FS_J_NUM: the number as written */
    size_t n;   /* items (array) or members (object) */
    struct forksafe_jval *items;
    char **keys; /* object member names, parallel to items */
};

/* Parse text[0, len). Returns the tree (free with forksafe__jval_free), or
   NULL with a one-line reason in err (with the byte offset). */
struct forksafe_jval *forksafe__json_parse(const char *text, size_t len,
                                           char *err, size_t errlen);
/* The member key of an object, or NULL (also when v is not an object). */
const struct forksafe_jval *forksafe__jval_get(const struct forksafe_jval *v,
                                               const char *key);
/* The string of member key, or NULL when absent or not a string. */
const char *forksafe__jval_str(const struct forksafe_jval *v, const char *key);
void forksafe__jval_free(struct forksafe_jval *v);

#endif
