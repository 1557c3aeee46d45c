/*
 * API keys after creation: get, list, revoke and rotate.
 *
 * Get and list answer with Cpstore__V1__ApiKey, which has no field for the
 * key or its hash: what is never copied into the message can never be
 * sent.
 *
 * Revocation is one store write that sets revoked_at only where it is not
 * set yet, so the first revocation's time is the one kept. Verify reads
 * the record on every call, so every instance refuses the key from the
 * moment that write is done.
 *
 * Rotation is three store writes, in this order:
 *   1. claim the rotation: a claim record keyed by the old key's key_id,
 *      naming the new key's key_id (drawn before anything is written).
 *      The store accepts one claim per key and refuses every later one,
 *      so of any number of concurrent rotations, on any number of
 *      instances, exactly one gets past this step; every other is
 *      FAILED_PRECONDITION naming the winner's successor. The check of
 *      rotated_to before it is only a shortcut: on FerretDB v1 several
 *      callers can all read "not rotated", and an update of the old key
 *      cannot tell them apart, since the server runs it as a read and then
 *      a write (see ks_mongo.c). An insert into a unique key can.
 *   2. insert the new key: one whole record, a copy of the old one's
 *      attributes with rotated_from naming the old key;
 *   3. retire the old key: lower its expiry to min(now + grace, its own
 *      expiry) and name the new key in its rotated_to.
 * If step 2 or 3 fails, the winner removes its own claim (only one that
 * names its successor), so the rotation can simply be retried, and
 * returns the error. A failure after step 2 leaves two valid keys, the
 * old one until its own expiry, which it had anyway: nothing is half-made
 * and nothing valid is lost. The caller never sees the new key (it is
 * wiped with this call's memory), so that record can never be presented;
 * it shows in List as rotated from the old key. Retiring first could end
 * the old key with no successor stored.
 *
 * What a crash between the claim and the end leaves (or a failure whose
 * release fails too): a claim that nobody removes. The old key keeps
 * verifying until its own expiry, as it would have without the rotation,
 * but it cannot be rotated again; Rotate answers FAILED_PRECONDITION.
 * When the successor was stored (a crash after step 2), the answer names
 * it, and rotating that successor gives a key its caller knows. When it
 * was not, the answer says the rotation to the named key is under way or
 * did not finish. Nothing tells an abandoned claim from a slow one, so
 * nothing takes a claim over; the way on is to create a new key and
 * revoke the old one.
 *
 * A key that has been rotated once (rotated_to set) cannot be rotated
 * again: its expiry is now the grace period's end, and a second successor
 * would inherit that instead of the key's real expiry. Its successor is
 * the key to rotate.
 */
#include "apikeys.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ak_internal.h"
#include "fieldcheck.h"
#include "clock.h"
#include "crypto.h"
#include "field_limits.h"
#include "log.h"
#include "status.h"


/* A key_id named by a request: present and no longer than any key_id. */
static int ak_check_key_id(const char *key_id, char *err, size_t err_len) {
    if (key_id == NULL || *key_id == '\0') {
        ak_set_err(err, err_len, "key_id is required");
        return 0;
    }
    return fc_text(key_id, AK_KEY_ID_MAX, 1, "key_id", err, err_len);
}


static void ak_not_found(char *err, size_t err_len) {
    ak_set_err(err, err_len, "no key has this key_id");
}


/* ---- get --------------------------------------------------------------- */

int ak_get(ak_service_t *svc,
           const Cpstore__V1__GetApiKeyRequest *req,
           int64_t deadline_mono_ms,
           Cpstore__V1__GetApiKeyResponse *resp,
           char *err,
           size_t err_len) {
    ks_record_t rec;
    int rc;

    cpstore__v1__get_api_key_response__init(resp);
    ak_clear_err(err, err_len);
    if (!ak_check_key_id(req->key_id, err, err_len)) {
        return CPS_INVALID_ARGUMENT;
    }

    ks_record_init(&rec);
    rc = ks_find_by_id(svc->store, req->key_id, deadline_mono_ms, &rec, err,
                       err_len);
    if (rc == CPS_NOT_FOUND) {
        ak_not_found(err, err_len);
    } else if (rc == CPS_OK) {
        resp->key = ak_info_new(&rec);
        if (resp->key == NULL) {
            ak_set_err(err, err_len, "out of memory");
            rc = CPS_INTERNAL;
        }
    }
    ks_record_clear(&rec);
    return rc;
}


void ak_get_response_clear(Cpstore__V1__GetApiKeyResponse *resp) {
    ak_info_free(resp->key);
    cpstore__v1__get_api_key_response__init(resp);
}


/* ---- list -------------------------------------------------------------- */

static int ak_fill_list(Cpstore__V1__ListApiKeysResponse *resp,
                        const ks_record_t *recs,
                        size_t n) {
    if (n == 0) {
        return 1;
    }
    resp->keys = calloc(n, sizeof(*resp->keys));
    if (resp->keys == NULL) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        resp->keys[i] = ak_info_new(&recs[i]);
        if (resp->keys[i] == NULL) {
            return 0;
        }
        resp->n_keys = i + 1;
    }
    return 1;
}


int ak_list(ak_service_t *svc,
            const Cpstore__V1__ListApiKeysRequest *req,
            int64_t deadline_mono_ms,
            Cpstore__V1__ListApiKeysResponse *resp,
            char *err,
            size_t err_len) {
    ks_record_t *recs = NULL;
    size_t n = 0;
    int rc;

    cpstore__v1__list_api_keys_response__init(resp);
    ak_clear_err(err, err_len);
    if (req->user_id == NULL || *req->user_id == '\0') {
        ak_set_err(err, err_len, "user_id is required");
        return CPS_INVALID_ARGUMENT;
    }
    if (!fc_text(req->user_id, LIM_ID_MAX, 1, "user_id", err, err_len)) {
        return CPS_INVALID_ARGUMENT;
    }

    rc = ks_list_by_user(svc->store, req->user_id, AK_LIST_MAX,
                         deadline_mono_ms, &recs, &n, err, err_len);
    if (rc == CPS_OK && !ak_fill_list(resp, recs, n)) {
        ak_set_err(err, err_len, "out of memory");
        rc = CPS_INTERNAL;
    }
    ks_records_free(recs, n);
    if (rc != CPS_OK) {
        ak_list_response_clear(resp);
    }
    return rc;
}


void ak_list_response_clear(Cpstore__V1__ListApiKeysResponse *resp) {
    for (size_t i = 0; i < resp->n_keys; i++) {
        ak_info_free(resp->keys[i]);
    }
    free(resp->keys);
    cpstore__v1__list_api_keys_response__init(resp);
}


/* ---- revoke ------------------------------------------------------------ */

int ak_revoke(ak_service_t *svc,
              const Cpstore__V1__RevokeApiKeyRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__RevokeApiKeyResponse *resp,
              char *err,
              size_t err_len) {
    ks_record_t rec;
    int rc;

    cpstore__v1__revoke_api_key_response__init(resp);
    ak_clear_err(err, err_len);
    if (!ak_check_key_id(req->key_id, err, err_len)) {
        return CPS_INVALID_ARGUMENT;
    }

    ks_record_init(&rec);
    rc = ks_revoke(svc->store, req->key_id, clock_now_ms(), deadline_mono_ms,
                   &rec, err, err_len);
    if (rc == CPS_NOT_FOUND) {
        ak_not_found(err, err_len);
    } else if (rc == CPS_OK) {
        resp->revoked_at_ms = rec.revoked_at_ms;
    }
    ks_record_clear(&rec);
    return rc;
}


/* ---- rotate ------------------------------------------------------------ */

/* Only a key that still verifies, and has no successor yet, can hand
 * over to a successor. */
static int ak_check_rotatable(const ks_record_t *old,
                              int64_t now,
                              char *err,
                              size_t err_len) {
    if (old->revoked_at_ms != 0) {
        ak_set_err(err, err_len, "the key is revoked");
        return CPS_FAILED_PRECONDITION;
    }
    if (old->expires_at_ms != 0 && now >= old->expires_at_ms) {
        ak_set_err(err, err_len, "the key has expired");
        return CPS_FAILED_PRECONDITION;
    }
    if (old->rotated_to != NULL) {
        ak_set_err(err, err_len,
                   "the key was rotated already; rotate its successor %s",
                   old->rotated_to);
        return CPS_FAILED_PRECONDITION;
    }
    return CPS_OK;
}


/* The new key's record: the old one's owner, name, scopes, binding,
 * expiry and metadata; created now, never used, and naming the old key.
 * key_id, hint and hash are replaced by ak_store_new_key(). */
static int ak_successor(const ks_record_t *old, int64_t now, ks_record_t *rec) {
    if (ks_record_copy(rec, old) != CPS_OK) {
        return CPS_INTERNAL;
    }
    free(rec->rotated_from);
    rec->rotated_from = strdup(old->key_id);
    if (rec->rotated_from == NULL) {
        return CPS_INTERNAL;
    }
    free(rec->rotated_to);
    rec->rotated_to = NULL;
    memset(rec->hash, 0, sizeof(rec->hash));
    rec->created_at_ms = now;
    rec->revoked_at_ms = 0;
    rec->last_used_at_ms = 0;
    return CPS_OK;
}


/* Give up this call's claim on old_key_id, which names successor, so
 * that a rotation that could not finish can be retried. No deadline: the
 * request's may be what ran out, and a claim left behind would keep the
 * key from ever being rotated. A failure here is only logged; the caller
 * reports the error that made the rotation fail. */
static void ak_release_claim(ak_service_t *svc,
                             const char *old_key_id,
                             const char *successor) {
    char why[256] = "";

    if (ks_release_rotation(svc->store, old_key_id, successor, 0, why,
                            sizeof(why)) != CPS_OK) {
        log_warn("rotation claim on %s stays: %s", old_key_id, why);
    }
}


/* Step 3: retire the old key in favour of successor. *until receives
 * when it stops verifying. */
static int ak_end_old_key(ak_service_t *svc,
                          const ks_record_t *old,
                          const char *successor,
                          int64_t now,
                          uint64_t grace_ms,
                          int64_t deadline_mono_ms,
                          int64_t *until,
                          char *err,
                          size_t err_len) {
    ks_record_t after;
    int64_t end = now + (int64_t)grace_ms;
    int rc;

    if (old->expires_at_ms != 0 && old->expires_at_ms < end) {
        end = old->expires_at_ms;
    }
    ks_record_init(&after);
    rc = ks_retire(svc->store, old->key_id, end, successor, deadline_mono_ms,
                   &after, err, err_len);
    if (rc == CPS_OK) {
        /* Another rotation may have ended it sooner: report what holds. */
        *until = after.expires_at_ms;
    } else if (rc == CPS_NOT_FOUND) {
        /* Removed since it was read: it verifies no more from now on. */
        *until = now;
        rc = CPS_OK;
    }
    ks_record_clear(&after);
    return rc;
}


static int ak_fill_rotate(Cpstore__V1__RotateApiKeyResponse *resp,
                          const char *key,
                          const ks_record_t *rec) {
    if (!ak_pb_set(&resp->key, key) || !ak_pb_set(&resp->key_id, rec->key_id)) {
        return 0;
    }
    resp->info = ak_info_new(rec);
    return resp->info != NULL;
}


/* Another rotation holds the claim on old: refuse, naming its successor
 * (winner, NULL when the claim could not be read back). */
static int ak_refuse_claimed(ak_service_t *svc,
                             const char *winner,
                             int64_t deadline_mono_ms,
                             char *err,
                             size_t err_len) {
    ks_record_t succ;
    int rc;

    if (winner == NULL) {
        ak_set_err(err, err_len, "the key is being rotated already");
        return CPS_FAILED_PRECONDITION;
    }
    ks_record_init(&succ);
    rc = ks_find_by_id(svc->store, winner, deadline_mono_ms, &succ, NULL, 0);
    ks_record_clear(&succ);
    if (rc == CPS_NOT_FOUND) {
        ak_set_err(err, err_len,
                   "the key's rotation to %s is under way or did not "
                   "finish; if it stays so, create a new key and revoke "
                   "this one",
                   winner);
    } else {
        ak_set_err(err, err_len,
                   "the key was rotated already; rotate its successor %s",
                   winner);
    }
    return CPS_FAILED_PRECONDITION;
}


/* Steps 1 and 2: draw the new key into key and rec, claim the rotation of
 * old for it, then store it. On any failure after the claim, the claim is
 * released; key holds nothing on failure. */
static int ak_claim_and_store(ak_service_t *svc,
                              const ks_record_t *old,
                              ks_record_t *rec,
                              int64_t now,
                              int64_t deadline_mono_ms,
                              char key[AK_KEY_LEN + 1],
                              char *err,
                              size_t err_len) {
    char *winner = NULL;
    int rc;

    rc = ak_new_secret(svc, key, rec);
    if (rc != CPS_OK) {
        ak_set_err(err, err_len, "key generation failed");
        crypto_cleanse(key, AK_KEY_LEN + 1);
        return CPS_INTERNAL;
    }
    rc = ks_claim_rotation(svc->store, old->key_id, rec->key_id, now,
                           deadline_mono_ms, &winner, err, err_len);
    if (rc == CPS_ALREADY_EXISTS) {
        rc = ak_refuse_claimed(svc, winner, deadline_mono_ms, err, err_len);
    }
    free(winner);
    if (rc == CPS_OK) {
        rc = ks_insert(svc->store, rec, deadline_mono_ms, err, err_len);
        if (rc == CPS_ALREADY_EXISTS) {
            /* A 96-bit key_id or 256-bit hash collision: not expected, and
             * the claim names this key_id, so no fresh draw here; the
             * released claim lets the caller retry. */
            ak_set_err(err, err_len, "the new key collided; retry");
            rc = CPS_INTERNAL;
        }
        if (rc != CPS_OK) {
            ak_release_claim(svc, old->key_id, rec->key_id);
        }
    }
    if (rc != CPS_OK) {
        crypto_cleanse(key, AK_KEY_LEN + 1);
    }
    return rc;
}


int ak_rotate(ak_service_t *svc,
              const Cpstore__V1__RotateApiKeyRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__RotateApiKeyResponse *resp,
              char *err,
              size_t err_len) {
    char key[AK_KEY_LEN + 1];
    ks_record_t old;
    ks_record_t rec;
    int64_t now = clock_now_ms();
    int64_t until = 0;
    int rc;

    cpstore__v1__rotate_api_key_response__init(resp);
    ak_clear_err(err, err_len);
    if (!ak_check_key_id(req->key_id, err, err_len)) {
        return CPS_INVALID_ARGUMENT;
    }
    if (req->grace_ms > (uint64_t)(INT64_MAX - now)) {
        ak_set_err(err, err_len, "grace_ms is too large");
        return CPS_INVALID_ARGUMENT;
    }

    ks_record_init(&old);
    ks_record_init(&rec);
    rc = ks_find_by_id(svc->store, req->key_id, deadline_mono_ms, &old, err,
                       err_len);
    if (rc == CPS_NOT_FOUND) {
        ak_not_found(err, err_len);
    }
    if (rc == CPS_OK) {
        rc = ak_check_rotatable(&old, now, err, err_len);
    }
    if (rc == CPS_OK && ak_successor(&old, now, &rec) != CPS_OK) {
        ak_set_err(err, err_len, "out of memory");
        rc = CPS_INTERNAL;
    }
    if (rc == CPS_OK) {
        rc = ak_claim_and_store(svc, &old, &rec, now, deadline_mono_ms, key,
                                err, err_len);
        if (rc == CPS_OK) {
            rc = ak_end_old_key(svc, &old, rec.key_id, now, req->grace_ms,
                                deadline_mono_ms, &until, err, err_len);
            if (rc != CPS_OK) {
                ak_release_claim(svc, old.key_id, rec.key_id);
            } else if (!ak_fill_rotate(resp, key, &rec)) {
                ak_set_err(err, err_len, "out of memory");
                rc = CPS_INTERNAL;
            }
            resp->old_expires_at_ms = until;
            crypto_cleanse(key, sizeof(key));
        }
    }

    crypto_cleanse(rec.hash, sizeof(rec.hash));
    ks_record_clear(&rec);
    ks_record_clear(&old);
    if (rc != CPS_OK) {
        ak_rotate_response_clear(resp);
    }
    return rc;
}


void ak_rotate_response_clear(Cpstore__V1__RotateApiKeyResponse *resp) {
    if (resp->key != NULL && resp->key != protobuf_c_empty_string) {
        crypto_cleanse(resp->key, strlen(resp->key));
    }
    ak_pb_free(resp->key);
    ak_pb_free(resp->key_id);
    ak_info_free(resp->info);
    cpstore__v1__rotate_api_key_response__init(resp);
}
