/*
 * PKCE S256 (RFC 7636). The base64url encoding is written out here rather
 * than taken from OpenSSL's EVP_EncodeBlock, which emits the standard
 * alphabet with padding and would need rewriting afterwards anyway.
 */
#include "tk_pkce.h"

#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "crypto.h"
#include "status.h"

static const char tk_pkce_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


/* The 6-bit value of a base64url character, or -1. */
static int tk_pkce_value(char c) {
    const char *p;

    if (c == '\0') {
        return -1;
    }
    p = strchr(tk_pkce_alphabet, c);
    return p == NULL ? -1 : (int)(p - tk_pkce_alphabet);
}


int tk_pkce_challenge_valid(const char *s) {
    int last;

    if (s == NULL || strlen(s) != TK_PKCE_CHALLENGE_LEN) {
        return 0;
    }
    for (size_t i = 0; i < TK_PKCE_CHALLENGE_LEN; i++) {
        if (tk_pkce_value(s[i]) < 0) {
            return 0;
        }
    }
    /* 43 characters carry 258 bits for 256: the last two must be 0. */
    last = tk_pkce_value(s[TK_PKCE_CHALLENGE_LEN - 1]);
    return (last & 0x3) == 0;
}


int tk_pkce_verifier_valid(const char *verifier) {
    size_t len;

    if (verifier == NULL) {
        return 0;
    }
    len = strlen(verifier);
    if (len < TK_PKCE_VERIFIER_MIN || len > TK_PKCE_VERIFIER_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = verifier[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                 (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                 c == '~';

        if (!ok) {
            return 0;
        }
    }
    return 1;
}


/* base64url without padding of in[0..len) into out (4 * len / 3 rounded
 * up, plus a NUL). */
static void tk_pkce_base64url(const uint8_t *in, size_t len, char *out) {
    size_t o = 0;
    size_t i = 0;

    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
                     (uint32_t)in[i + 2];

        out[o++] = tk_pkce_alphabet[(v >> 18) & 0x3f];
        out[o++] = tk_pkce_alphabet[(v >> 12) & 0x3f];
        out[o++] = tk_pkce_alphabet[(v >> 6) & 0x3f];
        out[o++] = tk_pkce_alphabet[v & 0x3f];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        out[o++] = tk_pkce_alphabet[(v >> 18) & 0x3f];
        out[o++] = tk_pkce_alphabet[(v >> 12) & 0x3f];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

        out[o++] = tk_pkce_alphabet[(v >> 18) & 0x3f];
        out[o++] = tk_pkce_alphabet[(v >> 12) & 0x3f];
        out[o++] = tk_pkce_alphabet[(v >> 6) & 0x3f];
    }
    out[o] = '\0';
}


int tk_pkce_challenge(const char *verifier, size_t len, char *out) {
    uint8_t digest[CRYPTO_SHA256_LEN];
    unsigned int digest_len = 0;

    out[0] = '\0';
    if (EVP_Digest(verifier, len, digest, &digest_len, EVP_sha256(), NULL) !=
            1 ||
        digest_len != CRYPTO_SHA256_LEN) {
        return CPS_INTERNAL;
    }
    tk_pkce_base64url(digest, sizeof(digest), out);
    crypto_cleanse(digest, sizeof(digest));
    return CPS_OK;
}


int tk_pkce_matches(const char *verifier, const char *challenge) {
    char computed[TK_PKCE_CHALLENGE_LEN + 1];
    int equal;

    if (!tk_pkce_verifier_valid(verifier) ||
        !tk_pkce_challenge_valid(challenge) ||
        tk_pkce_challenge(verifier, strlen(verifier), computed) != CPS_OK) {
        return 0;
    }
    equal = crypto_equal(computed, challenge, TK_PKCE_CHALLENGE_LEN);
    crypto_cleanse(computed, sizeof(computed));
    return equal;
}
