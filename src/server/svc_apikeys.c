/*
 * ApiKeys service. The key store blocks (libmongoc), so each call becomes a
 * worker job: unpack on the loop thread, run the ak_* function on a worker
 * with the call's deadline, then pack and answer back on the loop thread.
 * The six methods differ only in their messages and in the ak_* function
 * they run, so one job type serves them all.
 */
#include "call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apikeys.h"
#include "status.h"
#include "worker.h"

#include "cpstore/v1/apikeys.pb-c.h"

typedef enum ak_op {
    AK_OP_CREATE,
    AK_OP_VERIFY,
    AK_OP_GET,
    AK_OP_LIST,
    AK_OP_REVOKE,
    AK_OP_ROTATE,
} ak_op_t;

/* The request message of each operation. */
static const ProtobufCMessageDescriptor *const svc_apikeys_requests[] = {
    [AK_OP_CREATE] = &cpstore__v1__create_api_key_request__descriptor,
    [AK_OP_VERIFY] = &cpstore__v1__verify_api_key_request__descriptor,
    [AK_OP_GET] = &cpstore__v1__get_api_key_request__descriptor,
    [AK_OP_LIST] = &cpstore__v1__list_api_keys_request__descriptor,
    [AK_OP_REVOKE] = &cpstore__v1__revoke_api_key_request__descriptor,
    [AK_OP_ROTATE] = &cpstore__v1__rotate_api_key_request__descriptor,
};

typedef struct ak_job {
    wk_job_t job; /* first member: the pool hands back this pointer */
    call_t *call;
    ak_service_t *svc;
    ak_op_t op;
    int64_t deadline;
    int status;
    char err[256];
    ProtobufCMessage *req; /* unpacked, of svc_apikeys_requests[op] */
    union {
        Cpstore__V1__CreateApiKeyResponse create;
        Cpstore__V1__VerifyApiKeyResponse verify;
        Cpstore__V1__GetApiKeyResponse get;
        Cpstore__V1__ListApiKeysResponse list;
        Cpstore__V1__RevokeApiKeyResponse revoke;
        Cpstore__V1__RotateApiKeyResponse rotate;
    } resp;
} ak_job_t;


static void svc_apikeys_work(wk_job_t *job) {
    ak_job_t *j = (ak_job_t *)job;
    const void *req = j->req;
    char *err = j->err;
    size_t len = sizeof(j->err);

    switch (j->op) {
    case AK_OP_CREATE:
        j->status =
            ak_create(j->svc, req, j->deadline, &j->resp.create, err, len);
        break;
    case AK_OP_VERIFY:
        j->status =
            ak_verify(j->svc, req, j->deadline, &j->resp.verify, err, len);
        break;
    case AK_OP_GET:
        j->status = ak_get(j->svc, req, j->deadline, &j->resp.get, err, len);
        break;
    case AK_OP_LIST:
        j->status = ak_list(j->svc, req, j->deadline, &j->resp.list, err, len);
        break;
    case AK_OP_REVOKE:
        j->status =
            ak_revoke(j->svc, req, j->deadline, &j->resp.revoke, err, len);
        break;
    case AK_OP_ROTATE:
        j->status =
            ak_rotate(j->svc, req, j->deadline, &j->resp.rotate, err, len);
        break;
    }
}


/* Answer an OK job, then free what its ak_* function allocated. */
static void svc_apikeys_reply(ak_job_t *j) {
    switch (j->op) {
    case AK_OP_CREATE:
        call_reply(j->call, &j->resp.create.base);
        ak_create_response_clear(&j->resp.create);
        break;
    case AK_OP_VERIFY:
        call_reply(j->call, &j->resp.verify.base);
        ak_verify_response_clear(&j->resp.verify);
        break;
    case AK_OP_GET:
        call_reply(j->call, &j->resp.get.base);
        ak_get_response_clear(&j->resp.get);
        break;
    case AK_OP_LIST:
        call_reply(j->call, &j->resp.list.base);
        ak_list_response_clear(&j->resp.list);
        break;
    case AK_OP_REVOKE:
        call_reply(j->call, &j->resp.revoke.base);
        break;
    case AK_OP_ROTATE:
        call_reply(j->call, &j->resp.rotate.base);
        ak_rotate_response_clear(&j->resp.rotate);
        break;
    }
}


static void svc_apikeys_done(wk_job_t *job) {
    ak_job_t *j = (ak_job_t *)job;

    if (j->status == CPS_OK) {
        svc_apikeys_reply(j);
    } else {
        call_fail(j->call, j->status, j->err);
    }
    protobuf_c_message_free_unpacked(j->req, NULL);
    free(j);
}


static void svc_apikeys_submit(call_t *call,
                               ak_op_t op,
                               const uint8_t *payload,
                               size_t len) {
    const ProtobufCMessageDescriptor *desc = svc_apikeys_requests[op];
    ProtobufCMessage *req;
    ak_job_t *j;

    req = protobuf_c_message_unpack(desc, NULL, len, payload);
    if (req == NULL) {
        char msg[96];

        snprintf(msg, sizeof(msg), "payload is not a %s", desc->short_name);
        call_fail(call, CPS_INVALID_ARGUMENT, msg);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        protobuf_c_message_free_unpacked(req, NULL);
        call_fail(call, CPS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->job.work = svc_apikeys_work;
    j->job.done = svc_apikeys_done;
    j->call = call;
    j->svc = call_backends(call)->apikeys;
    j->op = op;
    j->deadline = call_deadline(call);
    j->req = req;
    wk_submit(call_backends(call)->workers, &j->job);
}


void svc_apikeys_create(call_t *call, const uint8_t *payload, size_t len) {
    svc_apikeys_submit(call, AK_OP_CREATE, payload, len);
}


void svc_apikeys_verify(call_t *call, const uint8_t *payload, size_t len) {
    svc_apikeys_submit(call, AK_OP_VERIFY, payload, len);
}


void svc_apikeys_get(call_t *call, const uint8_t *payload, size_t len) {
    svc_apikeys_submit(call, AK_OP_GET, payload, len);
}


void svc_apikeys_list(call_t *call, const uint8_t *payload, size_t len) {
    svc_apikeys_submit(call, AK_OP_LIST, payload, len);
}


void svc_apikeys_revoke(call_t *call, const uint8_t *payload, size_t len) {
    svc_apikeys_submit(call, AK_OP_REVOKE, payload, len);
}


void svc_apikeys_rotate(call_t *call, const uint8_t *payload, size_t len) {
    svc_apikeys_submit(call, AK_OP_ROTATE, payload, len);
}
