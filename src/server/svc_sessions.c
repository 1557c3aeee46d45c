/*
 * Sessions service. The session store blocks (libmongoc), so each call
 * becomes a worker job: unpack on the loop thread, copy the [session]
 * settings of the current configuration file into the job (the file is
 * read on the loop thread only), run the ss_* call on a worker with the
 * call's deadline, then pack and answer back on the loop thread.
 *
 * Nothing here logs a request or a response: a Create response carries a
 * session token, and Validate and Revoke requests may. The reasons the
 * service returns never contain one.
 */
#include "call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfgfile.h"
#include "log.h"
#include "sessions.h"
#include "status.h"
#include "worker.h"

#include "cpstore/v1/sessions.pb-c.h"

typedef enum ss_op {
    SS_OP_CREATE,
    SS_OP_VALIDATE,
    SS_OP_REVOKE,
    SS_OP_REVOKE_ALL,
    SS_OP_LIST,
} ss_op_t;

typedef struct ss_job {
    wk_job_t job; /* first member: the pool hands back this pointer */
    call_t *call;
    ss_service_t *svc;
    ss_op_t op;
    ss_settings_t settings;
    int64_t deadline;
    int status;
    char err[256];
    ProtobufCMessage *req; /* unpacked request, freed in done() */
    union {
        Cpstore__V1__CreateSessionResponse create;
        Cpstore__V1__ValidateSessionResponse validate;
        Cpstore__V1__RevokeSessionResponse revoke;
        Cpstore__V1__RevokeAllSessionsResponse revoke_all;
        Cpstore__V1__ListSessionsResponse list;
    } resp;
} ss_job_t;


static void svc_sessions_work(wk_job_t *job) {
    ss_job_t *j = (ss_job_t *)job;
    char *err = j->err;
    size_t len = sizeof(j->err);

    switch (j->op) {
    case SS_OP_CREATE:
        j->status = ss_create(j->svc, &j->settings,
                              (Cpstore__V1__CreateSessionRequest *)j->req,
                              j->deadline, &j->resp.create, err, len);
        break;
    case SS_OP_VALIDATE:
        j->status = ss_validate(j->svc, &j->settings,
                                (Cpstore__V1__ValidateSessionRequest *)j->req,
                                j->deadline, &j->resp.validate, err, len);
        break;
    case SS_OP_REVOKE:
        j->status =
            ss_revoke(j->svc, (Cpstore__V1__RevokeSessionRequest *)j->req,
                      j->deadline, &j->resp.revoke, err, len);
        break;
    case SS_OP_REVOKE_ALL:
        j->status = ss_revoke_all(
            j->svc, (Cpstore__V1__RevokeAllSessionsRequest *)j->req,
            j->deadline, &j->resp.revoke_all, err, len);
        break;
    case SS_OP_LIST:
        j->status = ss_list(j->svc, (Cpstore__V1__ListSessionsRequest *)j->req,
                            j->deadline, &j->resp.list, err, len);
        break;
    }
}


static const ProtobufCMessage *svc_sessions_resp(ss_job_t *j) {
    switch (j->op) {
    case SS_OP_CREATE:
        return &j->resp.create.base;
    case SS_OP_VALIDATE:
        return &j->resp.validate.base;
    case SS_OP_REVOKE:
        return &j->resp.revoke.base;
    case SS_OP_REVOKE_ALL:
        return &j->resp.revoke_all.base;
    case SS_OP_LIST:
        return &j->resp.list.base;
    }
    return NULL;
}


static void svc_sessions_clear(ss_job_t *j) {
    switch (j->op) {
    case SS_OP_CREATE:
        ss_create_response_clear(&j->resp.create);
        break;
    case SS_OP_VALIDATE:
        ss_validate_response_clear(&j->resp.validate);
        break;
    case SS_OP_LIST:
        ss_list_response_clear(&j->resp.list);
        break;
    case SS_OP_REVOKE:
    case SS_OP_REVOKE_ALL:
        break; /* nothing allocated */
    }
}


/* Storage trouble is ours to report; a bad request is the caller's and
 * its answer says enough. */
static void svc_sessions_log(const ss_job_t *j) {
    if (j->status == CPS_UNAVAILABLE || j->status == CPS_INTERNAL) {
        log_warn("session call failed method=%s status=%s err=\"%s\"",
                 call_method_name(j->call), cps_status_name(j->status), j->err);
    } else if (j->status == CPS_OK && j->err[0] != '\0') {
        log_warn("session idle expiry not extended method=%s err=\"%s\"",
                 call_method_name(j->call), j->err);
    }
}


static void svc_sessions_done(wk_job_t *job) {
    ss_job_t *j = (ss_job_t *)job;

    svc_sessions_log(j);
    if (j->status == CPS_OK) {
        call_reply(j->call, svc_sessions_resp(j));
        svc_sessions_clear(j);
    } else {
        call_fail(j->call, j->status, j->err);
    }
    protobuf_c_message_free_unpacked(j->req, NULL);
    free(j);
}


/* The [session] settings of the configuration file in force now. */
static void svc_sessions_settings(const call_t *call, ss_settings_t *out) {
    const cf_file_t *cf = call_backends(call)->config;
    cf_file_t defaults;

    if (cf == NULL && cf_defaults(&defaults) == 0) {
        cf = &defaults;
    }
    out->idle_ms = cf != NULL ? cf->session_idle_ms : 0;
    out->absolute_ms = cf != NULL ? cf->session_absolute_ms : 0;
    out->touch_ms = cf != NULL ? cf->session_touch_ms : 0;
    if (cf == &defaults) {
        cf_free(&defaults);
    }
}


/* Unpack the request with desc and queue the job, or answer at once. */
static void svc_sessions_start(call_t *call,
                               ss_op_t op,
                               const ProtobufCMessageDescriptor *desc,
                               const uint8_t *payload,
                               size_t len) {
    ss_service_t *svc = call_backends(call)->sessions;
    ProtobufCMessage *req;
    ss_job_t *j;

    if (svc == NULL) {
        call_fail(call, CPS_UNIMPLEMENTED, "sessions are not configured");
        return;
    }
    req = protobuf_c_message_unpack(desc, NULL, len, payload);
    if (req == NULL) {
        char msg[128];

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
    j->job.work = svc_sessions_work;
    j->job.done = svc_sessions_done;
    j->call = call;
    j->svc = svc;
    j->op = op;
    j->req = req;
    j->deadline = call_deadline(call);
    svc_sessions_settings(call, &j->settings);
    wk_submit(call_backends(call)->workers, &j->job);
}


void svc_sessions_create(call_t *call, const uint8_t *payload, size_t len) {
    svc_sessions_start(call, SS_OP_CREATE,
                       &cpstore__v1__create_session_request__descriptor,
                       payload, len);
}


void svc_sessions_validate(call_t *call, const uint8_t *payload, size_t len) {
    svc_sessions_start(call, SS_OP_VALIDATE,
                       &cpstore__v1__validate_session_request__descriptor,
                       payload, len);
}


void svc_sessions_revoke(call_t *call, const uint8_t *payload, size_t len) {
    svc_sessions_start(call, SS_OP_REVOKE,
                       &cpstore__v1__revoke_session_request__descriptor,
                       payload, len);
}


void svc_sessions_revoke_all(call_t *call, const uint8_t *payload, size_t len) {
    svc_sessions_start(call, SS_OP_REVOKE_ALL,
                       &cpstore__v1__revoke_all_sessions_request__descriptor,
                       payload, len);
}


void svc_sessions_list(call_t *call, const uint8_t *payload, size_t len) {
    svc_sessions_start(call, SS_OP_LIST,
                       &cpstore__v1__list_sessions_request__descriptor, payload,
                       len);
}
