/*
 * Single-use tokens (DESIGN.md section 5, "Single-use tokens"): OAuth
 * authorization codes, exchange tokens, magic links.
 *
 * A token is "<kind>_<random>", the random part 44 base62 characters from
 * the CSPRNG (more than 256 bits). The store never sees it: it keeps
 * HMAC-SHA256(server secret, token) as the lookup value and a public
 * token_id ("tok_" and 24 hex characters), with the kind, subject,
 * metadata, binding and times.
 *
 * Lifetime. ttl_ms 0 means ten minutes. Either is capped, not refused, at
 * the kind's max_ttl from the configuration file: the caller asked for "at
 * most this long", and the response's expires_at_ms says what it got.
 *
 * Binding. A token may bind a client id and a redirect URI (a consume must
 * present the same strings) and a PKCE S256 challenge (a consume must
 * present a verifier whose BASE64URL(SHA-256) equals it; compared in
 * constant time). What the token does not bind is not checked, except that
 * a verifier presented for a token without a challenge is a mismatch: a
 * client that uses PKCE must not be served a code issued without it (the
 * downgrade that OAuth 2.1 forbids).
 *
 * Consume answers, in this order of checking:
 *
 *   NOT_FOUND         no token with this hash, or one of another kind
 *   REVOKED           the token was revoked, before or after a consume
 *   ALREADY_CONSUMED  a consume spent it before; consumed_at_ms is when.
 *                     Answered whatever the presented binding and even
 *                     past expiry, for as long as the token is kept
 *                     (expiry plus the reuse window): a late replay of a
 *                     used code is exactly what reuse detection is for.
 *                     Subject and metadata are not returned here.
 *   EXPIRED           an unspent token with now >= expires_at, even while
 *                     its record exists
 *   BINDING_MISMATCH  an unspent token whose binding the request does not
 *                     satisfy; nothing is spent, so a correct consume can
 *                     still follow
 *   CONSUMED          this consume spent the token: subject, metadata and
 *                     consumed_at_ms (the time stored, which later
 *                     ALREADY_CONSUMED answers repeat exactly)
 *
 * Exactly once. Spending a token is an insert of its spent mark keyed by
 * token_id (tk_store.h, tk_mongo.c); of any number of concurrent consumes,
 * on any number of instances, exactly one insert succeeds. The losers read
 * the winner's mark.
 *
 * Revoke races consume for the same mark. If revoke's mark goes in first,
 * every consume answers REVOKED. If a consume's goes in first, it answers
 * CONSUMED (possibly after the revoke has returned: its decision came
 * first) and the revoke still marks the token revoked, so every later
 * consume answers REVOKED. Either way no consume that starts after Revoke
 * has returned can succeed, and a consume that won is not undone (the
 * caller revokes whatever it issued from it). Revoke answers revoked =
 * true for any token of that kind that exists, spent or expired or not,
 * and false only when there is none.
 *
 * A consume whose spent-mark insert fails in transit (UNAVAILABLE) may
 * still have been applied by the server; a retry then answers
 * ALREADY_CONSUMED. Deciding at most once leaves no other choice without
 * a caller-supplied idempotency key.
 *
 * Every function here blocks on the store and is thread-safe; the server
 * calls them from worker threads only. Request and response messages are
 * the protobuf-c structs generated from proto/cpstore/v1/tokens.proto. A
 * token never appears in err, and neither does the secret.
 */
#ifndef CPSTORE_TOKENS_H
#define CPSTORE_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "cpstore/v1/tokens.pb-c.h"
#include "tk_store.h"

#define TK_SECRET_MIN       32 /* bytes of server secret, at least */
#define TK_KIND_MAX         32 /* kind: 1..32 of [A-Za-z0-9_.:-] */
#define TK_RANDOM_CHARS     44 /* 44 * log2(62) > 261 bits */
#define TK_TOKEN_MAX        (TK_KIND_MAX + 1 + TK_RANDOM_CHARS)
#define TK_TOKEN_LOOKUP     256 /* longest token consume and revoke hash */
#define TK_DEFAULT_TTL_MS   (10ull * 60 * 1000)
#define TK_SUBJECT_MAX      256
#define TK_CLIENT_ID_MAX    256
#define TK_REDIRECT_URI_MAX 1024

typedef struct tk_service tk_service_t;
typedef struct mg mg_t;

/*
 * A service on the MongoDB store over mg (borrowed, must outlive the
 * service), or on a memory store when mg is NULL. secret is borrowed too.
 * The MongoDB store creates its indexes now, or before its first write if
 * the server is not reachable yet. NULL, with a reason in err, when the
 * secret is shorter than TK_SECRET_MIN, the server refuses a required
 * index, or out of memory.
 */
tk_service_t *tk_service_new(mg_t *mg,
                             const uint8_t *secret,
                             size_t secret_len,
                             char *err,
                             size_t err_len);
void tk_service_free(tk_service_t *svc);

/* The store's name: "memory" or "mongodb". */
const char *tk_service_kind(const tk_service_t *svc);

/*
 * Whether the server expires token documents by itself: TK_TTL_ACTIVE, or
 * TK_TTL_UNSUPPORTED when it refused TTL indexes (FerretDB), which the
 * caller logs once; tk_purge then removes everything. TK_TTL_PENDING until
 * the server has been reached; TK_TTL_NONE for the memory store.
 */
tk_ttl_index_t tk_service_ttl_index(const tk_service_t *svc);

/* What the configuration says about one kind, copied into the job. */
typedef struct tk_kind_limits {
    uint64_t max_ttl_ms;      /* the kind's max_ttl; must be above 0 */
    uint64_t reuse_window_ms; /* how long a token is kept past expiry */
} tk_kind_limits_t;

/*
 * Issue a token of req->kind, which the caller has found configured (its
 * limits in lim). Returns CPS_OK with *resp filled (free its contents with
 * tk_issue_response_clear()), CPS_INVALID_ARGUMENT for a bad request (a
 * kind that is not 1..32 of [A-Za-z0-9_.:-], no subject, a field over its
 * limit, a metadata key that is empty or repeated, a PKCE challenge that
 * is not 43 base64url characters), or the store's error (CPS_UNAVAILABLE,
 * CPS_DEADLINE_EXCEEDED, CPS_INTERNAL). On failure nothing was stored and
 * *resp holds nothing to free. deadline_mono_ms is on clock_mono_ms(); 0
 * means none.
 */
int tk_issue(tk_service_t *svc,
             const Cpstore__V1__IssueTokenRequest *req,
             const tk_kind_limits_t *lim,
             int64_t deadline_mono_ms,
             Cpstore__V1__IssueTokenResponse *resp,
             char *err,
             size_t err_len);

/* Free what tk_issue put in resp, wiping the token first. */
void tk_issue_response_clear(Cpstore__V1__IssueTokenResponse *resp);

/*
 * Consume a token: CPS_OK with resp->code as the design note above says.
 * A token that is empty, longer than TK_TOKEN_LOOKUP or not of the form
 * "<kind>_..." is NOT_FOUND without a lookup. Errors: CPS_INVALID_ARGUMENT
 * for a malformed kind or a binding field over its limit, and the store's
 * errors; *resp then holds nothing to free.
 */
int tk_consume(tk_service_t *svc,
               const Cpstore__V1__ConsumeTokenRequest *req,
               int64_t deadline_mono_ms,
               Cpstore__V1__ConsumeTokenResponse *resp,
               char *err,
               size_t err_len);
void tk_consume_response_clear(Cpstore__V1__ConsumeTokenResponse *resp);

/* Revoke a token: CPS_OK with resp->revoked true when a token of that kind
 * exists (it can never be consumed from now on), false when none does.
 * Errors as for tk_consume. resp holds nothing to free. */
int tk_revoke(tk_service_t *svc,
              const Cpstore__V1__RevokeTokenRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__RevokeTokenResponse *resp,
              char *err,
              size_t err_len);

/*
 * Delete the tokens (and their spent marks) whose expiry plus
 * reuse_window_ms is at or before now_ms. *removed receives the number of
 * tokens deleted. CPS_OK or the store's error; the housekeeping timer
 * calls it from a worker and logs a failure.
 */
int tk_purge(tk_service_t *svc,
             int64_t now_ms,
             uint64_t reuse_window_ms,
             int64_t deadline_mono_ms,
             uint64_t *removed,
             char *err,
             size_t err_len);

#endif
