/*
 * Tokens service. The token store blocks (libmongoc), so each call becomes
 * a worker job: unpack and look the kind up in the configuration on the
 * loop thread (the cf_file_t is read there only, and may be replaced by a
 * SIGHUP between calls), run tk_issue/tk_consume/tk_revoke on a worker
 * with the call's deadline and the kind's limits copied into the job, then
 * pack and answer back on the loop thread.
 *
 * Nothing here ever logs or echoes a token: debug lines name the public
 * token_id and the answer only.
 */
#include "call.h"

#include <stdlib.h>
#include <string.h>

#include "cfgfile.h"
#include "log.h"
#include "status.h"
#include "tokens.h"
#include "worker.h"

#include "cpstore/v1/tokens.pb-c.h"

typedef enum svc_tk_op {
    SVC_TK_ISSUE,
    SVC_TK_CONSUME,
    SVC_TK_REVOKE,
} svc_tk_op_t;

typedef struct svc_tk_job {
    wk_job_t job; /* first member: the pool hands back this pointer */
    call_t *call;
    tk_service_t *svc;
    svc_tk_op_t op;
    int64_t deadline;
    tk_kind_limits_t limits; /* issue only */
    int status;
    char err[256];
    union {
        Cpstore__V1__IssueTokenRequest *issue;
        Cpstore__V1__ConsumeTokenRequest *consume;
        Cpstore__V1__RevokeTokenRequest *revoke;
    } req;
    union {
        Cpstore__V1__IssueTokenResponse issue;
        Cpstore__V1__ConsumeTokenResponse consume;
        Cpstore__V1__RevokeTokenResponse revoke;
    } resp;
} svc_tk_job_t;


static void svc_tokens_work(wk_job_t *job) {
    svc_tk_job_t *j = (svc_tk_job_t *)job;

    switch (j->op) {
    case SVC_TK_ISSUE:
        j->status = tk_issue(j->svc, j->req.issue, &j->limits, j->deadline,
                             &j->resp.issue, j->err, sizeof(j->err));
        break;
    case SVC_TK_CONSUME:
        j->status = tk_consume(j->svc, j->req.consume, j->deadline,
                               &j->resp.consume, j->err, sizeof(j->err));
        break;
    case SVC_TK_REVOKE:
        j->status = tk_revoke(j->svc, j->req.revoke, j->deadline,
                              &j->resp.revoke, j->err, sizeof(j->err));
        break;
    }
}


/* Backend trouble is ours to report; a caller's bad request is not. */
static void svc_tokens_log_failure(const svc_tk_job_t *j) {
    if (j->status == CPS_UNAVAILABLE || j->status == CPS_INTERNAL) {
        log_warn("token store failed method=%s req=%u status=%s err=\"%s\"",
                 call_method_name(j->call), call_request_id(j->call),
                 cps_status_name(j->status), j->err);
    }
}


static const char *svc_tokens_code_name(Cpstore__V1__ConsumeCode code) {
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &cpstore__v1__consume_code__descriptor, (int)code);

    return v != NULL ? v->name : "?";
}


static void svc_tokens_reply(svc_tk_job_t *j) {
    switch (j->op) {
    case SVC_TK_ISSUE:
        log_debug("token issued req=%u token_id=%s expires_at_ms=%lld",
                  call_request_id(j->call), j->resp.issue.token_id,
                  (long long)j->resp.issue.expires_at_ms);
        call_reply(j->call, &j->resp.issue.base);
        tk_issue_response_clear(&j->resp.issue);
        break;
    case SVC_TK_CONSUME:
        log_debug("token consume req=%u token_id=%s code=%s",
                  call_request_id(j->call), j->resp.consume.token_id,
                  svc_tokens_code_name(j->resp.consume.code));
        call_reply(j->call, &j->resp.consume.base);
        tk_consume_response_clear(&j->resp.consume);
        break;
    case SVC_TK_REVOKE:
        call_reply(j->call, &j->resp.revoke.base);
        break;
    }
}


static void svc_tokens_free_request(svc_tk_job_t *j) {
    switch (j->op) {
    case SVC_TK_ISSUE:
        cpstore__v1__issue_token_request__free_unpacked(j->req.issue, NULL);
        break;
    case SVC_TK_CONSUME:
        cpstore__v1__consume_token_request__free_unpacked(j->req.consume, NULL);
        break;
    case SVC_TK_REVOKE:
        cpstore__v1__revoke_token_request__free_unpacked(j->req.revoke, NULL);
        break;
    }
}


static void svc_tokens_done(wk_job_t *job) {
    svc_tk_job_t *j = (svc_tk_job_t *)job;

    if (j->status == CPS_OK) {
        svc_tokens_reply(j);
    } else {
        svc_tokens_log_failure(j);
        call_fail(j->call, j->status, j->err);
    }
    svc_tokens_free_request(j);
    free(j);
}


/*
 * Check on the loop thread that the tokens service exists and that kind is
 * configured; on success return the job, with the kind's limits filled in.
 * On failure the call is answered and NULL returned.
 */
static svc_tk_job_t *
svc_tokens_job(call_t *call, svc_tk_op_t op, const char *kind) {
    const srv_backends_t *be = call_backends(call);
    const cf_token_kind_t *k = NULL;
    svc_tk_job_t *j;

    if (be->tokens == NULL) {
        call_fail(call, CPS_UNAVAILABLE, "the tokens service is not running");
        return NULL;
    }
    if (be->config != NULL && kind != NULL) {
        k = cf_token_kind(be->config, kind);
    }
    if (k == NULL) {
        /* Not quoted: a caller that swapped its arguments would otherwise
         * get its token echoed into an error message. */
        call_fail(call, CPS_INVALID_ARGUMENT,
                  "unknown token kind: not in the server's configuration");
        return NULL;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        call_fail(call, CPS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    j->job.work = svc_tokens_work;
    j->job.done = svc_tokens_done;
    j->call = call;
    j->svc = be->tokens;
    j->op = op;
    j->deadline = call_deadline(call);
    j->limits.max_ttl_ms = k->max_ttl_ms;
    j->limits.reuse_window_ms = be->config->token_reuse_window_ms;
    return j;
}


void svc_tokens_issue(call_t *call, const uint8_t *payload, size_t len) {
    Cpstore__V1__IssueTokenRequest *req;
    svc_tk_job_t *j;

    req = cpstore__v1__issue_token_request__unpack(NULL, len, payload);
    if (req == NULL) {
        call_fail(call, CPS_INVALID_ARGUMENT,
                  "payload is not an IssueTokenRequest");
        return;
    }
    j = svc_tokens_job(call, SVC_TK_ISSUE, req->kind);
    if (j == NULL) {
        cpstore__v1__issue_token_request__free_unpacked(req, NULL);
        return;
    }
    j->req.issue = req;
    cpstore__v1__issue_token_response__init(&j->resp.issue);
    wk_submit(call_backends(call)->workers, &j->job);
}


void svc_tokens_consume(call_t *call, const uint8_t *payload, size_t len) {
    Cpstore__V1__ConsumeTokenRequest *req;
    svc_tk_job_t *j;

    req = cpstore__v1__consume_token_request__unpack(NULL, len, payload);
    if (req == NULL) {
        call_fail(call, CPS_INVALID_ARGUMENT,
                  "payload is not a ConsumeTokenRequest");
        return;
    }
    j = svc_tokens_job(call, SVC_TK_CONSUME, req->kind);
    if (j == NULL) {
        cpstore__v1__consume_token_request__free_unpacked(req, NULL);
        return;
    }
    j->req.consume = req;
    cpstore__v1__consume_token_response__init(&j->resp.consume);
    wk_submit(call_backends(call)->workers, &j->job);
}


void svc_tokens_revoke(call_t *call, const uint8_t *payload, size_t len) {
    Cpstore__V1__RevokeTokenRequest *req;
    svc_tk_job_t *j;

    req = cpstore__v1__revoke_token_request__unpack(NULL, len, payload);
    if (req == NULL) {
        call_fail(call, CPS_INVALID_ARGUMENT,
                  "payload is not a RevokeTokenRequest");
        return;
    }
    j = svc_tokens_job(call, SVC_TK_REVOKE, req->kind);
    if (j == NULL) {
        cpstore__v1__revoke_token_request__free_unpacked(req, NULL);
        return;
    }
    j->req.revoke = req;
    cpstore__v1__revoke_token_response__init(&j->resp.revoke);
    wk_submit(call_backends(call)->workers, &j->job);
}
