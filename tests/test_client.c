/*
 * libcpstore against a scripted peer: a thread that accepts one connection
 * and plays one side of the frame protocol byte for byte, so that the
 * client's handling of what a real server rarely does (GOAWAY, PING,
 * out-of-order and late responses, oversized or garbled frames, a peer that
 * hangs or hangs up) can be checked without one. The peer records what the
 * client sent; assertions run on the test's own thread after the peer ends.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "cpstore_client.h"
#include "frame.h"

#define PEER_MAX_FRAMES 8
#define PEER_PAYLOAD    4096

typedef struct peer peer_t;
typedef void (*peer_script_fn)(peer_t *p, int fd);

struct peer {
    int lfd;
    char addr[128];
    char dir[64]; /* unix socket directory, when there is one */
    pthread_t thread;
    peer_script_fn script;
    /* What the client sent, in order. */
    int nframes;
    frame_header_t frames[PEER_MAX_FRAMES];
    uint8_t payloads[PEER_MAX_FRAMES][PEER_PAYLOAD];
};


static int write_full(int fd, const void *buf, size_t len) {
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}


static int read_full(int fd, void *buf, size_t len) {
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}


/* Read the client's next frame into the record; its index, or -1. */
static int peer_read(peer_t *p, int fd) {
    uint8_t raw[FRAME_HEADER_SIZE];
    frame_header_t *h;

    if (p->nframes >= PEER_MAX_FRAMES || read_full(fd, raw, sizeof(raw)) < 0) {
        return -1;
    }
    h = &p->frames[p->nframes];
    if (frame_decode_header(raw, PEER_PAYLOAD, h) != FRAME_OK ||
        read_full(fd, p->payloads[p->nframes], h->length) < 0) {
        return -1;
    }
    return p->nframes++;
}


static void peer_write(int fd,
                       int type,
                       uint32_t id,
                       uint16_t method,
                       uint8_t status,
                       const void *payload,
                       size_t len) {
    frame_header_t h;
    uint8_t raw[FRAME_HEADER_SIZE];

    memset(&h, 0, sizeof(h));
    h.type = (uint8_t)type;
    h.request_id = id;
    h.method = method;
    h.status = status;
    h.length = (uint32_t)len;
    frame_encode_header(&h, raw);
    write_full(fd, raw, sizeof(raw));
    if (len > 0) {
        write_full(fd, payload, len);
    }
}


/* Encode msg and send it as a frame. */
static void peer_write_msg(int fd,
                           int type,
                           uint32_t id,
                           uint16_t method,
                           uint8_t status,
                           const pb_msgdesc_t *fields,
                           const void *msg) {
    uint8_t buf[PEER_PAYLOAD];
    pb_ostream_t os = pb_ostream_from_buffer(buf, sizeof(buf));

    if (pb_encode(&os, fields, msg)) {
        peer_write(fd, type, id, method, status, buf, os.bytes_written);
    }
}


static void peer_write_error(int fd,
                             int type,
                             uint32_t id,
                             uint16_t method,
                             uint8_t code,
                             const char *message) {
    cpstore_v1_Error err = cpstore_v1_Error_init_zero;

    err.code = code;
    snprintf(err.message, sizeof(err.message), "%s", message);
    peer_write_msg(fd, type, id, method, code, cpstore_v1_Error_fields, &err);
}


/* Wait until the client closes, so the peer never hangs up first. */
static void peer_drain(int fd) {
    uint8_t buf[256];

    while (recv(fd, buf, sizeof(buf), 0) > 0) {
    }
}


static void *peer_main(void *arg) {
    peer_t *p = arg;
    int fd = accept(p->lfd, NULL, NULL);

    if (fd >= 0) {
        p->script(p, fd);
        close(fd);
    }
    return NULL;
}


static void peer_start_on(peer_t *p, int lfd, peer_script_fn script) {
    cr_assert(listen(lfd, 4) == 0, "listen: %s", strerror(errno));
    p->lfd = lfd;
    p->script = script;
    cr_assert(pthread_create(&p->thread, NULL, peer_main, p) == 0);
}


static peer_t *peer_start(peer_script_fn script) {
    peer_t *p = calloc(1, sizeof(*p));
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert(p != NULL && lfd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    cr_assert(getsockname(lfd, (struct sockaddr *)&sa, &len) == 0);
    snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    peer_start_on(p, lfd, script);
    return p;
}


static peer_t *peer_start_unix(peer_script_fn script) {
    peer_t *p = calloc(1, sizeof(*p));
    const char *tmp = getenv("TMPDIR");
    struct sockaddr_un sa;
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);

    cr_assert(p != NULL && lfd >= 0);
    snprintf(p->dir, sizeof(p->dir), "%s/cpc-XXXXXX", tmp ? tmp : "/tmp");
    cr_assert(mkdtemp(p->dir) != NULL);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s", p->dir);
    cr_assert(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    snprintf(p->addr, sizeof(p->addr), "unix:%s", sa.sun_path);
    peer_start_on(p, lfd, script);
    return p;
}


/* Join the peer (the client must be closed first) and release it. */
static void peer_stop(peer_t *p) {
    pthread_join(p->thread, NULL);
    close(p->lfd);
    if (p->dir[0] != '\0') {
        char path[128];

        snprintf(path, sizeof(path), "%s/s", p->dir);
        unlink(path);
        rmdir(p->dir);
    }
}


static cpc_t *connect_to(const peer_t *p, int timeout_ms) {
    char err[256];
    cpc_t *c = cpc_connect(p->addr, timeout_ms, err, sizeof(err));

    cr_assert_not_null(c, "connect %s: %s", p->addr, err);
    return c;
}


static const cpstore_v1_RateLimitCheckResponse allowed_reply = {
    .allowed = true,
    .limit = 10,
    .remaining = 7,
    .reset_after_ms = 60000,
    .retry_after_ms = 0,
};


/* Answer every request with allowed_reply until the client closes. */
static void script_answer_all(peer_t *p, int fd) {
    int i;

    while ((i = peer_read(p, fd)) >= 0) {
        peer_write_msg(
            fd, FRAME_RESPONSE, p->frames[i].request_id, p->frames[i].method, 0,
            cpstore_v1_RateLimitCheckResponse_fields, &allowed_reply);
    }
}


static void check_once(cpc_t *c,
                       cpstore_v1_RateLimitCheckResponse *resp,
                       cpc_reply_t *reply) {
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;

    snprintf(req.key, sizeof(req.key), "user:42");
    req.limit = 10;
    req.window_ms = 60000;
    req.cost = 3;
    cr_assert_eq(cpc_ratelimit_check(c, &req, resp, reply), CPC_OK, "%s",
                 cpc_last_error(c));
}


Test(client, sends_a_request_frame_the_server_can_decode) {
    peer_t *p = peer_start(script_answer_all);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_RateLimitCheckResponse resp;
    cpstore_v1_RateLimitCheckRequest got;
    cpc_reply_t reply;
    pb_istream_t is;

    cpc_set_budget(c, 1234);
    check_once(c, &resp, &reply);
    cpc_close(c);
    peer_stop(p);

    cr_assert_eq(p->nframes, 1);
    cr_expect_eq(p->frames[0].type, FRAME_REQUEST);
    cr_expect_eq(p->frames[0].method,
                 cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK);
    cr_expect_eq(p->frames[0].request_id, 1);
    cr_expect_eq(p->frames[0].budget_ms, 1234);
    is = pb_istream_from_buffer(p->payloads[0], p->frames[0].length);
    cr_assert(pb_decode(&is, cpstore_v1_RateLimitCheckRequest_fields, &got));
    cr_expect_str_eq(got.key, "user:42");
    cr_expect_eq(got.limit, 10);
    cr_expect_eq(got.window_ms, 60000);
    cr_expect_eq(got.cost, 3);
    free(p);
}


Test(client, decodes_an_ok_response_into_the_reply_message) {
    peer_t *p = peer_start(script_answer_all);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;

    check_once(c, &resp, &reply);
    cpc_close(c);
    peer_stop(p);

    cr_expect_eq(reply.status, 0);
    cr_expect_eq(reply.request_id, 1);
    cr_expect(resp.allowed);
    cr_expect_eq(resp.limit, 10);
    cr_expect_eq(resp.remaining, 7);
    cr_expect_eq(resp.reset_after_ms, 60000);
    free(p);
}


Test(client, works_over_a_unix_socket) {
    peer_t *p = peer_start_unix(script_answer_all);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;

    check_once(c, &resp, &reply);
    cpc_close(c);
    peer_stop(p);
    cr_expect(resp.allowed);
    free(p);
}


static void script_fail_with_error(peer_t *p, int fd) {
    int i = peer_read(p, fd);

    if (i >= 0) {
        peer_write_error(fd, FRAME_RESPONSE, p->frames[i].request_id,
                         p->frames[i].method, 3, "limit is above 100000");
    }
    peer_drain(fd);
}


Test(client, reports_a_server_error_as_a_reply_not_a_transport_error) {
    peer_t *p = peer_start(script_fail_with_error);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;

    check_once(c, &resp, &reply);
    cpc_close(c);
    peer_stop(p);

    cr_expect_eq(reply.status, 3);
    cr_expect_eq(reply.error.code, 3);
    cr_expect_str_eq(reply.error.message, "limit is above 100000");
    free(p);
}


static void script_goaway(peer_t *p, int fd) {
    if (peer_read(p, fd) >= 0) {
        peer_write_error(fd, FRAME_GOAWAY, 0, 0, 14, "server is draining");
    }
    peer_drain(fd);
}


Test(client, ends_the_connection_on_goaway_with_its_reason) {
    peer_t *p = peer_start(script_goaway);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_HealthCheckResponse resp;
    cpc_reply_t reply;

    cr_expect_eq(cpc_health_check(c, &resp, &reply), CPC_E_PROTOCOL);
    cr_expect(strstr(cpc_last_error(c), "server is draining") != NULL, "%s",
              cpc_last_error(c));
    /* The connection stays dead without touching the socket again. */
    cr_expect_eq(cpc_health_check(c, &resp, &reply), CPC_E_PROTOCOL);
    cr_expect_eq(cpc_ping(c), CPC_E_PROTOCOL);
    cpc_close(c);
    peer_stop(p);
    cr_expect_eq(p->nframes, 1);
    free(p);
}


static void script_ping_then_answer(peer_t *p, int fd) {
    int i = peer_read(p, fd);

    if (i < 0) {
        return;
    }
    peer_write(fd, FRAME_PING, 0, 0, 0, "abc", 3);
    if (peer_read(p, fd) < 0) {
        return;
    }
    peer_write_msg(fd, FRAME_RESPONSE, p->frames[i].request_id,
                   p->frames[i].method, 0,
                   cpstore_v1_RateLimitCheckResponse_fields, &allowed_reply);
    peer_drain(fd);
}


Test(client, answers_a_server_ping_while_waiting) {
    peer_t *p = peer_start(script_ping_then_answer);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;

    check_once(c, &resp, &reply);
    cpc_close(c);
    peer_stop(p);

    cr_expect(resp.allowed);
    cr_assert_eq(p->nframes, 2);
    cr_expect_eq(p->frames[1].type, FRAME_PONG);
    cr_expect_eq(p->frames[1].length, 3);
    cr_expect(memcmp(p->payloads[1], "abc", 3) == 0);
    free(p);
}


static void script_reverse_order(peer_t *p, int fd) {
    if (peer_read(p, fd) < 0 || peer_read(p, fd) < 0) {
        return;
    }
    for (int i = 1; i >= 0; i--) {
        cpstore_v1_RateLimitCheckResponse r = allowed_reply;

        r.remaining = p->frames[i].request_id;
        peer_write_msg(fd, FRAME_RESPONSE, p->frames[i].request_id,
                       p->frames[i].method, 0,
                       cpstore_v1_RateLimitCheckResponse_fields, &r);
    }
    peer_drain(fd);
}


Test(client, matches_pipelined_responses_by_request_id) {
    peer_t *p = peer_start(script_reverse_order);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;
    uint32_t id1, id2;

    cr_assert_eq(cpc_send(c, 0x0201, cpstore_v1_RateLimitCheckRequest_fields,
                          &req, &id1),
                 CPC_OK);
    cr_assert_eq(cpc_send(c, 0x0201, cpstore_v1_RateLimitCheckRequest_fields,
                          &req, &id2),
                 CPC_OK);
    cr_expect_neq(id1, id2);

    cr_assert_eq(cpc_recv(c, &reply), CPC_OK);
    cr_expect_eq(reply.request_id, id2);
    cr_assert_eq(
        cpc_decode(&reply, cpstore_v1_RateLimitCheckResponse_fields, &resp),
        CPC_OK);
    cr_expect_eq(resp.remaining, id2);

    cr_assert_eq(cpc_recv(c, &reply), CPC_OK);
    cr_expect_eq(reply.request_id, id1);
    cr_assert_eq(
        cpc_decode(&reply, cpstore_v1_RateLimitCheckResponse_fields, &resp),
        CPC_OK);
    cr_expect_eq(resp.remaining, id1);
    cpc_close(c);
    peer_stop(p);
    free(p);
}


/* Leave the first request unanswered; answer it late, after the second. */
static void script_late_answer(peer_t *p, int fd) {
    if (peer_read(p, fd) < 0 || peer_read(p, fd) < 0) {
        return;
    }
    for (int i = 0; i < 2; i++) {
        cpstore_v1_RateLimitCheckResponse r = allowed_reply;

        r.remaining = p->frames[i].request_id;
        peer_write_msg(fd, FRAME_RESPONSE, p->frames[i].request_id,
                       p->frames[i].method, 0,
                       cpstore_v1_RateLimitCheckResponse_fields, &r);
    }
    peer_drain(fd);
}


Test(client, times_out_and_drops_the_late_response) {
    peer_t *p = peer_start(script_late_answer);
    cpc_t *c = connect_to(p, 200);
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;

    cr_expect_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_E_TIMEOUT);
    /* The connection is still whole: the next call gets its own answer. */
    cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK, "%s",
                 cpc_last_error(c));
    cr_expect_eq(reply.request_id, 2);
    cr_expect_eq(resp.remaining, 2);
    cpc_close(c);
    peer_stop(p);
    free(p);
}


static void script_hang_up(peer_t *p, int fd) {
    peer_read(p, fd);
}


Test(client, reports_a_peer_that_hangs_up_as_an_io_error) {
    peer_t *p = peer_start(script_hang_up);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_HealthCheckResponse resp;
    cpc_reply_t reply;

    cr_expect_eq(cpc_health_check(c, &resp, &reply), CPC_E_IO);
    cr_expect(strstr(cpc_last_error(c), "closed") != NULL, "%s",
              cpc_last_error(c));
    cpc_close(c);
    peer_stop(p);
    free(p);
}


static void script_oversized(peer_t *p, int fd) {
    frame_header_t h;
    uint8_t raw[FRAME_HEADER_SIZE];
    int i = peer_read(p, fd);

    if (i < 0) {
        return;
    }
    memset(&h, 0, sizeof(h));
    h.type = FRAME_RESPONSE;
    h.request_id = p->frames[i].request_id;
    h.length = FRAME_DEFAULT_MAX_PAYLOAD + 1;
    frame_encode_header(&h, raw);
    write_full(fd, raw, sizeof(raw));
    peer_drain(fd);
}


Test(client, refuses_a_response_above_the_maximum_before_reading_it) {
    peer_t *p = peer_start(script_oversized);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_HealthCheckResponse resp;
    cpc_reply_t reply;

    cr_expect_eq(cpc_health_check(c, &resp, &reply), CPC_E_PROTOCOL);
    cr_expect(strstr(cpc_last_error(c), "maximum") != NULL, "%s",
              cpc_last_error(c));
    cpc_close(c);
    peer_stop(p);
    free(p);
}


static void script_http(peer_t *p, int fd) {
    static const char resp[] = "HTTP/1.1 400 Bad Request\r\n\r\n";

    if (peer_read(p, fd) >= 0) {
        write_full(fd, resp, sizeof(resp) - 1);
    }
    peer_drain(fd);
}


Test(client, refuses_bytes_that_are_not_frames) {
    peer_t *p = peer_start(script_http);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_HealthCheckResponse resp;
    cpc_reply_t reply;

    cr_expect_eq(cpc_health_check(c, &resp, &reply), CPC_E_PROTOCOL);
    cr_expect(strstr(cpc_last_error(c), "magic") != NULL, "%s",
              cpc_last_error(c));
    cpc_close(c);
    peer_stop(p);
    free(p);
}


/* The response dribbles in one byte per write. */
static void script_byte_by_byte(peer_t *p, int fd) {
    uint8_t buf[256];
    pb_ostream_t os = pb_ostream_from_buffer(buf + FRAME_HEADER_SIZE,
                                             sizeof(buf) - FRAME_HEADER_SIZE);
    frame_header_t h;
    int i = peer_read(p, fd);

    if (i < 0 || !pb_encode(&os, cpstore_v1_RateLimitCheckResponse_fields,
                            &allowed_reply)) {
        return;
    }
    memset(&h, 0, sizeof(h));
    h.type = FRAME_RESPONSE;
    h.request_id = p->frames[i].request_id;
    h.method = p->frames[i].method;
    h.length = (uint32_t)os.bytes_written;
    frame_encode_header(&h, buf);
    for (size_t k = 0; k < FRAME_HEADER_SIZE + os.bytes_written; k++) {
        write_full(fd, buf + k, 1);
    }
    peer_drain(fd);
}


Test(client, assembles_a_response_that_arrives_in_pieces) {
    peer_t *p = peer_start(script_byte_by_byte);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;

    check_once(c, &resp, &reply);
    cpc_close(c);
    peer_stop(p);
    cr_expect(resp.allowed);
    cr_expect_eq(resp.remaining, 7);
    free(p);
}


static void script_wrong_method(peer_t *p, int fd) {
    int i = peer_read(p, fd);

    if (i >= 0) {
        peer_write_msg(fd, FRAME_RESPONSE, p->frames[i].request_id, 0x0302, 0,
                       cpstore_v1_RateLimitCheckResponse_fields,
                       &allowed_reply);
    }
    peer_drain(fd);
}


Test(client, refuses_an_ok_response_that_names_another_method) {
    peer_t *p = peer_start(script_wrong_method);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;

    cr_expect_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_E_PROTOCOL);
    cpc_close(c);
    peer_stop(p);
    free(p);
}


static void script_garbled_payload(peer_t *p, int fd) {
    static const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff};
    int i = peer_read(p, fd);

    if (i >= 0) {
        peer_write(fd, FRAME_RESPONSE, p->frames[i].request_id,
                   p->frames[i].method, 0, junk, sizeof(junk));
    }
    peer_drain(fd);
}


Test(client, reports_an_ok_payload_that_does_not_decode) {
    peer_t *p = peer_start(script_garbled_payload);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_HealthCheckResponse resp;
    cpc_reply_t reply;

    cr_expect_eq(cpc_health_check(c, &resp, &reply), CPC_E_DECODE);
    cpc_close(c);
    peer_stop(p);
    free(p);
}


static void script_hello(peer_t *p, int fd) {
    cpstore_v1_HelloAck ack = cpstore_v1_HelloAck_init_zero;

    if (peer_read(p, fd) < 0) {
        return;
    }
    ack.version = 1;
    ack.max_payload = 64;
    ack.max_in_flight = 16;
    snprintf(ack.server, sizeof(ack.server), "scripted");
    peer_write_msg(fd, FRAME_HELLO_ACK, 0, 0, 0, cpstore_v1_HelloAck_fields,
                   &ack);
    peer_drain(fd);
}


Test(client, hello_learns_the_server_limits_and_keeps_to_them) {
    peer_t *p = peer_start(script_hello);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_HelloAck ack;
    cpstore_v1_Hello hello;
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    pb_istream_t is;

    cr_assert_eq(cpc_hello(c, &ack), CPC_OK, "%s", cpc_last_error(c));
    cr_expect_eq(ack.max_payload, 64);
    cr_expect_str_eq(ack.server, "scripted");

    /* A request above the announced 64 bytes never leaves the client. */
    memset(req.key, 'k', 100);
    cr_expect_eq(cpc_send(c, 0x0201, cpstore_v1_RateLimitCheckRequest_fields,
                          &req, NULL),
                 CPC_E_ENCODE);
    cpc_close(c);
    peer_stop(p);

    cr_assert_eq(p->nframes, 1);
    cr_expect_eq(p->frames[0].type, FRAME_HELLO);
    is = pb_istream_from_buffer(p->payloads[0], p->frames[0].length);
    cr_assert(pb_decode(&is, cpstore_v1_Hello_fields, &hello));
    cr_expect_eq(hello.max_version, 1);
    free(p);
}


Test(client, refuses_a_string_beyond_its_nanopb_bound) {
    peer_t *p = peer_start(script_answer_all);
    cpc_t *c = connect_to(p, 5000);
    cpstore_v1_RateLimitCheckRequest req;

    /* No terminator within the field: nanopb must refuse, not overrun. */
    memset(&req, 0, sizeof(req));
    memset(req.key, 'k', sizeof(req.key));
    cr_expect_eq(cpc_send(c, 0x0201, cpstore_v1_RateLimitCheckRequest_fields,
                          &req, NULL),
                 CPC_E_ENCODE);
    cpc_close(c);
    peer_stop(p);
    cr_expect_eq(p->nframes, 0);
    free(p);
}


Test(client, refuses_malformed_addresses_with_a_reason) {
    static const char *const bad[] = {
        "",          "localhost", "::1:7300",     "[::1]",
        "[::1:7300", "host:",     "127.0.0.1:0",  "127.0.0.1:65536",
        "host:http", ":7300",     "127.0.0.1:-1", "unix:",
    };
    char err[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_expect_null(cpc_connect(bad[i], 1000, err, sizeof(err)),
                       "'%s' should be refused", bad[i]);
        cr_expect(err[0] != '\0', "no reason given for '%s'", bad[i]);
    }
}


Test(client, reports_a_refused_connection) {
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    char addr[64];
    char err[256];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    /* A port that was bound but is not listening refuses connections. */
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));

    cr_expect_null(cpc_connect(addr, 1000, err, sizeof(err)));
    cr_expect(strstr(err, "refused") != NULL, "%s", err);
    close(fd);
}


Test(client, connects_to_ipv6_in_brackets) {
    struct sockaddr_in6 sa;
    socklen_t len = sizeof(sa);
    char addr[64];
    char err[256];
    int lfd = socket(AF_INET6, SOCK_STREAM, 0);
    cpc_t *c;

    memset(&sa, 0, sizeof(sa));
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = in6addr_loopback;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        cr_skip_test("no IPv6 loopback on this machine");
    }
    cr_assert(getsockname(lfd, (struct sockaddr *)&sa, &len) == 0);
    cr_assert(listen(lfd, 1) == 0);
    snprintf(addr, sizeof(addr), "[::1]:%d", ntohs(sa.sin6_port));

    c = cpc_connect(addr, 1000, err, sizeof(err));
    cr_expect_not_null(c, "%s", err);
    cpc_close(c);
    close(lfd);
}
