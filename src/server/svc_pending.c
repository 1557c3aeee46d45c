/*
 * Methods whose service is being built: they answer UNIMPLEMENTED, which
 * is what a client would get from a server that does not know them. Each
 * handler moves to its own svc_*.c file when its service lands.
 */
#include "call.h"

#include "status.h"

#define SVC_PENDING(fn)                                                        \
    void fn(call_t *call, const uint8_t *payload, size_t len) {                \
        (void)payload;                                                         \
        (void)len;                                                             \
        call_fail(call, CPS_UNIMPLEMENTED, "method not implemented yet");      \
    }

SVC_PENDING(svc_ratelimit_check_many)
SVC_PENDING(svc_apikeys_get)
SVC_PENDING(svc_apikeys_list)
SVC_PENDING(svc_apikeys_revoke)
SVC_PENDING(svc_apikeys_rotate)
SVC_PENDING(svc_tokens_issue)
SVC_PENDING(svc_tokens_consume)
SVC_PENDING(svc_tokens_revoke)
SVC_PENDING(svc_sessions_create)
SVC_PENDING(svc_sessions_validate)
SVC_PENDING(svc_sessions_revoke)
SVC_PENDING(svc_sessions_revoke_all)
SVC_PENDING(svc_sessions_list)
