/*
 * Scope validation and matching. Matching works on whole segments: a
 * wildcard "res:*" is turned into the literal prefix "res:" (separator
 * included), so "res:*" can only ever reach scopes that continue after a
 * ':' and never a resource that merely starts with the same letters.
 */
#include "scope.h"

#include <string.h>

#include "field_limits.h"


int scope_valid(const char *s) {
    size_t len;
    size_t segments = 1;
    size_t seg_len = 0;

    if (s == NULL) {
        return 0;
    }
    len = strlen(s);
    if (len == 0 || len > LIM_SCOPE_MAX) {
        return 0;
    }
    if (strcmp(s, "*") == 0) {
        return 1;
    }

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        /* Printable ASCII without space: no whitespace, control or
         * non-ASCII bytes, which would make scopes look alike. */
        if (c <= 0x20 || c >= 0x7f) {
            return 0;
        }
        if (c == ':') {
            if (seg_len == 0) {
                return 0;
            }
            segments++;
            seg_len = 0;
            continue;
        }
        if (c == '*') {
            /* Only as a whole final segment: ":*" at the very end. */
            int whole = seg_len == 0 && i + 1 == len && segments > 1;

            if (!whole) {
                return 0;
            }
        }
        seg_len++;
    }
    return seg_len > 0 && segments >= 2;
}


int scope_grants(const char *granted, const char *required) {
    size_t glen;

    if (granted == NULL || required == NULL) {
        return 0;
    }
    if (strcmp(granted, required) == 0) {
        return 1;
    }
    if (!scope_valid(granted)) {
        return 0;
    }
    if (strcmp(granted, "*") == 0) {
        return 1;
    }

    glen = strlen(granted);
    if (glen < 2 || granted[glen - 1] != '*' || granted[glen - 2] != ':') {
        return 0;
    }
    /* "res:*" grants "res:" followed by at least one more character. */
    return strlen(required) > glen - 1 &&
           strncmp(granted, required, glen - 1) == 0;
}


int scope_sufficient(char *const *granted,
                     size_t n_granted,
                     char *const *required,
                     size_t n_required) {
    for (size_t r = 0; r < n_required; r++) {
        int ok = 0;

        for (size_t g = 0; g < n_granted && !ok; g++) {
            ok = scope_grants(granted[g], required[r]);
        }
        if (!ok) {
            return 0;
        }
    }
    return 1;
}
