/*
 * Token store: where single-use tokens and their spent marks live
 * (DESIGN.md section 5, "Single-use tokens"). Internal to src/tokens: the
 * service in tokens.c makes every decision, the stores only keep records.
 *
 * Two kinds of record:
 *
 *   tk_record_t  one issued token, never the token itself: its keyed hash,
 *                public id, kind, subject, metadata, binding and times.
 *                Written once at issue; afterwards only revoked_at changes.
 *   tk_spend_t   the mark that a token has been spent, keyed by token_id.
 *                A token has at most one: the first consume or revoke that
 *                inserts it wins, and every later insert fails with
 *                CPS_ALREADY_EXISTS. This insert is the one place where
 *                "exactly once" is decided (see tk_mongo.c for why it is an
 *                insert and not a conditional update).
 *
 * Every operation blocks, is thread-safe, takes an absolute deadline on
 * clock_mono_ms() (0: none) and returns a cps status code:
 *
 *   CPS_OK                 done
 *   CPS_NOT_FOUND          no record matches (reads only)
 *   CPS_ALREADY_EXISTS     a record with that key exists (inserts only)
 *   CPS_UNAVAILABLE        the server cannot be reached, or a write failed
 *   CPS_DEADLINE_EXCEEDED  the deadline passed before or during the call
 *   CPS_INTERNAL           a malformed stored record, out of memory
 *
 * err, when not NULL, receives a short reason for any code but CPS_OK,
 * CPS_NOT_FOUND and CPS_ALREADY_EXISTS. It never contains a token or the
 * server secret; stores never see either.
 */
#ifndef CPSTORE_TK_STORE_H
#define CPSTORE_TK_STORE_H

#include <stddef.h>
#include <stdint.h>

#define TK_HASH_LEN     32 /* HMAC-SHA256 of the token */
#define TK_ID_HEX_BYTES 12 /* random bytes in a token_id */
#define TK_ID_LEN       (4 + 2 * TK_ID_HEX_BYTES) /* "tok_" + 24 hex */

typedef struct tk_meta {
    char *key;
    char *value;
} tk_meta_t;

/* One issued token. Every pointer is owned by the record and freed by
 * tk_record_clear(); optional strings are NULL when absent. */
typedef struct tk_record {
    char token_id[TK_ID_LEN + 1];
    uint8_t hash[TK_HASH_LEN]; /* HMAC-SHA256(server secret, token) */
    char *kind;
    char *subject;
    char *client_id;      /* binding; NULL: not bound */
    char *redirect_uri;   /* binding; NULL: not bound */
    char *pkce_challenge; /* binding, S256; NULL: not bound */
    tk_meta_t *metadata;
    size_t n_metadata;
    int64_t created_at_ms;
    int64_t expires_at_ms;
    int64_t purge_at_ms;   /* expiry plus the reuse window at issue */
    int64_t revoked_at_ms; /* 0: not revoked */
} tk_record_t;

typedef enum tk_spent_by {
    TK_SPENT_BY_CONSUME = 1,
    TK_SPENT_BY_REVOKE = 2,
} tk_spent_by_t;

/* The spent mark of one token. Plain data, nothing to free. */
typedef struct tk_spend {
    char token_id[TK_ID_LEN + 1];
    tk_spent_by_t by;
    int64_t at_ms;         /* when the winning consume or revoke ran */
    int64_t expires_at_ms; /* the token's, so purge treats both alike */
    int64_t purge_at_ms;
} tk_spend_t;

/* What a store says about TTL indexes; see tk_service_ttl_index(). */
typedef enum tk_ttl_index {
    TK_TTL_NONE = 0,    /* memory store: nothing to index */
    TK_TTL_PENDING,     /* server not reached yet; tried before a write */
    TK_TTL_ACTIVE,      /* the server deletes documents past purge_at */
    TK_TTL_UNSUPPORTED, /* the server refused them: tk_purge alone */
} tk_ttl_index_t;

typedef struct tk_store tk_store_t;

/* The operations a backend implements. Call them through the tk_store_*()
 * wrappers below, which check the deadline first. */
typedef struct tk_store_ops {
    const char *kind; /* "memory", "mongodb" */

    /* Store a copy of rec as one unit. CPS_ALREADY_EXISTS when its
     * token_id or hash is taken. */
    int (*insert)(tk_store_t *store,
                  const tk_record_t *rec,
                  int64_t deadline_mono_ms,
                  char *err,
                  size_t err_len);

    /* Fill the empty *out with the record whose hash is `hash`. */
    int (*find_by_hash)(tk_store_t *store,
                        const uint8_t hash[TK_HASH_LEN],
                        int64_t deadline_mono_ms,
                        tk_record_t *out,
                        char *err,
                        size_t err_len);

    /* Insert the spent mark; CPS_ALREADY_EXISTS when the token already
     * has one, which is then left as it was. */
    int (*spend)(tk_store_t *store,
                 const tk_spend_t *spend,
                 int64_t deadline_mono_ms,
                 char *err,
                 size_t err_len);

    /* Read the spent mark of token_id into *out. */
    int (*find_spend)(tk_store_t *store,
                      const char *token_id,
                      int64_t deadline_mono_ms,
                      tk_spend_t *out,
                      char *err,
                      size_t err_len);

    /* Set revoked_at_ms of token_id to at_ms unless it is set already.
     * CPS_OK also when the record is gone. */
    int (*mark_revoked)(tk_store_t *store,
                        const char *token_id,
                        int64_t at_ms,
                        int64_t deadline_mono_ms,
                        char *err,
                        size_t err_len);

    /* Delete the records and spent marks whose expires_at_ms is at or
     * before cutoff_ms; *removed counts the token records deleted. */
    int (*purge)(tk_store_t *store,
                 int64_t cutoff_ms,
                 int64_t deadline_mono_ms,
                 uint64_t *removed,
                 char *err,
                 size_t err_len);

    tk_ttl_index_t (*ttl_index)(tk_store_t *store);

    void (*destroy)(tk_store_t *store);
} tk_store_ops_t;

/* Backends embed this as their first member. */
struct tk_store {
    const tk_store_ops_t *ops;
};

/* An empty record: every pointer NULL, every number 0. */
void tk_record_init(tk_record_t *rec);

/* Free everything rec owns and leave it empty. Safe on an empty record. */
void tk_record_clear(tk_record_t *rec);

/* Deep copy src into the empty *dst. CPS_OK or CPS_INTERNAL (out of
 * memory, dst left empty). */
int tk_record_copy(tk_record_t *dst, const tk_record_t *src);

/* An in-process store (uthash under a mutex): nothing is durable. NULL
 * when out of memory. */
tk_store_t *tk_memory_new(void);

/*
 * A MongoDB store on collections `tokens` and `spent_tokens` of mg's
 * database; mg is borrowed and must outlive the store. Indexes are created
 * now; if the server cannot be reached yet, the store is still returned
 * and the indexes come before its first write. NULL, with a reason in err,
 * when the server rejects a required index or out of memory. A refused
 * TTL index is not an error (see tk_ttl_index_t).
 */
typedef struct mg mg_t;
tk_store_t *tk_mongo_new(mg_t *mg, char *err, size_t err_len);

int tk_store_insert(tk_store_t *store,
                    const tk_record_t *rec,
                    int64_t deadline_mono_ms,
                    char *err,
                    size_t err_len);
int tk_store_find_by_hash(tk_store_t *store,
                          const uint8_t hash[TK_HASH_LEN],
                          int64_t deadline_mono_ms,
                          tk_record_t *out,
                          char *err,
                          size_t err_len);
int tk_store_spend(tk_store_t *store,
                   const tk_spend_t *spend,
                   int64_t deadline_mono_ms,
                   char *err,
                   size_t err_len);
int tk_store_find_spend(tk_store_t *store,
                        const char *token_id,
                        int64_t deadline_mono_ms,
                        tk_spend_t *out,
                        char *err,
                        size_t err_len);
int tk_store_mark_revoked(tk_store_t *store,
                          const char *token_id,
                          int64_t at_ms,
                          int64_t deadline_mono_ms,
                          char *err,
                          size_t err_len);
int tk_store_purge(tk_store_t *store,
                   int64_t cutoff_ms,
                   int64_t deadline_mono_ms,
                   uint64_t *removed,
                   char *err,
                   size_t err_len);
tk_ttl_index_t tk_store_ttl_index(tk_store_t *store);
const char *tk_store_kind(const tk_store_t *store);

/* Destroy the store (and, for memory, its records). NULL is ignored. */
void tk_store_free(tk_store_t *store);

#endif
