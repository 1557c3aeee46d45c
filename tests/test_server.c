/*
 * cpstored's network layer, end to end: a real cpstored on the memory
 * backends, real sockets. Misbehaving clients must get a GOAWAY and lose
 * their connection without disturbing anyone else.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frame.h"
#include "pb_encode.h"
#include "harness.h"

#define RL_CHECK  cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK
#define AK_VERIFY cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_VERIFY

static h_proc_t server;


static void start_default(void) {
    h_cpstored_start(&server, NULL, NULL);
}


static void stop_server(void) {
    h_proc_stop(&server);
}


/* A well-behaved client's check still works. */
static void assert_other_client_served(cpc_t *c, int n) {
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;

    snprintf(req.key, sizeof(req.key), "bystander-%d", n);
    req.limit = 10;
    req.window_ms = 60000;
    cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK, "%s",
                 cpc_last_error(c));
    cr_assert_eq(reply.status, 0);
    cr_assert(resp.allowed);
    cr_assert_eq(resp.remaining, 9);
}


/* Read frames until a GOAWAY; returns its status byte. */
static int expect_goaway(int fd) {
    frame_header_t hdr;
    uint8_t payload[4096];

    for (int i = 0; i < 16; i++) {
        int rc = h_raw_read_frame(fd, 5000, &hdr, payload, sizeof(payload));

        cr_assert_eq(rc, 1, "expected a GOAWAY frame, got rc=%d", rc);
        if (hdr.type == FRAME_GOAWAY) {
            return hdr.status;
        }
    }
    cr_assert_fail("no GOAWAY");
    return -1;
}


/* Like expect_goaway, for a GOAWAY that comes after a server timeout. */
static int expect_goaway_slow(int fd) {
    frame_header_t hdr;
    uint8_t payload[4096];
    int rc = h_raw_read_frame(fd, 30000, &hdr, payload, sizeof(payload));

    cr_assert_eq(rc, 1);
    cr_assert_eq(hdr.type, FRAME_GOAWAY);
    return hdr.status;
}


static void assert_pong(int fd) {
    frame_header_t h = {0}, hdr;
    uint8_t buf[FRAME_HEADER_SIZE], resp[16];

    h.type = FRAME_PING;
    frame_encode_header(&h, buf);
    cr_assert(h_raw_write(fd, buf, sizeof(buf)));
    cr_assert_eq(h_raw_read_frame(fd, 5000, &hdr, resp, sizeof(resp)), 1);
    cr_assert_eq(hdr.type, FRAME_PONG);
}


static size_t request_frame(uint8_t *out,
                            uint16_t method,
                            uint32_t id,
                            const uint8_t *payload,
                            size_t len) {
    frame_header_t h = {0};

    h.type = FRAME_REQUEST;
    h.method = method;
    h.request_id = id;
    h.length = (uint32_t)len;
    frame_encode_header(&h, out);
    memcpy(out + FRAME_HEADER_SIZE, payload, len);
    return FRAME_HEADER_SIZE + len;
}


TestSuite(server, .init = start_default, .fini = stop_server, .timeout = 60);


Test(server, health_answers_serving_on_memory_backends) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_HealthCheckResponse resp;
    cpc_reply_t reply;

    cr_assert_eq(cpc_health_check(c, &resp, &reply), CPC_OK);
    cr_assert_eq(reply.status, 0);
    cr_assert_eq(resp.status, cpstore_v1_ServingStatus_SERVING);
    cr_assert_eq(resp.backends_count, 2);
    cr_assert_str_eq(resp.backends[0].kind, "memory");
    cr_assert_str_eq(resp.backends[1].kind, "memory");
    cpc_close(c);
}


Test(server, garbage_gets_goaway_and_others_are_served) {
    cpc_t *good = h_connect(&server);
    int bad = h_raw_connect(server.port);
    uint8_t junk[256];

    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = (uint8_t)(i * 37 + 11);
    }
    h_raw_write(bad, junk, sizeof(junk));
    cr_assert_eq(expect_goaway(bad), 3 /* INVALID_ARGUMENT */);
    cr_assert(h_raw_wait_closed(bad, 5000));
    close(bad);

    assert_other_client_served(good, 1);
    cpc_close(good);
}


Test(server, http_request_is_refused_with_goaway) {
    int bad = h_raw_connect(server.port);
    const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    h_raw_write(bad, http, strlen(http));
    expect_goaway(bad);
    cr_assert(h_raw_wait_closed(bad, 5000));
    close(bad);
}


Test(server, oversized_frame_gets_goaway_before_any_payload) {
    cpc_t *good = h_connect(&server);
    int bad = h_raw_connect(server.port);
    frame_header_t h = {0};
    uint8_t hdr[FRAME_HEADER_SIZE];

    h.type = FRAME_REQUEST;
    h.method = RL_CHECK;
    h.request_id = 1;
    h.length = 512u << 20; /* far above the 1 MiB default */
    frame_encode_header(&h, hdr);
    h_raw_write(bad, hdr, sizeof(hdr));

    cr_assert_eq(expect_goaway(bad), 8 /* RESOURCE_EXHAUSTED */);
    cr_assert(h_raw_wait_closed(bad, 5000));
    close(bad);
    assert_other_client_served(good, 2);
    cpc_close(good);
}


Test(server, truncated_frame_then_close_leaves_server_healthy) {
    cpc_t *good = h_connect(&server);
    int bad = h_raw_connect(server.port);
    uint8_t buf[128];
    uint8_t payload[40] = {0};
    size_t len = request_frame(buf, RL_CHECK, 1, payload, sizeof(payload));

    h_raw_write(bad, buf, len / 2);
    close(bad);
    assert_other_client_served(good, 3);
    cpc_close(good);
}


Test(server, trickled_frame_does_not_block_other_clients) {
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    uint8_t payload[128];
    uint8_t buf[256];
    pb_ostream_t os = pb_ostream_from_buffer(payload, sizeof(payload));
    cpc_t *good = h_connect(&server);
    int slow = h_raw_connect(server.port);
    frame_header_t hdr;
    uint8_t resp[256];
    size_t len;

    strcpy(req.key, "trickle");
    req.limit = 3;
    req.window_ms = 60000;
    cr_assert(pb_encode(&os, cpstore_v1_RateLimitCheckRequest_fields, &req));
    len = request_frame(buf, RL_CHECK, 77, payload, os.bytes_written);

    for (size_t i = 0; i < len; i++) {
        h_raw_write(slow, buf + i, 1);
        if (i % 8 == 0) {
            /* Between the trickled bytes, another client is served. */
            assert_other_client_served(good, 100 + (int)i);
        }
        usleep(2000);
    }
    cr_assert_eq(h_raw_read_frame(slow, 5000, &hdr, resp, sizeof(resp)), 1);
    cr_assert_eq(hdr.type, FRAME_RESPONSE);
    cr_assert_eq(hdr.request_id, 77);
    cr_assert_eq(hdr.status, 0);
    close(slow);
    cpc_close(good);
}


Test(server, undecodable_payload_is_invalid_argument_and_connection_lives) {
    cpc_t *c = h_connect(&server);
    const uint8_t junk[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    cpc_reply_t reply;
    uint32_t id;

    cr_assert_eq(cpc_send_raw(c, RL_CHECK, junk, sizeof(junk), &id), CPC_OK);
    cr_assert_eq(cpc_recv(c, &reply), CPC_OK);
    cr_assert_eq(reply.request_id, id);
    cr_assert_eq(reply.status, 3 /* INVALID_ARGUMENT */);
    cr_assert_eq(reply.error.code, 3);
    assert_other_client_served(c, 4);
    cpc_close(c);
}


Test(server, unknown_method_is_unimplemented_and_connection_lives) {
    cpc_t *c = h_connect(&server);
    cpc_reply_t reply;
    uint32_t id;

    cr_assert_eq(cpc_send_raw(c, 0x7FFF, NULL, 0, &id), CPC_OK);
    cr_assert_eq(cpc_recv(c, &reply), CPC_OK);
    cr_assert_eq(reply.status, 12 /* UNIMPLEMENTED */);
    cr_assert_eq(reply.method, 0x7FFF);
    assert_other_client_served(c, 5);
    cpc_close(c);
}


Test(server, bad_request_fields_are_invalid_argument) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;

    req.limit = 5;
    req.window_ms = 1000; /* no key */
    cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK);
    cr_assert_eq(reply.status, 3);

    strcpy(req.key, "k");
    req.window_ms = 0;
    cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK);
    cr_assert_eq(reply.status, 3);
    cpc_close(c);
}


Test(server, thousand_pipelined_requests_are_all_answered_by_id) {
    enum { N = 1000 };
    cpc_t *c = h_connect(&server);
    static uint8_t seen[N + 1];
    uint32_t ids[N];

    for (int i = 0; i < N; i++) {
        cpstore_v1_RateLimitCheckRequest req =
            cpstore_v1_RateLimitCheckRequest_init_zero;

        snprintf(req.key, sizeof(req.key), "pipe-%d", i);
        req.limit = (uint64_t)i + 1; /* echoed back: proves the match */
        req.window_ms = 60000;
        cr_assert_eq(cpc_send(c, RL_CHECK,
                              cpstore_v1_RateLimitCheckRequest_fields, &req,
                              &ids[i]),
                     CPC_OK);
        cr_assert_eq(ids[i], (uint32_t)i + 1);
    }
    for (int i = 0; i < N; i++) {
        cpstore_v1_RateLimitCheckResponse resp;
        cpc_reply_t reply;

        cr_assert_eq(cpc_recv(c, &reply), CPC_OK, "%s", cpc_last_error(c));
        cr_assert_eq(reply.status, 0);
        cr_assert_eq(reply.method, RL_CHECK);
        cr_assert(reply.request_id >= 1 && reply.request_id <= N);
        cr_assert_eq(seen[reply.request_id], 0, "id %u answered twice",
                     reply.request_id);
        seen[reply.request_id] = 1;
        cr_assert_eq(
            cpc_decode(&reply, cpstore_v1_RateLimitCheckResponse_fields, &resp),
            CPC_OK);
        cr_assert_eq(resp.limit, reply.request_id);
        cr_assert(resp.allowed);
    }
    cpc_close(c);
}


Test(server, hello_announces_version_and_limits) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_HelloAck ack;

    cr_assert_eq(cpc_hello(c, &ack), CPC_OK, "%s", cpc_last_error(c));
    cr_assert_eq(ack.version, 1);
    cr_assert_eq(ack.max_payload, 1u << 20);
    cr_assert_eq(ack.max_in_flight, 1024);
    cpc_close(c);
}


Test(server, ping_gets_pong_with_the_same_payload) {
    int fd = h_raw_connect(server.port);
    frame_header_t h = {0}, hdr;
    uint8_t buf[64], resp[64];

    h.type = FRAME_PING;
    h.length = 4;
    frame_encode_header(&h, buf);
    memcpy(buf + FRAME_HEADER_SIZE, "abcd", 4);
    h_raw_write(fd, buf, FRAME_HEADER_SIZE + 4);
    cr_assert_eq(h_raw_read_frame(fd, 5000, &hdr, resp, sizeof(resp)), 1);
    cr_assert_eq(hdr.type, FRAME_PONG);
    cr_assert_eq(hdr.length, 4);
    cr_assert_arr_eq(resp, "abcd", 4);
    close(fd);
}


Test(server, response_frame_from_a_client_is_a_protocol_error) {
    int fd = h_raw_connect(server.port);
    frame_header_t h = {0};
    uint8_t buf[FRAME_HEADER_SIZE];

    h.type = FRAME_RESPONSE;
    h.request_id = 1;
    frame_encode_header(&h, buf);
    h_raw_write(fd, buf, sizeof(buf));
    cr_assert_eq(expect_goaway(fd), 3);
    cr_assert(h_raw_wait_closed(fd, 5000));
    close(fd);
}


Test(server, sigterm_sends_goaway_and_exits_cleanly) {
    int fd = h_raw_connect(server.port);
    cpc_t *c = h_connect(&server);
    int status;

    /* Make sure the connections are accepted before the signal. */
    assert_other_client_served(c, 6);
    cpc_close(c);
    kill(server.pid, SIGTERM);
    cr_assert_eq(expect_goaway(fd), 14 /* UNAVAILABLE */);
    close(fd);
    status = h_proc_stop(&server);
    cr_assert(WIFEXITED(status), "cpstored did not exit on its own");
    cr_assert_eq(WEXITSTATUS(status), 0);
}


/* Servers with other limits, each started in its own test. */
static void stop_only(void) {
    h_proc_stop(&server);
}

TestSuite(server_limits, .fini = stop_only, .timeout = 60);


Test(server_limits, requests_beyond_max_in_flight_are_resource_exhausted) {
    const char *args[] = {"--max-in-flight=1", "--workers=1", NULL};
    cpstore_v1_VerifyApiKeyRequest req =
        cpstore_v1_VerifyApiKeyRequest_init_zero;
    int exhausted = 0, answered = 0;
    cpc_t *c;

    h_cpstored_start(&server, args, NULL);
    c = h_connect(&server);
    strcpy(req.key, "cpk_dev_not_a_real_key");
    /* Verify runs on a worker thread, so the first request is still in
     * flight while the rest of the pipelined batch is read. */
    for (int i = 0; i < 50; i++) {
        uint32_t id;

        cr_assert_eq(cpc_send(c, AK_VERIFY,
                              cpstore_v1_VerifyApiKeyRequest_fields, &req, &id),
                     CPC_OK);
    }
    for (int i = 0; i < 50; i++) {
        cpc_reply_t reply;

        cr_assert_eq(cpc_recv(c, &reply), CPC_OK);
        answered++;
        if (reply.status == 8) {
            exhausted++;
        } else {
            cr_assert_eq(reply.status, 0);
        }
    }
    cr_assert_eq(answered, 50);
    cr_assert_gt(exhausted, 0);
    cpc_close(c);
}


Test(server_limits, connections_beyond_max_get_goaway) {
    const char *args[] = {"--max-connections=2", NULL};
    int a, b, extra;

    h_cpstored_start(&server, args, NULL);
    /* The start-up probe's connection must be gone before we count. */
    usleep(200 * 1000);
    a = h_raw_connect(server.port);
    b = h_raw_connect(server.port);
    /* Both are served, so both are counted before the third arrives. */
    assert_pong(a);
    assert_pong(b);
    extra = h_raw_connect(server.port);
    cr_assert_eq(expect_goaway(extra), 8 /* RESOURCE_EXHAUSTED */);
    cr_assert(h_raw_wait_closed(extra, 5000));
    close(extra);
    close(a);
    close(b);
}


Test(server_limits, smaller_max_payload_is_enforced) {
    const char *args[] = {"--max-payload=1024", NULL};
    uint8_t buf[FRAME_HEADER_SIZE];
    frame_header_t h = {0};
    int fd;

    h_cpstored_start(&server, args, NULL);
    fd = h_raw_connect(server.port);
    h.type = FRAME_REQUEST;
    h.method = RL_CHECK;
    h.request_id = 1;
    h.length = 1025;
    frame_encode_header(&h, buf);
    h_raw_write(fd, buf, sizeof(buf));
    cr_assert_eq(expect_goaway(fd), 8);
    close(fd);
}


Test(server_limits, half_sent_frame_times_out) {
    const char *args[] = {"--idle-timeout=0", "--frame-timeout=300ms", NULL};
    uint8_t buf[FRAME_HEADER_SIZE];
    frame_header_t h = {0};
    int fd;

    h_cpstored_start(&server, args, NULL);
    fd = h_raw_connect(server.port);
    h.type = FRAME_REQUEST;
    h.method = RL_CHECK;
    h.request_id = 1;
    h.length = 100;
    frame_encode_header(&h, buf);
    h_raw_write(fd, buf, sizeof(buf));
    cr_assert_eq(expect_goaway_slow(fd), 4 /* DEADLINE_EXCEEDED */);
    close(fd);
}


Test(server_limits, bad_flag_is_a_usage_error) {
    const char *argv[] = {CPSTORED_PATH, "--max-payload=banana", NULL};
    int status;
    pid_t pid = fork();

    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 2);
}


/* Resident memory of a process, from /proc, in KiB. */
static long rss_kib(pid_t pid) {
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return kib;
}


/*
 * Clients that send requests but never read the answers: cpstored stops
 * reading from them once a bounded amount of answers is queued, and stays
 * small and responsive meanwhile.
 */
Test(server_limits,
     clients_that_never_read_are_bounded_and_closed,
     .timeout = 120) {
    const char *args[] = {"--frame-timeout=500ms", NULL};
    enum { CONNS = 8 };
    int fds[CONNS];
    uint8_t ping[FRAME_HEADER_SIZE];
    frame_header_t h = {0};
    cpc_t *good;
    long kib;

    h_cpstored_start(&server, args, NULL);
    h.type = FRAME_PING;
    frame_encode_header(&h, ping);
    for (int i = 0; i < CONNS; i++) {
        struct timeval tv = {1, 0};
        int small = 4096;
        int sent = 0;

        fds[i] = h_raw_connect(server.port);
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        setsockopt(fds[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        /* About 8 MB of pings each, far more answers than socket buffers
         * hold, until cpstored stops reading (the send times out). */
        for (int n = 0; n < 350000; n++) {
            if (send(fds[i], ping, sizeof(ping), MSG_NOSIGNAL) !=
                sizeof(ping)) {
                break;
            }
            sent++;
        }
        cr_assert_gt(sent, 1000);
    }
    usleep(1500 * 1000);

    kib = rss_kib(server.pid);
    cr_assert_lt(kib, 100 * 1024, "cpstored holds %ld KiB for %d stuck peers",
                 kib, CONNS);
    good = h_connect(&server);
    assert_other_client_served(good, 7);
    cpc_close(good);

    for (int i = 0; i < CONNS; i++) {
        close(fds[i]);
    }
}


Test(server, half_closed_client_still_gets_its_answers) {
    cpstore_v1_CreateApiKeyRequest req =
        cpstore_v1_CreateApiKeyRequest_init_zero;
    uint8_t payload[256], buf[512], resp[1024];
    pb_ostream_t os = pb_ostream_from_buffer(payload, sizeof(payload));
    frame_header_t hdr;
    int fd = h_raw_connect(server.port);
    size_t len;

    strcpy(req.user_id, "half-closer");
    strcpy(req.scopes[req.scopes_count++], "a:b");
    cr_assert(pb_encode(&os, cpstore_v1_CreateApiKeyRequest_fields, &req));
    len = request_frame(buf, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_CREATE, 9,
                        payload, os.bytes_written);
    cr_assert(h_raw_write(fd, buf, len));
    /* Done sending, still reading: the create runs on a worker thread, so
     * the end of input arrives while it is in flight. */
    shutdown(fd, SHUT_WR);
    cr_assert_eq(h_raw_read_frame(fd, 5000, &hdr, resp, sizeof(resp)), 1);
    cr_assert_eq(hdr.type, FRAME_RESPONSE);
    cr_assert_eq(hdr.request_id, 9);
    cr_assert_eq(hdr.status, 0);
    cr_assert(h_raw_wait_closed(fd, 5000));
    close(fd);
}


Test(server, string_with_a_nul_byte_is_refused) {
    cpc_t *c = h_connect(&server);
    /* VerifyApiKeyRequest{key: "abc\0def"} and RateLimitCheckRequest with
     * key "k\0a", limit 5, window 1000. */
    const uint8_t verify[] = {0x0a, 0x07, 'a', 'b', 'c', 0, 'd', 'e', 'f'};
    const uint8_t check[] = {0x0a, 0x03, 'k',  0,    'a',
                             0x10, 0x05, 0x18, 0xe8, 0x07};
    cpc_reply_t reply;
    uint32_t id;

    cr_assert_eq(cpc_send_raw(c, AK_VERIFY, verify, sizeof(verify), &id),
                 CPC_OK);
    cr_assert_eq(cpc_recv(c, &reply), CPC_OK);
    cr_assert_eq(reply.status, 3, "status %d", reply.status);
    cr_assert_eq(cpc_send_raw(c, RL_CHECK, check, sizeof(check), &id), CPC_OK);
    cr_assert_eq(cpc_recv(c, &reply), CPC_OK);
    cr_assert_eq(reply.status, 3, "status %d", reply.status);
    assert_other_client_served(c, 8);
    cpc_close(c);
}


Test(server_limits, unix_listen_never_deletes_a_file_that_is_not_a_socket) {
    char path[256], listen[300], *out = NULL;
    const char *tmp = getenv("TMPDIR");
    const char *argv[] = {CPSTORED_PATH, listen, NULL};
    FILE *f;
    int status;

    snprintf(path, sizeof(path), "%s/not-a-socket-%d",
             tmp != NULL && *tmp ? tmp : "/tmp", (int)getpid());
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("precious\n", f);
    fclose(f);
    snprintf(listen, sizeof(listen), "--listen=unix:%s", path);

    status = h_run(argv, NULL, 10000, &out);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0, "%s", out);
    cr_assert_not_null(strstr(out, "not a socket"), "%s", out);
    cr_assert_eq(access(path, F_OK), 0, "the file was deleted");
    free(out);
    unlink(path);
}


Test(server_limits, a_file_limit_below_max_connections_is_reported) {
    char cmd[512], *out = NULL;
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};

    snprintf(cmd, sizeof(cmd),
             "ulimit -n 100 && ulimit -Hn 100 && exec %s "
             "--listen=127.0.0.1:%d --max-connections=4096",
             CPSTORED_PATH, h_free_port());
    /* cpstored serves until killed; one second is enough to start. */
    h_run(argv, NULL, 1000, &out);
    cr_assert_not_null(strstr(out, "open file limit 100 is below"), "%s", out);
    free(out);
}


Test(server_limits, a_redis_prefix_with_a_hash_tag_is_a_usage_error) {
    const char *argv[] = {CPSTORED_PATH, "--redis-prefix={tenant}:", NULL};
    char *out = NULL;
    int status = h_run(argv, NULL, 10000, &out);

    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 2, "%s", out);
    cr_assert_not_null(strstr(out, "--redis-prefix"), "%s", out);
    free(out);
}
