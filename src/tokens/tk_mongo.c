/*
 * MongoDB token store: collections `tokens` and `spent_tokens`.
 *
 * Why "spent" is an insert into a unique key. A token must be consumed at
 * most once, whatever the number of cpstored instances. The obvious
 * MongoDB answer, findAndModify({_id, consumed_at: null}) -> set
 * consumed_at, is atomic on MongoDB but not on FerretDB v1, which runs it
 * as a read followed by an unconditional write: two consumers can both
 * read "not consumed" and both win. An insert is different: both servers
 * decide it in their storage engine against a unique index, so of any
 * number of concurrent inserts of the same _id exactly one succeeds and
 * every other gets duplicate key error 11000. So the decision is
 *
 *   insert {_id: token_id, by, at} into spent_tokens
 *      ok             -> this caller spent the token (CONSUMED, or the
 *                        revoke that stops every later consume)
 *      duplicate key  -> someone spent it first; read their mark for the
 *                        time of the first consume (ALREADY_CONSUMED)
 *
 * and the token document itself is never updated to decide anything. Its
 * only change after issue is revoked_at, set by revoke after revoke's own
 * spent mark, so a read-then-write update there can lose nothing: every
 * writer of that field writes the same meaning, and nobody else writes the
 * document.
 *
 *   tokens        _id token_id (string) · v 1 · token_hash (binary, 32
 *                 bytes, HMAC-SHA256 of the token) · kind · subject ·
 *                 metadata [{key, value}] · client_id, redirect_uri,
 *                 pkce_challenge (string or null) · created_at, expires_at,
 *                 purge_at (dates) · revoked_at (date or null)
 *   spent_tokens  _id token_id · v 1 · by ("consume" | "revoke") · at ·
 *                 expires_at, purge_at (dates, copied from the token)
 *
 * A token is issued with one insert of one whole document, binding
 * included, so it never exists without its binding.
 *
 * Indexes, created at start (or before the first write when the server is
 * not reachable then): unique on tokens.token_hash (the lookup of every
 * consume and revoke), and expires_at on both collections (the purge). TTL
 * indexes on purge_at (expireAfterSeconds 0) are tried after those; a
 * server that refuses them (FerretDB: NotImplemented) is remembered and
 * reported by tk_ttl_index, not treated as an error, because expiry never
 * depends on them: every consume compares expires_at with now, and
 * tk_purge deletes what is past expiry plus the reuse window.
 *
 * Deadlines: reads and createIndexes carry the time left as maxTimeMS.
 * Inserts, updates and deletes cannot (their commands take no maxTimeMS);
 * they are bounded by the selection and socket timeouts that mg_open sets.
 *
 * Only insert, find, update with $set, delete, createIndexes and ping are
 * used, all of which FerretDB v1 implements.
 */
#include "tk_store.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mongo.h"
#include "status.h"

#define TKMG_TOKENS  "tokens"
#define TKMG_SPENT   "spent_tokens"
#define TKMG_VERSION 1

typedef struct tk_mongo {
    tk_store_t base; /* first member */
    mg_t *mg;
    mg_index_set_t *indexes; /* the required ones; TTL in its hook */
    atomic_int ttl;          /* a tk_ttl_index_t, written by the hook */
} tk_mongo_t;

/* The required indexes: they decide whether a write may go ahead. */
static const mg_index_t tkmg_indexes[] = {
    {.collection = TKMG_TOKENS,
     .name = "token_hash_unique",
     .keys = {{"token_hash", 1}},
     .unique = true},
    {.collection = TKMG_TOKENS,
     .name = "expires_at",
     .keys = {{"expires_at", 1}}},
    {.collection = TKMG_SPENT,
     .name = "expires_at",
     .keys = {{"expires_at", 1}}},
};

/* The TTL indexes: the server's own purge, where it has one. */
static const mg_index_t tkmg_ttl_indexes[] = {
    {.collection = TKMG_TOKENS,
     .name = "purge_at_ttl",
     .keys = {{"purge_at", 1}},
     .ttl = true},
    {.collection = TKMG_SPENT,
     .name = "purge_at_ttl",
     .keys = {{"purge_at", 1}},
     .ttl = true},
};


static void tkmg_set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


static void tkmg_set_err(char *err, size_t err_len, const char *fmt, ...) {
    va_list ap;

    if (err == NULL || err_len == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}


/* ---- indexes ----------------------------------------------------------- */

/* Try the TTL indexes and return what became of them. A transient failure
 * leaves them pending; any other refusal means the server has none. */
static tk_ttl_index_t tkmg_create_ttl(tk_mongo_t *m, int64_t deadline_mono_ms) {
    char ignored[256];
    int rc = CPS_OK;

    for (size_t i = 0; rc == CPS_OK && i < MG_INDEX_COUNT(tkmg_ttl_indexes);
         i++) {
        rc = mg_create_index(m->mg, &tkmg_ttl_indexes[i], deadline_mono_ms,
                             NULL, ignored, sizeof(ignored));
    }
    if (rc == CPS_OK) {
        return TK_TTL_ACTIVE;
    }
    if (rc == CPS_UNAVAILABLE || rc == CPS_DEADLINE_EXCEEDED) {
        return TK_TTL_PENDING;
    }
    return TK_TTL_UNSUPPORTED;
}


/* The index set's hook: once the required indexes exist, the TTL indexes
 * are tried on every mg_ensure_indexes() until their fate is known. Only
 * the required indexes decide the result, so this never fails. */
static int
tkmg_ttl_hook(void *arg, int64_t deadline_mono_ms, char *err, size_t err_len) {
    tk_mongo_t *m = arg;

    if (atomic_load(&m->ttl) == TK_TTL_PENDING) {
        atomic_store(&m->ttl, tkmg_create_ttl(m, deadline_mono_ms));
    }
    return CPS_OK;
}


/* ---- documents ---------------------------------------------------------- */

static void tkmg_append_opt_utf8(bson_t *doc, const char *key, const char *s) {
    if (s != NULL) {
        BSON_APPEND_UTF8(doc, key, s);
    } else {
        BSON_APPEND_NULL(doc, key);
    }
}


static void tkmg_record_to_bson(const tk_record_t *rec, bson_t *doc) {
    bson_t array;
    bson_t entry;
    char buf[16];
    const char *idx;

    BSON_APPEND_UTF8(doc, "_id", rec->token_id);
    BSON_APPEND_INT32(doc, "v", TKMG_VERSION);
    BSON_APPEND_BINARY(doc, "token_hash", BSON_SUBTYPE_BINARY, rec->hash,
                       TK_HASH_LEN);
    BSON_APPEND_UTF8(doc, "kind", rec->kind);
    BSON_APPEND_UTF8(doc, "subject", rec->subject);
    BSON_APPEND_ARRAY_BEGIN(doc, "metadata", &array);
    for (size_t i = 0; i < rec->n_metadata; i++) {
        bson_uint32_to_string((uint32_t)i, &idx, buf, sizeof(buf));
        BSON_APPEND_DOCUMENT_BEGIN(&array, idx, &entry);
        BSON_APPEND_UTF8(&entry, "key", rec->metadata[i].key);
        BSON_APPEND_UTF8(&entry, "value", rec->metadata[i].value);
        bson_append_document_end(&array, &entry);
    }
    bson_append_array_end(doc, &array);
    tkmg_append_opt_utf8(doc, "client_id", rec->client_id);
    tkmg_append_opt_utf8(doc, "redirect_uri", rec->redirect_uri);
    tkmg_append_opt_utf8(doc, "pkce_challenge", rec->pkce_challenge);
    BSON_APPEND_DATE_TIME(doc, "created_at", rec->created_at_ms);
    BSON_APPEND_DATE_TIME(doc, "expires_at", rec->expires_at_ms);
    BSON_APPEND_DATE_TIME(doc, "purge_at", rec->purge_at_ms);
    if (rec->revoked_at_ms != 0) {
        BSON_APPEND_DATE_TIME(doc, "revoked_at", rec->revoked_at_ms);
    } else {
        BSON_APPEND_NULL(doc, "revoked_at");
    }
}


/* Each reader returns 1 when the field is well-formed; absent and null
 * count as "not set" for optional fields. */

static int
tkmg_read_str(const bson_t *doc, const char *key, int required, char **out) {
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


/* A string into a fixed buffer of size `size`. */
static int
tkmg_read_fixed(const bson_t *doc, const char *key, char *out, size_t size) {
    bson_iter_t it;
    const char *s;
    uint32_t len;

    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_UTF8(&it)) {
        return 0;
    }
    s = bson_iter_utf8(&it, &len);
    if (len >= size || memchr(s, '\0', len) != NULL) {
        return 0;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return 1;
}


static int
tkmg_read_date(const bson_t *doc, const char *key, int required, int64_t *out) {
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


static int tkmg_read_hash(const bson_t *doc, uint8_t hash[TK_HASH_LEN]) {
    bson_iter_t it;
    bson_subtype_t subtype;
    const uint8_t *data;
    uint32_t len;

    if (!bson_iter_init_find(&it, doc, "token_hash") ||
        !BSON_ITER_HOLDS_BINARY(&it)) {
        return 0;
    }
    bson_iter_binary(&it, &subtype, &len, &data);
    if (len != TK_HASH_LEN) {
        return 0;
    }
    memcpy(hash, data, TK_HASH_LEN);
    return 1;
}


static int tkmg_read_meta_entry(bson_iter_t *entry, tk_meta_t *meta) {
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
    return tkmg_read_str(&sub, "key", 1, &meta->key) &&
           tkmg_read_str(&sub, "value", 1, &meta->value);
}


static int tkmg_read_metadata(const bson_t *doc, tk_record_t *rec) {
    bson_iter_t it;
    bson_iter_t child;
    bson_iter_t count;
    size_t n = 0;

    if (!bson_iter_init_find(&it, doc, "metadata") ||
        BSON_ITER_HOLDS_NULL(&it)) {
        return 1;
    }
    if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &child) ||
        !bson_iter_recurse(&it, &count)) {
        return 0;
    }
    while (bson_iter_next(&count)) {
        n++;
    }
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
        if (!tkmg_read_meta_entry(&child,
                                  &rec->metadata[rec->n_metadata - 1])) {
            return 0;
        }
    }
    return 1;
}


static int tkmg_record_from_bson(const bson_t *doc, tk_record_t *rec) {
    return tkmg_read_fixed(doc, "_id", rec->token_id, sizeof(rec->token_id)) &&
           tkmg_read_hash(doc, rec->hash) &&
           tkmg_read_str(doc, "kind", 1, &rec->kind) &&
           tkmg_read_str(doc, "subject", 1, &rec->subject) &&
           tkmg_read_str(doc, "client_id", 0, &rec->client_id) &&
           tkmg_read_str(doc, "redirect_uri", 0, &rec->redirect_uri) &&
           tkmg_read_str(doc, "pkce_challenge", 0, &rec->pkce_challenge) &&
           tkmg_read_date(doc, "created_at", 1, &rec->created_at_ms) &&
           tkmg_read_date(doc, "expires_at", 1, &rec->expires_at_ms) &&
           tkmg_read_date(doc, "purge_at", 0, &rec->purge_at_ms) &&
           tkmg_read_date(doc, "revoked_at", 0, &rec->revoked_at_ms) &&
           tkmg_read_metadata(doc, rec);
}


static void tkmg_spend_to_bson(const tk_spend_t *spend, bson_t *doc) {
    BSON_APPEND_UTF8(doc, "_id", spend->token_id);
    BSON_APPEND_INT32(doc, "v", TKMG_VERSION);
    BSON_APPEND_UTF8(doc, "by",
                     spend->by == TK_SPENT_BY_REVOKE ? "revoke" : "consume");
    BSON_APPEND_DATE_TIME(doc, "at", spend->at_ms);
    BSON_APPEND_DATE_TIME(doc, "expires_at", spend->expires_at_ms);
    BSON_APPEND_DATE_TIME(doc, "purge_at", spend->purge_at_ms);
}


static int tkmg_spend_from_bson(const bson_t *doc, tk_spend_t *spend) {
    char by[16];

    memset(spend, 0, sizeof(*spend));
    if (!tkmg_read_fixed(doc, "_id", spend->token_id,
                         sizeof(spend->token_id)) ||
        !tkmg_read_fixed(doc, "by", by, sizeof(by)) ||
        !tkmg_read_date(doc, "at", 1, &spend->at_ms) ||
        !tkmg_read_date(doc, "expires_at", 1, &spend->expires_at_ms) ||
        !tkmg_read_date(doc, "purge_at", 0, &spend->purge_at_ms)) {
        return 0;
    }
    if (strcmp(by, "consume") == 0) {
        spend->by = TK_SPENT_BY_CONSUME;
    } else if (strcmp(by, "revoke") == 0) {
        spend->by = TK_SPENT_BY_REVOKE;
    } else {
        return 0;
    }
    return 1;
}


/* ---- operations ---------------------------------------------------------- */

/* Insert doc into collection. A failure that is not a duplicate key means
 * the document was not stored as far as the caller can tell: it answers
 * UNAVAILABLE, and retrying is the caller's decision. */
static int tkmg_insert_doc(tk_mongo_t *m,
                           const char *collection,
                           const bson_t *doc,
                           int64_t deadline_mono_ms,
                           char *err,
                           size_t err_len) {
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    bson_error_t error;
    char what[64];
    int rc;

    rc = mg_ensure_indexes(m->indexes, deadline_mono_ms, err, err_len);
    if (rc != CPS_OK) {
        return rc;
    }
    client = mg_pop(m->mg);
    if (client == NULL) {
        tkmg_set_err(err, err_len, "insert: no MongoDB client");
        return CPS_UNAVAILABLE;
    }
    coll = mongoc_client_get_collection(client, mg_database_name(m->mg),
                                        collection);
    if (!mongoc_collection_insert_one(coll, doc, NULL, NULL, &error)) {
        snprintf(what, sizeof(what), "insert into %s", collection);
        rc = mg_error(&error, what, err, err_len);
        if (rc == CPS_INTERNAL) {
            rc = CPS_UNAVAILABLE;
        }
    }
    mongoc_collection_destroy(coll);
    mg_push(m->mg, client);
    return rc;
}


/* Copy the first document matching filter into *out (initialised here
 * when found; the caller destroys it). */
static int tkmg_find_one(tk_mongo_t *m,
                         const char *collection,
                         const bson_t *filter,
                         int64_t deadline_mono_ms,
                         bson_t *out,
                         char *err,
                         size_t err_len) {
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    mongoc_cursor_t *cursor;
    const bson_t *doc;
    bson_error_t error;
    bson_t opts = BSON_INITIALIZER;
    int64_t max_time;
    char what[64];
    int rc;

    snprintf(what, sizeof(what), "find in %s", collection);
    rc = mg_max_time_ms(deadline_mono_ms, &max_time);
    if (rc != CPS_OK) {
        tkmg_set_err(err, err_len, "%s: deadline passed", what);
        bson_destroy(&opts);
        return rc;
    }
    BSON_APPEND_INT64(&opts, "limit", 1);
    BSON_APPEND_BOOL(&opts, "singleBatch", true);
    if (max_time > 0) {
        BSON_APPEND_INT64(&opts, "maxTimeMS", max_time);
    }

    client = mg_pop(m->mg);
    if (client == NULL) {
        tkmg_set_err(err, err_len, "%s: no MongoDB client", what);
        bson_destroy(&opts);
        return CPS_UNAVAILABLE;
    }
    coll = mongoc_client_get_collection(client, mg_database_name(m->mg),
                                        collection);
    cursor = mongoc_collection_find_with_opts(coll, filter, &opts, NULL);
    rc = CPS_NOT_FOUND;
    if (mongoc_cursor_next(cursor, &doc)) {
        bson_copy_to(doc, out);
        rc = CPS_OK;
    } else if (mongoc_cursor_error(cursor, &error)) {
        rc = mg_error(&error, what, err, err_len);
    }
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    mg_push(m->mg, client);
    bson_destroy(&opts);
    return rc;
}


static int tkmg_insert(tk_store_t *store,
                       const tk_record_t *rec,
                       int64_t deadline_mono_ms,
                       char *err,
                       size_t err_len) {
    bson_t doc = BSON_INITIALIZER;
    int rc;

    if (rec->kind == NULL || rec->subject == NULL) {
        tkmg_set_err(err, err_len, "token record lacks kind or subject");
        bson_destroy(&doc);
        return CPS_INTERNAL;
    }
    tkmg_record_to_bson(rec, &doc);
    rc = tkmg_insert_doc((tk_mongo_t *)store, TKMG_TOKENS, &doc,
                         deadline_mono_ms, err, err_len);
    bson_destroy(&doc);
    return rc;
}


static int tkmg_find_by_hash(tk_store_t *store,
                             const uint8_t hash[TK_HASH_LEN],
                             int64_t deadline_mono_ms,
                             tk_record_t *out,
                             char *err,
                             size_t err_len) {
    bson_t filter = BSON_INITIALIZER;
    bson_t doc;
    int rc;

    BSON_APPEND_BINARY(&filter, "token_hash", BSON_SUBTYPE_BINARY, hash,
                       TK_HASH_LEN);
    rc = tkmg_find_one((tk_mongo_t *)store, TKMG_TOKENS, &filter,
                       deadline_mono_ms, &doc, err, err_len);
    if (rc == CPS_OK) {
        if (!tkmg_record_from_bson(&doc, out)) {
            tk_record_clear(out);
            tkmg_set_err(err, err_len,
                         "stored document in " TKMG_TOKENS " is malformed");
            rc = CPS_INTERNAL;
        }
        bson_destroy(&doc);
    }
    bson_destroy(&filter);
    return rc;
}


static int tkmg_spend(tk_store_t *store,
                      const tk_spend_t *spend,
                      int64_t deadline_mono_ms,
                      char *err,
                      size_t err_len) {
    bson_t doc = BSON_INITIALIZER;
    int rc;

    tkmg_spend_to_bson(spend, &doc);
    rc = tkmg_insert_doc((tk_mongo_t *)store, TKMG_SPENT, &doc,
                         deadline_mono_ms, err, err_len);
    bson_destroy(&doc);
    return rc;
}


static int tkmg_find_spend(tk_store_t *store,
                           const char *token_id,
                           int64_t deadline_mono_ms,
                           tk_spend_t *out,
                           char *err,
                           size_t err_len) {
    bson_t filter = BSON_INITIALIZER;
    bson_t doc;
    int rc;

    BSON_APPEND_UTF8(&filter, "_id", token_id);
    rc = tkmg_find_one((tk_mongo_t *)store, TKMG_SPENT, &filter,
                       deadline_mono_ms, &doc, err, err_len);
    if (rc == CPS_OK) {
        if (!tkmg_spend_from_bson(&doc, out)) {
            tkmg_set_err(err, err_len,
                         "stored document in " TKMG_SPENT " is malformed");
            rc = CPS_INTERNAL;
        }
        bson_destroy(&doc);
    }
    bson_destroy(&filter);
    return rc;
}


static int tkmg_mark_revoked(tk_store_t *store,
                             const char *token_id,
                             int64_t at_ms,
                             int64_t deadline_mono_ms,
                             char *err,
                             size_t err_len) {
    tk_mongo_t *m = (tk_mongo_t *)store;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    bson_error_t error;
    bson_t *filter;
    bson_t *update;
    int rc = CPS_OK;

    (void)deadline_mono_ms;
    client = mg_pop(m->mg);
    if (client == NULL) {
        tkmg_set_err(err, err_len, "revoke: no MongoDB client");
        return CPS_UNAVAILABLE;
    }
    /* revoked_at: null keeps the first revocation's time on MongoDB; on
     * FerretDB two concurrent revokes may both write, each its own time,
     * which changes nothing a consume answers. */
    filter = BCON_NEW("_id", BCON_UTF8(token_id), "revoked_at", BCON_NULL);
    update = BCON_NEW("$set", "{", "revoked_at", BCON_DATE_TIME(at_ms), "}");
    coll = mongoc_client_get_collection(client, mg_database_name(m->mg),
                                        TKMG_TOKENS);
    if (!mongoc_collection_update_one(coll, filter, update, NULL, NULL,
                                      &error)) {
        rc = mg_error(&error, "update " TKMG_TOKENS, err, err_len);
        if (rc == CPS_INTERNAL) {
            rc = CPS_UNAVAILABLE;
        }
    }
    mongoc_collection_destroy(coll);
    mg_push(m->mg, client);
    bson_destroy(update);
    bson_destroy(filter);
    return rc;
}


/* Delete every document of collection whose expires_at is at or before
 * cutoff_ms; *deleted receives how many. */
static int tkmg_delete_expired(tk_mongo_t *m,
                               mongoc_client_t *client,
                               const char *collection,
                               int64_t cutoff_ms,
                               uint64_t *deleted,
                               char *err,
                               size_t err_len) {
    mongoc_collection_t *coll;
    bson_error_t error;
    bson_iter_t it;
    bson_t reply;
    bson_t *filter;
    char what[64];
    int rc = CPS_OK;

    *deleted = 0;
    filter =
        BCON_NEW("expires_at", "{", "$lte", BCON_DATE_TIME(cutoff_ms), "}");
    coll = mongoc_client_get_collection(client, mg_database_name(m->mg),
                                        collection);
    if (!mongoc_collection_delete_many(coll, filter, NULL, &reply, &error)) {
        snprintf(what, sizeof(what), "delete from %s", collection);
        rc = mg_error(&error, what, err, err_len);
    } else if (bson_iter_init_find(&it, &reply, "deletedCount") &&
               BSON_ITER_HOLDS_NUMBER(&it) && bson_iter_as_int64(&it) > 0) {
        *deleted = (uint64_t)bson_iter_as_int64(&it);
    }
    bson_destroy(&reply);
    mongoc_collection_destroy(coll);
    bson_destroy(filter);
    return rc;
}


static int tkmg_purge(tk_store_t *store,
                      int64_t cutoff_ms,
                      int64_t deadline_mono_ms,
                      uint64_t *removed,
                      char *err,
                      size_t err_len) {
    tk_mongo_t *m = (tk_mongo_t *)store;
    mongoc_client_t *client;
    uint64_t spent = 0;
    int rc;

    (void)deadline_mono_ms;
    *removed = 0;
    client = mg_pop(m->mg);
    if (client == NULL) {
        tkmg_set_err(err, err_len, "purge: no MongoDB client");
        return CPS_UNAVAILABLE;
    }
    /* Tokens first: a spent mark left behind by a failure in between is
     * harmless and goes on the next run. */
    rc = tkmg_delete_expired(m, client, TKMG_TOKENS, cutoff_ms, removed, err,
                             err_len);
    if (rc == CPS_OK) {
        rc = tkmg_delete_expired(m, client, TKMG_SPENT, cutoff_ms, &spent, err,
                                 err_len);
    }
    mg_push(m->mg, client);
    return rc;
}


static tk_ttl_index_t tkmg_ttl_index(tk_store_t *store) {
    tk_mongo_t *m = (tk_mongo_t *)store;

    return (tk_ttl_index_t)atomic_load(&m->ttl);
}


static void tkmg_destroy(tk_store_t *store) {
    tk_mongo_t *m = (tk_mongo_t *)store;

    mg_index_set_free(m->indexes);
    free(m);
}


static const tk_store_ops_t tk_mongo_ops = {
    .kind = "mongodb",
    .insert = tkmg_insert,
    .find_by_hash = tkmg_find_by_hash,
    .spend = tkmg_spend,
    .find_spend = tkmg_find_spend,
    .mark_revoked = tkmg_mark_revoked,
    .purge = tkmg_purge,
    .ttl_index = tkmg_ttl_index,
    .destroy = tkmg_destroy,
};


tk_store_t *tk_mongo_new(mg_t *mg, char *err, size_t err_len) {
    tk_mongo_t *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        tkmg_set_err(err, err_len, "out of memory");
        return NULL;
    }
    m->base.ops = &tk_mongo_ops;
    m->mg = mg;
    atomic_init(&m->ttl, TK_TTL_PENDING);
    m->indexes =
        mg_index_set_new(mg, tkmg_indexes, MG_INDEX_COUNT(tkmg_indexes),
                         tkmg_ttl_hook, m, err, err_len);
    if (m->indexes == NULL) {
        free(m);
        return NULL;
    }
    return &m->base;
}
