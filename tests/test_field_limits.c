/*
 * Values at exactly the longest length the server accepts travel through
 * libcpstore both ways: the client can send them, and it can decode the
 * answers that carry them back. nanopb's max_size counts the terminating
 * NUL, so a bound equal to the server's limit loses the last byte; these
 * tests fail then, whether on building the request (the struct cannot hold
 * the value) or on decoding the reply ("string overflow").
 *
 * API keys and tokens run on the memory backends and on the
 * MongoDB-compatible server of CPSTORE_TEST_MONGO_URI (FerretDB in the
 * suite), each mongo test in a database of its own, dropped at the end.
 * The limits come from the server's own headers, so the tests follow them.
 */
#include <criterion/criterion.h>

#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cfgfile.h"
#include "field_limits.h"
#include "harness.h"
#include "status.h"
#include "tokens.h"

#include "cpstore/v1/tokens.pb-c.h"

#define SECRET "test-secret-0123456789abcdef0123456789abcdef"
#define KIND   "oauth_code" /* a kind the server knows without a config */

#define METHOD_AK_CREATE  cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_CREATE
#define METHOD_AK_GET     cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_GET
#define METHOD_TK_ISSUE   cpstore_v1_TokensMethod_TOKENS_METHOD_ISSUE
#define METHOD_TK_CONSUME cpstore_v1_TokensMethod_TOKENS_METHOD_CONSUME
#define METHOD_RL_MANY                                                         \
    cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK_MANY

static h_proc_t server;
static int on_mongo;
static char db_name[96];


/* ---- fixtures ----------------------------------------------------------- */

static void start_server(void) {
    char mongo_arg[400];
    char db_arg[128];
    const char *mongo_args[] = {mongo_arg, db_arg, "--request-timeout=30s",
                                NULL};
    const char *memory_args[] = {"--request-timeout=30s", NULL};
    const char *env[] = {"CPSTORE_SECRET=" SECRET, NULL};

    if (on_mongo) {
        h_unique(db_name, sizeof(db_name), "cpstore_lim");
        snprintf(mongo_arg, sizeof(mongo_arg), "--mongo=%s", h_mongo_uri());
        snprintf(db_arg, sizeof(db_arg), "--mongo-db=%s", db_name);
    }
    h_cpstored_start(&server, on_mongo ? mongo_args : memory_args, env);
}


static void start_memory_backend(void) {
    on_mongo = 0;
    start_server();
}


static void start_mongo_backend(void) {
    on_mongo = 1;
    start_server();
}


static void stop_server(void) {
    h_proc_stop(&server);
    if (on_mongo) {
        mongoc_client_t *client;
        mongoc_database_t *db;

        mongoc_init();
        client = mongoc_client_new(h_mongo_uri());
        cr_assert_not_null(client);
        db = mongoc_client_get_database(client, db_name);
        mongoc_database_drop(db, NULL);
        mongoc_database_destroy(db);
        mongoc_client_destroy(client);
        mongoc_cleanup();
    }
}


/* One behaviour, run on both backends. */
#define LIM_TEST(name)                                                         \
    static void name##_body(void);                                             \
    Test(limits_mongo, name, .init = start_mongo_backend, .fini = stop_server, \
         .timeout = 90) {                                                      \
        name##_body();                                                         \
    }                                                                          \
    Test(limits_memory, name, .init = start_memory_backend,                    \
         .fini = stop_server, .timeout = 90) {                                 \
        name##_body();                                                         \
    }                                                                          \
    static void name##_body(void)


/* ---- values ------------------------------------------------------------- */

/*
 * Write a text of exactly len bytes into dst, a client buffer of cap bytes.
 * The letters cycle from seed, so a value cut short or swapped with another
 * field does not compare equal. The buffer must hold len bytes and the NUL:
 * it is the client's bound for a field the server accepts up to len bytes.
 */
static void fill(char *dst, size_t cap, size_t len, int seed) {
    cr_assert_gt(cap, len,
                 "the client holds %zu bytes where the server accepts %zu",
                 cap - 1, len);
    for (size_t i = 0; i < len; i++) {
        dst[i] = (char)('a' + (int)((i + (size_t)seed) % 26));
    }
    dst[len] = '\0';
}


/* A heap copy of the same text, for messages the test builds otherwise. */
static char *text(size_t len, int seed) {
    char *s = malloc(len + 1);

    cr_assert_not_null(s);
    fill(s, len + 1, len, seed);
    return s;
}


/* A scope of exactly LIM_SCOPE_MAX bytes: "lim:" and letters. */
static void fill_scope(char *dst, size_t cap) {
    fill(dst, cap, LIM_SCOPE_MAX, 7);
    memcpy(dst, "lim:", 4);
}


static void expect_reply_ok(cpc_t *c, int rc, const cpc_reply_t *reply) {
    cr_assert_eq(rc, CPC_OK, "the call failed: %s", cpc_last_error(c));
    cr_assert_eq(reply->status, 0, "status %d: %s", reply->status,
                 reply->error.message);
}


/* ---- API keys ----------------------------------------------------------- */

LIM_TEST(an_api_key_with_every_field_at_its_limit_reads_back_whole) {
    static cpstore_v1_CreateApiKeyRequest create;
    static cpstore_v1_CreateApiKeyResponse created;
    static cpstore_v1_VerifyApiKeyRequest verify;
    static cpstore_v1_VerifyApiKeyResponse verified;
    static cpstore_v1_GetApiKeyRequest get;
    static cpstore_v1_GetApiKeyResponse got;
    cpc_t *c = h_connect(&server);
    cpc_reply_t reply;
    const cpstore_v1_ApiKey *k = &got.key;

    fill(create.user_id, sizeof(create.user_id), LIM_ID_MAX, 0);
    fill(create.name, sizeof(create.name), LIM_ID_MAX, 1);
    fill(create.org_id, sizeof(create.org_id), LIM_ID_MAX, 2);
    fill(create.project_id, sizeof(create.project_id), LIM_ID_MAX, 3);
    fill_scope(create.scopes[0], sizeof(create.scopes[0]));
    create.scopes_count = 1;
    fill(create.metadata[0].key, sizeof(create.metadata[0].key),
         LIM_META_KEY_MAX, 4);
    fill(create.metadata[0].value, sizeof(create.metadata[0].value),
         LIM_META_VALUE_MAX, 5);
    create.metadata_count = 1;
    expect_reply_ok(c, cpc_apikeys_create(c, &create, &created, &reply),
                    &reply);

    /* Verify sends the longest scope, org and project, and reads them back
     * with the longest user_id. */
    strcpy(verify.key, created.key);
    strcpy(verify.required_scopes[0], create.scopes[0]);
    verify.required_scopes_count = 1;
    strcpy(verify.org_id, create.org_id);
    strcpy(verify.project_id, create.project_id);
    expect_reply_ok(c, cpc_apikeys_verify(c, &verify, &verified, &reply),
                    &reply);
    cr_assert(verified.valid, "verify code %d", verified.code);
    cr_expect_str_eq(verified.user_id, create.user_id);
    cr_expect_str_eq(verified.org_id, create.org_id);
    cr_expect_str_eq(verified.project_id, create.project_id);
    cr_assert_eq(verified.scopes_count, 1);
    cr_expect_str_eq(verified.scopes[0], create.scopes[0]);

    strcpy(get.key_id, created.key_id);
    expect_reply_ok(c,
                    cpc_call(c, METHOD_AK_GET,
                             cpstore_v1_GetApiKeyRequest_fields, &get,
                             cpstore_v1_GetApiKeyResponse_fields, &got, &reply),
                    &reply);
    cr_assert(got.has_key);
    cr_expect_str_eq(k->user_id, create.user_id);
    cr_expect_str_eq(k->name, create.name);
    cr_expect_str_eq(k->org_id, create.org_id);
    cr_expect_str_eq(k->project_id, create.project_id);
    cr_assert_eq(k->scopes_count, 1);
    cr_expect_str_eq(k->scopes[0], create.scopes[0]);
    cr_assert_eq(k->metadata_count, 1);
    cr_expect_str_eq(k->metadata[0].key, create.metadata[0].key);
    cr_expect_str_eq(k->metadata[0].value, create.metadata[0].value);
    cpc_close(c);
}


/* ---- tokens ------------------------------------------------------------- */

LIM_TEST(a_token_at_its_limits_is_consumed_with_its_whole_subject) {
    static cpstore_v1_IssueTokenRequest issue;
    static cpstore_v1_IssueTokenResponse issued;
    static cpstore_v1_ConsumeTokenRequest consume;
    static cpstore_v1_ConsumeTokenResponse consumed;
    cpc_t *c = h_connect(&server);
    cpc_reply_t reply;

    strcpy(issue.kind, KIND);
    fill(issue.subject, sizeof(issue.subject), TK_SUBJECT_MAX, 10);
    fill(issue.metadata[0].key, sizeof(issue.metadata[0].key), LIM_META_KEY_MAX,
         11);
    fill(issue.metadata[0].value, sizeof(issue.metadata[0].value),
         LIM_META_VALUE_MAX, 12);
    issue.metadata_count = 1;
    expect_reply_ok(
        c,
        cpc_call(c, METHOD_TK_ISSUE, cpstore_v1_IssueTokenRequest_fields,
                 &issue, cpstore_v1_IssueTokenResponse_fields, &issued, &reply),
        &reply);

    strcpy(consume.kind, KIND);
    strcpy(consume.token, issued.token);
    expect_reply_ok(c,
                    cpc_call(c, METHOD_TK_CONSUME,
                             cpstore_v1_ConsumeTokenRequest_fields, &consume,
                             cpstore_v1_ConsumeTokenResponse_fields, &consumed,
                             &reply),
                    &reply);
    cr_assert_eq(consumed.code, cpstore_v1_ConsumeCode_CONSUME_CONSUMED);
    cr_expect_str_eq(consumed.subject, issue.subject);
    cr_expect_str_eq(consumed.token_id, issued.token_id);
    cr_assert_eq(consumed.metadata_count, 1);
    cr_expect_str_eq(consumed.metadata[0].key, issue.metadata[0].key);
    cr_expect_str_eq(consumed.metadata[0].value, issue.metadata[0].value);
    cpc_close(c);
}


/*
 * Issue a token the way a client without nanopb's bounds does (protobuf-c,
 * as any other language's client would): a subject of TK_SUBJECT_MAX bytes
 * and one metadata entry at its limits. The token goes into token (at
 * least 128 bytes); subject and value are the texts sent.
 */
static void issue_unbounded(cpc_t *c,
                            const char *subject,
                            const char *value,
                            char *token,
                            size_t token_len) {
    Cpstore__V1__IssueTokenRequest req = CPSTORE__V1__ISSUE_TOKEN_REQUEST__INIT;
    Cpstore__V1__MetadataEntry entry = CPSTORE__V1__METADATA_ENTRY__INIT;
    Cpstore__V1__MetadataEntry *entries[1] = {&entry};
    cpstore_v1_IssueTokenResponse resp;
    char key[LIM_META_KEY_MAX + 1];
    uint8_t *payload;
    size_t len;
    uint32_t id;
    cpc_reply_t reply;

    fill(key, sizeof(key), LIM_META_KEY_MAX, 13);
    entry.key = key;
    entry.value = (char *)value;
    req.kind = (char *)KIND;
    req.subject = (char *)subject;
    req.n_metadata = 1;
    req.metadata = entries;
    len = cpstore__v1__issue_token_request__get_packed_size(&req);
    payload = malloc(len);
    cr_assert_not_null(payload);
    cpstore__v1__issue_token_request__pack(&req, payload);
    cr_assert_eq(cpc_send_raw(c, METHOD_TK_ISSUE, payload, len, &id), CPC_OK,
                 "%s", cpc_last_error(c));
    free(payload);
    cr_assert_eq(cpc_recv(c, &reply), CPC_OK, "%s", cpc_last_error(c));
    cr_assert_eq(reply.request_id, id);
    cr_assert_eq(reply.status, 0, "status %d: %s", reply.status,
                 reply.error.message);
    cr_assert_eq(
        cpc_decode(&reply, cpstore_v1_IssueTokenResponse_fields, &resp), CPC_OK,
        "%s", cpc_last_error(c));
    cr_assert_lt(strlen(resp.token), token_len);
    strcpy(token, resp.token);
}


LIM_TEST(a_longest_subject_from_another_client_decodes_on_consume) {
    static cpstore_v1_ConsumeTokenRequest consume;
    static cpstore_v1_ConsumeTokenResponse consumed;
    char *subject = text(TK_SUBJECT_MAX, 20);
    char *value = text(LIM_META_VALUE_MAX, 21);
    cpc_t *c = h_connect(&server);
    cpc_reply_t reply;
    int rc;

    issue_unbounded(c, subject, value, consume.token, sizeof(consume.token));
    strcpy(consume.kind, KIND);
    rc = cpc_call(c, METHOD_TK_CONSUME, cpstore_v1_ConsumeTokenRequest_fields,
                  &consume, cpstore_v1_ConsumeTokenResponse_fields, &consumed,
                  &reply);
    /* The server consumed the token either way; a decode failure here
     * would lose its subject for good. */
    expect_reply_ok(c, rc, &reply);
    cr_assert_eq(consumed.code, cpstore_v1_ConsumeCode_CONSUME_CONSUMED);
    cr_expect_str_eq(consumed.subject, subject);
    cr_assert_eq(consumed.metadata_count, 1);
    cr_expect_str_eq(consumed.metadata[0].value, value);
    cpc_close(c);
    free(subject);
    free(value);
}


/* ---- rate limits -------------------------------------------------------- */

Test(limits_memory,
     a_rate_limit_key_at_its_limit_is_counted_and_named_when_denied,
     .init = start_memory_backend,
     .fini = stop_server,
     .timeout = 90) {
    static cpstore_v1_RateLimitCheckRequest req;
    static cpstore_v1_RateLimitCheckResponse resp;
    static cpstore_v1_RateLimitCheckManyRequest many;
    static cpstore_v1_RateLimitCheckManyResponse many_resp;
    cpc_t *c = h_connect(&server);
    cpc_reply_t reply;

    fill(req.key, sizeof(req.key), LIM_RL_KEY_MAX, 30);
    req.limit = 1;
    req.window_ms = 60000;
    req.cost = 1;
    expect_reply_ok(c, cpc_ratelimit_check(c, &req, &resp, &reply), &reply);
    cr_assert(resp.allowed, "the first request fits a limit of 1");

    /* The same key, now full, denies, and the answer names it whole. */
    many.checks[0] = req;
    many.checks_count = 1;
    expect_reply_ok(c,
                    cpc_call(c, METHOD_RL_MANY,
                             cpstore_v1_RateLimitCheckManyRequest_fields, &many,
                             cpstore_v1_RateLimitCheckManyResponse_fields,
                             &many_resp, &reply),
                    &reply);
    cr_assert_not(many_resp.allowed, "the second request is over the limit");
    cr_assert_eq(many_resp.denied_index, 0);
    cr_expect_str_eq(many_resp.denied_key, req.key);
    cpc_close(c);
}


Test(limits_memory,
     a_policy_name_at_its_limit_is_sent_and_looked_up,
     .init = start_memory_backend,
     .fini = stop_server,
     .timeout = 90) {
    static cpstore_v1_RateLimitCheckRequest req;
    static cpstore_v1_RateLimitCheckResponse resp;
    cpc_t *c = h_connect(&server);
    cpc_reply_t reply;

    strcpy(req.key, "user:42");
    fill(req.policy, sizeof(req.policy), CF_NAME_MAX, 31);
    cr_assert_eq(cpc_ratelimit_check(c, &req, &resp, &reply), CPC_OK, "%s",
                 cpc_last_error(c));
    /* A well-formed name the configuration lacks: NOT_FOUND, where a name
     * over the limit would be INVALID_ARGUMENT. */
    cr_expect_eq(reply.status, CPS_NOT_FOUND, "status %d: %s", reply.status,
                 reply.error.message);
    cpc_close(c);
}


/* ---- the CLI ------------------------------------------------------------ */

Test(limits_memory,
     the_cli_consumes_a_token_with_the_longest_subject,
     .init = start_memory_backend,
     .fini = stop_server,
     .timeout = 90) {
    char token[128];
    char addr[80];
    char *subject = text(TK_SUBJECT_MAX, 40);
    char *value = text(LIM_META_VALUE_MAX, 41);
    cpc_t *c = h_connect(&server);
    const char *argv[] = {
        CPSTORE_CLI_PATH, addr, "--json",  "tokens", "consume",
        "--kind",         KIND, "--token", token,    NULL};
    char *out = NULL;
    int status;
    bson_t *doc;
    bson_error_t error;
    bson_iter_t it;

    issue_unbounded(c, subject, value, token, sizeof(token));
    cpc_close(c);
    snprintf(addr, sizeof(addr), "--addr=%s", server.addr);

    status = h_run(argv, NULL, 10000, &out);
    cr_assert(WIFEXITED(status), "cpstore did not exit: status %d", status);
    cr_assert_eq(WEXITSTATUS(status), 0, "exit %d; output: %s",
                 WEXITSTATUS(status), out);
    doc = bson_new_from_json((const uint8_t *)out, -1, &error);
    cr_assert_not_null(doc, "not JSON (%s): %s", error.message, out);
    cr_assert(bson_iter_init_find(&it, doc, "code"));
    cr_expect_str_eq(bson_iter_utf8(&it, NULL), "CONSUMED");
    cr_assert(bson_iter_init_find(&it, doc, "subject"));
    cr_expect_str_eq(bson_iter_utf8(&it, NULL), subject);
    bson_destroy(doc);
    free(out);
    free(subject);
    free(value);
}
