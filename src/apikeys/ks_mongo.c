/*
 * MongoDB key store: collection `api_keys`, one document per key.
 *
 *   _id           key_id (string)
 *   v             layout version (int32, 1)
 *   key_hash      HMAC-SHA256 of the key (binary, subtype 0, 32 bytes)
 *   hint, user_id, name                     strings (name may be null)
 *   scopes        array of strings
 *   org_id, project_id                      string or null
 *   rotated_from, rotated_to                key_id or null: the key this
 *                 one replaced, the key that replaced it
 *   created_at    date (UTC ms)
 *   expires_at    date, or null for never
 *   revoked_at    date, or null while not revoked
 *   last_used_at  date, or null (absent in documents written before it)
 *   metadata      array of {key, value} documents (keys are caller data,
 *                 so they are values here, never field names)
 *
 * A key is created with one insert of one whole document: there is no
 * moment at which the key exists without its scopes, expiry or binding,
 * and a failed insert leaves nothing behind. A rotated key is such an
 * insert too.
 *
 * Rotation claims: collection `key_rotations`, one document per rotated
 * key, written before anything else of a rotation:
 *
 *   _id           the rotated (old) key's key_id
 *   v             layout version (int32, 1)
 *   successor     key_id of the key that replaces it
 *   at            date the rotation was claimed
 *
 * Why an insert. Of concurrent rotations of one key exactly one may stand.
 * A conditional update of the old key ({rotated_to: null} -> set) cannot
 * decide that on FerretDB v1, which runs an update as a read and then a
 * write, so several callers all read "not rotated" and all win. An insert
 * is decided by the server's storage engine against the unique _id, on
 * MongoDB and FerretDB alike: one succeeds, every other gets duplicate key
 * error 11000 (CPS_ALREADY_EXISTS), and then reads the claim to name the
 * winner's successor. The same rule as the spent marks of tk_mongo.c. The
 * winner alone then inserts the successor and retires the old key, so the
 * read-then-write retire below never has a concurrent writer. A claim is
 * removed only by its own winner, with a filter on its successor, when the
 * rotation could not be finished.
 *
 * Indexes: unique on key_hash (the lookup of every verify, and a second
 * guard that two keys never share a hash) and {user_id, created_at} for
 * listing a user's keys. They are created by ks_mongo_new(); if the server
 * is unreachable then, by the first insert instead.
 *
 * Changes. Revoke, retire and touch are updateOne calls whose filter or
 * operator makes them one-way: revoked_at is set only where it is null,
 * expires_at only lowered, last_used_at only raised ($max). On MongoDB
 * each is atomic. FerretDB v1 runs an update as a read and then a write,
 * so two instances changing the same field at the same moment may leave
 * the second writer's value: for revoke, a revocation time a few
 * milliseconds after the first (the key is revoked either way); for
 * touch, a last-used time a little earlier than the latest. Retire has no
 * such race: only the holder of a rotation's claim retires the key. None
 * of them ever turns a revoked key valid or extends a key past its own
 * expiry. Revoke and retire then read the record back, so that the caller
 * sees what is stored.
 *
 * Deadlines: reads and createIndexes carry the time left as maxTimeMS.
 * Insert, update and delete do not, since maxTimeMS is not among the
 * options mongoc_collection_insert_one(), _update_one() and _delete_one()
 * document; they are bounded by the selection and socket timeouts that
 * mg_open sets.
 *
 * This code runs on FerretDB v1 too: it uses only insert, find with sort,
 * limit and maxTimeMS, updateOne with $set, $min and $max, deleteOne,
 * createIndexes (plain, compound and unique) and ping.
 */
#include "keystore.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mongo.h"
#include "status.h"

#define KSM_COLLECTION "api_keys"
#define KSM_CLAIMS     "key_rotations"
#define KSM_VERSION    1

typedef struct ks_mongo {
    ks_store_t base; /* first member */
    mg_t *mg;
    mg_index_set_t *indexes;
} ks_mongo_t;

static const mg_index_t ksm_indexes[] = {
    {.collection = KSM_COLLECTION,
     .name = "key_hash_unique",
     .keys = {{"key_hash", 1}},
     .unique = true},
    {.collection = KSM_COLLECTION,
     .name = "user_id_created_at",
     .keys = {{"user_id", 1}, {"created_at", 1}}},
};


static void ksm_set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


static void ksm_set_err(char *err, size_t err_len, const char *fmt, ...) {
    va_list ap;

    if (err == NULL || err_len == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}


static void ksm_append_opt_utf8(bson_t *doc, const char *key, const char *s) {
    if (s != NULL) {
        BSON_APPEND_UTF8(doc, key, s);
    } else {
        BSON_APPEND_NULL(doc, key);
    }
}


static void ksm_append_opt_date(bson_t *doc, const char *key, int64_t ms) {
    if (ms != 0) {
        BSON_APPEND_DATE_TIME(doc, key, ms);
    } else {
        BSON_APPEND_NULL(doc, key);
    }
}


static void ksm_append_lists(bson_t *doc, const ks_record_t *rec) {
    bson_t array;
    bson_t entry;
    char idx[16];
    const char *idx_key;

    BSON_APPEND_ARRAY_BEGIN(doc, "scopes", &array);
    for (size_t i = 0; i < rec->n_scopes; i++) {
        bson_uint32_to_string((uint32_t)i, &idx_key, idx, sizeof(idx));
        BSON_APPEND_UTF8(&array, idx_key, rec->scopes[i]);
    }
    bson_append_array_end(doc, &array);

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


static void ksm_record_to_bson(const ks_record_t *rec, bson_t *doc) {
    BSON_APPEND_UTF8(doc, "_id", rec->key_id);
    BSON_APPEND_INT32(doc, "v", KSM_VERSION);
    BSON_APPEND_BINARY(doc, "key_hash", BSON_SUBTYPE_BINARY, rec->hash,
                       KS_HASH_LEN);
    BSON_APPEND_UTF8(doc, "hint", rec->hint);
    BSON_APPEND_UTF8(doc, "user_id", rec->user_id);
    ksm_append_opt_utf8(doc, "name", rec->name);
    ksm_append_opt_utf8(doc, "org_id", rec->org_id);
    ksm_append_opt_utf8(doc, "project_id", rec->project_id);
    BSON_APPEND_DATE_TIME(doc, "created_at", rec->created_at_ms);
    ksm_append_opt_date(doc, "expires_at", rec->expires_at_ms);
    ksm_append_opt_date(doc, "revoked_at", rec->revoked_at_ms);
    ksm_append_opt_date(doc, "last_used_at", rec->last_used_at_ms);
    ksm_append_opt_utf8(doc, "rotated_from", rec->rotated_from);
    ksm_append_opt_utf8(doc, "rotated_to", rec->rotated_to);
    ksm_append_lists(doc, rec);
}


static int ksm_insert(ks_store_t *store,
                      const ks_record_t *rec,
                      int64_t deadline_mono_ms,
                      char *err,
                      size_t err_len) {
    ks_mongo_t *m = (ks_mongo_t *)store;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    bson_error_t error;
    bson_t doc = BSON_INITIALIZER;
    int rc;

    if (rec->key_id == NULL || rec->hint == NULL || rec->user_id == NULL) {
        ksm_set_err(err, err_len, "record lacks key_id, hint or user_id");
        return CPS_INTERNAL;
    }
    rc = mg_ensure_indexes(m->indexes, deadline_mono_ms, err, err_len);
    if (rc != CPS_OK) {
        return rc;
    }

    ksm_record_to_bson(rec, &doc);
    client = mg_pop(m->mg);
    if (client == NULL) {
        bson_destroy(&doc);
        ksm_set_err(err, err_len, "insert: no MongoDB client");
        return CPS_UNAVAILABLE;
    }
    coll = mongoc_client_get_collection(client, mg_database_name(m->mg),
                                        KSM_COLLECTION);
    if (!mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error)) {
        rc = mg_error(&error, "insert into " KSM_COLLECTION, err, err_len);
        /* Whatever the cause, the key was not stored: the caller must see
         * a failed write, and retrying is its decision. */
        if (rc == CPS_INTERNAL) {
            rc = CPS_UNAVAILABLE;
        }
    }
    mongoc_collection_destroy(coll);
    mg_push(m->mg, client);
    bson_destroy(&doc);
    return rc;
}


/* Parsing a stored document. Each reader returns 1 when the field is
 * well-formed (absent and null count as "not set" for optional fields). */

static int
ksm_read_str(const bson_t *doc, const char *key, int required, char **out) {
    bson_iter_t it;
    const char *s;
    uint32_t len;

    *out = NULL;
    if (!bson_iter_init_find(&it, doc, key) || BSON_ITER_HOLDS_NULL(&it)) {
        return !required;
    }
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        return 0;
    }
    s = bson_iter_utf8(&it, &len);
    if (memchr(s, '\0', len) != NULL) {
        return 0;
    }
    *out = strndup(s, len);
    return *out != NULL;
}


static int
ksm_read_date(const bson_t *doc, const char *key, int required, int64_t *out) {
    bson_iter_t it;

    *out = 0;
    if (!bson_iter_init_find(&it, doc, key) || BSON_ITER_HOLDS_NULL(&it)) {
        return !required;
    }
    if (!BSON_ITER_HOLDS_DATE_TIME(&it)) {
        return 0;
    }
    *out = bson_iter_date_time(&it);
    return 1;
}


static int ksm_read_hash(const bson_t *doc, uint8_t hash[KS_HASH_LEN]) {
    bson_iter_t it;
    bson_subtype_t subtype;
    const uint8_t *data;
    uint32_t len;

    if (!bson_iter_init_find(&it, doc, "key_hash") ||
        !BSON_ITER_HOLDS_BINARY(&it)) {
        return 0;
    }
    bson_iter_binary(&it, &subtype, &len, &data);
    if (len != KS_HASH_LEN) {
        return 0;
    }
    memcpy(hash, data, KS_HASH_LEN);
    return 1;
}


/* Count the elements of the array at `it` and enter it. */
static size_t ksm_array_len(bson_iter_t *it, bson_iter_t *child) {
    size_t n = 0;
    bson_iter_t count;

    bson_iter_recurse(it, child);
    bson_iter_recurse(it, &count);
    while (bson_iter_next(&count)) {
        n++;
    }
    return n;
}


static int ksm_read_scopes(const bson_t *doc, ks_record_t *rec) {
    bson_iter_t it;
    bson_iter_t child;
    size_t n;

    if (!bson_iter_init_find(&it, doc, "scopes") || BSON_ITER_HOLDS_NULL(&it)) {
        return 1;
    }
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        return 0;
    }
    n = ksm_array_len(&it, &child);
    if (n == 0) {
        return 1;
    }
    rec->scopes = calloc(n, sizeof(*rec->scopes));
    if (rec->scopes == NULL) {
        return 0;
    }
    while (bson_iter_next(&child) && rec->n_scopes < n) {
        uint32_t len;
        const char *s;

        if (!BSON_ITER_HOLDS_UTF8(&child)) {
            return 0;
        }
        s = bson_iter_utf8(&child, &len);
        if (memchr(s, '\0', len) != NULL) {
            return 0;
        }
        rec->scopes[rec->n_scopes] = strndup(s, len);
        if (rec->scopes[rec->n_scopes] == NULL) {
            return 0;
        }
        rec->n_scopes++;
    }
    return 1;
}


static int ksm_read_meta_entry(bson_iter_t *entry, ks_meta_t *meta) {
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
    return ksm_read_str(&sub, "key", 1, &meta->key) &&
           ksm_read_str(&sub, "value", 1, &meta->value);
}


static int ksm_read_metadata(const bson_t *doc, ks_record_t *rec) {
    bson_iter_t it;
    bson_iter_t child;
    size_t n;

    if (!bson_iter_init_find(&it, doc, "metadata") ||
        BSON_ITER_HOLDS_NULL(&it)) {
        return 1;
    }
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        return 0;
    }
    n = ksm_array_len(&it, &child);
    if (n == 0) {
        return 1;
    }
    rec->metadata = calloc(n, sizeof(*rec->metadata));
    if (rec->metadata == NULL) {
        return 0;
    }
    while (bson_iter_next(&child) && rec->n_metadata < n) {
        /* Counted before reading, so a half-read entry is still freed. */
        rec->n_metadata++;
        if (!ksm_read_meta_entry(&child, &rec->metadata[rec->n_metadata - 1])) {
            return 0;
        }
    }
    return 1;
}


/* An empty string in an optional field means "not set", as NULL does. */
static void ksm_empty_to_null(char **s) {
    if (*s != NULL && **s == '\0') {
        free(*s);
        *s = NULL;
    }
}


static int ksm_record_from_bson(const bson_t *doc, ks_record_t *rec) {
    int ok = ksm_read_str(doc, "_id", 1, &rec->key_id) &&
             ksm_read_hash(doc, rec->hash) &&
             ksm_read_str(doc, "hint", 1, &rec->hint) &&
             ksm_read_str(doc, "user_id", 1, &rec->user_id) &&
             ksm_read_str(doc, "name", 0, &rec->name) &&
             ksm_read_str(doc, "org_id", 0, &rec->org_id) &&
             ksm_read_str(doc, "project_id", 0, &rec->project_id) &&
             ksm_read_str(doc, "rotated_from", 0, &rec->rotated_from) &&
             ksm_read_str(doc, "rotated_to", 0, &rec->rotated_to) &&
             ksm_read_date(doc, "created_at", 1, &rec->created_at_ms) &&
             ksm_read_date(doc, "expires_at", 0, &rec->expires_at_ms) &&
             ksm_read_date(doc, "revoked_at", 0, &rec->revoked_at_ms) &&
             ksm_read_date(doc, "last_used_at", 0, &rec->last_used_at_ms) &&
             ksm_read_scopes(doc, rec) && ksm_read_metadata(doc, rec);

    ksm_empty_to_null(&rec->org_id);
    ksm_empty_to_null(&rec->project_id);
    ksm_empty_to_null(&rec->rotated_from);
    ksm_empty_to_null(&rec->rotated_to);
    return ok;
}


static void ksm_find_opts(bson_t *opts, int64_t max_time) {
    BSON_APPEND_INT64(opts, "limit", 1);
    BSON_APPEND_BOOL(opts, "singleBatch", true);
    if (max_time > 0) {
        BSON_APPEND_INT64(opts, "maxTimeMS", max_time);
    }
}


/* Fill *out with the one document that filter matches. */
static int ksm_find_one(ks_mongo_t *m,
                        const bson_t *filter,
                        int64_t deadline_mono_ms,
                        ks_record_t *out,
                        char *err,
                        size_t err_len) {
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    mongoc_cursor_t *cursor;
    const bson_t *doc;
    bson_error_t error;
    bson_t opts = BSON_INITIALIZER;
    int64_t max_time;
    int rc;

    rc = mg_max_time_ms(deadline_mono_ms, &max_time);
    if (rc != CPS_OK) {
        ksm_set_err(err, err_len,
                    "find in " KSM_COLLECTION ": deadline passed");
        goto done;
    }
    ksm_find_opts(&opts, max_time);

    client = mg_pop(m->mg);
    if (client == NULL) {
        ksm_set_err(err, err_len, "find: no MongoDB client");
        rc = CPS_UNAVAILABLE;
        goto done;
    }
    coll = mongoc_client_get_collection(client, mg_database_name(m->mg),
                                        KSM_COLLECTION);
    cursor = mongoc_collection_find_with_opts(coll, filter, &opts, NULL);

    rc = CPS_NOT_FOUND;
    if (mongoc_cursor_next(cursor, &doc)) {
        rc = CPS_OK;
        if (!ksm_record_from_bson(doc, out)) {
            ks_record_clear(out);
            rc = CPS_INTERNAL;
            ksm_set_err(err, err_len,
                        "stored document in " KSM_COLLECTION " is malformed");
        }
    } else if (mongoc_cursor_error(cursor, &error)) {
        rc = mg_error(&error, "find in " KSM_COLLECTION, err, err_len);
    }

    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    mg_push(m->mg, client);

done:
    bson_destroy(&opts);
    return rc;
}


static int ksm_find_by_hash(ks_store_t *store,
                            const uint8_t hash[KS_HASH_LEN],
                            int64_t deadline_mono_ms,
                            ks_record_t *out,
                            char *err,
                            size_t err_len) {
    bson_t filter = BSON_INITIALIZER;
    int rc;

    BSON_APPEND_BINARY(&filter, "key_hash", BSON_SUBTYPE_BINARY, hash,
                       KS_HASH_LEN);
    rc = ksm_find_one((ks_mongo_t *)store, &filter, deadline_mono_ms, out, err,
                      err_len);
    bson_destroy(&filter);
    return rc;
}


static int ksm_find_by_id(ks_store_t *store,
                          const char *key_id,
                          int64_t deadline_mono_ms,
                          ks_record_t *out,
                          char *err,
                          size_t err_len) {
    bson_t filter = BSON_INITIALIZER;
    int rc;

    BSON_APPEND_UTF8(&filter, "_id", key_id);
    rc = ksm_find_one((ks_mongo_t *)store, &filter, deadline_mono_ms, out, err,
                      err_len);
    bson_destroy(&filter);
    return rc;
}


/* Read up to max documents of the cursor into a new array. */
static int ksm_read_list(mongoc_cursor_t *cursor,
                         size_t max,
                         ks_record_t **out,
                         size_t *n,
                         char *err,
                         size_t err_len) {
    const bson_t *doc;
    bson_error_t error;

    *out = calloc(max, sizeof(**out));
    if (*out == NULL) {
        ksm_set_err(err, err_len, "out of memory");
        return CPS_INTERNAL;
    }
    while (*n < max && mongoc_cursor_next(cursor, &doc)) {
        /* Counted first, so that a half-read record is still cleared. */
        (*n)++;
        if (!ksm_record_from_bson(doc, &(*out)[*n - 1])) {
            ksm_set_err(err, err_len,
                        "stored document in " KSM_COLLECTION " is malformed");
            return CPS_INTERNAL;
        }
    }
    if (mongoc_cursor_error(cursor, &error)) {
        return mg_error(&error, "list in " KSM_COLLECTION, err, err_len);
    }
    return CPS_OK;
}


/* The index {user_id, created_at} serves both the filter and the sort. */
static int ksm_list_by_user(ks_store_t *store,
                            const char *user_id,
                            size_t max,
                            int64_t deadline_mono_ms,
                            ks_record_t **out,
                            size_t *n,
                            char *err,
                            size_t err_len) {
    ks_mongo_t *m = (ks_mongo_t *)store;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    mongoc_cursor_t *cursor;
    bson_t filter = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER;
    bson_t sort;
    int64_t max_time;
    int rc;

    *out = NULL;
    *n = 0;
    if (max == 0) {
        return CPS_OK;
    }
    rc = mg_max_time_ms(deadline_mono_ms, &max_time);
    if (rc != CPS_OK) {
        ksm_set_err(err, err_len,
                    "list in " KSM_COLLECTION ": deadline passed");
        return rc;
    }
    BSON_APPEND_UTF8(&filter, "user_id", user_id);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "created_at", -1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "limit", (int64_t)max);
    if (max_time > 0) {
        BSON_APPEND_INT64(&opts, "maxTimeMS", max_time);
    }

    client = mg_pop(m->mg);
    if (client == NULL) {
        ksm_set_err(err, err_len, "list: no MongoDB client");
        rc = CPS_UNAVAILABLE;
        goto done;
    }
    coll = mongoc_client_get_collection(client, mg_database_name(m->mg),
                                        KSM_COLLECTION);
    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    rc = ksm_read_list(cursor, max, out, n, err, err_len);
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    mg_push(m->mg, client);

done:
    if (rc != CPS_OK) {
        ks_records_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    bson_destroy(&opts);
    bson_destroy(&filter);
    return rc;
}


/* One updateOne; *matched receives the number of documents the filter
 * matched (0 or 1). */
static int ksm_update_one(ks_mongo_t *m,
                          const bson_t *filter,
                          const bson_t *update,
                          const char *what,
                          int64_t *matched,
                          char *err,
                          size_t err_len) {
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    bson_error_t error;
    bson_iter_t it;
    bson_t reply;
    int rc = CPS_OK;

    *matched = 0;
    client = mg_pop(m->mg);
    if (client == NULL) {
        ksm_set_err(err, err_len, "%s: no MongoDB client", what);
        return CPS_UNAVAILABLE;
    }
    coll = mongoc_client_get_collection(client, mg_database_name(m->mg),
                                        KSM_COLLECTION);
    if (!mongoc_collection_update_one(coll, filter, update, NULL, &reply,
                                      &error)) {
        rc = mg_error(&error, what, err, err_len);
        /* The change did not happen: a failed write, whatever the cause. */
        if (rc == CPS_INTERNAL) {
            rc = CPS_UNAVAILABLE;
        }
    } else if (bson_iter_init_find(&it, &reply, "matchedCount") &&
               BSON_ITER_HOLDS_NUMBER(&it)) {
        *matched = bson_iter_as_int64(&it);
    }
    bson_destroy(&reply);
    mongoc_collection_destroy(coll);
    mg_push(m->mg, client);
    return rc;
}


/* Run a one-way update of the document key_id (the filter's _id), then
 * read the document back into out. The update matching nothing is no
 * answer by itself (the change may have been made already), so the read
 * decides between "as stored" and CPS_NOT_FOUND. */
static int ksm_change_and_read(ks_mongo_t *m,
                               const char *key_id,
                               const bson_t *filter,
                               const bson_t *update,
                               const char *what,
                               int64_t deadline_mono_ms,
                               ks_record_t *out,
                               char *err,
                               size_t err_len) {
    int64_t matched;
    int rc;

    rc = ksm_update_one(m, filter, update, what, &matched, err, err_len);
    if (rc != CPS_OK) {
        return rc;
    }
    return ksm_find_by_id(&m->base, key_id, deadline_mono_ms, out, err,
                          err_len);
}


static int ksm_revoke(ks_store_t *store,
                      const char *key_id,
                      int64_t at_ms,
                      int64_t deadline_mono_ms,
                      ks_record_t *out,
                      char *err,
                      size_t err_len) {
    bson_t *filter;
    bson_t *update;
    int rc;

    /* {revoked_at: null} matches null and absent alike. */
    filter = BCON_NEW("_id", BCON_UTF8(key_id), "revoked_at", BCON_NULL);
    update = BCON_NEW("$set", "{", "revoked_at", BCON_DATE_TIME(at_ms), "}");
    rc = ksm_change_and_read((ks_mongo_t *)store, key_id, filter, update,
                             "revoke in " KSM_COLLECTION, deadline_mono_ms, out,
                             err, err_len);
    bson_destroy(update);
    bson_destroy(filter);
    return rc;
}


/* $min lowers a date but keeps a null (null sorts below every date): a
 * key that never expired gets its end from a $set that matches only while
 * expires_at is null, any other key from $min. */
static int ksm_retire(ks_store_t *store,
                      const char *key_id,
                      int64_t at_ms,
                      const char *successor,
                      int64_t deadline_mono_ms,
                      ks_record_t *out,
                      char *err,
                      size_t err_len) {
    static const char what[] = "retire in " KSM_COLLECTION;
    ks_mongo_t *m = (ks_mongo_t *)store;
    bson_t *filter;
    bson_t *update;
    int64_t matched;
    int rc;

    filter = BCON_NEW("_id", BCON_UTF8(key_id), "expires_at", BCON_NULL);
    update = BCON_NEW("$set", "{", "expires_at", BCON_DATE_TIME(at_ms),
                      "rotated_to", BCON_UTF8(successor), "}");
    rc = ksm_update_one(m, filter, update, what, &matched, err, err_len);
    bson_destroy(update);
    bson_destroy(filter);

    if (rc == CPS_OK && matched == 0) {
        filter = BCON_NEW("_id", BCON_UTF8(key_id));
        update = BCON_NEW("$min", "{", "expires_at", BCON_DATE_TIME(at_ms), "}",
                          "$set", "{", "rotated_to", BCON_UTF8(successor), "}");
        rc = ksm_update_one(m, filter, update, what, &matched, err, err_len);
        bson_destroy(update);
        bson_destroy(filter);
    }
    if (rc != CPS_OK) {
        return rc;
    }
    return ksm_find_by_id(store, key_id, deadline_mono_ms, out, err, err_len);
}


/* Read the successor named by the claim on key_id into *winner (NULL when
 * the claim is gone or malformed). */
static void ksm_read_claim(mongoc_collection_t *coll,
                           const char *key_id,
                           int64_t deadline_mono_ms,
                           char **winner) {
    mongoc_cursor_t *cursor;
    const bson_t *doc;
    bson_t filter = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER;
    int64_t max_time;

    if (mg_max_time_ms(deadline_mono_ms, &max_time) != CPS_OK) {
        max_time = 0;
    }
    ksm_find_opts(&opts, max_time);
    BSON_APPEND_UTF8(&filter, "_id", key_id);
    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    if (mongoc_cursor_next(cursor, &doc) &&
        !ksm_read_str(doc, "successor", 1, winner)) {
        free(*winner);
        *winner = NULL;
    }
    mongoc_cursor_destroy(cursor);
    bson_destroy(&opts);
    bson_destroy(&filter);
}


static int ksm_claim_rotation(ks_store_t *store,
                              const char *key_id,
                              const char *successor,
                              int64_t at_ms,
                              int64_t deadline_mono_ms,
                              char **winner,
                              char *err,
                              size_t err_len) {
    ks_mongo_t *m = (ks_mongo_t *)store;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    bson_error_t error;
    bson_t doc = BSON_INITIALIZER;
    int rc = CPS_OK;

    BSON_APPEND_UTF8(&doc, "_id", key_id);
    BSON_APPEND_INT32(&doc, "v", KSM_VERSION);
    BSON_APPEND_UTF8(&doc, "successor", successor);
    BSON_APPEND_DATE_TIME(&doc, "at", at_ms);

    client = mg_pop(m->mg);
    if (client == NULL) {
        bson_destroy(&doc);
        ksm_set_err(err, err_len, "claim: no MongoDB client");
        return CPS_UNAVAILABLE;
    }
    coll = mongoc_client_get_collection(client, mg_database_name(m->mg),
                                        KSM_CLAIMS);
    if (!mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error)) {
        rc = mg_error(&error, "insert into " KSM_CLAIMS, err, err_len);
        if (rc == CPS_ALREADY_EXISTS && winner != NULL) {
            ksm_read_claim(coll, key_id, deadline_mono_ms, winner);
        } else if (rc == CPS_INTERNAL) {
            /* Nothing was claimed: a failed write, whatever the cause. */
            rc = CPS_UNAVAILABLE;
        }
    }
    mongoc_collection_destroy(coll);
    mg_push(m->mg, client);
    bson_destroy(&doc);
    return rc;
}


static int ksm_release_rotation(ks_store_t *store,
                                const char *key_id,
                                const char *successor,
                                int64_t deadline_mono_ms,
                                char *err,
                                size_t err_len) {
    ks_mongo_t *m = (ks_mongo_t *)store;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    bson_error_t error;
    bson_t *filter;
    int rc = CPS_OK;

    (void)deadline_mono_ms; /* deletes take no maxTimeMS; see the note */
    client = mg_pop(m->mg);
    if (client == NULL) {
        ksm_set_err(err, err_len, "release: no MongoDB client");
        return CPS_UNAVAILABLE;
    }
    filter =
        BCON_NEW("_id", BCON_UTF8(key_id), "successor", BCON_UTF8(successor));
    coll = mongoc_client_get_collection(client, mg_database_name(m->mg),
                                        KSM_CLAIMS);
    if (!mongoc_collection_delete_one(coll, filter, NULL, NULL, &error)) {
        rc = mg_error(&error, "delete from " KSM_CLAIMS, err, err_len);
        if (rc == CPS_INTERNAL) {
            rc = CPS_UNAVAILABLE;
        }
    }
    mongoc_collection_destroy(coll);
    mg_push(m->mg, client);
    bson_destroy(filter);
    return rc;
}


/* $max raises a null or absent last_used_at too: null sorts below every
 * date, on MongoDB and on FerretDB alike. */
static int ksm_touch(ks_store_t *store,
                     const char *key_id,
                     int64_t at_ms,
                     int64_t deadline_mono_ms,
                     char *err,
                     size_t err_len) {
    bson_t *filter;
    bson_t *update;
    int64_t matched;
    int rc;

    (void)deadline_mono_ms; /* checked by ks_touch; see the note above */
    filter = BCON_NEW("_id", BCON_UTF8(key_id));
    update = BCON_NEW("$max", "{", "last_used_at", BCON_DATE_TIME(at_ms), "}");
    rc = ksm_update_one((ks_mongo_t *)store, filter, update,
                        "touch in " KSM_COLLECTION, &matched, err, err_len);
    if (rc == CPS_OK && matched == 0) {
        rc = CPS_NOT_FOUND;
    }
    bson_destroy(update);
    bson_destroy(filter);
    return rc;
}


static int ksm_ping(ks_store_t *store,
                    int64_t deadline_mono_ms,
                    char *err,
                    size_t err_len) {
    ks_mongo_t *m = (ks_mongo_t *)store;
    int64_t max_time;
    int rc = mg_max_time_ms(deadline_mono_ms, &max_time);

    if (rc != CPS_OK) {
        ksm_set_err(err, err_len, "ping: deadline passed");
        return rc;
    }
    if (max_time > INT32_MAX) {
        max_time = INT32_MAX;
    }
    return mg_ping(m->mg, (int)max_time, err, err_len);
}


static void ksm_destroy(ks_store_t *store) {
    ks_mongo_t *m = (ks_mongo_t *)store;

    mg_index_set_free(m->indexes);
    free(m);
}


static const ks_ops_t ks_mongo_ops = {
    .kind = "mongodb",
    .insert = ksm_insert,
    .find_by_hash = ksm_find_by_hash,
    .find_by_id = ksm_find_by_id,
    .list_by_user = ksm_list_by_user,
    .revoke = ksm_revoke,
    .retire = ksm_retire,
    .claim_rotation = ksm_claim_rotation,
    .release_rotation = ksm_release_rotation,
    .touch = ksm_touch,
    .ping = ksm_ping,
    .destroy = ksm_destroy,
};


ks_store_t *ks_mongo_new(mg_t *mg, char *err, size_t err_len) {
    ks_mongo_t *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        ksm_set_err(err, err_len, "out of memory");
        return NULL;
    }
    m->base.ops = &ks_mongo_ops;
    m->mg = mg;
    m->indexes = mg_index_set_new(mg, ksm_indexes, MG_INDEX_COUNT(ksm_indexes),
                                  NULL, NULL, err, err_len);
    if (m->indexes == NULL) {
        free(m);
        return NULL;
    }
    return &m->base;
}
