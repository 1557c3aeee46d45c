/*
 * The production profile: it refuses to start, with a one-line reason and
 * a non-zero exit, unless it has a server secret and reachable Redis and
 * MongoDB; after start, a storage write that fails is UNAVAILABLE and
 * never leaves a half-created key behind.
 */
#include <criterion/criterion.h>

#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define SECRET_ENV "CPSTORE_SECRET=prod-secret-0123456789abcdef0123456789ab"


static const char *tmpdir(void) {
    const char *t = getenv("TMPDIR");

    return t != NULL && *t != '\0' ? t : "/tmp";
}


/* Run cpstored --profile production with args; expect a refusal. */
static void assert_refused(const char *const *extra,
                           const char *const *env,
                           const char *reason) {
    const char *argv[16] = {CPSTORED_PATH, "--profile=production",
                            "--listen=127.0.0.1:0"};
    size_t n = 3;
    char *out = NULL;
    int status;

    for (size_t i = 0; extra[i] != NULL; i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    status = h_run(argv, env, 30000, &out);
    cr_assert(WIFEXITED(status), "cpstored did not exit by itself");
    cr_assert_neq(WEXITSTATUS(status), 0, "cpstored started: %s", out);
    cr_assert_not_null(strstr(out, reason), "expected \"%s\" in:\n%s", reason,
                       out);
    /* One line of refusal, and nothing listened. */
    cr_assert_not_null(strstr(out, "cannot start: "));
    cr_assert_null(strstr(out, "listening"));
    free(out);
}


Test(production, refuses_without_a_secret) {
    char redis[300], mongo[300];
    const char *args[] = {redis, mongo, NULL};

    snprintf(redis, sizeof(redis), "--redis=%s", h_redis_url());
    snprintf(mongo, sizeof(mongo), "--mongo=%s", h_mongo_uri());
    assert_refused(args, NULL, "needs a server secret");
}


Test(production, refuses_a_short_secret) {
    char redis[300], mongo[300];
    const char *args[] = {redis, mongo, NULL};
    const char *env[] = {"CPSTORE_SECRET=short", NULL};

    snprintf(redis, sizeof(redis), "--redis=%s", h_redis_url());
    snprintf(mongo, sizeof(mongo), "--mongo=%s", h_mongo_uri());
    assert_refused(args, env, "at least 32 bytes");
}


Test(production, refuses_without_redis) {
    char mongo[300];
    const char *args[] = {mongo, NULL};
    const char *env[] = {SECRET_ENV, NULL};

    snprintf(mongo, sizeof(mongo), "--mongo=%s", h_mongo_uri());
    assert_refused(args, env, "needs --redis and --mongo");
}


Test(production, refuses_without_mongo) {
    char redis[300];
    const char *args[] = {redis, NULL};
    const char *env[] = {SECRET_ENV, NULL};

    snprintf(redis, sizeof(redis), "--redis=%s", h_redis_url());
    assert_refused(args, env, "needs --redis and --mongo");
}


Test(production, refuses_when_redis_is_unreachable) {
    char redis[300], mongo[300];
    const char *args[] = {redis, mongo, NULL};
    const char *env[] = {SECRET_ENV, NULL};

    snprintf(redis, sizeof(redis), "--redis=redis://127.0.0.1:%d",
             h_free_port());
    snprintf(mongo, sizeof(mongo), "--mongo=%s", h_mongo_uri());
    assert_refused(args, env, "redis at 127.0.0.1");
}


Test(production, refuses_when_mongodb_is_unreachable) {
    char redis[300], mongo[300];
    const char *args[] = {redis, mongo, NULL};
    const char *env[] = {SECRET_ENV, NULL};

    snprintf(redis, sizeof(redis), "--redis=%s", h_redis_url());
    snprintf(mongo, sizeof(mongo),
             "--mongo=mongodb://127.0.0.1:%d/?serverSelectionTimeoutMS=500",
             h_free_port());
    assert_refused(args, env, "mongodb is not reachable");
}


Test(production, refuses_a_secret_file_that_cannot_be_read) {
    char redis[300], mongo[300];
    const char *args[] = {redis, mongo, "--secret-file=/nonexistent/secret",
                          NULL};

    snprintf(redis, sizeof(redis), "--redis=%s", h_redis_url());
    snprintf(mongo, sizeof(mongo), "--mongo=%s", h_mongo_uri());
    assert_refused(args, NULL, "secret file /nonexistent/secret");
}


Test(production, starts_with_everything_and_reads_the_secret_file) {
    char redis[300], mongo[300], file[300], arg[320], db[96], dbarg[128];
    const char *args[] = {
        "--profile=production", redis, mongo, arg, dbarg, NULL};
    cpstore_v1_HealthCheckResponse health;
    cpc_reply_t reply;
    h_proc_t server;
    FILE *f;
    cpc_t *c;

    snprintf(file, sizeof(file), "%s/secret-%d", tmpdir(), (int)getpid());
    f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("file-secret-0123456789abcdef0123456789abcdef\n", f);
    fclose(f);
    snprintf(arg, sizeof(arg), "--secret-file=%s", file);
    snprintf(redis, sizeof(redis), "--redis=%s", h_redis_url());
    snprintf(mongo, sizeof(mongo), "--mongo=%s", h_mongo_uri());
    h_unique(db, sizeof(db), "prod");
    snprintf(dbarg, sizeof(dbarg), "--mongo-db=%s", db);

    h_cpstored_start(&server, args, NULL);
    c = h_connect(&server);
    cr_assert_eq(cpc_health_check(c, &health, &reply), CPC_OK);
    cr_assert_eq(health.status, cpstore_v1_ServingStatus_SERVING);
    cr_assert_str_eq(health.backends[0].kind, "redis");
    cr_assert_str_eq(health.backends[1].kind, "mongodb");
    cpc_close(c);
    h_proc_stop(&server);
    unlink(file);
}


static long long count_keys(const char *uri, const char *db, int *complete) {
    mongoc_client_t *client = mongoc_client_new(uri);
    mongoc_collection_t *coll;
    mongoc_cursor_t *cursor;
    const bson_t *doc;
    bson_t filter = BSON_INITIALIZER;
    long long n = 0;

    cr_assert_not_null(client);
    coll = mongoc_client_get_collection(client, db, "api_keys");
    cursor = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
    *complete = 1;
    while (mongoc_cursor_next(cursor, &doc)) {
        n++;
        /* Every key carries its scopes, its expiry and its binding. */
        if (!bson_has_field(doc, "scopes") ||
            !bson_has_field(doc, "expires_at") ||
            !bson_has_field(doc, "org_id") ||
            !bson_has_field(doc, "key_hash")) {
            *complete = 0;
        }
    }
    cr_assert_not(mongoc_cursor_error(cursor, NULL));
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return n;
}


static int create(cpc_t *c, const char *name) {
    cpstore_v1_CreateApiKeyRequest req =
        cpstore_v1_CreateApiKeyRequest_init_zero;
    cpstore_v1_CreateApiKeyResponse resp;
    cpc_reply_t reply;

    strcpy(req.user_id, "prod-user");
    strcpy(req.name, name);
    strcpy(req.scopes[req.scopes_count++], "memory:read");
    strcpy(req.org_id, "org-1");
    req.expires_in_ms = 3600 * 1000;
    cr_assert_eq(cpc_apikeys_create(c, &req, &resp, &reply), CPC_OK, "%s",
                 cpc_last_error(c));
    return reply.status;
}


Test(production,
     database_down_mid_run_is_unavailable_and_leaves_no_half_key,
     .timeout = 120) {
    char dir[256], uri[128], redis[300], mongo[300];
    const char *args[] = {"--profile=production", redis, mongo, NULL};
    const char *env[] = {SECRET_ENV, NULL};
    h_proc_t ferret, server;
    int port, complete, created = 0;
    cpc_t *c;

    snprintf(dir, sizeof(dir), "%s/ferret-%d", tmpdir(), (int)getpid());
    mkdir(dir, 0700);
    if (!h_ferretdb_start(&ferret, 0, dir)) {
        cr_skip_test("needs CPSTORE_TEST_FERRETDB_BIN: a database this test "
                     "may stop");
    }
    port = ferret.port;
    snprintf(uri, sizeof(uri), "mongodb://127.0.0.1:%d/prodtest", port);
    snprintf(mongo, sizeof(mongo), "--mongo=%s", uri);
    snprintf(redis, sizeof(redis), "--redis=%s", h_redis_url());
    h_cpstored_start(&server, args, env);
    c = h_connect(&server);
    cpc_set_budget(c, 4000);

    cr_assert_eq(create(c, "before"), 0);

    h_proc_stop(&ferret);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(create(c, "during"), 14 /* UNAVAILABLE */,
                     "a create with the database down must be UNAVAILABLE");
    }

    h_ferretdb_start(&ferret, port, dir);
    /* Creation works again without restarting cpstored. */
    for (int i = 0; i < 100 && !created; i++) {
        created = create(c, "after") == 0;
        if (!created) {
            usleep(100 * 1000);
        }
    }
    cr_assert(created, "create did not recover after the database returned");

    mongoc_init();
    cr_assert_eq(count_keys(uri, "prodtest", &complete), 2,
                 "only the two successful creates may have left a key");
    cr_assert(complete, "a stored key lacks its scopes, expiry or binding");
    mongoc_cleanup();

    cpc_close(c);
    h_proc_stop(&server);
    h_proc_stop(&ferret);
}
