/*
 * OpenSSL wrappers. OpenSSL 3's RAND_bytes, HMAC and CRYPTO_memcmp are
 * thread-safe without any setup, so nothing here keeps state.
 *
 * Base62 by rejection sampling: a random byte is used only when it is below
 * 248 = 4 * 62, and then reduced modulo 62. Every character is therefore
 * equally likely; plain "byte % 62" would favour the first 8 characters.
 */
#include "crypto.h"

#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "status.h"

#define CRYPTO_BASE62_LIMIT 248 /* largest multiple of 62 that fits a byte */
#define CRYPTO_BATCH        64  /* random bytes drawn per RAND_bytes call */


int crypto_random_bytes(void *buf, size_t len) {
    unsigned char *p = buf;

    while (len > 0) {
        int n = len > INT_MAX ? INT_MAX : (int)len;

        if (RAND_bytes(p, n) != 1) {
            OPENSSL_cleanse(buf, (size_t)(p - (unsigned char *)buf));
            return CPS_INTERNAL;
        }
        p += n;
        len -= (size_t)n;
    }
    return CPS_OK;
}


int crypto_hmac_sha256(const void *key,
                       size_t key_len,
                       const void *data,
                       size_t data_len,
                       uint8_t out[CRYPTO_SHA256_LEN]) {
    static const unsigned char empty[1];
    unsigned int out_len = 0;

    if (key_len > INT_MAX) {
        memset(out, 0, CRYPTO_SHA256_LEN);
        return CPS_INTERNAL;
    }
    /* HMAC() wants a non-NULL pointer even for empty input. */
    if (data == NULL) {
        data = empty;
    }
    if (key == NULL) {
        key = empty;
    }
    if (HMAC(EVP_sha256(), key, (int)key_len, data, data_len, out, &out_len) ==
            NULL ||
        out_len != CRYPTO_SHA256_LEN) {
        memset(out, 0, CRYPTO_SHA256_LEN);
        return CPS_INTERNAL;
    }
    return CPS_OK;
}


int crypto_equal(const void *a, const void *b, size_t len) {
    return CRYPTO_memcmp(a, b, len) == 0;
}


void crypto_hex(const void *in, size_t len, char *out) {
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0x0f];
    }
    out[2 * len] = '\0';
}


int crypto_random_base62(char *out, size_t len) {
    static const char alphabet[] = CRYPTO_BASE62_ALPHABET;
    unsigned char batch[CRYPTO_BATCH];
    size_t filled = 0;

    while (filled < len) {
        if (crypto_random_bytes(batch, sizeof(batch)) != CPS_OK) {
            crypto_cleanse(out, len);
            out[0] = '\0';
            return CPS_INTERNAL;
        }
        for (size_t i = 0; i < sizeof(batch) && filled < len; i++) {
            if (batch[i] < CRYPTO_BASE62_LIMIT) {
                out[filled++] = alphabet[batch[i] % 62];
            }
        }
    }
    out[len] = '\0';
    crypto_cleanse(batch, sizeof(batch));
    return CPS_OK;
}


void crypto_cleanse(void *p, size_t len) {
    if (p != NULL && len > 0) {
        OPENSSL_cleanse(p, len);
    }
}
