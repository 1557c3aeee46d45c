/*
 * Walks the protobuf wire format with the message descriptor: varints and
 * fixed-width fields are skipped, length-delimited fields are looked up by
 * number, strings are searched for NUL, and sub-messages are walked in turn
 * up to a small depth (cpstore's messages nest two levels at most).
 */
#include "wirecheck.h"

#include <string.h>

#define WIRECHECK_MAX_DEPTH 8


/* Read a varint; 0 on truncation or overlong encoding. */
static int
wirecheck_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    uint64_t v = 0;

    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end) {
            return 0;
        }
        v |= (uint64_t)(**p & 0x7f) << shift;
        if ((*(*p)++ & 0x80) == 0) {
            *out = v;
            return 1;
        }
    }
    return 0;
}


static int wirecheck_walk(const ProtobufCMessageDescriptor *desc,
                          const uint8_t *p,
                          const uint8_t *end,
                          int depth) {
    while (p < end) {
        const ProtobufCFieldDescriptor *field;
        uint64_t tag;
        uint64_t n;

        if (!wirecheck_varint(&p, end, &tag)) {
            return 1;
        }
        switch (tag & 7) {
        case 0:
            if (!wirecheck_varint(&p, end, &n)) {
                return 1;
            }
            break;
        case 1:
            if (end - p < 8) {
                return 1;
            }
            p += 8;
            break;
        case 5:
            if (end - p < 4) {
                return 1;
            }
            p += 4;
            break;
        case 2:
            if (!wirecheck_varint(&p, end, &n) || n > (uint64_t)(end - p)) {
                return 1;
            }
            field = tag >> 3 <= UINT32_MAX
                        ? protobuf_c_message_descriptor_get_field(
                              desc, (unsigned)(tag >> 3))
                        : NULL;
            if (field != NULL && field->type == PROTOBUF_C_TYPE_STRING &&
                memchr(p, 0, (size_t)n) != NULL) {
                return 0;
            }
            if (field != NULL && field->type == PROTOBUF_C_TYPE_MESSAGE &&
                depth < WIRECHECK_MAX_DEPTH &&
                !wirecheck_walk(field->descriptor, p, p + n, depth + 1)) {
                return 0;
            }
            p += n;
            break;
        default:
            /* Groups and invalid wire types: unpack decides. */
            return 1;
        }
    }
    return 1;
}


int wirecheck_strings(const ProtobufCMessageDescriptor *desc,
                      const uint8_t *buf,
                      size_t len) {
    if (len == 0) {
        return 1;
    }
    return wirecheck_walk(desc, buf, buf + len, 0);
}
