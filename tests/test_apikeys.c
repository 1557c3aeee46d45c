/*
 * ApiKeys through cpstored, on the MongoDB-compatible server of
 * CPSTORE_TEST_MONGO_URI (FerretDB in the test suite) and on the memory
 * backend. Each behaviour test is written once (AK_TEST) and runs in both
 * suites; each mongo test gets a database of its own, dropped at the end.
 */
#include <criterion/criterion.h>

#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "harness.h"

#define SECRET "test-secret-0123456789abcdef0123456789abcdef"

static h_proc_t server;
static int on_mongo;
static char db_name[96];
static char mongo_arg[400];
static char db_arg[128];


static void start_mongo_backend(void) {
    const char *args[] = {mongo_arg, db_arg, NULL};
    const char *env[] = {"CPSTORE_SECRET=" SECRET, NULL};

    on_mongo = 1;
    h_unique(db_name, sizeof(db_name), "cpstore_test");
    snprintf(mongo_arg, sizeof(mongo_arg), "--mongo=%s", h_mongo_uri());
    snprintf(db_arg, sizeof(db_arg), "--mongo-db=%s", db_name);
    h_cpstored_start(&server, args, env);
}


static void start_memory_backend(void) {
    const char *env[] = {"CPSTORE_SECRET=" SECRET, NULL};

    on_mongo = 0;
    h_cpstored_start(&server, NULL, env);
}


static mongoc_client_t *mongo_client(void) {
    mongoc_client_t *client;

    mongoc_init();
    client = mongoc_client_new(h_mongo_uri());
    cr_assert_not_null(client);
    return client;
}


static void stop_server(void) {
    h_proc_stop(&server);
    if (on_mongo) {
        mongoc_client_t *client = mongo_client();
        mongoc_database_t *db = mongoc_client_get_database(client, db_name);

        mongoc_database_drop(db, NULL);
        mongoc_database_destroy(db);
        mongoc_client_destroy(client);
        mongoc_cleanup();
    }
}


#define AK_TEST(name)                                                          \
    static void name##_body(void);                                             \
    Test(ak_mongo, name, .init = start_mongo_backend, .fini = stop_server,     \
         .timeout = 60) {                                                      \
        name##_body();                                                         \
    }                                                                          \
    Test(ak_memory, name, .init = start_memory_backend, .fini = stop_server,   \
         .timeout = 60) {                                                      \
        name##_body();                                                         \
    }                                                                          \
    static void name##_body(void)


typedef struct key_opts {
    const char *scopes[4];
    const char *org;
    const char *project;
    int64_t expires_at_ms;
} key_opts_t;


static cpstore_v1_CreateApiKeyResponse create_key(cpc_t *c,
                                                  const key_opts_t *o) {
    cpstore_v1_CreateApiKeyRequest req =
        cpstore_v1_CreateApiKeyRequest_init_zero;
    cpstore_v1_CreateApiKeyResponse resp;
    cpc_reply_t reply;

    strcpy(req.user_id, "user-1");
    strcpy(req.name, "test key");
    for (int i = 0; i < 4 && o->scopes[i] != NULL; i++) {
        strcpy(req.scopes[req.scopes_count++], o->scopes[i]);
    }
    if (o->org != NULL) {
        strcpy(req.org_id, o->org);
    }
    if (o->project != NULL) {
        strcpy(req.project_id, o->project);
    }
    req.expires_at_ms = o->expires_at_ms;
    cr_assert_eq(cpc_apikeys_create(c, &req, &resp, &reply), CPC_OK, "%s",
                 cpc_last_error(c));
    cr_assert_eq(reply.status, 0, "create failed: %s", reply.error.message);
    cr_assert_neq(resp.key[0], '\0');
    return resp;
}


static cpstore_v1_VerifyApiKeyResponse verify(cpc_t *c,
                                              const char *key,
                                              const char *scope,
                                              const char *org,
                                              const char *project) {
    cpstore_v1_VerifyApiKeyRequest req =
        cpstore_v1_VerifyApiKeyRequest_init_zero;
    cpstore_v1_VerifyApiKeyResponse resp;
    cpc_reply_t reply;

    snprintf(req.key, sizeof(req.key), "%s", key);
    if (scope != NULL) {
        strcpy(req.required_scopes[req.required_scopes_count++], scope);
    }
    if (org != NULL) {
        strcpy(req.org_id, org);
    }
    if (project != NULL) {
        strcpy(req.project_id, project);
    }
    cr_assert_eq(cpc_apikeys_verify(c, &req, &resp, &reply), CPC_OK, "%s",
                 cpc_last_error(c));
    cr_assert_eq(reply.status, 0, "verify failed: %s", reply.error.message);
    cr_assert_eq(resp.valid, resp.code == cpstore_v1_VerifyCode_VALID);
    return resp;
}


static cpstore_v1_VerifyCode
verify_code(cpc_t *c, const char *key, const char *scope) {
    return verify(c, key, scope, NULL, NULL).code;
}


AK_TEST(create_and_verify_round_trip) {
    cpc_t *c = h_connect(&server);
    key_opts_t o = {.scopes = {"memory:read", "memory:write"}};
    cpstore_v1_CreateApiKeyResponse k = create_key(c, &o);
    cpstore_v1_VerifyApiKeyResponse v;

    cr_assert_eq(strncmp(k.key, "cpk_dev_", 8), 0, "key %s", k.key);
    cr_assert_geq(strlen(k.key) - 8, 43, "random part shorter than 256 bits");
    v = verify(c, k.key, "memory:read", NULL, NULL);
    cr_assert(v.valid);
    cr_assert_eq(v.code, cpstore_v1_VerifyCode_VALID);
    cr_assert_str_eq(v.key_id, k.key_id);
    cr_assert_str_eq(v.user_id, "user-1");
    cr_assert_eq(v.scopes_count, 2);
    cr_assert_str_eq(k.info.hint + strlen(k.info.hint) - 4,
                     k.key + strlen(k.key) - 4);
    cpc_close(c);
}


AK_TEST(wrong_key_is_not_found) {
    cpc_t *c = h_connect(&server);
    key_opts_t o = {.scopes = {"a:b"}};
    cpstore_v1_CreateApiKeyResponse k = create_key(c, &o);
    size_t n = strlen(k.key);

    /* One character off. */
    k.key[n - 1] = k.key[n - 1] == 'a' ? 'b' : 'a';
    cr_assert_eq(verify_code(c, k.key, NULL), cpstore_v1_VerifyCode_NOT_FOUND);
    cr_assert_eq(verify_code(c, "cpk_dev_nothing", NULL),
                 cpstore_v1_VerifyCode_NOT_FOUND);
    cr_assert_eq(verify_code(c, "", NULL), cpstore_v1_VerifyCode_NOT_FOUND);
    cpc_close(c);
}


AK_TEST(short_expiry_is_valid_before_and_expired_at_and_after) {
    cpc_t *c = h_connect(&server);
    key_opts_t o = {.scopes = {"a:b"}};
    cpstore_v1_CreateApiKeyResponse k;
    int64_t now;

    o.expires_at_ms = clock_now_ms() + 1500;
    k = create_key(c, &o);
    cr_assert_eq(k.info.expires_at_ms, o.expires_at_ms);
    cr_assert_eq(verify_code(c, k.key, NULL), cpstore_v1_VerifyCode_VALID);

    now = clock_now_ms();
    if (now < o.expires_at_ms) {
        usleep((useconds_t)(o.expires_at_ms - now) * 1000);
    }
    cr_assert_eq(verify_code(c, k.key, NULL), cpstore_v1_VerifyCode_EXPIRED);
    usleep(300 * 1000);
    cr_assert_eq(verify_code(c, k.key, NULL), cpstore_v1_VerifyCode_EXPIRED);
    cpc_close(c);
}


AK_TEST(scopes_match_exactly_or_by_whole_segment_wildcard) {
    cpc_t *c = h_connect(&server);
    key_opts_t exact = {.scopes = {"memory:read"}};
    key_opts_t res = {.scopes = {"memory:*"}};
    key_opts_t all = {.scopes = {"*"}};
    cpstore_v1_CreateApiKeyResponse ke = create_key(c, &exact);
    cpstore_v1_CreateApiKeyResponse kr = create_key(c, &res);
    cpstore_v1_CreateApiKeyResponse ka = create_key(c, &all);

    cr_assert_eq(verify_code(c, ke.key, "memory:read"),
                 cpstore_v1_VerifyCode_VALID);
    cr_assert_eq(verify_code(c, ke.key, "memory:write"),
                 cpstore_v1_VerifyCode_INSUFFICIENT_SCOPE);
    cr_assert_eq(verify_code(c, kr.key, "memory:write"),
                 cpstore_v1_VerifyCode_VALID);
    cr_assert_eq(verify_code(c, kr.key, "billing:read"),
                 cpstore_v1_VerifyCode_INSUFFICIENT_SCOPE);
    cr_assert_eq(verify_code(c, ka.key, "billing:read"),
                 cpstore_v1_VerifyCode_VALID);
    cpc_close(c);
}


AK_TEST(memory_read_does_not_grant_memory_readwrite) {
    cpc_t *c = h_connect(&server);
    key_opts_t o = {.scopes = {"memory:read"}};
    cpstore_v1_CreateApiKeyResponse k = create_key(c, &o);

    cr_assert_eq(verify_code(c, k.key, "memory:readwrite"),
                 cpstore_v1_VerifyCode_INSUFFICIENT_SCOPE);
    cpc_close(c);
}


AK_TEST(read_wildcard_does_not_grant_write) {
    cpc_t *c = h_connect(&server);
    key_opts_t o = {.scopes = {"read:*"}};
    cpstore_v1_CreateApiKeyResponse k = create_key(c, &o);

    cr_assert_eq(verify_code(c, k.key, "write:x"),
                 cpstore_v1_VerifyCode_INSUFFICIENT_SCOPE);
    cr_assert_eq(verify_code(c, k.key, "read:x"), cpstore_v1_VerifyCode_VALID);
    cpc_close(c);
}


AK_TEST(org_or_project_mismatch_is_context_mismatch) {
    cpc_t *c = h_connect(&server);
    key_opts_t o = {.scopes = {"a:b"}, .org = "org-1", .project = "proj-1"};
    cpstore_v1_CreateApiKeyResponse k = create_key(c, &o);
    cpstore_v1_VerifyApiKeyResponse v;

    cr_assert_eq(verify(c, k.key, NULL, "org-2", NULL).code,
                 cpstore_v1_VerifyCode_CONTEXT_MISMATCH);
    cr_assert_eq(verify(c, k.key, NULL, "org-1", "proj-2").code,
                 cpstore_v1_VerifyCode_CONTEXT_MISMATCH);
    cr_assert_eq(verify(c, k.key, NULL, "org-1", "proj-1").code,
                 cpstore_v1_VerifyCode_VALID);

    /* Naming no context: the key's binding is the context, and returned. */
    v = verify(c, k.key, NULL, NULL, NULL);
    cr_assert_eq(v.code, cpstore_v1_VerifyCode_VALID);
    cr_assert_str_eq(v.org_id, "org-1");
    cr_assert_str_eq(v.project_id, "proj-1");
    cpc_close(c);
}


AK_TEST(checks_run_in_the_documented_order) {
    cpc_t *c = h_connect(&server);
    key_opts_t o = {.scopes = {"a:b"}, .org = "org-1"};
    cpstore_v1_CreateApiKeyResponse k;

    /* A context mismatch is reported before a missing scope. */
    k = create_key(c, &o);
    cr_assert_eq(verify(c, k.key, "c:d", "org-2", NULL).code,
                 cpstore_v1_VerifyCode_CONTEXT_MISMATCH);

    /* Expiry is reported before a context mismatch. */
    o.expires_at_ms = clock_now_ms() + 800;
    k = create_key(c, &o);
    usleep(1000 * 1000);
    cr_assert_eq(verify(c, k.key, "c:d", "org-2", NULL).code,
                 cpstore_v1_VerifyCode_EXPIRED);
    cpc_close(c);
}


AK_TEST(already_expired_key_is_invalid_argument) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_CreateApiKeyRequest req =
        cpstore_v1_CreateApiKeyRequest_init_zero;
    cpstore_v1_CreateApiKeyResponse resp;
    cpc_reply_t reply;

    strcpy(req.user_id, "user-1");
    strcpy(req.scopes[req.scopes_count++], "a:b");
    req.expires_at_ms = clock_now_ms() - 1;
    cr_assert_eq(cpc_apikeys_create(c, &req, &resp, &reply), CPC_OK);
    cr_assert_eq(reply.status, 3 /* INVALID_ARGUMENT */);
    cpc_close(c);
}


AK_TEST(bad_create_requests_are_invalid_argument) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_CreateApiKeyRequest req =
        cpstore_v1_CreateApiKeyRequest_init_zero;
    cpstore_v1_CreateApiKeyResponse resp;
    cpc_reply_t reply;

    /* No user. */
    strcpy(req.scopes[req.scopes_count++], "a:b");
    cr_assert_eq(cpc_apikeys_create(c, &req, &resp, &reply), CPC_OK);
    cr_assert_eq(reply.status, 3);

    /* A scope with an empty segment. */
    strcpy(req.user_id, "user-1");
    strcpy(req.scopes[0], "a:");
    cr_assert_eq(cpc_apikeys_create(c, &req, &resp, &reply), CPC_OK);
    cr_assert_eq(reply.status, 3);
    cpc_close(c);
}


/* What MongoDB holds for a key: neither the key nor a piece of it. */
Test(ak_mongo,
     stored_document_holds_no_piece_of_the_key,
     .init = start_mongo_backend,
     .fini = stop_server,
     .timeout = 60) {
    cpc_t *c = h_connect(&server);
    key_opts_t o = {.scopes = {"a:b"}};
    cpstore_v1_CreateApiKeyResponse k = create_key(c, &o);
    mongoc_client_t *client = mongo_client();
    mongoc_collection_t *coll;
    mongoc_cursor_t *cursor;
    const bson_t *doc;
    bson_t *filter;
    const char *random = strrchr(k.key, '_') + 1;
    size_t rlen = strlen(random);
    char *json = NULL;

    coll = mongoc_client_get_collection(client, db_name, "api_keys");
    filter = BCON_NEW("_id", BCON_UTF8(k.key_id));
    cursor = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
    cr_assert(mongoc_cursor_next(cursor, &doc), "no document for %s", k.key_id);
    json = bson_as_relaxed_extended_json(doc, NULL);
    cr_assert_not_null(json);

    cr_assert_null(strstr(json, k.key));
    for (size_t i = 0; i + 8 <= rlen; i++) {
        char piece[9];

        memcpy(piece, random + i, 8);
        piece[8] = '\0';
        cr_assert_null(strstr(json, piece), "stored document holds \"%s\"",
                       piece);
    }
    cr_assert_not_null(strstr(json, k.key_id));

    bson_free(json);
    bson_destroy(filter);
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    cpc_close(c);
}


Test(ak_mongo,
     key_verifies_after_a_restart_with_the_same_secret,
     .init = start_mongo_backend,
     .fini = stop_server,
     .timeout = 60) {
    const char *args[] = {mongo_arg, db_arg, NULL};
    const char *env[] = {"CPSTORE_SECRET=" SECRET, NULL};
    key_opts_t o = {.scopes = {"a:b"}};
    cpstore_v1_CreateApiKeyResponse k;
    cpc_t *c = h_connect(&server);

    k = create_key(c, &o);
    cpc_close(c);
    h_proc_stop(&server);

    h_cpstored_start(&server, args, env);
    c = h_connect(&server);
    cr_assert_eq(verify_code(c, k.key, "a:b"), cpstore_v1_VerifyCode_VALID);
    /* Creating works too on a database whose indexes already exist. */
    k = create_key(c, &o);
    cr_assert_eq(verify_code(c, k.key, "a:b"), cpstore_v1_VerifyCode_VALID);
    cpc_close(c);
}


Test(ak_mongo,
     health_reports_mongodb_serving,
     .init = start_mongo_backend,
     .fini = stop_server) {
    cpc_t *c = h_connect(&server);
    cpstore_v1_HealthCheckResponse resp;
    cpc_reply_t reply;

    cr_assert_eq(cpc_health_check(c, &resp, &reply), CPC_OK);
    cr_assert_eq(resp.status, cpstore_v1_ServingStatus_SERVING);
    cr_assert_str_eq(resp.backends[1].kind, "mongodb");
    cr_assert(resp.backends[1].up);
    cpc_close(c);
}


/* A database nobody listens on: requests fail fast, the server lives. */
Test(ak_unreachable,
     create_and_verify_are_unavailable,
     .fini = stop_server,
     .timeout = 60) {
    char uri[128];
    const char *args[] = {uri, NULL};
    cpstore_v1_CreateApiKeyRequest req =
        cpstore_v1_CreateApiKeyRequest_init_zero;
    cpstore_v1_CreateApiKeyResponse resp;
    cpstore_v1_HealthCheckResponse health;
    cpc_reply_t reply;
    cpc_t *c;

    on_mongo = 0;
    snprintf(uri, sizeof(uri),
             "--mongo=mongodb://127.0.0.1:%d/?serverSelectionTimeoutMS=300",
             h_free_port());
    h_cpstored_start(&server, args, NULL);
    c = h_connect(&server);
    strcpy(req.user_id, "user-1");
    strcpy(req.scopes[req.scopes_count++], "a:b");
    cr_assert_eq(cpc_apikeys_create(c, &req, &resp, &reply), CPC_OK, "%s",
                 cpc_last_error(c));
    cr_assert(reply.status == 14 || reply.status == 4, "status %d",
              reply.status);

    /* Verify cannot tell "no such key" without its store: an RPC error. */
    {
        cpstore_v1_VerifyApiKeyRequest vreq =
            cpstore_v1_VerifyApiKeyRequest_init_zero;
        cpstore_v1_VerifyApiKeyResponse vresp;

        strcpy(vreq.key, "cpk_dev_x");
        cr_assert_eq(cpc_apikeys_verify(c, &vreq, &vresp, &reply), CPC_OK);
        cr_assert(reply.status == 14 || reply.status == 4, "status %d",
                  reply.status);
    }

    cr_assert_eq(cpc_health_check(c, &health, &reply), CPC_OK);
    cr_assert_eq(health.status, cpstore_v1_ServingStatus_NOT_SERVING);
    cr_assert_not(health.backends[1].up);
    cpc_close(c);
}


/*
 * Expiry is UTC milliseconds end to end, whatever the server's time zone:
 * under TZ=Asia/Kolkata (UTC+05:30) a key is valid 1 s before its expiry
 * and expired 1 s after it, and MongoDB holds exactly that instant.
 */
static void start_mongo_in_kolkata(void) {
    const char *args[] = {mongo_arg, db_arg, NULL};
    const char *env[] = {"CPSTORE_SECRET=" SECRET, "TZ=Asia/Kolkata", NULL};

    on_mongo = 1;
    h_unique(db_name, sizeof(db_name), "cpstore_tz");
    snprintf(mongo_arg, sizeof(mongo_arg), "--mongo=%s", h_mongo_uri());
    snprintf(db_arg, sizeof(db_arg), "--mongo-db=%s", db_name);
    h_cpstored_start(&server, args, env);
}


static void wait_until(int64_t utc_ms) {
    int64_t now = clock_now_ms();

    if (now < utc_ms) {
        usleep((useconds_t)(utc_ms - now) * 1000);
    }
}


Test(ak_time,
     utc_expiry_is_exact_under_another_time_zone,
     .init = start_mongo_in_kolkata,
     .fini = stop_server,
     .timeout = 60) {
    cpc_t *c = h_connect(&server);
    key_opts_t o = {.scopes = {"a:b"}};
    cpstore_v1_CreateApiKeyResponse k;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    mongoc_cursor_t *cursor;
    const bson_t *doc;
    bson_iter_t it;
    bson_t *filter;

    o.expires_at_ms = clock_now_ms() + 2500;
    k = create_key(c, &o);
    cr_assert_eq(k.info.expires_at_ms, o.expires_at_ms);

    client = mongo_client();
    coll = mongoc_client_get_collection(client, db_name, "api_keys");
    filter = BCON_NEW("_id", BCON_UTF8(k.key_id));
    cursor = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
    cr_assert(mongoc_cursor_next(cursor, &doc));
    cr_assert(bson_iter_init_find(&it, doc, "expires_at"));
    cr_assert_eq(bson_iter_type(&it), BSON_TYPE_DATE_TIME);
    cr_assert_eq(bson_iter_date_time(&it), o.expires_at_ms,
                 "stored %lld, asked %lld", (long long)bson_iter_date_time(&it),
                 (long long)o.expires_at_ms);
    bson_destroy(filter);
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);

    wait_until(o.expires_at_ms - 1000);
    cr_assert_eq(verify_code(c, k.key, NULL), cpstore_v1_VerifyCode_VALID);
    wait_until(o.expires_at_ms + 1000);
    cr_assert_eq(verify_code(c, k.key, NULL), cpstore_v1_VerifyCode_EXPIRED);
    cpc_close(c);
}
