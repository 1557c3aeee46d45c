/*
 * The cpstore frame codec.
 *
 * Every frame is a fixed 24-byte header followed by a payload. All integers
 * are big-endian.
 *
 *   offset size field
 *   0      2    magic 0xC5 0x70
 *   2      1    version (1)
 *   3      1    frame type (FRAME_REQUEST ... FRAME_HELLO_ACK)
 *   4      2    flags; no flag is defined yet, so every bit must be 0
 *   6      2    method id (REQUEST, echoed in RESPONSE; 0 otherwise)
 *   8      4    request id (0 for connection-level frames)
 *   12     4    REQUEST: the caller's remaining budget in ms (0 = none);
 *               RESPONSE: retry-after hint in ms
 *   16     4    payload length
 *   20     1    status (RESPONSE, GOAWAY): gRPC canonical code, 0 = OK
 *   21     3    reserved, 0
 *
 * The first magic byte, 0xC5, is neither a TLS record type (0x14-0x18) nor
 * printable ASCII, so a TLS or HTTP client wired to the port, or cpstore
 * wired to one, fails on the first byte.
 *
 * The codec is pure: it turns bytes into frames and frames into bytes, and
 * never touches a socket. The decoder checks a header completely, and the
 * payload length against the caller's maximum, before it allocates anything.
 */
#ifndef CPSTORE_FRAME_H
#define CPSTORE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_SIZE 24
#define FRAME_MAGIC0      0xC5
#define FRAME_MAGIC1      0x70
#define FRAME_VERSION     1

/* Default and hard ceiling for the maximum payload size. */
#define FRAME_DEFAULT_MAX_PAYLOAD (1u << 20)
#define FRAME_HARD_MAX_PAYLOAD    (64u << 20)

typedef enum frame_type {
    FRAME_REQUEST = 1,
    FRAME_RESPONSE = 2,
    FRAME_CANCEL = 3,
    FRAME_PING = 4,
    FRAME_PONG = 5,
    FRAME_GOAWAY = 6,
    FRAME_HELLO = 7,
    FRAME_HELLO_ACK = 8,
} frame_type_t;

/* Results of decoding. Negative values are protocol errors. */
typedef enum frame_result {
    FRAME_OK = 0,        /* a whole frame is available */
    FRAME_NEED_MORE = 1, /* input consumed, no frame yet */
    FRAME_E_MAGIC = -1,
    FRAME_E_VERSION = -2,
    FRAME_E_TYPE = -3,
    FRAME_E_FLAGS = -4,
    FRAME_E_RESERVED = -5,
    FRAME_E_TOO_LARGE = -6,
    FRAME_E_NOMEM = -7,
} frame_result_t;

typedef struct frame_header {
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint16_t method;
    uint32_t request_id;
    uint32_t budget_ms; /* retry-after hint in responses */
    uint32_t length;
    uint8_t status;
} frame_header_t;

/* A short lower-case description of a frame_result_t. */
const char *frame_strerror(int result);

/* Name of a frame type ("request"), or "unknown". */
const char *frame_type_name(int type);

/* Write hdr into out[0..23]. */
void frame_encode_header(const frame_header_t *hdr,
                         uint8_t out[FRAME_HEADER_SIZE]);

/*
 * Decode and validate one header from exactly FRAME_HEADER_SIZE bytes.
 * Returns FRAME_OK or a protocol error; the length is checked against
 * max_payload here, before anyone allocates for the payload.
 */
int frame_decode_header(const uint8_t in[FRAME_HEADER_SIZE],
                        uint32_t max_payload,
                        frame_header_t *hdr);

/*
 * An incremental decoder for one byte stream. Feed it whatever arrived;
 * it returns each frame as soon as it is whole. The payload buffer belongs to
 * the decoder and stays valid until the next call to frame_decoder_feed()
 * or frame_decoder_free().
 */
typedef struct frame_decoder {
    uint32_t max_payload;
    uint8_t header_buf[FRAME_HEADER_SIZE];
    size_t header_len;
    frame_header_t header;
    uint8_t *payload;
    size_t payload_len; /* bytes of payload received so far */
    size_t payload_cap;
    int done; /* the last call returned a frame; reset on the next feed */
} frame_decoder_t;

void frame_decoder_init(frame_decoder_t *dec, uint32_t max_payload);
void frame_decoder_free(frame_decoder_t *dec);

/*
 * Consume bytes from in[0..len). Stops after the first whole frame, so the
 * caller loops while *consumed < len. Returns FRAME_OK with *hdr and
 * *payload set, FRAME_NEED_MORE when all of the input was taken without
 * completing a frame, or a protocol error, after which the stream is dead.
 */
int frame_decoder_feed(frame_decoder_t *dec,
                       const uint8_t *in,
                       size_t len,
                       size_t *consumed,
                       frame_header_t *hdr,
                       const uint8_t **payload);

/*
 * Encode a whole frame (header and payload) into a new buffer of
 * FRAME_HEADER_SIZE + len bytes. Caller frees. NULL on allocation failure.
 */
uint8_t *
frame_encode(const frame_header_t *hdr, const uint8_t *payload, size_t len);

#endif
