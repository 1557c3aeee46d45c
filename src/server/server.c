/*
 * Connections, frames and calls.
 *
 * Each connection feeds its bytes to a frame decoder (src/core/frame.c),
 * which validates a header, and its payload length against max_payload,
 * before allocating anything. A REQUEST becomes a call_t handed to the
 * method's handler; responses are written in completion order, matched by
 * request id. A frame that breaks the protocol gets a GOAWAY carrying the
 * reason, and the connection is closed once that GOAWAY is written. A payload
 * that does not decode is the handler's business: INVALID_ARGUMENT, and the
 * connection lives on.
 *
 * Lifetimes. A call is referenced by its handler until the handler finishes
 * it, and by its deadline timer until that timer's close callback has run;
 * it is freed when both are gone. A call is "answered" at most once: by its
 * handler, by the deadline, by CANCEL, or silently when its connection
 * closes. A connection is freed in its close callback, after every call has
 * been detached from it (call->conn = NULL), so a late handler never writes
 * to a dead connection.
 *
 * Back-pressure. libuv queues writes without limit, so a connection stops
 * reading while its write queue is above CONN_HIGH_WATER and resumes when a
 * write completes below CONN_LOW_WATER. In-flight requests per connection
 * are capped too (RESOURCE_EXHAUSTED beyond max_in_flight); a slot is held
 * until the handler finishes, not merely until an answer went out, so a
 * client cannot pile up backend work with tiny deadlines.
 */
#include "server.h"
#include "call.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "frame.h"
#include "log.h"
#include "status.h"
#include "wirecheck.h"

#include "cpstore/v1/apikeys.pb-c.h"
#include "cpstore/v1/common.pb-c.h"
#include "cpstore/v1/health.pb-c.h"
#include "cpstore/v1/ratelimit.pb-c.h"
#include "cpstore/v1/sessions.pb-c.h"
#include "cpstore/v1/tokens.pb-c.h"

#define CONN_READ_CHUNK (64 * 1024)
/* Memory held by unwritten responses, allocations included: many tiny
 * frames cost far more than their bytes. */
#define CONN_HIGH_WATER (1u * 1024 * 1024)
#define CONN_LOW_WATER  (256u * 1024)

typedef struct conn conn_t;

struct srv {
    uv_loop_t *loop;
    srv_config_t cfg;
    srv_backends_t be;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } listener;
    bool is_unix;
    char address[128];
    conn_t *conns; /* doubly linked */
    uint32_t nconns;
    bool draining;
    uv_timer_t drain_timer;
    bool drain_timer_closing;
    void (*on_done)(void *arg);
    void *on_done_arg;
    int closing_handles; /* listener and drain timer, while closing */
    uint32_t live_calls; /* allocated calls, finished or not */
};

struct conn {
    srv_t *srv;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    uv_timer_t timer; /* idle and frame-completion timeouts */
    frame_decoder_t dec;
    char peer[64];
    call_t *calls; /* every call not yet finished by its handler */
    uint32_t in_flight;
    bool reading;
    bool paused;      /* reading stopped by back-pressure */
    bool goaway;      /* GOAWAY sent or received: no more requests */
    bool wait_calls;  /* after GOAWAY, close only once calls are done */
    bool frame_timer; /* the timer runs for a half-received frame */
    bool closing;     /* uv_close started */
    uint32_t writes;  /* uv_write requests not yet called back */
    size_t queued;    /* bytes allocated for those writes */
    int handles;      /* open handles; freed when 0 */
    conn_t *prev;
    conn_t *next;
    uint8_t rbuf[CONN_READ_CHUNK];
};

struct call {
    conn_t *conn; /* NULL once answered or the connection closed */
    srv_t *srv;
    uint32_t request_id;
    uint16_t method;
    int64_t started;
    int64_t deadline;
    uv_timer_t timer;
    bool answered;
    bool finished; /* the handler called call_reply or call_fail */
    int refs;
    call_t *prev; /* in conn->calls */
    call_t *next;
};

typedef struct out_frame {
    uv_write_t req;
    conn_t *conn;
    size_t len;
    size_t alloc; /* counted in conn->queued */
    uint8_t data[];
} out_frame_t;

typedef struct method {
    uint16_t id;
    const char *name;
    call_handler_t handler;
    const ProtobufCMessageDescriptor *request;
} method_t;

static const method_t srv_methods[] = {
    {CPSTORE__V1__HEALTH_METHOD__HEALTH_METHOD_CHECK, "Health.Check",
     svc_health_check, &cpstore__v1__health_check_request__descriptor},
    {CPSTORE__V1__RATE_LIMITER_METHOD__RATE_LIMITER_METHOD_CHECK,
     "RateLimiter.Check", svc_ratelimit_check,
     &cpstore__v1__rate_limit_check_request__descriptor},
    {CPSTORE__V1__API_KEYS_METHOD__API_KEYS_METHOD_CREATE, "ApiKeys.Create",
     svc_apikeys_create, &cpstore__v1__create_api_key_request__descriptor},
    {CPSTORE__V1__API_KEYS_METHOD__API_KEYS_METHOD_VERIFY, "ApiKeys.Verify",
     svc_apikeys_verify, &cpstore__v1__verify_api_key_request__descriptor},
    {CPSTORE__V1__RATE_LIMITER_METHOD__RATE_LIMITER_METHOD_CHECK_MANY,
     "RateLimiter.CheckMany", svc_ratelimit_check_many,
     &cpstore__v1__rate_limit_check_many_request__descriptor},
    {CPSTORE__V1__API_KEYS_METHOD__API_KEYS_METHOD_GET, "ApiKeys.Get",
     svc_apikeys_get, &cpstore__v1__get_api_key_request__descriptor},
    {CPSTORE__V1__API_KEYS_METHOD__API_KEYS_METHOD_LIST, "ApiKeys.List",
     svc_apikeys_list, &cpstore__v1__list_api_keys_request__descriptor},
    {CPSTORE__V1__API_KEYS_METHOD__API_KEYS_METHOD_REVOKE, "ApiKeys.Revoke",
     svc_apikeys_revoke, &cpstore__v1__revoke_api_key_request__descriptor},
    {CPSTORE__V1__API_KEYS_METHOD__API_KEYS_METHOD_ROTATE, "ApiKeys.Rotate",
     svc_apikeys_rotate, &cpstore__v1__rotate_api_key_request__descriptor},
    {CPSTORE__V1__TOKENS_METHOD__TOKENS_METHOD_ISSUE, "Tokens.Issue",
     svc_tokens_issue, &cpstore__v1__issue_token_request__descriptor},
    {CPSTORE__V1__TOKENS_METHOD__TOKENS_METHOD_CONSUME, "Tokens.Consume",
     svc_tokens_consume, &cpstore__v1__consume_token_request__descriptor},
    {CPSTORE__V1__TOKENS_METHOD__TOKENS_METHOD_REVOKE, "Tokens.Revoke",
     svc_tokens_revoke, &cpstore__v1__revoke_token_request__descriptor},
    {CPSTORE__V1__SESSIONS_METHOD__SESSIONS_METHOD_CREATE, "Sessions.Create",
     svc_sessions_create, &cpstore__v1__create_session_request__descriptor},
    {CPSTORE__V1__SESSIONS_METHOD__SESSIONS_METHOD_VALIDATE,
     "Sessions.Validate", svc_sessions_validate,
     &cpstore__v1__validate_session_request__descriptor},
    {CPSTORE__V1__SESSIONS_METHOD__SESSIONS_METHOD_REVOKE, "Sessions.Revoke",
     svc_sessions_revoke, &cpstore__v1__revoke_session_request__descriptor},
    {CPSTORE__V1__SESSIONS_METHOD__SESSIONS_METHOD_REVOKE_ALL,
     "Sessions.RevokeAll", svc_sessions_revoke_all,
     &cpstore__v1__revoke_all_sessions_request__descriptor},
    {CPSTORE__V1__SESSIONS_METHOD__SESSIONS_METHOD_LIST, "Sessions.List",
     svc_sessions_list, &cpstore__v1__list_sessions_request__descriptor},
};

static void conn_close(conn_t *c);
static void conn_arm_timer(conn_t *c);
static void conn_stall_timer(conn_t *c);
static void srv_maybe_done(srv_t *srv);


void srv_config_defaults(srv_config_t *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen = "127.0.0.1:7300";
    cfg->max_payload = FRAME_DEFAULT_MAX_PAYLOAD;
    cfg->max_in_flight = 1024;
    cfg->max_connections = 4096;
    cfg->request_timeout_ms = 5000;
    cfg->idle_timeout_ms = 300000;
    cfg->frame_timeout_ms = 10000;
    cfg->drain_timeout_ms = 10000;
}


void srv_set_config(srv_t *srv, const cf_file_t *config) {
    srv->be.config = config;
}


const char *srv_address(const srv_t *srv) {
    return srv->address;
}


static const method_t *srv_find_method(uint16_t id) {
    for (size_t i = 0; i < sizeof(srv_methods) / sizeof(srv_methods[0]); i++) {
        if (srv_methods[i].id == id) {
            return &srv_methods[i];
        }
    }
    return NULL;
}


/* ---- writing frames ---------------------------------------------------- */


static void
conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);


static void conn_update_reading(conn_t *c) {
    bool want = !c->closing && !c->goaway && !c->paused;

    if (want && !c->reading) {
        if (uv_read_start(&c->h.stream, conn_alloc_cb, conn_read_cb) == 0) {
            c->reading = true;
        }
    } else if (!want && c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
    }
}


/* After a GOAWAY: close once everything owed to the peer is written. */
static void conn_maybe_finish(conn_t *c) {
    if (!c->goaway || c->closing || c->writes > 0) {
        return;
    }
    if (c->wait_calls && c->in_flight > 0) {
        return;
    }
    conn_close(c);
}


static void conn_write_cb(uv_write_t *req, int status) {
    out_frame_t *out = req->data;
    conn_t *c = out->conn;

    c->queued -= out->alloc;
    free(out);
    c->writes--;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        log_debug("write failed peer=%s err=%s", c->peer, uv_strerror(status));
        conn_close(c);
        return;
    }
    if (c->paused && c->queued < CONN_LOW_WATER) {
        c->paused = false;
        conn_update_reading(c);
        if (!c->goaway) {
            conn_arm_timer(c);
        }
    } else if (c->paused) {
        /* Progress: the peer reads, if slowly. Give it a new period. */
        conn_stall_timer(c);
    }
    conn_maybe_finish(c);
}


/*
 * Queue one frame: the header, then either a protobuf message packed in
 * place or raw payload bytes (copied). The buffer is freed by the write
 * callback.
 */
static void conn_send(conn_t *c,
                      const frame_header_t *hdr,
                      const ProtobufCMessage *msg,
                      const uint8_t *raw,
                      size_t raw_len) {
    size_t plen = msg ? protobuf_c_message_get_packed_size(msg) : raw_len;
    frame_header_t h = *hdr;
    out_frame_t *out;
    uv_buf_t buf;

    if (c->closing) {
        return;
    }
    out = malloc(sizeof(*out) + FRAME_HEADER_SIZE + plen);
    if (out == NULL) {
        log_error("out of memory writing a frame peer=%s", c->peer);
        conn_close(c);
        return;
    }
    out->conn = c;
    out->len = FRAME_HEADER_SIZE + plen;
    out->alloc = sizeof(*out) + out->len;
    h.length = (uint32_t)plen;
    frame_encode_header(&h, out->data);
    if (msg != NULL) {
        protobuf_c_message_pack(msg, out->data + FRAME_HEADER_SIZE);
    } else if (raw_len > 0) {
        memcpy(out->data + FRAME_HEADER_SIZE, raw, raw_len);
    }

    out->req.data = out;
    buf = uv_buf_init((char *)out->data, (unsigned)out->len);
    if (uv_write(&out->req, &c->h.stream, &buf, 1, conn_write_cb) != 0) {
        free(out);
        conn_close(c);
        return;
    }
    c->writes++;
    c->queued += out->alloc;
    if (!c->paused && c->queued > CONN_HIGH_WATER) {
        /* Stop reading until the peer takes its responses; if it takes
         * none for a frame timeout, it is gone or hostile. */
        c->paused = true;
        conn_update_reading(c);
        conn_stall_timer(c);
    }
}


static void conn_send_error(conn_t *c,
                            uint8_t type,
                            uint16_t method,
                            uint32_t request_id,
                            int code,
                            const char *message) {
    Cpstore__V1__Error err = CPSTORE__V1__ERROR__INIT;
    frame_header_t h = {0};

    err.code = (uint32_t)code;
    err.message = (char *)message;
    h.type = type;
    h.method = method;
    h.request_id = request_id;
    h.status = (uint8_t)code;
    conn_send(c, &h, &err.base, NULL, 0);
}


static void conn_drop_calls(conn_t *c);


/*
 * Send GOAWAY with a reason and stop reading. With wait_calls, calls in
 * flight are still answered (shutdown); without, they are dropped (the peer
 * broke the protocol). The connection closes once the GOAWAY is written.
 */
static void
conn_goaway(conn_t *c, int code, const char *reason, bool wait_calls) {
    if (c->goaway || c->closing) {
        return;
    }
    c->goaway = true;
    c->wait_calls = wait_calls;
    conn_stall_timer(c);
    conn_update_reading(c);
    if (!wait_calls) {
        conn_drop_calls(c);
    }
    conn_send_error(c, FRAME_GOAWAY, 0, 0, code, reason);
}


/* ---- calls ------------------------------------------------------------- */


static void call_unref(call_t *call) {
    srv_t *srv = call->srv;

    if (--call->refs > 0) {
        return;
    }
    free(call);
    srv->live_calls--;
    srv_maybe_done(srv);
}


static void call_timer_closed(uv_handle_t *handle) {
    call_unref(handle->data);
}


/* Take the call out of its connection's audience: no answer will follow. */
static void call_detach(call_t *call) {
    if (call->answered) {
        return;
    }
    call->answered = true;
    uv_close((uv_handle_t *)&call->timer, call_timer_closed);
}


static void call_log(const call_t *call, int code) {
    if (log_enabled(LOG_DEBUG)) {
        const method_t *m = srv_find_method(call->method);

        log_debug("rpc method=%s req=%u status=%s ms=%lld", m ? m->name : "?",
                  call->request_id, cps_status_name(code),
                  (long long)(clock_mono_ms() - call->started));
    }
}


/* Remove a finished call from its connection and release its slot. */
static void call_release(call_t *call) {
    conn_t *c = call->conn;

    call->finished = true;
    if (c != NULL) {
        if (call->prev) {
            call->prev->next = call->next;
        } else {
            c->calls = call->next;
        }
        if (call->next) {
            call->next->prev = call->prev;
        }
        c->in_flight--;
        call->conn = NULL;
        conn_maybe_finish(c);
    }
    call_detach(call);
    call_unref(call);
}


static void call_timeout_cb(uv_timer_t *timer) {
    call_t *call = timer->data;
    conn_t *c = call->conn;

    if (call->answered || c == NULL) {
        return;
    }
    call_log(call, CPS_DEADLINE_EXCEEDED);
    conn_send_error(c, FRAME_RESPONSE, call->method, call->request_id,
                    CPS_DEADLINE_EXCEEDED, "deadline exceeded");
    call_detach(call);
    uv_timer_stop(timer);
}


const srv_backends_t *call_backends(const call_t *call) {
    return &call->srv->be;
}


const char *call_method_name(const call_t *call) {
    const method_t *m = srv_find_method(call->method);

    return m ? m->name : "?";
}


uint32_t call_request_id(const call_t *call) {
    return call->request_id;
}


int64_t call_deadline(const call_t *call) {
    return call->deadline;
}


uint32_t call_remaining_ms(const call_t *call) {
    int64_t left = call->deadline - clock_mono_ms();

    return left < 1 ? 1 : (uint32_t)left;
}


bool call_wanted(const call_t *call) {
    return !call->answered && call->conn != NULL;
}


void call_reply(call_t *call, const ProtobufCMessage *msg) {
    if (call_wanted(call)) {
        frame_header_t h = {0};

        h.type = FRAME_RESPONSE;
        h.method = call->method;
        h.request_id = call->request_id;
        call_log(call, CPS_OK);
        conn_send(call->conn, &h, msg, NULL, 0);
    }
    call_release(call);
}


void call_fail(call_t *call, int code, const char *message) {
    if (call_wanted(call)) {
        call_log(call, code);
        conn_send_error(call->conn, FRAME_RESPONSE, call->method,
                        call->request_id, code, message);
    }
    call_release(call);
}


static void conn_cancel(conn_t *c, uint32_t request_id) {
    for (call_t *call = c->calls; call != NULL; call = call->next) {
        if (call->request_id == request_id) {
            call_detach(call);
            return;
        }
    }
}


static void
conn_request(conn_t *c, const frame_header_t *hdr, const uint8_t *payload) {
    srv_t *srv = c->srv;
    const method_t *m;
    uint32_t budget;
    call_t *call;

    if (srv->draining) {
        conn_send_error(c, FRAME_RESPONSE, hdr->method, hdr->request_id,
                        CPS_UNAVAILABLE, "server is shutting down");
        return;
    }
    m = srv_find_method(hdr->method);
    if (m == NULL) {
        conn_send_error(c, FRAME_RESPONSE, hdr->method, hdr->request_id,
                        CPS_UNIMPLEMENTED, "unknown method");
        return;
    }
    if (!wirecheck_strings(m->request, payload, hdr->length)) {
        conn_send_error(c, FRAME_RESPONSE, hdr->method, hdr->request_id,
                        CPS_INVALID_ARGUMENT,
                        "a string field contains a NUL byte");
        return;
    }
    if (c->in_flight >= srv->cfg.max_in_flight) {
        conn_send_error(c, FRAME_RESPONSE, hdr->method, hdr->request_id,
                        CPS_RESOURCE_EXHAUSTED,
                        "too many requests in flight on this connection");
        return;
    }

    call = calloc(1, sizeof(*call));
    if (call == NULL) {
        conn_send_error(c, FRAME_RESPONSE, hdr->method, hdr->request_id,
                        CPS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    budget = srv->cfg.request_timeout_ms;
    if (hdr->budget_ms != 0 && hdr->budget_ms < budget) {
        budget = hdr->budget_ms;
    }
    call->conn = c;
    call->srv = srv;
    call->request_id = hdr->request_id;
    call->method = hdr->method;
    call->started = clock_mono_ms();
    call->deadline = call->started + budget;
    call->refs = 2; /* the handler and the timer */
    srv->live_calls++;
    uv_timer_init(srv->loop, &call->timer);
    call->timer.data = call;
    uv_timer_start(&call->timer, call_timeout_cb, budget, 0);

    call->next = c->calls;
    if (c->calls != NULL) {
        c->calls->prev = call;
    }
    c->calls = call;
    c->in_flight++;

    m->handler(call, payload, hdr->length);
}


/* ---- reading frames ---------------------------------------------------- */


static void conn_hello(conn_t *c, const uint8_t *payload, size_t len) {
    Cpstore__V1__HelloAck ack = CPSTORE__V1__HELLO_ACK__INIT;
    Cpstore__V1__Hello *hello;
    frame_header_t h = {0};

    hello = cpstore__v1__hello__unpack(NULL, len, payload);
    if (hello == NULL) {
        conn_goaway(c, CPS_INVALID_ARGUMENT, "hello does not decode", false);
        return;
    }
    if (hello->max_version != 0 && hello->max_version < FRAME_VERSION) {
        cpstore__v1__hello__free_unpacked(hello, NULL);
        conn_goaway(c, CPS_FAILED_PRECONDITION, "no common protocol version",
                    false);
        return;
    }
    cpstore__v1__hello__free_unpacked(hello, NULL);

    ack.version = FRAME_VERSION;
    ack.max_payload = c->srv->cfg.max_payload;
    ack.max_in_flight = c->srv->cfg.max_in_flight;
    ack.server = (char *)"cpstored/" CPSTORE_VERSION;
    h.type = FRAME_HELLO_ACK;
    conn_send(c, &h, &ack.base, NULL, 0);
}


/* A PONG echoes the PING's payload, raw. */
static void conn_pong(conn_t *c, const uint8_t *payload, size_t len) {
    frame_header_t h = {0};

    h.type = FRAME_PONG;
    conn_send(c, &h, NULL, payload, len);
}


static void
conn_frame(conn_t *c, const frame_header_t *hdr, const uint8_t *payload) {
    switch (hdr->type) {
    case FRAME_REQUEST:
        conn_request(c, hdr, payload);
        break;
    case FRAME_CANCEL:
        conn_cancel(c, hdr->request_id);
        break;
    case FRAME_PING:
        conn_pong(c, payload, hdr->length);
        break;
    case FRAME_PONG:
        break;
    case FRAME_HELLO:
        conn_hello(c, payload, hdr->length);
        break;
    case FRAME_GOAWAY:
        /* The peer is leaving: answer what is in flight, then close. */
        c->goaway = true;
        c->wait_calls = true;
        conn_stall_timer(c);
        conn_update_reading(c);
        conn_maybe_finish(c);
        break;
    default:
        conn_goaway(c, CPS_INVALID_ARGUMENT,
                    "frame type not accepted from a client", false);
        break;
    }
}


static void
conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    conn_t *c = handle->data;

    (void)suggested;
    buf->base = (char *)c->rbuf;
    buf->len = sizeof(c->rbuf);
}


static void
conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = stream->data;
    const uint8_t *in = (const uint8_t *)buf->base;
    size_t len = nread > 0 ? (size_t)nread : 0;
    size_t off = 0;

    if (nread == UV_EOF && c->in_flight > 0 && !c->goaway) {
        /* A half-close: the peer has sent all it will but may still read.
         * Answer what is in flight, then close. */
        c->goaway = true;
        c->wait_calls = true;
        conn_stall_timer(c);
        conn_update_reading(c);
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF) {
            log_debug("read failed peer=%s err=%s", c->peer,
                      uv_strerror((int)nread));
        }
        conn_close(c);
        return;
    }

    while (off < len && !c->goaway && !c->closing) {
        frame_header_t hdr;
        const uint8_t *payload = NULL;
        size_t used = 0;
        int rc;

        rc = frame_decoder_feed(&c->dec, in + off, len - off, &used, &hdr,
                                &payload);
        off += used;
        if (rc == FRAME_OK) {
            /* The next frame gets its own frame timeout. */
            c->frame_timer = false;
            conn_frame(c, &hdr, payload);
        } else if (rc < 0) {
            log_info("protocol error peer=%s reason=\"%s\"", c->peer,
                     frame_strerror(rc));
            conn_goaway(c,
                        rc == FRAME_E_TOO_LARGE ? CPS_RESOURCE_EXHAUSTED
                                                : CPS_INVALID_ARGUMENT,
                        frame_strerror(rc), false);
        }
    }
    /* While paused, the stall timer runs instead. */
    if (!c->closing && !c->goaway && !c->paused) {
        conn_arm_timer(c);
    }
}


/*
 * One timer per connection: while a frame is half received it must finish
 * within frame_timeout_ms of its first byte, however slowly the rest
 * trickles in; otherwise a connection with no call in flight may stay idle
 * for idle_timeout_ms.
 */
static bool conn_partial(const conn_t *c) {
    return c->dec.header_len > 0 && !c->dec.done;
}


static void conn_timer_cb(uv_timer_t *timer) {
    conn_t *c = timer->data;

    if (c->paused || (c->goaway && c->writes > 0)) {
        log_info("peer does not read its responses, closing peer=%s", c->peer);
        conn_close(c);
        return;
    }
    if (c->goaway) {
        /* Calls still in flight; each ends by its deadline. */
        conn_stall_timer(c);
        return;
    }
    if (conn_partial(c)) {
        log_info("frame timeout peer=%s", c->peer);
        conn_goaway(c, CPS_DEADLINE_EXCEEDED, "frame not completed in time",
                    false);
    } else if (c->in_flight == 0) {
        log_debug("idle timeout peer=%s", c->peer);
        conn_goaway(c, CPS_UNAVAILABLE, "idle timeout", true);
    } else {
        c->frame_timer = false;
        conn_arm_timer(c);
    }
}


/* While paused or after GOAWAY: the peer must make progress within a
 * frame timeout. */
static void conn_stall_timer(conn_t *c) {
    c->frame_timer = false;
    uv_timer_start(&c->timer, conn_timer_cb, c->srv->cfg.frame_timeout_ms, 0);
}


static void conn_arm_timer(conn_t *c) {
    if (conn_partial(c)) {
        if (!c->frame_timer && c->srv->cfg.frame_timeout_ms > 0) {
            c->frame_timer = true;
            uv_timer_start(&c->timer, conn_timer_cb,
                           c->srv->cfg.frame_timeout_ms, 0);
        }
        return;
    }
    c->frame_timer = false;
    if (c->srv->cfg.idle_timeout_ms > 0) {
        uv_timer_start(&c->timer, conn_timer_cb, c->srv->cfg.idle_timeout_ms,
                       0);
    } else {
        uv_timer_stop(&c->timer);
    }
}


/* ---- connection lifetime ----------------------------------------------- */


static void conn_handle_closed(uv_handle_t *handle) {
    conn_t *c = handle->data;

    srv_t *srv = c->srv;

    if (--c->handles > 0) {
        return;
    }
    frame_decoder_free(&c->dec);
    free(c);
    srv->closing_handles--;
    srv_maybe_done(srv);
}


/* Calls keep running in their backends; their answers are dropped. */
static void conn_drop_calls(conn_t *c) {
    for (call_t *call = c->calls; call != NULL; call = call->next) {
        call->conn = NULL;
        call_detach(call);
    }
    c->calls = NULL;
    c->in_flight = 0;
}


static void conn_close(conn_t *c) {
    srv_t *srv = c->srv;

    if (c->closing) {
        return;
    }
    c->closing = true;
    conn_drop_calls(c);

    if (c->prev) {
        c->prev->next = c->next;
    } else {
        srv->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    srv->nconns--;

    srv->closing_handles++;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close(&c->h.handle, conn_handle_closed);
}


static void srv_peer_name(conn_t *c) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    if (c->srv->is_unix) {
        snprintf(c->peer, sizeof(c->peer), "unix");
        return;
    }
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) != 0) {
        snprintf(c->peer, sizeof(c->peer), "?");
        return;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        char ip[INET6_ADDRSTRLEN];

        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%d", ip, ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        char ip[INET_ADDRSTRLEN];

        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, ntohs(a->sin_port));
    }
}


static void srv_accept_cb(uv_stream_t *listener, int status) {
    srv_t *srv = listener->data;
    conn_t *c;

    if (status < 0) {
        log_warn("accept failed err=%s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        log_error("out of memory accepting a connection");
        return;
    }
    c->srv = srv;
    if (srv->is_unix) {
        uv_pipe_init(srv->loop, &c->h.pipe, 0);
    } else {
        uv_tcp_init(srv->loop, &c->h.tcp);
    }
    c->h.handle.data = c;
    uv_timer_init(srv->loop, &c->timer);
    c->timer.data = c;
    c->handles = 2;
    frame_decoder_init(&c->dec, srv->cfg.max_payload);

    c->next = srv->conns;
    if (srv->conns) {
        srv->conns->prev = c;
    }
    srv->conns = c;
    srv->nconns++;

    if (uv_accept(listener, &c->h.stream) != 0) {
        conn_close(c);
        return;
    }
    if (!srv->is_unix) {
        uv_tcp_nodelay(&c->h.tcp, 1);
    }
    srv_peer_name(c);

    if (srv->draining) {
        conn_goaway(c, CPS_UNAVAILABLE, "server is shutting down", true);
        return;
    }
    if (srv->nconns > srv->cfg.max_connections) {
        log_warn("connection limit reached peer=%s max=%u", c->peer,
                 srv->cfg.max_connections);
        conn_goaway(c, CPS_RESOURCE_EXHAUSTED, "too many connections", false);
        return;
    }
    log_debug("connection opened peer=%s", c->peer);
    conn_update_reading(c);
    conn_arm_timer(c);
}


/* ---- listening and shutdown -------------------------------------------- */


static int
srv_listen_tcp(srv_t *srv, const char *spec, char *err, size_t err_len) {
    struct sockaddr_storage ss;
    char host[64];
    const char *colon = strrchr(spec, ':');
    const char *h = spec;
    size_t hlen;
    int port;
    int rc;

    if (colon == NULL || colon[1] == '\0') {
        snprintf(err, err_len,
                 "listen address must be host:port or "
                 "unix:/path, got \"%s\"",
                 spec);
        return -1;
    }
    hlen = (size_t)(colon - spec);
    if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
        h = spec + 1;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        snprintf(err, err_len, "bad listen host in \"%s\"", spec);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535) {
        snprintf(err, err_len, "bad listen port in \"%s\"", spec);
        return -1;
    }
    port = (int)p;

    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
        snprintf(err, err_len,
                 "listen host must be an IP address, got "
                 "\"%s\"",
                 host);
        return -1;
    }
    uv_tcp_init(srv->loop, &srv->listener.tcp);
    srv->listener.handle.data = srv;
    rc = uv_tcp_bind(&srv->listener.tcp, (struct sockaddr *)&ss, 0);
    if (rc == 0) {
        rc = uv_listen(&srv->listener.stream, 511, srv_accept_cb);
    }
    if (rc != 0) {
        snprintf(err, err_len, "listen on %s: %s", spec, uv_strerror(rc));
        return -1;
    }
    snprintf(srv->address, sizeof(srv->address), "%s", spec);
    return 0;
}


/*
 * A socket file left by a previous run would make bind fail, so it is
 * removed; but only a socket, and only one nobody answers on: a live
 * cpstored keeps its socket, and a regular file is never deleted.
 */
static int srv_unix_stale(const char *path, char *err, size_t err_len) {
    struct sockaddr_un sa;
    struct stat st;
    int fd;
    int live;

    if (lstat(path, &st) != 0) {
        return 0;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, err_len,
                 "listen on unix:%s: the path exists and is not a socket",
                 path);
        return -1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, err_len, "listen on unix:%s: path too long", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    live = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0) {
        close(fd);
    }
    if (live) {
        snprintf(err, err_len,
                 "listen on unix:%s: another server answers on it", path);
        return -1;
    }
    unlink(path);
    return 0;
}


static int
srv_listen_unix(srv_t *srv, const char *path, char *err, size_t err_len) {
    int rc;

    uv_pipe_init(srv->loop, &srv->listener.pipe, 0);
    srv->listener.handle.data = srv;
    srv->is_unix = true;
    rc = srv_unix_stale(path, err, err_len);
    if (rc != 0) {
        return -1;
    }
    rc = uv_pipe_bind(&srv->listener.pipe, path);
    if (rc == 0) {
        rc = uv_listen(&srv->listener.stream, 511, srv_accept_cb);
    }
    if (rc != 0) {
        snprintf(err, err_len, "listen on unix:%s: %s", path, uv_strerror(rc));
        return -1;
    }
    snprintf(srv->address, sizeof(srv->address), "unix:%s", path);
    return 0;
}


static void srv_free_on_close(uv_handle_t *handle) {
    free(handle->data);
}


srv_t *srv_start(uv_loop_t *loop,
                 const srv_config_t *cfg,
                 const srv_backends_t *be,
                 char *err,
                 size_t err_len) {
    srv_t *srv = calloc(1, sizeof(*srv));
    int rc;

    if (srv == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    srv->loop = loop;
    srv->cfg = *cfg;
    srv->be = *be;
    if (srv->cfg.max_payload > FRAME_HARD_MAX_PAYLOAD) {
        srv->cfg.max_payload = FRAME_HARD_MAX_PAYLOAD;
    }

    if (strncmp(cfg->listen, "unix:", 5) == 0) {
        rc = srv_listen_unix(srv, cfg->listen + 5, err, err_len);
    } else {
        rc = srv_listen_tcp(srv, cfg->listen, err, err_len);
    }
    if (rc != 0) {
        srv->listener.handle.data = srv;
        uv_close(&srv->listener.handle, srv_free_on_close);
        return NULL;
    }
    return srv;
}


static void srv_handle_closed(uv_handle_t *handle) {
    srv_t *srv = handle->data;

    srv->closing_handles--;
    srv_maybe_done(srv);
}


/*
 * Called whenever something that shutdown waits for has gone away: the
 * listener, every connection, every call (a call may outlive its connection
 * while a backend finishes it) and finally the drain timer.
 */
static void srv_maybe_done(srv_t *srv) {
    void (*done)(void *);
    void *arg;

    if (!srv->draining || srv->on_done == NULL) {
        return;
    }
    if (srv->conns != NULL || srv->live_calls > 0 || srv->closing_handles > 0) {
        return;
    }
    if (!srv->drain_timer_closing) {
        srv->drain_timer_closing = true;
        srv->closing_handles++;
        uv_close((uv_handle_t *)&srv->drain_timer, srv_handle_closed);
        return;
    }

    done = srv->on_done;
    arg = srv->on_done_arg;
    srv->on_done = NULL;
    done(arg);
    free(srv);
}


static void srv_drain_timeout(uv_timer_t *timer) {
    srv_t *srv = timer->data;

    if (srv->conns != NULL) {
        log_warn("drain timeout: closing connections with calls in flight");
    }
    while (srv->conns != NULL) {
        conn_close(srv->conns);
    }
    srv_maybe_done(srv);
}


void srv_shutdown(srv_t *srv, void (*done)(void *arg), void *arg) {
    conn_t *next;

    if (srv->draining) {
        return;
    }
    srv->draining = true;
    srv->on_done = done;
    srv->on_done_arg = arg;

    srv->closing_handles++;
    uv_close(&srv->listener.handle, srv_handle_closed);

    uv_timer_init(srv->loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    uv_timer_start(&srv->drain_timer, srv_drain_timeout,
                   srv->cfg.drain_timeout_ms, 0);

    for (conn_t *c = srv->conns; c != NULL; c = next) {
        next = c->next;
        conn_goaway(c, CPS_UNAVAILABLE, "server is shutting down", true);
        conn_maybe_finish(c);
    }
    srv_maybe_done(srv);
}
