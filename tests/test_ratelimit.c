/*
 * RateLimiter through cpstored, on real Redis and on the memory backend.
 *
 * Each behaviour test is defined once (RL_TEST) and runs twice: suite
 * rl_redis against the Redis of CPSTORE_TEST_REDIS_URL, suite rl_memory on
 * cpstored's embedded backend. Concurrency is real: many connections, each
 * from its own thread, firing at one key together.
 */
#include <criterion/criterion.h>

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define RL_PREFIX "cpstore:rl:"

static h_proc_t server;
static int on_redis;
static char redis_url_arg[300];


static void start_redis_backend(void) {
    const char *args[] = {redis_url_arg, NULL};

    snprintf(redis_url_arg, sizeof(redis_url_arg), "--redis=%s",
             h_redis_url());
    on_redis = 1;
    h_cpstored_start(&server, args, NULL);
}


static void start_memory_backend(void) {
    on_redis = 0;
    h_cpstored_start(&server, NULL, NULL);
}


static void stop_server(void) {
    h_proc_stop(&server);
}


#define RL_TEST(name)                                                          \
    static void name##_body(void);                                             \
    Test(rl_redis, name, .init = start_redis_backend, .fini = stop_server,     \
         .timeout = 60) {                                                      \
        name##_body();                                                         \
    }                                                                          \
    Test(rl_memory, name, .init = start_memory_backend, .fini = stop_server,   \
         .timeout = 60) {                                                      \
        name##_body();                                                         \
    }                                                                          \
    static void name##_body(void)


/* A plain synchronous Redis connection for looking at what cpstored wrote. */
static redisContext *redis_open(void) {
    const char *url = h_redis_url();
    char host[128] = "127.0.0.1";
    int port = 6379;
    redisContext *r;

    cr_assert(sscanf(url, "redis://%127[^:/]:%d", host, &port) >= 1,
              "cannot parse %s", url);
    r = redisConnect(host, port);
    cr_assert(r != NULL && r->err == 0, "redis connect %s", url);
    return r;
}


static long long redis_int(redisContext *r, const char *fmt, const char *key) {
    redisReply *reply = redisCommand(r, fmt, key);
    long long v;

    cr_assert_not_null(reply);
    cr_assert_eq(reply->type, REDIS_REPLY_INTEGER, "reply type %d",
                 reply->type);
    v = reply->integer;
    freeReplyObject(reply);
    return v;
}


static cpstore_v1_RateLimitCheckResponse check(cpc_t *c, const char *key,
                                               uint64_t limit,
                                               uint64_t window_ms,
                                               uint64_t cost) {
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;

    snprintf(req.key, sizeof(req.key), "%s", key);
    req.limit = limit;
    req.window_ms = window_ms;
    req.cost = cost;
    cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK, "%s",
                 cpc_last_error(c));
    cr_assert_eq(reply.status, 0, "status %d: %s", reply.status,
                 reply.error.message);
    cr_assert_leq(resp.remaining, limit);
    return resp;
}


typedef struct racer {
    pthread_barrier_t *start;
    const char *key;
    uint64_t limit;
    int requests;
    int allowed;
    int answered;
} racer_t;


/* One connection: wait for the others, then pipeline all its checks. */
static void *racer_main(void *arg) {
    racer_t *r = arg;
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;

    snprintf(req.key, sizeof(req.key), "%s", r->key);
    req.limit = r->limit;
    req.window_ms = 60000;
    pthread_barrier_wait(r->start);
    for (int i = 0; i < r->requests; i++) {
        uint32_t id;

        cr_assert_eq(cpc_send(c,
                              cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK,
                              cpstore_v1_RateLimitCheckRequest_fields, &req, &id),
                     CPC_OK);
    }
    for (int i = 0; i < r->requests; i++) {
        cpstore_v1_RateLimitCheckResponse resp;
        cpc_reply_t reply;

        cr_assert_eq(cpc_recv(c, &reply), CPC_OK, "%s", cpc_last_error(c));
        cr_assert_eq(reply.status, 0);
        cr_assert_eq(cpc_decode(&reply, cpstore_v1_RateLimitCheckResponse_fields,
                                &resp),
                     CPC_OK);
        r->answered++;
        r->allowed += resp.allowed;
    }
    cpc_close(c);
    return NULL;
}


/* conns connections x per_conn checks at once; returns how many passed. */
static int race(const char *key, uint64_t limit, int conns, int per_conn) {
    pthread_t threads[64];
    racer_t racers[64];
    pthread_barrier_t start;
    int allowed = 0;

    cr_assert_leq(conns, 64);
    pthread_barrier_init(&start, NULL, (unsigned)conns);
    for (int i = 0; i < conns; i++) {
        racers[i] = (racer_t){&start, key, limit, per_conn, 0, 0};
        pthread_create(&threads[i], NULL, racer_main, &racers[i]);
    }
    for (int i = 0; i < conns; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(racers[i].answered, per_conn);
        allowed += racers[i].allowed;
    }
    pthread_barrier_destroy(&start);
    return allowed;
}


RL_TEST(concurrent_checks_from_20_connections_admit_exactly_the_limit) {
    char key[96];

    h_unique(key, sizeof(key), "race200");
    cr_assert_eq(race(key, 50, 20, 10), 50);
}


RL_TEST(ten_checks_together_with_limit_5_admit_5_and_store_5) {
    cpc_t *c;
    char key[96], full[128];
    redisContext *r = NULL;

    h_unique(key, sizeof(key), "race10");
    snprintf(full, sizeof(full), RL_PREFIX "%s", key);
    cr_assert_eq(race(key, 5, 10, 1), 5);
    if (on_redis) {
        r = redis_open();
        cr_assert_eq(redis_int(r, "ZCARD %s", full), 5);
    }

    /* Nothing was stored for the five denied: the window is exactly full,
     * and one more denial stores nothing either. */
    c = h_connect(&server);
    cr_assert_not(check(c, key, 5, 60000, 1).allowed);
    cr_assert_eq(check(c, key, 5, 60000, 1).remaining, 0);
    cpc_close(c);
    if (r != NULL) {
        cr_assert_eq(redis_int(r, "ZCARD %s", full), 5);
        redisFree(r);
    }
}


RL_TEST(denied_request_consumes_nothing) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckResponse r;
    char key[96];

    h_unique(key, sizeof(key), "consume");
    r = check(c, key, 10, 60000, 8);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 2);

    r = check(c, key, 10, 60000, 5);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.remaining, 2);
    cr_assert_gt(r.retry_after_ms, 0);

    r = check(c, key, 10, 60000, 1);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 1);
    cpc_close(c);
}


RL_TEST(cost_above_the_limit_is_denied) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckResponse r;
    char key[96];

    h_unique(key, sizeof(key), "costly");
    r = check(c, key, 5, 60000, 6);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.remaining, 5);
    /* and it consumed nothing */
    r = check(c, key, 5, 60000, 5);
    cr_assert(r.allowed);
    cpc_close(c);
}


RL_TEST(limit_zero_denies) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckResponse r;
    char key[96];

    h_unique(key, sizeof(key), "zero");
    r = check(c, key, 0, 60000, 1);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.remaining, 0);
    cr_assert_eq(r.limit, 0);
    cpc_close(c);
}


RL_TEST(retry_after_is_exact_for_a_lone_caller) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckResponse r;
    char key[96];

    h_unique(key, sizeof(key), "retry");
    cr_assert(check(c, key, 2, 1500, 1).allowed);
    cr_assert(check(c, key, 2, 1500, 1).allowed);
    r = check(c, key, 2, 1500, 1);
    cr_assert_not(r.allowed);
    cr_assert_gt(r.retry_after_ms, 0);
    cr_assert_leq(r.retry_after_ms, 1500);
    cr_assert_geq(r.reset_after_ms, r.retry_after_ms);

    /* Well before retry_after: still denied. */
    if (r.retry_after_ms > 600) {
        usleep((useconds_t)(r.retry_after_ms - 500) * 1000);
        cr_assert_not(check(c, key, 2, 1500, 1).allowed);
    }
    /* At retry_after (plus scheduling slack): allowed. */
    r = check(c, key, 2, 1500, 1);
    cr_assert_not(r.allowed);
    usleep((useconds_t)(r.retry_after_ms + 20) * 1000);
    cr_assert(check(c, key, 2, 1500, 1).allowed);
    cpc_close(c);
}


RL_TEST(window_slides_and_frees_units) {
    cpc_t *c = h_connect(&server);
    char key[96];

    h_unique(key, sizeof(key), "slide");
    cr_assert(check(c, key, 1, 300, 1).allowed);
    cr_assert_not(check(c, key, 1, 300, 1).allowed);
    usleep(400 * 1000);
    cr_assert(check(c, key, 1, 300, 1).allowed);
    cpc_close(c);
}


Test(rl_redis, key_has_an_expiry_of_the_window_after_every_check,
     .init = start_redis_backend, .fini = stop_server, .timeout = 60) {
    redisContext *r = redis_open();
    cpc_t *c = h_connect(&server);
    char key[96], full[128];

    h_unique(key, sizeof(key), "ttl");
    snprintf(full, sizeof(full), RL_PREFIX "%s", key);
    for (int i = 0; i < 6; i++) {
        long long pttl;

        /* allowed, allowed, allowed, then denied ones */
        check(c, key, 3, 20000, 1);
        pttl = redis_int(r, "PTTL %s", full);
        cr_assert_gt(pttl, 0, "check %d left PTTL %lld", i, pttl);
        cr_assert_leq(pttl, 20000);
        /* Never below what is needed for the newest member to expire. */
        cr_assert_gt(pttl, 20000 - 5000);
    }
    cpc_close(c);
    redisFree(r);
}


Test(rl_redis, members_are_unique_within_one_millisecond,
     .init = start_redis_backend, .fini = stop_server, .timeout = 60) {
    redisContext *r = redis_open();
    char key[96], full[128];

    h_unique(key, sizeof(key), "uniq");
    snprintf(full, sizeof(full), RL_PREFIX "%s", key);
    /* 40 checks from 4 connections land in very few milliseconds; each
     * admitted unit must be its own member. */
    cr_assert_eq(race(key, 1000, 4, 10), 40);
    cr_assert_eq(redis_int(r, "ZCARD %s", full), 40);
    redisFree(r);
}


Test(rl_redis, check_after_script_flush_succeeds,
     .init = start_redis_backend, .fini = stop_server, .timeout = 60) {
    redisContext *r = redis_open();
    cpc_t *c = h_connect(&server);
    redisReply *reply;
    char key[96];

    h_unique(key, sizeof(key), "flush");
    cr_assert(check(c, key, 5, 60000, 1).allowed);
    reply = redisCommand(r, "SCRIPT FLUSH");
    cr_assert_eq(reply->type, REDIS_REPLY_STATUS);
    freeReplyObject(reply);

    cpstore_v1_RateLimitCheckResponse resp = check(c, key, 5, 60000, 1);
    cr_assert(resp.allowed);
    cr_assert_eq(resp.remaining, 3);
    cpc_close(c);
    redisFree(r);
}


/* cpstored against a redis-server of its own, which the test stops. */
Test(rl_redis_outage, check_is_answered_while_redis_is_down_and_recovers,
     .timeout = 120) {
    h_proc_t redis;
    char arg[128];
    const char *args[] = {arg, NULL};
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;
    int port, recovered = 0;
    cpc_t *c;

    h_redis_start(&redis, 0);
    port = redis.port;
    snprintf(arg, sizeof(arg), "--redis=redis://127.0.0.1:%d", port);
    h_cpstored_start(&server, args, NULL);
    c = h_connect(&server);
    strcpy(req.key, "outage");
    req.limit = 100;
    req.window_ms = 60000;
    cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK);
    cr_assert_eq(reply.status, 0);

    h_proc_stop(&redis);
    /* Budget 500 ms; the client waits 5 s, so an answer means the server
     * kept the deadline rather than hanging on Redis. */
    cpc_set_budget(c, 500);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK,
                     "no answer while Redis is down: %s", cpc_last_error(c));
        cr_assert(reply.status == 14 || reply.status == 4,
                  "status %d while Redis is down", reply.status);
    }

    h_redis_start(&redis, port);
    for (int i = 0; i < 150 && !recovered; i++) {
        cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK);
        recovered = reply.status == 0;
        if (!recovered) {
            usleep(100 * 1000);
        }
    }
    cr_assert(recovered, "checks did not succeed after Redis came back");
    cr_assert(resp.allowed);
    cpc_close(c);
    h_proc_stop(&server);
    h_proc_stop(&redis);
}


Test(rl_redis_outage, check_is_answered_when_redis_hangs, .timeout = 120) {
    h_proc_t redis;
    char arg[128];
    const char *args[] = {arg, NULL};
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;
    int recovered = 0;
    cpc_t *c;

    h_redis_start(&redis, 0);
    snprintf(arg, sizeof(arg), "--redis=redis://127.0.0.1:%d", redis.port);
    h_cpstored_start(&server, args, NULL);
    c = h_connect(&server);
    strcpy(req.key, "hang");
    req.limit = 100;
    req.window_ms = 60000;
    cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK);
    cr_assert_eq(reply.status, 0);

    /* A stopped process keeps its socket open and never answers. */
    kill(redis.pid, SIGSTOP);
    cpc_set_budget(c, 300);
    cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK,
                 "no answer while Redis hangs: %s", cpc_last_error(c));
    cr_assert(reply.status == 4 || reply.status == 14, "status %d",
              reply.status);
    kill(redis.pid, SIGCONT);

    for (int i = 0; i < 150 && !recovered; i++) {
        cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK);
        recovered = reply.status == 0;
        if (!recovered) {
            usleep(100 * 1000);
        }
    }
    cr_assert(recovered, "checks did not succeed after Redis resumed");
    cpc_close(c);
    h_proc_stop(&server);
    h_proc_stop(&redis);
}


Test(rl_memory, health_reports_memory_backend, .init = start_memory_backend,
     .fini = stop_server) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_HealthCheckResponse resp;
    cpc_reply_t reply;

    cr_assert_eq(cpc_health_check(c, &resp, &reply), CPC_OK);
    cr_assert_eq(resp.status, cpstore_v1_ServingStatus_SERVING);
    cr_assert_str_eq(resp.backends[0].kind, "memory");
    cpc_close(c);
}


Test(rl_redis_outage, health_follows_redis, .timeout = 120) {
    h_proc_t redis;
    char arg[128];
    const char *args[] = {arg, NULL};
    cpstore_v1_HealthCheckResponse resp;
    cpc_reply_t reply;
    int serving = 0;
    cpc_t *c;

    h_redis_start(&redis, 0);
    snprintf(arg, sizeof(arg), "--redis=redis://127.0.0.1:%d", redis.port);
    h_cpstored_start(&server, args, NULL);
    c = h_connect(&server);
    for (int i = 0; i < 100 && !serving; i++) {
        cr_assert_eq(cpc_health_check(c, &resp, &reply), CPC_OK);
        serving = resp.status == cpstore_v1_ServingStatus_SERVING;
        if (!serving) {
            usleep(50 * 1000);
        }
    }
    cr_assert(serving);
    cr_assert_str_eq(resp.backends[0].kind, "redis");
    cr_assert(resp.backends[0].up);

    h_proc_stop(&redis);
    serving = 1;
    for (int i = 0; i < 100 && serving; i++) {
        cr_assert_eq(cpc_health_check(c, &resp, &reply), CPC_OK);
        serving = resp.status == cpstore_v1_ServingStatus_SERVING;
        if (serving) {
            usleep(50 * 1000);
        }
    }
    cr_assert_not(serving, "still SERVING with Redis down");
    cr_assert_not(resp.backends[0].up);
    cpc_close(c);
    h_proc_stop(&server);
}
