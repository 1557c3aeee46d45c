/*
 * The rate-limit backends, driven directly on a libuv loop (no cpstored).
 *
 * Every behaviour test is defined once with RL_TEST and runs twice: as
 * rl_memory/<name> against the in-process backend and as rl_redis/<name>
 * against the Redis named by CPSTORE_TEST_REDIS_URL, each on a key of its
 * own. The Redis-only tests look inside Redis through a plain synchronous
 * hiredis connection, or start a redis-server of their own to stop, freeze
 * and restart. Every test ends by closing the backend and checking that the
 * loop then closes with no handle left. Several limits at once
 * (check_many) are tested the same way, on keys that share the test's hash
 * tag, and looked at both inside Redis (ZCARD of every key) and through
 * follow-up checks, which work on both backends.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "harness.h"
#include "ratelimit.h"
#include "rl_redis_url.h"
#include "rl_script.h"
#include "status.h"

#define T_PREFIX     "cpstore:rltest:"
#define T_TIMEOUT_MS 2000u  /* per check, unless a test says otherwise */
#define T_PATIENCE   15000u /* bound on any wait for a state change */
#define T_HOUR_MS    3600000u

/*
 * The memory backend and the tests' timers read one clock, the loop's, so
 * a retry after exactly retry_after_ms is admitted. Redis answers on its own
 * wall clock, whose millisecond boundaries are not the loop's and which NTP
 * may slew slightly: a retry waits this much longer there.
 */
#define T_REDIS_CLOCK_SLACK_MS 2u

typedef struct t_env {
    uv_loop_t loop;
    rl_backend_t *be;
    bool redis;
    char url[128];
    char key[128];
} t_env_t;

typedef struct t_answer {
    int calls;
    int status;
    rl_result_t res;
    char msg[128];
} t_answer_t;

/* A redis-server owned by one test, stopped by t_fini_own_redis. */
static h_proc_t t_own;


/* ---- loop helpers ---------------------------------------------------- */

static void t_on_guard(uv_timer_t *timer) {
    *(bool *)timer->data = true;
}


/* Run the loop until pred(arg) holds; fail the test after limit_ms. */
static void
t_run_until(t_env_t *e, bool (*pred)(void *), void *arg, uint64_t limit_ms) {
    uv_timer_t guard;
    bool expired = false;

    uv_timer_init(&e->loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, t_on_guard, limit_ms, 0);
    while (!pred(arg) && !expired) {
        uv_run(&e->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    cr_assert(pred(arg), "nothing happened within %llu ms",
              (unsigned long long)limit_ms);
}


static bool t_flag_set(void *arg) {
    return *(bool *)arg;
}


/* Let the loop run for ms milliseconds of its own clock. */
static void t_sleep(t_env_t *e, uint64_t ms) {
    uv_timer_t timer;
    bool fired = false;

    uv_update_time(&e->loop);
    uv_timer_init(&e->loop, &timer);
    timer.data = &fired;
    uv_timer_start(&timer, t_on_guard, ms, 0);
    t_run_until(e, t_flag_set, &fired, ms + T_PATIENCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&e->loop, UV_RUN_NOWAIT);
}


/* ---- checks ---------------------------------------------------------- */

static void
t_on_done(void *arg, int status, const rl_result_t *res, const char *msg) {
    t_answer_t *a = arg;

    a->calls++;
    a->status = status;
    if (res != NULL) {
        a->res = *res;
    }
    snprintf(a->msg, sizeof(a->msg), "%s", msg ? msg : "");
}


typedef struct t_batch {
    t_answer_t *answers;
    size_t n;
} t_batch_t;


static bool t_batch_done(void *arg) {
    t_batch_t *b = arg;

    for (size_t i = 0; i < b->n; i++) {
        if (b->answers[i].calls == 0) {
            return false;
        }
    }
    return true;
}


/* Start n identical checks on key without running the loop in between,
 * then run it until every one is answered. */
static void t_fire(t_env_t *e,
                   const char *key,
                   uint64_t limit,
                   uint64_t window_ms,
                   uint64_t cost,
                   uint32_t timeout_ms,
                   t_answer_t *answers,
                   size_t n) {
    rl_request_t req = {
        .key = key,
        .key_len = strlen(key),
        .limit = limit,
        .window_ms = window_ms,
        .cost = cost,
        .timeout_ms = timeout_ms,
    };
    t_batch_t batch = {answers, n};

    memset(answers, 0, n * sizeof(*answers));
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(rl_check(e->be, &req, t_on_done, &answers[i]), CPS_OK);
    }
    t_run_until(e, t_batch_done, &batch, timeout_ms + T_PATIENCE);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(answers[i].calls, 1, "check %zu answered %d times", i,
                     answers[i].calls);
    }
}


static t_answer_t t_check_on(t_env_t *e,
                             const char *key,
                             uint64_t limit,
                             uint64_t window_ms,
                             uint64_t cost,
                             uint32_t timeout_ms) {
    t_answer_t a;

    t_fire(e, key, limit, window_ms, cost, timeout_ms, &a, 1);
    return a;
}


/* One check on the test's own key that must succeed. */
static rl_result_t
t_check(t_env_t *e, uint64_t limit, uint64_t window_ms, uint64_t cost) {
    t_answer_t a = t_check_on(e, e->key, limit, window_ms, cost, T_TIMEOUT_MS);

    cr_assert_eq(a.status, CPS_OK, "check failed: %s %s",
                 cps_status_name(a.status), a.msg);
    cr_assert_eq(a.res.limit, limit);
    return a.res;
}


static size_t t_count_allowed(const t_answer_t *answers, size_t n) {
    size_t allowed = 0;

    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(answers[i].status, CPS_OK, "check %zu: %s %s", i,
                     cps_status_name(answers[i].status), answers[i].msg);
        allowed += answers[i].res.allowed;
    }
    return allowed;
}


/* ---- environment ----------------------------------------------------- */

static bool t_is_up(void *arg) {
    t_env_t *e = arg;

    return e->be->ops->is_up(e->be, NULL, 0);
}


static void t_open_redis(t_env_t *e, const char *url) {
    rl_redis_config_t cfg = {
        .url = url,
        .prefix = T_PREFIX,
        .connect_timeout_ms = 1000,
    };
    char err[256];

    memset(e, 0, sizeof(*e));
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    e->redis = true;
    snprintf(e->url, sizeof(e->url), "%s", url);
    h_unique(e->key, sizeof(e->key), "rl");
    e->be = rl_redis_new(&e->loop, &cfg, err, sizeof(err));
    cr_assert_not_null(e->be, "rl_redis_new: %s", err);
}


static void t_open(t_env_t *e, bool redis) {
    if (redis) {
        t_open_redis(e, h_redis_url());
        t_run_until(e, t_is_up, e, T_PATIENCE);
        return;
    }
    memset(e, 0, sizeof(*e));
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    h_unique(e->key, sizeof(e->key), "rl");
    e->be = rl_memory_new(&e->loop);
    cr_assert_not_null(e->be);
}


static void t_close(t_env_t *e) {
    e->be->ops->close(e->be);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&e->loop), 0, "a handle outlived close()");
}


static void t_fini_own_redis(void) {
    if (t_own.pid > 0) {
        kill(t_own.pid, SIGCONT);
        h_proc_stop(&t_own);
    }
}


/* Open the test's environment on a redis-server of its own. */
static void t_open_own(t_env_t *e) {
    char url[64];

    h_redis_start(&t_own, 0);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", t_own.port);
    t_open_redis(e, url);
    t_run_until(e, t_is_up, e, T_PATIENCE);
}


/* ---- a synchronous look inside Redis --------------------------------- */

static redisContext *t_sync_connect(const char *url) {
    struct timeval tv = {5, 0};
    rl_redis_url_t u;
    const char *why = rl_redis_url_parse(url, &u);
    redisContext *c;
    redisReply *r;

    cr_assert_null(why, "bad test Redis URL: %s", why);
    c = redisConnectWithTimeout(u.host, u.port, tv);
    cr_assert(c != NULL && !c->err, "connect to Redis: %s",
              c ? c->errstr : "out of memory");
    if (u.password != NULL) {
        r = u.user ? redisCommand(c, "AUTH %s %s", u.user, u.password)
                   : redisCommand(c, "AUTH %s", u.password);
        cr_assert(r != NULL && r->type != REDIS_REPLY_ERROR);
        freeReplyObject(r);
    }
    if (u.db >= 0) {
        r = redisCommand(c, "SELECT %d", u.db);
        cr_assert(r != NULL && r->type != REDIS_REPLY_ERROR);
        freeReplyObject(r);
    }
    rl_redis_url_free(&u);
    return c;
}


/* Run a command whose reply is an integer, on the test's full key when
 * the format has a %s. */
static long long t_sync_int(redisContext *c, const char *fmt, ...) {
    redisReply *r;
    long long v;
    va_list ap;

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER,
              "unexpected reply to %s", fmt);
    v = r->integer;
    freeReplyObject(r);
    return v;
}


static void t_full_key(const t_env_t *e, char *out, size_t len) {
    snprintf(out, len, "%s%s", T_PREFIX, e->key);
}


static long long t_zcard(const t_env_t *e) {
    redisContext *c = t_sync_connect(e->url);
    char key[192];
    long long n;

    t_full_key(e, key, sizeof(key));
    n = t_sync_int(c, "ZCARD %s", key);
    redisFree(c);
    return n;
}


/* ---- behaviour shared by both backends ------------------------------- */

#define RL_TEST(name)                                                          \
    static void t_body_##name(t_env_t *e);                                     \
    Test(rl_memory, name) {                                                    \
        t_env_t env;                                                           \
        t_open(&env, false);                                                   \
        t_body_##name(&env);                                                   \
        t_close(&env);                                                         \
    }                                                                          \
    Test(rl_redis, name) {                                                     \
        t_env_t env;                                                           \
        t_open(&env, true);                                                    \
        t_body_##name(&env);                                                   \
        t_close(&env);                                                         \
    }                                                                          \
    static void t_body_##name(t_env_t *e)


RL_TEST(exactly_the_limit_is_admitted_among_concurrent_checks) {
    static t_answer_t answers[200];

    t_fire(e, e->key, 50, T_HOUR_MS, 1, T_TIMEOUT_MS, answers, 200);
    cr_assert_eq(t_count_allowed(answers, 200), 50);
    for (size_t i = 0; i < 200; i++) {
        if (!answers[i].res.allowed) {
            cr_assert_eq(answers[i].res.remaining, 0);
            cr_assert_gt(answers[i].res.retry_after_ms, 0);
        }
    }
    if (e->redis) {
        cr_assert_eq(t_zcard(e), 50);
    }
}


RL_TEST(ten_together_with_limit_five_admit_five_and_store_five) {
    t_answer_t answers[10];

    t_fire(e, e->key, 5, T_HOUR_MS, 1, T_TIMEOUT_MS, answers, 10);
    cr_assert_eq(t_count_allowed(answers, 10), 5);
    if (e->redis) {
        cr_assert_eq(t_zcard(e), 5, "denied checks must store nothing");
    }
}


RL_TEST(denied_request_consumes_nothing) {
    rl_result_t r;

    r = t_check(e, 10, T_HOUR_MS, 8);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 2);

    r = t_check(e, 10, T_HOUR_MS, 5);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.remaining, 2);
    cr_assert_gt(r.retry_after_ms, 0);

    r = t_check(e, 10, T_HOUR_MS, 1);
    cr_assert(r.allowed, "the denied cost-5 request must leave room");
    cr_assert_eq(r.remaining, 1);
    if (e->redis) {
        cr_assert_eq(t_zcard(e), 9);
    }
}


RL_TEST(cost_above_the_limit_is_denied_without_retry_time) {
    rl_result_t r;

    r = t_check(e, 5, T_HOUR_MS, 6);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.remaining, 5);
    cr_assert_eq(r.retry_after_ms, 0, "a cost above the limit never fits");
    cr_assert_eq(r.reset_after_ms, 0, "nothing was admitted");

    r = t_check(e, 5, T_HOUR_MS, 5);
    cr_assert(r.allowed, "the oversized request consumed nothing");
    cr_assert_eq(r.remaining, 0);

    r = t_check(e, 5, T_HOUR_MS, 6);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.retry_after_ms, 0);
}


/*
 * The largest cost takes several of the script's ZADDs of RL_SCRIPT_CHUNK
 * members, the last one partly filled; a cost of exactly two chunks ends on
 * a chunk's edge. Every unit of both is stored.
 */
RL_TEST(a_large_cost_is_stored_in_full) {
    const uint64_t limit = 2 * LIM_RL_COST_MAX;
    const uint64_t two_chunks = 2 * RL_SCRIPT_CHUNK;
    const uint64_t left = limit - LIM_RL_COST_MAX - two_chunks;
    rl_result_t r;

    cr_assert_lt(two_chunks, LIM_RL_COST_MAX, "the largest cost spans chunks");
    cr_assert_neq(LIM_RL_COST_MAX % RL_SCRIPT_CHUNK, 0, "and ends inside one");

    r = t_check(e, limit, T_HOUR_MS, LIM_RL_COST_MAX);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, limit - LIM_RL_COST_MAX);
    if (e->redis) {
        cr_assert_eq(t_zcard(e), (long long)LIM_RL_COST_MAX);
    }
    r = t_check(e, limit, T_HOUR_MS, two_chunks);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, left);
    if (e->redis) {
        cr_assert_eq(t_zcard(e), (long long)(limit - left));
    }
    r = t_check(e, limit, T_HOUR_MS, left + 1);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.remaining, left);
}


RL_TEST(limit_zero_denies_everything) {
    rl_result_t r;

    for (int i = 0; i < 3; i++) {
        r = t_check(e, 0, T_HOUR_MS, 1);
        cr_assert_not(r.allowed);
        cr_assert_eq(r.remaining, 0);
        cr_assert_eq(r.retry_after_ms, 0);
        cr_assert_eq(r.reset_after_ms, 0);
    }
    if (e->redis) {
        cr_assert_eq(t_zcard(e), 0);
    }
}


RL_TEST(remaining_counts_down_and_never_goes_negative) {
    rl_result_t r;

    for (uint64_t left = 3; left-- > 0;) {
        r = t_check(e, 3, T_HOUR_MS, 1);
        cr_assert(r.allowed);
        cr_assert_eq(r.remaining, left);
    }
    r = t_check(e, 3, T_HOUR_MS, 1);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.remaining, 0);

    /* Three units held against a limit now lowered to one. */
    r = t_check(e, 1, T_HOUR_MS, 1);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.remaining, 0);
    cr_assert_gt(r.retry_after_ms, 0);
}


RL_TEST(allowed_reply_has_no_retry_time_and_resets_within_the_window) {
    rl_result_t r = t_check(e, 4, 5000, 1);

    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 3);
    cr_assert_eq(r.retry_after_ms, 0);
    cr_assert_gt(r.reset_after_ms, 0);
    cr_assert_leq(r.reset_after_ms, 5000);
}


RL_TEST(keys_are_independent) {
    char other[160];
    t_answer_t a;

    cr_assert(t_check(e, 1, T_HOUR_MS, 1).allowed);
    cr_assert_not(t_check(e, 1, T_HOUR_MS, 1).allowed);

    snprintf(other, sizeof(other), "%s-other", e->key);
    a = t_check_on(e, other, 1, T_HOUR_MS, 1, T_TIMEOUT_MS);
    cr_assert_eq(a.status, CPS_OK);
    cr_assert(a.res.allowed);
}


/*
 * A retry clearly before retry_after_ms is denied; one after exactly the
 * retry_after_ms of the last denial (plus the clock slack on Redis) is
 * admitted.
 */
RL_TEST(retry_after_tells_exactly_when_a_request_fits) {
    uint64_t slack = e->redis ? T_REDIS_CLOCK_SLACK_MS : 0;
    rl_result_t r;
    uint64_t first;

    cr_assert(t_check(e, 2, 2000, 1).allowed);
    cr_assert(t_check(e, 2, 2000, 1).allowed);

    r = t_check(e, 2, 2000, 1);
    cr_assert_not(r.allowed);
    cr_assert_gt(r.retry_after_ms, 0);
    cr_assert_leq(r.retry_after_ms, 2000);
    cr_assert_geq(r.reset_after_ms, r.retry_after_ms);
    first = r.retry_after_ms;

    t_sleep(e, first / 2);
    r = t_check(e, 2, 2000, 1);
    cr_assert_not(r.allowed, "a retry halfway through must be denied");
    cr_assert_lt(r.retry_after_ms, first);

    t_sleep(e, r.retry_after_ms + slack);
    r = t_check(e, 2, 2000, 1);
    cr_assert(r.allowed, "a retry after retry_after_ms must be admitted");
}


/* ---- several limits at once (check_many) ----------------------------- */

typedef struct t_many {
    int calls;
    int status;
    size_t n;
    rl_result_t res[RL_MANY_MAX];
    char msg[128];
} t_many_t;


static void t_on_many(
    void *arg, int status, const rl_result_t *res, size_t n, const char *msg) {
    t_many_t *a = arg;

    a->calls++;
    a->status = status;
    a->n = n;
    for (size_t i = 0; res != NULL && i < n && i < RL_MANY_MAX; i++) {
        a->res[i] = res[i];
    }
    snprintf(a->msg, sizeof(a->msg), "%s", msg ? msg : "");
}


typedef struct t_many_batch {
    t_many_t *answers;
    size_t n;
} t_many_batch_t;


static bool t_many_batch_done(void *arg) {
    t_many_batch_t *b = arg;

    for (size_t i = 0; i < b->n; i++) {
        if (b->answers[i].calls == 0) {
            return false;
        }
    }
    return true;
}


/* A limit of a check_many: the test's key with a suffix, so that all of
 * one test's keys share its hash tag. */
typedef struct t_limit {
    char key[192];
    uint64_t limit;
    uint64_t cost;
} t_limit_t;


static void t_limit_init(const t_env_t *e,
                         t_limit_t *l,
                         const char *suffix,
                         uint64_t limit,
                         uint64_t cost) {
    snprintf(l->key, sizeof(l->key), "{%s}:%s", e->key, suffix);
    l->limit = limit;
    l->cost = cost;
}


static void
t_requests(const t_limit_t *const *limits, size_t n, rl_request_t *reqs) {
    for (size_t i = 0; i < n; i++) {
        reqs[i] = (rl_request_t){
            .key = limits[i]->key,
            .key_len = strlen(limits[i]->key),
            .limit = limits[i]->limit,
            .window_ms = T_HOUR_MS,
            .cost = limits[i]->cost,
            .timeout_ms = T_TIMEOUT_MS,
        };
    }
}


/* Start one check_many per entry of sets (each of n limits) without
 * running the loop in between, then run it until every one is answered;
 * each must succeed with one result per limit. */
static void t_many_fire(t_env_t *e,
                        const t_limit_t *const *const *sets,
                        size_t n,
                        t_many_t *answers,
                        size_t count) {
    rl_request_t reqs[RL_MANY_MAX];
    t_many_batch_t batch = {answers, count};

    memset(answers, 0, count * sizeof(*answers));
    for (size_t i = 0; i < count; i++) {
        t_requests(sets[i], n, reqs);
        cr_assert_eq(rl_check_many(e->be, reqs, n, t_on_many, &answers[i]),
                     CPS_OK);
    }
    t_run_until(e, t_many_batch_done, &batch, T_TIMEOUT_MS + T_PATIENCE);
    for (size_t i = 0; i < count; i++) {
        cr_assert_eq(answers[i].calls, 1, "call %zu answered %d times", i,
                     answers[i].calls);
        cr_assert_eq(answers[i].status, CPS_OK, "call %zu: %s %s", i,
                     cps_status_name(answers[i].status), answers[i].msg);
        cr_assert_eq(answers[i].n, n);
    }
}


/* One check_many of the n limits. */
static t_many_t t_many(t_env_t *e, const t_limit_t *const *limits, size_t n) {
    t_many_t a;

    t_many_fire(e, &limits, n, &a, 1);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(a.res[i].limit, limits[i]->limit);
        cr_assert_leq(a.res[i].remaining, limits[i]->limit);
    }
    return a;
}


static bool t_many_allowed(const t_many_t *a) {
    for (size_t i = 0; i < a->n; i++) {
        if (!a->res[i].allowed) {
            return false;
        }
    }
    return true;
}


static long long t_zcard_of(const t_env_t *e, const char *key) {
    redisContext *c = t_sync_connect(e->url);
    char full[256];
    long long n;

    snprintf(full, sizeof(full), "%s%s", T_PREFIX, key);
    n = t_sync_int(c, "ZCARD %s", full);
    redisFree(c);
    return n;
}


/* Units a limit holds now, by a check that cannot fit (cost above the
 * limit is denied without consuming) on either backend. */
static uint64_t t_used(t_env_t *e, const t_limit_t *l) {
    t_answer_t a =
        t_check_on(e, l->key, l->limit, T_HOUR_MS, l->limit + 1, T_TIMEOUT_MS);

    cr_assert_eq(a.status, CPS_OK);
    cr_assert_not(a.res.allowed);
    return l->limit - a.res.remaining;
}


RL_TEST(many_denied_by_one_limit_consumes_on_no_limit) {
    t_limit_t a, b, c;
    const t_limit_t *limits[] = {&a, &b, &c};
    t_many_t r;

    t_limit_init(e, &a, "a", 10, 1);
    t_limit_init(e, &b, "b", 2, 1);
    t_limit_init(e, &c, "c", 10, 3);
    /* a holds 4 units already, b is full. */
    cr_assert(t_check_on(e, a.key, 10, T_HOUR_MS, 4, T_TIMEOUT_MS).res.allowed);
    cr_assert(t_check_on(e, b.key, 2, T_HOUR_MS, 2, T_TIMEOUT_MS).res.allowed);

    r = t_many(e, limits, 3);
    cr_assert_not(t_many_allowed(&r));
    cr_assert(r.res[0].allowed, "a alone has room");
    cr_assert_eq(r.res[0].remaining, 6, "and nothing was taken from it");
    cr_assert_eq(r.res[0].retry_after_ms, 0);
    cr_assert_not(r.res[1].allowed, "b is the limit that denies");
    cr_assert_eq(r.res[1].remaining, 0);
    cr_assert_gt(r.res[1].retry_after_ms, 0);
    cr_assert_leq(r.res[1].retry_after_ms, T_HOUR_MS);
    cr_assert(r.res[2].allowed);
    cr_assert_eq(r.res[2].remaining, 10);
    cr_assert_eq(r.res[2].reset_after_ms, 0, "c holds nothing");

    if (e->redis) {
        cr_assert_eq(t_zcard_of(e, a.key), 4);
        cr_assert_eq(t_zcard_of(e, b.key), 2);
        cr_assert_eq(t_zcard_of(e, c.key), 0);
    }
    cr_assert_eq(t_used(e, &a), 4);
    cr_assert_eq(t_used(e, &b), 2);
    cr_assert_eq(t_used(e, &c), 0);
}


RL_TEST(many_admitted_consumes_on_every_limit) {
    t_limit_t a, b;
    const t_limit_t *limits[] = {&a, &b};
    t_many_t r;

    t_limit_init(e, &a, "a", 5, 2);
    t_limit_init(e, &b, "b", 5, 3);

    r = t_many(e, limits, 2);
    cr_assert(t_many_allowed(&r));
    cr_assert_eq(r.res[0].remaining, 3);
    cr_assert_eq(r.res[1].remaining, 2);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(r.res[i].retry_after_ms, 0);
        cr_assert_gt(r.res[i].reset_after_ms, 0);
        cr_assert_leq(r.res[i].reset_after_ms, T_HOUR_MS);
    }
    if (e->redis) {
        cr_assert_eq(t_zcard_of(e, a.key), 2);
        cr_assert_eq(t_zcard_of(e, b.key), 3);
    }

    /* Now b lacks room for 3 more: denied by b, and a keeps its 3. */
    r = t_many(e, limits, 2);
    cr_assert(r.res[0].allowed);
    cr_assert_eq(r.res[0].remaining, 3);
    cr_assert_not(r.res[1].allowed);
    cr_assert_eq(r.res[1].remaining, 2);
    cr_assert_eq(t_used(e, &a), 2);
    cr_assert_eq(t_used(e, &b), 3);
}


RL_TEST(many_cost_above_a_limit_is_denied_without_retry_time) {
    t_limit_t a, b;
    const t_limit_t *limits[] = {&a, &b};
    t_many_t r;

    t_limit_init(e, &a, "a", 5, 1);
    t_limit_init(e, &b, "b", 0, 1);

    r = t_many(e, limits, 2);
    cr_assert(r.res[0].allowed);
    cr_assert_not(r.res[1].allowed, "limit 0 denies");
    cr_assert_eq(r.res[1].retry_after_ms, 0, "waiting cannot help");
    cr_assert_eq(t_used(e, &a), 0);
}


/*
 * 100 calls fired together on overlapping keys: half want a and b, half b
 * and c. b is the tighter limit overall, so exactly 40 calls get in, never
 * more than 25 through a or c, and each key holds exactly what its
 * admitted calls took.
 */
RL_TEST(racing_many_calls_on_overlapping_keys_never_exceed_any_limit) {
    static t_many_t answers[100];
    static const t_limit_t *sets[100][2];
    t_limit_t a, b, c;
    size_t ab = 0, bc = 0;

    t_limit_init(e, &a, "a", 25, 1);
    t_limit_init(e, &b, "b", 40, 1);
    t_limit_init(e, &c, "c", 25, 1);
    for (size_t i = 0; i < 100; i++) {
        sets[i][0] = i % 2 ? &b : &a;
        sets[i][1] = i % 2 ? &c : &b;
    }
    {
        const t_limit_t *const *ptrs[100];

        for (size_t i = 0; i < 100; i++) {
            ptrs[i] = sets[i];
        }
        t_many_fire(e, ptrs, 2, answers, 100);
    }
    for (size_t i = 0; i < 100; i++) {
        if (t_many_allowed(&answers[i])) {
            *(i % 2 ? &bc : &ab) += 1;
        }
    }
    cr_assert_leq(ab, 25);
    cr_assert_leq(bc, 25);
    cr_assert_eq(ab + bc, 40, "admitted %zu + %zu", ab, bc);
    if (e->redis) {
        cr_assert_eq(t_zcard_of(e, a.key), (long long)ab);
        cr_assert_eq(t_zcard_of(e, b.key), 40);
        cr_assert_eq(t_zcard_of(e, c.key), (long long)bc);
    }
    cr_assert_eq(t_used(e, &a), ab);
    cr_assert_eq(t_used(e, &b), 40);
    cr_assert_eq(t_used(e, &c), bc);
}


RL_TEST(many_refuses_no_checks_too_many_and_a_repeated_key) {
    rl_request_t reqs[RL_MANY_MAX + 1];
    char keys[RL_MANY_MAX + 1][200];
    t_many_t a = {0};
    t_many_batch_t batch = {&a, 1};

    for (size_t i = 0; i <= RL_MANY_MAX; i++) {
        snprintf(keys[i], sizeof(keys[i]), "{%s}:%zu", e->key, i);
        reqs[i] = (rl_request_t){.key = keys[i],
                                 .key_len = strlen(keys[i]),
                                 .limit = 5,
                                 .window_ms = T_HOUR_MS,
                                 .cost = 1,
                                 .timeout_ms = T_TIMEOUT_MS};
    }
    cr_assert_eq(rl_check_many(e->be, reqs, 0, t_on_many, &a),
                 CPS_INVALID_ARGUMENT);
    cr_assert_eq(rl_check_many(e->be, reqs, RL_MANY_MAX + 1, t_on_many, &a),
                 CPS_INVALID_ARGUMENT);
    reqs[7].key = keys[3];
    reqs[7].key_len = strlen(keys[3]);
    cr_assert_eq(rl_check_many(e->be, reqs, RL_MANY_MAX, t_on_many, &a),
                 CPS_INVALID_ARGUMENT);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    cr_assert_eq(a.calls, 0, "a refused call has no callback");

    /* Sixteen distinct keys are fine. */
    reqs[7].key = keys[7];
    reqs[7].key_len = strlen(keys[7]);
    cr_assert_eq(rl_check_many(e->be, reqs, RL_MANY_MAX, t_on_many, &a),
                 CPS_OK);
    t_run_until(e, t_many_batch_done, &batch, T_TIMEOUT_MS + T_PATIENCE);
    cr_assert_eq(a.status, CPS_OK, "%s", a.msg);
    cr_assert_eq(a.n, RL_MANY_MAX);
    cr_assert(t_many_allowed(&a));
    cr_assert_eq(a.res[15].remaining, 4);
}


/* A call may consume at most LIM_RL_COST_MAX units over all its limits,
 * not that many on each: above it the call is refused whole. */
RL_TEST(many_refuses_costs_that_add_up_above_the_most_one_call_may_take) {
    t_limit_t a, b;
    const t_limit_t *limits[] = {&a, &b};
    rl_request_t reqs[2];
    t_many_t m = {0};

    t_limit_init(e, &a, "a", LIM_RL_COST_MAX, LIM_RL_COST_MAX / 2);
    t_limit_init(e, &b, "b", LIM_RL_COST_MAX, LIM_RL_COST_MAX / 2 + 1);
    t_requests(limits, 2, reqs);
    cr_assert_eq(rl_check_many(e->be, reqs, 2, t_on_many, &m),
                 CPS_INVALID_ARGUMENT);

    /* Costs whose sum wraps around 2^64 are refused too. */
    reqs[0].cost = UINT64_MAX;
    reqs[1].cost = 2;
    cr_assert_eq(rl_check_many(e->be, reqs, 2, t_on_many, &m),
                 CPS_INVALID_ARGUMENT);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    cr_assert_eq(m.calls, 0, "a refused call has no callback");
    if (e->redis) {
        cr_assert_eq(t_zcard_of(e, a.key), 0);
        cr_assert_eq(t_zcard_of(e, b.key), 0);
    }

    /* Exactly the most is admitted; each limit shows only its own cost, so
     * the refused calls consumed nothing. */
    b.cost = LIM_RL_COST_MAX - a.cost;
    m = t_many(e, limits, 2);
    cr_assert(t_many_allowed(&m));
    cr_assert_eq(m.res[0].remaining, LIM_RL_COST_MAX - a.cost);
    cr_assert_eq(m.res[1].remaining, LIM_RL_COST_MAX - b.cost);
}


/* ---- memory backend only --------------------------------------------- */

static bool t_only_one_key_left(void *arg) {
    t_env_t *e = arg;

    return rl_memory_key_count(e->be) == 1;
}


Test(rl_memory, sweep_frees_keys_whose_window_has_passed) {
    t_env_t env;
    t_env_t *e = &env;
    char key[160];

    t_open(e, false);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "%s-%d", e->key, i);
        cr_assert(t_check_on(e, key, 10, 20, 1, T_TIMEOUT_MS).res.allowed);
    }
    cr_assert(t_check(e, 1, T_HOUR_MS, 1).allowed);
    cr_assert_eq(rl_memory_key_count(e->be), 101);

    t_run_until(e, t_only_one_key_left, e, T_PATIENCE);

    /* The key still inside its window kept its state. */
    cr_assert_not(t_check(e, 1, T_HOUR_MS, 1).allowed);
    t_close(e);
}


/* ---- Redis backend only ---------------------------------------------- */

/* The request id of a member "<instance>:<counter>:<unit>". */
static size_t t_request_id_len(const char *member) {
    const char *last = strrchr(member, ':');

    return last ? (size_t)(last - member) : strlen(member);
}


Test(rl_redis, units_are_distinct_members_even_within_one_millisecond) {
    static t_answer_t answers[50];
    t_env_t env;
    t_env_t *e = &env;
    redisContext *c;
    redisReply *r;
    char key[192];
    bool shared = false;

    t_open(e, true);
    cr_assert(t_check(e, 1000, T_HOUR_MS, 3).allowed);
    t_fire(e, e->key, 1000, T_HOUR_MS, 1, T_TIMEOUT_MS, answers, 50);
    cr_assert_eq(t_count_allowed(answers, 50), 50);
    cr_assert_eq(t_zcard(e), 53, "every admitted unit is its own member");

    /* Precondition of the test: two different requests were admitted in
     * the same millisecond, which one second-resolution id would merge. */
    c = t_sync_connect(e->url);
    t_full_key(e, key, sizeof(key));
    r = redisCommand(c, "ZRANGE %s 0 -1 WITHSCORES", key);
    cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY);
    for (size_t i = 2; i + 1 < r->elements && !shared; i += 2) {
        const char *a = r->element[i - 2]->str;
        const char *b = r->element[i]->str;

        shared = strcmp(r->element[i - 1]->str, r->element[i + 1]->str) == 0 &&
                 (t_request_id_len(a) != t_request_id_len(b) ||
                  strncmp(a, b, t_request_id_len(a)) != 0);
    }
    freeReplyObject(r);
    redisFree(c);
    cr_assert(shared, "no two requests were admitted in one millisecond");
    t_close(e);
}


/*
 * The exact window edge, on Redis's own clock: one member is stored for
 * every millisecond around "one window ago", then a denied check reports
 * retry_after_ms, from which the script's `now` follows exactly (the newest
 * member is the one the request waits for). Every member at or before
 * now - window must be gone and every later one kept.
 */
Test(rl_redis, window_edge_and_retry_after_are_exact_on_the_redis_clock) {
    enum { BEFORE = 50, AFTER = 200, N = BEFORE + AFTER + 1 };
    const long long window = 10000;
    static char members[N][16];
    static char scores[N][24];
    static const char *argv[2 + 2 * N];
    t_env_t env;
    t_env_t *e = &env;
    redisContext *c;
    redisReply *r;
    char key[192];
    long long t;
    long long now;
    rl_result_t res;

    t_open(e, true);
    t_full_key(e, key, sizeof(key));
    c = t_sync_connect(e->url);
    r = redisCommand(c, "TIME");
    cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    t = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);

    argv[0] = "ZADD";
    argv[1] = key;
    for (int i = 0; i < N; i++) {
        snprintf(scores[i], sizeof(scores[i]), "%lld", t - window - BEFORE + i);
        snprintf(members[i], sizeof(members[i]), "m%d", i);
        argv[2 + 2 * i] = scores[i];
        argv[3 + 2 * i] = members[i];
    }
    r = redisCommandArgv(c, 2 + 2 * N, argv, NULL);
    cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == N);
    freeReplyObject(r);

    res = t_check(e, 1, (uint64_t)window, 1);
    cr_assert_not(res.allowed, "precondition: the check ran within %d ms",
                  AFTER);
    cr_assert_gt(res.retry_after_ms, 0);
    now = t - window + AFTER + window - (long long)res.retry_after_ms;

    r = redisCommand(c, "ZRANGE %s 0 0 WITHSCORES", key);
    cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    cr_assert_eq(atoll(r->element[1]->str), now - window + 1,
                 "oldest member kept must be the first one after the edge");
    freeReplyObject(r);
    cr_assert_eq(t_sync_int(c, "ZCARD %s", key), (long long)res.retry_after_ms);
    redisFree(c);
    t_close(e);
}


static void t_assert_expiry_within(const t_env_t *e, long long window) {
    redisContext *c = t_sync_connect(e->url);
    char key[192];
    long long pttl;

    t_full_key(e, key, sizeof(key));
    pttl = t_sync_int(c, "PTTL %s", key);
    redisFree(c);
    cr_assert_neq(pttl, -1, "the key has no expiry");
    cr_assert_gt(pttl, 0);
    cr_assert_leq(pttl, window);
}


Test(rl_redis, every_key_carries_an_expiry_within_its_window) {
    t_env_t env;
    t_env_t *e = &env;

    t_open(e, true);
    cr_assert(t_check(e, 1, 5000, 1).allowed);
    t_assert_expiry_within(e, 5000);
    cr_assert_not(t_check(e, 1, 5000, 1).allowed);
    t_assert_expiry_within(e, 5000);
    t_close(e);
}


Test(rl_redis, script_flush_is_invisible_to_callers) {
    t_env_t env;
    t_env_t *e = &env;
    redisContext *c;
    redisReply *r;

    t_open(e, true);
    cr_assert(t_check(e, 10, T_HOUR_MS, 1).allowed);

    c = t_sync_connect(e->url);
    r = redisCommand(c, "SCRIPT FLUSH");
    cr_assert(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);

    cr_assert(t_check(e, 10, T_HOUR_MS, 1).allowed);
    cr_assert(t_check(e, 10, T_HOUR_MS, 1).allowed);
    cr_assert_eq(t_zcard(e), 3, "the fallback ran each request once");
    t_close(e);
}


static bool t_reason_known(void *arg) {
    t_env_t *e = arg;
    char detail[256];

    e->be->ops->is_up(e->be, detail, sizeof(detail));
    return strstr(detail, "connecting") == NULL;
}


Test(rl_redis, unreachable_redis_fails_checks_at_once) {
    t_env_t env;
    t_env_t *e = &env;
    char url[64];
    char detail[256];
    rl_request_t req = {.key = "k",
                        .key_len = 1,
                        .limit = 1,
                        .window_ms = 1000,
                        .cost = 1,
                        .timeout_ms = 1000};
    t_answer_t a = {0};

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", h_free_port());
    t_open_redis(e, url);
    t_run_until(e, t_reason_known, e, T_PATIENCE);
    cr_assert_not(e->be->ops->is_up(e->be, detail, sizeof(detail)));
    cr_assert(strstr(detail, "redis unreachable") != NULL, "%s", detail);
    cr_assert(strstr(detail, "refused") != NULL, "%s", detail);

    cr_assert_eq(rl_check(e->be, &req, t_on_done, &a), CPS_OK);
    cr_assert_eq(a.calls, 1, "answered before rl_check returned");
    cr_assert_eq(a.status, CPS_UNAVAILABLE);
    cr_assert_str_eq(a.msg, "redis unreachable");
    t_close(e);
}


Test(rl_redis, close_answers_every_pending_check_once) {
    t_env_t env;
    t_env_t *e = &env;
    t_answer_t answers[20] = {0};
    rl_request_t req = {
        .limit = 100, .window_ms = 1000, .cost = 1, .timeout_ms = T_TIMEOUT_MS};

    t_open(e, true);
    req.key = e->key;
    req.key_len = strlen(e->key);
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(rl_check(e->be, &req, t_on_done, &answers[i]), CPS_OK);
    }
    t_close(e);
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(answers[i].calls, 1);
        cr_assert_eq(answers[i].status, CPS_UNAVAILABLE);
    }
}


typedef struct t_closer {
    rl_backend_t *be;
    t_answer_t answer;
} t_closer_t;


static void t_close_on_answer(void *arg,
                              int status,
                              const rl_result_t *res,
                              const char *msg) {
    t_closer_t *cl = arg;

    t_on_done(&cl->answer, status, res, msg);
    cl->be->ops->close(cl->be);
}


/* close() from inside a reply callback, while hiredis is still working
 * through the replies: the other checks are answered once each. */
Test(rl_redis, close_from_inside_a_callback_answers_the_rest_once) {
    t_env_t env;
    t_env_t *e = &env;
    t_answer_t answers[19] = {0};
    t_closer_t closer = {0};
    rl_request_t req = {
        .limit = 100, .window_ms = 1000, .cost = 1, .timeout_ms = T_TIMEOUT_MS};

    t_open(e, true);
    req.key = e->key;
    req.key_len = strlen(e->key);
    closer.be = e->be;
    cr_assert_eq(rl_check(e->be, &req, t_close_on_answer, &closer), CPS_OK);
    for (int i = 0; i < 19; i++) {
        cr_assert_eq(rl_check(e->be, &req, t_on_done, &answers[i]), CPS_OK);
    }
    uv_run(&e->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&e->loop), 0, "a handle outlived close()");

    cr_assert_eq(closer.answer.calls, 1);
    cr_assert_eq(closer.answer.status, CPS_OK);
    for (int i = 0; i < 19; i++) {
        cr_assert_eq(answers[i].calls, 1);
        cr_assert_eq(answers[i].status, CPS_UNAVAILABLE);
    }
}


/* Check until one is admitted, a bounded number of times. */
static void t_until_admitted(t_env_t *e) {
    for (int i = 0; i < 300; i++) {
        t_answer_t a = t_check_on(e, e->key, 1000, T_HOUR_MS, 1, 500);

        if (a.status == CPS_OK) {
            cr_assert(a.res.allowed);
            return;
        }
        t_sleep(e, 50);
    }
    cr_assert_fail("checks never succeeded again");
}


Test(rl_redis,
     stopped_redis_answers_within_the_timeout_then_recovers_on_restart,
     .fini = t_fini_own_redis) {
    t_env_t env;
    t_env_t *e = &env;
    t_answer_t a;
    int port;

    t_open_own(e);
    cr_assert(t_check(e, 1000, T_HOUR_MS, 1).allowed);
    port = t_own.port;

    h_proc_stop(&t_own);
    a = t_check_on(e, e->key, 1000, T_HOUR_MS, 1, 300);
    cr_assert(a.status == CPS_UNAVAILABLE || a.status == CPS_DEADLINE_EXCEEDED,
              "got %s", cps_status_name(a.status));

    h_redis_start(&t_own, port);
    t_until_admitted(e);
    t_close(e);
}


static bool t_is_down(void *arg) {
    return !t_is_up(arg);
}


Test(rl_redis,
     frozen_redis_answers_within_the_timeout_and_the_watchdog_reconnects,
     .fini = t_fini_own_redis) {
    t_env_t env;
    t_env_t *e = &env;
    t_answer_t a;

    t_open_own(e);
    cr_assert(t_check(e, 1000, T_HOUR_MS, 1).allowed);

    /* A stopped process keeps its socket open and never answers. */
    cr_assert_eq(kill(t_own.pid, SIGSTOP), 0);
    a = t_check_on(e, e->key, 1000, T_HOUR_MS, 1, 300);
    cr_assert_eq(a.status, CPS_DEADLINE_EXCEEDED, "got %s",
                 cps_status_name(a.status));

    t_run_until(e, t_is_down, e, T_PATIENCE);
    a = t_check_on(e, e->key, 1000, T_HOUR_MS, 1, 300);
    cr_assert_eq(a.status, CPS_UNAVAILABLE);

    cr_assert_eq(kill(t_own.pid, SIGCONT), 0);
    t_until_admitted(e);
    t_close(e);
}


Test(rl_redis,
     password_and_database_come_from_the_url,
     .fini = t_fini_own_redis) {
    t_env_t env;
    t_env_t *e = &env;
    redisContext *c;
    redisReply *r;
    char url[128];
    char key[192];

    h_redis_start(&t_own, 0);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", t_own.port);
    c = t_sync_connect(url);
    r = redisCommand(c, "CONFIG SET requirepass s3cr%s", "et@x");
    cr_assert(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);

    snprintf(url, sizeof(url), "redis://:s3cret%%40x@127.0.0.1:%d/3",
             t_own.port);
    t_open_redis(e, url);
    t_run_until(e, t_is_up, e, T_PATIENCE);
    cr_assert(t_check(e, 5, T_HOUR_MS, 1).allowed);

    c = t_sync_connect(url);
    t_full_key(e, key, sizeof(key));
    cr_assert_eq(t_sync_int(c, "EXISTS %s", key), 1, "the key is in db 3");
    r = redisCommand(c, "SELECT 0");
    freeReplyObject(r);
    cr_assert_eq(t_sync_int(c, "EXISTS %s", key), 0);
    redisFree(c);
    t_close(e);
}


Test(rl_redis, bad_urls_are_refused_without_quoting_them) {
    static const char *const bad[] = {
        "http://127.0.0.1:6379",
        "redis://",
        "redis://127.0.0.1:0",
        "redis://127.0.0.1:65536",
        "redis://127.0.0.1:6379/x",
        "redis://127.0.0.1:6379?timeout=1",
        "rediss://127.0.0.1:6379",
        "redis://hunter2@127.0.0.1:6379",
        "redis://:hunter2%zz@127.0.0.1:6379",
        "redis://:@127.0.0.1:6379",
        "redis://[::1:6379",
    };
    rl_redis_config_t cfg = {0};
    uv_loop_t loop;
    char err[256];

    cr_assert_eq(uv_loop_init(&loop), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.url = bad[i];
        err[0] = '\0';
        cr_assert_null(rl_redis_new(&loop, &cfg, err, sizeof(err)), "%s",
                       bad[i]);
        cr_assert(strstr(err, "invalid Redis URL") != NULL, "%s", err);
        cr_assert(strstr(err, "hunter2") == NULL, "%s", err);
    }
    cr_assert_eq(uv_loop_close(&loop), 0);
}


Test(rl_redis, url_parts_are_decoded) {
    rl_redis_url_t u;

    cr_assert_null(
        rl_redis_url_parse("redis://app:p%40ss%3A1@[::1]:6380/2", &u));
    cr_assert_str_eq(u.user, "app");
    cr_assert_str_eq(u.password, "p@ss:1");
    cr_assert_str_eq(u.host, "::1");
    cr_assert_eq(u.port, 6380);
    cr_assert_eq(u.db, 2);
    rl_redis_url_free(&u);

    cr_assert_null(rl_redis_url_parse("redis://cache.internal", &u));
    cr_assert_str_eq(u.host, "cache.internal");
    cr_assert_eq(u.port, 6379);
    cr_assert_eq(u.db, -1);
    cr_assert_null(u.user);
    cr_assert_null(u.password);
    rl_redis_url_free(&u);
}


/* ---- check_many on Redis only ---------------------------------------- */

Test(rl_redis, every_key_of_a_check_many_carries_an_expiry) {
    t_env_t env;
    t_env_t *e = &env;
    t_limit_t a, b;
    const t_limit_t *limits[] = {&a, &b};
    redisContext *c;
    char key[256];

    t_open(e, true);
    t_limit_init(e, &a, "a", 1, 1);
    t_limit_init(e, &b, "b", 5, 1);
    cr_assert(t_many(e, limits, 2).res[0].allowed);
    cr_assert_not(t_many(e, limits, 2).res[0].allowed);

    c = t_sync_connect(e->url);
    for (int i = 0; i < 2; i++) {
        long long pttl;

        snprintf(key, sizeof(key), "%s%s", T_PREFIX, limits[i]->key);
        pttl = t_sync_int(c, "PTTL %s", key);
        cr_assert_gt(pttl, 0, "%s has no expiry", key);
        cr_assert_leq(pttl, T_HOUR_MS);
    }
    redisFree(c);
    t_close(e);
}


Test(rl_redis, script_flush_is_invisible_to_check_many) {
    t_env_t env;
    t_env_t *e = &env;
    t_limit_t a, b;
    const t_limit_t *limits[] = {&a, &b};
    redisContext *c;
    redisReply *r;

    t_open(e, true);
    t_limit_init(e, &a, "a", 10, 1);
    t_limit_init(e, &b, "b", 10, 2);
    {
        t_many_t m = t_many(e, limits, 2);

        cr_assert(t_many_allowed(&m));
    }

    c = t_sync_connect(e->url);
    r = redisCommand(c, "SCRIPT FLUSH");
    cr_assert(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);

    for (int i = 0; i < 2; i++) {
        t_many_t m = t_many(e, limits, 2);

        cr_assert(t_many_allowed(&m));
    }
    cr_assert_eq(t_zcard_of(e, a.key), 3, "each call ran once");
    cr_assert_eq(t_zcard_of(e, b.key), 6);
    t_close(e);
}


Test(rl_redis, unreachable_redis_fails_check_many_at_once) {
    t_env_t env;
    t_env_t *e = &env;
    char url[64];
    rl_request_t reqs[2] = {
        {.key = "a", .key_len = 1, .limit = 1, .window_ms = 1000, .cost = 1},
        {.key = "b", .key_len = 1, .limit = 1, .window_ms = 1000, .cost = 1},
    };
    t_many_t a = {0};

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", h_free_port());
    t_open_redis(e, url);
    t_run_until(e, t_reason_known, e, T_PATIENCE);
    cr_assert_eq(rl_check_many(e->be, reqs, 2, t_on_many, &a), CPS_OK);
    cr_assert_eq(a.calls, 1, "answered before rl_check_many returned");
    cr_assert_eq(a.status, CPS_UNAVAILABLE);
    t_close(e);
}


Test(rl_redis,
     frozen_redis_answers_check_many_within_its_timeout,
     .fini = t_fini_own_redis) {
    t_env_t env;
    t_env_t *e = &env;
    rl_request_t reqs[2];
    t_limit_t a, b;
    const t_limit_t *limits[] = {&a, &b};
    t_many_t m = {0};
    t_many_batch_t batch = {&m, 1};

    t_open_own(e);
    t_limit_init(e, &a, "a", 10, 1);
    t_limit_init(e, &b, "b", 10, 1);
    t_requests(limits, 2, reqs);
    reqs[0].timeout_ms = 300;

    cr_assert_eq(kill(t_own.pid, SIGSTOP), 0);
    cr_assert_eq(rl_check_many(e->be, reqs, 2, t_on_many, &m), CPS_OK);
    t_run_until(e, t_many_batch_done, &batch, T_PATIENCE);
    cr_assert_eq(m.calls, 1);
    cr_assert_eq(m.status, CPS_DEADLINE_EXCEEDED, "got %s",
                 cps_status_name(m.status));
    cr_assert_eq(kill(t_own.pid, SIGCONT), 0);
    t_close(e);
}
