/*
 * Health service. The rate-limit backend knows its own state without I/O;
 * the key store is asked with a ping on a worker thread, bounded by the
 * call's deadline (at most one second), so a dead database makes the answer
 * NOT_SERVING rather than slow. The reply also carries every counter of
 * metrics.h, read on the loop thread like the counters are written.
 */
#include "call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "keystore.h"
#include "metrics.h"
#include "status.h"
#include "worker.h"

#include "cpstore/v1/health.pb-c.h"

#define HEALTH_PING_MAX_MS 1000

typedef struct health_job {
    wk_job_t job;
    call_t *call;
    ks_store_t *store;
    int64_t deadline;
    int status;
    char detail[128];
} health_job_t;


static void svc_health_work(wk_job_t *job) {
    health_job_t *j = (health_job_t *)job;

    j->status = ks_ping(j->store, j->deadline, j->detail, sizeof(j->detail));
}


static void svc_health_done(wk_job_t *job) {
    health_job_t *j = (health_job_t *)job;
    const srv_backends_t *be = call_backends(j->call);
    Cpstore__V1__HealthCheckResponse resp =
        CPSTORE__V1__HEALTH_CHECK_RESPONSE__INIT;
    Cpstore__V1__BackendStatus rl = CPSTORE__V1__BACKEND_STATUS__INIT;
    Cpstore__V1__BackendStatus ks = CPSTORE__V1__BACKEND_STATUS__INIT;
    Cpstore__V1__BackendStatus *list[2] = {&rl, &ks};
    Cpstore__V1__Counter counters[MT_COUNT];
    Cpstore__V1__Counter *counter_list[MT_COUNT];
    char rl_detail[128] = "";

    rl.name = (char *)"ratelimit";
    rl.kind = (char *)be->ratelimit->ops->kind;
    rl.up =
        be->ratelimit->ops->is_up(be->ratelimit, rl_detail, sizeof(rl_detail));
    rl.detail = rl_detail;

    ks.name = (char *)"apikeys";
    ks.kind = (char *)ks_kind(j->store);
    ks.up = j->status == CPS_OK;
    ks.detail = ks.up ? (char *)"" : j->detail;

    resp.status = rl.up && ks.up ? CPSTORE__V1__SERVING_STATUS__SERVING
                                 : CPSTORE__V1__SERVING_STATUS__NOT_SERVING;
    resp.n_backends = 2;
    resp.backends = list;
    resp.version = (char *)CPSTORE_VERSION;
    for (int i = 0; i < MT_COUNT; i++) {
        cpstore__v1__counter__init(&counters[i]);
        counters[i].name = (char *)mt_name((mt_counter_t)i);
        counters[i].value = mt_get((mt_counter_t)i);
        counter_list[i] = &counters[i];
    }
    resp.n_counters = MT_COUNT;
    resp.counters = counter_list;

    call_reply(j->call, &resp.base);
    free(j);
}


void svc_health_check(call_t *call, const uint8_t *payload, size_t len) {
    Cpstore__V1__HealthCheckRequest *req;
    health_job_t *j;
    uint32_t left = call_remaining_ms(call);

    req = cpstore__v1__health_check_request__unpack(NULL, len, payload);
    if (req == NULL) {
        call_fail(call, CPS_INVALID_ARGUMENT,
                  "payload is not a HealthCheckRequest");
        return;
    }
    cpstore__v1__health_check_request__free_unpacked(req, NULL);

    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        call_fail(call, CPS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->job.work = svc_health_work;
    j->job.done = svc_health_done;
    j->call = call;
    j->store = call_backends(call)->keystore;
    j->deadline = clock_mono_ms() +
                  (left < HEALTH_PING_MAX_MS ? left : HEALTH_PING_MAX_MS);
    wk_submit(call_backends(call)->workers, &j->job);
}
