/*
 * No secret in the logs: cpstored at its most verbose level (set through
 * CPSTORE_LOG_LEVEL=debug), on Redis and the MongoDB-compatible server,
 * driven through every RPC, including calls that fail. Afterwards its
 * whole log output must hold no API key, token, session token or server
 * secret, nor any 8-character piece of one.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define SECRET      "log-secret-XyZ0123456789abcdefQRSTUVWxyz0123"
#define MAX_SECRETS 32

static h_proc_t server;
static char secrets[MAX_SECRETS][300];
static int nsecrets;


static void remember(const char *s) {
    cr_assert_lt(nsecrets, MAX_SECRETS);
    cr_assert_gt(strlen(s), 8);
    snprintf(secrets[nsecrets++], sizeof(secrets[0]), "%s", s);
}


/* Call, expecting the given status (0 = OK). */
static void call(cpc_t *c,
                 uint16_t method,
                 const pb_msgdesc_t *req_fields,
                 const void *req,
                 const pb_msgdesc_t *resp_fields,
                 void *resp,
                 int want) {
    cpc_reply_t reply;

    cr_assert_eq(
        cpc_call(c, method, req_fields, req, resp_fields, resp, &reply), CPC_OK,
        "method 0x%04x: %s", method, cpc_last_error(c));
    cr_assert_eq(reply.status, want, "method 0x%04x: status %d (%s)", method,
                 reply.status, reply.error.message);
}


static void exercise_keys(cpc_t *c) {
    cpstore_v1_CreateApiKeyRequest cr =
        cpstore_v1_CreateApiKeyRequest_init_zero;
    cpstore_v1_CreateApiKeyResponse ck;
    cpstore_v1_VerifyApiKeyRequest vr =
        cpstore_v1_VerifyApiKeyRequest_init_zero;
    cpstore_v1_VerifyApiKeyResponse vk;
    cpstore_v1_GetApiKeyRequest gr = cpstore_v1_GetApiKeyRequest_init_zero;
    cpstore_v1_GetApiKeyResponse gk;
    cpstore_v1_ListApiKeysRequest lr = cpstore_v1_ListApiKeysRequest_init_zero;
    cpstore_v1_ListApiKeysResponse lk =
        cpstore_v1_ListApiKeysResponse_init_zero;
    cpstore_v1_RotateApiKeyRequest rr =
        cpstore_v1_RotateApiKeyRequest_init_zero;
    cpstore_v1_RotateApiKeyResponse rk;
    cpstore_v1_RevokeApiKeyRequest xr =
        cpstore_v1_RevokeApiKeyRequest_init_zero;
    cpstore_v1_RevokeApiKeyResponse xk;

    strcpy(cr.user_id, "log-user");
    strcpy(cr.scopes[cr.scopes_count++], "memory:read");
    strcpy(cr.org_id, "org-1");
    call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_CREATE,
         cpstore_v1_CreateApiKeyRequest_fields, &cr,
         cpstore_v1_CreateApiKeyResponse_fields, &ck, 0);
    remember(ck.key);

    strcpy(vr.key, ck.key);
    strcpy(vr.required_scopes[vr.required_scopes_count++], "memory:write");
    strcpy(vr.org_id, "org-2");
    call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_VERIFY,
         cpstore_v1_VerifyApiKeyRequest_fields, &vr,
         cpstore_v1_VerifyApiKeyResponse_fields, &vk, 0);
    /* A key that does not exist is still a secret of its holder. */
    strcpy(vr.key, "cpk_dev_NotARealKeyButStillSecret0123456789abcd");
    remember(vr.key);
    call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_VERIFY,
         cpstore_v1_VerifyApiKeyRequest_fields, &vr,
         cpstore_v1_VerifyApiKeyResponse_fields, &vk, 0);

    strcpy(gr.key_id, ck.key_id);
    call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_GET,
         cpstore_v1_GetApiKeyRequest_fields, &gr,
         cpstore_v1_GetApiKeyResponse_fields, &gk, 0);
    strcpy(lr.user_id, "log-user");
    call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_LIST,
         cpstore_v1_ListApiKeysRequest_fields, &lr,
         cpstore_v1_ListApiKeysResponse_fields, &lk, 0);
    strcpy(rr.key_id, ck.key_id);
    rr.grace_ms = 1000;
    call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_ROTATE,
         cpstore_v1_RotateApiKeyRequest_fields, &rr,
         cpstore_v1_RotateApiKeyResponse_fields, &rk, 0);
    remember(rk.key);
    strcpy(xr.key_id, rk.key_id);
    call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_REVOKE,
         cpstore_v1_RevokeApiKeyRequest_fields, &xr,
         cpstore_v1_RevokeApiKeyResponse_fields, &xk, 0);
}


static void exercise_tokens(cpc_t *c) {
    cpstore_v1_IssueTokenRequest ir = cpstore_v1_IssueTokenRequest_init_zero;
    cpstore_v1_IssueTokenResponse it;
    cpstore_v1_ConsumeTokenRequest qr =
        cpstore_v1_ConsumeTokenRequest_init_zero;
    cpstore_v1_ConsumeTokenResponse qt;
    cpstore_v1_RevokeTokenRequest rr = cpstore_v1_RevokeTokenRequest_init_zero;
    cpstore_v1_RevokeTokenResponse rt;

    strcpy(ir.kind, "oauth_code");
    strcpy(ir.subject, "log-user");
    ir.has_binding = true;
    strcpy(ir.binding.client_id, "client-1");
    call(c, cpstore_v1_TokensMethod_TOKENS_METHOD_ISSUE,
         cpstore_v1_IssueTokenRequest_fields, &ir,
         cpstore_v1_IssueTokenResponse_fields, &it, 0);
    remember(it.token);

    strcpy(qr.kind, "oauth_code");
    strcpy(qr.token, it.token);
    strcpy(qr.client_id, "client-2"); /* a binding mismatch first */
    call(c, cpstore_v1_TokensMethod_TOKENS_METHOD_CONSUME,
         cpstore_v1_ConsumeTokenRequest_fields, &qr,
         cpstore_v1_ConsumeTokenResponse_fields, &qt, 0);
    strcpy(qr.client_id, "client-1");
    call(c, cpstore_v1_TokensMethod_TOKENS_METHOD_CONSUME,
         cpstore_v1_ConsumeTokenRequest_fields, &qr,
         cpstore_v1_ConsumeTokenResponse_fields, &qt, 0);
    call(c, cpstore_v1_TokensMethod_TOKENS_METHOD_CONSUME,
         cpstore_v1_ConsumeTokenRequest_fields, &qr,
         cpstore_v1_ConsumeTokenResponse_fields, &qt, 0);
    /* An unknown kind is refused: the refusal must not echo the token. */
    strcpy(qr.kind, "no_such_kind");
    call(c, cpstore_v1_TokensMethod_TOKENS_METHOD_CONSUME,
         cpstore_v1_ConsumeTokenRequest_fields, &qr,
         cpstore_v1_ConsumeTokenResponse_fields, &qt, 3);

    strcpy(rr.kind, "oauth_code");
    strcpy(rr.token, it.token);
    call(c, cpstore_v1_TokensMethod_TOKENS_METHOD_REVOKE,
         cpstore_v1_RevokeTokenRequest_fields, &rr,
         cpstore_v1_RevokeTokenResponse_fields, &rt, 0);
}


static void exercise_sessions(cpc_t *c) {
    cpstore_v1_CreateSessionRequest cr =
        cpstore_v1_CreateSessionRequest_init_zero;
    cpstore_v1_CreateSessionResponse cs;
    cpstore_v1_ValidateSessionRequest vr =
        cpstore_v1_ValidateSessionRequest_init_zero;
    cpstore_v1_ValidateSessionResponse vs;
    cpstore_v1_RevokeSessionRequest rr =
        cpstore_v1_RevokeSessionRequest_init_zero;
    cpstore_v1_RevokeSessionResponse rs;
    cpstore_v1_RevokeAllSessionsRequest ar =
        cpstore_v1_RevokeAllSessionsRequest_init_zero;
    cpstore_v1_RevokeAllSessionsResponse as;
    cpstore_v1_ListSessionsRequest lr =
        cpstore_v1_ListSessionsRequest_init_zero;
    cpstore_v1_ListSessionsResponse ls =
        cpstore_v1_ListSessionsResponse_init_zero;
    char second[128];

    strcpy(cr.user_id, "log-user");
    call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_CREATE,
         cpstore_v1_CreateSessionRequest_fields, &cr,
         cpstore_v1_CreateSessionResponse_fields, &cs, 0);
    remember(cs.token);
    strcpy(vr.token, cs.token);
    call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_VALIDATE,
         cpstore_v1_ValidateSessionRequest_fields, &vr,
         cpstore_v1_ValidateSessionResponse_fields, &vs, 0);
    cr_assert(vs.valid);
    strcpy(lr.user_id, "log-user");
    call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_LIST,
         cpstore_v1_ListSessionsRequest_fields, &lr,
         cpstore_v1_ListSessionsResponse_fields, &ls, 0);
    strcpy(rr.token, cs.token);
    call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_REVOKE,
         cpstore_v1_RevokeSessionRequest_fields, &rr,
         cpstore_v1_RevokeSessionResponse_fields, &rs, 0);
    call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_VALIDATE,
         cpstore_v1_ValidateSessionRequest_fields, &vr,
         cpstore_v1_ValidateSessionResponse_fields, &vs, 0);
    cr_assert_not(vs.valid);

    call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_CREATE,
         cpstore_v1_CreateSessionRequest_fields, &cr,
         cpstore_v1_CreateSessionResponse_fields, &cs, 0);
    snprintf(second, sizeof(second), "%s", cs.token);
    remember(second);
    strcpy(ar.user_id, "log-user");
    call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_REVOKE_ALL,
         cpstore_v1_RevokeAllSessionsRequest_fields, &ar,
         cpstore_v1_RevokeAllSessionsResponse_fields, &as, 0);
}


static void exercise_rest(cpc_t *c) {
    cpstore_v1_HealthCheckRequest hr = cpstore_v1_HealthCheckRequest_init_zero;
    cpstore_v1_HealthCheckResponse hs;
    cpstore_v1_RateLimitCheckRequest rr =
        cpstore_v1_RateLimitCheckRequest_init_zero;
    cpstore_v1_RateLimitCheckResponse rs;
    cpstore_v1_RateLimitCheckManyRequest mr =
        cpstore_v1_RateLimitCheckManyRequest_init_zero;
    cpstore_v1_RateLimitCheckManyResponse ms;

    call(c, cpstore_v1_HealthMethod_HEALTH_METHOD_CHECK,
         cpstore_v1_HealthCheckRequest_fields, &hr,
         cpstore_v1_HealthCheckResponse_fields, &hs, 0);
    strcpy(rr.key, "log:user");
    rr.limit = 5;
    rr.window_ms = 60000;
    call(c, cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK,
         cpstore_v1_RateLimitCheckRequest_fields, &rr,
         cpstore_v1_RateLimitCheckResponse_fields, &rs, 0);
    mr.checks_count = 2;
    mr.checks[0] = rr;
    mr.checks[1] = rr;
    strcpy(mr.checks[1].key, "log:org");
    call(c, cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK_MANY,
         cpstore_v1_RateLimitCheckManyRequest_fields, &mr,
         cpstore_v1_RateLimitCheckManyResponse_fields, &ms, 0);
}


Test(logs, debug_log_of_every_rpc_holds_no_secret, .timeout = 120) {
    char redis[300], mongo[300], db[128], name[96];
    const char *args[] = {redis, mongo, db, NULL};
    const char *env[] = {"CPSTORE_SECRET=" SECRET, "CPSTORE_LOG_LEVEL=debug",
                         NULL};
    char *log;
    cpc_t *c;

    h_unique(name, sizeof(name), "cpstore_logs");
    snprintf(redis, sizeof(redis), "--redis=%s", h_redis_url());
    snprintf(mongo, sizeof(mongo), "--mongo=%s", h_mongo_uri());
    snprintf(db, sizeof(db), "--mongo-db=%s", name);
    h_cpstored_start(&server, args, env);
    remember(SECRET);

    c = h_connect(&server);
    exercise_rest(c);
    exercise_keys(c);
    exercise_tokens(c);
    exercise_sessions(c);
    cpc_close(c);
    h_proc_stop(&server);

    log = h_proc_log(&server);
    /* The run really was at debug level and logged the calls. */
    cr_assert_not_null(strstr(log, " debug "), "no debug line in:\n%s", log);
    cr_assert_not_null(strstr(log, "Tokens.Consume"));
    for (int i = 0; i < nsecrets; i++) {
        const char *s = secrets[i];
        size_t n = strlen(s);

        for (size_t off = 0; off + 8 <= n; off++) {
            char piece[9];

            memcpy(piece, s + off, 8);
            piece[8] = '\0';
            /* Pieces of the fixed prefixes ("cpk_dev_") are not secret. */
            if (strchr(piece, '_') != NULL) {
                continue;
            }
            cr_assert_null(strstr(log, piece),
                           "secret %d leaks \"%s\" into the log", i, piece);
        }
    }
    free(log);
}
