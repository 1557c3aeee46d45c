/*
 * Session store: where session records live, in this process
 * (ss_memory.c) or in MongoDB (ss_mongo.c). Internal to src/sessions/; the
 * service (sessions.c) decides, the store keeps.
 *
 * Every operation blocks, is thread-safe, takes an absolute deadline on
 * clock_mono_ms() (0: none; the service checks it before each call) and
 * returns a cps status code:
 *
 *   CPS_OK                 done
 *   CPS_NOT_FOUND          no record matches (lookups, touch, revoke)
 *   CPS_ALREADY_EXISTS     insert: the session_id or hash is taken;
 *                          revoke: the session was revoked before
 *   CPS_UNAVAILABLE        the server cannot be reached, or a write failed
 *   CPS_DEADLINE_EXCEEDED  the deadline passed
 *   CPS_INTERNAL           a malformed stored record, out of memory
 *
 * err receives a short reason for any code but CPS_OK, CPS_NOT_FOUND and
 * CPS_ALREADY_EXISTS. Stores never see a token, only its hash.
 *
 * "Live" below means: not revoked, now < idle_expires_at and
 * now < absolute_expires_at.
 */
#ifndef CPSTORE_SS_STORE_H
#define CPSTORE_SS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "sessions.h"

#define SS_HASH_LEN 32 /* HMAC-SHA256 of the token */
#define SS_ID_BYTES 16 /* random bytes of a session_id */
#define SS_ID_LEN   (4 + 2 * SS_ID_BYTES)

typedef struct ss_meta {
    char *key;
    char *value;
} ss_meta_t;

/*
 * One session, never its token. Strings are owned by the record and freed
 * by ss_record_clear(); metadata may be NULL with n_metadata 0.
 */
typedef struct ss_record {
    char session_id[SS_SESSION_ID_MAX + 1];
    uint8_t hash[SS_HASH_LEN];
    char user_id[SS_USER_ID_MAX + 1];
    char kind[SS_KIND_MAX + 1];
    int64_t created_at_ms;
    int64_t idle_timeout_ms;
    int64_t idle_expires_at_ms;     /* slides; never past absolute */
    int64_t absolute_expires_at_ms; /* fixed at creation */
    int64_t revoked_at_ms;          /* 0: not revoked */
    int64_t last_seen_at_ms;        /* as of the last written slide */
    ss_meta_t *metadata;
    size_t n_metadata;
} ss_record_t;

typedef struct ss_store ss_store_t;

typedef struct ss_store_ops {
    const char *kind; /* "memory", "mongodb" */

    /* Store a copy of rec, whole or not at all. */
    int (*insert)(ss_store_t *store,
                  const ss_record_t *rec,
                  int64_t deadline_mono_ms,
                  char *err,
                  size_t err_len);

    /* Fill the empty *out with the session whose token hash is hash, or
     * whose session_id is id; revoked_at_ms included. */
    int (*find_by_hash)(ss_store_t *store,
                        const uint8_t hash[SS_HASH_LEN],
                        int64_t deadline_mono_ms,
                        ss_record_t *out,
                        char *err,
                        size_t err_len);
    int (*find_by_id)(ss_store_t *store,
                      const char *session_id,
                      int64_t deadline_mono_ms,
                      ss_record_t *out,
                      char *err,
                      size_t err_len);

    /* Set the session's idle expiry and last-seen time, unconditionally.
     * CPS_NOT_FOUND when the session is gone (purged). */
    int (*touch)(ss_store_t *store,
                 const char *session_id,
                 int64_t idle_expires_at_ms,
                 int64_t last_seen_at_ms,
                 int64_t deadline_mono_ms,
                 char *err,
                 size_t err_len);

    /* Mark the session rec names revoked at revoked_at_ms. CPS_OK when
     * this call did it, CPS_ALREADY_EXISTS when it was revoked before.
     * Whatever runs concurrently, at most one call revokes a session. */
    int (*revoke)(ss_store_t *store,
                  const ss_record_t *rec,
                  int64_t revoked_at_ms,
                  int64_t deadline_mono_ms,
                  char *err,
                  size_t err_len);

    /* Revoke every session of user_id live at now_ms; *revoked counts
     * those this call revoked. */
    int (*revoke_all)(ss_store_t *store,
                      const char *user_id,
                      int64_t now_ms,
                      int64_t deadline_mono_ms,
                      uint32_t *revoked,
                      char *err,
                      size_t err_len);

    /* Up to max sessions of user_id live at now_ms, newest first (by
     * created_at_ms, then session_id), into out[0..*n). The caller clears
     * each record. */
    int (*list)(ss_store_t *store,
                const char *user_id,
                int64_t now_ms,
                size_t max,
                int64_t deadline_mono_ms,
                ss_record_t *out,
                size_t *n,
                char *err,
                size_t err_len);

    /* Delete the sessions with absolute_expires_at_ms <= now_ms; *removed
     * counts them. */
    int (*purge)(ss_store_t *store,
                 int64_t now_ms,
                 int64_t deadline_mono_ms,
                 uint64_t *removed,
                 char *err,
                 size_t err_len);

    ss_ttl_t (*ttl_status)(const ss_store_t *store);

    void (*destroy)(ss_store_t *store);
} ss_store_ops_t;

/* Backends embed this as their first member. */
struct ss_store {
    const ss_store_ops_t *ops;
};

/* An in-process store. NULL when out of memory. */
ss_store_t *ss_memory_new(void);

/* A MongoDB store on mg's database (mg borrowed). NULL, with a reason in
 * err, when the server rejects the indexes or out of memory. */
ss_store_t *ss_mongo_new(mg_t *mg, char *err, size_t err_len);

/* An empty record: every pointer NULL, every number 0, strings "". */
void ss_record_init(ss_record_t *rec);

/* Free what rec owns and leave it empty. Safe on an empty record. */
void ss_record_clear(ss_record_t *rec);

/* Deep copy src into the empty *dst. CPS_OK or CPS_INTERNAL (out of
 * memory; dst left empty). */
int ss_record_copy(ss_record_t *dst, const ss_record_t *src);

/* True when rec is live at now_ms. */
int ss_record_live(const ss_record_t *rec, int64_t now_ms);

/* Set err to msg (printf-style); err may be NULL. */
void ss_set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
