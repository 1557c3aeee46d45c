#include "fieldcheck.h"

#include <bson/bson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>


void fc_set_err(char *err, size_t err_len, const char *fmt, ...) {
    va_list ap;

    if (err == NULL || err_len == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}


int fc_text(const char *s,
            size_t max,
            int identifier,
            const char *field,
            char *err,
            size_t err_len) {
    size_t len = s == NULL ? 0 : strlen(s);

    if (len > max) {
        fc_set_err(err, err_len, "%s is longer than %zu bytes", field, max);
        return 0;
    }
    if (len > 0 && !bson_utf8_validate(s, len, false)) {
        fc_set_err(err, err_len, "%s is not valid UTF-8", field);
        return 0;
    }
    for (size_t i = 0; identifier && i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f) {
            fc_set_err(err, err_len, "%s contains a control character", field);
            return 0;
        }
    }
    return 1;
}


int fc_metadata(Cpstore__V1__MetadataEntry *const *entries,
                size_t n,
                size_t max_entries,
                size_t key_max,
                size_t value_max,
                char *err,
                size_t err_len) {
    if (n > max_entries) {
        fc_set_err(err, err_len, "more than %zu metadata entries", max_entries);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const Cpstore__V1__MetadataEntry *m = entries[i];

        if (m == NULL || m->key == NULL || m->key[0] == '\0') {
            fc_set_err(err, err_len, "metadata[%zu] has no key", i);
            return 0;
        }
        if (!fc_text(m->key, key_max, 1, "metadata key", err, err_len) ||
            !fc_text(m->value, value_max, 0, "metadata value", err, err_len)) {
            return 0;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(entries[j]->key, m->key) == 0) {
                fc_set_err(err, err_len, "metadata[%zu] repeats a key", i);
                return 0;
            }
        }
    }
    return 1;
}
