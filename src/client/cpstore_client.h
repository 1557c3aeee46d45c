/*
 * libcpstore: a small blocking and pipelined C client for cpstored, on the
 * nanopb-generated messages.
 *
 * One cpc_t is one connection; it is not thread-safe. Blocking use:
 * cpc_call() sends one request and waits for its response. Pipelined use:
 * cpc_send() any number of requests, then cpc_recv() responses in the order
 * the server completes them, matched by request id.
 *
 * Errors: functions return CPC_OK (0) or a negative CPC_E_* transport
 * error, with a readable reason in cpc_last_error(). An RPC that reached the
 * server and failed there is not a transport error: the call returns CPC_OK
 * and the reply's status is the gRPC code, with the server's Error decoded.
 */
#ifndef CPSTORE_CLIENT_H
#define CPSTORE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <pb.h>

#include "cpstore/v1/common.pb.h"
#include "cpstore/v1/health.pb.h"
#include "cpstore/v1/ratelimit.pb.h"
#include "cpstore/v1/apikeys.pb.h"
#include "cpstore/v1/sessions.pb.h"
#include "cpstore/v1/tokens.pb.h"

enum {
    CPC_OK = 0,
    CPC_E_CONNECT = -1,  /* could not resolve or connect */
    CPC_E_IO = -2,       /* read or write failed, or peer closed */
    CPC_E_TIMEOUT = -3,  /* no response within the timeout */
    CPC_E_PROTOCOL = -4, /* the peer broke the protocol, or sent GOAWAY */
    CPC_E_ENCODE = -5,   /* request did not fit its nanopb bounds */
    CPC_E_DECODE = -6,   /* response payload did not decode */
    CPC_E_NOMEM = -7,
    CPC_E_ARG = -8,
};

typedef struct cpc cpc_t;

/* addr is "host:port" (IPv4, IPv6 in brackets, or a name) or "unix:/path".
 * timeout_ms bounds connect and each later wait (0: 5000). NULL on failure,
 * with a reason written into err. */
cpc_t *cpc_connect(const char *addr, int timeout_ms, char *err, size_t err_len);
void cpc_close(cpc_t *c);
const char *cpc_last_error(const cpc_t *c);

/* Deadline budget sent with each request (frame header offset 12); 0 for
 * none. Default 0. */
void cpc_set_budget(cpc_t *c, uint32_t budget_ms);

/* One response as received. payload is valid until the next cpc_recv() or
 * cpc_call() on the same connection. */
typedef struct cpc_reply {
    uint32_t request_id;
    uint16_t method;
    uint8_t status;          /* gRPC code; 0 = OK */
    uint32_t retry_after_ms; /* header hint */
    const uint8_t *payload;
    size_t payload_len;
    cpstore_v1_Error error; /* decoded when status != 0 */
} cpc_reply_t;

/* Encode msg with fields and send it as a REQUEST; *request_id receives the
 * id chosen (increasing from 1). */
int cpc_send(cpc_t *c,
             uint16_t method,
             const pb_msgdesc_t *fields,
             const void *msg,
             uint32_t *request_id);

/* Send raw payload bytes as a REQUEST (for tests and tools). */
int cpc_send_raw(cpc_t *c,
                 uint16_t method,
                 const uint8_t *payload,
                 size_t len,
                 uint32_t *request_id);

/* Wait for the next RESPONSE frame. PING from the server is answered and
 * skipped; GOAWAY ends the connection with CPC_E_PROTOCOL. */
int cpc_recv(cpc_t *c, cpc_reply_t *reply);

/* Decode an OK reply's payload into msg. */
int cpc_decode(const cpc_reply_t *reply, const pb_msgdesc_t *fields, void *msg);

/* Send one request and wait for its response, decoding it into resp when
 * the status is OK. Responses to other request ids that arrive first are
 * discarded, so do not mix with pipelined sends. */
int cpc_call(cpc_t *c,
             uint16_t method,
             const pb_msgdesc_t *req_fields,
             const void *req,
             const pb_msgdesc_t *resp_fields,
             void *resp,
             cpc_reply_t *reply);

/* HELLO / HELLO_ACK exchange. */
int cpc_hello(cpc_t *c, cpstore_v1_HelloAck *ack);

/* PING and wait for the PONG. */
int cpc_ping(cpc_t *c);

/* Typed wrappers over cpc_call(). */
int cpc_health_check(cpc_t *c,
                     cpstore_v1_HealthCheckResponse *resp,
                     cpc_reply_t *reply);
int cpc_ratelimit_check(cpc_t *c,
                        const cpstore_v1_RateLimitCheckRequest *req,
                        cpstore_v1_RateLimitCheckResponse *resp,
                        cpc_reply_t *reply);
int cpc_apikeys_create(cpc_t *c,
                       const cpstore_v1_CreateApiKeyRequest *req,
                       cpstore_v1_CreateApiKeyResponse *resp,
                       cpc_reply_t *reply);
int cpc_apikeys_verify(cpc_t *c,
                       const cpstore_v1_VerifyApiKeyRequest *req,
                       cpstore_v1_VerifyApiKeyResponse *resp,
                       cpc_reply_t *reply);

#endif
