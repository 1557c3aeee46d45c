/*
 * One RPC in flight, as the services see it.
 *
 * The server creates a call for each REQUEST frame and hands it to the
 * method's handler with the request payload. The handler, now or later,
 * finishes the call exactly once with call_reply() or call_fail(). Between
 * the two the call may lose its audience: the deadline passes (the server
 * has then already answered DEADLINE_EXCEEDED), the client cancels, or the
 * connection closes. Finishing such a call is still required, and simply
 * drops the result; call_wanted() lets long work stop early.
 */
#ifndef CPSTORE_CALL_H
#define CPSTORE_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "server.h"

typedef struct call call_t;

/* The backends and worker pool of the server that owns the call. */
const srv_backends_t *call_backends(const call_t *call);

uint32_t call_request_id(const call_t *call);

/* Absolute deadline on clock_mono_ms(). Every call has one. */
int64_t call_deadline(const call_t *call);

/* Milliseconds left before the deadline, at least 1. */
uint32_t call_remaining_ms(const call_t *call);

/* False once nobody waits for the answer any more. */
bool call_wanted(const call_t *call);

/* Finish with an OK response carrying msg (packed here; not retained). */
void call_reply(call_t *call, const ProtobufCMessage *msg);

/* Finish with an error: a cpstore.v1.Error payload with code and message. */
void call_fail(call_t *call, int code, const char *message);

/* A handler for one method. payload is valid only during the call. */
typedef void (*call_handler_t)(call_t *call,
                               const uint8_t *payload,
                               size_t len);

/* The method's name ("ApiKeys.Create"), for logs. */
const char *call_method_name(const call_t *call);

/* The services (svc_*.c), one handler per method. */
void svc_health_check(call_t *call, const uint8_t *payload, size_t len);
void svc_ratelimit_check(call_t *call, const uint8_t *payload, size_t len);
void svc_ratelimit_check_many(call_t *call, const uint8_t *payload, size_t len);
void svc_apikeys_create(call_t *call, const uint8_t *payload, size_t len);
void svc_apikeys_verify(call_t *call, const uint8_t *payload, size_t len);
void svc_apikeys_get(call_t *call, const uint8_t *payload, size_t len);
void svc_apikeys_list(call_t *call, const uint8_t *payload, size_t len);
void svc_apikeys_revoke(call_t *call, const uint8_t *payload, size_t len);
void svc_apikeys_rotate(call_t *call, const uint8_t *payload, size_t len);
void svc_tokens_issue(call_t *call, const uint8_t *payload, size_t len);
void svc_tokens_consume(call_t *call, const uint8_t *payload, size_t len);
void svc_tokens_revoke(call_t *call, const uint8_t *payload, size_t len);
void svc_sessions_create(call_t *call, const uint8_t *payload, size_t len);
void svc_sessions_validate(call_t *call, const uint8_t *payload, size_t len);
void svc_sessions_revoke(call_t *call, const uint8_t *payload, size_t len);
void svc_sessions_revoke_all(call_t *call, const uint8_t *payload, size_t len);
void svc_sessions_list(call_t *call, const uint8_t *payload, size_t len);

#endif
