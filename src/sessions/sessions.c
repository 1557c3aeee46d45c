/*
 * Session service: request checks, token generation and the validate
 * decision, on top of a session store (ss_store.h).
 *
 * The token never leaves this file except in the one Create response; the
 * store sees HMAC-SHA256(secret, token). A lookup by that value is a
 * lookup by the token itself, but the stored hash is still compared with
 * the computed one in constant time rather than trusting the store's match.
 * Buffers that held a token are wiped before they are freed or go out of
 * scope.
 *
 * Validate answers from the stored state alone, read afresh on every call:
 * NOT_FOUND, REVOKED, EXPIRED, VALID, in that order. A VALID answer slides
 * the idle expiry to min(now + idle timeout, absolute expiry). Writing
 * that on every validate would turn each read into a write, so the slide
 * is written only when it moves the stored expiry by at least the touch
 * interval; in between, the stored (slightly earlier) expiry is the one
 * enforced and returned. The interval is capped at half the session's
 * idle timeout: with a touch interval at or above the idle timeout, a
 * session validated every few seconds would never get a slide written and
 * would lapse at its first idle expiry.
 */
#include "sessions.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bson/bson.h>

#include "clock.h"
#include "crypto.h"
#include "fieldcheck.h"
#include "ss_store.h"
#include "status.h"

#define SS_TOKEN_PREFIX "cps_"
#define SS_RANDOM_CHARS 44 /* 44 * log2(62) > 261 bits */
#define SS_TOKEN_LEN    (sizeof(SS_TOKEN_PREFIX) - 1 + SS_RANDOM_CHARS)
#define SS_ATTEMPTS     3 /* tries when a fresh session_id or hash collides */
#define SS_ID_PREFIX    "ses_"

typedef Cpstore__V1__CreateSessionRequest create_req_t;
typedef Cpstore__V1__CreateSessionResponse create_resp_t;
typedef Cpstore__V1__ValidateSessionResponse validate_resp_t;
typedef Cpstore__V1__Session session_t;

struct ss_service {
    ss_store_t *store;
    uint8_t *secret;
    size_t secret_len;
};


/* ---- the service ------------------------------------------------------- */

ss_service_t *ss_service_new(mg_t *mg,
                             const uint8_t *secret,
                             size_t secret_len,
                             char *err,
                             size_t err_len) {
    ss_service_t *svc;

    if (secret == NULL || secret_len < SS_SECRET_MIN) {
        ss_set_err(err, err_len, "the server secret is shorter than %d bytes",
                   SS_SECRET_MIN);
        return NULL;
    }
    svc = calloc(1, sizeof(*svc));
    if (svc == NULL) {
        ss_set_err(err, err_len, "out of memory");
        return NULL;
    }
    svc->secret = malloc(secret_len);
    if (svc->secret == NULL) {
        ss_set_err(err, err_len, "out of memory");
        free(svc);
        return NULL;
    }
    memcpy(svc->secret, secret, secret_len);
    svc->secret_len = secret_len;

    if (mg != NULL) {
        svc->store = ss_mongo_new(mg, err, err_len);
    } else {
        svc->store = ss_memory_new();
        if (svc->store == NULL) {
            ss_set_err(err, err_len, "out of memory");
        }
    }
    if (svc->store == NULL) {
        ss_service_free(svc);
        return NULL;
    }
    return svc;
}


void ss_service_free(ss_service_t *svc) {
    if (svc == NULL) {
        return;
    }
    if (svc->store != NULL) {
        svc->store->ops->destroy(svc->store);
    }
    if (svc->secret != NULL) {
        crypto_cleanse(svc->secret, svc->secret_len);
        free(svc->secret);
    }
    free(svc);
}


const char *ss_kind(const ss_service_t *svc) {
    return svc->store->ops->kind;
}


ss_ttl_t ss_ttl_status(const ss_service_t *svc) {
    return svc->store->ops->ttl_status(svc->store);
}


static void ss_clear_err(char *err, size_t err_len) {
    if (err != NULL && err_len > 0) {
        err[0] = '\0';
    }
}


/* CPS_OK when time is left before the deadline (0: none). */
static int ss_check_deadline(int64_t deadline, char *err, size_t err_len) {
    if (deadline != 0 && clock_mono_ms() >= deadline) {
        ss_set_err(err, err_len, "deadline passed");
        return CPS_DEADLINE_EXCEEDED;
    }
    return CPS_OK;
}


static int ss_hash(const ss_service_t *svc,
                   const char *token,
                   size_t len,
                   uint8_t hash[SS_HASH_LEN]) {
    return crypto_hmac_sha256(svc->secret, svc->secret_len, token, len, hash);
}


/* ---- request checks ---------------------------------------------------- */

static size_t ss_len(const char *s) {
    return s == NULL ? 0 : strlen(s);
}


static int ss_check_user(const char *user_id, char *err, size_t err_len) {
    if (ss_len(user_id) == 0) {
        ss_set_err(err, err_len, "user_id is required");
        return 0;
    }
    return fc_text(user_id, SS_USER_ID_MAX, 1, "user_id", err, err_len);
}


/* A kind: 1..SS_KIND_MAX of [A-Za-z0-9_.:-]. */
static int ss_check_kind(const char *kind, char *err, size_t err_len) {
    size_t len = ss_len(kind);

    if (len > SS_KIND_MAX) {
        ss_set_err(err, err_len, "kind is longer than %d bytes", SS_KIND_MAX);
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = kind[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
              c == '-')) {
            ss_set_err(err, err_len,
                       "kind may hold only letters, digits and _ . : -");
            return 0;
        }
    }
    return 1;
}


/* A timeout from the request, or the default when it gives 0. */
static int ss_pick_duration(uint64_t asked,
                            uint64_t fallback,
                            const char *field,
                            int64_t *out,
                            char *err,
                            size_t err_len) {
    uint64_t ms = asked != 0 ? asked : fallback;

    if (ms == 0 || ms > (uint64_t)SS_DURATION_MAX) {
        ss_set_err(err, err_len, "%s must be between 1 ms and 366 days", field);
        return 0;
    }
    *out = (int64_t)ms;
    return 1;
}


/* ---- protobuf-c messages ----------------------------------------------- */

/* protobuf-c marks an unset string with its shared empty string, which
 * must never be freed. */
static void ss_pb_free(char *s) {
    if (s != NULL && s != protobuf_c_empty_string) {
        free(s);
    }
}


/* Copy src into *dst unless it is empty (then *dst stays the message's
 * empty string). 0 when out of memory. */
static int ss_pb_set(char **dst, const char *src) {
    char *copy;

    if (src == NULL || *src == '\0') {
        return 1;
    }
    copy = strdup(src);
    if (copy == NULL) {
        return 0;
    }
    *dst = copy;
    return 1;
}


static void ss_session_free(session_t *s) {
    if (s == NULL) {
        return;
    }
    ss_pb_free(s->session_id);
    ss_pb_free(s->user_id);
    ss_pb_free(s->kind);
    for (size_t i = 0; i < s->n_metadata; i++) {
        ss_pb_free(s->metadata[i]->key);
        ss_pb_free(s->metadata[i]->value);
        free(s->metadata[i]);
    }
    free(s->metadata);
    free(s);
}


static Cpstore__V1__MetadataEntry *ss_meta_new(const ss_meta_t *m) {
    Cpstore__V1__MetadataEntry *e = malloc(sizeof(*e));

    if (e == NULL) {
        return NULL;
    }
    cpstore__v1__metadata_entry__init(e);
    if (!ss_pb_set(&e->key, m->key) || !ss_pb_set(&e->value, m->value)) {
        ss_pb_free(e->key);
        ss_pb_free(e->value);
        free(e);
        return NULL;
    }
    return e;
}


/* The public description of a session: never its token or hash. NULL
 * when out of memory. */
static session_t *ss_session_new(const ss_record_t *rec) {
    session_t *s = malloc(sizeof(*s));

    if (s == NULL) {
        return NULL;
    }
    cpstore__v1__session__init(s);
    s->created_at_ms = rec->created_at_ms;
    s->idle_expires_at_ms = rec->idle_expires_at_ms;
    s->absolute_expires_at_ms = rec->absolute_expires_at_ms;
    s->revoked_at_ms = rec->revoked_at_ms;
    s->last_seen_at_ms = rec->last_seen_at_ms;
    if (!ss_pb_set(&s->session_id, rec->session_id) ||
        !ss_pb_set(&s->user_id, rec->user_id) ||
        !ss_pb_set(&s->kind, rec->kind)) {
        goto fail;
    }
    if (rec->n_metadata > 0) {
        s->metadata = calloc(rec->n_metadata, sizeof(*s->metadata));
        if (s->metadata == NULL) {
            goto fail;
        }
        for (size_t i = 0; i < rec->n_metadata; i++) {
            s->metadata[i] = ss_meta_new(&rec->metadata[i]);
            if (s->metadata[i] == NULL) {
                goto fail;
            }
            s->n_metadata = i + 1;
        }
    }
    return s;

fail:
    ss_session_free(s);
    return NULL;
}


/* ---- create ------------------------------------------------------------ */

static int ss_check_create(const create_req_t *req, char *err, size_t len) {
    return ss_check_user(req->user_id, err, len) &&
           ss_check_kind(req->kind, err, len) &&
           fc_metadata(req->metadata, req->n_metadata, SS_META_MAX,
                       SS_META_KEY_MAX, SS_META_VALUE_MAX, err, len);
}


/* The record's attributes from the request; token material comes from
 * ss_new_secret(). 0 when out of memory. */
static int ss_record_from_request(const create_req_t *req,
                                  int64_t now,
                                  int64_t idle,
                                  int64_t absolute,
                                  ss_record_t *rec) {
    const char *kind = ss_len(req->kind) > 0 ? req->kind : SS_DEFAULT_KIND;

    snprintf(rec->user_id, sizeof(rec->user_id), "%s", req->user_id);
    snprintf(rec->kind, sizeof(rec->kind), "%s", kind);
    rec->created_at_ms = now;
    rec->last_seen_at_ms = now;
    rec->idle_timeout_ms = idle;
    rec->absolute_expires_at_ms = now + absolute;
    rec->idle_expires_at_ms = now + idle < rec->absolute_expires_at_ms
                                  ? now + idle
                                  : rec->absolute_expires_at_ms;
    if (req->n_metadata == 0) {
        return 1;
    }
    rec->metadata = calloc(req->n_metadata, sizeof(*rec->metadata));
    if (rec->metadata == NULL) {
        return 0;
    }
    for (size_t i = 0; i < req->n_metadata; i++) {
        const Cpstore__V1__MetadataEntry *m = req->metadata[i];

        rec->n_metadata = i + 1;
        rec->metadata[i].key = strdup(m->key);
        rec->metadata[i].value = strdup(m->value != NULL ? m->value : "");
        if (rec->metadata[i].key == NULL || rec->metadata[i].value == NULL) {
            return 0;
        }
    }
    return 1;
}


/* Draw a new token into token (SS_TOKEN_LEN + 1 bytes) and a new
 * session_id, and set the record's id and hash from them. */
static int
ss_new_secret(const ss_service_t *svc, char *token, ss_record_t *rec) {
    char random[SS_RANDOM_CHARS + 1];
    uint8_t id_bytes[SS_ID_BYTES];
    char id_hex[2 * SS_ID_BYTES + 1];
    int rc;

    rc = crypto_random_base62(random, SS_RANDOM_CHARS);
    if (rc == CPS_OK) {
        rc = crypto_random_bytes(id_bytes, sizeof(id_bytes));
    }
    if (rc == CPS_OK) {
        snprintf(token, SS_TOKEN_LEN + 1, SS_TOKEN_PREFIX "%s", random);
        rc = ss_hash(svc, token, strlen(token), rec->hash);
    }
    if (rc == CPS_OK) {
        crypto_hex(id_bytes, sizeof(id_bytes), id_hex);
        snprintf(rec->session_id, sizeof(rec->session_id), SS_ID_PREFIX "%s",
                 id_hex);
    }
    crypto_cleanse(random, sizeof(random));
    return rc;
}


static int
ss_fill_create(create_resp_t *resp, const char *token, const ss_record_t *rec) {
    if (!ss_pb_set(&resp->token, token) ||
        !ss_pb_set(&resp->session_id, rec->session_id)) {
        return 0;
    }
    resp->session = ss_session_new(rec);
    return resp->session != NULL;
}


static int ss_store_new_session(ss_service_t *svc,
                                ss_record_t *rec,
                                int64_t deadline,
                                create_resp_t *resp,
                                char *err,
                                size_t err_len) {
    char token[SS_TOKEN_LEN + 1];
    int rc = CPS_ALREADY_EXISTS;

    /* A collision of a 128-bit id or a 256-bit hash is not expected; if
     * the store reports one anyway, a fresh draw settles it. */
    for (int i = 0; i < SS_ATTEMPTS && rc == CPS_ALREADY_EXISTS; i++) {
        rc = ss_new_secret(svc, token, rec);
        if (rc != CPS_OK) {
            ss_set_err(err, err_len, "token generation failed");
            break;
        }
        rc = ss_check_deadline(deadline, err, err_len);
        if (rc == CPS_OK) {
            rc = svc->store->ops->insert(svc->store, rec, deadline, err,
                                         err_len);
        }
    }
    if (rc == CPS_ALREADY_EXISTS) {
        ss_set_err(err, err_len, "could not draw a unique session id");
        rc = CPS_INTERNAL;
    }
    if (rc == CPS_OK && !ss_fill_create(resp, token, rec)) {
        /* Stored but not described: the caller never learns the token,
         * so the session can never be used. */
        ss_set_err(err, err_len, "out of memory");
        rc = CPS_INTERNAL;
    }
    crypto_cleanse(token, sizeof(token));
    return rc;
}


int ss_create(ss_service_t *svc,
              const ss_settings_t *settings,
              const Cpstore__V1__CreateSessionRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__CreateSessionResponse *resp,
              char *err,
              size_t err_len) {
    ss_record_t rec;
    int64_t idle;
    int64_t absolute;
    int64_t now;
    int rc;

    cpstore__v1__create_session_response__init(resp);
    ss_clear_err(err, err_len);
    if (!ss_check_create(req, err, err_len) ||
        !ss_pick_duration(req->idle_timeout_ms, settings->idle_ms,
                          "idle_timeout_ms", &idle, err, err_len) ||
        !ss_pick_duration(req->absolute_lifetime_ms, settings->absolute_ms,
                          "absolute_lifetime_ms", &absolute, err, err_len)) {
        return CPS_INVALID_ARGUMENT;
    }

    now = clock_now_ms();
    ss_record_init(&rec);
    if (!ss_record_from_request(req, now, idle, absolute, &rec)) {
        ss_set_err(err, err_len, "out of memory");
        rc = CPS_INTERNAL;
    } else {
        rc = ss_store_new_session(svc, &rec, deadline_mono_ms, resp, err,
                                  err_len);
    }
    crypto_cleanse(rec.hash, sizeof(rec.hash));
    ss_record_clear(&rec);
    if (rc != CPS_OK) {
        ss_create_response_clear(resp);
    }
    return rc;
}


void ss_create_response_clear(Cpstore__V1__CreateSessionResponse *resp) {
    if (resp->token != NULL && resp->token != protobuf_c_empty_string) {
        crypto_cleanse(resp->token, strlen(resp->token));
    }
    ss_pb_free(resp->token);
    ss_pb_free(resp->session_id);
    ss_session_free(resp->session);
    cpstore__v1__create_session_response__init(resp);
}


/* ---- lookups ----------------------------------------------------------- */

/* The session of token: CPS_OK, CPS_NOT_FOUND, or an error. */
static int ss_find_token(ss_service_t *svc,
                         const char *token,
                         int64_t deadline,
                         ss_record_t *rec,
                         char *err,
                         size_t err_len) {
    uint8_t hash[SS_HASH_LEN];
    int rc;

    rc = ss_hash(svc, token, strlen(token), hash);
    if (rc != CPS_OK) {
        ss_set_err(err, err_len, "hashing the token failed");
        return rc;
    }
    rc = ss_check_deadline(deadline, err, err_len);
    if (rc == CPS_OK) {
        rc = svc->store->ops->find_by_hash(svc->store, hash, deadline, rec, err,
                                           err_len);
    }
    if (rc == CPS_OK && !crypto_equal(rec->hash, hash, SS_HASH_LEN)) {
        ss_record_clear(rec);
        rc = CPS_NOT_FOUND;
    }
    crypto_cleanse(hash, sizeof(hash));
    return rc;
}


/* ---- validate ---------------------------------------------------------- */

static Cpstore__V1__SessionCode ss_decide(const ss_record_t *rec, int64_t now) {
    if (rec->revoked_at_ms != 0) {
        return CPSTORE__V1__SESSION_CODE__SESSION_REVOKED;
    }
    if (now >= rec->idle_expires_at_ms || now >= rec->absolute_expires_at_ms) {
        return CPSTORE__V1__SESSION_CODE__SESSION_EXPIRED;
    }
    return CPSTORE__V1__SESSION_CODE__SESSION_VALID;
}


/* The least move of the idle expiry worth a write, for this session. */
static int64_t ss_touch_interval(const ss_settings_t *settings,
                                 const ss_record_t *rec) {
    int64_t interval = (int64_t)settings->touch_ms;
    int64_t half_idle = rec->idle_timeout_ms / 2;

    if (settings->touch_ms > (uint64_t)INT64_MAX) {
        interval = INT64_MAX;
    }
    if (interval > half_idle) {
        interval = half_idle;
    }
    return interval > 0 ? interval : 1;
}


/*
 * Slide a valid session's idle expiry, if it moves far enough to be worth
 * a write. On success rec holds what is stored. A failed write leaves the
 * stored expiry as it was, which is still correct, only earlier: the
 * answer stands and err says what failed.
 */
static void ss_slide(ss_service_t *svc,
                     const ss_settings_t *settings,
                     ss_record_t *rec,
                     int64_t now,
                     int64_t deadline,
                     char *err,
                     size_t err_len) {
    int64_t target = rec->absolute_expires_at_ms;
    int rc;

    if (rec->idle_timeout_ms < rec->absolute_expires_at_ms - now) {
        target = now + rec->idle_timeout_ms;
    }
    if (target - rec->idle_expires_at_ms < ss_touch_interval(settings, rec)) {
        return;
    }
    rc = ss_check_deadline(deadline, err, err_len);
    if (rc == CPS_OK) {
        rc = svc->store->ops->touch(svc->store, rec->session_id, target, now,
                                    deadline, err, err_len);
    }
    if (rc == CPS_OK) {
        rec->idle_expires_at_ms = target;
        rec->last_seen_at_ms = now;
    } else if (rc == CPS_NOT_FOUND) {
        ss_clear_err(err, err_len); /* purged meanwhile: nothing to slide */
    }
}


int ss_validate(ss_service_t *svc,
                const ss_settings_t *settings,
                const Cpstore__V1__ValidateSessionRequest *req,
                int64_t deadline_mono_ms,
                Cpstore__V1__ValidateSessionResponse *resp,
                char *err,
                size_t err_len) {
    ss_record_t rec;
    size_t len = ss_len(req->token);
    int rc;

    cpstore__v1__validate_session_response__init(resp);
    resp->code = CPSTORE__V1__SESSION_CODE__SESSION_NOT_FOUND;
    ss_clear_err(err, err_len);
    if (len > SS_TOKEN_MAX) {
        ss_set_err(err, err_len, "token is longer than %d bytes", SS_TOKEN_MAX);
        return CPS_INVALID_ARGUMENT;
    }
    if (len == 0) {
        return CPS_OK; /* no token is no session */
    }

    ss_record_init(&rec);
    rc = ss_find_token(svc, req->token, deadline_mono_ms, &rec, err, err_len);
    if (rc == CPS_NOT_FOUND) {
        return CPS_OK;
    }
    if (rc != CPS_OK) {
        return rc;
    }

    resp->code = ss_decide(&rec, clock_now_ms());
    resp->valid = resp->code == CPSTORE__V1__SESSION_CODE__SESSION_VALID;
    if (resp->valid) {
        /* The time of the decision is read again for the slide, so that
         * the new expiry counts from the moment it is written. */
        ss_slide(svc, settings, &rec, clock_now_ms(), deadline_mono_ms, err,
                 err_len);
    }
    resp->session = ss_session_new(&rec);
    if (resp->session == NULL || !ss_pb_set(&resp->user_id, rec.user_id)) {
        ss_set_err(err, err_len, "out of memory");
        rc = CPS_INTERNAL;
    }
    ss_record_clear(&rec);
    if (rc != CPS_OK) {
        ss_validate_response_clear(resp);
    }
    return rc;
}


void ss_validate_response_clear(Cpstore__V1__ValidateSessionResponse *resp) {
    ss_pb_free(resp->user_id);
    ss_session_free(resp->session);
    cpstore__v1__validate_session_response__init(resp);
}


/* ---- revoke ------------------------------------------------------------ */

int ss_revoke(ss_service_t *svc,
              const Cpstore__V1__RevokeSessionRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__RevokeSessionResponse *resp,
              char *err,
              size_t err_len) {
    size_t token_len = ss_len(req->token);
    size_t id_len = ss_len(req->session_id);
    ss_record_t rec;
    int64_t now;
    int rc;

    cpstore__v1__revoke_session_response__init(resp);
    ss_clear_err(err, err_len);
    if ((token_len == 0) == (id_len == 0)) {
        ss_set_err(err, err_len, "give exactly one of token and session_id");
        return CPS_INVALID_ARGUMENT;
    }
    if (token_len > SS_TOKEN_MAX || id_len > SS_SESSION_ID_MAX) {
        ss_set_err(err, err_len, "%s is longer than %d bytes",
                   token_len > 0 ? "token" : "session_id",
                   token_len > 0 ? SS_TOKEN_MAX : SS_SESSION_ID_MAX);
        return CPS_INVALID_ARGUMENT;
    }

    ss_record_init(&rec);
    if (token_len > 0) {
        rc = ss_find_token(svc, req->token, deadline_mono_ms, &rec, err,
                           err_len);
    } else {
        rc = ss_check_deadline(deadline_mono_ms, err, err_len);
        if (rc == CPS_OK) {
            rc = svc->store->ops->find_by_id(svc->store, req->session_id,
                                             deadline_mono_ms, &rec, err,
                                             err_len);
        }
    }
    if (rc == CPS_NOT_FOUND) {
        return CPS_OK; /* revoked stays false */
    }
    if (rc != CPS_OK) {
        return rc;
    }

    /* Only a live session can be ended; an expired one already is. */
    now = clock_now_ms();
    if (ss_record_live(&rec, now)) {
        rc = ss_check_deadline(deadline_mono_ms, err, err_len);
        if (rc == CPS_OK) {
            rc = svc->store->ops->revoke(svc->store, &rec, now,
                                         deadline_mono_ms, err, err_len);
        }
        resp->revoked = rc == CPS_OK;
        if (rc == CPS_ALREADY_EXISTS || rc == CPS_NOT_FOUND) {
            rc = CPS_OK; /* someone else revoked it, or it was purged */
        }
    }
    ss_record_clear(&rec);
    return rc;
}


int ss_revoke_all(ss_service_t *svc,
                  const Cpstore__V1__RevokeAllSessionsRequest *req,
                  int64_t deadline_mono_ms,
                  Cpstore__V1__RevokeAllSessionsResponse *resp,
                  char *err,
                  size_t err_len) {
    uint32_t revoked = 0;
    int rc;

    cpstore__v1__revoke_all_sessions_response__init(resp);
    ss_clear_err(err, err_len);
    if (!ss_check_user(req->user_id, err, err_len)) {
        return CPS_INVALID_ARGUMENT;
    }
    rc = ss_check_deadline(deadline_mono_ms, err, err_len);
    if (rc == CPS_OK) {
        rc = svc->store->ops->revoke_all(svc->store, req->user_id,
                                         clock_now_ms(), deadline_mono_ms,
                                         &revoked, err, err_len);
    }
    resp->revoked = rc == CPS_OK ? revoked : 0;
    return rc;
}


/* ---- list -------------------------------------------------------------- */

int ss_list(ss_service_t *svc,
            const Cpstore__V1__ListSessionsRequest *req,
            int64_t deadline_mono_ms,
            Cpstore__V1__ListSessionsResponse *resp,
            char *err,
            size_t err_len) {
    ss_record_t *recs;
    size_t n = 0;
    int rc;

    cpstore__v1__list_sessions_response__init(resp);
    ss_clear_err(err, err_len);
    if (!ss_check_user(req->user_id, err, err_len)) {
        return CPS_INVALID_ARGUMENT;
    }
    recs = calloc(SS_LIST_MAX, sizeof(*recs));
    resp->sessions = calloc(SS_LIST_MAX, sizeof(*resp->sessions));
    if (recs == NULL || resp->sessions == NULL) {
        free(recs);
        ss_set_err(err, err_len, "out of memory");
        ss_list_response_clear(resp);
        return CPS_INTERNAL;
    }

    rc = ss_check_deadline(deadline_mono_ms, err, err_len);
    if (rc == CPS_OK) {
        rc = svc->store->ops->list(svc->store, req->user_id, clock_now_ms(),
                                   SS_LIST_MAX, deadline_mono_ms, recs, &n, err,
                                   err_len);
    }
    for (size_t i = 0; rc == CPS_OK && i < n; i++) {
        resp->sessions[i] = ss_session_new(&recs[i]);
        if (resp->sessions[i] == NULL) {
            ss_set_err(err, err_len, "out of memory");
            rc = CPS_INTERNAL;
            break;
        }
        resp->n_sessions = i + 1;
    }
    for (size_t i = 0; i < n; i++) {
        ss_record_clear(&recs[i]);
    }
    free(recs);
    if (rc != CPS_OK) {
        ss_list_response_clear(resp);
    }
    return rc;
}


void ss_list_response_clear(Cpstore__V1__ListSessionsResponse *resp) {
    for (size_t i = 0; i < resp->n_sessions; i++) {
        ss_session_free(resp->sessions[i]);
    }
    free(resp->sessions);
    cpstore__v1__list_sessions_response__init(resp);
}


/* ---- purge ------------------------------------------------------------- */

int ss_purge(ss_service_t *svc,
             int64_t now_ms,
             int64_t deadline_mono_ms,
             uint64_t *removed,
             char *err,
             size_t err_len) {
    int rc;

    *removed = 0;
    ss_clear_err(err, err_len);
    rc = ss_check_deadline(deadline_mono_ms, err, err_len);
    if (rc == CPS_OK) {
        rc = svc->store->ops->purge(svc->store, now_ms, deadline_mono_ms,
                                    removed, err, err_len);
    }
    return rc;
}
