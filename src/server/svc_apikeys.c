/*
 * ApiKeys service. The key store blocks (libmongoc), so each call becomes a
 * worker job: unpack on the loop thread, run ak_create/ak_verify on a worker
 * with the call's deadline, then pack and answer back on the loop thread.
 */
#include "call.h"

#include <stdlib.h>
#include <string.h>

#include "apikeys.h"
#include "status.h"
#include "worker.h"

#include "cpstore/v1/apikeys.pb-c.h"

typedef enum ak_op {
    AK_OP_CREATE,
    AK_OP_VERIFY,
} ak_op_t;

typedef struct ak_job {
    wk_job_t job; /* first member: the pool hands back this pointer */
    call_t *call;
    ak_service_t *svc;
    ak_op_t op;
    int64_t deadline;
    int status;
    char err[256];
    union {
        Cpstore__V1__CreateApiKeyRequest *create;
        Cpstore__V1__VerifyApiKeyRequest *verify;
    } req;
    union {
        Cpstore__V1__CreateApiKeyResponse create;
        Cpstore__V1__VerifyApiKeyResponse verify;
    } resp;
} ak_job_t;


static void svc_apikeys_work(wk_job_t *job) {
    ak_job_t *j = (ak_job_t *)job;

    if (j->op == AK_OP_CREATE) {
        j->status = ak_create(j->svc, j->req.create, j->deadline,
                              &j->resp.create, j->err, sizeof(j->err));
    } else {
        j->status = ak_verify(j->svc, j->req.verify, j->deadline,
                              &j->resp.verify, j->err, sizeof(j->err));
    }
}


static void svc_apikeys_done(wk_job_t *job) {
    ak_job_t *j = (ak_job_t *)job;

    if (j->op == AK_OP_CREATE) {
        if (j->status == CPS_OK) {
            call_reply(j->call, &j->resp.create.base);
            ak_create_response_clear(&j->resp.create);
        } else {
            call_fail(j->call, j->status, j->err);
        }
        cpstore__v1__create_api_key_request__free_unpacked(j->req.create,
                                                            NULL);
    } else {
        if (j->status == CPS_OK) {
            call_reply(j->call, &j->resp.verify.base);
            ak_verify_response_clear(&j->resp.verify);
        } else {
            call_fail(j->call, j->status, j->err);
        }
        cpstore__v1__verify_api_key_request__free_unpacked(j->req.verify,
                                                           NULL);
    }
    free(j);
}


static ak_job_t *svc_apikeys_job(call_t *call, ak_op_t op) {
    ak_job_t *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        return NULL;
    }
    j->job.work = svc_apikeys_work;
    j->job.done = svc_apikeys_done;
    j->call = call;
    j->svc = call_backends(call)->apikeys;
    j->op = op;
    j->deadline = call_deadline(call);
    if (op == AK_OP_CREATE) {
        cpstore__v1__create_api_key_response__init(&j->resp.create);
    } else {
        cpstore__v1__verify_api_key_response__init(&j->resp.verify);
    }
    return j;
}


void svc_apikeys_create(call_t *call, const uint8_t *payload, size_t len) {
    Cpstore__V1__CreateApiKeyRequest *req;
    ak_job_t *j;

    req = cpstore__v1__create_api_key_request__unpack(NULL, len, payload);
    if (req == NULL) {
        call_fail(call, CPS_INVALID_ARGUMENT,
                  "payload is not a CreateApiKeyRequest");
        return;
    }
    j = svc_apikeys_job(call, AK_OP_CREATE);
    if (j == NULL) {
        cpstore__v1__create_api_key_request__free_unpacked(req, NULL);
        call_fail(call, CPS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->req.create = req;
    wk_submit(call_backends(call)->workers, &j->job);
}


void svc_apikeys_verify(call_t *call, const uint8_t *payload, size_t len) {
    Cpstore__V1__VerifyApiKeyRequest *req;
    ak_job_t *j;

    req = cpstore__v1__verify_api_key_request__unpack(NULL, len, payload);
    if (req == NULL) {
        call_fail(call, CPS_INVALID_ARGUMENT,
                  "payload is not a VerifyApiKeyRequest");
        return;
    }
    j = svc_apikeys_job(call, AK_OP_VERIFY);
    if (j == NULL) {
        cpstore__v1__verify_api_key_request__free_unpacked(req, NULL);
        call_fail(call, CPS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->req.verify = req;
    wk_submit(call_backends(call)->workers, &j->job);
}
