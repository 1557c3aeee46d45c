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

/* The lookup indexes; the expiry indexes come from ssm_expiry_indexes(). */
static const mg_index_t ssm_indexes[] = {
    {.collection = SSM_SESSIONS,
     .name = "token_hash_unique",
     .keys = {{"token_hash", 1}},
     .unique = true},
    {.collection = SSM_SESSIONS,
     .name = "user_id_created_at",
     .keys = {{"user_id", 1}, {"created_at", -1}}},
};


/*
 * The expiry index of one collection: a TTL index named <field>_ttl, or,
 * where the server does not implement them, a plain one named <field>.
 * *ttl is cleared in that case, and a later call goes straight to the
 * plain index.
 */
static int ssm_expiry_index(ss_mongo_t *m,
                            const char *collection,
                            const char *field,
                            int64_t deadline,
                            bool *ttl,
                            char *err,
                            size_t err_len) {
    mg_index_t ix = {
        .collection = collection, .keys = {{field, 1}}, .ttl = true};
    char name[64];
    int supported = 1;
    int rc;

    if (*ttl) {
        snprintf(name, sizeof(name), "%s_ttl", field);
        ix.name = name;
        rc = mg_create_index(m->mg, &ix, deadline, &supported, err, err_len);
        if (supported) {
            return rc;
        }
        *ttl = false;
    }
    ix.name = field;
    ix.ttl = false;
    return mg_create_index(m->mg, &ix, deadline, NULL, err, err_len);
}


/* The index set's hook: the expiry indexes, once the lookup indexes exist,
 * until they are made; then m->ttl says which kind they are. */
static int
ssm_expiry_indexes(void *arg, int64_t deadline, char *err, size_t err_len) {
    ss_mongo_t *m = arg;
    bool ttl = true;
    int rc;

    if (atomic_load(&m->ttl) != SS_TTL_PENDING) {
        return CPS_OK;
    }
    rc = ssm_expiry_index(m, SSM_SESSIONS, "absolute_expires_at", deadline,
                          &ttl, err, err_len);
    if (rc == CPS_OK) {
        rc = ssm_expiry_index(m, SSM_REVOCATIONS, "expires_at", deadline, &ttl,
                              err, err_len);
    }
    if (rc == CPS_OK) {
        atomic_store(&m->ttl, ttl ? SS_TTL_CREATED : SS_TTL_UNSUPPORTED);
    }
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

    rc = mg_ensure_indexes(m->indexes, deadline, err, err_len);
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

    rc = mg_ensure_indexes(m->indexes, deadline, err, err_len);
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

    mg_index_set_free(m->indexes);
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

    if (m == NULL) {
        ss_set_err(err, err_len, "out of memory");
        return NULL;
    }
    m->base.ops = &ss_mongo_ops;
    m->mg = mg;
    atomic_init(&m->ttl, SS_TTL_PENDING);
    m->indexes = mg_index_set_new(mg, ssm_indexes, MG_INDEX_COUNT(ssm_indexes),
                                  ssm_expiry_indexes, m, err, err_len);
    if (m->indexes == NULL) {
        free(m);
        return NULL;
    }
    return &m->base;
}
