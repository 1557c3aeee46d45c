/*
 * RateLimiter through cpstored, on real Redis and on the memory backend.
 *
 * Each behaviour test is defined once (RL_TEST) and runs twice: suite
 * rl_redis against the Redis of CPSTORE_TEST_REDIS_URL, suite rl_memory on
 * cpstored's embedded backend. Both start cpstored with a configuration
 * file of their own (CONFIG_POLICIES), which the reload tests rewrite
 * before sending SIGHUP. Concurrency is real: many connections, each from
 * its own thread, firing at the same keys together. The rl_redis_outage
 * suite runs cpstored against a redis-server of its own, which it stops or
 * freezes.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#include "cpstore/v1/ratelimit.pb-c.h"

#define RL_PREFIX "cpstore:rl:"

/* The policies every RL_TEST server starts with. */
#define CONFIG_POLICIES                                                        \
    "[policy.three_an_hour]\n"                                                 \
    "limit = 3\n"                                                              \
    "window = 1h\n"                                                            \
    "\n"                                                                       \
    "[policy.two_a_minute]\n"                                                  \
    "limit = 2\n"                                                              \
    "window = 1m\n"

static h_proc_t server;
static int on_redis;
static char redis_url_arg[300];
static char config_path[512];
static char config_arg[600];


/* Write text to config_path, whole, by renaming a finished file over it so
 * that a reload never reads half a file. */
static void write_config(const char *text) {
    char tmp[600];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.new", config_path);
    f = fopen(tmp, "w");
    cr_assert_not_null(f, "%s: %s", tmp, strerror(errno));
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, config_path), 0, "rename: %s", strerror(errno));
}


/* A fresh configuration file path, holding text, and the --config flag. */
static void make_config(const char *text) {
    const char *tmp = getenv("TMPDIR");
    char name[128];

    h_unique(name, sizeof(name), "cpstored-conf");
    snprintf(config_path, sizeof(config_path), "%s/%s.ini", tmp ? tmp : "/tmp",
             name);
    snprintf(config_arg, sizeof(config_arg), "--config=%s", config_path);
    write_config(text);
}


static void start_redis_backend(void) {
    const char *args[] = {redis_url_arg, config_arg, NULL};

    snprintf(redis_url_arg, sizeof(redis_url_arg), "--redis=%s", h_redis_url());
    make_config(CONFIG_POLICIES);
    on_redis = 1;
    h_cpstored_start(&server, args, NULL);
}


static void start_memory_backend(void) {
    const char *args[] = {config_arg, NULL};

    make_config(CONFIG_POLICIES);
    on_redis = 0;
    h_cpstored_start(&server, args, NULL);
}


static void stop_server(void) {
    h_proc_stop(&server);
    if (config_path[0] != '\0') {
        unlink(config_path);
    }
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


/* One Check; the reply (status, error) goes to *reply and, when OK, the
 * response to *resp. */
static void check_call(cpc_t *c,
                       const char *key,
                       uint64_t limit,
                       uint64_t window_ms,
                       uint64_t cost,
                       cpstore_v1_RateLimitCheckResponse *resp,
                       cpc_reply_t *reply) {
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;

    snprintf(req.key, sizeof(req.key), "%s", key);
    req.limit = limit;
    req.window_ms = window_ms;
    req.cost = cost;
    memset(resp, 0, sizeof(*resp));
    cr_assert_eq(cpc_ratelimit_check(c, &req, resp, reply), CPC_OK, "%s",
                 cpc_last_error(c));
}


static cpstore_v1_RateLimitCheckResponse check(cpc_t *c,
                                               const char *key,
                                               uint64_t limit,
                                               uint64_t window_ms,
                                               uint64_t cost) {
    cpstore_v1_RateLimitCheckResponse resp;
    cpc_reply_t reply;

    check_call(c, key, limit, window_ms, cost, &resp, &reply);
    cr_assert_eq(reply.status, 0, "status %d: %s", reply.status,
                 reply.error.message);
    cr_assert_leq(resp.remaining, limit);
    return resp;
}


typedef struct racer {
    const h_proc_t *target;
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
    cpc_t *c = h_connect(r->target);
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;

    snprintf(req.key, sizeof(req.key), "%s", r->key);
    req.limit = r->limit;
    req.window_ms = 60000;
    pthread_barrier_wait(r->start);
    for (int i = 0; i < r->requests; i++) {
        uint32_t id;

        cr_assert_eq(
            cpc_send(c, cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK,
                     cpstore_v1_RateLimitCheckRequest_fields, &req, &id),
            CPC_OK);
    }
    for (int i = 0; i < r->requests; i++) {
        cpstore_v1_RateLimitCheckResponse resp;
        cpc_reply_t reply;

        cr_assert_eq(cpc_recv(c, &reply), CPC_OK, "%s", cpc_last_error(c));
        cr_assert_eq(reply.status, 0);
        cr_assert_eq(
            cpc_decode(&reply, cpstore_v1_RateLimitCheckResponse_fields, &resp),
            CPC_OK);
        r->answered++;
        r->allowed += resp.allowed;
    }
    cpc_close(c);
    return NULL;
}


/* A second cpstored on the same Redis, for the two-instance races. */
static h_proc_t second;
static int two_instances;


/* conns connections x per_conn checks at once; returns how many passed.
 * With two_instances, odd connections go to the second cpstored. */
static int race(const char *key, uint64_t limit, int conns, int per_conn) {
    pthread_t threads[64];
    racer_t racers[64];
    pthread_barrier_t start;
    int allowed = 0;

    cr_assert_leq(conns, 64);
    pthread_barrier_init(&start, NULL, (unsigned)conns);
    for (int i = 0; i < conns; i++) {
        const h_proc_t *target =
            two_instances && i % 2 == 1 ? &second : &server;

        racers[i] = (racer_t){target, &start, key, limit, per_conn, 0, 0};
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


Test(rl_redis,
     key_has_an_expiry_of_the_window_after_every_check,
     .init = start_redis_backend,
     .fini = stop_server,
     .timeout = 60) {
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


Test(rl_redis,
     members_are_unique_within_one_millisecond,
     .init = start_redis_backend,
     .fini = stop_server,
     .timeout = 60) {
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


Test(rl_redis,
     check_after_script_flush_succeeds,
     .init = start_redis_backend,
     .fini = stop_server,
     .timeout = 60) {
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
Test(rl_redis_outage,
     check_is_answered_while_redis_is_down_and_recovers,
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


Test(rl_memory,
     health_reports_memory_backend,
     .init = start_memory_backend,
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


/* ---- several limits at once (CheckMany) ------------------------------ */

typedef struct lim {
    const char *key;
    uint64_t limit;
    uint64_t window_ms;
    uint64_t cost;
    const char *policy; /* NULL: limit and window_ms apply */
} lim_t;


static void many_request(const lim_t *l,
                         size_t n,
                         cpstore_v1_RateLimitCheckManyRequest *req) {
    memset(req, 0, sizeof(*req));
    cr_assert_leq(n, 16);
    req->checks_count = (pb_size_t)n;
    for (size_t i = 0; i < n; i++) {
        cpstore_v1_RateLimitCheckRequest *q = &req->checks[i];

        snprintf(q->key, sizeof(q->key), "%s", l[i].key);
        snprintf(q->policy, sizeof(q->policy), "%s",
                 l[i].policy ? l[i].policy : "");
        q->limit = l[i].limit;
        q->window_ms = l[i].window_ms;
        q->cost = l[i].cost;
    }
}


/* One CheckMany; the reply (status, error) goes to *reply and, when OK,
 * the response to *resp. */
static void many_call(cpc_t *c,
                      const lim_t *l,
                      size_t n,
                      cpstore_v1_RateLimitCheckManyResponse *resp,
                      cpc_reply_t *reply) {
    cpstore_v1_RateLimitCheckManyRequest req;

    many_request(l, n, &req);
    memset(resp, 0, sizeof(*resp));
    cr_assert_eq(
        cpc_call(c, cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK_MANY,
                 cpstore_v1_RateLimitCheckManyRequest_fields, &req,
                 cpstore_v1_RateLimitCheckManyResponse_fields, resp, reply),
        CPC_OK, "%s", cpc_last_error(c));
}


/* One CheckMany that must succeed, with one consistent result per check. */
static cpstore_v1_RateLimitCheckManyResponse
many(cpc_t *c, const lim_t *l, size_t n) {
    cpstore_v1_RateLimitCheckManyResponse resp;
    cpc_reply_t reply;
    int first_denied = -1;

    many_call(c, l, n, &resp, &reply);
    cr_assert_eq(reply.status, 0, "status %d: %s", reply.status,
                 reply.error.message);
    cr_assert_eq(resp.results_count, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_leq(resp.results[i].remaining, resp.results[i].limit);
        if (!resp.results[i].allowed && first_denied < 0) {
            first_denied = (int)i;
        }
    }
    cr_assert_eq(resp.allowed, first_denied < 0);
    cr_assert_eq(resp.denied_index, first_denied);
    if (first_denied >= 0) {
        cr_assert_str_eq(resp.denied_key, l[first_denied].key);
    } else {
        cr_assert_str_empty(resp.denied_key);
    }
    return resp;
}


/* Units key holds now, seen through a check that cannot fit (a cost above
 * the limit consumes nothing), so it works on both backends. */
static uint64_t held(cpc_t *c, const char *key, uint64_t limit) {
    cpstore_v1_RateLimitCheckResponse r =
        check(c, key, limit, 60000, limit + 1);

    cr_assert_not(r.allowed);
    return limit - r.remaining;
}


static long long zcard(const char *key) {
    redisContext *r = redis_open();
    char full[256];
    long long n;

    snprintf(full, sizeof(full), RL_PREFIX "%s", key);
    n = redis_int(r, "ZCARD %s", full);
    redisFree(r);
    return n;
}


/* Keys of one test that share a hash tag: "{<unique>}:<suffix>". */
static void tagged(char *out, size_t len, const char *tag, const char *sfx) {
    snprintf(out, len, "{%s}:%s", tag, sfx);
}


RL_TEST(check_many_denied_by_one_limit_leaves_every_counter_unchanged) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckManyResponse r;
    char tag[96], a[128], b[128], d[128];

    h_unique(tag, sizeof(tag), "many");
    tagged(a, sizeof(a), tag, "a");
    tagged(b, sizeof(b), tag, "b");
    tagged(d, sizeof(d), tag, "d");
    /* a already holds 4 units of 10; b is full. */
    cr_assert(check(c, a, 10, 60000, 4).allowed);
    cr_assert(check(c, b, 2, 60000, 2).allowed);

    const lim_t l[] = {
        {a, 10, 60000, 1, NULL},
        {b, 2, 60000, 1, NULL},
        {d, 10, 60000, 3, NULL},
    };
    r = many(c, l, 3);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.denied_index, 1);
    cr_assert_str_eq(r.denied_key, b);
    cr_assert(r.results[0].allowed, "a alone has room");
    cr_assert_eq(r.results[0].remaining, 6);
    cr_assert_not(r.results[1].allowed);
    cr_assert_eq(r.results[1].remaining, 0);
    cr_assert_gt(r.results[1].retry_after_ms, 0);
    cr_assert(r.results[2].allowed);
    cr_assert_eq(r.results[2].remaining, 10);
    for (int i = 0; i < 3; i++) {
        cr_assert_not(r.results[i].fallback);
    }

    if (on_redis) {
        cr_assert_eq(zcard(a), 4);
        cr_assert_eq(zcard(b), 2);
        cr_assert_eq(zcard(d), 0);
    }
    cr_assert_eq(held(c, a, 10), 4);
    cr_assert_eq(held(c, b, 2), 2);
    cr_assert_eq(held(c, d, 10), 0);
    cpc_close(c);
}


RL_TEST(check_many_admitted_consumes_on_every_limit) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckManyResponse r;
    char tag[96], a[128], b[128];

    h_unique(tag, sizeof(tag), "many");
    tagged(a, sizeof(a), tag, "minute");
    tagged(b, sizeof(b), tag, "hour");
    const lim_t l[] = {
        {a, 5, 60000, 2, NULL},
        {b, 5, 3600000, 3, NULL},
    };

    r = many(c, l, 2);
    cr_assert(r.allowed);
    cr_assert_eq(r.denied_index, -1);
    cr_assert_eq(r.results[0].limit, 5);
    cr_assert_eq(r.results[0].remaining, 3);
    cr_assert_eq(r.results[1].remaining, 2);
    cr_assert_leq(r.results[0].reset_after_ms, 60000);
    cr_assert_gt(r.results[1].reset_after_ms, 60000, "b's own window");
    if (on_redis) {
        cr_assert_eq(zcard(a), 2);
        cr_assert_eq(zcard(b), 3);
    }

    /* b has no room for 3 more: denied by b, and a keeps what it had. */
    r = many(c, l, 2);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.denied_index, 1);
    cr_assert_eq(r.results[0].remaining, 3);
    cr_assert_eq(held(c, a, 5), 2);
    cr_assert_eq(held(c, b, 5), 3);
    cpc_close(c);
}


RL_TEST(check_many_names_the_first_limit_that_denies) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckManyResponse r;
    char tag[96], a[128], b[128], d[128];

    h_unique(tag, sizeof(tag), "many");
    tagged(a, sizeof(a), tag, "free");
    tagged(b, sizeof(b), tag, "zero");
    tagged(d, sizeof(d), tag, "full");
    cr_assert(check(c, d, 1, 60000, 1).allowed);
    const lim_t l[] = {
        {a, 5, 60000, 1, NULL},
        {b, 0, 60000, 1, NULL},
        {d, 1, 60000, 1, NULL},
    };

    r = many(c, l, 3);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.denied_index, 1);
    cr_assert_str_eq(r.denied_key, b);
    cr_assert_eq(r.results[1].retry_after_ms, 0, "limit 0 never admits");
    cr_assert_not(r.results[2].allowed, "the second denial is reported too");
    cr_assert_gt(r.results[2].retry_after_ms, 0);
    cr_assert_eq(held(c, a, 5), 0);
    cpc_close(c);
}


RL_TEST(check_many_refuses_a_repeated_key_and_a_wrong_number_of_checks) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckManyResponse r;
    Cpstore__V1__RateLimitCheckManyRequest big =
        CPSTORE__V1__RATE_LIMIT_CHECK_MANY_REQUEST__INIT;
    Cpstore__V1__RateLimitCheckRequest checks[17];
    Cpstore__V1__RateLimitCheckRequest *list[17];
    char keys[17][128];
    uint8_t buf[8192];
    size_t len;
    cpc_reply_t reply;
    char tag[96], a[128];
    uint32_t id;

    h_unique(tag, sizeof(tag), "many");
    tagged(a, sizeof(a), tag, "a");
    const lim_t twice[] = {
        {a, 5, 60000, 1, NULL},
        {"other", 5, 60000, 1, NULL},
        {a, 9, 1000, 1, NULL},
    };
    many_call(c, twice, 3, &r, &reply);
    cr_assert_eq(reply.status, 3, "status %d", reply.status);
    cr_assert(strstr(reply.error.message, "checks[2]") != NULL, "%s",
              reply.error.message);
    cr_assert_eq(held(c, a, 5), 0, "a refused call consumes nothing");

    many_call(c, twice, 0, &r, &reply);
    cr_assert_eq(reply.status, 3, "no checks: status %d", reply.status);

    /* 17 checks: more than the client library can encode, so packed here
     * with protobuf-c. */
    for (int i = 0; i < 17; i++) {
        cpstore__v1__rate_limit_check_request__init(&checks[i]);
        snprintf(keys[i], sizeof(keys[i]), "{%s}:%d", tag, i);
        checks[i].key = keys[i];
        checks[i].limit = 5;
        checks[i].window_ms = 60000;
        list[i] = &checks[i];
    }
    big.n_checks = 17;
    big.checks = list;
    len = cpstore__v1__rate_limit_check_many_request__pack(&big, buf);
    cr_assert_lt(len, sizeof(buf));
    cr_assert_eq(
        cpc_send_raw(
            c, cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK_MANY, buf,
            len, &id),
        CPC_OK);
    cr_assert_eq(cpc_recv(c, &reply), CPC_OK);
    cr_assert_eq(reply.request_id, id);
    cr_assert_eq(reply.status, 3, "17 checks: status %d", reply.status);

    /* 16 are fine. */
    big.n_checks = 16;
    len = cpstore__v1__rate_limit_check_many_request__pack(&big, buf);
    cr_assert_eq(
        cpc_send_raw(
            c, cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK_MANY, buf,
            len, &id),
        CPC_OK);
    cr_assert_eq(cpc_recv(c, &reply), CPC_OK);
    cr_assert_eq(reply.status, 0, "16 checks: status %d", reply.status);
    cr_assert_eq(held(c, keys[15], 5), 1);
    cpc_close(c);
}


/* Expect reply to be INVALID_ARGUMENT with `part` in its message. */
static void expect_invalid(const cpc_reply_t *reply, const char *part) {
    cr_assert_eq(reply->status, 3, "status %d: %s", reply->status,
                 reply->error.message);
    cr_assert(strstr(reply->error.message, part) != NULL,
              "\"%s\" not in \"%s\"", part, reply->error.message);
}


RL_TEST(a_cost_above_1000_or_a_limit_above_100000_is_invalid) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckResponse r;
    cpstore_v1_RateLimitCheckManyResponse m;
    cpc_reply_t reply;
    char tag[96], a[128], b[128];

    h_unique(tag, sizeof(tag), "bounds");
    tagged(a, sizeof(a), tag, "a");
    tagged(b, sizeof(b), tag, "b");

    check_call(c, a, 5000, 60000, 1001, &r, &reply);
    expect_invalid(&reply, "cost is above 1000");
    check_call(c, a, 100001, 60000, 1, &r, &reply);
    expect_invalid(&reply, "limit is above 100000");

    /* In a CheckMany, the message names the check. */
    const lim_t big_cost[] = {{a, 10, 60000, 1, NULL},
                              {b, 5000, 60000, 1001, NULL}};
    many_call(c, big_cost, 2, &m, &reply);
    expect_invalid(&reply, "checks[1]: cost is above 1000");
    const lim_t big_limit[] = {{a, 100001, 60000, 1, NULL},
                               {b, 10, 60000, 1, NULL}};
    many_call(c, big_limit, 2, &m, &reply);
    expect_invalid(&reply, "checks[0]: limit is above 100000");

    /* Nothing was consumed, and the bounds themselves are allowed: a holds
     * no unit, so all 1000 of a limit of 1000 fit. */
    r = check(c, a, 1000, 60000, 1000);
    cr_assert(r.allowed, "a refused call consumed nothing");
    cr_assert_eq(r.remaining, 0);
    r = check(c, b, 100000, 60000, 1000);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 99000);
    if (on_redis) {
        cr_assert_eq(zcard(a), 1000);
        cr_assert_eq(zcard(b), 1000);
    }
    cpc_close(c);
}


/*
 * One call may add at most 1000 units in all, however many checks it has:
 * each check within its own bound is not enough. A cost of 0 counts as the
 * 1 it means.
 */
RL_TEST(
    check_many_whose_costs_add_up_above_1000_is_invalid_and_consumes_nothing) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckManyResponse m;
    cpc_reply_t reply;
    char tag[96], a[128], b[128], d[128];

    h_unique(tag, sizeof(tag), "sum");
    tagged(a, sizeof(a), tag, "a");
    tagged(b, sizeof(b), tag, "b");
    tagged(d, sizeof(d), tag, "d");

    const lim_t over[] = {
        {a, 500, 60000, 400, NULL},
        {b, 500, 60000, 400, NULL},
        {d, 500, 60000, 201, NULL},
    };
    many_call(c, over, 3, &m, &reply);
    expect_invalid(&reply, "add up to 1001");
    cr_assert(strstr(reply.error.message, "1000") != NULL, "%s",
              reply.error.message);

    const lim_t over_by_a_zero[] = {
        {a, 500, 60000, 500, NULL},
        {b, 500, 60000, 500, NULL},
        {d, 500, 60000, 0, NULL},
    };
    many_call(c, over_by_a_zero, 3, &m, &reply);
    expect_invalid(&reply, "add up to 1001");

    cr_assert_eq(held(c, a, 500), 0, "a refused call consumes nothing");
    cr_assert_eq(held(c, b, 500), 0);
    cr_assert_eq(held(c, d, 500), 0);
    if (on_redis) {
        cr_assert_eq(zcard(a), 0);
        cr_assert_eq(zcard(b), 0);
        cr_assert_eq(zcard(d), 0);
    }

    /* Exactly 1000 in all is allowed, and consumed on every limit. */
    const lim_t at_the_cap[] = {
        {a, 500, 60000, 500, NULL},
        {b, 500, 60000, 499, NULL},
        {d, 500, 60000, 1, NULL},
    };
    m = many(c, at_the_cap, 3);
    cr_assert(m.allowed);
    cr_assert_eq(held(c, a, 500), 500);
    cr_assert_eq(held(c, b, 500), 499);
    cr_assert_eq(held(c, d, 500), 1);
    cpc_close(c);
}


typedef struct many_racer {
    pthread_barrier_t *start;
    const lim_t *ab; /* two limits */
    const lim_t *bc;
    int requests;
    int ab_allowed;
    int bc_allowed;
    int answered;
} many_racer_t;


/* One connection: wait for the others, then pipeline its calls, even ones
 * on a and b, odd ones on b and c. */
static void *many_racer_main(void *arg) {
    many_racer_t *r = arg;
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckManyRequest ab, bc;
    int kind[64] = {0}; /* by request id: 1 ab, 2 bc */

    cr_assert_lt(r->requests, 64);
    many_request(r->ab, 2, &ab);
    many_request(r->bc, 2, &bc);
    pthread_barrier_wait(r->start);
    for (int i = 0; i < r->requests; i++) {
        uint32_t id;

        cr_assert_eq(
            cpc_send(
                c, cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK_MANY,
                cpstore_v1_RateLimitCheckManyRequest_fields, i % 2 ? &bc : &ab,
                &id),
            CPC_OK);
        cr_assert_lt(id, 64);
        kind[id] = i % 2 ? 2 : 1;
    }
    for (int i = 0; i < r->requests; i++) {
        cpstore_v1_RateLimitCheckManyResponse resp;
        cpc_reply_t reply;

        cr_assert_eq(cpc_recv(c, &reply), CPC_OK, "%s", cpc_last_error(c));
        cr_assert_eq(reply.status, 0, "status %d: %s", reply.status,
                     reply.error.message);
        cr_assert_eq(cpc_decode(&reply,
                                cpstore_v1_RateLimitCheckManyResponse_fields,
                                &resp),
                     CPC_OK);
        cr_assert_lt(reply.request_id, 64);
        r->answered++;
        if (resp.allowed) {
            *(kind[reply.request_id] == 1 ? &r->ab_allowed : &r->bc_allowed) +=
                1;
        }
    }
    cpc_close(c);
    return NULL;
}


/*
 * 10 connections x 10 calls at once: half want limits a (25) and b (40),
 * half b and c (25). b is the tighter limit overall: exactly 40 calls get
 * in, never more than 25 through a or through c, and every key holds
 * exactly what its admitted calls took.
 */
RL_TEST(check_many_racing_on_overlapping_keys_never_exceeds_any_limit) {
    enum { CONNS = 10, PER_CONN = 10 };
    pthread_t threads[CONNS];
    many_racer_t racers[CONNS];
    pthread_barrier_t start;
    char tag[96], a[128], b[128], d[128];
    int ab = 0, bc = 0;
    cpc_t *c;

    h_unique(tag, sizeof(tag), "manyrace");
    tagged(a, sizeof(a), tag, "a");
    tagged(b, sizeof(b), tag, "b");
    tagged(d, sizeof(d), tag, "c");
    const lim_t l_ab[] = {{a, 25, 60000, 1, NULL}, {b, 40, 60000, 1, NULL}};
    const lim_t l_bc[] = {{b, 40, 60000, 1, NULL}, {d, 25, 60000, 1, NULL}};

    pthread_barrier_init(&start, NULL, CONNS);
    for (int i = 0; i < CONNS; i++) {
        racers[i] = (many_racer_t){&start, l_ab, l_bc, PER_CONN, 0, 0, 0};
        pthread_create(&threads[i], NULL, many_racer_main, &racers[i]);
    }
    for (int i = 0; i < CONNS; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(racers[i].answered, PER_CONN);
        ab += racers[i].ab_allowed;
        bc += racers[i].bc_allowed;
    }
    pthread_barrier_destroy(&start);

    cr_assert_leq(ab, 25);
    cr_assert_leq(bc, 25);
    cr_assert_eq(ab + bc, 40, "admitted %d on a+b and %d on b+c", ab, bc);
    if (on_redis) {
        cr_assert_eq(zcard(a), ab);
        cr_assert_eq(zcard(b), 40);
        cr_assert_eq(zcard(d), bc);
    }
    c = h_connect(&server);
    cr_assert_eq(held(c, a, 25), (uint64_t)ab);
    cr_assert_eq(held(c, b, 40), 40);
    cr_assert_eq(held(c, d, 25), (uint64_t)bc);
    cpc_close(c);
}


/* ---- named policies -------------------------------------------------- */

/* One Check by policy name; the reply's status is left to the caller. */
static cpstore_v1_RateLimitCheckResponse by_policy(cpc_t *c,
                                                   const char *key,
                                                   const char *policy,
                                                   uint64_t limit,
                                                   uint64_t window_ms,
                                                   cpc_reply_t *reply) {
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse resp =
        cpstore_v1_RateLimitCheckResponse_init_zero;

    snprintf(req.key, sizeof(req.key), "%s", key);
    snprintf(req.policy, sizeof(req.policy), "%s", policy);
    req.limit = limit;
    req.window_ms = window_ms;
    cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, reply), CPC_OK, "%s",
                 cpc_last_error(c));
    return resp;
}


static cpstore_v1_RateLimitCheckResponse
policy_check(cpc_t *c, const char *key, const char *policy) {
    cpc_reply_t reply;
    cpstore_v1_RateLimitCheckResponse r =
        by_policy(c, key, policy, 0, 0, &reply);

    cr_assert_eq(reply.status, 0, "status %d: %s", reply.status,
                 reply.error.message);
    return r;
}


RL_TEST(check_by_policy_uses_the_limit_and_window_of_the_config_file) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckResponse r;
    char key[96], key2[96];

    h_unique(key, sizeof(key), "policy");
    for (uint64_t left = 3; left-- > 0;) {
        r = policy_check(c, key, "three_an_hour");
        cr_assert(r.allowed);
        cr_assert_eq(r.limit, 3);
        cr_assert_eq(r.remaining, left);
    }
    r = policy_check(c, key, "three_an_hour");
    cr_assert_not(r.allowed);
    /* The window is the policy's hour: the oldest unit leaves in about an
     * hour, far beyond any minute. */
    cr_assert_gt(r.retry_after_ms, 3000000);
    cr_assert_leq(r.retry_after_ms, 3600000);

    h_unique(key2, sizeof(key2), "policy");
    r = policy_check(c, key2, "two_a_minute");
    cr_assert_eq(r.limit, 2);
    cr_assert_gt(r.reset_after_ms, 50000);
    cr_assert_leq(r.reset_after_ms, 60000);
    cpc_close(c);
}


RL_TEST(a_policy_with_its_own_numbers_is_invalid_and_an_unknown_one_not_found) {
    cpc_t *c = h_connect(&server);
    cpc_reply_t reply;
    char key[96];

    h_unique(key, sizeof(key), "policy");
    by_policy(c, key, "three_an_hour", 10, 0, &reply);
    cr_assert_eq(reply.status, 3, "policy and limit: status %d", reply.status);
    by_policy(c, key, "three_an_hour", 0, 60000, &reply);
    cr_assert_eq(reply.status, 3, "policy and window: status %d", reply.status);
    by_policy(c, key, "no_such_policy", 0, 0, &reply);
    cr_assert_eq(reply.status, 5, "unknown policy: status %d", reply.status);
    cr_assert(strstr(reply.error.message, "no_such_policy") != NULL, "%s",
              reply.error.message);
    by_policy(c, key, "not a name", 0, 0, &reply);
    cr_assert_eq(reply.status, 3, "bad name: status %d", reply.status);

    /* None of these consumed anything. */
    cr_assert_eq(policy_check(c, key, "three_an_hour").remaining, 2);
    cpc_close(c);
}


RL_TEST(check_many_mixes_policies_and_limits_of_its_own) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckManyResponse r;
    cpc_reply_t reply;
    char tag[96], a[128], b[128];

    h_unique(tag, sizeof(tag), "manypol");
    tagged(a, sizeof(a), tag, "login");
    tagged(b, sizeof(b), tag, "burst");
    const lim_t l[] = {
        {a, 0, 0, 1, "three_an_hour"},
        {b, 2, 60000, 1, NULL},
    };

    r = many(c, l, 2);
    cr_assert(r.allowed);
    cr_assert_eq(r.results[0].limit, 3);
    cr_assert_eq(r.results[0].remaining, 2);
    cr_assert_eq(r.results[1].remaining, 1);
    r = many(c, l, 2);
    cr_assert(r.allowed);
    r = many(c, l, 2);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.denied_index, 1);
    cr_assert_eq(r.results[0].remaining, 1, "the policy's limit kept its unit");

    const lim_t unknown[] = {
        {a, 0, 0, 1, "three_an_hour"},
        {b, 0, 0, 1, "no_such_policy"},
    };
    many_call(c, unknown, 2, &r, &reply);
    cr_assert_eq(reply.status, 5, "status %d", reply.status);
    cr_assert(strstr(reply.error.message, "checks[1]") != NULL, "%s",
              reply.error.message);
    cpc_close(c);
}


/* Wait until the server's log holds text; false after about 10 s. */
static int log_says(const char *text) {
    for (int i = 0; i < 200; i++) {
        char *log = h_proc_log(&server);
        int found = strstr(log, text) != NULL;

        free(log);
        if (found) {
            return 1;
        }
        usleep(50 * 1000);
    }
    return 0;
}


RL_TEST(sighup_applies_new_policies_and_a_bad_file_keeps_the_old_ones) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_RateLimitCheckResponse r;
    cpc_reply_t reply;
    char key[96];
    int reloaded = 0;

    h_unique(key, sizeof(key), "reload");
    cr_assert_eq(policy_check(c, key, "three_an_hour").limit, 3);

    write_config("[policy.three_an_hour]\n"
                 "limit = 5\n"
                 "window = 1h\n");
    cr_assert_eq(kill(server.pid, SIGHUP), 0);
    /* The signal is handled on the server's loop: wait for its effect, on
     * a fresh key each time so that no limit runs out meanwhile. */
    for (int i = 0; i < 200 && !reloaded; i++) {
        h_unique(key, sizeof(key), "reload");
        reloaded = policy_check(c, key, "three_an_hour").limit == 5;
        if (!reloaded) {
            usleep(50 * 1000);
        }
    }
    cr_assert(reloaded, "the new limit never applied");
    r = policy_check(c, key, "three_an_hour");
    cr_assert_eq(r.remaining, 3, "the same key, counted under the new limit");
    by_policy(c, key, "two_a_minute", 0, 0, &reply);
    cr_assert_eq(reply.status, 5, "a policy the new file drops is gone");

    /* A file that does not parse changes nothing. */
    write_config("[policy.three_an_hour]\n"
                 "limit = lots\n"
                 "window = 1h\n");
    cr_assert_eq(kill(server.pid, SIGHUP), 0);
    cr_assert(log_says("reload failed"), "no reload failure was logged");
    r = policy_check(c, key, "three_an_hour");
    cr_assert_eq(r.limit, 5);
    cr_assert_eq(r.remaining, 2);

    /* All on one connection: the server was never restarted. */
    cpc_close(c);
}


/* ---- Redis unreachable: the configured fallback ---------------------- */

static h_proc_t own_redis;


/* cpstored on a redis-server of its own, with `unavailable = mode`; returns
 * a connection once Redis is connected. */
static cpc_t *start_with_fallback(const char *mode) {
    char text[512];
    char arg[128];
    const char *args[] = {arg, config_arg, NULL};
    cpstore_v1_HealthCheckResponse health;
    cpc_reply_t reply;
    int up = 0;
    cpc_t *c;

    snprintf(text, sizeof(text), "[ratelimit]\nunavailable = %s\n\n%s", mode,
             CONFIG_POLICIES);
    make_config(text);
    h_redis_start(&own_redis, 0);
    snprintf(arg, sizeof(arg), "--redis=redis://127.0.0.1:%d", own_redis.port);
    h_cpstored_start(&server, args, NULL);
    c = h_connect(&server);
    for (int i = 0; i < 200 && !up; i++) {
        cr_assert_eq(cpc_health_check(c, &health, &reply), CPC_OK);
        up = health.backends[0].up;
        if (!up) {
            usleep(50 * 1000);
        }
    }
    cr_assert(up, "cpstored never connected to its redis-server");
    return c;
}


static void stop_fallback_servers(void) {
    if (own_redis.pid > 0) {
        kill(own_redis.pid, SIGCONT);
    }
    h_proc_stop(&own_redis);
    stop_server();
}


/* The value of the Health counter name (which must be there). */
static uint64_t counter(cpc_t *c, const char *name) {
    cpstore_v1_HealthCheckResponse health;
    cpc_reply_t reply;

    cr_assert_eq(cpc_health_check(c, &health, &reply), CPC_OK);
    for (pb_size_t i = 0; i < health.counters_count; i++) {
        if (strcmp(health.counters[i].name, name) == 0) {
            return health.counters[i].value;
        }
    }
    cr_assert_fail("Health has no counter %s", name);
    return 0;
}


static cpstore_v1_RateLimitCheckResponse
check_status(cpc_t *c, const char *key, uint64_t limit, int *status) {
    cpstore_v1_RateLimitCheckRequest req =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse resp =
        cpstore_v1_RateLimitCheckResponse_init_zero;
    cpc_reply_t reply;

    snprintf(req.key, sizeof(req.key), "%s", key);
    req.limit = limit;
    req.window_ms = 60000;
    cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK,
                 "no answer: %s", cpc_last_error(c));
    *status = reply.status;
    return resp;
}


/* The two limits of the fallback tests' CheckMany. */
static const lim_t fallback_many[] = {
    {"{fb}:own", 10, 60000, 1, NULL},
    {"{fb}:policy", 0, 0, 1, "two_a_minute"},
};


Test(rl_redis_outage,
     unavailable_allow_admits_with_fallback_and_counts_it,
     .fini = stop_fallback_servers,
     .timeout = 120) {
    cpc_t *c = start_with_fallback("allow");
    cpstore_v1_RateLimitCheckResponse r;
    cpstore_v1_RateLimitCheckManyResponse m;
    int status;

    r = check_status(c, "full", 1, &status);
    cr_assert_eq(status, 0);
    cr_assert(r.allowed);
    cr_assert_not(r.fallback, "Redis is up: a real answer");
    cr_assert_eq(counter(c, "ratelimit_fallback_allow"), 0);

    h_proc_stop(&own_redis);
    cpc_set_budget(c, 2000);
    for (int i = 0; i < 3; i++) {
        /* "full" holds its one unit: only the fallback admits this. */
        r = check_status(c, "full", 1, &status);
        cr_assert_eq(status, 0, "status %d while Redis is down", status);
        cr_assert(r.allowed);
        cr_assert(r.fallback);
        cr_assert_eq(r.limit, 1);
        cr_assert_eq(r.remaining, 1);
    }
    /* What no counter could admit is still denied. */
    r = check_status(c, "zero", 0, &status);
    cr_assert_eq(status, 0);
    cr_assert_not(r.allowed);
    cr_assert(r.fallback);

    m = many(c, fallback_many, 2);
    cr_assert(m.allowed);
    cr_assert(m.fallback);
    cr_assert(m.results[0].fallback && m.results[1].fallback);
    cr_assert_eq(m.results[1].limit, 2, "the policy still names the limit");

    cr_assert_eq(counter(c, "ratelimit_fallback_allow"), 5);
    cr_assert_eq(counter(c, "ratelimit_fallback_deny"), 0);
    cr_assert_eq(counter(c, "ratelimit_unavailable_error"), 0);
    cpc_close(c);
}


Test(rl_redis_outage,
     unavailable_deny_denies_with_fallback_and_counts_it,
     .fini = stop_fallback_servers,
     .timeout = 120) {
    cpc_t *c = start_with_fallback("deny");
    cpstore_v1_RateLimitCheckResponse r;
    cpstore_v1_RateLimitCheckManyResponse m;
    int status;

    r = check_status(c, "free", 100, &status);
    cr_assert_eq(status, 0);
    cr_assert(r.allowed);
    cr_assert_not(r.fallback);

    h_proc_stop(&own_redis);
    cpc_set_budget(c, 2000);
    for (int i = 0; i < 3; i++) {
        /* "free" has 99 units of room: only the fallback denies this. */
        r = check_status(c, "free", 100, &status);
        cr_assert_eq(status, 0, "status %d while Redis is down", status);
        cr_assert_not(r.allowed);
        cr_assert(r.fallback);
        cr_assert_eq(r.remaining, 0);
        cr_assert_gt(r.retry_after_ms, 0, "worth retrying later");
    }
    m = many(c, fallback_many, 2);
    cr_assert_not(m.allowed);
    cr_assert(m.fallback);
    cr_assert_eq(m.denied_index, 0);

    cr_assert_eq(counter(c, "ratelimit_fallback_deny"), 4);
    cr_assert_eq(counter(c, "ratelimit_fallback_allow"), 0);
    cr_assert_eq(counter(c, "ratelimit_unavailable_error"), 0);
    cpc_close(c);
}


Test(rl_redis_outage,
     unavailable_error_fails_and_counts_it,
     .fini = stop_fallback_servers,
     .timeout = 120) {
    cpc_t *c = start_with_fallback("error");
    cpstore_v1_RateLimitCheckManyResponse m;
    cpc_reply_t reply;
    int status;

    check_status(c, "k", 100, &status);
    cr_assert_eq(status, 0);

    h_proc_stop(&own_redis);
    cpc_set_budget(c, 2000);
    for (int i = 0; i < 3; i++) {
        check_status(c, "k", 100, &status);
        cr_assert_eq(status, 14, "status %d while Redis is down", status);
    }
    many_call(c, fallback_many, 2, &m, &reply);
    cr_assert_eq(reply.status, 14, "status %d", reply.status);

    cr_assert_eq(counter(c, "ratelimit_unavailable_error"), 4);
    cr_assert_eq(counter(c, "ratelimit_fallback_allow"), 0);
    cr_assert_eq(counter(c, "ratelimit_fallback_deny"), 0);
    cpc_close(c);
}


/* A frozen Redis keeps its socket open and never answers: the fallback
 * still answers within the caller's budget, not DEADLINE_EXCEEDED. */
Test(rl_redis_outage,
     hung_redis_is_answered_by_the_fallback_in_time,
     .fini = stop_fallback_servers,
     .timeout = 120) {
    cpc_t *c = start_with_fallback("allow");
    cpstore_v1_RateLimitCheckResponse r;
    int status;

    check_status(c, "hung", 1, &status);
    cr_assert_eq(status, 0);

    cr_assert_eq(kill(own_redis.pid, SIGSTOP), 0);
    cpc_set_budget(c, 500);
    r = check_status(c, "hung", 1, &status);
    cr_assert_eq(status, 0, "status %d while Redis hangs", status);
    cr_assert(r.allowed);
    cr_assert(r.fallback);
    cr_assert_eq(counter(c, "ratelimit_fallback_allow"), 1);
    cpc_close(c);
}


static void start_two_on_redis(void) {
    const char *args[] = {redis_url_arg, NULL};

    start_redis_backend();
    h_cpstored_start(&second, args, NULL);
    two_instances = 1;
}


static void stop_two(void) {
    h_proc_stop(&second);
    stop_server();
}


Test(rl_redis_two_instances,
     checks_through_two_servers_admit_exactly_the_limit,
     .init = start_two_on_redis,
     .fini = stop_two,
     .timeout = 60) {
    char key[96];

    h_unique(key, sizeof(key), "race2x");
    /* 20 connections, 10 to each cpstored, 10 checks each, limit 50. */
    cr_assert_eq(race(key, 50, 20, 10), 50);
}
