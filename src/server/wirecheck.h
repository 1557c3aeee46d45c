/*
 * A check on request payloads that protobuf-c cannot make: a string field
 * with an embedded NUL byte. protobuf-c hands strings over as C strings, so
 * "victim\0suffix" would silently read as "victim" and act on another
 * user's data. The server refuses such requests before unpacking them.
 */
#ifndef CPSTORE_WIRECHECK_H
#define CPSTORE_WIRECHECK_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/*
 * 0 when some string field of the message (at any nesting depth the
 * descriptor knows) holds a NUL byte; 1 otherwise, including for bytes that
 * do not parse, which protobuf-c's own unpack then refuses.
 */
int wirecheck_strings(const ProtobufCMessageDescriptor *desc,
                      const uint8_t *buf,
                      size_t len);

#endif
