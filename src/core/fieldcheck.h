/*
 * Checks of request fields shared by the services: text fields and
 * metadata lists. Each returns 1 when the field is acceptable, else 0 with
 * a short reason in err that names the field but never quotes its value
 * (a value may be a secret sent in the wrong field).
 */
#ifndef CPSTORE_FIELDCHECK_H
#define CPSTORE_FIELDCHECK_H

#include <stddef.h>

#include "cpstore/v1/common.pb-c.h"

/* Write a printf-style reason into err (err may be NULL). */
void fc_set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * A text field: at most max bytes of valid UTF-8 (NULL counts as empty).
 * Identifiers (ids, kinds, metadata keys) also exclude control characters,
 * which would make log lines and listings ambiguous.
 */
int fc_text(const char *s,
            size_t max,
            int identifier,
            const char *field,
            char *err,
            size_t err_len);

/*
 * A metadata list: at most max_entries entries, each with a non-empty
 * identifier key of at most key_max bytes and a text value of at most
 * value_max bytes, and no key twice.
 */
int fc_metadata(Cpstore__V1__MetadataEntry *const *entries,
                size_t n,
                size_t max_entries,
                size_t key_max,
                size_t value_max,
                char *err,
                size_t err_len);

#endif
