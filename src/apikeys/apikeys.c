/*
 * API key service: request validation, key generation and the verify
 * decision, on top of a key store.
 *
 * The key never leaves this file except in the one Create response. The
 * store sees only HMAC-SHA256(secret, key); a lookup by that value is a
 * lookup by the key itself, so verify needs no second comparison of
 * secrets, but it still compares the stored hash with the computed one in
 * constant time rather than trust the store's match. Buffers that held
 * the key are wiped before they are freed or go out of scope.
 *
 * Verify answers in a fixed order (NOT_FOUND, REVOKED, EXPIRED,
 * CONTEXT_MISMATCH, INSUFFICIENT_SCOPE, VALID), so the answer to a key
 * that is wrong in several ways never depends on the request's details
 * beyond the first rule it breaks. It reads the stored record on every
 * call, with no cache in between, so that a revocation made through any
 * instance is seen by the next verify on every other one.
 *
 * The rest of the lifecycle (get, list, revoke, rotate) is in
 * ak_lifecycle.c and the last-used times in ak_usage.c; what the three
 * share is declared in ak_internal.h.
 */
#include "apikeys.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bson/bson.h>

#include "ak_internal.h"
#include "clock.h"
#include "crypto.h"
#include "field_limits.h"
#include "fieldcheck.h"
#include "scope.h"
#include "status.h"

#define AK_KEY_ID_BYTES 12 /* 24 hex chars */
#define AK_KEY_ID_LEN   (4 + 2 * AK_KEY_ID_BYTES)
#define AK_HINT_CHARS   4
#define AK_ATTEMPTS     3 /* tries when a fresh key_id or hash collides */

typedef Cpstore__V1__CreateApiKeyRequest create_req_t;
typedef Cpstore__V1__CreateApiKeyResponse create_resp_t;
typedef Cpstore__V1__VerifyApiKeyRequest verify_req_t;
typedef Cpstore__V1__VerifyApiKeyResponse verify_resp_t;

void ak_set_err(char *err, size_t err_len, const char *fmt, ...) {
    va_list ap;

    if (err == NULL || err_len == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}


void ak_clear_err(char *err, size_t err_len) {
    if (err != NULL && err_len > 0) {
        err[0] = '\0';
    }
}


static int ak_prefix_valid(const char *prefix) {
    size_t len;

    if (prefix == NULL) {
        return 0;
    }
    len = strlen(prefix);
    if (len == 0 || len > AK_PREFIX_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = prefix[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || c == '_';

        if (!ok) {
            return 0;
        }
    }
    return 1;
}


ak_service_t *ak_service_new(ks_store_t *store,
                             const uint8_t *secret,
                             size_t secret_len,
                             const char *key_prefix) {
    ak_service_t *svc;

    if (store == NULL || secret == NULL || secret_len < AK_SECRET_MIN ||
        !ak_prefix_valid(key_prefix)) {
        return NULL;
    }
    svc = calloc(1, sizeof(*svc));
    if (svc == NULL) {
        return NULL;
    }
    svc->store = store;
    svc->secret = secret;
    svc->secret_len = secret_len;
    svc->prefix = key_prefix;
    if (ak_usage_init(svc) != CPS_OK) {
        free(svc);
        return NULL;
    }
    return svc;
}


void ak_service_free(ak_service_t *svc) {
    if (svc == NULL) {
        return;
    }
    ak_usage_destroy(svc);
    free(svc);
}


/* ---- protobuf-c strings ------------------------------------------------ */

/* protobuf-c marks an unset string with its shared empty string, which
 * must never be freed. */
void ak_pb_free(char *s) {
    if (s != NULL && s != protobuf_c_empty_string) {
        free(s);
    }
}


/* Copy src into *dst unless it is NULL or empty (then *dst is left as it
 * is, the message's empty string). 0 when out of memory. */
int ak_pb_set(char **dst, const char *src) {
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


static int
ak_pb_set_list(char ***dst, size_t *n_dst, char *const *src, size_t n_src) {
    if (n_src == 0) {
        return 1;
    }
    *dst = calloc(n_src, sizeof(**dst));
    if (*dst == NULL) {
        return 0;
    }
    for (size_t i = 0; i < n_src; i++) {
        (*dst)[i] = strdup(src[i]);
        if ((*dst)[i] == NULL) {
            return 0;
        }
        *n_dst = i + 1;
    }
    return 1;
}


static void ak_pb_free_list(char **list, size_t n) {
    for (size_t i = 0; i < n; i++) {
        ak_pb_free(list[i]);
    }
    free(list);
}


/* ---- validation -------------------------------------------------------- */

static size_t ak_len(const char *s) {
    return s == NULL ? 0 : strlen(s);
}


static int ak_check_scopes(char *const *scopes,
                           size_t n,
                           const char *field,
                           char *err,
                           size_t err_len) {
    if (n > LIM_SCOPES_MAX) {
        ak_set_err(err, err_len, "more than %d %s", LIM_SCOPES_MAX, field);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!scope_valid(scopes[i])) {
            ak_set_err(err, err_len,
                       "%s[%zu] is not a valid scope (resource:action, "
                       "'*' only as a whole last segment)",
                       field, i);
            return 0;
        }
    }
    return 1;
}


/* The absolute expiry the request asks for (0: never), or 0 with
 * CPS_INVALID_ARGUMENT. */
static int ak_check_expiry(const create_req_t *req,
                           int64_t now,
                           int64_t *expires_at,
                           char *err,
                           size_t err_len) {
    *expires_at = 0;
    if (req->expires_at_ms != 0 && req->expires_in_ms != 0) {
        ak_set_err(err, err_len,
                   "set at most one of expires_at_ms and expires_in_ms");
        return CPS_INVALID_ARGUMENT;
    }
    if (req->expires_at_ms != 0) {
        if (req->expires_at_ms <= now) {
            ak_set_err(err, err_len, "expires_at_ms is not in the future");
            return CPS_INVALID_ARGUMENT;
        }
        *expires_at = req->expires_at_ms;
    } else if (req->expires_in_ms != 0) {
        if (req->expires_in_ms > (uint64_t)(INT64_MAX - now)) {
            ak_set_err(err, err_len, "expires_in_ms is too large");
            return CPS_INVALID_ARGUMENT;
        }
        *expires_at = now + (int64_t)req->expires_in_ms;
    }
    return CPS_OK;
}


static int ak_check_create(const create_req_t *req, char *err, size_t err_len) {
    if (ak_len(req->user_id) == 0) {
        ak_set_err(err, err_len, "user_id is required");
        return 0;
    }
    return fc_text(req->user_id, LIM_ID_MAX, 1, "user_id", err, err_len) &&
           fc_text(req->name, LIM_ID_MAX, 1, "name", err, err_len) &&
           fc_text(req->org_id, LIM_ID_MAX, 1, "org_id", err, err_len) &&
           fc_text(req->project_id, LIM_ID_MAX, 1, "project_id", err,
                   err_len) &&
           ak_check_scopes(req->scopes, req->n_scopes, "scopes", err,
                           err_len) &&
           fc_metadata(req->metadata, req->n_metadata, LIM_META_MAX,
                       LIM_META_KEY_MAX, LIM_META_VALUE_MAX, err, err_len);
}


/* ---- create ------------------------------------------------------------ */

/* strdup, with "" and NULL both meaning "not set". 0 when out of memory. */
static int ak_dup_opt(char **dst, const char *src) {
    *dst = NULL;
    if (src == NULL || *src == '\0') {
        return 1;
    }
    *dst = strdup(src);
    return *dst != NULL;
}


/* The record's attributes taken from the request; the key material
 * (key_id, hash, hint) is added by ak_new_secret(). */
static int ak_record_from_request(const create_req_t *req,
                                  int64_t now,
                                  int64_t expires_at,
                                  ks_record_t *rec) {
    rec->created_at_ms = now;
    rec->expires_at_ms = expires_at;
    if (!ak_dup_opt(&rec->user_id, req->user_id) ||
        !ak_dup_opt(&rec->name, req->name) ||
        !ak_dup_opt(&rec->org_id, req->org_id) ||
        !ak_dup_opt(&rec->project_id, req->project_id)) {
        return 0;
    }
    if (req->n_scopes > 0) {
        rec->scopes = calloc(req->n_scopes, sizeof(*rec->scopes));
        if (rec->scopes == NULL) {
            return 0;
        }
        for (size_t i = 0; i < req->n_scopes; i++) {
            rec->scopes[i] = strdup(req->scopes[i]);
            if (rec->scopes[i] == NULL) {
                return 0;
            }
            rec->n_scopes = i + 1;
        }
    }
    if (req->n_metadata > 0) {
        rec->metadata = calloc(req->n_metadata, sizeof(*rec->metadata));
        if (rec->metadata == NULL) {
            return 0;
        }
        for (size_t i = 0; i < req->n_metadata; i++) {
            const Cpstore__V1__MetadataEntry *m = req->metadata[i];

            rec->n_metadata = i + 1;
            rec->metadata[i].key = strdup(m->key);
            rec->metadata[i].value = strdup(m->value ? m->value : "");
            if (rec->metadata[i].key == NULL ||
                rec->metadata[i].value == NULL) {
                return 0;
            }
        }
    }
    return 1;
}


/*
 * Draw a new key into key (AK_KEY_LEN + 1 bytes) and set the record's
 * key_id, hash and hint from it. Replaces any previous key material, so it
 * can be called again after a collision.
 */
int ak_new_secret(const ak_service_t *svc, char *key, ks_record_t *rec) {
    char random[AK_RANDOM_CHARS + 1];
    uint8_t id_bytes[AK_KEY_ID_BYTES];
    char id_hex[2 * AK_KEY_ID_BYTES + 1];
    char hint[AK_PREFIX_MAX + 4 + AK_HINT_CHARS + 1];
    int rc;

    free(rec->key_id);
    free(rec->hint);
    rec->key_id = NULL;
    rec->hint = NULL;

    rc = crypto_random_base62(random, AK_RANDOM_CHARS);
    if (rc == CPS_OK) {
        rc = crypto_random_bytes(id_bytes, sizeof(id_bytes));
    }
    if (rc == CPS_OK) {
        snprintf(key, AK_KEY_LEN + 1, "%s_%s", svc->prefix, random);
        rc = crypto_hmac_sha256(svc->secret, svc->secret_len, key, strlen(key),
                                rec->hash);
    }
    if (rc == CPS_OK) {
        crypto_hex(id_bytes, sizeof(id_bytes), id_hex);
        snprintf(hint, sizeof(hint), "%s_...%s", svc->prefix,
                 random + AK_RANDOM_CHARS - AK_HINT_CHARS);
        rec->key_id = malloc(AK_KEY_ID_LEN + 1);
        rec->hint = strdup(hint);
        if (rec->key_id == NULL || rec->hint == NULL) {
            rc = CPS_INTERNAL;
        } else {
            snprintf(rec->key_id, AK_KEY_ID_LEN + 1, "key_%s", id_hex);
        }
    }
    crypto_cleanse(random, sizeof(random));
    return rc;
}


static Cpstore__V1__MetadataEntry *ak_meta_new(const ks_meta_t *m) {
    Cpstore__V1__MetadataEntry *e = malloc(sizeof(*e));

    if (e == NULL) {
        return NULL;
    }
    cpstore__v1__metadata_entry__init(e);
    if (!ak_pb_set(&e->key, m->key) || !ak_pb_set(&e->value, m->value)) {
        ak_pb_free(e->key);
        ak_pb_free(e->value);
        free(e);
        return NULL;
    }
    return e;
}


void ak_info_free(Cpstore__V1__ApiKey *info) {
    if (info == NULL) {
        return;
    }
    ak_pb_free(info->key_id);
    ak_pb_free(info->hint);
    ak_pb_free(info->user_id);
    ak_pb_free(info->name);
    ak_pb_free_list(info->scopes, info->n_scopes);
    ak_pb_free(info->org_id);
    ak_pb_free(info->project_id);
    ak_pb_free(info->rotated_from);
    for (size_t i = 0; i < info->n_metadata; i++) {
        ak_pb_free(info->metadata[i]->key);
        ak_pb_free(info->metadata[i]->value);
        free(info->metadata[i]);
    }
    free(info->metadata);
    free(info);
}


Cpstore__V1__ApiKey *ak_info_new(const ks_record_t *rec) {
    Cpstore__V1__ApiKey *info = malloc(sizeof(*info));

    if (info == NULL) {
        return NULL;
    }
    cpstore__v1__api_key__init(info);
    info->created_at_ms = rec->created_at_ms;
    info->expires_at_ms = rec->expires_at_ms;
    info->revoked_at_ms = rec->revoked_at_ms;
    info->last_used_at_ms = rec->last_used_at_ms;
    if (!ak_pb_set(&info->key_id, rec->key_id) ||
        !ak_pb_set(&info->hint, rec->hint) ||
        !ak_pb_set(&info->user_id, rec->user_id) ||
        !ak_pb_set(&info->name, rec->name) ||
        !ak_pb_set(&info->org_id, rec->org_id) ||
        !ak_pb_set(&info->project_id, rec->project_id) ||
        !ak_pb_set(&info->rotated_from, rec->rotated_from) ||
        !ak_pb_set_list(&info->scopes, &info->n_scopes, rec->scopes,
                        rec->n_scopes)) {
        goto fail;
    }
    if (rec->n_metadata > 0) {
        info->metadata = calloc(rec->n_metadata, sizeof(*info->metadata));
        if (info->metadata == NULL) {
            goto fail;
        }
        for (size_t i = 0; i < rec->n_metadata; i++) {
            info->metadata[i] = ak_meta_new(&rec->metadata[i]);
            if (info->metadata[i] == NULL) {
                goto fail;
            }
            info->n_metadata = i + 1;
        }
    }
    return info;

fail:
    ak_info_free(info);
    return NULL;
}


static int
ak_fill_create(create_resp_t *resp, const char *key, const ks_record_t *rec) {
    if (!ak_pb_set(&resp->key, key) || !ak_pb_set(&resp->key_id, rec->key_id)) {
        return 0;
    }
    resp->info = ak_info_new(rec);
    return resp->info != NULL;
}


int ak_store_new_key(ak_service_t *svc,
                     ks_record_t *rec,
                     int64_t deadline_mono_ms,
                     char key[AK_KEY_LEN + 1],
                     char *err,
                     size_t err_len) {
    int rc = CPS_ALREADY_EXISTS;

    /* A collision of a 96-bit key_id or a 256-bit hash is not expected;
     * if the store reports one anyway, a fresh draw settles it. */
    for (int attempt = 0; attempt < AK_ATTEMPTS && rc == CPS_ALREADY_EXISTS;
         attempt++) {
        rc = ak_new_secret(svc, key, rec);
        if (rc != CPS_OK) {
            ak_set_err(err, err_len, "key generation failed");
            break;
        }
        rc = ks_insert(svc->store, rec, deadline_mono_ms, err, err_len);
    }
    if (rc == CPS_ALREADY_EXISTS) {
        rc = CPS_INTERNAL;
    }
    if (rc != CPS_OK) {
        crypto_cleanse(key, AK_KEY_LEN + 1);
    }
    return rc;
}


int ak_create(ak_service_t *svc,
              const Cpstore__V1__CreateApiKeyRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__CreateApiKeyResponse *resp,
              char *err,
              size_t err_len) {
    char key[AK_KEY_LEN + 1];
    ks_record_t rec;
    int64_t now = clock_now_ms();
    int64_t expires_at;
    int rc;

    cpstore__v1__create_api_key_response__init(resp);
    ak_clear_err(err, err_len);
    if (!ak_check_create(req, err, err_len)) {
        return CPS_INVALID_ARGUMENT;
    }
    rc = ak_check_expiry(req, now, &expires_at, err, err_len);
    if (rc != CPS_OK) {
        return rc;
    }

    ks_record_init(&rec);
    if (!ak_record_from_request(req, now, expires_at, &rec)) {
        ak_set_err(err, err_len, "out of memory");
        rc = CPS_INTERNAL;
    } else {
        rc = ak_store_new_key(svc, &rec, deadline_mono_ms, key, err, err_len);
    }
    if (rc == CPS_OK && !ak_fill_create(resp, key, &rec)) {
        /* Stored but not described: the caller sees a failure and never
         * learns the key, so the record is unusable, not half-created. */
        ak_set_err(err, err_len, "out of memory");
        rc = CPS_INTERNAL;
    }
    crypto_cleanse(key, sizeof(key));
    crypto_cleanse(rec.hash, sizeof(rec.hash));
    ks_record_clear(&rec);
    if (rc != CPS_OK) {
        ak_create_response_clear(resp);
    }
    return rc;
}


void ak_create_response_clear(Cpstore__V1__CreateApiKeyResponse *resp) {
    if (resp->key != NULL && resp->key != protobuf_c_empty_string) {
        crypto_cleanse(resp->key, strlen(resp->key));
    }
    ak_pb_free(resp->key);
    ak_pb_free(resp->key_id);
    ak_info_free(resp->info);
    cpstore__v1__create_api_key_response__init(resp);
}


/* ---- verify ------------------------------------------------------------ */

static int ak_check_verify(const verify_req_t *req, char *err, size_t err_len) {
    return fc_text(req->org_id, LIM_ID_MAX, 1, "org_id", err, err_len) &&
           fc_text(req->project_id, LIM_ID_MAX, 1, "project_id", err,
                   err_len) &&
           ak_check_scopes(req->required_scopes, req->n_required_scopes,
                           "required_scopes", err, err_len);
}


/* A binding is broken when the key has one and the request names another
 * one. A request that names none takes the key's binding. */
static int ak_binding_conflicts(const char *bound, const char *asked) {
    return bound != NULL && ak_len(asked) > 0 && strcmp(bound, asked) != 0;
}


static Cpstore__V1__VerifyCode
ak_decide(const verify_req_t *req, const ks_record_t *rec, int64_t now) {
    if (rec->revoked_at_ms != 0) {
        return CPSTORE__V1__VERIFY_CODE__REVOKED;
    }
    if (rec->expires_at_ms != 0 && now >= rec->expires_at_ms) {
        return CPSTORE__V1__VERIFY_CODE__EXPIRED;
    }
    if (ak_binding_conflicts(rec->org_id, req->org_id) ||
        ak_binding_conflicts(rec->project_id, req->project_id)) {
        return CPSTORE__V1__VERIFY_CODE__CONTEXT_MISMATCH;
    }
    if (!scope_sufficient(rec->scopes, rec->n_scopes, req->required_scopes,
                          req->n_required_scopes)) {
        return CPSTORE__V1__VERIFY_CODE__INSUFFICIENT_SCOPE;
    }
    return CPSTORE__V1__VERIFY_CODE__VALID;
}


static int ak_fill_verify(verify_resp_t *resp, const ks_record_t *rec) {
    resp->expires_at_ms = rec->expires_at_ms;
    return ak_pb_set(&resp->key_id, rec->key_id) &&
           ak_pb_set(&resp->user_id, rec->user_id) &&
           ak_pb_set(&resp->org_id, rec->org_id) &&
           ak_pb_set(&resp->project_id, rec->project_id) &&
           ak_pb_set_list(&resp->scopes, &resp->n_scopes, rec->scopes,
                          rec->n_scopes);
}


int ak_verify(ak_service_t *svc,
              const Cpstore__V1__VerifyApiKeyRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__VerifyApiKeyResponse *resp,
              char *err,
              size_t err_len) {
    uint8_t hash[KS_HASH_LEN];
    ks_record_t rec;
    size_t key_len = ak_len(req->key);
    int rc;

    cpstore__v1__verify_api_key_response__init(resp);
    resp->code = CPSTORE__V1__VERIFY_CODE__NOT_FOUND;
    ak_clear_err(err, err_len);
    if (!ak_check_verify(req, err, err_len)) {
        return CPS_INVALID_ARGUMENT;
    }
    /* No key that long or that short was ever issued: answer without a
     * lookup, and without hashing an unbounded input. */
    if (key_len == 0 || key_len > LIM_API_KEY_MAX) {
        return CPS_OK;
    }

    rc = crypto_hmac_sha256(svc->secret, svc->secret_len, req->key, key_len,
                            hash);
    if (rc != CPS_OK) {
        ak_set_err(err, err_len, "hashing the key failed");
        return rc;
    }
    ks_record_init(&rec);
    rc =
        ks_find_by_hash(svc->store, hash, deadline_mono_ms, &rec, err, err_len);
    if (rc == CPS_NOT_FOUND ||
        (rc == CPS_OK && !crypto_equal(rec.hash, hash, KS_HASH_LEN))) {
        rc = CPS_OK; /* resp already says NOT_FOUND */
    } else if (rc == CPS_OK) {
        int64_t now = clock_now_ms();

        /* Whatever the answer: a refused key is still in its holder's
         * hands, which is what "last used" is there to tell. */
        ak_usage_note(svc, rec.key_id, now);
        resp->code = ak_decide(req, &rec, now);
        resp->valid = resp->code == CPSTORE__V1__VERIFY_CODE__VALID;
        if (!ak_fill_verify(resp, &rec)) {
            ak_set_err(err, err_len, "out of memory");
            rc = CPS_INTERNAL;
        }
    }
    crypto_cleanse(hash, sizeof(hash));
    ks_record_clear(&rec);
    if (rc != CPS_OK) {
        ak_verify_response_clear(resp);
    }
    return rc;
}


void ak_verify_response_clear(Cpstore__V1__VerifyApiKeyResponse *resp) {
    ak_pb_free(resp->key_id);
    ak_pb_free(resp->user_id);
    ak_pb_free_list(resp->scopes, resp->n_scopes);
    ak_pb_free(resp->org_id);
    ak_pb_free(resp->project_id);
    cpstore__v1__verify_api_key_response__init(resp);
}
