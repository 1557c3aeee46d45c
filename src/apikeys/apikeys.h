/*
 * API keys: creation, verification and the rest of a key's life (get,
 * list, revoke, rotate, last-used times); DESIGN.md section 5, "API keys".
 *
 * A key is "<prefix>_<random>", the random part 44 base62 characters drawn
 * from the CSPRNG (more than 256 bits). The store never sees the key: it
 * keeps HMAC-SHA256(server secret, key) as the lookup value, a public
 * key_id ("key_" and 24 hex characters) and a display hint ("<prefix>_..."
 * and the key's last four characters).
 *
 * Every function here blocks on the store and is thread-safe; the server
 * calls them from worker threads only. Request and response messages are
 * the protobuf-c structs generated from proto/cpstore/v1/apikeys.proto.
 * Neither a key nor the secret ever appears in err. Only Create and
 * Rotate ever answer with a key; no answer ever carries a key's hash.
 */
#ifndef CPSTORE_APIKEYS_H
#define CPSTORE_APIKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "cpstore/v1/apikeys.pb-c.h"
#include "keystore.h"

#define AK_PREFIX_MAX 32 /* key prefix: 1..32 of [A-Za-z0-9_] */
#define AK_SECRET_MIN 32 /* bytes of server secret, at least */
#define AK_LIST_MAX   50 /* keys in one List answer, the newest */

typedef struct ak_service ak_service_t;

/* The service borrows store, secret and prefix; they must outlive it.
 * NULL when the secret is shorter than AK_SECRET_MIN, the prefix is not
 * 1..AK_PREFIX_MAX characters of [A-Za-z0-9_], or out of memory. */
ak_service_t *ak_service_new(ks_store_t *store,
                             const uint8_t *secret,
                             size_t secret_len,
                             const char *key_prefix);
void ak_service_free(ak_service_t *svc);

/*
 * Create a key. Returns CPS_OK with *resp filled (free its contents with
 * ak_create_response_clear()), CPS_INVALID_ARGUMENT for a bad request
 * (no user_id, a field over its limit in field_limits.h, an invalid scope,
 * repeated metadata keys, both expires_at_ms and expires_in_ms, or an
 * expiry at or before now), or the store's error (CPS_UNAVAILABLE,
 * CPS_DEADLINE_EXCEEDED, CPS_INTERNAL). On failure nothing was stored and
 * *resp holds nothing to free. err receives a short reason on failure.
 * deadline_mono_ms is on clock_mono_ms(); 0 means none.
 */
int ak_create(ak_service_t *svc,
              const Cpstore__V1__CreateApiKeyRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__CreateApiKeyResponse *resp,
              char *err,
              size_t err_len);

/* Free what ak_create put in resp, wiping the key first. */
void ak_create_response_clear(Cpstore__V1__CreateApiKeyResponse *resp);

/*
 * Verify a key. An invalid key is a normal answer: CPS_OK with resp->code
 * the first of NOT_FOUND, REVOKED, EXPIRED (now >= expires_at),
 * CONTEXT_MISMATCH (bound to another org or project than the request
 * names), INSUFFICIENT_SCOPE that applies, else VALID. For any key found,
 * resp carries its key_id, user_id, scopes, binding and expiry; a request
 * that names no org or project gets the key's binding back. An empty key
 * or one longer than LIM_API_KEY_MAX is NOT_FOUND without a lookup.
 * Errors: CPS_INVALID_ARGUMENT for a malformed request (an invalid
 * required scope, a field over its limit) and the store's errors; *resp
 * then holds nothing to free.
 */
int ak_verify(ak_service_t *svc,
              const Cpstore__V1__VerifyApiKeyRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__VerifyApiKeyResponse *resp,
              char *err,
              size_t err_len);
void ak_verify_response_clear(Cpstore__V1__VerifyApiKeyResponse *resp);

/*
 * Get, list, revoke and rotate share these rules. A request naming no
 * key_id, or one longer than any key_id, is CPS_INVALID_ARGUMENT; an
 * unknown key_id is CPS_NOT_FOUND (an RPC error, unlike Verify's answer).
 * Other errors are the store's. On any failure the response holds nothing
 * to free. Each ApiKey in an answer carries last_used_at_ms as last
 * flushed (see ak_flush_usage), so it may trail the latest verify.
 */

/* The key's public description. Free with ak_get_response_clear(). */
int ak_get(ak_service_t *svc,
           const Cpstore__V1__GetApiKeyRequest *req,
           int64_t deadline_mono_ms,
           Cpstore__V1__GetApiKeyResponse *resp,
           char *err,
           size_t err_len);
void ak_get_response_clear(Cpstore__V1__GetApiKeyResponse *resp);

/* The user's AK_LIST_MAX newest keys, newest first, revoked and expired
 * ones included. No user_id is CPS_INVALID_ARGUMENT; a user without keys
 * gets an empty list. Free with ak_list_response_clear(). */
int ak_list(ak_service_t *svc,
            const Cpstore__V1__ListApiKeysRequest *req,
            int64_t deadline_mono_ms,
            Cpstore__V1__ListApiKeysResponse *resp,
            char *err,
            size_t err_len);
void ak_list_response_clear(Cpstore__V1__ListApiKeysResponse *resp);

/* Revoke the key from now on, everywhere: the next verify on any instance
 * answers REVOKED. Revoking again changes nothing; resp->revoked_at_ms is
 * the first revocation's time either way. Nothing to free. */
int ak_revoke(ak_service_t *svc,
              const Cpstore__V1__RevokeApiKeyRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__RevokeApiKeyResponse *resp,
              char *err,
              size_t err_len);

/*
 * Issue a new key with the old one's owner, name, scopes, binding, expiry
 * and metadata (info.rotated_from names the old key), and end the old key
 * at min(now + grace_ms, its own expiry); resp->old_expires_at_ms says
 * when. A revoked or expired key, or one rotated already (rotate its
 * successor instead), is CPS_FAILED_PRECONDITION; a grace past the end of
 * time is CPS_INVALID_ARGUMENT. Free with
 * ak_rotate_response_clear(), which wipes the key.
 */
int ak_rotate(ak_service_t *svc,
              const Cpstore__V1__RotateApiKeyRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__RotateApiKeyResponse *resp,
              char *err,
              size_t err_len);
void ak_rotate_response_clear(Cpstore__V1__RotateApiKeyResponse *resp);

/*
 * Write the last-used times noted by verify since the last flush: one
 * store update per key, each only ever moving last_used_at forward.
 * Verify itself never writes. Run it now and then (the server's
 * housekeeping does) and once at shutdown; it blocks on the store, so not
 * on the event loop. CPS_OK, or the first store error (or
 * CPS_DEADLINE_EXCEEDED): the times not written are kept for the next
 * flush.
 */
int ak_flush_usage(ak_service_t *svc,
                   int64_t deadline_mono_ms,
                   char *err,
                   size_t err_len);

#endif
