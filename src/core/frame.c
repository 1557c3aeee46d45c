/*
 * Frame codec. See frame.h for the byte layout.
 *
 * The decoder keeps the header in a fixed array and allocates the payload
 * buffer only after the header has been validated, so a peer can make it
 * allocate at most max_payload bytes per connection, whatever it sends. The
 * payload buffer is reused from frame to frame and shrunk back when a large
 * frame has passed, so one big request does not pin memory for the life of
 * the connection.
 */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

/* A payload buffer above this size is released after its frame. */
#define FRAME_KEEP_CAP (64u * 1024)


static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}


static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}


static uint16_t get16(const uint8_t *p) {
    return (uint16_t)((p[0] << 8) | p[1]);
}


static uint32_t get32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}


const char *frame_strerror(int result) {
    switch (result) {
    case FRAME_OK:
        return "ok";
    case FRAME_NEED_MORE:
        return "incomplete frame";
    case FRAME_E_MAGIC:
        return "bad magic";
    case FRAME_E_VERSION:
        return "unsupported protocol version";
    case FRAME_E_TYPE:
        return "unknown frame type";
    case FRAME_E_FLAGS:
        return "unknown flag bits set";
    case FRAME_E_RESERVED:
        return "reserved header bytes not zero";
    case FRAME_E_TOO_LARGE:
        return "payload length above the maximum";
    case FRAME_E_NOMEM:
        return "out of memory";
    default:
        return "unknown frame error";
    }
}


const char *frame_type_name(int type) {
    static const char *const names[] = {
        "unknown", "request", "response", "cancel",    "ping",
        "pong",    "goaway",  "hello",    "hello_ack",
    };

    if (type < FRAME_REQUEST || type > FRAME_HELLO_ACK) {
        return names[0];
    }
    return names[type];
}


void frame_encode_header(const frame_header_t *hdr,
                         uint8_t out[FRAME_HEADER_SIZE]) {
    out[0] = FRAME_MAGIC0;
    out[1] = FRAME_MAGIC1;
    out[2] = hdr->version ? hdr->version : FRAME_VERSION;
    out[3] = hdr->type;
    put16(out + 4, hdr->flags);
    put16(out + 6, hdr->method);
    put32(out + 8, hdr->request_id);
    put32(out + 12, hdr->budget_ms);
    put32(out + 16, hdr->length);
    out[20] = hdr->status;
    out[21] = 0;
    out[22] = 0;
    out[23] = 0;
}


int frame_decode_header(const uint8_t in[FRAME_HEADER_SIZE],
                        uint32_t max_payload,
                        frame_header_t *hdr) {
    if (in[0] != FRAME_MAGIC0 || in[1] != FRAME_MAGIC1) {
        return FRAME_E_MAGIC;
    }
    if (in[2] != FRAME_VERSION) {
        return FRAME_E_VERSION;
    }
    if (in[3] < FRAME_REQUEST || in[3] > FRAME_HELLO_ACK) {
        return FRAME_E_TYPE;
    }
    if (get16(in + 4) != 0) {
        return FRAME_E_FLAGS;
    }
    if (in[21] != 0 || in[22] != 0 || in[23] != 0) {
        return FRAME_E_RESERVED;
    }

    hdr->version = in[2];
    hdr->type = in[3];
    hdr->flags = 0;
    hdr->method = get16(in + 6);
    hdr->request_id = get32(in + 8);
    hdr->budget_ms = get32(in + 12);
    hdr->length = get32(in + 16);
    hdr->status = in[20];

    if (hdr->length > max_payload) {
        return FRAME_E_TOO_LARGE;
    }
    return FRAME_OK;
}


void frame_decoder_init(frame_decoder_t *dec, uint32_t max_payload) {
    memset(dec, 0, sizeof(*dec));
    if (max_payload > FRAME_HARD_MAX_PAYLOAD) {
        max_payload = FRAME_HARD_MAX_PAYLOAD;
    }
    dec->max_payload = max_payload;
}


void frame_decoder_free(frame_decoder_t *dec) {
    free(dec->payload);
    dec->payload = NULL;
    dec->payload_cap = 0;
}


/* Forget the frame just returned; release an outsized payload buffer. */
static void frame_decoder_reset(frame_decoder_t *dec) {
    dec->header_len = 0;
    dec->payload_len = 0;
    dec->done = 0;
    if (dec->payload_cap > FRAME_KEEP_CAP) {
        frame_decoder_free(dec);
    }
}


/* Make room for the payload announced by a validated header. */
static int frame_decoder_reserve(frame_decoder_t *dec, size_t len) {
    uint8_t *p;

    if (len <= dec->payload_cap) {
        return FRAME_OK;
    }
    p = realloc(dec->payload, len);
    if (p == NULL) {
        return FRAME_E_NOMEM;
    }
    dec->payload = p;
    dec->payload_cap = len;
    return FRAME_OK;
}


int frame_decoder_feed(frame_decoder_t *dec,
                       const uint8_t *in,
                       size_t len,
                       size_t *consumed,
                       frame_header_t *hdr,
                       const uint8_t **payload) {
    size_t used = 0;
    size_t take;
    int rc;

    if (dec->done) {
        frame_decoder_reset(dec);
    }

    if (dec->header_len < FRAME_HEADER_SIZE) {
        take = FRAME_HEADER_SIZE - dec->header_len;
        if (take > len) {
            take = len;
        }
        memcpy(dec->header_buf + dec->header_len, in, take);
        dec->header_len += take;
        used += take;

        /* Fail on the first wrong magic byte, before a whole header. */
        if ((dec->header_len > 0 && dec->header_buf[0] != FRAME_MAGIC0) ||
            (dec->header_len > 1 && dec->header_buf[1] != FRAME_MAGIC1)) {
            *consumed = used;
            return FRAME_E_MAGIC;
        }
        if (dec->header_len < FRAME_HEADER_SIZE) {
            *consumed = used;
            return FRAME_NEED_MORE;
        }

        rc = frame_decode_header(dec->header_buf, dec->max_payload,
                                 &dec->header);
        if (rc == FRAME_OK) {
            rc = frame_decoder_reserve(dec, dec->header.length);
        }
        if (rc != FRAME_OK) {
            *consumed = used;
            return rc;
        }
    }

    take = dec->header.length - dec->payload_len;
    if (take > len - used) {
        take = len - used;
    }
    if (take > 0) {
        memcpy(dec->payload + dec->payload_len, in + used, take);
        dec->payload_len += take;
        used += take;
    }
    *consumed = used;

    if (dec->payload_len < dec->header.length) {
        return FRAME_NEED_MORE;
    }

    dec->done = 1;
    *hdr = dec->header;
    *payload = dec->payload;
    return FRAME_OK;
}


uint8_t *
frame_encode(const frame_header_t *hdr, const uint8_t *payload, size_t len) {
    frame_header_t h = *hdr;
    uint8_t *out;

    out = malloc(FRAME_HEADER_SIZE + (len ? len : 1));
    if (out == NULL) {
        return NULL;
    }
    h.length = (uint32_t)len;
    frame_encode_header(&h, out);
    if (len > 0) {
        memcpy(out + FRAME_HEADER_SIZE, payload, len);
    }
    return out;
}
