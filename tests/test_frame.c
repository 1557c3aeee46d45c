/*
 * The frame codec on its own: bytes in, frames or errors out, no socket.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define MAX_PAYLOAD 4096


static size_t make_frame(uint8_t *out,
                         uint8_t type,
                         uint32_t request_id,
                         const char *payload) {
    frame_header_t h = {0};
    size_t len = strlen(payload);

    h.type = type;
    h.method = 0x0201;
    h.request_id = request_id;
    h.budget_ms = 250;
    h.length = (uint32_t)len;
    h.status = 0;
    frame_encode_header(&h, out);
    memcpy(out + FRAME_HEADER_SIZE, payload, len);
    return FRAME_HEADER_SIZE + len;
}


/* Feed all of in, collecting the first frame; returns the last result. */
static int feed_all(frame_decoder_t *dec,
                    const uint8_t *in,
                    size_t len,
                    frame_header_t *hdr,
                    const uint8_t **payload) {
    size_t off = 0;
    int rc = FRAME_NEED_MORE;

    while (off < len) {
        size_t used = 0;

        rc = frame_decoder_feed(dec, in + off, len - off, &used, hdr, payload);
        off += used;
        if (rc != FRAME_NEED_MORE) {
            break;
        }
    }
    return rc;
}


Test(frame, header_round_trips_every_field) {
    frame_header_t in = {0}, out;
    uint8_t buf[FRAME_HEADER_SIZE];

    in.type = FRAME_RESPONSE;
    in.method = 0xBEEF;
    in.request_id = 0xDEADBEEF;
    in.budget_ms = 123456;
    in.length = 77;
    in.status = 14;
    frame_encode_header(&in, buf);

    cr_assert_eq(buf[0], FRAME_MAGIC0);
    cr_assert_eq(buf[1], FRAME_MAGIC1);
    cr_assert_eq(frame_decode_header(buf, MAX_PAYLOAD, &out), FRAME_OK);
    cr_assert_eq(out.version, FRAME_VERSION);
    cr_assert_eq(out.type, FRAME_RESPONSE);
    cr_assert_eq(out.method, 0xBEEF);
    cr_assert_eq(out.request_id, 0xDEADBEEF);
    cr_assert_eq(out.budget_ms, 123456);
    cr_assert_eq(out.length, 77);
    cr_assert_eq(out.status, 14);
}


Test(frame, header_is_big_endian_as_documented) {
    frame_header_t h = {0};
    uint8_t buf[FRAME_HEADER_SIZE];
    const uint8_t want[FRAME_HEADER_SIZE] = {
        0xC5, 0x70, 0x01, 0x01, 0x00, 0x00, 0x02, 0x01, 0x00, 0x00, 0x00, 0x07,
        0x00, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00,
    };

    h.type = FRAME_REQUEST;
    h.method = 0x0201;
    h.request_id = 7;
    h.budget_ms = 1000;
    h.length = 5;
    frame_encode_header(&h, buf);
    cr_assert_arr_eq(buf, want, sizeof(want));
}


Test(frame, decoder_returns_a_whole_frame) {
    uint8_t buf[128];
    size_t len = make_frame(buf, FRAME_REQUEST, 42, "hello");
    frame_decoder_t dec;
    frame_header_t hdr;
    const uint8_t *payload = NULL;

    frame_decoder_init(&dec, MAX_PAYLOAD);
    cr_assert_eq(feed_all(&dec, buf, len, &hdr, &payload), FRAME_OK);
    cr_assert_eq(hdr.request_id, 42);
    cr_assert_eq(hdr.length, 5);
    cr_assert_eq(hdr.budget_ms, 250);
    cr_assert_arr_eq(payload, "hello", 5);
    frame_decoder_free(&dec);
}


Test(frame, truncated_input_waits_for_the_rest) {
    uint8_t buf[128];
    size_t len = make_frame(buf, FRAME_REQUEST, 9, "payload");
    frame_decoder_t dec;
    frame_header_t hdr;
    const uint8_t *payload = NULL;
    size_t used = 0;

    frame_decoder_init(&dec, MAX_PAYLOAD);
    /* Half a header, then the header and part of the payload. */
    cr_assert_eq(frame_decoder_feed(&dec, buf, 10, &used, &hdr, &payload),
                 FRAME_NEED_MORE);
    cr_assert_eq(used, 10);
    cr_assert_eq(
        frame_decoder_feed(&dec, buf + 10, len - 11, &used, &hdr, &payload),
        FRAME_NEED_MORE);
    cr_assert_eq(used, len - 11);
    cr_assert_eq(
        frame_decoder_feed(&dec, buf + len - 1, 1, &used, &hdr, &payload),
        FRAME_OK);
    cr_assert_arr_eq(payload, "payload", 7);
    frame_decoder_free(&dec);
}


Test(frame, byte_by_byte_input_yields_one_frame) {
    uint8_t buf[128];
    size_t len = make_frame(buf, FRAME_PING, 0, "abc");
    frame_decoder_t dec;
    frame_header_t hdr;
    const uint8_t *payload = NULL;
    int frames = 0;

    frame_decoder_init(&dec, MAX_PAYLOAD);
    for (size_t i = 0; i < len; i++) {
        size_t used = 0;
        int rc = frame_decoder_feed(&dec, buf + i, 1, &used, &hdr, &payload);

        cr_assert_eq(used, 1);
        if (rc == FRAME_OK) {
            frames++;
            cr_assert_eq(i, len - 1, "frame completed early at byte %zu", i);
        } else {
            cr_assert_eq(rc, FRAME_NEED_MORE);
        }
    }
    cr_assert_eq(frames, 1);
    cr_assert_eq(hdr.type, FRAME_PING);
    frame_decoder_free(&dec);
}


Test(frame, consecutive_frames_come_out_in_order) {
    uint8_t buf[512];
    size_t len = 0;
    frame_decoder_t dec;
    frame_header_t hdr;
    const uint8_t *payload;
    size_t off = 0;
    uint32_t next = 1;

    len += make_frame(buf + len, FRAME_REQUEST, 1, "one");
    len += make_frame(buf + len, FRAME_REQUEST, 2, "");
    len += make_frame(buf + len, FRAME_REQUEST, 3, "three");

    frame_decoder_init(&dec, MAX_PAYLOAD);
    while (off < len) {
        size_t used = 0;
        int rc = frame_decoder_feed(&dec, buf + off, len - off, &used, &hdr,
                                    &payload);

        off += used;
        cr_assert_eq(rc, FRAME_OK);
        cr_assert_eq(hdr.request_id, next++);
    }
    cr_assert_eq(next, 4);
    frame_decoder_free(&dec);
}


Test(frame, bad_magic_fails_on_the_first_byte) {
    const uint8_t http[] = "GET / HTTP/1.1\r\n";
    const uint8_t tls[] = {0x16, 0x03, 0x01, 0x00};
    frame_decoder_t dec;
    frame_header_t hdr;
    const uint8_t *payload;
    size_t used = 0;

    frame_decoder_init(&dec, MAX_PAYLOAD);
    cr_assert_eq(
        frame_decoder_feed(&dec, http, sizeof(http) - 1, &used, &hdr, &payload),
        FRAME_E_MAGIC);
    frame_decoder_free(&dec);

    frame_decoder_init(&dec, MAX_PAYLOAD);
    cr_assert_eq(frame_decoder_feed(&dec, tls, 1, &used, &hdr, &payload),
                 FRAME_E_MAGIC);
    frame_decoder_free(&dec);
}


Test(frame, bad_version_type_flags_and_reserved_are_errors) {
    uint8_t buf[64];
    frame_header_t hdr;

    make_frame(buf, FRAME_REQUEST, 1, "");
    buf[2] = 2;
    cr_assert_eq(frame_decode_header(buf, MAX_PAYLOAD, &hdr), FRAME_E_VERSION);

    make_frame(buf, FRAME_REQUEST, 1, "");
    buf[3] = 0;
    cr_assert_eq(frame_decode_header(buf, MAX_PAYLOAD, &hdr), FRAME_E_TYPE);
    buf[3] = 9;
    cr_assert_eq(frame_decode_header(buf, MAX_PAYLOAD, &hdr), FRAME_E_TYPE);

    make_frame(buf, FRAME_REQUEST, 1, "");
    buf[5] = 0x01;
    cr_assert_eq(frame_decode_header(buf, MAX_PAYLOAD, &hdr), FRAME_E_FLAGS);

    make_frame(buf, FRAME_REQUEST, 1, "");
    buf[23] = 0x01;
    cr_assert_eq(frame_decode_header(buf, MAX_PAYLOAD, &hdr), FRAME_E_RESERVED);
}


Test(frame, oversized_length_is_rejected_before_allocation) {
    uint8_t buf[FRAME_HEADER_SIZE];
    frame_header_t h = {0};
    frame_decoder_t dec;
    frame_header_t hdr;
    const uint8_t *payload;
    size_t used = 0;

    h.type = FRAME_REQUEST;
    h.request_id = 1;
    h.length = 0xFFFFFFFFu;
    frame_encode_header(&h, buf);

    frame_decoder_init(&dec, MAX_PAYLOAD);
    cr_assert_eq(
        frame_decoder_feed(&dec, buf, sizeof(buf), &used, &hdr, &payload),
        FRAME_E_TOO_LARGE);
    cr_assert_null(dec.payload);
    cr_assert_eq(dec.payload_cap, 0);
    frame_decoder_free(&dec);

    /* One byte over the limit is refused; exactly the limit is not. */
    h.length = MAX_PAYLOAD + 1;
    frame_encode_header(&h, buf);
    cr_assert_eq(frame_decode_header(buf, MAX_PAYLOAD, &hdr),
                 FRAME_E_TOO_LARGE);
    h.length = MAX_PAYLOAD;
    frame_encode_header(&h, buf);
    cr_assert_eq(frame_decode_header(buf, MAX_PAYLOAD, &hdr), FRAME_OK);
}


Test(frame, decoder_caps_its_limit_at_the_hard_maximum) {
    frame_decoder_t dec;

    frame_decoder_init(&dec, 0xFFFFFFFFu);
    cr_assert_eq(dec.max_payload, FRAME_HARD_MAX_PAYLOAD);
    frame_decoder_free(&dec);
}


Test(frame, large_payload_buffer_is_released_after_its_frame) {
    size_t big = 200 * 1024;
    uint8_t *buf = calloc(1, FRAME_HEADER_SIZE + big);
    uint8_t small[64];
    size_t small_len = make_frame(small, FRAME_REQUEST, 2, "x");
    frame_header_t h = {0}, hdr;
    frame_decoder_t dec;
    const uint8_t *payload;

    h.type = FRAME_REQUEST;
    h.request_id = 1;
    h.length = (uint32_t)big;
    frame_encode_header(&h, buf);

    frame_decoder_init(&dec, 1u << 20);
    cr_assert_eq(feed_all(&dec, buf, FRAME_HEADER_SIZE + big, &hdr, &payload),
                 FRAME_OK);
    cr_assert_geq(dec.payload_cap, big);
    cr_assert_eq(feed_all(&dec, small, small_len, &hdr, &payload), FRAME_OK);
    cr_assert_lt(dec.payload_cap, big);
    frame_decoder_free(&dec);
    free(buf);
}


/*
 * Random bytes, and random mutations of valid frames, in random slices:
 * the decoder must only ever report a frame, ask for more or fail, and
 * never hold more than the maximum payload.
 */
Test(frame, random_garbage_never_breaks_the_decoder) {
    uint8_t buf[2048];
    unsigned seed = 12345;

    for (int round = 0; round < 20000; round++) {
        frame_decoder_t dec;
        size_t len = (size_t)(rand_r(&seed) % sizeof(buf));
        size_t off = 0;

        if (round % 2 == 0) {
            for (size_t i = 0; i < len; i++) {
                buf[i] = (uint8_t)rand_r(&seed);
            }
        } else {
            len = make_frame(buf, FRAME_REQUEST, (uint32_t)round, "abcdef");
            buf[rand_r(&seed) % len] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
        }

        frame_decoder_init(&dec, 512);
        while (off < len) {
            frame_header_t hdr;
            const uint8_t *payload;
            size_t used = 0;
            size_t slice = 1 + (size_t)rand_r(&seed) % (len - off);
            int rc = frame_decoder_feed(&dec, buf + off, slice, &used, &hdr,
                                        &payload);

            cr_assert_leq(used, slice);
            cr_assert_leq(dec.payload_cap, 512);
            off += used;
            if (rc < 0) {
                cr_assert_geq(rc, FRAME_E_NOMEM);
                break;
            }
            if (rc == FRAME_OK) {
                cr_assert_leq(hdr.length, 512);
            }
        }
        frame_decoder_free(&dec);
    }
}


Test(frame, whole_frame_encode_matches_header_and_payload) {
    frame_header_t h = {0}, out;
    uint8_t *buf;

    h.type = FRAME_PONG;
    buf = frame_encode(&h, (const uint8_t *)"xyz", 3);
    cr_assert_not_null(buf);
    cr_assert_eq(frame_decode_header(buf, MAX_PAYLOAD, &out), FRAME_OK);
    cr_assert_eq(out.length, 3);
    cr_assert_arr_eq(buf + FRAME_HEADER_SIZE, "xyz", 3);
    free(buf);
}
