/*
 * Token service: request validation, token generation and the consume
 * decision, on top of a token store (the rules are in tokens.h).
 *
 * The token never leaves this file except in the one Issue response. The
 * store sees only HMAC-SHA256(secret, token); a lookup by that value is a
 * lookup by the token itself, but the stored hash is still compared with
 * the computed one in constant time rather than trusting the store's
 * match. Buffers that held a token are wiped before they are freed or go
 * out of scope.
 */
#include "tokens.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bson/bson.h>

#include "clock.h"
#include "crypto.h"
#include "field_limits.h"
#include "fieldcheck.h"
#include "status.h"
#include "tk_pkce.h"

#define TK_ATTEMPTS 3 /* tries when a fresh token_id or hash collides */

typedef Cpstore__V1__IssueTokenRequest issue_req_t;
typedef Cpstore__V1__IssueTokenResponse issue_resp_t;
typedef Cpstore__V1__ConsumeTokenRequest consume_req_t;
typedef Cpstore__V1__ConsumeTokenResponse consume_resp_t;
typedef Cpstore__V1__ConsumeCode consume_code_t;

struct tk_service {
    tk_store_t *store;
    const uint8_t *secret;
    size_t secret_len;
};


static void tk_set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


static void tk_set_err(char *err, size_t err_len, const char *fmt, ...) {
    va_list ap;

    if (err == NULL || err_len == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}


static void tk_clear_err(char *err, size_t err_len) {
    if (err != NULL && err_len > 0) {
        err[0] = '\0';
    }
}


tk_service_t *tk_service_new(mg_t *mg,
                             const uint8_t *secret,
                             size_t secret_len,
                             char *err,
                             size_t err_len) {
    tk_service_t *svc;

    if (secret == NULL || secret_len < TK_SECRET_MIN) {
        tk_set_err(err, err_len, "the server secret is shorter than %d bytes",
                   TK_SECRET_MIN);
        return NULL;
    }
    svc = calloc(1, sizeof(*svc));
    if (svc == NULL) {
        tk_set_err(err, err_len, "out of memory");
        return NULL;
    }
    if (mg != NULL) {
        svc->store = tk_mongo_new(mg, err, err_len);
    } else {
        svc->store = tk_memory_new();
        if (svc->store == NULL) {
            tk_set_err(err, err_len, "out of memory");
        }
    }
    if (svc->store == NULL) {
        free(svc);
        return NULL;
    }
    svc->secret = secret;
    svc->secret_len = secret_len;
    return svc;
}


void tk_service_free(tk_service_t *svc) {
    if (svc != NULL) {
        tk_store_free(svc->store);
        free(svc);
    }
}


const char *tk_service_kind(const tk_service_t *svc) {
    return tk_store_kind(svc->store);
}


tk_ttl_index_t tk_service_ttl_index(const tk_service_t *svc) {
    return tk_store_ttl_index(svc->store);
}


/* ---- protobuf-c strings ------------------------------------------------ */

/* protobuf-c marks an unset string with its shared empty string, which
 * must never be freed. */
static void tk_pb_free(char *s) {
    if (s != NULL && s != protobuf_c_empty_string) {
        free(s);
    }
}


/* Copy src into *dst unless it is NULL or empty (then *dst stays the
 * message's empty string). 0 when out of memory. */
static int tk_pb_set(char **dst, const char *src) {
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


/* ---- validation -------------------------------------------------------- */

static size_t tk_len(const char *s) {
    return s == NULL ? 0 : strlen(s);
}


/* A kind as the configuration file names it: 1..TK_KIND_MAX characters of
 * [A-Za-z0-9_.:-]. */
static int tk_check_kind(const char *kind, char *err, size_t err_len) {
    size_t len = tk_len(kind);

    if (len == 0 || len > TK_KIND_MAX) {
        tk_set_err(err, err_len, "kind must be 1 to %d characters",
                   TK_KIND_MAX);
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = kind[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
                 c == '-';

        if (!ok) {
            tk_set_err(err, err_len,
                       "kind may hold only [A-Za-z0-9_.:-] characters");
            return 0;
        }
    }
    return 1;
}


static int tk_check_binding(const Cpstore__V1__TokenBinding *b,
                            char *err,
                            size_t err_len) {
    if (b == NULL) {
        return 1;
    }
    if (!fc_text(b->client_id, TK_CLIENT_ID_MAX, 1, "client_id", err,
                 err_len) ||
        !fc_text(b->redirect_uri, TK_REDIRECT_URI_MAX, 1, "redirect_uri", err,
                 err_len)) {
        return 0;
    }
    if (tk_len(b->pkce_challenge) > 0 &&
        !tk_pkce_challenge_valid(b->pkce_challenge)) {
        tk_set_err(err, err_len,
                   "pkce_challenge must be BASE64URL(SHA-256(verifier)) "
                   "without padding: 43 characters of [A-Za-z0-9_-]");
        return 0;
    }
    return 1;
}


static int tk_check_issue(const issue_req_t *req, char *err, size_t err_len) {
    if (!tk_check_kind(req->kind, err, err_len)) {
        return 0;
    }
    if (tk_len(req->subject) == 0) {
        tk_set_err(err, err_len, "subject is required");
        return 0;
    }
    return fc_text(req->subject, TK_SUBJECT_MAX, 1, "subject", err, err_len) &&
           fc_metadata(req->metadata, req->n_metadata, LIM_META_MAX,
                       LIM_META_KEY_MAX, LIM_META_VALUE_MAX, err, err_len) &&
           tk_check_binding(req->binding, err, err_len);
}


/* The fields of a consume besides the token: a kind and a presented
 * binding within their limits. */
static int
tk_check_consume(const consume_req_t *req, char *err, size_t err_len) {
    if (!tk_check_kind(req->kind, err, err_len)) {
        return 0;
    }
    if (tk_len(req->pkce_verifier) > TK_PKCE_VERIFIER_MAX) {
        tk_set_err(err, err_len, "pkce_verifier is longer than %d bytes",
                   TK_PKCE_VERIFIER_MAX);
        return 0;
    }
    return fc_text(req->client_id, TK_CLIENT_ID_MAX, 0, "client_id", err,
                   err_len) &&
           fc_text(req->redirect_uri, TK_REDIRECT_URI_MAX, 0, "redirect_uri",
                   err, err_len);
}


/* ---- hashing ----------------------------------------------------------- */

/* Hash a presented token of `kind` into hash. 0 when no token of that kind
 * can look like this (empty, too long, or without the "<kind>_" prefix):
 * the answer is then "no such token" without a lookup, and without hashing
 * an unbounded input. */
static int tk_presented_hash(const tk_service_t *svc,
                             const char *kind,
                             const char *token,
                             uint8_t hash[TK_HASH_LEN],
                             int *rc) {
    size_t len = tk_len(token);
    size_t kind_len = strlen(kind);

    *rc = CPS_OK;
    if (len == 0 || len > TK_TOKEN_LOOKUP || len <= kind_len + 1 ||
        memcmp(token, kind, kind_len) != 0 || token[kind_len] != '_') {
        return 0;
    }
    *rc = crypto_hmac_sha256(svc->secret, svc->secret_len, token, len, hash);
    return *rc == CPS_OK;
}


/* Look the presented token up. CPS_OK with *rec filled, CPS_NOT_FOUND
 * when there is no such token of this kind, or the store's error. */
static int tk_lookup(tk_service_t *svc,
                     const char *kind,
                     const char *token,
                     int64_t deadline_mono_ms,
                     tk_record_t *rec,
                     char *err,
                     size_t err_len) {
    uint8_t hash[TK_HASH_LEN];
    int rc;

    if (!tk_presented_hash(svc, kind, token, hash, &rc)) {
        if (rc != CPS_OK) {
            tk_set_err(err, err_len, "hashing the token failed");
            return rc;
        }
        return CPS_NOT_FOUND;
    }
    rc = tk_store_find_by_hash(svc->store, hash, deadline_mono_ms, rec, err,
                               err_len);
    if (rc == CPS_OK && (!crypto_equal(rec->hash, hash, TK_HASH_LEN) ||
                         strcmp(rec->kind, kind) != 0)) {
        tk_record_clear(rec);
        rc = CPS_NOT_FOUND;
    }
    crypto_cleanse(hash, sizeof(hash));
    return rc;
}


/* ---- issue ------------------------------------------------------------- */

static int64_t tk_add_ms(int64_t t, uint64_t ms) {
    if (ms > (uint64_t)(INT64_MAX - t)) {
        return INT64_MAX;
    }
    return t + (int64_t)ms;
}


/* strdup, with "" and NULL both meaning "not set". 0 when out of memory. */
static int tk_dup_opt(char **dst, const char *src) {
    *dst = NULL;
    if (src == NULL || *src == '\0') {
        return 1;
    }
    *dst = strdup(src);
    return *dst != NULL;
}


static int tk_record_from_request(const issue_req_t *req, tk_record_t *rec) {
    const Cpstore__V1__TokenBinding *b = req->binding;

    if (!tk_dup_opt(&rec->kind, req->kind) ||
        !tk_dup_opt(&rec->subject, req->subject)) {
        return 0;
    }
    if (b != NULL && (!tk_dup_opt(&rec->client_id, b->client_id) ||
                      !tk_dup_opt(&rec->redirect_uri, b->redirect_uri) ||
                      !tk_dup_opt(&rec->pkce_challenge, b->pkce_challenge))) {
        return 0;
    }
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
        rec->metadata[i].value = strdup(m->value ? m->value : "");
        if (rec->metadata[i].key == NULL || rec->metadata[i].value == NULL) {
            return 0;
        }
    }
    return 1;
}


/* Draw a new token into token (TK_TOKEN_MAX + 1 bytes) and set the
 * record's token_id and hash from it. Can be called again after a
 * collision. */
static int
tk_new_secret(const tk_service_t *svc, char *token, tk_record_t *rec) {
    char random[TK_RANDOM_CHARS + 1];
    uint8_t id_bytes[TK_ID_HEX_BYTES];
    char id_hex[2 * TK_ID_HEX_BYTES + 1];
    int rc;

    rc = crypto_random_base62(random, TK_RANDOM_CHARS);
    if (rc == CPS_OK) {
        rc = crypto_random_bytes(id_bytes, sizeof(id_bytes));
    }
    if (rc == CPS_OK) {
        snprintf(token, TK_TOKEN_MAX + 1, "%s_%s", rec->kind, random);
        rc = crypto_hmac_sha256(svc->secret, svc->secret_len, token,
                                strlen(token), rec->hash);
    }
    if (rc == CPS_OK) {
        crypto_hex(id_bytes, sizeof(id_bytes), id_hex);
        snprintf(rec->token_id, sizeof(rec->token_id), "tok_%s", id_hex);
    }
    crypto_cleanse(random, sizeof(random));
    return rc;
}


/* Store rec under a fresh token and fill resp; a collision of token_id or
 * hash (never seen, but possible in principle) draws again. */
static int tk_insert_new_token(tk_service_t *svc,
                               tk_record_t *rec,
                               int64_t deadline_mono_ms,
                               issue_resp_t *resp,
                               char *err,
                               size_t err_len) {
    char token[TK_TOKEN_MAX + 1];
    int rc = CPS_INTERNAL;

    for (int attempt = 0; attempt < TK_ATTEMPTS; attempt++) {
        rc = tk_new_secret(svc, token, rec);
        if (rc != CPS_OK) {
            tk_set_err(err, err_len, "generating a token failed");
            break;
        }
        rc = tk_store_insert(svc->store, rec, deadline_mono_ms, err, err_len);
        if (rc != CPS_ALREADY_EXISTS) {
            break;
        }
    }
    if (rc == CPS_ALREADY_EXISTS) {
        tk_set_err(err, err_len, "could not draw an unused token");
        rc = CPS_INTERNAL;
    }
    if (rc == CPS_OK) {
        resp->expires_at_ms = rec->expires_at_ms;
        if (!tk_pb_set(&resp->token, token) ||
            !tk_pb_set(&resp->token_id, rec->token_id)) {
            tk_set_err(err, err_len, "out of memory");
            rc = CPS_INTERNAL;
        }
    }
    crypto_cleanse(token, sizeof(token));
    return rc;
}


int tk_issue(tk_service_t *svc,
             const Cpstore__V1__IssueTokenRequest *req,
             const tk_kind_limits_t *lim,
             int64_t deadline_mono_ms,
             Cpstore__V1__IssueTokenResponse *resp,
             char *err,
             size_t err_len) {
    tk_record_t rec;
    uint64_t ttl;
    int rc;

    cpstore__v1__issue_token_response__init(resp);
    tk_clear_err(err, err_len);
    if (lim == NULL || lim->max_ttl_ms == 0) {
        tk_set_err(err, err_len, "unknown token kind");
        return CPS_INVALID_ARGUMENT;
    }
    if (!tk_check_issue(req, err, err_len)) {
        return CPS_INVALID_ARGUMENT;
    }
    ttl = req->ttl_ms != 0 ? req->ttl_ms : TK_DEFAULT_TTL_MS;
    if (ttl > lim->max_ttl_ms) {
        ttl = lim->max_ttl_ms;
    }

    tk_record_init(&rec);
    rec.created_at_ms = clock_now_ms();
    rec.expires_at_ms = tk_add_ms(rec.created_at_ms, ttl);
    rec.purge_at_ms = tk_add_ms(rec.expires_at_ms, lim->reuse_window_ms);
    if (!tk_record_from_request(req, &rec)) {
        tk_set_err(err, err_len, "out of memory");
        rc = CPS_INTERNAL;
    } else {
        rc = tk_insert_new_token(svc, &rec, deadline_mono_ms, resp, err,
                                 err_len);
    }
    crypto_cleanse(rec.hash, sizeof(rec.hash));
    tk_record_clear(&rec);
    if (rc != CPS_OK) {
        tk_issue_response_clear(resp);
    }
    return rc;
}


void tk_issue_response_clear(Cpstore__V1__IssueTokenResponse *resp) {
    if (resp->token != NULL && resp->token != protobuf_c_empty_string) {
        crypto_cleanse(resp->token, strlen(resp->token));
    }
    tk_pb_free(resp->token);
    tk_pb_free(resp->token_id);
    cpstore__v1__issue_token_response__init(resp);
}


/* ---- consume ----------------------------------------------------------- */

/* Equal strings, in time that depends on the lengths only. */
static int tk_same_text(const char *a, const char *b) {
    size_t len = tk_len(a);

    return len == tk_len(b) && crypto_equal(a, b, len);
}


/* Does the request satisfy the token's binding? */
static int tk_binding_holds(const tk_record_t *rec, const consume_req_t *req) {
    int ok = 1;

    if (rec->client_id != NULL &&
        !tk_same_text(rec->client_id, req->client_id)) {
        ok = 0;
    }
    if (rec->redirect_uri != NULL &&
        !tk_same_text(rec->redirect_uri, req->redirect_uri)) {
        ok = 0;
    }
    if (rec->pkce_challenge != NULL) {
        if (!tk_pkce_matches(req->pkce_verifier, rec->pkce_challenge)) {
            ok = 0;
        }
    } else if (tk_len(req->pkce_verifier) > 0) {
        ok = 0; /* PKCE downgrade: see tokens.h */
    }
    return ok;
}


/* The answer for a token that has a spent mark. */
static consume_code_t tk_spent_code(const tk_spend_t *spend,
                                    consume_resp_t *resp) {
    if (spend->by == TK_SPENT_BY_REVOKE) {
        return CPSTORE__V1__CONSUME_CODE__CONSUME_REVOKED;
    }
    resp->consumed_at_ms = spend->at_ms;
    return CPSTORE__V1__CONSUME_CODE__CONSUME_ALREADY_CONSUMED;
}


/* A token that failed expiry or binding: if it was spent, that answer
 * comes first (tokens.h); otherwise `unspent` stands. */
static int tk_answer_unusable(tk_service_t *svc,
                              const tk_record_t *rec,
                              consume_code_t unspent,
                              int64_t deadline_mono_ms,
                              consume_resp_t *resp,
                              char *err,
                              size_t err_len) {
    tk_spend_t spend;
    int rc;

    rc = tk_store_find_spend(svc->store, rec->token_id, deadline_mono_ms,
                             &spend, err, err_len);
    if (rc == CPS_NOT_FOUND) {
        resp->code = unspent;
        return CPS_OK;
    }
    if (rc == CPS_OK) {
        resp->code = tk_spent_code(&spend, resp);
    }
    return rc;
}


static int tk_fill_consumed(consume_resp_t *resp, const tk_record_t *rec) {
    if (!tk_pb_set(&resp->subject, rec->subject)) {
        return 0;
    }
    if (rec->n_metadata == 0) {
        return 1;
    }
    resp->metadata = calloc(rec->n_metadata, sizeof(*resp->metadata));
    if (resp->metadata == NULL) {
        return 0;
    }
    for (size_t i = 0; i < rec->n_metadata; i++) {
        Cpstore__V1__MetadataEntry *e = malloc(sizeof(*e));

        if (e == NULL) {
            return 0;
        }
        cpstore__v1__metadata_entry__init(e);
        resp->metadata[i] = e;
        resp->n_metadata = i + 1;
        if (!tk_pb_set(&e->key, rec->metadata[i].key) ||
            !tk_pb_set(&e->value, rec->metadata[i].value)) {
            return 0;
        }
    }
    return 1;
}


/* Spend an unspent, valid token: the insert decides (tokens.h). */
static int tk_spend_for_consume(tk_service_t *svc,
                                const tk_record_t *rec,
                                int64_t deadline_mono_ms,
                                consume_resp_t *resp,
                                char *err,
                                size_t err_len) {
    tk_spend_t spend;
    int rc;

    memset(&spend, 0, sizeof(spend));
    memcpy(spend.token_id, rec->token_id, sizeof(spend.token_id));
    spend.by = TK_SPENT_BY_CONSUME;
    spend.at_ms = clock_now_ms();
    spend.expires_at_ms = rec->expires_at_ms;
    spend.purge_at_ms = rec->purge_at_ms;

    rc = tk_store_spend(svc->store, &spend, deadline_mono_ms, err, err_len);
    if (rc == CPS_OK) {
        resp->code = CPSTORE__V1__CONSUME_CODE__CONSUME_CONSUMED;
        resp->consumed_at_ms = spend.at_ms;
        if (!tk_fill_consumed(resp, rec)) {
            tk_set_err(err, err_len, "out of memory");
            return CPS_INTERNAL;
        }
        return CPS_OK;
    }
    if (rc != CPS_ALREADY_EXISTS) {
        return rc;
    }

    /* Someone spent it first: answer with their mark. */
    rc = tk_store_find_spend(svc->store, rec->token_id, deadline_mono_ms,
                             &spend, err, err_len);
    if (rc == CPS_OK) {
        resp->code = tk_spent_code(&spend, resp);
    } else if (rc == CPS_NOT_FOUND) {
        /* Purged between the two steps: it was spent, when is gone. */
        resp->code = CPSTORE__V1__CONSUME_CODE__CONSUME_ALREADY_CONSUMED;
        rc = CPS_OK;
    }
    return rc;
}


static int tk_decide(tk_service_t *svc,
                     const consume_req_t *req,
                     const tk_record_t *rec,
                     int64_t deadline_mono_ms,
                     consume_resp_t *resp,
                     char *err,
                     size_t err_len) {
    if (rec->revoked_at_ms != 0) {
        resp->code = CPSTORE__V1__CONSUME_CODE__CONSUME_REVOKED;
        return CPS_OK;
    }
    if (clock_now_ms() >= rec->expires_at_ms) {
        return tk_answer_unusable(svc, rec,
                                  CPSTORE__V1__CONSUME_CODE__CONSUME_EXPIRED,
                                  deadline_mono_ms, resp, err, err_len);
    }
    if (!tk_binding_holds(rec, req)) {
        return tk_answer_unusable(
            svc, rec, CPSTORE__V1__CONSUME_CODE__CONSUME_BINDING_MISMATCH,
            deadline_mono_ms, resp, err, err_len);
    }
    return tk_spend_for_consume(svc, rec, deadline_mono_ms, resp, err, err_len);
}


int tk_consume(tk_service_t *svc,
               const Cpstore__V1__ConsumeTokenRequest *req,
               int64_t deadline_mono_ms,
               Cpstore__V1__ConsumeTokenResponse *resp,
               char *err,
               size_t err_len) {
    tk_record_t rec;
    int rc;

    cpstore__v1__consume_token_response__init(resp);
    resp->code = CPSTORE__V1__CONSUME_CODE__CONSUME_NOT_FOUND;
    tk_clear_err(err, err_len);
    if (!tk_check_consume(req, err, err_len)) {
        return CPS_INVALID_ARGUMENT;
    }

    tk_record_init(&rec);
    rc = tk_lookup(svc, req->kind, req->token, deadline_mono_ms, &rec, err,
                   err_len);
    if (rc == CPS_NOT_FOUND) {
        rc = CPS_OK; /* resp already says NOT_FOUND */
    } else if (rc == CPS_OK) {
        if (!tk_pb_set(&resp->token_id, rec.token_id)) {
            tk_set_err(err, err_len, "out of memory");
            rc = CPS_INTERNAL;
        } else {
            rc =
                tk_decide(svc, req, &rec, deadline_mono_ms, resp, err, err_len);
        }
    }
    tk_record_clear(&rec);
    if (rc != CPS_OK) {
        tk_consume_response_clear(resp);
    }
    return rc;
}


void tk_consume_response_clear(Cpstore__V1__ConsumeTokenResponse *resp) {
    tk_pb_free(resp->subject);
    tk_pb_free(resp->token_id);
    for (size_t i = 0; i < resp->n_metadata; i++) {
        tk_pb_free(resp->metadata[i]->key);
        tk_pb_free(resp->metadata[i]->value);
        free(resp->metadata[i]);
    }
    free(resp->metadata);
    cpstore__v1__consume_token_response__init(resp);
}


/* ---- revoke ------------------------------------------------------------ */

int tk_revoke(tk_service_t *svc,
              const Cpstore__V1__RevokeTokenRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__RevokeTokenResponse *resp,
              char *err,
              size_t err_len) {
    tk_record_t rec;
    tk_spend_t spend;
    int rc;

    cpstore__v1__revoke_token_response__init(resp);
    tk_clear_err(err, err_len);
    if (!tk_check_kind(req->kind, err, err_len)) {
        return CPS_INVALID_ARGUMENT;
    }

    tk_record_init(&rec);
    rc = tk_lookup(svc, req->kind, req->token, deadline_mono_ms, &rec, err,
                   err_len);
    if (rc == CPS_NOT_FOUND) {
        return CPS_OK; /* revoked = false */
    }
    if (rc != CPS_OK) {
        return rc;
    }

    /* The spent mark first: from the moment it is in, no consume can
     * spend the token. If a consume's mark is there already, the token
     * was consumed; revoked_at below still turns every later answer into
     * REVOKED. */
    memset(&spend, 0, sizeof(spend));
    memcpy(spend.token_id, rec.token_id, sizeof(spend.token_id));
    spend.by = TK_SPENT_BY_REVOKE;
    spend.at_ms = clock_now_ms();
    spend.expires_at_ms = rec.expires_at_ms;
    spend.purge_at_ms = rec.purge_at_ms;
    rc = tk_store_spend(svc->store, &spend, deadline_mono_ms, err, err_len);
    if (rc == CPS_OK || rc == CPS_ALREADY_EXISTS) {
        rc = tk_store_mark_revoked(svc->store, rec.token_id, spend.at_ms,
                                   deadline_mono_ms, err, err_len);
    }
    resp->revoked = rc == CPS_OK;
    tk_record_clear(&rec);
    return rc;
}


/* ---- purge ------------------------------------------------------------- */

int tk_purge(tk_service_t *svc,
             int64_t now_ms,
             uint64_t reuse_window_ms,
             int64_t deadline_mono_ms,
             uint64_t *removed,
             char *err,
             size_t err_len) {
    int64_t cutoff;

    tk_clear_err(err, err_len);
    if (reuse_window_ms > (uint64_t)INT64_MAX) {
        reuse_window_ms = (uint64_t)INT64_MAX;
    }
    /* expires_at + window <= now, written so that nothing overflows. */
    if (now_ms < INT64_MIN + (int64_t)reuse_window_ms) {
        cutoff = INT64_MIN;
    } else {
        cutoff = now_ms - (int64_t)reuse_window_ms;
    }
    return tk_store_purge(svc->store, cutoff, deadline_mono_ms, removed, err,
                          err_len);
}
