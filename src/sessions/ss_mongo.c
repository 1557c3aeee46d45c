/*
 * MongoDB session store: collections `sessions` and `session_revocations`.
 *
 *   sessions              one document per session, never its token
 *     _id                 session_id (string)
 *     v                   layout version (int32, 1)
 *     token_hash          HMAC-SHA256 of the token (binary, 32 bytes)
 *     user_id, kind       strings
 *     created_at          date (UTC ms)
 *     idle_timeout_ms     int64
 *     idle_expires_at     date; slides forward on validate
 *     absolute_expires_at date; fixed
 *     last_seen_at        date, as of the last written slide
 *     metadata            array of {key, value} (caller data stays in
 *                         values, never in field names)
 *
 *   session_revocations   one document per revoked session
 *     _id                 session_id
 *     user_id             string
 *     revoked_at          date
 *     expires_at          the session's absolute expiry (purge and TTL)
 *
 * Why revocations live apart. FerretDB v1 runs an update as a read of the
 * whole document followed by a write of the whole document, with nothing
 * in between to stop another writer. If revoked_at sat in the session
 * document, a validate that read the session just before a revoke and
 * wrote its slide just after would write the old, unrevoked document back
 * and silently undo the revocation. So after its insert a session document
 * is written by slides only, and a revocation is an insert of its own
 * document, keyed by session_id: the unique _id makes "revoked twice"
 * impossible (the second insert is a duplicate key) on MongoDB and on
 * FerretDB alike. Every lookup reads the session and then its revocation;
 * nothing is cached, so a revocation made through any instance is seen by
 * the next validate on every instance.
 *
 * Slides are plain updates. Two validates of one session may race; on
 * FerretDB the later write may then carry the slightly earlier of the two
 * new expiries. Both are at or past the stored one and came from real
 * uses, so the session only ever gets one of two legitimate slides, and a
 * purge that deleted the document meanwhile is not undone (an update never
 * inserts).
 *
 * Indexes, created by ss_mongo_new() or, if the server cannot be reached
 * then, before the first write: unique on token_hash (the lookup of every
 * validate), {user_id, created_at} (list and revoke-all), and on each
 * collection's expiry date, as a TTL index where the server has them
 * (MongoDB) and as a plain one for the purge where it answers
 * NotImplemented (FerretDB). Expiry never depends on the TTL monitor:
 * every read compares the dates with now.
 *
 * Deadlines: reads and createIndexes carry the time left as maxTimeMS;
 * writes check it before they start and are bounded by the socket
 * timeouts mg_open sets.
 */
#include "ss_mongo.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"


/* ---- plumbing ---------------------------------------------------------- */

int ssm_begin(ss_mongo_t *m,
              const char *collection,
              ssm_op_t *op,
              char *err,
              size_t err_len) {
    op->coll = NULL;
    op->client = mg_pop(m->mg);
    if (op->client == NULL) {
        ss_set_err(err, err_len, "no MongoDB client available");
        return CPS_UNAVAILABLE;
    }
    op->coll = mongoc_client_get_collection(op->client, mg_database_name(m->mg),
                                            collection);
    return CPS_OK;
}


void ssm_end(ss_mongo_t *m, ssm_op_t *op) {
    if (op->coll != NULL) {
        mongoc_collection_destroy(op->coll);
    }
    mg_push(m->mg, op->client);
    op->client = NULL;
    op->coll = NULL;
}


/* The deadline as maxTimeMS, or CPS_DEADLINE_EXCEEDED with a reason. */
int ssm_time_left(int64_t deadline, int64_t *max_time, char *err, size_t len) {
    int rc = mg_max_time_ms(deadline, max_time);

    if (rc != CPS_OK) {
        ss_set_err(err, len, "deadline passed before the MongoDB call");
    }
    return rc;
}


/* A failed write is reported as unavailable whatever libmongoc says: the
 * write did not happen, and retrying is the caller's decision. */
int ssm_write_error(const bson_error_t *error,
                    const char *what,
                    char *err,
                    size_t err_len) {
    int rc = mg_error(error, what, err, err_len);

    return rc == CPS_INTERNAL ? CPS_UNAVAILABLE : rc;
}


int64_t ssm_reply_count(const bson_t *reply, const char *field) {
    bson_iter_t it;

    if (bson_iter_init_find(&it, reply, field) && BSON_ITER_HOLDS_NUMBER(&it)) {
        return bson_iter_as_int64(&it);
    }
    return 0;
}


/* ---- indexes ----------------------------------------------------------- */

typedef struct ssm_index {
    const char *name;
    const char *field1;
    int dir1;
    const char *field2; /* NULL for a single-field index */
    int dir2;
    bool unique;
    bool ttl; /* expireAfterSeconds: 0 on a date field */
} ssm_index_t;


static void ssm_append_index(bson_t *array, int i, const ssm_index_t *ix) {
    bson_t index;
    bson_t key;
    char idx[16];
    const char *idx_key;

    bson_uint32_to_string((uint32_t)i, &idx_key, idx, sizeof(idx));
    BSON_APPEND_DOCUMENT_BEGIN(array, idx_key, &index);
    BSON_APPEND_DOCUMENT_BEGIN(&index, "key", &key);
    BSON_APPEND_INT32(&key, ix->field1, ix->dir1);
    if (ix->field2 != NULL) {
        BSON_APPEND_INT32(&key, ix->field2, ix->dir2);
    }
    bson_append_document_end(&index, &key);
    BSON_APPEND_UTF8(&index, "name", ix->name);
    if (ix->unique) {
        BSON_APPEND_BOOL(&index, "unique", true);
    }
    if (ix->ttl) {
        BSON_APPEND_INT32(&index, "expireAfterSeconds", 0);
    }
    bson_append_document_end(array, &index);
}


/*
 * createIndexes of one index on one collection; false with *error set on
 * failure. One index per command: FerretDB v1 fails a command of several
 * indexes that all exist already (its connection handler panics and drops
 * the connection), which is what every start but the first sends.
 */
static bool ssm_create(ss_mongo_t *m,
                       const char *collection,
                       const ssm_index_t *ix,
                       int64_t max_time,
                       bson_error_t *error) {
    mongoc_client_t *client;
    bson_t cmd = BSON_INITIALIZER;
    bson_t array;
    bson_t reply;
    bool ok;

    BSON_APPEND_UTF8(&cmd, "createIndexes", collection);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &array);
    ssm_append_index(&array, 0, ix);
    bson_append_array_end(&cmd, &array);
    if (max_time > 0) {
        BSON_APPEND_INT64(&cmd, "maxTimeMS", max_time);
    }

    client = mg_pop(m->mg);
    if (client == NULL) {
        bson_set_error(error, MONGOC_ERROR_CLIENT,
                       MONGOC_ERROR_CLIENT_NOT_READY,
                       "no MongoDB client available");
        bson_destroy(&cmd);
        return false;
    }
    ok = mongoc_client_write_command_with_opts(client, mg_database_name(m->mg),
                                               &cmd, NULL, &reply, error);
    mg_push(m->mg, client);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}


/*
 * The expiry index of one collection: a TTL index, or, where the server
 * does not implement them, a plain one. *ttl is cleared in that case.
 */
static int ssm_expiry_index(ss_mongo_t *m,
                            const char *collection,
                            const char *field,
                            int64_t max_time,
                            bool *ttl,
                            char *err,
                            size_t err_len) {
    ssm_index_t ix = {.field1 = field, .dir1 = 1, .ttl = true};
    char name[64];
    char what[128];
    bson_error_t error;

    snprintf(name, sizeof(name), "%s_ttl", field);
    snprintf(what, sizeof(what), "create index %s on %s", name, collection);
    ix.name = name;
    if (*ttl && ssm_create(m, collection, &ix, max_time, &error)) {
        return CPS_OK;
    }
    if (*ttl && !(error.domain == MONGOC_ERROR_SERVER &&
                  error.code == SSM_NOT_IMPLEMENT)) {
        return mg_error(&error, what, err, err_len);
    }
    *ttl = false;
    ix.ttl = false;
    ix.name = field;
    snprintf(what, sizeof(what), "create index %s on %s", field, collection);
    if (!ssm_create(m, collection, &ix, max_time, &error)) {
        return mg_error(&error, what, err, err_len);
    }
    return CPS_OK;
}


static int
ssm_create_indexes(ss_mongo_t *m, int64_t deadline, char *err, size_t err_len) {
    static const ssm_index_t lookup[] = {
        {.name = "token_hash_unique",
         .field1 = "token_hash",
         .dir1 = 1,
         .unique = true},
        {.name = "user_id_created_at",
         .field1 = "user_id",
         .dir1 = 1,
         .field2 = "created_at",
         .dir2 = -1},
    };
    bson_error_t error;
    int64_t max_time;
    bool ttl = true;
    int rc;

    rc = ssm_time_left(deadline, &max_time, err, err_len);
    if (rc != CPS_OK) {
        return rc;
    }
    for (size_t i = 0; i < sizeof(lookup) / sizeof(lookup[0]); i++) {
        if (!ssm_create(m, SSM_SESSIONS, &lookup[i], max_time, &error)) {
            return mg_error(&error, "create indexes on " SSM_SESSIONS, err,
                            err_len);
        }
    }
    rc = ssm_expiry_index(m, SSM_SESSIONS, "absolute_expires_at", max_time,
                          &ttl, err, err_len);
    if (rc == CPS_OK) {
        rc = ssm_expiry_index(m, SSM_REVOCATIONS, "expires_at", max_time, &ttl,
                              err, err_len);
    }
    if (rc == CPS_OK) {
        atomic_store(&m->ttl, ttl ? SS_TTL_CREATED : SS_TTL_UNSUPPORTED);
    }
    return rc;
}


/* Create the indexes unless that is done. One thread at a time: the
 * others wait for its answer rather than repeat the commands. */
int ssm_ensure_indexes(ss_mongo_t *m,
                       int64_t deadline,
                       char *err,
                       size_t err_len) {
    int rc = CPS_OK;

    pthread_mutex_lock(&m->index_lock);
    if (!m->indexes_ready) {
        rc = ssm_create_indexes(m, deadline, err, err_len);
        m->indexes_ready = rc == CPS_OK;
    }
    pthread_mutex_unlock(&m->index_lock);
    return rc;
}


/* ---- reads ------------------------------------------------------------- */

/* Find at most one document of collection matching filter and hand it to
 * parse (which returns 0 for a malformed document). */
static int ssm_find_one(ss_mongo_t *m,
                        const char *collection,
                        const bson_t *filter,
                        int64_t deadline,
                        int (*parse)(const bson_t *doc, void *arg),
                        void *arg,
                        char *err,
                        size_t err_len) {
    mongoc_cursor_t *cursor;
    const bson_t *doc;
    bson_error_t error;
    bson_t opts = BSON_INITIALIZER;
    int64_t max_time;
    ssm_op_t op;
    int rc;

    rc = ssm_time_left(deadline, &max_time, err, err_len);
    if (rc == CPS_OK) {
        rc = ssm_begin(m, collection, &op, err, err_len);
    }
    if (rc != CPS_OK) {
        bson_destroy(&opts);
        return rc;
    }
    BSON_APPEND_INT64(&opts, "limit", 1);
    BSON_APPEND_BOOL(&opts, "singleBatch", true);
    if (max_time > 0) {
        BSON_APPEND_INT64(&opts, "maxTimeMS", max_time);
    }
    cursor = mongoc_collection_find_with_opts(op.coll, filter, &opts, NULL);
    rc = CPS_NOT_FOUND;
    if (mongoc_cursor_next(cursor, &doc)) {
        rc = CPS_OK;
        if (!parse(doc, arg)) {
            rc = CPS_INTERNAL;
            ss_set_err(err, err_len, "a stored document in %s is malformed",
                       collection);
        }
    } else if (mongoc_cursor_error(cursor, &error)) {
        rc = mg_error(&error, "find", err, err_len);
    }
    mongoc_cursor_destroy(cursor);
    ssm_end(m, &op);
    bson_destroy(&opts);
    return rc;
}


static int ssm_parse_session(const bson_t *doc, void *arg) {
    ss_record_t *rec = arg;

    if (!ssm_record_from_bson(doc, rec)) {
        ss_record_clear(rec);
        return 0;
    }
    return 1;
}


static int ssm_parse_revoked_at(const bson_t *doc, void *arg) {
    return ssm_read_date(doc, "revoked_at", arg);
}


/* Fill rec->revoked_at_ms from the revocation of rec's session, if any. */
static int ssm_read_revocation(ss_mongo_t *m,
                               ss_record_t *rec,
                               int64_t deadline,
                               char *err,
                               size_t err_len) {
    bson_t filter = BSON_INITIALIZER;
    int rc;

    BSON_APPEND_UTF8(&filter, "_id", rec->session_id);
    rc = ssm_find_one(m, SSM_REVOCATIONS, &filter, deadline,
                      ssm_parse_revoked_at, &rec->revoked_at_ms, err, err_len);
    bson_destroy(&filter);
    if (rc == CPS_NOT_FOUND) {
        rec->revoked_at_ms = 0;
        rc = CPS_OK;
    }
    return rc;
}


/* The session matching filter, with its revocation. The session is read
 * first: a revocation made before this call started is then certain to be
 * seen by the second read. */
static int ssm_find_session(ss_mongo_t *m,
                            const bson_t *filter,
                            int64_t deadline,
                            ss_record_t *out,
                            char *err,
                            size_t err_len) {
    int rc = ssm_find_one(m, SSM_SESSIONS, filter, deadline, ssm_parse_session,
                          out, err, err_len);

    if (rc == CPS_OK) {
        rc = ssm_read_revocation(m, out, deadline, err, err_len);
        if (rc != CPS_OK) {
            ss_record_clear(out);
        }
    }
    return rc;
}


static int ssm_find_by_hash(ss_store_t *store,
                            const uint8_t hash[SS_HASH_LEN],
                            int64_t deadline,
                            ss_record_t *out,
                            char *err,
                            size_t err_len) {
    bson_t filter = BSON_INITIALIZER;
    int rc;

    BSON_APPEND_BINARY(&filter, "token_hash", BSON_SUBTYPE_BINARY, hash,
                       SS_HASH_LEN);
    rc = ssm_find_session((ss_mongo_t *)store, &filter, deadline, out, err,
                          err_len);
    bson_destroy(&filter);
    return rc;
}


static int ssm_find_by_id(ss_store_t *store,
                          const char *session_id,
                          int64_t deadline,
                          ss_record_t *out,
                          char *err,
                          size_t err_len) {
    bson_t filter = BSON_INITIALIZER;
    int rc;

    BSON_APPEND_UTF8(&filter, "_id", session_id);
    rc = ssm_find_session((ss_mongo_t *)store, &filter, deadline, out, err,
                          err_len);
    bson_destroy(&filter);
    return rc;
}


/* ---- writes ------------------------------------------------------------ */

static int ssm_insert(ss_store_t *store,
                      const ss_record_t *rec,
                      int64_t deadline,
                      char *err,
                      size_t err_len) {
    ss_mongo_t *m = (ss_mongo_t *)store;
    bson_t doc = BSON_INITIALIZER;
    bson_error_t error;
    int64_t max_time;
    ssm_op_t op;
    int rc;

    rc = ssm_ensure_indexes(m, deadline, err, err_len);
    if (rc == CPS_OK) {
        rc = ssm_time_left(deadline, &max_time, err, err_len);
    }
    if (rc == CPS_OK) {
        rc = ssm_begin(m, SSM_SESSIONS, &op, err, err_len);
    }
    if (rc != CPS_OK) {
        bson_destroy(&doc);
        return rc;
    }
    ssm_record_to_bson(rec, &doc);
    if (!mongoc_collection_insert_one(op.coll, &doc, NULL, NULL, &error)) {
        rc = ssm_write_error(&error, "insert into " SSM_SESSIONS, err, err_len);
    }
    ssm_end(m, &op);
    bson_destroy(&doc);
    return rc;
}


static int ssm_touch(ss_store_t *store,
                     const char *session_id,
                     int64_t idle_expires_at_ms,
                     int64_t last_seen_at_ms,
                     int64_t deadline,
                     char *err,
                     size_t err_len) {
    ss_mongo_t *m = (ss_mongo_t *)store;
    bson_t filter = BSON_INITIALIZER;
    bson_t update = BSON_INITIALIZER;
    bson_t set;
    bson_t reply;
    bson_error_t error;
    int64_t max_time;
    ssm_op_t op;
    int rc;

    rc = ssm_time_left(deadline, &max_time, err, err_len);
    if (rc == CPS_OK) {
        rc = ssm_begin(m, SSM_SESSIONS, &op, err, err_len);
    }
    if (rc != CPS_OK) {
        bson_destroy(&update);
        bson_destroy(&filter);
        return rc;
    }
    BSON_APPEND_UTF8(&filter, "_id", session_id);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_DATE_TIME(&set, "idle_expires_at", idle_expires_at_ms);
    BSON_APPEND_DATE_TIME(&set, "last_seen_at", last_seen_at_ms);
    bson_append_document_end(&update, &set);

    /* A plain update, as the design note explains: racing slides both
     * move the expiry forward, and revocations are not in this document. */
    if (!mongoc_collection_update_one(op.coll, &filter, &update, NULL, &reply,
                                      &error)) {
        rc = ssm_write_error(&error, "update " SSM_SESSIONS, err, err_len);
    } else if (ssm_reply_count(&reply, "matchedCount") == 0) {
        rc = CPS_NOT_FOUND;
    }
    bson_destroy(&reply);
    ssm_end(m, &op);
    bson_destroy(&update);
    bson_destroy(&filter);
    return rc;
}


static int ssm_revoke(ss_store_t *store,
                      const ss_record_t *rec,
                      int64_t revoked_at_ms,
                      int64_t deadline,
                      char *err,
                      size_t err_len) {
    ss_mongo_t *m = (ss_mongo_t *)store;
    bson_t doc = BSON_INITIALIZER;
    bson_error_t error;
    int64_t max_time;
    ssm_op_t op;
    int rc;

    rc = ssm_ensure_indexes(m, deadline, err, err_len);
    if (rc == CPS_OK) {
        rc = ssm_time_left(deadline, &max_time, err, err_len);
    }
    if (rc == CPS_OK) {
        rc = ssm_begin(m, SSM_REVOCATIONS, &op, err, err_len);
    }
    if (rc != CPS_OK) {
        bson_destroy(&doc);
        return rc;
    }
    ssm_revocation_to_bson(rec->session_id, rec->user_id, revoked_at_ms,
                           rec->absolute_expires_at_ms, &doc);
    /* The unique _id decides: whoever inserts first revoked it. */
    if (!mongoc_collection_insert_one(op.coll, &doc, NULL, NULL, &error)) {
        rc = ssm_write_error(&error, "insert into " SSM_REVOCATIONS, err,
                             err_len);
    }
    ssm_end(m, &op);
    bson_destroy(&doc);
    return rc;
}


/* ---- purge ------------------------------------------------------------- */

static int ssm_delete_expired(ss_mongo_t *m,
                              const char *collection,
                              const char *field,
                              int64_t now_ms,
                              int64_t deadline,
                              uint64_t *deleted,
                              char *err,
                              size_t err_len) {
    bson_t filter = BSON_INITIALIZER;
    bson_t lte;
    bson_t reply;
    bson_error_t error;
    int64_t max_time;
    ssm_op_t op;
    int rc;

    *deleted = 0;
    rc = ssm_time_left(deadline, &max_time, err, err_len);
    if (rc == CPS_OK) {
        rc = ssm_begin(m, collection, &op, err, err_len);
    }
    if (rc != CPS_OK) {
        bson_destroy(&filter);
        return rc;
    }
    BSON_APPEND_DOCUMENT_BEGIN(&filter, field, &lte);
    BSON_APPEND_DATE_TIME(&lte, "$lte", now_ms);
    bson_append_document_end(&filter, &lte);
    if (!mongoc_collection_delete_many(op.coll, &filter, NULL, &reply,
                                       &error)) {
        char what[64];

        snprintf(what, sizeof(what), "delete from %s", collection);
        rc = ssm_write_error(&error, what, err, err_len);
    } else {
        int64_t count = ssm_reply_count(&reply, "deletedCount");

        *deleted = count > 0 ? (uint64_t)count : 0;
    }
    bson_destroy(&reply);
    ssm_end(m, &op);
    bson_destroy(&filter);
    return rc;
}


static int ssm_purge(ss_store_t *store,
                     int64_t now_ms,
                     int64_t deadline,
                     uint64_t *removed,
                     char *err,
                     size_t err_len) {
    ss_mongo_t *m = (ss_mongo_t *)store;
    uint64_t revocations;
    int rc;

    /* Sessions first: a revocation outliving its session for a moment is
     * harmless, and both expire at the same time. */
    rc = ssm_delete_expired(m, SSM_SESSIONS, "absolute_expires_at", now_ms,
                            deadline, removed, err, err_len);
    if (rc == CPS_OK) {
        rc = ssm_delete_expired(m, SSM_REVOCATIONS, "expires_at", now_ms,
                                deadline, &revocations, err, err_len);
    }
    return rc;
}


/* ---- the store --------------------------------------------------------- */

static ss_ttl_t ssm_ttl_status(const ss_store_t *store) {
    ss_mongo_t *m = (ss_mongo_t *)store;

    return (ss_ttl_t)atomic_load(&m->ttl);
}


static void ssm_destroy(ss_store_t *store) {
    ss_mongo_t *m = (ss_mongo_t *)store;

    pthread_mutex_destroy(&m->index_lock);
    free(m);
}


static const ss_store_ops_t ss_mongo_ops = {
    .kind = "mongodb",
    .insert = ssm_insert,
    .find_by_hash = ssm_find_by_hash,
    .find_by_id = ssm_find_by_id,
    .touch = ssm_touch,
    .revoke = ssm_revoke,
    .revoke_all = ssm_revoke_all,
    .list = ssm_list,
    .purge = ssm_purge,
    .ttl_status = ssm_ttl_status,
    .destroy = ssm_destroy,
};


ss_store_t *ss_mongo_new(mg_t *mg, char *err, size_t err_len) {
    ss_mongo_t *m = calloc(1, sizeof(*m));
    int rc;

    if (m == NULL) {
        ss_set_err(err, err_len, "out of memory");
        return NULL;
    }
    if (pthread_mutex_init(&m->index_lock, NULL) != 0) {
        free(m);
        ss_set_err(err, err_len, "pthread_mutex_init failed");
        return NULL;
    }
    m->base.ops = &ss_mongo_ops;
    m->mg = mg;
    atomic_init(&m->ttl, SS_TTL_PENDING);

    /* An unreachable server is not fatal here: the indexes then come
     * before the first write. A server that refuses them is. */
    rc = ssm_ensure_indexes(m, 0, err, err_len);
    if (rc != CPS_OK && rc != CPS_UNAVAILABLE && rc != CPS_DEADLINE_EXCEEDED) {
        ssm_destroy(&m->base);
        return NULL;
    }
    if (rc != CPS_OK && err != NULL && err_len > 0) {
        err[0] = '\0';
    }
    return &m->base;
}
