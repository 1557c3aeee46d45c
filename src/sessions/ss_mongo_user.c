/*
 * The MongoDB session store's operations over all of one user's sessions:
 * revoke them all, and list the live ones (ss_store.h). The design note,
 * including why revocations are documents of their own, is atop
 * ss_mongo.c.
 */
#include "ss_mongo.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"


/*
 * The operations over one user's sessions read the sessions through a
 * cursor and reach the revocations in batches of SSM_BATCH through the
 * same client: a worker holds one pooled client at a time (mongo.h), and
 * one thread may interleave a cursor with other operations on its client.
 */
typedef struct ssm_user_op {
    ss_mongo_t *m;
    ssm_op_t op;                      /* client and the sessions */
    mongoc_collection_t *revocations; /* same client */
    mongoc_cursor_t *cursor;
} ssm_user_op_t;


/* After an unordered insert_many failed: 1 when every write error is a
 * duplicate key (a session revoked meanwhile), so the inserts that could
 * happen did. */
static int ssm_only_duplicates(const bson_t *reply) {
    bson_iter_t it;
    bson_iter_t errors;
    bson_iter_t code;
    int seen = 0;

    if (bson_iter_init_find(&it, reply, "writeConcernErrors") &&
        BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_iter_t wce;

        if (bson_iter_recurse(&it, &wce) && bson_iter_next(&wce)) {
            return 0;
        }
    }
    if (!bson_iter_init_find(&it, reply, "writeErrors") ||
        !BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &errors)) {
        return 0;
    }
    while (bson_iter_next(&errors)) {
        seen = 1;
        if (!BSON_ITER_HOLDS_DOCUMENT(&errors) ||
            !bson_iter_recurse(&errors, &code) ||
            !bson_iter_find(&code, "code") ||
            bson_iter_as_int64(&code) != SSM_DUPLICATE_KEY) {
            return 0;
        }
    }
    return seen;
}


/* Insert the revocations in docs[0..n) through coll; *inserted counts
 * the new ones. */
static int ssm_insert_revocations(mongoc_collection_t *coll,
                                  bson_t **docs,
                                  size_t n,
                                  int64_t deadline,
                                  uint32_t *inserted,
                                  char *err,
                                  size_t err_len) {
    bson_t opts = BSON_INITIALIZER;
    bson_t reply;
    bson_error_t error;
    int64_t max_time;
    int64_t count;
    int rc;

    rc = ssm_time_left(deadline, &max_time, err, err_len);
    if (rc != CPS_OK) {
        bson_destroy(&opts);
        return rc;
    }
    /* Unordered: a session revoked meanwhile fails alone, as a duplicate,
     * and the others are still revoked. */
    BSON_APPEND_BOOL(&opts, "ordered", false);
    if (!mongoc_collection_insert_many(coll, (const bson_t **)docs, n, &opts,
                                       &reply, &error) &&
        !ssm_only_duplicates(&reply)) {
        rc = ssm_write_error(&error, "insert into " SSM_REVOCATIONS, err,
                             err_len);
    }
    count = ssm_reply_count(&reply, "insertedCount");
    if (rc == CPS_OK && count > 0) {
        *inserted = (uint64_t)(UINT32_MAX - *inserted) < (uint64_t)count
                        ? UINT32_MAX
                        : *inserted + (uint32_t)count;
    }
    bson_destroy(&reply);
    bson_destroy(&opts);
    return rc;
}


static void ssm_free_docs(bson_t *docs, size_t *n) {
    for (size_t i = 0; i < *n; i++) {
        bson_destroy(&docs[i]);
    }
    *n = 0;
}


/* Open a cursor over the user's sessions live at now_ms (revocations
 * aside), newest first; whole documents, or only _id and
 * absolute_expires_at. */
static mongoc_cursor_t *ssm_live_cursor(mongoc_collection_t *coll,
                                        const char *user_id,
                                        int64_t now_ms,
                                        int64_t max_time,
                                        bool whole) {
    bson_t filter = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER;
    bson_t sub;
    mongoc_cursor_t *cursor;

    BSON_APPEND_UTF8(&filter, "user_id", user_id);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "absolute_expires_at", &sub);
    BSON_APPEND_DATE_TIME(&sub, "$gt", now_ms);
    bson_append_document_end(&filter, &sub);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "idle_expires_at", &sub);
    BSON_APPEND_DATE_TIME(&sub, "$gt", now_ms);
    bson_append_document_end(&filter, &sub);

    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sub);
    BSON_APPEND_INT32(&sub, "created_at", -1);
    BSON_APPEND_INT32(&sub, "_id", -1);
    bson_append_document_end(&opts, &sub);
    if (!whole) {
        BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &sub);
        BSON_APPEND_INT32(&sub, "_id", 1);
        BSON_APPEND_INT32(&sub, "absolute_expires_at", 1);
        bson_append_document_end(&opts, &sub);
    }
    BSON_APPEND_INT32(&opts, "batchSize", SSM_BATCH);
    if (max_time > 0) {
        BSON_APPEND_INT64(&opts, "maxTimeMS", max_time);
    }
    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return cursor;
}


static int ssm_user_begin(ss_mongo_t *m,
                          ssm_user_op_t *u,
                          const char *user_id,
                          int64_t now_ms,
                          int64_t deadline,
                          bool whole,
                          char *err,
                          size_t err_len) {
    int64_t max_time;
    int rc;

    memset(u, 0, sizeof(*u));
    u->m = m;
    rc = ssm_time_left(deadline, &max_time, err, err_len);
    if (rc == CPS_OK) {
        rc = ssm_begin(m, SSM_SESSIONS, &u->op, err, err_len);
    }
    if (rc != CPS_OK) {
        return rc;
    }
    u->revocations = mongoc_client_get_collection(
        u->op.client, mg_database_name(m->mg), SSM_REVOCATIONS);
    u->cursor = ssm_live_cursor(u->op.coll, user_id, now_ms, max_time, whole);
    return CPS_OK;
}


/* End the cursor; rc is the status so far, returned unless the cursor
 * failed. */
static int ssm_user_end(ssm_user_op_t *u, int rc, char *err, size_t err_len) {
    bson_error_t error;

    if (rc == CPS_OK && mongoc_cursor_error(u->cursor, &error)) {
        rc = mg_error(&error, "find in " SSM_SESSIONS, err, err_len);
    }
    mongoc_cursor_destroy(u->cursor);
    mongoc_collection_destroy(u->revocations);
    ssm_end(u->m, &u->op);
    return rc;
}


int ssm_revoke_all(ss_store_t *store,
                   const char *user_id,
                   int64_t now_ms,
                   int64_t deadline,
                   uint32_t *revoked,
                   char *err,
                   size_t err_len) {
    ss_mongo_t *m = (ss_mongo_t *)store;
    bson_t docs[SSM_BATCH];
    bson_t *ptrs[SSM_BATCH];
    size_t n = 0;
    ssm_user_op_t u;
    const bson_t *doc;
    int rc;

    *revoked = 0;
    rc = mg_ensure_indexes(m->indexes, deadline, err, err_len);
    if (rc == CPS_OK) {
        rc = ssm_user_begin(m, &u, user_id, now_ms, deadline, false, err,
                            err_len);
    }
    if (rc != CPS_OK) {
        return rc;
    }
    /* Every live session found gets a revocation; those revoked before
     * fail as duplicates and are not counted. */
    while (rc == CPS_OK && mongoc_cursor_next(u.cursor, &doc)) {
        char id[SS_SESSION_ID_MAX + 1];
        int64_t expires;

        if (!ssm_read_fixed(doc, "_id", id, sizeof(id)) ||
            !ssm_read_date(doc, "absolute_expires_at", &expires)) {
            rc = CPS_INTERNAL;
            ss_set_err(err, err_len, "a stored session is malformed");
            break;
        }
        bson_init(&docs[n]);
        ptrs[n] = &docs[n];
        ssm_revocation_to_bson(id, user_id, now_ms, expires, &docs[n]);
        n++;
        if (n == SSM_BATCH) {
            rc = ssm_insert_revocations(u.revocations, ptrs, n, deadline,
                                        revoked, err, err_len);
            ssm_free_docs(docs, &n);
        }
    }
    if (rc == CPS_OK && n > 0) {
        rc = ssm_insert_revocations(u.revocations, ptrs, n, deadline, revoked,
                                    err, err_len);
    }
    ssm_free_docs(docs, &n);
    return ssm_user_end(&u, rc, err, err_len);
}


/*
 * Of the n records in batch, move those without a revocation to the end
 * of out (at most max in all), and clear the others.
 */
static int ssm_keep_unrevoked(ssm_user_op_t *u,
                              ss_record_t *batch,
                              size_t n,
                              int64_t deadline,
                              ss_record_t *out,
                              size_t *n_out,
                              size_t max,
                              char *err,
                              size_t err_len) {
    bson_t filter = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER;
    bson_t sub;
    bson_t in;
    mongoc_cursor_t *cursor;
    const bson_t *doc;
    bson_error_t error;
    int64_t max_time;
    char idx[16];
    const char *idx_key;
    int rc;

    rc = ssm_time_left(deadline, &max_time, err, err_len);
    if (rc != CPS_OK) {
        goto done;
    }
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &sub);
    BSON_APPEND_ARRAY_BEGIN(&sub, "$in", &in);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &idx_key, idx, sizeof(idx));
        BSON_APPEND_UTF8(&in, idx_key, batch[i].session_id);
    }
    bson_append_array_end(&sub, &in);
    bson_append_document_end(&filter, &sub);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &sub);
    BSON_APPEND_INT32(&sub, "_id", 1);
    bson_append_document_end(&opts, &sub);
    if (max_time > 0) {
        BSON_APPEND_INT64(&opts, "maxTimeMS", max_time);
    }

    cursor =
        mongoc_collection_find_with_opts(u->revocations, &filter, &opts, NULL);
    while (mongoc_cursor_next(cursor, &doc)) {
        char id[SS_SESSION_ID_MAX + 1];

        if (!ssm_read_fixed(doc, "_id", id, sizeof(id))) {
            continue; /* not one of ours: the $in matched strings only */
        }
        for (size_t i = 0; i < n; i++) {
            if (strcmp(batch[i].session_id, id) == 0) {
                batch[i].revoked_at_ms = 1; /* marks it, see below */
            }
        }
    }
    if (mongoc_cursor_error(cursor, &error)) {
        rc = mg_error(&error, "find in " SSM_REVOCATIONS, err, err_len);
    }
    mongoc_cursor_destroy(cursor);

done:
    for (size_t i = 0; i < n; i++) {
        if (rc == CPS_OK && batch[i].revoked_at_ms == 0 && *n_out < max) {
            out[(*n_out)++] = batch[i]; /* moves the metadata too */
        } else {
            ss_record_clear(&batch[i]);
        }
    }
    bson_destroy(&opts);
    bson_destroy(&filter);
    return rc;
}


int ssm_list(ss_store_t *store,
             const char *user_id,
             int64_t now_ms,
             size_t max,
             int64_t deadline,
             ss_record_t *out,
             size_t *n_out,
             char *err,
             size_t err_len) {
    ss_mongo_t *m = (ss_mongo_t *)store;
    ss_record_t *batch;
    size_t n = 0;
    ssm_user_op_t u;
    const bson_t *doc;
    int rc;

    *n_out = 0;
    batch = calloc(SSM_BATCH, sizeof(*batch));
    if (batch == NULL) {
        ss_set_err(err, err_len, "out of memory");
        return CPS_INTERNAL;
    }
    rc = ssm_user_begin(m, &u, user_id, now_ms, deadline, true, err, err_len);
    if (rc != CPS_OK) {
        free(batch);
        return rc;
    }
    /* Sessions come newest first; each batch drops its revoked ones, so
     * the list is the newest max live sessions whatever number of revoked
     * ones are still kept. */
    while (rc == CPS_OK && *n_out < max && mongoc_cursor_next(u.cursor, &doc)) {
        if (!ssm_record_from_bson(doc, &batch[n])) {
            ss_record_clear(&batch[n]);
            rc = CPS_INTERNAL;
            ss_set_err(err, err_len, "a stored session is malformed");
            break;
        }
        n++;
        if (n == SSM_BATCH) {
            rc = ssm_keep_unrevoked(&u, batch, n, deadline, out, n_out, max,
                                    err, err_len);
            n = 0;
        }
    }
    if (rc == CPS_OK && n > 0) {
        rc = ssm_keep_unrevoked(&u, batch, n, deadline, out, n_out, max, err,
                                err_len);
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        ss_record_clear(&batch[i]);
    }
    free(batch);
    rc = ssm_user_end(&u, rc, err, err_len);
    if (rc != CPS_OK) {
        for (size_t i = 0; i < *n_out; i++) {
            ss_record_clear(&out[i]);
        }
        *n_out = 0;
    }
    return rc;
}
