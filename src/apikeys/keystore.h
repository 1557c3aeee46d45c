/*
 * Key store: where API key records live (DESIGN.md section 5, "API keys").
 *
 * A store is a small vtable so the service does not care whether records
 * sit in this process (ks_memory.c) or in MongoDB (ks_mongo.c). Every
 * operation blocks, is thread-safe, takes an absolute deadline on
 * clock_mono_ms() (0: none) and returns a cps status code:
 *
 *   CPS_OK                 done
 *   CPS_NOT_FOUND          no record matches (reads only)
 *   CPS_ALREADY_EXISTS     a record with the same key_id or hash exists
 *   CPS_UNAVAILABLE        the server cannot be reached, or a write failed
 *   CPS_DEADLINE_EXCEEDED  the deadline passed before or during the call
 *   CPS_INTERNAL           anything that should not happen (a malformed
 *                          stored record, out of memory)
 *
 * err, when not NULL, receives a short reason for any code but CPS_OK and
 * CPS_NOT_FOUND. It never contains a key or the server secret; stores never
 * see either.
 *
 * The record carries every attribute of a key. Besides insert and the two
 * lookups, the lifecycle changes one field at a time, and each change only
 * ever goes one way, so that two instances doing the same thing at once
 * cannot undo each other: revoke sets revoked_at_ms once, retire lowers
 * expires_at_ms (rotation's grace), touch raises last_used_at_ms. A
 * rotated key is a new record, inserted whole, that names the old one in
 * rotated_from; retire names the new one in the old one's rotated_to.
 *
 * Which of several concurrent rotations of one key wins is not decided by
 * any of those changes (an update is a read and then a write on FerretDB
 * v1) but by a claim: one record per rotated key, keyed by its key_id and
 * naming the successor, that the store accepts once and refuses after
 * (see claim_rotation).
 */
#ifndef CPSTORE_KEYSTORE_H
#define CPSTORE_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#define KS_HASH_LEN 32 /* HMAC-SHA256 of the key */

typedef struct ks_meta {
    char *key;
    char *value;
} ks_meta_t;

/*
 * One API key, never the key itself. Every pointer is owned by the record
 * and freed by ks_record_clear(). Optional strings are NULL when absent.
 */
typedef struct ks_record {
    char *key_id;              /* public id, "key_" + 24 hex chars */
    uint8_t hash[KS_HASH_LEN]; /* HMAC-SHA256(server secret, key) */
    char *hint;                /* "<prefix>_..." + last four chars */
    char *user_id;             /* owner, required */
    char *name;                /* optional */
    char **scopes;
    size_t n_scopes;
    char *org_id;     /* optional binding */
    char *project_id; /* optional binding */
    int64_t created_at_ms;
    int64_t expires_at_ms;   /* 0: never expires */
    int64_t revoked_at_ms;   /* 0: not revoked */
    int64_t last_used_at_ms; /* 0: never; see ak_flush_usage() */
    char *rotated_from;      /* key_id this key replaced, optional */
    char *rotated_to;        /* key_id that replaced this one, optional */
    ks_meta_t *metadata;
    size_t n_metadata;
} ks_record_t;

typedef struct ks_store ks_store_t;

/* The operations a backend implements. Call them through the ks_*()
 * wrappers below, which check the deadline first. */
typedef struct ks_ops {
    const char *kind; /* "memory", "mongodb" */

    /* Store a copy of rec as one unit: all of it or nothing. */
    int (*insert)(ks_store_t *store,
                  const ks_record_t *rec,
                  int64_t deadline_mono_ms,
                  char *err,
                  size_t err_len);

    /* Fill *out (which must be empty, see ks_record_init) with the record
     * whose hash is `hash`; the caller clears it. */
    int (*find_by_hash)(ks_store_t *store,
                        const uint8_t hash[KS_HASH_LEN],
                        int64_t deadline_mono_ms,
                        ks_record_t *out,
                        char *err,
                        size_t err_len);

    /* Fill *out (empty) with the record whose key_id is key_id. */
    int (*find_by_id)(ks_store_t *store,
                      const char *key_id,
                      int64_t deadline_mono_ms,
                      ks_record_t *out,
                      char *err,
                      size_t err_len);

    /* Up to max records of user_id, newest (created_at) first, into *out
     * (a new array of *n records, NULL when there are none; free it with
     * ks_records_free). */
    int (*list_by_user)(ks_store_t *store,
                        const char *user_id,
                        size_t max,
                        int64_t deadline_mono_ms,
                        ks_record_t **out,
                        size_t *n,
                        char *err,
                        size_t err_len);

    /* Set revoked_at_ms to at_ms unless the record is revoked already,
     * then fill *out (empty) with the record as stored: its revoked_at_ms
     * is the first revocation's. CPS_NOT_FOUND for an unknown key_id. */
    int (*revoke)(ks_store_t *store,
                  const char *key_id,
                  int64_t at_ms,
                  int64_t deadline_mono_ms,
                  ks_record_t *out,
                  char *err,
                  size_t err_len);

    /* Set rotated_to to successor and lower expires_at_ms to at_ms (> 0)
     * unless the record expires at or before at_ms already, then fill
     * *out (empty) with the record as stored. CPS_NOT_FOUND for an
     * unknown key_id. */
    int (*retire)(ks_store_t *store,
                  const char *key_id,
                  int64_t at_ms,
                  const char *successor,
                  int64_t deadline_mono_ms,
                  ks_record_t *out,
                  char *err,
                  size_t err_len);

    /* Claim the rotation of key_id for successor, at at_ms: the store,
     * not the caller's earlier read, decides, so of any number of
     * concurrent claims of one key_id exactly one gets CPS_OK. Every other
     * gets CPS_ALREADY_EXISTS, and *winner (when winner is not NULL) a new
     * string naming the successor of the claim that stands, or NULL if
     * that claim could not be read back; the caller frees it. A claim is
     * never overwritten; only release_rotation removes it. */
    int (*claim_rotation)(ks_store_t *store,
                          const char *key_id,
                          const char *successor,
                          int64_t at_ms,
                          int64_t deadline_mono_ms,
                          char **winner,
                          char *err,
                          size_t err_len);

    /* Remove the claim on key_id if it names successor: the winner gives
     * up a rotation it could not finish, so that it can be retried.
     * CPS_OK also when there is no such claim. */
    int (*release_rotation)(ks_store_t *store,
                            const char *key_id,
                            const char *successor,
                            int64_t deadline_mono_ms,
                            char *err,
                            size_t err_len);

    /* Raise last_used_at_ms to at_ms unless it is at or after at_ms
     * already. CPS_NOT_FOUND for an unknown key_id. */
    int (*touch)(ks_store_t *store,
                 const char *key_id,
                 int64_t at_ms,
                 int64_t deadline_mono_ms,
                 char *err,
                 size_t err_len);

    /* CPS_OK when the backend answers. */
    int (*ping)(ks_store_t *store,
                int64_t deadline_mono_ms,
                char *err,
                size_t err_len);

    void (*destroy)(ks_store_t *store);
} ks_ops_t;

/* Backends embed this as their first member. */
struct ks_store {
    const ks_ops_t *ops;
};

/* An empty record: every pointer NULL, every number 0. */
void ks_record_init(ks_record_t *rec);

/* Free everything rec owns and leave it empty. Safe on an empty record. */
void ks_record_clear(ks_record_t *rec);

/* Deep copy src into the empty *dst. CPS_OK or CPS_INTERNAL (out of
 * memory, dst left empty). */
int ks_record_copy(ks_record_t *dst, const ks_record_t *src);

/* Clear and free an array of n records from list_by_user. NULL is
 * ignored. */
void ks_records_free(ks_record_t *recs, size_t n);

/*
 * An in-process store (uthash under a mutex): nothing is durable. For
 * trying cpstore without servers and for tests. NULL when out of memory.
 */
ks_store_t *ks_memory_new(void);

/*
 * A MongoDB store on collection `api_keys` of mg's database (and
 * `key_rotations` for the rotation claims); mg is
 * borrowed and must outlive the store. It creates its indexes (unique on
 * the hash; user_id with created_at, for listing) now; if the server cannot
 * be reached yet, the store is still returned and the indexes are created
 * before its first insert, so no key is ever written without them. NULL,
 * with a reason in err, when the server rejects the indexes or out of
 * memory.
 */
typedef struct mg mg_t;
ks_store_t *ks_mongo_new(mg_t *mg, char *err, size_t err_len);

/* The backend's name: "memory" or "mongodb". */
const char *ks_kind(const ks_store_t *store);

int ks_insert(ks_store_t *store,
              const ks_record_t *rec,
              int64_t deadline_mono_ms,
              char *err,
              size_t err_len);
int ks_find_by_hash(ks_store_t *store,
                    const uint8_t hash[KS_HASH_LEN],
                    int64_t deadline_mono_ms,
                    ks_record_t *out,
                    char *err,
                    size_t err_len);
int ks_find_by_id(ks_store_t *store,
                  const char *key_id,
                  int64_t deadline_mono_ms,
                  ks_record_t *out,
                  char *err,
                  size_t err_len);
int ks_list_by_user(ks_store_t *store,
                    const char *user_id,
                    size_t max,
                    int64_t deadline_mono_ms,
                    ks_record_t **out,
                    size_t *n,
                    char *err,
                    size_t err_len);
int ks_revoke(ks_store_t *store,
              const char *key_id,
              int64_t at_ms,
              int64_t deadline_mono_ms,
              ks_record_t *out,
              char *err,
              size_t err_len);
int ks_retire(ks_store_t *store,
              const char *key_id,
              int64_t at_ms,
              const char *successor,
              int64_t deadline_mono_ms,
              ks_record_t *out,
              char *err,
              size_t err_len);
int ks_claim_rotation(ks_store_t *store,
                      const char *key_id,
                      const char *successor,
                      int64_t at_ms,
                      int64_t deadline_mono_ms,
                      char **winner,
                      char *err,
                      size_t err_len);
int ks_release_rotation(ks_store_t *store,
                        const char *key_id,
                        const char *successor,
                        int64_t deadline_mono_ms,
                        char *err,
                        size_t err_len);
int ks_touch(ks_store_t *store,
             const char *key_id,
             int64_t at_ms,
             int64_t deadline_mono_ms,
             char *err,
             size_t err_len);
int ks_ping(ks_store_t *store,
            int64_t deadline_mono_ms,
            char *err,
            size_t err_len);

/* Destroy the store and its records (memory) or its handle (mongo).
 * NULL is ignored. */
void ks_free(ks_store_t *store);

#endif
