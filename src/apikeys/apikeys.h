/*
 * API keys: creation and verification (DESIGN.md section 5, "API keys").
 *
 * A key is "<prefix>_<random>", the random part drawn from the CSPRNG with at
 * least 256 bits. The store never sees the key: it keeps HMAC-SHA256(server
 * secret, key) as the lookup value, a public key_id and a display hint.
 *
 * Every function here blocks on the store and is thread-safe; the server
 * calls them from worker threads only. Request and response messages are
 * the protobuf-c structs generated from proto/cpstore/v1/apikeys.proto.
 */
#ifndef CPSTORE_APIKEYS_H
#define CPSTORE_APIKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "cpstore/v1/apikeys.pb-c.h"
#include "keystore.h"

typedef struct ak_service ak_service_t;

/* The service borrows store, secret and prefix; they must outlive it. */
ak_service_t *ak_service_new(ks_store_t *store,
                             const uint8_t *secret,
                             size_t secret_len,
                             const char *key_prefix);
void ak_service_free(ak_service_t *svc);

/*
 * Create a key. Returns CPS_OK with *resp filled (free its contents with
 * ak_create_response_clear()), CPS_INVALID_ARGUMENT for a bad request
 * (including an expiry at or before now), or the store's error
 * (CPS_UNAVAILABLE, CPS_DEADLINE_EXCEEDED, CPS_INTERNAL). err receives a
 * short reason on failure; it never contains the key.
 * deadline_mono_ms is on clock_mono_ms(); 0 means none.
 */
int ak_create(ak_service_t *svc,
              const Cpstore__V1__CreateApiKeyRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__CreateApiKeyResponse *resp,
              char *err,
              size_t err_len);
void ak_create_response_clear(Cpstore__V1__CreateApiKeyResponse *resp);

/*
 * Verify a key. An invalid key is a normal answer (CPS_OK with a code);
 * only a store failure or a malformed request is an error.
 */
int ak_verify(ak_service_t *svc,
              const Cpstore__V1__VerifyApiKeyRequest *req,
              int64_t deadline_mono_ms,
              Cpstore__V1__VerifyApiKeyResponse *resp,
              char *err,
              size_t err_len);
void ak_verify_response_clear(Cpstore__V1__VerifyApiKeyResponse *resp);

#endif
