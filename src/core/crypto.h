/*
 * Cryptographic primitives shared by API keys, tokens and sessions, all on
 * OpenSSL: the CSPRNG, HMAC-SHA256, constant-time comparison, hex encoding,
 * uniform random base62 strings and secure zeroing.
 *
 * Every function is thread-safe and allocates nothing on the heap. Buffers
 * that held a secret are wiped with crypto_cleanse() before they go out of
 * scope, so that a secret does not linger in freed or reused memory.
 */
#ifndef CPSTORE_CRYPTO_H
#define CPSTORE_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SHA256_LEN 32

/* The 62 characters crypto_random_base62() draws from, in this order. */
#define CRYPTO_BASE62_ALPHABET                                                 \
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/* Fill buf with len bytes from the CSPRNG. CPS_OK, or CPS_INTERNAL when the
 * generator fails (then buf is zeroed, never left half random). */
int crypto_random_bytes(void *buf, size_t len);

/* out = HMAC-SHA256(key, data). CPS_OK, or CPS_INTERNAL on failure (then
 * out is zeroed). key may be any length; data may be empty. */
int crypto_hmac_sha256(const void *key,
                       size_t key_len,
                       const void *data,
                       size_t data_len,
                       uint8_t out[CRYPTO_SHA256_LEN]);

/* 1 if the len bytes at a and b are equal, else 0, in time that depends on
 * len only. Use it whenever one side is a secret or derived from one. */
int crypto_equal(const void *a, const void *b, size_t len);

/* Lower-case hex of len bytes into out, which holds 2 * len + 1 chars;
 * out is NUL-terminated. */
void crypto_hex(const void *in, size_t len, char *out);

/*
 * Fill out with len characters drawn uniformly and independently from
 * CRYPTO_BASE62_ALPHABET, then a NUL: out holds len + 1 chars. Each char
 * carries log2(62) ~ 5.95 bits, so 44 chars carry more than 256 bits.
 * CPS_OK, or CPS_INTERNAL when the CSPRNG fails (out is then "").
 */
int crypto_random_base62(char *out, size_t len);

/* Overwrite len bytes at p with zeros in a way the compiler cannot drop. */
void crypto_cleanse(void *p, size_t len);

#endif
