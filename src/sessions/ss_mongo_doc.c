/*
 * The documents of the MongoDB session store (their layout is described
 * atop ss_mongo.c), to and from bson. Reading checks every field's type and
 * bound, so a malformed stored document is an error, never a session with
 * made-up values.
 */
#include "ss_mongo.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>


void ssm_record_to_bson(const ss_record_t *rec, bson_t *doc) {
    bson_t array;
    bson_t entry;
    char idx[16];
    const char *idx_key;

    BSON_APPEND_UTF8(doc, "_id", rec->session_id);
    BSON_APPEND_INT32(doc, "v", SSM_VERSION);
    BSON_APPEND_BINARY(doc, "token_hash", BSON_SUBTYPE_BINARY, rec->hash,
                       SS_HASH_LEN);
    BSON_APPEND_UTF8(doc, "user_id", rec->user_id);
    BSON_APPEND_UTF8(doc, "kind", rec->kind);
    BSON_APPEND_DATE_TIME(doc, "created_at", rec->created_at_ms);
    BSON_APPEND_INT64(doc, "idle_timeout_ms", rec->idle_timeout_ms);
    BSON_APPEND_DATE_TIME(doc, "idle_expires_at", rec->idle_expires_at_ms);
    BSON_APPEND_DATE_TIME(doc, "absolute_expires_at",
                          rec->absolute_expires_at_ms);
    BSON_APPEND_DATE_TIME(doc, "last_seen_at", rec->last_seen_at_ms);
    BSON_APPEND_ARRAY_BEGIN(doc, "metadata", &array);
    for (size_t i = 0; i < rec->n_metadata; i++) {
        bson_uint32_to_string((uint32_t)i, &idx_key, idx, sizeof(idx));
        BSON_APPEND_DOCUMENT_BEGIN(&array, idx_key, &entry);
        BSON_APPEND_UTF8(&entry, "key", rec->metadata[i].key);
        BSON_APPEND_UTF8(&entry, "value", rec->metadata[i].value);
        bson_append_document_end(&array, &entry);
    }
    bson_append_array_end(doc, &array);
}


/* A string field into a fixed buffer; 0 when absent, not a string, holding
 * a NUL or longer than cap - 1. */
int ssm_read_fixed(const bson_t *doc, const char *key, char *out, size_t cap) {
    bson_iter_t it;
    const char *s;
    uint32_t len;

    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_UTF8(&it)) {
        return 0;
    }
    s = bson_iter_utf8(&it, &len);
    if (len >= cap || memchr(s, '\0', len) != NULL) {
        return 0;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return 1;
}


static int ssm_read_dup(const bson_t *doc, const char *key, char **out) {
    bson_iter_t it;
    const char *s;
    uint32_t len;

    *out = NULL;
    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_UTF8(&it)) {
        return 0;
    }
    s = bson_iter_utf8(&it, &len);
    if (memchr(s, '\0', len) != NULL) {
        return 0;
    }
    *out = strndup(s, len);
    return *out != NULL;
}


int ssm_read_date(const bson_t *doc, const char *key, int64_t *out) {
    bson_iter_t it;

    if (!bson_iter_init_find(&it, doc, key) ||
        !BSON_ITER_HOLDS_DATE_TIME(&it)) {
        return 0;
    }
    *out = bson_iter_date_time(&it);
    return 1;
}


static int ssm_read_int(const bson_t *doc, const char *key, int64_t *out) {
    bson_iter_t it;

    if (!bson_iter_init_find(&it, doc, key) ||
        !(BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it))) {
        return 0;
    }
    *out = bson_iter_as_int64(&it);
    return 1;
}


static int ssm_read_hash(const bson_t *doc, uint8_t hash[SS_HASH_LEN]) {
    bson_iter_t it;
    bson_subtype_t subtype;
    const uint8_t *data;
    uint32_t len;

    if (!bson_iter_init_find(&it, doc, "token_hash") ||
        !BSON_ITER_HOLDS_BINARY(&it)) {
        return 0;
    }
    bson_iter_binary(&it, &subtype, &len, &data);
    if (len != SS_HASH_LEN) {
        return 0;
    }
    memcpy(hash, data, SS_HASH_LEN);
    return 1;
}


static int ssm_read_meta_entry(bson_iter_t *entry, ss_meta_t *meta) {
    bson_t sub;
    const uint8_t *data;
    uint32_t len;

    if (!BSON_ITER_HOLDS_DOCUMENT(entry)) {
        return 0;
    }
    bson_iter_document(entry, &len, &data);
    if (!bson_init_static(&sub, data, len)) {
        return 0;
    }
    return ssm_read_dup(&sub, "key", &meta->key) &&
           ssm_read_dup(&sub, "value", &meta->value);
}


static int ssm_read_metadata(const bson_t *doc, ss_record_t *rec) {
    bson_iter_t it;
    bson_iter_t child;
    size_t n = 0;

    if (!bson_iter_init_find(&it, doc, "metadata") ||
        !BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &child)) {
        return 0;
    }
    while (bson_iter_next(&child)) {
        n++;
    }
    if (n == 0) {
        return 1;
    }
    if (n > SS_META_MAX) {
        return 0;
    }
    rec->metadata = calloc(n, sizeof(*rec->metadata));
    if (rec->metadata == NULL || !bson_iter_recurse(&it, &child)) {
        return 0;
    }
    while (bson_iter_next(&child) && rec->n_metadata < n) {
        /* Counted before reading, so a half-read entry is still freed. */
        rec->n_metadata++;
        if (!ssm_read_meta_entry(&child, &rec->metadata[rec->n_metadata - 1])) {
            return 0;
        }
    }
    return 1;
}


int ssm_record_from_bson(const bson_t *doc, ss_record_t *rec) {
    return ssm_read_fixed(doc, "_id", rec->session_id,
                          sizeof(rec->session_id)) &&
           ssm_read_hash(doc, rec->hash) &&
           ssm_read_fixed(doc, "user_id", rec->user_id, sizeof(rec->user_id)) &&
           ssm_read_fixed(doc, "kind", rec->kind, sizeof(rec->kind)) &&
           ssm_read_date(doc, "created_at", &rec->created_at_ms) &&
           ssm_read_int(doc, "idle_timeout_ms", &rec->idle_timeout_ms) &&
           ssm_read_date(doc, "idle_expires_at", &rec->idle_expires_at_ms) &&
           ssm_read_date(doc, "absolute_expires_at",
                         &rec->absolute_expires_at_ms) &&
           ssm_read_date(doc, "last_seen_at", &rec->last_seen_at_ms) &&
           ssm_read_metadata(doc, rec);
}


void ssm_revocation_to_bson(const char *session_id,
                            const char *user_id,
                            int64_t revoked_at_ms,
                            int64_t expires_at_ms,
                            bson_t *doc) {
    BSON_APPEND_UTF8(doc, "_id", session_id);
    BSON_APPEND_UTF8(doc, "user_id", user_id);
    BSON_APPEND_DATE_TIME(doc, "revoked_at", revoked_at_ms);
    BSON_APPEND_DATE_TIME(doc, "expires_at", expires_at_ms);
}
