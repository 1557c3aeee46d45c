/*
 * Rate-limit backends: an exact sliding window over one key.
 *
 * Semantics shared by every backend (DESIGN.md section 5, "Rate limits"):
 * at most `limit` units are admitted in any trailing `window_ms`; only
 * admitted requests are stored, so a denied request consumes nothing; a cost
 * above the limit, and any cost under limit 0, is denied; `remaining` is
 * never negative; `retry_after_ms` is the wait after which the same request
 * fits if nothing else is admitted meanwhile (0 when allowed, and 0 when the
 * cost can never fit); `reset_after_ms` is the time until no admitted unit is
 * left in the window.
 *
 * The service layer validates requests against src/core/field_limits.h
 * before it calls a backend, so backends may assume 1 <= cost <=
 * LIM_RL_COST_MAX, limit <= LIM_RL_LIMIT_MAX and 1 <= window_ms <=
 * LIM_RL_WINDOW_MAX_MS. A check_many is bounded as a whole too: its costs
 * sum to at most LIM_RL_COST_MAX, which the backends check themselves (see
 * rl_many_valid), so that no call writes more than that many units.
 *
 * Several limits at once (check_many): 1 to RL_MANY_MAX checks, each on its
 * own key with its own limit, window and cost, decided together and
 * atomically. The call is admitted only if every check fits, and then every
 * check consumes its cost; if any check does not fit, nothing is consumed on
 * any key. One result comes back per check, in order; in it `allowed` says
 * whether that limit alone admits the request, so the call is admitted
 * exactly when every result is allowed, and the first result that is not
 * names the limit that denied. When the call is admitted, `remaining` and
 * `reset_after_ms` count the units just consumed; when it is denied they
 * describe the key as it is (nothing was added), and `retry_after_ms` is set
 * on each limit that denies as for a single check. Keys must be distinct:
 * the same key twice would be counted once and admitted twice.
 */
#ifndef CPSTORE_RATELIMIT_H
#define CPSTORE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "field_limits.h"

typedef struct rl_request {
    const char *key; /* not NUL-terminated; valid until the callback */
    size_t key_len;
    uint64_t limit;
    uint64_t window_ms;
    uint64_t cost;
    uint32_t timeout_ms; /* answer within this, whatever the backend does;
                            0: the backend's default (1 s) */
} rl_request_t;

typedef struct rl_result {
    bool allowed;
    uint64_t limit;
    uint64_t remaining;
    uint64_t reset_after_ms;
    uint64_t retry_after_ms;
} rl_result_t;

/*
 * Completion of one check: status is CPS_OK with *res filled, or an error
 * (CPS_UNAVAILABLE while the backend is unreachable, CPS_DEADLINE_EXCEEDED
 * when it did not answer within timeout_ms, CPS_INTERNAL) with res NULL and
 * a short reason in msg. Runs on the loop thread, exactly once per check.
 */
typedef void (*rl_done_cb)(void *arg,
                           int status,
                           const rl_result_t *res,
                           const char *msg);

/*
 * Completion of a check_many: status CPS_OK with n results in res (one per
 * check, in request order; see above), or an error as for rl_done_cb with
 * res NULL. Runs on the loop thread, exactly once per call.
 */
typedef void (*rl_many_done_cb)(
    void *arg, int status, const rl_result_t *res, size_t n, const char *msg);

/* Most checks in one check_many (RateLimitCheckManyRequest.checks). */
#define RL_MANY_MAX LIM_RL_CHECKS_MAX

typedef struct rl_backend rl_backend_t;

typedef struct rl_backend_ops {
    const char *kind; /* "memory" or "redis" */

    /* Start one check. The callback may run before this returns: the memory
     * backend always answers at once, the Redis backend does when Redis is
     * unreachable (CPS_UNAVAILABLE). Returns CPS_OK, or an error without
     * calling the callback (out of memory). */
    int (*check)(rl_backend_t *be,
                 const rl_request_t *req,
                 rl_done_cb cb,
                 void *arg);

    /* Start one decision over n checks (see check_many above). The
     * timeout_ms of reqs[0] bounds the whole call; that of the others is
     * ignored. Reqs and their keys need only live until this returns. The
     * callback may run before this returns, as for check. Returns CPS_OK;
     * or, without calling the callback, CPS_INVALID_ARGUMENT when
     * rl_many_valid refuses reqs, or CPS_RESOURCE_EXHAUSTED. */
    int (*check_many)(rl_backend_t *be,
                      const rl_request_t *reqs,
                      size_t n,
                      rl_many_done_cb cb,
                      void *arg);

    /* Whether checks can succeed now; on false, a short reason. */
    bool (*is_up)(rl_backend_t *be, char *detail, size_t detail_len);

    /* Stop timers and connections. Pending checks complete with
     * CPS_UNAVAILABLE. The backend is freed once its handles are closed;
     * it must not be used after this call. */
    void (*close)(rl_backend_t *be);
} rl_backend_ops_t;

struct rl_backend {
    const rl_backend_ops_t *ops;
};

/* In-process backend: no server, nothing durable. */
rl_backend_t *rl_memory_new(uv_loop_t *loop);

/* Keys the memory backend `be` holds right now, live or not yet swept (for
 * tests and metrics; only for a backend made by rl_memory_new). */
size_t rl_memory_key_count(const rl_backend_t *be);

typedef struct rl_redis_config {
    const char *url;    /* redis://[[user]:password@]host[:port][/db] */
    const char *prefix; /* prepended to every key; default "cpstore:rl:" */
    uint32_t connect_timeout_ms; /* connect and handshake; 0: 2 s */
} rl_redis_config_t;

/*
 * Redis backend over hiredis async on `loop`. Connects in the background
 * and reconnects on its own after any failure. Returns NULL (with a reason
 * in err) only if the configuration cannot be parsed.
 */
rl_backend_t *rl_redis_new(uv_loop_t *loop,
                           const rl_redis_config_t *cfg,
                           char *err,
                           size_t err_len);

static inline int
rl_check(rl_backend_t *be, const rl_request_t *req, rl_done_cb cb, void *arg) {
    return be->ops->check(be, req, cb, arg);
}


static inline int rl_check_many(rl_backend_t *be,
                                const rl_request_t *reqs,
                                size_t n,
                                rl_many_done_cb cb,
                                void *arg) {
    return be->ops->check_many(be, reqs, n, cb, arg);
}

/*
 * Whether reqs[0..n) is a valid check_many: 1 <= n <= RL_MANY_MAX, the
 * costs sum to at most LIM_RL_COST_MAX, and no key is given twice. On a
 * repeated key, *first and *second (when not NULL) are the indexes of its
 * first two uses; on the other failures they are left as they were. Shared
 * by the backends and the service layer, which checks the count and the
 * costs first, with messages of its own, and reports the indexes.
 */
bool rl_many_valid(const rl_request_t *reqs,
                   size_t n,
                   size_t *first,
                   size_t *second);

#endif
