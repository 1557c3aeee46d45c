/*
 * The crypto helpers: HMAC-SHA256 against RFC 4231, constant-time
 * comparison, hex, uniform base62 and secure zeroing.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "crypto.h"
#include "status.h"


static void expect_hmac(const void *key,
                        size_t key_len,
                        const char *data,
                        const char *expected_hex) {
    uint8_t mac[CRYPTO_SHA256_LEN];
    char hex[2 * CRYPTO_SHA256_LEN + 1];

    cr_assert_eq(crypto_hmac_sha256(key, key_len, data, strlen(data), mac),
                 CPS_OK);
    crypto_hex(mac, sizeof(mac), hex);
    cr_assert_str_eq(hex, expected_hex);
}


Test(crypto, hmac_sha256_matches_rfc4231_test_case_1) {
    uint8_t key[20];

    memset(key, 0x0b, sizeof(key));
    expect_hmac(key, sizeof(key), "Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b"
                "881dc200c9833da726e9376c2e32cff7");
}


Test(crypto, hmac_sha256_matches_rfc4231_test_case_2) {
    expect_hmac("Jefe", 4, "what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c7"
                "5a003f089d2739839dec58b964ec3843");
}


Test(crypto, hmac_sha256_hashes_a_key_longer_than_a_block_first) {
    uint8_t key[131];

    memset(key, 0xaa, sizeof(key));
    expect_hmac(key, sizeof(key),
                "Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f"
                "8e0bc6213728c5140546040f0ee37f54");
}


Test(crypto, equal_tells_equal_from_different_buffers) {
    uint8_t a[32];
    uint8_t b[32];

    memset(a, 0x5a, sizeof(a));
    memcpy(b, a, sizeof(b));
    cr_assert(crypto_equal(a, b, sizeof(a)));

    b[31] ^= 1;
    cr_assert_not(crypto_equal(a, b, sizeof(a)));
    b[31] ^= 1;
    b[0] ^= 0x80;
    cr_assert_not(crypto_equal(a, b, sizeof(a)));
}


Test(crypto, hex_is_lower_case_two_digits_per_byte) {
    const uint8_t in[] = {0x00, 0x0f, 0xa5, 0xff};
    char out[2 * sizeof(in) + 1];

    crypto_hex(in, sizeof(in), out);
    cr_assert_str_eq(out, "000fa5ff");
}


Test(crypto, random_bytes_are_not_repeated) {
    uint8_t a[32];
    uint8_t b[32];

    cr_assert_eq(crypto_random_bytes(a, sizeof(a)), CPS_OK);
    cr_assert_eq(crypto_random_bytes(b, sizeof(b)), CPS_OK);
    cr_assert(memcmp(a, b, sizeof(a)) != 0);
}


Test(crypto, base62_has_the_asked_length_and_only_alphabet_chars) {
    char out[45];

    memset(out, 'x', sizeof(out));
    cr_assert_eq(crypto_random_base62(out, 44), CPS_OK);
    cr_assert_eq(strlen(out), 44);
    cr_assert_eq(strspn(out, CRYPTO_BASE62_ALPHABET), 44);
}


Test(crypto, base62_of_length_zero_is_empty) {
    char out[1] = {'x'};

    cr_assert_eq(crypto_random_base62(out, 0), CPS_OK);
    cr_assert_str_eq(out, "");
}


/*
 * Uniformity: 62 * 10000 characters, each expected 10000 times with a
 * standard deviation near 100. A bound of +-1000 never trips by chance,
 * yet catches the modulo bias of "byte % 62", which would give the first
 * eight characters about 12500 each.
 */
Test(crypto, base62_draws_every_character_equally_often) {
    enum { PER_CHAR = 10000, TOTAL = 62 * PER_CHAR, CHUNK = 1000 };
    static const char alphabet[] = CRYPTO_BASE62_ALPHABET;
    unsigned counts[62] = {0};
    char chunk[CHUNK + 1];

    for (int done = 0; done < TOTAL; done += CHUNK) {
        cr_assert_eq(crypto_random_base62(chunk, CHUNK), CPS_OK);
        for (int i = 0; i < CHUNK; i++) {
            const char *at = strchr(alphabet, chunk[i]);

            cr_assert_not_null(at);
            counts[at - alphabet]++;
        }
    }
    for (int c = 0; c < 62; c++) {
        cr_assert(counts[c] > PER_CHAR - 1000 && counts[c] < PER_CHAR + 1000,
                  "'%c' drawn %u times out of %d", alphabet[c], counts[c],
                  TOTAL);
    }
}


Test(crypto, cleanse_zeroes_the_buffer) {
    char buf[16];

    memset(buf, 'k', sizeof(buf));
    crypto_cleanse(buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++) {
        cr_assert_eq(buf[i], 0);
    }
}
