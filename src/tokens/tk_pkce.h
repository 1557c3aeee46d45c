/*
 * PKCE with the S256 method (RFC 7636): the challenge bound at issue is
 * BASE64URL(SHA-256(code_verifier)) without padding, 43 characters; a
 * consume proves the binding by presenting the verifier.
 */
#ifndef CPSTORE_TK_PKCE_H
#define CPSTORE_TK_PKCE_H

#include <stddef.h>

#define TK_PKCE_CHALLENGE_LEN 43 /* base64url of 32 bytes, no padding */
#define TK_PKCE_VERIFIER_MIN  43 /* RFC 7636 section 4.1 */
#define TK_PKCE_VERIFIER_MAX  128

/* 1 when s is exactly TK_PKCE_CHALLENGE_LEN characters of the base64url
 * alphabet whose last one carries no stray bits, else 0. */
int tk_pkce_challenge_valid(const char *s);

/* 1 when verifier is 43..128 characters of [A-Za-z0-9-._~] (RFC 7636
 * section 4.1), else 0. */
int tk_pkce_verifier_valid(const char *verifier);

/* Write BASE64URL(SHA-256(verifier)) and a NUL into out, which holds
 * TK_PKCE_CHALLENGE_LEN + 1 chars. CPS_OK or CPS_INTERNAL. */
int tk_pkce_challenge(const char *verifier, size_t len, char *out);

/* 1 when verifier is well-formed and its challenge equals challenge,
 * compared in constant time; else 0. */
int tk_pkce_matches(const char *verifier, const char *challenge);

#endif
