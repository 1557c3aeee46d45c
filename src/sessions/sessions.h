/*
 * Sessions: admin and user sessions with an idle timeout that slides and an
 * absolute lifetime that does not (DESIGN.md section 5, "Sessions").
 *
 * A session token is "cps_" and 44 base62 characters from the CSPRNG (more
 * than 256 bits). It is returned once, by ss_create(); the store keeps only
 * HMAC-SHA256(server secret, token) as the lookup value, next to a public
 * session_id ("ses_" and 32 hex characters) used to list and revoke.
 *
 * Every ss_* function but ss_service_new, ss_service_free and
 * ss_ttl_status blocks on the store and is thread-safe; the server calls
 * them from worker threads only. Requests and responses are the protobuf-c
 * structs generated from proto/cpstore/v1/sessions.proto. Neither a token
 * nor the secret ever appears in err. deadline_mono_ms is an absolute time
 * on clock_mono_ms(); 0 means none.
 *
 * Errors, for every call: CPS_INVALID_ARGUMENT for a bad request (a field
 * over its bound in sessions.options, a missing required field), and the
 * store's CPS_UNAVAILABLE, CPS_DEADLINE_EXCEEDED or CPS_INTERNAL. On any
 * error *resp holds nothing to free. Answers such as "this session is
 * expired" or "nothing was revoked" are CPS_OK with the answer in *resp.
 */
#ifndef CPSTORE_SESSIONS_H
#define CPSTORE_SESSIONS_H

#include <stddef.h>
#include <stdint.h>

#include "cpstore/v1/sessions.pb-c.h"

#define SS_SECRET_MIN 32 /* bytes of server secret, at least */

/* Request bounds, in bytes without the terminating NUL: the client's
 * nanopb buffers (sessions.options, common.options) hold one more, so
 * whatever the server stores, a client can read back. */
#define SS_USER_ID_MAX    255
#define SS_KIND_MAX       31
#define SS_TOKEN_MAX      255
#define SS_SESSION_ID_MAX 47
#define SS_META_MAX       16
#define SS_META_KEY_MAX   63
#define SS_META_VALUE_MAX 511
#define SS_DURATION_MAX   (366ll * 24 * 3600 * 1000) /* longest timeout, ms */
#define SS_LIST_MAX       50 /* sessions one List returns, at most */

#define SS_DEFAULT_KIND "user"

typedef struct ss_service ss_service_t;
typedef struct mg mg_t; /* src/apikeys/mongo.h */

/*
 * The values of the configuration file (cfgfile.h, [session]) a call
 * needs. The server reads them on the loop thread and copies them into
 * the job; each must be above 0.
 */
typedef struct ss_settings {
    uint64_t idle_ms;     /* idle timeout when the request gives none */
    uint64_t absolute_ms; /* absolute lifetime when the request gives none */
    uint64_t touch_ms;    /* a slide is written at most this often */
} ss_settings_t;

/* Whether expired sessions also vanish through a TTL index. */
typedef enum ss_ttl {
    SS_TTL_NONE = 0,        /* memory store: the purge alone removes them */
    SS_TTL_PENDING = 1,     /* the server was not reached yet */
    SS_TTL_CREATED = 2,     /* TTL indexes exist */
    SS_TTL_UNSUPPORTED = 3, /* the server has none (FerretDB): purge only */
} ss_ttl_t;

/*
 * Create the service on a MongoDB store (mg, borrowed, must outlive the
 * service) or, when mg is NULL, on an in-process memory store where
 * nothing is durable. The secret is copied. The MongoDB store creates its
 * indexes now, or before its first write when the server cannot be reached
 * yet. NULL, with a reason in err, when the secret is shorter than
 * SS_SECRET_MIN, the server rejects the indexes, or out of memory.
 */
ss_service_t *ss_service_new(mg_t *mg,
                             const uint8_t *secret,
                             size_t secret_len,
                             char *err,
                             size_t err_len);

/* Wipe the secret copy and free the service and its store. NULL is
 * ignored. */
void ss_service_free(ss_service_t *svc);

/* "memory" or "mongodb". */
const char *ss_kind(const ss_service_t *svc);

/* The TTL index status, known once the indexes were attempted; the server
 * logs SS_TTL_UNSUPPORTED once, at start. Thread-safe. */
ss_ttl_t ss_ttl_status(const ss_service_t *svc);

/*
 * Create a session for req->user_id (required). kind defaults to
 * SS_DEFAULT_KIND, the timeouts to settings; each is at most
 * SS_DURATION_MAX. The idle expiry is min(now + idle, absolute expiry).
 * CPS_OK with *resp filled: the token (this once), the session_id and the
 * session's public description. Free with ss_create_response_clear(),
 * which wipes the token.
 */
int ss_create(ss_service_t *svc,
              const ss_settings_t *settings,
              const Cpstore__V1__CreateSessionRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__CreateSessionResponse *resp,
              char *err,
              size_t err_len);
void ss_create_response_clear(Cpstore__V1__CreateSessionResponse *resp);

/*
 * Validate a token. The answer, in resp->code, is the first that applies
 * of NOT_FOUND (no such token, or an empty one), REVOKED, EXPIRED
 * (now >= idle_expires_at or now >= absolute_expires_at), VALID. A found
 * session comes with its user_id and description (never its token).
 *
 * A VALID answer slides the idle expiry to min(now + idle timeout,
 * absolute expiry), but writes it only when that moves the stored expiry
 * by at least settings->touch_ms (capped at half the idle timeout, so that
 * a session in steady use never lapses between two writes). The expiry
 * enforced, and returned, is always the stored one. A slide that cannot
 * be written does not change the answer (the stored expiry still holds):
 * the call returns CPS_OK and err says what failed; otherwise err is
 * empty on CPS_OK.
 */
int ss_validate(ss_service_t *svc,
                const ss_settings_t *settings,
                const Cpstore__V1__ValidateSessionRequest *req,
                int64_t deadline_mono_ms,
                Cpstore__V1__ValidateSessionResponse *resp,
                char *err,
                size_t err_len);
void ss_validate_response_clear(Cpstore__V1__ValidateSessionResponse *resp);

/*
 * Revoke one session, named by exactly one of req->token and
 * req->session_id. resp->revoked is true when this call ended a live
 * session, false when there is no such session or it was already revoked
 * or expired. Effective at once for every later validate on any instance.
 */
int ss_revoke(ss_service_t *svc,
              const Cpstore__V1__RevokeSessionRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__RevokeSessionResponse *resp,
              char *err,
              size_t err_len);

/* Revoke every live session of req->user_id (required); resp->revoked
 * counts those this call ended. Other users' sessions are untouched. */
int ss_revoke_all(ss_service_t *svc,
                  const Cpstore__V1__RevokeAllSessionsRequest *req,
                  int64_t deadline_mono_ms,
                  Cpstore__V1__RevokeAllSessionsResponse *resp,
                  char *err,
                  size_t err_len);

/* The live sessions (neither revoked nor expired) of req->user_id
 * (required), newest first, at most SS_LIST_MAX. Free with
 * ss_list_response_clear(). */
int ss_list(ss_service_t *svc,
            const Cpstore__V1__ListSessionsRequest *req,
            int64_t deadline_mono_ms,
            Cpstore__V1__ListSessionsResponse *resp,
            char *err,
            size_t err_len);
void ss_list_response_clear(Cpstore__V1__ListSessionsResponse *resp);

/*
 * Delete the sessions whose absolute expiry is at or before now_ms,
 * revoked or not (no session is valid past it, so nothing is lost), and
 * their revocation records. *removed counts the sessions deleted. CPS_OK,
 * or the store's error; what was deleted before an error stays deleted.
 */
int ss_purge(ss_service_t *svc,
             int64_t now_ms,
             int64_t deadline_mono_ms,
             uint64_t *removed,
             char *err,
             size_t err_len);

#endif
