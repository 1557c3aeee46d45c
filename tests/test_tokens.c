/*
 * Single-use tokens through cpstored, on the MongoDB-compatible server of
 * CPSTORE_TEST_MONGO_URI (FerretDB in the test suite) and on the memory
 * backend. Each behaviour test is written once (TK_TEST) and runs in both
 * suites; each mongo test gets a database of its own, dropped at the end.
 *
 * Every server runs with a configuration file of two token kinds,
 * oauth_code (max_ttl 10m) and magic_link (max_ttl 30s), so "exchange", a
 * built-in kind, is unknown here.
 */
#include <criterion/criterion.h>

#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "harness.h"

#include "cpstore/v1/tokens.pb-c.h"
#include "cpstore/v1/tokens.pb.h"

#define SECRET "test-secret-0123456789abcdef0123456789abcdef"

/* RFC 7636 appendix B: a verifier and its S256 challenge. */
#define VERIFIER  "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

#define CONFIG_TEXT                                                            \
    "[token.oauth_code]\nmax_ttl = 10m\n"                                      \
    "[token.magic_link]\nmax_ttl = 30s\n"

#define TEN_MINUTES_MS (10 * 60 * 1000)

#define METHOD_ISSUE   cpstore_v1_TokensMethod_TOKENS_METHOD_ISSUE
#define METHOD_CONSUME cpstore_v1_TokensMethod_TOKENS_METHOD_CONSUME
#define METHOD_REVOKE  cpstore_v1_TokensMethod_TOKENS_METHOD_REVOKE

#define CONSUMED         cpstore_v1_ConsumeCode_CONSUME_CONSUMED
#define ALREADY_CONSUMED cpstore_v1_ConsumeCode_CONSUME_ALREADY_CONSUMED
#define EXPIRED          cpstore_v1_ConsumeCode_CONSUME_EXPIRED
#define NOT_FOUND        cpstore_v1_ConsumeCode_CONSUME_NOT_FOUND
#define BINDING_MISMATCH cpstore_v1_ConsumeCode_CONSUME_BINDING_MISMATCH
#define REVOKED          cpstore_v1_ConsumeCode_CONSUME_REVOKED

#define STATUS_INVALID_ARGUMENT 3

static h_proc_t server;
static h_proc_t server_b; /* the second instance, where a test needs one */
static int on_mongo;
static char db_name[96];
static char mongo_arg[400];
static char db_arg[128];
static char config_path[256];
static char config_arg[300];
static char last_error[600]; /* status and message of the last failed RPC */


/* ---- fixtures ----------------------------------------------------------- */

static void write_config(void) {
    const char *tmp = getenv("TMPDIR");
    int fd;

    snprintf(config_path, sizeof(config_path), "%s/cpstore-tokens-XXXXXX",
             tmp ? tmp : "/tmp");
    fd = mkstemp(config_path);
    cr_assert(fd >= 0);
    cr_assert(write(fd, CONFIG_TEXT, strlen(CONFIG_TEXT)) ==
              (ssize_t)strlen(CONFIG_TEXT));
    close(fd);
    snprintf(config_arg, sizeof(config_arg), "--config=%s", config_path);
}


/* Start one more instance with the same arguments as `server`. */
static void start_instance(h_proc_t *p) {
    const char *mongo_args[] = {mongo_arg, db_arg, config_arg,
                                "--request-timeout=30s", NULL};
    const char *memory_args[] = {config_arg, "--request-timeout=30s", NULL};
    const char *env[] = {"CPSTORE_SECRET=" SECRET, NULL};

    h_cpstored_start(p, on_mongo ? mongo_args : memory_args, env);
}


static void start_mongo_backend(void) {
    on_mongo = 1;
    write_config();
    h_unique(db_name, sizeof(db_name), "cpstore_tk");
    snprintf(mongo_arg, sizeof(mongo_arg), "--mongo=%s", h_mongo_uri());
    snprintf(db_arg, sizeof(db_arg), "--mongo-db=%s", db_name);
    start_instance(&server);
}


static void start_memory_backend(void) {
    on_mongo = 0;
    write_config();
    start_instance(&server);
}


static mongoc_client_t *mongo_client(void) {
    mongoc_client_t *client;

    mongoc_init();
    client = mongoc_client_new(h_mongo_uri());
    cr_assert_not_null(client);
    return client;
}


static void stop_servers(void) {
    h_proc_stop(&server_b);
    h_proc_stop(&server);
    unlink(config_path);
    if (on_mongo) {
        mongoc_client_t *client = mongo_client();
        mongoc_database_t *db = mongoc_client_get_database(client, db_name);

        mongoc_database_drop(db, NULL);
        mongoc_database_destroy(db);
        mongoc_client_destroy(client);
        mongoc_cleanup();
    }
}


#define TK_TEST(name)                                                          \
    static void name##_body(void);                                             \
    Test(tokens_mongo, name, .init = start_mongo_backend,                      \
         .fini = stop_servers, .timeout = 90) {                                \
        name##_body();                                                         \
    }                                                                          \
    Test(tokens_memory, name, .init = start_memory_backend,                    \
         .fini = stop_servers, .timeout = 90) {                                \
        name##_body();                                                         \
    }                                                                          \
    static void name##_body(void)


/* ---- calls -------------------------------------------------------------- */

static void note_reply(const cpc_reply_t *reply) {
    last_error[0] = '\0';
    if (reply->status != 0) {
        snprintf(last_error, sizeof(last_error), "status %d: %s", reply->status,
                 reply->error.message);
    }
}


typedef struct binding {
    const char *client;
    const char *redirect_uri;
    const char *pkce; /* challenge at issue, verifier at consume */
} binding_t;


static void issue_request(cpstore_v1_IssueTokenRequest *req,
                          const char *kind,
                          uint64_t ttl_ms,
                          const binding_t *b) {
    memset(req, 0, sizeof(*req));
    snprintf(req->kind, sizeof(req->kind), "%s", kind);
    strcpy(req->subject, "user-42");
    req->ttl_ms = ttl_ms;
    strcpy(req->metadata[0].key, "scope");
    strcpy(req->metadata[0].value, "openid profile");
    strcpy(req->metadata[1].key, "nonce");
    strcpy(req->metadata[1].value, "n-0S6_WzA2Mj");
    req->metadata_count = 2;
    if (b != NULL) {
        req->has_binding = true;
        snprintf(req->binding.client_id, sizeof(req->binding.client_id), "%s",
                 b->client ? b->client : "");
        snprintf(req->binding.redirect_uri, sizeof(req->binding.redirect_uri),
                 "%s", b->redirect_uri ? b->redirect_uri : "");
        snprintf(req->binding.pkce_challenge,
                 sizeof(req->binding.pkce_challenge), "%s",
                 b->pkce ? b->pkce : "");
    }
}


/* The RPC status of an Issue (0: OK, resp filled). */
static int issue_status(cpc_t *c,
                        const cpstore_v1_IssueTokenRequest *req,
                        cpstore_v1_IssueTokenResponse *resp) {
    cpc_reply_t reply;

    cr_assert_eq(cpc_call(c, METHOD_ISSUE, cpstore_v1_IssueTokenRequest_fields,
                          req, cpstore_v1_IssueTokenResponse_fields, resp,
                          &reply),
                 CPC_OK, "%s", cpc_last_error(c));
    note_reply(&reply);
    return reply.status;
}


static cpstore_v1_IssueTokenResponse
issue(cpc_t *c, const char *kind, uint64_t ttl_ms, const binding_t *b) {
    cpstore_v1_IssueTokenRequest req;
    cpstore_v1_IssueTokenResponse resp;

    issue_request(&req, kind, ttl_ms, b);
    cr_assert_eq(issue_status(c, &req, &resp), 0, "issue failed: %s",
                 last_error);
    cr_assert_neq(resp.token[0], '\0');
    return resp;
}


static int consume_status(cpc_t *c,
                          const char *kind,
                          const char *token,
                          const binding_t *b,
                          cpstore_v1_ConsumeTokenResponse *resp) {
    cpstore_v1_ConsumeTokenRequest req =
        cpstore_v1_ConsumeTokenRequest_init_zero;
    cpc_reply_t reply;

    snprintf(req.kind, sizeof(req.kind), "%s", kind);
    snprintf(req.token, sizeof(req.token), "%s", token);
    if (b != NULL) {
        snprintf(req.client_id, sizeof(req.client_id), "%s",
                 b->client ? b->client : "");
        snprintf(req.redirect_uri, sizeof(req.redirect_uri), "%s",
                 b->redirect_uri ? b->redirect_uri : "");
        snprintf(req.pkce_verifier, sizeof(req.pkce_verifier), "%s",
                 b->pkce ? b->pkce : "");
    }
    cr_assert_eq(cpc_call(c, METHOD_CONSUME,
                          cpstore_v1_ConsumeTokenRequest_fields, &req,
                          cpstore_v1_ConsumeTokenResponse_fields, resp, &reply),
                 CPC_OK, "%s", cpc_last_error(c));
    note_reply(&reply);
    return reply.status;
}


static cpstore_v1_ConsumeTokenResponse
consume(cpc_t *c, const char *kind, const char *token, const binding_t *b) {
    cpstore_v1_ConsumeTokenResponse resp;

    cr_assert_eq(consume_status(c, kind, token, b, &resp), 0,
                 "consume failed: %s", last_error);
    return resp;
}


static cpstore_v1_ConsumeCode consume_code(cpc_t *c,
                                           const char *kind,
                                           const char *token,
                                           const binding_t *b) {
    return consume(c, kind, token, b).code;
}


static int revoke_status(cpc_t *c,
                         const char *kind,
                         const char *token,
                         cpstore_v1_RevokeTokenResponse *resp) {
    cpstore_v1_RevokeTokenRequest req = cpstore_v1_RevokeTokenRequest_init_zero;
    cpc_reply_t reply;

    snprintf(req.kind, sizeof(req.kind), "%s", kind);
    snprintf(req.token, sizeof(req.token), "%s", token);
    cr_assert_eq(cpc_call(c, METHOD_REVOKE,
                          cpstore_v1_RevokeTokenRequest_fields, &req,
                          cpstore_v1_RevokeTokenResponse_fields, resp, &reply),
                 CPC_OK, "%s", cpc_last_error(c));
    note_reply(&reply);
    return reply.status;
}


static bool revoke_token(cpc_t *c, const char *kind, const char *token) {
    cpstore_v1_RevokeTokenResponse resp;

    cr_assert_eq(revoke_status(c, kind, token, &resp), 0, "revoke failed: %s",
                 last_error);
    return resp.revoked;
}


/* ---- reading the database ------------------------------------------------ */

/* Every document of a collection as relaxed extended JSON, appended to
 * out (caller frees with bson_free). */
static char *collection_json(mongoc_client_t *client, const char *name) {
    mongoc_collection_t *coll;
    mongoc_cursor_t *cursor;
    const bson_t *doc;
    bson_t filter = BSON_INITIALIZER;
    bson_string_t *all = bson_string_new("");
    char *json;

    coll = mongoc_client_get_collection(client, db_name, name);
    cursor = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
    while (mongoc_cursor_next(cursor, &doc)) {
        json = bson_as_relaxed_extended_json(doc, NULL);
        bson_string_append(all, json);
        bson_string_append(all, "\n");
        bson_free(json);
    }
    cr_assert_not(mongoc_cursor_error(cursor, NULL));
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    bson_destroy(&filter);
    return bson_string_free(all, false);
}


/* True when the collection holds a document with this _id. */
static bool document_exists(const char *collection, const char *id) {
    mongoc_client_t *client = mongo_client();
    mongoc_collection_t *coll;
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    int64_t n;

    coll = mongoc_client_get_collection(client, db_name, collection);
    n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, NULL);
    cr_assert_geq(n, 0);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return n > 0;
}


/* The date field `key` of the document with this _id. */
static int64_t
stored_date(const char *collection, const char *id, const char *key) {
    mongoc_client_t *client = mongo_client();
    mongoc_collection_t *coll;
    mongoc_cursor_t *cursor;
    const bson_t *doc;
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    bson_iter_t it;
    int64_t value;

    coll = mongoc_client_get_collection(client, db_name, collection);
    cursor = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
    cr_assert(mongoc_cursor_next(cursor, &doc), "no %s in %s", id, collection);
    cr_assert(bson_iter_init_find(&it, doc, key), "no %s in the document", key);
    cr_assert(BSON_ITER_HOLDS_DATE_TIME(&it));
    value = bson_iter_date_time(&it);
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    bson_destroy(filter);
    mongoc_client_destroy(client);
    return value;
}


/* ---- issue --------------------------------------------------------------- */

TK_TEST(issued_token_is_its_kind_and_256_random_bits) {
    cpc_t *c = h_connect(&server);
    int64_t before = clock_now_ms();
    cpstore_v1_IssueTokenResponse t = issue(c, "oauth_code", 0, NULL);
    int64_t after = clock_now_ms();
    const char *random = t.token + strlen("oauth_code_");

    cr_assert_eq(strncmp(t.token, "oauth_code_", 11), 0, "token %s", t.token);
    cr_assert_geq(strlen(random), 43, "random part shorter than 256 bits");
    for (const char *p = random; *p != '\0'; p++) {
        cr_assert(strchr("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "abcdefghijklmnopqrstuvwxyz",
                         *p) != NULL);
    }
    cr_assert_eq(strncmp(t.token_id, "tok_", 4), 0);
    cr_assert_null(strstr(t.token, t.token_id + 4));

    /* The default lifetime is ten minutes. */
    cr_assert_geq(t.expires_at_ms, before + TEN_MINUTES_MS);
    cr_assert_leq(t.expires_at_ms, after + TEN_MINUTES_MS);
    cpc_close(c);
}


TK_TEST(ttl_above_the_kinds_max_is_capped_at_it) {
    cpc_t *c = h_connect(&server);
    int64_t before = clock_now_ms();
    cpstore_v1_IssueTokenResponse hour = issue(c, "magic_link", 3600000, NULL);
    cpstore_v1_IssueTokenResponse dflt = issue(c, "magic_link", 0, NULL);
    cpstore_v1_IssueTokenResponse code = issue(c, "oauth_code", 3600000, NULL);
    cpstore_v1_IssueTokenResponse short_ = issue(c, "magic_link", 5000, NULL);
    int64_t after = clock_now_ms();

    /* magic_link allows 30 s: an hour and the 10-minute default are cut
     * to that; oauth_code allows 10 minutes; 5 s stays 5 s. */
    cr_assert_geq(hour.expires_at_ms, before + 30000);
    cr_assert_leq(hour.expires_at_ms, after + 30000);
    cr_assert_geq(dflt.expires_at_ms, before + 30000);
    cr_assert_leq(dflt.expires_at_ms, after + 30000);
    cr_assert_geq(code.expires_at_ms, before + TEN_MINUTES_MS);
    cr_assert_leq(code.expires_at_ms, after + TEN_MINUTES_MS);
    cr_assert_geq(short_.expires_at_ms, before + 5000);
    cr_assert_leq(short_.expires_at_ms, after + 5000);
    cpc_close(c);
}


TK_TEST(unknown_kind_is_invalid_argument) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_IssueTokenRequest req;
    cpstore_v1_IssueTokenResponse resp;
    cpstore_v1_ConsumeTokenResponse cresp;
    cpstore_v1_RevokeTokenResponse rresp;
    cpstore_v1_IssueTokenResponse t = issue(c, "oauth_code", 0, NULL);

    /* "exchange" is built in, but this server's file names other kinds. */
    issue_request(&req, "exchange", 0, NULL);
    cr_assert_eq(issue_status(c, &req, &resp), STATUS_INVALID_ARGUMENT);
    issue_request(&req, "", 0, NULL);
    cr_assert_eq(issue_status(c, &req, &resp), STATUS_INVALID_ARGUMENT);
    cr_assert_eq(consume_status(c, "exchange", t.token, NULL, &cresp),
                 STATUS_INVALID_ARGUMENT);
    cr_assert_eq(revoke_status(c, "exchange", t.token, &rresp),
                 STATUS_INVALID_ARGUMENT);

    /* None of that touched the token. */
    cr_assert_eq(consume_code(c, "oauth_code", t.token, NULL), CONSUMED);
    cpc_close(c);
}


TK_TEST(bad_issue_requests_are_invalid_argument) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_IssueTokenRequest req;
    cpstore_v1_IssueTokenResponse resp;
    binding_t bad_pkce = {.pkce = "not-a-challenge"};
    binding_t padded = {.pkce = CHALLENGE "="};

    issue_request(&req, "oauth_code", 0, NULL);
    req.subject[0] = '\0';
    cr_assert_eq(issue_status(c, &req, &resp), STATUS_INVALID_ARGUMENT,
                 "no subject");

    issue_request(&req, "oauth_code", 0, NULL);
    strcpy(req.metadata[1].key, req.metadata[0].key);
    cr_assert_eq(issue_status(c, &req, &resp), STATUS_INVALID_ARGUMENT,
                 "repeated metadata key");

    issue_request(&req, "oauth_code", 0, NULL);
    req.metadata[1].key[0] = '\0';
    cr_assert_eq(issue_status(c, &req, &resp), STATUS_INVALID_ARGUMENT,
                 "empty metadata key");

    issue_request(&req, "oauth_code", 0, &bad_pkce);
    cr_assert_eq(issue_status(c, &req, &resp), STATUS_INVALID_ARGUMENT,
                 "malformed challenge");
    issue_request(&req, "oauth_code", 0, &padded);
    cr_assert_eq(issue_status(c, &req, &resp), STATUS_INVALID_ARGUMENT,
                 "padded challenge");
    cpc_close(c);
}


/* Longer fields than the client library can encode, packed with
 * protobuf-c and sent raw: the server's own bounds refuse them. */
static int
raw_issue_status(cpc_t *c, const char *subject, const char *redirect_uri) {
    Cpstore__V1__IssueTokenRequest req = CPSTORE__V1__ISSUE_TOKEN_REQUEST__INIT;
    Cpstore__V1__TokenBinding binding = CPSTORE__V1__TOKEN_BINDING__INIT;
    uint8_t buf[8192];
    cpc_reply_t reply;
    uint32_t id;
    size_t len;

    req.kind = "oauth_code";
    req.subject = (char *)subject;
    binding.redirect_uri = (char *)redirect_uri;
    req.binding = &binding;
    len = cpstore__v1__issue_token_request__get_packed_size(&req);
    cr_assert_leq(len, sizeof(buf));
    cpstore__v1__issue_token_request__pack(&req, buf);
    cr_assert_eq(cpc_send_raw(c, METHOD_ISSUE, buf, len, &id), CPC_OK);
    cr_assert_eq(cpc_recv(c, &reply), CPC_OK);
    cr_assert_eq(reply.request_id, id);
    note_reply(&reply);
    return reply.status;
}


TK_TEST(fields_over_their_limits_are_invalid_argument) {
    cpc_t *c = h_connect(&server);
    char long_subject[258];
    char long_uri[1100];

    memset(long_subject, 's', sizeof(long_subject) - 1);
    long_subject[sizeof(long_subject) - 1] = '\0';
    memset(long_uri, 'u', sizeof(long_uri) - 1);
    long_uri[sizeof(long_uri) - 1] = '\0';

    cr_assert_eq(raw_issue_status(c, long_subject, ""),
                 STATUS_INVALID_ARGUMENT);
    cr_assert_eq(raw_issue_status(c, "user-1", long_uri),
                 STATUS_INVALID_ARGUMENT);
    long_subject[256] = '\0'; /* exactly the limit */
    cr_assert_eq(raw_issue_status(c, long_subject, "https://a.example/cb"), 0);
    cpc_close(c);
}


/* ---- consume ------------------------------------------------------------ */

TK_TEST(consume_returns_subject_and_metadata_once) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_IssueTokenResponse t = issue(c, "oauth_code", 0, NULL);
    cpstore_v1_ConsumeTokenResponse r = consume(c, "oauth_code", t.token, NULL);

    cr_assert_eq(r.code, CONSUMED);
    cr_assert_str_eq(r.subject, "user-42");
    cr_assert_str_eq(r.token_id, t.token_id);
    cr_assert_eq(r.metadata_count, 2);
    cr_assert_str_eq(r.metadata[0].key, "scope");
    cr_assert_str_eq(r.metadata[0].value, "openid profile");
    cr_assert_str_eq(r.metadata[1].key, "nonce");
    cr_assert_str_eq(r.metadata[1].value, "n-0S6_WzA2Mj");
    cr_assert_neq(r.consumed_at_ms, 0);

    r = consume(c, "oauth_code", t.token, NULL);
    cr_assert_eq(r.code, ALREADY_CONSUMED);
    cr_assert_str_empty(r.subject, "a reuse must not hand out the subject");
    cr_assert_eq(r.metadata_count, 0);
    cpc_close(c);
}


TK_TEST(reuse_reports_the_time_of_the_first_consume) {
    cpc_t *a = h_connect(&server);
    cpc_t *b = h_connect(&server);
    cpstore_v1_IssueTokenResponse t = issue(a, "oauth_code", 0, NULL);
    cpstore_v1_ConsumeTokenResponse first =
        consume(a, "oauth_code", t.token, NULL);
    cpstore_v1_ConsumeTokenResponse again;

    cr_assert_eq(first.code, CONSUMED);
    usleep(50 * 1000); /* so that "now" differs from the first time */
    again = consume(b, "oauth_code", t.token, NULL);
    cr_assert_eq(again.code, ALREADY_CONSUMED);
    cr_assert_eq(again.consumed_at_ms, first.consumed_at_ms,
                 "reuse says %lld, first consume was %lld",
                 (long long)again.consumed_at_ms,
                 (long long)first.consumed_at_ms);
    cr_assert_str_eq(again.token_id, t.token_id);
    if (on_mongo) {
        cr_assert_eq(stored_date("spent_tokens", t.token_id, "at"),
                     first.consumed_at_ms);
    }
    cpc_close(a);
    cpc_close(b);
}


TK_TEST(wrong_binding_does_not_burn_the_token) {
    cpc_t *c = h_connect(&server);
    binding_t bound = {.client = "client-1",
                       .redirect_uri = "https://app.example/cb",
                       .pkce = CHALLENGE};
    binding_t right = {.client = "client-1",
                       .redirect_uri = "https://app.example/cb",
                       .pkce = VERIFIER};
    binding_t wrong_client = right;
    binding_t wrong_verifier = right;
    binding_t wrong_uri = right;
    binding_t no_verifier = right;
    cpstore_v1_IssueTokenResponse t = issue(c, "oauth_code", 0, &bound);
    cpstore_v1_ConsumeTokenResponse r;

    wrong_client.client = "client-2";
    wrong_verifier.pkce = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK";
    wrong_uri.redirect_uri = "https://app.example/cb/";
    no_verifier.pkce = NULL;

    cr_assert_eq(consume_code(c, "oauth_code", t.token, &wrong_client),
                 BINDING_MISMATCH);
    cr_assert_eq(consume_code(c, "oauth_code", t.token, &wrong_verifier),
                 BINDING_MISMATCH);
    cr_assert_eq(consume_code(c, "oauth_code", t.token, &wrong_uri),
                 BINDING_MISMATCH);
    cr_assert_eq(consume_code(c, "oauth_code", t.token, &no_verifier),
                 BINDING_MISMATCH);
    cr_assert_eq(consume_code(c, "oauth_code", t.token, NULL),
                 BINDING_MISMATCH);

    r = consume(c, "oauth_code", t.token, &right);
    cr_assert_eq(r.code, CONSUMED);
    cr_assert_str_eq(r.subject, "user-42");
    cpc_close(c);
}


TK_TEST(verifier_for_a_token_without_challenge_is_a_mismatch) {
    cpc_t *c = h_connect(&server);
    binding_t bound = {.client = "client-1"};
    binding_t with_verifier = {.client = "client-1", .pkce = VERIFIER};
    binding_t plain = {.client = "client-1"};
    cpstore_v1_IssueTokenResponse t = issue(c, "oauth_code", 0, &bound);

    cr_assert_eq(consume_code(c, "oauth_code", t.token, &with_verifier),
                 BINDING_MISMATCH);
    cr_assert_eq(consume_code(c, "oauth_code", t.token, &plain), CONSUMED);
    cpc_close(c);
}


TK_TEST(expired_token_is_expired_while_its_document_exists) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_IssueTokenResponse t = issue(c, "oauth_code", 1000, NULL);
    cpstore_v1_ConsumeTokenResponse r;

    usleep(2000 * 1000);
    if (on_mongo) {
        cr_assert(document_exists("tokens", t.token_id),
                  "the expired token's document is gone");
    }
    r = consume(c, "oauth_code", t.token, NULL);
    cr_assert_eq(r.code, EXPIRED, "code %d", r.code);
    /* The record was found: an answer about it, not NOT_FOUND. */
    cr_assert_str_eq(r.token_id, t.token_id);
    if (on_mongo) {
        cr_assert(document_exists("tokens", t.token_id));
        cr_assert_not(document_exists("spent_tokens", t.token_id),
                      "an expired consume spent the token");
    }
    cpc_close(c);
}


TK_TEST(consumed_token_reports_reuse_even_after_expiry) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_IssueTokenResponse t = issue(c, "oauth_code", 1000, NULL);
    cpstore_v1_ConsumeTokenResponse first =
        consume(c, "oauth_code", t.token, NULL);
    cpstore_v1_ConsumeTokenResponse late;

    cr_assert_eq(first.code, CONSUMED);
    usleep(1500 * 1000);
    late = consume(c, "oauth_code", t.token, NULL);
    cr_assert_eq(late.code, ALREADY_CONSUMED, "code %d", late.code);
    cr_assert_eq(late.consumed_at_ms, first.consumed_at_ms);
    cpc_close(c);
}


TK_TEST(unknown_token_is_not_found) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_IssueTokenResponse t = issue(c, "oauth_code", 0, NULL);
    cpstore_v1_IssueTokenResponse m = issue(c, "magic_link", 0, NULL);
    char other[128];
    size_t n = strlen(t.token);

    snprintf(other, sizeof(other), "%s", t.token);
    other[n - 1] = other[n - 1] == 'a' ? 'b' : 'a';
    cr_assert_eq(consume_code(c, "oauth_code", other, NULL), NOT_FOUND);
    cr_assert_eq(consume_code(c, "oauth_code", "oauth_code_nothing", NULL),
                 NOT_FOUND);
    cr_assert_eq(consume_code(c, "oauth_code", "", NULL), NOT_FOUND);

    /* A real token presented as another kind is not that kind's token, and
     * presenting it so does not spend it. */
    cr_assert_eq(consume_code(c, "oauth_code", m.token, NULL), NOT_FOUND);
    cr_assert_eq(consume_code(c, "magic_link", m.token, NULL), CONSUMED);
    cr_assert_eq(consume_code(c, "oauth_code", t.token, NULL), CONSUMED);
    cpc_close(c);
}


/* ---- revoke -------------------------------------------------------------- */

TK_TEST(revoked_token_answers_revoked) {
    cpc_t *c = h_connect(&server);
    binding_t bound = {.client = "client-1"};
    cpstore_v1_IssueTokenResponse t = issue(c, "oauth_code", 0, &bound);
    cpstore_v1_ConsumeTokenResponse r;

    cr_assert(revoke_token(c, "oauth_code", t.token));
    r = consume(c, "oauth_code", t.token, &bound);
    cr_assert_eq(r.code, REVOKED, "code %d", r.code);
    cr_assert_str_empty(r.subject);
    /* Whatever is presented. */
    cr_assert_eq(consume_code(c, "oauth_code", t.token, NULL), REVOKED);
    /* A second revoke still finds the token. */
    cr_assert(revoke_token(c, "oauth_code", t.token));
    cpc_close(c);
}


TK_TEST(revoke_after_consume_turns_reuse_into_revoked) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_IssueTokenResponse t = issue(c, "oauth_code", 0, NULL);

    cr_assert_eq(consume_code(c, "oauth_code", t.token, NULL), CONSUMED);
    cr_assert(revoke_token(c, "oauth_code", t.token));
    cr_assert_eq(consume_code(c, "oauth_code", t.token, NULL), REVOKED);
    cpc_close(c);
}


TK_TEST(revoke_of_an_unknown_token_revokes_nothing) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_IssueTokenResponse m = issue(c, "magic_link", 0, NULL);

    cr_assert_not(revoke_token(c, "oauth_code", "oauth_code_nothing"));
    cr_assert_not(revoke_token(c, "oauth_code", ""));
    /* Another kind's token is not found, and stays usable. */
    cr_assert_not(revoke_token(c, "oauth_code", m.token));
    cr_assert_eq(consume_code(c, "magic_link", m.token, NULL), CONSUMED);
    cpc_close(c);
}


/* ---- exactly once ------------------------------------------------------- */

#define RACE_CONNECTIONS 10
#define RACE_PER_CONN    5
#define RACE_TOTAL       (RACE_CONNECTIONS * RACE_PER_CONN)

typedef struct race_conn {
    cpc_t *c;
    const char *token;
    pthread_barrier_t *start;
    int failures;      /* transport errors, RPC errors, undecodable replies */
    char failure[600]; /* the last one */
    cpstore_v1_ConsumeCode codes[RACE_PER_CONN];
    int64_t consumed_at[RACE_PER_CONN];
} race_conn_t;


/* Pipeline all of this connection's consumes, then collect the answers.
 * No Criterion asserts on this thread: the main thread judges. */
static void *race_run(void *arg) {
    race_conn_t *rc = arg;
    cpstore_v1_ConsumeTokenRequest req =
        cpstore_v1_ConsumeTokenRequest_init_zero;
    uint32_t id;

    strcpy(req.kind, "oauth_code");
    snprintf(req.token, sizeof(req.token), "%s", rc->token);
    pthread_barrier_wait(rc->start);
    for (int i = 0; i < RACE_PER_CONN; i++) {
        if (cpc_send(rc->c, METHOD_CONSUME,
                     cpstore_v1_ConsumeTokenRequest_fields, &req,
                     &id) != CPC_OK) {
            rc->failures++;
        }
    }
    for (int i = 0; i < RACE_PER_CONN; i++) {
        cpstore_v1_ConsumeTokenResponse resp =
            cpstore_v1_ConsumeTokenResponse_init_zero;
        cpc_reply_t reply;

        if (cpc_recv(rc->c, &reply) != CPC_OK) {
            snprintf(rc->failure, sizeof(rc->failure), "%s",
                     cpc_last_error(rc->c));
            rc->failures++;
            continue;
        }
        if (reply.status != 0 ||
            cpc_decode(&reply, cpstore_v1_ConsumeTokenResponse_fields, &resp) !=
                CPC_OK) {
            snprintf(rc->failure, sizeof(rc->failure), "status %d: %s",
                     reply.status, reply.error.message);
            rc->failures++;
            continue;
        }
        rc->codes[i] = resp.code;
        rc->consumed_at[i] = resp.consumed_at_ms;
    }
    return NULL;
}


/* 50 consumes of one token over 10 connections, spread over the given
 * instances: exactly one wins, and every loser names the winner's time. */
static void race(h_proc_t *const *instances, size_t n_instances) {
    race_conn_t conns[RACE_CONNECTIONS];
    pthread_t threads[RACE_CONNECTIONS];
    pthread_barrier_t start;
    cpc_t *c = h_connect(instances[0]);
    cpstore_v1_IssueTokenResponse t = issue(c, "oauth_code", 0, NULL);
    int consumed = 0, already = 0;
    int64_t winner_at = 0;

    cpc_close(c);
    memset(conns, 0, sizeof(conns));
    pthread_barrier_init(&start, NULL, RACE_CONNECTIONS);
    for (int i = 0; i < RACE_CONNECTIONS; i++) {
        conns[i].c = h_connect(instances[(size_t)i % n_instances]);
        cpc_set_budget(conns[i].c, 30000);
        conns[i].token = t.token;
        conns[i].start = &start;
    }
    for (int i = 0; i < RACE_CONNECTIONS; i++) {
        cr_assert_eq(pthread_create(&threads[i], NULL, race_run, &conns[i]), 0);
    }
    for (int i = 0; i < RACE_CONNECTIONS; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_barrier_destroy(&start);

    for (int i = 0; i < RACE_CONNECTIONS; i++) {
        cr_assert_eq(conns[i].failures, 0,
                     "connection %d had %d failures, the last: %s", i,
                     conns[i].failures, conns[i].failure);
        for (int k = 0; k < RACE_PER_CONN; k++) {
            if (conns[i].codes[k] == CONSUMED) {
                consumed++;
                winner_at = conns[i].consumed_at[k];
            } else {
                cr_assert_eq(conns[i].codes[k], ALREADY_CONSUMED,
                             "answer %d on connection %d", conns[i].codes[k],
                             i);
                already++;
            }
        }
    }
    cr_assert_eq(consumed, 1, "%d consumes won", consumed);
    cr_assert_eq(already, RACE_TOTAL - 1);
    for (int i = 0; i < RACE_CONNECTIONS; i++) {
        for (int k = 0; k < RACE_PER_CONN; k++) {
            cr_assert_eq(conns[i].consumed_at[k], winner_at,
                         "a loser reported another first-consume time");
        }
        cpc_close(conns[i].c);
    }
}


Test(tokens_mongo,
     fifty_concurrent_consumes_on_two_instances_have_one_winner,
     .init = start_mongo_backend,
     .fini = stop_servers,
     .timeout = 120) {
    h_proc_t *both[] = {&server, &server_b};

    start_instance(&server_b);
    race(both, 2);
}


Test(tokens_memory,
     fifty_concurrent_consumes_have_one_winner,
     .init = start_memory_backend,
     .fini = stop_servers,
     .timeout = 120) {
    h_proc_t *one[] = {&server};

    race(one, 1);
}


/* A token issued on one instance is consumed on the other, and the
 * other's reuse is seen by the first. */
Test(tokens_mongo,
     instances_share_tokens_and_their_spent_state,
     .init = start_mongo_backend,
     .fini = stop_servers,
     .timeout = 90) {
    cpc_t *a;
    cpc_t *b;
    cpstore_v1_IssueTokenResponse t;
    cpstore_v1_ConsumeTokenResponse first;
    cpstore_v1_ConsumeTokenResponse again;

    start_instance(&server_b);
    a = h_connect(&server);
    b = h_connect(&server_b);
    t = issue(a, "oauth_code", 0, NULL);
    first = consume(b, "oauth_code", t.token, NULL);
    cr_assert_eq(first.code, CONSUMED);
    again = consume(a, "oauth_code", t.token, NULL);
    cr_assert_eq(again.code, ALREADY_CONSUMED);
    cr_assert_eq(again.consumed_at_ms, first.consumed_at_ms);

    t = issue(a, "oauth_code", 0, NULL);
    cr_assert(revoke_token(b, "oauth_code", t.token));
    cr_assert_eq(consume_code(a, "oauth_code", t.token, NULL), REVOKED);
    cpc_close(a);
    cpc_close(b);
}


/* ---- what is stored ------------------------------------------------------ */

/* Neither collection holds a token or any 8-character piece of one. */
Test(tokens_mongo,
     stored_documents_hold_no_piece_of_the_token,
     .init = start_mongo_backend,
     .fini = stop_servers,
     .timeout = 90) {
    cpc_t *c = h_connect(&server);
    binding_t bound = {.client = "client-1",
                       .redirect_uri = "https://app.example/cb",
                       .pkce = CHALLENGE};
    binding_t right = {.client = "client-1",
                       .redirect_uri = "https://app.example/cb",
                       .pkce = VERIFIER};
    cpstore_v1_IssueTokenResponse used = issue(c, "oauth_code", 0, &bound);
    cpstore_v1_IssueTokenResponse revoked = issue(c, "oauth_code", 0, &bound);
    cpstore_v1_IssueTokenResponse *tokens[] = {&used, &revoked};
    mongoc_client_t *client;
    char *stored[2];

    cr_assert_eq(consume_code(c, "oauth_code", used.token, &right), CONSUMED);
    cr_assert(revoke_token(c, "oauth_code", revoked.token));

    client = mongo_client();
    stored[0] = collection_json(client, "tokens");
    stored[1] = collection_json(client, "spent_tokens");
    mongoc_client_destroy(client);

    /* The documents are there, under their public ids. */
    cr_assert_not_null(strstr(stored[0], used.token_id));
    cr_assert_not_null(strstr(stored[0], revoked.token_id));
    cr_assert_not_null(strstr(stored[1], used.token_id));
    cr_assert_not_null(strstr(stored[0], CHALLENGE));

    for (size_t k = 0; k < 2; k++) {
        const char *random = strrchr(tokens[k]->token, '_') + 1;
        size_t rlen = strlen(random);

        for (size_t s = 0; s < 2; s++) {
            cr_assert_null(strstr(stored[s], tokens[k]->token));
            for (size_t i = 0; i + 8 <= rlen; i++) {
                char piece[9];

                memcpy(piece, random + i, 8);
                piece[8] = '\0';
                cr_assert_null(strstr(stored[s], piece),
                               "stored documents hold \"%s\"", piece);
            }
        }
    }
    bson_free(stored[0]);
    bson_free(stored[1]);
    cpc_close(c);
}


/* The token is issued with one insert: binding, metadata and expiry are
 * in the document from its first moment. */
Test(tokens_mongo,
     issued_document_carries_its_binding_and_expiry,
     .init = start_mongo_backend,
     .fini = stop_servers,
     .timeout = 90) {
    cpc_t *c = h_connect(&server);
    binding_t bound = {.client = "client-1",
                       .redirect_uri = "https://app.example/cb",
                       .pkce = CHALLENGE};
    cpstore_v1_IssueTokenResponse t = issue(c, "oauth_code", 0, &bound);
    mongoc_client_t *client = mongo_client();
    char *stored = collection_json(client, "tokens");

    mongoc_client_destroy(client);
    cr_assert_not_null(strstr(stored, "\"client_id\" : \"client-1\""), "%s",
                       stored);
    cr_assert_not_null(
        strstr(stored, "\"redirect_uri\" : \"https://app.example/cb\""));
    cr_assert_not_null(strstr(stored, "\"subject\" : \"user-42\""));
    cr_assert_not_null(strstr(stored, "openid profile"));
    cr_assert_eq(stored_date("tokens", t.token_id, "expires_at"),
                 t.expires_at_ms);
    bson_free(stored);
    cpc_close(c);
}
