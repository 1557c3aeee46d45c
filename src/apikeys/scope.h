/*
 * Scopes of API keys (DESIGN.md section 5, "API keys").
 *
 * A scope is two or more non-empty segments separated by ':', the first
 * naming a resource and the rest an action ("memory:read", "memory:x:y"),
 * or the single segment "*". Characters are printable ASCII other than
 * space; '*' may appear only as a whole final segment ("memory:*") or
 * alone ("*"). At most LIM_SCOPE_MAX bytes.
 *
 * Granting is by whole segments, never by substring or prefix:
 *   - a scope grants itself;
 *   - "a:*" grants every scope whose leading segments are "a" followed by at
 *     least one more segment ("a:read", "a:x:y", "a:*"), but not "ab:read";
 *   - "*" grants every scope.
 * So "memory:read" does not grant "memory:readwrite", and "read:*" does not
 * grant "write:x".
 */
#ifndef CPSTORE_SCOPE_H
#define CPSTORE_SCOPE_H

#include <stddef.h>

/* 1 if the NUL-terminated s is a valid scope, else 0. NULL is invalid. */
int scope_valid(const char *s);

/* 1 if the granted scope grants the required one, else 0. Both are
 * expected valid; an invalid granted scope grants only an identical one. */
int scope_grants(const char *granted, const char *required);

/*
 * 1 if every one of the n_required scopes is granted by at least one of
 * the n_granted scopes, else 0. No required scope is always sufficient.
 */
int scope_sufficient(char *const *granted,
                     size_t n_granted,
                     char *const *required,
                     size_t n_required);

#endif
