/*
 * RateLimiter service: request validation, named policies, the fallback
 * for an unreachable backend, and the bridge from a call to the configured
 * rate-limit backend (src/ratelimit).
 *
 * Design note.
 *
 * - Check and CheckMany are one path here: a Check is a call of one check
 *   that answers with a RateLimitCheckResponse, a CheckMany a call of 1 to
 *   RL_MANY_MAX checks, decided together by the backend's check_many
 *   (admitted only if every limit admits, and then consumed on every
 *   limit), that answers with one result per check plus the first limit
 *   that denied. Two checks of one CheckMany on the same key are refused
 *   (INVALID_ARGUMENT, naming both): the backends count a key once per call
 *   and would charge it twice.
 *
 * - Bounds on work. Each check is bounded by field_limits.h, and so is the
 *   call as a whole: the costs of all its checks together (a cost of 0
 *   counting as the 1 it means) may not exceed LIM_RL_COST_MAX. On Redis an
 *   admitted unit is one sorted-set member, added by one script during
 *   which Redis serves no other client, so the units one call may add bound
 *   both how long it stalls every other caller and what it leaves stored
 *   for up to a window. Bounding each check alone would let a call of 16
 *   checks add 16 times as much.
 *
 * - Policies. A check gives either its own limit and window_ms, or the name
 *   of a policy of the configuration file ([policy.NAME]), whose limit and
 *   window it then uses; with a policy, the request's limit and window_ms
 *   must be 0 (INVALID_ARGUMENT otherwise, so that a caller never believes
 *   its own numbers apply). A name the configuration does not hold is
 *   NOT_FOUND: the request is well formed, but this server's configuration
 *   lacks the name (typically one not yet reloaded). Names are looked up
 *   when the call arrives, so a configuration reloaded by SIGHUP applies
 *   from the next call on; the call never holds on to the configuration.
 *
 * - Unreachable backend. A backend answer of UNAVAILABLE (Redis down,
 *   refusing, loading) or DEADLINE_EXCEEDED (Redis connected but silent: a
 *   hung server keeps its socket open) means the counters could not be used
 *   for this call, and `[ratelimit] unavailable` decides the answer, as it
 *   stood when the call arrived:
 *     error  the call fails with the backend's status;
 *     deny   OK, every check allowed = false, fallback = true, remaining 0,
 *            retry_after_ms SVC_RL_FALLBACK_RETRY_MS (a guess at when
 *            Redis may be back; the caller may retry sooner);
 *     allow  OK, allowed = true, fallback = true, remaining = limit.
 *   What is certain without a counter still holds: a check whose cost is
 *   above its limit (limit 0 included) is denied with retry_after_ms 0
 *   under either fallback, so that failing open never admits what no
 *   window could. Each call answered so counts once in metrics.h:
 *   ratelimit_fallback_allow, ratelimit_fallback_deny or
 *   ratelimit_unavailable_error, by the policy applied. Other backend
 *   errors (a malformed script reply, a cluster's CROSSSLOT) are faults,
 *   not unreachability, and fail the call as they are.
 *
 * - The fallback within the deadline. The backend is given the call's
 *   remaining time less a margin (a tenth, at most SVC_RL_MARGIN_MAX_MS), so
 *   that its own DEADLINE_EXCEEDED arrives, and the fallback answer goes
 *   out, before the server's deadline timer answers DEADLINE_EXCEEDED for
 *   the call.
 */
#include "call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfgfile.h"
#include "field_limits.h"
#include "metrics.h"
#include "ratelimit.h"
#include "status.h"

#include "cpstore/v1/ratelimit.pb-c.h"

#define SVC_RL_MARGIN_MAX_MS     100
#define SVC_RL_FALLBACK_RETRY_MS 1000
#define SVC_RL_WHY_MAX           160

typedef struct svc_rl_call {
    call_t *call;
    bool many;                    /* CheckMany, else Check */
    cf_unavailable_t unavailable; /* the fallback when the call arrived */
    ProtobufCMessage *msg;        /* the unpacked request; owns the keys */
    size_t n;
    rl_request_t reqs[RL_MANY_MAX];
} svc_rl_call_t;


/* A policy name as cfgfile.c accepts them: [A-Za-z0-9_.:-], 1 to 64. */
static bool svc_rl_name_ok(const char *s) {
    size_t n = strlen(s);

    if (n == 0 || n > CF_NAME_MAX) {
        return false;
    }
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789_.:-") == n;
}


/*
 * Turn one RateLimitCheckRequest into out: key and cost, and the limit and
 * window of the request or of its policy in cf. Returns CPS_OK, or
 * CPS_INVALID_ARGUMENT or CPS_NOT_FOUND with the reason in why (prefixed
 * with `where`, such as "checks[2]: ").
 */
static int svc_rl_resolve(const cf_file_t *cf,
                          const Cpstore__V1__RateLimitCheckRequest *in,
                          const char *where,
                          rl_request_t *out,
                          char *why,
                          size_t why_len) {
    const char *bad = NULL;

    if (in->key == NULL || in->key[0] == '\0') {
        bad = "key is required";
    } else if (strlen(in->key) > LIM_RL_KEY_MAX) {
        bad = "key is longer than 512 bytes";
    } else if (in->cost > LIM_RL_COST_MAX) {
        bad = "cost is above 1000";
    } else if (in->policy != NULL && in->policy[0] != '\0') {
        const cf_policy_t *p;

        if (!svc_rl_name_ok(in->policy)) {
            bad = "policy is not a policy name (1 to 64 of A-Z a-z 0-9 _ . "
                  ": -)";
        } else if (in->limit != 0 || in->window_ms != 0) {
            bad = "limit and window_ms must be 0 when a policy is named";
        } else if ((p = cf_policy(cf, in->policy)) == NULL) {
            snprintf(why, why_len, "%sno policy \"%s\" in the configuration",
                     where, in->policy);
            return CPS_NOT_FOUND;
        } else {
            out->limit = p->limit;
            out->window_ms = p->window_ms;
        }
    } else if (in->window_ms == 0) {
        bad = "window_ms must be at least 1 (or name a policy)";
    } else if (in->window_ms > LIM_RL_WINDOW_MAX_MS) {
        bad = "window_ms is longer than 366 days";
    } else if (in->limit > LIM_RL_LIMIT_MAX) {
        bad = "limit is above 100000";
    } else {
        out->limit = in->limit;
        out->window_ms = in->window_ms;
    }
    if (bad != NULL) {
        snprintf(why, why_len, "%s%s", where, bad);
        return CPS_INVALID_ARGUMENT;
    }
    out->key = in->key;
    out->key_len = strlen(in->key);
    out->cost = in->cost == 0 ? 1 : in->cost;
    return CPS_OK;
}


/* The backend's time: the call's, less the margin the fallback needs. */
static uint32_t svc_rl_backend_timeout(const call_t *call) {
    uint32_t left = call_remaining_ms(call);
    uint32_t margin = left / 10;

    if (margin > SVC_RL_MARGIN_MAX_MS) {
        margin = SVC_RL_MARGIN_MAX_MS;
    }
    return left - margin; /* at least 1: left >= 1 and margin <= left / 10 */
}


/* The results the configured fallback gives the call's checks. */
static void svc_rl_fallback(const svc_rl_call_t *rc, rl_result_t *res) {
    bool allow = rc->unavailable == CF_UNAVAILABLE_ALLOW;

    for (size_t i = 0; i < rc->n; i++) {
        const rl_request_t *q = &rc->reqs[i];
        bool never = q->cost > q->limit;

        res[i] = (rl_result_t){
            .allowed = allow && !never,
            .limit = q->limit,
            .remaining = allow ? q->limit : 0,
            .retry_after_ms = allow || never ? 0 : SVC_RL_FALLBACK_RETRY_MS,
        };
    }
}


static void svc_rl_fill(Cpstore__V1__RateLimitCheckResponse *out,
                        const rl_result_t *res,
                        bool fallback) {
    cpstore__v1__rate_limit_check_response__init(out);
    out->allowed = res->allowed;
    out->limit = res->limit;
    out->remaining = res->remaining;
    out->reset_after_ms = res->reset_after_ms;
    out->retry_after_ms = res->retry_after_ms;
    out->fallback = fallback;
}


static void
svc_rl_reply_many(svc_rl_call_t *rc, const rl_result_t *res, bool fallback) {
    Cpstore__V1__RateLimitCheckManyResponse resp =
        CPSTORE__V1__RATE_LIMIT_CHECK_MANY_RESPONSE__INIT;
    Cpstore__V1__RateLimitCheckResponse results[RL_MANY_MAX];
    Cpstore__V1__RateLimitCheckResponse *list[RL_MANY_MAX];
    const Cpstore__V1__RateLimitCheckManyRequest *req =
        (const Cpstore__V1__RateLimitCheckManyRequest *)rc->msg;

    resp.allowed = true;
    resp.denied_index = -1;
    resp.denied_key = (char *)"";
    for (size_t i = 0; i < rc->n; i++) {
        svc_rl_fill(&results[i], &res[i], fallback);
        list[i] = &results[i];
        if (!res[i].allowed && resp.allowed) {
            resp.allowed = false;
            resp.denied_index = (int32_t)i;
            resp.denied_key = req->checks[i]->key;
        }
    }
    resp.n_results = rc->n;
    resp.results = list;
    resp.fallback = fallback;
    call_reply(rc->call, &resp.base);
}


/* Answer the call from the backend's status and results (n of them when
 * status is CPS_OK), applying the fallback, then free it. */
static void svc_rl_finish(svc_rl_call_t *rc,
                          int status,
                          const rl_result_t *res,
                          const char *msg) {
    rl_result_t fallback[RL_MANY_MAX];
    bool fell_back = false;

    if (status == CPS_UNAVAILABLE || status == CPS_DEADLINE_EXCEEDED) {
        if (rc->unavailable == CF_UNAVAILABLE_ERROR) {
            mt_inc(MT_RL_UNAVAILABLE_ERROR);
        } else {
            svc_rl_fallback(rc, fallback);
            mt_inc(rc->unavailable == CF_UNAVAILABLE_ALLOW
                       ? MT_RL_FALLBACK_ALLOW
                       : MT_RL_FALLBACK_DENY);
            status = CPS_OK;
            res = fallback;
            fell_back = true;
        }
    }

    if (status != CPS_OK) {
        call_fail(rc->call, status, msg ? msg : "rate-limit backend error");
    } else if (rc->many) {
        svc_rl_reply_many(rc, res, fell_back);
    } else {
        Cpstore__V1__RateLimitCheckResponse resp;

        svc_rl_fill(&resp, &res[0], fell_back);
        call_reply(rc->call, &resp.base);
    }
    protobuf_c_message_free_unpacked(rc->msg, NULL);
    free(rc);
}


static void svc_rl_done_one(void *arg,
                            int status,
                            const rl_result_t *res,
                            const char *msg) {
    svc_rl_finish(arg, status, res, msg);
}


static void svc_rl_done_many(
    void *arg, int status, const rl_result_t *res, size_t n, const char *msg) {
    svc_rl_call_t *rc = arg;

    if (status == CPS_OK && n != rc->n) {
        status = CPS_INTERNAL;
        msg = "rate-limit backend answered for the wrong number of checks";
    }
    svc_rl_finish(rc, status, res, msg);
}


static svc_rl_call_t *svc_rl_new(call_t *call, ProtobufCMessage *msg) {
    svc_rl_call_t *rc = calloc(1, sizeof(*rc));

    if (rc == NULL) {
        call_fail(call, CPS_RESOURCE_EXHAUSTED, "out of memory");
        protobuf_c_message_free_unpacked(msg, NULL);
        return NULL;
    }
    rc->call = call;
    rc->msg = msg;
    rc->unavailable = call_backends(call)->config->rl_unavailable;
    return rc;
}


/* Refuse the call before any backend work, and free it. */
static void svc_rl_refuse(svc_rl_call_t *rc, int status, const char *why) {
    call_fail(rc->call, status, why);
    protobuf_c_message_free_unpacked(rc->msg, NULL);
    free(rc);
}


void svc_ratelimit_check(call_t *call, const uint8_t *payload, size_t len) {
    Cpstore__V1__RateLimitCheckRequest *req;
    svc_rl_call_t *rc;
    char why[SVC_RL_WHY_MAX];
    int status;

    req = cpstore__v1__rate_limit_check_request__unpack(NULL, len, payload);
    if (req == NULL) {
        call_fail(call, CPS_INVALID_ARGUMENT,
                  "payload is not a RateLimitCheckRequest");
        return;
    }
    rc = svc_rl_new(call, &req->base);
    if (rc == NULL) {
        return;
    }
    rc->n = 1;
    status = svc_rl_resolve(call_backends(call)->config, req, "", &rc->reqs[0],
                            why, sizeof(why));
    if (status != CPS_OK) {
        svc_rl_refuse(rc, status, why);
        return;
    }
    rc->reqs[0].timeout_ms = svc_rl_backend_timeout(call);

    status = rl_check(call_backends(call)->ratelimit, &rc->reqs[0],
                      svc_rl_done_one, rc);
    if (status != CPS_OK) {
        svc_rl_finish(rc, status, NULL, "rate-limit backend refused");
    }
}


void svc_ratelimit_check_many(call_t *call,
                              const uint8_t *payload,
                              size_t len) {
    Cpstore__V1__RateLimitCheckManyRequest *req;
    const cf_file_t *cf = call_backends(call)->config;
    svc_rl_call_t *rc;
    char why[SVC_RL_WHY_MAX];
    char where[40];
    size_t first = 0, second = 0;
    uint64_t total = 0;
    int status;

    req =
        cpstore__v1__rate_limit_check_many_request__unpack(NULL, len, payload);
    if (req == NULL) {
        call_fail(call, CPS_INVALID_ARGUMENT,
                  "payload is not a RateLimitCheckManyRequest");
        return;
    }
    rc = svc_rl_new(call, &req->base);
    if (rc == NULL) {
        return;
    }
    rc->many = true;
    if (req->n_checks == 0 || req->n_checks > LIM_RL_CHECKS_MAX) {
        svc_rl_refuse(rc, CPS_INVALID_ARGUMENT,
                      "checks must hold 1 to 16 limits");
        return;
    }
    rc->n = req->n_checks;
    for (size_t i = 0; i < rc->n; i++) {
        snprintf(where, sizeof(where), "checks[%zu]: ", i);
        status = svc_rl_resolve(cf, req->checks[i], where, &rc->reqs[i], why,
                                sizeof(why));
        if (status != CPS_OK) {
            svc_rl_refuse(rc, status, why);
            return;
        }
        total += rc->reqs[i].cost; /* each at most LIM_RL_COST_MAX */
    }
    if (total > LIM_RL_COST_MAX) {
        snprintf(why, sizeof(why),
                 "checks: the costs add up to %llu, above the %llu units one "
                 "call may consume",
                 (unsigned long long)total, LIM_RL_COST_MAX);
        svc_rl_refuse(rc, CPS_INVALID_ARGUMENT, why);
        return;
    }
    if (!rl_many_valid(rc->reqs, rc->n, &first, &second)) {
        snprintf(why, sizeof(why),
                 "checks[%zu] repeats the key of checks[%zu]; each limit of "
                 "one call needs its own key",
                 second, first);
        svc_rl_refuse(rc, CPS_INVALID_ARGUMENT, why);
        return;
    }
    rc->reqs[0].timeout_ms = svc_rl_backend_timeout(call);

    status = rl_check_many(call_backends(call)->ratelimit, rc->reqs, rc->n,
                           svc_rl_done_many, rc);
    if (status != CPS_OK) {
        svc_rl_finish(rc, status, NULL, "rate-limit backend refused");
    }
}
