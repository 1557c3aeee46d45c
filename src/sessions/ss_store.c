/* Session records: what both stores share. */
#include "ss_store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"


void ss_set_err(char *err, size_t err_len, const char *fmt, ...) {
    va_list ap;

    if (err == NULL || err_len == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}


void ss_record_init(ss_record_t *rec) {
    memset(rec, 0, sizeof(*rec));
}


void ss_record_clear(ss_record_t *rec) {
    for (size_t i = 0; i < rec->n_metadata; i++) {
        free(rec->metadata[i].key);
        free(rec->metadata[i].value);
    }
    free(rec->metadata);
    ss_record_init(rec);
}


int ss_record_copy(ss_record_t *dst, const ss_record_t *src) {
    *dst = *src;
    dst->metadata = NULL;
    dst->n_metadata = 0;
    if (src->n_metadata == 0) {
        return CPS_OK;
    }
    dst->metadata = calloc(src->n_metadata, sizeof(*dst->metadata));
    if (dst->metadata == NULL) {
        ss_record_init(dst);
        return CPS_INTERNAL;
    }
    for (size_t i = 0; i < src->n_metadata; i++) {
        dst->n_metadata = i + 1;
        dst->metadata[i].key = strdup(src->metadata[i].key);
        dst->metadata[i].value = strdup(src->metadata[i].value);
        if (dst->metadata[i].key == NULL || dst->metadata[i].value == NULL) {
            ss_record_clear(dst);
            return CPS_INTERNAL;
        }
    }
    return CPS_OK;
}


int ss_record_live(const ss_record_t *rec, int64_t now_ms) {
    return rec->revoked_at_ms == 0 && now_ms < rec->idle_expires_at_ms &&
           now_ms < rec->absolute_expires_at_ms;
}
