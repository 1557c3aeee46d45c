/*
 * What the files of the API key service share, and nothing outside
 * src/apikeys uses: apikeys.c (the service object, create, verify and the
 * protobuf-c helpers), ak_lifecycle.c (get, list, revoke, rotate) and
 * ak_usage.c (last-used times).
 */
#ifndef CPSTORE_AK_INTERNAL_H
#define CPSTORE_AK_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "apikeys.h"
#include "keystore.h"

#define AK_RANDOM_CHARS 44 /* 44 * log2(62) > 261 bits */
#define AK_KEY_LEN      (AK_PREFIX_MAX + 1 + AK_RANDOM_CHARS)
#define AK_KEY_ID_MAX   47 /* longest key_id a request may name */

typedef struct ak_used ak_used_t; /* ak_usage.c */

struct ak_service {
    ks_store_t *store;
    const uint8_t *secret;
    size_t secret_len;
    const char *prefix;

    /* Last verify time per key_id since the last flush (ak_usage.c). */
    pthread_mutex_t usage_lock;
    ak_used_t *used; /* under usage_lock */
    size_t n_used;   /* under usage_lock */
};

/* printf into err, when err is not NULL. */
void ak_set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Empty err, when err is not NULL. */
void ak_clear_err(char *err, size_t err_len);


/* Free a protobuf-c string unless it is the shared empty string. */
void ak_pb_free(char *s);

/* Copy src into *dst unless it is NULL or empty (then *dst is left as it
 * is, the message's empty string). 0 when out of memory. */
int ak_pb_set(char **dst, const char *src);

/* The public description of a stored key: every attribute but the hash.
 * NULL when out of memory. Free with ak_info_free(). */
Cpstore__V1__ApiKey *ak_info_new(const ks_record_t *rec);
void ak_info_free(Cpstore__V1__ApiKey *info);

/*
 * Draw a new key into key (AK_KEY_LEN + 1 bytes) and set rec's key_id, hash
 * and hint from it, replacing any earlier ones; nothing is stored. For a
 * caller that must know the key_id before the insert (rotation's claim).
 * CPS_OK, or CPS_INTERNAL when no randomness or memory is left.
 */
int ak_new_secret(const ak_service_t *svc, char *key, ks_record_t *rec);

/*
 * Draw a new key, set rec's key_id, hash and hint from it and insert rec,
 * whole, in one store call. rec holds every other attribute on entry. On
 * CPS_OK the key is in key, which the caller wipes (crypto_cleanse) once
 * it has been copied into the response; on failure nothing was stored and
 * key holds nothing.
 */
int ak_store_new_key(ak_service_t *svc,
                     ks_record_t *rec,
                     int64_t deadline_mono_ms,
                     char key[AK_KEY_LEN + 1],
                     char *err,
                     size_t err_len);

/* ak_usage.c: set up and tear down the table (CPS_OK or CPS_INTERNAL),
 * and note that key_id was presented at at_ms. Thread-safe. */
int ak_usage_init(ak_service_t *svc);
void ak_usage_destroy(ak_service_t *svc);
void ak_usage_note(ak_service_t *svc, const char *key_id, int64_t at_ms);

#endif
