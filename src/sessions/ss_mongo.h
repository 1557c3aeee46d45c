/*
 * The MongoDB session store's internals, shared by its three files:
 * ss_mongo.c (the store, its indexes and the operations on one session),
 * ss_mongo_doc.c (the documents, as bson) and ss_mongo_user.c (the
 * operations over all of one user's sessions). The design note is atop
 * ss_mongo.c.
 */
#ifndef CPSTORE_SS_MONGO_H
#define CPSTORE_SS_MONGO_H

#include <stdatomic.h>
#include <stdint.h>

#include "mongo.h"
#include "ss_store.h"

#define SSM_SESSIONS      "sessions"
#define SSM_REVOCATIONS   "session_revocations"
#define SSM_VERSION       1     /* layout of a session document */
#define SSM_BATCH         64    /* documents per $in lookup or insert */
#define SSM_DUPLICATE_KEY 11000 /* server error DuplicateKey */

typedef struct ss_mongo {
    ss_store_t base; /* first member */
    mg_t *mg;
    mg_index_set_t *indexes; /* lookup indexes; expiry ones in its hook */
    atomic_int ttl;          /* an ss_ttl_t, written by the hook */
} ss_mongo_t;

/* One operation's borrowed client and a collection on it. */
typedef struct ssm_op {
    mongoc_client_t *client;
    mongoc_collection_t *coll;
} ssm_op_t;

/* ---- ss_mongo.c ---- */

/* Borrow a client and open collection on it; give both back with
 * ssm_end() on the same thread. */
int ssm_begin(ss_mongo_t *m,
              const char *collection,
              ssm_op_t *op,
              char *err,
              size_t err_len);
void ssm_end(ss_mongo_t *m, ssm_op_t *op);

/* The deadline as maxTimeMS, or CPS_DEADLINE_EXCEEDED with a reason. */
int ssm_time_left(int64_t deadline, int64_t *max_time, char *err, size_t len);

/* The status of a failed write: mg_error()'s, but never CPS_INTERNAL. */
int ssm_write_error(const bson_error_t *error,
                    const char *what,
                    char *err,
                    size_t err_len);

/* A count from a write's reply ("insertedCount"); 0 when absent. */
int64_t ssm_reply_count(const bson_t *reply, const char *field);

/* ---- ss_mongo_doc.c ---- */

/* A session as a document, and back (0: a malformed document; rec then
 * holds what was read so far, for ss_record_clear()). */
void ssm_record_to_bson(const ss_record_t *rec, bson_t *doc);
int ssm_record_from_bson(const bson_t *doc, ss_record_t *rec);

/* A revocation document. */
void ssm_revocation_to_bson(const char *session_id,
                            const char *user_id,
                            int64_t revoked_at_ms,
                            int64_t expires_at_ms,
                            bson_t *doc);

/* One field: a string into a fixed buffer of cap bytes, or a date. 0 when
 * absent, of another type, or (strings) too long or holding a NUL. */
int ssm_read_fixed(const bson_t *doc, const char *key, char *out, size_t cap);
int ssm_read_date(const bson_t *doc, const char *key, int64_t *out);

/* ---- ss_mongo_user.c: the store operations of the same names ---- */

int ssm_revoke_all(ss_store_t *store,
                   const char *user_id,
                   int64_t now_ms,
                   int64_t deadline,
                   uint32_t *revoked,
                   char *err,
                   size_t err_len);
int ssm_list(ss_store_t *store,
             const char *user_id,
             int64_t now_ms,
             size_t max,
             int64_t deadline,
             ss_record_t *out,
             size_t *n_out,
             char *err,
             size_t err_len);

#endif
