/*
 * Housekeeping through cpstored: the periodic pass purges tokens past
 * their expiry plus the reuse window and sessions past their absolute
 * expiry, and flushes API-key usage times without waiting for a shutdown.
 */
#include <criterion/criterion.h>

#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define SECRET "housekeeping-secret-0123456789abcdef0123"

static h_proc_t server;
static char db_name[96];
static char conf_path[256];


static void write_config(void) {
    const char *tmp = getenv("TMPDIR");
    FILE *f;

    snprintf(conf_path, sizeof(conf_path), "%s/hk-%d.conf",
             tmp != NULL && *tmp ? tmp : "/tmp", (int)getpid());
    f = fopen(conf_path, "w");
    cr_assert_not_null(f);
    fputs("[housekeeping]\n"
          "purge_interval = 200ms\n"
          "token_reuse_window = 100ms\n"
          "[token.short]\n"
          "max_ttl = 1s\n",
          f);
    fclose(f);
}


static void start(int on_mongo) {
    char mongo[300], db[128], conf[300];
    const char *mongo_args[] = {mongo, db, conf, NULL};
    const char *memory_args[] = {conf, NULL};
    const char *env[] = {"CPSTORE_SECRET=" SECRET, NULL};

    write_config();
    h_unique(db_name, sizeof(db_name), "cpstore_hk");
    snprintf(mongo, sizeof(mongo), "--mongo=%s", on_mongo ? h_mongo_uri() : "");
    snprintf(db, sizeof(db), "--mongo-db=%s", db_name);
    snprintf(conf, sizeof(conf), "--config=%s", conf_path);
    h_cpstored_start(&server, on_mongo ? mongo_args : memory_args, env);
}


static void stop(void) {
    h_proc_stop(&server);
    unlink(conf_path);
}


static int64_t count_docs(const char *collection) {
    mongoc_client_t *client = mongoc_client_new(h_mongo_uri());
    mongoc_collection_t *coll;
    bson_t filter = BSON_INITIALIZER;
    int64_t n;

    cr_assert_not_null(client);
    coll = mongoc_client_get_collection(client, db_name, collection);
    n = mongoc_collection_count_documents(coll, &filter, NULL, NULL, NULL,
                                          NULL);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return n;
}


/* Poll until the collection is empty; false after about ten seconds. */
static int wait_empty(const char *collection) {
    for (int i = 0; i < 100; i++) {
        if (count_docs(collection) == 0) {
            return 1;
        }
        usleep(100 * 1000);
    }
    return 0;
}


Test(housekeeping, expired_tokens_and_sessions_are_purged, .timeout = 60) {
    cpstore_v1_IssueTokenRequest treq = cpstore_v1_IssueTokenRequest_init_zero;
    cpstore_v1_IssueTokenResponse tresp;
    cpstore_v1_CreateSessionRequest sreq =
        cpstore_v1_CreateSessionRequest_init_zero;
    cpstore_v1_CreateSessionResponse sresp;
    cpc_reply_t reply;
    cpc_t *c;

    mongoc_init();
    start(1);
    c = h_connect(&server);

    strcpy(treq.kind, "short");
    strcpy(treq.subject, "user-1");
    treq.ttl_ms = 500;
    cr_assert_eq(cpc_call(c, cpstore_v1_TokensMethod_TOKENS_METHOD_ISSUE,
                          cpstore_v1_IssueTokenRequest_fields, &treq,
                          cpstore_v1_IssueTokenResponse_fields, &tresp, &reply),
                 CPC_OK);
    cr_assert_eq(reply.status, 0, "%s", reply.error.message);

    strcpy(sreq.user_id, "user-1");
    sreq.idle_timeout_ms = 300;
    sreq.absolute_lifetime_ms = 500;
    cr_assert_eq(cpc_call(c, cpstore_v1_SessionsMethod_SESSIONS_METHOD_CREATE,
                          cpstore_v1_CreateSessionRequest_fields, &sreq,
                          cpstore_v1_CreateSessionResponse_fields, &sresp,
                          &reply),
                 CPC_OK);
    cr_assert_eq(reply.status, 0, "%s", reply.error.message);

    /* Both are stored now, and gone after their time without any request
     * touching them. */
    cr_assert_eq(count_docs("tokens"), 1);
    cr_assert_eq(count_docs("sessions"), 1);
    cr_assert(wait_empty("tokens"), "expired token was not purged");
    cr_assert(wait_empty("sessions"), "expired session was not purged");

    cpc_close(c);
    stop();
    mongoc_cleanup();
}


static void usage_is_flushed_while_running(int on_mongo) {
    cpstore_v1_CreateApiKeyRequest creq =
        cpstore_v1_CreateApiKeyRequest_init_zero;
    cpstore_v1_CreateApiKeyResponse cresp;
    cpstore_v1_VerifyApiKeyRequest vreq =
        cpstore_v1_VerifyApiKeyRequest_init_zero;
    cpstore_v1_VerifyApiKeyResponse vresp;
    cpstore_v1_GetApiKeyRequest greq = cpstore_v1_GetApiKeyRequest_init_zero;
    cpstore_v1_GetApiKeyResponse gresp;
    cpc_reply_t reply;
    int flushed = 0;
    cpc_t *c;

    start(on_mongo);
    c = h_connect(&server);
    strcpy(creq.user_id, "user-1");
    strcpy(creq.scopes[creq.scopes_count++], "a:b");
    cr_assert_eq(cpc_apikeys_create(c, &creq, &cresp, &reply), CPC_OK);
    cr_assert_eq(reply.status, 0);
    strcpy(vreq.key, cresp.key);
    cr_assert_eq(cpc_apikeys_verify(c, &vreq, &vresp, &reply), CPC_OK);
    cr_assert(vresp.valid);

    strcpy(greq.key_id, cresp.key_id);
    for (int i = 0; i < 100 && !flushed; i++) {
        cr_assert_eq(cpc_call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_GET,
                              cpstore_v1_GetApiKeyRequest_fields, &greq,
                              cpstore_v1_GetApiKeyResponse_fields, &gresp,
                              &reply),
                     CPC_OK);
        cr_assert_eq(reply.status, 0);
        flushed = gresp.key.last_used_at_ms > 0;
        if (!flushed) {
            usleep(100 * 1000);
        }
    }
    cr_assert(flushed, "last_used_at was not written while running");
    cpc_close(c);
    stop();
}


Test(housekeeping, key_usage_is_flushed_while_running_on_mongo, .timeout = 60) {
    usage_is_flushed_while_running(1);
}


Test(housekeeping,
     key_usage_is_flushed_while_running_on_memory,
     .timeout = 60) {
    usage_is_flushed_while_running(0);
}
