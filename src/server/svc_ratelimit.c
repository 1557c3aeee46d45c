/*
 * RateLimiter service: request validation and the bridge from a call to
 * the configured rate-limit backend (src/ratelimit).
 */
#include "call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "field_limits.h"
#include "ratelimit.h"
#include "status.h"

#include "cpstore/v1/ratelimit.pb-c.h"

typedef struct rl_call {
    call_t *call;
    Cpstore__V1__RateLimitCheckRequest *req;
} rl_call_t;


/* Returns NULL when the request is acceptable, else the reason. */
static const char *svc_ratelimit_invalid(
    const Cpstore__V1__RateLimitCheckRequest *req) {
    if (req->key == NULL || req->key[0] == '\0') {
        return "key is required";
    }
    if (strlen(req->key) > LIM_RL_KEY_MAX) {
        return "key is longer than 512 bytes";
    }
    if (req->window_ms == 0) {
        return "window_ms must be at least 1";
    }
    if (req->window_ms > LIM_RL_WINDOW_MAX_MS) {
        return "window_ms is longer than 366 days";
    }
    if (req->limit > LIM_RL_LIMIT_MAX) {
        return "limit is above 1000000";
    }
    if (req->cost > LIM_RL_COST_MAX) {
        return "cost is above 10000";
    }
    return NULL;
}


static void svc_ratelimit_done(void *arg,
                               int status,
                               const rl_result_t *res,
                               const char *msg) {
    rl_call_t *rc = arg;
    Cpstore__V1__RateLimitCheckResponse resp =
        CPSTORE__V1__RATE_LIMIT_CHECK_RESPONSE__INIT;

    if (status != CPS_OK) {
        call_fail(rc->call, status, msg ? msg : "rate-limit backend error");
    } else {
        resp.allowed = res->allowed;
        resp.limit = res->limit;
        resp.remaining = res->remaining;
        resp.reset_after_ms = res->reset_after_ms;
        resp.retry_after_ms = res->retry_after_ms;
        call_reply(rc->call, &resp.base);
    }
    cpstore__v1__rate_limit_check_request__free_unpacked(rc->req, NULL);
    free(rc);
}


void svc_ratelimit_check(call_t *call, const uint8_t *payload, size_t len) {
    Cpstore__V1__RateLimitCheckRequest *req;
    const char *invalid;
    rl_request_t r;
    rl_call_t *rc;
    int status;

    req = cpstore__v1__rate_limit_check_request__unpack(NULL, len, payload);
    if (req == NULL) {
        call_fail(call, CPS_INVALID_ARGUMENT,
                  "payload is not a RateLimitCheckRequest");
        return;
    }
    invalid = svc_ratelimit_invalid(req);
    if (invalid != NULL) {
        call_fail(call, CPS_INVALID_ARGUMENT, invalid);
        cpstore__v1__rate_limit_check_request__free_unpacked(req, NULL);
        return;
    }
    rc = malloc(sizeof(*rc));
    if (rc == NULL) {
        call_fail(call, CPS_RESOURCE_EXHAUSTED, "out of memory");
        cpstore__v1__rate_limit_check_request__free_unpacked(req, NULL);
        return;
    }
    rc->call = call;
    rc->req = req;

    r.key = req->key;
    r.key_len = strlen(req->key);
    r.limit = req->limit;
    r.window_ms = req->window_ms;
    r.cost = req->cost == 0 ? 1 : req->cost;
    r.timeout_ms = call_remaining_ms(call);

    status = rl_check(call_backends(call)->ratelimit, &r, svc_ratelimit_done,
                      rc);
    if (status != CPS_OK) {
        svc_ratelimit_done(rc, status, NULL, "rate-limit backend refused");
    }
}
